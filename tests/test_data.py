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
    ny = fk.read_events(df, tz="America/New_York")
    assert ny["timestamp"].iloc[0] == pd.Timestamp("2024-03-01 03:00")


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
