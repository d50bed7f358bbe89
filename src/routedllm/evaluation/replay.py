"""Offline replay: route every row under each policy, then total cost and quality, no calls.

Every result says how many rows it covers: ``no_eligible`` rows (``decide`` found no model:
counted with the reason, never dropped silently), ``unmeasured`` rows (the chosen model has
no outcome or no score there) and ``uncosted`` rows (no price known). Totals cover the rows
that have the figure. Each result also carries its honest baselines: the cost ratio and
quality retained against the baseline policy on the rows both cover, and the quality a
random router reaches at the same cost. That router flips a weighted coin per row between
two anchors: single models that serve every row, and the ``cheapest`` and ``quality``
presets when evaluated (per row, the cheapest and the best eligible model). Any mix of two
anchors lies on the segment between their points, so the best it does at a given cost is
the anchors' non-decreasing hull (RouterBench's argument).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from routedllm.core.decision import Policy
from routedllm.core.errors import InvalidRequestError
from routedllm.evaluation.dataset import EvalSet
from routedllm.evaluation.metrics import aiq, frontier, frontier_area, frontier_at
from routedllm.evaluation.policies import Always, Choice, EvalPolicy, always_candidates
from routedllm.evaluation.space import ModelSpace

T = TypeVar("T")
Progress = Callable[[Iterable[T], int | None, str], Iterable[T]]
DEFAULT_FLOOR_GAP = Policy().quality_gap / 100  # the value preset's gap, as a quality fraction
# Per row, the cheapest and the best eligible model: with single models, the ends a coin-flip
# router mixes between.
RANDOM_ANCHORS = ("cheapest", "quality")


@dataclass(frozen=True, eq=False)
class Replay:
    """Per-row outcome of one policy: chosen model (-1: none), cost and quality (NaN: unknown)."""

    choice: np.ndarray
    cost: np.ndarray
    quality: np.ndarray
    why_none: dict[str, str]


def replay(
    policy: EvalPolicy, data: EvalSet, space: ModelSpace, choice: Choice | None = None
) -> Replay:
    """Route every row under ``policy`` (or take its ``choice``); price and score each."""
    choice = policy.choose(data, space) if choice is None else choice
    cost = space.cost(data, choice.model, policy.default_output_tokens)
    return Replay(choice.model, cost, space.quality(data, choice.model), choice.why_none)


@dataclass
class Result:
    """Totals of one policy on a dataset, with its baselines."""

    name: str
    kind: str
    rows: int
    no_eligible: int
    unmeasured: int
    uncosted: int
    cost_usd: float | None
    quality: float | None
    model_share: dict[str, float]
    per_tag: dict[str, dict[str, Any]]
    why_none: dict[str, str] = field(default_factory=dict)
    cost_ratio: float | None = None
    quality_retained: float | None = None
    random_same_cost: float | None = None

    @property
    def complete(self) -> bool:
        """Every row routed, priced and scored: totals compare like for like."""
        return not (self.no_eligible or self.unmeasured or self.uncosted)

    def share(self, model: str) -> float:
        return self.model_share.get(model, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "rows": self.rows,
            "no_eligible": self.no_eligible,
            "unmeasured": self.unmeasured,
            "uncosted": self.uncosted,
            "cost_usd": self.cost_usd,
            "quality": self.quality,
            "cost_ratio": self.cost_ratio,
            "quality_retained": self.quality_retained,
            "random_same_cost_quality": self.random_same_cost,
            "model_share": self.model_share,
            "per_tag": self.per_tag,
            "no_eligible_reasons": self.why_none,
        }


def summarize(
    policy: EvalPolicy, rep: Replay, data: EvalSet, space: ModelSpace, base: Replay | None = None
) -> Result:
    """Totals, shares and per-tag figures of a replay; ratios against ``base`` if given."""
    served = rep.choice >= 0
    n_served = int(served.sum())
    q_known = np.isfinite(rep.quality)
    c_known = np.isfinite(rep.cost)
    counts = np.bincount(rep.choice[served], minlength=len(space.ids))
    share = {space.ids[i]: round(int(c) / n_served, 6) for i, c in enumerate(counts) if c}
    result = Result(
        name=policy.name,
        kind=policy.kind,
        rows=len(data),
        no_eligible=len(data) - n_served,
        unmeasured=int((served & ~q_known).sum()),
        uncosted=int((served & ~c_known).sum()),
        cost_usd=_known(rep.cost, c_known, np.sum),
        quality=_known(rep.quality, q_known, np.mean),
        model_share=share,
        per_tag=_per_tag(rep, data),
        why_none=rep.why_none,
    )
    if base is not None:
        both = c_known & np.isfinite(base.cost)
        base_cost = float(base.cost[both].sum())
        result.cost_ratio = float(rep.cost[both].sum()) / base_cost if base_cost > 0 else None
        both = q_known & np.isfinite(base.quality)
        base_q = float(base.quality[both].mean()) if both.any() else 0.0
        result.quality_retained = float(rep.quality[both].mean()) / base_q if base_q > 0 else None
    return result


def _known(values: np.ndarray, known: np.ndarray, total: Callable[..., Any]) -> float | None:
    """``total`` (sum or mean) of the known values; None when none is known. Every value is
    known in most replays: they are then taken as they are, without a masked copy."""
    if known.all():
        return float(total(values)) if len(values) else None
    return float(total(values[known])) if known.any() else None


def _per_tag(rep: Replay, data: EvalSet) -> dict[str, dict[str, Any]]:
    memo = data.memo.get("primary_tag_index")
    if memo is None:
        names = tuple(dict.fromkeys(data.primary_tags))
        of_set = np.asarray([names.index(t) for t in data.primary_tags], dtype=np.intp)
        tag = of_set[data.tag_index]
        memo = data.memo["primary_tag_index"] = names, tag, np.bincount(tag, minlength=len(names))
    names, tag, rows = memo
    size = len(names)

    def count(mask: np.ndarray) -> np.ndarray:  # rows per tag where mask holds
        return rows if mask.all() else np.bincount(tag, weights=mask, minlength=size)

    # sums over whole columns, unknown values as 0 (bincount adds in row order, so the
    # sums are those of the known values alone, bit for bit, without masked copies)
    served = count(rep.choice >= 0)
    c_ok, q_ok = np.isfinite(rep.cost), np.isfinite(rep.quality)
    cost = np.bincount(tag, weights=np.where(c_ok, rep.cost, 0.0), minlength=size)
    c_n = count(c_ok)
    q_sum = np.bincount(tag, weights=np.where(q_ok, rep.quality, 0.0), minlength=size)
    q_n = count(q_ok)
    return {
        name: {
            "rows": int(rows[i]),
            "no_eligible": int(rows[i] - served[i]),
            "cost_usd": float(cost[i]) if c_n[i] else None,
            "quality": float(q_sum[i] / q_n[i]) if q_n[i] else None,
        }
        for i, name in enumerate(names)
        if rows[i]
    }


@dataclass
class Evaluation:
    """Every policy's result on one dataset, the baselines, and the cost-quality frontier."""

    mode: str
    rows: int
    results: list[Result]
    baseline: str
    best_single: str | None
    cheapest_meeting_floor: str | None
    floor: float | None
    frontier: dict[str, Any]

    def get(self, name: str) -> Result:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "quality_mode": self.mode,
            "rows": self.rows,
            "baselines": {
                "baseline": self.baseline,
                "best_single": self.best_single,
                "cheapest_meeting_floor": self.cheapest_meeting_floor,
                "floor": self.floor,
            },
            "policies": [r.to_json() for r in self.results],
            "frontier": self.frontier,
        }


