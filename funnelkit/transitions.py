"""The stage-transition model: how leads move between stages, and when.

Every lead's journey is cut into **stays**: a stay starts when the lead
enters a stage and ends when it moves to another stage or an outcome (the
stay's *destination*), or is still running at the fit date (the stay is
*open*, i.e. censored: a lead sitting in proposal has not failed yet).

For each stage the model estimates, with censoring, the probability of
leaving towards each destination *after d days in the stage*
(Aalen-Johansen competing-risks estimator on a one-day grid).  Mass that
never leaves a stage - leads that sit for longer than any lead ever took to
move on, typically lost deals nobody marked lost - is the **stalled**
outcome.  This is what keeps a forecast honest about an old open pipeline:
a deal that has sat in proposal for 200 days is worth little, even if 60%
of proposals eventually close.

On top of that:

* the embedded **absorbing Markov chain** (won, each lost outcome and
  stalled are absorbing): probability of eventually winning from each stage
  and the expected number of remaining moves;
* the **semi-Markov** time dimension: probability that a lead in stage s
  with d days already spent wins within the next h days
  (:meth:`TransitionModel.close_probability`), and a vectorised simulator of
  future paths used by :mod:`funnelkit.forecast`;
* **uncertainty** from a Bayesian bootstrap over leads (each posterior
  sample re-weights the leads with Dirichlet weights and refits), so every
  probability has an interval and the forecast can carry the uncertainty of
  the estimated rates;
* **segments** (``by=``): each segment's counts are shrunk toward the
  pooled estimate by ``shrinkage`` pseudo-stays, and a segment with fewer
  than ``min_count`` stays in a stage uses the pooled estimate there.

Rules (the same as :func:`funnelkit.pipeline.snapshot`): only events at or
before ``as_of`` are used; a date without a time of day means the end of
that day; consecutive events of the same stage are one stay; undated events
precede a lead's first dated event; a lead's path ends at its first outcome
(later events are counted in ``notes_``, not used); a lead's segment is its
latest known value up to ``as_of``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from ._common import DAY_NS, NAT, as_list, require_columns
from ._common import parse_as_of as _parse_as_of
from .data import LEAD, STAGE, TIME, checked_leads, checked_times
from .exceptions import InvalidEventLogError, Problem, TransitionModelError
from .funnel import resolve_stages
from .stages import StageSet

__all__ = ["TransitionModel", "TransitionModelError", "STALLED", "OPEN"]

#: Name of the absorbing outcome "never moves again" (estimated from censoring).
STALLED = "stalled"
#: Destination of a stay still running at the fit date (censored).
OPEN = "open"

#: Longest stay resolved on the day grid (3 years); longer stays count in the last day.
MAX_DAYS = 1096




def parse_as_of(value) -> pd.Timestamp:
    """An as-of date as a Timestamp; a date without a time means the end of that day.

    Examples
    --------
    >>> parse_as_of("2025-06-30")
    Timestamp('2025-06-30 23:59:59.999999999')
    """
    return _parse_as_of(value, error=TransitionModelError)


def _aalen_johansen(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-distribution mass per (day, destination) and the never-leave mass.

    ``c[..., k, b]``: (weighted) stays ending on day ``k`` towards destination
    ``b``; the last column of ``c`` is censoring.  Returns ``mass[..., k, b]``
    (probability of leaving on day k towards b) and ``stalled[...]``.
    """
    exits = c.sum(axis=-1)
    at_risk = np.flip(np.cumsum(np.flip(exits, axis=-1), axis=-1), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        haz = np.where(at_risk[..., None] > 0, c[..., :-1] / at_risk[..., None], 0.0)
    total = np.clip(haz.sum(axis=-1), 0.0, 1.0)
    surv = np.cumprod(1.0 - total, axis=-1)
    prev = np.concatenate([np.ones_like(surv[..., :1]), surv[..., :-1]], axis=-1)
    mass = prev[..., None] * haz
    return mass, surv[..., -1]


class TransitionModel:
    """Stage-transition model with durations, censoring and uncertainty.

    Parameters
    ----------
    min_count : int
        A segment with fewer stays than this in a stage uses the pooled
        estimate for that stage (``pooled=True`` in the tables).
    shrinkage : float
        Weight of the pooled estimate in each segment, in stays: the pooled
        data enter a segment's estimate as this many pseudo-stays
        distributed like the pooled stays (0 = no shrinkage).  The default is
        mild: in backtests on the demo data stronger shrinkage pulled the
        slow, large deals toward the pooled rates and overstated revenue.
    n_samples : int
        Posterior samples (Bayesian bootstrap over leads) used for intervals
        and by the forecast; 0 gives point estimates only.
    level : float
        Level of the intervals in the tables.
    seed : int or None
        Seed of the posterior samples.

    Attributes
    ----------
    stage_set_ : StageSet
    states_ : list of str
        Transient stages, then the goal (``won``, or the last stage of a set
        without outcomes), then the lost outcomes; :data:`STALLED` is added
        as a further absorbing state in the results.
    by_ : list of str
    as_of_ : Timestamp
        Only events at or before it were used.
    stays_ : DataFrame
        One row per stay: ``lead_id``, the ``by`` columns, ``stage``,
        ``entered_at``, ``to_stage`` (destination, or ``"open"``),
        ``days`` (duration or time open so far; ``NaN`` when unknown).
    counts_ : DataFrame
        ``by`` columns, ``from_stage``, ``to_stage`` (a stage, an outcome or
        ``"open"``), ``n`` stays.
    probabilities_ : DataFrame
        Per segment (pooled when ``by`` is None): ``from_stage``,
        ``to_stage`` (including :data:`STALLED`), ``probability`` that the
        stay eventually ends there, ``ci_low``, ``ci_high``, ``stays``,
        ``pooled`` (the segment fell back on the pooled estimate).
    pooled_probabilities_ : DataFrame
        The same for all leads together.
    groups_ : DataFrame
        The segments: ``by`` columns and ``leads``.
    notes_ : list of str
        What was left out or assumed while fitting.

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> log = fk.datasets.load_demo()
    >>> tm = fk.transitions.TransitionModel(n_samples=50).fit(log, as_of="2025-06-30")
    >>> wp = tm.win_probability()
    >>> wp["stage"].tolist()
    ['qualification', 'meeting', 'proposal', 'close']
    >>> bool(wp["probability"].is_monotonic_increasing)
    True
    """

    def __init__(
        self,
        *,
        min_count: int = 10,
        shrinkage: float = 5.0,
        n_samples: int = 200,
        level: float = 0.95,
        seed: int | None = 0,
    ):
        if min_count < 0:
            raise TransitionModelError(f"min_count must be >= 0, got {min_count}.")
        if shrinkage < 0:
            raise TransitionModelError(f"shrinkage must be >= 0, got {shrinkage}.")
        if n_samples < 0:
            raise TransitionModelError(f"n_samples must be >= 0, got {n_samples}.")
        if not 0 < level < 1:
            raise TransitionModelError(f"level must be between 0 and 1, got {level}.")
        self.min_count = int(min_count)
        self.shrinkage = float(shrinkage)
        self.n_samples = int(n_samples)
        self.level = float(level)
        self.seed = seed
        self._fitted = False

    # ------------------------------------------------------------------
    # fitting
    # ------------------------------------------------------------------
    def fit(
        self,
        log: pd.DataFrame,
        *,
        stages: StageSet | str | Sequence[str] | None = None,
        by: str | Sequence[str] | None = None,
        as_of=None,
        lead: str = LEAD,
        stage: str = STAGE,
        time: str = TIME,
    ) -> TransitionModel:
        """Estimate the model from an event log.

        Parameters
        ----------
        log : DataFrame
            A canonical event log (see :mod:`funnelkit.data`).
        stages : StageSet, preset name, YAML path or list, optional
            Defaults to the stage set the log was loaded with.
        by : str or list of str, optional
            Segment column(s); each segment gets its own (shrunk) estimate.
        as_of : date, str or Timestamp, optional
            Use only events at or before this moment; stays running then are
            censored.  Default: the log's last timestamp.
        lead, stage, time : str
            Column names.

        Returns
        -------
        TransitionModel
            ``self``, fitted.

        Raises
        ------
        InvalidEventLogError
            If a column is missing or a stage label is not in the stage set.
        TransitionModelError
            If no lead has any event at or before ``as_of``.
        """
        if not isinstance(log, pd.DataFrame):
            raise TypeError(f"expected an event log DataFrame, got {type(log).__name__}.")
        ss = resolve_stages(log, stages)
        by = as_list(by)
        require_columns(log, [lead, stage, time, *by], "pass the right names with lead=, stage=, time=, by=.")
        if not pd.api.types.is_datetime64_any_dtype(log[time].dtype):
            raise InvalidEventLogError(
                [
                    Problem(
                        "bad_timestamp",
                        time,
                        f"column {time!r} holds {log[time].dtype}, not datetimes.",
                        "load the log with funnelkit.read_events (it parses and checks times).",
                    )
                ]
            )
        steps = list(ss.steps)
        if len(steps) < 2:
            raise TransitionModelError(
                f"stage set {ss.name!r} has a single step; a transition model needs at least two."
            )
        n_tr = len(steps) - 1  # transient stages; steps[-1] is the goal
        states = [*steps, *ss.lost]
        n_states = len(states)
        notes: list[str] = []

        # state index per row, through the categories (vectorised)
        cat = pd.Categorical(log[stage])
        lut = []
        for c in cat.categories:
            name = ss.canonical(c)
            lut.append(states.index(name) if name is not None else -2)
        lut = np.array([*lut, -2], dtype=np.int64)
        codes = cat.codes.astype(np.int64)
        state = lut[np.where(codes < 0, len(lut) - 1, codes)]
        if (state == -2).any():
            bad = pd.Series(log[stage].to_numpy()[state == -2]).value_counts(dropna=False)
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
        lead_codes, lead_ids = checked_leads(log, lead=lead)
        t = checked_times(log, time=time)
        dated = t != NAT
        if not dated.any() and as_of is None:
            raise TransitionModelError("the log has no dated event; pass as_of= or add timestamps.")
        data_end = t[dated].max() if dated.any() else np.int64(0)
        T = np.int64(parse_as_of(as_of).value) if as_of is not None else data_end
        n_leads = len(lead_ids)

        # events kept at as_of (the snapshot's rule for undated events)
        le = dated & (t <= T)
        n_le = np.bincount(lead_codes[le], minlength=n_leads)
        n_dated = np.bincount(lead_codes[dated], minlength=n_leads)
        present = (n_le > 0) | ((n_dated == 0) & (T >= data_end))
        keep = le | (~dated & present[lead_codes])
        if not keep.any():
            raise TransitionModelError(
                f"no event at or before as_of={pd.Timestamp(T)}: nothing to fit "
                f"(the data start {pd.Timestamp(t[dated].min()) if dated.any() else 'unknown'})."
            )
        rows = np.flatnonzero(keep)
        lc, tt, st = lead_codes[rows], t[rows], state[rows]
        sort_key = np.where(st > n_tr, np.iinfo(np.int32).max, st)  # lost last at ties
        o = np.lexsort((sort_key, tt, lc))
        rows, lc, tt, st = rows[o], lc[o], tt[o], st[o]

        # truncate each path at its first outcome
        absorbing = st >= n_tr
        lead_start = np.r_[True, lc[1:] != lc[:-1]]
        cs = np.cumsum(absorbing) - absorbing
        base = np.maximum.accumulate(np.where(lead_start, cs, 0))
        after = (cs - base) > 0
        n_after = int(after.sum())
        if n_after:
            n_after_leads = len(np.unique(lc[after]))
            notes.append(
                f"{n_after:,} event(s) of {n_after_leads:,} lead(s) come after the lead's first "
                "outcome; the path is taken to end at that outcome and they are not used."
            )
        rows, lc, tt, st = rows[~after], lc[~after], tt[~after], st[~after]
        # consecutive events of the same stage are one stay
        lead_start = np.r_[True, lc[1:] != lc[:-1]]
        new_run = lead_start | np.r_[True, st[1:] != st[:-1]]
        rows, lc, tt, st = rows[new_run], lc[new_run], tt[new_run], st[new_run]

        # stays
        is_stay = st < n_tr
        has_next = np.r_[lc[1:] == lc[:-1], False]
        nxt_state = np.r_[st[1:], -1]
        nxt_t = np.r_[tt[1:], NAT]
        pos = np.flatnonzero(is_stay)
        s_lead, s_from, s_t = lc[pos], st[pos], tt[pos]
        completed = has_next[pos]
        s_to = np.where(completed, nxt_state[pos], -1)
        end_t = np.where(completed, nxt_t[pos], T)
        known = (s_t != NAT) & (end_t != NAT)
        days = np.full(pos.size, np.nan)
        days[known] = (end_t[known] - s_t[known]) / DAY_NS

        # lead-level segments: latest known value up to as_of
        lead_used = np.zeros(n_leads, dtype=bool)
        lead_used[lc] = True
        lead_idx = np.flatnonzero(lead_used)
        seg_frame = pd.DataFrame(index=np.arange(n_leads))
        for col in by:
            seg_frame[col] = _latest(log[col], rows_all=np.flatnonzero(keep), lead_codes=lead_codes,
                                     t=t, n_leads=n_leads)
        if by:
            sub = seg_frame.iloc[lead_idx]
            gcode = sub.groupby(by, observed=True, dropna=False, sort=True).ngroup().to_numpy()
            lead_group = np.zeros(n_leads, dtype=np.int64)
            lead_group[lead_idx] = gcode
            groups = sub.assign(_g=gcode).drop_duplicates("_g").sort_values("_g")
            groups = groups.drop(columns="_g").reset_index(drop=True)
            groups["leads"] = np.bincount(gcode, minlength=len(groups))
        else:
            lead_group = np.zeros(n_leads, dtype=np.int64)
            groups = pd.DataFrame({"leads": [lead_idx.size]})
        n_groups = len(groups)
        s_group = lead_group[s_lead]

        # timing: stays with an unknown duration
        K_cap = MAX_DAYS
        timed = ~np.isnan(days)
        impute = np.zeros(pos.size, dtype=bool)
        for s in range(n_tr):
            in_s = s_from == s
            n_unk = int((in_s & ~timed).sum())
            if not n_unk:
                continue
            if (in_s & timed).any():
                notes.append(
                    f"{n_unk:,} stay(s) in {steps[s]!r} have an unknown duration (undated events); "
                    "they are left out of that stage's estimate."
                )
            else:
                done = in_s & ~timed & completed
                impute |= done
                notes.append(
                    f"no stay in {steps[s]!r} has a known duration: its {int(done.sum()):,} completed "
                    f"stay(s) are taken as instantaneous (0 days) and its {n_unk - int(done.sum()):,} "
                    "open one(s) are left out; forecasts treat time in that stage as unknown."
                )
        use = timed | impute
        d_use = np.where(impute, 0.0, days)
        ev_bin = np.where(completed, np.ceil(d_use), np.floor(d_use))
        ev_bin = np.clip(np.nan_to_num(ev_bin, nan=0.0), 0, K_cap - 1).astype(np.int64)
        if (ev_bin[use & completed] >= K_cap - 1).any():
            notes.append(f"stays longer than {K_cap} days are counted on day {K_cap - 1}.")
        K = int(ev_bin[use & completed].max()) + 1 if (use & completed).any() else 1
        ev_bin = np.minimum(ev_bin, K - 1)
        col = np.where(completed, s_to, n_states)
        cell = ((s_group * n_tr + s_from) * K + ev_bin) * (n_states + 1) + col
        cell, s_lead_used = cell[use], s_lead[use]
        n_cells = n_groups * n_tr * K * (n_states + 1)
        shape = (n_groups, n_tr, K, n_states + 1)

        counts = np.bincount(cell, minlength=n_cells).reshape(shape).astype(float)
        n_gs = counts.sum(axis=(2, 3))  # stays per group and stage
        mass, stalled = self._mass_from_counts(counts[None], n_gs)
        self._mass, self._stalled = mass[0], stalled[0]

        # posterior samples: Bayesian bootstrap over leads
        D = self.n_samples
        if D:
            rng = np.random.default_rng(self.seed)
            onehot = sparse.csr_matrix(
                (np.ones(cell.size), (np.arange(cell.size), cell)), shape=(cell.size, n_cells)
            ).T.tocsr()
            ms = np.empty((D, n_groups + 1, n_tr, K, n_states), dtype=np.float32)
            sl = np.empty((D, n_groups + 1, n_tr), dtype=np.float64)
            # bound the memory of one chunk: samples x cells and samples x stays
            chunk = max(1, min(int(2_000_000 // max(n_cells, 1)), int(4_000_000 // max(cell.size, 1))))
            # weights only for the leads seen at as_of, in lead-id order: the samples do not
            # depend on leads that appear later nor on the row order of the log
            used_ids = np.asarray(lead_ids, dtype=object)[lead_idx].astype(str)
            rank = np.empty(n_leads, dtype=np.int64)
            rank[lead_idx[np.argsort(used_ids, kind="stable")]] = np.arange(lead_idx.size)
            col_of_stay = rank[s_lead_used]
            for a in range(0, D, chunk):
                b = min(D, a + chunk)
                w = rng.standard_exponential((b - a, lead_idx.size))
                w /= w.mean(axis=1, keepdims=True)
                wc = np.asarray(onehot @ w[:, col_of_stay].T).T.reshape((b - a, *shape))
                m_, s_ = self._mass_from_counts(wc, n_gs)
                ms[a:b], sl[a:b] = m_, s_
            self._mass_samples, self._stalled_samples = ms, sl
        else:
            self._mass_samples = self._stalled_samples = None

        # bookkeeping
        self.stage_set_ = ss
        self.states_ = states
        self.by_ = by
        self.as_of_ = pd.Timestamp(T)
        self.groups_ = groups
        self.notes_ = notes
        self._n_tr = n_tr
        self._K = K
        self._n_gs = n_gs
        self._cdf_cache: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        self._lead_group = pd.Series(lead_group[lead_idx], index=pd.Index(np.asarray(lead_ids)[lead_idx]))
        self._fitted = True

        to_names = np.array([*states, OPEN], dtype=object)
        stays = pd.DataFrame({lead: np.asarray(lead_ids, dtype=object)[s_lead]})
        for c in by:
            vals = seg_frame[c].to_numpy()[s_lead]
            stays[c] = pd.Categorical(vals, categories=seg_frame[c].cat.categories) \
                if isinstance(seg_frame[c].dtype, pd.CategoricalDtype) else vals
        stays["stage"] = pd.Categorical(np.array(steps, dtype=object)[s_from], categories=steps[:-1])
        stays["entered_at"] = s_t.view("datetime64[ns]")
        stays["to_stage"] = pd.Categorical(to_names[s_to], categories=list(to_names))
        stays["days"] = days
        self.stays_ = stays
        self.counts_ = self._counts_table(s_group, s_from, s_to)
        self.probabilities_ = self._prob_table(pooled=not by)
        self.pooled_probabilities_ = self._prob_table(pooled=True) if by else self.probabilities_
        return self

    def _mass_from_counts(self, counts: np.ndarray, n_gs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mass per (sample, group + pooled, stage, day, destination) from counts."""
        pooled = counts.sum(axis=1, keepdims=True)
        tot = pooled.sum(axis=(3, 4), keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(tot > 0, self.shrinkage / tot, 0.0)
        shrunk = counts + scale * pooled
        allc = np.concatenate([shrunk, pooled], axis=1)
        mass, stalled = _aalen_johansen(allc)
        G = counts.shape[1]
        fallback = n_gs < self.min_count  # (G, S)
        if fallback.any():
            gi, si = np.nonzero(fallback)
            mass[:, gi, si] = mass[:, G, si]
            stalled[:, gi, si] = stalled[:, G, si]
        return mass, stalled

    # ------------------------------------------------------------------
    # tables
    # ------------------------------------------------------------------
    def _check(self) -> None:
        if not self._fitted:
            raise TransitionModelError("the model is not fitted yet; call .fit(log) first.")

    def _group_frame(self, gidx: np.ndarray, pooled: bool) -> pd.DataFrame:
        if pooled or not self.by_:
            return pd.DataFrame(index=np.arange(len(gidx)))
        return self.groups_.iloc[gidx][self.by_].reset_index(drop=True)

    def _groups_for(self, pooled: bool) -> np.ndarray:
        G = len(self.groups_)
        return np.array([G]) if (pooled or not self.by_) else np.arange(G)

    def _quantiles(self, samples: np.ndarray | None, level: float) -> tuple[np.ndarray, np.ndarray]:
        if samples is None:
            return None, None
        a = (1 - level) / 2
        return np.quantile(samples, a, axis=0), np.quantile(samples, 1 - a, axis=0)

    def _counts_table(self, s_group, s_from, s_to) -> pd.DataFrame:
        n_states = len(self.states_)
        col = np.where(s_to >= 0, s_to, n_states)
        G, S = len(self.groups_), self._n_tr
        c = np.bincount((s_group * S + s_from) * (n_states + 1) + col, minlength=G * S * (n_states + 1))
        c = c.reshape(G, S, n_states + 1)
        g, s, b = np.nonzero(c)
        out = self._group_frame(g, pooled=False)
        steps = list(self.stage_set_.steps)
        names = np.array([*self.states_, OPEN], dtype=object)
        out["from_stage"] = pd.Categorical(np.array(steps, dtype=object)[s], categories=steps[:-1])
        out["to_stage"] = pd.Categorical(names[b], categories=list(names))
        out["n"] = c[g, s, b].astype(np.int64)
        return out.reset_index(drop=True)

    def _eventual(self, samples: bool) -> np.ndarray:
        """P[..., G+1, S, n_states + 1]: eventual destination probabilities incl. stalled."""
        if samples:
            m, st = self._mass_samples.sum(axis=3, dtype=np.float64), self._stalled_samples
        else:
            m, st = self._mass.sum(axis=2), self._stalled
        return np.concatenate([m, st[..., None]], axis=-1)

    def _prob_table(self, pooled: bool) -> pd.DataFrame:
        gsel = self._groups_for(pooled)
        P = self._eventual(False)[gsel]
        lo = hi = None
        if self._mass_samples is not None:
            lo, hi = self._quantiles(self._eventual(True)[:, gsel], self.level)
        G = len(self.groups_)
        names = [*self.states_, STALLED]
        S = self._n_tr
        gi, si, bi = np.meshgrid(np.arange(len(gsel)), np.arange(S), np.arange(len(names)), indexing="ij")
        gi, si, bi = gi.ravel(), si.ravel(), bi.ravel()
        self_move = bi == si
        gi, si, bi = gi[~self_move], si[~self_move], bi[~self_move]
        out = self._group_frame(gsel[gi], pooled)
        steps = list(self.stage_set_.steps)
        out["from_stage"] = pd.Categorical(np.array(steps, dtype=object)[si], categories=steps[:-1])
        out["to_stage"] = pd.Categorical(np.array(names, dtype=object)[bi], categories=names)
        out["probability"] = P[gi, si, bi]
        out["ci_low"] = lo[gi, si, bi] if lo is not None else np.nan
        out["ci_high"] = hi[gi, si, bi] if hi is not None else np.nan
        g_abs = gsel[gi]
        n = np.where(g_abs == G, self._n_gs.sum(axis=0)[si], self._n_gs[np.minimum(g_abs, G - 1), si])
        out["stays"] = n.astype(np.int64)
        out["pooled"] = (g_abs < G) & (self._n_gs[np.minimum(g_abs, G - 1), si] < self.min_count)
        return out.reset_index(drop=True)

    # ------------------------------------------------------------------
    # absorbing Markov chain
    # ------------------------------------------------------------------
    def _segment_index(self, segment) -> int:
        G = len(self.groups_)
        if segment is None:
            return G
        if not self.by_:
            raise TransitionModelError("the model was fitted without by=; pass segment=None.")
        key = segment if isinstance(segment, tuple) else (segment,)
        if len(key) != len(self.by_):
            raise TransitionModelError(
                f"segment must give one value per by column {self.by_}, got {segment!r}."
            )
        hit = np.ones(G, dtype=bool)
        for c, v in zip(self.by_, key):
            hit &= (self.groups_[c].astype(object) == v).to_numpy()
        if not hit.any():
            known = self.groups_[self.by_].astype(object).apply(tuple, axis=1).tolist()
            raise TransitionModelError(f"unknown segment {segment!r}; known segments: {known[:10]}.")
        return int(np.flatnonzero(hit)[0])

    def matrix(self, segment=None) -> pd.DataFrame:
        """The transition matrix of the absorbing chain (point estimate).

        Parameters
        ----------
        segment : value or tuple, optional
            The segment (one value per ``by`` column); default pooled.

        Returns
        -------
        DataFrame
            Square, indexed by from-state and with one column per to-state:
            the transient stages, the goal, the lost outcomes and
            :data:`STALLED`.  Absorbing states have 1 on the diagonal.  Each
            row sums to 1.

        Examples
        --------
        >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
        >>> tm = fk.transitions.TransitionModel(n_samples=0).fit(fk.datasets.load_demo())
        >>> M = tm.matrix()
        >>> bool(abs(M.sum(axis=1) - 1).max() < 1e-9)
        True
        """
        self._check()
        g = self._segment_index(segment)
        P = self._eventual(False)[g]
        return self._square(P)

    def _square(self, P: np.ndarray) -> pd.DataFrame:
        names = [*self.states_, STALLED]
        n = len(names)
        M = np.eye(n)
        M[: self._n_tr] = P
        return pd.DataFrame(M, index=pd.Index(names, name="from_stage"), columns=pd.Index(names, name="to_stage"))

    def _absorb(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Absorption probabilities and expected moves for P[..., S, n_states+1]."""
        S = self._n_tr
        Q = P[..., :S, :S]
        R = P[..., :S, S:]
        eye = np.broadcast_to(np.eye(S), Q.shape)
        try:
            B = np.linalg.solve(eye - Q, R)
            steps = np.linalg.solve(eye - Q, np.ones((*Q.shape[:-1], 1)))[..., 0]
        except np.linalg.LinAlgError as exc:
            raise TransitionModelError(
                "the chain has a closed loop of stages that leads never leave; absorption "
                "probabilities are undefined."
            ) from exc
        return B, steps

    def _chain_table(self, what: str, level: float | None, pooled: bool) -> pd.DataFrame:
        self._check()
        level = self.level if level is None else level
        gsel = self._groups_for(pooled)
        B, n = self._absorb(self._eventual(False)[gsel])
        val = B[..., 0] if what == "win" else n
        lo = hi = None
        if self._mass_samples is not None:
            Bs, ns = self._absorb(self._eventual(True)[:, gsel])
            lo, hi = self._quantiles(Bs[..., 0] if what == "win" else ns, level)
        S = self._n_tr
        gi, si = np.meshgrid(np.arange(len(gsel)), np.arange(S), indexing="ij")
        gi, si = gi.ravel(), si.ravel()
        out = self._group_frame(gsel[gi], pooled)
        steps = list(self.stage_set_.steps)
        out["stage"] = pd.Categorical(np.array(steps, dtype=object)[si], categories=steps[:-1])
        name = "probability" if what == "win" else "expected_steps"
        out[name] = val[gi, si]
        out["ci_low"] = lo[gi, si] if lo is not None else np.nan
        out["ci_high"] = hi[gi, si] if hi is not None else np.nan
        return out.reset_index(drop=True)

    def win_probability(self, *, level: float | None = None, pooled: bool = False) -> pd.DataFrame:
        """Probability of eventually winning from each stage (absorbing chain).

        Stalled leads count as not winning.  The interval comes from the
        posterior samples.

        Parameters
        ----------
        level : float, optional
            Interval level (default: the model's).
        pooled : bool
            Report the pooled chain even when the model has segments.

        Returns
        -------
        DataFrame
            ``by`` columns (segment models), ``stage``, ``probability``,
            ``ci_low``, ``ci_high``.

        Examples
        --------
        >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
        >>> tm = fk.transitions.TransitionModel(n_samples=30).fit(fk.datasets.load_demo())
        >>> round(float(tm.win_probability()["probability"].iloc[-1]), 1)
        0.6
        """
        return self._chain_table("win", level, pooled)

    def expected_steps(self, *, level: float | None = None, pooled: bool = False) -> pd.DataFrame:
        """Expected number of remaining moves until an outcome, from each stage.

        Counts every move, the final one into won, lost or stalled included
        (so a stage that always goes straight to an outcome has 1).

        Returns
        -------
        DataFrame
            ``by`` columns (segment models), ``stage``, ``expected_steps``,
            ``ci_low``, ``ci_high``.

        Examples
        --------
        >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
        >>> tm = fk.transitions.TransitionModel(n_samples=0).fit(fk.datasets.load_demo())
        >>> float(tm.expected_steps()["expected_steps"].iloc[-1])
        1.0
        """
        return self._chain_table("steps", level, pooled)

    # ------------------------------------------------------------------
    # semi-Markov: time
    # ------------------------------------------------------------------
    def _won_within(self, mass: np.ndarray, H: int) -> np.ndarray:
        """W[..., s, h]: P(goal within h days | just entered transient stage s), h = 0..H."""
        S = self._n_tr
        K = mass.shape[-2]
        if K < H + 1:
            pad = [(0, 0)] * mass.ndim
            pad[-2] = (0, H + 1 - K)
            mass = np.pad(mass, pad)
        mk = mass[..., : H + 1, :].astype(np.float64)
        direct = np.cumsum(mk[..., S], axis=-1)  # (..., S, H+1)
        L = 1 << int(np.ceil(np.log2(2 * (H + 1))))
        Tf = np.fft.rfft(mk[..., :S], n=L, axis=-2)  # (..., S, Lf, S_b)
        W = direct.copy()
        for _ in range(500):
            Wf = np.fft.rfft(W, n=L, axis=-1)  # (..., S_b, Lf)
            conv = np.einsum("...sfb,...bf->...sf", Tf, Wf)
            new = np.clip(direct + np.fft.irfft(conv, n=L, axis=-1)[..., : H + 1], 0.0, 1.0)
            done = np.abs(new - W).max() < 1e-12
            W = new
            if done:
                break
        return W

    def _close_prob(self, mass, stalled, W, g, s, q, h) -> np.ndarray:
        """P(goal within h days) for leads at stage s with q whole days spent (-1: fresh)."""
        S = self._n_tr
        K = mass.shape[-2]
        # the stay ends on day k > q; time left after that is h - (k - origin), where the
        # origin is q (days already spent, whole) or 0 for a lead that just entered
        origin = np.maximum(q, 0)
        n_k = origin + h - q  # days k = q+1 .. origin+h
        off = np.arange(max(int(n_k.max()) if n_k.size else 0, 1))
        k = q[:, None] + 1 + off[None, :]
        ok = (off[None, :] < n_k[:, None]) & (k < K)
        kk = np.where(ok, k, 0)
        widx = np.clip(h[:, None] - (k - origin[:, None]), 0, W.shape[-1] - 1)
        m = mass[..., g[:, None], s[:, None], kk, :]  # (..., n, hmax, B)
        Wt = np.swapaxes(W, -1, -2)  # (..., G, H+1, S)
        Wb = Wt[..., g[:, None], widx, :]  # (..., n, hmax, S)
        contrib = m[..., S] + (m[..., :S] * Wb).sum(axis=-1)
        num = (contrib * ok).sum(axis=-1)
        cum = np.cumsum(mass.sum(axis=-1), axis=-1)  # (..., G, S, K)
        before = np.where(q >= 0, cum[..., g, s, np.clip(q, 0, K - 1)], 0.0)
        surv = 1.0 - before
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(surv > 1e-12, num / surv, 0.0)
        return np.clip(p, 0.0, 1.0)

    def close_probability(
        self,
        stage,
        days_in_stage=0,
        horizon_days=90,
        *,
        segment=None,
        level: float | None = None,
    ) -> pd.DataFrame:
        """Probability that a lead wins within a horizon, given time already spent.

        Semi-Markov: the lead leaves its stage after a time drawn from that
        stage's history *given* it has already spent ``days_in_stage`` there,
        towards a destination that depends on when it leaves; later stages
        start fresh.  Exact on a one-day grid (``days_in_stage`` is taken in
        whole days).  For "by a given date" pass
        ``horizon_days = (date - as_of).days``.

        Parameters
        ----------
        stage : str or array of str
            Current stage(s) of the lead(s).
        days_in_stage : float or array
            Days already spent in the stage (0: just entered).
        horizon_days : int or array
            Window, in days, from now.
        segment : value or tuple, optional
            Segment of a segment model; default pooled.
        level : float, optional
            Interval level (default: the model's).

        Returns
        -------
        DataFrame
            One row per query (arguments broadcast): ``stage``,
            ``days_in_stage``, ``horizon_days``, ``probability``, ``ci_low``,
            ``ci_high``.

        Examples
        --------
        >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
        >>> tm = fk.transitions.TransitionModel(n_samples=20).fit(fk.datasets.load_demo())
        >>> cp = tm.close_probability("proposal", [0, 200], 90)
        >>> bool(cp["probability"].iloc[0] > cp["probability"].iloc[1])
        True
        """
        self._check()
        level = self.level if level is None else level
        st_arr, d_arr, h_arr = np.broadcast_arrays(
            np.asarray(stage, dtype=object), np.asarray(days_in_stage, dtype=float),
            np.asarray(horizon_days, dtype=float),
        )
        st_arr, d_arr, h_arr = st_arr.ravel(), d_arr.ravel(), h_arr.ravel()
        s = self._stage_index(st_arr)
        if (d_arr < 0).any() or np.isnan(d_arr).any():
            raise TransitionModelError("days_in_stage must be >= 0 (no missing values).")
        if (h_arr < 0).any() or np.isnan(h_arr).any():
            raise TransitionModelError("horizon_days must be >= 0 (no missing values).")
        q = np.where(d_arr > 0, np.floor(d_arr), -1).astype(np.int64)
        h = np.floor(h_arr).astype(np.int64)
        g = np.full(s.size, self._segment_index(segment), dtype=np.int64)
        H = int(h.max()) if h.size else 0
        W = self._won_within(self._mass, H)
        p = self._close_prob(self._mass, self._stalled, W, g, s, q, h)
        lo = np.full(s.size, np.nan)
        hi = np.full(s.size, np.nan)
        if self._mass_samples is not None:
            draws = []
            step = 20
            for a in range(0, self._mass_samples.shape[0], step):
                ms = self._mass_samples[a : a + step].astype(np.float64)
                Ws = self._won_within(ms, H)
                draws.append(self._close_prob(ms, None, Ws, g, s, q, h))
            lo, hi = self._quantiles(np.concatenate(draws, axis=0), level)
        return pd.DataFrame(
            {
                "stage": st_arr.astype(object),
                "days_in_stage": d_arr,
                "horizon_days": h_arr,
                "probability": p,
                "ci_low": lo,
                "ci_high": hi,
            }
        )

    def won_within(self, stage, horizon_days: int, *, samples: bool = False) -> np.ndarray:
        """P(win within h days | a lead just entered ``stage``), for h = 0..horizon_days.

        Parameters
        ----------
        stage : str
            An open stage.
        horizon_days : int
        samples : bool
            False: the point estimate; True: one curve per posterior sample.

        Returns
        -------
        ndarray
            Shape ``(n_segments + 1, horizon_days + 1)`` (the last row is the
            pooled estimate), or ``(n_samples, n_segments + 1, horizon_days + 1)``
            with ``samples=True``.

        Examples
        --------
        >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
        >>> tm = fk.transitions.TransitionModel(n_samples=0).fit(fk.datasets.load_demo())
        >>> curve = tm.won_within("close", 60)[-1]
        >>> bool(curve[60] > curve[10] > 0)
        True
        """
        self._check()
        s = int(self._stage_index(np.array([stage], dtype=object))[0])
        H = int(horizon_days)
        if H < 0:
            raise TransitionModelError(f"horizon_days must be >= 0, got {horizon_days}.")
        if not samples:
            return self._won_within(self._mass, H)[:, s]
        if self._mass_samples is None:
            raise TransitionModelError("the model has no posterior samples (n_samples=0).")
        out = []
        for a in range(0, self._mass_samples.shape[0], 20):
            out.append(self._won_within(self._mass_samples[a : a + 20].astype(np.float64), H)[:, :, s])
        return np.concatenate(out, axis=0)

    def _stage_index(self, names) -> np.ndarray:
        steps = list(self.stage_set_.steps)[: self._n_tr]
        out = np.empty(len(names), dtype=np.int64)
        cache: dict[object, int] = {}
        uniq = pd.unique(pd.Series(names, dtype=object))
        for u in uniq:
            canon = self.stage_set_.canonical(u)
            if canon not in steps:
                raise TransitionModelError(
                    f"{u!r} is not an open stage of {self.stage_set_.name!r}; open stages: "
                    f"{', '.join(steps)}."
                )
            cache[u] = steps.index(canon)
        codes, uniques = pd.factorize(pd.Series(names, dtype=object))
        lut = np.array([cache[u] for u in uniques], dtype=np.int64)
        out[:] = lut[codes]
        return out

    def group_index(self, frame: pd.DataFrame, *, lead: str = LEAD) -> np.ndarray:
        """The model segment of each row of a lead table (e.g. a snapshot).

        Leads seen in the fit keep the segment they were fitted in; others
        are matched on the ``by`` columns; rows whose segment is unknown to
        the model get the pooled estimate (index ``len(groups_)``).

        Returns
        -------
        ndarray of int
        """
        self._check()
        G = len(self.groups_)
        if not self.by_:
            return np.full(len(frame), G if G != 1 else 0, dtype=np.int64)
        out = np.full(len(frame), G, dtype=np.int64)
        if all(c in frame.columns for c in self.by_):
            keys = self.groups_[self.by_].astype(object).assign(_g=np.arange(G))
            left = frame[self.by_].astype(object).reset_index(drop=True)
            merged = left.merge(keys, on=self.by_, how="left")
            hit = merged["_g"].notna().to_numpy()
            out[hit] = merged["_g"].to_numpy()[hit].astype(np.int64)
        if lead in frame.columns:
            known = self._lead_group.reindex(frame[lead].to_numpy())
            hit = known.notna().to_numpy()
            out[hit] = known.to_numpy()[hit].astype(np.int64)
        return out

    def stage_index(self, stages) -> np.ndarray:
        """Index (0..) of each open stage name among the transient stages."""
        self._check()
        return self._stage_index(np.asarray(stages, dtype=object))

    def simulate(
        self,
        *,
        stage_idx: np.ndarray,
        days_in_stage: np.ndarray,
        group_idx: np.ndarray,
        sample_idx: np.ndarray | None,
        horizon_days: float,
        rng: np.random.Generator,
        start_offset: np.ndarray | None = None,
    ) -> np.ndarray:
        """Simulate future paths; return when each path wins (days from now).

        Vectorised over paths: at each round every running path draws when it
        leaves its stage and where to, given the days already spent there
        (inverse-CDF sampling from the stage's day-by-destination
        distribution); paths stop when they reach an outcome, stall, or pass
        the horizon.

        Parameters
        ----------
        stage_idx, days_in_stage, group_idx : arrays of the same length
            Current transient stage index, days spent there (``NaN`` or 0:
            just entered) and model segment of each path.
        sample_idx : array of int or None
            Posterior sample each path uses (parameter uncertainty); ``None``
            uses the point estimate.
        horizon_days : float
            Stop following a path after this many days.
        rng : numpy Generator
        start_offset : array, optional
            Days from now at which each path is in that state (e.g. the
            arrival time of a future lead); default 0.

        Returns
        -------
        ndarray of float
            Days from now at which the path wins; ``NaN`` if it does not win
            within the horizon.
        """
        self._check()
        S, K, B = self._n_tr, self._K, len(self.states_)
        if sample_idx is None:
            mass = self._mass[None]
            samp = np.zeros(len(stage_idx), dtype=np.int64)
        else:
            if self._mass_samples is None:
                raise TransitionModelError("the model has no posterior samples (n_samples=0).")
            mass = self._mass_samples
            samp = np.asarray(sample_idx, dtype=np.int64)
        Gp = mass.shape[1]
        n = len(stage_idx)
        cur = np.asarray(stage_idx, dtype=np.int64).copy()
        d = np.nan_to_num(np.asarray(days_in_stage, dtype=float), nan=0.0)
        elapsed = np.zeros(n) if start_offset is None else np.asarray(start_offset, dtype=float).copy()
        row = samp * Gp + np.asarray(group_idx, dtype=np.int64)
        won_at = np.full(n, np.nan)
        active = np.flatnonzero(elapsed <= horizon_days)
        # two-level inverse-CDF sampling: the day from the per-row CDF over days, then the
        # destination given the day (small arrays: cache-friendly)
        key = "point" if sample_idx is None else "samples"
        cdfs = self._cdf_cache.setdefault(key, {})  # per stage; reset by fit()
        R = mass.shape[0] * Gp
        for _ in range(1000):
            if active.size == 0:
                break
            nxt = []
            cur_now = cur[active]  # stage at the start of the round: one move per path per round
            for s in range(S):
                idx = active[cur_now == s]
                if idx.size == 0:
                    continue
                if s not in cdfs:
                    ms = mass[:, :, s].reshape(R, K, B)
                    c = np.cumsum(ms.sum(axis=2, dtype=np.float64), axis=1)
                    cdfs[s] = (c + np.arange(R)[:, None], ms)
                C, ms = cdfs[s]
                r = row[idx]
                ds = d[idx]
                q = np.minimum(np.where(ds > 0, np.floor(ds), -1).astype(np.int64), K - 1)
                lower = np.where(q >= 0, C[r, np.maximum(q, 0)] - r, 0.0)
                u = lower + rng.random(idx.size) * (1.0 - lower)
                k = np.searchsorted(C.ravel(), u + r, side="right") - r * K
                stall = k >= K
                k = np.minimum(k, K - 1)
                cum = np.cumsum(ms[r, k].astype(np.float64), axis=1)  # (n, B)
                u2 = rng.random(idx.size) * cum[:, -1]
                b = np.minimum((cum <= u2[:, None]).sum(axis=1), B - 1)
                t_ev = elapsed[idx] + (k - ds)
                go = ~stall & (t_ev <= horizon_days)
                win = go & (b == S)
                won_at[idx[win]] = t_ev[win]
                move = go & (b < S)
                mi = idx[move]
                cur[mi] = b[move]
                d[mi] = 0.0
                elapsed[mi] = t_ev[move]
                nxt.append(mi)
            active = np.concatenate(nxt) if nxt else np.array([], dtype=np.int64)
        return won_at

    # ------------------------------------------------------------------
    @property
    def summary(self) -> pd.DataFrame:
        """One row per (segment,) stage: stays, moves, open stays, stall and win probability.

        Columns: ``by`` columns, ``stage``, ``stays``, ``moved`` (stays that
        ended), ``open`` (censored), ``stalled`` (probability of never moving
        again), ``win_probability`` with ``ci_low``/``ci_high``,
        ``expected_steps``.
        """
        self._check()
        pooled = not self.by_
        gsel = self._groups_for(pooled)
        S = self._n_tr
        wp = self.win_probability(pooled=pooled)
        es = self.expected_steps(pooled=pooled)
        c = self.counts_
        stage_pos = c["from_stage"].cat.codes.to_numpy()
        if self.by_:
            gi = self.group_index(c.drop(columns=[LEAD], errors="ignore"), lead="__none__")
        else:
            gi = np.zeros(len(c), dtype=np.int64)
        G = len(self.groups_)
        is_open = (c["to_stage"] == OPEN).to_numpy()
        n = c["n"].to_numpy()
        tot = np.bincount(gi * S + stage_pos, weights=n, minlength=G * S).reshape(G, S)
        opn = np.bincount(gi * S + stage_pos, weights=n * is_open, minlength=G * S).reshape(G, S)
        if pooled:
            tot, opn = tot.sum(axis=0, keepdims=True), opn.sum(axis=0, keepdims=True)
            rows = np.zeros(len(gsel), dtype=np.int64)
        else:
            rows = gsel
        g_of = np.repeat(rows, S)
        s_of = np.tile(np.arange(S), len(gsel))
        stalled = self._eventual(False)[np.repeat(gsel, S), s_of, -1]
        out = wp.rename(columns={"probability": "win_probability"})
        k = len(self.by_) + 1
        out.insert(k, "stays", tot[g_of, s_of].astype(np.int64))
        out.insert(k + 1, "moved", (tot - opn)[g_of, s_of].astype(np.int64))
        out.insert(k + 2, "open", opn[g_of, s_of].astype(np.int64))
        out.insert(k + 3, "stalled", stalled)
        out["expected_steps"] = es["expected_steps"].to_numpy()
        return out

    def __repr__(self) -> str:
        if not self._fitted:
            return (
                f"<TransitionModel (not fitted) min_count={self.min_count}, "
                f"shrinkage={self.shrinkage}, n_samples={self.n_samples}>"
            )
        seg = f", by={self.by_} ({len(self.groups_)} segments)" if self.by_ else ""
        n_stays = len(self.stays_)
        n_open = int((self.stays_["to_stage"] == OPEN).sum())
        wp = self.win_probability(pooled=True)
        parts = ", ".join(f"{s} {p:.1%}" for s, p in zip(wp["stage"], wp["probability"]))
        return (
            f"<TransitionModel {self.stage_set_.name} as of {self.as_of_:%Y-%m-%d %H:%M}{seg}: "
            f"{n_stays:,} stays ({n_open:,} open), {self.n_samples} posterior samples; "
            f"P(win) from {parts}>"
        )


def _latest(values: pd.Series, *, rows_all: np.ndarray, lead_codes, t, n_leads) -> pd.Series:
    """Per lead: its latest non-missing value among the given rows (time order)."""
    sub_t = t[rows_all]
    o = np.lexsort((sub_t, lead_codes[rows_all]))
    r = rows_all[o]
    vals = values.iloc[r]
    ok = vals.notna().to_numpy()
    r_ok = r[ok]
    last = np.full(n_leads, -1, dtype=np.int64)
    last[lead_codes[r_ok]] = r_ok  # later positions overwrite: latest
    has = last >= 0
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = np.where(has, values.cat.codes.to_numpy()[np.maximum(last, 0)], -1)
        return pd.Series(pd.Categorical.from_codes(codes, dtype=values.dtype))
    arr = values.to_numpy()[np.maximum(last, 0)] if len(values) else np.array([])
    return pd.Series(arr).where(has)
