"""A monthly report on a stage set with no lost outcome: its month's win rate is not 100%.

Nothing is ever marked lost there (a CRM that never closes deals out, a marketing-lead log of
leads and closed deals), so "won / (won + lost) of the leads closed in the month" was every
closed lead won: the headline said "Win rate of leads closed: 100.0% (39 of 39 closed)" on the
demo with its lost events removed.  The month's losses are now the leads that stalled in it
(the horizon of the step they sit at ran out, the funnel's rule), recounted here by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import funnel, reports
from funnelkit.reports import monthly, sections

NO_LOST = fk.StageSet("no lost", ["qualification", "meeting", "proposal", "close"], won="won")


@pytest.fixture(scope="module")
def no_lost():
    log = fk.datasets.load_demo()
    return log[log["stage"].astype(str) != "lost"].reset_index(drop=True)


@pytest.fixture(scope="module")
def june(no_lost):
    return reports.MonthlyReport.prepare(no_lost, stages=NO_LOST, month="2025-06")


def _stalled_by_hand(log, start, end, as_of):
    """Open leads whose current step's horizon ran out in [start, end), from the per-lead table."""
    p = funnel.lead_progress(log[log["timestamp"] <= as_of], stages=NO_LOST, as_of=as_of)
    hz = p.attrs["funnel"]["horizon"]
    steps = list(NO_LOST.steps)
    n = 0
    for _, r in p.iterrows():
        k = int(r["steps_reached"])
        if str(r["outcome"]) != "open" or not 1 <= k < len(steps):
            continue
        at = r[f"time_{steps[k - 1]}"] + pd.Timedelta(days=hz[steps[k - 1]])
        if at <= as_of and start <= at < end:  # its time ran out by as_of, within the month
            n += 1
    return n


def test_the_month_win_rate_counts_leads_that_stalled_in_it(no_lost, june):
    h = june.headline.set_index("metric")
    start, end = pd.Timestamp("2025-06-01"), pd.Timestamp("2025-07-01")
    won_by_hand = no_lost.loc[(no_lost["stage"].astype(str) == "won") & (no_lost["timestamp"] >= start)
                              & (no_lost["timestamp"] < end), "lead_id"].nunique()
    stalled = _stalled_by_hand(no_lost, start, end, june.as_of)
    assert h.loc["won", "value"] == won_by_hand
    assert h.loc["lost", "value"] == stalled > 0 and h.loc["lost", "label"] == "Stalled"
    assert h.loc["win_rate", "value"] == pytest.approx(won_by_hand / (won_by_hand + stalled), abs=1e-12)
    assert h.loc["win_rate", "value"] < 0.5  # it said 1.0
    text = monthly.headline_summary(june.headline)
    assert "decided (won, or stalled" in text and "100.0%" not in text


def test_every_stalled_lead_stalls_once(no_lost, june):
    """Stalled leads by month, over all of time up to as_of, are the funnel's stalled leads."""
    known = monthly.as_of_log(no_lost, june.as_of)
    every = monthly.stalled_between(known, pd.Timestamp("2000-01-01"), june.as_of + pd.Timedelta(1, "ns"),
                                    stages=NO_LOST, as_of=june.as_of)
    o = funnel.outcomes(known, stages=NO_LOST, as_of=june.as_of).iloc[0]
    assert len(every) == o["stalled"]
    assert every["lead_id"].is_unique


def test_the_outcomes_section_shows_the_same_month(june):
    h = june.headline.set_index("metric")
    sec = sections.outcomes(june, by="product")
    res = sec.data
    assert res["won"].sum() == h.loc["won", "value"] and res["lost"].sum() == h.loc["lost", "value"]
    assert "Stalled" in sec.html and "no lost outcome" in sec.html
    assert "Decided in June 2025" in sec.text
    card = sections.headline(june).text
    assert "Win rate of leads decided" in card and "decided (won or stalled)" in card


def test_the_monthly_series_is_the_same_rule(no_lost):
    s = monthly.monthly_series(no_lost, month="2025-06", stages=NO_LOST, months=3).set_index("month")
    assert (s["closed"] == s["won"] + s["lost"]).all()
    assert (s["win_rate"] == s["won"] / s["closed"]).all()
    assert (s["win_rate"] < 0.5).all()


def test_with_a_lost_outcome_the_month_is_unchanged():
    rep = reports.MonthlyReport.prepare("demo", month="2025-09")
    h = rep.headline.set_index("metric")
    assert h.loc["lost", "label"] == "Lost" and h.loc["win_rate", "label"] == "Win rate of leads closed"
    log = fk.datasets.load_demo()
    closed = log[(log["timestamp"] >= "2025-09-01") & (log["timestamp"] < "2025-10-01")
                 & log["stage"].astype(str).isin(["won", "lost"])]
    last = closed.sort_values("timestamp").groupby("lead_id")["stage"].last().astype(str)
    assert (h.loc["won", "value"], h.loc["lost", "value"]) == ((last == "won").sum(), (last == "lost").sum())
    assert np.isclose(h.loc["win_rate", "value"], (last == "won").mean())


