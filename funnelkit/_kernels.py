"""Per-chunk kernels and exact combine steps behind :mod:`funnelkit.parallel`.

Every reduction here is two parts (see ``CONVENTIONS.md``): a *kernel* that
turns the events of a set of whole leads (a *chunk*: no lead has events in
two chunks) into partial results, and a *combine* step that adds the partial
results of all chunks up exactly and shapes the tidy table.  The kernels run
the one-core code of :mod:`funnelkit.funnel`, :mod:`funnelkit.pipeline` and
:mod:`funnelkit.transitions` on the chunk (``funnel._journeys``, ``_counts``,
``pipeline.snapshot``, ``transitions._stay_events`` ...);
the combine steps call the same table builders (``funnel._groups``,
``_funnel_table``, the :mod:`funnelkit.stats` intervals) on the summed
counts, so the results are those of one core, cell for cell.

Two things are global and computed before the kernels run: the as-of moment
(the log's last dated event by default) and, when the funnel learns its
horizon from the log, the horizon itself.  The horizon is an Aalen-Johansen
quantile of each step's time to move on; its exact sufficient statistic is,
per step, the multiset of (duration, kind of end) over the leads at that
step, which each chunk returns as a histogram (distinct durations and the
count of each kind) and which the combine step merges and evaluates with the
same arithmetic as :func:`funnelkit.stats.aalen_johansen`.

Integer counts add up exactly.  Amount sums are floating point: they equal
the one-core sums exactly when the amounts are whole numbers (below 2**53 in
total), which is what CRM deal values are; with fractional amounts the sums
may differ from one core in the last bit (the addition order differs).

This module is internal: its functions take and return plain arrays and
dicts so that they pickle cheaply to worker processes and Dask workers.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import pandas as pd

from . import funnel, pipeline, transitions
from ._common import DAY_NS, NAT
from .data import checked_leads
from .exceptions import DataWarning

INF = np.iinfo(np.int64).max

# ---------------------------------------------------------------------------
# lead hash: a stable 64-bit hash of lead ids (the partition key)
# ---------------------------------------------------------------------------
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_P = np.uint64(0x100000001B3)
_BLOCK = 1 << 20


def _fmix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (uint64 arithmetic wraps)."""
    h = h ^ (h >> np.uint64(33))
    h = h * _M1
    h = h ^ (h >> np.uint64(33))
    h = h * _M2
    return h ^ (h >> np.uint64(33))


def _string_hash(arr) -> np.ndarray:
    """Hash of each string of an Arrow string array from its UTF-8 bytes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        parts = [_string_hash(c) for c in arr.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    arr = pc.cast(arr, pa.large_string())
    n = len(arr)
    out = np.zeros(n, dtype=np.uint64)
    if n == 0:
        return out
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    for a in range(0, n, _BLOCK):
        o = off[a : min(a + _BLOCK, n) + 1]
        lens = np.diff(o)
        b0 = int(o[0])
        b = data[b0 : int(o[-1])].astype(np.uint64) + np.uint64(1)
        pos = np.arange(b.size, dtype=np.int64) - np.repeat(o[:-1] - b0, lens)
        width = int(lens.max()) if lens.size else 0
        powers = np.cumprod(np.r_[np.uint64(1), np.full(max(width - 1, 0), _P, dtype=np.uint64)])
        with np.errstate(over="ignore"):
            cs = np.r_[np.uint64(0), np.cumsum(b * powers[pos], dtype=np.uint64)]
            h = cs[o[1:] - b0] - cs[o[:-1] - b0]
            out[a : a + lens.size] = _fmix(h ^ _fmix(lens.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)))
    if arr.null_count:
        out[np.asarray(arr.is_null())] = 0
    return out


def lead_hash(values) -> np.ndarray:
    """A 64-bit hash of each lead id, the same for the same id in any container.

    Strings hash their UTF-8 bytes (Python, Arrow or NumPy strings alike);
    integers their value; categoricals their categories.  Missing ids hash
    to 0.  Deterministic across processes and machines (no salt).

    Examples
    --------
    >>> import pandas as pd
    >>> h = lead_hash(np.array(["a", "b", "a"], dtype=object))
    >>> bool(h[0] == h[2] != h[1])
    True
    >>> bool((lead_hash(pd.Series(["a", "b", "a"], dtype="category")) == h).all())  # any container
    True
    """
    import pyarrow as pa

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        if pa.types.is_integer(values.type):
            values = values.to_numpy(zero_copy_only=False)
        else:
            return _string_hash(values)
    if isinstance(values, pd.Index):
        values = values.to_series()
    if isinstance(values, pd.Series):
        values = values.array
    if isinstance(values, pd.Categorical):
        cat_h = lead_hash(values.categories)
        codes = values.codes
        return np.where(codes >= 0, cat_h[np.maximum(codes, 0)], np.uint64(0))
    if hasattr(values, "_pa_array"):  # pandas Arrow-backed arrays
        return lead_hash(values._pa_array)
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        with np.errstate(over="ignore"):
            return _fmix(arr.astype(np.int64).view(np.uint64) ^ np.uint64(0x2545F4914F6CDD1D))
    if arr.dtype.kind == "b":
        return lead_hash(arr.astype(np.int64))
    if arr.dtype.kind == "f":
        ints = arr == np.round(arr)
        if ints.all() and np.isfinite(arr).all():
            return lead_hash(arr.astype(np.int64))
    # objects, fixed-width strings, floats with fractions: through their text
    text = pa.array(
        [
            None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            for v in arr.astype(object).tolist()
        ],
        type=pa.large_string(),
    )
    return _string_hash(text)


def lead_bucket(values, n: int) -> np.ndarray:
    """The partition (0 .. n-1) of each lead id: its hash modulo ``n``."""
    return (lead_hash(values) % np.uint64(max(int(n), 1))).astype(np.int64)


# ---------------------------------------------------------------------------
# grouping keys: segments (and cohorts) whose values are local to a chunk
# ---------------------------------------------------------------------------
def _keys_of(j, extra=()) -> list[dict]:
    """Per grouping key of a chunk: per-lead codes and the labels they index."""
    out = []
    for s in j.segments:
        out.append(
            {
                "name": s.name,
                "codes": s.codes,
                "labels": s.categories,
                "categorical": s.categorical,
                "kind": "segment",
            }
        )
    for k in extra:
        out.append(
            {"name": k.name, "codes": k.codes, "labels": k.labels, "categorical": False, "kind": "key"}
        )
    return out


def _local_groups(keys: list[dict], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Compact group code per lead and the (G, B) code combination of each group."""
    if not keys:
        return np.zeros(n, dtype=np.int64), np.zeros((1, 0), dtype=np.int64)
    key = np.zeros(n, dtype=np.int64)
    stride = 1
    strides = []
    sizes = [len(k["labels"]) for k in keys]
    for k, size in zip(reversed(keys), reversed(sizes)):
        strides.append(stride)
        key += np.where(k["codes"] < 0, size, k["codes"]) * stride
        stride *= size + 1
    strides = strides[::-1]
    if stride <= 4 * n + 1_000_000:
        used = np.bincount(key, minlength=stride) > 0
        uniq = np.flatnonzero(used)
        g = (np.cumsum(used) - 1)[key]
    else:
        uniq, g = np.unique(key, return_inverse=True)
    combos = np.empty((uniq.size, len(keys)), dtype=np.int64)
    rest = uniq.copy()
    for b, (size, st) in enumerate(zip(sizes, strides)):
        code = rest // st
        rest = rest % st
        combos[:, b] = np.where(code == size, -1, code)
    return g.astype(np.int64), combos


