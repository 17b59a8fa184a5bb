"""Running one notebook as a report: papermill execution and HTML export.

A report is a notebook template executed with parameters.  Outputs are
written atomically: the executed notebook and its HTML are written to
temporary files and renamed into place only when complete, so a killed run
never leaves a half-written report.  A failed run keeps its executed notebook
(with papermill's error cell) as ``<name>.failed.ipynb`` and its HTML as
``<name>.failed.html``, and removes any earlier successful output of the same
name, so a stale report is never mistaken for the current one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..exceptions import ReportError

if TYPE_CHECKING:  # nbformat, nbconvert and papermill load slowly: imported where used
    import nbformat

__all__ = [
    "HEADLINE_MIME",
    "STATUS_MIME",
    "ReportResult",
    "atomic_write",
    "export_html",
    "read_headline",
    "run_notebook",
    "safe_name",
    "template_parameters",
]

#: Mime type of the headline numbers a report displays; the batch runner reads
#: them back from the executed notebook for the index.
HEADLINE_MIME = "application/vnd.funnelkit.headline+json"
#: Mime type of a report's status (its warnings), shown last; the batch runner reads it back.
STATUS_MIME = "application/vnd.funnelkit.status+json"

#: Kernel option that silences ipykernel's own log lines on the terminal: the
#: "Kernel is running over TCP without encryption" warning at start-up (the
#: kernel listens on localhost only) and "KeyboardInterrupt caught in kernel",
#: logged when jupyter_client interrupts the kernel before shutting it down.
#: Errors of the notebook's code are unaffected: they are in the notebook.
_QUIET_KERNEL = ["--IPKernelApp.log_level=CRITICAL"]


def this_python_kernel_manager():
    """A Jupyter kernel manager that starts the kernel on the Python running funnelkit.

    A report must run on the funnelkit that runs the batch: not on whatever
    a kernel named ``funnelkit`` or ``python3`` points to on this machine
    (another virtual environment, a system Python without funnelkit), and
    without asking the user to register a kernel after ``pip install``.  The
    template's kernel name is then only what Jupyter shows when the
    template is opened.
    """
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import KernelManager

    class ThisPythonKernelManager(KernelManager):
        @property
        def kernel_spec(self):
            if self._kernel_spec is None:
                from ipykernel.kernelspec import RESOURCES, get_kernel_dict

                self._kernel_spec = KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())
            return self._kernel_spec

    return ThisPythonKernelManager


@dataclass
class ReportResult:
    """The outcome of running one report.

    Attributes
    ----------
    name : str
        File name stem of the report.
    ok : bool
        True when the notebook ran to the end.
    notebook : Path or None
        The executed notebook (``<name>.ipynb``), or the failed one
        (``<name>.failed.ipynb``) when ``ok`` is False.
    html : Path or None
        The HTML export (``<name>.html``, or ``<name>.failed.html``).
    error : str
        ``"ExceptionName: message"`` of the failure, ``""`` when ok.
    seconds : float
        Wall time of the run.

    Examples
    --------
    >>> from pathlib import Path
    >>> r = ReportResult("overall", True, Path("reports/overall.ipynb"), Path("reports/overall.html"),
    ...                  seconds=12.5)
    >>> r.ok, r.html.name, r.error
    (True, 'overall.html', '')
    >>> ReportResult("Enterprise", False, None, None, "KeyError: 'amount'").error
    "KeyError: 'amount'"
    """

    name: str
    ok: bool
    notebook: Path | None
    html: Path | None
    error: str = ""
    seconds: float = 0.0


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(value: object) -> str:
    """A file name made from a segment value: no separators, no traversal.

    Every run of characters other than ASCII letters, digits, ``.``, ``_``
    and ``-`` becomes ``_``; leading and trailing dots, dashes and
    underscores are removed, so the result can never be ``..`` or start a
    hidden file.  Values that reduce to nothing become ``"blank"``.

    Parameters
    ----------
    value : object
        A segment value (``str()`` is applied).

    Returns
    -------
    str
        At most 120 characters, safe as one path component.

    Examples
    --------
    >>> safe_name("../../etc/passwd")
    'etc_passwd'
    >>> safe_name("GTX Pro")
    'GTX_Pro'
    >>> safe_name("..")
    'blank'
    """
    text = _UNSAFE.sub("_", str(value)).strip("._-")
    text = re.sub(r"_+", "_", text)
    return text[:120].strip("._-") or "blank"


def unique_names(values: list[object], *, reserved=(), reserved_suffixes=()) -> dict[object, str]:
    """Safe, distinct file names for a list of values.

    Values whose :func:`safe_name` collide, ignoring case (``"GTX Pro"`` and
    ``"GTX/Pro"``), or whose name is reserved, get a short hash of the value
    appended, so no report overwrites another (or a file of the batch).

    Parameters
    ----------
    values : list
    reserved : collection of str
        Names that cannot be used as they are (compared ignoring case).
    reserved_suffixes : tuple of str
        Endings that cannot be used (e.g. ``".failed"``, which would collide
        with another report's failed notebook).

    Examples
    --------
    >>> unique_names(["a b", "a/b", "c"])["c"]
    'c'
    >>> len(set(unique_names(["a b", "a/b", "c"]).values()))
    3
    >>> unique_names(["index.html"], reserved={"index.html"})["index.html"].startswith("index.html-")
    True
    """
    base = {v: safe_name(v) for v in values}
    counts: dict[str, int] = {}
    for name in base.values():
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    banned = {str(r).lower() for r in reserved}
    suffixes = tuple(str(x).lower() for x in reserved_suffixes)
    out = {}
    for v, name in base.items():
        low = name.lower()
        if counts[low] > 1 or low in banned or (suffixes and low.endswith(suffixes)):
            digest = hashlib.sha256(str(v).encode("utf-8")).hexdigest()[:8]
            name = f"{name[:110]}-{digest}"
        out[v] = name
    return out


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Permissions of written reports: those of a normally created file (mkstemp's are private).
_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: str | Path, text: str, *, tmp_dir: str | Path | None = None) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    Readers see either the old file or the complete new one, never a part.

    Parameters
    ----------
    path : path
    text : str
    tmp_dir : path, optional
        Folder of the temporary file (same file system as ``path``);
        default the folder of ``path`` (a hidden ``.tmp`` file).

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = atomic_write(Path(tmp) / "out" / "index.html", "<p>done</p>")
    ...     print(path.name, path.read_text(), [p.name for p in path.parent.iterdir()])
    index.html <p>done</p> ['index.html']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tmp_dir) if tmp_dir is not None else path.parent
    work.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=work)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def export_html(notebook: nbformat.NotebookNode, *, title: str | None = None) -> str:
    """HTML of an executed notebook, without code cells or prompts: one offline page.

    Uses funnelkit's own template (:data:`funnelkit.reports.pages.TEMPLATE`):
    no script or style sheet from a CDN, figures embedded, a
    Content-Security-Policy that allows no script; the result then goes
    through :func:`~funnelkit.reports.pages.scrub_html`.

    Parameters
    ----------
    notebook : NotebookNode
        An executed notebook.
    title : str, optional
        The page title (``<title>``).

    Returns
    -------
    str
        A complete, self-contained HTML page.

    Examples
    --------
    >>> from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
    >>> nb = new_notebook(cells=[
    ...     new_markdown_cell("# Pipeline"),
    ...     new_code_cell("print('won:', 42)", outputs=[new_output("stream", text="won: 42")]),
    ... ])
    >>> page = export_html(nb, title="Demo report")
    >>> "<title>Demo report</title>" in page, "won: 42" in page, "print(" in page, "<script" in page
    (True, True, False, False)
    """
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    from .pages import REPORT_CSS, TEMPLATE, csp_meta, scrub_html

    exporter = HTMLExporter(
        template_name="lab", template_file="funnelkit_report.html.j2",
        extra_loaders=[DictLoader({"funnelkit_report.html.j2": TEMPLATE})],
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
    )
    if title:
        notebook.metadata["title"] = title
    body, _ = exporter.from_notebook_node(
        notebook, resources={"funnelkit_css": REPORT_CSS, "funnelkit_csp_meta": csp_meta()})
    return scrub_html(body)


def template_parameters(template: str | Path) -> dict[str, dict]:
    """The parameters a template declares in its cell tagged ``parameters``.

    Returns
    -------
    dict
        Parameter name -> papermill's description (``default``,
        ``inferred_type_name``, ``help``: the comment on its line).

    Raises
    ------
    ReportError
        If the template is missing or has no ``parameters`` cell.

    Examples
    --------
    >>> import tempfile, nbformat
    >>> from pathlib import Path
    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    >>> nb = new_notebook(metadata={"kernelspec": kernel},
    ...                   cells=[new_code_cell('as_of = "2025-06-30"  # last day of data',
    ...                                        metadata={"tags": ["parameters"]})])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     nbformat.write(nb, Path(tmp) / "report.ipynb")
    ...     params = template_parameters(Path(tmp) / "report.ipynb")
    >>> params["as_of"]["default"], params["as_of"]["help"]
    ('"2025-06-30"', 'last day of data')
    """
    import papermill as pm

    template = Path(template)
    if not template.is_file():
        raise ReportError(f"report template not found: {template}")
    params = pm.inspect_notebook(str(template))
    if not params:
        raise ReportError(
            f"{template}: no cell tagged 'parameters'. Tag the cell holding the report's "
            "parameters with 'parameters' (View > Cell Toolbar > Tags in Jupyter)."
        )
    return {k: dict(v) for k, v in params.items()}


def read_headline(notebook: str | Path | nbformat.NotebookNode) -> dict | None:
    """The headline numbers a report displayed, read from its executed notebook.

    Parameters
    ----------
    notebook : path or NotebookNode
        An executed report notebook.

    Returns
    -------
    dict or None
        The last output of mime type :data:`HEADLINE_MIME` (see
        :func:`funnelkit.reports.headline_record`), or None if the notebook
        shows none.

    Examples
    --------
    >>> from nbformat.v4 import new_code_cell, new_notebook, new_output
    >>> shown = new_output("display_data", data={"text/plain": "42 leads", HEADLINE_MIME: {"leads": 42}})
    >>> read_headline(new_notebook(cells=[new_code_cell("show()", outputs=[shown])]))
    {'leads': 42}
    >>> read_headline(new_notebook(cells=[new_code_cell("1 + 1")])) is None
    True
    """
    return read_records(notebook)[0]


def read_records(notebook: str | Path | nbformat.NotebookNode) -> tuple[dict | None, dict | None]:
    """The headline numbers and the status a report displayed (each None if absent).

    Returns
    -------
    (headline, status)
        The last outputs of mime types :data:`HEADLINE_MIME` and
        :data:`STATUS_MIME` (``{"warnings": [...]}``).

    Examples
    --------
    >>> from nbformat.v4 import new_code_cell, new_notebook, new_output
    >>> nb = new_notebook(cells=[
    ...     new_code_cell("headline()", outputs=[new_output("display_data", data={HEADLINE_MIME: {"leads": 42}})]),
    ...     new_code_cell("status()", outputs=[new_output("display_data", data={STATUS_MIME: {"warnings": []}})]),
    ... ])
    >>> read_records(nb)
    ({'leads': 42}, {'warnings': []})
    """
    import nbformat

    nb = notebook if isinstance(notebook, nbformat.NotebookNode) else nbformat.read(notebook, as_version=4)
    found: dict[str, dict | None] = {HEADLINE_MIME: None, STATUS_MIME: None}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            for mime in found:
                if mime in data:
                    value = data[mime]
                    found[mime] = json.loads(value) if isinstance(value, str) else dict(value)
    return found[HEADLINE_MIME], found[STATUS_MIME]


def _error_text(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    if ename:  # papermill's PapermillExecutionError
        return f"{ename}: {getattr(exc, 'evalue', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


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
    tmp_dir: str | Path | None = None,
    timeout: float | None = None,
) -> ReportResult:
    """Execute ``template`` with ``parameters``; write ``<name>.ipynb`` and ``.html``.

    Never raises for a failing notebook: the result says ``ok=False`` with the
    error, and the failed notebook is kept as ``<name>.failed.ipynb`` (with
    papermill's error cell at the top) plus ``<name>.failed.html``.

    Parameters
    ----------
    template : path
        The notebook to execute.
    output_dir : path
        Folder for the outputs (created if needed).
    name : str
        File name stem; must already be safe (see :func:`safe_name`).
    parameters : dict
        Values injected after the template's ``parameters`` cell.
    html : bool
        Also write the HTML export (without code cells).
    title : str, optional
        HTML page title; default ``name``.
    kernel_name : str, optional
        A Jupyter kernel by name; default: the Python running funnelkit
        (``this_python_kernel_manager``), whatever the template names.
    cwd : path, optional
        Working folder of the kernel; default the template's folder.
    progress : bool
        Show papermill's per-cell progress bar.
    tmp_dir : path, optional
        Where partial outputs live while the notebook runs (same file system
        as ``output_dir``); default ``output_dir`` (hidden ``.tmp`` files).
    timeout : float, optional
        Seconds allowed per cell (default: no limit).

    Returns
    -------
    ReportResult

    Raises
    ------
    ReportError
        If the template does not exist or ``name`` is not a safe file name.

    Examples
    --------
    A missing template is an error before any kernel starts:

    >>> try:
    ...     run_notebook("missing.ipynb", "reports", "overall", {})
    ... except ReportError as exc:
    ...     print(exc)
    report template not found: missing.ipynb

    A two-cell template run with ``n = 21`` (this starts a Jupyter kernel):

    >>> import tempfile, nbformat
    >>> from pathlib import Path
    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    >>> nb = new_notebook(metadata={"kernelspec": kernel},
    ...                   cells=[new_code_cell("n = 1  # how many", metadata={"tags": ["parameters"]}),
    ...                          new_code_cell("print(n * 2)")])
    >>> with tempfile.TemporaryDirectory() as tmp:  # doctest: +SKIP
    ...     nbformat.write(nb, Path(tmp) / "report.ipynb")
    ...     r = run_notebook(Path(tmp) / "report.ipynb", Path(tmp) / "out", "demo", {"n": 21})
    ...     printed = nbformat.read(r.notebook, as_version=4).cells[-1].outputs[0]["text"]
    ...     print(r.ok, r.notebook.name, r.html.name, printed.strip())
    True demo.ipynb demo.html 42
    """
    import nbformat
    import papermill as pm

    template = Path(template)
    if not template.is_file():
        raise ReportError(f"report template not found: {template}")
    if safe_name(name) != name:
        raise ReportError(f"report name {name!r} is not a safe file name; use safe_name({name!r}).")
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tmp_dir) if tmp_dir is not None else out_dir
    work.mkdir(parents=True, exist_ok=True)
    final_nb, final_html = out_dir / f"{name}.ipynb", out_dir / f"{name}.html"
    failed_nb, failed_html = out_dir / f"{name}.failed.ipynb", out_dir / f"{name}.failed.html"
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp.ipynb", dir=work)
    os.close(fd)
    tmp_path = Path(tmp)
    start = time.perf_counter()
    title = title or name
    try:
        try:
            pm.execute_notebook(
                str(template),
                str(tmp_path),
                parameters=parameters,
                kernel_name=kernel_name,
                cwd=str(cwd) if cwd else str(template.resolve().parent),
                progress_bar=progress,
                log_output=False,
                execution_timeout=timeout,
                extra_arguments=list(_QUIET_KERNEL),
                **({} if kernel_name else {"kernel_manager_class": this_python_kernel_manager()}),
            )
        except Exception as exc:  # a cell raised, the kernel died, a bad parameter...
            error = _error_text(exc)
            kept = None
            if tmp_path.exists() and tmp_path.stat().st_size:
                try:
                    nb = nbformat.read(tmp_path, as_version=4)
                    if html:
                        atomic_write(failed_html, export_html(nb, title=f"FAILED: {title}"), tmp_dir=work)
                except Exception:  # the notebook is kept even if it cannot be exported
                    pass
                os.chmod(tmp_path, _FILE_MODE)
                os.replace(tmp_path, failed_nb)
                kept = failed_nb
            for stale in (final_nb, final_html):
                stale.unlink(missing_ok=True)
            return ReportResult(name, False, kept, failed_html if failed_html.exists() else None,
                                error, time.perf_counter() - start)
        nb = nbformat.read(tmp_path, as_version=4)
        if html:
            atomic_write(final_html, export_html(nb, title=title), tmp_dir=work)
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, final_nb)
        failed_nb.unlink(missing_ok=True)
        failed_html.unlink(missing_ok=True)
        return ReportResult(name, True, final_nb, final_html if html else None, "",
                            time.perf_counter() - start)
    finally:
        tmp_path.unlink(missing_ok=True)
