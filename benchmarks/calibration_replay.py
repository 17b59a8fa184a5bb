"""Replay the backtest's calibration under other rules, without re-running a forecast.

``bench_calibration.py --save DIR`` pickles each log's backtest: the per-cutoff table and
``rolling_``, the raw forecast of every cutoff (scored and warm-up) for every candidate
half-life.  The range calibration and the half-life choice only read those rows, so
another calibration rule can be scored on the same forecasts in a second: this script
re-does, for each scored cutoff, what :func:`funnelkit.forecast.backtest` does (past rows
whose horizon has ended, the latest ``K`` cutoffs, the half-life chosen on them, the range
corrected by their misses) under each rule below, and prints the coverage of the 80%
range, its width and the bias per log.  The row ``current`` must reproduce the saved
table exactly (checked).

Usage::

    python benchmarks/bench_calibration.py --save /tmp/cal [--seeds 3]
    python benchmarks/calibration_replay.py /tmp/cal
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from funnelkit import forecast as F


def _scores(mine: pd.DataFrame):
    e = mine["expected_wins"].to_numpy(float)
    lo = mine["wins_low"].to_numpy(float)
    hi = mine["wins_high"].to_numpy(float)
    a = mine["actual_wins"].to_numpy(float)
    s_lo = (lo - a) / np.maximum(e - lo, 1.0)
    s_hi = (a - hi) / np.maximum(hi - e, 1.0)
    return s_lo, s_hi


def _rank_value(x: np.ndarray, rank: float, how: str) -> float | None:
    n = x.size
    if how == "ceil":
        r = np.ceil(rank)
        return None if r > n else F._order_stat(x, r)
    r = min(rank, n)  # interpolated rank; past the largest, the largest
    return F._order_stat(x, max(r, 1.0))


def rule(*, rank="ceil", asym=9, sym=4, whole=False, hold=False):
    """A calibration rule: split-conformal on half-range scores with the given rank rule
    (``whole``: each end rounded to the nearest whole win and the high end at most the open
    leads, and ``hold``: the range stretched to hold the point forecast shown, as
    :func:`forecast` does for the open pipeline; saves made with ``--new-leads`` are not
    capped by the backtest, so replay them with the unrounded rules only)."""

    def cal(mine, est, lo, hi, level, most=None):
        n = len(mine)
        if n < sym:
            return lo, hi
        s_lo, s_hi = _scores(mine)
        a = 1 - level
        w_lo, w_hi = max(est - lo, 1.0), max(hi - est, 1.0)
        if n >= asym:
            q_lo = _rank_value(s_lo, (n + 1) * (1 - a / 2), rank)
            q_hi = _rank_value(s_hi, (n + 1) * (1 - a / 2), rank)
        else:
            q_lo = q_hi = _rank_value(np.maximum(s_lo, s_hi), (n + 1) * level, rank)
        if q_lo is None or q_hi is None:
            return lo, hi
        new_lo, new_hi = lo - q_lo * w_lo, hi + q_hi * w_hi
        if new_lo > new_hi:
            new_lo = new_hi = (new_lo + new_hi) / 2
        if hold:
            shown = est * F._level_correction(mine, quantity="wins")[0]
            new_lo, new_hi = min(new_lo, shown), max(new_hi, shown)
        if whole:
            new_lo, new_hi = np.floor(new_lo + 0.5), np.floor(new_hi + 0.5)
            if most is not None:  # never more wins than open leads
                new_hi = min(new_hi, most)
                new_lo = min(new_lo, new_hi)
        return max(new_lo, 0.0), max(new_hi, 0.0)

    return cal


def current(mine, est, lo, hi, level, most=None):
    factor = F._level_correction(mine, quantity="wins")[0]
    out = F._calibrate_range(mine, est, lo, hi, level, quantity="wins", shown=est * factor, most=most)
    return out[0], out[1]


def outward(mine, est, lo, hi, level, most=None):
    """Whole wins rounded outward: every whole win the range touches (more than stated)."""
    low, high = rule(rank="ceil")(mine, est, lo, hi, level)
    return np.floor(low + 1e-9), np.ceil(high - 1e-9)


def replay(saved: dict, cal, *, K: int = 12, spaced: bool = False, window_days: int | None = None,
           thin_days: int | None = None) -> pd.DataFrame:
    """Each scored cutoff's calibrated range under ``cal`` (K latest past cutoffs)."""
    table, rolling, level = saved["table"], saved["rolling"], saved["level"]
    hl = saved["half_life"]
    cands = F._candidates(hl, None)
    out = []
    for c in table["cutoff"]:
        past = rolling[rolling["horizon_end"] <= c]
        span = (rolling["horizon_end"] - rolling["cutoff"]).iloc[0]
        if thin_days == "auto":  # as the backtest does: after the first win's history, spaced as forecast() spaces
            past = past[past["cutoff"] >= saved["first_win"] + F._calibration_history(span)]
        cuts = sorted(past["cutoff"].unique())
        if spaced and cuts:  # non-overlapping horizons: walk back from the latest
            span = (rolling["horizon_end"] - rolling["cutoff"]).iloc[0]
            keep = [cuts[-1]]
            for x in reversed(cuts[:-1]):
                if keep[-1] - x >= span:
                    keep.append(x)
            cuts = sorted(keep)
        if thin_days and cuts:  # at least thin_days apart, walking back from the latest
            every = (F._calibration_spacing(saved["first_win"], c, span, K, "auto") if thin_days == "auto"
                     else pd.Timedelta(days=thin_days))
            keep = [cuts[-1]]
            for x in reversed(cuts[:-1]):
                if keep[-1] - x >= every:
                    keep.append(x)
            cuts = sorted(keep)
        if window_days is not None:  # every cutoff of the window, and at least the latest K
            start = c - pd.Timedelta(days=window_days)
            keep = sorted(set(cuts[-K:]) | {x for x in cuts if x >= start})
        else:
            keep = cuts[-K:] if K else []
        past = past[past["cutoff"].isin(keep)]
        chosen, _ = F._choose_half_life(past, cands)
        now = rolling[(rolling["cutoff"] == c) & F._same_half_life(rolling["half_life"], chosen)].iloc[0]
        mine = past[F._same_half_life(past["half_life"], chosen)] if len(past) else past
        lo, hi = cal(mine, now["expected_wins"], now["wins_low"], now["wins_high"], level,
                     most=float(now["open_leads"]) if "open_leads" in now.index else None)
        out.append({"cutoff": c, "expected": now["expected_wins"], "low": lo, "high": hi,
                    "actual": now["actual_wins"], "n": len(mine)})
    return pd.DataFrame(out)


