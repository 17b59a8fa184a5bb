"""Drift: recency-weighted rates, the half-life chosen on the log's own past, and the sentence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

import funnelkit as fk
from funnelkit import forecast as F
from funnelkit.transitions import TransitionModel

PROP = fk.StageSet("prop", ["proposal"], won="won", lost=["lost"])
TWO = fk.StageSet("two", ["qualification", "proposal"], won="won", lost=["lost"])


def instant(times, won):
    """Proposals resolved the moment they are made."""
    rows = []
    for i, (t, w) in enumerate(zip(times, won)):
        rows.append((f"L{i:05d}", "proposal", t))
        rows.append((f"L{i:05d}", "won" if w else "lost", t))
    return fk.validate_events(pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp"]), stages=PROP)


def simulate(n, *, start="2022-01-01", days=900, p_win=(0.5, 0.5), drift_days=540, seed=0):
    """Leads arrive evenly; qualification -> proposal (60%) -> won with a probability moving
    linearly from p_win[0] to p_win[1] over drift_days (by proposal date), else lost."""
    rng = np.random.default_rng(seed)
    t0 = rng.uniform(0, days, n)
    go = rng.random(n) < 0.6
    t1 = t0 + rng.exponential(10, n)
    frac = np.clip(t1 / drift_days, 0, 1)
    p = p_win[0] + (p_win[1] - p_win[0]) * frac
    won = rng.random(n) < p
    t2 = t1 + rng.exponential(20, n)
    lead = np.char.add("L", np.arange(n).astype(str))
    ev = [(lead, "qualification", t0), (lead[~go], "lost", t1[~go]), (lead[go], "proposal", t1[go]),
          (lead[go & won], "won", t2[go & won]), (lead[go & ~won], "lost", t2[go & ~won])]
    df = pd.concat([pd.DataFrame({"lead_id": a, "stage": s, "d": d}) for a, s, d in ev], ignore_index=True)
    df = df[df["d"] <= days]
    df["timestamp"] = pd.Timestamp(start) + pd.to_timedelta(df.pop("d"), unit="D")
    return fk.validate_events(df.sort_values(["lead_id", "timestamp"]), stages=TWO)


def test_half_life_weights_each_stay_by_its_age():
    rng = np.random.default_rng(1)
    times = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.uniform(0, 365, 3000), unit="D")
    won = rng.random(3000) < np.where(times < pd.Timestamp("2024-07-01"), 0.6, 0.2)
    log = instant(times, won)
    T = pd.Timestamp("2024-12-31 23:59:59.999999999")
    age = np.asarray((T - times) / pd.Timedelta(days=1))
    for h in (30.0, 180.0):
        w = 0.5 ** (age / h)
        want = float((w * won).sum() / w.sum())
        tm = TransitionModel(n_samples=0, half_life=h).fit(log, as_of=T)
        assert tm.win_probability()["probability"].iloc[0] == pytest.approx(want, rel=1e-9)
        # re-weighting a fitted model gives the same as fitting with the half-life
        again = TransitionModel(n_samples=0).fit(log, as_of=T).with_half_life(h)
        assert again.win_probability()["probability"].iloc[0] == pytest.approx(want, rel=1e-9)
    flat = TransitionModel(n_samples=0).fit(log, as_of=T)
    assert flat.win_probability()["probability"].iloc[0] == pytest.approx(won.mean())
    with pytest.raises(fk.TransitionModelError, match="half_life"):
        TransitionModel(half_life=-3)


def test_posterior_of_a_weighted_rate_has_the_effective_sample_size():
    """With weights, each cell's Gamma draw has the mean and variance of the weighted sum of
    unit exponentials: the rate's posterior spread follows the effective sample size."""
    rng = np.random.default_rng(2)
    times = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.uniform(0, 365, 4000), unit="D")
    won = rng.random(4000) < 0.3
    log = instant(times, won)
    T = pd.Timestamp("2024-12-31 23:59:59.999999999")
    w = 0.5 ** (np.asarray((T - times) / pd.Timedelta(days=1)) / 60.0)
    n_eff = w.sum() ** 2 / (w**2).sum()
    tm = TransitionModel(n_samples=2000, half_life=60, seed=3).fit(log, as_of=T)
    p = tm._eventual(True)[:, -1, 0, 1]  # samples, pooled, proposal -> won
    p_hat = float((w * won).sum() / w.sum())
    assert p.std() == pytest.approx(np.sqrt(p_hat * (1 - p_hat) / n_eff), rel=0.1)


