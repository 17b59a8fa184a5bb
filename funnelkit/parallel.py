"""Every core of one machine, and a Dask cluster beyond it: the same answers.

The funnel and pipeline reductions of :mod:`funnelkit.funnel` and
:mod:`funnelkit.pipeline` are computed from *lead-partitioned chunks*: the
log is split so that every lead has all its events in one chunk, each chunk
is reduced on its own (on another core, or on a Dask worker), and the
partial results are added up.  The results are those of the one-core
functions, cell for cell:

* funnel counts per (segment, step) are sums over leads, so they add up
  exactly; rates and intervals are recomputed from the summed counts with the
  same code (``funnel._funnel_table``, :mod:`funnelkit.stats`);
* the as-of moment (the log's last event by default) and the *learned
  horizon* are global: a first pass collects from each chunk the exact
  histogram of each step's time to move on (distinct durations, counts by
  kind), the Aalen-Johansen quantile is computed once for the whole log, and
  the second pass runs the chunks with that horizon fixed;
* per-lead tables (:func:`snapshot`, :func:`durations`) are the rows of each
  chunk put back in the one-core order;
* :func:`stale` and :func:`movement` are made of those per-lead tables (the
  visits of every lead for the learned thresholds, a snapshot, or the
  snapshots at both dates), and finished by the one-core code on the
  combined tables, so their lists and sums are those of one core;
* :func:`fit_transitions` (the stage-transition model) collects from each
  chunk its leads' *stay events* (the events known at as_of, cut at the first
  outcome, one per run of a stage) and their latest segment and value, puts
  them one after the other in the one-core order and lets the one-core code
  make the stays, the calendar, the transition and exposure cells and the
  estimate from them: the same model, posterior samples included.

Amounts are summed in floating point: exactly the one-core sums for whole
amounts (deal values in currency units), possibly different in the last bit
for fractional amounts (the order of additions differs).

Engines
-------
``engine="auto"`` (default) runs a Dask DataFrame on Dask (the current
``dask.distributed`` client if there is one).  An in-memory log large enough
to gain (``MIN_PARALLEL_ROWS`` events) runs the funnel reductions on
``n_jobs`` worker processes (forked, so the log is shared, not copied; only
the small partial results travel back; threads instead when this process
runs other threads, as a Jupyter kernel does, since a forked copy of it could
wait forever for a lock one of them held); the per-lead tables
(:func:`snapshot`, :func:`durations`) and a smaller log run the one-core
function, whose lean code beats splitting an in-memory log.  ``"processes"``, ``"threads"`` (numpy releases the
GIL for most of the work, pandas' string hashing does not), ``"serial"``
(chunk by chunk in this process: the lowest peak memory) and ``"dask"`` can
be asked for.

Splitting an in-memory log: a log sorted by lead id (canonical logs of
generated or exported data usually are; checked in O(n) with Arrow) is cut
into contiguous ranges at lead boundaries, which copies nothing; any other
log is split by a hash of the lead id (:func:`lead_partition`).

A Dask DataFrame must be *lead-partitioned*: every lead in one partition.
:func:`write_partitioned` writes a log that way (one Parquet file per hash
bucket), so ``dd.read_parquet(path)`` needs no shuffle.  Other frames are
checked (each partition's leads must fall in one hash bucket, a different
one per partition) and shuffled by lead when the check fails, with a
:class:`~funnelkit.exceptions.DataWarning`.

On a cluster (``pip install "funnelkit[dask]"``)::

    from distributed import Client
    import dask.dataframe as dd
    from funnelkit import parallel

    parallel.write_partitioned(log, "s3://lake/events/", 64)  # once: lead-partitioned Parquet
    client = Client("tcp://scheduler:8786")                     # or LocalCluster() on one machine
    events = dd.read_parquet("s3://lake/events/")               # one partition per file
    parallel.conversion(events, stages="pipeline4", by="product", window=30)  # a pandas DataFrame

Examples
--------
>>> import funnelkit as fk
>>> from funnelkit import parallel
>>> log = fk.datasets.load_demo()
>>> a = parallel.conversion(log, by="product", window=30, n_chunks=4, engine="serial")
>>> a.equals(fk.funnel.conversion(log, by="product", window=30))
True
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import _kernels as K
from . import funnel, pipeline
from ._common import DAY_NS, as_list, parse_as_of, require_columns
from .data import AMOUNT, LEAD, STAGE, TIME
from .exceptions import DataWarning, FunnelkitError, FunnelSpecError, PipelineError
from .stages import StageSet

__all__ = [
    "ENGINES",
    "conversion",
    "cohorts",
    "outcomes",
    "snapshot",
    "durations",
    "stale",
    "movement_leads",
    "movement",
    "fit_transitions",
    "write_partitioned",
    "lead_partition",
    "lead_hash",
]

#: The engines understood by ``engine=``.
ENGINES = ("auto", "serial", "threads", "processes", "dask")
#: Below this many events the one-core function is called directly (auto engine).
MIN_PARALLEL_ROWS = 200_000
#: Events per chunk of an in-memory log (at least one chunk per worker).  Small
#: chunks keep a worker's arrays in cache and its peak memory low: at 5M leads
#: (14M events) 250k-event chunks peaked at 0.8x the bytes of the columns used,
#: 1M-event chunks at 1.4x, in about the same time.
CHUNK_ROWS = 250_000

lead_hash = K.lead_hash


def lead_partition(values, n_partitions: int) -> np.ndarray:
    """The partition (0 .. n_partitions-1) of each lead id: a stable hash modulo n.

    The hash depends on the id only (its UTF-8 bytes for text, its value for
    integers), never on the process or the container, so the same lead goes
    to the same partition in pandas, Arrow and Dask.

    Examples
    --------
    >>> p = lead_partition(["L1", "L2", "L1"], 4)
    >>> bool(p[0] == p[2] == lead_partition(["L1"], 4)[0]), bool(((p >= 0) & (p < 4)).all())
    (True, True)
    """
    return K.lead_bucket(values, n_partitions)


# ---------------------------------------------------------------------------
# chunk sources and engines
# ---------------------------------------------------------------------------
def _is_dask(obj) -> bool:
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(obj, "to_delayed")


def _n_jobs(n_jobs: int | None) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    if n_jobs is None or n_jobs == 0:
        return 1
    if n_jobs < 0:
        return max(cpus + 1 + n_jobs, 1)
    return int(n_jobs)


def _sorted_by_lead(col: pd.Series) -> bool:
    """Is the lead column non-decreasing (so its leads are contiguous)?  O(n), in Arrow."""
    arr = col.array
    if hasattr(arr, "_pa_array"):
        import pyarrow.compute as pc

        a = arr._pa_array
        if len(a) < 2:
            return True
        if a.null_count:
            return False
        try:
            return bool(pc.all(pc.less_equal(a[:-1], a[1:])).as_py())
        except Exception:
            return False
    if isinstance(col.dtype, pd.CategoricalDtype):
        return False
    values = col.to_numpy()
    if values.dtype.kind in "iuf":
        return bool(values.size < 2 or (values[1:] >= values[:-1]).all())
    try:
        return bool(col.is_monotonic_increasing)
    except TypeError:
        return False


class _FrameChunks:
    """An in-memory log split into lead-partitioned chunks."""

    def __init__(self, log: pd.DataFrame, lead: str, n_chunks: int):
        self.log = log
        self.lead = lead
        n = len(log)
        n_chunks = max(min(int(n_chunks), max(n, 1)), 1)
        self.rows: list[np.ndarray] | None = None
        col = log[lead]
        if _sorted_by_lead(col):
            self.kind = "contiguous"
            values = col.array
            cuts = [0]
            for i in range(1, n_chunks):
                p = max(i * n // n_chunks, cuts[-1] + 1)
                while 0 < p < n and values[p] == values[p - 1]:
                    p += 1
                if p < n:
                    cuts.append(p)
            cuts.append(n)
            self.bounds = [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        else:
            self.kind = "hashed"
            bucket = K.lead_bucket(col, n_chunks)
            order = np.argsort(bucket, kind="stable")
            counts = np.bincount(bucket, minlength=n_chunks)
            edges = np.r_[0, np.cumsum(counts)]
            self.rows = [order[a:b] for a, b in zip(edges[:-1], edges[1:]) if b > a]
            self.bounds = [(0, 0)] * len(self.rows)

    def __len__(self) -> int:
        return len(self.bounds)

    def get(self, i: int, cols: list[str]) -> tuple[pd.DataFrame, dict]:
        """Chunk ``i`` (the columns ``cols``) and what its kernel needs to know about it."""
        info = {"index": i, "rows": None if self.rows is None else self.rows[i], "offset": self.bounds[i][0]}
        if self.rows is None:
            a, b = self.bounds[i]
            out = self.log.iloc[a:b][cols]
            out = _number_leads(out, self.lead, info)
        else:
            out = self.log[cols].take(self.rows[i])
        out.attrs = dict(self.log.attrs)
        return out, info


def _call(kernel, chunk, info, spec):
    return K._quiet(kernel, chunk, spec, info)


def _thread_call(kernel, src, i, cols, spec):
    K.THREAD.silenced = True  # the calling thread silences warnings for the pool
    try:
        return _run_get(kernel, src, i, cols, spec)
    finally:
        K.THREAD.silenced = False


def _run_get(kernel, src, i, cols, spec):
    chunk, info = src.get(i, cols)
    return kernel(chunk, spec, info)


_FORK: dict = {}
#: How the last call ran: "direct" (one-core function), "chunks" or "fallback"
#: (a chunk raised a funnelkit error; the one-core function raised it instead).
#: For tests and benchmarks.
last_run: dict = {}


def _fork_task(i: int):
    src, kernel, spec, cols = _FORK["job"]
    try:
        return ("ok", _call(kernel, *src.get(i, cols), spec))
    except FunnelkitError as exc:
        return ("error", f"{type(exc).__name__}: {exc}")


class _ChunkError(Exception):
    """A chunk raised a funnelkit error (the one-core function says it best)."""


def _map_frame(src: _FrameChunks, kernel, spec: dict, cols: list[str], engine: str, n_jobs: int) -> list:
    n = len(src)
    if engine == "serial" or n_jobs <= 1 or n <= 1:
        return [_call(kernel, *src.get(i, cols), spec) for i in range(n)]
    if engine == "threads":
        from concurrent.futures import ThreadPoolExecutor

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            with ThreadPoolExecutor(min(n_jobs, n)) as ex:
                return list(ex.map(lambda i: _thread_call(kernel, src, i, cols, spec), range(n)))
    import gc
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    _FORK["job"] = (src, kernel, spec, cols)
    # objects made so far are left alone by the children's garbage collector, so
    # that it does not write to (and so copy) the pages they share with this process
    gc.freeze()
    try:
        with ctx.Pool(min(n_jobs, n)) as pool:
            res = pool.map(_fork_task, range(n), chunksize=1)
    finally:
        gc.unfreeze()
        _FORK.pop("job", None)
    out = []
    for status, value in res:
        if status != "ok":
            raise _ChunkError(value)
        out.append(value)
    return out


def _run_starts(values) -> np.ndarray | None:
    """Where a new lead begins in an Arrow-backed lead column (None: not Arrow text)."""
    arr = values.array if isinstance(values, pd.Series) else values
    if not hasattr(arr, "_pa_array") or len(arr) == 0:
        return None
    import pyarrow.compute as pc

    pa_arr = arr._pa_array
    start = np.empty(len(arr), dtype=bool)
    start[0] = True
    if len(arr) > 1:
        start[1:] = pc.fill_null(pc.not_equal(pa_arr[1:], pa_arr[:-1]), True).to_numpy(zero_copy_only=False)
    return start


def _number_leads(chunk: pd.DataFrame, lead: str, info: dict) -> pd.DataFrame:
    """A lead-sorted chunk with its leads numbered 0, 1, ... instead of their text ids.

    Its leads are runs, so numbering them is cheaper than hashing their text
    again; the kernels see integer ids and the per-lead tables get the real
    ids back from ``info["lead_ids"]``.  Other chunks are returned as they are.
    """
    col = chunk[lead]
    start = _run_starts(col)
    if start is None or col.hasnans or not _sorted_by_lead(col):
        return chunk
    out = chunk.copy(deep=False)
    out[lead] = np.cumsum(start) - 1
    info["lead_ids"] = col.array.take(np.flatnonzero(start))
    return out


def _dask_task(part, kernel, spec, info):
    if kernel is not K.scan:
        part = _number_leads(part, spec["lead"], info)
    return K._quiet(kernel, part, spec, info)


class _DaskChunks:
    """A Dask DataFrame whose partitions are lead-partitioned chunks."""

    def __init__(self, ddf, lead: str):
        self.ddf = ddf
        self.lead = lead
        self.offsets = None  # first row of each partition, once scanned

    def __len__(self) -> int:
        return self.ddf.npartitions

    def map(self, kernel, spec: dict, cols: list[str]) -> list:
        import dask

        parts = self.ddf[cols].to_delayed(optimize_graph=True)
        offsets = self.offsets if self.offsets is not None else [0] * len(parts)
        tasks = [
            dask.delayed(_dask_task)(p, kernel, spec, {"index": i, "rows": None, "offset": offsets[i]})
            for i, p in enumerate(parts)
        ]
        return list(dask.compute(*tasks))


class _Run:
    """Where and how the chunks of one call run."""

    def __init__(
        self,
        log,
        *,
        lead: str,
        time: str,
        amount: str | None,
        n_jobs,
        engine: str,
        n_chunks,
        verify: bool = True,
        per_lead: bool = False,
    ):
        if engine not in ENGINES:
            raise FunnelSpecError(f"engine must be one of {', '.join(map(repr, ENGINES))}; got {engine!r}.")
        self.dask = _is_dask(log)
        self.n_jobs = _n_jobs(n_jobs)
        self.lead, self.time, self.amount = lead, time, amount
        self._exact = None
        if self.dask:
            if engine not in ("auto", "dask"):
                raise FunnelSpecError(f"a Dask DataFrame runs on engine='dask', not {engine!r}.")
            self.engine = "dask"
            require_columns(log._meta, [lead, time], "pass the right name (lead=, time=).")
            self.meta = log._meta
            self.src = _DaskChunks(log, lead)
            self._scan(verify)
            return
        if not isinstance(log, pd.DataFrame):
            raise TypeError(f"expected an event log DataFrame or a Dask DataFrame, got {type(log).__name__}.")
        self.meta = log
        if engine == "auto":
            # small partial results (funnel counts) travel cheaply from worker
            # processes; per-lead tables are as large as the log, so they stay in
            # this process and its threads
            # fork only a single-threaded process: a fork of a process with other
            # threads (a Jupyter kernel's, a Dask client's) can inherit a lock one of
            # them held and wait for it forever
            import threading

            fork = "fork" in __import__("multiprocessing").get_all_start_methods()
            fork = fork and threading.active_count() == 1
            engine = "processes" if fork and not per_lead else "threads"
            if self.n_jobs <= 1 and n_chunks is None:
                engine = "direct"
            elif len(log) < MIN_PARALLEL_ROWS and n_chunks is None:
                engine = "direct"
        if engine == "dask":
            raise FunnelSpecError(
                "engine='dask' needs a Dask DataFrame: write the log with "
                "funnelkit.parallel.write_partitioned(log, path, n) and pass dd.read_parquet(path)."
            )
        self.engine = engine
        if engine == "direct":
            return
        if n_chunks is None:
            per = max(math.ceil(len(log) / CHUNK_ROWS), 1)
            n_chunks = max(self.n_jobs, math.ceil(per / self.n_jobs) * self.n_jobs)
        require_columns(log, [lead, time], "pass the right name (lead=, time=).")
        self.src = _FrameChunks(log, lead, n_chunks)
        col = log[time]
        if not pd.api.types.is_datetime64_any_dtype(col.dtype) or getattr(col.dt, "tz", None) is not None:
            self.engine = "direct"  # the one-core function raises the right error
            return
        lo, hi = col.min(), col.max()
        self.lo = None if pd.isna(lo) else int(pd.Timestamp(lo).value)
        self.hi = None if pd.isna(hi) else int(pd.Timestamp(hi).value)

    def _scan(self, verify: bool) -> None:
        n = self.src.ddf.npartitions
        spec = {
            "time": self.time,
            "lead": self.lead,
            "n_buckets": n if verify else None,
            "amount": self.amount,
        }
        # amount=None (or a log without the column): the lead and the time only
        cols = [c for c in (self.lead, self.time, self.amount) if c and c in self.meta.columns]
        res = self.src.map(K.scan, spec, cols)
        self._exact = K.exact_sums(res)
        self.src.offsets = list(np.r_[0, np.cumsum([r["rows"] for r in res])[:-1]].astype(int))
        los = [r["min"] for r in res if r["min"] is not None]
        his = [r["max"] for r in res if r["max"] is not None]
        self.lo = min(los) if los else None
        self.hi = max(his) if his else None
        if not verify:
            return
        buckets = [r["bucket"] for r in res if r["rows"]]
        if all(b is not None and b >= 0 for b in buckets) and len(set(buckets)) == len(buckets):
            return
        warnings.warn(
            "the Dask DataFrame is not lead-partitioned (some lead may have events in two "
            "partitions), so it is shuffled by lead first; write it with "
            "funnelkit.parallel.write_partitioned() to skip the shuffle.",
            DataWarning,
            stacklevel=4,
        )
        self.src = _DaskChunks(self.src.ddf.shuffle(on=self.lead), self.lead)
        self.src.offsets = None

    def exact_sums(self) -> bool:
        """Are amount sums independent of the order of addition (whole amounts)?"""
        if self._exact is None:
            if self.amount and self.amount in self.meta.columns:
                self._exact = K.exact_sums(
                    [
                        K.scan(
                            self.meta[[self.amount, self.time, self.lead]],
                            {"time": self.time, "lead": self.lead, "amount": self.amount},
                        )
                    ]
                )
            else:
                self._exact = True
        return self._exact

    @property
    def direct(self) -> bool:
        return self.engine == "direct"

    @property
    def columns(self) -> list[str]:
        return list(self.meta.columns)

    def map(self, kernel, spec: dict, cols: list[str]) -> list:
        cols = [c for c in self.columns if c in set(cols)]
        if self.dask:
            return self.src.map(kernel, spec, cols)
        return _map_frame(self.src, kernel, spec, cols, self.engine, self.n_jobs)


def _columns(run: _Run, *names) -> list[str]:
    out = []
    for n in names:
        for c in as_list(n):
            if c and c in run.columns and c not in out:
                out.append(c)
    return out


# ---------------------------------------------------------------------------
# funnel reductions
# ---------------------------------------------------------------------------
def _as_of_ns(as_of, run: _Run) -> int | None:
    if as_of is None:
        return None
    if isinstance(as_of, str) and as_of == "end":
        return K.INF if run.hi is None else run.hi
    return int(parse_as_of(as_of, name="as_of", error=FunnelSpecError).value)


def _per_segment_sets(log, kw: dict, one_core):
    """A stage set per segment (``stages={default: ..., column: {value: ...}}``) is run by
    the one-core function, which splits the log by set itself; None otherwise."""
    find = getattr(funnel, "_segment_sets", None)
    if find is None or find(kw.get("stages")) is None:
        return None
    if _is_dask(log):
        raise FunnelSpecError(
            "a stage set per segment is not supported on Dask yet: filter the Dask DataFrame to "
            "each segment and pass its stage set, or compute the log and use the one-core function."
        )
    last_run.clear()
    last_run.update(path="direct", engine="direct", n_chunks=0)
    return one_core(log, **kw)


def _funnel(what: str, log, kw: dict, *, n_jobs, engine, n_chunks, one_core):
    direct = _per_segment_sets(log, kw, one_core)
    if direct is not None:
        return direct
    run = _Run(
        log,
        lead=kw["lead"],
        time=kw["time"],
        amount=kw.get("amount"),
        n_jobs=n_jobs,
        engine=engine,
        n_chunks=n_chunks,
    )
    last_run.clear()
    last_run.update(
        path="direct" if run.direct else "chunks",
        engine=run.engine,
        n_chunks=0 if run.direct else len(run.src) if not run.dask else run.src.ddf.npartitions,
    )
    if run.direct:
        return one_core(log, **kw)
    try:
        return _funnel_run(what, run, kw)
    except (_ChunkError, FunnelkitError):
        last_run["path"] = "fallback"
        # the one-core function raises the same error naming the log's own rows
        if run.dask:
            raise
        return one_core(log, **kw)


def _funnel_run(what: str, run: _Run, kw: dict):
    ss: StageSet = funnel.resolve_stages(run.meta, kw.get("stages"))
    by = as_list(kw.get("by"))
    require_columns(
        run.meta,
        [kw["lead"], kw["stage"], kw["time"], *by],
        "pass the right name (lead=, stage=, time=, by=).",
    )
    steps = ss.steps
    m = len(steps)
    window = kw.get("window")
    step_windows = kw.get("step_windows")
    stale_after = kw.get("stale_after", "horizon")
    w = funnel._duration(window, "window")
    sw = funnel._parse_step_windows(step_windows, steps, ss)
    ruled = np.zeros(m, dtype=bool)
    if w is not None:
        ruled[:] = True
    ruled[:-1] |= sw[1:] >= 0
    per_step = None
    learn = False
    if isinstance(stale_after, Mapping):
        per_step = np.full(m, -1, dtype=np.int64)
        for key, val in stale_after.items():
            name = ss.canonical(key)
            if name is None or name not in steps[:-1]:
                raise FunnelSpecError(
                    f"stale_after: {key!r} is not a step a lead moves on from; keys are {', '.join(steps[:-1])}."
                )
            ns = funnel._duration(val, f"stale_after[{key!r}]")
            per_step[steps.index(name)] = -1 if ns is None else ns
        learn = bool((per_step[:-1] < 0).any())
    elif isinstance(stale_after, str) and stale_after in ("horizon", "learn"):
        learn = not (stale_after == "horizon" and ss.horizon_days is not None)
    as_of_ns = _as_of_ns(kw.get("as_of", "end"), run)
    amount = kw.get("amount")
    cols = _columns(run, kw["lead"], kw["stage"], kw["time"], by, amount)
    spec = {
        "what": what,
        "ss": ss,
        "by": by,
        "mode": kw.get("mode", "ordered"),
        "window": window,
        "step_windows": step_windows,
        "exclude": kw.get("exclude"),
        "infer_skipped": kw.get("infer_skipped"),
        "value": kw.get("value"),
        "lead": kw["lead"],
        "stage": kw["stage"],
        "time": kw["time"],
        "amount": amount,
        "as_of_ns": as_of_ns,
        "log_max": run.hi,
        "ruled": ruled,
        "stale_chunk": stale_after,
        "settings": {},
        "freq": kw.get("freq"),
        "level": kw.get("level", 0.95),
        "method": kw.get("method", "wilson"),
        "exact_sums": run.exact_sums() if amount else True,
    }
    if as_of_ns is not None and learn and not ruled[:-1].all():
        parts1 = run.map(K.learn, spec, _columns(run, kw["lead"], kw["stage"], kw["time"]))
        if sum(p["n"] for p in parts1):
            horizon, source = K.learned_horizon(parts1, m, ruled)
            if source == "none" and any(p["open"] for p in parts1):
                warnings.warn(
                    "no step has conversions to learn a horizon from, so open leads stay in flight "
                    "and each rate is over decided leads only (censored-only); pass stale_after= "
                    "(days) or set horizon_days on the stage set.",
                    DataWarning,
                    stacklevel=4,
                )
            if per_step is not None:
                horizon = np.where(per_step >= 0, per_step, horizon)
                source = "given" if source == "none" else "given and learned"
            horizon[ruled] = -1
            horizon[-1] = -1
            spec["stale_chunk"] = {
                steps[k]: (pd.Timedelta(int(horizon[k]), unit="ns") if horizon[k] >= 0 else 0)
                for k in range(m - 1)
                if horizon[k] >= 0 or ruled[k]
            }
            spec["settings"] = {"horizon_source": source}
    parts = [p for p in run.map(K.counts, spec, cols) if p is not None]
    if not parts:
        return None
    if what == "outcomes":
        return K.outcomes_table(parts, spec)
    return K.funnel_table(parts, spec)


def _empty_fallback(result, one_core, log, kw, run=None):
    if result is not None:
        return result
    last_run["path"] = "empty"
    base = log._meta if _is_dask(log) else log
    return one_core(base, **kw)


def conversion(
    log,
    *,
    stages: StageSet | str | Sequence[str] | None = None,
    by: str | Sequence[str] | None = None,
    mode: str = "ordered",
    window=None,
    step_windows=None,
    exclude=None,
    infer_skipped: bool | None = None,
    as_of="end",
    stale_after="horizon",
    value: str | None = None,
    level: float = 0.95,
    method: str = "wilson",
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
    n_jobs: int | None = -1,
    engine: str = "auto",
    n_chunks: int | None = None,
) -> pd.DataFrame:
    """:func:`funnelkit.funnel.conversion` on every core, or on a Dask cluster.

    Same parameters and the same result, cell for cell, plus:

    Parameters
    ----------
    log : DataFrame or dask.dataframe.DataFrame
        An event log in memory, or a lead-partitioned Dask DataFrame (see
        :func:`write_partitioned`).
    n_jobs : int
        Worker processes or threads (``-1``: every core).
    engine : {"auto", "processes", "threads", "serial", "dask"}
        See the module docstring.
    n_chunks : int, optional
        Chunks of an in-memory log (default: one per ``CHUNK_ROWS`` = 250,000 events, at
        least one per worker).  Giving it always splits the log.

    Examples
    --------
    >>> import funnelkit as fk
    >>> log = fk.datasets.load_demo()
    >>> from funnelkit import parallel
    >>> parallel.conversion(log, n_chunks=3, engine="serial").equals(fk.funnel.conversion(log))
    True
    """
    kw = dict(
        stages=stages,
        by=by,
        mode=mode,
        window=window,
        step_windows=step_windows,
        exclude=exclude,
        infer_skipped=infer_skipped,
        as_of=as_of,
        stale_after=stale_after,
        value=value,
        level=level,
        method=method,
        lead=lead,
        stage=stage,
        time=time,
        amount=amount,
    )
    res = _funnel(
        "conversion", log, kw, n_jobs=n_jobs, engine=engine, n_chunks=n_chunks, one_core=funnel.conversion
    )
    return _empty_fallback(res, funnel.conversion, log, kw)


def cohorts(
    log,
    *,
    freq: str = "MS",
    by: str | Sequence[str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    level: float = 0.95,
    method: str = "wilson",
    mode: str = "ordered",
    window=None,
    step_windows=None,
    exclude=None,
    infer_skipped: bool | None = None,
    as_of="end",
    stale_after="horizon",
    value: str | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
    n_jobs: int | None = -1,
    engine: str = "auto",
    n_chunks: int | None = None,
) -> pd.DataFrame:
    """:func:`funnelkit.funnel.cohorts` on every core, or on a Dask cluster.

    ``n_jobs``, ``engine`` and ``n_chunks`` as in :func:`conversion`.

    Examples
    --------
    The demo log in three chunks, one after the other: the one-core table,
    cell for cell.

    >>> import funnelkit as fk
    >>> from funnelkit import parallel
    >>> log = fk.datasets.load_demo()
    >>> table = parallel.cohorts(log, n_chunks=3, engine="serial")
    >>> table.equals(fk.funnel.cohorts(log)), table["cohort"].nunique()
    (True, 15)
    """
    kw = dict(
        freq=freq,
        by=by,
        stages=stages,
        level=level,
        method=method,
        mode=mode,
        window=window,
        step_windows=step_windows,
        exclude=exclude,
        infer_skipped=infer_skipped,
        as_of=as_of,
        stale_after=stale_after,
        value=value,
        lead=lead,
        stage=stage,
        time=time,
        amount=amount,
    )
    res = _funnel(
        "cohorts", log, kw, n_jobs=n_jobs, engine=engine, n_chunks=n_chunks, one_core=funnel.cohorts
    )
    return _empty_fallback(res, funnel.cohorts, log, kw)


def outcomes(
    log,
    *,
    stages: StageSet | str | Sequence[str] | None = None,
    by: str | Sequence[str] | None = None,
    as_of="end",
    stale_after="horizon",
    value: str | None = None,
    level: float = 0.95,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
    n_jobs: int | None = -1,
    engine: str = "auto",
    n_chunks: int | None = None,
) -> pd.DataFrame:
    """:func:`funnelkit.funnel.outcomes` on every core, or on a Dask cluster.

    ``n_jobs``, ``engine`` and ``n_chunks`` as in :func:`conversion`.

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit import parallel
    >>> log = fk.datasets.load_demo()
    >>> table = parallel.outcomes(log, by="product", n_chunks=3, engine="serial")
    >>> table.equals(fk.funnel.outcomes(log, by="product"))
    True
    >>> table[["product", "leads", "won", "lost", "open"]]
            product  leads  won  lost  open
    0       Starter   2687  332  1926   188
    1  Professional   2140  217  1495   196
    2    Enterprise   1173   42   860   136
    """
    kw = dict(
        stages=stages,
        by=by,
        as_of=as_of,
        stale_after=stale_after,
        value=value,
        level=level,
        lead=lead,
        stage=stage,
        time=time,
        amount=amount,
    )
    res = _funnel(
        "outcomes", log, kw, n_jobs=n_jobs, engine=engine, n_chunks=n_chunks, one_core=funnel.outcomes
    )
    return _empty_fallback(res, funnel.outcomes, log, kw)


# ---------------------------------------------------------------------------
# pipeline reductions (per-lead rows)
# ---------------------------------------------------------------------------
def _pipeline(what: str, log, kw: dict, *, n_jobs, engine, n_chunks, one_core):
    if engine == "auto" and n_chunks is None and not _is_dask(log):
        # the per-lead tables' one-core code is lean: splitting an in-memory log only
        # adds its cost (5M leads: snapshot 3.3 s one core, durations 3.7 s vs 4.0 s
        # on two threads at 1.9x vs 2.4x the columns' memory)
        last_run.clear()
        last_run.update(path="direct", engine="direct", n_chunks=0)
        return one_core(log, **kw)
    run = _Run(
        log,
        lead=kw["lead"],
        time=kw["time"],
        amount=kw.get("amount"),
        n_jobs=n_jobs,
        engine=engine,
        n_chunks=n_chunks,
        per_lead=True,
    )
    last_run.clear()
    last_run.update(
        path="direct" if run.direct else "chunks",
        engine=run.engine,
        n_chunks=0 if run.direct else len(run.src) if not run.dask else run.src.ddf.npartitions,
    )
    if run.direct:
        return one_core(log, **kw)
    try:
        return _pipeline_run(what, run, kw)
    except (_ChunkError, FunnelkitError):
        last_run["path"] = "fallback"
        # the one-core function raises the same error naming the log's own rows
        if run.dask:
            raise
        return one_core(log, **kw)


def _pipeline_run(what: str, run: _Run, kw: dict) -> pd.DataFrame:
    lead, stage, time, amount = kw["lead"], kw["stage"], kw["time"], kw.get("amount")
    require_columns(run.meta, [lead, stage, time], "pass the right names with lead=, stage=, time=.")
    if what == "durations" and kw.get("per", "stage") not in {"stage", "visit"}:
        raise PipelineError(f"per must be 'stage' or 'visit', got {kw.get('per')!r}.")
    ss = funnel.resolve_stages(run.meta, kw.get("stages"))
    segs = pipeline._segment_cols(run.meta, kw.get("segments"), exclude=[lead, stage, time, amount or ""])
    as_of = kw.get("as_of")
    lo, hi = run.lo, run.hi
    T = pipeline._to_time(as_of, name="as_of") if as_of is not None else (hi if hi is not None else 0)
    T = int(T)
    notes: list[str] = []
    if what == "snapshot" and lo is not None:
        if T < lo:
            warnings.warn(
                f"as_of={pipeline._when(T)} is before the data starts ({pipeline._when(lo)}): no lead existed yet, "
                "the snapshot is empty.",
                DataWarning,
                stacklevel=4,
            )
            notes.append(f"as_of is before the data starts ({pipeline._ts(lo)}).")
        elif pipeline._ts(T).normalize() > pipeline._ts(hi).normalize():
            if T - hi > 7 * DAY_NS:
                warnings.warn(
                    f"as_of={pipeline._when(T)} is more than a week after the data ends ({pipeline._when(hi)}): the "
                    "snapshot shows the state at the data's end, with days in stage and ages counted "
                    "to as_of. Is the export up to date?",
                    DataWarning,
                    stacklevel=4,
                )
            notes.append(f"as_of is after the data ends ({pipeline._ts(hi)}).")
    has_amount = bool(amount) and amount in run.columns
    spec = {
        "ss": ss,
        "lead": lead,
        "stage": stage,
        "time": time,
        "amount": amount,
        "segments": segs,
        "T": T,
        "log_max": hi,
        "notes": notes,
        "include_closed": kw.get("include_closed", False),
        "per": kw.get("per", "stage"),
    }
    cols = _columns(run, lead, stage, time, amount if has_amount else None, segs)
    if what == "snapshot":
        parts = run.map(K.snapshot, spec, cols)
        return K.snapshot_table(parts, spec)
    parts = run.map(K.durations, spec, cols)
    return K.durations_table(parts, spec)


def snapshot(
    log,
    *,
    as_of=None,
    stages: StageSet | str | Sequence[str] | None = None,
    include_closed: bool = False,
    segments: str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
    n_jobs: int | None = -1,
    engine: str = "auto",
    n_chunks: int | None = None,
) -> pd.DataFrame:
    """:func:`funnelkit.pipeline.snapshot` on every core, or on a Dask cluster.

    Same rows, columns, order and ``attrs``.  ``n_jobs``, ``engine`` and
    ``n_chunks`` as in :func:`conversion`, except that ``engine="auto"`` runs an
    in-memory log on one core: its one-core code is lean enough that threads
    only add the cost of splitting (1M leads: 0.78 s on one core, 1.33 s on two
    threads).  Ask for ``engine="threads"`` or ``"serial"`` to bound memory by
    chunks instead.

    Examples
    --------
    >>> import funnelkit as fk
    >>> log = fk.datasets.load_demo()
    >>> from funnelkit import parallel
    >>> a = parallel.snapshot(log, as_of="2025-06-30", n_chunks=3, engine="serial")
    >>> a.equals(fk.pipeline.snapshot(log, as_of="2025-06-30"))
    True
    """
    kw = dict(
        as_of=as_of,
        stages=stages,
        include_closed=include_closed,
        segments=segments,
        lead=lead,
        stage=stage,
        time=time,
        amount=amount,
    )
    return _pipeline(
        "snapshot", log, kw, n_jobs=n_jobs, engine=engine, n_chunks=n_chunks, one_core=pipeline.snapshot
    )


def durations(
    log,
    *,
    as_of=None,
    stages: StageSet | str | Sequence[str] | None = None,
    per: str = "stage",
    segments: str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
    n_jobs: int | None = -1,
    engine: str = "auto",
    n_chunks: int | None = None,
) -> pd.DataFrame:
    """:func:`funnelkit.pipeline.durations` on every core, or on a Dask cluster.

    Same rows in the same order (leads in the order of their first event in
    the log; for a Dask DataFrame, partition by partition).  ``n_jobs``,
    ``engine`` and ``n_chunks`` as in :func:`conversion`, except that
    ``engine="auto"`` runs an in-memory log on one core (5M leads: 3.7 s and
    1.9x the columns' memory, against 4.0 s and 2.4x on two threads).

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit import parallel
    >>> log = fk.datasets.load_demo()
    >>> table = parallel.durations(log, n_chunks=3, engine="serial")
    >>> table.equals(fk.pipeline.durations(log)), len(table)
    (True, 12130)
    >>> table.loc[:2, ["lead_id", "stage", "visits"]]
      lead_id          stage  visits
    0   L0000  qualification       1
    1   L0000        meeting       1
    2   L0001  qualification       1
    """
    kw = dict(
        as_of=as_of,
        stages=stages,
        per=per,
        segments=segments,
        lead=lead,
        stage=stage,
        time=time,
        amount=amount,
    )
    return _pipeline(
        "durations", log, kw, n_jobs=n_jobs, engine=engine, n_chunks=n_chunks, one_core=pipeline.durations
    )


# ---------------------------------------------------------------------------
# views made of the per-lead tables: stale leads, movement between two dates
# ---------------------------------------------------------------------------
def _meta(log):
    return log._meta if _is_dask(log) else log


def stale(
    log,
    *,
    as_of=None,
    thresholds: Mapping[str, float] | str | Path | None = None,
    quantile: float = 0.9,
    owner: str | None = "owner",
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
    n_jobs: int | None = -1,
    engine: str = "auto",
    n_chunks: int | None = None,
) -> pd.DataFrame:
    """:func:`funnelkit.pipeline.stale` on every core, or on a Dask cluster.

    The learned thresholds come from the stage visits of every lead
    (:func:`durations` with ``per="visit"``, chunk by chunk), the open leads
    from :func:`snapshot`; the list is then made from the two combined
    tables by the one-core code: same rows, order and ``attrs``.
    ``n_jobs``, ``engine`` and ``n_chunks`` as in :func:`conversion`.

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit import parallel
    >>> log = fk.datasets.load_demo()
    >>> a = parallel.stale(log, thresholds={"qualification": 30}, n_chunks=3, engine="serial")
    >>> a.equals(fk.pipeline.stale(log, thresholds={"qualification": 30}))
    True
    """
    meta = _meta(log)
    ss = funnel.resolve_stages(meta, stages)
    if owner is not None:
        require_columns(meta, [owner], "pass owner='your rep column', or owner=None if there is none.")
    if not 0 < quantile < 1:
        raise PipelineError(f"quantile must be between 0 and 1, got {quantile!r}.")
    given = pipeline._read_thresholds(thresholds, ss) if thresholds is not None else {}
    run = dict(n_jobs=n_jobs, engine=engine, n_chunks=n_chunks, lead=lead, stage=stage, time=time)
    visits = durations(log, as_of=as_of, stages=ss, per="visit", segments=[], amount=None, **run)
    th = pipeline._thresholds_from(visits, ss, given, quantile)
    del visits
    snap = snapshot(log, as_of=as_of, stages=ss, amount=amount, **run)
    return pipeline._stale_from(snap, th, ss, owner=owner, lead=lead)


def movement_leads(
    log,
    *,
    start,
    end,
    stages: StageSet | str | Sequence[str] | None = None,
    segments: str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
    n_jobs: int | None = -1,
    engine: str = "auto",
    n_chunks: int | None = None,
) -> pd.DataFrame:
    """:func:`funnelkit.pipeline.movement_leads` on every core, or on a Dask cluster.

    The snapshots (with closed leads) at ``start`` and at ``end`` are made
    chunk by chunk (:func:`snapshot`) and compared by the one-core code: same
    rows, order and ``attrs``.  ``n_jobs``, ``engine`` and ``n_chunks`` as in
    :func:`conversion`; with ``engine="auto"`` an in-memory log runs the
    one-core function, whose single pass over the events is faster than two
    snapshots on every core (1M leads: 0.8 s against 4.4 s).

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit import parallel
    >>> log = fk.datasets.load_demo()
    >>> a = parallel.movement_leads(log, start="2025-06-30", end="2025-07-31", n_chunks=3, engine="serial")
    >>> a.equals(fk.pipeline.movement_leads(log, start="2025-06-30", end="2025-07-31"))
    True
    """
    if engine == "auto" and n_chunks is None and not _is_dask(log):
        last_run.clear()
        last_run.update(path="direct", engine="direct", n_chunks=0)
        return pipeline.movement_leads(log, start=start, end=end, stages=stages, segments=segments, lead=lead,
                                       stage=stage, time=time, amount=amount)
    meta = _meta(log)
    ta, tb, tz = pipeline._start_end(meta[time] if time in meta.columns else None, start, end)
    kw = dict(stages=stages, include_closed=True, segments=segments, lead=lead, stage=stage, time=time,
              amount=amount, n_jobs=n_jobs, engine=engine, n_chunks=n_chunks)
    a = snapshot(log, as_of=pipeline._ts(ta, tz), **kw)
    b = snapshot(log, as_of=pipeline._ts(tb, tz), **kw)
    return pipeline._movement_from(a, b, ta, tb, tz, lead=lead)


def movement(
    log,
    *,
    start,
    end,
    by: str | Sequence[str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
    n_jobs: int | None = -1,
    engine: str = "auto",
    n_chunks: int | None = None,
) -> pd.DataFrame:
    """:func:`funnelkit.pipeline.movement` (the pipeline waterfall) on every core, or on a Dask cluster.

    The per-lead movements come from :func:`movement_leads`; the waterfall is
    summed from them by the one-core code, so its counts and values (and the
    reconciliation check) are those of one core, bit for bit.  ``n_jobs``,
    ``engine`` and ``n_chunks`` as in :func:`conversion`.

    Examples
    --------
    >>> import funnelkit as fk
    >>> from funnelkit import parallel
    >>> log = fk.datasets.load_demo()
    >>> w = parallel.movement(log, start="2025-06-30", end="2025-07-31", by="product", n_chunks=3,
    ...                       engine="serial")
    >>> w.equals(fk.pipeline.movement(log, start="2025-06-30", end="2025-07-31", by="product"))
    True
    """
    by = as_list(by)
    mv = movement_leads(log, start=start, end=end, stages=stages, segments=by or [], lead=lead, stage=stage,
                        time=time, amount=amount, n_jobs=n_jobs, engine=engine, n_chunks=n_chunks)
    return pipeline._waterfall(mv, by)


# ---------------------------------------------------------------------------
# the stage-transition model
# ---------------------------------------------------------------------------
def fit_transitions(
    log,
    *,
    model=None,
    stages: StageSet | str | Sequence[str] | None = None,
    by: str | Sequence[str] | None = None,
    as_of=None,
    value: str | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    n_jobs: int | None = -1,
    engine: str = "auto",
    n_chunks: int | None = None,
    **settings,
):
    """:meth:`funnelkit.transitions.TransitionModel.fit` on every core, or on a Dask cluster.

    Each chunk (a set of whole leads) turns its events into *stay events*:
    the events known at ``as_of``, in time order, cut at each lead's first
    outcome, one per run of the same stage, and the latest ``by`` and
    ``value`` of each lead.  Put one after the other (leads in the order of
    their first event in the log, as one core numbers them), they are the
    arrays the one-core fit makes from the whole log; the one-core code then
    makes the stays, the calendar (fitted on the moves of every lead), the
    segments, the (segment, stage, day, destination) cells and the estimate
    from them.  So the fitted model is the one-core model: the same
    ``states_``, ``groups_``, ``stays_`` (same rows, same order), ``counts_``,
    ``notes_``, probabilities and, with the same ``seed``, the same posterior
    samples, hence the same forecasts.

    A Dask DataFrame is the log ``ddf.compute()`` (partition after
    partition); one that is not lead-partitioned is shuffled by lead first,
    and the model is then that of the shuffled log, whose ``stays_`` come in
    another lead order (the counts and, without ``half_life`` or lead
    weights, the estimate do not depend on the order).

    Parameters
    ----------
    log : DataFrame or dask.dataframe.DataFrame
        An event log in memory, or a lead-partitioned Dask DataFrame (see
        :func:`write_partitioned`).  A log with a time zone runs on one core.
    model : TransitionModel, optional
        The model to fit (its settings: ``n_samples``, ``seed``,
        ``half_life``, ``calendar`` ...); it is fitted in place and returned,
        as ``model.fit(log)`` does.  Default: ``TransitionModel(**settings)``.
    stages, by, as_of, value, lead, stage, time
        As in :meth:`~funnelkit.transitions.TransitionModel.fit`.
    n_jobs : int
        Worker threads or processes (``-1``: every core).
    engine : {"auto", "processes", "threads", "serial", "dask"}
        ``"auto"`` runs a Dask DataFrame on Dask, and an in-memory log on one
        core (``model.fit(log)``): the one-core fit is leaner and quicker than
        chunks on threads (5M leads: 1.7 s at 2.1x the bytes of its columns,
        against 2.9 s at 2.4x on two threads).  ``"threads"`` is the better
        of the in-process engines on request (the stay events are as large as
        the log: worker processes would copy them back).
    n_chunks : int, optional
        Chunks of an in-memory log (default: one per ``CHUNK_ROWS`` events, at
        least one per worker).  Giving it always splits the log.
    **settings
        Settings of a new :class:`~funnelkit.transitions.TransitionModel`
        (``min_count``, ``shrinkage``, ``n_samples``, ``level``, ``seed``,
        ``half_life``, ``calendar``), when ``model`` is not given.

    Returns
    -------
    TransitionModel
        Fitted.

    Raises
    ------
    FunnelSpecError
        If both ``model`` and settings are given, or for an unknown engine.

    Examples
    --------
    The demo log in three chunks, one after the other: the one-core model,
    cell for cell.

    >>> import funnelkit as fk
    >>> from funnelkit import parallel
    >>> from funnelkit.transitions import TransitionModel
    >>> log = fk.datasets.load_demo()
    >>> tm = parallel.fit_transitions(log, by="product", as_of="2025-06-30", n_samples=20,
    ...                               n_chunks=3, engine="serial")
    >>> one = TransitionModel(n_samples=20).fit(log, by="product", as_of="2025-06-30")
    >>> tm.counts_.equals(one.counts_), tm.stays_.equals(one.stays_)
    (True, True)
    >>> tm.win_probability().equals(one.win_probability())
    True
    """
    from .transitions import TransitionModel, _fit_moment, _fit_spec

    if model is None:
        model = TransitionModel(**settings)
    elif settings:
        raise FunnelSpecError(
            f"pass the model's settings in model= or as keywords, not both (got {', '.join(settings)})."
        )
    elif not isinstance(model, TransitionModel):
        raise TypeError(f"model must be a TransitionModel, got {type(model).__name__}.")
    kw = dict(stages=stages, by=by, as_of=as_of, value=value, lead=lead, stage=stage, time=time)
    if engine == "auto" and n_chunks is None and not _is_dask(log):
        # the one-core fit is the leaner and quicker (5M leads: 1.7 s at 2.1x its columns,
        # against 2.9 s at 2.4x on two threads)
        last_run.clear()
        last_run.update(path="direct", engine="direct", n_chunks=0)
        return model.fit(log, **kw)
    run = _Run(
        log, lead=lead, time=time, amount=None, n_jobs=n_jobs, engine=engine, n_chunks=n_chunks, per_lead=True
    )
    last_run.clear()
    last_run.update(
        path="direct" if run.direct else "chunks",
        engine=run.engine,
        n_chunks=0 if run.direct else len(run.src) if not run.dask else run.src.ddf.npartitions,
    )
    if run.direct:
        return model.fit(log, **kw)
    try:
        spec = _fit_spec(run.meta, **kw)
        spec["T"], spec["data_end"] = _fit_moment(spec, run.hi)
        parts = run.map(K.stay_events, {"fit": spec, "lead": lead}, _columns(run, lead, stage, time, by, value))
        return model._fit_events(K.merge_stay_events(parts), spec)
    except (_ChunkError, FunnelkitError):
        last_run["path"] = "fallback"
        # the one-core fit raises the same error naming the log's own rows
        if run.dask:
            raise
        return model.fit(log, **kw)


# ---------------------------------------------------------------------------
# lead-partitioned Parquet
# ---------------------------------------------------------------------------
def write_partitioned(
    log,
    path: str | Path,
    n_partitions: int,
    *,
    lead: str = LEAD,
    compression: str = "zstd",
) -> Path | str:
    """Write a log as lead-partitioned Parquet: one file per hash bucket of the lead id.

    File ``part-00007.parquet`` holds every event of the leads whose
    :func:`lead_partition` is 7, in the log's order, so
    ``dask.dataframe.read_parquet(path)`` gives one partition per file and
    the functions of this module run on it without a shuffle.  Categorical
    columns keep all their categories in every file.  The directory is
    created; existing ``part-*.parquet`` files in it are replaced.

    A log larger than memory can be written piece by piece: pass an iterable
    of DataFrames (e.g. ``pd.read_csv(..., chunksize=...)`` or one export per
    month).  A lead may have events in several pieces; each piece adds one
    row group to each file, so read such a data set with
    ``dd.read_parquet(path, split_row_groups=False)`` (one partition per file).

    Parameters
    ----------
    log : DataFrame or iterable of DataFrames
        An event log (canonical columns, or any with a ``lead`` column); the
        pieces of an iterable must have the same columns and dtypes.
    path : str or Path
        Directory to write: a local path or a URI Arrow understands
        (``s3://bucket/events``, ``gs://...``, ``hdfs://...``).
    n_partitions : int
        Number of files (partitions).  Aim for 1-4 million events each.
    lead : str
        The lead id column.
    compression : str
        Parquet compression codec.

    Returns
    -------
    Path or str
        The directory (a Path for a local directory, else the URI).

    Examples
    --------
    >>> import tempfile, funnelkit as fk
    >>> from funnelkit import parallel
    >>> d = parallel.write_partitioned(fk.datasets.load_demo(n_leads=100), tempfile.mkdtemp(), 3)
    >>> sorted(p.name for p in d.glob("*.parquet"))
    ['part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet']
    """
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    pieces = iter([log]) if isinstance(log, pd.DataFrame) else iter(log)
    n = int(n_partitions)
    if n < 1:
        raise FunnelSpecError(f"n_partitions must be at least 1, got {n_partitions!r}.")
    if "://" not in str(path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        fs, root = pafs.LocalFileSystem(), str(path.resolve())
    else:
        fs, root = pafs.FileSystem.from_uri(str(path))
        fs.create_dir(root, recursive=True)
    for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        name = info.path.rsplit("/", 1)[-1]
        if name.startswith("part-") and name.endswith(".parquet"):
            fs.delete_file(info.path)
    writers: list = [None] * n
    schema = None
    try:
        for piece in pieces:
            if not isinstance(piece, pd.DataFrame):
                raise TypeError(f"expected an event log DataFrame, got {type(piece).__name__}.")
            require_columns(piece, [lead], "pass the lead id column with lead=.")
            frame = piece.copy(deep=False)
            frame.attrs = {}
            if schema is None:
                schema = pa.Schema.from_pandas(frame.iloc[:0], preserve_index=False)
                meta = dict(schema.metadata or {})
                meta[b"funnelkit"] = f'{{"lead_partitioned": "{lead}", "n_partitions": {n}}}'.encode()
                schema = schema.with_metadata(meta)
            bucket = K.lead_bucket(frame[lead], n)
            order = np.argsort(bucket, kind="stable")
            edges = np.r_[0, np.cumsum(np.bincount(bucket, minlength=n))]
            for i in range(n):
                if writers[i] is None:
                    writers[i] = pq.ParquetWriter(
                        f"{root}/.part-{i:05d}.parquet.tmp", schema, filesystem=fs, compression=compression
                    )
                if edges[i + 1] > edges[i]:
                    part = frame.take(order[edges[i] : edges[i + 1]])
                    table = pa.Table.from_pandas(part, schema=schema, preserve_index=False)
                    writers[i].write_table(table, row_group_size=max(len(table), 1))
        if schema is None:
            raise FunnelSpecError("write_partitioned got no DataFrame to write.")
    except BaseException:
        for w in writers:
            if w is not None:
                w.close()
        for i, w in enumerate(writers):
            if w is not None:
                fs.delete_file(f"{root}/.part-{i:05d}.parquet.tmp")
        raise
    for i, w in enumerate(writers):
        w.close()
        fs.move(f"{root}/.part-{i:05d}.parquet.tmp", f"{root}/part-{i:05d}.parquet")
    return path
