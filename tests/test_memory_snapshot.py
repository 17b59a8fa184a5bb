"""pipeline.snapshot's lean path (small arrays, see benchmarks/bench_read.py for the memory)
against the expression it replaced, kept here as the reference: same table, same attrs, same
warnings, on the demo, on hostile logs and on real logs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from messy_logs import bpic2020_first_step, fines_four_steps, in_paris, messy

import funnelkit as fk
from funnelkit import pipeline
from funnelkit._common import DAY_NS, NAT, to_datetimes
from funnelkit.data import AMOUNT, LEAD, STAGE, TIME
from funnelkit.exceptions import DataWarning, InvalidEventLogError
from funnelkit.pipeline import (
    SNAPSHOT_FLAGS,
    _events,
    _first_last,
    _label_index,
    _last_valid,
    _segment_cols,
    _to_time,
    _ts,
    _when,
)


def reference_snapshot(log, *, as_of=None, stages=None, include_closed=False, segments=None,
                       lead=LEAD, stage=STAGE, time=TIME, amount=AMOUNT):
    """pipeline.snapshot as it was before the memory work (commit 80f62b3), verbatim."""
    ev = _events(log, stages, lead=lead, stage=stage, time=time)
    ss = ev.ss
    segs = _segment_cols(log, segments, exclude=[lead, stage, time, amount or ""])
    rng = ev.data_range()
    tz = ev.tz
    T = _to_time(as_of, name="as_of", tz=tz) if as_of is not None else (rng[1] if rng else np.int64(0))
    notes: list[str] = []
    if rng is not None and T < rng[0]:
        warnings.warn(
            f"as_of={_when(T, tz)} is before the data starts ({_when(rng[0], tz)}): no lead existed yet, the "
            "snapshot is empty.",
            DataWarning,
            stacklevel=2,
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
                stacklevel=2,
            )
        notes.append(f"as_of is after the data ends ({_ts(rng[1], tz)}).")

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
            f"placed before {_ts(T, tz)} and are excluded from this past snapshot."
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

    run_t = np.where(has_step, t[run_start[np.maximum(ls, 0)]], NAT)
    entered = np.where(is_closed, t[np.maximum(lo, 0)], run_t)
    fd = first_dated[leads]
    first_seen = np.where(fd >= 0, t[np.maximum(fd, 0)], NAT)
    ld = last_dated[leads]
    last_act = np.where(ld >= 0, t[np.maximum(ld, 0)], NAT)

    def days(since: np.ndarray) -> np.ndarray:
        out = np.full(since.size, np.nan)
        ok = since != NAT
        out[ok] = (T - since[ok]) / DAY_NS
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
            "entered_stage_at": to_datetimes(entered, tz),
            "days_in_stage": days(entered),
            "first_seen_at": to_datetimes(first_seen, tz),
            "age_days": days(first_seen),
        }
    )
    if amount and amount in log.columns:
        out[AMOUNT] = _last_valid(log[amount].astype("float64"), ev, leads, keep)
    else:
        out[AMOUNT] = np.nan
    for s in segs:
        out[s] = _last_valid(log[s], ev, leads, keep)
    out["last_activity_at"] = to_datetimes(last_act, tz)
    out["flag"] = pd.Categorical.from_codes(flag, categories=list(SNAPSHOT_FLAGS))
    if include_closed:
        oc = np.full(leads.size, "open", dtype=object)
        oc[is_closed] = np.where(ev.is_won[lo[is_closed]], "won", "lost")
        out["outcome"] = pd.Categorical(oc, categories=["open", "won", "lost"])
        out["closed_at"] = to_datetimes(np.where(is_closed, t[np.maximum(lo, 0)], NAT), tz)
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
        "excluded_undated": excl_undated + later_undated,
        "notes": notes,
    }
    return out


def _run(fn, log, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fn(log, **kw)
    return out, [(x.category, str(x.message)) for x in w]


def assert_same_snapshot(log, **kw):
    want, w_want = _run(reference_snapshot, log, **kw)
    got, w_got = _run(pipeline.snapshot, log, **kw)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.attrs["as_of"] == want.attrs["as_of"]
    assert got.attrs["stage_set"] is want.attrs["stage_set"] or got.attrs["stage_set"] == want.attrs["stage_set"]
    assert got.attrs["excluded_undated"] == want.attrs["excluded_undated"]
    assert got.attrs["notes"] == want.attrs["notes"]
    assert w_got == w_want
    return got


# ---------------------------------------------------------------------------
# the demo
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo():
    return fk.datasets.load_demo()


@pytest.mark.parametrize("as_of", [None, "2025-06-30", "2024-01-15 10:30", "1990-01-01", "2030-01-01"])
@pytest.mark.parametrize("include_closed", [False, True])
def test_demo(demo, as_of, include_closed):
    snap = assert_same_snapshot(demo, as_of=as_of, include_closed=include_closed)
    if as_of == "2025-06-30" and not include_closed:
        assert len(snap) == 931  # the docstring's counts


@pytest.mark.parametrize("kw", [{"segments": []}, {"segments": "owner"}, {"amount": None},
                                {"stages": "pipeline4"}])
def test_demo_options(demo, kw):
    assert_same_snapshot(demo, as_of="2025-03-31", include_closed=True, **kw)


def test_generated_log_sorted_in_its_own_unit():
    log = fk.datasets.make_events(5000, seed=3)  # microsecond times, Arrow ids, lead-sorted
    for as_of in (None, "2024-06-30"):
        assert_same_snapshot(log, stages="pipeline4", as_of=as_of, include_closed=True)
    ev = pipeline._snapshot_events(log, fk.get_stage_set("pipeline4"), lead=LEAD, stage=STAGE, time=TIME)
    assert ev.idx is None and ev.unit == 1000
    assert ev.lc.dtype == np.int32 and ev.lab.dtype == np.int8
    assert np.shares_memory(ev.t, log[TIME].array.asi8)  # no copy of the times


# ---------------------------------------------------------------------------
# hostile logs
# ---------------------------------------------------------------------------
def _messy(seed: int, n: int = 2500) -> pd.DataFrame:
    return messy(seed, n, leads=350, tied=3)


AS_OFS = [None, "2024-01-20", "2024-02-10 12:00", "2023-06-01", "2024-12-31"]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ids", ["str", "object", "int", "category"])
def test_hostile_logs(seed, ids):
    df = _messy(seed)
    if ids == "int":
        df["lead_id"] = df["lead_id"].str[1:].astype(int)
    elif ids == "object":
        df["lead_id"] = df["lead_id"].astype(object)
    elif ids == "category":
        df["lead_id"] = df["lead_id"].astype("category")
    for as_of in AS_OFS:
        for include_closed in (False, True):
            assert_same_snapshot(df, stages="pipeline4", as_of=as_of, include_closed=include_closed)


@pytest.mark.parametrize("seed", range(2))
def test_hostile_logs_sorted_and_in_other_units(seed):
    df = _messy(seed).sort_values(["lead_id", "timestamp"], na_position="first", kind="stable")
    for unit in ("s", "ms", "us", "ns"):
        d = df.assign(timestamp=df["timestamp"].dt.as_unit(unit))
        for as_of in AS_OFS:
            assert_same_snapshot(d, stages="pipeline4", as_of=as_of, include_closed=True)


@pytest.mark.parametrize("seed", range(2))
def test_time_zone_aware_logs(seed):
    log = in_paris(_messy(seed))
    for as_of in AS_OFS + [pd.Timestamp("2024-01-25 03:00", tz="UTC")]:
        for include_closed in (False, True):
            assert_same_snapshot(log, as_of=as_of, include_closed=include_closed)


def test_edge_logs():
    base = pd.DataFrame(
        {
            "lead_id": ["a", "a", "b", "c", "c", "c"],
            "stage": ["qualification", "won", "lost", "meeting", "qualification", "meeting"],
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-03", None, "2024-01-02", "2024-01-04",
                                         "2024-01-05"]),
        }
    )
    for log in (base, base.iloc[:0], base.iloc[2:3], base.assign(timestamp=pd.NaT),
                base.iloc[[1, 2]], base.iloc[::-1]):
        for as_of in (None, "2024-01-02", "2024-01-04 12:00", "2023-12-01", "2024-03-01"):
            for include_closed in (False, True):
                assert_same_snapshot(log, stages="pipeline4", as_of=as_of, include_closed=include_closed,
                                     segments=[], amount=None)


def test_errors_are_the_same(demo):
    bad = demo.assign(stage=demo["stage"].astype(object).where(demo.index != 3, "nope"))
    with pytest.raises(InvalidEventLogError) as ours:
        pipeline.snapshot(bad)
    with pytest.raises(InvalidEventLogError) as theirs:
        reference_snapshot(bad)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(InvalidEventLogError, match="not datetimes"):
        pipeline.snapshot(demo.assign(timestamp=demo["timestamp"].astype(str)))
    with pytest.raises(InvalidEventLogError, match="no lead id"):
        pipeline.snapshot(demo.assign(lead_id=demo["lead_id"].where(demo.index != 5)))


# ---------------------------------------------------------------------------
# real logs (../shared/data, see its SOURCES.md)
# ---------------------------------------------------------------------------
@pytest.mark.shared
def test_road_traffic_fines(shared_data):
    log = fines_four_steps(shared_data)
    for as_of in ("2005-06-30", "2012-12-31", None):  # the last: the whole log
        snap = assert_same_snapshot(log, as_of=as_of, include_closed=True, segments=["vehicleClass"])
    # SOURCES.md: 150,370 fines; 69,715 paid, 59,013 sent for credit collection, 2,126 both
    assert len(snap) == 150_370
    assert int((snap["outcome"] != "open").sum()) == 69_715 + 59_013 - 2_126


@pytest.mark.shared
@pytest.mark.parametrize("name", ["DomesticDeclarations.xes.gz", "RequestForPayment.xes.gz"])
def test_bpic2020(shared_data, name):
    path = shared_data / "bpic2020" / name
    ss, ignore = bpic2020_first_step(path)
    for tz in ("UTC", "Europe/Amsterdam"):
        log = fk.read_xes(path, stages=ss, ignore=ignore, tz=tz)
        for as_of in (None, "2018-06-30"):
            assert_same_snapshot(log, as_of=as_of, include_closed=True)
