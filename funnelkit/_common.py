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


def time_zone(values):
    """The time zone of a datetime column, Series or Timestamp; ``None`` when naive.

    Examples
    --------
    >>> time_zone(pd.Series(pd.to_datetime(["2024-03-01"]).tz_localize("Europe/Paris")))
    zoneinfo.ZoneInfo(key='Europe/Paris')
    >>> time_zone(pd.Series(pd.to_datetime(["2024-03-01"]))) is None
    True
    """
    if isinstance(values, pd.Timestamp):
        return values.tz
    return getattr(getattr(values, "dtype", None), "tz", None)


def parse_as_of(
    value, *, name: str = "as_of", error: type[FunnelkitError] = FunnelkitError, tz=None
) -> pd.Timestamp:
    """A date or time as a Timestamp; a date without a time means the end of that day.

    ``tz`` is the log's time zone (``None`` for a naive log).  For a naive log the
    result is naive; a timezone-aware value is then an error.  For a log with a
    zone, a naive date or time is read as wall-clock time in that zone (the end of
    that local day for a date; in the repeated hour of a clock change, the later
    of the two moments; in the skipped hour, the first moment after it), and an
    aware value is converted to it; the result is aware.

    Raises ``error`` (a FunnelkitError subclass) for a missing or unparseable
    value, or an aware value for a naive log.

    Examples
    --------
    >>> parse_as_of("2025-06-30")
    Timestamp('2025-06-30 23:59:59.999999999')
    >>> parse_as_of("2025-06-30 12:00")
    Timestamp('2025-06-30 12:00:00')
    >>> parse_as_of("2025-06-30", tz="Europe/Paris")
    Timestamp('2025-06-30 23:59:59.999999999+0200', tz='Europe/Paris')
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
    if ts.tz is not None and tz is None:
        raise error(
            f"{name}={value!r} has a timezone, but this log's times are tz-naive (wall-clock "
            "time in an unstated zone). Pass a naive time, e.g. pd.Timestamp(...).tz_convert(tz)"
            ".tz_localize(None), or load the log with fk.read_events(..., tz=zone)."
        )
    if ts.tz is not None:
        ts = ts.tz_convert(tz)
        if end_of_day:
            ts = ts.tz_localize(None)
    if end_of_day:
        ts = ts.normalize() + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    if tz is not None and ts.tz is None:
        ts = ts.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
    return ts.as_unit("ns")


def as_of_ns(value, *, tz=None, name: str = "as_of", error: type[FunnelkitError] = FunnelkitError) -> int:
    """:func:`parse_as_of` as integer nanoseconds since 1970 (UTC for a log with a zone).

    Examples
    --------
    >>> as_of_ns("1970-01-01 00:00:01")
    1000000000
    >>> as_of_ns("1970-01-01 01:00:01", tz="Europe/Paris")
    1000000000
    """
    return int(parse_as_of(value, name=name, error=error, tz=tz).value)


def to_datetimes(ns, tz=None):
    """Integer nanoseconds (UTC for a log with a zone; ``NAT`` unknown) as datetimes
    shown in the log's zone: a numpy datetime64 array for a naive log, an aware
    pandas array otherwise.

    Examples
    --------
    >>> to_datetimes(np.array([0, NAT]))
    array(['1970-01-01T00:00:00.000000000',                           'NaT'],
          dtype='datetime64[ns]')
    >>> to_datetimes(np.array([0]), "Europe/Paris")[0]
    Timestamp('1970-01-01 01:00:00+0100', tz='Europe/Paris')
    """
    a = np.asarray(ns, dtype=np.int64).view("datetime64[ns]")
    if tz is None:
        return a
    return pd.DatetimeIndex(a).tz_localize("UTC").tz_convert(tz).array


def wall_ns(ns, tz=None) -> np.ndarray:
    """Integer nanoseconds (UTC for a log with a zone) as wall-clock nanoseconds in the
    log's zone: what calendar days, weeks and months are cut on.  Identity for a
    naive log; ``NAT`` stays ``NAT``.

    Examples
    --------
    >>> int(wall_ns(np.array([0]), "Europe/Paris")[0]) // 3_600_000_000_000
    1
    """
    a = np.asarray(ns, dtype=np.int64)
    if tz is None:
        return a
    idx = pd.DatetimeIndex(a.view("datetime64[ns]")).tz_localize("UTC").tz_convert(tz)
    return idx.tz_localize(None).as_unit("ns").asi8


def wall_clock(values):
    """A Timestamp or datetime Series as its naive wall-clock time in its own zone (unchanged
    when naive): what calendar periods (``to_period``) are cut on, without pandas' warning
    that the zone is dropped.

    Examples
    --------
    >>> wall_clock(pd.Timestamp("2025-03-31 23:30", tz="UTC").tz_convert("Europe/Paris"))
    Timestamp('2025-04-01 01:30:00')
    """
    if isinstance(values, pd.Series):
        return values.dt.tz_localize(None) if time_zone(values) is not None else values
    return values.tz_localize(None) if time_zone(values) is not None else values


def utc_naive(log: pd.DataFrame, time: str) -> pd.DataFrame:
    """The log with its time column as naive UTC when it has a zone (a shallow copy);
    the log itself when naive.  For code that works on instants, not calendars."""
    tz = time_zone(log[time]) if time in log.columns else None
    if tz is None:
        return log
    out = log.copy(deep=False)
    out[time] = log[time].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


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


def singular(noun: str) -> str:
    """The singular of a plural noun as reports write them (``"deals"`` -> ``"deal"``); other words as given."""
    return noun[:-1] if noun.endswith("s") else noun


def none_known(count, known):
    """Where there are ``count`` items and ``known`` of them have an amount, whether their sum is
    unknown: some items, none known.  Such a sum is NaN, never 0 (a log without amounts, or a
    CRM that gives a deal its value only when it closes).  Arrays or Series, element-wise."""
    return (count > 0) & (known == 0)
