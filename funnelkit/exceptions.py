"""Typed errors and warnings raised by funnelkit.

Every error funnelkit raises on purpose derives from :class:`FunnelkitError`,
so ``except funnelkit.FunnelkitError`` catches them all.  Errors about input
data also derive from :class:`ValueError` so generic code keeps working.

Messages follow one rule: name the column, the rows and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "FunnelkitError",
    "InvalidEventLogError",
    "Problem",
    "StageSetError",
    "DataWarning",
    "ReportError",
    "PlanError",
    "FunnelSpecError",
    "PipelineError",
    "TransitionModelError",
    "ForecastError",
]


class FunnelkitError(Exception):
    """Base class of every error raised by funnelkit."""


class StageSetError(FunnelkitError, ValueError):
    """A stage set (preset or YAML) is malformed or unknown."""


class ReportError(FunnelkitError, RuntimeError):
    """A report could not be produced."""


class PlanError(FunnelkitError, ValueError):
    """A report plan (YAML) is malformed: unknown keys, missing values."""


class ForecastError(FunnelkitError, ValueError):
    """A forecast, plan or backtest cannot be computed as asked."""


class FunnelSpecError(FunnelkitError, ValueError):
    """A funnel option is malformed: unknown mode, step or window, bad benchmark."""


class PipelineError(FunnelkitError, ValueError):
    """A pipeline question cannot be answered as asked (bad date, threshold, ...)."""


class TransitionModelError(FunnelkitError, ValueError):
    """The transition model cannot be fitted or queried as asked."""


class DataWarning(UserWarning):
    """Something in the input was changed or flagged, and the user should know.

    Used for exact duplicate events that were dropped (with their count), and
    similar changes that are safe but must not be silent.
    """


@dataclass(frozen=True)
class Problem:
    """One problem found while validating an event log.

    Attributes
    ----------
    kind : str
        Short machine-readable kind, e.g. ``"missing_column"``,
        ``"bad_timestamp"``, ``"unknown_stage"``.
    column : str or None
        The column the problem is in (the user's name for it).
    message : str
        What is wrong, naming rows and values.
    fix : str
        What the user can do about it.
    rows : tuple of int
        Row numbers involved (1-based data rows, header excluded), first few.
    """

    kind: str
    column: str | None
    message: str
    fix: str = ""
    rows: tuple[int, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        where = f"[{self.column}] " if self.column else ""
        text = f"{where}{self.message}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text


class InvalidEventLogError(FunnelkitError, ValueError):
    """The input cannot be read as an event log.

    All problems found are collected and reported together, so one run shows
    everything that needs fixing (a missing column, a bad date and an unknown
    stage arrive in one message).

    Attributes
    ----------
    problems : list of Problem
    source : str
        Where the data came from (file path or ``"DataFrame"``).
    """

    def __init__(self, problems: Sequence[Problem], source: str = "DataFrame"):
        self.problems = list(problems)
        self.source = source
        n = len(self.problems)
        head = f"{source}: {n} problem{'s' if n != 1 else ''} found in the event log:"
        body = "\n".join(f"  {i}. {p}" for i, p in enumerate(self.problems, 1))
        super().__init__(f"{head}\n{body}")

    @property
    def kinds(self) -> list[str]:
        """The kinds of the problems, in order."""
        return [p.kind for p in self.problems]