def _key_meta(keys: list[dict]) -> list[dict]:
    return [{k: v for k, v in key.items() if k != "codes"} for key in keys]


def _global_labels(metas: list[list[dict]]) -> list[dict]:
    """Per key, the labels of the whole log: a categorical's categories when every
    chunk has the same ones, else the sorted union (as ``pd.factorize(sort=True)``)."""
    first = metas[0]
    out = []
    for b, m0 in enumerate(first):
        labs = [m[b]["labels"] for m in metas]
        if (
            m0["kind"] == "segment"
            and all(m[b]["categorical"] for m in metas)
            and all(lab.equals(labs[0]) and lab.dtype == labs[0].dtype for lab in labs)
        ):
            out.append({**m0, "labels": labs[0]})
            continue
        union = labs[0]
        for lab in labs[1:]:
            union = union.union(lab, sort=None) if len(lab) else union
        if len(union) and not union.is_monotonic_increasing:
            union = union.sort_values()
        categorical = False
        out.append({**m0, "labels": union, "categorical": categorical})
    return out


def _combine_groups(parts: list[dict], *, arrays: list[str]):
    """Add up per-group arrays of every chunk on the groups of the whole log.

    Returns the group values table (from :func:`funnelkit.funnel._groups`), the summed arrays (one row per group) and, per chunk,
    the group row of each of its local groups.
    """
    metas = [p["keys"] for p in parts]
    glob = _global_labels(metas)
    sizes = [len(k["labels"]) for k in glob]
    all_keys = []
    for p in parts:
        combos = p["combos"]
        key = np.zeros(combos.shape[0], dtype=np.int64)
        stride = 1
        for b in reversed(range(len(glob))):
            local = p["keys"][b]["labels"]
            lut = (
                np.r_[glob[b]["labels"].get_indexer(local), -1].astype(np.int64)
                if len(local)
                else np.array([-1])
            )
            code = (
                lut[np.where(combos[:, b] < 0, len(lut) - 1, combos[:, b])] if combos.size else combos[:, b]
            )
            key += np.where(code < 0, sizes[b], code) * stride
            stride *= sizes[b] + 1
        all_keys.append(key)
    flat = np.concatenate(all_keys)
    uniq, inv = np.unique(flat, return_inverse=True)
    G = uniq.size
    # decode the groups into per-key codes, then let funnel._groups label them
    codes = []
    rest = uniq.copy()
    stride = int(np.prod([s + 1 for s in sizes])) if sizes else 1
    for b in range(len(glob)):
        stride //= sizes[b] + 1
        c = rest // stride
        rest = rest % stride
        codes.append(np.where(c == sizes[b], -1, c))
    segs, extra = [], []
    for k, c in zip(glob, codes):
        if k["kind"] == "segment":
            segs.append(funnel._Segment(k["name"], c, k["labels"], k["categorical"]))
        else:
            extra.append(funnel._Key(k["name"], c, k["labels"]))
    fake = SimpleNamespace(segments=segs, n=G)
    g_fake, gvals = funnel._groups(fake, extra)
    n_groups = max(len(gvals), 1)
    sums = {}
    maps = []
    off = 0
    for p in parts:
        sl = inv[off : off + p["combos"].shape[0]]
        off += p["combos"].shape[0]
        maps.append(g_fake[sl])
        for name in arrays:
            a = p["arrays"][name]
            if name not in sums:
                sums[name] = np.zeros((n_groups,) + a.shape[1:], dtype=a.dtype)
            np.add.at(sums[name], g_fake[sl], a)
    return gvals, sums, maps


