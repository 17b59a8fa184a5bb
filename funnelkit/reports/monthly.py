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
* **Step conversions** of the month: the funnel of that cohort, followed up
  to the as-of date (:func:`funnelkit.funnel.conversion` with ``as_of``):
  over the leads that have *matured* at a step (had the step's horizon to
  move on, or were decided); leads still in flight are not counted as lost.
  A young cohort often has no matured lead yet at some steps: those rates are
  shown as not judged yet.  The previous month is measured at the same age
  (its as-of date is the same distance from its month), so the change
  compares like with like.
* **Won**, **lost**, **win rate** and **revenue**: leads whose outcome (their
  last won/lost event, :func:`funnelkit.funnel.outcomes`) happened in the
  month, whatever month they entered; the win rate is won / (won + lost) with
  a Wilson interval; revenue is the amount of the leads won.
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

from ..data import (
    AMOUNT,
    LEAD,
    TIME,
    from_snapshot,
    from_wide,
    known_at,
    log_stage_set,
    read_events,
    validate_events,
)
from ..exceptions import ReportError
from ..funnel import conversion, lead_progress, outcomes, resolve_stages
from ..stages import StageSet, get_stage_set
from ..stats import proportion_ci

__all__ = [
    "DEMO_DATA",
    "STALE_AFTER",
    "coverage_warnings",
    "MonthlyReport",
    "as_of_log",
    "closed_between",
    "data_fingerprint",
    "entered_between",
    "headline",
    "headline_record",
    "headline_summary",
    "load_data",
    "month_window",
    "parse_month",
    "previous_window",
    "select_segment",
]

#: The ``data`` value that means "the bundled, generated demo event log".
DEMO_DATA = "demo"

#: Fewest leads behind a step conversion for the summary to name it the weakest step.
_MIN_LEADS = 10

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
        A CSV or Parquet event log; ``"demo"`` is the bundled demo data
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
                             tz=opts.get("tz", "UTC"), dayfirst=opts.get("dayfirst", False))
    if not isinstance(wide, Mapping) or not set(wide) <= {"prefix", "stage_columns"} or not wide:
        raise ReportError("read_options wide: give {prefix: 'Date entered '} or {stage_columns: "
                          "{<date column>: <stage>, ...}}.")
    return from_wide(path, lead=lead, prefix=wide.get("prefix"), stage_columns=wide.get("stage_columns"),
                     stages=stages, amount=inverse.get(AMOUNT), segments=opts.get("segments"),
                     tz=opts.get("tz", "UTC"), dayfirst=opts.get("dayfirst", False))


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


def _bounds(period: pd.Period) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = period.start_time.as_unit("ns")
    return start, (period + 1).start_time.as_unit("ns") - pd.Timedelta(1, "ns")


