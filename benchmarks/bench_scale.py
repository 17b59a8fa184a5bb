"""Benchmark: every reduction at scale, one core, every core and Dask, against DuckDB SQL.

Run on demand (not in the test suite)::

    .venv/bin/python benchmarks/bench_scale.py                 # 1M and 5M leads, in memory
    .venv/bin/python benchmarks/bench_scale.py --sizes 1000000 --repeat 3
    .venv/bin/python benchmarks/bench_scale.py --dask 1000000 5000000 20000000   # + Dask from Parquet
    .venv/bin/python benchmarks/bench_scale.py --no-memory     # skip the memory runs
    .venv/bin/python benchmarks/bench_scale.py --sizes 1000000 --run "F: ..."  # append a labelled run

For each size it generates an event log with
:func:`funnelkit.datasets.make_events` (about 2.85 events per lead; stages
qualification > meeting > proposal > close > won, lost; segments product,
source, owner) and times, on the same in-memory DataFrame:

* ``funnel``: ``conversion(log, stages="pipeline4", by="product", window="30D")``;
* ``outcomes``: ``outcomes(log, stages="pipeline4", by="product")`` (won,
  lost, stalled past the 90-day horizon, open);
* ``snapshot``: ``pipeline.snapshot(log, stages="pipeline4")`` at the data's end;
* ``durations``: ``pipeline.durations(log, stages="pipeline4")`` (per lead and stage);
* ``stale``: ``pipeline.stale(log, stages="pipeline4", thresholds=STALE_DAYS)`` (open leads
  past a given number of days in their stage; DuckDB: the snapshot SQL filtered);
* ``movement``: ``pipeline.movement(log, stages="pipeline4", start=..., end=..., by="product")``
  (the waterfall; DuckDB: each lead's state at both dates, compared and summed);
* ``transitions``: ``TransitionModel(n_samples=200).fit(log, stages="pipeline4", by="product")``
  against :func:`funnelkit.parallel.fit_transitions` (the same model: stays, counts, notes,
  estimate and posterior samples compared); DuckDB computes the stays (one per run of a
  stage up to the first outcome: lead, product, stage, entry, destination or ``open``,
  days), their counts per (product, from_stage, to_stage) and the exposures (days at
  risk) per product and stage, which are checked against ``stays_`` row by row,
  ``counts_`` exactly and the sums of ``stays_.days`` to 1e-12 (summed in another order).
  DuckDB does not estimate the model (the Aalen-Johansen rates on the day grid and the
  200 posterior samples the fit also makes);

each as ``funnelkit.funnel``/``pipeline`` on one core, as
:mod:`funnelkit.parallel` on every core (worker processes), and as DuckDB SQL
on the same DataFrame (DuckDB uses every core too).  The results are checked
in the same run: the parallel tables equal the one-core tables cell for cell,
and DuckDB's rows equal funnelkit's (the funnel's counts per product and step,
the outcome counts per product, every snapshot row and every stage visit
summary, compared exactly).  The funnel is also run by ClickHouse's
``windowFunnel`` through ``chdb`` (when installed), reading the events from
Parquet, whose counts differ by design (see ``CHDB_NOTE``).

Memory: the peak of the proportional set size (PSS: pages shared between
processes counted once) of this process and its children, sampled every
10 ms during a separate run, minus the PSS before the call; beside it the
bytes of the log's columns the reduction uses (``memory_usage(deep=True)``).

``--dask``: writes lead-partitioned Parquet (``parallel.write_partitioned``,
generated 1M leads at a time, so 20M leads never sit in memory) and runs the
funnel on a ``LocalCluster`` of 2 worker processes with a 4 GiB memory limit
each; its counts are checked against the sum of the counts of the pieces
(each piece's leads are its own, so the funnel of the whole is the sum).

Every figure goes to a CSV (``--csv``, default ``benchmarks/bench_scale.csv``), rewritten,
or appended with a label in its ``run`` column (``--run "F: ..."``).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

import funnelkit as fk
from funnelkit import parallel
from funnelkit.transitions import TransitionModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_funnel import SQL as FUNNEL_SQL  # the same SQL as bench_funnel.py

STEPS = ["qualification", "meeting", "proposal", "close", "won"]
ORDER = (
    "case stage when 'qualification' then 0 when 'meeting' then 1 when 'proposal' then 2 "
    "when 'close' then 3 when 'won' then 4 else -1 end"
)
SORT = (
    "case stage when 'qualification' then 0 when 'meeting' then 1 when 'proposal' then 2 "
    "when 'close' then 3 when 'won' then 4 else 99 end"
)
CHDB_NOTE = (
    "windowFunnel(30 days) counts a lead at level k when k conditions match distinct events in time "
    "order within 30 days of the first: no censoring (a lead whose window is still open at the data's "
    "end is simply not converted, never 'in flight'), one event per level (a lead that skipped the "
    "meeting is not counted at the meeting, nor, by that chain, after it), and the product is any "
    "event's; its 'entered' counts are therefore at most funnelkit's from the meeting on."
)

EVENTS = f"""
ev as (
    select lead_id, stage::varchar as label, "timestamp" as ts, amount,
           product::varchar as product, source::varchar as source, owner::varchar as owner,
           {ORDER} as o,
           row_number() over (partition by lead_id order by "timestamp", {SORT}) as pos
    from log
)
"""

OUTCOMES_SQL = (
    "with "
    + EVENTS
    + """,
