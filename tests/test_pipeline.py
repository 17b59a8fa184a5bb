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
    assert counts["open"] == oc.loc[0, "open"] + oc.loc[0, "stalled"]
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
    # a snapshot "today" of yesterday's export is normal: a note, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        today = P.snapshot(log, as_of="2024-01-05")
    assert any("after the data ends" in n for n in today.attrs["notes"])


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


# ---------------------------------------------------------------------------
# movement (waterfall)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("start,end", [("2025-05-31", "2025-06-30"), ("2024-12-31", "2025-03-31")])
def test_movement_reconciles_exactly_between_month_ends(demo_log, start, end):
    w = P.movement(demo_log, start=start, end=end).set_index("movement")
    n, v = w["leads"], w["value"]
    assert n["start"] + n["entered"] - n["won"] - n["lost"] == n["end"]
    assert v["start"] + v["entered"] + v["value_change"] - v["won"] - v["lost"] == v["end"]
    assert w.attrs["reconciled"] is True
    # the levels are the snapshots
    a = P.snapshot(demo_log, as_of=start)
    b = P.snapshot(demo_log, as_of=end)
    assert n["start"] == len(a) and n["end"] == len(b)
    assert v["start"] == a["amount"].sum() and v["end"] == b["amount"].sum()
    # carried-over leads split into advanced + moved back + stayed
    assert n["advanced"] + n["moved_back"] + n["stayed"] == len(set(a["lead_id"]) & set(b["lead_id"]))
    # won/lost match the outcomes dated inside the window
    ends = pd.Timestamp(end) + pd.Timedelta(days=1)
    ev = demo_log.loc[(demo_log["timestamp"] > pd.Timestamp(start) + pd.Timedelta(days=1))
                      & (demo_log["timestamp"] < ends)]
    assert n["won"] == (ev["stage"] == "won").sum()
    assert n["lost"] == (ev["stage"] == "lost").sum()


def test_movement_by_segment_sums_to_total(demo_log):
    tot = P.movement(demo_log, start="2025-05-31", end="2025-06-30")
    seg = P.movement(demo_log, start="2025-05-31", end="2025-06-30", by="product")
    agg = seg.groupby("movement", observed=True)[["leads", "value"]].sum()
    t = tot.set_index("movement")
    assert (agg["leads"] == t["leads"]).all()
    assert np.allclose(agg["value"], t["value"])


def test_movement_leads_categories_and_value_change():
    log = make_log(
        [
            ("a", "qualification", "2024-01-01", 100.0),
            ("a", "meeting", "2024-01-20", 120.0),  # advanced, value +20
            ("b", "qualification", "2024-01-02", 50.0),
            ("b", "lost", "2024-01-25", 50.0),  # lost
            ("c", "meeting", "2024-01-05", 10.0),  # stayed
            ("d", "qualification", "2024-01-15", 70.0),  # entered
            ("e", "qualification", "2024-01-12", 30.0),
            ("e", "won", "2024-01-28", 30.0),  # entered and won
            ("f", "qualification", "2023-12-01", 5.0),
            ("f", "lost", "2023-12-20", 5.0),  # closed before start: not involved
        ]
    )
    mv = P.movement_leads(log, start="2024-01-10", end="2024-01-31").set_index("lead_id")
    assert mv["movement"].astype(str).to_dict() == {
        "a": "advanced", "b": "lost", "c": "stayed", "d": "entered", "e": "entered_won",
    }
    w = P.movement(log, start="2024-01-10", end="2024-01-31").set_index("movement")
    assert w.loc["value_change", "value"] == 20
    assert w.loc["start", "value"] == 160 and w.loc["end", "value"] == 200
    assert w.loc["entered", "leads"] == 2 and w.loc["won", "value"] == 30
    with pytest.raises(P.PipelineError, match="after start"):
        P.movement(log, start="2024-01-31", end="2024-01-10")


