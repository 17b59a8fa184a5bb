"""Hostile input (issue #12, the data side): every case is a typed error naming
the column, the rows and the fix, or a documented reading with a note.
Nothing is silently wrong."""

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit.exceptions import FunnelkitError, InvalidEventLogError


def events(times=None, **cols):
    n = len(times) if times is not None else len(next(iter(cols.values())))
    base = {"lead_id": [f"L{i}" for i in range(n)], "stage": ["s"] * n}
    if times is not None:
        base["timestamp"] = times
    base.update(cols)
    return pd.DataFrame(base)


def error_of(call, *args, **kwargs) -> InvalidEventLogError:
    with pytest.raises(InvalidEventLogError) as err:
        call(*args, **kwargs)
    assert isinstance(err.value, FunnelkitError)
    return err.value


# -- day/month dates are read one way, or not at all ------------------------------
def test_day_first_dates_without_dayfirst_are_an_error_naming_rows():
    # pandas alone reads 01/02 as January 2 and 31/01 as January 31: two conventions
    df = events(["01/02/2024", "31/01/2024", "15/03/2024"])
    e = error_of(fk.read_events, df)
    assert e.kinds == ["ambiguous_dates"]
    p = e.problems[0]
    assert p.column == "timestamp" and 2 in p.rows and 3 in p.rows
    assert "'31/01/2024'" in p.message and "'01/02/2024'" in p.message
    assert "dayfirst=True" in p.fix
    log = fk.read_events(df, dayfirst=True)
    assert log.sort_values("lead_id")["timestamp"].tolist() == [
        pd.Timestamp("2024-02-01"),
        pd.Timestamp("2024-01-31"),
        pd.Timestamp("2024-03-15"),
    ]


def test_dates_that_read_both_ways_need_dayfirst():
    df = events(["01/02/2024", "03/04/2024"])
    e = error_of(fk.read_events, df)
    assert e.kinds == ["ambiguous_dates"] and "dayfirst=False" in e.problems[0].fix
    assert fk.read_events(df, dayfirst=False)["timestamp"].min() == pd.Timestamp("2024-01-02")
    assert fk.read_events(df, dayfirst=True)["timestamp"].min() == pd.Timestamp("2024-02-01")


def test_month_first_dates_are_read_month_first_with_a_note():
    log = fk.read_events(events(["01/02/2024", "01/31/2024", "05/05/2024"]))
    assert sorted(log["timestamp"]) == [
        pd.Timestamp("2024-01-02"),
        pd.Timestamp("2024-01-31"),
        pd.Timestamp("2024-05-05"),
    ]
    assert any("read month first" in n for n in log.attrs["funnelkit"].notes)


def test_dayfirst_contradicted_by_the_data_and_mixed_conventions():
    e = error_of(fk.read_events, events(["01/31/2024", "01/02/2024"]), dayfirst=True)
    assert e.kinds == ["ambiguous_dates"] and e.problems[0].rows == (1,)
    e = error_of(fk.read_events, events(["31/01/2024", "01/02/2024"]), dayfirst=False)
    assert e.problems[0].rows == (1,) and "dayfirst=True" in e.problems[0].fix
    e = error_of(fk.read_events, events(["31/01/2024", "01/31/2024"]), dayfirst=True)
    assert "mixes day-first" in str(e) and "ISO 8601" in e.problems[0].fix


def test_dayfirst_never_flips_iso_dates(tmp_path):
    # pandas' format="mixed" with dayfirst=True reads '2024-01-02' as February 1
    p = tmp_path / "e.csv"
    p.write_text("lead_id,stage,timestamp\na,s,2024-01-02\nb,s,31/01/2024 10:30\n")
    log = fk.read_events(p, dayfirst=True)
    assert log["timestamp"].tolist() == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-31 10:30")]


