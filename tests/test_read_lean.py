"""Lean reading of large CSV files: pyarrow's parser gives the log pandas' gives.

Large files (``data.ARROW_MIN_BYTES`` and more) are parsed by pyarrow, with
stage and segment columns read as categoricals and plain times and amounts
typed as they are read.  Here the threshold is lowered so that small files,
hostile ones included, go through both readers; the logs (or the errors),
load reports and warnings must be the same.
"""

from __future__ import annotations

import gzip
import warnings

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import funnelkit as fk
from funnelkit import data as D

HEAD = "lead_id,stage,timestamp,amount,product\n"

FILES = {
    "plain": HEAD
    + "a,meeting,2024-01-02 10:00:00,100.0,X\na,won,2024-01-09,100.0,X\nb,meeting,2024-01-03,5.5,Y\n",
    "whole_amounts_blank_cells": HEAD
    + "a,meeting,2024-01-02,100,X\na,won,2024-01-09,,\nb,meeting,2024-01-03,7,Y\n",
    "mixed_amount_texts": HEAD
    + "a,meeting,2024-01-02,100,X\na,meeting,2024-01-02,100.0,X\nb,won,2024-01-03,7.50,Y\n",
    "duplicates": HEAD + "a,meeting,2024-01-02,100,X\na,meeting,2024-01-02,100,X\nb,won,2024-01-03,7,Y\n",
    "bom_and_crlf": "\ufeff"
    + HEAD.replace("\n", "\r\n")
    + "a,meeting,2024-01-02,1,X\r\nb,won,2024-01-03,2,Y\r\n",
    "quoted": HEAD + 'a,meeting,2024-01-02,1,"X, the big one"\nb,won,2024-01-03,2,"say ""hi"""\n',
    "quoted_newline": HEAD + 'a,meeting,2024-01-02,1,"two\nlines"\nb,won,2024-01-03,2,Y\n',
    "spaces": HEAD + "a , meeting,2024-01-02 ,1, X\nb,won, 2024-01-03,2,\n",
    "tz_aware": HEAD + "a,meeting,2024-01-02T10:00:00+01:00,1,X\nb,won,2024-01-03T10:00:00Z,2,Y\n",
    "mixed_tz": HEAD + "a,meeting,2024-01-02T10:00:00+01:00,1,X\nb,won,2024-01-03 10:00,2,Y\n",
    "day_first": HEAD + "a,meeting,31/01/2024,1,X\nb,won,01/02/2024,2,Y\n",
    "bad_date": HEAD + "a,meeting,2024-13-45,1,X\nb,won,2024-01-03,2,Y\n",
    "implausible": HEAD + "a,meeting,9999-12-31,1,X\nb,won,2024-01-03,2,Y\n",
    "epoch": HEAD + "a,meeting,1704190000,1,X\nb,won,1704290000,2,Y\n",
    "blank_time": HEAD + "a,meeting,,1,X\nb,won,2024-01-03,2,Y\n",
    "negative_amount": HEAD + "a,meeting,2024-01-02,-5.00,X\nb,won,2024-01-03,2,Y\n",
    "decimal_comma": HEAD + 'a,meeting,2024-01-02,"1.234,5",X\nb,won,2024-01-03,"12,25",Y\n',
    "text_amount": HEAD + "a,meeting,2024-01-02,$100,X\nb,won,2024-01-03,NaN,Y\n",
    "leading_zero_ids": HEAD + "007,meeting,2024-01-02,1,X\n7,won,2024-01-03,2,Y\n",
    "float_ids": HEAD + "1.0,meeting,2024-01-02,1,X\n2.5,won,2024-01-03,2,Y\n",
    "unknown_stage": HEAD + "a,meting,2024-01-02,1,X\nb,won,2024-01-03,2,Y\n",
    "blank_stage_and_id": HEAD + ",meeting,2024-01-02,1,X\nb,,2024-01-03,2,Y\n",
    "short_row": HEAD + "a,meeting,2024-01-02,1\nb,won,2024-01-03,2,Y\n",
    "long_row": HEAD + "a,meeting,2024-01-02,1,X,extra\nb,won,2024-01-03,2,Y\n",
    "empty_header_name": "lead_id,stage,timestamp,,product\na,meeting,2024-01-02,1,X\n",
    "flag_column": "lead_id,stage,timestamp,flag\na,meeting,2024-01-02,hot\nb,won,2024-01-03,\n",
    "semicolons": "lead_id;stage;timestamp;amount\na;meeting;2024-01-02;1,5\nb;won;2024-01-03;2\n",
    "pm4py_names": "case:concept:name,concept:name,time:timestamp,org:resource\n"
    "a,meeting,2024-01-02,ann\nb,won,2024-01-03,bob\n",
    "numeric_segment": HEAD + "a,meeting,2024-01-02,1,10\nb,won,2024-01-03,2,9\n",
    "header_only": HEAD,
}