r0 as (
    select lead_id, min(pos) filter (where o >= 0) as p, arg_min(ts, pos) filter (where o >= 0) as t,
           arg_min(product, pos) as product,
           arg_max(case when o = 4 then 1 else 2 end, pos) filter (where o = 4 or o = -1) as outcome
    from ev group by lead_id
),
r1 as (select e.lead_id, min(e.pos) as p, arg_min(e.ts, e.pos) as t from ev e join r0 r using (lead_id)
       where e.o >= 1 and e.pos >= r.p group by e.lead_id),
r2 as (select e.lead_id, min(e.pos) as p, arg_min(e.ts, e.pos) as t from ev e join r1 r using (lead_id)
       where e.o >= 2 and e.pos >= r.p group by e.lead_id),
r3 as (select e.lead_id, min(e.pos) as p, arg_min(e.ts, e.pos) as t from ev e join r2 r using (lead_id)
       where e.o >= 3 and e.pos >= r.p group by e.lead_id),
r4 as (select e.lead_id, min(e.pos) as p from ev e join r3 r using (lead_id)
       where e.o >= 4 and e.pos >= r.p group by e.lead_id),
per_lead as (
    select r0.product, coalesce(r0.outcome, 0) as outcome, r4.p is not null as through,
           -- stalled: open, not through, and 90 days (the horizon) past the last step reached
           coalesce(r3.t, r2.t, r1.t, r0.t) + interval 90 day <= (select max("timestamp") from log) as late
    from r0 left join r1 using (lead_id) left join r2 using (lead_id)
    left join r3 using (lead_id) left join r4 using (lead_id)
    where r0.p is not null
)
select product,
       count(*) filter (outcome = 1) as won, count(*) filter (outcome = 2) as lost,
       count(*) filter (outcome = 0 and not through and late) as stalled,
       count(*) filter (outcome = 0 and not (not through and late)) as open
from per_lead group by product order by product
"""
)

SNAPSHOT_SQL = (
    "with "
    + EVENTS
    + """,
per_lead as (
    select lead_id, bool_or(o = 4 or o = -1) as closed, min(ts) as first_seen, max(ts) as last_act,
           max(o) filter (where o between 0 and 3) as max_step,
           arg_max(o, pos) filter (where o between 0 and 3) as cur_o,
           arg_max(label, pos) filter (where o between 0 and 3) as stage,
           arg_max(amount, pos) filter (where amount is not null) as amount,
           arg_max(product, pos) filter (where product is not null) as product,
           arg_max(source, pos) filter (where source is not null) as source,
           arg_max(owner, pos) filter (where owner is not null) as owner
    from ev group by lead_id
),
open_leads as (select * from per_lead where not closed and cur_o is not null),
steps as (select e.lead_id, e.o, e.ts, e.pos, l.cur_o from ev e join open_leads l using (lead_id)
          where e.o between 0 and 3),
other as (select lead_id, coalesce(max(pos) filter (where o != cur_o), 0) as last_other
          from steps group by lead_id),
entered as (select s.lead_id, min(s.ts) as entered from steps s join other using (lead_id)
            where s.pos > other.last_other group by s.lead_id)
select l.lead_id, l.stage, e.entered as entered_stage_at,
       (epoch_ns(t.t_end) - epoch_ns(e.entered))::double / 86400e9 as days_in_stage,
       l.first_seen as first_seen_at,
       (epoch_ns(t.t_end) - epoch_ns(l.first_seen))::double / 86400e9 as age_days,
       l.amount, l.product, l.source, l.owner, l.last_act as last_activity_at,
       case when l.cur_o < l.max_step then 'moved_back' else '' end as flag
from open_leads l join entered e using (lead_id), (select max("timestamp") as t_end from log) t
"""
)

DURATIONS_SQL = (
    "with "
    + EVENTS
    + """,
