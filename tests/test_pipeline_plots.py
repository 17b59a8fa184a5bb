"""Tests of funnelkit.plots.pipeline: every plot draws what its data says (Agg via conftest)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from funnelkit import pipeline as P
from funnelkit.plots import pipeline as pp


@pytest.fixture(scope="module")
def snap(demo_log):
    return P.snapshot(demo_log, as_of="2025-06-30")


def _bar_total(ax, y):
    return sum(p.get_width() for p in ax.patches if abs(p.get_y() + p.get_height() / 2 - y) < 1e-9)


def test_pipeline_board_counts_and_values(snap):
    ax = pp.pipeline_board(snap)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["qualification", "meeting", "proposal", "close"]
    ys = ax.get_yticks()
    counts = snap["stage"].astype(str).value_counts()
    for lab, y in zip(labels, ys):
        assert _bar_total(ax, y) == pytest.approx(counts[lab])
    assert "2025-06-30" in ax.get_title()
    axv = pp.pipeline_board(snap, metric="value", age="age_days", bins=(30, 180))
    vals = snap.groupby(snap["stage"].astype(str))["amount"].sum()
    for lab, y in zip(labels, axv.get_yticks()):
        assert _bar_total(axv, y) == pytest.approx(vals[lab])
    assert [t.get_text() for t in axv.get_legend().get_texts()] == ["≤30 d", "30-180 d", ">180 d"]
    with pytest.raises(ValueError, match="metric"):
        pp.pipeline_board(snap, metric="sum")
    with pytest.raises(ValueError, match="snapshot"):
        pp.pipeline_board(snap.drop(columns="amount"))


def test_pipeline_board_uses_given_ax_and_skips_closed(demo_log):
    full = P.snapshot(demo_log, as_of="2025-06-30", include_closed=True)
    fig, ax = plt.subplots()
    out = pp.pipeline_board(full, ax=ax)
    assert out is ax
    n_open = int((full["outcome"] == "open").sum())
    assert sum(_bar_total(ax, y) for y in ax.get_yticks()) == pytest.approx(n_open)


def test_duration_chart_medians(demo_log):
    d = P.durations(demo_log, per="visit")
    ax = pp.duration_chart(d, stages=["meeting", "proposal"])
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    s = P.duration_summary(d).set_index("stage")
    assert texts[0].startswith("meeting (median ") and f"{s.loc['meeting', 'median_days']:.0f} d" in texts[0]
    assert len(texts) == 2
    with pytest.raises(ValueError, match="not in the data"):
        pp.duration_chart(d, stages=["demo"])


def test_rep_chart_colours_the_reps_that_differ(demo_log):
    r = P.rep_performance(demo_log)
    ax = pp.rep_chart(r)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "Hana Sato"  # sorted by rate, lowest at the bottom
    assert set(labels) == set(r["owner"])
    pts = ax.collections[-1].get_offsets()
    assert np.allclose(np.sort(pts[:, 0]), np.sort(r["rate"].to_numpy()))


def test_waterfall_chart_bars_reconcile(demo_log):
    w = P.movement(demo_log, start="2025-05-31", end="2025-06-30")
    ax = pp.waterfall_chart(w)
    bars = ax.patches
    assert len(bars) == 5
    n = w.set_index(w["movement"].astype(str))["leads"]
    assert bars[0].get_height() == n["start"] and bars[-1].get_height() == n["end"]
    # the top of the last flow bar lands on the end level
    lost = bars[3]
    assert lost.get_y() == pytest.approx(n["end"])
    axv = pp.waterfall_chart(w, metric="value")
    assert [t.get_text() for t in axv.get_xticklabels()][-2] == "value change"
    seg = P.movement(demo_log, start="2025-05-31", end="2025-06-30", by="product")
    with pytest.raises(ValueError, match="segment="):
        pp.waterfall_chart(seg)
    axs = pp.waterfall_chart(seg, segment=("product", "Starter"))
    st = seg.loc[(seg["product"] == "Starter") & (seg["movement"] == "end"), "leads"].iloc[0]
    assert axs.patches[-1].get_height() == st


def test_swimlane_draws_each_lead(demo_log):
    leads = ["L0007", "L0009", "L0015"]
    ax = pp.swimlane(demo_log, leads=leads)
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == leads
    v = P.durations(demo_log.loc[demo_log["lead_id"].isin(leads)], per="visit", stages="pipeline4")
    assert len(ax.patches) == len(v)
    assert "2025-09-30" in [t.get_text() for t in ax.get_legend().get_texts()][4]
    ax2 = pp.swimlane(demo_log, n=12, seed=5)
    assert len(ax2.get_yticklabels()) == 12
    with pytest.raises(ValueError, match="not in the log"):
        pp.swimlane(demo_log, leads=["nope"])


def test_swimlane_maven_undated_leads(maven_log):
    ids = maven_log["lead_id"].drop_duplicates().iloc[:15].tolist()
    ax = pp.swimlane(maven_log, leads=ids)
    assert len(ax.get_yticklabels()) == 15
    # Prospecting has no date in Maven: only the dated stays are drawn, nothing is invented
    sub = maven_log.loc[maven_log["lead_id"].isin(ids)]
    v = P.durations(sub, per="visit", stages=maven_log.attrs["funnelkit"].stage_set,
                    as_of=maven_log["timestamp"].max())
    assert len(ax.patches) == int(v["days"].notna().sum())
    assert int(v["days"].isna().sum()) == 15  # one undated Prospecting stay per lead


def test_pipeline_board_says_one_lead_not_one_leads(snap):
    """A stage holding a single open lead is labelled "1 lead" (BPIC 2020 requests for payment in
    June 2019 read "1 requests · €1.1k")."""
    one = snap.groupby(snap["stage"].astype(str), observed=True).head(1)  # one lead per stage
    ax = pp.pipeline_board(one, noun="requests")
    texts = [t.get_text().strip() for t in ax.texts]
    assert len(texts) == 4 and all(t.startswith("1 request · ") for t in texts), texts
    two = snap.groupby(snap["stage"].astype(str), observed=True).head(2)
    assert all(t.get_text().strip().startswith("2 requests · ") for t in pp.pipeline_board(two, noun="requests").texts)


def test_waterfall_chart_leaves_room_for_its_numbers_when_nothing_moved(demo_log):
    """A month with nothing in or out: the zero-height steps sit at the open level, and they used
    to pin the top of the chart there, so the numbers above the bars ran into the title."""
    w = P.movement(demo_log, start="2025-12-31", end="2026-01-31")  # after the data ends: no movement
    n = w.set_index(w["movement"].astype(str))["leads"]
    assert n["start"] == n["end"] > 0 and n[["entered", "won", "lost"]].sum() == 0
    ax = pp.waterfall_chart(w)
    assert ax.get_ylim()[1] >= 1.1 * n["start"]
    assert [t.get_text() for t in ax.texts] == [f"{n['start']:,}", "0", "0", "0", f"{n['end']:,}"]