def test_win_rate_drift_by_hand():
    rng = np.random.default_rng(4)
    early = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.uniform(0, 270, 900), unit="D")
    late = pd.Timestamp("2024-10-03") + pd.to_timedelta(rng.uniform(0, 89, 300), unit="D")
    times = early.append(late)
    won = np.r_[rng.random(900) < 0.5, rng.random(300) < 0.3]
    log = instant(times, won)
    d = F.win_rate_drift(log, as_of="2024-12-31")
    T = pd.Timestamp("2024-12-31 23:59:59.999999999")
    rec = times > T - pd.Timedelta(days=90)
    lng = times > T - pd.Timedelta(days=365)
    assert d["decided"].tolist() == [rec.sum(), lng.sum()]
    assert d["won"].tolist() == [won[rec].sum(), won[lng].sum()]
    rate_r, rate_l = won[rec].mean(), won[lng].mean()
    assert d["win_rate"].tolist() == pytest.approx([rate_r, rate_l])
    table = [[won[rec].sum(), (~won[rec]).sum()], [won[lng & ~rec].sum(), (~won[lng & ~rec]).sum()]]
    assert d.attrs["p_value"] == pytest.approx(st.chi2_contingency(table, correction=False)[1])
    assert d.attrs["differs"]
    change = rate_r / rate_l - 1
    assert d.attrs["sentence"].startswith(
        f"win rate in the last 90 days is {abs(change):.0%} below the 12-month rate ({rate_r:.0%} of "
    )
    # the forecast says it too
    f = F.forecast(log, as_of="2024-12-31", n_draws=50)
    assert d.attrs["sentence"] in f.notes_


