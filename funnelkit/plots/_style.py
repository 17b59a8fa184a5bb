"""Shared look of funnelkit figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import PercentFormatter

#: Colours used across plots: one per step or segment, colour-blind safe (Okabe-Ito).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
WON, LOST, OPEN = "#009E73", "#D55E00", "#999999"


def get_ax(ax: Axes | None, figsize: tuple[float, float] = (7, 4)) -> Axes:
    """The Axes to draw on: the one given, else a new figure's."""
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def percent_axis(ax: Axes, axis: str = "y", decimals: int = 0) -> Axes:
    """Format an axis holding proportions (0..1) as percentages."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(PercentFormatter(1.0, decimals=decimals))
    return ax


def tidy(ax: Axes) -> Axes:
    """Remove the top and right spines."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax
