"""Tests of forecasting, the weighted-pipeline baseline, planning and backtests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from scipy import stats as st

import funnelkit as fk
from funnelkit import forecast as F
from funnelkit.plots.forecast import (
    backtest_chart,
    calibration_chart,
    fan_chart,
    target_chart,
)
from funnelkit.transitions import TransitionModel

PROP = fk.StageSet("prop", ["proposal"], won="won", lost=["lost"])
AS_OF = pd.Timestamp("2025-01-01")


def proposal_log(n_hist=1000, n_won=200, n_open=1000, resolve_days=10.0, amount=1000.0, open_age_days=0.0):
    """History of `n_hist` proposals (`n_won` won, the rest lost after `resolve_days`)
    and `n_open` leads in proposal at AS_OF that entered `open_age_days` before."""
    rows = []
    start = pd.Timestamp("2024-01-01")
    for i in range(n_hist):
        t = start + pd.Timedelta(hours=6 * i)
        rows.append((f"H{i:05d}", "proposal", t, amount))
        rows.append((f"H{i:05d}", "won" if i < n_won else "lost", t + pd.Timedelta(days=resolve_days), amount))
    for i in range(n_open):
        rows.append((f"O{i:05d}", "proposal", AS_OF - pd.Timedelta(days=open_age_days), amount))
    raw = pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp", "amount"])
    return fk.validate_events(raw, stages=PROP)


# ---------------------------------------------------------------------------
# the worked example: 20% of proposals convert, 1,000 now in proposal -> ~200 sales
# ---------------------------------------------------------------------------
def test_twenty_percent_of_a_thousand():
    log = proposal_log()
    f = F.forecast(log, as_of=AS_OF, horizon="365D", n_draws=4000, seed=1)
    t = f.total.iloc[0]
    assert t["open_leads"] == 1000
    assert t["expected_wins"] == pytest.approx(200, abs=2.5)
    assert t["expected_revenue"] == pytest.approx(200_000, abs=2500)
    # wins ~ Binomial(1000, p) with p ~ Beta(200, 800) (the Bayesian bootstrap
    # posterior of a 0/1 rate): a beta-binomial.  Its 80% interval is about
    # 200 +- 23, wider than the binomial's 200 +- 16 because the rate is uncertain.
    lo, hi = st.betabinom.ppf([0.1, 0.9], 1000, 200, 800)
    assert t["wins_low"] == pytest.approx(lo, abs=3)
    assert t["wins_high"] == pytest.approx(hi, abs=3)
    # the CRM baseline: 0.2 x 1000, with the binomial range only
    assert t["weighted_wins"] == pytest.approx(200)
    assert t["weighted_pipeline"] == pytest.approx(200_000)
    blo, bhi = st.binom.ppf([0.1, 0.9], 1000, 0.2)
    assert t["weighted_wins_low"] == pytest.approx(blo, abs=2)
    assert t["weighted_wins_high"] == pytest.approx(bhi, abs=2)
    assert f.baseline_probabilities_["proposal"] == pytest.approx(0.2)
    assert "open leads" in repr(f)


def test_horizon_shorter_than_the_cycle_gives_no_wins():
    log = proposal_log(n_open=100)
    f = F.forecast(log, as_of=AS_OF, horizon="9D", n_draws=300)
    assert f.total["expected_wins"].iloc[0] == 0
    assert f.total["p_no_win"].iloc[0] == 1.0
    # while the CRM still books 20% of the open pipeline
    assert f.total["weighted_wins"].iloc[0] == pytest.approx(20)


def test_stale_leads_are_worth_nothing_to_us_but_full_price_to_the_crm():
    log = proposal_log(n_open=50, open_age_days=300)
    with pytest.warns(fk.DataWarning, match="after the data ends"):  # nothing happened since
        f = F.forecast(log, as_of=AS_OF, horizon="90D", n_draws=300)
    assert (f.leads_["p_win"] == 0).all()
    assert f.leads_["stage_probability"].tolist() == pytest.approx([0.2] * 50)
    assert f.total["weighted_wins"].iloc[0] == pytest.approx(10)


# ---------------------------------------------------------------------------
# no leakage from after as_of
# ---------------------------------------------------------------------------
def test_forecast_uses_nothing_after_as_of(demo_log):
    cut = "2025-02-28"
    t_cut = pd.Timestamp(cut) + pd.Timedelta(days=1)
    future = demo_log["timestamp"] >= t_cut
    changed = demo_log.copy()
    changed.loc[future, "stage"] = "won"  # a rosy future that must not be seen
    changed.loc[future, "amount"] = 1e9
    kw = dict(as_of=cut, horizon="60D", freq="MS", n_draws=200, seed=3, by="product")
    a = F.forecast(demo_log, **kw)
    b = F.forecast(changed, **kw)
    c = F.forecast(fk.validate_events(demo_log.loc[~future].drop(columns="flag"), stages="pipeline4"), **kw)
    for x in (b, c):
        pd.testing.assert_frame_equal(a.summary, x.summary)
        pd.testing.assert_frame_equal(a.periods_, x.periods_)
        pd.testing.assert_frame_equal(a.leads_, x.leads_)


def test_model_fitted_after_as_of_is_refused(demo_log):
    tm = TransitionModel(n_samples=10).fit(demo_log, as_of="2025-06-30")
    with pytest.raises(F.ForecastError, match="seen the future"):
        F.forecast(demo_log, as_of="2025-03-31", model=tm)
    f = F.forecast(demo_log, as_of="2025-07-15", model=tm, n_draws=50)
    assert f.model_ is tm


def test_backtest_fits_only_on_the_past(demo_log):
    cut = "2025-01-31"
    bt = F.backtest(demo_log, cutoffs=[cut], horizon="60D", n_draws=150, seed=2, calibrate=False)
    t_cut = pd.Timestamp(cut) + pd.Timedelta(days=1)
    past = fk.validate_events(
        demo_log.loc[demo_log["timestamp"] < t_cut].drop(columns="flag"), stages="pipeline4"
    )
    f = F.forecast(past, as_of=cut, horizon="60D", n_draws=150, seed=2)
    row = bt.table.iloc[0]
    for k in ["expected_wins", "wins_low", "wins_high", "expected_revenue", "weighted_pipeline"]:
        assert row[k] == pytest.approx(float(f.total[k].iloc[0]))
    # the truth: leads open at the cutoff that won within the horizon
    prog = fk.funnel.lead_progress(demo_log)
    open_ids = set(fk.pipeline.snapshot(demo_log, as_of=cut)["lead_id"])
    end = pd.Timestamp(cut) + pd.Timedelta(days=1) - pd.Timedelta(1, "ns") + pd.Timedelta(days=60)
    won = prog[(prog["outcome"] == "won") & (prog["closed_at"] > t_cut - pd.Timedelta(1, "ns"))
               & (prog["closed_at"] <= end) & prog["lead_id"].isin(open_ids)]
    assert row["actual_wins"] == len(won)
    assert row["actual_revenue"] == pytest.approx(won["amount"].sum())


# ---------------------------------------------------------------------------
# tables add up
# ---------------------------------------------------------------------------
def test_periods_segments_and_draws_are_consistent(demo_log):
    f = F.forecast(demo_log, as_of="2025-05-31", horizon="92D", freq="MS", by="source", n_draws=300)
    p = f.periods_
    assert p["period_end"].dt.strftime("%Y-%m-%d").tolist() == ["2025-07-01", "2025-08-01", "2025-08-31"]
    t = f.total.iloc[0]
    assert p["expected_wins"].sum() == pytest.approx(t["expected_wins"])
    assert p["cum_expected_revenue"].iloc[-1] == pytest.approx(t["expected_revenue"])
    assert p["cum_wins_high"].is_monotonic_increasing
    s = f.summary
    assert sorted(s["source"]) == sorted(demo_log["source"].cat.categories)
    assert s["expected_wins"].sum() == pytest.approx(t["expected_wins"])
    assert s["open_leads"].sum() == t["open_leads"]
    assert s["weighted_pipeline"].sum() == pytest.approx(t["weighted_pipeline"])
    d = f.draws_
    assert len(d) == 300 * 4 * 3
    # expected values are exact (sums of each lead's probability); the draws agree within
    # Monte Carlo error
    per_draw = d.groupby("draw")["wins"].sum()
    assert abs(per_draw.mean() - t["expected_wins"]) < 4 * per_draw.std() / np.sqrt(300)
    assert f.probability_of(target_wins=0) == 1.0
    assert 0 < f.probability_of(target_revenue=t["expected_revenue"]) < 1
    assert len(f.leads_) == t["open_leads"]
    assert f.leads_["p_win"].sum() == pytest.approx(t["expected_wins"])


def test_weighted_pipeline_by_hand(demo_log):
    probs = {"qualification": 0.1, "meeting": 0.25, "proposal": 0.5, "close": 0.8}
    wp = F.weighted_pipeline(demo_log, as_of="2025-06-30", probabilities=probs, by="product")
    snap = fk.pipeline.snapshot(demo_log, as_of="2025-06-30")
    want = (snap["amount"] * snap["stage"].astype(str).map(probs)).sum()
    assert wp["weighted_amount"].sum() == pytest.approx(want)
    assert wp["open_leads"].sum() == len(snap)
    # learned probabilities: won / closed among leads that reached the stage
    sp = F.stage_probabilities(demo_log, as_of="2025-06-30").set_index("stage")
    assert sp["probability"].is_monotonic_increasing
    r = sp.loc["close"]
    assert r["probability"] == pytest.approx(r["won"] / (r["won"] + r["lost"]))
    with pytest.raises(F.ForecastError, match="no value for stage"):
        F.weighted_pipeline(demo_log, probabilities={"close": 0.5})
    with pytest.raises(F.ForecastError, match="not between 0 and 1"):
        F.weighted_pipeline(demo_log, probabilities={**probs, "close": 1.5})


# ---------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------
def instant_log(n=2000, p_won=0.5):
    """Proposals that resolve the moment they are made: half of them win."""
    rows = []
    start = pd.Timestamp("2024-01-01")
    for i in range(n):
        t = start + pd.Timedelta(hours=4 * i)
        rows.append((f"H{i:05d}", "proposal", t, 1000.0))
        rows.append((f"H{i:05d}", "won" if i % int(1 / p_won) == 0 else "lost", t, 1000.0))
    return fk.validate_events(pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp", "amount"]), stages=PROP)


def test_leads_needed_by_hand():
    log = instant_log()
    plan = F.leads_needed(log, target_wins=50, period="30D", confidence=0.8, by=None, n_draws=4000)
    assert len(plan) == 1
    r = plan.iloc[0]
    assert r["win_probability"] == pytest.approx(0.5, abs=0.01)
    assert r["pipeline_expected"] == 0
    # smallest N with P(Binomial(N, 1/2) >= 50) >= 0.8
    n_exact = next(n for n in range(50, 200) if st.binom.sf(49, n, 0.5) >= 0.8)
    assert abs(r["leads_needed"] - n_exact) <= 3
    assert r["probability_reached"] >= 0.8
    assert r["required_coverage"] == pytest.approx(r["leads_needed"] / 50)
    rev = F.leads_needed(log, target_revenue=50_000, period="30D", by=None, n_draws=4000).iloc[0]
    assert rev["leads_needed"] == r["leads_needed"]  # every deal is worth 1,000
    more = F.leads_needed(log, target_wins=100, period="30D", by=None, n_draws=4000).iloc[0]
    assert more["leads_needed"] > r["leads_needed"]


def test_leads_needed_per_source_on_demo(demo_log):
    plan = F.leads_needed(demo_log, target_revenue=2_000_000, as_of="2025-06-30", period="90D",
                          n_draws=400)
    assert sorted(plan["source"].tolist()[:-1]) == sorted(demo_log["source"].cat.categories)
    assert plan["source"].iloc[-1] == "(recent mix)"
    by_src = plan.set_index("source")
    # referral converts best, outbound worst: fewer referral leads are needed
    assert by_src.loc["referral", "leads_needed"] < by_src.loc["outbound", "leads_needed"]
    assert (plan["probability_reached"] >= 0.8).all()
    assert (plan["required_coverage"] > plan["pipeline_coverage"]).all()
    easy = F.leads_needed(demo_log, target_wins=1, as_of="2025-06-30", by=None, n_draws=200)
    assert easy["leads_needed"].iloc[0] == 0  # the open pipeline suffices


# ---------------------------------------------------------------------------
# backtest
# ---------------------------------------------------------------------------
def test_backtest_on_demo_small(demo_log):
    bt = F.backtest(demo_log, n_cutoffs=3, horizon="90D", n_draws=200, calibrate=False)
    t = bt.table
    assert len(t) == 3
    assert (t["cutoff"].diff().dropna() > pd.Timedelta(0)).all()
    s = bt.summary.set_index(["method", "quantity"])
    ours = s.loc[("forecast", "wins")]
    assert ours["mae"] == pytest.approx((t["expected_wins"] - t["actual_wins"]).abs().mean())
    inside = ((t["wins_low"] <= t["actual_wins"]) & (t["actual_wins"] <= t["wins_high"])).mean()
    assert ours["coverage"] == pytest.approx(inside)
    # stale leads and deals closing after the horizon: the CRM figure overshoots
    crm = s.loc[("weighted pipeline", "wins")]
    assert ours["mae"] < crm["mae"]
    assert len(bt.leads_) == t["open_leads"].sum()
    assert bt.leads_["won"].sum() == t["actual_wins"].sum()
    assert "coverage" in repr(bt)


def test_errors(demo_log):
    with pytest.raises(F.ForecastError, match="horizon"):
        F.forecast(demo_log, horizon="soon")
    with pytest.raises(F.ForecastError, match="positive"):
        F.forecast(demo_log, horizon=-5)
    f = F.forecast(demo_log, as_of="2025-05-31", horizon="3MS", n_draws=10)
    assert f.horizon_end_.strftime("%Y-%m-%d") == "2025-08-01"  # pandas offset rules
    with pytest.raises(F.ForecastError, match="level"):
        F.forecast(demo_log, level=80)
    with pytest.raises(F.ForecastError, match="freq"):
        F.forecast(demo_log, freq="fortnightly", n_draws=10)
    with pytest.raises(F.ForecastError, match="by column"):
        F.forecast(demo_log, by="region", n_draws=10)
    with pytest.raises(F.ForecastError, match="exactly one"):
        F.leads_needed(demo_log, target_wins=5, target_revenue=5)
    with pytest.raises(F.ForecastError, match="confidence"):
        F.leads_needed(demo_log, target_wins=5, confidence=80)
    with pytest.raises(F.ForecastError, match="cutoffs is empty"):
        F.backtest(demo_log, cutoffs=[])
    with pytest.raises(F.ForecastError, match="too short"):
        F.backtest(demo_log, min_history="400D", horizon="90D")
    assert issubclass(F.ForecastError, fk.FunnelkitError)


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_forecast(demo_log):
    return F.forecast(demo_log, as_of="2025-06-30", freq="MS", n_draws=300)


def test_fan_and_target_charts(demo_forecast):
    ax = fan_chart(demo_forecast, levels=(0.5, 0.9), target=1e6)
    assert isinstance(ax, Axes)
    assert len(ax.collections) >= 3  # two bands + the CRM marker
    assert ax.get_lines()[0].get_ydata()[0] == 0
    ax = target_chart(demo_forecast, target=60, quantity="wins")
    p = demo_forecast.probability_of(target_wins=60)
    assert f"{p:.0%}" in ax.get_title()
    with pytest.raises(ValueError, match="quantity"):
        fan_chart(demo_forecast, quantity="margin")


def test_fan_chart_draws_the_calibrated_range_the_text_states(demo_log):
    """A calibrated forecast states a range the model's bands do not show (road fines, July 2009:
    revenue 31,205 to 113,140 in the report's text, bands a few thousand wide on its chart): the chart
    draws it at the horizon, and names the bands the model's."""
    fc = F.forecast(demo_log, as_of="2025-06-30", horizon="30D", calibrate=True, n_draws=300)
    t = fc.total.iloc[0]
    assert t["revenue_range"].startswith("calibrated")
    for q in ("revenue", "wins"):
        ax = fan_chart(fc, quantity=q)
        (bar,) = [c for c in ax.containers if c.__class__.__name__ == "ErrorbarContainer"]
        _, _, (seg,) = bar.lines
        (x0, y0), (x1, y1) = seg.get_segments()[0]
        assert (y0, y1) == pytest.approx((t[f"{q}_low"], t[f"{q}_high"]), rel=1e-12)
        assert bar.lines[0].get_ydata()[0] == pytest.approx(t[f"expected_{q}"], rel=1e-12)
        labels = [txt.get_text() for txt in ax.get_legend().get_texts()]
        assert f"80% range, {t['range' if q == 'wins' else 'revenue_range']}" in labels
        assert "80% interval (model)" in labels and "expected (model)" in labels
    plain = fan_chart(F.forecast(demo_log, as_of="2025-06-30", horizon="30D", n_draws=300))
    assert not [c for c in plain.containers if c.__class__.__name__ == "ErrorbarContainer"]
    assert "80% interval" in [txt.get_text() for txt in plain.get_legend().get_texts()]


