"""Rich display in Jupyter: result objects as a short summary with their chart.

``Forecast`` and ``Backtest`` (and the other result objects that define
``_repr_html_``) show, when they are the last expression of a cell, a
sentence or two in words, their chart as an inline PNG and a small formatted
table.  The HTML is static and escaped: no script, no external resource, so
a notebook stays safe to share whatever the labels in the data say.

The functions here build that HTML; call them directly to embed the same
summary elsewhere.

Examples
--------
>>> import funnelkit as fk
>>> fc = fk.forecast.forecast(fk.datasets.load_demo(), as_of="2025-06-30", n_draws=200, seed=0)
>>> html = forecast_html(fc)
>>> html.startswith("<div") and "<img" in html and "<script" not in html
True
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["figure_html", "forecast_html", "backtest_html", "model_html", "table_html"]

_WRAP = "<div class='funnelkit-result' style='max-width:62rem'>{}</div>"


def _e(x) -> str:
    return html.escape(str(x))


def figure_html(draw: Callable, *, figsize: tuple[float, float] = (7.0, 3.4), alt: str = "chart") -> str:
    """A chart as an inline PNG ``<img>``: ``draw(ax)`` draws on a fresh Axes.

    The figure is made without pyplot (no global state, nothing shown twice)
    and closed.  A chart that cannot be drawn gives an empty string, so a
    summary never fails for its picture.

    Examples
    --------
    >>> figure_html(lambda ax: ax.plot([0, 1], [0, 1]), alt="a line").startswith("<img")
    True
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    ax = fig.add_subplot()
    try:
        draw(ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
    except Exception:  # a summary must not fail for its picture
        return ""
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img src='data:image/png;base64,{data}' alt='{_e(alt)}' style='max-width:100%;height:auto'/>"


def table_html(df: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """A small table as escaped HTML, each column formatted with ``formats``
    (``{"column": "{:,.0f}"}``); missing values are left blank.

    Examples
    --------
    >>> table_html(pd.DataFrame({"wins": [1234.5]}), {"wins": "{:,.0f}"}).count("1,234")
    1
    """
    formats = formats or {}
    out = df.copy()
    for c in out.columns:
        f = formats.get(c)
        if f is not None:
            out[c] = [("" if pd.isna(v) else f.format(v)) for v in out[c]]
    return out.to_html(index=False, escape=True, border=0, na_rep="")


def _range(lo: float, hi: float, write: Callable[[float], str]) -> str:
    return f"{write(lo)} to {write(hi)}"


def _money(x: float) -> str:
    return f"{x:,.0f}"


def forecast_html(fc) -> str:
    """The summary of a :class:`funnelkit.forecast.Forecast`: what the open pipeline
    should bring, with its range, against the CRM's weighted pipeline; the
    chart of wins over the horizon; one row per segment; the notes.

    Examples
    --------
    >>> import funnelkit as fk
    >>> fc = fk.forecast.forecast(fk.datasets.load_demo(), as_of="2025-06-30", n_draws=200, seed=0)
    >>> "open leads" in forecast_html(fc)
    True
    """
    r = fc.total.iloc[0]
    pct = f"{fc.level_:.0%}"
    days = (fc.horizon_end_ - fc.as_of_) / pd.Timedelta(days=1)
    head = (f"<p><b>Forecast</b> as of {fc.as_of_:%Y-%m-%d} for the next {days:,.0f} days "
            f"(to {fc.horizon_end_:%Y-%m-%d})</p>")
    who = f"{int(r['open_leads']):,} open leads"
    if r.get("basis", "open pipeline") != "open pipeline":  # new leads' wins are in the total too
        who += f" and about {r['new_leads']:,.0f} new ones expected to arrive"
    wins = (f"{who} should bring <b>{r['expected_wins']:,.1f} wins</b> "
            f"({pct} range {_range(r['wins_low'], r['wins_high'], lambda x: f'{x:,.0f}')})")
    if np.isfinite(r.get("expected_revenue", np.nan)):
        wins += (f" and <b>{_money(r['expected_revenue'])}</b> in revenue ({pct} range "
                 f"{_range(r['revenue_low'], r['revenue_high'], _money)})")
    text = [wins + "."]
    if getattr(fc, "goal_", None) is not None:  # no won outcome: say what a win is
        text.append(f"The stage set has no won outcome, so a win here is a lead reaching its last stage, "
                    f"{_e(fc.goal_)}.")
    crm = r.get("horizon_weighted_wins", np.nan)
    if np.isfinite(crm):
        said = f"{crm:,.1f} wins"
        if np.isfinite(r.get("horizon_weighted_pipeline", np.nan)):
            said += f" ({_money(r['horizon_weighted_pipeline'])})"
        text.append(f"For comparison, the CRM's weighted pipeline (stage probabilities times the open "
                    f"deals) says {said} within the horizon.")
    if "range" in r.index and isinstance(r["range"], str) and r["range"] != "model":
        text.append(f"Range: {_e(r['range'])}.")
    body = "".join(f"<p>{t}</p>" for t in text)

    def draw(ax):
        from .plots.forecast import fan_chart

        fan_chart(fc, quantity="wins", ax=ax, title="Wins over the horizon")

    chart = figure_html(draw, alt="forecast of wins over the horizon")
    table = ""
    if fc.by_:
        s = fc.summary
        t = s[list(fc.by_)].astype(str)
        t["open leads"] = [f"{v:,.0f}" for v in s["open_leads"]]
        t["wins"] = [f"{v:,.1f}" for v in s["expected_wins"]]
        t[f"{pct} range"] = [_range(a, b, lambda x: f"{x:,.0f}") for a, b in zip(s["wins_low"], s["wins_high"])]
        if "expected_revenue" in s.columns:
            t["revenue"] = [_money(v) for v in s["expected_revenue"]]
            t[f"{pct} range "] = [_range(a, b, _money) for a, b in zip(s["revenue_low"], s["revenue_high"])]
        table = table_html(t)
    notes = "".join(f"<li>{_e(n)}</li>" for n in fc.notes_)
    notes = f"<details><summary>{len(fc.notes_)} note(s)</summary><ul>{notes}</ul></details>" if notes else ""
    return _WRAP.format(head + body + chart + table + notes)


def backtest_html(bt) -> str:
    """The summary of a :class:`funnelkit.forecast.Backtest`: its verdict, the
    chart of forecast against actual wins at each past cutoff, and the scores
    of each method.

    Examples
    --------
    >>> import funnelkit as fk
    >>> bt = fk.forecast.backtest(fk.datasets.load_demo(), n_cutoffs=3, n_draws=100, calibrate=False)
    >>> "coverage" in backtest_html(bt)
    True
    """
    head = (f"<p><b>Backtest</b>: {len(bt.table):,} past cutoffs, horizon {_e(bt.horizon_)}, "
            f"{bt.level_:.0%} ranges</p><p>{_e(bt.sentence[:1].upper() + bt.sentence[1:])}</p>")
    notes = getattr(bt, "notes_", [])
    if notes:
        head += "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"

    def draw(ax):
        from .plots.forecast import backtest_chart

        backtest_chart(bt, quantity="wins", ax=ax, title="Forecast and actual wins at each cutoff")

    chart = figure_html(draw, alt="forecast against actual wins at past cutoffs")
    s = bt.summary
    names = {"method": "method", "quantity": "of", "cutoffs": "cutoffs", "mae": "mean error", "bias": "bias",
             "coverage": "range held", "mean_width": "mean range width"}
    cols = [c for c in names if c in s.columns]
    table = table_html(s[cols].rename(columns=names),
                       {"cutoffs": "{:,.0f}", "mean error": "{:,.1f}", "bias": "{:+,.1f}", "range held": "{:.0%}",
                        "mean range width": "{:,.1f}"})
    return _WRAP.format(head + chart + table)


def model_html(model) -> str:
    """The summary of a fitted :class:`funnelkit.transitions.TransitionModel`: what it was fitted
    on, and each stage's chance to be won eventually with its interval and the stage-to-stage
    matrix (where leads go next).

    Examples
    --------
    >>> import funnelkit as fk
    >>> m = fk.TransitionModel(n_samples=50).fit(fk.datasets.load_demo(), as_of="2025-06-30")
    >>> html = model_html(m)
    >>> "P(won eventually)" in html and "9,458 stays" in html
    True
    """
    if not getattr(model, "_fitted", False):
        return _WRAP.format(f"<p>{_e(repr(model))}</p>")
    stays = model.stays_
    n_open = int((stays["to_stage"].astype(str) == "open").sum())
    seg = f", by {', '.join(map(str, model.by_))} ({len(model.groups_)} segments)" if model.by_ else ""
    head = (f"<p><b>Transition model</b> {_e(model.stage_set_.name)} as of {model.as_of_:%Y-%m-%d}{_e(seg)}: "
            f"fitted on {len(stays):,} stays ({n_open:,} still open at the as-of date).</p>")
    wp = model.win_probability(pooled=True)
    t = pd.DataFrame({"stage": wp["stage"].astype(str),
                      "P(won eventually)": [f"{p:.1%}" for p in wp["probability"]]})
    if {"ci_low", "ci_high"} <= set(wp.columns):
        t["95% interval"] = [f"{a:.1%} to {b:.1%}" for a, b in zip(wp["ci_low"], wp["ci_high"])]
    matrix = model.matrix()
    mt = matrix.apply(lambda col: [f"{v:.0%}" if v >= 0.005 else "" for v in col])
    mt.columns.name = None
    mt = mt.rename_axis("from \\ to").reset_index()
    return _WRAP.format(head + table_html(t) + "<p>Where a lead in each stage goes next (stalled: it never moves "
                        "on):</p>" + table_html(mt))