def evaluate(
    data: EvalSet,
    space: ModelSpace,
    policies: Sequence[EvalPolicy],
    *,
    baseline: str | None = None,
    floor: float | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Replay ``policies`` and always-X for each candidate model, with the baselines.

    ``baseline`` (a model id) is what cost ratio and quality retained compare against;
    default: the best single model, the always-X with the best quality among those that
    cover every row. ``floor`` (a quality in [0, 1]; default: the best single model's
    quality minus the value preset's default gap) picks the cheapest model that meets it.
    """
    track: Progress = progress or (lambda items, total, desc: items)
    singles = [Always(m) for m in always_candidates(data, space)]
    if baseline is not None and baseline not in {a.model for a in singles}:
        singles.append(Always(space.ids[space.index(baseline)]))
    chosen: dict[str, Choice] = {
        p.name: p.choose(data, space) for p in track(singles, len(singles), "single models")
    }
    singles_rep = {p.name: replay(p, data, space, chosen[p.name]) for p in singles}
    pre = [summarize(p, singles_rep[p.name], data, space) for p in singles]
    best = _best_single(pre)
    base_name = f"always:{baseline}" if baseline is not None else best
    if base_name is None:
        raise InvalidRequestError(
            "no single model covers the rows (no prices, scores or outcomes): give --baseline MODEL"
        )
    base = singles_rep[base_name]
    del singles_rep
    if floor is None and best is not None:
        top = next(r for r in pre if r.name == best).quality
        floor = None if top is None else top - DEFAULT_FLOOR_GAP
    cheapest = _cheapest_meeting(pre, floor)

    results: list[Result] = []
    names: set[str] = set()
    todo = [
        *singles,
        *(
            p
            for p in policies
            if not isinstance(p, Always) or p.name not in {s.name for s in singles}
        ),
    ]
    for policy in track(todo, len(todo), "policies"):
        if policy.name in names:
            continue
        names.add(policy.name)
        rep = replay(policy, data, space, chosen.pop(policy.name, None))
        results.append(summarize(policy, rep, data, space, base))
    anchors = _hull([r for r in results if r.kind == "always" or r.name in RANDOM_ANCHORS])
    for result in results:
        if anchors is not None and result.complete and result.cost_usd is not None:
            result.random_same_cost = frontier_at(anchors, result.cost_usd)
    return Evaluation(
        mode=space.quality_mode(data),
        rows=len(data),
        results=results,
        baseline=base_name,
        best_single=best,
        cheapest_meeting_floor=cheapest,
        floor=floor,
        frontier=_frontier(results),
    )


def _best_single(results: Sequence[Result]) -> str | None:
    scored = [r for r in results if r.quality is not None]
    if not scored:
        return None
    covered = max(r.rows - r.no_eligible - r.unmeasured for r in scored)
    top = [r for r in scored if r.rows - r.no_eligible - r.unmeasured == covered]
    return max(top, key=lambda r: (r.quality, -(r.cost_usd or 0.0))).name


def _cheapest_meeting(results: Sequence[Result], floor: float | None) -> str | None:
    if floor is None:
        return None
    ok = [
        r
        for r in results
        if r.complete
        and r.quality is not None
        and r.cost_usd is not None
        and r.quality >= floor - 1e-12
    ]
    return min(ok, key=lambda r: (r.cost_usd, -(r.quality or 0.0))).name if ok else None


def _points(results: Iterable[Result]) -> list[tuple[float, float]]:
    return [
        (r.cost_usd, r.quality)
        for r in results
        if r.complete and r.cost_usd is not None and r.quality is not None
    ]


def _hull(results: Sequence[Result]) -> np.ndarray | None:
    points = _points(results)
    return frontier(points) if points else None


def _frontier(results: Sequence[Result]) -> dict[str, Any]:
    """RouterBench's frontier over all complete results; its area normalised as
    RouterBench's code does (``area``, ``area_by_kind``: over 0 to the largest cost), and
    the AIQ as its paper defines it, over one cost range for every kind and policy
    (``aiq``: the cheapest to the dearest complete result)."""
    points = _points(results)
    if not points:
        return {
            "points": [],
            "area": None,
            "area_by_kind": {},
            "aiq": None,
            "note": "no policy has a known cost and quality on every row",
        }
    low, top = min(c for c, _ in points), max(c for c, _ in points)
    families: dict[str, list[Result]] = {}
    for r in results:
        families.setdefault(r.kind, []).append(r)
    return {
        "points": [{"cost_usd": c, "quality": q} for c, q in frontier(points).tolist()],
        "area": frontier_area(points, top),
        "area_by_kind": {
            kind: frontier_area(p, top) for kind, rs in families.items() if (p := _points(rs))
        },
        "max_cost_usd": top,
        "aiq": {
            "cost_range_usd": [low, top],
            "all": aiq(points, low, top),
            "by_kind": {
                kind: aiq(p, low, top) for kind, rs in families.items() if (p := _points(rs))
            },
            "by_policy": {r.name: aiq(p, low, top) for r in results if (p := _points([r]))},
        },
    }
