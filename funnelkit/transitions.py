"""The stage-transition model: how leads move between stages, and when.

Every lead's journey is cut into **stays**: a stay starts when the lead
enters a stage and ends when it moves to another stage or an outcome (the
stay's *destination*), or is still running at the fit date (the stay is
*open*, i.e. censored: a lead sitting in proposal has not failed yet).

For each stage the model estimates, with censoring, the probability of
leaving towards each destination *after d days in the stage*
(Aalen-Johansen competing-risks estimator on a one-day grid).  Mass that
never leaves a stage - leads that sit for longer than any lead ever took to
move on, typically lost deals nobody marked lost - is the **stalled**
outcome.  This is what keeps a forecast honest about an old open pipeline:
a deal that has sat in proposal for 200 days is worth little, even if 60%
of proposals eventually close.

On top of that:

* the embedded **absorbing Markov chain** (won, each lost outcome and
  stalled are absorbing): probability of eventually winning from each stage
  and the expected number of remaining moves;
* the **semi-Markov** time dimension: probability that a lead in stage s
  with d days already spent wins within the next h days
  (:meth:`TransitionModel.close_probability`), and a vectorised simulator of
  future paths used by :mod:`funnelkit.forecast`;
* **uncertainty** from the posterior of the counts: each sample draws every
  (segment, stage, day-in-stage) cell's weighted count from a Gamma
  distribution (a Dirichlet posterior per row, a Bayesian bootstrap over
  stays, not over leads) and recomputes the estimates, so every
  probability has an interval and the forecast can carry the uncertainty of
  the estimated rates;
* **segments** (``by=``): each segment's counts are shrunk toward the
  pooled estimate by ``shrinkage`` pseudo-stays, and a segment with fewer
  than ``min_count`` stays in a stage uses the pooled estimate there.

Rules (the same as :func:`funnelkit.pipeline.snapshot`): only events at or
before ``as_of`` are used; a date without a time of day means the end of
that day; consecutive events of the same stage are one stay; undated events
precede a lead's first dated event; a lead's path ends at its first outcome
(later events are counted in ``notes_``, not used); a lead's segment is its
latest known value up to ``as_of``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._common import DAY_NS, NAT, as_list, require_columns, time_zone, to_datetimes
from ._common import parse_as_of as _parse_as_of
from .data import LEAD, STAGE, TIME, checked_leads, checked_times
from .exceptions import InvalidEventLogError, Problem, TransitionModelError
from .funnel import resolve_stages
from .stages import StageSet

__all__ = ["TransitionModel", "TransitionModelError", "Calendar", "STALLED", "OPEN"]

#: Name of the absorbing outcome "never moves again" (estimated from censoring).
STALLED = "stalled"
#: Destination of a stay still running at the fit date (censored).
OPEN = "open"

#: Longest stay resolved on the day grid (3 years); longer stays count in the last day.
MAX_DAYS = 1096




def parse_as_of(value) -> pd.Timestamp:
    """An as-of date as a Timestamp; a date without a time means the end of that day.

    Examples
    --------
    >>> parse_as_of("2025-06-30")
    Timestamp('2025-06-30 23:59:59.999999999')
    """
    return _parse_as_of(value, error=TransitionModelError)


def _aalen_johansen(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-distribution mass per (day, destination) and the never-leave mass.

    ``c[..., k, b]``: (weighted) stays ending on day ``k`` towards destination
    ``b``; the last column of ``c`` is censoring.  Returns ``mass[..., k, b]``
    (probability of leaving on day k towards b) and ``stalled[...]``.
    """
    c = np.asarray(c)
    if not np.issubdtype(c.dtype, np.floating):  # integer counts (unweighted fits); float32 draws stay
        c = c.astype(float)
    exits = c.sum(axis=-1)
    at_risk = np.flip(np.cumsum(np.flip(exits, axis=-1), axis=-1), axis=-1)
    inv = np.zeros_like(at_risk)
    np.divide(1.0, at_risk, out=inv, where=at_risk > 0)
    total = np.clip((exits - c[..., -1]) * inv, 0.0, 1.0)  # hazard of leaving on day k
    surv = np.cumprod(1.0 - total, axis=-1)
    prev = np.concatenate([np.ones_like(surv[..., :1]), surv[..., :-1]], axis=-1)
    mass = c[..., :-1] * (prev * inv)[..., None]
    return mass, surv[..., -1]


def _starts(x: np.ndarray) -> np.ndarray:
    """True where a value differs from the one before (and at the start)."""
    out = np.empty(x.size, dtype=bool)
    if x.size:
        out[0] = True
        np.not_equal(x[1:], x[:-1], out=out[1:])
    return out


def _check_half_life(half_life) -> float | None:
    if half_life is None:
        return None
    if isinstance(half_life, bool) or not isinstance(half_life, (int, float, np.integer, np.floating)) \
            or not np.isfinite(half_life) or half_life <= 0:
        raise TransitionModelError(f"half_life must be a positive number of days or None, got {half_life!r}.")
    return float(half_life)


