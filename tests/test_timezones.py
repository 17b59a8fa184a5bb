"""Exact durations in a log with a time zone.

A log read with ``tz=`` other than UTC keeps its times as instants
(``datetime64[ns, tz]``: UTC inside, wall-clock in the zone when shown), so a
step that spans a clock change lasts what it lasted, 23 or 25 hours for a
calendar day; as-of dates are the end of the *local* day, and months and
cohorts are cut on the local calendar.  Each figure is checked against a
hand computation in pandas, and every view is checked to give on a Paris log
exactly what it gives on the same instants stored as naive UTC.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import funnel, pipeline

PARIS = "Europe/Paris"
HOUR = 3_600_000_000_000

# a lead through both 2024 clock changes (31 March, 27 October), one that
# crosses only the autumn change, one open
ROWS = [
    ("a", "lead", "2024-03-30 12:00:00+01:00"),
    ("a", "qualified", "2024-03-31 12:00:00+02:00"),  # 23 hours later
    ("a", "won", "2024-10-27 12:00:00+01:00"),
    ("b", "lead", "2024-10-26 12:00:00+02:00"),
    ("b", "qualified", "2024-10-27 12:00:00+01:00"),  # 25 hours later
    ("b", "lost", "2024-11-02 12:00:00+01:00"),
    ("c", "lead", "2024-06-01 09:00:00+02:00"),
]
SS = fk.StageSet("dst", ["lead", "qualified"], won="won", lost=["lost"])


@pytest.fixture(scope="module")
def dst_log():
    return fk.read_events(pd.DataFrame(ROWS, columns=["lead_id", "stage", "timestamp"]), stages=SS, tz=PARIS)


def hand_days(start: str, end: str) -> float:
    return (pd.Timestamp(end) - pd.Timestamp(start)) / pd.Timedelta(days=1)


def test_read_keeps_instants_and_wall_clock(dst_log):
    t = dst_log["timestamp"]
    assert str(t.dt.tz) == PARIS
    raw = pd.to_datetime(pd.Series([r[2] for r in ROWS]), utc=True)
    assert sorted(t.dt.tz_convert("UTC").tolist()) == sorted(raw.tolist())
    # shown as wall-clock: the strings' own local times
    assert t.iloc[1].strftime("%Y-%m-%d %H:%M%z") == "2024-03-31 12:00+0200"


def test_naive_strings_are_wall_clock_in_tz(dst_log):
    naive = pd.DataFrame([(a, b, c[:19]) for a, b, c in ROWS], columns=["lead_id", "stage", "timestamp"])
    log = fk.read_events(naive, stages=SS, tz=PARIS)
    assert (log["timestamp"].to_numpy() == dst_log["timestamp"].to_numpy()).all()


def test_repeated_and_skipped_hours_are_said():
    df = pd.DataFrame(
        [("x", "lead", "2024-10-27 02:30"), ("x", "qualified", "2024-10-28 09:00"), ("y", "lead", "2024-03-31 02:30")],
        columns=["lead_id", "stage", "timestamp"],
    )
    log = fk.read_events(df, stages=SS, tz=PARIS)
    notes = " ".join(log.attrs["funnelkit"].notes)
    assert "1 time in column 'timestamp' falls in the hour that repeats" in notes and "row 1" in notes
    assert "skipped when clocks go forward" in notes and "row 3" in notes
    got = dict(zip(log["lead_id"] + log["stage"].astype(str), log["timestamp"]))
    assert got["xlead"] == pd.Timestamp("2024-10-27 00:30", tz="UTC")  # the summer-time pass
    assert got["ylead"] == pd.Timestamp("2024-03-31 03:00", tz=PARIS)  # after the gap
    assert len(log) == 3  # nothing dropped


def test_utc_default_stays_naive():
    log = fk.read_events(pd.DataFrame(ROWS, columns=["lead_id", "stage", "timestamp"]), stages=SS)
    assert log["timestamp"].dt.tz is None
    assert log["timestamp"].iloc[1] == pd.Timestamp("2024-03-31 10:00")


def test_durations_across_both_clock_changes_are_exact(dst_log):
    d = pipeline.durations(dst_log).set_index(["lead_id", "stage"])
    assert d.loc[("a", "lead"), "latest_days"] == pytest.approx(23 / 24, abs=1e-12)
    assert d.loc[("b", "lead"), "latest_days"] == pytest.approx(25 / 24, abs=1e-12)
    assert d.loc[("a", "qualified"), "latest_days"] == pytest.approx(
        hand_days("2024-03-31 12:00+02:00", "2024-10-27 12:00+01:00"), abs=1e-12
    )
    assert d.loc[("a", "lead"), "first_entered_at"] == pd.Timestamp("2024-03-30 12:00", tz=PARIS)

    stays = fk.TransitionModel().fit(dst_log).stays_.set_index(["lead_id", "stage"])["days"]
    assert stays[("a", "lead")] == pytest.approx(23 / 24, abs=1e-12)
    assert stays[("b", "lead")] == pytest.approx(25 / 24, abs=1e-12)

    ttc = funnel.time_to_convert(dst_log, start="lead", end="qualified").summary.iloc[0]
    assert ttc["median_converted"] == pytest.approx(np.median([23 / 24, 25 / 24]), abs=1e-12)

    cyc = pipeline.lead_cycle(dst_log).set_index("lead_id")
    assert cyc.loc["a", "days"] == pytest.approx(hand_days("2024-03-30 12:00+01:00", "2024-10-27 12:00+01:00"))
    assert cyc.loc["a", "start_at"].tz is not None


def test_as_of_date_is_the_end_of_the_local_day(dst_log):
    # 2024-03-31 ends at 21:59:59.999999999 UTC in Paris (summer time from 01:00 UTC)
    snap = pipeline.snapshot(dst_log, as_of="2024-03-31", include_closed=True)
    assert snap.attrs["as_of"] == pd.Timestamp("2024-03-31 23:59:59.999999999", tz=PARIS)
    assert snap.attrs["as_of"].tz_convert("UTC") == pd.Timestamp("2024-03-31 21:59:59.999999999", tz="UTC")
    assert set(snap["lead_id"]) == {"a"}
    # an aware as-of is that instant
    before = pipeline.snapshot(dst_log, as_of=pd.Timestamp("2024-03-31 09:59", tz="UTC"), include_closed=True)
    assert before.set_index("lead_id").loc["a", "stage"] == "lead"
    # a naive log refuses an aware as-of, and says how to fix it
    naive = fk.read_events(pd.DataFrame(ROWS, columns=["lead_id", "stage", "timestamp"]), stages=SS)
    with pytest.raises(fk.PipelineError, match="tz-naive"):
        pipeline.snapshot(naive, as_of=pd.Timestamp("2024-03-31", tz=PARIS))


# ---------------------------------------------------------------------------
# every view: a Paris log gives what the same instants in naive UTC give
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_pair():
    naive = fk.datasets.load_demo()  # naive, read here as UTC instants
    paris = naive.copy()
    paris["timestamp"] = naive["timestamp"].dt.tz_localize("UTC").dt.tz_convert(PARIS)
    paris.attrs = dict(naive.attrs)
    return naive, paris


MOMENT = pd.Timestamp("2025-06-30 21:59:59.999999999")  # the end of 30 June in Paris, in UTC


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal tables, datetimes compared as instants."""
    a, b = a.copy(), b.copy()
    for df in (a, b):
        for c in df.columns:
            if isinstance(df[c].dtype, pd.DatetimeTZDtype):
                df[c] = df[c].dt.tz_convert("UTC").dt.tz_localize(None)
        df.attrs = {}
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


