"""Every figure of an outcome evaluation over many random splits: mean, sd, min and max.

One split gives one draw of the held-out rows; on 72 MT-Bench prompts an APGR moves by
0.07 between seeds. :func:`over_splits` repeats what :func:`routedllm.evaluation.suite.run`
does on one split (split, calibrate, route, measure on the held-out rows) for seeds
``seed`` .. ``seed + splits - 1`` and summarises each figure across them: per policy its
cost, quality, cost ratio and quality retained against the baseline, the quality of a
random mix at the same cost, per tag its cost and quality; the frontier's area and AIQ;
and the two-model figures. The first split is the one the rest of the report shows, so its
figures are one of the draws summarised here.

Catalog routing decides once on all rows (a row's choice does not depend on the split);
every other policy, and the tag router calibrated on each training part, chooses per split.
Per split only totals are computed, not a full report, so 20 splits cost a few times one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from routedllm.evaluation.calibrate import learn, split, threshold_sweep, value_router
from routedllm.evaluation.dataset import EvalSet
from routedllm.evaluation.metrics import (
    aiq,
    frontier,
    frontier_area,
    frontier_at,
    oracle_curve,
    two_model_figures,
)
from routedllm.evaluation.policies import DEFAULT_GAPS, ByGroup, EvalPolicy, Routed
from routedllm.evaluation.space import ModelSpace

POLICY_FIGURES = ("cost_usd", "quality", "cost_ratio", "quality_retained", "random_same_cost")
TWO_MODEL_FIGURES = (
    "quality",
    "cost_usd",
    "strong_share",
    "apgr",
    "cpt50",
    "cpt80",
    "strong_share_at_95",
)
RANDOM_ANCHORS = ("cheapest", "quality")


@dataclass
class _Totals:
    """One policy on one split's held-out rows: totals, and the per-row arrays when kept."""

    name: str
    kind: str
    complete: bool
    cost_usd: float | None
    mean_quality: float | None
    share: dict[int, float]  # model position -> share of the rows routed
    choice: np.ndarray | None = None
    cost: np.ndarray | None = None
    quality: np.ndarray | None = None

    @classmethod
    def of_rows(
        cls, name: str, kind: str, choice: np.ndarray, cost: np.ndarray, quality: np.ndarray
    ) -> _Totals:
        c, q, served = np.isfinite(cost), np.isfinite(quality), choice >= 0
        counts = np.bincount(choice[served])
        n = int(served.sum())
        return cls(
            name,
            kind,
            bool(served.all() and c.all() and q.all()),
            float(cost[c].sum()) if c.any() else None,
            float(quality[q].mean()) if q.any() else None,
            {m: int(k) / n for m, k in enumerate(counts.tolist()) if k},
            choice,
            cost,
            quality,
        )

    def figures(self) -> dict[str, float | None]:
        return {"cost_usd": self.cost_usd, "quality": self.mean_quality}


