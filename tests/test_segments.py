"""Derived segments (deal-size bands, mapped values) and plans that split on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

import funnelkit as fk
from funnelkit import PlanError
from funnelkit.reports import run_plan
from funnelkit.reports.plan import Plan, expand_plan
from funnelkit.segments import NO_AMOUNT, DerivedSegmentError, amount_bands, derive, mapped


def test_bands_are_the_leads_last_amount_cut_at_the_edges(demo_log):
    out = amount_bands(demo_log, name="size", edges=[0, 10_000, 50_000], labels=["small", "medium", "large"])
    assert len(out) == len(demo_log) and "size" not in demo_log.columns
    # by hand: each lead's last known amount (by time), pd.cut with left-closed bins
    last = demo_log.dropna(subset=["amount"]).sort_values(["lead_id", "timestamp"]).groupby("lead_id")["amount"].last()
    hand = pd.cut(last, [-np.inf, 10_000, 50_000, np.inf], right=False, labels=["small", "medium", "large"])
    got = out.drop_duplicates("lead_id").set_index("lead_id")["size"]
    assert (got.loc[hand.index].astype(str) == hand.astype(str)).all()
    assert out.groupby("lead_id", observed=True)["size"].nunique().max() == 1  # a lead never switches band


def test_leads_without_amount_and_bad_edges():
    log = pd.DataFrame({"lead_id": ["a", "b"], "stage": ["s", "s"],
                        "timestamp": pd.to_datetime(["2025-01-01", "2025-01-02"]), "amount": [5.0, np.nan]})
    assert amount_bands(log, name="b", edges=[0], labels=["any"])["b"].tolist() == ["any", NO_AMOUNT]
    with pytest.raises(DerivedSegmentError, match="increasing"):
        amount_bands(log, name="b", edges=[10, 5], labels=["x", "y"])
    with pytest.raises(DerivedSegmentError, match="one distinct label per edge"):
        amount_bands(log, name="b", edges=[0, 5], labels=["x"])
    with pytest.raises(DerivedSegmentError, match="already in the log"):
        amount_bands(log, name="amount", edges=[0], labels=["x"])


def test_mapped_values_per_lead_and_other(demo_log):
    out = mapped(demo_log, name="tier", column="product", values={"Starter": "self-serve", "Enterprise": "sales"},
                 other="mid")
    hand = demo_log["product"].astype(str).map({"Starter": "self-serve", "Enterprise": "sales"}).fillna("mid")
    assert (out["tier"].astype(str) == hand).all()
    with pytest.raises(DerivedSegmentError, match="not in the log"):
        mapped(demo_log, name="r", column="country", values={"FR": "EU"})


def test_derive_names_the_rule_at_fault(demo_log):
    with pytest.raises(DerivedSegmentError, match="derive: size: bands takes edges, labels"):
        derive(demo_log, {"size": {"bands": {"edges": [0]}}})
    with pytest.raises(DerivedSegmentError, match="derive: x: give either"):
        derive(demo_log, {"x": {"cut": {}}})


def _plan(tmp_path, **extra) -> Plan:
    csv = tmp_path / "events.csv"
    fk.datasets.write_demo(csv)
    spec = {"data": str(csv), "stages": "pipeline4", "month": "2025-09", "currency": "€", "noun": "deals",
            "derive": {"deal_size": {"bands": {"edges": [0, 10000, 50000], "labels": ["small", "medium", "large"]}}},
            "splits": ["deal_size"], "output": str(tmp_path / "out"), **extra}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(spec))
    return Plan.from_dict(spec, base_dir=tmp_path, source="plan.yaml")


def test_a_plan_splits_on_a_derived_segment(tmp_path):
    plan = _plan(tmp_path)
    log = plan.load()
    jobs, _notes = expand_plan(plan, log)
    values = sorted(j.value for j in jobs if j.split == "deal_size")
    assert values == ["large", "medium", "small"]  # 'no amount' has no lead in the demo data


def test_a_report_on_a_derived_segment_runs(tmp_path):
    plan = _plan(tmp_path, only={"deal_size": ["large"]})
    status = run_plan(tmp_path / "plan.yaml", jobs=1, progress=False)
    assert status["status"].isin(["ok", "warning"]).all(), status.to_dict("records")
    page = (tmp_path / "out" / "2025-09" / "deal_size" / "large.html").read_text(encoding="utf-8")
    assert "deal_size large" in page and "€" in page
    assert plan.derive["deal_size"]["bands"]["labels"] == ["small", "medium", "large"]


def test_plan_derive_errors_name_the_key(tmp_path):
    with pytest.raises(PlanError, match="derive: size: give either"):
        Plan.from_dict({"data": "demo", "stages": "pipeline4", "derive": {"size": [0, 1]}}, source="p")
    plan = _plan(tmp_path, derive={"region": {"map": {"column": "country", "values": {"FR": "EU"}}}},
                 splits=["region"])
    with pytest.raises(PlanError, match="derive: region: column 'country' is not in the log"):
        plan.load()
