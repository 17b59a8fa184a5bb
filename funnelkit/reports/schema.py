"""The keys of a report plan, as data: what the plan loader accepts and its JSON Schema.

:data:`PLAN_KEYS` defines every key a plan file may have (its JSON Schema
fragment and a one-line description); :class:`funnelkit.reports.plan.Plan`
takes its allowed and required keys, the allowed ``read_options`` and their
enumerations from here, and :func:`plan_schema` publishes the same
definitions as a JSON Schema (draft 2020-12) for editors: with the YAML
language server (VS Code, JetBrains, Neovim), a first line

``# yaml-language-server: $schema=plan.schema.json``

gives completion and checks while a plan is written.  ``funnelkit
plan-schema`` writes the file; ``params/plan.schema.json`` is a copy kept in
sync by the tests.

Examples
--------
>>> s = plan_schema()
>>> s["required"], s["additionalProperties"]
(['data', 'stages'], False)
>>> sorted(s["properties"]["read_options"]["properties"]["missing_time"]["enum"])
['error', 'keep']
"""

from __future__ import annotations

import inspect
import json

from ..stages import PRESETS

__all__ = ["PLAN_KEYS", "REQUIRED_KEYS", "READ_OPTION_KEYS", "MISSING_TIME", "THOUSANDS", "DECIMAL",
           "plan_schema", "schema_text"]

#: ``read_options: missing_time`` values.
MISSING_TIME = ("error", "keep")
#: Thousands separators a plan may choose.
THOUSANDS = (",", ".", " ", "'", "")
#: Decimal marks a plan may choose.
DECIMAL = (".", ",")
#: Keys a plan must have.
REQUIRED_KEYS = ("data", "stages")

_STRING_LIST = {"type": "array", "items": {"type": "string"}, "minItems": 1}
_SEGMENT_VALUES = {
    "anyOf": [
        {"type": "array", "items": {"type": ["string", "number"]}, "minItems": 1},
        {"const": "all"},
        {"type": "null"},
    ]
}

#: read_options keys whose values have a known shape; the others are read_events options
#: passed through as they are (see :func:`read_option_keys`).
_READ_OPTION_SHAPES = {
    "tz": {"type": "string", "description": "time zone of the log, an IANA name such as Europe/Paris"},
    "dayfirst": {"type": "boolean", "description": "numeric dates are day first (31/01/2025)"},
    "missing_time": {"enum": list(MISSING_TIME),
                     "description": "a blank event time is an error, or kept as an event of unknown time"},
    "ignore": {**_STRING_LIST, "description": "stage labels left out of the log (counted in the load report)"},
    "sep": {"type": "string", "description": "CSV field separator"},
    "encoding": {"type": "string", "description": "text encoding of a CSV file"},
    "decimal": {"type": "string", "description": "decimal mark of amounts in a CSV file"},
    "snapshot": {"type": "object", "description": "a CRM snapshot: {stage: column, dates: {stage: column}}"},
    "wide": {"type": "object", "description": "one date column per stage: {prefix: 'Date entered '}"},
}


def read_option_keys() -> tuple[str, ...]:
    """The keys ``read_options`` accepts: the keyword options of :func:`funnelkit.read_events`
    (whatever this version has, except ``columns`` and ``stages``, which are plan keys), plus
    the shapes ``snapshot`` and ``wide``."""
    from ..data import read_events

    names = {name for name, p in inspect.signature(read_events).parameters.items()
             if p.kind is p.KEYWORD_ONLY and name not in {"columns", "stages"}}
    return tuple(sorted(names | {"snapshot", "wide"}))


READ_OPTION_KEYS = read_option_keys()

