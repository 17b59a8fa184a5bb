"""Benchmark: the ordered funnel with a 30-day window, by one segment, against DuckDB.

Run on demand (it is not part of the test suite)::

    .venv/bin/python benchmarks/bench_funnel.py            # 1M leads, ~2.9M events
    .venv/bin/python benchmarks/bench_funnel.py --leads 200000 --repeat 3

It generates an event log with :func:`funnelkit.datasets.make_events` (six
stage labels: qualification, meeting, proposal, close, won, lost; three
segment columns: product, source, owner), then times

* funnelkit: ``funnel.conversion(log, stages="pipeline4", by="product",
  window="30D")`` - ordered steps, skipped stages inferred, leads in flight
  at the data's end censored;
* DuckDB: the same funnel in SQL on the same in-memory DataFrame (DuckDB
  scans the pandas frame directly), with the same rules;

checks that both give identical counts (entered, converted, in flight per
product and step), and prints both medians, the ratio, and funnelkit's peak
memory.  DuckDB runs on every core (``threads`` is printed); funnelkit runs
on one, and then on every core through :mod:`funnelkit.parallel` (worker
processes over lead-partitioned chunks; its table must equal the one-core
table cell for cell).  ``benchmarks/bench_scale.py`` covers the other
reductions, 5M leads and Dask.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import tracemalloc

import numpy as np
import pandas as pd

import funnelkit as fk
from funnelkit import parallel

STEPS = ["qualification", "meeting", "proposal", "close", "won"]

SQL = """
with ev as (
    select
        lead_id,
        product,
        "timestamp" as ts,
        case stage when 'qualification' then 0 when 'meeting' then 1 when 'proposal' then 2
                   when 'close' then 3 when 'won' then 4 else -1 end as o,
        -- position within the lead: by time, then stage order, lost last
        row_number() over (
            partition by lead_id
            order by "timestamp",
                     case stage when 'qualification' then 0 when 'meeting' then 1 when 'proposal' then 2
                                when 'close' then 3 when 'won' then 4 else 99 end
        ) as pos
    from log
),
r0 as (
    -- one pass per lead: first step, its time (the window's anchor), segment, closed or not
    select lead_id,
           min(pos) filter (where o >= 0) as p,
           arg_min(ts, pos) filter (where o >= 0) as t0,
           arg_min(product, pos) as product,
           max(case when o = 4 or o = -1 then 1 else 0 end) as closed
    from ev group by lead_id
),
r1 as (select e.lead_id, min(e.pos) as p, any_value(r.t0) as t0 from ev e join r0 r using (lead_id)
       where e.o >= 1 and e.pos >= r.p and e.ts <= r.t0 + to_days({w}) group by e.lead_id),
r2 as (select e.lead_id, min(e.pos) as p, any_value(r.t0) as t0 from ev e join r1 r using (lead_id)
       where e.o >= 2 and e.pos >= r.p and e.ts <= r.t0 + to_days({w}) group by e.lead_id),
r3 as (select e.lead_id, min(e.pos) as p, any_value(r.t0) as t0 from ev e join r2 r using (lead_id)
       where e.o >= 3 and e.pos >= r.p and e.ts <= r.t0 + to_days({w}) group by e.lead_id),
r4 as (select e.lead_id, min(e.pos) as p from ev e join r3 r using (lead_id)
       where e.o >= 4 and e.pos >= r.p and e.ts <= r.t0 + to_days({w}) group by e.lead_id),
per_lead as (
    select r0.product,
           (r1.p is not null)::int + (r2.p is not null)::int + (r3.p is not null)::int
             + (r4.p is not null)::int + 1 as reached,
           -- in flight: not through, still open, and its window not closed at the data's end
           (r0.closed = 0 and r0.t0 + to_days({w}) > (select max("timestamp") from log)) as open_window
    from r0
    left join r1 using (lead_id) left join r2 using (lead_id)
    left join r3 using (lead_id) left join r4 using (lead_id)
    where r0.p is not null
)
select product,
       count(*) as s0, count(*) filter (reached >= 2) as s1, count(*) filter (reached >= 3) as s2,
       count(*) filter (reached >= 4) as s3, count(*) filter (reached >= 5) as s4,
       count(*) filter (reached = 1 and open_window) as f0,
       count(*) filter (reached = 2 and open_window) as f1,
       count(*) filter (reached = 3 and open_window) as f2,
       count(*) filter (reached = 4 and open_window) as f3
from per_lead group by product order by product
"""


def funnelkit_run(log: pd.DataFrame, window: int) -> pd.DataFrame:
    return fk.funnel.conversion(log, stages="pipeline4", by="product", window=f"{window}D")


def parallel_run(log: pd.DataFrame, window: int) -> pd.DataFrame:
    return parallel.conversion(log, stages="pipeline4", by="product", window=f"{window}D")


def duckdb_run(con, window: int) -> pd.DataFrame:
    return con.execute(SQL.format(w=int(window))).df()


def tidy_counts(fk_out: pd.DataFrame, duck: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    a = fk_out.assign(product=fk_out["product"].astype(str), step=fk_out["step"].astype(str))
    a = a.set_index(["product", "step"])[["entered", "in_flight"]].fillna(0).astype("int64").sort_index()
    rows = []
    for _, r in duck.iterrows():
        for k, s in enumerate(STEPS):
            rows.append(
                {
                    "product": r["product"],
                    "step": s,
                    "entered": int(r[f"s{k}"]),
                    "in_flight": int(r[f"f{k}"]) if k < 4 else 0,
                }
            )
    b = pd.DataFrame(rows).set_index(["product", "step"]).sort_index()
    return a, b


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_peak_delta(fn) -> float | None:
    """Extra resident memory (MiB) at the peak of ``fn()``, from Linux's VmHWM.

    The high-water mark is reset first (``/proc/self/clear_refs``), so the
    figure covers the call only: what funnelkit allocated on top of the data
    already in memory, including pandas/Arrow buffers tracemalloc cannot see.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    base = _status_kib("VmRSS")
    fn()
    peak = _status_kib("VmHWM")
    if base is None or peak is None:
        return None
    return (peak - base) / 1024


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--window", type=int, default=30, help="conversion window in days")
    args = ap.parse_args(argv)
    import duckdb

    t = time.perf_counter()
    log = fk.datasets.make_events(args.leads, seed=1)
    print(
        f"generated {len(log):,} events for {log['lead_id'].nunique():,} leads "
        f"({log['stage'].nunique()} stage labels, segments product/source/owner) "
        f"in {time.perf_counter() - t:.1f} s"
    )
    print(
        f"machine: {os.cpu_count()} cores; numpy {np.__version__}, pandas {pd.__version__}, "
        f"duckdb {duckdb.__version__}"
    )

    con = duckdb.connect()
    con.register("log", log)
    threads = con.execute("select current_setting('threads')").fetchone()[0]

    # warm up both (imports, caches), and check the results agree
    fk_out = funnelkit_run(log, args.window)
    duck = duckdb_run(con, args.window)
    a, b = tidy_counts(fk_out, duck)
    same = a.equals(b)
    if not same:
        diff = a.compare(b)
        print("COUNTS DIFFER:\n", diff.to_string())

    fk_times = timed(lambda: funnelkit_run(log, args.window), args.repeat)
    par_same = parallel_run(log, args.window).equals(fk_out)
    par_times = timed(lambda: parallel_run(log, args.window), args.repeat)
    dk_times = timed(lambda: duckdb_run(con, args.window), args.repeat)

    rss_delta = rss_peak_delta(lambda: funnelkit_run(log, args.window))
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    funnelkit_run(log, args.window)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB on Linux

    fk_med, dk_med = statistics.median(fk_times), statistics.median(dk_times)
    print()
    print(
        f"funnel: ordered, skipped stages inferred, {args.window}-day window, by product, "
        f"in-flight leads censored at the data's end"
    )
    print(
        f"identical counts (entered and in flight, {len(a)} product x step cells): {'yes' if same else 'NO'}"
    )
    print(f"funnelkit median: {fk_med:.3f} s   (runs: {', '.join(f'{x:.3f}' for x in fk_times)}; one core)")
    print(
        f"DuckDB    median: {dk_med:.3f} s   (runs: {', '.join(f'{x:.3f}' for x in dk_times)}; "
        f"threads={threads})"
    )
    par_med = statistics.median(par_times)
    print(
        f"funnelkit.parallel median: {par_med:.3f} s   (runs: {', '.join(f'{x:.3f}' for x in par_times)}; "
        f"{parallel.last_run.get('engine')}, {parallel.last_run.get('n_chunks')} chunks; "
        f"same table as one core: {'yes' if par_same else 'NO'})"
    )
    print(
        f"ratio funnelkit / DuckDB: {fk_med / dk_med:.2f}x one core, {par_med / dk_med:.2f}x every core "
        "(targets: within 1.5x; 0.8x at 5M leads)"
    )
    traced = (peak - base) / 2**20
    est = max(traced, rss_delta or 0.0)
    rss_text = "n/a" if rss_delta is None else f"{rss_delta:,.0f} MiB"
    print(
        f"funnelkit peak memory during the call: about {est:,.0f} MiB (target: under 2 GiB) - the larger of "
        f"{traced:,.0f} MiB traced by tracemalloc (numpy and Python allocations) and {rss_text} of "
        f"resident-set growth (Linux VmHWM; pages the allocator kept from earlier runs are not counted)"
    )
    print(f"process peak RSS over the whole run: {rss:,.0f} MiB (the generated log, DuckDB and funnelkit)")
    print()
    print(
        fk_out[["product", "step", "entered", "converted", "in_flight", "step_conversion"]].to_string(
            index=False
        )
    )
    return 0 if same and par_same else 1


if __name__ == "__main__":
    sys.exit(main())
