"""Tests of funnelkit.pipeline: snapshot, summaries, durations, movement, reps."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import pipeline as P
from funnelkit.exceptions import DataWarning, FunnelkitError, InvalidEventLogError

# small hand-made logs end early: snapshots after their last day warn on purpose
pytestmark = pytest.mark.filterwarnings("ignore:as_of=.*after the data ends")


def make_log(rows, **kw):
    """A small canonical log from (lead, stage, time[, amount[, owner]]) tuples."""
    cols = ["lead_id", "stage", "timestamp", "amount", "owner"][: len(rows[0])]
    return fk.read_events(pd.DataFrame(rows, columns=cols), stages="pipeline4", **kw)


@pytest.fixture(scope="module")
def small_demo():
    return fk.datasets.load_demo(n_leads=400, seed=7)


def brute_snapshot(log, as_of):
    """Per-lead loop: the obvious (slow) definition of a snapshot, for checking."""
    ss = fk.PRESETS["pipeline4"]
    rows = []
    for lead, ev in log.groupby("lead_id", sort=True):
        ev = ev.loc[ev["timestamp"] <= as_of]
        if ev.empty:
            continue
        names = ev["stage"].astype(str).tolist()
        if "won" in names or "lost" in names:
            continue
        steps = ev.loc[ev["stage"].astype(str).isin(ss.stages)]
        cur = str(steps["stage"].iloc[-1])
        # start of the latest run in that stage
        labels = steps["stage"].astype(str).to_numpy()
        k = len(labels) - 1
        while k > 0 and labels[k - 1] == cur:
            k -= 1
        rows.append(
            {
                "lead_id": lead,
                "stage": cur,
                "entered_stage_at": steps["timestamp"].iloc[k],
                "first_seen_at": ev["timestamp"].min(),
                "amount": ev["amount"].dropna().iloc[-1],
                "owner": ev["owner"].dropna().iloc[-1],
            }
        )
    return pd.DataFrame(rows).set_index("lead_id").sort_index()


# ---------------------------------------------------------------------------
# snapshot
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("as_of", ["2024-12-31", "2025-06-30 12:00", "2025-09-30"])
def test_snapshot_matches_brute_force(small_demo, as_of):
    snap = P.snapshot(small_demo, as_of=as_of).set_index("lead_id").sort_index()
    t = pd.Timestamp(as_of)
    if len(as_of) == 10:
        t = t + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    ref = brute_snapshot(small_demo, t)
    assert list(snap.index) == list(ref.index)
    assert (snap["stage"].astype(str) == ref["stage"]).all()
    assert (snap["entered_stage_at"] == ref["entered_stage_at"]).all()
    assert (snap["first_seen_at"] == ref["first_seen_at"]).all()
    assert np.allclose(snap["amount"], ref["amount"])
    assert (snap["owner"].astype(str) == ref["owner"].astype(str)).all()
    expect_days = (t - ref["entered_stage_at"]) / pd.Timedelta(days=1)
    assert np.allclose(snap["days_in_stage"], expect_days)
    assert (snap["last_activity_at"] <= t).all()


def test_snapshot_uses_no_future_events(demo_log):
    as_of = pd.Timestamp("2025-03-31 23:59:59")
    full = P.snapshot(demo_log, as_of=as_of, include_closed=True)
    past = demo_log.loc[demo_log["timestamp"] <= as_of]
    past.attrs = demo_log.attrs
    cut = P.snapshot(past, as_of=as_of, include_closed=True)
    pd.testing.assert_frame_equal(full, cut)
    # no lead first seen after as_of
    assert (full["first_seen_at"] <= as_of).all()


def test_snapshot_closed_leads_match_funnel_outcomes(demo_log):
    snap = P.snapshot(demo_log, include_closed=True)
    oc = fk.funnel.outcomes(demo_log)
    counts = snap["outcome"].value_counts()
    assert counts["won"] == oc.loc[0, "won"]
    assert counts["lost"] == oc.loc[0, "lost"]
    assert counts["open"] == oc.loc[0, "open"]
    open_only = P.snapshot(demo_log)
    assert len(open_only) == counts["open"]
    closed = snap.loc[snap["outcome"] != "open"]
    assert (closed["stage"].astype(str) == closed["outcome"].astype(str)).all()
    assert (closed["entered_stage_at"] == closed["closed_at"]).all()
    assert snap.attrs["as_of"] == demo_log["timestamp"].max()


def test_snapshot_backward_move_and_runs():
    log = make_log(
        [
            ("a", "qualification", "2024-01-01", 100.0),
            ("a", "meeting", "2024-01-05", 100.0),
            ("a", "proposal", "2024-01-10", 150.0),
            ("a", "meeting", "2024-01-20", 150.0),
            ("a", "meeting", "2024-01-25", np.nan),  # same stage logged again: same visit
            ("b", "qualification", "2024-01-02", 50.0),
        ]
    )
    snap = P.snapshot(log, as_of="2024-01-31").set_index("lead_id")
    assert snap.loc["a", "stage"] == "meeting"
    assert snap.loc["a", "entered_stage_at"] == pd.Timestamp("2024-01-20")
    assert snap.loc["a", "flag"] == "moved_back"
    assert snap.loc["a", "amount"] == 150.0  # latest known amount
    assert snap.loc["a", "days_in_stage"] == pytest.approx(12 - 1e-9 / 86400 + 1 - 1, abs=1e-6)
    assert snap.loc["a", "age_days"] == pytest.approx(31, abs=1e-6)
    assert snap.loc["b", "flag"] == ""
    # as of the 12th, lead a was in proposal
    early = P.snapshot(log, as_of="2024-01-12").set_index("lead_id")
    assert early.loc["a", "stage"] == "proposal"
    assert early.loc["a", "amount"] == 150.0


def test_snapshot_date_means_end_of_day():
    log = make_log([("a", "qualification", "2024-01-01 15:00"), ("a", "meeting", "2024-01-03 09:00")])
    assert P.snapshot(log, as_of="2024-01-03").loc[0, "stage"] == "meeting"
    import datetime as dt

    assert P.snapshot(log, as_of=dt.date(2024, 1, 3)).loc[0, "stage"] == "meeting"
    assert P.snapshot(log, as_of="2024-01-03 08:00").loc[0, "stage"] == "qualification"
    assert P.snapshot(log, as_of=pd.Timestamp("2024-01-03")).loc[0, "stage"] == "qualification"


def test_snapshot_after_close_is_flagged_not_dropped():
    log = make_log(
        [
            ("a", "qualification", "2024-01-01"),
            ("a", "lost", "2024-01-05"),
            ("a", "meeting", "2024-01-09"),
            ("b", "qualification", "2024-01-02"),
        ]
    )
    snap = P.snapshot(log, as_of="2024-02-01", include_closed=True).set_index("lead_id")
    assert snap.loc["a", "outcome"] == "lost"
    assert snap.loc["a", "flag"] == "after_close"
    assert any("after their outcome" in n for n in snap.attrs["notes"])


def test_snapshot_as_of_outside_the_data_warns():
    log = make_log([("a", "qualification", "2024-01-01"), ("a", "meeting", "2024-01-03")])
    with pytest.warns(DataWarning, match="before the data starts"):
        early = P.snapshot(log, as_of="2023-06-30")
    assert early.empty and "days_in_stage" in early.columns
    with pytest.warns(DataWarning, match="after the data ends"):
        late = P.snapshot(log, as_of="2024-03-01")
    assert late.loc[0, "stage"] == "meeting"
    assert late.loc[0, "days_in_stage"] == pytest.approx(58 + 1 - 1e-9 / 86400, abs=1e-6)


def test_snapshot_bad_input():
    log = make_log([("a", "qualification", "2024-01-01")])
    with pytest.raises(P.PipelineError, match="timezone"):
        P.snapshot(log, as_of=pd.Timestamp("2024-01-02", tz="Europe/Paris"))
    with pytest.raises(P.PipelineError, match="not a date"):
        P.snapshot(log, as_of="soon")
    with pytest.raises(InvalidEventLogError, match="'owner'"):
        P.snapshot(log, segments=["owner"])
    with pytest.raises(InvalidEventLogError, match="'deal'"):
        P.snapshot(log, lead="deal")
    assert issubclass(P.PipelineError, FunnelkitError)


def test_snapshot_owner_missing_on_some_rows():
    raw = pd.DataFrame(
        {
            "lead_id": ["a", "a", "b"],
            "stage": ["qualification", "meeting", "qualification"],
            "timestamp": ["2024-01-01", "2024-01-04", "2024-01-02"],
            "owner": ["Ann", None, None],
        }
    )
    log = fk.read_events(raw, stages="pipeline4")
    snap = P.snapshot(log, as_of="2024-01-10").set_index("lead_id")
    assert snap.loc["a", "owner"] == "Ann"  # latest known owner
    assert pd.isna(snap.loc["b", "owner"])  # kept, shown as missing


def test_snapshot_maven_engaged_by_as_of(maven_log, shared_data):
    raw = pd.read_csv(shared_data / "maven_crm" / "sales_pipeline.csv")
    engage = pd.to_datetime(raw["engage_date"])
    close = pd.to_datetime(raw["close_date"])
    as_of = pd.Timestamp("2017-06-30")
    snap = P.snapshot(maven_log, as_of="2017-06-30")
    expected = raw.loc[(engage <= as_of) & ~(close <= as_of), "opportunity_id"]
    assert sorted(snap["lead_id"]) == sorted(expected)
    assert (snap["entered_stage_at"] <= as_of).all()
    assert set(snap["stage"].astype(str)) == {"Engaging"}
    # the 500 Prospecting deals have no date: excluded from the past snapshot, and said so
    assert snap.attrs["excluded_undated"] >= 500
    assert any("only undated events" in n for n in snap.attrs["notes"])
    # at the data's end they are in the pipeline, with unknown entry time
    now = P.snapshot(maven_log)
    assert (now["stage"] == "Prospecting").sum() == 500
    assert now.loc[now["stage"] == "Prospecting", "entered_stage_at"].isna().all()
    assert (now["stage"] == "Engaging").sum() == 1589


# ---------------------------------------------------------------------------
# stage summary
# ---------------------------------------------------------------------------
def test_stage_summary_matches_groupby(demo_log):
    snap = P.snapshot(demo_log, as_of="2025-08-31", include_closed=True)
    s = P.stage_summary(snap, by="product")
    open_ = snap.loc[snap["outcome"] == "open"]
    assert int(s["leads"].sum()) == len(open_)
    ref = open_.groupby(["product", "stage"], observed=True)["amount"].sum()
    got = s.set_index(["product", "stage"])["value"]
    for key, val in ref.items():
        assert got[key] == pytest.approx(val)
    ref_age = open_.groupby(["product", "stage"], observed=True)["age_days"].median()
    got_age = s.set_index(["product", "stage"])["median_age_days"]
    for key, val in ref_age.items():
        assert got_age[key] == pytest.approx(val)
    assert list(s["stage"].cat.categories) == ["qualification", "meeting", "proposal", "close"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = P.stage_summary(snap)
    assert whole["share_leads"].sum() == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# durations, summaries, bottleneck
# ---------------------------------------------------------------------------
def test_durations_visits_latest_and_cumulative():
    log = make_log(
        [
            ("a", "qualification", "2024-01-01"),
            ("a", "meeting", "2024-01-03"),
            ("a", "proposal", "2024-01-10"),
            ("a", "meeting", "2024-01-12"),
            ("a", "proposal", "2024-01-16"),
            ("a", "won", "2024-01-20"),
            ("b", "qualification", "2024-01-05"),
            ("b", "meeting", "2024-01-15"),
        ]
    )
    v = P.durations(log, per="visit", as_of="2024-01-25")
    a = v.loc[v["lead_id"] == "a"].set_index(["stage", "visit"])
    assert a.loc[("meeting", 1), "days"] == pytest.approx(7)
    assert a.loc[("meeting", 2), "days"] == pytest.approx(4)
    assert a.loc[("proposal", 2), "left_to"] == "won"
    assert not a["censored"].any()
    b = v.loc[v["lead_id"] == "b"].set_index("stage")
    assert bool(b.loc["meeting", "censored"])
    assert pd.isna(b.loc["meeting", "left_at"])
    assert b.loc["meeting", "days"] == pytest.approx(11 - 1e-9 / 86400, abs=1e-6)  # to end of 25th
    s = P.durations(log, as_of="2024-01-25").set_index(["lead_id", "stage"])
    assert s.loc[("a", "meeting"), "visits"] == 2
    assert s.loc[("a", "meeting"), "latest_days"] == pytest.approx(4)
    assert s.loc[("a", "meeting"), "cumulative_days"] == pytest.approx(11)
    assert s.loc[("a", "proposal"), "cumulative_days"] == pytest.approx(2 + 4)
    assert s.loc[("a", "meeting"), "outcome"] == "won"
    # as of the 11th only events up to then count: lead a is in proposal, censored
    early = P.durations(log, as_of="2024-01-11 00:00").set_index(["lead_id", "stage"])
    assert bool(early.loc[("a", "proposal"), "censored"])
    assert early.loc[("a", "proposal"), "cumulative_days"] == pytest.approx(1)


def test_durations_demo_consistency(demo_log):
    v = P.durations(demo_log, per="visit")
    s = P.durations(demo_log)
    # cumulative time per lead and stage is the sum of its visits
    tot = v.groupby(["lead_id", "stage"], observed=True)["days"].sum()
    got = s.set_index(["lead_id", "stage"])["cumulative_days"]
    assert np.allclose(got.loc[tot.index].to_numpy(), tot.to_numpy())
    assert (v["days"] >= 0).all()
    # every open lead has exactly one censored visit, closed leads none
    snap = P.snapshot(demo_log)
    cens = v.loc[v["censored"], "lead_id"]
    assert sorted(cens) == sorted(snap["lead_id"])
    # re-entries come from the backward moves flagged at load
    # (proposal -> meeting -> proposal: both stages are visited twice)
    moved_back = set(demo_log.loc[demo_log["flag"] == "moved_back", "lead_id"])
    multi = s.loc[s["visits"] > 1]
    assert set(multi["lead_id"]) == moved_back
    assert set(multi["stage"].astype(str)) == {"meeting", "proposal"}


def test_duration_summary_uses_censoring():
    # 4 visits done in 10 days, 6 still open after 30 days: median is unknown (NaN), not 10
    days = [10.0] * 4 + [30.0] * 6
    d = pd.DataFrame({"stage": ["meeting"] * 10, "days": days, "censored": [False] * 4 + [True] * 6})
    s = P.duration_summary(d)
    assert np.isnan(s.loc[0, "median_days"])
    assert s.loc[0, "mean_completed_days"] == 10
    assert s.loc[0, "censored"] == 6
    d2 = d.assign(censored=False)
    s2 = P.duration_summary(d2)
    assert s2.loc[0, "median_days"] == 30  # KM median of 10,10,10,10,30x6


def test_duration_summary_by_segment_matches_numpy(demo_log):
    v = P.durations(demo_log, per="visit")
    s = P.duration_summary(v, by="product")
    assert len(s) == 12
    # with no censoring in a group the KM median is the plain empirical median (lower)
    closed = v.loc[~v["censored"]]
    s2 = P.duration_summary(closed, by="product").set_index(["product", "stage"])
    for (prod, st), grp in closed.groupby(["product", "stage"], observed=True):
        x = np.sort(grp["days"].to_numpy())
        assert s2.loc[(prod, st), "median_days"] == pytest.approx(x[int(np.ceil(len(x) / 2)) - 1])


def test_bottleneck_demo(demo_log):
    b = P.bottleneck(demo_log)
    assert b["bottleneck"].sum() == 1
    assert b.loc[b["bottleneck"], "stage"].iloc[0] == "proposal"  # longest stage in the demo
    assert b["won_share"].sum() == pytest.approx(1.0)
    # won_share is the stage's share of won leads' time in stages
    d = P.durations(demo_log)
    w = d.loc[(d["outcome"] == "won")]
    share = w.groupby("stage", observed=True)["cumulative_days"].sum() / w["cumulative_days"].sum()
    assert np.allclose(b.set_index("stage")["won_share"].to_numpy(), share.to_numpy())


# ---------------------------------------------------------------------------
# cycle time
# ---------------------------------------------------------------------------
def test_cycle_time_maven_engage_to_won_is_57(maven_log):
    c = P.cycle_time(maven_log, start="Engaging", end="Won")
    assert c.loc[0, "leads"] == 4238
    assert c.loc[0, "median_days"] == 57
    # Prospecting has no dates: the cycle from it is unknown, and said so
    p = P.cycle_time(maven_log, start="Prospecting", end="Won")
    assert p.loc[0, "leads"] == 0 and p.loc[0, "unknown_time"] == 4238


def test_lead_cycle_negative_duration_is_flagged():
    log = make_log(
        [
            ("a", "qualification", "2024-01-01"),
            ("a", "won", "2024-01-10"),
            ("a", "meeting", "2024-01-20"),  # meeting dated after the win
            ("b", "qualification", "2024-01-01"),
            ("b", "meeting", "2024-01-04"),
        ]
    )
    lc = P.lead_cycle(log, start="meeting", end="won").set_index("lead_id")
    assert lc.loc["a", "flag"] == "negative_duration"
    assert lc.loc["a", "days"] == pytest.approx(-10)
    c = P.cycle_time(log, start="meeting", end="won")
    assert c.loc[0, "negative_duration"] == 1 and c.loc[0, "leads"] == 0
    with pytest.raises(P.PipelineError, match="not a stage"):
        P.cycle_time(log, start="demo")


# ---------------------------------------------------------------------------
# stale deals
# ---------------------------------------------------------------------------
def test_stale_matches_hand_built_filter(demo_log):
    as_of = "2025-08-31"
    s = P.stale(demo_log, as_of=as_of)
    th = s.attrs["thresholds"].set_index("stage")["threshold_days"]
    snap = P.snapshot(demo_log, as_of=as_of)
    hand = snap.loc[snap["days_in_stage"] > snap["stage"].astype(str).map(th).astype(float)]
    assert sorted(s["lead_id"]) == sorted(hand["lead_id"])
    assert (s["days_overdue"] > 0).all()
    assert np.allclose(s["days_overdue"], s["days_in_stage"] - s["threshold_days"])
    # Monday list: grouped by owner, most overdue first within an owner
    for _, grp in s.groupby("owner", observed=True):
        assert grp["days_overdue"].is_monotonic_decreasing
    assert list(s.columns[:3]) == ["owner", "lead_id", "stage"]


def test_stale_thresholds_learned_and_overridden(demo_log, tmp_path):
    th = P.stale_thresholds(demo_log, as_of="2025-08-31")
    v = P.durations(demo_log, per="visit", as_of="2025-08-31")
    km = fk.stats.kaplan_meier(v.loc[v["stage"] == "meeting", "days"],
                               ~v.loc[v["stage"] == "meeting", "censored"])
    assert th.set_index("stage").loc["meeting", "threshold_days"] == pytest.approx(
        fk.stats.km_quantile(km, 0.9)[0]
    )
    assert (th["source"] == "learned p90").all()
    f = tmp_path / "stale.yaml"
    f.write_text("stale_days:\n  Meeting: 10\n  close: 5\n", encoding="utf-8")
    th2 = P.stale_thresholds(demo_log, thresholds=f).set_index("stage")
    assert th2.loc["meeting", "threshold_days"] == 10 and th2.loc["meeting", "source"] == "given"
    assert th2.loc["proposal", "source"] == "learned p90"
    s = P.stale(demo_log, thresholds={"meeting": 10})
    assert (s.loc[s["stage"] == "meeting", "days_in_stage"] > 10).all()
    bad = tmp_path / "bad.yaml"
    bad.write_text("meting: 10\nproposal: -3\n", encoding="utf-8")
    with pytest.raises(P.PipelineError, match="did you mean 'meeting'.*non-negative"):
        P.stale_thresholds(demo_log, thresholds=bad)
    with pytest.raises(P.PipelineError, match="quantile"):
        P.stale_thresholds(demo_log, quantile=90)


def test_stale_owner_missing_is_listed_last_and_noted():
    raw = pd.DataFrame(
        {
            "lead_id": ["a", "b", "c", "c"],
            "stage": ["meeting", "meeting", "meeting", "proposal"],
            "timestamp": ["2024-01-01", "2024-01-02", "2024-01-01", "2024-03-01"],
            "owner": [None, "Bo", "Al", "Al"],
        }
    )
    log = fk.read_events(raw, stages="pipeline4")
    s = P.stale(log, thresholds={"meeting": 5, "proposal": 100}, as_of="2024-02-01")
    # all three sit in meeting on Feb 1 (c moves on in March): owners A-Z, missing last
    assert s["lead_id"].tolist() == ["c", "b", "a"]
    assert pd.isna(s["owner"].iloc[-1])
    assert any("no 'owner'" in n for n in s.attrs["notes"])
    with pytest.raises(InvalidEventLogError, match="owner=None"):
        P.stale(log, owner="rep")
