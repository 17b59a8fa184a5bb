"""Plots of the pipeline view: board, stage durations, reps, waterfall, swimlane.

Each function takes the output of the matching :mod:`funnelkit.pipeline`
function (``swimlane`` takes the event log), draws on ``ax`` (or a new
figure) and returns the Axes.  None calls ``plt.show()``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .. import pipeline as _pipeline
from .. import stats
from .._common import singular
from ..exceptions import DataWarning
from ._style import (
    LOST,
    OPEN,
    PALETTE,
    WON,
    count_axis,
    get_ax,
    money_axis,
    money_writer,
    numbers_or_plain,
    percent_axis,
    tidy,
)

__all__ = ["pipeline_board", "duration_chart", "rep_chart", "waterfall_chart", "swimlane"]

#: Colours of the age bands on the pipeline board: fresh to old.
AGE_COLORS = ["#56B4E9", "#0072B2", "#E69F00", "#D55E00", "#7F2704"]


def _need(data: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"expected a DataFrame ({what}), got {type(data).__name__}.")
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise ValueError(
            f"column(s) {', '.join(map(repr, missing))} missing: pass the output of {what}. "
            f"Columns present: {', '.join(map(str, data.columns))}."
        )


def _stage_order(data: pd.DataFrame, col: str = "stage") -> list[str]:
    ss = data.attrs.get("stage_set")
    present = [str(s) for s in pd.unique(data[col].astype(str))]
    if ss is not None:
        return [s for s in ss.stages if s in present] or list(ss.stages)
    if isinstance(data[col].dtype, pd.CategoricalDtype):
        return [str(c) for c in data[col].cat.categories if str(c) in present]
    return present


# ---------------------------------------------------------------------------
def pipeline_board(
    data: pd.DataFrame,
    *,
    metric: str = "count",
    age: str = "days_in_stage",
    bins: Sequence[float] = (7, 30, 90),
    title: str | None = None,
    money: Callable[[float], str] | None = None,
    noun: str = "leads",
    numbers=None,
    ax: Axes | None = None,
) -> Axes:
    """The pipeline board: leads (or value) per stage, coloured by age.

    One horizontal bar per stage, first stage on top, split into age bands
    (days in the current stage by default), and labelled with the stage's
    count and value (the value only when some open lead has an amount:
    never a ``0`` that means *unknown*).  Old deals stand out in warm
    colours; the age legend sits under the chart.

    Parameters
    ----------
    data : DataFrame
        Output of :func:`funnelkit.pipeline.snapshot` (closed leads, if any,
        are left out).
    metric : {"count", "value"}
        Bar length: number of leads, or the sum of their amounts.
    age : str
        Column giving the age used for the colours (``"days_in_stage"`` or
        ``"age_days"``).
    bins : sequence of float
        Band edges in days, e.g. ``(7, 30, 90)`` gives 0-7, 7-30, 30-90, >90
        (and "unknown" for missing ages).
    title : str, optional
    money : callable, optional
        Writes an amount (e.g. a report's ``NumberFormat.money`` with its
        currency); default ``1.2M``, ``347k``.
    noun : str
        What the leads are called in the labels (``"deals"``).
    numbers : object, optional
        Writes the counts (and, without ``money``, the amounts): a
        :class:`funnelkit.reports.NumberFormat` with a report's thousands
        separator and decimal mark; default ``1,234``.
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit import pipeline
    >>> from funnelkit.plots import pipeline as pplots
    >>> snap = pipeline.snapshot(fk.datasets.load_demo(), as_of="2025-06-30")
    >>> ax = pplots.pipeline_board(snap)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['qualification', 'meeting', 'proposal', 'close']
    """
    if metric not in {"count", "value"}:
        raise ValueError(f"metric must be 'count' or 'value', got {metric!r}.")
    _need(data, ["stage", age, "amount"], "funnelkit.pipeline.snapshot()")
    df = data
    if "outcome" in df.columns:
        df = df.loc[df["outcome"] == "open"]
    edges = [float(b) for b in bins]
    if sorted(edges) != edges or any(b <= 0 for b in edges):
        raise ValueError(f"bins must be increasing positive day counts, got {bins!r}.")
    nf = numbers_or_plain(numbers)

    def days(d: float) -> str:
        return nf.number(d, 0 if float(d).is_integer() else 1)

    labels = [f"≤{days(edges[0])} d"] + [f"{days(a)}-{days(b)} d" for a, b in zip(edges[:-1], edges[1:])]
    labels += [f">{days(edges[-1])} d"]
    a = df[age].to_numpy(dtype=float)
    band = np.searchsorted(np.asarray(edges), a, side="left")
    band = np.where(np.isnan(a), len(labels), band)
    labels_all = labels + ["unknown"]
    colors = (AGE_COLORS * 2)[: len(labels)] + [OPEN]
    stages = _stage_order(df) if len(df) else _stage_order(data)
    st = df["stage"].astype(str).to_numpy()
    w = np.ones(len(df)) if metric == "count" else df["amount"].fillna(0.0).to_numpy()
    ax = get_ax(ax, figsize=(8, 0.6 * len(stages) + 1.8))
    y = np.arange(len(stages))[::-1]
    left = np.zeros(len(stages))
    for b, (lab, col) in enumerate(zip(labels_all, colors)):
        vals = np.array([w[(st == s) & (band == b)].sum() for s in stages])
        if b == len(labels) and vals.sum() == 0:
            continue
        ax.barh(y, vals, left=left, color=col, height=0.7, label=lab, edgecolor="white", linewidth=0.5)
        left += vals
    amt = df["amount"].fillna(0.0).to_numpy()
    known = df["amount"].notna().to_numpy()
    write = money_writer(nf, money)
    for yy, s, total in zip(y, stages, left):
        here = st == s
        n_here = int(here.sum())
        text = f"  {nf.count(n_here)} {singular(noun) if n_here == 1 else noun}"
        if known[here].any():
            text += f" · {write(amt[here].sum())}"
        ax.text(total, yy, text, va="center", fontsize=9)
    ax.set_yticks(y, stages)
    xlabel = f"open {noun}" if metric == "count" else "open pipeline value"
    ax.set_xlabel(xlabel)
    if metric == "value":
        money_axis(ax, "x", write)
    else:
        count_axis(ax, "x", nf)
    ax.set_xlim(0, max(left.max(), 1) * 1.35)
    ax.legend(title=age.replace("_", " "), loc="upper left", bbox_to_anchor=(0, -0.22), ncols=3, fontsize=8,
              title_fontsize=8, frameon=False, alignment="left")
    as_of = data.attrs.get("as_of")
    if title is None:
        title = "Pipeline board" + (f" as of {pd.Timestamp(as_of):%Y-%m-%d}" if as_of is not None else "")
    ax.set_title(title)
    return tidy(ax)


# ---------------------------------------------------------------------------
def duration_chart(
    data: pd.DataFrame,
    *,
    duration: str | None = None,
    stages: Sequence[str] | None = None,
    max_days: float | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """How long leads stay in each stage: one survival curve per stage.

    Each curve is the Kaplan-Meier estimate of the share of leads still in
    the stage after x days, with open visits treated as censored (so deals
    that are still open neither disappear nor look finished).  The median
    is marked where the curve crosses 50%.

    Parameters
    ----------
    data : DataFrame
        Output of :func:`funnelkit.pipeline.durations` (either ``per``).
    duration : str, optional
        Duration column (default ``days`` or ``cumulative_days``).
    stages : list of str, optional
        Stages to draw (default: all, in pipeline order).
    max_days : float, optional
        Right end of the x axis (default: the 95th percentile of durations).
    title : str, optional
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit import pipeline
    >>> from funnelkit.plots import pipeline as pplots
    >>> d = pipeline.durations(fk.datasets.load_demo(), per="visit")
    >>> ax = pplots.duration_chart(d)
    >>> len(ax.get_legend().get_texts())
    4
    """
    col = duration or ("days" if "days" in data.columns else "cumulative_days")
    _need(data, ["stage", col, "censored"], "funnelkit.pipeline.durations()")
    order = _stage_order(data)
    chosen = list(stages) if stages is not None else order
    unknown = [s for s in chosen if s not in order]
    if unknown:
        raise ValueError(f"stage(s) {unknown} not in the data; stages present: {order}.")
    ax = get_ax(ax)
    st = data["stage"].astype(str).to_numpy()
    days = data[col].to_numpy(dtype=float)
    cens = data["censored"].to_numpy(dtype=bool)
    finite = days[~np.isnan(days)]
    xmax = max_days if max_days is not None else (float(np.quantile(finite, 0.95)) if finite.size else 1.0)
    for i, s in enumerate(chosen):
        m = (st == s) & ~np.isnan(days)
        if not m.any():
            continue
        km = stats.kaplan_meier(days[m], ~cens[m])
        t = np.r_[0.0, km["time"].to_numpy()]
        sv = np.r_[1.0, km["survival"].to_numpy()]
        color = PALETTE[i % len(PALETTE)]
        med = stats.km_quantile(km, 0.5)[0]
        label = f"{s} (median {med:.0f} d, n={int(m.sum()):,})" if not np.isnan(med) else (
            f"{s} (median unknown, n={int(m.sum()):,})")
        ax.step(t, sv, where="post", color=color, label=label, lw=1.8)
        lo = np.r_[1.0, km["ci_low"].to_numpy()]
        hi = np.r_[1.0, km["ci_high"].to_numpy()]
        ax.fill_between(t, lo, hi, step="post", color=color, alpha=0.12, lw=0)
        if not np.isnan(med):
            ax.plot([med], [0.5], "o", color=color, ms=5)
    ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, 1.02)
    percent_axis(ax)
    ax.set_xlabel("days in stage")
    ax.set_ylabel("still in the stage")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title or "Time in each stage (open deals censored)")
    return tidy(ax)


# ---------------------------------------------------------------------------
def rep_chart(
    data: pd.DataFrame,
    *,
    owner: str | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Each rep's win rate with its interval, against the overall rate.

    Reps whose rate differs from their peers beyond chance (after the
    multiple-comparison adjustment) are coloured: green above, red below;
    the others are grey.

    Parameters
    ----------
    data : DataFrame
        Output of :func:`funnelkit.pipeline.rep_performance`.
    owner : str, optional
        The rep column (default: the one ``rep_performance`` used).
    title : str, optional
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit import pipeline
    >>> from funnelkit.plots import pipeline as pplots
    >>> r = pipeline.rep_performance(fk.datasets.load_demo())
    >>> ax = pplots.rep_chart(r)
    >>> len(ax.get_yticklabels())
    8
    """
    owner = owner or data.attrs.get("owner", "owner")
    _need(data, [owner, "rate", "ci_low", "ci_high", "won", "trials", "differs", "diff"],
          "funnelkit.pipeline.rep_performance()")
    df = data.loc[data[owner].notna()].sort_values("rate", kind="stable")
    ax = get_ax(ax, figsize=(7, 0.32 * len(df) + 1.5))
    y = np.arange(len(df))
    color = np.where(~df["differs"], OPEN, np.where(df["diff"] > 0, WON, LOST))
    ax.hlines(y, df["ci_low"], df["ci_high"], color=color, lw=2.2)
    ax.scatter(df["rate"], y, color=color, zorder=3, s=28)
    overall = df["won"].sum() / max(df["trials"].sum(), 1)
    ax.axvline(overall, color="0.4", ls="--", lw=1)
    ax.set_yticks(y, df[owner].astype(str))
    percent_axis(ax, "x")
    basis = data.attrs.get("basis", "closed")
    ax.set_xlabel("win rate (won / closed leads)" if basis == "closed" else "won / leads owned")
    handles = [
        Line2D([], [], color=WON, marker="o", label="above peers"),
        Line2D([], [], color=LOST, marker="o", label="below peers"),
        Line2D([], [], color=OPEN, marker="o", label="no evidence of a difference"),
        Line2D([], [], color="0.4", ls="--", label=f"all reps {overall:.1%}"),
    ]
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="lower right")
    level = data.attrs.get("level", 0.95)
    ax.set_title(title or f"Win rate per rep ({level:.0%} intervals)")
    return tidy(ax)


