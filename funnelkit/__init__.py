"""funnelkit: sales and marketing funnels and sales pipelines, in pandas.

One event log (a lead entered a stage at a time) feeds two views:

* the **pipeline** (:mod:`funnelkit.pipeline`): each lead as an individual;
* the **funnel** (:mod:`funnelkit.funnel`): the aggregate flow.

Start with :func:`read_events` (CSV, Parquet, XES; or an adapter: :func:`from_wide`,
:func:`from_stage_tables`, :func:`from_snapshot`) and a stage set
(:data:`PRESETS` or YAML).
"""

from importlib.metadata import PackageNotFoundError, version

from . import (
    datasets,
    display,
    forecast,
    funnel,
    parallel,
    pipeline,
    plots,
    reports,
    segments,
    stats,
    transitions,
    xes,
)
from .data import (
    LoadReport,
    from_snapshot,
    from_stage_tables,
    from_wide,
    read_events,
    validate_events,
)
from .exceptions import (
    DataFileNotFoundError,
    DataWarning,
    ForecastError,
    FunnelkitError,
    FunnelSpecError,
    InvalidEventLogError,
    PipelineError,
    PlanError,
    ReportError,
    StageSetError,
    TransitionModelError,
)
from .stages import PRESETS, SegmentStageSets, StageSet, get_stage_set
from .tables import report_table
from .transitions import TransitionModel
from .xes import read_xes

try:
    __version__ = version("funnelkit")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "DataWarning",
    "DataFileNotFoundError",
    "ForecastError",
    "FunnelSpecError",
    "PipelineError",
    "TransitionModelError",
    "FunnelkitError",
    "InvalidEventLogError",
    "LoadReport",
    "PRESETS",
    "PlanError",
    "ReportError",
    "SegmentStageSets",
    "StageSet",
    "StageSetError",
    "TransitionModel",
    "datasets",
    "display",
    "forecast",
    "from_snapshot",
    "from_stage_tables",
    "from_wide",
    "funnel",
    "get_stage_set",
    "parallel",
    "pipeline",
    "plots",
    "read_events",
    "read_xes",
    "reports",
    "segments",
    "report_table",
    "stats",
    "transitions",
    "validate_events",
    "xes",
    "__version__",
]
