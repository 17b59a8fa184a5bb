"""The funnel: the aggregate view of how leads flow through the stages.

How many leads reached each step, how many converted to the next, and the
rates with intervals.  Everything is computed from the event log; the funnel
is derived, never edited.

Step semantics (``mode="ordered"``, the default)
------------------------------------------------
A lead *reaches* step 1 at its first event of that stage.  It reaches step k
at its first event of stage k at or after the time it reached step k-1
(events sort by time, then stage order; unknown times sort first).  With
``infer_skipped=True`` (default) an event of a *later* step also counts as
reaching step k: a lead that went from qualification straight to proposal
passed the meeting, and is counted there, marked *inferred*.  Re-entering a
stage does not count twice: each lead counts at most once per step, at its
first qualifying entry.  A lost outcome never counts as progress.

With ``window=`` a step only counts when reached within that time of the
lead's first step (leads whose first time is unknown are not windowed).

Segments: a lead belongs to the segment value on its first event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import numpy as np
import pandas as pd

from . import stats
from .data import AMOUNT, LEAD, STAGE, TIME, log_stage_set, stage_order
from .exceptions import InvalidEventLogError, Problem
from .stages import LOST_ORDER, StageSet, get_stage_set

__all__ = ["lead_progress", "conversion", "outcomes", "resolve_stages"]


def resolve_stages(log: pd.DataFrame, stages) -> StageSet:
    """The stage set to use: the one given, else the one the log was loaded with."""
    if stages is not None:
        return get_stage_set(stages)
    found = log_stage_set(log)
    if found is None:
        raise InvalidEventLogError(
            [
                Problem(
                    "no_stage_set",
                    STAGE,
                    "no stage set was given and the log does not carry one.",
                    "pass stages='pipeline4' (a preset), a YAML path or a list of stages, or load "
                    "the log with read_events(..., stages=...).",
                )
            ]
        )
    return found


def _as_list(by) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def _window(w) -> np.int64 | None:
    if w is None:
        return None
    if isinstance(w, (int, float)):
        return np.int64(pd.Timedelta(days=w).value)
    if isinstance(w, (str, timedelta, pd.Timedelta)):
        return np.int64(pd.Timedelta(w).value)
    raise ValueError(f"window must be days (number), a timedelta or a string like '30D'; got {w!r}.")


def lead_progress(
    log: pd.DataFrame,
    *,
    stages: StageSet | str | Sequence[str] | None = None,
    by: str | Sequence[str] | None = None,
    window: float | str | timedelta | None = None,
    infer_skipped: bool = True,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Per lead: which funnel steps it reached, and when.

    The building block of every funnel figure, and the bridge to the pipeline
    view: one row per lead with its segments, so any funnel cell can be
    drilled into.

    Returns
    -------
    DataFrame
        One row per lead: ``lead_id``, the ``by`` columns, ``amount`` (the
        lead's latest known amount), ``steps_reached`` (how many steps, 0 ..
        n), ``outcome`` (``"won"``, ``"lost"`` or ``"open"``: the lead's last
        outcome event), ``closed_at``, ``last_event_at``, then for every step
        ``s`` a column ``reached_<s>`` (time, ``NaT`` if not reached) and
        ``inferred_<s>`` (bool).

    Examples
    --------
    >>> import funnelkit as fk
    >>> prog = fk.funnel.lead_progress(fk.datasets.load_demo(n_leads=300))
    >>> int(prog["steps_reached"].ge(1).sum())
    300
    """
    ss = resolve_stages(log, stages)
    by = _as_list(by)
    missing = [c for c in [lead, stage, time, *by] if c not in log.columns]
    if missing:
        raise InvalidEventLogError(
            [
                Problem(
                    "missing_column",
                    c,
                    f"column {c!r} is not in the log. Columns present: {', '.join(map(str, log.columns))}.",
                    "pass the right name (lead=, stage=, time=, by=).",
                )
                for c in missing
            ]
        )
    order = stage_order(log, ss, stage=stage)
    if (order == -2).any():
        bad = pd.Series(log[stage].to_numpy()[order == -2]).value_counts()
        raise InvalidEventLogError(
            [
                Problem(
                    "unknown_stage",
                    stage,
                    f"labels not in stage set {ss.name!r}: "
                    + ", ".join(f"{k!r} x{v:,}" for k, v in bad.items()),
                    "load the log with this stage set (read_events(..., stages=...)) or add aliases.",
                )
            ]
        )
    lead_codes, lead_ids = pd.factorize(log[lead], sort=False)
    t = log[time].to_numpy(dtype="datetime64[ns]").view(np.int64)
    sort_key = np.where(order == LOST_ORDER, np.iinfo(np.int32).max, order)
    idx = np.lexsort((sort_key, t, lead_codes))
    lc, tt, oo = lead_codes[idx], t[idx], order[idx]
    n_leads = len(lead_ids)
    nat = np.iinfo(np.int64).min
    w = _window(window)
    steps = ss.steps
    m = len(steps)

    # first position of every lead in sorted order
    first_pos = np.full(n_leads, -1, dtype=np.int64)
    rev = np.arange(lc.size - 1, -1, -1)
    first_pos[lc[rev]] = rev
    last_pos = np.full(n_leads, -1, dtype=np.int64)
    last_pos[lc] = np.arange(lc.size)

    reach_pos = np.full((m, n_leads), -1, dtype=np.int64)
    inferred = np.zeros((m, n_leads), dtype=bool)
    anchor = None
    for k in range(m):
        cand = np.flatnonzero(oo >= k) if infer_skipped else np.flatnonzero(oo == k)
        if k == 0:
            pos = np.full(n_leads, -1, dtype=np.int64)
            pos[lc[cand[::-1]]] = cand[::-1]
        else:
            prev = reach_pos[k - 1]
            have = prev >= 0
            j = np.searchsorted(cand, prev[have], side="left")
            ok = j < cand.size
            c = np.where(ok, cand[np.minimum(j, max(cand.size - 1, 0))] if cand.size else -1, -1)
            leads_have = np.flatnonzero(have)
            same = ok & (c >= 0)
            same[same] = lc[c[same]] == leads_have[same]
            pos = np.full(n_leads, -1, dtype=np.int64)
            pos[leads_have[same]] = c[same]
            if w is not None:
                got = pos >= 0
                a = anchor[got]
                tk = tt[pos[got]]
                late = (a != nat) & (tk != nat) & (tk - a > w)
                drop = np.flatnonzero(got)[late]
                pos[drop] = -1
        reach_pos[k] = pos
        got = pos >= 0
        inferred[k, got] = oo[pos[got]] > k
        if k == 0:
            anchor = np.where(got, tt[np.maximum(pos, 0)], nat)

    out = pd.DataFrame({lead: lead_ids.to_numpy(dtype=object) if hasattr(lead_ids, "to_numpy") else lead_ids})
    for col in by:
        vals = log[col].to_numpy()[idx][first_pos]
        series = log[col]
        if isinstance(series.dtype, pd.CategoricalDtype):
            out[col] = pd.Categorical(vals, categories=series.cat.categories)
        else:
            out[col] = vals
    if amount and amount in log.columns:
        amt = log[amount].to_numpy(dtype=float)[idx]
        has = ~np.isnan(amt)
        last_amt = np.full(n_leads, np.nan)
        pos_has = np.flatnonzero(has)
        last_amt[lc[pos_has]] = amt[pos_has]  # later positions overwrite: latest known
        out[AMOUNT] = last_amt
    out["steps_reached"] = (reach_pos >= 0).sum(axis=0)
    # outcome: the lead's last outcome event (won, or any lost label)
    is_won = (oo == m - 1) & (ss.won is not None)
    is_lost = oo == LOST_ORDER
    oc_pos = np.flatnonzero(is_won | is_lost)
    last_oc = np.full(n_leads, -1, dtype=np.int64)
    last_oc[lc[oc_pos]] = oc_pos
    has_oc = last_oc >= 0
    outcome = np.full(n_leads, "open", dtype=object)
    outcome[has_oc] = np.where(is_won[last_oc[has_oc]], "won", "lost")
    out["outcome"] = pd.Categorical(outcome, categories=["open", "won", "lost"])
    closed = np.where(has_oc, tt[np.maximum(last_oc, 0)], nat)
    out["closed_at"] = closed.view("datetime64[ns]")
    out["last_event_at"] = tt[last_pos].view("datetime64[ns]")
    for k, s in enumerate(steps):
        p = reach_pos[k]
        out[f"reached_{s}"] = p >= 0
        out[f"time_{s}"] = np.where(p >= 0, tt[np.maximum(p, 0)], nat).view("datetime64[ns]")
        out[f"inferred_{s}"] = inferred[k]
    return out


