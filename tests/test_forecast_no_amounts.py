"""Revenue where no open lead has an amount: unknown (NaN), never 0.

A log without an amount column, or a CRM export whose deals get their value only when
they close (the Maven CRM snapshot: every open deal without one), has no revenue to
forecast for its open pipeline.  Saying "revenue 0 (80% 0-0)" and "weighted pipeline 0"
there is a wrong number that reads like a real one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import forecast as F

AS_OF = "2025-06-30"
OUTCOMES = {"won", "lost"}


@pytest.fixture(scope="module")
def demo():
    return fk.datasets.load_demo()


def closed_only(log: pd.DataFrame) -> pd.DataFrame:
    """Amounts only on the rows of leads that had an outcome by ``AS_OF`` (a CRM that fills
    in a deal's value when it closes): every lead open then has none in the history."""
    t = pd.Timestamp(AS_OF) + pd.Timedelta(days=1)
    decided = log.loc[log["stage"].astype(str).isin(OUTCOMES) & (log["timestamp"] < t), "lead_id"].unique()
    out = log.copy()
    out.loc[~out["lead_id"].isin(decided), "amount"] = np.nan
    return out


REVENUE = ["expected_revenue", "revenue_low", "revenue_high", "weighted_pipeline", "weighted_low", "weighted_high",
           "horizon_weighted_pipeline", "horizon_weighted_low", "horizon_weighted_high", "open_pipeline_revenue"]


def test_log_without_amounts_has_unknown_revenue_and_the_same_wins(demo):
    plain = dict(as_of=AS_OF, n_draws=300, amount_bands=0, value_rates=False, freq="MS")
    with_amounts = F.forecast(demo, **plain)
    f = F.forecast(demo.drop(columns=["amount"]), **plain)
    t = f.total.iloc[0]
    assert int(t["amount_unknown"]) == int(t["open_leads"]) == 931
    assert t[REVENUE].isna().all()
    # the wins do not depend on the amounts here: same model, same draws
    for c in ["expected_wins", "wins_low", "wins_high", "weighted_wins", "horizon_weighted_wins"]:
        assert t[c] == with_amounts.total[c].iloc[0]
    assert f.periods_.filter(like="revenue").isna().all().all()
    assert f.draws_["revenue"].isna().all()
    assert (f.draws_.groupby("draw")["wins"].sum().mean()
            == pytest.approx(with_amounts.draws_.groupby("draw")["wins"].sum().mean()))
    text = repr(f)
    assert "revenue unknown (no open lead has an amount)" in text
    assert f"weighted pipeline {t['horizon_weighted_wins']:,.1f} wins within the horizon" in text
    assert "revenue 0" not in text
    with pytest.raises(fk.ForecastError, match="none of the 931 open leads has an amount"):
        f.probability_of(target_revenue=1.0)
    assert 0.0 <= f.probability_of(target_wins=50) <= 1.0


def test_amounts_known_only_at_closing(demo):
    log = closed_only(demo)
    f = F.forecast(log, as_of=AS_OF, n_draws=300)
    t = f.total.iloc[0]
    assert int(t["amount_unknown"]) == int(t["open_leads"])
    assert t[REVENUE].isna().all()
    assert np.isfinite(t["expected_wins"]) and t["expected_wins"] > 0
    # one open lead given an amount: the revenue of that one lead is known again
    one = f.leads_.sort_values("p_win").iloc[-1]
    log2 = log.copy()
    log2.loc[log2["lead_id"] == one["lead_id"], "amount"] = 10_000.0
    g = F.forecast(log2, as_of=AS_OF, n_draws=300, amount_bands=0, value_rates=False)
    u = g.total.iloc[0]
    assert int(u["amount_unknown"]) == int(u["open_leads"]) - 1
    p = float(g.leads_.loc[g.leads_["lead_id"] == one["lead_id"], "p_win"].iloc[0])
    assert u["expected_revenue"] == pytest.approx(10_000.0 * p, rel=1e-9)


def test_new_leads_keep_their_own_revenue(demo):
    """With new leads, the total's revenue is unknown (its open part is), and the new leads'
    revenue is their expected wins times the mean of the wins of the last year, by hand."""
    log = closed_only(demo)
    f = F.forecast(log, as_of=AS_OF, n_draws=300, new_leads=True)
    t = f.total.iloc[0]
    assert np.isnan(t["expected_revenue"]) and np.isnan(t["open_pipeline_revenue"])
    T = pd.Timestamp(AS_OF) + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    won = log[(log["stage"] == "won") & (log["timestamp"] <= T) & (log["timestamp"] > T - pd.Timedelta(days=365))]
    mean_won = won.groupby("lead_id")["amount"].first().mean()
    assert t["new_lead_revenue"] == pytest.approx(t["new_lead_wins"] * mean_won, rel=1e-9)
    assert "open leads + " in repr(f) and "new expected" in repr(f)
    assert "revenue unknown (no open lead has an amount)" in repr(f)


def test_no_win_with_an_amount_leaves_new_lead_revenue_unknown(demo):
    f = F.forecast(demo.drop(columns=["amount"]), as_of=AS_OF, n_draws=200, new_leads=True, by="source")
    s = f.summary.set_index("source")
    assert s["expected_revenue"].isna().all()  # the open segments and "(new leads)"
    assert s.loc["(new leads)", "expected_wins"] > 0
    assert np.isnan(f.total["new_lead_revenue"].iloc[0])


def test_one_segment_without_amounts(demo):
    """by=: only the segment whose open leads all lack an amount is unknown; the total counts
    the others' revenue (open leads without an amount count in wins, not in revenue)."""
    open_ids = F.forecast(demo, as_of=AS_OF, n_draws=50).leads_["lead_id"]
    web = demo["lead_id"].isin(open_ids) & (demo["source"] == "web form")
    log = demo.copy()
    log.loc[web, "amount"] = np.nan
    kw = dict(as_of=AS_OF, n_draws=300, by="source", amount_bands=0, value_rates=False, freq="MS")
    f = F.forecast(log, **kw)
    s = f.summary.set_index("source")
    assert s.loc["web form", REVENUE[:-1]].isna().all()
    others = s.drop(index="web form")
    assert others["expected_revenue"].notna().all()
    assert f.total["expected_revenue"].iloc[0] == pytest.approx(others["expected_revenue"].sum(), rel=1e-9)
    seg = f.segment_periods_.set_index("source")
    assert seg.loc["web form", "expected_revenue"].isna().all()
    assert seg.drop(index="web form")["expected_revenue"].notna().all()
    assert f.draws_.loc[f.draws_["source"] == "web form", "revenue"].isna().all()
    assert f.draws_.loc[f.draws_["source"] != "web form", "revenue"].notna().all()


def test_calibrated_forecast_without_amounts(demo):
    f = F.forecast(demo.drop(columns=["amount"]), as_of=AS_OF, n_draws=200, calibrate=True, calibration_cutoffs=4)
    t = f.total.iloc[0]
    assert t["revenue_range"] == "model"
    assert np.isnan(t["revenue_low"]) and np.isnan(t["model_revenue_low"])
    assert t["revenue_level_factor"] == 1.0
    assert not any("revenue forecast" in n for n in f.notes_)
    assert t["range"].startswith("calibrated")  # the wins are calibrated as before


def test_leads_needed_values_an_unvalued_pipeline_at_won_amounts(demo):
    """A revenue plan where no open lead has an amount: the open pipeline's wins are valued at
    the amounts of the lookback's wins (as the new leads' are), not at 0, which asked for 52%
    more new leads than with that valuation (4,055 against 2,660 on this log)."""
    log = closed_only(demo)
    plan = F.leads_needed(log, target_revenue=2_000_000, as_of=AS_OF, by=None, n_draws=2000)
    r = plan.iloc[0]
    assert plan.attrs["pipeline_valued_at_won_amounts"] is True
    assert np.isnan(r["open_amount"]) and np.isnan(r["pipeline_coverage"]) and np.isnan(r["required_coverage"])
    wins = F.forecast(log, as_of=AS_OF, horizon="90D", n_draws=2000).total["expected_wins"].iloc[0]
    # the won amounts of the leads first seen within the lookback (365 days), counted with pandas
    T = pd.Timestamp(AS_OF) + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    hist = log[log["timestamp"] <= T]
    first = hist.groupby("lead_id")["timestamp"].min()
    won = hist.loc[hist["stage"] == "won"].groupby("lead_id")["amount"].last()
    mu = won[first.reindex(won.index) > T - pd.Timedelta(days=365)].mean()
    assert r["pipeline_expected"] == pytest.approx(wins * mu, rel=0.02)  # Monte Carlo mean of the draws
    assert 0 < r["leads_needed"] < 4055
    full = F.leads_needed(demo, target_revenue=2_000_000, as_of=AS_OF, by=None, n_draws=2000)
    assert full.attrs["pipeline_valued_at_won_amounts"] is False
    assert np.isfinite(full["pipeline_coverage"].iloc[0])
    with pytest.raises(fk.ForecastError, match="no open lead and no won lead has an amount"):
        F.leads_needed(demo.drop(columns=["amount"]), target_revenue=1_000, as_of=AS_OF, by=None, n_draws=200)


def test_report_plan_says_how_the_pipeline_is_valued(demo):
    from funnelkit.reports import MonthlyReport, sections

    end = pd.Timestamp("2025-10-01")
    decided = demo.loc[demo["stage"].astype(str).isin(OUTCOMES) & (demo["timestamp"] < end), "lead_id"].unique()
    log = demo.copy()
    log.loc[~log["lead_id"].isin(decided), "amount"] = np.nan
    r = MonthlyReport.prepare(log, stages="pipeline4", month="2025-09", revenue_target=700_000, check_months=0)
    text = sections.leads_needed(r).text
    assert "valued at the amounts of recent wins, as the new ones' are" in text
    assert "counts as zero" not in text
    plan = F.leads_needed(log, target_revenue=2_100_000, as_of=r.as_of, period="90D", by=None,
                          stages="pipeline4", seed=0)
    assert f"{plan['pipeline_expected'].iloc[-1]:,.0f}" in text


def test_revenue_charts_of_unknown_revenue_say_so(demo):
    from funnelkit.plots.forecast import fan_chart, target_chart

    f = F.forecast(demo.drop(columns=["amount"]), as_of=AS_OF, n_draws=100, freq="MS")
    for chart in (fan_chart, lambda fc, **kw: target_chart(fc, target=1_000, **kw)):
        with pytest.raises(ValueError, match="revenue is unknown .*draw quantity='wins'"):
            chart(f)
        assert chart(f, quantity="wins") is not None