marked as (
    select *, case when label is distinct from lag(label) over w then 1 else 0 end as new_run
    from ev window w as (partition by lead_id order by pos)
),
numbered as (
    select *, sum(new_run) over (partition by lead_id order by pos rows unbounded preceding) as run_id
    from marked
),
runs as (select lead_id, run_id, arg_min(label, pos) as label, arg_min(o, pos) as o,
                arg_min(ts, pos) as entered
         from numbered group by lead_id, run_id),
visits as (
    select lead_id, label, o, run_id, entered,
           lead(entered) over (partition by lead_id order by run_id) as left_at,
           lead(label) over (partition by lead_id order by run_id) as left_to
    from runs
),
v as (
    select *, (epoch_ns(coalesce(left_at, (select max("timestamp") from log))) - epoch_ns(entered))::double
              / 86400e9 as days,
           row_number() over (partition by lead_id, label order by run_id desc) as from_last
    from visits where o between 0 and 3
),
agg as (select lead_id, label, count(*) as visits, min(entered) as first_entered_at, sum(days) as cumulative_days
        from v group by lead_id, label),
outcome as (select lead_id, coalesce(arg_max(case when o = 4 then 'won' else 'lost' end, pos)
                                     filter (where o = 4 or o = -1), 'open') as outcome,
                   arg_max(product, pos) filter (where product is not null) as product,
                   arg_max(source, pos) filter (where source is not null) as source,
                   arg_max(owner, pos) filter (where owner is not null) as owner
            from ev group by lead_id)
select a.lead_id, a.label as stage, a.visits, a.first_entered_at, v.left_at as last_left_at,
       v.days as latest_days, a.cumulative_days, v.left_at is null as censored, v.left_to, o.outcome,
       o.product, o.source, o.owner
from agg a join v on v.lead_id = a.lead_id and v.label = a.label and v.from_last = 1
join outcome o on o.lead_id = a.lead_id
"""
)

CHDB_SQL = """
select product, level, count() as n from (
    select lead_id, any(product) as product,
           windowFunnel({w})(toDateTime(timestamp), stage = 'qualification',
                             stage in ('meeting', 'proposal', 'close', 'won'),
                             stage in ('proposal', 'close', 'won'), stage in ('close', 'won'),
                             stage = 'won') as level
    from file('{path}', Parquet) group by lead_id
) group by product, level order by product, level
"""


# ---------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------
def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_pss_kib() -> int:
    import psutil

    me = psutil.Process()
    pids = [me.pid]
    try:
        pids += [c.pid for c in me.children(recursive=True)]
    except psutil.Error:
        pass
    return sum(_pss_kib(p) for p in pids)


def _release_free_memory() -> None:
    """Give memory freed by earlier runs back to the system (glibc and Arrow keep it), so
    that a run's allocations show in its PSS instead of reusing pages already counted."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_mib(fn) -> tuple[object, float]:
    """Run ``fn``; return its result and the peak PSS of this process tree above the start (MiB)."""
    _release_free_memory()
    base = _tree_pss_kib()
    peak = [base]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_pss_kib())
            done.wait(0.01)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    try:
        out = fn()
    finally:
        done.set()
        th.join()
    peak[0] = max(peak[0], _tree_pss_kib())
    return out, (peak[0] - base) / 1024


def timed(fn, repeat: int) -> tuple[object, list[float]]:
    out, times = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, times


# ---------------------------------------------------------------------------
# the reductions and their references
# ---------------------------------------------------------------------------
def _ns(s: pd.Series) -> np.ndarray:
    return pd.to_datetime(s).to_numpy(dtype="datetime64[ns]").view(np.int64)


def check_funnel(out: pd.DataFrame, duck: pd.DataFrame) -> bool:
    a = out.assign(product=out["product"].astype(str), step=out["step"].astype(str))
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
    return a.equals(b)


def check_outcomes(out: pd.DataFrame, duck: pd.DataFrame) -> bool:
    a = out.assign(product=out["product"].astype(str)).set_index("product")[
        ["won", "lost", "stalled", "open"]
    ]
    b = duck.set_index("product")[["won", "lost", "stalled", "open"]].astype("int64")
    return a.sort_index().equals(b.sort_index())


