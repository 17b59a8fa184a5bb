"""Tests of funnelkit.stats against hand-worked examples and independent references."""

from __future__ import annotations

import warnings
from fractions import Fraction as Fr

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from funnelkit import stats

# ---------------------------------------------------------------------------
# proportions
# ---------------------------------------------------------------------------


def test_wilson_by_hand():
    # p = 0.2, n = 1000, z = 1.959964: centre = (p + z^2/2n) / (1 + z^2/n), etc.
    z = st.norm.ppf(0.975)
    p, n = 0.2, 1000
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    lo, hi = stats.proportion_ci(200, 1000)
    assert lo == pytest.approx(centre - half) and hi == pytest.approx(centre + half)
    lo, hi = stats.proportion_ci([0, 5, 0], [5, 5, 0])
    assert lo[0] == 0 and hi[1] == 1 and np.isnan(lo[2])


def test_jeffreys_is_the_beta_quantile():
    lo, hi = stats.proportion_ci(7, 40, method="jeffreys", level=0.9)
    assert lo == pytest.approx(st.beta.ppf(0.05, 7.5, 33.5))
    assert hi == pytest.approx(st.beta.ppf(0.95, 7.5, 33.5))
    with pytest.raises(ValueError):
        stats.proportion_ci(3, 2)
    with pytest.raises(ValueError):
        stats.proportion_ci(1, 2, method="wald")


def test_newcombe_difference_contains_the_difference():
    lo, hi = stats.diff_ci([30, 5], [100, 50], [20, 5], [100, 50])
    assert (lo < [0.1, 0.0]).all() and ([0.1, 0.0] < hi).all()
    assert lo[1] < 0 < hi[1]


def test_test_choice_chi2_or_fisher():
    p, t = stats.compare_proportions([302, 2], [30200, 10], [150, 0], [60200, 12])
    assert list(t) == ["chi2", "fisher"]
    assert p[0] == pytest.approx(st.chi2_contingency([[302, 29898], [150, 60050]], correction=False).pvalue)
    assert p[1] == pytest.approx(st.fisher_exact([[2, 8], [0, 12]]).pvalue)


def test_bh_by_hand():
    p = [0.01, 0.04, 0.03, 0.2, np.nan]
    # sorted 0.01, 0.03, 0.04, 0.2 ; m = 4 ; p*m/rank = .04, .06, .0533, .2 -> running min from the top
    np.testing.assert_allclose(stats.bh_adjust(p)[:4], [0.04, 0.05333333, 0.05333333, 0.2])
    assert np.isnan(stats.bh_adjust(p)[4])


def test_chained_proportion_is_a_life_table():
    est, lo, hi = stats.chained_proportion_ci([80, 30, 10], [100, 60, 20])
    np.testing.assert_allclose(est, [0.8, 0.4, 0.2])
    # Greenwood: var(log S) = sum (n - x) / (n x); interval on the log(-log) scale
    green = np.cumsum([20 / (100 * 80), 30 / (60 * 30), 10 / (20 * 10)])
    z = st.norm.ppf(0.975)
    se = np.sqrt(green) / np.abs(np.log(est))
    np.testing.assert_allclose(lo, np.exp(-np.exp(np.log(-np.log(est)) + z * se)))
    np.testing.assert_allclose(hi, np.exp(-np.exp(np.log(-np.log(est)) - z * se)))
    assert (lo < est).all() and (est < hi).all()
    e1, l1, h1 = stats.chained_proportion_ci([10, 10], [10, 10])
    assert e1.tolist() == [1.0, 1.0] and (h1 == 1).all() and (l1 < 1).all()
    e0, l0, h0 = stats.chained_proportion_ci([5, 0], [10, 8])
    assert e0[1] == 0 and l0[1] == 0 and 0 < h0[1] < 1
    with pytest.raises(ValueError):
        stats.chained_proportion_ci([3], [2])


def test_rate_vs_target_is_binomtest():
    p = stats.rate_vs_target([2, 30, 0], [100, 100, 0], 0.2)
    assert p[0] == pytest.approx(st.binomtest(2, 100, 0.2).pvalue)
    assert p[1] == pytest.approx(st.binomtest(30, 100, 0.2).pvalue)
    assert np.isnan(p[2])


