"""Calibration: learn per-group model scores from outcome rows, route on them out of sample.

Rows are split into a training and a held-out part (stratified by group, seeded, so the
same seed gives the same split). On the training part each model's mean score is taken per
calibration group (a row's ``category``, else its primary tag; see
:class:`~routedllm.evaluation.dataset.EvalSet`), shrunk toward the model's overall mean by
``prior_rows`` pseudo-rows so that a group seen a few times does not swing the router. The
learned router then applies the value rule to those scores: per group, the cheapest model
within ``gap`` points of the group's best. It is only ever scored on the held-out rows.

The scores can be written as a catalog override. Catalog scores are per benchmark
(mmlu/humaneval/ceval), not per tag, so each primary tag's mean score (x100) goes to its
tag's benchmark (:data:`routedllm.core.tags.VOCABULARY`), tags sharing a benchmark weighted by
their training rows. Finer groups (an MMLU subject) have no place in the catalog; they live
in the evaluation report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from routedllm.core.catalog import Catalog
from routedllm.core.errors import InvalidRequestError
from routedllm.core.tags import VOCABULARY
from routedllm.evaluation.dataset import EvalSet
from routedllm.evaluation.policies import ByGroup

UNSEEN = "(unseen)"  # groups of held-out rows absent from the training rows


@dataclass(frozen=True, eq=False)
class Calibration:
    """Per-group and per-tag mean scores of each outcome model on the training rows."""

    models: tuple[str, ...]
    groups: tuple[str, ...]
    scores: np.ndarray  # (groups, models) shrunk means; NaN when a model has no outcome
    counts: np.ndarray  # (groups, models) training rows with an outcome
    overall: np.ndarray  # (models,) mean over all training rows
    tags: tuple[str, ...]
    tag_scores: np.ndarray  # (tags, models) plain means per primary tag
    tag_counts: np.ndarray
    train_rows: int
    prior_rows: float

    def group_scores(self, group: str) -> np.ndarray:
        """Scores for ``group``; a group absent from training gets the overall means."""
        try:
            return self.scores[self.groups.index(group)]
        except ValueError:
            return self.overall

    def to_json(self) -> dict[str, Any]:
        return {
            "train_rows": self.train_rows,
            "prior_rows": self.prior_rows,
            "overall": _named(self.models, self.overall),
            "groups": {
                g: {
                    "rows": int(self.counts[i].max(initial=0)),
                    "scores": _named(self.models, self.scores[i]),
                }
                for i, g in enumerate(self.groups)
            },
            "tags": {
                t: {
                    "rows": int(self.tag_counts[i].max(initial=0)),
                    "scores": _named(self.models, self.tag_scores[i]),
                }
                for i, t in enumerate(self.tags)
            },
        }


def _named(models: Sequence[str], values: np.ndarray) -> dict[str, float | None]:
    return {
        m: (None if np.isnan(v) else round(float(v), 6))
        for m, v in zip(models, values, strict=True)
    }


def split(
    data: EvalSet, train_fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out row positions, stratified by group; deterministic per seed.

    Each group of two or more rows puts at least one row on each side.
    """
    held = held_out_masks(data, train_fraction, [seed])[0]
    return np.flatnonzero(~held), np.flatnonzero(held)


def held_out_masks(data: EvalSet, train_fraction: float, seeds: Sequence[int]) -> np.ndarray:
    """(seeds, rows) booleans: the held-out rows of :func:`split` for each seed, the rows
    grouped once for all of them."""
    if not 0 < train_fraction < 1:
        raise InvalidRequestError(f"train fraction must be between 0 and 1, got {train_fraction}")
    order = stable_order(data.group_index)
    bounds = np.flatnonzero(np.diff(data.group_index[order])) + 1
    groups = np.split(order, bounds)
    held = np.zeros((len(seeds), len(data)), dtype=bool)
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        mask = held[i]  # a view: one row's scatter, not a 2-d one
        for rows in groups:
            # the same draws as rng.permutation(rows): the shuffle depends on the length only
            perm = rng.permutation(len(rows))
            k = int(round(len(rows) * train_fraction))
            if len(rows) >= 2:
                k = min(max(k, 1), len(rows) - 1)
            mask[rows[perm[k:]]] = True
    return held


