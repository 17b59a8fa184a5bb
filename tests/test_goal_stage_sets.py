"""Stage sets without a won outcome (marketing and web funnels): the last stage is the goal.

Every view says the same thing about them: no win rate is given (NaN, not 0%), the leads that
reached the last stage are counted as having reached the goal (not as open), and a forecast
says that its "wins" are leads reaching that stage.  Each count is recounted with pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import funnel, parallel
from funnelkit.stages import SegmentStageSets


@pytest.fixture(scope="module")
def marketing():
    return fk.datasets.load_marketing_demo(n_visitors=2000)


def _reached(log, stage, by=None):
    hit = log.loc[log["stage"] == stage]
    return hit["lead_id"].nunique() if by is None else hit.groupby(by)["lead_id"].nunique()


def test_outcomes_count_the_goal_apart_and_give_no_win_rate(marketing):
    o = funnel.outcomes(marketing, stages="aida").iloc[0]
    assert o["won"] == 0 and o["lost"] == 0
    assert o["reached_goal"] == _reached(marketing, "action") > 0
    assert o["leads"] == marketing["lead_id"].nunique()
    assert o["won"] + o["stalled"] + o["open"] + o["reached_goal"] == o["leads"]
    # 0% would read "nobody converted"; there is no won outcome to rate
    assert np.isnan(o["decided_win_rate"]) and np.isnan(o["win_rate"])


def test_the_goal_is_not_open(marketing):
    """Before: a visitor who reached action counted as open, whatever its age."""
    o = funnel.outcomes(marketing, stages="aida", as_of=None).iloc[0]  # nothing stalls
    order = marketing["stage"].astype(str).map(fk.get_stage_set("aida").order)
    last = order.groupby(marketing["lead_id"].to_numpy()).max()
    assert o["open"] == int((last < 3).sum())
    assert o["reached_goal"] == int((last == 3).sum())


def test_outcomes_by_segment_one_core_and_parallel_agree(marketing):
    a = funnel.outcomes(marketing, stages="aida", by="channel")
    b = parallel.outcomes(marketing, stages="aida", by="channel", n_jobs=2)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    expected = _reached(marketing, "action", by="channel").reindex(a["channel"]).fillna(0).astype(int)
    assert a["reached_goal"].tolist() == expected.tolist()


def test_sets_with_a_won_outcome_have_no_goal_column():
    o = funnel.outcomes(fk.datasets.load_demo())
    assert "reached_goal" not in o.columns
    assert (o["won"] + o["lost"] + o["stalled"] + o["open"] == o["leads"]).all()


def test_segment_sets_where_one_has_no_won_have_no_goal_column(marketing):
    """Their shared milestones are entered > lost: a one-step set, whose goal would be entering."""
    log = marketing.assign(kind=np.where(marketing["channel"] == "email", "mail", "other"))
    sss = SegmentStageSets("kind", {"mail": "aida"}, default="aida")
    o = funnel.outcomes(log, stages=sss)
    assert "reached_goal" not in o.columns
    assert int(o["leads"].sum()) == log["lead_id"].nunique()


def test_a_forecast_says_a_win_is_reaching_the_last_stage(marketing):
    as_of = marketing["timestamp"].quantile(0.8)
    fc = fk.forecast.forecast(marketing, stages="aida", as_of=as_of, horizon="30D", n_draws=200, seed=0)
    assert fc.goal_ == "action"
    assert "wins (reaching 'action')" in repr(fc)
    assert any("no won outcome" in n and "'action'" in n for n in fc.notes_)
    assert "a win here is a lead reaching its last stage, action" in fc._repr_html_()
    # the open leads are those not at the goal yet, known by then
    known = marketing.loc[marketing["timestamp"] <= as_of]
    at_goal = known.loc[known["stage"] == "action", "lead_id"].unique()
    assert int(fc.total["open_leads"].iloc[0]) == known["lead_id"].nunique() - len(at_goal)


def test_a_forecast_with_a_won_outcome_has_no_goal():
    fc = fk.forecast.forecast(fk.datasets.load_demo(), as_of="2025-06-30", n_draws=100, seed=0)
    assert fc.goal_ is None
    assert "reaching" not in repr(fc)


def test_pipeline_metrics_count_the_goal_apart(marketing):
    m = fk.pipeline.metrics(marketing, stages="aida", by="channel").set_index("channel")
    expected = _reached(marketing, "action", by="channel").reindex(m.index).fillna(0).astype(int)
    assert m["reached_goal"].tolist() == expected.tolist()
    per_lead = marketing.groupby("lead_id")["channel"].first().value_counts().reindex(m.index)
    assert (m["open"] + m["stalled"] + m["reached_goal"] == per_lead).all()  # no won or lost outcome
    o = funnel.outcomes(marketing, stages="aida", by="channel").set_index("channel").reindex(m.index)
    assert m["stalled"].tolist() == o["stalled"].tolist() and m["open"].tolist() == o["open"].tolist()
    assert m["win_rate"].isna().all() and m["revenue"].isna().all()  # not 0% and 0: there is no won outcome
    assert any("no won outcome" in n for n in m.attrs["notes"])
    demo = fk.pipeline.metrics(fk.datasets.load_demo())
    assert "reached_goal" not in demo.columns and np.isfinite(demo["revenue"]).all()


def test_rep_performance_needs_a_won_outcome(marketing):
    """Every channel was 0% and 'no evidence of a difference' on a funnel where visitors bought."""
    with pytest.raises(fk.PipelineError, match="no won outcome.*funnel.compare"):
        fk.pipeline.rep_performance(marketing, owner="channel", stages="aida")
    c = funnel.compare(marketing, by="channel", stages="aida")  # the suggested fix runs
    assert set(c["channel"].dropna().astype(str)) >= set(marketing["channel"].astype(str))


def test_a_plan_without_amounts_has_no_mean_won_amount_in_any_row(marketing):
    """The recent-mix row said 0.0 where every segment's mean won amount is NaN."""
    p = fk.forecast.leads_needed(marketing, stages="aida", target_wins=20, by="channel", n_draws=400)
    assert p["mean_won_amount"].isna().all()
    assert (p["leads_needed"] > 0).all()
    demo = fk.forecast.leads_needed(fk.datasets.load_demo(), target_wins=20, n_draws=400)
    assert np.isfinite(demo["mean_won_amount"]).all()