# ---------------------------------------------------------------------------
# drill-down
# ---------------------------------------------------------------------------
def test_drilldown_matches_funnel_cells(demo_log):
    f = fk.funnel.conversion(demo_log, by="source")
    for step in ["qualification", "proposal", "close"]:
        dd = P.drilldown(demo_log, step=step, where={"source": "web form"})
        cell = f[(f["source"] == "web form") & (f["step"] == step)].iloc[0]
        counts = dd["status"].value_counts()
        assert len(dd) == cell["entered"]
        assert counts["converted"] == cell["converted"]
        if "in_flight" in f.columns:
            assert counts.get("in_flight", 0) == cell["in_flight"]
            assert counts.get("dropped", 0) == cell["dropped"]
        else:
            assert counts.get("dropped", 0) + counts.get("in_flight", 0) == cell["dropped"]
        assert (dd["source"] == "web form").all()
    inflight = P.drilldown(demo_log, step="proposal", status="in_flight")
    assert len(inflight) > 0 and (inflight["outcome"] == "open").all()
    assert (inflight["current_stage"].astype(str).isin(["qualification", "meeting", "proposal"])).all()
    dropped = P.drilldown(demo_log, step="proposal", status="dropped")
    assert dropped["next_at"].isna().all()
    assert (dropped["outcome"] != "won").all()
    last = P.drilldown(demo_log, step="won")
    assert (last["status"] == "converted").all()
    with pytest.raises(P.PipelineError, match="Did you mean 'proposal'"):
        P.drilldown(demo_log, step="proposl")
    with pytest.raises(P.PipelineError, match="status"):
        P.drilldown(demo_log, step="proposal", status="lost")


# ---------------------------------------------------------------------------
# reps, metrics, velocity, coverage
# ---------------------------------------------------------------------------
def test_rep_performance_demo(demo_log):
    r = P.rep_performance(demo_log).set_index("owner")
    oc = fk.funnel.outcomes(demo_log, by="owner").set_index("owner").loc[r.index]
    assert (r["won"] == oc["won"]).all() and (r["lost"] == oc["lost"]).all()
    assert (r["stalled"] == oc["stalled"]).all() and (r["open"] == oc["open"]).all()
    assert np.allclose(r["rate"], oc["decided_win_rate"])
    hana = r.loc["Hana Sato"]
    assert hana["verdict"] == "below peers" and hana["diff_ci_high"] < 0
    peers = r.drop(index="Hana Sato")
    assert hana["peer_rate"] == pytest.approx(peers["won"].sum() / peers["trials"].sum())
    assert (r["ci_low"] <= r["rate"]).all() and (r["rate"] <= r["ci_high"]).all()
    assert r["p_adjusted"].ge(r["p_value"] - 1e-12).all()
    assert np.allclose(r["per_100"], 100 * r["rate"])


def test_rep_performance_maven(maven_log):
    r = P.rep_performance(maven_log, owner="sales_agent")
    assert len(r) == 30 and r["sales_agent"].notna().all()
    assert int(r["won"].sum()) == 4238 and int(r["lost"].sum()) == 2473
    assert r["ci_low"].notna().all() and (r["ci_high"] - r["ci_low"] < 0.2).all()
    # counting deals stalled past the horizon as not won, one agent stands out:
    # Reed Clapper closed every deal (155 won of 237) while peers leave deals stalled
    assert r["differs"].sum() == 1
    reed = r.set_index("sales_agent").loc["Reed Clapper"]
    assert (reed["won"], reed["trials"], reed["stalled"], reed["open"]) == (155, 237, 0, 0)
    peers = r[r["sales_agent"] != "Reed Clapper"]
    assert reed["peer_rate"] == pytest.approx(peers["won"].sum() / peers["trials"].sum())
    assert (r["p_value"] < 0.05).sum() > r["differs"].sum()  # more look "significant" alone