def stable_order(index: np.ndarray) -> np.ndarray:
    """``np.argsort(index, kind="stable")`` of non-negative ints; below 2**16 as 16-bit
    ints, which numpy sorts by radix, several times faster."""
    if len(index) and 0 <= index.min() and index.max() < 2**16:
        index = index.astype(np.uint16)
    return np.argsort(index, kind="stable")


def learn(data: EvalSet, rows: np.ndarray | None = None, prior_rows: float = 10.0) -> Calibration:
    """Mean score per (group, model) and per (primary tag, model) over ``rows``."""
    if not data.has_outcomes:
        raise InvalidRequestError("calibration needs outcome rows (per-model scores)")
    if prior_rows < 0:
        raise InvalidRequestError(f"prior_rows must be >= 0, got {prior_rows}")
    rows = np.arange(len(data)) if rows is None else np.asarray(rows)
    scores = data.scores[rows]
    known = np.isfinite(scores)
    filled = np.where(known, scores, 0.0)
    g_sum, g_cnt = _sums(data.group_index[rows], len(data.group_names), filled, known)
    primaries = data.primary_tags
    tag_names = tuple(dict.fromkeys(primaries))
    tag_of_set = np.asarray([tag_names.index(t) for t in primaries])
    t_sum, t_cnt = _sums(tag_of_set[data.tag_index[rows]], len(tag_names), filled, known)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = np.where(t_cnt > 0, t_sum / t_cnt, np.nan)
    t_seen = t_cnt.max(axis=1) > 0
    return replace(
        from_sums(data, g_sum, g_cnt, prior_rows, len(rows)),
        tags=tuple(t for t, s in zip(tag_names, t_seen, strict=True) if s),
        tag_scores=t_mean[t_seen],
        tag_counts=t_cnt[t_seen],
    )


def from_sums(
    data: EvalSet, g_sum: np.ndarray, g_cnt: np.ndarray, prior_rows: float, train_rows: int
) -> Calibration:
    """The per-group part of :func:`learn` from (groups, models) score sums and counts over
    the training rows (no per-tag scores): what routing needs, per split."""
    with np.errstate(invalid="ignore", divide="ignore"):
        overall = g_sum.sum(axis=0) / g_cnt.sum(axis=0)
    shrunk, seen = _shrunk(g_sum, g_cnt, overall, prior_rows)
    empty = np.zeros((0, len(data.models)))
    return Calibration(
        models=data.models,
        groups=tuple(g for g, s in zip(data.group_names, seen, strict=True) if s),
        scores=shrunk[seen],
        counts=g_cnt[seen],
        overall=overall,
        tags=(),
        tag_scores=empty,
        tag_counts=empty,
        train_rows=train_rows,
        prior_rows=prior_rows,
    )


def _shrunk(
    g_sum: np.ndarray, g_cnt: np.ndarray, overall: np.ndarray, prior_rows: float
) -> tuple[np.ndarray, np.ndarray]:
    """Group means shrunk toward ``overall`` (NaN without outcomes), and the groups seen."""
    with np.errstate(invalid="ignore", divide="ignore"):
        shrunk = (g_sum + prior_rows * overall) / (g_cnt + prior_rows)
    return np.where(g_cnt > 0, shrunk, np.nan), g_cnt.max(axis=1) > 0


