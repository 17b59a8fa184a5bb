"""Read XES event logs (``.xes``, ``.xes.gz``), the process-mining standard.

XES (IEEE 1849) stores a log as ``<trace>`` elements (one per case: a lead)
holding ``<event>`` elements, each with typed attributes::

    <log>
      <trace>
        <string key="concept:name" value="declaration 86791"/>   <- lead_id
        <float key="Amount" value="26.85"/>                      <- segment column
        <event>
          <string key="concept:name" value="Declaration SUBMITTED by EMPLOYEE"/>  <- stage
          <date key="time:timestamp" value="2017-01-09T09:49:50.000+01:00"/>     <- timestamp
          <string key="org:resource" value="STAFF MEMBER"/>                       <- column
        </event>
      </trace>
    </log>

:func:`read_xes` reads such a file as a stream (the expat parser, no
document tree is built, so memory grows with the events kept, not with the
XML) and hands the table to :func:`funnelkit.validate_events`, so stage
sets, aliases, ``ignore=`` and errors behave as for any other input.

Mapping onto the event log:

======================================  ======================================
XES                                     event log
======================================  ======================================
trace ``concept:name``                  ``lead_id``
event ``concept:name``                  ``stage``
event ``time:timestamp``                ``timestamp`` (offsets converted to
                                        ``tz``; see the timezone policy in
                                        :mod:`funnelkit.data`)
event ``lifecycle:transition``          kept when it equals ``lifecycle=``
other trace attributes                  columns under their own name
                                        (``Amount``, ``BudgetNumber``), or
                                        ``case:<key>`` when an event
                                        attribute has the same key
other event attributes                  columns (``org:resource``, ...)
======================================  ======================================

Typed values become typed columns: ``<int>`` integers (nullable ``Int64``
when some traces lack the attribute), ``<float>`` floats, ``<boolean>``
booleans, ``<date>`` datetimes in the log's zone, ``<string>`` and ``<id>``
text (categoricals in the log).  Nested attributes, ``<list>`` and
``<container>`` values are not read (the load report counts them).
"""

from __future__ import annotations

import gzip
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.parsers import expat

import numpy as np
import pandas as pd

from .data import (
    LEAD,
    REQUIRED,
    STAGE,
    TIME,
    _check_missing_time,
    _check_tz,
    _missing_file,
    _n,
    _parse_times,
    validate_events,
)
from .exceptions import InvalidEventLogError, Problem
from .stages import StageSet

__all__ = ["read_xes"]

_ATTRS = {"string", "date", "int", "float", "boolean", "id"}
_NESTED = {"list", "container", "values"}
_TRACE_NAME, _EVENT_NAME, _EVENT_TIME = "case:concept:name", "concept:name", "time:timestamp"
_LIFECYCLE = "lifecycle:transition"


_LOG, _TRACE, _EVENT = 1, 2, 3