def check_snapshot(out: pd.DataFrame, duck: pd.DataFrame) -> bool:
    a = out.sort_values("lead_id").reset_index(drop=True)
    b = duck.sort_values("lead_id").reset_index(drop=True)
    if len(a) != len(b):
        return False
    ok = (a["lead_id"].astype(str).to_numpy() == b["lead_id"].astype(str).to_numpy()).all()
    for col in ("stage", "product", "source", "owner", "flag"):
        ok &= (a[col].astype(str).to_numpy() == b[col].astype(str).to_numpy()).all()
    for col in ("entered_stage_at", "first_seen_at", "last_activity_at"):
        ok &= (_ns(a[col]) == _ns(b[col])).all()
    for col in ("days_in_stage", "age_days", "amount"):
        ok &= np.array_equal(a[col].to_numpy(float), b[col].to_numpy(float), equal_nan=True)
    return bool(ok)


def check_durations(out: pd.DataFrame, duck: pd.DataFrame) -> bool:
    key = ["lead_id", "stage"]
    a = out.assign(stage=out["stage"].astype(str)).sort_values(key).reset_index(drop=True)
    b = duck.assign(stage=duck["stage"].astype(str)).sort_values(key).reset_index(drop=True)
    if len(a) != len(b):
        return False
    ok = (a["lead_id"].astype(str).to_numpy() == b["lead_id"].astype(str).to_numpy()).all()
    for col in ("stage", "outcome", "product", "source", "owner"):
        ok &= (a[col].astype(str).to_numpy() == b[col].astype(str).to_numpy()).all()
    ok &= (
        a["left_to"].astype(object).fillna("").astype(str).to_numpy()
        == b["left_to"].astype(object).fillna("").astype(str).to_numpy()
    ).all()
    ok &= (a["visits"].to_numpy() == b["visits"].to_numpy()).all()
    ok &= (a["censored"].to_numpy(bool) == b["censored"].to_numpy(bool)).all()
    ok &= (_ns(a["first_entered_at"]) == _ns(b["first_entered_at"])).all()
    ok &= (_ns(a["last_left_at"]) == _ns(b["last_left_at"])).all()
    for col in ("latest_days", "cumulative_days"):
        ok &= np.array_equal(a[col].to_numpy(float), b[col].to_numpy(float), equal_nan=True)
    return bool(ok)


# stale leads with given thresholds (days per stage): the snapshot's open leads past them
STALE_DAYS = {"qualification": 20, "meeting": 15, "proposal": 30, "close": 20}
STALE_SQL = (
    "select s.lead_id, s.stage, s.owner, s.days_in_stage, s.days_in_stage - t.th as days_overdue, s.amount "
    "from ("
    + SNAPSHOT_SQL
    + ") s join (values "
    + ", ".join(f"('{k}', {float(v)!r})" for k, v in STALE_DAYS.items())
    + ") t(stage, th) using (stage) where s.days_in_stage > t.th"
)

# movement between two dates (the waterfall by product): the state of each lead at each date
MOVE_START, MOVE_END = "2025-06-30", "2025-08-31"  # ends of days: events before the next midnight
MOVEMENT_SQL = (
    "with "
    + EVENTS
    + f""",
sa as (select lead_id, bool_or(o = 4 or o = -1) as closed,
              arg_max(o, pos) filter (where o between 0 and 3) as o_cur,
              arg_max(amount, pos) filter (where amount is not null) as amount
       from ev where ts < date '{MOVE_START}' + interval 1 day group by lead_id),
sb as (select lead_id, arg_max(case when o = 4 then 'won' else 'lost' end, pos) filter (where o = 4 or o = -1)
                  as outcome,
              arg_max(o, pos) filter (where o between 0 and 3) as o_cur,
              arg_max(amount, pos) filter (where amount is not null) as amount,
              arg_max(product, pos) filter (where product is not null) as product
       from ev where ts < date '{MOVE_END}' + interval 1 day group by lead_id),
m as (
    select sb.product,
           case when sa.lead_id is null then coalesce('entered_' || sb.outcome, 'entered')
                when sb.outcome is not null then sb.outcome
                when sb.o_cur > sa.o_cur then 'advanced'
                when sb.o_cur < sa.o_cur then 'moved_back'
                else 'stayed' end as movement,
           coalesce(sa.amount, 0) as a_amt, coalesce(sb.amount, 0) as b_amt
    from sb left join sa using (lead_id)
    where sa.lead_id is null or not sa.closed
)
select product, movement, count(*) as n, sum(a_amt) as a_amt, sum(b_amt) as b_amt
from m group by all order by all
"""
)

# the transition model's stays (one per run of a stage up to the first outcome), their counts
# by (product, from_stage, to_stage) and exposures (days at risk) per (product, stage)
STAYS_SQL = (
    "with "
    + EVENTS
    + """,
per_lead as (select lead_id, min(pos) filter (where o = 4 or o = -1) as p_out,
                    arg_max(product, pos) filter (where product is not null) as product
             from ev group by lead_id),
kept as (select e.lead_id, e.label, e.o, e.ts, e.pos, l.product from ev e join per_lead l using (lead_id)
         where l.p_out is null or e.pos <= l.p_out),
marked as (select *, label is distinct from lag(label) over (partition by lead_id order by pos) as new_run
           from kept),
runs as (select lead_id, product, label, o, ts, pos from marked where new_run),
stays as (
    select lead_id, product, label as stage, o, ts as entered_at, coalesce(lead(label) over w, 'open') as to_stage,
           (epoch_ns(coalesce(lead(ts) over w, (select max("timestamp") from log))) - epoch_ns(ts))::double
           / 86400e9 as days
    from runs window w as (partition by lead_id order by pos)
)
select lead_id, product, stage, entered_at, to_stage, days from stays where o between 0 and 3
"""
)


def transitions_sql(con) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The stays, their counts and the exposures per stage, in DuckDB."""
    con.execute("create or replace temp table stays_t as " + STAYS_SQL)
    stays = con.execute("select * from stays_t").df()
    counts = con.execute(
        "select product, stage as from_stage, to_stage, count(*) as n from stays_t group by all"
    ).df()
    exposure = con.execute("select product, stage, sum(days) as days from stays_t group by all").df()
    return stays, counts, exposure


def check_stale(out: pd.DataFrame, duck: pd.DataFrame) -> bool:
    a = out.sort_values("lead_id").reset_index(drop=True)
    b = duck.sort_values("lead_id").reset_index(drop=True)
    if len(a) != len(b):
        return False
    ok = True
    for col in ("lead_id", "stage", "owner"):
        ok &= (a[col].astype(str).to_numpy() == b[col].astype(str).to_numpy()).all()
    for col in ("days_in_stage", "days_overdue", "amount"):
        ok &= np.array_equal(a[col].to_numpy(float), b[col].to_numpy(float), equal_nan=True)
    return bool(ok)


WATERFALL = {  # row: (movements it counts, amount column)
    "start": (("stayed", "advanced", "moved_back", "won", "lost"), "a_amt"),
    "entered": (("entered", "entered_won", "entered_lost"), "b_amt"),
    "won": (("won", "entered_won"), "b_amt"),
    "lost": (("lost", "entered_lost"), "b_amt"),
    "end": (("stayed", "advanced", "moved_back", "entered"), "b_amt"),
    "advanced": (("advanced",), "b_amt"),
    "moved_back": (("moved_back",), "b_amt"),
    "stayed": (("stayed",), "b_amt"),
}


def check_movement(out: pd.DataFrame, duck: pd.DataFrame) -> bool:
    """The waterfall's leads and values (whole amounts: exact sums) per product."""
    rows = []
    for product, g in duck.groupby("product"):
        g = g.set_index("movement")
        for name, (mvs, col) in WATERFALL.items():
            sel = g[["n", "a_amt", "b_amt"]].reindex(list(mvs)).fillna(0)
            rows.append((product, name, int(sel["n"].sum()), float(sel[col].sum())))
        start = g[["n", "a_amt", "b_amt"]].reindex(list(WATERFALL["start"][0])).fillna(0)
        rows.append((product, "value_change", 0, float(start["b_amt"].sum() - start["a_amt"].sum())))
    b = pd.DataFrame(rows, columns=["product", "movement", "leads", "value"]).set_index(["product", "movement"])
    a = out.assign(product=out["product"].astype(str), movement=out["movement"].astype(str))
    a = a.set_index(["product", "movement"])[["leads", "value"]]
    return a.sort_index().astype({"leads": "int64", "value": float}).equals(b.sort_index())


def check_transitions(model, duck) -> bool:
    """Every stay (lead, product, stage, entry, destination, days), the counts exactly, and the
    exposures (sum of days per product and stage) to 1e-12 (sums in another order)."""
    stays, counts, exposure = duck
    key = ["lead_id", "entered_at", "stage"]
    a = model.stays_.astype({"lead_id": str, "product": str, "stage": str, "to_stage": str})
    a = a.sort_values(key, kind="stable").reset_index(drop=True)
    b = stays.astype({"lead_id": str, "product": str, "stage": str, "to_stage": str})
    b = b.sort_values(key, kind="stable").reset_index(drop=True)
    if len(a) != len(b):
        return False
    ok = True
    for col in ("lead_id", "product", "stage", "to_stage"):
        ok &= (a[col].to_numpy() == b[col].to_numpy()).all()
    ok &= (_ns(a["entered_at"]) == _ns(b["entered_at"])).all()
    ok &= np.array_equal(a["days"].to_numpy(float), b["days"].to_numpy(float), equal_nan=True)
    c = model.counts_.astype({"product": str, "from_stage": str, "to_stage": str})
    c = c.set_index(["product", "from_stage", "to_stage"])["n"].sort_index()
    d = counts.set_index(["product", "from_stage", "to_stage"])["n"].astype("int64").sort_index()
    ok &= c.equals(d)
    e = model.stays_.groupby([model.stays_["product"].astype(str), model.stays_["stage"].astype(str)])["days"].sum()
    f = exposure.set_index(["product", "stage"])["days"].reindex(e.index)
    ok &= bool(np.allclose(e.to_numpy(), f.to_numpy(), rtol=1e-12, atol=0))
    return bool(ok)


def same_model(a, b) -> bool:
    """Two fitted transition models are the same: stays, counts, notes, estimate, posterior."""
    return bool(
        a.stays_.equals(b.stays_)
        and a.counts_.equals(b.counts_)
        and a.notes_ == b.notes_
        and a.groups_.equals(b.groups_)
        and a.win_probability().equals(b.win_probability())
        and np.array_equal(a._mass_samples, b._mass_samples)
    )


N_SAMPLES = 200


def fit_one_core(log, **kw):
    return TransitionModel(n_samples=N_SAMPLES).fit(log, **kw)


def fit_parallel(log, **kw):
    return parallel.fit_transitions(log, n_samples=N_SAMPLES, **kw)


fit_one_core.__module__ = "funnelkit.transitions"
fit_one_core.__name__ = f"TransitionModel(n_samples={N_SAMPLES}).fit"


REDUCTIONS = {
    # name: (one-core function, parallel function, kwargs, SQL, check, columns used)
    "funnel": (
        fk.funnel.conversion,
        parallel.conversion,
        {"by": "product", "window": "30D"},
        FUNNEL_SQL.format(w=30),
        check_funnel,
        ["lead_id", "stage", "timestamp", "amount", "product"],
    ),
    "outcomes": (
        fk.funnel.outcomes,
        parallel.outcomes,
        {"by": "product"},
        OUTCOMES_SQL,
        check_outcomes,
        ["lead_id", "stage", "timestamp", "amount", "product"],
    ),
    "snapshot": (
        fk.pipeline.snapshot,
        parallel.snapshot,
        {},
        SNAPSHOT_SQL,
        check_snapshot,
        ["lead_id", "stage", "timestamp", "amount", "product", "source", "owner"],
    ),
    "durations": (
        fk.pipeline.durations,
        parallel.durations,
        {},
        DURATIONS_SQL,
        check_durations,
        ["lead_id", "stage", "timestamp", "amount", "product", "source", "owner"],
    ),
    "stale": (
        fk.pipeline.stale,
        parallel.stale,
        {"thresholds": STALE_DAYS},
        STALE_SQL,
        check_stale,
        ["lead_id", "stage", "timestamp", "amount", "product", "source", "owner"],
    ),
    "movement": (
        fk.pipeline.movement,
        parallel.movement,
        {"start": MOVE_START, "end": MOVE_END, "by": "product"},
        MOVEMENT_SQL,
        check_movement,
        ["lead_id", "stage", "timestamp", "amount", "product"],
    ),
    "transitions": (
        fit_one_core,
        fit_parallel,
        {"by": "product"},
        transitions_sql,
        check_transitions,
        ["lead_id", "stage", "timestamp", "product"],
    ),
}
#: How a parallel result is compared with the one-core result (default: DataFrame.equals and attrs).
SAME = {"transitions": same_model}


def chdb_funnel(log: pd.DataFrame, tmp: Path, window_days: int, repeat: int):
    try:
        import chdb
    except ImportError:
        return None
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "events.parquet"
    if not path.exists():
        frame = log.copy(deep=False)
        frame.attrs = {}
        frame.to_parquet(path)
    sql = CHDB_SQL.format(w=window_days * 86400, path=path)
    return timed(lambda: chdb.query(sql, "DataFrame"), repeat)


def run_size(n: int, args, writer, tmp: Path) -> None:
    import duckdb

    t = time.perf_counter()
    log = fk.datasets.make_events(n, seed=1)
    print(
        f"\n=== {n:,} leads: {len(log):,} events, generated in {time.perf_counter() - t:.0f} s ===",
        flush=True,
    )
    con = duckdb.connect()
    con.register("log", log)
    threads = con.execute("select current_setting('threads')").fetchone()[0]
    repeat = args.repeat if args.repeat else (3 if n <= 1_000_000 else 2)
    for name in args.reductions:
        one, par, kw, sql, check, cols = REDUCTIONS[name]
        kw = {"stages": "pipeline4", **kw}
        col_mib = log[cols].memory_usage(deep=True, index=False).sum() / 2**20
        run_one = partial(one, log, **kw)
        run_par = partial(par, log, n_jobs=args.jobs, **kw)
        run_duck = partial(_duck, con, sql)
        a, t_one = timed(run_one, repeat)
        b, t_par = timed(run_par, repeat)
        engine = parallel.last_run.get("engine")
        if engine in ("processes", "threads"):
            # the memory sampler is a thread, and the auto engine forks only a
            # single-threaded process: measure the engine the timed runs used
            run_par = partial(par, log, n_jobs=args.jobs, engine=engine, **kw)
        same_par = SAME[name](a, b) if name in SAME else a.equals(b) and str(a.attrs) == str(b.attrs)
        d, t_duck = timed(run_duck, repeat)
        same_duck = check(b, d)
        mem = {}
        if not args.no_memory:
            for label, fn in (("one core", run_one), ("parallel", run_par), ("duckdb", run_duck)):
                mem[label] = peak_mib(fn)[1]
        duck_med = statistics.median(t_duck)
        rows = [
            ("funnelkit one core", t_one, mem.get("one core"), same_duck),
            (
                f"funnelkit parallel ({engine}, n_jobs={args.jobs})",
                t_par,
                mem.get("parallel"),
                same_par and same_duck,
            ),
            (f"DuckDB SQL ({threads} threads)", t_duck, mem.get("duckdb"), same_duck),
        ]
        if name == "funnel" and not args.no_chdb:
            ch = chdb_funnel(log, tmp, 30, repeat)
            if ch is not None:
                rows.append(("ClickHouse windowFunnel (chdb, from Parquet)", ch[1], None, None))
        print(
            f"\n{name}: {one.__module__.split('.')[-1]}.{one.__name__}(log, {kw}); columns used "
            f"{col_mib:,.0f} MiB; parallel == one core: {same_par}; DuckDB rows identical: {same_duck}"
        )
        for label, times, mib, same in rows:
            med = statistics.median(times)
            ratio = med / duck_med
            mem_txt = "" if mib is None else f"  peak {mib:7,.0f} MiB ({mib / col_mib:4.2f}x columns)"
            print(
                f"  {label:48s} median {med:7.3f} s  min {min(times):7.3f} s  {ratio:5.2f}x DuckDB{mem_txt}"
            )
            writer.writerow(
                {
                    "leads": n,
                    "events": len(log),
                    "reduction": name,
                    "engine": label,
                    "median_s": round(med, 4),
                    "min_s": round(min(times), 4),
                    "runs": len(times),
                    "ratio_vs_duckdb": round(ratio, 3),
                    "peak_mib": None if mib is None else round(mib, 1),
                    "columns_mib": round(col_mib, 1),
                    "peak_over_columns": None if mib is None else round(mib / col_mib, 2),
                    "identical": same,
                }
            )
        if name == "funnel" and not args.no_chdb and len(rows) > 3:
            print(f"  ({CHDB_NOTE})")
    con.close()


def _duck(con, sql):
    if callable(sql):
        return sql(con)
    return con.execute(sql).df()


# ---------------------------------------------------------------------------
# Dask from lead-partitioned Parquet
# ---------------------------------------------------------------------------
AS_OF = pd.Timestamp("2025-09-30 23:59:59")
COUNTS = ["entered", "converted", "in_flight", "matured", "matured_converted"]


def write_lake(n: int, root: Path) -> tuple[Path, pd.DataFrame]:
    """n leads as lead-partitioned Parquet, written 1M leads at a time, and the sum of the
    pieces' own funnel counts."""
    path = root / f"lake_{n}"
    parts_csv = path / "sum_of_parts.csv"
    if parts_csv.exists():
        return path, pd.read_csv(parts_csv, index_col=[0, 1])
    piece_leads = min(n, 1_000_000)
    n_pieces = n // piece_leads
    sums = []

    def pieces():
        for i in range(n_pieces):
            t = time.perf_counter()
            log = fk.datasets.make_events(piece_leads, seed=100 + i)
            log["lead_id"] = f"P{i:03d}-" + log["lead_id"].astype(str)
            f = fk.funnel.conversion(log, stages="pipeline4", by="product", window="30D", as_of=AS_OF)
            sums.append(
                f.assign(product=f["product"].astype(str), step=f["step"].astype(str))
                .set_index(["product", "step"])[COUNTS]
                .fillna(0)
                .astype("int64")
            )
            print(
                f"  piece {i + 1}/{n_pieces}: {len(log):,} events ({time.perf_counter() - t:.0f} s)",
                flush=True,
            )
            yield log

    events = int(n * 2.85)
    n_parts = max(2, round(events / 2_500_000))
    parallel.write_partitioned(pieces(), path, n_parts)
    total = sum(sums[1:], sums[0])
    total.to_csv(parts_csv)
    return path, total


def run_dask(sizes, args, writer, tmp: Path) -> None:
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    root = Path(args.lake)
    root.mkdir(parents=True, exist_ok=True)
    kw = {"stages": "pipeline4", "by": "product", "window": "30D", "as_of": AS_OF}
    for n in sizes:
        print(f"\n=== Dask: {n:,} leads from lead-partitioned Parquet ===", flush=True)
        t = time.perf_counter()
        path, expected = write_lake(n, root)
        print(f"  lake ready in {time.perf_counter() - t:.0f} s: {path}")
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, memory_limit="4GiB", dashboard_address=None
            ) as cluster,
            Client(cluster),
        ):
            ddf = dd.read_parquet(path, split_row_groups=False)
            events = int(ddf.map_partitions(len).sum().compute())
            run = partial(parallel.conversion, ddf, **kw)
            out, times = timed(run, 1 if n > 5_000_000 else 2)
            _, mib = peak_mib(run) if not args.no_memory else (None, None)
        got = (
            out.assign(product=out["product"].astype(str), step=out["step"].astype(str))
            .set_index(["product", "step"])[COUNTS]
            .fillna(0)
            .astype("int64")
        )
        same = got.sort_index().equals(expected.sort_index())
        med = statistics.median(times)
        print(
            f"  funnel on Dask ({ddf.npartitions} partitions, {events:,} events): median {med:.2f} s "
            f"({med / n * 1e6:.2f} s per million leads); peak PSS of the cluster and client "
            f"{'n/a' if mib is None else f'{mib:,.0f} MiB'}; counts equal the sum of the pieces: {same}"
        )
        writer.writerow(
            {
                "leads": n,
                "events": events,
                "reduction": "funnel",
                "engine": "funnelkit on Dask (2 workers x 4 GiB)",
                "median_s": round(med, 4),
                "min_s": round(min(times), 4),
                "runs": len(times),
                "ratio_vs_duckdb": None,
                "peak_mib": None if mib is None else round(mib, 1),
                "columns_mib": None,
                "peak_over_columns": None,
                "identical": same,
            }
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 5_000_000])
    ap.add_argument("--reductions", nargs="*", default=list(REDUCTIONS), choices=list(REDUCTIONS))
    ap.add_argument("--repeat", type=int, default=0, help="runs per figure (default 3 at 1M, 2 above)")
    ap.add_argument("--jobs", type=int, default=-1, help="workers of funnelkit.parallel")
    ap.add_argument("--dask", type=int, nargs="*", default=[], help="lead counts to run on Dask")
    ap.add_argument("--lake", default="/tmp/funnelkit-bench-lake", help="where the Parquet lakes go")
    ap.add_argument("--csv", default=str(Path(__file__).with_suffix(".csv")))
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-chdb", action="store_true")
    ap.add_argument(
        "--run",
        help="label of this run: its rows are appended to --csv with this label in the 'run' column "
        "(default: the CSV is rewritten without labels)",
    )
    args = ap.parse_args(argv)
    import tempfile

    import duckdb

    print(
        f"machine: {os.cpu_count()} cores; numpy {np.__version__}, pandas {pd.__version__}, "
        f"duckdb {duckdb.__version__}; load average {os.getloadavg()[0]:.1f} at start"
    )
    fields = [
        "leads",
        "events",
        "reduction",
        "engine",
        "median_s",
        "min_s",
        "runs",
        "ratio_vs_duckdb",
        "peak_mib",
        "columns_mib",
        "peak_over_columns",
        "identical",
    ]
    append = bool(args.run) and Path(args.csv).exists()
    if args.run:
        fields.append("run")
    with open(args.csv, "a" if append else "w", newline="") as fh, tempfile.TemporaryDirectory() as tmp:
        writer = csv.DictWriter(fh, fieldnames=fields)
        if args.run:
            row = writer.writerow
            writer.writerow = lambda r: row({**r, "run": args.run})
        if not append:
            writer.writeheader()
        for n in args.sizes:
            run_size(n, args, writer, Path(tmp) / str(n))
            fh.flush()
        if args.dask:
            run_dask(args.dask, args, writer, Path(tmp))
    print(f"\nfigures written to {args.csv}; load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
