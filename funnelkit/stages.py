"""Stage sets: the ordered stages a lead moves through, as data.

A :class:`StageSet` is an ordered list of *stages* plus the terminal
*outcomes*: one ``won`` outcome (the goal; it is the funnel's last step) and
zero or more ``lost`` outcomes (a lead leaves the process).  Marketing
funnels usually have no outcomes: their last stage is the goal.

Presets cover the models in the domain (see :data:`PRESETS`); teams define
their own in YAML::

    name: enterprise
    stages: [qualification, discovery, demo, proposal, negotiation]
    won: closed won
    lost: [closed lost, disqualified]
    aliases:              # labels found in the data -> stage names
      Demo scheduled: demo
      Contract sent: proposal

Labels in the data are matched to the set after normalising case, spaces,
hyphens and underscores (``"Closed-Won"`` matches ``closed won``), then via
``aliases``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .exceptions import StageSetError

__all__ = [
    "StageSet",
    "SegmentStageSets",
    "is_segment_spec",
    "PRESETS",
    "get_stage_set",
    "normalize_label",
    "LOST_ORDER",
]

#: Order code given to lost outcomes: below every stage, so they never count
#: as progress through the funnel.
LOST_ORDER = -1


def normalize_label(label: object) -> str:
    """Normalise a stage label for matching: lower case, single spaces.

    Examples
    --------
    >>> normalize_label("  Closed_Won ")
    'closed won'
    """
    text = str(label).strip().lower()
    return re.sub(r"[\s_\-]+", " ", text)


@dataclass(frozen=True)
class StageSet:
    """An ordered set of stages with terminal outcomes.

    Parameters
    ----------
    name : str
        Short identifier, e.g. ``"pipeline4"``.
    stages : sequence of str
        The ordered stages, first (top of the funnel) to last.
    won : str, optional
        The winning outcome.  When given it is the funnel's final step.
    lost : sequence of str
        Outcomes that take a lead out of the process without winning.
    aliases : mapping, optional
        Labels used in the data mapped to stage or outcome names.
    description : str
        One line saying what the set models.
    horizon_days : int, optional
        How long a lead may take to move on from a stage: a lead that has
        not moved on (nor reached an outcome) within it counts as dropped,
        and only leads that entered a stage at least this long ago are used
        for its conversion rate.  ``None``: learned from the log (see
        :mod:`funnelkit.funnel`).
    infer_skipped : bool, optional
        Whether a lead seen at a later stage passed the stages it skipped
        (sales pipelines: stages are skipped in data entry) or not (web and
        marketing funnels: a purchase without a cart is not a cart).
        ``None``: inferred when the set has a ``lost`` outcome (a sales
        pipeline), not otherwise.
    value : {"last", "sum"}
        A lead's value: the last known amount (a deal's size, updated as it
        moves) or the sum over its events (purchases in a clickstream).

    Examples
    --------
    >>> s = StageSet("mini", ["lead", "demo", "offer"], won="won", lost=["lost"])
    >>> s.steps
    ('lead', 'demo', 'offer', 'won')
    >>> s.order("Offer"), s.order("lost")
    (2, -1)
    """

    name: str
    stages: tuple[str, ...]
    won: str | None = None
    lost: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    horizon_days: int | None = None
    infer_skipped: bool | None = None
    value: str = "last"

    def __init__(
        self,
        name: str,
        stages: Sequence[str],
        *,
        won: str | None = None,
        lost: Sequence[str] | str = (),
        aliases: Mapping[str, str] | None = None,
        description: str = "",
        horizon_days: int | None = None,
        infer_skipped: bool | None = None,
        value: str = "last",
    ):
        if isinstance(lost, str):
            lost = (lost,)
        object.__setattr__(self, "name", str(name))
        object.__setattr__(self, "stages", tuple(str(s) for s in stages))
        object.__setattr__(self, "won", None if won is None else str(won))
        object.__setattr__(self, "lost", tuple(str(s) for s in lost))
        object.__setattr__(self, "aliases", dict(aliases or {}))
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "horizon_days", horizon_days)
        object.__setattr__(self, "infer_skipped", infer_skipped)
        object.__setattr__(self, "value", value)
        self._validate()

    # -- construction -----------------------------------------------------
    def _validate(self) -> None:
        where = f"stage set {self.name!r}"
        if self.horizon_days is not None and (
            isinstance(self.horizon_days, bool)
            or not isinstance(self.horizon_days, (int, float))
            or not self.horizon_days > 0
        ):
            raise StageSetError(
                f"{where}: horizon_days must be a positive number of days, got {self.horizon_days!r}."
            )
        if self.infer_skipped is not None and not isinstance(self.infer_skipped, bool):
            raise StageSetError(f"{where}: infer_skipped must be true or false, got {self.infer_skipped!r}.")
        if self.value not in ("last", "sum"):
            raise StageSetError(f"{where}: value must be 'last' or 'sum', got {self.value!r}.")
        if not self.stages:
            raise StageSetError(f"{where}: 'stages' is empty; list at least one stage.")
        labels = list(self.stages) + ([self.won] if self.won else []) + list(self.lost)
        seen: dict[str, str] = {}
        for lab in labels:
            key = normalize_label(lab)
            if not key:
                raise StageSetError(f"{where}: a stage name is empty.")
            if key in seen:
                raise StageSetError(
                    f"{where}: {lab!r} appears twice (as {seen[key]!r} too); "
                    "every stage and outcome needs its own name."
                )
            seen[key] = lab
        for alias, target in self.aliases.items():
            if normalize_label(target) not in seen:
                raise StageSetError(
                    f"{where}: alias {alias!r} points to {target!r}, which is not a "
                    f"stage or outcome. Known: {', '.join(labels)}."
                )

    @classmethod
    def from_dict(cls, spec: Mapping[str, object], *, source: str = "dict") -> StageSet:
        """Build a stage set from a mapping (as read from YAML).

        Examples
        --------
        >>> StageSet.from_dict({"name": "crm", "stages": ["new", "demo"], "won": "signed", "lost": "dropped"})
        <StageSet crm: new > demo (won='signed', lost=['dropped'])>
        """
        if not isinstance(spec, Mapping):
            raise StageSetError(f"{source}: a stage set must be a mapping, got {type(spec).__name__}.")
        allowed = {"name", "stages", "won", "lost", "aliases", "description", "horizon_days",
                   "infer_skipped", "value"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise StageSetError(
                f"{source}: unknown key(s) {unknown}; allowed keys are {sorted(allowed)}."
            )
        if "stages" not in spec:
            raise StageSetError(f"{source}: the key 'stages' (an ordered list) is required.")
        stages = spec["stages"]
        if isinstance(stages, str) or not isinstance(stages, Iterable):
            raise StageSetError(f"{source}: 'stages' must be a list of names, got {stages!r}.")
        lost = spec.get("lost") or ()
        return cls(
            str(spec.get("name", Path(source).stem)),
            list(stages),
            won=spec.get("won"),  # type: ignore[arg-type]
            lost=lost,  # type: ignore[arg-type]
            aliases=spec.get("aliases") or {},  # type: ignore[arg-type]
            description=str(spec.get("description", "")),
            horizon_days=spec.get("horizon_days"),  # type: ignore[arg-type]
            infer_skipped=spec.get("infer_skipped"),  # type: ignore[arg-type]
            value=str(spec.get("value", "last")),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> StageSet:
        """Read a stage set from a YAML file, validating it.

        Raises
        ------
        StageSetError
            If the file is not valid YAML or the set is malformed.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "enterprise.yaml"
        ...     _ = path.write_text("stages: [qualification, demo, proposal]\\n"
        ...                         "won: closed won\\nlost: [closed lost]\\n", encoding="utf-8")
        ...     ss = StageSet.from_yaml(path)
        >>> ss
        <StageSet enterprise: qualification > demo > proposal (won='closed won', lost=['closed lost'])>
        """
        path = Path(path)
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise StageSetError(f"{path}: not valid YAML: {exc}") from exc
        except OSError as exc:
            raise StageSetError(f"{path}: cannot read the stage set file: {exc}") from exc
        return cls.from_dict(spec, source=str(path))

    def to_dict(self) -> dict[str, object]:
        """The set as a plain mapping (the YAML schema).

        Examples
        --------
        >>> s = StageSet("mini", ["lead", "demo", "offer"], won="won", lost=["lost"])
        >>> s.to_dict()
        {'name': 'mini', 'stages': ['lead', 'demo', 'offer'], 'won': 'won', 'lost': ['lost']}
        >>> StageSet.from_dict(s.to_dict()) == s
        True
        """
        out: dict[str, object] = {"name": self.name, "stages": list(self.stages)}
        if self.won:
            out["won"] = self.won
        if self.lost:
            out["lost"] = list(self.lost)
        if self.aliases:
            out["aliases"] = dict(self.aliases)
        if self.description:
            out["description"] = self.description
        if self.horizon_days is not None:
            out["horizon_days"] = self.horizon_days
        if self.infer_skipped is not None:
            out["infer_skipped"] = self.infer_skipped
        if self.value != "last":
            out["value"] = self.value
        return out

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Write the set as YAML (to ``path`` if given) and return the text.

        Examples
        --------
        >>> s = StageSet("mini", ["lead", "demo"], won="won", aliases={"Demo booked": "demo"})
        >>> print(s.to_yaml(), end="")
        name: mini
        stages:
        - lead
        - demo
        won: won
        aliases:
          Demo booked: demo
        """
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    # -- queries -------------------------------------------------------
    @property
    def steps(self) -> tuple[str, ...]:
        """The funnel's steps: the stages, then the ``won`` outcome if any."""
        return self.stages + ((self.won,) if self.won else ())

    @property
    def infers_skipped(self) -> bool:
        """Whether skipped stages are inferred by default (see ``infer_skipped``)."""
        return bool(self.lost) if self.infer_skipped is None else self.infer_skipped

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Terminal outcomes: ``won`` (if any) then the ``lost`` ones."""
        return ((self.won,) if self.won else ()) + self.lost

    @property
    def labels(self) -> tuple[str, ...]:
        """Every name in the set: steps then lost outcomes."""
        return self.steps + self.lost

    def _lookup(self) -> dict[str, str]:
        table = {normalize_label(lab): lab for lab in self.labels}
        for alias, target in self.aliases.items():
            table[normalize_label(alias)] = table[normalize_label(target)]
        return table

    def canonical(self, label: object) -> str | None:
        """The stage or outcome a data label stands for, or ``None``.

        Examples
        --------
        Case, spaces, hyphens and underscores do not matter; aliases are followed:

        >>> pipeline4 = get_stage_set("pipeline4")
        >>> pipeline4.canonical("Closed-Won"), pipeline4.canonical("PROPOSAL")
        ('won', 'proposal')
        >>> print(pipeline4.canonical("churned"))
        None
        """
        return self._lookup().get(normalize_label(label))

    def order(self, label: object) -> int:
        """Position of a label in the funnel: 0.. for steps, -1 for lost.

        Raises
        ------
        StageSetError
            If the label is not part of the set.

        Examples
        --------
        >>> pipeline4 = get_stage_set("pipeline4")
        >>> pipeline4.order("qualification"), pipeline4.order("Proposal"), pipeline4.order("won")
        (0, 2, 4)
        >>> pipeline4.order("Closed Lost")  # lost outcomes rank below every stage
        -1
        """
        name = self.canonical(label)
        if name is None:
            raise StageSetError(f"{label!r} is not a stage of {self.name!r}: {', '.join(self.labels)}.")
        if name in self.lost:
            return LOST_ORDER
        return self.steps.index(name)

    def is_outcome(self, label: object) -> bool:
        """True for the won and lost outcomes.

        Examples
        --------
        >>> pipeline4 = get_stage_set("pipeline4")
        >>> pipeline4.is_outcome("Closed Lost"), pipeline4.is_outcome("won"), pipeline4.is_outcome("meeting")
        (True, True, False)
        """
        return self.canonical(label) in self.outcomes

    def suggest(self, label: object, n: int = 3) -> list[str]:
        """Close matches among the set's names for an unknown label.

        Examples
        --------
        >>> pipeline4 = get_stage_set("pipeline4")
        >>> pipeline4.suggest("proposl"), pipeline4.suggest("meting"), pipeline4.suggest("xyz")
        (['proposal'], ['meeting'], [])
        """
        keys = self._lookup()
        hits = difflib.get_close_matches(normalize_label(label), list(keys), n=n, cutoff=0.5)
        out: list[str] = []
        for h in hits:
            if keys[h] not in out:
                out.append(keys[h])
        return out

    def with_aliases(self, aliases: Mapping[str, str]) -> StageSet:
        """A copy with extra data-label aliases.

        Examples
        --------
        >>> pipeline4 = get_stage_set("pipeline4")
        >>> mine = pipeline4.with_aliases({"Demo booked": "meeting"})
        >>> mine.canonical("demo booked"), pipeline4.canonical("demo booked")
        ('meeting', None)
        """
        merged = {**self.aliases, **aliases}
        return StageSet(
            self.name,
            self.stages,
            won=self.won,
            lost=self.lost,
            aliases=merged,
            description=self.description,
            horizon_days=self.horizon_days,
            infer_skipped=self.infer_skipped,
            value=self.value,
        )

    def __repr__(self) -> str:
        arrow = " > ".join(self.stages)
        tail = []
        if self.won:
            tail.append(f"won={self.won!r}")
        if self.lost:
            tail.append(f"lost={list(self.lost)!r}")
        extra = f" ({', '.join(tail)})" if tail else ""
        return f"<StageSet {self.name}: {arrow}{extra}>"


#: How CRMs commonly label the two outcomes.
_CRM_OUTCOMES = {"closed won": "won", "closed lost": "lost"}

PRESETS: dict[str, StageSet] = {
    s.name: s
    for s in [
        StageSet(
            "pipeline4",
            ["qualification", "meeting", "proposal", "close"],
            won="won",
            lost=["lost"],
            aliases=_CRM_OUTCOMES,
            description="Classic four-stage sales pipeline.",
            horizon_days=90,
            infer_skipped=True,
        ),
        StageSet(
            "pipeline6",
            ["prospecting", "qualification", "meeting", "relationship", "proposal", "close"],
            won="won",
            lost=["lost"],
            aliases=_CRM_OUTCOMES,
            description="Six-stage sales pipeline: prospecting first, relationship building "
            "between meeting and proposal.",
            horizon_days=90,
            infer_skipped=True,
        ),
        StageSet(
            "aida",
            ["awareness", "interest", "desire", "action"],
            description="AIDA marketing funnel.",
            infer_skipped=False,
        ),
        StageSet(
            "marketing5",
            ["awareness", "consideration", "conversion", "loyalty", "advocacy"],
            description="Five-stage marketing funnel.",
            infer_skipped=False,
        ),
        StageSet(
            "tofu_mofu_bofu",
            ["top", "middle", "bottom"],
            aliases={"tofu": "top", "mofu": "middle", "bofu": "bottom"},
            description="Top, middle and bottom of the marketing funnel.",
            infer_skipped=False,
        ),
        StageSet(
            "sales_funnel6",
            ["awareness", "interest", "desire", "evaluation", "sale", "retention"],
            aliases={"purchase": "sale"},
            description="Six-stage sales funnel (awareness to retention).",
            infer_skipped=False,
        ),
    ]
}


def get_stage_set(spec: StageSet | str | Path | Mapping[str, object] | Sequence[str]) -> StageSet:
    """Resolve a stage set from a preset name, a YAML path, a mapping or a list.

    Examples
    --------
    >>> get_stage_set("pipeline4").steps
    ('qualification', 'meeting', 'proposal', 'close', 'won')
    >>> get_stage_set(["visit", "signup", "purchase"]).steps
    ('visit', 'signup', 'purchase')
    """
    if isinstance(spec, StageSet):
        return spec
    if isinstance(spec, Mapping):
        if is_segment_spec(spec):
            raise StageSetError(
                "this names a stage set per segment ({default: ..., column: {value: set}}): pass it "
                "as stages= to funnel.conversion, compare, leaks or outcomes, or build it with "
                "SegmentStageSets.from_spec(...)."
            )
        return StageSet.from_dict(spec)
    if isinstance(spec, (str, Path)):
        text = str(spec)
        if text in PRESETS:
            return PRESETS[text]
        path = Path(text)
        if path.suffix.lower() in {".yml", ".yaml"} or path.exists():
            return StageSet.from_yaml(path)
        close = difflib.get_close_matches(text, list(PRESETS), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise StageSetError(
            f"unknown stage set {text!r}: not a preset ({', '.join(PRESETS)}) and not a "
            f"YAML file.{hint}"
        )
    if isinstance(spec, Sequence):
        return StageSet("custom", list(spec))
    raise StageSetError(f"cannot make a stage set from {type(spec).__name__}.")


@dataclass(frozen=True)
class SegmentStageSets:
    """A stage set per segment value: different pipelines for different products or sources.

    Teams run different pipelines for different products or lead sources (a
    trade-show lead and a web-form lead do not pass the same stages).  Each
    lead follows the set of its segment value (its value on its first
    event); values without a set of their own follow ``default``.  Segments
    with different sets are compared on the *milestones* every set shares:
    ``entered`` (any stage of its set), ``won`` and ``lost``
    (:meth:`milestones`).

    Parameters
    ----------
    column : str
        The segment column that decides the set (e.g. ``"product"``).
    sets : mapping
        Segment value -> stage set (a :class:`StageSet`, preset name, YAML
        path, mapping or list).
    default : stage set, optional
        The set of every other value.

    Examples
    --------
    >>> s = SegmentStageSets.from_spec({"default": "pipeline4",
    ...                                  "product": {"Enterprise": "pipeline6"}})
    >>> s.column, s.for_value("Enterprise").name, s.for_value("Starter").name
    ('product', 'pipeline6', 'pipeline4')
    >>> s.milestones().steps
    ('entered', 'won')
    """

    column: str
    sets: Mapping[object, StageSet]
    default: StageSet | None = None

    def __init__(self, column: str, sets: Mapping[object, object], default: object | None = None):
        if not sets and default is None:
            raise StageSetError("a stage set per segment needs at least one set (sets= or default=).")
        object.__setattr__(self, "column", str(column))
        object.__setattr__(self, "sets", {k: get_stage_set(v) for k, v in dict(sets).items()})
        object.__setattr__(self, "default", None if default is None else get_stage_set(default))

    @classmethod
    def from_spec(cls, spec: Mapping[str, object]) -> SegmentStageSets:
        """From a plan's ``stages:`` mapping: ``{default: pipeline4, product: {Enterprise: x.yaml}}``.

        Examples
        --------
        >>> SegmentStageSets.from_spec({"default": "pipeline4", "product": {"Enterprise": "pipeline6"}})
        <SegmentStageSets by product: 'Enterprise': pipeline6, default pipeline4>
        """
        if not isinstance(spec, Mapping):
            raise StageSetError(f"a stage set per segment must be a mapping, got {type(spec).__name__}.")
        columns = [k for k in spec if k != "default"]
        if len(columns) != 1 or not isinstance(spec[columns[0]], Mapping):
            raise StageSetError(
                "a stage set per segment is {default: <set>, <segment column>: {<value>: <set>, ...}} "
                f"with exactly one segment column; got keys {sorted(map(str, spec))}."
            )
        return cls(columns[0], spec[columns[0]], spec.get("default"))  # type: ignore[arg-type]

    def for_value(self, value: object) -> StageSet:
        """The stage set of a segment value.

        Examples
        --------
        >>> s = SegmentStageSets("product", {"Enterprise": "pipeline6"}, default="pipeline4")
        >>> s.for_value("Enterprise").name, s.for_value("Starter").name
        ('pipeline6', 'pipeline4')

        Without a default, a value with no set of its own is an error:

        >>> SegmentStageSets("source", {"web form": "aida"}).for_value("referral")
        Traceback (most recent call last):
        ...
        funnelkit.exceptions.StageSetError: no stage set for source='referral' and no default; sets exist for 'web form'.
        """
        if value in self.sets:
            return self.sets[value]
        if self.default is None:
            raise StageSetError(
                f"no stage set for {self.column}={value!r} and no default; sets exist for "
                f"{', '.join(map(repr, self.sets))}."
            )
        return self.default

    @property
    def all_sets(self) -> list[StageSet]:
        return list(self.sets.values()) + ([self.default] if self.default is not None else [])

    def milestones(self) -> StageSet:
        """The stage set of the milestones every set shares: entered > won, lost.

        Examples
        --------
        >>> SegmentStageSets("product", {"Enterprise": "pipeline6"}, default="pipeline4").milestones()
        <StageSet milestones: entered (won='won', lost=['lost'])>

        Marketing funnels have no outcomes, so only ``entered`` is shared:

        >>> SegmentStageSets("source", {"web form": "aida"}, default="pipeline4").milestones().steps
        ('entered',)
        """
        won = "won" if all(s.won is not None for s in self.all_sets) else None
        lost = ["lost"] if any(s.lost for s in self.all_sets) else []
        return StageSet("milestones", ["entered"], won=won, lost=lost, infer_skipped=True,
                        description="Milestones shared by the segments' stage sets.")

    def milestone(self, ss: StageSet, label: object) -> str | None:
        """A label of ``ss`` as a milestone: ``"entered"``, ``"won"``, ``"lost"`` or None.

        Examples
        --------
        >>> s = SegmentStageSets("product", {"Enterprise": "pipeline6"}, default="pipeline4")
        >>> enterprise = s.for_value("Enterprise")
        >>> [s.milestone(enterprise, label) for label in ["relationship", "Closed Won", "lost", "churned"]]
        ['entered', 'won', 'lost', None]
        """
        name = ss.canonical(label)
        if name is None:
            return None
        if name == ss.won:
            return "won" if self.milestones().won else "entered"
        if name in ss.lost:
            return "lost"
        return "entered"

    def __repr__(self) -> str:
        parts = ", ".join(f"{k!r}: {v.name}" for k, v in self.sets.items())
        dflt = f", default {self.default.name}" if self.default is not None else ""
        return f"<SegmentStageSets by {self.column}: {parts}{dflt}>"


def is_segment_spec(spec: object) -> bool:
    """Whether a ``stages=`` value names a stage set per segment.

    Examples
    --------
    >>> is_segment_spec({"default": "pipeline4", "product": {"Enterprise": "pipeline6"}})
    True
    >>> is_segment_spec({"name": "crm", "stages": ["new", "demo"]}), is_segment_spec("pipeline4")
    (False, False)
    """
    return isinstance(spec, SegmentStageSets) or (
        isinstance(spec, Mapping) and "stages" not in spec
        and any(isinstance(v, Mapping) for k, v in spec.items() if k != "default")
    )
