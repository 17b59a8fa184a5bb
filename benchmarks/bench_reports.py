"""Benchmark the report runner: wall time on the demo plan, and peak memory on a large event log.

Default (``--time``): the demo plan (every product and every source, one
month) with ``jobs=1``, then ``jobs=N`` (N = the number of cores) with worker
processes, then with threads driving the kernels; prints the wall times and
the speed-up.

``--memory``: writes a large generated event log as CSV
(``funnelkit.datasets.make_events``, ``--events`` events, 5 million by
default), then runs ``funnelkit report`` on it as a new user would, sampling
the memory of the whole process tree (runner, workers, Jupyter kernels) every
0.2 s; it prints the peak PSS (proportional set size: shared pages counted
once) and the peak RSS sum, and the wall time, for

* one report (``--only product=<A>``, ``--jobs 1``) and two reports at once
  (``--jobs 2``), with the kernels reading the run's Parquet cache (now);
* the same two runs with a copy of the template that does not declare the
  ``cache`` parameter, so that every kernel reads and validates the CSV
  itself (as before the cache; ``--no-before`` skips these).

Outputs go to a temporary folder.  Run from the repository root::

    .venv/bin/python benchmarks/bench_reports.py [--jobs N] [--repeat R]
    .venv/bin/python benchmarks/bench_reports.py --memory [--events 5000000] [--no-before]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from funnelkit.datasets import write_demo
from funnelkit.reports import run_plan

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3


def timed(plan: Path, out: Path, jobs: int, executor: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    status = run_plan(plan, jobs=jobs, executor=executor, output=out, progress=False)
    seconds = time.perf_counter() - start
    return seconds, int((status["status"] == "ok").sum()), len(status)


def bench_time(args) -> None:
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


# ---------------------------------------------------------------------------
# peak memory
# ---------------------------------------------------------------------------
def tree_memory(proc) -> tuple[int, int, int]:
    """(PSS sum, RSS sum, processes) of a process and all its descendants."""
    import psutil

    pss = rss = n = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0, 0
    for p in procs:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        n += 1
    return pss, rss, n


def measured(cmd: list[str], log: Path) -> dict:
    """Run ``cmd``; the peak memory of its process tree, sampled every 0.2 s, and its wall time."""
    import psutil

    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        ps = psutil.Process(proc.pid)
        peak_pss = peak_rss = most = 0
        while proc.poll() is None:
            pss, rss, n = tree_memory(ps)
            peak_pss, peak_rss, most = max(peak_pss, pss), max(peak_rss, rss), max(most, n)
            time.sleep(0.2)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}; see {log}:\n{log.read_text()[-3000:]}")
    return {"pss": peak_pss, "rss": peak_rss, "seconds": seconds, "processes": most}


def template_without_cache(folder: Path) -> Path:
    """The monthly template, minus its ``cache`` parameter: every kernel reads the raw data (as before)."""
    import nbformat

    nb = nbformat.read(REPO / "notebooks" / "monthly_report.ipynb", as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("cache ="))
        cell.source = cell.source.replace(", cache=cache", "")
    path = folder / "monthly_report_nocache.ipynb"
    nbformat.write(nb, path)
    return path


def bench_memory(args) -> None:
    import pandas as pd

    from funnelkit.datasets import make_events

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        leads = int(args.events / 2.86)  # the generator makes about 2.86 events per lead
        log = make_events(leads, seed=1)
        data = root / "events.csv"
        log.to_csv(data, index=False)
        products = sorted(pd.unique(log["product"].astype(str)))
        print(f"event log: {len(log):,} events, {log['lead_id'].nunique():,} leads, "
              f"{data.stat().st_size / 2**20:,.0f} MiB CSV ({time.perf_counter() - start:.0f} s to make)", flush=True)
        del log
        plan = root / "plan.yaml"
        plan.write_text(yaml.safe_dump({"data": str(data), "stages": "pipeline4", "splits": ["product"],
                                        "month": "2025-09", "target": 500000, "output": str(root / "out")}))
        one = ["--only", f"product={products[0]}", "--jobs", "1"]
        two = ["--only", f"product={products[0]}", "--only", f"product={products[1]}", "--jobs", "2"]
        runs = [("now", "1 report, --jobs 1", one, None), ("now", "2 reports, --jobs 2", two, None)]
        if args.before:
            nocache = template_without_cache(root)
            runs += [("before", "1 report, --jobs 1", one, nocache), ("before", "2 reports, --jobs 2", two, nocache)]
        results = {}
        for when, label, extra, template in runs:
            cmd = [sys.executable, "-m", "funnelkit", "report", str(plan), "--no-progress", *extra]
            if template is not None:
                cmd += ["--template", str(template)]
            res = measured(cmd, root / f"{when}-{len(results)}.log")
            results[(when, label)] = res
            print(f"{when:<6} {label:<20} peak PSS {res['pss'] / GIB:5.2f} GiB, peak RSS sum "
                  f"{res['rss'] / GIB:5.2f} GiB, {res['seconds']:6.1f} s ({res['processes']} processes)", flush=True)
        for when in ("now", "before"):
            a, b = results.get((when, "1 report, --jobs 1")), results.get((when, "2 reports, --jobs 2"))
            if a and b:
                print(f"{when}: peak memory of --jobs 2 / one report = {b['pss'] / a['pss']:.2f}x (PSS), "
                      f"{b['rss'] / a['rss']:.2f}x (RSS)")
        print(f"cores: {os.cpu_count()}; load average at the end: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", action="store_true", help="peak memory on a large event log (see above)")
    parser.add_argument("--events", type=int, default=5_000_000, help="events in the large log (--memory)")
    parser.add_argument("--no-before", dest="before", action="store_false",
                        help="skip the runs where every kernel reads the CSV itself (--memory)")
    parser.add_argument("--tmp", default=None, help="folder for the temporary files (default: the system's)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel workers (default: cores)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting (median reported)")
    args = parser.parse_args()
    if args.memory:
        bench_memory(args)
    else:
        bench_time(args)


if __name__ == "__main__":
    main()