class _Reader:
    """expat handlers: collect (row, type, key, value) of every trace and event attribute.

    Kept lean (one call per element, no per-element objects): typing and
    checking happen afterwards, one vectorised pass per attribute key.
    """

    def __init__(self, parser) -> None:
        self.parser = parser
        self.skip = 0  # depth inside a subtree that is not read (nested attributes, globals, ...)
        self.skip_attr = False  # the skipped subtree is an attribute: its children are nested ones
        self.where = 0  # 0 outside, then _LOG, _TRACE, _EVENT
        self.n_events = self.n_traces = 0
        self.ev = ([], [], [], [])  # event row, type, key, value
        self.tr = ([], [], [], [])  # trace row, type, key, value
        self.log_attrs: dict[str, str] = {}
        self.event_trace: list[int] = []
        self.event_line: list[int] = []
        self.trace_line: list[int] = []
        self.nested = 0
        self.stray_events = 0
        self.root_seen = False
        self.key_of: dict[str, str] = {}  # one string object per distinct key

    def start(self, name: str, attrs: dict) -> None:
        if self.skip:
            # meta-attributes: the direct children of an attribute that was read
            if self.skip == 1 and self.skip_attr and (name in _ATTRS or name in _NESTED):
                self.nested += 1
            self.skip += 1
            return
        if name in _ATTRS:
            where = self.where
            if where == _EVENT:
                rows, types, keys, values = self.ev
                rows.append(self.n_events)
            elif where == _TRACE:
                rows, types, keys, values = self.tr
                rows.append(self.n_traces)
            else:
                if where == _LOG and "key" in attrs:
                    self.log_attrs.setdefault(attrs["key"], str(attrs.get("value")))
                self.skip, self.skip_attr = 1, False
                return
            types.append(name)
            key = attrs.get("key")
            keys.append(self.key_of.setdefault(key, key))
            values.append(attrs.get("value"))
            self.skip, self.skip_attr = 1, True
        elif name == "event" and self.where == _TRACE:
            self.where = _EVENT
            self.event_trace.append(self.n_traces)
            self.event_line.append(self.parser.CurrentLineNumber)
        elif name == "trace" and self.where == _LOG:
            self.where = _TRACE
            self.trace_line.append(self.parser.CurrentLineNumber)
        elif not self.root_seen:
            tag = name.rsplit(":", 1)[-1]
            if tag != "log":
                raise _NotXes(name, self.parser.CurrentLineNumber)
            self.root_seen, self.where = True, _LOG
        else:
            if name in _NESTED and self.where in (_TRACE, _EVENT):
                self.nested += 1  # a list or container, counted once with its contents
            if name == "event":
                self.stray_events += 1
            self.skip, self.skip_attr = 1, False

    def end(self, name: str) -> None:
        if self.skip:
            self.skip -= 1
            return
        if name == "event":
            self.n_events += 1
            self.where = _TRACE
        elif name == "trace":
            self.n_traces += 1
            self.where = _LOG


class _NotXes(Exception):
    def __init__(self, tag: str, line: int):
        self.tag, self.line = tag, line


def _columns(parts, n: int, lines: np.ndarray, what: str) -> tuple[dict, dict, list[Problem]]:
    """Typed dense columns (length n) from collected attributes, one per key.

    Returns the columns, the XES types of each key, and the problems found
    (values wrong for their declared type, attributes without a key).
    """
    rows, types, keys, values = parts
    problems: list[Problem] = []
    if not rows:
        return {}, {}, problems
    raw = pd.DataFrame({"row": np.asarray(rows, dtype=np.int64), "type": types, "key": keys, "value": values})
    for part in parts:  # the table holds them now (compactly): free the lists
        part.clear()
    nokey = raw["key"].isna().to_numpy()
    if nokey.any():
        at = lines[raw.loc[nokey, "row"].to_numpy()[:5]]
        problems.append(
            Problem(
                "malformed_xes",
                None,
                f"{_n(int(nokey.sum()), what + ' attribute')} have no key (in the {what}s at "
                f"line {', '.join(f'{x:,}' for x in at)}).",
                'give every attribute a key="...", or export the log again.',
            )
        )
        raw = raw.loc[~nokey]
    # a key repeated within one trace or event: the first value stands
    raw = raw.drop_duplicates(["row", "key"], keep="first")
    out: dict[str, object] = {}
    kinds: dict[str, set] = {}
    for key, g in raw.groupby("key", sort=False):
        kinds[key] = set(g["type"].unique())
        r = g["row"].to_numpy()
        v = g["value"]
        kind = kinds[key]
        if kind <= {"int", "float", "boolean"} and len(kind) > 0:
            if kind == {"boolean"}:
                low = v.astype("string").str.strip().str.lower()
                num = low.map({"true": 1.0, "1": 1.0, "false": 0.0, "0": 0.0})
            else:
                num = pd.to_numeric(v.astype("string").str.strip(), errors="coerce")
                if kind == {"int"}:
                    num = num.where(num.isna() | (num == np.round(num)))
            bad = num.isna().to_numpy() & v.notna().to_numpy()
            if bad.any():
                at = lines[r[bad][:5]]
                decl = "/".join(sorted(kind))
                problems.append(
                    Problem(
                        "malformed_xes",
                        str(key),
                        f"{_n(int(bad.sum()), 'value')} of {what} attribute {key!r}, declared <{decl}>, "
                        f"are not of that type: {', '.join(map(repr, v[bad].head(5)))} (in the "
                        f"{what}s at line {', '.join(f'{x:,}' for x in at)}).",
                        "correct those values, or declare the attribute as <string> if it is text.",
                    )
                )
                continue
            x = num.to_numpy(dtype="float64", na_value=np.nan)
            if kind == {"boolean"}:
                col = pd.array([pd.NA] * n, dtype="boolean")
                col[r] = x.astype(bool)
            elif kind == {"int"}:
                if len(r) == n and not np.isnan(x).any():
                    col = np.empty(n, dtype=np.int64)
                    col[r] = x.astype(np.int64)
                else:
                    col = pd.array(np.zeros(n, dtype=np.int64), dtype="Int64")
                    col[:] = pd.NA
                    col[r] = x.astype(np.int64)
            else:
                col = np.full(n, np.nan)
                col[r] = x
        else:
            col = np.full(n, None, dtype=object)
            col[r] = (
                v.to_numpy(dtype=object)
                if kind <= {"string", "id", "date"}
                else v.astype(str).to_numpy(dtype=object)
            )
        out[key] = col
    return out, kinds, problems


