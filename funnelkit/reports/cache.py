"""The run's cache: the validated event log, read once per run and shared by the reports.

Reading and validating a large CSV is the costly part of a report (a
5M-event log: about 16 s and 2 GiB).  The batch runner does it once, then
writes each report's leads (the overall report: every lead) as a Parquet
file in the run's private folder; each report's kernel reads its own file,
already validated, instead of the raw data.  The file carries what the
load noticed (the load report), the stage set, where the data came from
(path and SHA-256) and the first and last event time of the whole log, so a
report built from it says exactly what one built from the raw file says.

Examples
--------
>>> import tempfile, funnelkit as fk
>>> from pathlib import Path
>>> log = fk.datasets.load_demo(300, seed=1)
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = write_cache(log, Path(tmp) / "all.parquet", source="demo")
...     back, meta = read_cache(path)
>>> back.equals(log), meta["events"] == len(log), meta["source"]
(True, True, 'demo')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..data import TIME, LoadReport, log_stage_set
from ..exceptions import ReportError
from ..stages import StageSet
from .monthly import leaks_to_records

__all__ = ["CACHE_VERSION", "read_cache", "release_memory", "write_cache"]

#: Version of the cache's metadata; a reader refuses another.
CACHE_VERSION = 1
_KEY = b"funnelkit.cache"


def release_memory() -> None:
    """Give memory freed by a loaded log back to the system (Arrow's pool, then glibc's heap).

    Reading a log through Arrow leaves its buffers in Arrow's allocator and
    pandas' copies in the C heap after they are freed; a report kernel or the
    batch runner that holds on to them makes every report of a run cost more.

    Examples
    --------
    >>> release_memory()  # an optimisation: never fails
    """
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except Exception:  # an optimisation only
        pass
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:  # not glibc (macOS, Windows, musl): nothing to trim
        pass


def _stamp(value) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()


def write_cache(
    log: pd.DataFrame,
    path: str | Path,
    *,
    source: str = "",
    sha256: str = "",
    segment: tuple[str, str] | None = None,
    data_range: tuple[object, object] | None = None,
    peers: pd.DataFrame | None = None,
) -> Path:
    """Write a validated event log (or a segment of it) as a Parquet cache.

    Parameters
    ----------
    log : DataFrame
        A canonical event log (from :func:`funnelkit.read_events` or a
        segment of one); its load report and stage set are kept.
    path : path
        The Parquet file to write (its folder is created).
    source, sha256 : str
        Where the data came from and the SHA-256 of its bytes (provenance).
    segment : (column, value), optional
        The segment ``log`` holds, checked by the reader.
    data_range : (first, last), optional
        First and last event time of the whole log (default: those of ``log``).
    peers : DataFrame, optional
        The segment's leak rows against the other segments of its split
        (:func:`funnelkit.reports.monthly.segment_leaks`), computed once per
        run over every lead; a report cannot compute them from its own leads.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, funnelkit as fk
    >>> from pathlib import Path
    >>> log = fk.datasets.load_demo(200, seed=2)
    >>> referral = log[log["source"] == "referral"]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_cache(referral, Path(tmp) / "run" / "referral.parquet", source="demo.csv",
    ...                        segment=("source", "referral"),
    ...                        data_range=(log["timestamp"].min(), log["timestamp"].max()))
    ...     print(path.relative_to(tmp))
    ...     meta = read_cache(path)[1]
    run/referral.parquet
    >>> meta["segment"], meta["events"] == len(referral), meta["data_start"] == log["timestamp"].min()
    (('source', 'referral'), True, True)
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rep = log.attrs.get("funnelkit")
    ss = log_stage_set(log)
    if data_range is None:
        times = log[TIME] if TIME in log.columns else pd.Series(dtype="datetime64[ns]")
        data_range = (times.min(), times.max())
    meta = {
        "version": CACHE_VERSION,
        "source": source or (rep.source if isinstance(rep, LoadReport) else ""),
        "sha256": sha256,
        "segment": list(segment) if segment else None,
        "data_start": _stamp(data_range[0]),
        "data_end": _stamp(data_range[1]),
        "events": len(log),
        "load": None if not isinstance(rep, LoadReport) else {
            "source": rep.source, "rows_read": rep.rows_read, "events": rep.events, "leads": rep.leads,
            "duplicates_dropped": rep.duplicates_dropped, "flags": dict(rep.flags), "notes": list(rep.notes),
        },
        "stage_set": ss.to_dict() if ss is not None else None,
        "peers": None if peers is None else leaks_to_records(peers),
    }
    bare = log.copy(deep=False)
    bare.attrs = {}  # the load report is not JSON; it travels in our own metadata
    table = pa.Table.from_pandas(bare, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _KEY: json.dumps(meta).encode()})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def read_cache(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read a cache written by :func:`write_cache`.

    Returns
    -------
    (log, meta)
        The event log, with its load report in ``attrs["funnelkit"]`` as
        after :func:`funnelkit.read_events`, and the metadata: ``source``,
        ``sha256``, ``segment``, ``data_start``, ``data_end`` (Timestamps or
        NaT), ``events``, ``peers`` (records of the segment's peer leak
        rows, or None).

    Raises
    ------
    ReportError
        If the file is missing or not a funnelkit cache of this version.

    Examples
    --------
    >>> import tempfile, funnelkit as fk
    >>> from pathlib import Path
    >>> log = fk.datasets.load_demo(200, seed=2)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     back, meta = read_cache(write_cache(log, Path(tmp) / "all.parquet", sha256="ab12"))
    >>> back.equals(log), back.attrs["funnelkit"].leads == log.attrs["funnelkit"].leads, meta["sha256"]
    (True, True, 'ab12')
    >>> try:
    ...     read_cache("nowhere.parquet")
    ... except ReportError as exc:
    ...     print(str(exc).split(". ")[0])
    cache file not found: nowhere.parquet
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise ReportError(f"cache file not found: {path}. It is written by 'funnelkit report' for the run "
                          "that uses it; to run a report on its own, leave the 'cache' parameter empty.")
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(_KEY)
    if raw is None:
        raise ReportError(f"{path} is not a funnelkit cache (no {_KEY.decode()} metadata).")
    meta = json.loads(raw)
    if meta.get("version") != CACHE_VERSION:
        raise ReportError(f"{path}: cache version {meta.get('version')!r}, this funnelkit reads {CACHE_VERSION}.")
    log = table.to_pandas()
    del table
    release_memory()  # the Parquet pages and Arrow's copy: a kernel does not keep them
    load = meta.get("load")
    if isinstance(load, Mapping):
        ss = meta.get("stage_set")
        log.attrs["funnelkit"] = LoadReport(
            **load, stage_set=StageSet.from_dict(ss, source=str(path)) if ss else None)
    for key in ("data_start", "data_end"):
        meta[key] = pd.Timestamp(meta[key]) if meta.get(key) else pd.NaT
    if meta.get("segment"):
        meta["segment"] = tuple(meta["segment"])
    return log, meta