# ---------------------------------------------------------------------------
def waterfall_chart(
    data: pd.DataFrame,
    *,
    metric: str = "leads",
    segment: tuple[str, object] | None = None,
    title: str | None = None,
    money: Callable[[float], str] | None = None,
    noun: str = "leads",
    numbers=None,
    ax: Axes | None = None,
) -> Axes:
    """The pipeline waterfall between two dates: start, in, out, end.

    Parameters
    ----------
    data : DataFrame
        Output of :func:`funnelkit.pipeline.movement`.
    metric : {"leads", "value"}
    segment : (column, value), optional
        Which segment to draw when ``data`` has several.
    title : str, optional
    money : callable, optional
        Writes an amount (e.g. with a currency); default ``1.2M``, ``347k``.
    noun : str
        What the leads are called on the axis (``"deals"``).
    numbers : object, optional
        Writes the counts on the bars and the axis (and, without ``money``,
        the amounts): a :class:`funnelkit.reports.NumberFormat`; default
        ``1,234``.
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit import pipeline
    >>> from funnelkit.plots import pipeline as pplots
    >>> w = pipeline.movement(fk.datasets.load_demo(), start="2025-05-31", end="2025-06-30")
    >>> ax = pplots.waterfall_chart(w)
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['start', 'entered', 'won', 'lost', 'end']
    """
    if metric not in {"leads", "value"}:
        raise ValueError(f"metric must be 'leads' or 'value', got {metric!r}.")
    _need(data, ["movement", "kind", "leads", "value", "sign"], "funnelkit.pipeline.movement()")
    df = data
    if segment is not None:
        col, val = segment
        df = df.loc[df[col] == val]
        if df.empty:
            raise ValueError(f"no rows with {col} == {val!r} in the movement data.")
    if df["movement"].astype(str).duplicated().any():
        raise ValueError("the movement data holds several segments; pick one with segment=(column, value).")
    rows = df.set_index(df["movement"].astype(str))
    names = ["start", "entered", "won", "lost"] + (["value_change"] if metric == "value" else []) + ["end"]
    ax = get_ax(ax)
    nf = numbers_or_plain(numbers)
    write = money_writer(nf, money)
    level = 0.0
    for i, name in enumerate(names):
        v = float(rows.loc[name, metric])
        kind = rows.loc[name, "kind"]
        if kind == "level":
            bottom, height, color = 0.0, v, PALETTE[0]
            level = v
        else:
            sign = -1.0 if kind == "out" else 1.0
            delta = sign * v
            bottom, height = (level, delta) if delta >= 0 else (level + delta, -delta)
            color = WON if name == "won" else LOST if name == "lost" else (
                PALETTE[2] if delta >= 0 else PALETTE[5])
            if name == "entered":
                color = PALETTE[4]
            ax.plot([i - 0.6, i - 0.4], [level, level], color="0.5", lw=0.8)
            level += delta
        bar = ax.bar(i, height, bottom=bottom, color=color, width=0.6)
        if kind != "level":  # a step's base is no edge of the chart: with nothing in or out it pinned
            for patch in bar:  # the top to the level, and the numbers ran into the title
                patch.sticky_edges.y.clear()
        text = write(abs(v)) if metric == "value" else nf.count(abs(v))
        if kind != "level" and v != 0:  # nothing in or out is "0", not "+0" or "−0"
            text = ("−" if kind == "out" or (kind == "change" and v < 0) else "+") + text.lstrip("-−")
        ax.text(i, bottom + height, text, ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(names)), [n.replace("value_change", "value change") for n in names])
    ax.set_ylabel(f"open {noun}" if metric == "leads" else "open pipeline value")
    if metric == "value":
        money_axis(ax, "y", write)
    else:
        count_axis(ax, "y", nf)
    start, end = data.attrs.get("start"), data.attrs.get("end")
    if title is None:
        title = "Pipeline movement"
        if start is not None and end is not None:
            title += f" {pd.Timestamp(start):%Y-%m-%d} → {pd.Timestamp(end):%Y-%m-%d}"
    ax.set_title(title)
    ax.margins(y=0.12)
    return tidy(ax)


