"""The event log: loading, adapters for real data shapes, and validation.

The canonical input of funnelkit is an **event log**: one row per event,
"lead L entered stage S at time T", with these columns:

=============  ==============================================================
``lead_id``    string; who moves (lead, deal, opportunity, visitor)
``stage``      categorical; the stage or outcome entered, named as in the
               stage set (data labels are mapped onto it)
``timestamp``  ``datetime64[ns]``, tz-naive (see the timezone policy); ``NaT``
               only where an adapter states the time cannot be known
``amount``     float, optional; the lead's value (deal size) at that event
``flag``       categorical; ``""`` or an anomaly that is kept, not dropped:
               ``skipped_stage``, ``moved_back``, ``after_outcome``,
               ``unknown_time``
...            any segment columns (product, source, owner, ...), categorical
=============  ==============================================================

Rows are sorted by lead, time and stage order.

**Timezone policy.** Timestamps are stored tz-naive, as wall-clock time in
the log's timezone ``tz`` (default ``"UTC"``).  Timezone-aware input is
converted to ``tz`` and the zone dropped; naive input is taken to be in
``tz`` already.  A column that mixes naive and aware values is an error
(there is no safe guess), listing rows of each kind.

**Nothing is dropped silently.**  Bad input raises one
:class:`~funnelkit.exceptions.InvalidEventLogError` listing every problem;
exact duplicate events are dropped with a :class:`DataWarning` saying how
many; business anomalies are kept and flagged.  What happened during the
load is in ``log.attrs["funnelkit"]`` (a :class:`LoadReport`).
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .exceptions import DataWarning, InvalidEventLogError, Problem
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
        Exact duplicate events removed (the only rows ever removed).
    flags : dict
        Count of events per anomaly flag (kept in the log).
    notes : list of str
        Plain sentences about what was inferred or is unknown.
    stage_set : StageSet or None
    """

    source: str = "DataFrame"
    rows_read: int = 0
    events: int = 0
    leads: int = 0
    duplicates_dropped: int = 0
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
    """The stage set a log was loaded with (from its attrs), if any."""
    rep = log.attrs.get(_ATTR)
    return rep.stage_set if isinstance(rep, LoadReport) else None


def stage_order(log: pd.DataFrame, stages: StageSet, *, stage: str = STAGE) -> np.ndarray:
    """Integer order of each event's stage: 0.. for steps, -1 for lost, -2 unknown.

    Vectorised through the categorical codes of the stage column.
    """
    cat = pd.Categorical(log[stage])
    lookup = np.array(
        [
            stages.order(c) if stages.canonical(c) is not None else -2
            for c in cat.categories
        ]
        + [-2],
        dtype=np.int64,
    )
    codes = cat.codes.astype(np.int64)
    return lookup[np.where(codes < 0, len(lookup) - 1, codes)]


def segment_columns(log: pd.DataFrame) -> list[str]:
    """The segment columns of a canonical log (everything but the core ones)."""
    core = {LEAD, STAGE, TIME, AMOUNT, FLAG}
    return [c for c in log.columns if c not in core]


