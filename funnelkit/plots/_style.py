"""Shared look of funnelkit figures, and how they write numbers.

Every number a chart writes (bar labels, legends, titles, tick labels) goes
through a *numbers* object with the methods ``count(v)``, ``pct(v)``,
``rate(v, digits)``, ``number(v, digits)`` and ``money(v, compact=False)``.
The default, :data:`PLAIN`, writes ``1,234``, ``20%`` / ``6.9%`` and
``1.2M``; a report passes its :class:`funnelkit.reports.NumberFormat` (the
plan's currency, thousands separator and decimal mark), so a chart writes
numbers exactly as the tables beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, PercentFormatter

#: Colours used across plots: one per step or segment, colour-blind safe (Okabe-Ito).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
WON, LOST, OPEN = "#009E73", "#D55E00", "#999999"


def get_ax(ax: Axes | None, figsize: tuple[float, float] = (7, 4)) -> Axes:
    """The Axes to draw on: the one given, else a new figure's."""
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


class _Plain:
    """funnelkit's default chart numbers: ``1,234``, ``20%`` (``6.9%`` below 9.5%), ``1.2M``, ``347k``."""

    decimal = "."

    @staticmethod
    def _bad(v) -> bool:
        try:
            return v is None or not math.isfinite(float(v))
        except (TypeError, ValueError):
            return True

    def number(self, v, digits: int = 0) -> str:
        return "–" if self._bad(v) else f"{float(v):,.{digits}f}".replace("-", "−")

    def count(self, v) -> str:
        return self.number(v, 0)

    def rate(self, v, digits: int = 1) -> str:
        return "–" if self._bad(v) else self.number(float(v) * 100, digits) + "%"

    def pct(self, v) -> str:
        return "–" if self._bad(v) else self.rate(v, 0 if float(v) >= 0.095 else 1)

    def money(self, v, *, compact: bool = False) -> str:
        if self._bad(v):
            return "–"
        x = float(v)
        if compact:
            for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
                if abs(x) >= size * 0.9995:
                    return self.number(x / size, 1 if size > 1e3 else 0) + suffix
        return self.number(x, 0)


#: The default number writing of charts (see the module docstring).
PLAIN = _Plain()


def numbers_or_plain(numbers):
    """The numbers object a chart writes with: the one given, else :data:`PLAIN`."""
    return PLAIN if numbers is None else numbers


def money_writer(numbers=None, money: Callable[[float], str] | None = None, *,
                 compact: bool = True) -> Callable[[float], str]:
    """How a chart writes an amount: ``money`` when given, else ``numbers.money`` (compact by default)."""
    if money is not None:
        return money
    nf = numbers_or_plain(numbers)
    return lambda v: nf.money(v, compact=compact)


def percent_axis(ax: Axes, axis: str = "y", decimals: int = 0, numbers=None) -> Axes:
    """Format an axis holding proportions (0..1) as percentages (with ``numbers``' decimal mark).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from funnelkit.reports import NumberFormat
    >>> fig, ax = plt.subplots()
    >>> percent_axis(ax).yaxis.get_major_formatter()(0.25, 0)
    '25%'
    >>> ax = percent_axis(ax, axis="x", decimals=1, numbers=NumberFormat(thousands="."))
    >>> ax.xaxis.get_major_formatter()(0.125, 0)
    '12,5%'
    >>> plt.close(fig)
    """
    target = ax.yaxis if axis == "y" else ax.xaxis
    if numbers is None:
        target.set_major_formatter(PercentFormatter(1.0, decimals=decimals))
    else:
        target.set_major_formatter(FuncFormatter(lambda v, _: numbers.rate(v, decimals)))
    return ax


def count_axis(ax: Axes, axis: str = "y", numbers=None) -> Axes:
    """Format an axis holding counts with ``numbers``' thousands separator (``1,200``, not ``1200``)."""
    nf = numbers_or_plain(numbers)

    def write(v, _pos):
        if not np.isfinite(v):
            return ""
        return nf.count(v) if float(v).is_integer() else nf.number(v, 1)

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(FuncFormatter(write))
    return ax


def money_axis(ax: Axes, axis: str = "y", write: Callable[[float], str] | None = None) -> Axes:
    """Format an axis holding amounts with ``write`` (default: compact, ``1.2M``)."""
    w = write or money_writer()
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(FuncFormatter(lambda v, _: w(v)))
    return ax


def tidy(ax: Axes) -> Axes:
    """Remove the top and right spines."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax
