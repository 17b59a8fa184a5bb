"""Running notebooks as reports: papermill execution and HTML export.

A report is a notebook template executed with parameters.  Outputs are
written atomically: the executed notebook and its HTML go to temporary files
in the target folder and are renamed into place only when complete, so a
killed run never leaves a half-written report.  A failed run keeps its
executed notebook (with papermill's error cell) next to where the report
would be, named ``<name>.failed.ipynb``.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill as pm
from nbconvert import HTMLExporter

from .exceptions import ReportError

__all__ = ["ReportResult", "run_notebook", "export_html", "safe_name"]


@dataclass
class ReportResult:
    """The outcome of running one report."""

    name: str
    ok: bool
    notebook: Path | None
    html: Path | None
    error: str = ""
    seconds: float = 0.0


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(value: object) -> str:
    """A file name made from a segment value: no separators, no traversal.

    Examples
    --------
    >>> safe_name("../../etc/passwd")
    'etc_passwd'
    >>> safe_name("GTX Pro")
    'GTX_Pro'
    """
    text = _UNSAFE.sub("_", str(value)).strip("._-")
    text = re.sub(r"_+", "_", text)
    return text[:120] or "blank"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_html(notebook: nbformat.NotebookNode, *, title: str | None = None) -> str:
    """HTML of an executed notebook, without code cells or prompts."""
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    if title:
        notebook.metadata["title"] = title
    body, _ = exporter.from_notebook_node(notebook)
    return body


def run_notebook(
    template: str | Path,
    output_dir: str | Path,
    name: str,
    parameters: dict,
    *,
    html: bool = True,
    title: str | None = None,
    kernel_name: str | None = None,
    cwd: str | Path | None = None,
    progress: bool = False,
) -> ReportResult:
    """Execute ``template`` with ``parameters``; write ``<name>.ipynb`` and ``.html``.

    Never raises for a failing notebook: the result says ``ok=False`` with the
    error, and the failed notebook is kept as ``<name>.failed.ipynb``.

    Raises
    ------
    ReportError
        If the template does not exist.
    """
    import time

    template = Path(template)
    if not template.exists():
        raise ReportError(f"report template not found: {template}")
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final_nb = out_dir / f"{name}.ipynb"
    final_html = out_dir / f"{name}.html"
    failed_nb = out_dir / f"{name}.failed.ipynb"
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".ipynb", dir=out_dir)
    os.close(fd)
    tmp_path = Path(tmp)
    start = time.perf_counter()
    try:
        try:
            pm.execute_notebook(
                str(template),
                str(tmp_path),
                parameters=parameters,
                kernel_name=kernel_name,
                cwd=str(cwd) if cwd else None,
                progress_bar=progress,
                log_output=False,
            )
        except pm.PapermillExecutionError as exc:
            os.replace(tmp_path, failed_nb)
            return ReportResult(name, False, failed_nb, None, f"{exc.ename}: {exc.evalue}",
                                time.perf_counter() - start)
        except Exception as exc:  # kernel died, bad parameters...
            if tmp_path.exists() and tmp_path.stat().st_size:
                os.replace(tmp_path, failed_nb)
            return ReportResult(name, False, failed_nb if failed_nb.exists() else None, None,
                                f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
        nb = nbformat.read(tmp_path, as_version=4)
        if html:
            _atomic_write(final_html, export_html(nb, title=title or name))
        os.replace(tmp_path, final_nb)
        failed_nb.unlink(missing_ok=True)
        return ReportResult(name, True, final_nb, final_html if html else None, "",
                            time.perf_counter() - start)
    finally:
        tmp_path.unlink(missing_ok=True)
