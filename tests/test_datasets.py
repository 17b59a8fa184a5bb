import numpy as np
import pandas as pd

import funnelkit as fk
from funnelkit.datasets import DEMO_END, load_demo, load_marketing_demo, make_events, write_demo


def test_demo_has_what_every_analysis_needs(demo_log):
    log = demo_log
    assert log["lead_id"].nunique() == 6000
    assert set(log["product"].unique()) == {"Starter", "Professional", "Enterprise"}
    assert set(log["source"].unique()) == {"trade show", "web form", "referral", "outbound"}
    assert log["owner"].nunique() >= 6
    months = log["timestamp"].dt.to_period("M").nunique()
    assert months >= 12
    assert log["timestamp"].max() <= DEMO_END
    out = fk.funnel.outcomes(log)
    assert out.loc[0, "won"] > 300 and out.loc[0, "lost"] > 1000 and out.loc[0, "open"] > 300
    assert (log["amount"] > 0).all()
    # anomalies exist and are flagged, not dropped
    flags = log.attrs["funnelkit"].flags
    assert flags.get("moved_back", 0) > 0 and flags.get("skipped_stage", 0) > 0


def test_demo_is_seeded_and_reproducible():
    a = load_demo(500, seed=3)
    b = load_demo(500, seed=3)
    c = load_demo(500, seed=4)
    assert a.equals(b)
    assert not a.equals(c)


def test_demo_designed_effects_show(demo_log):
    out = fk.funnel.outcomes(demo_log, by="owner").set_index("owner")
    assert out["win_rate"].idxmin() == "Hana Sato"
    f = fk.funnel.conversion(demo_log, by="product")
    prop = f[f["step"] == "proposal"].set_index("product")["step_conversion"]
    assert prop["Enterprise"] < 0.6 * prop.drop("Enterprise").min()


def test_raw_demo_loads_through_a_column_mapping():
    raw = load_demo(300, canonical=False)
    assert {"deal", "deal_stage", "entered", "value"} <= set(raw.columns)
    assert "Closed Won" in set(raw["deal_stage"])
    log = fk.read_events(raw, columns={"deal": "lead_id", "deal_stage": "stage", "entered": "timestamp",
                                       "value": "amount"}, stages="pipeline4")
    ref = load_demo(300)
    assert len(log) == len(ref)
    assert (log["stage"].astype(str).to_numpy() == ref["stage"].astype(str).to_numpy()).all()


def test_make_events_scales():
    raw = make_events(50_000, seed=1)
    assert raw["lead_id"].nunique() == 50_000
    assert 2.0 < len(raw) / 50_000 < 4.0
    assert np.all(np.diff(raw["timestamp"].to_numpy()[raw["lead_id"].to_numpy() == raw["lead_id"].iloc[0]]) >= np.timedelta64(0))


def test_write_demo(tmp_path):
    path = write_demo(tmp_path / "d" / "events.csv", 200)
    log = fk.read_events(path, stages="pipeline4")
    assert log["lead_id"].nunique() == 200
    assert not list(tmp_path.glob("d/*.tmp"))


def test_marketing_demo():
    log = load_marketing_demo(5000)
    f = fk.funnel.conversion(log, by="channel")
    assert set(f["step"].astype(str)) == {"awareness", "interest", "desire", "action"}
    assert log.loc[log["stage"] == "action", "amount"].notna().all()
    assert log.loc[log["stage"] != "action", "amount"].isna().all()


def test_make_story_gives_the_groups_asked_for():
    from funnelkit.datasets import make_story

    export = make_story([(100, "close", "won"), (400, "proposal", "lost"), (1000, "proposal", "open")],
                        today="2025-09-30")
    log = fk.from_wide(export, lead="deal", stage_columns=list(export.columns[1:]), stages="pipeline4")
    out = fk.funnel.outcomes(log).iloc[0]
    assert (out["won"], out["lost"], out["open"]) == (100, 400, 1000)
    assert log["timestamp"].max() <= pd.Timestamp("2025-09-30")
    snap = fk.pipeline.snapshot(log, as_of="2025-09-30")
    assert len(snap) == 1000 and set(snap["stage"].astype(str)) == {"proposal"}
