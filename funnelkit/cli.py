"""The ``funnelkit`` command line: a thin layer over the Python API."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .datasets import load_demo, write_demo
from .reports import run_notebook, safe_name

DEFAULT_TEMPLATE = Path("notebooks") / "funnel_report.ipynb"


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


@main.command()
@click.option("--template", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=DEFAULT_TEMPLATE, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports/demo"), show_default=True, help="Folder for the reports.")
@click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("data/demo/events.csv"), show_default=True)
def demo(template: Path, out: Path, data_path: Path) -> None:
    """Generate the demo data and run the demo reports (one per product)."""
    if not data_path.exists():
        write_demo(data_path)
    products = sorted(load_demo()["product"].astype(str).unique())
    failures = 0
    for product in products:
        res = run_notebook(
            template,
            out / "product",
            safe_name(product),
            {"data": str(data_path.resolve()), "segment_column": "product",
             "segment_value": product, "title": "Demo funnel report"},
            title=f"Funnel report: {product}",
        )
        if res.ok:
            click.echo(f"  ok      {res.html}")
        else:
            failures += 1
            click.echo(f"  FAILED  {res.notebook}: {res.error}", err=True)
    click.echo(f"Reports are in {out.resolve()}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