def test_rep_performance_missing_owner_not_dropped():
    raw = pd.DataFrame(
        {
            "lead_id": ["a", "a", "b", "b", "c", "c"],
            "stage": ["qualification", "won", "qualification", "lost", "qualification", "lost"],
            "timestamp": ["2024-01-01", "2024-01-05"] * 3,
            "owner": ["Al", None, None, None, "Bo", "Bo"],
        }
    )
    log = fk.read_events(raw, stages="pipeline4")
    r = P.rep_performance(log)
    assert int(r["leads"].sum()) == 3
    assert r.set_index("owner").loc["Al", "won"] == 1  # owner from the row that has it
    missing = r.loc[r["owner"].isna()].iloc[0]
    assert missing["leads"] == 1 and np.isnan(missing["p_value"])
    assert any("no 'owner'" in n for n in r.attrs["notes"])
    with pytest.raises(InvalidEventLogError, match="sales_agent"):
        P.rep_performance(log.drop(columns="owner"))


def test_metrics_by_hand(demo_log):
    m = P.metrics(demo_log, by="product").set_index("product")
    prog = fk.funnel.lead_progress(demo_log, by="product")
    won = prog.loc[prog["outcome"] == "won"]
    for prod, g in won.groupby("product", observed=True):
        assert m.loc[prod, "won"] == len(g)
        assert m.loc[prod, "avg_deal_size"] == pytest.approx(g["amount"].mean())
        cyc = (g["closed_at"] - g["time_qualification"]) / pd.Timedelta(days=1)
        assert m.loc[prod, "median_cycle_days"] == pytest.approx(cyc.median())
        assert m.loc[prod, "revenue"] == pytest.approx(g["amount"].sum())
    q = prog.groupby("product", observed=True)["reached_meeting"].sum()
    assert (m["qualified_leads"] == q).all()
    assert (m["reps"] == 8).all()
    assert np.allclose(m["sales_per_rep"], m["revenue"] / 8)
    span = (demo_log["timestamp"].max() - demo_log["timestamp"].min()) / pd.Timedelta(days=365.25)
    assert np.allclose(m["clv"], m["sales_per_account"] / span)
    assert "own account" in " ".join(m.attrs["notes"])
    mm = P.metrics(demo_log, period="Q", margin=0.5, lifetime_years=3)
    assert int(mm["leads"].sum()) == 6000
    years = (mm["period"].dt.end_time - mm["period"].dt.start_time) / pd.Timedelta(days=365.25)
    assert np.allclose(mm["clv"], mm["sales_per_account"] / years * 1.5, equal_nan=True)
    with pytest.raises(P.PipelineError, match="margin"):
        P.metrics(demo_log, margin=2)


def test_metrics_maven_accounts_and_reps(maven_log):
    m = P.metrics(maven_log, owner="sales_agent")
    assert m.loc[0, "won"] == 4238 and m.loc[0, "reps"] == 30
    assert m.loc[0, "accounts"] == 85
    assert m.loc[0, "median_cycle_days"] == 57  # first dated event is the engage date


def test_velocity_formula(demo_log):
    v = P.velocity(demo_log, as_of="2025-06-30", lookback_days=180)
    r = v.iloc[0]
    assert r["velocity_per_day"] == pytest.approx(
        r["opportunities"] * r["win_rate"] * r["avg_deal_size"] / r["cycle_days"]
    )
    snap = P.snapshot(demo_log, as_of="2025-06-30")
    assert r["opportunities"] == (snap["stage"] != "qualification").sum()
    # no leakage: the same from the log cut at as_of
    cut = demo_log.loc[demo_log["timestamp"] <= "2025-06-30 23:59:59"]
    cut.attrs = demo_log.attrs
    v2 = P.velocity(cut, as_of="2025-06-30", lookback_days=180)
    pd.testing.assert_frame_equal(v, v2)