# ---------------------------------------------------------------------------
def swimlane(
    log: pd.DataFrame,
    *,
    leads: Sequence[str] | None = None,
    n: int = 20,
    seed: int = 0,
    as_of=None,
    stages=None,
    title: str | None = None,
    ax: Axes | None = None,
    lead: str = "lead_id",
    stage: str = "stage",
    time: str = "timestamp",
) -> Axes:
    """Individual journeys through the stages: one lane per lead.

    Each lead is a horizontal lane; each stay in a stage is a bar coloured by
    the stage, from entering it to leaving it (a stay still going on at
    ``as_of`` fades out to the right).  Wins are marked with a green dot,
    losses with a red cross.  The picture that makes "pipeline" concrete:
    the funnel counts these lanes.

    Parameters
    ----------
    log : DataFrame
        A canonical event log.
    leads : list of str, optional
        The leads to draw (default: ``n`` leads sampled with ``seed``).
    n : int
        Number of leads to sample when ``leads`` is not given.
    seed : int
        Seed of the sample.
    as_of : date, optional
        Only events up to this moment (default: the log's end).
    stages : stage set, optional
    title : str, optional
    ax : Axes, optional
    lead, stage, time : str
        Column names.

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit import pipeline
    >>> from funnelkit.plots import pipeline as pplots
    >>> ax = pplots.swimlane(fk.datasets.load_demo(), n=10, seed=1)
    >>> len(ax.get_yticklabels())
    10
    """
    if leads is None:
        ids = pd.unique(log[lead])
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}.")
        rng = np.random.default_rng(seed)
        leads = list(rng.choice(ids, size=min(n, len(ids)), replace=False))
    else:
        leads = list(leads)
        unknown = sorted(set(leads) - set(log[lead]))
        if unknown:
            raise ValueError(f"lead(s) not in the log's {lead!r} column: {unknown[:5]}.")
    if as_of is None:  # the whole log's end, not that of the sampled leads
        as_of = log[time].max()
    sub = log.loc[log[lead].isin(set(leads))]
    sub.attrs = log.attrs
    with warnings.catch_warnings():  # the sample ends before the log: not the user's concern
        warnings.simplefilter("ignore", DataWarning)
        v = _pipeline.durations(sub, per="visit", as_of=as_of, stages=stages, segments=[],
                                lead=lead, stage=stage, time=time, amount=None)
        ss = v.attrs["stage_set"]
        T = v.attrs["as_of"]
        snap = _pipeline.snapshot(sub, as_of=T, stages=ss, include_closed=True, segments=[],
                                  lead=lead, stage=stage, time=time, amount=None)
    first = snap.set_index(lead)["first_seen_at"]
    order = sorted(leads, key=lambda x: (first.get(x, pd.NaT) is pd.NaT, first.get(x, pd.NaT), str(x)))
    order = [x for x in order if x in set(v[lead]) | set(snap[lead])]
    ypos = {x: i for i, x in enumerate(order[::-1])}
    ax = get_ax(ax, figsize=(9, 0.3 * len(order) + 1.6))
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(ss.stages)}
    x0 = v["entered_at"].to_numpy()
    end = np.where(v["censored"], np.datetime64(T, "ns"), v["left_at"].to_numpy())
    for s_name, xs, xe, ld, cen in zip(v["stage"].astype(str), x0, end, v[lead], v["censored"]):
        if pd.isna(xs) or pd.isna(xe):
            continue
        width = (xe - xs) / np.timedelta64(1, "D")
        ax.barh(ypos[ld], max(width, 0.3), left=pd.Timestamp(xs), height=0.6, color=colors[s_name],
                alpha=0.45 if cen else 0.95, hatch="//" if cen else None, edgecolor="white", lw=0.3)
    closed = snap.loc[snap["outcome"] != "open"]
    for oc, marker, col in (("won", "o", WON), ("lost", "X", LOST)):
        c = closed.loc[closed["outcome"] == oc]
        ax.scatter(c["closed_at"], [ypos[x] for x in c[lead]], marker=marker, color=col, s=36,
                   zorder=3, edgecolor="white", linewidth=0.5)
    ax.set_yticks(list(ypos.values()), [str(x) for x in ypos])
    ax.set_xlabel("date")
    handles = [Patch(color=colors[s], label=s) for s in ss.stages]
    handles += [
        Patch(facecolor="0.7", hatch="//", alpha=0.5, label=f"still there at {pd.Timestamp(T):%Y-%m-%d}"),
        Line2D([], [], marker="o", color=WON, ls="", label="won"),
        Line2D([], [], marker="X", color=LOST, ls="", label="lost"),
    ]
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or "Lead journeys through the pipeline")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return tidy(ax)