#: Every plan key: a JSON Schema fragment with a description.
PLAN_KEYS: dict[str, dict] = {
    "data": {"type": "string", "minLength": 1,
             "description": "event log file (CSV, Parquet or XES), relative to the plan file, or 'demo'"},
    "columns": {"type": "object",
                "additionalProperties": {"enum": ["lead_id", "stage", "timestamp", "amount"]},
                "description": "your column names -> lead_id, stage, timestamp, amount"},
    "stages": {"anyOf": [
                   {"type": "string", "minLength": 1},
                   {"type": "object",
                    "properties": {"default": {"type": "string", "minLength": 1}},
                    "additionalProperties": {"type": "object", "minProperties": 1,
                                             "additionalProperties": {"type": "string", "minLength": 1}},
                    # exactly one segment column besides 'default'
                    "anyOf": [{"required": ["default"], "minProperties": 2, "maxProperties": 2},
                              {"not": {"required": ["default"]}, "minProperties": 1, "maxProperties": 1}]}],
               "description": f"a stage-set preset ({', '.join(PRESETS)}) or a stage-set YAML file; or a set "
                              "per value of one segment column: {default: pipeline4, product: {Enterprise: "
                              "enterprise_stages.yaml}}",
               "examples": list(PRESETS)},
    "read_options": {"type": "object",
                     "properties": {k: _READ_OPTION_SHAPES.get(k, {}) for k in READ_OPTION_KEYS},
                     "additionalProperties": False,
                     "description": "options of funnelkit.read_events, or the shape of a snapshot or wide table"},
    "splits": {"anyOf": [{"type": "string"}, _STRING_LIST,
                         {"type": "object", "additionalProperties": _SEGMENT_VALUES, "minProperties": 1}],
               "description": "segment columns: one report per value (a list), or column -> list of values"},
    "segment": {"type": "object", "minProperties": 1, "maxProperties": 1,
                "additionalProperties": {"type": ["string", "number"]},
                "description": "instead of splits: one report, {column: value}"},
    "overall": {"type": "boolean", "description": "also one report over all leads"},
    "month": {"type": "string", "pattern": r"^\d{4}-\d{2}$",
              "description": "the month reported, 'YYYY-MM' (quoted); --month overrides it"},
    "as_of": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$",
              "description": "as-of date 'YYYY-MM-DD' (default: the end of the month)"},
    "target": {"anyOf": [{"type": "number", "minimum": 0},
                         {"type": "object",
                          "additionalProperties": {"anyOf": [
                              {"type": "number", "minimum": 0},
                              {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}}]}}],
               "description": "monthly revenue target: a number, or per split value, with an optional default"},
    "title": {"type": "string", "minLength": 1, "description": "report title (segment and month are added)"},
    "currency": {"type": "string", "maxLength": 5,
                 "description": "a symbol before amounts ('€', '$') or a code after them ('EUR')"},
    "thousands": {"enum": [*THOUSANDS, None], "description": "thousands separator (default ',')"},
    "decimal": {"enum": list(DECIMAL), "description": "decimal mark (default ',' when thousands is '.')"},
    "noun": {"type": "string", "minLength": 1, "maxLength": 30,
             "description": "what the leads are called in sentences: leads, deals, visitors..."},
    "only": {"anyOf": [{"type": "string"}, _STRING_LIST,
                       {"type": "object", "additionalProperties": _SEGMENT_VALUES}],
             "description": "run a subset: ['product=Starter', 'source'] or {product: [Starter]}"},
    "template": {"type": "string", "description": "notebook template (default: the one in the package)"},
    "output": {"type": "string", "description": "folder for <month>/<split>/<value>.html (default reports)"},
    "parameters": {"type": "object", "description": "further template parameters, checked against the template"},
    "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "seconds allowed per notebook cell"},
    "description": {"type": "string", "description": "free text"},
    "derive": {"type": "object",
               "additionalProperties": {"oneOf": [
                   {"type": "object", "required": ["bands"], "additionalProperties": False,
                    "properties": {"bands": {
                        "type": "object", "required": ["edges", "labels"], "additionalProperties": False,
                        "properties": {"edges": {"type": "array", "items": {"type": "number"}, "minItems": 1},
                                       "labels": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                                       "column": {"type": "string"}}}}},
                   {"type": "object", "required": ["map"], "additionalProperties": False,
                    "properties": {"map": {
                        "type": "object", "required": ["column", "values"], "additionalProperties": False,
                        "properties": {"column": {"type": "string"},
                                       "values": {"type": "object", "additionalProperties": {"type": "string"},
                                                  "minProperties": 1},
                                       "other": {"type": "string"}}}}}]},
               "description": "segment columns made from the data, per lead: deal-size bands of the amount "
                              "{bands: {edges, labels}} or a column mapped through a dictionary "
                              "{map: {column, values, other}}; usable in splits"},
}


def plan_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a plan file, from :data:`PLAN_KEYS`.

    Examples
    --------
    >>> sorted(plan_schema()["properties"])[:3]
    ['as_of', 'columns', 'currency']
    """
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "funnelkit report plan",
        "description": "Which monthly reports to run, on which data (funnelkit report PLAN.yaml).",
        "type": "object",
        "properties": PLAN_KEYS,
        "required": list(REQUIRED_KEYS),
        "additionalProperties": False,
        "not": {"required": ["splits", "segment"]},
    }


def schema_text() -> str:
    """:func:`plan_schema` as the text of ``plan.schema.json`` (sorted keys, 2-space indent).

    Examples
    --------
    >>> import json
    >>> text = schema_text()
    >>> text.splitlines()[:2]
    ['{', '  "$schema": "https://json-schema.org/draft/2020-12/schema",']
    >>> json.loads(text)["required"]
    ['data', 'stages']
    """
    return json.dumps(plan_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
