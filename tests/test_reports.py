"""Reports: plans, headline numbers, sections, index, and the batch runner end to end."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

import funnelkit as fk
from funnelkit import reports
from funnelkit.exceptions import PlanError, ReportError
from funnelkit.reports import sections

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def write_plan(folder: Path, **spec) -> Path:
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def expected_numbers(log: pd.DataFrame, month: str, segment: tuple[str, str] | None):
    """The headline numbers recomputed from funnelkit.funnel directly (independent of reports)."""
    period = pd.Period(month, "M")
    start, end = period.start_time, period.end_time
    if segment is not None:
        first = log.drop_duplicates("lead_id")
        leads = first.loc[first[segment[0]].astype(str) == segment[1], "lead_id"]
        log = log[log["lead_id"].isin(leads)]
    known = log[log["timestamp"] <= end]
    first_time = known.groupby("lead_id")["timestamp"].min()
    cohort = first_time.index[(first_time >= start) & (first_time <= end)]
    funnel = fk.funnel.conversion(known[known["lead_id"].isin(cohort)], as_of=end)
    prog = fk.funnel.lead_progress(known)
    closed = prog.loc[(prog["outcome"] != "open") & prog["closed_at"].between(start, end), "lead_id"]
    oc = fk.funnel.outcomes(known[known["lead_id"].isin(closed)]).iloc[0]
    return {
        "leads_entered": float(funnel["entered"].iloc[0]),
        "won": float(oc["won"]),
        "revenue": float(oc["won_amount"]),
        "win_rate": float(oc["won"] / (oc["won"] + oc["lost"])),  # every lead closed in the month is decided
    }


def assert_complete(folder: Path) -> None:
    """Every report file under ``folder`` is complete; no temporary file is left outside a run's private folder."""
    for path in folder.rglob("*"):
        if any(part.startswith(".partial") for part in path.parts) or path.is_dir():
            continue
        assert not path.name.endswith(".tmp"), path
        assert not path.name.startswith(".") or path.name == reports.LOCK_NAME, path
        if path.suffix == ".ipynb":
            nbformat.validate(nbformat.read(path, as_version=4))
        elif path.suffix == ".html":
            assert path.read_text(encoding="utf-8").rstrip().endswith("</html>"), path


# ---------------------------------------------------------------------------
# names and files
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["../../etc", "../../etc/passwd", "..", "/abs/path", "a\\b", "<script>x</script>",
                                   "GTX Pro", "", "   ", "Größe", "x" * 500])
def test_safe_name_stays_one_component(value, tmp_path):
    name = reports.safe_name(value)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name)
    assert len(name) <= 120
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_unique_names_disambiguates_collisions():
    names = reports.unique_names(["GTX Pro", "GTX/Pro", "GTX_Pro", "Other"])
    assert len(set(names.values())) == 4
    assert names["Other"] == "Other"
    assert all(n.startswith("GTX_Pro") for v, n in names.items() if v != "Other")


def test_atomic_write_leaves_only_the_file(tmp_path):
    target = tmp_path / "sub" / "out.html"
    reports.atomic_write(target, "<html>one</html>")
    reports.atomic_write(target, "<html>two</html>")
    assert target.read_text() == "<html>two</html>"
    assert [p.name for p in target.parent.iterdir()] == ["out.html"]
    assert target.stat().st_mode & 0o044  # readable by others, like a normal file


# ---------------------------------------------------------------------------
# months and headline numbers
# ---------------------------------------------------------------------------
def test_month_windows():
    start, end, as_of = reports.month_window("2025-09")
    assert (start, end, as_of) == (pd.Timestamp("2025-09-01"), pd.Timestamp("2025-09-30 23:59:59.999999999"), end)
    assert reports.month_window("2025-09", "2025-09-15")[2] == pd.Timestamp("2025-09-15 23:59:59.999999999")
    assert reports.previous_window("2025-03")[2] == pd.Timestamp("2025-02-28 23:59:59.999999999")
    # month to date: the previous month is seen at the same age
    assert reports.previous_window("2025-09", "2025-09-10")[2] == pd.Timestamp("2025-08-10 23:59:59.999999999")
    for bad in ["2025-13", "Sept 2025", "2025/09", "202509"]:
        with pytest.raises(ReportError, match="YYYY-MM"):
            reports.parse_month(bad)
    with pytest.raises(ReportError, match="before the month"):
        reports.month_window("2025-09", "2025-08-01")


@pytest.mark.parametrize("segment", [None, ("product", "Enterprise"), ("source", "trade show")])
@pytest.mark.parametrize("month", ["2025-09", "2025-03"])
def test_headline_matches_funnel_functions(demo_log, segment, month):
    h = reports.headline(demo_log, month=month, segment=segment).set_index("metric")
    exp = expected_numbers(demo_log, month, segment)
    for metric, value in exp.items():
        assert h.loc[metric, "value"] == pytest.approx(value, nan_ok=True), metric
    prev_month = str(pd.Period(month, "M") - 1)
    prev = expected_numbers(demo_log, prev_month, segment)
    assert h.loc["leads_entered", "previous"] == prev["leads_entered"]
    assert h.loc["won", "change"] == exp["won"] - prev["won"]
    assert h.loc["revenue", "change_pct"] == pytest.approx((exp["revenue"] - prev["revenue"]) / prev["revenue"])
    assert h.loc["revenue", "value"] > 0 and h.loc["leads_entered", "value"] > 0
    assert list(h.columns) == ["label", "kind", "value", "previous", "change", "change_pct", "n", "ci_low", "ci_high",
                               "period", "previous_period"]
    rate = h.loc["win_rate"]
    assert rate["ci_low"] <= rate["value"] <= rate["ci_high"]
    assert h.attrs["previous_month"] == prev_month


def test_headline_as_of_ignores_later_events(demo_log):
    mid = reports.headline(demo_log, month="2025-09", as_of="2025-09-10").set_index("metric")
    full = reports.headline(demo_log, month="2025-09").set_index("metric")
    assert 0 < mid.loc["leads_entered", "value"] < full.loc["leads_entered", "value"]
    early = demo_log[demo_log["timestamp"] <= "2025-09-10 23:59:59.999999999"]
    same = reports.headline(early, month="2025-09", as_of="2025-09-10").set_index("metric")
    pd.testing.assert_frame_equal(mid, same)


