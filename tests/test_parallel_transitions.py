"""funnelkit.parallel.fit_transitions: the stage-transition model from lead-partitioned
chunks is the one-core model, cell for cell (stays, counts, notes, estimates, posterior
samples, forecasts), on every engine and on real logs.  Dask: tests/test_dask.py."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from messy_logs import MODEL_CASES, fines_four_steps, no_lost_outcome_log
from pandas.testing import assert_frame_equal

import funnelkit as fk
import funnelkit.forecast
from funnelkit import parallel as P
from funnelkit.exceptions import FunnelSpecError, InvalidEventLogError, TransitionModelError
from funnelkit.transitions import TransitionModel


def same_model(a: TransitionModel, b: TransitionModel) -> None:
    """Two fitted models are the same: tables, notes, estimates and posterior samples."""
    assert a.states_ == b.states_ and a.by_ == b.by_ and a.notes_ == b.notes_
    assert a.as_of_ == b.as_of_ and a.value_ == b.value_ and a._K == b._K
    for name in ("groups_", "stays_", "counts_", "probabilities_", "pooled_probabilities_", "summary"):
        assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
    assert_frame_equal(a.win_probability(level=0.9), b.win_probability(level=0.9), check_exact=True)
    assert_frame_equal(a.expected_steps(), b.expected_steps(), check_exact=True)
    # close_probability, simulate and the forecasts are functions of the arrays below
    for name in ("_mass", "_stalled", "_mass_samples", "_stalled_samples", "_n_gs", "_stay_leads", "_lead_value"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or np.array_equal(x, y, equal_nan=True), name
    assert a._lead_ids.equals(b._lead_ids) and a._lead_ids.dtype == b._lead_ids.dtype
    pd.testing.assert_series_equal(a._lead_group, b._lead_group)
    if a.calendar_ is not None:
        assert_frame_equal(a.calendar_.factors_, b.calendar_.factors_, check_exact=True)


def fit_both(log, *, settings=None, n_chunks=4, engine="serial", n_jobs=2, **kw):
    settings = {"n_samples": 30, **(settings or {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = TransitionModel(**settings).fit(log, **kw)
        par = P.fit_transitions(log, n_chunks=n_chunks, engine=engine, n_jobs=n_jobs, **settings, **kw)
    assert P.last_run["path"] == "chunks", P.last_run
    same_model(par, one)
    return par


CASES = MODEL_CASES


@pytest.mark.parametrize(("settings", "kw"), CASES)
def test_demo_and_shuffled(demo, shuffled, settings, kw):
    tm = fit_both(demo, settings=settings, **kw)
    assert len(tm.stays_) and tm.counts_["n"].sum() == len(tm.stays_)
    fit_both(shuffled, settings=settings, n_chunks=3, **kw)


@pytest.mark.parametrize("engine", ["threads", "processes"])
def test_engines(demo, shuffled, engine):
    fit_both(demo, engine=engine, by="product", value="amount")
    fit_both(shuffled, engine=engine, n_chunks=5, settings={"half_life": 60}, as_of="2025-05-15")


def test_one_chunk_per_lead_and_chunks_without_leads(demo):
    """Many chunks: some hold a handful of leads; sums and order still come out right."""
    small = demo[demo["lead_id"].isin(demo["lead_id"].unique()[:40])]
    fit_both(small, n_chunks=40, by="product")
    fit_both(small.sample(frac=1, random_state=2), n_chunks=40, as_of="2025-01-31")


def test_undated_events(demo):
    log = demo.copy()
    log.loc[log.index[::13], "timestamp"] = pd.NaT
    # a few leads with only undated events
    only = log["lead_id"].isin(log["lead_id"].unique()[::97])
    log.loc[only, "timestamp"] = pd.NaT
    tm = fit_both(log, by="product")
    assert any("unknown duration" in n for n in tm.notes_)
    fit_both(log, as_of="2025-03-31")
    fit_both(log.sample(frac=1, random_state=5), n_chunks=3, settings={"calendar": "weekdays"})


def test_events_after_the_outcome_are_noted_across_chunks(demo):
    """The note "N event(s) of M lead(s) come after the lead's first outcome" adds up."""
    won = demo[demo["stage"] == "won"].drop_duplicates("lead_id").head(30)
    late = won.assign(stage="proposal", timestamp=won["timestamp"] + pd.Timedelta(days=2))
    log = pd.concat([demo, late]).sort_values(["lead_id", "timestamp"], kind="stable").reset_index(drop=True)
    log.attrs = demo.attrs
    tm = fit_both(log, n_chunks=5)
    assert any(n.startswith("30 event(s) of 30 lead(s) come after") for n in tm.notes_)


def test_a_stage_set_without_a_lost_outcome():
    log = no_lost_outcome_log()
    tm = fit_both(log, n_chunks=3, by="variant", as_of="2025-06-30")
    assert any("horizon_days" in n for n in tm.notes_)


def test_forecast_with_the_parallel_model(demo):
    """The forecast made with the chunked model is the one-core forecast."""
    kw = dict(as_of="2025-03-31", horizon="60D", n_draws=200)
    one = TransitionModel(n_samples=40).fit(demo, as_of="2025-03-31")
    par = P.fit_transitions(demo, n_samples=40, as_of="2025-03-31", n_chunks=3, engine="serial")
    a = fk.forecast.forecast(demo, model=par, **kw)
    b = fk.forecast.forecast(demo, model=one, **kw)
    assert_frame_equal(a.summary, b.summary, check_exact=True)
    q = dict(days_in_stage=[0, 3, 40], horizon_days=[30, 90, 365])
    assert_frame_equal(par.close_probability("proposal", **q), one.close_probability("proposal", **q),
                       check_exact=True)


def test_model_argument_and_errors(demo):
    tm = TransitionModel(n_samples=0, half_life=45)
    out = P.fit_transitions(demo, model=tm, by="product", n_chunks=3, engine="serial")
    assert out is tm and tm.half_life == 45
    same_model(tm, TransitionModel(n_samples=0, half_life=45).fit(demo, by="product"))
    with pytest.raises(FunnelSpecError, match="not both"):
        P.fit_transitions(demo, model=TransitionModel(), n_samples=3)
    with pytest.raises(TypeError):
        P.fit_transitions(demo, model="model")
    with pytest.raises(FunnelSpecError, match="engine"):
        P.fit_transitions(demo, engine="gpu")
    # errors are those of one core (the chunked fit falls back to it)
    with pytest.raises(TransitionModelError, match="no event at or before") as e1:
        TransitionModel().fit(demo, as_of="2001-01-01")
    with pytest.raises(TransitionModelError, match="no event at or before") as e2:
        P.fit_transitions(demo, as_of="2001-01-01", n_chunks=3, engine="serial")
    assert str(e1.value) == str(e2.value)
    bad = demo.copy()
    bad["stage"] = bad["stage"].astype(str).replace({"meeting": "demo call"})
    with pytest.raises(InvalidEventLogError, match="demo call"):
        P.fit_transitions(bad, n_chunks=3, engine="serial")
    assert P.last_run["path"] == "fallback"


def test_small_logs_run_on_one_core(demo):
    P.fit_transitions(demo, n_samples=0)
    assert P.last_run["path"] == "direct"


# ---------------------------------------------------------------------------
# real logs (../shared/data; skipped when absent)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fines(shared_data):
    return fines_four_steps(shared_data)


@pytest.mark.shared
def test_road_traffic_fines(fines):
    tm = fit_both(fines, n_chunks=4, engine="threads", by="vehicleClass")
    assert any("come after the lead's first outcome" in n for n in tm.notes_)
    shuffled = fines.sample(frac=1, random_state=3).reset_index(drop=True)
    shuffled.attrs = fines.attrs
    fit_both(shuffled, n_chunks=3, engine="threads", as_of="2010-12-31", settings={"half_life": 365})


@pytest.mark.shared
def test_road_traffic_fines_without_a_lost_outcome(shared_data):
    path = shared_data / "road_traffic_fines" / "events.parquet"
    raw = fk.read_events(path)
    ss = fk.StageSet("paid", ["Create Fine"], won="Payment", horizon_days=365)
    log = fk.read_events(path, stages=ss, ignore=sorted(set(raw["stage"].astype(str)) - set(ss.labels)))
    tm = fit_both(log, n_chunks=3, engine="threads")
    assert any("horizon_days" in n for n in tm.notes_)


@pytest.mark.shared
def test_bpic2020_domestic_declarations(shared_data):
    path = shared_data / "bpic2020" / "DomesticDeclarations.xes.gz"
    raw = fk.read_xes(path)
    submitted = "Declaration SUBMITTED by EMPLOYEE"
    ss = fk.StageSet("bpic", [submitted], won="Payment Handled", lost=["Declaration REJECTED by EMPLOYEE"],
                     infer_skipped=False)
    log = fk.read_xes(path, stages=ss, ignore=sorted(set(raw["stage"].astype(str)) - set(ss.labels)))
    fit_both(log, n_chunks=4, settings={"calendar": "NL"})
    fit_both(log.sample(frac=1, random_state=1), n_chunks=3, as_of="2018-06-30")
