"""Report plans with a stage set per segment value (``stages: {default: ..., product: {...}}``).

Enterprise deals follow their own pipeline (discovery and a demo instead of a
meeting and a close; disqualified is a loss); Starter and Professional deals
the four-stage pipeline.  Each product report runs on its own set; the report
over all deals counts the milestones every set shares (entered, won, lost) and
says so.  Numbers are checked against pandas on the raw rows.
"""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import funnelkit as fk
from funnelkit import PlanError, reports
from funnelkit.cli import main
from funnelkit.reports.schema import plan_schema

ENTERPRISE = {"name": "enterprise", "stages": ["qualification", "discovery", "demo", "proposal"], "won": "won",
              "lost": ["lost", "disqualified"], "horizon_days": 120}
PATHS = {  # each product's own path through its stages
    "Enterprise": ["qualification", "discovery", "demo", "proposal"],
    "Starter": ["qualification", "meeting", "proposal", "close"],
    "Professional": ["qualification", "meeting", "proposal", "close"],
}
MONTH, END = "2025-09", pd.Timestamp("2025-09-30 23:59:59")


def raw_log(seed: int = 7) -> pd.DataFrame:
    """About 210 deals entering between April and September 2025; events up to the end of September."""
    rng = np.random.default_rng(seed)
    rows = []
    for product, n in (("Enterprise", 60), ("Starter", 90), ("Professional", 60)):
        for i in range(n):
            lead = f"{product[0]}{i:03d}"
            source = ["web form", "trade show", "referral"][int(rng.integers(3))]
            t = pd.Timestamp("2025-04-01") + pd.Timedelta(days=float(rng.uniform(0, 182)))
            amount = float(rng.integers(1, 20)) * (5000 if product == "Enterprise" else 500)
            path = PATHS[product]
            depth = int(rng.integers(1, len(path) + 1))
            for stage in path[:depth]:
                rows.append((lead, stage, t.floor("s"), amount, product, source))
                t += pd.Timedelta(days=float(rng.uniform(1, 12)))
            r = rng.uniform()
            if depth == len(path) and r < 0.6:
                rows.append((lead, "won", t.floor("s"), amount, product, source))
            elif r < 0.75:
                lost = "disqualified" if product == "Enterprise" and depth == 1 else "lost"
                rows.append((lead, lost, t.floor("s"), amount, product, source))
    df = pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp", "amount", "product", "source"])
    return df[df["timestamp"] <= END].sort_values(["lead_id", "timestamp"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stage_sets")
    raw_log().assign(timestamp=lambda d: d["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(
        root / "events.csv", index=False)
    (root / "stages").mkdir()
    (root / "stages" / "enterprise.yaml").write_text(yaml.safe_dump(ENTERPRISE), encoding="utf-8")
    return root


SPEC = {"default": "pipeline4", "product": {"Enterprise": "stages/enterprise.yaml"}}


def plan_file(folder: Path, name: str = "plan.yaml", **changes) -> Path:
    spec = {"data": "events.csv", "stages": SPEC, "splits": ["product"], "overall": True, "month": MONTH,
            "noun": "deals", "output": "reports", **changes}
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def reached(raw: pd.DataFrame, steps: list[str]) -> list[int]:
    """Leads that reached each step (or a later one): by hand, from each lead's furthest step."""
    pos = raw["stage"].map({s: k for k, s in enumerate(steps)})
    furthest = pos.groupby(raw["lead_id"]).max()
    return [int((furthest >= k).sum()) for k in range(len(steps))]


def funnel_rows(page: str) -> dict[str, int]:
    """Step -> Reached, from the funnel table of a report page."""
    start = page.index("<th>Step</th><th class=\"num\">Reached</th>")
    body = page[start:page.index("</table>", start)]
    rows = re.findall(r"<tr><td>([^<]*)</td><td class=\"num\">([\d,]+)</td>", body)
    return {unescape(step): int(n.replace(",", "")) for step, n in rows}


# ---------------------------------------------------------------------------
# the plan: checked keys, the log each report gets
# ---------------------------------------------------------------------------
def test_each_report_gets_its_stage_set_or_the_milestones(folder):
    plan = reports.load_plan(plan_file(folder))
    assert plan.stages["product"]["Enterprise"] == str(folder / "stages" / "enterprise.yaml")  # relative to the plan
    log = plan.load()
    jobs = {(j.split, j.value): j for j in reports.expand_plan(plan, log)[0]}
    ent, starter, overall = jobs["product", "Enterprise"], jobs["product", "Starter"], jobs["all", "all"]
    assert fk.get_stage_set(ent.parameters["stages"]).name == "enterprise"
    assert starter.parameters["stages"] == "pipeline4"
    assert fk.get_stage_set(overall.parameters["stages"]).steps == ("entered", "won")
    assert "milestones" in overall.parameters["stages_note"] and "Enterprise: enterprise" in \
        overall.parameters["stages_note"]
    assert "compared with the other values of product" in ent.parameters["stages_note"]

    # the Enterprise log is the one a plan with only the Enterprise set would read for that segment
    raw = raw_log()
    sub = reports.select_segment(log, "product", "Enterprise")
    mine = plan.job_log(sub, ent.parameters["stages"])
    alone = fk.read_events(raw[raw["product"] == "Enterprise"], stages=fk.StageSet.from_dict(ENTERPRISE))
    cols = ["lead_id", "stage", "timestamp"]
    pd.testing.assert_frame_equal(mine[cols].astype(str).reset_index(drop=True),
                                  alone[cols].astype(str).reset_index(drop=True))
    assert fk.data.log_stage_set(mine).name == "enterprise"
    # the milestones of every deal: disqualified is a loss of the Enterprise set
    ms = plan.job_log(log, overall.parameters["stages"])
    by_hand = raw.groupby("lead_id")["stage"].agg(lambda s: "won" if "won" in set(s) else
                                                  "lost" if {"lost", "disqualified"} & set(s) else "open")
    got = ms.groupby("lead_id")["stage"].agg(lambda s: "won" if "won" in set(s.astype(str)) else
                                             "lost" if "lost" in set(s.astype(str)) else "open")
    pd.testing.assert_series_equal(got.sort_index(), by_hand.sort_index(), check_names=False)


@pytest.mark.parametrize(("stages", "match"), [
    ({"default": "pipline4", "product": {"Enterprise": "stages/enterprise.yaml"}},
     r"stages: default: unknown stage set 'pipline4'.*Did you mean 'pipeline4'"),
    ({"default": "pipeline4", "product": {"Enterprise": "nowhere.yaml"}}, r"stages: product: Enterprise: .*nowhere"),
    ({"default": "pipeline4", "product": {"Enterprise": "aida"}, "source": {"web form": "aida"}},
     r"exactly one segment column.*'product', 'source'"),
    ({"default": "pipeline4"}, r"exactly one segment column"),
    ({"default": "pipeline4", "product": "aida"}, r"stages: product: give each value"),
    ([1, 2], r"stages: give a preset name, a YAML file path, or a stage set per segment"),
])
def test_plan_errors_in_the_mapping(folder, stages, match):
    with pytest.raises(PlanError, match=match):
        reports.load_plan(plan_file(folder, "bad.yaml", stages=stages))


@pytest.mark.parametrize(("stages", "match"), [
    ({"default": "pipeline4", "product": {"Enterprize": "stages/enterprise.yaml"}},
     r"stages: product: no lead has product = 'Enterprize'.*Did you mean 'Enterprise'\?.*'Professional'"),
    ({"default": "pipeline4", "region": {"EU": "aida"}}, r"column 'region', which decides .* not in the data"),
    ({"product": {"Enterprise": "stages/enterprise.yaml"}},
     r"no stage set for 'Professional', 'Starter', and no 'default'"),
    # Enterprise labels judged by the default set: named, with the set and the values
    ({"default": "pipeline4", "product": {"Starter": "pipeline4"}},
     r"labels not in their lead's stage set: .*'demo' \(\d+ events of product Enterprise, set 'pipeline4'\)"),
])
def test_plan_errors_against_the_data(folder, stages, match):
    plan = reports.load_plan(plan_file(folder, "bad.yaml", stages=stages))
    with pytest.raises(PlanError, match=match):
        plan.load()


def test_a_label_outside_its_leads_set_is_an_error_not_dropped(folder, tmp_path):
    raw = raw_log()
    raw.loc[raw["lead_id"] == "S000", "stage"] = raw.loc[raw["lead_id"] == "S000", "stage"].replace(
        {"qualification": "discovery"})  # a Starter deal with an Enterprise stage
    raw.to_csv(tmp_path / "events.csv", index=False)
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "enterprise.yaml").write_text(yaml.safe_dump(ENTERPRISE), encoding="utf-8")
    with pytest.raises(PlanError, match=r"'discovery' \(1 events of product Starter, set 'pipeline4'\)"):
        reports.load_plan(plan_file(tmp_path)).load()


def test_cli_exit_code_2_for_a_bad_stage_set_mapping(folder):
    for stages in ({"default": "pipline4", "product": {"Enterprise": "aida"}},
                   {"default": "pipeline4", "product": {"Enterprize": "aida"}},
                   {"default": "pipeline4", "product": {"Enterprise": "aida"}, "source": {"referral": "aida"}}):
        path = plan_file(folder, "bad.yaml", stages=stages)
        for extra in ([], ["--dry-run"]):
            res = CliRunner().invoke(main, ["report", str(path), "--no-progress", *extra])
            assert res.exit_code == 2, (stages, extra, res.output)
            assert "stages" in res.output


def test_the_schema_takes_the_mapping_and_rejects_garbage():
    validator = jsonschema.Draft202012Validator(plan_schema())
    base = {"data": "events.csv"}
    for good in (SPEC, {"product": {"Enterprise": "aida"}}, "pipeline4"):
        assert list(validator.iter_errors({**base, "stages": good})) == [], good
    for bad in ({"default": "pipeline4"}, {"default": "pipeline4", "product": "aida"},
                {"default": "pipeline4", "product": {"A": "aida"}, "source": {"b": "aida"}},
                {"product": {}}, {"default": 3, "product": {"A": "aida"}}, {"product": {"A": ["x"]}}, 4, ""):
        assert list(validator.iter_errors({**base, "stages": bad})), bad
    shipped = yaml.safe_load((Path(__file__).parents[1] / "params" / "stage_sets_by_product.yaml").read_text())
    assert list(validator.iter_errors(shipped)) == []
    assert json.dumps(plan_schema())  # still JSON


# ---------------------------------------------------------------------------
# a run: three reports, each on its own set, numbers against pandas
# ---------------------------------------------------------------------------
@pytest.mark.slow
def test_a_run_uses_each_reports_stage_set(folder):
    status = reports.run_plan(plan_file(folder), jobs=2, progress=False,
                              only=["product=Enterprise", "product=Starter", "all"])
    assert (status["status"] == "ok").all(), status[["value", "error"]].to_string()
    assert any("Stage sets per product" in n for n in status.attrs["notes"])
    raw = raw_log()
    month_dir = Path(status.attrs["folder"])
    row = status.set_index("value")
    start = pd.Timestamp("2025-09-01")
    first = raw.groupby("lead_id")["timestamp"].min()
    won_at = raw[raw["stage"] == "won"].set_index("lead_id")["timestamp"]

    # Enterprise: the funnel has the Enterprise set's steps, each count as pandas counts them
    ent_raw = raw[raw["product"] == "Enterprise"]
    page = (month_dir / "product" / "Enterprise.html").read_text(encoding="utf-8")
    steps = [*ENTERPRISE["stages"], "won"]
    got = funnel_rows(page)
    assert list(got) == steps
    assert list(got.values()) == reached(ent_raw, steps)
    assert "compared with the other values of product on the milestones" in unescape(page)
    ent_leads = set(ent_raw["lead_id"])
    assert row.loc["Enterprise", "leads_entered"] == sum(first[list(ent_leads)] >= start)
    assert row.loc["Enterprise", "won"] == sum(won_at[won_at.index.isin(ent_leads)] >= start)

    # Starter: the default set
    st_raw = raw[raw["product"] == "Starter"]
    got = funnel_rows((month_dir / "product" / "Starter.html").read_text(encoding="utf-8"))
    steps = list(fk.PRESETS["pipeline4"].steps)
    assert list(got) == steps and list(got.values()) == reached(st_raw, steps)

    # all deals: the milestones, said so under the title
    page = unescape((month_dir / "all" / "all.html").read_text(encoding="utf-8"))
    got = funnel_rows(page)
    assert got == {"entered": raw["lead_id"].nunique(), "won": int(raw.loc[raw["stage"] == "won", "lead_id"].nunique())}
    note = "The leads of this report follow different stage sets by product"
    assert note in page and page.index(note) < page.index("At a glance")
    assert row.loc["all", "won"] == sum(won_at >= start)
    assert row.loc["all", "leads_entered"] == sum(first >= start)