def test_coverage(demo_log):
    c = P.coverage(demo_log, target=2e6, as_of="2025-06-30")
    snap = P.snapshot(demo_log, as_of="2025-06-30")
    assert c.loc[0, "open_value"] == snap["amount"].sum()
    assert c.loc[0, "coverage"] == pytest.approx(snap["amount"].sum() / 2e6)
    cs = P.coverage(demo_log, target={"Starter": 1e5, "Enterprise": 1e6}, by="product")
    assert np.isnan(cs.set_index("product").loc["Professional", "coverage"])
    assert any("No target" in n for n in cs.attrs["notes"])
    with pytest.raises(P.PipelineError, match="positive"):
        P.coverage(demo_log, target=0)
    with pytest.raises(P.PipelineError, match="by="):
        P.coverage(demo_log, target={"Starter": 1})


def test_row_order_of_the_log_does_not_matter(small_demo):
    shuffled = small_demo.sample(frac=1.0, random_state=3)
    shuffled.attrs = small_demo.attrs
    for f in (
        lambda g: P.snapshot(g, as_of="2025-03-31", include_closed=True),
        lambda g: P.durations(g, per="visit").sort_values(["lead_id", "entered_at"]).reset_index(drop=True),
        lambda g: P.movement(g, start="2025-02-28", end="2025-03-31"),
    ):
        pd.testing.assert_frame_equal(f(small_demo), f(shuffled))


def test_metrics_without_by_counts_every_lead(demo_log):
    m = fk.pipeline.metrics(demo_log)
    assert len(m) == 1
    assert m.loc[0, "leads"] == demo_log["lead_id"].nunique()
    assert m.loc[0, "leads"] == m.loc[0, ["won", "lost", "open"]].sum()


def test_activity_agrees_with_movement_and_a_hand_count(demo_log):
    act = fk.pipeline.activity(demo_log, start="2025-06-01").set_index("period")
    sep = act.loc[pd.Timestamp("2025-09-01")]
    move = fk.pipeline.movement(demo_log, start="2025-08-31", end="2025-09-30").set_index("movement")
    assert sep["won"] == move.loc["won", "leads"]
    assert sep["won_value"] == pytest.approx(move.loc["won", "value"])
    assert sep["open_at_end"] == move.loc["end", "leads"]
    in_sep = demo_log["timestamp"].between("2025-09-01", "2025-09-30 23:59:59")
    hand = demo_log.loc[in_sep & (demo_log["stage"] == "proposal"), "lead_id"].nunique()
    assert sep["proposal"] == hand
    assert list(act.index) == list(pd.date_range("2025-06-01", "2025-09-01", freq="MS"))


def test_activity_bad_freq(demo_log):
    with pytest.raises(FunnelkitError, match="not a pandas frequency"):
        fk.pipeline.activity(demo_log, freq="fortnightly")


def test_views_before_a_segment_has_leads_are_empty_and_say_why(demo_log):
    """A month before a segment's first lead: empty tables and a note, never an IndexError."""
    sub = demo_log[demo_log["product"] == "Enterprise"]
    as_of = "2024-06-01"  # the demo starts on 2024-07-01
    assert P.snapshot(sub, as_of=as_of).empty
    st = P.stale(sub, as_of=as_of)
    assert st.empty and list(st.columns)[:3] == ["owner", "lead_id", "stage"]
    d = P.durations(sub, as_of=as_of)
    assert d.empty and "no lead is known" in d.attrs["notes"][0]
    assert P.durations(sub, as_of=as_of, per="visit").empty
    b = P.bottleneck(sub, as_of=as_of)
    assert b.empty and "no lead is known" in b.attrs["notes"][0]
    assert P.duration_summary(d).empty


def test_drilldown_as_of_is_the_snapshot_moment(demo_log):
    dd = P.drilldown(demo_log, step="proposal", as_of="2025-06-30")
    assert dd.attrs["as_of"] == pd.Timestamp("2025-06-30 23:59:59.999999999")
    snap = P.snapshot(demo_log, as_of="2025-06-30", include_closed=True).set_index("lead_id")
    cur = snap.loc[dd["lead_id"], "stage"].astype(str).to_numpy()
    assert (dd["current_stage"].astype(str).to_numpy() == cur).all()
    assert (dd["reached_at"] <= pd.Timestamp("2025-06-30 23:59:59.999999999")).all()