def _sums(
    index: np.ndarray, size: int, filled: np.ndarray, known: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    k = filled.shape[1]
    total = np.zeros((size, k))
    count = np.zeros((size, k))
    for col in range(k):  # bincount: an order of magnitude faster than np.add.at
        total[:, col] = np.bincount(index, weights=filled[:, col], minlength=size)
        count[:, col] = np.bincount(index, weights=known[:, col], minlength=size)
    return total, count


def value_router(
    cal: Calibration,
    gap_points: float,
    cheapest_first: Sequence[str],
    name: str = "tag_router",
    kind: str = "calibrated",
) -> ByGroup:
    """Per group, the cheapest model whose calibrated score is within the gap of the best.

    ``gap_points`` is in benchmark points (scores x100), like ``Policy.quality_gap``;
    ``cheapest_first`` lists the models from cheapest to dearest.
    """
    order = [cal.models.index(m) for m in cheapest_first]

    def pick(scores: np.ndarray) -> str:
        best = np.nanmax(scores) if np.isfinite(scores).any() else np.nan
        for col in order:
            if np.isfinite(scores[col]) and scores[col] >= best - gap_points / 100 - 1e-12:
                return cal.models[col]
        return cal.models[order[-1]]

    return ByGroup(
        name, {g: pick(cal.scores[i]) for i, g in enumerate(cal.groups)}, pick(cal.overall), kind
    )


def threshold_sweep(cal: Calibration, strong: str, weak: str) -> list[ByGroup]:
    """Two-model routers from all-weak to all-strong: strong where the calibrated advantage
    (strong minus weak score) exceeds a threshold, for every threshold that changes a group.

    For a threshold ``t >= 0`` this is :func:`value_router` with a gap of ``100 * t``
    points; negative thresholds send groups where the weak model scored better to the
    strong one too, so the curve spans strong shares 0 to 1 as RouteLLM's routers do.
    Advantages are rounded to 1e-9 first, so groups tied but for floating-point noise
    (0.1 + 0.2 and 0.3) move together, in one step.
    """
    s, w = cal.models.index(strong), cal.models.index(weak)
    adv = {g: _advantage(cal.scores[i], s, w) for i, g in enumerate(cal.groups)}
    default_adv = _advantage(cal.overall, s, w)
    cuts = sorted({*adv.values(), default_adv}, reverse=True)
    return [
        ByGroup(
            f"tag_router:t={t:+.4f}",
            {g: strong if a > t else weak for g, a in adv.items()},
            strong if default_adv > t else weak,
            kind="calibrated sweep",
        )
        for t in (np.inf, *cuts[1:], -np.inf)
    ]


def _advantage(scores: np.ndarray, strong: int, weak: int) -> float:
    diff = scores[strong] - scores[weak]
    return round(float(diff), 9) if np.isfinite(diff) else 0.0


def override(cal: Calibration, catalog: Catalog) -> dict[str, Any]:
    """The learned scores as a catalog override mapping (file schema: ``models:``)."""
    by_bench: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for i, tag in enumerate(cal.tags):
        by_bench.setdefault(VOCABULARY[tag].benchmark, []).append(
            (cal.tag_scores[i], cal.tag_counts[i])
        )
    models = []
    for col, model in enumerate(cal.models):
        scores: dict[str, float] = {}
        for bench, parts in by_bench.items():
            weights = np.asarray([c[col] for _, c in parts])
            values = np.asarray([s[col] for s, _ in parts])
            ok = weights > 0
            if ok.any():
                scores[bench] = round(float(np.average(values[ok], weights=weights[ok])) * 100, 2)
        if not scores:
            continue
        entry: dict[str, Any] = {"id": model}
        if model not in catalog:
            entry["name"] = model
        entry["scores"] = scores
        models.append(entry)
    return {"models": models}


def write_override(cal: Calibration, catalog: Catalog, path: str | Path, source: str) -> Path:
    """Write :func:`override` as YAML with a header naming where the scores came from."""
    path = Path(path)
    tags = ", ".join(f"{t} -> {VOCABULARY[t].benchmark}" for t in cal.tags)
    header = (
        f"# Calibrated scores learned from {cal.train_rows} training rows of {source}.\n"
        f"# Score = mean outcome score x100 per primary tag, put on the tag's benchmark\n"
        f"# ({tags}). Use it with: routedllm route --catalog {path.name} ...\n"
        "# Models outside the packaged catalog have no prices here: add them to route to them.\n"
    )
    body = yaml.safe_dump(override(cal, catalog), sort_keys=False, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")
    return path
