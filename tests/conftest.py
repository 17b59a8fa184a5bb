"""Shared fixtures: Agg backend, closed figures, the demo log, ../shared/data."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

import funnelkit as fk

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="session")
def demo_log():
    """The default demo event log (6,000 leads). Do not modify it in tests."""
    return fk.datasets.load_demo()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def maven_stages():
    return fk.StageSet("maven", ["Prospecting", "Engaging"], won="Won", lost=["Lost"])


@pytest.fixture(scope="session")
def maven_log(shared_data, maven_stages):
    """The Maven CRM snapshot as an event log (skips without ../shared)."""
    return fk.from_snapshot(
        shared_data / "maven_crm" / "sales_pipeline.csv",
        lead="opportunity_id",
        stage="deal_stage",
        stages=maven_stages,
        dates={"Engaging": "engage_date", "Won": "close_date", "Lost": "close_date"},
        amount="close_value",
    )


@pytest.fixture(scope="session")
def ecommerce_log(shared_data):
    """The e-commerce per-page tables as an event log (skips without ../shared)."""
    d = shared_data / "ecommerce_funnel"
    return fk.from_stage_tables(
        {
            "home": d / "home_page_table.csv",
            "search": d / "search_page_table.csv",
            "payment": d / "payment_page_table.csv",
            "confirmation": d / "payment_confirmation_table.csv",
        },
        lead="user_id",
        attributes=d / "user_table.csv",
        time="date",
    )


@pytest.fixture(scope="session", autouse=True)
def demo_data_in_checkout():
    """The demo plans in params/ name ../data/demo/events.csv, which `make demo` writes.

    A fresh clone (CI) has no data/ folder yet: write the same seeded demo
    data there once (the folder is git-ignored), so tests that load those
    plans do not depend on having run the demo first.
    """
    from filelock import FileLock

    path = Path(__file__).resolve().parents[1] / "data" / "demo" / "events.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # pytest-xdist workers each run this once
        if not path.exists():
            fk.datasets.write_demo(path)
    return path


# the funnelkit.parallel tests' logs (test_parallel*.py; other files define their own demo)
@pytest.fixture(scope="module")
def demo():
    return fk.datasets.load_demo()


@pytest.fixture(scope="module")
def shuffled(demo):
    """The demo in random row order: not sorted by lead, so split by lead hash."""
    out = demo.sample(frac=1, random_state=1).reset_index(drop=True)
    out.attrs = demo.attrs
    return out