def test_backtest_and_calibration_charts(demo_log):
    bt = F.backtest(demo_log, n_cutoffs=2, horizon="60D", n_draws=100, calibrate=False)
    ax = backtest_chart(bt, quantity="revenue")
    assert len(ax.get_xticks()) == 2
    assert "MAE" in ax.get_title()
    ax = calibration_chart(bt.leads_, bins=5)
    assert ax.get_xlim()[1] > 1
    with pytest.raises(ValueError, match="p_win"):
        calibration_chart(pd.DataFrame({"x": [1]}))


# ---------------------------------------------------------------------------
# a real log the code has never seen
# ---------------------------------------------------------------------------
@pytest.mark.shared
def test_real_crm_snapshot_forecast_runs_unchanged(maven_log, maven_stages):
    f = F.forecast(maven_log, stages=maven_stages, horizon="90D", n_draws=100)
    t = f.total.iloc[0]
    assert t["open_leads"] > 0
    assert 0 <= t["expected_wins"] <= t["open_leads"]
    # open deals have no amount in this CRM export (close_value comes at closing): their revenue,
    # ours and the weighted pipeline's, is unknown (it said 0), the model is not split by deal
    # size, and revenue is not scored
    assert int(t["amount_unknown"]) == int(t["open_leads"])
    assert np.isnan(t["expected_revenue"]) and np.isnan(t["weighted_pipeline"])
    assert np.isfinite(t["weighted_wins"]) and "revenue unknown" in repr(f)
    assert any("not split by deal size" in n for n in f.notes_)
    bt = F.backtest(maven_log, stages=maven_stages, cutoffs=["2017-06-30"], horizon="60D", n_draws=100,
                    calibrate=False)
    s = bt.summary.set_index(["method", "quantity"])
    assert np.isfinite(s.loc[("forecast", "wins"), "mae"])
    assert np.isnan(s.loc[("forecast", "revenue"), "mae"]) and s.loc[("forecast", "revenue"), "cutoffs"] == 0
    # the snapshot at a past cutoff does not include leads first dated after it
    assert bt.table["open_leads"].iloc[0] == len(fk.pipeline.snapshot(maven_log, as_of="2017-06-30",
                                                                      stages=maven_stages))