def _parse_times(raw: pd.Series, *, tz: str, dayfirst: bool, column: str):
    """Parse a column of timestamps under the timezone policy.

    Returns the parsed naive series and a list of problems.
    """
    problems: list[Problem] = []
    pos = np.arange(1, len(raw) + 1)
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        s = raw
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert(tz).dt.tz_localize(None)
        return s.astype("datetime64[ns]"), problems

    blank = raw.isna() | (raw.astype("string").str.strip() == "")
    blank = blank.fillna(True).to_numpy(dtype=bool)
    values = raw.where(~blank)

    # detect awareness per value: strings by suffix, objects by tzinfo
    def aware_of(v: object) -> bool:
        if isinstance(v, str):
            return bool(_TZ_SUFFIX.search(v.strip()))
        return getattr(v, "tzinfo", None) is not None

    text = values.astype("string")
    is_str = values.map(lambda v: isinstance(v, str)) if values.dtype == object else None
    if is_str is None or bool(is_str[~blank].all()):
        aware = text.str.strip().str.contains(_TZ_SUFFIX, na=False).to_numpy(dtype=bool)
    else:
        aware = values.map(aware_of).to_numpy(dtype=bool)
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
        return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]"), problems

    kwargs = {"errors": "coerce", "dayfirst": dayfirst}
    if aware.any():
        parsed = pd.to_datetime(text, utc=True, format="ISO8601", **kwargs)
        bad = parsed.isna().to_numpy() & ~blank
        if bad.any():
            parsed = parsed.where(~bad, pd.to_datetime(text.where(bad), utc=True, format="mixed", **kwargs))
        parsed = parsed.dt.tz_convert(tz).dt.tz_localize(None)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(values, **kwargs)
        if getattr(parsed.dt, "tz", None) is not None:  # objects with tzinfo
            parsed = parsed.dt.tz_convert(tz).dt.tz_localize(None)
        bad = parsed.isna().to_numpy() & ~blank
        if bad.any():  # inconsistent formats: retry the failures one by one
            retry = pd.to_datetime(values.where(bad), format="mixed", **kwargs)
            parsed = parsed.where(~bad, retry)
    parsed = parsed.astype("datetime64[ns]")
    bad = parsed.isna().to_numpy() & ~blank
    if bad.any():
        problems.append(
            Problem(
                "bad_timestamp",
                column,
                f"{int(bad.sum()):,} value(s) are not dates: {_rows_text(pos[bad])} "
                f"({_values_text(raw[bad].head(5))}).",
                "correct those cells (ISO 8601 such as '2024-03-01 09:30' is safest); pass "
                "dayfirst=True for day-first dates like '31/01/2024'.",
                tuple(int(p) for p in pos[bad][:20]),
            )
        )
    return parsed, problems