class _Columns:
    """Each model's cost and quality on every row, computed once and cut per split."""

    def __init__(self, data: EvalSet, space: ModelSpace, models: Sequence[int]) -> None:
        self.data, self.space = data, space
        self.models = sorted(set(models))  # the models any policy can choose
        self.slot = np.full(len(space.ids) + 1, len(self.models))  # -1 (none): the NaN row
        self.slot[self.models] = np.arange(len(self.models))
        self.full: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.cut: dict[Any, tuple[np.ndarray, ...]] = {}
        self.rows = np.arange(0)

    def split(self, rows: np.ndarray) -> None:
        self.rows, self.cut = rows, {}

    def totals(self, name: str, kind: str, choice: np.ndarray, output_tokens: int) -> _Totals:
        """Cost and quality of ``choice`` (model positions on the split's rows; -1: none)."""
        cost, quality = self._table(output_tokens)
        slot, where = self.slot[choice], np.arange(len(choice))
        return _Totals.of_rows(name, kind, choice, cost[slot, where], quality[slot, where])

    def grouped(self, policy: ByGroup, held: EvalSet) -> _Totals:
        """Totals of a one-model-per-group policy from per-group sums: no per-row work."""
        sums = self._group_sums(held, policy.default_output_tokens)
        model = np.asarray(
            [self.space.index(policy.choices.get(g, policy.default)) for g in held.group_names]
        )
        slot, groups = self.slot[model], np.arange(len(model))
        rows, c_sum, c_n, q_sum, q_n = (a[slot, groups] for a in sums)
        n = int(rows.sum())
        share: dict[int, float] = {}
        for m, k in zip(model.tolist(), rows.tolist(), strict=True):
            if k:
                share[m] = share.get(m, 0.0) + k / n
        return _Totals(
            policy.name,
            policy.kind,
            bool((c_n == rows).all() and (q_n == rows).all()),
            float(c_sum.sum()) if c_n.any() else None,
            float(q_sum.sum() / q_n.sum()) if q_n.any() else None,
            share,
        )

    def _group_sums(self, held: EvalSet, output_tokens: int) -> tuple[np.ndarray, ...]:
        """Per (model, group): rows, cost sum, costed rows, quality sum, scored rows."""
        key = ("groups", output_tokens)
        if key not in self.cut:
            cost, quality = self._table(output_tokens)
            g, size = held.group_index, len(held.group_names)
            out = [np.zeros((len(cost), size)) for _ in range(5)]
            rows = np.bincount(g, minlength=size)
            for i in range(len(cost)):
                c, q = np.isfinite(cost[i]), np.isfinite(quality[i])
                out[0][i] = rows
                out[1][i] = np.bincount(g[c], weights=cost[i][c], minlength=size)
                out[2][i] = np.bincount(g[c], minlength=size)
                out[3][i] = np.bincount(g[q], weights=quality[i][q], minlength=size)
                out[4][i] = np.bincount(g[q], minlength=size)
            self.cut[key] = tuple(out)
        return self.cut[key]

    def _table(self, output_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """(models + 1, rows) cost and quality on the split's rows; the last row is NaN,
        for rows with no model."""
        if output_tokens not in self.cut:
            if output_tokens not in self.full:
                n, m = len(self.data), len(self.models)
                cost, quality = np.full((m + 1, n), np.nan), np.full((m + 1, n), np.nan)
                for i, model in enumerate(self.models):
                    every = np.full(n, model, dtype=np.int32)
                    cost[i] = self.space.cost(self.data, every, output_tokens)
                    quality[i] = self.space.quality(self.data, every)
                self.full[output_tokens] = cost, quality
            cost, quality = self.full[output_tokens]
            self.cut[output_tokens] = cost[:, self.rows], quality[:, self.rows]
        cost, quality = self.cut[output_tokens]
        return cost, quality


def spread(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean, sd (n - 1; None for one value), min and max of the known values; ``missing``
    counts the splits without the figure."""
    known = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(known):
        return {"mean": None, "sd": None, "min": None, "max": None, "missing": len(values)}
    return {
        "mean": float(known.mean()),
        "sd": float(known.std(ddof=1)) if len(known) > 1 else None,
        "min": float(known.min()),
        "max": float(known.max()),
        "missing": len(values) - len(known),
    }


def over_splits(
    data: EvalSet,
    space: ModelSpace,
    policies: Sequence[EvalPolicy],
    *,
    baseline: str,
    order: Sequence[str],
    pair: tuple[str, str] | None,
    splits: int,
    seed: int,
    train_fraction: float,
    prior_rows: float,
    gap: float,
    tag_router: str = "tag_router",
) -> dict[str, Any]:
    """The figures of ``splits`` seeded splits, each summarised by :func:`spread`.

    ``policies`` are the split-independent ones the report evaluates (always-X included);
    ``baseline`` names the result that ratios compare with (``always:MODEL``).
    """
    routed = {p.name: p.choose(data, space).model for p in policies if isinstance(p, Routed)}
    outcome_models = [space.index(m) for m in data.models]
    chosen = [int(m) for c in routed.values() for m in np.unique(c).tolist() if m >= 0]
    columns = _Columns(data, space, [*outcome_models, *chosen])
    per_policy: dict[str, dict[str, list[float | None]]] = {}
    per_tag: dict[str, dict[str, dict[str, list[float | None]]]] = {}
    frontier_runs: dict[str, list[float | None]] = {"area": [], "aiq": []}
    aiq_by_kind: dict[str, list[float | None]] = {}
    two: dict[str, dict[str, list[float | None]]] = {}
    names = tuple(dict.fromkeys(data.primary_tags))
    tag_of_set = np.asarray([names.index(t) for t in data.primary_tags])
    for i in range(splits):
        train, test = split(data, train_fraction, seed + i)
        cal = learn(data, train, prior_rows)
        held = data.subset(test)
        columns.split(test)
        tag = tag_of_set[held.tag_index]
        sweep = (
            threshold_sweep(cal, *pair)
            if pair
            else [
                value_router(cal, g, order, f"{tag_router}:gap={g:g}", kind="calibrated sweep")
                for g in DEFAULT_GAPS
            ]
        )
        todo = [value_router(cal, gap, order, tag_router), *policies, *sweep]
        totals: list[_Totals] = []
        seen: set[str] = set()
        for p in todo:
            if p.name in seen:
                continue
            seen.add(p.name)
            if p.kind == "calibrated sweep" and isinstance(p, ByGroup):
                totals.append(columns.grouped(p, held))
                continue
            choice = routed[p.name][test] if p.name in routed else p.choose(held, space).model
            totals.append(columns.totals(p.name, p.kind, choice, p.default_output_tokens))
        by_name = {t.name: t for t in totals}
        base = by_name[baseline]
        anchors = _hull([t for t in totals if t.kind == "always" or t.name in RANDOM_ANCHORS])
        for t in totals:
            if t.kind == "calibrated sweep":
                continue
            figures = _policy_figures(t, base, anchors)
            for key, value in figures.items():
                per_policy.setdefault(t.name, {}).setdefault(key, []).append(value)
            for j, name in enumerate(names):
                rows = tag == j
                if not rows.any():
                    continue
                assert t.cost is not None and t.quality is not None
                c, q = t.cost[rows], t.quality[rows]
                entry = per_tag.setdefault(t.name, {}).setdefault(
                    name, {"cost_usd": [], "quality": []}
                )
                entry["cost_usd"].append(float(np.nansum(c)) if np.isfinite(c).any() else None)
                entry["quality"].append(float(np.nanmean(q)) if np.isfinite(q).any() else None)
        points = [_point(t) for t in totals if t.complete]
        if points:
            low, high = min(c for c, _ in points), max(c for c, _ in points)
            frontier_runs["area"].append(frontier_area(points, high))
            frontier_runs["aiq"].append(aiq(points, low, high))
            kinds: dict[str, list[tuple[float, float]]] = {}
            for t in totals:
                if t.complete:
                    kinds.setdefault(t.kind, []).append(_point(t))
            for kind, pts in kinds.items():
                aiq_by_kind.setdefault(kind, []).append(aiq(pts, low, high))
        if pair:
            for key, values in _two_model(by_name, held, space, pair, tag_router).items():
                for fig in TWO_MODEL_FIGURES:
                    two.setdefault(key, {}).setdefault(fig, []).append(values.get(fig))
    out: dict[str, Any] = {
        "splits": splits,
        "seeds": [seed, seed + splits - 1],
        "train_fraction": train_fraction,
        "policies": {
            name: {k: spread(v) for k, v in figs.items()} for name, figs in per_policy.items()
        },
        "per_tag": {
            name: {t: {k: spread(v) for k, v in e.items()} for t, e in tags.items()}
            for name, tags in per_tag.items()
        },
        "frontier": {
            "area": spread(frontier_runs["area"]),
            "aiq": spread(frontier_runs["aiq"]),
            "aiq_by_kind": {k: spread(v) for k, v in aiq_by_kind.items()},
        },
    }
    if pair:
        out["two_model"] = {
            key: {k: spread(v) for k, v in figs.items()} for key, figs in two.items()
        }
    return out


def _point(t: _Totals) -> tuple[float, float]:
    return t.cost_usd or 0.0, t.mean_quality or 0.0


def _hull(totals: Sequence[_Totals]) -> np.ndarray | None:
    points = [_point(t) for t in totals if t.complete]
    return frontier(points) if points else None


def _policy_figures(
    t: _Totals, base: _Totals, anchors: np.ndarray | None
) -> dict[str, float | None]:
    """A policy's totals, against the baseline on the rows both cover (as ``summarize``)."""
    fig: dict[str, float | None] = dict(t.figures())
    assert t.cost is not None and t.quality is not None  # kept for every policy shown
    assert base.cost is not None and base.quality is not None
    both = np.isfinite(t.cost) & np.isfinite(base.cost)
    base_cost = float(base.cost[both].sum())
    fig["cost_ratio"] = float(t.cost[both].sum()) / base_cost if base_cost > 0 else None
    both = np.isfinite(t.quality) & np.isfinite(base.quality)
    base_q = float(base.quality[both].mean()) if both.any() else 0.0
    fig["quality_retained"] = float(t.quality[both].mean()) / base_q if base_q > 0 else None
    fig["random_same_cost"] = (
        frontier_at(anchors, _point(t)[0]) if anchors is not None and t.complete else None
    )
    return fig


def _two_model(
    by_name: dict[str, _Totals],
    held: EvalSet,
    space: ModelSpace,
    pair: tuple[str, str],
    tag_router: str,
) -> dict[str, dict[str, float | None]]:
    """RouteLLM's figures on one split, as :func:`routedllm.evaluation.suite` reports them."""
    strong, weak = pair
    s_only, w_only = by_name[f"always:{strong}"], by_name[f"always:{weak}"]
    qs, qw = s_only.figures()["quality"], w_only.figures()["quality"]
    if qs is None or qw is None:
        return {}
    sid = space.index(strong)

    def entry(t: _Totals) -> dict[str, float | None]:
        return {**t.figures(), "strong_share": t.share.get(sid, 0.0)}

    curve = [
        (entry(t)["strong_share"] or 0.0, q)
        for t in by_name.values()
        if t.kind == "calibrated sweep" and (q := t.figures()["quality"]) is not None
    ]
    router = entry(by_name[tag_router])
    share = router["strong_share"] or 0.0
    s, w = held.column(strong), held.column(weak)
    both = np.isfinite(held.scores[:, s]) & np.isfinite(held.scores[:, w])
    s_cost, w_cost = s_only.figures()["cost_usd"], w_only.figures()["cost_usd"]
    costed = s_cost is not None and w_cost is not None and s_only.complete and w_only.complete
    return {
        "tag_router": {**router, **two_model_figures(curve, qw, qs)},
        "oracle": {
            **entry(by_name["oracle"]),
            **two_model_figures(oracle_curve(held.scores[both, s], held.scores[both, w]), qw, qs),
        },
        "random": {
            "quality": share * qs + (1 - share) * qw,
            "cost_usd": share * s_cost + (1 - share) * w_cost  # type: ignore[operator]
            if costed
            else None,
            "strong_share": share,
            **two_model_figures([(0.0, qw), (1.0, qs)], qw, qs),
        },
        "strong_only": entry(s_only),
        "weak_only": entry(w_only),
    }
