"""Report plans: which reports to run, on which data, written in YAML.

A **plan** says "for this data and stage set, one report per value of these
segment columns" (a batch), or names one segment value (a single report).
Paths in a plan are relative to the plan file.  Every key is checked before
anything runs: an unknown key, a missing data file, an unknown stage set or
a split column absent from the data is a :class:`~funnelkit.PlanError`
naming the key and the fix.

Keys
----
=================  ==========================================================
``data``           event log file (CSV, Parquet or XES), or ``demo`` (required)
``columns``        the file's column names -> ``lead_id``, ``stage``,
                   ``timestamp``, ``amount``
``stages``         stage-set preset name or YAML file (required); or a set per value
                   of one segment column, ``{default: pipeline4, product:
                   {Enterprise: enterprise.yaml}}``: each report on that column uses
                   its value's set (or ``default``), the others (all leads, other
                   splits) the milestones every set shares (entered, won, lost), with
                   a note; each value must be in the data, and every label in its
                   lead's own set
``read_options``   options of ``read_events`` (``tz``, ``dayfirst``, ``missing_time``, ...;
                   checked here: a known time zone, ``missing_time`` ``error`` or
                   ``keep``); ``snapshot`` or ``wide`` for a CRM snapshot or a wide
                   table (see ``load_data``)
``splits``         segment columns: a list (one report per value found in
                   the data) or a mapping column -> list of values (each must
                   be in the data); a column cannot be named ``all``
``segment``        instead of ``splits``: one report, ``{column: value}``
``overall``        true: also one report over all leads (``all/all``)
``month``          ``YYYY-MM``; the command line's ``--month`` overrides it (neither: the
                   month of the latest event, said when the run starts)
``as_of``          as-of date ``YYYY-MM-DD`` (default: end of the month; not before
                   the month starts)
``target``         monthly revenue target: a number, or per split
                   (``{product: {Starter: 100000}, source: 50000}``) with an
                   optional ``default``
``title``          report title (the segment and month are added)
``currency``       how amounts are written: a symbol before them (``"€"``, ``"$"``)
                   or a code after them (``"EUR"``); default none
``thousands``      thousands separator: ``","`` (default), ``"."``, ``" "``, ``"'"`` or ``""``
``decimal``        decimal mark: ``"."`` or ``","`` (default ``","`` when
                   ``thousands`` is ``"."``)
``noun``           what the leads are called in sentences (default ``leads``;
                   ``deals`` for a sales pipeline)
``only``           run a subset: ``{product: [Starter]}`` or ``[source]``
``template``       notebook template (default: the one shipped in the package,
                   ``funnelkit/templates/monthly_report.ipynb``, also at
                   ``notebooks/monthly_report.ipynb`` in the source tree)
``output``         folder for ``<month>/<split>/<value>.html`` (default
                   ``reports`` in the current folder)
``parameters``     further template parameters, checked against the template
``timeout``        seconds allowed per notebook cell
``description``    free text
``derive``         segment columns made from the data, per lead, usable in ``splits``:
                   ``{deal_size: {bands: {edges: [0, 10000, 50000], labels: [small,
                   medium, large]}}}`` (the lead's last known amount cut at the
                   edges) or ``{region: {map: {column: country, values: {FR:
                   Europe, US: Americas}, other: Other}}}``
                   (:mod:`funnelkit.segments`)
=================  ==========================================================

Reserved names: ``all`` is the overall report, so no split column may be
called that; a split whose folder name would be ``index``, ``index.html`` or
``summary.csv``, or would equal another split's folder, is written to a
folder with a short hash appended (with a note); a value whose file name
would collide with another's (or end in ``.failed``) gets one too.

Example (``params/demo_monthly.yaml``)::

    data: ../data/demo/events.csv
    stages: pipeline4
    splits: [product, source]
    month: 2025-09
    target: 1500000
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path

import pandas as pd
import yaml

from .._common import wall_clock
from ..data import LEAD, STAGE, TIME
from ..exceptions import FunnelkitError, PlanError
from ..segments import derive as derive_segments
from ..stages import PRESETS, SegmentStageSets, StageSet, get_stage_set
from .monthly import DEMO_DATA, load_data, parse_month
from .notebook import safe_name, template_parameters, unique_names
from .schema import MISSING_TIME, PLAN_KEYS, READ_OPTION_KEYS

__all__ = ["ALL", "TEMPLATE_PATH", "Plan", "ReportJob", "default_template", "expand_plan", "load_plan", "packaged",
           "parse_only"]

#: Split and value names of the overall report (all leads).
ALL = "all"

#: The plan keys, the read_options keys and missing_time values: defined once, in schema.py
#: (which also publishes them as the plan's JSON Schema).
_KEYS = set(PLAN_KEYS)
_READ_KEYS = set(READ_OPTION_KEYS)
_MISSING_TIME = MISSING_TIME
#: Names a split's folder cannot have in the month folder (compared case-insensitively).
RESERVED_FOLDERS = frozenset({ALL, "index", "index.html", "summary.csv"})
_CANONICAL = {"lead_id", "stage", "timestamp", "amount"}
#: Where the monthly report template lives in the source tree (a link to the packaged one).
TEMPLATE_PATH = Path("notebooks") / "monthly_report.ipynb"
#: The packaged template and demo plan, inside the ``funnelkit`` package (``importlib.resources``).
PACKAGE_TEMPLATE = "templates/monthly_report.ipynb"
PACKAGE_DEMO_PLAN = "templates/demo_monthly.yaml"
#: Parameters the runner passes to every report; the template must declare them.
RUNNER_PARAMETERS = (
    "data", "columns", "stages", "read_options", "segment_column", "segment_value", "month", "as_of",
    "revenue_target", "title",
)
#: Parameters the runner passes only to a template that declares them: ``cache`` is the
#: validated event log of the report's leads, written once per run (see ``reports.cache``);
#: ``links`` the navigation between reports; ``stages_note`` the sentence of a report that counts the
#: milestones of several stage sets (see :meth:`Plan.job_stages`); the others the plan's number format and noun.
OPTIONAL_PARAMETERS = ("cache", "links", "currency", "thousands", "decimal", "noun", "stages_note")


def packaged(name: str) -> Path:
    """A file shipped inside the ``funnelkit`` package (``importlib.resources``), e.g. the template.

    Raises
    ------
    PlanError
        If the installation lacks it (a broken install).

    Examples
    --------
    >>> path = packaged("templates/demo_monthly.yaml")
    >>> path.name, path.parent.name, path.is_file()
    ('demo_monthly.yaml', 'templates', True)
    """
    from importlib.resources import files

    path = Path(str(files("funnelkit").joinpath(name)))
    if not path.is_file():
        raise PlanError(f"funnelkit's own {name} is missing from {path.parent}: reinstall funnelkit "
                        "(pip install --force-reinstall funnelkit).")
    return path


def default_template() -> Path:
    """The monthly report template shipped in the package (``funnelkit/templates/monthly_report.ipynb``).

    In the source tree, ``notebooks/monthly_report.ipynb`` is a link to the
    same file, so either path edits the one template.

    Raises
    ------
    PlanError
        If the installation lacks it.

    Examples
    --------
    >>> default_template().name
    'monthly_report.ipynb'
    """
    return packaged(PACKAGE_TEMPLATE)


@dataclass
class ReportJob:
    """One report of an expanded plan.

    Attributes
    ----------
    split : str
        The segment column (``"all"`` for the overall report).
    value : str
        The segment value (``"all"`` for the overall report).
    name : str
        Safe file name stem, distinct within its folder.
    parameters : dict
        The template parameters.
    title : str
        HTML page title.
    folder : str
        Sub-folder of the month folder (default: the split column as a safe name).
    overall : bool
        True for the report over all leads.

    Examples
    --------
    :func:`expand_plan` makes them; the folder defaults to the split column
    as a safe file name:

    >>> job = ReportJob("lead source", "web form", "web_form", {"month": "2025-09"},
    ...                 "Monthly funnel report: lead source web form, 2025-09")
    >>> job.folder, job.overall
    ('lead_source', False)
    >>> ReportJob("all", "all", "all", {}, "Monthly funnel report: all leads", overall=True).folder
    'all'
    """

    split: str
    value: str
    name: str
    parameters: dict
    title: str
    folder: str = ""
    overall: bool = False

    def __post_init__(self) -> None:
        if not self.folder:
            self.folder = ALL if self.overall else safe_name(self.split)


@dataclass
class Plan:
    """A validated report plan (see the module docstring for the keys).

    Build it with :func:`load_plan` (from YAML) or :meth:`from_dict`.

    Examples
    --------
    One report per product of the bundled demo data, plus one over all leads:

    >>> from funnelkit.reports import Plan
    >>> plan = Plan.from_dict({"data": "demo", "stages": "pipeline4", "splits": ["product"],
    ...                        "overall": True, "month": "2025-09", "target": 200000})
    >>> plan.splits, plan.month, plan.overall, plan.noun
    ({'product': None}, '2025-09', True, 'leads')
    """

    data: str
    stages: str | dict
    columns: dict = field(default_factory=dict)
    read_options: dict = field(default_factory=dict)
    splits: dict = field(default_factory=dict)
    segment: tuple[str, str] | None = None
    overall: bool = False
    month: str | None = None
    as_of: str | None = None
    target: object = None
    title: str = "Monthly funnel report"
    only: list = field(default_factory=list)
    template: Path | None = None
    output: Path = field(default_factory=lambda: Path("reports"))
    parameters: dict = field(default_factory=dict)
    timeout: float | None = None
    description: str = ""
    source: str = "plan"
    currency: str = ""
    thousands: str = ","
    decimal: str = ""
    noun: str = "leads"
    derive: dict = field(default_factory=dict)

    # -- construction ----------------------------------------------------------
    @classmethod
    def from_dict(cls, spec: Mapping, *, base_dir: str | Path | None = None, source: str = "plan") -> Plan:
        """Check a plan mapping and resolve its paths against ``base_dir``.

        Raises
        ------
        PlanError
            Naming the key at fault and the fix.

        Examples
        --------
        >>> from funnelkit.reports import Plan
        >>> plan = Plan.from_dict({"data": "demo", "stages": "pipeline4", "segment": {"product": "Starter"},
        ...                        "month": "2025-09", "currency": "€"})
        >>> plan.segment, plan.currency, plan.overall
        (('product', 'Starter'), '€', False)

        A misspelt key is named, with the closest allowed one:

        >>> Plan.from_dict({"data": "demo", "stages": "pipeline4", "splitz": ["product"]})
        Traceback (most recent call last):
        ...
        funnelkit.exceptions.PlanError: plan: unknown key(s) 'splitz' (did you mean 'splits'?). Allowed keys: as_of, columns, currency, data, decimal, derive, description, month, noun, only, output, overall, parameters, read_options, segment, splits, stages, target, template, thousands, timeout, title.
        """
        where = source
        if not isinstance(spec, Mapping):
            raise PlanError(f"{where}: a plan must be a mapping of keys to values, got {type(spec).__name__}.")
        unknown = sorted(str(k) for k in spec if k not in _KEYS)
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, sorted(_KEYS), n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise PlanError(f"{where}: unknown key(s) {', '.join(hints)}. Allowed keys: {', '.join(sorted(_KEYS))}.")
        base = Path(base_dir) if base_dir is not None else Path.cwd()

        def rel(p) -> Path:
            path = Path(str(p)).expanduser()
            return path if path.is_absolute() else (base / path).resolve()

        if "data" not in spec or spec["data"] in (None, ""):
            raise PlanError(f"{where}: 'data' is required: the event log file (CSV, Parquet or XES), relative to "
                            f"the plan file, or {DEMO_DATA!r} for the bundled demo data.")
        data = str(spec["data"])
        if data != DEMO_DATA:
            path = rel(data)
            if not path.is_file():
                raise PlanError(f"{where}: data: file not found: {path}. Paths in a plan are relative to the "
                                "plan file's folder.")
            data = str(path)

        stages = spec.get("stages")
        if stages in (None, ""):
            raise PlanError(f"{where}: 'stages' is required: a preset ({', '.join(PRESETS)}) or a stage-set "
                            "YAML file.")
        if isinstance(stages, Mapping):
            stages = _check_stage_sets(stages, where, rel)
        elif isinstance(stages, str):
            stages = _check_stage_set(stages, "stages", where, rel)
        else:
            raise PlanError(f"{where}: stages: give a preset name, a YAML file path, or a stage set per segment "
                            f"value ({_PER_SEGMENT_EXAMPLE}), got {stages!r}.")

        columns = spec.get("columns") or {}
        if not isinstance(columns, Mapping):
            raise PlanError(f"{where}: columns: give a mapping from your column names to funnelkit's, e.g. "
                            "{'Deal ID': lead_id, 'Stage': stage, 'Date': timestamp, 'Value': amount}.")
        bad = {k: v for k, v in columns.items() if v not in _CANONICAL}
        if bad:
            raise PlanError(f"{where}: columns: {bad} map to unknown names; map your columns to "
                            f"{', '.join(sorted(_CANONICAL))} (segment columns keep their own names).")
        columns = {str(k): str(v) for k, v in columns.items()}

        read_options = spec.get("read_options") or {}
        if not isinstance(read_options, Mapping) or set(read_options) - _READ_KEYS:
            raise PlanError(f"{where}: read_options: allowed keys are {', '.join(sorted(_READ_KEYS))}; "
                            f"got {dict(read_options) if isinstance(read_options, Mapping) else read_options!r}.")
        _check_read_options(read_options, where)
        if isinstance(stages, dict) and {"snapshot", "wide"} & set(read_options):
            raise PlanError(f"{where}: stages: a stage set per segment value reads the labels of a long event log; "
                            "a snapshot or wide table is read with one stage set: give 'stages' a preset or a "
                            "YAML file.")

        splits_spec = spec.get("splits")
        segment_spec = spec.get("segment")
        overall = spec.get("overall", False)
        if not isinstance(overall, bool):
            raise PlanError(f"{where}: overall: write true or false, got {overall!r}.")
        if splits_spec is not None and segment_spec is not None:
            raise PlanError(f"{where}: give either 'splits' (a batch) or 'segment' (one report), not both.")
        splits: dict[str, list | None] = {}
        if splits_spec is not None:
            if isinstance(splits_spec, str):
                splits_spec = [splits_spec]
            if isinstance(splits_spec, Mapping):
                for col, vals in splits_spec.items():
                    if vals in (None, ALL):
                        splits[str(col)] = None
                    elif isinstance(vals, Sequence) and not isinstance(vals, str) and vals:
                        splits[str(col)] = [str(v) for v in vals]
                    else:
                        raise PlanError(f"{where}: splits: {col}: give a list of values or 'all', got {vals!r}.")
            elif isinstance(splits_spec, Sequence) and splits_spec:
                splits = {str(c): None for c in splits_spec}
            else:
                raise PlanError(f"{where}: splits: give a list of segment columns, e.g. [product, source].")
        segment = None
        if segment_spec is not None:
            if not isinstance(segment_spec, Mapping) or len(segment_spec) != 1:
                raise PlanError(f"{where}: segment: give one column and its value, e.g. {{product: GTX Pro}}.")
            (col, val), = segment_spec.items()
            segment = (str(col), str(val))
        for col in [*splits, *([segment[0]] if segment else [])]:
            if col.strip().lower() == ALL:
                key = "splits" if col in splits else "segment"
                raise PlanError(f"{where}: {key}: {col!r} is reserved for the report over all leads "
                                "('overall: true'), so it cannot be a split column; rename that column in the "
                                "data (e.g. to 'all_segments') and use the new name here.")
        if not splits and segment is None:
            overall = True

        month = spec.get("month")
        if month is not None:
            month = _month_text(month, where)
        as_of = spec.get("as_of")
        if as_of is not None:
            # YYYY-MM-DD only (YAML may have read it as a date): 01/02/2025 would be read one way silently
            text = as_of.isoformat() if isinstance(as_of, date) else str(as_of).strip()
            try:
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                    raise ValueError(text)
                as_of = str(pd.Timestamp(text).date())
            except (ValueError, TypeError):
                raise PlanError(f"{where}: as_of: {as_of!r} is not a date written YYYY-MM-DD.") from None

        target = spec.get("target")
        _check_target(target, list(splits) + ([segment[0]] if segment else []), where)

        title = spec.get("title", "Monthly funnel report")
        if not isinstance(title, str) or not title.strip():
            raise PlanError(f"{where}: title: give a text, got {title!r}.")

        template = rel(spec["template"]) if spec.get("template") else None
        if template is not None and not template.is_file():
            raise PlanError(f"{where}: template: file not found: {template}.")
        output = rel(spec["output"]) if spec.get("output") else Path("reports").resolve()
        blocker = next((p for p in [output, *output.parents] if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise PlanError(f"{where}: output: {blocker} is a file, not a folder; name a folder for the reports "
                            "(it is created if missing).")
        parameters = spec.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            raise PlanError(f"{where}: parameters: give a mapping of template parameter names to values.")
        clash = sorted(set(parameters) & (set(RUNNER_PARAMETERS) | set(OPTIONAL_PARAMETERS)))
        if clash:
            raise PlanError(f"{where}: parameters: {clash} are set by the plan's own keys (data, columns, "
                            "stages, splits/segment, month, as_of, target, title, currency, thousands, decimal, "
                            "noun) or by the runner (cache, links, stages_note); use those.")
        timeout = spec.get("timeout")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise PlanError(f"{where}: timeout: give seconds per cell (a positive number), got {timeout!r}.")
        only = parse_only(spec.get("only"), where=where)
        derive = _check_derive(spec.get("derive"), where)
        currency, thousands, decimal, noun = _number_format(spec, where)
        return cls(
            data=data, stages=stages, columns=columns, read_options=dict(read_options), splits=splits,
            segment=segment, overall=overall, month=month, as_of=as_of, target=target, title=title.strip(),
            only=only, template=template, output=output, parameters=dict(parameters), timeout=timeout,
            description=str(spec.get("description", "")), source=where, currency=currency,
            thousands=thousands, decimal=decimal, noun=noun, derive=derive,
        )

    # -- stage sets ----------------------------------------------------------------
    @cached_property
    def stage_sets(self) -> SegmentStageSets | None:
        """The stage set per segment value that ``stages`` names (None when the plan has one set).

        Examples
        --------
        >>> from funnelkit.reports import Plan
        >>> plan = Plan.from_dict({"data": "demo", "splits": ["product"],
        ...                        "stages": {"default": "pipeline4", "product": {"Enterprise": "pipeline6"}}})
        >>> plan.stage_sets
        <SegmentStageSets by product: 'Enterprise': pipeline6, default pipeline4>
        >>> print(Plan.from_dict({"data": "demo", "stages": "pipeline4"}).stage_sets)
        None
        """
        return SegmentStageSets.from_spec(self.stages) if isinstance(self.stages, Mapping) else None

    @cached_property
    def milestones(self) -> StageSet | None:
        """The milestones every set shares (entered > won, lost), for reports whose leads follow several sets.

        Long-dead leads are judged at the longest horizon of the sets.  None
        when the plan has one set.

        Examples
        --------
        >>> from funnelkit.reports import Plan
        >>> plan = Plan.from_dict({"data": "demo", "stages": {"default": "pipeline4",
        ...                                                   "product": {"Enterprise": "pipeline6"}}})
        >>> plan.milestones.steps, plan.milestones.lost, plan.milestones.horizon_days
        (('entered', 'won'), ('lost',), 90)
        """
        sss = self.stage_sets
        if sss is None:
            return None
        spec = sss.milestones().to_dict()
        horizons = [s.horizon_days for s in sss.all_sets if s.horizon_days is not None]
        if horizons:
            spec["horizon_days"] = max(horizons)
        return StageSet.from_dict(spec, source="milestones")

    def job_stages(self, split: str, value: str) -> tuple[str | dict, str]:
        """The stage set one report runs with, and the note it shows (empty when none is needed).

        With one set, every report uses it.  With a set per value of a
        column, a report on that column uses its value's set (or the
        default), exactly as a plan with that one set and ``segment`` would;
        a report whose leads can follow different sets (all leads, a split on
        another column) counts the milestones the sets share, and says so.

        Returns
        -------
        (stages, note)
            ``stages`` as the template's ``stages`` parameter: a preset name,
            a YAML path, or the milestones as a mapping.

        Examples
        --------
        >>> from funnelkit.reports import Plan
        >>> plan = Plan.from_dict({"data": "demo", "stages": {"default": "pipeline4",
        ...                                                   "product": {"Enterprise": "pipeline6"}}})
        >>> [plan.job_stages("product", v)[0] for v in ("Enterprise", "Starter")]
        ['pipeline6', 'pipeline4']
        >>> stages, note = plan.job_stages("source", "web form")
        >>> stages["stages"], note[:63]
        (['entered'], 'The leads of this report follow different stage sets by product')
        """
        sss = self.stage_sets
        if sss is None:
            return self.stages, ""
        column = sss.column
        per_value = self.stages[column]
        sets = "; ".join(f"{v}: {sss.sets[v].name}" for v in per_value)
        if sss.default is not None:
            sets += f"; every other {column}: {sss.default.name}"
        shared = ", ".join([*self.milestones.steps, *self.milestones.lost])
        if split == column:
            own = per_value.get(str(value), self.stages.get("default"))
            if own is not None:
                if len({repr(s.to_dict()) for s in sss.all_sets}) == 1:  # one set after all: nothing differs
                    return own, ""
                return own, (f"Not every {column} follows the same stage set ({sets}): this report's funnel "
                             f"has its own set's stages, and it is compared with the other values of {column} "
                             f"on the milestones every set shares ({shared}).")
        note = (f"The leads of this report follow different stage sets by {column} ({sets}), so its funnel "
                f"counts only the milestones every set shares: {shared}. The reports per {column} show each "
                "set's own stages.")
        return self.milestones.to_dict(), note

    def job_log(self, log: pd.DataFrame, stages: str | dict) -> pd.DataFrame:
        """A report's events validated with the stage set it runs with (see :meth:`job_stages`).

        ``log`` is the report's leads from :meth:`load` (labels as they are in
        the data).  For a set of its own, the labels are validated with that
        set (aliases, order, flags), as if the plan named only that set; for
        the milestones, each label becomes the milestone it is in its lead's
        own set first.  The load report keeps what the first reading noticed.

        Examples
        --------
        >>> from funnelkit.reports import Plan, select_segment
        >>> plan = Plan.from_dict({"data": "demo", "stages": {"default": "pipeline4",
        ...                                                   "product": {"Enterprise": "pipeline4"}}})
        >>> log = plan.load()
        >>> mine = plan.job_log(log, plan.job_stages("source", "referral")[0])
        >>> sorted(mine["stage"].astype(str).unique())
        ['entered', 'lost', 'won']
        """
        from dataclasses import replace

        from .._common import time_zone
        from ..data import LoadReport, validate_events
        from ..funnel import _milestone_log

        sss = self.stage_sets
        ss = get_stage_set(stages)
        if sss is None:
            return log
        rep = log.attrs.get("funnelkit")
        work = log
        if isinstance(stages, Mapping):  # the milestones
            work = _milestone_log(log, sss, LEAD, STAGE, TIME)
        tz = time_zone(log[TIME])
        work = work.drop(columns=[c for c in ("flag",) if c in work.columns])
        out = validate_events(work, stages=ss, tz=str(tz) if tz is not None else "UTC",
                              missing_time=str(self.read_options.get("missing_time", "error")),
                              source=rep.source if isinstance(rep, LoadReport) else "plan data")
        new = out.attrs.get("funnelkit")
        if isinstance(rep, LoadReport) and isinstance(new, LoadReport):
            out.attrs["funnelkit"] = replace(
                rep, stage_set=ss, flags=dict(new.flags), merged=rep.merged + new.merged,
                notes=list(dict.fromkeys([*rep.notes, *new.notes])))
        return out

    # -- checks against the data and the template ---------------------------------
    def load(self) -> pd.DataFrame:
        """Load and validate the plan's data; check its split columns and targets.

        Returns
        -------
        DataFrame
            The canonical event log.

        Raises
        ------
        PlanError
            If the data cannot be read with the plan's columns and stage set,
            or a split or segment column is not in it.

        Examples
        --------
        >>> from funnelkit.reports import Plan
        >>> log = Plan.from_dict({"data": "demo", "stages": "pipeline4", "splits": ["product"]}).load()
        >>> log["lead_id"].nunique(), list(log.columns[:4])
        (6000, ['lead_id', 'stage', 'timestamp', 'amount'])

        A split column the data lacks is named, with the columns there are:

        >>> Plan.from_dict({"data": "demo", "stages": "pipeline4", "splits": ["region"]}).load()
        Traceback (most recent call last):
        ...
        funnelkit.exceptions.PlanError: plan: splits: column 'region' is not in the data. Segment columns present: product, source, owner.
        """
        if self.columns and self.data != DEMO_DATA:
            header = _file_columns(self.data)
            absent = [c for c in self.columns if header is not None and c not in header]
            if absent:
                raise PlanError(f"{self.source}: columns: {', '.join(map(repr, absent))} not in {self.data}. "
                                f"Its columns: {', '.join(map(str, header))}.")
        sss = self.stage_sets
        try:  # with a set per segment value, labels stay as they are: each lead's own set judges them below
            log = load_data(self.data, columns=self.columns, stages=None if sss is not None else self.stages,
                            read_options=self.read_options)
        except FunnelkitError as exc:
            text = str(exc)
            hint = ""
            for opt in ("missing_time", "dayfirst", "tz="):
                if opt in text:
                    hint = ("\nIn a plan, options of read_events go under 'read_options', e.g. "
                            "read_options: {missing_time: keep, dayfirst: true, tz: Europe/Paris}.")
                    break
            raise PlanError(f"{self.source}: data: {self.data} cannot be read with this plan's 'columns' and "
                            f"'stages':\n{text}{hint}") from None
        except (OSError, ValueError, TypeError, KeyError, UnicodeError) as exc:  # an untyped reader error
            raise PlanError(f"{self.source}: data: {self.data} cannot be read ({type(exc).__name__}: {exc}). "
                            "Check that it is a CSV, Parquet or XES event log, and its 'read_options' "
                            "(sep, encoding, dayfirst...).") from None
        if self.derive:
            try:
                log = derive_segments(log, self.derive)
            except FunnelkitError as exc:
                raise PlanError(f"{self.source}: {exc}") from None
        cols = list(self.splits) + ([self.segment[0]] if self.segment else [])
        present = [str(c) for c in log.columns if c not in {"lead_id", "stage", "timestamp", "amount", "flag"}]
        if sss is not None:
            self._check_stage_sets(log, sss, present)
        for col in cols:
            if col not in log.columns:
                close = difflib.get_close_matches(col, present, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise PlanError(f"{self.source}: splits: column {col!r} is not in the data.{hint} Segment "
                                f"columns present: {', '.join(present) or 'none'}.")
        if isinstance(self.target, Mapping):
            for col, tv in self.target.items():
                if isinstance(tv, Mapping) and col in log.columns:
                    values = set(log[col].dropna().astype(str))
                    missing = sorted(str(v) for v in tv if str(v) not in values)
                    if missing:
                        raise PlanError(f"{self.source}: target: {col}: no lead has {col} = "
                                        f"{', '.join(map(repr, missing))}. Values present: "
                                        f"{', '.join(map(repr, sorted(values)))}.")
        return log

    def _check_stage_sets(self, log: pd.DataFrame, sss: SegmentStageSets, present: list[str]) -> None:
        """Every lead has a set, every value named has leads, every label is in its lead's own set."""
        col = sss.column
        where = f"{self.source}: stages: {col}"
        if col not in log.columns:
            close = difflib.get_close_matches(col, present, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise PlanError(f"{where}: column {col!r}, which decides each lead's stage set, is not in the data."
                            f"{hint} Segment columns present: {', '.join(present) or 'none'}.")
        firsts = log.loc[~log[LEAD].duplicated(), [LEAD, col]]  # each lead's value on its first event
        first = firsts[col]
        there = sorted(first.dropna().astype(str).unique().tolist())
        named = list(self.stages[col])
        absent = [v for v in named if v not in there]
        if absent:
            listing = ", ".join(map(repr, there[:30])) + (f" ... ({len(there)} in all)" if len(there) > 30 else "")
            close = sorted({c for v in absent for c in difflib.get_close_matches(v, there, n=2, cutoff=0.6)})
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise PlanError(f"{where}: no lead has {col} = {', '.join(map(repr, absent))} (as of its first "
                            f"event).{hint} Values of {col!r} in the data: {listing or 'none'}.")
        if sss.default is None:
            others = [v for v in there if v not in named]
            blank = int(first.isna().sum())
            if others or blank:
                what = ", ".join(map(repr, others[:10])) + (" ..." if len(others) > 10 else "")
                if blank:
                    what += (" and " if what else "") + f"{blank:,} leads with a blank {col}"
                raise PlanError(f"{where}: no stage set for {what}, and no 'default'. Add 'default: <preset or "
                                f"YAML>' under 'stages' for every other {col}, or give those values sets of "
                                "their own.")
        from ..funnel import _set_groups

        labels = log[STAGE].astype("string").to_numpy()
        value = log[LEAD].map(firsts.set_index(LEAD)[col]).to_numpy(dtype=object)
        bad = []
        for ss, mask in _set_groups(log, sss, LEAD, TIME):
            counts = pd.Series(labels[mask]).value_counts()
            for lab, n in counts.items():
                if ss.canonical(lab) is None:
                    vals = sorted({str(v) for v in value[mask & (labels == lab)] if not pd.isna(v)})
                    bad.append(f"{lab!r} ({n:,} events of {col} {', '.join(vals) or '(blank)'}, set {ss.name!r})")
        if bad:
            raise PlanError(f"{where}: labels not in their lead's stage set: {'; '.join(bad[:10])}"
                            f"{' ...' if len(bad) > 10 else ''}. Add them to that set (or to its aliases), give "
                            f"that {col} a set of its own, or leave them out with read_options: {{ignore: [...]}}.")

    def check_template(self, template: str | Path | None = None) -> Path:
        """The template to run, checked to declare every parameter the plan passes.

        Parameters
        ----------
        template : path, optional
            Overrides the plan's ``template`` (default :func:`default_template`).

        Raises
        ------
        PlanError
            If the template is missing or does not declare a parameter in its
            ``parameters`` cell.

        Examples
        --------
        >>> from funnelkit.reports import Plan
        >>> plan = Plan.from_dict({"data": "demo", "stages": "pipeline4"})
        >>> plan.check_template().name
        'monthly_report.ipynb'

        A plan parameter the template does not declare is an error:

        >>> plan = Plan.from_dict({"data": "demo", "stages": "pipeline4", "parameters": {"colour": "red"}})
        >>> from funnelkit import PlanError
        >>> try:
        ...     plan.check_template()
        ... except PlanError as exc:
        ...     print(str(exc)[:60])  # doctest: +ELLIPSIS
        plan: parameters: ['colour'] are not parameters of ...
        """
        template = Path(template) if template is not None else (self.template or default_template())
        try:
            declared = template_parameters(template)
        except FunnelkitError as exc:
            raise PlanError(f"{self.source}: template: {exc}") from None
        missing = [p for p in (*RUNNER_PARAMETERS, *self.parameters) if p not in declared]
        if missing:
            raise PlanError(f"{self.source}: parameters: {missing} are not parameters of {template} "
                            f"(it declares {', '.join(declared)}). Remove them or add them to its "
                            "'parameters' cell.")
        return template

    def target_for(self, split: str, value: str) -> float | None:
        """The revenue target of one report (None when the plan sets none).

        Examples
        --------
        A target per product for Starter, and a default for every other report:

        >>> from funnelkit.reports import Plan
        >>> plan = Plan.from_dict({"data": "demo", "stages": "pipeline4", "splits": ["product"],
        ...                        "target": {"product": {"Starter": 80000}, "default": 200000}})
        >>> plan.target_for("product", "Starter"), plan.target_for("product", "Enterprise")
        (80000.0, 200000.0)
        >>> print(Plan.from_dict({"data": "demo", "stages": "pipeline4"}).target_for("all", "all"))
        None
        """
        t = self.target
        if t is None or isinstance(t, bool):
            return None
        if isinstance(t, (int, float)):
            return float(t)
        spec = t.get(split, t.get("default"))
        if isinstance(spec, Mapping):
            spec = spec.get(value, spec.get("default", t.get("default")))
        return float(spec) if spec is not None else None


def _number_format(spec: Mapping, where: str) -> tuple[str, str, str, str]:
    """The plan's currency, thousands separator, decimal mark and noun, checked."""
    from .formatting import NumberFormat

    currency = spec.get("currency") or ""
    if not isinstance(currency, str) or len(currency.strip()) > 5:
        raise PlanError(f"{where}: currency: give a symbol such as '€' or '$', or a code such as 'EUR', "
                        f"got {currency!r}.")
    thousands = spec.get("thousands", ",")
    thousands = "" if thousands is None else thousands
    decimal = spec.get("decimal") or ""
    if not isinstance(thousands, str) or not isinstance(decimal, str):
        raise PlanError(f"{where}: thousands and decimal: give characters, e.g. thousands: '.' and decimal: ','.")
    try:
        fmt = NumberFormat(currency=currency.strip(), thousands=thousands, decimal=decimal)
    except ValueError as exc:
        raise PlanError(f"{where}: {exc}") from None
    noun = spec.get("noun", "leads")
    if not isinstance(noun, str) or not noun.strip() or len(noun) > 30:
        raise PlanError(f"{where}: noun: give a plural word such as 'leads', 'deals' or 'visitors', got {noun!r}.")
    return fmt.currency, fmt.thousands, fmt.decimal, noun.strip()


def _check_derive(spec, where: str) -> dict:
    """The plan's derived segments, checked for shape (their columns are checked on the data)."""
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise PlanError(f"{where}: derive: give new column names and their rules, e.g. "
                        "{deal_size: {bands: {edges: [0, 10000], labels: [small, large]}}}.")
    out = {}
    for name, rule in spec.items():
        if not isinstance(rule, Mapping) or len(rule) != 1 or next(iter(rule)) not in ("bands", "map") \
                or not isinstance(next(iter(rule.values())), Mapping):
            raise PlanError(f"{where}: derive: {name}: give either {{bands: {{edges: [...], labels: [...]}}}} or "
                            f"{{map: {{column: ..., values: {{...}}}}}}, got {rule!r}.")
        if str(name).strip().lower() == ALL:
            raise PlanError(f"{where}: derive: {name!r} is reserved for the report over all leads.")
        out[str(name)] = dict(rule)
    return out


_PER_SEGMENT_EXAMPLE = "{default: pipeline4, product: {Enterprise: enterprise_stages.yaml}}"


def _check_stage_set(value, key: str, where: str, rel) -> str:
    """One stage set of a plan: a preset name, or a YAML path made absolute; checked by loading it."""
    if not isinstance(value, str) or not value.strip():
        raise PlanError(f"{where}: {key}: give a preset ({', '.join(PRESETS)}) or a stage-set YAML file, "
                        f"got {value!r}.")
    if value in PRESETS:
        return value
    if re.search(r"\.ya?ml$", value, re.I) or "/" in value:
        value = str(rel(value))
    try:
        get_stage_set(value)
    except FunnelkitError as exc:
        raise PlanError(f"{where}: {key}: {exc}") from None
    return value


def _check_stage_sets(spec: Mapping, where: str, rel) -> dict:
    """A stage set per segment value: ``{default: <set>, <column>: {<value>: <set>, ...}}``, each set checked.

    Returns the same mapping with its YAML paths made absolute (values as text).
    """
    columns = [k for k in spec if k != "default"]
    if len(columns) != 1:
        got = ", ".join(map(repr, map(str, columns))) or "none"
        raise PlanError(f"{where}: stages: a stage set per segment value names exactly one segment column that "
                        f"decides each lead's set, beside 'default', e.g. {_PER_SEGMENT_EXAMPLE}; got "
                        f"{len(columns)} column(s): {got}. Keep one (the other column's reports then compare the "
                        "milestones every set shares).")
    column = columns[0]
    values = spec[column]
    if not isinstance(values, Mapping) or not values:
        raise PlanError(f"{where}: stages: {column}: give each value of {column!r} that has a stage set of its own "
                        f"and that set, e.g. {{Enterprise: enterprise_stages.yaml}}; got {values!r}.")
    if str(column).strip().lower() == ALL:
        raise PlanError(f"{where}: stages: {column!r} is reserved for the report over all leads; rename that "
                        "column in the data.")
    out: dict = {}
    if spec.get("default") is not None:
        out["default"] = _check_stage_set(spec["default"], "stages: default", where, rel)
    out[str(column)] = {str(v): _check_stage_set(s, f"stages: {column}: {v}", where, rel)
                        for v, s in values.items()}
    return out


def _file_columns(path: str) -> list[str] | None:
    """Column names of a CSV/TSV/Parquet file without reading it all (None if unknown, e.g. XES)."""
    suffix = Path(path).suffix.lower()
    name = Path(path).name.lower()
    if name.endswith((".xes", ".xes.gz")):  # attributes, not a header: read_events checks the mapping
        return None
    try:
        if suffix in {".parquet", ".pq"}:
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        sep = "\t" if ".tsv" in Path(path).name.lower() else ","
        return [str(c) for c in pd.read_csv(path, nrows=0, sep=sep).columns]
    except Exception:  # unreadable here: read_events will report it properly
        return None


def _check_read_options(options: Mapping, where: str) -> None:
    """The values of read_options that can be checked without the data: time zone, missing_time, dayfirst."""
    tz = options.get("tz")
    if tz is not None:
        _check_tz(tz, f"{where}: read_options: tz")
    mt = options.get("missing_time")
    if mt is not None and mt not in _MISSING_TIME:
        raise PlanError(f"{where}: read_options: missing_time: {mt!r} is not allowed; write 'error' (a blank "
                        "event time is an error, the default) or 'keep' (kept as an event of unknown time, "
                        "flagged 'unknown_time').")
    dayfirst = options.get("dayfirst")
    if dayfirst is not None and not isinstance(dayfirst, bool):
        raise PlanError(f"{where}: read_options: dayfirst: write true (31/01/2025) or false (01/31/2025), "
                        f"got {dayfirst!r}.")
    for key in ("snapshot", "wide"):
        if key in options and not isinstance(options[key], Mapping):
            raise PlanError(f"{where}: read_options: {key}: give a mapping (see the plan keys in "
                            f"params/README.md), got {options[key]!r}.")


def _check_tz(tz, where: str) -> None:
    """A time zone name zoneinfo knows, or a PlanError with the closest names."""
    import zoneinfo

    if not isinstance(tz, str) or not tz.strip():
        raise PlanError(f"{where}: give a time zone name such as 'UTC' or 'Europe/Paris', got {tz!r}.")
    try:
        zoneinfo.ZoneInfo(tz)
        return
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    names = sorted(zoneinfo.available_timezones())
    by_lower = {n.lower(): n for n in names}
    close = [by_lower[c] for c in difflib.get_close_matches(tz.lower().replace(" ", "_"), list(by_lower),
                                                             n=3, cutoff=0.6)]
    if not close:  # "Paris" -> "Europe/Paris"
        close = [n for n in names if n.lower().rsplit("/", 1)[-1] == tz.lower().replace(" ", "_")][:3]
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise PlanError(f"{where}: {tz!r} is not a time zone.{hint} Use a name from the IANA time zone "
                    "database (zoneinfo.available_timezones()), e.g. 'UTC', 'Europe/Paris', 'America/New_York'.")


def _month_text(month, where: str) -> str:
    if isinstance(month, date):  # YAML reads 2017-06-01 as a date: take its month
        return str(pd.Period(month, freq="M"))
    try:
        return str(parse_month(str(month)))
    except FunnelkitError:
        raise PlanError(f"{where}: month: {month!r} is not a month; write it as 'YYYY-MM' (quoted in YAML "
                        "is safest, e.g. month: '2025-09').") from None


def _check_target(target, splits: list[str], where: str) -> None:
    def number(v, key):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise PlanError(f"{where}: target: {key}: give a revenue amount (a non-negative number), got {v!r}.")

    if target is None:
        return
    if isinstance(target, Mapping):
        for k, v in target.items():
            if k != "default" and k not in splits and k != ALL:
                raise PlanError(f"{where}: target: {k!r} is not a split of this plan ({', '.join(splits)}); "
                                "give targets per split column, or 'default'.")
            if isinstance(v, Mapping):
                for val, n in v.items():
                    number(n, f"{k}: {val}")
            else:
                number(v, k)
    else:
        number(target, "target")


def parse_only(only, *, where: str = "only") -> list[tuple[str, str | None]]:
    """Parse a subset selection: ``"product=Starter"``, ``"source"``, lists or mappings.

    Returns
    -------
    list of (split, value or None)
        ``None`` selects every value of the split.

    Examples
    --------
    >>> parse_only(["product=GTX Pro", "source"])
    [('product', 'GTX Pro'), ('source', None)]
    >>> parse_only({"product": ["A", "B"]})
    [('product', 'A'), ('product', 'B')]
    """
    if only is None:
        return []
    items: list[tuple[str, str | None]] = []
    if isinstance(only, Mapping):
        for col, vals in only.items():
            if vals in (None, ALL):
                items.append((str(col), None))
            elif isinstance(vals, (list, tuple)):
                items.extend((str(col), str(v)) for v in vals)
            else:
                items.append((str(col), str(vals)))
        return items
    if isinstance(only, str):
        only = [only]
    if not isinstance(only, (list, tuple)):
        raise PlanError(f"{where}: give 'split=value' or 'split' entries, got {only!r}.")
    for entry in only:
        text = str(entry)
        if "=" in text:
            col, val = text.split("=", 1)
            items.append((col.strip(), val.strip()))
        elif text.strip():
            items.append((text.strip(), None))
        else:
            raise PlanError(f"{where}: an empty entry; give 'split=value' or 'split'.")
    return items


def load_plan(path: str | Path) -> Plan:
    """Read and check a YAML plan; its paths are relative to the file.

    Raises
    ------
    PlanError
        If the file is missing, not YAML, or a key is wrong.

    Examples
    --------
    >>> from funnelkit.reports import load_plan
    >>> load_plan("params/demo_monthly.yaml").splits  # doctest: +SKIP
    {'product': None, 'source': None}
    """
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"plan file not found: {path}")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PlanError(f"{path}: not valid YAML: {exc}") from None
    if spec is None:
        raise PlanError(f"{path}: the plan is empty; it needs at least 'data' and 'stages'.")
    return Plan.from_dict(spec, base_dir=path.resolve().parent, source=str(path))


