import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit.exceptions import InvalidEventLogError


# -- wide tables -----------------------------------------------------------
def hubspot_export():
    return pd.DataFrame(
        {
            "Record ID": ["1", "2", "3"],
            "Deal owner": ["Ann", "Bo", None],
            "Amount": [1000, 2500, None],
            "Date entered Qualification": ["2024-01-01", "2024-01-02", "2024-01-03"],
            "Date entered Meeting": ["2024-01-05", "", None],
            "Date entered Proposal": ["2024-01-09", "2024-01-07", None],
            "Date entered Closed Won": ["2024-01-20", None, None],
        }
    )


def test_from_wide_with_prefix_like_hubspot():
    log = fk.from_wide(hubspot_export(), lead="Record ID", prefix="Date entered ", amount="Amount",
                       stages="pipeline4")
    assert len(log) == 7  # blank dates mean the stage was not reached
    assert log["stage"].astype(str).tolist()[:4] == ["qualification", "meeting", "proposal", "won"]
    assert "Deal owner" in log.columns
    # lead 2 skipped the meeting: kept and flagged
    row = log[(log["lead_id"] == "2") & (log["stage"] == "proposal")]
    assert row["flag"].iloc[0] == "skipped_stage"
    f = fk.funnel.conversion(log)
    assert f["entered"].tolist() == [3, 2, 2, 1, 1]  # lead 2 inferred at meeting, lead 1 at close
    assert f.loc[f["step"] == "meeting", "inferred"].iloc[0] == 1
    rep = log.attrs["funnelkit"]
    assert rep.rows_read == 3 and "blank dates" in str(rep)


def test_from_wide_with_explicit_columns_and_errors():
    wide = hubspot_export()
    log = fk.from_wide(wide, lead="Record ID",
                       stage_columns={"Date entered Qualification": "qualification",
                                      "Date entered Proposal": "proposal"})
    assert sorted(log["stage"].astype(str).unique()) == ["proposal", "qualification"]
    with pytest.raises(InvalidEventLogError, match="'Date entered Demo'"):
        fk.from_wide(wide, lead="Record ID", stage_columns=["Date entered Demo"])
    with pytest.raises(InvalidEventLogError, match="no column starts with"):
        fk.from_wide(wide, lead="Record ID", prefix="Entered: ")


# -- stage tables (one table per page) -------------------------------------
def test_from_stage_tables_small():
    users = pd.DataFrame({"uid": [1, 2, 3], "date": ["2024-01-01", "2024-01-02", "2024-01-02"],
                          "device": ["Mobile", "Desktop", "Desktop"]})
    tables = {"home": pd.DataFrame({"uid": [1, 2, 3]}), "cart": pd.DataFrame({"uid": [1, 3]}),
              "paid": pd.DataFrame({"uid": [3]})}
    log = fk.from_stage_tables(tables, lead="uid", attributes=users, time="date")
    f = fk.funnel.conversion(log, by="device")
    desk = f[f["device"] == "Desktop"]["entered"].tolist()
    assert desk == [2, 1, 1]


def test_from_stage_tables_without_times_keeps_unknown():
    tables = {"a": pd.DataFrame({"id": ["x", "y"]}), "b": pd.DataFrame({"id": ["x"]})}
    log = fk.from_stage_tables(tables, lead="id")
    assert log["timestamp"].isna().all()
    assert fk.funnel.conversion(log)["entered"].tolist() == [2, 1]
    assert "unknown" in str(log.attrs["funnelkit"])


@pytest.mark.shared
def test_ecommerce_tables_give_the_published_funnel(ecommerce_log):
    f = fk.funnel.conversion(ecommerce_log)
    assert f["entered"].tolist() == [90_400, 45_200, 6_030, 452]
    by = fk.funnel.conversion(ecommerce_log, by="device")
    assert by[by["device"] == "Desktop"]["entered"].tolist() == [60_200, 30_100, 3_010, 150]
    assert by[by["device"] == "Mobile"]["entered"].tolist() == [30_200, 15_100, 3_020, 302]
    # the published ratios count every user (no censoring) ...
    classic = fk.funnel.conversion(ecommerce_log, by="device", as_of=None)
    last = classic[classic["step"] == "confirmation"].set_index("device")["overall_conversion"]
    assert last["Mobile"] == pytest.approx(0.0100, abs=5e-5)
    assert last["Desktop"] == pytest.approx(0.0025, abs=5e-5)
    # ... as of the data's end the last day's visitors have not matured (one-day horizon)
    now = by[by["step"] == "confirmation"].set_index("device")["overall_conversion"]
    assert now["Mobile"] == pytest.approx(0.0100, abs=2e-4) and now["Desktop"] == pytest.approx(0.0025, abs=2e-4)


