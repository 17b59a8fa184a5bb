"""Sections of a report: each is one call in a notebook cell.

A section function takes a :class:`~funnelkit.reports.MonthlyReport` (or a
result table or figure) and returns a :class:`Section`: readable HTML
(numbers written with the report's :class:`~funnelkit.reports.formatting.NumberFormat`,
titled figures embedded as PNG, small SVG sparklines) that Jupyter and the
HTML export display, plus the data behind it.  When a section's input is
missing (no leads entered in the month, no amounts, a stage set without
outcomes) the section says why in a sentence instead of failing.

Every value that comes from the data is escaped where it is written; no
cell shows a raw Python value (``True``, ``nan``, a repr).  Percentages in a
chart and in the table beside it are written the same way
(``NumberFormat.pct``), from the same table.

New sections follow the same pattern: compute with a package function, then
``sections.table(result, caption=...)`` (or :func:`~funnelkit.reports.formatting.html_table`
with formatted cells) and ``sections.figure(ax, caption=...)``.
"""

from __future__ import annotations

import base64
import html
import io
import math
import platform
import re
import textwrap
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import numpy as np
import pandas as pd

from .. import funnel as _funnel
from .. import pipeline as _pipeline
from .._common import singular
from ..data import AMOUNT, LEAD, TIME
from ..exceptions import FunnelkitError
from ..tables import report_table
from .cache import release_memory
from .formatting import html_table, sparkline, yes_no
from .monthly import MonthlyReport, as_of_log, data_fingerprint, headline_record, headline_summary, stalled_between
from .notebook import HEADLINE_MIME, STATUS_MIME

