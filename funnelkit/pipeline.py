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

import datetime as _dt
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import AMOUNT, FLAG, LEAD, STAGE, TIME, stage_order
from .exceptions import DataWarning, FunnelkitError, InvalidEventLogError, Problem
from .funnel import resolve_stages
from .stages import LOST_ORDER, StageSet

__all__ = [
    "PipelineError",
    "snapshot",
    "stage_summary",
]

_NAT = np.iinfo(np.int64).min
_DAY_NS = 86_400 * 10**9
_DATE_ONLY = re.compile(r"^\s*\d{4}-\d{1,2}-\d{1,2}\s*$")
SNAPSHOT_FLAGS = ("", "moved_back", "unknown_time", "after_close")


class PipelineError(FunnelkitError, ValueError):
    """A pipeline question cannot be answered as asked (bad date, threshold, ...)."""


# ---------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------
def _as_list(by) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def _missing_columns(log: pd.DataFrame, cols: Sequence[str], hint: str) -> None:
    missing = [c for c in cols if c not in log.columns]
    if missing:
        raise InvalidEventLogError(
            [
                Problem(
                    "missing_column",
                    c,
                    f"column {c!r} is not in the data. Columns present: "
                    f"{', '.join(map(str, log.columns))}.",
                    hint,
                )
                for c in missing
            ]
        )


def _to_time(value, *, name: str) -> np.int64:
    """A date or time as int64 ns; date-only input means the end of that day."""
    if value is None:
        raise PipelineError(f"{name} is required.")
    end_of_day = False
    if isinstance(value, str):
        end_of_day = bool(_DATE_ONLY.match(value))
    elif isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        end_of_day = True
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise PipelineError(f"{name}={value!r} is not a date: {exc}") from exc
    if ts is pd.NaT or pd.isna(ts):
        raise PipelineError(f"{name}={value!r} is not a date.")
    if ts.tz is not None:
        raise PipelineError(
            f"{name}={value!r} has a timezone, but event logs are tz-naive (wall-clock time in "
            "the log's timezone). Pass a naive time, e.g. pd.Timestamp(...).tz_convert(tz)"
            ".tz_localize(None)."
        )
    if end_of_day:
        ts = ts.normalize() + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    return np.int64(ts.as_unit("ns").value)


def _ts(v: np.int64 | int) -> pd.Timestamp:
    return pd.Timestamp(int(v), unit="ns")


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
    t: np.ndarray  # int64 ns, _NAT for unknown
    order: np.ndarray  # 0.. steps, -1 lost
    is_won: np.ndarray
    is_lost: np.ndarray
    is_step: np.ndarray  # a stage (not an outcome)
    n_leads: int

    @property
    def dated(self) -> np.ndarray:
        return self.t != _NAT

    def data_range(self) -> tuple[np.int64, np.int64] | None:
        d = self.t[self.dated]
        if d.size == 0:
            return None
        return d.min(), d.max()


