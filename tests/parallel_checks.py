"""Shared checks of the funnelkit.parallel tests: a parallel table equals the one-core table."""

from __future__ import annotations

import warnings

import pandas as pd
from pandas.testing import assert_frame_equal

from funnelkit import parallel as P


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Identical frames (values, dtypes, order) and identical attrs."""
    assert_frame_equal(a, b, check_exact=True)
    assert list(a.attrs) == list(b.attrs)
    for key in a.attrs:
        if isinstance(a.attrs[key], pd.DataFrame):  # stale's thresholds table
            assert_frame_equal(a.attrs[key], b.attrs[key], check_exact=True)
        else:
            assert str(a.attrs[key]) == str(b.attrs[key]), key


def check(pfun, fun, log, *, n_chunks=None, engine="serial", n_jobs=2, **kw):
    with warnings.catch_warnings(record=True) as wb:
        warnings.simplefilter("always")
        b = fun(log, **kw)
    with warnings.catch_warnings(record=True) as wa:
        warnings.simplefilter("always")
        a = pfun(log, n_chunks=n_chunks, engine=engine, n_jobs=n_jobs, **kw)
    assert P.last_run["path"] == "chunks", P.last_run
    same(a, b)
    assert [str(w.message) for w in wa] == [str(w.message) for w in wb]
    return a
