"""One offline evaluation run: policies, baselines, calibration and the two-model figures.

Without outcomes, every row is replayed and quality is expected from catalog scores. With
outcomes, rows are split (seeded, stratified by group): per-group scores are learned on the
training part and *every* policy, baseline included, is scored on the held-out part, so the
calibrated tag router is compared out of sample with the rest on the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routedllm.core.catalog import Catalog
from routedllm.core.decision import Policy
from routedllm.core.errors import InvalidRequestError
from routedllm.evaluation.calibrate import Calibration, learn, split, threshold_sweep, value_router
from routedllm.evaluation.dataset import EvalSet
from routedllm.evaluation.learned import is_learned, learned_policy
from routedllm.evaluation.metrics import oracle_curve, two_model_figures
from routedllm.evaluation.policies import (
    DEFAULT_GAPS,
    Always,
    EvalPolicy,
    Oracle,
    always_candidates,
    parse_policies,
)
from routedllm.evaluation.replay import Evaluation, Progress, Result, evaluate, replay
from routedllm.evaluation.space import ModelSpace
from routedllm.evaluation.splits import over_splits
from routedllm.workload import WorkloadRow

EXPECTED_DEFAULT = ("value", "quality", "cheapest", "sweep", "random")
MEASURED_DEFAULT = ("random", "oracle")
CATALOG_POLICIES = ("value", "quality", "cheapest", "sweep")
TAG_ROUTER = "tag_router"


@dataclass(frozen=True)
class Settings:
    """What to evaluate and how; every field has a documented default."""

    policies: Sequence[str] | None = None  # spec strings; None: the defaults for the data
    baseline: str | None = None
    floor: float | None = None
    strong: str | None = None
    weak: str | None = None
    per_call: Mapping[str, float] = field(default_factory=dict)
    train_fraction: float = 0.5
    seed: int = 0
    prior_rows: float = 10.0
    gap: float = Policy().quality_gap  # the tag router's operating point, benchmark points
    splits: int = 20  # with outcomes: every figure also as mean and sd over this many splits
    rows: Sequence[WorkloadRow] | None = None  # the rows data was read from: learned:PATH


@dataclass
class Report:
    """An evaluation with what it was run on, the calibration and the two-model figures."""

    evaluation: Evaluation
    dataset_rows: int
    evaluated_rows: int
    train_rows: int
    models: tuple[str, ...]
    calibration: Calibration | None
    two_model: dict[str, Any] | None
    notes: list[str]
    over_splits: dict[str, Any] | None = None
    left_out_rows: int = 0  # rows without a score for both --strong and --weak

    def to_json(self) -> dict[str, Any]:
        out = {
            "dataset": {
                "rows": self.dataset_rows,
                "evaluated_rows": self.evaluated_rows,
                "train_rows": self.train_rows,
                "left_out_rows": self.left_out_rows,
                "outcome_models": list(self.models),
            },
            **self.evaluation.to_json(),
            "notes": self.notes,
        }
        if self.two_model is not None:
            out["two_model"] = self.two_model
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_json()
        if self.over_splits is not None:
            out["over_splits"] = self.over_splits
        return out


def run(
    data: EvalSet, catalog: Catalog, settings: Settings, progress: Progress | None = None
) -> Report:
    """Evaluate ``data`` under ``settings`` (see the module docstring)."""
    space = ModelSpace.build(catalog, data, settings.per_call)
    notes: list[str] = []
    if (settings.strong is None) != (settings.weak is None):
        raise InvalidRequestError("give both --strong and --weak, or neither")
    _check(settings)
    if not data.has_outcomes:
        if settings.strong is not None:
            raise InvalidRequestError("--strong/--weak need outcome rows (per-model scores)")
        for spec in settings.policies or ():
            if is_learned(spec):
                raise InvalidRequestError(
                    f"policy {spec!r} measures a trained router on outcome rows (per-model "
                    "scores), and these rows have none"
                )
        policies = _parse(settings.policies or EXPECTED_DEFAULT, data, space, None)
        evaluation = evaluate(
            data,
            space,
            policies,
            baseline=settings.baseline,
            floor=settings.floor,
            progress=progress,
        )
        return Report(evaluation, len(data), len(data), 0, (), None, None, notes)

    pair = (settings.strong, settings.weak) if settings.strong and settings.weak else None
    if pair is not None:
        for model in pair:
            data.column(model)
        if pair[0] == pair[1]:
            raise InvalidRequestError("--strong and --weak must be two different models")
    rows_read = len(data)
    if pair is not None:
        data = scored_by_both(data, pair)
        if len(data) < rows_read:
            notes.append(
                f"{rows_read - len(data)} of {rows_read} rows left out: they have no score "
                f"for both {pair[0]} and {pair[1]}, and every figure compares the same rows"
            )
    train, test = split(data, settings.train_fraction, settings.seed)
    cal = learn(data, train, settings.prior_rows)
    held_out = data.subset(test)
    order = list(reversed(pair)) if pair else _cost_order(data.subset(train), space, notes)
    specs = list(settings.policies or MEASURED_DEFAULT)
    in_catalog = frozenset(m for m in data.models if m in catalog)
    if settings.policies is None and in_catalog:
        specs += CATALOG_POLICIES
    elif not in_catalog and any(s.partition(":")[0] in CATALOG_POLICIES for s in specs):
        raise InvalidRequestError(
            "catalog policies route among catalog models, and no model with outcomes here is "
            "in the catalog; add them with --catalog FILE, or use always/random/oracle"
        )
    policies = _parse([s for s in specs if not is_learned(s)], data, space, in_catalog or None)
    policies += [
        learned_policy(s, data, settings.rows, order, settings.gap, notes)
        for s in dict.fromkeys(specs)
        if is_learned(s)
    ]
    policies = [p for p in policies if not isinstance(p, Oracle)]
    if pair or any(s.partition(":")[0] == "oracle" for s in specs):
        policies.append(Oracle(order))
    router = value_router(cal, settings.gap, order, TAG_ROUTER)
    sweep = (
        threshold_sweep(cal, *pair)
        if pair
        else [
            value_router(cal, g, order, f"{TAG_ROUTER}:gap={g:g}", kind="calibrated sweep")
            for g in DEFAULT_GAPS
        ]
    )
    evaluation = evaluate(
        held_out,
        space,
        [router, *policies, *sweep],
        baseline=settings.baseline,
        floor=settings.floor,
        progress=progress,
    )
    notes.append(
        f"calibrated on {len(train)} training rows (seed {settings.seed}); every "
        f"figure is measured on the {len(test)} held-out rows"
    )
    two = _two_model(evaluation, held_out, space, pair, order) if pair else None
    singles = [Always(m) for m in always_candidates(held_out, space)]
    if settings.baseline is not None:
        singles.append(Always(space.ids[space.index(settings.baseline)]))
    spread = over_splits(
        data,
        space,
        [*singles, *policies],
        baseline=evaluation.baseline,
        order=order,
        pair=pair,
        splits=settings.splits,
        seed=settings.seed,
        train_fraction=settings.train_fraction,
        prior_rows=settings.prior_rows,
        gap=settings.gap,
        tag_router=TAG_ROUTER,
    )
    notes.append(
        f"over_splits: every figure as mean and sd over {settings.splits} random splits (seeds "
        f"{settings.seed}-{settings.seed + settings.splits - 1}); each policy's own fields "
        f"are those of the first (seed {settings.seed})"
    )
    return Report(
        evaluation,
        rows_read,
        len(test),
        len(train),
        data.models,
        cal,
        two,
        notes,
        spread,
        rows_read - len(data),
    )


def scored_by_both(data: EvalSet, pair: tuple[str, str]) -> EvalSet:
    """The rows with a score for both models of ``pair`` (``data`` itself when every row
    has them): two-model figures (PGR, APGR) compare the two models on the same rows, so a
    row one of them lacks is left out rather than averaged over a different set."""
    both = np.isfinite(data.scores[:, data.column(pair[0])]) & np.isfinite(
        data.scores[:, data.column(pair[1])]
    )
    if both.all():
        return data
    if not both.any():
        raise InvalidRequestError(
            f"no row has a score for both {pair[0]} and {pair[1]}; "
            "--strong/--weak compare two models on the rows that score both"
        )
    return data.subset(np.flatnonzero(both))


def _check(settings: Settings) -> None:
    """Settings out of range, refused with or without outcomes: a typo is never ignored
    (numpy's own error for a negative seed names no option)."""
    if settings.splits < 1:
        raise InvalidRequestError(f"--splits must be at least 1, got {settings.splits}")
    if settings.seed < 0:
        raise InvalidRequestError(f"--seed must be 0 or more, got {settings.seed}")
    if settings.floor is not None and not 0 <= settings.floor <= 1:
        raise InvalidRequestError(f"--floor is a quality in [0, 1], got {settings.floor}")
    if not 0 <= settings.gap <= 100:
        raise InvalidRequestError(f"--gap must be within 0-100 points, got {settings.gap}")


def _parse(
    specs: Sequence[str], data: EvalSet, space: ModelSpace, allowed: frozenset[str] | None
) -> list[EvalPolicy]:
    out: list[EvalPolicy] = []
    for spec in specs:
        out.extend(parse_policies(spec, data, space, allowed))
    return out


def _cost_order(train: EvalSet, space: ModelSpace, notes: list[str]) -> list[str]:
    """Outcome models from cheapest to dearest by mean cost per call on the training rows."""
    mean: dict[str, float] = {}
    for model in train.models:
        rep = replay(Always(model), train, space)
        known = rep.cost[np.isfinite(rep.cost)]
        mean[model] = float(known.mean()) if known.size else np.inf
    unknown = [m for m, c in mean.items() if c == np.inf]
    if unknown:
        notes.append(
            f"no cost known for {', '.join(unknown)} (give --cost MODEL=USD): the tag "
            "router takes them as the dearest, in table order"
        )
    return sorted(train.models, key=lambda m: (mean[m], train.models.index(m)))


def _two_model(
    evaluation: Evaluation,
    data: EvalSet,
    space: ModelSpace,
    pair: tuple[str, str],
    order: list[str],
) -> dict[str, Any]:
    """RouteLLM's figures for the tag router, with oracle, random and single-model lines."""
    strong, weak = pair
    s_only = evaluation.get(f"always:{strong}")
    w_only = evaluation.get(f"always:{weak}")
    qs, qw = s_only.quality, w_only.quality
    if qs is None or qw is None:
        raise InvalidRequestError("the strong or weak model has no scores on the held-out rows")
    curve = [
        (r.share(strong), r.quality)
        for r in evaluation.results
        if r.kind == "calibrated sweep" and r.quality is not None
    ]
    router = evaluation.get(TAG_ROUTER)
    share = router.share(strong)

    def entry(r: Result) -> dict[str, Any]:
        return {"quality": r.quality, "cost_usd": r.cost_usd, "strong_share": r.share(strong)}

    random_cost = None
    if (
        s_only.cost_usd is not None
        and w_only.cost_usd is not None
        and not (s_only.uncosted or w_only.uncosted)
    ):
        random_cost = share * s_only.cost_usd + (1 - share) * w_only.cost_usd
    s, w = data.column(strong), data.column(weak)
    both = np.isfinite(data.scores[:, s]) & np.isfinite(data.scores[:, w])
    best = oracle_curve(data.scores[both, s], data.scores[both, w])
    return {
        "strong": strong,
        "weak": weak,
        "rows": len(data),
        "tag_router": {
            **entry(router),
            **two_model_figures(curve, qw, qs),
            "curve": [{"strong_share": x, "quality": y} for x, y in sorted(curve)],
        },
        "oracle": {**entry(evaluation.get("oracle")), **two_model_figures(best, qw, qs)},
        "random": {
            "quality": share * qs + (1 - share) * qw,
            "cost_usd": random_cost,
            "strong_share": share,
            **two_model_figures([(0.0, qw), (1.0, qs)], qw, qs),
        },
        "strong_only": entry(s_only),
        "weak_only": entry(w_only),
    }
