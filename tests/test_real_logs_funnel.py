"""Funnel figures on real logs nobody here wrote, against hand computations.

``../shared/data`` (facts in its SOURCES.md): the road-traffic fines
(pm4py column names) and the BPI Challenge 2020 travel-expense logs (XES).
Each figure is recomputed with plain pandas from the raw events.  Skipped
when the folder is absent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import funnel

pytestmark = pytest.mark.shared

FINE_STEPS = ["Create Fine", "Send Fine", "Insert Fine Notification", "Add penalty"]


def _labels(log):
    return set(log["stage"].astype(str))


@pytest.fixture(scope="module")
def fines_raw(shared_data):
    return fk.read_events(shared_data / "road_traffic_fines" / "events.parquet")


def _fines(shared_data, fines_raw, ss):
    keep = set(ss.labels)
    return fk.read_events(shared_data / "road_traffic_fines" / "events.parquet", stages=ss,
                          ignore=sorted(_labels(fines_raw) - keep))


def _first(raw, label):
    r = raw[raw["stage"].astype(str) == label]
    return r.groupby("lead_id", observed=True)["timestamp"].min()


def test_fines_without_a_lost_outcome_report_the_true_rate(shared_data, fines_raw):
    """Stage set 'Create Fine, won Payment' and no lost outcome: not 100%."""
    ss = fk.StageSet("paid", ["Create Fine"], won="Payment")
    log = _fines(shared_data, fines_raw, ss)
    f = funnel.conversion(log)
    row = f.iloc[0]
    h = f.attrs["horizon"]["Create Fine"]
    assert f.attrs["funnel"]["horizon_source"] == "learned" and 90 < h < 800
    # by hand: the share ever paid among fines created at least the horizon before the end
    created, paid = _first(fines_raw, "Create Fine"), _first(fines_raw, "Payment")
    end = fines_raw["timestamp"].max()
    old = created[created + pd.Timedelta(days=h) <= end]
    hand = old.index.isin(paid.index).mean()
    assert row["matured"] == len(old)
    assert row["step_conversion"] == pytest.approx(hand, abs=1e-12)
    # and the fully matured share (created two years before the end) is within a point
    older = created[created + pd.Timedelta(days=730) <= end]
    assert abs(row["step_conversion"] - older.index.isin(paid.index).mean()) < 0.01
    o = funnel.outcomes(log).iloc[0]
    assert o["win_rate"] == pytest.approx(row["step_conversion"])
    assert o["won"] == 69_715 and o["stalled"] + o["open"] == 150_370 - 69_715


def test_fines_funnel_facts(shared_data, fines_raw):
    ss = fk.StageSet("fines", FINE_STEPS, won="Payment", lost=["Send for Credit Collection"], infer_skipped=False)
    log = _fines(shared_data, fines_raw, ss)
    f = funnel.conversion(log).set_index("step")
    assert f.loc["Create Fine", "entered"] == 150_370
    assert f["inferred"].sum() == 0  # inference is off for this stage set
    ttc = funnel.time_to_convert(log, start="Create Fine", end="Payment", infer_skipped=True)
    s = ttc.summary.iloc[0]
    created, paid = _first(fines_raw, "Create Fine"), _first(fines_raw, "Payment")
    both = (paid - created).dropna()
    assert s["converted"] == len(both) == 69_715
    days = both.dt.total_seconds() / 86400
    assert abs(s["median_converted"] - days.median()) < 0.1 and days.median() == 8.0
    assert "nan" not in s["sentence"]


@pytest.fixture(scope="module", params=[
    ("DomesticDeclarations.xes.gz", "Declaration SUBMITTED by EMPLOYEE", 10_365, 7.41),
    ("RequestForPayment.xes.gz", "Request For Payment SUBMITTED by EMPLOYEE", 6_814, 9.04),
])
def bpic(request, shared_data):
    name, submitted, n_submitted, median_days = request.param
    path = shared_data / "bpic2020" / name
    raw = fk.read_xes(path)
    return path, raw, submitted, n_submitted, median_days


def test_bpic_time_to_payment_matches_hand(bpic):
    path, raw, submitted, n_submitted, median_days = bpic
    ss = fk.StageSet("bpic", [submitted], won="Payment Handled", infer_skipped=False)
    log = fk.read_xes(path, stages=ss, ignore=sorted(_labels(raw) - set(ss.labels)))
    f = funnel.conversion(log)
    assert f["entered"].iloc[0] == n_submitted
    s = funnel.time_to_convert(log, start=submitted, end="Payment Handled").summary.iloc[0]
    sub, pay = _first(raw, submitted), _first(raw, "Payment Handled")
    d = (pay - sub).dropna()
    d = d[d >= pd.Timedelta(0)].dt.total_seconds() / 86400
    assert s["converted"] == len(d)
    assert abs(s["median_converted"] - d.median()) < 0.1
    assert round(d.median(), 2) == median_days  # SOURCES.md
    assert s["median_converted_ci_low"] <= s["median_converted"] <= s["median_converted_ci_high"]


def test_bpic_lost_outcomes_kept_by_kind(bpic):
    path, raw, submitted, *_ = bpic
    rejected = sorted(lab for lab in _labels(raw) if "REJECTED" in lab)
    ss = fk.StageSet("bpic", [submitted], won="Payment Handled", lost=rejected)
    log = fk.read_xes(path, stages=ss, ignore=sorted(_labels(raw) - set(ss.labels)))
    o = funnel.outcomes(log).iloc[0]
    # by hand: each case's last outcome event (payment or a rejection), before or without a submission
    r = raw[raw["stage"].astype(str).isin(["Payment Handled", *rejected])]
    last = r.groupby("lead_id", observed=True)["stage"].last().astype(str)
    for lab in rejected:
        assert o[f"lost_{lab}"] == (last == lab).sum(), lab
    assert o["lost"] == sum(o[f"lost_{lab}"] for lab in rejected)
    assert o["won"] == (last == "Payment Handled").sum()


# ---------------------------------------------------------------------------
# small clickstream: inference and value are properties of the stage set
# ---------------------------------------------------------------------------
def clickstream():
    rng = np.random.default_rng(3)
    rows = []
    t0 = pd.Timestamp("2025-03-01")
    for i in range(20):
        rows.append((f"u{i}", "view", t0 + pd.Timedelta(hours=i), np.nan))
    for i in range(3):  # three users cart, two of them buy
        rows.append((f"u{i}", "cart", t0 + pd.Timedelta(hours=i, minutes=5), np.nan))
    prices = np.round(rng.uniform(20, 400, 10), 2)
    buyers = ["u0", "u1", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u0"]  # u0 buys twice
    for k, (u, p) in enumerate(zip(buyers, prices)):  # each after the user's view (and cart)
        rows.append((u, "purchase", t0 + pd.Timedelta(hours=int(u[1:]), minutes=10 + k), p))
    return pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp", "amount"]), prices, buyers


def test_a_purchase_without_a_cart_is_not_a_cart():
    raw, _, buyers = clickstream()
    web = fk.read_events(raw, stages=["view", "cart", "purchase"])  # a web funnel: no inference
    f = funnel.conversion(web, as_of=None).set_index("step")
    assert f.loc["cart", "entered"] == 3 and f.loc["cart", "inferred"] == 0
    assert f.loc["purchase", "entered"] == 2  # u0 and u1 carted and bought
    pipeline_like = funnel.conversion(web, as_of=None, infer_skipped=True).set_index("step")
    assert pipeline_like.loc["cart", "entered"] == 3 + len(set(buyers) - {"u0", "u1", "u2"})
    assert pipeline_like.loc["cart", "inferred"] == len(set(buyers) - {"u0", "u1", "u2"})


def test_purchases_sum_exactly():
    raw, prices, buyers = clickstream()
    ss = fk.StageSet("shop", ["view", "purchase"], value="sum")
    log = fk.read_events(raw, stages=ss, ignore=["cart"])
    f = funnel.conversion(log, as_of=None).set_index("step")
    assert f.loc["purchase", "amount_entered"] == pytest.approx(prices.sum(), abs=1e-9)
    last = funnel.conversion(log, as_of=None, value="last").set_index("step")
    u0_first = prices[0]
    assert last.loc["purchase", "amount_entered"] == pytest.approx(prices.sum() - u0_first, abs=1e-9)
    o = funnel.outcomes(log, as_of=None).iloc[0]
    assert o["won"] == 0 and np.isnan(o["win_rate"])  # no won outcome: no win rate to give
    assert np.isnan(o["decided_win_rate"]) and o["reached_goal"] == log.loc[log["stage"] == "purchase", "lead_id"].nunique()