# ---------------------------------------------------------------------------
# undated leads and the as-of rule across chunks
# ---------------------------------------------------------------------------
def drop_unplaceable(
    chunk: pd.DataFrame,
    *,
    lead: str,
    time: str,
    as_of_ns: int | None,
    log_max: int | None,
    count_later: bool = False,
) -> tuple[pd.DataFrame, int, int, np.ndarray | None]:
    """Apply the part of the as-of rule that depends on the whole log.

    A lead with only undated events exists at ``as_of`` only when ``as_of``
    is at or after the log's last dated event (``known_at``).  Inside a chunk
    the views compare with the chunk's last dated event, so such leads are
    removed here, with the whole log's last event, before the view runs.
    Returns the chunk, the leads removed, (``count_later``) the leads with
    undated events whose dated events all come after ``as_of``, and the
    positions of the rows kept (``None``: all).
    """
    if as_of_ns is None or log_max is None:
        return chunk, 0, 0, None
    t = chunk[time]
    miss = t.isna().to_numpy()
    if not miss.any():
        return chunk, 0, 0, None
    codes, uniq = pd.factorize(chunk[lead], sort=False)
    n = len(uniq)
    ok = codes >= 0
    dated = ~miss
    n_dated = np.bincount(codes[dated & ok], minlength=n)
    later = 0
    if count_later:
        tn = t.to_numpy(dtype="datetime64[ns]").view(np.int64)
        n_le = np.bincount(codes[dated & ok & (tn <= as_of_ns)], minlength=n)
        has_undated = np.bincount(codes[miss & ok], minlength=n) > 0
        later = int((has_undated & (n_dated > 0) & (n_le == 0)).sum())
    if as_of_ns >= log_max:
        return chunk, 0, later, None
    gone = n_dated == 0
    if not gone.any():
        return chunk, 0, later, None
    keep = ~(ok & gone[np.maximum(codes, 0)])
    out = chunk.loc[keep]
    out.attrs = dict(chunk.attrs)
    return out, int(gone.sum()), later, np.flatnonzero(keep)


def positions(info: dict | None, n_rows: int, kept: np.ndarray | None) -> np.ndarray:
    """Position in the whole log of each row of a chunk (after ``drop_unplaceable``)."""
    info = info or {}
    rows = info.get("rows")
    pos = np.asarray(rows) if rows is not None else info.get("offset", 0) + np.arange(n_rows, dtype=np.int64)
    return pos if kept is None else pos[kept]


