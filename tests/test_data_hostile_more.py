"""Hostile input, the data-loading cases a second sweep found (issue #12): each bad
input is a typed error naming the column or option, the rows and the fix; each
silent change is said in the load report."""

import datetime as dt
import warnings
import zoneinfo

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit.exceptions import DataFileNotFoundError, FunnelkitError, InvalidEventLogError

RAW = pd.DataFrame(
    {
        "lead_id": ["L1", "L1", "L2"],
        "stage": ["meeting", "proposal", "meeting"],
        "timestamp": ["2024-01-02", "2024-01-05", "2024-01-03"],
        "product": ["a", "b", "a"],
    }
)


@pytest.fixture
def csv_path(tmp_path):
    path = tmp_path / "events.csv"
    RAW.to_csv(path, index=False)
    return path


def error_of(call, *args, **kwargs) -> InvalidEventLogError:
    with pytest.raises(InvalidEventLogError) as err:
        call(*args, **kwargs)
    assert isinstance(err.value, FunnelkitError)
    return err.value


# 1 -----------------------------------------------------------------------------
@pytest.mark.parametrize("tz", [123, 0, 1.5, True])
def test_a_number_as_tz_is_an_error_naming_tz_and_an_iana_name(csv_path, tz):
    # before: tz=123 stored datetime64[ns, UTC+00:02:03], tz=0 aware UTC (not the naive UTC of "UTC")
    e = error_of(fk.read_events, csv_path, stages="pipeline4", tz=tz)
    assert e.kinds == ["bad_timezone"]
    assert f"tz={tz!r}" in e.problems[0].message and "not a time zone" in e.problems[0].message
    assert "'Europe/Paris'" in e.problems[0].fix
    assert e.source == str(csv_path)
    # UTC however given is the documented naive UTC; a tzinfo object is used as given
    for utc in ("UTC", "utc", " Utc", None, dt.UTC, zoneinfo.ZoneInfo("UTC")):
        assert fk.read_events(csv_path, stages="pipeline4", tz=utc)["timestamp"].dtype == "datetime64[ns]"
    paris = fk.read_events(csv_path, stages="pipeline4", tz=zoneinfo.ZoneInfo("Europe/Paris"))
    assert str(paris["timestamp"].dt.tz) == "Europe/Paris"


# 2 -----------------------------------------------------------------------------
def test_a_mapping_of_an_absent_column_is_an_error_even_when_the_target_exists():
    # before: {"Deal ID": "lead_id"} on data with its own lead_id column was ignored silently
    e = error_of(fk.read_events, RAW, columns={"Deal ID": "lead_id"}, stages="pipeline4")
    assert e.kinds == ["missing_column"]
    p = e.problems[0]
    assert p.column == "Deal ID"
    assert "'Deal ID'" in p.message and "'lead_id'" in p.message and "Columns present: lead_id" in p.message
    assert "columns=" in p.fix
    # a close name is suggested
    e = error_of(fk.read_events, RAW.rename(columns={"product": "Product"}), columns={"prodcut": "product"})
    assert "did you mean 'Product'?" in e.problems[0].fix
    # the process-mining names are a default, not a user's mapping: absent, they are no error
    pm = RAW.rename(
        columns={"lead_id": "case:concept:name", "stage": "concept:name", "timestamp": "time:timestamp"}
    )
    assert len(fk.read_events(pm, stages="pipeline4")) == 3
    assert len(fk.read_events(RAW, stages="pipeline4")) == 3


# 3 -----------------------------------------------------------------------------
def test_missing_time_other_than_error_or_keep_is_a_typed_error(csv_path, tmp_path):
    # before: a raw ValueError
    for source in (csv_path, RAW):
        e = error_of(fk.read_events, source, missing_time="maybe")
        assert e.kinds == ["bad_option"]
        assert "missing_time='maybe'" in e.problems[0].message
        assert "'error'" in e.problems[0].fix and "'keep'" in e.problems[0].fix
    xes = tmp_path / "log.xes"
    xes.write_text('<?xml version="1.0"?><log><trace><string key="concept:name" value="a"/></trace></log>')
    e = error_of(fk.read_xes, xes, missing_time="maybe")
    assert "missing_time='maybe'" in str(e)


