"""The pipeline: each lead as an individual, at a point in time.

Where the funnel (:mod:`funnelkit.funnel`) counts how many leads reached
each step, the pipeline answers *where is each lead now, how long has it
been there, what happened to it between two dates*.  Everything is computed
from the event log, vectorised over numpy arrays (no per-lead Python loops).

Rules used throughout
---------------------
* **As-of dates.**  A view "as of" a date uses only events with a timestamp at
  or before it: no leakage from the future.  A date given without a time of
  day (``"2017-06-30"``, a :class:`datetime.date`) means the *end* of that day;
  a :class:`pandas.Timestamp` or a string with a time is taken as given.
* **Current stage** of an open lead: the stage of its latest step event (which
  may be an earlier stage after a backward move).  It entered that stage at
  the start of its latest run of events in that stage.
* **Outcome**: a lead is closed once it has a won or lost event; its outcome
  is that of its latest outcome event (the same rule as
  :func:`funnelkit.funnel.lead_progress`).  Step events after an outcome are
  kept and the lead is flagged ``after_close``.
* **Undated events** (``NaT``, flag ``unknown_time``, e.g. Maven's
  Prospecting) are taken to precede the lead's first dated event.  A lead whose
  events are *all* undated cannot be placed in time: it is excluded from
  snapshots before the data's last timestamp and counted in the snapshot's
  ``attrs["notes"]``; at or after the last timestamp it is included, with
  unknown entry time.
* **Segments** of a lead in a snapshot: the latest non-missing value up to the
  as-of date (e.g. the current owner).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from . import funnel, stats
from ._common import (
    DAY_NS,
    NAT,
    as_list,
    none_known,
    parse_as_of,
    require_columns,
    time_zone,
    to_datetimes,
    wall_clock,
)
from .data import (
    AMOUNT,
    FLAG,
    LEAD,
    STAGE,
    TIME,
    checked_leads,
    checked_order,
    checked_times,
    known_at,
    stage_order,
)
from .exceptions import DataWarning, InvalidEventLogError, PipelineError, Problem
from .funnel import _ends_at_goal, _goal_is_last_stage, _stalled_rows, resolve_stages
from .stages import LOST_ORDER, StageSet

__all__ = [
    "PipelineError",
    "MOVEMENTS",
    "snapshot",
    "stage_summary",
    "durations",
    "duration_summary",
    "bottleneck",
    "lead_cycle",
    "cycle_time",
    "stale_thresholds",
    "stale",
    "movement_leads",
    "movement",
    "drilldown",
    "rep_performance",
    "metrics",
    "velocity",
    "coverage",
    "activity",
]

SNAPSHOT_FLAGS = ("", "moved_back", "unknown_time", "after_close")




# ---------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------
def _to_time(value, *, name: str, tz=None) -> np.int64:
    """A date or time as int64 ns (UTC for a log in zone ``tz``); date-only input means
    the end of that day in the log's zone."""
    return np.int64(parse_as_of(value, name=name, error=PipelineError, tz=tz).value)


def _member(values: pd.Series, pool: pd.Series) -> np.ndarray:
    """``values.isin(pool)`` through a hash index (Arrow-string ``isin`` is slow)."""
    return pd.Index(pd.unique(pool)).get_indexer_for(values) >= 0


def _ts(v: np.int64 | int, tz=None) -> pd.Timestamp:
    """int64 ns as a Timestamp, in the log's zone ``tz`` (naive for a naive log)."""
    if tz is None:
        return pd.Timestamp(int(v), unit="ns")
    return pd.Timestamp(int(v), unit="ns", tz="UTC").tz_convert(tz)


def _when(v: np.int64 | int, tz=None) -> str:
    """An as-of instant in words: ``2019-05-31 (end of day)`` for the last nanosecond of a day
    (how a date is read), else to the second (not ``2019-05-31 23:59:59.999999999``)."""
    t = _ts(v, tz)
    if t == t.normalize() + pd.Timedelta(days=1) - pd.Timedelta(1, "ns"):
        return f"{t:%Y-%m-%d} (end of day)"
    return f"{t:%Y-%m-%d %H:%M:%S}"


