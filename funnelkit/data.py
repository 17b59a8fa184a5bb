"""The event log: loading, adapters for real data shapes, and validation.

The canonical input of funnelkit is an **event log**: one row per event,
"lead L entered stage S at time T", with these columns:

=============  ==============================================================
``lead_id``    string; who moves (lead, deal, opportunity, visitor)
``stage``      categorical; the stage or outcome entered, named as in the
               stage set (data labels are mapped onto it)
``timestamp``  ``datetime64[ns]``, or ``datetime64[ns, tz]`` for a log in a time
               zone other than UTC (see the timezone policy); ``NaT``
               only where an adapter states the time cannot be known
``amount``     float, optional; the lead's value (deal size) at that event
``flag``       categorical; ``""`` or an anomaly that is kept, not dropped:
               ``skipped_stage``, ``moved_back``, ``after_outcome``,
               ``unknown_time``.  An input column named ``flag`` is kept
               as ``flag_user`` (the load report says so)
...            any segment columns (product, source, owner, ...):
               categorical, or numeric / datetime when the input is
=============  ==============================================================

Rows are sorted by lead, time and stage order.

**Timezone policy.** Timestamps are instants.  With ``tz="UTC"`` (the
default) they are stored tz-naive in UTC; with any other zone they are stored
timezone-aware (``datetime64[ns, tz]``: kept in UTC, shown as wall-clock time
in ``tz``), so a duration across a clock change is exact.  Input with UTC
offsets is converted to ``tz``; naive input is wall-clock time in ``tz``
(a time in the repeated hour when clocks go back is read as its first pass,
one in the skipped hour as the first moment after it; notes name the rows).
A column that mixes naive and aware values is an error (there is no safe
guess), listing rows of each kind.  Every view accepts both kinds of log; an
as-of date means the end of that day in the log's zone.

**Dates are read one way.**  Numeric day/month dates (``01/02/2024``) are
read under one convention for the whole column: day first with
``dayfirst=True``, month first with ``dayfirst=False``; left unset, a column
with day-first dates (``31/01/2024``) or whose dates read both ways is an
error asking for it.  ISO dates are never read day first.  Numbers in the
time column are Unix epoch times (``time_unit=``, inferred from their size
when only one unit gives dates in 1971-2099).  Times before 1900 or from
2100 on are an error (typos, placeholders such as 9999-12-31).

**Nothing is dropped silently.**  Bad input raises one
:class:`~funnelkit.exceptions.InvalidEventLogError` listing every problem;
exact duplicate events (identical as read) are dropped with a
:class:`DataWarning` saying how many; events of two labels mapped onto one
stage at the same time are merged, and events of labels in ``ignore=`` are
left out, each with a count in the load report; business anomalies are kept
and flagged.  What happened during the load is in ``log.attrs["funnelkit"]``
(a :class:`LoadReport`).

**Real process logs.**  XES files (``.xes``, ``.xes.gz``) are read by
:func:`funnelkit.xes.read_xes`; tables with the process-mining column names
``case:concept:name``, ``concept:name`` and ``time:timestamp`` (pm4py) are
recognised without a mapping.
"""

from __future__ import annotations

import codecs
import difflib
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ._common import time_zone
from .exceptions import DataFileNotFoundError, DataWarning, InvalidEventLogError, Problem
from .stages import LOST_ORDER, StageSet, get_stage_set

__all__ = [
    "LEAD",
    "STAGE",
    "TIME",
    "AMOUNT",
    "FLAG",
    "LoadReport",
    "read_events",
    "validate_events",
    "from_wide",
    "from_stage_tables",
    "from_snapshot",
    "stage_order",
    "log_stage_set",
    "segment_columns",
    "known_at",
    "checked_order",
    "checked_leads",
    "checked_times",
]

LEAD, STAGE, TIME, AMOUNT, FLAG = "lead_id", "stage", "timestamp", "amount", "flag"
REQUIRED = (LEAD, STAGE, TIME)
FLAGS = ("", "skipped_stage", "moved_back", "after_outcome", "unknown_time")
_ATTR = "funnelkit"

#: the dtype the DataFrame constructor gives a column of Python strings
_TEXT_DTYPE = pd.Series(np.array(["a"], dtype=object)).dtype

_TZ_SUFFIX = re.compile(r"(?:[zZ]|[+-]\d{2}:?\d{2})$")


@dataclass
class LoadReport:
    """What happened while an event log was loaded.

    Attributes
    ----------
    source : str
    rows_read : int
        Rows in the input.
    events : int
        Rows in the event log returned.
    leads : int
    duplicates_dropped : int
        Exact duplicate events removed (identical as read).
    merged : int
        Events merged into another because their labels map onto the same
        stage at the same time for the same lead.
    ignored : dict
        Events left out per label named in ``ignore=``.
    flags : dict
        Count of events per anomaly flag (kept in the log).
    notes : list of str
        Plain sentences about what was inferred or is unknown.
    stage_set : StageSet or None

    Examples
    --------
    Every loader leaves one in the log's ``attrs``:

    >>> import funnelkit as fk
    >>> report = fk.datasets.load_demo().attrs["funnelkit"]
    >>> report.events, report.leads, report.flags
    (17152, 6000, {'moved_back': 75, 'skipped_stage': 31})
    >>> print(fk.LoadReport(source="crm.csv", rows_read=10, events=9, leads=4, duplicates_dropped=1))
    Event log from crm.csv: 10 rows read -> 9 events for 4 leads.
    Dropped 1 exact duplicate events.
    """

    source: str = "DataFrame"
    rows_read: int = 0
    events: int = 0
    leads: int = 0
    duplicates_dropped: int = 0
    merged: int = 0
    ignored: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stage_set: StageSet | None = None

    def __str__(self) -> str:
        lines = [
            f"Event log from {self.source}: {self.rows_read:,} rows read -> "
            f"{self.events:,} events for {self.leads:,} leads.",
        ]
        if self.stage_set is not None:
            lines.append(f"Stage set: {self.stage_set!r}")
        if self.duplicates_dropped:
            lines.append(f"Dropped {self.duplicates_dropped:,} exact duplicate events.")
        for name, n in self.flags.items():
            if n:
                lines.append(f"Flagged (kept) {n:,} events as {name!r}.")
        lines.extend(self.notes)
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return "\n".join(f"- {line}" for line in str(self).splitlines())

    def _repr_html_(self) -> str:
        """The load report in Jupyter: counts first, then what was dropped, flagged and inferred."""
        import html

        e = html.escape
        head = (f"<p><b>Event log</b> from {e(str(self.source))}: {self.rows_read:,} rows read &rarr; "
                f"<b>{self.events:,} events</b> for <b>{self.leads:,} leads</b>.</p>")
        items = []
        if self.stage_set is not None:
            items.append(f"Stage set: {e(repr(self.stage_set))}")
        if self.duplicates_dropped:
            items.append(f"Dropped {_n(self.duplicates_dropped, 'exact duplicate event')}.")
        if self.merged:
            items.append(f"Merged {_n(self.merged, 'event')} whose labels map onto one stage at the same time.")
        for name, n in self.ignored.items():
            items.append(f"Left out {_n(n, 'event')} labelled {e(repr(name))} (ignore=).")
        for name, n in self.flags.items():
            if n:
                items.append(f"Flagged (kept) {_n(n, 'event')} as {e(repr(name))}.")
        items.extend(e(str(n)) for n in self.notes)
        body = "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""
        return f"<div class='funnelkit-result'>{head}{body}</div>"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _rows_text(positions: Sequence[int] | np.ndarray, limit: int = 5) -> str:
    pos = [int(p) for p in positions]
    shown = ", ".join(str(p) for p in pos[:limit])
    more = f" and {len(pos) - limit:,} more" if len(pos) > limit else ""
    word = "row" if len(pos) == 1 else "rows"
    return f"{word} {shown}{more}"


def _values_text(values: Sequence[object], limit: int = 5) -> str:
    return ", ".join(repr(v) for v in list(values)[:limit])


def log_stage_set(log: pd.DataFrame) -> StageSet | None:
    """The stage set a log was loaded with (from its attrs), if any.

    Examples
    --------
    >>> import pandas as pd, funnelkit as fk
    >>> log_stage_set(fk.datasets.load_demo())
    <StageSet pipeline4: qualification > meeting > proposal > close (won='won', lost=['lost'])>
    >>> print(log_stage_set(pd.DataFrame({"lead_id": ["a"], "stage": ["won"]})))
    None
    """
    rep = log.attrs.get(_ATTR)
    return rep.stage_set if isinstance(rep, LoadReport) else None


def stage_order(log: pd.DataFrame, stages: StageSet, *, stage: str = STAGE) -> np.ndarray:
    """Integer order of each event's stage: 0.. for steps, -1 for lost, -2 unknown.

    Vectorised through the categorical codes of the stage column.

    Examples
    --------
    >>> import pandas as pd, funnelkit as fk
    >>> log = pd.DataFrame({"stage": ["meeting", "Closed Won", "lost", "churned"]})
    >>> stage_order(log, fk.get_stage_set("pipeline4"))
    array([ 1,  4, -1, -2])
    """
    cat = pd.Categorical(log[stage])
    lookup = np.array(
        [stages.order(c) if stages.canonical(c) is not None else -2 for c in cat.categories] + [-2],
        dtype=np.int64,
    )
    codes = cat.codes.astype(np.int64)
    return lookup[np.where(codes < 0, len(lookup) - 1, codes)]


def segment_columns(log: pd.DataFrame) -> list[str]:
    """The segment columns of a canonical log (everything but the core ones).

    Examples
    --------
    >>> import funnelkit as fk
    >>> segment_columns(fk.datasets.load_demo())
    ['product', 'source', 'owner']
    """
    core = {LEAD, STAGE, TIME, AMOUNT, FLAG}
    return [c for c in log.columns if c not in core]


#: Event times outside this range are an error: typos such as 2999, placeholders
#: such as 9999-12-31 are not events of a funnel.
PLAUSIBLE_TIMES = (pd.Timestamp("1900-01-01"), pd.Timestamp("2100-01-01"))
TIME_UNITS = ("s", "ms", "us", "ns")
#: A day/month/year date written with numbers only: 31/01/2024, 1.2.24, 01-02-2024 10:00.
_DMY = re.compile(r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})(?:\D|$)")
_DECIMAL_COMMA = r"^\s*-?(?:\d{1,3}(?:[.\s]\d{3})+|\d+),\d+\s*$"
_EPOCH_TEXT = re.compile(r"^\s*-?\d{9,}(?:\.\d+)?\s*$")
_UNIT_WORD = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def _check_tz(tz: object, source: str = "DataFrame") -> object:
    """The log's zone as validate_events uses it: ``"UTC"`` (naive UTC) for None and
    for UTC however spelt, an IANA name as given, or a ``tzinfo`` object as given.

    Anything else is one clear error: a misspelt name gets a did-you-mean
    (zoneinfo names); a number or other non-text value is refused (pandas
    would read ``tz=123`` as an offset of 123 seconds, and ``tz=0`` as aware
    UTC instead of the naive UTC of ``tz="UTC"``).
    """
    import datetime as _dt

    if tz is None:
        return "UTC"
    if isinstance(tz, _dt.tzinfo):
        return tz  # a tzinfo object (zoneinfo, datetime.timezone, pytz, dateutil): pandas uses it as given
    if not isinstance(tz, str):
        raise InvalidEventLogError(
            [
                Problem(
                    "bad_timezone",
                    None,
                    f"tz={tz!r} ({type(tz).__name__}) is not a time zone: tz= takes the name of "
                    "a zone (pandas would read a number as an offset in seconds).",
                    "pass an IANA name such as tz='Europe/Paris' or tz='America/New_York', or "
                    "tz='UTC' (the default) for times in UTC.",
                )
            ],
            source=source,
        )
    if tz.strip().upper() == "UTC":
        return "UTC"  # UTC however spelt: stored naive, as the timezone policy says
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(tz)
        return tz
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    names = sorted(zoneinfo.available_timezones())
    close = difflib.get_close_matches(tz, names, n=3, cutoff=0.8)
    if not close:  # "paris" -> "Europe/Paris": compare the part after the slash
        by_city = {n.rsplit("/", 1)[-1].lower(): n for n in names}
        close = [by_city[c] for c in difflib.get_close_matches(tz.lower(), list(by_city), n=3, cutoff=0.7)]
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    raise InvalidEventLogError(
        [
            Problem(
                "bad_timezone",
                None,
                f"tz={tz!r} is not a time zone known to this computer (IANA names such as "
                "'Europe/Paris', 'America/New_York' or 'UTC').",
                f"{hint}pass a name from zoneinfo.available_timezones().",
            )
        ],
        source=source,
    )


#: What ``missing_time=`` accepts, and what each value means (the plan loader's wording).
MISSING_TIME = ("error", "keep")


def _check_missing_time(missing_time: object, source: str = "DataFrame") -> None:
    if isinstance(missing_time, str) and missing_time in MISSING_TIME:
        return
    raise InvalidEventLogError(
        [
            Problem(
                "bad_option",
                None,
                f"missing_time={missing_time!r} is not allowed.",
                "write missing_time='error' (a blank event time is an error, the default) or "
                "missing_time='keep' (kept as an event of unknown time, flagged 'unknown_time').",
            )
        ],
        source=source,
    )


def _missing_file(path: Path) -> DataFileNotFoundError:
    """The error for a data file that is not there: the path, the folder, the closest names."""
    folder = path.parent.resolve()
    close: list[str] = []
    if not folder.is_dir():
        where = f"the folder {str(folder)!r} does not exist"
    else:
        names = []
        try:
            for k, entry in enumerate(folder.iterdir()):
                if k >= 10_000:  # a huge folder: the first names are enough for a hint
                    break
                if entry.is_file():
                    names.append(entry.name)
        except OSError:
            pass
        close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.6)
        where = f"looked in {str(folder)!r}; " + (
            f"did you mean {' or '.join(map(repr, close))}?" if close else "no file there has a similar name"
        )
    return DataFileNotFoundError(
        f"no such file: {str(path)!r} ({where}).\n    fix: correct the path (absolute, or relative to "
        f"the working folder {str(Path.cwd())!r}).",
        str(path),
        close,
    )


