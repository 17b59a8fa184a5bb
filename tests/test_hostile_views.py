"""Hostile inputs to the analysis views (issue #12): honest numbers or a typed error naming the fix."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

import funnelkit as fk
from funnelkit import parallel as P
from funnelkit.exceptions import ForecastError, FunnelSpecError, PipelineError


def all_lost_at_the_first_step(n: int = 40) -> pd.DataFrame:
    t = pd.date_range("2025-01-01", periods=n, freq="5D")
    df = pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)] * 2, "stage": ["qualification"] * n + ["lost"] * n,
                       "timestamp": list(t) + list(t + pd.Timedelta(days=1))})
    return fk.read_events(df, stages="pipeline4")


def wilson_high(x: int, n: int, level: float = 0.95) -> float:
    """The Wilson score upper bound, by its textbook formula."""
    z = st.norm.ppf(0.5 + level / 2)
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre + half


def test_every_lead_lost_at_the_first_step_is_a_win_rate_of_zero():
    log = all_lost_at_the_first_step()
    o = fk.funnel.outcomes(log, as_of="2026-12-31").iloc[0]
    assert (o["won"], o["lost"]) == (0, 40)
    assert o["win_rate"] == 0.0 and o["ci_low"] == 0.0
    assert o["ci_high"] == pytest.approx(wilson_high(0, 40), rel=1e-12)  # 0.0876
    c = fk.funnel.conversion(log, as_of="2026-12-31").set_index("step")
    assert c.loc["won", "overall_conversion"] == o["win_rate"] and c.loc["won", "overall_ci_high"] == o["ci_high"]
    # young leads too (the life table): nobody past the first step, so 0 with that step's bound
    est, lo, hi = fk.stats.chained_proportion_ci([0, 0, 0], [40, 0, 0])
    assert est.tolist() == [0.0, 0.0, 0.0] and lo.tolist() == [0.0] * 3
    assert hi == pytest.approx([wilson_high(0, 40)] * 3, rel=1e-12)
    # unchanged: a step no lead reached before any zero step is still unknown
    est, _, _ = fk.stats.chained_proportion_ci([5, 0], [10, 0])
    assert est[0] == 0.5 and np.isnan(est[1])


def test_outcomes_win_rate_is_conversions_overall_rate_with_its_interval():
    log = fk.datasets.load_demo(2000, seed=4)
    o = fk.funnel.outcomes(log, by="product").set_index("product")
    c = fk.funnel.conversion(log, by="product")
    won = c[c["step"] == "won"].set_index("product")
    for col_o, col_c in [("win_rate", "overall_conversion"), ("ci_low", "overall_ci_low"),
                         ("ci_high", "overall_ci_high")]:
        pd.testing.assert_series_equal(o[col_o], won[col_c].astype(float), check_names=False)


@pytest.mark.parametrize("level", [1.5, 0, 1, -0.2, "high", True])
def test_a_level_outside_0_1_is_an_error(level):
    log = fk.datasets.load_demo(200)
    for call in (lambda: fk.funnel.conversion(log, level=level), lambda: fk.funnel.outcomes(log, level=level),
                 lambda: fk.stats.proportion_ci(3, 10, level=level)):
        with pytest.raises(FunnelSpecError, match=r"level must be a probability between 0 and 1 \(e\.g\. 0\.95"):
            call()


@pytest.mark.parametrize("target", ["lots", float("inf"), None, {"Starter": "x"}])
def test_coverage_targets_must_be_numbers(target):
    log = fk.datasets.load_demo(300)
    by = "product" if isinstance(target, dict) else None
    with pytest.raises(PipelineError, match=r"target.* must be a positive number .*e\.g\. 500000"):
        fk.pipeline.coverage(log, target=target, as_of="2025-06-30", by=by)


def test_forecast_by_a_misspelt_column_names_the_segment_columns():
    log = fk.datasets.load_demo(300)
    with pytest.raises(ForecastError, match=r"\['prodct'\].*did you mean 'product'.*segment columns: product, "
                                            r"source, owner\.$"):
        fk.forecast.forecast(log, by="prodct", n_draws=20)


def test_amounts_unknown_are_not_zero():
    log = fk.datasets.load_demo(3000, seed=5)
    log.loc[log["product"].astype(str) == "Starter", "amount"] = np.nan
    o = fk.funnel.outcomes(log, by="product").set_index("product")
    # by hand: each product's won leads and the sum of their known amounts
    last = log.sort_values(["lead_id", "timestamp"]).groupby("lead_id", observed=True).last()
    won = last[last["stage"].astype(str) == "won"]
    for product, rows in won.groupby("product", observed=True):
        if rows["amount"].notna().any():
            assert o.loc[product, "won_amount"] == pytest.approx(rows["amount"].sum(), rel=1e-12)
        else:
            assert product == "Starter" and np.isnan(o.loc[product, "won_amount"])
    assert o.loc["Starter", "won"] > 0
    # every engine says the same
    for engine in ("serial", "threads"):
        pd.testing.assert_frame_equal(P.outcomes(log, by="product", n_chunks=3, engine=engine).set_index("product"), o)
    # a whole log without amounts: unknown, not 0
    bare = log.assign(amount=np.nan)
    assert np.isnan(fk.funnel.outcomes(bare)["won_amount"].iloc[0])