# 4 -----------------------------------------------------------------------------
def test_a_corrupt_parquet_file_is_a_typed_error_naming_the_file(tmp_path):
    # before: pyarrow's ArrowInvalid
    path = tmp_path / "deals.parquet"
    path.write_bytes(b"PAR1" + b"junk" * 10 + b"PAR1")
    e = error_of(fk.read_events, path)
    assert e.kinds == ["bad_parquet"]
    assert "'deals.parquet' is not a readable Parquet file" in e.problems[0].message
    assert "ArrowInvalid" in e.problems[0].message  # pyarrow's reason
    assert "export" in e.problems[0].fix and e.source == str(path)


# 5 -----------------------------------------------------------------------------
def test_a_list_column_is_left_out_with_a_note_or_an_error_when_asked_for(tmp_path):
    # before: TypeError: unhashable type: 'numpy.ndarray' (Parquet) / 'list' (DataFrame)
    with_list = RAW.assign(tags=[[1, 2]] * len(RAW))
    path = tmp_path / "events.parquet"
    with_list.to_parquet(path)
    with_dict = RAW.assign(tags=[{"a": 1}] * len(RAW))
    for source in (path, with_list, with_dict):
        log = fk.read_events(source, stages="pipeline4")
        assert "tags" not in log.columns and "product" in log.columns
        assert any("Column 'tags' holds" in n and "left out" in n for n in log.attrs["funnelkit"].notes)
        e = error_of(fk.read_events, source, stages="pipeline4", segments=["product", "tags"])
        p = e.problems[0]
        assert e.kinds == ["nested_column"] and p.column == "tags" and p.rows == (1, 2, 3)
        assert "segment column 'tags' holds" in p.message and "segments=" in p.fix
    # in a CSV a list is text: an ordinary segment
    csv = tmp_path / "events.csv"
    with_list.to_csv(csv, index=False)
    assert fk.read_events(csv, stages="pipeline4")["tags"].astype(str).unique().tolist() == ["[1, 2]"]
    # duplicates are still judged on every column, lists included
    twice = pd.concat([with_list, with_list.iloc[[0]]], ignore_index=True)
    with pytest.warns(fk.DataWarning, match="dropped 1 exact duplicate"):
        assert len(fk.read_events(twice, stages="pipeline4")) == 3


# 6 -----------------------------------------------------------------------------
def test_a_missing_file_is_a_typed_file_not_found_error_with_close_names(tmp_path, csv_path):
    # before: a plain FileNotFoundError
    typo = tmp_path / "evnts.csv"
    readers = [
        lambda p: fk.read_events(p),
        lambda p: fk.read_xes(p),
        lambda p: fk.from_wide(p, lead="id", prefix="Date entered "),
        lambda p: fk.from_snapshot(p, lead="id", stage="st", stages="pipeline4", dates={}),
        lambda p: fk.from_stage_tables({"meeting": p}, lead="id"),
    ]
    for read in readers:
        with pytest.raises(DataFileNotFoundError) as err:
            read(typo)
        e = err.value
        assert isinstance(e, FunnelkitError) and isinstance(e, FileNotFoundError)
        assert e.path == str(typo) and e.close == ["events.csv"]
        assert str(typo) in str(e) and "did you mean 'events.csv'" in str(e) and "fix:" in str(e)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fk.read_events(tmp_path / "no_folder" / "events.csv")


