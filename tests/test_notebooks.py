"""The report template: run through papermill on demo data, and under nbval with its defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import reports

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "notebooks" / "monthly_report.ipynb"

pytestmark = pytest.mark.slow


def test_the_template_ships_in_the_package_and_the_repo_path_is_it():
    assert TEMPLATE.resolve() == reports.default_template().resolve()
    assert reports.default_template().parent.name == "templates"


def test_template_parameters_are_literals_with_comments():
    params = reports.template_parameters(TEMPLATE)
    assert set(reports.plan.RUNNER_PARAMETERS) <= set(params)
    assert all(p["help"] for p in params.values()), "every parameter needs a comment"
    assert params["data"]["default"] == '"demo"'


def test_template_on_demo_data_shows_the_package_numbers(tmp_path):
    data = fk.datasets.write_demo(tmp_path / "events.csv")
    params = {"data": str(data), "segment_column": "source", "segment_value": "trade show",
              "month": "2025-08", "revenue_target": 400000.0}
    res = reports.run_notebook(TEMPLATE, tmp_path / "out", "trade_show", params)
    assert res.ok, res.error
    shown = reports.read_headline(res.notebook)
    log = fk.read_events(data, stages="pipeline4")
    expected = reports.headline(log, month="2025-08", segment=("source", "trade show"), target=400000.0)
    got = {m["metric"]: m["value"] for m in shown["metrics"]}
    for row in expected.itertuples():
        if pd.isna(row.value):  # a rate not judged yet is stored as null in the headline record
            assert got[row.metric] is None or np.isnan(got[row.metric]), row.metric
        else:
            assert got[row.metric] == pytest.approx(row.value), row.metric
    # and directly against the funnel: the month's new leads at their first step
    sub = reports.select_segment(log, "source", "trade show")
    cohort = reports.entered_between(sub[sub["timestamp"] <= "2025-08-31 23:59:59"],
                                     pd.Timestamp("2025-08-01"), pd.Timestamp("2025-08-31 23:59:59.999999999"))
    direct = fk.funnel.conversion(cohort, as_of=pd.Timestamp("2025-08-31 23:59:59.999999999"))
    assert got["leads_entered"] == direct["entered"].iloc[0] > 0
    # a step rate is the latest judged month's (the month's own leads are not judged yet)
    steps = reports.step_rates(sub, month="2025-08")
    assert got["step:qualification"] == pytest.approx(steps["rate"].iloc[0])
    assert next(m for m in shown["metrics"] if m["metric"] == "step:qualification")["period"] == \
        str(steps["judged_month"].iloc[0])
    page = res.html.read_text()
    assert f"{got['leads_entered']:,.0f}" in page and f"{got['revenue']:,.0f}" in page
    assert f"{got['win_rate']:.1%}" in page
    assert "August 2025" in page and "source = trade show" in page
    assert "MonthlyReport.prepare" not in page  # the HTML has no code cells
    assert str(data) in page  # provenance names the data file


def test_nbval_runs_the_template_with_its_defaults():
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-q", "-p", "no:cacheprovider",
         str(TEMPLATE)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "passed" in res.stdout
