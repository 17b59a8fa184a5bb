"""The transition model's lean fit (int32 lead codes, int8 states, masks instead of index
arrays, a lazily built ``stays_``, posterior samples a few at a time; see issue #14) against
the code it replaced, kept here verbatim as the reference (commit ff5a856: ``_stay_events``,
``_latest``, ``_fit_events`` and ``_estimate``, with what the old fit stored on the model
returned in a dict): same stays, counts, notes, cells, estimates and posterior samples, bit
for bit, on the demo, on hostile logs, on a stage set without a lost outcome and on the
chunked fit."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from messy_logs import MODEL_CASES, messy, no_lost_outcome_log
from pandas.testing import assert_frame_equal, assert_series_equal

import funnelkit as fk
from funnelkit import parallel as P
from funnelkit._common import DAY_NS, NAT, to_datetimes
from funnelkit.data import checked_leads, checked_times
from funnelkit.exceptions import InvalidEventLogError, Problem, TransitionModelError
from funnelkit.transitions import (
    MAX_DAYS,
    OPEN,
    Calendar,
    TransitionModel,
    _fit_moment,
    _fit_spec,
    _lead_runs,
    _ngroup,
    _starts,
    _stay_events,
)

# the calendar's NaT conversions warn in the reference as in the lean fit
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")


# ---------------------------------------------------------------------------
# the reference: the fit before the memory work, verbatim
# ---------------------------------------------------------------------------
def reference_stay_events(log: pd.DataFrame, spec: dict, *, lead_codes=None, lead_ids=None) -> dict:
    """The events of a set of whole leads that make their stays (the fit's per-lead part).

    Keeps the events known at ``as_of``, sorts each lead's events by time
    (an outcome last at ties), cuts each path at its first outcome and keeps
    the first event of each run of the same stage.  Returns those events'
    lead codes ``lc`` (indices into ``lead_ids``), times ``tt`` (int64 ns)
    and states ``st``, in (lead, time) order; the latest ``by`` values and
    ``value`` of every lead (``segments``, ``value``); the counts behind the
    note on events after an outcome; and ``kept`` (False: no event at or
    before ``as_of``).  Leads have all their events in ``log``, so the
    results of lead-partitioned chunks, put one after the other, are those
    of the whole log (``funnelkit._kernels.merge_stay_events``).

    ``lead_codes`` and ``lead_ids``: the leads already numbered (else
    ``pd.factorize`` of the lead column, checked).
    """
    ss, states, n_tr, by, value = spec["ss"], spec["states"], spec["n_tr"], spec["by"], spec["value"]
    lead, stage, time = spec["lead"], spec["stage"], spec["time"]
    # state index per row, through the categories (vectorised)
    cat = pd.Categorical(log[stage])
    lut = []
    for c in cat.categories:
        name = ss.canonical(c)
        lut.append(states.index(name) if name is not None else -2)
    lut = np.array([*lut, -2], dtype=np.int64)
    codes = cat.codes.astype(np.int64)
    state = lut[np.where(codes < 0, len(lut) - 1, codes)]
    if (state == -2).any():
        bad = pd.Series(log[stage].to_numpy()[state == -2]).value_counts(dropna=False)
        raise InvalidEventLogError(
            [
                Problem(
                    "unknown_stage",
                    stage,
                    f"labels not in stage set {ss.name!r}: "
                    + ", ".join(f"{k!r} x{v:,}" for k, v in bad.items()),
                    "load the log with this stage set (read_events(..., stages=...)) or add aliases.",
                )
            ]
        )
    if lead_codes is None:
        lead_codes, lead_ids = checked_leads(log, lead=lead)
    t = checked_times(log, time=time)  # UTC instants for a log with a zone
    dated = t != NAT
    if spec["T"] is None:
        T, data_end = _fit_moment(spec, t[dated].max() if dated.any() else None)
    else:
        T, data_end = spec["T"], spec["data_end"]
    n_leads = len(lead_ids)
    out = {
        "lead_ids": lead_ids,
        "T": T,
        "data_start": int(t[dated].min()) if dated.any() else None,
        "kept": True,
        "n_after": 0,
        "n_after_leads": 0,
    }

    # events kept at as_of (the snapshot's rule for undated events)
    if T >= data_end and dated.all():  # everything is known at as_of: no copies
        keep = np.ones(t.size, dtype=bool)
        lc, tt, st = lead_codes, t, state
    else:
        le = dated & (t <= T)
        n_le = np.bincount(lead_codes[le], minlength=n_leads)
        n_dated = np.bincount(lead_codes[dated], minlength=n_leads)
        present = (n_le > 0) | ((n_dated == 0) & (T >= data_end))
        keep = le | (~dated & present[lead_codes])
        out["kept"] = bool(keep.any())
        rows = np.flatnonzero(keep)
        lc, tt, st = lead_codes[rows], t[rows], state[rows]
    sort_key = np.where(st > n_tr, np.iinfo(np.int32).max, st)  # lost last at ties
    in_order = (lc[1:] > lc[:-1]) | (
        (lc[1:] == lc[:-1]) & ((tt[1:] > tt[:-1]) | ((tt[1:] == tt[:-1]) & (sort_key[1:] >= sort_key[:-1])))
    )
    if not in_order.all():  # a loaded log is usually sorted already: skip the costly sort
        o = np.lexsort((sort_key, tt, lc))
        lc, tt, st = lc[o], tt[o], st[o]

    # truncate each path at its first outcome
    absorbing = st >= n_tr
    lead_start = _starts(lc)
    cs = np.cumsum(absorbing) - absorbing
    base = np.maximum.accumulate(np.where(lead_start, cs, 0))
    after = (cs - base) > 0
    n_after = int(np.count_nonzero(after))
    if n_after:
        la = lc[after]  # sorted by lead
        out["n_after"] = n_after
        out["n_after_leads"] = int(np.count_nonzero(la[1:] != la[:-1])) + 1
    # consecutive events of the same stage are one stay (the events after an outcome end
    # each lead's sequence, so dropping them does not change which events are adjacent)
    new_run = lead_start | _starts(st)
    sel = np.flatnonzero(new_run & ~after)
    out["lc"], out["tt"], out["st"] = lc[sel], tt[sel], st[sel]

    # lead-level segments: latest known value up to as_of
    if by or value is not None:
        rows_all = np.flatnonzero(keep)
        rc, rt = lead_codes[rows_all], t[rows_all]
        if not ((rc[1:] > rc[:-1]) | ((rc[1:] == rc[:-1]) & (rt[1:] >= rt[:-1]))).all():
            rows_all = rows_all[np.lexsort((rt, rc))]
    out["segments"] = {
        col: reference_latest(log[col], rows_sorted=rows_all, lead_codes=lead_codes, n_leads=n_leads) for col in by
    }
    out["value"] = None
    if value is not None:
        out["value"] = pd.to_numeric(
            reference_latest(log[value], rows_sorted=rows_all, lead_codes=lead_codes, n_leads=n_leads), errors="coerce"
        ).to_numpy(dtype=float)
    return out


def reference_latest(values: pd.Series, *, rows_sorted: np.ndarray, lead_codes, n_leads) -> pd.Series:
    """Per lead: its latest non-missing value among the given rows (in lead, time order)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        vc = values.cat.codes.to_numpy()
        ok = vc[rows_sorted] >= 0
    else:
        ok = values.notna().to_numpy()[rows_sorted]
    r_ok = rows_sorted[ok]
    last = np.full(n_leads, -1, dtype=np.int64)
    last[lead_codes[r_ok]] = r_ok  # later positions overwrite: latest
    has = last >= 0
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = np.where(has, vc[np.maximum(last, 0)], -1)
        return pd.Series(pd.Categorical.from_codes(codes, dtype=values.dtype))
    arr = values.to_numpy()[np.maximum(last, 0)] if len(values) else np.array([])
    return pd.Series(arr).where(has)


def reference_fit_events(self, part: dict, spec: dict) -> dict:
    """The fit from the stay events of every lead (``_stay_events`` of the whole log, or
    the merged results of lead-partitioned chunks: :func:`funnelkit.parallel.fit_transitions`)."""
    ss, steps, states, n_tr, by = spec["ss"], spec["steps"], spec["states"], spec["n_tr"], spec["by"]
    n_states = len(states)
    tz = spec["tz"]
    if not part["kept"]:
        dmin = part["data_start"]
        raise TransitionModelError(
            f"no event at or before as_of={pd.Timestamp(part['T'])}: nothing to fit "
            f"(the data start {pd.Timestamp(dmin) if dmin is not None else 'unknown'})."
        )
    notes: list[str] = []
    n_after = part["n_after"]
    if n_after:
        notes.append(
            f"{n_after:,} event(s) of {part['n_after_leads']:,} lead(s) come after the lead's first "
            "outcome; the path is taken to end at that outcome and they are not used."
        )
    lc, tt, st = part["lc"], part["tt"], part["st"]
    lead_ids = part["lead_ids"]
    n_leads = len(lead_ids)
    T = part["T"]

    # calendar: durations in activity days (weekdays, holidays) instead of calendar days
    T_raw = T  # noqa: F841 (verbatim)
    cal = None
    if self.calendar is not None:
        cal = Calendar.resolve(self.calendar)
        moves = ~_starts(lc) & (tt != NAT)
        cal = cal.fit(tt[moves], end=T)
        tt = np.where(tt != NAT, cal.to_activity_ns(tt), NAT)
        T = np.int64(cal.to_activity_ns(np.array([T]))[0])

    # stays
    is_stay = st < n_tr
    pos = np.flatnonzero(is_stay)
    s_lead, s_from, s_t = lc[pos], st[pos], tt[pos]
    nxt = np.minimum(pos + 1, lc.size - 1)
    completed = (pos + 1 < lc.size) & (lc[nxt] == s_lead)
    s_to = np.where(completed, st[nxt], -1)
    end_t = np.where(completed, tt[nxt], T)
    known = (s_t != NAT) & (end_t != NAT)
    days = np.full(pos.size, np.nan)
    days[known] = (end_t[known] - s_t[known]) / DAY_NS

    # lead-level segments: latest known value up to as_of
    lead_used = np.zeros(n_leads, dtype=bool)
    lead_used[lc] = True
    lead_idx = np.flatnonzero(lead_used)
    seg_frame = pd.DataFrame(index=np.arange(n_leads))
    for col in by:
        seg_frame[col] = part["segments"][col]
    lead_value = part["value"]  # noqa: F841 (verbatim)
    if by:
        sub = seg_frame.iloc[lead_idx]
        gcode = sub.groupby(by, observed=True, dropna=False, sort=True).ngroup().to_numpy()
        lead_group = np.zeros(n_leads, dtype=np.int64)
        lead_group[lead_idx] = gcode
        groups = sub.assign(_g=gcode).drop_duplicates("_g").sort_values("_g")
        groups = groups.drop(columns="_g").reset_index(drop=True)
        groups["leads"] = np.bincount(gcode, minlength=len(groups))
    else:
        lead_group = np.zeros(n_leads, dtype=np.int64)
        groups = pd.DataFrame({"leads": [lead_idx.size]})
    n_groups = len(groups)
    s_group = lead_group[s_lead]

    # timing: stays with an unknown duration
    K_cap = MAX_DAYS
    timed = ~np.isnan(days)
    impute = np.zeros(pos.size, dtype=bool)
    for s in range(n_tr):
        in_s = s_from == s
        n_unk = int((in_s & ~timed).sum())
        if not n_unk:
            continue
        if (in_s & timed).any():
            notes.append(
                f"{n_unk:,} stay(s) in {steps[s]!r} have an unknown duration (undated events); "
                "they are left out of that stage's estimate."
            )
        else:
            done = in_s & ~timed & completed
            impute |= done
            notes.append(
                f"no stay in {steps[s]!r} has a known duration: its {int(done.sum()):,} completed "
                f"stay(s) are taken as instantaneous (0 days) and its {n_unk - int(done.sum()):,} "
                "open one(s) are left out; forecasts treat time in that stage as unknown."
            )
    use = timed | impute
    d_use = np.where(impute, 0.0, days)
    ev_bin = np.where(completed, np.ceil(d_use), np.floor(d_use))
    ev_bin = np.clip(np.nan_to_num(ev_bin, nan=0.0), 0, K_cap - 1).astype(np.int64)
    if (ev_bin[use & completed] >= K_cap - 1).any():
        notes.append(f"stays longer than {K_cap} days are counted on day {K_cap - 1}.")
    K = int(ev_bin[use & completed].max()) + 1 if (use & completed).any() else 1
    ev_bin = np.minimum(ev_bin, K - 1)
    col = np.where(completed, s_to, n_states)
    cell = ((s_group * n_tr + s_from) * K + ev_bin) * (n_states + 1) + col
    # the time a stay's weight is judged by (recency weighting): its entry, else its end
    w_t = np.where(s_t != NAT, s_t, np.where(end_t != NAT, end_t, T))

    # stage sets without a lost outcome: a lead that has not moved on within the stage
    # set's horizon is dropped - the model's "stalled" - even if a few moved on later
    stall_after = None
    hz = getattr(ss, "horizon_days", None)
    if not ss.lost and hz is not None and hz + 1 < K:
        stall_after = int(np.ceil(float(hz)))
        notes.append(
            f"the stage set has no lost outcome: a lead that has not moved on within "
            f"{stall_after} days (horizon_days) counts as stalled, i.e. lost."
        )

    # bookkeeping (the old fit stored these on the model)
    out = {"notes_": notes, "groups_": groups, "_K": K, "_stall_after": stall_after, "_T_model": np.int64(T)}
    out["_n_gs"] = np.bincount(s_group[use] * n_tr + s_from[use],
                               minlength=n_groups * n_tr).reshape(n_groups, n_tr).astype(float)
    out["_cells"] = (cell[use], w_t[use], (n_groups, n_tr, K, n_states + 1))
    out["_stay_leads"] = s_lead[use]
    out["_lead_group"] = pd.Series(lead_group[lead_idx], index=lead_ids.take(lead_idx))

    to_names = [*states, OPEN]
    stays = pd.DataFrame({spec["lead"]: lead_ids.take(s_lead)})
    for c in by:
        vals = seg_frame[c].to_numpy()[s_lead]
        stays[c] = pd.Categorical(vals, categories=seg_frame[c].cat.categories) \
            if isinstance(seg_frame[c].dtype, pd.CategoricalDtype) else vals
    stays["stage"] = pd.Categorical.from_codes(s_from, categories=steps[:-1])
    s_t_raw = np.where(s_t != NAT, cal.from_activity_ns(s_t), NAT) if cal is not None else s_t
    stays["entered_at"] = to_datetimes(s_t_raw, tz)
    stays["to_stage"] = pd.Categorical.from_codes(np.where(s_to >= 0, s_to, n_states), categories=to_names)
    stays["days"] = days
    out["stays_"] = stays
    # the counts table (its old _counts_table's counting, verbatim; the table is shaped by the model)
    col = np.where(s_to >= 0, s_to, n_states)
    G, S = len(groups), n_tr
    c = np.bincount((s_group * S + s_from) * (n_states + 1) + col, minlength=G * S * (n_states + 1))
    out["counts_"] = self._counts_table(c.reshape(G, S, n_states + 1))
    return out



def reference_estimate(self, cells) -> dict:
    """Point estimate and posterior samples from the stays' cells (``self._cells``).

    Each stay counts with its recency weight ``0.5 ** (age / half_life)``
    (age: days from its entry to ``as_of``).  Posterior: the likelihood of
    a semi-Markov model factorises into one multinomial per (segment,
    stage, day in stage), so each cell's weighted count gets an
    independent Gamma draw (a Dirichlet posterior per row; a Bayesian
    bootstrap over stays), with the shape of its effective sample size
    when the weights differ.
    """
    cell, w_t, shape = cells
    n_cells = int(np.prod(shape))
    if self.half_life is None:
        w = np.ones(cell.size)
    else:
        age = (self._T_model - w_t) / DAY_NS
        w = np.exp2(-np.maximum(age, 0.0) / float(self.half_life))
    if self._w_mult is not None:
        w = w * self._w_mult
    counts = np.bincount(cell, weights=w, minlength=n_cells)
    mass, stalled = self._mass_from_counts(counts.reshape(shape)[None], self._n_gs)
    out = {"_mass": mass[0], "_stalled": stalled[0]}
    D = self.n_samples
    if not D:
        return {**out, "_mass_samples": None, "_stalled_samples": None}
    sq = np.bincount(cell, weights=w * w, minlength=n_cells)
    nz = np.flatnonzero(counts > 0)
    g_shape = counts[nz] ** 2 / sq[nz]
    g_scale = sq[nz] / counts[nz]
    rng = np.random.default_rng(self.seed)
    G, S, K, B1 = shape
    ms = np.empty((D, G + 1, S, K, B1 - 1), dtype=np.float32)
    sl = np.empty((D, G + 1, S), dtype=np.float64)
    chunk = max(1, min(D, int(4_000_000 // max(n_cells, 1))))
    for a in range(0, D, chunk):
        b = min(D, a + chunk)
        wc = np.zeros((b - a, n_cells), dtype=np.float32)
        wc[:, nz] = rng.standard_gamma(g_shape.astype(np.float32), size=(b - a, nz.size),
                                       dtype=np.float32) * g_scale.astype(np.float32)
        m_, s_ = self._mass_from_counts(wc.reshape((b - a, *shape)), self._n_gs)
        ms[a:b], sl[a:b] = m_, s_
    return {**out, "_mass_samples": ms, "_stalled_samples": sl}


# ---------------------------------------------------------------------------
# the checks
# ---------------------------------------------------------------------------
SPEC_KW = ("stages", "by", "as_of", "value")


def assert_same_fit(log, settings=None, **kw):
    """The lean fit of ``log`` is the reference fit, attribute for attribute."""
    settings = {"n_samples": 20, **(settings or {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = TransitionModel(**settings).fit(log, **kw)
    spec = _fit_spec(log, stages=kw.get("stages"), by=kw.get("by"), as_of=kw.get("as_of"),
                     value=kw.get("value"), lead="lead_id", stage="stage", time="timestamp")
    part = reference_stay_events(log, spec)
    ref = reference_fit_events(tm, part, spec)
    lean = _stay_events(log, spec)
    for name in ("lc", "tt", "st", "value"):  # the stay events: same values (lean dtypes)
        a, b = lean[name], part[name]
        assert (a is None and b is None) or np.array_equal(a, b, equal_nan=True), name
    for name in ("T", "data_start", "kept", "n_after", "n_after_leads"):
        assert lean[name] == part[name], name
    assert lean["lead_ids"].equals(part["lead_ids"])
    for col, s in part["segments"].items():
        assert_series_equal(lean["segments"][col], s)
    assert tm.notes_ == ref["notes_"] and tm._K == ref["_K"] and tm._stall_after == ref["_stall_after"]
    for name in ("groups_", "stays_", "counts_"):
        assert_frame_equal(getattr(tm, name), ref[name], check_exact=True)
    assert_series_equal(tm._lead_group, ref["_lead_group"])
    n_open = int((ref["stays_"]["to_stage"] == OPEN).sum())
    assert f"{len(ref['stays_']):,} stays ({n_open:,} open)" in repr(tm)  # without building stays_
    assert np.array_equal(tm._n_gs, ref["_n_gs"]) and np.array_equal(tm._stay_leads, ref["_stay_leads"])
    for a, b in zip(tm._cells, ref["_cells"]):
        assert np.array_equal(a, b)
    for model in (tm, tm.with_half_life(30)):
        est = reference_estimate(model, ref["_cells"])
        for name, b in est.items():
            a = getattr(model, name)
            assert (a is None and b is None) or (a.dtype == b.dtype and np.array_equal(a, b)), name
    if tm._lead_value is not None:
        w = tm.with_lead_weights(None)
        est = reference_estimate(w, ref["_cells"])
        assert np.array_equal(w._mass_samples, est["_mass_samples"])
    return tm


CASES = MODEL_CASES


@pytest.fixture(scope="module")
def demo():
    return fk.datasets.load_demo()


@pytest.mark.parametrize(("settings", "kw"), CASES)
def test_demo(demo, settings, kw):
    assert_same_fit(demo, settings, **kw)
    shuffled = demo.sample(frac=1, random_state=4).reset_index(drop=True)
    shuffled.attrs = demo.attrs
    assert_same_fit(shuffled, settings, **kw)


def _messy(seed: int, n: int = 3000) -> pd.DataFrame:
    return messy(seed, n, leads=400, tied=18)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ids", ["str", "int"])
def test_hostile_logs(seed, ids):
    df = _messy(seed)
    if ids == "int":
        df["lead_id"] = df["lead_id"].str[1:].astype(int)
    by_time = df.sort_values(["lead_id", "timestamp"], kind="stable", na_position="first")
    for log in (df, by_time.reset_index(drop=True)):
        for as_of in (None, "2024-01-20", "2024-02-10 12:00", "2024-12-31"):
            assert_same_fit(log, {"half_life": 20}, stages="pipeline4", by=["product", "owner"],
                            value="amount", as_of=as_of)
    assert_same_fit(df.dropna(subset=["timestamp"]), stages="pipeline4")
    assert_same_fit(df, {"calendar": "weekdays"}, stages="pipeline4", by="product")


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_time_units_and_zones(unit):
    """Times are read in the column's own unit (no nanosecond copy) and in UTC for a log
    with a zone."""
    df = _messy(5)
    df = df.assign(timestamp=df["timestamp"].dt.as_unit(unit))
    by_time = df.sort_values(["lead_id", "timestamp"], kind="stable", na_position="first").reset_index(drop=True)
    zoned = by_time.assign(timestamp=by_time["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Europe/Paris"))
    for log in (df, by_time, zoned):
        for as_of in (None, "2024-01-20 13:00", "2024-12-31"):
            assert_same_fit(log, stages="pipeline4", by="product", as_of=as_of)
    far = by_time.assign(timestamp=by_time["timestamp"].dt.as_unit("s"))
    far.loc[3, "timestamp"] = pd.Timestamp("2300-01-01").as_unit("s")  # beyond the ns range
    assert_same_fit(far, stages="pipeline4")  # read through checked_times, as before


def test_a_stage_set_without_a_lost_outcome_and_unknown_durations():
    log = no_lost_outcome_log()
    tm = assert_same_fit(log, by="variant", as_of="2025-06-30")
    assert any("horizon_days" in n for n in tm.notes_)
    undated = log.copy()  # no stay in "clicked" has a known duration: imputed as 0 days
    undated["timestamp"] = undated["timestamp"].where(undated["stage"] != "clicked")
    tm = assert_same_fit(undated, by="variant", as_of="2025-06-30")
    assert any("no stay in 'clicked' has a known duration" in n for n in tm.notes_)


def test_chunked_fit_and_lazy_stays(demo):
    """The chunked fit (int32 lead codes merged) is the one-core fit; ``stays_`` is built
    once, when first read, and copies of the model share it."""
    one = assert_same_fit(demo, by="product", value="amount")
    par = P.fit_transitions(demo, n_samples=20, by="product", value="amount", n_chunks=4, engine="serial")
    assert par._stays is None
    assert_frame_equal(par.stays_, one.stays_, check_exact=True)
    assert par.stays_ is par.stays_
    assert_frame_equal(par.counts_, one.counts_, check_exact=True)
    assert np.array_equal(par._mass_samples, one._mass_samples)
    assert par._stay_leads.dtype == np.int32 and par._cells[0].dtype == np.int32
    assert "stays" in repr(par)


def test_lead_runs_number_leads_as_factorize_does(demo):
    """A log sorted by lead is numbered by its runs (no hash table), as ``pd.factorize`` would."""
    ids = demo["lead_id"]
    for col in (ids, ids.str[1:].astype(np.int64), ids.str[1:].astype(np.int32)):
        runs = _lead_runs(col)
        codes, uniques = checked_leads(pd.DataFrame({"lead_id": col}))
        assert np.array_equal(runs[0], codes) and runs[0].dtype == np.int32
        pd.testing.assert_index_equal(runs[1], uniques, exact=True)
    for col in (ids.iloc[::-1], ids.astype(object), ids.astype("category"), ids.where(ids != "L0007"), ids[:1]):
        assert _lead_runs(col.reset_index(drop=True)) is None
    with pytest.raises(InvalidEventLogError, match="no lead id"):
        TransitionModel(n_samples=0).fit(demo.assign(lead_id=ids.where(ids != "L0007")))


def test_ngroup_of_one_categorical_column():
    """Segments numbered from the category codes, as ``groupby(...).ngroup()`` numbers them."""
    rng = np.random.default_rng(0)
    for cats, ordered in [(["b", "a", "c", "d"], False), (["z", "y", "x"], True)]:
        values = rng.choice([*cats[:3], None], 500)
        df = pd.DataFrame({"x": pd.Categorical(values, categories=cats, ordered=ordered), "y": values})
        for sub in (df, df[df["x"].notna()], df[df["x"] != cats[0]], df.iloc[:0]):
            for by in (["x"], ["y"], ["x", "y"]):
                expected = sub.groupby(by, observed=True, dropna=False, sort=True).ngroup().to_numpy()
                assert np.array_equal(_ngroup(sub, by), expected)


def test_pickles(demo):
    """A fitted model pickles with its compact stays; a model pickled before stays_ and
    _lead_group were built lazily still reads them."""
    import pickle

    tm = TransitionModel(n_samples=5).fit(demo, by="product")
    back = pickle.loads(pickle.dumps(tm))
    assert_frame_equal(back.stays_, tm.stays_, check_exact=True)
    assert_series_equal(back._lead_group, tm._lead_group)
    old = pickle.loads(pickle.dumps(tm))
    stays, groups = old.stays_, old._lead_group
    for name in ("_stays_parts", "_stays", "_lead_groups", "_lead_group_cache"):
        del old.__dict__[name]
    old.__dict__.update({"stays_": stays, "_lead_group": groups})
    assert old.stays_ is stays and old._lead_group is groups and repr(old) == repr(tm)
