"""Sphinx configuration for the funnelkit documentation.

Build with ``make docs`` (HTML in ``docs/_build/html``); ``tests/test_docs.py``
builds it with warnings as errors and checks every internal link.

* The API reference is generated from the docstrings (numpydoc, autosummary):
  one page per public function and class, listed from each module's
  ``__all__`` (see ``public_api`` below), so a new public function gets its
  page without editing the docs.
* The gallery renders the notebooks of ``notebooks/``: a notebook committed
  with its outputs (the lesson) is shown as committed, never re-run; one
  committed without outputs (the explorer) is executed on the demo data at
  build time.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import pkgutil
import sys
import warnings
from pathlib import Path

import nbformat
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))  # the source tree wins over an installed copy

import funnelkit  # noqa: E402

# -- project -----------------------------------------------------------------

project = "funnelkit"
author = "The funnelkit developers"
copyright = "2026, The funnelkit developers"
release = funnelkit.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "api/generated/*.rst.tmp"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
default_role = "code"  # `x` in a docstring is code, never a guessed cross-reference

# -- API reference -----------------------------------------------------------

# Reading order of the reference (the layers of the package).  Every public
# module (no leading underscore, with an ``__all__``) is documented: modules
# not named here follow in alphabetical order, so a new module gets its
# pages without editing the docs.
ORDER = [
    "funnelkit.data",
    "funnelkit.xes",
    "funnelkit.stages",
    "funnelkit.funnel",
    "funnelkit.pipeline",
    "funnelkit.transitions",
    "funnelkit.forecast",
    "funnelkit.plots",
    "funnelkit.tables",
    "funnelkit.reports",
    "funnelkit.reports.plan",
    "funnelkit.reports.batch",
    "funnelkit.reports.notebook",
    "funnelkit.reports.monthly",
    "funnelkit.reports.sections",
    "funnelkit.reports.cache",
    "funnelkit.reports.pages",
    "funnelkit.reports.index",
    "funnelkit.datasets",
    "funnelkit.stats",
    "funnelkit.exceptions",
]


def public_modules() -> list[str]:
    """The package's public modules, in :data:`ORDER` then alphabetically."""
    found = []
    for info in pkgutil.walk_packages(funnelkit.__path__, "funnelkit."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        if hasattr(importlib.import_module(info.name), "__all__"):
            found.append(info.name)
    return [m for m in ORDER if m in found] + sorted(m for m in found if m not in ORDER)


API_MODULES = public_modules()


def _kind(obj) -> str | None:
    if inspect.isclass(obj):
        return "exceptions" if issubclass(obj, BaseException) else "classes"
    if inspect.isroutine(obj):
        return "functions"
    if inspect.ismodule(obj):
        return None
    return "data"


def _depth(modname: str) -> int:
    return modname.count(".")


@functools.cache
def _assigned_names(modname: str) -> frozenset[str]:
    """Names a module assigns at its top level (its own constants, not imports)."""
    names = set()
    for node in ast.parse(inspect.getsource(importlib.import_module(modname))).body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(names)


def _defining_module(name: str, obj, kind: str) -> str | None:
    """Where ``obj`` is defined: its ``__module__``, or for a constant the module assigning it."""
    if kind != "data":
        return getattr(obj, "__module__", None)
    for info in pkgutil.walk_packages(funnelkit.__path__, "funnelkit."):
        if info.name.endswith("__main__"):
            continue
        mod = importlib.import_module(info.name)
        if getattr(mod, name, None) is obj and name in _assigned_names(info.name):
            return info.name
    return None


def public_api():
    """Each public object, documented once, and every public name pointing to it.

    Every name in the ``__all__`` of ``funnelkit`` and of its public modules is
    gathered.  An object's page is under the *shortest* public name its own
    package gives it: among the modules that list it in ``__all__`` and are
    the module defining it or a package above that one, the shallowest
    (``funnelkit.plots.funnel_chart``, not ``funnelkit.plots.funnel.funnel_chart``;
    ``funnelkit.reports.run_plan``, not ``funnelkit.reports.batch.run_plan``;
    ``funnelkit.exceptions.FunnelSpecError``, which ``funnelkit.funnel`` also
    re-exports).  The top-level namespace ``funnelkit`` is left out of that
    choice, so each module's page keeps its own functions.  Constants are
    documented the same way, with the ``#:`` comment of the module assigning
    them.

    Returns the members per module (the package ``funnelkit`` lists the
    top-level modules), the documented name of every public name, and of
    every public function and class by ``id`` (for references by the name a
    module imports it under).
    """

    def empty():
        return {"functions": [], "classes": [], "exceptions": [], "data": [], "submodules": []}

    api: dict[str, dict[str, list]] = {m: empty() for m in ["funnelkit", *API_MODULES]}
    listed: dict[tuple, list[tuple[str, str]]] = {}  # object key -> [(module, name)]
    objects: dict[tuple, tuple[object, str]] = {}
    for modname in ["funnelkit", *API_MODULES]:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            kind = _kind(obj)
            if kind is None:
                continue
            key = (name, id(obj)) if kind == "data" else (id(obj),)
            listed.setdefault(key, []).append((modname, name))
            objects[key] = (obj, kind)
    names: dict[str, str] = {}
    by_id: dict[int, str] = {}
    for key, where in listed.items():
        obj, kind = objects[key]
        defined = _defining_module(where[0][1], obj, kind) or ""
        own = [(m, n) for m, n in where if m != "funnelkit" and (defined == m or defined.startswith(m + "."))]
        home, name = min(own or where, key=lambda mn: _depth(mn[0]))
        documented = f"{home}.{name}"
        if kind == "data":
            docs = ModuleAnalyzer.for_module(defined).find_attr_docs() if defined else {}
            text = repr(obj)
            simple = isinstance(obj, (str, int, float, tuple)) and "\n" not in text and len(text) <= 80
            doc = [line for line in docs.get(("", name), []) if line.strip()]
            api[home]["data"].append({"name": name, "value": text if simple else None, "doc": doc})
        else:
            api[home][kind].append(name)
            by_id[id(obj)] = documented
        for m, n in where:
            names[f"{m}.{n}"] = documented
    for modname in API_MODULES:
        parent = modname.rpartition(".")[0]
        api[parent if parent in api else "funnelkit"]["submodules"].append(modname)
    return api, names, by_id


FK_API, FK_NAMES, FK_HOME = public_api()
# documented name -> the other public names of the same object
FK_ALIASES: dict[str, list[str]] = {}
for _public, _documented in FK_NAMES.items():
    if _public != _documented:
        FK_ALIASES.setdefault(_documented, []).append(_public)

autosummary_generate = True
autosummary_generate_overwrite = True
autosummary_context = {"fk_api": FK_API, "fk_aliases": FK_ALIASES}
autodoc_typehints = "none"  # numpydoc's Parameters section carries the types
autodoc_default_options = {"member-order": "bysource"}
numpydoc_show_class_members = False  # the class template documents the members itself
numpydoc_class_members_toctree = False

# References into other projects (pandas.Timestamp, datetime.date, str...)
# cannot resolve: the build is offline, so there are no intersphinx
# inventories.  They are named here: Python's builtins and standard library,
# and the libraries funnelkit depends on (pyproject.toml, extras included).
# Every other unresolved reference is an error (-n in tests/test_docs.py and
# make docs).
nitpicky = True
DEPENDENCIES = [
    "pandas",
    "numpy",
    "scipy",
    "matplotlib",
    "papermill",
    "nbclient",
    "nbconvert",
    "ipykernel",
    "yaml",
    "click",
    "pyarrow",
    "tqdm",
    "holidays",
    "filelock",
    "dask",
    "distributed",
    "duckdb",
    "IPython",
    "ipywidgets",
    "jupyterlab",
]
EXTERNAL = sorted({*sys.stdlib_module_names, *DEPENDENCIES} - {"this", "antigravity"})
nitpick_ignore_regex = [
    (r"py:.*", rf"({'|'.join(EXTERNAL)})(\..+)?"),
    (r"py:.*", rf"({'|'.join(n for n in dir(builtins) if not n.startswith('_'))})"),
]

# Docstring defects in the package that break its rendering.  They are
# repaired here, for the HTML only, so the site builds; the source is for the
# package's owners to fix.  Remove an entry once its source is fixed (the
# build log says "no longer needed").  Any defect not listed fails the build.
#   doctest-indent: an Examples line indented less than the lines around it
#   (``>>> import funnelkit.forecast, funnelkit.transitions`` at 4 spaces in a
#   method's docstring), which ends the Examples block early.
#   section:NAME: a section numpydoc does not know, whose text numpydoc would
#   drop without a word; shown as a heading inside the description instead.
DOCSTRING_REPAIRS = {
    "funnelkit.transitions.TransitionModel.win_probability": "doctest-indent",
    "funnelkit.transitions.TransitionModel.expected_steps": "doctest-indent",
    "funnelkit.transitions.TransitionModel.matrix": "doctest-indent",
    "funnelkit.transitions.TransitionModel.close_probability": "doctest-indent",
    "funnelkit.transitions.TransitionModel.won_within": "doctest-indent",
    "funnelkit.forecast.Forecast.probability_of": "doctest-indent",
}

# -- notebooks (the gallery) -------------------------------------------------

NOTEBOOKS = REPO / "notebooks"
GALLERY = DOCS / "gallery"
# report templates need their parameters from a plan: not gallery material
NOT_IN_GALLERY = {"monthly_report.ipynb"}


def _has_outputs(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def copy_notebooks() -> list[str]:
    """Copy the gallery notebooks next to the docs; return those to leave unexecuted.

    Only changed files are written, so an unchanged notebook is not re-read
    on the next build.
    """
    keep_as_is = []
    for src in sorted(NOTEBOOKS.glob("*.ipynb")):
        if src.name in NOT_IN_GALLERY:
            continue
        dst = GALLERY / src.name
        data = src.read_bytes()
        if not dst.exists() or dst.read_bytes() != data:
            dst.write_bytes(data)
        if _has_outputs(src):
            keep_as_is.append(f"gallery/{src.name}")
    for stale in GALLERY.glob("*.ipynb"):
        if not (NOTEBOOKS / stale.name).exists() or stale.name in NOT_IN_GALLERY:
            stale.unlink()
    return keep_as_is


_AS_COMMITTED = copy_notebooks()

nb_execution_mode = "force"
nb_execution_excludepatterns = _AS_COMMITTED  # committed with outputs: shown as committed
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- HTML --------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"funnelkit {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
html_copy_source = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 8,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "getting_started": []}


# -- build-time hooks --------------------------------------------------------

logger = logging.getLogger("funnelkit.docs")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _repair_docstring(app, what, name, obj, options, lines):
    """Apply :data:`DOCSTRING_REPAIRS` (before numpydoc reads the docstring)."""
    repair = DOCSTRING_REPAIRS.get(name)
    if repair is None:
        return
    changed = False
    if repair == "doctest-indent":
        prev = None
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            if (
                prev is not None
                and line.lstrip().startswith(">>>")
                and lines[prev].lstrip().startswith((">>>", "..."))
                and _indent(line) < _indent(lines[prev])
            ):
                lines[i] = " " * _indent(lines[prev]) + line.lstrip()
                changed = True
            prev = i
    elif repair.startswith("section:"):
        title = repair.partition(":")[2]
        for i in range(len(lines) - 1):
            if lines[i].strip() == title and set(lines[i + 1].strip()) == {"-"}:
                pad = " " * _indent(lines[i])
                lines[i : i + 2] = [f"{pad}.. rubric:: {title}", ""]
                changed = True
                break
    if changed:
        logger.info(f"repaired the docstring of {name} ({repair}); see DOCSTRING_REPAIRS")
    else:
        logger.info(f"DOCSTRING_REPAIRS entry for {name} ({repair}) is no longer needed")


def _resolve_alias(app, env, node, contnode):
    """Link a public name to the page of the object it names.

    ``funnelkit.read_events`` is documented as ``funnelkit.data.read_events``,
    and ``funnelkit.reports.batch.run_plan`` as ``funnelkit.reports.run_plan``
    (see :func:`public_api`); a bare ``DataWarning`` in ``funnelkit.data`` is
    the object that module imports under that name.  The name is looked up as
    Python would (from the reference's module, then as an absolute name) and
    linked only to the page of that very object; anything else stays
    unresolved.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    bases = [node.get("py:module")]
    # a docstring names things as its own module sees them: on the page of
    # funnelkit.reports.coverage_warnings (defined in funnelkit.reports.monthly),
    # STALE_AFTER is funnelkit.reports.monthly.STALE_AFTER
    if node["refdoc"].startswith("api/generated/funnelkit."):
        page_object = _lookup(None, node["refdoc"].rpartition("/")[2])
        bases.append(getattr(page_object, "__module__", None))
    parts = target.split(".")
    for base in [*dict.fromkeys(b for b in bases if b), None]:
        # the longest leading part that names a documented object, then the rest
        # (TransitionModel.with_lead_weights: the class's page, then its method)
        canonical = None
        for i in range(len(parts), 0, -1):
            path, rest = ".".join(parts[:i]), parts[i:]
            found = FK_NAMES.get(f"{base}.{path}" if base else path)
            if found is None:  # a name the module imports without listing it in __all__
                obj = _lookup(base, path)
                found = FK_HOME.get(id(obj)) if obj is not None else None
            if found:
                canonical = ".".join([found, *rest])
                break
        if canonical and canonical != target:
            domain = env.get_domain("py")
            return domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode
            )
    return None


def _lookup(base: str | None, dotted: str):
    """The object ``dotted`` names, from module ``base`` (or absolute); None if none."""
    parts = dotted.split(".")
    starts = [(base, parts)] if base else [(".".join(parts[:i]), parts[i:]) for i in range(len(parts), 0, -1)]
    for modname, rest in starts:
        try:
            obj = importlib.import_module(modname)
        except ImportError:
            continue
        try:
            for attr in rest:
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        return obj
    return None


def _numpydoc_warnings_to_sphinx(app):
    """numpydoc reports a docstring whose section it drops as a Python warning; make it a build warning."""
    show = warnings.showwarning

    # numpydoc also reads the raw docstring (for signatures), before any repair
    repaired = [
        f"Unknown section {how.partition(':')[2]} in the docstring of {name.rpartition('.')[2]} "
        for name, how in DOCSTRING_REPAIRS.items()
        if how.startswith("section:")
    ]

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UserWarning) and "numpydoc" in filename:
            if str(message).startswith(tuple(repaired)):
                logger.info(f"numpydoc: {message} (repaired: see DOCSTRING_REPAIRS)")
            else:
                logger.warning(f"numpydoc: {message}", type="numpydoc", subtype="docscrape")
            return
        show(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    warnings.filterwarnings("always", category=UserWarning, module="numpydoc")


def setup(app):
    app.connect("builder-inited", _numpydoc_warnings_to_sphinx)
    app.connect("autodoc-process-docstring", _repair_docstring, priority=100)
    app.connect("missing-reference", _resolve_alias)
