"""Issue 13's last defects: every number of a report (tables, cards, sentences, charts) in the plan's format.

A plan with a currency, a thousands separator and a decimal comma must write
every amount, count and percentage the same way on the whole page, the
charts included: the forecast-against-target chart carries the currency of
the tables, the funnel chart's counts their thousands separator.  The index
names the leads with the plan's noun.  Reports on a CRM snapshot do not warn
about a horizon nothing uses.
"""

from __future__ import annotations

import re
import warnings
from functools import partial

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import reports
from funnelkit.exceptions import DataWarning
from funnelkit.reports import NumberFormat, sections

SPACE_COMMA = NumberFormat(currency="€", thousands=" ", decimal=",")


@pytest.fixture(scope="module")
def comma_report():
    """Enterprise, September 2025, written 1 234,5 € -style: thousands ' ', decimal ','."""
    return reports.MonthlyReport.prepare("demo", segment_column="product", segment_value="Enterprise",
                                         month="2025-09", revenue_target=400000, noun="deals", currency="€",
                                         thousands=" ", decimal=",")


def _chart_texts(ax) -> list[str]:
    """Every text a reader sees on a chart: title, labels, legend, annotations and tick labels."""
    fig = ax.figure
    fig.canvas.draw()
    out = []
    for a in fig.axes:
        out += [a.get_title(), a.get_xlabel(), a.get_ylabel()]
        out += [t.get_text() for t in a.texts]
        out += [t.get_text() for t in a.get_xticklabels() + a.get_yticklabels()]
        if a.get_legend() is not None:
            out += [t.get_text() for t in a.get_legend().get_texts()]
    return [t for t in out if t]


def _wrong_numbers(text: str) -> list[str]:
    """Numbers written with a '.' decimal mark or a ',' thousands separator (dates and versions aside)."""
    text = re.sub(r"\d{4}-\d{2}(-\d{2})?", " ", text)  # dates
    return re.findall(_WRONG, text)


_WRONG = r"\d\.\d|(?<![\d,])[1-9]\d{0,2},\d{3}(?!\d)"


# ---------------------------------------------------------------------------
# 1. the forecast-against-target chart carries the currency
# ---------------------------------------------------------------------------
def test_target_chart_writes_every_amount_with_the_currency(comma_report):
    fc = comma_report.next_month
    t = fc.total.iloc[0]
    f = comma_report.fmt
    ax = fk.plots.target_chart(fc, target=400000, money=f.money, numbers=f)
    legend = [x.get_text() for x in ax.get_legend().get_texts()]
    # the table's amounts, written as the table writes them
    assert f"expected {f.money(t['expected_revenue'])}" in legend
    assert f"target {f.money(400000)}" == legend[-1] == "target €400 000"
    assert any(x.endswith(f.money(t["horizon_weighted_pipeline"])) for x in legend)
    assert f"80% interval: {f.money(t['revenue_low'])}–{f.money(t['revenue_high'])}" in legend
    ticks = [ax.xaxis.get_major_formatter()(v, 0) for v in ax.get_xticks()]
    assert ticks and all(x.startswith("€") or x.startswith("−€") for x in ticks), ticks
    assert not _wrong_numbers(" ".join(_chart_texts(ax)))


def test_target_chart_default_and_money_only():
    fc = fk.forecast.forecast(fk.datasets.load_demo(), as_of="2025-06-30", n_draws=100, seed=1)
    ax = fk.plots.target_chart(fc, target=350000)
    legend = [x.get_text() for x in ax.get_legend().get_texts()]
    assert legend[-1] == "target 350,000"  # the default writes plain numbers
    ax = fk.plots.target_chart(fc, target=350000, money=lambda v: f"{v:,.0f} EUR")
    assert ax.get_legend().get_texts()[-1].get_text() == "target 350,000 EUR"
    assert all(ax.xaxis.get_major_formatter()(v, 0).endswith(" EUR") for v in ax.get_xticks())


def test_forecast_section_passes_the_plans_money_to_the_chart(comma_report, monkeypatch):
    import funnelkit.plots as plots

    seen = {}
    real = plots.target_chart

    def spy(*args, **kwargs):
        ax = real(*args, **kwargs)
        seen["texts"] = _chart_texts(ax)
        seen["ticks"] = [ax.xaxis.get_major_formatter()(v, 0) for v in ax.get_xticks()]
        return ax

    monkeypatch.setattr(plots, "target_chart", spy)
    sec = sections.forecast(comma_report)
    t = comma_report.next_month.total.iloc[0]
    f = comma_report.fmt
    assert f"expected {f.money(t['expected_revenue'])}" in seen["texts"]  # the table's figure
    assert f.money(t["expected_revenue"]) in sec.html
    assert "target €400 000" in seen["texts"]
    p = comma_report.next_month.probability_of(target_revenue=400000)
    assert any(x.endswith(f"P(reach target) = {f.rate(p, 0)}") for x in seen["texts"])
    # the axis writes compact amounts: in full ("€25,000€50,000...") nine of them ran together
    assert seen["ticks"] and all(x.startswith(("€", "−€")) and len(x) <= 6 for x in seen["ticks"]), seen["ticks"]


# ---------------------------------------------------------------------------
# 3. one number format on the whole page, charts included
# ---------------------------------------------------------------------------
def test_every_number_on_the_page_and_its_charts_uses_the_plans_format(comma_report, monkeypatch):
    charts = []
    real = sections.figure

    def spy(ax, **kwargs):
        charts.append(_chart_texts(ax))
        return real(ax, **kwargs)

    monkeypatch.setattr(sections, "figure", spy)
    names = ("title", "headline", "leaks", "flow", "funnel", "trend", "outcomes", "pipeline", "waterfall",
             "followups", "bottleneck", "forecast", "leads_needed")
    page = "".join(getattr(sections, n)(comma_report).html for n in names)
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(svg|style)\b.*?</\1>", " ", page, flags=re.S))
    text = re.sub(r"\s+", " ", text)
    assert not _wrong_numbers(text), [text[max(0, m.start() - 60):m.end() + 20]
                                      for m in re.finditer(_WRONG, text)][:5]
    assert len(charts) >= 6  # funnel, trend, pipeline (2), waterfall (2), forecast
    for texts in charts:
        assert not _wrong_numbers(" ".join(texts)), texts
    # and they are written: the funnel's first count with a space, a decimal comma somewhere in the cards
    first = int(comma_report.funnel_all["entered"].iloc[0])
    assert any(f"{first:,}".replace(",", " ") in t for texts in charts for t in texts)
    assert re.search(r"\d,\d%", text)


def test_leak_sentences_are_the_leak_finders_words():
    """With the default format the report's leak sentences are funnel.leaks' own; with a comma only numbers change."""
    lk = fk.funnel.leaks(fk.datasets.load_demo(), by="product", noun="deals")
    plain = NumberFormat()
    for _, r in lk.iterrows():
        assert sections.leak_sentence(r, plain, "deals") == r["sentence"]
    r = lk.loc[lk["significant"]].iloc[0]
    comma = sections.leak_sentence(r, SPACE_COMMA, "deals")
    number = r"\d+(?:[ ,.]\d+)*"
    assert re.sub(number, "#", comma) == re.sub(number, "#", r["sentence"])
    assert comma != r["sentence"]
    assert not _wrong_numbers(comma)


def test_chart_numbers_follow_the_format():
    log = fk.datasets.load_demo()
    f = fk.funnel.conversion(log)
    texts = _chart_texts(fk.plots.funnel_chart(f, numbers=SPACE_COMMA))
    assert any(t.startswith(f"{int(f['entered'].iloc[0]):,}".replace(",", " ")) for t in texts)
    small = [p for t in texts for p in re.findall(r"\d+,\d%", t)]
    expect = [SPACE_COMMA.pct(v) for v in f["overall_conversion"] if v < 0.095]
    assert set(expect) <= set(small)
    mv = fk.pipeline.movement(log, start="2025-05-31", end="2025-06-30")
    ax = fk.plots.waterfall_chart(mv, numbers=SPACE_COMMA)
    bars = [t.get_text() for t in ax.texts]
    assert bars[0] == SPACE_COMMA.count(mv.set_index("movement").loc["start", "leads"])
    ax = fk.plots.waterfall_chart(mv, metric="value", money=partial(SPACE_COMMA.money, compact=True))
    assert all("€" in t.get_text() for t in ax.texts)


def test_pipeline_board_writes_no_value_for_leads_without_amounts():
    snap = fk.pipeline.snapshot(fk.datasets.load_demo(), as_of="2025-06-30")
    labels = [t.get_text() for t in fk.plots.pipeline_board(snap, money=SPACE_COMMA.money).texts]
    assert all("€" in x for x in labels)
    unknown = snap.assign(amount=np.nan)
    labels = [t.get_text() for t in fk.plots.pipeline_board(unknown, money=SPACE_COMMA.money, noun="deals").texts]
    assert labels and all("€" not in x and x.strip().endswith("deals") for x in labels), labels


# ---------------------------------------------------------------------------
# 2. the index names the leads with the plan's noun
# ---------------------------------------------------------------------------
def test_index_headings_use_the_plans_noun(tmp_path):
    status = pd.DataFrame([
        {"split": "all", "value": "all", "status": "ok", "leads_entered": 1234.0, "leads_entered_change": 4.0,
         "won": 20.0, "won_change": 1.0, "revenue": 5000.0, "revenue_change": 0.0, "win_rate": 0.5,
         "win_rate_change": 0.0, "target_attainment": np.nan, "html": None, "notebook": None, "error": ""},
        {"split": "vehicle", "value": "A", "status": "ok", "leads_entered": 10.0, "leads_entered_change": 4.0,
         "won": 2.0, "won_change": 1.0, "revenue": 50.0, "revenue_change": 0.0, "win_rate": 0.5,
         "win_rate_change": 0.0, "target_attainment": np.nan, "html": None, "notebook": None, "error": ""},
    ]).reindex(columns=reports.STATUS_COLUMNS)
    page = reports.index_html(status, folder=tmp_path, title="Fines", month="2013-05", noun="fines",
                              fmt=SPACE_COMMA)
    heads = re.findall(r"<(?:h2|th)[^>]*>([^<]*)</(?:h2|th)>", page)
    assert "All fines" in heads and "New fines" in heads and "By vehicle" in heads
    assert 'data-label="New fines"' in page and ">All fines</td>" in page
    assert "New fines: fines whose first event was in the month" in page
    assert "fines whose outcome came in the month" in page
    assert "lead" not in re.sub(r"<[^>]+>", " ", page).lower()
    assert "1 234" in page  # the plan's thousands separator
    default = reports.index_html(status, folder=tmp_path, title="T", month="2013-05")
    assert "New leads" in default and "All leads" in default


# ---------------------------------------------------------------------------
# 5. real logs (skip without ../shared/data)
# ---------------------------------------------------------------------------
@pytest.mark.shared
def test_maven_snapshot_report_has_no_spurious_horizon_warning(shared_data, tmp_path):
    """A CRM snapshot's first stage is undated: counting the month's outcomes must not warn about a horizon."""
    path = shared_data / "maven_crm" / "sales_pipeline.csv"
    stages = tmp_path / "maven.yaml"
    stages.write_text("name: maven\nstages: [Prospecting, Engaging]\nwon: Won\nlost: [Lost]\n")
    rep = reports.MonthlyReport.prepare(
        str(path), columns={"opportunity_id": "lead_id", "close_value": "amount"}, stages=str(stages),
        read_options={"snapshot": {"stage": "deal_stage",
                                   "dates": {"Engaging": "engage_date", "Won": "close_date", "Lost": "close_date"}}},
        segment_column="", segment_value="", month="2017-06", currency="$", noun="deals")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        sec = sections.headline(rep)
    h = rep.headline.set_index("metric")
    # by hand: deals closed in June 2017 (close_date), won among them
    raw = pd.read_csv(path)
    june = raw[pd.to_datetime(raw["close_date"]).dt.to_period("M") == pd.Period("2017-06", "M")]
    assert h.loc["won", "value"] == (june["deal_stage"] == "Won").sum()
    assert h.loc["lost", "value"] == (june["deal_stage"] == "Lost").sum()
    assert f"{int(h.loc['won', 'value']):,}" in sec.text


