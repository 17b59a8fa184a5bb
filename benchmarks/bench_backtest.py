"""Backtest of the forecast on the demo data, and the forecast's speed on a million leads.

Usage::

    python benchmarks/bench_backtest.py [--cutoffs 8] [--horizon 90D] [--draws 1000]
                                        [--model-by product] [--seed 42] [--leads 6000]
    python benchmarks/bench_backtest.py --speed [--leads 1000000] [--baseline 7690044]

Backtest (default): at each month-end cutoff the history is cut there, the transition model
is fitted on it, the open pipeline is forecast for the next horizon and compared with what
the open leads actually won.  Prints one row per cutoff and the error / 80%-range coverage
summary for ours and the baselines, with timings.

Speed (``--speed``): the demo generator's 1M leads (``funnelkit.datasets.make_events``,
written once to a temporary Parquet file so both versions read the same data), then, in a
fresh process pinned to one core with single-threaded BLAS, for this working tree and for
the code of ``--baseline`` (extracted with ``git archive``): ``TransitionModel.fit``
(200 posterior samples), a 90-day forecast of the open pipeline with that model, and the
full ``forecast()`` (fit included), each timed (CPU seconds of the process, and wall), and
the totals of both versions printed side by side.  The two versions draw different random
numbers, so their ranges agree within Monte Carlo error, not to the digit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_WORKER = r"""
import json, os, sys, time, warnings
try:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
except (AttributeError, OSError):
    pass
warnings.simplefilter("ignore")
import pandas as pd
import funnelkit
from funnelkit import forecast as F
from funnelkit.transitions import TransitionModel
path, as_of = sys.argv[1], sys.argv[2]
log = pd.read_parquet(path)
log.attrs = {}
out = {"funnelkit": funnelkit.__file__}

def timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    r = fn()
    return r, time.process_time() - c0, time.perf_counter() - w0

tm, out["fit_cpu"], out["fit_wall"] = timed(
    lambda: TransitionModel(n_samples=200).fit(log, stages="pipeline4", as_of=as_of))
f, out["forecast_cpu"], out["forecast_wall"] = timed(
    lambda: F.forecast(log, stages="pipeline4", as_of=as_of, horizon="90D", n_draws=1000, model=tm))
g, out["full_cpu"], out["full_wall"] = timed(
    lambda: F.forecast(log, stages="pipeline4", as_of=as_of, horizon="90D", n_draws=1000))
for name, fc in (("model", f), ("full", g)):
    t = fc.total.iloc[0]
    out[name] = {k: float(t[k]) for k in ["open_leads", "expected_wins", "wins_low", "wins_high",
                                          "expected_revenue", "revenue_low", "revenue_high"]}
print("RESULT " + json.dumps(out))
"""


def _run_worker(src_root: Path, data: Path, as_of: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src_root), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    # run outside the repository: the working directory comes first on sys.path
    res = subprocess.run([sys.executable, "-c", _WORKER, str(data), as_of], env=env, capture_output=True,
                         text=True, check=False, cwd=data.parent)
    line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    if res.returncode or not line:
        raise RuntimeError(f"worker failed ({src_root}):\n{res.stderr[-3000:]}")
    return json.loads(line[0][7:])


def speed(args) -> None:
    import pandas as pd

    import funnelkit as fk

    tmp = Path(tempfile.mkdtemp(prefix="fk_speed_"))
    data = tmp / f"events_{args.leads}.parquet"
    t0 = time.perf_counter()
    log = fk.validate_events(fk.datasets.make_events(args.leads, seed=1), stages="pipeline4")
    log.attrs = {}
    log.to_parquet(data)
    n_events = len(log)
    del log
    print(f"data: make_events({args.leads:,}, seed=1): {n_events:,} events ({time.perf_counter() - t0:.0f} s to "
          f"generate); as of {args.as_of}; 90-day horizon, 1,000 draws")
    base = tmp / "baseline"
    base.mkdir()
    arch = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline, "funnelkit"], capture_output=True,
                          check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(base)], input=arch, check=True)
    rows = {}
    for name, root in (("baseline " + args.baseline, base), ("this tree", REPO)):
        print(f"running {name} ...", flush=True)
        rows[name] = _run_worker(root, data, args.as_of)
        print(f"  imported {rows[name]['funnelkit']}", flush=True)
    pd.set_option("display.width", 160)
    table = pd.DataFrame(
        {
            name: {
                "fit: CPU s": r["fit_cpu"], "fit: wall s": r["fit_wall"],
                "forecast with the fitted model: CPU s": r["forecast_cpu"],
                "forecast with the fitted model: wall s": r["forecast_wall"],
                "forecast() incl. fit: CPU s": r["full_cpu"], "forecast() incl. fit: wall s": r["full_wall"],
                **{f"{k} (model given)": v for k, v in r["model"].items()},
                **{f"{k} (forecast())": v for k, v in r["full"].items()},
            }
            for name, r in rows.items()
        }
    )
    table["ratio"] = table.iloc[:, 0] / table.iloc[:, 1]
    print(table.round(2).to_string())
    print("\ntargets: fit <= 2 s, forecast <= 5 s, one core (CPU seconds of a process pinned to one core)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", action="store_true", help="time fit and forecast on 1M leads against --baseline")
    ap.add_argument("--baseline", default="7690044", help="git revision of 'today's code' for --speed")
    ap.add_argument("--as-of", default="2025-09-30")
    ap.add_argument("--cutoffs", type=int, default=8)
    ap.add_argument("--horizon", default="90D")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--level", type=float, default=0.8)
    ap.add_argument("--model-by", default=None, help="segment column(s) of the model, comma separated")
    ap.add_argument("--amount-bands", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42, help="seed of the demo data")
    ap.add_argument("--leads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.speed:
        args.leads = args.leads or 1_000_000
        speed(args)
        return

    import pandas as pd

    from funnelkit import forecast as F
    from funnelkit.datasets import load_demo

    args.leads = args.leads or 6000
    log = load_demo(args.leads, seed=args.seed)
    by = args.model_by.split(",") if args.model_by else None
    t0 = time.perf_counter()
    bt = F.backtest(
        log, n_cutoffs=args.cutoffs, horizon=args.horizon, level=args.level, model_by=by,
        amount_bands=args.amount_bands, n_draws=args.draws,
    )
    secs = time.perf_counter() - t0
    pd.set_option("display.width", 200)
    t = bt.table.copy()
    t["cutoff"] = t["cutoff"].dt.strftime("%Y-%m-%d")
    cols = ["cutoff", "open_leads", "actual_wins", "expected_wins", "wins_low", "wins_high", "horizon_weighted_wins",
            "run_rate_wins", "actual_revenue", "expected_revenue", "revenue_low", "revenue_high"]
    print(f"demo data: {args.leads:,} leads (seed {args.seed}); horizon {args.horizon}; "
          f"model_by={by}; amount_bands={args.amount_bands}; {args.draws} draws")
    print(t[cols].round(0).to_string(index=False))
    print()
    print(bt.summary.round(3).to_string(index=False))
    print("\n" + bt.sentence)
    print(f"\n{len(t)} cutoffs (+ {bt.rolling_['cutoff'].nunique() - len(t)} warm-up) in {secs:.1f} s, one core")


if __name__ == "__main__":
    main()
