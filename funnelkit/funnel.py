"""The funnel: the aggregate view of how leads flow through the stages.

How many leads reached each step, how many converted to the next, where the
process leaks, how that differs between segments and changes over time, and
how long conversion takes.  Everything is computed from the event log; the
funnel is derived, never edited.

Step semantics
--------------
The *steps* are the stage set's stages followed by its ``won`` outcome (if
any).  Events are taken in the log's order: by lead, time (unknown times
first), then stage order, a ``lost`` outcome after steps at the same time.

``mode="ordered"`` (default)
    A lead reaches step 1 at its first event of that stage.  It reaches step
    k at its first event of stage k *at or after* the event where it reached
    step k-1.  Other stages may happen in between.
``mode="strict"``
    As ordered, but the event that reaches step k must be the lead's next
    event after reaching step k-1, ignoring repeats of stage k-1: any other
    stage in between (a ``lost``, a step back, a skipped stage) ends the
    lead's progress.  Skipped stages are never inferred.
``mode="any"``
    Order does not matter: a lead reaches step k once it has entered steps
    1..k in any order; the time it reaches step k is when the last of them
    happened.

Skipped stages (``infer_skipped=True``): an event of a *later* step also
counts as reaching step k - a lead that went from qualification straight to
proposal passed the meeting.  Such leads are counted in the ``inferred``
column.  With ``infer_skipped=False`` they stop at the step before the gap.
Inference is a property of the stage set (``StageSet.infer_skipped``): on
for sales pipelines (stages get skipped in data entry), off for web and
marketing funnels (a purchase without a cart is not a cart); a set that does
not say infers when it has a ``lost`` outcome.  ``strict`` never infers.

Re-entry (one rule for every mode): each lead counts at most once per step,
at its *first* qualifying entry; later re-entries into a stage neither count
again nor restart the journey, and windows are measured between those first
entries.  A lost outcome never counts as progress.

Windows: ``window=`` counts a step only when reached within that time of the
lead's first step (its *anchor*; in ``"any"`` mode its first event of any
step); ``step_windows=`` limits the time from step k-1 to step k.  Events
with unknown times are never judged late.

Exclusion: ``exclude=`` removes from the whole funnel the leads that entered
a given stage (e.g. ``"lost"``) after reaching one step and before reaching
a later one (both reached): typically deals that were lost and reopened.
Their number is reported in the ``excluded`` column; nothing disappears
silently.

Leads in flight, matured leads and the horizon
----------------------------------------------
Funnel figures are computed *as of* a moment, by default the log's last
event (``as_of="end"``).  A date means the end of that day, a timestamp
that instant; events after it are ignored, and undated events count only for
leads known by then (:func:`funnelkit.data.known_at`, the rule every view
follows).

Each step has a deadline to move on to the next: the conversion ``window``
from the lead's first step, the step window, or else the *horizon*
(``stale_after``): the stage set's ``horizon_days``, or - when the set has
none - learned from the log: per step, the time within which 95% of the
eventual conversions happen, from the Aalen-Johansen cumulative incidence
(moving on is the event, an outcome without it competes, open leads are
censored at ``as_of``), rounded up to whole days.  The horizon used is in
``attrs["horizon"]`` (days per step) and ``attrs["funnel"]["horizon_source"]``.

A lead that reached step k but not step k+1 by ``as_of`` is

* **dropped** when it is closed (won or lost), or open past its deadline
  (it has *stalled*: with no lost outcome in the stage set this is how a
  lead fails at all, so such a funnel never reads 100%);
* **in flight** when it is open and within its deadline.

A lead is **matured** at step k once its deadline has passed (whatever
became of it).  **Rates use matured leads only**: ``step_conversion =
matured_converted / matured``.  Leads that entered recently are left out of
the rate whether they converted, were lost or are still open, so the quick
decisions of young leads do not bias it, and a young segment is judged on
the same footing as an old one.  ``overall_conversion`` is the product of
the step conversions (a life table, Greenwood interval); when every lead
has matured it equals ``entered / entered at the first step``.  Where the
deadline is unknown (unknown times, or nothing to learn a horizon from, in
which case a :class:`~funnelkit.exceptions.DataWarning` says so) a lead
matures once it is decided: those rates are censored-only.
:func:`cohorts` and :func:`trend` mark *immature* rows (some leads not yet
matured) and :func:`time_to_convert` gives the survival estimate.  Pass
``as_of=None`` for the classic funnel in which every lead that did not
convert counts as dropped.

Segments: a lead belongs to the segment value on its first event.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd

from . import stats
from ._common import (
    as_list,
    none_known,
    parse_as_of,
    require_columns,
    singular,
    time_zone,
    to_datetimes,
    wall_ns,
)
from .data import (
    AMOUNT,
    LEAD,
    STAGE,
    TIME,
    checked_leads,
    checked_order,
    checked_times,
    log_stage_set,
)
from .exceptions import DataWarning, FunnelSpecError, InvalidEventLogError, Problem
from .stages import LOST_ORDER, SegmentStageSets, StageSet, get_stage_set, is_segment_spec

__all__ = [
    "MODES",
    "FunnelSpecError",
    "TimeToConvert",
    "cohorts",
    "compare",
    "conversion",
    "lead_progress",
    "leaks",
    "outcomes",
    "resolve_stages",
    "time_to_convert",
    "trend",
]

#: The step semantics :func:`conversion` understands (see the module docstring).
MODES = ("ordered", "strict", "any")

_NAT = np.iinfo(np.int64).min
_INF = np.iinfo(np.int64).max
_DAY_NS = 86_400 * 10**9




Duration = float | int | str | timedelta | pd.Timedelta


def _segment_sets(stages) -> SegmentStageSets | None:
    """The stage set per segment that ``stages=`` names, if it names one."""
    if isinstance(stages, SegmentStageSets):
        return stages
    if is_segment_spec(stages):
        return SegmentStageSets.from_spec(stages)
    return None


def _set_groups(log: pd.DataFrame, sss: SegmentStageSets, lead: str, time: str):
    """Per stage set: the mask of events whose lead follows it (by its first event's segment value)."""
    require_columns(log, [sss.column], f"the stage sets are per {sss.column!r}: that column must be in the log.")
    order = log.sort_values([lead, time], kind="stable", na_position="first")
    first = order.drop_duplicates(lead).set_index(lead)[sss.column]
    value = log[lead].map(first)
    groups: dict[int, tuple[StageSet, np.ndarray]] = {}
    for v in pd.unique(value.dropna()):
        ss = sss.for_value(v)
        mask = (value == v).to_numpy(dtype=bool)
        if id(ss) in groups:
            groups[id(ss)] = (ss, groups[id(ss)][1] | mask)
        else:
            groups[id(ss)] = (ss, mask)
    if value.isna().any():
        if sss.default is None:
            raise FunnelSpecError(
                f"{int(value.isna().sum()):,} events belong to leads with no {sss.column!r} and there is no "
                "default stage set for them; give SegmentStageSets a default."
            )
        ss = sss.default
        mask = value.isna().to_numpy(dtype=bool)
        groups[id(ss)] = (ss, groups[id(ss)][1] | mask) if id(ss) in groups else (ss, mask)
    return list(groups.values())


def _goal_is_last_stage(ss: StageSet) -> bool:
    """A stage set without a won outcome, whose last stage is its goal (a marketing or web
    funnel); not the one-step milestones of segment stage sets where some set has no won."""
    return ss.won is None and len(ss.steps) > 1


def _ends_at_goal(ss: StageSet) -> bool:
    """The set's last step closes a lead: its won outcome, or the goal of a set without one
    (:func:`_goal_is_last_stage`).  A lead there is no longer in the pipeline."""
    return ss.won is not None or _goal_is_last_stage(ss)


def _stalled_rows(prog: pd.DataFrame, ss: StageSet) -> np.ndarray:
    """Rows of a :func:`lead_progress` table that have *stalled*: known at a step short of the
    last, no outcome, and not moved on within that step's horizon (``in_flight`` False); the
    rule :func:`outcomes` applies to its journeys, for views built on the per-lead table."""
    k = prog["steps_reached"].to_numpy()
    return ((prog["outcome"].astype(str) == "open").to_numpy() & ~prog["in_flight"].to_numpy(dtype=bool)
            & (k >= 1) & (k < len(ss.steps)))


def _milestone_log(log: pd.DataFrame, sss: SegmentStageSets, lead: str, stage: str, time: str) -> pd.DataFrame:
    """The log with every stage relabelled as the milestone it is in its lead's own set."""
    out = np.empty(len(log), dtype=object)
    bad = []
    labels = log[stage].astype(str).to_numpy()
    for ss, mask in _set_groups(log, sss, lead, time):
        uniq = pd.unique(labels[mask])
        lut = {lab: sss.milestone(ss, lab) for lab in uniq}
        bad += [(lab, ss.name) for lab, m in lut.items() if m is None]
        out[mask] = pd.Series(labels[mask]).map(lut).to_numpy(dtype=object)
    if bad:
        raise InvalidEventLogError(
            [
                Problem(
                    "unknown_stage",
                    stage,
                    "labels not in their segment's stage set: "
                    + "; ".join(f"{lab!r} (set {name!r})" for lab, name in bad[:10]) + ".",
                    f"add them to the stage set of that {sss.column} (or aliases), or leave them out with "
                    "read_events(..., ignore=[...]).",
                )
            ]
        )
    mlog = log.copy()
    ms = sss.milestones()
    mlog[stage] = pd.Categorical(out, categories=list(ms.labels))
    mlog.attrs = {}
    return mlog


def _milestone_note(sss: SegmentStageSets) -> str:
    return (f"segments of {sss.column!r} follow different stage sets "
            f"({', '.join(sorted({s.name for s in sss.all_sets}))}): compared on the milestones they "
            "share (entered -> won, lost).")


def resolve_stages(log: pd.DataFrame, stages) -> StageSet:
    """The stage set to use: the one given, else the one the log was loaded with.

    Examples
    --------
    >>> import funnelkit as fk
    >>> resolve_stages(fk.datasets.load_demo(n_leads=50), None).name
    'pipeline4'
    """
    if stages is not None:
        return get_stage_set(stages)
    found = log_stage_set(log)
    if found is None:
        raise InvalidEventLogError(
            [
                Problem(
                    "no_stage_set",
                    STAGE,
                    "no stage set was given and the log does not carry one.",
                    "pass stages='pipeline4' (a preset), a YAML path or a list of stages, or load "
                    "the log with read_events(..., stages=...).",
                )
            ]
        )
    return found


def _duration(w, what: str = "window") -> int | None:
    """A duration in nanoseconds; numbers are days."""
    if w is None:
        return None
    if isinstance(w, bool):
        raise FunnelSpecError(f"{what} must be a number of days, a timedelta or a string like '30D'; got {w!r}.")
    try:
        if isinstance(w, (str, timedelta, pd.Timedelta, np.timedelta64)):
            ns = int(pd.Timedelta(w).value)
        elif isinstance(w, (int, float, np.integer, np.floating)):
            ns = int(round(float(w) * _DAY_NS))
        else:
            raise TypeError
    except (TypeError, ValueError) as exc:
        raise FunnelSpecError(
            f"{what} must be a number of days, a timedelta or a string like '30D'; got {w!r}."
        ) from exc
    if ns < 0:
        raise FunnelSpecError(f"{what} must not be negative; got {w!r}.")
    return ns


def _missing(log: pd.DataFrame, cols: Sequence[str]) -> None:
    require_columns(log, cols, "pass the right name (lead=, stage=, time=, by=).")


def _as_of_ns(as_of, t: np.ndarray, tz=None, unit: int = 1) -> int | None:
    """The as-of instant in ns: a date means the end of that day (in the log's zone
    ``tz``), a timestamp that instant; ``"end"`` the latest known time of ``t`` (times
    in ``unit`` ns; ``_NAT`` is the smallest int64, so the plain maximum)."""
    if as_of is None:
        return None
    if isinstance(as_of, str) and as_of == "end":
        last = int(t.max()) if t.size else _NAT
        return _INF if last == _NAT else last * unit
    return int(parse_as_of(as_of, name="as_of", error=FunnelSpecError, tz=tz).value)


def _first_per_lead(lc: np.ndarray, cand: np.ndarray, n_leads: int) -> np.ndarray:
    """First position in ``cand`` (sorted positions) for every lead; -1 if none."""
    out = np.full(n_leads, -1, dtype=np.int64)
    if cand.size:
        leads = lc[cand]
        first = np.empty(cand.size, dtype=bool)
        first[0] = True
        np.not_equal(leads[1:], leads[:-1], out=first[1:])
        out[leads[first]] = cand[first]
    return out


def _last_per_lead(lc: np.ndarray, cand: np.ndarray, n_leads: int) -> np.ndarray:
    """Last position in ``cand`` (sorted positions) for every lead; -1 if none."""
    out = np.full(n_leads, -1, dtype=np.int64)
    if cand.size:
        leads = lc[cand]
        last = np.empty(cand.size, dtype=bool)
        last[-1] = True
        np.not_equal(leads[1:], leads[:-1], out=last[:-1])
        out[leads[last]] = cand[last]
    return out


@dataclass
class _Segment:
    name: str
    codes: np.ndarray  # per lead, -1 = missing
    categories: pd.Index
    categorical: bool


@dataclass
class _Journeys:
    """Per-lead arrays every funnel figure is reduced from (internal)."""

    ss: StageSet
    lead_index: pd.Index  # unique lead ids (factorize order)
    lead_take: np.ndarray  # (n,) position of each lead in lead_index
    reached: np.ndarray  # (m, n) bool, prefix-closed down the steps
    time: np.ndarray  # (m, n) int64 ns, _NAT where unknown or not reached
    inferred: np.ndarray  # (m, n) bool
    r: np.ndarray  # (n,) steps reached
    excluded: np.ndarray  # (n,) bool
    in_flight: np.ndarray  # (n,) bool: in flight at its last reached step
    outcome: np.ndarray  # (n,) int8: 0 open, 1 won, 2 lost
    closed_at: np.ndarray
    last_event: np.ndarray
    anchor: np.ndarray
    amount: np.ndarray | None
    segments: list[_Segment] = field(default_factory=list)
    as_of: int | None = None
    settings: dict = field(default_factory=dict)
    lost_kind: np.ndarray | None = None  # (n,) index into ss.lost of the last lost outcome, -1 else
    matured: np.ndarray | None = None  # (m, n) bool: the lead's time to move on from step k has run out
    horizon: np.ndarray | None = None  # (m,) ns per step, -1 where none applies
    tz: object = None  # the log's time zone: times are UTC ns, shown in it; None for a naive log

    @property
    def steps(self) -> tuple[str, ...]:
        return self.ss.steps

    @property
    def lead_ids(self) -> np.ndarray:
        return np.asarray(self.lead_index.take(self.lead_take), dtype=object)

    @property
    def m(self) -> int:
        return len(self.ss.steps)

    @property
    def n(self) -> int:
        return self.lead_take.size

    @property
    def censored(self) -> bool:
        return self.as_of is not None

    @property
    def included(self) -> np.ndarray:
        """Leads in the funnel: reached the first step and not excluded."""
        return (self.r >= 1) & ~self.excluded


def _parse_step_windows(step_windows, steps: tuple[str, ...], ss: StageSet) -> np.ndarray:
    """Per step k (entered from k-1), the window in ns, -1 where none."""
    m = len(steps)
    out = np.full(m, -1, dtype=np.int64)
    if step_windows is None:
        return out
    if isinstance(step_windows, Mapping):
        for key, w in step_windows.items():
            name = ss.canonical(key)
            if name is None or name not in steps or steps.index(name) == 0:
                raise FunnelSpecError(
                    f"step_windows: {key!r} is not a step after the first; keys are the step being "
                    f"entered, one of {', '.join(steps[1:])}."
                )
            out[steps.index(name)] = _duration(w, f"step_windows[{key!r}]")
        return out
    seq = list(step_windows)
    if len(seq) != m - 1:
        raise FunnelSpecError(
            f"step_windows as a list needs {m - 1} entries (one per transition "
            f"{' -> '.join(steps)}), got {len(seq)}; or pass a mapping {{step: window}}."
        )
    for k, w in enumerate(seq, start=1):
        ns = _duration(w, f"step_windows[{k - 1}]")
        out[k] = -1 if ns is None else ns
    return out


def _parse_exclude(exclude, ss: StageSet) -> list[tuple[str, int, int]]:
    """Normalise exclude= into (label, from_step, to_step) triples."""
    if exclude is None:
        return []
    steps = ss.steps
    m = len(steps)
    if isinstance(exclude, Mapping):
        items = list(exclude.items())
    else:
        labels = [exclude] if isinstance(exclude, str) else list(exclude)
        items = [(lab, (steps[0], steps[-1])) for lab in labels]
    out = []
    for lab, span in items:
        name = ss.canonical(lab)
        if name is None:
            raise FunnelSpecError(
                f"exclude: {lab!r} is not a stage or outcome of {ss.name!r} ({', '.join(ss.labels)})."
            )
        if isinstance(span, str) or not isinstance(span, Sequence) or len(span) != 2:
            raise FunnelSpecError(
                f"exclude: the span for {lab!r} must be a pair (from_step, to_step), got {span!r}."
            )
        idx = []
        for s in span:
            c = ss.canonical(s)
            if c is None or c not in steps:
                raise FunnelSpecError(f"exclude: {s!r} is not a step of {ss.name!r} ({', '.join(steps)}).")
            idx.append(steps.index(c))
        if not idx[0] < idx[1] < m:
            raise FunnelSpecError(
                f"exclude: {span[0]!r} must come before {span[1]!r} in the funnel for {lab!r}."
            )
        out.append((name, idx[0], idx[1]))
    return out


def _small_int(n: int) -> type:
    """The smallest signed integer dtype holding -n..n (int8 for stage codes, int32 for lead codes)."""
    for dt in (np.int8, np.int16, np.int32):
        if n <= np.iinfo(dt).max:
            return dt
    return np.int64


def _per_category(col: pd.Series, value_of, missing: int) -> np.ndarray:
    """``value_of(category)`` for each row of ``col`` (``missing`` for a missing value), in the
    smallest integer dtype that holds them: a look-up over the categorical codes, no int64
    temporaries (a missing code, -1, picks the last entry of the table)."""
    cat = col.array if isinstance(col.dtype, pd.CategoricalDtype) else pd.Categorical(col)
    values = [value_of(c) for c in cat.categories] + [missing]
    lut = np.array(values, dtype=_small_int(max(map(abs, values))))
    return lut[cat.codes]


def _stage_order(log: pd.DataFrame, ss: StageSet, stage: str) -> np.ndarray:
    """:func:`funnelkit.data.checked_order` in a small integer dtype (same values, same error)."""
    order = _per_category(log[stage], lambda c: ss.order(c) if ss.canonical(c) is not None else -2, -2)
    if (order == -2).any():
        checked_order(log, ss, stage=stage)  # raises the error naming the labels and rows
    return order


def _lead_codes(log: pd.DataFrame, lead: str) -> tuple[np.ndarray, pd.Index]:
    """:func:`funnelkit.data.checked_leads` (code per event in order of first appearance, the
    ids), with int32 codes and, for Arrow-backed string ids, without a hash table.

    When each lead's events are together and the leads come in increasing order (how
    ``read_events`` and ``datasets.make_events`` leave a log), the code of an event is the
    number of id changes before it, found by comparing neighbours; the ids are then taken
    at the changes and stay Arrow strings.  Any other log goes through ``pd.factorize``.
    """
    col = log[lead]
    n = len(col)
    dtype = np.int32 if n <= np.iinfo(np.int32).max else np.int64
    dt = col.dtype
    if n > 1 and isinstance(dt, pd.StringDtype) and dt.storage == "pyarrow" and not col.hasnans:
        ids = col.array
        before, after = ids[:-1], ids[1:]
        change = np.asarray(after != before, dtype=bool)
        if not (change & ~np.asarray(after > before, dtype=bool)).any():
            codes = np.empty(n, dtype=dtype)
            codes[0] = 0
            np.cumsum(change, dtype=dtype, out=codes[1:])
            first = np.empty(n, dtype=bool)
            first[0] = True
            first[1:] = change
            del change
            return codes, pd.Index(ids.take(_positions(first)))
    codes, ids = checked_leads(log, lead=lead)
    return codes.astype(dtype), ids


_UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
#: Rows per block of the helpers that go over the events by blocks (2 MiB of int64 positions).
_BLOCK = 1 << 18


def _event_times(log: pd.DataFrame, time: str) -> tuple[np.ndarray, int]:
    """The event times as the column holds them (int64 in its unit, ``_NAT`` where
    unknown) and the nanoseconds per unit: :func:`funnelkit.data.checked_times` is
    ``t * unit`` (``_NAT`` kept), without its nanosecond copy of the column.

    A time compares with an instant ``x`` in ns as ``t <= x // unit``; gathered per-lead
    times go to ns with :func:`_to_ns`.  A column whose values would not fit in ns, or
    that is not datetimes, goes through ``checked_times`` (its error, its values).
    """
    col = log[time]
    unit = _UNIT_NS.get(getattr(col.dt, "unit", None)) if pd.api.types.is_datetime64_any_dtype(col.dtype) else None
    if unit is None:
        return checked_times(log, time=time), 1
    t = col.array.asi8
    if unit > 1 and t.size:
        hi = _INF // unit
        if t.max() > hi or ((t < -hi) & (t != _NAT)).any():
            return checked_times(log, time=time), 1
    return t, unit


def _to_ns(v: np.ndarray, unit: int) -> np.ndarray:
    """Times in ``unit`` to ns, in place (``_NAT`` stays ``_NAT``)."""
    if unit != 1:
        np.multiply(v, unit, out=v, where=v != _NAT)
    return v


def _pos_dtype(n: int) -> type:
    """int32 for positions into ``n`` events when they fit (half the memory of int64)."""
    return np.int32 if n < np.iinfo(np.int32).max else np.int64


def _ends_per_lead(lc: np.ndarray, mask: np.ndarray, n_leads: int, last: bool, block: int = _BLOCK) -> np.ndarray:
    """First (``last=False``) or last position per lead among the rows where ``mask``
    (-1: none): :func:`_first_per_lead` / :func:`_last_per_lead` over
    ``np.flatnonzero(mask)``, in int32 where the positions fit.

    ``lc`` is sorted, so the rows go by blocks and the positions found are never a
    whole-log array: for the last, a lead's rows in a later block overwrite those of an
    earlier one; for the first, the blocks go backwards.
    """
    out = np.full(n_leads, -1, dtype=_pos_dtype(mask.size))
    starts = range(0, mask.size, block)
    for lo in reversed(starts) if not last else starts:
        pos = np.flatnonzero(mask[lo : lo + block])
        if pos.size:
            pos += lo
            codes = lc[pos]
            end = np.empty(pos.size, dtype=bool)
            if last:
                end[-1] = True
                np.not_equal(codes[1:], codes[:-1], out=end[:-1])
            else:
                end[0] = True
                np.not_equal(codes[1:], codes[:-1], out=end[1:])
            out[codes[end]] = pos[end]
    return out


def _positions(mask: np.ndarray, block: int = _BLOCK) -> np.ndarray:
    """``np.flatnonzero(mask)``, in int32 where the positions fit (found by blocks: no
    int64 array of them all)."""
    dt = _pos_dtype(mask.size)
    if dt is np.int64:
        return np.flatnonzero(mask)
    out = np.empty(np.count_nonzero(mask), dtype=dt)
    at = 0
    for lo in range(0, mask.size, block):
        pos = np.flatnonzero(mask[lo : lo + block])
        out[at : at + pos.size] = pos
        out[at : at + pos.size] += lo
        at += pos.size
    return out


def _known_events(lc: np.ndarray, t: np.ndarray, n_leads: int, as_of: int) -> np.ndarray:
    """:func:`funnelkit._common.known_mask` for lead codes ``0..n_leads-1`` (none blank)
    and times ``t`` in their unit, ``as_of`` in the same unit (``as_of_ns // unit``),
    without its int64 copy of the codes."""
    dated = t != _NAT
    upto = dated & (t <= as_of)
    known = np.bincount(lc[upto], minlength=n_leads) > 0
    n_dated = np.bincount(lc[dated], minlength=n_leads)
    last = int(t.max()) if t.size else _NAT
    at_end = last == _NAT or as_of >= last
    keep_lead = known | ((n_dated == 0) & at_end)
    del known, n_dated
    keep_lead = keep_lead[lc]
    keep_lead &= ~dated
    keep_lead |= upto
    return keep_lead


def _sorted_index(lc: np.ndarray, t: np.ndarray, key: np.ndarray) -> np.ndarray | None:
    """Positions that sort events by lead, time, key (a stable ``np.lexsort``); ``None``
    when already sorted (canonical logs are: checked in O(n) with boolean temporaries)."""
    if lc.size < 2:
        return None
    same = lc[1:] == lc[:-1]
    ok = bool(np.all(lc[1:] >= lc[:-1]))
    if ok:
        t0, t1 = t[:-1], t[1:]
        bad = t1 < t0
        tie = t1 == t0
        tie &= key[1:] < key[:-1]
        bad |= tie
        del tie
        bad &= same
        ok = not bool(bad.any())
    return None if ok else np.lexsort((key, t, lc))


#: Share of a step's eventual conversions the learned horizon covers.
HORIZON_QUANTILE = 0.95
#: Fewest conversions at a step to learn its own horizon (else the steps are pooled).
_MIN_LEARN = 20


def _learn_horizon(reached, rtime, outcome, closed_at, as_of_ns, ruled) -> tuple[np.ndarray, str]:
    """Per step, the time within which ``HORIZON_QUANTILE`` of its conversions happen.

    Estimated with censoring: for the leads that reached step k at a known
    time, moving on to step k+1 is the event, reaching an outcome without it
    competes, and open leads are censored at ``as_of``; the horizon is the
    ``HORIZON_QUANTILE`` point of the Aalen-Johansen cumulative incidence,
    relative to its plateau, rounded up to whole days.  Steps with fewer than
    ``_MIN_LEARN`` conversions use the steps pooled; nothing to learn from
    gives -1 everywhere (and a DataWarning from the caller).
    """
    m = reached.shape[0]
    out = np.full(m, -1, dtype=np.int64)
    per_step = []
    for k in range(m - 1):
        if ruled[k]:
            per_step.append(None)
            continue
        tk = rtime[k]
        at = reached[k] & (tk != _NAT)
        conv = at & reached[k + 1] & (rtime[k + 1] != _NAT)
        gone = at & ~reached[k + 1] & (outcome != 0) & (closed_at != _NAT)
        end = np.where(conv, rtime[k + 1], np.where(gone, closed_at, as_of_ns))
        d = np.maximum(end[at] - tk[at], 0) / _DAY_NS
        e = np.where(conv, 1, np.where(gone, 2, 0))[at]
        per_step.append((d, e))
    pooled_d = [x[0] for x in per_step if x is not None]
    pooled_e = [x[1] for x in per_step if x is not None]
    pooled = np.nan
    if pooled_d and sum(int((e == 1).sum()) for e in pooled_e) >= _MIN_LEARN:
        pooled = stats.incidence_quantile(np.concatenate(pooled_d), np.concatenate(pooled_e), HORIZON_QUANTILE)
    source = "learned"
    for k, x in enumerate(per_step):
        if x is None:
            continue
        d, e = x
        q = stats.incidence_quantile(d, e, HORIZON_QUANTILE) if (e == 1).sum() >= _MIN_LEARN else pooled
        if np.isfinite(q):
            out[k] = int(np.ceil(max(q, 1.0))) * _DAY_NS
    if (out[:-1][~ruled[:-1]] < 0).all():
        source = "none"
    return out, source


def _horizon_attr(horizon: np.ndarray, steps) -> dict | None:
    """The horizon per step in days, for ``attrs``."""
    if horizon is None or (horizon < 0).all():
        return None
    return {s: (float(h) / _DAY_NS if h >= 0 else None) for s, h in zip(steps[:-1], horizon[:-1])}


def _journeys(
    log: pd.DataFrame,
    ss: StageSet,
    *,
    by: list[str],
    mode: str = "ordered",
    window=None,
    step_windows=None,
    exclude=None,
    infer_skipped: bool | None = None,
    as_of="end",
    stale_after="horizon",
    value: str | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> _Journeys:
    if not isinstance(log, pd.DataFrame):
        raise TypeError(f"expected an event log DataFrame, got {type(log).__name__}.")
    if mode not in MODES:
        raise FunnelSpecError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}.")
    if infer_skipped is None:
        infer_skipped = mode != "strict" and ss.infers_skipped
    if mode == "strict" and infer_skipped:
        raise FunnelSpecError(
            "mode='strict' allows no other stage between two steps, so skipped stages cannot be "
            "inferred; leave infer_skipped unset (or False), or use mode='ordered'."
        )
    _missing(log, [lead, stage, time, *by])
    steps = ss.steps
    m = len(steps)
    w = _duration(window, "window")
    sw = _parse_step_windows(step_windows, steps, ss)
    excl = _parse_exclude(exclude, ss)
    learn = False
    stale_from_set = False
    per_step = None
    if isinstance(stale_after, Mapping):
        # a horizon per step, keyed by the step a lead moves on from; the rest learned
        per_step = np.full(m, -1, dtype=np.int64)
        for key, val in stale_after.items():
            name = ss.canonical(key)
            if name is None or name not in steps[:-1]:
                raise FunnelSpecError(
                    f"stale_after: {key!r} is not a step a lead moves on from; keys are "
                    f"{', '.join(steps[:-1])}."
                )
            ns = _duration(val, f"stale_after[{key!r}]")
            per_step[steps.index(name)] = -1 if ns is None else ns
        stale, learn = None, bool((per_step[:-1] < 0).any())
    elif isinstance(stale_after, str) and stale_after in ("horizon", "learn"):
        if stale_after == "horizon" and ss.horizon_days is not None:
            stale = int(round(float(ss.horizon_days) * _DAY_NS))
            stale_from_set = True
        else:
            stale, learn = None, True
    else:
        stale = _duration(stale_after, "stale_after")
    if value is None:
        value = ss.value
    if value not in ("last", "sum"):
        raise FunnelSpecError(f"value must be 'last' (deal value) or 'sum' (over events); got {value!r}.")

    # events as small arrays: stage order (int8), times in the column's unit, int32 lead codes
    order = _stage_order(log, ss, stage)
    t, unit = _event_times(log, time)
    tz = time_zone(log[time])
    lc, lead_index = _lead_codes(log, lead)
    n_all = len(lead_index)
    lost_many = len(ss.lost) > 1
    labels = None
    if excl or lost_many:  # index into ss.labels of each event's stage (-1 unknown)
        names = list(ss.labels)
        labels = _per_category(
            log[stage], lambda c: names.index(ss.canonical(c)) if ss.canonical(c) is not None else -1, -1
        )
    seg_raw = []
    for col in by:
        ser = log[col]
        if isinstance(ser.dtype, pd.CategoricalDtype):
            seg_raw.append((col, ser.cat.codes.to_numpy(), ser.cat.categories, True))
        else:
            codes, cats = pd.factorize(ser, sort=True)
            seg_raw.append((col, codes, pd.Index(cats), False))
    amt = None
    if amount and amount in log.columns:
        amounts = log[amount]
        # a float column as it is (to_numeric would copy it), anything else converted
        if amounts.dtype == np.float64:
            amt = amounts.to_numpy()
        else:
            amt = pd.to_numeric(amounts, errors="coerce").to_numpy(dtype=float)

    as_of_ns = _as_of_ns(as_of, t, tz, unit)
    keep = None
    if as_of_ns is not None and not (isinstance(as_of, str) and as_of == "end"):
        # the one as-of rule (data.known_at): nothing from after as_of, not even
        # the existence of a lead whose only events then are undated
        known = _known_events(lc, t, n_all, as_of_ns // unit)
        if not known.all():
            keep = known
        del known
    # lost sorts after every step at one time
    key_dt = order.dtype if m - 1 < np.iinfo(order.dtype).max else np.int64
    sort_key = order.astype(key_dt)
    sort_key[order == LOST_ORDER] = np.iinfo(key_dt).max

    if keep is not None:
        lc, t, order, sort_key = lc[keep], t[keep], order[keep], sort_key[keep]
    # sorted already (canonical logs are)?  check in O(n); sort only when needed
    idx = _sorted_index(lc, t, sort_key)
    del sort_key
    if idx is not None:
        lc, t, order = lc[idx], t[idx], order[idx]
    oo = order
    n_ev = lc.size
    pdt = _pos_dtype(n_ev)

    def take(a: np.ndarray) -> np.ndarray:
        if keep is not None:
            a = a[keep]
        return a if idx is None else a[idx]

    # compact lead codes, in sorted order (the codes as they are when every lead is kept)
    start = np.ones(n_ev, dtype=bool)
    if n_ev > 1:
        np.not_equal(lc[1:], lc[:-1], out=start[1:])
    first_pos = _positions(start)
    n = first_pos.size
    lead_take = lc[first_pos]
    if n != n_all:
        np.cumsum(start, dtype=lc.dtype, out=lc)
        lc -= 1
    del start

    def ns_at(pos: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Times in ns at positions ``pos`` (-1: ``_NAT``), into ``out`` if given."""
        if out is None:
            out = np.empty(pos.size, dtype=np.int64)
        none = pos < 0
        if n_ev:
            np.take(t, pos, out=out, mode="clip")  # -1 clips to 0, then is _NAT
        out[none] = _NAT
        return _to_ns(out, unit)

    # per-lead arrays that only need the events: the amount, the segments, the last event
    segments = []
    for col, codes, cats, is_cat in seg_raw:
        segments.append(_Segment(col, take(codes)[first_pos].astype(np.int64), cats, is_cat))
    del seg_raw
    amount_lead = None
    if amt is not None:
        a = take(amt)
        has = ~np.isnan(a)
        if value == "sum":
            tot = np.bincount(lc[has], weights=a[has], minlength=n)
            cnt = np.bincount(lc[has], minlength=n)
            amount_lead = np.where(cnt > 0, tot, np.nan)
            del tot, cnt
        else:
            lp = _ends_per_lead(lc, has, n, last=True)
            none = lp < 0
            amount_lead = a.take(lp, mode="clip") if n_ev else np.empty(n)  # -1 clips to 0, then is NaN
            amount_lead[none] = np.nan
            del lp, none
        del a, has
    del amt
    last_pos = np.empty(n, dtype=pdt)
    if n:
        np.subtract(first_pos[1:], 1, out=last_pos[:-1])
        last_pos[-1] = n_ev - 1
    last_event = ns_at(last_pos)
    del last_pos

    # outcomes: the lead's last outcome event
    is_oc = oo == LOST_ORDER
    if ss.won is not None:
        is_oc |= oo == m - 1
    last_oc = _ends_per_lead(lc, is_oc, n, last=True)
    del is_oc
    has_oc = last_oc >= 0
    outcome = np.zeros(n, dtype=np.int8)
    oc_order = oo[last_oc[has_oc]]
    outcome[has_oc] = np.where(oc_order == LOST_ORDER, 2, 1)
    del oc_order
    closed_at = ns_at(last_oc)
    lost_kind = np.full(n, -1, dtype=_small_int(len(ss.labels)))
    if lost_many and has_oc.any():
        lab = take(labels)
        lost_kind[has_oc] = np.where(outcome[has_oc] == 2, lab[last_oc[has_oc]] - len(ss.steps), -1)
        del lab
    elif len(ss.lost) == 1:
        lost_kind[outcome == 2] = 0
    del last_oc, has_oc

    # the steps reached: a row of ``reached``, ``time`` and ``inferred`` per step, filled as
    # found (positions only for the step before and the steps an exclusion needs)
    reached = np.zeros((m, n), dtype=bool)
    rtime = np.full((m, n), _NAT, dtype=np.int64)
    inferred = np.zeros((m, n), dtype=bool)
    keep_rows = {k for _, a_, b_ in excl for k in (a_, b_)}
    pos_rows: dict[int, np.ndarray] = {}

    def within(pos: np.ndarray, got: np.ndarray, ref_t: np.ndarray, limit: int) -> np.ndarray:
        """got & (time at pos - ref_t <= limit), unknown times never late."""
        tk = ns_at(pos)
        late = got & (ref_t != _NAT) & (tk != _NAT) & (tk - ref_t > limit)
        return got & ~late

    def record(k: int, pos: np.ndarray) -> np.ndarray:
        got = pos >= 0
        reached[k] = got
        ns_at(pos, out=rtime[k])
        if k in keep_rows:
            pos_rows[k] = pos
        return got

    anchor = None
    if mode == "ordered":
        prev = None
        for k in range(m):
            if k == 0:
                pos = _ends_per_lead(lc, oo >= 0 if infer_skipped else oo == 0, n, last=False)
            else:
                cand = _positions(oo >= k) if infer_skipped else _positions(oo == k)
                pos = np.full(n, -1, dtype=pdt)
                # the first candidate at or after the previous step, if the lead's (by blocks of leads)
                for lo in range(0, n if cand.size else 0, _BLOCK):
                    pv = prev[lo : lo + _BLOCK]
                    have = np.flatnonzero(pv >= 0)
                    j = np.searchsorted(cand, pv[have], side="left")
                    inside = j < cand.size
                    c = cand[np.minimum(j, cand.size - 1)]
                    have += lo
                    inside &= lc[c] == have
                    pos[have[inside]] = c[inside]
                del cand
                got = pos >= 0
                if w is not None:
                    got = within(pos, got, anchor, w)
                if sw[k] >= 0:
                    got = within(pos, got, ns_at(prev), int(sw[k]))
                pos[~got] = -1
            got = record(k, pos)
            inferred[k] = got & (oo[np.maximum(pos, 0)] > k)
            if k == 0:
                anchor = rtime[0]  # the time of the first step (a view: rtime is final)
            prev = pos
        del prev, pos
    elif mode == "strict":
        # next position holding a different stage (or another lead): runs of equal stage
        run_start = np.ones(n_ev, dtype=bool)
        if n_ev > 1:
            run_start[1:] = (lc[1:] != lc[:-1]) | (oo[1:] != oo[:-1])
        starts = _positions(run_start)
        del run_start
        next_start = np.r_[starts[1:], n_ev].astype(starts.dtype)
        prev = None
        for k in range(m):
            if k == 0:
                pos = _ends_per_lead(lc, oo == 0, n, last=False)
            else:
                have = prev >= 0
                q = np.full(n, n_ev, dtype=np.int64)
                if n_ev:
                    q[have] = next_start[np.searchsorted(starts, prev[have], side="right") - 1]
                qq = np.minimum(q, max(n_ev - 1, 0))
                got = have & (q < n_ev)
                got &= (lc[qq] == np.arange(n, dtype=lc.dtype)) & (oo[qq] == k)
                del qq
                pos = np.where(got, q, -1).astype(pdt)
                del q
                if w is not None:
                    got = within(pos, got, anchor, w)
                if sw[k] >= 0:
                    got = within(pos, got, ns_at(prev), int(sw[k]))
                pos[~got] = -1
            record(k, pos)
            if k == 0:
                anchor = rtime[0]  # the time of the first step (a view: rtime is final)
            prev = pos
        del starts, next_start, prev, pos
    else:  # any order
        anchor = ns_at(_ends_per_lead(lc, oo >= 0, n, last=False))
        run = np.full(n, -1, dtype=pdt)  # latest position among steps 0..k
        ok_prev = np.ones(n, dtype=bool)
        prev = None
        for k in range(m):
            has_k = _ends_per_lead(lc, oo == k, n, last=False)
            if infer_skipped:
                pos = _ends_per_lead(lc, oo >= k, n, last=False)
                got = pos >= 0
                inferred[k] = got & (has_k < 0)
            else:
                got = ok_prev & (has_k >= 0)
                run = np.where(got, np.maximum(run, has_k), -1).astype(pdt)
                pos = run
            del has_k
            got &= ok_prev
            if w is not None:
                got = within(pos, got, anchor, w)
            if k > 0 and sw[k] >= 0:
                got = within(pos, got, ns_at(prev), int(sw[k]))
            pos = np.where(got, pos, -1).astype(pdt)
            record(k, pos)
            ok_prev = got
            prev = pos
        del run, ok_prev, prev, pos
        inferred &= reached

    # exclusion: an excluded label strictly between two reached steps
    excluded = np.zeros(n, dtype=bool)
    if excl:
        lab = take(labels)
        names = list(ss.labels)
        for name, a_, b_ in excl:
            qpos = np.flatnonzero(lab == names.index(name))
            both = reached[a_] & reached[b_]
            lo_, hi_ = pos_rows[a_][both], pos_rows[b_][both]
            between = np.searchsorted(qpos, hi_, side="left") - np.searchsorted(qpos, lo_, side="right")
            hit = np.zeros(n, dtype=bool)
            hit[both] = between > 0
            excluded |= hit
        del lab
    # the events are no longer needed: free them (the helpers above are done with them)
    pos_rows = labels = lc = t = oo = order = first_pos = keep = idx = None
    r = reached.sum(axis=0)

    # maturity: per lead and step k, the deadline to move on to step k+1
    # (window from the anchor, step window, else the horizon); a lead is
    # *matured* at k once its deadline has passed (or, deadline unknown, once
    # it is decided there), and only matured leads enter step k's rate.
    # The deadlines go step by step: one row at a time.
    matured = reached.copy()
    in_flight = np.zeros(n, dtype=bool)
    horizon = np.full(m, -1, dtype=np.int64)
    horizon_source = "none"
    if as_of_ns is not None and n:
        ruled = np.zeros(m, dtype=bool)
        if w is not None:
            ruled[:] = True
        ruled[:-1] |= sw[1:] >= 0
        if stale is not None:
            horizon[:] = stale
            horizon_source = "given" if not stale_from_set else "stage set"
        elif learn and not ruled[:-1].all():
            horizon[:], horizon_source = _learn_horizon(
                reached, rtime, outcome, closed_at, as_of_ns, ruled
            )
            if horizon_source == "none" and bool(((r >= 1) & (r < m) & (outcome == 0)).any()):
                warnings.warn(
                    "no step has conversions to learn a horizon from, so open leads stay in flight "
                    "and each rate is over decided leads only (censored-only); pass stale_after= "
                    "(days) or set horizon_days on the stage set.",
                    DataWarning,
                    stacklevel=3,
                )
        if per_step is not None:
            horizon = np.where(per_step >= 0, per_step, horizon)
            horizon_source = "given" if horizon_source == "none" else "given and learned"
        horizon[ruled] = -1
        horizon[-1] = -1
        open_oc = outcome == 0
        by_window = None
        if w is not None:
            by_window = np.full(n, _INF, dtype=np.int64)
            by_window = np.where(anchor != _NAT, np.minimum(by_window, anchor + w), by_window)
        k_last = np.clip(r - 1, 0, m - 1)
        matured_last = np.zeros(n, dtype=bool)
        deadline = np.empty(n, dtype=np.int64)
        for k in range(m - 1):
            if by_window is not None:
                deadline[:] = by_window
            else:
                deadline.fill(_INF)
            tk = rtime[k]
            step = int(sw[k + 1]) if sw[k + 1] >= 0 else int(horizon[k]) if horizon[k] >= 0 else None
            if step is not None:  # deadline = min(deadline, tk + step) where tk is known, in place
                by_step = tk + step
                np.minimum(deadline, by_step, out=by_step)
                np.copyto(deadline, by_step, where=tk != _NAT)
                del by_step
            decided = reached[k + 1] | ~open_oc
            mk = np.where(deadline == _INF, decided, deadline <= as_of_ns)
            del decided
            mk &= reached[k]
            matured[k] = mk
            matured_last |= mk & (k_last == k)
            del mk
        matured_last |= matured[m - 1] & (k_last == m - 1)
        del by_window, k_last, deadline
        in_flight = (r >= 1) & (r < m) & open_oc & ~matured_last
        del open_oc, matured_last

    return _Journeys(
        ss=ss,
        lead_index=lead_index,
        lead_take=lead_take,
        reached=reached,
        time=rtime,
        inferred=inferred & reached,
        r=r,
        excluded=excluded,
        in_flight=in_flight,
        outcome=outcome,
        closed_at=closed_at,
        last_event=last_event,
        anchor=anchor if anchor is not None else np.zeros(0, dtype=np.int64),
        amount=amount_lead,
        segments=segments,
        as_of=as_of_ns,
        tz=tz,
        lost_kind=lost_kind,
        matured=matured,
        horizon=horizon,
        settings={
            "mode": mode,
            "window": window,
            "step_windows": step_windows,
            "exclude": exclude,
            "infer_skipped": infer_skipped,
            "as_of": None if as_of_ns is None or as_of_ns == _INF else pd.Timestamp(as_of_ns),
            "stale_after": None if stale is None else pd.Timedelta(stale),
            "horizon": _horizon_attr(horizon, steps),
            "horizon_source": horizon_source,
            "value": value,
        },
    )


def lead_progress(
    log: pd.DataFrame,
    *,
    stages: StageSet | str | Sequence[str] | None = None,
    by: str | Sequence[str] | None = None,
    mode: str = "ordered",
    window: Duration | None = None,
    step_windows: Mapping[str, Duration] | Sequence[Duration | None] | None = None,
    exclude: str | Sequence[str] | Mapping[str, tuple[str, str]] | None = None,
    infer_skipped: bool | None = None,
    as_of: str | pd.Timestamp | None = "end",
    stale_after: Duration | str | None = "horizon",
    value: str | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Per lead: which funnel steps it reached, and when.

    The building block of every funnel figure, and the bridge to the pipeline
    view: one row per lead with its segments, so any funnel cell can be
    drilled into.  The options are those of :func:`conversion` (see the
    module docstring for the step semantics and the in-flight rule).

    Returns
    -------
    DataFrame
        One row per lead (in log order): ``lead_id``, the ``by`` columns,
        ``amount`` (the lead's latest known amount), ``steps_reached`` (how
        many steps, 0 .. n), ``outcome`` (``"won"``, ``"lost"`` or ``"open"``:
        the lead's last outcome event), ``closed_at``, ``last_event_at``,
        ``in_flight`` (True when the lead has neither converted to its next
        step nor dropped as of ``as_of``), ``excluded`` (removed by
        ``exclude=``), then for every step ``s`` the columns ``reached_<s>``
        (bool), ``time_<s>`` (when, ``NaT`` if not reached or unknown) and
        ``inferred_<s>`` (counted there because it reached a later step).

    Examples
    --------
    >>> import funnelkit as fk
    >>> prog = fk.funnel.lead_progress(fk.datasets.load_demo(n_leads=300))
    >>> int(prog["steps_reached"].ge(1).sum())
    300
    >>> prog.filter(like="reached_").sum().tolist()[:3]
    [300, 173, 105]
    """
    ss = resolve_stages(log, stages)
    by = as_list(by)
    j = _journeys(
        log, ss, by=by, mode=mode, window=window, step_windows=step_windows, exclude=exclude,
        infer_skipped=infer_skipped, as_of=as_of, stale_after=stale_after, value=value,
        lead=lead, stage=stage, time=time, amount=amount,
    )
    return _progress_frame(j, lead)


def _segment_values(seg: _Segment, codes: np.ndarray):
    if seg.categorical:
        return pd.Categorical.from_codes(codes, categories=seg.categories)
    vals = np.asarray(seg.categories, dtype=object)
    out = np.empty(codes.size, dtype=object)
    ok = codes >= 0
    out[ok] = vals[codes[ok]]
    out[~ok] = None
    return pd.array(out) if out.size and all(isinstance(v, str) for v in out[ok]) and ok.all() else out


def _progress_frame(j: _Journeys, lead: str) -> pd.DataFrame:
    cols: dict[str, object] = {lead: j.lead_ids}
    for seg in j.segments:
        cols[seg.name] = _segment_values(seg, seg.codes)
    if j.amount is not None:
        cols[AMOUNT] = j.amount
    cols["steps_reached"] = j.r
    cols["outcome"] = pd.Categorical.from_codes(j.outcome.astype(np.int64), categories=["open", "won", "lost"])
    cols["closed_at"] = to_datetimes(j.closed_at, j.tz)
    cols["last_event_at"] = to_datetimes(j.last_event, j.tz)
    cols["in_flight"] = j.in_flight
    cols["excluded"] = j.excluded
    for k, s in enumerate(j.steps):
        cols[f"reached_{s}"] = j.reached[k]
        cols[f"time_{s}"] = to_datetimes(j.time[k], j.tz)
        cols[f"inferred_{s}"] = j.inferred[k]
    out = pd.DataFrame(cols)
    out.attrs["funnel"] = dict(j.settings, stages=j.ss.name)
    return out


# ---------------------------------------------------------------------------
# aggregation
# ---------------------------------------------------------------------------
@dataclass
class _Key:
    """An extra per-lead grouping key (e.g. a cohort) with labels."""

    name: str
    codes: np.ndarray  # -1 = missing
    labels: pd.Index


def _groups(j: _Journeys, extra: Sequence[_Key] = ()) -> tuple[np.ndarray, pd.DataFrame]:
    """Group code per lead and the group values table (sorted, missing last)."""
    parts = [(s.codes, len(s.categories)) for s in j.segments] + [(k.codes, len(k.labels)) for k in extra]
    n = j.n
    if not parts:
        return np.zeros(n, dtype=np.int64), pd.DataFrame(index=pd.RangeIndex(1))
    g = np.zeros(n, dtype=np.int64)
    strides = []
    stride = 1
    for codes, size in reversed(parts):
        strides.append(stride)
        g += np.where(codes < 0, size, codes) * stride
        stride *= size + 1
    strides = strides[::-1]
    if stride <= 4 * n + 1_000_000:
        used = np.bincount(g, minlength=stride) > 0
        uniq = np.flatnonzero(used)
        remap = np.cumsum(used) - 1
        g = remap[g]
    else:
        uniq, g = np.unique(g, return_inverse=True)
    vals = {}
    rest = uniq.copy()
    specs = [(s.name, s) for s in j.segments] + [(k.name, k) for k in extra]
    for (name, spec), (_, size), st in zip(specs, parts, strides):
        code = rest // st
        rest = rest % st
        code = np.where(code == size, -1, code)
        if isinstance(spec, _Segment):
            vals[name] = _segment_values(spec, code)
        else:
            lab = spec.labels
            if len(lab) == 0:  # every key missing (e.g. no cohort has a known time)
                vals[name] = pd.Index([None] * len(code), dtype=lab.dtype)
                continue
            v = lab.take(np.maximum(code, 0))
            vals[name] = v.where(code >= 0) if len(v) else v
    return g, pd.DataFrame(vals)


@dataclass
class _Counts:
    """Per group and step counts (arrays of shape (G, m))."""

    entered: np.ndarray
    converted: np.ndarray
    in_flight: np.ndarray
    inferred: np.ndarray
    amount_entered: np.ndarray
    excluded: np.ndarray  # (G,)
    matured: np.ndarray  # leads whose time to move on has run out
    matured_converted: np.ndarray  # of those, the ones that moved on

    @property
    def dropped(self) -> np.ndarray:
        return self.entered - self.converted - self.in_flight


def _counts(j: _Journeys, g: np.ndarray, n_groups: int) -> _Counts:
    m = j.m
    inc = j.included
    # key = group * (m + 1) + steps reached, per included lead (in place: one array)
    key = g[inc]
    key *= m + 1
    key += j.r[inc]
    size = n_groups * (m + 1)

    def per_key(mask=None):  # included leads per (group, steps reached), among mask
        return np.bincount(key if mask is None else key[mask[inc]], minlength=size).reshape(n_groups, m + 1)

    hist = per_key()
    # entered step k = reached more than k steps
    entered = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]
    converted = np.zeros_like(entered)
    converted[:, :-1] = entered[:, 1:]
    in_flight = per_key(j.in_flight)[:, 1:].astype(np.int64)
    in_flight[:, -1] = 0
    inferred = np.vstack([per_key(j.inferred[k]).sum(axis=1) for k in range(m)]).T
    mat = j.matured if j.matured is not None else j.reached
    matured = np.zeros((n_groups, m), dtype=np.int64)
    matured_converted = np.zeros((n_groups, m), dtype=np.int64)
    for k in range(m):
        mk = mat[k] & inc
        matured[:, k] = np.bincount(g[mk], minlength=n_groups)
        if k < m - 1:
            matured_converted[:, k] = np.bincount(g[mk & j.reached[k + 1]], minlength=n_groups)
    if j.amount is not None:
        a = np.nan_to_num(j.amount[inc], copy=False, nan=0.0)
        ah = np.bincount(key, weights=a, minlength=size).reshape(n_groups, m + 1)
        del a
        amount_entered = np.cumsum(ah[:, ::-1], axis=1)[:, ::-1][:, 1:]
        # leads entered, none with an amount: the sum is unknown, not 0 (as in outcomes)
        valued = per_key(~np.isnan(j.amount))
        valued_entered = np.cumsum(valued[:, ::-1], axis=1)[:, ::-1][:, 1:]
        amount_entered = np.where(none_known(entered, valued_entered), np.nan, amount_entered)
    else:
        amount_entered = np.full((n_groups, m), np.nan)
    excl = (j.r >= 1) & j.excluded
    excluded = np.bincount(g[excl], minlength=n_groups)
    return _Counts(
        entered=entered.astype(np.int64),
        converted=converted.astype(np.int64),
        in_flight=in_flight,
        inferred=np.rint(inferred).astype(np.int64),
        amount_entered=amount_entered,
        excluded=excluded.astype(np.int64),
        matured=matured,
        matured_converted=matured_converted,
    )


def _funnel_table(
    j: _Journeys, gvals: pd.DataFrame, c: _Counts, *, level: float, method: str, exclude_col: bool
) -> pd.DataFrame:
    steps = list(j.steps)
    m = len(steps)
    n_groups = c.entered.shape[0]
    last = np.zeros((n_groups, m), dtype=bool)
    last[:, -1] = True
    matured, mconv = c.matured, c.matured_converted
    with np.errstate(invalid="ignore", divide="ignore"):
        step_rate = np.where(last | (matured == 0), np.nan, mconv / np.where(matured > 0, matured, 1))
    lo, hi = stats.proportion_ci(np.where(last, 0, mconv), np.where(last, 0, matured), level=level, method=method)
    overall, olo, ohi = _overall_rates(c, level=level, method=method)
    amount_converted = np.full((n_groups, m), np.nan)
    amount_converted[:, :-1] = c.amount_entered[:, 1:]

    def flat(a):
        return np.asarray(a).reshape(-1)

    def masked_int(a):
        return pd.arrays.IntegerArray(np.where(last, 0, a).reshape(-1).astype(np.int64), flat(last))

    res = pd.DataFrame(
        {
            "step": pd.Categorical(np.tile(np.array(steps, dtype=object), n_groups), categories=steps, ordered=True),
            "step_index": np.tile(np.arange(m), n_groups),
            "entered": flat(c.entered),
            "converted": masked_int(c.converted),
            "dropped": masked_int(c.dropped),
            "in_flight": masked_int(c.in_flight),
            "matured": masked_int(matured),
            "matured_converted": masked_int(mconv),
            "step_conversion": flat(step_rate),
            "step_ci_low": np.where(np.isnan(flat(step_rate)), np.nan, flat(lo)),
            "step_ci_high": np.where(np.isnan(flat(step_rate)), np.nan, flat(hi)),
            "overall_conversion": flat(overall),
            "overall_ci_low": flat(olo),
            "overall_ci_high": flat(ohi),
            "inferred": flat(c.inferred),
            "amount_entered": flat(c.amount_entered),
            "amount_converted": flat(amount_converted),
        }
    )
    if exclude_col:
        res["excluded"] = np.repeat(c.excluded, m)
    if len(gvals.columns):
        seg = gvals.loc[gvals.index.repeat(m)].reset_index(drop=True)
        res = pd.concat([seg, res], axis=1)
    res.attrs["level"] = level
    res.attrs["funnel"] = dict(j.settings, stages=j.ss.name, method=method)
    res.attrs["horizon"] = j.settings.get("horizon")
    return res


def _overall_rates(c, *, level: float, method: str = "wilson"):
    """Each step's overall conversion from the first step, with its interval, per group.

    A group whose leads have all matured: the plain proportion ``entered / top``
    (``method`` interval).  One with young leads: the life table, the product
    of the step conversions over matured leads (Greenwood interval).  Arrays of
    shape (groups, steps).
    """
    matured, mconv = c.matured, c.matured_converted
    top = c.entered[:, :1]
    with np.errstate(invalid="ignore", divide="ignore"):
        overall = np.where(top > 0, c.entered / np.where(top > 0, top, 1), np.nan)
    olo, ohi = stats.proportion_ci(c.entered, np.broadcast_to(top, c.entered.shape), level=level, method=method)
    young = (matured[:, :-1] < c.entered[:, :-1]).any(axis=1)
    for gi in np.flatnonzero(young):
        # life table: the product of the step conversions over matured leads
        est, l2, h2 = stats.chained_proportion_ci(mconv[gi, :-1], matured[gi, :-1], level=level)
        overall[gi, 1:], olo[gi, 1:], ohi[gi, 1:] = est, l2, h2
        olo[gi, 0], ohi[gi, 0] = stats.proportion_ci(top[gi, 0], top[gi, 0], level=level, method=method)
    return overall, olo, ohi


def conversion(
    log: pd.DataFrame,
    *,
    stages: StageSet | str | Sequence[str] | None = None,
    by: str | Sequence[str] | None = None,
    mode: str = "ordered",
    window: Duration | None = None,
    step_windows: Mapping[str, Duration] | Sequence[Duration | None] | None = None,
    exclude: str | Sequence[str] | Mapping[str, tuple[str, str]] | None = None,
    infer_skipped: bool | None = None,
    as_of: str | pd.Timestamp | None = "end",
    stale_after: Duration | str | None = "horizon",
    value: str | None = None,
    level: float = 0.95,
    method: str = "wilson",
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Funnel conversion per step (and per segment), with intervals.

    See the module docstring (``help(funnelkit.funnel)``) for the exact step
    semantics, the re-entry rule and the in-flight (maturity) rule.

    Parameters
    ----------
    log : DataFrame
        A canonical event log (see :mod:`funnelkit.data`).
    stages : StageSet, preset name, YAML path or list, optional
        Defaults to the stage set the log was loaded with.
    by : str or list of str, optional
        Segment column(s) to break the funnel down by.
    mode : {"ordered", "strict", "any"}
        Step semantics.
    window : number of days, timedelta or string, optional
        Conversion window from the lead's first step.
    step_windows : mapping or list, optional
        Per-step windows: ``{"proposal": "14D"}`` means proposal must be
        reached within 14 days of the meeting; or a list with one entry (or
        ``None``) per transition.
    exclude : str, list or mapping, optional
        Stage(s) whose occurrence between two steps removes the lead:
        ``"lost"`` (between the first and last step) or
        ``{"lost": ("meeting", "won")}``.
    infer_skipped : bool, optional
        Count a lead at a step it skipped when it reached a later one
        (default True; False in ``"strict"`` mode, where it cannot be True).
    as_of : "end", date or None
        The time the funnel is computed at (default: the log's last event).
        Later events are ignored, and leads still in flight at that time are
        censored.  ``None``: no censoring.
    stale_after : "horizon", "learn", number of days, timedelta or None
        Without a window, the *horizon*: how long a lead may take to move on
        from a step.  An open lead that has not moved on within it counts as
        dropped, and only leads that entered a step at least that long ago
        (*matured* leads) enter its rate.  ``"horizon"`` uses the stage
        set's ``horizon_days``, or learns it from the log when the set has
        none (``"learn"`` always learns): per step, the time within which
        95% of the eventual conversions happen (Aalen-Johansen, censored).
        The horizon used is in ``attrs["horizon"]`` (days per step).
        ``None``: no horizon; open leads stay in flight.  A mapping
        ``{step: days}`` gives a horizon per step (the step a lead moves on
        from); steps it leaves out are learned.
    value : {"last", "sum"}, optional
        A lead's amount: the last known (deal value) or the sum over its
        events (purchases).  Default: the stage set's ``value``.
    level : float
        Confidence level of the intervals.
    method : {"wilson", "jeffreys"}
        Interval for the rates.
    lead, stage, time, amount : str
        Column names.

    Returns
    -------
    DataFrame
        One row per (segment, step), columns: the ``by`` columns, ``step``
        (stage name), ``step_index`` (0-based), ``entered`` (leads that reached
        the step), ``converted`` (reached the next step), ``dropped``,
        ``in_flight`` (neither yet), ``matured`` (``converted + dropped``),
        ``step_conversion`` (``converted / matured``) with ``step_ci_low`` /
        ``step_ci_high``, ``overall_conversion`` (from the first step) with
        ``overall_ci_low`` / ``overall_ci_high``, ``inferred`` (leads counted at
        the step because they reached a later one), ``amount_entered`` and
        ``amount_converted`` (sum of the leads' known amounts; NaN, not 0,
        where none of them has one), and ``excluded``
        (leads removed by ``exclude=``, when given).  The last step has the
        conversion columns missing.  A lead with no segment value is shown
        with a missing value, never dropped.

    Raises
    ------
    InvalidEventLogError
        Missing columns, unknown stage labels, non-datetime times.
    FunnelSpecError
        An unknown mode, step or a malformed window.

    Examples
    --------
    >>> import funnelkit as fk
    >>> f = fk.funnel.conversion(fk.datasets.load_demo())
    >>> f[["step", "entered", "converted", "in_flight"]].head(3).values.tolist()
    [['qualification', 6000, 3240, 198], ['meeting', 3240, 1941, 145], ['proposal', 1941, 980, 129]]
    >>> classic = fk.funnel.conversion(fk.datasets.load_demo(), as_of=None)
    >>> round(float(classic.loc[0, "step_conversion"]), 3)
    0.54
    """
    by = as_list(by)
    opts = dict(mode=mode, window=window, step_windows=step_windows, exclude=exclude,
                infer_skipped=infer_skipped, as_of=as_of, stale_after=stale_after, level=level,
                method=method, value=value, lead=lead, stage=stage, time=time, amount=amount)
    sss = _segment_sets(stages)
    if sss is not None:
        if sss.column not in by:  # across segments with different sets: the shared milestones
            res = conversion(_milestone_log(log, sss, lead, stage, time), stages=sss.milestones(), by=by, **opts)
            res.attrs["note"] = _milestone_note(sss)
            return res
        parts = []
        for ss, mask in _set_groups(log, sss, lead, time):
            part = conversion(log.loc[mask], stages=ss, by=by, **opts)
            part.insert(len(by), "stage_set", ss.name)
            part["step"] = part["step"].astype(str)
            parts.append(part)
        res = pd.concat(parts, ignore_index=True)
        res.attrs = dict(parts[0].attrs, stage_sets=sss)
        return res
    ss = resolve_stages(log, stages)
    j = _journeys(
        log, ss, by=by, mode=mode, window=window, step_windows=step_windows, exclude=exclude,
        infer_skipped=infer_skipped, as_of=as_of, stale_after=stale_after, value=value,
        lead=lead, stage=stage, time=time, amount=amount,
    )
    g, gvals = _groups(j)
    c = _counts(j, g, max(len(gvals), 1))
    return _funnel_table(j, gvals, c, level=level, method=method, exclude_col=exclude is not None)


def outcomes(
    log: pd.DataFrame,
    *,
    stages: StageSet | str | Sequence[str] | None = None,
    by: str | Sequence[str] | None = None,
    as_of: str | pd.Timestamp | None = "end",
    stale_after: Duration | str | None = "horizon",
    value: str | None = None,
    level: float = 0.95,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Won, lost, stalled and open leads and the win rate, per segment.

    Every lead known at ``as_of`` is counted once, by its last outcome:
    *won*, *lost* (each ``lost`` outcome of the stage set also gets its own
    column when there are several), *stalled* (no outcome, and it has not
    moved on within the horizon of the step it sits at: the same rule that
    makes a lead *dropped* in :func:`conversion`) or *open* (no outcome yet,
    still within its time: the funnel's *in flight*).  So a stage set with
    no lost outcome does not make every unconverted lead a future win.

    A stage set with no ``won`` outcome (a marketing funnel, or a web
    funnel read with :func:`~funnelkit.from_stage_tables`) has no wins:
    ``won`` is 0, the win rates are NaN (not 0%), and a lead at its last
    stage, the goal, counts under ``reached_goal``, not as open.  The
    share that gets there is :func:`conversion`'s ``overall_conversion``
    at the last step.

    ``win_rate`` is the funnel's estimate of a lead's chance to be won: the
    product of the step conversions over matured leads (exactly
    :func:`conversion`'s ``overall_conversion`` at the won step, with its
    interval), so young leads neither inflate nor deflate it.
    ``decided_win_rate`` is the plain ``won / (won + lost + stalled)`` over
    decided leads of every age, for reference (a CRM's "closed win rate" is
    ``won / (won + lost)``).

    Parameters
    ----------
    as_of, stale_after, value
        As in :func:`conversion`; ``as_of=None`` never calls a lead stalled.

    Returns
    -------
    DataFrame
        The ``by`` columns, ``leads``, ``won``, ``lost``, ``lost_<outcome>``
        (with several lost outcomes), ``stalled``, ``open``,
        ``reached_goal`` (only for a stage set without a won outcome), ``win_rate``,
        ``ci_low``, ``ci_high``, ``decided_win_rate``, ``won_amount``,
        ``open_amount``, ``stalled_amount`` (the sum of the known amounts;
        ``NaN`` when there are such leads but none has an amount, 0 when
        there are none).
        ``attrs["horizon"]``: days per step.

    Examples
    --------
    >>> import funnelkit as fk
    >>> o = fk.funnel.outcomes(fk.datasets.load_demo())
    >>> int(o.loc[0, ["won", "lost", "stalled", "open"]].sum()) == int(o.loc[0, "leads"])
    True
    """
    sss = _segment_sets(stages)
    if sss is not None:  # each lead's own set decides won and lost
        log, stages = _milestone_log(log, sss, lead, stage, time), sss.milestones()
    ss = resolve_stages(log, stages)
    by = as_list(by)
    j = _journeys(log, ss, by=by, as_of=as_of, stale_after=stale_after, value=value,
                  lead=lead, stage=stage, time=time, amount=amount)
    g, gvals = _groups(j)
    n_groups = max(len(gvals), 1)
    known = j.r >= 1
    is_open = (j.outcome == 0) & known
    stalled = is_open & ~j.in_flight & (j.r < j.m) if j.as_of is not None else np.zeros(j.n, dtype=bool)
    # no won outcome: a lead at the last stage has reached the goal; it is neither open nor won
    at_goal = is_open & (j.r >= j.m) if _goal_is_last_stage(ss) else np.zeros(j.n, dtype=bool)
    flying = is_open & ~stalled & ~at_goal

    def count(mask):
        return np.bincount(g[mask], minlength=n_groups).astype(np.int64)

    agg = gvals.copy() if len(gvals.columns) else pd.DataFrame(index=pd.RangeIndex(1))
    agg["won"], agg["lost"] = count(j.outcome == 1), count(j.outcome == 2)
    lost_cols = []
    if len(ss.lost) > 1:
        for i, name in enumerate(ss.lost):
            col = f"lost_{name}"
            agg[col] = count((j.outcome == 2) & (j.lost_kind == i))
            lost_cols.append(col)
    agg["stalled"], agg["open"] = count(stalled), count(flying)
    goal_cols = ["reached_goal"] if _goal_is_last_stage(ss) else []
    agg["reached_goal"] = count(at_goal)
    agg["leads"] = agg["won"] + agg["lost"] + agg["stalled"] + agg["open"] + agg["reached_goal"]
    decided = agg["won"] + agg["lost"] + agg["stalled"]
    with np.errstate(invalid="ignore", divide="ignore"):
        agg["decided_win_rate"] = agg["won"] / decided.where(decided > 0)
    if ss.won is None:  # no won outcome: no win to count a rate of (0% would read "none converted")
        agg["win_rate"] = agg["ci_low"] = agg["ci_high"] = agg["decided_win_rate"] = np.nan
    else:
        # the funnel's own estimate: the product of the step conversions over
        # matured leads (conversion()'s overall_conversion at the won step)
        c = _counts(j, g, n_groups)
        overall, olo, ohi = _overall_rates(c, level=level)
        agg["win_rate"], agg["ci_low"], agg["ci_high"] = overall[:, -1], olo[:, -1], ohi[:, -1]
    cols = [*by, "leads", "won", "lost", *lost_cols, "stalled", "open", *goal_cols, "win_rate", "ci_low",
            "ci_high", "decided_win_rate"]
    if j.amount is not None:
        a = np.nan_to_num(j.amount, nan=0.0)
        valued = ~np.isnan(j.amount)
        for col, mask in (("won_amount", j.outcome == 1), ("open_amount", flying), ("stalled_amount", stalled)):
            # the leads of mask alone: adding the others' 0.0 changes no sum
            summed = np.bincount(g[mask], weights=a[mask], minlength=n_groups)
            summed = summed.astype(float) if g.size else summed  # as over every lead: int64 over none
            if g.size:  # leads there, none with an amount: unknown, not 0
                unknown = none_known(np.bincount(g[mask], minlength=n_groups),
                                     np.bincount(g[mask & valued], minlength=n_groups))
                summed = np.where(unknown, np.nan, summed)
            agg[col] = summed
            cols.append(col)
    out = agg[cols].reset_index(drop=True)
    out.attrs["horizon"] = j.settings.get("horizon")
    out.attrs["funnel"] = dict(j.settings, stages=ss.name)
    return out


# ---------------------------------------------------------------------------
# shared helpers of the analyses below
# ---------------------------------------------------------------------------
_PERIOD_ALIASES = {
    "D": "D", "W": "W", "MS": "M", "ME": "M", "M": "M", "QS": "Q", "QE": "Q", "Q": "Q",
    "YS": "Y", "YE": "Y", "Y": "Y", "AS": "Y", "A": "Y",
}
_MONTH_DAYS = 365.25 / 12


@dataclass
class _Periods:
    codes: np.ndarray  # per lead, -1 where the time is unknown
    starts: pd.DatetimeIndex
    ends: pd.DatetimeIndex  # exclusive


def _periods(times_ns: np.ndarray, freq: str, tz=None) -> _Periods:
    """Calendar periods of ``times_ns`` (UTC ns for a log in zone ``tz``), cut on the
    wall-clock calendar of that zone; starts and ends are aware in ``tz`` then."""
    pfreq = _PERIOD_ALIASES.get(str(freq).upper(), None)
    if pfreq is None:
        raise FunnelSpecError(
            f"freq must be a calendar period: 'D', 'W', 'MS' (months), 'QS' or 'YS'; got {freq!r}."
        )
    known = times_ns != _NAT
    codes = np.full(times_ns.size, -1, dtype=np.int64)
    if not known.any():
        empty = pd.DatetimeIndex([], dtype="datetime64[ns]")
        if tz is not None:
            empty = empty.tz_localize(tz)
        return _Periods(codes, empty, empty)
    pi = pd.DatetimeIndex(wall_ns(times_ns[known], tz).view("datetime64[ns]")).to_period(pfreq)
    ordinals = pi.asi8
    uniq = np.unique(ordinals)
    codes[known] = np.searchsorted(uniq, ordinals)
    pidx = pd.PeriodIndex.from_ordinals(uniq, freq=pfreq)
    starts = pd.DatetimeIndex(pidx.start_time.as_unit("ns"))
    ends = pd.DatetimeIndex((pidx + 1).start_time.as_unit("ns"))
    if tz is not None:
        starts, ends = (x.tz_localize(tz, ambiguous=False, nonexistent="shift_forward") for x in (starts, ends))
    return _Periods(codes, starts, ends)


def _pct(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    if x >= 0.095 or x == 0:
        return f"{x:.0%}"
    text = f"{x:.1%}" if x >= 0.0095 else f"{x:.2%}"
    return text.replace(".0%", "%").replace(".00%", "%")


def _plural(word: str) -> str:
    word = str(word).replace("_", " ")
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _label(vals: pd.DataFrame, i: int) -> str:
    return ", ".join(str(vals.iloc[i][c]) for c in vals.columns)


def _opts(**kw) -> dict:
    return kw


def _run(log, stages, by, opts) -> tuple[_Journeys, np.ndarray, pd.DataFrame, _Counts]:
    sss = _segment_sets(stages)
    if sss is not None:  # segments with different stage sets: their shared milestones
        log = _milestone_log(log, sss, opts.get("lead", LEAD), opts.get("stage", STAGE), opts.get("time", TIME))
        stages = sss.milestones()
    ss = resolve_stages(log, stages)
    j = _journeys(log, ss, by=as_list(by), **opts)
    if sss is not None:
        j.settings["note"] = _milestone_note(sss)
    g, gvals = _groups(j)
    c = _counts(j, g, max(len(gvals), 1))
    return j, g, gvals, c


def _months_spanned(j: _Journeys) -> float:
    """Months between the first and last entry into the funnel (at least one month)."""
    a = j.time[0][j.included]
    a = a[a != _NAT]
    if a.size == 0:
        return np.nan
    return max((a.max() - a.min()) / _DAY_NS / _MONTH_DAYS, 1.0)


def _matured_won(j: _Journeys, g: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group: leads matured at the first step that reached the last step."""
    sel = j.included & j.matured[0] & j.reached[-1]
    return np.bincount(g[sel], minlength=n_groups).astype(float)


def _lookup_segment(gvals: pd.DataFrame, value, by: list[str]) -> int:
    want = value if isinstance(value, tuple) else (value,)
    if len(want) != len(by):
        raise FunnelSpecError(f"a segment of {by} needs {len(by)} value(s), got {value!r}.")
    hit = np.ones(len(gvals), dtype=bool)
    for col, v in zip(by, want):
        hit &= (gvals[col].astype(object) == v).to_numpy()
    if not hit.any():
        have = "; ".join(_label(gvals, i) for i in range(len(gvals)))
        raise FunnelSpecError(f"no segment {value!r} in {', '.join(by)}; segments present: {have}.")
    return int(np.flatnonzero(hit)[0])


# ---------------------------------------------------------------------------
# comparisons
# ---------------------------------------------------------------------------
def compare(
    log: pd.DataFrame,
    *,
    by: str | Sequence[str],
    against: str | tuple = "rest",
    stages: StageSet | str | Sequence[str] | None = None,
    min_leads: int = 30,
    overall: bool = True,
    level: float = 0.95,
    method: str = "wilson",
    mode: str = "ordered",
    window: Duration | None = None,
    step_windows=None,
    exclude=None,
    infer_skipped: bool | None = None,
    as_of: str | pd.Timestamp | None = "end",
    stale_after: Duration | str | None = "horizon",
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Compare segments at every step: rates, difference with interval, test.

    Each transition (step k -> k+1, over the leads *matured* at step k: those
    whose time to move on has run out, see :func:`conversion`) and, with
    ``overall=True``, the whole funnel (first step -> last step) is compared
    either for each segment against all the other leads (``against="rest"``)
    or for two named segments (``against=(a, b)``).  Only matured leads are
    compared, so a young segment (most of its leads entered recently) is
    judged on the same footing as an old one, neither by its quick wins nor
    by its quick losses.

    A step's test is Pearson's chi-square on the 2x2 table of matured leads,
    or Fisher's exact test when an expected count is below 5.  The overall
    rate is the life-table product of the step rates (``conversion()``'s
    ``overall_conversion``) and its test the delta-method z-test of the
    difference of two products (``test == "life-table z"``); its ``leads``
    are the leads matured at the first step and ``converted`` those of them
    that were won.  p-values are adjusted for the number of comparisons made
    (Benjamini-Hochberg false discovery rate).  Rows
    where either side has fewer than ``min_leads`` matured leads are shown
    but not tested (``too_small``), so tiny segments do not make noise.

    Parameters
    ----------
    log : DataFrame
    by : str or list of str
        Segment column(s).
    against : "rest" or (a, b)
        Each segment against the rest, or segment ``a`` against segment
        ``b`` (values of ``by``; tuples when ``by`` has several columns).
    min_leads : int
        Minimum matured leads on each side for a row to be tested.
    overall : bool
        Add the end-to-end comparison (first step to last step).
    level : float
        Confidence level of the intervals; a row is ``significant`` when its
        adjusted p-value is below ``1 - level``.
    method : {"wilson", "jeffreys"}
        Interval of each rate (the difference uses Newcombe's interval).
    mode, window, step_windows, exclude, infer_skipped, as_of, stale_after, lead, stage, time, amount
        As in :func:`conversion`.

    Returns
    -------
    DataFrame
        One row per (segment, transition): the ``by`` columns, ``transition``
        (e.g. ``"meeting -> proposal"``), ``step``, ``next_step``,
        ``step_index``, ``kind`` (``"step"`` or ``"overall"``), ``leads``
        (matured leads), ``converted``, ``rate``, ``rate_ci_low``,
        ``rate_ci_high``, ``reference`` (``"rest"`` or the other segment),
        ``ref_leads``, ``ref_converted``, ``ref_rate``, ``difference``
        (``rate - ref_rate``), ``diff_ci_low``, ``diff_ci_high``, ``ratio``
        (``rate / ref_rate``), ``test`` (``"chi2"``, ``"fisher"`` or
        ``"life-table z"``), ``p_value``, ``p_adjusted``, ``significant``,
        ``too_small``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> c = fk.funnel.compare(fk.datasets.load_demo(), by="product")
    >>> row = c[(c["product"] == "Enterprise") & (c["step"] == "proposal")].iloc[0]
    >>> row["transition"], bool(row["significant"]), bool(row["rate"] < row["ref_rate"])
    ('proposal -> close', True, True)
    """
    by = as_list(by)
    if not by:
        raise FunnelSpecError("compare needs by= (the segment column or columns).")
    opts = _opts(mode=mode, window=window, step_windows=step_windows, exclude=exclude,
                 infer_skipped=infer_skipped, as_of=as_of, stale_after=stale_after,
                 lead=lead, stage=stage, time=time, amount=amount)
    j, g, gvals, c = _run(log, stages, by, opts)
    steps = list(j.steps)
    m = len(steps)
    mat = c.matured[:, :-1].astype(float)
    conv = c.matured_converted[:, :-1].astype(float)
    trans = [f"{steps[k]} -> {steps[k + 1]}" for k in range(m - 1)]
    names, nxt, kinds, idx = list(steps[:-1]), list(steps[1:]), ["step"] * (m - 1), list(range(m - 1))
    K = m - 1
    if isinstance(against, str):
        if against != "rest":
            raise FunnelSpecError(f"against must be 'rest' or a pair of segments (a, b); got {against!r}.")
        rows = np.arange(len(gvals))
        x1, n1 = conv, mat
        x2, n2 = conv.sum(axis=0) - conv, mat.sum(axis=0) - mat
        ref_label = np.full(len(rows), "rest", dtype=object)
    else:
        if len(against) != 2:
            raise FunnelSpecError(f"against must be 'rest' or a pair of segments (a, b); got {against!r}.")
        a = _lookup_segment(gvals, against[0], by)
        b = _lookup_segment(gvals, against[1], by)
        rows = np.array([a])
        x1, n1 = conv[[a]], mat[[a]]
        x2, n2 = conv[[b]], mat[[b]]
        ref_label = np.array([_label(gvals, b)], dtype=object)
    G = len(rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        r1 = np.where(n1 > 0, x1 / np.where(n1 > 0, n1, 1), np.nan)
        r2 = np.where(n2 > 0, x2 / np.where(n2 > 0, n2, 1), np.nan)
    fl = [np.asarray(v, dtype=float).reshape(-1) for v in (x1, n1, x2, n2)]
    lo1, hi1 = (v.reshape(G, K) for v in stats.proportion_ci(fl[0], fl[1], level=level, method=method))
    dlo, dhi = (v.reshape(G, K) for v in stats.diff_ci(*fl, level=level))
    small = (n1 < min_leads) | (n2 < min_leads)
    sf = small.reshape(-1)
    p, test = stats.compare_proportions(np.where(sf, 0, fl[0]), np.where(sf, 0, fl[1]), fl[2], fl[3])
    p = np.where(sf, np.nan, p).reshape(G, K)
    test = np.where(sf, "", test).reshape(G, K).astype(object)
    lead_n1, lead_x1 = n1.copy(), x1.copy()
    lead_n2, lead_x2 = n2.copy(), x2.copy()
    if overall and m > 1:
        # end to end: the life-table product of the step rates on each side,
        # the same estimate as conversion()'s overall_conversion, with a
        # delta-method z-test (unbiased when a segment is young)
        P1, P2, dd, ddlo, ddhi, pp = stats.chained_difference(x1, n1, x2, n2, level=level)
        olo1, ohi1 = np.full(G, np.nan), np.full(G, np.nan)
        for i in range(G):
            est, l_, h_ = stats.chained_proportion_ci(x1[i], n1[i], level=level)
            olo1[i], ohi1[i] = l_[-1], h_[-1]
        osmall = (n1[:, 0] < min_leads) | (n2[:, 0] < min_leads) | np.isnan(dd)
        r1 = np.column_stack([r1, P1])
        r2 = np.column_stack([r2, P2])
        lo1 = np.column_stack([lo1, olo1])
        hi1 = np.column_stack([hi1, ohi1])
        dlo = np.column_stack([dlo, ddlo])
        dhi = np.column_stack([dhi, ddhi])
        small = np.column_stack([small, osmall])
        p = np.column_stack([p, np.where(osmall, np.nan, pp)])
        test = np.column_stack([test, np.where(osmall, "", "life-table z")])
        # leads and conversions shown for the overall row: those matured at the
        # first step, and how many of them were won
        lead_n1 = np.column_stack([n1, n1[:, 0]])
        lead_n2 = np.column_stack([n2, n2[:, 0]])
        top_won1 = _matured_won(j, g, len(gvals))
        if isinstance(against, str):
            top_won2 = top_won1.sum() - top_won1
            top_won1 = top_won1[rows]
        else:
            top_won2 = top_won1[[b]]
            top_won1 = top_won1[rows]
        lead_x1 = np.column_stack([x1, top_won1])
        lead_x2 = np.column_stack([x2, top_won2])
        trans.append(f"{steps[0]} -> {steps[-1]} (overall)")
        names.append(steps[0])
        nxt.append(steps[-1])
        kinds.append("overall")
        idx.append(0)
    T = len(trans)
    r1, r2, lo1, hi1, dlo, dhi, small, p, test = (
        np.asarray(v).reshape(-1) for v in (r1, r2, lo1, hi1, dlo, dhi, small, p, test)
    )
    p = p.astype(float)
    padj = stats.bh_adjust(p)
    res = pd.DataFrame(
        {
            "transition": np.tile(trans, G),
            "step": pd.Categorical(np.tile(names, G), categories=steps, ordered=True),
            "next_step": pd.Categorical(np.tile(nxt, G), categories=steps, ordered=True),
            "step_index": np.tile(idx, G),
            "kind": np.tile(kinds, G),
            "leads": np.asarray(lead_n1).reshape(-1).astype(np.int64),
            "converted": np.asarray(lead_x1).reshape(-1).astype(np.int64),
            "rate": r1,
            "rate_ci_low": lo1,
            "rate_ci_high": hi1,
            "reference": np.repeat(ref_label, T),
            "ref_leads": np.asarray(lead_n2).reshape(-1).astype(np.int64),
            "ref_converted": np.asarray(lead_x2).reshape(-1).astype(np.int64),
            "ref_rate": r2,
            "difference": r1 - r2,
            "diff_ci_low": dlo,
            "diff_ci_high": dhi,
        }
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        res["ratio"] = np.where(r2 > 0, r1 / np.where(r2 > 0, r2, 1), np.nan)
    res["test"] = test
    res["p_value"] = p
    res["p_adjusted"] = padj
    res["significant"] = np.nan_to_num(padj, nan=1.0) < (1 - level)
    res["too_small"] = small
    seg = gvals.iloc[np.repeat(rows, T)].reset_index(drop=True)
    out = pd.concat([seg, res], axis=1)
    out.attrs["level"] = level
    out.attrs["funnel"] = dict(j.settings, stages=j.ss.name, against=against, min_leads=min_leads)
    return out


# ---------------------------------------------------------------------------
# leaks
# ---------------------------------------------------------------------------
def leaks(
    log: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    benchmark: str | Mapping[str, float] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    freq: str = "MS",
    recent: int = 1,
    lookback: int | None = None,
    min_leads: int = 30,
    noun: str = "leads",
    level: float = 0.95,
    mode: str = "ordered",
    window: Duration | None = None,
    step_windows=None,
    exclude=None,
    infer_skipped: bool | None = None,
    as_of: str | pd.Timestamp | None = "end",
    stale_after: Duration | str | None = "horizon",
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Find the leaks: transitions ranked by the conversions they lose.

    Every transition (step k -> k+1; per segment with ``by=``) is set
    against a benchmark rate.  Rates are over matured leads (those whose
    time to move on has run out, see :func:`conversion`), so young segments
    and recent periods are judged fairly; the conversions lost are
    ``entered x (benchmark rate - rate)`` over every lead that entered the
    step, expressed per month.  The biggest loss comes first, with a sentence saying it in
    plain words.

    The benchmarks (``benchmark=``):

    ``"segments"`` (default with ``by=``)
        The same transition in all the other segments pooled.  Losses per
        month divide by the months the funnel's leads entered over.
    ``"previous"`` (default without ``by=``)
        The same transition (in the same segment) in earlier periods: the
        last ``recent`` mature periods of ``freq`` (by the time leads entered
        the step) against the ``lookback`` mature periods before them
        (default: all).  A period is immature, and skipped, while more than
        5% of the leads that entered the step in it have not matured.
        Losses per month are over the recent periods.
    ``{step: rate}``
        Target rates, keyed by the step a transition starts from (or by
        ``"step -> next"``); transitions without a target are left out.

    Rows whose leads (or benchmark leads) are fewer than ``min_leads`` are
    kept but not ranked (``too_small``).  Each row also carries a test of
    the difference (chi-square/Fisher against segments or periods, an exact
    binomial test against a target) with Benjamini-Hochberg adjustment.

    Parameters
    ----------
    log : DataFrame
    by : str or list of str, optional
    benchmark : "segments", "previous" or mapping, optional
    freq : str
        Period for ``"previous"``: ``"MS"`` (months), ``"W"``, ``"QS"``...
    recent, lookback : int
        Periods compared (``"previous"`` only).
    min_leads : int
    noun : str
        What the leads are called in the sentences (``"deals"``, ``"visitors"``).
    level : float
        ``significant`` means adjusted p below ``1 - level``.
    mode, window, step_windows, exclude, infer_skipped, as_of, stale_after, lead, stage, time, amount
        As in :func:`conversion`.

    Returns
    -------
    DataFrame
        Ranked rows: ``rank`` (1 = biggest leak; missing when not ranked), the
        ``by`` columns, ``transition``, ``step``, ``next_step``, ``leads``,
        ``converted``, ``rate``, ``period`` (the recent period(s) judged, for
        ``"previous"``; else empty), ``benchmark`` (what the rate is set
        against, in words), ``benchmark_rate``, ``benchmark_leads``,
        ``lost_conversions`` (negative: better than the benchmark),
        ``months``, ``lost_per_month``, ``p_value``, ``p_adjusted``,
        ``significant``, ``too_small``, ``sentence``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> lk = fk.funnel.leaks(fk.datasets.load_demo(), by="product", noun="deals")
    >>> print(lk["sentence"].iloc[0])  # doctest: +ELLIPSIS
    Enterprise: proposal -> close converts 20% against 60% for the other products: about 10 deals lost per month...
    """
    by = as_list(by)
    if benchmark is None:
        benchmark = "segments" if by else "previous"
    opts = _opts(mode=mode, window=window, step_windows=step_windows, exclude=exclude,
                 infer_skipped=infer_skipped, as_of=as_of, stale_after=stale_after,
                 lead=lead, stage=stage, time=time, amount=amount)
    j, g, gvals, c = _run(log, stages, by, opts)
    steps = list(j.steps)
    m = len(steps)
    if m < 2:
        raise FunnelSpecError("a funnel needs at least two steps to leak.")
    G = len(gvals) if by else 1
    K = m - 1
    when = None
    seg_of = np.repeat(np.arange(G), K)
    k_of = np.tile(np.arange(K), G)
    if isinstance(benchmark, str) and benchmark == "segments":
        if not by:
            raise FunnelSpecError(
                "benchmark='segments' compares segments: pass by= (e.g. by='product'), or use "
                "benchmark='previous' or a mapping of target rates."
            )
        n = c.matured[:, :K].astype(float)
        x = c.matured_converted[:, :K].astype(float)
        bn, bx = n.sum(axis=0) - n, x.sum(axis=0) - x
        n, x, bn, bx = (v.reshape(-1) for v in (n, x, bn, bx))
        volume = c.entered[:, :K].astype(float).reshape(-1)
        months = np.full(n.size, _months_spanned(j))
        what = np.full(n.size, f"for the other {_plural(by[0] if len(by) == 1 else 'segment')}", dtype=object)
        keep = np.ones(n.size, dtype=bool)
        kind = "counts"
    elif isinstance(benchmark, str) and benchmark == "previous":
        n, x, bn, bx, months, what, when = _previous_periods(
            j, g, G, freq=freq, recent=recent, lookback=lookback
        )
        volume = n
        keep = np.ones(n.size, dtype=bool)
        kind = "counts"
    elif isinstance(benchmark, Mapping):
        targets = np.full(K, np.nan)
        for key, rate in benchmark.items():
            k = _transition_index(key, steps, j.ss)
            if not 0 <= float(rate) <= 1:
                raise FunnelSpecError(f"target rate for {key!r} must be between 0 and 1, got {rate!r}.")
            targets[k] = float(rate)
        n = c.matured[:, :K].astype(float).reshape(-1)
        x = c.matured_converted[:, :K].astype(float).reshape(-1)
        bx = np.tile(targets, G)
        bn = np.full(n.size, np.nan)
        volume = c.entered[:, :K].astype(float).reshape(-1)
        months = np.full(n.size, _months_spanned(j))
        what = np.full(n.size, "a target of", dtype=object)
        keep = ~np.isnan(bx)
        kind = "target"
    else:
        raise FunnelSpecError(
            f"benchmark must be 'segments', 'previous' or a mapping {{step: target rate}}; got {benchmark!r}."
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, x / n, np.nan)
        if kind == "target":
            brate = bx
        else:
            brate = np.where(bn > 0, bx / bn, np.nan)
    # the rate is judged on matured leads; the loss applies to every lead
    # that entered the step (the volume), young ones included
    lost = volume * (brate - rate)
    per_month = lost / months
    small = (n < min_leads) | ((bn < min_leads) if kind == "counts" else np.zeros(n.size, dtype=bool))
    small |= np.isnan(brate) | np.isnan(rate)
    if kind == "target":
        p = stats.rate_vs_target(x, n, np.nan_to_num(bx, nan=-1.0))
    else:
        p, _ = stats.compare_proportions(np.where(small, 0, x), np.where(small, 0, n),
                                         np.nan_to_num(bx), np.nan_to_num(bn))
    p = np.where(small | ~keep, np.nan, p)
    padj = stats.bh_adjust(p)
    res = pd.DataFrame(
        {
            "transition": [f"{steps[k]} -> {steps[k + 1]}" for k in k_of],
            "step": pd.Categorical([steps[k] for k in k_of], categories=steps, ordered=True),
            "next_step": pd.Categorical([steps[k + 1] for k in k_of], categories=steps, ordered=True),
            "leads": n.astype(np.int64),
            "converted": x.astype(np.int64),
            "rate": rate,
            "period": when if when is not None else np.full(n.size, "", dtype=object),
            "benchmark": what,
            "benchmark_rate": brate,
            "benchmark_leads": pd.array(np.where(np.isnan(bn), 0, bn).astype(np.int64), dtype="Int64"),
            "lost_conversions": lost,
            "months": months,
            "lost_per_month": per_month,
            "p_value": p,
            "p_adjusted": padj,
            "significant": np.nan_to_num(padj, nan=1.0) < (1 - level),
            "too_small": small,
        }
    )
    if kind == "target":
        res["benchmark_leads"] = pd.array([pd.NA] * len(res), dtype="Int64")
    if by:
        seg = gvals.iloc[seg_of].reset_index(drop=True)
        res = pd.concat([seg, res], axis=1)
    res = res.loc[keep].reset_index(drop=True)
    # rows as plain records: segment columns may have any name ("Lead Source")
    res["sentence"] = [
        _leak_sentence(SimpleNamespace(**rec), [segs[c] for c in by], noun, kind)
        for rec, segs in zip(res.drop(columns=by).to_dict("records"), res[by].to_dict("records"))
    ]
    ranked = ~res["too_small"]
    order = np.lexsort((-np.nan_to_num(res["lost_per_month"].to_numpy(), nan=-np.inf), ~ranked.to_numpy()))
    res = res.iloc[order].reset_index(drop=True)
    rank = pd.array([pd.NA] * len(res), dtype="Int64")
    nr = int((~res["too_small"]).sum())
    rank[:nr] = np.arange(1, nr + 1)
    res.insert(0, "rank", rank)
    res.attrs["funnel"] = dict(j.settings, stages=j.ss.name, benchmark=benchmark, min_leads=min_leads)
    return res


def _transition_index(key, steps: list[str], ss: StageSet) -> int:
    text = str(key)
    if "->" in text:
        a, b = (s.strip() for s in text.split("->", 1))
        ca, cb = ss.canonical(a), ss.canonical(b)
        if ca in steps and cb in steps and steps.index(cb) == steps.index(ca) + 1:
            return steps.index(ca)
    else:
        ca = ss.canonical(text)
        if ca in steps[:-1]:
            return steps.index(ca)
    raise FunnelSpecError(
        f"benchmark target {key!r} is not a transition; use the step it starts from "
        f"({', '.join(steps[:-1])}) or 'step -> next step'."
    )


def _previous_periods(j: _Journeys, g: np.ndarray, G: int, *, freq: str, recent: int, lookback: int | None):
    """Counts per (segment, transition) in the recent mature periods and the ones before.

    A period is *immature* for a transition when more than 5% of the leads
    that entered the step in it have not matured (their time to move on has
    not run out); immature periods are left out of both sides (their decided
    leads are mostly the quick decisions, which would bias the comparison),
    and within mature periods only matured leads count.
    """
    if recent < 1:
        raise FunnelSpecError(f"recent must be at least 1 period, got {recent!r}.")
    m = j.m
    K = m - 1
    inc = j.included
    n, x, bn, bx = (np.zeros(G * K) for _ in range(4))
    months = np.full(G * K, np.nan)
    what = np.empty(G * K, dtype=object)
    when = np.empty(G * K, dtype=object)
    plen = {"D": 1 / _MONTH_DAYS, "W": 7 / _MONTH_DAYS, "M": 1.0, "Q": 3.0, "Y": 12.0}
    unit = {"D": "day", "W": "week", "M": "month", "Q": "quarter", "Y": "year"}
    fmt = {"D": "%Y-%m-%d", "W": "week of %Y-%m-%d", "M": "%Y-%m", "Q": "%Y-%m", "Y": "%Y"}
    pf = _PERIOD_ALIASES.get(str(freq).upper())
    if pf is None:
        raise FunnelSpecError(f"freq must be 'D', 'W', 'MS', 'QS' or 'YS'; got {freq!r}.")
    for k in range(K):
        rows = np.arange(G) * K + k
        at_k = inc & j.reached[k]
        per = _periods(np.where(at_k, j.time[k], _NAT), freq, j.tz)
        P = len(per.starts)
        young = at_k & ~j.matured[k]
        known = per.codes >= 0
        ent_p = np.bincount(per.codes[known], minlength=P)
        fly_p = np.bincount(per.codes[known & young], minlength=P)
        mature = np.flatnonzero(fly_p <= 0.05 * ent_p)
        if mature.size <= recent:
            what[rows] = "in earlier periods (too few mature periods in the data)"
            when[rows] = ""
            continue
        cur_p = mature[-recent:]
        base_p = mature[:-recent] if lookback is None else mature[:-recent][-lookback:]
        cur = np.isin(per.codes, cur_p)
        base = np.isin(per.codes, base_p)
        conv_k = j.reached[k + 1] & at_k
        matured_k = at_k & ~young
        for sel, tot, cv in ((cur, n, x), (base, bn, bx)):
            s_ = sel & matured_k
            tot[rows] = np.bincount(g[s_], minlength=G)
            cv[rows] = np.bincount(g[s_ & conv_k], minlength=G)
        months[rows] = recent * plen[pf]
        nb = base_p.size
        what[rows] = f"in the previous {nb} {unit[pf]}{'s' if nb != 1 else ''}"
        labels = [per.starts[i].strftime(fmt[pf]) for i in cur_p]
        when[rows] = labels[0] if len(labels) == 1 else f"{labels[0]} to {labels[-1]}"
    return n, x, bn, bx, months, what, when


def _leak_sentence(row, segment: list, noun: str, kind: str) -> str:
    seg = ", ".join(str(v) for v in segment) + ": " if segment else ""
    head = f"{seg}{row.transition} converts {_pct(row.rate)}"
    if row.period:
        head += f" in {row.period}"
    if kind == "target":
        head += f" against a target of {_pct(row.benchmark_rate)}"
    else:
        head += f" against {_pct(row.benchmark_rate)} {row.benchmark}"
    if row.too_small:
        return head + f" (too few leads to judge: {row.leads:,})."
    lpm = row.lost_per_month
    if np.isfinite(lpm):
        amount = f"{abs(lpm):,.0f}" if abs(lpm) >= 1 else f"{abs(lpm):.1f}"
        word = singular(noun) if amount == "1" else noun
        tail = (f"about {amount} {word} lost per month" if lpm > 0
                else f"about {amount} more {word} per month than the benchmark")
    else:
        lc = row.lost_conversions
        tail = f"about {abs(lc):,.0f} {noun} {'lost' if lc > 0 else 'gained'} in all"
    ptxt = f"p = {row.p_adjusted:.2g}" if row.p_adjusted >= 0.001 else "p < 0.001"
    sig = (f" (significant, adjusted {ptxt})" if row.significant
           else " (not significant)" if np.isfinite(row.p_adjusted) else "")
    return f"{head}: {tail}{sig}."


# ---------------------------------------------------------------------------
# cohorts and trends
# ---------------------------------------------------------------------------
def cohorts(
    log: pd.DataFrame,
    *,
    freq: str = "MS",
    by: str | Sequence[str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    level: float = 0.95,
    method: str = "wilson",
    mode: str = "ordered",
    window: Duration | None = None,
    step_windows=None,
    exclude=None,
    infer_skipped: bool | None = None,
    as_of: str | pd.Timestamp | None = "end",
    stale_after: Duration | str | None = "horizon",
    value: str | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """The funnel of each entry cohort: leads grouped by when they entered.

    A lead's cohort is the period (``freq``) in which it reached the first
    step.  Each cohort gets the full funnel of :func:`conversion`.  Young
    cohorts have not had time to convert: a (cohort, step) row is marked
    ``immature`` when some of the cohort's leads are still in flight at that
    step or an earlier one, or when the cohort's leads could still convert
    within the conversion window (the cohort's end plus ``window`` is after
    ``as_of``).  With ``as_of=None`` nothing is immature.

    Parameters
    ----------
    log : DataFrame
    freq : {"D", "W", "MS", "QS", "YS"}
        Cohort period.
    by : str or list of str, optional
        Segment column(s): one funnel per (segment, cohort).
    stages, level, method, mode, window, step_windows, exclude, infer_skipped, as_of, stale_after, lead, stage, time, amount
        As in :func:`conversion`.

    Returns
    -------
    DataFrame
        The ``by`` columns, ``cohort`` (start of the period; ``NaT`` for leads
        whose first-step time is unknown), then the columns of
        :func:`conversion`, and ``immature`` (bool).

    Examples
    --------
    >>> import funnelkit as fk
    >>> co = fk.funnel.cohorts(fk.datasets.load_demo())
    >>> co["cohort"].nunique(), bool(co["immature"].iloc[-1])
    (15, True)
    """
    opts = _opts(mode=mode, window=window, step_windows=step_windows, exclude=exclude,
                 infer_skipped=infer_skipped, as_of=as_of, stale_after=stale_after, value=value,
                 lead=lead, stage=stage, time=time, amount=amount)
    ss = resolve_stages(log, stages)
    by = as_list(by)
    j = _journeys(log, ss, by=by, **opts)
    per = _periods(np.where(j.included, j.time[0], _NAT), freq, j.tz)
    key = _Key("cohort", per.codes, pd.Index(per.starts))
    g, gvals = _groups(j, [key])
    c = _counts(j, g, max(len(gvals), 1))
    table = _funnel_table(j, gvals, c, level=level, method=method, exclude_col=exclude is not None)
    m = j.m
    # a (cohort, step) row is immature while some of its leads have not
    # matured at that step or an earlier one: its rate is over fewer leads
    young = np.zeros_like(c.entered, dtype=bool)
    young[:, :-1] = c.matured[:, :-1] < c.entered[:, :-1]
    immature = np.cumsum(young, axis=1) > 0
    if m > 1:
        immature[:, -1] = immature[:, -2]
    if j.as_of is None:
        immature[:] = False
    table["immature"] = immature.reshape(-1)
    cols = [*by, "cohort"] + [col for col in table.columns if col not in (*by, "cohort")]
    return table[cols]


def trend(
    log: pd.DataFrame,
    *,
    freq: str = "MS",
    by: str | Sequence[str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    level: float = 0.95,
    method: str = "wilson",
    mode: str = "ordered",
    window: Duration | None = None,
    step_windows=None,
    exclude=None,
    infer_skipped: bool | None = None,
    as_of: str | pd.Timestamp | None = "end",
    stale_after: Duration | str | None = "horizon",
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Each step's conversion over time, by the period leads entered the step.

    For every transition (step k -> k+1) and period, the leads that entered
    step k in that period and what became of them: converted, dropped or
    still in flight (see :func:`conversion`), with the rate over matured
    leads and its interval.  A row is ``immature`` when some of its leads are
    still in flight, or when the window to convert has not closed for all of
    them (the period's end plus the window, step window or ``stale_after`` is
    after ``as_of``); its rate is provisional.

    Parameters
    ----------
    log : DataFrame
    freq : {"D", "W", "MS", "QS", "YS"}
    by : str or list of str, optional
    stages, level, method, mode, window, step_windows, exclude, infer_skipped, as_of, stale_after, lead, stage, time, amount
        As in :func:`conversion`.

    Returns
    -------
    DataFrame
        The ``by`` columns, ``period`` (start), ``transition``, ``step``,
        ``next_step``, ``step_index``, ``entered``, ``converted``,
        ``dropped``, ``in_flight``, ``matured``, ``rate``, ``ci_low``,
        ``ci_high``, ``immature``.  Leads whose time at the step is unknown
        have ``period`` ``NaT``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> tr = fk.funnel.trend(fk.datasets.load_demo())
    >>> sorted(tr["transition"].unique())[:2]
    ['close -> won', 'meeting -> proposal']
    >>> bool(tr.groupby("transition")["immature"].last().all())
    True
    """
    opts = _opts(mode=mode, window=window, step_windows=step_windows, exclude=exclude,
                 infer_skipped=infer_skipped, as_of=as_of, stale_after=stale_after,
                 lead=lead, stage=stage, time=time, amount=amount)
    ss = resolve_stages(log, stages)
    by = as_list(by)
    j = _journeys(log, ss, by=by, **opts)
    g0, gvals = _groups(j)
    G = max(len(gvals), 1)
    steps = list(j.steps)
    frames = []
    inc = j.included
    for k in range(j.m - 1):
        at_k = inc & j.reached[k]
        per = _periods(np.where(at_k, j.time[k], _NAT), freq, j.tz)
        P = len(per.starts)
        code = np.where(per.codes >= 0, per.codes, P)  # unknown time: its own slot
        key = g0 * (P + 1) + code
        size = G * (P + 1)
        ent = np.bincount(key[at_k], minlength=size)
        conv = np.bincount(key[at_k & j.reached[k + 1]], minlength=size)
        fly = np.bincount(key[at_k & j.in_flight & (j.r == k + 1)], minlength=size)
        mat_k = at_k & j.matured[k]
        mat = np.bincount(key[mat_k], minlength=size)
        mconv = np.bincount(key[mat_k & j.reached[k + 1]], minlength=size)
        keep = ent > 0
        idx = np.flatnonzero(keep)
        gi, pi = idx // (P + 1), idx % (P + 1)
        matured, mc = mat[idx], mconv[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(matured > 0, mc / np.maximum(matured, 1), np.nan)
        lo, hi = stats.proportion_ci(mc, matured, level=level, method=method)
        starts = np.r_[per.starts.asi8, _NAT] if P else np.array([_NAT])
        immature = matured < ent[idx]
        if j.as_of is None:
            immature[:] = False
        f = pd.DataFrame(
            {
                "_g": gi,
                "period": to_datetimes(starts[pi], j.tz),
                "transition": f"{steps[k]} -> {steps[k + 1]}",
                "step": steps[k],
                "next_step": steps[k + 1],
                "step_index": k,
                "entered": ent[idx],
                "converted": conv[idx],
                "dropped": ent[idx] - conv[idx] - fly[idx],
                "in_flight": fly[idx],
                "matured": matured,
                "matured_converted": mc,
                "rate": rate,
                "ci_low": lo,
                "ci_high": hi,
                "immature": immature,
            }
        )
        frames.append(f)
    res = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    res = res.sort_values(["_g", "step_index", "period"], kind="stable").reset_index(drop=True)
    for col in ("step", "next_step"):
        res[col] = pd.Categorical(res[col], categories=steps, ordered=True)
    if by:
        seg = gvals.iloc[res["_g"].to_numpy()].reset_index(drop=True)
        res = pd.concat([seg, res.drop(columns="_g")], axis=1)
    else:
        res = res.drop(columns="_g")
    res.attrs["level"] = level
    res.attrs["funnel"] = dict(j.settings, stages=j.ss.name, freq=freq)
    return res


# ---------------------------------------------------------------------------
# time to convert
# ---------------------------------------------------------------------------
_UNITS = {"D": ("days", _DAY_NS), "h": ("hours", 3600 * 10**9), "W": ("weeks", 7 * _DAY_NS)}


@dataclass
class TimeToConvert:
    """Result of :func:`time_to_convert`.

    Attributes
    ----------
    summary : DataFrame
        One row per segment (see :func:`time_to_convert`), with a
        ``sentence`` saying the headline figures in words.
    curves : DataFrame
        The curves behind it, long format: the ``by`` columns, ``time``,
        ``outcome`` (``"converted"`` or ``"lost"``), ``estimator``
        (``"aalen_johansen"``: cumulative incidence with won and lost
        competing; ``"kaplan_meier"``: 1 - KM of conversion with lost leads
        censored, the naive curve), ``probability``, ``ci_low``, ``ci_high``,
        ``at_risk``.
    start, end : str
        The two steps.
    unit : str
        Unit of every time (``"days"``, ``"hours"``, ``"weeks"``).
    by : list of str
        The segment columns.

    Examples
    --------
    >>> import funnelkit as fk
    >>> ttc = fk.funnel.time_to_convert(fk.datasets.load_demo(), start="meeting", end="proposal")
    >>> ttc.unit, sorted(ttc.curves["outcome"].unique())
    ('days', ['converted', 'lost'])
    """

    summary: pd.DataFrame
    curves: pd.DataFrame
    start: str
    end: str
    unit: str
    by: list[str] = field(default_factory=list)

    @property
    def sentences(self) -> list[str]:
        """The headline of each row in words (never 'nan')."""
        return list(self.summary["sentence"])

    def __repr__(self) -> str:
        return f"<TimeToConvert {self.start} -> {self.end} ({self.unit})>\n{self.summary.to_string()}"

    def _repr_html_(self) -> str:
        import html

        head = (f"<p><b>Time to convert</b>: {html.escape(self.start)} &rarr; {html.escape(self.end)}, "
                f"in {self.unit}</p>")
        items = "".join(f"<li>{html.escape(t)}</li>" for t in self.sentences)
        return head + f"<ul>{items}</ul>" + self.summary.drop(columns="sentence").to_html(escape=True)


def _fmt_num(x: float) -> str:
    return f"{x:,.1f}" if abs(x) < 100 else f"{x:,.0f}"


def _ttc_sentence(row: dict, seg: str, start: str, end: str, uname: str, at: Sequence[float],
                  level: float) -> str:
    head = f"{seg}{start} -> {end}: "
    if row["leads"] == 0:
        return head + f"no lead reached {start}, so nothing can be estimated."
    if row["leads"] == row["unknown_time"]:
        return head + (f"the time each of the {row['leads']:,} leads reached {start} (or {end}) is unknown "
                       f"(e.g. a CRM snapshot's undated stage), so no time to convert can be estimated; "
                       f"start the clock at a step with dates.")
    parts = []
    for t in at:
        tag = f"p_convert_{_tag(t)}"
        v = row.get(tag, np.nan)
        if np.isfinite(v):
            lo, hi = row[f"{tag}_ci_low"], row[f"{tag}_ci_high"]
            parts.append(f"{_pct(v)} within {t:g} days ({level:.0%} CI {_pct(lo)}-{_pct(hi)})")
        else:
            parts.append(f"within {t:g} days: not yet known (the data follows leads for only "
                         f"{_fmt_num(row['followup'])} {uname})")
    text = head + "; ".join(parts) + "."
    if row["converted"] > 0:
        med, lo, hi = row["median_converted"], row["median_converted_ci_low"], row["median_converted_ci_high"]
        ci = (f" ({level:.0%} CI {_fmt_num(lo)}-{_fmt_num(hi)})" if np.isfinite(lo) and np.isfinite(hi)
              else " (too few to give an interval)")
        text += (f" The {row['converted']:,} that converted took a median of {_fmt_num(med)} {uname}{ci}.")
    else:
        text += " None has converted yet, so there is no median time to convert."
    return text


def _tag(t: float) -> str:
    return f"{t:g}".replace(".", "_") + "d"


def time_to_convert(
    log: pd.DataFrame,
    *,
    start: str,
    end: str,
    by: str | Sequence[str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    at: Sequence[float] = (30, 60, 90),
    km_quantiles: Sequence[float] | None = None,
    unit: str = "D",
    level: float = 0.95,
    mode: str = "ordered",
    infer_skipped: bool | None = None,
    as_of: str | pd.Timestamp = "end",
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
) -> TimeToConvert:
    """How long leads take from one step to a later one, and how many get there.

    Every lead that reached ``start`` (at a known time) is followed until
    it reaches ``end`` (*converted*), is lost before that (*lost*: the
    competing outcome), or ``as_of`` comes (*censored*: still open, so its
    time to convert is only known to be longer).  Leads whose time at
    either step is unknown are counted in ``unknown_time`` and left out.

    The headline figures:

    * **How likely, by when?** ``p_convert_<t>d`` is the chance to have
      converted within ``t`` days (for each ``t`` in ``at``): the Aalen-Johansen
      cumulative incidence, in which lost leads cannot convert any more and
      open leads are censored.  It is missing when the data follows no lead
      that long (``followup`` is the longest time observed) while some are
      still undecided; once every lead is decided it is settled.
    * **How fast, for those who convert?** ``median_converted`` is the
      median time among the leads that did convert, with a distribution-free
      (order-statistic) interval.  It is what a hand computation over the
      converted leads gives.

    ``p_convert``, ``p_lost`` and ``p_open`` are the cumulative incidences
    at the end of the follow-up (they add up to 1).  The Kaplan-Meier
    quantiles with lost leads censored (``km_quantiles=``) answer a
    different, hypothetical question - how fast leads would convert if
    nobody were ever lost - and are only given when asked, labelled ``km_``.

    Parameters
    ----------
    log : DataFrame
    start, end : str
        Steps of the stage set, ``start`` before ``end`` (not necessarily
        adjacent).
    by : str or list of str, optional
    at : sequence of float
        Days at which to give the chance to have converted (whatever ``unit``).
    km_quantiles : sequence of float, optional
        E.g. ``(0.5,)``: also give the Kaplan-Meier quantiles of the time to
        convert with lost leads censored (columns ``km_q50`` ...).
    unit : {"D", "h", "W"}
        Days, hours or weeks.
    level : float
    mode, infer_skipped, as_of, lead, stage, time
        As in :func:`conversion` (``as_of=None`` is not allowed: censoring
        needs a time).

    Returns
    -------
    TimeToConvert
        ``.summary``: the ``by`` columns, ``leads``, ``converted``, ``lost``,
        ``censored``, ``unknown_time``, ``followup`` (in ``unit``), for each
        ``t`` in ``at`` ``p_convert_<t>d`` with ``_ci_low`` / ``_ci_high``, then
        ``median_converted`` with ``median_converted_ci_low`` /
        ``median_converted_ci_high``, ``p_convert``, ``p_convert_ci_low``,
        ``p_convert_ci_high``, ``p_lost``, ``p_open``, the ``km_`` columns
        when asked, and ``sentence``.  ``.curves``: see :class:`TimeToConvert`.

    Examples
    --------
    >>> import funnelkit as fk
    >>> ttc = fk.funnel.time_to_convert(fk.datasets.load_demo(), start="proposal", end="won")
    >>> s = ttc.summary.iloc[0]
    >>> bool(s["p_convert_30d"] < s["p_convert_90d"] <= s["p_convert"]), bool(10 < s["median_converted"] < 60)
    (True, True)
    >>> print(ttc.sentences[0])  # doctest: +ELLIPSIS
    proposal -> won: 22% within 30 days (95% CI 21%-24%); ... The 591 that converted took a median of 22.7 days (95% CI ...).
    """
    if as_of is None:
        raise FunnelSpecError("time_to_convert needs as_of ('end' or a date) to censor open leads.")
    if unit not in _UNITS:
        raise FunnelSpecError(f"unit must be one of {', '.join(_UNITS)}; got {unit!r}.")
    qs = [float(q) for q in (km_quantiles or ())]
    if any(not 0 < q < 1 for q in qs):
        raise FunnelSpecError(f"km_quantiles must lie strictly between 0 and 1; got {list(km_quantiles or ())}.")
    at = [float(t) for t in at]
    if any(not t > 0 for t in at):
        raise FunnelSpecError(f"at must hold positive times; got {at}.")
    ss = resolve_stages(log, stages)
    steps = list(ss.steps)
    idx = []
    for s_ in (start, end):
        c_ = ss.canonical(s_)
        if c_ is None or c_ not in steps:
            raise FunnelSpecError(f"{s_!r} is not a step of {ss.name!r} ({', '.join(steps)}).")
        idx.append(steps.index(c_))
    a, b = idx
    if not a < b:
        raise FunnelSpecError(f"{start!r} must come before {end!r} in the funnel ({' > '.join(steps)}).")
    by = as_list(by)
    j = _journeys(log, ss, by=by, mode=mode, infer_skipped=infer_skipped, as_of=as_of, stale_after=None,
                  lead=lead, stage=stage, time=time, amount=None)
    g, gvals = _groups(j)
    G = max(len(gvals), 1)
    uname, uns = _UNITS[unit]
    t_a = j.time[a]
    at_a = j.included & j.reached[a]
    conv = at_a & j.reached[b]
    lost = at_a & ~j.reached[b] & (j.outcome == 2)
    cens = at_a & ~conv & ~lost
    t_end = np.where(conv, j.time[b], np.where(lost, j.closed_at, j.as_of if j.as_of != _INF else _NAT))
    known = at_a & (t_a != _NAT) & (t_end != _NAT)
    dur = np.where(known, (t_end - t_a) / uns, np.nan)
    known &= dur >= 0  # a loss recorded before the start step (then reopened): timing unknown
    ev = np.where(conv, 1, np.where(lost, 2, 0))
    rows, curves = [], []
    for gi in range(G):
        sel = g == gi
        s_known = sel & known
        d, e = dur[s_known], ev[s_known]
        row = {
            "leads": int((sel & at_a).sum()),
            "converted": int((s_known & conv).sum()),
            "lost": int((s_known & lost).sum()),
            "censored": int((s_known & cens).sum()),
            "unknown_time": int((sel & at_a & ~known).sum()),
            "followup": float(d.max()) if d.size else np.nan,
        }
        aj = stats.aalen_johansen(d, e, level=level)
        won_aj = aj[aj["event"] == 1]
        for t_days in at:
            tag = f"p_convert_{_tag(t_days)}"
            t = t_days * _DAY_NS / uns
            settled = len(aj) > 0 and float(aj["survival"].iloc[-1]) <= 0  # nobody left undecided
            if not d.size or (t > row["followup"] and not settled):
                est = lo = hi = np.nan
            elif won_aj.empty:
                est, lo, hi = 0.0, np.nan, np.nan
            else:
                upto = won_aj[won_aj["time"] <= t]
                if upto.empty:
                    est, lo, hi = 0.0, np.nan, np.nan
                else:
                    last_ = upto.iloc[-1]
                    est, lo, hi = float(last_["incidence"]), float(last_["ci_low"]), float(last_["ci_high"])
            row[tag], row[f"{tag}_ci_low"], row[f"{tag}_ci_high"] = est, lo, hi
        med, mlo, mhi = stats.median_ci(d[e == 1], level=level)
        row["median_converted"], row["median_converted_ci_low"], row["median_converted_ci_high"] = med, mlo, mhi
        if len(won_aj):
            last = won_aj.iloc[-1]
            row["p_convert"], row["p_convert_ci_low"], row["p_convert_ci_high"] = (
                float(last["incidence"]), float(last["ci_low"]), float(last["ci_high"]))
        else:
            row["p_convert"] = 0.0 if len(d) else np.nan
            row["p_convert_ci_low"] = row["p_convert_ci_high"] = np.nan
        lost_aj = aj[aj["event"] == 2]
        row["p_lost"] = float(lost_aj["incidence"].iloc[-1]) if len(lost_aj) else (0.0 if len(d) else np.nan)
        row["p_open"] = float(aj["survival"].iloc[-1]) if len(aj) else (1.0 if len(d) else np.nan)
        km = stats.kaplan_meier(d, e == 1, level=level)
        for q in qs:
            est, lo, hi = stats.km_quantile(km, q)
            tag = f"km_q{round(q * 100):d}"
            row[tag], row[f"{tag}_ci_low"], row[f"{tag}_ci_high"] = est, lo, hi
        if qs:
            row["km_p_convert"] = float(1 - km["survival"].iloc[-1]) if len(km) else np.nan
        seg = (", ".join(str(gvals.iloc[gi][c]) for c in by) + ": ") if by else ""
        row["sentence"] = _ttc_sentence(row, seg, steps[a], steps[b], uname, at, level)
        rows.append(row)
        for code, name in ((1, "converted"), (2, "lost")):
            part = aj[aj["event"] == code]
            if len(part):
                curves.append(pd.DataFrame({
                    "_g": gi, "time": part["time"].to_numpy(), "outcome": name, "estimator": "aalen_johansen",
                    "probability": part["incidence"].to_numpy(), "ci_low": part["ci_low"].to_numpy(),
                    "ci_high": part["ci_high"].to_numpy(), "at_risk": part["at_risk"].to_numpy(),
                }))
        if len(km):
            curves.append(pd.DataFrame({
                "_g": gi, "time": km["time"].to_numpy(), "outcome": "converted", "estimator": "kaplan_meier",
                "probability": 1 - km["survival"].to_numpy(), "ci_low": 1 - km["ci_high"].to_numpy(),
                "ci_high": 1 - km["ci_low"].to_numpy(), "at_risk": km["at_risk"].to_numpy(),
            }))
    summary = pd.DataFrame(rows)
    if by:
        summary = pd.concat([gvals.reset_index(drop=True), summary], axis=1)
    cols = ["_g", "time", "outcome", "estimator", "probability", "ci_low", "ci_high", "at_risk"]
    cur = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=cols)
    if by:
        seg = gvals.iloc[cur["_g"].to_numpy(dtype=np.int64)].reset_index(drop=True)
        cur = pd.concat([seg, cur.drop(columns="_g").reset_index(drop=True)], axis=1)
    else:
        cur = cur.drop(columns="_g")
    summary.attrs["unit"] = uname
    return TimeToConvert(summary=summary, curves=cur, start=steps[a], end=steps[b], unit=uname, by=by)
