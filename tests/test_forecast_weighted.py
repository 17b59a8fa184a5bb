"""The CRM weighted pipeline: eventual (labelled) or within the horizon; never open leads as wins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import forecast as F


def no_lost_log():
    """A marketing funnel without a lost outcome: 100 of 400 visitors bought within a week,
    the rest stopped at "cart"; 50 visitors are in the cart now."""
    ss = fk.StageSet("shop", ["visit", "cart", "bought"])
    rows = []
    base = pd.Timestamp("2024-01-01")
    for i in range(400):
        t = base + pd.Timedelta(hours=12 * i)
        rows += [(f"V{i}", "visit", t), (f"V{i}", "cart", t + pd.Timedelta(days=1))]
        if i < 100:
            rows.append((f"V{i}", "bought", t + pd.Timedelta(days=5)))
    for i in range(50):
        t = pd.Timestamp("2024-12-20") + pd.Timedelta(hours=i)
        rows += [(f"N{i}", "visit", t), (f"N{i}", "cart", t + pd.Timedelta(hours=1))]
    return fk.validate_events(pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp"]), stages=ss), ss


def test_without_a_lost_outcome_open_leads_are_not_wins():
    log, ss = no_lost_log()
    sp = F.stage_probabilities(log, as_of="2024-12-22").set_index("stage")
    # idle for 90 days: the 300 who stopped are lost, not still "open"
    assert sp.loc["cart", "won"] == 100 and sp.loc["cart", "lost"] == 300
    assert sp.loc["cart", "probability"] == pytest.approx(0.25)
    wp = F.weighted_pipeline(log, as_of="2024-12-22").set_index("stage")
    # the 300 idle leads are still "in the cart" in the snapshot, but dropped: worth nothing
    assert wp.loc["cart", "open_leads"] == 350
    assert wp.loc["cart", "weighted_wins"] == pytest.approx(50 * 0.25)
    assert "bought" not in wp.index  # reaching the last stage is the win, not an open stage
    assert wp["basis"].iloc[0] == "eventual wins (no time limit)"
    f = F.forecast(log, as_of="2024-12-22", horizon="30D", n_draws=100)
    t = f.total.iloc[0]
    assert t["weighted_wins"] == pytest.approx(12.5)
    assert t["weighted_basis"] == "eventual wins (no time limit)"
    assert t["expected_wins"] < t["open_leads"]


def test_within_the_horizon_by_hand(demo_log):
    as_of = pd.Timestamp("2025-06-30 23:59:59.999999999")
    sp = F.stage_probabilities(demo_log, as_of="2025-06-30", horizon="30D").set_index("stage")
    past = fk.data.known_at(demo_log, as_of)
    prog = fk.funnel.lead_progress(past)
    H = pd.Timedelta(days=30)
    for s in ["qualification", "meeting", "proposal", "close"]:
        t_s = prog[f"time_{s}"]
        matured = prog[f"reached_{s}"] & t_s.notna() & (t_s <= as_of - H)
        won = matured & (prog["outcome"] == "won") & (prog["closed_at"] <= t_s + H)
        assert sp.loc[s, "reached"] == matured.sum()
        assert sp.loc[s, "probability"] == pytest.approx(won.sum() / matured.sum())
    wp = F.weighted_pipeline(demo_log, as_of="2025-06-30", horizon="30D")
    assert wp["basis"].iloc[0] == "wins within 30 days"
    snap = fk.pipeline.snapshot(demo_log, as_of="2025-06-30")
    want = snap["stage"].astype(str).map(sp["probability"]).sum()
    assert wp["weighted_wins"].sum() == pytest.approx(want)
    f = F.forecast(demo_log, as_of="2025-06-30", horizon="30D", n_draws=100)
    t = f.total.iloc[0]
    assert t["horizon_weighted_wins"] == pytest.approx(want)
    assert t["horizon_weighted_wins"] < t["weighted_wins"]
    assert f.leads_["horizon_stage_probability"].sum() == pytest.approx(want)
    bt = F.backtest(demo_log, cutoffs=["2025-03-31"], horizon="30D", n_draws=100, calibrate=False)
    methods = set(bt.summary["method"])
    assert {"weighted pipeline", "weighted pipeline, within horizon", "run-rate"} <= methods
    assert np.isfinite(bt.table["horizon_weighted_wins"]).all()
