"""The batch runner: every report of a plan, in parallel, with an index.

:func:`run_plan` checks the plan, reads and validates its data once,
expands it into reports, runs each report notebook through papermill in
worker processes (one Jupyter kernel per report), and writes::

    <output>/<month>/<split>/<value>.ipynb    executed notebook
    <output>/<month>/<split>/<value>.html     the report, without code
    <output>/<month>/index.html               summary table linking to each
    <output>/<month>/summary.csv              the same, as data

One run per month folder at a time: a run holds a lock on the month folder
(``.funnelkit.lock``, a :mod:`filelock` lock the system releases if the run
dies); a second run of the same month stops at once with
:class:`RunLockedError`, or waits with ``wait=True``.  Each run works in its
own private folder ``<month>/.partial-<pid>-<random>/``: temporary files,
and the run's cache (the validated event log of each report's leads, in
Parquet, which the kernels read instead of the raw data).  Only its owner
removes it; a folder left by a run that was killed outright is removed by
the next run of that month.

Reliability: a report that fails does not stop the others; its notebook is
kept as ``<value>.failed.ipynb`` (and ``.failed.html``) and the index shows
the error.  Every file is written to a temporary name and renamed into place
when complete, so a killed run leaves no half-written report.  The index is
written from what is on disk when the run ends.  A rerun rewrites the same
files; ``skip_existing=True`` keeps reports already written and runs only
the missing ones.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from multiprocessing.pool import ThreadPool
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import PlanError, ReportError
from .formatting import NumberFormat, spreadsheet_safe
from .index import write_index
from .monthly import data_fingerprint
from .notebook import atomic_write, read_records, run_notebook, template_parameters
from .plan import OPTIONAL_PARAMETERS, Plan, ReportJob, expand_plan, load_plan

__all__ = ["LOCK_NAME", "STATUS_COLUMNS", "RunLockedError", "demo_plan", "run_demo", "run_plan"]

#: Columns of the status table returned by :func:`run_plan`.
STATUS_COLUMNS = [
    "split", "value", "status", "leads_entered", "leads_entered_change", "won", "won_change",
    "revenue", "revenue_change", "win_rate", "win_rate_change", "target_attainment",
    "seconds", "html", "notebook", "error", "warnings", "win_rate_note",
]
_HEADLINE_FIELDS = ["leads_entered", "won", "revenue", "win_rate", "target_attainment"]
#: The lock file of a month folder.
LOCK_NAME = ".funnelkit.lock"
#: Prefix of a run's private folder in the month folder: ``.partial-<pid>-<random>``.
PARTIAL = ".partial"
_PARTIAL_PID = re.compile(r"^\.partial-(\d+)-")


class RunLockedError(ReportError):
    """Another run is writing the same month folder (and ``wait`` was not asked for).

    Examples
    --------
    >>> import funnelkit as fk
    >>> issubclass(RunLockedError, fk.ReportError), issubclass(RunLockedError, fk.FunnelkitError)
    (True, True)

    While another run holds the month folder's lock, a second run of the
    same month stops at once (before running any report):

    >>> import tempfile
    >>> from pathlib import Path
    >>> from filelock import FileLock
    >>> from funnelkit.reports import LOCK_NAME, Plan, run_plan
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     plan = Plan.from_dict({"data": "demo", "stages": "pipeline4", "month": "2025-09", "output": tmp})
    ...     (Path(tmp) / "2025-09").mkdir()
    ...     with FileLock(str(Path(tmp) / "2025-09" / LOCK_NAME)):  # the other run
    ...         try:
    ...             run_plan(plan)
    ...         except RunLockedError as exc:
    ...             print(type(exc).__name__, str(exc).split(" is writing")[0])
    RunLockedError another funnelkit run
    """


def _worker_init() -> None:
    # Workers leave interrupts to the parent, which terminates them and
    # cleans up; a worker's own SIGTERM ends it at once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_job(task: tuple) -> dict:
    template, out_dir, tmp_dir, job, timeout = task
    start = time.perf_counter()
    try:
        res = run_notebook(template, out_dir, job.name, job.parameters, title=job.title,
                           tmp_dir=tmp_dir, timeout=timeout)
    except Exception as exc:  # a report must never take the batch down
        return {"split": job.split, "value": job.value, "status": "failed", "seconds": time.perf_counter() - start,
                "html": None, "notebook": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"split": job.split, "value": job.value, "status": "ok" if res.ok else "failed",
            "seconds": res.seconds, "html": str(res.html) if res.html else None,
            "notebook": str(res.notebook) if res.notebook else None, "error": res.error}


def _records(notebook: str | None) -> dict:
    """Headline fields and warnings read back from an executed notebook (empty if unreadable)."""
    out: dict = {}
    if not notebook:
        return out
    try:
        rec, status = read_records(notebook)
    except Exception:  # an unreadable notebook just has no numbers in the index
        return out
    if status and status.get("warnings"):
        out["warnings"] = "\n".join(str(w) for w in status["warnings"])
    if not rec:
        return out
    metrics = {m["metric"]: m for m in rec.get("metrics", [])}
    out["win_rate_note"] = _win_rate_note(rec)
    for key in _HEADLINE_FIELDS:
        m = metrics.get(key)
        out[key] = math.nan if m is None or m.get("value") is None else float(m["value"])
        if key != "target_attainment":
            ch = None if m is None else m.get("change")
            out[f"{key}_change"] = math.nan if ch is None else float(ch)
    return out


def _win_rate_note(rec: dict) -> str:
    """``"none marked lost"`` when the month's win rate is 100% only because no lead was marked
    lost in it (the headline's ``none_marked_lost``; the report's card says why), else ``""``."""
    return "none marked lost" if rec.get("none_marked_lost") else ""


@contextmanager
def _sigterm_as_interrupt():
    """Treat SIGTERM like Ctrl-C while the batch runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------
