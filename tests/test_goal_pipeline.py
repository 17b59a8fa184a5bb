"""The pipeline view of a stage set without a won outcome: a lead at its goal is not open.

A web or marketing funnel (awareness > interest > desire > action) has no won outcome; its last
stage is its goal.  A visitor who bought is done, not "open at action": before, the pipeline
views counted them as open, and the AIDA report said "3,037 visitors were open, worth 25,096",
25,096 being what the 266 buyers had spent, and "Open visitors went from 3,037 to 3,037".
Every count here is recounted from the raw events with pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import pipeline
from funnelkit.reports import MonthlyReport
from funnelkit.reports import sections as S

AS_OF = pd.Timestamp("2025-10-31 23:59:59.999999999")


@pytest.fixture(scope="module")
def marketing():
    return fk.datasets.load_marketing_demo(n_visitors=3000)


def _known_and_at_goal(log, T, goal="action"):
    """Leads with an event by T, and those among them that reached the goal by T (pandas)."""
    seen = log.loc[log["timestamp"] <= T]
    known = set(seen["lead_id"])
    at_goal = set(seen.loc[seen["stage"] == goal, "lead_id"])
    return known, at_goal


def test_snapshot_leaves_the_goal_out_of_the_open_pipeline(marketing):
    known, at_goal = _known_and_at_goal(marketing, AS_OF)
    snap = pipeline.snapshot(marketing, as_of=AS_OF)
    assert len(at_goal) > 50
    assert set(snap["lead_id"]) == known - at_goal
    assert "action" not in set(snap["stage"].astype(str))
    closed = pipeline.snapshot(marketing, as_of=AS_OF, include_closed=True)
    assert set(closed["lead_id"]) == known
    won = closed.loc[closed["outcome"] == "won"]
    assert set(won["lead_id"]) == at_goal and (won["stage"].astype(str) == "action").all()
    assert (closed.loc[closed["outcome"] == "open", "stage"].astype(str) != "action").all()


def test_open_value_is_not_what_the_buyers_spent(marketing):
    """Amounts are order values on action: none of them is open pipeline value."""
    known, at_goal = _known_and_at_goal(marketing, AS_OF)
    cov = pipeline.coverage(marketing, target=10_000, as_of=AS_OF).iloc[0]
    assert cov["open_leads"] == len(known - at_goal)
    assert cov["value_unknown"] == len(known - at_goal)  # no open visitor has an amount
    assert np.isnan(cov["open_value"]) and np.isnan(cov["coverage"])


def test_activity_open_at_end_of_each_month(marketing):
    act = pipeline.activity(marketing)
    assert len(act) >= 12
    for row in act.itertuples():
        known, at_goal = _known_and_at_goal(marketing, row.period_end)
        assert row.open_at_end == len(known - at_goal), row.period


def test_movement_counts_the_goal_as_the_way_out(marketing):
    start = pd.Timestamp("2025-09-30 23:59:59.999999999")
    mv = pipeline.movement(marketing, start=start, end=AS_OF).set_index("movement")["leads"]
    known0, goal0 = _known_and_at_goal(marketing, start)
    known1, goal1 = _known_and_at_goal(marketing, AS_OF)
    assert mv["start"] == len(known0 - goal0)
    assert mv["end"] == len(known1 - goal1)
    assert mv["entered"] == len(known1 - known0)
    assert mv["won"] == len(goal1 - goal0) > 0 and mv["lost"] == 0
    assert mv["start"] + mv["entered"] - mv["won"] - mv["lost"] == mv["end"]


def test_lead_cycle_ends_at_the_goal_by_default(marketing):
    default = pipeline.lead_cycle(marketing)
    explicit = pipeline.lead_cycle(marketing, end="action")
    pd.testing.assert_frame_equal(default, explicit)
    # the cycle of every buyer: first awareness to first action, recounted
    first = marketing.pivot_table(index="lead_id", columns="stage", values="timestamp", aggfunc="min",
                                  observed=True)
    days = ((first["action"] - first["awareness"]).dropna() / pd.Timedelta(days=1)).sort_index()
    got = default.set_index("lead_id")["days"].sort_index()
    np.testing.assert_allclose(got.to_numpy(), days.loc[got.index].to_numpy(), rtol=0, atol=1e-9)
    assert len(got) == len(days)


def test_single_step_sets_still_count_their_stage_as_open():
    """One-step milestone sets (no won, one step) have no goal to reach: their leads stay open."""
    log = fk.validate_events(pd.DataFrame({"lead_id": ["a", "b"], "stage": ["signup", "signup"],
                                           "timestamp": pd.to_datetime(["2025-01-01", "2025-01-02"])}),
                             stages=fk.StageSet("one", ["signup"]))
    assert len(pipeline.snapshot(log)) == 2


@pytest.fixture(scope="module")
def report(tmp_path_factory, marketing):
    path = tmp_path_factory.mktemp("aida") / "events.csv"
    marketing.to_csv(path, index=False)
    return MonthlyReport.prepare(path, stages="aida", segment_column="channel", segment_value="email",
                                 month="2025-10", noun="visitors", check_months=0)


def test_report_counts_reaching_the_goal_as_won(report, marketing):
    """The report of a funnel without a won outcome counts a visitor reaching its goal as won: its
    headline had no wins, revenue, win rate or forecast ("not defined"), while its pipeline
    called the buyers open.  Won and revenue recounted from the raw events."""
    assert report.goal_won and report.stages.won == "action" and report.stages.steps == ("awareness", "interest",
                                                                                          "desire", "action")
    email = marketing.loc[marketing["channel"] == "email"]
    bought = email.loc[(email["stage"] == "action") & (email["timestamp"] >= "2025-10-01")
                       & (email["timestamp"] < "2025-11-01")]
    h = report.headline.set_index("metric")["value"]
    assert h["won"] == bought["lead_id"].nunique() > 0
    assert h["revenue"] == pytest.approx(bought["amount"].sum(), rel=1e-12)
    assert h["win_rate"] == pytest.approx(h["won"] / (h["won"] + h["lost"]))  # decided: won or stalled
    text = S.headline(report).text
    assert "its last stage, action, is its goal, so a visitor reaching it counts as won here" in text
    assert "not defined" not in text
    assert "won or stalled" in S.outcomes(report).html


def test_report_pipeline_and_movement_sections(report):
    log = report.log
    known, at_goal = _known_and_at_goal(log, report.as_of)
    text = S.pipeline(report).text
    assert f"{len(known - at_goal):,} visitors were open" in text
    assert "worth" not in text.split(".")[0]  # no value: the buyers' spend is not open value
    mv = S.waterfall(report).text
    start = report.start - pd.Timedelta(1, "ns")
    k0, g0 = _known_and_at_goal(log, start)
    assert mv.startswith(f"Open visitors went from {len(k0 - g0):,} on {start:%Y-%m-%d} to "
                         f"{len(known - at_goal):,} on 2025-10-31: 0 entered, {len(at_goal - g0):,} were won")


def test_report_bottleneck_says_when_a_stage_has_no_median(report):
    sec = S.bottleneck(report)
    assert "won visitor's cycle" in sec.text
    assert "–" not in sec.text  # a stage with no median says so in words, not a dash
    res = sec.data
    assert "action" not in set(res["stage"].astype(str))  # no time is spent "in" the goal
    assert np.isclose(res["won_share"].sum(), 1.0)
    flagged = res.loc[res["bottleneck"]].iloc[0]
    assert np.isnan(flagged["median_days"])  # desire: most visitors never leave it
    assert "Over half of the visitors that enter it have not left it, so it has no median time." in sec.text


def test_report_forecasts_reaching_the_goal(tmp_path, marketing):
    from funnelkit import forecast as F

    path = tmp_path / "events.csv"
    marketing.to_csv(path, index=False)
    rep = MonthlyReport.prepare(path, stages="aida", month="2025-10", noun="visitors", check_months=0)
    text = S.forecast(rep).text
    assert "needs a won outcome" not in text
    horizon = pd.Timestamp("2025-11-30 23:59:59.999999999") - rep.as_of
    total = F.forecast(rep.log, as_of=rep.as_of, horizon=horizon, stages=rep.stages, seed=0,
                       new_leads=True).total.iloc[0]
    assert f"about {total['expected_wins']:,.1f} wins" in text


def test_web_funnel_snapshot_real_log(ecommerce_log):
    """The real e-commerce funnel (home > search > payment > confirmation, 90,400 visitors, 452
    confirmed): the open pipeline at the end is every visitor but the 452."""
    log = ecommerce_log
    T = log["timestamp"].max()
    known, at_goal = _known_and_at_goal(log, T, goal="confirmation")
    assert len(known) == 90_400 and len(at_goal) == 452
    snap = pipeline.snapshot(log, as_of=T)
    assert len(snap) == 90_400 - 452
    assert set(snap["lead_id"]) == known - at_goal
    by_device = snap.groupby("device", observed=True).size()
    confirmed = log.loc[log["stage"] == "confirmation"].groupby("device", observed=True)["lead_id"].nunique()
    every = log.groupby("device", observed=True)["lead_id"].nunique()
    pd.testing.assert_series_equal(by_device, (every - confirmed).rename(None), check_names=False)
