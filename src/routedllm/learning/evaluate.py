"""The learned router measured out of sample over many random splits, beside the references.

For each of ``splits`` seeded splits (:func:`routedllm.evaluation.calibrate.split`, the
tag router's split), on the same held-out rows:

* **learned**: trained on the training part; its curve sweeps a threshold on the
  predicted advantage (strong minus weak) from all-weak to all-strong; the operating point
  for ``target`` of the strong model's quality is chosen out of fold on the training part
  (:func:`~routedllm.learning.train.operating_gap`) and only then applied to the held-out
  rows, which say whether it met the target;
* **tag_router**: per-group means learned on the training part
  (:func:`~routedllm.evaluation.calibrate.learn`; groups are the dataset's labels when it
  has them), swept the same way; its operating point is chosen on its training means;
  **tag_router_tags** the same with each row's primary routedllm tag as its group;
* **oracle**: the true per-row advantage, swept the same way, never sending a row to
  the strong model where it does worse (as the evaluation's oracle); **random**: the
  straight line between the two models on each split's held-out rows.

Curves and figures are :mod:`routedllm.evaluation.metrics`'s. Rows tied on a router's
advantage move together (one point per tie block), with advantages rounded to 1e-9 so
that floating-point noise does not split a tie. Every figure is the mean, sd (n - 1),
min and max over the splits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from routedllm.core.errors import InvalidRequestError
from routedllm.evaluation.calibrate import learn, split
from routedllm.evaluation.dataset import EvalSet
from routedllm.evaluation.metrics import advantage_curve, oracle_curve, two_model_figures
from routedllm.learning.train import (
    TrainSettings,
    choose_penalty,
    featurize,
    operating_gap,
    predictions,
    value_choice,
)
from routedllm.workload import WorkloadRow

FIGURES = ("apgr", "cpt50", "cpt80", "strong_share_at_95")


def curve(advantage: np.ndarray, strong: np.ndarray, weak: np.ndarray) -> list[tuple[float, float]]:
    """(strong share, mean quality), highest advantage first (see
    :func:`routedllm.evaluation.metrics.advantage_curve`)."""
    return advantage_curve(advantage, strong, weak)


def split_figures(
    rows: Sequence[WorkloadRow],
    data: EvalSet,
    strong: str,
    weak: str,
    *,
    splits: int = 20,
    seed: int = 0,
    train_fraction: float = 0.5,
    target: float = 0.95,
    confidence: float = 0.9,
    prior_rows: float = 10.0,
    settings: TrainSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Learned router, tag router, oracle and random over ``splits`` splits (see module)."""
    if splits < 2:
        raise InvalidRequestError(f"--splits must be at least 2 to give a spread, got {splits}")
    settings = settings or TrainSettings()
    s, w = data.column(strong), data.column(weak)
    both = np.isfinite(data.scores[:, [s, w]]).all(axis=1)
    if not both.all():
        data = data.subset(np.flatnonzero(both))
        rows = [r for r, ok in zip(rows, both.tolist(), strict=True) if ok]
    feats = featurize(rows, data)
    by_tag = _grouped_by_tag(data)
    per: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("learned", "tag_router", "tag_router_tags", "oracle", "random")
    }
    penalties: list[float] = []
    for i in range(splits):
        tr, te = split(data, train_fraction, seed + i)
        ys, yw = data.scores[te, s], data.scores[te, w]
        qs, qw = float(ys.mean()), float(yw.mean())
        if qs == qw:
            raise InvalidRequestError("the strong and weak models score the same on a split")

        penalty = choose_penalty(feats, data, tr, w, s, settings, seed + i)
        pred = predictions(feats, data, tr, te, settings, penalty.l2)
        point = operating_gap(penalty.oof, data.scores[tr], [w, s], target, s, confidence)
        penalties.append(penalty.l2)
        per["learned"].append(_entry(pred[:, s] - pred[:, w], pred, point, ys, yw, [w, s], target))

        for key, grouped in (("tag_router", data), ("tag_router_tags", by_tag)):
            cal = learn(grouped, tr, prior_rows)
            means = np.asarray([cal.group_scores(g) for g in grouped.group_names])
            train_means = means[grouped.group_index[tr]]
            point = operating_gap(train_means, data.scores[tr], [w, s], target, s, confidence)
            test_means = means[grouped.group_index[te]]
            adv = test_means[:, s] - test_means[:, w]
            per[key].append(_entry(adv, test_means, point, ys, yw, [w, s], target))
        per["oracle"].append(two_model_figures(oracle_curve(ys, yw), qw, qs))
        per["random"].append(two_model_figures([(0.0, qw), (1.0, qs)], qw, qs))
        if progress is not None:
            progress(i + 1)
    out: dict[str, Any] = {
        "splits": splits,
        "seeds": [seed, seed + splits - 1],
        "train_fraction": train_fraction,
        "rows": len(data),
        "strong": strong,
        "weak": weak,
    }
    for name, entries in per.items():
        out[name] = {k: _stats([e[k] for e in entries]) for k in FIGURES}
        if "operating_point" in entries[0]:
            ops = [e["operating_point"] for e in entries]
            out[name]["operating_point"] = {
                "target": target,
                "confidence": confidence,
                "strong_share": _stats([o["strong_share"] for o in ops]),
                "quality_retained": _stats([o["quality_retained"] for o in ops]),
                "splits_meeting": sum(o["met"] for o in ops),
                "splits": splits,
            }
    out["learned"]["l2_chosen"] = dict(Counter(f"{p:g}" for p in penalties))
    out["random"]["note"] = (
        "a coin flip between the two models: the straight line between them on each split"
    )
    return out


def _grouped_by_tag(data: EvalSet) -> EvalSet:
    """``data`` with each row's group its primary routedllm tag (no dataset label)."""
    primaries = data.primary_tags
    names = tuple(dict.fromkeys(primaries))
    index = np.asarray([names.index(primaries[t]) for t in data.tag_index], dtype=np.int32)
    return replace(data, group_names=names, group_index=index)


def _entry(
    advantage: np.ndarray,
    predicted: np.ndarray,
    point: dict[str, Any],
    ys: np.ndarray,
    yw: np.ndarray,
    cheapest_first: list[int],
    target: float,
) -> dict[str, Any]:
    figures: dict[str, Any] = dict(
        two_model_figures(curve(advantage, ys, yw), float(yw.mean()), float(ys.mean()))
    )
    gap = point["gap_points"]
    if gap is None:  # no gap reaches the target: everything to the strong model
        strong_rows = np.ones(len(ys), dtype=bool)
    else:
        strong_rows = value_choice(predicted, cheapest_first, gap / 100) == cheapest_first[-1]
    quality = float(np.where(strong_rows, ys, yw).mean())
    figures["operating_point"] = {
        "gap_points": gap,
        "strong_share": float(strong_rows.mean()),
        "quality_retained": quality / float(ys.mean()),
        "met": quality >= target * float(ys.mean()),
    }
    return figures


def _stats(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean, sd (n - 1), min and max of the known values; ``missing`` counts the others."""
    known = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(known):
        return {"mean": None, "sd": None, "min": None, "max": None, "missing": len(values)}
    return {
        "mean": float(known.mean()),
        "sd": float(known.std(ddof=1)) if len(known) > 1 else 0.0,
        "min": float(known.min()),
        "max": float(known.max()),
        "missing": len(values) - len(known),
    }
