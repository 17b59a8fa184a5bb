"""The lean helpers of pipeline.durations (and the funnel) against the plain expressions they
replace: same values, smaller arrays (see benchmarks/bench_read.py for the memory)."""

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import funnel, pipeline
from funnelkit._common import DAY_NS, NAT, known_mask
from funnelkit.data import checked_leads, checked_order, checked_times, stage_order
from funnelkit.exceptions import InvalidEventLogError


@pytest.fixture
def log():
    return fk.datasets.make_events(3000, seed=5)


def _messy(seed: int, n: int = 2000) -> pd.DataFrame:
    """Leads revisiting stages in any order, ties, missing times and segments."""
    rng = np.random.default_rng(seed)
    labels = list(fk.get_stage_set("pipeline4").labels)
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 60, n), unit="D")
    out = pd.DataFrame(
        {
            "lead_id": [f"L{x:04d}" for x in rng.integers(0, 300, n)],
            "stage": pd.Categorical(rng.choice(labels, n)),
            "timestamp": t,
            "product": pd.Categorical(rng.choice(["a", "b", None], n)),
        }
    )
    out.loc[rng.random(n) < 0.05, "timestamp"] = pd.NaT
    return out


def test_per_category_is_the_lookup_over_int64_codes(log):
    ss = fk.get_stage_set("pipeline4")
    labels = list(ss.labels)
    col = log["stage"].astype(object).where(np.arange(len(log)) % 7 != 0)  # some missing
    got = funnel._per_category(col, lambda c: labels.index(ss.canonical(c)), -1)
    cat = pd.Categorical(col)
    lut = np.array([labels.index(ss.canonical(c)) for c in cat.categories] + [-1], dtype=np.int64)
    codes = cat.codes.astype(np.int64)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, lut[np.where(codes < 0, len(lut) - 1, codes)])


def test_stage_order_equals_checked_order_and_raises_the_same(log):
    ss = fk.get_stage_set("pipeline4")
    np.testing.assert_array_equal(funnel._stage_order(log, ss, "stage"), stage_order(log, ss))
    bad = log.assign(stage=log["stage"].astype(object).where(log.index != 3, "nope"))
    with pytest.raises(InvalidEventLogError) as ours:
        funnel._stage_order(bad, ss, "stage")
    with pytest.raises(InvalidEventLogError) as theirs:
        checked_order(bad, ss)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("how", ["sorted", "shuffled", "object", "int", "descending"])
def test_lead_codes_equal_checked_leads(log, how):
    df = {
        "sorted": log,
        "shuffled": log.sample(frac=1, random_state=1),
        "object": log.astype({"lead_id": object}),
        "int": log.assign(lead_id=log["lead_id"].str[1:].astype(int)),
        "descending": log.iloc[::-1],
    }[how]
    codes, ids = funnel._lead_codes(df, "lead_id")
    want_codes, want_ids = checked_leads(df)
    assert codes.dtype == np.int32
    np.testing.assert_array_equal(codes, want_codes)
    pd.testing.assert_index_equal(ids, want_ids)


def test_lead_codes_blank_id_is_the_same_error(log):
    df = log.assign(lead_id=log["lead_id"].where(log.index != 4))
    with pytest.raises(InvalidEventLogError, match="no lead id"):
        funnel._lead_codes(df, "lead_id")


def test_positions_and_last_per_lead():
    rng = np.random.default_rng(0)
    lc = np.sort(rng.integers(0, 50, 1000))
    mask = rng.random(1000) < 0.3
    assert pipeline._positions(mask).dtype == np.int32
    np.testing.assert_array_equal(pipeline._positions(mask), np.flatnonzero(mask))
    _, want = pipeline._first_last(lc, mask, 60)
    for block in (7, 64, 1 << 20):  # a lead spanning blocks keeps its last position
        np.testing.assert_array_equal(pipeline._last_per_lead(lc, mask, 60, block=block), want)


