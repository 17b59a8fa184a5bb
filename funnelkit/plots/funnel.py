"""Plots of the funnel view: funnel, segment comparison, cohorts, trend, time to convert.

Each function takes the output of the matching :mod:`funnelkit.funnel`
function, draws on ``ax`` (or a new figure) and returns the Axes.  None
calls ``plt.show()``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from ._style import LOST, PALETTE, WON, get_ax, numbers_or_plain, percent_axis, tidy

__all__ = ["funnel_chart", "compare_chart", "cohort_heatmap", "trend_chart", "time_to_convert_chart"]


def _need(data, cols: Sequence[str], what: str) -> None:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"expected a DataFrame (the output of {what}), got {type(data).__name__}.")
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise ValueError(
            f"column(s) {', '.join(map(repr, missing))} missing: pass the output of {what}. "
            f"Columns present: {', '.join(map(str, data.columns))}."
        )


def _pick_segment(df: pd.DataFrame, segment, key_cols: Sequence[str], what: str) -> pd.DataFrame:
    """Select one segment with segment=(column, value); error if several remain."""
    if segment is not None:
        col, val = segment
        if col not in df.columns:
            raise ValueError(f"no column {col!r} in the {what} data; columns: {', '.join(map(str, df.columns))}.")
        df = df.loc[df[col].astype(object) == val]
        if df.empty:
            raise ValueError(f"no rows with {col} == {val!r} in the {what} data.")
    if df.duplicated(list(key_cols)).any():
        raise ValueError(
            f"the {what} data holds several segments; pick one with segment=(column, value)."
        )
    return df


def _pct(x: float, numbers=None) -> str:
    if not np.isfinite(x):
        return "n/a"
    return numbers_or_plain(numbers).pct(x)


# ---------------------------------------------------------------------------
def funnel_chart(
    data: pd.DataFrame,
    *,
    step: str = "step",
    count: str = "entered",
    segment: tuple[str, object] | None = None,
    intervals: bool = True,
    title: str | None = None,
    color: str = PALETTE[0],
    numbers=None,
    ax: Axes | None = None,
) -> Axes:
    """Draw a funnel: one centred bar per step, widest at the top.

    The bar's width is the number of leads that reached the step.  Beside
    each bar (never on it) are the count, the table's step conversion from
    the step above (``step_conversion``: over matured leads, so leads still
    in flight are not counted as lost) with its interval, and the table's
    ``overall_conversion`` ("of top": the life-table share of the first
    step's leads that get this far), so every percentage on the chart is the
    one in :func:`funnelkit.funnel.conversion`'s table.  Leads still in flight
    at a step are drawn as a lighter band at the end of its bar, with a legend.

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
    numbers : object, optional
        Writes the counts and percentages (``count`` and ``pct`` methods:
        a :class:`funnelkit.reports.NumberFormat` with a report's thousands
        separator and decimal mark); default ``1,234`` and ``6.9%``.
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> f = fk.funnel.conversion(fk.datasets.load_demo())
    >>> ax = fk.plots.funnel_chart(f)
    >>> len(ax.patches) >= 5
    True
    >>> any(f"{f['overall_conversion'].iloc[2]:.0%} of top" in t.get_text() for t in ax.texts)
    True
    """
    _need(data, [step, count], "funnelkit.funnel.conversion")
    nf = numbers_or_plain(numbers)
    pct = nf.pct
    df = _pick_segment(data, segment, [step], "funnel")
    df = df.sort_values("step_index") if "step_index" in df.columns else df
    ax = get_ax(ax)
    counts = df[count].to_numpy(dtype=float)
    labels = [str(s) for s in df[step]]
    top = counts[0] if len(counts) and counts[0] > 0 else 1.0
    y = np.arange(len(counts))[::-1]
    left = (top - counts) / 2
    flying = (df["in_flight"].fillna(0).to_numpy(dtype=float) if "in_flight" in df.columns
              else np.zeros(len(counts)))
    settled = counts - flying
    ax.barh(y, settled, left=left, color=color, alpha=0.9, height=0.7, label="leads that reached the step")
    if flying.sum() > 0:
        ax.barh(y, flying, left=left + settled, color=color, alpha=0.35, height=0.7, hatch="//",
                edgecolor="white", linewidth=0, label="of them still in flight (not decided yet)")
    has_rate = "step_conversion" in df.columns
    has_overall = "overall_conversion" in df.columns
    prev = np.r_[np.nan, counts[:-1]]
    for i, (yy, c) in enumerate(zip(y, counts)):
        text = nf.count(c)
        if i > 0 and prev[i] > 0:
            rate = df["step_conversion"].iloc[i - 1] if has_rate else c / prev[i]
            text += f"  ·  step {pct(rate)}"
            if intervals and {"step_ci_low", "step_ci_high"} <= set(df.columns):
                lo = df["step_ci_low"].iloc[i - 1]
                hi = df["step_ci_high"].iloc[i - 1]
                if pd.notna(lo):
                    text += f" [{pct(lo)}–{pct(hi)}]"
            share = df["overall_conversion"].iloc[i] if has_overall else c / top
            text += f"  ·  {pct(share)} of top"
        if flying[i] > 0:
            text += f"  ·  {nf.count(flying[i])} in flight"
        ax.text(top * 1.03, yy, text, ha="left", va="center", fontsize=9, color="0.15")
    # long step names (process logs: "Declaration FINAL_APPROVED by SUPERVISOR") wrap
    # instead of squeezing the bars
    ax.set_yticks(y, [textwrap.fill(lab, 22) for lab in labels])
    ax.set_xticks([])
    ax.set_xlim(0, top * 2.1)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    if flying.sum() > 0:
        ax.legend(loc="upper left", bbox_to_anchor=(0, 0), ncol=2, fontsize=8, frameon=False)
    if has_rate:
        ax.annotate(
            "step % = of the leads whose time to move on has run out, the share that did; "
            "of top = the table's overall conversion",
            xy=(0, 0), xycoords="axes fraction", xytext=(0, -24), textcoords="offset points",
            fontsize=8, color="0.35", va="top",
        )
    ax.set_title(title or "Funnel: leads reaching each step")
    return tidy(ax)


# ---------------------------------------------------------------------------
def compare_chart(
    data: pd.DataFrame,
    *,
    kind: str = "step",
    title: str | None = None,
    palette: Sequence[str] = PALETTE,
    ax: Axes | None = None,
) -> Axes:
    """Grouped bars: each segment's conversion at every transition, with intervals.

    One group of bars per transition, one bar per segment, with the rate's
    interval as an error bar.  A star marks a segment that differs
    significantly from its reference (adjusted p-value); hatched bars had
    too few leads to be tested.  With ``against="rest"`` data, a grey tick
    shows each segment's reference rate (all the other leads).

    Parameters
    ----------
    data : DataFrame
        Output of :func:`funnelkit.funnel.compare`.
    kind : {"step", "overall", "all"}
        Which rows to draw: the step transitions, the end-to-end comparison,
        or both.
    title : str, optional
    palette : sequence of colours
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit.plots.funnel import compare_chart
    >>> c = fk.funnel.compare(fk.datasets.load_demo(), by="product")
    >>> ax = compare_chart(c)
    >>> len(ax.patches)  # 3 products x 4 transitions
    12
    """
    _need(data, ["transition", "rate", "rate_ci_low", "rate_ci_high", "significant", "kind"],
          "funnelkit.funnel.compare")
    if kind not in ("step", "overall", "all"):
        raise ValueError(f"kind must be 'step', 'overall' or 'all'; got {kind!r}.")
    df = data if kind == "all" else data.loc[data["kind"] == kind]
    if df.empty:
        raise ValueError(f"no {kind!r} rows in the comparison data.")
    seg_cols = list(data.columns[: list(data.columns).index("transition")])
    labels = (df[seg_cols].astype(str).agg(", ".join, axis=1) if seg_cols
              else pd.Series(["segment"] * len(df), index=df.index))
    segs = list(dict.fromkeys(labels))
    trans = list(dict.fromkeys(df["transition"]))
    ax = get_ax(ax, figsize=(max(7, 1.6 * len(trans) + 1), 4.5))
    width = 0.8 / max(len(segs), 1)
    x0 = np.arange(len(trans))
    for si, seg in enumerate(segs):
        part = df.loc[labels == seg].set_index("transition").reindex(trans)
        xs = x0 - 0.4 + width * (si + 0.5)
        rate = part["rate"].to_numpy(dtype=float)
        lo = part["rate_ci_low"].to_numpy(dtype=float)
        hi = part["rate_ci_high"].to_numpy(dtype=float)
        small = part["too_small"].fillna(False).to_numpy(dtype=bool) if "too_small" in part else np.zeros(len(xs), bool)
        color = palette[si % len(palette)]
        bars = ax.bar(xs, np.nan_to_num(rate), width=width * 0.92, color=color, alpha=0.85, label=seg)
        for b, s_ in zip(bars, small):
            if s_:
                b.set_hatch("//")
                b.set_alpha(0.4)
        err = np.vstack([np.clip(rate - lo, 0, None), np.clip(hi - rate, 0, None)])
        ax.errorbar(xs, rate, yerr=np.nan_to_num(err), fmt="none", ecolor="black", elinewidth=1, capsize=2)
        if "ref_rate" in part and (part["reference"] == "rest").all():
            ax.hlines(part["ref_rate"], xs - width * 0.45, xs + width * 0.45, colors="0.35", linewidth=1.5)
        sig = part["significant"].fillna(False).to_numpy(dtype=bool)
        for x, h, s_ in zip(xs, np.nan_to_num(hi), sig):
            if s_:
                ax.text(x, h + 0.01, "*", ha="center", va="bottom", fontsize=12, fontweight="bold")
    ax.set_xticks(x0, [t.replace(" -> ", "\n→ ") for t in trans], fontsize=9)
    ax.set_ylabel("conversion")
    ax.set_ylim(0, min(1.05, max(0.1, np.nanmax(df["rate_ci_high"].to_numpy(dtype=float)) * 1.15)))
    percent_axis(ax)
    handles, names = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="0.35", linewidth=1.5), Line2D([], [], linestyle="none", marker="$*$",
                                                                    color="black", markersize=8)]
    names += ["all other leads", "significant (adjusted)"]
    ax.legend(handles, names, fontsize=8, frameon=False, ncols=min(4, len(names)), loc="upper right")
    who = ", ".join(seg_cols) if seg_cols else "segment"
    level = data.attrs.get("level", 0.95)
    ax.set_title(title or f"Conversion at each step by {who} ({level:.0%} intervals)")
    return tidy(ax)


# ---------------------------------------------------------------------------
def cohort_heatmap(
    data: pd.DataFrame,
    *,
    value: str = "overall_conversion",
    segment: tuple[str, object] | None = None,
    title: str | None = None,
    cmap: str = "Blues",
    ax: Axes | None = None,
) -> Axes:
    """Cohort heatmap: one row per entry cohort, one column per step.

    Cells show the rate (and the count it is over); immature cells - where
    leads are still in flight - are hatched and labelled with a "~", their
    values are provisional.

    Parameters
    ----------
    data : DataFrame
        Output of :func:`funnelkit.funnel.cohorts`.
    value : {"overall_conversion", "step_conversion"}
        Share of the cohort that reached each step, or the conversion from
        each step to the next.
    segment : (column, value), optional
        Which segment to draw when ``data`` has several.
    title, cmap : str, optional
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit.plots.funnel import cohort_heatmap
    >>> ax = cohort_heatmap(fk.funnel.cohorts(fk.datasets.load_demo()))
    >>> ax.get_ylabel()
    'cohort (first step entered)'
    """
    _need(data, ["cohort", "step", value, "immature", "entered"], "funnelkit.funnel.cohorts")
    if value not in ("overall_conversion", "step_conversion"):
        raise ValueError(f"value must be 'overall_conversion' or 'step_conversion'; got {value!r}.")
    df = _pick_segment(data, segment, ["cohort", "step"], "cohort")
    df = df.loc[df["cohort"].notna()]
    steps = [str(s) for s in df["step"].cat.categories] if hasattr(df["step"], "cat") else list(
        dict.fromkeys(df["step"].astype(str)))
    cols = steps[1:] if value == "overall_conversion" else steps[:-1]
    piv = df.assign(step=df["step"].astype(str)).pivot(index="cohort", columns="step", values=value)
    piv = piv.reindex(columns=cols)
    imm = df.assign(step=df["step"].astype(str)).pivot(index="cohort", columns="step", values="immature")
    imm = imm.reindex(index=piv.index, columns=cols).fillna(False).astype(bool)
    base_col = "entered" if value == "overall_conversion" else "matured"
    counts = df.assign(step=df["step"].astype(str)).pivot(index="cohort", columns="step", values=base_col)
    counts = counts.reindex(index=piv.index, columns=cols)
    n_rows = len(piv)
    ax = get_ax(ax, figsize=(1.3 * len(cols) + 2.5, 0.38 * n_rows + 1.6))
    vals = piv.to_numpy(dtype=float)
    im = ax.imshow(vals, aspect="auto", cmap=cmap, vmin=0, vmax=max(np.nanmax(vals) if np.isfinite(vals).any() else 1, 1e-9))
    for (r, c), v in np.ndenumerate(vals):
        if not np.isfinite(v):
            continue
        dark = v > 0.6 * np.nanmax(vals)
        mark = "~" if imm.iat[r, c] else ""
        n = counts.iat[r, c]
        label = f"{mark}{_pct(v)}" + (f"\n{int(n):,}" if pd.notna(n) else "")
        ax.text(c, r, label, ha="center", va="center", fontsize=7.5, color="white" if dark else "black")
        if imm.iat[r, c]:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.55", linewidth=0))
    ax.set_xticks(np.arange(len(cols)), cols)
    ax.set_yticks(np.arange(n_rows), [pd.Timestamp(t).strftime("%Y-%m-%d") for t in piv.index])
    ax.set_ylabel("cohort (first step entered)")
    ax.set_xlabel("share of the cohort reaching the step" if value == "overall_conversion"
                  else "conversion from the step to the next")
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cb.ax.yaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    ax.set_title(title or "Cohorts: conversion by entry period (~ = still maturing)")
    return ax


# ---------------------------------------------------------------------------
def trend_chart(
    data: pd.DataFrame,
    *,
    transitions: Sequence[str] | None = None,
    segment: tuple[str, object] | None = None,
    title: str | None = None,
    palette: Sequence[str] = PALETTE,
    numbers=None,
    ax: Axes | None = None,
) -> Axes:
    """Each step's conversion over time, with intervals; immature periods hollow.

    The legend sits under the chart (long transition names of process logs
    wrap there instead of squeezing the plot), and the month ticks are
    concise.

    Parameters
    ----------
    data : DataFrame
        Output of :func:`funnelkit.funnel.trend`.
    transitions : list of str, optional
        Which transitions to draw (default: all), e.g. ``["proposal -> close"]``.
    segment : (column, value), optional
        Which segment to draw when ``data`` has several.
    title : str, optional
    palette : sequence of colours
    numbers : object, optional
        Writes the percentages on the axis (``rate`` method: a
        :class:`funnelkit.reports.NumberFormat` with a report's decimal mark).
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit.plots.funnel import trend_chart
    >>> ax = trend_chart(fk.funnel.trend(fk.datasets.load_demo()))
    >>> len(ax.get_legend().get_texts())
    5
    """
    _need(data, ["period", "transition", "rate", "ci_low", "ci_high", "immature"], "funnelkit.funnel.trend")
    df = _pick_segment(data, segment, ["period", "transition"], "trend")
    df = df.loc[df["period"].notna()]
    names = list(dict.fromkeys(df["transition"]))
    if transitions is not None:
        unknown = [t for t in transitions if t not in names]
        if unknown:
            raise ValueError(f"unknown transition(s) {unknown}; present: {names}.")
        names = list(transitions)
    ax = get_ax(ax, figsize=(8, 4.5))
    for i, name in enumerate(names):
        part = df.loc[df["transition"] == name].sort_values("period")
        color = palette[i % len(palette)]
        x = pd.to_datetime(part["period"])
        imm = part["immature"].to_numpy(dtype=bool)
        ax.fill_between(x, part["ci_low"], part["ci_high"], color=color, alpha=0.15, linewidth=0)
        mature_rate = part["rate"].where(~imm)
        ax.plot(x, mature_rate, color=color, marker="o", markersize=4, label=name)
        if imm.any():
            # dashed into the immature periods, hollow markers
            first = max(int(np.argmax(imm)) - 1, 0)
            ax.plot(x.iloc[first:], part["rate"].iloc[first:], color=color, linestyle="--", linewidth=1)
            ax.plot(x[imm], part["rate"][imm], linestyle="none", marker="o", markersize=5,
                    markerfacecolor="white", markeredgecolor=color)
    percent_axis(ax, numbers=numbers)
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("conversion (matured leads)")
    ax.set_xlabel("period the leads entered the step")
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.4", linestyle="--", marker="o", markerfacecolor="white"))
    labels.append("immature (provisional)")
    long = max((len(lab) for lab in labels), default=0) > 30
    labels = [textwrap.fill(lab, 60) for lab in labels]
    ax.legend(handles, labels, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(0, -0.2),
              ncols=1 if long else 3)
    ax.set_title(title or "Step conversion over time")
    return tidy(ax)


# ---------------------------------------------------------------------------
def time_to_convert_chart(
    data,
    *,
    segment: tuple[str, object] | None = None,
    show_lost: bool = True,
    show_km: bool = True,
    title: str | None = None,
    palette: Sequence[str] = PALETTE,
    ax: Axes | None = None,
) -> Axes:
    """Time-to-convert curves: the chance to have converted (or been lost) by each time.

    Solid steps are the Aalen-Johansen cumulative incidences (won and lost
    compete) with their intervals; the dashed step is the naive
    1 - Kaplan-Meier that censors lost leads, shown to make its overstatement
    visible.  With several segments and no ``segment=``, one converted curve
    per segment is drawn.

    Parameters
    ----------
    data : TimeToConvert or DataFrame
        Output of :func:`funnelkit.funnel.time_to_convert` (or its
        ``.curves``).
    segment : (column, value), optional
    show_lost, show_km : bool
        Draw the lost incidence and the naive KM curve (one segment only).
    title : str, optional
    palette : sequence of colours
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> ttc = fk.funnel.time_to_convert(fk.datasets.load_demo(), start="proposal", end="won")
    >>> from funnelkit.plots.funnel import time_to_convert_chart
    >>> ax = time_to_convert_chart(ttc)
    >>> [t.get_text() for t in ax.get_legend().get_texts()][:2]
    ['converted', 'lost']
    """
    unit, start, end = "days", None, None
    if hasattr(data, "curves"):
        unit, start, end = data.unit, data.start, data.end
        data = data.curves
    _need(data, ["time", "outcome", "estimator", "probability", "ci_low", "ci_high"],
          "funnelkit.funnel.time_to_convert (.curves)")
    seg_cols = list(data.columns[: list(data.columns).index("time")])
    df = data
    if segment is not None:
        df = _pick_segment(df, segment, ["time", "outcome", "estimator"], "time-to-convert")
        seg_cols = []
    ax = get_ax(ax, figsize=(7.5, 4.5))
    aj = df.loc[df["estimator"] == "aalen_johansen"]
    if seg_cols:
        keys = df[seg_cols].astype(str).agg(", ".join, axis=1)
        for i, key in enumerate(dict.fromkeys(keys)):
            part = aj.loc[(keys.loc[aj.index] == key) & (aj["outcome"] == "converted")]
            _step(ax, part, palette[i % len(palette)], key)
    else:
        for outcome, color in (("converted", WON), ("lost", LOST)):
            if outcome == "lost" and not show_lost:
                continue
            _step(ax, aj.loc[aj["outcome"] == outcome], color, outcome)
        if show_km:
            km = df.loc[(df["estimator"] == "kaplan_meier") & (df["outcome"] == "converted")]
            if len(km):
                t = np.r_[0.0, km["time"].to_numpy(dtype=float)]
                p = np.r_[0.0, km["probability"].to_numpy(dtype=float)]
                ax.step(t, p, where="post", color=WON, linestyle="--", linewidth=1.2,
                        label="converted, naive KM (lost censored)")
    percent_axis(ax)
    ax.set_ylim(0, 1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"{unit} since {start}" if start else unit)
    ax.set_ylabel("share of leads")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.set_title(title or (f"Time from {start} to {end}" if start else "Time to convert"))
    return tidy(ax)


def _step(ax: Axes, part: pd.DataFrame, color: str, label: str) -> None:
    if part.empty:
        return
    t = np.r_[0.0, part["time"].to_numpy(dtype=float)]
    p = np.r_[0.0, part["probability"].to_numpy(dtype=float)]
    lo = np.r_[0.0, part["ci_low"].to_numpy(dtype=float)]
    hi = np.r_[0.0, part["ci_high"].to_numpy(dtype=float)]
    ax.step(t, p, where="post", color=color, linewidth=1.8, label=label)
    ax.fill_between(t, lo, hi, step="post", color=color, alpha=0.15, linewidth=0)