OPTIONS = [{}, {"stages": "pipeline4"}, {"stages": "pipeline4", "segments": ["product"]}]


def _load(path, threshold, kw, monkeypatch):
    monkeypatch.setattr(D, "ARROW_MIN_BYTES", threshold)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            out = fk.read_events(path, **kw)
        except Exception as exc:
            out = exc
    return out, [f"{w.category.__name__}: {w.message}" for w in seen]


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("kw", OPTIONS)
def test_arrow_and_pandas_readers_give_the_same_log(tmp_path, monkeypatch, name, kw):
    text = FILES[name]
    if name in ("semicolons", "pm4py_names", "flag_column") and kw.get("segments"):
        pytest.skip("no product column")
    path = tmp_path / f"{name}.csv"
    path.write_text(text, encoding="utf-8")
    kw = dict(kw)
    if name == "decimal_comma":
        kw["decimal"] = ","
    if name == "epoch":
        kw["time_unit"] = "s"
    if name == "blank_time":
        kw["missing_time"] = "keep"
    a, wa = _load(path, 0, kw, monkeypatch)
    b, wb = _load(path, 1 << 40, kw, monkeypatch)
    assert type(a) is type(b)
    if isinstance(b, Exception):
        assert str(a) == str(b)
    else:
        assert_frame_equal(a, b, check_exact=True)
        assert str(a.attrs) == str(b.attrs)
    assert wa == wb


def test_lean_columns_are_typed_and_categorical(tmp_path, monkeypatch):
    log = fk.datasets.make_events(2000, seed=1)
    path = tmp_path / "events.csv.gz"
    with gzip.open(path, "wt") as fh:
        log.to_csv(fh, index=False)
    monkeypatch.setattr(D, "ARROW_MIN_BYTES", 0)
    raw = D._read_table(path, progress=True)
    assert isinstance(raw["stage"].dtype, pd.CategoricalDtype)
    assert isinstance(raw["owner"].dtype, pd.CategoricalDtype)
    assert list(raw["owner"].cat.categories) == sorted(log["owner"].astype(str).unique())
    assert raw["timestamp"].dtype == "datetime64[ns]" and raw["amount"].dtype == "float64"
    assert raw["lead_id"].dtype == "str"
    got = fk.read_events(path, stages="pipeline4")
    monkeypatch.setattr(D, "ARROW_MIN_BYTES", 1 << 40)
    want = fk.read_events(path, stages="pipeline4")
    assert_frame_equal(got, want, check_exact=True)
    assert str(got.attrs) == str(want.attrs)


def test_parquet_reads_only_the_columns_used(tmp_path, monkeypatch):
    log = fk.datasets.load_demo(n_leads=200)
    path = tmp_path / "events.parquet"
    frame = log.drop(columns="flag").assign(notes="long text")
    frame.attrs = {}
    frame.to_parquet(path)
    seen = {}
    real = pd.read_parquet

    def spy(*args, **kwargs):
        seen.setdefault("columns", kwargs.get("columns"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", spy)
    got = fk.read_events(path, stages="pipeline4", segments=["product"])
    assert seen["columns"] == ["lead_id", "stage", "timestamp", "amount", "product"]
    assert list(got.columns) == ["lead_id", "stage", "timestamp", "amount", "product", "flag"]