@pytest.mark.parametrize(
    "view",
    [
        lambda L, T: funnel.conversion(L, as_of=T),
        lambda L, T: funnel.conversion(L, as_of=T, by="source"),
        lambda L, T: funnel.outcomes(L, as_of=T),
        lambda L, T: funnel.compare(L, by="product", as_of=T),
        lambda L, T: funnel.leaks(L, by="product", as_of=T),
        lambda L, T: funnel.lead_progress(L, as_of=T),
        lambda L, T: funnel.time_to_convert(L, start="qualification", end="won", as_of=T).summary,
        lambda L, T: pipeline.snapshot(L, as_of=T, include_closed=True),
        lambda L, T: pipeline.durations(L, as_of=T),
        lambda L, T: pipeline.stale(L, as_of=T, owner="owner"),
        lambda L, T: pipeline.lead_cycle(L),
        lambda L, T: pipeline.movement_leads(L, start=T - pd.Timedelta(days=90), end=T),
        lambda L, T: fk.TransitionModel().fit(L, as_of=T).matrix(),
        lambda L, T: fk.forecast.forecast(L, as_of=T, horizon="30D", n_draws=200, seed=1).total,
        lambda L, T: fk.forecast.weighted_pipeline(L, as_of=T),
    ],
    ids=["conversion", "conversion_by", "outcomes", "compare", "leaks", "lead_progress", "time_to_convert",
         "snapshot", "durations", "stale", "lead_cycle", "movement_leads", "transition_matrix", "forecast",
         "weighted_pipeline"],
)
def test_paris_log_equals_the_same_instants_in_utc(demo_pair, view):
    naive, paris = demo_pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expect = view(naive, MOMENT)
        got = view(paris, MOMENT.tz_localize("UTC"))
    _same(got, expect)