def _regex_mask(s: pd.Series, pattern: str) -> np.ndarray:
    """Where text matches ``pattern`` (RE2 syntax, vectorised in pyarrow); missing is False."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arr = pa.array(s.astype("string"), from_pandas=True)
        hit = pc.fill_null(pc.match_substring_regex(arr, pattern), False)
        return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool).copy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return s.astype("string").str.contains(pattern, na=False).to_numpy(dtype=bool).copy()


def _text_categories(s: pd.Series) -> bool:
    """A categorical of texts (cells then convert to text as their categories do)."""
    return isinstance(s.dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(s.cat.categories.dtype)


def _blank_mask(s: pd.Series) -> np.ndarray:
    """True where a cell is missing or only spaces (a fresh, writable array)."""
    blank = s.isna().to_numpy(dtype=bool).copy()
    if _text_categories(s):
        # judged once per category, not once per cell (no column of texts is made)
        cats = pd.Series(s.cat.categories).astype("string").str.strip() == ""
        cat_blank = np.append(cats.fillna(False).to_numpy(dtype=bool), False)
        blank |= cat_blank[s.cat.codes.to_numpy()]  # code -1 (missing) picks the last: False
        return blank
    if (
        pd.api.types.is_object_dtype(s.dtype)
        or pd.api.types.is_string_dtype(s.dtype)
        or isinstance(s.dtype, pd.CategoricalDtype)
    ):
        text = s.astype("string").str.strip() == ""
        blank |= text.fillna(False).to_numpy(dtype=bool)
    return blank


def _stripped_labels(s: pd.Series) -> pd.Categorical:
    """``pd.Categorical(s.astype("string").str.strip())``, without a column of texts for a categorical.

    A categorical column (as the lean CSV reader makes) is stripped once per
    category actually used; the result is the same categorical, categories
    and codes.
    """
    if not _text_categories(s):
        return pd.Categorical(s.astype("string").str.strip())
    codes = np.asarray(s.cat.codes.to_numpy(), dtype=np.int64)
    n_cats = len(s.cat.categories)
    used = np.bincount(codes[codes >= 0], minlength=n_cats) > 0
    stripped = pd.Series(s.cat.categories[used]).astype("string").str.strip()
    small = pd.Categorical(stripped)  # the categories pd.Categorical makes of the used values
    lut = np.full(n_cats + 1, -1, dtype=np.int64)
    lut[np.flatnonzero(used)] = small.codes
    return pd.Categorical.from_codes(lut[codes], dtype=small.dtype)


def _unit_by_magnitude(values: np.ndarray) -> str | None:
    """The epoch unit under which every value is a date in 1971-2099, if exactly one."""
    a = np.abs(values)
    lo, hi = 31_536_000.0, 4_102_444_800.0  # 1971-01-01 and 2100-01-01 in seconds
    for k, unit in enumerate(TIME_UNITS):
        f = 1000.0**k
        if ((a >= lo * f) & (a < hi * f)).all():
            return unit
    return None


def _epoch_times(vals: pd.Series, raw: pd.Series, *, tz, time_unit, column, pos):
    """Numbers as Unix epoch times (UTC instants), converted to the log's zone."""
    problems: list[Problem] = []
    notes: list[str] = []
    nonnull = vals.notna().to_numpy()
    x = vals.to_numpy(dtype="float64", na_value=np.nan)
    unit = time_unit
    if unit is None:
        unit = _unit_by_magnitude(x[nonnull]) if nonnull.any() else "s"
        if unit is None:
            looks_excel = bool(((x[nonnull] > 10_000) & (x[nonnull] < 80_000)).mean() > 0.5)
            excel = (
                " Excel serial day numbers (e.g. 45000 for 2023-03-15): convert them first with "
                "pd.to_datetime(col, unit='D', origin='1899-12-30')."
                if looks_excel
                else ""
            )
            problems.append(
                Problem(
                    "numeric_timestamp",
                    column,
                    f"holds numbers, not dates (e.g. {_values_text(raw[nonnull].head(3))}), and their "
                    "size does not say which unit they count since 1970-01-01 (not all of them are "
                    "dates in 1971-2099 under any one unit).",
                    "pass time_unit='s' (Unix seconds), 'ms', 'us' or 'ns'." + excel,
                    tuple(int(p) for p in pos[nonnull][:20]),
                )
            )
            return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]"), problems, notes
        lo = np.nanmin(x) if nonnull.any() else np.nan
        hi = np.nanmax(x) if nonnull.any() else np.nan
        notes.append(
            f"Column {column!r} holds numbers: read as Unix epoch {_UNIT_WORD[unit]} (UTC) because "
            f"every value ({lo:,.0f} .. {hi:,.0f}) is then a date in 1971-2099; pass time_unit= "
            "if that is wrong."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(vals, unit=unit, errors="coerce")
    return parsed, problems, notes  # naive UTC: _parse_times puts it in the log's zone


def _resolve_dayfirst(text: pd.Series, ok: np.ndarray, dayfirst, column: str, pos: np.ndarray):
    """Decide how the numeric day/month dates of a column are read, never two ways.

    Returns ``(is_dmy mask, dayfirst to use, problems, notes)``.
    """
    problems: list[Problem] = []
    notes: list[str] = []
    n = len(text)
    is_dmy = np.zeros(n, dtype=bool)
    if not ok.any():
        return is_dmy, bool(dayfirst), problems, notes
    hit = _regex_mask(text, _DMY.pattern) & ok
    if not hit.any():
        return is_dmy, bool(dayfirst), problems, notes
    # split the day/month/year fields of the distinct matching values only
    codes, uniq = pd.factorize(text.where(hit))
    parts = pd.Series(uniq, dtype="string").str.extract(_DMY)
    ua = pd.to_numeric(parts[0], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    ub = pd.to_numeric(parts[1], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    a = np.r_[ua, np.nan][codes]
    b = np.r_[ub, np.nan][codes]
    matched = ~np.isnan(a) & ok
    is_dmy = matched
    day_only = matched & (a > 12) & (b <= 12)  # 31/01/2024: day first
    month_only = matched & (b > 12) & (a <= 12)  # 01/31/2024: month first
    either = matched & (a <= 12) & (b <= 12) & (a != b)  # 01/02/2024: both readings are dates

    def ex(mask: np.ndarray) -> str:
        return f"{_rows_text(pos[mask], 3)} ({_values_text(text[mask].head(2))})"

    rows = tuple(int(p) for p in pos[day_only | month_only | either][:20])
    if day_only.any() and month_only.any():
        problems.append(
            Problem(
                "ambiguous_dates",
                column,
                f"mixes day-first dates ({ex(day_only)}) with month-first dates ({ex(month_only)}); "
                "no single reading fits the column.",
                "write the dates in one convention, preferably ISO 8601 ('2024-01-31').",
                rows,
            )
        )
        return is_dmy, False, problems, notes
    if dayfirst is None:
        if day_only.any():
            others = (
                f"; funnelkit will not guess how to read the others, e.g. {ex(either)} could be "
                "either day or month first"
                if either.any()
                else ""
            )
            problems.append(
                Problem(
                    "ambiguous_dates",
                    column,
                    f"has day-first dates ({ex(day_only)}){others}.",
                    "pass dayfirst=True to read every date in the column day first (31/01/2024 is "
                    "31 January), or write ISO 8601 dates ('2024-01-31').",
                    rows,
                )
            )
        elif month_only.any():
            notes.append(
                f"Column {column!r}: numeric dates read month first (e.g. {_values_text(text[month_only].head(1))} "
                "can only be read that way)."
            )
        elif either.any():
            problems.append(
                Problem(
                    "ambiguous_dates",
                    column,
                    f"every numeric date can be read day first or month first ({ex(either)}: "
                    "1 February or 2 January?).",
                    "pass dayfirst=True (31/01/2024 style) or dayfirst=False (01/31/2024 style), or "
                    "write ISO 8601 dates ('2024-01-31').",
                    rows,
                )
            )
        return is_dmy, False, problems, notes
    if dayfirst and month_only.any():
        problems.append(
            Problem(
                "ambiguous_dates",
                column,
                f"dayfirst=True, but {ex(month_only)} can only be month first.",
                "correct those dates, or pass dayfirst=False if the column is month first.",
                tuple(int(p) for p in pos[month_only][:20]),
            )
        )
    if not dayfirst and day_only.any():
        problems.append(
            Problem(
                "ambiguous_dates",
                column,
                f"dayfirst=False, but {ex(day_only)} can only be day first.",
                "pass dayfirst=True if the column is day first, or correct those dates.",
                tuple(int(p) for p in pos[day_only][:20]),
            )
        )
    return is_dmy, bool(dayfirst), problems, notes


def _to_datetime(values: pd.Series, *, dayfirst: bool, utc: bool) -> pd.Series:
    """Vectorised parse with one format guess, then element-wise for the failures."""
    kwargs = {"errors": "coerce", "dayfirst": dayfirst, "utc": utc}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if utc:
            parsed = pd.to_datetime(values, format="ISO8601", **kwargs)
        else:
            parsed = pd.to_datetime(values, **kwargs)
        bad = parsed.isna().to_numpy() & values.notna().to_numpy()
        if bad.any():  # inconsistent formats: retry the failures one by one
            parsed = parsed.where(~bad, pd.to_datetime(values.where(bad), format="mixed", **kwargs))
    return parsed


def _parse_times(
    raw: pd.Series,
    *,
    tz: str,
    dayfirst: bool | None,
    column: str,
    pos: np.ndarray | None = None,
    time_unit: str | None = None,
):
    """Parse a column of timestamps under the timezone policy.

    Returns the parsed naive ``datetime64[ns]`` series, a list of problems and
    a list of notes.  ``pos`` are the 1-based row numbers used in messages.
    """
    problems: list[Problem] = []
    notes: list[str] = []
    pos = np.arange(1, len(raw) + 1) if pos is None else np.asarray(pos)
    raw = raw.reset_index(drop=True)
    blank = _blank_mask(raw)
    nat = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    dtype = raw.dtype

    def numbers_in_text() -> bool:
        if not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)) or blank.all():
            return False
        numeric = {"integer", "floating", "mixed-integer-float"}
        kinds = pd.api.types.infer_dtype(raw[~blank].head(1000), skipna=True)
        if kinds in numeric:
            return pd.api.types.infer_dtype(raw[~blank], skipna=True) in numeric
        if kinds != "string":
            return False
        filled = raw[~blank]
        if not _regex_mask(filled.head(50), _EPOCH_TEXT.pattern).all():
            return False
        return bool(_regex_mask(filled, _EPOCH_TEXT.pattern).all())

    if (
        time_unit is not None
        and not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))
        and not numbers_in_text()
    ):
        problems.append(
            Problem(
                "bad_option",
                column,
                f"time_unit={time_unit!r} is for epoch numbers, but the column holds {dtype} values "
                f"such as {_values_text(raw[~blank].head(2))}.",
                "leave time_unit= unset for date strings and datetimes.",
            )
        )
        return nat, problems, notes

    utc_source = False  # True: the parsed values are naive UTC instants, else wall-clock in tz
    if pd.api.types.is_datetime64_any_dtype(dtype):
        parsed = raw
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
            utc_source = True
    elif pd.api.types.is_bool_dtype(dtype):
        problems.append(
            Problem(
                "bad_timestamp",
                column,
                "holds true/false values, not dates.",
                "map the column that holds the event times to 'timestamp'.",
            )
        )
        return nat, problems, notes
    elif pd.api.types.is_numeric_dtype(dtype) or numbers_in_text():
        vals = pd.to_numeric(raw.where(~blank), errors="coerce")
        parsed, p, nt = _epoch_times(vals, raw, tz=tz, time_unit=time_unit, column=column, pos=pos)
        utc_source = True
        problems += p
        notes += nt
        if p:
            return nat, problems, notes
    else:
        values = raw.where(~blank)
        all_text = not pd.api.types.is_object_dtype(dtype) or bool(
            values[~blank].map(lambda v: isinstance(v, str)).all()
        )
        if all_text:
            text = values.astype("string").str.strip()
            aware = _regex_mask(text, _TZ_SUFFIX.pattern)
        else:
            text = values.map(lambda v: v.strip() if isinstance(v, str) else v)
            aware = (
                values.map(
                    lambda v: (
                        bool(_TZ_SUFFIX.search(v.strip()))
                        if isinstance(v, str)
                        else getattr(v, "tzinfo", None) is not None
                    )
                )
                .to_numpy(dtype=bool)
                .copy()
            )
        aware &= ~blank
        naive = ~blank & ~aware
        if aware.any() and naive.any():
            problems.append(
                Problem(
                    "mixed_timezones",
                    column,
                    f"mixes timezone-aware values ({_rows_text(pos[aware])}, e.g. "
                    f"{_values_text(raw[aware].head(2))}) with naive ones ({_rows_text(pos[naive])}, "
                    f"e.g. {_values_text(raw[naive].head(2))}); funnelkit will not guess which "
                    "zone the naive ones are in.",
                    "write every timestamp with an offset (e.g. '2024-03-01T09:00:00+01:00'), "
                    "or none of them and pass tz= for the zone they are in.",
                    tuple(int(p) for p in pos[naive][:20]),
                )
            )
            return nat, problems, notes
        str_mask = ~blank
        if not all_text:
            str_mask &= values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        is_dmy, first, p, nt = _resolve_dayfirst(
            text.astype("string") if all_text else text.where(str_mask).astype("string"),
            str_mask,
            dayfirst,
            column,
            pos,
        )
        problems += p
        notes += nt
        if p:
            return nat, problems, notes
        utc = bool(aware.any())
        if is_dmy.any():
            # day/month dates under the one resolved convention; everything else
            # (ISO and other spelled-out formats) never day first: '2024-01-02' is 2 January
            rest = _to_datetime(text.where(~is_dmy), dayfirst=False, utc=utc)
            dmy = _to_datetime(text.where(is_dmy), dayfirst=first, utc=utc)
            parsed = rest.where(~is_dmy, dmy)
        else:
            parsed = _to_datetime(text if all_text else values, dayfirst=False, utc=utc)
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
            utc_source = True

    bad = parsed.isna().to_numpy() & ~blank
    if bad.any():
        dmy_like = raw[bad].astype("string").str.match(_DMY).fillna(False).any()
        problems.append(
            Problem(
                "bad_timestamp",
                column,
                f"{int(bad.sum()):,} value(s) are not dates: {_rows_text(pos[bad])} "
                f"({_values_text(raw[bad].head(5))}).",
                "correct those cells (ISO 8601 such as '2024-03-01 09:30' is safest)"
                + (
                    "; for numeric dates say which comes first with dayfirst=True or False."
                    if dmy_like
                    else "."
                ),
                tuple(int(p) for p in pos[bad][:20]),
            )
        )
    lo, hi = PLAUSIBLE_TIMES
    outside = (parsed.notna() & ((parsed < lo) | (parsed >= hi))).to_numpy(dtype=bool)
    if outside.any():
        problems.append(
            Problem(
                "implausible_timestamp",
                column,
                f"{int(outside.sum()):,} time(s) lie outside {lo:%Y-%m-%d} .. {hi - pd.Timedelta(days=1):%Y-%m-%d}, "
                f"the range of plausible event times: {_rows_text(pos[outside])} "
                f"({_values_text(raw[outside].head(5))}).",
                "correct the typos; a placeholder such as 9999-12-31 means 'no date': "
                "blank those cells and pass missing_time='keep'.",
                tuple(int(p) for p in pos[outside][:20]),
            )
        )
        parsed = parsed.where(~outside)
    parsed = parsed.astype("datetime64[ns]")
    if str(tz) != "UTC":
        parsed, nt = _in_zone(parsed, tz, utc_source=utc_source, column=column, pos=pos)
        notes += nt
    return parsed, problems, notes