def _events(log: pd.DataFrame, stages, *, lead: str, stage: str, time: str) -> _Events:
    if not isinstance(log, pd.DataFrame):
        raise TypeError(f"expected an event log DataFrame, got {type(log).__name__}.")
    _missing_columns(log, [lead, stage, time], "pass the right names with lead=, stage=, time=.")
    ss = resolve_stages(log, stages)
    order = stage_order(log, ss, stage=stage)
    if (order == -2).any():
        bad = pd.Series(log[stage].to_numpy()[order == -2]).value_counts(dropna=False)
        rows = np.flatnonzero(order == -2)[:5]
        raise InvalidEventLogError(
            [
                Problem(
                    "unknown_stage",
                    stage,
                    f"labels not in stage set {ss.name!r}: "
                    + ", ".join(f"{k!r} x{v:,}" for k, v in bad.items())
                    + f" (first at row positions {', '.join(map(str, rows))}).",
                    "load the log with this stage set (read_events(..., stages=...)) or add aliases.",
                )
            ]
        )
    if not pd.api.types.is_datetime64_any_dtype(log[time].dtype):
        raise InvalidEventLogError(
            [
                Problem(
                    "bad_timestamp",
                    time,
                    f"column {time!r} holds {log[time].dtype}, not datetimes.",
                    "load the log with funnelkit.read_events (it parses and checks times).",
                )
            ]
        )
    codes, lead_ids = pd.factorize(log[lead], sort=False)
    if (codes < 0).any():
        rows = np.flatnonzero(codes < 0)[:5]
        raise InvalidEventLogError(
            [
                Problem(
                    "empty_lead_id",
                    lead,
                    f"{int((codes < 0).sum()):,} event(s) have no lead id (row positions "
                    f"{', '.join(map(str, rows))}).",
                    "give every event its lead id, or load the log with read_events.",
                )
            ]
        )
    tser = log[time]
    if getattr(tser.dt, "tz", None) is not None:
        tser = tser.dt.tz_localize(None)
    t = tser.to_numpy(dtype="datetime64[ns]").view(np.int64)
    sort_key = np.where(order == LOST_ORDER, np.iinfo(np.int32).max, order)
    idx = np.lexsort((sort_key, t, codes))
    order = order[idx]
    m = len(ss.steps)
    is_won = (order == m - 1) & (ss.won is not None)
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
    segs = _as_list(segments)
    _missing_columns(log, segs, "pass existing columns in segments=.")
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
                              ``include_closed=True``)
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
    >>> import funnelkit as fk
    >>> log = fk.datasets.load_demo()
    >>> snap = fk.pipeline.snapshot(log, as_of="2025-06-30")
    >>> bool(snap["entered_stage_at"].max() <= pd.Timestamp("2025-07-01"))
    True
    >>> snap["stage"].value_counts().sort_index().to_dict()  # doctest: +SKIP
    """
    ev = _events(log, stages, lead=lead, stage=stage, time=time)
    ss = ev.ss
    segs = _segment_cols(log, segments, exclude=[lead, stage, time, amount or ""])
    rng = ev.data_range()
    T = _to_time(as_of, name="as_of") if as_of is not None else (rng[1] if rng else np.int64(0))
    notes: list[str] = []
    if rng is not None and T < rng[0]:
        warnings.warn(
            f"as_of={_ts(T)} is before the data starts ({_ts(rng[0])}): no lead existed yet, the "
            "snapshot is empty.",
            DataWarning,
            stacklevel=2,
        )
        notes.append(f"as_of is before the data starts ({_ts(rng[0])}).")
    elif rng is not None and _ts(T).normalize() > _ts(rng[1]).normalize():
        warnings.warn(
            f"as_of={_ts(T)} is after the data ends ({_ts(rng[1])}): the snapshot shows the state "
            "at the data's end, with days in stage and ages counted to as_of.",
            DataWarning,
            stacklevel=2,
        )
        notes.append(f"as_of is after the data ends ({_ts(rng[1])}).")

    dated = ev.dated
    le = dated & (ev.t <= T)
    n_le = np.bincount(ev.lc[le], minlength=ev.n_leads)
    n_dated = np.bincount(ev.lc[dated], minlength=ev.n_leads)
    at_end = rng is None or T >= rng[1]
    undated_only = n_dated == 0
    present = (n_le > 0) | (undated_only & at_end)
    keep = le | (~dated & present[ev.lc])
    excl_undated = int((undated_only & ~present).sum())
    has_undated = np.bincount(ev.lc[~dated], minlength=ev.n_leads) > 0
    later_undated = int((has_undated & ~undated_only & (n_le == 0)).sum())
    if excl_undated:
        notes.append(
            f"{excl_undated:,} lead(s) have only undated events (unknown time): they cannot be "
            f"placed before {_ts(T)} and are excluded from this past snapshot."
        )
    if later_undated:
        notes.append(
            f"{later_undated:,} lead(s) have undated events and their first dated event after "
            "as_of: whether they existed at as_of is unknown; excluded."
        )

    lc, t = ev.lc, ev.t
    first_any, last_any = _first_last(lc, keep, ev.n_leads)
    _, last_step = _first_last(lc, keep & ev.is_step, ev.n_leads)
    first_oc, last_oc = _first_last(lc, keep & (ev.is_won | ev.is_lost), ev.n_leads)
    first_dated, last_dated = _first_last(lc, keep & dated, ev.n_leads)

    closed = last_oc >= 0
    leads = np.flatnonzero(present & (include_closed | ~closed))

    # start of the latest run of consecutive events in the same stage (steps only)
    sp = np.flatnonzero(keep & ev.is_step)
    run_start = np.zeros(lc.size, dtype=np.int64)
    if sp.size:
        new_run = np.r_[True, (lc[sp][1:] != lc[sp][:-1]) | (ev.order[sp][1:] != ev.order[sp][:-1])]
        starts = np.where(new_run, sp, -1)
        run_start[sp] = np.maximum.accumulate(starts)
    # highest step reached before the current stage (for moved_back)
    max_step = np.full(ev.n_leads, -1, dtype=np.int64)
    np.maximum.at(max_step, lc[sp], ev.order[sp])

    ls = last_step[leads]
    lo = last_oc[leads]
    is_closed = lo >= 0
    has_step = ls >= 0
    # every event's label as an index into ss.labels (steps, then lost outcomes)
    label_idx = _label_index(log[stage], ss)[ev.idx]
    cur = np.where(is_closed, lo, ls)
    label_code = np.where(cur >= 0, label_idx[np.maximum(cur, 0)], -1)
    cur_order = np.where(has_step, ev.order[np.maximum(ls, 0)], -1)
    stage_cat = pd.Categorical.from_codes(label_code, categories=list(ss.labels), ordered=True)

    run_t = np.where(has_step, t[run_start[np.maximum(ls, 0)]], _NAT)
    entered = np.where(is_closed, t[np.maximum(lo, 0)], run_t)
    fd = first_dated[leads]
    first_seen = np.where(fd >= 0, t[np.maximum(fd, 0)], _NAT)
    ld = last_dated[leads]
    last_act = np.where(ld >= 0, t[np.maximum(ld, 0)], _NAT)

    def days(since: np.ndarray) -> np.ndarray:
        out = np.full(since.size, np.nan)
        ok = since != _NAT
        out[ok] = (T - since[ok]) / _DAY_NS
        return out

    flag = np.zeros(leads.size, dtype=np.int8)
    flag[has_step & ~is_closed & (cur_order < max_step[leads])] = 1
    flag[has_undated[leads]] = 2
    after = (first_oc[leads] >= 0) & (last_any[leads] > first_oc[leads])
    flag[after] = 3

    out = pd.DataFrame(
        {
            lead: ev.lead_ids[leads],
            "stage": stage_cat,
            "entered_stage_at": entered.view("datetime64[ns]"),
            "days_in_stage": days(entered),
            "first_seen_at": first_seen.view("datetime64[ns]"),
            "age_days": days(first_seen),
        }
    )
    if amount and amount in log.columns:
        out[AMOUNT] = _last_valid(log[amount].astype("float64"), ev, leads, keep)
    else:
        out[AMOUNT] = np.nan
    for s in segs:
        out[s] = _last_valid(log[s], ev, leads, keep)
    out["last_activity_at"] = last_act.view("datetime64[ns]")
    out["flag"] = pd.Categorical.from_codes(flag, categories=list(SNAPSHOT_FLAGS))
    if include_closed:
        oc = np.full(leads.size, "open", dtype=object)
        oc[is_closed] = np.where(ev.is_won[lo[is_closed]], "won", "lost")
        out["outcome"] = pd.Categorical(oc, categories=["open", "won", "lost"])
        out["closed_at"] = np.where(is_closed, t[np.maximum(lo, 0)], _NAT).view("datetime64[ns]")
    n_after = int(after.sum())
    if n_after:
        notes.append(
            f"{n_after:,} lead(s) have events after their outcome (flag 'after_close'); they are "
            "reported with their latest outcome - check the data."
        )
    out = out.sort_values(["stage", lead], kind="stable").reset_index(drop=True)
    out.attrs = {
        "as_of": _ts(T),
        "stage_set": ss,
        "excluded_undated": excl_undated + later_undated,
        "notes": notes,
    }
    return out


def _check_snapshot(snap: pd.DataFrame, cols: Sequence[str]) -> None:
    if not isinstance(snap, pd.DataFrame):
        raise TypeError(f"expected a snapshot DataFrame, got {type(snap).__name__}.")
    _missing_columns(snap, cols, "pass the output of funnelkit.pipeline.snapshot().")


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
        ``stage``, ``leads``, ``value`` (sum of known amounts),
        ``value_unknown`` (leads without an amount), ``share_leads`` and
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
    by = _as_list(by)
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
    cols = [
        *by, "stage", "leads", "value", "value_unknown", "share_leads", "share_value",
        "median_days_in_stage", "median_age_days", "mean_age_days",
    ]
    return res[cols]
