"""Calibrated ranges: the model's range corrected by the log's own past forecast errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import forecast as F


def past_rows(exp, lo, hi, act):
    return pd.DataFrame({"expected_wins": exp, "wins_low": lo, "wins_high": hi, "actual_wins": act})


def test_conformal_quantiles_by_hand():
    """Twelve past cutoffs at which the model's range was far too narrow: the 80% range takes,
    on each side, the ceil(13 * 0.9) = 12th smallest miss measured in the model's half-ranges."""
    rng = np.random.default_rng(3)
    exp = rng.uniform(80, 120, 12)
    lo, hi = exp - 10, exp + 10
    act = exp + rng.normal(0, 25, 12)  # the model's range is far too narrow
    past = past_rows(exp, lo, hi, act)
    s_lo = np.sort((lo - act) / 10)
    s_hi = np.sort((act - hi) / 10)
    new_lo, new_hi, n, how = F._calibrate_range(past, 100.0, 95.0, 110.0, 0.8, quantity="wins")
    assert (n, how) == (12, "calibrated")
    assert new_lo == max(np.floor(95.0 - s_lo[11] * 5.0 + 0.5), 0.0)  # whole wins, nearest
    assert new_hi == np.floor(110.0 + s_hi[11] * 10.0 + 0.5)
    assert new_hi - new_lo > 15.0  # widened
    # five past cutoffs: one score for both sides, the ceil(6 * 0.8) = 5th smallest
    p5 = past.iloc[:5]
    s = np.sort(np.maximum((p5["wins_low"] - p5["actual_wins"]) / 10, (p5["actual_wins"] - p5["wins_high"]) / 10))
    q = s[4]
    new_lo, new_hi, n, how = F._calibrate_range(p5, 100.0, 90.0, 110.0, 0.8, quantity="wins")
    assert (n, how) == (5, "calibrated")
    assert (new_lo, new_hi) == (max(np.floor(90 - q * 10 + 0.5), 0), np.floor(110 + q * 10 + 0.5))
    # revenue is not rounded
    rev = p5.rename(columns=lambda c: c.replace("wins", "revenue"))
    r_lo, r_hi, _, _ = F._calibrate_range(rev, 100.0, 90.0, 110.0, 0.8, quantity="revenue")
    assert (r_lo, r_hi) == (pytest.approx(max(90 - q * 10, 0)), pytest.approx(110 + q * 10))
    # three: too few, the model's range, labelled
    assert F._calibrate_range(past.iloc[:3], 100.0, 90.0, 110.0, 0.8, quantity="wins") == (90.0, 110.0, 3, "model")
    assert F._range_label("model", 3) == "model (only 3 past cutoffs to calibrate on)"
    assert F._range_label("calibrated", 12) == "calibrated on 12 past cutoffs"



