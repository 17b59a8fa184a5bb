"""funnelkit.parallel: lead-partitioned chunks give the one-core results, cell for cell."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from parallel_checks import check as _check
from parallel_checks import same as _same

import funnelkit as fk
from funnelkit import _kernels as K
from funnelkit import parallel as P
from funnelkit import stats

FUNNEL_CASES = [
    {},
    {"by": "product", "window": "30D"},
    {"by": ["product", "source"], "stale_after": "learn"},
    {"by": "owner", "as_of": "2025-03-31"},
    {"mode": "strict", "step_windows": {"proposal": 20}},
    {"mode": "any", "exclude": "lost", "by": "source"},
    {"as_of": None, "by": "product"},
    {"stale_after": {"meeting": 10}, "by": "product"},
    {"stale_after": {"meeting": 10, "qualification": None}, "by": "product"},
    {"by": "product", "value": "sum", "level": 0.9, "method": "jeffreys"},
]


@pytest.mark.parametrize("kw", FUNNEL_CASES)
def test_conversion_demo(demo, kw):
    _check(P.conversion, fk.funnel.conversion, demo, n_chunks=5, **kw)


@pytest.mark.parametrize("kw", FUNNEL_CASES[:4])
def test_conversion_hashed(shuffled, kw):
    _check(P.conversion, fk.funnel.conversion, shuffled, n_chunks=4, **kw)
    assert P.last_run["n_chunks"] == 4


@pytest.mark.parametrize(
    "kw", [{"by": "product"}, {"by": ["source"], "stale_after": "learn", "as_of": "2025-05-15"}, {}]
)
def test_outcomes_demo(demo, shuffled, kw):
    _check(P.outcomes, fk.funnel.outcomes, demo, n_chunks=3, **kw)
    _check(P.outcomes, fk.funnel.outcomes, shuffled, n_chunks=3, **kw)


@pytest.mark.parametrize("kw", [{"by": "product"}, {"stale_after": "learn", "window": 45}, {"freq": "QS"}])
def test_cohorts_demo(demo, kw):
    _check(P.cohorts, fk.funnel.cohorts, demo, n_chunks=4, **kw)


@pytest.mark.parametrize(
    "kw",
    [{}, {"as_of": "2025-02-28", "include_closed": True}, {"as_of": "2024-06-01"}, {"segments": "owner"}],
)
def test_snapshot_demo(demo, shuffled, kw):
    _check(P.snapshot, fk.pipeline.snapshot, demo, n_chunks=4, **kw)
    _check(P.snapshot, fk.pipeline.snapshot, shuffled, n_chunks=4, **kw)


@pytest.mark.parametrize("kw", [{}, {"per": "visit", "as_of": "2025-01-31"}])
def test_durations_demo(demo, shuffled, kw):
    _check(P.durations, fk.pipeline.durations, demo, n_chunks=4, **kw)
    _check(P.durations, fk.pipeline.durations, shuffled, n_chunks=4, **kw)


def test_fractional_amounts_add_up_in_the_one_core_order():
    """The marketing demo has amounts in cents: its sums depend on the order of the
    additions, and the combine step adds them in the one-core order."""
    mk = fk.datasets.load_marketing_demo()
    assert not K.exact_sums([K.scan(mk, {"time": "timestamp", "lead": "lead_id", "amount": "amount"})])
    _check(P.conversion, fk.funnel.conversion, mk, n_chunks=6, by="channel")
    _check(P.outcomes, fk.funnel.outcomes, mk, n_chunks=6, by="channel")
    _check(P.cohorts, fk.funnel.cohorts, mk, n_chunks=6)
    sh = mk.sample(frac=1, random_state=4).reset_index(drop=True)
    sh.attrs = mk.attrs
    _check(P.conversion, fk.funnel.conversion, sh, n_chunks=5, by="channel")


def test_undated_events_integer_ids_and_text_segments():
    """The as-of rule for undated leads uses the whole log's last event, not the chunk's."""
    log = fk.datasets.load_demo(n_leads=3000)
    raw = log.copy()
    raw["product"] = raw["product"].astype(str)
    codes, _ = pd.factorize(raw["lead_id"])
    raw["lead_id"] = codes * 7 + 3
    raw.loc[np.random.default_rng(0).random(len(raw)) < 0.03, "timestamp"] = pd.NaT
    raw.attrs = log.attrs
    sh = raw.sample(frac=1, random_state=2)
    sh.attrs = log.attrs
    for lg in (raw, sh):
        _check(P.conversion, fk.funnel.conversion, lg, n_chunks=4, by="product", as_of="2025-04-30")
        _check(P.conversion, fk.funnel.conversion, lg, n_chunks=4, by="product", stale_after="learn")
        _check(P.outcomes, fk.funnel.outcomes, lg, n_chunks=4, by=["product", "owner"], as_of="2024-12-31")
        _check(P.snapshot, fk.pipeline.snapshot, lg, n_chunks=4, as_of="2025-01-15")
        _check(P.durations, fk.pipeline.durations, lg, n_chunks=4, as_of="2025-01-15")


@pytest.fixture(scope="module")
def big():
    """A generated 200k-lead log (about 570k events)."""
    log = fk.datasets.make_events(200_000, seed=3)
    return log


@pytest.mark.parametrize("engine", ["processes", "threads"])
def test_200k_leads_all_engines(big, engine):
    kw = {"stages": "pipeline4", "engine": engine, "n_jobs": 2}
    filters = list(warnings.filters)
    _check(P.conversion, fk.funnel.conversion, big, by="product", window="30D", **kw)
    assert warnings.filters == filters  # the pool left the warning filters as they were
    assert P.last_run["engine"] == engine
    _check(
        P.conversion,
        fk.funnel.conversion,
        big,
        by=["source", "owner"],
        stale_after="learn",
        as_of="2025-06-30",
        **kw,
    )
    _check(P.outcomes, fk.funnel.outcomes, big, by="product", **kw)
    _check(P.snapshot, fk.pipeline.snapshot, big, as_of="2025-08-31", **kw)
    _check(P.durations, fk.pipeline.durations, big, **kw)


def test_auto_engine_small_log_runs_one_core(demo):
    a = P.conversion(demo, by="product")
    assert P.last_run["path"] == "direct"
    _same(a, fk.funnel.conversion(demo, by="product"))


def test_errors_are_the_one_core_errors(demo):
    with pytest.raises(fk.InvalidEventLogError) as par:
        P.conversion(demo, by="nope", n_chunks=3, engine="serial")
    with pytest.raises(fk.InvalidEventLogError) as one:
        fk.funnel.conversion(demo, by="nope")
    assert str(par.value) == str(one.value)
    bad = demo.copy()
    bad.loc[5, "lead_id"] = None
    bad.attrs = demo.attrs
    with pytest.raises(fk.InvalidEventLogError) as par:
        P.conversion(bad, n_chunks=3, engine="serial")
    with pytest.raises(fk.InvalidEventLogError) as one:
        fk.funnel.conversion(bad)
    assert str(par.value) == str(one.value)
    with pytest.raises(fk.FunnelSpecError):
        P.conversion(demo, mode="sideways", n_chunks=2, engine="serial")
    with pytest.raises(fk.FunnelSpecError, match="engine"):
        P.conversion(demo, engine="gpu")
    with pytest.raises(fk.FunnelSpecError, match="Dask DataFrame"):
        P.conversion(demo, engine="dask")


def test_incidence_quantile_from_a_histogram_is_bit_for_bit():
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(1, 400))
        d = np.round(rng.exponential(10, n), int(rng.integers(0, 3)))
        e = rng.integers(0, 3, n)
        ud, cnt = K._histogram(d, e)
        half = n // 2
        merged = K._merge_hist([K._histogram(d[:half], e[:half]), K._histogram(d[half:], e[half:])])
        for q in (0.5, 0.95):
            want = stats.incidence_quantile(d, e, q)
            got = K.incidence_quantile_hist(ud, cnt, q)
            got2 = K.incidence_quantile_hist(*merged, q)
            assert (np.isnan(want) and np.isnan(got)) or want == got == got2


def test_lead_hash_depends_on_the_id_only():
    ids = ["L001", "L002", "é-ünïcode", "", "L001"]
    h = P.lead_hash(ids)
    assert h[0] == h[4] and len(set(h[:4].tolist())) == 4
    for other in (
        pd.Series(ids, dtype="str"),
        pd.Series(ids, dtype=object),
        pd.Categorical(ids),
        pd.Series(ids, dtype="string[python]"),
        np.array(ids),
    ):
        assert (P.lead_hash(other) == h).all()
    import pyarrow as pa

    assert (P.lead_hash(pa.array(ids, type=pa.large_string())) == h).all()
    ints = np.array([3, 10, 3, 2**40])
    assert (P.lead_hash(ints) == P.lead_hash(pd.Series(ints))).all()
    assert (P.lead_hash(ints.astype(float)) == P.lead_hash(ints)).all()
    buckets = P.lead_partition([f"L{i:06d}" for i in range(100_000)], 8)
    share = np.bincount(buckets, minlength=8) / 100_000
    assert share.min() > 0.115 and share.max() < 0.135


def test_write_partitioned_puts_each_lead_in_one_file(tmp_path, demo):
    path = P.write_partitioned(demo, tmp_path / "lake", 4)
    files = sorted(path.glob("part-*.parquet"))
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(4)]
    parts = [pd.read_parquet(f) for f in files]
    assert sum(len(p) for p in parts) == len(demo)
    seen = [set(p["lead_id"]) for p in parts]
    assert sum(len(s) for s in seen) == demo["lead_id"].nunique()
    for i, p in enumerate(parts):
        assert (P.lead_partition(p["lead_id"], 4) == i).all()
        assert isinstance(p["product"].dtype, pd.CategoricalDtype)
        assert list(p["product"].cat.categories) == list(demo["product"].cat.categories)
    # rewriting replaces the files; URIs go through Arrow's file systems
    P.write_partitioned(demo, path, 2)
    assert len(list(path.glob("part-*.parquet"))) == 2
    uri = P.write_partitioned(demo, f"file://{tmp_path / 'uri'}", 2)
    assert uri.startswith("file://") and len(list((tmp_path / "uri").glob("part-*.parquet"))) == 2


def test_auto_engine_on_a_large_log(big):
    """Funnel counts come back from worker processes (unless this process runs other
    threads, which a fork could deadlock on); the per-lead tables (snapshot, durations) run
    on one core (their lean one-core code beats splitting), in threads on request."""
    import threading

    P.conversion(big, stages="pipeline4", by="product", n_jobs=2)
    single = threading.active_count() == 1
    assert P.last_run["engine"] == ("processes" if single else "threads") and P.last_run["path"] == "chunks"
    P.durations(big, stages="pipeline4", n_jobs=2)
    assert P.last_run["path"] == "direct"
    P.snapshot(big, stages="pipeline4", as_of="2025-08-31", n_jobs=2)
    assert P.last_run["path"] == "direct"
    P.snapshot(big, stages="pipeline4", as_of="2025-08-31", n_jobs=2, engine="threads")
    assert P.last_run["engine"] == "threads" and P.last_run["path"] == "chunks"
    P.conversion(big, stages="pipeline4", n_jobs=1)
    assert P.last_run["path"] == "direct"
    # the waterfall: the one-core single pass over the events beats two snapshots on every core
    kw = {"stages": "pipeline4", "start": "2025-03-31", "end": "2025-06-30", "by": "product"}
    got = P.movement(big, n_jobs=2, **kw)
    assert P.last_run["path"] == "direct"
    _same(got, fk.pipeline.movement(big, **kw))
    P.movement(big, n_jobs=2, engine="threads", **kw)
    assert P.last_run["engine"] == "threads" and P.last_run["path"] == "chunks"
    # the transition model: the lean one-core fit beats chunks on threads
    P.fit_transitions(big, stages="pipeline4", by="product", n_samples=0)
    assert P.last_run["path"] == "direct"


def test_a_stage_set_per_segment_runs_one_core(demo):
    spec = {"default": "pipeline4", "product": {"Enterprise": "pipeline4"}}
    got = P.conversion(demo, stages=spec, by="product", n_chunks=3, engine="serial")
    assert P.last_run["path"] == "direct"
    _same(got, fk.funnel.conversion(demo, stages=spec, by="product"))