def test_sort_index_is_lexsort_or_none(log):
    lc, _ = checked_leads(log)
    t = log["timestamp"].to_numpy("datetime64[ns]").view(np.int64)
    key = np.zeros(len(log), dtype=np.int16)
    assert pipeline._sort_index(lc, t, key) is None
    p = np.random.default_rng(1).permutation(len(log))
    np.testing.assert_array_equal(pipeline._sort_index(lc[p], t[p], key[p]), np.lexsort((key[p], t[p], lc[p])))


def test_kept_events_is_the_undated_rule():
    lc = np.array([0, 0, 1, 1, 2, 3])
    t = np.array([NAT, 5, NAT, 9, NAT, 3])
    for T, n_leads in ((6, 4), (9, 4), (2, 4)):
        dated = t != NAT
        le = dated & (t <= T)
        n_dated = np.bincount(lc[dated], minlength=n_leads)
        present = (np.bincount(lc[le], minlength=n_leads) > 0) | ((n_dated == 0) & (T >= t[dated].max()))
        keep, excluded = pipeline._kept_events(lc, t, n_leads, np.int64(T))
        np.testing.assert_array_equal(keep, le | (~dated & present[lc]))
        assert excluded == int(((n_dated == 0) & ~present).sum())
    keep, excluded = pipeline._kept_events(lc[1:2], t[1:2], 1, np.int64(5))  # the all-kept shortcut
    assert keep.tolist() == [True] and excluded == 0


def test_visit_days():
    entered = np.array([0, 0, NAT, 0])
    left = np.array([DAY_NS, NAT, DAY_NS, NAT])
    open_ = np.array([False, False, False, True])
    got = pipeline._visit_days(entered, left, open_, np.int64(3 * DAY_NS))
    np.testing.assert_array_equal(got, [1.0, np.nan, np.nan, 3.0])


def _visits(seed):
    """Visits in lead-then-time order, with repeat visits to a stage."""
    rng = np.random.default_rng(seed)
    vlead = np.sort(rng.integers(0, 40, 400)).astype(np.int32)
    stage = rng.integers(0, 4, 400).astype(np.int8)
    days = rng.random(400) * 10
    days[rng.random(400) < 0.1] = np.nan
    return vlead, stage, days


@pytest.mark.parametrize("seed", range(5))
def test_visit_numbers_and_per_stage_equal_the_sort_by_key(seed):
    vlead, stage, days = _visits(seed)
    visit_no, repeat, first_of = pipeline._visit_numbers(vlead, stage, 4)
    # the plain way: a stable sort of every visit by (lead, stage)
    key = vlead.astype(np.int64) * 4 + stage
    srt = np.argsort(key, kind="stable")
    ks = key[srt]
    new = np.r_[True, ks[1:] != ks[:-1]]
    g_start = np.flatnonzero(new)
    run_id = np.cumsum(new) - 1
    want_no = np.empty(key.size, dtype=np.int64)
    want_no[srt] = np.arange(ks.size) - g_start[run_id] + 1
    np.testing.assert_array_equal(visit_no, want_no)
    np.testing.assert_array_equal(np.sort(repeat), np.flatnonzero(want_no > 1))
    np.testing.assert_array_equal(key[first_of], key[repeat])
    assert (want_no[first_of] == 1).all()

    g_end = np.r_[g_start[1:], ks.size] - 1
    first_i, last_i = srt[g_start], srt[g_end]
    d_sorted = days[srt]
    cum = np.add.reduceat(np.nan_to_num(d_sorted), g_start)
    any_unk = np.add.reduceat(np.isnan(d_sorted).astype(np.int64), g_start) > 0
    back = np.argsort(first_i, kind="stable")
    first = pipeline._positions(visit_no == 1)
    np.testing.assert_array_equal(first, first_i[back])
    last, n_vis, multi, summed, unknown = pipeline._per_stage(first, repeat, first_of, lambda v: days[v])
    np.testing.assert_array_equal(last, last_i[back])
    np.testing.assert_array_equal(n_vis, (g_end - g_start + 1)[back])
    cumulative = days[last].copy()
    cumulative[multi] = summed
    flag = np.isnan(days[last])
    flag[multi] = unknown
    np.testing.assert_array_equal(cumulative, np.where(any_unk, np.nan, cum)[back])  # bit for bit
    np.testing.assert_array_equal(flag, any_unk[back])