# the month folder: lock, private folders
# ---------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holders(month_dir: Path) -> list[int]:
    """Process ids of the runs whose private folders are in the month folder and still running."""
    pids = []
    for d in month_dir.glob(f"{PARTIAL}-*"):
        m = _PARTIAL_PID.match(d.name)
        if m and _alive(int(m.group(1))) and int(m.group(1)) != os.getpid():
            pids.append(int(m.group(1)))
    return pids


@contextmanager
def _month_lock(month_dir: Path, *, wait: bool, say: Callable[[str], None]):
    """Hold the month folder's lock: fail at once (RunLockedError) or wait for it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(month_dir / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        pids = _holders(month_dir)
        who = f" (process {', '.join(map(str, pids))})" if pids else ""
        if not wait:
            raise RunLockedError(
                f"another funnelkit run{who} is writing {month_dir} right now. Wait for it to finish, or "
                "pass --wait to start as soon as it is done (wait=True in Python)."
            ) from None
        say(f"waiting: another funnelkit run{who} is writing {month_dir} ...")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _clean_stale(month_dir: Path, mine: Path) -> None:
    """Remove what runs that were killed outright left (called with the month's lock held)."""
    for d in month_dir.glob(f"{PARTIAL}*"):
        if d == mine or not d.is_dir():
            continue
        m = _PARTIAL_PID.match(d.name)
        if m is None or not _alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)
    for tmp in month_dir.rglob(".*.tmp"):
        if not any(part.startswith(PARTIAL) for part in tmp.relative_to(month_dir).parts):
            tmp.unlink(missing_ok=True)