def _open(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _error(path: Path, kind: str, message: str, fix: str) -> InvalidEventLogError:
    return InvalidEventLogError([Problem(kind, None, message, fix)], source=str(path))


def _parse(path: Path) -> _Reader:
    parser = expat.ParserCreate()
    parser.buffer_text = True
    reader = _Reader(parser)
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    try:
        with _open(path) as f:
            parser.ParseFile(f)
    except expat.ExpatError as exc:
        msg = expat.errors.messages.get(exc.code, str(exc))
        codes = expat.errors.codes
        cut = exc.code in {
            codes[expat.errors.XML_ERROR_NO_ELEMENTS],
            codes[expat.errors.XML_ERROR_UNCLOSED_TOKEN],
        }
        raise _error(
            path,
            "malformed_xes",
            f"not well-formed XML at line {exc.lineno}, column {exc.offset + 1}: {msg}.",
            "the file ends early (an interrupted download or export?): download or export it again."
            if cut
            else f"look at line {exc.lineno} (an unescaped '&' or '<' in a value, or a tag left "
            "open?), or export the log again from the tool that wrote it.",
        ) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise _error(
            path,
            "malformed_xes",
            f"the compressed file cannot be read to its end ({exc}).",
            "the .gz file is truncated or damaged: download or export it again.",
        ) from exc
    except _NotXes as exc:
        raise _error(
            path,
            "malformed_xes",
            f"the root element (line {exc.line}) is <{exc.tag}>, not <log>: this is not an XES event log.",
            "export the log as XES from the process-mining tool, or read a CSV/Parquet export "
            "with read_events.",
        ) from exc
    return reader


def _with_lines(err: InvalidEventLogError, lines: np.ndarray, path: Path) -> InvalidEventLogError:
    """Add the XES line of each event row named in a validation error."""
    problems = []
    for p in err.problems:
        if p.rows:
            where = ", ".join(f"{r} at line {int(lines[r - 1]):,}" for r in p.rows[:5] if 0 < r <= len(lines))
            p = Problem(
                p.kind, p.column, f"{p.message} (events counted in file order: {where})", p.fix, p.rows
            )
        problems.append(p)
    return InvalidEventLogError(problems, source=str(path))


def read_xes(
    path: str | Path,
    *,
    stages: StageSet | str | Sequence[str] | None = None,
    lifecycle: str | None = "complete",
    segments: Sequence[str] | None = None,
    tz: str = "UTC",
    ignore: Sequence[str] | None = None,
    columns: Mapping[str, str] | None = None,
    missing_time: str = "error",
) -> pd.DataFrame:
    """Load an XES event log (``.xes`` or gzip-compressed ``.xes.gz``).

    Parameters
    ----------
    path : str or Path
        The file; gzip is recognised by its content, whatever the name.
    stages : StageSet, preset name, YAML path or list, optional
        Stage set the activity names (event ``concept:name``) are mapped onto;
        see :func:`funnelkit.validate_events`.
    lifecycle : str or None
        Keep only events whose ``lifecycle:transition`` is this (compared
        case-insensitively), when the log has that attribute; events without
        it are kept.  ``None`` keeps every event.  The load report counts what
        was left out.
    segments : list of str, optional
        Attribute columns to keep (default: all).
    tz : str
        The log's timezone: XES times carry UTC offsets and are converted to
        wall-clock time in ``tz``.  An IANA name or a ``tzinfo`` object, as in
        :func:`~funnelkit.validate_events`; numbers are an error.
    ignore : list of str, optional
        Activity names whose events are left out (counted in the load report).
    columns : mapping, optional
        Renames applied before validation, e.g. ``{"Amount": "amount"}`` to
        use a case attribute as the lead's value.  Without it the trace and
        event ``concept:name`` and ``time:timestamp`` are the lead, stage and
        time.
    missing_time : {"error", "keep"}
        Events without ``time:timestamp``: an error, or kept with an unknown
        time.

    Returns
    -------
    DataFrame
        The canonical event log, with a :class:`~funnelkit.data.LoadReport`
        in ``.attrs["funnelkit"]`` whose notes say what was read.

    Raises
    ------
    InvalidEventLogError
        For a file that is not well-formed XML (naming the line), not XES,
        truncated, or whose values are wrong for their declared type; and for
        every problem :func:`~funnelkit.validate_events` finds (with the XES
        line of each event it names).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> xes = '''<?xml version="1.0" encoding="UTF-8"?>
    ... <log xes.version="1.0">
    ...   <trace>
    ...     <string key="concept:name" value="case 1"/>
    ...     <float key="Amount" value="120.5"/>
    ...     <event>
    ...       <string key="concept:name" value="submitted"/>
    ...       <date key="time:timestamp" value="2024-03-01T09:00:00.000+01:00"/>
    ...       <string key="lifecycle:transition" value="complete"/>
    ...     </event>
    ...     <event>
    ...       <string key="concept:name" value="approved"/>
    ...       <date key="time:timestamp" value="2024-03-02T10:00:00.000+01:00"/>
    ...       <string key="lifecycle:transition" value="start"/>
    ...     </event>
    ...   </trace>
    ... </log>'''
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.xes"
    >>> _ = path.write_text(xes)
    >>> log = read_xes(path)
    >>> log[["lead_id", "stage", "timestamp", "Amount"]].values.tolist()
    [['case 1', 'submitted', Timestamp('2024-03-01 08:00:00'), 120.5]]
    >>> print(log.attrs["funnelkit"].notes[1])
    Lifecycle: kept 1 'complete' event; left out 1 'start' event (pass lifecycle=None to keep every event).
    """
    path = Path(path)
    if not path.exists():
        raise _missing_file(path)
    _check_missing_time(missing_time, str(path))
    tz = _check_tz(tz, str(path))  # before reading a large file
    reader = _parse(path)
    n, n_traces = reader.n_events, reader.n_traces
    log_name = reader.log_attrs.get("concept:name")
    if n == 0:
        raise _error(
            path,
            "no_events",
            f"the XES log{f' {log_name!r}' if log_name else ''} has {_n(n_traces, 'trace')} and no events.",
            "export the log again with its events.",
        )

    lines = np.asarray(reader.event_line, dtype=np.int64)
    trace_lines = np.asarray(reader.trace_line, dtype=np.int64)
    ev_cols, ev_kinds, problems = _columns(reader.ev, n, lines, "event")
    tr_cols, tr_kinds, tprobs = _columns(reader.tr, n_traces, trace_lines, "trace")
    problems += tprobs
    if problems:
        raise InvalidEventLogError(problems, source=str(path))

    # column names: event attributes as they are; trace attributes without a
    # prefix unless an event attribute (or a canonical column) has that key
    reserved = {*REQUIRED, _TRACE_NAME}
    event_names = {k: (f"event:{k}" if k in reserved else k) for k in ev_cols}
    taken = set(event_names.values()) | set(REQUIRED)
    trace_names = {
        k: _TRACE_NAME if k == "concept:name" else (f"case:{k}" if (k in taken or k in reserved) else k)
        for k in tr_cols
    }
    trace_of_event = np.asarray(reader.event_trace, dtype=np.int64)
    data: dict[str, object] = {}
    for k, col in tr_cols.items():
        data[trace_names[k]] = (
            col[trace_of_event] if isinstance(col, np.ndarray) else col.take(trace_of_event)
        )
    for k, col in ev_cols.items():
        data[event_names[k]] = col
    front = [_TRACE_NAME, _EVENT_NAME, _EVENT_TIME]
    for c in front:
        if c not in data:
            data[c] = np.full(n, None, dtype=object)
    df = pd.DataFrame({c: data[c] for c in front + [c for c in data if c not in front]})

    # other <date> attributes: datetimes in the log's zone
    dated = [trace_names[k] for k, t in tr_kinds.items() if t == {"date"}]
    dated += [event_names[k] for k, t in ev_kinds.items() if t == {"date"}]
    for name in dated:
        if name not in front:
            parsed, probs, _ = _parse_times(df[name], tz=tz, dayfirst=False, column=name)
            if probs:
                raise _with_lines(InvalidEventLogError(probs, source=str(path)), lines, path)
            df[name] = parsed

    notes = []
    parts = [f"XES log{f' {log_name!r}' if log_name else ''}: {_n(n_traces, 'trace')}, {_n(n, 'event')} read"]
    trace_cols = [trace_names[k] for k in tr_cols if k != "concept:name"]
    if trace_cols:
        parts.append(f"trace attributes as columns: {', '.join(trace_cols)}")
    renamed = [f"{k!r} as {v!r}" for k, v in trace_names.items() if k != "concept:name" and v != k]
    renamed += [f"{k!r} as {v!r}" for k, v in event_names.items() if v != k]
    if renamed:
        parts.append(f"renamed to avoid clashes: {', '.join(renamed)}")
    notes.append("; ".join(parts) + ".")
    empty_traces = n_traces - int(np.unique(trace_of_event).size)
    names = tr_cols.get("concept:name")
    if names is not None:
        shared = sum(1 for k, v in Counter(names).items() if v > 1 and k is not None)
        if shared:
            notes.append(
                f"{_n(shared, 'trace name')} {'occurs' if shared == 1 else 'occur'} in more than one "
                "trace: the events of those "
                "traces belong to one lead each."
            )
    if empty_traces:
        notes.append(f"{_n(empty_traces, 'trace')} without events add no lead.")
    if reader.nested:
        notes.append(f"{_n(reader.nested, 'nested, list or container attribute')} not read.")
    if reader.stray_events:
        notes.append(f"{_n(reader.stray_events, 'event')} outside any trace not read.")

    # lifecycle
    if lifecycle is not None and _LIFECYCLE in df.columns:
        lc = df[_LIFECYCLE].astype("string").str.strip().str.lower()
        has = lc.notna().to_numpy()
        match = (lc == str(lifecycle).lower()).fillna(False).to_numpy(dtype=bool)
        if not match.any():
            counts = lc.value_counts()
            raise _error(
                path,
                "unknown_lifecycle",
                f"no event has lifecycle:transition {lifecycle!r}; the log has "
                + ", ".join(f"{k!r} x{v:,}" for k, v in counts.items())
                + ".",
                f"pass lifecycle={counts.index[0]!r}, or lifecycle=None to keep every event.",
            )
        keep = match | ~has
        dropped = lc[~keep].value_counts()
        text = f"Lifecycle: kept {_n(int(match.sum()), repr(str(lifecycle).lower()) + ' event')}"
        if len(dropped):
            text += "; left out " + ", ".join(_n(int(v), f"{k!r} event") for k, v in dropped.items())
            text += " (pass lifecycle=None to keep every event)"
        if (~has).any():
            text += f"; kept {_n(int((~has).sum()), 'event')} without a lifecycle:transition"
        notes.append(text + ".")
        if not keep.all():
            df = df.loc[keep].reset_index(drop=True)
            lines = lines[keep]
    elif lifecycle is not None:
        notes.append("Lifecycle: the log has no lifecycle:transition attribute; every event kept.")

    targets = set((columns or {}).values())
    canon = {_TRACE_NAME: LEAD, _EVENT_NAME: STAGE, _EVENT_TIME: TIME}
    df = df.rename(columns={k: v for k, v in canon.items() if v not in targets and k not in (columns or {})})
    try:
        return validate_events(
            df,
            columns=columns,
            stages=stages,
            segments=segments,
            tz=tz,
            dayfirst=False,
            missing_time=missing_time,
            ignore=ignore,
            source=str(path),
            notes=notes,
            rows_read=n,
        )
    except InvalidEventLogError as err:
        raise _with_lines(err, lines, path) from None