def conversion(
    log: pd.DataFrame,
    *,
    stages: StageSet | str | Sequence[str] | None = None,
    by: str | Sequence[str] | None = None,
    window: float | str | timedelta | None = None,
    infer_skipped: bool = True,
    level: float = 0.95,
    method: str = "wilson",
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Funnel conversion per step (and per segment), with intervals.

    Parameters
    ----------
    log : DataFrame
        A canonical event log (see :mod:`funnelkit.data`).
    stages : StageSet, preset name, YAML path or list, optional
        Defaults to the stage set the log was loaded with.
    by : str or list of str, optional
        Segment column(s) to break the funnel down by.
    window : number of days, timedelta or string, optional
        Conversion window from the lead's first step.
    infer_skipped : bool
        Count a lead at a step it skipped when it reached a later one.
    level : float
        Confidence level of the intervals.
    method : {"wilson", "jeffreys"}
        Interval for the rates.
    lead, stage, time, amount : str
        Column names.

    Returns
    -------
    DataFrame
        One row per (segment, step), columns: the ``by`` columns, ``step``
        (stage name), ``step_index`` (0-based), ``entered`` (leads that reached
        the step), ``converted`` (reached the next step), ``dropped``,
        ``step_conversion`` (converted / entered) with ``step_ci_low`` /
        ``step_ci_high``, ``overall_conversion`` (entered / entered at the first
        step) with ``overall_ci_low`` / ``overall_ci_high``, ``inferred``
        (leads counted at the step because they reached a later one),
        ``amount_entered`` and ``amount_converted`` (sum of the leads' amounts).
        The last step has ``converted`` and ``step_conversion`` missing.

    Examples
    --------
    >>> import funnelkit as fk
    >>> f = fk.funnel.conversion(fk.datasets.load_demo())
    >>> f[["step", "entered", "converted"]].head(3).values.tolist()
    [['qualification', 4000, 2080], ['meeting', 2080, 1125], ['proposal', 1125, 606]]
    """
    ss = resolve_stages(log, stages)
    by = _as_list(by)
    prog = lead_progress(
        log, stages=ss, by=by, window=window, infer_skipped=infer_skipped,
        lead=lead, stage=stage, time=time, amount=amount,
    )
    return _aggregate(prog, ss, by, level=level, method=method)


def _aggregate(prog: pd.DataFrame, ss: StageSet, by: list[str], *, level: float, method: str) -> pd.DataFrame:
    steps = list(ss.steps)
    m = len(steps)
    reached = np.column_stack([prog[f"reached_{s}"].to_numpy(dtype=bool) for s in steps])
    inferred = np.column_stack([prog[f"inferred_{s}"].to_numpy() for s in steps])
    amt = prog[AMOUNT].to_numpy(dtype=float) if AMOUNT in prog.columns else None
    if by:
        keys = prog[by]
        group = keys.groupby(by, observed=True, dropna=False, sort=True).ngroup().to_numpy()
        uniq = keys.drop_duplicates().assign(_g=lambda d: d.groupby(by, observed=True, dropna=False, sort=True).ngroup())
        uniq = uniq.sort_values("_g").reset_index(drop=True)
        n_groups = len(uniq)
    else:
        group = np.zeros(len(prog), dtype=np.int64)
        uniq = pd.DataFrame({"_g": [0]})
        n_groups = 1
    rows = []
    for k in range(m):
        entered = np.bincount(group, weights=reached[:, k], minlength=n_groups)
        inf = np.bincount(group, weights=reached[:, k] & inferred[:, k], minlength=n_groups)
        if amt is not None:
            a = np.where(reached[:, k] & ~np.isnan(amt), amt, 0.0)
            val_in = np.bincount(group, weights=a, minlength=n_groups)
        else:
            val_in = np.full(n_groups, np.nan)
        if k + 1 < m:
            conv = np.bincount(group, weights=reached[:, k + 1], minlength=n_groups)
            if amt is not None:
                a2 = np.where(reached[:, k + 1] & ~np.isnan(amt), amt, 0.0)
                val_conv = np.bincount(group, weights=a2, minlength=n_groups)
            else:
                val_conv = np.full(n_groups, np.nan)
        else:
            conv = np.full(n_groups, np.nan)
            val_conv = np.full(n_groups, np.nan)
        rows.append(
            pd.DataFrame(
                {
                    "_g": np.arange(n_groups),
                    "step": steps[k],
                    "step_index": k,
                    "entered": entered,
                    "converted": conv,
                    "inferred": inf,
                    "amount_entered": val_in,
                    "amount_converted": val_conv,
                }
            )
        )
    res = pd.concat(rows, ignore_index=True)
    top = res.loc[res["step_index"] == 0].set_index("_g")["entered"]
    res["top"] = res["_g"].map(top)
    res["dropped"] = res["entered"] - res["converted"]
    with np.errstate(invalid="ignore", divide="ignore"):
        res["step_conversion"] = res["converted"] / res["entered"]
        res["overall_conversion"] = res["entered"] / res["top"]
    last = res["step_index"] == m - 1
    lo, hi = stats.proportion_ci(
        res["converted"].fillna(0), res["entered"], level=level, method=method
    )
    res["step_ci_low"] = np.where(last | (res["entered"] == 0), np.nan, lo)
    res["step_ci_high"] = np.where(last | (res["entered"] == 0), np.nan, hi)
    lo, hi = stats.proportion_ci(res["entered"], res["top"], level=level, method=method)
    res["overall_ci_low"], res["overall_ci_high"] = lo, hi
    res = res.merge(uniq, on="_g").sort_values(["_g", "step_index"]).reset_index(drop=True)
    for c in ["entered", "inferred"]:
        res[c] = res[c].astype("int64")
    res["converted"] = res["converted"].astype("Int64")
    res["dropped"] = res["dropped"].astype("Int64")
    res["step"] = pd.Categorical(res["step"], categories=steps, ordered=True)
    cols = [
        *by, "step", "step_index", "entered", "converted", "dropped",
        "step_conversion", "step_ci_low", "step_ci_high",
        "overall_conversion", "overall_ci_low", "overall_ci_high",
        "inferred", "amount_entered", "amount_converted",
    ]
    out = res[cols]
    out.attrs["level"] = level
    return out


def outcomes(
    log: pd.DataFrame,
    *,
    stages: StageSet | str | Sequence[str] | None = None,
    by: str | Sequence[str] | None = None,
    level: float = 0.95,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Won, lost and open leads and the win rate, per segment.

    The win rate is ``won / (won + lost)``: over *closed* leads only, since an
    open lead has not failed yet.  Its interval is Wilson's.

    Returns
    -------
    DataFrame
        The ``by`` columns, ``leads``, ``won``, ``lost``, ``open``,
        ``win_rate``, ``ci_low``, ``ci_high``, ``won_amount``,
        ``open_amount``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> o = fk.funnel.outcomes(fk.datasets.load_demo())
    >>> int(o.loc[0, "won"] + o.loc[0, "lost"] + o.loc[0, "open"]) == int(o.loc[0, "leads"])
    True
    """
    ss = resolve_stages(log, stages)
    by = _as_list(by)
    prog = lead_progress(log, stages=ss, by=by, lead=lead, stage=stage, time=time, amount=amount)
    dummies = pd.get_dummies(prog["outcome"]).astype("int64")
    frame = pd.concat([prog[by], dummies], axis=1)
    has_amt = AMOUNT in prog.columns
    if has_amt:
        frame["won_amount"] = np.where(prog["outcome"] == "won", prog[AMOUNT], 0.0)
        frame["open_amount"] = np.where(prog["outcome"] == "open", prog[AMOUNT].fillna(0), 0.0)
    if by:
        agg = frame.groupby(by, observed=True, dropna=False).sum().reset_index()
    else:
        agg = frame.sum().to_frame().T
    for c in ["won", "lost", "open"]:
        agg[c] = agg[c].astype("int64")
    agg["leads"] = agg["won"] + agg["lost"] + agg["open"]
    closed = agg["won"] + agg["lost"]
    with np.errstate(invalid="ignore", divide="ignore"):
        agg["win_rate"] = agg["won"] / closed
    agg["ci_low"], agg["ci_high"] = stats.proportion_ci(agg["won"], closed, level=level)
    cols = [*by, "leads", "won", "lost", "open", "win_rate", "ci_low", "ci_high"]
    if has_amt:
        cols += ["won_amount", "open_amount"]
    return agg[cols]
