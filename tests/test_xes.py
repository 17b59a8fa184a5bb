"""funnelkit.xes.read_xes on small hand-written XES logs (the BPIC 2020 files are
checked in test_real_logs_load.py)."""

import gzip
import warnings

import pandas as pd
import pytest

import funnelkit as fk
from funnelkit.exceptions import DataWarning, InvalidEventLogError
from funnelkit.xes import read_xes


def event(name, when, lifecycle=None, **attrs):
    lines = [f'<string key="concept:name" value="{name}"/>', f'<date key="time:timestamp" value="{when}"/>']
    if lifecycle:
        lines.append(f'<string key="lifecycle:transition" value="{lifecycle}"/>')
    for k, v in attrs.items():
        lines.append(f'<string key="{k}" value="{v}"/>')
    return "<event>" + "".join(lines) + "</event>"


def trace(name, *events, attrs=""):
    head = f'<string key="concept:name" value="{name}"/>' if name is not None else ""
    return f"<trace>{head}{attrs}{''.join(events)}</trace>"


def xes(*traces, header='<log xes.version="1.0" xmlns="http://www.xes-standard.org/">'):
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n'
        + header
        + '<extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>'
        + '<global scope="event"><string key="concept:name" value="__INVALID__"/></global>'
        + '<classifier name="Activity" keys="concept:name"/>'
        + '<string key="concept:name" value="tiny log"/>\n'
        + "\n".join(traces)
        + "\n</log>\n"
    )


def write(tmp_path, text, name="log.xes"):
    p = tmp_path / name
    if name.endswith(".gz"):
        p.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        p.write_text(text, encoding="utf-8")
    return p


TINY = xes(
    trace(
        "case 1",
        event("submitted", "2024-03-01T09:00:00.000+01:00", "start", **{"org:resource": "ann"}),
        event("submitted", "2024-03-01T09:30:00.000+01:00", "complete", **{"org:resource": "ann"}),
        event("approved", "2024-03-31T10:00:00.000+02:00", "COMPLETE", **{"org:resource": "bo"}),
        attrs='<float key="Amount" value="120.5"/><int key="Items" value="3"/>'
        '<boolean key="Urgent" value="true"/><date key="Opened" value="2024-02-28T23:30:00+00:00"/>'
        '<string key="org:resource" value="case owner"/>',
    ),
    trace(
        "case 2",
        event("submitted", "2024-03-02T08:00:00.000Z", "complete", **{"org:resource": "cy"}),
        attrs='<float key="Amount" value="7"/><boolean key="Urgent" value="false"/>',
    ),
)


def test_tiny_log_maps_traces_events_and_typed_attributes(tmp_path):
    log = read_xes(write(tmp_path, TINY))
    assert log["lead_id"].tolist() == ["case 1", "case 1", "case 2"]
    assert log["stage"].astype(str).tolist() == ["submitted", "approved", "submitted"]
    # offsets converted to the log's zone (UTC), the 'start' event left out
    assert log["timestamp"].tolist() == [
        pd.Timestamp("2024-03-01 08:30"),
        pd.Timestamp("2024-03-31 08:00"),
        pd.Timestamp("2024-03-02 08:00"),
    ]
    assert log["Amount"].dtype == "float64" and log["Amount"].tolist() == [120.5, 120.5, 7.0]
    assert (
        str(log["Items"].dtype) == "Int64"
        and log["Items"].tolist()[:2] == [3, 3]
        and log["Items"].isna().iloc[2]
    )
    assert log["Urgent"].astype(str).tolist() == ["True", "True", "False"]
    assert log["Opened"].dtype == "datetime64[ns]" and log["Opened"].iloc[0] == pd.Timestamp(
        "2024-02-28 23:30"
    )
    # a trace attribute with an event attribute's key is renamed, not merged
    assert log["org:resource"].astype(str).tolist() == ["ann", "bo", "cy"]
    assert log["case:org:resource"].astype(str).tolist()[0] == "case owner"
    rep = log.attrs["funnelkit"]
    assert rep.rows_read == 4 and rep.events == 3 and rep.leads == 2
    text = str(rep)
    assert "XES log 'tiny log': 2 traces, 4 events read" in text
    assert "trace attributes as columns: Amount, Items, Urgent, Opened, case:org:resource" in text
    assert "kept 3 'complete' events; left out 1 'start' event" in text


