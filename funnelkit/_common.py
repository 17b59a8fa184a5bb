"""Small helpers shared by the views (funnel, pipeline, transitions, forecast).

Base layer: knows only the exceptions.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .exceptions import FunnelkitError, InvalidEventLogError, Problem

#: int64 view of NaT: unknown times sort first.
NAT = np.iinfo(np.int64).min
#: nanoseconds in a day.
DAY_NS = 86_400 * 10**9
_DATE_ONLY = re.compile(r"^\s*\d{4}-\d{1,2}-\d{1,2}\s*$")


def as_list(by) -> list[str]:
    """``None`` -> ``[]``, ``"a"`` -> ``["a"]``, any sequence -> a list."""
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def require_columns(df: pd.DataFrame, cols: Sequence[str], hint: str) -> None:
    """Raise one InvalidEventLogError naming every missing column and those present."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InvalidEventLogError(
            [
                Problem(
                    "missing_column",
                    c,
                    f"column {c!r} is not in the log. Columns present: "
                    f"{', '.join(map(str, df.columns))}.",
                    hint,
                )
                for c in missing
            ]
        )


def parse_as_of(value, *, name: str = "as_of", error: type[FunnelkitError] = FunnelkitError) -> pd.Timestamp:
    """A date or time as a tz-naive Timestamp; a date without a time means the end of that day.

    Raises ``error`` (a FunnelkitError subclass) for a missing, unparseable or
    timezone-aware value.

    Examples
    --------
    >>> parse_as_of("2025-06-30")
    Timestamp('2025-06-30 23:59:59.999999999')
    >>> parse_as_of("2025-06-30 12:00")
    Timestamp('2025-06-30 12:00:00')
    """
    if value is None:
        raise error(f"{name} is required.")
    end_of_day = False
    if isinstance(value, str):
        end_of_day = bool(_DATE_ONLY.match(value))
    elif isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        end_of_day = True
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise error(f"{name}={value!r} is not a date: {exc}") from exc
    if ts is pd.NaT or pd.isna(ts):
        raise error(f"{name}={value!r} is not a date.")
    if ts.tz is not None:
        raise error(
            f"{name}={value!r} has a timezone, but event logs are tz-naive (wall-clock time in "
            "the log's timezone). Pass a naive time, e.g. pd.Timestamp(...).tz_convert(tz)"
            ".tz_localize(None)."
        )
    if end_of_day:
        ts = ts.normalize() + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    return ts.as_unit("ns")


def known_mask(lead_codes: np.ndarray, t_ns: np.ndarray, as_of_ns: int) -> np.ndarray:
    """Events known at ``as_of_ns``: the one as-of rule, over integer arrays.

    Dated events at or before ``as_of_ns``; undated events (``NAT``) of the
    leads that have a dated event at or before it; and, when ``as_of_ns`` is
    at or after the last dated event, the undated events of leads with no
    dated event at all (a snapshot's undated deals exist at its end).
    :func:`funnelkit.data.known_at` applies the same rule to a DataFrame.

    Examples
    --------
    >>> codes = np.array([0, 0, 1, 1, 2])
    >>> t = np.array([NAT, 5, NAT, 9, NAT])
    >>> known_mask(codes, t, 6).tolist()
    [True, True, False, False, False]
    >>> known_mask(codes, t, 9).tolist()
    [True, True, True, True, True]
    """
    codes = np.asarray(lead_codes, dtype=np.int64)
    t = np.asarray(t_ns, dtype=np.int64)
    dated = t != NAT
    upto = dated & (t <= as_of_ns)
    ok = codes >= 0
    n = int(codes.max()) + 1 if codes.size and ok.any() else 0
    known = np.bincount(codes[upto & ok], minlength=n) > 0
    n_dated = np.bincount(codes[dated & ok], minlength=n)
    at_end = (not dated.any()) or as_of_ns >= int(t[dated].max())
    keep_lead = known | ((n_dated == 0) & at_end)
    return upto | (~dated & ok & keep_lead[np.maximum(codes, 0)])