def test_undated_events_and_missing_amounts(demo_log):
    """Leads whose first stage is undated: known at a past cutoff only if dated before it;
    amounts known only at closing: no deal-size bands (they would leak the outcome)."""
    raw = demo_log.drop(columns="flag").copy()
    first = ~raw["lead_id"].duplicated()
    raw["timestamp"] = raw["timestamp"].where(~first)  # entry into the first stage: unknown time
    prog = fk.funnel.lead_progress(demo_log)
    closed = set(prog.loc[prog["outcome"] != "open", "lead_id"])
    raw["amount"] = raw["amount"].where(raw["lead_id"].isin(closed))  # amounts only once closed
    log = fk.validate_events(raw, stages="pipeline4", missing_time="keep")
    cut = "2025-03-31"
    f = F.forecast(log, as_of=cut, n_draws=100)
    assert f.total["open_leads"].iloc[0] == len(fk.pipeline.snapshot(log, as_of=cut))
    assert any("not split by deal size" in n for n in f.notes_)
    assert f.total["expected_wins"].iloc[0] > 10


def test_backtest_run_rate_and_coverage_by_hand(demo_log):
    """The run-rate baseline is last period's wins of the leads open at its start; coverage
    comes with its binomial standard error; the verdict is a sentence."""
    cuts = ["2025-01-31", "2025-03-15", "2025-04-30", "2025-06-15"]
    bt = F.backtest(demo_log, cutoffs=cuts, horizon="45D", n_draws=100, seed=1, calibrate=False)
    t = bt.table
    prog = fk.funnel.lead_progress(demo_log)
    for _, row in t.iterrows():
        c = row["cutoff"]
        start = c - pd.Timedelta(days=45)
        open_then = set(fk.pipeline.snapshot(demo_log, as_of=start)["lead_id"])
        won = prog[(prog["outcome"] == "won") & (prog["closed_at"] > start) & (prog["closed_at"] <= c)
                   & prog["lead_id"].isin(open_then)]
        assert row["run_rate_wins"] == len(won)
        lo, hi = st.poisson.ppf([0.1, 0.9], len(won))
        assert (row["run_rate_wins_low"], row["run_rate_wins_high"]) == (lo, hi)
    s = bt.summary.set_index(["method", "quantity"])
    assert set(s.index.get_level_values("method")) == {"forecast", "forecast, model range", "weighted pipeline",
                                                       "weighted pipeline, within horizon", "run-rate"}
    ests = {"forecast": "expected_wins", "weighted pipeline": "weighted_wins",
            "weighted pipeline, within horizon": "horizon_weighted_wins", "run-rate": "run_rate_wins"}
    for m, est in ests.items():
        r = s.loc[(m, "wins")]
        assert r["mae"] == pytest.approx((t[est] - t["actual_wins"]).abs().mean())
        assert r["bias"] == pytest.approx((t[est] - t["actual_wins"]).mean())
        c = r["held"] / r["cutoffs"]
        assert r["coverage"] == pytest.approx(c)
        assert r["coverage_se"] == pytest.approx(np.sqrt(c * (1 - c) / 4))
    ours = s.loc[("forecast", "wins")]
    assert bt.sentence.startswith(f"the 80% range held in {int(ours['held'])} of 4 past cutoffs")


