"""Backtest of the forecast on the demo data, beside the CRM weighted pipeline.

Usage::

    python benchmarks/bench_backtest.py [--cutoffs 8] [--horizon 90D] [--draws 1000]
                                        [--model-by product] [--seed 42] [--leads 6000]

At each month-end cutoff the history is cut there, the transition model is
fitted on it, the open pipeline is forecast for the next horizon and compared
with what the open leads actually won.  Prints one row per cutoff and the
error / 80%-interval coverage summary for both methods, with timings.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from funnelkit import forecast as F
from funnelkit.datasets import load_demo


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cutoffs", type=int, default=8)
    ap.add_argument("--horizon", default="90D")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--level", type=float, default=0.8)
    ap.add_argument("--model-by", default=None, help="segment column(s) of the model, comma separated")
    ap.add_argument("--amount-bands", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42, help="seed of the demo data")
    ap.add_argument("--leads", type=int, default=6000)
    args = ap.parse_args(argv)

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
    cols = ["cutoff", "open_leads", "actual_wins", "expected_wins", "wins_low", "wins_high", "weighted_wins",
            "actual_revenue", "expected_revenue", "revenue_low", "revenue_high", "weighted_pipeline"]
    print(f"demo data: {args.leads:,} leads (seed {args.seed}); horizon {args.horizon}; "
          f"model_by={by}; amount_bands={args.amount_bands}; {args.draws} draws")
    print(t[cols].round(0).to_string(index=False))
    print()
    print(bt.summary.round(3).to_string(index=False))
    print(f"\n{len(t)} cutoffs in {secs:.1f} s ({secs / len(t):.2f} s per cutoff, one core)")


if __name__ == "__main__":
    main()