def test_lifecycle_none_keeps_every_event_and_paris_time(tmp_path):
    log = read_xes(write(tmp_path, TINY), lifecycle=None, tz="Europe/Paris")
    assert len(log) == 4
    assert log["timestamp"].iloc[0] == pd.Timestamp("2024-03-01 09:00", tz="Europe/Paris")
    assert log["lifecycle:transition"].astype(str).tolist()[:2] == ["start", "complete"]
    e = pytest.raises(InvalidEventLogError, read_xes, write(tmp_path, TINY), lifecycle="resume").value
    assert e.kinds == ["unknown_lifecycle"] and "'complete' x3" in str(e) and "lifecycle=None" in str(e)


def test_gzip_and_read_events_dispatch(tmp_path):
    plain = read_xes(write(tmp_path, TINY))
    gz = read_xes(write(tmp_path, TINY, "log.xes.gz"))
    pd.testing.assert_frame_equal(plain, gz, check_like=False)
    via = fk.read_events(tmp_path / "log.xes.gz")
    pd.testing.assert_frame_equal(plain, via)
    # gzip is recognised by content, not by name
    p = tmp_path / "renamed.xes"
    p.write_bytes(gzip.compress(TINY.encode()))
    assert len(read_xes(p)) == 3


def test_stage_sets_aliases_and_ignore_apply(tmp_path):
    path = write(tmp_path, TINY)
    ss = fk.StageSet("claims", ["submitted", "approved"])
    log = read_xes(path, stages=ss)
    assert log["flag"].astype(str).tolist() == ["", "", ""]
    log = read_xes(path, ignore=["Approved"])
    assert log["stage"].astype(str).tolist() == ["submitted", "submitted"]
    assert log.attrs["funnelkit"].ignored == {"approved": 1}
    e = pytest.raises(InvalidEventLogError, read_xes, path, ignore=["aproved"]).value
    assert "did you mean 'approved'" in str(e)
    # unknown labels: the error names the XES line of the events
    e = pytest.raises(InvalidEventLogError, read_xes, path, stages=["submitted"]).value
    assert e.kinds == ["unknown_stage"] and "at line 3" in str(e)


def test_columns_mapping_uses_a_case_attribute_as_amount(tmp_path):
    log = read_xes(write(tmp_path, TINY), columns={"Amount": "amount"})
    assert log["amount"].tolist() == [120.5, 120.5, 7.0]
    assert "Amount" not in log.columns