# ---------------------------------------------------------------------------
# Kaplan-Meier against scipy.stats.ecdf (an independent implementation)
# ---------------------------------------------------------------------------
def test_kaplan_meier_matches_scipy_ecdf():
    rng = np.random.default_rng(5)
    t = np.round(rng.exponential(10, 300), 1)
    e = rng.random(300) < 0.7
    km = stats.kaplan_meier(t, e)
    ref = st.ecdf(st.CensoredData(uncensored=t[e], right=t[~e])).sf
    times = ref.quantiles
    ev_times = np.isin(times, km["time"])
    np.testing.assert_allclose(km["survival"], ref.probabilities[ev_times])
    with warnings.catch_warnings():  # scipy warns where the band is undefined (survival 0)
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = ref.confidence_interval(0.95, method="log-log")
    ok = km["survival"].to_numpy() > 0
    np.testing.assert_allclose(km["ci_low"][ok], ci.low.probabilities[ev_times][ok], rtol=1e-6)
    np.testing.assert_allclose(km["ci_high"][ok], ci.high.probabilities[ev_times][ok], rtol=1e-6)


def test_km_quantile_by_hand():
    km = stats.kaplan_meier([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], np.ones(10, bool))
    est, lo, hi = stats.km_quantile(km, 0.5)
    assert est == 5.0 and lo <= est <= hi


# ---------------------------------------------------------------------------
# Aalen-Johansen: hand-worked example, identities, independent variance
# ---------------------------------------------------------------------------
# 7 leads: won at 1, lost at 2, open at 2, won at 3, lost at 4, open at 5, won at 6
AJ_T = [1, 2, 2, 3, 4, 5, 6]
AJ_E = [1, 2, 0, 1, 2, 0, 1]


def test_aalen_johansen_hand_worked():
    """Worked with fractions:

    t=1: at risk 7, one won:  S = 6/7,          F_won = 1/7
    t=2: at risk 6, one lost: S = 5/7,          F_lost = 6/7 * 1/6 = 1/7
    t=3: at risk 4, one won:  S = 15/28,        F_won = 1/7 + 5/7 * 1/4 = 9/28
    t=4: at risk 3, one lost: S = 5/14,         F_lost = 1/7 + 15/28 * 1/3 = 9/28
    t=6: at risk 1, one won:  S = 0,            F_won = 9/28 + 5/14 = 19/28
    """
    aj = stats.aalen_johansen(AJ_T, AJ_E)
    won = aj[aj["event"] == 1].set_index("time")
    lost = aj[aj["event"] == 2].set_index("time")
    assert won["at_risk"].tolist() == [7, 6, 4, 3, 1]
    exp_won = [Fr(1, 7), Fr(1, 7), Fr(9, 28), Fr(9, 28), Fr(19, 28)]
    exp_lost = [Fr(0), Fr(1, 7), Fr(1, 7), Fr(9, 28), Fr(9, 28)]
    exp_s = [Fr(6, 7), Fr(5, 7), Fr(15, 28), Fr(5, 14), Fr(0)]
    np.testing.assert_allclose(won["incidence"], [float(x) for x in exp_won])
    np.testing.assert_allclose(lost["incidence"], [float(x) for x in exp_lost])
    np.testing.assert_allclose(won["survival"], [float(x) for x in exp_s])
    # the naive Kaplan-Meier that censors lost deals says every lead wins eventually
    km = stats.kaplan_meier(AJ_T, np.array(AJ_E) == 1)
    assert 1 - km["survival"].iloc[-1] == pytest.approx(1.0)
    assert won["incidence"].iloc[-1] == pytest.approx(19 / 28)


