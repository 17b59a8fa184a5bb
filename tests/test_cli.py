"""The command line: report, demo and demo-data, as a new user runs them."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import funnelkit as fk
from funnelkit import reports
from funnelkit.cli import main

REPO = Path(__file__).resolve().parents[1]
HOSTILE = "../../etc"
SCRIPT = "<script>alert('x')</script>/Pro"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_lists_the_commands():
    res = run("--help")
    assert res.exit_code == 0
    for cmd in ("report", "demo", "demo-data"):
        assert cmd in res.output
    res = run("report", "--help")
    assert "--month" in res.output and "--jobs" in res.output and "--only" in res.output
    assert "--skip-existing" in res.output
    assert reports.default_template().is_file()
    assert "current folder" in run("demo", "--help").output


def test_demo_data_writes_the_csv(tmp_path):
    out = tmp_path / "d" / "events.csv"
    res = run("demo-data", "--out", str(out), "--leads", "50", "--seed", "1")
    assert res.exit_code == 0 and out.is_file()
    assert fk.read_events(out, stages="pipeline4")["lead_id"].nunique() == 50


def test_dry_run_lists_the_reports(tmp_path):
    # the demo plan as a new user has it: its data file is written by `funnelkit demo-data`
    (tmp_path / "params").mkdir()
    plan = tmp_path / "params" / "demo_monthly.yaml"
    plan.write_text((REPO / "params" / "demo_monthly.yaml").read_text())
    missing = run("report", str(plan), "--dry-run", "--month", "2025-08")
    assert missing.exit_code == 2 and "file not found" in missing.output
    fk.datasets.write_demo(tmp_path / "data" / "demo" / "events.csv")
    res = run("report", str(plan), "--dry-run", "--month", "2025-08")
    assert res.exit_code == 0, res.output
    assert "7 report(s)" in res.output
    assert re.search(r"2025-08[/\\]source[/\\]trade_show\.html", res.output)


def test_invalid_plan_exits_2_naming_the_key(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("data: demo\nstages: pipeline4\nsplits: [product]\nmonths: '2025-09'\n")
    res = run("report", str(plan))
    assert res.exit_code == 2
    assert "unknown key(s) 'months' (did you mean 'month'?)" in res.output
    plan.write_text("data: demo\nstages: pipeline4\nsplits: [product]\nmonth: 2025-9\n")
    res = run("report", str(plan))
    assert res.exit_code == 2 and "month: '2025-9' is not a month" in res.output


def test_run_demo_writes_missing_data(tmp_path):
    (tmp_path / "params").mkdir()
    plan = tmp_path / "params" / "demo_monthly.yaml"
    plan.write_text((REPO / "params" / "demo_monthly.yaml").read_text())
    # a mistyped --only is an error (with the values there are), after the data was written
    with pytest.raises(fk.PlanError, match="'Nobody' is not among this plan's reports"):
        reports.run_demo(plan=plan, only=["product=Nobody"], progress=False)
    assert (tmp_path / "data" / "demo" / "events.csv").is_file()


@pytest.mark.slow
def test_broken_and_hostile_reports(tmp_path):
    """A split value absent from the data stops the plan (exit 2); hostile names stay inside reports/, escaped."""
    raw = fk.datasets.load_demo(400, seed=11, canonical=False).rename(columns={"source": "origin"})
    raw["product"] = raw["product"].replace({"Starter": HOSTILE, "Enterprise": SCRIPT})
    raw.to_csv(tmp_path / "crm.csv", index=False)
    spec = {
        "data": "crm.csv",
        "columns": {"deal": "lead_id", "deal_stage": "stage", "entered": "timestamp", "value": "amount"},
        "stages": "pipeline4",
        "splits": {"product": [HOSTILE, SCRIPT, "No Such Product"]},
        "month": "2025-06",
        "output": "reports",
    }
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(spec))
    res = run("report", str(plan), "--jobs", "2", "--no-progress")
    assert res.exit_code == 2, res.output
    assert "no lead has product = 'No Such Product'" in res.output and "Values of 'product' in the data" in res.output
    assert not (tmp_path / "reports").exists()  # nothing was run
    # a report that fails (here: a template cell raising) fails alone, and is kept
    spec["splits"] = {"product": [HOSTILE, SCRIPT]}
    plan.write_text(yaml.safe_dump(spec))
    broken = nbformat.read(reports.default_template(), as_version=4)
    broken.cells.append(nbformat.v4.new_code_cell(
        "if segment_value.startswith('<'):\n    raise ValueError('broken on purpose')"))
    nbformat.write(broken, tmp_path / "broken.ipynb")
    res = run("report", str(plan), "--jobs", "2", "--no-progress", "--template", str(tmp_path / "broken.ipynb"))
    assert res.exit_code == 1, res.output
    month_dir = tmp_path / "reports" / "2025-06"
    status = pd.read_csv(month_dir / "summary.csv")
    assert status.set_index("value")["status"].to_dict() == {HOSTILE: "ok", SCRIPT: "failed"}
    assert "broken on purpose" in res.output and "FAILED" in res.output
    # every file stays inside reports/<month>/product, under a safe name
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    outside = [f for f in files if f.parts[0] not in {"reports", "crm.csv", "plan.yaml", "broken.ipynb"}]
    assert outside == []
    names = {p.name for p in (month_dir / "product").iterdir()}
    assert {"etc.html", "etc.ipynb"} <= names
    failed_name = reports.safe_name(SCRIPT)
    assert {f"{failed_name}.failed.ipynb", f"{failed_name}.failed.html"} <= names
    assert not (tmp_path.parent / "etc.html").exists()
    # the failed notebook is kept with papermill's error cell, and linked from the index
    failed = nbformat.read(month_dir / "product" / f"{failed_name}.failed.ipynb", as_version=4)
    assert any("An Exception was encountered" in "".join(c.source) for c in failed.cells)
    page = (month_dir / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert('x')&lt;/script&gt;/Pro" in page
    assert f'href="product/{failed_name}.failed.ipynb"' in page
    assert "broken on purpose" in page
    # the report of the hostile value shows it as text, and the failed page is as safe
    for html_page in (month_dir / "product").glob("*.html"):
        text = html_page.read_text()
        assert "<script" not in text and "Content-Security-Policy" in text, html_page


@pytest.mark.slow
def test_demo_command_writes_under_the_current_folder_or_out(tmp_path, monkeypatch):
    """`funnelkit demo` makes its data and reports where it is run (or under --out), never in the package."""
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    res = run("demo", "--only", "product=Starter", "--jobs", "1", "--no-progress")
    assert res.exit_code == 0, res.output
    index = here / "reports" / "2025-09" / "index.html"
    assert f"Index: {index}" in res.output
    assert (here / "data" / "demo" / "events.csv").is_file()
    assert (here / "reports" / "2025-09" / "product" / "Starter.html").is_file()
    assert "Starter" in index.read_text() and "€" in index.read_text()
    package = Path(fk.__file__).parent
    assert not list(package.rglob("events.csv")) and not list(package.rglob("2025-09"))
    other = tmp_path / "elsewhere"
    res = run("demo", "--only", "source=referral", "--out", str(other), "--jobs", "1", "--no-progress")
    assert res.exit_code == 0, res.output
    assert (other / "data" / "demo" / "events.csv").is_file()
    assert (other / "reports" / "2025-09" / "source" / "referral.html").is_file()
    assert sorted(p.name for p in here.iterdir()) == ["data", "reports"]
