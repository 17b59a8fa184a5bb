"""Derived segment columns: deal-size bands and values mapped through a dictionary.

A report per deal size, or per region when the data has countries, needs a
segment column the data does not have.  These functions add one to a
canonical event log, **per lead** (every event of a lead gets the same
value, so a lead never switches segments between its events):

* :func:`amount_bands` - the lead's deal value (its last known amount) cut
  at edges into named bands;
* :func:`mapped` - another segment column's values mapped through a
  dictionary (values not in it become ``other``);
* :func:`derive` - both, from the mapping a report plan's ``derive:`` key
  holds.

Examples
--------
>>> import funnelkit as fk
>>> log = fk.datasets.load_demo()
>>> sized = amount_bands(log, name="deal_size", edges=[0, 10_000, 50_000], labels=["small", "medium", "large"])
>>> sized.drop_duplicates("lead_id")["deal_size"].value_counts(sort=False).to_dict()
{'small': 3440, 'medium': 1824, 'large': 736, 'no amount': 0}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .data import AMOUNT, LEAD, TIME
from .exceptions import FunnelkitError

__all__ = ["DerivedSegmentError", "amount_bands", "mapped", "derive", "NO_AMOUNT"]

#: Band of a lead with no known amount.
NO_AMOUNT = "no amount"


class DerivedSegmentError(FunnelkitError, ValueError):
    """A derived segment cannot be made: a missing column, bad edges or labels.

    Examples
    --------
    >>> import funnelkit as fk
    >>> issubclass(DerivedSegmentError, fk.FunnelkitError), issubclass(DerivedSegmentError, ValueError)
    (True, True)

    Raised for band edges that do not increase:

    >>> amount_bands(fk.datasets.load_demo(), name="size", edges=[10_000, 0], labels=["a", "b"])
    Traceback (most recent call last):
    ...
    funnelkit.segments.DerivedSegmentError: edges must be increasing numbers, got [10000, 0].
    """


def _new_column(log: pd.DataFrame, name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise DerivedSegmentError(f"a derived segment needs a column name, got {name!r}.")
    if name in log.columns:
        raise DerivedSegmentError(f"column {name!r} is already in the log; give the derived segment another name.")


def _lead_value(log: pd.DataFrame, *, lead: str, time: str, amount: str) -> pd.Series:
    """Each lead's last known amount (by time; undated events first), indexed by lead."""
    known = log.loc[log[amount].notna(), [lead, time, amount]]
    known = known.sort_values([lead, time], kind="stable", na_position="first")
    return known.groupby(lead, sort=False, observed=True)[amount].last()


def amount_bands(
    log: pd.DataFrame,
    *,
    name: str,
    edges: Sequence[float],
    labels: Sequence[str],
    lead: str = LEAD,
    time: str = TIME,
    amount: str = AMOUNT,
) -> pd.DataFrame:
    """Add a column naming each lead's deal-size band.

    ``labels[i]`` is the band of a lead whose value (its last known
    ``amount``) is at least ``edges[i]`` and below ``edges[i + 1]``; the last
    band is open-ended and a value below ``edges[0]`` falls in the first.  A
    lead without any amount is in :data:`NO_AMOUNT`.

    Parameters
    ----------
    log : DataFrame
        A canonical event log.
    name : str
        The new column.
    edges : sequence of float
        Increasing lower bounds, one per band.
    labels : sequence of str
        One name per band.
    lead, time, amount : str
        Column names.

    Returns
    -------
    DataFrame
        A copy of the log with the categorical column ``name`` (bands in
        order, then :data:`NO_AMOUNT`).

    Raises
    ------
    DerivedSegmentError
        No amount column, edges not increasing, labels not one per edge.

    Examples
    --------
    >>> import pandas as pd
    >>> log = pd.DataFrame({"lead_id": ["a", "a", "b", "c"], "stage": ["s"] * 4,
    ...                     "timestamp": pd.to_datetime(["2025-01-01", "2025-02-01", "2025-01-01", "2025-01-01"]),
    ...                     "amount": [500.0, 20_000.0, 9_999.0, None]})
    >>> amount_bands(log, name="size", edges=[0, 10_000], labels=["small", "large"])["size"].tolist()
    ['large', 'large', 'small', 'no amount']
    """
    _new_column(log, name)
    if amount not in log.columns:
        raise DerivedSegmentError(f"deal-size bands need the column {amount!r}, which the log does not have.")
    e = np.asarray(edges, dtype=float)
    if e.size == 0 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise DerivedSegmentError(f"edges must be increasing numbers, got {list(edges)!r}.")
    labels = [str(x) for x in labels]
    if len(labels) != e.size or len(set(labels)) != len(labels):
        raise DerivedSegmentError(f"give one distinct label per edge: {e.size} edges, labels {labels!r}.")
    value = _lead_value(log, lead=lead, time=time, amount=amount)
    band = np.clip(np.searchsorted(e, value.to_numpy(dtype=float), side="right") - 1, 0, e.size - 1)
    per_lead = pd.Series(np.asarray(labels, dtype=object)[band], index=value.index)
    col = log[lead].map(per_lead).fillna(NO_AMOUNT).astype(object)
    out = log.copy()
    out[name] = pd.Categorical(col, categories=[*labels, NO_AMOUNT])
    return out