__all__ = [
    "Section",
    "bottleneck",
    "capture_warnings",
    "figure",
    "flow",
    "followups",
    "forecast",
    "funnel",
    "headline",
    "leads_needed",
    "leaks",
    "note",
    "outcomes",
    "pipeline",
    "provenance",
    "table",
    "title",
    "trend",
    "warning",
    "waterfall",
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

    Examples
    --------
    >>> both = Section("<p>a</p>", "a") + Section("<p>b</p>", "b")
    >>> both.html, both.text.splitlines()
    ('<p>a</p><p>b</p>', ['a', '', 'b'])
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
    return html.unescape(re.sub(r"<[^>]+>", " ", text)).strip()


def _p(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{html.escape(text)}</p>"


def _say(text: str, cls: str = "") -> Section:
    return Section(_p(text, cls), text)


def _h3(text: str) -> Section:
    return Section(f"<h3>{html.escape(text)}</h3>", text)


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


def _keep_warning(report: MonthlyReport, text: str) -> bool:
    """Add a warning's text to ``report.warnings`` unless the report already says it; True if added."""
    if text in report.warnings:
        return False
    if any(r in text for r in _REPEATS) and any("The data ends on" in w for w in report.warnings):
        return False  # the report already says so, at the top
    report.warnings.append(text)
    return True


def capture_warnings(report: MonthlyReport) -> None:
    """Show Python warnings as styled notes in the report, and list them for the index.

    Replaces :func:`warnings.showwarning` in the notebook's kernel: a warning
    raised by a section (e.g. a :class:`~funnelkit.DataWarning`) is displayed
    where it happens as :func:`warning`, without the file and line that
    Python would print, and added to ``report.warnings`` (which
    :func:`provenance` hands to the batch runner: the report's status in the
    index is then *warning*).  Each message is shown once.

    Examples
    --------
    >>> import warnings
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> before = warnings.showwarning
    >>> capture_warnings(r)
    >>> warnings.warn("the data ends early")  # shown as a styled note  # doctest: +ELLIPSIS
    Section(html='<div class="funnelkit-warning" role="note"><strong>Warning:</strong> the data ends early</div>', ...)
    >>> r.warnings[-1]
    'the data ends early'
    >>> warnings.showwarning = before
    """
    import warnings as _warnings

    from IPython.display import display

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if _keep_warning(report, text):
            display(warning(text))

    _warnings.showwarning = show
    _warnings.simplefilter("default")


def table(data: pd.DataFrame, *, caption: str = "", precision: Mapping[str, str] | None = None,
          empty: str = "No rows.") -> Section:
    """A result table, formatted for reading (see :func:`funnelkit.report_table`).

    Boolean columns are written as ✓ (or nothing), never ``True``/``False``.

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
    >>> "True" in table(pd.DataFrame({"ok": [True]})).html
    False
    """
    if data is None or data.empty:
        return note(empty)
    shown = data.copy()
    for c in shown.columns:
        if pd.api.types.is_bool_dtype(shown[c].dtype):
            shown[c] = [yes_no(v) for v in shown[c]]
    return Section('<div class="fk-scroll">' + _styled(report_table(shown, precision=dict(precision or {})), shown,
                                                        caption) + "</div>",
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


def _png(fig, dpi: int) -> bytes:
    """The figure as a PNG, reduced to a 256-colour palette (a third of the size; charts have few colours)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    raw = buf.getvalue()
    try:
        from PIL import Image

        img = Image.open(io.BytesIO(raw)).convert("RGB")
        out = io.BytesIO()
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            out, format="PNG", optimize=True)
        small = out.getvalue()
        return small if len(small) < len(raw) else raw
    except Exception:  # Pillow missing or a format it cannot read: the plain PNG
        return raw


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(obj, *, caption: str = "", dpi: int = 110, phone=None) -> Section:
    """A matplotlib figure (or Axes) embedded as a PNG; the figure is closed.

    Embedding makes the output independent of the notebook's matplotlib
    backend, and closing it prevents Jupyter from showing it twice.

    Parameters
    ----------
    obj : Figure or Axes
    caption : str
    dpi : int
    phone : Figure or Axes, optional
        A narrower drawing of the same chart, shown instead on screens up to
        600 px wide (a ``<picture>`` with a ``data:`` source: no script).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> figure(ax, caption="A plot").html.startswith("<figure")
    True
    """
    import matplotlib.pyplot as plt

    def as_fig(o):
        return o.figure if hasattr(o, "figure") and not hasattr(o, "savefig") else o

    fig = as_fig(obj)
    small = None
    try:
        png = _png(fig, dpi)
        if phone is not None:
            small = _png(as_fig(phone), dpi)
    except (ValueError, RuntimeError) as exc:  # e.g. a label from the data that mathtext cannot parse
        why = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")[:200]
        return note(f"The chart could not be drawn ({type(exc).__name__}: {why}); the table has its numbers.")
    finally:
        plt.close(fig)
        if phone is not None:
            plt.close(as_fig(phone))
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    alt = html.escape(caption or "figure", quote=True)
    img = f'<img src="{_uri(png)}" alt="{alt}" style="max-width:100%">'
    if small is not None:
        img = f'<picture><source media="(max-width: 600px)" srcset="{_uri(small)}">{img}</picture>'
    return Section(f"<figure>{img}{cap}</figure>", caption or "[figure]")


def _chart(draw, *, caption: str, figsize: tuple[float, float] = (6.4, 3.8), phone=None) -> Section:
    """A chart drawn by a plotting function on a new Axes, or a note saying why it could not be drawn.

    ``draw(ax)`` draws on the Axes it is given; ``phone()``, when given,
    returns a narrower drawing for phones.
    """
    import matplotlib.pyplot as plt

    try:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
        ax = draw(ax)
        small = phone() if phone is not None else None
    except (ValueError, KeyError, TypeError, FunnelkitError) as exc:
        plt.close("all")
        return note(f"The chart could not be drawn ({exc}); the table has its numbers.")
    return figure(ax, caption=caption, phone=small)


def _figs(*parts: Section) -> Section:
    """Figures side by side on a wide screen, one under the other on a phone."""
    out = Section("")
    for s in parts:
        out = out + s
    return Section(f'<div class="fk-figs">{out.html}</div>', out.text, out.data, out.extra)


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------
def _month(p) -> str:
    return pd.Period(p, "M").strftime("%B %Y")


def _segment_words(report: MonthlyReport) -> str:
    """``Enterprise deals`` or ``all deals``."""
    return f"{report.segment[1]} {report.noun}" if report.segment else f"all {report.noun}"


def _peer_words(report: MonthlyReport) -> str:
    from ..funnel import _plural

    return f"the other {_plural(report.segment[0])}" if report.segment else "the other segments"


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


def _horizon_words(report: MonthlyReport) -> str:
    """``90 days`` (one horizon) or ``30 to 90 days`` (per step); ``their decision`` when there is none."""
    hz = report.steps.attrs.get("horizon") or {}
    days = sorted({round(float(v)) for v in hz.values() if v is not None and np.isfinite(v)})
    if not days:
        return "until they are decided"
    if len(days) == 1:
        return f"{days[0]} day{'s' if days[0] != 1 else ''}"
    return f"{days[0]} to {days[-1]} days"


def _horizon_source(report: MonthlyReport) -> str:
    source = report.steps.attrs.get("horizon_source") or ""
    return ("the stage set's horizon" if source == "stage set" else "learned from the data" if source
            else "")


def _verdict(row) -> str:
    if row.get("too_small"):
        return "too few to judge"
    lost = row.get("lost_per_month")
    if row.get("significant"):
        return "significant loss" if lost is not None and lost > 0 else "significantly better"
    return "within chance"


def _ranked_losses(table: pd.DataFrame | None) -> pd.DataFrame:
    """Rows of a leak table that are ranked and lose conversions, significant first, biggest loss first."""
    if table is None or table.empty:
        return pd.DataFrame()
    t = table.loc[table["rank"].notna() & (table["lost_per_month"] > 0)]
    return t.sort_values(["significant", "lost_per_month"], ascending=[False, False], kind="stable")


def _p_text(p, f) -> str:
    """An adjusted p-value as the leak finder writes it (``0.0014``, ``< 0.001``), with the plan's decimal mark."""
    if p is None or not np.isfinite(p):
        return "–"
    return f"< 0{f.decimal}001" if p < 0.001 else f"{p:.2g}".replace(".", f.decimal)


def leak_sentence(row, f, noun: str) -> str:
    """A row of :func:`funnelkit.funnel.leaks` in its own words, every number written with the report's format.

    The words are those of the leak finder's ``sentence`` column (the
    lesson's and the explorer's); only the numbers are written with ``f``
    (a :class:`~funnelkit.reports.formatting.NumberFormat`), so a plan with
    a decimal comma reads ``6,9%`` here as in the tables.
    """
    original = str(row.get("sentence", ""))
    transition = str(row["transition"])
    seg = original[:original.index(transition)] if transition in original else ""
    head = f"{seg}{transition} converts {f.pct(row['rate'])}"
    if row.get("period"):
        head += f" in {row['period']}"
    if " against a target of " in original:
        head += f" against a target of {f.pct(row['benchmark_rate'])}"
    else:
        head += f" against {f.pct(row['benchmark_rate'])} {row['benchmark']}"
    if bool(row.get("too_small")):
        return head + f" (too few leads to judge: {f.count(row['leads'])})."
    lpm = row["lost_per_month"]
    if lpm is not None and np.isfinite(lpm):
        amount = f.count(abs(lpm)) if abs(lpm) >= 1 else f.number(abs(lpm), 1)
        word = singular(noun) if amount == "1" else noun
        tail = (f"about {amount} {word} lost per month" if lpm > 0
                else f"about {amount} more {word} per month than the benchmark")
    else:
        lc = row["lost_conversions"]
        tail = f"about {f.count(abs(lc))} {noun} {'lost' if lc > 0 else 'gained'} in all"
    p = row.get("p_adjusted")
    finite = p is not None and np.isfinite(p)
    ptxt = (f"p {_p_text(p, f)}" if p < 0.001 else f"p = {_p_text(p, f)}") if finite else ""
    sig = (f" (significant, adjusted {ptxt})" if bool(row.get("significant"))
           else " (not significant)" if finite else "")
    return f"{head}: {tail}{sig}."


def _plain_value(v) -> str:
    """An option's value in words: lists joined by commas, mappings as ``key → value``, never a Python repr."""
    if isinstance(v, Mapping):
        return ", ".join(f"{k} → {_plain_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple, set)):
        return ", ".join(_plain_value(x) for x in v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _leak_calls(report: MonthlyReport) -> tuple[pd.DataFrame | None, pd.DataFrame | None, list[str]]:
    """The peer and past leak tables (each None when it cannot be made) and why not."""
    problems = []
    peers = past = None
    if report.segment is not None:
        try:
            peers = report.peer_leaks
        except FunnelkitError as exc:
            problems.append(f"Against {_peer_words(report)}: the leak finder could not compare ({exc}).")
    try:
        past = report.past_leaks
    except FunnelkitError as exc:
        problems.append(f"Against its own past: the leak finder could not judge this segment ({exc}).")
    return peers, past, problems


def biggest_leaks(report: MonthlyReport) -> list[tuple[str, str, bool]]:
    """The segment's biggest leak against its peers and against its own past.

    Returns
    -------
    list of (label, sentence, significant)
        At most one row per benchmark, in the words of
        :func:`funnelkit.funnel.leaks`: the ranked transition losing the
        most conversions per month, significant ones first.
    """
    if report.log.empty:
        return []
    peers, past, _ = _leak_calls(report)
    out = []
    for label, t in ((f"Against {_peer_words(report)}", peers), ("Against its own past", past)):
        top = _ranked_losses(t)
        if len(top):
            r = top.iloc[0]
            out.append((label, leak_sentence(r, report.fmt, report.noun), bool(r["significant"])))
    return out


# ---------------------------------------------------------------------------
# the title: navigation, heading, what the page covers, the biggest leak, warnings
# ---------------------------------------------------------------------------
def _navigation(links: Mapping) -> str:
    if not links:
        return ""
    parts = []
    if links.get("index"):
        parts.append(f'<a class="fk-home" href="{html.escape(str(links["index"]), quote=True)}">All reports</a>')
    sibs = links.get("siblings") or []
    if sibs:
        items = []
        for s in sibs:
            label = html.escape(str(s.get("label", "")))
            if s.get("current"):
                items.append(f'<strong aria-current="page">{label}</strong>')
            else:
                items.append(f'<a href="{html.escape(str(s.get("href", "")), quote=True)}">{label}</a>')
        split = html.escape(str(links.get("split") or ""))
        head = f'<span class="fk-nav-label">{split}:</span> ' if split else ""
        parts.append(f'<span class="fk-sibs">{head}{" ".join(items)}</span>')
    months = []
    if links.get("previous"):
        months.append(f'<a href="{html.escape(str(links["previous"]), quote=True)}">← '
                      f'{html.escape(str(links.get("previous_label", "previous month")))}</a>')
    if links.get("next"):
        months.append(f'<a href="{html.escape(str(links["next"]), quote=True)}">'
                      f'{html.escape(str(links.get("next_label", "next month")))} →</a>')
    if months:
        parts.append(f'<span class="fk-months">{" ".join(months)}</span>')
    return f'<nav class="fk-nav" aria-label="reports">{"".join(parts)}</nav>'


def title(report: MonthlyReport) -> Section:
    """The report's heading: navigation, what it covers, its biggest leak, and its warnings.

    The biggest leak (``biggest_leaks``) is said first, in the words of
    :func:`funnelkit.funnel.leaks`, so the first screen names it.

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> title(r).text.splitlines()[0]
    'Monthly funnel report: source referral, September 2025'
    """
    with warnings.catch_warnings(record=True) as caught:
        # a warning raised while the heading is made is listed in it, with the others, and not also
        # shown above it (capture_warnings would display it as the cell's output: GTK 500 of the
        # Maven CRM showed its one warning twice, the first time above the navigation)
        warnings.simplefilter("default")
        out = _title(report)
    fresh = [str(w.message) for w in caught if _keep_warning(report, str(w.message))]
    for text in fresh:
        out = out + warning(text)
    return out


def _title(report: MonthlyReport) -> Section:
    ss = report.stages
    known = report.log["lead_id"].nunique()
    since = f" since {report.segment_start:%Y-%m-%d}" if pd.notna(report.segment_start) and known else ""
    seg = f"{report.segment[0]} = {report.segment[1]}" if report.segment else "all leads"
    stages = " › ".join(ss.steps[:-1] if ss.won is not None else ss.steps)
    if ss.won is not None:
        stages += f" → {ss.won}" + (f" / {', '.join(ss.lost)}" if ss.lost else "")
    facts = [
        ("Segment", seg),
        ("Month", f"{report.start:%d %B %Y} to {report.end:%d %B %Y}"),
        ("Data as of", f"{report.as_of:%Y-%m-%d %H:%M}"),
        ("Stages", f"{ss.name}: {stages}"),
        ("Known", f"{report.fmt.count(known)} {report.noun} in this segment{since}"),
    ]
    meta = "".join(f"<span><b>{html.escape(k)}</b> {html.escape(v)}</span>" for k, v in facts)
    body = (_navigation(report.links) + f"<h1>{html.escape(report.heading)}</h1>"
            f'<p class="fk-meta">{meta}</p>')
    text = report.heading + "\n" + "\n".join(f"{k}: {v}" for k, v in facts)
    lead = []
    found = biggest_leaks(report)
    if any(sig for *_, sig in found):  # the significant ones; else the one largest gap, labelled as such
        found = [x for x in found if x[2]]
    else:
        found = found[:1]
    for label, sentence, significant in found:
        cls = "fk-lead" if significant else "fk-lead fk-lead-weak"
        head = "Biggest leak" if significant else "Largest gap (not significant)"
        lead.append(f'<div class="{cls}"><span class="fk-lead-label">{html.escape(head)} · '
                    f"{html.escape(label.lower())}</span> {html.escape(sentence)}</div>")
        text += f"\n{head} ({label.lower()}): {sentence}"
    out = Section(body + "".join(lead), text)
    for w in report.warnings:
        out = out + warning(w)
    return out


# ---------------------------------------------------------------------------
# at a glance: headline cards with sparklines
# ---------------------------------------------------------------------------
#: Below this many leads behind a rate (or events behind a count), a change is flagged as too small to read.
SMALL_RATE, SMALL_COUNT = 30, 10


def _count_change_note(cur: float, prev: float, what: str, fmt) -> tuple[str, bool]:
    """A flag for a change of a count: too small to read, within chance, or nothing."""
    from scipy.stats import binomtest

    if any(v is None or not np.isfinite(v) for v in (cur, prev)):
        return "", False
    if max(cur, prev) < SMALL_COUNT:
        return f"small numbers: {fmt.count(cur)} vs {fmt.count(prev)} {what} is too few to read a change", True
    p = binomtest(int(cur), int(cur + prev), 0.5).pvalue if cur + prev > 0 else 1.0
    if p >= 0.05:
        return f"change within chance (p = {_p_text(p, fmt)})", False
    return "", False


def _card(label: str, value: str, *, change: str = "", direction: int = 0, detail: str = "", spark: str = "",
          flag: str = "", small: bool = False) -> str:
    arrow = "▲" if direction > 0 else "▼" if direction < 0 else ""
    cls = "up" if direction > 0 else "down" if direction < 0 else ""
    change_html = (f'<div class="fk-card-change {cls}">{arrow} {html.escape(change)}</div>' if change else "")
    flag_html = f'<div class="fk-card-flag{" fk-small" if small else ""}">{html.escape(flag)}</div>' if flag else ""
    detail_html = f'<div class="fk-card-detail">{html.escape(detail)}</div>' if detail else ""
    return (f'<div class="fk-card{" fk-card-small" if small else ""}"><div class="fk-card-label">'
            f'{html.escape(label)}</div><div class="fk-card-value">{html.escape(value)}</div>{detail_html}'
            f"{change_html}{flag_html}{spark}</div>")


def _none_marked_lost(report: MonthlyReport) -> str:
    """The flag of a month whose closed leads were all won because none was marked lost, on a
    stage set that has a lost outcome ("" otherwise): the road fines are sent for credit
    collection in yearly batches, so 11 of 12 months of 2009 read "100%".  Without a lost
    outcome the month's losses are its stalled leads (:func:`~.monthly.stalled_between`)."""
    if not report.headline.attrs.get("none_marked_lost"):
        return ""
    s = report.series.dropna(subset=["won", "lost"])
    quiet = int(((s["lost"] == 0) & (s["won"] > 0)).sum())
    batches = (f": {quiet} of the last {len(s)} months had none, so losses here are marked in batches"
               if 3 <= quiet < len(s) else f", nor in any of the last {len(s)} months" if quiet >= 3 else "")
    return f"100% because no {report.one} was marked lost this month{batches}"


def _cards(report: MonthlyReport) -> tuple[str, list[str]]:
    """The headline cards' markup and their text."""
    f = report.fmt
    h = report.headline.set_index("metric")
    s = report.series
    short_prev = pd.Period(h.attrs["previous_month"], "M").strftime("%b")
    labels = [p.strftime("%b %Y") for p in s["month"]]
    cards, text = [], []

    def row(metric):
        return h.loc[metric] if metric in h.index else None

    def spark(col, *, kind="count", reference=None, extra=None, band=None, title=""):
        vals = list(s[col]) + ([extra] if extra is not None else [])
        labs = labels + ([_month(report.month + 1)] if extra is not None else [])
        write = {"count": f.count, "money": lambda v: f.money(v, compact=True), "rate": f.rate}[kind]
        shown = [write(v) for v in vals]
        points = [f"{m}: {v}" for m, v in zip(labs, shown)]
        return sparkline(vals, labels=points, reference=reference, band=band, title=title or "last 12 months"), labs

    # leads entered
    r = row("leads_entered")
    if r is not None:
        flag, small = _count_change_note(r["value"], r["previous"], report.noun, f)
        sp, _ = spark("leads_entered", title=f"new {report.noun} per month, last 12 months")
        change = f"{f.signed(r['change'])}" + (f" ({f.signed(r['change_pct'] * 100)}%)"
                                                  if np.isfinite(r["change_pct"]) else "") + f" vs {short_prev}"
        cards.append(_card(f"New {report.noun}", f.count(r["value"]), change=change if np.isfinite(r["change"]) else "",
                           direction=int(np.sign(r["change"])) if np.isfinite(r["change"]) else 0,
                           flag=flag, small=small, spark=sp))
        text.append(f"New {report.noun}: {f.count(r['value'])} ({change}){' - ' + flag if flag else ''}")
    # won
    r = row("won")
    if r is not None:
        flag, small = _count_change_note(r["value"], r["previous"], "wins", f)
        sp, _ = spark("won", title="wins per month, last 12 months")
        change = f"{f.signed(r['change'])} vs {short_prev}" if np.isfinite(r["change"]) else ""
        cards.append(_card("Won", f.count(r["value"]), change=change,
                           direction=int(np.sign(r["change"])) if np.isfinite(r["change"]) else 0,
                           flag=flag, small=small, spark=sp))
        text.append(f"Won: {f.count(r['value'])} ({change}){' - ' + flag if flag else ''}")
    # revenue against target
    r = row("revenue")
    if r is not None and report.has_amount:
        won = h.loc["won", "value"] if "won" in h.index else math.nan
        target = report.revenue_target
        detail = (f"{f.rate(r['value'] / target, 0)} of the {f.money(target, compact=True)} target" if target
                  else "no target set")
        small = np.isfinite(won) and won < SMALL_COUNT
        flag = (f"from {f.count(won)} win{'s' if won != 1 else ''}: one {report.one} moves it a lot" if small else "")
        sp, _ = spark("revenue", kind="money", reference=target, title="revenue won per month, last 12 months"
                      + (" (dashed: target)" if target else ""))
        change = (f"{f.signed_money(r['change'], compact=True)}"
                  + (f" ({f.signed(r['change_pct'] * 100)}%)" if np.isfinite(r["change_pct"]) else "")
                  + f" vs {short_prev}") if np.isfinite(r["change"]) else ""
        cards.append(_card("Revenue won", f.money(r["value"]), detail=detail, change=change,
                           direction=int(np.sign(r["change"])) if np.isfinite(r["change"]) else 0,
                           flag=flag, small=small, spark=sp))
        text.append(f"Revenue won: {f.money(r['value'])}, {detail} ({change})")
    # win rate of leads closed
    r = row("win_rate")
    if r is not None:
        n = r["n"]
        closed_word = "closed" if report.stages.lost else "decided (won or stalled)"
        if n and np.isfinite(n):
            detail = (f"{f.count(h.loc['won', 'value'])} of {f.count(n)} {closed_word}; 95% CI "
                      f"{f.interval(r['ci_low'], r['ci_high'], fmt=f.rate)}")
            small = n < SMALL_RATE
            flag = f"small sample: {f.count(n)} {closed_word}" if small else ""
            if not small and np.isfinite(r["previous"]) and len(s) >= 2:
                from ..stats import compare_proportions

                pw, pn = s["won"].iloc[-2], s["closed"].iloc[-2]
                if np.isfinite(pn) and pn > 0:
                    p, _ = compare_proportions([h.loc["won", "value"]], [n], [pw], [pn])
                    if np.isfinite(p[0]) and p[0] >= 0.05:
                        flag = f"change within chance (p = {_p_text(p[0], f)})"
            none_lost = _none_marked_lost(report)
            if none_lost:  # 100% by construction: say so before anything else
                flag = none_lost
            value = f.rate(r["value"])
        else:
            detail, small, flag, value = f"no {report.one} {closed_word}", False, "", "–"
        sp, _ = spark("win_rate", kind="rate", title=f"win rate of leads {closed_word.split()[0]}, per month")
        change = f"{f.points(r['change'])} vs {short_prev}" if np.isfinite(r["change"]) else ""
        cards.append(_card(f"Win rate ({closed_word.split()[0]} this month)", value, detail=detail, change=change,
                           direction=int(np.sign(r["change"])) if np.isfinite(r["change"]) else 0,
                           flag=flag, small=small, spark=sp))
        text.append(f"Win rate of {report.noun} {closed_word.split()[0]}: {value} "
                    f"({'; '.join(x for x in (detail, change) if x)})"
                    + (f" - {flag}" if flag else ""))
    # forecast for next month
    fc = report.next_month
    if fc is not None and not isinstance(fc, str):
        t = fc.total.iloc[0]
        lvl = f.rate(fc.level_, 0)
        nxt = _month(report.month + 1)
        revenue = report.has_amount and int(t.get("amount_unknown", 0) or 0) < t["open_leads"]
        if revenue:
            value = f.money(t["expected_revenue"])
            detail = f"{lvl} range {f.money(t['revenue_low'], compact=True)}–{f.money(t['revenue_high'], compact=True)}"
            if report.revenue_target:
                detail += f"; target {f.money(report.revenue_target, compact=True)}"
            this = h.loc["revenue", "value"] if "revenue" in h.index else math.nan
            change = (f"{f.signed_money(t['expected_revenue'] - this, compact=True)} vs {report.month:%B}'s actual"
                      if np.isfinite(this) else "")
            direction = int(np.sign(t["expected_revenue"] - this)) if np.isfinite(this) else 0
            sp, _ = spark("revenue", kind="money", extra=t["expected_revenue"], reference=report.revenue_target,
                          band=(t["revenue_low"], t["revenue_high"]),
                          title=f"revenue won per month and the forecast for {nxt} with its {lvl} range")
            wide = t["revenue_high"] - t["revenue_low"] > t["expected_revenue"]
        else:
            value = f"{f.number(t['expected_wins'], 1)} wins"
            detail = f"{lvl} range {f.count(t['wins_low'])}–{f.count(t['wins_high'])}"
            this = h.loc["won", "value"] if "won" in h.index else math.nan
            change = (f"{f.signed(t['expected_wins'] - this, 1)} vs {report.month:%B}'s actual"
                      if np.isfinite(this) else "")
            direction = int(np.sign(t["expected_wins"] - this)) if np.isfinite(this) else 0
            sp, _ = spark("won", extra=t["expected_wins"], band=(t["wins_low"], t["wins_high"]),
                          title=f"wins per month and the forecast for {nxt} with its {lvl} range")
            wide = t["wins_high"] - t["wins_low"] > t["expected_wins"]
        small = t["expected_wins"] < SMALL_COUNT
        flag = (f"about {f.number(t['expected_wins'], 1)} wins expected: the range is wide" if small or wide
                else "")
        cards.append(_card(f"Forecast, {nxt}", value, detail=detail, change=change, direction=direction,
                           flag=flag, small=small, spark=sp))
        text.append(f"Forecast {nxt}: {value} ({detail}; {change}){' - ' + flag if flag else ''}")
    return f'<div class="fk-cards">{"".join(cards)}</div>', text


def headline(report: MonthlyReport) -> Section:
    """At a glance: headline cards with 12-month sparklines, the month in sentences, the numbers behind.

    Cards: new leads, won, revenue against the target, the win rate of the
    leads closed in the month, and next month's forecast with its range;
    each with its change from the previous month (observed at the same age)
    and a flag when the sample is too small to read a change (fewer than
    ``SMALL_COUNT`` events, ``SMALL_RATE`` leads behind a rate) or
    the change is within chance.  The sparklines are the same numbers for
    each of the last 12 months (:func:`~funnelkit.reports.monthly.monthly_series`).

    The output also carries the numbers as JSON (mime type
    :data:`~funnelkit.reports.HEADLINE_MIME`), which the batch runner reads
    back from the executed notebook for the index.

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> headline(r).text.splitlines()[0]
    'New leads: 68 (−11 (−14%) vs Aug) - change within chance (p = 0.41)'
    """
    f = report.fmt
    h = report.headline
    prev_name = _month(h.attrs["previous_month"])
    summary = headline_summary(h, fmt=f, noun=report.noun)
    notes = []
    if "revenue" in set(h["metric"]) and not report.has_amount:
        if AMOUNT not in report.log.columns:
            notes.append("The data has no amount column, so revenue cannot be computed.")
        elif len(report.log):  # with no lead yet, the sections say so themselves
            notes.append(f"No {report.one} of this report has an amount, so revenue cannot be computed.")
    if "won" not in set(h["metric"]):
        notes.append(f"Stage set {report.stages.name!r} has no won outcome: wins and revenue are not "
                     "defined; the funnel's last stage is its goal.")
    elif report.goal_won:
        notes.append(f"Stage set {report.stages.name!r} has no won outcome: its last stage, "
                     f"{report.stages.won}, is its goal, so a {report.one} reaching it counts as won here"
                     + (" and its amount there as revenue." if report.has_amount else "."))
    cards, card_text = _cards(report) if not report.log.empty else ("", [])
    rows = []
    for r in h.itertuples(index=False):
        write = {"rate": f.rate, "money": f.money}.get(r.kind, f.count)
        value = write(r.value)
        label = _in_nouns(str(r.label), report)
        if r.metric.startswith("step:"):
            label = f"{r.label} (latest judged month)"
            value = (f"{f.rate(r.value)} of {f.count(r.n)} in {_month(r.period)}" if r.period
                     else "not judged yet (no month has matured)")
            prev = f"{f.rate(r.previous)} in {_month(r.previous_period)}" if r.previous_period else "–"
        else:
            if r.kind == "rate" and r.metric == "win_rate":
                value = (f"{value} of {f.count(r.n)} (95% CI {f.interval(r.ci_low, r.ci_high)})" if r.n
                         else "– (none closed)")
            prev = write(r.previous)
        change = (f.points(r.change) if r.kind == "rate" else f.signed_money(r.change) if r.kind == "money"
                  else f.signed(r.change))
        if r.kind != "rate" and np.isfinite(r.change_pct):
            change += f" ({f.signed(r.change_pct * 100)}%)"
        rows.append([label, value, prev, change if np.isfinite(r.change) else "–"])
    shown = html_table(rows, ["Measure", f"{report.month:%B %Y}", prev_name, "Change"], numeric=[1, 2, 3])
    details = (f"<details><summary>The numbers behind the cards</summary>{shown}"
               f'<p class="funnelkit-note">Sparklines: the same measure for each of the last 12 months, as known at '
               "the end of that month. The change compares the previous month at the same age. Step rows: the "
               "latest month whose leads at the step have all had their time to move on (see the flow below)."
               "</p></details>")
    body = (cards + _p(summary) + "".join(_p(n, "funnelkit-note") for n in notes) + details)
    record = headline_record(h)
    import json

    return Section(body, "\n".join([*card_text, summary, *notes]), h,
                   {HEADLINE_MIME: json.loads(json.dumps(record))})


# ---------------------------------------------------------------------------
# leaks, the month's flow, the funnel and its trend
# ---------------------------------------------------------------------------
def _leak_table(t: pd.DataFrame, report: MonthlyReport, *, past: bool) -> str:
    f = report.fmt
    order = {name: k for k, name in enumerate(report.stages.steps)}
    rows = []
    for r in sorted(t.to_dict("records"), key=lambda r: order.get(str(r["step"]), len(order))):
        rate = f.pct(r["rate"]) + (f" in {r['period']}" if past and r.get("period") else "")
        lost = r["lost_per_month"]
        lost_text = "–" if lost is None or not np.isfinite(lost) else (
            f"{f.number(lost, 1)} lost" if lost > 0 else f"{f.number(-lost, 1)} gained")
        p = r.get("p_adjusted")
        p_text = _p_text(p, f)
        rows.append([r["transition"], rate, f.count(r["leads"]), f.pct(r["benchmark_rate"]),
                     f.count(r.get("benchmark_leads")) if r.get("benchmark_leads") is not None else "–",
                     lost_text, p_text, _verdict(r)])
    bench = "Earlier months" if past else _peer_words(report).replace("the other ", "Other ").capitalize()
    cols = ["Step", "Rate", report.noun.capitalize(), bench, f"{report.noun.capitalize()} there",
            "Lost per month", "Adjusted p", "Verdict"]
    return html_table(rows, cols, numeric=[1, 2, 3, 4, 5, 6])


def leaks(report: MonthlyReport, *, top: int = 3) -> Section:
    """Where the segment leaks: against the other segments of its split, and against its own past.

    Both use :func:`funnelkit.funnel.leaks` (the estimator of the lesson and
    the explorer): ``funnel.leaks(every lead, by=<split column>)`` and the
    segment's rows (:func:`~funnelkit.reports.monthly.segment_leaks`), and
    ``funnel.leaks(segment, benchmark="previous")``.  Sentences first (the
    transitions that lose conversions, significant ones first), then a table
    per benchmark.

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> leaks(r).text.splitlines()[2]
    'No step of referral leads converts worse than the other sources.'
    """
    empty = _nothing_known(report, "leak to find")
    if empty is not None:
        return empty
    peers, past, problems = _leak_calls(report)
    out = Section("")
    for label, t, is_past in ((f"Against {_peer_words(report)}", peers, False), ("Against its own past", past, True)):
        if t is None or (is_past is False and report.segment is None):
            continue
        out = out + _h3(label)
        if t.empty:
            out = out + note("The leak finder found no transition to judge.")
            continue
        losses = _ranked_losses(t).head(top)
        if len(losses):
            said = [leak_sentence(r, report.fmt, report.noun) for _, r in losses.iterrows()]
            items = "".join(f"<li>{html.escape(x)}</li>" for x in said)
            out = out + Section(f'<ul class="fk-sentences">{items}</ul>', "\n".join(said))
        elif t["rank"].notna().any():
            what = _peer_words(report) if not is_past else "its own earlier months"
            out = out + _say(f"No step of {_segment_words(report)} converts worse than {what}.")
        else:
            why = sorted(set(t["benchmark"].dropna().astype(str))) if "benchmark" in t.columns else []
            reason = f" ({'; '.join(why)})" if why else ""
            out = out + note(f"No step had enough {report.noun} to be judged: at least 30 matured {report.noun} "
                             f"are needed on each side{reason}.")
        if is_past:
            out = out + Section(_p("Each step's conversion in its latest month whose leads have all had their time "
                                   "to move on, against the months before it.", "funnelkit-note"))
        out = out + Section(_leak_table(t, report, past=is_past), "", t)
    if report.segment is not None and peers is None and not problems:
        out = out + note(f"The comparison with {_peer_words(report)} needs every lead of the split; run the "
                         "report with funnelkit report (or with the data file) to see it.")
    for text in problems:
        out = out + note(text)
    return out


def flow(report: MonthlyReport) -> Section:
    """The month's flow through each step, beside the rates judged so far.

    Rates are over matured leads only, so the leads that reached a step this
    month are counted here but judged later; each rate says which leads it
    is judged on (:func:`~funnelkit.reports.monthly.step_rates`).

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> flow(r).text.startswith("In September 2025, 68 leads reached qualification")
    True
    """
    empty = _nothing_known(report, "flow to show")
    if empty is not None:
        return empty
    f = report.fmt
    s = report.steps
    if s.empty:
        return note("The stage set has a single step: there is no flow between steps.")
    month = f"{report.month:%B}"
    rows, judged_months = [], set()
    for r in s.itertuples(index=False):
        judged = (f"{f.pct(r.rate)} of {f.count(r.judged_leads)} ({f.interval(r.ci_low, r.ci_high)})"
                  if pd.notna(r.judged_month) else "not judged yet")
        if pd.notna(r.judged_month):
            judged_months.add(str(r.judged_month))
        allr = (f"{f.pct(r.all_rate)} of {f.count(r.all_matured)} ({f.interval(r.all_ci_low, r.all_ci_high)})"
                if r.all_matured else "not judged yet")
        rows.append([f"{r.step} → {r.next_step}", f.count(r.entered), f.count(r.moved_on), f.count(r.dropped),
                     f.count(r.in_flight), _month(r.judged_month) if pd.notna(r.judged_month) else "–", judged, allr])
    busy = s.loc[s["entered"] > 0]
    if len(busy):
        first = busy.iloc[0]
        text = (f"In {report.month:%B %Y}, {f.count(first['entered'])} {report.noun} reached {first['step']}; by "
                f"{report.as_of:%Y-%m-%d}, {f.count(first['moved_on'])} of them had moved on to {first['next_step']}, "
                f"{f.count(first['dropped'])} had dropped out and {f.count(first['in_flight'])} are still in flight. ")
    else:
        text = f"No {report.one} reached a step at a known time in {report.month:%B %Y}. "
    source = f" ({_horizon_source(report)})" if _horizon_source(report) else ""
    text += (f"A rate is judged only on {report.noun} that have had {_horizon_words(report)}{source} to move on, "
             f"so this month's {report.noun} are counted but not judged yet: beside them are each step's rate in "
             "its latest judged month and over every matured one.")
    cols = ["Step", f"Reached it in {month}", "Moved on", "Dropped", "In flight", "Latest judged month",
            "Rate then (95% CI)", f"All matured {report.noun} (95% CI)"]
    return _say(text) + Section(html_table(rows, cols, numeric=[1, 2, 3, 4, 6, 7]), "", s)


def _phone_funnel(f: pd.DataFrame, title: str, numbers=None):
    """The funnel chart drawn for a phone: narrow, its labels on two lines, the legend in one column.

    Same :func:`funnelkit.plots.funnel_chart` and the same texts (so the same
    percentages), laid out to be read at 390 px.
    """
    import matplotlib.pyplot as plt

    from ..plots import funnel_chart

    fig = plt.figure(figsize=(4.3, 4.6))
    ax = fig.add_axes((0.22, 0.2, 0.3, 0.7))
    funnel_chart(f, title=title, numbers=numbers, ax=ax)
    ax.set_xlim(0, float(f["entered"].iloc[0]) * 1.02)  # the labels run on beyond the bars
    for t in ax.texts:
        text = t.get_text()
        if "  ·  " in text:
            parts = text.split("  ·  ")
            t.set_text("\n".join([" · ".join(parts[:2])] + ([" · ".join(parts[2:])] if len(parts) > 2 else [])))
            t.set_fontsize(10.5)
        elif hasattr(t, "xyann"):  # the footnote under the legend
            t.set_text(text.replace("; ", ";\n").replace(" run out, ", " run out,\n"))
            t.xyann = (0, -50)
            t.set_fontsize(9)
        else:
            t.set_fontsize(10.5)
    if ax.get_legend() is not None:
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(0, 0), ncol=1, fontsize=9.5, frameon=False)
    ax.tick_params(axis="y", labelsize=11)
    ax.title.set_fontsize(11.5)
    ax.title.set_horizontalalignment("left")
    ax.title.set_x(0)
    return ax


_FUNNEL_COLUMNS = ["Step", "Reached", "Moved on", "Dropped", "In flight", "Step conversion", "95% CI",
                   "From top"]


def funnel_table(report: MonthlyReport, f: pd.DataFrame | None = None) -> tuple[list[list[str]], list[str]]:
    """The funnel chart's table: the rows of :func:`funnelkit.funnel.conversion`, formatted as the chart is."""
    fm = report.fmt
    f = report.funnel_all if f is None else f
    rows = []
    for i in range(len(f)):
        r = f.iloc[i]
        last = i == len(f) - 1
        step = "–" if last or pd.isna(r["step_conversion"]) else fm.pct(r["step_conversion"])
        ci = "" if last or pd.isna(r["step_ci_low"]) else fm.interval(r["step_ci_low"], r["step_ci_high"])
        rows.append([str(r["step"]), fm.count(r["entered"]), "–" if last else fm.count(r["converted"]),
                     "–" if last else fm.count(r["dropped"]), "–" if last else fm.count(r["in_flight"]), step, ci,
                     fm.pct(r["overall_conversion"])])
    return rows, list(_FUNNEL_COLUMNS)


def funnel(report: MonthlyReport) -> Section:
    """The funnel of every lead known at the as-of date: chart and table with the same percentages.

    The chart is :func:`funnelkit.plots.funnel_chart` of
    :func:`funnelkit.funnel.conversion` over the segment's leads as of the
    report date: bar widths are the leads that reached each step; the step
    conversion (over matured leads, with its interval) and the share of the
    top are the table's, written the same way.

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> funnel(r).text.startswith("Over every lead known on 2025-09-30 since 2024-07-01 (907 leads)")
    True
    """
    from ..plots import funnel_chart

    f = report.funnel_all if len(report.log) else pd.DataFrame()
    if f.empty or int(f["entered"].iloc[0]) == 0:
        return note(f"No lead entered the funnel by {report.as_of:%Y-%m-%d}, so there is no funnel to draw.")
    since = f" since {report.segment_start:%Y-%m-%d}" if pd.notna(report.segment_start) else ""
    who = _segment_words(report)
    heading = f"{who.capitalize()}{since}, as of {report.as_of:%Y-%m-%d}"
    chart = _chart(lambda ax: funnel_chart(f, title=heading, numbers=report.fmt, ax=ax), figsize=(7.2, 3.6),
                   phone=lambda: _phone_funnel(f, heading.replace(", as of", ",\nas of"), numbers=report.fmt),
                   caption=f"Every {report.one}{' of ' + str(report.segment[1]) if report.segment else ''}{since}: "
                           "how many reached "
                           "each step (lighter: still in flight), the step conversion over matured "
                           f"{report.noun} with its 95% interval, and the share of the top.")
    rows, cols = funnel_table(report, f)
    text = (f"Over every {report.one} known on {report.as_of:%Y-%m-%d}{since} ({report.fmt.count(f['entered'].iloc[0])} "
            f"{report.noun}), {report.fmt.pct(f['overall_conversion'].iloc[-1])} of those that entered were "
            f"{'won' if report.stages.won is not None else 'converted'} (judged on matured {report.noun}).")
    return _say(text) + chart + Section(html_table(rows, cols, numeric=[1, 2, 3, 4, 5, 6, 7]), "", f)


def trend(report: MonthlyReport, *, months: int = 15) -> Section:
    """Each step's conversion by the month leads entered the step (:func:`funnelkit.plots.trend_chart`).

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> '<source media="(max-width: 600px)"' in trend(r).html  # a drawing for phones too
    True
    """
    from ..plots import trend_chart

    empty = _nothing_known(report, "trend to draw")
    if empty is not None:
        return empty
    try:
        tr = _funnel.trend(report.log, freq="MS", stages=report.stages, as_of=report.as_of)
    except FunnelkitError as exc:
        return note(f"The conversion trend could not be computed: {exc}")
    first = (report.month - (months - 1)).start_time
    if getattr(report.as_of, "tz", None) is not None:  # a log in a time zone: its local months
        first = first.tz_localize(report.as_of.tz)
    tr = tr.loc[tr["period"].notna() & (tr["period"] >= first)]
    if tr.empty:
        return note("No lead reached a step in the last months: there is no trend to draw.")
    def draw(ax):
        import matplotlib.dates as mdates

        trend_chart(tr, title=f"Step conversion by month entered, {_segment_words(report)}", numbers=report.fmt,
                    ax=ax)
        n_months = tr["period"].dt.strftime("%Y-%m").nunique()
        ax.xaxis.set_major_locator(mdates.MonthLocator(interval=max(1, math.ceil(n_months / 8))))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
        return ax

    chart = _chart(draw, figsize=(7.2, 4.0),
                   caption="Each step's conversion over matured leads, by the month leads entered the step, "
                           "with 95% intervals; hollow points are months whose leads have not all had their time "
                           "to move on (provisional).",
                   phone=lambda: _phone_trend(tr, f"Step conversion by month entered,\n{_segment_words(report)}",
                                              numbers=report.fmt))
    return chart


_PHONE_LABEL = 22  # characters per line of an axis label on a phone chart


def _phone_drawing(draw, *, n_rows: int):
    """A chart drawn again for a phone: 4.3 inches wide, taller per row, its text no smaller than
    9.5 points (the desktop drawing's labels shrink to about 7 points at 390 px)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4.3, 2.6 + 0.55 * n_rows))
    ax = fig.add_subplot()
    draw(ax)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    if any(len(lab) > _PHONE_LABEL for lab in labels):  # long stage names on a phone: wrapped, not cut
        ax.set_yticks(ax.get_yticks(), [textwrap.fill(lab, _PHONE_LABEL) for lab in labels])
    for t in [*ax.texts, *ax.get_xticklabels(), *ax.get_yticklabels(), ax.xaxis.label, ax.yaxis.label]:
        t.set_fontsize(max(t.get_fontsize(), 9.5))
    ax.title.set_fontsize(11)
    legend = ax.get_legend()
    if legend is not None:
        for t in [*legend.get_texts(), legend.get_title()]:
            t.set_fontsize(max(t.get_fontsize(), 9.5))
    with warnings.catch_warnings():  # a layout that cannot fit is the chart's problem, not a warning on the page
        warnings.filterwarnings("ignore", message="Tight layout not applied", category=UserWarning)
        fig.tight_layout()
    return fig


def _phone_trend(tr: pd.DataFrame, title: str, numbers=None, months: int = 6):
    """The trend chart drawn for a phone: the last ``months`` months, one tick per month, the
    legend in one column under it, larger text (the same :func:`funnelkit.plots.trend_chart`)."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from ..plots import trend_chart

    periods = tr["period"].drop_duplicates().sort_values()
    recent = tr.loc[tr["period"].isin(periods.iloc[-months:])]
    n_lines = recent["transition"].nunique() + 1
    fig = plt.figure(figsize=(4.3, 4.4 + 0.28 * n_lines))
    ax = fig.add_axes((0.17, 0.16 + 0.06 * n_lines, 0.78, 0.62 - 0.02 * n_lines))
    trend_chart(recent, title=f"{title}\n(recent months)", numbers=numbers, ax=ax)
    ax.xaxis.set_major_locator(mdates.MonthLocator())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b\n%Y"))
    ax.set_xlabel("")
    ax.title.set_fontsize(11)
    ax.yaxis.label.set_fontsize(10)
    ax.tick_params(labelsize=10)
    legend = ax.get_legend()
    if legend is not None:
        handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
        ax.legend(handles, labels, fontsize=9.5, frameon=False, loc="upper left", bbox_to_anchor=(-0.15, -0.18),
                  ncols=1)
    return fig


def outcomes(report: MonthlyReport, *, by: str | None = None) -> Section:
    """Won and lost among the leads closed in the month, and the three win rates, each labelled.

    * closed in the month: won / (won + lost) of the leads whose outcome came
      in the month (every one is decided), with a Wilson interval - the
      headline's win rate;
    * the funnel's estimate over matured leads of every month
      (:func:`funnelkit.funnel.outcomes`' ``win_rate``): the chance a new
      lead is eventually won;
    * decided leads of every month: won / (won + lost + stalled)
      (``decided_win_rate``).

    Parameters
    ----------
    report : MonthlyReport
    by : str, optional
        A segment column to break the month's outcomes down by.

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> outcomes(r).text.splitlines()[2]
    'Closed in September 2025: 38.1%'
    """
    from ..stats import proportion_ci

    f = report.fmt
    ss = report.stages
    if ss.won is None and not ss.lost:
        return note(f"Stage set {ss.name!r} has no won or lost outcomes, so there are no outcomes to report.")
    if by is not None and by not in report.log.columns:
        return note(f"There is no column {by!r} in the data to break the outcomes down by.")
    closed = report.closed
    no_lost = not ss.lost  # nothing is marked lost: the leads that stalled in the month are its losses
    stalled = (stalled_between(as_of_log(report.log, report.as_of), report.start, report.end, stages=ss,
                               as_of=report.as_of, by=by) if no_lost else None)
    if closed.empty and (stalled is None or stalled.empty):
        return note(f"No lead was won or {'stalled' if no_lost else 'lost'} in {report.month:%B %Y}.")
    res = _funnel.outcomes(closed if not closed.empty else report.log.iloc[:0], stages=ss, by=by, stale_after=None)
    if no_lost:
        per = stalled.groupby(by, observed=True, dropna=False).size() if by else pd.Series([len(stalled)])
        if by:
            keys = pd.Index(res[by]).append(pd.Index(per.index)).unique()
            res = res.set_index(by).reindex(keys).reset_index()
            res["won"] = res["won"].fillna(0)
            if "won_amount" in res.columns:
                res["won_amount"] = res["won_amount"].fillna(0.0)
            res["lost"] = per.reindex(res[by]).fillna(0).to_numpy()
        else:
            if res.empty:
                res = pd.DataFrame({"won": [0], "won_amount": [0.0]})
            res["lost"] = float(len(stalled))
    decided = (res["won"] + res["lost"]).to_numpy(dtype=float)
    low, high = proportion_ci(res["won"].to_numpy(dtype=float), decided)
    rows = []
    for i, r in res.iterrows():
        n = decided[i]
        row = ([str(r[by])] if by else []) + [f.count(n), f.count(r["won"]), f.count(r["lost"]),
                                             f.rate(r["won"] / n) if n else "–",
                                             f.interval(low[i], high[i], fmt=f.rate)]
        if report.has_amount:
            row.append(f.money(r["won_amount"]))
        rows.append(row)
    cols = ([by] if by else []) + [f"{report.noun.capitalize()} {'decided' if no_lost else 'closed'}", "Won",
                                   "Stalled" if no_lost else "Lost", "Win rate", "95% CI"] + (
        ["Revenue won"] if report.has_amount else [])
    num = list(range(1 if by else 0, len(cols)))
    caption = (f"{report.noun.capitalize()} won or stalled in {report.month:%B %Y} (stage set {ss.name!r} has no lost "
               "outcome: a lead that has not moved on within the horizon of its step is its loss)" if no_lost else
               f"{report.noun.capitalize()} whose outcome came in {report.month:%B %Y}")
    out = Section(html_table(rows, cols, numeric=num, caption=caption), "", res)
    try:
        every = _funnel.outcomes(report.log, stages=ss, as_of=report.as_of).iloc[0]
    except FunnelkitError:
        return out
    n = decided.sum()
    won = res["won"].sum()
    lo, hi = proportion_ci(won, n)
    dec = every["won"] + every["lost"] + every["stalled"]
    rates = [
        [f"{'Decided' if no_lost else 'Closed'} in {report.month:%B %Y}", f.rate(won / n) if n else "–",
         f.interval(lo, hi, fmt=f.rate),
         f"won / (won + stalled) of the {f.count(n)} {report.noun} won or stalled in the month" if no_lost else
         f"won / (won + lost) of the {f.count(n)} {report.noun} whose outcome came in the month"
         + (f" ({none_lost})" if (none_lost := _none_marked_lost(report)) else "")],
        [f"Funnel estimate, all matured {report.noun}", f.rate(every["win_rate"]),
         f.interval(every["ci_low"], every["ci_high"], fmt=f.rate),
         f"the chance a new {report.one} is eventually won: the product of the step conversions over matured "
         f"{report.noun} of every month"],
        [f"Decided {report.noun}, all months", f.rate(every["decided_win_rate"]), "",
         f"won / (won + lost + stalled) = {f.count(every['won'])} / {f.count(dec)}; stalled: open past the "
         "horizon"],
    ]
    return out + _h3("Three win rates, three questions") + Section(
        html_table(rates, ["Win rate", "Value", "95% CI", "What it counts"], numeric=[1, 2]),
        "\n".join(f"{a}: {b}" for a, b, *_ in rates))


# ---------------------------------------------------------------------------
# the pipeline: by stage, the month's waterfall, follow-ups
# ---------------------------------------------------------------------------
def _dead_mask(report: MonthlyReport, snap: pd.DataFrame) -> np.ndarray:
    """Open leads past the horizon of their stage: the funnel's *stalled* (long-dead) leads."""
    hz = report.funnel_all.attrs.get("horizon") or {}
    limit = snap["stage"].astype(str).map({str(k): float(v) for k, v in hz.items() if v is not None})
    return (snap["days_in_stage"] > limit.astype(float)).fillna(False).to_numpy(dtype=bool)


def _snapshot(report: MonthlyReport) -> pd.DataFrame:
    cache = report.__dict__.setdefault("_sections_cache", {})
    if "snapshot" not in cache:
        cache["snapshot"] = _pipeline.snapshot(report.log, as_of=report.as_of, stages=report.stages)
    return cache["snapshot"]


def pipeline(report: MonthlyReport) -> Section:
    """The pipeline at the as-of date by stage (count and value), with and without long-dead leads.

    Long-dead leads are open leads that have sat in their stage longer than
    the funnel's horizon for it (the funnel counts them as *stalled*:
    :func:`funnelkit.funnel.outcomes`); the pipeline's value is shown with
    and without them.

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> pipeline(r).text.startswith("On 2025-09-30, 156 leads were open, worth 3,138,380.")
    True
    """
    from ..plots import pipeline_board

    empty = _nothing_known(report, "pipeline")
    if empty is not None:
        return empty
    f = report.fmt
    try:
        snap = _snapshot(report)
    except FunnelkitError as exc:
        return note(f"The pipeline snapshot could not be taken: {exc}")
    if snap.empty:
        return note(f"No lead was open on {report.as_of:%Y-%m-%d}.")
    dead = _dead_mask(report, snap)
    amounts = snap["amount"] if "amount" in snap.columns else pd.Series(np.nan, index=snap.index)
    unknown = int(amounts.isna().sum())
    known_values = report.has_amount and unknown < len(snap)
    total, dead_value = float(amounts.fillna(0).sum()), float(amounts[dead].fillna(0).sum())
    value = f", worth {f.money(total)}" if known_values else ""
    text = f"On {report.as_of:%Y-%m-%d}, {f.count(len(snap))} {report.noun} were open{value}."
    if dead.any():
        text += (f" {f.count(dead.sum())} of them have sat in their stage longer than the horizon "
                 f"({_horizon_words(report)}; long-dead: the funnel counts them as stalled)"
                 + (f", worth {f.money(dead_value)}" if known_values else "")
                 + f"; without them the live pipeline is {f.count(len(snap) - dead.sum())} {report.noun}"
                 + (f" worth {f.money(total - dead_value)}" if known_values else "") + ".")
    if known_values and unknown:
        text += f" {f.count(unknown)} open {report.noun} have no amount yet and count as 0."
    elif report.has_amount and not known_values:
        text += " None has an amount yet (the data gives amounts only to closed leads)."
    hz = report.funnel_all.attrs.get("horizon") or {}
    top = max([float(v) for v in hz.values() if v is not None and np.isfinite(v)] or [90.0])
    bins = tuple(b for b in (7, 30) if b < top) + (top,)
    money = partial(f.money, compact=True)
    n_stages = snap["stage"].astype(str).nunique()

    def board(metric: str, title: str):
        return lambda ax: pipeline_board(snap, metric=metric, bins=bins, money=money, noun=report.noun,
                                         numbers=f, title=title, ax=ax)

    count_title = f"Open {report.noun} by stage and days in stage"
    charts = [_chart(board("count", count_title), figsize=(5.6, 3.4),
                     caption=f"Open {report.noun} per stage, coloured by days in their stage; the last band is past "
                             "the horizon (long-dead).",
                     phone=lambda: _phone_drawing(board("count", count_title.replace(" by stage", "\nby stage")),
                                                  n_rows=n_stages))]
    if known_values:
        charts.append(_chart(board("value", "Open pipeline value by stage"), figsize=(5.6, 3.4),
                             caption="The same, by value.",
                             phone=lambda: _phone_drawing(board("value", "Open pipeline value\nby stage"),
                                                          n_rows=n_stages)))
    rows = []
    summary = _pipeline.stage_summary(snap)
    med = summary.set_index(summary["stage"].astype(str))["median_days_in_stage"]
    for stage in dict.fromkeys(snap["stage"].astype(str)):
        m = (snap["stage"].astype(str) == stage).to_numpy()
        d = m & dead
        row = [stage, f.count(m.sum()), f.count(d.sum()), f.count((m & ~dead).sum())]
        if known_values:
            row += [f.money(amounts[m].fillna(0).sum()), f.money(amounts[d].fillna(0).sum()),
                    f.money(amounts[m & ~dead].fillna(0).sum())]
        row.append(f.days(med.get(stage, math.nan)))
        rows.append(row)
    row = ["All stages", f.count(len(snap)), f.count(dead.sum()), f.count(len(snap) - dead.sum())]
    if known_values:
        row += [f.money(total), f.money(dead_value), f.money(total - dead_value)]
    row.append(f.days(snap["days_in_stage"].median()))
    rows.append(row)
    cols = ["Stage", "Open", "Long-dead", "Live"] + (["Value", "Long-dead value", "Live value"] if known_values
                                                      else []) + ["Median days in stage"]
    body = html_table(rows, cols, numeric=list(range(1, len(cols))), row_classes=[""] * (len(rows) - 1) + ["fk-total"])
    return _say(text) + _figs(*charts) + Section(body, "", snap)


def waterfall(report: MonthlyReport) -> Section:
    """The month's pipeline waterfall: open leads (and value) at the start, in, won, lost, at the end.

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> waterfall(r).text.startswith("Open leads went from 151 on 2025-08-31 to 156 on 2025-09-30")
    True
    """
    from ..plots import waterfall_chart

    empty = _nothing_known(report, "pipeline movement")
    if empty is not None:
        return empty
    f = report.fmt
    start = report.start - pd.Timedelta(1, "ns")
    try:
        mv = _pipeline.movement(report.log, start=start, end=report.as_of, stages=report.stages)
    except FunnelkitError as exc:
        return note(f"The month's movement could not be measured: {exc}")
    n = mv.set_index(mv["movement"].astype(str))
    text = (f"Open {report.noun} went from {f.count(n.loc['start', 'leads'])} on {start:%Y-%m-%d} to "
            f"{f.count(n.loc['end', 'leads'])} on {report.as_of:%Y-%m-%d}: {f.count(n.loc['entered', 'leads'])} "
            f"entered, {f.count(n.loc['won', 'leads'])} were won and {f.count(n.loc['lost', 'leads'])} lost; "
            f"of those open at the start, {f.count(n.loc['advanced', 'leads'])} moved on a stage.")
    text += _reopened_words(report, n) + _stalled_words(report)
    money = partial(f.money, compact=True)
    charts = [_chart(lambda ax: waterfall_chart(mv, metric="leads", noun=report.noun, numbers=f,
                                                title=f"Open {report.noun}, {report.month:%B %Y}", ax=ax),
                     figsize=(5.2, 3.4),
                     caption=f"Open {report.noun} at the start of the month, in and out, at the end.")]
    open_values = report.has_amount and (n.loc["start", "value"] != 0 or n.loc["end", "value"] != 0)
    if open_values:
        charts.append(_chart(lambda ax: waterfall_chart(mv, metric="value", money=money, numbers=f,
                                                        title=f"Open pipeline value, {report.month:%B %Y}", ax=ax),
                             figsize=(5.2, 3.4),
                             caption=f"The same in value (value change: amounts edited on open {report.noun})."))
    out = _say(text) + _figs(*charts)
    if report.has_amount and not open_values:
        out = out + note("Open leads have no amounts in the data (it gives amounts only to closed leads), so the "
                         "pipeline's value cannot be followed through the month.")
    return out


def _reopened_words(report: MonthlyReport, n: pd.DataFrame) -> str:
    """Why the waterfall's won and lost can be fewer than the outcomes' (leads closed before, decided again)."""
    h = report.headline.set_index("metric")
    f = report.fmt
    parts = []
    for metric, verb in (("won", "won"), ("lost", "lost")):
        if metric not in h.index or not np.isfinite(h.loc[metric, "value"]):
            continue
        if metric == "lost" and not report.stages.lost:  # the headline's losses are stalled leads, still open
            continue
        extra = int(round(h.loc[metric, "value"] - n.loc[metric, "leads"]))
        if extra > 0:
            parts.append(f"{f.count(extra)} of the {f.count(h.loc[metric, 'value'])} {report.noun} {verb} in the month")
    if not parts:
        return ""
    return (f" The outcomes count more: {' and '.join(parts)} had been closed before the month began and were "
            f"decided again (e.g. resubmitted after a rejection), so they were not in the open pipeline.")


def _stalled_words(report: MonthlyReport) -> str:
    """A stage set without a lost outcome: its month's losses (stalled leads) stay in the open waterfall."""
    h = report.headline.set_index("metric")
    if report.stages.lost or "lost" not in h.index or not np.isfinite(h.loc["lost", "value"]):
        return ""
    k = h.loc["lost", "value"]
    return (f" Nothing is marked lost in this stage set: the {report.fmt.count(k)} {report.noun} that stalled in "
            "the month (the headline's losses) are still open here; the pipeline above shows them as long-dead.")


def followups(report: MonthlyReport, *, top: int = 20) -> Section:
    """Follow-ups: the leads that went stale this month, by owner (the Monday list), and long-dead leads to close out.

    A lead is *stale* once it has sat in its stage longer than 90% of leads
    take there (:func:`funnelkit.pipeline.stale`); it *went stale this
    month* when that moment fell in the month.  *Long-dead* leads have sat
    past the funnel's horizon (the funnel counts them as stalled): they are
    not follow-ups any more but leads to close out (mark lost) or revive.

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> followups(r).text.splitlines()[0]
    'Went stale in September: the Monday list'
    """
    empty = _nothing_known(report, "open lead to follow up")
    if empty is not None:
        return empty
    if not report.stages.lost:
        return note(f"Stage set {report.stages.name!r} has no lost outcome: {report.noun} that stop moving are "
                    f"simply gone (after the horizon they count as dropped), so there is no one to follow up or "
                    "close out.")
    f = report.fmt
    owner = "owner" if "owner" in report.log.columns else None
    try:
        res = _pipeline.stale(report.log, as_of=report.as_of, stages=report.stages, owner=owner)
        snap = _snapshot(report)
    except FunnelkitError as exc:
        return note(f"The stale list could not be made: {exc}")
    all_dead = snap.loc[_dead_mask(report, snap)] if len(snap) else snap
    if res.empty and all_dead.empty:
        return note(f"No open {report.one} had sat in its stage longer than its threshold on "
                    f"{report.as_of:%Y-%m-%d}.")
    dead = _dead_mask(report, res) if len(res) else np.zeros(0, dtype=bool)
    became = res["entered_stage_at"] + pd.to_timedelta(res["threshold_days"], unit="D")
    new = ((became >= report.start) & ~dead).to_numpy(dtype=bool)
    older = ~new & ~dead
    has_amount = (report.has_amount and "amount" in res.columns
                  and bool(res["amount"].notna().any() or all_dead.get("amount", pd.Series(dtype=float)).notna().any()))

    def worth(mask, frame=res) -> str:
        amounts = frame.loc[mask, "amount"] if has_amount else None
        if amounts is None or amounts.notna().sum() == 0:
            return ""
        return f" (worth {f.money(amounts.fillna(0).sum())})"

    out = _h3(f"Went stale in {report.month:%B}: the Monday list")
    n_new = int(new.sum())
    text = (f"{f.count(n_new)} open {report.one if n_new == 1 else report.noun} went stale in {report.month:%B %Y}"
            f"{worth(new)}: {'it has' if n_new == 1 else 'they have'} sat in {'its' if n_new == 1 else 'their'} "
            f"stage longer than 90% of {report.noun} take there (learned from the data).")
    if older.any():
        text += (f" {f.count(older.sum())} more went stale before the month and are not long-dead yet"
                 f"{worth(older)}.")
    out = out + _say(text)
    cols_names = {"lead_id": report.one.capitalize(), "stage": "Stage", "days_in_stage": "Days in stage",
                  "threshold_days": "Usual (days)", "days_overdue": "Overdue (days)", "amount": "Amount"}
    if new.any():
        listing = res.loc[new].sort_values([*([owner] if owner else []), "days_overdue"],
                                           ascending=[*([True] if owner else []), False], na_position="last")
        if owner:
            per = listing.groupby(owner, observed=True, dropna=False, sort=True).agg(
                n=("lead_id", "size"), value=("amount", "sum") if has_amount else ("lead_id", "size"))
            per = per.sort_values("n", ascending=False)
            out = out + _say("By owner: " + "; ".join(
                f"{'(no owner)' if pd.isna(k) else k} {f.count(v['n'])}" + (f" ({f.money(v['value'])})"
                                                                             if has_amount else "")
                for k, v in per.iterrows()) + ".")
        rows = []
        # days of a fast process (thresholds under 10 days) with a decimal: "1.4 over 1.2", never "overdue 0"
        day = f.days if bool((listing["threshold_days"] < 10).any()) else f.count
        for r in listing.to_dict("records"):
            row = ([("(no owner)" if r[owner] is None or pd.isna(r[owner]) else str(r[owner]))] if owner else []) + [
                str(r["lead_id"]), str(r["stage"]), day(r["days_in_stage"]), day(r["threshold_days"]),
                day(r["days_overdue"])]
            if has_amount:
                row.append(f.money(r["amount"]))
            rows.append(row)
        cols = (["Owner"] if owner else []) + [cols_names[c] for c in
                                               ["lead_id", "stage", "days_in_stage", "threshold_days", "days_overdue"]]
        cols += ["Amount"] if has_amount else []
        start = 1 if owner else 0
        out = out + Section(html_table(rows, cols, numeric=list(range(start + 2, len(cols)))), "", listing)
    out = out + _h3("Long-dead: close them out")
    if len(all_dead):
        d = all_dead
        every = np.ones(len(d), dtype=bool)
        hz = {str(k): float(v) for k, v in (report.funnel_all.attrs.get("horizon") or {}).items() if v is not None}
        became_dead = d["entered_stage_at"] + pd.to_timedelta(d["stage"].astype(str).map(hz), unit="D")
        this_month = int((became_dead >= report.start).sum())
        text = (f"{f.count(len(d))} open {report.noun}{worth(every, d)} have sat in their stage longer than the "
                f"horizon ({_horizon_words(report)}; {f.count(this_month)} of them crossed it this month). The funnel "
                "already counts them as stalled; mark them lost, or revive them, so that the pipeline shows what "
                "is alive.")
        order = ["amount", "days_in_stage"] if has_amount else ["days_in_stage"]
        shown = d.sort_values(order, ascending=False, na_position="last").head(top)
        if owner:
            per = d.groupby(owner, observed=True, dropna=False, sort=True).size().sort_values(ascending=False)
            text += " By owner: " + ", ".join(f"{'(no owner)' if pd.isna(k) else k} {f.count(v)}"
                                              for k, v in per.items()) + "."
        rows = []
        for r in shown.to_dict("records"):
            row = ([("(no owner)" if r[owner] is None or pd.isna(r[owner]) else str(r[owner]))] if owner else []) + [
                str(r["lead_id"]), str(r["stage"]), f.count(r["days_in_stage"])]
            if has_amount:
                row.append(f.money(r["amount"]))
            rows.append(row)
        cols = (["Owner"] if owner else []) + [cols_names["lead_id"], "Stage", "Days in stage"] + (
            ["Amount"] if has_amount else [])
        start = 1 if owner else 0
        caption = (f"The {len(shown)} largest" + (" by amount" if has_amount else " by days in stage")
                   + (f" of {f.count(len(d))}" if len(d) > len(shown) else ""))
        out = out + _say(text) + Section(html_table(rows, cols, numeric=list(range(start + 2, len(cols))),
                                                    caption=caption), "", d)
    else:
        out = out + _say(f"No open {report.one} has sat past the horizon of its stage.")
    # where the month lies against the data is the report's own warning (the whole data's
    # end, not this segment's last event)
    notes = "".join(_p(n, "funnelkit-note") for n in res.attrs.get("notes", [])
                    if not n.startswith(("as_of is after the data ends", "as_of is before the data starts")))
    return out + Section(notes, "")


#: The follow-up section under its earlier name.
stale = followups


def _in_nouns(label: str, report: MonthlyReport) -> str:
    """A measure's generic label ("Leads entered", "Average deal won") in the report's noun."""
    return (label.replace("Leads", report.noun[:1].upper() + report.noun[1:]).replace("leads", report.noun)
            .replace("Average deal", f"Average {report.one}"))


def _and_list(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def bottleneck(report: MonthlyReport) -> Section:
    """Time spent in each stage and the stage that makes the cycle long.

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> bottleneck(r).text.startswith("The bottleneck is proposal")
    True
    """
    empty = _nothing_known(report, "time in stage to measure")
    if empty is not None:
        return empty
    f = report.fmt
    try:
        res = _pipeline.bottleneck(report.log, as_of=report.as_of, stages=report.stages)
    except FunnelkitError as exc:
        return note(f"Stage durations could not be measured: {exc}")
    if res.empty:
        return note("No lead has spent measurable time in a stage yet.")
    flagged = res.loc[res["bottleneck"].fillna(False).astype(bool)]
    if len(flagged):
        b = flagged.iloc[0]
        share = f"the largest share of a won {report.one}'s cycle ({f.rate(b['won_share'], 0)})"
        if pd.notna(b["median_days"]):
            text = (f"The bottleneck is {b['stage']}: {report.noun} spend a median of {f.days(b['median_days'])} "
                    f"days there (95% CI {f.days(b['median_ci_low'])} to {f.days(b['median_ci_high'])}), {share}.")
        else:  # Kaplan-Meier never falls to one half: most never leave it (or have not yet)
            text = (f"The bottleneck is {b['stage']}, {share}. Over half of the {report.noun} that enter it "
                    "have not left it, so it has no median time.")
    else:
        text = "No stage stands out as the bottleneck."
    # a median but no 90th percentile: Kaplan-Meier falls below a half, never to a tenth (with no median
    # either, the stage may have no measured time at all: Maven's Prospecting has no dates)
    no_p90 = [str(st) for st, m, p in zip(res["stage"], res["median_days"], res["p90_days"])
              if pd.notna(m) and pd.isna(p)] if "p90_days" in res else []
    if no_p90:  # a dash in the table, said in words here
        text += (f" {_and_list(no_p90)} {'has' if len(no_p90) == 1 else 'have'} no 90th percentile (a dash): over a "
                 f"tenth of the {report.noun} that enter {'it' if len(no_p90) == 1 else 'them'} have not left.")
    rows = []
    for r in res.to_dict("records"):
        rows.append([str(r["stage"]), f.days(r.get("median_days")),
                     f.interval(r.get("median_ci_low"), r.get("median_ci_high"), fmt=f.days),
                     f.days(r.get("p90_days")), f.days(r.get("won_mean_days")),
                     f.rate(r.get("won_share"), 0), yes_no(r.get("bottleneck"), yes="✓ bottleneck")])
    cols = ["Stage", "Median days", "95% CI", "90th percentile (days)", f"Won {report.noun}: mean days",
            "Share of a won cycle", ""]
    return _say(text) + Section(html_table(rows, cols, numeric=[1, 2, 3, 4, 5]), "", res)


def forecast(report: MonthlyReport) -> Section:
    """Wins and revenue expected next month from the open pipeline and the new leads expected to
    enter meanwhile (:attr:`MonthlyReport.next_month`), with a range, against the target; says how
    much of it the new leads are.

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> text = forecast(r).text
    >>> text.startswith("From the 156 leads open on 2025-09-30 and about "), "new ones expected to enter" in text
    (True, True)
    """
    from ..plots import fan_chart, target_chart

    missing = _needs_outcomes(report, "A forecast") or _nothing_known(report, "pipeline to forecast from")
    if missing is not None:
        return missing
    f = report.fmt
    fc = report.next_month
    if isinstance(fc, str) or fc is None:
        return note(f"The forecast could not be made: {fc}")
    nxt = report.month + 1
    t = fc.total.iloc[0]
    level = fc.total.attrs.get("level", 0.8)
    lvl = f.rate(level if isinstance(level, float) else 0.8, 0)
    with_new = bool(np.isfinite(t.get("new_leads", np.nan)) and t.get("basis", "") != "open pipeline")
    source = (f"From the {f.count(t['open_leads'])} {report.noun} open on {report.as_of:%Y-%m-%d}"
              + (f" and about {f.count(t['new_leads'])} new ones expected to enter by "
                 f"{fc.horizon_end_:%Y-%m-%d}" if with_new else ""))
    text = (f"{source}, {nxt:%B %Y} should bring about {f.number(t['expected_wins'], 1)} wins ({lvl} range "
            f"{f.count(t['wins_low'])} to {f.count(t['wins_high'])})")
    unknown = int(t.get("amount_unknown", 0) or 0)
    revenue_known = report.has_amount and unknown < t["open_leads"]
    p_target = None
    if report.has_amount and not revenue_known:
        text += ("; revenue cannot be forecast, because none of the open leads has an amount yet (the data "
                 "gives amounts only to closed leads)")
    if revenue_known:
        text += (f" and {f.money(t['expected_revenue'])} in revenue (range {f.money(t['revenue_low'])} to "
                 f"{f.money(t['revenue_high'])})")
        if unknown:
            text += f"; {f.count(unknown)} open {report.noun} without an amount count in the wins but not in the revenue"
        if report.revenue_target:
            target = report.revenue_target
            where = ("above the range" if target > t["revenue_high"] else
                     "below the range" if target < t["revenue_low"] else "inside the range")
            p_target = fc.probability_of(target_revenue=target)
            text += (f". The target of {f.money(target)} is {where}: the forecast covers "
                     f"{f.rate(t['expected_revenue'] / target, 0)} of it, and the chance to reach it is "
                     f"{f.rate(p_target, 0)}")
    open_wins = float(t["open_pipeline_wins"] if with_new else t["expected_wins"])
    share = open_wins / t["open_leads"] if t["open_leads"] > 0 else np.nan
    later = ("most of the open pipeline closes later or is lost" if not share >= 0.5 else  # a fast process
             f"{f.rate(share, 0)} of the open {report.noun} are expected to be won by then, the rest later or not at all")
    text += (f". Only what is expected to be won by {fc.horizon_end_:%Y-%m-%d} counts: {later}, and long-dead "
             "leads are treated as stalled."
             + (" " + _split_words(report, t) if with_new else " " + _new_leads_words(report)))
    check_text, check_rows = _check_words(report, t, lvl, revenue_known)
    text += " " + check_text
    drift = getattr(fc, "drift_", None)
    if drift is not None and drift.attrs.get("differs"):  # the business changed: say it beside the forecast
        said = str(drift.attrs["sentence"])
        text += " " + said[:1].upper() + said[1:]
    if revenue_known and report.revenue_target:
        chart = _chart(lambda ax: target_chart(fc, target=report.revenue_target, quantity="revenue",
                                               title=f"{nxt:%B %Y}: P(reach target) = {f.rate(p_target, 0)}",
                                               numbers=f, ax=ax),  # amounts in full in the legend, compact
                                               # on the axis (f.money in full there ran "€25,000€50,000" together)
                       figsize=(6.4, 3.8),
                       caption=f"Simulated revenue for {nxt:%B %Y} against the target, with the {lvl} range and the "
                               "CRM weighted pipeline within the horizon.")
    else:
        q = "revenue" if revenue_known else "wins"
        chart = _chart(lambda ax: fan_chart(fc, quantity=q, title=f"Forecast to {fc.horizon_end_:%Y-%m-%d}",
                                            money=partial(f.money, compact=True), numbers=f, ax=ax),
                       caption=f"Expected {q} with the model's nested prediction bands"
                               + (f"; the black bar at the end is the {lvl} range stated above, the model's corrected "
                                  "by its past misses." if str(t.get("revenue_range" if q == "revenue" else "range",
                                                                     "")).startswith("calibrated") else "."))
    rows = [["Open " + report.noun, f.count(t["open_leads"]), ""]]
    if with_new:
        rows.append([f"New {report.noun} expected by {fc.horizon_end_:%Y-%m-%d}", f.count(t["new_leads"]), ""])
    rows.append(["Expected wins", f.number(t["expected_wins"], 1),
                 f"{f.count(t['wins_low'])}–{f.count(t['wins_high'])}"])
    if with_new:
        rows.append(["  from the open " + report.noun, f.number(t["open_pipeline_wins"], 1), ""])
        rows.append([f"  from new {report.noun}", f.number(t["new_lead_wins"], 1), ""])
    if revenue_known:
        rows.append(["Expected revenue", f.money(t["expected_revenue"]),
                     f"{f.money(t['revenue_low'])}–{f.money(t['revenue_high'])}"])
        if p_target is not None:
            rows.append(["P(reach target)", f.rate(p_target, 0), ""])
        if "horizon_weighted_pipeline" in fc.total.columns:
            rows.append(["CRM weighted pipeline, within the horizon", f.money(t["horizon_weighted_pipeline"]),
                         f"{f.money(t['horizon_weighted_low'])}–{f.money(t['horizon_weighted_high'])}"])
        rows.append(["CRM weighted pipeline, eventual wins (no time limit)", f.money(t["weighted_pipeline"]),
                     f"{f.money(t['weighted_low'])}–{f.money(t['weighted_high'])}"])
    rows.extend(check_rows)
    table_html = html_table(rows, ["", "Value", f"{lvl} range"], numeric=[1, 2])
    return _say(text) + chart + Section(table_html, "", fc.total)


def _range_words(t: pd.Series) -> str:
    """Where a forecast's range of wins comes from, in words (``range``: "model" or "calibrated
    on ...", and ``calibration_cutoffs``)."""
    if str(t.get("range", "model")).startswith("calibrated"):
        return f"set by how far this forecast missed at {int(t['calibration_cutoffs'])} earlier dates"
    return "the model's own: too little history to set it by past misses"


def _check_words(report: MonthlyReport, t: pd.Series, lvl: str, revenue_known: bool) -> tuple[str, list]:
    """The forecast replayed at past month ends (:attr:`MonthlyReport.forecast_check`): in how
    many its range held, and its average miss against carrying the last period's wins forward;
    a sentence and the table's rows."""
    f = report.fmt
    bt = report.forecast_check
    if not report.check_months:
        return (f"The {lvl} range is the model's own, unchecked: this report makes no past forecast "
                "(check_months is 0)."), []
    both = revenue_known and str(t.get("revenue_range", "")) == str(t.get("range", "model"))
    where = f"The {lvl} range{'s are' if both else ' of wins is'} {_range_words(t)}."
    factor = float(t.get("level_factor", 1.0))
    if np.isfinite(factor) and factor != 1.0:
        where += (f" The model had come in too {'low' if factor > 1 else 'high'} at most of those dates, so its "
                  f"wins are {'raised' if factor > 1 else 'lowered'} by {f.pct(abs(factor - 1))} (the median "
                  "ratio of what happened to what it said).")
    if bt is None:
        return where, []
    if isinstance(bt, str):
        return where + f" It cannot be checked on past months yet: {bt}.", []
    s = bt.summary.set_index(["method", "quantity"]) if len(bt.summary) else None
    if s is None or ("forecast", "wins") not in s.index or not int(s.loc[("forecast", "wins"), "cutoffs"]):
        return where, []
    r = s.loc[("forecast", "wins")]
    n, held = int(r["cutoffs"]), int(r["held"])
    first, last = bt.table["cutoff"].min(), bt.table["cutoff"].max()
    days = int(round((bt.table["horizon_end"] - bt.table["cutoff"]).iloc[0] / pd.Timedelta(days=1)))
    months = (f"at the end of each of the {f.count(n)} months from {first:%B %Y} to {last:%B %Y}" if n > 1
              else f"at the end of {first:%B %Y}")
    rr = s.loc[("run-rate", "wins")] if ("run-rate", "wins") in s.index else None
    text = (f"{where} Made the same way {months}, this forecast's {lvl} range held in {f.count(held)} of "
            f"{f.count(n)}; it missed by {f.number(r['mae'], 1)} wins on average")
    if rr is not None and np.isfinite(rr["mae"]):
        text += f", against {f.number(rr['mae'], 1)} for the previous {days} days' wins carried forward"
    rows = [[f"{lvl} range held, past months (wins)", f"{f.count(held)} of {f.count(n)}", ""],
            ["Average miss, past months (wins)", f.number(r["mae"], 1), ""]]
    if rr is not None and np.isfinite(rr["mae"]):
        rows.append([f"  carrying the previous {days} days' wins forward instead", f.number(rr["mae"], 1), ""])
    if revenue_known and ("forecast", "revenue") in s.index:
        rv = s.loc[("forecast", "revenue")]
        if int(rv["cutoffs"]):
            text += f"; the revenue range held in {f.count(int(rv['held']))} of {f.count(int(rv['cutoffs']))}"
            rows.append([f"{lvl} range held, past months (revenue)",
                         f"{f.count(int(rv['held']))} of {f.count(int(rv['cutoffs']))}", ""])
    return text + ".", rows


def _won_same_month(report: MonthlyReport) -> tuple[int, int]:
    """(wins in the month, of them by leads whose first event was in the month)."""
    closed = report.closed
    if closed.empty:
        return 0, 0
    prog = _funnel.lead_progress(closed, stages=report.stages, stale_after=None)
    won = set(prog.loc[prog["outcome"] == "won", "lead_id"])
    new = set(report.cohort["lead_id"])
    return len(won), len(won & new)


def _split_words(report: MonthlyReport, t: pd.Series) -> str:
    """Where the forecast wins come from: the open pipeline and the new leads of the month."""
    f = report.fmt
    total = float(t["expected_wins"])
    new = float(t["new_lead_wins"])
    if float(t.get("new_leads", 0.0) or 0.0) < 0.5:  # none arrive: not "they rarely close within a month"
        first = report.log.groupby(LEAD, observed=True)[TIME].min()
        last = (f" (the last one entered on {first.max():%Y-%m-%d})" if len(first) and pd.notna(first.max())
                else "")
        return (f"All of it comes from the open {report.noun} ({f.number(t['open_pipeline_wins'], 1)} wins): "
                f"fewer than one new {report.one} is "
                f"expected to enter by then{last}.")
    if total <= 0 or new < 0.05 * total:
        return (f"Almost all of it comes from the open {report.noun} ({f.number(t['open_pipeline_wins'], 1)} wins): "
                f"new {report.noun} rarely close within a month here ({f.number(new, 1)} expected wins).")
    return (f"Of the wins, {f.number(t['open_pipeline_wins'], 1)} are expected from the open {report.noun} and "
            f"{f.number(new, 1)} from {report.noun} that enter in the meantime ({f.rate(new / total, 0)}).")


def _new_leads_words(report: MonthlyReport) -> str:
    """What leaving next month's new leads out of the forecast means for this data (said when
    the arrivals of new leads could not be modelled and the forecast is of the open pipeline only)."""
    f = report.fmt
    won, same = _won_same_month(report)
    if won and same / won >= 0.2:
        return (f"New {report.noun} entering next month are not counted, and here they matter: {f.count(same)} of "
                f"the {f.count(won)} {report.noun} won in {report.month:%B %Y} ({f.pct(same / won)}) had entered in "
                "that same month, so next month's actual will be well above this forecast of the open pipeline.")
    return (f"New {report.noun} entering next month are not counted: "
            + (f"only {f.count(same)} of the {f.count(won)} won in {report.month:%B %Y} had entered in that month."
               if won else "they rarely close within a month."))


def leads_needed(report: MonthlyReport) -> Section:
    """How many new leads the revenue target needs over the stage set's horizon (90 days for sales).

    The monthly target is multiplied by the months of the horizon; the
    answer comes from :func:`funnelkit.forecast.leads_needed` (the open
    pipeline's expected share first, then the new leads for the rest).

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> leads_needed(r).text
    'No revenue target was given (parameter revenue_target), so there is nothing to plan for.'
    """
    from .. import forecast as _forecast

    missing = _needs_outcomes(report, "Lead planning") or _nothing_known(report, "history to plan from")
    if missing is not None:
        return missing
    if not report.revenue_target:
        return note("No revenue target was given (parameter revenue_target), so there is nothing to plan for.")
    if not report.has_amount:
        return note("The data has no amounts, so a revenue target cannot be planned for.")
    f = report.fmt
    days = report.stages.horizon_days or 90
    months = max(1, round(days / (365.25 / 12)))
    target = report.revenue_target * months
    release_memory()  # start the two model fits from what the report holds, not from earlier garbage
    try:
        res = _forecast.leads_needed(report.log, target_revenue=target, as_of=report.as_of, period=f"{days}D",
                                     by=None, stages=report.stages, seed=0)
    except FunnelkitError as exc:
        return note(f"Lead planning could not be done: {exc}")
    finally:
        release_memory()  # two model fits' freed arrays: back to the system, not held by the kernel
    r = res.iloc[-1]
    conf = r["confidence"]
    whose = "the stage set's horizon" if report.stages.horizon_days else "the default planning period"
    head = (f"Over the next {months} month{'s' if months > 1 else ''} ({days} days, {whose}) "
            f"the monthly target adds up to {f.money(target)}. The open pipeline is "
            f"expected to bring {f.money(r['pipeline_expected'])} of it (probability it reaches the target alone: "
            f"{f.rate(r['pipeline_probability'], 0)}).")
    if pd.isna(r["leads_needed"]):
        tail = " The target cannot be reached with new leads in that time at the recent win rates."
    elif r["leads_needed"] <= 0:
        tail = f" No new {report.noun} are needed."
    else:
        tail = (f" To reach it with {f.rate(conf, 0)} confidence, about {f.count(r['leads_needed'])} new {report.noun} must "
                f"enter the funnel in that time (each wins within the period with probability "
                f"{f.rate(r['win_probability'], 2)}, for {f.money(r['mean_won_amount'])} on average).")
    text = head + tail
    if res.attrs.get("pipeline_valued_at_won_amounts"):
        text += (" The open leads have no amounts yet, so the wins expected from them are valued at the "
                 "amounts of recent wins, as the new ones' are.")
    rows = [[f.money(r["target"]), f.money(r["pipeline_expected"]),
             "–" if pd.isna(r["leads_needed"]) else f.count(r["leads_needed"]),
             f.rate(r["win_probability"], 2), f.money(r["mean_won_amount"]),
             f.rate(r["probability_reached"], 0) if pd.notna(r["probability_reached"]) else "–"]]
    cols = ["Target", "From open pipeline", f"New {report.noun} needed", f"P(new {report.one} wins in period)",
            "Mean won amount", "P(target reached)"]
    return _say(text) + Section(html_table(rows, cols, numeric=list(range(len(cols)))), "", res)


# ---------------------------------------------------------------------------
# the footer
# ---------------------------------------------------------------------------
def _parameter_facts(report: MonthlyReport) -> list[tuple[str, str]]:
    p = report.parameters
    f = report.fmt
    out = [("Segment", f"{report.segment[0]} = {report.segment[1]}" if report.segment else "all leads"),
           ("Month", str(report.month)),
           ("As of", f"{report.as_of:%Y-%m-%d %H:%M}" + ("" if p.get("as_of") else " (end of the month)")),
           ("Stage set", report.stages.name),
           ("Revenue target", f.money(report.revenue_target) if report.revenue_target else "none")]
    cols = p.get("columns") or {}
    if cols:
        out.append(("Columns", ", ".join(f"{k} → {v}" for k, v in cols.items())))
    opts = p.get("read_options") or {}
    if opts:
        out.append(("Read options", "; ".join(f"{k}: {_plain_value(v)}" for k, v in opts.items())))
    fmt_bits = [f"currency {f.currency}" if f.currency else "no currency",
                f"thousands {f.thousands!r}", f"decimal {f.decimal!r}"]
    out.append(("Number format", ", ".join(fmt_bits)))
    return out


def provenance(report: MonthlyReport) -> Section:
    """The footer: data file and its SHA-256, the parameters (as a short list), versions and run time.

    Examples
    --------
    >>> from funnelkit.reports import MonthlyReport
    >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> provenance(r).text.splitlines()[0]
    'Data: funnelkit bundled demo data (generated, seed 42)'
    """
    from .. import __version__

    data = report.data
    fp = report.fingerprint
    if fp is None:
        try:
            fp = data_fingerprint(data)
        except OSError as exc:
            fp = {"source": str(data), "sha256": f"unavailable ({exc})"}
    facts = [
        ("Data", fp["source"]),
        ("SHA-256", fp["sha256"]),
        *_parameter_facts(report),
        ("funnelkit", __version__),
        ("Python / pandas", f"{platform.python_version()} / {pd.__version__}"),
        ("Run at", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]
    code = {"Data", "SHA-256"}
    items = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{'<code>' if k in code else ''}{html.escape(v)}{'</code>' if k in code else ''}"
        "</dd>" for k, v in facts)
    load = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes if n.strip())
    load_html = f"<p>When the data was loaded:</p><ul>{load}</ul>" if load else ""
    body = (f'<footer><hr><p><strong>Provenance</strong></p>'
            f'<dl class="fk-facts">{items}</dl>{load_html}</footer>')
    status = {"warnings": list(report.warnings)}
    return Section(body, "\n".join(f"{k}: {v}" for k, v in facts), extra={STATUS_MIME: status})
