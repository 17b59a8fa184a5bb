"""Typed errors and warnings raised by funnelkit.

Every error funnelkit raises on purpose derives from :class:`FunnelkitError`,
so ``except funnelkit.FunnelkitError`` catches them all.  Errors about input
data also derive from :class:`ValueError` so generic code keeps working.

Messages follow one rule: name the column, the rows and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "FunnelkitError",
    "InvalidEventLogError",
    "DataFileNotFoundError",
    "Problem",
    "StageSetError",
    "DataWarning",
    "ReportError",
    "PlanError",
    "FunnelSpecError",
    "PipelineError",
    "TransitionModelError",
    "ForecastError",
]


class FunnelkitError(Exception):
    """Base class of every error raised by funnelkit.

    Examples
    --------
    One ``except`` clause catches every error funnelkit raises on purpose:

    >>> import funnelkit as fk
    >>> try:
    ...     fk.get_stage_set("pipeline7")
    ... except fk.FunnelkitError as exc:
    ...     print(type(exc).__name__)
    StageSetError
    >>> issubclass(fk.PlanError, fk.FunnelkitError)
    True
    """


class StageSetError(FunnelkitError, ValueError):
    """A stage set (preset or YAML) is malformed or unknown.

    Examples
    --------
    >>> import funnelkit as fk
    >>> issubclass(fk.StageSetError, fk.FunnelkitError), issubclass(fk.StageSetError, ValueError)
    (True, True)

    Raised for a preset name that does not exist, with the closest names:

    >>> fk.get_stage_set("pipeline7")
    Traceback (most recent call last):
    ...
    funnelkit.exceptions.StageSetError: unknown stage set 'pipeline7': not a preset (pipeline4, pipeline6, aida, marketing5, tofu_mofu_bofu, sales_funnel6) and not a YAML file. Did you mean 'pipeline6', 'pipeline4'?
    """


class ReportError(FunnelkitError, RuntimeError):
    """A report could not be produced.

    Examples
    --------
    >>> import funnelkit as fk
    >>> issubclass(fk.ReportError, fk.FunnelkitError), issubclass(fk.ReportError, RuntimeError)
    (True, True)

    Raised, for instance, when the report template is not there:

    >>> fk.reports.template_parameters("no_such_template.ipynb")
    Traceback (most recent call last):
    ...
    funnelkit.exceptions.ReportError: report template not found: no_such_template.ipynb
    """


class PlanError(FunnelkitError, ValueError):
    """A report plan (YAML) is malformed: unknown keys, missing values.

    Examples
    --------
    >>> import funnelkit as fk
    >>> issubclass(fk.PlanError, fk.FunnelkitError), issubclass(fk.PlanError, ValueError)
    (True, True)

    Raised for a plan without its required ``data`` key:

    >>> fk.reports.Plan.from_dict({"title": "Monthly"})
    Traceback (most recent call last):
    ...
    funnelkit.exceptions.PlanError: plan: 'data' is required: the event log file (CSV, Parquet or XES), relative to the plan file, or 'demo' for the bundled demo data.
    """


class ForecastError(FunnelkitError, ValueError):
    """A forecast, plan or backtest cannot be computed as asked.

    Examples
    --------
    >>> import funnelkit as fk
    >>> issubclass(fk.ForecastError, fk.FunnelkitError), issubclass(fk.ForecastError, ValueError)
    (True, True)

    Raised for a horizon that is not a length of time:

    >>> fk.forecast.forecast(fk.datasets.load_demo(), horizon="soon")
    Traceback (most recent call last):
    ...
    funnelkit.exceptions.ForecastError: horizon='soon' is not a length of time; use days (90), '90D' or '3MS'.
    """


class FunnelSpecError(FunnelkitError, ValueError):
    """A funnel option is malformed: unknown mode, step or window, bad benchmark.

    Examples
    --------
    >>> import funnelkit as fk
    >>> issubclass(fk.FunnelSpecError, fk.FunnelkitError), issubclass(fk.FunnelSpecError, ValueError)
    (True, True)

    Raised for a conversion window that is not a length of time:

    >>> fk.funnel.conversion(fk.datasets.load_demo(), window="soon")
    Traceback (most recent call last):
    ...
    funnelkit.exceptions.FunnelSpecError: window must be a number of days, a timedelta or a string like '30D'; got 'soon'.
    """


class PipelineError(FunnelkitError, ValueError):
    """A pipeline question cannot be answered as asked (bad date, threshold, ...).

    Examples
    --------
    >>> import funnelkit as fk
    >>> issubclass(fk.PipelineError, fk.FunnelkitError), issubclass(fk.PipelineError, ValueError)
    (True, True)

    Raised for an ``as_of`` that is not a date:

    >>> fk.pipeline.snapshot(fk.datasets.load_demo(), as_of="not a date")
    Traceback (most recent call last):
    ...
    funnelkit.exceptions.PipelineError: as_of='not a date' is not a date: Unknown datetime string format, unable to parse: not a date
    """


class TransitionModelError(FunnelkitError, ValueError):
    """The transition model cannot be fitted or queried as asked.

    Examples
    --------
    >>> import funnelkit as fk
    >>> issubclass(fk.TransitionModelError, fk.FunnelkitError), issubclass(fk.TransitionModelError, ValueError)
    (True, True)

    Raised for a half-life that is not a positive number of days:

    >>> fk.TransitionModel(half_life=-1)
    Traceback (most recent call last):
    ...
    funnelkit.exceptions.TransitionModelError: half_life must be a positive number of days or None, got -1.
    """


class DataWarning(UserWarning):
    """Something in the input was changed or flagged, and the user should know.

    Used for exact duplicate events that were dropped (with their count), and
    similar changes that are safe but must not be silent.

    Examples
    --------
    A warning, not an error: the repeated event is dropped and counted.

    >>> import warnings
    >>> import pandas as pd, funnelkit as fk
    >>> issubclass(fk.DataWarning, UserWarning), issubclass(fk.DataWarning, fk.FunnelkitError)
    (True, False)
    >>> raw = pd.DataFrame({"lead_id": ["a", "a", "a"], "stage": ["meeting", "meeting", "won"],
    ...                     "timestamp": ["2024-01-02", "2024-01-02", "2024-01-09"]})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     log = fk.validate_events(raw, stages="pipeline4")
    >>> [(w.category.__name__, str(w.message)[:45]) for w in caught]
    [('DataWarning', 'DataFrame: dropped 1 exact duplicate event(s)')]
    >>> len(log)
    2
    """


@dataclass(frozen=True)
class Problem:
    """One problem found while validating an event log.

    Attributes
    ----------
    kind : str
        Short machine-readable kind, e.g. ``"missing_column"``,
        ``"bad_timestamp"``, ``"unknown_stage"``.
    column : str or None
        The column the problem is in (the user's name for it).
    message : str
        What is wrong, naming rows and values.
    fix : str
        What the user can do about it.
    rows : tuple of int
        Row numbers involved (1-based data rows, header excluded), first few.

    Examples
    --------
    >>> from funnelkit.exceptions import Problem
    >>> p = Problem("bad_timestamp", "timestamp", "row 3: 'yesterday' is not a date.",
    ...             "write dates as YYYY-MM-DD.", rows=(3,))
    >>> print(p)
    [timestamp] row 3: 'yesterday' is not a date.
        fix: write dates as YYYY-MM-DD.
    """

    kind: str
    column: str | None
    message: str
    fix: str = ""
    rows: tuple[int, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        where = f"[{self.column}] " if self.column else ""
        text = f"{where}{self.message}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text


class InvalidEventLogError(FunnelkitError, ValueError):
    """The input cannot be read as an event log.

    All problems found are collected and reported together, so one run shows
    everything that needs fixing (a missing column, a bad date and an unknown
    stage arrive in one message).

    Attributes
    ----------
    problems : list of Problem
    source : str
        Where the data came from (file path or ``"DataFrame"``).

    Examples
    --------
    >>> import pandas as pd, funnelkit as fk
    >>> issubclass(fk.InvalidEventLogError, fk.FunnelkitError), issubclass(fk.InvalidEventLogError, ValueError)
    (True, True)

    Every problem arrives in one error (here two missing columns):

    >>> fk.validate_events(pd.DataFrame({"lead_id": ["a"]}))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    funnelkit.exceptions.InvalidEventLogError: DataFrame: 2 problems found in the event log:
    ...
    >>> try:
    ...     fk.validate_events(pd.DataFrame({"lead_id": ["a"]}))
    ... except fk.InvalidEventLogError as exc:
    ...     print(exc.kinds, exc.source)
    ['missing_column', 'missing_column'] DataFrame
    """

    def __init__(self, problems: Sequence[Problem], source: str = "DataFrame"):
        self.problems = list(problems)
        self.source = source
        n = len(self.problems)
        head = f"{source}: {n} problem{'s' if n != 1 else ''} found in the event log:"
        body = "\n".join(f"  {i}. {p}" for i, p in enumerate(self.problems, 1))
        super().__init__(f"{head}\n{body}")

    @property
    def kinds(self) -> list[str]:
        """The kinds of the problems, in order."""
        return [p.kind for p in self.problems]


class DataFileNotFoundError(FunnelkitError, FileNotFoundError):
    """A data file to read is not there.

    Also a :class:`FileNotFoundError`, so ``except FileNotFoundError`` keeps
    catching it.  The message names the path, the folder looked in and the
    files there with the closest names.

    Attributes
    ----------
    path : str
        The path as given.
    close : list of str
        Names of files in that folder that resemble it (may be empty).

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit.exceptions import DataFileNotFoundError
    >>> issubclass(DataFileNotFoundError, fk.FunnelkitError), issubclass(DataFileNotFoundError, FileNotFoundError)
    (True, True)
    >>> try:
    ...     fk.read_events("no_such_folder/deals.csv")
    ... except FileNotFoundError as exc:
    ...     print(type(exc).__name__, exc.path)
    DataFileNotFoundError no_such_folder/deals.csv
    """

    def __init__(self, message: str, path: str = "", close: Sequence[str] = ()):
        super().__init__(message)
        self.path = path
        self.filename = path
        self.close = list(close)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
