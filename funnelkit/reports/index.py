"""The index page of a batch of reports: one row per report, linking to it.

Every value shown comes from the status table (and so from the executed
notebooks' headline numbers) and is HTML-escaped: a segment value such as
``<script>`` is shown as text, never run.  Like the reports, the page is one
offline file with a Content-Security-Policy that allows no script
(:mod:`funnelkit.reports.pages`).
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from .formatting import NumberFormat
from .notebook import atomic_write
from .pages import csp_meta, scrub_html

__all__ = ["index_html", "write_index"]

_STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1.5rem 1rem 3rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6rem; margin: .2rem 0; } h2 { font-size: 1.2rem; margin-top: 2rem; }
a { color: #0969da; }
.meta { color: #57606a; font-size: .9rem; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; font-variant-numeric: tabular-nums; }
th, td { padding: .35rem .6rem; border-bottom: 1px solid #ddd; text-align: right; vertical-align: top; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
td.name a { font-weight: 600; }
thead th { background: #f3f5f7; }
.ok { color: #1a7f37; } .failed { color: #b42318; font-weight: bold; } .skipped, .kept { color: #555; }
.warning { color: #9a6700; font-weight: bold; }
.flag { color: #9a6700; font-size: .8rem; }
.up { color: #1a7f37; } .down { color: #b42318; } .err { color: #b42318; font-size: .85rem; white-space: pre-wrap;
  overflow-wrap: anywhere; }
.warn { background: #fff8c5; border-left: 3px solid #bf8700; color: #3b2e00; font-size: .85rem; padding: .2rem .5rem;
        text-align: left; white-space: pre-wrap; overflow-wrap: anywhere; }
tr.has-warning td { border-bottom: none; padding-bottom: .15rem; } tr.warn-row td { padding-top: 0; }
.notes li { color: #57606a; overflow-wrap: anywhere; }
code { overflow-wrap: anywhere; }
@media (max-width: 640px) {
  body { padding: 1rem .6rem 2rem; } h1 { font-size: 1.3rem; }
  table, tbody, tr, td { display: block; width: 100%; }
  thead { display: none; }
  tr { border: 1px solid #d0d7de; border-radius: 6px; margin: 0 0 .6rem; padding: .3rem .5rem; }
  tr.has-warning { border-bottom: none; border-radius: 6px 6px 0 0; margin-bottom: 0; }
  tr.warn-row { border-top: none; border-radius: 0 0 6px 6px; padding-top: 0; }
  td { border: none; padding: .12rem 0; text-align: right; display: flex; justify-content: space-between; gap: .8rem; }
  td::before { content: attr(data-label); color: #57606a; text-align: left; font-weight: 600; }
  td.name { font-size: 1.05rem; } td.name::before, td.wide::before { content: none; }
  td.wide { display: block; text-align: left; }
}
"""


def _num(v, kind: str = "count", fmt: NumberFormat | None = None) -> str:
    f = fmt or NumberFormat()
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f.rate(v) if kind == "rate" else f.money(v) if kind == "money" else f.count(v)


def _delta(v, kind: str = "count", fmt: NumberFormat | None = None) -> str:
    f = fmt or NumberFormat()
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    cls = "up" if v > 0 else ("down" if v < 0 else "")
    text = f.points(v) if kind == "rate" else f.signed_money(v, compact=True) if kind == "money" else f.signed(v)
    return f' <span class="{cls}">({html.escape(text)})</span>'


def _win_rate_flag(note) -> str:
    """The status table's ``win_rate_note`` under the rate ("none marked lost": 100% by construction)."""
    if not isinstance(note, str) or not note:
        return ""
    return f'<br><span class="flag">{html.escape(note)}</span>'


def _href(base: Path, target) -> str:
    if target is None or (isinstance(target, float) and math.isnan(target)) or not str(target):
        return ""
    rel = Path(target).resolve().relative_to(base.resolve())
    return "/".join(quote(part) for part in rel.parts)


