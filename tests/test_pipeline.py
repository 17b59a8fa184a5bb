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