# 7 -----------------------------------------------------------------------------
def test_from_wide_names_the_users_date_column_and_wide_row():
    # before: "[timestamp] row 5", the row of the reshaped table
    wide = pd.DataFrame(
        {
            "Record ID": ["a", "b", "c"],
            "Date entered qualification": ["2024-01-01", "2024-01-02", "2024-01-03"],
            "Date entered meeting": ["2024-01-05", "garbage", None],
            "Amount": ["10", "x", "30"],
        }
    )
    e = error_of(
        fk.from_wide, wide, lead="Record ID", prefix="Date entered ", stages="pipeline4", amount="Amount"
    )
    by_col = {p.column: p for p in e.problems}
    p = by_col["Date entered meeting"]
    assert p.rows == (2,) and "row 2 ('garbage')" in p.message and "correct those cells" in p.fix
    assert by_col["Amount"].rows == (2,) and "row 2 ('x')" in by_col["Amount"].message
    assert "timestamp" not in by_col and "amount" not in by_col


# 8 -----------------------------------------------------------------------------
def test_lead_ids_stripped_of_spaces_are_said_in_the_load_report():
    # before: " L1 " and "L1" merged with no word
    raw = pd.DataFrame(
        {
            "lead_id": [" L1 ", "L1", "L2 ", "L3"],
            "stage": ["meeting", "proposal", "meeting", "meeting"],
            "timestamp": ["2024-01-02", "2024-01-05", "2024-01-03", "2024-01-03"],
        }
    )
    log = fk.read_events(raw, stages="pipeline4")
    assert sorted(log["lead_id"].unique()) == ["L1", "L2", "L3"]
    (note,) = [n for n in log.attrs["funnelkit"].notes if "spaces" in n]
    assert "stripped on 2 events (2 distinct ids" in note
    assert "1 id then equals another id" in note and "' L1 ' and 'L1' are lead 'L1'" in note
    clean = fk.read_events(raw.assign(lead_id=raw["lead_id"].str.strip()), stages="pipeline4")
    assert not any("spaces" in n for n in clean.attrs["funnelkit"].notes)


# 9 -----------------------------------------------------------------------------
def test_won_and_lost_at_the_same_time_are_flagged_and_named():
    # before: the lead counted as lost with no word
    raw = pd.DataFrame(
        {
            "lead_id": ["L1", "L1", "L1", "L2", "L2"],
            "stage": ["meeting", "lost", "won", "meeting", "won"],
            "timestamp": ["2024-01-02", "2024-01-05", "2024-01-05", "2024-01-02", "2024-01-05"],
        }
    )
    for order in ([0, 1, 2, 3, 4], [0, 2, 1, 3, 4]):  # the rule does not depend on row order
        df = raw.iloc[order].reset_index(drop=True)
        log = fk.read_events(df, stages="pipeline4")
        l1 = log[log["lead_id"] == "L1"]
        assert l1["stage"].astype(str).tolist() == ["meeting", "won", "lost"]
        assert l1["flag"].astype(str).tolist()[-1] == "after_outcome"
        (note,) = [n for n in log.attrs["funnelkit"].notes if "same time" in n]
        assert "1 lead has a won and a lost event at the same time (lead 'L1': rows 2, 3)" in note
        assert "counts as lost" in note and "'after_outcome'" in note
        closed = fk.pipeline.snapshot(log, as_of="2024-01-06", include_closed=True)
        assert closed.set_index("lead_id").loc["L1", "outcome"] == "lost"
    # no tie, no note (and unknown times are no tie)
    log = fk.read_events(raw.iloc[[0, 1, 3, 4]], stages="pipeline4")
    assert not any("same time" in n for n in log.attrs["funnelkit"].notes)
    undated = raw.assign(timestamp=["2024-01-02", None, None, "2024-01-02", "2024-01-05"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = fk.read_events(undated, stages="pipeline4", missing_time="keep")
    assert not any("same time" in n for n in log.attrs["funnelkit"].notes)
    assert np.isnat(log["timestamp"].to_numpy()).sum() == 2
