"""Plots of forecasts and backtests: fan chart, target, backtest, calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from .. import stats
from ._style import (
    LOST,
    PALETTE,
    count_axis,
    get_ax,
    money_axis,
    money_writer,
    numbers_or_plain,
    percent_axis,
    tidy,
)

__all__ = ["fan_chart", "target_chart", "backtest_chart", "calibration_chart"]

_QUANTITIES = ("wins", "revenue")


def _check_quantity(quantity: str) -> None:
    if quantity not in _QUANTITIES:
        raise ValueError(f"quantity must be 'wins' or 'revenue', got {quantity!r}.")


def _check_known(fc, quantity: str) -> None:
    """A revenue chart of a forecast whose revenue is unknown (no open lead has an amount) would
    be empty: say so, and what to draw instead."""
    if quantity == "revenue" and not np.isfinite(fc.total["expected_revenue"].iloc[0]):
        raise ValueError("quantity='revenue': this forecast's revenue is unknown (no open lead has an amount); "
                         "draw quantity='wins'.")


def _writers(quantity: str, numbers, money):
    """How a forecast chart writes its quantity in labels, and on its axis.

    Revenue: ``money`` when given (for both), else ``numbers.money`` (in full
    in labels, compact on the axis); wins: ``numbers.count``.
    """
    nf = numbers_or_plain(numbers)
    if quantity == "revenue":
        return money_writer(nf, money, compact=False), money_writer(nf, money, compact=True)
    return nf.count, None


def _value_axis(ax: Axes, axis: str, quantity: str, numbers, money) -> None:
    if quantity == "revenue":
        money_axis(ax, axis, _writers(quantity, numbers, money)[1])
    else:
        count_axis(ax, axis, numbers)


def _crm_key(total: pd.DataFrame, quantity: str) -> tuple[str, str]:
    """The CRM weighted pipeline to draw: within the horizon when the forecast has it."""
    if f"horizon_weighted_{'pipeline' if quantity == 'revenue' else 'wins'}" in total.columns:
        return (f"horizon_weighted_{'pipeline' if quantity == 'revenue' else 'wins'}",
                "weighted pipeline, within the horizon (CRM)")
    return ("weighted_pipeline" if quantity == "revenue" else "weighted_wins"), "weighted pipeline (CRM)"


def _totals(fc, quantity: str) -> np.ndarray:
    """Cumulative totals per draw and period: shape (n_draws, n_periods)."""
    d = fc.draws_.groupby(["draw", "period_end"], sort=True)[quantity].sum().unstack("period_end")
    return np.cumsum(d.to_numpy(dtype=float), axis=1)


def fan_chart(
    fc,
    *,
    quantity: str = "revenue",
    levels: tuple[float, ...] = (0.5, 0.8, 0.95),
    target: float | None = None,
    baseline: bool = True,
    title: str | None = None,
    color: str = PALETTE[0],
    money=None,
    numbers=None,
    ax: Axes | None = None,
) -> Axes:
    """Cumulative forecast over the coming periods, with nested prediction bands.

    The bands are the model's (quantiles of its draws).  A calibrated
    forecast (``calibrate=True``, as reports make) states another range: the
    model's corrected by its own past misses.  That range, and the expected
    value it is stated with, are drawn at the horizon as a black bar, so the
    chart shows the numbers the text gives.

    Parameters
    ----------
    fc : Forecast
        Output of :func:`funnelkit.forecast.forecast` (use ``freq=`` for
        several periods).
    quantity : {"revenue", "wins"}
    levels : tuple of float
        Prediction-interval levels drawn as bands, widest palest.
    target : float, optional
        Draw the target as a horizontal line.
    baseline : bool
        Mark the weighted pipeline (the CRM's figure) at the horizon.
    title : str, optional
    color : str
    money : callable, optional
        Writes an amount with its currency (e.g. a report's
        ``NumberFormat.money``), on the axis and in the legend.
    numbers : object, optional
        Writes counts and percentages (``count``, ``pct``, ``rate``,
        ``money`` methods: a :class:`funnelkit.reports.NumberFormat`); the
        default writes ``1,234`` and ``80%``.
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> f = fk.forecast.forecast(fk.datasets.load_demo(), as_of="2025-06-30", freq="MS", n_draws=200)
    >>> from funnelkit.plots.forecast import fan_chart
    >>> ax = fan_chart(f, quantity="wins")
    >>> ax.get_ylabel()
    'cumulative wins'
    """
    _check_quantity(quantity)
    _check_known(fc, quantity)
    nf = numbers_or_plain(numbers)
    write, _ = _writers(quantity, numbers, money)
    ax = get_ax(ax)
    cum = _totals(fc, quantity)
    x = [fc.as_of_, *pd.to_datetime(fc.periods_["period_end"])]
    zeros = np.zeros((cum.shape[0], 1))
    cum = np.concatenate([zeros, cum], axis=1)
    # the range a calibrated forecast states (one total row), drawn beside the model's bands
    t = fc.total.iloc[0] if len(fc.total) == 1 else pd.Series(dtype=object)
    how = str(t.get("range" if quantity == "wins" else "revenue_range", "") or "")
    stated = t.reindex([f"expected_{quantity}", f"{quantity}_low", f"{quantity}_high"]).to_numpy(dtype=float)
    calibrated = how.startswith("calibrated") and bool(np.isfinite(stated).all())
    for i, lev in enumerate(sorted(levels, reverse=True)):
        a = (1 - lev) / 2
        lo, hi = np.quantile(cum, a, axis=0), np.quantile(cum, 1 - a, axis=0)
        ax.fill_between(x, lo, hi, color=color, alpha=0.15 + 0.15 * i, lw=0,
                        label=f"{nf.rate(lev, 0)} interval" + (" (model)" if calibrated else ""))
    ax.plot(x, cum.mean(axis=0), color=color, lw=2, marker="o", ms=4,
            label="expected" + (" (model)" if calibrated else ""))
    if calibrated:  # the range the forecast states: the model's corrected by its own past misses
        e, lo_, hi_ = stated
        ax.errorbar([x[-1]], [e], yerr=[[max(e - lo_, 0.0)], [max(hi_ - e, 0.0)]], fmt="s", ms=5, color="black",
                    capsize=5, lw=1.5, zorder=6, label=f"{nf.rate(fc.level_, 0)} range, {how}")
    if baseline:
        key, label = _crm_key(fc.total, quantity)
        val = float(fc.total[key].iloc[0])
        ax.scatter([x[-1]], [val], marker="D", color=LOST, zorder=5, label=label)
    if target is not None:
        ax.axhline(target, color="black", ls="--", lw=1, label=f"target {write(target)}")
    ax.set_ylabel(f"cumulative {quantity}")
    ax.set_xlabel("period end")
    _value_axis(ax, "y", quantity, numbers, money)
    ax.set_title(title or f"Forecast from the open pipeline as of {fc.as_of_:%Y-%m-%d}")
    ax.legend(frameon=False, fontsize="small", loc="upper left")
    for lab in ax.get_xticklabels():
        lab.set_rotation(30)
        lab.set_horizontalalignment("right")
    return tidy(ax)


def target_chart(
    fc,
    *,
    target: float,
    quantity: str = "revenue",
    bins: int = 40,
    title: str | None = None,
    color: str = PALETTE[0],
    money=None,
    numbers=None,
    ax: Axes | None = None,
) -> Axes:
    """Distribution of the forecast total against a target.

    A histogram of the simulated totals over the horizon, the expected
    value, the prediction interval, the weighted pipeline and the target;
    the title gives the probability of reaching the target.

    Parameters
    ----------
    fc : Forecast
    target : float
    quantity : {"revenue", "wins"}
    bins : int
    title : str, optional
    color : str
    money : callable, optional
        Writes an amount with its currency (e.g. a report's
        ``NumberFormat.money``): every amount in the legend and on the
        axis.  Default: ``numbers.money`` (``16,510`` in the legend,
        ``15k`` on the axis).
    numbers : object, optional
        Writes counts and percentages (``count``, ``pct``, ``rate``,
        ``money`` methods: a :class:`funnelkit.reports.NumberFormat`, with
        the plan's currency, thousands separator and decimal mark).
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> f = fk.forecast.forecast(fk.datasets.load_demo(), as_of="2025-06-30", n_draws=200)
    >>> from funnelkit.plots.forecast import target_chart
    >>> ax = target_chart(f, target=60, quantity="wins")
    >>> "P(reach target)" in ax.get_title()
    True
    >>> ax = target_chart(f, target=400_000, money=lambda v: f"€{v:,.0f}")
    >>> [t.get_text() for t in ax.get_legend().get_texts()][-1]
    'target €400,000'
    """
    _check_quantity(quantity)
    _check_known(fc, quantity)
    nf = numbers_or_plain(numbers)
    write, _ = _writers(quantity, numbers, money)
    ax = get_ax(ax)
    tot = fc.draws_.groupby("draw")[quantity].sum().to_numpy(dtype=float)
    p = float((tot >= target).mean())
    ax.hist(tot, bins=bins, color=color, alpha=0.6, label="simulated totals")
    r = fc.total.iloc[0]
    lo_key, hi_key = (f"{quantity}_low", f"{quantity}_high")
    exp_key = f"expected_{quantity}"
    ax.axvspan(r[lo_key], r[hi_key], color=color, alpha=0.12,
               label=f"{nf.rate(fc.level_, 0)} interval: {write(r[lo_key])}–{write(r[hi_key])}")
    ax.axvline(r[exp_key], color=color, lw=2, label=f"expected {write(r[exp_key])}")
    key, label = _crm_key(fc.total, quantity)
    ax.axvline(r[key], color=LOST, lw=1.5, ls=":", label=f"{label} {write(r[key])}")
    ax.axvline(target, color="black", lw=1.5, ls="--", label=f"target {write(target)}")
    ax.set_xlabel(f"{quantity} by {fc.horizon_end_:%Y-%m-%d}")
    ax.set_ylabel("draws")
    _value_axis(ax, "x", quantity, numbers, money)
    count_axis(ax, "y", numbers)
    ax.set_title(title or f"P(reach target) = {nf.rate(p, 0)}")
    # under the chart: the labels carry the amounts and would cover the bars
    ax.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(0, -0.16), ncols=2)
    return tidy(ax)


def backtest_chart(
    bt,
    *,
    quantity: str = "wins",
    baseline: bool = True,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Forecast vs actual at each backtest cutoff, with intervals.

    Parameters
    ----------
    bt : Backtest
        Output of :func:`funnelkit.forecast.backtest`.
    quantity : {"wins", "revenue"}
    baseline : bool
        Also draw the baselines: the weighted pipeline within the horizon
        (or the CRM's eventual one for older backtests) and the run-rate,
        each with its range.
    title : str, optional
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> bt = fk.forecast.backtest(fk.datasets.load_demo(), n_cutoffs=3, n_draws=100, calibrate=False)
    >>> from funnelkit.plots.forecast import backtest_chart
    >>> ax = backtest_chart(bt)
    >>> ax.get_ylabel()
    'wins in the horizon'
    """
    _check_quantity(quantity)
    ax = get_ax(ax)
    t = bt.table
    x = np.arange(len(t))
    names = {
        "wins": ("expected_wins", "wins_low", "wins_high", "weighted_wins", "weighted_wins_low",
                 "weighted_wins_high", "actual_wins"),
        "revenue": ("expected_revenue", "revenue_low", "revenue_high", "weighted_pipeline",
                    "weighted_low", "weighted_high", "actual_revenue"),
    }[quantity]
    est, lo, hi, best, blo, bhi, act = names
    crm = "weighted pipeline (CRM, eventual wins)"
    if f"horizon_{best}" in t.columns:
        best, blo, bhi = (f"horizon_{c}" for c in (best, blo, bhi))
        crm = "weighted pipeline, within horizon (CRM)"
    ax.errorbar(
        x - 0.16, t[est], yerr=[t[est] - t[lo], t[hi] - t[est]], fmt="o", color=PALETTE[0],
        capsize=3, label=f"forecast ({bt.level_:.0%} interval)",
    )
    if baseline:
        ax.errorbar(
            x + 0.16, t[best], yerr=[t[best] - t[blo], t[bhi] - t[best]], fmt="D", color=LOST,
            alpha=0.8, capsize=3, label=crm,
        )
        rr = f"run_rate_{quantity}"
        if rr in t.columns:
            ax.errorbar(
                x + 0.32, t[rr], yerr=[t[rr] - t[f"{rr}_low"], t[f"{rr}_high"] - t[rr]], fmt="^",
                color=PALETTE[3], alpha=0.8, capsize=3, label="run-rate (last period)",
            )
    ax.scatter(x, t[act], marker="X", s=70, color="black", zorder=5, label="actual")
    ax.set_xticks(x, [f"{c:%Y-%m-%d}" for c in pd.to_datetime(t["cutoff"])], rotation=30, ha="right")
    ax.set_xlabel("cutoff")
    ax.set_ylabel(f"{quantity} in the horizon")
    if quantity == "revenue":
        money_axis(ax, "y")
    s = bt.summary.set_index(["method", "quantity"])
    ours = s.loc[("forecast", quantity)]
    others = [(m, short) for m, short in [("run-rate", "run-rate"), ("weighted pipeline, within horizon", "CRM"),
                                          ("weighted pipeline", "CRM")] if (m, quantity) in s.index]
    vs = "; ".join(f"{s.loc[(m, quantity), 'mae']:,.0f} ({short})" for m, short in others[:2])
    ax.set_title(
        title
        or f"Backtest, {quantity}: MAE {ours['mae']:,.0f} vs {vs}; "
        f"range held {int(ours.get('held', round(ours['coverage'] * ours['cutoffs'])))} of {int(ours['cutoffs'])}"
    )
    ax.legend(frameon=False, fontsize="small")
    return tidy(ax)


def calibration_chart(
    data,
    *,
    bins: int = 10,
    baseline: bool = True,
    level: float = 0.95,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Predicted win probability vs how often leads actually won.

    Leads are grouped by predicted probability (quantile bins); each point
    is the observed share that won within the horizon, with a Wilson
    interval.  A calibrated forecast lies on the diagonal.  With
    ``baseline=True`` the CRM stage probabilities are drawn too (they claim
    eventual wins, so they sit far above the diagonal when many open leads
    are stale or slow).

    Parameters
    ----------
    data : Backtest or DataFrame
        A backtest, or a table with columns ``p_win`` and ``won`` (and
        ``stage_probability`` for the baseline).
    bins : int
    baseline : bool
    level : float
        Level of the observed-rate intervals.
    title : str, optional
    ax : Axes, optional

    Returns
    -------
    Axes

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> bt = fk.forecast.backtest(fk.datasets.load_demo(), n_cutoffs=3, n_draws=100, calibrate=False)
    >>> from funnelkit.plots.forecast import calibration_chart
    >>> ax = calibration_chart(bt)
    >>> ax.get_xlabel()
    'predicted probability of winning within the horizon'
    """
    df = data.leads_ if hasattr(data, "leads_") else data
    if not isinstance(df, pd.DataFrame) or not {"p_win", "won"} <= set(df.columns):
        raise ValueError("calibration_chart needs a Backtest or a DataFrame with 'p_win' and 'won'.")
    if df.empty:
        raise ValueError("no leads to calibrate on.")
    ax = get_ax(ax, figsize=(5, 5))
    series = [("p_win", "forecast", PALETTE[0], "o")]
    if baseline and "stage_probability" in df.columns:
        series.append(("stage_probability", "stage probability (CRM)", LOST, "D"))
    won = df["won"].to_numpy(dtype=bool)
    for col, label, color, marker in series:
        p = df[col].to_numpy(dtype=float)
        edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
        idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
        n = np.bincount(idx, minlength=len(edges) - 1 or 1)
        k = np.bincount(idx, weights=won, minlength=len(n))
        mp = np.bincount(idx, weights=p, minlength=len(n))
        ok = n > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            obs, pred = k[ok] / n[ok], mp[ok] / n[ok]
        lo, hi = stats.proportion_ci(k[ok], n[ok], level=level)
        ax.errorbar(pred, obs, yerr=[obs - lo, hi - obs], fmt=marker, color=color, capsize=2,
                    label=label, ms=5)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect calibration")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    percent_axis(ax, "x")
    percent_axis(ax, "y")
    ax.set_xlabel("predicted probability of winning within the horizon")
    ax.set_ylabel("observed share won")
    ax.set_title(title or f"Calibration ({len(df):,} lead forecasts)")
    ax.legend(frameon=False, fontsize="small", loc="upper left")
    return tidy(ax)
