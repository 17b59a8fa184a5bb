"""Plots of the funnel view."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ._style import PALETTE, get_ax, tidy

__all__ = ["funnel_chart"]


def funnel_chart(
    data: pd.DataFrame,
    *,
    step: str = "step",
    count: str = "entered",
    segment: tuple[str, object] | None = None,
    intervals: bool = True,
    title: str | None = None,
    color: str = PALETTE[0],
    ax: Axes | None = None,
) -> Axes:
    """Draw a funnel: one centred bar per step, widest at the top.

    Each bar is labelled with its count, the step conversion from the step
    above and the overall conversion from the first step; with
    ``intervals=True`` the step conversion's interval is printed beside it.

    Parameters
    ----------
    data : DataFrame
        Output of :func:`funnelkit.funnel.conversion`.
    step, count : str
        Column names of the step and the count.
    segment : (column, value), optional
        Which segment to draw when ``data`` has several.
    intervals : bool
        Print the step conversion interval.
    title : str, optional
    color : str
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> ax = fk.plots.funnel_chart(fk.funnel.conversion(fk.datasets.load_demo()))
    >>> len(ax.patches)
    5
    """
    df = data
    if segment is not None:
        col, val = segment
        df = df.loc[df[col] == val]
        if df.empty:
            raise ValueError(f"no rows with {col} == {val!r} in the funnel data.")
    if df[step].duplicated().any():
        raise ValueError(
            "the funnel data holds several segments; pick one with segment=(column, value)."
        )
    df = df.sort_values("step_index") if "step_index" in df.columns else df
    ax = get_ax(ax)
    counts = df[count].to_numpy(dtype=float)
    labels = [str(s) for s in df[step]]
    top = counts[0] if len(counts) and counts[0] > 0 else 1.0
    y = np.arange(len(counts))[::-1]
    ax.barh(y, counts, left=(top - counts) / 2, color=color, alpha=0.85, height=0.7)
    prev = np.r_[np.nan, counts[:-1]]
    for i, (yy, c) in enumerate(zip(y, counts)):
        text = f"{int(c):,}"
        if i > 0 and prev[i] > 0:
            text += f"  ·  {c / prev[i]:.1%} of previous"
            if intervals and {"step_ci_low", "step_ci_high"} <= set(df.columns):
                lo = df["step_ci_low"].iloc[i - 1]
                hi = df["step_ci_high"].iloc[i - 1]
                if pd.notna(lo):
                    text += f" [{lo:.1%}–{hi:.1%}]"
            text += f"  ·  {c / top:.1%} of top"
        ax.text(top / 2, yy, text, ha="center", va="center", fontsize=9,
                color="black", bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})
    ax.set_yticks(y, labels)
    ax.set_xticks([])
    ax.set_xlim(0, top)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or "Funnel: leads reaching each step")
    return tidy(ax)