@pytest.mark.shared
def test_bpic_xes_plan_makes_a_report(shared_data, tmp_path):
    """A plan can name an XES log and map its attributes (the header check does not read XML as CSV)."""
    import yaml

    xes = shared_data / "bpic2020" / "DomesticDeclarations.xes.gz"
    rejected = ["Declaration REJECTED by EMPLOYEE", "Declaration REJECTED by ADMINISTRATION",
                "Declaration REJECTED by SUPERVISOR", "Declaration REJECTED by MISSING",
                "Declaration REJECTED by PRE_APPROVER", "Declaration REJECTED by BUDGET OWNER"]
    (tmp_path / "stages.yaml").write_text(yaml.safe_dump({
        "name": "declarations", "won": "Payment Handled", "lost": rejected,
        "stages": ["Declaration SUBMITTED by EMPLOYEE", "Declaration APPROVED by ADMINISTRATION",
                   "Declaration FINAL_APPROVED by SUPERVISOR", "Request Payment"]}))
    ignore = ["Declaration SAVED by EMPLOYEE", "Declaration APPROVED by BUDGET OWNER",
              "Declaration APPROVED by PRE_APPROVER", "Declaration FOR_APPROVAL by ADMINISTRATION",
              "Declaration FOR_APPROVAL by SUPERVISOR", "Declaration FOR_APPROVAL by PRE_APPROVER"]
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({
        "data": str(xes), "columns": {"Amount": "amount"}, "read_options": {"ignore": ignore},
        "stages": "stages.yaml", "overall": True, "month": "2018-06", "target": 40000, "currency": "€",
        "thousands": ".", "decimal": ",", "noun": "declarations"}))
    plan = reports.load_plan(tmp_path / "plan.yaml")
    log = plan.load()
    assert log["lead_id"].nunique() == 10_366 and log["amount"].notna().all()
    rep = reports.MonthlyReport.prepare(plan.data, columns=plan.columns, stages=plan.stages,
                                        read_options=plan.read_options, segment_column="", segment_value="",
                                        month="2018-06", revenue_target=40000, currency="€", thousands=".",
                                        noun="declarations")
    # paid in June 2018, by hand from the raw XES
    raw = fk.read_xes(xes)
    paid = raw[(raw["stage"].astype(str) == "Payment Handled")
               & (raw["timestamp"].dt.to_period("M") == pd.Period("2018-06", "M"))]["lead_id"].nunique()
    h = rep.headline.set_index("metric")
    assert h.loc["won", "value"] == paid == 798
    # the waterfall's won (open leads only) is reconciled with the outcomes' in words
    text = sections.waterfall(rep).text
    mv_won = int(re.search(r"([\d.]+) were won", text).group(1).replace(".", ""))
    assert mv_won < paid and f"{paid - mv_won} of the 798 declarations won in the month had been closed" in text
    # declarations close within days: the forecast counts next month's new ones, and says how much of it they are
    fc = sections.forecast(rep).text
    t = rep.next_month.total.iloc[0]
    assert t["new_lead_wins"] > t["open_pipeline_wins"] > 0
    assert f"about {t['new_leads']:,.0f} new ones expected to enter".replace(",", ".") in fc
    assert "from declarations that enter in the meantime" in fc and "rarely close within a month" not in fc
    prov = sections.provenance(rep).html
    assert "['" not in prov and "Declaration SAVED by EMPLOYEE, Declaration APPROVED" in prov
