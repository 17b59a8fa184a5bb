"""Statistics used across funnelkit: intervals, tests, multiple comparisons,
survival estimates.  Thin, vectorised wrappers over numpy and scipy.

Nothing here knows about leads or stages; the views (``funnel``,
``pipeline``, ``transitions``) call these functions with counts and
durations.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as _st

from .exceptions import FunnelSpecError

__all__ = [
    "proportion_ci",
    "diff_ci",
    "compare_proportions",
    "bh_adjust",
    "kaplan_meier",
    "km_quantile",
    "chained_proportion_ci",
    "aalen_johansen",
    "rate_vs_target",
]

Method = Literal["wilson", "jeffreys"]



def _check_level(level) -> float:
    """``level`` as a float strictly between 0 and 1, else a FunnelSpecError saying so."""
    try:
        ok = 0 < float(level) < 1
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(level, bool):
        raise FunnelSpecError(f"level must be a probability between 0 and 1 (e.g. 0.95 for a 95% interval); "
                              f"got {level!r}.")
    return float(level)

def proportion_ci(
    successes, trials, *, level: float = 0.95, method: Method = "wilson"
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence interval for a binomial proportion, vectorised.

    Parameters
    ----------
    successes, trials : array-like of int
        Counts; ``trials == 0`` gives ``nan`` bounds.
    level : float
        Confidence level, e.g. 0.95.
    method : {"wilson", "jeffreys"}
        Wilson score interval (default) or the Jeffreys Beta(1/2, 1/2)
        equal-tailed interval (with the usual 0/1 endpoint correction).

    Returns
    -------
    low, high : ndarray of float

    Examples
    --------
    >>> low, high = proportion_ci(200, 1000)
    >>> round(float(low), 4), round(float(high), 4)
    (0.1764, 0.2259)
    """
    level = _check_level(level)
    x = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    if np.any(x < 0) or np.any(x > n):
        raise ValueError("successes must lie between 0 and trials.")
    alpha = 1.0 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "wilson":
            z = _st.norm.ppf(1 - alpha / 2)
            p = x / n
            denom = 1 + z**2 / n
            centre = (p + z**2 / (2 * n)) / denom
            half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
            low, high = centre - half, centre + half
            # exact at the ends (the formula gives 1 - 1e-16 and friends)
            low = np.where(x == 0, 0.0, low)
            high = np.where(x == n, 1.0, high)
        elif method == "jeffreys":
            low = _st.beta.ppf(alpha / 2, x + 0.5, n - x + 0.5)
            high = _st.beta.ppf(1 - alpha / 2, x + 0.5, n - x + 0.5)
            low = np.where(x == 0, 0.0, low)
            high = np.where(x == n, 1.0, high)
        else:
            raise ValueError(f"method must be 'wilson' or 'jeffreys', got {method!r}.")
    low = np.where(n > 0, np.clip(low, 0.0, 1.0), np.nan)
    high = np.where(n > 0, np.clip(high, 0.0, 1.0), np.nan)
    return low, high


def diff_ci(x1, n1, x2, n2, *, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval for ``p1 - p2`` (method 10), vectorised.

    Built from the two Wilson intervals; it behaves well for small counts and
    rates near 0 or 1, where the Wald interval does not.

    Returns
    -------
    low, high : ndarray of float

    Examples
    --------
    >>> low, high = diff_ci(302, 30200, 150, 60200)
    >>> bool(low > 0), round(float(high), 4)
    (True, 0.0088)
    """
    level = _check_level(level)
    x1, n1, x2, n2 = (np.asarray(a, dtype=float) for a in (x1, n1, x2, n2))
    l1, u1 = proportion_ci(x1, n1, level=level)
    l2, u2 = proportion_ci(x2, n2, level=level)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p2 = x1 / n1, x2 / n2
        d = p1 - p2
        low = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        high = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return low, high


def compare_proportions(x1, n1, x2, n2, *, min_expected: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided test of equal proportions for each row of counts.

    Uses Pearson's chi-square test on the 2x2 table (no continuity
    correction) when every expected count is at least ``min_expected``, and
    Fisher's exact test otherwise.

    Returns
    -------
    pvalue : ndarray of float
    test : ndarray of str
        ``"chi2"`` or ``"fisher"`` per row (``""`` where a group is empty).

    Examples
    --------
    >>> p, t = compare_proportions([302], [30200], [150], [60200])
    >>> t[0], bool(p[0] < 1e-10)
    ('chi2', True)
    """
    x1, n1, x2, n2 = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (x1, n1, x2, n2))
    pvals = np.full(x1.shape, np.nan)
    tests = np.full(x1.shape, "", dtype=object)
    for i in range(x1.size):  # one 2x2 table per comparison: few rows, not leads
        a, b = x1[i], n1[i] - x1[i]
        c, d = x2[i], n2[i] - x2[i]
        if n1[i] <= 0 or n2[i] <= 0:
            continue
        table = np.array([[a, b], [c, d]])
        if table.sum(axis=0).min() == 0:
            pvals[i], tests[i] = 1.0, "chi2"
            continue
        expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
        if expected.min() >= min_expected:
            pvals[i] = _st.chi2_contingency(table, correction=False).pvalue
            tests[i] = "chi2"
        else:
            pvals[i] = _st.fisher_exact(table.astype(int)).pvalue
            tests[i] = "fisher"
    return pvals, tests


