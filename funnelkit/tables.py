"""Readable tables for notebooks and HTML reports.

:func:`report_table` formats a tidy result for people: thousands separators
on counts and amounts, percentages on rates and their interval bounds, dates
without seconds.  The data is not changed; a pandas ``Styler`` is returned.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["report_table", "column_format"]

_PERCENT_WORDS = ("conversion", "rate", "ci_low", "ci_high", "share", "probability", "coverage", "mape")


def column_format(name: str, dtype) -> str | None:
    """The format string funnelkit uses for a column, from its name and dtype.

    Examples
    --------
    Rates become percentages, counts and amounts get thousands separators,
    and columns that are not numbers are left alone (``None``):

    >>> import numpy as np
    >>> column_format("step_conversion", np.dtype("float64"))
    '{:.1%}'
    >>> column_format("entered", np.dtype("int64")).format(12345)
    '12,345'
    >>> column_format("median_days", np.dtype("float64")).format(12.345)
    '12.3'
    >>> column_format("stage", np.dtype("object")) is None
    True
    """
    low = str(name).lower()
    if pd.api.types.is_bool_dtype(dtype):
        return None
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return None
    if not pd.api.types.is_numeric_dtype(dtype):
        return None
    if any(w in low for w in _PERCENT_WORDS) or low.endswith("_pct"):
        return "{:.1%}"
    if pd.api.types.is_integer_dtype(dtype):
        return "{:,.0f}"
    if "amount" in low or "value" in low or "revenue" in low:
        return "{:,.0f}"
    if "days" in low or low.startswith(("median", "mean", "p75", "p90")):
        return "{:,.1f}"
    return "{:,.3g}"


def _date(v) -> str:
    return "–" if pd.isna(v) else v.strftime("%Y-%m-%d")


def report_table(data: pd.DataFrame, *, hide_index: bool = True, precision: dict | None = None):
    """Format a result table for reading (returns a ``Styler``).

    Parameters
    ----------
    data : DataFrame
    hide_index : bool
        Hide the (usually meaningless) integer index.
    precision : dict, optional
        Column -> format string, overriding the defaults.

    Examples
    --------
    >>> import pandas as pd
    >>> s = report_table(pd.DataFrame({"entered": [1200], "step_conversion": [0.25]}))
    >>> "25.0%" in s.to_html()
    True
    >>> t = report_table(pd.DataFrame({"n": [46], "when": pd.to_datetime(["2025-01-02"])})).to_html()
    >>> "2025-01-02" in t and ">46<" in t
    True
    """
    fmt = {c: column_format(c, data[c].dtype) for c in data.columns}
    fmt = {c: f for c, f in fmt.items() if f}
    for c in data.columns:  # dates in the same call: a second format() resets the others
        if pd.api.types.is_datetime64_any_dtype(data[c].dtype) and c not in fmt:
            fmt[c] = _date
    fmt.update(precision or {})
    styler = data.style.format(fmt, na_rep="–")
    if hide_index:
        styler = styler.hide(axis="index")
    return styler
