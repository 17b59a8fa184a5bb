"""A pipeline per product or source: each segment follows its own stage set."""

from __future__ import annotations

import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import funnel
from funnelkit.exceptions import StageSetError

T0 = pd.Timestamp("2025-01-01")
ENT = fk.StageSet("enterprise", ["qualification", "discovery", "demo", "proposal"], won="won",
                  lost=["lost", "disqualified"])


def log():
    """Starter deals: pipeline4.  Enterprise deals: discovery and demo instead of a meeting."""
    rows = []
    for i in range(40):
        d = T0 + pd.Timedelta(days=i)
        rows += [(f"S{i}", "qualification", d, "Starter"), (f"S{i}", "meeting", d + pd.Timedelta(days=2), "Starter")]
        rows.append((f"S{i}", "won" if i % 2 == 0 else "lost", d + pd.Timedelta(days=5), "Starter"))
    for i in range(40):
        d = T0 + pd.Timedelta(days=i)
        rows += [(f"E{i}", "qualification", d, "Enterprise"), (f"E{i}", "discovery", d + pd.Timedelta(days=3), "Enterprise")]
        if i % 4 == 0:
            rows += [(f"E{i}", "demo", d + pd.Timedelta(days=6), "Enterprise"),
                     (f"E{i}", "won", d + pd.Timedelta(days=9), "Enterprise")]
        else:
            rows.append((f"E{i}", "disqualified" if i % 4 == 1 else "lost", d + pd.Timedelta(days=7), "Enterprise"))
    df = pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp", "product"])
    return fk.read_events(df)  # labels as they are: each segment's set judges its own


SPEC = {"default": "pipeline4", "product": {"Enterprise": ENT}}


def test_each_segment_uses_its_own_stage_set():
    f = funnel.conversion(log(), stages=SPEC, by="product", as_of=None)
    ent = f[f["product"] == "Enterprise"].set_index("step")
    assert list(ent.index) == list(ENT.steps) and (ent["stage_set"] == "enterprise").all()
    assert ent.loc["discovery", "entered"] == 40 and ent.loc["demo", "entered"] == 10
    st = f[f["product"] == "Starter"].set_index("step")
    assert list(st.index) == list(fk.PRESETS["pipeline4"].steps)
    assert st.loc["won", "entered"] == 20


def test_segments_with_different_sets_compare_on_shared_milestones():
    c = funnel.compare(log(), stages=SPEC, by="product", as_of=None, min_leads=10)
    assert set(c["transition"]) == {"entered -> won", "entered -> won (overall)"}
    ent = c[(c["product"] == "Enterprise") & (c["kind"] == "step")].iloc[0]
    assert (ent["converted"], ent["leads"], ent["ref_converted"], ent["ref_leads"]) == (10, 40, 20, 40)
    assert "different stage sets" in c.attrs["funnel"]["note"]
    whole = funnel.conversion(log(), stages=SPEC, as_of=None)  # no by: the milestones
    assert list(whole["step"].astype(str)) == ["entered", "won"] and "milestones" in whole.attrs["note"]
    o = funnel.outcomes(log(), stages=SPEC, by="product", as_of=None).set_index("product")
    assert o.loc["Enterprise", "won"] == 10 and o.loc["Enterprise", "lost"] == 30


def test_a_label_outside_its_segments_set_is_named():
    bad = log()
    bad.loc[bad["lead_id"] == "S0", "stage"] = "discovery"  # a Starter deal with an Enterprise stage
    with pytest.raises(fk.InvalidEventLogError, match="'discovery' \\(set 'pipeline4'\\)"):
        funnel.compare(bad, stages=SPEC, by="product")
    with pytest.raises(StageSetError, match="per segment"):
        fk.get_stage_set(SPEC)