def test_date_as_of_in_paris_equals_its_utc_instant(demo_pair):
    naive, paris = demo_pair
    _same(funnel.conversion(paris, as_of="2025-06-30"), funnel.conversion(naive, as_of=MOMENT))
    f = fk.forecast.forecast(paris, as_of="2025-06-30", horizon="30D", n_draws=100, seed=0)
    assert f.as_of_ == pd.Timestamp("2025-06-30 23:59:59.999999999", tz=PARIS)


def test_cohorts_and_trend_are_cut_on_the_local_calendar(demo_pair):
    _, paris = demo_pair
    first = paris.attrs["funnelkit"].stage_set.steps[0]
    co = funnel.cohorts(paris, freq="MS")
    got = co.loc[co["step"] == first].set_index("cohort")["entered"]
    entry = paris.loc[paris["stage"] == first].groupby("lead_id")["timestamp"].min()
    hand = entry.dt.tz_localize(None).dt.to_period("M").value_counts().sort_index()
    assert got.index.tz is not None
    assert got.to_numpy().tolist() == hand.to_numpy().tolist()
    assert [p.strftime("%Y-%m") for p in got.index] == [str(p) for p in hand.index]
    # some leads entered in the last hour(s) of a UTC month: the local calendar moves them
    utc_months = entry.dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("M")
    assert (utc_months != entry.dt.tz_localize(None).dt.to_period("M")).sum() > 0


def test_parallel_gives_the_one_core_answer_on_a_paris_log(demo_pair):
    _, paris = demo_pair
    _same(fk.parallel.cohorts(paris, n_jobs=1), funnel.cohorts(paris))
    _same(fk.parallel.conversion(paris, as_of="2025-06-30", n_jobs=1), funnel.conversion(paris, as_of="2025-06-30"))