def _in_zone(parsed: pd.Series, tz: str, *, utc_source: bool, column: str, pos: np.ndarray):
    """Naive times as instants in the log's zone ``tz`` (an aware column: kept in UTC,
    shown as wall-clock in ``tz``, so durations across clock changes are exact).

    ``utc_source``: the naive values are UTC instants (the input had offsets or was
    epoch numbers).  Otherwise they are wall-clock times in ``tz``: a time in the hour
    that repeats when clocks go back is read as its first (summer-time) pass, a time
    in the hour skipped when they go forward as the first moment after the gap; both
    are said in the notes with their rows.
    """
    if utc_source:
        return parsed.dt.tz_localize("UTC").dt.tz_convert(tz), []
    notes = []
    filled = parsed.notna().to_numpy()
    strict = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").isna().to_numpy() & filled
    if not strict.any():
        return parsed.dt.tz_localize(tz), notes
    summer = np.ones(len(parsed), dtype=bool)
    skipped = parsed.dt.tz_localize(tz, ambiguous=summer, nonexistent="NaT").isna().to_numpy() & filled
    repeated = strict & ~skipped
    if repeated.any():
        notes.append(
            f"{_n(int(repeated.sum()), 'time')} in column {column!r} "
            f"{'falls' if repeated.sum() == 1 else 'fall'} in the hour that repeats "
            f"when clocks go back in {tz} ({_rows_text(pos[repeated])}); read as its first "
            "(summer-time) pass. Write the times with their UTC offset to be exact."
        )
    if skipped.any():
        notes.append(
            f"{_n(int(skipped.sum()), 'time')} in column {column!r} "
            f"{'falls' if skipped.sum() == 1 else 'fall'} in the hour skipped when "
            f"clocks go forward in {tz} ({_rows_text(pos[skipped])}), so cannot have happened there; "
            "read as the first moment after the gap. Check the tz= of this log."
        )
    return parsed.dt.tz_localize(tz, ambiguous=summer, nonexistent="shift_forward"), notes


# ---------------------------------------------------------------------------
# validation: the single gate every loader goes through
# ---------------------------------------------------------------------------
#: Column names that process-mining tools (XES, pm4py) use for the three
#: required columns; recognised when the canonical names are absent.
PM4PY_COLUMNS = {"case:concept:name": LEAD, "concept:name": STAGE, "time:timestamp": TIME}


def _n(k: int, word: str) -> str:
    """'1 event', '2 events', '1,234 events'."""
    return f"{k:,} {word}{'' if k == 1 else 's'}"


def _free_name(base: str, taken) -> str:
    name, k = f"{base}_user", 2
    while name in taken:
        name, k = f"{base}_user{k}", k + 1
    return name


def _column_problems(data: pd.DataFrame, columns: Mapping[str, str]) -> list[Problem]:
    """Duplicate column names, and mappings that would make two columns one."""
    problems: list[Problem] = []
    names = pd.Index(data.columns)
    for c in names[names.duplicated()].unique():
        where = [i + 1 for i, x in enumerate(names) if x == c]
        problems.append(
            Problem(
                "duplicate_column",
                str(c),
                f"the data has {len(where)} columns named {c!r} (columns "
                f"{', '.join(map(str, where))}); funnelkit cannot tell which one is meant.",
                "rename or drop the extra ones before loading, e.g. "
                "df = df.loc[:, ~df.columns.duplicated()].",
            )
        )
    targets: dict[str, list[str]] = {}
    for src, dst in columns.items():
        if src in names:
            targets.setdefault(dst, []).append(src)
    for dst, srcs in targets.items():
        if len(srcs) > 1:
            problems.append(
                Problem(
                    "duplicate_mapping",
                    dst,
                    f"columns= maps {' and '.join(map(repr, srcs))} "
                    f"{'both' if len(srcs) == 2 else 'all'} to {dst!r}; an event log "
                    f"has one {dst!r} column.",
                    f"map only one of them to {dst!r}; leave the others out of columns= (they "
                    "stay segments under their own names).",
                )
            )
        elif dst in names and dst not in columns and srcs[0] != dst:
            problems.append(
                Problem(
                    "mapping_clash",
                    dst,
                    f"columns= maps {srcs[0]!r} to {dst!r}, but the data already has a column "
                    f"{dst!r}; the two would clash.",
                    f"drop the one you do not want first (data.drop(columns={dst!r})), or rename "
                    f"the existing one too: columns={{{srcs[0]!r}: {dst!r}, {dst!r}: "
                    f"{dst + '_original'!r}}}.",
                )
            )
    return problems


def _stripped_ids(raw: pd.Series, notes: list[str]) -> pd.Series:
    """Lead ids as text without spaces around them; a note says how many ids that changed
    and which of them then became another lead's id (their events are merged into it).

    CSV exports pad ids (``" L1 "``); they are the same lead as ``"L1"``.  Which
    cells changed is found by comparing text lengths in Arrow (no per-cell Python).
    """
    text = raw.astype("string")
    out = text.str.strip()
    try:
        import pyarrow.compute as pc

        longer = pc.not_equal(
            pc.binary_length(text.array.__arrow_array__()), pc.binary_length(out.array.__arrow_array__())
        )
        changed = np.asarray(pc.fill_null(longer, False).to_numpy(zero_copy_only=False), dtype=bool)
    except (AttributeError, TypeError, ImportError):  # pragma: no cover - the string dtype is Arrow-backed
        changed = (text.str.len() != out.str.len()).fillna(False).to_numpy(dtype=bool)
    if not changed.any():
        return out
    spellings = pd.Series(pd.unique(text[changed]), dtype="string")
    ids = spellings.str.strip()
    plain = out[~changed]
    merged = set(ids[ids.duplicated(keep=False)]) | set(plain[plain.isin(ids)].unique())
    example = spellings[ids.isin(merged)].iloc[0] if merged else spellings.iloc[0]
    stripped = example.strip()
    msg = (
        f"Lead ids with spaces around them were stripped on {_n(int(changed.sum()), 'event')} "
        f"({_n(len(spellings), 'distinct id')}, e.g. {example!r} -> {stripped!r})"
    )
    if merged:
        msg += (
            f"; {_n(len(merged), 'id')} then {'equals' if len(merged) == 1 else 'equal'} another id "
            f"in the data, and their events are one lead's (e.g. {example!r} and {stripped!r} are "
            f"lead {stripped!r}). If padded "
            "ids are different leads, make them differ in more than spaces"
        )
    notes.append(msg + ".")
    return out


