"""The ``funnelkit`` command line: a thin layer over the Python API.

============================================  =====================================================
``funnelkit report PLAN [--month YYYY-MM]``   :func:`funnelkit.reports.run_plan`
``funnelkit demo [--out DIR]``                :func:`funnelkit.reports.run_demo`: the demo data and
                                              reports under DIR (default: the current folder)
``funnelkit demo-data``                       :func:`funnelkit.datasets.write_demo`
============================================  =====================================================

Exit codes:

* 0 - every report was written (some may carry a warning, e.g. the month is
  past the data's end: listed as ``warning`` in the index and printed);
* 1 - at least one report failed (the others were written);
* 2 - nothing was run: the plan is invalid (an unknown key, a split value or
  time zone that does not exist, an as-of date before the month, a reserved
  split name...), the data cannot be read, or another run is writing the same
  month folder (pass ``--wait`` to wait for it instead);
* 130 - interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click

from . import __version__
from .datasets import write_demo
from .exceptions import FunnelkitError

#: The report template a plan runs unless it (or --template) names another.
DEFAULT_TEMPLATE = "the monthly report shipped with funnelkit"

EXIT_FAILED, EXIT_PLAN, EXIT_INTERRUPTED = 1, 2, 130


@click.group()
@click.version_option(__version__, prog_name="funnelkit")
def main() -> None:
    """Sales and marketing funnels and pipelines from one event log."""


@main.command("demo-data")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("data/demo/events.csv"), show_default=True, help="CSV file to write.")
@click.option("--leads", type=int, default=6000, show_default=True, help="Number of leads.")
@click.option("--seed", type=int, default=42, show_default=True)
def demo_data(out: Path, leads: int, seed: int) -> None:
    """Write the seeded demo event log as a CSV."""
    path = write_demo(out, leads, seed=seed)
    click.echo(f"demo event log: {path}")


@main.command("plan-schema")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: print it).")
def plan_schema_command(out: Path | None) -> None:
    """The JSON Schema of report plans, for editor completion.

    Write it beside your plans (funnelkit plan-schema -o plan.schema.json) and start a plan
    with the line: # yaml-language-server: $schema=plan.schema.json
    """
    from .reports.schema import schema_text

    if out is None:
        click.echo(schema_text(), nl=False)
        return
    from .reports.notebook import atomic_write

    atomic_write(out, schema_text())
    click.echo(f"plan schema: {out}")


def _batch_options(f, *, out_help: str = "Output folder (overrides the plan's 'output')."):
    options = [
        click.option("--month", metavar="YYYY-MM", default=None,
                     help="Month to report (overrides the plan's 'month')."),
        click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
                     help="Reports run at once [default: number of CPU cores]."),
        click.option("--only", multiple=True, metavar="SPLIT[=VALUE]",
                     help="Run only these reports, e.g. --only product=Enterprise --only source. Repeatable."),
        click.option("--skip-existing", is_flag=True,
                     help="Keep reports already written for the month; run only the missing ones."),
        click.option("--out", "output", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help=out_help),
        click.option("--progress/--no-progress", default=None,
                     help="Show a progress bar [default: when the terminal is interactive]."),
        click.option("--template", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help=f"Notebook template (overrides the plan's) [default: {DEFAULT_TEMPLATE}]."),
        click.option("--executor", type=click.Choice(["thread", "process"]), default="thread", show_default=True,
                     help="Drive the notebook kernels from threads of this process (less memory) or from "
                          "worker processes."),
        click.option("--wait", is_flag=True,
                     help="If another run is writing the same month folder, wait for it to finish "
                          "[default: stop at once with exit code 2]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _finish(status) -> None:
    """Print the status table and where the index is; exit 1 if any report failed."""
    failed = status.loc[status["status"] == "failed"]
    counts = status["status"].value_counts()
    summary = ", ".join(f"{int(n)} {s}" for s, n in counts.items())
    click.echo(f"\n{len(status)} report(s): {summary} in {status.attrs['seconds']:.1f} s "
               f"({status.attrs['jobs']} at a time).")
    for r in status.itertuples(index=False):
        if isinstance(r.warnings, str) and r.warnings:
            click.echo(f"WARNING {r.split}={r.value}: {r.warnings}", err=True)
    for r in failed.itertuples(index=False):
        click.echo(f"FAILED  {r.split}={r.value}: {r.error}\n        kept: {r.notebook}", err=True)
    click.echo(f"Index: {status.attrs['index']}")
    sys.exit(EXIT_FAILED if len(failed) else 0)


def _run(fn, **kwargs) -> None:
    try:
        status = fn(echo=lambda line: click.echo(line), **kwargs)
    except FunnelkitError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_PLAN)
    except KeyboardInterrupt:
        click.echo("\nInterrupted: running reports were stopped; finished reports are kept, "
                   "no partial files are left. Rerun with --skip-existing to resume.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    _finish(status)


@main.command()
@click.argument("plan", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_batch_options
@click.option("--dry-run", is_flag=True, help="Check the plan and list its reports without running them.")
def report(plan: Path, month, jobs, only, skip_existing, output, progress, template, executor, wait,
           dry_run) -> None:
    """Run every report of the plan PLAN (YAML), in parallel, and write an index.

    Writes <out>/<month>/<split>/<value>.html and .ipynb, and
    <out>/<month>/index.html.  A report that fails does not stop the others;
    the exit code is 1 when any failed, 2 when the plan is invalid or another
    run is writing the same month (see --wait).

    \b
    Example:
        funnelkit report params/demo_monthly.yaml --month 2025-09 --jobs 2
    """
    if dry_run:
        _dry_run(plan, month=month, only=only or None, output=output, template=template)
        return
    from .reports import run_plan

    _run(run_plan, plan=plan, month=month, jobs=jobs, only=list(only) or None, skip_existing=skip_existing,
         output=output, progress=progress, template=template, executor=executor, wait=wait)


def _dry_run(plan_path: Path, *, month, only, output, template) -> None:
    from .reports import expand_plan, load_plan

    try:
        plan = load_plan(plan_path)
        template = plan.check_template(template)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            log = plan.load()
        jobs, notes = expand_plan(plan, log, month=month, only=list(only) if only else None)
        notes = list(dict.fromkeys(str(w.message) for w in caught)) + notes
    except FunnelkitError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_PLAN)
    root = Path(output).resolve() if output else plan.output
    click.echo(f"Plan {plan_path}: {len(jobs)} report(s), template {template}")
    for n in notes:
        click.echo(f"note: {n}")
    for job in jobs:
        month_text = job.parameters["month"]
        label = "all leads" if job.overall else f"{job.split}={job.value!r}"
        click.echo(f"  {label:30} -> {root / month_text / job.folder / job.name}.html")


def _demo_options(f):
    return _batch_options(f, out_help="Folder for the demo data (DIR/data/demo/events.csv) and reports "
                                      "(DIR/reports/<month>/) [default: the current folder].")


@main.command()
@_demo_options
def demo(month, jobs, only, skip_existing, output, progress, template, executor, wait) -> None:
    """Write the demo data if missing and run the demo plan, in the current folder (or --out DIR).

    One report per product and one per lead source of the demo data for
    September 2025, written to ./reports/2025-09/ (the data to
    ./data/demo/events.csv); prints where the index is; exit code 1 if any
    failed.  Nothing is written into funnelkit's own installation.
    """
    from .reports import run_demo

    _run(run_demo, out=output, month=month, jobs=jobs, only=list(only) or None, skip_existing=skip_existing,
         progress=progress, template=template, executor=executor, wait=wait)


if __name__ == "__main__":  # pragma: no cover
    main()