def test_headline_target_and_missing_inputs(demo_log):
    h = reports.headline(demo_log, month="2025-09", target=1_000_000).set_index("metric")
    assert h.loc["target_attainment", "value"] == pytest.approx(h.loc["revenue", "value"] / 1_000_000)
    no_amount = reports.headline(demo_log.drop(columns="amount"), month="2025-09").set_index("metric")
    assert math.isnan(no_amount.loc["revenue", "value"])
    assert no_amount.loc["won", "value"] == h.loc["won", "value"]
    marketing = fk.datasets.load_marketing_demo(n_visitors=2000)
    m = reports.headline(marketing, month="2025-03").set_index("metric")
    assert "won" not in m.index and "step:awareness" in m.index
    assert "In March 2025" in reports.headline_summary(reports.headline(marketing, month="2025-03"))


def test_headline_summary_states_the_numbers(demo_log):
    h = reports.headline(demo_log, month="2025-09", segment=("product", "Enterprise"))
    text = reports.headline_summary(h)
    m = h.set_index("metric")
    assert f"{m.loc['leads_entered', 'value']:,.0f} new leads" in text
    assert f"{m.loc['revenue', 'value']:,.0f} in revenue" in text
    assert "August 2025" in text


def test_select_segment_unknown_value_names_the_choices(demo_log):
    with pytest.raises(ReportError, match=r"Did you mean 'Enterprise'.*Values present"):
        reports.select_segment(demo_log, "product", "Enterprize")
    with pytest.raises(ReportError, match="segment column 'origin'"):
        reports.select_segment(demo_log, "origin", "x")


