import warnings

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit.exceptions import DataWarning, InvalidEventLogError

GOOD = """lead,step,when,value,product
a,qualification,2024-01-01 09:00,100,X
a,meeting,2024-01-03 10:00,100,X
a,proposal,2024-01-10,100,X
a,won,2024-01-20,120,X
b,qualification,2024-01-02,50,Y
b,meeting,2024-01-05,50,Y
b,lost,2024-01-09,50,Y
c,qualification,2024-01-04,,Y
"""
MAP = {"lead": "lead_id", "step": "stage", "when": "timestamp", "value": "amount"}


def write(tmp_path, text, name="events.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_read_csv_with_mapping(tmp_path):
    log = fk.read_events(write(tmp_path, GOOD), columns=MAP, stages="pipeline4")
    assert list(log.columns) == ["lead_id", "stage", "timestamp", "amount", "product", "flag"]
    assert log["timestamp"].dtype == "datetime64[ns]"
    assert isinstance(log["stage"].dtype, pd.CategoricalDtype)
    assert isinstance(log["product"].dtype, pd.CategoricalDtype)
    assert np.isnan(log.loc[log["lead_id"] == "c", "amount"]).all()
    rep = log.attrs["funnelkit"]
    assert rep.rows_read == 8 and rep.events == 8 and rep.leads == 3
    assert "3 leads" in str(rep)


def test_read_parquet_and_dataframe_agree(tmp_path):
    df = pd.read_csv(write(tmp_path, GOOD))
    path = tmp_path / "events.parquet"
    df.to_parquet(path)
    a = fk.read_events(path, columns=MAP, stages="pipeline4")
    b = fk.read_events(df, columns=MAP, stages="pipeline4")
    pd.testing.assert_frame_equal(a, b)


def test_one_error_names_missing_column_bad_date_and_unknown_stage(tmp_path):
    rows = ["id,stage,timestamp"]
    labels = ["qualification", "meeting", "proposal", "close", "won", "qualification",
              "meeting", "proposal", "qualifcation", "won"]
    for i, lab in enumerate(labels, 1):
        ts = "2024-02-30" if i == 7 else f"2024-01-{i:02d}"
        rows.append(f"L{i},{lab},{ts}")
    path = write(tmp_path, "\n".join(rows) + "\n")
    with pytest.raises(InvalidEventLogError) as err:
        fk.read_events(path, stages="pipeline4")
    e = err.value
    assert e.kinds == ["missing_column", "bad_timestamp", "unknown_stage"]
    msg = str(e)
    assert "'lead_id' is missing" in msg and "id, stage, timestamp" in msg
    assert "columns={'id': 'lead_id'}" in msg  # the fix names the close match
    assert "row 7" in msg and "'2024-02-30'" in msg
    assert "'qualifcation' x1" in msg and "did you mean 'qualification'" in msg
    assert str(path) in msg
    assert isinstance(e, fk.FunnelkitError) and isinstance(e, ValueError)


def test_blank_ids_amounts_and_blank_times(tmp_path):
    text = """lead_id,stage,timestamp,amount
a,qualification,2024-01-01,10
,meeting,2024-01-02,10
b,qualification,,abc
c,qualification,2024-01-03,-5
"""
    with pytest.raises(InvalidEventLogError) as err:
        fk.read_events(write(tmp_path, text), stages="pipeline4")
    kinds = err.value.kinds
    assert kinds == ["empty_lead_id", "blank_timestamp", "bad_amount", "negative_amount"]
    msg = str(err.value)
    assert "row 2" in msg and "row 3" in msg and "'abc'" in msg and "row 4" in msg
    assert "missing_time='keep'" in msg


def test_missing_time_keep_flags_unknown(tmp_path):
    text = "lead_id,stage,timestamp\na,qualification,\na,meeting,2024-01-02\n"
    log = fk.read_events(write(tmp_path, text), stages="pipeline4", missing_time="keep")
    assert log["timestamp"].isna().sum() == 1
    assert log.loc[log["timestamp"].isna(), "flag"].iloc[0] == "unknown_time"


def test_timezone_policy_converts_aware_to_tz():
    df = pd.DataFrame({"lead_id": ["a", "a"], "stage": ["qualification", "meeting"],
                       "timestamp": ["2024-03-01T09:00:00+01:00", "2024-03-01T12:00:00Z"]})
    utc = fk.read_events(df)
    assert utc["timestamp"].tolist() == [pd.Timestamp("2024-03-01 08:00"), pd.Timestamp("2024-03-01 12:00")]
    ny = fk.read_events(df, tz="America/New_York")  # an aware column: the instants, shown in New York
    assert str(ny["timestamp"].dt.tz) == "America/New_York"
    assert ny["timestamp"].iloc[0] == pd.Timestamp("2024-03-01 03:00", tz="America/New_York")
    assert ny["timestamp"].iloc[0].strftime("%H:%M") == "03:00"


def test_mixed_naive_and_aware_is_an_error():
    df = pd.DataFrame({"lead_id": ["a", "a", "b"], "stage": ["qualification", "meeting", "qualification"],
                       "timestamp": ["2024-03-01T09:00:00+01:00", "2024-03-02 10:00", "2024-03-03"]})
    with pytest.raises(InvalidEventLogError, match="mixes timezone-aware") as err:
        fk.read_events(df)
    assert "rows 2, 3" in str(err.value)


def test_aware_datetime_column_is_converted():
    ts = pd.to_datetime(["2024-03-01 09:00"]).tz_localize("Europe/Paris")
    df = pd.DataFrame({"lead_id": ["a"], "stage": ["s"], "timestamp": ts})
    log = fk.read_events(df)
    assert log["timestamp"].iloc[0] == pd.Timestamp("2024-03-01 08:00")


def test_exact_duplicates_dropped_with_warning(tmp_path):
    text = GOOD + "a,meeting,2024-01-03 10:00,100,X\n"
    with pytest.warns(DataWarning, match="dropped 1 exact duplicate"):
        log = fk.read_events(write(tmp_path, text), columns=MAP, stages="pipeline4")
    assert len(log) == 8
    assert log.attrs["funnelkit"].duplicates_dropped == 1


def test_no_warning_without_duplicates(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        fk.read_events(write(tmp_path, GOOD), columns=MAP, stages="pipeline4")


def test_anomalies_are_kept_and_flagged():
    df = pd.DataFrame(
        {
            "lead_id": ["a"] * 4 + ["b"] * 3 + ["c"] * 2,
            "stage": ["qualification", "proposal", "meeting", "won",  # skip, then back
                      "won", "qualification", "meeting",  # won before first contact
                      "qualification", "qualification"],  # re-entry: not an anomaly
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04",
                                         "2024-01-01", "2024-01-05", "2024-01-06",
                                         "2024-01-01", "2024-01-02"]),
        }
    )
    log = fk.read_events(df, stages="pipeline4")
    assert len(log) == 9
    flags = dict(zip(zip(log["lead_id"], log["stage"].astype(str)), log["flag"].astype(str)))
    assert flags[("a", "proposal")] == "skipped_stage"
    assert flags[("a", "meeting")] == "moved_back"
    assert flags[("b", "qualification")] == "after_outcome"
    assert flags[("b", "meeting")] == "after_outcome"
    assert set(log.loc[log["lead_id"] == "c", "flag"].astype(str)) == {""}
    # a's won skipped 'close'; b's won came first, skipping everything
    assert flags[("a", "won")] == "skipped_stage" and flags[("b", "won")] == "skipped_stage"
    assert log.attrs["funnelkit"].flags == {"skipped_stage": 3, "moved_back": 1, "after_outcome": 2}


