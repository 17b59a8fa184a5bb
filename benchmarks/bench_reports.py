"""Benchmark: the demo plan (every product and every source, one month) with 1 and N workers.

Runs ``funnelkit.reports.run_plan`` on the demo data with ``jobs=1``, then
``jobs=N`` (N = the number of cores) with worker processes, then with
threads driving the kernels, and prints the wall times and the speed-up.
Outputs go to a temporary folder.  Run from the repository root::

    .venv/bin/python benchmarks/bench_reports.py [--jobs N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from funnelkit.datasets import write_demo
from funnelkit.reports import run_plan

REPO = Path(__file__).resolve().parents[1]


def timed(plan: Path, out: Path, jobs: int, executor: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    status = run_plan(plan, jobs=jobs, executor=executor, output=out, progress=False)
    seconds = time.perf_counter() - start
    return seconds, int((status["status"] == "ok").sum()), len(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel workers (default: cores)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting (median reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_demo(root / "events.csv")
        spec = yaml.safe_load((REPO / "params" / "demo_monthly.yaml").read_text())
        spec["data"] = str(data)
        plan = root / "plan.yaml"
        plan.write_text(yaml.safe_dump(spec))
        settings = [(1, "process"), (args.jobs, "process"), (args.jobs, "thread")]
        results = {}
        for jobs, executor in settings:
            times = []
            for r in range(args.repeat):
                seconds, ok, n = timed(plan, root / f"out-{jobs}-{executor}-{r}", jobs, executor)
                if ok != n:
                    raise SystemExit(f"{n - ok} of {n} reports failed with jobs={jobs}, {executor}")
                times.append(seconds)
            results[(jobs, executor)] = statistics.median(times)
            print(f"jobs={jobs:<2} {executor:<8} {n} reports: {results[(jobs, executor)]:6.1f} s "
                  f"({results[(jobs, executor)] / n:.1f} s per report)", flush=True)
        base = results[(1, "process")]
        print(f"cores: {os.cpu_count()}; load average before the end: {os.getloadavg()[0]:.2f}")
        for jobs, executor in settings[1:]:
            print(f"speed-up of jobs={jobs} ({executor}) over jobs=1: {base / results[(jobs, executor)]:.2f}x")


if __name__ == "__main__":
    main()