def test_load_data_demo_and_missing_file(tmp_path):
    assert reports.load_data("demo")["lead_id"].nunique() == 6000
    with pytest.raises(ReportError, match="data file not found"):
        reports.load_data(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------
def test_sections_of_a_report():
    rep = reports.MonthlyReport.prepare("demo", segment_column="source", segment_value="referral",
                                        month="2025-09", revenue_target=500000)
    head = sections.headline(rep)
    bundle = head._repr_mimebundle_()
    rec = bundle[reports.HEADLINE_MIME]
    assert rec["month"] == "2025-09" and rec["segment"] == ["source", "referral"]
    entered = next(m for m in rec["metrics"] if m["metric"] == "leads_entered")["value"]
    assert f"{entered:,.0f}" in bundle["text/html"]
    assert "%" in bundle["text/html"]
    fun = sections.funnel(rep)
    assert "data:image/png;base64," in fun.html and "Step conversion" in fun.html
    assert "Win rate" in sections.outcomes(rep).html
    prov = sections.provenance(rep).html
    assert re.search(r"[0-9a-f]{64}", prov) and fk.__version__ in prov
    assert "referral" in sections.title(rep).html


def test_sections_say_why_when_input_is_missing():
    rep = reports.MonthlyReport.prepare("demo", segment_column="product", segment_value="Starter",
                                        month="2024-05")  # before the demo data starts
    assert "No lead entered" in sections.funnel(rep).html
    assert "No lead was won or lost" in sections.outcomes(rep).html
    marketing = fk.datasets.load_marketing_demo(n_visitors=1000)
    rep = reports.MonthlyReport.prepare(marketing, stages="aida", month="2025-03")
    assert "visitors" not in sections.outcomes(rep).html and "won or stalled" in sections.outcomes(rep).html
    assert "has no won outcome: its last stage, action, is its goal" in sections.headline(rep).html
    milestone = fk.validate_events(marketing.assign(stage="awareness"), stages=fk.StageSet("one", ["awareness"]))
    rep = reports.MonthlyReport.prepare(milestone, stages=fk.StageSet("one", ["awareness"]), month="2025-03")
    assert "no won or lost outcomes" in sections.outcomes(rep).html
    assert "has no won outcome" in sections.headline(rep).html
    assert "<table" in sections.table(pd.DataFrame({"rate": [0.5]})).html
    assert "No rows" in sections.table(pd.DataFrame()).html


def test_pipeline_and_forecast_sections_show_the_package_numbers():
    from funnelkit import forecast, pipeline

    rep = reports.MonthlyReport.prepare("demo", segment_column="product", segment_value="Professional",
                                        month="2025-09", revenue_target=300000)
    snap = pipeline.snapshot(rep.log, as_of=rep.as_of)
    assert f"{len(snap):,} leads were open" in sections.pipeline(rep).text
    st = pipeline.stale(rep.log, as_of=rep.as_of)
    hz = fk.funnel.conversion(rep.log, as_of=rep.as_of).attrs["horizon"]
    dead = st["days_in_stage"] > st["stage"].astype(str).map(hz)
    new = ~dead & (st["entered_stage_at"] + pd.to_timedelta(st["threshold_days"], unit="D") >= rep.start)
    text = sections.followups(rep).text
    assert f"{new.sum():,} open leads went stale in September 2025" in text
    assert f"{(~new & ~dead).sum():,} more went stale before the month" in text
    # long-dead leads are exactly the funnel's stalled ones
    stalled = fk.funnel.outcomes(rep.log, as_of=rep.as_of)["stalled"].iloc[0]
    assert dead.sum() <= stalled and f"{stalled:,} open leads" in text
    b = pipeline.bottleneck(rep.log, as_of=rep.as_of)
    stage = b.loc[b["bottleneck"], "stage"].iloc[0]
    assert f"The bottleneck is {stage}" in sections.bottleneck(rep).text
    assert b["p90_days"].notna().all() and "no 90th percentile" not in sections.bottleneck(rep).text
    horizon = pd.Timestamp("2025-10-31 23:59:59.999999999") - rep.as_of
    total = forecast.forecast(rep.log, as_of=rep.as_of, horizon=horizon, seed=0, new_leads=True).total.iloc[0]
    text = sections.forecast(rep).text
    assert f"about {total['expected_wins']:,.1f} wins" in text and "October 2025" in text
    assert total["open_pipeline_wins"] / total["open_leads"] < 0.5  # a sales pipeline: most of it closes later
    assert "most of the open pipeline closes later or is lost" in text
    assert f"{total['expected_revenue']:,.0f} in revenue" in text and "target of 300,000" in text
    plan = forecast.leads_needed(rep.log, target_revenue=900000, as_of=rep.as_of, period="90D", by=None,
                                    seed=0).iloc[-1]
    text = sections.leads_needed(rep).text
    assert "adds up to 900,000" in text and f"about {plan['leads_needed']:,.0f} new leads" in text
    lk = fk.funnel.leaks(rep.log, as_of=rep.as_of)
    ranked = lk.loc[lk["rank"].notna() & (lk["lost_per_month"] > 0)].sort_values("rank")
    text = sections.leaks(rep).text
    assert "Against its own past" in text and str(ranked["sentence"].iloc[0]) in text


def test_pipeline_and_forecast_sections_say_why_when_input_is_missing():
    rep = reports.MonthlyReport.prepare("demo", segment_column="product", segment_value="Starter",
                                        month="2025-09")
    assert "No revenue target was given" in sections.leads_needed(rep).text
    marketing = reports.MonthlyReport.prepare(fk.datasets.load_marketing_demo(n_visitors=1500), stages="aida",
                                              month="2025-03", revenue_target=1000)
    assert "needs a won outcome" not in sections.forecast(marketing).text  # its goal counts as won
    assert "needs a won outcome" not in sections.leads_needed(marketing).text
    one = fk.StageSet("one", ["awareness"])
    milestone = reports.MonthlyReport.prepare(
        fk.validate_events(fk.datasets.load_marketing_demo(n_visitors=300).assign(stage="awareness"), stages=one),
        stages=one, month="2025-03", revenue_target=1000)
    assert "needs a won outcome" in sections.forecast(milestone).text
    assert "needs a won outcome" in sections.leads_needed(milestone).text
    no_amount = reports.MonthlyReport.prepare(fk.datasets.load_demo().drop(columns="amount"), stages="pipeline4",
                                              month="2025-09", revenue_target=1000)
    assert "has no amounts" in sections.leads_needed(no_amount).text
    assert "in revenue" not in sections.forecast(no_amount).text
    assert "Value" not in sections.pipeline(no_amount).html


# ---------------------------------------------------------------------------
# plans
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    return fk.datasets.write_demo(tmp_path_factory.mktemp("data") / "events.csv", 400, seed=3)


def test_demo_plan_expands_to_every_product_and_source(demo_log, tmp_path):
    # the plans name ../data/demo/events.csv, which only `make demo` writes: lay the same
    # folders out in tmp so a fresh clone (CI) passes too
    (tmp_path / "params").mkdir()
    for name in ("demo_monthly.yaml", "enterprise_2025-09.yaml"):
        shutil.copy(REPO / "params" / name, tmp_path / "params" / name)
    fk.datasets.write_demo(tmp_path / "data" / "demo" / "events.csv")
    plan = reports.load_plan(tmp_path / "params" / "demo_monthly.yaml")
    jobs, notes = reports.expand_plan(plan, demo_log)
    got = [(j.split, j.value) for j in jobs]
    want = [("product", p) for p in sorted(demo_log["product"].unique())] + \
        [("source", s) for s in sorted(demo_log["source"].unique())]
    assert got == want and notes == []
    assert {j.parameters["month"] for j in jobs} == {"2025-09"}
    ent = next(j for j in jobs if j.value == "Enterprise")
    assert ent.parameters["revenue_target"] == 400_000 and ent.parameters["segment_column"] == "product"
    assert next(j for j in jobs if j.value == "referral").parameters["revenue_target"] == 200_000
    only, _ = reports.expand_plan(plan, demo_log, month="2025-08", only=["product=Starter", "source"])
    assert [(j.split, j.value) for j in only] == [("product", "Starter")] + want[3:]
    assert only[0].parameters["month"] == "2025-08"
    assert reports.load_plan(tmp_path / "params" / "enterprise_2025-09.yaml").segment == ("product", "Enterprise")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"splitz": ["product"]}, r"unknown key\(s\) 'splitz' \(did you mean 'splits'\?\)"),
        ({"data": "missing.csv"}, r"data: file not found: .*missing.csv"),
        ({"stages": "pipeline5"}, r"stages: unknown stage set 'pipeline5'.*Did you mean"),
        ({"stages": "nope.yaml"}, r"stages: .*nope.yaml"),
        ({"month": "June 2017"}, r"month: 'June 2017' is not a month"),
        ({"columns": {"Deal": "deal_id"}}, r"columns: .*map to unknown names"),
        ({"target": {"region": 5}}, r"target: 'region' is not a split"),
        ({"target": -3}, r"target: .*non-negative"),
        ({"segment": {"product": "A"}}, r"either 'splits' .* or 'segment'"),
        ({"parameters": {"month": "2025-01"}}, r"parameters: \['month'\] are set by the plan"),
        ({"read_options": {"timezone": "UTC"}}, r"read_options: allowed keys"),
        ({"splits": "  "}, None),
    ],
)
def test_plan_errors_name_the_key(tmp_path, small_csv, spec, match):
    base = {"data": str(small_csv), "stages": "pipeline4", "splits": ["product"], "month": "2025-09"}
    path = write_plan(tmp_path, **{**base, **spec})
    if match is None:  # a blank split column is caught when the plan meets the data
        with pytest.raises(PlanError, match="splits: column"):
            reports.load_plan(path).load()
        return
    with pytest.raises(PlanError, match=match):
        reports.load_plan(path)