def test_unsupported_file_type(tmp_path):
    p = tmp_path / "events.xlsx"
    p.write_text("x")
    with pytest.raises(InvalidEventLogError, match="reads .csv"):
        fk.read_events(p)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        fk.read_events("no/such/file.csv")


def test_segments_selection_and_missing_segment(tmp_path):
    path = write(tmp_path, GOOD)
    log = fk.read_events(path, columns=MAP, stages="pipeline4", segments=[])
    assert "product" not in log.columns
    with pytest.raises(InvalidEventLogError, match="segment column 'region'"):
        fk.read_events(path, columns=MAP, segments=["region"])


def test_mapping_names_absent_column(tmp_path):
    with pytest.raises(InvalidEventLogError, match="'Deal ID' \\(mapped to 'lead_id'\\)"):
        fk.read_events(write(tmp_path, GOOD), columns={"Deal ID": "lead_id", "step": "stage", "when": "timestamp"})


def test_day_first_dates():
    df = pd.DataFrame({"lead_id": ["a", "a"], "stage": ["s1", "s2"], "timestamp": ["31/01/2024", "01/02/2024"]})
    log = fk.read_events(df, dayfirst=True)
    assert log["timestamp"].tolist() == [pd.Timestamp("2024-01-31"), pd.Timestamp("2024-02-01")]


def test_without_stage_set_labels_stay():
    df = pd.DataFrame({"lead_id": ["a"], "stage": ["Signed up"], "timestamp": ["2024-01-01"]})
    log = fk.read_events(df)
    assert log["stage"].iloc[0] == "Signed up"
    with pytest.raises(InvalidEventLogError, match="no stage set"):
        fk.funnel.conversion(log)


def test_known_at_admits_no_lead_from_the_future():
    log = pd.DataFrame(
        {
            "lead_id": ["a", "a", "b", "b", "c"],
            "stage": ["qualification", "meeting", "qualification", "meeting", "qualification"],
            "timestamp": pd.to_datetime([None, "2024-01-05", None, "2024-03-01", None]),
        }
    )
    log = fk.read_events(log, stages="pipeline4", missing_time="keep")
    early = fk.data.known_at(log, pd.Timestamp("2024-02-01"))
    assert sorted(early["lead_id"].unique()) == ["a"]  # b engaged later; c cannot be placed in time
    late = fk.data.known_at(log, pd.Timestamp("2024-03-01"))
    assert sorted(late["lead_id"].unique()) == ["a", "b", "c"]
    assert late.attrs["funnelkit"] is log.attrs["funnelkit"]