def _first_last(lc: np.ndarray, mask: np.ndarray, n_leads: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last sorted position per lead among rows where ``mask`` (-1: none).

    ``lc`` are lead codes of rows sorted by lead, so positions of one lead are
    contiguous and a change of code marks a boundary.
    """
    pos = np.flatnonzero(mask)
    first = np.full(n_leads, -1, dtype=np.int64)
    last = np.full(n_leads, -1, dtype=np.int64)
    if pos.size:
        codes = lc[pos]
        start = np.r_[True, codes[1:] != codes[:-1]]
        end = np.r_[codes[1:] != codes[:-1], True]
        first[codes[start]] = pos[start]
        last[codes[end]] = pos[end]
    return first, last


@dataclass
class _Events:
    """The event log as sorted numpy arrays (sorted by lead, time, stage order)."""

    ss: StageSet
    idx: np.ndarray  # row positions of the log in sorted order
    lc: np.ndarray  # lead code per sorted row
    lead_ids: np.ndarray  # lead id per code
    t: np.ndarray  # int64 ns, NAT for unknown
    order: np.ndarray  # 0.. steps, -1 lost
    is_won: np.ndarray
    is_lost: np.ndarray
    is_step: np.ndarray  # a stage (not an outcome)
    n_leads: int
    tz: object = None  # the log's time zone (t is UTC ns then); None for a naive log

    @property
    def dated(self) -> np.ndarray:
        return self.t != NAT

    def data_range(self) -> tuple[np.int64, np.int64] | None:
        d = self.t[self.dated]
        if d.size == 0:
            return None
        return d.min(), d.max()


def _events(log: pd.DataFrame, stages, *, lead: str, stage: str, time: str) -> _Events:
    if not isinstance(log, pd.DataFrame):
        raise TypeError(f"expected an event log DataFrame, got {type(log).__name__}.")
    require_columns(log, [lead, stage, time], "pass the right names with lead=, stage=, time=.")
    ss = resolve_stages(log, stages)
    order = checked_order(log, ss, stage=stage)
    t = checked_times(log, time=time)
    codes, lead_ids = checked_leads(log, lead=lead)
    sort_key = np.where(order == LOST_ORDER, np.iinfo(np.int32).max, order)
    # canonical logs are already sorted by lead, time, stage order: check in O(n), sort if not
    same_lead = codes[1:] == codes[:-1]
    same_time = same_lead & (t[1:] == t[:-1])
    in_order = bool(
        np.all(codes[1:] >= codes[:-1])
        and np.all(~same_lead | (t[1:] >= t[:-1]))
        and np.all(~same_time | (sort_key[1:] >= sort_key[:-1]))
    )
    idx = np.arange(codes.size) if in_order else np.lexsort((sort_key, t, codes))
    order = order[idx]
    m = len(ss.steps)
    is_won = (order == m - 1) & _ends_at_goal(ss)  # the goal of a set without a won outcome closes a lead too
    is_lost = order == LOST_ORDER
    return _Events(
        ss=ss,
        idx=idx,
        lc=codes[idx].astype(np.int64),
        lead_ids=np.asarray(lead_ids, dtype=object),
        t=t[idx],
        order=order,
        is_won=is_won,
        is_lost=is_lost,
        is_step=(order >= 0) & ~is_won,
        n_leads=len(lead_ids),
        tz=time_zone(log[time]),
    )


def _label_index(stage_col: pd.Series, ss: StageSet) -> np.ndarray:
    """Index of each row's label in ``ss.labels`` (vectorised over categories)."""
    cat = pd.Categorical(stage_col)
    labels = list(ss.labels)
    lut = np.array([labels.index(ss.canonical(c)) for c in cat.categories] + [-1], dtype=np.int64)
    codes = cat.codes.astype(np.int64)
    return lut[np.where(codes < 0, len(lut) - 1, codes)]


def _segment_cols(log: pd.DataFrame, segments, *, exclude: Sequence[str]) -> list[str]:
    if segments is None:
        core = set(exclude) | {FLAG}
        return [c for c in log.columns if c not in core]
    segs = as_list(segments)
    require_columns(log, segs, "pass existing columns in segments=.")
    return segs


def _last_valid(values: pd.Series, ev: _Events, rows: np.ndarray, keep: np.ndarray) -> object:
    """Per lead in ``rows`` (lead codes): the latest non-missing value among kept events."""
    vals = values.to_numpy()[ev.idx] if not isinstance(values.dtype, pd.CategoricalDtype) else None
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()[ev.idx]
        _, last = _first_last(ev.lc, keep & (codes >= 0), ev.n_leads)
        p = last[rows]
        out = np.where(p >= 0, codes[np.maximum(p, 0)], -1)
        return pd.Categorical.from_codes(out, dtype=values.dtype)
    notna = ~pd.isna(vals)
    _, last = _first_last(ev.lc, keep & notna, ev.n_leads)
    p = last[rows]
    res = pd.Series(vals[np.maximum(p, 0)] if vals.size else np.array([], dtype=vals.dtype))
    res = res.where(p >= 0)
    return res.to_numpy()


# ---------------------------------------------------------------------------
# snapshot
# ---------------------------------------------------------------------------
def snapshot(
    log: pd.DataFrame,
    *,
    as_of=None,
    stages: StageSet | str | Sequence[str] | None = None,
    include_closed: bool = False,
    segments: str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Where every lead stands as of a date: one row per lead open then.

    Only events at or before ``as_of`` are used, so a snapshot at a past date
    shows what the pipeline looked like then (no leakage from the future).

    Parameters
    ----------
    log : DataFrame
        A canonical event log (see :mod:`funnelkit.data`).
    as_of : date, str or Timestamp, optional
        The moment of the snapshot; a date without a time means the end of
        that day.  Default: the log's last timestamp.
    stages : StageSet, preset name, YAML path or list, optional
        Defaults to the stage set the log was loaded with.
    include_closed : bool
        Also report leads closed (won or lost) by ``as_of``, with ``outcome``
        and ``closed_at``.
    segments : str or list of str, optional
        Segment columns to carry (default: every column that is not a core
        column of the log).
    lead, stage, time, amount : str
        Column names.

    Returns
    -------
    DataFrame
        One row per lead, sorted by stage (pipeline order) then lead id:

        ====================  ==================================================
        ``lead_id``           the lead
        ``stage``             current stage (ordered categorical over the stage
                              set's labels); for closed leads the outcome label
        ``entered_stage_at``  when it entered its current stage (closed leads:
                              when it closed); ``NaT`` if unknown
        ``days_in_stage``     days from ``entered_stage_at`` to ``as_of``
        ``first_seen_at``     its first dated event
        ``age_days``          days from ``first_seen_at`` to ``as_of``
        ``amount``            latest known amount up to ``as_of``
        segments              latest known value up to ``as_of``
        ``last_activity_at``  its latest dated event up to ``as_of``
        ``flag``              ``""`` or ``moved_back`` (current stage reached
                              by moving back), ``unknown_time`` (has undated
                              events: entry time or age is a lower bound),
                              ``after_close`` (events after its outcome)
        ``outcome``           ``open``, ``won`` or ``lost`` (only with
                              ``include_closed=True``); in a stage set
                              without a won outcome, a lead that reached
                              its last stage (the funnel's goal) is closed
                              as ``won``, and not in the open pipeline
        ``closed_at``         time of the outcome (only with
                              ``include_closed=True``)
        ====================  ==================================================

        ``attrs`` holds ``as_of`` (Timestamp), ``stage_set``, ``excluded_undated``
        (leads left out because they cannot be placed in time) and ``notes``
        (sentences saying what was left out or assumed).

    Raises
    ------
    PipelineError
        If ``as_of`` is not a date or carries a timezone.
    InvalidEventLogError
        If a column is missing or a stage label is not in the stage set.

    Warns
    -----
    DataWarning
        When ``as_of`` is before the data starts (the snapshot is empty) or
        on a later day than the data's last event (the state is that at the
        data's end, ages counted to ``as_of``).

    Examples
    --------
    >>> import pandas as pd
    >>> import funnelkit as fk
    >>> from funnelkit import pipeline
    >>> log = fk.datasets.load_demo()
    >>> snap = pipeline.snapshot(log, as_of="2025-06-30")
    >>> bool(snap["entered_stage_at"].max() <= pd.Timestamp("2025-07-01"))
    True
    >>> snap["stage"].astype(str).value_counts().to_dict()
    {'qualification': 432, 'meeting': 228, 'proposal': 208, 'close': 63}
    """
    if not isinstance(log, pd.DataFrame):
        raise TypeError(f"expected an event log DataFrame, got {type(log).__name__}.")
    require_columns(log, [lead, stage, time], "pass the right names with lead=, stage=, time=.")
    ss = resolve_stages(log, stages)
    ev = _snapshot_events(log, ss, lead=lead, stage=stage, time=time)
    segs = _segment_cols(log, segments, exclude=[lead, stage, time, amount or ""])
    tz = time_zone(log[time])
    lc, t, lab, unit, n_leads = ev.lc, ev.t, ev.lab, ev.unit, ev.n_leads
    rng = ev.data_range()
    T = _to_time(as_of, name="as_of", tz=tz) if as_of is not None else (rng[1] if rng else np.int64(0))
    notes = _as_of_notes(T, rng, tz, stacklevel=3)

    n = lc.size
    bounds = _lead_bounds(ev)
    has_undated = bounds[0]
    k = _known_at(ev, T, rng, tz, bounds, notes, detail=True)
    del bounds
    keep, first_le, last_le, last_any, max_step = k.keep, k.first_le, k.last_le, k.last_any, k.max_step
    last_step, run_start, first_oc, last_oc = k.last_step, k.run_start, k.first_oc, k.last_oc
    leads = np.flatnonzero(k.present & (include_closed | (last_oc < 0)))
    excluded = k.excluded
    del k
    ls = last_step[leads]
    lo = last_oc[leads]
    is_closed = lo >= 0
    has_step = ls >= 0
    cur = np.where(is_closed, lo, ls)
    label_code = np.where(cur >= 0, lab[np.maximum(cur, 0)] if n else -1, -1)
    cur_order = np.where(has_step, ev.order_of[lab[np.maximum(ls, 0)]] if n else -1, -1)
    stage_cat = pd.Categorical.from_codes(label_code, categories=list(ss.labels), ordered=True)

    def times(pos: np.ndarray) -> np.ndarray:
        """int64 ns at sorted positions ``pos`` (NAT where ``pos`` is -1)."""
        out = t[np.maximum(pos, 0)] if n else np.full(pos.size, NAT)
        out = funnel._to_ns(out.astype(np.int64), unit)
        out[pos < 0] = NAT
        return out

    rs = run_start[leads]
    entered = np.where(is_closed, times(lo), np.where(has_step, times(np.where(has_step, rs, -1)), NAT))
    first_seen = times(first_le[leads])
    last_act = times(last_le[leads])

    def days(since: np.ndarray) -> np.ndarray:
        out = np.full(since.size, np.nan)
        ok = since != NAT
        out[ok] = (T - since[ok]) / DAY_NS
        return out

    flag = np.zeros(leads.size, dtype=np.int8)
    flag[has_step & ~is_closed & (cur_order < max_step[leads])] = 1
    flag[has_undated[leads]] = 2
    fo = first_oc[leads]
    after = (fo >= 0) & (last_any[leads] > fo)
    flag[after] = 3

    out = pd.DataFrame(
        {
            # (no rows: an empty object column, as an empty array of ids becomes)
            lead: _lead_column(ev.lead_ids, leads) if leads.size else np.asarray(ev.lead_ids, dtype=object)[leads],
            "stage": stage_cat,
            "entered_stage_at": to_datetimes(entered, tz),
            "days_in_stage": days(entered),
            "first_seen_at": to_datetimes(first_seen, tz),
            "age_days": days(first_seen),
        }
    )
    if amount and amount in log.columns:
        out[AMOUNT] = _last_valid_of(log[amount].astype("float64"), ev.idx, lc, keep, n_leads)(leads)
    else:
        out[AMOUNT] = np.nan
    for s in segs:
        out[s] = _last_valid_of(log[s], ev.idx, lc, keep, n_leads)(leads)
    del keep
    out["last_activity_at"] = to_datetimes(last_act, tz)
    out["flag"] = pd.Categorical.from_codes(flag, categories=list(SNAPSHOT_FLAGS))
    if include_closed:
        oc = np.full(leads.size, "open", dtype=object)
        oc[is_closed] = np.where(ev.is_won_of[lab[lo[is_closed]]], "won", "lost")
        out["outcome"] = pd.Categorical(oc, categories=["open", "won", "lost"])
        out["closed_at"] = to_datetimes(times(lo), tz)
    n_after = int(after.sum())
    if n_after:
        notes.append(
            f"{n_after:,} lead(s) have events after their outcome (flag 'after_close'); they are "
            "reported with their latest outcome - check the data."
        )
    out = out.sort_values(["stage", lead], kind="stable").reset_index(drop=True)
    out.attrs = {
        "as_of": _ts(T, tz),
        "stage_set": ss,
        "excluded_undated": excluded,
        "notes": notes,
    }
    return out


def _as_of_notes(T: np.int64, rng, tz, *, stacklevel: int) -> list[str]:
    """The notes (and warnings, ``stacklevel`` above this function) of a snapshot at ``T``
    before the data starts or after it ends."""
    notes: list[str] = []
    if rng is not None and T < rng[0]:
        warnings.warn(
            f"as_of={_when(T, tz)} is before the data starts ({_when(rng[0], tz)}): no lead existed yet, the "
            "snapshot is empty.",
            DataWarning,
            stacklevel=stacklevel,
        )
        notes.append(f"as_of is before the data starts ({_ts(rng[0], tz)}).")
    elif rng is not None and _ts(T, tz).normalize() > _ts(rng[1], tz).normalize():
        # a snapshot "today" of an export taken yesterday is normal; a gap of
        # more than a week suggests a stale export, and deserves a warning
        if T - rng[1] > 7 * DAY_NS:
            warnings.warn(
                f"as_of={_when(T, tz)} is more than a week after the data ends ({_when(rng[1], tz)}): the "
                "snapshot shows the state at the data's end, with days in stage and ages counted "
                "to as_of. Is the export up to date?",
                DataWarning,
                stacklevel=stacklevel,
            )
        notes.append(f"as_of is after the data ends ({_ts(rng[1], tz)}).")
    return notes


@dataclass
class _SnapshotEvents:
    """The event log as small arrays sorted by lead, time, stage order (see :func:`_snapshot_events`)."""

    idx: np.ndarray | None  # positions that sort the log's rows (None: already sorted)
    lc: np.ndarray  # int32 lead code per sorted event (codes in order of first appearance)
    lead_ids: pd.Index  # lead id per code
    t: np.ndarray  # int64 time in the column's unit (NAT unknown): ns is t * unit
    unit: int
    lab: np.ndarray  # int8 index into ss.labels per sorted event
    n_leads: int
    order_of: np.ndarray  # per label: 0.. steps, -1 lost (int8)
    is_step_of: np.ndarray  # per label: a stage (not an outcome)
    is_won_of: np.ndarray
    is_outcome_of: np.ndarray

    def data_range(self) -> tuple[np.int64, np.int64] | None:
        """First and last dated event, in ns (``None``: no dated event)."""
        if self.t.size == 0:
            return None
        hi = self.t.max()
        if hi == NAT:
            return None
        lo = self.t.min(where=self.t != NAT, initial=np.iinfo(np.int64).max)
        return np.int64(lo * self.unit), np.int64(hi * self.unit)


def _snapshot_events(log: pd.DataFrame, ss: StageSet, *, lead: str, stage: str, time: str) -> _SnapshotEvents:
    """:func:`_events` in small arrays: int32 lead codes (no hash table for lead-sorted Arrow
    ids, no Python object per id), the times as the column holds them (no ns copy), int8
    label indices (the order, step and outcome of an event are per-label look-ups), and no
    sorting copies for a log already sorted by lead, time, stage order."""
    labels = list(ss.labels)

    def label_of(c):
        name = ss.canonical(c)
        return labels.index(name) if name in labels else -2

    lab = funnel._per_category(log[stage], label_of, -2)
    if lab.size and (lab == -2).any():
        funnel._stage_order(log, ss, stage)  # raises the error naming the labels and rows
    t, unit = funnel._event_times(log, time)
    lc, lead_ids = funnel._lead_codes(log, lead)
    order_of = np.array([ss.order(x) for x in labels], dtype=np.int8)
    is_won_of = (order_of == len(ss.steps) - 1) & _ends_at_goal(ss)
    key_of = np.where(order_of == LOST_ORDER, np.iinfo(np.int8).max, order_of).astype(np.int8)
    idx = funnel._sorted_index(lc, t, key_of[lab])
    if idx is not None:
        lc, t, lab = lc[idx], t[idx], lab[idx]
    return _SnapshotEvents(
        idx=idx,
        lc=lc,
        lead_ids=lead_ids,
        t=t,
        unit=unit,
        lab=lab,
        n_leads=len(lead_ids),
        order_of=order_of,
        is_step_of=(order_of >= 0) & ~is_won_of,
        is_won_of=is_won_of,
        is_outcome_of=is_won_of | (order_of == LOST_ORDER),
    )


def _check_snapshot(snap: pd.DataFrame, cols: Sequence[str]) -> None:
    if not isinstance(snap, pd.DataFrame):
        raise TypeError(f"expected a snapshot DataFrame, got {type(snap).__name__}.")
    require_columns(snap, cols, "pass the output of funnelkit.pipeline.snapshot().")


def stage_summary(
    snap: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Count, value and age of the open leads per stage of a snapshot.

    Parameters
    ----------
    snap : DataFrame
        Output of :func:`snapshot`.  Closed leads (``include_closed=True``)
        are left out: the summary is of the open pipeline.
    by : str or list of str, optional
        Segment column(s) to break the summary down by.

    Returns
    -------
    DataFrame
        One row per (segment, stage) in pipeline order: the ``by`` columns,
        ``stage``, ``leads``, ``value`` (sum of known amounts; NaN, not 0,
        where none of the row's leads has one), ``value_unknown`` (leads
        without an amount), ``share_leads`` and
        ``share_value`` (of the segment's open pipeline),
        ``median_days_in_stage``, ``median_age_days``, ``mean_age_days``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> snap = fk.pipeline.snapshot(fk.datasets.load_demo(), as_of="2025-09-30")
    >>> s = fk.pipeline.stage_summary(snap)
    >>> int(s["leads"].sum()) == len(snap)
    True
    """
    by = as_list(by)
    _check_snapshot(snap, ["stage", "days_in_stage", "age_days", AMOUNT, *by])
    df = snap
    if "outcome" in df.columns:
        df = df.loc[df["outcome"] == "open"]
    ss = snap.attrs.get("stage_set")
    stage_col = df["stage"]
    if ss is not None:
        stage_col = pd.Categorical(stage_col.astype(object), categories=list(ss.stages), ordered=True)
    work = pd.DataFrame(
        {
            **{b: df[b].to_numpy() for b in by},
            "stage": stage_col,
            "leads": 1,
            "value": df[AMOUNT].fillna(0.0).to_numpy(),
            "value_unknown": df[AMOUNT].isna().to_numpy().astype(np.int64),
            "days_in_stage": df["days_in_stage"].to_numpy(),
            "age_days": df["age_days"].to_numpy(),
        }
    )
    keys = [*by, "stage"]
    g = work.groupby(keys, observed=False, dropna=False, sort=True)
    res = g.agg(
        leads=("leads", "sum"),
        value=("value", "sum"),
        value_unknown=("value_unknown", "sum"),
        median_days_in_stage=("days_in_stage", "median"),
        median_age_days=("age_days", "median"),
        mean_age_days=("age_days", "mean"),
    ).reset_index()
    if by:
        tot = res.groupby(by, observed=False, dropna=False)[["leads", "value"]].transform("sum")
    else:
        tot = res[["leads", "value"]].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        res["share_leads"] = res["leads"] / tot["leads"]
        res["share_value"] = res["value"] / tot["value"]
    res["leads"] = res["leads"].astype("int64")
    res["value_unknown"] = res["value_unknown"].astype("int64")
    res.loc[none_known(res["leads"], res["leads"] - res["value_unknown"]), "value"] = np.nan
    cols = [
        *by, "stage", "leads", "value", "value_unknown", "share_leads", "share_value",
        "median_days_in_stage", "median_age_days", "mean_age_days",
    ]
    return res[cols]


# ---------------------------------------------------------------------------
# stage durations
# ---------------------------------------------------------------------------
def _sort_index(lc: np.ndarray, t: np.ndarray, sort_key: np.ndarray) -> np.ndarray | None:
    """Positions that sort events by lead, time, stage order; ``None`` when already sorted
    (canonical logs are: checked in O(n), without the n-row arange of :func:`_events`)."""
    if lc.size < 2:
        return None
    same_lead = lc[1:] == lc[:-1]
    same_time = same_lead & (t[1:] == t[:-1])
    in_order = bool(
        np.all(lc[1:] >= lc[:-1])
        and np.all(~same_lead | (t[1:] >= t[:-1]))
        and np.all(~same_time | (sort_key[1:] >= sort_key[:-1]))
    )
    return None if in_order else np.lexsort((sort_key, t, lc))


def _last_time(t: np.ndarray) -> np.int64 | None:
    """The latest known time (``NAT`` is the smallest int64, so the plain maximum)."""
    last = t.max() if t.size else NAT
    return None if last == NAT else last


def _kept_events(lc: np.ndarray, t: np.ndarray, n_leads: int, T: np.int64) -> tuple[np.ndarray, int]:
    """Events usable as of T under the undated-event rule, and the number of leads excluded."""
    dated = t != NAT
    le = dated & (t <= T)
    if le.all():  # every event dated and at or before T: every lead is present
        return le, 0
    n_le = np.bincount(lc[le], minlength=n_leads)
    n_dated = np.bincount(lc[dated], minlength=n_leads)
    last = _last_time(t)
    at_end = last is None or T >= last
    present = (n_le > 0) | ((n_dated == 0) & at_end)
    keep = le | (~dated & present[lc])
    return keep, int(((n_dated == 0) & ~present).sum())


def _last_per_lead(lc: np.ndarray, mask: np.ndarray, n_leads: int, block: int = 1 << 20) -> np.ndarray:
    """Last position per lead among rows where ``mask`` (-1: none): the ``last`` half of
    :func:`_first_last`, without its ``first`` array.

    The rows go by blocks, so the positions found are never a whole-log array: ``lc`` is
    sorted, so a lead's rows in a later block overwrite those of an earlier one.
    """
    last = np.full(n_leads, -1, dtype=np.int64)
    for lo in range(0, mask.size, block):
        pos = np.flatnonzero(mask[lo : lo + block]) + lo
        if pos.size:
            codes = lc[pos]
            end = np.empty(pos.size, dtype=bool)
            end[-1] = True
            np.not_equal(codes[1:], codes[:-1], out=end[:-1])
            last[codes[end]] = pos[end]
    return last


def _last_valid_of(values: pd.Series, idx: np.ndarray | None, lc: np.ndarray, keep: np.ndarray, n_leads: int):
    """:func:`_last_valid` computed once per lead: a function of the lead codes of the rows.

    ``idx`` sorts the log's rows (``None``: already sorted); a categorical column keeps
    one small code per lead, not a value per event.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        if idx is not None:
            codes = codes[idx]
        last = _last_per_lead(lc, keep & (codes >= 0), n_leads)
        per_lead = np.where(last >= 0, codes[np.maximum(last, 0)], -1).astype(codes.dtype)
        return lambda rows: pd.Categorical.from_codes(per_lead[rows], dtype=values.dtype)
    vals = values.to_numpy()
    if idx is not None:
        vals = vals[idx]
    last = _last_per_lead(lc, keep & ~pd.isna(vals), n_leads)

    def column(rows):
        p = last[rows]
        res = pd.Series(vals[np.maximum(p, 0)] if vals.size else np.array([], dtype=vals.dtype))
        return res.where(p >= 0).to_numpy()

    return column


def _lead_column(lead_ids: pd.Index, codes: np.ndarray):
    """The lead ids of ``codes`` as a result column: what a column of those ids as Python
    objects becomes (``str`` for text ids), taken straight from Arrow for text ids."""
    if lead_ids.dtype == pd.StringDtype(na_value=np.nan):
        # Arrow's take with the int32 codes as they are (Index.take would widen them first),
        # into malloc's heap, where the per-visit arrays freed before it leave room
        taken = pc.take(pa.array(lead_ids.array), pa.array(codes), memory_pool=pa.system_memory_pool())
        return lead_ids.dtype.__from_arrow__(taken)
    return np.asarray(lead_ids, dtype=object)[codes]


def _visit_numbers(vlead: np.ndarray, stage: np.ndarray, n_stages: int):
    """Number the visits (in lead-then-time order) 1, 2, ... per lead and stage.

    Returns ``visit_no`` per visit, and for the repeat visits (``visit_no > 1``) their
    indices and the index of the first visit of their (lead, stage).  The visits to one
    stage are in lead order, so a lead's visits to it are a contiguous run of them:
    the numbering goes stage by stage instead of sorting every visit by (lead, stage).
    """
    visit_no = np.ones(vlead.size, dtype=np.int32)
    repeat, first_of = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for s in range(n_stages):
        vs = np.flatnonzero(stage == s)
        if vs.size < 2:
            continue
        leads = vlead[vs]
        new = np.empty(vs.size, dtype=bool)
        new[0] = True
        np.not_equal(leads[1:], leads[:-1], out=new[1:])
        del leads
        again = np.flatnonzero(~new)
        if again.size == 0:
            continue
        run_start = np.flatnonzero(new)[np.cumsum(new)[again] - 1]  # subset index of each run's start
        visit_no[vs[again]] = again - run_start + 1
        repeat.append(vs[again])
        first_of.append(vs[run_start])
    return visit_no, np.concatenate(repeat), np.concatenate(first_of)


def _positions(mask: np.ndarray) -> np.ndarray:
    """``np.flatnonzero(mask)``, as int32 when the positions fit (half the memory)."""
    pos = np.flatnonzero(mask)
    return pos.astype(np.int32) if mask.size <= np.iinfo(np.int32).max else pos


def _visit_days(entered: np.ndarray, left: np.ndarray, open_: np.ndarray, T: np.int64) -> np.ndarray:
    """Days in the stage per visit: to ``left``, or to ``T`` while open; NaN when unknown."""
    end = np.where(open_, T, left)
    unknown = (entered == NAT) | (end == NAT)
    np.subtract(end, entered, out=end)
    days = end / DAY_NS
    days[unknown] = np.nan
    return days


def _per_stage(first: np.ndarray, repeat: np.ndarray, first_of: np.ndarray, days_of):
    """The rows of ``per="stage"`` from their visits.

    ``first``: the first visit of each (lead, stage), sorted (a row each); ``repeat``
    and ``first_of``: the other visits and the first visit of their row (see
    :func:`_visit_numbers`); ``days_of(visits)``: their days.  Returns the latest visit
    and the number of visits per row, and for the rows visited more than once
    (``multi``) the days summed over their visits in time order (as ``np.add.reduceat``)
    and whether any of them is unknown (the summed days are then NaN).  A row visited
    once takes its one visit's days: no per-visit array is needed for it.
    """
    last = first.copy()
    n_vis = np.ones(first.size, dtype=np.int64)
    if repeat.size == 0:
        return last, n_vis, np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=bool)
    row = np.searchsorted(first, first_of)
    np.maximum.at(last, row, repeat)
    np.add.at(n_vis, row, 1)
    multi = np.unique(row)
    visits = np.concatenate([first[multi], repeat])
    visit_row = np.concatenate([multi, row])
    o = np.lexsort((visits, visit_row))  # by row, then time
    d = days_of(visits[o])
    starts = np.flatnonzero(np.r_[True, visit_row[o][1:] != visit_row[o][:-1]])
    unknown = np.add.reduceat(np.isnan(d).astype(np.int64), starts) > 0
    summed = np.where(unknown, np.nan, np.add.reduceat(np.nan_to_num(d), starts))
    return last, n_vis, multi, summed, unknown


def durations(
    log: pd.DataFrame,
    *,
    as_of=None,
    stages: StageSet | str | Sequence[str] | None = None,
    per: str = "stage",
    segments: str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Time each lead spent in each stage: entered -> left.

    A *visit* to a stage starts at a step event whose previous event (of the
    same lead) is in another stage, and ends at the lead's next event in a
    different stage or outcome.  A visit still going on at ``as_of`` is
    *censored*: its duration so far is counted to ``as_of`` and marked, so
    summaries can treat it as "at least this long" (Kaplan-Meier).

    When a lead re-enters a stage (a backward move), HubSpot-style both the
    **latest** visit and the **cumulative** time over all visits are given.

    Parameters
    ----------
    log : DataFrame
        A canonical event log.
    as_of : date, optional
        Only events up to this moment are used; open visits are censored here.
        Default: the log's last timestamp.
    stages : stage set, optional
        Defaults to the log's stage set.
    per : {"stage", "visit"}
        One row per (lead, stage) (default), or one row per visit.
    segments : str or list of str, optional
        Segment columns to carry (default: all); values as in :func:`snapshot`.
    lead, stage, time, amount : str
        Column names.

    Returns
    -------
    DataFrame
        With ``per="visit"``: ``lead_id``, ``stage`` (ordered categorical of
        the stages), ``visit`` (1, 2, ... per lead and stage), ``entered_at``,
        ``left_at`` (``NaT`` while open), ``left_to`` (the stage or outcome
        entered next; missing while open), ``days``, ``censored`` (bool: still
        in the stage at ``as_of``), ``outcome`` (the lead's outcome as of
        ``as_of``: open/won/lost), ``flag`` (``""`` or ``unknown_time``: the
        entry or exit time is unknown and ``days`` is missing), the segments.

        With ``per="stage"``: ``lead_id``, ``stage``, ``visits``,
        ``first_entered_at``, ``last_left_at``, ``latest_days`` (the latest
        visit), ``cumulative_days`` (sum over visits), ``censored`` (the latest
        visit is still open), ``left_to`` (after the latest visit),
        ``outcome``, ``flag``, the segments.

        ``attrs``: ``as_of``, ``stage_set``, ``notes``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> d = fk.pipeline.durations(fk.datasets.load_demo())
    >>> int(d["visits"].max())
    2
    >>> bool((d["cumulative_days"] >= d["latest_days"] - 1e-9).all())
    True
    """
    if per not in {"stage", "visit"}:
        raise PipelineError(f"per must be 'stage' or 'visit', got {per!r}.")
    if not isinstance(log, pd.DataFrame):
        raise TypeError(f"expected an event log DataFrame, got {type(log).__name__}.")
    require_columns(log, [lead, stage, time], "pass the right names with lead=, stage=, time=.")
    ss = resolve_stages(log, stages)
    segs = _segment_cols(log, segments, exclude=[lead, stage, time, amount or ""])
    labels = list(ss.labels)
    tz = time_zone(log[time])

    # events as small arrays, sorted by lead, time, stage order (the same rules as _events)
    funnel._stage_order(log, ss, stage)  # unknown labels: the one clear error
    lab = funnel._per_category(log[stage], lambda c: labels.index(ss.canonical(c)), -1)
    t = checked_times(log, time=time)
    lc, lead_ids = funnel._lead_codes(log, lead)
    n_leads = len(lead_ids)
    order_of = np.array([ss.order(x) for x in labels], dtype=np.int64)
    is_won_of = (order_of == len(ss.steps) - 1) & _ends_at_goal(ss)
    is_step_of = (order_of >= 0) & ~is_won_of
    is_outcome_of = is_won_of | (order_of == LOST_ORDER)
    sort_key_of = np.where(order_of == LOST_ORDER, np.iinfo(np.int16).max, order_of).astype(np.int16)
    idx = _sort_index(lc, t, sort_key_of[lab])
    if idx is not None:
        lc, t, lab = lc[idx], t[idx], lab[idx]

    last_time = _last_time(t)
    T = _to_time(as_of, name="as_of", tz=tz) if as_of is not None else (last_time if last_time is not None else np.int64(0))
    keep, excluded = _kept_events(lc, t, n_leads, T)
    notes = []
    if excluded:
        notes.append(
            f"{excluded:,} lead(s) with only undated events are left out: their stage visits "
            "cannot be placed before as_of."
        )
    # per lead: the outcome as of T (latest outcome event; 0 open, 1 won, 2 lost), the segments
    last_oc = _last_per_lead(lc, keep & is_outcome_of[lab], n_leads)
    oc = np.zeros(n_leads, dtype=np.int8)
    has = last_oc >= 0
    oc[has] = np.where(is_won_of[lab[last_oc[has]]], 1, 2)
    del last_oc, has
    seg_last = {s: _last_valid_of(log[s], idx, lc, keep, n_leads) for s in segs}
    del idx

    # visits: runs of one step label per lead among the kept events
    if not keep.all():
        lc, t, lab = lc[keep], t[keep], lab[keep]
    del keep
    n = lc.size
    if n == 0:
        notes.append(f"no lead is known at as_of={_ts(T, tz)}: there are no stage visits to measure.")
    change = np.ones(n + 1, dtype=bool)  # where a run of one label starts, and the end (n)
    if n:
        change[1:n] = (lc[1:] != lc[:-1]) | (lab[1:] != lab[:-1])
    starts = _positions(change)
    del change
    which = _positions(is_step_of[lab[starts[:-1]]])  # the runs that are visits
    vpos, npos = starts[which], starts[which + 1]  # a visit's first event; the next run's (n: none)
    del starts, which
    vlead, stage_codes = lc[vpos], lab[vpos]
    nq = np.minimum(npos, max(n - 1, 0))
    open_ = (npos == n) | (lc[nq] != vlead)
    del npos, lc
    left_code = lab[nq]  # the label entered next (-1: still open)
    left_code[open_] = -1
    del lab
    entered, left = t[vpos], t[nq]
    left[open_] = NAT
    del vpos, nq, t
    visit_no, repeat, first_of = _visit_numbers(vlead, stage_codes, len(ss.stages))

    if per == "stage":
        first = _positions(visit_no == 1)  # a row per (lead, stage), in order of its first visit
        del visit_no
        last, n_vis, multi, multi_days, multi_unknown = _per_stage(
            first, repeat, first_of, lambda v: _visit_days(entered[v], left[v], open_[v], T)
        )
        # each column is taken, then its per-visit source freed: the peak stays near the table
        lead_codes, stage_codes = vlead[first], stage_codes[first]
        del vlead
        first_entered = to_datetimes(entered[first], tz)
        del first
        entered = entered[last]
        left = left[last]
        censored, left_code = open_[last], left_code[last]
        del open_, last
        latest = _visit_days(entered, left, censored, T)
        del entered
        cumulative = latest.copy()  # a row visited once: its one visit
        cumulative[multi] = multi_days
        unknown = np.isnan(latest)
        unknown[multi] = multi_unknown
        cols = {
            lead: _lead_column(lead_ids, lead_codes),
            "stage": pd.Categorical.from_codes(stage_codes, categories=list(ss.stages), ordered=True),
            "visits": n_vis,
            "first_entered_at": first_entered,
            "last_left_at": to_datetimes(left, tz),
            "latest_days": latest,
            "cumulative_days": cumulative,
            "censored": censored,
            "left_to": pd.Categorical.from_codes(left_code, categories=labels),
        }
    else:
        lead_codes = vlead
        days = _visit_days(entered, left, open_, T)
        cols = {
            lead: _lead_column(lead_ids, vlead),
            "stage": pd.Categorical.from_codes(stage_codes, categories=list(ss.stages), ordered=True),
            "visit": visit_no.astype(np.int64),
            "entered_at": to_datetimes(entered, tz),
            "left_at": to_datetimes(left, tz),
            "left_to": pd.Categorical.from_codes(left_code, categories=labels),
            "days": days,
            "censored": open_,
        }
        unknown = np.isnan(days)
    cols["outcome"] = pd.Categorical.from_codes(oc[lead_codes], categories=["open", "won", "lost"])
    cols["flag"] = pd.Categorical.from_codes(unknown.astype(np.int8), categories=["", "unknown_time"])
    for s, values in seg_last.items():
        cols[s] = values(lead_codes)
    out = pd.DataFrame(cols, copy=False)  # the arrays are ours: no copy, no consolidation
    out.attrs = {"as_of": _ts(T, tz), "stage_set": ss, "notes": notes}
    return out


def _duration_col(d: pd.DataFrame, duration: str | None) -> str:
    if duration is not None:
        require_columns(d, [duration], "pass duration='days', 'latest_days' or 'cumulative_days'.")
        return duration
    for c in ("days", "cumulative_days"):
        if c in d.columns:
            return c
    raise InvalidEventLogError(
        [Problem("missing_column", "days", "the table has no 'days' or 'cumulative_days' column.",
                 "pass the output of funnelkit.pipeline.durations().")]
    )


def _km_summary(days: np.ndarray, censored: np.ndarray, level: float) -> dict[str, float]:
    ok = ~np.isnan(days)
    d, c = days[ok], censored[ok]
    km = stats.kaplan_meier(d, ~c, level=level)
    med, lo, hi = stats.km_quantile(km, 0.5)
    done = d[~c]
    return {
        "n": int(ok.sum()),
        "completed": int((~c).sum()),
        "censored": int(c.sum()),
        "unknown_time": int((~ok).sum()),
        "mean_completed_days": float(done.mean()) if done.size else np.nan,
        "median_days": med,
        "median_ci_low": lo,
        "median_ci_high": hi,
        "p75_days": stats.km_quantile(km, 0.75)[0],
        "p90_days": stats.km_quantile(km, 0.90)[0],
    }


def _groups(df: pd.DataFrame, keys: list[str]):
    """(key tuple, positional index array) per group, observed values only, sorted."""
    if not keys:
        yield (), np.arange(len(df))
        return
    for k, ix in df.groupby(keys, observed=True, dropna=False, sort=True).indices.items():
        yield (k if isinstance(k, tuple) else (k,)), ix


def duration_summary(
    d: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    duration: str | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Median, p75 and p90 time in each stage, open visits treated as censored.

    Quantiles are read off a Kaplan-Meier curve per stage (and segment): a
    lead still in a stage counts as "in it at least this long", so open deals
    neither vanish nor pose as finished.  Where fewer than half (a quarter,
    a tenth) of the visits have ended, the median (p75, p90) is unknown:
    ``NaN``, not a guess.

    Parameters
    ----------
    d : DataFrame
        Output of :func:`durations` (either ``per``).
    by : str or list of str, optional
        Segment column(s).
    duration : str, optional
        The duration column: default ``days`` (per visit) or
        ``cumulative_days`` (per lead and stage).
    level : float
        Level of the interval for the median.

    Returns
    -------
    DataFrame
        One row per (segment, stage): the ``by`` columns, ``stage``, ``n``
        (visits or leads with a known duration), ``completed``, ``censored``,
        ``unknown_time`` (left out: time unknown), ``mean_completed_days``
        (mean over completed visits only: biased low while many are open),
        ``median_days`` with ``median_ci_low`` / ``median_ci_high``,
        ``p75_days``, ``p90_days``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> d = fk.pipeline.durations(fk.datasets.load_demo(), per="visit")
    >>> s = fk.pipeline.duration_summary(d)
    >>> list(s["stage"].astype(str))
    ['qualification', 'meeting', 'proposal', 'close']
    """
    by = as_list(by)
    col = _duration_col(d, duration)
    require_columns(d, ["stage", "censored", *by], "pass the output of durations().")
    rows = []
    days_all = d[col].to_numpy(dtype=float)
    cens_all = d["censored"].to_numpy(dtype=bool)
    for key, ix in _groups(d, [*by, "stage"]):
        rec = dict(zip([*by, "stage"], key))
        rec.update(_km_summary(days_all[ix], cens_all[ix], level))
        rows.append(rec)
    cols = [*by, "stage", "n", "completed", "censored", "unknown_time", "mean_completed_days",
            "median_days", "median_ci_low", "median_ci_high", "p75_days", "p90_days"]
    out = pd.DataFrame(rows, columns=cols)
    ss = d.attrs.get("stage_set")
    cats = list(ss.stages) if ss is not None else list(pd.unique(d["stage"].astype(str)))
    out["stage"] = pd.Categorical(out["stage"].astype(str), categories=cats, ordered=True)
    out = out.sort_values([*by, "stage"], kind="stable").reset_index(drop=True)
    out.attrs = {"level": level, "duration": col, "stage_set": ss}
    return out


def bottleneck(
    log: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    as_of=None,
    stages: StageSet | str | Sequence[str] | None = None,
    level: float = 0.95,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
) -> pd.DataFrame:
    """Which stage makes the sales cycle long.

    Two views of each stage's weight in the cycle, per segment:

    * ``median_days``: the Kaplan-Meier median time leads spend in the stage
      (all leads, open ones censored; cumulative over re-entries);
    * ``won_share``: among leads that **won**, the stage's share of their
      total time in stages (sum of time in the stage / sum of cycle times), so
      the shares of a segment add up to 1.

    The bottleneck is the stage with the largest ``won_share`` (the stage
    where winning deals spend their time); where no lead has won, the one
    with the largest ``median_days``.

    Returns
    -------
    DataFrame
        One row per (segment, stage): the ``by`` columns, ``stage``,
        ``median_days``, ``median_ci_low``, ``median_ci_high``, ``p90_days``,
        ``won_leads``, ``won_mean_days`` (mean days in the stage among won
        leads that passed through it), ``won_share``, ``bottleneck`` (bool).

    Examples
    --------
    >>> import funnelkit as fk
    >>> b = fk.pipeline.bottleneck(fk.datasets.load_demo(), by="product")
    >>> b.loc[b["bottleneck"], "stage"].astype(str).unique().tolist()
    ['proposal']
    >>> int(b["bottleneck"].sum())
    3
    """
    by = as_list(by)
    d = durations(log, as_of=as_of, stages=stages, per="stage", segments=by or [],
                  lead=lead, stage=stage, time=time, amount=None)
    summ = duration_summary(d, by=by, duration="cumulative_days", level=level)
    won = d.loc[(d["outcome"] == "won") & ~d["censored"]]
    keys = [*by, "stage"]
    w = (
        won.groupby(keys, observed=True, dropna=False)["cumulative_days"]
        .agg(won_leads="count", won_total="sum", won_mean_days="mean")
        .reset_index()
    )
    out = summ[[*keys, "median_days", "median_ci_low", "median_ci_high", "p90_days"]].merge(
        w, on=keys, how="left"
    )
    out["won_leads"] = out["won_leads"].fillna(0).astype("int64")
    out["won_total"] = out["won_total"].fillna(0.0)
    if by:
        tot = out.groupby(by, observed=True, dropna=False)["won_total"].transform("sum")
    else:
        tot = out["won_total"].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["won_share"] = out["won_total"] / tot
    if by:
        has_won = out.groupby(by, observed=True, dropna=False)["won_total"].transform("sum") > 0
    else:
        has_won = pd.Series(out["won_total"].sum() > 0, index=out.index)
    metric = np.where(
        has_won, out["won_share"].fillna(0.0), out["median_days"].fillna(-np.inf)
    )
    out["_metric"] = metric
    best = (
        out.groupby(by, observed=True, dropna=False)["_metric"].transform("max")
        if by else pd.Series(out["_metric"].max(), index=out.index)
    )
    out["bottleneck"] = (out["_metric"] == best) & np.isfinite(best) & (best > 0)
    cols = [*keys, "median_days", "median_ci_low", "median_ci_high", "p90_days",
            "won_leads", "won_mean_days", "won_share", "bottleneck"]
    out = out[cols]
    out.attrs = {"as_of": d.attrs["as_of"], "stage_set": d.attrs["stage_set"], "notes": list(d.attrs["notes"])}
    return out


# ---------------------------------------------------------------------------
# time between two stages (sales cycle)
# ---------------------------------------------------------------------------
def lead_cycle(
    log: pd.DataFrame,
    *,
    start: str | None = None,
    end: str | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    segments: str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Per lead: days from its first entry into ``start`` to its first entry into ``end``.

    Parameters
    ----------
    log : DataFrame
    start, end : str
        Stage or outcome names (default: the first stage, and the ``won``
        outcome: the sales cycle of won deals; without a won outcome, the
        last stage, the funnel's goal).
    stages, segments, lead, stage, time, amount
        As in :func:`snapshot`.

    Returns
    -------
    DataFrame
        One row per lead that has events of both stages: ``lead_id``,
        ``start_at``, ``end_at``, ``days``, ``amount``, the segments, and
        ``flag``: ``""``, ``unknown_time`` (a time is unknown, ``days`` is
        missing) or ``negative_duration`` (``end`` is dated before ``start``:
        the timestamps contradict the stage order; ``days`` is kept, negative,
        so the rows can be inspected, and summaries leave them out).

    Examples
    --------
    >>> import funnelkit as fk
    >>> c = fk.pipeline.lead_cycle(fk.datasets.load_demo(n_leads=500))
    >>> bool((c["days"] > 0).all())
    True
    """
    ev = _events(log, stages, lead=lead, stage=stage, time=time)
    ss = ev.ss
    segs = _segment_cols(log, segments, exclude=[lead, stage, time, amount or ""])
    start = ss.steps[0] if start is None else start
    if end is None:
        if not _ends_at_goal(ss):
            raise PipelineError(
                f"stage set {ss.name!r} has no won outcome; pass end= (a stage name)."
            )
        end = ss.won if ss.won is not None else ss.steps[-1]  # a set without a won outcome: its goal
    labels = list(ss.labels)
    codes = []
    for name, val in (("start", start), ("end", end)):
        c = ss.canonical(val)
        if c is None:
            raise PipelineError(f"{name}={val!r} is not a stage of {ss.name!r}: {', '.join(labels)}.")
        codes.append(labels.index(c))
    label_idx = _label_index(log[stage], ss)[ev.idx]
    first_s, _ = _first_last(ev.lc, label_idx == codes[0], ev.n_leads)
    first_e, _ = _first_last(ev.lc, label_idx == codes[1], ev.n_leads)
    leads = np.flatnonzero((first_s >= 0) & (first_e >= 0))
    ts = ev.t[first_s[leads]]
    te = ev.t[first_e[leads]]
    unknown = (ts == NAT) | (te == NAT)
    days = np.full(leads.size, np.nan)
    days[~unknown] = (te[~unknown] - ts[~unknown]) / DAY_NS
    flag = np.where(unknown, "unknown_time", np.where(days < 0, "negative_duration", ""))
    out = pd.DataFrame(
        {
            lead: ev.lead_ids[leads],
            "start_at": to_datetimes(ts, ev.tz),
            "end_at": to_datetimes(te, ev.tz),
            "days": days,
        }
    )
    every = np.ones(ev.lc.size, dtype=bool)
    if amount and amount in log.columns:
        out[AMOUNT] = _last_valid(log[amount].astype("float64"), ev, leads, every)
    for s in segs:
        out[s] = _last_valid(log[s], ev, leads, every)
    out["flag"] = pd.Categorical(flag, categories=["", "unknown_time", "negative_duration"])
    out.attrs = {"start": labels[codes[0]], "end": labels[codes[1]], "stage_set": ss}
    return out


def cycle_time(
    log: pd.DataFrame,
    *,
    start: str | None = None,
    end: str | None = None,
    by: str | Sequence[str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
) -> pd.DataFrame:
    """Average and median time between two stages (default: the sales cycle of won deals).

    Only leads that reached both stages count (for the default, won deals):
    this is the cycle *of deals that closed*, not a forecast for open ones.

    Returns
    -------
    DataFrame
        One row per segment: the ``by`` columns, ``start``, ``end``,
        ``leads`` (with a usable duration), ``mean_days``, ``median_days``,
        ``p75_days``, ``p90_days``, ``min_days``, ``max_days``,
        ``negative_duration`` and ``unknown_time`` (leads left out, with the
        reason; see :func:`lead_cycle`).

    Examples
    --------
    >>> import funnelkit as fk
    >>> c = fk.pipeline.cycle_time(fk.datasets.load_demo(), start="meeting", end="won")
    >>> int(c.loc[0, "leads"]) > 0
    True
    """
    by = as_list(by)
    lc = lead_cycle(log, start=start, end=end, stages=stages, segments=by,
                    lead=lead, stage=stage, time=time, amount=None)
    good = lc["flag"] == ""
    work = pd.DataFrame({**{b: lc[b] for b in by}, "days": lc["days"].where(good),
                         "neg": (lc["flag"] == "negative_duration").astype(np.int64),
                         "unk": (lc["flag"] == "unknown_time").astype(np.int64)})
    if by:
        g = work.groupby(by, observed=True, dropna=False, sort=True)
    else:
        g = work.assign(_all=0).groupby("_all")
    res = g.agg(
        leads=("days", "count"),
        mean_days=("days", "mean"),
        median_days=("days", "median"),
        p75_days=("days", lambda x: x.quantile(0.75)),
        p90_days=("days", lambda x: x.quantile(0.90)),
        min_days=("days", "min"),
        max_days=("days", "max"),
        negative_duration=("neg", "sum"),
        unknown_time=("unk", "sum"),
    ).reset_index()
    res = res.drop(columns=[c for c in ["_all"] if c in res.columns])
    res.insert(len(by), "start", lc.attrs["start"])
    res.insert(len(by) + 1, "end", lc.attrs["end"])
    return res


# ---------------------------------------------------------------------------
# stale deals
# ---------------------------------------------------------------------------
def _read_thresholds(thresholds, ss: StageSet) -> dict[str, float]:
    src = "thresholds"
    if isinstance(thresholds, (str, Path)):
        path = Path(thresholds)
        src = str(path)
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PipelineError(f"{path}: cannot read the thresholds file: {exc}") from exc
        except yaml.YAMLError as exc:
            raise PipelineError(f"{path}: not valid YAML: {exc}") from exc
        if isinstance(spec, Mapping) and "stale_days" in spec:
            spec = spec["stale_days"]
        thresholds = spec
    if not isinstance(thresholds, Mapping):
        raise PipelineError(
            f"{src}: expected a mapping of stage -> days (e.g. {{'meeting': 30}} or a YAML file "
            f"with 'stale_days: {{meeting: 30}}'), got {type(thresholds).__name__}."
        )
    out: dict[str, float] = {}
    problems = []
    for k, v in thresholds.items():
        name = ss.canonical(k)
        if name is None or name not in ss.stages:
            sug = ss.suggest(k)
            hint = f" (did you mean {' or '.join(map(repr, sug))}?)" if sug else ""
            problems.append(f"{k!r} is not a stage of {ss.name!r}{hint}")
            continue
        try:
            days = float(v)
        except (TypeError, ValueError):
            problems.append(f"{k!r}: {v!r} is not a number of days")
            continue
        if not np.isfinite(days) or days < 0:
            problems.append(f"{k!r}: {v!r} must be a non-negative number of days")
            continue
        out[name] = days
    if problems:
        raise PipelineError(
            f"{src}: " + "; ".join(problems) + f". Stages are: {', '.join(ss.stages)}."
        )
    return out


def stale_thresholds(
    log: pd.DataFrame,
    *,
    as_of=None,
    quantile: float = 0.9,
    thresholds: Mapping[str, float] | str | Path | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
) -> pd.DataFrame:
    """Days after which a lead counts as stale in each stage.

    By default learned from history: the ``quantile`` (0.9) of the time
    leads spent in that stage (per visit, Kaplan-Meier with open visits
    censored, using only events up to ``as_of``).  Where too few visits have
    ended for the curve to reach the quantile, the quantile of the completed
    visits is used and the ``source`` says so.  ``thresholds`` (a mapping or a
    YAML file, flat or under a ``stale_days:`` key) overrides any stage.

    Returns
    -------
    DataFrame
        ``stage``, ``threshold_days``, ``source`` (``"given"``,
        ``"learned p90"``, ``"learned p90 of completed visits"`` or ``"no
        history"``), ``visits`` (visits the estimate is based on).

    Examples
    --------
    >>> import funnelkit as fk
    >>> th = fk.pipeline.stale_thresholds(fk.datasets.load_demo(), thresholds={"close": 20})
    >>> row = th.set_index("stage").loc["close"]
    >>> float(row["threshold_days"]), row["source"]
    (20.0, 'given')
    """
    if not 0 < quantile < 1:
        raise PipelineError(f"quantile must be between 0 and 1, got {quantile!r}.")
    ev_ss = resolve_stages(log, stages)
    given = _read_thresholds(thresholds, ev_ss) if thresholds is not None else {}
    d = durations(log, as_of=as_of, stages=ev_ss, per="visit", segments=[],
                  lead=lead, stage=stage, time=time, amount=None)
    return _thresholds_from(d, ev_ss, given, quantile)


def _thresholds_from(d: pd.DataFrame, ev_ss: StageSet, given: dict[str, float], quantile: float) -> pd.DataFrame:
    """The table of :func:`stale_thresholds` from the visits (``durations(per="visit")``)."""
    pct = f"p{round(quantile * 100):d}" if float(quantile * 100).is_integer() else f"q{quantile}"
    rows = []
    days_all = d["days"].to_numpy(dtype=float)
    cens_all = d["censored"].to_numpy(dtype=bool)
    codes = d["stage"].cat.codes.to_numpy()
    for k, name in enumerate(ev_ss.stages):
        ix = (codes == k) & ~np.isnan(days_all)
        n = int(ix.sum())
        if name in given:
            rows.append((name, given[name], "given", n))
            continue
        if n == 0:
            rows.append((name, np.nan, "no history", 0))
            continue
        km = stats.kaplan_meier(days_all[ix], ~cens_all[ix])
        q = stats.km_quantile(km, quantile)[0]
        if np.isnan(q):
            done = days_all[ix & ~cens_all]
            if done.size == 0:
                rows.append((name, np.nan, "no history", n))
                continue
            rows.append((name, float(np.quantile(done, quantile)), f"learned {pct} of completed visits", n))
        else:
            rows.append((name, float(q), f"learned {pct}", n))
    out = pd.DataFrame(rows, columns=["stage", "threshold_days", "source", "visits"])
    out["stage"] = pd.Categorical(out["stage"], categories=list(ev_ss.stages), ordered=True)
    out.attrs = {"as_of": d.attrs["as_of"], "quantile": quantile}
    return out


def stale(
    log: pd.DataFrame,
    *,
    as_of=None,
    thresholds: Mapping[str, float] | str | Path | None = None,
    quantile: float = 0.9,
    owner: str | None = "owner",
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Open leads that have sat in their stage longer than its threshold.

    The list a rep works through on Monday morning: who owns the lead, how
    long it has been in its stage, and how many days overdue it is.  A lead
    is stale when ``days_in_stage > threshold_days`` of its current stage (see
    :func:`stale_thresholds` for the thresholds).

    Parameters
    ----------
    log : DataFrame
    as_of : date, optional
        Default: the log's last timestamp.
    thresholds : mapping or YAML path, optional
        Days per stage, overriding the learned ones.
    quantile : float
        Quantile of history used for stages without a given threshold.
    owner : str or None
        The owner (rep) column; ``None`` if the log has none.
    stages, lead, stage, time, amount
        As in :func:`snapshot`.

    Returns
    -------
    DataFrame
        One row per stale lead, sorted by owner (missing owners last) then
        days overdue (most first): ``owner``, ``lead_id``, ``stage``,
        ``days_in_stage``, ``threshold_days``, ``days_overdue``,
        ``threshold_source``, ``amount``, ``entered_stage_at``,
        ``last_activity_at``, ``flag`` (from the snapshot), then the other
        segments.  ``attrs``: ``as_of``, ``thresholds`` (the table used) and
        ``notes`` (e.g. leads whose entry time is unknown and cannot be
        judged).

    Examples
    --------
    >>> import funnelkit as fk
    >>> s = fk.pipeline.stale(fk.datasets.load_demo(), thresholds={"qualification": 30})
    >>> bool((s["days_overdue"] > 0).all())
    True
    """
    ss = resolve_stages(log, stages)
    if owner is not None:
        require_columns(log, [owner], "pass owner='your rep column', or owner=None if there is none.")
    th = stale_thresholds(log, as_of=as_of, quantile=quantile, thresholds=thresholds, stages=ss,
                          lead=lead, stage=stage, time=time)
    snap = snapshot(log, as_of=as_of, stages=ss, lead=lead, stage=stage, time=time, amount=amount)
    return _stale_from(snap, th, ss, owner=owner, lead=lead)


def _stale_from(snap: pd.DataFrame, th: pd.DataFrame, ss: StageSet, *, owner: str | None, lead: str) -> pd.DataFrame:
    """The table of :func:`stale` from the snapshot and the thresholds."""
    notes = list(snap.attrs.get("notes", []))
    thr = th.set_index(th["stage"].astype(str))
    st = snap["stage"].astype(str)
    limit = st.map(thr["threshold_days"]).astype(float)
    source = st.map(thr["source"])
    unknown = snap["days_in_stage"].isna()
    if unknown.any():
        notes.append(
            f"{int(unknown.sum()):,} open lead(s) have an unknown time of entry into their stage "
            "and cannot be judged stale; they are not listed."
        )
    no_thr = limit.isna() & ~unknown
    if no_thr.any():
        notes.append(
            f"{int(no_thr.sum()):,} open lead(s) are in stages without a threshold (no history): "
            "pass thresholds= for them."
        )
    is_stale = (snap["days_in_stage"] > limit).fillna(False).to_numpy(dtype=bool)
    out = snap.loc[is_stale].copy()
    out["threshold_days"] = limit[is_stale].to_numpy()
    out["days_overdue"] = out["days_in_stage"] - out["threshold_days"]
    out["threshold_source"] = source[is_stale].to_numpy()
    front = ([owner] if owner else []) + [
        lead, "stage", "days_in_stage", "threshold_days", "days_overdue", "threshold_source",
        AMOUNT, "entered_stage_at", "last_activity_at", "flag",
    ]
    rest = [c for c in out.columns if c not in front and c not in {"first_seen_at", "age_days"}]
    out = out[front + rest]
    keys = ([owner] if owner else []) + ["days_overdue"]
    out = out.sort_values(keys, ascending=[True] * (len(keys) - 1) + [False],
                          na_position="last", kind="stable").reset_index(drop=True)
    if owner and out[owner].isna().any():
        notes.append(f"{int(out[owner].isna().sum()):,} stale lead(s) have no {owner!r}: listed last.")
    out.attrs = {"as_of": snap.attrs["as_of"], "thresholds": th, "notes": notes, "stage_set": ss}
    return out


# ---------------------------------------------------------------------------
# movement between two dates (pipeline waterfall)
# ---------------------------------------------------------------------------
#: Per-lead movement categories, in waterfall order.
MOVEMENTS = (
    "stayed", "advanced", "moved_back", "won", "lost",
    "entered", "entered_won", "entered_lost",
)


def movement_leads(
    log: pd.DataFrame,
    *,
    start,
    end,
    stages: StageSet | str | Sequence[str] | None = None,
    segments: str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Per lead: what happened to it between two dates.

    Compares :func:`snapshot` at ``start`` and at ``end`` (both with closed
    leads).  Leads open at ``start`` either *stayed* in their stage,
    *advanced*, *moved_back*, were *won* or *lost* by ``end``; leads not yet
    in the data at ``start`` *entered* (and may already be *entered_won* or
    *entered_lost*).  Leads closed before ``start`` are not part of the
    movement.

    Returns
    -------
    DataFrame
        One row per lead involved, in the order of the snapshot at ``end``
        (stage, then lead id): ``lead_id``, ``movement`` (one of
        :data:`MOVEMENTS`), ``stage_start`` / ``stage_end`` (stage or outcome
        at each date; missing at ``start`` for new leads), ``amount_start``
        (amount at ``start``, missing for new leads), ``amount_end``, the
        segments (as of ``end``), and ``reentered`` (bool: a lead that
        *stayed* but left its stage and came back in between).

    Examples
    --------
    >>> import funnelkit as fk
    >>> mv = fk.pipeline.movement_leads(fk.datasets.load_demo(), start="2025-06-30", end="2025-07-31")
    >>> sorted(mv["movement"].unique().astype(str))[:3]
    ['advanced', 'entered', 'entered_lost']
    """
    ta, tb, tz = _start_end(log[time] if time in log.columns else None, start, end)
    # the snapshots at both dates are not built: the state of every lead at each date comes
    # from one set of sorted event arrays, and only the rows returned get output columns
    if not isinstance(log, pd.DataFrame):
        raise TypeError(f"expected an event log DataFrame, got {type(log).__name__}.")
    require_columns(log, [lead, stage, time], "pass the right names with lead=, stage=, time=.")
    ss = resolve_stages(log, stages)
    ev = _snapshot_events(log, ss, lead=lead, stage=stage, time=time)
    segs = list(dict.fromkeys(_segment_cols(log, segments, exclude=[lead, stage, time, amount or ""])))
    by_id = _lead_id_order(ev.lead_ids)
    if by_id is False or lead in _MOVEMENT_NAMES or any(s in _MOVEMENT_NAMES or s == lead for s in segs):
        # lead ids that do not sort among themselves, or column names that the snapshots'
        # own columns (or this table's) would overwrite: the snapshots compared as they are
        del ev
        kw = dict(stages=stages, include_closed=True, segments=segments, lead=lead, stage=stage,
                  time=time, amount=amount)
        a = snapshot(log, as_of=_ts(ta, tz), **kw)
        b = snapshot(log, as_of=_ts(tb, tz), **kw)
        return _movement_from(a, b, ta, tb, tz, lead=lead)
    rng = ev.data_range()
    bounds = _lead_bounds(ev)
    sa = _lead_state(ev, _to_time(_ts(ta, tz), name="as_of", tz=tz), rng, tz, bounds)
    amt = log[amount].astype("float64") if amount and amount in log.columns else None
    sb = _lead_state(ev, _to_time(_ts(tb, tz), name="as_of", tz=tz), rng, tz, bounds)
    del bounds

    a_open = sa.present & ~sa.closed
    b_in = sb.present & ~(sa.present & sa.closed)  # present at end, less the leads closed at start
    missing = a_open & ~b_in
    if missing.any():  # cannot happen: a lead present at start is present at end
        first = _snapshot_order(missing, sa.label, by_id)[0]
        raise PipelineError(
            f"{int(missing.sum())} lead(s) open at start are missing at end (e.g. "
            f"{_lead_values(ev.lead_ids, np.array([first]), np.ones(ev.n_leads, dtype=bool))[0]!r}); "
            "please report this as a bug."
        )
    rows = _snapshot_order(b_in, sb.label, by_id)
    del b_in, missing

    labels = list(ss.labels)
    was_open = a_open[rows]
    del a_open
    code_a = np.where(was_open, sa.label[rows], -1)
    code_b = sb.label[rows]
    closed = sb.closed[rows]
    won = sb.won[rows]
    mv = _movement_codes(ss, code_a, code_b, closed & won, closed & ~won)
    del closed, won
    ea, eb = sa.entered[rows], sb.entered[rows]
    # as the snapshots' datetimes compare: NaT differs from everything, itself included
    reentered = (mv == MOVEMENTS.index("stayed")) & ((ea != eb) | (ea == NAT) | (eb == NAT))
    del ea, eb
    if amt is not None:
        vals = amt.to_numpy()
        if ev.idx is not None:
            vals = vals[ev.idx]
        known = ~np.isnan(vals)
        amount_start = _values_at(vals, _last_per_lead(ev.lc, sa.keep & known, ev.n_leads), rows)
        amount_start[~was_open] = np.nan  # not open at start: no amount then
        amount_end = _values_at(vals, _last_per_lead(ev.lc, sb.keep & known, ev.n_leads), rows)
        del vals, known, amt
    else:
        amount_start = np.full(rows.size, np.nan)
        amount_end = np.full(rows.size, np.nan)
    notes = list(dict.fromkeys(sa.notes + sb.notes))
    del sa, was_open

    out = pd.DataFrame(
        {
            lead: _lead_values(ev.lead_ids, rows, sb.present),
            "movement": pd.Categorical.from_codes(mv, categories=list(MOVEMENTS)),
            "stage_start": pd.Categorical.from_codes(code_a, categories=labels, ordered=True),
            "stage_end": pd.Categorical.from_codes(code_b, categories=labels, ordered=True),
            "amount_start": amount_start,
            "amount_end": amount_end,
        }
    )
    for s in segs:
        values = log[s]
        column = _last_valid_of(values, ev.idx, ev.lc, sb.keep, ev.n_leads)
        if isinstance(values.dtype, pd.CategoricalDtype):
            out[s] = column(rows)
        else:  # the dtype the snapshot's column takes over every lead present at end, then the rows
            out[s] = _snapshot_rows(column(np.flatnonzero(sb.present)), rows, sb.present)
    out["reentered"] = reentered
    out.attrs = {"start": _ts(ta, tz), "end": _ts(tb, tz), "stage_set": ss, "notes": notes}
    return out


#: The columns of a snapshot with closed leads, besides the lead ids and the segments.
_SNAPSHOT_COLUMNS = frozenset({
    "stage", "entered_stage_at", "days_in_stage", "first_seen_at", "age_days", AMOUNT, "last_activity_at",
    "flag", "outcome", "closed_at",
})


#: Column names of the snapshots and of :func:`movement_leads` that a segment (or the lead
#: column) of the same name would overwrite in them: such logs take the two snapshots.
_MOVEMENT_NAMES = _SNAPSHOT_COLUMNS | {
    "movement", "stage_start", "stage_end", "amount_start", "amount_end", "reentered", "_entered_a"}


@dataclass
class _LeadState:
    """Every lead as the snapshot (with closed leads) at one moment sees it: per lead code."""

    present: np.ndarray  # bool: a row of the snapshot
    label: np.ndarray  # int8 index into ss.labels of its stage (closed: its outcome); -1 none
    closed: np.ndarray  # bool: won or lost by then
    won: np.ndarray  # bool: its latest outcome is won (where closed)
    entered: np.ndarray  # int64 ns: entry into its current stage (open leads); NAT unknown
    keep: np.ndarray  # bool per sorted event: known at that moment
    notes: list[str]


def _lead_bounds(ev: _SnapshotEvents) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per lead: whether it has undated events, whether it has only those, and its last
    sorted position (the events of a lead are a run of ``lc``, undated ones first: NAT is the
    smallest time)."""
    lc, t, n_leads = ev.lc, ev.t, ev.n_leads
    n = lc.size
    lead_start = np.searchsorted(lc, np.arange(n_leads, dtype=lc.dtype)).astype(funnel._pos_dtype(n))
    has_undated = t[lead_start] == NAT if n else np.zeros(n_leads, dtype=bool)
    lead_end = np.empty_like(lead_start)
    lead_end[:-1] = lead_start[1:] - 1
    if n_leads:
        lead_end[-1] = n - 1
    undated_only = t[lead_end] == NAT if n else np.zeros(n_leads, dtype=bool)
    return has_undated, undated_only, lead_end


@dataclass
class _KnownAt:
    """What is known of every lead at one moment (see :func:`_known_at`): per lead code,
    sorted positions (-1: none), except ``keep``."""

    present: np.ndarray  # bool: a row of the snapshot with closed leads
    keep: np.ndarray  # bool per sorted event: known at that moment
    excluded: int  # leads left out because their undated events cannot be placed in time
    last_le: np.ndarray  # its latest dated event at or before the moment
    last_any: np.ndarray  # its latest known event
    last_step: np.ndarray  # its latest known step event
    run_start: np.ndarray  # the first of its latest run of known step events in one stage
    first_oc: np.ndarray  # its first known outcome event
    last_oc: np.ndarray  # its latest known outcome event
    first_le: np.ndarray | None  # its first dated event at or before the moment (detail only)
    max_step: np.ndarray | None  # int8: the highest step order it reached, -1 none (detail only)


def _known_at(ev: _SnapshotEvents, T: np.int64, rng, tz, bounds, notes: list[str], *, detail: bool) -> _KnownAt:
    """The rules of :func:`snapshot` at ``T``, in one place for it and :func:`_lead_state`:
    which leads are present, which events are known, and where each lead's state comes from.
    Appends the notes on leads left out to ``notes``; ``detail`` also finds ``first_le`` and
    ``max_step`` (for the snapshot's ages and ``moved_back`` flags)."""
    lc, t, lab, unit, n_leads = ev.lc, ev.t, ev.lab, ev.unit, ev.n_leads
    has_undated, undated_only, lead_end = bounds
    # a lead's events known at T (dated ones up to T, and its undated ones if it is present)
    # are a prefix of its run of lc
    le = t <= T // unit  # dated and at or before T (NAT is not dated)
    le &= t != NAT
    first_le = funnel._ends_per_lead(lc, le, n_leads, last=False) if detail else None
    last_le = funnel._ends_per_lead(lc, le, n_leads, last=True)
    present = last_le >= 0
    if rng is None or T >= rng[1]:
        present |= undated_only
    excl_undated = int((undated_only & ~present).sum())
    later_undated = int((has_undated & ~undated_only & (last_le < 0)).sum())
    if excl_undated:
        notes.append(
            f"{excl_undated:,} lead(s) have only undated events (unknown time): they cannot be "
            f"placed before {_ts(T, tz)} and are excluded from this past snapshot."
        )
    if later_undated:
        notes.append(
            f"{later_undated:,} lead(s) have undated events and their first dated event after "
            "as_of: whether they existed at as_of is unknown; excluded."
        )
    # the last event known at T per present lead (the prefix's end)
    last_any = np.where(last_le >= 0, last_le, np.where(present, lead_end, -1))
    if le.all():
        keep = le  # every event dated and at or before T: all known
    else:
        keep = present[lc]
        keep &= t == NAT
        keep |= le
    del le

    is_step = ev.is_step_of[lab]
    is_step &= keep
    last_step = funnel._ends_per_lead(lc, is_step, n_leads, last=True)
    # the start of the latest run of consecutive step events in one stage, and the highest
    # step reached (for moved_back), over the known step events only
    sp = funnel._positions(is_step)
    del is_step
    sp_lc = lc[sp]
    sp_order = ev.order_of[lab[sp]]
    new_run = np.empty(sp.size, dtype=bool)
    new_lead = None
    if sp.size:
        new_run[0] = True
        np.not_equal(sp_lc[1:], sp_lc[:-1], out=new_run[1:])
        if detail:
            new_lead = new_run.copy()
        new_run[1:] |= sp_order[1:] != sp_order[:-1]
    run_at = funnel._ends_per_lead(sp_lc, new_run, n_leads, last=True)  # index into sp
    del new_run
    max_step = None
    if detail:
        max_step = np.full(n_leads, -1, dtype=np.int8)
        if sp.size:
            heads = np.flatnonzero(new_lead)
            max_step[sp_lc[heads]] = np.maximum.reduceat(sp_order, heads)
            del heads
    del new_lead, sp_lc, sp_order
    run_start = np.where(run_at >= 0, sp[np.maximum(run_at, 0)] if sp.size else 0, -1)
    del sp, run_at
    is_oc = ev.is_outcome_of[lab]
    is_oc &= keep
    first_oc = funnel._ends_per_lead(lc, is_oc, n_leads, last=False)
    last_oc = funnel._ends_per_lead(lc, is_oc, n_leads, last=True)
    del is_oc
    return _KnownAt(present=present, keep=keep, excluded=excl_undated + later_undated, last_le=last_le,
                    last_any=last_any, last_step=last_step, run_start=run_start, first_oc=first_oc,
                    last_oc=last_oc, first_le=first_le, max_step=max_step)


def _lead_state(ev: _SnapshotEvents, T: np.int64, rng, tz, bounds) -> _LeadState:
    """:func:`snapshot` at ``T`` with closed leads, reduced to what :func:`movement_leads`
    compares (same rules, same notes and warnings, attributed to its caller's caller)."""
    t, lab, unit, n_leads = ev.t, ev.lab, ev.unit, ev.n_leads
    notes = _as_of_notes(T, rng, tz, stacklevel=3)
    k = _known_at(ev, T, rng, tz, bounds, notes, detail=False)
    run_start = k.run_start
    entered = t[np.maximum(run_start, 0)] if t.size else np.full(n_leads, NAT)
    entered = funnel._to_ns(entered.astype(np.int64), unit)
    entered[run_start < 0] = NAT
    del run_start
    first_oc, last_oc = k.first_oc, k.last_oc
    n_after = int(((first_oc >= 0) & (k.last_any > first_oc)).sum())
    if n_after:
        notes.append(
            f"{n_after:,} lead(s) have events after their outcome (flag 'after_close'); they are "
            "reported with their latest outcome - check the data."
        )
    closed = last_oc >= 0
    cur = np.where(closed, last_oc, k.last_step)
    label = np.where(cur >= 0, lab[np.maximum(cur, 0)] if lab.size else -1, -1).astype(np.int8)
    won = closed & ev.is_won_of[np.maximum(label, 0)]
    return _LeadState(present=k.present, label=label, closed=closed, won=won, entered=entered, keep=k.keep,
                      notes=notes)


def _lead_id_order(lead_ids: pd.Index):
    """The lead codes in the order of their ids (``None``: the codes are, as in a lead-sorted
    log; ``False``: the ids do not sort among themselves)."""
    if len(lead_ids) < 2:
        return None
    if lead_ids.dtype == pd.StringDtype(na_value=np.nan):
        ids = lead_ids.array
        if np.asarray(ids[1:] > ids[:-1], dtype=bool).all():
            return None
        return np.asarray(lead_ids.argsort(), dtype=np.int64)
    ids = pd.Index(np.asarray(lead_ids, dtype=object))  # as the snapshot's column of them sorts
    try:
        if ids.is_monotonic_increasing:
            return None
        return np.asarray(ids.argsort(), dtype=np.int64)
    except TypeError:
        return False


def _snapshot_order(mask: np.ndarray, label: np.ndarray, by_id) -> np.ndarray:
    """The lead codes where ``mask``, in the order of a snapshot's rows: by stage (pipeline
    order, none last), then lead id."""
    codes = np.flatnonzero(mask) if by_id is None else by_id[mask[by_id]]
    return codes[np.argsort(label[codes].view(np.uint8), kind="stable")]  # -1 (none) is 255: last


def _values_at(vals: np.ndarray, last: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``vals`` at each row's position in ``last`` (NaN where -1)."""
    p = last[rows]
    out = vals[np.maximum(p, 0)] if vals.size else np.full(rows.size, np.nan)
    out[p < 0] = np.nan
    return out


def _snapshot_rows(column, rows: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The values at lead codes ``rows`` of a snapshot column made for every ``present``
    lead (in code order), with the dtype pandas gives that whole column."""
    pos = np.cumsum(present, dtype=np.int64)[rows] - 1
    return pd.Series(column).take(pos).to_numpy()


def _lead_values(lead_ids: pd.Index, rows: np.ndarray, present: np.ndarray):
    """The lead ids of ``rows`` as the snapshot's lead column (over every ``present``
    lead) gives them; Arrow-backed string ids straight from Arrow."""
    if rows.size and lead_ids.dtype == pd.StringDtype(na_value=np.nan):
        return _lead_column(lead_ids, rows)
    leads = np.flatnonzero(present)
    raw = _lead_column(lead_ids, leads) if leads.size else np.asarray(lead_ids, dtype=object)[leads]
    return _snapshot_rows(raw, rows, present)


def _start_end(log_time: pd.Series | None, start, end) -> tuple[np.int64, np.int64, object]:
    """``start`` and ``end`` as int64 ns in the zone of the time column (checked in order)."""
    tz = time_zone(log_time) if log_time is not None else None
    ta = _to_time(start, name="start", tz=tz)
    tb = _to_time(end, name="end", tz=tz)
    if tb <= ta:
        raise PipelineError(f"end ({_ts(tb, tz)}) must be after start ({_ts(ta, tz)}).")
    return ta, tb, tz


def _movement_from(a: pd.DataFrame, b: pd.DataFrame, ta, tb, tz, *, lead: str) -> pd.DataFrame:
    """The table of :func:`movement_leads` from the snapshots (with closed leads) at start and end
    (as :mod:`funnelkit.parallel` makes them): the rows of ``b`` less the leads closed at
    start, each with its row of ``a`` found by one look-up of the lead ids."""
    ss = a.attrs["stage_set"]
    labels = list(ss.labels)
    segs = [c for c in b.columns if c not in _SNAPSHOT_COLUMNS and c != lead]
    plain = (
        lead not in _MOVEMENT_NAMES
        and not any(c in _MOVEMENT_NAMES for c in segs)
        and all(isinstance(x[c].dtype, pd.CategoricalDtype) for x in (a, b) for c in ("stage", "outcome"))
        and all(list(x["stage"].cat.categories) == labels for x in (a, b))
        and a["entered_stage_at"].dtype == b["entered_stage_at"].dtype
    )
    if not plain:
        return _movement_joined(a, b, ta, tb, tz, lead=lead)
    a_open = (a["outcome"] == "open").to_numpy()
    pos = pd.Index(a[lead]).get_indexer(b[lead])  # a's row of each lead at end (-1: none)
    hit = pos >= 0
    was_open = np.zeros(len(b), dtype=bool)
    was_open[hit] = a_open[pos[hit]]
    keep = ~hit | was_open  # less the leads closed at start
    if int(was_open.sum()) != int(a_open.sum()):  # cannot happen: a lead present at start is present at end
        seen = np.zeros(len(a), dtype=bool)
        seen[pos[was_open]] = True
        missing = a_open & ~seen
        raise PipelineError(
            f"{int(missing.sum())} lead(s) open at start are missing at end (e.g. "
            f"{a[lead].iloc[np.flatnonzero(missing)[0]]!r}); please report this as a bug."
        )
    rows = np.flatnonzero(keep)
    pa = np.where(was_open[rows], pos[rows], -1)  # a's row, open leads only
    del pos, hit, keep
    code_a = np.where(pa >= 0, a["stage"].cat.codes.to_numpy()[np.maximum(pa, 0)], -1) if len(a) else pa
    code_b = b["stage"].cat.codes.to_numpy()[rows]
    oc = b["outcome"].to_numpy()[rows] if len(b) else np.array([], dtype=object)
    mv = _movement_codes(ss, code_a, code_b, oc == "won", oc == "lost")
    ea = a["entered_stage_at"].array.take(pa, allow_fill=True)
    eb = b["entered_stage_at"].array.take(rows)
    reentered = (mv == MOVEMENTS.index("stayed")) & np.asarray(eb != ea, dtype=bool)
    amount_start = a[AMOUNT].to_numpy(dtype=float)[np.maximum(pa, 0)] if len(a) else np.full(rows.size, np.nan)
    amount_start[pa < 0] = np.nan
    out = pd.DataFrame(
        {
            lead: b[lead].take(rows).to_numpy(),
            "movement": pd.Categorical.from_codes(mv, categories=list(MOVEMENTS)),
            "stage_start": pd.Categorical.from_codes(code_a, categories=labels, ordered=True),
            "stage_end": pd.Categorical.from_codes(code_b, categories=labels, ordered=True),
            "amount_start": amount_start,
            "amount_end": b[AMOUNT].to_numpy(dtype=float)[rows],
        }
    )
    for s in segs:
        col = b[s].take(rows)
        out[s] = col.to_numpy() if not isinstance(col.dtype, pd.CategoricalDtype) else col.values
    out["reentered"] = reentered
    notes = list(dict.fromkeys(a.attrs["notes"] + b.attrs["notes"]))
    out.attrs = {"start": _ts(ta, tz), "end": _ts(tb, tz), "stage_set": ss, "notes": notes}
    return out


def _movement_codes(ss: StageSet, code_a: np.ndarray, code_b: np.ndarray, won: np.ndarray,
                    lost: np.ndarray) -> np.ndarray:
    """Index into :data:`MOVEMENTS` per lead, from its label indices at start (-1: not open
    then) and at end, and whether it was won or lost by end."""
    order_of = np.array([ss.order(x) for x in ss.labels])
    new = code_a < 0
    oa = np.where(new, -9, order_of[np.maximum(code_a, 0)])
    ob = order_of[code_b]  # (a missing stage at end, -1, would take the last label's: as ever)
    return np.select(
        [new & won, new & lost, new, won, lost, ob > oa, ob < oa],
        [MOVEMENTS.index(m) for m in ("entered_won", "entered_lost", "entered", "won", "lost", "advanced",
                                      "moved_back")],
        default=MOVEMENTS.index("stayed"),
    ).astype(np.int8)


def _movement_joined(a: pd.DataFrame, b: pd.DataFrame, ta, tb, tz, *, lead: str) -> pd.DataFrame:
    """:func:`_movement_from` by joins on the lead ids, for snapshots whose column names clash
    (a segment named like a column of the snapshot or of the table): their outcome, whatever it is."""
    ss = a.attrs["stage_set"]
    a_open = a.loc[a["outcome"] == "open", [lead, "stage", AMOUNT, "entered_stage_at"]]
    a_closed = a.loc[a["outcome"] != "open", lead]
    b_in = b.loc[~_member(b[lead], a_closed)]
    missing = ~_member(a_open[lead], b_in[lead])
    if missing.any():  # cannot happen: a lead present at start is present at end
        raise PipelineError(
            f"{int(missing.sum())} lead(s) open at start are missing at end (e.g. "
            f"{a_open.loc[missing, lead].iloc[0]!r}); please report this as a bug."
        )
    m = b_in.merge(
        a_open.rename(columns={"stage": "stage_start", AMOUNT: "amount_start",
                               "entered_stage_at": "_entered_a"}),
        on=lead, how="left",
    )
    labels = list(ss.labels)
    order_of = np.array([ss.order(x) for x in labels])
    code_a = m["stage_start"].cat.codes.to_numpy()
    code_b = m["stage"].cat.codes.to_numpy()
    new = code_a < 0
    oc = m["outcome"].astype(str).to_numpy()
    oa = np.where(new, -9, order_of[np.maximum(code_a, 0)])
    ob = order_of[code_b]
    mv = np.select(
        [
            new & (oc == "won"), new & (oc == "lost"), new,
            oc == "won", oc == "lost",
            ob > oa, ob < oa,
        ],
        ["entered_won", "entered_lost", "entered", "won", "lost", "advanced", "moved_back"],
        default="stayed",
    )
    reentered = (mv == "stayed") & (m["entered_stage_at"] != m["_entered_a"]).to_numpy()
    segs = [c for c in b.columns if c not in {
        lead, "stage", "entered_stage_at", "days_in_stage", "first_seen_at", "age_days", AMOUNT,
        "last_activity_at", "flag", "outcome", "closed_at"}]
    out = pd.DataFrame(
        {
            lead: m[lead].to_numpy(),
            "movement": pd.Categorical(mv, categories=list(MOVEMENTS)),
            "stage_start": m["stage_start"].to_numpy(),
            "stage_end": m["stage"].to_numpy(),
            "amount_start": m["amount_start"].to_numpy(dtype=float),
            "amount_end": m[AMOUNT].to_numpy(dtype=float),
        }
    )
    out["stage_start"] = pd.Categorical(out["stage_start"], categories=labels, ordered=True)
    out["stage_end"] = pd.Categorical(out["stage_end"], categories=labels, ordered=True)
    for s in segs:
        out[s] = m[s].to_numpy() if not isinstance(m[s].dtype, pd.CategoricalDtype) else m[s].values
    out["reentered"] = reentered
    notes = list(dict.fromkeys(a.attrs["notes"] + b.attrs["notes"]))
    out.attrs = {"start": _ts(ta, tz), "end": _ts(tb, tz), "stage_set": ss, "notes": notes}
    return out


def movement(
    log: pd.DataFrame,
    *,
    start,
    end,
    by: str | Sequence[str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """The pipeline waterfall between two dates: leads and value in and out.

    Rows, in waterfall order (``kind`` in brackets):

    * ``start`` (level): leads open at ``start`` and their value then;
    * ``entered`` (in): leads new since ``start`` (including those already
      closed by ``end``), value as of ``end``;
    * ``won``, ``lost`` (out): leads closed between the dates (open at
      ``start`` or new), value as of ``end``; in a stage set without a won
      outcome, ``won`` counts the leads that reached its last stage (the
      funnel's goal, which closes a lead here as in :func:`snapshot`);
    * ``value_change`` (change): change in the amounts of leads open at
      ``start`` (0 leads);
    * ``end`` (level): leads open at ``end`` and their value.

    and, for information (``kind="detail"``), how the leads open at ``start``
    and still open at ``end`` moved: ``advanced``, ``moved_back``,
    ``stayed``.

    The waterfall reconciles **exactly**: ``start + entered - won - lost =
    end`` for leads, and ``start + entered + value_change - won - lost =
    end`` for value (unknown amounts count as 0, and how many there are is
    in ``attrs["notes"]``).  The check is made on every call; a
    :class:`PipelineError` is raised if it fails.

    Parameters
    ----------
    log : DataFrame
    start, end : date
        The two moments (a date without time means the end of that day).
    by : str or list of str, optional
        Segment column(s) (values as of ``end``).
    stages, lead, stage, time, amount
        As in :func:`snapshot`.

    Returns
    -------
    DataFrame
        The ``by`` columns, ``movement``, ``kind``, ``leads``, ``value``,
        ``sign`` (+1 in, -1 out, 0 level or detail).  ``attrs``: ``start``,
        ``end``, ``reconciled`` (True), ``notes``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> w = fk.pipeline.movement(fk.datasets.load_demo(), start="2025-06-30", end="2025-07-31")
    >>> n = w.set_index("movement")["leads"]
    >>> int(n["start"] + n["entered"] - n["won"] - n["lost"]) == int(n["end"])
    True
    """
    by = as_list(by)
    mv = movement_leads(log, start=start, end=end, stages=stages, segments=by or [],
                        lead=lead, stage=stage, time=time, amount=amount)
    return _waterfall(mv, by)


def _waterfall(mv: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The table of :func:`movement` from the per-lead movements (:func:`movement_leads`)."""
    notes = list(mv.attrs["notes"])
    cat = mv["movement"].array
    if list(cat.categories) == list(MOVEMENTS):  # as movement_leads makes it: masks from the codes

        def among(names) -> np.ndarray:
            lut = np.zeros(len(MOVEMENTS) + 1, dtype=bool)  # the last entry for a missing value (-1)
            lut[[MOVEMENTS.index(x) for x in names]] = True
            return lut[cat.codes]
    else:
        mcat = mv["movement"].astype(str).to_numpy()

        def among(names) -> np.ndarray:
            return np.isin(mcat, list(names))

    from_start = ~among(["entered", "entered_won", "entered_lost"])
    open_end = among(["stayed", "advanced", "moved_back", "entered"])
    a_amt = mv["amount_start"].fillna(0.0).to_numpy()
    b_amt = mv["amount_end"].fillna(0.0).to_numpy()
    unk = int((mv["amount_start"].isna() & from_start).sum() + mv["amount_end"].isna().sum())
    if unk:
        notes.append(f"{unk:,} amount(s) are unknown and count as 0 in the value column.")
    rows_spec = [
        ("start", "level", 0, from_start, a_amt),
        ("entered", "in", 1, ~from_start, b_amt),
        ("won", "out", -1, among(["won", "entered_won"]), b_amt),
        ("lost", "out", -1, among(["lost", "entered_lost"]), b_amt),
        ("value_change", "change", 1, None, None),
        ("end", "level", 0, open_end, b_amt),
        ("advanced", "detail", 0, among(["advanced"]), b_amt),
        ("moved_back", "detail", 0, among(["moved_back"]), b_amt),
        ("stayed", "detail", 0, among(["stayed"]), b_amt),
    ]
    if by:
        gid = mv.groupby(by, observed=True, dropna=False, sort=True).ngroup().to_numpy()
        keys = mv[by].assign(_g=gid).drop_duplicates("_g").sort_values("_g").reset_index(drop=True)
    else:
        gid = np.zeros(len(mv), dtype=np.int64)
        keys = pd.DataFrame({"_g": [0]})
    ng = len(keys)
    frames = []
    for name, kind, sign, mask, amt in rows_spec:
        if mask is None:
            n = np.zeros(ng)
            val = np.bincount(gid, weights=np.where(from_start, b_amt - a_amt, 0.0), minlength=ng)
        else:
            n = np.bincount(gid, weights=mask.astype(float), minlength=ng)
            val = np.bincount(gid, weights=np.where(mask, amt, 0.0), minlength=ng)
        frames.append(pd.DataFrame({"_g": np.arange(ng), "movement": name, "kind": kind,
                                    "leads": n.astype(np.int64), "value": val, "sign": sign}))
    res = pd.concat(frames, ignore_index=True)
    # reconcile, per group
    piv_n = res.pivot(index="_g", columns="movement", values="leads")
    piv_v = res.pivot(index="_g", columns="movement", values="value")
    bad_n = piv_n["start"] + piv_n["entered"] - piv_n["won"] - piv_n["lost"] != piv_n["end"]
    lhs = piv_v["start"] + piv_v["entered"] + piv_v["value_change"] - piv_v["won"] - piv_v["lost"]
    scale = np.maximum(1.0, np.abs(piv_v[["start", "end", "entered"]]).max(axis=1))
    bad_v = np.abs(lhs - piv_v["end"]) > 1e-9 * scale
    if bad_n.any() or bad_v.any():
        raise PipelineError("the movement does not reconcile; please report this as a bug.")
    res = res.merge(keys, on="_g").sort_values("_g", kind="stable").drop(columns="_g")
    res["movement"] = pd.Categorical(
        res["movement"],
        categories=["start", "entered", "won", "lost", "value_change", "end",
                    "advanced", "moved_back", "stayed"],
        ordered=True,
    )
    res = res[[*by, "movement", "kind", "leads", "value", "sign"]].reset_index(drop=True)
    res.attrs = {"start": mv.attrs["start"], "end": mv.attrs["end"], "reconciled": True,
                 "notes": notes, "stage_set": mv.attrs["stage_set"]}
    return res


# ---------------------------------------------------------------------------
# drill-down from the funnel
# ---------------------------------------------------------------------------
def drilldown(
    log: pd.DataFrame,
    *,
    step: str,
    status: str = "all",
    where: Mapping[str, object] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
    **funnel_options,
) -> pd.DataFrame:
    """The leads behind one funnel cell: who converted, dropped or is in flight.

    Uses the funnel's own step rules (:func:`funnelkit.funnel.lead_progress`),
    so the counts match :func:`funnelkit.funnel.conversion` called with the
    same options: for a step and segment, the ``converted``, ``dropped`` and
    ``in_flight`` leads are the funnel's ``converted``, ``dropped`` and
    ``in_flight`` counts.

    Parameters
    ----------
    log : DataFrame
    step : str
        A funnel step (stage or the won outcome).
    status : {"all", "converted", "dropped", "in_flight"}
        *converted*: reached the next step; *in_flight*: did not, and is still
        open within its time (the funnel's ``in_flight`` rule); *dropped*: did
        not, and is closed or past its time.  For the last step every lead
        that reached it counts as converted.
    where : mapping, optional
        Segment filter, e.g. ``{"product": "Enterprise"}`` or
        ``{"source": ["web form", "outbound"]}`` (segment of the lead's first
        event, as in the funnel).
    stages : stage set, optional
    lead, stage, time, amount : str
        Column names.
    **funnel_options
        Passed to :func:`funnelkit.funnel.lead_progress` (``window=``,
        ``as_of=``, ``stale_after=``, ...), so that the drill-down uses the
        same rules as the funnel it comes from.

    Returns
    -------
    DataFrame
        One row per lead: ``lead_id``, the segment columns, ``amount``,
        ``status``, ``reached_at`` (time it reached ``step``),
        ``next_at`` (reached the next step; ``NaT`` if not), ``days_to_next``,
        ``outcome``, ``closed_at``, ``current_stage`` and ``days_in_stage``
        (from the snapshot at ``as_of``, the log's end by default; for closed
        leads the outcome),
        ``last_event_at``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> log = fk.datasets.load_demo()
    >>> dd = fk.pipeline.drilldown(log, step="proposal", where={"product": "Enterprise"})
    >>> f = fk.funnel.conversion(log, by="product")
    >>> cell = f[(f["product"] == "Enterprise") & (f["step"] == "proposal")].iloc[0]
    >>> int((dd["status"] == "converted").sum()) == int(cell["converted"])
    True
    """
    statuses = ("all", "converted", "dropped", "in_flight")
    if status not in statuses:
        raise PipelineError(f"status must be one of {statuses}, got {status!r}.")
    ss = resolve_stages(log, stages)
    name = ss.canonical(step)
    if name is None or name not in ss.steps:
        sug = ss.suggest(step)
        hint = f" Did you mean {' or '.join(map(repr, sug))}?" if sug else ""
        raise PipelineError(f"step={step!r} is not a funnel step of {ss.name!r}: "
                            f"{', '.join(ss.steps)}.{hint}")
    where = dict(where or {})
    require_columns(log, list(where), "filter on existing segment columns in where=.")
    segs = [c for c in log.columns if c not in {lead, stage, time, amount, FLAG}]
    prog = funnel.lead_progress(log, stages=ss, by=segs, lead=lead, stage=stage, time=time,
                                amount=amount, **funnel_options)
    k = ss.steps.index(name)
    sel = prog[f"reached_{name}"].to_numpy(dtype=bool).copy()
    for col, val in where.items():
        vals = [val] if isinstance(val, str) or not isinstance(val, (list, tuple, set)) else list(val)
        sel &= prog[col].isin(vals).to_numpy()
    p = prog.loc[sel]
    if k + 1 < len(ss.steps):
        nxt = ss.steps[k + 1]
        conv = p[f"reached_{nxt}"].to_numpy(dtype=bool)
        next_at = p[f"time_{nxt}"].where(conv)
    else:
        conv = np.ones(len(p), dtype=bool)
        next_at = pd.Series(pd.NaT, index=p.index, dtype="datetime64[ns]")
    if "in_flight" in p.columns:  # the funnel's own rule (open and within its time)
        flying = p["in_flight"].to_numpy(dtype=bool)
    else:
        flying = (p["outcome"] == "open").to_numpy()
    st = np.where(conv, "converted", np.where(flying, "in_flight", "dropped"))
    snap_as_of = funnel_options.get("as_of", "end")
    snap_as_of = None if snap_as_of is None or (isinstance(snap_as_of, str) and snap_as_of == "end") else snap_as_of
    snap = snapshot(log, stages=ss, include_closed=True, segments=[], lead=lead, stage=stage,
                    time=time, amount=None, as_of=snap_as_of)
    cur = snap.set_index(lead)[["stage", "days_in_stage"]]
    reached_at = p[f"time_{name}"]
    out = pd.DataFrame({lead: p[lead].to_numpy()})
    for c in segs:
        out[c] = p[c].to_numpy() if not isinstance(p[c].dtype, pd.CategoricalDtype) else p[c].values
    out[AMOUNT] = p[AMOUNT].to_numpy() if AMOUNT in p.columns else np.nan
    out["status"] = pd.Categorical(st, categories=["converted", "dropped", "in_flight"])
    out["reached_at"] = reached_at.to_numpy()
    out["next_at"] = next_at.to_numpy()
    out["days_to_next"] = (out["next_at"] - out["reached_at"]) / pd.Timedelta(days=1)
    out["outcome"] = p["outcome"].values
    out["closed_at"] = p["closed_at"].to_numpy()
    cur = cur.reindex(out[lead])
    out["current_stage"] = cur["stage"].values
    out["days_in_stage"] = cur["days_in_stage"].to_numpy()
    out["last_event_at"] = p["last_event_at"].to_numpy()
    if status != "all":
        out = out.loc[out["status"] == status]
    out = out.reset_index(drop=True)
    out.attrs = {"step": name, "status": status, "where": where, "stage_set": ss,
                 "as_of": snap.attrs["as_of"]}
    return out


# ---------------------------------------------------------------------------
# reps, metrics, velocity, coverage
# ---------------------------------------------------------------------------
def _lead_table(
    log: pd.DataFrame,
    ss: StageSet,
    *,
    cols: Sequence[str],
    lead: str,
    stage: str,
    time: str,
    amount: str | None,
) -> pd.DataFrame:
    """Per lead: funnel progress plus the latest known value of ``cols`` and first/last dated times."""
    prog = funnel.lead_progress(log, stages=ss, lead=lead, stage=stage, time=time, amount=amount)
    ev = _events(log, ss, lead=lead, stage=stage, time=time)
    every = np.ones(ev.lc.size, dtype=bool)
    leads = np.arange(ev.n_leads)
    extra = pd.DataFrame({lead: ev.lead_ids})
    for c in cols:
        extra[c] = _last_valid(log[c], ev, leads, every)
    fd, _ = _first_last(ev.lc, ev.dated, ev.n_leads)
    extra["first_seen_at"] = to_datetimes(np.where(fd >= 0, ev.t[np.maximum(fd, 0)], NAT), ev.tz)
    prog = prog.drop(columns=[c for c in cols if c in prog.columns])
    return prog.merge(extra, on=lead, how="left", validate="one_to_one")


def rep_performance(
    log: pd.DataFrame,
    *,
    owner: str = "owner",
    basis: str = "closed",
    level: float = 0.95,
    alpha: float = 0.05,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Each rep's win rate against their peers, with intervals and a test.

    For every rep: wins per 100 leads (``basis="closed"``: per 100 *decided*
    leads - won, lost, or stalled: open past the horizon of its step, as in
    :func:`funnelkit.funnel.outcomes` - the win rate, since an open lead
    within its time has not failed yet; ``"all"``:
    per 100 leads owned), with a Wilson interval; the same rate for all
    *other* reps pooled (the peers); the difference with Newcombe's interval;
    a two-sided test of equal rates (chi-square, or Fisher's exact test for
    small counts) and Benjamini-Hochberg adjusted p-values across reps, so
    that looking at many reps at once does not manufacture "differences".

    A lead's owner is its latest non-missing value of ``owner``.  Leads with
    no owner on any event are one row with a missing ``owner``: counted,
    never silently dropped, and left out of every peer group and test.

    Parameters
    ----------
    log : DataFrame
    owner : str
        The rep column (Maven: ``"sales_agent"``).
    basis : {"closed", "all"}
        Denominator of the rate (see above).
    level : float
        Confidence level of the intervals.
    alpha : float
        False discovery rate for ``differs``.
    stages, lead, stage, time, amount
        As elsewhere.

    Returns
    -------
    DataFrame
        One row per rep, best rate first: ``owner`` (the column's name),
        ``leads``, ``won``, ``lost``, ``stalled``, ``open``, ``trials`` (the denominator),
        ``rate``, ``per_100``, ``ci_low``, ``ci_high``, ``peer_rate``,
        ``diff`` (rate - peer rate), ``diff_ci_low``, ``diff_ci_high``,
        ``p_value``, ``test`` (``chi2`` or ``fisher``), ``p_adjusted``,
        ``differs`` (bool: ``p_adjusted < alpha``), ``verdict`` (``"above
        peers"``, ``"below peers"`` or ``"no evidence of a difference"``),
        ``revenue`` (won amount; NaN, not 0, where no won lead has an
        amount), ``avg_deal_size`` (mean won amount).

    Raises
    ------
    PipelineError
        For a stage set without a won outcome (a marketing funnel): every
        rep would be 0%; :func:`funnelkit.funnel.compare` compares how far
        their leads get.

    Examples
    --------
    >>> import funnelkit as fk
    >>> r = fk.pipeline.rep_performance(fk.datasets.load_demo())
    >>> r.loc[r["rate"].idxmin(), ["owner", "verdict"]].tolist()
    ['Hana Sato', 'below peers']
    """
    if basis not in {"closed", "all"}:
        raise PipelineError(f"basis must be 'closed' or 'all', got {basis!r}.")
    require_columns(log, [owner], "pass the rep column with owner= (Maven: owner='sales_agent').")
    ss = resolve_stages(log, stages)
    if ss.won is None:  # every rep would be 0%, "no evidence of a difference"
        raise PipelineError(
            f"stage set {ss.name!r} has no won outcome, so there is no win rate to compare reps on; compare how "
            f"far each {owner!r} value's leads get with funnelkit.funnel.compare(log, by={owner!r}), or give the "
            "stage set a won outcome."
        )
    lt = _lead_table(log, ss, cols=[owner], lead=lead, stage=stage, time=time, amount=amount)
    oc = lt["outcome"].astype(str)
    # an open lead past its step's horizon has stalled: it counts against the
    # rep like a loss (the funnel's rule), so a stage set without a lost
    # outcome does not give every rep 100%
    stalled = pd.Series(_stalled_rows(lt, ss), index=lt.index)
    won_amt = lt[AMOUNT].where(oc == "won") if AMOUNT in lt.columns else pd.Series(np.nan, index=lt.index)
    work = pd.DataFrame(
        {
            owner: lt[owner],
            "leads": 1,
            "won": (oc == "won").astype(np.int64),
            "lost": (oc == "lost").astype(np.int64),
            "stalled": stalled.astype(np.int64),
            "open": ((oc == "open") & ~stalled).astype(np.int64),
            "won_amount": won_amt,
        }
    )
    g = work.groupby(owner, observed=True, dropna=False, sort=True)
    res = g.agg(
        leads=("leads", "sum"), won=("won", "sum"), lost=("lost", "sum"), stalled=("stalled", "sum"),
        open=("open", "sum"), revenue=("won_amount", "sum"), avg_deal_size=("won_amount", "mean"),
        _valued=("won_amount", "count"),
    ).reset_index()
    res.loc[none_known(res["won"], res.pop("_valued")), "revenue"] = np.nan
    res["trials"] = res["won"] + res["lost"] + res["stalled"] if basis == "closed" else res["leads"]
    with np.errstate(invalid="ignore", divide="ignore"):
        res["rate"] = res["won"] / res["trials"]
    res["per_100"] = res["rate"] * 100
    res["ci_low"], res["ci_high"] = stats.proportion_ci(res["won"], res["trials"], level=level)
    named = res[owner].notna().to_numpy()
    tot_w = res.loc[named, "won"].sum()
    tot_n = res.loc[named, "trials"].sum()
    peer_w = np.where(named, tot_w - res["won"], np.nan)
    peer_n = np.where(named, tot_n - res["trials"], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        res["peer_rate"] = peer_w / peer_n
    res["diff"] = res["rate"] - res["peer_rate"]
    lo, hi = stats.diff_ci(res["won"], res["trials"], np.nan_to_num(peer_w), np.nan_to_num(peer_n),
                           level=level)
    res["diff_ci_low"] = np.where(named, lo, np.nan)
    res["diff_ci_high"] = np.where(named, hi, np.nan)
    testable = named & (res["trials"].to_numpy() > 0) & (np.nan_to_num(peer_n) > 0)
    p = np.full(len(res), np.nan)
    test = np.full(len(res), "", dtype=object)
    if testable.any():
        pv, tv = stats.compare_proportions(
            res.loc[testable, "won"], res.loc[testable, "trials"], peer_w[testable], peer_n[testable]
        )
        p[testable], test[testable] = pv, tv
    res["p_value"] = p
    res["test"] = test
    res["p_adjusted"] = stats.bh_adjust(p)
    res["differs"] = (res["p_adjusted"] < alpha).fillna(False).astype(bool)
    res["verdict"] = np.where(
        ~res["differs"], "no evidence of a difference",
        np.where(res["diff"] > 0, "above peers", "below peers"),
    )
    res.loc[~named, "verdict"] = "no owner: not compared"
    notes = []
    if (~named).any():
        n_missing = int(res.loc[~named, "leads"].sum())
        notes.append(f"{n_missing:,} lead(s) have no {owner!r} on any event: shown as one row with "
                     "a missing owner, left out of the peer comparisons.")
    res = res.sort_values(["rate", owner], ascending=[False, True], na_position="last",
                          kind="stable").reset_index(drop=True)
    cols = [owner, "leads", "won", "lost", "stalled", "open", "trials", "rate", "per_100", "ci_low", "ci_high",
            "peer_rate", "diff", "diff_ci_low", "diff_ci_high", "p_value", "test", "p_adjusted",
            "differs", "verdict", "revenue", "avg_deal_size"]
    res = res[cols]
    res.attrs = {"basis": basis, "level": level, "alpha": alpha, "notes": notes, "owner": owner}
    return res


def _period_span_years(period: pd.Series) -> np.ndarray:
    start = period.dt.start_time
    end = period.dt.end_time
    return ((end - start) / pd.Timedelta(days=365.25)).to_numpy(dtype=float)


def metrics(
    log: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    period: str | None = None,
    period_by: str = "created",
    qualified: str | None = None,
    account: str | None = None,
    owner: str | None = "owner",
    margin: float = 1.0,
    lifetime_years: float = 1.0,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """The pipeline metrics of the source articles, per segment and period.

    Definitions (per group of leads):

    * ``qualified_leads``: leads that reached the ``qualified`` step (default:
      the step after the first, i.e. they passed qualification);
    * ``win_rate``: won / (won + lost).  A stage set without a lost outcome
      counts its *stalled* leads as lost instead (no outcome, and not moved
      on within the horizon of the step it sits at: the rule of
      :func:`funnelkit.funnel.outcomes`, whose ``decided_win_rate`` it then
      equals), in a ``stalled`` column, so it never says 100% because no
      lead can be marked lost; without a won outcome it is NaN;
    * ``avg_cycle_days`` / ``median_cycle_days``: days from a won lead's first
      dated event to its win;
    * ``avg_deal_size`` / ``median_deal_size``: amount of won leads;
    * ``revenue``: total amount won (NaN, not 0, where the group has wins and
      none of them has an amount; then also ``sales_per_account``,
      ``sales_per_rep`` and ``clv``);
    * ``sales_per_account``: revenue / accounts with at least one win (the
      ``account`` column; without one, every lead is its own account);
    * ``sales_per_rep``: revenue / reps owning at least one lead of the group;
    * ``clv`` (customer lifetime value) = ``sales_per_account / years x
      margin x lifetime_years``: yearly revenue per customer account, times
      the gross margin, times the expected customer lifetime in years.
      ``years`` is the length of the period (with ``period=``), else the
      span of the log's dates.  With the defaults (margin 1, one year) it is
      the yearly revenue per account.

    Parameters
    ----------
    log : DataFrame
    by : str or list of str, optional
        Segment column(s); a lead's segment is its latest known value.
    period : {"M", "Q", "Y"} or pandas period alias, optional
        Also break down by calendar period.
    period_by : {"created", "closed"}
        Put a lead in the period of its first event (a cohort; default) or of
        its close (open leads are then left out, with a note).
    qualified : str, optional
        The step that makes a lead "qualified".
    account, owner : str, optional
        Account and rep columns (``account`` defaults to a column named
        ``"account"`` if the log has one).
    margin, lifetime_years : float
        Gross margin (0-1] and expected lifetime for ``clv``.
    stages, lead, stage, time, amount
        As elsewhere.

    Returns
    -------
    DataFrame
        One row per (segment, period): the ``by`` columns, ``period`` (when
        asked), ``leads``, ``qualified_leads``, ``won``, ``lost``,
        ``stalled`` (only for a stage set without a lost outcome; those
        leads are then not open), ``open``,
        ``reached_goal`` (only for a stage set without a won outcome: the
        leads at its last stage, which are then not open; as
        :func:`funnelkit.funnel.outcomes`), ``win_rate``, ``revenue``,
        ``avg_deal_size``, ``median_deal_size``,
        ``avg_cycle_days``, ``median_cycle_days``, ``accounts``,
        ``sales_per_account``, ``reps``, ``sales_per_rep``, ``clv``.
        ``attrs["notes"]`` says which defaults were used.

    Examples
    --------
    >>> import funnelkit as fk
    >>> m = fk.pipeline.metrics(fk.datasets.load_demo(), by="product")
    >>> m[["product", "won"]].values.tolist()
    [['Starter', 332], ['Professional', 217], ['Enterprise', 42]]
    """
    if period_by not in {"created", "closed"}:
        raise PipelineError(f"period_by must be 'created' or 'closed', got {period_by!r}.")
    if not 0 < margin <= 1:
        raise PipelineError(f"margin must be in (0, 1], got {margin!r}.")
    if lifetime_years <= 0:
        raise PipelineError(f"lifetime_years must be positive, got {lifetime_years!r}.")
    by = as_list(by)
    ss = resolve_stages(log, stages)
    notes = []
    if account is None and "account" in log.columns:
        account = "account"
    if account is None:
        notes.append("No account column: every lead counts as its own account.")
    if owner is not None and owner not in log.columns:
        notes.append(f"No {owner!r} column: sales_per_rep is missing.")
        owner = None
    extra = list(dict.fromkeys([*by, *([account] if account else []), *([owner] if owner else [])]))
    require_columns(log, extra, "pass existing columns in by=, account=, owner=.")
    q = ss.steps[1] if qualified is None and len(ss.steps) > 1 else (qualified or ss.steps[0])
    qname = ss.canonical(q)
    if qname is None or qname not in ss.steps:
        raise PipelineError(f"qualified={q!r} is not a step of {ss.name!r}: {', '.join(ss.steps)}.")
    notes.append(f"Qualified = reached {qname!r}.")
    lt = _lead_table(log, ss, cols=extra, lead=lead, stage=stage, time=time, amount=amount)
    oc = lt["outcome"].astype(str).to_numpy()
    won = oc == "won"
    amt = lt[AMOUNT].to_numpy(dtype=float) if AMOUNT in lt.columns else np.full(len(lt), np.nan)
    cyc = ((lt["closed_at"] - lt["first_seen_at"]) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    work = pd.DataFrame({b: lt[b] for b in by}, index=lt.index)
    keys = list(by)
    if period is not None:
        anchor = lt["first_seen_at"] if period_by == "created" else lt["closed_at"]
        try:
            work["period"] = wall_clock(anchor).dt.to_period(period)
        except (ValueError, TypeError) as exc:
            raise PipelineError(f"period={period!r} is not a pandas period alias ('M', 'Q', 'Y'): "
                                f"{exc}") from exc
        n_out = int(anchor.isna().sum())
        if n_out:
            why = "are still open" if period_by == "closed" else "have no dated event"
            notes.append(f"{n_out:,} lead(s) {why} and have no period: left out.")
        keys.append("period")
    work["leads"] = 1
    work["qualified"] = lt[f"reached_{qname}"].to_numpy(dtype=np.int64)
    work["won"] = won.astype(np.int64)
    work["lost"] = (oc == "lost").astype(np.int64)
    goal = _goal_is_last_stage(ss)  # no won outcome: a lead at the last stage reached the goal, not open
    at_goal = lt[f"reached_{ss.steps[-1]}"].to_numpy(dtype=bool) & (oc == "open") if goal else np.zeros(len(lt), bool)
    stalled = _stalled_rows(lt, ss) if not ss.lost else np.zeros(len(lt), dtype=bool)
    work["stalled"] = stalled.astype(np.int64)
    work["open"] = ((oc == "open") & ~at_goal & ~stalled).astype(np.int64)
    work["reached_goal"] = at_goal.astype(np.int64)
    work["won_amount"] = np.where(won, amt, np.nan)
    work["cycle"] = np.where(won, cyc, np.nan)
    work["account"] = lt[account].astype(object).where(won) if account else np.where(
        won, lt[lead].to_numpy(dtype=object), None)
    work["rep"] = lt[owner].astype(object) if owner else None
    if keys:
        g = work.groupby(keys, observed=True, dropna=True, sort=True)
    else:
        g = work.assign(_all=0).groupby("_all")
    res = g.agg(
        leads=("leads", "sum"), qualified_leads=("qualified", "sum"), won=("won", "sum"),
        lost=("lost", "sum"), stalled=("stalled", "sum"), open=("open", "sum"), reached_goal=("reached_goal", "sum"),
        revenue=("won_amount", "sum"),
        avg_deal_size=("won_amount", "mean"), median_deal_size=("won_amount", "median"),
        avg_cycle_days=("cycle", "mean"), median_cycle_days=("cycle", "median"),
        accounts=("account", "nunique"), reps=("rep", "nunique"), _valued=("won_amount", "count"),
    ).reset_index()
    res = res.drop(columns=[c for c in ["_all"] if c in res.columns])
    res.loc[none_known(res["won"], res.pop("_valued")), "revenue"] = np.nan
    if ss.won is None:  # no won outcome: no revenue won (not 0)
        res["revenue"] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        # no lost outcome: stalled leads are the losses (won / (won + lost) would be 100%)
        res["win_rate"] = res["won"] / (res["won"] + res["lost"] + res["stalled"])
        if ss.won is None:
            res["win_rate"] = np.nan
        res["sales_per_account"] = res["revenue"] / res["accounts"].where(res["accounts"] > 0)
        res["sales_per_rep"] = (res["revenue"] / res["reps"].where(res["reps"] > 0)) if owner else np.nan
    if period is not None:
        years = _period_span_years(res["period"])
    else:
        t = lt["first_seen_at"].dropna()
        last = lt["last_event_at"].dropna()
        span = (last.max() - t.min()) / pd.Timedelta(days=365.25) if len(t) else np.nan
        years = np.full(len(res), span)
    with np.errstate(invalid="ignore", divide="ignore"):
        res["clv"] = res["sales_per_account"] / years * margin * lifetime_years
    if goal:
        notes.append(f"Stage set {ss.name!r} has no won outcome: no win rate or revenue; the leads at its last stage, "
                     f"{ss.steps[-1]!r}, count as reached_goal.")
    if not ss.lost and ss.won is not None:
        notes.append(f"Stage set {ss.name!r} has no lost outcome: win_rate counts the {int(stalled.sum()):,} stalled "
                     "leads (no outcome, not moved on within the horizon of their step) as lost.")
    cols = [*keys, "leads", "qualified_leads", "won", "lost", *([] if ss.lost else ["stalled"]), "open",
            *(["reached_goal"] if goal else []),
            "win_rate", "revenue",
            "avg_deal_size", "median_deal_size", "avg_cycle_days", "median_cycle_days",
            "accounts", "sales_per_account", "reps", "sales_per_rep", "clv"]
    res = res[cols]
    res.attrs = {"notes": notes, "qualified": qname, "margin": margin,
                 "lifetime_years": lifetime_years}
    return res


def _cut(log: pd.DataFrame, T: np.int64, time: str, lead: str = LEAD) -> pd.DataFrame:
    """The log as known at T (see :func:`funnelkit.data.known_at`)."""
    return known_at(log, _ts(T, time_zone(log[time])), lead=lead, time=time)


def velocity(
    log: pd.DataFrame,
    *,
    as_of=None,
    by: str | Sequence[str] | None = None,
    qualified: str | None = None,
    lookback_days: float | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Pipeline velocity: how much value the pipeline turns into wins per day.

    ``velocity = opportunities x win_rate x avg_deal_size / cycle_days``

    * ``opportunities``: leads open at ``as_of`` that have reached the
      ``qualified`` step (default: the step after the first; for a stage
      set without a lost outcome, not stalled);
    * ``win_rate``: won / closed among leads that reached that step and
      closed by ``as_of`` (within ``lookback_days`` before it, if given).
      A stage set without a lost outcome has no closed losses: its
      *stalled* leads (as in :func:`metrics`; with ``lookback_days``, those
      whose last event is in the window) count as closed instead, so the
      rate is not 100%; without a won outcome it is NaN;
    * ``avg_deal_size``: mean amount of those won leads;
    * ``cycle_days``: their mean days from first event to win.

    Only events up to ``as_of`` are used.

    Returns
    -------
    DataFrame
        One row per segment: the ``by`` columns, ``opportunities``,
        ``closed``, ``won``, ``win_rate``, ``avg_deal_size``, ``cycle_days``,
        ``velocity_per_day``, ``velocity_per_30_days``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> v = fk.pipeline.velocity(fk.datasets.load_demo(), as_of="2025-06-30")
    >>> bool(v.loc[0, "velocity_per_day"] > 0)
    True
    """
    by = as_list(by)
    ss = resolve_stages(log, stages)
    ev_rng = _events(log, ss, lead=lead, stage=stage, time=time).data_range()
    tz = time_zone(log[time])
    T = _to_time(as_of, name="as_of", tz=tz) if as_of is not None else (ev_rng[1] if ev_rng else np.int64(0))
    q = ss.steps[1] if qualified is None and len(ss.steps) > 1 else (qualified or ss.steps[0])
    qname = ss.canonical(q)
    if qname is None or qname not in ss.steps:
        raise PipelineError(f"qualified={q!r} is not a step of {ss.name!r}: {', '.join(ss.steps)}.")
    past = _cut(log, T, time, lead)
    require_columns(log, by, "pass existing segment columns in by=.")
    lt = _lead_table(past, ss, cols=by, lead=lead, stage=stage, time=time, amount=amount)
    snap = snapshot(log, as_of=_ts(T, tz), stages=ss, segments=[], lead=lead, stage=stage, time=time,
                    amount=None)
    # opportunities: open at as_of and their current stage at or beyond the qualified step
    qk = ss.steps.index(qname)
    in_pipe = snap.loc[snap["stage"].cat.codes >= qk, lead]
    reached_q = lt[f"reached_{qname}"].to_numpy(dtype=bool)
    oc = lt["outcome"].astype(str).to_numpy()
    closed = (oc != "open") & reached_q
    # no lost outcome: the stalled leads are the losses (won / closed would be 100%), not opportunities
    dead = _stalled_rows(lt, ss) if not ss.lost else np.zeros(len(lt), dtype=bool)
    stalled = dead & reached_q
    if lookback_days is not None:
        lo = pd.Timestamp(int(T)) - pd.Timedelta(days=float(lookback_days))
        closed &= (lt["closed_at"] > lo).to_numpy()
        stalled &= (lt["last_event_at"] > lo).to_numpy()
    won = closed & (oc == "won")
    closed |= stalled
    amt = lt[AMOUNT].to_numpy(dtype=float) if AMOUNT in lt.columns else np.full(len(lt), np.nan)
    cyc = ((lt["closed_at"] - lt["first_seen_at"]) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    work = pd.DataFrame({b: lt[b] for b in by}, index=lt.index)
    work["opportunities"] = (_member(lt[lead], in_pipe) & ~dead).astype(np.int64)
    work["closed"] = closed.astype(np.int64)
    work["won"] = won.astype(np.int64)
    work["deal"] = np.where(won, amt, np.nan)
    work["cycle"] = np.where(won, cyc, np.nan)
    g = work.groupby(by, observed=True, dropna=False, sort=True) if by else work.assign(_all=0).groupby("_all")
    res = g.agg(opportunities=("opportunities", "sum"), closed=("closed", "sum"), won=("won", "sum"),
                avg_deal_size=("deal", "mean"), cycle_days=("cycle", "mean")).reset_index()
    res = res.drop(columns=[c for c in ["_all"] if c in res.columns])
    with np.errstate(invalid="ignore", divide="ignore"):
        res["win_rate"] = res["won"] / res["closed"] if ss.won is not None else np.nan
        res["velocity_per_day"] = (res["opportunities"] * res["win_rate"] * res["avg_deal_size"]
                                   / res["cycle_days"])
    res["velocity_per_30_days"] = res["velocity_per_day"] * 30
    cols = [*by, "opportunities", "closed", "won", "win_rate", "avg_deal_size", "cycle_days",
            "velocity_per_day", "velocity_per_30_days"]
    res = res[cols]
    res.attrs = {"as_of": _ts(T, tz), "qualified": qname, "lookback_days": lookback_days}
    return res


def coverage(
    log: pd.DataFrame,
    *,
    target,
    as_of=None,
    by: str | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Pipeline coverage: open pipeline value / target.

    A coverage of 3 means the open pipeline is worth three times the
    target; teams often aim for 3-4x, since most of it will not close.

    Parameters
    ----------
    log : DataFrame
    target : number, mapping or Series
        The revenue target: one number, or (with ``by``) one per segment
        value (a segment without a target gets a missing coverage, noted).
    as_of : date, optional
        Snapshot date (default: the log's end).
    by : str, optional
        A segment column.
    stages, lead, stage, time, amount
        As elsewhere.

    Returns
    -------
    DataFrame
        One row per segment: ``by`` (if given), ``open_leads``,
        ``open_value`` (known amounts; NaN, not 0, where no open lead has
        one), ``value_unknown`` (open leads without an amount), ``target``,
        ``coverage`` (NaN with ``open_value``).

    Examples
    --------
    >>> import funnelkit as fk
    >>> c = fk.pipeline.coverage(fk.datasets.load_demo(), target=5_000_000, as_of="2025-06-30")
    >>> round(float(c.loc[0, "coverage"]), 2) == round(float(c.loc[0, "open_value"]) / 5e6, 2)
    True
    """
    if by is not None and not isinstance(by, str):
        raise PipelineError("coverage takes one segment column in by= (targets are per value).")

    def number(v, where):
        try:
            out = float(v)
        except (TypeError, ValueError):
            out = math.nan
        if not math.isfinite(out) or isinstance(v, bool):
            raise PipelineError(f"target{where} must be a positive number (revenue for the period, e.g. "
                                f"500000); got {v!r}.")
        return out

    if isinstance(target, (Mapping, pd.Series)):
        target = {k: number(v, f" for {by}={k!r}") for k, v in target.items()}
    else:
        target = number(target, "")
    snap = snapshot(log, as_of=as_of, stages=stages, segments=[by] if by else [], lead=lead,
                    stage=stage, time=time, amount=amount)
    notes = list(snap.attrs["notes"])
    work = pd.DataFrame({"open_leads": 1, "open_value": snap[AMOUNT].fillna(0.0),
                         "value_unknown": snap[AMOUNT].isna().astype(np.int64)})
    if by:
        work[by] = snap[by]
        res = work.groupby(by, observed=True, dropna=False, sort=True).sum().reset_index()
        if isinstance(target, Mapping):
            tmap = dict(target.items())
            res["target"] = res[by].astype(object).map(tmap).astype(float)
            miss = res.loc[res["target"].isna(), by].tolist()
            if miss:
                notes.append(f"No target for {by}={', '.join(map(repr, miss))}: coverage missing.")
        else:
            res["target"] = float(target)
    else:
        if isinstance(target, Mapping):
            raise PipelineError("a target per segment needs by= (the segment column).")
        res = work.sum().to_frame().T
        res["target"] = float(target)
    bad = res["target"].notna() & ~(res["target"] > 0)
    if bad.any():
        raise PipelineError(f"targets must be positive; got {res.loc[bad, 'target'].tolist()}.")
    for c in ("open_leads", "value_unknown"):
        res[c] = res[c].astype("int64")
    res.loc[none_known(res["open_leads"], res["open_leads"] - res["value_unknown"]), "open_value"] = np.nan
    res["coverage"] = res["open_value"] / res["target"]
    cols = ([by] if by else []) + ["open_leads", "open_value", "value_unknown", "target", "coverage"]
    res = res[cols]
    res.attrs = {"as_of": snap.attrs["as_of"], "notes": notes}
    return res


def activity(
    log: pd.DataFrame,
    *,
    freq: str = "MS",
    start=None,
    end=None,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """What the team did each period: the sales activity metrics.

    Counts *events in the period* (not cohorts): how many leads entered each
    stage (meetings held, proposals sent, ...), how many were won and lost
    and the value won, and the pipeline left open at the period's end.  A
    lead entering the same stage twice in one period counts once.

    Parameters
    ----------
    log : DataFrame
        A canonical event log.
    freq : str
        Period length, a pandas frequency that marks period starts
        (``"MS"`` month, ``"QS"`` quarter, ``"W-MON"`` week).
    start, end : date, optional
        Limit the periods (default: the log's dated events).
    stages, lead, stage, time, amount
        As everywhere.

    Returns
    -------
    DataFrame
        One row per period: ``period`` (its first day), ``period_end``, one
        count column per step of the stage set (leads that entered it in the
        period; the ``won`` column counts deals won), ``lost`` (leads lost),
        ``won_value`` (amount of the deals won in the period; the lead's
        latest known amount), ``open_at_end`` and ``open_value_at_end`` (the
        pipeline still open at the period's end, as :func:`snapshot` sees it).
        The values are sums of the known amounts: NaN, not 0, where there
        are such deals but none has an amount.

    Examples
    --------
    >>> import funnelkit as fk
    >>> act = fk.pipeline.activity(fk.datasets.load_demo(), start="2025-07-01")
    >>> act[["period", "proposal", "won", "open_at_end"]].shape
    (3, 4)
    """
    ss = resolve_stages(log, stages)
    require_columns(log, [lead, stage, time], "pass the right names with lead=, stage=, time=.")
    t = log[time]
    dated = t.notna().to_numpy()
    if not dated.any():
        raise PipelineError(f"no dated events in {time!r}: activity per period cannot be counted.")
    tz = time_zone(t)

    def moment(x) -> pd.Timestamp:  # wall-clock in the log's zone
        ts = pd.Timestamp(x)
        if tz is None or ts.tz is not None:
            return ts if tz is None else ts.tz_convert(tz)
        return ts.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")

    lo = moment(start) if start is not None else t[dated].min()
    hi = moment(end) if end is not None else t[dated].max()
    try:
        starts = pd.date_range(lo.normalize() - pd.tseries.frequencies.to_offset(freq), hi, freq=freq)
    except ValueError as exc:
        raise PipelineError(f"freq={freq!r} is not a pandas frequency ('MS', 'QS', 'W-MON'): {exc}") from exc
    starts = starts[starts + pd.tseries.frequencies.to_offset(freq) > lo]
    if len(starts) == 0:
        raise PipelineError(f"no period of {freq!r} between {lo} and {hi}.")
    edges = starts.append(pd.DatetimeIndex([starts[-1] + pd.tseries.frequencies.to_offset(freq)]))
    order = stage_order(log, ss, stage=stage)
    tv = t.to_numpy(dtype="datetime64[ns]")  # UTC instants for a log with a zone
    period = np.searchsorted(edges.as_unit("ns").asi8, tv.view(np.int64), side="right") - 1
    inside = dated & (period >= 0) & (period < len(starts))
    lead_codes, lead_ids = pd.factorize(log[lead])
    n_p = len(starts)
    out = pd.DataFrame({"period": starts, "period_end": edges[1:] - pd.Timedelta(1, "ns")})
    for k, step in enumerate(ss.steps):
        sel = inside & (order == k)
        pairs = np.unique(np.stack([period[sel], lead_codes[sel]]), axis=1)
        out[step] = np.bincount(pairs[0], minlength=n_p) if pairs.size else 0
    sel = inside & (order == LOST_ORDER)
    pairs = np.unique(np.stack([period[sel], lead_codes[sel]]), axis=1)
    out["lost"] = np.bincount(pairs[0], minlength=n_p) if pairs.size else 0
    if ss.won is not None and amount and amount in log.columns:
        amt = log[amount].to_numpy(dtype=float)
        latest = np.full(len(lead_ids), np.nan)
        has = ~np.isnan(amt)
        t_ns = tv.view(np.int64)
        idx = np.flatnonzero(has)[np.lexsort((t_ns[has], lead_codes[has]))]
        latest[lead_codes[idx]] = amt[idx]  # the latest known amount wins
        won_sel = inside & (order == len(ss.steps) - 1)
        first_won = np.unique(np.stack([period[won_sel], lead_codes[won_sel]]), axis=1)
        vals = latest[first_won[1]] if first_won.size else np.array([])
        if first_won.size:
            won_v = np.bincount(first_won[0], weights=np.nan_to_num(vals), minlength=n_p)
            unknown = none_known(np.bincount(first_won[0], minlength=n_p),
                                 np.bincount(first_won[0], weights=~np.isnan(vals), minlength=n_p))
            out["won_value"] = np.where(unknown, np.nan, won_v)
        else:
            out["won_value"] = 0.0
    open_n, open_v = [], []
    for e in out["period_end"]:  # one snapshot per period (a handful), vectorised inside
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            snap = snapshot(log, as_of=e, stages=ss, lead=lead, stage=stage, time=time, amount=amount)
        open_n.append(len(snap))
        # open leads, none with an amount: unknown, not 0
        open_v.append(float(snap[AMOUNT].sum(min_count=1)) if AMOUNT in snap.columns and len(snap)
                      else 0.0 if AMOUNT in snap.columns else np.nan)
    out["open_at_end"] = open_n
    out["open_value_at_end"] = open_v
    return out