def _link(base: Path, target, label: str) -> str:
    href = _href(base, target)
    if not href:
        return ""
    return f'<a href="{html.escape(href, quote=True)}">{html.escape(label)}</a>'


def index_html(status: pd.DataFrame, *, folder: str | Path, title: str, month: str,
               plan: str = "", data: str = "", notes: list[str] | None = None,
               fmt: NumberFormat | None = None, noun: str = "leads") -> str:
    """The index page of a batch (as text).

    Each report's name is its link (so the link is never cut off on a
    phone, where every row becomes a small card).

    Parameters
    ----------
    status : DataFrame
        The status table of :func:`funnelkit.reports.run_plan`.
    folder : path
        Folder the index is written to (links are relative to it).
    title, month, plan, data : str
        Shown in the page header.
    notes : list of str, optional
        Sentences shown under the header.
    fmt : NumberFormat, optional
        How numbers and money are written (the plan's currency and separators).
    noun : str
        What the leads are called (the plan's ``noun``: ``"deals"``,
        ``"fines"``): the headings and the explanation name them so
        ("New deals", "All deals").

    Returns
    -------
    str
        A complete HTML page.

    Examples
    --------
    A batch of two reports, one of them failed (its segment value is shown
    as text, not run):

    >>> import re
    >>> import pandas as pd
    >>> from funnelkit.reports import STATUS_COLUMNS
    >>> status = pd.DataFrame([
    ...     {"split": "all", "value": "all", "status": "ok", "leads_entered": 1200, "leads_entered_change": 50,
    ...      "won": 80, "won_change": -4, "revenue": 960_000.0, "revenue_change": 12_000.0,
    ...      "win_rate": 0.25, "win_rate_change": 0.01, "target_attainment": 0.96, "html": "/r/all.html"},
    ...     {"split": "source", "value": "<script>", "status": "failed", "error": "KeyError: 'amount'"},
    ... ], columns=STATUS_COLUMNS)
    >>> page = index_html(status, folder="/r", title="Monthly funnel", month="2025-06")
    >>> re.findall(r"<h2>(.*?)</h2>", page)
    ['All leads', 'By source']
    >>> re.search(r'<td class="text name">(.*?)</td>', page).group(1)
    '<a href="all.html">All leads</a>'
    >>> "&lt;script&gt;" in page, "<script>" in page
    (True, False)
    """
    base = Path(folder)
    noun = (noun or "leads").strip() or "leads"
    new, every = f"New {noun}", f"All {noun}"
    n_failed = int((status["status"] == "failed").sum()) if len(status) else 0
    n_ok = int(status["status"].isin(["ok", "warning", "skipped", "kept"]).sum()) if len(status) else 0
    n_warn = sum(isinstance(w, str) and bool(w) for w in status.get("warnings", []))
    flagged = any(isinstance(w, str) and bool(w) for w in status.get("win_rate_note", []))
    head = (
        f"<h1>{html.escape(title)} — {html.escape(month)}</h1>"
        f'<p class="meta">{n_ok} report(s) ready'
        + (f" ({n_warn} with a warning)" if n_warn else "")
        + f", {n_failed} failed. "
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}"
        + (f" from plan <code>{html.escape(plan)}</code>" if plan else "")
        + (f", data <code>{html.escape(data)}</code>" if data else "")
        + ".</p>"
        f'<p class="meta">{html.escape(new)}: {html.escape(noun)} whose first event was in the month. Won, revenue '
        f"and win rate: {html.escape(noun)} whose outcome came in the month. In brackets: the change from the previous "
        "month." + (f" A win rate marked <em>none marked lost</em> is 100% only because none of the {html.escape(noun)} "
                   "was marked lost in the month (losses marked in batches? the report's card says)." if flagged else "")
        + " Status <em>warning</em>: read the report's warning before its numbers (e.g. the month is past "
        "the data's end). Status <em>skipped</em> or <em>kept</em>: the report was written by an earlier run.</p>"
    )
    if notes:
        head += '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
    labels = [new, "Won", "Revenue", "Win rate", "Revenue vs target"]
    sections = []
    for split, rows in status.groupby("split", sort=False):
        name = every if split == "all" else f"By {split}"
        body = []
        for r in rows.itertuples(index=False):
            value = every if split == "all" else str(r.value)
            href = _href(base, r.html)
            label = (f'<a href="{html.escape(href, quote=True)}">{html.escape(value)}</a>' if href and r.status != "failed"
                     else html.escape(value))
            if r.status == "failed":
                state = '<span class="failed">FAILED</span>'
                links = " · ".join(x for x in (_link(base, r.html, "report"), _link(base, r.notebook, "notebook")) if x)
                cells = (f'<td class="text wide" colspan="5"><div class="err">{html.escape(str(r.error))}</div>'
                         + (f"<div>{links}</div>" if links else "") + "</td>")
            else:
                state = f'<span class="{html.escape(r.status)}">{html.escape(r.status)}</span>'
                values = [
                    f"{_num(r.leads_entered, fmt=fmt)}{_delta(r.leads_entered_change, fmt=fmt)}",
                    f"{_num(r.won, fmt=fmt)}{_delta(r.won_change, fmt=fmt)}",
                    f"{_num(r.revenue, 'money', fmt)}{_delta(r.revenue_change, 'money', fmt)}",
                    f"{_num(r.win_rate, 'rate', fmt)}{_delta(r.win_rate_change, 'rate', fmt)}"
                    + _win_rate_flag(getattr(r, "win_rate_note", "")),
                    f"{_num(r.target_attainment, 'rate', fmt)}",
                ]
                cells = "".join(f'<td data-label="{html.escape(lab, quote=True)}"><span>{v}</span></td>'
                                for lab, v in zip(labels, values))
            warn = getattr(r, "warnings", "")
            cls = ' class="has-warning"' if isinstance(warn, str) and warn else ""
            body.append(f'<tr{cls}><td class="text name">{label}</td>'
                        f'<td class="text" data-label="Status">{state}</td>{cells}</tr>')
            if cls:  # the report's warnings, on a row of their own under it
                body.append(f'<tr class="warn-row"><td class="text wide" colspan="7"><div class="warn">'
                            f"{html.escape(warn)}</div></td></tr>")
        sections.append(
            f'<h2>{html.escape(name)}</h2><div class="scroll"><table><thead><tr>'
            f'<th class="text">{html.escape(every if split == "all" else str(split))}</th>'
            '<th class="text">Status</th>' + "".join(f"<th>{html.escape(lab)}</th>" for lab in labels)
            + f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )
    if not sections:
        sections.append("<p>No reports in this batch.</p>")
    return scrub_html(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{csp_meta()}'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} — {html.escape(month)}</title><style>{_STYLE}</style></head>"
        f"<body>{head}{''.join(sections)}</body></html>"
    )


def write_index(status: pd.DataFrame, path: str | Path, *, tmp_dir: str | Path | None = None, **kwargs) -> Path:
    """Write :func:`index_html` to ``path`` atomically (temporary file in ``tmp_dir``); returns the path.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import pandas as pd
    >>> from funnelkit.reports import STATUS_COLUMNS
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     status = pd.DataFrame([{"split": "all", "value": "all", "status": "ok", "leads_entered": 1200,
    ...                             "won": 80, "html": f"{tmp}/all.html"}], columns=STATUS_COLUMNS)
    ...     path = write_index(status, Path(tmp) / "index.html", title="Monthly funnel", month="2025-06")
    ...     text = path.read_text(encoding="utf-8")
    >>> path.name, text.startswith("<!DOCTYPE html>"), '<a href="all.html">All leads</a>' in text
    ('index.html', True, True)
    """
    path = Path(path)
    return atomic_write(path, index_html(status, folder=path.parent, **kwargs), tmp_dir=tmp_dir)
