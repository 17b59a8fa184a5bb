"""How a report writes numbers, and the small pieces of markup its sections share.

:class:`NumberFormat` carries a plan's ``currency``, ``thousands`` and
``decimal`` settings and formats counts, money and percentages with them;
every section of a report formats through it, so one plan setting changes
the whole page.  Percentages are written the way funnelkit's charts write
them (``NumberFormat.pct``: whole percents from 9.5% up, one decimal
below), so a rate reads the same in a chart and in the table beside it.

:func:`html_table` builds a plain, escaped HTML table from strings that are
already formatted (no pandas Styler, no raw values, no ``True``/``False``);
:func:`sparkline` draws a small inline SVG line for the headline cards;
:func:`spreadsheet_safe` keeps text from the data from running as a formula
when a CSV the runner writes is opened in a spreadsheet.

Examples
--------
>>> f = NumberFormat(currency="€", thousands=".", decimal=",")
>>> f.money(1234567.8), f.count(1234), f.rate(0.1234)
('€1.234.568', '1.234', '12,3%')
>>> NumberFormat(currency="EUR").money(-5300, compact=True)
'−5.3k EUR'
>>> NumberFormat().pct(0.204947), NumberFormat().pct(0.0691)
('20%', '6.9%')
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["NumberFormat", "html_table", "spreadsheet_safe", "sparkline", "yes_no"]

_MINUS = "−"


def _bad(v) -> bool:
    try:
        return v is None or math.isnan(float(v))
    except (TypeError, ValueError):
        return True


@dataclass(frozen=True)
class NumberFormat:
    """Number, money and percentage formatting of one report.

    Parameters
    ----------
    currency : str
        A symbol written before the amount (``"€"``, ``"$"``, ``"£"``) or a
        code or word written after it (``"EUR"``, ``"kr"``); ``""`` for
        plain numbers.
    thousands : str
        Thousands separator: ``","`` (default), ``"."``, ``" "``, ``"'"``,
        a narrow no-break space, or ``""``.
    decimal : str
        Decimal mark, ``"."`` or ``","`` (default: ``","`` when the
        thousands separator is ``"."``, else ``"."``).

    Examples
    --------
    >>> f = NumberFormat(currency="kr", thousands=" ")
    >>> f.decimal, f.money(1234.4), f.points(0.023), f.interval(0.081, 0.42)
    ('.', '1 234 kr', '+2.3 pts', '8.1%–42%')
    >>> try:
    ...     NumberFormat(thousands=".", decimal=".")
    ... except ValueError as exc:
    ...     print(exc)
    the thousands separator and the decimal mark are both '.'.
    """

    currency: str = ""
    thousands: str = ","
    decimal: str = ""

    def __post_init__(self) -> None:
        if self.thousands not in {",", ".", " ", "'", "\u202f", "\u00a0", ""}:
            raise ValueError(f"thousands separator {self.thousands!r} is not one of ',', '.', ' ', \"'\", ''.")
        if self.decimal not in {"", ".", ","}:
            raise ValueError(f"decimal mark {self.decimal!r} must be '.' or ','.")
        dec = self.decimal or ("," if self.thousands == "." else ".")
        if dec == self.thousands:
            raise ValueError(f"the thousands separator and the decimal mark are both {dec!r}.")
        object.__setattr__(self, "decimal", dec)

    # -- plain numbers -----------------------------------------------------
    def number(self, v, digits: int = 0) -> str:
        """``v`` with the thousands separator and ``digits`` decimals; ``–`` when missing."""
        if _bad(v):
            return "–"
        text = f"{abs(float(v)):,.{digits}f}"
        if round(float(v), digits) == 0:
            neg = False
        else:
            neg = float(v) < 0
        text = text.replace(",", "\0").replace(".", self.decimal).replace("\0", self.thousands)
        return (_MINUS if neg else "") + text

    def count(self, v) -> str:
        """A count: ``1,234``."""
        return self.number(v, 0)

    def days(self, v) -> str:
        """Days with one decimal: ``22.7``."""
        return self.number(v, 1)

    def _with_currency(self, text: str) -> str:
        neg = text.startswith(_MINUS)
        body = text[1:] if neg else text
        cur = self.currency.strip()
        if not cur:
            out = body
        elif any(ch.isalpha() for ch in cur):
            out = f"{body} {cur}"
        else:
            out = f"{cur}{body}"
        return (_MINUS if neg else "") + out

    def money(self, v, *, compact: bool = False) -> str:
        """An amount with the currency: ``€1,234`` or ``1,234 EUR``; ``compact``: ``€1.2M``, ``€347k``."""
        if _bad(v):
            return "–"
        v = float(v)
        if compact:
            a = abs(v)
            for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
                if a >= size * 0.9995:
                    digits = 1 if a / size < 100 else 0
                    text = self.number(v / size, digits)
                    text = text.replace(f"{self.decimal}0", "") if text.endswith(f"{self.decimal}0") else text
                    return self._with_currency(text + suffix)
        return self._with_currency(self.number(v, 0))

    def signed_money(self, v, *, compact: bool = False) -> str:
        """An amount with its sign: ``+€1,234``, ``−€80``."""
        if _bad(v):
            return "–"
        text = self.money(v, compact=compact)
        return text if text.startswith(_MINUS) else "+" + text

    def signed(self, v, digits: int = 0) -> str:
        """A number with its sign: ``+4``, ``−12``."""
        if _bad(v):
            return "–"
        text = self.number(v, digits)
        return text if text.startswith(_MINUS) or text.strip("0" + self.decimal) == "" else "+" + text

    # -- percentages ---------------------------------------------------------
    def rate(self, v, digits: int = 1) -> str:
        """A share as a percentage with ``digits`` decimals: ``12.3%``."""
        if _bad(v):
            return "–"
        return self.number(float(v) * 100, digits) + "%"

    def pct(self, v) -> str:
        """A share as funnelkit's charts write it: ``20%`` from 9.5% up, ``6.9%`` below."""
        if _bad(v):
            return "–"
        return self.rate(v, 0 if float(v) >= 0.095 else 1)

    def points(self, v) -> str:
        """A change of a rate in percentage points: ``+2.3 pts``."""
        if _bad(v):
            return "–"
        return self.signed(float(v) * 100, 1) + " pts"

    def interval(self, low, high, *, fmt=None) -> str:
        """``8.1%–42%`` (two rates, written as the charts write them) or with ``fmt`` any pair."""
        if _bad(low) or _bad(high):
            return ""
        write = fmt or self.pct
        return f"{write(low)}–{write(high)}"