# -- CRM snapshots ---------------------------------------------------------
def test_from_snapshot_small_states_what_is_unknown():
    snap = pd.DataFrame(
        {
            "id": ["p", "e", "w", "l"],
            "stage": ["Prospecting", "Engaging", "Won", "Lost"],
            "engaged": [None, "2017-01-02", "2017-01-03", "2017-01-04"],
            "closed": [None, None, "2017-02-01", "2017-02-02"],
            "value": [None, None, 900, 0],
        }
    )
    ss = fk.StageSet("crm", ["Prospecting", "Engaging"], won="Won", lost=["Lost"])
    log = fk.from_snapshot(snap, lead="id", stage="stage", stages=ss, amount="value",
                           dates={"Engaging": "engaged", "Won": "closed", "Lost": "closed"})
    got = log.groupby("lead_id")["stage"].apply(lambda s: list(s.astype(str))).to_dict()
    assert got == {"e": ["Prospecting", "Engaging"], "l": ["Prospecting", "Engaging", "Lost"],
                   "p": ["Prospecting"], "w": ["Prospecting", "Engaging", "Won"]}
    # the prospecting entry time is unknown: NaT, flagged, never invented
    pro = log[log["stage"] == "Prospecting"]
    assert pro["timestamp"].isna().all() and (pro["flag"] == "unknown_time").all()
    assert "no date in the snapshot" in str(log.attrs["funnelkit"])
    # the amount is today's value: only on the latest event, so the past cannot see it
    w = log[log["lead_id"] == "w"]
    assert w["amount"].isna().tolist() == [True, True, False]


def test_from_snapshot_unknown_stage_is_reported():
    snap = pd.DataFrame({"id": ["a"], "stage": ["Negotiating"], "d": ["2017-01-01"]})
    ss = fk.StageSet("crm", ["Prospecting", "Engaging"], won="Won", lost=["Lost"])
    with pytest.raises(InvalidEventLogError, match="'Negotiating'"):
        fk.from_snapshot(snap, lead="id", stage="stage", stages=ss, dates={"Engaging": "d"})
    with pytest.raises(InvalidEventLogError, match="'nope'"):
        fk.from_snapshot(snap, lead="id", stage="stage", stages=ss, dates={"Engaging": "nope"})


@pytest.mark.shared
def test_maven_snapshot_reproduces_published_facts(maven_log):
    out = fk.funnel.outcomes(maven_log)
    # 2,089 open deals: those past the learned horizon (117 days in Engaging) have stalled
    assert out.loc[0, ["won", "lost"]].tolist() == [4238, 2473]
    assert out.loc[0, "open"] + out.loc[0, "stalled"] == 2089
    # the published closed-deal win rate, won / (won + lost), by hand from the counts
    assert out.loc[0, "won"] / (out.loc[0, "won"] + out.loc[0, "lost"]) == pytest.approx(0.6315, abs=5e-5)
    lo, hi = out.loc[0, "ci_low"], out.loc[0, "ci_high"]
    assert lo < out.loc[0, "win_rate"] < hi and hi - lo < 0.03
    f = fk.funnel.conversion(maven_log)
    assert f["entered"].tolist() == [8800, 8300, 4238]
    rep = maven_log.attrs["funnelkit"]
    assert rep.rows_read == 8800 and rep.leads == 8800
    assert rep.flags == {"unknown_time": 8800}
    assert "1,425 leads" in str(rep)  # blank account on open rows, stated
    # the product-name trap is visible in the data, not silently merged
    assert "GTXPro" in set(maven_log["product"].astype(str))


@pytest.mark.shared
def test_maven_outcomes_by_product_add_up(maven_log):
    by = fk.funnel.outcomes(maven_log, by="product")
    assert by["won"].sum() == 4238 and by["leads"].sum() == 8800
    assert np.all((by["ci_low"] <= by["win_rate"]) & (by["win_rate"] <= by["ci_high"]))


def test_adapters_read_files_like_read_events(tmp_path):
    # a semicolon-separated Latin-1 wide export: detected, and said so in the load report
    p = tmp_path / "wide.csv"
    p.write_bytes("id;Owner;Date entered lead;Date entered demo\n1;Zoë;2024-01-02;2024-01-09\n".encode("latin-1"))
    log = fk.from_wide(p, lead="id", prefix="Date entered ")
    assert len(log) == 2 and log["Owner"].astype(str).iloc[0] == "Zoë"
    text = str(log.attrs["funnelkit"])
    assert "semicolons (detected)" in text and "Windows-1252" in text
