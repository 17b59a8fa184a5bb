"""Revenue: value rates (stays weighted by deal size) remove the bias of deal rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import forecast as F
from funnelkit.transitions import TransitionModel

PROP = fk.StageSet("prop", ["proposal"], won="won", lost=["lost"])


def sized_log(n_hist=4000, n_open=2000, seed=0):
    """Proposals worth 1,000 win half the time, those worth 10,000 a fifth of the time, all
    decided 10 days after the proposal; the open ones were made yesterday."""
    rng = np.random.default_rng(seed)
    big = rng.random(n_hist + n_open) < 0.3
    amount = np.where(big, 10_000.0, 1_000.0)
    won = rng.random(n_hist + n_open) < np.where(big, 0.2, 0.5)
    start = pd.Timestamp("2024-01-01")
    rows = []
    for i in range(n_hist):
        t = start + pd.Timedelta(hours=2 * i)
        rows.append((f"H{i}", "proposal", t, amount[i]))
        rows.append((f"H{i}", "won" if won[i] else "lost", t + pd.Timedelta(days=10), amount[i]))
    t_open = pd.Timestamp("2024-12-31")
    for j in range(n_open):
        rows.append((f"O{j}", "proposal", t_open, amount[n_hist + j]))
    log = fk.validate_events(pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp", "amount"]), stages=PROP)
    return log, amount[n_hist:], np.where(big, 0.2, 0.5)[n_hist:]


def test_value_rates_by_hand():
    log, _, _ = sized_log()
    tm = TransitionModel(n_samples=0).fit(log, as_of="2024-12-31")
    hist = log[log["lead_id"].str.startswith("H")]
    last = hist.groupby("lead_id")["amount"].last()
    won = hist.groupby("lead_id")["stage"].apply(lambda s: (s == "won").any())
    by_value = tm.with_lead_weights(last, name="amount")
    p_count = tm.win_probability()["probability"].iloc[0]
    p_value = by_value.win_probability()["probability"].iloc[0]
    assert p_count == pytest.approx(won.mean())
    assert p_value == pytest.approx((last * won).sum() / last.sum())
    assert by_value.weighted_by_ == "amount" and tm.weighted_by_ is None
    with pytest.raises(fk.TransitionModelError, match="positive"):
        tm.with_lead_weights(pd.Series(0.0, index=last.index))


def test_revenue_without_the_deal_rate_bias():
    log, amount, p_true = sized_log()
    hist = log[log["lead_id"].str.startswith("H")]
    size = hist.groupby("lead_id")["amount"].last()
    won = hist.groupby("lead_id")["stage"].apply(lambda s: (s == "won").any())
    # what a model that knew the two deal sizes would say from this history
    ideal = float((amount * pd.Series(amount).map(won.groupby(size).mean())).sum())
    truth = float((amount * p_true).sum())
    kw = dict(as_of="2024-12-31", horizon="30D", n_draws=1000, amount_bands=0)
    deal = F.forecast(log, value_rates=False, **kw).total.iloc[0]
    value = F.forecast(log, **kw).total.iloc[0]
    # deal rates: every open deal at the average deal rate (about 0.41), big deals over-counted
    assert deal["expected_revenue"] > 1.5 * ideal
    # value rates: the money converts as money did
    assert value["expected_revenue"] == pytest.approx(ideal, rel=0.03)
    assert value["expected_revenue"] == pytest.approx(truth, rel=0.08)
    assert value["expected_wins"] == pytest.approx(deal["expected_wins"])
    # the range is about as wide as the truth's (binomial luck plus the rates' uncertainty)
    sd = np.sqrt((amount**2 * p_true * (1 - p_true)).sum())
    width = value["revenue_high"] - value["revenue_low"]
    assert 2 * 1.28 * sd * 0.9 < width < 2 * 1.28 * sd * 1.6
