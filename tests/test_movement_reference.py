"""pipeline.movement / movement_leads in one pass over the events against the two snapshots
joined on the lead ids they replaced, kept here verbatim as the reference (commit 58c8cba):
same tables, dtypes, row order, attrs, notes, warnings and errors, on the demo, on hostile
logs and on real logs."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from messy_logs import bpic2020_first_step, fines_four_steps, in_paris

import funnelkit as fk
from funnelkit import parallel, pipeline
from funnelkit._common import as_list
from funnelkit.data import AMOUNT, LEAD, STAGE, TIME
from funnelkit.exceptions import InvalidEventLogError, PipelineError
from funnelkit.pipeline import MOVEMENTS, _member, _start_end, _ts, snapshot
from funnelkit.stages import StageSet


# ---------------------------------------------------------------------------
# the reference: movement_leads, _movement_from, movement and _waterfall as of commit 58c8cba, verbatim
# ---------------------------------------------------------------------------
def reference_movement_leads(
    log: pd.DataFrame,
    *,
    start,
    end,
    stages: StageSet | str | Sequence[str] | None = None,
    segments: str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """Per lead: what happened to it between two dates.

    Compares :func:`snapshot` at ``start`` and at ``end`` (both with closed
    leads).  Leads open at ``start`` either *stayed* in their stage,
    *advanced*, *moved_back*, were *won* or *lost* by ``end``; leads not yet
    in the data at ``start`` *entered* (and may already be *entered_won* or
    *entered_lost*).  Leads closed before ``start`` are not part of the
    movement.

    Returns
    -------
    DataFrame
        One row per lead involved: ``lead_id``, ``movement`` (one of
        :data:`MOVEMENTS`), ``stage_start`` / ``stage_end`` (stage or outcome
        at each date; missing at ``start`` for new leads), ``amount_start``
        (amount at ``start``, missing for new leads), ``amount_end``, the
        segments (as of ``end``), and ``reentered`` (bool: a lead that
        *stayed* but left its stage and came back in between).

    Examples
    --------
    >>> import funnelkit as fk
    >>> mv = fk.pipeline.movement_leads(fk.datasets.load_demo(), start="2025-06-30", end="2025-07-31")
    >>> sorted(mv["movement"].unique().astype(str))[:3]
    ['advanced', 'entered', 'entered_lost']
    """
    ta, tb, tz = _start_end(log[time] if time in log.columns else None, start, end)
    kw = dict(stages=stages, include_closed=True, segments=segments, lead=lead, stage=stage,
              time=time, amount=amount)
    a = snapshot(log, as_of=_ts(ta, tz), **kw)
    b = snapshot(log, as_of=_ts(tb, tz), **kw)
    return reference_movement_from(a, b, ta, tb, tz, lead=lead)


def reference_movement_from(a: pd.DataFrame, b: pd.DataFrame, ta, tb, tz, *, lead: str) -> pd.DataFrame:
    """The table of :func:`movement_leads` from the snapshots (with closed leads) at start and end."""
    ss = a.attrs["stage_set"]
    a_open = a.loc[a["outcome"] == "open", [lead, "stage", AMOUNT, "entered_stage_at"]]
    a_closed = a.loc[a["outcome"] != "open", lead]
    b_in = b.loc[~_member(b[lead], a_closed)]
    missing = ~_member(a_open[lead], b_in[lead])
    if missing.any():  # cannot happen: a lead present at start is present at end
        raise PipelineError(
            f"{int(missing.sum())} lead(s) open at start are missing at end (e.g. "
            f"{a_open.loc[missing, lead].iloc[0]!r}); please report this as a bug."
        )
    m = b_in.merge(
        a_open.rename(columns={"stage": "stage_start", AMOUNT: "amount_start",
                               "entered_stage_at": "_entered_a"}),
        on=lead, how="left",
    )
    labels = list(ss.labels)
    order_of = np.array([ss.order(x) for x in labels])
    code_a = m["stage_start"].cat.codes.to_numpy()
    code_b = m["stage"].cat.codes.to_numpy()
    new = code_a < 0
    oc = m["outcome"].astype(str).to_numpy()
    oa = np.where(new, -9, order_of[np.maximum(code_a, 0)])
    ob = order_of[code_b]
    mv = np.select(
        [
            new & (oc == "won"), new & (oc == "lost"), new,
            oc == "won", oc == "lost",
            ob > oa, ob < oa,
        ],
        ["entered_won", "entered_lost", "entered", "won", "lost", "advanced", "moved_back"],
        default="stayed",
    )
    reentered = (mv == "stayed") & (m["entered_stage_at"] != m["_entered_a"]).to_numpy()
    segs = [c for c in b.columns if c not in {
        lead, "stage", "entered_stage_at", "days_in_stage", "first_seen_at", "age_days", AMOUNT,
        "last_activity_at", "flag", "outcome", "closed_at"}]
    out = pd.DataFrame(
        {
            lead: m[lead].to_numpy(),
            "movement": pd.Categorical(mv, categories=list(MOVEMENTS)),
            "stage_start": m["stage_start"].to_numpy(),
            "stage_end": m["stage"].to_numpy(),
            "amount_start": m["amount_start"].to_numpy(dtype=float),
            "amount_end": m[AMOUNT].to_numpy(dtype=float),
        }
    )
    out["stage_start"] = pd.Categorical(out["stage_start"], categories=labels, ordered=True)
    out["stage_end"] = pd.Categorical(out["stage_end"], categories=labels, ordered=True)
    for s in segs:
        out[s] = m[s].to_numpy() if not isinstance(m[s].dtype, pd.CategoricalDtype) else m[s].values
    out["reentered"] = reentered
    notes = list(dict.fromkeys(a.attrs["notes"] + b.attrs["notes"]))
    out.attrs = {"start": _ts(ta, tz), "end": _ts(tb, tz), "stage_set": ss, "notes": notes}
    return out


def reference_movement(
    log: pd.DataFrame,
    *,
    start,
    end,
    by: str | Sequence[str] | None = None,
    stages: StageSet | str | Sequence[str] | None = None,
    lead: str = LEAD,
    stage: str = STAGE,
    time: str = TIME,
    amount: str | None = AMOUNT,
) -> pd.DataFrame:
    """The pipeline waterfall between two dates: leads and value in and out.

    Rows, in waterfall order (``kind`` in brackets):

    * ``start`` (level): leads open at ``start`` and their value then;
    * ``entered`` (in): leads new since ``start`` (including those already
      closed by ``end``), value as of ``end``;
    * ``won``, ``lost`` (out): leads closed between the dates (open at
      ``start`` or new), value as of ``end``;
    * ``value_change`` (change): change in the amounts of leads open at
      ``start`` (0 leads);
    * ``end`` (level): leads open at ``end`` and their value.

    and, for information (``kind="detail"``), how the leads open at ``start``
    and still open at ``end`` moved: ``advanced``, ``moved_back``,
    ``stayed``.

    The waterfall reconciles **exactly**: ``start + entered - won - lost =
    end`` for leads, and ``start + entered + value_change - won - lost =
    end`` for value (unknown amounts count as 0, and how many there are is
    in ``attrs["notes"]``).  The check is made on every call; a
    :class:`PipelineError` is raised if it fails.

    Parameters
    ----------
    log : DataFrame
    start, end : date
        The two moments (a date without time means the end of that day).
    by : str or list of str, optional
        Segment column(s) (values as of ``end``).
    stages, lead, stage, time, amount
        As in :func:`snapshot`.

    Returns
    -------
    DataFrame
        The ``by`` columns, ``movement``, ``kind``, ``leads``, ``value``,
        ``sign`` (+1 in, -1 out, 0 level or detail).  ``attrs``: ``start``,
        ``end``, ``reconciled`` (True), ``notes``.

    Examples
    --------
    >>> import funnelkit as fk
    >>> w = fk.pipeline.movement(fk.datasets.load_demo(), start="2025-06-30", end="2025-07-31")
    >>> n = w.set_index("movement")["leads"]
    >>> int(n["start"] + n["entered"] - n["won"] - n["lost"]) == int(n["end"])
    True
    """
    by = as_list(by)
    mv = reference_movement_leads(log, start=start, end=end, stages=stages, segments=by or [],
                        lead=lead, stage=stage, time=time, amount=amount)
    return reference_waterfall(mv, by)


def reference_waterfall(mv: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The table of :func:`movement` from the per-lead movements (:func:`movement_leads`)."""
    notes = list(mv.attrs["notes"])
    mcat = mv["movement"].astype(str).to_numpy()
    from_start = ~np.isin(mcat, ["entered", "entered_won", "entered_lost"])
    open_end = np.isin(mcat, ["stayed", "advanced", "moved_back", "entered"])
    a_amt = mv["amount_start"].fillna(0.0).to_numpy()
    b_amt = mv["amount_end"].fillna(0.0).to_numpy()
    unk = int((mv["amount_start"].isna() & from_start).sum() + mv["amount_end"].isna().sum())
    if unk:
        notes.append(f"{unk:,} amount(s) are unknown and count as 0 in the value column.")
    rows_spec = [
        ("start", "level", 0, from_start, a_amt),
        ("entered", "in", 1, ~from_start, b_amt),
        ("won", "out", -1, np.isin(mcat, ["won", "entered_won"]), b_amt),
        ("lost", "out", -1, np.isin(mcat, ["lost", "entered_lost"]), b_amt),
        ("value_change", "change", 1, None, None),
        ("end", "level", 0, open_end, b_amt),
        ("advanced", "detail", 0, mcat == "advanced", b_amt),
        ("moved_back", "detail", 0, mcat == "moved_back", b_amt),
        ("stayed", "detail", 0, mcat == "stayed", b_amt),
    ]
    if by:
        gid = mv.groupby(by, observed=True, dropna=False, sort=True).ngroup().to_numpy()
        keys = mv[by].assign(_g=gid).drop_duplicates("_g").sort_values("_g").reset_index(drop=True)
    else:
        gid = np.zeros(len(mv), dtype=np.int64)
        keys = pd.DataFrame({"_g": [0]})
    ng = len(keys)
    frames = []
    for name, kind, sign, mask, amt in rows_spec:
        if mask is None:
            n = np.zeros(ng)
            val = np.bincount(gid, weights=np.where(from_start, b_amt - a_amt, 0.0), minlength=ng)
        else:
            n = np.bincount(gid, weights=mask.astype(float), minlength=ng)
            val = np.bincount(gid, weights=np.where(mask, amt, 0.0), minlength=ng)
        frames.append(pd.DataFrame({"_g": np.arange(ng), "movement": name, "kind": kind,
                                    "leads": n.astype(np.int64), "value": val, "sign": sign}))
    res = pd.concat(frames, ignore_index=True)
    # reconcile, per group
    piv_n = res.pivot(index="_g", columns="movement", values="leads")
    piv_v = res.pivot(index="_g", columns="movement", values="value")
    bad_n = piv_n["start"] + piv_n["entered"] - piv_n["won"] - piv_n["lost"] != piv_n["end"]
    lhs = piv_v["start"] + piv_v["entered"] + piv_v["value_change"] - piv_v["won"] - piv_v["lost"]
    scale = np.maximum(1.0, np.abs(piv_v[["start", "end", "entered"]]).max(axis=1))
    bad_v = np.abs(lhs - piv_v["end"]) > 1e-9 * scale
    if bad_n.any() or bad_v.any():
        raise PipelineError("the movement does not reconcile; please report this as a bug.")
    res = res.merge(keys, on="_g").sort_values("_g", kind="stable").drop(columns="_g")
    res["movement"] = pd.Categorical(
        res["movement"],
        categories=["start", "entered", "won", "lost", "value_change", "end",
                    "advanced", "moved_back", "stayed"],
        ordered=True,
    )
    res = res[[*by, "movement", "kind", "leads", "value", "sign"]].reset_index(drop=True)
    res.attrs = {"start": mv.attrs["start"], "end": mv.attrs["end"], "reconciled": True,
                 "notes": notes, "stage_set": mv.attrs["stage_set"]}
    return res