# -- the user's own flag column ------------------------------------------------
def test_users_flag_column_is_kept_as_flag_user():
    df = pd.DataFrame(
        {
            "lead_id": ["a", "a"],
            "stage": ["qualification", "proposal"],
            "timestamp": ["2024-01-01", "2024-01-02"],
            "flag": ["vip", ""],
        }
    )
    log = fk.read_events(df, stages="pipeline4")
    assert log["flag_user"].astype(str).tolist() == ["vip", ""]
    assert log["flag"].astype(str).tolist() == ["", "skipped_stage"]
    assert any("kept as 'flag_user'" in n for n in log.attrs["funnelkit"].notes)
    # asking for it by name as a segment keeps it too
    assert "flag_user" in fk.read_events(df, segments=["flag"]).columns


def test_a_loaded_log_can_be_validated_again(demo_log):
    # its flag column is funnelkit's own: recomputed, not renamed
    again = fk.validate_events(demo_log, stages="pipeline4")
    assert "flag_user" not in again.columns
    pd.testing.assert_series_equal(again["flag"], demo_log["flag"])


# -- epoch numbers in the time column ------------------------------------------------
def test_epoch_seconds_in_parquet_are_not_read_as_1970(tmp_path):
    when = pd.to_datetime(["2023-11-14 22:13:20", "2024-06-01 08:00:00"])
    secs = (when - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    path = tmp_path / "e.parquet"
    events(np.asarray(secs, dtype=np.int64)).to_parquet(path)
    log = fk.read_events(path)
    assert log["timestamp"].tolist() == list(when)
    assert any("epoch seconds" in n for n in log.attrs["funnelkit"].notes)
    # milliseconds by magnitude; epoch times are UTC instants, shown in tz
    ms = events(np.asarray(secs, dtype=np.int64) * 1000)
    paris = fk.read_events(ms, tz="Europe/Paris")
    assert paris["timestamp"].tolist() == list(when.tz_localize("UTC").tz_convert("Europe/Paris"))


def test_epoch_numbers_of_unclear_unit_ask_for_time_unit():
    df = events([17, 1_700_000_000])
    e = error_of(fk.read_events, df)
    assert e.kinds == ["numeric_timestamp"] and "time_unit='s'" in e.problems[0].fix
    told = fk.read_events(df, time_unit="s").sort_values("lead_id")
    assert told["timestamp"].tolist() == [
        pd.Timestamp("1970-01-01 00:00:17"),
        pd.Timestamp("2023-11-14 22:13:20"),
    ]
    ok = fk.read_events(events([1_700_000_000.5, 1_700_000_100.0]), time_unit="s")
    assert ok["timestamp"].iloc[0] == pd.Timestamp("2023-11-14 22:13:20.500")


def test_epoch_digits_in_a_csv_and_time_unit_on_dates(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("lead_id,stage,timestamp\na,s,1700000000000\nb,s,1700000100000\n")
    assert fk.read_events(p)["timestamp"].iloc[0] == pd.Timestamp("2023-11-14 22:13:20")
    e = error_of(fk.read_events, events(["2024-01-01"]), time_unit="s")
    assert e.kinds == ["bad_option"]
    e = error_of(fk.read_events, events(["2024-01-01"]), time_unit="days")
    assert "'s', 'ms', 'us', 'ns'" in e.problems[0].fix


# -- amounts ------------------------------------------------------------------
def test_infinite_amounts_are_an_error():
    e = error_of(
        fk.read_events, events(["2024-01-01", "2024-01-02", "2024-01-03"], amount=[10.0, np.inf, -np.inf])
    )
    assert e.kinds[0] == "bad_amount" and e.problems[0].rows == (2, 3)
    assert "infinite" in e.problems[0].message
    e = error_of(fk.read_events, events(["2024-01-01"], amount=["inf"]))
    assert e.kinds == ["bad_amount"]


# -- lead ids that became floats ---------------------------------------------------
def test_whole_float_lead_ids_read_as_integers_fractional_ones_are_an_error():
    df = pd.DataFrame(
        {
            "lead_id": [123.0, 123.0, 7.0],
            "stage": ["s", "t", "s"],
            "timestamp": ["2024-01-01", "2024-01-02", "2024-01-03"],
        }
    )
    log = fk.read_events(df)
    assert sorted(log["lead_id"].unique()) == ["123", "7"]
    assert any("'123'" in n for n in log.attrs["funnelkit"].notes)
    df.loc[2, "lead_id"] = 7.5
    e = error_of(fk.read_events, df)
    assert e.kinds == ["bad_lead_id"] and e.problems[0].rows == (3,) and "dtype" in e.problems[0].fix
    mixed = df.astype({"lead_id": object})
    mixed.loc[2, "lead_id"] = "x7"
    assert sorted(fk.read_events(mixed)["lead_id"].unique()) == ["123", "x7"]


# -- empty, encoded and separated files ------------------------------------------------
def test_empty_files_are_typed_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert error_of(fk.read_events, empty).kinds == ["empty_file"]
    header = tmp_path / "header.csv"
    header.write_text("lead_id,stage,timestamp\n")
    e = error_of(fk.read_events, header)
    assert e.kinds == ["empty_file"] and "no rows" in str(e)
    assert error_of(fk.read_events, pd.DataFrame(columns=["lead_id", "stage", "timestamp"])).kinds == [
        "no_events"
    ]


def test_latin1_is_detected_and_a_wrong_encoding_names_the_byte(tmp_path):
    p = tmp_path / "crm.csv"
    text = "lead_id,stage,timestamp,owner\na,s,2024-01-01,Zoë\nb,s,2024-01-02,José\n"
    p.write_bytes(text.encode("latin-1"))
    log = fk.read_events(p)
    assert sorted(log["owner"].astype(str)) == ["José", "Zoë"]
    assert any("not UTF-8" in n and "Windows-1252" in n for n in log.attrs["funnelkit"].notes)
    at = text.encode("latin-1").index("ë".encode("latin-1"))
    e = error_of(fk.read_events, p, encoding="utf-8")
    assert e.kinds == ["bad_encoding"] and f"byte offset {at}" in str(e) and "line 2" in str(e)
    assert "encoding='cp1252'" in e.problems[0].fix
    assert fk.read_events(p, encoding="latin-1")["owner"].astype(str).tolist() == ["Zoë", "José"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes(text.encode("utf-8-sig"))
    assert list(fk.read_events(bom).columns[:3]) == ["lead_id", "stage", "timestamp"]


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_separator_is_detected(tmp_path, sep):
    p = tmp_path / "e.csv"
    p.write_text(
        sep.join(["lead_id", "stage", "timestamp", "amount"])
        + "\n"
        + sep.join(["a", "s", "2024-01-01", "1,5"])
        + "\n"
    )
    # a decimal comma goes with these exports: the error says how to read it
    e = error_of(fk.read_events, p)
    assert e.kinds == ["bad_amount"] and "decimal=','" in e.problems[0].fix
    log = fk.read_events(p, decimal=",")
    assert log["lead_id"].tolist() == ["a"] and log["amount"].tolist() == [1.5]
    assert any("separated by" in n for n in log.attrs["funnelkit"].notes)


def test_a_wrong_sep_suggests_the_right_one(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("lead_id;stage;timestamp\na;s;2024-01-01\n")
    e = error_of(fk.read_events, p, sep=",")
    assert e.kinds == ["wrong_separator"] and "sep=';'" in e.problems[0].fix


# -- implausible dates --------------------------------------------------------------
def test_year_2999_is_an_error_naming_the_rows(tmp_path):
    df = events(["2024-01-01", "2999-01-02", "2024-01-03"])
    e = error_of(fk.read_events, df)
    assert e.kinds == ["implausible_timestamp"] and e.problems[0].rows == (2,)
    assert "'2999-01-02'" in str(e) and "missing_time='keep'" in e.problems[0].fix
    # the same from a Parquet datetime column (microseconds hold 2999; nanoseconds cannot)
    path = tmp_path / "e.parquet"
    df.assign(timestamp=pd.to_datetime(df["timestamp"]).astype("datetime64[us]")).to_parquet(path)
    e = error_of(fk.read_events, path)
    assert e.kinds == ["implausible_timestamp"] and e.problems[0].rows == (2,)


# -- time zones --------------------------------------------------------------------
def test_misspelt_time_zone_suggests_the_right_one():
    e = error_of(fk.read_events, events(["2024-01-01"]), tz="Europe/Pariss")
    assert e.kinds == ["bad_timezone"] and "'Europe/Paris'" in e.problems[0].fix
    assert (
        "'America/New_York'"
        in error_of(fk.read_events, events(["2024-01-01"]), tz="America/NewYork").problems[0].fix
    )


# -- column mappings that make two columns one ------------------------------------------
def test_mapping_two_columns_onto_one_name_is_an_error():
    df = pd.DataFrame({"a": ["x"], "b": ["y"], "stage": ["s"], "timestamp": ["2024-01-01"]})
    e = error_of(fk.read_events, df, columns={"a": "lead_id", "b": "lead_id"})
    assert e.kinds == ["duplicate_mapping"] and "'a' and 'b'" in str(e)


def test_mapping_onto_an_existing_column_is_an_error_whose_fix_works():
    df = pd.DataFrame({"deal": ["x"], "lead_id": ["old"], "stage": ["s"], "timestamp": ["2024-01-01"]})
    e = error_of(fk.read_events, df, columns={"deal": "lead_id"})
    assert e.kinds == ["mapping_clash"]
    fix = e.problems[0].fix
    assert "columns={'deal': 'lead_id', 'lead_id': 'lead_id_original'}" in fix
    log = fk.read_events(df, columns={"deal": "lead_id", "lead_id": "lead_id_original"})
    assert log["lead_id"].tolist() == ["x"] and log["lead_id_original"].astype(str).tolist() == ["old"]


def test_duplicate_column_names_are_an_error(tmp_path):
    df = pd.DataFrame([["a", "s", "2024-01-01", "t"]], columns=["lead_id", "stage", "timestamp", "stage"])
    e = error_of(fk.read_events, df)
    assert e.kinds == ["duplicate_column"] and "columns 2, 4" in str(e)
    p = tmp_path / "e.csv"
    p.write_text("lead_id,stage,timestamp,stage\na,s,2024-01-01,t\n")
    assert error_of(fk.read_events, p).kinds == ["duplicate_column"]


# -- datetime.date objects ----------------------------------------------------------
def test_date_objects_parse():
    df = events([dt.date(2024, 1, 1), dt.date(2024, 1, 2), None], amount=[1.0, 2.0, 3.0])
    log = fk.read_events(df, missing_time="keep")
    assert sorted(log["timestamp"].dropna()) == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02")]
    aware = events([dt.datetime(2024, 1, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=1)))])
    assert fk.read_events(aware)["timestamp"].iloc[0] == pd.Timestamp("2024-01-01 08:00")


# -- lean CSV reading ------------------------------------------------------------
def test_segments_read_only_the_columns_needed(tmp_path, monkeypatch):
    p = tmp_path / "e.csv"
    p.write_text("lead_id,stage,timestamp,product,notes,region\na,s,2024-01-01,X,long text,EU\n")
    seen = {}
    real = pd.read_csv

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(pd, "read_csv", spy)
    log = fk.read_events(p, segments=["product"])
    assert seen["usecols"] == ["lead_id", "stage", "timestamp", "product"] and seen["dtype"] is str
    assert list(log.columns) == ["lead_id", "stage", "timestamp", "product", "flag"]
    # a segment that is absent: every column is read so the error lists them all
    e = error_of(fk.read_events, p, segments=["prodcut"])
    assert "notes, region" in str(e)


def test_no_warning_is_left_unexplained():
    # hostile but valid input loads without stray pandas warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fk.read_events(events(["01/31/2024", "2024-02-01 10:00", "Feb 3 2024"]))


def test_decimal_comma_amounts():
    df = events(["2024-01-01", "2024-01-02", "2024-01-03"], amount=["1.234,5", "12,25", ""])
    e = error_of(fk.read_events, df)
    assert e.kinds == ["bad_amount"] and e.problems[0].rows == (1, 2) and "decimal=','" in e.problems[0].fix
    log = fk.read_events(df, decimal=",").sort_values("lead_id")
    assert log["amount"].tolist()[:2] == [1234.5, 12.25] and np.isnan(log["amount"].iloc[2])
    # a thousands comma with a decimal point is not a decimal comma: the plain fix
    e = error_of(fk.read_events, events(["2024-01-01"], amount=["1,500.00"]))
    assert "thousands separators" in e.problems[0].fix
