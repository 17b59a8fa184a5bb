"""The batch runner: every report of a plan, in parallel, with an index.

:func:`run_plan` checks the plan, expands it into reports, runs each report
notebook through papermill in worker processes (one Jupyter kernel per
report), and writes::

    <output>/<month>/<split>/<value>.ipynb    executed notebook
    <output>/<month>/<split>/<value>.html     the report, without code
    <output>/<month>/index.html               summary table linking to each
    <output>/<month>/summary.csv              the same, as data

Reliability: a report that fails does not stop the others; its notebook is
kept as ``<value>.failed.ipynb`` (and ``.failed.html``) and the index shows
the error.  Every file is written to a temporary name in
``<output>/<month>/.partial/`` and renamed into place when complete, so a
killed run leaves no half-written report; an interrupted run cleans up its
temporary files, and the next run removes any left by a run that was killed
outright.  A rerun rewrites the same files; ``skip_existing=True`` keeps
reports already written and runs only the missing ones.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from multiprocessing.pool import ThreadPool
from pathlib import Path

import pandas as pd

from ..exceptions import PlanError
from .index import write_index
from .notebook import atomic_write, read_headline, run_notebook
from .plan import Plan, ReportJob, expand_plan, load_plan

__all__ = ["STATUS_COLUMNS", "demo_plan", "run_demo", "run_plan"]

#: Columns of the status table returned by :func:`run_plan`.
STATUS_COLUMNS = [
    "split", "value", "status", "leads_entered", "leads_entered_change", "won", "won_change",
    "revenue", "revenue_change", "win_rate", "win_rate_change", "target_attainment",
    "seconds", "html", "notebook", "error",
]
_HEADLINE_FIELDS = ["leads_entered", "won", "revenue", "win_rate", "target_attainment"]
PARTIAL = ".partial"


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


def _headline_fields(notebook: str | None) -> dict:
    out = {}
    if not notebook:
        return out
    try:
        rec = read_headline(notebook)
    except Exception:  # an unreadable notebook just has no numbers in the index
        return out
    if not rec:
        return out
    metrics = {m["metric"]: m for m in rec.get("metrics", [])}
    for key in _HEADLINE_FIELDS:
        m = metrics.get(key)
        out[key] = math.nan if m is None or m.get("value") is None else float(m["value"])
        if key != "target_attainment":
            ch = None if m is None else m.get("change")
            out[f"{key}_change"] = math.nan if ch is None else float(ch)
    return out


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


def _clean_partial(month_dir: Path) -> None:
    shutil.rmtree(month_dir / PARTIAL, ignore_errors=True)
    if month_dir.is_dir():
        for tmp in month_dir.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def run_plan(
    plan: str | Path | Plan,
    *,
    month: str | None = None,
    jobs: int | None = None,
    only=None,
    skip_existing: bool = False,
    output: str | Path | None = None,
    progress: bool | None = None,
    executor: str = "process",
    template: str | Path | None = None,
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
    executor : {"process", "thread"}
        Drive the kernels from worker processes (default) or threads.
    template : path, optional
        Overrides the plan's notebook template.
    echo : callable, optional
        Receives the notes and, without a progress bar, one line per finished
        report (e.g. ``print``); with the bar, those lines are printed above it.

    Returns
    -------
    DataFrame
        The status table, one row per report (columns :data:`STATUS_COLUMNS`):
        ``split``, ``value``, ``status`` (``ok``, ``failed`` or ``skipped``)
        of each report selected (all, or those of ``only``),
        the headline numbers read back from the executed notebook
        (``leads_entered``, ``won``, ``revenue``, ``win_rate`` and their
        ``*_change`` from the previous month, ``target_attainment``),
        ``seconds``, ``html``, ``notebook`` (paths) and ``error``.
        ``attrs`` holds ``index`` (path of index.html), ``folder``, ``month``,
        ``notes``, ``jobs`` and ``seconds`` (wall time).  The index and
        ``summary.csv`` list the whole plan: reports not selected this time
        appear with their earlier output (status ``kept``) if they have one.

    Raises
    ------
    PlanError
        If the plan is invalid (before anything runs).
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
    log = plan.load()
    reports, notes = expand_plan(plan, log, month=month, only=only)
    every, _ = expand_plan(plan, log, month=month, only=[])  # the whole plan, for the index
    del log
    if not every:
        raise PlanError(f"{plan.source}: the plan has no reports: no split column has a value in the data.")
    month_text = every[0].parameters["month"]
    out_root = Path(output).resolve() if output is not None else plan.output
    month_dir = out_root / month_text
    month_dir.mkdir(parents=True, exist_ok=True)
    _clean_partial(month_dir)
    tmp_dir = month_dir / PARTIAL
    say = echo or (lambda _line: None)
    for n in notes:
        say(f"note: {n}")

    rows: dict[int, dict] = {}
    todo: list[tuple[int, ReportJob]] = []
    for i, job in enumerate(reports):
        folder = month_dir / job.folder
        nb, page = folder / f"{job.name}.ipynb", folder / f"{job.name}.html"
        if skip_existing and nb.is_file() and page.is_file():
            rows[i] = {"split": job.split, "value": job.value, "status": "skipped", "seconds": 0.0,
                       "html": str(page), "notebook": str(nb), "error": ""}
        else:
            todo.append((i, job))
    if jobs is None:
        jobs = os.cpu_count() or 1
    if jobs < 1:
        raise PlanError(f"jobs must be at least 1, got {jobs}.")
    n_workers = max(1, min(jobs, len(todo)))
    tasks = [(str(template), str(month_dir / job.folder), str(tmp_dir), job, plan.timeout) for _, job in todo]

    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(reports), initial=len(reports) - len(todo), desc=f"reports {month_text}",
               unit="report", disable=not progress, file=sys.stderr)
    if todo:
        pool = (multiprocessing.get_context().Pool(n_workers, initializer=_worker_init)
                if executor == "process" else ThreadPool(n_workers))
        try:
            with _sigterm_as_interrupt():
                results = pool.imap_unordered(_run_one, list(enumerate(tasks)))
                for k, res in results:
                    idx = todo[k][0]
                    rows[idx] = res
                    bar.update(1)
                    line = (f"  ok      {res['html']}" if res["status"] == "ok"
                            else f"  FAILED  {res['split']}={res['value']}: {res['error']}")
                    if progress:  # printed above the bar, not through it
                        bar.write(line, file=sys.stderr)
                    else:
                        say(line)
            pool.close()
        except BaseException:
            pool.terminate()
            pool.join()
            _clean_partial(month_dir)
            bar.close()
            raise
        pool.join()
    bar.close()
    shutil.rmtree(tmp_dir, ignore_errors=True)

    table = []
    for i in range(len(reports)):
        row = dict(rows[i])
        if row["status"] in {"ok", "skipped"}:
            row.update(_headline_fields(row["notebook"]))
        table.append(row)
    status = _frame(table)
    # the index shows the whole plan: reports not selected this time keep their earlier output
    ran = {(r["split"], r["value"]) for r in table}
    listed = []
    for job in every:
        if (job.split, job.value) in ran:
            listed.append(next(r for r in table if (r["split"], r["value"]) == (job.split, job.value)))
            continue
        folder = month_dir / job.folder
        nb, page = folder / f"{job.name}.ipynb", folder / f"{job.name}.html"
        failed = folder / f"{job.name}.failed.ipynb"
        if nb.is_file() and page.is_file():
            listed.append({"split": job.split, "value": job.value, "status": "kept", "html": str(page),
                           "notebook": str(nb), "error": "", **_headline_fields(str(nb))})
        elif failed.is_file():
            html_failed = folder / f"{job.name}.failed.html"
            listed.append({"split": job.split, "value": job.value, "status": "failed", "notebook": str(failed),
                           "html": str(html_failed) if html_failed.is_file() else None,
                           "error": "failed in an earlier run (not rerun this time); see its notebook"})
    overview = _frame(listed)
    index = month_dir / "index.html"
    write_index(overview, index, title=plan.title, month=month_text, plan=plan.source, data=plan.data,
                notes=notes)
    atomic_write(month_dir / "summary.csv", overview.to_csv(index=False))
    status.attrs.update({"index": str(index), "folder": str(month_dir), "month": month_text, "notes": notes,
                        "jobs": n_workers, "seconds": time.perf_counter() - wall})
    return status


def _frame(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows).reindex(columns=STATUS_COLUMNS)
    for c in STATUS_COLUMNS[3:13]:
        out[c] = out[c].astype("float64")
    return out


def _run_one(item: tuple[int, tuple]) -> tuple[int, dict]:
    k, task = item
    return k, _run_job(task)


def demo_plan() -> Path:
    """The demo plan, ``params/demo_monthly.yaml`` of the source tree (or ``./params``).

    Raises
    ------
    PlanError
        If it cannot be found.
    """
    here = Path(__file__).resolve().parents[2] / "params" / "demo_monthly.yaml"
    for cand in (here, Path.cwd() / "params" / "demo_monthly.yaml"):
        if cand.is_file():
            return cand
    raise PlanError("the demo plan params/demo_monthly.yaml was not found; run from the funnelkit source folder.")


def run_demo(*, plan: str | Path | None = None, data: str | Path | None = None, **kwargs) -> pd.DataFrame:
    """Write the demo data if it is missing, then run the demo plan.

    Parameters
    ----------
    plan : path, optional
        Default :func:`demo_plan` (one report per product and per lead source
        of the demo data, September 2025).
    data : path, optional
        Where the demo CSV goes; default the plan's ``data`` path
        (``data/demo/events.csv``).
    **kwargs
        Passed to :func:`run_plan` (``jobs``, ``month``, ``only``, ``output``...).

    Returns
    -------
    DataFrame
        The status table of :func:`run_plan`.
    """
    import yaml

    from ..datasets import write_demo

    plan_path = Path(plan) if plan is not None else demo_plan()
    if data is None:
        spec = yaml.safe_load(plan_path.read_text(encoding="utf-8")) or {}
        if not spec.get("data") or spec["data"] == "demo":
            return run_plan(plan_path, **kwargs)
        data = (plan_path.resolve().parent / str(spec["data"])).resolve()
    data = Path(data)
    if not data.is_file():
        write_demo(data)
        echo = kwargs.get("echo")
        if echo:
            echo(f"demo event log written: {data}")
    return run_plan(plan_path, **kwargs)