def test_the_movement_section_does_not_call_stalled_leads_reopened(june):
    text = sections.waterfall(june).text
    assert "decided again" not in text  # it said 118 of the 118 lost had been closed before and decided again
    stalled = int(june.headline.set_index("metric").loc["lost", "value"])
    assert f"the {stalled:,} deals that stalled in the month" in text.replace("leads", "deals")


def test_a_month_with_no_loss_marked_says_why_it_reads_100_percent():
    """Road fines are sent for credit collection in yearly batches: 11 of 12 months of 2009 read 100%."""
    log = fk.datasets.load_demo()
    lost = log["stage"].astype(str) == "lost"
    in_march = (log["timestamp"] >= "2025-03-01") & (log["timestamp"] < "2025-04-01")
    batched = log[~lost | in_march].reset_index(drop=True)  # losses marked in March only
    rep = reports.MonthlyReport.prepare(batched, stages="pipeline4", month="2025-06", check_months=0)
    h = rep.headline.set_index("metric")
    assert h.loc["lost", "value"] == 0 and h.loc["win_rate", "value"] == 1.0
    s = rep.series.dropna(subset=["won", "lost"])
    quiet = int(((s["lost"] == 0) & (s["won"] > 0)).sum())
    assert 3 <= quiet < len(s)
    card = sections.headline(rep).text
    assert (f"100% because no lead was marked lost this month: {quiet} of the last {len(s)} months had none, "
            "so losses here are marked in batches") in card
    assert "100% by construction" in monthly.headline_summary(rep.headline)
    normal = sections.headline(reports.MonthlyReport.prepare("demo", month="2025-09", check_months=0)).text
    assert "marked lost" not in normal and "by construction" not in normal


def test_the_outcomes_section_says_why_the_month_reads_100_percent():
    log = fk.datasets.load_demo()
    lost = log["stage"].astype(str) == "lost"
    in_march = (log["timestamp"] >= "2025-03-01") & (log["timestamp"] < "2025-04-01")
    rep = reports.MonthlyReport.prepare(log[~lost | in_march].reset_index(drop=True), stages="pipeline4",
                                        month="2025-06", check_months=0)
    text = sections.outcomes(rep).text
    assert "Closed in June 2025: 100.0%" in text
    assert "100% because no lead was marked lost this month" in sections.outcomes(rep).html
    plain = sections.outcomes(reports.MonthlyReport.prepare("demo", month="2025-09", check_months=0)).html
    assert "marked lost" not in plain


def test_the_batch_index_flags_a_100_percent_with_no_loss_marked(june):
    """The index page showed the bare "100.0%" of such a month; it now says "none marked lost"."""
    from funnelkit.reports import batch, index

    log = fk.datasets.load_demo()
    lost = log["stage"].astype(str) == "lost"
    in_march = (log["timestamp"] >= "2025-03-01") & (log["timestamp"] < "2025-04-01")
    batched = reports.MonthlyReport.prepare(log[~lost | in_march].reset_index(drop=True), stages="pipeline4",
                                            month="2025-06", check_months=0)
    normal = reports.MonthlyReport.prepare("demo", month="2025-09", check_months=0)

    def note(rep):
        rec = monthly.headline_record(rep.headline)
        return batch._win_rate_note(rec)

    assert note(batched) == "none marked lost"
    assert note(normal) == ""
    assert note(june) == ""  # no lost outcome: the month's losses are its stalled leads, the rate is not 100%
    status = pd.DataFrame([
        {"split": "product", "value": "Starter", "status": "ok", "won": 17.0, "win_rate": 1.0,
         "win_rate_change": 0.0, "html": "/r/Starter.html", "win_rate_note": "none marked lost"},
        {"split": "product", "value": "Pro", "status": "ok", "won": 5.0, "win_rate": 0.5,
         "win_rate_change": 0.0, "html": "/r/Pro.html", "win_rate_note": ""},
    ], columns=reports.STATUS_COLUMNS)
    page = index.index_html(status, folder="/r", title="T", month="2025-06", noun="deals")
    assert page.count('<span class="flag">none marked lost</span>') == 1
    assert "is 100% only because none of the deals was marked lost in the month" in page
    quiet = index.index_html(status.iloc[1:], folder="/r", title="T", month="2025-06", noun="deals")
    assert "none marked lost" not in quiet