# ---------------------------------------------------------------------------
# validation: the single gate every loader goes through
# ---------------------------------------------------------------------------
def validate_events(
    data: pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    segments: Sequence[str] | None = None,
    tz: str = "UTC",
    dayfirst: bool = False,
    missing_time: str = "error",
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
        "Value": "amount"}``.  Unmapped columns keep their names.
    stages : StageSet, preset name, YAML path or list, optional
        The stage set; when given, labels are mapped onto it and unknown labels
        are an error.  Without it stages stay as they are in the data.
    segments : list of str, optional
        Segment columns to keep (after renaming).  Default: every other column.
    tz : str
        The log's timezone (see the timezone policy above).
    dayfirst : bool
        Parse ambiguous dates day first.
    missing_time : {"error", "keep"}
        What a blank timestamp is: an error, or an event whose time is unknown
        (kept with ``NaT`` and flagged ``unknown_time``).
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
        Listing every problem found: missing columns, bad or blank timestamps,
        mixed timezones, empty lead ids, unknown stages, non-numeric or
        negative amounts.
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(data).__name__}.")
    if missing_time not in {"error", "keep"}:
        raise ValueError("missing_time must be 'error' or 'keep'.")
    columns = dict(columns or {})
    absent_src = [src for src in columns if src not in data.columns]
    df = data.rename(columns=columns)
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
                    f"required column {c!r} is missing. Columns present: "
                    f"{', '.join(map(str, data.columns))}."
                )
            close = difflib.get_close_matches(c, [str(x) for x in data.columns], n=2, cutoff=0.4)
            fix = f"map your column to it, e.g. columns={{{close[0]!r}: {c!r}}}" if close else (
                f"add the column or map yours to it with columns={{'your name': {c!r}}}"
            )
            problems.append(Problem("missing_column", c, msg, fix))
    for src in absent_src:
        if columns[src] not in REQUIRED:
            problems.append(
                Problem(
                    "missing_column",
                    src,
                    f"the mapping names column {src!r}, which is not in the data.",
                    "correct the name in columns=.",
                )
            )

    # lead ids
    if LEAD in df.columns:
        lead_raw = df[LEAD]
        empty = (lead_raw.isna() | (lead_raw.astype("string").str.strip() == "")).fillna(True)
        empty = empty.to_numpy(dtype=bool)
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
        times, tprobs = _parse_times(df[TIME], tz=tz, dayfirst=dayfirst, column=TIME)
        problems.extend(tprobs)
        blank = (df[TIME].isna() | (df[TIME].astype("string").str.strip() == "")).fillna(True)
        blank = blank.to_numpy(dtype=bool)
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
    if STAGE in df.columns:
        raw_stage = df[STAGE]
        nostage = (raw_stage.isna() | (raw_stage.astype("string").str.strip() == "")).fillna(True)
        nostage = nostage.to_numpy(dtype=bool)
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
        cat = pd.Categorical(raw_stage.astype("string").str.strip())
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
                bad = np.isin(np.asarray(cat.astype(object)), unknown)
                problems.append(
                    Problem(
                        "unknown_stage",
                        STAGE,
                        f"{len(unknown)} label(s) are not in stage set {stage_set.name!r} "
                        f"({', '.join(stage_set.labels)}): {'; '.join(parts)}; first at "
                        f"{_rows_text(pos[bad])}.",
                        "map them to stages with aliases in the stage set (YAML 'aliases:' or "
                        "StageSet.with_aliases({'label': 'stage'})), or correct the data.",
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
        amount = pd.to_numeric(raw_amt, errors="coerce").astype("float64")
        blank_amt = (raw_amt.isna() | (raw_amt.astype("string").str.strip() == "")).fillna(True)
        nonnum = amount.isna().to_numpy() & ~blank_amt.to_numpy(dtype=bool)
        if nonnum.any():
            problems.append(
                Problem(
                    "bad_amount",
                    AMOUNT,
                    f"{int(nonnum.sum()):,} amount(s) are not numbers: {_rows_text(pos[nonnum])} "
                    f"({_values_text(raw_amt[nonnum].head(5))}).",
                    "write plain numbers (no currency symbols or thousands separators); "
                    "leave the cell blank when the amount is unknown.",
                    tuple(int(p) for p in pos[nonnum][:20]),
                )
            )
        neg = (amount < 0).to_numpy()
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
            LEAD: df[LEAD].astype("string").str.strip().to_numpy(dtype=object),
            STAGE: stage_values,
            TIME: times.to_numpy(),
        }
    )
    if amount is not None:
        out[AMOUNT] = amount.to_numpy()
    for s in seg_cols:
        out[s] = pd.Categorical(df[s].to_numpy(dtype=object))
    out.index = pd.RangeIndex(len(out))

    report = LoadReport(source=source, rows_read=n if rows_read is None else rows_read, stage_set=stage_set)
    report.notes.extend(notes)

    dup = out.duplicated(keep="first").to_numpy()
    if dup.any():
        report.duplicates_dropped = int(dup.sum())
        warnings.warn(
            f"{source}: dropped {int(dup.sum()):,} exact duplicate event(s) "
            f"({_rows_text(pos[dup])}); each was identical in every column to an earlier row.",
            DataWarning,
            stacklevel=2,
        )
        out = out.loc[~dup]
        unknown_time = unknown_time[~dup]

    for s in seg_cols:
        blank_seg = out[s].isna().to_numpy()
        if blank_seg.any():
            n_leads_blank = out.loc[blank_seg, LEAD].nunique()
            report.notes.append(
                f"Segment {s!r} is blank on {int(blank_seg.sum()):,} events ({n_leads_blank:,} "
                "leads); kept, shown as missing in breakdowns."
            )

    out = _sort_and_flag(out, stage_set, unknown_time)
    report.events = len(out)
    report.leads = int(out[LEAD].nunique())
    report.flags = {k: int(v) for k, v in out[FLAG].value_counts().items() if k and v}
    out.attrs[_ATTR] = report
    return out


