"""A wheel installed outside the repository makes the demo reports, as a new user would.

Builds the wheel from a copy of the source (``pip wheel --no-deps``), installs it
into a fresh virtual environment (``python -m venv``), then runs ``funnelkit demo``
in an empty folder: the data and reports must appear under that folder, nothing
inside the installed package, and the report must run on the venv's own Python
(no Jupyter kernel is registered there).

Network: the dependencies are installed from a local wheelhouse
(``$FUNNELKIT_WHEELHOUSE``, default ``<tmp>/funnelkit-wheelhouse``) with
``--no-index``; the first run fills it with ``pip download`` (the only time the
index is used), later runs are offline.  The venv is made and filled with
``uv`` when the dev extra installed it (about 9 s instead of 45 s with pip: the
same wheels, the same fresh venv), else with ``python -m venv`` and pip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

WHEELHOUSE = Path(os.environ.get("FUNNELKIT_WHEELHOUSE") or Path(tempfile.gettempdir()) / "funnelkit-wheelhouse")
BUILD_REQUIREMENTS = ["setuptools>=77", "wheel"]


def sh(cmd: list[str], *, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def clean_env(venv: Path) -> dict:
    """The environment of a new user's shell in that venv: no trace of the test's own venv or repo."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the source tree (the repo itself is not touched)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "funnelkit", src / "funnelkit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))
    dist = tmp_path_factory.mktemp("dist")
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    offline = ["--no-index", "--find-links", WHEELHOUSE]
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src]
    if subprocess.run([*cmd, *offline], capture_output=True).returncode != 0:
        sh([sys.executable, "-m", "pip", "download", "-q", "-d", WHEELHOUSE, *BUILD_REQUIREMENTS])
        sh([*cmd, *offline])
    (whl,) = dist.glob("funnelkit-*.whl")
    return whl


def uv_bin() -> str | None:
    """The ``uv`` executable of the dev extra, if installed."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return None
    try:
        return find_uv_bin()
    except FileNotFoundError:
        return None


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh virtual environment with only the wheel and its dependencies installed."""
    root = tmp_path_factory.mktemp("venv") / "v"
    uv = uv_bin()
    if uv:
        sh([uv, "venv", "-q", "--python", sys.executable, root])
        pip = [uv, "pip", "install", "-q", "--compile-bytecode", "--python", root / "bin" / "python"]
    else:
        sh([sys.executable, "-m", "venv", root])
        pip = [root / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    offline = ["--no-index", "--find-links", WHEELHOUSE, "--find-links", wheel.parent]
    if subprocess.run([*pip, *offline, wheel], capture_output=True).returncode != 0:
        sh([sys.executable, "-m", "pip", "download", "-q", "-d", WHEELHOUSE, wheel], timeout=1200)
        sh([*pip, *offline, wheel], timeout=1200)
    return root


def test_the_wheel_ships_the_template_and_the_demo_plan(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"funnelkit/templates/monthly_report.ipynb", "funnelkit/templates/demo_monthly.yaml",
            "funnelkit/py.typed"} <= names


def test_a_pip_installed_funnelkit_makes_the_demo_reports_in_an_empty_folder(venv, tmp_path):
    env = clean_env(venv)
    site = sh([venv / "bin" / "python", "-c", "import funnelkit, pathlib; print(pathlib.Path(funnelkit.__file__).parent)"],
              cwd=tmp_path, env=env).stdout.strip()
    package = Path(site)
    assert package.is_relative_to(venv) and not package.is_relative_to(REPO), package
    kernels = sh([venv / "bin" / "python", "-m", "jupyter", "kernelspec", "list"], cwd=tmp_path, env=env).stdout
    assert "funnelkit" not in kernels  # nothing registered: the reports run on this venv's Python anyway
    work = tmp_path / "empty"
    work.mkdir()
    start = time.perf_counter()
    res = sh([venv / "bin" / "funnelkit", "demo", "--only", "product=Enterprise", "--jobs", "1", "--no-progress"],
             cwd=work, env=env, timeout=900)
    seconds = time.perf_counter() - start
    print(f"funnelkit demo (one report) in a fresh venv: {seconds:.1f} s")
    index = work / "reports" / "2025-09" / "index.html"
    page = work / "reports" / "2025-09" / "product" / "Enterprise.html"
    assert f"Index: {index}" in res.stdout
    assert (work / "data" / "demo" / "events.csv").is_file() and page.is_file() and index.is_file()
    assert sorted(p.name for p in work.iterdir()) == ["data", "reports"]
    text = page.read_text(encoding="utf-8")
    assert "Enterprise: proposal -&gt; close converts 20% against 60% for the other products" in text
    assert "Content-Security-Policy" in text and "<script" not in text
    # nothing was written into the installed package
    assert not list(package.rglob("events.csv")) and not list(package.rglob("2025-09"))
    # and --out writes elsewhere, leaving the current folder alone
    other = tmp_path / "elsewhere"
    sh([venv / "bin" / "funnelkit", "demo", "--only", "source=referral", "--out", other, "--jobs", "1",
        "--no-progress"], cwd=work, env=env, timeout=900)
    assert (other / "reports" / "2025-09" / "source" / "referral.html").is_file()
    assert not (work / "reports" / "2025-09" / "source").exists()