def test_default_cutoffs_every_and_count(demo_log):
    bt_every = F.backtest(demo_log, every="30D", n_cutoffs=3, horizon="60D", n_draws=50, calibrate=False)
    c = bt_every.table["cutoff"]
    assert len(c) == 3 and (c.diff().dropna() == pd.Timedelta(days=30)).all()
    last = demo_log["timestamp"].max()
    assert c.iloc[-1] + pd.Timedelta(days=60) <= last  # every horizon is observed


def test_default_cutoffs_end_at_the_last_outcome(demo_log):
    """A log whose outcomes stop before its last event (one stray event 200 days on, as in
    BPIC 2020's requests for payment) is backtested where its horizons end by the last
    outcome, and the notes say so; cutoffs given explicitly are kept."""
    won_lost = demo_log["stage"].isin(["won", "lost"])
    last_out = demo_log.loc[won_lost, "timestamp"].max()  # pandas, by hand
    assert last_out >= demo_log["timestamp"].max() - pd.Timedelta(days=1)  # the demo's outcomes run to its end
    open_lead = demo_log.groupby("lead_id").filter(lambda g: not g["stage"].isin(["won", "lost"]).any())["lead_id"]
    stray = demo_log[demo_log["lead_id"] == open_lead.iloc[0]].tail(1).copy()
    stray["timestamp"] = last_out + pd.Timedelta(days=200)
    log = pd.concat([demo_log, stray], ignore_index=True)
    kw = dict(every="30D", n_cutoffs=3, horizon="60D", n_draws=50, calibrate=False)
    bt = F.backtest(log, **kw)
    c = bt.table["cutoff"]
    assert c.iloc[-1] + pd.Timedelta(days=60) <= last_out < c.iloc[-1] + pd.Timedelta(days=61)
    assert list(c) == list(F.backtest(demo_log, **kw).table["cutoff"])
    note = [n for n in bt.notes_ if "last won or lost outcome" in n]
    assert note == [f"the log's last won or lost outcome is on {last_out:%Y-%m-%d}, 200 days before its last "
                    f"event ({stray['timestamp'].iloc[0]:%Y-%m-%d}): the default cutoffs end where their horizon "
                    "ends by that outcome, since the log does not say what was won after it (pass cutoffs= to "
                    "score later ones)."]
    late = F.backtest(log, cutoffs=[(last_out + pd.Timedelta(days=30)).date()], horizon="60D", n_draws=50,
                      calibrate=False)
    assert late.table["actual_wins"].tolist() == [0] and not any("last won or lost" in n for n in late.notes_)


def test_leads_needed_keeps_leads_and_money_apart(demo_log):
    """A wins target's plan gave ``open_amount`` the number of open leads; it is the money now,
    and ``open_leads`` the count, recounted from the snapshot."""
    from funnelkit import pipeline

    T = "2025-06-30"
    snap = pipeline.snapshot(demo_log, as_of=T)
    wins = F.leads_needed(demo_log, target_wins=40, as_of=T, period="90D", by=None, n_draws=200).iloc[0]
    money = F.leads_needed(demo_log, target_revenue=2_000_000, as_of=T, period="90D", by=None,
                           n_draws=200).iloc[0]
    for r in (wins, money):
        assert r["open_leads"] == len(snap)
        assert r["open_amount"] == pytest.approx(snap["amount"].sum(), rel=1e-12)
    assert wins["pipeline_coverage"] == pytest.approx(len(snap) / 40)
    assert money["pipeline_coverage"] == pytest.approx(snap["amount"].sum() / 2_000_000)
