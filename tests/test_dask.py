"""funnelkit.parallel on a Dask cluster: the same tidy pandas results, cell for cell.

Runs on a ``LocalCluster`` with two worker processes; skipped when Dask is not
installed (``pip install "funnelkit[dask]"``).
"""

from __future__ import annotations

import warnings

import pytest
from pandas.testing import assert_frame_equal

import funnelkit as fk
from funnelkit import parallel as P

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="1GiB"
        )
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def demo():
    return fk.datasets.load_demo()


@pytest.fixture(scope="module")
def lake(tmp_path_factory, demo):
    return P.write_partitioned(demo, tmp_path_factory.mktemp("lake") / "events", 4)


def _same(a, b):
    assert_frame_equal(a, b, check_exact=True)
    assert list(a.attrs) == list(b.attrs)
    for key in a.attrs:
        assert str(a.attrs[key]) == str(b.attrs[key]), key


CASES = [
    ("conversion", {"by": "product", "window": 30}),
    ("conversion", {"by": ["source", "owner"], "stale_after": "learn", "as_of": "2025-06-30"}),
    ("conversion", {"mode": "strict", "exclude": "lost"}),
    ("outcomes", {"by": "product"}),
    ("cohorts", {"by": "source"}),
    ("snapshot", {"as_of": "2025-03-31", "include_closed": True}),
    ("snapshot", {}),
    ("durations", {}),
    ("durations", {"per": "visit", "as_of": "2025-05-31"}),
]


@pytest.mark.parametrize(("name", "kw"), CASES)
def test_lead_partitioned_parquet_on_a_local_cluster(client, lake, demo, name, kw):
    ddf = dd.read_parquet(lake)
    assert ddf.npartitions == 4
    ref = ddf.compute()  # the same data in pandas, partition by partition
    one_core = getattr(fk.funnel, name, None) or getattr(fk.pipeline, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no shuffle warning: the lake is lead-partitioned
        got = getattr(P, name)(ddf, stages="pipeline4", **kw)
    assert P.last_run == {"path": "chunks", "engine": "dask", "n_chunks": 4}
    _same(got, one_core(ref, stages="pipeline4", **kw))
    if name in ("conversion", "outcomes", "cohorts"):
        # and the counts are those of the original in-memory log
        _same(got, one_core(demo, stages="pipeline4", **kw))


def test_a_frame_not_partitioned_by_lead_is_shuffled(client, demo):
    ddf = dd.from_pandas(demo.drop(columns="flag"), npartitions=3, sort=False)
    with pytest.warns(fk.DataWarning, match="not lead-partitioned"):
        got = P.conversion(ddf, stages="pipeline4", by="product", window=30)
    _same(got, fk.funnel.conversion(demo, stages="pipeline4", by="product", window=30))


def test_dask_errors(client, lake):
    ddf = dd.read_parquet(lake)
    with pytest.raises(fk.InvalidEventLogError, match="no stage set"):
        P.conversion(ddf)
    with pytest.raises(fk.InvalidEventLogError, match="nope"):
        P.conversion(ddf, stages="pipeline4", by="nope")
    with pytest.raises(fk.FunnelSpecError, match="engine='dask'"):
        P.conversion(ddf, stages="pipeline4", engine="threads")


def test_a_log_written_in_pieces(client, tmp_path, demo):
    """A log larger than memory is written piece by piece; a lead may span pieces."""
    pieces = [demo.iloc[i : i + 6000] for i in range(0, len(demo), 6000)]
    path = P.write_partitioned(iter(pieces), tmp_path / "pieces", 3)
    ddf = dd.read_parquet(path, split_row_groups=False)
    assert ddf.npartitions == 3
    ref = ddf.compute()
    for name, kw in (("conversion", {"by": "product", "window": 30}), ("durations", {})):
        one_core = getattr(fk.funnel, name, None) or getattr(fk.pipeline, name)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = getattr(P, name)(ddf, stages="pipeline4", **kw)
        _same(got, one_core(ref, stages="pipeline4", **kw))
    _same(P.conversion(ddf, stages="pipeline4"), fk.funnel.conversion(demo, stages="pipeline4"))


TRANSITION_CASES = [
    ({}, {"by": "product"}),
    ({"half_life": 60, "calendar": "weekdays"}, {"as_of": "2025-06-30", "value": "amount"}),
]


@pytest.mark.parametrize(("settings", "kw"), TRANSITION_CASES)
def test_transition_model_on_a_local_cluster(client, lake, demo, settings, kw):
    from test_parallel_transitions import same_model

    from funnelkit.transitions import TransitionModel

    ddf = dd.read_parquet(lake)
    ref = ddf.compute()  # the same data in pandas, partition by partition
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no shuffle warning: the lake is lead-partitioned
        got = P.fit_transitions(ddf, stages="pipeline4", n_samples=20, **settings, **kw)
    assert P.last_run == {"path": "chunks", "engine": "dask", "n_chunks": 4}
    same_model(got, TransitionModel(n_samples=20, **settings).fit(ref, stages="pipeline4", **kw))
    # the in-memory log in its own row order: the same stays and counts
    one = TransitionModel(n_samples=20, **settings).fit(demo, stages="pipeline4", **kw)
    _same(got.counts_, one.counts_)
    key = ["lead_id", "entered_at"]

    def ordered(stays):  # Parquet gives the ids another string dtype (NA-backed)
        return stays.assign(lead_id=stays["lead_id"].astype(object)).sort_values(key, ignore_index=True)

    _same(ordered(got.stays_), ordered(one.stays_))
    if not settings:  # whole counts: the same estimate and posterior in any order
        _same(got.win_probability(), one.win_probability())
