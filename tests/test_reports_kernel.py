"""The Makefile registers the "funnelkit" Jupyter kernel (the reports' and lessons' kernel) whenever it is missing.

The kernel spec is its own make target, so an existing venv whose
pyproject.toml has not changed still gets it from ``make demo`` or
``make test``; once registered, it is not registered again.  Checked with
``make -n`` (what make would run) on a stand-in venv folder, so nothing is
installed.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "ipykernel install --sys-prefix --name funnelkit"

pytestmark = pytest.mark.skipif(shutil.which("make") is None or not (ROOT / "Makefile").is_file(),
                                reason="needs make and the repository's Makefile")


def _dry_run(target: str, venv: Path) -> list[str]:
    out = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"], capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.splitlines()


@pytest.fixture
def venv(tmp_path):
    """A venv folder that is installed and up to date (its stamp newer than pyproject.toml) but has no kernel."""
    v = tmp_path / "venv"
    (v / "bin").mkdir(parents=True)
    stamp = v / ".installed"
    stamp.touch()
    later = max(time.time(), (ROOT / "pyproject.toml").stat().st_mtime) + 60
    os.utime(stamp, (later, later))
    return v


@pytest.mark.parametrize("target", ["demo", "test"])
def test_missing_kernel_is_registered_without_reinstalling(venv, target):
    lines = _dry_run(target, venv)
    assert not any("pip install" in line for line in lines), lines  # the install itself is up to date
    register = [i for i, line in enumerate(lines) if INSTALL in line]
    assert len(register) == 1, lines
    assert lines[register[0]].startswith(f"{venv}/bin/python -m ipykernel")
    # registered before the target's own commands run
    own = "bin/funnelkit demo" if target == "demo" else "ruff check"
    assert register[0] < next(i for i, line in enumerate(lines) if own in line)


def test_registered_kernel_is_left_alone(venv):
    spec = venv / "share" / "jupyter" / "kernels" / "funnelkit" / "kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text("{}")
    assert not any(INSTALL in line for line in _dry_run("demo", venv))
    assert not any(INSTALL in line for line in _dry_run("test", venv))
