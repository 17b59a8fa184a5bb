"""Sections of a report: each is one call in a notebook cell.

A section function takes a :class:`~funnelkit.reports.MonthlyReport` (or a
result table or figure) and returns a :class:`Section`: readable HTML
(formatted numbers, titled figures embedded as PNG) that Jupyter and the
HTML export display, plus the data behind it.  When a section's input is
missing (no leads entered in the month, no amounts, a stage set without
outcomes) the section says why in a sentence instead of failing.

New sections follow the same pattern: compute with a package function, then
``sections.table(result, caption=...)`` or ``sections.figure(ax, caption=...)``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from .. import forecast as _forecast
from .. import funnel as _funnel
from .. import pipeline as _pipeline
from ..exceptions import FunnelkitError
from ..stats import proportion_ci
from ..tables import report_table
from .monthly import MonthlyReport, data_fingerprint, headline_record, headline_summary
from .notebook import HEADLINE_MIME, STATUS_MIME

__all__ = [
    "Section",
    "bottleneck",
    "capture_warnings",
    "figure",
    "forecast",
    "funnel",
    "headline",
    "leads_needed",
    "leaks",
    "note",
    "outcomes",
    "pipeline",
    "provenance",
    "stale",
    "table",
    "title",
    "warning",
]


@dataclass
class Section:
    """A displayable piece of a report.

    Attributes
    ----------
    html : str
        What the reader sees.
    text : str
        Plain-text rendering (for terminals).
    data : object
        The numbers behind it (a DataFrame, or None).
    extra : dict
        Further mime types shown with it (e.g. the headline JSON).
    """

    html: str
    text: str = ""
    data: object = None
    extra: dict = field(default_factory=dict)

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/html": self.html, "text/plain": self.text or _strip_tags(self.html)}
        bundle.update(self.extra)
        return bundle

    def __add__(self, other: Section) -> Section:
        return Section(self.html + other.html, "\n\n".join(t for t in (self.text, other.text) if t),
                       self.data if self.data is not None else other.data, {**self.extra, **other.extra})


def _strip_tags(text: str) -> str:
    import re

    return html.unescape(re.sub(r"<[^>]+>", " ", text)).strip()


def _p(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{html.escape(text)}</p>"


def note(text: str) -> Section:
    """A sentence shown in place of a section whose input is missing.

    Examples
    --------
    >>> note("No lead entered in the month.").text
    'No lead entered in the month.'
    """
    return Section(f'<p class="funnelkit-note"><em>{html.escape(text)}</em></p>', text)


def warning(text: str) -> Section:
    """A styled warning: something the reader must know to trust the numbers.

    Examples
    --------
    >>> warning("The data ends on 2025-09-30.").html.startswith('<div class="funnelkit-warning"')
    True
    """
    return Section(f'<div class="funnelkit-warning" role="note"><strong>Warning:</strong> {html.escape(text)}</div>',
                   f"Warning: {text}")


#: Warnings the package raises that repeat one a report already shows (its data ends before the as-of date).
_REPEATS = ("after the data ends",)


def capture_warnings(report: MonthlyReport) -> None:
    """Show Python warnings as styled notes in the report, and list them for the index.

    Replaces :func:`warnings.showwarning` in the notebook's kernel: a warning
    raised by a section (e.g. a :class:`~funnelkit.DataWarning`) is displayed
    where it happens as :func:`warning`, without the file and line that
    Python would print, and added to ``report.warnings`` (which
    :func:`provenance` hands to the batch runner: the report's status in the
    index is then *warning*).  Each message is shown once.
    """
    import warnings as _warnings

    from IPython.display import display

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text in report.warnings:
            return
        if any(r in text for r in _REPEATS) and any("The data ends on" in w for w in report.warnings):
            return  # the report already says so, at the top
        report.warnings.append(text)
        display(warning(text))

    _warnings.showwarning = show
    _warnings.simplefilter("default")


def table(data: pd.DataFrame, *, caption: str = "", precision: Mapping[str, str] | None = None,
          empty: str = "No rows.") -> Section:
    """A result table, formatted for reading (see :func:`funnelkit.report_table`).

    Parameters
    ----------
    data : DataFrame
    caption : str
        Shown above the table.
    precision : mapping, optional
        Column -> format string overrides.
    empty : str
        Sentence shown instead of an empty table.

    Examples
    --------
    >>> import pandas as pd
    >>> "25.0%" in table(pd.DataFrame({"rate": [0.25]})).html
    True
    """
    if data is None or data.empty:
        return note(empty)
    return Section(_styled(report_table(data, precision=dict(precision or {})), data, caption),
                   data.to_string(index=False), data)


def _styled(styler, data: pd.DataFrame, caption: str = "") -> str:
    """HTML of a Styler with every text cell, label and caption escaped; text columns left-aligned.

    pandas' ``Styler.to_html()`` does not escape by default: a lead id or a
    segment value such as ``<script>`` would be live markup in the page.
    """
    text_cols = [c for c in data.columns
                 if not (pd.api.types.is_numeric_dtype(data[c].dtype) or pd.api.types.is_bool_dtype(data[c].dtype)
                         or pd.api.types.is_datetime64_any_dtype(data[c].dtype))]
    if text_cols:
        styler = styler.format(subset=text_cols, escape="html", na_rep="–")
        left = ", ".join(f"td.col{data.columns.get_loc(c)}, th.col{data.columns.get_loc(c)}" for c in text_cols)
        styler = styler.set_table_styles([{"selector": left, "props": "text-align: left;"}], overwrite=False)
    styler = styler.format_index(escape="html", axis=0).format_index(escape="html", axis=1)
    if caption:
        styler = styler.set_caption(html.escape(caption))
    return styler.to_html()


def figure(obj, *, caption: str = "", dpi: int = 110) -> Section:
    """A matplotlib figure (or Axes) embedded as a PNG; the figure is closed.

    Embedding makes the output independent of the notebook's matplotlib
    backend, and closing it prevents Jupyter from showing it twice.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> figure(ax, caption="A plot").html.startswith("<figure")
    True
    """
    import matplotlib.pyplot as plt

    fig = obj.figure if hasattr(obj, "figure") and not hasattr(obj, "savefig") else obj
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    except (ValueError, RuntimeError) as exc:  # e.g. a label from the data that mathtext cannot parse
        why = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")[:200]
        return note(f"The chart could not be drawn ({type(exc).__name__}: {why}); the table has its numbers.")
    finally:
        plt.close(fig)
    png = base64.b64encode(buf.getvalue()).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    alt = html.escape(caption or "figure", quote=True)
    return Section(f'<figure><img src="data:image/png;base64,{png}" alt="{alt}" '
                   f'style="max-width:100%">{cap}</figure>', caption or "[figure]")


# ---------------------------------------------------------------------------
# the monthly report's sections
# ---------------------------------------------------------------------------
def title(report: MonthlyReport) -> Section:
    """The report's heading and what it covers (segment, month, as-of date, stages)."""
    ss = report.stages
    seg = f"{report.segment[0]} = {report.segment[1]}" if report.segment else "all leads"
    facts = [
        ("Segment", seg),
        ("Month", f"{report.start:%d %B %Y} to {report.end:%d %B %Y}"),
        ("Data as of", f"{report.as_of:%Y-%m-%d %H:%M}"),
        ("Stages", f"{ss.name}: {' > '.join(ss.steps)}"
                   + (f" (lost: {', '.join(ss.lost)})" if ss.lost else "")),
        ("Leads known", f"{report.log['lead_id'].nunique():,} in this segment, all months"),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    body = f'<h1>{html.escape(report.heading)}</h1><table class="funnelkit-facts">{rows}</table>'
    out = Section(body, report.heading + "\n" + "\n".join(f"{k}: {v}" for k, v in facts))
    for w in report.warnings:
        out = out + warning(w)
    return out


def _change_text(kind: str, change: float, change_pct: float) -> str:
    if change is None or math.isnan(change):
        return "–"
    arrow = "▲" if change > 0 else ("▼" if change < 0 else "=")
    if kind == "rate":
        return f"{arrow} {change * 100:+.1f} pts"
    rel = "" if change_pct is None or math.isnan(change_pct) else f" ({change_pct:+.0%})"
    return f"{arrow} {change:+,.0f}{rel}"


def _value_text(kind: str, v: float) -> str:
    if v is None or math.isnan(v):
        return "–"
    return f"{v:.1%}" if kind == "rate" else f"{v:,.0f}"


def headline(report: MonthlyReport) -> Section:
    """The month's headline numbers, in sentences and a table, against the previous month.

    The output also carries the numbers as JSON (mime type
    :data:`~funnelkit.reports.HEADLINE_MIME`), which the batch runner reads
    back from the executed notebook for the index.
    """
    h = report.headline
    prev_name = pd.Period(h.attrs["previous_month"]).strftime("%B %Y")
    rows = []
    for r in h.itertuples(index=False):
        value = _value_text(r.kind, r.value)
        if r.kind == "rate" and r.n == 0:
            value = "not judged yet (no lead matured)" if r.metric.startswith("step:") else "– (none closed)"
        elif r.kind == "rate" and not math.isnan(r.n):
            detail = f"of {r.n:,.0f}"
            if not math.isnan(r.ci_low):
                detail += f"; 95% CI {r.ci_low:.0%}–{r.ci_high:.0%}"
            value += f" ({detail})"
        rows.append({"Measure": r.label, "This month": value,
                     prev_name: _value_text(r.kind, r.previous),
                     "Change": _change_text(r.kind, r.change, r.change_pct)})
    shown = pd.DataFrame(rows)
    summary = headline_summary(h)
    notes = []
    if "revenue" in set(h["metric"]) and not report.has_amount:
        notes.append("The data has no amount column, so revenue cannot be computed.")
    if "won" not in set(h["metric"]):
        notes.append(f"Stage set {report.stages.name!r} has no won outcome: wins and revenue are not "
                     "defined; the funnel's last stage is its goal.")
    body = (_p(summary) + "".join(_p(n, "funnelkit-note") for n in notes)
            + _styled(shown.style.hide(axis="index"), shown))
    record = headline_record(h)
    return Section(body, summary + "\n" + shown.to_string(index=False), h,
                   {HEADLINE_MIME: json.loads(json.dumps(record))})


_FUNNEL_COLUMNS = {
    "step": "Step", "entered": "Leads", "converted": "To next step", "in_flight": "Still in flight",
    "matured": "Matured (judged)", "step_conversion": "Step conversion",
    "step_ci_low": "95% CI low", "step_ci_high": "95% CI high",
    "overall_conversion": "From top (in-flight leads excluded)",
}


def funnel(report: MonthlyReport) -> Section:
    """The funnel of the leads that entered in the month: chart with intervals, and table."""
    from ..plots import funnel_chart

    f = report.funnel
    if f.empty or int(f["entered"].iloc[0]) == 0:
        return note(f"No lead entered the funnel in {report.month:%B %Y}, so there is no funnel to draw.")
    ax = funnel_chart(f, title=f"Funnel of leads entered in {report.month:%B %Y} (as of {report.as_of:%Y-%m-%d})")
    fig = figure(ax, caption=f"{report.heading}: leads reaching each step, step conversion and its 95% interval.")
    shown = f[[c for c in _FUNNEL_COLUMNS if c in f.columns]].rename(columns=_FUNNEL_COLUMNS)
    pct = {c: "{:.1%}" for c in ["Step conversion", "95% CI low", "95% CI high",
                                 "From top (in-flight leads excluded)"]}
    counts = {c: "{:,.0f}" for c in ["Leads", "To next step", "Still in flight", "Matured (judged)"]}
    return fig + table(shown, precision={**pct, **counts})


def outcomes(report: MonthlyReport, *, by: str | None = None) -> Section:
    """Won and lost among the leads closed in the month, with the win rate and its interval.

    Parameters
    ----------
    report : MonthlyReport
    by : str, optional
        A segment column to break the outcomes down by.
    """
    ss = report.stages
    if ss.won is None and not ss.lost:
        return note(f"Stage set {ss.name!r} has no won or lost outcomes, so there are no outcomes to report.")
    closed = report.closed
    if closed.empty:
        return note(f"No lead was won or lost in {report.month:%B %Y}.")
    if by is not None and by not in closed.columns:
        return note(f"There is no column {by!r} in the data to break the outcomes down by.")
    res = _funnel.outcomes(closed, stages=ss, by=by)
    # every lead here is decided: the win rate is won / (won + lost), with its Wilson interval
    # (funnel.outcomes' own win_rate is the funnel's chain over matured leads, another number)
    decided = (res["won"] + res["lost"]).to_numpy(dtype=float)
    low, high = proportion_ci(res["won"].to_numpy(dtype=float), decided)
    with np.errstate(invalid="ignore", divide="ignore"):
        res = res.assign(leads=decided, win_rate=res["won"].to_numpy(dtype=float) / decided, ci_low=low,
                         ci_high=high)
    keep = ([by] if by else []) + ["leads", "won", "lost", "win_rate", "ci_low", "ci_high"]
    if report.has_amount:
        keep.append("won_amount")
    names = {"leads": "Leads closed", "won": "Won", "lost": "Lost", "win_rate": "Win rate",
             "ci_low": "95% CI low", "ci_high": "95% CI high", "won_amount": "Revenue won"}
    shown = res[keep].rename(columns=names)
    fmt = {"Win rate": "{:.1%}", "95% CI low": "{:.1%}", "95% CI high": "{:.1%}", "Revenue won": "{:,.0f}"}
    fmt.update({c: "{:,.0f}" for c in ["Leads closed", "Won", "Lost"]})
    return table(shown, precision=fmt, caption=f"Leads whose outcome came in {report.month:%B %Y}")


def provenance(report: MonthlyReport) -> Section:
    """The footer: data file and its SHA-256, parameters, versions and run time."""
    from .. import __version__

    data = report.data
    fp = report.fingerprint
    if fp is None:
        try:
            fp = data_fingerprint(data)
        except OSError as exc:
            fp = {"source": str(data), "sha256": f"unavailable ({exc})"}
    params = json.dumps(report.parameters, default=str, ensure_ascii=False, sort_keys=True)
    facts = [
        ("Data", fp["source"]),
        ("SHA-256", fp["sha256"]),
        ("Parameters", params),
        ("funnelkit", __version__),
        ("Python / pandas", f"{platform.python_version()} / {pd.__version__}"),
        ("Run at", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>" for k, v in facts)
    load = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes if n.strip())
    load_html = f"<p>When the data was loaded:</p><ul>{load}</ul>" if load else ""
    body = (f'<footer><hr><p><strong>Provenance</strong></p>'
            f'<table class="funnelkit-facts">{rows}</table>{load_html}</footer>')
    status = {"warnings": list(report.warnings)}
    return Section(body, "\n".join(f"{k}: {v}" for k, v in facts), extra={STATUS_MIME: status})


# ---------------------------------------------------------------------------
# sections over the pipeline, leak finder and forecast modules
# ---------------------------------------------------------------------------
def _nothing_known(report: MonthlyReport, what: str) -> Section | None:
    """A sentence when no lead of the report is known at its as-of date (e.g. a month before the first one)."""
    if len(report.log):
        return None
    who = f"{report.segment[0]} = {report.segment[1]}" if report.segment else "the data"
    first = report.segment_start
    if pd.notna(first) and first > report.as_of:
        return note(f"No lead of {who} was known on {report.as_of:%Y-%m-%d}: the first one came on "
                    f"{first:%Y-%m-%d}, so there is no {what} yet.")
    return note(f"No lead of {who} was known on {report.as_of:%Y-%m-%d}, so there is no {what}.")


def _needs_outcomes(report: MonthlyReport, what: str) -> Section | None:
    if report.stages.won is None:
        return note(f"{what} needs a won outcome, and stage set {report.stages.name!r} has none.")
    return None


def leaks(report: MonthlyReport, *, top: int = 3) -> Section:
    """The leak finder: each step's recent conversion against its own history, in sentences.

    Uses :func:`funnelkit.funnel.leaks` (benchmark: the segment's earlier
    months) on the report's leads as of its date; the biggest losses come
    first.
    """
    empty = _nothing_known(report, "leak to find")
    if empty is not None:
        return empty
    try:
        res = _funnel.leaks(report.log, stages=report.stages, as_of=report.as_of)
    except FunnelkitError as exc:
        return note(f"The leak finder could not judge this segment: {exc}")
    if res.empty:
        return note("The leak finder found no transition to judge (no mature month to compare).")
    ranked = res.loc[res["rank"].notna()].sort_values("rank")
    if ranked.empty:
        why = sorted(set(res["benchmark"].dropna().astype(str))) if "benchmark" in res.columns else []
        reason = f" Benchmark: {'; '.join(why)}." if why else ""
        body = note("No transition had enough leads to be judged (at least 30 matured leads, in the recent "
                    f"month and in the months before, are needed).{reason}")
        res = res.loc[res["leads"] > 0] if "leads" in res.columns else res
        if res.empty:
            return body
    else:
        items = "".join(f"<li>{html.escape(str(t))}</li>" for t in ranked["sentence"].head(top))
        body = Section(f"<ul>{items}</ul>", "\n".join(ranked["sentence"].head(top).astype(str)))
    cols = {"transition": "Transition", "period": "Period judged", "leads": "Leads", "rate": "Conversion",
            "benchmark_rate": "Benchmark", "benchmark": "Benchmark is", "lost_per_month": "Lost per month",
            "p_adjusted": "Adjusted p", "significant": "Significant"}
    shown = res[[c for c in cols if c in res.columns]].rename(columns=cols)
    fmt = {"Conversion": "{:.1%}", "Benchmark": "{:.1%}", "Lost per month": "{:+,.1f}", "Adjusted p": "{:.3f}",
           "Leads": "{:,.0f}"}
    return body + table(shown, precision=fmt)


def pipeline(report: MonthlyReport) -> Section:
    """The pipeline at the as-of date: open leads per stage, their value and age."""
    empty = _nothing_known(report, "pipeline")
    if empty is not None:
        return empty
    try:
        snap = _pipeline.snapshot(report.log, as_of=report.as_of, stages=report.stages)
    except FunnelkitError as exc:
        return note(f"The pipeline snapshot could not be taken: {exc}")
    if snap.empty:
        return note(f"No lead was open on {report.as_of:%Y-%m-%d}.")
    res = _pipeline.stage_summary(snap)
    unknown = int(res["value_unknown"].sum()) if "value_unknown" in res.columns else 0
    known_values = report.has_amount and unknown < len(snap)
    if known_values:
        value = f", worth {res['value'].sum():,.0f}"
        if unknown:
            value += f" ({unknown:,} of them have no amount yet and are not in that value)"
    elif report.has_amount:
        value = "; none has an amount yet (the data gives amounts only to closed leads)"
    else:
        value = ""
    text = f"On {report.as_of:%Y-%m-%d}, {len(snap):,} leads were open{value}."
    cols = {"stage": "Stage", "leads": "Open leads", "value": "Value", "share_leads": "Share of leads",
            "share_value": "Share of value", "median_days_in_stage": "Median days in stage",
            "median_age_days": "Median age (days)"}
    if not known_values:
        cols = {k: v for k, v in cols.items() if k not in {"value", "share_value"}}
    shown = res[[c for c in cols if c in res.columns]].rename(columns=cols)
    fmt = {"Open leads": "{:,.0f}", "Value": "{:,.0f}", "Share of leads": "{:.1%}", "Share of value": "{:.1%}",
           "Median days in stage": "{:,.1f}", "Median age (days)": "{:,.1f}"}
    return Section(_p(text), text) + table(shown, precision=fmt)


def stale(report: MonthlyReport, *, top: int = 20) -> Section:
    """Forgotten follow-ups: open leads sitting in their stage longer than usual, most overdue first."""
    empty = _nothing_known(report, "open lead to follow up")
    if empty is not None:
        return empty
    owner = "owner" if "owner" in report.log.columns else None
    try:
        res = _pipeline.stale(report.log, as_of=report.as_of, stages=report.stages, owner=owner)
    except FunnelkitError as exc:
        return note(f"The stale list could not be made: {exc}")
    if res.empty:
        return note(f"No open lead had sat in its stage longer than its threshold on {report.as_of:%Y-%m-%d}.")
    worst = res.sort_values("days_overdue", ascending=False).head(top)
    text = (f"{len(res):,} open leads have sat in their stage longer than the threshold (how long 90% of "
            f"leads take there, learned from the data); the {len(worst)} most overdue are listed.")
    if owner:
        per = res.groupby(owner, observed=True, dropna=False).size().sort_values(ascending=False)
        text += " By owner: " + ", ".join(f"{k} {v:,}" for k, v in per.head(8).items()) + "."
    cols = [c for c in ["owner", "lead_id", "stage", "days_in_stage", "threshold_days", "days_overdue", "amount"]
            if c in worst.columns and (c != "amount" or report.has_amount)]
    names = {"owner": "Owner", "lead_id": "Lead", "stage": "Stage", "days_in_stage": "Days in stage",
             "threshold_days": "Threshold (days)", "days_overdue": "Days overdue", "amount": "Amount"}
    shown = worst[cols].rename(columns=names)
    fmt = {"Days in stage": "{:,.0f}", "Threshold (days)": "{:,.0f}", "Days overdue": "{:,.0f}", "Amount": "{:,.0f}"}
    notes = "".join(_p(n, "funnelkit-note") for n in res.attrs.get("notes", []))
    return Section(_p(text) + notes, text) + table(shown, precision=fmt)


def bottleneck(report: MonthlyReport) -> Section:
    """Time spent in each stage and the stage that makes the cycle long."""
    empty = _nothing_known(report, "time in stage to measure")
    if empty is not None:
        return empty
    try:
        res = _pipeline.bottleneck(report.log, as_of=report.as_of, stages=report.stages)
    except FunnelkitError as exc:
        return note(f"Stage durations could not be measured: {exc}")
    if res.empty:
        return note("No lead has spent measurable time in a stage yet.")
    flagged = res.loc[res["bottleneck"].fillna(False).astype(bool)]
    if len(flagged):
        b = flagged.iloc[0]
        text = (f"The bottleneck is {b['stage']}: leads spend a median of {b['median_days']:,.1f} days there "
                f"(95% CI {b['median_ci_low']:,.1f} to {b['median_ci_high']:,.1f}), the largest share of a won "
                f"lead's cycle ({b['won_share']:.0%}).")
    else:
        text = "No stage stands out as the bottleneck."
    cols = {"stage": "Stage", "median_days": "Median days", "median_ci_low": "95% CI low",
            "median_ci_high": "95% CI high", "p90_days": "90th percentile (days)", "won_mean_days": "Won leads: mean days",
            "won_share": "Share of a won cycle", "bottleneck": "Bottleneck"}
    shown = res[[c for c in cols if c in res.columns]].rename(columns=cols)
    fmt = {c: "{:,.1f}" for c in ["Median days", "95% CI low", "95% CI high", "90th percentile (days)",
                                   "Won leads: mean days"]}
    fmt["Share of a won cycle"] = "{:.0%}"
    return Section(_p(text), text) + table(shown, precision=fmt)


def forecast(report: MonthlyReport) -> Section:
    """Wins and revenue expected next month from the open pipeline, with a range, against the target."""
    missing = _needs_outcomes(report, "A forecast") or _nothing_known(report, "pipeline to forecast from")
    if missing is not None:
        return missing
    nxt = report.month + 1
    horizon = (nxt + 1).start_time.as_unit("ns") - pd.Timedelta(1, "ns") - report.as_of
    try:
        fc = _forecast.forecast(report.log, as_of=report.as_of, horizon=horizon, stages=report.stages, seed=0)
    except FunnelkitError as exc:
        return note(f"The forecast could not be made: {exc}")
    t = fc.total.iloc[0]
    level = fc.total.attrs.get("level", 0.8)
    lvl = f"{level:.0%}" if isinstance(level, float) else "80%"
    text = (f"From the {t['open_leads']:,.0f} leads open on {report.as_of:%Y-%m-%d}, "
            f"{nxt:%B %Y} should bring about {t['expected_wins']:,.1f} wins ({lvl} range "
            f"{t['wins_low']:,.0f} to {t['wins_high']:,.0f})")
    unknown = int(t.get("amount_unknown", 0) or 0)
    revenue_known = report.has_amount and unknown < t["open_leads"]
    if report.has_amount and not revenue_known:
        text += ("; revenue cannot be forecast, because none of the open leads has an amount yet (the data "
                 "gives amounts only to closed leads)")
    if revenue_known:
        text += (f" and {t['expected_revenue']:,.0f} in revenue (range {t['revenue_low']:,.0f} to "
                 f"{t['revenue_high']:,.0f})")
        if unknown:
            text += f"; {unknown:,} open leads without an amount count in the wins but not in the revenue"
        if report.revenue_target:
            target = report.revenue_target
            where = ("above the range" if target > t["revenue_high"] else
                     "below the range" if target < t["revenue_low"] else "inside the range")
            text += (f". The target of {target:,.0f} is {where}: the forecast covers "
                     f"{t['expected_revenue'] / target:.0%} of it")
    text += ". New leads entering next month are not counted: they rarely close within a month."
    cols = {"open_leads": "Open leads", "expected_wins": "Expected wins", "wins_low": "Wins low",
            "wins_high": "Wins high", "expected_revenue": "Expected revenue", "revenue_low": "Revenue low",
            "revenue_high": "Revenue high", "weighted_pipeline": "CRM weighted pipeline"}
    if not revenue_known:
        cols = {k: v for k, v in cols.items() if "revenue" not in k and "weighted" not in k}
    shown = fc.total[[c for c in cols if c in fc.total.columns]].rename(columns=cols)
    fmt = {v: "{:,.0f}" for v in cols.values()}
    fmt["Expected wins"] = "{:,.1f}"
    return Section(_p(text), text) + table(shown, precision=fmt)


def leads_needed(report: MonthlyReport) -> Section:
    """How many new leads the revenue target needs over the stage set's horizon (90 days for sales).

    The monthly target is multiplied by the months of the horizon; the
    answer comes from :func:`funnelkit.forecast.leads_needed` (the open
    pipeline's expected share first, then the new leads for the rest).
    """
    missing = _needs_outcomes(report, "Lead planning") or _nothing_known(report, "history to plan from")
    if missing is not None:
        return missing
    if not report.revenue_target:
        return note("No revenue target was given (parameter revenue_target), so there is nothing to plan for.")
    if not report.has_amount:
        return note("The data has no amounts, so a revenue target cannot be planned for.")
    days = report.stages.horizon_days or 90
    months = max(1, round(days / (365.25 / 12)))
    target = report.revenue_target * months
    try:
        res = _forecast.leads_needed(report.log, target_revenue=target, as_of=report.as_of, period=f"{days}D", by=None,
                 stages=report.stages, seed=0)
    except FunnelkitError as exc:
        return note(f"Lead planning could not be done: {exc}")
    r = res.iloc[-1]
    conf = r["confidence"]
    head = (f"Over the next {months} month{'s' if months > 1 else ''} ({days} days, the stage set's horizon) "
            f"the monthly target adds up to {target:,.0f}. The open pipeline is "
            f"expected to bring {r['pipeline_expected']:,.0f} of it (probability it reaches the target alone: "
            f"{r['pipeline_probability']:.0%}).")
    if pd.isna(r["leads_needed"]):
        tail = " The target cannot be reached with new leads in that time at the recent win rates."
    elif r["leads_needed"] <= 0:
        tail = " No new leads are needed."
    else:
        tail = (f" To reach it with {conf:.0%} confidence, about {r['leads_needed']:,.0f} new leads must enter "
                f"the funnel in that time (each wins within the period with probability "
                f"{r['win_probability']:.1%}, for {r['mean_won_amount']:,.0f} on average).")
    text = head + tail
    if r.get("open_amount", 1) == 0 and r["pipeline_expected"] == 0:
        text += " The open leads have no amounts yet, so the pipeline's share counts as zero."
    cols = {"win_probability": "P(new lead wins in period)", "mean_won_amount": "Mean won amount",
            "target": "Target", "pipeline_expected": "From open pipeline", "leads_needed": "New leads needed",
            "probability_reached": "P(target reached)", "pipeline_coverage": "Pipeline coverage"}
    shown = res[[c for c in cols if c in res.columns]].rename(columns=cols)
    fmt = {"P(new lead wins in period)": "{:.2%}", "Mean won amount": "{:,.0f}", "Target": "{:,.0f}",
           "From open pipeline": "{:,.0f}", "New leads needed": "{:,.0f}", "P(target reached)": "{:.0%}",
           "Pipeline coverage": "{:,.2f}x"}
    return Section(_p(text), text) + table(shown, precision=fmt)
