"""The monthly report's numbers: month windows, segments and headline figures.

A monthly report looks at one segment (a product, a lead source...) in one
calendar month, *as of* a date (default: the end of the month): events after
the as-of date are ignored, so a report shows what was known then and a
rerun gives the same numbers.

Definitions used by every monthly report
----------------------------------------
* A lead belongs to a segment by its value on its **first** event (as in
  :mod:`funnelkit.funnel`).
* **Leads entered** in a month: leads whose first known event time falls in
  the month (the month's *cohort*).
* **Step conversions** are rates over *matured* leads only (a lead matures
  at a step once the step's horizon has passed since it entered it, or it
  was decided; see :mod:`funnelkit.funnel`), so the leads that entered a
  step this month cannot have a judged rate yet.  A report therefore shows,
  per step (:func:`step_rates`), the month's *volumes* - leads that reached
  the step in the month, how many of them moved on, dropped or are still in
  flight - beside two judged rates, each saying what it is judged on: the
  **latest judged month** (the most recent calendar month in which at most
  5% of the leads that entered the step have not matured: the rule
  :func:`funnelkit.funnel.leaks` uses) and **every matured lead** known at
  the as-of date (:func:`funnelkit.funnel.conversion`, the numbers of the
  funnel chart).  The headline's ``step:`` rows are the latest judged month,
  and its previous value the one the previous month's report judged.
* The previous month is measured at the same age (its as-of date is the
  same distance from its month), so a change compares like with like.
* **Won**, **lost**, **win rate** and **revenue**: leads whose outcome (their
  last won/lost event, :func:`funnelkit.funnel.outcomes`) happened in the
  month, whatever month they entered; the win rate is won / (won + lost) of
  those leads (every one is decided), with a Wilson interval; revenue is the
  amount of the leads won.  It is not :func:`funnelkit.funnel.outcomes`'
  ``win_rate`` (the funnel's estimate over matured leads of every month) nor
  its ``decided_win_rate`` (won / (won + lost + stalled) over all leads);
  the report shows those beside it, labelled.  A stage set without a lost
  outcome never marks a lead lost, so won / (won + lost) would be 100%: its
  month's losses are the leads that *stalled* in the month (the horizon of
  the step they sit at ran out: :func:`stalled_between`), shown as
  "Stalled", and its win rate is of the leads *decided* in the month.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .._common import singular, time_zone
from .._common import wall_clock as _wall
from ..data import (
    AMOUNT,
    LEAD,
    STAGE,
    TIME,
    from_snapshot,
    from_wide,
    known_at,
    log_stage_set,
    read_events,
    validate_events,
)
from ..exceptions import ReportError
from ..funnel import _goal_is_last_stage, _stalled_rows, conversion, lead_progress, leaks, outcomes, resolve_stages, trend
from ..stages import StageSet, get_stage_set
from ..stats import proportion_ci
from .formatting import NumberFormat

__all__ = [
    "CHECK_MONTHS",
    "DEMO_DATA",
    "STALE_AFTER",
    "STEP_COLUMNS",
    "coverage_warnings",
    "MonthlyReport",
    "as_of_log",
    "stalled_between",
    "goal_as_won",
    "closed_between",
    "data_fingerprint",
    "entered_between",
    "headline",
    "headline_record",
    "headline_summary",
    "leaks_from_records",
    "leaks_to_records",
    "load_data",
    "month_window",
    "monthly_series",
    "parse_month",
    "past_month_ends",
    "previous_window",
    "segment_leaks",
    "segment_rows",
    "select_segment",
    "step_rates",
]

#: The ``data`` value that means "the bundled, generated demo event log".
DEMO_DATA = "demo"

#: Options of read_events a report passes on (whatever this version has), and the two other shapes.
_READ_OPTIONS = {name for name, p in inspect.signature(read_events).parameters.items()
                 if p.kind is p.KEYWORD_ONLY and name not in {"columns", "stages"}} | {"snapshot", "wide"}
#: How long after the data's last event an as-of date may be before a report warns (as pipeline.snapshot).
STALE_AFTER = pd.Timedelta(days=7)


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------
def load_data(
    data: str | Path | pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    stages: StageSet | str | None = None,
    read_options: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """Load a report's event log: a file, a DataFrame, or ``"demo"``.

    Parameters
    ----------
    data : path, DataFrame or ``"demo"``
        A CSV, Parquet or XES (``.xes``, ``.xes.gz``) event log; ``"demo"`` is the bundled demo data
        (:func:`funnelkit.datasets.load_demo`, generated, no file needed).
    columns : mapping, optional
        The file's column names mapped to ``lead_id``, ``stage``,
        ``timestamp``, ``amount`` (see :func:`funnelkit.read_events`).
    stages : StageSet, preset name or YAML path, optional
        The stage set the labels belong to.
    read_options : mapping, optional
        Further options of :func:`funnelkit.read_events`: ``tz``,
        ``dayfirst``, ``missing_time``, ``segments``; and for data that is not
        a long event log, its shape:

        * ``snapshot: {stage: <current-stage column>, dates: {<stage>: <date
          column>, ...}}`` - a CRM snapshot, read by
          :func:`funnelkit.from_snapshot` (the lead and amount columns are the
          ones ``columns`` maps to ``lead_id`` and ``amount``);
        * ``wide: {prefix: "Date entered "}`` or ``wide: {stage_columns:
          {<date column>: <stage>, ...}}`` - one date column per stage, read by
          :func:`funnelkit.from_wide`.

    Returns
    -------
    DataFrame
        A canonical event log.

    Raises
    ------
    ReportError
        If the file does not exist or an option is unknown.
    InvalidEventLogError
        If the data cannot be read as an event log.

    Examples
    --------
    >>> from funnelkit.reports import load_data
    >>> load_data("demo")["lead_id"].nunique()
    6000
    """
    opts = dict(read_options or {})
    unknown = sorted(set(opts) - _READ_OPTIONS)
    if unknown:
        raise ReportError(f"unknown read option(s) {unknown}; allowed: {sorted(_READ_OPTIONS)}.")
    if isinstance(data, str) and data == DEMO_DATA:
        from ..datasets import load_demo

        log = load_demo()
        if stages is not None and get_stage_set(stages) != log_stage_set(log):
            log = validate_events(log.drop(columns="flag"), stages=stages, source="funnelkit demo")
        return log
    if isinstance(data, pd.DataFrame):
        return validate_events(data, columns=columns, stages=stages, **opts)
    path = Path(data)
    if not path.is_file():
        raise ReportError(
            f"data file not found: {str(data)!r} (looked in {Path.cwd()}). Give an absolute path, "
            f"a path relative to the notebook's folder, or {DEMO_DATA!r} for the bundled demo data."
        )
    snap, wide = opts.pop("snapshot", None), opts.pop("wide", None)
    if snap is None and wide is None:
        return read_events(path, columns=columns, stages=stages, **opts)
    # other shapes: the lead (and amount) columns are those `columns` maps to lead_id (amount)
    inverse = {v: k for k, v in (columns or {}).items()}
    lead = inverse.get(LEAD)
    if lead is None or stages is None:
        raise ReportError(
            "a snapshot or wide table needs columns={<id column>: 'lead_id', ...} and a stage set."
        )
    if snap is not None:
        if not isinstance(snap, Mapping) or set(snap) != {"stage", "dates"}:
            raise ReportError("read_options snapshot: give {stage: <current-stage column>, dates: "
                              "{<stage>: <date column>, ...}}.")
        return from_snapshot(path, lead=lead, stage=snap["stage"], stages=stages, dates=dict(snap["dates"]),
                             amount=inverse.get(AMOUNT), segments=opts.get("segments"),
                             tz=opts.get("tz", "UTC"), dayfirst=opts.get("dayfirst"))
    if not isinstance(wide, Mapping) or not set(wide) <= {"prefix", "stage_columns"} or not wide:
        raise ReportError("read_options wide: give {prefix: 'Date entered '} or {stage_columns: "
                          "{<date column>: <stage>, ...}}.")
    return from_wide(path, lead=lead, prefix=wide.get("prefix"), stage_columns=wide.get("stage_columns"),
                     stages=stages, amount=inverse.get(AMOUNT), segments=opts.get("segments"),
                     tz=opts.get("tz", "UTC"), dayfirst=opts.get("dayfirst"))


def data_fingerprint(data: str | Path | pd.DataFrame) -> dict[str, str]:
    """Where a report's data came from and its SHA-256, for provenance.

    Returns
    -------
    dict
        ``source`` (absolute path, or a description) and ``sha256`` (of the
        file's bytes; for a DataFrame or the demo, of its CSV text).

    Examples
    --------
    >>> len(data_fingerprint("demo")["sha256"])
    64
    """
    digest = hashlib.sha256()
    if isinstance(data, pd.DataFrame) or (isinstance(data, str) and data == DEMO_DATA):
        if isinstance(data, pd.DataFrame):
            frame, source = data, "DataFrame"
        else:
            from ..datasets import load_demo

            frame, source = load_demo(), "funnelkit bundled demo data (generated, seed 42)"
        digest.update(frame.to_csv(index=False).encode("utf-8"))
        return {"source": source, "sha256": digest.hexdigest()}
    path = Path(data).resolve()
    if not path.is_file():
        raise ReportError(f"data file not found: {path}; correct the path (absolute, or relative to the "
                          "working folder).")
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"source": str(path), "sha256": digest.hexdigest()}


# ---------------------------------------------------------------------------
# months and windows
# ---------------------------------------------------------------------------
def parse_month(month: str | pd.Period | pd.Timestamp) -> pd.Period:
    """A calendar month from ``"YYYY-MM"`` (or a Period or Timestamp).

    Raises
    ------
    ReportError
        If the value is not a month.

    Examples
    --------
    >>> parse_month("2025-09")
    Period('2025-09', 'M')
    """
    if isinstance(month, pd.Period):
        return month.asfreq("M")
    if isinstance(month, pd.Timestamp):
        return month.to_period("M")
    text = str(month).strip()
    try:
        if len(text) != 7 or text[4] != "-":
            raise ValueError(text)
        return pd.Period(text, freq="M")
    except (ValueError, TypeError):
        raise ReportError(f"month {month!r} is not a month: write it as 'YYYY-MM', e.g. '2025-09'.") from None


def _local(ts: pd.Timestamp, tz) -> pd.Timestamp:
    """A wall-clock time in the log's zone ``tz`` (unchanged for a naive log)."""
    return ts if tz is None else ts.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")


def _bounds(period: pd.Period, tz=None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last instant of a calendar month, in the log's zone ``tz`` when it has one."""
    start = period.start_time.as_unit("ns")
    end = (period + 1).start_time.as_unit("ns")
    return _local(start, tz), _local(end, tz) - pd.Timedelta(1, "ns")


def month_window(
    month: str | pd.Period, as_of: str | pd.Timestamp | None = None, tz=None
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """First and last instant of a month, and the as-of date.

    Parameters
    ----------
    month : "YYYY-MM" or Period
    as_of : date, optional
        Default: the end of the month.  A date before the month starts is an
        error; a date inside the month gives a month-to-date report.
    tz : time zone, optional
        The log's zone (``funnelkit._common.time_zone(log["timestamp"])``):
        the month is its local calendar month, the Timestamps aware.

    Returns
    -------
    (start, end, as_of) : Timestamps

    Examples
    --------
    >>> month_window("2025-09")[1]
    Timestamp('2025-09-30 23:59:59.999999999')
    """
    period = parse_month(month)
    start, end = _bounds(period, tz)
    if as_of is None or (isinstance(as_of, str) and not as_of.strip()):
        return start, end, end
    try:
        stamp = pd.Timestamp(as_of)
    except (ValueError, TypeError):
        raise ReportError(f"as_of {as_of!r} is not a date: write it as 'YYYY-MM-DD'.") from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert(tz).tz_localize(None) if tz is not None else stamp.tz_localize(None)
    if stamp == stamp.normalize() and isinstance(as_of, str) and len(as_of.strip()) <= 10:
        stamp = stamp + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")  # a date means its whole day
    stamp = _local(stamp, tz)
    if stamp < start:
        raise ReportError(
            f"as_of {as_of!r} is before the month {period} starts; give a date on or after {start.date()}."
        )
    return start, end, stamp


def previous_window(
    month: str | pd.Period, as_of: str | pd.Timestamp | None = None, tz=None
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """The previous month's window, observed at the same age as ``month``.

    When ``as_of`` is at or after the end of ``month``, the previous month's
    as-of date is the same distance after the previous month's end; inside
    the month (month to date), it is the same distance from the start.

    Examples
    --------
    >>> previous_window("2025-09")[2]
    Timestamp('2025-08-31 23:59:59.999999999')
    """
    start, end, stamp = month_window(month, as_of, tz)
    p_start, p_end = _bounds(parse_month(month) - 1, tz)
    if stamp >= end:
        return p_start, p_end, p_end + (stamp - end)
    return p_start, p_end, min(p_start + (stamp - start), p_end)


# ---------------------------------------------------------------------------
# selections of a log
# ---------------------------------------------------------------------------
def select_segment(log: pd.DataFrame, column: str, value: object, *, lead: str = LEAD) -> pd.DataFrame:
    """All events of the leads whose first event has ``column == value``.

    Values are compared as text, so ``2024`` in a plan matches ``"2024"``
    in a CSV.

    Raises
    ------
    ReportError
        If the column is missing or no lead has the value (the message lists
        the values present and close matches).

    Examples
    --------
    >>> import funnelkit as fk
    >>> log = fk.datasets.load_demo()
    >>> sub = select_segment(log, "product", "Enterprise")
    >>> set(sub["product"].astype(str))
    {'Enterprise'}
    """
    if column not in log.columns:
        raise ReportError(
            f"segment column {column!r} is not in the data. Columns present: {', '.join(map(str, log.columns))}."
        )
    first = log.loc[~log[lead].duplicated(keep="first"), [lead, column]]
    text = first[column].astype("string")
    wanted = str(value)
    keep_leads = first.loc[(text == wanted).fillna(False).to_numpy(dtype=bool), lead]
    if keep_leads.empty:
        present = sorted(text.dropna().unique().tolist())
        close = difflib.get_close_matches(wanted, present, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        shown = ", ".join(map(repr, present[:20])) + (" ..." if len(present) > 20 else "")
        raise ReportError(f"no lead has {column} = {wanted!r}.{hint} Values present: {shown}.")
    return log.loc[log[lead].isin(set(keep_leads))]


def as_of_log(log: pd.DataFrame, as_of: pd.Timestamp, *, time: str = TIME) -> pd.DataFrame:
    """Events known at ``as_of`` (see :func:`funnelkit.data.known_at`): no lead from the future.

    Examples
    --------
    >>> import pandas as pd, funnelkit as fk
    >>> log = fk.datasets.load_demo()
    >>> known = as_of_log(log, pd.Timestamp("2025-06-30"))
    >>> len(known), known["lead_id"].nunique(), str(known["timestamp"].max())
    (13138, 4644, '2025-06-29 23:48:16')
    """
    return known_at(log, as_of, time=time)


def entered_between(
    log: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, *, lead: str = LEAD, time: str = TIME
) -> pd.DataFrame:
    """Events of the leads whose first known event time is in ``[start, end]``.

    Examples
    --------
    The leads that entered in September 2025, with all their events:

    >>> import pandas as pd, funnelkit as fk
    >>> log = fk.datasets.load_demo()
    >>> new = entered_between(log, pd.Timestamp("2025-09-01"), pd.Timestamp("2025-09-30 23:59:59"))
    >>> new["lead_id"].nunique(), str(new.groupby("lead_id")["timestamp"].min().min())
    (437, '2025-09-01 01:25:24')
    """
    if log.empty:
        return log
    first = log.groupby(lead, observed=True, sort=False)[time].min()
    leads = first.index[(first >= start) & (first <= end)]
    return log.loc[log[lead].isin(set(leads))]


def closed_between(
    log: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    stages: StageSet | str | None = None,
    lead: str = LEAD,
) -> pd.DataFrame:
    """Events of the leads whose outcome (last won/lost event) is in ``[start, end]``.

    Examples
    --------
    The leads won or lost in September 2025, with all their events:

    >>> import pandas as pd, funnelkit as fk
    >>> log = fk.datasets.load_demo()
    >>> closed = closed_between(log, pd.Timestamp("2025-09-01"), pd.Timestamp("2025-09-30 23:59:59"))
    >>> closed["lead_id"].nunique(), int((closed["stage"] == "won").sum()), int((closed["stage"] == "lost").sum())
    (387, 58, 329)
    """
    if log.empty:
        return log
    # only the outcome and its time are needed: no horizon is learned (on a snapshot's undated first stage
    # learning one would warn about a horizon nothing here uses)
    prog = lead_progress(log, stages=stages, lead=lead, stale_after=None)
    closed = prog["closed_at"]
    leads = prog.loc[(prog["outcome"] != "open") & (closed >= start) & (closed <= end), lead]
    return log.loc[log[lead].isin(set(leads))]


# ---------------------------------------------------------------------------
# step rates: the month's volumes and the latest judged rate
# ---------------------------------------------------------------------------
#: Columns of :func:`step_rates`.
STEP_COLUMNS = [
    "transition", "step", "next_step", "entered", "moved_on", "dropped", "in_flight",
    "judged_month", "judged_leads", "judged_converted", "rate", "ci_low", "ci_high",
    "all_matured", "all_converted", "all_rate", "all_ci_low", "all_ci_high",
]
#: Share of a month's leads at a step that may still be young for the month to be judged (as funnel.leaks).
_YOUNG_SHARE = 0.05


def _judged(tr: pd.DataFrame) -> pd.DataFrame:
    """Per transition: the latest month whose leads at the step have (nearly) all matured."""
    t = tr.loc[tr["period"].notna()]
    young = t["entered"] - t["matured"]
    ok = t.loc[(young <= _YOUNG_SHARE * t["entered"]) & (t["matured"] > 0)]
    return ok.sort_values("period").groupby("transition", observed=True, sort=False).tail(1).set_index("transition")


def step_rates(
    log: pd.DataFrame,
    *,
    month: str | pd.Period,
    as_of: str | pd.Timestamp | None = None,
    stages: StageSet | str | None = None,
) -> pd.DataFrame:
    """Per step of the funnel: this month's volumes and the rates judged so far.

    Rates are over matured leads only (see :mod:`funnelkit.funnel`), so the
    leads that reached a step this month are counted (volumes) but cannot
    be judged yet; the rate shown beside them says which leads it is judged
    on.

    Parameters
    ----------
    log : DataFrame
        Canonical event log (one segment, or all leads).
    month : "YYYY-MM" or Period
    as_of : date, optional
        Default: the end of the month.
    stages : StageSet, preset or YAML path, optional

    Returns
    -------
    DataFrame
        One row per transition (step -> next step), columns
        :data:`STEP_COLUMNS`:

        * ``entered``, ``moved_on``, ``dropped``, ``in_flight``: the leads
          that reached ``step`` in the month, and of them those that reached
          the next step, dropped (lost, or open past the horizon) or are still
          in flight at ``as_of`` (:func:`funnelkit.funnel.trend`'s row of the
          month);
        * ``judged_month`` (Period, NaT when none), ``judged_leads``,
          ``judged_converted``, ``rate``, ``ci_low``, ``ci_high``: the latest
          month in which at most 5% of the leads that reached the step have
          not matured (the rule of :func:`funnelkit.funnel.leaks`), and the
          rate over its matured leads with a Wilson interval;
        * ``all_matured``, ``all_converted``, ``all_rate``, ``all_ci_low``,
          ``all_ci_high``: every matured lead known at ``as_of``
          (:func:`funnelkit.funnel.conversion`'s ``step_conversion``: the
          funnel chart's step percentages).

    Examples
    --------
    >>> import funnelkit as fk
    >>> s = step_rates(fk.datasets.load_demo(), month="2025-09")
    >>> s.loc[0, ["transition", "judged_month"]].tolist()
    ['qualification -> meeting', Period('2025-06', 'M')]
    >>> bool(s["entered"].iloc[0] > 0)
    True
    """
    ss = resolve_stages(log, stages)
    start, _end, stamp = month_window(month, as_of, time_zone(log[TIME]))
    steps = list(ss.steps)
    rows = [{"transition": f"{a} -> {b}", "step": a, "next_step": b} for a, b in zip(steps[:-1], steps[1:])]
    out = pd.DataFrame(rows, columns=["transition", "step", "next_step"])
    for c in STEP_COLUMNS[3:]:
        out[c] = pd.NaT if c == "judged_month" else math.nan
    out["judged_month"] = pd.Series([pd.NaT] * len(out), dtype="period[M]")
    known = as_of_log(log, stamp)
    if known.empty or not len(out):
        for c in ("entered", "moved_on", "dropped", "in_flight", "judged_leads", "judged_converted",
                  "all_matured", "all_converted"):
            out[c] = 0.0
        return out
    tr = trend(known, freq="MS", stages=ss, as_of=stamp)
    conv = conversion(known, stages=ss, as_of=stamp)
    cur = tr.loc[tr["period"] == start].set_index("transition") if len(tr) else pd.DataFrame()
    judged = _judged(tr) if len(tr) else pd.DataFrame()
    for i, name in enumerate(out["transition"]):
        if name in cur.index:
            r = cur.loc[name]
            out.loc[i, ["entered", "moved_on", "dropped", "in_flight"]] = [
                float(r["entered"]), float(r["converted"]), float(r["dropped"]), float(r["in_flight"])]
        else:
            out.loc[i, ["entered", "moved_on", "dropped", "in_flight"]] = 0.0
        if name in judged.index:
            r = judged.loc[name]
            out.loc[i, "judged_month"] = _wall(pd.Timestamp(r["period"])).to_period("M")
            out.loc[i, ["judged_leads", "judged_converted", "rate", "ci_low", "ci_high"]] = [
                float(r["matured"]), float(r["matured_converted"]), float(r["rate"]), float(r["ci_low"]),
                float(r["ci_high"])]
        else:
            out.loc[i, ["judged_leads", "judged_converted"]] = 0.0
        c = conv.iloc[i]
        n = float(c["matured"]) if pd.notna(c["matured"]) else 0.0
        out.loc[i, ["all_matured", "all_converted"]] = [n, float(c["matured_converted"]) if n else 0.0]
        if n:
            out.loc[i, ["all_rate", "all_ci_low", "all_ci_high"]] = [
                float(c["step_conversion"]), float(c["step_ci_low"]), float(c["step_ci_high"])]
    out.attrs.update({"month": str(parse_month(month)), "as_of": stamp, "horizon": conv.attrs.get("horizon"),
                      "horizon_source": (conv.attrs.get("funnel") or {}).get("horizon_source")})
    return out


# ---------------------------------------------------------------------------
# headline numbers
# ---------------------------------------------------------------------------
_COLUMNS = ["metric", "label", "kind", "value", "previous", "change", "change_pct", "n", "ci_low", "ci_high",
            "period", "previous_period"]


def stalled_between(log: pd.DataFrame, start, end, *, stages: StageSet, as_of,
                    by: str | None = None) -> pd.DataFrame:
    """Leads that stalled in ``[start, end)``: for a stage set without a lost outcome, its losses.

    A lead stalls when the horizon of the step it sits at runs out with no move and no outcome
    (the funnel's rule: :func:`funnelkit.funnel.outcomes` counts it as *stalled*, its
    ``in_flight`` is False), that is at the time it entered that step plus the step's horizon
    (learned from the log as known at ``as_of``, as the funnel learns it).  A stage set with a
    lost outcome marks its losses itself, and one without a won outcome has none to weigh them
    against: no row for either.

    Parameters
    ----------
    log : DataFrame
        Canonical event log, as known at ``as_of``.
    start, end : Timestamp
        The window (``end`` excluded), in the log's zone.
    stages : StageSet
    as_of : Timestamp
        When the leads' state is read (the report's as-of date).
    by : str, optional
        A segment column to keep beside each lead.

    Returns
    -------
    DataFrame
        Those leads' rows of :func:`funnelkit.funnel.lead_progress` as of
        ``as_of`` (with ``by``) and ``stalled_at``.

    Examples
    --------
    >>> import funnelkit as fk, pandas as pd
    >>> log = fk.datasets.load_demo()
    >>> no_lost = log[log["stage"].astype(str) != "lost"]
    >>> ss = fk.StageSet("no lost", ["qualification", "meeting", "proposal", "close"], won="won")
    >>> s = stalled_between(no_lost, pd.Timestamp("2025-06-01"), pd.Timestamp("2025-07-01"), stages=ss,
    ...                     as_of=pd.Timestamp("2025-06-30 23:59:59"))
    >>> bool(len(s) > 0 and s["stalled_at"].between("2025-06-01", "2025-07-01").all())
    True
    """
    ss = stages
    if ss.lost or ss.won is None or log.empty:
        return pd.DataFrame(columns=[LEAD, "stalled_at", *([by] if by else [])])
    prog = lead_progress(log, stages=ss, as_of=as_of, by=by)
    hz = (prog.attrs.get("funnel") or {}).get("horizon") or {}
    steps = list(ss.steps)
    k = prog["steps_reached"].to_numpy(dtype=np.int64)
    sitting = _stalled_rows(prog, ss)
    entered = pd.Series(pd.NaT, index=prog.index, dtype=prog[f"time_{steps[0]}"].dtype)
    horizon = pd.Series(np.nan, index=prog.index)
    for i, name in enumerate(steps[:-1]):
        at = sitting & (k == i + 1)
        entered[at] = prog.loc[at, f"time_{name}"]
        horizon[at] = hz.get(name, np.nan)
    stalled_at = entered + pd.to_timedelta(horizon, unit="D")
    hit = sitting & (stalled_at >= start).to_numpy() & (stalled_at < end).to_numpy()
    out = prog.loc[hit].copy()
    out["stalled_at"] = stalled_at[hit]
    return out.reset_index(drop=True)


def _month_numbers(log: pd.DataFrame, ss: StageSet, start, end, stamp, target) -> dict[str, dict]:
    """Leads entered, won, lost, win rate, revenue of one month (as known at ``stamp``)."""
    known = as_of_log(log, stamp)
    cohort = entered_between(known, start, end)
    funnel = conversion(cohort, stages=ss, as_of=stamp, stale_after=None) if len(cohort) else None
    out: dict[str, dict] = {}
    out["leads_entered"] = {"label": "Leads entered", "kind": "count",
                            "value": float(funnel["entered"].iloc[0]) if funnel is not None and len(funnel)
                            else 0.0}
    has_amount = AMOUNT in log.columns
    if ss.won is not None:
        closed = closed_between(known, start, end, stages=ss)
        oc = outcomes(closed, stages=ss, stale_after=None).iloc[0]
        won, lost = float(oc["won"]), float(oc["lost"])
        revenue = float(oc["won_amount"]) if has_amount else math.nan
        out["won"] = {"label": "Won", "kind": "count", "value": won}
        if not ss.lost:  # nothing is ever marked lost: the leads that stalled in the month are its losses
            lost = float(len(stalled_between(known, start, end, stages=ss, as_of=stamp)))
        out["lost"] = {"label": "Lost" if ss.lost else "Stalled", "kind": "count", "value": lost}
        # won / (won + lost) of the leads closed in the month, with its Wilson interval: every one of
        # them is decided, so funnel.outcomes' win_rate (a chain over matured leads) is not this number;
        # without a lost outcome, won / (won + stalled): won / won would be 100%
        decided = won + lost
        low, high = proportion_ci(won, decided)
        out["win_rate"] = {"label": "Win rate of leads closed" if ss.lost else "Win rate of leads decided",
                           "kind": "rate",
                           "value": won / decided if decided else math.nan, "n": decided,
                           "ci_low": float(low), "ci_high": float(high)}
        out["revenue"] = {"label": "Revenue won", "kind": "money", "value": revenue}
        out["average_deal"] = {"label": "Average deal won", "kind": "money",
                               "value": revenue / won if won and has_amount else math.nan}
        if target:
            out["target_attainment"] = {"label": "Revenue against target", "kind": "rate",
                                        "value": revenue / float(target) if has_amount else math.nan}
    return out


def _step_numbers(log: pd.DataFrame, ss: StageSet, month, stamp) -> dict[str, dict]:
    """The ``step:`` rows: each transition's rate in its latest judged month (as known at ``stamp``)."""
    s = step_rates(log, month=month, as_of=stamp, stages=ss)
    out = {}
    for r in s.itertuples(index=False):
        judged = pd.notna(r.judged_month)
        out[f"step:{r.step}"] = {
            "label": f"{r.step} → {r.next_step}", "kind": "rate",
            "value": float(r.rate) if judged else math.nan, "n": float(r.judged_leads),
            "ci_low": float(r.ci_low) if judged else math.nan, "ci_high": float(r.ci_high) if judged else math.nan,
            "period": str(r.judged_month) if judged else "",
        }
    return out


def _period_numbers(log: pd.DataFrame, ss: StageSet, start, end, stamp, target) -> dict[str, dict]:
    out = _month_numbers(log, ss, start, end, stamp, target)
    out.update(_step_numbers(log, ss, _wall(start).to_period("M"), stamp))
    return out


def headline(
    log: pd.DataFrame,
    *,
    month: str | pd.Period,
    as_of: str | pd.Timestamp | None = None,
    stages: StageSet | str | None = None,
    segment: tuple[str, object] | None = None,
    target: float | None = None,
) -> pd.DataFrame:
    """A month's headline numbers with their change from the previous month.

    Definitions are in the module docstring: leads entered (the month's
    cohort), won / lost / win rate / revenue (leads closed in the month), and
    each step's conversion in its latest judged month (:func:`step_rates`);
    the previous month is observed at the same age.

    Parameters
    ----------
    log : DataFrame
        Canonical event log.
    month : "YYYY-MM" or Period
    as_of : date, optional
        Default: the end of ``month``.
    stages : StageSet, preset or YAML path, optional
        Default: the log's stage set.
    segment : (column, value), optional
        Restrict to one segment (see :func:`select_segment`).
    target : float, optional
        Monthly revenue target: adds ``target_attainment`` (revenue / target).

    Returns
    -------
    DataFrame
        One row per metric: ``metric`` (id: ``leads_entered``, ``won``,
        ``lost``, ``win_rate``, ``revenue``, ``average_deal``,
        ``target_attainment``, then ``step:<stage>`` for the conversion from
        each step to the next), ``label``, ``kind`` (``count``, ``money`` or
        ``rate``), ``value``, ``previous`` (the previous month),
        ``change`` (value - previous; for rates in fractions, i.e.
        percentage points / 100), ``change_pct`` (relative change of counts
        and money), ``n`` (leads behind a rate), ``ci_low``, ``ci_high``
        (interval of a rate), ``period`` and ``previous_period`` (the month
        a step rate is judged on, ``"YYYY-MM"``; ``""`` for other metrics or
        when no month can be judged yet).  Won/lost/revenue rows are absent
        for a stage set without a ``won`` outcome; revenue is NaN without an
        ``amount`` column.  ``attrs`` holds ``month``, ``as_of``,
        ``previous_month``, ``previous_as_of``, ``segment``, ``target``,
        ``stages``, ``no_lost_outcome`` (the stage set has no lost outcome)
        and ``none_marked_lost`` (it has one, and the month's closed leads
        were all won because none was marked lost: its win rate is 100% by
        construction).

    Examples
    --------
    >>> import funnelkit as fk
    >>> h = headline(fk.datasets.load_demo(), month="2025-09", segment=("product", "Enterprise"))
    >>> h.set_index("metric").loc[["leads_entered", "won"], ["value", "previous"]].values.tolist()
    [[85.0, 81.0], [4.0, 2.0]]
    >>> h.set_index("metric").loc["step:proposal", ["period", "previous_period"]].tolist()
    ['2025-06', '2025-05']
    """
    ss = resolve_stages(log, stages)
    if segment is not None:
        log = select_segment(log, segment[0], segment[1])
    tz = time_zone(log[TIME])
    start, end, stamp = month_window(month, as_of, tz)
    p_start, p_end, p_stamp = previous_window(month, as_of, tz)
    cur = _period_numbers(log, ss, start, end, stamp, target)
    prev = _period_numbers(log, ss, p_start, p_end, p_stamp, None)
    rows = []
    for metric, d in cur.items():
        value = d["value"]
        previous = prev.get(metric, {}).get("value", math.nan)
        change = value - previous
        change_pct = change / previous if d["kind"] != "rate" and previous else math.nan
        rows.append({
            "metric": metric, "label": d["label"], "kind": d["kind"], "value": value,
            "previous": previous, "change": change, "change_pct": change_pct,
            "n": d.get("n", math.nan), "ci_low": d.get("ci_low", math.nan), "ci_high": d.get("ci_high", math.nan),
            "period": d.get("period", ""), "previous_period": prev.get(metric, {}).get("period", ""),
        })
    out = pd.DataFrame(rows, columns=_COLUMNS)
    for c in _COLUMNS[3:10]:
        out[c] = out[c].astype("float64")
    for c in _COLUMNS[10:]:
        out[c] = out[c].astype(object)
    out.attrs.update({
        "month": str(parse_month(month)), "as_of": str(stamp), "previous_month": str(parse_month(month) - 1),
        "previous_as_of": str(p_stamp), "segment": list(segment) if segment else None,
        "target": float(target) if target else None, "stages": ss.name, "no_lost_outcome": not ss.lost,
        # closed leads all won because none was marked lost (losses marked in batches): 100% by construction
        "none_marked_lost": bool(ss.lost) and cur.get("lost", {}).get("value") == 0
        and cur.get("won", {}).get("value", 0) > 0,
    })
    return out


def monthly_series(
    log: pd.DataFrame,
    *,
    month: str | pd.Period,
    as_of: str | pd.Timestamp | None = None,
    stages: StageSet | str | None = None,
    months: int = 12,
    target: float | None = None,
) -> pd.DataFrame:
    """The headline numbers of the last ``months`` months, for sparklines.

    Each month is computed exactly as :func:`headline` computes a month
    (same functions), as known at the end of that month; the report's own
    month as of ``as_of``.  Months that end before the log's first event are
    missing (NaN), not zero: the data says nothing about them.

    Returns
    -------
    DataFrame
        One row per month, oldest first: ``month`` (Period), then
        ``leads_entered``, ``won``, ``lost``, ``closed`` (won + lost),
        ``win_rate``, ``revenue``, ``target_attainment`` (NaN without a
        target).

    Examples
    --------
    >>> import funnelkit as fk
    >>> s = monthly_series(fk.datasets.load_demo(), month="2025-09")
    >>> len(s), str(s["month"].iloc[-1]), int(s["leads_entered"].iloc[-1])
    (12, '2025-09', 437)
    """
    ss = resolve_stages(log, stages)
    period = parse_month(month)
    tz = time_zone(log[TIME])
    _start, _end, stamp = month_window(period, as_of, tz)
    first = log[TIME].min() if len(log) else pd.NaT
    rows = []
    for back in range(months - 1, -1, -1):
        p = period - back
        s, e = _bounds(p, tz)
        at = stamp if back == 0 else e
        row = {"month": p}
        if pd.isna(first) or e < first:
            rows.append(row)
            continue
        nums = _month_numbers(log, ss, s, e, at, target)
        row.update({k: v["value"] for k, v in nums.items()})
        if "won" in nums:
            row["closed"] = nums["won"]["value"] + nums["lost"]["value"]
        rows.append(row)
    cols = ["month", "leads_entered", "won", "lost", "closed", "win_rate", "revenue", "target_attainment"]
    out = pd.DataFrame(rows).reindex(columns=cols)
    for c in cols[1:]:
        out[c] = out[c].astype("float64")
    return out


def _clean(v):
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def goal_as_won(ss: StageSet) -> StageSet:
    """A stage set without a won outcome (a marketing or web funnel) with its last stage, its
    goal, as the won outcome: the steps are the same, and a lead reaching the goal is won.

    Examples
    --------
    >>> from funnelkit.stages import get_stage_set
    >>> goal_as_won(get_stage_set("aida"))
    <StageSet aida: awareness > interest > desire (won='action')>
    """
    return StageSet(ss.name, ss.stages[:-1], won=ss.stages[-1], lost=ss.lost, aliases=ss.aliases,
                    description=ss.description, horizon_days=ss.horizon_days, infer_skipped=ss.infer_skipped,
                    value=ss.value)


def headline_record(h: pd.DataFrame) -> dict:
    """The headline table as a JSON-ready dict (NaN becomes ``None``).

    Returns
    -------
    dict
        The ``attrs`` of :func:`headline` plus ``metrics``: a list of row
        dicts; this is what a report displays under
        :data:`~funnelkit.reports.HEADLINE_MIME` and the index reads back.

    Examples
    --------
    >>> import json
    >>> from funnelkit.reports import MonthlyReport
    >>> report = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> record = headline_record(report.headline)
    >>> record["month"], record["segment"], record["target"]
    ('2025-09', ['source', 'referral'], None)
    >>> first = record["metrics"][0]
    >>> first["metric"], first["value"], first["previous"], first["n"]
    ('leads_entered', 68.0, 79.0, None)
    >>> json.loads(json.dumps(record)) == record
    True
    """
    rec = {k: _clean(v) for k, v in h.attrs.items()}
    rec["metrics"] = [{k: _clean(v) for k, v in row.items()} for row in h.to_dict("records")]
    return rec


def _month_name(month: str) -> str:
    return parse_month(month).strftime("%B %Y")


def headline_summary(h: pd.DataFrame, *, fmt=None, noun: str = "leads") -> str:
    """Plain sentences stating the month's headline numbers and their change.

    Parameters
    ----------
    h : DataFrame
        Output of :func:`headline`.
    fmt : NumberFormat, optional
        How numbers and money are written (default: ``1,234``, no currency).
    noun : str
        What the leads are called (``"deals"``).

    Returns
    -------
    str
        Plain text, generated from the numbers only.

    Examples
    --------
    >>> import funnelkit as fk
    >>> text = headline_summary(headline(fk.datasets.load_demo(), month="2025-09"))
    >>> text.startswith("In September 2025")
    True
    """
    from .formatting import NumberFormat

    f = fmt or NumberFormat()
    one = singular(noun)
    m = h.set_index("metric")
    month, prev = _month_name(h.attrs["month"]), _month_name(h.attrs["previous_month"])

    def val(metric):
        return m.loc[metric, "value"] if metric in m.index else math.nan

    def show(kind, v):
        return f.rate(v) if kind == "rate" else f.money(v) if kind == "money" else f.count(v)

    def trend_(metric):
        v, p = val(metric), m.loc[metric, "previous"] if metric in m.index else math.nan
        kind = m.loc[metric, "kind"] if metric in m.index else "count"
        if math.isnan(p):
            return ""
        if kind == "rate":
            if math.isnan(v):
                return f" ({prev}: {show(kind, p)})"
            return f" ({prev}: {show(kind, p)}, {f.points(v - p)[:-4]} points)"
        rel = m.loc[metric, "change_pct"]
        rel_text = "" if math.isnan(rel) else f", {f.signed(rel * 100)}%"
        return f" ({prev}: {show(kind, p)}{rel_text})"

    entered = val("leads_entered")
    parts = [f"In {month}, {f.count(entered)} new {noun if entered != 1 else one} "
             f"entered the funnel{trend_('leads_entered')}."]
    if "won" in m.index:
        won = val("won")
        sentence = f"{f.count(won)} {noun + ' were' if won != 1 else one + ' was'} won{trend_('won')}"
        if not math.isnan(val("revenue")):
            sentence += f", bringing {f.money(val('revenue'))} in revenue{trend_('revenue')}"
        parts.append(sentence + ".")
        n = m.loc["win_rate", "n"]
        no_lost = bool(h.attrs.get("no_lost_outcome"))
        closed_words = ("decided (won, or stalled: not moved on within the horizon of its step, as nothing is "
                        "marked lost)") if no_lost else "closed (won or lost)"
        if n and not math.isnan(n):
            parts.append(
                f"Of the {f.count(n)} {noun} {closed_words} in the month, {f.rate(val('win_rate'))} were won "
                f"(95% interval {f.rate(m.loc['win_rate', 'ci_low'])} to "
                f"{f.rate(m.loc['win_rate', 'ci_high'])}){trend_('win_rate')}."
            )
            if h.attrs.get("none_marked_lost"):  # e.g. losses marked in yearly batches
                parts.append(f"No {one} was marked lost in the month, so that rate is 100% by construction; the "
                             "funnel's estimate over matured leads is in the outcomes section.")
        else:
            parts.append(f"No {one} was {closed_words} in the month.")
    if "target_attainment" in m.index and not math.isnan(val("target_attainment")):
        parts.append(
            f"Revenue reached {f.rate(val('target_attainment'))} of the monthly target of "
            f"{f.money(h.attrs['target'])}."
        )
    return " ".join(parts)


# ---------------------------------------------------------------------------
# the report context
# ---------------------------------------------------------------------------
def _read_cache(path):
    from .cache import read_cache

    return read_cache(path)


def coverage_warnings(month: str | pd.Period, as_of: pd.Timestamp, data_start, data_end) -> list[str]:
    """Sentences warning that the data does not cover the report's month.

    A report for a month the data does not reach shows zeros that mean "no
    data", not "no activity"; these sentences say so.  The data may end up
    to :data:`STALE_AFTER` (a week) before the as-of date without a warning.

    Parameters
    ----------
    month : "YYYY-MM" or Period
    as_of : Timestamp
        The report's as-of date.
    data_start, data_end : Timestamp
        First and last event time of the whole data (NaT if unknown).

    Returns
    -------
    list of str
        Empty when the data covers the month up to the as-of date.

    Examples
    --------
    >>> end = pd.Timestamp("2025-09-30 18:00")
    >>> coverage_warnings("2025-09", pd.Timestamp("2025-09-30 23:59"), pd.Timestamp("2024-07-01"), end)
    []
    >>> coverage_warnings("2025-11", pd.Timestamp("2025-11-30 23:59"), pd.Timestamp("2024-07-01"), end)[0][:60]
    'The data ends on 2025-09-30, before November 2025 begins: th'
    """
    period = parse_month(month)
    start, end = _bounds(period, time_zone(data_start) or time_zone(data_end) or time_zone(as_of))
    name = period.strftime("%B %Y")
    out = []
    if pd.notna(data_end) and as_of - data_end > STALE_AFTER:
        if data_end < start:
            out.append(f"The data ends on {data_end:%Y-%m-%d}, before {name} begins: this report has no data "
                       "for the month, so its zeros mean 'no data', not 'no activity'. Is the export up to date?")
        else:
            days = (as_of - data_end).days
            out.append(f"The data ends on {data_end:%Y-%m-%d}, {days} days before the as-of date "
                       f"{as_of:%Y-%m-%d}: events after it are missing, so the numbers for {name} are incomplete "
                       "and leads look open (or stale) that may have moved on. Is the export up to date?")
    if pd.notna(data_start) and data_start > end:
        out.append(f"The data starts on {data_start:%Y-%m-%d}, after {name} ends: there is nothing to report "
                   "for this month.")
    return out


def segment_leaks(
    log: pd.DataFrame,
    column: str,
    value: object,
    *,
    as_of: pd.Timestamp | None = None,
    stages: StageSet | str | None = None,
    noun: str = "leads",
) -> pd.DataFrame:
    """One segment's leaks against its peers: its rows of ``funnel.leaks(log, by=column)``.

    The same estimator as :func:`funnelkit.funnel.leaks` (so a report, the
    lesson and the explorer agree): each step of every segment set against
    the other segments pooled, over matured leads, ranked by the conversions
    lost per month across all segments.  The batch runner computes it once
    per split and hands each report its rows; a report run on its own
    computes it from the whole data.

    Parameters
    ----------
    log : DataFrame
        Every lead (all segments), canonical.
    column, value
        The split column and the segment's value (compared as text).
    as_of : Timestamp, optional
        Only what was known then (default: the log's last event).
    stages : StageSet, preset or YAML path, optional
    noun : str
        What the leads are called in the sentences.

    Returns
    -------
    DataFrame
        The segment's rows of :func:`funnelkit.funnel.leaks` (``rank`` is
        the rank among every segment's rows), in rank order.

    Examples
    --------
    >>> import funnelkit as fk
    >>> lk = segment_leaks(fk.datasets.load_demo(), "product", "Enterprise", noun="deals")
    >>> lk["sentence"].iloc[0][:71]
    'Enterprise: proposal -> close converts 20% against 60% for the other pr'
    """
    res = leaks(log, by=column, stages=stages, as_of="end" if as_of is None else as_of, noun=noun)
    return segment_rows(res, column, value)


def segment_rows(table: pd.DataFrame, column: str, value: object) -> pd.DataFrame:
    """The rows of a table by segment whose ``column`` is ``value`` (compared as text).

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"owner": ["Ana", "Ben", "Ana"], "rate": [0.2, 0.3, 0.4]})
    >>> segment_rows(table, "owner", "Ana")
      owner  rate
    0   Ana   0.2
    1   Ana   0.4
    >>> segment_rows(pd.DataFrame({"year": [2024, 2025]}), "year", "2025")["year"].tolist()
    [2025]
    """
    mine = table.loc[(table[column].astype("string") == str(value)).fillna(False).to_numpy(dtype=bool)]
    return mine.reset_index(drop=True)


def leaks_to_records(table: pd.DataFrame) -> list[dict]:
    """A leak table as JSON-ready records (for the run's cache).

    Examples
    --------
    >>> import json, funnelkit as fk
    >>> leaks = fk.funnel.leaks(fk.datasets.load_demo(), by="source")
    >>> records = leaks_to_records(segment_rows(leaks, "source", "referral"))
    >>> len(records), records[0]["transition"], records[0]["leads"], records[0]["significant"]
    (4, 'close -> won', 248, True)
    >>> json.loads(json.dumps(records)) == records
    True
    """
    out = []
    for row in table.to_dict("records"):
        rec = {}
        for k, v in row.items():
            if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and math.isnan(v)):
                rec[str(k)] = None
            elif isinstance(v, (np.integer,)):
                rec[str(k)] = int(v)
            elif isinstance(v, (np.floating,)):
                rec[str(k)] = float(v)
            elif isinstance(v, (bool, np.bool_)):
                rec[str(k)] = bool(v)
            elif isinstance(v, (int, float, str)):
                rec[str(k)] = v
            else:
                rec[str(k)] = str(v)
        out.append(rec)
    return out


def leaks_from_records(records: list[dict]) -> pd.DataFrame:
    """The inverse of :func:`leaks_to_records` (numbers, flags and ranks typed again).

    Categorical columns come back as text.

    Examples
    --------
    >>> import funnelkit as fk
    >>> leaks = segment_rows(fk.funnel.leaks(fk.datasets.load_demo(), by="source"), "source", "referral")
    >>> back = leaks_from_records(leaks_to_records(leaks))
    >>> cols = ["rank", "leads", "converted", "rate", "p_value", "significant"]
    >>> back[cols].equals(leaks[cols])
    True
    >>> back[["rank", "leads", "significant"]].dtypes.astype(str).tolist()
    ['Int64', 'int64', 'bool']
    """
    df = pd.DataFrame(records)
    if df.empty:
        return df
    for c in ("rank", "benchmark_leads"):
        if c in df.columns:
            df[c] = pd.array([None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
                              for v in df[c]], dtype="Int64")
    for c in ("leads", "converted"):
        if c in df.columns:
            df[c] = df[c].astype("int64")
    for c in ("significant", "too_small"):
        if c in df.columns:
            df[c] = df[c].astype(bool)
    for c in ("rate", "benchmark_rate", "lost_conversions", "months", "lost_per_month", "p_value", "p_adjusted"):
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return df


def _readable_note(line: str, ss: StageSet) -> str:
    """A line of the load report in words: the stage set by its stages, not its Python repr."""
    if "<StageSet" not in line:
        return line
    outcome = (f"; won: {ss.won}" if ss.won is not None else "") + (f"; lost: {', '.join(ss.lost)}" if ss.lost else "")
    head = line.split("<StageSet", 1)[0]
    return f"{head}{ss.name}: {' > '.join(ss.stages)}{outcome}"


def _lean(fc):
    """A forecast without its fitted model and per-lead table, which no section reads.

    The report keeps its forecast for the whole notebook; the model (every stay
    of every lead, and its posterior draws) is the larger part of a kernel's
    memory on a large log and is not shown.
    """
    from .cache import release_memory

    fc.model_ = None
    fc.leads_ = None
    release_memory()  # the fit's freed arrays go back to the system, not to the next section's peak
    return fc


CHECK_MONTHS = 12  # past month ends at which a report's forecast is replayed and scored


def _check_months(value) -> int:
    """``check_months``, checked: a whole number of months, 0 or more."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = -1
    if isinstance(value, bool) or n != value or n < 0:
        raise ReportError(f"check_months must be a whole number of months, 0 or more (0: no check); got {value!r}.")
    return n


def past_month_ends(month: pd.Period, as_of: pd.Timestamp, span: pd.Timedelta, earliest,
                    n: int = CHECK_MONTHS) -> list[pd.Timestamp]:
    """The last ``n`` month ends before ``month`` from which a forecast ``span`` long ends by
    ``as_of`` and which are at or after ``earliest`` (NaT: none is), oldest first, each the last
    instant of its month in ``as_of``'s zone (as the report's own as-of date is).

    Examples
    --------
    >>> end = pd.Timestamp("2025-09-30 23:59:59.999999999")
    >>> [f"{t:%Y-%m-%d}" for t in past_month_ends(pd.Period("2025-09", "M"), end, pd.Timedelta(days=31),
    ...                                           pd.Timestamp("2025-03-15"), n=4)]
    ['2025-04-30', '2025-05-31', '2025-06-30', '2025-07-31']
    """
    tz = time_zone(as_of)
    out = []
    k = 1
    while len(out) < n:
        t = _bounds(month - k, tz)[1]
        if pd.isna(earliest) or t < earliest:
            break
        if t + span <= as_of:
            out.append(t)
        k += 1
    return out[::-1]


@dataclass
class MonthlyReport:
    """Everything a monthly report needs, prepared once from its parameters.

    Build it with :meth:`prepare`; the sections (:mod:`funnelkit.reports.sections`)
    read from it, so each notebook cell is one call.  Figures used by several
    sections (the step rates, the snapshot, next month's forecast...) are
    computed once, on first use.

    Attributes
    ----------
    log : DataFrame
        The segment's events known at ``as_of`` (all leads, every month).
    stages : StageSet
    month : Period
    start, end, as_of : Timestamp
        The month's first and last instant and the as-of date.
    segment : (column, value) or None
    title : str
    revenue_target : float or None
    data : str or DataFrame
        What the data parameter was (for provenance).
    parameters : dict
        The report's parameters as given.
    notes : list of str
        What was noticed while loading (the load report).
    warnings : list of str
        What the reader must know to trust the numbers (e.g. the month is
        past the data's end), shown as styled notes and listed in the index.
    data_start, data_end : Timestamp
        First and last event time of the whole data (all segments).
    segment_start : Timestamp
        First event time of the segment (NaT when unknown).
    fingerprint : dict or None
        ``source`` and ``sha256`` of the data when the runner computed them.
    fmt : NumberFormat
        How numbers, money and percentages are written (the plan's
        ``currency``, ``thousands`` and ``decimal``).
    noun : str
        What the leads are called in sentences (``"deals"``).
    links : dict
        Navigation, relative to the page: ``index``, ``siblings`` (a list of
        ``{"label", "href", "current"}``), ``previous`` / ``next`` (the same
        report a month before / after, with ``previous_label`` /
        ``next_label``); written by the batch runner.
    peers : DataFrame or None
        The segment's rows of the leak finder against the other segments of
        its split (:func:`segment_leaks`), computed once per run by the
        batch runner; None to compute them from ``population``.
    population : DataFrame or None
        Every lead's events (all segments), when the report read the data
        itself: the peers of :func:`segment_leaks`.
    check_months : int
        How many past month ends the forecast is replayed at.
    goal_won : bool
        The stage set had no won outcome (a web or marketing funnel) and
        ``stages`` is it with its last stage, its goal, as the won outcome
        (:func:`goal_as_won`): the report's wins, revenue, win rates and
        forecast count leads reaching the goal, and its headline says so.

    Examples
    --------
    The report on referral leads of the demo data, for its last month:

    >>> report = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    >>> report
    <MonthlyReport 'Monthly funnel report: source referral, September 2025': 907 leads known at 2025-09-30 23:59, stage set pipeline4>
    >>> str(report.month), report.segment, str(report.as_of.date())
    ('2025-09', ('source', 'referral'), '2025-09-30')
    >>> report.headline[["metric", "value", "previous"]].head(3)
              metric  value  previous
    0  leads_entered   68.0      79.0
    1            won   24.0      18.0
    2           lost   39.0      29.0

    The views computed on first use: the month's cohort and the leads closed in it, the
    funnel of every known lead, the step rates, 12 months of headline numbers, the leaks
    against the other sources and against its own past:

    >>> report.cohort["lead_id"].nunique(), report.closed["lead_id"].nunique()
    (68, 63)
    >>> int(report.funnel_all["entered"].iloc[0]), len(report.steps), len(report.series)
    (907, 4, 12)
    >>> len(report.peer_leaks), len(report.past_leaks)
    (4, 4)
    """

    log: pd.DataFrame
    stages: StageSet
    month: pd.Period
    start: pd.Timestamp
    end: pd.Timestamp
    as_of: pd.Timestamp
    segment: tuple[str, str] | None = None
    title: str = "Monthly funnel report"
    revenue_target: float | None = None
    data: object = None
    parameters: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    data_start: pd.Timestamp = pd.NaT
    data_end: pd.Timestamp = pd.NaT
    segment_start: pd.Timestamp = pd.NaT
    fingerprint: dict | None = None
    fmt: NumberFormat = field(default_factory=NumberFormat)
    noun: str = "leads"
    links: dict = field(default_factory=dict)
    peers: pd.DataFrame | None = None
    population: pd.DataFrame | None = field(default=None, repr=False)
    check_months: int = CHECK_MONTHS
    goal_won: bool = False

    @classmethod
    def prepare(
        cls,
        data: str | Path | pd.DataFrame = DEMO_DATA,
        *,
        columns: Mapping[str, str] | None = None,
        stages: StageSet | str | None = None,
        segment_column: str = "",
        segment_value: object = "",
        month: str = "",
        as_of: str = "",
        revenue_target: float | None = None,
        title: str = "Monthly funnel report",
        read_options: Mapping[str, object] | None = None,
        cache: str | Path = "",
        currency: str = "",
        thousands: str = ",",
        decimal: str = "",
        noun: str = "leads",
        links: Mapping | None = None,
        check_months: int = CHECK_MONTHS,
    ) -> MonthlyReport:
        """Load the data and resolve the parameters of one monthly report.

        Parameters
        ----------
        data, columns, stages, read_options
            As in :func:`load_data`.
        segment_column, segment_value : str
            The segment reported on (``""`` for all leads).
        month : str
            ``"YYYY-MM"``; ``""`` means the month of the latest event.
        as_of : str
            ``"YYYY-MM-DD"``; ``""`` means the end of the month.
        revenue_target : float, optional
            Monthly revenue target; 0 or None for none.
        title : str
        cache : path, optional
            The validated event log of this report's leads, written once per
            run by the batch runner (:func:`funnelkit.reports.cache.write_cache`);
            read instead of ``data``, which then only names the source.
        currency, thousands, decimal : str
            How money and numbers are written (see :class:`NumberFormat`).
        noun : str
            What the leads are called in sentences, e.g. ``"deals"``.
        links : mapping, optional
            Navigation links (see the ``links`` attribute).
        check_months : int
            Past month ends at which next month's forecast is replayed and scored beside it
            (:attr:`forecast_check`; default 12), and on whose forecasts its range is
            calibrated.  ``0``: no past forecast at all, the model's range, labelled (on a
            150,000-lead log the check is most of a report's time: 53 s of road fines).

        Returns
        -------
        MonthlyReport

        Raises
        ------
        ReportError
            For a missing file, an unknown segment column or value, a bad
            month or as-of date, a bad number format, or a cache of another
            segment.

        Examples
        --------
        >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
        >>> r.heading
        'Monthly funnel report: source referral, September 2025'
        """
        fingerprint = None
        peers = None
        try:
            fmt = NumberFormat(currency=str(currency or ""), thousands=str(thousands), decimal=str(decimal or ""))
        except ValueError as exc:
            raise ReportError(f"number format: {exc}") from None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cache:
                full, meta = _read_cache(cache)
                want = (str(segment_column), str(segment_value)) if segment_column else None
                if meta.get("segment") != want:
                    raise ReportError(f"cache {cache} holds the leads of {meta.get('segment') or 'all leads'}, "
                                      f"not of {want or 'all leads'}.")
                data_start, data_end = meta["data_start"], meta["data_end"]
                if meta.get("sha256"):
                    fingerprint = {"source": meta["source"], "sha256": meta["sha256"]}
                if meta.get("peers") is not None:
                    peers = leaks_from_records(meta["peers"])
            else:
                full = load_data(data, columns=columns, stages=stages, read_options=read_options)
                data_start, data_end = (full[TIME].min(), full[TIME].max()) if len(full) else (pd.NaT, pd.NaT)
        load_warnings = list(dict.fromkeys(str(w.message) for w in caught))
        ss = resolve_stages(full, stages)
        notes = [_readable_note(n, ss) for n in str(full.attrs.get("funnelkit", "")).splitlines()]
        goal_won = isinstance(ss, StageSet) and _goal_is_last_stage(ss)
        if goal_won:  # a web or marketing funnel: reaching its goal is what its wins, revenue and forecast count
            ss = goal_as_won(ss)
        log = full
        segment = None
        if segment_column:
            log = select_segment(full, segment_column, segment_value)
            segment = (str(segment_column), str(segment_value))
        if not str(month).strip():
            last = data_end
            if pd.isna(last):
                raise ReportError("the data has no event with a known time; give month='YYYY-MM'.")
            month = str(_wall(last).to_period("M"))
        period = parse_month(month)
        # a log in a time zone: the month is its local calendar month
        start, end, stamp = month_window(period, as_of or None, time_zone(full[TIME]) if TIME in full else None)
        try:
            target = float(revenue_target) if revenue_target else None
        except (TypeError, ValueError):
            raise ReportError(f"revenue_target {revenue_target!r} is not a number.") from None
        params = {
            "data": data if not isinstance(data, pd.DataFrame) else "DataFrame",
            "columns": dict(columns or {}), "stages": stages if isinstance(stages, (str, type(None))) else ss.name,
            "segment_column": segment_column, "segment_value": segment_value, "month": str(period),
            "as_of": as_of, "revenue_target": revenue_target, "title": title,
            "read_options": dict(read_options or {}),
        }
        segment_start = log[TIME].min() if len(log) else pd.NaT
        population = None if cache or segment is None else full
        report = cls(as_of_log(log, stamp), ss, period, start, end, stamp, segment, title, target, data,
                     params, notes, [], data_start, data_end, segment_start, fingerprint, fmt,
                     str(noun or "leads"), dict(links or {}), peers, population, _check_months(check_months),
                     goal_won)
        report.warnings.extend(coverage_warnings(period, stamp, data_start, data_end))
        report.warnings.extend(w for w in load_warnings if w not in report.warnings)
        from .cache import release_memory

        del full, log
        release_memory()  # what reading and cutting the log freed goes back to the system
        return report

    # -- derived -------------------------------------------------------------
    @property
    def heading(self) -> str:
        """The report's title line: title, segment and month."""
        seg = f": {self.segment[0]} {self.segment[1]}" if self.segment else ""
        return f"{self.title}{seg}, {self.month.strftime('%B %Y')}"

    @property
    def one(self) -> str:
        """The singular of ``noun`` (``"deal"``)."""
        return singular(self.noun)

    @property
    def has_amount(self) -> bool:
        """True when the data has deal amounts (revenue can be computed)."""
        return AMOUNT in self.log.columns and bool(self.log[AMOUNT].notna().any())

    @cached_property
    def cohort(self) -> pd.DataFrame:
        """Events (to ``as_of``) of the leads that entered in the month."""
        return entered_between(self.log, self.start, self.end)

    @cached_property
    def closed(self) -> pd.DataFrame:
        """Events of the leads whose outcome came in the month."""
        if self.stages.won is None and not self.stages.lost:
            return self.log.iloc[:0]
        return closed_between(self.log, self.start, self.end, stages=self.stages)

    @cached_property
    def funnel(self) -> pd.DataFrame:
        """:func:`funnelkit.funnel.conversion` of the month's cohort, as of the report date."""
        return conversion(self.cohort, stages=self.stages, as_of=self.as_of)

    @cached_property
    def funnel_all(self) -> pd.DataFrame:
        """:func:`funnelkit.funnel.conversion` of every lead known at the as-of date (all matured leads)."""
        return conversion(self.log, stages=self.stages, as_of=self.as_of)

    @cached_property
    def steps(self) -> pd.DataFrame:
        """:func:`step_rates`: the month's volumes and the judged rates per transition."""
        return step_rates(self.log, month=self.month, as_of=self.as_of, stages=self.stages)

    @cached_property
    def series(self) -> pd.DataFrame:
        """:func:`monthly_series`: the headline numbers of the last 12 months."""
        return monthly_series(self.log, month=self.month, as_of=self.as_of, stages=self.stages,
                              target=self.revenue_target)

    @cached_property
    def headline(self) -> pd.DataFrame:
        """:func:`headline` of this report's segment and month."""
        h = headline(self.log, month=self.month, as_of=self.as_of, stages=self.stages,
                     target=self.revenue_target)
        h.attrs["segment"] = list(self.segment) if self.segment else None
        return h

    @cached_property
    def peer_leaks(self) -> pd.DataFrame | None:
        """The segment's leaks against the other segments of its split (None for the report over all leads)."""
        if self.segment is None:
            return None
        if self.peers is not None:
            return self.peers
        if self.population is None:
            return None
        return segment_leaks(self.population, self.segment[0], self.segment[1], as_of=self.as_of,
                             stages=self.stages, noun=self.noun)

    @cached_property
    def past_leaks(self) -> pd.DataFrame:
        """The segment's leaks against its own earlier months (``funnel.leaks(benchmark="previous")``)."""
        return leaks(self.log, benchmark="previous", stages=self.stages, as_of=self.as_of, noun=self.noun)

    @cached_property
    def next_month(self):
        """Next month's forecast (:func:`funnelkit.forecast.forecast`, seed 0): the open pipeline and
        the new leads expected to enter before the month ends (``new_leads=True``), its range
        calibrated on the same forecast's misses at past month ends (:attr:`forecast_check`).

        Its horizon runs from the as-of date to the end of the next month.  In a
        fast process most of a month's wins come from leads that enter in it
        (BPIC 2020: 608 of June 2018's 798 payments), so leaving them out would
        forecast a fraction of the month; when the arrivals cannot be modelled
        (too little history) the forecast is of the open pipeline only (its
        ``basis`` says which).  The range is calibrated on the forecasts of
        :attr:`forecast_check` (``calibrate=<Backtest>``: the last 12 of them
        whose month is over, with warm-up cutoffs before them), or, when there is
        no such check, on past cutoffs of its own (``calibrate=True``: weeks apart
        on a short log); with too little history for either, the range is the
        model's and ``total["range"]`` says so.  ``None`` when the stage set has
        no won outcome or no lead is known; the error text (a str) when the
        forecast cannot be made.
        """
        return self._forecast_and_check[0]

    @property
    def forecast_check(self):
        """Next month's forecast replayed at past month ends and scored against what followed.

        The same forecast as :attr:`next_month` (same horizon length, same basis, range
        calibrated the same way on the cutoffs before each) is made at the end of each of
        the last :data:`CHECK_MONTHS` months whose whole horizon the data holds and which
        come after the history a calibration cutoff needs (twice the horizon of wins, see
        :func:`funnelkit.forecast.forecast`), with :func:`funnelkit.forecast.backtest`.
        Its ``summary`` says in how many of them the range held, and the average miss
        against the run-rate (the last horizon's wins carried forward).  ``None`` without
        a forecast; a str saying why when no past month can be scored.
        """
        return self._forecast_and_check[1]

    @cached_property
    def _forecast_and_check(self):
        """``(next_month, forecast_check)``: the check's backtest first, then the forecast
        calibrated on its forecasts, every win first and the open pipeline if that fails."""
        from ..exceptions import FunnelkitError
        from ..forecast import _calibration_history, _first_win, backtest, forecast

        if self.stages.won is None or self.log.empty:
            return None, None
        from .cache import release_memory

        horizon = _bounds(self.month + 1, time_zone(self.as_of))[1] - self.as_of
        history = _calibration_history(horizon)
        cuts = past_month_ends(self.month, self.as_of, horizon,
                               _first_win(self.log, self.stages, stage=STAGE, time=TIME) + history,
                               n=self.check_months) if self.check_months else []
        release_memory()  # start the models' fits from what the report holds, not from earlier garbage
        error = None
        for new_leads in (True, False):
            check = ("check_months is 0: no past forecast is made, and the range is the model's" if not
                     self.check_months else f"no earlier month end has its next {horizon.days} days in the data "
                     f"and {history.days} days of wins before it")
            if cuts:
                try:
                    check = backtest(self.log, cutoffs=cuts, horizon=horizon, stages=self.stages, seed=0,
                                     new_leads=new_leads, calibrate=True)
                    check.leads_ = None  # per lead, for calibration charts: not shown in a report
                except FunnelkitError as exc:
                    check = str(exc)
            try:
                calibrate = check if not isinstance(check, str) else bool(self.check_months)
                fc = forecast(self.log, as_of=self.as_of, horizon=horizon, stages=self.stages, seed=0,
                              new_leads=new_leads, calibrate=calibrate)
            except FunnelkitError as exc:
                error = str(exc)
                continue
            return _lean(fc), check
        return error, None

    def __repr__(self) -> str:
        return (f"<MonthlyReport {self.heading!r}: {self.log[LEAD].nunique():,} leads known at "
                f"{self.as_of:%Y-%m-%d %H:%M}, stage set {self.stages.name}>")