def mapped(
    log: pd.DataFrame,
    *,
    name: str,
    column: str,
    values: Mapping[object, str],
    other: str = "other",
    lead: str = LEAD,
) -> pd.DataFrame:
    """Add a column with another column's values mapped through a dictionary, per lead.

    Each lead takes the mapping of its first non-missing value of
    ``column``; values not in ``values`` (and leads without one) become
    ``other``.

    Examples
    --------
    >>> import pandas as pd
    >>> log = pd.DataFrame({"lead_id": ["a", "b", "c"], "country": ["FR", "US", "JP"]})
    >>> mapped(log, name="region", column="country", values={"FR": "Europe", "US": "Americas"})["region"].tolist()
    ['Europe', 'Americas', 'other']
    """
    _new_column(log, name)
    if column not in log.columns:
        raise DerivedSegmentError(f"column {column!r} is not in the log; columns present: "
                                  f"{', '.join(map(str, log.columns))}.")
    if not isinstance(values, Mapping) or not values:
        raise DerivedSegmentError(f"values must be a mapping of {column} values to segment names, got {values!r}.")
    keys = {str(k): str(v) for k, v in values.items()}
    first = log.loc[log[column].notna(), [lead, column]].drop_duplicates(lead)
    per_lead = pd.Series(first[column].astype(str).map(keys).fillna(str(other)).to_numpy(), index=first[lead])
    col = log[lead].map(per_lead).fillna(str(other)).astype(object)
    cats = list(dict.fromkeys([*keys.values(), str(other)]))
    out = log.copy()
    out[name] = pd.Categorical(col, categories=cats)
    return out


def derive(log: pd.DataFrame, spec: Mapping[str, Mapping] | None) -> pd.DataFrame:
    """The derived segments of a report plan's ``derive:`` key, added in order.

    ``spec`` maps each new column to ``{bands: {edges: [...], labels: [...]}}``
    (deal size; optional ``column``, default ``amount``) or ``{map: {column:
    ..., values: {...}, other: ...}}``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> log = derive(fk.datasets.load_demo(), {"tier": {"map": {"column": "product",
    ...              "values": {"Starter": "self-serve", "Professional": "sales", "Enterprise": "sales"}}}})
    >>> sorted(log["tier"].unique())
    ['sales', 'self-serve']
    """
    if not spec:
        return log
    if not isinstance(spec, Mapping):
        raise DerivedSegmentError(f"derive: give a mapping of new column names to rules, got {spec!r}.")
    for name, rule in spec.items():
        if not isinstance(rule, Mapping) or len(rule) != 1 or next(iter(rule)) not in ("bands", "map"):
            raise DerivedSegmentError(f"derive: {name}: give either {{bands: ...}} or {{map: ...}}, got {rule!r}.")
        (kind, args), = rule.items()
        if not isinstance(args, Mapping):
            raise DerivedSegmentError(f"derive: {name}: {kind}: give a mapping, got {args!r}.")
        try:
            if kind == "bands":
                extra = set(args) - {"edges", "labels", "column"}
                if extra or "edges" not in args or "labels" not in args:
                    raise DerivedSegmentError(f"bands takes edges, labels and optionally column; got {sorted(args)}.")
                log = amount_bands(log, name=str(name), edges=args["edges"], labels=args["labels"],
                                   amount=str(args.get("column", AMOUNT)))
            else:
                extra = set(args) - {"column", "values", "other"}
                if extra or "column" not in args or "values" not in args:
                    raise DerivedSegmentError(f"map takes column, values and optionally other; got {sorted(args)}.")
                log = mapped(log, name=str(name), column=str(args["column"]), values=args["values"],
                             other=str(args.get("other", "other")))
        except DerivedSegmentError as exc:
            raise DerivedSegmentError(f"derive: {name}: {exc}") from None
    return log