def test_without_a_lost_outcome_open_leads_are_not_wins():
    aida = fk.StageSet("a2", ["seen", "clicked", "bought"], horizon_days=30)
    rows = []
    base = pd.Timestamp("2024-01-01")
    for i in range(400):  # 100 bought, 300 never moved past "clicked"
        t = base + pd.Timedelta(days=i % 300)
        rows += [(f"V{i}", "seen", t), (f"V{i}", "clicked", t + pd.Timedelta(days=1))]
        if i < 100:
            rows.append((f"V{i}", "bought", t + pd.Timedelta(days=3)))
    log = fk.validate_events(pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp"]), stages=aida)
    d = F.win_rate_drift(log, as_of="2024-12-31", recent="365D", long_run="730D")
    # stalled after 30 days without a move: every non-buyer counts as lost, on day t + 31 (all 300
    # by Dec 31); no lead can be lost before Jan 31 (the log begins on Jan 1), so the windows start
    # there, and the 28 purchases before it (days 3-30) are left out with the losses nobody could see
    assert d["start"].iloc[0] == pd.Timestamp("2024-01-31")
    assert d["decided"].iloc[0] == 300 + 72
    assert d["win_rate"].iloc[0] == pytest.approx(72 / 372)
    assert d.attrs["sentence"].startswith("win rate not compared: without a lost outcome a lead counts as lost "
                                          "30 days after its last move, and the log begins on 2024-01-01")


def test_a_young_log_without_a_lost_outcome_is_not_judged_on_wins_alone():
    """100 visitors a day, one buying within the hour, no lost outcome (a visitor is lost 90 days
    after its last move). Four months in, the windows reaching back before day 90 saw every
    purchase but only the first days' losses: the sentence said "win rate in the last 90 days (9%
    of 981 decided leads) is in line with the 12-month rate (10% of 990)", of visitors 1% of whom
    buy. Ten months in, both are 1%, counted by hand."""
    web = fk.StageSet("web", ["home", "cart"], won="bought", lost=[])
    rows = []
    for day in range(300):
        t = pd.Timestamp("2024-01-01") + pd.Timedelta(days=day, hours=10)
        for j in range(100):
            rows.append((f"U{day:03d}{j:03d}", "home", t))
            if j == 0:
                rows.append((f"U{day:03d}{j:03d}", "bought", t + pd.Timedelta(hours=1)))
    log = fk.validate_events(pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp"]), stages=web)
    young = F.win_rate_drift(log, as_of="2024-04-08")
    assert not young.attrs["differs"]
    assert young.attrs["sentence"].startswith("win rate not compared: without a lost outcome a lead counts as lost "
                                              "90 days after its last move, and the log begins on 2024-01-01")
    old = F.win_rate_drift(log, as_of="2024-10-26")
    # by hand: decided in the last 90 days (Jul 29 - Oct 26): the 90 buyers of those days and the
    # 99 non-buyers of each day whose loss (last move + 90 days) falls in them (Apr 30 - Jul 28)
    assert old[["decided", "won"]].iloc[0].tolist() == [90 + 90 * 99, 90]
    assert old["win_rate"].tolist() == pytest.approx([0.01, 0.01], abs=5e-4)
    assert old.attrs["sentence"].startswith("win rate in the last 90 days (1% of 9,000 decided leads) is in line "
                                            "with the 210-day rate")


@pytest.mark.parametrize("n", [3000])
def test_auto_half_life_follows_a_falling_win_rate(n):
    """The win rate halves over 18 months: weighting all history alike over-forecasts; the
    half-life chosen on the log's own past removes most of that bias."""
    log = simulate(n, p_win=(0.6, 0.3), drift_days=540, days=720, seed=5)
    kw = dict(every="30D", n_cutoffs=6, horizon="30D", n_draws=200, calibrate=False, calibration_cutoffs=6)
    flat = F.backtest(log, **kw)  # not calibrated: no past forecasts, so no decay even with "auto"
    assert flat.table["half_life"].isna().all() and flat.rolling_["cutoff"].is_unique
    # the half-life is chosen on the past forecasts a calibration makes (level correction off: the
    # half-life alone)
    auto = F.backtest(log, half_life="auto", half_lives=[None, 90.0], **{**kw, "calibrate": True},
                      correct_level=False)
    b_flat = flat.summary.set_index(["method", "quantity"]).loc[("forecast", "wins"), "bias"]
    b_auto = auto.summary.set_index(["method", "quantity"]).loc[("forecast", "wins"), "bias"]
    assert b_flat > 0
    assert abs(b_auto) < 0.6 * b_flat
    assert set(auto.table["half_life"].dropna()) <= {90.0}
    assert (auto.rolling_.groupby("cutoff")["half_life"].size() == 2).all()


def _losses_in_march_only():
    log = fk.datasets.load_demo()
    lost = log["stage"].astype(str) == "lost"
    in_march = (log["timestamp"] >= "2025-03-01") & (log["timestamp"] < "2025-04-01")
    return log[~lost | in_march].reset_index(drop=True)


def _first_outcomes(log):
    out = log[log["stage"].astype(str).isin(["won", "lost"])].sort_values("timestamp")
    return out.groupby("lead_id", observed=True).first()


def test_win_rate_drift_does_not_read_batch_losses_as_drift():
    """Road fines are sent for credit collection about once a year: at mid-2009 the drift sentence
    said "131% above the 12-month rate" (100% of 1,445 against 43%) with no fine marked lost in
    those 90 days.  The demo with its losses marked in March only, recounted with pandas."""
    log = _losses_in_march_only()
    first = _first_outcomes(log)
    T = pd.Timestamp("2025-06-30 23:59:59.999999999")
    recent = first[(first["timestamp"] > T - pd.Timedelta(days=90)) & (first["timestamp"] <= T)]
    year = first[(first["timestamp"] > T - pd.Timedelta(days=365)) & (first["timestamp"] <= T)]
    assert (recent["stage"] == "won").all()
    d = F.win_rate_drift(log, as_of="2025-06-30")
    assert not d.attrs["differs"]
    n_lost = int((year["stage"] == "lost").sum())
    assert d.attrs["sentence"] == (
        f"win rate not compared: no lead was marked lost in the last 90 days ({len(recent):,} won), against "
        f"{n_lost:,} earlier in the 12-month window: losses are marked in batches here, so the rate of a window "
        "is 100% until the next batch.")
    # the batch inside the recent window: its rate would read a fall in conversion
    d = F.win_rate_drift(log, as_of="2025-04-30")
    assert not d.attrs["differs"] and "months of the 12-month window had wins but no lead marked lost" in \
        d.attrs["sentence"]
    # losses marked every month: compared as before
    plain = F.win_rate_drift(fk.datasets.load_demo(), as_of="2025-06-30")
    assert plain.attrs["sentence"].startswith("win rate in the last 90 days")


def test_the_report_says_when_the_win_rate_drifted():
    """The forecast's drift sentence was in its notes only; the report's forecast section says it."""
    from funnelkit.reports import MonthlyReport, sections

    log = fk.datasets.load_demo()
    late_win = (log["stage"].astype(str) == "won") & (log["timestamp"] >= "2025-07-01")
    flip = late_win & (np.random.default_rng(0).random(len(log)) < 0.6)  # 60% of the last quarter's wins lost
    log = log.assign(stage=log["stage"].astype(object).where(~flip, "lost"))
    log = fk.validate_events(log, stages="pipeline4")
    rep = MonthlyReport.prepare(log, stages="pipeline4", month="2025-09", check_months=0)
    said = rep.next_month.drift_.attrs["sentence"]
    assert rep.next_month.drift_.attrs["differs"] and "below the 12-month rate" in said
    first = _first_outcomes(log)
    T = rep.as_of
    recent = first[(first["timestamp"] > T - pd.Timedelta(days=90)) & (first["timestamp"] <= T)]
    assert f"of {len(recent):,} decided leads" in said
    assert said[:1].upper() + said[1:] in sections.forecast(rep).text
    plain = MonthlyReport.prepare("demo", month="2025-09", check_months=0)
    assert "Win rate in the last" not in sections.forecast(plain).text