def first_positions(chunk: pd.DataFrame, lead: str, pos: np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """Per lead of the chunk (in first-appearance order, as ``checked_leads`` codes them)
    the log position of its first event, and the lead ids."""
    codes, uniq = pd.factorize(chunk[lead], sort=False)
    first = np.empty(len(uniq), dtype=np.int64)
    first[codes[::-1]] = np.arange(codes.size - 1, -1, -1)
    return pos[first], pd.Index(uniq)


#: Set in threads of a thread pool whose caller silences warnings for them all:
#: ``warnings.catch_warnings`` changes process-wide state and is not thread-safe.
THREAD = threading.local()


def _quiet(fn, *args, **kwargs):
    """Run ``fn`` with funnelkit's data warnings silenced (they are re-issued once
    for the whole log by the combine step)."""
    if getattr(THREAD, "silenced", False):
        return fn(*args, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return fn(*args, **kwargs)


def _chunk_as_of(spec: dict):
    """The as-of argument that makes a chunk use the whole log's as-of moment."""
    t = spec["as_of_ns"]
    if t is None:
        return None
    if t == INF:
        return "end"
    return pd.Timestamp(int(t), unit="ns")


# ---------------------------------------------------------------------------
# funnel kernels
# ---------------------------------------------------------------------------
def exact_sums(parts: list[dict]) -> bool:
    """Do amount sums come out the same in any order?  Yes when every amount is a
    whole number and their absolute total is below 2**53 (every partial sum exact)."""
    if not parts or "integral" not in parts[0]:
        return True
    return all(p["integral"] for p in parts) and sum(p["abs_sum"] for p in parts) < 2.0**53


def scan(chunk: pd.DataFrame, spec: dict, info: dict | None = None) -> dict:
    """First and last dated event, rows, whether amounts are whole numbers, and the
    lead bucket of a chunk (-1: mixed)."""
    t = chunk[spec["time"]]
    lo, hi = t.min(), t.max()
    out = {
        "rows": len(chunk),
        "min": None if pd.isna(lo) else int(pd.Timestamp(lo).value),
        "max": None if pd.isna(hi) else int(pd.Timestamp(hi).value),
        "bucket": None,
    }
    amount = spec.get("amount")
    if amount and amount in chunk.columns:
        a = pd.to_numeric(chunk[amount], errors="coerce").to_numpy(dtype=float)
        a = a[~np.isnan(a)]
        out["integral"] = bool(np.isfinite(a).all() and (a == np.floor(a)).all())
        out["abs_sum"] = float(np.abs(a).sum()) if out["integral"] else np.inf
    n = spec.get("n_buckets")
    if n and len(chunk):
        col = chunk[spec["lead"]]
        values = col
        arr = col.array
        if hasattr(arr, "_pa_array") and len(arr) > 1:
            # every lead of the chunk appears at a row where the value changes
            import pyarrow.compute as pc

            pa_arr = arr._pa_array
            start = np.r_[True, pc.fill_null(pc.not_equal(pa_arr[1:], pa_arr[:-1]), True).to_numpy(False)]
            values = arr.take(np.flatnonzero(start))
        b = lead_bucket(values, n)
        out["bucket"] = int(b[0]) if (b == b[0]).all() else -1
    return out


def _journeys(chunk: pd.DataFrame, spec: dict, *, stale_after, by, amount):
    chunk, _, _, kept = drop_unplaceable(
        chunk, lead=spec["lead"], time=spec["time"], as_of_ns=spec["as_of_ns"], log_max=spec["log_max"]
    )
    return (
        chunk,
        kept,
        _quiet(
            funnel._journeys,
            chunk,
            spec["ss"],
            by=by,
            mode=spec["mode"],
            window=spec["window"],
            step_windows=spec["step_windows"],
            exclude=spec["exclude"],
            infer_skipped=spec["infer_skipped"],
            as_of=_chunk_as_of(spec),
            stale_after=stale_after,
            value=spec["value"],
            lead=spec["lead"],
            stage=spec["stage"],
            time=spec["time"],
            amount=amount,
        ),
    )


def learn(chunk: pd.DataFrame, spec: dict, info: dict | None = None) -> dict:
    """Pass 1 of a learned horizon: per step, the histogram of (days to move on, kind).

    The same durations and kinds as ``funnel._learn_horizon`` (moving on is
    kind 1, an outcome without it kind 2, open leads censored at as_of).
    """
    _, _, j = _journeys(chunk, spec, stale_after=None, by=[], amount=None)
    reached, rtime, outcome, closed_at = j.reached, j.time, j.outcome, j.closed_at
    as_of_ns = spec["as_of_ns"]
    hist = []
    for k in range(j.m - 1):
        if spec["ruled"][k] or j.n == 0:
            hist.append(None)
            continue
        tk = rtime[k]
        at = reached[k] & (tk != NAT)
        conv = at & reached[k + 1] & (rtime[k + 1] != NAT)
        gone = at & ~reached[k + 1] & (outcome != 0) & (closed_at != NAT)
        end = np.where(conv, rtime[k + 1], np.where(gone, closed_at, as_of_ns))
        d = np.maximum(end[at] - tk[at], 0) / DAY_NS
        e = np.where(conv, 1, np.where(gone, 2, 0))[at]
        hist.append(_histogram(d, e))
    r, m = j.r, j.m
    return {"hist": hist, "n": j.n, "open": bool(((r >= 1) & (r < m) & (outcome == 0)).any())}


def _histogram(d: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct durations and, for each, the count of kinds 0, 1 and 2."""
    if d.size == 0:
        return np.zeros(0), np.zeros((0, 3), dtype=np.int64)
    ud, inv = np.unique(d, return_inverse=True)
    cnt = np.bincount(inv * 3 + e.astype(np.int64), minlength=3 * ud.size).reshape(ud.size, 3)
    return ud, cnt


def _merge_hist(hs) -> tuple[np.ndarray, np.ndarray]:
    hs = [h for h in hs if h is not None and h[0].size]
    if not hs:
        return np.zeros(0), np.zeros((0, 3), dtype=np.int64)
    d = np.concatenate([h[0] for h in hs])
    c = np.concatenate([h[1] for h in hs])
    ud, inv = np.unique(d, return_inverse=True)
    out = np.zeros((ud.size, 3), dtype=np.int64)
    np.add.at(out, inv, c)
    return ud, out


def incidence_quantile_hist(times: np.ndarray, counts: np.ndarray, q: float) -> float:
    """:func:`funnelkit.stats.incidence_quantile` from a histogram of the data.

    ``times`` are the distinct durations (sorted), ``counts[:, k]`` how many
    leads ended there censored (k = 0), by the outcome of interest (1) or the
    competing one (2).  The arithmetic is that of
    :func:`funnelkit.stats.aalen_johansen`, so the result is bit for bit the
    one the raw durations give.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if times.size == 0 or counts[:, 1:].sum() == 0:
        return np.nan
    total = int(counts.sum())
    per_time = counts.sum(axis=1)
    at_risk_all = total - (np.cumsum(per_time) - per_time)
    kinds = [k for k in (1, 2) if counts[:, k].sum() > 0]
    d_k = np.vstack([counts[:, k].astype(float) for k in kinds])
    d = d_k.sum(axis=0)
    mask = d > 0
    t, n, d, d_k = times[mask], at_risk_all[mask].astype(float), d[mask], d_k[:, mask]
    if 1 not in kinds:
        return np.nan
    surv = np.cumprod(1 - d / n)
    s_prev = np.r_[1.0, surv[:-1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        inc = np.cumsum(s_prev * d_k[kinds.index(1)] / n)
    hit = np.flatnonzero(inc >= q * inc[-1] - 1e-12)
    return float(t[hit[0]])


def learned_horizon(parts: list[dict], m: int, ruled: np.ndarray) -> tuple[np.ndarray, str]:
    """``funnel._learn_horizon`` over the histograms of every chunk."""
    out = np.full(m, -1, dtype=np.int64)
    per_step = []
    for k in range(m - 1):
        if ruled[k]:
            per_step.append(None)
            continue
        per_step.append(_merge_hist([p["hist"][k] for p in parts]))
    present = [x for x in per_step if x is not None]
    pooled = np.nan
    if present and sum(int(c[:, 1].sum()) for _, c in present) >= funnel._MIN_LEARN:
        pd_, pc_ = _merge_hist(present)
        pooled = incidence_quantile_hist(pd_, pc_, funnel.HORIZON_QUANTILE)
    source = "learned"
    for k, x in enumerate(per_step):
        if x is None:
            continue
        d, c = x
        q = (
            incidence_quantile_hist(d, c, funnel.HORIZON_QUANTILE)
            if c[:, 1].sum() >= funnel._MIN_LEARN
            else pooled
        )
        if np.isfinite(q):
            out[k] = int(np.ceil(max(q, 1.0))) * DAY_NS
    if (out[:-1][~ruled[:-1]] < 0).all():
        source = "none"
    return out, source


def counts(chunk: pd.DataFrame, spec: dict, info: dict | None = None) -> dict | None:
    """Pass 2: per (segment[, cohort]) group the funnel counts, and what outcomes() needs."""
    what = spec["what"]
    rows = len(chunk)
    chunk, kept, j = _journeys(
        chunk, spec, stale_after=spec["stale_chunk"], by=spec["by"], amount=spec["amount"]
    )
    if j.n == 0:
        return None
    extra = []
    if what == "cohorts":
        per = funnel._periods(np.where(j.included, j.time[0], NAT), spec["freq"], getattr(j, "tz", None))
        extra.append(funnel._Key("cohort", per.codes, pd.Index(per.starts)))
    keys = _keys_of(j, extra)
    g, combos = _local_groups(keys, j.n)
    G = combos.shape[0]
    c = funnel._counts(j, g, G)
    arrays = {f.name: getattr(c, f.name) for f in fields(c)}
    if what == "outcomes":
        known = j.r >= 1
        is_open = (j.outcome == 0) & known
        stalled = is_open & ~j.in_flight & (j.r < j.m) if j.as_of is not None else np.zeros(j.n, dtype=bool)
        at_goal = is_open & (j.r >= j.m) if funnel._goal_is_last_stage(spec["ss"]) else np.zeros(j.n, dtype=bool)
        flying = is_open & ~stalled & ~at_goal

        def count(mask):
            return np.bincount(g[mask], minlength=G).astype(np.int64)

        arrays["won"], arrays["lost"] = count(j.outcome == 1), count(j.outcome == 2)
        ss = spec["ss"]
        if len(ss.lost) > 1:
            arrays["lost_kind"] = np.stack(
                [count((j.outcome == 2) & (j.lost_kind == i)) for i in range(len(ss.lost))], axis=1
            )
        arrays["stalled"], arrays["open"], arrays["reached_goal"] = count(stalled), count(flying), count(at_goal)
        if j.amount is not None:
            a = np.nan_to_num(j.amount, nan=0.0)
            valued = ~np.isnan(j.amount)
            for col, mask in (
                ("won_amount", j.outcome == 1),
                ("open_amount", flying),
                ("stalled_amount", stalled),
            ):
                arrays[col] = np.bincount(g, weights=np.where(mask, a, 0.0), minlength=G)
                # leads there and those with an amount: a sum over none of them is unknown
                arrays[f"{col}_leads"] = count(mask)
                arrays[f"{col}_valued"] = count(mask & valued)
    leads = None
    if j.amount is not None and not spec.get("exact_sums", True):
        # fractional amounts: floating-point sums depend on the order of the
        # additions, so hand each lead's amount to the combine step, which adds
        # them up in the one-core order (leads by their first event in the log)
        first, _ = first_positions(chunk, spec["lead"], positions(info, rows, kept))
        order = first[j.lead_take]
        a = np.nan_to_num(j.amount, nan=0.0)
        if what == "outcomes":
            kind = np.zeros(j.n, dtype=np.int8)
            kind[j.outcome == 1] = 1
            kind[flying] = 2
            kind[stalled] = 3
            leads = {"order": order, "g": g, "a": a, "kind": kind}
        else:
            inc = j.included
            leads = {"order": order[inc], "g": g[inc], "a": a[inc], "r": j.r[inc]}
    return {
        "keys": _key_meta(keys),
        "combos": combos,
        "arrays": arrays,
        "settings": j.settings,
        "has_amount": j.amount is not None,
        "as_of": j.as_of,
        "leads": leads,
    }


def _ordered_leads(parts: list[dict], maps: list[np.ndarray]) -> dict | None:
    """Every chunk's per-lead amounts in the one-core order, groups of the whole log."""
    if not parts or parts[0]["leads"] is None:
        return None
    cat = {k: np.concatenate([p["leads"][k] for p in parts]) for k in parts[0]["leads"]}
    cat["g"] = np.concatenate([mp[p["leads"]["g"]] for p, mp in zip(parts, maps)])
    srt = np.argsort(cat["order"], kind="stable")
    return {k: v[srt] for k, v in cat.items()}


def funnel_table(parts: list[dict], spec: dict) -> pd.DataFrame:
    """Combine step of conversion() and cohorts(): summed counts, then one-core tables."""
    names = [f.name for f in fields(funnel._Counts)]
    gvals, sums, maps = _combine_groups(parts, arrays=names)
    leads = _ordered_leads(parts, maps)
    if leads is not None:
        # funnel._counts: per (group, steps reached) sums, then reversed cumsum
        m = len(spec["ss"].steps)
        n_groups = sums["entered"].shape[0]
        size = n_groups * (m + 1)
        ah = np.bincount(leads["g"] * (m + 1) + leads["r"], weights=leads["a"], minlength=size)
        ah = ah.reshape(n_groups, m + 1)
        sums["amount_entered"] = np.cumsum(ah[:, ::-1], axis=1)[:, ::-1][:, 1:]
    c = funnel._Counts(**{k: sums[k] for k in names})
    j = _fake_journeys(parts, spec)
    table = funnel._funnel_table(
        j, gvals, c, level=spec["level"], method=spec["method"], exclude_col=spec["exclude"] is not None
    )
    if spec["what"] != "cohorts":
        return table
    m = j.m
    young = np.zeros_like(c.entered, dtype=bool)
    young[:, :-1] = c.matured[:, :-1] < c.entered[:, :-1]
    immature = np.cumsum(young, axis=1) > 0
    if m > 1:
        immature[:, -1] = immature[:, -2]
    if spec["as_of_ns"] is None:
        immature[:] = False
    table["immature"] = immature.reshape(-1)
    by = spec["by"]
    cols = [*by, "cohort"] + [col for col in table.columns if col not in (*by, "cohort")]
    return table[cols]


def _fake_journeys(parts: list[dict], spec: dict) -> SimpleNamespace:
    ss = spec["ss"]
    settings = dict(parts[0]["settings"])
    settings.update(spec["settings"])
    return SimpleNamespace(ss=ss, steps=ss.steps, m=len(ss.steps), settings=settings)


def outcomes_table(parts: list[dict], spec: dict) -> pd.DataFrame:
    """Combine step of outcomes(): the same columns as :func:`funnelkit.funnel.outcomes`."""
    ss, by, level = spec["ss"], spec["by"], spec["level"]
    names = [f.name for f in fields(funnel._Counts)] + ["won", "lost", "stalled", "open", "reached_goal"]
    if len(ss.lost) > 1:
        names.append("lost_kind")
    has_amount = parts[0]["has_amount"]
    if has_amount:
        names += [f"{c}{k}" for c in ("won_amount", "open_amount", "stalled_amount") for k in ("", "_leads", "_valued")]
    gvals, sums, maps = _combine_groups(parts, arrays=names)
    n_groups = max(len(gvals), 1)
    leads = _ordered_leads(parts, maps)
    if leads is not None:
        for col, kind in (("won_amount", 1), ("open_amount", 2), ("stalled_amount", 3)):
            sums[col] = np.bincount(
                leads["g"], weights=np.where(leads["kind"] == kind, leads["a"], 0.0), minlength=n_groups
            )
    agg = gvals.copy() if len(gvals.columns) else pd.DataFrame(index=pd.RangeIndex(1))
    agg["won"], agg["lost"] = sums["won"], sums["lost"]
    lost_cols = []
    if len(ss.lost) > 1:
        for i, name in enumerate(ss.lost):
            col = f"lost_{name}"
            agg[col] = sums["lost_kind"][:, i]
            lost_cols.append(col)
    agg["stalled"], agg["open"], agg["reached_goal"] = sums["stalled"], sums["open"], sums["reached_goal"]
    agg["leads"] = agg["won"] + agg["lost"] + agg["stalled"] + agg["open"] + agg["reached_goal"]
    decided = agg["won"] + agg["lost"] + agg["stalled"]
    with np.errstate(invalid="ignore", divide="ignore"):
        agg["decided_win_rate"] = agg["won"] / decided.where(decided > 0)
    if ss.won is None:  # as funnel.outcomes: no won outcome, no win rate
        agg["win_rate"] = agg["ci_low"] = agg["ci_high"] = agg["decided_win_rate"] = np.nan
    else:
        c = SimpleNamespace(entered=sums["entered"], matured=sums["matured"],
                            matured_converted=sums["matured_converted"])
        overall, olo, ohi = funnel._overall_rates(c, level=level)
        agg["win_rate"], agg["ci_low"], agg["ci_high"] = overall[:, -1], olo[:, -1], ohi[:, -1]
    cols = [
        *by,
        "leads",
        "won",
        "lost",
        *lost_cols,
        "stalled",
        "open",
        *(["reached_goal"] if funnel._goal_is_last_stage(ss) else []),
        "win_rate",
        "ci_low",
        "ci_high",
        "decided_win_rate",
    ]
    if has_amount:
        for col in ("won_amount", "open_amount", "stalled_amount"):
            unknown = (sums[f"{col}_leads"] > 0) & (sums[f"{col}_valued"] == 0)
            agg[col] = np.where(unknown, np.nan, np.asarray(sums[col], dtype=float))
            cols.append(col)
    out = agg[cols].reset_index(drop=True)
    settings = _fake_journeys(parts, spec).settings
    out.attrs["horizon"] = settings.get("horizon")
    out.attrs["funnel"] = dict(settings, stages=ss.name)
    return out


# ---------------------------------------------------------------------------
# pipeline kernels: per-lead rows, concatenated
# ---------------------------------------------------------------------------
def _real_ids(out: pd.DataFrame, lead: str, info: dict | None) -> pd.DataFrame:
    """Put the lead ids back into a per-lead table whose chunk had them numbered."""
    ids = (info or {}).get("lead_ids")
    if ids is None:
        return out
    obj = np.asarray(ids, dtype=object)
    codes = out[lead].to_numpy().astype(np.int64)
    out = out.copy(deep=False)
    # built as the one-core function builds the column (an object array of ids)
    out[lead] = pd.DataFrame({lead: obj[codes]}, index=out.index)[lead]
    return out


def snapshot(chunk: pd.DataFrame, spec: dict, info: dict | None = None) -> dict:
    """Snapshot rows of a chunk, and the counts behind the snapshot's notes."""
    chunk, gone, later, _ = drop_unplaceable(
        chunk,
        lead=spec["lead"],
        time=spec["time"],
        as_of_ns=spec["T"],
        log_max=spec["log_max"],
        count_later=True,
    )
    out = _quiet(
        pipeline.snapshot,
        chunk,
        as_of=pd.Timestamp(int(spec["T"]), unit="ns"),
        stages=spec["ss"],
        include_closed=spec["include_closed"],
        segments=spec["segments"],
        lead=spec["lead"],
        stage=spec["stage"],
        time=spec["time"],
        amount=spec["amount"],
    )
    return {"frame": _real_ids(out, spec["lead"], info), "excluded": gone, "later": later}


def snapshot_table(parts: list[dict], spec: dict) -> pd.DataFrame:
    frames = [p["frame"] for p in parts]
    nonempty = [f for f in frames if len(f)] or frames[:1]
    out = pd.concat(nonempty, ignore_index=True) if len(nonempty) > 1 else nonempty[0].copy()
    out = out.sort_values(["stage", spec["lead"]], kind="stable").reset_index(drop=True)
    excl = sum(p["excluded"] for p in parts)
    later = sum(p["later"] for p in parts)
    T = spec["T"]
    notes = list(spec["notes"])
    if excl:
        notes.append(
            f"{excl:,} lead(s) have only undated events (unknown time): they cannot be "
            f"placed before {pipeline._ts(T)} and are excluded from this past snapshot."
        )
    if later:
        notes.append(
            f"{later:,} lead(s) have undated events and their first dated event after "
            "as_of: whether they existed at as_of is unknown; excluded."
        )
    n_after = int((out["flag"] == "after_close").sum()) if len(out) else 0
    if n_after:
        notes.append(
            f"{n_after:,} lead(s) have events after their outcome (flag 'after_close'); they are "
            "reported with their latest outcome - check the data."
        )
    out.attrs = {
        "as_of": pipeline._ts(T),
        "stage_set": spec["ss"],
        "excluded_undated": excl + later,
        "notes": notes,
    }
    return out


def durations(chunk: pd.DataFrame, spec: dict, info: dict | None = None) -> dict:
    """Stage visits of a chunk, with the log position of each row's lead."""
    rows = len(chunk)
    chunk, gone, _, kept = drop_unplaceable(
        chunk, lead=spec["lead"], time=spec["time"], as_of_ns=spec["T"], log_max=spec["log_max"]
    )
    out = _quiet(
        pipeline.durations,
        chunk,
        as_of=pd.Timestamp(int(spec["T"]), unit="ns"),
        stages=spec["ss"],
        per=spec["per"],
        segments=spec["segments"],
        lead=spec["lead"],
        stage=spec["stage"],
        time=spec["time"],
        amount=spec["amount"],
    )
    excluded = gone
    for note in out.attrs.get("notes", []):
        if "with only undated events are left out" in note:
            excluded += int(note.split(" ", 1)[0].replace(",", ""))
    first = None
    if (info or {}).get("rows") is not None:
        fp, uniq = first_positions(chunk, spec["lead"], positions(info, rows, kept))
        first = fp[uniq.get_indexer(out[spec["lead"]])]
    nothing = any(note.startswith("no lead is known at as_of") for note in out.attrs.get("notes", []))
    out = _real_ids(out, spec["lead"], info)
    return {"frame": out, "excluded": excluded, "first": first, "nothing": nothing}


def durations_table(parts: list[dict], spec: dict) -> pd.DataFrame:
    frames = [p["frame"] for p in parts]
    nonempty = [f for f in frames if len(f)] or frames[:1]
    out = pd.concat(nonempty, ignore_index=True) if len(nonempty) > 1 else nonempty[0].copy()
    if parts and parts[0]["first"] is not None and len(nonempty) > 1:
        first = np.concatenate([p["first"] for p in parts if len(p["frame"])])
        out = out.take(np.argsort(first, kind="stable")).reset_index(drop=True)
    T = spec["T"]
    excl = sum(p["excluded"] for p in parts)
    notes = []
    if excl:
        notes.append(
            f"{excl:,} lead(s) with only undated events are left out: their stage visits "
            "cannot be placed before as_of."
        )
    if all(p["nothing"] for p in parts):
        notes.append(f"no lead is known at as_of={pipeline._ts(T)}: there are no stage visits to measure.")
    out.attrs = {"as_of": pipeline._ts(T), "stage_set": spec["ss"], "notes": notes}
    return out


# ---------------------------------------------------------------------------
# transition model: the stay events of each chunk, put one after the other
# ---------------------------------------------------------------------------
def stay_events(chunk: pd.DataFrame, spec: dict, info: dict | None = None) -> dict:
    """The stay events of a chunk (``transitions._stay_events``: the per-lead part of
    ``TransitionModel.fit``), with the log position of each lead's first event when the
    chunk's rows are not a contiguous range of the log."""
    fit = spec["fit"]
    lead = fit["lead"]
    info = info or {}
    ids = info.get("lead_ids")
    if ids is not None:  # numbered by runs of a lead-sorted chunk: first-appearance order
        codes, ids = chunk[lead].to_numpy().astype(transitions._index_dtype(len(ids))), pd.Index(ids)
    else:
        codes, ids = checked_leads(chunk, lead=lead)
    out = transitions._stay_events(chunk, fit, lead_codes=codes, lead_ids=ids)
    out["first"] = None
    if info.get("rows") is not None:
        pos = positions(info, len(chunk), None)
        first = np.empty(len(ids), dtype=np.int64)
        first[codes[::-1]] = pos[::-1]
        out["first"] = first
    return out


def merge_stay_events(parts: list[dict]) -> dict:
    """The stay events of the whole log from those of its lead-partitioned chunks (their
    event arrays ``lc``, ``tt``, ``st`` are taken out of ``parts``).

    Leads are numbered in the order of their first event in the log (as
    ``pd.factorize`` numbers them on one core): chunk after chunk, or by
    the first events' positions when the chunks were hashed; each lead's
    events keep their order, so the arrays are the one-core arrays, element
    for element.
    """
    if len(parts) == 1:
        return parts[0]
    full = [p for p in parts if len(p["lead_ids"])] or parts[:1]
    sizes = np.array([len(p["lead_ids"]) for p in full], dtype=np.int64)
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    lead_ids = full[0]["lead_ids"].append([p["lead_ids"] for p in full[1:]]) if len(full) > 1 else full[0]["lead_ids"]
    cdt = transitions._index_dtype(int(sizes.sum()))  # lead codes: int32 below 2**31 leads
    # the event arrays are moved out of the parts one part at a time (each part's are freed
    # once copied), so that the whole log's and the parts' are not all held at once
    n_ev = sum(p["lc"].size for p in full)
    lc = np.empty(n_ev, dtype=cdt)
    tt = np.empty(n_ev, dtype=np.int64)
    st = np.empty(n_ev, dtype=np.result_type(*[p["st"] for p in full]))
    a = 0
    for p, off in zip(full, offsets):
        b = a + p["lc"].size
        np.add(p.pop("lc"), off, out=lc[a:b], casting="unsafe")
        tt[a:b] = p.pop("tt")
        st[a:b] = p.pop("st")
        a = b
    segments = {
        col: pd.concat([p["segments"][col] for p in full], ignore_index=True) for col in full[0]["segments"]
    }
    value = None if full[0]["value"] is None else np.concatenate([p["value"] for p in full])
    if full[0]["first"] is not None and len(full) > 1:
        order = np.argsort(np.concatenate([p["first"] for p in full]), kind="stable")
        rank = np.empty(order.size, dtype=cdt)
        rank[order] = np.arange(order.size, dtype=cdt)
        lead_ids = lead_ids.take(order)
        segments = {col: s.take(order).reset_index(drop=True) for col, s in segments.items()}
        value = None if value is None else value[order]
        lc = rank[lc]
        o = np.argsort(lc, kind="stable")
        lc, tt, st = lc[o], tt[o], st[o]
    starts = [p["data_start"] for p in parts if p["data_start"] is not None]
    return {
        "lead_ids": lead_ids,
        "T": parts[0]["T"],
        "data_start": min(starts) if starts else None,
        "kept": any(p["kept"] for p in parts),
        "n_after": sum(p["n_after"] for p in parts),
        "n_after_leads": sum(p["n_after_leads"] for p in parts),
        "lc": lc,
        "tt": tt,
        "st": st,
        "segments": segments,
        "value": value,
        "first": None,
    }