def _sort_and_flag(out: pd.DataFrame, stage_set: StageSet | None, unknown_time: np.ndarray) -> pd.DataFrame:
    """Sort by lead, time (unknown first), stage order; flag anomalies."""
    lead_codes, _ = pd.factorize(out[LEAD], sort=True)
    t = out[TIME].to_numpy(dtype="datetime64[ns]").view(np.int64)  # NaT is the minimum
    if stage_set is not None:
        order = stage_order(out, stage_set)
    else:
        order = np.zeros(len(out), dtype=np.int64)
    # lost outcomes sort after steps at equal times
    sort_order = np.where(order == LOST_ORDER, np.iinfo(np.int32).max, order)
    idx = np.lexsort((sort_order, t, lead_codes))
    out = out.iloc[idx].reset_index(drop=True)
    unknown_time = unknown_time[idx]
    order, lead_codes = order[idx], lead_codes[idx]

    flag = np.zeros(len(out), dtype=np.int8)
    if stage_set is not None and len(out):
        n_steps = len(stage_set.steps)
        is_outcome = (order == LOST_ORDER) | ((order == n_steps - 1) & (stage_set.won is not None))
        start = np.r_[True, lead_codes[1:] != lead_codes[:-1]]
        grp = np.cumsum(start) - 1
        # highest step reached before each event, per lead
        cm = pd.Series(order).groupby(grp).cummax().to_numpy()
        prev_max = np.r_[-1, cm[:-1]]
        prev_max[start] = -1
        # outcome seen strictly before this event
        oc = pd.Series(is_outcome.astype(np.int64)).groupby(grp).cumsum().to_numpy()
        prev_oc = np.r_[0, oc[:-1]]
        prev_oc[start] = 0
        step = order >= 0
        skipped = step & (order > prev_max + 1)
        back = step & (order < prev_max) & (prev_max >= 0)
        after = prev_oc > 0
        flag[skipped] = 1
        flag[back] = 2
        flag[after] = 3
    flag[unknown_time] = 4
    out[FLAG] = pd.Categorical.from_codes(flag, categories=list(FLAGS))
    return out


# ---------------------------------------------------------------------------
# readers and adapters
# ---------------------------------------------------------------------------
def _read_table(source: str | Path) -> pd.DataFrame:
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        return pd.read_parquet(path)
    if suffix in {".csv", ".txt", ".tsv"} or suffix == ".gz":
        sep = "\t" if ".tsv" in path.name.lower() else ","
        return pd.read_csv(path, dtype=str, sep=sep, keep_default_na=False, na_values=[""])
    raise InvalidEventLogError(
        [
            Problem(
                "unsupported_file",
                None,
                f"cannot read {path.name!r}: funnelkit reads .csv, .tsv and .parquet files.",
                "export the data as CSV or Parquet, or load it into a DataFrame first.",
            )
        ],
        source=str(path),
    )


