"""Sums of amounts where none is known are unknown (NaN), never 0: pipeline and funnel views.

A web funnel or a process log without amounts, or a CRM export whose deals get a value only
when they close, said "value 0", "coverage 0%", "revenue 0" and "weighted amount 0".
Where some amounts are known the sums stay sums of the known ones, with the count of the
unknown beside them, as before.  Every number is recounted with pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk

AS_OF = "2025-06-30"


@pytest.fixture(scope="module")
def demo():
    return fk.datasets.load_demo()


@pytest.fixture(scope="module")
def mixed(demo):
    """The demo with the amounts of every lead open in 'qualification' at AS_OF removed, and
    of half the leads open in 'meeting': one stage all unknown, one partly known."""
    snap = fk.pipeline.snapshot(demo, as_of=AS_OF)
    qual = snap.loc[snap["stage"] == "qualification", "lead_id"]
    meet = snap.loc[snap["stage"] == "meeting", "lead_id"].iloc[::2]
    log = demo.copy()
    log.loc[log["lead_id"].isin(set(qual) | set(meet)), "amount"] = np.nan
    return log


def test_stage_summary_and_coverage(demo, mixed):
    snap = fk.pipeline.snapshot(mixed, as_of=AS_OF)
    s = fk.pipeline.stage_summary(snap).set_index("stage")
    op = snap[snap["outcome"] == "open"] if "outcome" in snap.columns else snap
    by_hand = op.groupby("stage", observed=True)["amount"].agg(["size", "count", "sum"])
    for st, r in by_hand.iterrows():
        assert s.loc[st, "leads"] == r["size"]
        assert s.loc[st, "value_unknown"] == r["size"] - r["count"]
        if r["count"] == 0:
            assert np.isnan(s.loc[st, "value"])
        else:
            assert s.loc[st, "value"] == pytest.approx(r["sum"], rel=1e-12)
    assert np.isnan(s.loc["qualification", "value"])
    assert 0 < s.loc["meeting", "value_unknown"] < s.loc["meeting", "leads"]
    cov = fk.pipeline.coverage(mixed, target=1_000_000, as_of=AS_OF).iloc[0]
    assert cov["open_value"] == pytest.approx(op["amount"].sum(), rel=1e-12)  # known ones, partly
    none = fk.pipeline.coverage(demo.drop(columns=["amount"]), target=1_000_000, as_of=AS_OF).iloc[0]
    assert np.isnan(none["open_value"]) and np.isnan(none["coverage"])
    assert none["value_unknown"] == none["open_leads"] == len(op)


def test_weighted_pipeline(demo, mixed):
    wp = fk.forecast.weighted_pipeline(mixed, as_of=AS_OF).set_index("stage")
    snap = fk.pipeline.snapshot(mixed, as_of=AS_OF)
    op = snap[snap["outcome"] == "open"] if "outcome" in snap.columns else snap
    by_hand = op.groupby("stage", observed=True)["amount"].agg(["size", "count", "sum"])
    for st, r in by_hand.iterrows():
        assert wp.loc[st, "amount_unknown"] == r["size"] - r["count"]
        if r["count"] == 0:
            assert np.isnan(wp.loc[st, "open_amount"]) and np.isnan(wp.loc[st, "weighted_amount"])
        else:
            assert wp.loc[st, "open_amount"] == pytest.approx(r["sum"], rel=1e-12)
            assert wp.loc[st, "weighted_amount"] == pytest.approx(r["sum"] * wp.loc[st, "probability"], rel=1e-12)
    assert list(wp.reset_index().columns[:5]) == ["stage", "open_leads", "open_amount", "amount_unknown",
                                                  "probability"]
    full = fk.forecast.weighted_pipeline(demo, as_of=AS_OF)
    assert (full["amount_unknown"] == 0).all() and full["weighted_amount"].notna().all()


def test_metrics_and_rep_performance(demo):
    log = demo.drop(columns=["amount"])
    m = fk.pipeline.metrics(log).iloc[0]
    assert m["won"] > 0
    assert np.isnan(m["revenue"]) and np.isnan(m["sales_per_account"]) and np.isnan(m["clv"])
    reps = fk.pipeline.rep_performance(log)
    assert reps.loc[reps["won"] > 0, "revenue"].isna().all()
    # with amounts: the sums as pandas counts them (won leads' amounts)
    full = fk.pipeline.metrics(demo).iloc[0]
    won = demo[demo["stage"] == "won"].groupby("lead_id")["amount"].first()
    assert full["revenue"] == pytest.approx(won.sum(), rel=1e-12)
    r = fk.pipeline.rep_performance(demo).set_index("owner")
    by_rep = demo[demo["stage"] == "won"].groupby("lead_id")[["amount", "owner"]].first().groupby("owner")["amount"]
    pd.testing.assert_series_equal(r.loc[by_rep.sum().index, "revenue"], by_rep.sum(), check_names=False,
                                   rtol=1e-12)


def test_funnel_conversion_amounts(demo):
    """conversion's amount_entered: NaN where no lead that entered the step has an amount; the
    sum of the known ones where some do (leads that stopped at qualification lose theirs)."""
    none = fk.funnel.conversion(demo.assign(amount=np.nan))
    assert none["amount_entered"].isna().all() and none["amount_converted"].isna().all()
    assert (none["entered"] > 0).all()
    steps = ["qualification", "meeting", "proposal", "close", "won"]
    reached = demo.groupby("lead_id")["stage"].agg(lambda s: max(steps.index(x) for x in s if x in steps))
    amount = demo.groupby("lead_id")["amount"].first()
    amount[reached == 0] = np.nan
    log = demo.copy()
    log["amount"] = log["lead_id"].map(amount)
    c = fk.funnel.conversion(log).set_index("step")
    for k, st in enumerate(steps):
        assert c.loc[st, "entered"] == (reached >= k).sum()
        assert c.loc[st, "amount_entered"] == pytest.approx(amount[reached >= k].sum(), rel=1e-12)
    only_first = demo.copy()  # amounts only for the leads that never got past qualification
    only_first.loc[only_first["lead_id"].map(reached) >= 1, "amount"] = np.nan
    c1 = fk.funnel.conversion(only_first).set_index("step")
    assert np.isfinite(c1.loc["qualification", "amount_entered"])
    assert c1.loc[steps[1:], "amount_entered"].isna().all()


def test_activity_values(demo):
    """activity: won_value and open_value_at_end are NaN where the period has such deals and
    none has an amount; with amounts, the sums pandas makes."""
    none = fk.pipeline.activity(demo.drop(columns=["amount"]), start="2025-01-01")
    assert "won_value" not in none.columns and none["open_value_at_end"].isna().all()  # no amount column
    blank = demo.assign(amount=np.nan)
    act = fk.pipeline.activity(blank, start="2025-01-01")
    assert act.loc[act["won"] > 0, "won_value"].isna().all()
    assert act.loc[act["open_at_end"] > 0, "open_value_at_end"].isna().all()
    full = fk.pipeline.activity(demo, start="2025-07-01")
    for _, r in full.iterrows():
        snap = fk.pipeline.snapshot(demo, as_of=r["period_end"])
        assert r["open_value_at_end"] == pytest.approx(snap["amount"].sum(), rel=1e-12)
    won = demo[demo["stage"] == "won"]
    per = won.groupby(won["timestamp"].dt.to_period("M"))["amount"].sum()
    got = full.set_index(full["period"].dt.to_period("M"))["won_value"]
    pd.testing.assert_series_equal(got.loc[per.index.intersection(got.index)],
                                   per.loc[per.index.intersection(got.index)], check_names=False, rtol=1e-12)
