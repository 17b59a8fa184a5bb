"""Calendar: weekday and holiday effects on when moves happen (activity time)."""

from __future__ import annotations

import holidays
import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import forecast as F
from funnelkit.transitions import Calendar, TransitionModel

PROP = fk.StageSet("prop", ["proposal"], won="won", lost=["lost"])


def working_days(start, end, country="IT"):
    days = pd.date_range(start, end, freq="D")
    hol = holidays.country_holidays(country, years=range(days[0].year, days[-1].year + 1))
    return days[(days.day_of_week < 5) & ~days.isin(pd.to_datetime(list(hol)))]


def office_log(seed=0, per_day=40, start="2021-01-01", end="2025-02-28"):
    """Proposals made on working days (Italy) and decided 1 + Poisson(3) working days later,
    never on a weekend or a public holiday; 40% are won."""
    rng = np.random.default_rng(seed)
    wd = working_days(start, end)
    n = per_day * len(wd)
    i0 = np.repeat(np.arange(len(wd)), per_day)
    i1 = i0 + 1 + rng.poisson(3, n)
    ok = i1 < len(wd)
    lead = np.char.add("L", np.arange(n).astype(str))
    won = rng.random(n) < 0.4
    t0 = wd[i0] + pd.to_timedelta(rng.uniform(8, 18, n), unit="h")  # office hours
    t1 = wd[np.minimum(i1, len(wd) - 1)] + pd.to_timedelta(rng.uniform(8, 18, n), unit="h")
    df = pd.concat([
        pd.DataFrame({"lead_id": lead, "stage": "proposal", "timestamp": t0}),
        pd.DataFrame({"lead_id": lead[ok], "stage": np.where(won[ok], "won", "lost"), "timestamp": t1[ok]}),
    ], ignore_index=True)
    return fk.validate_events(df.sort_values(["lead_id", "timestamp"]), stages=PROP)


def test_calendar_factors_by_hand():
    log = office_log(per_day=5, start="2023-01-01", end="2024-12-31")
    moves = log.loc[log["stage"] != "proposal", "timestamp"]
    cal = Calendar("IT").fit(moves, end=pd.Timestamp("2024-12-31 23:59"))
    f = cal.factors_.set_index("day_type")
    assert f.loc["Saturday", "factor"] < 0.03 and f.loc["Sunday", "factor"] < 0.03  # nothing moves then
    assert f.loc["public holiday", "factor"] == pytest.approx(cal.min_factor)
    assert f.loc["public holiday", "events"] == 0 and f.loc["Monday", "events"] > 0
    # an ordinary week is 7 activity days; Christmas week in Italy far fewer
    assert cal.activity_days("2024-11-10 23:59", "2024-11-17 23:59") == pytest.approx(7.0, abs=1e-6)
    xmas = cal.activity_days("2024-12-22 23:59", "2024-12-29 23:59")
    assert xmas < 5.5
    # the weekday factors are the ratio of moves on that weekday to the local average
    day = moves.dt.normalize()
    n_by_day = day.value_counts().reindex(pd.date_range(day.min(), "2024-12-31"), fill_value=0)
    hol = pd.to_datetime(list(holidays.country_holidays("IT", years=[2023, 2024])))
    ordinary = ~n_by_day.index.isin(hol) & ~(((n_by_day.index.month == 12) & (n_by_day.index.day >= 24))
                                             | ((n_by_day.index.month == 1) & (n_by_day.index.day <= 6)))
    level = n_by_day.rolling(29, center=True, min_periods=1).mean()
    ratio = n_by_day[ordinary].groupby(n_by_day.index[ordinary].day_of_week).sum() / \
        level[ordinary].groupby(level.index[ordinary].day_of_week).sum()
    want = np.clip(ratio / ratio.mean(), cal.min_factor, 5.0)
    want = want / want.mean()
    assert cal._wd_f == pytest.approx(want.to_numpy(), rel=1e-6)


