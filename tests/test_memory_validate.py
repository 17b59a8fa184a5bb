"""validate_events' leaner internals give what the plain pandas expressions gave.

The memory work on ``validate_events`` (see benchmarks/bench_read.py) replaced
per-cell text work on categorical columns, the sorted factorization of lead
ids, the duplicate search and the per-lead group-bys of the flags with
leaner equivalents.  Each is checked here against the expression it
replaced, on data chosen to reach its corners; the log itself is checked
against a reference built the old way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import funnelkit as fk
from funnelkit import data as D

CATEGORICALS = [
    pd.Series(
        pd.Categorical([" a", "b ", None, "a", "  ", "c"], categories=["zz", " a", "a", "b ", "  ", "c"])
    ),
    pd.Series(pd.Categorical([None, None], categories=["x"])),
    pd.Series(pd.Categorical(["B", "a", "b", "é", "Z"])),
    pd.Series(pd.Categorical(np.array(["q", " q", None], dtype=object))),
    pd.Series(pd.Categorical([3, 1, None, 10])),  # not text: the per-cell path
    pd.Series(pd.Categorical([True, False])),
    pd.Series(["x ", None, " y"], dtype="str"),
]


@pytest.mark.parametrize("s", CATEGORICALS)
def test_stripped_labels_and_blank_mask_match_per_cell_text(s):
    want = pd.Categorical(s.astype("string").str.strip())
    got = D._stripped_labels(s)
    assert got.dtype == want.dtype
    assert got.codes.dtype == want.codes.dtype
    assert got.equals(want)
    blank = s.isna().to_numpy() | (s.astype("string").str.strip() == "").fillna(False).to_numpy(bool)
    np.testing.assert_array_equal(D._blank_mask(s), blank)


@pytest.mark.parametrize("dtype", ["str", object])
def test_sorted_codes_match_sorted_factorize(dtype):
    rng = np.random.default_rng(0)
    ids = pd.Series(rng.choice(["b", "a", "B", "é", "a1", "10", "9", "z z"], 200), dtype=dtype)
    codes, n = D._sorted_codes(ids)
    want, uniques = pd.factorize(ids, sort=True)
    np.testing.assert_array_equal(codes, want)
    assert n == len(uniques)


def test_shared_keys_is_a_superset_of_duplicated():
    rng = np.random.default_rng(1)
    keys = [rng.integers(0, 30, 5000), rng.integers(0, 3, 5000), rng.integers(-5, 5, 5000) * 10**12]
    got = D._shared_keys(*keys)
    want = pd.DataFrame({i: k for i, k in enumerate(keys)}).duplicated(keep=False).to_numpy()
    assert (got | ~want).all()  # every duplicated row is marked
    unique = [np.arange(100), np.zeros(100, dtype=np.int64), np.arange(100) * 7]
    assert not D._shared_keys(*unique).any()


def _old_flags(order, lead_codes, n_steps, won):
    """The group-by computation _sort_and_flag used before (rows already sorted)."""
    is_outcome = (order == -1) | ((order == n_steps - 1) & won)
    start = np.r_[True, lead_codes[1:] != lead_codes[:-1]]
    grp = np.cumsum(start) - 1
    cm = pd.Series(order).groupby(grp).cummax().to_numpy()
    prev_max = np.r_[-1, cm[:-1]]
    prev_max[start] = -1
    oc = pd.Series(is_outcome.astype(np.int64)).groupby(grp).cumsum().to_numpy()
    prev_oc = np.r_[0, oc[:-1]]
    prev_oc[start] = 0
    step = order >= 0
    flag = np.zeros(len(order), dtype=np.int8)
    flag[step & (order > prev_max + 1)] = 1
    flag[step & (order < prev_max) & (prev_max >= 0)] = 2
    flag[prev_oc > 0] = 3
    return flag


def test_flags_equal_the_group_by_computation():
    rng = np.random.default_rng(2)
    n = 20_000
    stages = ["qualification", "meeting", "proposal", "close", "won", "lost"]
    raw = pd.DataFrame(
        {
            "lead_id": rng.integers(0, 3000, n).astype(str),
            "stage": rng.choice(stages, n, p=[0.3, 0.25, 0.2, 0.1, 0.05, 0.1]),
            "timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 50, n), unit="D"),
        }
    ).drop_duplicates()
    log = fk.validate_events(raw, stages="pipeline4")
    st = D.log_stage_set(log)
    order = D.stage_order(log, st)
    lead_codes = pd.factorize(log["lead_id"], sort=True)[0]
    want = _old_flags(order, lead_codes, len(st.steps), st.won is not None)
    np.testing.assert_array_equal(log["flag"].cat.codes.to_numpy(), want)
    assert set(log["flag"].astype(str)) >= {"", "skipped_stage", "moved_back", "after_outcome"}


def test_log_equals_the_reference_built_the_old_way():
    """Sorted by (lead, time, stage order; lost after steps at equal times), stable."""
    raw = fk.datasets.make_events(3000, seed=4)
    raw = raw.sample(frac=1, random_state=5).reset_index(drop=True)
    raw["stage"] = raw["stage"].astype("category")  # as the lean CSV reader gives it
    log = fk.validate_events(raw, stages="pipeline4")
    assert log["lead_id"].dtype == pd.Series(np.array(["a"], dtype=object)).dtype
    st = D.log_stage_set(log)
    ref = raw.assign(lead_id=raw["lead_id"].astype(str), timestamp=raw["timestamp"].astype("datetime64[ns]"))
    o = D.stage_order(ref, st)
    ref = ref.assign(_o=np.where(o == -1, 2**31 - 1, o), _l=pd.factorize(ref["lead_id"], sort=True)[0])
    ref = ref.iloc[np.lexsort((ref["_o"], ref["timestamp"].to_numpy().view(np.int64), ref["_l"]))]
    np.testing.assert_array_equal(log["lead_id"].to_numpy(), ref["lead_id"].to_numpy())
    np.testing.assert_array_equal(log["timestamp"].to_numpy(), ref["timestamp"].to_numpy())
    np.testing.assert_array_equal(log["stage"].astype(str).to_numpy(), ref["stage"].astype(str).to_numpy())