def _write_caches(log: pd.DataFrame, plan: Plan, jobs: list[ReportJob], folder: Path, *, month_text: str,
                  say: Callable[[str], None] = lambda _line: None) -> dict[str, str]:
    """One Parquet cache per report (its leads' events, validated); returns job key -> path.

    Each segment's cache also carries its leak rows against the other
    segments of its split (:func:`~funnelkit.reports.monthly.segment_leaks`),
    computed here once per split over every lead: a report's kernel only has
    its own leads.
    """
    from .._common import time_zone
    from ..exceptions import FunnelkitError
    from ..funnel import leaks
    from .cache import write_cache
    from .monthly import month_window, segment_rows

    fp = data_fingerprint(plan.data)
    data_range = (log["timestamp"].min(), log["timestamp"].max()) if len(log) else (pd.NaT, pd.NaT)
    stamp = month_window(month_text, plan.as_of or None, time_zone(log["timestamp"]) if len(log.columns) else None)[2]
    paths: dict[str, str] = {}
    lead_codes = None
    by_split: dict[str, tuple[np.ndarray, pd.Index]] = {}
    peers: dict[str, pd.DataFrame | None] = {}
    for job in jobs:
        path = folder / "cache" / job.folder / f"{job.name}.parquet"
        mine = None
        if job.overall:
            sub, segment = log, None
        else:
            if job.split not in by_split:  # each lead's value on its first event, as select_segment
                if lead_codes is None:
                    lead_codes = pd.factorize(log["lead_id"])[0]
                first = log.loc[~log["lead_id"].duplicated(), job.split].astype("string")
                codes, uniques = pd.factorize(first)
                by_split[job.split] = (codes[lead_codes], pd.Index(uniques))
            if job.split not in peers:  # the leak finder over every lead, once per split
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # each report shows the warnings of its own figures
                        # segments on different stage sets are compared on the milestones they share
                        peers[job.split] = leaks(log, by=job.split, as_of=stamp, noun=plan.noun,
                                                 stages=plan.stage_sets)
                except FunnelkitError as exc:
                    peers[job.split] = None
                    say(f"note: the leaks of each {job.split} against the others could not be found: {exc}")
            if peers[job.split] is not None:
                mine = segment_rows(peers[job.split], job.split, job.value)
            event_codes, uniques = by_split[job.split]
            k = uniques.get_loc(job.value)
            sub, segment = log.loc[event_codes == k], (job.split, job.value)
        if plan.stage_sets is not None:  # validated with the report's own set, or as milestones
            sub = plan.job_log(sub, job.parameters["stages"])
        write_cache(sub, path, source=fp["source"], sha256=fp["sha256"], segment=segment, data_range=data_range,
                    peers=mine)
        paths[_key(job)] = str(path)
        del sub
    return paths


def _links(job: ReportJob, every: list[ReportJob], month_text: str, out_root: Path) -> dict:
    """Navigation of one report page, relative to it: the index, its siblings, the same report a month away."""
    from urllib.parse import quote

    from .monthly import parse_month

    def href(*parts: str) -> str:
        return "/".join(quote(p) for p in parts)

    siblings = []
    for other in every:
        if other.overall and not job.overall:
            siblings.append({"label": "All leads", "href": href("..", other.folder, f"{other.name}.html"),
                             "current": False})
        elif other.split == job.split and not other.overall:
            siblings.append({"label": str(other.value), "href": href(f"{other.name}.html"),
                             "current": other.name == job.name})
    links: dict = {"index": "../index.html", "split": "" if job.overall else str(job.split), "siblings": siblings}
    period = parse_month(month_text)
    for key, other in (("previous", period - 1), ("next", period + 1)):
        page = out_root / str(other) / job.folder / f"{job.name}.html"
        if page.is_file():
            links[key] = href("..", "..", str(other), job.folder, f"{job.name}.html")
            links[f"{key}_label"] = other.strftime("%B %Y")
    return links


def _key(job: ReportJob) -> str:
    return f"{job.folder}/{job.name}"


def _on_disk(job: ReportJob, month_dir: Path) -> dict | None:
    """The job's report as it is on disk: a finished one, a failed one, or None."""
    folder = month_dir / job.folder
    nb, page = folder / f"{job.name}.ipynb", folder / f"{job.name}.html"
    failed, failed_html = folder / f"{job.name}.failed.ipynb", folder / f"{job.name}.failed.html"
    if nb.is_file() and page.is_file():
        return {"status": "kept", "html": str(page), "notebook": str(nb), "error": ""}
    if failed.is_file():
        return {"status": "failed", "notebook": str(failed),
                "html": str(failed_html) if failed_html.is_file() else None}
    return None


