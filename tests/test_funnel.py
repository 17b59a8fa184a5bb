"""Tests of the funnel view: conversion semantics, in-flight leads, comparisons,
leaks, cohorts, trends and time to convert."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import funnel
from funnelkit.funnel import FunnelSpecError, conversion, lead_progress

T0 = pd.Timestamp("2025-01-01")
P4 = "pipeline4"


def make_log(rows, **extra):
    """rows: (lead, stage, day offset or None[, segment])."""
    df = pd.DataFrame(
        {
            "lead_id": [r[0] for r in rows],
            "stage": [r[1] for r in rows],
            "timestamp": [pd.NaT if r[2] is None else T0 + pd.Timedelta(days=r[2]) for r in rows],
        }
    )
    if rows and len(rows[0]) > 3:
        df["segment"] = [r[3] for r in rows]
    for k, v in extra.items():
        df[k] = v
    return df


def step_row(f, step, **seg):
    sel = f["step"] == step
    for k, v in seg.items():
        sel &= f[k] == v
    assert sel.sum() == 1
    return f.loc[sel].iloc[0]


# ---------------------------------------------------------------------------
# conversion: semantics
# ---------------------------------------------------------------------------
def test_demo_funnel_columns_and_identities(demo_log):
    f = conversion(demo_log)
    for col in [
        "step", "step_index", "entered", "converted", "dropped", "in_flight", "matured",
        "step_conversion", "step_ci_low", "step_ci_high", "overall_conversion",
        "overall_ci_low", "overall_ci_high", "inferred", "amount_entered", "amount_converted",
    ]:
        assert col in f.columns, col
    assert list(f["step"].astype(str)) == ["qualification", "meeting", "proposal", "close", "won"]
    assert f["entered"].iloc[0] == 6000
    body = f.iloc[:-1]
    assert (body["converted"].to_numpy() == f["entered"].iloc[1:].to_numpy()).all()
    assert (body["matured"] == body["converted"] + body["dropped"]).all()
    np.testing.assert_allclose(body["step_conversion"], body["converted"] / body["matured"])
    assert f["amount_converted"].iloc[0] == f["amount_entered"].iloc[1]
    assert f["inferred"].iloc[1] == 31  # the demo's leads that skip the meeting
    assert f.attrs["level"] == 0.95


def test_classic_funnel_without_censoring(demo_log):
    f = conversion(demo_log, as_of=None)
    assert (f["in_flight"].iloc[:-1] == 0).all()
    np.testing.assert_allclose(f["overall_conversion"], f["entered"] / 6000)
    assert f[["entered", "converted"]].iloc[:3].to_numpy().tolist() == [[6000, 3240], [3240, 1941], [1941, 980]]


def test_segments_add_up_and_follow_first_event(demo_log):
    total = conversion(demo_log, window=60)
    by = conversion(demo_log, by="product", window=60)
    assert list(by["product"].unique()) == ["Enterprise", "Professional", "Starter"]
    s = by.groupby("step", observed=True)[["entered", "in_flight", "inferred"]].sum()
    assert (s["entered"].to_numpy() == total["entered"].to_numpy()).all()
    assert (s["in_flight"].to_numpy() == total["in_flight"].fillna(0).to_numpy()).all()
    two = conversion(demo_log, by=["product", "source"])
    assert len(two) == 3 * 4 * 5
    assert two.groupby("step", observed=True)["entered"].sum().iloc[0] == 6000


def test_missing_segment_values_are_kept(demo_log):
    log = demo_log.copy()
    log["region"] = np.where(log["lead_id"].str[-1] == "7", None, "EU")
    f = conversion(log, by="region", as_of=None)
    assert f["region"].isna().sum() == 5
    assert f.groupby("step", observed=True)["entered"].sum().iloc[0] == 6000


def test_modes_on_a_hand_made_log():
    rows = [
        # A: straight through
        ("A", "qualification", 0), ("A", "meeting", 1), ("A", "proposal", 2), ("A", "close", 3), ("A", "won", 4),
        # B: skips the meeting
        ("B", "qualification", 0), ("B", "proposal", 2), ("B", "close", 3),
        # C: meeting, back to qualification, then proposal
        ("C", "qualification", 0), ("C", "meeting", 1), ("C", "qualification", 2), ("C", "proposal", 3),
        # D: proposal recorded before the meeting (data entry order)
        ("D", "qualification", 0), ("D", "proposal", 1), ("D", "meeting", 2),
    ]
    log = make_log(rows)
    ordered = conversion(log, stages=P4, as_of=None).set_index("step")["entered"]
    assert ordered.tolist() == [4, 4, 4, 2, 1]  # B and D pass the meeting by inference
    no_infer = conversion(log, stages=P4, infer_skipped=False, as_of=None).set_index("step")["entered"]
    assert no_infer.tolist() == [4, 3, 2, 1, 1]  # B stops; D's proposal came before its meeting
    strict = conversion(log, stages=P4, mode="strict", as_of=None).set_index("step")["entered"]
    assert strict.tolist() == [4, 2, 1, 1, 1]  # C goes back; D's next stage is proposal
    anyo = conversion(log, stages=P4, mode="any", infer_skipped=False, as_of=None).set_index("step")["entered"]
    assert anyo.tolist() == [4, 3, 3, 1, 1]  # D counts in any order
    inferred = conversion(log, stages=P4, as_of=None).set_index("step")["inferred"]
    assert inferred["meeting"] == 2


def test_re_entry_counts_once_and_windows_use_first_entries():
    rows = [
        ("A", "qualification", 0), ("A", "meeting", 5), ("A", "meeting", 40), ("A", "meeting", 41),
        ("A", "proposal", 45),
    ]
    log = make_log(rows)
    f = conversion(log, stages=P4, as_of=None)
    assert f["entered"].tolist()[:3] == [1, 1, 1]
    # proposal within 10 days of the meeting? The first meeting entry (day 5) is the reference
    g = conversion(log, stages=P4, step_windows={"proposal": 10}, as_of=None)
    assert g["entered"].tolist()[:3] == [1, 1, 0]
    h = conversion(log, stages=P4, window="30D", as_of=None)
    assert h["entered"].tolist()[:3] == [1, 1, 0]
    assert conversion(log, stages=P4, step_windows=[None, "41D", None, None], as_of=None)["entered"][2] == 1


def test_windows_accept_numbers_strings_and_timedeltas():
    log = make_log([("A", "qualification", 0), ("A", "meeting", 10)])
    for w in [10, 10.0, "10D", pd.Timedelta(days=10), np.timedelta64(10, "D")]:
        assert conversion(log, stages=P4, window=w, as_of=None)["entered"][1] == 1
    assert conversion(log, stages=P4, window=9.5, as_of=None)["entered"][1] == 0


def test_unknown_times_are_never_late():
    log = make_log([("A", "qualification", None), ("A", "meeting", 100), ("B", "qualification", 0), ("B", "meeting", None)])
    f = conversion(log, stages=P4, window=1, as_of=None)
    assert f["entered"].tolist()[:2] == [2, 2]


def test_exclusion_removes_lost_and_reopened_leads():
    rows = [
        ("A", "qualification", 0), ("A", "meeting", 1), ("A", "lost", 2), ("A", "meeting", 3), ("A", "proposal", 4),
        ("B", "qualification", 0), ("B", "meeting", 1), ("B", "lost", 2),
        ("C", "qualification", 0), ("C", "meeting", 1), ("C", "proposal", 2),
    ]
    log = make_log(rows)
    f = conversion(log, stages=P4, exclude={"lost": ("meeting", "proposal")}, as_of=None)
    assert f["excluded"].iloc[0] == 1
    assert f["entered"].tolist()[:3] == [2, 2, 1]  # A gone, B dropped at meeting, C through
    assert conversion(log, stages=P4, exclude="lost", as_of=None)["excluded"].iloc[0] == 0  # nobody won
    prog = lead_progress(log, stages=P4, exclude={"lost": ("meeting", "proposal")}, as_of=None)
    assert prog.set_index("lead_id")["excluded"].to_dict() == {"A": True, "B": False, "C": False}


# ---------------------------------------------------------------------------
# leads in flight
# ---------------------------------------------------------------------------
def test_a_lead_entered_yesterday_is_not_dropped():
    today = pd.Timestamp.today().normalize()
    old = today - pd.Timedelta(days=200)
    log = pd.DataFrame(
        {
            "lead_id": ["old", "old", "new", "won", "won"],
            "stage": ["qualification", "lost", "qualification", "qualification", "meeting"],
            "timestamp": [old, old + pd.Timedelta(days=3), today - pd.Timedelta(days=1), old, old + pd.Timedelta(days=2)],
        }
    )
    for kw in [{}, {"as_of": today}, {"window": 30}, {"window": 30, "as_of": today}]:
        f = conversion(log, stages=P4, **kw)
        q = f.iloc[0]
        assert q["entered"] == 3 and q["in_flight"] == 1 and q["dropped"] == 1 and q["converted"] == 1, kw
        assert q["step_conversion"] == 0.5
        prog = lead_progress(log, stages=P4, **kw).set_index("lead_id")
        assert bool(prog.loc["new", "in_flight"]) and not bool(prog.loc["old", "in_flight"])
    classic = conversion(log, stages=P4, as_of=None).iloc[0]
    assert classic["dropped"] == 2 and classic["in_flight"] == 0


def test_stale_open_leads_drop_after_the_horizon():
    log = make_log([("A", "qualification", 0), ("B", "qualification", 80), ("C", "qualification", 100)])
    f = conversion(log, stages=P4)  # as_of = day 100; pipeline4 horizon is 90 days
    assert (f.iloc[0]["dropped"], f.iloc[0]["in_flight"]) == (1, 2)
    g = conversion(log, stages=P4, stale_after=10)
    assert (g.iloc[0]["dropped"], g.iloc[0]["in_flight"]) == (2, 1)
    h = conversion(log, stages=P4, stale_after=None)
    assert h.iloc[0]["in_flight"] == 3 and np.isnan(h.iloc[0]["step_conversion"])


def test_marketing_funnel_without_outcomes_needs_a_window_for_in_flight():
    ss = fk.StageSet("web", ["visit", "signup", "buy"])
    log = make_log([("A", "visit", 0), ("A", "signup", 1), ("B", "visit", 0), ("C", "visit", 29)])
    f = conversion(log, stages=ss)
    assert f.iloc[0]["in_flight"] == 0 and f.iloc[0]["dropped"] == 2
    g = conversion(log, stages=ss, window=7)
    assert g.iloc[0]["in_flight"] == 1 and g.iloc[0]["dropped"] == 1  # C entered a day ago
    assert g.iloc[1]["in_flight"] == 0  # A's window closed


def test_as_of_ignores_later_events(demo_log):
    cut = pd.Timestamp("2025-03-31")
    f = conversion(demo_log, as_of=cut)
    early = demo_log[demo_log["timestamp"] <= cut]
    assert f["entered"].iloc[0] == early["lead_id"].nunique()
    g = conversion(early, stages=P4)
    assert f["entered"].tolist() == g["entered"].tolist()


def test_overall_conversion_with_in_flight_is_a_life_table(demo_log):
    f = conversion(demo_log)
    rates = f["step_conversion"].to_numpy()[:-1]
    np.testing.assert_allclose(f["overall_conversion"].to_numpy()[1:], np.cumprod(rates))
    assert (f["overall_ci_low"] <= f["overall_conversion"]).all()
    assert (f["overall_conversion"] <= f["overall_ci_high"]).all()


def test_jeffreys_and_level(demo_log):
    a = conversion(demo_log, method="jeffreys", level=0.9)
    b = conversion(demo_log, method="wilson", level=0.99)
    w90 = (a["step_ci_high"] - a["step_ci_low"]).iloc[:-1]
    w99 = (b["step_ci_high"] - b["step_ci_low"]).iloc[:-1]
    assert (w90 < w99).all()


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------
def test_errors_name_the_problem(demo_log):
    with pytest.raises(FunnelSpecError, match="mode must be one of"):
        conversion(demo_log, mode="sequential")
    with pytest.raises(FunnelSpecError, match="window"):
        conversion(demo_log, window="soon")
    with pytest.raises(FunnelSpecError, match="step_windows"):
        conversion(demo_log, step_windows={"qualification": 3})
    with pytest.raises(FunnelSpecError, match="2 entries|4 entries"):
        conversion(demo_log, step_windows=[1, 2])
    with pytest.raises(FunnelSpecError, match="not a stage"):
        conversion(demo_log, exclude="churned")
    with pytest.raises(FunnelSpecError, match="must come before"):
        conversion(demo_log, exclude={"lost": ("proposal", "meeting")})
    with pytest.raises(fk.InvalidEventLogError, match="'region' is not in the log"):
        conversion(demo_log, by="region")
    bad = demo_log.assign(timestamp=demo_log["timestamp"].astype(str))
    with pytest.raises(fk.InvalidEventLogError, match="not datetimes"):
        conversion(bad)
    with pytest.raises(fk.InvalidEventLogError, match="not in stage set"):
        conversion(demo_log, stages="aida")
    plain = demo_log.copy()
    plain.attrs = {}
    with pytest.raises(fk.InvalidEventLogError, match="no stage set"):
        conversion(plain)
    with pytest.raises(fk.FunnelkitError):
        conversion(demo_log, as_of="yesterday-ish")


def test_unsorted_input_gives_the_same_funnel(demo_log):
    shuffled = demo_log.sample(frac=1.0, random_state=3)
    a = conversion(demo_log, by="source", window=45)
    b = conversion(shuffled, stages=P4, by="source", window=45)
    pd.testing.assert_frame_equal(a, b, check_like=True)


def test_outcomes_unchanged(demo_log):
    o = funnel.outcomes(demo_log, by="product")
    assert o["leads"].sum() == 6000
    assert (o["won"] + o["lost"] + o["open"] == o["leads"]).all()
    f = conversion(demo_log, as_of=None, by="product")
    won = f[f["step"] == "won"].set_index("product")["entered"]
    assert (o.set_index("product")["won"] == won).all()
