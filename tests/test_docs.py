"""The documentation site: it builds without a warning and every link inside it resolves.

The site (``docs/``, Sphinx) is built once per session into a temporary
folder, as ``make docs`` builds it but with warnings as errors (``-W
--keep-going``) and nitpicky cross-references (``-n``).  The produced HTML is
then parsed: every internal ``href``/``src`` must name a file of the site, and
every ``#fragment`` an ``id`` in that file.  No network is used.  Skipped when
the docs dependencies (the ``docs`` extra) are not installed.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
import time
import warnings
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

for _module in ("sphinx", "numpydoc", "myst_nb", "pydata_sphinx_theme"):
    pytest.importorskip(_module, reason="the docs extra is not installed (pip install -e '.[docs]')")

from sphinx.util.inventory import InventoryFile  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _public_modules() -> list[str]:
    """``funnelkit`` and its public modules (no leading underscore, with an ``__all__``)."""
    import pkgutil

    import funnelkit

    found = ["funnelkit"]
    for info in pkgutil.walk_packages(funnelkit.__path__, "funnelkit."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            if hasattr(importlib.import_module(info.name), "__all__"):
                found.append(info.name)
    return found


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """Build the site once; the HTML folder, the build's output and its time."""
    out = tmp_path_factory.mktemp("docs")
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "html",
        "-W",
        "--keep-going",
        "-n",
        "-q",
        "-d",
        str(out / "doctrees"),
        str(DOCS),
        str(out / "html"),
    ]
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"}
    )
    seconds = time.perf_counter() - started
    print(f"docs built in {seconds:.1f} s")
    return {
        "html": out / "html",
        "returncode": proc.returncode,
        "output": proc.stdout + proc.stderr,
        "seconds": seconds,
    }


def test_the_site_builds_without_a_warning(site):
    problems = [
        line
        for line in site["output"].splitlines()
        if re.search(r"WARNING|ERROR", line) and "IPKernelApp" not in line
    ]
    assert site["returncode"] == 0, "sphinx -W -n failed:\n" + ("\n".join(problems) or site["output"][-3000:])


# -- links -------------------------------------------------------------------


class _Page(HTMLParser):
    """The ids (anchors) a page defines and the internal URLs it uses."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key) is not None and not (tag == "link" and attrs.get("rel") in ("preconnect",)):
                self.urls.append((tag, attrs[key]))


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _internal(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and not url.startswith(("mailto:", "javascript:", "data:"))


def test_every_internal_link_and_anchor_resolves(site):
    if site["returncode"] != 0:
        pytest.skip("the build failed (see the test above)")
    html = site["html"]
    # the site's pages (the theme ships a Jinja macro file as _static/webpack-macros.html: not a page)
    pages = {p: _parse(p) for p in html.rglob("*.html") if "_static" not in p.relative_to(html).parts}
    assert len(pages) > 50, f"only {len(pages)} pages were built"
    broken = []
    checked = 0
    for path, page in pages.items():
        for tag, url in page.urls:
            if not url or not _internal(url):
                continue
            parts = urlsplit(url)
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            checked += 1
            where = f"{path.relative_to(html)}: <{tag}> {url}"
            if not target.is_file():
                broken.append(f"{where} -> no such file")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{where} -> no id {parts.fragment!r} in {target.name}")
    assert checked > 1000, f"only {checked} internal links were found"
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(broken[:50])


# -- the reference -------------------------------------------------------------


def _inventory(html: Path) -> dict[str, str]:
    """Documented Python objects -> the page (URI) that documents them."""
    with open(html / "objects.inv", "rb") as f:
        inv = InventoryFile.load(f, "", lambda base, uri: uri)
    out = {}
    for kind in ("py:function", "py:class", "py:exception"):
        for name, item in inv.get(kind, {}).items():
            out[name] = item.uri if hasattr(item, "uri") else item[2]  # a tuple before Sphinx 8.2
    return out


def _public_objects():
    """Every public function and class: (public name, object), from each module's ``__all__``."""
    for modname in _public_modules():
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isclass(obj) or inspect.isroutine(obj):
                yield f"{modname}.{name}", obj


def _resolve(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_public_function_and_class_has_its_own_page(site):
    if site["returncode"] != 0:
        pytest.skip("the build failed (see the test above)")
    documented = {}
    for name, uri in _inventory(site["html"]).items():
        documented.setdefault(id(_resolve(name)), []).append((name, uri))
    missing, shared = [], []
    for public, obj in _public_objects():
        pages = documented.get(id(obj))
        if not pages:
            missing.append(public)
            continue
        name, uri = pages[0]
        if not uri.split("#")[0].endswith(f"/{name}.html"):
            shared.append(f"{public} (documented as {name} in {uri})")
    assert not missing, f"public objects without a reference page: {missing}"
    assert not shared, f"public objects without a page of their own: {shared}"


def test_a_docstring_example_reaches_its_page(site):
    """A page shows the Examples of its docstring (numpydoc drops what it cannot parse)."""
    if site["returncode"] != 0:
        pytest.skip("the build failed (see the test above)")
    html = site["html"]
    lost, without, seen = [], [], set()
    for name, uri in _inventory(html).items():
        obj = _resolve(name)
        if id(obj) in seen:  # autodoc also lists a class under its defining module's name (canonical)
            continue
        seen.add(id(obj))
        page = (html / uri.split("#")[0]).read_text(encoding="utf-8")
        has_example = "Examples\n--------" in inspect.cleandoc(obj.__doc__ or "")
        if has_example and 'class="rubric">Examples<' not in page:
            lost.append(name)
        if not has_example and not (inspect.isclass(obj) and issubclass(obj, BaseException)):
            without.append(name)
    assert not lost, f"pages that lost their docstring's Examples: {lost}"
    if without:  # reported, not failed: the docstrings belong to the package's modules
        warnings.warn(
            f"{len(without)} public functions/classes have no Examples section: {', '.join(sorted(without))}",
            stacklevel=1,
        )


def test_the_gallery_shows_the_lesson_as_committed_and_the_explorer_run(site):
    if site["returncode"] != 0:
        pytest.skip("the build failed (see the test above)")
    gallery = site["html"] / "gallery"
    lesson = (gallery / "pipeline_vs_funnel.html").read_text(encoding="utf-8")
    explorer = (gallery / "explore_funnels.html").read_text(encoding="utf-8")
    assert lesson.count("<img") >= 5, "the lesson's committed figures are missing"
    assert "cell_output" in explorer and "<img" in explorer, "the explorer was not executed"
    assert "Traceback" not in explorer