def bh_adjust(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate); NaN kept.

    Examples
    --------
    >>> bh_adjust([0.01, 0.04, 0.03, 0.2]).round(3).tolist()
    [0.04, 0.053, 0.053, 0.2]
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = _st.false_discovery_control(p[ok], method="bh")
    return out


def kaplan_meier(durations, observed, *, level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier estimate of the survival function with censoring.

    Parameters
    ----------
    durations : array-like of float
        Time to the event, or to censoring.
    observed : array-like of bool
        True where the event happened, False where the subject was censored
        (e.g. a lead still open).
    level : float
        Level of the pointwise interval (Greenwood variance, log-log scale).

    Returns
    -------
    DataFrame
        One row per distinct event time: ``time``, ``at_risk``, ``events``,
        ``survival``, ``ci_low``, ``ci_high``.

    Examples
    --------
    >>> km = kaplan_meier([1, 2, 2, 3, 5], [1, 1, 0, 1, 0])
    >>> km[["time", "survival"]].round(3).values.tolist()
    [[1.0, 0.8], [2.0, 0.6], [3.0, 0.3]]
    """
    level = _check_level(level)
    t = np.asarray(durations, dtype=float)
    e = np.asarray(observed, dtype=bool)
    if t.shape != e.shape:
        raise ValueError("durations and observed must have the same length.")
    keep = ~np.isnan(t)
    t, e = t[keep], e[keep]
    if t.size == 0:
        return pd.DataFrame(columns=["time", "at_risk", "events", "survival", "ci_low", "ci_high"])
    order = np.argsort(t, kind="stable")
    t, e = t[order], e[order]
    times, first = np.unique(t, return_index=True)
    n = t.size
    at_risk = n - first
    events = np.add.reduceat(e.astype(np.int64), first)
    mask = events > 0
    times, at_risk, events = times[mask], at_risk[mask], events[mask]
    surv = np.cumprod(1 - events / at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        green = np.cumsum(events / (at_risk * (at_risk - events)))
        z = _st.norm.ppf(0.5 + level / 2)
        loglog = np.log(-np.log(surv))
        se = np.sqrt(green) / np.abs(np.log(surv))
        lo = np.exp(-np.exp(loglog + z * se))
        hi = np.exp(-np.exp(loglog - z * se))
    lo = np.where(surv >= 1, 1.0, np.where(surv <= 0, 0.0, lo))
    hi = np.where(surv >= 1, 1.0, np.where(surv <= 0, 0.0, hi))
    return pd.DataFrame(
        {
            "time": times,
            "at_risk": at_risk,
            "events": events,
            "survival": surv,
            "ci_low": np.nan_to_num(lo, nan=0.0),
            "ci_high": np.nan_to_num(hi, nan=1.0),
        }
    )


def km_quantile(km: pd.DataFrame, q: float) -> tuple[float, float, float]:
    """Time by which a fraction ``q`` of subjects had the event, from a KM table.

    Returns ``(estimate, ci_low, ci_high)``; ``nan`` where the curve never
    drops that far (too much censoring to tell).  The interval inverts the
    pointwise survival band (Brookmeyer-Crowley style).

    Examples
    --------
    >>> km = kaplan_meier([2, 4, 6, 8, 10, 12], [1, 1, 1, 1, 1, 0])
    >>> km_quantile(km, 0.5)[0]
    6.0
    """
    target = 1.0 - q
    if km.empty:
        return (np.nan, np.nan, np.nan)

    def first_time(col: str) -> float:
        hit = km.loc[km[col] <= target + 1e-12, "time"]
        return float(hit.iloc[0]) if len(hit) else np.nan

    return first_time("survival"), first_time("ci_low"), first_time("ci_high")


def chained_proportion_ci(
    successes, trials, *, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Running product of proportions (a life table) with a Greenwood interval.

    For steps ``j = 0, 1, ...`` with ``successes[j]`` of ``trials[j]``
    converting, the chance of getting through steps ``0..k`` is
    ``prod(successes[:k+1] / trials[:k+1])``.  This is the actuarial
    (Kaplan-Meier) estimate when some leads are censored at each step.
    The interval uses Greenwood's variance on the log(-log) scale, as
    :func:`kaplan_meier` does.

    Parameters
    ----------
    successes, trials : array-like of int, one entry per step
    level : float

    Returns
    -------
    estimate, low, high : ndarray of float
        One value per step; ``nan`` from the first step with no trials on,
        unless an earlier step had no success (then 0).

    Examples
    --------
    >>> est, lo, hi = chained_proportion_ci([50, 20], [100, 40])
    >>> est.round(3).tolist()
    [0.5, 0.25]

    When no lead got through a step, the later steps (which no lead
    reached) are 0 too, with that step's upper bound:

    >>> est, lo, hi = chained_proportion_ci([0, 0], [40, 0])
    >>> est.tolist(), lo.tolist(), (hi.round(3) == round(float(hi[0]), 3)).tolist()
    ([0.0, 0.0], [0.0, 0.0], [True, True])
    """
    level = _check_level(level)
    x = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    if x.shape != n.shape:
        raise ValueError("successes and trials must have the same length.")
    if np.any(x < 0) or np.any(x > n):
        raise ValueError("successes must lie between 0 and trials.")
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, x / n, np.nan)
        est = np.cumprod(p)
        green = np.cumsum(np.where(n > 0, (n - x) / (n * x), np.nan))
        z = _st.norm.ppf(0.5 + level / 2)
        se = np.sqrt(green) / np.abs(np.log(est))
        lo = np.exp(-np.exp(np.log(-np.log(est)) + z * se))
        hi = np.exp(-np.exp(np.log(-np.log(est)) - z * se))
    # all-1 or a 0 step: no spread on the log(-log) scale; fall back to the
    # Wilson bound of the step that decides it (the smallest all-success step,
    # or the first zero-success step)
    wl, _ = proportion_ci(n, n, level=level)
    _, wh = proportion_ci(np.zeros_like(n), n, level=level)
    one = est >= 1
    lo = np.where(one, np.fmin.accumulate(np.where(n > 0, wl, np.nan)), lo)
    hi = np.where(one, 1.0, hi)
    zero = est <= 0
    first_zero_hi = np.fmax.accumulate(np.where((x == 0) & (n > 0), wh, np.nan))
    lo = np.where(zero, 0.0, lo)
    hi = np.where(zero, first_zero_hi, hi)
    # once no lead got through a step, none gets through the later ones, even
    # those no lead reached (0/0): the chance stays 0, bounded by that step
    after_zero = np.isnan(est) & (np.fmax.accumulate(np.where(zero, 1.0, np.nan)) == 1)
    est = np.where(after_zero, 0.0, est)
    lo = np.where(after_zero, 0.0, lo)
    hi = np.where(after_zero, first_zero_hi, hi)
    bad = np.isnan(est)
    return est, np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def aalen_johansen(durations, events, *, level: float = 0.95) -> pd.DataFrame:
    """Cumulative incidence of competing outcomes (Aalen-Johansen), with intervals.

    When a lead can end in several ways (won or lost), the chance of one
    outcome by time ``t`` is its *cumulative incidence*
    ``F_k(t) = sum over event times t_j <= t of S(t_j-) * d_kj / n_j``, where
    ``S`` is the Kaplan-Meier probability of no outcome yet, ``d_kj`` the
    outcomes of kind ``k`` at ``t_j`` and ``n_j`` the leads at risk just before
    ``t_j``.  A Kaplan-Meier curve that treats the other outcomes as censored
    estimates ``1 - prod(1 - d_kj / n_j)`` instead, which is larger: it
    pretends lost leads could still have won.

    Parameters
    ----------
    durations : array-like of float
        Time to the outcome, or to censoring (leads still open).
    events : array-like of int
        0 for censored, 1, 2, ... for the kind of outcome (e.g. 1 = won,
        2 = lost).
    level : float
        Level of the pointwise interval: delta-method variance (Marubini and
        Valsecchi), on the log(-log) scale.

    Returns
    -------
    DataFrame
        One row per (event time, outcome kind): ``time``, ``event`` (the kind),
        ``at_risk``, ``events`` (of this kind at this time), ``incidence``
        (``F_k(t)``), ``ci_low``, ``ci_high``, and ``survival`` (probability of
        no outcome of any kind yet, Kaplan-Meier).  Sorted by event, then time.
        Kinds that never occur are absent.

    Examples
    --------
    >>> aj = aalen_johansen([1, 2, 3, 4], [1, 2, 1, 0])
    >>> aj[["event", "time", "incidence"]].values.tolist()
    [[1.0, 1.0, 0.25], [1.0, 2.0, 0.25], [1.0, 3.0, 0.5], [2.0, 1.0, 0.0], [2.0, 2.0, 0.25], [2.0, 3.0, 0.25]]
    """
    level = _check_level(level)
    t = np.asarray(durations, dtype=float)
    e = np.asarray(events)
    if t.shape != e.shape:
        raise ValueError("durations and events must have the same length.")
    if e.size and (np.any(np.isnan(e.astype(float))) or np.any(e.astype(float) < 0)):
        raise ValueError("events must be 0 (censored) or a positive integer kind of outcome.")
    e = e.astype(np.int64)
    keep = ~np.isnan(t)
    t, e = t[keep], e[keep]
    cols = ["time", "event", "at_risk", "events", "incidence", "ci_low", "ci_high", "survival"]
    if t.size == 0 or not np.any(e > 0):
        return pd.DataFrame(columns=cols)
    if np.any(t < 0):
        raise ValueError("durations must not be negative.")
    order = np.argsort(t, kind="stable")
    t, e = t[order], e[order]
    times, first = np.unique(t, return_index=True)
    at_risk_all = t.size - first
    kinds = np.unique(e[e > 0])
    # events of each kind at each distinct time: one bincount per kind
    pos = np.searchsorted(times, t)
    d_k = np.vstack([np.bincount(pos, weights=(e == k), minlength=times.size) for k in kinds])
    d = d_k.sum(axis=0)
    mask = d > 0
    times, n, d, d_k = times[mask], at_risk_all[mask].astype(float), d[mask], d_k[:, mask]
    surv = np.cumprod(1 - d / n)
    s_prev = np.r_[1.0, surv[:-1]]
    z = _st.norm.ppf(0.5 + level / 2)
    frames = []
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        a = np.where(n > d, d / (n * (n - d)), 0.0)
        for i, k in enumerate(kinds):
            dk = d_k[i]
            inc = np.cumsum(s_prev * dk / n)
            # Var F(t_i) = sum_{j<=i} (F_i - F_j)^2 a_j + S_{j-1}^2 dk (n-dk)/n^3
            #              - 2 (F_i - F_j) S_{j-1} dk / n^2   (delta method), via running sums
            b = s_prev**2 * dk * (n - dk) / n**3
            c = s_prev * dk / n**2
            sa, sfa, sffa = np.cumsum(a), np.cumsum(inc * a), np.cumsum(inc**2 * a)
            sc, sfc = np.cumsum(c), np.cumsum(inc * c)
            var = inc**2 * sa - 2 * inc * sfa + sffa + np.cumsum(b) - 2 * (inc * sc - sfc)
            var = np.maximum(var, 0.0)
            se = np.sqrt(var)
            loglog = np.log(-np.log(inc))
            scale = se / np.abs(inc * np.log(inc))
            lo = np.exp(-np.exp(loglog + z * scale))
            hi = np.exp(-np.exp(loglog - z * scale))
            lo = np.where(inc <= 0, 0.0, np.where(inc >= 1, 1.0, lo))
            hi = np.where(inc <= 0, 0.0, np.where(inc >= 1, 1.0, hi))
            frames.append(
                pd.DataFrame(
                    {
                        "time": times,
                        "event": k,
                        "at_risk": n.astype(np.int64),
                        "events": dk.astype(np.int64),
                        "incidence": inc,
                        "ci_low": np.nan_to_num(lo, nan=0.0),
                        "ci_high": np.nan_to_num(hi, nan=1.0),
                        "survival": surv,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)[cols]


def rate_vs_target(successes, trials, target) -> np.ndarray:
    """Two-sided exact binomial test of each observed rate against a target rate.

    Returns the p-values (``nan`` where ``trials`` is 0 or the target is
    missing).

    Examples
    --------
    >>> p = rate_vs_target([2, 19], [100, 100], 0.2)
    >>> bool(p[0] < 1e-6), bool(p[1] > 0.5)
    (True, True)
    """
    x = np.atleast_1d(np.asarray(successes, dtype=float))
    n = np.atleast_1d(np.asarray(trials, dtype=float))
    p0 = np.broadcast_to(np.atleast_1d(np.asarray(target, dtype=float)), x.shape)
    out = np.full(x.shape, np.nan)
    for i in range(x.size):  # one test per row of a summary table, never per lead
        if n[i] > 0 and np.isfinite(p0[i]) and 0 <= p0[i] <= 1:
            out[i] = _st.binomtest(int(x[i]), int(n[i]), float(p0[i])).pvalue
    return out


def chained_difference(x1, n1, x2, n2, *, level: float = 0.95):
    """Difference of two life-table products of step proportions, with a test.

    Each side's chance of getting through every step is the product of its
    step proportions ``P = prod(x_k / n_k)`` (see
    :func:`chained_proportion_ci`).  The variance of each product is the
    delta-method ``Var P = sum_k (prod_{j != k} p_j)^2 p_k (1 - p_k) / n_k``
    (finite when a step has no successes), the difference ``P1 - P2`` gets a
    Wald interval and a two-sided z-test.  With every lead matured the
    product is the plain end-to-end proportion, so the test compares the
    same quantity the funnel table shows.

    Parameters
    ----------
    x1, n1, x2, n2 : array-like, shape (rows, steps)
        Successes and trials per step of the two sides.
    level : float

    Returns
    -------
    p1, p2, difference, low, high, pvalue : ndarray of shape (rows,)
        ``nan`` where a side has a step without trials.

    Examples
    --------
    >>> p1, p2, d, lo, hi, p = chained_difference([[50, 20]], [[100, 40]], [[50, 30]], [[100, 40]])
    >>> p1.round(3).tolist(), p2.round(3).tolist(), bool(p[0] < 0.05)
    ([0.25], [0.375], False)
    """
    level = _check_level(level)
    def prod_var(x, n):
        x = np.atleast_2d(np.asarray(x, dtype=float))
        n = np.atleast_2d(np.asarray(n, dtype=float))
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(n > 0, x / n, np.nan)
        est = np.prod(p, axis=1)
        var = np.zeros(p.shape[0])
        for k in range(p.shape[1]):
            others = np.prod(np.delete(p, k, axis=1), axis=1) if p.shape[1] > 1 else np.ones(p.shape[0])
            with np.errstate(invalid="ignore", divide="ignore"):
                var += others**2 * p[:, k] * (1 - p[:, k]) / n[:, k]
        return est, var

    p1, v1 = prod_var(x1, n1)
    p2, v2 = prod_var(x2, n2)
    d = p1 - p2
    se = np.sqrt(v1 + v2)
    z = _st.norm.ppf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = np.where(se > 0, d / np.where(se > 0, se, 1.0), np.where(d == 0, 0.0, np.inf))
    pvalue = 2 * _st.norm.sf(np.abs(stat))
    bad = np.isnan(d)
    pvalue = np.where(bad, np.nan, pvalue)
    return p1, p2, d, d - z * se, d + z * se, pvalue


def median_ci(values, *, level: float = 0.95) -> tuple[float, float, float]:
    """The sample median with a distribution-free (order-statistic) interval.

    The interval is ``[x_(j), x_(k)]`` with ``j`` and ``k`` the binomial
    ``(n, 1/2)`` quantiles at ``(1 - level) / 2`` on each side, so it holds at
    least ``level`` whatever the distribution.

    Examples
    --------
    >>> est, lo, hi = median_ci(np.arange(1, 101))
    >>> est, lo, hi
    (50.5, 40.0, 61.0)
    """
    level = _check_level(level)
    x = np.sort(np.asarray(values, dtype=float))
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return np.nan, np.nan, np.nan
    est = float(np.median(x))
    alpha = 1 - level
    j = int(_st.binom.ppf(alpha / 2, n, 0.5))  # 1-based order statistic below
    k = n - j + 1
    if j < 1:
        return est, np.nan, np.nan
    return est, float(x[j - 1]), float(x[min(k, n) - 1])


def incidence_quantile(durations, events, q: float) -> float:
    """Time by which a share ``q`` of the eventual outcomes of kind 1 happened.

    From the Aalen-Johansen cumulative incidence ``F_1`` (kind 2 competes,
    0 is censored): the first time ``t`` with ``F_1(t) >= q * F_1(max)``.
    ``nan`` when no outcome of kind 1 occurs.

    Examples
    --------
    >>> incidence_quantile([1, 2, 3, 10, 5], [1, 1, 1, 1, 0], 0.5)
    3.0
    """
    aj = aalen_johansen(durations, events)
    one = aj[aj["event"] == 1]
    if one.empty:
        return np.nan
    inc = one["incidence"].to_numpy()
    hit = np.flatnonzero(inc >= q * inc[-1] - 1e-12)
    return float(one["time"].to_numpy()[hit[0]])