def _as_ns(values) -> np.ndarray:
    """int64 nanoseconds of datetimes (any unit) or of integers taken as nanoseconds."""
    a = np.asarray(values)
    if a.dtype.kind == "M":
        return a.astype("datetime64[ns]").astype(np.int64)
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    return pd.to_datetime(pd.Series(a)).to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _is_year_end(month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Dec 24 - Jan 6: the weeks between Christmas Eve and Epiphany."""
    return ((month == 12) & (day >= 24)) | ((month == 1) & (day <= 6))


def _centred_mean(y: np.ndarray, half: int) -> np.ndarray:
    """Mean of ``y`` over the ``2 * half + 1`` values centred on each one, fewer at the ends
    (and over the whole series when it is shorter than the window)."""
    c = np.r_[0.0, np.cumsum(y)]
    i = np.arange(y.size)
    lo, hi = np.maximum(i - half, 0), np.minimum(i + half + 1, y.size)
    return (c[hi] - c[lo]) / (hi - lo)


class Calendar:
    """How much activity each calendar day has: weekday and holiday effects on when moves happen.

    A calendar turns calendar time into *activity time*: each day counts
    for its activity factor (an ordinary week is 7 activity days; a Sunday on
    which little moves may count 0.1, Christmas Day 0.05).  A
    :class:`TransitionModel` fitted with a calendar measures durations in
    activity days, so its rates are per working day and a forecast over a
    holiday week expects fewer moves than over an ordinary one.

    The factors are learned from the log's moves (every event that is not a
    lead's first): each day's count over the average of the 29 days around
    it, pooled by weekday (ordinary days), over public holidays (relative to
    their weekday) and over the other days from Dec 24 to Jan 6.  Factors are
    kept between ``min_factor`` and 5.

    Parameters
    ----------
    country : str, optional
        Country code of the public holidays (``holidays`` library), e.g.
        ``"IT"``, ``"US"``, ``"DE"``.  ``None``: no public holidays.
    subdiv : str, optional
        Region of the country (e.g. ``"CA"``, ``"BY"``).
    weekdays : bool
        Learn weekday effects (else every weekday counts 1).
    year_end : bool, optional
        Learn a factor for the days from Dec 24 to Jan 6 that are not public
        holidays.  Default: with ``country``.
    min_factor : float
        Lowest activity of a day (keeps activity time strictly increasing).

    Attributes
    ----------
    factors_ : DataFrame
        After :meth:`fit`: ``day_type`` (``"Monday"`` .. ``"Sunday"``,
        ``"public holiday"``, ``"year-end"``), ``factor``, ``days`` and
        ``events`` (moves on such days in the fitted window).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> days = pd.date_range("2024-01-01", "2024-12-31", freq="D")
    >>> moves = days[days.day_of_week < 5].repeat(10)        # nothing moves at weekends
    >>> cal = Calendar().fit(moves, end=days[-1])
    >>> cal.factors_.set_index("day_type").loc[["Monday", "Sunday"], "factor"].round(2).tolist()
    [1.39, 0.02]
    >>> round(cal.activity_days("2024-06-03", "2024-06-10"), 2)   # one week
    7.0
    """

    def __init__(self, country: str | None = None, *, subdiv: str | None = None, weekdays: bool = True,
                 year_end: bool | None = None, min_factor: float = 0.02):
        self.country = country
        self.subdiv = subdiv
        self.weekdays = bool(weekdays)
        self.year_end = (country is not None) if year_end is None else bool(year_end)
        if not 0 < min_factor <= 1:
            raise TransitionModelError(f"min_factor must be in (0, 1], got {min_factor}.")
        self.min_factor = float(min_factor)
        self._fitted = False

    @classmethod
    def resolve(cls, value) -> Calendar:
        """A fresh (unfitted) calendar from ``"weekdays"``, a country code or a Calendar.

        Examples
        --------
        >>> Calendar.resolve("weekdays")
        <Calendar weekdays (not fitted)>
        >>> Calendar.resolve("IT").country
        'IT'
        """
        if isinstance(value, Calendar):
            return cls(value.country, subdiv=value.subdiv, weekdays=value.weekdays, year_end=value.year_end,
                       min_factor=value.min_factor)
        if isinstance(value, str):
            if value.strip().lower() in {"weekdays", "weekday"}:
                return cls()
            return cls(value.strip())
        raise TransitionModelError(
            f"calendar must be 'weekdays', a country code such as 'IT' or a Calendar, got {value!r}."
        )

    def _holidays(self, years) -> set:
        if self.country is None:
            return set()
        try:
            import holidays as _hol
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise TransitionModelError("a holiday calendar needs the 'holidays' package.") from exc
        try:
            h = _hol.country_holidays(self.country, subdiv=self.subdiv, years=list(years))
        except NotImplementedError as exc:
            raise TransitionModelError(
                f"calendar: unknown country {self.country!r} (use an ISO code such as 'IT', 'US', 'DE')."
            ) from exc
        return {pd.Timestamp(d).value // DAY_NS for d in h}

    def _day_types(self, day: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weekday (0 = Monday), public-holiday flag and year-end flag of days since the epoch."""
        dt = day.astype("datetime64[D]")
        wd = (day + 3) % 7  # 1970-01-01 was a Thursday
        years = np.unique(dt.astype("datetime64[Y]").astype(int) + 1970) if day.size else []
        hol = np.isin(day, np.fromiter(self._holidays(years), dtype=np.int64)) if self.country else \
            np.zeros(day.size, dtype=bool)
        if self.year_end:
            m = dt.astype("datetime64[M]").astype(int) % 12 + 1
            dd = (dt - dt.astype("datetime64[M]")).astype(int) + 1
            ye = _is_year_end(m, dd) & ~hol
        else:
            ye = np.zeros(day.size, dtype=bool)
        return wd, hol, ye

    def fit(self, times_ns, *, end=None) -> Calendar:
        """Learn the factors from the times of moves (datetimes, or int64 nanoseconds).

        Uses at most the four years before ``end`` (default: the last time).

        Returns
        -------
        Calendar
            ``self``, fitted.

        Examples
        --------
        Ten moves on every weekday of 2024, none at weekends, with Italy's
        public holidays:

        >>> import pandas as pd
        >>> days = pd.date_range("2024-01-01", "2024-12-31", freq="D")
        >>> cal = Calendar("IT").fit(days[days.day_of_week < 5].repeat(10), end=days[-1])
        >>> cal
        <Calendar weekdays + IT holidays: Mon 1.39, Tue 1.39, Wed 1.39, Thu 1.39, Fri 1.39, Sat 0.02, Sun 0.02, public holiday 0.99, year-end 0.96>
        >>> cal.factors_.loc[[0, 5, 7], ["day_type", "days", "events"]]
                 day_type  days  events
        0          Monday    50     500
        5        Saturday    50       0
        7  public holiday    13      80
        """
        t = _as_ns(times_ns)
        t = t[t != NAT]
        if end is None:
            end_ns = int(t.max()) if t.size else 0
        else:
            end_ns = int(end) if isinstance(end, (int, np.integer)) else int(_as_ns([end])[0])
        t = t[(t <= end_ns) & (t > end_ns - 4 * 365 * DAY_NS)]
        wd_f = np.ones(7)
        hol_f = ye_f = 1.0
        rows = []
        if t.size:
            day = t // DAY_NS
            d0, d1 = int(day.min()), int(end_ns // DAY_NS)
            days = np.arange(d0, d1 + 1)
            y = np.bincount(day - d0, minlength=days.size).astype(float)
            level = _centred_mean(y, 14)  # the 29-day activity level around each day
            wd, hol, ye = self._day_types(days)
            ordinary = ~hol & ~ye
            if self.weekdays and days.size >= 56:
                num = np.bincount(wd[ordinary], weights=y[ordinary], minlength=7)
                den = np.bincount(wd[ordinary], weights=level[ordinary], minlength=7)
                with np.errstate(invalid="ignore", divide="ignore"):
                    f = np.where(den > 0, num / den, 1.0)
                wd_f = f / f.mean() if f.mean() > 0 else np.ones(7)
            wd_f = np.clip(wd_f, self.min_factor, 5.0)
            wd_f = wd_f / wd_f.mean()  # an ordinary week is 7 activity days
            expect = level * wd_f[wd]

            def ratio(mask):
                if mask.sum() < 3 or expect[mask].sum() <= 0:
                    return 1.0
                return float(np.clip(y[mask].sum() / expect[mask].sum(), self.min_factor, 5.0))

            hol_f = ratio(hol) if self.country else 1.0
            ye_f = ratio(ye) if self.year_end else 1.0
            names = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
            for i, nm in enumerate(names):
                m = ordinary & (wd == i)
                rows.append((nm, float(wd_f[i]), int(m.sum()), int(y[m].sum())))
            if self.country:
                rows.append(("public holiday", hol_f, int(hol.sum()), int(y[hol].sum())))
            if self.year_end:
                rows.append(("year-end", ye_f, int(ye.sum()), int(y[ye].sum())))
        self._wd_f, self._hol_f, self._ye_f = wd_f, hol_f, ye_f
        self.factors_ = pd.DataFrame(rows, columns=["day_type", "factor", "days", "events"])
        # the activity grid: from well before the data to well after (forecast horizons)
        first = int(t.min() // DAY_NS) if t.size else int(end_ns // DAY_NS)
        self._d0 = first - 3 * 366
        n = int(end_ns // DAY_NS) + 6 * 366 - self._d0
        grid = np.arange(self._d0, self._d0 + n)
        self._f = self.factor_of_days(grid)
        self._cum = np.r_[0.0, np.cumsum(self._f)]
        self._fitted = True
        return self

    def factor_of_days(self, day: np.ndarray) -> np.ndarray:
        """Activity factor of each day (days since 1970-01-01).

        Examples
        --------
        >>> import pandas as pd
        >>> days = pd.date_range("2024-01-01", "2024-12-31", freq="D")
        >>> cal = Calendar().fit(days[days.day_of_week < 5].repeat(10), end=days[-1])  # no weekend moves
        >>> saturday, monday = pd.DatetimeIndex(["2024-06-08", "2024-06-10"]).as_unit("s").asi8 // 86_400
        >>> cal.factor_of_days([saturday, monday]).round(2)
        array([0.02, 1.39])
        """
        day = np.asarray(day, dtype=np.int64)
        wd, hol, ye = self._day_types(day)
        f = self._wd_f[wd].copy()
        f = np.where(hol, np.clip(f * self._hol_f, self.min_factor, 5.0), f)
        return np.where(ye, np.clip(f * self._ye_f, self.min_factor, 5.0), f)

    def _check(self) -> None:
        if not self._fitted:
            raise TransitionModelError("the calendar is not fitted; call .fit(times) first.")

    def to_activity_ns(self, t_ns: np.ndarray) -> np.ndarray:
        """Activity time (int64 ns on the same epoch) of times given in int64 ns.

        Examples
        --------
        From Friday noon to Monday noon is three calendar days but less than
        one and a half activity days when nothing moves at weekends:

        >>> import pandas as pd
        >>> days = pd.date_range("2024-01-01", "2024-12-31", freq="D")
        >>> cal = Calendar().fit(days[days.day_of_week < 5].repeat(10), end=days[-1])  # no weekend moves
        >>> t = pd.DatetimeIndex(["2024-06-07 12:00", "2024-06-10 12:00"]).as_unit("ns").asi8
        >>> a = cal.to_activity_ns(t)
        >>> round(float(a[1] - a[0]) / 86_400e9, 2)
        1.43
        """
        self._check()
        t = np.asarray(t_ns, dtype=np.int64)
        rel = t - self._d0 * DAY_NS
        day = np.floor_divide(rel, DAY_NS)
        frac = (rel - day * DAY_NS) / DAY_NS
        n = self._f.size
        inside = (day >= 0) & (day < n)
        di = np.clip(day, 0, n - 1)
        a = np.where(inside, self._cum[di] + self._f[di] * frac,
                     np.where(day < 0, rel / DAY_NS, self._cum[-1] + (rel / DAY_NS - n)))
        return (np.round(a * DAY_NS) + self._d0 * DAY_NS).astype(np.int64)

    def from_activity_ns(self, a_ns: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_activity_ns`.

        Examples
        --------
        >>> import pandas as pd
        >>> days = pd.date_range("2024-01-01", "2024-12-31", freq="D")
        >>> cal = Calendar().fit(days[days.day_of_week < 5].repeat(10), end=days[-1])  # no weekend moves
        >>> t = pd.DatetimeIndex(["2024-06-07 12:00", "2024-06-10 12:00"]).as_unit("ns").asi8
        >>> back = cal.from_activity_ns(cal.to_activity_ns(t))
        >>> pd.to_datetime(back).strftime("%a %H:%M").tolist()
        ['Fri 12:00', 'Mon 12:00']
        """
        self._check()
        a = (np.asarray(a_ns, dtype=np.int64) - self._d0 * DAY_NS) / DAY_NS
        n = self._f.size
        day = np.clip(np.searchsorted(self._cum, a, side="right") - 1, 0, n - 1)
        frac = np.clip((a - self._cum[day]) / self._f[day], 0.0, 1.0)
        rel = np.where(a < 0, a, np.where(a > self._cum[-1], n + a - self._cum[-1], day + frac))
        return (np.round(rel * DAY_NS) + self._d0 * DAY_NS).astype(np.int64)

    def activity_days(self, start, end) -> float:
        """Activity days between two times (an ordinary week: 7).

        Examples
        --------
        >>> import pandas as pd
        >>> days = pd.date_range("2024-01-01", "2024-12-31", freq="D")
        >>> cal = Calendar().fit(days[days.day_of_week < 5].repeat(10), end=days[-1])  # no weekend moves
        >>> round(cal.activity_days("2024-06-08", "2024-06-10"), 2)  # a weekend
        0.04
        >>> round(cal.activity_days("2024-06-10", "2024-06-12"), 2)  # Monday and Tuesday
        2.78
        """
        s, e = (np.int64(pd.Timestamp(x).value) for x in (start, end))
        a = self.to_activity_ns(np.array([s, e]))
        return float((a[1] - a[0]) / DAY_NS)

    def __repr__(self) -> str:
        what = "weekdays" + (f" + {self.country} holidays" if self.country else "")
        if not self._fitted:
            return f"<Calendar {what} (not fitted)>"
        return f"<Calendar {what}: " + ", ".join(
            f"{r.day_type[:3] if r.day_type[0].isupper() else r.day_type} {r.factor:.2f}"
            for r in self.factors_.itertuples()) + ">"


class TransitionModel:
    """Stage-transition model with durations, censoring and uncertainty.

    Parameters
    ----------
    min_count : int
        A segment with fewer stays than this in a stage uses the pooled
        estimate for that stage (``pooled=True`` in the tables).
    shrinkage : float
        Weight of the pooled estimate in each segment, in stays: the pooled
        data enter a segment's estimate as this many pseudo-stays
        distributed like the pooled stays (0 = no shrinkage).  The default is
        mild: in backtests on the demo data stronger shrinkage pulled the
        slow, large deals toward the pooled rates and overstated revenue.
    n_samples : int
        Posterior samples (Gamma draws of each cell's count: a Bayesian bootstrap
        over stays) used for intervals
        and by the forecast; 0 gives point estimates only.
    level : float
        Level of the intervals in the tables.
    seed : int or None
        Seed of the posterior samples.
    half_life : float, optional
        Recency weighting, in days: a stay that started ``half_life`` days
        before ``as_of`` counts half as much as one starting now (exponential
        decay), so rates and durations follow a business that changes.
        Weighting stays by their entry time is the same as weighting each day
        at risk by its date (the factor cancels in every hazard).  ``None``
        (default): all history counts the same.
    calendar : Calendar, str or None
        When moves happen: ``"weekdays"`` (weekday effects learned from the
        log), a country code such as ``"IT"`` or ``"US"`` (weekdays plus that
        country's public holidays, from the ``holidays`` library, and the
        year-end weeks), or a :class:`Calendar`.  Durations are then measured
        in *activity days* (a quiet Sunday or Christmas Day counts for less
        than a full day), so a week over Christmas is forecast with fewer
        moves than an ordinary week.  ``None``: calendar days.

    Attributes
    ----------
    stage_set_ : StageSet
    states_ : list of str
        Transient stages, then the goal (``won``, or the last stage of a set
        without outcomes), then the lost outcomes; :data:`STALLED` is added
        as a further absorbing state in the results.
    by_ : list of str
    as_of_ : Timestamp
        Only events at or before it were used.
    stays_ : DataFrame
        One row per stay: ``lead_id``, the ``by`` columns, ``stage``,
        ``entered_at``, ``to_stage`` (destination, or ``"open"``),
        ``days`` (duration or time open so far; ``NaN`` when unknown).
    counts_ : DataFrame
        ``by`` columns, ``from_stage``, ``to_stage`` (a stage, an outcome or
        ``"open"``), ``n`` stays.
    probabilities_ : DataFrame
        Per segment (pooled when ``by`` is None): ``from_stage``,
        ``to_stage`` (including :data:`STALLED`), ``probability`` that the
        stay eventually ends there, ``ci_low``, ``ci_high``, ``stays``,
        ``pooled`` (the segment fell back on the pooled estimate).
    pooled_probabilities_ : DataFrame
        The same for all leads together.
    groups_ : DataFrame
        The segments: ``by`` columns and ``leads``.
    notes_ : list of str
        What was left out or assumed while fitting.
    calendar_ : Calendar or None
        The fitted calendar (activity per day), when ``calendar`` is given.
    weighted_by_ : str or None
        What the stays are weighted by (:meth:`with_lead_weights`), if anything.

    Examples
    --------
    >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
    >>> log = fk.datasets.load_demo()
    >>> tm = fk.transitions.TransitionModel(n_samples=50).fit(log, as_of="2025-06-30")
    >>> wp = tm.win_probability()
    >>> wp["stage"].tolist()
    ['qualification', 'meeting', 'proposal', 'close']
    >>> bool(wp["probability"].is_monotonic_increasing)
    True
    """

    def __init__(
        self,
        *,
        min_count: int = 10,
        shrinkage: float = 5.0,
        n_samples: int = 200,
        level: float = 0.95,
        seed: int | None = 0,
        half_life: float | None = None,
        calendar: Calendar | str | None = None,
    ):
        if min_count < 0:
            raise TransitionModelError(f"min_count must be >= 0, got {min_count}.")
        if shrinkage < 0:
            raise TransitionModelError(f"shrinkage must be >= 0, got {shrinkage}.")
        if n_samples < 0:
            raise TransitionModelError(f"n_samples must be >= 0, got {n_samples}.")
        if not 0 < level < 1:
            raise TransitionModelError(f"level must be between 0 and 1, got {level}.")
        self.min_count = int(min_count)
        self.shrinkage = float(shrinkage)
        self.n_samples = int(n_samples)
        self.level = float(level)
        self.seed = seed
        self.half_life = _check_half_life(half_life)
        self.calendar = calendar
        self._fitted = False

    # ------------------------------------------------------------------
    # fitting
    # ------------------------------------------------------------------
    def fit(
        self,
        log: pd.DataFrame,
        *,
        stages: StageSet | str | Sequence[str] | None = None,
        by: str | Sequence[str] | None = None,
        as_of=None,
        value: str | None = None,
        lead: str = LEAD,
        stage: str = STAGE,
        time: str = TIME,
    ) -> TransitionModel:
        """Estimate the model from an event log.

        Parameters
        ----------
        log : DataFrame
            A canonical event log (see :mod:`funnelkit.data`).
        stages : StageSet, preset name, YAML path or list, optional
            Defaults to the stage set the log was loaded with.
        by : str or list of str, optional
            Segment column(s); each segment gets its own (shrunk) estimate.
        as_of : date, str or Timestamp, optional
            Use only events at or before this moment; stays running then are
            censored.  Default: the log's last timestamp.
        value : str, optional
            A numeric column (e.g. ``"amount"``) whose latest value per lead
            is kept, for :meth:`with_lead_weights` (value rates).
        lead, stage, time : str
            Column names.

        Returns
        -------
        TransitionModel
            ``self``, fitted.

        Raises
        ------
        InvalidEventLogError
            If a column is missing or a stage label is not in the stage set.
        TransitionModelError
            If no lead has any event at or before ``as_of``.

        See Also
        --------
        funnelkit.parallel.fit_transitions : the same fit on every core, or on a Dask cluster.

        Examples
        --------
        >>> import funnelkit as fk
        >>> from funnelkit.transitions import TransitionModel
        >>> tm = TransitionModel(n_samples=0).fit(fk.datasets.load_demo(), by="product", as_of="2025-06-30")
        >>> tm.states_
        ['qualification', 'meeting', 'proposal', 'close', 'won', 'lost']
        >>> tm.groups_
                product  leads
        0       Starter   2085
        1  Professional   1640
        2    Enterprise    930
        >>> str(tm.as_of_.date()), len(tm.stays_)
        ('2025-06-30', 9458)
        """
        if not isinstance(log, pd.DataFrame):
            raise TypeError(f"expected an event log DataFrame, got {type(log).__name__}.")
        spec = _fit_spec(log, stages=stages, by=by, as_of=as_of, value=value, lead=lead, stage=stage, time=time)
        return self._fit_events(_stay_events(log, spec), spec)

    def _fit_events(self, part: dict, spec: dict) -> TransitionModel:
        """The fit from the stay events of every lead (``_stay_events`` of the whole log, or
        the merged results of lead-partitioned chunks: :func:`funnelkit.parallel.fit_transitions`).

        Takes the event arrays (``lc``, ``tt``, ``st``) out of ``part``, so that they are
        freed once the stays are cut."""
        ss, steps, states, n_tr, by = spec["ss"], spec["steps"], spec["states"], spec["n_tr"], spec["by"]
        n_states = len(states)
        tz = spec["tz"]
        if not part["kept"]:
            dmin = part["data_start"]
            raise TransitionModelError(
                f"no event at or before as_of={pd.Timestamp(part['T'])}: nothing to fit "
                f"(the data start {pd.Timestamp(dmin) if dmin is not None else 'unknown'})."
            )
        notes: list[str] = []
        n_after = part["n_after"]
        if n_after:
            notes.append(
                f"{n_after:,} event(s) of {part['n_after_leads']:,} lead(s) come after the lead's first "
                "outcome; the path is taken to end at that outcome and they are not used."
            )
        # the event arrays are taken out of ``part``: freed as soon as the stays are cut
        lc, tt, st = part.pop("lc"), part.pop("tt"), part.pop("st")
        lead_ids = part["lead_ids"]
        n_leads = len(lead_ids)
        T = part["T"]

        # calendar: durations in activity days (weekdays, holidays) instead of calendar days
        T_raw = T
        cal = None
        if self.calendar is not None:
            cal = Calendar.resolve(self.calendar)
            moves = ~_starts(lc) & (tt != NAT)
            cal = cal.fit(tt[moves], end=T)
            tt = np.where(tt != NAT, cal.to_activity_ns(tt), NAT)
            T = np.int64(cal.to_activity_ns(np.array([T]))[0])

        # stays: each event of a transient stage starts one; the next event of the same
        # lead (if any) is where it went (masks over the events: no index arrays)
        n_ev = lc.size
        is_stay = st < n_tr
        s_lead, s_from, s_t = lc[is_stay], st[is_stay], tt[is_stay]
        n_stays = s_lead.size
        m = n_stays - int(n_ev > 0 and is_stay[-1])  # stays with a next event in the log
        head = is_stay[:-1]
        del is_stay
        completed = np.zeros(n_stays, dtype=bool)
        np.compress(head, lc[1:] == lc[:-1], out=completed[:m])
        # destination code of each stay: the next event's state, or n_states (open)
        to_code = np.full(n_stays, n_states, dtype=st.dtype)
        np.compress(head, st[1:], out=to_code[:m])
        to_code[~completed] = n_states
        end_t = np.full(n_stays, T, dtype=np.int64)
        np.compress(head, tt[1:], out=end_t[:m])
        end_t[~completed] = T
        del head, tt, st
        # the time a stay's weight is judged by (recency weighting): its entry, else its end
        nat = s_t == NAT
        w_t = s_t
        if nat.any():
            w_t = s_t.copy()
            w_t[nat] = np.where(end_t[nat] != NAT, end_t[nat], T)
        known = ~nat
        known &= end_t != NAT
        del nat
        # durations in days, computed in the buffer of the end times
        np.subtract(end_t, s_t, out=end_t)
        days = end_t.view(np.float64)
        np.divide(end_t, DAY_NS, out=days)
        del end_t
        days[~known] = np.nan
        del known

        # lead-level segments: latest known value up to as_of
        lead_used = np.zeros(n_leads, dtype=bool)
        lead_used[lc] = True
        del lc
        all_used = bool(lead_used.all())
        lead_idx = np.flatnonzero(lead_used)
        del lead_used
        seg_frame = pd.DataFrame(index=pd.RangeIndex(n_leads))
        for col in by:
            seg_frame[col] = part["segments"][col]
        lead_value = part["value"]
        gdt = _index_dtype(n_leads)
        if by:
            sub = seg_frame.iloc[lead_idx]
            gcode = _ngroup(sub, by)
            lead_group = np.zeros(n_leads, dtype=gdt)
            lead_group[lead_idx] = gcode
            groups = sub.assign(_g=gcode).drop_duplicates("_g").sort_values("_g")
            groups = groups.drop(columns="_g").reset_index(drop=True)
            groups["leads"] = np.bincount(gcode, minlength=len(groups))
            del sub, gcode
        else:
            lead_group = np.zeros(n_leads, dtype=gdt)
            groups = pd.DataFrame({"leads": [lead_idx.size]})
        n_groups = len(groups)
        # timing: stays with an unknown duration
        K_cap = MAX_DAYS
        timed = ~np.isnan(days)
        impute = None
        if not timed.all():
            impute = np.zeros(n_stays, dtype=bool)
            for s in range(n_tr):
                in_s = s_from == s
                n_unk = int((in_s & ~timed).sum())
                if not n_unk:
                    continue
                if (in_s & timed).any():
                    notes.append(
                        f"{n_unk:,} stay(s) in {steps[s]!r} have an unknown duration (undated events); "
                        "they are left out of that stage's estimate."
                    )
                else:
                    done = in_s & ~timed & completed
                    impute |= done
                    notes.append(
                        f"no stay in {steps[s]!r} has a known duration: its {int(done.sum()):,} completed "
                        f"stay(s) are taken as instantaneous (0 days) and its {n_unk - int(done.sum()):,} "
                        "open one(s) are left out; forecasts treat time in that stage as unknown."
                    )
            if not impute.any():
                impute = None
        use = timed if impute is None else timed | impute
        del timed
        all_use = bool(use.all())
        d_use = days if impute is None else np.where(impute, 0.0, days)
        del impute
        # day bin: a completed stay moves on day ceil(d), an open one is at risk through floor(d)
        eb = np.floor(d_use)
        np.ceil(d_use, out=eb, where=completed)
        del d_use
        np.nan_to_num(eb, copy=False, nan=0.0)
        np.clip(eb, 0, K_cap - 1, out=eb)
        ev_bin = eb.astype(np.int16 if K_cap < 2**15 else np.int64)
        del eb
        uc = completed if all_use else use & completed
        last_bin = int(ev_bin[uc].max()) if uc.any() else 0
        if last_bin >= K_cap - 1:
            notes.append(f"stays longer than {K_cap} days are counted on day {K_cap - 1}.")
        K = last_bin + 1
        del uc, completed
        np.minimum(ev_bin, K - 1, out=ev_bin)
        # cell of each stay: (segment, stage, day, destination or open), built in one array
        cdt = _index_dtype(n_groups * n_tr * K * (n_states + 1))
        cell = lead_group[s_lead].astype(cdt, copy=False)
        cell *= n_tr
        cell += s_from
        cell *= K
        cell += ev_bin
        del ev_bin
        cell *= n_states + 1
        cell += to_code

        # stage sets without a lost outcome: a lead that has not moved on within the stage
        # set's horizon is dropped - the model's "stalled" - even if a few moved on later
        stall_after = None
        hz = getattr(ss, "horizon_days", None)
        if not ss.lost and hz is not None and hz + 1 < K:
            stall_after = int(np.ceil(float(hz)))
            notes.append(
                f"the stage set has no lost outcome: a lead that has not moved on within "
                f"{stall_after} days (horizon_days) counts as stalled, i.e. lost."
            )

        # bookkeeping
        self.stage_set_ = ss
        self.states_ = states
        self.by_ = by
        self.as_of_ = pd.Timestamp(to_datetimes([T_raw], tz)[0])
        self.calendar_ = cal
        self.groups_ = groups
        self.notes_ = notes
        self._n_tr = n_tr
        self._K = K
        self._stall_after = stall_after
        self._T_model = np.int64(T)
        # stays per (segment, stage, day, destination) of the estimate: their sums are the
        # stays per (segment, stage) and, with every stay used, the counts table
        per_cell = np.bincount(cell if all_use else cell[use], minlength=n_groups * n_tr * K * (n_states + 1))
        per_cell = per_cell.reshape(n_groups, n_tr, K, n_states + 1)
        self._n_gs = per_cell.sum(axis=(2, 3)).astype(float)
        if all_use:
            self._cells = (cell, w_t, (n_groups, n_tr, K, n_states + 1))
            self._stay_leads = s_lead
        else:
            self._cells = (cell[use], w_t[use], (n_groups, n_tr, K, n_states + 1))
            self._stay_leads = s_lead[use]
        del cell, w_t, use
        self._lead_ids = lead_ids
        self._lead_value = lead_value
        self.value_ = spec["value"]
        self._w_mult = None
        self.weighted_by_ = None
        # each lead's segment (_lead_group): built when first read
        self._lead_groups = (lead_group if all_used else lead_group[lead_idx], None if all_used else lead_idx)
        self._lead_group_cache = None
        del lead_idx
        if all_use:
            self.counts_ = self._counts_table(per_cell.sum(axis=2))
        else:
            self.counts_ = self._counts_table(self._stay_counts(lead_group[s_lead], s_from, to_code))
        del per_cell, lead_group
        self._estimate()
        self._fitted = True

        # stays_: built when first read, from these compact columns
        self._stays_parts = {
            "lead": spec["lead"], "lead_codes": s_lead, "segments": seg_frame, "from": s_from,
            "entered": s_t, "to": to_code, "days": days, "calendar": cal, "tz": tz,
        }
        self._stays = None
        self._tables = {}  # probabilities_, pooled_probabilities_: built when first read
        return self

    @property
    def _lead_group(self) -> pd.Series:
        """Segment number per lead id (the leads with an event used by the fit)."""
        if "_lead_groups" not in self.__dict__:  # a model pickled before it was built lazily
            return self.__dict__["_lead_group"]
        if self._lead_group_cache is None:
            groups, idx = self._lead_groups
            ids = self._lead_ids if idx is None else self._lead_ids.take(idx)
            self._lead_group_cache = pd.Series(groups.astype(np.int64), index=ids)
        return self._lead_group_cache

    @property
    def stays_(self) -> pd.DataFrame:
        """One row per stay (see the class docstring); built when first read."""
        self._check()
        if "_stays_parts" not in self.__dict__:  # a model pickled before stays_ was built lazily
            return self.__dict__["stays_"]
        if self._stays is None:
            p = self._stays_parts
            s_lead, seg_frame, cal = p["lead_codes"], p["segments"], p["calendar"]
            steps = list(self.stage_set_.steps)
            stays = pd.DataFrame({p["lead"]: self._lead_ids.take(s_lead)})
            for c in self.by_:
                seg = seg_frame[c]
                if isinstance(seg.dtype, pd.CategoricalDtype):  # by codes (unordered, as built by value)
                    stays[c] = pd.Categorical.from_codes(seg.cat.codes.to_numpy()[s_lead],
                                                         categories=seg.cat.categories)
                else:
                    stays[c] = seg.to_numpy()[s_lead]
            stays["stage"] = pd.Categorical.from_codes(p["from"], categories=steps[:-1])
            s_t = p["entered"]
            s_t_raw = np.where(s_t != NAT, cal.from_activity_ns(s_t), NAT) if cal is not None else s_t
            stays["entered_at"] = to_datetimes(s_t_raw, p["tz"])
            stays["to_stage"] = pd.Categorical.from_codes(p["to"], categories=[*self.states_, OPEN])
            stays["days"] = p["days"]
            self._stays = stays
        return self._stays

    def _estimate(self) -> None:
        """Point estimate and posterior samples from the stays' cells (``self._cells``).

        Each stay counts with its recency weight ``0.5 ** (age / half_life)``
        (age: days from its entry to ``as_of``).  Posterior: the likelihood of
        a semi-Markov model factorises into one multinomial per (segment,
        stage, day in stage), so each cell's weighted count gets an
        independent Gamma draw (a Dirichlet posterior per row; a Bayesian
        bootstrap over stays), with the shape of its effective sample size
        when the weights differ.
        """
        cell, w_t, shape = self._cells
        n_cells = int(np.prod(shape))
        w = None  # every stay counts 1: the counts are the weighted counts and their squares
        if self.half_life is not None:
            age = (self._T_model - w_t) / DAY_NS
            w = np.exp2(-np.maximum(age, 0.0) / float(self.half_life))
            del age
        if self._w_mult is not None:
            w = self._w_mult if w is None else w * self._w_mult
        if w is None:
            counts = np.bincount(cell, minlength=n_cells).astype(float)
        else:
            counts = np.bincount(cell, weights=w, minlength=n_cells)
        mass, stalled = self._mass_from_counts(counts.reshape(shape)[None], self._n_gs)
        self._mass, self._stalled = mass[0], stalled[0]
        self._cdf_cache: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        self._ww_cache: dict = {}
        D = self.n_samples
        if not D:
            self._mass_samples = self._stalled_samples = None
            return
        sq = counts if w is None else np.bincount(cell, weights=w * w, minlength=n_cells)
        del w
        nz = np.flatnonzero(counts > 0)
        g_shape = counts[nz] ** 2 / sq[nz]
        g_scale = sq[nz] / counts[nz]
        rng = np.random.default_rng(self.seed)
        G, S, K, B1 = shape
        ms = np.empty((D, G + 1, S, K, B1 - 1), dtype=np.float32)
        sl = np.empty((D, G + 1, S), dtype=np.float64)
        chunk = max(1, min(D, int(250_000 // max(n_cells, 1))))  # samples at a time: ~1 MB each array
        for a in range(0, D, chunk):
            b = min(D, a + chunk)
            wc = np.zeros((b - a, n_cells), dtype=np.float32)
            wc[:, nz] = rng.standard_gamma(g_shape.astype(np.float32), size=(b - a, nz.size),
                                           dtype=np.float32) * g_scale.astype(np.float32)
            m_, s_ = self._mass_from_counts(wc.reshape((b - a, *shape)), self._n_gs)
            ms[a:b], sl[a:b] = m_, s_
        self._mass_samples, self._stalled_samples = ms, sl

    def with_half_life(self, half_life: float | None) -> TransitionModel:
        """The same fit with another recency weighting (cheap: the stays are reused).

        Parameters
        ----------
        half_life : float or None
            Days; ``None``: every stay counts the same.

        Returns
        -------
        TransitionModel
            A new fitted model; ``self`` is unchanged.

        Examples
        --------
        >>> import funnelkit as fk
        >>> import funnelkit.transitions
        >>> tm = fk.transitions.TransitionModel(n_samples=0).fit(fk.datasets.load_demo(), as_of="2025-06-30")
        >>> tm.with_half_life(90).half_life
        90.0
        """
        self._check()
        new = copy.copy(self)
        new.half_life = _check_half_life(half_life)
        new._estimate()
        new._tables = {}
        return new

    def with_lead_weights(self, weights, *, name: str = "weight") -> TransitionModel:
        """The same fit with each stay weighted by a value of its lead (e.g. its amount).

        Weighting by deal size gives *value* rates: the share of the money in
        proposal that is won, rather than the share of deals.  When large
        deals convert less than small ones, ``amount x value rate`` summed over
        open leads estimates revenue without the upward bias of ``amount x
        deal rate``.  Recency weights (``half_life``) still apply; the
        posterior follows the effective sample size, so a revenue range
        driven by a few large deals is as wide as it should be.

        Parameters
        ----------
        weights : Series, mapping, or None
            Non-negative value per lead id; leads not in it (or missing) weigh
            0.  ``None`` (or the name given to ``fit(value=...)``): the latest
            value of that column per lead, kept by :meth:`fit` (fast).
        name : str
            What the weights are (kept in ``weighted_by_``).

        Returns
        -------
        TransitionModel
            A new fitted model; ``self`` is unchanged.

        Examples
        --------
        >>> import funnelkit as fk
        >>> import funnelkit.transitions
        >>> log = fk.datasets.load_demo()
        >>> tm = fk.transitions.TransitionModel(n_samples=0).fit(log, as_of="2025-06-30")
        >>> amount = log.groupby("lead_id")["amount"].last()
        >>> by_value = tm.with_lead_weights(amount, name="amount")
        >>> by_value.weighted_by_
        'amount'
        """
        self._check()
        if weights is None or (isinstance(weights, str) and weights == self.value_):
            if self._lead_value is None:
                raise TransitionModelError("the model was fitted without value=; pass weights per lead id.")
            mult = self._lead_value[self._stay_leads]
            name = self.value_ if name == "weight" else name
        elif isinstance(weights, np.ndarray) and weights.shape == (len(self._lead_ids),):
            mult = weights.astype(float)[self._stay_leads]  # one value per lead, in lead_ids order
        else:
            w = pd.Series(weights, dtype=float) if not isinstance(weights, pd.Series) else weights.astype(float)
            if w.index.has_duplicates:
                w = w.groupby(level=0).last()
            mult = w.reindex(self._lead_ids.take(self._stay_leads)).to_numpy(dtype=float)
        mult = np.where(np.isfinite(mult) & (mult > 0), mult, 0.0)
        if not mult.any():
            raise TransitionModelError(f"no stay has a positive {name}: cannot weight the model by it.")
        new = copy.copy(self)
        new._w_mult = mult / mult.mean()
        new.weighted_by_ = name
        new._estimate()
        new._tables = {}
        return new

    def _mass_from_counts(self, counts: np.ndarray, n_gs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mass per (sample, group + pooled, stage, day, destination) from counts."""
        if self._stall_after is not None:  # moves after the horizon: still sitting there then
            k0 = self._stall_after + 1
            counts = counts.copy()
            counts[..., k0:, -1] += counts[..., k0:, :-1].sum(axis=-1)
            counts[..., k0:, :-1] = 0.0
        pooled = counts.sum(axis=1, keepdims=True)
        tot = pooled.sum(axis=(3, 4), keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(tot > 0, self.shrinkage / tot, 0.0)
        shrunk = counts + (scale * pooled).astype(counts.dtype, copy=False)
        allc = np.concatenate([shrunk, pooled], axis=1)
        mass, stalled = _aalen_johansen(allc)
        G = counts.shape[1]
        fallback = n_gs < self.min_count  # (G, S)
        if fallback.any():
            gi, si = np.nonzero(fallback)
            mass[:, gi, si] = mass[:, G, si]
            stalled[:, gi, si] = stalled[:, G, si]
        return mass, stalled

    # ------------------------------------------------------------------
    # tables
    # ------------------------------------------------------------------
    @property
    def probabilities_(self) -> pd.DataFrame:
        """Per segment (pooled without ``by``): eventual destination probabilities (see the
        class docstring)."""
        self._check()
        if "own" not in self._tables:
            self._tables["own"] = self._prob_table(pooled=not self.by_)
        return self._tables["own"]

    @property
    def pooled_probabilities_(self) -> pd.DataFrame:
        """The same for all leads together."""
        self._check()
        if not self.by_:
            return self.probabilities_
        if "pooled" not in self._tables:
            self._tables["pooled"] = self._prob_table(pooled=True)
        return self._tables["pooled"]

    def _check(self) -> None:
        if not self._fitted:
            raise TransitionModelError("the model is not fitted yet; call .fit(log) first.")

    def _group_frame(self, gidx: np.ndarray, pooled: bool) -> pd.DataFrame:
        if pooled or not self.by_:
            return pd.DataFrame(index=np.arange(len(gidx)))
        return self.groups_.iloc[gidx][self.by_].reset_index(drop=True)

    def _groups_for(self, pooled: bool) -> np.ndarray:
        G = len(self.groups_)
        return np.array([G]) if (pooled or not self.by_) else np.arange(G)

    def _quantiles(self, samples: np.ndarray | None, level: float) -> tuple[np.ndarray, np.ndarray]:
        if samples is None:
            return None, None
        a = (1 - level) / 2
        return np.quantile(samples, a, axis=0), np.quantile(samples, 1 - a, axis=0)

    def _stay_counts(self, s_group, s_from, col) -> np.ndarray:
        """Stays per (segment, stage, destination); ``col``: each stay's destination
        (``n_states``: open)."""
        n_states = len(self.states_)
        G, S = len(self.groups_), self._n_tr
        c = np.bincount((s_group * S + s_from) * (n_states + 1) + col, minlength=G * S * (n_states + 1))
        return c.reshape(G, S, n_states + 1)

    def _counts_table(self, c: np.ndarray) -> pd.DataFrame:
        """``counts_`` from the stays per (segment, stage, destination)."""
        g, s, b = np.nonzero(c)
        out = self._group_frame(g, pooled=False)
        steps = list(self.stage_set_.steps)
        names = np.array([*self.states_, OPEN], dtype=object)
        out["from_stage"] = pd.Categorical(np.array(steps, dtype=object)[s], categories=steps[:-1])
        out["to_stage"] = pd.Categorical(names[b], categories=list(names))
        out["n"] = c[g, s, b].astype(np.int64)
        return out.reset_index(drop=True)

    def _eventual(self, samples: bool) -> np.ndarray:
        """P[..., G+1, S, n_states + 1]: eventual destination probabilities incl. stalled."""
        if samples:
            m, st = self._mass_samples.sum(axis=3, dtype=np.float64), self._stalled_samples
        else:
            m, st = self._mass.sum(axis=2), self._stalled
        return np.concatenate([m, st[..., None]], axis=-1)

    def _prob_table(self, pooled: bool) -> pd.DataFrame:
        gsel = self._groups_for(pooled)
        P = self._eventual(False)[gsel]
        lo = hi = None
        if self._mass_samples is not None:
            lo, hi = self._quantiles(self._eventual(True)[:, gsel], self.level)
        G = len(self.groups_)
        names = [*self.states_, STALLED]
        S = self._n_tr
        gi, si, bi = np.meshgrid(np.arange(len(gsel)), np.arange(S), np.arange(len(names)), indexing="ij")
        gi, si, bi = gi.ravel(), si.ravel(), bi.ravel()
        self_move = bi == si
        gi, si, bi = gi[~self_move], si[~self_move], bi[~self_move]
        out = self._group_frame(gsel[gi], pooled)
        steps = list(self.stage_set_.steps)
        out["from_stage"] = pd.Categorical(np.array(steps, dtype=object)[si], categories=steps[:-1])
        out["to_stage"] = pd.Categorical(np.array(names, dtype=object)[bi], categories=names)
        out["probability"] = P[gi, si, bi]
        out["ci_low"] = lo[gi, si, bi] if lo is not None else np.nan
        out["ci_high"] = hi[gi, si, bi] if hi is not None else np.nan
        g_abs = gsel[gi]
        n = np.where(g_abs == G, self._n_gs.sum(axis=0)[si], self._n_gs[np.minimum(g_abs, G - 1), si])
        out["stays"] = n.astype(np.int64)
        out["pooled"] = (g_abs < G) & (self._n_gs[np.minimum(g_abs, G - 1), si] < self.min_count)
        return out.reset_index(drop=True)

    # ------------------------------------------------------------------
    # absorbing Markov chain
    # ------------------------------------------------------------------
    def _segment_index(self, segment) -> int:
        G = len(self.groups_)
        if segment is None:
            return G
        if not self.by_:
            raise TransitionModelError("the model was fitted without by=; pass segment=None.")
        key = segment if isinstance(segment, tuple) else (segment,)
        if len(key) != len(self.by_):
            raise TransitionModelError(
                f"segment must give one value per by column {self.by_}, got {segment!r}."
            )
        hit = np.ones(G, dtype=bool)
        for c, v in zip(self.by_, key):
            hit &= (self.groups_[c].astype(object) == v).to_numpy()
        if not hit.any():
            known = self.groups_[self.by_].astype(object).apply(tuple, axis=1).tolist()
            raise TransitionModelError(f"unknown segment {segment!r}; known segments: {known[:10]}.")
        return int(np.flatnonzero(hit)[0])

    def matrix(self, segment=None) -> pd.DataFrame:
        """The transition matrix of the absorbing chain (point estimate).

        Parameters
        ----------
        segment : value or tuple, optional
            The segment (one value per ``by`` column); default pooled.

        Returns
        -------
        DataFrame
            Square, indexed by from-state and with one column per to-state:
            the transient stages, the goal, the lost outcomes and
            :data:`STALLED`.  Absorbing states have 1 on the diagonal.  Each
            row sums to 1.

        Examples
        --------
        >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
        >>> tm = fk.transitions.TransitionModel(n_samples=0).fit(fk.datasets.load_demo())
        >>> M = tm.matrix()
        >>> bool(abs(M.sum(axis=1) - 1).max() < 1e-9)
        True
        """
        self._check()
        g = self._segment_index(segment)
        P = self._eventual(False)[g]
        return self._square(P)

    def _square(self, P: np.ndarray) -> pd.DataFrame:
        names = [*self.states_, STALLED]
        n = len(names)
        M = np.eye(n)
        M[: self._n_tr] = P
        return pd.DataFrame(M, index=pd.Index(names, name="from_stage"), columns=pd.Index(names, name="to_stage"))

    def _absorb(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Absorption probabilities and expected moves for P[..., S, n_states+1]."""
        S = self._n_tr
        Q = P[..., :S, :S]
        R = P[..., :S, S:]
        eye = np.broadcast_to(np.eye(S), Q.shape)
        try:
            B = np.linalg.solve(eye - Q, R)
            steps = np.linalg.solve(eye - Q, np.ones((*Q.shape[:-1], 1)))[..., 0]
        except np.linalg.LinAlgError as exc:
            raise TransitionModelError(
                "the chain has a closed loop of stages that leads never leave; absorption "
                "probabilities are undefined."
            ) from exc
        return B, steps

    def _chain_table(self, what: str, level: float | None, pooled: bool) -> pd.DataFrame:
        self._check()
        level = self.level if level is None else level
        gsel = self._groups_for(pooled)
        B, n = self._absorb(self._eventual(False)[gsel])
        val = B[..., 0] if what == "win" else n
        lo = hi = None
        if self._mass_samples is not None:
            Bs, ns = self._absorb(self._eventual(True)[:, gsel])
            lo, hi = self._quantiles(Bs[..., 0] if what == "win" else ns, level)
        S = self._n_tr
        gi, si = np.meshgrid(np.arange(len(gsel)), np.arange(S), indexing="ij")
        gi, si = gi.ravel(), si.ravel()
        out = self._group_frame(gsel[gi], pooled)
        steps = list(self.stage_set_.steps)
        out["stage"] = pd.Categorical(np.array(steps, dtype=object)[si], categories=steps[:-1])
        name = "probability" if what == "win" else "expected_steps"
        out[name] = val[gi, si]
        out["ci_low"] = lo[gi, si] if lo is not None else np.nan
        out["ci_high"] = hi[gi, si] if hi is not None else np.nan
        return out.reset_index(drop=True)

    def win_probability(self, *, level: float | None = None, pooled: bool = False) -> pd.DataFrame:
        """Probability of eventually winning from each stage (absorbing chain).

        Stalled leads count as not winning.  The interval comes from the
        posterior samples.

        Parameters
        ----------
        level : float, optional
            Interval level (default: the model's).
        pooled : bool
            Report the pooled chain even when the model has segments.

        Returns
        -------
        DataFrame
            ``by`` columns (segment models), ``stage``, ``probability``,
            ``ci_low``, ``ci_high``.

        Examples
        --------
        >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
        >>> tm = fk.transitions.TransitionModel(n_samples=30).fit(fk.datasets.load_demo())
        >>> round(float(tm.win_probability()["probability"].iloc[-1]), 1)
        0.6
        """
        return self._chain_table("win", level, pooled)

    def expected_steps(self, *, level: float | None = None, pooled: bool = False) -> pd.DataFrame:
        """Expected number of remaining moves until an outcome, from each stage.

        Counts every move, the final one into won, lost or stalled included
        (so a stage that always goes straight to an outcome has 1).

        Returns
        -------
        DataFrame
            ``by`` columns (segment models), ``stage``, ``expected_steps``,
            ``ci_low``, ``ci_high``.

        Examples
        --------
        >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
        >>> tm = fk.transitions.TransitionModel(n_samples=0).fit(fk.datasets.load_demo())
        >>> float(tm.expected_steps()["expected_steps"].iloc[-1])
        1.0
        """
        return self._chain_table("steps", level, pooled)

    # ------------------------------------------------------------------
    # semi-Markov: time
    # ------------------------------------------------------------------
    def _won_within(self, mass: np.ndarray, H: int) -> np.ndarray:
        """W[..., s, h]: P(goal within h days | just entered transient stage s), h = 0..H."""
        S = self._n_tr
        K = mass.shape[-2]
        if K < H + 1:
            pad = [(0, 0)] * mass.ndim
            pad[-2] = (0, H + 1 - K)
            mass = np.pad(mass, pad)
        mk = mass[..., : H + 1, :].astype(np.float64)
        direct = np.cumsum(mk[..., S], axis=-1)  # (..., S, H+1)
        L = 1 << int(np.ceil(np.log2(2 * (H + 1))))
        Tf = np.fft.rfft(mk[..., :S], n=L, axis=-2)  # (..., S, Lf, S_b)
        W = direct.copy()
        for _ in range(500):
            Wf = np.fft.rfft(W, n=L, axis=-1)  # (..., S_b, Lf)
            conv = np.einsum("...sfb,...bf->...sf", Tf, Wf)
            new = np.clip(direct + np.fft.irfft(conv, n=L, axis=-1)[..., : H + 1], 0.0, 1.0)
            done = np.abs(new - W).max() < 1e-12
            W = new
            if done:
                break
        return W

    def _win_by(self, g, s, q, hs, *, samples: bool, chunk: int = 25) -> np.ndarray:
        """P(goal within h days) per cell (segment g, stage s, q whole days spent; -1: just
        entered), for each horizon in ``hs`` (shape ``(P,)``, or ``(n_cells, P)`` per cell):
        shape ``(n_samples or 1, n_cells, P)``.

        Exact on the day grid: the stay ends on day k in ``q+1 .. q+h`` (``0 .. h`` for a fresh
        lead) towards b; from b the lead wins within the days left with probability
        ``W[b, left]`` (:meth:`_won_within`).  The sum over k is a cross-correlation of the
        stage's day-by-destination mass with the reversed win curves, done by FFT for all q at
        once.  :func:`_windows` turns fractional days and horizons into ``(q, h)``.
        """
        g, s, q = (np.asarray(x, dtype=np.int64) for x in (g, s, q))
        hs = np.asarray(hs, dtype=np.int64)
        if samples:
            if self._mass_samples is None:
                raise TransitionModelError("the model has no posterior samples (n_samples=0).")
            mass_all = self._mass_samples
        else:
            mass_all = self._mass[None]
        D, G1, S_, K, B = mass_all.shape
        S = self._n_tr
        n = g.size
        H2 = np.broadcast_to(hs if hs.ndim == 2 else hs[None, :], (n, hs.shape[-1] if hs.size else 0))
        P = H2.shape[1]
        out = np.zeros((D, n, P))
        if n == 0 or P == 0:
            return out
        H2 = np.maximum(H2, 0)
        fresh = q < 0
        # distinct window lengths: h (+1 for leads that just entered: day 0 counts too)
        span = H2 + fresh[:, None]
        lens = np.unique(span)
        Hm = int(span.max())
        L = 1 << int(np.ceil(np.log2(K + Hm + 2)))
        qq = np.minimum(q, K)  # q >= K: nothing left to happen
        gather_q = np.where(fresh, L - 1, np.minimum(qq, L - 1))
        for a in range(0, D, chunk):
            b = min(D, a + chunk)
            m = mass_all[a:b].astype(np.float64)  # (d, G1, S, K, B)
            W = self._won_within(m, Hm)  # (d, G1, S, Hm+1)
            cw = np.concatenate([np.zeros((*m.shape[:3], 1)), np.cumsum(m[..., S], axis=-1)], axis=-1)
            cum_all = np.cumsum(m.sum(axis=-1), axis=-1)  # (d, G1, S, K)
            X = np.fft.rfft(m[..., :S], n=L, axis=-2)  # (d, G1, S, Lf, S_b)
            for ln in lens:
                if ln == 0:
                    continue  # no day in the window
                # y_b[i] = W[b, ln - i] for i = 1..ln
                y = np.zeros((b - a, G1, S, L))
                i = np.arange(1, ln + 1)
                y[..., i] = W[..., ln - i]
                Y = np.fft.rfft(y, axis=-1)  # (d, G1, S_b, Lf)
                Z = np.fft.irfft(np.einsum("dgsfb,dgbf->dgsf", X, np.conj(Y)), n=L, axis=-1)
                for p in range(P):
                    sel = np.flatnonzero(span[:, p] == ln)
                    if sel.size == 0:
                        continue
                    h = H2[sel, p]
                    gs, ss, qs, gq = g[sel], s[sel], qq[sel], gather_q[sel]
                    lo = np.where(fresh[sel], 0, np.minimum(qs + 1, K))
                    hi = np.where(fresh[sel], np.minimum(h + 1, K), np.minimum(qs + h + 1, K))
                    direct = cw[:, gs, ss, hi] - cw[:, gs, ss, lo]
                    num = direct + np.where(qs < K, Z[:, gs, ss, gq], 0.0)
                    before = np.where(fresh[sel], 0.0, cum_all[:, gs, ss, np.clip(qs, 0, K - 1)])
                    surv = 1.0 - before
                    with np.errstate(invalid="ignore", divide="ignore"):
                        pr = np.where((surv > 1e-12) & (qs < K), num / surv, 0.0)
                    out[a:b, sel, p] = np.clip(pr, 0.0, 1.0)
        return out

    def close_probability(
        self,
        stage,
        days_in_stage=0,
        horizon_days=90,
        *,
        segment=None,
        level: float | None = None,
    ) -> pd.DataFrame:
        """Probability that a lead wins within a horizon, given time already spent.

        Semi-Markov: the lead leaves its stage after a time drawn from that
        stage's history *given* it has already spent ``days_in_stage`` there,
        towards a destination that depends on when it leaves; later stages
        start fresh.  Exact on a one-day grid (``days_in_stage`` is taken in
        whole days).  For "by a given date" pass
        ``horizon_days = (date - as_of).days``.

        Parameters
        ----------
        stage : str or array of str
            Current stage(s) of the lead(s).
        days_in_stage : float or array
            Days already spent in the stage (0: just entered).
        horizon_days : int or array
            Window, in days, from now.
        segment : value or tuple, optional
            Segment of a segment model; default pooled.
        level : float, optional
            Interval level (default: the model's).

        Returns
        -------
        DataFrame
            One row per query (arguments broadcast): ``stage``,
            ``days_in_stage``, ``horizon_days``, ``probability``, ``ci_low``,
            ``ci_high``.

        Examples
        --------
        >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
        >>> tm = fk.transitions.TransitionModel(n_samples=20).fit(fk.datasets.load_demo())
        >>> cp = tm.close_probability("proposal", [0, 200], 90)
        >>> bool(cp["probability"].iloc[0] > cp["probability"].iloc[1])
        True
        """
        self._check()
        level = self.level if level is None else level
        st_arr, d_arr, h_arr = np.broadcast_arrays(
            np.asarray(stage, dtype=object), np.asarray(days_in_stage, dtype=float),
            np.asarray(horizon_days, dtype=float),
        )
        st_arr, d_arr, h_arr = st_arr.ravel(), d_arr.ravel(), h_arr.ravel()
        s = self._stage_index(st_arr)
        if (d_arr < 0).any() or np.isnan(d_arr).any():
            raise TransitionModelError("days_in_stage must be >= 0 (no missing values).")
        if (h_arr < 0).any() or np.isnan(h_arr).any():
            raise TransitionModelError("horizon_days must be >= 0 (no missing values).")
        q, h = _windows(np.round(d_arr * DAY_NS).astype(np.int64),
                        np.round(h_arr * DAY_NS).astype(np.int64)[:, None])
        h = h[:, 0]
        g = np.full(s.size, self._segment_index(segment), dtype=np.int64)
        cells, c_of = np.unique(np.c_[g, s, q], axis=0, return_inverse=True)
        hs, h_of = np.unique(h, return_inverse=True)
        c_of, h_of = c_of.ravel(), h_of.ravel()
        p = self._win_by(cells[:, 0], cells[:, 1], cells[:, 2], hs, samples=False)[0][c_of, h_of]
        lo = np.full(s.size, np.nan)
        hi = np.full(s.size, np.nan)
        if self._mass_samples is not None:
            draws = self._win_by(cells[:, 0], cells[:, 1], cells[:, 2], hs, samples=True)[:, c_of, h_of]
            lo, hi = self._quantiles(draws, level)
        return pd.DataFrame(
            {
                "stage": st_arr.astype(object),
                "days_in_stage": d_arr,
                "horizon_days": h_arr,
                "probability": p,
                "ci_low": lo,
                "ci_high": hi,
            }
        )

    def won_within(self, stage, horizon_days: int, *, samples: bool = False) -> np.ndarray:
        """P(win within h days | a lead just entered ``stage``), for h = 0..horizon_days.

        Parameters
        ----------
        stage : str
            An open stage.
        horizon_days : int
        samples : bool
            False: the point estimate; True: one curve per posterior sample.

        Returns
        -------
        ndarray
            Shape ``(n_segments + 1, horizon_days + 1)`` (the last row is the
            pooled estimate), or ``(n_samples, n_segments + 1, horizon_days + 1)``
            with ``samples=True``.

        Examples
        --------
        >>> import funnelkit as fk
    >>> import funnelkit.forecast, funnelkit.transitions
        >>> tm = fk.transitions.TransitionModel(n_samples=0).fit(fk.datasets.load_demo())
        >>> curve = tm.won_within("close", 60)[-1]
        >>> bool(curve[60] > curve[10] > 0)
        True
        """
        self._check()
        s = int(self._stage_index(np.array([stage], dtype=object))[0])
        H = int(horizon_days)
        if H < 0:
            raise TransitionModelError(f"horizon_days must be >= 0, got {horizon_days}.")
        if not samples:
            return self._won_within(self._mass, H)[:, s]
        if self._mass_samples is None:
            raise TransitionModelError("the model has no posterior samples (n_samples=0).")
        out = []
        for a in range(0, self._mass_samples.shape[0], 20):
            out.append(self._won_within(self._mass_samples[a : a + 20].astype(np.float64), H)[:, :, s])
        return np.concatenate(out, axis=0)

    def _stage_index(self, names) -> np.ndarray:
        steps = list(self.stage_set_.steps)[: self._n_tr]
        out = np.empty(len(names), dtype=np.int64)
        cache: dict[object, int] = {}
        uniq = pd.unique(pd.Series(names, dtype=object))
        for u in uniq:
            canon = self.stage_set_.canonical(u)
            if canon not in steps:
                raise TransitionModelError(
                    f"{u!r} is not an open stage of {self.stage_set_.name!r}; open stages: "
                    f"{', '.join(steps)}."
                )
            cache[u] = steps.index(canon)
        codes, uniques = pd.factorize(pd.Series(names, dtype=object))
        lut = np.array([cache[u] for u in uniques], dtype=np.int64)
        out[:] = lut[codes]
        return out

    def group_index(self, frame: pd.DataFrame, *, lead: str = LEAD) -> np.ndarray:
        """The model segment of each row of a lead table (e.g. a snapshot).

        Leads seen in the fit keep the segment they were fitted in; others
        are matched on the ``by`` columns; rows whose segment is unknown to
        the model get the pooled estimate (index ``len(groups_)``).

        Returns
        -------
        ndarray of int

        Examples
        --------
        A fitted lead keeps its segment (L0001 is a Starter deal), a new lead
        is matched on its product, and an unknown product gets the pooled
        estimate (3, after the three products):

        >>> import pandas as pd, funnelkit as fk
        >>> from funnelkit.transitions import TransitionModel
        >>> tm = TransitionModel(n_samples=0).fit(fk.datasets.load_demo(), by="product", as_of="2025-06-30")
        >>> tm.groups_["product"].tolist()
        ['Starter', 'Professional', 'Enterprise']
        >>> leads = pd.DataFrame({"lead_id": ["L0001", "new 1", "new 2"],
        ...                       "product": ["Enterprise", "Enterprise", "Gadget"]})
        >>> tm.group_index(leads)
        array([0, 2, 3])
        """
        self._check()
        G = len(self.groups_)
        if not self.by_:
            return np.full(len(frame), G if G != 1 else 0, dtype=np.int64)
        out = np.full(len(frame), G, dtype=np.int64)
        if all(c in frame.columns for c in self.by_):
            keys = self.groups_[self.by_].astype(object).assign(_g=np.arange(G))
            left = frame[self.by_].astype(object).reset_index(drop=True)
            merged = left.merge(keys, on=self.by_, how="left")
            hit = merged["_g"].notna().to_numpy()
            out[hit] = merged["_g"].to_numpy()[hit].astype(np.int64)
        if lead in frame.columns:
            known = self._lead_group.reindex(frame[lead].to_numpy())
            hit = known.notna().to_numpy()
            out[hit] = known.to_numpy()[hit].astype(np.int64)
        return out

    def stage_index(self, stages) -> np.ndarray:
        """Index (0..) of each open stage name among the transient stages.

        Examples
        --------
        >>> import funnelkit as fk
        >>> from funnelkit.transitions import TransitionModel
        >>> tm = TransitionModel(n_samples=0).fit(fk.datasets.load_demo(), as_of="2025-06-30")
        >>> tm.stage_index(["meeting", "Proposal", "qualification"])
        array([1, 2, 0])
        >>> tm.stage_index(["won"])
        Traceback (most recent call last):
        ...
        funnelkit.exceptions.TransitionModelError: 'won' is not an open stage of 'pipeline4'; open stages: qualification, meeting, proposal, close.
        """
        self._check()
        return self._stage_index(np.asarray(stages, dtype=object))

    def simulate(
        self,
        *,
        stage_idx: np.ndarray,
        days_in_stage: np.ndarray,
        group_idx: np.ndarray,
        sample_idx: np.ndarray | None,
        horizon_days: float,
        rng: np.random.Generator,
        start_offset: np.ndarray | None = None,
    ) -> np.ndarray:
        """Simulate future paths; return when each path wins (days from now).

        Vectorised over paths: at each round every running path draws when it
        leaves its stage and where to, given the days already spent there
        (inverse-CDF sampling from the stage's day-by-destination
        distribution); paths stop when they reach an outcome, stall, or pass
        the horizon.

        Parameters
        ----------
        stage_idx, days_in_stage, group_idx : arrays of the same length
            Current transient stage index, days spent there (``NaN`` or 0:
            just entered) and model segment of each path.
        sample_idx : array of int or None
            Posterior sample each path uses (parameter uncertainty); ``None``
            uses the point estimate.
        horizon_days : float
            Stop following a path after this many days.
        rng : numpy Generator
        start_offset : array, optional
            Days from now at which each path is in that state (e.g. the
            arrival time of a future lead); default 0.

        Returns
        -------
        ndarray of float
            Days from now at which the path wins; ``NaN`` if it does not win
            within the horizon.

        Examples
        --------
        Twenty thousand deals that have just entered ``close``: the share
        that wins within two years is close to the chain's win probability
        from ``close``, and most of it within the first month.

        >>> import numpy as np, funnelkit as fk
        >>> from funnelkit.transitions import TransitionModel
        >>> tm = TransitionModel(n_samples=0).fit(fk.datasets.load_demo(), as_of="2025-06-30")
        >>> n = 20_000
        >>> won_at = tm.simulate(stage_idx=tm.stage_index(["close"] * n), days_in_stage=np.zeros(n),
        ...                      group_idx=np.zeros(n, dtype=int), sample_idx=None, horizon_days=730,
        ...                      rng=np.random.default_rng(0))
        >>> round(float(np.mean(~np.isnan(won_at))), 2), round(float(np.mean(won_at <= 30)), 2)
        (0.62, 0.61)
        >>> round(float(tm.win_probability()["probability"].iloc[-1]), 2)
        0.62
        """
        self._check()
        S, K, B = self._n_tr, self._K, len(self.states_)
        if sample_idx is None:
            mass = self._mass[None]
            samp = np.zeros(len(stage_idx), dtype=np.int64)
        else:
            if self._mass_samples is None:
                raise TransitionModelError("the model has no posterior samples (n_samples=0).")
            mass = self._mass_samples
            samp = np.asarray(sample_idx, dtype=np.int64)
        Gp = mass.shape[1]
        n = len(stage_idx)
        cur = np.asarray(stage_idx, dtype=np.int64).copy()
        d = np.nan_to_num(np.asarray(days_in_stage, dtype=float), nan=0.0)
        elapsed = np.zeros(n) if start_offset is None else np.asarray(start_offset, dtype=float).copy()
        row = samp * Gp + np.asarray(group_idx, dtype=np.int64)
        won_at = np.full(n, np.nan)
        active = np.flatnonzero(elapsed <= horizon_days)
        # two-level inverse-CDF sampling: the day from the per-row CDF over days, then the
        # destination given the day (small arrays: cache-friendly)
        key = "point" if sample_idx is None else "samples"
        cdfs = self._cdf_cache.setdefault(key, {})  # per stage; reset by fit()
        R = mass.shape[0] * Gp
        for _ in range(1000):
            if active.size == 0:
                break
            nxt = []
            cur_now = cur[active]  # stage at the start of the round: one move per path per round
            for s in range(S):
                idx = active[cur_now == s]
                if idx.size == 0:
                    continue
                if s not in cdfs:
                    ms = mass[:, :, s].reshape(R, K, B)
                    c = np.cumsum(ms.sum(axis=2, dtype=np.float64), axis=1)
                    cdfs[s] = (c + np.arange(R)[:, None], ms)
                C, ms = cdfs[s]
                r = row[idx]
                ds = d[idx]
                q = np.minimum(np.where(ds > 0, np.floor(ds), -1).astype(np.int64), K - 1)
                lower = np.where(q >= 0, C[r, np.maximum(q, 0)] - r, 0.0)
                u = lower + rng.random(idx.size) * (1.0 - lower)
                k = np.searchsorted(C.ravel(), u + r, side="right") - r * K
                stall = k >= K
                k = np.minimum(k, K - 1)
                cum = np.cumsum(ms[r, k].astype(np.float64), axis=1)  # (n, B)
                u2 = rng.random(idx.size) * cum[:, -1]
                b = np.minimum((cum <= u2[:, None]).sum(axis=1), B - 1)
                t_ev = elapsed[idx] + (k - ds)
                go = ~stall & (t_ev <= horizon_days)
                win = go & (b == S)
                won_at[idx[win]] = t_ev[win]
                move = go & (b < S)
                mi = idx[move]
                cur[mi] = b[move]
                d[mi] = 0.0
                elapsed[mi] = t_ev[move]
                nxt.append(mi)
            active = np.concatenate(nxt) if nxt else np.array([], dtype=np.int64)
        return won_at

    # ------------------------------------------------------------------
    @property
    def summary(self) -> pd.DataFrame:
        """One row per (segment,) stage: stays, moves, open stays, stall and win probability.

        Columns: ``by`` columns, ``stage``, ``stays``, ``moved`` (stays that
        ended), ``open`` (censored), ``stalled`` (probability of never moving
        again), ``win_probability`` with ``ci_low``/``ci_high``,
        ``expected_steps``.
        """
        self._check()
        pooled = not self.by_
        gsel = self._groups_for(pooled)
        S = self._n_tr
        wp = self.win_probability(pooled=pooled)
        es = self.expected_steps(pooled=pooled)
        c = self.counts_
        stage_pos = c["from_stage"].cat.codes.to_numpy()
        if self.by_:
            gi = self.group_index(c.drop(columns=[LEAD], errors="ignore"), lead="__none__")
        else:
            gi = np.zeros(len(c), dtype=np.int64)
        G = len(self.groups_)
        is_open = (c["to_stage"] == OPEN).to_numpy()
        n = c["n"].to_numpy()
        tot = np.bincount(gi * S + stage_pos, weights=n, minlength=G * S).reshape(G, S)
        opn = np.bincount(gi * S + stage_pos, weights=n * is_open, minlength=G * S).reshape(G, S)
        if pooled:
            tot, opn = tot.sum(axis=0, keepdims=True), opn.sum(axis=0, keepdims=True)
            rows = np.zeros(len(gsel), dtype=np.int64)
        else:
            rows = gsel
        g_of = np.repeat(rows, S)
        s_of = np.tile(np.arange(S), len(gsel))
        stalled = self._eventual(False)[np.repeat(gsel, S), s_of, -1]
        out = wp.rename(columns={"probability": "win_probability"})
        k = len(self.by_) + 1
        out.insert(k, "stays", tot[g_of, s_of].astype(np.int64))
        out.insert(k + 1, "moved", (tot - opn)[g_of, s_of].astype(np.int64))
        out.insert(k + 2, "open", opn[g_of, s_of].astype(np.int64))
        out.insert(k + 3, "stalled", stalled)
        out["expected_steps"] = es["expected_steps"].to_numpy()
        return out

    def _repr_html_(self) -> str:
        from .display import model_html

        return model_html(self)

    def __repr__(self) -> str:
        if not self._fitted:
            return (
                f"<TransitionModel (not fitted) min_count={self.min_count}, "
                f"shrinkage={self.shrinkage}, n_samples={self.n_samples}>"
            )
        seg = f", by={self.by_} ({len(self.groups_)} segments)" if self.by_ else ""
        if "_stays_parts" in self.__dict__:  # without building stays_
            n_stays = len(self._stays_parts["to"])
            n_open = int(np.count_nonzero(self._stays_parts["to"] == len(self.states_)))
        else:
            n_stays, n_open = len(self.stays_), int((self.stays_["to_stage"] == OPEN).sum())
        wp = self.win_probability(pooled=True)
        parts = ", ".join(f"{s} {p:.1%}" for s, p in zip(wp["stage"], wp["probability"]))
        return (
            f"<TransitionModel {self.stage_set_.name} as of {self.as_of_:%Y-%m-%d %H:%M}{seg}: "
            f"{n_stays:,} stays ({n_open:,} open), {self.n_samples} posterior samples; "
            f"P(win) from {parts}>"
        )


# ---------------------------------------------------------------------------
# fitting, in two parts: the stay events of whole leads, then the model
# ---------------------------------------------------------------------------
def _fit_spec(log: pd.DataFrame, *, stages, by, as_of, value, lead, stage, time) -> dict:
    """Check the columns and the stage set of a fit; what every part of the fit needs.

    ``log`` may be a Dask DataFrame's empty ``_meta``: only its columns and dtypes are read.
    """
    ss = resolve_stages(log, stages)
    by = as_list(by)
    require_columns(log, [lead, stage, time, *by, *([value] if value else [])],
                    "pass the right names with lead=, stage=, time=, by=, value=.")
    if not pd.api.types.is_datetime64_any_dtype(log[time].dtype):
        raise InvalidEventLogError(
            [
                Problem(
                    "bad_timestamp",
                    time,
                    f"column {time!r} holds {log[time].dtype}, not datetimes.",
                    "load the log with funnelkit.read_events (it parses and checks times).",
                )
            ]
        )
    steps = list(ss.steps)
    if len(steps) < 2:
        raise TransitionModelError(
            f"stage set {ss.name!r} has a single step; a transition model needs at least two."
        )
    return {
        "ss": ss,
        "steps": steps,
        "n_tr": len(steps) - 1,  # transient stages; steps[-1] is the goal
        "states": [*steps, *ss.lost],
        "by": by,
        "as_of": as_of,
        "value": value,
        "lead": lead,
        "stage": stage,
        "time": time,
        "tz": time_zone(log[time]),
        # the fit moment and the last dated event of the whole log (None: of the log given
        # to _stay_events, which is then the whole log)
        "T": None,
        "data_end": None,
    }


def _fit_moment(spec: dict, data_end) -> tuple[np.int64, np.int64]:
    """``as_of`` in int64 ns (default: the last dated event ``data_end``; None: no dated
    event), and the last dated event (0 when there is none)."""
    as_of = spec["as_of"]
    if data_end is None and as_of is None:
        raise TransitionModelError("the log has no dated event; pass as_of= or add timestamps.")
    data_end = np.int64(0) if data_end is None else np.int64(data_end)
    if as_of is None:
        return data_end, data_end
    return np.int64(_parse_as_of(as_of, error=TransitionModelError, tz=spec["tz"]).value), data_end


def _index_dtype(n: int):
    """The smallest integer type of positions (or codes) below ``n``: int32 up to 2**31."""
    return np.int32 if n < 2**31 else np.int64


def _ngroup(frame: pd.DataFrame, by: list) -> np.ndarray:
    """``frame.groupby(by, observed=True, dropna=False, sort=True).ngroup()``; for one
    categorical column, from its codes (no groupby): the observed categories in their
    order, missing values last."""
    col = frame[by[0]] if len(by) == 1 else None
    if col is None or not isinstance(col.dtype, pd.CategoricalDtype):
        return frame.groupby(by, observed=True, dropna=False, sort=True).ngroup().to_numpy()
    codes = col.cat.codes.to_numpy()
    n_cat = len(col.cat.categories)
    seen = np.zeros(n_cat + 1, dtype=bool)  # the last slot: missing (code -1)
    seen[codes] = True
    number = np.cumsum(seen) - 1
    return number[codes]


def _lead_runs(values: pd.Series) -> tuple[np.ndarray, pd.Index] | None:
    """``checked_leads`` of a lead column sorted by lead (Arrow text or integers), without
    a hash table: its leads are runs, numbered in order (int32 codes).  None: another
    column (missing ids, unsorted, other types), for ``checked_leads``."""
    n = len(values)
    arr = values.array
    if n < 2:
        return None
    if hasattr(arr, "_pa_array"):  # Arrow-backed text: compared in Arrow, no Python strings
        import pyarrow.compute as pc

        a = arr._pa_array
        if a.null_count:
            return None
        try:
            if not pc.all(pc.less_equal(a[:-1], a[1:])).as_py():
                return None
            start = np.empty(n, dtype=bool)
            start[1:] = pc.not_equal(a[1:], a[:-1]).to_numpy(zero_copy_only=False)
        except Exception:  # a type Arrow does not order
            return None
    elif isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu":
        v = values.to_numpy()
        if not (v[1:] >= v[:-1]).all():
            return None
        start = np.empty(n, dtype=bool)
        np.not_equal(v[1:], v[:-1], out=start[1:])
    else:
        return None
    start[0] = True
    codes = np.cumsum(start, dtype=_index_dtype(n))
    codes -= 1
    return codes, pd.Index(arr[start])  # each run's id, in order


def _raw_times(log: pd.DataFrame, time: str) -> tuple[np.ndarray, int]:
    """The event times as int64 in the column's own unit, without a copy (UTC instants for
    a log with a zone), and the factor to nanoseconds; ``checked_times`` (ns, a copy)
    for other columns and for times beyond the nanosecond range (its error)."""
    arr = log[time].array
    raw = getattr(arr, "_ndarray", None)  # a DatetimeArray's numpy datetimes
    if isinstance(arr, pd.arrays.DatetimeArray) and isinstance(raw, np.ndarray) and raw.dtype.kind == "M":
        unit, step = np.datetime_data(raw.dtype)
        per = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}.get(unit)
        if per is not None and step == 1:
            t = raw.view(np.int64)
            if per == 1:
                return t, 1
            dated = t != NAT
            lim = np.iinfo(np.int64).max // per
            if not dated.any() or (t.max(where=dated, initial=-lim) <= lim
                                   and t.min(where=dated, initial=lim) > -lim):
                return t, per
    return checked_times(log, time=time), 1


def _stay_events(log: pd.DataFrame, spec: dict, *, lead_codes=None, lead_ids=None) -> dict:
    """The events of a set of whole leads that make their stays (the fit's per-lead part).

    Keeps the events known at ``as_of``, sorts each lead's events by time
    (an outcome last at ties), cuts each path at its first outcome and keeps
    the first event of each run of the same stage.  Returns those events'
    lead codes ``lc`` (indices into ``lead_ids``; int32 below 2**31 leads), times
    ``tt`` (int64 ns) and states ``st`` (int8), in (lead, time) order; the latest
    ``by`` values and ``value`` of every lead (``segments``, ``value``); the counts
    behind the note on events after an outcome; and ``kept`` (False: no event at or
    before ``as_of``).  Leads have all their events in ``log``, so the
    results of lead-partitioned chunks, put one after the other, are those
    of the whole log (``funnelkit._kernels.merge_stay_events``).

    ``lead_codes`` and ``lead_ids``: the leads already numbered (else
    ``pd.factorize`` of the lead column, checked).

    Memory: the arrays over every event are the log's times (int64 ns), the lead
    codes (int32), the states (int8) and a few masks and int32 running sums; the
    rows are copied (and sorted) only when some events come after ``as_of`` or the
    log is not in (lead, time) order.
    """
    ss, states, n_tr, by, value = spec["ss"], spec["states"], spec["n_tr"], spec["by"], spec["value"]
    lead, stage, time = spec["lead"], spec["stage"], spec["time"]
    # state index per row, through the categories (vectorised); code -1 (missing) takes
    # the lookup's last entry
    cat = pd.Categorical(log[stage])
    lut = []
    for c in cat.categories:
        name = ss.canonical(c)
        lut.append(states.index(name) if name is not None else -2)
    lut = np.array([*lut, -2], dtype=np.int8 if len(states) < 127 else np.int64)
    state = lut[cat.codes]
    del cat
    if (state == -2).any():
        bad = pd.Series(log[stage].to_numpy()[state == -2]).value_counts(dropna=False)
        raise InvalidEventLogError(
            [
                Problem(
                    "unknown_stage",
                    stage,
                    f"labels not in stage set {ss.name!r}: "
                    + ", ".join(f"{k!r} x{v:,}" for k, v in bad.items()),
                    "load the log with this stage set (read_events(..., stages=...)) or add aliases.",
                )
            ]
        )
    if lead_codes is None:  # numbered by runs when the log is sorted by lead, else factorized
        runs = _lead_runs(log[lead])
        lead_codes, lead_ids = runs if runs is not None else checked_leads(log, lead=lead)
        del runs
    n_leads = len(lead_ids)
    lead_codes = np.asarray(lead_codes).astype(_index_dtype(n_leads), copy=False)
    # times in the column's unit (no copy; ``per`` ns each): only the kept events' times
    # are turned into nanoseconds
    t, per = _raw_times(log, time)
    dated = t != NAT
    all_dated = bool(dated.all())
    any_dated = all_dated or bool(dated.any())
    t_max = int(t.max(where=dated, initial=np.iinfo(np.int64).min)) * per if any_dated else None
    t_min = int(t.min(where=dated, initial=np.iinfo(np.int64).max)) * per if any_dated else None
    if spec["T"] is None:
        T, data_end = _fit_moment(spec, t_max)
    else:
        T, data_end = spec["T"], spec["data_end"]
    out = {
        "lead_ids": lead_ids,
        "T": T,
        "data_start": t_min,
        "kept": True,
        "n_after": 0,
        "n_after_leads": 0,
    }

    # events kept at as_of (the snapshot's rule for undated events)
    if T >= data_end and all_dated:  # everything is known at as_of: no copies
        keep = None
        lc, tt, st = lead_codes, t, state
    else:
        le = dated & (t <= T // per)  # t * per <= T
        n_le = np.bincount(lead_codes[le], minlength=n_leads)
        n_dated = np.bincount(lead_codes[dated], minlength=n_leads)
        present = (n_le > 0) | ((n_dated == 0) & (T >= data_end))
        del n_le, n_dated
        keep = le | (~dated & present[lead_codes])
        del le, present
        out["kept"] = bool(keep.any())
        lc, tt, st = lead_codes[keep], t[keep], state[keep]
    del dated
    top = np.iinfo(st.dtype).max
    # (lead, time, outcome last at ties) order, checked without an int64 sort key
    rows_sorted = bool((lc[1:] >= lc[:-1]).all())
    if rows_sorted:
        same = lc[1:] == lc[:-1]
        rows_sorted = not (same & (tt[1:] < tt[:-1])).any()
        if rows_sorted:
            i = np.flatnonzero(same & (tt[1:] == tt[:-1]))  # ties: an outcome comes last
            k0, k1 = st[i], st[i + 1]
            rows_sorted = bool((np.where(k1 > n_tr, top, k1) >= np.where(k0 > n_tr, top, k0)).all())
            del i, k0, k1
        del same
    if not rows_sorted:  # a loaded log is usually sorted already: skip the costly sort
        o = np.lexsort((np.where(st > n_tr, top, st), tt, lc))
        lc, tt, st = lc[o], tt[o], st[o]
        del o

    # truncate each path at its first outcome: per lead, the events after its first absorbing
    # event form one interval (lc is sorted), marked +1 / -1 and summed in int8
    lead_start = _starts(lc)
    ab = np.flatnonzero(st >= n_tr)
    first_ab = ab[_starts(lc[ab])]  # each lead's first absorbing event
    del ab
    mark = np.zeros(lc.size + 1, dtype=np.int8)
    mark[first_ab + 1] = 1
    mark[np.searchsorted(lc, lc[first_ab], side="right")] -= 1  # where those leads end
    del first_ab
    after = np.cumsum(mark[:-1], dtype=np.int8).astype(bool)
    del mark
    n_after = int(np.count_nonzero(after))
    if n_after:
        la = lc[after]  # sorted by lead
        out["n_after"] = n_after
        out["n_after_leads"] = int(np.count_nonzero(la[1:] != la[:-1])) + 1
        del la
    # consecutive events of the same stage are one stay (the events after an outcome end
    # each lead's sequence, so dropping them does not change which events are adjacent)
    new_run = _starts(st)
    new_run |= lead_start
    del lead_start
    if n_after:
        new_run &= ~after
    del after
    out["lc"], out["tt"], out["st"] = lc[new_run], tt[new_run], st[new_run]
    del new_run, lc, tt, st
    if per != 1:  # to nanoseconds (undated events stay NaT)
        tt = out["tt"]
        nat = tt == NAT
        tt *= per
        tt[nat] = NAT
        del tt, nat

    # lead-level segments: latest known value up to as_of
    rows_all = None  # None: every row, already in (lead, time) order
    if by or value is not None:
        if keep is None and rows_sorted:
            pass
        else:
            rows_all = np.arange(t.size) if keep is None else np.flatnonzero(keep)
            rc, rt = lead_codes[rows_all], t[rows_all]
            if not ((rc[1:] > rc[:-1]) | ((rc[1:] == rc[:-1]) & (rt[1:] >= rt[:-1]))).all():
                rows_all = rows_all[np.lexsort((rt, rc))]
            del rc, rt
    del keep, t
    out["segments"] = {
        col: _latest(log[col], rows_sorted=rows_all, lead_codes=lead_codes, n_leads=n_leads) for col in by
    }
    out["value"] = None
    if value is not None:
        out["value"] = pd.to_numeric(
            _latest(log[value], rows_sorted=rows_all, lead_codes=lead_codes, n_leads=n_leads), errors="coerce"
        ).to_numpy(dtype=float)
    return out


def _windows(in_stage_ns, horizons_ns) -> tuple[np.ndarray, np.ndarray]:
    """Whole days spent ``q`` (-1: just entered) and the number of stay-days ``h`` after
    them that still fall within each horizon.

    A move on day k of the stay (a stay that ended after ``k - 1`` and up to ``k`` days)
    comes ``k - d`` days from now, so it falls within a horizon of ``x`` days when
    ``k <= d + x``: ``q = floor(d)`` and ``h = floor(d + x) - q``.  A lead that just entered
    (``d = 0``, or unknown: negative) can also move on day 0: ``h = floor(x)``, days
    ``0 .. h``.  Computed in integer nanoseconds, so that an as-of at the end of a day and
    moves dated at midnight fall exactly where they should.

    Parameters
    ----------
    in_stage_ns : int64 array (n,)
        Time already spent in the stage (negative: unknown, taken as just entered).
    horizons_ns : int64 array (n, P) or (P,)

    Returns
    -------
    q : ndarray (n,) of int
    h : ndarray (n, P) of int
    """
    d = np.asarray(in_stage_ns, dtype=np.int64)
    x = np.asarray(horizons_ns, dtype=np.int64)
    x = np.broadcast_to(x if x.ndim == 2 else x[None, :], (d.size, x.shape[-1]))
    fresh = d <= 0
    q = np.where(fresh, -1, d // DAY_NS)
    h = np.where(fresh[:, None], x // DAY_NS, (np.maximum(d, 0)[:, None] + x) // DAY_NS - q[:, None])
    return q.astype(np.int64), np.maximum(h, 0).astype(np.int64)


def _latest(values: pd.Series, *, rows_sorted: np.ndarray | None, lead_codes, n_leads) -> pd.Series:
    """Per lead: its latest non-missing value among the given rows (in lead, time order;
    ``None``: every row, already in that order).  Read 256k rows at a time, so
    that no array over every event is made."""
    is_cat = isinstance(values.dtype, pd.CategoricalDtype)
    if is_cat:
        vc = values.cat.codes.to_numpy()
    n = len(values) if rows_sorted is None else rows_sorted.size
    pdt = _index_dtype(len(values))
    last = np.full(n_leads, -1, dtype=pdt)
    step = 1 << 18
    for a in range(0, n, step):  # later rows overwrite earlier ones: the latest
        rows = np.arange(a, min(n, a + step), dtype=pdt) if rows_sorted is None else rows_sorted[a : a + step]
        ok = vc[rows] >= 0 if is_cat else values.iloc[rows].notna().to_numpy()
        r_ok = rows[ok]
        last[lead_codes[r_ok]] = r_ok
    has = last >= 0
    if is_cat:
        codes = np.where(has, vc[np.maximum(last, 0)], -1)
        return pd.Series(pd.Categorical.from_codes(codes, dtype=values.dtype))
    arr = values.to_numpy()[np.maximum(last, 0)] if len(values) else np.array([])
    return pd.Series(arr).where(has)