def test_calendar_fits_a_history_shorter_than_its_29_day_window():
    """Three weeks of moves (a backtest cutoff weeks after a short log starts) crashed the fit
    (a 29-day window over 24 days); now the level is the mean of the days there are."""
    log = office_log(per_day=5, start="2024-12-09", end="2025-01-10")
    moves = log.loc[log["stage"] != "proposal", "timestamp"]
    end = pd.Timestamp("2025-01-02 23:59")
    cal = Calendar("IT").fit(moves, end=end)
    f = cal.factors_.set_index("day_type")
    assert (f.loc[["Monday", "Saturday"], "factor"] == 1.0).all()  # under 56 days: no weekday effect
    day = moves[moves <= end].dt.normalize()
    n_by_day = day.value_counts().reindex(pd.date_range(day.min(), end.normalize()), fill_value=0)
    assert len(n_by_day) < 29
    level = n_by_day.rolling(29, center=True, min_periods=1).mean()  # here: every day's mean of its neighbours
    hol = n_by_day.index.isin(pd.to_datetime(list(holidays.country_holidays("IT", years=[2024, 2025]))))
    want = np.clip(n_by_day[hol].sum() / level[hol].sum(), cal.min_factor, 5.0)
    assert f.loc["public holiday", "factor"] == pytest.approx(want, rel=1e-12)
    fc = F.forecast(log, as_of="2025-01-02", horizon="14D", calendar="IT", n_draws=100, seed=0)
    assert np.isfinite(fc.total["expected_wins"].iloc[0])


def test_activity_time_round_trip():
    cal = Calendar("US").fit(pd.date_range("2023-01-02", "2024-12-31", freq="B"), end=pd.Timestamp("2024-12-31"))
    t = pd.date_range("2022-06-01", "2026-03-01", freq="37h").asi8
    a = cal.to_activity_ns(t)
    assert (np.diff(a) > 0).all()
    assert np.abs(cal.from_activity_ns(a) - t).max() < 1e6  # within a millisecond
    with pytest.raises(fk.TransitionModelError, match="country"):
        Calendar("Atlantis").fit(t[:10])


def test_a_week_over_christmas_is_not_an_ordinary_week():
    """Moves happen on Italian working days only.  Without a calendar the model forecasts the
    weeks after Dec 22, 2024 and Dec 24, 2023 (Christmas and St Stephen's Day are holidays)
    like any week and overshoots by about half; with calendar="IT" it expects the quiet days."""
    log = office_log(per_day=100, start="2021-01-01", end="2025-02-28")
    kw = dict(horizon="7D", n_draws=200, amount_bands=0)
    weeks = {"christmas": ["2023-12-24", "2024-12-22"], "ordinary": ["2024-10-06", "2024-11-10"]}
    res = {}
    for cal in (None, "IT"):
        for name, days in weeks.items():
            est = act = 0.0
            for as_of in days:
                f = F.forecast(log, as_of=as_of, calendar=cal, **kw)
                T = pd.Timestamp(as_of) + pd.Timedelta(days=1)
                won = log[(log["stage"] == "won") & (log["timestamp"] >= T)
                          & (log["timestamp"] < T + pd.Timedelta(days=7)) & log["lead_id"].isin(f.leads_["lead_id"])]
                est += f.total["expected_wins"].iloc[0]
                act += len(won)
            res[(cal, name)] = est / act - 1  # relative error
    assert res[(None, "christmas")] > 0.3  # the quiet days were forecast as working days
    assert abs(res[("IT", "christmas")]) < 0.15
    assert abs(res[("IT", "ordinary")]) < 0.15 and abs(res[(None, "ordinary")]) < 0.15
    tm = TransitionModel(n_samples=0, calendar="IT").fit(log, as_of="2024-12-22")
    f = tm.calendar_.factors_.set_index("day_type")["factor"]
    assert f["public holiday"] < 0.1 and f["Sunday"] < 0.1 and f["Monday"] > 1.2
    # durations are in activity days: a week of five working days is 7
    assert tm.calendar_.activity_days("2024-11-10 23:59", "2024-11-17 23:59") == pytest.approx(7.0)