# ---------------------------------------------------------------------------
# comparing
# ---------------------------------------------------------------------------
def _run(fn, log, **kw):
    """The result (or the error raised) and the warnings."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            out = fn(log, **kw)
        except Exception as exc:  # the same error is expected of both
            out = exc
    return out, [(x.category, str(x.message)) for x in w]


def _same(got, want):
    if isinstance(want, Exception):
        assert type(got) is type(want) and str(got) == str(want)
        return
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.attrs.keys() == want.attrs.keys()
    for k, v in want.attrs.items():
        assert got.attrs[k] == v or got.attrs[k] is v, k


def assert_same(log, **kw):
    """movement_leads and movement (by the segments asked, or none) against the reference."""
    want, w_want = _run(reference_movement_leads, log, **kw)
    got, w_got = _run(pipeline.movement_leads, log, **kw)
    _same(got, want)
    assert w_got == w_want
    segments = kw.pop("segments", None)
    for by in ([None, segments] if segments else [None]):
        want_w, w_want = _run(reference_movement, log, by=by, **kw)
        got_w, w_got = _run(pipeline.movement, log, by=by, **kw)
        _same(got_w, want_w)
        assert w_got == w_want
    return got


def assert_same_error(log, exc=Exception, **kw):
    with pytest.raises(exc) as theirs:
        reference_movement_leads(log, **kw)
    with pytest.raises(type(theirs.value)) as ours:
        pipeline.movement_leads(log, **kw)
    assert str(ours.value) == str(theirs.value)


# ---------------------------------------------------------------------------
# the demo
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo():
    return fk.datasets.load_demo()


DEMO_DATES = [("2025-06-30", "2025-07-31"), ("2025-01-01", "2025-12-31"), ("2024-03-31 12:00", "2024-04-01"),
              ("1990-01-01", "2025-03-31"), ("2025-06-30", "2031-01-01"), ("1990-01-01", "1991-01-01")]


@pytest.mark.parametrize(("start", "end"), DEMO_DATES)
@pytest.mark.parametrize("segments", [None, [], "product", ["product", "source"]])
def test_demo(demo, start, end, segments):
    assert_same(demo, start=start, end=end, segments=segments)
    if (start, end) == ("2025-06-30", "2025-07-31"):
        assert len(pipeline.movement_leads(demo, start=start, end=end)) > 500  # a real comparison


def test_demo_options(demo):
    shuffled = demo.sample(frac=1, random_state=4).reset_index(drop=True)
    for log in (demo, shuffled):
        for kw in ({"amount": None}, {"stages": "pipeline4"}, {"segments": "owner"}):
            assert_same(log, start="2025-03-31", end="2025-09-30", **kw)
    renamed = demo.rename(columns={"amount": "value", "lead_id": "deal"})
    assert_same(renamed, start="2025-03-31", end="2025-09-30", amount="value", lead="deal", segments="product")
    # a column that the snapshots' own columns overwrite: the snapshots' answer, whatever it is
    assert_same(demo.assign(outcome="x", reentered=1.5), start="2025-03-31", end="2025-09-30")
    assert_same(demo, start="2025-03-31", end="2025-09-30", amount=None, segments=None)  # "amount" a segment


def test_demo_errors(demo):
    assert_same_error(demo, start="2025-06-30", end="2025-06-30")
    assert_same_error(demo, start="2025-06-30", end="2025-01-01")
    assert_same_error(demo, start="nope", end="2025-01-01")
    assert_same_error(demo, start="2025-01-01", end=None)
    assert_same_error(demo, start="2025-01-01", end="2025-06-30", segments="nope")
    assert_same_error(demo, start="2025-01-01", end="2025-06-30", stages="aida")
    assert_same_error(demo.drop(columns="stage"), start="2025-01-01", end="2025-06-30")
    assert_same_error(demo, start="2025-01-01", end="2025-06-30", lead="nope")
    assert_same_error(demo.assign(amount="x"), start="2025-01-01", end="2025-06-30")
    assert_same_error(demo.to_dict(), start="2025-01-01", end="2025-06-30")
    assert_same_error(demo, start=pd.Timestamp("2025-01-01", tz="UTC"), end="2025-06-30")
    bad = demo.assign(stage=demo["stage"].astype(object).where(demo.index != 3, "nope"))
    assert_same_error(bad, exc=InvalidEventLogError, start="2025-01-01", end="2025-06-30")
    assert_same_error(demo.assign(lead_id=demo["lead_id"].where(demo.index != 5)), exc=InvalidEventLogError,
                      start="2025-01-01", end="2025-06-30")


# ---------------------------------------------------------------------------
# hostile logs
# ---------------------------------------------------------------------------
def _hostile(seed: int, n: int = 3000) -> pd.DataFrame:
    """Shuffled rows, revisits and backward moves in any order, duplicate times, undated
    events, missing segments and NaN amounts, leads with only undated events, with only
    outcomes, won and lost at the same instant, closed early, or seen only late."""
    rng = np.random.default_rng(seed)
    labels = list(fk.get_stage_set("pipeline4").labels)
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 60 * 24, n), unit="h")
    df = pd.DataFrame(
        {
            "lead_id": [f"L{x:04d}" for x in rng.integers(0, 400, n)],
            "stage": pd.Categorical(rng.choice(labels, n, p=[0.3, 0.2, 0.15, 0.1, 0.1, 0.15])),
            "timestamp": t,
            "amount": np.where(rng.random(n) < 0.3, np.nan, rng.integers(1, 900, n).astype(float)),
            "product": pd.Categorical(rng.choice(["a", "b", None], n)),
            "owner": pd.Series(rng.choice(["ann", "bo", None], n), dtype=object),
            "score": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 5, n).astype(float)),
        }
    )
    df.loc[rng.random(n) < 0.06, "timestamp"] = pd.NaT
    ids = df["lead_id"].unique()
    df.loc[df["lead_id"].isin(ids[:5]), "timestamp"] = pd.NaT  # only undated events
    only_oc = df["lead_id"].isin(ids[5:12])
    df.loc[only_oc, "stage"] = rng.choice(["won", "lost"], int(only_oc.sum()))  # only outcomes
    df.loc[df["lead_id"].isin(ids[12:15]), "timestamp"] = pd.Timestamp("2024-01-02 00:00")  # ties
    late = df["lead_id"].isin(ids[15:25])  # only events after the usual ends
    df.loc[late, "timestamp"] = pd.Timestamp("2024-02-25") + pd.to_timedelta(rng.integers(0, 48, late.sum()), "h")
    both = pd.DataFrame(  # won and lost at the same instant, after a step; closed before any start
        {
            "lead_id": ["W1", "W1", "W1", "E1", "E1", "E1", "B1", "B1", "B1", "B1"],
            "stage": ["qualification", "won", "lost", "qualification", "lost", "meeting",
                      "proposal", "qualification", "qualification", "meeting"],
            "timestamp": pd.to_datetime(["2024-01-05", "2024-01-25", "2024-01-25", "2023-12-01",
                                         "2023-12-02", "2024-01-15", "2024-01-03", "2024-01-04",
                                         "2024-01-04", "2024-01-30"]),
            "amount": [1.0, np.nan, 3.0, 5.0, 6.0, np.nan, 7.0, np.nan, 8.0, 9.0],
        }
    )
    df = pd.concat([df, both], ignore_index=True).astype({"stage": "category"})
    return df.sample(frac=1, random_state=seed).reset_index(drop=True)


DATES = [("2024-01-20", "2024-02-10 12:00"), ("2024-01-02", "2024-01-31"), ("2023-06-01", "2024-01-15"),
         ("2024-01-10", "2024-12-31"), ("2024-02-01 00:00", "2024-02-01 00:00:01"), ("2023-01-01", "2023-02-01")]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("ids", ["str", "object", "int", "category"])
def test_hostile_logs(seed, ids):
    df = _hostile(seed)
    if ids == "int":
        df["lead_id"] = df["lead_id"].str[1:].map(lambda s: int(s, 36))
    elif ids == "object":
        df["lead_id"] = df["lead_id"].astype(object)
    elif ids == "category":
        df["lead_id"] = df["lead_id"].astype("category")
    for start, end in DATES:
        assert_same(df, stages="pipeline4", start=start, end=end, segments=["product", "owner", "score"])
    assert_same(df, stages="pipeline4", start="2024-01-20", end="2024-02-10", segments=None)
    assert_same(df, stages="pipeline4", start="2024-01-20", end="2024-02-10", segments=[], amount=None)


def test_hostile_lead_ids():
    df = _hostile(5)
    mixed = df.assign(lead_id=[x if i % 2 else int(x[1:], 36) for i, x in enumerate(df["lead_id"])])
    mixed = mixed.astype({"lead_id": object})  # ints and strings: no order among them
    big = df.assign(lead_id=df["lead_id"].str[1:].map(lambda s: int(s, 36) * 10**12 - 7).astype("int64"))
    for log in (mixed, big, df.assign(lead_id=df["lead_id"].str.lower())):
        for start, end in DATES[:2]:
            assert_same(log, stages="pipeline4", start=start, end=end, segments="owner")


@pytest.mark.parametrize("seed", [2])
def test_hostile_logs_sorted_and_in_other_units(seed):
    df = _hostile(seed).sort_values(["lead_id", "timestamp"], na_position="first", kind="stable")
    df = df.astype({"lead_id": pd.StringDtype(na_value=np.nan)})  # Arrow ids, lead-sorted: no hashing
    for unit in ("s", "ms", "us", "ns"):
        d = df.assign(timestamp=df["timestamp"].dt.as_unit(unit))
        for start, end in DATES[:3]:
            assert_same(d, stages="pipeline4", start=start, end=end, segments=["product"])


@pytest.mark.parametrize("seed", range(2))
def test_time_zone_aware_logs(seed):
    log = in_paris(_hostile(seed))
    for start, end in DATES[:4] + [(pd.Timestamp("2024-01-25 03:00", tz="UTC"), "2024-03-31")]:
        assert_same(log, start=start, end=end, segments=["product", "owner"])
    assert_same_error(log, start="2024-01-25 03:00", end=pd.Timestamp("2024-01-25 01:00", tz="UTC"))


def test_edge_logs():
    base = pd.DataFrame(
        {
            "lead_id": ["a", "a", "b", "c", "c", "c", "d"],
            "stage": ["qualification", "won", "lost", "meeting", "qualification", "meeting", "proposal"],
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-03", None, "2024-01-02", "2024-01-04",
                                         "2024-01-05", "2024-02-01"]),
        }
    )
    for log in (base, base.iloc[:0], base.iloc[2:3], base.assign(timestamp=pd.NaT), base.iloc[[1, 2]],
                base.iloc[::-1], base.iloc[[0, 1]]):
        for start, end in [("2024-01-02", "2024-01-04 12:00"), ("2023-12-01", "2024-03-01"),
                           ("2024-03-01", "2024-04-01")]:
            assert_same(log, stages="pipeline4", start=start, end=end, segments=[], amount=None)


@pytest.mark.filterwarnings("ignore::funnelkit.exceptions.DataWarning")
@pytest.mark.parametrize("ids", ["str", "int", "mixed"])
def test_movement_from_snapshots(demo, ids):
    """_movement_from, which funnelkit.parallel calls with the snapshots it makes."""
    df = _hostile(6)
    if ids == "int":
        df["lead_id"] = df["lead_id"].str[1:].map(lambda s: int(s, 36))
    elif ids == "mixed":
        df["lead_id"] = pd.Series([x if i % 2 else int(x[1:], 36) for i, x in enumerate(df["lead_id"])],
                                  dtype=object)
    cases = [(df, dict(stages="pipeline4", segments=["product", "owner", "score"]), DATES[:4]),
             (df.assign(outcome="x"), dict(stages="pipeline4"), DATES[:1]),
             (demo, dict(segments=None), [("2025-03-31", "2025-09-30")])]
    for log, kw, dates in cases:
        for start, end in dates:
            ta, tb, tz = _start_end(log["timestamp"], start, end)
            a = snapshot(log, as_of=_ts(ta, tz), include_closed=True, **kw)
            b = snapshot(log, as_of=_ts(tb, tz), include_closed=True, **kw)
            _same(pipeline._movement_from(a, b, ta, tb, tz, lead=LEAD),
                  reference_movement_from(a, b, ta, tb, tz, lead=LEAD))
    a = a.iloc[::-1].reset_index(drop=True)  # rows in another order: the same table
    _same(pipeline._movement_from(a, b, ta, tb, tz, lead=LEAD), reference_movement_from(a, b, ta, tb, tz, lead=LEAD))
    with pytest.raises(PipelineError, match="missing at end"):  # the bug check still checks
        pipeline._movement_from(a, b.iloc[5:], ta, tb, tz, lead=LEAD)


@pytest.mark.filterwarnings("ignore::funnelkit.exceptions.DataWarning")
def test_parallel_is_one_core():
    df = _hostile(7)
    for start, end in DATES[:3]:
        kw = dict(stages="pipeline4", start=start, end=end)
        one = pipeline.movement_leads(df, segments=["product", "owner"], **kw)
        par = parallel.movement_leads(df, segments=["product", "owner"], n_chunks=3, engine="serial", **kw)
        _same(par, one)
        _same(parallel.movement(df, by="product", n_chunks=3, engine="serial", **kw),
              pipeline.movement(df, by="product", **kw))


# ---------------------------------------------------------------------------
# real logs (../shared/data, see its SOURCES.md)
# ---------------------------------------------------------------------------
@pytest.mark.shared
def test_road_traffic_fines(shared_data):
    log = fines_four_steps(shared_data)
    mv = assert_same(log, start="2005-06-30", end="2010-12-31", segments=["vehicleClass"])
    assert len(mv) > 1000


@pytest.mark.shared
@pytest.mark.parametrize("name", ["DomesticDeclarations.xes.gz", "RequestForPayment.xes.gz"])
def test_bpic2020(shared_data, name):
    path = shared_data / "bpic2020" / name
    ss, ignore = bpic2020_first_step(path)
    tz = "UTC" if name.startswith("Domestic") else "Europe/Amsterdam"  # one naive-UTC, one aware
    log = fk.read_xes(path, stages=ss, ignore=ignore, tz=tz)
    assert_same(log, start="2018-03-31", end="2018-06-30")
    assert_same(log, start="2017-01-01", end="2019-01-01", segments=[])


@pytest.mark.filterwarnings("ignore::funnelkit.exceptions.DataWarning")
def test_one_pass_takes_no_snapshot(demo, monkeypatch):
    """The logs above take the one-pass path (the snapshots only for ids without an order
    or clashing column names)."""
    def boom(*args, **kwargs):
        raise AssertionError("snapshot called")

    monkeypatch.setattr(pipeline, "snapshot", boom)
    df = _hostile(0)
    for log in (demo, df, df.assign(lead_id=df["lead_id"].str[1:].map(lambda s: int(s, 36))),
                df.astype({"lead_id": "category"}), df.astype({"lead_id": object})):
        pipeline.movement(log, stages="pipeline4", start="2024-01-20", end="2025-07-31", by="product")
    with pytest.raises(AssertionError, match="snapshot called"):
        pipeline.movement_leads(demo.assign(outcome="x"), start="2025-03-31", end="2025-09-30")
