"""Rich display in Jupyter: Forecast and Backtest show a summary, a chart and a table."""

from __future__ import annotations

import base64
import re
import warnings

import pandas as pd
import pytest

import funnelkit as fk
from funnelkit.display import backtest_html, figure_html, forecast_html, table_html


@pytest.fixture(scope="module")
def hostile_log():
    log = fk.datasets.load_demo()
    log = log.copy()
    log["product"] = log["product"].astype(str).replace({"Starter": "<script>alert(1)</script>"})
    return log


@pytest.fixture(scope="module")
def fc(hostile_log):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fk.forecast.forecast(hostile_log, as_of="2025-06-30", by="product", n_draws=200, seed=3)


def _png(html: str) -> bytes:
    m = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert m, "no inline PNG"
    return base64.b64decode(m.group(1))


def test_forecast_summary_says_the_forecast_numbers(fc):
    html = fc._repr_html_()
    assert html == forecast_html(fc)
    r = fc.total.iloc[0]
    assert f"{int(r['open_leads']):,} open leads should bring <b>{r['expected_wins']:,.1f} wins</b>" in html
    assert f"80% range {r['wins_low']:,.0f} to {r['wins_high']:,.0f}" in html
    assert f"{r['expected_revenue']:,.0f}" in html
    assert f"{r['horizon_weighted_wins']:,.1f} wins" in html
    assert _png(html)[:8] == b"\x89PNG\r\n\x1a\n"
    # one row per segment, with the segment's own numbers
    for _, s in fc.summary.iterrows():
        assert f"{s['expected_wins']:,.1f}" in html


def test_labels_from_the_data_are_escaped(fc):
    html = forecast_html(fc)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_backtest_summary_says_its_verdict_and_scores():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = fk.forecast.backtest(fk.datasets.load_demo(), n_cutoffs=3, n_draws=100, calibrate=False, seed=0)
    html = bt._repr_html_()
    assert html == backtest_html(bt)
    assert bt.sentence[1:] in html
    wins = bt.summary[(bt.summary["method"] == "forecast") & (bt.summary["quantity"] == "wins")].iloc[0]
    assert f"<td>{wins['mae']:,.1f}</td>" in html and f"<td>{wins['coverage']:.0%}</td>" in html
    assert "<th>mean error</th>" in html
    assert _png(html)[:4] == b"\x89PNG"


def test_a_chart_that_fails_leaves_the_summary_standing():
    def broken(ax):
        raise ValueError("no data")

    assert figure_html(broken) == ""


def test_table_html_formats_and_blanks_missing():
    t = table_html(pd.DataFrame({"a": [1234.4, None], "b": ["<b>", "x"]}), {"a": "{:,.0f}"})
    assert "<td>1,234</td>" in t and "<td></td>" in t
    assert "&lt;b&gt;" in t


def test_load_report_in_jupyter_states_the_counts_and_escapes():
    df = pd.DataFrame({"lead_id": ["a", "a", "a", "<b>x</b>"],
                       "stage": ["qualification", "qualification", "meeting", "qualification"],
                       "timestamp": ["2025-01-01", "2025-01-01", "2025-01-02", "2025-01-03"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = fk.read_events(df, stages="pipeline4")
    rep = log.attrs["funnelkit"]
    html = rep._repr_html_()
    assert "4 rows read &rarr; <b>3 events</b> for <b>2 leads</b>" in html
    assert "Dropped 1 exact duplicate event." in html
    assert "<b>x</b>" not in html and "StageSet pipeline4" in html


def test_transition_model_in_jupyter_states_its_win_probabilities():
    m = fk.TransitionModel(n_samples=50).fit(fk.datasets.load_demo(), as_of="2025-06-30")
    html = m._repr_html_()
    wp = m.win_probability(pooled=True)
    for _, r in wp.iterrows():
        assert f"<td>{r['stage']}</td>\n      <td>{r['probability']:.1%}</td>" in html
    row = m.matrix().loc["qualification"]
    assert f"<td>{row['meeting']:.0%}</td>" in html and "<th>from \\ to</th>" in html
    assert f"fitted on {len(m.stays_):,} stays" in html
    assert "not fitted" in fk.TransitionModel()._repr_html_()


def test_forecast_summary_with_new_leads_says_who_brings_the_wins():
    """With new leads the total counts their wins too: the summary names them beside the open
    leads (it said "931 open leads should bring 132.6 wins", of which 64 were new leads')."""
    f = fk.forecast.forecast(fk.datasets.load_demo(), as_of="2025-06-30", n_draws=200, seed=0, new_leads=True)
    r = f.total.iloc[0]
    html = forecast_html(f)
    assert (f"{int(r['open_leads']):,} open leads and about {r['new_leads']:,.0f} new ones expected to arrive "
            f"should bring <b>{r['expected_wins']:,.1f} wins</b>") in html
    assert r["expected_wins"] == pytest.approx(r["open_pipeline_wins"] + r["new_lead_wins"], rel=1e-12)
    plain = forecast_html(fk.forecast.forecast(fk.datasets.load_demo(), as_of="2025-06-30", n_draws=200, seed=0))
    assert "new ones expected" not in plain