def month_window(
    month: str | pd.Period, as_of: str | pd.Timestamp | None = None
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """First and last instant of a month, and the as-of date.

    Parameters
    ----------
    month : "YYYY-MM" or Period
    as_of : date, optional
        Default: the end of the month.  A date before the month starts is an
        error; a date inside the month gives a month-to-date report.

    Returns
    -------
    (start, end, as_of) : Timestamps

    Examples
    --------
    >>> month_window("2025-09")[1]
    Timestamp('2025-09-30 23:59:59.999999999')
    """
    period = parse_month(month)
    start, end = _bounds(period)
    if as_of is None or (isinstance(as_of, str) and not as_of.strip()):
        return start, end, end
    try:
        stamp = pd.Timestamp(as_of)
    except (ValueError, TypeError):
        raise ReportError(f"as_of {as_of!r} is not a date: write it as 'YYYY-MM-DD'.") from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_localize(None)
    if stamp == stamp.normalize() and isinstance(as_of, str) and len(as_of.strip()) <= 10:
        stamp = stamp + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")  # a date means its whole day
    if stamp < start:
        raise ReportError(
            f"as_of {as_of!r} is before the month {period} starts; give a date on or after {start.date()}."
        )
    return start, end, stamp


def previous_window(
    month: str | pd.Period, as_of: str | pd.Timestamp | None = None
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
    start, end, stamp = month_window(month, as_of)
    p_start, p_end = _bounds(parse_month(month) - 1)
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
    """Events known at ``as_of`` (see :func:`funnelkit.data.known_at`): no lead from the future."""
    return known_at(log, as_of, time=time)


def entered_between(
    log: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, *, lead: str = LEAD, time: str = TIME
) -> pd.DataFrame:
    """Events of the leads whose first known event time is in ``[start, end]``."""
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
    """Events of the leads whose outcome (last won/lost event) is in ``[start, end]``."""
    if log.empty:
        return log
    prog = lead_progress(log, stages=stages, lead=lead)
    closed = prog["closed_at"]
    leads = prog.loc[(prog["outcome"] != "open") & (closed >= start) & (closed <= end), lead]
    return log.loc[log[lead].isin(set(leads))]


# ---------------------------------------------------------------------------
# headline numbers
# ---------------------------------------------------------------------------
_COLUMNS = ["metric", "label", "kind", "value", "previous", "change", "change_pct", "n", "ci_low", "ci_high"]


def _period_numbers(log: pd.DataFrame, ss: StageSet, start, end, stamp, target) -> dict[str, dict]:
    known = as_of_log(log, stamp)
    cohort = entered_between(known, start, end)
    funnel = conversion(cohort, stages=ss, as_of=stamp)
    out: dict[str, dict] = {}
    out["leads_entered"] = {"label": "Leads entered", "kind": "count",
                            "value": float(funnel["entered"].iloc[0]) if len(funnel) else 0.0}
    has_amount = AMOUNT in log.columns
    if ss.won is not None:
        closed = closed_between(known, start, end, stages=ss)
        oc = outcomes(closed, stages=ss).iloc[0]
        won, lost = float(oc["won"]), float(oc["lost"])
        revenue = float(oc["won_amount"]) if has_amount else math.nan
        out["won"] = {"label": "Won", "kind": "count", "value": won}
        out["lost"] = {"label": "Lost", "kind": "count", "value": lost}
        # won / (won + lost) of the leads closed in the month, with its Wilson interval: every one of
        # them is decided, so funnel.outcomes' win_rate (a chain over matured leads) is not this number
        decided = won + lost
        low, high = proportion_ci(won, decided)
        out["win_rate"] = {"label": "Win rate of leads closed", "kind": "rate",
                           "value": won / decided if decided else math.nan, "n": decided,
                           "ci_low": float(low), "ci_high": float(high)}
        out["revenue"] = {"label": "Revenue won", "kind": "money", "value": revenue}
        out["average_deal"] = {"label": "Average deal won", "kind": "money",
                               "value": revenue / won if won and has_amount else math.nan}
        if target:
            out["target_attainment"] = {"label": "Revenue against target", "kind": "rate",
                                        "value": revenue / float(target) if has_amount else math.nan}
    steps = list(ss.steps)
    decided = "matured" if "matured" in funnel.columns else "entered"
    for k in range(len(steps) - 1):
        row = funnel.iloc[k]
        n = float(row[decided])
        out[f"step:{steps[k]}"] = {
            "label": f"{steps[k]} → {steps[k + 1]}",
            "kind": "rate",
            "value": float(row["step_conversion"]) if n else math.nan,
            "n": n,
            "ci_low": float(row["step_ci_low"]) if n else math.nan,
            "ci_high": float(row["step_ci_high"]) if n else math.nan,
        }
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
    the step conversions of the month's cohort as of ``as_of``; the previous
    month is observed at the same age.

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
        (interval of a rate).  Won/lost/revenue rows are absent for a stage
        set without a ``won`` outcome; revenue is NaN without an ``amount``
        column.  ``attrs`` holds ``month``, ``as_of``, ``previous_month``,
        ``previous_as_of``, ``segment``, ``target``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> h = headline(fk.datasets.load_demo(), month="2025-09", segment=("product", "Enterprise"))
    >>> h.set_index("metric").loc[["leads_entered", "won"], ["value", "previous"]].values.tolist()
    [[85.0, 81.0], [4.0, 2.0]]
    """
    ss = resolve_stages(log, stages)
    if segment is not None:
        log = select_segment(log, segment[0], segment[1])
    start, end, stamp = month_window(month, as_of)
    p_start, p_end, p_stamp = previous_window(month, as_of)
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
        })
    out = pd.DataFrame(rows, columns=_COLUMNS)
    for c in _COLUMNS[3:]:
        out[c] = out[c].astype("float64")
    out.attrs.update({
        "month": str(parse_month(month)), "as_of": str(stamp), "previous_month": str(parse_month(month) - 1),
        "previous_as_of": str(p_stamp), "segment": list(segment) if segment else None,
        "target": float(target) if target else None, "stages": ss.name,
    })
    return out


def _clean(v):
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def headline_record(h: pd.DataFrame) -> dict:
    """The headline table as a JSON-ready dict (NaN becomes ``None``).

    Returns
    -------
    dict
        The ``attrs`` of :func:`headline` plus ``metrics``: a list of row
        dicts; this is what a report displays under
        :data:`~funnelkit.reports.HEADLINE_MIME` and the index reads back.
    """
    rec = {k: _clean(v) for k, v in h.attrs.items()}
    rec["metrics"] = [{k: _clean(v) for k, v in row.items()} for row in h.to_dict("records")]
    return rec


def _fmt(kind: str, v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if kind == "rate":
        return f"{v:.1%}"
    return f"{v:,.0f}"


def _month_name(month: str) -> str:
    return parse_month(month).strftime("%B %Y")


def headline_summary(h: pd.DataFrame) -> str:
    """Plain sentences stating the month's headline numbers and their change.

    Parameters
    ----------
    h : DataFrame
        Output of :func:`headline`.

    Returns
    -------
    str
        Markdown text, generated from the numbers only.

    Examples
    --------
    >>> import funnelkit as fk
    >>> text = headline_summary(headline(fk.datasets.load_demo(), month="2025-09"))
    >>> text.startswith("In September 2025")
    True
    """
    m = h.set_index("metric")
    month, prev = _month_name(h.attrs["month"]), _month_name(h.attrs["previous_month"])

    def val(metric):
        return m.loc[metric, "value"] if metric in m.index else math.nan

    def trend(metric):
        v, p = val(metric), m.loc[metric, "previous"] if metric in m.index else math.nan
        kind = m.loc[metric, "kind"] if metric in m.index else "count"
        if math.isnan(p):
            return ""
        if kind == "rate":
            if math.isnan(v):
                return f" ({prev}: {_fmt(kind, p)})"
            pp = (v - p) * 100
            return f" ({prev}: {_fmt(kind, p)}, {pp:+.1f} points)"
        rel = m.loc[metric, "change_pct"]
        rel_text = "" if math.isnan(rel) else f", {rel:+.0%}"
        return f" ({prev}: {_fmt(kind, p)}{rel_text})"

    entered = val("leads_entered")
    parts = [f"In {month}, {_fmt('count', entered)} new lead{'s' if entered != 1 else ''} "
             f"entered the funnel{trend('leads_entered')}."]
    if "won" in m.index:
        won = val("won")
        sentence = f"{_fmt('count', won)} lead{'s were' if won != 1 else ' was'} won{trend('won')}"
        if not math.isnan(val("revenue")):
            sentence += f", bringing {_fmt('money', val('revenue'))} in revenue{trend('revenue')}"
        parts.append(sentence + ".")
        n = m.loc["win_rate", "n"]
        if n and not math.isnan(n):
            parts.append(
                f"Of the {_fmt('count', n)} leads closed in the month, {_fmt('rate', val('win_rate'))} were won "
                f"(95% interval {_fmt('rate', m.loc['win_rate', 'ci_low'])} to "
                f"{_fmt('rate', m.loc['win_rate', 'ci_high'])}){trend('win_rate')}."
            )
        else:
            parts.append("No lead was closed (won or lost) in the month.")
    if "target_attainment" in m.index and not math.isnan(val("target_attainment")):
        parts.append(
            f"Revenue reached {_fmt('rate', val('target_attainment'))} of the monthly target of "
            f"{_fmt('money', h.attrs['target'])}."
        )
    steps = m.loc[m.index.str.startswith("step:") & (m["n"] >= _MIN_LEADS)]
    if len(steps):
        weakest = steps["value"].idxmin()
        parts.append(
            f"Among this month's new leads so far, the weakest step is {steps.loc[weakest, 'label']} "
            f"at {_fmt('rate', steps.loc[weakest, 'value'])} of the {_fmt('count', steps.loc[weakest, 'n'])} "
            "leads decided there (leads still in flight are not counted)."
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
    start, end = _bounds(period)
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


@dataclass
class MonthlyReport:
    """Everything a monthly report needs, prepared once from its parameters.

    Build it with :meth:`prepare`; the sections (:mod:`funnelkit.reports.sections`)
    read from it, so each notebook cell is one call.

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

        Returns
        -------
        MonthlyReport

        Raises
        ------
        ReportError
            For a missing file, an unknown segment column or value, a bad
            month or as-of date, or a cache of another segment.

        Examples
        --------
        >>> r = MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
        >>> r.heading
        'Monthly funnel report: source referral, September 2025'
        """
        fingerprint = None
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
            else:
                full = load_data(data, columns=columns, stages=stages, read_options=read_options)
                data_start, data_end = (full[TIME].min(), full[TIME].max()) if len(full) else (pd.NaT, pd.NaT)
        load_warnings = list(dict.fromkeys(str(w.message) for w in caught))
        ss = resolve_stages(full, stages)
        notes = list(str(full.attrs.get("funnelkit", "")).splitlines())
        log = full
        segment = None
        if segment_column:
            log = select_segment(full, segment_column, segment_value)
            segment = (str(segment_column), str(segment_value))
        if not str(month).strip():
            last = data_end
            if pd.isna(last):
                raise ReportError("the data has no event with a known time; give month='YYYY-MM'.")
            month = str(last.to_period("M"))
        period = parse_month(month)
        start, end, stamp = month_window(period, as_of or None)
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
        report = cls(as_of_log(log, stamp), ss, period, start, end, stamp, segment, title, target, data,
                     params, notes, [], data_start, data_end, segment_start, fingerprint)
        report.warnings.extend(coverage_warnings(period, stamp, data_start, data_end))
        report.warnings.extend(w for w in load_warnings if w not in report.warnings)
        return report

    # -- derived -------------------------------------------------------------
    @property
    def heading(self) -> str:
        """The report's title line: title, segment and month."""
        seg = f": {self.segment[0]} {self.segment[1]}" if self.segment else ""
        return f"{self.title}{seg}, {self.month.strftime('%B %Y')}"

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
    def headline(self) -> pd.DataFrame:
        """:func:`headline` of this report's segment and month."""
        h = headline(self.log, month=self.month, as_of=self.as_of, stages=self.stages,
                     target=self.revenue_target)
        h.attrs["segment"] = list(self.segment) if self.segment else None
        return h

    def __repr__(self) -> str:
        return (f"<MonthlyReport {self.heading!r}: {self.log[LEAD].nunique():,} leads known at "
                f"{self.as_of:%Y-%m-%d %H:%M}, stage set {self.stages.name}>")
