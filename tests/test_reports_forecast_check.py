"""The monthly report's forecast beside its own record: the same forecast replayed at past month
ends (``MonthlyReport.forecast_check``), every number recounted from the events with pandas."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import reports
from funnelkit.exceptions import ReportError
from funnelkit.reports import sections
from funnelkit.reports.monthly import past_month_ends


def _first_outcomes(log: pd.DataFrame, won: str, lost) -> pd.DataFrame:
    """Each lead's first outcome (a lead's path ends there), by hand."""
    out = log[log["stage"].astype(str).isin([won, *lost])].sort_values("timestamp", kind="stable")
    return out.groupby("lead_id", observed=True, sort=False).first()[["stage", "timestamp"]]


def _wins_between(first: pd.DataFrame, won: str, start, end) -> int:
    t = first["timestamp"]
    return int(((first["stage"].astype(str) == won) & (t > start) & (t <= end)).sum())


def _check_against_pandas(rep: reports.MonthlyReport) -> None:
    bt = rep.forecast_check
    fc = rep.next_month
    assert not isinstance(bt, str) and bt is not None, bt
    table = bt.table
    span = fc.horizon_end_ - fc.as_of_
    # month ends (the report's own as-of rule), the latest 12 whose whole next span is known
    cut = pd.DatetimeIndex(table["cutoff"])
    after = cut + pd.Timedelta(1, "ns")  # the first instant of the next month
    assert (after == after.normalize()).all() and (after.day == 1).all()
    assert (np.diff(after.year * 12 + after.month) == 1).all()  # consecutive months
    assert len(table) <= 12 and (cut + span <= pd.Timestamp(rep.as_of).tz_localize(None)).all()
    assert ((table["horizon_end"] - table["cutoff"]) == span).all()
    # the same basis as the forecast shown; every win in the window with new leads
    assert fc.total["basis"].iloc[0] == "open pipeline + new leads"
    first = _first_outcomes(rep.log, rep.stages.won, rep.stages.lost)
    for _, r in table.iterrows():
        assert r["actual_wins"] == _wins_between(first, rep.stages.won, r["cutoff"], r["horizon_end"])
        assert r["run_rate_wins"] == _wins_between(first, rep.stages.won, r["cutoff"] - span, r["cutoff"])
    held = int(((table["wins_low"] <= table["actual_wins"]) & (table["actual_wins"] <= table["wins_high"])).sum())
    mae = float((table["expected_wins"] - table["actual_wins"]).abs().mean())
    mae_rr = float((table["run_rate_wins"] - table["actual_wins"]).abs().mean())
    text = sections.forecast(rep).text
    f = rep.fmt
    assert f"range held in {f.count(held)} of {f.count(len(table))}" in text, text
    assert f"missed by {f.number(mae, 1)} wins on average, against {f.number(mae_rr, 1)}" in text
    html = sections.forecast(rep).html
    assert f"<td class=\"num\">{f.count(held)} of {f.count(len(table))}</td>" in html


def test_past_month_ends_are_local_month_ends():
    for tz in ("Europe/Paris", "America/New_York"):
        as_of = pd.Timestamp("2025-09-30 23:59:59.999999999", tz=tz)
        got = past_month_ends(pd.Period("2025-09", "M"), as_of, pd.Timedelta(days=31),
                              pd.Timestamp("2024-01-01", tz=tz))
        # 31 days from August's end is past the as-of date: July's end is the latest
        assert [f"{t:%Y-%m-%d %H:%M}" for t in got] == [f"{m}-{d} 23:59" for m, d in (
            ("2024-08", 31), ("2024-09", 30), ("2024-10", 31), ("2024-11", 30), ("2024-12", 31), ("2025-01", 31),
            ("2025-02", 28), ("2025-03", 31), ("2025-04", 30), ("2025-05", 31), ("2025-06", 30), ("2025-07", 31))]
        assert all(str(t.tz) == tz for t in got)
    # a 30-day horizon reaches from August's end; the earliest bound stops the walk back
    got = past_month_ends(pd.Period("2025-09", "M"), pd.Timestamp("2025-09-30 23:59:59.999999999"),
                          pd.Timedelta(days=30), pd.Timestamp("2025-05-01"))
    assert [f"{t:%m-%d}" for t in got] == ["05-31", "06-30", "07-31", "08-31"]
    assert past_month_ends(pd.Period("2025-09", "M"), pd.Timestamp("2025-09-30"), pd.Timedelta(days=30), pd.NaT) == []


def test_the_report_checks_its_forecast_on_past_months():
    rep = reports.MonthlyReport.prepare("demo", segment_column="source", segment_value="referral", month="2025-09")
    t = rep.next_month.total.iloc[0]
    _check_against_pandas(rep)
    # calibrated on the check's own forecasts: its month ends whose month is over, as forecast()
    # picks past cutoffs (as far apart as it spaces its own, after two months of wins), the latest 12
    past = rep.next_month.calibration_
    roll = rep.forecast_check.rolling_
    assert len(past) and set(past["cutoff"]) <= set(roll["cutoff"])
    assert (past["horizon_end"] <= pd.Timestamp(rep.as_of)).all()
    first_win = rep.log.loc[rep.log["stage"] == "won", "timestamp"].min()
    span = rep.next_month.horizon_end_ - rep.next_month.as_of_
    every = fk.forecast._calibration_spacing(first_win, pd.Timestamp(rep.as_of), span, 12, "auto")
    assert every == pd.Timedelta(days=28)  # room for 12 only four weeks apart on this log
    assert (np.diff(np.sort(past["cutoff"].to_numpy())) >= every.to_timedelta64()).all()
    assert t["range"] == f"calibrated on {len(past)} past cutoffs" and t["calibration_cutoffs"] == len(past)
    text = sections.forecast(rep).text
    assert f"ranges are set by how far this forecast missed at {len(past)} earlier dates" in text
    first = rep.forecast_check.table["cutoff"].min()
    assert f"at the end of each of the {len(rep.forecast_check.table)} months from {first:%B %Y}" in text


@pytest.mark.filterwarnings("ignore:as_of=.*after the data ends")
def test_a_short_history_says_the_forecast_cannot_be_checked_yet():
    log = fk.datasets.load_demo()
    start = log["timestamp"].min()
    end = start + pd.Timedelta(days=70)  # ten weeks of data: no month end has two months of wins before it
    short = log[log["timestamp"] < end]
    month = str(short["timestamp"].max().to_period("M"))
    rep = reports.MonthlyReport.prepare(short, month=month, stages="pipeline4")
    assert isinstance(rep.forecast_check, str)
    text = sections.forecast(rep).text
    assert "cannot be checked on past months yet: no earlier month end has" in text
    assert re.search(r"range of wins is the model's own|ranges are the model's own", text), text


@pytest.mark.shared
@pytest.mark.parametrize("month", ["2018-10", "2018-12"])
def test_bpic2020_report_checks_its_forecast(shared_data, month):
    """A real log: BPIC 2020 domestic declarations (they close within days, so the forecast counts
    the new ones and so does each past month's actual).  In October 2018 the model had come in low at
    most past cutoffs and its level is raised: the open/new split is raised with it and still adds
    up to the total the report states."""
    xes = shared_data / "bpic2020" / "DomesticDeclarations.xes.gz"
    rejected = [f"Declaration REJECTED by {who}" for who in
                ("EMPLOYEE", "ADMINISTRATION", "SUPERVISOR", "MISSING", "PRE_APPROVER", "BUDGET OWNER")]
    stages = fk.StageSet("declarations", ["Declaration SUBMITTED by EMPLOYEE",
                                          "Declaration FINAL_APPROVED by SUPERVISOR"],
                         won="Payment Handled", lost=rejected)
    raw = fk.read_xes(xes)
    keep = raw["stage"].astype(str).isin([*stages.steps, *stages.lost])
    log = raw.loc[keep, ["lead_id", "stage", "timestamp"]].reset_index(drop=True)
    rep = reports.MonthlyReport.prepare(log, stages=stages, month=month, noun="declarations")
    _check_against_pandas(rep)
    table = rep.forecast_check.table
    assert len(table) == 12 and np.isfinite(table["expected_wins"]).all()
    t = rep.next_month.total.iloc[0]
    assert t["open_pipeline_wins"] + t["new_lead_wins"] == pytest.approx(t["expected_wins"], rel=1e-12)
    text = sections.forecast(rep).text
    f = rep.fmt
    assert f"{f.number(t['open_pipeline_wins'], 1)} are expected from the open declarations" in text
    # a fast process: most of the open pipeline is won within the month, and the text says so
    share = t["open_pipeline_wins"] / t["open_leads"]
    assert share >= 0.5 and "most of the open pipeline closes later" not in text
    assert f"{f.rate(share, 0)} of the open declarations are expected to be won by then" in text
    if month == "2018-10":
        assert t["level_factor"] > 1 and t["model_expected_wins"] < t["expected_wins"]
        assert f"wins are raised by {f.pct(t['level_factor'] - 1)}" in text
    else:
        assert t["level_factor"] == 1 and "raised by" not in text


def test_check_months_zero_makes_no_past_forecast():
    """``check_months=0`` (a plan's ``parameters: {check_months: 0}``): no check, the model's range
    and a sentence saying so; a bad value is refused by name."""
    rep = reports.MonthlyReport.prepare("demo", segment_column="source", segment_value="referral", month="2025-09",
                                        check_months=0)
    t = rep.next_month.total.iloc[0]
    assert isinstance(rep.forecast_check, str) and rep.next_month.calibration_ is None
    assert t["range"] == "model"
    assert "is the model's own, unchecked: this report makes no past forecast (check_months is 0)" in \
        sections.forecast(rep).text
    plain = fk.forecast.forecast(rep.log, as_of=rep.as_of, horizon=rep.next_month.horizon_end_ - rep.as_of,
                                 stages=rep.stages, seed=0, new_leads=True)
    assert t["expected_wins"] == plain.total["expected_wins"].iloc[0]
    with pytest.raises(ReportError, match="check_months"):
        reports.MonthlyReport.prepare("demo", month="2025-09", check_months=-1)
    with pytest.raises(ReportError, match="check_months"):
        reports.MonthlyReport.prepare("demo", month="2025-09", check_months=1.5)


def test_a_log_whose_arrivals_stopped_says_no_new_lead_comes():
    """An extract of the leads that started by a date (BPIC 2020 requests for payment after
    2018-12-29): the forecast draws no new lead, and the report says none is expected and when the
    last one entered, not that new leads "rarely close within a month"."""
    log = fk.datasets.load_demo()
    first = log.groupby("lead_id")["timestamp"].transform("min")
    extract = log[first <= pd.Timestamp("2025-06-15")].reset_index(drop=True)
    last = extract.groupby("lead_id")["timestamp"].min().max()  # pandas, by hand
    rep = reports.MonthlyReport.prepare(extract, month="2025-09", stages="pipeline4", noun="requests")
    t = rep.next_month.total.iloc[0]
    assert t["new_leads"] == 0 and t["new_lead_wins"] == 0
    assert t["open_pipeline_wins"] == pytest.approx(t["expected_wins"], rel=1e-12)
    text = sections.forecast(rep).text
    assert (f"All of it comes from the open requests ({rep.fmt.number(t['open_pipeline_wins'], 1)} wins): fewer "
            f"than one new request is expected to enter by then (the last one entered on {last:%Y-%m-%d}).") in text
    assert "rarely close within a month" not in text
    # the revenue card's small-numbers flag speaks of the report's noun, not "one deal"
    won = int(((extract["stage"] == "won") & (extract["timestamp"].dt.to_period("M") == "2025-09")).sum())
    head = sections.headline(rep).html
    assert 0 < won < 5 and f"from {won} wins: one request moves it a lot" in head and "one deal" not in head
    # the numbers behind the cards name the measures in the report's noun too
    assert "<td>Requests entered</td>" in head and "<td>Average request won</td>" in head
    assert "Leads entered" not in head and "Average deal won" not in head
