"""The README's code examples run as written (on the demo log)."""

import re
from pathlib import Path

import pytest

import funnelkit as fk

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
# the first example reads the user's own file, and blocks starting "# needs a cluster" a Dask
# cluster; every other one runs on the demo log
RUNNABLE = [b for b in BLOCKS if "crm_export.csv" not in b and not b.startswith("# needs a cluster")]
CLUSTER = [b for b in BLOCKS if b.startswith("# needs a cluster")]


def test_cluster_examples_are_python_and_call_the_package():
    for b in CLUSTER:
        compile(b, "README.md", "exec")  # at least valid Python
        assert "parallel.conversion(" in b and "write_partitioned(" in b


def test_readme_has_examples():
    assert len(RUNNABLE) >= 3


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_readme_example_runs(code, demo_log):
    exec(compile(code, "README.md", "exec"), {"fk": fk, "log": demo_log})