def read_events(
    source: str | Path | pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    segments: Sequence[str] | None = None,
    tz: str = "UTC",
    dayfirst: bool = False,
    missing_time: str = "error",
) -> pd.DataFrame:
    """Load a long event log from a CSV or Parquet file or a DataFrame.

    Parameters are those of :func:`validate_events`.

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
    if isinstance(source, pd.DataFrame):
        data, name = source, "DataFrame"
    else:
        data, name = _read_table(source), str(source)
    return validate_events(
        data,
        columns=columns,
        stages=stages,
        segments=segments,
        tz=tz,
        dayfirst=dayfirst,
        missing_time=missing_time,
        source=name,
    )


def _load(source: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source, "DataFrame"
    return _read_table(source), str(source)


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
    dayfirst: bool = False,
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
    data, name = _load(source)
    if stage_columns is None:
        if prefix is None:
            raise ValueError("give stage_columns= (date columns per stage) or prefix=.")
        stage_columns = {c: c[len(prefix):].strip() for c in data.columns if str(c).startswith(prefix)}
        if not stage_columns:
            raise InvalidEventLogError(
                [Problem("missing_column", None, f"no column starts with {prefix!r}. Columns present: "
                         f"{', '.join(map(str, data.columns))}.", "check prefix=.")],
                source=name,
            )
    elif not isinstance(stage_columns, Mapping):
        stage_columns = {c: c for c in stage_columns}
    missing = [c for c in [lead, *stage_columns] if c not in data.columns]
    if missing:
        raise InvalidEventLogError(
            [
                Problem("missing_column", c, f"column {c!r} is not in the data. Columns present: "
                        f"{', '.join(map(str, data.columns))}.", "correct the column name.")
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
    return validate_events(
        long,
        columns=cols,
        stages=stages,
        segments=segments,
        tz=tz,
        dayfirst=dayfirst,
        source=name,
        notes=[note],
        rows_read=len(data),
    )


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
    """
    frames = []
    rows_read = 0
    for stage_label, tab in tables.items():
        df, name = _load(tab)
        rows_read += len(df)
        if lead not in df.columns:
            raise InvalidEventLogError(
                [Problem("missing_column", lead, f"table for stage {stage_label!r} ({name}) has no "
                         f"column {lead!r}. Columns present: {', '.join(map(str, df.columns))}.",
                         "pass lead= with the id column these tables share.")],
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
        attrs_df, aname = _load(attributes)
        if lead not in attrs_df.columns:
            raise InvalidEventLogError(
                [Problem("missing_column", lead, f"attributes table ({aname}) has no column {lead!r}.",
                         "pass lead= with the id column the tables share.")],
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
    elif time and attributes is not None and not any(
        time in _load(t)[0].columns for t in list(tables.values())[:1]
    ):
        notes.append(
            f"Event times are the lead's {time!r} from the attributes table, the same for every "
            "stage; the order within a lead follows the stage order."
        )
    if stages is None:
        stages = list(tables)
    return validate_events(
        long, stages=stages, tz=tz, source="stage tables", notes=notes,
        rows_read=rows_read, missing_time=missing_time,
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
    dayfirst: bool = False,
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
    data, name = _load(source)
    stage_set = get_stage_set(stages)
    problems = [
        Problem("missing_column", c, f"column {c!r} is not in the snapshot. Columns present: "
                f"{', '.join(map(str, data.columns))}.", "correct the column name.")
        for c in [lead, stage, *dates.values(), *([amount] if amount else [])]
        if c not in data.columns
    ]
    bad_keys = [k for k in dates if stage_set.canonical(k) is None]
    for k in bad_keys:
        problems.append(Problem("unknown_stage", None, f"dates= names {k!r}, which is not in stage set "
                                f"{stage_set.name!r} ({', '.join(stage_set.labels)}).", "correct the key."))
    if problems:
        raise InvalidEventLogError(list(dict.fromkeys(problems)), source=name)

    cur = data[stage].astype("string").str.strip()
    canon = cur.map(lambda v: stage_set.canonical(v) if v is not pd.NA else None)
    unknown = canon.isna() & cur.notna()
    if unknown.any() or cur.isna().any():
        # let validate_events produce the standard message for unknown/blank stages
        return validate_events(data.rename(columns={lead: LEAD, stage: STAGE}).assign(timestamp=pd.NaT),
                               stages=stage_set, source=name, missing_time="keep")
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
    notes = [
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
    T = pd.Timestamp(as_of)
    t = log[time]
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
    """:func:`stage_order`, raising one clear error for labels not in the stage set."""
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
    """Integer code per event and the lead ids (``pd.factorize``); blank ids are an error."""
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
    """Event times as int64 nanoseconds (``NaT`` is the minimum); non-datetimes and
    timezone-aware columns are an error (the log's times are naive, see the timezone policy)."""
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
    if getattr(col.dt, "tz", None) is not None:
        raise InvalidEventLogError(
            [
                Problem(
                    "timezone_aware",
                    time,
                    f"column {time!r} is timezone-aware ({col.dt.tz}); funnelkit works on naive "
                    "wall-clock times in the log's zone.",
                    "load the data with fk.read_events(..., tz='Europe/Paris') or convert with "
                    "log[col].dt.tz_convert(zone).dt.tz_localize(None).",
                )
            ]
        )
    return col.to_numpy(dtype="datetime64[ns]").view(np.int64)
