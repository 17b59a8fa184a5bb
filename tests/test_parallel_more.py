"""funnelkit.parallel: stale leads and the movement between two dates from lead-partitioned
chunks, cell for cell the one-core tables (in memory on every engine, and on a Dask cluster)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from parallel_checks import check as _check
from parallel_checks import same as _same

import funnelkit as fk
from funnelkit import parallel as P
from funnelkit import pipeline

STALE_CASES = [
    {},
    {"thresholds": {"qualification": 30, "meeting": 12}},
    {"as_of": "2025-03-31", "quantile": 0.75},
    {"owner": None, "as_of": "2024-09-30"},
]


@pytest.mark.parametrize("kw", STALE_CASES)
def test_stale_demo(demo, shuffled, kw):
    a = _check(P.stale, pipeline.stale, demo, n_chunks=4, **kw)
    assert len(a) and (a["days_overdue"] > 0).all()
    _check(P.stale, pipeline.stale, shuffled, n_chunks=3, **kw)


MOVE_CASES = [
    {"start": "2025-06-30", "end": "2025-07-31"},
    {"start": "2024-12-31", "end": "2025-06-30", "by": "product"},
    {"start": "2025-01-31", "end": "2025-03-31 12:00", "by": ["source", "owner"]},
    {"start": "2020-01-01", "end": "2024-06-30"},  # start before the data
    {"start": "2025-05-31", "end": "2030-01-01", "by": "owner"},  # end after the data
]


@pytest.mark.parametrize("kw", MOVE_CASES)
def test_movement_demo(demo, shuffled, kw):
    w = _check(P.movement, pipeline.movement, demo, n_chunks=4, **kw)
    assert w.attrs["reconciled"]
    _check(P.movement, pipeline.movement, shuffled, n_chunks=5, **kw)
    leads_kw = {k: v for k, v in kw.items() if k != "by"}
    _check(P.movement_leads, pipeline.movement_leads, demo, n_chunks=4, segments=kw.get("by"), **leads_kw)
    _check(P.movement_leads, pipeline.movement_leads, shuffled, n_chunks=3, **leads_kw)


def test_movement_sums_are_the_parts(demo):
    """The waterfall's counts are sums over leads: those of the chunks' leads add up."""
    kw = {"start": "2025-03-31", "end": "2025-06-30"}
    whole = P.movement(demo, n_chunks=4, engine="serial", **kw).set_index("movement")["leads"]
    ids = demo["lead_id"].unique()
    parts = [demo[demo["lead_id"].isin(ids[i::3])] for i in range(3)]
    summed = sum(pipeline.movement(p, **kw).set_index("movement")["leads"] for p in parts)
    pd.testing.assert_series_equal(whole, summed)


def test_undated_events_integer_ids_and_text_segments():
    """Undated leads follow the whole log's last event, not the chunk's."""
    log = fk.datasets.load_demo(n_leads=3000)
    raw = log.copy()
    raw["product"] = raw["product"].astype(str)
    codes, _ = pd.factorize(raw["lead_id"])
    raw["lead_id"] = codes * 7 + 3
    raw.loc[np.random.default_rng(0).random(len(raw)) < 0.03, "timestamp"] = pd.NaT
    only_undated = raw["lead_id"].isin(raw["lead_id"].unique()[:20])
    raw.loc[only_undated, "timestamp"] = pd.NaT
    raw.attrs = log.attrs
    sh = raw.sample(frac=1, random_state=2)
    sh.attrs = log.attrs
    for lg in (raw, sh):
        _check(P.stale, pipeline.stale, lg, n_chunks=4, as_of="2025-01-15")
        _check(P.stale, pipeline.stale, lg, n_chunks=4, thresholds={"meeting": 5})
        _check(P.movement, pipeline.movement, lg, n_chunks=4, start="2024-10-31", end="2025-01-15", by="product")
        last = lg["timestamp"].max()
        _check(P.movement, pipeline.movement, lg, n_chunks=4, start="2024-10-31", end=last, by="owner")


def test_errors_are_the_one_core_errors(demo):
    for fn, kw in (
        ("stale", {"quantile": 1.5}),
        ("stale", {"owner": "rep"}),
        ("stale", {"thresholds": {"nope": 3}}),
        ("movement", {"start": "2025-06-30", "end": "2025-06-01"}),
        ("movement", {"start": "2025-06-30", "end": "2025-07-31", "by": "nope"}),
    ):
        with pytest.raises(fk.FunnelkitError) as ours:
            getattr(P, fn)(demo, n_chunks=3, engine="serial", **kw)
        with pytest.raises(fk.FunnelkitError) as theirs:
            getattr(pipeline, fn)(demo, **kw)
        assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)


def test_auto_engine_small_log_runs_one_core(demo):
    _same(P.stale(demo), pipeline.stale(demo))
    assert P.last_run["path"] == "direct"


@pytest.fixture(scope="module")
def big():
    """A generated 200k-lead log (about 570k events)."""
    return fk.datasets.make_events(200_000, seed=3)


@pytest.mark.parametrize("engine", ["processes", "threads"])
def test_200k_leads_all_engines(big, engine):
    kw = {"stages": "pipeline4", "engine": engine, "n_jobs": 2}
    _check(P.stale, pipeline.stale, big, as_of="2025-06-30", **kw)
    _check(P.movement, pipeline.movement, big, start="2025-03-31", end="2025-06-30", by="product", **kw)


# ---------------------------------------------------------------------------
# on a Dask LocalCluster (skipped without dask)
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="1GiB"
        )
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def lake(tmp_path_factory, demo):
    return P.write_partitioned(demo, tmp_path_factory.mktemp("lake") / "events", 4)


DASK_CASES = [
    ("stale", {}),
    ("stale", {"as_of": "2025-03-31", "thresholds": {"meeting": 10}}),
    ("movement", {"start": "2025-03-31", "end": "2025-06-30", "by": "product"}),
    ("movement_leads", {"start": "2025-06-30", "end": "2025-07-31"}),
]


@pytest.mark.parametrize(("name", "kw"), DASK_CASES)
def test_on_a_local_cluster(client, lake, demo, name, kw):
    import dask.dataframe as dd

    ddf = dd.read_parquet(lake)
    ref = ddf.compute()  # the same data in pandas, partition by partition
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no shuffle warning: the lake is lead-partitioned
        got = getattr(P, name)(ddf, stages="pipeline4", **kw)
    assert P.last_run == {"path": "chunks", "engine": "dask", "n_chunks": 4}
    _same(got, getattr(pipeline, name)(ref, stages="pipeline4", **kw))
    # the lists are sorted by their keys: the same as on the original in-memory log
    _same(got, getattr(pipeline, name)(demo, stages="pipeline4", **kw))