def test_malformed_xml_names_the_line(tmp_path):
    bad = TINY.replace('value="case owner"', 'value="R&D"')  # an unescaped '&' on line 3
    e = pytest.raises(InvalidEventLogError, read_xes, write(tmp_path, bad)).value
    assert e.kinds == ["malformed_xes"] and "line 3," in str(e) and "look at line 3" in e.problems[0].fix
    cut = gzip.compress(TINY.encode())[:-30]
    p = tmp_path / "cut.xes.gz"
    p.write_bytes(cut)
    e = pytest.raises(InvalidEventLogError, read_xes, p).value
    assert e.kinds == ["malformed_xes"] and "again" in e.problems[0].fix
    half = write(tmp_path, TINY[: len(TINY) // 2], "half.xes")
    e = pytest.raises(InvalidEventLogError, read_xes, half).value
    assert "ends early" in e.problems[0].fix


def test_not_xes_and_no_events(tmp_path):
    html = write(tmp_path, "<html><body>404</body></html>", "page.xes")
    e = pytest.raises(InvalidEventLogError, read_xes, html).value
    assert "<html>, not <log>" in str(e)
    empty = write(tmp_path, xes(trace("a")), "empty.xes")
    e = pytest.raises(InvalidEventLogError, read_xes, empty).value
    assert e.kinds == ["no_events"] and "1 trace and no events" in str(e)
    with pytest.raises(FileNotFoundError):
        read_xes(tmp_path / "missing.xes")


def test_values_wrong_for_their_type_name_the_line(tmp_path):
    bad = xes(trace("a", event("s", "2024-01-01T00:00:00Z"), attrs='<int key="Items" value="three"/>'))
    e = pytest.raises(InvalidEventLogError, read_xes, write(tmp_path, bad)).value
    assert e.kinds == ["malformed_xes"] and "'three'" in str(e) and "line 3" in str(e)
    bad_time = xes(trace("a", event("s", "yesterday")))
    e = pytest.raises(InvalidEventLogError, read_xes, write(tmp_path, bad_time, "t.xes")).value
    assert e.kinds == ["bad_timestamp"] and "'yesterday'" in str(e) and "1 at line 3" in str(e)


def test_nameless_traces_and_nested_attributes(tmp_path):
    nested = (
        '<event><string key="concept:name" value="s"><string key="meta" value="x"/></string>'
        '<date key="time:timestamp" value="2024-01-01T00:00:00Z"/>'
        '<list key="items"><values><int key="n" value="1"/></values></list></event>'
    )
    log = read_xes(write(tmp_path, xes(f'<trace><string key="concept:name" value="a"/>{nested}</trace>')))
    assert (
        log["stage"].astype(str).tolist() == ["s"]
        and "meta" not in log.columns
        and "items" not in log.columns
    )
    assert "2 nested, list or container attributes not read" in str(log.attrs["funnelkit"])
    e = pytest.raises(
        InvalidEventLogError,
        read_xes,
        write(tmp_path, xes(trace(None, event("s", "2024-01-01T00:00:00Z"))), "n.xes"),
    ).value
    assert e.kinds == ["empty_lead_id"] and "at line 3" in str(e)


def test_repeated_trace_names_are_one_lead_and_said_so(tmp_path):
    text = xes(trace("a", event("s", "2024-01-01T00:00:00Z")), trace("a", event("t", "2024-01-02T00:00:00Z")))
    log = read_xes(write(tmp_path, text))
    assert log["lead_id"].tolist() == ["a", "a"]
    assert "1 trace name occurs in more than one trace" in str(log.attrs["funnelkit"])


def test_exact_duplicate_events_still_warn(tmp_path):
    ev = event("s", "2024-01-01T00:00:00Z")
    with pytest.warns(DataWarning, match="1 exact duplicate"):
        log = read_xes(write(tmp_path, xes(trace("a", ev, ev))))
    assert len(log) == 1


def test_no_stray_warnings(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_xes(write(tmp_path, TINY))


def test_attribute_columns_line_up_with_their_events(tmp_path):
    # sparse attributes (present on some events only) stay on the right rows
    evs = [
        event("s", f"2024-01-{d:02d}T00:00:00Z", **({"note": f"n{d}"} if d % 3 == 0 else {}))
        for d in range(1, 10)
    ]
    log = read_xes(write(tmp_path, xes(trace("a", *evs))))
    got = log["note"].astype(object).tolist()
    assert [g for g in got if isinstance(g, str)] == ["n3", "n6", "n9"]
    assert [i for i, g in enumerate(got) if isinstance(g, str)] == [2, 5, 8]


def test_table_options_are_refused_for_xes(tmp_path):
    path = write(tmp_path, TINY)
    e = pytest.raises(InvalidEventLogError, fk.read_events, path, sep=";").value
    assert e.kinds == ["bad_option"] and "sep=" in str(e)
    e = pytest.raises(InvalidEventLogError, read_xes, path, tz="Europe/Pariss").value
    assert e.kinds == ["bad_timezone"]
    assert len(read_xes(path, tz="utc")) == 3
