"""Reports: parameterised notebooks run as HTML reports, one by one or in batches.

* :mod:`~funnelkit.reports.notebook` - run one notebook with papermill and
  export it as HTML without code (:func:`run_notebook`, :func:`safe_name`).
* :mod:`~funnelkit.reports.monthly` - the monthly report's definitions and
  headline numbers (:func:`headline`, :class:`MonthlyReport`).
* :mod:`~funnelkit.reports.sections` - what a report notebook displays, one
  call per cell.
* :mod:`~funnelkit.reports.plan` - report plans in YAML (:func:`load_plan`).
* :mod:`~funnelkit.reports.batch` - the parallel batch runner
  (:func:`run_plan`, one run per month folder at a time) and
  :mod:`~funnelkit.reports.index`, its index page.
* :mod:`~funnelkit.reports.cache` - the validated event log, read once per
  run and shared by its reports as Parquet (:func:`write_cache`, :func:`read_cache`).
* :mod:`~funnelkit.reports.pages` - offline HTML pages: the export template,
  the Content-Security-Policy and :func:`scrub_html`.
* :mod:`~funnelkit.reports.formatting` - how a report writes numbers
  (:class:`NumberFormat`: the plan's currency and separators), tables and
  sparklines.

The report template (``funnelkit/templates/monthly_report.ipynb``) and the
demo plan ship inside the package (:func:`default_template`, :func:`demo_plan`).

The command line mirrors this: ``funnelkit report PLAN --month YYYY-MM``.
"""

from .batch import LOCK_NAME, STATUS_COLUMNS, RunLockedError, demo_plan, run_demo, run_plan
from .cache import read_cache, write_cache
from .formatting import NumberFormat
from .index import index_html, write_index
from .monthly import (
    DEMO_DATA,
    STEP_COLUMNS,
    MonthlyReport,
    as_of_log,
    closed_between,
    coverage_warnings,
    data_fingerprint,
    entered_between,
    headline,
    headline_record,
    headline_summary,
    load_data,
    month_window,
    monthly_series,
    parse_month,
    previous_window,
    segment_leaks,
    select_segment,
    step_rates,
)
from .notebook import (
    HEADLINE_MIME,
    STATUS_MIME,
    ReportResult,
    atomic_write,
    export_html,
    read_headline,
    read_records,
    run_notebook,
    safe_name,
    template_parameters,
    unique_names,
)
from .pages import CSP, scrub_html
from .plan import ALL, Plan, ReportJob, default_template, expand_plan, load_plan, parse_only

__all__ = [
    "ALL",
    "CSP",
    "DEMO_DATA",
    "HEADLINE_MIME",
    "LOCK_NAME",
    "STATUS_COLUMNS",
    "STATUS_MIME",
    "STEP_COLUMNS",
    "MonthlyReport",
    "NumberFormat",
    "Plan",
    "ReportJob",
    "ReportResult",
    "RunLockedError",
    "as_of_log",
    "atomic_write",
    "closed_between",
    "coverage_warnings",
    "data_fingerprint",
    "default_template",
    "demo_plan",
    "entered_between",
    "expand_plan",
    "export_html",
    "headline",
    "headline_record",
    "headline_summary",
    "index_html",
    "load_data",
    "load_plan",
    "month_window",
    "monthly_series",
    "parse_month",
    "parse_only",
    "previous_window",
    "read_cache",
    "read_headline",
    "read_records",
    "run_demo",
    "run_notebook",
    "run_plan",
    "safe_name",
    "scrub_html",
    "segment_leaks",
    "select_segment",
    "step_rates",
    "template_parameters",
    "unique_names",
    "write_cache",
    "write_index",
]