def _lead_ids(raw: pd.Series, pos: np.ndarray) -> tuple[pd.Series, list[Problem], list[str]]:
    """Lead ids as stripped text; whole-number floats (123.0) become '123'."""
    problems: list[Problem] = []
    notes: list[str] = []
    is_float_col = pd.api.types.is_float_dtype(raw.dtype)
    float_cells = None
    if not is_float_col and pd.api.types.is_object_dtype(raw.dtype):
        float_cells = raw.map(lambda v: isinstance(v, (float, np.floating))).to_numpy(dtype=bool)
        if not float_cells.any():
            float_cells = None
    if not is_float_col and float_cells is None:
        return _stripped_ids(raw, notes), problems, notes
    mask = np.ones(len(raw), dtype=bool) if is_float_col else float_cells
    x = pd.to_numeric(raw.where(mask), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(x)
    bad = mask & ((finite & (x != np.round(x))) | np.isinf(x))
    big = mask & finite & (np.abs(x) > 2**53)
    if bad.any():
        problems.append(
            Problem(
                "bad_lead_id",
                LEAD,
                f"{int(bad.sum()):,} lead id(s) are numbers with a fraction: {_rows_text(pos[bad])} "
                f"({_values_text(raw[bad].head(5))}); a lead id is a label, and funnelkit will "
                "not round it into another lead's.",
                "read the id column as text (e.g. pd.read_csv(..., dtype={'id': str})) or correct those ids.",
                tuple(int(p) for p in pos[bad][:20]),
            )
        )
    if big.any():
        problems.append(
            Problem(
                "bad_lead_id",
                LEAD,
                f"{int(big.sum()):,} lead id(s) are floats above 2**53 ({_rows_text(pos[big])}): "
                "digits were lost when they became floats, so different leads may share an id.",
                "read the id column as text (e.g. pd.read_csv(..., dtype={'id': str})).",
                tuple(int(p) for p in pos[big][:20]),
            )
        )
    whole = mask & finite & ~bad & ~big
    text = _stripped_ids(raw, notes)
    if whole.any():
        as_int = pd.Series(x[whole].astype(np.int64), dtype="int64").astype("string").to_numpy()
        text = text.copy()
        text[whole] = as_int
        notes.append(
            f"Lead ids stored as decimal numbers (e.g. {_values_text(raw[whole].head(1))}) were read "
            f"as whole numbers ({as_int[0]!r}) on {int(whole.sum()):,} events."
        )
    return text, problems, notes


def _ignore_rows(labels: pd.Series, ignore: Sequence[str], pos: np.ndarray):
    """Rows whose stage label is in ``ignore`` (after label normalisation)."""
    from .stages import normalize_label

    problems: list[Problem] = []
    cat = _stripped_labels(labels)
    norm = {c: normalize_label(c) for c in cat.categories}
    wanted = {normalize_label(x): x for x in ignore}
    present = set(norm.values())
    for key, lab in wanted.items():
        if key not in present:
            by_norm = {v: k for k, v in norm.items()}
            close = [by_norm[m] for m in difflib.get_close_matches(key, list(by_norm), n=3, cutoff=0.6)]
            hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            shown = ", ".join(map(repr, list(cat.categories)[:12]))
            more = f" and {len(cat.categories) - 12} more" if len(cat.categories) > 12 else ""
            problems.append(
                Problem(
                    "unknown_label",
                    STAGE,
                    f"ignore= names {lab!r}, which no event has (labels in the data: {shown}{more}).",
                    f"{hint}correct or remove it in ignore= (labels match after normalising case, "
                    "spaces, '-' and '_').",
                )
            )
    drop_codes = [i for i, c in enumerate(cat.categories) if norm[c] in wanted]
    codes = np.asarray(cat.codes)
    drop = np.isin(codes, drop_codes) if drop_codes else np.zeros(len(codes), dtype=bool)
    counts = {}
    if drop.any():
        n_per = np.bincount(codes[drop], minlength=len(cat.categories))
        counts = {str(cat.categories[i]): int(n_per[i]) for i in drop_codes if n_per[i]}
    return drop, counts, problems


def validate_events(
    data: pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    segments: Sequence[str] | None = None,
    tz: str = "UTC",
    dayfirst: bool | None = None,
    missing_time: str = "error",
    ignore: Sequence[str] | None = None,
    time_unit: str | None = None,
    decimal: str = ".",
    source: str = "DataFrame",
    notes: Sequence[str] = (),
    rows_read: int | None = None,
) -> pd.DataFrame:
    """Check a raw table and turn it into a canonical event log.

    Parameters
    ----------
    data : DataFrame
        Raw events, one row per (lead, stage, time).
    columns : mapping, optional
        The user's column names mapped to funnelkit's: e.g.
        ``{"Deal ID": "lead_id", "Deal Stage": "stage", "Entered": "timestamp",
        "Value": "amount"}``.  Unmapped columns keep their names.  Without a
        mapping for them, the process-mining names ``case:concept:name``,
        ``concept:name`` and ``time:timestamp`` (XES, pm4py) are recognised as
        ``lead_id``, ``stage`` and ``timestamp`` (the load report says so).
    stages : StageSet, preset name, YAML path or list, optional
        The stage set; when given, labels are mapped onto it and unknown labels
        are an error.  Without it stages stay as they are in the data.
    segments : list of str, optional
        Segment columns to keep (after renaming).  Default: every other column.
        Text columns become categoricals; numbers and datetimes keep their type.
    tz : str
        The log's timezone (see the timezone policy above): an IANA name such
        as ``"Europe/Paris"``, or a ``tzinfo`` object (``zoneinfo.ZoneInfo``).
        ``"UTC"`` however spelt, and ``None``, mean the default: naive UTC.
        Numbers are refused (pandas would read ``tz=123`` as an offset of
        123 seconds).
    dayfirst : bool, optional
        How numeric dates such as ``01/02/2024`` are read: ``True`` day first,
        ``False`` month first.  Left unset, a column that contains day-first
        dates (``31/01/2024``), or whose dates read both ways, is an error
        asking for it; a column whose dates can only be month first is read
        month first (with a note).  ISO dates (``2024-01-02``) are never read
        day first.
    missing_time : {"error", "keep"}
        What a blank timestamp is: an error, or an event whose time is unknown
        (kept with ``NaT`` and flagged ``unknown_time``).  Any other value is
        an :class:`~funnelkit.exceptions.InvalidEventLogError`.
    ignore : list of str, optional
        Stage labels (as in the data) whose events are left out, e.g.
        automated steps that are not stages; they are counted in the load
        report.  A label no event has is an error.
    time_unit : {"s", "ms", "us", "ns"}, optional
        For a time column of numbers: the Unix epoch unit they count (UTC).
        Left unset, the unit is inferred when only one gives dates in
        1971-2099 (with a note), else it is an error asking for it.
    decimal : {".", ","}
        The decimal mark of amounts written as text; with ``","``, ``1.234,5``
        is 1234.5 (European exports, often semicolon-separated).
    source : str
        Name used in messages.

    Returns
    -------
    DataFrame
        The canonical event log (see the module docstring), with a
        :class:`LoadReport` in ``.attrs["funnelkit"]``.

    Raises
    ------
    InvalidEventLogError
        Listing every problem found: missing or duplicate columns, bad, blank,
        ambiguous or implausible timestamps, mixed timezones, empty or
        fractional lead ids, unknown stages, non-numeric, infinite or negative
        amounts, unknown labels in ``ignore``, a misspelt or non-text ``tz``,
        a ``missing_time`` other than ``"error"`` or ``"keep"``.

    Notes
    -----
    Rows identical to an earlier one as read (same lead, stage *label*, time,
    amount and segments) are dropped with a :class:`DataWarning`.  Rows that
    only collide once labels are mapped onto the stage set (two labels that
    are aliases of one stage, same lead and time) are merged into one event,
    and the load report says how many and which labels.  A column of the
    input named ``flag`` is kept as ``flag_user`` (funnelkit's ``flag`` holds
    the anomaly flags), unless it holds funnelkit's own flags, which are
    recomputed.

    Lead ids lose the spaces around them (``" L1 "`` is lead ``"L1"``, as CSV
    exports pad ids); the load report says on how many events, and which ids
    thereby became another's.  A won and a lost event of one lead at the same
    time are read won, then lost (at one time a lost outcome comes after every
    stage and the won outcome, whatever the row order): the lead counts as
    lost, its lost event is flagged ``after_outcome``, and the load report
    names the leads and rows.  A column holding lists or dicts (e.g. a
    Parquet list column) is left out with a note, or is an error when named
    in ``segments=``.  A ``columns=`` entry naming a column the data lacks is
    an error, even when the data has the target column under its own name.

    Examples
    --------
    >>> import pandas as pd
    >>> raw = pd.DataFrame({"deal": ["a", "a", "b"], "step": ["meeting", "won", "meeting"],
    ...                     "at": ["2024-01-02", "2024-01-09", "2024-01-03"]})
    >>> log = validate_events(raw, columns={"deal": "lead_id", "step": "stage", "at": "timestamp"},
    ...                       stages="pipeline4")
    >>> log[["lead_id", "stage", "flag"]].astype(str).values.tolist()
    [['a', 'meeting', 'skipped_stage'], ['a', 'won', 'skipped_stage'], ['b', 'meeting', 'skipped_stage']]
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(data).__name__}.")
    _check_missing_time(missing_time, source)
    tz = _check_tz(tz, source)
    if time_unit is not None and time_unit not in TIME_UNITS:
        raise InvalidEventLogError(
            [
                Problem(
                    "bad_option",
                    None,
                    f"time_unit={time_unit!r} is not a unit.",
                    f"use one of {', '.join(map(repr, TIME_UNITS))}.",
                )
            ],
            source=source,
        )
    if decimal not in {".", ","}:
        raise InvalidEventLogError(
            [Problem("bad_option", None, f"decimal={decimal!r} is not a decimal mark.", "use '.' or ','.")],
            source=source,
        )
    if isinstance(ignore, str):
        ignore = [ignore]
    columns = dict(columns or {})
    notes = list(notes)
    early = _column_problems(data, columns)
    if early:
        raise InvalidEventLogError(early, source=source)
    if len(data) == 0:
        raise InvalidEventLogError(
            [
                Problem(
                    "no_events",
                    None,
                    f"the data has no rows (columns: {', '.join(map(str, data.columns)) or 'none'}).",
                    "check that the right file or sheet was exported, with its rows.",
                )
            ],
            source=source,
        )
    absent_src = [src for src in columns if src not in data.columns]
    df = data.rename(columns=columns)
    recognised = {
        src: dst
        for src, dst in PM4PY_COLUMNS.items()
        if dst not in df.columns and dst not in columns.values() and src in df.columns and src not in columns
    }
    if recognised:
        df = df.rename(columns=recognised)
        notes.append(
            "Process-mining column names recognised: "
            + ", ".join(f"{s!r} -> {d!r}" for s, d in recognised.items())
            + "."
        )
    segments = None if segments is None else list(segments)
    if FLAG in df.columns:
        user_flag = df[FLAG]
        filled = user_flag[~_blank_mask(user_flag)]
        if filled.astype(str).isin(FLAGS).all():
            df = df.drop(columns=FLAG)
            if len(filled):
                notes.append("The input's 'flag' column holds funnelkit's anomaly flags: recomputed.")
        else:
            new = _free_name(FLAG, set(map(str, df.columns)))
            df = df.rename(columns={FLAG: new})
            if segments is not None:
                segments = [new if s == FLAG else s for s in segments]
            notes.append(
                f"The input's own column 'flag' is kept as {new!r}: funnelkit's 'flag' column "
                "holds the anomaly flags (skipped_stage, moved_back, ...)."
            )
    stage_set = None if stages is None else get_stage_set(stages)
    problems: list[Problem] = []
    n = len(df)
    pos = np.arange(1, n + 1)

    for c in REQUIRED:
        if c not in df.columns:
            given = [src for src, dst in columns.items() if dst == c]
            if given:
                msg = (
                    f"the column {given[0]!r} (mapped to {c!r}) is not in the data. "
                    f"Columns present: {', '.join(map(str, data.columns))}."
                )
            else:
                msg = (
                    f"required column {c!r} is missing. Columns present: {', '.join(map(str, data.columns))}."
                )
            close = difflib.get_close_matches(c, [str(x) for x in data.columns], n=2, cutoff=0.4)
            fix = (
                f"map your column to it, e.g. columns={{{close[0]!r}: {c!r}}}"
                if close
                else (f"add the column or map yours to it with columns={{'your name': {c!r}}}")
            )
            problems.append(Problem("missing_column", c, msg, fix))
    for src in absent_src:
        dst = columns[src]
        # a mapping onto a required column the data lacks is reported above; any other
        # mapping of a column that is not there (the target may be in the data under its
        # own name) must not be ignored silently
        if dst not in REQUIRED or dst in df.columns:
            present = [str(x) for x in data.columns]
            close = difflib.get_close_matches(str(src), present, n=2, cutoff=0.5)
            hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            has_own = f" (it has a column {dst!r} of its own)" if dst in df.columns else ""
            problems.append(
                Problem(
                    "missing_column",
                    str(src),
                    f"columns= maps {src!r} to {dst!r}, but the data has no column {src!r}{has_own}. "
                    f"Columns present: {', '.join(present)}.",
                    f"{hint}correct the name in columns=, or remove the entry if the data "
                    f"already names that column {dst!r}.",
                )
            )

    ignored: dict[str, int] = {}
    if ignore and STAGE in df.columns:
        drop, ignored, iprobs = _ignore_rows(df[STAGE], ignore, pos)
        problems.extend(iprobs)
        if drop.any():
            df = df.loc[~drop].reset_index(drop=True)
            pos = pos[~drop]
            n = len(df)
            notes.append(
                f"Left out {_n(int(drop.sum()), 'event')} with labels named in ignore=: "
                + ", ".join(f"{k!r} x{v:,}" for k, v in ignored.items())
                + "."
            )

    # lead ids
    lead_text = None
    if LEAD in df.columns:
        lead_text, lprobs, lnotes = _lead_ids(df[LEAD], pos)
        problems.extend(lprobs)
        notes.extend(lnotes)
        empty = (lead_text.isna() | (lead_text == "")).fillna(True).to_numpy(dtype=bool)
        if empty.any():
            problems.append(
                Problem(
                    "empty_lead_id",
                    LEAD,
                    f"{int(empty.sum()):,} event(s) have no lead id: {_rows_text(pos[empty])}.",
                    "give every event the id of the lead it belongs to, or remove those rows.",
                    tuple(int(p) for p in pos[empty][:20]),
                )
            )

    # timestamps
    times = None
    unknown_time = np.zeros(n, dtype=bool)
    if TIME in df.columns:
        times, tprobs, tnotes = _parse_times(
            df[TIME], tz=tz, dayfirst=dayfirst, column=TIME, pos=pos, time_unit=time_unit
        )
        problems.extend(tprobs)
        notes.extend(tnotes)
        blank = _blank_mask(df[TIME])
        if blank.any():
            if missing_time == "error":
                problems.append(
                    Problem(
                        "blank_timestamp",
                        TIME,
                        f"{int(blank.sum()):,} event(s) have no time: {_rows_text(pos[blank])}.",
                        "fill them in, or pass missing_time='keep' to keep them as events "
                        "whose time is unknown.",
                        tuple(int(p) for p in pos[blank][:20]),
                    )
                )
            unknown_time = blank

    # stages
    stage_values = None
    raw_cat = None
    if STAGE in df.columns:
        raw_stage = df[STAGE]
        nostage = _blank_mask(raw_stage)
        if nostage.any():
            problems.append(
                Problem(
                    "empty_stage",
                    STAGE,
                    f"{int(nostage.sum()):,} event(s) have no stage: {_rows_text(pos[nostage])}.",
                    "every event must say which stage the lead entered.",
                    tuple(int(p) for p in pos[nostage][:20]),
                )
            )
        raw_cat = _stripped_labels(raw_stage)
        cat = raw_cat
        if stage_set is not None:
            mapped = {c: stage_set.canonical(c) for c in cat.categories}
            unknown = [c for c, m in mapped.items() if m is None]
            if unknown:
                counts = pd.Series(cat).value_counts()
                parts = []
                for lab in unknown:
                    sug = stage_set.suggest(lab)
                    hint = f" (did you mean {' or '.join(map(repr, sug))}?)" if sug else ""
                    parts.append(f"{lab!r} x{int(counts.get(lab, 0)):,}{hint}")
                bad = np.isin(np.asarray(cat.codes), [cat.categories.get_loc(c) for c in unknown])
                problems.append(
                    Problem(
                        "unknown_stage",
                        STAGE,
                        f"{len(unknown)} label(s) are not in stage set {stage_set.name!r} "
                        f"({', '.join(stage_set.labels)}): {'; '.join(parts)}; first at "
                        f"{_rows_text(pos[bad])}.",
                        "map them to stages with aliases in the stage set (YAML 'aliases:' or "
                        "StageSet.with_aliases({'label': 'stage'})), leave them out with "
                        "ignore=[...], or correct the data.",
                        tuple(int(p) for p in pos[bad][:20]),
                    )
                )
            else:
                labels = list(stage_set.labels)
                lut = np.array([labels.index(mapped[c]) for c in cat.categories] + [-1])
                codes = lut[np.where(cat.codes < 0, len(lut) - 1, cat.codes)]
                stage_values = pd.Categorical.from_codes(codes, categories=labels)
        else:
            stage_values = cat

    # amounts
    amount = None
    if AMOUNT in df.columns:
        raw_amt = df[AMOUNT]
        if pd.api.types.is_float_dtype(raw_amt.dtype):
            amount = raw_amt.astype("float64")
        elif decimal == "," and not pd.api.types.is_numeric_dtype(raw_amt.dtype):
            # 1.234,5 -> 1234.5: drop the thousands marks, then the comma is the point
            txt = raw_amt.astype("string").str.strip().str.replace(r"[.\s'\u00a0\u202f]", "", regex=True)
            amount = pd.to_numeric(txt.str.replace(",", ".", regex=False), errors="coerce").astype("float64")
        else:
            amount = pd.to_numeric(raw_amt, errors="coerce").astype("float64")
        blank_amt = _blank_mask(raw_amt)
        x = amount.to_numpy(dtype="float64", na_value=np.nan)
        nonnum = np.isnan(x) & ~blank_amt
        if nonnum.any():
            fix = (
                "write plain numbers (no currency symbols or thousands separators); "
                "leave the cell blank when the amount is unknown."
            )
            if decimal == "." and _regex_mask(raw_amt[nonnum], _DECIMAL_COMMA).all():
                fix = (
                    "these are written with a decimal comma: pass decimal=',' (then '1.234,5' is "
                    "1234.5); if the comma separates thousands instead, remove it from the cells."
                )
            problems.append(
                Problem(
                    "bad_amount",
                    AMOUNT,
                    f"{int(nonnum.sum()):,} amount(s) are not numbers: {_rows_text(pos[nonnum])} "
                    f"({_values_text(raw_amt[nonnum].head(5))}).",
                    fix,
                    tuple(int(p) for p in pos[nonnum][:20]),
                )
            )
        inf = np.isinf(x)
        if inf.any():
            problems.append(
                Problem(
                    "bad_amount",
                    AMOUNT,
                    f"{int(inf.sum()):,} amount(s) are infinite: {_rows_text(pos[inf])} "
                    f"({_values_text(raw_amt[inf].head(5))}); totals and averages would be infinite too.",
                    "write the real amount, or leave the cell blank when it is unknown.",
                    tuple(int(p) for p in pos[inf][:20]),
                )
            )
        neg = x < 0
        if neg.any():
            problems.append(
                Problem(
                    "negative_amount",
                    AMOUNT,
                    f"{int(neg.sum()):,} amount(s) are negative: {_rows_text(pos[neg])} "
                    f"({_values_text(raw_amt[neg].head(5))}).",
                    "a lead's value cannot be negative; correct the sign, or blank the cell "
                    "if it is a refund recorded elsewhere.",
                    tuple(int(p) for p in pos[neg][:20]),
                )
            )

    seg_cols = [c for c in df.columns if c not in {LEAD, STAGE, TIME, AMOUNT, FLAG}]
    if segments is not None:
        missing_seg = [s for s in segments if s not in df.columns]
        for s in missing_seg:
            problems.append(
                Problem(
                    "missing_column",
                    s,
                    f"segment column {s!r} is not in the data. Columns present: "
                    f"{', '.join(map(str, df.columns))}.",
                    "correct the name in segments=.",
                )
            )
        seg_cols = [s for s in segments if s in df.columns]

    if problems:
        raise InvalidEventLogError(problems, source=source)

    out = pd.DataFrame(
        {
            # the text dtype pandas gives Python strings ("str", Arrow-backed, in pandas 3),
            # reached without making 5M Python objects on the way
            LEAD: lead_text.astype(_TEXT_DTYPE),
            STAGE: stage_values,
            TIME: times.to_numpy(),
        }
    )
    if amount is not None:
        out[AMOUNT] = amount.to_numpy()
    for s in list(seg_cols):
        try:
            out[s] = _segment(df[s], tz)
        except Exception:
            nested = _nested_cells(df[s])
            if nested is None:
                raise
            mask, kind, example = nested
            if segments is not None:  # asked for by name: an error, not a silent drop
                raise InvalidEventLogError(
                    [
                        Problem(
                            "nested_column",
                            str(s),
                            f"segment column {s!r} holds {kind} (e.g. {example}) on "
                            f"{_n(int(mask.sum()), 'event')} ({_rows_text(pos[mask])}), not one value "
                            "per event; a segment cannot be made of it.",
                            f"leave {s!r} out of segments=, or turn it into text first, e.g. "
                            f"df[{s!r}] = df[{s!r}].astype(str).",
                            tuple(int(p) for p in pos[mask][:20]),
                        )
                    ],
                    source=source,
                ) from None
            seg_cols.remove(s)
            notes.append(
                f"Column {s!r} holds {kind} (e.g. {example}), not one value per event: left out of "
                f"the log (it cannot be a segment). To keep it, turn it into text first "
                f"(df[{s!r}] = df[{s!r}].astype(str)) and name it in segments=."
            )
    out.index = pd.RangeIndex(len(out))
    del lead_text, stage_values, times, amount  # the log holds its own copies now

    report = LoadReport(
        source=source, rows_read=len(data) if rows_read is None else rows_read, stage_set=stage_set
    )
    report.ignored = ignored
    report.notes.extend(notes)

    lead_codes, n_leads = _sorted_codes(out[LEAD])
    t64 = out[TIME].to_numpy(dtype="datetime64[ns]").view(np.int64)
    raw_codes = np.asarray(raw_cat.codes, dtype=np.int64)
    if stage_set is not None:
        _note_outcome_ties(out, stage_set, lead_codes, t64, pos, report)
    keep = _drop_duplicates(df, lead_codes, raw_codes, t64, pos, source, report)
    if keep is not None:
        out, unknown_time = out.loc[keep].reset_index(drop=True), unknown_time[keep]
        lead_codes, t64, raw_codes = lead_codes[keep], t64[keep], raw_codes[keep]
    if stage_set is not None:
        keep = _merge_aliases(out, lead_codes, raw_codes, t64, raw_cat.categories, report)
        if keep is not None:
            out, unknown_time = out.loc[keep].reset_index(drop=True), unknown_time[keep]
            lead_codes = lead_codes[keep]
    del t64, raw_codes, pos, keep

    for s in seg_cols:
        blank_seg = out[s].isna().to_numpy()
        if blank_seg.any():
            n_leads_blank = int(np.count_nonzero(np.bincount(lead_codes[blank_seg], minlength=n_leads)))
            report.notes.append(
                f"Segment {s!r} is blank on {int(blank_seg.sum()):,} events ({n_leads_blank:,} "
                "leads); kept, shown as missing in breakdowns."
            )

    report.leads = int(np.count_nonzero(np.bincount(lead_codes, minlength=n_leads)))
    idx, flag = _sort_and_flag(out, stage_set, unknown_time, lead_codes)
    del lead_codes, unknown_time
    # sorted column by column, in place: one column is copied at a time, not the whole log
    for c in list(out.columns):
        out[c] = out[c].array.take(idx)
    del idx
    out[FLAG] = flag
    report.events = len(out)
    report.flags = {k: int(v) for k, v in out[FLAG].value_counts().items() if k and v}
    out.attrs[_ATTR] = report
    return out


def _nested_cells(col: pd.Series):
    """Where a column holds containers (lists, arrays, dicts, sets) instead of single values.

    Returns ``(mask, kind, example)`` or None when it holds none.  Called only once a
    column has failed to become a segment (no cost on the way of ordinary columns).
    """
    dtype = col.dtype
    pa_type = getattr(dtype, "pyarrow_dtype", None)
    if pa_type is not None:
        import pyarrow as pa

        if not pa.types.is_nested(pa_type):
            return None
        mask = col.notna().to_numpy(dtype=bool)
        kind = (
            "structs (dicts)"
            if pa.types.is_struct(pa_type)
            else ("maps (dicts)" if pa.types.is_map(pa_type) else "lists")
        )
    elif pd.api.types.is_object_dtype(dtype):
        containers = (list, tuple, set, frozenset, dict, np.ndarray)
        mask = col.map(lambda v: isinstance(v, containers)).to_numpy(dtype=bool)
        if not mask.any():
            return None
        first = col[mask].iloc[0]
        kind = "dicts" if isinstance(first, dict) else "lists"
    else:
        return None
    if not mask.any():
        return None
    first = col[mask].iloc[0]
    example = repr(first.tolist() if isinstance(first, np.ndarray) else first)
    if len(example) > 60:
        example = example[:57] + "..."
    return mask, kind, example


def _any_duplicated(df: pd.DataFrame) -> bool:
    """``df.duplicated().any()``, comparing the text of cells that cannot be hashed (lists, dicts)."""
    try:
        return bool(df.duplicated().any())
    except TypeError:
        return bool(
            df.apply(lambda c: c.map(repr) if pd.api.types.is_object_dtype(c.dtype) else c).duplicated().any()
        )


def _segment(col: pd.Series, tz) -> object:
    """A segment column: numbers and datetimes keep their type, the rest is categorical."""
    dtype = col.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return col.astype("category").array
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        if getattr(getattr(col, "dt", None), "tz", None) is not None:
            col = col.dt.tz_convert(tz).dt.tz_localize(None)
        return col.array if isinstance(col.dtype, pd.api.extensions.ExtensionDtype) else col.to_numpy()
    return col.astype("category").array


def _shared_keys(*keys: np.ndarray) -> np.ndarray:
    """Rows whose key (the integer arrays together) another row may share.

    Every row of ``DataFrame(keys).duplicated(keep=False)`` is marked, and
    now and then a row whose hash of the key collides with another's; the
    callers judge the marked rows exactly, so a collision costs nothing but
    a row compared.  Uses a hash and a sort (about 16 bytes a row) instead
    of a hash table of the whole key.
    """
    n = len(keys[0])
    h = np.zeros(n, dtype=np.uint64)
    mult = np.uint64(0x9E3779B97F4A7C15)
    for k in keys:
        h ^= np.asarray(k).astype(np.int64, copy=False).view(np.uint64)
        h *= mult
        h ^= h >> np.uint64(29)
    s = np.sort(h)
    rep = s[1:][s[1:] == s[:-1]]
    del s
    if not len(rep):
        return np.zeros(n, dtype=bool)
    return np.isin(h, np.unique(rep))


def _sorted_codes(col: pd.Series) -> tuple[np.ndarray, int]:
    """``pd.factorize(col, sort=True)``'s codes and the number of distinct values.

    Factorized unsorted, then the distinct values alone are sorted (about half
    the peak memory of sorting while factorizing, for millions of lead ids).
    """
    codes, uniques = pd.factorize(col)
    order = uniques.argsort()
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[order] = np.arange(len(uniques))
    return rank[codes], len(uniques)


def _note_outcome_ties(out, stage_set, lead_codes, t64, pos, report) -> None:
    """A note naming the leads with a won and a lost event at the same time, and their rows.

    The rule that decides them is the sort's: at one time a lost outcome comes after
    every stage and the won outcome, whatever the row order, so such a lead counts as
    lost and its lost event is flagged ``after_outcome``.  Only the outcome events are
    looked at, and only those whose (lead, time) key another one may share.
    """
    if stage_set.won is None or not stage_set.lost:
        return
    labels = list(stage_set.labels)
    codes = np.asarray(out[STAGE].cat.codes)
    is_won = codes == labels.index(stage_set.won)
    is_lost = np.isin(codes, [labels.index(x) for x in stage_set.lost])
    if not is_won.any() or not is_lost.any():
        return
    idx = np.flatnonzero((is_won | is_lost) & (t64 != np.iinfo(np.int64).min))  # NaT is no time
    cand = _shared_keys(lead_codes[idx], t64[idx])
    if not cand.any():
        return
    idx = idx[cand]
    sub = pd.DataFrame({"l": lead_codes[idx], "t": t64[idx], "w": is_won[idx]})
    g = sub.groupby(["l", "t"], sort=False)["w"]
    tie = (g.transform("any") & ~g.transform("all")).to_numpy(dtype=bool)
    if not tie.any():
        return
    idx = idx[tie]
    ids = out[LEAD].to_numpy()[idx]
    leads = list(pd.unique(ids))
    shown = "; ".join(f"lead {lead!r}: {_rows_text(pos[idx[ids == lead]], 4)}" for lead in leads[:3])
    more = f"; and {len(leads) - 3:,} more" if len(leads) > 3 else ""
    report.notes.append(
        f"{_n(len(leads), 'lead')} {'has' if len(leads) == 1 else 'have'} a won and a lost event at the "
        f"same time ({shown}{more}). Read as won, then lost (at one time a lost outcome comes after "
        "every stage and the won outcome, whatever the row order), so "
        f"{'it counts' if len(leads) == 1 else 'they count'} as lost and the lost event is flagged "
        "'after_outcome'. Correct the times, or remove the outcome that is wrong."
    )


def _drop_duplicates(df, lead_codes, raw_codes, t64, pos, source, report):
    """Exact duplicates judged on the rows as read: every input column, and the
    stage *label* (not the stage it maps to).  Columns left out by ``segments=``
    still count: two payments on one day that differ only in a column not kept
    are two events.

    Returns the mask of rows to keep, or None when there is nothing to drop.
    """
    cand = _shared_keys(lead_codes, raw_codes, t64)
    if not cand.any():
        return None
    sub = pd.DataFrame({"l": lead_codes[cand], "r": raw_codes[cand], "t": t64[cand]})
    for i, c in enumerate(df.columns):
        if c not in {LEAD, STAGE, TIME}:
            sub[f"c{i}"] = df[c].to_numpy()[cand]
    try:
        dup_sub = sub.duplicated(keep="first").to_numpy()
    except TypeError:  # unhashable cells (lists, dicts): compare their text
        sub = sub.apply(lambda col: col.map(repr) if pd.api.types.is_object_dtype(col.dtype) else col)
        dup_sub = sub.duplicated(keep="first").to_numpy()
    if not dup_sub.any():
        return None
    dup = np.zeros(len(df), dtype=bool)
    dup[np.flatnonzero(cand)[dup_sub]] = True
    report.duplicates_dropped = int(dup.sum())
    warnings.warn(
        f"{source}: dropped {int(dup.sum()):,} exact duplicate event(s) "
        f"({_rows_text(pos[dup])}); each was identical in every column to an earlier row.",
        DataWarning,
        stacklevel=3,
    )
    return ~dup


def _merge_aliases(out, lead_codes, raw_codes, t64, raw_labels, report):
    """Merge events that only collide once labels are mapped onto stages."""
    stage_codes = np.asarray(out[STAGE].cat.codes, dtype=np.int64)
    cand = _shared_keys(lead_codes, stage_codes, t64)
    if not cand.any():
        return None
    sub = pd.DataFrame({"l": lead_codes[cand], "s": stage_codes[cand], "t": t64[cand], "r": raw_codes[cand]})
    first = sub.groupby(["l", "s", "t"], sort=False)["r"].transform("first").to_numpy()
    other = sub["r"].to_numpy() != first
    if not other.any():
        return None
    drop = np.zeros(len(out), dtype=bool)
    drop[np.flatnonzero(cand)[other]] = True
    # which labels were involved, per stage: those of groups that had more than one label
    mixed = sub.groupby(["l", "s", "t"], sort=False)["r"].transform("nunique").to_numpy() > 1
    stages_cat = out[STAGE].cat.categories
    s_codes = sub["s"].to_numpy()
    for s_code in pd.unique(s_codes[other]):
        here = mixed & (s_codes == s_code)
        labs = [str(raw_labels[r]) for r in sorted(set(sub["r"].to_numpy()[here]))]
        n_in, n_drop = int(here.sum()), int((other & (s_codes == s_code)).sum())
        report.notes.append(
            f"{_n(n_in, 'event')} of labels {' and '.join(map(repr, labs))} mapped to stage "
            f"{stages_cat[s_code]!r} at the same time (same lead) were merged into {n_in - n_drop:,}; "
            "the first row's values kept."
        )
    report.merged = int(drop.sum())
    return ~drop


def _sort_and_flag(
    out: pd.DataFrame, stage_set: StageSet | None, unknown_time: np.ndarray, lead_codes: np.ndarray
) -> tuple[np.ndarray, pd.Categorical]:
    """The order of the rows (lead, time (unknown first), stage order) and the
    anomaly flags of the rows in that order; ``out`` itself is not touched.

    Written for memory: small integer types where they fit, temporaries freed
    as soon as they are used, running maxima instead of group-bys.
    """
    t = out[TIME].to_numpy(dtype="datetime64[ns]").view(np.int64)  # NaT is the minimum
    if stage_set is not None:
        order = stage_order(out, stage_set)
    else:
        order = np.zeros(len(out), dtype=np.int64)
    small = len(order) == 0 or (order.min() > -128 and order.max() < 127)
    if small:
        order = order.astype(np.int8)
    if len(lead_codes) and lead_codes.max() < 2**31:
        lead_codes = lead_codes.astype(np.int32)
    # lost outcomes sort after steps at equal times
    sort_order = np.where(order == LOST_ORDER, 127 if small else np.iinfo(np.int32).max, order)
    idx = np.lexsort((sort_order, t, lead_codes))
    del sort_order
    flag = np.zeros(len(out), dtype=np.int8)
    if stage_set is not None and len(out):
        order, lead_codes = order[idx], lead_codes[idx].astype(np.int64)
        n_steps = len(stage_set.steps)
        start = np.r_[True, lead_codes[1:] != lead_codes[:-1]]
        # highest step reached before each event, per lead: a running maximum over
        # (lead code, order) packed in one integer; the lead codes are sorted, so the
        # maximum never looks back past the lead's first event
        lo = min(int(order.min()), 0)
        span = int(max(order.max(), 0)) - lo + 1
        lead_codes *= span
        packed = lead_codes + (order.astype(np.int64) - lo)
        np.maximum.accumulate(packed, out=packed)
        packed -= lead_codes
        del lead_codes
        packed += lo  # the running maximum of the order, per lead
        prev_max = np.empty_like(packed)
        prev_max[1:] = packed[:-1]
        del packed
        prev_max[start] = -1
        step = order >= 0
        flag[step & (order > prev_max + 1)] = 1  # skipped_stage
        flag[step & (order < prev_max) & (prev_max >= 0)] = 2  # moved_back
        del prev_max, step
        # an outcome seen strictly before this event (within the lead): outcomes counted
        # from the log's first row, minus those counted at the lead's first event
        is_outcome = (order == LOST_ORDER) | ((order == n_steps - 1) & (stage_set.won is not None))
        before = np.cumsum(is_outcome, dtype=np.int64)
        before -= is_outcome
        del is_outcome
        at_start = np.where(start, before, 0)
        np.maximum.accumulate(at_start, out=at_start)  # ``before`` never decreases
        flag[before > at_start] = 3  # after_outcome
        del before, at_start
    flag[unknown_time[idx]] = 4
    return idx, pd.Categorical.from_codes(flag, categories=list(FLAGS))


# ---------------------------------------------------------------------------
# readers and adapters
# ---------------------------------------------------------------------------
_SEPARATORS = (",", ";", "\t", "|")
_SEP_NAME = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_CHUNK = 1 << 20


def _is_xes(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".xes") or name.endswith(".xes.gz")


def _open_bytes(path: Path):
    import gzip

    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _file_problem(kind: str, message: str, fix: str, path: Path) -> InvalidEventLogError:
    return InvalidEventLogError([Problem(kind, None, message, fix)], source=str(path))


def _check_decodes(path: Path, encoding: str) -> tuple[int, int, int] | None:
    """Stream the file through a decoder: None, or (byte offset, byte, line) of the first failure."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = lines = 0
    with _open_bytes(path) as f:
        while True:
            chunk = f.read(_CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # exc.object is what the decoder held over from the last chunk, then this one
                carried = len(exc.object) - len(chunk)
                line = lines + exc.object[: exc.start].count(b"\n") + 1
                return offset - carried + exc.start, exc.object[exc.start], line
            if not chunk:
                return None
            offset += len(chunk)
            lines += chunk.count(b"\n")


def _detect_encoding(path: Path, encoding: str | None, notes: list[str]) -> str:
    """The file's text encoding: the one given (checked), or detected.

    Detection: a byte-order mark says UTF-8 or UTF-16; otherwise UTF-8 if the
    whole file decodes, else Windows-1252, else Latin-1 (with a note).
    """
    with _open_bytes(path) as f:
        head = f.read(4096)
    if head.startswith(b"PK\x03\x04"):
        raise _file_problem(
            "unsupported_file",
            f"{path.name!r} is a zip archive (an Excel .xlsx workbook?), not a text table.",
            "save the sheet as CSV, or read it with pandas.read_excel and pass the DataFrame.",
            path,
        )
    if encoding is None:
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            notes.append("Text encoding: UTF-16 (byte-order mark).")
            return "utf-16"
        if b"\x00" in head:
            at = head.index(b"\x00")
            raise _file_problem(
                "unsupported_file",
                f"{path.name!r} contains NUL bytes (the first at byte offset {at:,}): it is not a "
                "text table.",
                "export the data as CSV or Parquet.",
                path,
            )
        bad = _check_decodes(path, "utf-8")
        if bad is None:
            return "utf-8"
        at, byte, line = bad
        enc = "cp1252" if _check_decodes(path, "cp1252") is None else "latin-1"
        notes.append(
            f"Text encoding: not UTF-8 (byte 0x{byte:02x} at offset {at:,}, line {line:,}); read as "
            f"{'Windows-1252' if enc == 'cp1252' else 'Latin-1'}. Pass encoding= if accented "
            "letters look wrong."
        )
        return enc
    bad = _check_decodes(path, encoding)
    if bad is not None:
        at, byte, line = bad
        other = (
            "utf-8"
            if encoding.lower().replace("-", "").replace("_", "") not in {"utf8", "utf8sig"}
            else "cp1252"
        )
        raise _file_problem(
            "bad_encoding",
            f"cannot read {path.name!r} as {encoding!r}: byte 0x{byte:02x} at byte offset {at:,} "
            f"(line {line:,}) is not valid in that encoding.",
            f"pass the file's real encoding, e.g. encoding={other!r} (Excel on Windows writes "
            "'cp1252'), or leave encoding= unset to detect it.",
            path,
        )
    return encoding


def _sample_lines(path: Path, encoding: str, n: int = 30) -> list[str]:
    """The first non-blank lines of a text file (from its first 64 KiB)."""
    with _open_bytes(path) as f:
        raw = f.read(1 << 16)
    lines = raw.decode(encoding, errors="replace").lstrip("\ufeff").splitlines()
    if len(raw) == 1 << 16 and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    return [ln for ln in lines if ln.strip()][:n]


def _detect_sep(lines: list[str]) -> str:
    """The separator that splits every sampled line into the same number (>1) of fields."""
    import csv

    best, best_fields, fallback, fallback_fields = ",", 1, ",", 1
    for sep in _SEPARATORS:
        counts = [len(r) for r in csv.reader(lines, delimiter=sep)]
        if not counts:
            continue
        if counts[0] > 1 and len(set(counts)) == 1 and counts[0] > best_fields:
            best, best_fields = sep, counts[0]
        if counts[0] > fallback_fields:
            fallback, fallback_fields = sep, counts[0]
    return best if best_fields > 1 else fallback


def _header(lines: list[str], sep: str) -> list[str]:
    import csv

    return next(csv.reader(lines[:1], delimiter=sep), []) if lines else []


def _wanted_columns(header: Sequence[str], columns, segments) -> list[str] | None:
    """The columns to read when ``segments=`` says which to keep; None means all.

    All columns are read when one the log needs is absent, so that the error
    lists every column present.
    """
    if segments is None:
        return None
    columns = dict(columns or {})
    present = set(header)
    if any(src not in present for src in columns):
        return None
    targets = {LEAD, STAGE, TIME, AMOUNT, *segments}
    wanted = {src for src, dst in columns.items() if dst in targets}
    wanted |= {c for c in targets | set(PM4PY_COLUMNS) if c not in columns}
    available = present | set(columns.values())
    for c in [*REQUIRED, *segments]:
        pm = [k for k, v in PM4PY_COLUMNS.items() if v == c]
        if c not in available and not (pm and pm[0] in present):
            return None
    return [c for c in header if c in wanted]


#: CSV files at least this large are read with pyarrow's multi-threaded parser
#: (smaller ones with pandas: the same table, and no thread pool to start).
ARROW_MIN_BYTES = 8 << 20
#: Files at least this large show a progress bar while they are read (``progress=None``).
PROGRESS_MIN_BYTES = 64 << 20
_ISO_NAIVE = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?$"
_INT_TEXT = r"^(?:0|[1-9]\d{0,14})$"
_DEC_TEXT = r"^(?:0|[1-9]\d*)\.(?:0|\d*[1-9])$"


class _CountingFile:
    """A binary file that reports the bytes read to a progress bar."""

    def __init__(self, f, bar):
        self._f, self._bar = f, bar
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._bar.update(len(data))
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._f.close()


def _roles(header: Sequence[str], columns: Mapping[str, str] | None) -> dict[str, str]:
    """The canonical name each file column will have (the renames of validate_events)."""
    columns = dict(columns or {})
    named = {columns.get(h, h) for h in header}
    out = {}
    for h in header:
        dst = columns.get(h, h)
        if h not in columns and h in PM4PY_COLUMNS and PM4PY_COLUMNS[h] not in named:
            dst = PM4PY_COLUMNS[h]
        out[h] = dst
    return out


def _lean_columns(table, roles: Mapping[str, str], *, decimal: str, time_unit: str | None) -> pd.DataFrame:
    """An Arrow table of text columns as the DataFrame validate_events needs, leaner.

    Stage and segment columns, parsed into dictionaries, become categoricals
    (categories sorted, as ``astype("category")`` makes them); the time column becomes datetimes
    when every value is a plain ISO date or time without a zone, inside the
    plausible range (so parsing it as text could neither fail nor differ);
    the amount column becomes floats when every value is a whole number, or
    every value a decimal without trailing zeros, of at most 15 digits (so
    no two texts give the same number).  Any other column stays text, as
    ``pd.read_csv(dtype=str)`` reads it.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    lo, hi = PLAUSIBLE_TIMES
    cols = {}
    for name in list(table.column_names):
        arr = table.column(name)
        table = table.drop_columns([name])  # each text column is freed once converted
        role = roles.get(name, name)
        text = pd.Series(arr.to_pandas(), name=name) if role in (LEAD, FLAG) else None
        if role == TIME and time_unit is None and arr.null_count < len(arr):
            filled = arr.drop_null()
            if pc.all(pc.match_substring_regex(filled, _ISO_NAIVE)).as_py():
                try:
                    ts = pc.cast(arr, pa.timestamp("ns"))
                    mm = pc.min_max(pc.cast(ts, pa.int64()))
                    if mm["min"].as_py() >= lo.value and mm["max"].as_py() < hi.value:
                        text = pd.Series(ts.to_pandas(), name=name)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError, ValueError):
                    pass
        elif role == AMOUNT and decimal == "." and arr.null_count < len(arr):
            filled = arr.drop_null()
            digits = pc.max(pc.utf8_length(pc.replace_substring(filled, ".", ""))).as_py()
            if digits <= 15 and (
                pc.all(pc.match_substring_regex(filled, _INT_TEXT)).as_py()
                or pc.all(pc.match_substring_regex(filled, _DEC_TEXT)).as_py()
            ):
                text = pd.Series(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), name=name)
        elif pa.types.is_dictionary(arr.type):
            # parsed straight into a dictionary: categories sorted as astype("category") sorts them
            arr = arr.unify_dictionaries()
            chunks = arr.chunks
            dictionary = chunks[0].dictionary if chunks else pa.array([], type=pa.string())
            cats = pd.Index(dictionary.to_pandas(), dtype="str")
            order = (
                np.argsort(np.asarray(cats, dtype=object), kind="stable") if len(cats) else np.zeros(0, int)
            )
            rank = np.empty(len(cats) + 1, dtype=np.int64)
            rank[order] = np.arange(len(cats))
            rank[-1] = -1
            codes = np.concatenate(
                [pc.fill_null(c.indices, -1).to_numpy(zero_copy_only=False) for c in chunks]
                or [np.zeros(0, dtype=np.int64)]
            ).astype(np.int64)
            codes = rank[codes]  # -1 (missing) picks rank[-1] = -1
            text = pd.Series(pd.Categorical.from_codes(codes, categories=cats[order]), name=name)
        if text is None:
            text = pd.Series(arr.to_pandas(), name=name)
        cols[name] = text
    return pd.DataFrame(cols)


def _read_csv_arrow(
    path: Path,
    *,
    sep: str,
    encoding: str,
    usecols: Sequence[str] | None,
    header: Sequence[str],
    roles: Mapping[str, str],
    decimal: str,
    time_unit: str | None,
    progress: bool | None,
) -> pd.DataFrame | None:
    """Read a CSV with pyarrow (every cell as text, as pandas would), or None.

    None means "let pandas read it": an encoding other than UTF-8, an empty
    header name, or a file Arrow's parser refuses (ragged rows, a quoted
    line break across blocks ...), whose error pandas words best.
    """
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return None
    if encoding.lower().replace("-", "").replace("_", "") not in {"utf8", "utf8sig"} or any(
        not str(h).strip() for h in header
    ):
        return None
    size = path.stat().st_size
    show = size >= PROGRESS_MIN_BYTES if progress is None else bool(progress)
    names = list(usecols) if usecols is not None else list(header)
    read_opts = pcsv.ReadOptions(block_size=4 << 20)
    parse_opts = pcsv.ParseOptions(delimiter=sep)
    as_dict = pa.dictionary(pa.int32(), pa.string())
    conv_opts = pcsv.ConvertOptions(
        column_types={
            c: as_dict if roles.get(c, c) not in (LEAD, TIME, AMOUNT, FLAG) else pa.string() for c in header
        },
        include_columns=names,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    bar = None
    raw = open(path, "rb")
    try:
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"reading {path.name}", leave=False)
            stream = pa.PythonFile(_CountingFile(raw, bar), mode="r")
        else:
            stream = pa.input_stream(path, compression=None)
        if gz:
            stream = pa.CompressedInputStream(stream, "gzip")
        table = pcsv.read_csv(
            stream, read_options=read_opts, parse_options=parse_opts, convert_options=conv_opts
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    finally:
        raw.close()
        if bar is not None:
            bar.close()
    if table.column_names != names:
        return None
    out = _lean_columns(table, roles, decimal=decimal, time_unit=time_unit)
    del table
    pa.default_memory_pool().release_unused()  # give the text buffers back to the system
    return out


def _read_table(
    source: str | Path,
    *,
    sep: str | None = None,
    encoding: str | None = None,
    columns: Mapping[str, str] | None = None,
    segments: Sequence[str] | None = None,
    notes: list[str] | None = None,
    decimal: str = ".",
    time_unit: str | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Read a CSV/TSV (plain or .gz) or Parquet file as raw text columns.

    CSV: the encoding and the separator are detected unless given (the load
    report says what was detected); every cell is read as text.  With
    ``segments=`` only the columns the log needs are read, unless some rows
    are then identical: exact duplicates are judged on whole rows, so the
    file is read again in full.  Files of ``ARROW_MIN_BYTES`` and more are
    parsed by pyarrow on every core, with a progress bar from
    ``PROGRESS_MIN_BYTES`` (or as ``progress=`` says), and come out leaner:
    stage and segment columns as categoricals, plain ISO times as datetimes
    and plain amounts as floats (see :func:`_lean_columns`; the log
    validate_events makes of them is the same).
    """
    notes = [] if notes is None else notes
    path = Path(source)
    if not path.exists():
        raise _missing_file(path)
    suffix = path.suffix.lower()
    if _is_xes(path):
        raise _file_problem(
            "unsupported_file",
            f"{path.name!r} is an XES event log, which this adapter does not take.",
            "read it with funnelkit.read_xes (or read_events), then pass the log on.",
            path,
        )
    if suffix in {".parquet", ".pq"}:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            header = pq.read_schema(path).names
            used = _wanted_columns(header, columns, segments)
            df = pd.read_parquet(path, columns=used)
            if used is not None and len(used) < len(header) and _any_duplicated(df):
                df = pd.read_parquet(path)
        except (pa.ArrowException, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise _file_problem(
                "bad_parquet",
                f"{path.name!r} is not a readable Parquet file ({type(exc).__name__}: {exc}).",
                "export the file again (it may be cut off, or not Parquet at all despite its name), "
                "or export the data as CSV.",
                path,
            ) from exc
        return df
    if suffix not in {".csv", ".txt", ".tsv", ".tab", ".gz"}:
        raise InvalidEventLogError(
            [
                Problem(
                    "unsupported_file",
                    None,
                    f"cannot read {path.name!r}: funnelkit reads .csv, .tsv, .parquet and .xes "
                    "(or .xes.gz) files.",
                    "export the data as CSV or Parquet, or load it into a DataFrame first.",
                )
            ],
            source=str(path),
        )
    if path.stat().st_size == 0:
        raise _file_problem(
            "empty_file",
            f"{path.name!r} is empty (0 bytes).",
            "export the data again; the file has neither a header nor rows.",
            path,
        )
    enc = _detect_encoding(path, encoding, notes)
    lines = _sample_lines(path, enc)
    if not lines:
        raise _file_problem(
            "empty_file",
            f"{path.name!r} holds only blank lines.",
            "export the data again, with its header and rows.",
            path,
        )
    if sep is None:
        sep = _detect_sep(lines)
        if sep != ",":
            notes.append(f"Columns separated by {_SEP_NAME.get(sep, repr(sep))}s (detected).")
    header = _header(lines, sep)
    if len(header) == 1:
        better = _detect_sep(lines)
        if better != sep and len(_header(lines, better)) > 1:
            raise _file_problem(
                "wrong_separator",
                f"with sep={sep!r} the header of {path.name!r} is one column, {header[0]!r}; "
                f"its columns are separated by {_SEP_NAME.get(better, repr(better))}s.",
                f"pass sep={better!r}, or leave sep= unset to detect it.",
                path,
            )
    seen: dict[str, list[int]] = {}
    for i, h in enumerate(header, 1):
        seen.setdefault(h.strip(), []).append(i)
    dups = {h: where for h, where in seen.items() if len(where) > 1}
    if dups:
        raise InvalidEventLogError(
            [
                Problem(
                    "duplicate_column",
                    h,
                    f"the header names {h!r} {len(where)} times (columns {', '.join(map(str, where))}); "
                    "funnelkit cannot tell which one is meant.",
                    "rename or delete the extra columns in the file.",
                )
                for h, where in dups.items()
            ],
            source=str(path),
        )
    used = _wanted_columns(header, columns, segments)
    if path.stat().st_size >= ARROW_MIN_BYTES:
        roles = _roles(header, columns)
        kw = dict(
            sep=sep,
            encoding=enc,
            header=header,
            roles=roles,
            decimal=decimal,
            time_unit=time_unit,
            progress=progress,
        )
        df = _read_csv_arrow(path, usecols=used, **kw)
        if df is not None:
            if used is not None and len(used) < len(header) and df.duplicated().any():
                df = _read_csv_arrow(path, usecols=None, **kw)
            if df is not None and len(df):
                return df
    try:
        df = pd.read_csv(
            path,
            dtype=str,
            sep=sep,
            encoding=enc,
            keep_default_na=False,
            na_values=[""],
            usecols=used,
        )
        if used is not None and len(used) < len(header) and df.duplicated().any():
            df = pd.read_csv(path, dtype=str, sep=sep, encoding=enc, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as exc:
        raise _file_problem(
            "bad_csv",
            f"{path.name!r} is not a consistent table: {exc}",
            "check the line named above (an unquoted separator inside a cell, or a cut-off "
            "line); quote cells that contain the separator.",
            path,
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise _file_problem(
            "empty_file",
            f"{path.name!r} has no header and no rows.",
            "export the data again, with its header and rows.",
            path,
        ) from exc
    if len(df) == 0:
        raise _file_problem(
            "empty_file",
            f"{path.name!r} has a header ({', '.join(map(str, df.columns))}) but no rows.",
            "export the data again with its rows (a filter may have excluded them all).",
            path,
        )
    return df


def read_events(
    source: str | Path | pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    segments: Sequence[str] | None = None,
    tz: str = "UTC",
    dayfirst: bool | None = None,
    missing_time: str = "error",
    ignore: Sequence[str] | None = None,
    time_unit: str | None = None,
    decimal: str = ".",
    sep: str | None = None,
    encoding: str | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Load a long event log from a CSV, Parquet or XES file or a DataFrame.

    ``.xes`` and ``.xes.gz`` files are read by :func:`funnelkit.xes.read_xes`
    (trace attributes become segments; complete events only).  Other
    parameters are those of :func:`validate_events`, plus:

    Parameters
    ----------
    sep : str, optional
        CSV separator; detected when not given (``,``, ``;``, tab or ``|``).
    encoding : str, optional
        CSV text encoding; detected when not given (UTF-8, UTF-8 with BOM,
        UTF-16, else Windows-1252 / Latin-1 with a note).  A given encoding
        that fails is an error naming the byte offset.
    progress : bool, optional
        Show a progress bar while a CSV file is read (default: for files of
        64 MB and more).  Large CSV files are parsed by pyarrow on every core.

    Examples
    --------
    >>> import funnelkit as fk
    >>> raw = fk.datasets.load_demo(n_leads=200, seed=1, canonical=False)
    >>> log = fk.read_events(raw, columns={"deal": "lead_id", "entered": "timestamp",
    ...                                    "deal_stage": "stage", "value": "amount"},
    ...                      stages="pipeline4")
    >>> list(log.columns[:5])
    ['lead_id', 'stage', 'timestamp', 'amount', 'product']
    """
    # options checked before a large file is read
    _check_missing_time(missing_time, "DataFrame" if isinstance(source, pd.DataFrame) else str(source))
    tz = _check_tz(tz, "DataFrame" if isinstance(source, pd.DataFrame) else str(source))
    if isinstance(source, pd.DataFrame):
        data, name, notes = source, "DataFrame", []
    elif _is_xes(Path(source)):
        from .xes import read_xes

        text_only = {"sep": sep, "encoding": encoding, "time_unit": time_unit, "dayfirst": dayfirst}
        given = [k for k, v in text_only.items() if v is not None] + (["decimal"] if decimal != "." else [])
        if given:
            raise InvalidEventLogError(
                [
                    Problem(
                        "bad_option",
                        None,
                        f"{', '.join(g + '=' for g in given)} apply to tables, not to XES logs (which "
                        "declare their encoding and store typed ISO times and numbers).",
                        f"leave {', '.join(g + '=' for g in given)} out for this file.",
                    )
                ],
                source=str(source),
            )
        return read_xes(
            source,
            columns=columns,
            stages=stages,
            segments=segments,
            tz=tz,
            missing_time=missing_time,
            ignore=ignore,
        )
    else:
        notes: list[str] = []
        data = _read_table(
            source,
            sep=sep,
            encoding=encoding,
            columns=columns,
            segments=segments,
            notes=notes,
            decimal=decimal,
            time_unit=time_unit,
            progress=progress,
        )
        name = str(source)
    return validate_events(
        data,
        columns=columns,
        stages=stages,
        segments=segments,
        tz=tz,
        dayfirst=dayfirst,
        missing_time=missing_time,
        ignore=ignore,
        time_unit=time_unit,
        decimal=decimal,
        source=name,
        notes=notes,
    )


def _load(source: str | Path | pd.DataFrame, notes: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """A DataFrame as given, or a file read by :func:`_read_table` (its notes appended to ``notes``)."""
    if isinstance(source, pd.DataFrame):
        return source, "DataFrame"
    return _read_table(source, notes=notes), str(source)


def from_wide(
    source: str | Path | pd.DataFrame,
    *,
    lead: str,
    stage_columns: Mapping[str, str] | Sequence[str] | None = None,
    prefix: str | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    amount: str | None = None,
    segments: Sequence[str] | None = None,
    tz: str = "UTC",
    dayfirst: bool | None = None,
) -> pd.DataFrame:
    """Turn a wide table (one date column per stage) into an event log.

    This is the shape of HubSpot's deal export ("Date entered <stage>"
    columns) and of many spreadsheets.  A blank date means the lead never
    entered that stage: no event is made for it.

    Parameters
    ----------
    source : path or DataFrame
    lead : str
        The column holding the lead id.
    stage_columns : mapping or list, optional
        Date columns mapped to stage labels (``{"Date entered Demo": "demo"}``),
        or a list of date columns named after their stages.
    prefix : str, optional
        Instead of ``stage_columns``: every column starting with this prefix is a
        stage date column, named by the rest of its name
        (``prefix="Date entered "``).
    stages, tz, dayfirst
        As in :func:`validate_events`.
    amount : str, optional
        Column holding the lead's value.
    segments : list of str, optional
        Columns to keep as segments (default: every other column).

    Examples
    --------
    >>> import pandas as pd, funnelkit as fk
    >>> wide = pd.DataFrame({"id": ["a", "b"], "Date entered lead": ["2024-01-02", "2024-01-03"],
    ...                      "Date entered demo": ["2024-01-09", None]})
    >>> log = fk.from_wide(wide, lead="id", prefix="Date entered ")
    >>> len(log)
    3
    """
    read_notes: list[str] = []
    data, name = _load(source, read_notes)
    if stage_columns is None:
        if prefix is None:
            raise ValueError("give stage_columns= (date columns per stage) or prefix=.")
        stage_columns = {c: c[len(prefix) :].strip() for c in data.columns if str(c).startswith(prefix)}
        if not stage_columns:
            raise InvalidEventLogError(
                [
                    Problem(
                        "missing_column",
                        None,
                        f"no column starts with {prefix!r}. Columns present: "
                        f"{', '.join(map(str, data.columns))}.",
                        "check prefix=.",
                    )
                ],
                source=name,
            )
    elif not isinstance(stage_columns, Mapping):
        stage_columns = {c: c for c in stage_columns}
    missing = [c for c in [lead, *stage_columns] if c not in data.columns]
    if missing:
        raise InvalidEventLogError(
            [
                Problem(
                    "missing_column",
                    c,
                    f"column {c!r} is not in the data. Columns present: {', '.join(map(str, data.columns))}.",
                    "correct the column name.",
                )
                for c in missing
            ],
            source=name,
        )
    keep = [c for c in data.columns if c not in stage_columns and c != lead]
    if segments is not None:
        keep = [c for c in keep if c in segments or c == amount]
    long = data.melt(id_vars=[lead, *keep], value_vars=list(stage_columns), var_name="_col", value_name=TIME)
    long[STAGE] = long["_col"].map(dict(stage_columns))
    blank = long[TIME].isna() | (long[TIME].astype("string").str.strip() == "")
    long = long.loc[~blank.fillna(True).to_numpy()].drop(columns="_col")
    cols = {lead: LEAD}
    if amount:
        cols[amount] = AMOUNT
    note = (
        f"Wide table: {len(data):,} leads x {len(stage_columns)} stage date columns -> "
        f"{len(long):,} events (blank dates mean the stage was not reached)."
    )
    try:
        return validate_events(
            long,
            columns=cols,
            stages=stages,
            segments=segments,
            tz=tz,
            dayfirst=dayfirst,
            source=name,
            notes=[*read_notes, note],
            rows_read=len(data),
        )
    except InvalidEventLogError as exc:
        raise _wide_error(exc, data, lead, stage_columns, cols, keep, tz, dayfirst, name) from None


def _wide_error(exc, data, lead, stage_columns, cols, keep, tz, dayfirst, name) -> InvalidEventLogError:
    """The problems of a wide table named as the user sees it: the date column and the
    row of the wide table, not the event-per-row table it was reshaped into.

    Run only when the reshaped table failed (no cost on the way of a good table):
    each date column is parsed on its own under the user's name, and the lead, amount
    and segment columns are checked on the wide rows.  A problem that only shows in
    the reshaped table (e.g. offsets in one date column, none in another) is kept
    as it was, with a word on its row numbers.
    """
    pos = np.arange(1, len(data) + 1)
    problems: list[Problem] = []
    time_found = others_found = False
    if any(p.column == TIME for p in exc.problems):
        for col in stage_columns:
            _, probs, _ = _parse_times(data[col], tz=tz, dayfirst=dayfirst, column=str(col), pos=pos)
            problems.extend(probs)
        time_found = bool(problems)
    if any(p.column not in (TIME, STAGE) for p in exc.problems):
        rest = data[[lead, *keep]].copy()
        rest[STAGE], rest[TIME] = "stage", pd.Timestamp("2000-01-01")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                validate_events(rest, columns=cols, tz=tz, source=name)
        except InvalidEventLogError as again:
            user_name = {dst: src for src, dst in cols.items()}  # lead_id -> the user's id column
            problems.extend(replace(p, column=user_name.get(p.column, p.column)) for p in again.problems)
            others_found = True
    for p in exc.problems:
        if p.column == TIME and time_found or p.column not in (TIME, STAGE) and others_found:
            continue  # named above, in the wide table's own terms
        if p.rows and p.column != STAGE:
            p = Problem(
                p.kind,
                p.column,
                p.message + " (rows of the table reshaped to one event per row, the events of "
                "one date column after those of another)",
                p.fix,
                p.rows,
            )
        problems.append(p)
    return InvalidEventLogError(problems, source=name)


def from_stage_tables(
    tables: Mapping[str, str | Path | pd.DataFrame],
    *,
    lead: str,
    attributes: str | Path | pd.DataFrame | None = None,
    time: str | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Build an event log from one table per stage (web funnels stored per page).

    Each table lists the leads that reached its stage.  Times come from a
    column of each table when it has ``time``, else from the ``attributes``
    table (one row per lead, e.g. the user's visit date), else are unknown.
    Other columns of ``attributes`` (device, sex, ...) become segments.

    Parameters
    ----------
    tables : mapping
        Stage label -> table (path or DataFrame), in funnel order.
    lead : str
        The id column shared by all tables.
    attributes : path or DataFrame, optional
        One row per lead with segment columns and possibly ``time``.
    time : str, optional
        Name of the timestamp column (in the stage tables or ``attributes``).
    stages : optional
        Stage set; by default the order of ``tables``.
    tz : str

    Notes
    -----
    When all stages share one time (the attribute date), order within a lead
    follows the stage order.  Leads in a stage table but not in ``attributes``
    are kept, with blank segments, and counted in the load report.

    Examples
    --------
    Three page tables of a web shop and one table of users:

    >>> import pandas as pd, funnelkit as fk
    >>> pages = {"home": pd.DataFrame({"user": [1, 2, 3]}), "cart": pd.DataFrame({"user": [1, 2]}),
    ...          "paid": pd.DataFrame({"user": [2]})}
    >>> users = pd.DataFrame({"user": [1, 2, 3], "date": ["2024-03-01", "2024-03-02", "2024-03-02"],
    ...                       "device": ["mobile", "desktop", "mobile"]})
    >>> log = fk.from_stage_tables(pages, lead="user", attributes=users, time="date")
    >>> log[["lead_id", "stage", "device"]].astype(str).values.tolist()
    [['1', 'home', 'mobile'], ['1', 'cart', 'mobile'], ['2', 'home', 'desktop'], ['2', 'cart', 'desktop'], ['2', 'paid', 'desktop'], ['3', 'home', 'mobile']]
    >>> log.attrs["funnelkit"].stage_set
    <StageSet custom: home > cart > paid>
    """
    frames = []
    rows_read = 0
    read_notes: list[str] = []
    for stage_label, tab in tables.items():
        df, name = _load(tab, read_notes)
        rows_read += len(df)
        if lead not in df.columns:
            raise InvalidEventLogError(
                [
                    Problem(
                        "missing_column",
                        lead,
                        f"table for stage {stage_label!r} ({name}) has no "
                        f"column {lead!r}. Columns present: {', '.join(map(str, df.columns))}.",
                        "pass lead= with the id column these tables share.",
                    )
                ],
                source=name,
            )
        part = pd.DataFrame({LEAD: df[lead].astype("string"), STAGE: stage_label})
        if time and time in df.columns:
            part[TIME] = df[time].to_numpy()
        frames.append(part)
    long = pd.concat(frames, ignore_index=True)
    notes = [f"{len(tables)} stage tables with {rows_read:,} rows in all."]
    missing_time = "error"
    if attributes is not None:
        attrs_df, aname = _load(attributes, read_notes)
        if lead not in attrs_df.columns:
            raise InvalidEventLogError(
                [
                    Problem(
                        "missing_column",
                        lead,
                        f"attributes table ({aname}) has no column {lead!r}.",
                        "pass lead= with the id column the tables share.",
                    )
                ],
                source=aname,
            )
        attrs_df = attrs_df.copy()
        attrs_df[lead] = attrs_df[lead].astype("string")
        attrs_df = attrs_df.rename(columns={lead: LEAD})
        if TIME in long.columns and time in attrs_df.columns:
            attrs_df = attrs_df.drop(columns=time)
        elif time:
            attrs_df = attrs_df.rename(columns={time: TIME})
        unmatched = int((~long[LEAD].isin(attrs_df[LEAD])).sum())
        if unmatched:
            notes.append(f"{unmatched:,} stage rows have a lead missing from the attributes table.")
        long = long.merge(attrs_df, on=LEAD, how="left", validate="many_to_one")
    if TIME not in long.columns:
        long[TIME] = pd.NaT
        missing_time = "keep"
        notes.append("No time column: event times are unknown (NaT); order follows the stage order.")
    elif (
        time
        and attributes is not None
        and not any(time in _load(t)[0].columns for t in list(tables.values())[:1])
    ):
        notes.append(
            f"Event times are the lead's {time!r} from the attributes table, the same for every "
            "stage; the order within a lead follows the stage order."
        )
    if stages is None:
        stages = list(tables)
    notes = list(dict.fromkeys(read_notes)) + notes
    return validate_events(
        long,
        stages=stages,
        tz=tz,
        source="stage tables",
        notes=notes,
        rows_read=rows_read,
        missing_time=missing_time,
    )


def from_snapshot(
    source: str | Path | pd.DataFrame,
    *,
    lead: str,
    stage: str,
    stages: StageSet | str | Sequence[str],
    dates: Mapping[str, str],
    amount: str | None = None,
    segments: Sequence[str] | None = None,
    tz: str = "UTC",
    dayfirst: bool | None = None,
) -> pd.DataFrame:
    """Turn a CRM snapshot (one row per opportunity, its current stage) into events.

    A snapshot says where each lead is *now* and carries a few dates.  The
    events it implies are:

    * the first stage, for every lead (it entered the process);
    * every stage that has a date in ``dates`` and a value in the row;
    * for an open lead, every stage before its current one;
    * for a closed lead, its outcome (won/lost), and every stage before the
      latest stage it has a date for.

    The ``amount`` is put on each lead's latest implied event only (its
    current stage or outcome): a snapshot says what a deal is worth now, so
    earlier events must not carry it (a past as-of view would see its future).

    Times come from ``dates``; where the snapshot has no date for an implied
    stage (e.g. every "Prospecting" entry in the Maven CRM data), the time is
    **unknown**: kept as ``NaT`` and flagged ``unknown_time``, never invented.
    The load report states how many.

    Parameters
    ----------
    source : path or DataFrame
    lead : str
        Opportunity id column.
    stage : str
        Current stage column.
    stages : StageSet, preset, YAML path or list
        The stage set the current-stage labels belong to.
    dates : mapping
        Stage or outcome label -> date column, e.g. ``{"Engaging": "engage_date",
        "Won": "close_date", "Lost": "close_date"}``.
    amount : str, optional
        Value column (e.g. ``close_value``); blank for open deals is fine.
    segments : list of str, optional
        Columns kept as segments (default: all others except the dates).

    Examples
    --------
    >>> import pandas as pd, funnelkit as fk
    >>> snap = pd.DataFrame({"id": ["a", "b"], "st": ["Engaging", "Won"],
    ...                      "eng": ["2017-01-02", "2017-01-05"], "closed": [None, "2017-02-01"]})
    >>> ss = fk.StageSet("crm", ["Prospecting", "Engaging"], won="Won", lost=["Lost"])
    >>> log = fk.from_snapshot(snap, lead="id", stage="st", stages=ss,
    ...                        dates={"Engaging": "eng", "Won": "closed", "Lost": "closed"})
    >>> log[["lead_id", "stage", "flag"]].astype(str).values.tolist()
    [['a', 'Prospecting', 'unknown_time'], ['a', 'Engaging', ''], ['b', 'Prospecting', 'unknown_time'], ['b', 'Engaging', ''], ['b', 'Won', '']]
    """
    read_notes: list[str] = []
    data, name = _load(source, read_notes)
    stage_set = get_stage_set(stages)
    problems = [
        Problem(
            "missing_column",
            c,
            f"column {c!r} is not in the snapshot. Columns present: {', '.join(map(str, data.columns))}.",
            "correct the column name.",
        )
        for c in [lead, stage, *dates.values(), *([amount] if amount else [])]
        if c not in data.columns
    ]
    bad_keys = [k for k in dates if stage_set.canonical(k) is None]
    for k in bad_keys:
        problems.append(
            Problem(
                "unknown_stage",
                None,
                f"dates= names {k!r}, which is not in stage set "
                f"{stage_set.name!r} ({', '.join(stage_set.labels)}).",
                "correct the key.",
            )
        )
    if problems:
        raise InvalidEventLogError(list(dict.fromkeys(problems)), source=name)

    cur = data[stage].astype("string").str.strip()
    canon = cur.map(lambda v: stage_set.canonical(v) if v is not pd.NA else None)
    unknown = canon.isna() & cur.notna()
    if unknown.any() or cur.isna().any():
        # let validate_events produce the standard message for unknown/blank stages
        return validate_events(
            data.rename(columns={lead: LEAD, stage: STAGE}).assign(timestamp=pd.NaT),
            stages=stage_set,
            source=name,
            missing_time="keep",
        )
    order_of = {lab: stage_set.order(lab) for lab in stage_set.labels}
    cur_order = canon.map(order_of).to_numpy()
    date_of = {stage_set.canonical(k): v for k, v in dates.items()}
    steps = list(stage_set.stages)  # stages proper (not outcomes)
    won = stage_set.won
    is_closed = canon.isin(stage_set.outcomes).to_numpy()

    seg_cols = [c for c in data.columns if c not in {lead, stage, *dates.values()} and c != amount]
    if segments is not None:
        seg_cols = [c for c in segments if c in data.columns]

    def has_date(label: str) -> np.ndarray:
        col = date_of.get(label)
        if col is None:
            return np.zeros(len(data), dtype=bool)
        v = data[col]
        return (v.notna() & (v.astype("string").str.strip() != "")).fillna(False).to_numpy(dtype=bool)

    # latest stage (by order) with a date, per row
    latest_dated = np.full(len(data), -1)
    for k, s in enumerate(steps):
        latest_dated = np.where(has_date(s), k, latest_dated)
    frames = []
    n_unknown = 0
    for k, s in enumerate(steps):
        reached = (k == 0) | has_date(s) | (~is_closed & (cur_order >= k)) | (k <= latest_dated)
        if won is not None:
            reached |= (canon == won).to_numpy() & (k == 0)
        t = data[date_of[s]] if s in date_of else pd.Series(pd.NA, index=data.index, dtype="string")
        frame = pd.DataFrame({LEAD: data[lead], STAGE: s, TIME: t})
        frames.append(frame.loc[reached])
        n_unknown += int((reached & ~has_date(s)).sum())
    for o in stage_set.outcomes:
        rows = (canon == o).to_numpy()
        t = data[date_of[o]] if o in date_of else pd.Series(pd.NA, index=data.index, dtype="string")
        frames.append(pd.DataFrame({LEAD: data[lead], STAGE: o, TIME: t}).loc[rows])
        n_unknown += int((rows & ~has_date(o)).sum())
    long = pd.concat(frames)
    extra = data[[c for c in [amount, *seg_cols] if c]].loc[long.index]
    long = pd.concat([long, extra], axis=1)
    if amount:
        # the snapshot's amount is what the deal is worth *now*: it belongs to the
        # latest implied event (current stage or outcome), not to earlier ones,
        # or a past as-of view would see a value from its future
        latest = ~long.index.duplicated(keep="last")
        long[amount] = long[amount].where(latest)
        long = long.rename(columns={amount: AMOUNT})
    long = long.reset_index(drop=True)
    counts = canon.value_counts()
    notes = read_notes + [
        f"CRM snapshot: {len(data):,} opportunities "
        f"({', '.join(f'{k} {int(v):,}' for k, v in counts.items())}) -> {len(long):,} implied events.",
    ]
    if n_unknown:
        notes.append(
            f"{n_unknown:,} implied events have no date in the snapshot (e.g. entry into "
            f"{steps[0]!r}); their time is unknown: kept as NaT and flagged 'unknown_time'."
        )
    return validate_events(
        long,
        stages=stage_set,
        tz=tz,
        dayfirst=dayfirst,
        source=name,
        notes=notes,
        rows_read=len(data),
        missing_time="keep",
    )


def known_at(log: pd.DataFrame, as_of, *, lead: str = LEAD, time: str = TIME) -> pd.DataFrame:
    """The log as it was known at ``as_of``: what a view "as of" a date may use.

    Keeps the dated events at or before ``as_of``, and the undated events
    (``NaT``) of the leads known by then (those with a dated event at or
    before it).  A lead whose events are *all* undated (e.g. a snapshot's
    Prospecting-only deal) cannot be placed in time: it is known only at or
    after the data's last timestamp.  Nothing from after ``as_of`` leaks in,
    not even the existence of a lead.

    Parameters
    ----------
    log : DataFrame
        A canonical event log.
    as_of : Timestamp or str
        The moment; a string is parsed by :class:`pandas.Timestamp` as given.
    lead, time : str
        Column names.

    Examples
    --------
    >>> import pandas as pd
    >>> log = pd.DataFrame({"lead_id": ["a", "a", "b", "b"],
    ...                     "stage": ["prospecting", "engaging", "prospecting", "engaging"],
    ...                     "timestamp": pd.to_datetime([None, "2017-01-05", None, "2017-03-01"])})
    >>> known_at(log, pd.Timestamp("2017-02-01"))["lead_id"].tolist()
    ['a', 'a']
    """
    t = log[time]
    tz = time_zone(t)
    T = pd.Timestamp(as_of)
    if tz is not None:  # a naive moment is wall-clock in the log's zone
        T = (
            T.tz_convert(tz)
            if T.tz is not None
            else T.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
        )
    dated = t.notna().to_numpy()
    upto = dated & (t <= T).fillna(False).to_numpy(dtype=bool)
    codes, uniq = pd.factorize(log[lead])
    n = len(uniq)
    ok = codes >= 0
    known = np.bincount(codes[upto & ok], minlength=n) > 0
    n_dated = np.bincount(codes[dated & ok], minlength=n)
    end = t.max()
    at_end = bool(pd.isna(end) or T >= end)
    keep_lead = known | ((n_dated == 0) & at_end)
    keep = upto | (~dated & ok & keep_lead[np.maximum(codes, 0)])
    out = log.loc[keep]
    out.attrs = dict(log.attrs)
    return out


# ---------------------------------------------------------------------------
# checked accessors: what every view needs from a log, as numpy arrays
# ---------------------------------------------------------------------------
def checked_order(log: pd.DataFrame, stages: StageSet, *, stage: str = STAGE) -> np.ndarray:
    """:func:`stage_order`, raising one clear error for labels not in the stage set.

    Examples
    --------
    >>> import pandas as pd, funnelkit as fk
    >>> pipeline4 = fk.get_stage_set("pipeline4")
    >>> checked_order(pd.DataFrame({"stage": ["meeting", "Closed Won"]}), pipeline4)
    array([1, 4])
    >>> checked_order(pd.DataFrame({"stage": ["meeting", "churned"]}), pipeline4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    funnelkit.exceptions.InvalidEventLogError: DataFrame: 1 problem found in the event log:
      1. [stage] labels not in stage set 'pipeline4' (...): 'churned' x1; first at row 2.
    ...
    """
    order = stage_order(log, stages, stage=stage)
    bad_mask = order == -2
    if bad_mask.any():
        bad = pd.Series(log[stage].to_numpy()[bad_mask]).value_counts(dropna=False)
        rows = np.flatnonzero(bad_mask)[:20] + 1
        raise InvalidEventLogError(
            [
                Problem(
                    "unknown_stage",
                    stage,
                    f"labels not in stage set {stages.name!r} ({', '.join(stages.labels)}): "
                    + ", ".join(f"{k!r} x{v:,}" for k, v in bad.items())
                    + f"; first at {_rows_text(rows)}.",
                    "load the log with this stage set (read_events(..., stages=...)) or add aliases.",
                    tuple(int(x) for x in rows),
                )
            ]
        )
    return order


def checked_leads(log: pd.DataFrame, *, lead: str = LEAD) -> tuple[np.ndarray, pd.Index]:
    """Integer code per event and the lead ids (``pd.factorize``); blank ids are an error.

    Examples
    --------
    >>> import pandas as pd
    >>> codes, ids = checked_leads(pd.DataFrame({"lead_id": ["a", "a", "b", "a"]}))
    >>> codes, ids.tolist()
    (array([0, 0, 1, 0]), ['a', 'b'])
    >>> checked_leads(pd.DataFrame({"lead_id": ["a", None]}))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    funnelkit.exceptions.InvalidEventLogError: DataFrame: 1 problem found in the event log:
      1. [lead_id] 1 event(s) have no lead id: row 2.
    ...
    """
    codes, ids = pd.factorize(log[lead], sort=False)
    if (codes < 0).any():
        rows = np.flatnonzero(codes < 0)[:20] + 1
        raise InvalidEventLogError(
            [
                Problem(
                    "empty_lead_id",
                    lead,
                    f"{int((codes < 0).sum()):,} event(s) have no lead id: {_rows_text(rows)}.",
                    "give every event the id of its lead, or load the log with read_events.",
                    tuple(int(x) for x in rows),
                )
            ]
        )
    return codes, pd.Index(ids)


def checked_times(log: pd.DataFrame, *, time: str = TIME) -> np.ndarray:
    """Event times as int64 nanoseconds since 1970 (``NaT`` is the minimum): UTC instants
    for a log with a time zone, wall-clock time for a naive log; non-datetimes are an error.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> log = pd.DataFrame({"timestamp": pd.to_datetime(["1970-01-02", "2024-01-02"])})
    >>> checked_times(log)
    array([     86400000000000, 1704153600000000000])
    >>> checked_times(log).view("datetime64[ns]")[1]
    np.datetime64('2024-01-02T00:00:00.000000000')
    >>> checked_times(pd.DataFrame({"timestamp": ["2024-01-02"]}))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    funnelkit.exceptions.InvalidEventLogError: DataFrame: 1 problem found in the event log:
      1. [timestamp] column 'timestamp' holds ... values, not datetimes.
    ...
    """
    col = log[time]
    if not pd.api.types.is_datetime64_any_dtype(col.dtype):
        raise InvalidEventLogError(
            [
                Problem(
                    "bad_timestamp",
                    time,
                    f"column {time!r} holds {col.dtype} values, not datetimes.",
                    "load the data with fk.read_events(...) or fk.validate_events(...), which parse "
                    "and check the timestamps.",
                )
            ]
        )
    return col.to_numpy(dtype="datetime64[ns]").view(np.int64)
