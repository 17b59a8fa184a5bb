"""New leads: the arrival model, wins from leads not yet created, and their backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import forecast as F

PROP = fk.StageSet("prop", ["proposal"], won="won", lost=["lost"])


def regular_log(days=400, weekday=10, weekend=2, resolve_days=5, start="2024-01-01"):
    """Every weekday `weekday` proposals arrive at 09:00 (`weekend` on Saturdays and Sundays);
    every other one is won, the rest lost, exactly `resolve_days` later."""
    rows = []
    i = 0
    for d in pd.date_range(start, periods=days, freq="D"):
        for _ in range(weekday if d.day_of_week < 5 else weekend):
            t = d + pd.Timedelta(hours=9)
            rows.append((f"L{i:06d}", "proposal", t))
            rows.append((f"L{i:06d}", "won" if i % 2 == 0 else "lost", t + pd.Timedelta(days=resolve_days)))
            i += 1
    return fk.validate_events(pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp"]), stages=PROP)


def test_arrival_model_recovers_an_exact_weekly_pattern():
    log = regular_log(days=364)  # 52 whole weeks: the weekday model fits the counts (up to its weak prior)
    am = F.ArrivalModel(lookback="364D").fit(log, as_of="2024-12-29")
    assert am.coef_["trend per year"] == pytest.approx(0.0, abs=1e-3)
    daily = am.predict("2025-01-06", "2025-01-12")  # Monday to Sunday
    assert daily["expected"].tolist() == pytest.approx([10] * 5 + [2] * 2, rel=5e-3)
    assert am.dispersion_ == pytest.approx(1.0)
    assert am.mix_["proposal"] == 1.0
    assert am.history_["arrivals"].sum() == 52 * 54


def _penalized_fit_by_scipy(am):
    """The arrival model's coefficients recomputed independently: the penalized Poisson
    log-likelihood (normal priors of sd 2 on the trend and weekdays, 1 on the holiday and
    year-end columns; columns no day has dropped), scaled by the Pearson dispersion, maximized
    by scipy from zero."""
    from scipy.optimize import minimize

    h = am.history_
    day = (h["date"].to_numpy(dtype="datetime64[D]").astype(np.int64))
    X = am._design(day)
    y = h["arrivals"].to_numpy()
    has = (X != 0).any(axis=0)
    sd = np.array([np.inf, 2, 2, 2, 2, 2, 2, 2, 1, 1][: X.shape[1]])[has]
    X = X[:, has]

    def nll(b, phi):
        eta = X @ b
        return (np.exp(eta) - y * eta).sum() / phi + 0.5 * np.sum((b / sd) ** 2)

    def grad(b, phi):
        return X.T @ (np.exp(X @ b) - y) / phi + b / sd**2

    b = minimize(nll, np.zeros(X.shape[1]), args=(1.0,), jac=grad, method="BFGS", options={"gtol": 1e-10}).x
    mu = np.exp(X @ b)
    phi = max(np.sum((y - mu) ** 2 / mu) / (y.size - X.shape[1]), 1.0)
    b = minimize(nll, b, args=(phi,), jac=grad, method="BFGS", options={"gtol": 1e-10}).x
    full = np.zeros(has.size)
    full[has] = b
    return full, phi


def test_arrival_model_without_a_year_end_in_its_window_forecasts_one_like_other_days():
    """Fitted in June on six months of leads, the model has seen no year-end: its year-end
    effect is 0 with no uncertainty (a ridge of 1e-6 made that effect's standard deviation
    1,400 on the log scale, and a forecast over Christmas drew exp(30) leads a day: 1.8e16
    new wins on the BPIC 2020 declarations, and a crash).  Coefficients equal scipy's
    maximization of the same penalized likelihood."""
    rng = np.random.default_rng(3)
    days = pd.date_range("2024-01-08", "2024-12-15", freq="D")  # no Dec 24 - Jan 6 in it
    rows = []
    for i, d in enumerate(np.repeat(days, rng.poisson(np.where(days.day_of_week < 5, 12, 3)))):
        t = d + pd.Timedelta(hours=10)
        rows += [(f"L{i:05d}", "proposal", t), (f"L{i:05d}", "won" if i % 2 else "lost", t + pd.Timedelta(days=5))]
    log = fk.validate_events(pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp"]), stages=PROP)
    am = F.ArrivalModel(calendar="NL").fit(log, as_of="2024-12-15")
    assert am.coef_["year-end"] == 0.0 and am._cov[-1, -1] == 0.0
    assert np.sqrt(np.diag(am._cov)).max() < 2.0  # every estimated effect: its data or its prior
    ref, phi = _penalized_fit_by_scipy(am)
    assert am.coef_.to_numpy() == pytest.approx(ref, abs=1e-6)
    assert am.dispersion_ == pytest.approx(phi, rel=1e-6)
    lam = am.rates(np.arange(np.datetime64("2024-12-20"), np.datetime64("2025-01-10")).astype(np.int64), 2000,
                   np.random.default_rng(0))
    assert lam.max() < 200  # 12 a weekday; exp(30) = 1.1e13 before
    f = F.forecast(log, as_of="2024-12-15", horizon="30D", n_draws=200, new_leads=True, seed=1, stages=PROP)
    assert f.total["new_leads"].iloc[0] < 30 * 12


def test_arrival_model_of_a_log_closed_at_weekends():
    """No lead ever arrives on a Saturday or Sunday: their rate is near 0 and so are its draws
    (the unpenalized fit put Saturday at exp(-30) with a standard deviation in the thousands,
    so that some draws had exp(30) leads on a Saturday)."""
    log = regular_log(days=200, weekday=10, weekend=0)
    am = F.ArrivalModel().fit(log, as_of="2024-07-15")
    sat = am.predict("2024-07-20", "2024-07-21")["expected"]
    assert (sat < 0.1).all()
    lam = am.rates(np.arange(np.datetime64("2024-07-16"), np.datetime64("2024-07-30")).astype(np.int64), 4000,
                   np.random.default_rng(0))
    assert np.quantile(lam, 0.999) < 15
    ref, _ = _penalized_fit_by_scipy(am)
    assert am.coef_.to_numpy() == pytest.approx(ref, abs=1e-5)


def test_arrival_model_carries_the_level_at_as_of_forward_without_extrapolating_its_trend():
    """Leads doubling every 100 days (a roll-out): the fitted trend is that growth, and the
    forecast days keep the level the fit reaches on the last day (times the weekday pattern,
    here none), not the growth extrapolated: 30 more days of it would add 23%."""
    days = pd.date_range("2024-01-01", "2024-12-31", freq="D")
    n = np.round(5 * 2 ** (np.arange(days.size) / 100)).astype(int)
    rows = [(f"L{i:05d}", "proposal", d + pd.Timedelta(hours=9)) for i, d in enumerate(np.repeat(days, n))]
    log = fk.validate_events(pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp"]), stages=PROP)
    am = F.ArrivalModel(lookback="366D").fit(log, as_of="2024-12-31")
    assert np.expm1(am.coef_["trend per year"] * 100 / 365.25) == pytest.approx(1.0, abs=0.01)  # doubling
    last = am.history_["expected"].iloc[-7:].mean()  # the fit on the last week (weekday effects ~0)
    ahead = am.predict("2025-01-01", "2025-01-30")["expected"]
    assert ahead.mean() == pytest.approx(last, rel=0.03)
    assert ahead.mean() == pytest.approx(n[-7:].mean(), rel=0.03)  # what the log's last week had
    extrapolated = n[-1] * 2 ** (np.arange(1, 31) / 100)  # the growth carried on: 11% more on average
    assert ahead.mean() < 0.95 * extrapolated.mean()


def test_arrival_recent_level_by_hand(demo_log):
    """``recent_level=True``: the fitted daily rates times (leads first seen in the last 30 days
    + 1/2) / (the fit's expected leads on those days + 1/2), recounted with pandas."""
    as_of = pd.Timestamp("2025-06-30 23:59:59.999999999")
    plain = F.ArrivalModel().fit(demo_log, as_of=as_of)
    recent = F.ArrivalModel(recent_level=True).fit(demo_log, as_of=as_of, horizon="30D")
    first = demo_log.groupby("lead_id", observed=True)["timestamp"].min()
    seen = int(((first > as_of - pd.Timedelta(days=30)) & (first <= as_of)).sum())
    fitted = plain.history_["expected"].iloc[-30:].sum()
    assert plain.history_["date"].iloc[-30] == pd.Timestamp("2025-06-01")
    factor = (seen + 0.5) / (fitted + 0.5)
    assert recent.recent_level_ and recent.recent_days_ == 30
    assert recent.recent_factor_ == pytest.approx(factor, rel=1e-12)
    a = plain.predict("2025-07-01", "2025-08-31")
    b = recent.predict("2025-07-01", "2025-08-31")
    np.testing.assert_allclose(b["expected"], a["expected"] * factor, rtol=1e-9)
    assert (b["high"] / b["low"] > a["high"] / a["low"]).all()  # the recent count's own noise
    # a 90-day horizon sets the level on 90 days
    assert F.ArrivalModel(recent_level=True).fit(demo_log, as_of=as_of, horizon="90D").recent_days_ == 90
    with pytest.raises(F.ForecastError, match="recent_level"):
        F.ArrivalModel(recent_level="yes")
    with pytest.raises(F.ForecastError, match="half_life='auto': pass a number of days"):
        F.ArrivalModel(half_life="auto")
    assert F.ArrivalModel(half_life=30).fit(demo_log, as_of=as_of).half_life == 30


def test_arrival_level_uncertainty_includes_the_two_levels_disagreement(demo_log):
    """The intercept's variance grows by (log of the recent level over the fitted one)^2 / 4,
    recounted with pandas: each day's 90% range in ``predict`` is that much wider on the log
    scale; on a log whose arrivals just stepped up, far wider than on a steady one."""
    as_of = pd.Timestamp("2025-06-30 23:59:59.999999999")
    am = F.ArrivalModel().fit(demo_log, as_of=as_of)
    first = demo_log.groupby("lead_id", observed=True)["timestamp"].min()
    seen = int(((first > as_of - pd.Timedelta(days=30)) & (first <= as_of)).sum())
    d = np.log((seen + 0.5) / (am.history_["expected"].iloc[-30:].sum() + 0.5))
    assert am.level_spread_ == pytest.approx(d, rel=1e-12)
    base = F.ArrivalModel()
    base._fit_counts(first[first <= as_of].to_numpy().astype("datetime64[ns]").astype(np.int64), as_of)
    base._fitted = True  # the same fit, without the spread (what fit() does before adding it)
    a, b = am.predict("2025-07-01", "2025-07-31"), base.predict("2025-07-01", "2025-07-31")
    se = np.log(a["high"] / a["expected"]) / 1.645
    se0 = np.log(b["high"] / b["expected"]) / 1.645
    np.testing.assert_allclose(se**2 - se0**2, d**2 / 4, rtol=1e-6)
    np.testing.assert_allclose(a["expected"], b["expected"], rtol=1e-12)  # the level itself is unchanged
    # the draws of a month's arrivals: the same mean, a log-scale spread wider by |d| / 2
    days = np.arange(pd.Timestamp("2025-07-01").value // 86_400_000_000_000, pd.Timestamp("2025-08-01").value
                     // 86_400_000_000_000)
    m1 = am.rates(days, 40_000, np.random.default_rng(1)).sum(axis=1)
    m0 = base.rates(days, 40_000, np.random.default_rng(1)).sum(axis=1)
    assert m1.mean() == pytest.approx(m0.mean(), rel=3 * m1.std() / m1.mean() / np.sqrt(40_000))
    assert np.log(m1).std() ** 2 - np.log(m0).std() ** 2 == pytest.approx(d**2 / 4, rel=0.05)

    def log_of(counts):
        days = pd.date_range("2024-01-01", periods=len(counts), freq="D")
        rows = [(f"L{i:05d}", "proposal", d + pd.Timedelta(hours=9)) for i, d in enumerate(np.repeat(days, counts))]
        return fk.validate_events(pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp"]), stages=PROP)

    rng = np.random.default_rng(5)
    T = pd.Timestamp("2024-01-01") + pd.Timedelta(days=399)
    step = F.ArrivalModel().fit(log_of(np.r_[rng.poisson(5, 370), rng.poisson(15, 30)]), as_of=T)
    steady = F.ArrivalModel().fit(log_of(rng.poisson(8, 400)), as_of=T)
    assert abs(step.level_spread_) > 0.3 and abs(steady.level_spread_) < 0.1


def test_arrival_level_auto_is_chosen_on_its_own_past_forecasts(demo_log):
    """``recent_level="auto"``: each past cutoff's actual arrivals are the leads first seen in
    the horizon after it (recounted with pandas), each level's forecast is what that arrival
    model fitted as of the cutoff forecasts (refitted from the log), and the level with the
    lower mean absolute error is used."""
    am = F.ArrivalModel(recent_level="auto").fit(demo_log, as_of="2025-06-30", horizon="30D")
    tab = am.level_choice_
    assert len(tab) == 10 and list(tab.columns) == ["cutoff", "actual", "fitted", "recent"]
    first = demo_log.groupby("lead_id", observed=True)["timestamp"].min()
    for _, r in tab.iterrows():
        c = r["cutoff"]
        assert r["actual"] == ((first > c) & (first <= c + pd.Timedelta(days=30))).sum()
    r = tab.iloc[-3]
    for kw, col in [({}, "fitted"), ({"recent_level": True}, "recent")]:
        ref = F.ArrivalModel(**kw).fit(demo_log, as_of=r["cutoff"], horizon="30D")
        days = ref.predict(r["cutoff"] + pd.Timedelta(days=1), r["cutoff"] + pd.Timedelta(days=30))
        assert r[col] == pytest.approx(days["expected"].sum(), rel=1e-9)
    miss = tab[["fitted", "recent"]].sub(tab["actual"], axis=0).abs().mean()
    assert am.recent_level_ == (miss["recent"] < miss["fitted"])


def test_arrival_level_auto_follows_a_step_and_keeps_a_steady_rate():
    """Five leads a day for a year, then 20 a day for the last 75 days: the recent level
    forecasts the new level (within 10%, where the fitted level's local trend forecast 15 a
    day); on a steady log the fitted level is kept."""
    def log_of(counts, start="2024-01-01"):
        days = pd.date_range(start, periods=len(counts), freq="D")
        rows = []
        for i, d in enumerate(np.repeat(days, counts)):
            t = d + pd.Timedelta(hours=9)
            rows += [(f"L{i:05d}", "proposal", t), (f"L{i:05d}", "won" if i % 2 else "lost", t + pd.Timedelta(days=3))]
        return fk.validate_events(pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp"]), stages=PROP)

    rng = np.random.default_rng(4)
    step = log_of(np.r_[rng.poisson(5, 365), rng.poisson(20, 75)])
    as_of = pd.Timestamp("2024-01-01") + pd.Timedelta(days=439)
    am = F.ArrivalModel(recent_level="auto").fit(step, as_of=as_of, horizon="14D")
    assert am.recent_level_
    tab = am.level_choice_
    miss = tab[["fitted", "recent"]].sub(tab["actual"], axis=0).abs().mean()
    f = F.forecast(step, as_of=as_of, horizon="14D", n_draws=50, new_leads=True, stages=PROP)
    assert f.arrivals_.recent_level_
    assert (f"new leads: arrivals at the level of the last 30 days ({am.recent_factor_:.2f} times the fitted "
            f"level); its forecasts of arrivals missed by {miss['recent']:,.1f} leads on average at {len(tab)} "
            f"past cutoffs, against {miss['fitted']:,.1f} for the fitted level.") in f.notes_
    assert am.predict(as_of + pd.Timedelta(days=1), as_of + pd.Timedelta(days=14))["expected"].mean() == \
        pytest.approx(20, rel=0.1)
    steady = log_of(rng.poisson(8, 440))
    am = F.ArrivalModel(recent_level="auto").fit(steady, as_of=as_of, horizon="14D")
    assert not am.recent_level_ and len(am.level_choice_) == 12 and am.recent_factor_ == 1.0


def test_new_lead_wins_by_hand():
    """Ten leads a day, half won exactly five days after arriving: of the arrivals in the next
    30 days, those of the first 25 days win within the horizon."""
    log = regular_log(days=200, weekday=10, weekend=10)
    as_of = pd.Timestamp("2024-07-01")
    f = F.forecast(log, as_of=as_of, horizon="30D", n_draws=400, new_leads=True, seed=2)
    t = f.total.iloc[0]
    assert t["basis"] == "open pipeline + new leads"
    assert t["new_leads"] == pytest.approx(300, rel=0.02)
    assert t["new_lead_wins"] == pytest.approx(25 * 10 * 0.5, rel=0.03)
    # the open pipeline: the last five days' 50 leads, half of them won
    assert t["open_pipeline_wins"] == pytest.approx(25, abs=0.5)
    assert t["expected_wins"] == pytest.approx(t["open_pipeline_wins"] + t["new_lead_wins"])
    draws = f.draws_.groupby("draw")["wins"].sum()
    assert abs(draws.mean() - t["expected_wins"]) < 4 * draws.std() / np.sqrt(400)
    plain = F.forecast(log, as_of=as_of, horizon="30D", n_draws=100).total.iloc[0]
    assert plain["basis"] == "open pipeline" and plain["new_lead_wins"] == 0
    with_by = F.forecast(log, as_of=as_of, horizon="30D", n_draws=100, new_leads=True, by="flag")
    assert with_by.summary["flag"].iloc[-1] == "(new leads)"


WEB = fk.StageSet("web", ["home", "search", "payment"], won="confirmation", lost=[])


def test_new_visitors_enter_at_the_first_page_when_pages_share_one_date():
    """A web log with one date per page visit (like the e-commerce tables): a visitor's home,
    search and payment pages all carry the same instant.  New visitors enter at the home page
    and move on at once, as the transition model counts; taking the furthest page seen at that
    instant as the entry counted those moves twice (2.1% of new visitors won within a week on
    the e-commerce log, where 0.67% did)."""
    rng = np.random.default_rng(5)
    days = pd.date_range("2024-01-01", "2024-06-30", freq="D")
    rows = []
    for i, d in enumerate(np.repeat(days, 200)):
        lead, depth = f"U{i:06d}", int(rng.choice(4, p=[0.5, 0.4, 0.09, 0.01]))
        rows += [(lead, s_, d) for s_ in ["home", "search", "payment", "confirmation"][:depth + 1]]
    log = fk.validate_events(pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp"]), stages=WEB)
    as_of = "2024-06-30"  # the end of that day
    am = F.ArrivalModel().fit(log, as_of=as_of, stages=WEB)
    assert am.mix_["home"] == 1.0
    rate = (log["stage"] == "confirmation").sum() / log["lead_id"].nunique()  # by hand: wins per visitor
    f = F.forecast(log, as_of=as_of, horizon="7D", stages=WEB, n_draws=400, new_leads=True, seed=1)
    t = f.total.iloc[0]
    assert t["new_leads"] == pytest.approx(7 * 200, rel=0.01)
    assert t["new_lead_wins"] == pytest.approx(7 * 200 * rate, rel=0.03)
    assert t["open_pipeline_wins"] == pytest.approx(0.0, abs=1e-9)  # nobody comes back later
    # as of midday: half of that day's visitors are still to come, and the horizon ends at noon
    # seven days later (both days were counted whole: 8 days of visitors in 7)
    noon = F.forecast(log, as_of="2024-06-30 12:00", horizon="7D", stages=WEB, n_draws=400, new_leads=True,
                      seed=1).total.iloc[0]
    assert noon["new_leads"] == pytest.approx(7 * 200, rel=0.01)


def test_backtest_with_new_leads_counts_every_win():
    log = regular_log(days=300, weekday=6, weekend=1, resolve_days=12)
    cuts = ["2024-06-30", "2024-08-15"]
    bt = F.backtest(log, cutoffs=cuts, horizon="30D", n_draws=200, new_leads=True, calibrate=False)
    won = log[log["stage"] == "won"]
    for _, row in bt.table.iterrows():
        c = row["cutoff"]
        end = c + pd.Timedelta(days=30)
        assert row["actual_wins"] == ((won["timestamp"] > c) & (won["timestamp"] <= end)).sum()
        prev = c - pd.Timedelta(days=30)
        assert row["run_rate_wins"] == ((won["timestamp"] > prev) & (won["timestamp"] <= c)).sum()
        assert row["basis"] == "open pipeline + new leads"
        # a steady process: the forecast of all wins is close
        assert row["expected_wins"] == pytest.approx(row["actual_wins"], rel=0.15)
    open_only = F.backtest(log, cutoffs=cuts, horizon="30D", n_draws=100, calibrate=False)
    assert (open_only.table["actual_wins"] < bt.table["actual_wins"]).all()


def test_leads_needed_names_the_segment_columns_when_the_default_by_is_missing():
    """A CRM export without a 'source' column (the default by=): the error names the log's
    segment columns and by=None, and by=None plans on the recent mix."""
    log = regular_log(days=200).assign(region=lambda d: np.where(d.index % 2, "north", "south"))
    with pytest.raises(F.ForecastError, match=r"by= one of its segment columns \(region\) or by=None"):
        F.leads_needed(log, target_wins=50, period="30D", n_draws=100)
    plan = F.leads_needed(log, target_wins=50, period="30D", n_draws=100, by=None)
    assert len(plan) >= 1 and (plan["leads_needed"] >= 0).all()


def test_a_level_correction_scales_the_open_and_new_split_with_the_total(demo_log, monkeypatch):
    """When the past cutoffs missed on one side, the expected wins are scaled; the parts the
    report states (from the open pipeline, from new leads) are scaled with them and still add up."""
    kw = dict(horizon="30D", new_leads=True, calibrate=True, half_life=None, n_draws=200, seed=0)
    plain = F.forecast(demo_log, **kw).total.iloc[0]
    monkeypatch.setattr(F, "_level_correction", lambda past, quantity: (1.5, 9, 12))
    t = F.forecast(demo_log, **kw).total.iloc[0]
    assert t["level_factor"] == 1.5 and t["revenue_level_factor"] == 1.5
    for q in ("wins", "revenue"):
        assert t[f"expected_{q}"] == pytest.approx(1.5 * plain[f"expected_{q}"], rel=1e-12)
        for part in (f"open_pipeline_{q}", f"new_lead_{q}"):
            assert t[part] == pytest.approx(1.5 * plain[part], rel=1e-12)
        assert t[f"open_pipeline_{q}"] + t[f"new_lead_{q}"] == pytest.approx(t[f"expected_{q}"], rel=1e-12)
