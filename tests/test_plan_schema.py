"""The plan's JSON Schema: generated from the definitions the plan loader uses, and in sync.

Every plan the project ships validates; a plan the schema rejects for a key's type or
value is rejected by the loader too (and the other way round for the same mistakes), so an
editor's completion and checks tell a user the truth before they run anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from funnelkit import PlanError
from funnelkit.cli import main
from funnelkit.reports import plan as plan_mod
from funnelkit.reports.plan import Plan, packaged
from funnelkit.reports.schema import PLAN_KEYS, REQUIRED_KEYS, plan_schema, schema_text

REPO = Path(__file__).resolve().parents[1]
VALIDATOR = jsonschema.Draft202012Validator(plan_schema())


def test_schema_is_a_valid_json_schema_and_the_committed_copy_is_current():
    jsonschema.Draft202012Validator.check_schema(plan_schema())
    committed = REPO / "params" / "plan.schema.json"
    assert committed.read_text(encoding="utf-8") == schema_text(), (
        "params/plan.schema.json is stale: run `funnelkit plan-schema -o params/plan.schema.json`")


def test_the_loader_uses_the_same_keys():
    assert plan_mod._KEYS == set(plan_schema()["properties"]) == set(PLAN_KEYS)
    assert set(plan_schema()["properties"]["read_options"]["properties"]) == plan_mod._READ_KEYS
    assert list(REQUIRED_KEYS) == plan_schema()["required"] == ["data", "stages"]
    for key, frag in PLAN_KEYS.items():
        assert frag.get("description"), key  # editors show it on hover


@pytest.mark.parametrize("path", [*sorted((REPO / "params").glob("*.yaml")), packaged("templates/demo_monthly.yaml")],
                         ids=lambda p: Path(p).name)
def test_every_shipped_plan_validates(path):
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    assert list(VALIDATOR.iter_errors(spec)) == []
    if Path(path).parent.name == "params":  # the packaged plan names data `funnelkit demo` writes
        Plan.from_dict(spec, base_dir=Path(path).parent, source=str(path))  # and loads


@pytest.fixture()
def base(tmp_path):
    (tmp_path / "events.csv").write_text("lead_id,stage,timestamp\na,qualification,2025-01-01\n")
    return {"data": "events.csv", "stages": "pipeline4"}, tmp_path


BAD = [
    {"splitz": ["product"]},
    {"overall": "yes"},
    {"month": "June 2017"},
    {"as_of": "30/06/2025"},
    {"columns": {"Deal": "deal_id"}},
    {"target": -3},
    {"target": "a lot"},
    {"title": ""},
    {"thousands": "_"},
    {"decimal": ";"},
    {"noun": ""},
    {"timeout": 0},
    {"read_options": {"timezone": "UTC"}},
    {"read_options": {"missing_time": "drop"}},
    {"read_options": {"dayfirst": "yes"}},
    {"read_options": {"snapshot": "deal_stage"}},
    {"splits": ["product"], "segment": {"product": "A"}},
    {"segment": {"product": "A", "source": "web"}},
    {"parameters": ["month"]},
    {"stages": 4},
    {"stages": {"default": "pipeline4"}},  # a set per segment value names one column
    {"stages": {"default": "pipeline4", "product": {"A": "aida"}, "source": {"b": "aida"}}},
    {"stages": {"default": "pipeline4", "product": "aida"}},
    {"stages": {"product": {}}},
]


@pytest.mark.parametrize("patch", BAD, ids=lambda p: json.dumps(p)[:40])
def test_what_the_schema_rejects_the_loader_rejects(base, patch):
    spec, folder = base
    spec = {**spec, **patch}
    assert list(VALIDATOR.iter_errors(spec)), f"schema accepts {patch}"
    with pytest.raises(PlanError):
        Plan.from_dict(spec, base_dir=folder, source="plan.yaml")


@pytest.mark.parametrize("drop", REQUIRED_KEYS)
def test_required_keys(base, drop):
    spec, folder = base
    spec = {k: v for k, v in spec.items() if k != drop}
    assert list(VALIDATOR.iter_errors(spec))
    with pytest.raises(PlanError, match=f"'{drop}' is required"):
        Plan.from_dict(spec, base_dir=folder, source="plan.yaml")


GOOD = [
    {"splits": "product"},
    {"splits": {"product": ["A", "B"], "source": "all"}},
    {"segment": {"product": "A"}, "target": 1000},
    {"splits": ["product"], "target": {"default": 10, "product": {"A": 5}}},
    {"thousands": ".", "decimal": ",", "currency": "€", "noun": "deals"},
    {"read_options": {"tz": "Europe/Paris", "dayfirst": True, "missing_time": "keep", "ignore": ["x"]}},
    {"month": "2025-09", "as_of": "2025-09-15", "overall": True, "timeout": 120},
    {"stages": {"default": "pipeline4", "product": {"A": "pipeline6", "B": "aida"}}, "splits": ["product"]},
    {"stages": {"product": {"A": "pipeline6"}}},
]


@pytest.mark.parametrize("patch", GOOD, ids=lambda p: json.dumps(p)[:40])
def test_what_the_schema_accepts_the_loader_accepts(base, patch):
    spec, folder = base
    spec = {**spec, **patch}
    assert list(VALIDATOR.iter_errors(spec)) == []
    Plan.from_dict(spec, base_dir=folder, source="plan.yaml")


def test_cli_prints_and_writes_the_schema(tmp_path):
    res = CliRunner().invoke(main, ["plan-schema"])
    assert res.exit_code == 0 and json.loads(res.output) == plan_schema()
    out = tmp_path / "plan.schema.json"
    res = CliRunner().invoke(main, ["plan-schema", "-o", str(out)])
    assert res.exit_code == 0 and out.read_text(encoding="utf-8") == schema_text()