def test_plan_checks_the_data_and_template(tmp_path, small_csv):
    path = write_plan(tmp_path, data=str(small_csv), stages="pipeline4", splits=["prodcut"], month="2025-09")
    with pytest.raises(PlanError, match=r"splits: column 'prodcut' is not in the data\. Did you mean 'product'"):
        reports.load_plan(path).load()
    path = write_plan(tmp_path, data=str(small_csv), stages="pipeline4", splits=["product"],
                      columns={"deal": "lead_id"})
    with pytest.raises(PlanError, match=r"columns: 'deal' not in .*Its columns: lead_id"):
        reports.load_plan(path).load()
    path = write_plan(tmp_path, data=str(small_csv), stages="aida", splits=["product"])
    with pytest.raises(PlanError, match="cannot be read with this plan's 'columns' and 'stages'"):
        reports.load_plan(path).load()
    path = write_plan(tmp_path, data=str(small_csv), stages="pipeline4", splits=["product"],
                      target={"product": {"Enterprize": 10}})
    with pytest.raises(PlanError, match="target: product: no lead has product = 'Enterprize'"):
        reports.load_plan(path).load()
    path = write_plan(tmp_path, data=str(small_csv), stages="pipeline4", splits=["product"],
                      parameters={"colour": "red"})
    with pytest.raises(PlanError, match=r"\['colour'\] are not parameters of"):
        reports.load_plan(path).check_template()
    plan = reports.load_plan(write_plan(tmp_path, data=str(small_csv), stages="pipeline4", splits=["product"]))
    jobs, notes = reports.expand_plan(plan, plan.load())  # no month: the latest event's month
    latest = str(plan.load()["timestamp"].max().to_period("M"))
    assert {j.parameters["month"] for j in jobs} == {latest} and latest in notes[0]
    with pytest.raises(PlanError, match="only: 'region' is not a split"):
        reports.expand_plan(plan, plan.load(), month="2025-09", only=["region=x"])


def test_plan_paths_are_relative_to_the_plan(tmp_path, small_csv):
    sub = tmp_path / "plans"
    sub.mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "events.csv").write_bytes(small_csv.read_bytes())
    fk.PRESETS["pipeline4"].to_yaml(tmp_path / "stages.yaml")
    path = write_plan(sub, data="../data/events.csv", stages="../stages.yaml", splits=["source"],
                      output="../out")
    plan = reports.load_plan(path)
    assert plan.data == str((tmp_path / "data" / "events.csv").resolve())
    assert plan.stages == str((tmp_path / "stages.yaml").resolve())
    assert plan.output == (tmp_path / "out").resolve()


def test_plan_column_mapping_blank_values_and_hostile_names(tmp_path):
    raw = fk.datasets.load_demo(300, seed=5, canonical=False).rename(columns={"source": "origin"})
    raw.loc[raw.index[:7], "origin"] = None
    raw["product"] = raw["product"].replace({"Starter": "../../etc", "Enterprise": "a/b<i>"})
    raw.to_csv(tmp_path / "crm.csv", index=False)
    path = write_plan(tmp_path, data="crm.csv", stages="pipeline4", splits=["product", "origin"],
                      columns={"deal": "lead_id", "deal_stage": "stage", "entered": "timestamp", "value": "amount"},
                      month="2025-06")
    plan = reports.load_plan(path)
    log = plan.load()
    jobs, notes = reports.expand_plan(plan, log)
    assert {j.name for j in jobs if j.split == "product"} == {"etc", "a_b_i", "Professional"}
    assert any("blank 'origin'" in n for n in notes)
    assert all(reports.safe_name(j.name) == j.name for j in jobs)


# ---------------------------------------------------------------------------
# the index page
# ---------------------------------------------------------------------------
def test_index_escapes_values_and_errors(tmp_path):
    (tmp_path / "product").mkdir()
    status = pd.DataFrame([
        {"split": "product", "value": "<script>alert(1)</script>", "status": "ok", "leads_entered": 12.0,
         "leads_entered_change": -3.0, "won": 2.0, "won_change": 1.0, "revenue": 1234.0, "revenue_change": 0.0,
         "win_rate": 0.25, "win_rate_change": 0.05, "target_attainment": np.nan, "seconds": 1.0,
         "html": str(tmp_path / "product" / "script_alert_1_script.html"), "notebook": None, "error": ""},
        {"split": "product", "value": "Bad & <b>", "status": "failed", "html": None,
         "notebook": str(tmp_path / "product" / "Bad_b.failed.ipynb"), "error": "ReportError: no lead has <b>"},
    ]).reindex(columns=reports.STATUS_COLUMNS)
    page = reports.index_html(status, folder=tmp_path, title="T <x>", month="2025-09")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Bad &amp; &lt;b&gt;" in page and "no lead has &lt;b&gt;" in page
    assert 'href="product/script_alert_1_script.html"' in page and 'href="product/Bad_b.failed.ipynb"' in page
    assert "1,234" in page and "25.0%" in page and "(+5.0 pts)" in page and "FAILED" in page
    assert "T &lt;x&gt;" in page


def test_read_headline_from_a_notebook():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("display_data", data={reports.HEADLINE_MIME: {"metrics": [1]},
                                                                 "text/plain": "x"})]
    nb.cells = [nbformat.v4.new_code_cell("y"), cell]
    assert reports.read_headline(nb) == {"metrics": [1]}
    nb.cells = nb.cells[:1]
    assert reports.read_headline(nb) is None