def expand_plan(plan: Plan, log: pd.DataFrame, *, month: str | None = None,
                only=None) -> tuple[list[ReportJob], list[str]]:
    """The reports a plan asks for, with their parameters.

    Parameters
    ----------
    plan : Plan
    log : DataFrame
        The plan's data (from :meth:`Plan.load`), to find each split's values.
    month : str, optional
        Overrides the plan's month.
    only : optional
        Subset, as in :func:`parse_only`; overrides the plan's ``only``.

    Returns
    -------
    (jobs, notes)
        The reports in order (overall, then each split's values sorted), and
        sentences about what the expansion noticed (e.g. leads with a blank
        segment value, which are in no report of that split, or a split
        written to a renamed folder).

    Raises
    ------
    PlanError
        When a split or segment value the plan names is not in the data (the
        message lists the values there are), the as-of date is before the
        month, ``only`` names a split or value the plan lacks, or no month is
        given and the data has no event time (without a month, the month of
        the latest event is reported, with a note).

    Examples
    --------
    >>> from funnelkit.reports import Plan, expand_plan
    >>> plan = Plan.from_dict({"data": "demo", "stages": "pipeline4", "splits": ["product"],
    ...                        "overall": True, "month": "2025-09"})
    >>> jobs, notes = expand_plan(plan, plan.load())
    >>> [(job.split, job.value) for job in jobs]
    [('all', 'all'), ('product', 'Enterprise'), ('product', 'Professional'), ('product', 'Starter')]
    >>> jobs[1].title, jobs[1].parameters["segment_value"], notes
    ('Monthly funnel report: product Enterprise, 2025-09', 'Enterprise', [])
    >>> [job.value for job in expand_plan(plan, plan.load(), only=["product=Starter"])[0]]
    ['Starter']
    """
    notes: list[str] = []
    month_text = _month_text(month, "--month") if month else plan.month
    if not month_text:
        last = log["timestamp"].max() if len(log) else pd.NaT
        if pd.isna(last):
            raise PlanError(f"{plan.source}: month: no month given and the data has no event time; add "
                            "'month: YYYY-MM' to the plan or pass --month YYYY-MM.")
        month_text = str(wall_clock(last).to_period("M"))
        notes.append(f"No month given: reporting {month_text}, the month of the latest event "
                     "(pass --month YYYY-MM or set 'month' in the plan to choose).")
    if plan.as_of:
        start = parse_month(month_text).start_time
        if pd.Timestamp(plan.as_of) < start:
            raise PlanError(f"{plan.source}: as_of: {plan.as_of} is before the month {month_text} starts; give "
                            f"a date on or after {start.date()} (or remove 'as_of' to report as of the end of "
                            "the month).")
    selected = parse_only(only) if only is not None else plan.only
    first = log.loc[~log["lead_id"].duplicated()]
    present: dict[str, list[str]] = {}

    def values_of(col: str) -> list[str]:
        if col not in present:
            present[col] = sorted(first[col].dropna().astype(str).unique().tolist())
        return present[col]

    def check_values(key: str, col: str, wanted: list[str]) -> None:
        there = set(values_of(col))
        absent = [v for v in wanted if v not in there]
        if absent:
            shown = values_of(col)
            listing = ", ".join(map(repr, shown[:30])) + (f" ... ({len(shown)} in all)" if len(shown) > 30 else "")
            close = sorted({c for v in absent for c in difflib.get_close_matches(v, shown, n=2, cutoff=0.6)})
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise PlanError(f"{plan.source}: {key}: no lead has {col} = {', '.join(map(repr, absent))} (as of its "
                            f"first event).{hint} Values of {col!r} in the data: {listing or 'none'}.")

    pairs: list[tuple[str, str]] = []
    if plan.overall:
        pairs.append((ALL, ALL))
    if plan.segment is not None:
        check_values("segment", plan.segment[0], [plan.segment[1]])
        pairs.append(plan.segment)
    for col, values in plan.splits.items():
        if values is None:
            blank = int(first[col].isna().sum())
            if blank:
                notes.append(f"{blank:,} leads have a blank {col!r}; they are in no {col} report.")
            values = values_of(col)
        else:
            check_values(f"splits: {col}", col, values)
            values = list(dict.fromkeys(values))
        pairs.extend((col, v) for v in values)
    known = {s for s, _ in pairs}
    for col, _ in selected:
        if col not in known:
            raise PlanError(f"only: {col!r} is not a split of this plan; splits: {', '.join(sorted(known))}.")
    resolved: list[tuple[str, str | None]] = []
    if selected:
        for col, val in selected:
            values = [v for s, v in pairs if s == col]
            if val is None or val in values:
                resolved.append((col, val))
                continue
            # the report's file name (e.g. "GTX_Basic" for "GTX Basic") names it too
            by_file = [v for v in values if safe_name(v) == val]
            if len(by_file) == 1:
                resolved.append((col, by_file[0]))
                continue
            close = difflib.get_close_matches(val, values, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            shown = ", ".join(map(repr, values[:12])) + (" ..." if len(values) > 12 else "")
            raise PlanError(f"only: {col} = {val!r} is not among this plan's reports ({shown}).{hint}")
    # folders: one per split column, never a reserved name nor another split's folder
    split_cols = [s for s in dict.fromkeys(s for s, _ in pairs) if s != ALL]  # no split is named "all"
    folders = unique_names(split_cols, reserved=RESERVED_FOLDERS)
    for col in split_cols:
        plain = safe_name(col)
        if folders[col] != plain:
            why = (f"{plain!r} is reserved" if plain.lower() in RESERVED_FOLDERS
                   else f"{plain!r} would be shared with another split")
            notes.append(f"Split {col!r} is written to the folder {folders[col]!r} ({why}).")
    jobs: list[ReportJob] = []
    for split in dict.fromkeys(s for s, _ in pairs):
        overall = split == ALL and plan.overall
        values = [v for s, v in pairs if s == split]
        names = unique_names(values, reserved_suffixes=(".failed",))
        for v in values:
            if selected and not any(split == c and (w is None or w == v) for c, w in resolved):
                continue
            stages, stages_note = plan.job_stages(split if not overall else ALL, v)
            params = {
                "data": plan.data, "columns": plan.columns, "stages": stages, "stages_note": stages_note,
                "read_options": plan.read_options, "segment_column": "" if overall else split,
                "segment_value": "" if overall else v, "month": month_text, "as_of": plan.as_of or "",
                "revenue_target": plan.target_for(split, v) or 0.0, "title": plan.title,
                "currency": plan.currency, "thousands": plan.thousands, "decimal": plan.decimal,
                "noun": plan.noun, **plan.parameters,
            }
            label = "all leads" if overall else f"{split} {v}"
            jobs.append(ReportJob(split, v, names[v], params, f"{plan.title}: {label}, {month_text}",
                                  folder=ALL if overall else folders[split], overall=overall))
    seen: dict[tuple[str, str], ReportJob] = {}
    for job in jobs:  # a last guard: two reports never share a file
        key = (job.folder.lower(), job.name.lower())
        if key in seen:
            other = seen[key]
            raise PlanError(f"{plan.source}: {other.split}={other.value!r} and {job.split}={job.value!r} would be "
                            f"written to the same file {job.folder}/{job.name}.html; rename one of them in the data.")
        seen[key] = job
    return jobs, notes