def test_lead_column_is_what_an_object_column_becomes(log):
    codes = np.array([2, 0, 2, 1], dtype=np.int32)
    for df in (log, log.assign(lead_id=log["lead_id"].str[1:].astype(int))):
        _, ids = checked_leads(df)
        want = pd.DataFrame({"lead_id": np.asarray(ids, dtype=object)[codes]})
        got = pd.DataFrame({"lead_id": pipeline._lead_column(ids, codes)}, copy=False)
        pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("per", ["stage", "visit"])
def test_durations_same_table_sorted_or_not(seed, per):
    df = _messy(seed)
    sorted_ = df.sort_values(["lead_id", "timestamp"], kind="stable", na_position="first")
    for as_of in (None, "2024-02-01"):
        a = pipeline.durations(df, stages="pipeline4", per=per, as_of=as_of)
        b = pipeline.durations(sorted_, stages="pipeline4", per=per, as_of=as_of)
        key = ["lead_id", "stage", "visits" if per == "stage" else "visit"]
        pd.testing.assert_frame_equal(
            a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
        )
        if per == "stage":
            known = a["cumulative_days"].notna()
            assert (a.loc[known, "cumulative_days"] >= a.loc[known, "latest_days"] - 1e-9).all()
            assert (a["visits"] >= 1).all() and a["visits"].max() > 1


