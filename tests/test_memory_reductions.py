"""The lean helpers of pipeline.durations (and the funnel) against the plain expressions they
replace: same values, smaller arrays (see benchmarks/bench_read.py for the memory)."""

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import funnel, pipeline
from funnelkit._common import DAY_NS, NAT
from funnelkit.data import checked_leads, checked_order, stage_order
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