@pytest.mark.shared
def test_maven_past_view_counts_only_deals_engaged_by_then(maven_log):
    past = fk.data.known_at(maven_log, pd.Timestamp("2017-06-30 23:59:59"))
    engaged = maven_log.loc[(maven_log["stage"] == "Engaging") & (maven_log["timestamp"] <= "2017-06-30 23:59:59")]
    assert past["lead_id"].nunique() == engaged["lead_id"].nunique()


# -- process-mining names, ignore=, aliases and duplicates (issue #10 item 9) -------
def test_pm4py_column_names_are_recognised_and_said_so():
    df = pd.DataFrame({"case:concept:name": ["a", "a"], "concept:name": ["qualification", "won"],
                       "time:timestamp": pd.to_datetime(["2024-01-01", "2024-01-05"]),
                       "org:resource": ["ann", "bo"]})
    log = fk.read_events(df, stages="pipeline4")
    assert list(log.columns) == ["lead_id", "stage", "timestamp", "org:resource", "flag"]
    assert "'concept:name' -> 'stage'" in str(log.attrs["funnelkit"])
    # a mapping that names the stage column wins; concept:name then stays a segment
    other = fk.read_events(df, columns={"org:resource": "stage"})
    assert other["stage"].astype(str).tolist() == ["ann", "bo"] and "concept:name" in other.columns


def test_ignore_leaves_out_and_counts_labels():
    df = pd.DataFrame({"lead_id": ["a", "a", "a", "b"],
                       "stage": ["qualification", "Auto-reminder sent", "meeting", "auto reminder sent"],
                       "timestamp": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]})
    log = fk.read_events(df, stages="pipeline4", ignore=["auto_reminder sent"])
    assert log["stage"].astype(str).tolist() == ["qualification", "meeting"]
    rep = log.attrs["funnelkit"]
    assert rep.ignored == {"Auto-reminder sent": 1, "auto reminder sent": 1} and rep.rows_read == 4
    assert "Left out 2 events" in str(rep)
    with pytest.raises(InvalidEventLogError, match="did you mean 'meeting'") as err:
        fk.read_events(df, ignore=["meting"])
    assert err.value.kinds == ["unknown_label"]
    # row numbers in errors stay those of the input, not of what is left after ignore=
    bad = df.assign(timestamp=["2024-01-01", "x", "later", "2024-01-04"])
    with pytest.raises(InvalidEventLogError, match="row 3 \\('later'\\)") as err:
        fk.read_events(bad, ignore=["Auto-reminder sent"])
    assert err.value.kinds == ["bad_timestamp"] and err.value.problems[0].rows == (3,)


def test_two_labels_of_one_stage_at_the_same_time_are_merged_not_duplicates():
    ss = fk.get_stage_set("pipeline4").with_aliases({"Demo scheduled": "meeting"})
    df = pd.DataFrame({"lead_id": ["a", "a", "a", "b", "b"],
                       "stage": ["qualification", "meeting", "Demo scheduled", "meeting", "Demo scheduled"],
                       "timestamp": ["2024-01-01", "2024-01-02", "2024-01-02", "2024-01-03", "2024-01-04"],
                       "amount": [10, 10, 12, 5, 5]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        log = fk.read_events(df, stages=ss)
    assert len(log) == 4  # a's two meeting events became one; b's are at different times
    assert log.loc[log["lead_id"] == "a", "amount"].tolist() == [10, 10]  # the first row kept
    rep = log.attrs["funnelkit"]
    assert rep.merged == 1 and rep.duplicates_dropped == 0
    assert ("2 events of labels 'Demo scheduled' and 'meeting' mapped to stage 'meeting' at the same "
            "time (same lead) were merged into 1") in str(rep)
    # the same rows twice as read are still exact duplicates, with the warning
    with pytest.warns(DataWarning, match="dropped 1 exact duplicate"):
        twice = fk.read_events(pd.concat([df, df.iloc[[2]]]), stages=ss)
    assert len(twice) == 4 and twice.attrs["funnelkit"].merged == 1


def test_duplicates_are_judged_on_whole_rows_even_with_segments(tmp_path):
    # two payments on one day that differ only in a column not kept are two events
    text = ("lead_id,stage,timestamp,paid,channel\n"
            "a,pay,2024-01-01,10,web\na,pay,2024-01-01,20,web\nb,pay,2024-01-02,5,web\nb,pay,2024-01-02,5,web\n")
    p = write(tmp_path, text)
    with pytest.warns(DataWarning, match="dropped 1 exact duplicate event\\(s\\) \\(row 4\\)"):
        log = fk.read_events(p, segments=["channel"])
    assert log["lead_id"].tolist() == ["a", "a", "b"] and list(log.columns)[3] == "channel"
    df = pd.read_csv(p)
    with pytest.warns(DataWarning, match="dropped 1 exact"):
        assert len(fk.read_events(df, segments=[])) == 3