# ---------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------
def run_plan(
    plan: str | Path | Plan,
    *,
    month: str | None = None,
    jobs: int | None = None,
    only=None,
    skip_existing: bool = False,
    output: str | Path | None = None,
    progress: bool | None = None,
    executor: str = "thread",
    template: str | Path | None = None,
    wait: bool = False,
    echo: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run every report of a plan in parallel and write the index.

    Parameters
    ----------
    plan : path or Plan
        A YAML plan (see :mod:`funnelkit.reports.plan`) or a loaded one.
    month : "YYYY-MM", optional
        Overrides the plan's month.
    jobs : int, optional
        Reports run at once (default: the number of CPU cores, at most the
        number of reports).
    only : optional
        A subset: ``["product=Enterprise", "source"]`` or a mapping (see
        :func:`~funnelkit.reports.parse_only`); overrides the plan's.
    skip_existing : bool
        Keep reports whose ``.html`` and ``.ipynb`` exist; run the rest.
    output : path, optional
        Overrides the plan's output folder.
    progress : bool, optional
        Show a progress bar (default: when stderr is a terminal).
    executor : {"thread", "process"}
        Drive the kernels (each its own process either way) from threads of
        this process (default: no extra Python per report, so two reports
        at once on a 5M-event log peak at 1.8 GiB instead of 2.2 GiB) or from
        worker processes.
    template : path, optional
        Overrides the plan's notebook template.
    wait : bool
        When another run is writing the same month folder, wait for it to
        finish (default: raise :class:`RunLockedError` at once).
    echo : callable, optional
        Receives the notes and, without a progress bar, one line per finished
        report (e.g. ``print``); with the bar, those lines are printed above it.

    Returns
    -------
    DataFrame
        The status table, one row per report (columns :data:`STATUS_COLUMNS`):
        ``split``, ``value``, ``status`` of each report selected (all, or
        those of ``only``): ``ok``, ``warning`` (written, but the report
        warns, e.g. the month is past the data's end; the text is in
        ``warnings``), ``failed`` or ``skipped``; the headline numbers read
        back from the executed notebook (``leads_entered``, ``won``,
        ``revenue``, ``win_rate`` and their ``*_change`` from the previous
        month, ``target_attainment``), ``seconds``, ``html``, ``notebook``
        (paths), ``error``, ``warnings`` and ``win_rate_note``
        (``"none marked lost"`` when the win rate is 100% only because no
        lead was marked lost in the month, else ``""``).  Statuses are checked against
        the disk at the end: a report that is not there is ``failed``.
        ``attrs`` holds ``index`` (path of index.html), ``folder``, ``month``,
        ``notes``, ``jobs`` and ``seconds`` (wall time).  The index and
        ``summary.csv`` list the whole plan: reports not selected this time
        appear with their earlier output (status ``kept``) if they have one.

    Raises
    ------
    PlanError
        If the plan is invalid (before anything runs).
    RunLockedError
        If another run is writing the month folder and ``wait`` is False.
    KeyboardInterrupt
        When interrupted (Ctrl-C or SIGTERM); workers are stopped and
        temporary files removed first.

    Examples
    --------
    >>> from funnelkit.reports import run_plan
    >>> status = run_plan("params/demo_monthly.yaml", jobs=2)  # doctest: +SKIP
    >>> status[["split", "value", "status", "leads_entered"]]  # doctest: +SKIP
    """
    wall = time.perf_counter()
    if executor not in {"process", "thread"}:
        raise ValueError(f"executor must be 'process' or 'thread', got {executor!r}.")
    if not isinstance(plan, Plan):
        plan = load_plan(plan)
    template = plan.check_template(template)
    optional = [p for p in OPTIONAL_PARAMETERS if p in template_parameters(template)]
    given = {"currency": plan.currency, "thousands": plan.thousands != ",", "decimal": plan.decimal != ".",
             "noun": plan.noun != "leads"}
    unused = [p for p, set_ in given.items() if set_ and p not in optional]
    if plan.stage_sets is not None and "cache" not in optional:
        raise PlanError(f"{plan.source}: stages: a stage set per segment value needs a template with a 'cache' "
                        f"parameter (the run hands each report its leads, validated with their own set); "
                        f"{template} has none. Use the shipped template or add 'cache' to its parameters cell.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = plan.load()
    load_notes = list(dict.fromkeys(f"{w.message}" for w in caught))
    reports, notes = expand_plan(plan, log, month=month, only=only)
    every, _ = expand_plan(plan, log, month=month, only=[])  # the whole plan, for the index
    notes = load_notes + notes
    sss = plan.stage_sets
    if sss is not None:
        own = "; ".join(f"{v}: {ss.name}" for v, ss in sss.sets.items())
        own += f"; every other {sss.column}: {sss.default.name}" if sss.default is not None else ""
        mixed = sorted({"over all leads" if j.overall else f"per {j.split}" for j in every
                        if isinstance(j.parameters["stages"], dict)})
        notes.append(f"Stage sets per {sss.column} ({own}): each {sss.column} report uses its own"
                     + (f"; the reports {' and '.join(mixed)} count the milestones every set shares "
                        f"({', '.join([*plan.milestones.steps, *plan.milestones.lost])})." if mixed else "."))
    notes += [f"The template {template} has no parameter {p!r}: the plan's {p} is not used." for p in unused]
    if not every:
        raise PlanError(f"{plan.source}: the plan has no reports: no split column has a value in the data.")
    month_text = every[0].parameters["month"]
    out_root = Path(output).resolve() if output is not None else plan.output
    month_dir = out_root / month_text
    try:
        month_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the output folder {month_dir}: {exc}") from None
    say = echo or (lambda _line: None)
    for n in notes:
        say(f"note: {n}")
    if jobs is None:
        jobs = os.cpu_count() or 1
    if jobs < 1:
        raise PlanError(f"jobs must be at least 1, got {jobs}.")

    with _sigterm_as_interrupt(), _month_lock(month_dir, wait=wait, say=say):
        tmp_dir = Path(tempfile.mkdtemp(prefix=f"{PARTIAL}-{os.getpid()}-", dir=month_dir))
        try:
            _clean_stale(month_dir, tmp_dir)
            rows: dict[tuple[str, str], dict] = {}
            todo: list[ReportJob] = []
            for job in reports:
                disk = _on_disk(job, month_dir)
                if skip_existing and disk is not None and disk["status"] == "kept":
                    rows[(job.split, job.value)] = {"split": job.split, "value": job.value, "status": "skipped",
                                                    "seconds": 0.0, "html": disk["html"],
                                                    "notebook": disk["notebook"], "error": ""}
                else:
                    todo.append(job)
            caches = (_write_caches(log, plan, todo, tmp_dir, month_text=month_text, say=say)
                      if todo and "cache" in optional else {})
            del log  # the kernels read their caches: the run does not hold the data meanwhile
            gc.collect()
            _release_arrow_memory()
            n_workers = max(1, min(jobs, len(todo)))
            tasks = []
            for job in todo:
                params = {k: v for k, v in job.parameters.items() if k not in OPTIONAL_PARAMETERS or k in optional}
                if _key(job) in caches:
                    params["cache"] = caches[_key(job)]
                if "links" in optional:
                    params["links"] = _links(job, every, month_text, out_root)
                job = ReportJob(job.split, job.value, job.name, params, job.title, folder=job.folder,
                                overall=job.overall)
                tasks.append((str(template), str(month_dir / job.folder), str(tmp_dir), job, plan.timeout))
            _run_all(tasks, todo, rows, n_workers=n_workers, executor=executor, progress=progress,
                     total=len(reports), month_text=month_text, say=say)
            status, overview = _statuses(reports, every, rows, month_dir)
            index = month_dir / "index.html"
            try:
                write_index(overview, index, title=plan.title, month=month_text, plan=plan.source,
                            data=plan.data, notes=notes, tmp_dir=tmp_dir,
                            fmt=NumberFormat(plan.currency, plan.thousands, plan.decimal), noun=plan.noun)
                atomic_write(month_dir / "summary.csv", spreadsheet_safe(overview).to_csv(index=False),
                             tmp_dir=tmp_dir)
            except OSError as exc:
                raise ReportError(f"the reports were written, but the index could not be: {exc}") from None
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    status.attrs.update({"index": str(index), "folder": str(month_dir), "month": month_text, "notes": notes,
                        "jobs": n_workers, "seconds": time.perf_counter() - wall})
    return status


def _release_arrow_memory() -> None:
    """Give memory freed by the loaded log back to the system (see :func:`.cache.release_memory`)."""
    from .cache import release_memory

    release_memory()


def _run_all(tasks, todo, rows, *, n_workers, executor, progress, total, month_text, say) -> None:
    """Run the report notebooks in a pool; fill ``rows`` as they finish."""
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=total - len(todo), desc=f"reports {month_text}",
               unit="report", disable=not progress, file=sys.stderr)
    if not tasks:
        bar.close()
        return
    # forkserver, not fork: a process that already ran a notebook holds jupyter's
    # background event-loop thread, and a forked copy of it waits forever for that
    # thread when it starts a kernel (seen as a hung test run)
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                      else "spawn")
    pool = ctx.Pool(n_workers, initializer=_worker_init) if executor == "process" else ThreadPool(n_workers)
    try:
        for k, res in pool.imap_unordered(_run_one, list(enumerate(tasks))):
            job = todo[k]
            rows[(job.split, job.value)] = res
            bar.update(1)
            if res["status"] != "ok":
                line = f"  FAILED  {res['split']}={res['value']}: {res['error']}"
            elif _records(res["notebook"]).get("warnings"):  # said in full in the summary below
                line = f"  warning {res['html']}"
            else:
                line = f"  ok      {res['html']}"
            if progress:  # printed above the bar, not through it
                bar.write(line, file=sys.stderr)
            else:
                say(line)
        pool.close()
    except BaseException:
        pool.terminate()
        pool.join()
        bar.close()
        raise
    pool.join()
    bar.close()


def _statuses(reports: list[ReportJob], every: list[ReportJob], rows: dict, month_dir: Path):
    """The status table of this run and the index's listing, both checked against the disk."""
    table, listed = [], []
    selected = {(j.split, j.value) for j in reports}
    for job in every:
        key = (job.split, job.value)
        disk = _on_disk(job, month_dir)
        if key in selected:
            row = dict(rows[key])
            if row["status"] in {"ok", "skipped"} and (disk is None or disk["status"] != "kept"):
                row.update(status="failed", error="the report was written but is not on disk any more "
                                                  "(removed while the run was finishing?); run it again")
            if row["status"] in {"ok", "skipped"}:
                row.update(_records(row["notebook"]))
                if row["status"] == "ok" and row.get("warnings"):
                    row["status"] = "warning"
            table.append(row)
            listed.append(row)
        elif disk is not None:
            row = {"split": job.split, "value": job.value, **disk}
            if disk["status"] == "kept":
                row.update(_records(disk["notebook"]))
            else:
                row["error"] = "failed in an earlier run (not rerun this time); see its notebook"
            listed.append(row)
    return _frame(table), _frame(listed)


def _frame(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows).reindex(columns=STATUS_COLUMNS)
    for c in STATUS_COLUMNS[3:13]:
        out[c] = out[c].astype("float64")
    for c in ("warnings", "win_rate_note"):
        out[c] = pd.Series([w if isinstance(w, str) else "" for w in out[c]], index=out.index, dtype=object)
    return out


def _run_one(item: tuple[int, tuple]) -> tuple[int, dict]:
    k, task = item
    return k, _run_job(task)


def demo_plan() -> Path:
    """The demo plan shipped in the package (``funnelkit/templates/demo_monthly.yaml``).

    Its ``data`` and ``output`` are relative to the folder the demo runs in
    (see :func:`run_demo`); ``params/demo_monthly.yaml`` in the source tree
    is the same plan with paths relative to ``params/``.

    Examples
    --------
    >>> import yaml
    >>> path = demo_plan()
    >>> path.name
    'demo_monthly.yaml'
    >>> spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    >>> spec["data"], spec["stages"], spec["splits"], spec["month"]
    ('data/demo/events.csv', 'pipeline4', ['product', 'source'], '2025-09')
    """
    from .plan import PACKAGE_DEMO_PLAN, packaged

    return packaged(PACKAGE_DEMO_PLAN)


def run_demo(*, plan: str | Path | None = None, data: str | Path | None = None, out: str | Path | None = None,
             **kwargs) -> pd.DataFrame:
    """Write the demo data if it is missing, then run the demo plan.

    Parameters
    ----------
    plan : path, optional
        A plan file; its paths are relative to it.  Default: the packaged
        demo plan (:func:`demo_plan`: one report per product and per lead
        source of the demo data, September 2025), with its paths relative to
        ``out``.
    data : path, optional
        Where the demo CSV goes; default the plan's ``data`` path
        (``<out>/data/demo/events.csv`` for the packaged plan).
    out : path, optional
        The folder the packaged plan writes under: ``<out>/data/demo/events.csv``
        and ``<out>/reports/<month>/...``.  Default: the current folder, so a
        pip-installed funnelkit never writes into its own installation.
    **kwargs
        Passed to :func:`run_plan` (``jobs``, ``month``, ``only``, ``output``...).

    Returns
    -------
    DataFrame
        The status table of :func:`run_plan`.

    Examples
    --------
    Running the reports executes one notebook per report (minutes, so it is
    skipped here).  The reports it runs are those of the packaged demo plan,
    on the demo data:

    >>> import yaml
    >>> from funnelkit.reports import Plan, demo_plan, expand_plan
    >>> spec = yaml.safe_load(demo_plan().read_text(encoding="utf-8"))
    >>> plan = Plan.from_dict({**spec, "data": "demo"})
    >>> jobs, _ = expand_plan(plan, plan.load())
    >>> len(jobs), [job.value for job in jobs if job.split == "source"]
    (7, ['outbound', 'referral', 'trade show', 'web form'])
    >>> status = run_demo(out="demo_run", jobs=2)  # doctest: +SKIP
    >>> status[["split", "value", "status"]].head(3)  # doctest: +SKIP
         split         value status
    0  product    Enterprise     ok
    1  product  Professional     ok
    2  product       Starter     ok
    """
    import yaml

    from ..datasets import write_demo

    if plan is not None:
        plan_path = Path(plan)
        spec = yaml.safe_load(plan_path.read_text(encoding="utf-8")) or {}
        base = plan_path.resolve().parent
    else:
        plan_path = demo_plan()
        spec = yaml.safe_load(plan_path.read_text(encoding="utf-8")) or {}
        base = Path(out).resolve() if out is not None else Path.cwd().resolve()
    if data is not None:
        spec["data"] = str(Path(data).resolve())
    if spec.get("data") and spec["data"] != "demo":
        target = Path(str(spec["data"]))
        target = target if target.is_absolute() else (base / target).resolve()
        if not target.is_file():
            write_demo(target)
            echo = kwargs.get("echo")
            if echo:
                echo(f"demo event log written: {target}")
    if plan is not None and data is None:
        return run_plan(plan_path, **kwargs)
    loaded = Plan.from_dict(spec, base_dir=base, source=str(plan_path))
    return run_plan(loaded, **kwargs)
