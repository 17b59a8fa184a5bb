"""Tests of the stage-transition model (funnelkit.transitions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit.transitions import OPEN, STALLED, TransitionModel, TransitionModelError

T0 = pd.Timestamp("2024-01-01")
ABC = fk.StageSet("abc", ["A", "B", "C"], won="won", lost=["lost"])


def paths_log(paths, stages=ABC, start=T0, step_days=1.0, gap_days=0.0, segments=None):
    """An event log from explicit paths: one list of stage names per lead."""
    rows = []
    for i, path in enumerate(paths):
        t = start + pd.Timedelta(days=gap_days * i)
        for j, s in enumerate(path):
            row = {"lead_id": f"L{i:04d}", "stage": s, "timestamp": t + pd.Timedelta(days=step_days * j)}
            if segments is not None:
                row["segment"] = segments[i]
            rows.append(row)
    return fk.validate_events(pd.DataFrame(rows), stages=stages)


def hand_chain_log():
    """10 leads through A > B > C with losses and two C -> B moves back.

    From A: 6 to B, 4 lost.  B stays (8): 6 to C, 2 lost.  C stays (6): 2 back
    to B, 3 won, 1 lost.
    """
    paths = (
        [["A", "lost"]] * 4
        + [["A", "B", "lost"]] * 2
        + [["A", "B", "C", "B", "C", "won"]] * 1
        + [["A", "B", "C", "B", "C", "lost"]] * 1
        + [["A", "B", "C", "won"]] * 2
    )
    return paths_log(paths)


# ---------------------------------------------------------------------------
# hand-worked absorbing chain
# ---------------------------------------------------------------------------
def test_three_stage_chain_by_hand():
    tm = TransitionModel(n_samples=50, seed=1).fit(hand_chain_log())
    M = tm.matrix()
    assert M.loc["A", "B"] == pytest.approx(0.6)
    assert M.loc["A", "lost"] == pytest.approx(0.4)
    assert M.loc["B", "C"] == pytest.approx(0.75)
    assert M.loc["C", "B"] == pytest.approx(1 / 3)
    assert M.loc["C", "won"] == pytest.approx(0.5)
    assert M.loc["C", "lost"] == pytest.approx(1 / 6)
    assert M.loc[:, STALLED].iloc[:3].tolist() == pytest.approx([0, 0, 0])  # nothing censored
    assert np.allclose(M.sum(axis=1), 1.0)
    # w_C = 1/2 + 1/3 w_B, w_B = 3/4 w_C  =>  w_C = 2/3, w_B = 1/2, w_A = 0.6 * 1/2
    wp = tm.win_probability().set_index("stage")["probability"]
    assert wp["C"] == pytest.approx(2 / 3)
    assert wp["B"] == pytest.approx(1 / 2)
    assert wp["A"] == pytest.approx(0.3)
    # n_C = 1 + 1/3 n_B, n_B = 1 + 3/4 n_C  =>  n_C = 16/9, n_B = 7/3, n_A = 1 + 0.6 n_B
    es = tm.expected_steps().set_index("stage")["expected_steps"]
    assert es["C"] == pytest.approx(16 / 9)
    assert es["B"] == pytest.approx(7 / 3)
    assert es["A"] == pytest.approx(2.4)


def test_counts_include_backward_moves_and_open_stays():
    log = hand_chain_log()
    # one more lead still sitting in B at the end: an open (censored) stay
    extra = pd.DataFrame(
        {"lead_id": ["Z1", "Z1"], "stage": ["A", "B"], "timestamp": [T0, T0 + pd.Timedelta(days=1)]}
    )
    log2 = fk.validate_events(pd.concat([log[["lead_id", "stage", "timestamp"]], extra]), stages=ABC)
    tm = TransitionModel(n_samples=0).fit(log2)
    c = tm.counts_.set_index(["from_stage", "to_stage"])["n"]
    assert c[("C", "B")] == 2
    assert c[("B", OPEN)] == 1
    assert c[("A", "B")] == 7
    assert int(tm.counts_["n"].sum()) == len(tm.stays_)
    s = tm.summary.set_index("stage")
    assert s.loc["B", "stays"] == 9 and s.loc["B", "open"] == 1 and s.loc["B", "moved"] == 8


def test_intervals_contain_point_estimates_and_rows_sum_to_one(demo_log):
    tm = TransitionModel(n_samples=60, seed=3).fit(demo_log, as_of="2025-03-31")
    p = tm.probabilities_
    assert (p["ci_low"] <= p["probability"] + 1e-9).all()
    assert (p["probability"] <= p["ci_high"] + 1e-9).all()
    sums = p.groupby("from_stage", observed=True)["probability"].sum()
    assert np.allclose(sums, 1.0)
    wp = tm.win_probability()
    assert ((wp["ci_low"] <= wp["probability"]) & (wp["probability"] <= wp["ci_high"])).all()
    # the demo's backward moves (proposal -> meeting) are estimated
    back = p.set_index(["from_stage", "to_stage"]).loc[("proposal", "meeting"), "probability"]
    assert 0.01 < back < 0.08


# ---------------------------------------------------------------------------
# recovery of known rates (generated data with censoring and stale leads)
# ---------------------------------------------------------------------------
def generate(n, seed, advance=(0.6, 0.5, 0.7), recorded=0.8, mean_days=10.0, span=400.0):
    """Leads created uniformly over `span` days; at each of A, B, C they advance
    with `advance[k]`, else are lost, recorded with probability `recorded` and
    otherwise never heard of again (stale).  Events after `span` are unseen."""
    rng = np.random.default_rng(seed)
    stages = ["A", "B", "C", "won"]
    t = rng.uniform(0, span, n)
    alive = np.arange(n)
    lead, stage, day = [alive], [np.zeros(n, dtype=int)], [t.copy()]
    for k in range(3):
        go = rng.random(alive.size) < advance[k]
        dt = rng.exponential(mean_days, alive.size)
        lost = alive[~go]
        rec = rng.random(lost.size) < recorded
        lead.append(lost[rec])
        stage.append(np.full(rec.sum(), 4))
        day.append(t[lost[rec]] + dt[~go][rec])
        alive = alive[go]
        t[alive] = t[alive] + dt[go]
        lead.append(alive)
        stage.append(np.full(alive.size, k + 1))
        day.append(t[alive].copy())
    lead, stage, day = (np.concatenate(x) for x in (lead, stage, day))
    keep = day <= span
    names = np.array([*stages, "lost"])
    raw = pd.DataFrame(
        {
            "lead_id": [f"G{i:05d}" for i in lead[keep]],
            "stage": names[stage[keep]],
            "timestamp": T0 + pd.to_timedelta(day[keep], unit="D"),
        }
    )
    return fk.validate_events(raw, stages=ABC), T0 + pd.Timedelta(days=span)


def test_recovers_known_rates_within_intervals_at_stated_rate():
    advance, recorded = (0.6, 0.5, 0.7), 0.8
    hits, total, errs = 0, 0, []
    for seed in range(8):
        log, end = generate(2500, seed, advance=advance, recorded=recorded)
        tm = TransitionModel(n_samples=100, level=0.9, seed=seed).fit(log, as_of=end)
        p = tm.probabilities_.set_index(["from_stage", "to_stage"])
        for k, (s, nxt) in enumerate([("A", "B"), ("B", "C"), ("C", "won")]):
            truth = {nxt: advance[k], "lost": (1 - advance[k]) * recorded,
                     STALLED: (1 - advance[k]) * (1 - recorded)}
            for dest, val in truth.items():
                row = p.loc[(s, dest)]
                hits += bool(row["ci_low"] <= val <= row["ci_high"])
                total += 1
                errs.append(row["probability"] - val)
    # 90% intervals: expect about 90% of 72 to cover (binomial sd ~ 3.5%)
    assert hits / total >= 0.80, hits / total
    assert abs(np.mean(errs)) < 0.01  # no systematic bias, stale leads included


def test_open_leads_are_censored_not_lost():
    """Fitting mid-stream must not count leads still in a stage as failures."""
    log, end = generate(3000, 11)
    mid = T0 + pd.Timedelta(days=200)
    tm = TransitionModel(n_samples=0).fit(log, as_of=mid)
    p = tm.probabilities_.set_index(["from_stage", "to_stage"])["probability"]
    assert p[("A", "B")] == pytest.approx(0.6, abs=0.04)
    assert p[("A", STALLED)] == pytest.approx(0.08, abs=0.03)


# ---------------------------------------------------------------------------
# time: semi-Markov close probability
# ---------------------------------------------------------------------------
def test_close_probability_deterministic_durations():
    # every stay lasts exactly 10 days: from A, a lead needs 30 days to win
    paths = [["A", "B", "C", "won"]] * 5 + [["A", "lost"]] * 5
    log = paths_log(paths, step_days=10.0)
    tm = TransitionModel(n_samples=0).fit(log)
    cp = tm.close_probability(["A", "A", "C", "C", "B"], [0, 0, 0, 4, 0], [29, 30, 10, 6, 100])
    assert cp["probability"].tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0])
    # a lead that has sat in A longer than anyone ever did is stalled
    assert tm.close_probability("A", 50, 365)["probability"].iloc[0] == 0.0


def test_close_probability_agrees_with_simulation(demo_log):
    tm = TransitionModel(n_samples=0).fit(demo_log, as_of="2025-03-31")
    cases = [("qualification", 0.0, 90), ("meeting", 5.5, 60), ("proposal", 20.0, 45), ("close", 3.0, 30)]
    exact = tm.close_probability([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases])
    rng = np.random.default_rng(0)
    n = 40_000
    for (stage, d, h), p in zip(cases, exact["probability"]):
        s = tm.stage_index([stage])[0]
        won_at = tm.simulate(
            stage_idx=np.full(n, s), days_in_stage=np.full(n, d), group_idx=np.zeros(n, dtype=int),
            sample_idx=None, horizon_days=h, rng=rng,
        )
        sim = np.mean(~np.isnan(won_at))
        assert sim == pytest.approx(p, abs=0.012), (stage, d, h, sim, p)
    # long horizons tend to the absorbing-chain probability
    wp = tm.win_probability().set_index("stage")["probability"]
    far = tm.close_probability("qualification", 0, 1000)["probability"].iloc[0]
    assert far == pytest.approx(wp["qualification"], abs=0.002)


def test_won_within_is_increasing(demo_log):
    tm = TransitionModel(n_samples=5).fit(demo_log)
    curve = tm.won_within("meeting", 120)
    assert curve.shape == (2, 121)
    assert (np.diff(curve[-1]) >= -1e-12).all()
    assert tm.won_within("meeting", 30, samples=True).shape == (5, 2, 31)


# ---------------------------------------------------------------------------
# segments: shrinkage and minimum counts
# ---------------------------------------------------------------------------
def test_segments_without_shrinkage_match_separate_fits():
    log_a, _ = generate(1500, 1, advance=(0.7, 0.5, 0.7))
    log_b, _ = generate(1500, 2, advance=(0.4, 0.5, 0.7))
    log_b = log_b.assign(lead_id="H" + log_b["lead_id"].str[1:])
    both = pd.concat([log_a.assign(segment="a"), log_b.assign(segment="b")], ignore_index=True)
    both = fk.validate_events(both, stages=ABC)
    tm = TransitionModel(n_samples=0, shrinkage=0, min_count=0).fit(both, by="segment")
    sep = TransitionModel(n_samples=0).fit(fk.validate_events(log_b, stages=ABC),
                                           as_of=both["timestamp"].max())
    got = tm.probabilities_.query("segment == 'b'").set_index(["from_stage", "to_stage"])["probability"]
    want = sep.probabilities_.set_index(["from_stage", "to_stage"])["probability"]
    assert np.allclose(got.sort_index(), want.sort_index())
    # with shrinkage the segment moves toward the pooled rate, not past it
    shr = TransitionModel(n_samples=0, shrinkage=500, min_count=0).fit(both, by="segment")
    key = ("A", "B")
    pa = shr.probabilities_.query("segment == 'b'").set_index(["from_stage", "to_stage"])["probability"][key]
    pooled = shr.pooled_probabilities_.set_index(["from_stage", "to_stage"])["probability"][key]
    assert want[key] < pa < pooled


def test_small_segment_falls_back_to_pooled():
    paths = [["A", "B", "won"]] * 40 + [["A", "lost"]] * 40 + [["A", "B", "won"]] * 3
    segs = ["big"] * 80 + ["tiny"] * 3
    log = paths_log(paths, segments=segs)
    tm = TransitionModel(n_samples=20, min_count=10).fit(log, by="segment")
    p = tm.probabilities_
    tiny = p.loc[p["segment"] == "tiny"].set_index(["from_stage", "to_stage"])
    pooled = tm.pooled_probabilities_.set_index(["from_stage", "to_stage"])
    assert tiny["pooled"].all()
    assert np.allclose(tiny["probability"], pooled.loc[tiny.index, "probability"])
    big = p.loc[p["segment"] == "big"]
    assert not big.loc[big["from_stage"].isin(["A", "B"]), "pooled"].any()
    assert big.loc[big["from_stage"] == "C", "pooled"].all()  # no stay in C at all
    assert tm.win_probability()["segment"].nunique() == 2
    assert len(tm.groups_) == 2 and tm.groups_["leads"].sum() == 83


# ---------------------------------------------------------------------------
# no leakage, rules, errors
# ---------------------------------------------------------------------------
def test_fit_as_of_ignores_the_future(demo_log):
    cut = "2025-02-28"
    a = TransitionModel(n_samples=20, seed=5).fit(demo_log, as_of=cut)
    t_cut = pd.Timestamp(cut) + pd.Timedelta(days=1)
    future = demo_log["timestamp"] >= t_cut
    changed = demo_log.copy()
    changed.loc[future, "stage"] = "lost"  # rewrite every later event
    b = TransitionModel(n_samples=20, seed=5).fit(changed, as_of=cut)
    c = TransitionModel(n_samples=20, seed=5).fit(demo_log.loc[~future], stages="pipeline4", as_of=cut)
    pd.testing.assert_frame_equal(a.probabilities_, b.probabilities_)
    pd.testing.assert_frame_equal(a.probabilities_, c.probabilities_)
    assert a.stays_["entered_at"].max() <= pd.Timestamp(cut) + pd.Timedelta(days=1)


def test_events_after_outcome_are_reported_not_used():
    log = paths_log([["A", "B", "lost", "C", "won"], ["A", "B", "won"]])
    tm = TransitionModel(n_samples=0, min_count=0).fit(log)
    assert any("after the lead's first outcome" in n for n in tm.notes_)
    assert tm.win_probability().set_index("stage")["probability"]["B"] == pytest.approx(0.5)


def test_marketing_funnel_without_outcomes():
    log = fk.datasets.load_marketing_demo(n_visitors=3000)
    tm = TransitionModel(n_samples=10).fit(log)
    wp = tm.win_probability()
    assert wp["stage"].tolist() == ["awareness", "interest", "desire"]
    assert (wp["probability"] < 1).all() and wp["probability"].is_monotonic_increasing


def test_repr_and_errors(demo_log):
    tm = TransitionModel(n_samples=0)
    assert "not fitted" in repr(tm)
    with pytest.raises(TransitionModelError):
        tm.matrix()
    tm.fit(demo_log)
    assert "P(win) from qualification" in repr(tm)
    with pytest.raises(TransitionModelError, match="not an open stage"):
        tm.close_probability("won", 0, 30)
    with pytest.raises(TransitionModelError, match="segment=None"):
        tm.matrix(segment="Starter")
    with pytest.raises(TransitionModelError, match="no posterior samples"):
        tm.won_within("meeting", 10, samples=True)
    with pytest.raises(fk.FunnelkitError):
        TransitionModel(n_samples=0).fit(demo_log, as_of="2020-01-01")
    with pytest.raises(fk.InvalidEventLogError, match="segmentx"):
        TransitionModel(n_samples=0).fit(demo_log, by="segmentx")
    with pytest.raises(TransitionModelError):
        TransitionModel(shrinkage=-1)
    seg = TransitionModel(n_samples=0).fit(demo_log, by="product")
    with pytest.raises(TransitionModelError, match="unknown segment"):
        seg.matrix(segment="Gold")
    assert seg.matrix(segment="Enterprise").shape == (7, 7)


@pytest.mark.shared
def test_real_crm_snapshot_runs_unchanged(maven_log, maven_stages):
    tm = TransitionModel(n_samples=20).fit(maven_log, stages=maven_stages)
    wp = tm.win_probability().set_index("stage")["probability"]
    assert 0.5 < wp["Engaging"] < 0.75  # the data's win rate is 63%
    assert any("no stay in 'Prospecting' has a known duration" in n for n in tm.notes_)


def test_without_a_lost_outcome_late_movers_count_as_stalled():
    """A stage set without a lost outcome: a lead that has not moved on within horizon_days
    is dropped (the model's "stalled"), even if it moves on much later."""
    rows = []
    base = pd.Timestamp("2024-01-01")
    for i in range(400):
        t = base + pd.Timedelta(hours=12 * i)
        rows.append((f"V{i}", "clicked", t))
        if i < 100:
            rows.append((f"V{i}", "bought", t + pd.Timedelta(days=3)))
        elif i < 150:
            rows.append((f"V{i}", "bought", t + pd.Timedelta(days=60)))
    raw = pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp"])
    as_of = "2025-06-30"
    for hz, want in [(None, 150 / 400), (30, 100 / 400)]:
        ss = fk.StageSet("ab", ["clicked", "bought"], horizon_days=hz)
        log = fk.validate_events(raw, stages=ss)
        tm = TransitionModel(n_samples=0).fit(log, as_of=as_of)
        assert tm.win_probability()["probability"].iloc[0] == pytest.approx(want)
        assert (tm.summary["stalled"].iloc[0] == pytest.approx(1 - want))
        assert any("horizon_days" in n for n in tm.notes_) == (hz is not None)


def test_aalen_johansen_takes_integer_counts_and_empty_stages():
    """Unweighted (integer) stay counts gave a casting error; a stage nobody sat in has no mass."""
    from funnelkit.transitions import _aalen_johansen

    c = np.zeros((2, 5, 3), dtype=np.int64)  # (stage, day, destination + censored)
    c[0, 1, 0] = 3  # 3 of 5 leave on day 1 to destination 0
    c[0, 3, 1] = 1  # 1 of the 2 left leaves on day 3 to destination 1
    c[0, 4, 2] = 1  # the last is censored on day 4
    mass, stalled = _aalen_johansen(c)
    assert mass[0, 1, 0] == pytest.approx(3 / 5)
    assert mass[0, 3, 1] == pytest.approx(2 / 5 * 1 / 2)
    assert stalled[0] == pytest.approx(2 / 5 * 1 / 2)
    assert mass[1].sum() == 0 and stalled[1] == 1.0
    m2, s2 = _aalen_johansen(c.astype(float))
    assert np.array_equal(mass, m2) and np.array_equal(stalled, s2)
