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

import pandas as pd

from ..tables import report_table
from .monthly import MonthlyReport, data_fingerprint, headline_record, headline_summary
from .notebook import HEADLINE_MIME

__all__ = [
    "Section",
    "figure",
    "funnel",
    "headline",
    "note",
    "outcomes",
    "provenance",
    "table",
    "title",
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
    styler = report_table(data, precision=dict(precision or {}))
    if caption:
        styler = styler.set_caption(html.escape(caption))
    return Section(styler.to_html(), data.to_string(index=False), data)


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
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
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
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in facts)
    body = f"<h1>{html.escape(report.heading)}</h1><table>{rows}</table>"
    return Section(body, report.heading + "\n" + "\n".join(f"{k}: {v}" for k, v in facts))


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
        if r.kind == "rate" and not math.isnan(r.n):
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
    styler = shown.style.hide(axis="index")
    body = _p(summary) + "".join(_p(n, "funnelkit-note") for n in notes) + styler.to_html()
    record = headline_record(h)
    return Section(body, summary + "\n" + shown.to_string(index=False), h,
                   {HEADLINE_MIME: json.loads(json.dumps(record))})


_FUNNEL_COLUMNS = {
    "step": "Step", "entered": "Leads", "converted": "To next step", "in_flight": "Still in flight",
    "step_conversion": "Step conversion",
    "step_ci_low": "95% CI low", "step_ci_high": "95% CI high", "overall_conversion": "From top",
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
    pct = {c: "{:.1%}" for c in ["Step conversion", "95% CI low", "95% CI high", "From top"]}
    counts = {c: "{:,.0f}" for c in ["Leads", "To next step", "Still in flight"]}
    return fig + table(shown, precision={**pct, **counts})


def outcomes(report: MonthlyReport, *, by: str | None = None) -> Section:
    """Won and lost among the leads closed in the month, with the win rate and its interval.

    Parameters
    ----------
    report : MonthlyReport
    by : str, optional
        A segment column to break the outcomes down by.
    """
    from ..funnel import outcomes as _outcomes

    ss = report.stages
    if ss.won is None and not ss.lost:
        return note(f"Stage set {ss.name!r} has no won or lost outcomes, so there are no outcomes to report.")
    closed = report.closed
    if closed.empty:
        return note(f"No lead was won or lost in {report.month:%B %Y}.")
    if by is not None and by not in closed.columns:
        return note(f"There is no column {by!r} in the data to break the outcomes down by.")
    res = _outcomes(closed, stages=ss, by=by).drop(columns=["open", "open_amount"], errors="ignore")
    if not report.has_amount:
        res = res.drop(columns=["won_amount"], errors="ignore")
    names = {"leads": "Leads closed", "won": "Won", "lost": "Lost", "win_rate": "Win rate",
             "ci_low": "95% CI low", "ci_high": "95% CI high", "won_amount": "Revenue won"}
    shown = res.rename(columns=names)
    fmt = {"Win rate": "{:.1%}", "95% CI low": "{:.1%}", "95% CI high": "{:.1%}", "Revenue won": "{:,.0f}"}
    fmt.update({c: "{:,.0f}" for c in ["Leads closed", "Won", "Lost"]})
    return table(shown, precision=fmt, caption=f"Leads whose outcome came in {report.month:%B %Y}")


def provenance(report: MonthlyReport) -> Section:
    """The footer: data file and its SHA-256, parameters, versions and run time."""
    from .. import __version__

    data = report.data
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
    rows = "".join(
        f"<tr><th style='text-align:left;vertical-align:top'>{html.escape(k)}</th>"
        f"<td><code style='word-break:break-all'>{html.escape(v)}</code></td></tr>"
        for k, v in facts
    )
    load = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes if n.strip())
    load_html = f"<p>When the data was loaded:</p><ul>{load}</ul>" if load else ""
    body = (f'<footer style="font-size:85%;color:#555"><hr><p><strong>Provenance</strong></p>'
            f"<table>{rows}</table>{load_html}</footer>")
    return Section(body, "\n".join(f"{k}: {v}" for k, v in facts))
