"""One as-of rule: every view agrees on who was known at an as-of date.

A date means the end of that day, a timestamp that instant; undated events
count only for leads known by then (``funnelkit.data.known_at``).  Each view
is asked about the same moments, and the leads it reports are compared with
a hand filter of the raw events.
"""

from __future__ import annotations

import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import funnel, pipeline


def hand_known(log: pd.DataFrame, moment: pd.Timestamp) -> set:
    """Leads with a dated event at or before ``moment``; all-undated leads only at the data's end."""
    t = log["timestamp"]
    known = set(log.loc[t.notna() & (t <= moment), "lead_id"])
    if moment >= t.max():
        undated = log.groupby("lead_id")["timestamp"].apply(lambda s: s.isna().all())
        known |= set(undated[undated].index)
    return known


def check_views(log: pd.DataFrame, as_of, *, forecast: bool = True) -> None:
    moment = fk._common.parse_as_of(as_of)
    expect = hand_known(log, moment)
    first = log.attrs["funnelkit"].stage_set.steps[0]
    prog = funnel.lead_progress(log, as_of=as_of)
    assert set(prog.loc[prog["steps_reached"] >= 1, "lead_id"]) == expect
    f = funnel.conversion(log, as_of=as_of)
    assert f["entered"].iloc[0] == len(expect)
    co = funnel.cohorts(log, as_of=as_of)
    assert co.groupby("step", observed=True)["entered"].sum().iloc[0] == len(expect)
    later = log.attrs["funnelkit"].stage_set.steps[1]
    ttc = funnel.time_to_convert(log, start=first, end=later, as_of=as_of).summary.iloc[0]
    assert ttc["leads"] == len(expect)
    snap = pipeline.snapshot(log, as_of=as_of, include_closed=True)
    assert snap.attrs["as_of"] == moment
    known_in_snapshot = set(snap["lead_id"]) | set(snap.attrs.get("excluded_undated_ids", []))
    assert set(snap["lead_id"]) <= expect
    assert known_in_snapshot <= expect
    open_ = set(snap.loc[snap["outcome"] == "open", "lead_id"])
    owner = next((c for c in ("owner", "sales_agent") if c in log.columns), None)
    st = pipeline.stale(log, as_of=as_of, owner=owner)
    assert set(st["lead_id"]) <= open_
    d = pipeline.durations(log, as_of=as_of)
    assert set(d["lead_id"]) <= expect
    assert d.attrs["as_of"] == moment
    model = fk.TransitionModel().fit(log, as_of=as_of)
    assert model.as_of_ == moment
    assert set(model.stays_["lead_id"]) <= expect
    if forecast:
        fc = fk.forecast.forecast(log, as_of=as_of, horizon="30D", n_draws=50)
        assert fc.as_of_ == moment
        assert set(fc.leads_["lead_id"]) <= open_


@pytest.mark.parametrize("as_of", ["2024-09-30", "2025-01-31", pd.Timestamp("2025-06-15 12:00"), "2025-09-30"])
def test_demo_views_agree_on_who_is_known(demo_log, as_of):
    check_views(demo_log, as_of)


def test_a_date_is_the_end_of_that_day(demo_log):
    """'2025-03-31' includes events at 23:00 that day; the Timestamp at midnight does not."""
    t = demo_log["timestamp"]
    day = t[t.dt.normalize() == pd.Timestamp("2025-03-31")]
    assert (day.dt.hour > 0).any()
    as_date = funnel.conversion(demo_log, as_of="2025-03-31")["entered"].iloc[0]
    at_midnight = funnel.conversion(demo_log, as_of=pd.Timestamp("2025-03-31"))["entered"].iloc[0]
    assert as_date == len(hand_known(demo_log, pd.Timestamp("2025-03-31 23:59:59.999999999")))
    assert at_midnight == len(hand_known(demo_log, pd.Timestamp("2025-03-31")))
    assert as_date > at_midnight
    snap_date = pipeline.snapshot(demo_log, as_of="2025-03-31", include_closed=True)
    assert len(snap_date) == as_date


@pytest.mark.shared
@pytest.mark.parametrize("as_of", ["2017-03-31", "2017-06-30", "2017-12-31"])
def test_maven_snapshot_views_agree(maven_log, as_of):
    """A CRM snapshot: Prospecting dates are unknown; a deal exists from its first dated event."""
    check_views(maven_log, as_of)
    # the case: the funnel on 2017-03-31 no longer counts all 8,800 deals
    if as_of == "2017-03-31":
        assert funnel.conversion(maven_log, as_of=as_of)["entered"].iloc[0] < 8800


@pytest.mark.shared
def test_xes_log_views_agree(shared_data):
    ss = fk.StageSet(
        "declarations",
        ["Declaration SUBMITTED by EMPLOYEE", "Declaration FINAL_APPROVED by SUPERVISOR"],
        won="Payment Handled",
        lost=["Declaration REJECTED by EMPLOYEE"],
    )
    keep = ["Declaration SUBMITTED by EMPLOYEE", "Declaration FINAL_APPROVED by SUPERVISOR",
            "Payment Handled", "Declaration REJECTED by EMPLOYEE"]
    raw = fk.read_xes(shared_data / "bpic2020" / "DomesticDeclarations.xes.gz")
    others = sorted(set(raw["stage"].astype(str)) - set(keep))
    log = fk.read_xes(shared_data / "bpic2020" / "DomesticDeclarations.xes.gz", stages=ss, ignore=others)
    for as_of in ["2017-06-30", "2018-03-31", "2018-12-31"]:
        check_views(log, as_of, forecast=as_of == "2018-03-31")
