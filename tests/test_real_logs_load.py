"""Real process logs load with the facts published for them (../shared/data/SOURCES.md).

Each file is loaded once per module.  The reference numbers are the ones in
SOURCES.md, computed there independently of funnelkit; here they are
recomputed with plain pandas on the loaded log.  Skips when ../shared/data or
a file is absent.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit.exceptions import DataWarning
from funnelkit.xes import read_xes

pytestmark = pytest.mark.shared


def _path(shared_data, *parts):
    p = shared_data.joinpath(*parts)
    if not p.is_file():
        pytest.skip(f"{p} is not present")
    return p


def _load(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # nothing dropped as a duplicate
        return call(*args, **kwargs)


def reached(log):
    """Leads per stage label."""
    return log.groupby(log["stage"].astype(str))["lead_id"].nunique()


def last_stage(log):
    """Each lead's last event's label (the log is sorted by lead, time)."""
    return log.groupby("lead_id", sort=False)["stage"].last().astype(str).value_counts()


def first_time(log, label):
    return log.loc[log["stage"].astype(str) == label].groupby("lead_id")["timestamp"].min()


# -- Road Traffic Fine Management (Parquet, pm4py column names) ----------------------
@pytest.fixture(scope="module")
def fines(shared_data):
    return _load(fk.read_events, _path(shared_data, "road_traffic_fines", "events.parquet"))


def test_fines_cases_events_activities(fines):
    assert fines["lead_id"].nunique() == 150_370
    assert len(fines) == 561_470 and fines.attrs["funnelkit"].events == 561_470
    counts = fines["stage"].astype(str).value_counts()
    assert len(counts) == 11
    assert counts[
        [
            "Create Fine",
            "Send Fine",
            "Insert Fine Notification",
            "Add penalty",
            "Payment",
            "Send for Credit Collection",
        ]
    ].tolist() == [150_370, 103_987, 79_860, 79_860, 77_601, 59_013]
    assert "'case:concept:name' -> 'lead_id'" in str(fines.attrs["funnelkit"])
    assert fines["timestamp"].min() == pd.Timestamp("2000-01-01")
    assert fines["timestamp"].max() == pd.Timestamp("2013-06-18")


def test_fines_outcomes_and_last_activity(fines):
    r = reached(fines)
    assert r["Payment"] == 69_715 and r["Send for Credit Collection"] == 59_013
    lodged = (
        fines["stage"]
        .astype(str)
        .isin(["Insert Date Appeal to Prefecture", "Send Appeal to Prefecture", "Appeal to Judge"])
    )
    assert fines.loc[lodged, "lead_id"].nunique() == 4_555  # appeals to the Prefecture or a judge
    last = last_stage(fines)
    assert last[["Payment", "Send for Credit Collection", "Send Fine"]].tolist() == [67_201, 58_997, 20_755]
    paid = set(fines.loc[fines["stage"] == "Payment", "lead_id"])
    collected = set(fines.loc[fines["stage"] == "Send for Credit Collection", "lead_id"])
    assert len(paid & collected) == 2_126


def test_fines_amounts_times_and_drift(fines):
    created = fines.loc[fines["stage"] == "Create Fine"].set_index("lead_id")
    assert fines["amount"].dtype == "float64" and created["amount"].median() == 35.0
    pay = first_time(fines, "Payment")
    assert (pay - created["timestamp"].reindex(pay.index)).dt.days.median() == 8
    share = pd.Series(created.index.isin(list(pay.index)), index=created["timestamp"].dt.year.to_numpy())
    share = share.groupby(level=0).mean().round(3)
    assert share[[2000, 2003, 2006, 2009, 2011]].tolist() == [0.371, 0.423, 0.552, 0.460, 0.425]
    # numeric attributes stay numeric
    assert fines["paymentAmount"].dtype == "float64" and fines["points"].dtype == "float64"


def test_fines_with_a_stage_set_and_ignored_appeals(fines, shared_data):
    appeals = [
        "Insert Date Appeal to Prefecture",
        "Send Appeal to Prefecture",
        "Receive Result Appeal from Prefecture",
        "Notify Result Appeal to Offender",
        "Appeal to Judge",
    ]
    ss = fk.StageSet(
        "fines",
        ["Create Fine", "Send Fine", "Insert Fine Notification", "Add penalty"],
        won="Payment",
        lost=["Send for Credit Collection"],
    )
    log = _load(
        fk.read_events,
        _path(shared_data, "road_traffic_fines", "events.parquet"),
        stages=ss,
        ignore=appeals,
        segments=["amount", "vehicleClass"],
    )
    expected = fines["stage"].astype(str).value_counts()[appeals]
    rep = log.attrs["funnelkit"]
    assert rep.ignored == expected.to_dict() and sum(rep.ignored.values()) == 10_779
    assert len(log) == 561_470 - 10_779 and list(log.columns[3:5]) == ["amount", "vehicleClass"]
    assert "Left out 10,779 events" in str(rep)


# -- BPI Challenge 2020 (XES) ---------------------------------------------------------
@pytest.fixture(scope="module")
def domestic(shared_data):
    return _load(read_xes, _path(shared_data, "bpic2020", "DomesticDeclarations.xes.gz"))


@pytest.fixture(scope="module")
def requests(shared_data):
    return _load(read_xes, _path(shared_data, "bpic2020", "RequestForPayment.xes.gz"))


def test_domestic_declarations_counts(domestic):
    assert domestic["lead_id"].nunique() == 10_500 and len(domestic) == 56_437
    assert domestic["stage"].nunique() == 17
    # times with UTC offsets, stored as UTC wall-clock time
    assert domestic["timestamp"].min().date() == pd.Timestamp("2017-01-09").date()
    assert domestic["timestamp"].max().date() == pd.Timestamp("2019-06-17").date()
    assert domestic["timestamp"].min() == pd.Timestamp("2017-01-09 08:49:50")  # 09:49:50+01:00
    r = reached(domestic)
    assert r[
        [
            "Declaration SUBMITTED by EMPLOYEE",
            "Declaration FINAL_APPROVED by SUPERVISOR",
            "Request Payment",
            "Payment Handled",
        ]
    ].tolist() == [10_365, 10_070, 10_040, 10_044]
    rej = domestic.loc[domestic["stage"].astype(str).str.contains("REJECTED")]
    assert rej["lead_id"].nunique() == 1_301
    by = rej.groupby(rej["stage"].astype(str).str.extract(r"REJECTED by (.*)")[0])["lead_id"].nunique()
    assert by.to_dict() == {
        "EMPLOYEE": 1_212,
        "ADMINISTRATION": 846,
        "SUPERVISOR": 281,
        "MISSING": 87,
        "PRE_APPROVER": 81,
        "BUDGET OWNER": 58,
    }
    last = last_stage(domestic)
    assert last[
        ["Payment Handled", "Declaration REJECTED by EMPLOYEE", "Declaration SAVED by EMPLOYEE"]
    ].tolist() == [10_043, 284, 134]


def test_domestic_declarations_amounts_and_times(domestic):
    amount = domestic.groupby("lead_id")["Amount"].first()
    assert domestic["Amount"].dtype == "float64"
    assert round(amount.median(), 2) == 41.51 and round(amount.sum(), 2) == 907_406.18
    sub = first_time(domestic, "Declaration SUBMITTED by EMPLOYEE")
    paid = first_time(domestic, "Payment Handled")
    both = pd.concat([sub, paid], axis=1, keys=["sub", "paid"], join="inner")
    days = (both["paid"] - both["sub"]).dt.total_seconds() / 86_400
    assert len(both) == 10_043 and round(days.median(), 2) == 7.41
    rep = str(domestic.attrs["funnelkit"])
    assert "10,500 traces, 56,437 events read" in rep and "no lifecycle:transition" in rep
    assert set(domestic.columns) >= {"org:role", "org:resource", "BudgetNumber", "case:id"}


def test_request_for_payment(requests):
    assert requests["lead_id"].nunique() == 6_886 and len(requests) == 36_796
    assert requests["stage"].nunique() == 19
    assert requests["timestamp"].min().date() == pd.Timestamp("2017-01-09").date()
    assert requests["timestamp"].max().date() == pd.Timestamp("2019-08-08").date()
    r = reached(requests)
    assert r[
        [
            "Request For Payment SUBMITTED by EMPLOYEE",
            "Request For Payment FINAL_APPROVED by SUPERVISOR",
            "Request Payment",
            "Payment Handled",
        ]
    ].tolist() == [6_814, 6_318, 6_303, 6_307]
    rej = requests.loc[requests["stage"].astype(str).str.contains("REJECTED"), "lead_id"]
    assert rej.nunique() == 1_067
    last = last_stage(requests)
    assert last[["Payment Handled", "Request For Payment REJECTED by EMPLOYEE"]].tolist() == [6_305, 448]
    amount = requests.groupby("lead_id")["RequestedAmount"].first()
    assert round(amount.median(), 2) == 94.25 and round(amount.sum(), 2) == 2_800_729.65
    sub = first_time(requests, "Request For Payment SUBMITTED by EMPLOYEE")
    paid = first_time(requests, "Payment Handled")
    both = pd.concat([sub, paid], axis=1, keys=["sub", "paid"], join="inner")
    assert round(((both["paid"] - both["sub"]).dt.total_seconds() / 86_400).median(), 2) == 9.04
    assert np.issubdtype(requests["Cost Type"].dtype, np.integer)  # an <int> case attribute