def yes_no(v, *, yes: str = "✓", no: str = "") -> str:
    """A boolean in words (or a tick): never ``True``/``False`` on a page.

    Examples
    --------
    >>> yes_no(True), yes_no(False), yes_no(None)
    ('✓', '', '')
    >>> yes_no(0, yes="yes", no="no"), yes_no(float("nan"), yes="yes", no="no")
    ('no', '')
    """
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    try:
        import pandas as pd

        if v is pd.NA:
            return ""
    except ImportError:  # pragma: no cover
        pass
    return yes if bool(v) else no


def html_table(rows: Sequence[Sequence[str]], columns: Sequence[str], *, numeric: Sequence[int] = (),
               caption: str = "", cls: str = "", row_classes: Sequence[str] | None = None,
               raw: Sequence[int] = ()) -> str:
    """An HTML table from formatted cells; every cell and heading is escaped.

    Parameters
    ----------
    rows : list of list of str
        The cells, already formatted.
    columns : list of str
        Column headings.
    numeric : list of int
        Column positions aligned right (numbers).
    caption : str
    cls : str
        Extra CSS class of the table.
    row_classes : list of str, optional
        A CSS class per row.
    raw : list of int
        Column positions whose cells are trusted markup built by funnelkit
        (e.g. a sparkline); everything else is escaped.

    Returns
    -------
    str
        ``<div class="fk-scroll"><table>...</table></div>``: a wide table
        scrolls inside its box on a phone, never the page.

    Examples
    --------
    >>> html_table([["<b>", "1"]], ["name", "n"], numeric=[1])
    '<div class="fk-scroll"><table class="fk-table"><thead><tr><th>name</th><th class="num">n</th></tr></thead><tbody><tr><td>&lt;b&gt;</td><td class="num">1</td></tr></tbody></table></div>'
    """
    num = set(numeric)
    trusted = set(raw)

    def cell(tag: str, i: int, v) -> str:
        attr = ' class="num"' if i in num else ""
        text = str(v) if i in trusted and tag == "td" else html.escape("" if v is None else str(v))
        return f"<{tag}{attr}>{text}</{tag}>"

    head = "".join(cell("th", i, c) for i, c in enumerate(columns))
    body = []
    for k, r in enumerate(rows):
        rc = f' class="{html.escape(row_classes[k], quote=True)}"' if row_classes and row_classes[k] else ""
        body.append(f"<tr{rc}>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    klass = "fk-table" + (f" {cls}" if cls else "")
    return (f'<div class="fk-scroll"><table class="{html.escape(klass, quote=True)}">{cap}<thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(body)}</tbody></table></div>")


def sparkline(values: Sequence[float], *, labels: Sequence[str] = (), width: int = 160, height: int = 40,
              reference: float | None = None, band: tuple[float, float] | None = None,
              color: str = "#0969da", title: str = "") -> str:
    """A small inline SVG line of a series (missing values break the line), last point marked.

    Parameters
    ----------
    values : list of float
        The series, oldest first.
    labels : list of str, optional
        A label per point (``"Sep 2025: 85"``), listed in the SVG's title
        (what a screen reader and a hover show).
    reference : float, optional
        A dashed horizontal line (e.g. the target).
    band : (low, high), optional
        A range drawn at the last point (e.g. a forecast's interval).
    title : str
        Accessible description.

    Returns
    -------
    str
        ``<svg ...>`` markup, with every text escaped.

    Examples
    --------
    >>> s = sparkline([1, 2, float("nan"), 3, 4], title="leads")
    >>> s.startswith('<svg class="fk-spark"') and s.count("<polyline") == 2
    True
    """
    vals = [None if _bad(v) else float(v) for v in values]
    known = [v for v in vals if v is not None]
    extra = [x for x in ([reference] if reference is not None and not _bad(reference) else [])
             + (list(band) if band is not None and not any(_bad(b) for b in band) else [])]
    pad = 4.0
    desc = title
    if labels:
        desc = (title + " — " if title else "") + "; ".join(str(x) for x in labels)
    head = (f'<svg class="fk-spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'preserveAspectRatio="none" role="img" aria-label="{html.escape(title, quote=True)}">'
            f"<title>{html.escape(desc)}</title>")
    if not known:
        return head + "</svg>"
    lo, hi = min(known + extra), max(known + extra)
    lo = min(lo, 0.0) if lo >= 0 else lo
    span = hi - lo or 1.0
    n = len(vals)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * (i / max(n - 1, 1))
        y = height - pad - (height - 2 * pad) * ((v - lo) / span)
        return round(x, 1), round(y, 1)

    parts = []
    if reference is not None and not _bad(reference):
        _, y = xy(0, float(reference))
        parts.append(f'<line x1="{pad}" x2="{width - pad}" y1="{y}" y2="{y}" stroke="#57606a" '
                     'stroke-width="1" stroke-dasharray="3 2" vector-effect="non-scaling-stroke"/>')
    run: list[tuple[float, float]] = []
    runs = []
    for i, v in enumerate(vals):
        if v is None:
            if run:
                runs.append(run)
            run = []
        else:
            run.append(xy(i, v))
    if run:
        runs.append(run)
    for r in runs:
        if len(r) == 1:
            parts.append(f'<circle cx="{r[0][0]}" cy="{r[0][1]}" r="1.5" fill="{color}"/>')
        else:
            pts = " ".join(f"{x},{y}" for x, y in r)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.6" '
                         'stroke-linejoin="round" stroke-linecap="round" vector-effect="non-scaling-stroke"/>')
    if band is not None and not any(_bad(b) for b in band):
        x, y1 = xy(n - 1, float(band[0]))
        _, y2 = xy(n - 1, float(band[1]))
        parts.append(f'<line x1="{x}" x2="{x}" y1="{y1}" y2="{y2}" stroke="{color}" stroke-width="3" '
                     'stroke-opacity="0.35"/>')
    if vals[-1] is not None:
        x, y = xy(n - 1, vals[-1])
        parts.append(f'<circle cx="{x}" cy="{y}" r="2.6" fill="{color}"/>')
    return head + "".join(parts) + "</svg>"


#: What makes a spreadsheet read a cell as a formula (OWASP's list for CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame):
    """A copy of ``frame`` whose text cells cannot run as spreadsheet formulas.

    Text from the data (a segment value such as ``=HYPERLINK("http://x", "y")``)
    would run as a formula when the CSV is opened in Excel or LibreOffice.
    Every text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
    return gets a leading apostrophe, which spreadsheets show as text; numbers
    and other cells are unchanged.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"value": ['=HYPERLINK("http://x","y")', "Starter", "-5"], "leads": [1, 2, -3]})
    >>> safe = spreadsheet_safe(df)
    >>> print(*safe["value"], sep="  ")
    '=HYPERLINK("http://x","y")  Starter  '-5
    >>> safe["leads"].tolist()
    [1, 2, -3]
    """
    import pandas as pd

    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)
                or isinstance(s.dtype, pd.CategoricalDtype)):
            continue
        text = s.astype("string")
        risky = text.str.startswith(_FORMULA_START).fillna(False).astype(bool)
        if risky.any():
            out[col] = s.astype(object).where(~risky, "'" + text.astype(object))
    return out
