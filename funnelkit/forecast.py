"""Forecasts of wins and revenue, the CRM baseline, planning, and backtests.

The funnel is for prediction: "20% of the leads in proposal convert, so the
1,000 leads now in proposal should bring about 200 sales".  This module
answers with ranges, not single numbers, and checks itself on the log's own
past.

* :func:`forecast` - expected wins and revenue within a horizon from the
  leads open at a date (and, with ``new_leads=True``, from the leads that
  will arrive in it), with prediction intervals that carry both the
  randomness of outcomes and the uncertainty of the estimated rates (Monte
  Carlo over the posterior samples of a
  :class:`~funnelkit.transitions.TransitionModel`).  Time matters: a lead
  that has sat in its stage for months is unlikely to move, and a deal won
  after the horizon does not count in it.  With ``calibrate=``, the range is
  corrected by the forecast's own misses at past cutoffs (split-conformal),
  and its level when it kept missing on one side.
* :class:`ArrivalModel` - how many new leads arrive per day: trend,
  weekday, season, holidays, at the fitted or the recent level.
* :func:`weighted_pipeline`, :func:`stage_probabilities` - what a CRM
  reports: amount x stage probability (learned from history, or given), no
  time, no range.  Shown beside ours in every forecast and backtest.
* :func:`win_rate_drift` - recent conversion against the long-run rate, in
  a sentence when they differ.
* :func:`leads_needed` - planning backwards: how many new leads must enter
  the top (overall and per source) to reach a revenue or win target in a
  period with a chosen confidence, and the pipeline coverage that implies.
* :func:`backtest` - rolling cutoffs in the history; at each, fit on what
  was known then, forecast the next horizon, compare with what happened.
  Reports the MAE, bias and coverage of the range, ours beside two
  baselines: the CRM weighted pipeline and the run-rate (the wins of the
  last horizon-length period carried forward).

Amounts nobody knows are unknown, not 0: where no open lead has an amount,
the revenue columns are NaN.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

from . import pipeline, stats
from ._common import DAY_NS, NAT, as_list, none_known, time_zone, utc_naive
from ._common import parse_as_of as _parse_as_of
from .data import AMOUNT, LEAD, STAGE, TIME, known_at, stage_order
from .exceptions import DataWarning, ForecastError, TransitionModelError
from .funnel import lead_progress, resolve_stages
from .stages import LOST_ORDER, StageSet
from .transitions import Calendar, TransitionModel, _check_half_life, _windows, parse_as_of

__all__ = [
    "ForecastError",
    "Forecast",
    "Backtest",
    "forecast",
    "weighted_pipeline",
    "stage_probabilities",
    "leads_needed",
    "backtest",
    "win_rate_drift",
    "ArrivalModel",
    "HALF_LIVES",
]

_DAY = pd.Timedelta(days=1)
#: Posterior samples of the models fitted for a forecast (each used by n_draws / 100 draws).
_SAMPLES = 100
#: Revenue columns of a forecast's rows that are unknown (NaN) where no open lead has an amount.
_REVENUE_COLUMNS = ("expected_revenue", "revenue_low", "revenue_high", "weighted_pipeline", "weighted_low",
                    "weighted_high", "horizon_weighted_pipeline", "horizon_weighted_low", "horizon_weighted_high",
                    "open_pipeline_revenue")




def _in_utc(log: pd.DataFrame, time: str, as_of):
    """A log with a time zone as naive UTC instants, for the forecast's arithmetic.

    Returns ``(log, as_of, tz)``: the log with its time column in naive UTC (the
    log itself when naive), ``as_of`` as the same instant in naive UTC (a date is
    the end of that day in the log's zone) and the zone (``None`` when naive).
    Durations are then exact across clock changes; forecast periods are cut on
    UTC days.
    """
    tz = time_zone(log[time]) if isinstance(log, pd.DataFrame) and time in log.columns else None
    if tz is None:
        return log, as_of, None
    if as_of is not None and not (isinstance(as_of, str) and as_of == "end"):
        as_of = _utc_instant(as_of, tz)
    return utc_naive(log, time), as_of, tz


def _utc_instant(value, tz) -> pd.Timestamp:
    """An as-of value for a log in zone ``tz`` as a naive UTC Timestamp."""
    return _parse_as_of(value, error=ForecastError, tz=tz).tz_convert("UTC").tz_localize(None)


def _horizon_end(T: pd.Timestamp, horizon) -> pd.Timestamp:
    """``T + horizon``: days (number), a Timedelta or string ('90D'), or a calendar offset ('3MS')."""
    if isinstance(horizon, bool):
        raise ForecastError(f"horizon must be days, a timedelta or an offset string; got {horizon!r}.")
    if isinstance(horizon, (int, float, np.integer, np.floating)):
        end = T + pd.Timedelta(days=float(horizon))
    elif isinstance(horizon, str):
        # offsets first: pd.Timedelta("3MS") would be three milliseconds
        try:
            end = T + pd.tseries.frequencies.to_offset(horizon)
        except (ValueError, TypeError):
            try:
                end = T + pd.Timedelta(horizon)
            except (ValueError, TypeError) as exc:
                raise ForecastError(
                    f"horizon={horizon!r} is not a length of time; use days (90), '90D' or '3MS'."
                ) from exc
    else:
        try:
            end = T + (horizon if isinstance(horizon, pd.DateOffset) else pd.Timedelta(horizon))
        except (ValueError, TypeError) as exc:
            raise ForecastError(f"horizon={horizon!r} is not a length of time.") from exc
    if end <= T:
        raise ForecastError(f"horizon={horizon!r} must be positive.")
    return end


def _period_edges(T: pd.Timestamp, end: pd.Timestamp, freq) -> list[pd.Timestamp]:
    if freq is None:
        return [T, end]
    try:
        inner = pd.date_range(T.normalize(), end, freq=freq, normalize=True)
    except (ValueError, TypeError) as exc:
        raise ForecastError(f"freq={freq!r} is not a pandas frequency (e.g. 'MS', 'W', 'QS').") from exc
    inner = [x for x in inner if T + _DAY <= x < end]  # no sliver of a period at the start
    return [T, *inner, end]


def _truncate(log: pd.DataFrame, T: pd.Timestamp, time: str, lead: str = LEAD) -> pd.DataFrame:
    """The log as known at ``T`` (see :func:`funnelkit.data.known_at`): the log itself when
    ``T`` is at or after its last event (then nothing is left out)."""
    t_max = log[time].max() if len(log) else pd.NaT
    if pd.notna(t_max) and T >= t_max:
        return log
    return known_at(log, T, lead=lead, time=time)


_BAND = "amount_band"


def _lead_amounts(hist: pd.DataFrame, *, lead: str, time: str, amount: str):
    """``(codes, last)``: each row's lead code and each lead's latest known amount (NaN if
    none), with numpy over the factorised lead ids (no string lookups)."""
    codes, ids = pd.factorize(hist[lead])
    a = hist[amount].to_numpy(dtype=float)
    t = hist[time].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    ok = np.flatnonzero(~np.isnan(a) & (codes >= 0))
    c, tt = codes[ok], t[ok]
    if not ((c[1:] > c[:-1]) | ((c[1:] == c[:-1]) & (tt[1:] >= tt[:-1]))).all():
        # latest in time within a lead (stable for ties)
        ok = ok[np.lexsort((tt, c))]
    last = np.full(len(ids), np.nan)
    last[codes[ok]] = a[ok]  # later rows overwrite: latest
    return codes, last


def _band_edges(last: np.ndarray, bands: int):
    """Equal-value bands: each holds about the same share of the total amount, so the top
    band isolates the few large deals that dominate revenue.  ``None`` when too few values."""
    a = np.sort(last[np.isfinite(last)])
    if bands < 2 or np.unique(a).size < bands:
        return None
    share = np.cumsum(a) / a.sum() if a.sum() > 0 else np.linspace(0, 1, a.size)
    cuts = a[np.searchsorted(share, np.arange(1, bands) / bands)]
    edges = np.unique(np.r_[a[0], cuts, a[-1]])
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


def _band_of(amounts: np.ndarray, edges: np.ndarray) -> pd.Categorical:
    names = [f"band {i + 1} of {len(edges) - 1}" for i in range(len(edges) - 1)]
    code = np.where(np.isfinite(amounts), np.searchsorted(edges, amounts, side="left") - 1, -1)
    code = np.where(np.isfinite(amounts), np.clip(code, 0, len(names) - 1), -1)
    return pd.Categorical.from_codes(code, categories=names)


def _with_amount_bands(hist: pd.DataFrame, bands: int, *, lead: str, time: str, amount: str) -> pd.DataFrame:
    """Add each lead's deal-size band (by its latest amount) as a segment column; the band
    edges are in ``attrs["amount_band_edges"]``."""
    if amount not in hist.columns or bands < 2:
        return hist
    codes, last = _lead_amounts(hist, lead=lead, time=time, amount=amount)
    edges = _band_edges(last, bands)
    if edges is None:
        return hist
    per_lead = _band_of(last, edges)
    out = hist.assign(**{_BAND: pd.Categorical.from_codes(
        np.where(codes >= 0, per_lead.codes[np.maximum(codes, 0)], -1), dtype=per_lead.dtype)})
    out.attrs = {**hist.attrs, "amount_band_edges": edges}
    return out


def _interval(x: np.ndarray, level: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    a = (1 - level) / 2
    return np.quantile(x, a, axis=axis), np.quantile(x, 1 - a, axis=axis)


# ---------------------------------------------------------------------------
# the CRM baseline
# ---------------------------------------------------------------------------
def _stall_days(ss: StageSet, stall_days) -> float:
    if stall_days is not None:
        return float(stall_days)
    return float(getattr(ss, "horizon_days", None) or 90)


def _stage_table(prog: pd.DataFrame, ss: StageSet, T, *, horizon_days, stall_days) -> pd.DataFrame:
    """:func:`stage_probabilities` from a :func:`~funnelkit.funnel.lead_progress` table."""
    outcome = prog["outcome"].astype(object).to_numpy()
    goal = list(ss.steps)[-1]
    if ss.won is None:  # no won outcome: the last stage is the goal
        won = prog[f"reached_{goal}"].to_numpy(dtype=bool)
        closed_at = pd.to_datetime(prog[f"time_{goal}"]).to_numpy(dtype="datetime64[ns]")
    else:
        won = outcome == "won"
        closed_at = pd.to_datetime(prog["closed_at"]).to_numpy(dtype="datetime64[ns]")
    lost = ~won & (outcome != "open")
    if not ss.lost and T is not None:  # no lost outcome: idle leads are dropped, never future wins
        last = pd.to_datetime(prog["last_event_at"]).to_numpy(dtype="datetime64[ns]")
        idle = ~won & ~lost & (last < np.datetime64(T - pd.Timedelta(days=stall_days)))
        lost = lost | idle
    rows = []
    for s in list(ss.steps)[:-1]:
        r = prog[f"reached_{s}"].to_numpy(dtype=bool)
        if horizon_days is None:
            w, lo = int((r & won).sum()), int((r & lost).sum())
            rows.append((s, int(r.sum()), w, lo, w / (w + lo) if w + lo else np.nan))
            continue
        # matured: reached the stage at least a horizon before as_of; won within it after that
        t_s = pd.to_datetime(prog[f"time_{s}"]).to_numpy(dtype="datetime64[ns]")
        H = np.timedelta64(int(round(horizon_days * DAY_NS)), "ns")
        ok = r & ~np.isnat(t_s) & (t_s <= np.datetime64(T) - H)
        w = int((ok & won & (closed_at <= t_s + H)).sum())
        n = int(ok.sum())
        rows.append((s, n, w, n - w, w / n if n else np.nan))
    return pd.DataFrame(rows, columns=["stage", "reached", "won", "lost", "probability"])


def stage_probabilities(
    log: pd.DataFrame,
    *,
    as_of=None,
    horizon=None,
    stall_days: float | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
) -> pd.DataFrame:
    """Historical win probability per stage, as a CRM would set it.

    Without ``horizon`` (the CRM's number, *eventual* wins): of the leads
    that reached a stage and were closed (won or lost) by ``as_of``, the
    share that won.  Open leads are left out - which is what CRMs do, and
    why this number is optimistic when lost deals are not always marked
    lost.  For a stage set without a lost outcome, a lead idle for
    ``stall_days`` (default the stage set's ``horizon_days``, else 90)
    counts as lost, so open leads are never counted as wins.

    With ``horizon`` (wins *within the horizon*): of the leads that reached
    the stage at least ``horizon`` before ``as_of``, the share that won
    within ``horizon`` of reaching it.

    Returns
    -------
    DataFrame
        ``stage``, ``reached`` (leads that reached it; with ``horizon``: at
        least that long ago), ``won``, ``lost`` (with ``horizon``: did not
        win within it), ``probability`` (won / (won + lost)).

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> sp = fk.forecast.stage_probabilities(fk.datasets.load_demo(), as_of="2025-06-30")
    >>> sp["stage"].tolist()
    ['qualification', 'meeting', 'proposal', 'close']
    >>> h90 = fk.forecast.stage_probabilities(fk.datasets.load_demo(), as_of="2025-06-30", horizon="90D")
    >>> bool((h90["probability"] <= sp["probability"]).all())
    True
    """
    log, as_of, _tz = _in_utc(log, time, as_of)
    ss = resolve_stages(log, stages)
    T = parse_as_of(as_of) if as_of is not None else (pd.Timestamp(log[time].max()) if len(log) else None)
    if as_of is not None:
        log = _truncate(log, T, time, lead)
    hd = None if horizon is None else (_horizon_end(T, horizon) - T) / _DAY
    prog = lead_progress(log, stages=ss, lead=lead, stage=stage, time=time, amount=None)
    return _stage_table(prog, ss, T, horizon_days=hd, stall_days=_stall_days(ss, stall_days))


def _baseline_probs(log, ss, T, probabilities, lead, stage, time, horizon_days=None) -> pd.Series:
    opens = list(ss.steps)[:-1]
    if probabilities is None:
        prog = lead_progress(log, stages=ss, lead=lead, stage=stage, time=time, amount=None)
        sp = _stage_table(prog, ss, T, horizon_days=horizon_days, stall_days=_stall_days(ss, None))
        p = pd.Series(sp["probability"].to_numpy(), index=opens).fillna(0.0)
    else:
        if not isinstance(probabilities, Mapping):
            raise ForecastError("probabilities must map stage names to probabilities, e.g. {'proposal': 0.2}.")
        p = pd.Series(0.0, index=opens)
        for k, v in probabilities.items():
            name = ss.canonical(k)
            if name not in opens:
                raise ForecastError(f"probabilities: {k!r} is not an open stage of {ss.name!r} ({', '.join(opens)}).")
            if not 0 <= float(v) <= 1:
                raise ForecastError(f"probabilities: {k!r} -> {v!r} is not between 0 and 1.")
            p[name] = float(v)
        missing = [s for s in opens if ss.canonical(s) not in {ss.canonical(k) for k in probabilities}]
        if missing:
            raise ForecastError(f"probabilities: no value for stage(s) {', '.join(missing)}.")
    return p


def _no_amount(frame: pd.DataFrame) -> pd.Series:
    """Rows (of a forecast's summary, or of :func:`weighted_pipeline`) with open leads, none of
    which has an amount: their revenue is unknown."""
    return none_known(frame["open_leads"], frame["open_leads"] - frame["amount_unknown"])


def weighted_pipeline(
    log: pd.DataFrame,
    *,
    as_of=None,
    horizon=None,
    probabilities: Mapping[str, float] | None = None,
    by: str | Sequence[str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str = AMOUNT,
) -> pd.DataFrame:
    """The CRM forecast: each open lead's amount times its stage's probability.

    Without ``horizon`` this is what a CRM shows: it estimates **eventual**
    wins, with no time limit (``basis`` says so), not the wins of the next
    quarter.  With ``horizon`` each stage's probability is the share of
    leads that won within that long of reaching the stage (see
    :func:`stage_probabilities`): a forecast for the horizon, although it
    still ignores how long each lead has already sat in its stage.  For a
    stage set without a lost outcome, idle leads count as lost, so open
    leads are never counted as wins.

    Parameters
    ----------
    log : DataFrame
        A canonical event log.
    as_of : date, optional
        The open pipeline and the learned probabilities use only events up
        to then.  Default: the log's last timestamp.
    probabilities : mapping, optional
        Stage -> probability, as typed into a CRM.  Default: learned with
        :func:`stage_probabilities`.
    horizon : number of days, str or offset, optional
        Probabilities of winning within this long (default: eventual).
    by : str or list of str, optional
        Segment column(s) of the snapshot to break the table down by.

    Returns
    -------
    DataFrame
        One row per (segment, open stage): ``by`` columns, ``stage``,
        ``open_leads``, ``open_amount`` (known amounts; NaN where none of
        the row's open leads has one), ``amount_unknown`` (open leads
        without an amount), ``probability``, ``weighted_wins`` (leads x
        probability), ``weighted_amount`` (NaN as ``open_amount``),
        ``basis`` ("eventual wins (no time limit)" or "wins within 90
        days").

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> wp = fk.forecast.weighted_pipeline(fk.datasets.load_demo(), probabilities={
    ...     "qualification": 0.1, "meeting": 0.2, "proposal": 0.4, "close": 0.6})
    >>> bool((wp["weighted_amount"] <= wp["open_amount"]).all())
    True
    """
    log, as_of, _tz = _in_utc(log, time, as_of)
    ss = resolve_stages(log, stages)
    by = as_list(by)
    T = parse_as_of(as_of) if as_of is not None else None
    snap = pipeline.snapshot(log, as_of=T, stages=ss, lead=lead, stage=stage, time=time, amount=amount)
    T = snap.attrs["as_of"]
    snap = _open_stages(snap, ss)
    hd = None if horizon is None else (_horizon_end(T, horizon) - T) / _DAY
    p = _baseline_probs(_truncate(log, T, time, lead), ss, T, probabilities, lead, stage, time, horizon_days=hd)
    missing = [c for c in by if c not in snap.columns]
    if missing:
        raise ForecastError(f"by column(s) {missing} are not in the log's segments.")
    opens = list(ss.steps)[:-1]
    st = pd.Categorical(snap["stage"].astype(object), categories=opens)
    amt = snap[AMOUNT].to_numpy(dtype=float) if AMOUNT in snap.columns else np.full(len(snap), np.nan)
    prob = p.reindex(st.astype(object)).to_numpy(dtype=float, copy=True)
    prob[_idle(snap, ss, T)] = 0.0  # no lost outcome: idle leads are dropped, not future wins
    work = pd.DataFrame(
        {
            **{b: snap[b].to_numpy() for b in by},
            "stage": st,
            "open_leads": 1,
            "open_amount": np.nan_to_num(amt),
            "amount_unknown": np.isnan(amt).astype(np.int64),
            "weighted_wins": prob,
            "weighted_amount": np.nan_to_num(amt) * prob,
        }
    )
    g = work.groupby([*by, "stage"], observed=False, dropna=False, sort=True)
    out = g[["open_leads", "open_amount", "amount_unknown", "weighted_wins", "weighted_amount"]].sum().reset_index()
    out.loc[_no_amount(out), ["open_amount", "weighted_amount"]] = np.nan  # no open lead with an amount
    out.insert(len(by) + 4, "probability", p.reindex(out["stage"].astype(object)).to_numpy())
    out["open_leads"] = out["open_leads"].astype("int64")
    out["amount_unknown"] = out["amount_unknown"].astype("int64")
    out["basis"] = _basis(hd) if probabilities is None else "as given"
    out.attrs["as_of"] = T
    out.attrs["basis"] = out["basis"].iloc[0] if len(out) else _basis(hd)
    return out


def _basis(horizon_days) -> str:
    return "eventual wins (no time limit)" if horizon_days is None else f"wins within {horizon_days:g} days"


# ---------------------------------------------------------------------------
# the forecast
# ---------------------------------------------------------------------------
class Forecast:
    """The result of :func:`forecast`.

    Attributes
    ----------
    summary : DataFrame
        One row per segment (one row without ``by``) for the whole horizon:
        ``by`` columns, ``open_leads``, ``open_amount``, ``amount_unknown``
        (open leads without an amount: counted in wins, not in revenue;
        where none of a row's open leads has an amount - a log without
        amounts, or a CRM that fills them in at closing - its revenue
        columns, ours and the weighted pipeline's, are NaN: unknown, not
        0),
        ``expected_wins``, ``wins_low``, ``wins_high``, ``expected_revenue``,
        ``revenue_low``, ``revenue_high``, ``p_no_win`` (probability of no
        win at all), then the CRM baseline beside: ``weighted_wins``,
        ``weighted_wins_low``, ``weighted_wins_high``, ``weighted_pipeline``
        (revenue), ``weighted_low``, ``weighted_high`` (the baseline's range
        if every open lead won independently with its stage probability),
        ``weighted_basis`` (these estimate *eventual* wins, with no time
        limit, as a CRM does), the same within the horizon (stage
        probabilities of winning within it, see :func:`stage_probabilities`):
        ``horizon_weighted_wins``, ``horizon_weighted_wins_low``,
        ``horizon_weighted_wins_high``, ``horizon_weighted_pipeline``,
        ``horizon_weighted_low``, ``horizon_weighted_high``; ``basis``
        ("open pipeline" or "open pipeline + new leads"), the expected wins
        and revenue from each (``open_pipeline_wins``,
        ``open_pipeline_revenue``, ``new_lead_wins``, ``new_lead_revenue``)
        and the expected number of ``new_leads`` (total only), and ``range``
        ("model", or "calibrated on N past cutoffs").  With
        ``calibrate=True``: ``wins_low``/``wins_high`` and
        ``revenue_low``/``revenue_high`` are the calibrated range (of the
        total; by segment only without ``by``), the model's own is in
        ``model_wins_low``, ``model_wins_high``, ``model_revenue_low``,
        ``model_revenue_high``, and ``revenue_range`` labels the revenue's;
        ``calibration_cutoffs`` is the number of past cutoffs there were to
        calibrate on (as in :class:`Backtest`'s table);
        ``model_expected_wins``, ``model_expected_revenue`` and
        ``level_factor``, ``revenue_level_factor`` record the level
        correction (see ``correct_level``).
        Expected values are exact (the sum of each open lead's
        probability); the ranges come from the draws.
    total : DataFrame
        The same as one row over all open leads.
    periods_ : DataFrame
        Overall, one row per period: ``period_start``, ``period_end``,
        ``expected_wins``, ``wins_low``, ``wins_high``, ``expected_revenue``,
        ``revenue_low``, ``revenue_high`` and the same cumulative from
        ``as_of`` (``cum_*``).
    segment_periods_ : DataFrame or None
        With ``by``: one row per (segment, period): ``by`` columns,
        ``period_start``, ``period_end``, ``expected_wins``, ``wins_low``,
        ``wins_high``, ``expected_revenue``, ``revenue_low``, ``revenue_high``.
    draws_ : DataFrame
        The simulated distribution: ``draw``, ``by`` columns, ``period_end``,
        ``wins``, ``revenue`` (per period, not cumulative).
    baseline_draws_ : DataFrame
        ``draw``, ``wins``, ``revenue`` of the weighted-pipeline baseline.
    leads_ : DataFrame
        One row per open lead: ``lead_id``, ``stage``, ``days_in_stage``,
        ``amount``, ``by`` columns, ``p_win`` (probability of winning within
        the horizon, ours), ``stage_probability`` (the baseline's, eventual),
        ``horizon_stage_probability`` (the baseline's, within the horizon).
    baseline_probabilities_, horizon_baseline_probabilities_ : Series
        Stage -> probability used by the baseline (eventual; within the
        horizon).
    model_ : TransitionModel
    half_life_ : float or None
        The recency weighting of the model fitted here (chosen when
        ``half_life="auto"``).
    calibration_ : DataFrame or None
        With ``calibrate``: the past cutoffs'
        forecasts (the chosen half-life) and what happened.
    drift_ : DataFrame
        :func:`win_rate_drift` as of ``as_of``; its sentence is in
        ``notes_`` when recent conversion differs from the long-run rate.
        With ``calibrate`` or ``new_leads``, ``notes_``
        also says when no lead has arrived for weeks (over 14 days and ten
        usual gaps): an extract of the cases started by a date only drains.
    as_of_, horizon_end_ : Timestamp
    level_ : float
    notes_ : list of str
    goal_ : str or None
        For a stage set without a won outcome, its last stage: a "win" is
        a lead reaching it (``repr``, the Jupyter summary and ``notes_``
        say so).  None when the stage set has a won outcome.

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> f = fk.forecast.forecast(fk.datasets.load_demo(), as_of="2025-06-30", n_draws=200)
    >>> f.as_of_.strftime("%Y-%m-%d"), f.horizon_end_.strftime("%Y-%m-%d"), f.level_
    ('2025-06-30', '2025-09-28', 0.8)
    >>> t = f.total.iloc[0]
    >>> int(t["open_leads"]), t["basis"], bool(t["wins_low"] <= t["expected_wins"] <= t["wins_high"])
    (931, 'open pipeline', True)
    """

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def probability_of(self, *, target_revenue: float | None = None, target_wins: float | None = None) -> float:
        """Probability that the open pipeline reaches a target within the horizon.

        Examples
        --------
        >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
        >>> f = fk.forecast.forecast(fk.datasets.load_demo(), as_of="2025-06-30", n_draws=200)
        >>> 0.0 <= f.probability_of(target_wins=50) <= 1.0
        True
        """
        if (target_revenue is None) == (target_wins is None):
            raise ForecastError("give exactly one of target_revenue= or target_wins=.")
        col, tgt = ("revenue", target_revenue) if target_revenue is not None else ("wins", target_wins)
        if col == "revenue" and not np.isfinite(self.total["expected_revenue"].iloc[0]):
            n = int(self.total["open_leads"].iloc[0])
            raise ForecastError(f"target_revenue=: none of the {n:,} open leads has an amount, so the open "
                                "pipeline's revenue is unknown; ask for target_wins= instead.")
        tot = self.draws_.groupby("draw")[col].sum()
        return float((tot >= tgt).mean())

    def __repr__(self) -> str:
        r = self.total.iloc[0]
        pct = f"{self.level_:.0%}"
        new = r.get("basis", "open pipeline") != "open pipeline"
        leads = f"{int(r['open_leads']):,} open leads" + (f" + {r['new_leads']:,.0f} new expected" if new else "")
        if np.isfinite(r["expected_revenue"]):
            revenue = (f"revenue {r['expected_revenue']:,.0f} ({pct} {r['revenue_low']:,.0f}-"
                       f"{r['revenue_high']:,.0f}); weighted pipeline {r['horizon_weighted_pipeline']:,.0f} within "
                       f"the horizon, {r['weighted_pipeline']:,.0f} eventually")
        else:  # no open lead has an amount (or no win has one to value new leads' wins by)
            why = ("no open lead has an amount" if not np.isfinite(r["open_pipeline_revenue"])
                   else "no win has an amount to value new leads by")
            revenue = (f"revenue unknown ({why}); weighted pipeline "
                       f"{r['horizon_weighted_wins']:,.1f} wins within the horizon, {r['weighted_wins']:,.1f} "
                       "eventually")
        wins = "wins" if getattr(self, "goal_", None) is None else f"wins (reaching {self.goal_!r})"
        return (
            f"<Forecast as of {self.as_of_:%Y-%m-%d} to {self.horizon_end_:%Y-%m-%d}: {leads}; {wins} "
            f"{r['expected_wins']:.1f} ({pct} {r['wins_low']:.0f}-{r['wins_high']:.0f}), {revenue}>"
        )

    def _repr_html_(self) -> str:
        from .display import forecast_html

        return forecast_html(self)


def _open_stages(snap: pd.DataFrame, ss: StageSet) -> pd.DataFrame:
    """The leads of a snapshot that are in an open stage (not at the goal of a set without
    a won outcome, where reaching the last stage is the win)."""
    opens = set(list(ss.steps)[:-1])
    keep = snap["stage"].astype(object).isin(opens).to_numpy()
    if keep.all():
        return snap
    out = snap.loc[keep].reset_index(drop=True)
    out.attrs = dict(snap.attrs)
    return out


def _idle(snap: pd.DataFrame, ss: StageSet, T) -> np.ndarray:
    """Leads dropped by the no-lost-outcome rule: idle for longer than the stall days."""
    if ss.lost or "last_activity_at" not in snap.columns or not len(snap):
        return np.zeros(len(snap), dtype=bool)
    last = pd.to_datetime(snap["last_activity_at"]).to_numpy(dtype="datetime64[ns]")
    return ~np.isnat(last) & (last < np.datetime64(T - pd.Timedelta(days=_stall_days(ss, None))))


def _snapshot(hist, ss, T, by, lead, stage, time, amount):
    snap = _open_stages(
        pipeline.snapshot(hist, as_of=T, stages=ss, lead=lead, stage=stage, time=time, amount=amount), ss
    )
    missing = [c for c in by if c not in snap.columns]
    if missing:
        core = {lead, stage, time, amount, "flag"}
        have = [str(c) for c in hist.columns if c not in core and c in snap.columns]
        close = difflib.get_close_matches(str(missing[0]), have, n=1)
        raise ForecastError(
            f"by column(s) {missing} are not segment columns of the log"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; its segment columns: {', '.join(have) or 'none'}."
        )
    return snap


def _model_ns(model: TransitionModel, T: pd.Timestamp, times) -> np.ndarray:
    """Nanoseconds from ``T`` to each time on the model's clock (activity time with a
    calendar); unknown times give ``NAT``."""
    t = np.asarray(pd.to_datetime(pd.Series(times)).to_numpy(dtype="datetime64[ns]").astype(np.int64))
    ok = t != NAT
    out = np.full(t.size, NAT, dtype=np.int64)
    if model.calendar_ is None:
        out[ok] = t[ok] - T.value
    else:
        a = model.calendar_.to_activity_ns(np.r_[np.int64(T.value), t[ok]])
        out[ok] = a[1:] - a[0]
    return out


def _lead_inputs(snap, model, lead, T):
    """Model inputs for the snapshot's leads: stage, segment, time in stage (ns on the model's
    clock; -1 when unknown), days in stage (calendar days, for the tables), amount."""
    s_idx = model.stage_index(snap["stage"].astype(object).to_numpy())
    edges = getattr(model, "_band_edges", None)
    frame = snap
    if edges is not None and AMOUNT in snap.columns:
        frame = snap.assign(**{_BAND: _band_of(snap[AMOUNT].to_numpy(dtype=float), edges)})
    if model.as_of_ == T and all(c in frame.columns for c in model.by_):
        # fitted at this as_of: a lead's segment is its latest value, as in the snapshot, so the
        # (small) table of segments suffices; no lookup of every lead id
        g_idx = model.group_index(frame, lead="\x00no lead column")
    else:
        g_idx = model.group_index(frame, lead=lead)
    d = snap["days_in_stage"].to_numpy(dtype=float)
    if "entered_stage_at" in snap.columns:
        m = _model_ns(model, T, snap["entered_stage_at"])
        d_ns = np.where((m == NAT) | np.isnan(d), -1, -np.where(m == NAT, 0, m))
    else:
        d_ns = np.where(np.isnan(d), -1, np.round(np.nan_to_num(d) * DAY_NS)).astype(np.int64)
    amt = snap[AMOUNT].to_numpy(dtype=float) if AMOUNT in snap.columns else np.full(len(snap), np.nan)
    return s_idx, g_idx, d, d_ns.astype(np.int64), amt


def _edge_ns(model: TransitionModel, T: pd.Timestamp, edges) -> np.ndarray:
    """Nanoseconds (model clock) from ``T`` to each period end."""
    return _model_ns(model, T, edges[1:])


def _pipeline_draws(model, s_idx, g_idx, d_ns, edge_ns, n_draws, rng, amt0, seg_codes, n_seg, value_model=None):
    """Wins and revenue per (draw, segment, period) from the open leads, and each lead's P(win).

    Each lead's probability of winning by each period edge is exact on the model's day
    grid (:meth:`TransitionModel._win_by`, one set per posterior sample); the draws then
    decide each lead independently (one uniform per lead and draw: whether it wins within
    the horizon and in which period).  Draw ``k`` uses posterior sample ``k % n_samples``,
    so the spread carries the uncertainty of the rates as well as the luck of the outcomes.
    With a ``value_model`` (the same model weighted by deal size), revenue uses its
    probabilities, decided by the same uniforms.

    Returns ``wins, revenue`` (n_draws, n_seg, P) and the per-lead probabilities of
    winning in each period, by count and by value (n_leads, P).
    """
    n, P = len(s_idx), len(edge_ns)
    size = n_draws * n_seg * P
    wins = np.zeros(size)
    rev = np.zeros(size)
    if n == 0:
        z = np.zeros((0, P))
        return wins.reshape(n_draws, n_seg, P), rev.reshape(n_draws, n_seg, P), z, z
    q, h = _windows(d_ns, edge_ns)
    cols = np.c_[g_idx, s_idx, q + 1, h]
    span = cols.max(axis=0).astype(float) + 1
    if np.prod(span) < 2.0**62:  # one integer key per cell: a 1-d unique (fast)
        mult = np.cumprod(np.r_[1, span[::-1][:-1]])[::-1].astype(np.int64)
        _, first, cell_of = np.unique(cols @ mult, return_index=True, return_inverse=True)
        cells = cols[first]
    else:
        cells, cell_of = np.unique(cols, axis=0, return_inverse=True)
    cell_of = cell_of.ravel()
    args = (cells[:, 0], cells[:, 1], cells[:, 2] - 1, cells[:, 3:])
    pc = model._win_by(*args, samples=model.n_samples > 0)
    pv = value_model._win_by(*args, samples=model.n_samples > 0) if value_model is not None else pc
    D = pc.shape[0]
    draw_sample = np.arange(n_draws) % D
    per_sample = np.bincount(draw_sample, minlength=D)

    def mean_inc(x):  # exact P(win in period p), averaged over the draws' samples
        cum = (per_sample @ x.reshape(D, -1)).reshape(x.shape[1:])[cell_of] / n_draws
        return np.diff(cum, axis=1, prepend=0.0)

    p_lead = mean_inc(pc)
    p_value = mean_inc(pv) if value_model is not None else p_lead
    live = np.flatnonzero(np.maximum(pc[:, :, -1], pv[:, :, -1]).max(axis=0)[cell_of] > 0)
    wins = wins.reshape(n_draws, n_seg, P)
    rev = rev.reshape(n_draws, n_seg, P)
    if live.size == 0:
        return wins, rev, p_lead, p_value
    live = live[np.argsort(seg_codes[live], kind="stable")]  # segments contiguous
    c_live, amt_live = cell_of[live], amt0[live].astype(np.float32)
    seg_live = seg_codes[live]
    starts = np.flatnonzero(np.r_[True, seg_live[1:] != seg_live[:-1]])
    segs = seg_live[starts]

    def per_segment(x):  # (r, n_live) -> (r, segments present)
        return x.sum(axis=1, keepdims=True) if starts.size == 1 else np.add.reduceat(x, starts, axis=1)

    rows_per = max(1, 4_000_000 // live.size)
    for j in range(D):
        draws_j = np.flatnonzero(draw_sample == j)
        pl = pc[j][c_live].astype(np.float32)  # (n_live, P) cumulative
        vl = pv[j][c_live].astype(np.float32) if value_model is not None else pl
        for a in range(0, draws_j.size, rows_per):
            dj = draws_j[a : a + rows_per]
            u = rng.random((dj.size, live.size), dtype=np.float32)
            prev_w = prev_r = 0.0
            for p in range(P):  # one uniform per lead and draw: won by each period end or not
                hit = u < pl[:, p]
                cum_w = per_segment(hit)
                vhit = (u < vl[:, p]) if value_model is not None else hit
                cum_r = per_segment(vhit * amt_live) if starts.size > 1 else (vhit.astype(np.float32) @ amt_live)[:, None]
                wins[dj[:, None], segs[None, :], p] += cum_w - prev_w
                rev[dj[:, None], segs[None, :], p] += cum_r - prev_r
                prev_w, prev_r = cum_w, cum_r
    return wins.reshape(n_draws, n_seg, P), rev.reshape(n_draws, n_seg, P), p_lead, p_value


def _value_model(model, hist, amt, *, lead, time, amount, notes):
    """The model weighted by deal size, for revenue (``None`` without amounts)."""
    if not np.isfinite(amt).any() or amount not in hist.columns:
        return None
    try:
        if getattr(model, "value_", None) == amount:
            return model.with_lead_weights(None, name=amount)
        codes, last = _lead_amounts(hist, lead=lead, time=time, amount=amount)
        ids = pd.Index(pd.unique(hist[lead]))
        if len(ids) == len(model._lead_ids) and ids.equals(model._lead_ids):  # fitted on this log
            return model.with_lead_weights(last, name=amount)
        return model.with_lead_weights(pd.Series(last, index=ids), name=amount)
    except TransitionModelError:
        notes.append("no lead in the history has an amount: revenue uses the deal-count rates.")
        return None


def _baseline_draws(p_stage, amt0, seg_codes, n_seg, n_draws, rng):
    """The CRM baseline's range: every open lead wins independently with its probability.

    Leads of one (segment, probability) group are exchangeable: their wins per draw are
    binomial; the revenue of ``k`` winners out of ``n`` is the sum of a random ``k``-subset of
    the group's amounts (drawn exactly for groups of up to 200 leads, else its normal
    approximation with the finite-population variance).
    """
    b_w = np.zeros((n_draws, n_seg))
    b_r = np.zeros((n_draws, n_seg))
    if p_stage.size == 0:
        return b_w, b_r
    key = pd.DataFrame({"s": seg_codes, "p": p_stage}).groupby(["s", "p"], sort=True).ngroup().to_numpy()
    for gk in range(int(key.max()) + 1):  # (segment, stage) groups: few
        m = np.flatnonzero(key == gk)
        seg, p, a = int(seg_codes[m[0]]), float(p_stage[m[0]]), amt0[m]
        if p <= 0:
            continue
        if m.size <= 200:
            hit = rng.random((n_draws, m.size)) < p
            b_w[:, seg] += hit.sum(axis=1)
            b_r[:, seg] += hit @ a
            continue
        k = rng.binomial(m.size, p, size=n_draws).astype(float)
        mu, sd = float(a.mean()), float(a.std())
        var = k * (m.size - k) / (m.size - 1) * sd**2
        b_w[:, seg] += k
        b_r[:, seg] += np.maximum(k * mu + np.sqrt(var) * rng.standard_normal(n_draws), 0.0)
    return b_w, b_r


def _fit_for_forecast(hist, snap, ss, T, *, model_by, amount_bands, n_samples, half_life, calendar,
                      lead, stage, time, amount, notes):
    """The model fitted in :func:`forecast`: segments, deal-size bands, recency, calendar."""
    banded = False
    if amount_bands >= 2 and amount in hist.columns:
        known = float(snap[AMOUNT].notna().mean()) if len(snap) else 0.0
        if known >= 0.9:
            banded = True
        else:
            notes.append(
                f"only {known:.0%} of the open leads have an amount, so the model is not split by "
                "deal size (amounts known only at closing would leak the outcome)."
            )
    fit_log = _with_amount_bands(hist, amount_bands if banded else 0, lead=lead, time=time, amount=amount)
    banded = _BAND in fit_log.columns
    mby = as_list(model_by) + ([_BAND] if banded else [])
    model = TransitionModel(n_samples=n_samples, half_life=half_life, calendar=calendar).fit(
        fit_log, stages=ss, by=mby or None, as_of=T, lead=lead, stage=stage, time=time,
        value=amount if amount in fit_log.columns else None,
    )
    model._band_edges = fit_log.attrs.get("amount_band_edges") if banded else None
    return model, banded


def forecast(
    log: pd.DataFrame,
    *,
    as_of=None,
    horizon="90D",
    freq: str | None = None,
    by: str | Sequence[str] | None = None,
    model: TransitionModel | None = None,
    model_by: str | Sequence[str] | None = None,
    amount_bands: int = 3,
    probabilities: Mapping[str, float] | None = None,
    n_draws: int = 1000,
    level: float = 0.8,
    seed: int | None = 0,
    half_life: float | str | None = "auto",
    half_lives: Sequence | None = None,
    calendar=None,
    calibrate: bool | Backtest = False,
    calibration_cutoffs: int = 12,
    calibration_every="auto",
    correct_level: bool = True,
    new_leads: bool = False,
    arrivals_lookback="730D",
    value_rates: bool = True,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str = AMOUNT,
) -> Forecast:
    """Forecast wins and revenue from the leads open at a date (and, optionally, new ones).

    Each open lead's chance of winning by each period end comes from a
    :class:`~funnelkit.transitions.TransitionModel` fitted on the history up
    to ``as_of``: it leaves its stage after a time drawn given the days it
    has already spent there (or never: stalled), moves on, and so on until it
    wins, is lost or the horizon ends (exact on a one-day grid).  Each draw
    uses one posterior sample of the model, so the intervals include the
    uncertainty of the rates as well as the luck of the outcomes.

    Parameters
    ----------
    log : DataFrame
        A canonical event log.  Events after ``as_of`` are never used.
    as_of : date, str or Timestamp, optional
        The forecast date (a date alone means the end of that day).
        Default: the log's last timestamp.
    horizon : number of days, str or offset
        How far ahead: ``90``, ``"90D"``, or a pandas offset such as
        ``"3MS"`` (added by pandas rules: three month starts after
        ``as_of``).
    freq : str, optional
        Split the horizon into calendar periods (``"MS"`` months, ``"W"``,
        ``"QS"``); default one period.
    by : str or list of str, optional
        Segment column(s) to report the forecast by.
    model : TransitionModel, optional
        A fitted model to use; it must have been fitted as of ``as_of`` or
        earlier.  Default: fitted here on the log up to ``as_of``.
    model_by : str or list of str, optional
        Segment columns of the model fitted here (each segment's rates,
        shrunk toward the pooled ones).
    amount_bands : int
        Also segment the model fitted here by deal size: each lead's latest
        amount up to ``as_of``, cut into this many bands that each hold an
        equal share of the history's total amount (column ``amount_band``).  Big deals often convert less
        and move slower; without this a revenue forecast inherits the rates
        of small deals.  0 or 1: no bands.
    probabilities : mapping, optional
        Stage probabilities of the weighted-pipeline baseline; default
        learned (see :func:`stage_probabilities`).
    n_draws : int
        Monte Carlo draws (each open lead is decided once per draw).
    level : float
        Level of the prediction intervals.
    seed : int or None
    half_life : float, "auto" or None
        Recency weighting of the model fitted here, in days (see
        :class:`~funnelkit.transitions.TransitionModel`); ``None``: no decay.
        ``"auto"`` (default): with ``calibrate``, the candidate in
        ``half_lives`` (default :data:`HALF_LIVES`: none and 90 days) whose
        forecasts had the lowest wins MAE at the log's own past cutoffs (the
        calibration cutoffs below), or the longest one within a standard
        error of it (a shorter memory must earn its extra noise); no decay
        when there are fewer than 3 of them, and without ``calibrate`` (a
        plain forecast makes no past forecasts to choose on).  On a
        simulated pipeline whose win rate halves over 18 months, no decay
        held its 80% range at 0.64 of 72 cutoffs, the chosen half-life at
        0.79.
    half_lives : sequence, optional
        Candidates for ``half_life="auto"`` (``None`` = no decay).
    calendar : str or Calendar, optional
        Weekday and holiday effects on when moves happen: ``"weekdays"``
        or a country code such as ``"IT"`` (see
        :class:`~funnelkit.transitions.Calendar`).
    calibrate : bool or Backtest
        Correct the range of the total by the log's own past forecast
        errors: the same forecast is made at up to ``calibration_cutoffs``
        past cutoffs, ``calibration_every`` apart, whose whole horizon is
        observed by ``as_of`` and which come after twice the horizon (at
        least 60 days) of wins, and each side of the range is widened (or
        narrowed) by the empirical quantile of the past misses measured in
        half-ranges (split-conformal); the calibrated range of wins is in
        whole wins (each end rounded to the nearest, as shown).  With fewer
        than 4 past cutoffs the
        model's range is kept, and ``total["range"]`` says so.  Costs one
        forecast per past cutoff.  Periods and segments keep the model's
        range.  A :class:`Backtest` of the same horizon, level and basis
        (``new_leads``) instead: calibrate on its rolling forecasts, picked
        by the same rule, without making new ones (the half-life chosen among
        the backtest's candidates); given a backtest at the cutoffs this
        forecast would use, the result is the same.  A monthly report
        calibrates its forecast on its check of past months this way.
    calibration_cutoffs : int
        Past cutoffs to calibrate (and choose ``half_life="auto"``) on: the
        most recent ones, since a changing business makes old misses a poor
        guide (on the real logs 12 did better than 19).
    calibration_every : "auto", number of days or str
        Their spacing.  ``"auto"``: 30 days where the history has room for
        ``calibration_cutoffs`` of them (a year of seasons), else spread over
        the history there is, in whole weeks (on a log of a few months, past
        cutoffs a week apart rather than no calibration at all).
    correct_level : bool
        With ``calibrate``: when at least 70% of 9 or more past cutoffs
        missed on the same side (the model lags a trend, or a rhythm it
        cannot see), or every one of 5 to 8 did (a young log after a step),
        scale the expected wins (and, separately, revenue) by
        the median ratio of actual to forecast at those cutoffs; the model's
        value is kept in ``model_expected_wins`` and the factor in
        ``level_factor`` (``revenue_level_factor``), and the notes say so.
    new_leads : bool
        Also count the leads that will arrive after ``as_of``: their number
        per day from an :class:`ArrivalModel` (trend, weekday, season,
        holidays with a country ``calendar``), each entering the stage mix
        of recent leads and winning within the horizon with the transition
        model's probability for the time it has left; won amounts drawn
        from recent wins.  With ``by`` they form a segment of their own,
        ``"(new leads)"``.  Default: the open pipeline only (``total["basis"]``
        says which).
    arrivals_lookback : str or number of days
        History of the arrival model.
    value_rates : bool
        Revenue from *value* rates: the model refitted with each stay
        weighted by its lead's amount (:meth:`TransitionModel.with_lead_weights`),
        so the money in a stage converts at the rate money converted, not
        deals (large deals often convert less; deal rates then overstate
        revenue), with a posterior as wide as a few large deals make it.
        Wins always use deal rates.  ``False``: revenue from deal rates.
    stages : StageSet, preset name, YAML path or list, optional
    lead, stage, time, amount : str
        Column names.

    Returns
    -------
    Forecast
        See :class:`Forecast` (``summary``, ``total``, ``periods_``,
        ``draws_``, ``leads_``; with ``calibrate``
        also ``calibration_``, the past cutoffs' forecasts and outcomes).

    Raises
    ------
    ForecastError
        Bad horizon, level or draws; a model fitted after ``as_of``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> f = fk.forecast.forecast(fk.datasets.load_demo(), as_of="2025-06-30", horizon="90D",
    ...                          freq="MS", n_draws=300)
    >>> f.periods_["period_end"].dt.strftime("%Y-%m-%d").tolist()
    ['2025-08-01', '2025-09-01', '2025-09-28']
    >>> t = f.total.iloc[0]
    >>> bool(t["wins_low"] <= t["expected_wins"] <= t["wins_high"])
    True
    """
    log, as_of, _tz = _in_utc(log, time, as_of)
    if not 0 < level < 1:
        raise ForecastError(f"level must be between 0 and 1, got {level}.")
    if n_draws < 1:
        raise ForecastError(f"n_draws must be at least 1, got {n_draws}.")
    ss = resolve_stages(log, stages)
    by = as_list(by)
    if as_of is None:
        t = log[time]
        if t.notna().sum() == 0:
            raise ForecastError("the log has no dated event; pass as_of=.")
        T = pd.Timestamp(t.max())
    else:
        T = parse_as_of(as_of)
    end = _horizon_end(T, horizon)
    edges = _period_edges(T, end, freq)
    notes: list[str] = []
    hist = _truncate(log, T, time, lead)  # nothing after as_of goes any further
    snap = _snapshot(hist, ss, T, by, lead, stage, time, amount)
    banded = False
    given = calibrate if isinstance(calibrate, Backtest) else None
    calibrating = given is not None or bool(calibrate)
    if given is not None:
        cands = _backtest_candidates(given, half_life, half_lives)
    else:
        cands = _candidates(half_life, half_lives, choosing=calibrating)
    chosen, past = cands[0], None
    if calibrating:
        if model is not None:
            raise ForecastError("calibrate= refits the model at past cutoffs (and chooses the half-life on "
                                "them); do not pass model=, or pass calibrate=False.")
        start = _first_win(hist, ss, stage=stage, time=time)
        outcomes = _lead_outcomes(hist, ss, lead=lead, time=time, stage=stage, amount=amount)
        if given is not None:
            past = _backtest_past(given, T, end, start, calibration_cutoffs, calibration_every, level=level,
                                  new_leads=new_leads)
            if len(past):
                past = past[np.logical_or.reduce([_same_half_life(past["half_life"], h) for h in cands])]
        else:
            rows = []
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*after the data ends", category=DataWarning)
                for c in _calibration_grid(start, T, end - T, calibration_cutoffs, calibration_every):
                    r, _ = _rows_for_cutoff(
                        hist, ss, c, outcomes, horizon=horizon, level=level, candidates=cands, model_by=model_by,
                        amount_bands=amount_bands, probabilities=probabilities, n_draws=n_draws, seed=seed,
                        calendar=calendar, new_leads=new_leads, arrivals_lookback=arrivals_lookback, lead=lead,
                        stage=stage, time=time, amount=amount, value_rates=value_rates,
                    )
                    rows.extend(r)
            past = pd.DataFrame(rows)
        chosen, _ = _choose_half_life(past, cands)
        if len(past):
            past = past[_same_half_life(past["half_life"], chosen)].reset_index(drop=True)
        if len(cands) > 1:
            notes.append(
                f"half_life='auto': {'no decay' if chosen is None else f'{chosen:g} days'}, the lowest wins "
                f"MAE at {past['cutoff'].nunique() if len(past) else 0} past cutoffs among "
                f"{', '.join('none' if h is None else f'{h:g}' for h in cands)}."
            )
    if model is None:
        model, banded = _fit_for_forecast(
            hist, snap, ss, T, model_by=model_by, amount_bands=amount_bands, n_samples=min(_SAMPLES, n_draws),
            half_life=chosen, calendar=calendar, lead=lead, stage=stage, time=time, amount=amount,
            notes=notes,
        )
    else:
        if not getattr(model, "_fitted", False):
            raise ForecastError("model is not fitted; call model.fit(log, as_of=...) first.")
        fitted_at = model.as_of_ if model.as_of_.tz is None else model.as_of_.tz_convert("UTC").tz_localize(None)
        if fitted_at > T:
            raise ForecastError(
                f"the model was fitted as of {model.as_of_}, after as_of={T}: it has seen the future."
            )
    new, arrivals = None, None
    if new_leads:
        outcomes_T = _lead_outcomes(hist, ss, lead=lead, time=time, stage=stage, amount=amount)
        new, arrivals = _new_leads_part(hist, ss, model, T, edges, n_draws=n_draws, seed=seed, calendar=calendar,
                                        lookback=arrivals_lookback, outcomes=outcomes_T, lead=lead, stage=stage,
                                        time=time)
        notes.extend(_arrival_choice_notes(arrivals))
    f = _forecast_core(
        hist, snap, ss, model, banded, T, end, edges, by=by, probabilities=probabilities, n_draws=n_draws,
        level=level, seed=seed, lead=lead, stage=stage, time=time, amount=amount, notes=notes, new=new,
        value_rates=value_rates,
    )
    f.arrivals_ = arrivals
    f.half_life_ = chosen
    f.calibration_ = past
    f.drift_ = win_rate_drift(hist, as_of=T, stages=ss, lead=lead, stage=stage, time=time)
    known = outcomes_T if new_leads else (outcomes if calibrating else None)
    quiet = None if known is None else _arrivals_stopped(known["first_seen"].to_numpy(), T)
    if quiet is not None:
        f.notes_.append(
            f"no new lead since {quiet[0]:%Y-%m-%d} ({quiet[1]} days before as_of; {quiet[2]:,} arrived in the "
            f"year before it): if the log is an extract of the cases started by then, its "
            "open pipeline only drains" + (": new_leads=True counts no new lead, as the log has none since."
                                           if new_leads else ".")
        )
    if f.drift_.attrs["differs"]:
        f.notes_.append(f.drift_.attrs["sentence"])
    frames = [f.total] if by else [f.total, f.summary]
    for fr in frames:
        fr["range"] = "model"
    if calibrating:
        for q in ("wins", "revenue"):
            r = f.total.iloc[0]
            factor, side, n_lc = _level_correction(past, quantity=q) if correct_level else (1.0, 0, 0)
            est = float(r[f"expected_{q}"])
            most = float(r["open_leads"]) if q == "wins" and not new_leads else None
            if np.isfinite(est):
                lo, hi, n_used, how = _calibrate_range(past, est, float(r[f"{q}_low"]), float(r[f"{q}_high"]),
                                                       level, quantity=q, shown=est * factor, most=most)
            else:  # revenue unknown (no open lead has an amount): nothing to calibrate
                factor, lo, hi, n_used, how = 1.0, np.nan, np.nan, 0, "model"
            for fr in frames:
                fr[f"model_{q}_low"], fr[f"model_{q}_high"] = fr[f"{q}_low"], fr[f"{q}_high"]
                fr[f"{q}_low"], fr[f"{q}_high"] = lo, hi
                fr["range" if q == "wins" else "revenue_range"] = _range_label(how, n_used)
                if q == "wins":
                    fr["calibration_cutoffs"] = int(n_used)
                fr[f"model_expected_{q}"] = fr[f"expected_{q}"]
                fr["level_factor" if q == "wins" else "revenue_level_factor"] = factor
            if factor != 1.0:
                # every expected value, so that periods and segments still add up to the total
                parts = [f"cum_expected_{q}", f"open_pipeline_{q}", f"new_lead_{q}"]  # the open/new split too
                for fr in [f.total, f.summary, f.periods_] + ([f.segment_periods_] if by else []):
                    fr[f"expected_{q}"] = fr[f"expected_{q}"] * factor
                    for col in parts:
                        if col in fr.columns:
                            fr[col] = fr[col] * factor
                f.notes_.append(
                    f"the model's {q} forecast was {'too high' if factor < 1 else 'too low'} at {side} of {n_lc} "
                    f"past cutoffs: expected {q} scaled by {factor:.2f} (the median ratio of actual to forecast)."
                )
        if len(past):
            inside = ((past["wins_low"] <= past["actual_wins"]) & (past["actual_wins"] <= past["wins_high"]))
            f.notes_.append(
                f"the model's {level:.0%} range held in {int(inside.sum())} of {len(past)} past cutoffs; "
                f"the range shown is {f.total['range'].iloc[0]}."
            )
        else:
            f.notes_.append("no past cutoff to calibrate on (history too short): the range is the model's.")
    if _tz is not None:  # shown in the log's zone
        f.as_of_ = f.as_of_.tz_localize("UTC").tz_convert(_tz)
        f.horizon_end_ = f.horizon_end_.tz_localize("UTC").tz_convert(_tz)
    return f


def _same_half_life(col: pd.Series, h) -> np.ndarray:
    if h is None:
        return col.isna().to_numpy()
    return (col.astype(float) == float(h)).to_numpy()


def _crm_probabilities(hist, ss, T, horizon_days, probabilities, lead, stage, time):
    """The CRM baseline's stage probabilities: eventual and within the horizon."""
    if probabilities is not None:
        bp = _baseline_probs(hist, ss, T, probabilities, lead, stage, time)
        return bp, bp
    prog = lead_progress(hist, stages=ss, lead=lead, stage=stage, time=time, amount=None)
    opens = list(ss.steps)[:-1]
    return tuple(
        pd.Series(_stage_table(prog, ss, T, horizon_days=h, stall_days=_stall_days(ss, None))["probability"]
                  .to_numpy(), index=opens).fillna(0.0)
        for h in (None, horizon_days)
    )


def _forecast_core(hist, snap, ss, model, banded, T, end, edges, *, by, probabilities, n_draws, level, seed,
                   lead, stage, time, amount, notes, new=None, value_rates=True, baseline=None) -> Forecast:
    """The forecast from a fitted model and the open pipeline (see :func:`forecast`)."""
    notes.extend(model.notes_)
    if ss.won is None:
        notes.append(f"stage set {ss.name!r} has no won outcome: a win here is a lead reaching its last "
                     f"stage, {list(ss.steps)[-1]!r}; the open leads are those not there yet.")
    s_idx, g_idx, d, d_ns, amt = _lead_inputs(snap, model, lead, T)
    if banded:  # open leads without an amount have no deal-size band: pooled rates
        g_idx[np.isnan(amt)] = len(model.groups_)
    notes.extend(snap.attrs.get("notes", []))
    n = len(snap)
    if np.isnan(d).any():
        notes.append(
            f"{int(np.isnan(d).sum()):,} open lead(s) have an unknown entry time; they are treated "
            "as having just entered their stage."
        )
    amt0 = np.nan_to_num(amt)
    rng = np.random.default_rng(seed)
    P = len(edges) - 1
    if by:
        seg_codes = snap[by].astype(object).fillna("<missing>").groupby(by, sort=True).ngroup().to_numpy() \
            if n else np.zeros(0, dtype=np.int64)
        seg_table = snap[by].assign(_s=seg_codes).drop_duplicates("_s").sort_values("_s").drop(columns="_s")
        seg_table = seg_table.reset_index(drop=True)
    else:
        seg_codes = np.zeros(n, dtype=np.int64)
        seg_table = pd.DataFrame(index=[0])
    n_seg = max(len(seg_table), 1)
    vm = _value_model(model, hist, amt, lead=lead, time=time, amount=amount, notes=notes) if value_rates else None
    wins, rev, lead_p, lead_v = _pipeline_draws(model, s_idx, g_idx, d_ns, _edge_ns(model, T, edges), n_draws,
                                                rng, amt0, seg_codes, n_seg, value_model=vm)

    # the CRM baseline: amount x stage probability, each lead independent; as a CRM has it
    # (eventual wins) and within the horizon (the share of leads that won that soon)
    u = np.random.default_rng(None if seed is None else seed + 1)
    hd = (end - T) / _DAY
    bp, bph = baseline if baseline is not None else _crm_probabilities(hist, ss, T, hd, probabilities, lead,
                                                                           stage, time)
    idle = _idle(snap, ss, T)  # no lost outcome: idle leads are dropped, not future wins
    p_stage = np.where(idle, 0.0, bp.to_numpy()[s_idx]) if n else np.zeros(0)
    p_stage_h = np.where(idle, 0.0, bph.to_numpy()[s_idx]) if n else np.zeros(0)
    b_w, b_r = _baseline_draws(p_stage, amt0, seg_codes, n_seg, n_draws, u)
    bh_w, bh_r = _baseline_draws(p_stage_h, amt0, seg_codes, n_seg, n_draws, u)

    # exact expectations (the draws give the ranges)
    ew = np.stack([np.bincount(seg_codes, weights=lead_p[:, p], minlength=n_seg) for p in range(P)], 1) \
        if n else np.zeros((n_seg, P))
    er = np.stack([np.bincount(seg_codes, weights=lead_v[:, p] * amt0, minlength=n_seg) for p in range(P)], 1) \
        if n else np.zeros((n_seg, P))
    open_w, open_r = float(ew.sum()), float(er.sum())
    if new is not None:  # leads arriving after as_of: a segment of their own with by=
        nw, nr, enw, enr, n_exp = new
        if by:
            seg_table = pd.concat([seg_table.astype(object), pd.DataFrame([{c: "(new leads)" for c in by}])],
                                  ignore_index=True)
            wins = np.concatenate([wins, nw[:, None, :]], axis=1)
            rev = np.concatenate([rev, nr[:, None, :]], axis=1)
            ew, er = np.vstack([ew, enw[None]]), np.vstack([er, enr[None]])
            b_w, b_r, bh_w, bh_r = (np.concatenate([x, np.zeros((n_draws, 1))], axis=1)
                                    for x in (b_w, b_r, bh_w, bh_r))
            n_seg += 1
        else:
            wins[:, 0, :] += nw
            rev[:, 0, :] += nr
            ew[0] += enw
            er[0] += enr

    def block(w, r, bw, br, rows, ppw, ppr, extra, mw, mr, hw, hr, phw, phr):
        wl, wh = _interval(w, level)
        rl, rh = _interval(r, level)
        bwl, bwh = _interval(bw, level)
        brl, brh = _interval(br, level)
        hwl, hwh = _interval(hw, level)
        hrl, hrh = _interval(hr, level)
        out = pd.DataFrame(
            {
                **extra,
                "open_leads": rows["open_leads"],
                "open_amount": rows["open_amount"],
                "amount_unknown": rows["amount_unknown"],
                "expected_wins": mw,
                "wins_low": wl,
                "wins_high": wh,
                "expected_revenue": mr,
                "revenue_low": rl,
                "revenue_high": rh,
                "p_no_win": (w == 0).mean(axis=0),
                "weighted_wins": ppw,
                "weighted_wins_low": bwl,
                "weighted_wins_high": bwh,
                "weighted_pipeline": ppr,
                "weighted_low": brl,
                "weighted_high": brh,
                "weighted_basis": _basis(None) if probabilities is None else "as given",
                "horizon_weighted_wins": phw,
                "horizon_weighted_wins_low": hwl,
                "horizon_weighted_wins_high": hwh,
                "horizon_weighted_pipeline": phr,
                "horizon_weighted_low": hrl,
                "horizon_weighted_high": hrh,
            }
        )
        return out

    seg_leads = np.bincount(seg_codes, minlength=n_seg)
    seg_amount = np.bincount(seg_codes, weights=amt0, minlength=n_seg)
    seg_unknown = np.bincount(seg_codes, weights=np.isnan(amt), minlength=n_seg).astype(np.int64)
    seg_pw = np.bincount(seg_codes, weights=p_stage, minlength=n_seg)
    seg_pr = np.bincount(seg_codes, weights=p_stage * amt0, minlength=n_seg)
    seg_phw = np.bincount(seg_codes, weights=p_stage_h, minlength=n_seg)
    seg_phr = np.bincount(seg_codes, weights=p_stage_h * amt0, minlength=n_seg)
    extra = {c: seg_table[c].to_numpy() for c in by}
    summary = block(
        wins.sum(axis=2), rev.sum(axis=2), b_w, b_r,
        {"open_leads": seg_leads, "open_amount": seg_amount, "amount_unknown": seg_unknown},
        seg_pw, seg_pr, extra, ew.sum(axis=1), er.sum(axis=1), bh_w, bh_r, seg_phw, seg_phr,
    )
    total = block(
        wins.sum(axis=(1, 2))[:, None], rev.sum(axis=(1, 2))[:, None],
        b_w.sum(axis=1)[:, None], b_r.sum(axis=1)[:, None],
        {"open_leads": [n], "open_amount": [amt0.sum()], "amount_unknown": [int(np.isnan(amt).sum())]},
        [p_stage.sum()], [(p_stage * amt0).sum()], {}, [ew.sum()], [er.sum()],
        bh_w.sum(axis=1)[:, None], bh_r.sum(axis=1)[:, None], [p_stage_h.sum()], [(p_stage_h * amt0).sum()],
    )
    total["basis"] = "open pipeline" if new is None else "open pipeline + new leads"
    total["open_pipeline_wins"] = open_w
    total["open_pipeline_revenue"] = open_r
    total["new_leads"] = 0.0 if new is None else new[4]
    total["new_lead_wins"] = 0.0 if new is None else float(new[2].sum())
    total["new_lead_revenue"] = 0.0 if new is None else float(new[3].sum())
    if not by:
        summary = total.copy()
    # no open lead with an amount (a log without amounts, or a CRM that fills them in at closing):
    # the open pipeline's revenue is unknown, not 0; new leads' revenue stays in new_lead_revenue
    for frame in (summary, total):
        frame.attrs.update({"level": level, "as_of": T, "horizon_end": end})
        frame.loc[_no_amount(frame), [c for c in _REVENUE_COLUMNS if c in frame.columns]] = np.nan
    dark_seg = _no_amount(summary).to_numpy() if by else _no_amount(total).to_numpy()

    # periods (overall)
    w_p, r_p = wins.sum(axis=1), rev.sum(axis=1)
    cw, cr = np.cumsum(w_p, axis=1), np.cumsum(r_p, axis=1)
    periods = pd.DataFrame({"period_start": edges[:-1], "period_end": edges[1:]})
    for name, arr, ex in [("wins", w_p, ew.sum(axis=0)), ("revenue", r_p, er.sum(axis=0))]:
        lo, hi = _interval(arr, level)
        periods[f"expected_{name}"], periods[f"{name}_low"], periods[f"{name}_high"] = ex, lo, hi
    for name, arr, ex in [("wins", cw, ew.sum(axis=0)), ("revenue", cr, er.sum(axis=0))]:
        lo, hi = _interval(arr, level)
        periods[f"cum_expected_{name}"], periods[f"cum_{name}_low"], periods[f"cum_{name}_high"] = (
            np.cumsum(ex), lo, hi,
        )
    if _no_amount(total).iloc[0]:
        periods.loc[:, [c for c in periods.columns if "revenue" in c]] = np.nan

    segment_periods = None
    if by:
        parts = []
        for j in range(n_seg):  # segments: few
            part = pd.DataFrame({c: seg_table[c].iloc[j] for c in by}, index=range(P))
            part["period_start"], part["period_end"] = edges[:-1], edges[1:]
            for name, arr, ex in [("wins", wins[:, j], ew[j]), ("revenue", rev[:, j], er[j])]:
                lo, hi = _interval(arr, level)
                part[f"expected_{name}"], part[f"{name}_low"], part[f"{name}_high"] = ex, lo, hi
            if dark_seg[j]:
                part[["expected_revenue", "revenue_low", "revenue_high"]] = np.nan
            parts.append(part)
        segment_periods = pd.concat(parts, ignore_index=True)

    # draws, tidy
    di, si, pi = np.meshgrid(np.arange(n_draws), np.arange(n_seg), np.arange(P), indexing="ij")
    draws = pd.DataFrame({"draw": di.ravel()})
    for c in by:
        draws[c] = seg_table[c].to_numpy()[si.ravel()]
    draws["period_end"] = np.array(edges[1:], dtype="datetime64[ns]")[pi.ravel()]
    draws["wins"] = wins.ravel().astype(np.int64)
    draws["revenue"] = np.where(dark_seg[si.ravel()], np.nan, rev.ravel())
    baseline_draws = pd.DataFrame(
        {"draw": np.arange(n_draws), "wins": b_w.sum(axis=1).astype(np.int64), "revenue": b_r.sum(axis=1)}
    )

    leads = pd.DataFrame(
        {
            lead: snap[lead].to_numpy(),
            "stage": snap["stage"].astype(object).to_numpy(),
            "days_in_stage": d,
            "amount": amt,
        }
    )
    for c in by:
        leads[c] = snap[c].to_numpy()
    leads["p_win"] = lead_p.sum(axis=1) if n else np.zeros(0)
    leads["p_win_value"] = lead_v.sum(axis=1) if n else np.zeros(0)
    leads["stage_probability"] = p_stage
    leads["horizon_stage_probability"] = p_stage_h
    return Forecast(
        summary=summary,
        total=total,
        periods_=periods,
        segment_periods_=segment_periods,
        draws_=draws,
        baseline_draws_=baseline_draws,
        leads_=leads,
        baseline_probabilities_=bp,
        horizon_baseline_probabilities_=bph,
        model_=model,
        as_of_=T,
        horizon_end_=end,
        level_=level,
        notes_=notes,
        by_=by,
        goal_=list(ss.steps)[-1] if ss.won is None else None,
    )


# ---------------------------------------------------------------------------
# planning: the reverse funnel
# ---------------------------------------------------------------------------
def _required_n(x, p, u, z, mu, sigma, target, confidence, revenue):
    """Smallest N with P(x + new(N) >= target) >= confidence (common random numbers)."""

    def prob(N: int) -> float:
        k = _st.binom.ppf(u, N, p) if N > 0 else np.zeros_like(u)
        k = np.nan_to_num(k)
        new = k * mu + np.sqrt(k) * sigma * z if revenue else k
        return float(np.mean(x + new >= target))

    p0 = prob(0)
    if p0 >= confidence:
        return 0, p0
    hi = 1
    while prob(hi) < confidence:
        hi *= 2
        if hi > 10**8:
            return np.nan, np.nan
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if prob(mid) >= confidence:
            hi = mid
        else:
            lo = mid
    return hi, prob(hi)


def leads_needed(
    log: pd.DataFrame,
    *,
    target_revenue: float | None = None,
    target_wins: float | None = None,
    as_of=None,
    period="90D",
    confidence: float = 0.8,
    by: str | Sequence[str] | None = "source",
    lookback="365D",
    n_draws: int = 2000,
    seed: int | None = 0,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str = AMOUNT,
) -> pd.DataFrame:
    """How many new leads must enter the top to reach a target, with a confidence.

    The reverse funnel.  The period runs from ``as_of`` for ``period``.  The
    open pipeline contributes what :func:`forecast` says it will (as a
    distribution); new leads enter the first stage over the period with the
    daily profile of the :class:`ArrivalModel` (weekday, trend, season; the
    same model as ``forecast(..., new_leads=True)``) and win within it with
    the probability the transition model gives for the time they have left
    (so leads entering late mostly close after the period).  Won amounts are drawn around the historical mean and spread of
    won deals (normal approximation for a sum of wins).  Rate uncertainty is
    carried through the posterior samples.

    Parameters
    ----------
    log : DataFrame
        A canonical event log; only events up to ``as_of`` are used.
    target_revenue, target_wins : float
        Exactly one: the revenue or number of wins to reach in the period,
        counting the open pipeline and the new leads.
    as_of : date, optional
        Start of the period (default: the log's last timestamp).
    period : number of days, str or offset
        Length of the period (``"90D"``, ``"3MS"``).
    confidence : float
        Required probability of reaching the target (e.g. 0.8).
    by : str or list of str, optional
        Segment column of lead sources: one row per source ("if every new
        lead came from this source"), plus a row for the recent mix.  None:
        one row.
    lookback : str or number of days
        Window before ``as_of`` for the source mix and the won amounts.
    n_draws : int
        Monte Carlo draws.

    Returns
    -------
    DataFrame
        One row per source (``by`` columns), then the mix (``by`` columns
        ``"(recent mix)"``): ``win_probability`` (that a new lead entering
        during the period wins within it), ``mean_won_amount``, ``target``,
        ``confidence``, ``pipeline_expected`` (from the open pipeline; for
        a revenue target where no open lead has an amount, its wins valued
        at the won amounts of the ``lookback``, as the new leads' are, and
        ``attrs["pipeline_valued_at_won_amounts"]`` is True),
        ``pipeline_probability`` (the open pipeline alone reaches the target),
        ``leads_needed`` (``NaN``: unreachable), ``expected_from_new``,
        ``probability_reached`` (with that many leads), ``open_leads``,
        ``open_amount`` (the known amounts of the open leads; NaN where none
        has one), ``pipeline_coverage`` (open amount / target, NaN where no
        open lead has an amount; for a wins target, open leads / target) and
        ``required_coverage`` (the same with the new leads added: their
        expected amounts, or their number for a wins target).

    Raises
    ------
    ForecastError
        Neither or both targets; confidence not in (0, 1).

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> plan = fk.forecast.leads_needed(fk.datasets.load_demo(), target_wins=150,
    ...                                 as_of="2025-06-30", n_draws=300)
    >>> plan["source"].tolist()[-1]
    '(recent mix)'
    >>> bool((plan["leads_needed"] > 0).all())
    True
    """
    log, as_of, _tz = _in_utc(log, time, as_of)
    if (target_revenue is None) == (target_wins is None):
        raise ForecastError("give exactly one of target_revenue= or target_wins=.")
    if not 0 < confidence < 1:
        raise ForecastError(f"confidence must be between 0 and 1, got {confidence}.")
    revenue = target_revenue is not None
    target = float(target_revenue if revenue else target_wins)
    if target <= 0:
        raise ForecastError(f"the target must be positive, got {target}.")
    ss = resolve_stages(log, stages)
    by = as_list(by)
    missing = [c for c in by if c not in log.columns]
    if missing:
        core = {lead, stage, time, amount, "flag"}
        have = [str(c) for c in log.columns if c not in core]
        raise ForecastError(
            f"by column(s) {missing} are not in the log (by='source' is the default); pass by= one of its "
            f"segment columns ({', '.join(have) or 'none'}) or by=None for the recent mix only."
        )
    T = parse_as_of(as_of) if as_of is not None else pd.Timestamp(log[time].max())
    end = _horizon_end(T, period)
    H = int(np.floor((end - T) / _DAY))
    hist = _truncate(log, T, time, lead)
    ns = min(200, n_draws)
    # the open pipeline: exactly what forecast() says for the same date and period,
    # so a report's forecast and its plan quote the same expected value (its model is
    # let go before the new leads' one is fitted: two at once double the peak memory)
    fc = forecast(log, as_of=T, horizon=period, n_draws=n_draws, seed=seed, stages=ss,
                  lead=lead, stage=stage, time=time, amount=amount)
    unvalued = revenue and bool(_no_amount(fc.total).iloc[0])  # no open lead has an amount
    x = fc.draws_.groupby("draw")["wins" if unvalued or not revenue else "revenue"].sum().to_numpy(dtype=float)
    open_leads = int(fc.total["open_leads"].iloc[0])
    open_amount = np.nan if bool(_no_amount(fc.total).iloc[0]) else float(fc.total["open_amount"].iloc[0])
    have = open_amount if revenue else float(open_leads)  # what the pipeline coverage counts
    del fc
    model = TransitionModel(n_samples=ns).fit(hist, stages=ss, by=by or None, as_of=T, lead=lead,
                                              stage=stage, time=time)
    rng = np.random.default_rng(None if seed is None else seed + 1)

    # new leads: P(win by the end | enter the first stage during the period), the entry day
    # weighted by the arrival model's daily profile (weekday, trend, season)
    curves = model.won_within(ss.steps[0], H, samples=True)  # (ns, G+1, H+1), by days left
    try:
        arrivals = ArrivalModel(calendar=None).fit(hist, as_of=T, stages=ss, lead=lead, stage=stage, time=time)
        prof = arrivals.predict(T + _DAY, T + H * _DAY)["expected"].to_numpy() if H >= 1 else np.ones(1)
    except (ForecastError, np.linalg.LinAlgError):
        arrivals, prof = None, np.ones(max(H, 1))
    left = np.clip(H - 1 - np.arange(prof.size), 0, H)  # entering during day t: H - t - 1 whole days left
    w_day = prof / prof.sum() if prof.sum() > 0 else np.full(prof.size, 1 / prof.size)
    p_new = (curves[..., left] * w_day).sum(axis=-1)
    draw_sample = np.arange(n_draws) % ns

    # history for amounts and the mix
    prog = lead_progress(hist, stages=ss, by=by, lead=lead, stage=stage, time=time, amount=amount)
    first_t = prog[[c for c in prog.columns if c.startswith("time_")]].min(axis=1)
    start = T - (_horizon_end(T, lookback) - T)
    recent = (first_t > start).to_numpy()
    is_won = (prog["outcome"] == "won").to_numpy()
    amounts = prog[AMOUNT].to_numpy(dtype=float) if AMOUNT in prog.columns else np.full(len(prog), np.nan)
    G = len(model.groups_)
    if by:
        gi = model.group_index(prog[by], lead="__none__")
        keys = model.groups_[by]
    else:
        gi = np.zeros(len(prog), dtype=np.int64)
        keys = pd.DataFrame(index=[0])
    rows = []
    rec_w = recent & is_won & ~np.isnan(amounts)
    pool_mu = float(np.nanmean(amounts[is_won])) if (is_won & ~np.isnan(amounts)).any() else np.nan
    pool_sd = float(np.nanstd(amounts[is_won])) if (is_won & ~np.isnan(amounts)).any() else 0.0
    share = np.bincount(gi[recent], minlength=G).astype(float)
    if share.sum() == 0:
        share = np.bincount(gi, minlength=G).astype(float)
    share /= max(share.sum(), 1.0)
    stats_g = []
    for g in range(G):  # segments (sources): few, not leads
        m = (gi == g) & rec_w
        if m.sum() < 5:
            m = (gi == g) & is_won & ~np.isnan(amounts)
        mu = float(amounts[m].mean()) if m.sum() >= 5 else pool_mu
        sd = float(amounts[m].std()) if m.sum() >= 5 else pool_sd
        lead_amt = amounts[(gi == g) & ~np.isnan(amounts)]
        mean_lead = float(lead_amt.mean()) if lead_amt.size else pool_mu
        stats_g.append((mu, sd, mean_lead))
    gsel = list(range(G)) if by else [0]
    u = rng.random(n_draws)
    z = rng.standard_normal(n_draws)
    if unvalued:  # the open pipeline's wins at the won amounts of the lookback, as new leads' are
        mu_w = float(amounts[rec_w].mean()) if rec_w.sum() >= 5 else pool_mu
        sd_w = float(amounts[rec_w].std()) if rec_w.sum() >= 5 else pool_sd
        if not np.isfinite(mu_w):
            raise ForecastError("target_revenue=: no open lead and no won lead has an amount, so there is no "
                                "revenue to plan for; ask for target_wins= instead.")
        z_w = np.random.default_rng(None if seed is None else seed + 3).standard_normal(n_draws)
        x = np.maximum(x * mu_w + np.sqrt(x) * sd_w * z_w, 0.0)  # a sum of k won amounts, normal approx.
    pipeline_prob = float(np.mean(x >= target))

    def row(p_draw, mu, sd, mean_lead, key):
        mu_ = mu if revenue else 1.0
        N, reached = _required_n(x, p_draw, u, z, mu_, sd if revenue else 0.0, target, confidence, revenue)
        mean_p = float(p_draw.mean())
        exp_new = (N * mean_p * mu_) if N == N else np.nan
        add = (N * mean_lead if revenue else N) if N == N else np.nan
        rows.append(
            {
                **key,
                "win_probability": mean_p,
                "mean_won_amount": mu,
                "target": target,
                "confidence": confidence,
                "pipeline_expected": float(x.mean()),
                "pipeline_probability": pipeline_prob,
                "leads_needed": N,
                "expected_from_new": exp_new,
                "probability_reached": reached,
                "open_leads": open_leads,
                "open_amount": open_amount,
                "pipeline_coverage": have / target,
                "required_coverage": (have + add) / target,
            }
        )

    for g in gsel:
        key = {c: keys[c].iloc[g] for c in by}
        mu, sd, ml = stats_g[g]
        row(p_new[draw_sample, g], mu, sd, ml, key)
    if by:
        w = share
        pg = p_new[:, :G]  # (ns, G)
        p_mix = (pg * w).sum(axis=1)
        mus = np.array([s[0] for s in stats_g])
        sds = np.array([s[1] for s in stats_g])
        mls = np.array([s[2] for s in stats_g])
        om = w * pg.mean(axis=0)
        om = om / om.sum() if om.sum() > 0 else w
        if np.isfinite(mus).any():
            mu = float(np.nansum(om * mus))
            sd = float(np.sqrt(max(np.nansum(om * (sds**2 + mus**2)) - mu**2, 0.0)))
        else:  # no won amount in any segment: unknown, as each segment's (a sum over none is not 0)
            mu, sd = np.nan, 0.0
        ml = float(np.nansum(w * mls)) if np.isfinite(mls).any() else np.nan
        row(p_mix[draw_sample], mu, sd, ml, {c: "(recent mix)" for c in by})
    out = pd.DataFrame(rows)
    out["leads_needed"] = out["leads_needed"].astype("float64")
    for c in by:
        out[c] = out[c].astype(object)
    out.attrs.update({"as_of": T, "period_end": end, "model": model, "arrivals": arrivals,
                      "pipeline_valued_at_won_amounts": unvalued})
    return out


# ---------------------------------------------------------------------------
# new leads: arrivals
# ---------------------------------------------------------------------------
def _days_of(t_ns: np.ndarray) -> np.ndarray:
    return np.floor_divide(np.asarray(t_ns, dtype=np.int64), DAY_NS)


class ArrivalModel:
    """How many new leads arrive per day: trend, weekday, season and holidays.

    A Poisson regression (log link, fitted by iteratively reweighted least
    squares) of the number of leads first seen on each day of the
    ``lookback`` window before ``as_of``, on an intercept, a linear trend
    (per year; it places the level at ``as_of`` and is not extrapolated
    beyond it), the weekday, the time of year (two yearly harmonics, with
    at least 540 days of history) and, with a ``calendar`` country, public
    holidays and the Dec 24 - Jan 6 weeks.  Extra-Poisson variation is
    measured on the residuals: the likelihood is scaled by the Pearson
    dispersion, and daily counts are drawn from a negative binomial with the
    moment-estimated ``alpha`` (variance ``mu + alpha mu^2``).

    Every effect but the intercept has a weak normal prior around 0 on the
    log scale (sd 2 for the trend per year and the weekdays, 1 for the
    seasons, holidays and year-end), so that an effect the window barely
    shows stays finite: a weekday with no arrival at all gets a rate near 0,
    and the few year-end days of a young log cannot draw a hundredfold
    Christmas.  An effect no day of the window has (no year-end yet) is 0,
    without uncertainty: such days are forecast like other days of their
    weekday.

    The first stage each new lead entered is kept as a mix (the share of
    recent leads by entry stage; of stages first seen at one instant, the
    earliest in the funnel, since the lead moved on from it at once).

    Parameters
    ----------
    lookback : str or number of days
        History used (default two years).
    half_life : float, optional
        Recency weighting of the days, in days (default none).
    recent_level : bool or "auto"
        True: forecast at the level of the last ``horizon`` (at least 30
        days; see :meth:`fit`) of arrivals, as a run-rate does, with the
        weekday, season and holiday pattern kept: the fitted rates scaled so
        that they add up to the leads that arrived in those days (plus a
        half, over the fit plus a half).  ``"auto"``: the fitted level or
        the recent one, whichever forecast the next ``horizon`` of arrivals
        better (lower mean absolute error; the fitted level on a tie) at up
        to 12 past cutoffs a horizon apart (the fitted level below 3 of
        them).  :func:`forecast` with ``new_leads=True`` uses ``"auto"``.
        Default False.
    calendar : str or Calendar, optional
        A country code (or a :class:`~funnelkit.transitions.Calendar` with
        one) adds holiday and year-end effects.

    Attributes
    ----------
    coef_ : Series
        The fitted coefficients (log scale; the posterior mode).
    dispersion_, alpha_ : float
    history_ : DataFrame
        ``date``, ``arrivals`` and the fitted ``expected`` per day.
    mix_ : Series
        Share of new leads by entry stage (index: stage, or the goal for leads
        whose first event is a win).
    recent_level_ : bool
        Whether the recent level is used (given, or chosen with ``"auto"``).
    recent_factor_ : float
        The recent level over the fitted one (1 without ``recent_level``).
    recent_days_ : int
        The days whose arrivals set the recent level.
    level_spread_ : float
        The log of the recent level over the fitted one.  Whichever level is
        used, its uncertainty includes half of it as a standard deviation on
        the log scale (the variance a half-half mix of the two levels adds),
        drawn as a factor of mean 1: where the two disagree, the forecast's
        range of new leads widens and its expected arrivals stay the same.
    level_choice_ : DataFrame or None
        With ``recent_level="auto"``: per past cutoff, the ``actual``
        arrivals of the horizon after it and each level's forecast of them
        (columns ``fitted`` and ``recent``).

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast
    >>> am = fk.forecast.ArrivalModel().fit(fk.datasets.load_demo(), as_of="2025-06-30")
    >>> daily = am.predict("2025-07-01", "2025-07-31")
    >>> len(daily), bool((daily["expected"] > 0).all())
    (31, True)
    """

    def __init__(self, *, lookback="730D", half_life: float | None = None, calendar=None,
                 recent_level: bool | str = False):
        self._level_sd = 0.0
        self.lookback = lookback
        self.half_life = half_life
        self.calendar = calendar
        if not (isinstance(recent_level, bool) or recent_level == "auto"):
            raise ForecastError(f"recent_level={recent_level!r}: pass True, False or \"auto\".")
        try:
            _check_half_life(half_life)
        except TransitionModelError as exc:
            raise ForecastError(f"half_life={half_life!r}: pass a number of days above 0, or None for no decay "
                                "(recent_level=\"auto\" chooses the arrivals' level on the log's past).") from exc
        self.recent_level = recent_level
        self._fitted = False

    def _design(self, day: np.ndarray) -> np.ndarray:
        # the trend describes the window; after as_of it is not extrapolated (a damped trend, fully
        # damped): a roll-out's ramp, fitted as a twentyfold rise a year on a CRM's first eight months, forecast
        # 1,300 leads a month where 700-1,100 came, and carrying the level at as_of forward had the
        # lower error on all three real logs (BPIC 2020 twice, Maven CRM: 30-day arrivals, 22-40 cutoffs)
        cols = [np.ones(day.size), np.minimum(day - self._day0, 0) / 365.25]
        wd = (day + 3) % 7
        for k in range(1, 7):
            cols.append((wd == k).astype(float))
        if self._season:
            ang = 2 * np.pi * ((day - self._day0) / 365.25)
            for h in (1, 2):
                cols += [np.sin(h * ang), np.cos(h * ang)]
        if self._cal is not None:
            _, hol, ye = self._cal._day_types(day)
            cols += [hol.astype(float), ye.astype(float)]
        return np.column_stack(cols)

    def _prior_precision(self) -> np.ndarray:
        """Precision of each coefficient's prior, normal around 0 (log scale): none on the
        intercept; sd 2 on the trend per year and the weekdays (a weekday with no arrival in the
        window gets a rate near 0, not one of exp(-30) with a standard deviation of thousands);
        sd 1 on the seasons, public holidays and the year-end (a factor of 2.7 either way at
        one sd: the few year-end days a window holds cannot say more)."""
        sd = [np.inf, 2.0] + [2.0] * 6 + ([1.0] * 4 if self._season else []) + ([1.0] * 2 if self._cal is not None
                                                                                 else [])
        return 1.0 / np.square(np.asarray(sd))

    def _names(self) -> list[str]:
        names = ["intercept", "trend per year", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                 "Sunday"]
        if self._season:
            names += ["season sin 1", "season cos 1", "season sin 2", "season cos 2"]
        if self._cal is not None:
            names += ["public holiday", "year-end"]
        return names

    def fit(self, log: pd.DataFrame, *, as_of=None, stages=None, lead: str = LEAD, stage: str = STAGE,
            time: str = TIME, horizon=None) -> ArrivalModel:
        """Fit on the leads first seen in the ``lookback`` window before ``as_of``.

        ``horizon`` (default 30 days): with ``recent_level``, the days whose arrivals set the
        level (at least 30), and with ``"auto"`` the length of the past forecasts the level is
        chosen on.

        Returns
        -------
        ArrivalModel
            ``self``, fitted.
        """
        log, as_of, _tz = _in_utc(log, time, as_of)
        ss = resolve_stages(log, stages)
        T = parse_as_of(as_of) if as_of is not None else pd.Timestamp(log[time].max())
        t = log[time].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        codes, ids = pd.factorize(log[lead])
        ok = (t != NAT) & (codes >= 0) & (t <= T.value)
        first = np.full(len(ids), np.iinfo(np.int64).max)
        np.minimum.at(first, codes[ok], t[ok])
        seen = first < np.iinfo(np.int64).max
        # the stage of each lead's first dated event (its entry); of several at that instant, the
        # earliest in the funnel: the lead entered there and moved on at once, moves the transition
        # model counts (a web log with one date per page visit: the furthest stage made 2.1% of
        # new visitors win within a week, three times the 0.67% they did)
        order = stage_order(log, ss, stage=stage)
        is_first = ok & (t == first[np.maximum(codes, 0)]) & (order >= 0)
        big = np.iinfo(np.int64).max
        entry = np.full(len(ids), big)
        np.minimum.at(entry, codes[is_first], order[is_first])
        entry[entry == big] = -3
        firsts = first[seen]
        span = _to_days(horizon if horizon is not None else "30D")
        self.recent_level_, self.level_choice_ = self._chosen_level(firsts, T, span)
        self._fit_counts(firsts, T)
        self.recent_days_ = _recent_days(span)
        self.level_spread_ = float(np.log(self._recent_ratio(self.recent_days_)[0]))
        self.recent_factor_ = self._rebase(self.recent_days_) if self.recent_level_ else 1.0
        # the two levels' disagreement is uncertainty about the level (a half-half mix of both has
        # this much more variance): new-lead ranges held 0.71 of road-fine cutoffs instead of 0.67,
        # 0.65 on Maven CRM instead of 0.60, and as often on steady logs, where the two agree
        self._level_sd = abs(self.level_spread_) / 2
        recent = seen & (first > T.value - 365 * DAY_NS)
        if not recent.any():
            recent = seen
        ent = entry[recent]
        steps = list(ss.steps)
        goal = len(steps) - 1
        keep = (ent >= 0) & (ent <= goal)
        mix = np.bincount(ent[keep], minlength=goal + 1).astype(float)
        self.mix_ = pd.Series(mix / mix.sum() if mix.sum() else mix, index=steps)
        self.as_of_ = T
        self.stage_set_ = ss
        self._fitted = True
        return self

    def _fit_counts(self, first: np.ndarray, T: pd.Timestamp) -> None:
        """The regression on the daily counts of the leads first seen at ``first`` (int64 ns, all
        by ``T``), in the ``lookback`` window before ``T``, days weighted with ``half_life``."""
        start = _horizon_end(T, self.lookback)
        span = start - T
        d_T = int((T.value + 1) // DAY_NS) - 1  # the last whole day up to as_of
        d_first = int(first.min() // DAY_NS) if first.size else d_T
        d0 = max(d_T - int(span / _DAY) + 1, d_first)
        days = np.arange(d0, d_T + 1)
        fd = _days_of(first)
        in_win = (fd >= d0) & (fd <= d_T)
        y = np.bincount(fd[in_win] - d0, minlength=days.size).astype(float)
        self._day0 = d_T
        self._season = days.size >= 540
        self._cal = None
        if self.calendar is not None:
            cal = Calendar.resolve(self.calendar)
            if cal.country is not None:
                self._cal = cal.fit(np.array([T.value]), end=T.value)
        X_all = self._design(days)
        w = np.ones(days.size) if self.half_life is None else np.exp2(-(d_T - days) / float(self.half_life))
        # a column no day of the window has (no year-end yet, no holiday) has no effect to
        # estimate: it stays 0, exactly, without uncertainty (its prior alone drawn per draw made
        # year-end arrivals 1.6 times the usual on average, and a 1e-6 ridge made them exp(30))
        est = (X_all != 0).any(axis=0)
        X = X_all[:, est]
        prec = self._prior_precision()[est]
        beta_e, mu, cov_e, phi = _penalized_poisson(X, y, w, prec)
        self.dispersion_ = phi
        self.alpha_ = float(max(np.sum(w * ((y - mu) ** 2 - mu)) / max(np.sum(w * mu**2), 1e-12), 0.0))
        beta = np.zeros(X_all.shape[1])
        beta[est] = beta_e
        cov = np.zeros((X_all.shape[1], X_all.shape[1]))
        cov[np.ix_(est, est)] = cov_e
        self._cov = cov
        self._beta = beta
        self.coef_ = pd.Series(beta, index=self._names())
        self.history_ = pd.DataFrame({"date": pd.to_datetime(days * DAY_NS), "arrivals": y, "expected": mu})

    def _recent_ratio(self, days: int) -> tuple[float, float]:
        """``(factor, fitted)``: the arrivals of the last ``days`` of the window over the fit's
        expected arrivals on those days, ``(arrivals + 1/2) / (fitted + 1/2)``, and the latter."""
        h = self.history_.iloc[-int(days):]
        fit = float(h["expected"].sum())
        return (float(h["arrivals"].sum()) + 0.5) / (fit + 0.5), fit

    def _rebase(self, days: int) -> float:
        """Scale the fitted rates to the arrivals of the last ``days`` of the window (the recent
        level, :meth:`_recent_ratio`); returns the factor.  The intercept's variance grows by
        that of the log of the recent count (``dispersion / fitted``)."""
        factor, fit = self._recent_ratio(days)
        self._beta = self._beta.copy()
        self._beta[0] += np.log(factor)
        self._cov = self._cov.copy()
        self._cov[0, 0] += self.dispersion_ / max(fit, 1.0)
        self.coef_ = pd.Series(self._beta, index=self._names())
        return factor

    def _expected_between(self, T: pd.Timestamp, end: pd.Timestamp) -> float:
        """Expected arrivals after ``T`` up to ``end`` (:func:`_horizon_days`)."""
        day, part = _horizon_days(T, end)
        if not day.size:
            return 0.0
        return float((np.exp(np.clip(self._design(day) @ self._beta, -30, 30)) * part).sum())

    def _chosen_level(self, first: np.ndarray, T: pd.Timestamp, span: pd.Timedelta):
        """``(recent, table)``: the given ``recent_level``, or with ``"auto"`` whether the recent
        level forecast the arrivals of the horizon after up to 12 past cutoffs a horizon apart
        (the latest whose horizon ended by ``T``; at least 60 days of arrivals before each)
        with a lower mean absolute error than the fitted level.  ``table``: one row per past
        cutoff, its actual arrivals and each level's forecast."""
        if self.recent_level != "auto":
            return bool(self.recent_level), None
        if not first.size:
            return False, None
        rows = []
        lo = pd.Timestamp(int(first.min())) + _ARRIVAL_MIN_HISTORY
        c = T - span
        while c >= lo and len(rows) < 12:
            m = ArrivalModel(lookback=self.lookback, half_life=self.half_life, calendar=self.calendar)
            m._fit_counts(first[first <= c.value], c)
            row = {"cutoff": c, "actual": int(((first > c.value) & (first <= (c + span).value)).sum()),
                   "fitted": m._expected_between(c, c + span)}
            m._rebase(_recent_days(span))
            row["recent"] = m._expected_between(c, c + span)
            rows.append(row)
            c = c - span
        table = pd.DataFrame(rows[::-1], columns=["cutoff", "actual", "fitted", "recent"])
        if len(table) < _MIN_SELECT:
            return False, table
        miss = table[["fitted", "recent"]].sub(table["actual"], axis=0).abs().mean()
        return bool(miss["recent"] < miss["fitted"]), table

    def predict(self, start, end) -> pd.DataFrame:
        """Expected arrivals per day from ``start`` to ``end`` (dates, both included).

        Returns
        -------
        DataFrame
            ``date``, ``expected`` (the point estimate), ``low``, ``high``
            (90% range of the day's expected count from the parameters'
            uncertainty).
        """
        if not self._fitted:
            raise ForecastError("the arrival model is not fitted; call .fit(log) first.")
        d0 = pd.Timestamp(start).value // DAY_NS
        d1 = pd.Timestamp(end).value // DAY_NS
        day = np.arange(d0, d1 + 1)
        X = self._design(day)
        eta = X @ self._beta
        se = np.sqrt(np.einsum("ij,jk,ik->i", X, self._cov, X) + getattr(self, "_level_sd", 0.0) ** 2)
        return pd.DataFrame({"date": pd.to_datetime(day * DAY_NS), "expected": np.exp(eta),
                             "low": np.exp(eta - 1.645 * se), "high": np.exp(eta + 1.645 * se)})

    def rates(self, day: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
        """Expected arrivals per (draw, day) with the parameters drawn from their posterior."""
        X = self._design(np.asarray(day, dtype=np.int64))
        L = np.linalg.cholesky(self._cov + 1e-12 * np.eye(self._cov.shape[0]))
        beta = self._beta + rng.standard_normal((n_draws, self._beta.size)) @ L.T
        lam = np.exp(np.clip(beta @ X.T, -30, 30))
        if getattr(self, "_level_sd", 0.0) > 0:  # the level's own uncertainty, a factor of mean 1 per draw
            sd = self._level_sd
            lam *= np.exp(sd * rng.standard_normal((n_draws, 1)) - sd**2 / 2)
        return lam

    def draw_counts(self, lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Daily counts around the expected ``lam`` (negative binomial, ``alpha_``)."""
        if self.alpha_ > 1e-9:
            lam = lam * rng.gamma(1.0 / self.alpha_, self.alpha_, size=lam.shape)
        return rng.poisson(lam)

    def __repr__(self) -> str:
        if not self._fitted:
            return "<ArrivalModel (not fitted)>"
        h = self.history_
        return (f"<ArrivalModel as of {self.as_of_:%Y-%m-%d}: {h['arrivals'].sum():,.0f} leads in "
                f"{len(h):,} days, trend {np.expm1(self.coef_.iloc[1]):+.0%} per year, dispersion "
                f"{self.dispersion_:.2f}>")


def _penalized_poisson(X: np.ndarray, y: np.ndarray, w: np.ndarray, prec: np.ndarray):
    """Posterior mode of a weighted Poisson regression (log link) with independent normal priors
    (precisions ``prec``, 0 for none) by penalized iteratively reweighted least squares, and its
    Laplace covariance.  The Pearson dispersion ``phi`` (at least 1) scales the likelihood (a
    quasi-Poisson: overdispersed counts say less than Poisson ones); the mode is refitted at it.

    Returns ``(beta, mu, cov, phi)``, ``cov = inv(X' W X / phi + diag(prec))``.
    """
    beta = np.zeros(X.shape[1])
    beta[0] = np.log(max(float(np.average(y, weights=w)), 1e-3))
    P = np.diag(prec)

    def mode(beta, phi):
        for _ in range(200):
            eta = np.clip(X @ beta, -30, 30)
            mu = np.exp(eta)
            z = eta + (y - mu) / mu
            A = X.T @ (X * (w * mu)[:, None]) / phi + P
            new = np.linalg.solve(A + 1e-12 * np.eye(X.shape[1]), X.T @ (w * mu * z) / phi)
            done = np.max(np.abs(new - beta)) < 1e-10
            beta = new
            if done:
                break
        return beta

    beta = mode(beta, 1.0)
    mu = np.exp(np.clip(X @ beta, -30, 30))
    dof = max(y.size - X.shape[1], 1)
    phi = float(max(np.sum(w * (y - mu) ** 2 / mu) / (w.sum() * dof / y.size), 1.0))
    if phi > 1.0:
        beta = mode(beta, phi)
        mu = np.exp(np.clip(X @ beta, -30, 30))
    A = X.T @ (X * (w * mu)[:, None]) / phi + P
    return beta, mu, np.linalg.inv(A + 1e-12 * np.eye(X.shape[1])), phi


def _horizon_days(T: pd.Timestamp, end: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """``(days, part)``: the days (int, since the epoch) from ``T`` to ``end`` (from the next day
    when ``T`` is a day's last instant, as an as-of date is) and the share of each inside the
    horizon (1 but for the days of ``T`` and of ``end``)."""
    d0 = int(T.value // DAY_NS) + 1 if (T + pd.Timedelta(1, "ns")).normalize() > T else int(T.value // DAY_NS)
    days = np.arange(d0, int((end.value - 1) // DAY_NS) + 1)
    part = (np.minimum((days + 1) * DAY_NS, end.value + 1) - np.maximum(days * DAY_NS, T.value + 1)) / DAY_NS
    return days, part


def _recent_days(span: pd.Timedelta) -> int:
    """Days whose arrivals set the recent level: the horizon, at least 30."""
    return max(int(np.ceil(span / _DAY)), 30)


def _new_lead_draws(model: TransitionModel, arrivals: ArrivalModel, T: pd.Timestamp, edges, n_draws: int,
                    rng: np.random.Generator, amounts: np.ndarray):
    """Wins (and revenue) per (draw, period) from leads that arrive after ``T``.

    Leads arrive on each day of the horizon (negative binomial around the arrival model's
    rate, its parameters drawn per draw; on the days of ``T`` and of the horizon's end
    only for the part of the day inside the horizon), enter the stage mix of recent leads at midday,
    and win by each period end with the transition model's probability for the time they
    have left (one posterior sample per draw).  Each new win is worth an amount drawn from
    recent won amounts (revenue NaN when no win has an amount).  Returns ``wins, revenue``
    (n_draws, P), the expected wins and revenue per period, and the expected number of new
    leads.
    """
    P = len(edges) - 1
    end = edges[-1]
    days, part = _horizon_days(T, end)
    wins = np.zeros((n_draws, P))
    rev = np.zeros((n_draws, P))
    if days.size == 0:
        return wins, rev, np.zeros(P), np.zeros(P), 0.0
    mid = np.maximum(days * DAY_NS + DAY_NS // 2, T.value + 1)
    # whole model days left from arrival to each period end
    t_edges = np.array([e.value for e in edges[1:]], dtype=np.int64)
    if model.calendar_ is not None:
        a_mid = model.calendar_.to_activity_ns(mid)
        a_edges = model.calendar_.to_activity_ns(t_edges)
    else:
        a_mid, a_edges = mid, t_edges
    left = np.floor((a_edges[None, :] - a_mid[:, None]) / DAY_NS + 1e-6)  # (days, P)
    Hm = int(max(left.max(), 0))
    S = model._n_tr
    mix = arrivals.mix_.reindex(list(model.stage_set_.steps)).fillna(0.0).to_numpy()
    G = len(model.groups_)
    samples = model._mass_samples is not None
    mass = model._mass_samples if samples else model._mass[None]
    D = mass.shape[0]
    Wc = np.empty((D, S, Hm + 1))
    for a in range(0, D, 25):
        Wc[a:a + 25] = model._won_within(mass[a:a + 25, G].astype(np.float64), Hm)
    li = np.clip(left, 0, Hm).astype(np.int64)
    # P(win by each edge | arrive on the day): entry-stage mix; instant wins at the goal
    q_cum = np.einsum("s,dsjp->djp", mix[:S], Wc[:, :, li]) + mix[S] * (left >= 0)[None]
    q_cum = np.where(left[None] >= 0, q_cum, 0.0)  # (D, days, P)
    q = np.diff(q_cum, axis=2, prepend=0.0).clip(0.0, 1.0)
    lam = arrivals.rates(days, n_draws, rng)  # (n_draws, days)
    lam *= part  # the days of as_of and of the horizon's end count only for their part inside it
    samp = np.arange(n_draws) % D
    exp_w = (lam[:, :, None] * q[samp]).sum(axis=1).mean(axis=0)  # (P,)
    n_new = arrivals.draw_counts(lam, rng)  # (n_draws, days)
    remaining = n_new.copy()
    q_left = np.ones((n_draws, days.size))
    for p in range(P):
        qp = q[samp, :, p]
        prob = np.where(q_left > 1e-12, np.clip(qp / np.maximum(q_left, 1e-12), 0, 1), 0.0)
        k = rng.binomial(remaining, prob)
        wins[:, p] = k.sum(axis=1)
        remaining -= k
        q_left = q_left - qp
    amounts = amounts[np.isfinite(amounts)]
    if not amounts.size:  # no win with an amount to value new wins by: their revenue is unknown
        return wins, np.full((n_draws, P), np.nan), exp_w, np.full(P, np.nan), float(lam.mean(axis=0).sum())
    mean_amt = float(amounts.mean())
    k_flat = wins.astype(np.int64).ravel()
    tot = int(k_flat.sum())
    if tot:
        vals = rng.choice(amounts, size=tot)
        idx = np.repeat(np.arange(k_flat.size), k_flat)
        rev = np.bincount(idx, weights=vals, minlength=k_flat.size).reshape(n_draws, P)
    return wins, rev, exp_w, exp_w * mean_amt, float(lam.mean(axis=0).sum())


def _arrival_choice_notes(arrivals: ArrivalModel) -> list[str]:
    """A sentence on the arrivals' level when ``recent_level="auto"`` chose the recent one."""
    tab = arrivals.level_choice_
    if tab is None or not arrivals.recent_level_:
        return []
    miss = tab[["fitted", "recent"]].sub(tab["actual"], axis=0).abs().mean()
    return [f"new leads: arrivals at the level of the last {arrivals.recent_days_} days "
            f"({arrivals.recent_factor_:.2f} times the fitted level); its forecasts of arrivals missed by "
            f"{miss['recent']:,.1f} leads on average at {len(tab)} past cutoffs, against {miss['fitted']:,.1f} "
            "for the fitted level."]


def _new_leads_part(hist, ss, model, T, edges, *, n_draws, seed, calendar, lookback, outcomes, lead, stage,
                    time, arrivals=None):
    """``(new, arrivals)``: the new leads' draws for :func:`_forecast_core` and the arrival model.

    When arrivals have stopped (:func:`_arrivals_stopped`: no lead for weeks, ten times the
    usual gap) no new lead is drawn: the log says none comes.  Drawing the arrival model's
    usual rate there forecast 396 new wins a month at the BPIC 2020 declarations' cutoffs
    after their last case, where 11 were won (an extract of the cases started by a date).
    """
    if arrivals is None:
        arrivals = ArrivalModel(lookback=lookback, calendar=calendar, recent_level="auto").fit(
            hist, as_of=T, stages=ss, lead=lead, stage=stage, time=time, horizon=edges[-1] - T)
    if _arrivals_stopped(outcomes["first_seen"].to_numpy(), T) is not None:
        P = len(edges) - 1
        return (np.zeros((n_draws, P)), np.zeros((n_draws, P)), np.zeros(P), np.zeros(P), 0.0), arrivals
    at = outcomes["outcome_at"].to_numpy()
    won = outcomes["won"].to_numpy()
    amounts = outcomes["amount"].to_numpy()
    recent = won & (at > T.value - 365 * DAY_NS) & (at <= T.value)
    amounts = amounts[recent] if np.isfinite(amounts[recent]).any() else amounts[won & (at <= T.value)]
    rng = np.random.default_rng(None if seed is None else seed + 2)
    nw, nr, enw, enr, n_exp = _new_lead_draws(model, arrivals, T, edges, n_draws, rng, amounts)
    return (nw, nr, enw, enr, n_exp), arrivals


# ---------------------------------------------------------------------------
# drift: is recent conversion different from the long-run rate?
# ---------------------------------------------------------------------------
def _arrivals_stopped(first_seen: np.ndarray, T: pd.Timestamp):
    """``(last arrival, days since, arrivals in the year before it)`` when no lead has arrived for
    over 14 days and over 10 times the usual gap of the year before (an extract of the cases
    started by a date, read after it); else ``None``.  ``first_seen``: each lead's first dated
    event, int64 nanoseconds (the per-lead table the calibration and new leads build anyway)."""
    first = first_seen[(first_seen != np.iinfo(np.int64).max) & (first_seen <= T.value)]
    if first.size < 10:
        return None
    last = int(first.max())
    year = first[first > last - 365 * DAY_NS]
    usual = max((last - int(year.min())) / DAY_NS, 1.0) / max(year.size - 1, 1)
    quiet = (T.value - last) / DAY_NS
    if quiet > 14 and quiet > 10 * usual and year.size >= 10:
        return pd.Timestamp(last), int(quiet), int(year.size)
    return None


def _batch_losses(at: np.ndarray, won: np.ndarray, recent_lost: int, recent_won: int, rname: str,
                  lname: str) -> str | None:
    """Why two windows' win rates say nothing about conversion when losses are marked in batches
    (``None`` when they are not): no lead was marked lost in the recent window while some were
    won (its rate is 100% by construction), or 3 or more months of the long-run window had wins
    but no loss marked.  Road fines are sent for credit collection about once a year: at mid-2009
    the last 90 days read "131% above the 12-month rate" (100% of 1,445 against 43%), with no
    fine marked lost in them.  ``at``, ``won``: outcome times (ns) and won flags of the leads
    decided in the long-run window."""
    months = pd.Series(won.astype(bool)).groupby(pd.to_datetime(at).to_period("M").to_numpy())
    tab = pd.DataFrame({"won": months.sum(), "decided": months.size()})
    quiet = int(((tab["won"] > 0) & (tab["won"] == tab["decided"])).sum())
    lost_long = int((~won.astype(bool)).sum())
    if recent_won > 0 and recent_lost == 0:
        where = (f"against {lost_long:,} earlier in the {lname} window" if lost_long else
                 f"nor earlier in the {lname} window")
        return (f"no lead was marked lost in the {rname} ({recent_won:,} won), {where}: losses are marked "
                f"in batches here, so the rate of a window is 100% until the next batch")
    if quiet >= 3 and lost_long:
        return (f"{quiet} of the {len(tab)} months of the {lname} window had wins but no lead marked lost: losses are "
                "marked in batches here, so the rate of a window says when a batch fell, not how leads converted")
    return None


def _window_name(span: pd.Timedelta) -> str:
    days = span / _DAY
    for d, name in [(365, "12-month"), (730, "24-month"), (182, "6-month"), (183, "6-month"), (91, "3-month")]:
        if abs(days - d) < 1:
            return name
    return f"{days:.0f}-day"


def win_rate_drift(
    log: pd.DataFrame,
    *,
    as_of=None,
    recent="90D",
    long_run="365D",
    alpha: float = 0.05,
    min_change: float = 0.1,
    level: float = 0.95,
    stall_days: float | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
) -> pd.DataFrame:
    """Win rate of the leads decided recently against the long-run rate, in a sentence.

    A lead is *decided* at its first outcome (won or lost; its path ends
    there).  For a stage set without a lost outcome a lead that has not
    moved for ``stall_days`` is lost on that day (its last event plus
    ``stall_days``; default the stage set's ``horizon_days``, else 90), so
    open leads never count as wins; as no lead can be lost before the log's
    first lead plus ``stall_days``, both windows start there at the
    earliest (before, they would see wins without their losses), and the
    sentence says when that leaves nothing to compare.  The recent window is compared with the
    rest of the long-run window (disjoint) by :func:`funnelkit.stats.compare_proportions`
    (chi-square, or Fisher's exact test for small counts).

    Parameters
    ----------
    log : DataFrame
        A canonical event log; only events up to ``as_of`` are used.
    as_of : date, optional
        End of both windows (default: the log's last timestamp).
    recent, long_run : str or number of days
        The two windows, ending at ``as_of``.
    alpha : float
        A difference is reported when the test's p-value is below it ...
    min_change : float
        ... and the rates differ by at least this share of the long-run rate.
    level : float
        Level of the Wilson intervals of the rates.
    stall_days : float, optional
        See above.
    stages : StageSet, preset name, YAML path or list, optional
    lead, stage, time : str
        Column names.

    Returns
    -------
    DataFrame
        Two rows (``window`` "recent" and "long run"): ``start``, ``end``,
        ``decided``, ``won``, ``win_rate``, ``ci_low``, ``ci_high``.
        ``attrs``: ``p_value``, ``test``, ``change`` (recent / long run - 1),
        ``differs`` (bool) and ``sentence`` ("win rate in the last 90 days is
        40% below the 12-month rate (...)").

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast
    >>> d = fk.forecast.win_rate_drift(fk.datasets.load_demo(), as_of="2025-06-30")
    >>> d["window"].tolist()
    ['recent', 'long run']
    >>> d.attrs["sentence"].startswith("win rate in the last 90 days")
    True
    """
    log, as_of, _tz = _in_utc(log, time, as_of)
    ss = resolve_stages(log, stages)
    T = parse_as_of(as_of) if as_of is not None else pd.Timestamp(log[time].max())
    r0, l0 = T - (_horizon_end(T, recent) - T), T - (_horizon_end(T, long_run) - T)
    if r0 < l0:
        raise ForecastError(f"recent={recent!r} must be shorter than long_run={long_run!r}.")
    hist = _truncate(log, T, time, lead)
    o = _lead_outcomes(hist, ss, lead=lead, time=time, stage=stage, amount="__none__")
    young = None
    at = o["outcome_at"].to_numpy()
    won = o["won"].to_numpy()
    if not ss.lost:
        days = stall_days if stall_days is not None else (getattr(ss, "horizon_days", None) or 90)
        stalled = (at == NAT) & (o["last_seen"].to_numpy() != NAT)
        at = np.where(stalled, o["last_seen"].to_numpy() + np.int64(round(float(days) * DAY_NS)), at)
        won = won & ~stalled
        # no lead is lost before the log's first lead plus stall_days, while wins count from its
        # first day: a window reaching back before that sees wins without their losses (the
        # e-commerce log, 0.2-0.8% of visitors buying, said 6% over the last 90 days, 7% before)
        seen = o["first_seen"].to_numpy()
        seen = seen[(seen != NAT) & (seen <= T.value)]
        if seen.size:
            edge = pd.Timestamp(int(seen.min()) + np.int64(round(float(days) * DAY_NS)))
            if edge > l0:
                young = (f"without a lost outcome a lead counts as lost {float(days):g} days after its last move, "
                         f"and the log begins on {pd.Timestamp(int(seen.min())):%Y-%m-%d}: no window before "
                         f"{edge:%Y-%m-%d} sees its losses")
                r0, l0 = max(r0, edge), max(l0, edge)
    decided = (at != NAT) & (at <= T.value)
    in_r = decided & (at > r0.value)
    in_l = decided & (at > l0.value)
    in_early = in_l & ~in_r
    n = np.array([in_r.sum(), in_l.sum()])
    k = np.array([(in_r & won).sum(), (in_l & won).sum()])
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    lo, hi = stats.proportion_ci(k, n, level=level)
    out = pd.DataFrame({"window": ["recent", "long run"], "start": [r0, l0], "end": [T, T], "decided": n,
                        "won": k, "win_rate": rate, "ci_low": lo, "ci_high": hi})
    p, test = stats.compare_proportions([int((in_r & won).sum())], [int(in_r.sum())],
                                        [int((in_early & won).sum())], [int(in_early.sum())])
    pv = float(p[0]) if len(p) and np.isfinite(p[0]) else np.nan
    change = rate[0] / rate[1] - 1 if n.all() and rate[1] > 0 else np.nan
    differs = bool(np.isfinite(pv) and pv < alpha and np.isfinite(change) and abs(change) >= min_change)
    rname = f"last {(T - r0) / _DAY:g} days"
    lname = _window_name(T - l0)
    batches = _batch_losses(at[in_l], won[in_l], n[0] - k[0], k[0], rname, lname) if ss.lost else None
    if batches is not None:  # a rate of the window says when losses were marked, not how leads converted
        differs = False
    if young is not None and (r0 >= T or not in_early.any()):
        sentence = f"win rate not compared: {young}."
    elif batches is not None:
        sentence = f"win rate not compared: {batches}."
    elif not n[0] or not n[1]:
        sentence = f"win rate in the {rname}: no lead was decided in the window, nothing to compare."
    elif differs:
        ptxt = "p < 0.001" if pv < 0.001 else f"p = {pv:.3f}"
        sentence = (f"win rate in the {rname} is {abs(change):.0%} {'below' if change < 0 else 'above'} the "
                    f"{lname} rate ({rate[0]:.0%} of {n[0]:,} decided leads against {rate[1]:.0%} of "
                    f"{n[1]:,}; {ptxt}).")
    else:
        sentence = (f"win rate in the {rname} ({rate[0]:.0%} of {n[0]:,} decided leads) is in line with the "
                    f"{lname} rate ({rate[1]:.0%} of {n[1]:,}).")
    out.attrs.update({"p_value": pv, "test": str(test[0]) if len(test) else "", "change": change,
                      "differs": differs, "sentence": sentence})
    return out


# ---------------------------------------------------------------------------
# the log's own past: rolling forecasts, half-life choice, calibrated ranges
# ---------------------------------------------------------------------------
#: Half-lives (days) tried by ``half_life="auto"``; ``None`` is no decay.  (365, 180 and 45 days
#: were candidates too, chosen at 121 of the calibration benchmark's 459 scored cutoffs; rescored
#: with (none, 90) only, its 12 logs held their 80% ranges as often or closer to 80% with the same
#: or a lower wins MAE on 11 (simulated stationary, 2,000 leads: MAE 1.97 against 1.92), at two
#: fifths of the cost: see benchmarks/bench_calibration_results.txt.)
HALF_LIVES: tuple = (None, 90.0)
_MIN_SYMMETRIC = 4  # past cutoffs needed for a calibrated range (one score, both sides)
_MIN_ASYMMETRIC = 9  # ... for separate lower and upper corrections at 80%
_MIN_ALL_ONE_SIDE = 5  # ... for a level correction when every one of them missed on the same side
_MIN_SELECT = 3  # past cutoffs needed to choose a half-life (or the arrivals' level) on them
_ARRIVAL_MIN_HISTORY = pd.Timedelta(days=60)  # arrivals before a past cutoff the choice judges
_CAL_MIN_HISTORY = pd.Timedelta(days=60)  # history before a past cutoff: at least this, and twice the horizon
_CAL_MIN_SPACING = pd.Timedelta(days=7)  # calibration_every="auto": whole weeks, from one ...
_CAL_MAX_SPACING = pd.Timedelta(days=30)  # ... or 30 days once the history has room for them


def _to_days(x) -> pd.Timedelta:
    if isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool):
        return pd.Timedelta(days=float(x))
    try:
        return pd.Timedelta(x)
    except (ValueError, TypeError) as exc:
        raise ForecastError(f"{x!r} is not a length of time (use days, e.g. 30 or '30D').") from exc


def _candidates(half_life, half_lives, *, choosing: bool = True) -> list:
    """The half-lives to fit: the candidates of ``"auto"`` when there are past forecasts to
    choose on (``choosing``: a calibration makes them), else the one given (``"auto"``: no decay)."""
    if isinstance(half_life, str):
        if half_life != "auto":
            raise ForecastError(f"half_life must be a number of days, None or 'auto', got {half_life!r}.")
        if not choosing:
            return [None]
        cands = list(HALF_LIVES if half_lives is None else half_lives)
        if not cands:
            raise ForecastError("half_lives is empty.")
        return [None if h is None else float(h) for h in cands]
    return [None if half_life is None else float(half_life)]


def _rows_for_cutoff(log, ss, c, outcomes, *, horizon, level, candidates, model_by, amount_bands, probabilities,
                     n_draws, seed, calendar, lead, stage, time, amount, new_leads=False, arrivals_lookback="730D",
                     value_rates=True):
    """Raw forecasts at one cutoff, one per candidate half-life, scored against what happened.

    Returns ``(rows, leads)``: one dict per candidate and, per candidate, the open leads'
    (id, stage, p_win, stage_probability, won, amount) frame.
    """
    hist = _truncate(log, c, time, lead)
    end = _horizon_end(c, horizon)
    snap = _snapshot(hist, ss, c, [], lead, stage, time, amount)
    notes: list[str] = []
    base, banded = _fit_for_forecast(
        hist, snap, ss, c, model_by=model_by, amount_bands=amount_bands, n_samples=min(_SAMPLES, n_draws),
        half_life=candidates[0], calendar=calendar, lead=lead, stage=stage, time=time, amount=amount,
        notes=notes,
    )
    rr_w, rr_r = _run_rate(outcomes, c - (end - c), c, open_only=not new_leads)
    a = (1 - level) / 2
    rr_lo, rr_hi = (float(x) for x in _st.poisson.ppf([a, 1 - a], max(rr_w, 1e-9)))
    if new_leads:  # every win in the horizon, whoever made it
        o_all = outcomes
        at_all = o_all["outcome_at"].to_numpy()
        all_hit = o_all["won"].to_numpy() & (at_all > c.value) & (at_all <= end.value)
        outcomes_c = _lead_outcomes(hist, ss, lead=lead, time=time, stage=stage, amount=amount)
    rows, leads = [], []
    arrivals = None
    crm = _crm_probabilities(hist, ss, c, (end - c) / _DAY, probabilities, lead, stage, time)
    for h in candidates:
        model = base if h == candidates[0] else base.with_half_life(h)
        new = None
        if new_leads:
            new, arrivals = _new_leads_part(hist, ss, model, c, [c, end], n_draws=n_draws, seed=seed,
                                            calendar=calendar, lookback=arrivals_lookback, outcomes=outcomes_c,
                                            lead=lead, stage=stage, time=time, arrivals=arrivals)
        f = _forecast_core(hist, snap, ss, model, banded, c, end, [c, end], by=[], probabilities=probabilities,
                           n_draws=n_draws, level=level, seed=seed, lead=lead, stage=stage, time=time,
                           amount=amount, notes=list(notes), new=new, value_rates=value_rates, baseline=crm)
        L = f.leads_
        o = outcomes.reindex(L[lead].to_numpy())
        won_t = o["outcome_at"].to_numpy()
        hit = o["won"].to_numpy(dtype=bool) & (won_t > c.value) & (won_t <= end.value)
        amt_won = np.where(np.isnan(o["amount"].to_numpy()), L["amount"].to_numpy(dtype=float),
                           o["amount"].to_numpy())
        t0 = f.total.iloc[0]
        # revenue is scored over the leads whose amount was known at the cutoff, as forecast
        known = ~np.isnan(L["amount"].to_numpy(dtype=float))
        if new_leads:
            act_w = int(all_hit.sum())
            act_r = float(np.nansum(o_all["amount"].to_numpy()[all_hit]))
        else:
            act_w = int(hit.sum())
            act_r = float(np.nansum(np.where(hit & known, amt_won, 0.0)))
        row = {
            "cutoff": c,
            "horizon_end": end,
            "half_life": h,
            "basis": t0["basis"],
            "open_leads": int(t0["open_leads"]),
            "amount_unknown": int((~known).sum()),
            "actual_wins": act_w,
            "actual_revenue": act_r,
            **{k: float(t0[k]) for k in [
                "expected_wins", "wins_low", "wins_high", "expected_revenue", "revenue_low",
                "revenue_high", "weighted_wins", "weighted_wins_low", "weighted_wins_high",
                "weighted_pipeline", "weighted_low", "weighted_high", "horizon_weighted_wins",
                "horizon_weighted_wins_low", "horizon_weighted_wins_high", "horizon_weighted_pipeline",
                "horizon_weighted_low", "horizon_weighted_high",
            ]},
            "run_rate_wins": float(rr_w),
            "run_rate_wins_low": rr_lo,
            "run_rate_wins_high": rr_hi,
            "run_rate_revenue": rr_r,
            "run_rate_revenue_low": rr_r * rr_lo / rr_w if rr_w else 0.0,
            "run_rate_revenue_high": rr_r * rr_hi / rr_w if rr_w else 0.0,
        }
        if new_leads:
            row.update({k: float(t0[k]) for k in ["open_pipeline_wins", "new_leads", "new_lead_wins"]})
        if not known.any():  # no amounts at the cutoff: revenue was not forecast
            for k in row:
                if "revenue" in k or k in {"weighted_pipeline", "weighted_low", "weighted_high",
                                           "horizon_weighted_pipeline", "horizon_weighted_low",
                                           "horizon_weighted_high"}:
                    row[k] = np.nan
        rows.append(row)
        leads.append(pd.DataFrame({
            "cutoff": c,
            lead: L[lead].to_numpy(),
            "stage": L["stage"].to_numpy(),
            "p_win": L["p_win"].to_numpy(),
            "stage_probability": L["stage_probability"].to_numpy(),
            "won": hit,
            "amount": L["amount"].to_numpy(),
        }))
    return rows, leads


def _choose_half_life(past: pd.DataFrame, candidates: list):
    """The half-life chosen on the past cutoffs: the longest one (no decay is the longest) whose
    wins MAE is within one standard error of the lowest (the one-standard-error rule: a
    shorter memory must earn its extra noise).  Returns ``(half_life, its MAE)``."""
    if len(candidates) == 1:
        return candidates[0], np.nan
    if past.empty or past["cutoff"].nunique() < _MIN_SELECT:
        return candidates[0], np.nan
    key = past["half_life"].astype(object).where(past["half_life"].notna(), "none")
    err = (past["expected_wins"] - past["actual_wins"]).abs()
    tab = pd.DataFrame({"cutoff": past["cutoff"].to_numpy(), "h": key.to_numpy(), "e": err.to_numpy()})
    wide = tab.pivot_table(index="cutoff", columns="h", values="e", aggfunc="first")
    mae = wide.mean()
    best = mae.idxmin()
    order = sorted(candidates, key=lambda h: np.inf if h is None else float(h), reverse=True)  # longest first
    for h in order:
        k = "none" if h is None else h
        if k not in wide.columns:
            continue
        diff = (wide[k] - wide[best]).dropna()
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        if mae[k] <= mae[best] + se:
            return h, float(mae[k])
    return (None if best == "none" else best), float(mae[best])


def _calibrate_range(past: pd.DataFrame, est: float, lo: float, hi: float, level: float, *, quantity: str,
                     shown: float | None = None, most: float | None = None):
    """The model's range corrected by the past cutoffs' errors (split-conformal).

    Each past forecast's miss is measured in units of its own half-range below and above the
    point forecast: ``(low - actual) / (expected - low)`` and ``(actual - high) / (high -
    expected)``.  With ``n`` past cutoffs, the ``ceil((n + 1)(1 - a/2))``-th smallest of each
    (``a = 1 - level``; the split-conformal rank: a new miss exchangeable with the past ones
    falls outside each side with probability at most ``a/2``, exactly ``a/2`` when the rank
    is a whole number, e.g. ``n = 19`` at 80%) widens (or, if the model was too cautious,
    narrows) that side of the new range; with fewer than 9 but at least 4 past cutoffs one
    score, the ``max`` of both sides, at rank ``ceil((n + 1) level)`` corrects both.  Returns
    ``(low, high, n, how)``, ``how`` "calibrated" or "model" (too few past cutoffs).

    The calibrated range always holds the point forecast shown beside it (``shown``, the model's
    ``est`` times the level correction; default ``est``): where the past misses would move one
    end past it (a pipeline about to run dry: expected 0.2 wins after cutoffs that each won a
    few more than forecast), that end stops at the point forecast, which only widens the range.

    ``most``: the largest possible value (the open leads, for the wins of the open pipeline:
    each can be won once); the high end never exceeds it (at a dry pipeline the past misses
    stretched "1 open lead" to a range of 0 to 3 wins).

    A calibrated range of wins is stated in whole wins, each end rounded to the nearest
    (halves up), as reports and ``repr`` show it and the backtest scores it.  Rounding to the
    nearest never leaves out a whole number the unrounded range holds (``round(low) <=
    ceil(low)``, ``round(high) >= floor(high)``), so the split-conformal guarantee for a
    whole number of wins still holds; it adds at most one whole win per side.  Without it
    the backtest scored a range ("2.2 to 7.3") the reader never saw ("2 to 7") and counted
    an actual of 2 as a miss.
    """
    if past is None or len(past) == 0:
        return lo, hi, 0, "model"
    e = past[f"expected_{quantity}"].to_numpy(dtype=float)
    plo = past[f"{quantity}_low"].to_numpy(dtype=float)
    phi = past[f"{quantity}_high"].to_numpy(dtype=float)
    act = past[f"actual_{quantity}"].to_numpy(dtype=float)
    ok = np.isfinite(e) & np.isfinite(act) & np.isfinite(plo) & np.isfinite(phi)
    e, plo, phi, act = e[ok], plo[ok], phi[ok], act[ok]
    n = int(e.size)

    def floor(x, ref):  # a half-range of at least one win, or of 1% of the forecast
        if quantity == "wins":
            return np.maximum(x, 1.0)
        return np.maximum(x, np.maximum(0.01 * np.abs(ref), 1e-9))

    s_lo = (plo - act) / floor(e - plo, e)
    s_hi = (act - phi) / floor(phi - e, e)
    w_lo = float(floor(est - lo, est))
    w_hi = float(floor(hi - est, est))
    alpha = 1 - level
    if n < _MIN_SYMMETRIC:
        return lo, hi, n, "model"
    if n >= _MIN_ASYMMETRIC and np.ceil((n + 1) * (1 - alpha / 2)) <= n:
        r = np.ceil((n + 1) * (1 - alpha / 2))
        q_lo, q_hi = _order_stat(s_lo, r), _order_stat(s_hi, r)
    elif np.ceil((n + 1) * level) <= n:
        q_lo = q_hi = _order_stat(np.maximum(s_lo, s_hi), np.ceil((n + 1) * level))
    else:
        return lo, hi, n, "model"
    new_lo, new_hi = lo - q_lo * w_lo, hi + q_hi * w_hi
    if new_lo > new_hi:  # never an empty range
        new_lo = new_hi = (new_lo + new_hi) / 2
    point = est if shown is None else shown
    if np.isfinite(point):  # the range holds the point forecast shown beside it
        new_lo, new_hi = min(new_lo, point), max(new_hi, point)
    if quantity == "wins":  # whole wins, as shown
        new_lo, new_hi = np.floor(new_lo + 0.5), np.floor(new_hi + 0.5)
    if most is not None and np.isfinite(most):  # never more than can happen
        new_hi = min(new_hi, float(most))
        new_lo = min(new_lo, new_hi)
    return max(float(new_lo), 0.0), max(float(new_hi), 0.0), n, "calibrated"


def _order_stat(x: np.ndarray, rank: float) -> float:
    """The order statistic of a (1-based, fractional) rank, interpolated linearly."""
    xs = np.sort(x)
    f = int(np.floor(rank))
    lo = xs[max(f, 1) - 1]
    hi = xs[min(f + 1, xs.size) - 1]
    return float(lo + (rank - f) * (hi - lo))


def _level_correction(past: pd.DataFrame, *, quantity: str) -> tuple[float, int, int]:
    """Past forecasts that kept missing on the same side: the factor to correct the level.

    When at least 70% of 9 or more past cutoffs missed on the same side (the model lags a
    trend, or misses a batch rhythm), or all of 5 to 8 did (no more likely by chance: 6% against
    18% for 7 of 9; a young log after a step), the new point forecast is multiplied by the median
    ratio ``actual / expected`` of those cutoffs (kept within 1/4 to 4).  Returns ``(factor,
    cutoffs on that side, cutoffs)``; the factor is 1 otherwise.
    """
    if past is None or len(past) == 0:
        return 1.0, 0, 0
    e = past[f"expected_{quantity}"].to_numpy(dtype=float)
    a = past[f"actual_{quantity}"].to_numpy(dtype=float)
    ok = np.isfinite(e) & np.isfinite(a) & (e > 0)
    e, a = e[ok], a[ok]
    n = int(e.size)
    if n < _MIN_ALL_ONE_SIDE:
        return 1.0, 0, n
    over, under = int((e > a).sum()), int((e < a).sum())
    side = max(over, under)
    if side < (np.ceil(0.7 * n) if n >= _MIN_ASYMMETRIC else n):
        return 1.0, side, n
    return float(np.clip(np.median(a / e), 0.25, 4.0)), side, n


def _spaced(cutoffs: list, every: pd.Timedelta) -> list:
    """Cutoffs at least ``every`` apart, walking back from the latest (sorted)."""
    keep: list = []
    for c in reversed(cutoffs):
        if not keep or keep[-1] - c >= every:
            keep.append(c)
    return keep[::-1]


def _range_label(how: str, n: int) -> str:
    if how == "calibrated":
        return f"calibrated on {n} past cutoffs"
    return f"model (only {n} past cutoffs to calibrate on)" if n else "model"


def _calibration_history(span: pd.Timedelta) -> pd.Timedelta:
    """History of wins a past cutoff needs before it (to fit the model it is judged by):
    twice the horizon, at least 60 days.  Half a year for a 90-day horizon; two months for a
    30-day one, so that a log of six months can be calibrated at all."""
    return max(_CAL_MIN_HISTORY, 2 * span)


def _first_win(log: pd.DataFrame, ss: StageSet, *, stage: str, time: str):
    """When the log's first win happened (NaT without one): a past cutoff is judged only
    once its model has seen wins for :func:`_calibration_history`.  Before, its forecast is
    0 wins of 0 to 0, and its "miss" (146 wins on a CRM export whose first deals closed
    four months after the first engagement) measured in half-ranges is no error of a model
    that could have been better, but a calibration a hundred times too wide."""
    won = stage_order(log, ss, stage=stage) == len(ss.steps) - 1  # the won stage under any of its names
    return log.loc[won, time].min()


def _backtest_candidates(bt: Backtest, half_life, half_lives) -> list:
    """The candidate half-lives of ``forecast(calibrate=bt)``: the backtest's own (its rolling
    forecasts are all there is to choose on) with the default ``half_life="auto"``, else those
    asked for, each of which the backtest must have run."""
    have = sorted({None if pd.isna(h) else float(h) for h in bt.rolling_["half_life"]},
                  key=lambda h: -np.inf if h is None else h) if len(bt.rolling_) else [None]
    if isinstance(half_life, str) and half_life == "auto" and half_lives is None:
        return have
    asked = _candidates(half_life, half_lives)
    missing = [h for h in asked if h not in have]
    if missing:
        show = ", ".join("none" if h is None else f"{h:g}" for h in have)
        raise ForecastError(
            f"calibrate=<Backtest>: the backtest's forecasts used half-lives {show}, not "
            f"{', '.join('none' if h is None else f'{h:g}' for h in missing)}; ask for those (or none) to "
            "calibrate on it."
        )
    return asked


def _backtest_past(bt: Backtest, T: pd.Timestamp, end: pd.Timestamp, start, n: int, every, *, level: float,
                   new_leads: bool) -> pd.DataFrame:
    """The rows of a backtest's rolling forecasts that ``forecast(as_of=T, calibrate=bt)``
    calibrates on: as its own past cutoffs would be chosen (whole horizon observed by ``T``,
    after the history of wins a past cutoff needs, spaced as :func:`_calibration_spacing`
    says, the latest ``n``), from forecasts of the same horizon, level and basis."""
    roll = bt.rolling_
    if _horizon_end(T, bt.horizon_) != end:
        raise ForecastError(
            f"calibrate=<Backtest>: the backtest's horizon ({bt.horizon_!r}) does not end where this "
            f"forecast's does ({end:%Y-%m-%d %H:%M}); backtest with the same horizon."
        )
    if not np.isclose(bt.level_, level):
        raise ForecastError(f"calibrate=<Backtest>: the backtest's level is {bt.level_:g}, this forecast's "
                            f"{level:g}; its misses are measured in ranges of its own level.")
    if roll.empty:
        return roll
    with_new = bool((roll["basis"] != "open pipeline").any())
    if with_new != bool(new_leads):
        raise ForecastError(
            f"calibrate=<Backtest>: the backtest forecast {'every win, new leads included' if with_new else 'the open pipeline'}"
            f", this forecast {'every win' if new_leads else 'the open pipeline'}; pass the same new_leads=."
        )
    span = end - T
    return _past_rows(roll, T, span, start, n, _calibration_spacing(start, T, span, n, every))


def _past_rows(rolling: pd.DataFrame, T: pd.Timestamp, span: pd.Timedelta, start, n: int,
               every: pd.Timedelta) -> pd.DataFrame:
    """The rolling forecasts a forecast at ``T`` is calibrated on: whole horizon observed by
    ``T``, made after the history of wins a past cutoff needs (:func:`_calibration_history`
    after ``start``, the first win), at least ``every`` apart walking back from the latest,
    the latest ``n`` of them (every candidate half-life's row of each)."""
    if rolling.empty:
        return rolling
    lo = start + _calibration_history(span) if pd.notna(start) else T
    past = rolling[(rolling["horizon_end"] <= T) & (rolling["cutoff"] >= lo)]
    keep = _spaced(sorted(past["cutoff"].unique()), every)
    keep = keep[-int(n):] if n else []
    return past[past["cutoff"].isin(keep)].reset_index(drop=True)


def _calibration_spacing(start, T: pd.Timestamp, span: pd.Timedelta, n: int, every) -> pd.Timedelta:
    """Spacing of the past cutoffs a forecast at ``T`` is calibrated on.

    ``every="auto"``: ``n`` of them spread over the history that has room for them (the
    first one :func:`_calibration_history` after ``start``, the first win; the last one's
    horizon ending by ``T``): 30 days apart once there is room for that (12 cutoffs over a
    year: each season is in the calibration), else in whole weeks, one to four (each past
    cutoff on the same weekday): a dozen cutoffs still on a log of a few months.  Whole
    weeks also let the backtest pick each cutoff's past cutoffs from its weekly cutoffs
    exactly: with 8 days asked of cutoffs a week apart, it took every other one, 7 past
    cutoffs for 12.  (Four weeks on long logs too held less on the drifting simulated logs,
    0.72 against 0.79 of 72 cutoffs.)
    """
    if not (isinstance(every, str) and every == "auto"):
        step = _to_days(every)
        if step < _DAY:
            raise ForecastError(f"calibration_every={every!r} must be at least a day.")
        return step
    if pd.isna(start):
        return _CAL_MAX_SPACING
    room = ((T - span).normalize() - _DAY) - (start + _calibration_history(span))
    if n <= 1 or room <= pd.Timedelta(0):
        return _CAL_MAX_SPACING
    gap = room / (int(n) - 1)
    if gap >= _CAL_MAX_SPACING:
        return _CAL_MAX_SPACING
    return max(int(gap / _CAL_MIN_SPACING), 1) * _CAL_MIN_SPACING


def _calibration_grid(start, T, span: pd.Timedelta, n: int, every) -> list[pd.Timestamp]:
    """Past cutoffs whose whole horizon is observed by ``T``, :func:`_calibration_spacing`
    apart, at most ``n``, none with less than :func:`_calibration_history` of wins (since
    ``start``, the first win) before it."""
    step = _calibration_spacing(start, T, span, n, every)  # checks every, also when no cutoff fits
    if pd.isna(start) or n < 1:
        return []
    lo = start + _calibration_history(span)
    last = (T - span).normalize() - _DAY  # whole days: the horizon ends by T
    out = []
    for k in range(int(n)):
        c = last - k * step
        if c < lo:
            break
        out.append(parse_as_of(c.date()))
    return sorted(out)


# ---------------------------------------------------------------------------
# backtest
# ---------------------------------------------------------------------------
class Backtest:
    """The result of :func:`backtest`: the log's own history as the judge.

    Attributes
    ----------
    table : DataFrame
        One row per cutoff: ``cutoff``, ``horizon_end``, ``open_leads``,
        ``amount_unknown`` (open leads without an amount at the cutoff: in
        the wins, not in the revenue, on both sides), ``actual_wins``,
        ``actual_revenue`` (``NaN`` when no open lead had an amount); ours:
        ``expected_wins``, ``wins_low``, ``wins_high``, ``expected_revenue``,
        ``revenue_low``, ``revenue_high``; the CRM weighted pipeline:
        ``weighted_wins``, ``weighted_wins_low``, ``weighted_wins_high``,
        ``weighted_pipeline``, ``weighted_low``, ``weighted_high`` (eventual
        wins, as a CRM shows) and the same within the horizon
        (``horizon_weighted_*``); the run-rate (what the same quantity was over the previous
        horizon-length period, carried forward; range: Poisson):
        ``run_rate_wins``, ``run_rate_wins_low``, ``run_rate_wins_high``,
        ``run_rate_revenue``, ``run_rate_revenue_low``,
        ``run_rate_revenue_high``; ``half_life`` (of the model used),
        ``model_wins_low``, ``model_wins_high``, ``model_revenue_low``,
        ``model_revenue_high`` (the model's own range; ``wins_low`` etc. are
        the calibrated one with ``calibrate=True``), ``range`` and
        ``revenue_range`` (how the range was made),
        ``calibration_cutoffs`` (earlier cutoffs it was calibrated on),
        ``model_expected_wins``, ``model_expected_revenue`` (the model's
        point forecast; ``expected_*`` is it times ``level_factor`` /
        ``revenue_level_factor``, 1 unless past misses kept falling on one
        side).
    summary : DataFrame
        One row per (``method``, ``quantity``): ``method`` ("forecast",
        "forecast, model range" (the same forecast scored with the model's
        own range), "weighted pipeline" (eventual, as a CRM shows it),
        "weighted pipeline, within horizon", "run-rate"), ``quantity`` ("wins" or
        "revenue"), ``cutoffs`` (scored), ``mae``, ``mape`` (over cutoffs
        with a non-zero actual), ``bias`` (mean forecast - actual),
        ``held`` (cutoffs whose actual fell inside the range),
        ``coverage`` (``held / cutoffs``), ``coverage_se`` (its binomial
        standard error, ``sqrt(c (1 - c) / n)``; cutoffs closer together
        than the horizon overlap, so it is optimistic then), ``mean_width``
        (of the range), ``level``.
    sentence : str
        The verdict in words: "the 80% range held in 17 of 20 past
        cutoffs ...".
    leads_ : DataFrame
        One row per (cutoff, open lead): ``cutoff``, ``lead_id``, ``stage``,
        ``p_win`` (ours, within the horizon), ``stage_probability`` (the
        baseline's), ``won`` (it won within the horizon), ``amount``.
    rolling_ : DataFrame
        Every cutoff run (warm-up ones included) for every candidate
        half-life, with the same columns as ``table`` before calibration.
    notes_ : list of str
        What to keep in mind reading the coverage: cutoffs after the log's
        last new lead (an extract of the cases started by a date: its open
        pipeline only drains there), and cutoffs at which under two wins
        were expected (no range of whole wins holds exactly 80% there), each
        with the coverage with and without them.
    level_ : float
    horizon_ : object

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> bt = fk.forecast.backtest(fk.datasets.load_demo(), n_cutoffs=3, n_draws=100, calibrate=False)
    >>> bt.table["cutoff"].dt.strftime("%Y-%m-%d").tolist(), bt.table["actual_wins"].tolist()
    (['2024-12-31', '2025-03-31', '2025-06-30'], [69, 59, 66])
    >>> int(bt.summary.set_index(["method", "quantity"]).loc[("forecast", "wins"), "cutoffs"])
    3
    >>> bt.sentence.startswith("the 80% range held in 3 of 3 past cutoffs")
    True
    """

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self) -> str:
        s = self.summary
        lines = [f"<Backtest: {len(self.table)} cutoffs, horizon {self.horizon_}, {self.level_:.0%} intervals"]
        for _, r in s.iterrows():
            lines.append(
                f"  {r['method']:<17} {r['quantity']:<7} MAE {r['mae']:>12,.1f}  MAPE {r['mape']:6.1%}  "
                f"bias {r['bias']:>+12,.1f}  coverage {r['coverage']:.0%}"
            )
        lines.append("  " + self.sentence)
        lines += [f"  - {n}" for n in getattr(self, "notes_", [])]
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        from .display import backtest_html

        return backtest_html(self)


def _default_cutoffs(log, time, horizon, n_cutoffs, every, min_history, until=None) -> list[pd.Timestamp]:
    """Cutoffs (ends of days): ``every`` apart back from the last one whose horizon is
    observed, or ``n_cutoffs`` month ends spread over the history (evenly spaced days
    when it has fewer month ends).

    ``until``: where the log's outcomes end, when before its last event (:func:`_outcomes_end`);
    horizons are observed up to it.
    """
    t = log[time].dropna()
    if t.empty:
        raise ForecastError("the log has no dated event to backtest on.")
    first, last = t.min(), t.max()
    if until is not None:
        last = until
    hi = last - (_horizon_end(last, horizon) - last)
    if isinstance(min_history, str) and min_history == "auto":
        # half a year, or on a shorter log the first third of the room before the last horizon
        room = hi - first
        min_history = "180D" if room >= pd.Timedelta(days=270) else max(room / 3, pd.Timedelta(days=14)).ceil("D")
    lo = _horizon_end(first, min_history)
    lo_d, hi_d = lo.normalize(), hi.normalize() - _DAY  # whole days only
    if hi_d < lo_d:
        raise ForecastError(
            f"the history ({first:%Y-%m-%d} to {last:%Y-%m-%d}) is too short for min_history="
            f"{min_history!r} plus horizon={horizon!r}; pass cutoffs= or shorter windows."
        )
    if every is not None:
        step = pd.Timedelta(days=float(every)) if isinstance(every, (int, float, np.integer, np.floating)) \
            else pd.Timedelta(every)
        if step < _DAY:
            raise ForecastError(f"every={every!r} must be at least a day.")
        n_max = int((hi_d - lo_d) / step) + 1
        cands = pd.DatetimeIndex([hi_d - k * step for k in range(n_max)][::-1]).normalize()
        if n_cutoffs is not None:
            cands = cands[-int(n_cutoffs):]
    else:
        n = 24 if n_cutoffs is None else int(n_cutoffs)
        cands = pd.date_range(lo_d, hi_d, freq="ME")
        if len(cands) < n:
            span = (hi_d - lo_d) / _DAY
            k = min(n, int(span) + 1)
            cands = pd.DatetimeIndex(np.unique(
                [lo_d + pd.Timedelta(days=round(x)) for x in np.linspace(0, span, k)]))
        if len(cands) > n:
            pick = np.unique(np.round(np.linspace(0, len(cands) - 1, n)).astype(int))
            cands = cands[pick]
    return [parse_as_of(c.date()) for c in cands]


def _lead_outcomes(log, ss, *, lead, time, stage, amount) -> pd.DataFrame:
    """Per lead: first dated event, first outcome (time, won or not) and the amount then.

    A lead's path ends at its first outcome (the transition model's rule), so a lead
    lost and later won counts as lost.  The amount at the outcome is the one on the outcome
    event, else the lead's latest amount before it.
    """
    order = stage_order(log, ss, stage=stage)
    goal = len(ss.steps) - 1
    t = log[time].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    codes, ids = pd.factorize(log[lead])
    dated = (t != NAT) & (codes >= 0)
    first_seen = np.full(len(ids), np.iinfo(np.int64).max)
    np.minimum.at(first_seen, codes[dated], t[dated])
    amt = log[amount].to_numpy(dtype=float) if amount in log.columns else np.full(len(log), np.nan)
    lost_last = np.where(order == LOST_ORDER, 1, 0)
    in_order = (codes[1:] > codes[:-1]) | ((codes[1:] == codes[:-1]) & (
        (t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (lost_last[1:] >= lost_last[:-1]))))
    srt = np.arange(len(codes)) if in_order.all() else np.lexsort((lost_last, t, codes))
    c_s, t_s, o_s, a_s = codes[srt], t[srt], order[srt], amt[srt]
    last_seen = np.full(len(ids), NAT, dtype=np.int64)
    np.maximum.at(last_seen, codes[dated], t[dated])
    # latest known amount up to each event, within the lead
    a_ff = pd.Series(a_s).groupby(c_s).ffill().to_numpy() if amount in log.columns else a_s
    is_out = ((o_s == goal) | (o_s == LOST_ORDER)) & (t_s != NAT) & (c_s >= 0)
    pos = np.flatnonzero(is_out)
    first = pos[np.r_[True, c_s[pos][1:] != c_s[pos][:-1]]] if pos.size else pos
    out_t = np.full(len(ids), NAT, dtype=np.int64)
    out_won = np.zeros(len(ids), dtype=bool)
    out_amt = np.full(len(ids), np.nan)
    out_t[c_s[first]] = t_s[first]
    out_won[c_s[first]] = o_s[first] == goal
    out_amt[c_s[first]] = a_ff[first]
    return pd.DataFrame({"first_seen": first_seen, "last_seen": last_seen, "outcome_at": out_t, "won": out_won,
                         "amount": out_amt}, index=pd.Index(ids, name=lead))


def _outcomes_end(log: pd.DataFrame, time: str, outcomes: pd.DataFrame) -> pd.Timestamp | None:
    """The log's last scored outcome (a lead's first won or lost event) when it comes a day or more
    before its last event, else ``None``.  After it the log does not say what was won (an extract,
    outcomes booked in batches, a system that stopped recording them): BPIC 2020's requests for
    payment record their last payment on 2019-04-11 and one stray approval on 2019-08-08, and
    horizons in between scored 10 dead open requests forecast at 0 wins against 0, seven free hits
    of thirty."""
    at = outcomes["outcome_at"].to_numpy()
    at = at[at != NAT]
    if not at.size:
        return None
    last_out = pd.Timestamp(int(at.max()))
    return last_out if log[time].max() - last_out >= _DAY else None


def _run_rate(outcomes: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, *, open_only: bool):
    """Wins (and their amounts) in ``(start, end]``: of the leads open at ``start``
    (``open_only``), or of every lead."""
    o = outcomes
    s, e = np.int64(start.value), np.int64(end.value)
    at = o["outcome_at"].to_numpy()
    hit = o["won"].to_numpy() & (at > s) & (at <= e)
    if open_only:
        hit &= o["first_seen"].to_numpy() <= s
    return int(hit.sum()), float(np.nansum(o["amount"].to_numpy()[hit]))


def _score(table: pd.DataFrame, level: float) -> pd.DataFrame:
    spec = [
        ("forecast", "wins", "expected_wins", "wins_low", "wins_high", "actual_wins"),
        ("forecast", "revenue", "expected_revenue", "revenue_low", "revenue_high", "actual_revenue"),
        ("forecast, model range", "wins", "model_expected_wins", "model_wins_low", "model_wins_high", "actual_wins"),
        ("forecast, model range", "revenue", "model_expected_revenue", "model_revenue_low", "model_revenue_high",
         "actual_revenue"),
        ("weighted pipeline", "wins", "weighted_wins", "weighted_wins_low", "weighted_wins_high", "actual_wins"),
        ("weighted pipeline", "revenue", "weighted_pipeline", "weighted_low", "weighted_high", "actual_revenue"),
        ("weighted pipeline, within horizon", "wins", "horizon_weighted_wins", "horizon_weighted_wins_low",
         "horizon_weighted_wins_high", "actual_wins"),
        ("weighted pipeline, within horizon", "revenue", "horizon_weighted_pipeline", "horizon_weighted_low",
         "horizon_weighted_high", "actual_revenue"),
        ("run-rate", "wins", "run_rate_wins", "run_rate_wins_low", "run_rate_wins_high", "actual_wins"),
        ("run-rate", "revenue", "run_rate_revenue", "run_rate_revenue_low", "run_rate_revenue_high",
         "actual_revenue"),
    ]
    rows = []
    for method, qty, est, lo, hi, act in spec:
        if est not in table.columns or lo not in table.columns:
            continue
        ok = (table[est].notna() & table[act].notna()).to_numpy()
        e, a = table[est].to_numpy(dtype=float)[ok], table[act].to_numpy(dtype=float)[ok]
        low, high = table[lo].to_numpy(dtype=float)[ok], table[hi].to_numpy(dtype=float)[ok]
        err = e - a
        nz = a != 0
        n = int(ok.sum())
        held = int(((low <= a) & (a <= high)).sum())
        cov = held / n if n else np.nan
        rows.append(
            {
                "method": method,
                "quantity": qty,
                "cutoffs": n,
                "mae": float(np.abs(err).mean()) if n else np.nan,
                "mape": float(np.abs(err[nz] / a[nz]).mean()) if nz.any() else np.nan,
                "bias": float(err.mean()) if n else np.nan,
                "held": held,
                "coverage": cov,
                "coverage_se": float(np.sqrt(cov * (1 - cov) / n)) if n else np.nan,
                "mean_width": float((high - low).mean()) if n else np.nan,
                "level": level,
            }
        )
    return pd.DataFrame(rows)


def _verdict(summary: pd.DataFrame, level: float) -> str:
    s = summary.set_index(["method", "quantity"])
    if ("forecast", "wins") not in s.index or not s.loc[("forecast", "wins"), "cutoffs"]:
        return "no cutoff could be scored."
    r = s.loc[("forecast", "wins")]
    n, held = int(r["cutoffs"]), int(r["held"])
    out = (f"the {level:.0%} range held in {held} of {n} past cutoffs (coverage {r['coverage']:.0%} "
           f"± {r['coverage_se']:.0%}); wins MAE {r['mae']:,.1f}")
    said = {"run-rate": "the run-rate", "weighted pipeline, within horizon": "the CRM weighted pipeline within "
            "the horizon", "weighted pipeline": "the CRM weighted pipeline (eventual wins)"}
    others = [f"{s.loc[(m, 'wins'), 'mae']:,.1f} for {said[m]}" for m in said
              if (m, "wins") in s.index and np.isfinite(s.loc[(m, "wins"), "mae"])]
    if others:
        out += " against " + ", ".join(others[:-1]) + (" and " if len(others) > 1 else "") + others[-1]
    return out + "."


def _outcomes_end_note(log: pd.DataFrame, time: str, last_out: pd.Timestamp | None) -> list[str]:
    """A sentence when the default cutoffs stop at the last outcome (:func:`_outcomes_end`)."""
    if last_out is None:
        return []
    last = log[time].max()
    days = (last - last_out).days
    return [f"the log's last won or lost outcome is on {last_out:%Y-%m-%d}, {days} day{'s' * (days != 1)} before "
            f"its last event ({last:%Y-%m-%d}): the default cutoffs end where their horizon ends by that outcome, "
            "since the log does not say what was won after it (pass cutoffs= to score later ones)."]


def _backtest_notes(table: pd.DataFrame, outcomes: pd.DataFrame, level: float) -> list[str]:
    """Sentences on the scored cutoffs whose coverage says little about a live pipeline."""
    if table.empty:
        return []
    held = ((table["wins_low"] <= table["actual_wins"]) & (table["actual_wins"] <= table["wins_high"])).to_numpy()
    notes = []

    def split(mask, what, why):
        k, n = int(mask.sum()), len(mask)
        if 0 < k < n:
            notes.append(f"{k} of the {n} cutoffs {what}: {why}; the {level:.0%} range held in "
                         f"{int(held[mask].sum())} of them and in {int(held[~mask].sum())} of the other {n - k} "
                         f"({held[~mask].mean():.0%}).")
        elif k == n:
            notes.append(f"every cutoff {what}: {why}.")

    seen = outcomes["first_seen"].to_numpy()
    seen = seen[seen != np.iinfo(np.int64).max]
    if seen.size:
        last_new = pd.Timestamp(int(seen.max()))
        split((table["cutoff"] > last_new).to_numpy(), f"come after the last new lead ({last_new:%Y-%m-%d})",
              "no lead arrives after it (an extract of the cases started by then?), so the open pipeline "
              "only drains")
    expected = table.get("model_expected_wins", table["expected_wins"]).to_numpy(dtype=float)
    split(expected < 2, "expected under 2 wins (the model's forecast)",
          f"no range of whole wins holds exactly {level:.0%} there (with 0.2 expected, \"0 wins\" alone has "
          "an 82% chance), so coverage runs above the level")
    return notes


def backtest(
    log: pd.DataFrame,
    *,
    cutoffs: Sequence | None = None,
    n_cutoffs: int | None = 24,
    every=None,
    horizon="90D",
    level: float = 0.8,
    calibrate: bool = True,
    calibration_cutoffs: int = 12,
    calibration_every="auto",
    correct_level: bool = True,
    half_life: float | str | None = "auto",
    half_lives: Sequence | None = None,
    model_by: str | Sequence[str] | None = None,
    amount_bands: int = 3,
    probabilities: Mapping[str, float] | None = None,
    min_history="auto",
    n_draws: int = 1000,
    seed: int | None = 0,
    calendar=None,
    new_leads: bool = False,
    arrivals_lookback="730D",
    value_rates: bool = True,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str = AMOUNT,
) -> Backtest:
    """Forecast from many past cutoffs and compare with what happened (rolling origin).

    At each cutoff the log is cut at that moment (nothing after it reaches
    the fit, the open pipeline or the baselines), the forecast is made for
    the next ``horizon`` and compared with the wins (and their amounts) that
    the leads open at the cutoff actually had in that window.  Two baselines
    are scored the same way: the CRM **weighted pipeline** and the
    **run-rate** practitioners use - the same quantity over the previous
    horizon-length period, carried forward (the wins in ``(cutoff - horizon,
    cutoff]`` of the leads open at its start).  A lead's path ends at its
    first outcome, as in the model.

    Each cutoff's forecast is what :func:`forecast` with ``calibrate`` and
    ``half_life`` would have said then: its range is calibrated on, and its
    half-life chosen on, the earlier cutoffs whose horizon had ended by then,
    at least ``calibration_every`` apart (walking back from the latest; the
    most recent ``calibration_cutoffs`` of them), as :func:`forecast` picks
    its own.  For that, extra cutoffs are run before the first scored one
    (not scored), enough for ``calibration_cutoffs`` of them.

    Parameters
    ----------
    log : DataFrame
        A canonical event log.
    cutoffs : list of dates, optional
        The scored cutoffs.  Default: see ``n_cutoffs`` and ``every``.
    n_cutoffs : int or None
        Without ``every``: this many month ends spread between
        ``min_history`` after the data start and ``horizon`` before its end
        (evenly spaced days when there are fewer month ends).  With
        ``every``: keep the latest ``n_cutoffs`` (``None``: all).  The
        data's end is its last won or lost outcome when that comes a day or
        more before its last event (``notes_`` says so): after it the log
        does not say what was won.
    every : number of days or str, optional
        Spacing of the cutoffs, back from the last cutoff whose horizon is
        fully observed (``"30D"``, ``7``).
    horizon : number of days, str or offset
    level : float
        Level of the prediction ranges whose coverage is scored.
    calibrate : bool
        Score the calibrated range (``forecast(..., calibrate=True)``); the
        model's own range is scored beside it ("forecast, model range").
    calibration_cutoffs : int
        Earlier cutoffs each cutoff is calibrated (and its half-life chosen)
        on.
    calibration_every : "auto", number of days or str
        Least spacing of those earlier cutoffs (as in :func:`forecast`):
        with cutoffs two weeks apart, 12 of them 30 days apart span a year,
        so a year's seasons are in the calibration, not the last six months;
        ``"auto"`` spaces them as ``forecast(as_of=cutoff)`` does: 30 days
        apart, closer (whole weeks, down to one) where the history is short.
    correct_level : bool
        With ``calibrate``: as in :func:`forecast`, a forecast whose past
        misses kept falling on one side is scaled by their median ratio.
    half_life, half_lives, model_by, amount_bands, probabilities, n_draws, seed, calendar, stages
        As in :func:`forecast`.
    new_leads : bool
        Forecast with the leads that arrive after each cutoff
        (``forecast(..., new_leads=True)``) and score it against every win
        in the horizon; the run-rate is then every win of the previous
        horizon-length period.  Default: the open pipeline and its wins.
    arrivals_lookback, value_rates
        As in :func:`forecast`.
    min_history : "auto", str or number of days
        History required before the first default cutoff.  ``"auto"``: 180
        days, or on a log with less than 270 days before its last horizon
        the first third of them (a six-month log is backtested without
        options).  Warm-up cutoffs
        follow :func:`forecast`'s rule: twice the horizon, at least 60
        days, after the first win.

    Returns
    -------
    Backtest
        ``table`` (per scored cutoff), ``summary`` (MAE, MAPE, bias,
        coverage with its standard error, per method and quantity),
        ``sentence``, ``leads_`` (per lead, for calibration charts) and
        ``rolling_`` (every cutoff run, warm-up included, every candidate
        half-life: the raw material of the calibration).

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> bt = fk.forecast.backtest(fk.datasets.load_demo(), n_cutoffs=3, n_draws=200, calibrate=False)
    >>> bt.summary[["method", "quantity"]].values.tolist()[:2]
    [['forecast', 'wins'], ['forecast', 'revenue']]
    >>> bt.sentence.startswith("the 80% range held in")
    True
    """
    if not 0 < level < 1:
        raise ForecastError(f"level must be between 0 and 1, got {level}.")
    ss = resolve_stages(log, stages)
    tz = time_zone(log[time]) if time in log.columns else None
    log, _, _ = _in_utc(log, time, None)
    outcomes = _lead_outcomes(log, ss, lead=lead, time=time, stage=stage, amount=amount)
    outcomes_end = _outcomes_end(log, time, outcomes) if cutoffs is None else None
    if cutoffs is None:
        cuts = _default_cutoffs(log, time, horizon, n_cutoffs, every, min_history, until=outcomes_end)
    else:
        cuts = sorted(_utc_instant(c, tz) if tz is not None else parse_as_of(c) for c in cutoffs)
        if not cuts:
            raise ForecastError("cutoffs is empty.")
    cands = _candidates(half_life, half_lives, choosing=bool(calibrate))
    need_past = bool(calibrate)
    warm: list[pd.Timestamp] = []
    spacing: dict = {}
    start = _first_win(log, ss, stage=stage, time=time)
    if need_past and calibration_cutoffs > 0:
        # each scored cutoff is calibrated on past cutoffs spaced as forecast(as_of=cutoff) spaces
        # its own; the warm-up cutoffs before the first scored one are as far apart as the closest
        # of those spacings, and reach back to the history of wins a past cutoff needs
        for c in cuts:
            spacing[c] = _calibration_spacing(start, c, _horizon_end(c, horizon) - c, calibration_cutoffs,
                                              calibration_every)
        step = max(min(spacing.values()).round("D"), _DAY)
        span = _horizon_end(cuts[0], horizon) - cuts[0]
        reach = span + int(calibration_cutoffs) * max(spacing.values())
        n_warm = int(np.ceil(reach / step))
        first = cuts[0].normalize()
        lo = start + _calibration_history(span) if pd.notna(start) else first
        for k in range(1, n_warm + 1):
            c = first - k * step
            if c < lo:
                break
            warm.append(parse_as_of(c.date()))
        warm = sorted(warm)
    scored = set(cuts)

    rolling: list[dict] = []
    table_rows, lead_rows = [], []
    for c in sorted(set(warm) | scored):
        with warnings.catch_warnings():
            # the cut log may end hours before the cutoff: not the user's as_of mistake
            warnings.filterwarnings("ignore", message=".*after the data ends", category=DataWarning)
            rows, leads = _rows_for_cutoff(
                log, ss, c, outcomes, horizon=horizon, level=level, candidates=cands, model_by=model_by,
                amount_bands=amount_bands, probabilities=probabilities, n_draws=n_draws, seed=seed,
                calendar=calendar, new_leads=new_leads, arrivals_lookback=arrivals_lookback, lead=lead,
                stage=stage, time=time, amount=amount, value_rates=value_rates,
            )
        if c in scored:
            past = _past_rows(pd.DataFrame(rolling), c, _horizon_end(c, horizon) - c, start, calibration_cutoffs,
                              spacing.get(c, _CAL_MAX_SPACING))
            chosen, _ = _choose_half_life(past, cands)
            i = next(j for j, r in enumerate(rows) if (r["half_life"] is None) == (chosen is None)
                     and (chosen is None or r["half_life"] == chosen))
            row = dict(rows[i])
            mine = past[_same_half_life(past["half_life"], chosen)] if len(past) else past
            for q in ("wins", "revenue"):
                row[f"model_{q}_low"], row[f"model_{q}_high"] = row[f"{q}_low"], row[f"{q}_high"]
                row[f"model_expected_{q}"] = row[f"expected_{q}"]
                factor = 1.0
                if calibrate and np.isfinite(row[f"expected_{q}"]):
                    if correct_level:
                        factor = _level_correction(mine, quantity=q)[0]
                    most = float(row["open_leads"]) if q == "wins" and not new_leads else None
                    lo_, hi_, n_used, how = _calibrate_range(mine, row[f"expected_{q}"], row[f"{q}_low"],
                                                             row[f"{q}_high"], level, quantity=q,
                                                             shown=row[f"expected_{q}"] * factor, most=most)
                    row[f"{q}_low"], row[f"{q}_high"] = lo_, hi_
                    row[f"expected_{q}"] *= factor
                else:
                    n_used, how = (len(mine), "model")
                row["range" if q == "wins" else "revenue_range"] = _range_label(how, n_used)
                row["level_factor" if q == "wins" else "revenue_level_factor"] = factor
            row["calibration_cutoffs"] = int(len(mine))
            table_rows.append(row)
            lead_rows.append(leads[i])
        rolling.extend(rows)
    table = pd.DataFrame(table_rows)
    summary = _score(table, level)
    return Backtest(
        table=table,
        summary=summary,
        sentence=_verdict(summary, level),
        notes_=_backtest_notes(table, outcomes, level) + _outcomes_end_note(log, time, outcomes_end),
        leads_=pd.concat(lead_rows, ignore_index=True),
        rolling_=pd.DataFrame(rolling),
        level_=level,
        horizon_=horizon,
    )