RULES = {
    "current": (current, {"thin_days": "auto"}),  # backtest's calibration_every="auto"
    "current, 30 days apart (the rule until calibration_every='auto')": (current, {"thin_days": 30}),
    "current, K=9 (rank 9 of 9: 80% exactly if exchangeable)": (current, {"thin_days": "auto", "K": 9}),
    "interpolated rank (11.7 of 12), whole wins, auto": (rule(rank="interp", whole=True, hold=True), {"thin_days": "auto"}),
    "interpolated rank": (rule(rank="interp"), {}),
    "ceil, K=24": (rule(rank="ceil"), {"K": 24}),
    "interp, K=24": (rule(rank="interp"), {"K": 24}),
    "ceil, spaced": (rule(rank="ceil"), {"spaced": True}),
    "interp, spaced, K=24": (rule(rank="interp"), {"spaced": True, "K": 24}),
    "ceil, a year (>= 12)": (rule(rank="ceil"), {"window_days": 365}),
    "ceil, a year, 30D apart (>= 12)": (rule(rank="ceil"), {"window_days": 365, "thin_days": 30}),
    "unrounded (the rule until whole wins)": (rule(rank="ceil"), {"thin_days": 30}),
    "whole wins, outward (floor low, ceil high)": (outward, {"thin_days": 30}),
    "whole wins, K=24": (rule(rank="ceil", whole=True, hold=True), {"K": 24, "thin_days": 30}),
    "current as a rule (checks the rule)": (rule(rank="ceil", whole=True, hold=True), {"thin_days": "auto"}),
    "interpolated rank, whole wins": (rule(rank="interp", whole=True, hold=True), {"thin_days": 30}),
    "interpolated rank, whole wins, K=24": (rule(rank="interp", whole=True, hold=True), {"K": 24, "thin_days": 30}),
    "interp, a year (>= 12)": (rule(rank="interp"), {"window_days": 365}),
    "symmetric only, interp": (rule(rank="interp", asym=10**9), {}),
    "symmetric only, interp, K=24": (rule(rank="interp", asym=10**9), {"K": 24}),
}


def main(folder: str) -> None:
    files = sorted(Path(folder).glob("*.pkl"))
    logs: dict[str, list[dict]] = {}
    for f in files:
        logs.setdefault(f.stem.rsplit("_", 1)[0], []).append(pd.read_pickle(f))
    rows = []
    for name, saves in logs.items():
        for label, (cal, kw) in RULES.items():
            parts = [replay(s, cal, **kw) for s in saves]
            if label == "current":  # the replay must reproduce the backtest
                for s, p in zip(saves, parts):
                    np.testing.assert_allclose(p["low"], s["table"]["wins_low"], rtol=1e-9)
                    np.testing.assert_allclose(p["high"], s["table"]["wins_high"], rtol=1e-9)
            r = pd.concat(parts, ignore_index=True)
            inside = (r["low"] <= r["actual"]) & (r["actual"] <= r["high"])
            per_seed = [float(((p["low"] <= p["actual"]) & (p["actual"] <= p["high"])).mean()) for p in parts]
            rows.append({"log": name, "rule": label, "cutoffs": len(r), "coverage": inside.mean(),
                         "seed 0": per_seed[0], "min seed": min(per_seed),
                         "below": (r["actual"] < r["low"]).mean(), "above": (r["actual"] > r["high"]).mean(),
                         "mean width / mean actual": (r["high"] - r["low"]).mean() / max(r["actual"].mean(), 1e-9)})
    out = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(out.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\ncoverage per rule (pooled; seed 0 = the benchmark's own logs)")
    print(out.pivot(index="rule", columns="log", values="coverage").round(2).to_string())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/cal")