def test_calibrated_wins_are_whole_and_keep_every_whole_win_of_the_unrounded_range():
    """Rounded to the nearest whole win: never narrower in whole wins than the unrounded range
    (so no whole number of wins it held is left out), at most one more per side."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        exp = rng.uniform(1, 30, 12)
        half = rng.uniform(0.5, 6, 12)
        act = np.round(exp + rng.normal(0, 3, 12)).clip(0)
        past = past_rows(exp, exp - half, exp + half, act)
        e, h = rng.uniform(1, 30), rng.uniform(0.5, 6)
        w = np.maximum(half, 1.0)  # half-ranges of at least one win
        # 12 past cutoffs at 80%: each side moves by the ceil(13 * 0.9) = 12th, the largest, miss
        raw_lo = e - h - np.max((exp - half - act) / w) * max(h, 1.0)
        raw_hi = e + h + np.max((act - exp - half) / w) * max(h, 1.0)
        if raw_lo > raw_hi:
            raw_lo = raw_hi = (raw_lo + raw_hi) / 2
        raw_lo, raw_hi = max(raw_lo, 0.0), max(raw_hi, 0.0)
        lo, hi, _, how = F._calibrate_range(past, e, e - h, e + h, 0.8, quantity="wins")
        assert how == "calibrated" and lo == int(lo) and hi == int(hi)
        assert lo <= np.ceil(raw_lo - 1e-9) and hi >= np.floor(raw_hi + 1e-9)
        assert lo >= np.ceil(raw_lo - 1e-9) - 1 and hi <= np.floor(raw_hi + 1e-9) + 1


def test_calibrated_range_holds_the_point_forecast_shown():
    """A pipeline about to run dry (expected 0.2 wins, the model's range 0 to 1) after past
    cutoffs that each won more than forecast: the misses would lift the low end above the
    forecast; it stops at the forecast shown (then whole wins), and only ever widens."""
    exp = np.array([10.0, 12, 9, 11, 10, 13, 12, 10, 11, 9, 12, 10])
    act = exp + np.array([5.0, 4, 6, 5, 3, 4, 5, 6, 4, 5, 3, 4])  # always above the range
    past = past_rows(exp, exp - 2, exp + 2, act)
    s_lo = (past["wins_low"] - act) / 2  # all negative: the low end would move up
    assert np.max(s_lo) < 0
    lo, hi, n, how = F._calibrate_range(past, 0.2, 0.0, 1.0, 0.8, quantity="wins")
    assert how == "calibrated" and lo == 0.0 and lo <= 0.2 <= hi
    unclamped_lo = 0.0 - np.max(s_lo) * 1.0  # half-range floored at one win
    assert unclamped_lo > 0.5  # without the rule, "1 to ..." beside an expected 0.2
    # the point shown after a level correction: the range holds it too
    lo2, hi2, _, _ = F._calibrate_range(past, 0.2, 0.0, 1.0, 0.8, quantity="wins", shown=9.6)
    assert lo2 <= 9.6 <= hi2 and hi2 == 10.0
    rev = past.rename(columns=lambda c: c.replace("wins", "revenue"))
    r_lo, r_hi, _, _ = F._calibrate_range(rev, 0.2, 0.0, 1.0, 0.8, quantity="revenue")
    assert r_lo == pytest.approx(0.2) and r_hi > 0.2
    # one open lead: never more than one win, however far the past misses stretch the range
    assert hi > 1.0
    assert F._calibrate_range(past, 0.2, 0.0, 1.0, 0.8, quantity="wins", most=1) == (0.0, 1.0, 12, "calibrated")
    assert F._calibrate_range(past, 0.2, 0.0, 1.0, 0.8, quantity="wins", most=0)[:2] == (0.0, 0.0)


def test_level_correction_only_after_misses_on_one_side():
    exp = np.full(12, 100.0)
    act = np.array([80, 85, 90, 70, 88, 92, 75, 81, 79, 95, 105, 84], dtype=float)  # 11 of 12 too high
    past = past_rows(exp, exp - 10, exp + 10, act)
    factor, side, n = F._level_correction(past, quantity="wins")
    assert (side, n) == (11, 12)
    assert factor == pytest.approx(np.median(act / exp))
    mixed = past_rows(exp, exp - 10, exp + 10, np.r_[act[:6], 200 - act[6:]])  # 6 high, 6 low
    assert F._level_correction(mixed, quantity="wins")[0] == 1.0
    # under 9 past cutoffs: only when every one missed on the same side (8 of 8 here), from 5
    eight = past.iloc[:8]
    assert F._level_correction(eight, quantity="wins") == (pytest.approx(np.median(act[:8] / 100)), 8, 8)
    assert F._level_correction(past_rows(exp[:8], exp[:8] - 10, exp[:8] + 10, np.r_[act[:7], 105.0]),
                               quantity="wins") == (1.0, 7, 8)
    assert F._level_correction(past.iloc[:4], quantity="wins") == (1.0, 0, 4)  # too few


@pytest.mark.parametrize("bias, spread", [(0.0, 1.0), (30.0, 3.0)])
def test_calibrated_ranges_hold_at_the_stated_level(bias, spread):
    """Exchangeable past and future: whatever the model's error (biased, too narrow), the
    calibrated 80% range covers 80% to 80% + 2/(n+1) of outcomes (split-conformal, per side)."""
    rng = np.random.default_rng(0)
    n, trials, held = 12, 4000, 0
    for _ in range(trials):
        exp = rng.uniform(50, 150, n + 1)
        half = 1.2816 * np.sqrt(exp)  # the model's 80% range, from a Poisson model
        act = exp - bias + rng.normal(0, spread * np.sqrt(exp))
        past = past_rows(exp[:n], exp[:n] - half[:n], exp[:n] + half[:n], act[:n])
        lo, hi, _, _ = F._calibrate_range(past, exp[n], exp[n] - half[n], exp[n] + half[n], 0.8,
                                          quantity="wins")
        held += lo <= act[n] <= hi
    cover = held / trials
    assert 0.78 <= cover <= 0.8 + 2 / (n + 1) + 0.02


def test_forecast_calibrate_labels_and_falls_back(demo_log):
    f = F.forecast(demo_log, as_of="2025-09-30", horizon="60D", n_draws=200, calibrate=True,
                   calibration_cutoffs=6, calibration_every="30D")
    t = f.total.iloc[0]
    past = f.calibration_
    assert past["cutoff"].nunique() == 6
    assert (past["horizon_end"] <= pd.Timestamp("2025-09-30 23:59:59.999999999")).all()
    assert t["range"] == "calibrated on 6 past cutoffs"
    lo, hi, n, how = F._calibrate_range(past, t["model_expected_wins"], t["model_wins_low"], t["model_wins_high"],
                                        0.8, quantity="wins", shown=t["model_expected_wins"] * t["level_factor"],
                                        most=t["open_leads"])
    assert (t["wins_low"], t["wins_high"]) == (lo, hi)
    assert lo <= t["expected_wins"] <= hi and lo == int(lo) and hi == int(hi)
    assert any("past cutoffs" in n for n in f.notes_)
    # too little history: the model's range, labelled as such
    short = F.forecast(demo_log, as_of="2025-01-15", horizon="60D", n_draws=100, calibrate=True)
    r = short.total.iloc[0]
    assert r["range"].startswith("model")
    assert (r["wins_low"], r["wins_high"]) == (r["model_wins_low"], r["model_wins_high"])


def spacing_by_hand(first_win, T, span_days, n):
    """calibration_every="auto" by hand: n cutoffs over the room between 'twice the horizon
    (at least 60 days) after the first win' and 'the last horizon ending by T': 30 days when
    each gap can be, else whole weeks, at least one."""
    lo = first_win + pd.Timedelta(days=max(60, 2 * span_days))
    last = (T - pd.Timedelta(days=span_days)).normalize() - pd.Timedelta(days=1)
    gap = (last - lo) / (n - 1) / pd.Timedelta(days=1) if last > lo else 30
    return (30 if gap >= 30 else max(int(gap // 7), 1) * 7), lo, last


def test_calibration_cutoffs_spread_over_the_history_there_is(demo_log):
    """A short history is calibrated on cutoffs a week apart, a long one a month apart; none
    comes before the model has seen wins for twice the horizon (at least 60 days)."""
    first_win = demo_log.loc[demo_log["stage"] == "won", "timestamp"].min()
    for as_of, n_expected in [("2025-01-15", 0), ("2025-02-28", 5), ("2025-04-30", 12), ("2025-09-30", 12)]:
        T = pd.Timestamp(as_of) + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
        f = F.forecast(demo_log, as_of=as_of, horizon="60D", n_draws=100, calibrate=True, half_life=None)
        cuts = sorted(f.calibration_["cutoff"].unique()) if len(f.calibration_) else []
        step, lo, last = spacing_by_hand(first_win, T, 60, 12)
        want = [last - k * pd.Timedelta(days=step) for k in range(12)]
        want = sorted(c + pd.Timedelta(days=1) - pd.Timedelta(1, "ns") for c in want if c >= lo)
        assert [pd.Timestamp(c) for c in cuts] == want
        assert len(cuts) == n_expected
    # three weeks apart over the demo's 248 days of room at 2025-09-30 (22.5 days per gap), a
    # week apart at 2025-02-28 (34 days of room), 30 days on a history two years longer
    assert spacing_by_hand(first_win, pd.Timestamp("2025-09-30"), 60, 12)[0] == 21
    assert F._calibration_spacing(first_win, pd.Timestamp("2025-09-30"), pd.Timedelta(days=60), 12,
                                  "auto") == pd.Timedelta(days=21)
    assert spacing_by_hand(first_win - pd.Timedelta(days=730), pd.Timestamp("2025-09-30"), 60, 12)[0] == 30
    assert F._calibration_spacing(first_win - pd.Timedelta(days=730), pd.Timestamp("2025-09-30"),
                                  pd.Timedelta(days=60), 12, "auto") == pd.Timedelta(days=30)
    assert spacing_by_hand(first_win, pd.Timestamp("2025-02-28 23:59"), 60, 12)[0] == 7
    # a fixed spacing is still taken as given
    f = F.forecast(demo_log, as_of="2025-09-30", horizon="60D", n_draws=100, calibrate=True, half_life=None,
                   calibration_cutoffs=4, calibration_every="10D")
    gaps = np.diff(sorted(f.calibration_["cutoff"].unique())) / pd.Timedelta(days=1)
    assert list(gaps) == [10.0, 10.0, 10.0]


def test_no_calibration_cutoff_before_the_model_has_seen_wins(demo_log):
    """A CRM export whose first deals closed months after the first engagement: a past cutoff
    before the first win forecasts 0 wins of 0 to 0, and its miss in half-ranges would make
    every calibrated range a hundred times too wide."""
    late = demo_log[~((demo_log["stage"] == "won") & (demo_log["timestamp"] < "2025-01-01"))]
    first_win = late.loc[late["stage"] == "won", "timestamp"].min()
    assert first_win >= pd.Timestamp("2025-01-01")
    f = F.forecast(late, as_of="2025-09-30", horizon="30D", n_draws=100, calibrate=True, half_life=None)
    cuts = pd.Series(f.calibration_["cutoff"].unique())
    assert len(cuts) == 12 and (cuts >= first_win + pd.Timedelta(days=60)).all()
    assert (f.calibration_["expected_wins"] > 0).all()
    bt = F.backtest(late, cutoffs=["2025-07-31", "2025-08-31"], horizon="30D", n_draws=100, half_life=None)
    assert (bt.rolling_["cutoff"] >= first_win + pd.Timedelta(days=60)).all()  # no warm-up before
    assert (bt.table["calibration_cutoffs"] >= 4).all() and (bt.table["range"].str.startswith("calibrated")).all()


def test_backtest_calibrates_each_cutoff_on_its_own_past(demo_log):
    bt = F.backtest(demo_log, every="14D", n_cutoffs=3, horizon="30D", n_draws=100, calibration_cutoffs=5)
    t = bt.table
    roll = bt.rolling_
    assert roll["cutoff"].nunique() > len(t)  # warm-up cutoffs before the scored ones
    first_win = demo_log.loc[demo_log["stage"] == "won", "timestamp"].min()
    for _, row in t.iterrows():
        step, lo, _ = spacing_by_hand(first_win, row["cutoff"], 30, 5)
        past = roll[(roll["horizon_end"] <= row["cutoff"]) & (roll["cutoff"] >= lo)]
        keep = []  # at least `step` apart, walking back from the latest
        for c in sorted(past["cutoff"].unique())[::-1]:
            if not keep or keep[-1] - c >= pd.Timedelta(days=step):
                keep.append(c)
        past = past[past["cutoff"].isin(keep[:5])]
        assert past.groupby("cutoff")["half_life"].size().eq(len(F.HALF_LIVES)).all()  # every candidate
        chosen = None if pd.isna(row["half_life"]) else float(row["half_life"])
        assert F._choose_half_life(past, list(F.HALF_LIVES))[0] == chosen
        past = past[F._same_half_life(past["half_life"], chosen)]
        assert row["calibration_cutoffs"] == len(past) == 5
        factor = F._level_correction(past, quantity="wins")[0]
        lo, hi, n, how = F._calibrate_range(past, row["model_expected_wins"], row["model_wins_low"],
                                            row["model_wins_high"], 0.8, quantity="wins",
                                            shown=row["model_expected_wins"] * factor, most=row["open_leads"])
        assert (row["wins_low"], row["wins_high"]) == (lo, hi)
        assert lo <= row["expected_wins"] <= hi <= row["open_leads"]
        assert row["expected_wins"] == pytest.approx(row["model_expected_wins"] * factor)
    s = bt.summary.set_index(["method", "quantity"])
    model = s.loc[("forecast, model range", "wins")]
    inside = ((t["model_wins_low"] <= t["actual_wins"]) & (t["actual_wins"] <= t["model_wins_high"])).sum()
    assert model["held"] == inside


def test_backtest_calibrates_on_as_many_cutoffs_as_forecast_spaced_as_it_spaces_them(demo_log):
    """Weekly scored cutoffs: each is calibrated on as many past cutoffs as forecast(as_of=it)
    takes, exactly as far apart (in whole weeks, so that the backtest's weekly cutoffs hold
    them; with 8 days asked of cutoffs a week apart it had taken every other one)."""
    bt = F.backtest(demo_log, every="7D", n_cutoffs=4, horizon="30D", n_draws=50, half_life=None)
    roll = bt.rolling_
    first_win = demo_log.loc[demo_log["stage"] == "won", "timestamp"].min()
    for _, row in bt.table.iterrows():
        c = row["cutoff"]
        f = F.forecast(demo_log, as_of=c, horizon="30D", calibrate=True, half_life=None, n_draws=50)
        grid = sorted(f.calibration_["cutoff"].unique())
        step, lo, _ = spacing_by_hand(first_win, c, 30, 12)
        assert list(np.diff(grid) / pd.Timedelta(days=1)) == [step] * (len(grid) - 1)
        past = roll[(roll["horizon_end"] <= c) & (roll["cutoff"] >= lo)]["cutoff"].unique()
        keep = []
        for x in sorted(past)[::-1]:
            if not keep or keep[-1] - x >= pd.Timedelta(days=step):
                keep.append(x)
        keep = keep[:12]
        assert row["calibration_cutoffs"] == len(keep) == len(grid) == 12
        assert set(np.diff(sorted(keep)) / pd.Timedelta(days=1)) == {step}


def test_backtest_notes_the_cutoffs_after_the_last_new_lead(demo_log):
    """An extract of the cases started by a date: after its last new lead the open pipeline
    only drains, and the backtest says how many cutoffs fell there and how each part held."""
    first = demo_log.groupby("lead_id", observed=True)["timestamp"].transform("min")
    extract = demo_log[first <= "2025-05-31"]
    last_new = extract.groupby("lead_id", observed=True)["timestamp"].min().max()
    bt = F.backtest(extract, cutoffs=["2025-03-31", "2025-04-30", "2025-06-15", "2025-07-15", "2025-08-15"],
                    horizon="30D", n_draws=100, half_life=None)
    t = bt.table
    held = (t["wins_low"] <= t["actual_wins"]) & (t["actual_wins"] <= t["wins_high"])
    after = t["cutoff"] > last_new
    assert after.sum() == 3
    note = next(n for n in bt.notes_ if "last new lead" in n)
    assert note.startswith(f"3 of the 5 cutoffs come after the last new lead ({last_new:%Y-%m-%d})")
    assert f"held in {held[after].sum()} of them and in {held[~after].sum()} of the other 2" in note
    dry = t["model_expected_wins"] < 2
    assert any(f"{dry.sum()} of the 5 cutoffs expected under 2 wins" in n for n in bt.notes_) == (0 < dry.sum() < 5)
    assert "last new lead" in repr(bt) and "last new lead" in bt._repr_html_()
    # a live log: leads keep arriving, nothing to say
    live = F.backtest(demo_log, n_cutoffs=2, horizon="30D", n_draws=100, half_life=None, calibrate=False)
    assert not any("last new lead" in n for n in live.notes_)


def test_a_six_month_log_is_backtested_without_options(demo_log):
    """min_history="auto": half a year of history before the first cutoff when the log has
    room for it, else the first third of the room before the last horizon (a six-month log
    was 'too short for min_history=180D' unless the user found the option)."""
    six = demo_log[demo_log["timestamp"] < "2025-01-01"]
    with pytest.raises(F.ForecastError, match="too short"):
        F.backtest(six, horizon="30D", min_history="180D", n_draws=50)
    bt = F.backtest(six, horizon="30D", n_cutoffs=5, n_draws=50, half_life=None)
    first, last = six["timestamp"].min(), six["timestamp"].max()
    room = (last - pd.Timedelta(days=30)) - first
    lo = (first + np.ceil(room / 3 / pd.Timedelta(days=1)) * pd.Timedelta(days=1)).normalize()
    cuts = bt.table["cutoff"]
    assert len(cuts) == 5 and cuts.min() >= lo and cuts.max() + pd.Timedelta(days=30) <= last
    # a log with room for it keeps half a year
    assert F._default_cutoffs(demo_log, "timestamp", "90D", 3, None, "auto") == \
        F._default_cutoffs(demo_log, "timestamp", "90D", 3, None, "180D")


def test_forecast_says_when_leads_stopped_arriving(demo_log):
    """Read after its last new lead, an extract of the cases started by a date only drains;
    the forecast says since when no lead arrived and how often one did before."""
    first = demo_log.groupby("lead_id", observed=True)["timestamp"].transform("min")
    extract = demo_log[first <= "2025-05-31"]
    firsts = extract.groupby("lead_id", observed=True)["timestamp"].min()
    last = firsts.max()
    year = firsts[firsts > last - pd.Timedelta(days=365)]
    T = pd.Timestamp("2025-08-31 23:59:59.999999999")
    f = F.forecast(extract, as_of="2025-08-31", horizon="30D", n_draws=50, calibrate=True, half_life=None)
    note = next(n for n in f.notes_ if n.startswith("no new lead since"))
    assert note.startswith(f"no new lead since {last:%Y-%m-%d} ({int((T - last) / pd.Timedelta(days=1))} days "
                           f"before as_of; {len(year):,} arrived in the year before it)")
    assert note.endswith("only drains.")
    new = F.forecast(extract, as_of="2025-08-31", horizon="30D", n_draws=50, new_leads=True)
    assert any("new_leads=True counts no new lead" in n for n in new.notes_)
    # ... and counts none: the open pipeline's forecast, to the draw
    t, plain = new.total.iloc[0], F.forecast(extract, as_of="2025-08-31", horizon="30D", n_draws=50).total.iloc[0]
    assert t["new_leads"] == 0 and t["new_lead_wins"] == 0 and t["new_lead_revenue"] == 0
    assert t["expected_wins"] == pytest.approx(plain["expected_wins"], rel=1e-12)
    assert (t["wins_low"], t["wins_high"]) == (plain["wins_low"], plain["wins_high"])
    # the backtest's cutoffs after the last arrival: no new lead either; before it, some
    bt = F.backtest(extract, cutoffs=["2025-04-30", "2025-07-31"], horizon="30D", n_draws=50, new_leads=True,
                    calibrate=False, half_life=None)
    assert bt.table["new_leads"].iloc[0] > 0 and bt.table["new_leads"].iloc[1] == 0
    live = F.forecast(demo_log, as_of="2025-08-31", horizon="30D", n_draws=50, calibrate=True, half_life=None)
    assert not any(n.startswith("no new lead since") for n in live.notes_)


def test_the_first_win_is_found_under_any_name_of_the_won_stage(demo_log):
    """A CRM export that calls the won stage "Closed Won" (an alias of pipeline4's "won")."""
    ss = fk.get_stage_set("pipeline4")
    renamed = demo_log.assign(stage=demo_log["stage"].astype(str).replace({"won": "Closed Won"}))
    assert (renamed["stage"] == "Closed Won").any() and not (renamed["stage"] == "won").any()
    want = demo_log.loc[demo_log["stage"] == "won", "timestamp"].min()
    assert F._first_win(renamed, ss, stage="stage", time="timestamp") == want


def test_a_forecast_calibrated_on_a_backtest_equals_one_calibrated_on_its_own_cutoffs(demo_log):
    """``forecast(calibrate=bt)`` reads the backtest's rolling forecasts instead of making its own:
    given a backtest at the very cutoffs ``forecast(calibrate=True)`` would use, the two are the
    same forecast, range, level correction and notes; and a backtest of another horizon, level or
    basis is refused by name."""
    kw = dict(as_of="2025-09-30", horizon="30D", n_draws=100, seed=0)
    own = F.forecast(demo_log, calibrate=True, **kw)
    grid = sorted(own.calibration_["cutoff"].unique())
    assert len(grid) == 12
    bt = F.backtest(demo_log, cutoffs=[c.date() for c in grid], horizon="30D", n_draws=100, seed=0)
    shared = F.forecast(demo_log, calibrate=bt, **kw)
    pd.testing.assert_frame_equal(shared.total, own.total)
    pd.testing.assert_frame_equal(shared.calibration_.reset_index(drop=True), own.calibration_.reset_index(drop=True),
                                  check_like=True)
    assert shared.notes_ == own.notes_
    with pytest.raises(F.ForecastError, match="horizon"):
        F.forecast(demo_log, calibrate=bt, **{**kw, "horizon": "60D"})
    with pytest.raises(F.ForecastError, match="level"):
        F.forecast(demo_log, calibrate=bt, level=0.9, **kw)
    with pytest.raises(F.ForecastError, match="new_leads"):
        F.forecast(demo_log, calibrate=bt, new_leads=True, **kw)
    with pytest.raises(F.ForecastError, match="half-lives none, 90, not 45"):
        F.forecast(demo_log, calibrate=bt, half_life=45, **kw)
    # one of the backtest's candidates, asked for: its forecasts only
    ninety = F.forecast(demo_log, calibrate=bt, half_life=90, **kw)
    assert ninety.half_life_ == 90.0 and (ninety.calibration_["half_life"] == 90.0).all()