# ---------------------------------------------------------------------------
# funnel._journeys (every funnel view): its lean helpers against what they replace
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "Europe/Paris"])
def test_event_times_are_checked_times_in_the_column_unit(unit, tz):
    t = pd.Series(pd.to_datetime(["2024-03-31 01:30:00", None, "1999-12-31 23:59:59", "2024-10-27 02:30:00"]))
    t = t.dt.as_unit(unit)
    if tz:
        t = t.dt.tz_localize("UTC").dt.tz_convert(tz)
    log = pd.DataFrame({"timestamp": t})
    got, unit_ns = funnel._event_times(log, "timestamp")
    want = checked_times(log)
    assert unit_ns == {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    assert np.shares_memory(got, log["timestamp"].array.asi8)  # no copy of the column
    np.testing.assert_array_equal(funnel._to_ns(got.copy(), unit_ns), want)
    # a time compares with an instant in ns through the floor of the instant in the unit
    for x in (int(want[0]), int(want[0]) - 1, int(want[2]) + 1):
        np.testing.assert_array_equal(got <= x // unit_ns, want <= x)
    assert funnel._as_of_ns("end", got, unit=unit_ns) == int(want.max())


def test_event_times_out_of_ns_range_and_non_datetimes_go_through_checked_times():
    far = pd.DataFrame({"timestamp": np.array(["2500-01-01", "NaT"], dtype="datetime64[s]")})
    got, unit_ns = funnel._event_times(far, "timestamp")
    assert unit_ns == 1
    np.testing.assert_array_equal(got, checked_times(far))
    with pytest.raises(InvalidEventLogError, match="not datetimes"):
        funnel._event_times(pd.DataFrame({"timestamp": ["2024-01-02"]}), "timestamp")


def test_as_of_end_is_the_latest_known_time():
    assert funnel._as_of_ns("end", np.array([NAT, 5, 3, NAT])) == 5
    assert funnel._as_of_ns("end", np.array([NAT, NAT])) == funnel._INF
    assert funnel._as_of_ns("end", np.array([], dtype=np.int64)) == funnel._INF
    assert funnel._as_of_ns(None, np.array([1])) is None


@pytest.mark.parametrize("block", [3, 64, 1 << 18])
def test_ends_per_lead_and_positions_equal_first_last_per_lead(block):
    rng = np.random.default_rng(2)
    lc = np.sort(rng.integers(0, 80, 2000)).astype(np.int32)
    for p in (0.0, 0.02, 0.4, 1.0):
        mask = rng.random(lc.size) < p
        pos = funnel._positions(mask, block=block)
        assert pos.dtype == np.int32
        np.testing.assert_array_equal(pos, np.flatnonzero(mask))
        first = funnel._ends_per_lead(lc, mask, 90, last=False, block=block)
        last = funnel._ends_per_lead(lc, mask, 90, last=True, block=block)
        assert first.dtype == last.dtype == np.int32
        np.testing.assert_array_equal(first, funnel._first_per_lead(lc, np.flatnonzero(mask), 90))
        np.testing.assert_array_equal(last, funnel._last_per_lead(lc, np.flatnonzero(mask), 90))


def test_known_events_is_known_mask():
    rng = np.random.default_rng(3)
    lc = rng.integers(0, 40, 500).astype(np.int32)
    t = rng.integers(0, 100, 500)
    t[rng.random(500) < 0.2] = NAT
    t[lc == 7] = NAT  # a lead with only undated events
    for as_of in (-1, 0, 50, 98, 99, 200):
        np.testing.assert_array_equal(funnel._known_events(lc, t, 40, as_of), known_mask(lc, t, as_of))


def test_sorted_index_is_lexsort_or_none(log):
    lc, _ = funnel._lead_codes(log, "lead_id")
    t, _ = funnel._event_times(log, "timestamp")
    key = funnel._stage_order(log, fk.get_stage_set("pipeline4"), "stage")
    assert funnel._sorted_index(lc, t, key) is None
    for p in (np.random.default_rng(1).permutation(len(log)), np.arange(len(log))[::-1]):
        np.testing.assert_array_equal(funnel._sorted_index(lc[p], t[p], key[p]), np.lexsort((key[p], t[p], lc[p])))
    # ties in time: the key orders them
    assert funnel._sorted_index(np.array([0, 0]), np.array([5, 5]), np.array([2, 1])).tolist() == [1, 0]


def _hostile(seed: int, tz=None, ids: str = "str") -> pd.DataFrame:
    df = _messy(seed).sample(frac=1, random_state=seed)  # shuffled, revisits, undated events
    df["amount"] = np.where(np.arange(len(df)) % 3 == 0, np.nan, np.arange(len(df), dtype=float))
    df.loc[df["lead_id"].isin(df["lead_id"].iloc[:4]), "timestamp"] = pd.NaT  # leads with only undated events
    if tz:
        df["timestamp"] = df["timestamp"].dt.tz_localize("UTC").dt.tz_convert(tz)
    if ids == "int":
        df["lead_id"] = df["lead_id"].str[1:].astype(int)
    elif ids == "object":
        df["lead_id"] = df["lead_id"].astype(object)
    return df


@pytest.mark.parametrize("seed, tz, ids", [(0, None, "str"), (1, "America/New_York", "object"), (2, None, "int")])
def test_journeys_same_on_sorted_and_shuffled_logs(seed, tz, ids):
    """The lean _journeys: a shuffled log gives the journeys of the sorted one (lead order aside)."""
    df = _hostile(seed, tz, ids)
    ss = fk.get_stage_set("pipeline4")
    for as_of in ("end", None, "2024-01-20", "2024-02-10"):
        for kw in ({}, {"mode": "strict", "window": "20D"}, {"mode": "any", "step_windows": {"meeting": "9D"}},
                   {"exclude": {"lost": ("qualification", "proposal")}}):
            a = funnel._journeys(df, ss, by=["product"], as_of=as_of, **kw)
            ids_a = a.lead_index.take(a.lead_take)
            b = funnel._journeys(df.iloc[np.argsort(ids_a.get_indexer(df["lead_id"]), kind="stable")], ss,
                                 by=["product"], as_of=as_of, **kw)
            assert b.lead_index.take(b.lead_take).equals(ids_a)
            for f in ("reached", "time", "inferred", "matured", "r", "outcome", "closed_at", "in_flight",
                      "excluded", "anchor", "last_event", "amount", "lost_kind"):
                np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
