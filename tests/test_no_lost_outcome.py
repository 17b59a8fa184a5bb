"""Stage sets with a won outcome but no lost one (a CRM that never marks deals lost, a
marketing-lead log of leads and closed deals): no win rate may read 100%.

`pipeline.metrics` said win_rate 1.0 and `pipeline.velocity` 1.0 (and a velocity four times the
one with losses marked) on the demo with its lost events removed, where `funnel.outcomes` said
10.7%.  Stalled leads (no outcome, not moved on within the horizon of their step) are the
losses there, as in `funnel.outcomes` and `rep_performance`.  Counts are recounted with pandas.
"""

from __future__ import annotations

import numpy as np
import pytest

import funnelkit as fk
from funnelkit import funnel, pipeline

NO_LOST = fk.StageSet("no lost", ["qualification", "meeting", "proposal", "close"], won="won")


@pytest.fixture(scope="module")
def demo():
    return fk.datasets.load_demo()


@pytest.fixture(scope="module")
def no_lost(demo):
    return demo[demo["stage"].astype(str) != "lost"].reset_index(drop=True)


def test_metrics_count_stalled_leads_as_the_losses(no_lost):
    m = pipeline.metrics(no_lost, stages=NO_LOST).iloc[0]
    o = funnel.outcomes(no_lost, stages=NO_LOST).iloc[0]
    won_by_hand = no_lost.loc[no_lost["stage"].astype(str) == "won", "lead_id"].nunique()
    assert m["won"] == won_by_hand == o["won"]
    assert m["lost"] == 0 and m["stalled"] == o["stalled"] > 0 and m["open"] == o["open"]
    assert m["won"] + m["stalled"] + m["open"] == m["leads"] == no_lost["lead_id"].nunique()
    assert m["win_rate"] == pytest.approx(m["won"] / (m["won"] + m["stalled"]), abs=1e-12)
    assert m["win_rate"] == pytest.approx(o["decided_win_rate"], abs=1e-12)
    assert m["win_rate"] < 0.2  # it said 1.0
    assert any("no lost outcome" in n for n in pipeline.metrics(no_lost, stages=NO_LOST).attrs["notes"])


def test_metrics_with_a_lost_outcome_are_unchanged(demo):
    m = pipeline.metrics(demo).iloc[0]
    per_lead = demo.groupby("lead_id")["stage"].agg(lambda s: s.astype(str).iloc[-1])
    won, lost = int((per_lead == "won").sum()), int((per_lead == "lost").sum())
    assert "stalled" not in pipeline.metrics(demo).columns
    assert (m["won"], m["lost"]) == (won, lost)
    assert m["win_rate"] == pytest.approx(won / (won + lost), abs=1e-12)


def test_velocity_counts_stalled_leads_as_closed_and_not_as_opportunities(no_lost):
    v = pipeline.velocity(no_lost, stages=NO_LOST).iloc[0]
    p = funnel.lead_progress(no_lost, stages=NO_LOST)
    stalled = (p["outcome"].astype(str) == "open") & ~p["in_flight"].astype(bool) & (p["steps_reached"] < 5)
    met = p["reached_meeting"].astype(bool)
    won = (p["outcome"].astype(str) == "won") & met
    assert v["won"] == int(won.sum())
    assert v["closed"] == int(won.sum() + (stalled & met).sum())
    assert v["win_rate"] == pytest.approx(won.sum() / (won.sum() + (stalled & met).sum()), abs=1e-12)
    assert v["win_rate"] < 0.5  # it said 1.0
    snap = pipeline.snapshot(no_lost, stages=NO_LOST)
    at_meeting_or_later = snap.loc[snap["stage"].cat.codes >= 1, "lead_id"]
    live = set(at_meeting_or_later) - set(p.loc[stalled, "lead_id"])
    assert v["opportunities"] == len(live)
    expected = v["opportunities"] * v["win_rate"] * v["avg_deal_size"] / v["cycle_days"]
    assert v["velocity_per_day"] == pytest.approx(expected, rel=1e-12)


def test_velocity_with_a_lookback_counts_leads_that_went_quiet_in_it(no_lost):
    v = pipeline.velocity(no_lost, stages=NO_LOST, lookback_days=180).iloc[0]
    p = funnel.lead_progress(no_lost, stages=NO_LOST)
    lo = no_lost["timestamp"].max() - np.timedelta64(180, "D")
    stalled = (p["outcome"].astype(str) == "open") & ~p["in_flight"].astype(bool) & (p["steps_reached"] < 5)
    met = p["reached_meeting"].astype(bool)
    won = (p["outcome"].astype(str) == "won") & met & (p["closed_at"] > lo)
    quiet = stalled & met & (p["last_event_at"] > lo)
    assert (v["won"], v["closed"]) == (int(won.sum()), int(won.sum() + quiet.sum()))


def test_velocity_with_a_lost_outcome_is_unchanged(demo):
    v = pipeline.velocity(demo).iloc[0]
    p = funnel.lead_progress(demo)
    met = p["reached_meeting"].astype(bool)
    closed = (p["outcome"].astype(str) != "open") & met
    assert v["closed"] == int(closed.sum())
    assert v["win_rate"] == pytest.approx(((p["outcome"].astype(str) == "won") & met).sum() / closed.sum(), abs=1e-12)


def test_without_a_won_outcome_there_is_no_rate():
    web = fk.datasets.load_marketing_demo(n_visitors=2000)
    assert np.isnan(pipeline.metrics(web, stages="aida")["win_rate"]).all()  # 0 / stalled would read 0%
    assert np.isnan(pipeline.velocity(web, stages="aida")["win_rate"]).all()