def test_aalen_johansen_identities():
    rng = np.random.default_rng(11)
    n = 400
    t = np.round(rng.exponential(20, n))
    e = rng.choice([0, 1, 2], n, p=[0.3, 0.4, 0.3])
    aj = stats.aalen_johansen(t, e)
    wide = aj.pivot(index="time", columns="event", values="incidence")
    surv = aj.drop_duplicates("time").set_index("time")["survival"]
    np.testing.assert_allclose(wide[1] + wide[2] + surv, 1.0)
    # one kind of outcome: AJ is 1 - KM, and its variance is Greenwood's
    one = stats.aalen_johansen(t, (e > 0).astype(int))
    km = stats.kaplan_meier(t, e > 0)
    np.testing.assert_allclose(one["incidence"], 1 - km["survival"])
    green = (km["survival"] ** 2 * np.cumsum(km["events"] / (km["at_risk"] * (km["at_risk"] - km["events"])))).to_numpy()
    se_aj = _delta_se(t, (e > 0).astype(int), 1)
    np.testing.assert_allclose(se_aj[:-1] ** 2, green[:-1], rtol=1e-8)
    # the intervals contain the estimate
    inside = (aj["ci_low"] <= aj["incidence"] + 1e-12) & (aj["incidence"] <= aj["ci_high"] + 1e-12)
    assert inside.all()


def _delta_se(t, e, cause):
    """Delta-method standard error of the cumulative incidence, from first principles.

    F_k(t) is written as a function of the discrete hazards h[l, j] = d_lj / n_j;
    its gradient is taken numerically and combined with the multinomial
    covariance (diag(h_j) - h_j h_j') / n_j of each event time.  This shares
    nothing with the closed form used in funnelkit.stats.
    """
    t, e = np.asarray(t, float), np.asarray(e)
    times = np.unique(t[e > 0])
    kinds = np.unique(e[e > 0])
    n = np.array([(t >= s).sum() for s in times], float)
    d = np.array([[((t == s) & (e == k)).sum() for s in times] for k in kinds], float)
    h = d / n
    ci = list(kinds).index(cause)

    def cif(hh, upto):
        s_prev, f = 1.0, 0.0
        for j in range(upto + 1):
            f += s_prev * hh[ci, j]
            s_prev *= 1 - hh[:, j].sum()
        return f

    out = []
    eps = 1e-7
    for i in range(len(times)):
        var = 0.0
        for j in range(i + 1):
            grad = np.zeros(len(kinds))
            for l_ in range(len(kinds)):
                hp, hm = h.copy(), h.copy()
                hp[l_, j] += eps
                hm[l_, j] -= eps
                grad[l_] = (cif(hp, i) - cif(hm, i)) / (2 * eps)
            cov = (np.diag(h[:, j]) - np.outer(h[:, j], h[:, j])) / n[j]
            var += grad @ cov @ grad
        out.append(np.sqrt(max(var, 0.0)))
    return np.array(out)


def test_aalen_johansen_variance_matches_first_principles():
    t = np.array(AJ_T + [7, 8, 8, 9, 10, 12, 12, 13], float)
    e = np.array(AJ_E + [2, 1, 0, 2, 1, 1, 2, 0])
    aj = stats.aalen_johansen(t, e, level=0.9)
    z = st.norm.ppf(0.95)
    for cause in (1, 2):
        part = aj[aj["event"] == cause]
        se = _delta_se(t, e, cause)
        f = part["incidence"].to_numpy()
        ok = (f > 0) & (f < 1)
        # invert the log(-log) interval to recover the standard error used
        lo = part["ci_low"].to_numpy()[ok]
        se_used = np.log(np.log(lo) / np.log(f[ok])) * np.abs(f[ok] * np.log(f[ok])) / z
        np.testing.assert_allclose(se_used, se[ok], rtol=1e-5)


def test_aalen_johansen_input_checks():
    with pytest.raises(ValueError):
        stats.aalen_johansen([1, 2], [1])
    with pytest.raises(ValueError):
        stats.aalen_johansen([1, 2], [1, -1])
    with pytest.raises(ValueError):
        stats.aalen_johansen([-1, 2], [1, 1])
    empty = stats.aalen_johansen([1, 2], [0, 0])
    assert empty.empty and "incidence" in empty.columns
    out = stats.aalen_johansen(pd.Series([3.0, np.nan, 1.0]), pd.Series([1, 1, 2]))
    assert out["at_risk"].max() == 2  # the unknown duration is left out