# ---------------------------------------------------------------------------
# a real log with offsets: BPIC 2020 (Dutch university), read in its own zone
# ---------------------------------------------------------------------------
def test_bpic2020_durations_across_clock_changes(shared_data: Path):
    path = shared_data / "bpic2020" / "DomesticDeclarations.xes.gz"
    if not path.exists():
        pytest.skip("BPIC 2020 not in ../shared/data")
    labels = set(fk.read_xes(path)["stage"].astype(str))
    rejected = sorted(lab for lab in labels if "REJECTED" in lab)
    ss = fk.StageSet("bpic", ["Declaration SUBMITTED by EMPLOYEE"], won="Payment Handled", lost=rejected,
                     infer_skipped=False)
    ignore = sorted(labels - set(ss.labels))
    local = fk.read_xes(path, stages=ss, ignore=ignore, tz="Europe/Amsterdam")
    utc = fk.read_xes(path, stages=ss, ignore=ignore)
    assert str(local["timestamp"].dt.tz) == "Europe/Amsterdam"
    assert utc["timestamp"].dt.tz is None

    def gaps(col: pd.Series, lead: np.ndarray) -> np.ndarray:
        ns = col.to_numpy(dtype="datetime64[ns]").view(np.int64)
        same = lead[1:] == lead[:-1]
        return (ns[1:] - ns[:-1])[same]

    lead = local["lead_id"].to_numpy()
    exact = gaps(local["timestamp"], lead)
    wall = gaps(local["timestamp"].dt.tz_localize(None), lead)
    assert (exact == gaps(utc["timestamp"], utc["lead_id"].to_numpy())).all()
    off = (exact - wall) / HOUR
    # hundreds of steps span a clock change; wall-clock time got each one an hour wrong
    assert int((off == 1).sum()) > 100 and int((off == -1).sum()) > 100
    assert set(np.unique(off)) <= {-1.0, 0.0, 1.0}
    # the views measure the instants: durations equal on both readings
    d_local = pipeline.durations(local).set_index(["lead_id", "stage"])["cumulative_days"]
    d_utc = pipeline.durations(utc).set_index(["lead_id", "stage"])["cumulative_days"]
    pd.testing.assert_series_equal(d_local.sort_index(), d_utc.sort_index())
    ttc = [funnel.time_to_convert(x, start="Declaration SUBMITTED by EMPLOYEE", end="Payment Handled").summary.iloc[0]
           for x in (local, utc)]
    assert ttc[0]["median_converted"] == ttc[1]["median_converted"]


# ---------------------------------------------------------------------------
# monthly reports: the month is the log's local calendar month
# ---------------------------------------------------------------------------
def test_monthly_headline_counts_the_local_month(demo_pair):
    from funnelkit.reports import monthly

    naive, paris = demo_pair
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "drops timezone information" warning on the page
        h = monthly.headline(paris, month="2025-08").set_index("metric")
    assert h.attrs["as_of"] == "2025-08-31 23:59:59.999999999+02:00"
    first = paris.groupby("lead_id")["timestamp"].min()
    local = first.dt.tz_localize(None)
    hand = int(((local >= "2025-08-01") & (local < "2025-09-01")).sum())
    assert h.loc["leads_entered", "value"] == hand
    start, end, stamp = monthly.month_window("2025-10", tz=PARIS)
    assert (end - start) == pd.Timedelta(days=31, hours=1) - pd.Timedelta(1, "ns")  # 27 October: 25 hours
    assert stamp == end and str(start) == "2025-10-01 00:00:00+02:00"


def test_a_report_plan_with_a_time_zone_runs(tmp_path):
    from funnelkit.reports import MonthlyReport, sections

    naive = fk.datasets.load_demo()
    csv = tmp_path / "events.csv"
    naive.assign(timestamp=naive["timestamp"].dt.tz_localize("UTC").dt.tz_convert(PARIS)).to_csv(csv, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = MonthlyReport.prepare(str(csv), stages="pipeline4", segment_column="product",
                                  segment_value="Enterprise", month="2025-09", read_options={"tz": PARIS})
    assert str(r.log["timestamp"].dt.tz) == PARIS and r.as_of == pd.Timestamp("2025-09-30 23:59:59.999999999",
                                                                              tz=PARIS)
    names = ["title", "headline", "funnel", "leaks", "outcomes", "trend", "flow", "pipeline", "waterfall",
             "followups", "bottleneck", "forecast", "leads_needed", "provenance"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            sec = getattr(sections, name)(r)
            assert "funnelkit-warning" not in sec.html, (name, sec.text[:300])
