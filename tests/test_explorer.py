"""The exploration notebook ``notebooks/explore_funnels.ipynb``.

It is committed without outputs, and must run unchanged on the demo data and,
after editing only its first cell, on an event log it has never seen: here a
CRM export with its own column names, labels and day-first dates, and a web
marketing funnel without outcomes.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import funnelkit as fk

REPO = Path(__file__).resolve().parents[1]
EXPLORER = REPO / "notebooks" / "explore_funnels.ipynb"


def _read():
    return nbformat.read(EXPLORER, as_version=4)


def _first_code(nb):
    return next(c for c in nb.cells if c.cell_type == "code")


def _edit_first_cell(nb, **values):
    """Do what a user does: change the values in the first cell, nothing else."""
    cell = _first_code(nb)
    lines = cell.source.splitlines()
    for name, value in values.items():
        hits = [i for i, line in enumerate(lines) if re.match(rf"{name}\s*=", line)]
        assert len(hits) == 1, f"{name} is not set once in the first cell"
        comment = lines[hits[0]].partition("#")[2]
        lines[hits[0]] = f"{name} = {value!r}  #{comment}"
    cell.source = "\n".join(lines)
    return nb


def _run(nb, cwd: Path):
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{errors[0].ename}: {errors[0].evalue}"
    text = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.output_type == "stream":
                text.append(o.text)
            elif o.output_type in {"execute_result", "display_data"}:
                text.append(o.get("data", {}).get("text/plain", ""))
    return "\n".join(text)


def test_committed_without_outputs():
    nb = _read()
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, c.source[:60]


def test_first_code_cell_is_the_only_place_to_edit():
    nb = _read()
    first = _first_code(nb)
    assert "parameters" in first.metadata.get("tags", [])  # papermill can set it too
    names = re.findall(r"^([A-Z_]+)\s*=", first.source, re.M)
    assert {"DATA", "COLUMNS", "STAGES", "SEGMENTS", "AS_OF"} <= set(names)
    assert re.search(r"^DATA = None\b", first.source, re.M), "the default runs on the demo data"
    for line in first.source.splitlines():  # papermill cannot parse '=' in a comment
        assert line.count("=") == 1, line
    for c in nb.cells:
        if c.cell_type == "code" and c is not first:
            for name in names:
                assert not re.search(rf"^{name}\s*=", c.source, re.M), (
                    f"{name} is reassigned outside the first cell"
                )


@pytest.mark.slow
def test_runs_unchanged_on_the_demo(tmp_path):
    text = _run(_read(), tmp_path)
    assert "events for 6,000 leads" in text
    assert "Enterprise: proposal -> close converts" in text  # the demo's leak is among those listed
    assert "following: " in text
    assert "expected_wins" in text  # the forecast table


@pytest.mark.slow
def test_runs_on_an_unseen_crm_export_after_editing_the_first_cell(tmp_path):
    raw = fk.datasets.load_demo(1500, seed=11, canonical=False)
    raw = raw.rename(
        columns={
            "deal": "Deal ID",
            "deal_stage": "Deal Stage",
            "entered": "Entered On",
            "value": "Amount (USD)",
            "product": "Product",
            "source": "Lead Source",
            "owner": "Deal Owner",
        }
    )
    raw["Entered On"] = raw["Entered On"].str.slice(0, 10).map(lambda d: f"{d[8:10]}/{d[5:7]}/{d[:4]}")
    path = tmp_path / "crm_export.csv"
    raw.to_csv(path, index=False)
    nb = _edit_first_cell(
        _read(),
        DATA=str(path),
        COLUMNS={
            "Deal ID": "lead_id",
            "Deal Stage": "stage",
            "Entered On": "timestamp",
            "Amount (USD)": "amount",
        },
        DAYFIRST=True,
    )
    text = _run(nb, tmp_path)
    assert f"Event log from {path}" in text
    assert "events for 1,500 leads" in text
    assert "segments used below: ['Product', 'Lead Source', 'Deal Owner']" in text
    assert "following: " in text
    assert "expected_wins" in text


@pytest.mark.slow
def test_runs_on_a_marketing_funnel_without_outcomes(tmp_path):
    web = fk.datasets.load_marketing_demo(4000, seed=3).drop(columns="flag")
    web = web.rename(columns={"lead_id": "visitor", "stage": "step", "timestamp": "seen_at"})
    web.attrs = {}  # a plain table, as a user's file would be
    path = tmp_path / "web.parquet"
    web.to_parquet(path)
    nb = _edit_first_cell(
        _read(),
        DATA=str(path),
        STAGES="aida",
        COLUMNS={"visitor": "lead_id", "step": "stage", "seen_at": "timestamp"},
    )
    text = _run(nb, tmp_path)
    assert "events for 4,000 leads" in text
    assert "step conversion by channel" in text
    assert "No forecast: the stage set has no won outcome" in text