# ---------------------------------------------------------------------------
# end to end
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo plan, run once on the demo data (6,000 leads, every product and source)."""
    root = tmp_path_factory.mktemp("demo")
    data = fk.datasets.write_demo(root / "events.csv")
    spec = yaml.safe_load((REPO / "params" / "demo_monthly.yaml").read_text())
    spec.update(data=str(data), output=str(root / "reports"))
    plan = write_plan(root, **spec)
    status = reports.run_plan(plan, jobs=2, progress=False)
    return plan, data, status


@pytest.mark.slow
def test_demo_plan_end_to_end(demo_run):
    plan, data, status = demo_run
    log = fk.read_events(data, stages="pipeline4")
    assert (status["status"] == "ok").all(), status["error"].tolist()
    assert len(status) == log["product"].nunique() + log["source"].nunique()
    month_dir = Path(status.attrs["folder"])
    page = (month_dir / "index.html").read_text()
    assert "<th>New deals</th>" in page and "Leads entered" not in page  # the plan's noun: deals
    for r in status.itertuples():
        html_path = month_dir / r.split / f"{reports.safe_name(r.value)}.html"
        assert html_path.is_file() and html_path.with_suffix(".ipynb").is_file()
        assert f'href="{r.split}/{reports.safe_name(r.value)}.html"' in page
        exp = expected_numbers(log, "2025-09", (r.split, r.value))
        assert r.leads_entered == exp["leads_entered"]
        assert r.won == exp["won"]
        assert r.revenue == pytest.approx(exp["revenue"])
        assert r.win_rate == pytest.approx(exp["win_rate"])
        assert f"{exp['revenue']:,.0f}" in page
        report_html = html_path.read_text()
        assert "<h1>" in report_html and "Provenance" in report_html and "data:image/png" in report_html
        assert "sections.headline" not in report_html  # no code cells in the HTML
    summary = pd.read_csv(month_dir / "summary.csv")
    assert summary["leads_entered"].tolist() == status["leads_entered"].tolist()
    assert not list(month_dir.glob(".partial*"))
    assert_complete(month_dir)
    # pages are single offline files: no CDN script, a CSP that allows no script, figures embedded
    page = (month_dir / "product" / "Enterprise.html").read_text()
    assert "<script" not in page and "cdnjs" not in page and "Content-Security-Policy" in page


@pytest.mark.slow
def test_rerun_skip_existing_is_idempotent(demo_run):
    plan, _, status = demo_run
    again = reports.run_plan(plan, jobs=2, progress=False, skip_existing=True)
    assert (again["status"] == "skipped").all()
    cols = ["split", "value", "leads_entered", "won", "revenue", "win_rate", "target_attainment"]
    pd.testing.assert_frame_equal(again[cols], status[cols])
    assert again.attrs["seconds"] < 30
    # a subset run keeps the rest of the plan in the index and summary
    one = reports.run_plan(plan, progress=False, skip_existing=True, only=["product=Starter"])
    assert one[["split", "value"]].values.tolist() == [["product", "Starter"]]
    summary = pd.read_csv(Path(one.attrs["folder"]) / "summary.csv")
    assert len(summary) == len(status) and (summary["status"] == "kept").sum() == len(status) - 1
    assert summary["leads_entered"].tolist() == status["leads_entered"].tolist()


def quick_template(folder: Path, seconds: float = 1.0) -> Path:
    """A template declaring the runner's parameters that just waits: tests the runner, not the report."""
    nb = nbformat.v4.new_notebook()
    params = "\n".join(f"{p} = {v!r}" for p, v in [
        ("data", ""), ("columns", {}), ("stages", ""), ("read_options", {}), ("segment_column", ""),
        ("segment_value", ""), ("month", ""), ("as_of", ""), ("revenue_target", 0.0), ("title", "")])
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(f"import time\ntime.sleep({seconds})\nprint(segment_value)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "quick.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_leaves_no_partial_files(tmp_path, small_csv, sig):
    plan = write_plan(tmp_path, data=str(small_csv), stages="pipeline4", splits=["product"], overall=True,
                      month="2025-09", output=str(tmp_path / "out"), template=str(quick_template(tmp_path)))
    month_dir = tmp_path / "out" / "2025-09"
    cmd = [sys.executable, "-m", "funnelkit", "report", str(plan), "--jobs", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(month_dir.glob("*/*.html")):
        time.sleep(0.05)
    assert list(month_dir.glob("*/*.html")), "no report finished in time"
    if sig == signal.SIGKILL:
        os.killpg(proc.pid, sig)  # the whole run, workers included, dies at once
    else:
        proc.send_signal(sig)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == (130 if sig == signal.SIGTERM else -signal.SIGKILL), out
    assert not (month_dir / "index.html").exists()
    time.sleep(1.0)  # any orphan would have written by now
    assert_complete(month_dir)
    if sig == signal.SIGTERM:
        assert not list(month_dir.glob(".partial*"))  # the run removed its own private folder
        assert "Interrupted" in out
    else:
        assert len(list(month_dir.glob(".partial-*"))) == 1  # left by the killed run, for the next one
    # resuming finishes the batch and removes whatever the killed run left
    status = reports.run_plan(plan, jobs=2, progress=False, skip_existing=True)
    assert (status["status"].isin(["ok", "skipped"])).all() and (status["status"] == "skipped").any()
    assert len(status) == 4
    assert not list(month_dir.glob(".partial*"))
    assert_complete(month_dir)


def test_load_data_reads_snapshots_and_wide_tables(tmp_path):
    from funnelkit.reports import load_data

    snap = tmp_path / "snap.csv"
    snap.write_text("id,st,eng,closed,value,product\n"
                    "a,Engaging,2017-01-02,,,X\n"
                    "b,Won,2017-01-05,2017-02-01,900,Y\n"
                    "c,Prospecting,,,,X\n")
    (tmp_path / "crm.yaml").write_text("stages: [Prospecting, Engaging]\nwon: Won\nlost: [Lost]\n")
    log = load_data(snap, columns={"id": "lead_id", "value": "amount"}, stages=str(tmp_path / "crm.yaml"),
                    read_options={"snapshot": {"stage": "st",
                                               "dates": {"Engaging": "eng", "Won": "closed", "Lost": "closed"}}})
    assert fk.funnel.outcomes(log).loc[0, ["won", "lost", "open"]].tolist() == [1, 0, 2]
    wide = tmp_path / "wide.csv"
    wide.write_text("Record ID,Date entered Qualification,Date entered Meeting,origin\n"
                    "1,2024-01-01,2024-01-03,web\n2,2024-01-02,,fair\n")
    log = load_data(wide, columns={"Record ID": "lead_id"}, stages="pipeline4",
                    read_options={"wide": {"prefix": "Date entered "}})
    assert fk.funnel.conversion(log)["entered"].tolist()[:2] == [2, 1]
    assert set(log["origin"].astype(str)) == {"web", "fair"}
    with pytest.raises(fk.ReportError, match="lead_id"):
        load_data(wide, stages="pipeline4", read_options={"wide": {"prefix": "Date entered "}})


def test_only_accepts_file_names_and_rejects_typos():
    from funnelkit.reports import expand_plan, load_plan

    plan = load_plan(REPO / "params" / "demo_monthly.yaml")
    log = fk.datasets.load_demo()
    jobs, _ = expand_plan(plan, log, only=["source=trade_show"])
    assert [(j.split, j.value) for j in jobs] == [("source", "trade show")]
    with pytest.raises(fk.PlanError, match="Did you mean 'Enterprise'"):
        expand_plan(plan, log, only=["product=Enterprize"])


# ---------------------------------------------------------------------------
# issue 13: what an analyst reads - leaks, step rates, cards, charts, formats
# ---------------------------------------------------------------------------
END_SEPT = pd.Timestamp("2025-09-30 23:59:59.999999999")


@pytest.fixture(scope="module")
def enterprise():
    return reports.MonthlyReport.prepare("demo", segment_column="product", segment_value="Enterprise",
                                         month="2025-09", revenue_target=400000, noun="deals", currency="€")


def test_first_screen_names_the_leak_funnel_leaks_finds(enterprise):
    """The report's first lines say what funnel.leaks (the lesson's and the explorer's estimator) says."""
    lk = fk.funnel.leaks(fk.datasets.load_demo(), by="product", noun="deals")
    sentence = lk.loc[lk["product"] == "Enterprise", "sentence"].iloc[0]
    assert sentence.startswith("Enterprise: proposal -> close converts 20% against 60% for the other products")
    head = sections.title(enterprise)
    assert sentence in head.text and "Biggest leak" in head.html
    assert head.html.index(html_escape(sentence)) < len(head.html)  # in the title block, before any section
    # the section: both benchmarks, the segment's rows of each, sentences first then a table
    text = sections.leaks(enterprise).text
    assert text.index("Against the other products") < text.index(sentence) < text.index("Against its own past")
    own = fk.funnel.leaks(enterprise.log, benchmark="previous", as_of=END_SEPT, noun="deals")
    losing = own.loc[own["rank"].notna() & (own["lost_per_month"] > 0)]
    assert all(s in text for s in losing["sentence"].head(3))


def html_escape(text: str) -> str:
    import html

    return html.escape(text)


def test_peer_leaks_from_the_run_cache_equal_those_from_the_data(tmp_path, enterprise):
    log = fk.datasets.load_demo()
    direct = enterprise.peer_leaks
    rows = reports.monthly.segment_leaks(log, "product", "Enterprise", as_of=END_SEPT, noun="deals")
    seg = reports.select_segment(log, "product", "Enterprise")
    path = reports.write_cache(seg, tmp_path / "c.parquet", segment=("product", "Enterprise"), peers=rows)
    cached = reports.MonthlyReport.prepare("demo", cache=str(path), segment_column="product",
                                           segment_value="Enterprise", month="2025-09", noun="deals").peer_leaks
    cols = ["transition", "leads", "converted", "rate", "benchmark_rate", "lost_per_month", "significant",
            "sentence"]
    pd.testing.assert_frame_equal(cached[cols].reset_index(drop=True), direct[cols].reset_index(drop=True),
                                  check_dtype=False)


def test_step_rates_are_judged_on_matured_months(enterprise):
    s = enterprise.steps.set_index("transition")
    # the latest judged month and its rate are funnel.leaks(benchmark="previous")'s (same rule, same leads)
    own = fk.funnel.leaks(enterprise.log, benchmark="previous", as_of=END_SEPT).set_index("transition")
    for name, r in s.iterrows():
        assert str(r["judged_month"]) == own.loc[name, "period"]
        assert r["rate"] == pytest.approx(own.loc[name, "rate"])
        assert r["judged_leads"] == own.loc[name, "leads"]
    # independently: conversion() of the leads that reached qualification in June 2025
    prog = fk.funnel.lead_progress(enterprise.log, as_of=END_SEPT)
    june = prog.loc[prog["time_qualification"].between("2025-06-01", "2025-06-30 23:59:59"), "lead_id"]
    sub = fk.funnel.conversion(enterprise.log[enterprise.log["lead_id"].isin(june)], as_of=END_SEPT)
    assert sub["matured"].iloc[0] == len(june) == s.loc["qualification -> meeting", "judged_leads"]
    assert s.loc["qualification -> meeting", "rate"] == pytest.approx(sub["step_conversion"].iloc[0])
    # the month's volumes: leads that reached each step in September
    for step in ("qualification", "meeting", "proposal", "close"):
        n = prog[f"time_{step}"].between("2025-09-01", END_SEPT).sum()
        assert s.loc[s["step"] == step, "entered"].iloc[0] == n, step
    # and every matured lead: the funnel chart's table
    allf = fk.funnel.conversion(enterprise.log, as_of=END_SEPT)
    assert s["all_rate"].tolist() == pytest.approx(allf["step_conversion"].iloc[:-1].tolist())
    # the headline's step rows are the latest judged month (no longer empty) and say which month
    h = enterprise.headline.set_index("metric")
    assert h.loc["step:proposal", "value"] == pytest.approx(s.loc["proposal -> close", "rate"])
    assert h.loc["step:proposal", "period"] == "2025-06" and h.loc["step:proposal", "previous_period"] == "2025-05"


def test_headline_cards_have_sparklines_changes_and_small_sample_flags(enterprise):
    sec = sections.headline(enterprise)
    cards = re.findall(r'<div class="fk-card[^"]*">.*?</svg></div>', sec.html)
    assert len(cards) == 5
    labels = [re.search(r'fk-card-label">([^<]*)<', c).group(1) for c in cards]
    assert labels == ["New deals", "Won", "Revenue won", "Win rate (closed this month)", "Forecast, October 2025"]
    # the sparkline's points are the same numbers as the card, month by month
    series = enterprise.series
    h = enterprise.headline.set_index("metric")
    assert series["leads_entered"].iloc[-1] == h.loc["leads_entered", "value"] == 85
    assert series["leads_entered"].iloc[-2] == h.loc["leads_entered", "previous"]
    assert series["won"].iloc[-1] == h.loc["won", "value"] and series["revenue"].iloc[-1] == h.loc["revenue", "value"]
    for month, value in zip(series["month"].iloc[:-1], series["leads_entered"].iloc[:-1]):  # each as of its month end
        p = pd.Period(month, "M")
        assert value == reports.headline(enterprise.log, month=p).set_index("metric").loc["leads_entered", "value"]
        break
    assert "Sep 2025: 85" in cards[0] and "+4 (+5%) vs Aug" in cards[0]
    # 4 wins against 2: too few to read a change, and said so
    assert "fk-small" in cards[1] and "too few to read a change" in cards[1]
    assert "of 73 closed" in cards[3] and "€290,920" in cards[2] and "73% of the €400k target" in cards[2]
    fc = enterprise.next_month.total.iloc[0]
    assert f"€{fc['expected_revenue']:,.0f}" in cards[4]


def test_every_percentage_of_the_funnel_chart_is_the_tables(enterprise):
    import matplotlib.pyplot as plt

    sec = sections.funnel(enterprise)
    cells = set(re.findall(r"<td[^>]*>([^<]*)</td>", sec.html))
    for draw in (lambda: fk.plots.funnel_chart(enterprise.funnel_all),
                 lambda: sections._phone_funnel(enterprise.funnel_all, "t")):
        ax = draw()
        texts = [t.get_text() for t in ax.texts]
        plt.close(ax.figure)
        shown = [p for t in texts for p in re.findall(r"\d+(?:\.\d+)?%", t)]
        assert len(shown) >= 10
        intervals = re.findall(r"\[([^\]]+)\]", " ".join(texts))
        assert intervals and all(i in cells for i in intervals), (intervals, cells)
        for pct in shown:
            assert any(pct == c or c.startswith(pct + "–") or c.endswith("–" + pct) for c in cells), pct
    # the forecast chart's probability is the table's
    fsec = sections.forecast(enterprise)
    p = enterprise.next_month.probability_of(target_revenue=400000)
    assert f"P(reach target) = {p:.0%}" in fsec.html or f"P(reach target)</td><td class=\"num\">{p:.0%}" in fsec.html
    assert f"P(reach target)</td><td class=\"num\">{p:.0%}</td>" in fsec.html


def test_pipeline_value_with_and_without_long_dead_leads(enterprise):
    out = fk.funnel.outcomes(enterprise.log, as_of=END_SEPT).iloc[0]
    out = {k: (int(v) if k in {"open", "stalled"} else v) for k, v in out.items()}
    text = sections.pipeline(enterprise).text
    total = out["open_amount"] + out["stalled_amount"]
    assert f"{out['open'] + out['stalled']:,} deals were open, worth €{total:,.0f}" in text
    assert f"{out['stalled']:,} of them" in text and f"worth €{out['stalled_amount']:,.0f}" in text
    assert f"live pipeline is {out['open']:,} deals worth €{out['open_amount']:,.0f}" in text


def test_number_format_and_no_raw_values_on_the_page():
    rep = reports.MonthlyReport.prepare("demo", segment_column="source", segment_value="referral", month="2025-09",
                                        revenue_target=200000, currency="EUR", thousands=".", noun="deals")
    page = "".join(getattr(sections, name)(rep).html for name in (
        "title", "headline", "leaks", "flow", "funnel", "outcomes", "pipeline", "followups", "bottleneck",
        "forecast", "leads_needed", "provenance"))
    revenue = rep.headline.set_index("metric").loc["revenue", "value"]
    assert f"{revenue:,.0f}".replace(",", ".") + " EUR" in page
    assert f"{revenue:,.0f} " not in page
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(svg|style)\b.*?</\1>", " ", page, flags=re.S))
    for raw in ("True", "False", "nan", "NaN", "None", "StageSet", "Timestamp"):
        assert not re.search(rf"\b{raw}\b", text), raw
    assert "<StageSet" not in page and '{"' not in text
    assert "<dl" in page and "Parameters" not in page  # the parameters as a short list, not a JSON dump
    with pytest.raises(ReportError, match="number format"):
        reports.MonthlyReport.prepare("demo", month="2025-09", thousands=".", decimal=".")


def test_plan_number_format_keys(tmp_path, small_csv):
    base = {"data": str(small_csv), "stages": "pipeline4", "splits": ["product"], "month": "2025-09"}
    plan = reports.load_plan(write_plan(tmp_path, **base, currency="€", thousands=" ", noun="deals"))
    jobs, _ = reports.expand_plan(plan, plan.load())
    assert {(j.parameters["currency"], j.parameters["thousands"], j.parameters["decimal"], j.parameters["noun"])
            for j in jobs} == {("€", " ", ".", "deals")}
    with pytest.raises(PlanError, match="thousands"):
        reports.load_plan(write_plan(tmp_path, **base, thousands="_"))
    with pytest.raises(PlanError, match="both ','"):
        reports.load_plan(write_plan(tmp_path, **base, decimal=","))
    with pytest.raises(PlanError, match=r"parameters: \['currency'\]"):
        reports.load_plan(write_plan(tmp_path, **base, parameters={"currency": "$"}))


def test_template_and_demo_plan_ship_in_the_package():
    from importlib.resources import files

    template = reports.default_template()
    assert template == Path(str(files("funnelkit") / "templates" / "monthly_report.ipynb"))
    assert (REPO / "notebooks" / "monthly_report.ipynb").resolve() == template.resolve()  # one template
    nb = nbformat.read(template, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "funnelkit"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed without outputs
    assert set(reports.plan.OPTIONAL_PARAMETERS) <= set(reports.template_parameters(template))
    packaged = yaml.safe_load(reports.demo_plan().read_text())
    source = yaml.safe_load((REPO / "params" / "demo_monthly.yaml").read_text())
    assert {k: v for k, v in packaged.items() if k not in {"data", "output"}} == \
        {k: v for k, v in source.items() if k not in {"data", "output"}}
    assert not Path(packaged["data"]).is_absolute() and packaged["output"] == "reports"
    mk = (REPO / "Makefile").read_text()
    assert re.search(r"ipykernel install .*--name funnelkit", mk)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"templates/*"' in pyproject


@pytest.mark.slow
def test_reports_link_to_the_index_siblings_and_last_month(tmp_path, small_csv):
    # links, not forecasts: no past forecasts (check_months 0) keeps this two-month run short
    plan = write_plan(tmp_path, data=str(small_csv), stages="pipeline4", splits=["product"], overall=True,
                      output="out", currency="€", parameters={"check_months": 0})
    for month in ("2025-08", "2025-09"):
        status = reports.run_plan(plan, month=month, jobs=2, progress=False)
        assert status["status"].isin(["ok", "warning"]).all(), status["error"].tolist()
    sept = tmp_path / "out" / "2025-09"
    for page in sept.rglob("*.html"):
        hrefs = [h for h in re.findall(r'href="([^"]+)"', page.read_text()) if not h.startswith("#")]
        for href in hrefs:
            assert not re.match(r"[a-z]+:|/", href), href  # relative links only
            assert (page.parent / unquote(href)).resolve().is_file(), (page, href)
    one = (sept / "product").glob("*.html").__next__()
    text = one.read_text()
    assert 'href="../index.html"' in text and 'aria-current="page"' in text
    assert f'href="../../2025-08/product/{one.name}"' in text and "August 2025" in text
    assert 'href="../all/all.html"' in text
    index = (sept / "index.html").read_text()
    assert '<meta name="viewport"' in index and "€" in index


def test_the_trend_chart_has_a_phone_drawing_of_the_same_rates(enterprise):
    import matplotlib.pyplot as plt

    sec = sections.trend(enterprise)
    assert '<source media="(max-width: 600px)"' in sec.html  # a narrower picture for phones
    tr = fk.funnel.trend(enterprise.log, freq="MS", stages=enterprise.stages, as_of=enterprise.as_of)
    tr = tr.loc[tr["period"].notna()]
    fig = sections._phone_trend(tr, "t")
    ax = fig.axes[0]
    assert fig.get_size_inches()[0] <= 4.5 and ax.title.get_fontsize() >= 10
    recent = sorted(tr["period"].drop_duplicates())[-6:]
    # every drawn point is a rate of the table, in its last six months
    for line in ax.get_lines():
        ys = [y for y in line.get_ydata() if y == y]
        for y in ys:
            assert tr.loc[tr["period"].isin(recent), "rate"].sub(y).abs().min() < 1e-12
    assert len(ax.get_legend().get_texts()) == tr["transition"].nunique() + 1
    plt.close(fig)


def test_the_pipeline_boards_have_phone_drawings_with_readable_text(enterprise):
    import matplotlib.pyplot as plt

    sec = sections.pipeline(enterprise)
    assert sec.html.count('<source media="(max-width: 600px)"') == 2  # count and value boards
    snap = fk.pipeline.snapshot(enterprise.log, as_of=enterprise.as_of)
    fig = sections._phone_drawing(lambda ax: fk.plots.pipeline_board(snap, metric="count", ax=ax), n_rows=4)
    ax = fig.axes[0]
    assert fig.get_size_inches()[0] <= 4.5
    assert min(t.get_fontsize() for t in [*ax.texts, *ax.get_yticklabels()]) >= 9.5
    plt.close(fig)


def test_a_phone_board_wraps_long_stage_names_and_warns_nothing(enterprise):
    """BPIC 2020's stage names ("Request For Payment FINAL_APPROVED by SUPERVISOR") did not fit a
    phone's 4.3 inches: tight_layout warned, and the warning was printed on the report page."""
    import warnings

    import matplotlib.pyplot as plt

    snap = fk.pipeline.snapshot(enterprise.log, as_of=enterprise.as_of)
    snap["stage"] = snap["stage"].astype(str).radd("Request For Payment FINAL_APPROVED by SUPERVISOR, ")
    snap.attrs.pop("stage_set", None)  # stage names of another set
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = sections._phone_drawing(lambda ax: fk.plots.pipeline_board(snap, metric="count", ax=ax), n_rows=4)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 4 and all(max(map(len, lab.split("\n"))) <= sections._PHONE_LABEL for lab in labels)
    assert sorted(lab.replace("\n", " ") for lab in labels) == sorted(set(snap["stage"]))
    plt.close(fig)


def test_a_stage_over_a_tenth_never_leave_says_why_its_90th_percentile_is_a_dash(monkeypatch):
    """Road fines: a fifth of the fines that entered Send Fine were still there, its table cell read
    "–" and nothing said why.  Here 30% of the demo's leads that reached meeting stay there."""
    log = fk.datasets.load_demo()
    met = log.loc[log["stage"] == "meeting"].groupby("lead_id")["timestamp"].min()
    stuck = met.index[np.random.default_rng(0).random(len(met)) < 0.3]
    keep = ~(log["lead_id"].isin(stuck) & (log["timestamp"] > log["lead_id"].map(met)))
    log = log[keep].reset_index(drop=True)
    rep = reports.MonthlyReport.prepare(log, month="2025-09", stages="pipeline4")
    # by hand: the share of the leads that entered meeting by as_of and are still there
    known = log[log["timestamp"] <= rep.as_of].sort_values(["lead_id", "timestamp"])
    entered = known.loc[known["stage"] == "meeting", "lead_id"].unique()
    last = known.groupby("lead_id")["stage"].last()
    assert (last.loc[entered] == "meeting").mean() > 0.1
    p90 = fk.pipeline.bottleneck(rep.log, as_of=rep.as_of).set_index("stage")["p90_days"]
    assert np.isnan(p90["meeting"]) and p90.drop("meeting").notna().all()
    assert ("meeting has no 90th percentile (a dash): over a tenth of the leads that enter it have not left."
            in sections.bottleneck(rep).text)
    # no median either (Maven's Prospecting has no dates at all): nothing is claimed about who left
    real = fk.pipeline.bottleneck
    monkeypatch.setattr(sections._pipeline, "bottleneck", lambda *a, **k: real(*a, **k).assign(
        median_days=lambda d: d["median_days"].where(d["stage"].astype(str) != "meeting")))
    assert "no 90th percentile" not in sections.bottleneck(rep).text
