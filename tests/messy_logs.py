"""Small hostile event logs shared by the tests that compare a lean code path with the
verbatim old one (tests/test_memory_*.py, tests/test_parallel_transitions.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

import funnelkit as fk
from funnelkit.exceptions import DataWarning

# TransitionModel settings and fit keywords the lean and chunked fits are compared under
MODEL_CASES = [
    ({}, {}),
    ({}, {"by": "product"}),
    ({}, {"by": ["source", "owner"], "as_of": "2025-03-31 12:00"}),
    ({"half_life": 90}, {"by": "product", "value": "amount"}),
    ({"calendar": "weekdays", "seed": 7}, {"as_of": "2025-06-30"}),
    ({"min_count": 50, "shrinkage": 20}, {"by": "owner", "stages": "pipeline4"}),
]


def in_paris(raw: pd.DataFrame) -> pd.DataFrame:
    """A hostile log's times as wall-clock text read in Europe/Paris (undated rows stay)."""
    raw = raw.astype({"lead_id": str})
    raw["timestamp"] = raw["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # exact duplicate rows of the random log dropped
        log = fk.read_events(raw, stages="pipeline4", tz="Europe/Paris", missing_time="keep")
    assert str(log["timestamp"].dt.tz) == "Europe/Paris"
    return log


def messy(seed: int, n: int, *, leads: int, tied: int) -> pd.DataFrame:
    """Shuffled rows, revisits in any order, ties (``tied`` leads at one instant, outcomes among
    them), undated events, missing segments and amounts, leads with only undated events, leads
    with only outcomes, events after an outcome."""
    rng = np.random.default_rng(seed)
    labels = list(fk.get_stage_set("pipeline4").labels)
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 60 * 24, n), unit="h")
    df = pd.DataFrame(
        {
            "lead_id": [f"L{x:04d}" for x in rng.integers(0, leads, n)],
            "stage": pd.Categorical(rng.choice(labels, n)),
            "timestamp": t,
            "amount": np.where(rng.random(n) < 0.3, np.nan, rng.integers(1, 900, n).astype(float)),
            "product": pd.Categorical(rng.choice(["a", "b", None], n)),
            "owner": pd.Series(rng.choice(["ann", "bo", None], n), dtype=object),
        }
    )
    df.loc[rng.random(n) < 0.06, "timestamp"] = pd.NaT
    ids = df["lead_id"].unique()
    df.loc[df["lead_id"].isin(ids[:5]), "timestamp"] = pd.NaT  # only undated events
    only_oc = df["lead_id"].isin(ids[5:12])
    df.loc[only_oc, "stage"] = rng.choice(["won", "lost"], int(only_oc.sum()))  # only outcomes
    df.loc[df["lead_id"].isin(ids[12:12 + tied]), "timestamp"] = pd.Timestamp("2024-01-02 00:00")  # ties
    return df.sample(frac=1, random_state=seed).reset_index(drop=True)


def no_lost_outcome_log() -> pd.DataFrame:
    """400 visitors of an A/B test, clicked > bought, no lost outcome (a 30-day horizon):
    100 buy after 3 days, 50 after 60 (past the horizon), the rest never."""
    rows = []
    base = pd.Timestamp("2024-01-01")
    for i in range(400):
        t = base + pd.Timedelta(hours=12 * i)
        rows.append((f"V{i:03d}", "clicked", t, "ab"[i % 2]))
        if i < 100:
            rows.append((f"V{i:03d}", "bought", t + pd.Timedelta(days=3), "ab"[i % 2]))
        elif i < 150:
            rows.append((f"V{i:03d}", "bought", t + pd.Timedelta(days=60), "ab"[i % 2]))
    raw = pd.DataFrame(rows, columns=["lead_id", "stage", "timestamp", "variant"])
    return fk.validate_events(raw, stages=fk.StageSet("ab", ["clicked", "bought"], horizon_days=30))


def bpic2020_first_step(path) -> tuple[fk.StageSet, list[str]]:
    """A BPIC 2020 log's one-step stage set (SUBMITTED by EMPLOYEE, won Payment Handled, lost
    every REJECTED) and the other labels, to leave out with ``ignore=``."""
    labels = set(fk.read_xes(path)["stage"].astype(str))
    submitted = next(lab for lab in labels if lab.endswith("SUBMITTED by EMPLOYEE"))
    rejected = sorted(lab for lab in labels if "REJECTED" in lab)
    ss = fk.StageSet("bpic", [submitted], won="Payment Handled", lost=rejected, infer_skipped=False)
    return ss, sorted(labels - set(ss.labels))


def fines_four_steps(shared_data) -> pd.DataFrame:
    """The road-fines log on its four steps (Create Fine > Send Fine > Insert Fine Notification >
    Add penalty; won Payment, lost Send for Credit Collection; no inferred steps), the other
    labels left out."""
    path = shared_data / "road_traffic_fines" / "events.parquet"
    labels = set(fk.read_events(path)["stage"].astype(str))
    ss = fk.StageSet("fines", ["Create Fine", "Send Fine", "Insert Fine Notification", "Add penalty"],
                     won="Payment", lost=["Send for Credit Collection"], infer_skipped=False)
    return fk.read_events(path, stages=ss, ignore=sorted(labels - set(ss.labels)))
