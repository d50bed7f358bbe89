"""Every figure of an outcome evaluation over many random splits: mean, sd, min and max.

One split gives one draw of the held-out rows; on 72 MT-Bench prompts an APGR moves by
0.07 between seeds. :func:`over_splits` repeats what :func:`routedllm.evaluation.suite.run`
does on one split (split, calibrate, route, measure on the held-out rows) for seeds
``seed`` .. ``seed + splits - 1`` and summarises each figure across them: per policy its
cost, quality, cost ratio and quality retained against the baseline, the quality of a
random mix at the same cost, per tag its cost and quality; the frontier's area and AIQ;
and the two-model figures. The first split is the one the rest of the report shows, so its
figures are one of the draws summarised here.

Every figure is a ratio of sums over a split's held-out rows (or training rows, for the
calibration) of per-row values that do not depend on the split: a model's cost and score
on the row, the baseline's. So the rows are cut once into cells (calibration group x
primary tag) and the sums of all splits are taken together, a (splits x rows) held-out
mask times a (rows x values) table, cell by cell. A policy choosing one model per group
(the tag router calibrated on each training part, its sweep) is put together from each
model's sums per cell; a policy choosing per row the same way on every split (catalog
routing, always-X, the oracle) has its own values; the random pick, which draws per split,
is summed per model it picked. 20 splits cost little more than one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from routedllm.evaluation.calibrate import (
    from_sums,
    held_out_masks,
    stable_order,
    threshold_sweep,
    value_router,
)
from routedllm.evaluation.dataset import EvalSet
from routedllm.evaluation.metrics import (
    aiq,
    frontier,
    frontier_area,
    frontier_at,
    oracle_curve,
    two_model_figures,
)
from routedllm.evaluation.policies import (
    DEFAULT_GAPS,
    Always,
    ByGroup,
    EvalPolicy,
    Oracle,
    RandomPick,
    Routed,
)
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

# the per-row values summed per policy: a row served; its cost known, the cost; its score
# known, the score; cost and baseline cost where both are known; the same for the scores
# (count, score, baseline score); the row sent to the strong model of a pair
SERVED, COST_N, COST, Q_N, Q, BOTH_COST, BASE_COST, BOTH_Q_N, BOTH_Q, BASE_Q, STRONG = range(11)
FIELDS = 11
CHUNK = 1 << 15  # rows per pass of the sums: (splits x CHUNK) masks stay small
MAX_PRODUCT = 1 << 18  # m x n x k of a matrix product OpenBLAS keeps on one thread
MAX_SUMS = 1 << 26  # bytes of sums per cell at once; more cells: splits in batches
MAX_BUCKETS = 64  # distinct oracle advantages summed per split; more: the curve per split


@dataclass
class _Totals:
    """One policy on one split's held-out rows: its sums per cell (``FIELDS``), totalled."""

    name: str
    kind: str
    sums: np.ndarray  # (cells, FIELDS)
    rows: int  # held-out rows of the split
    total: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.total = self.sums.sum(axis=0)

    @property
    def complete(self) -> bool:
        t = self.total
        return bool(t[SERVED] == self.rows and t[COST_N] == self.rows and t[Q_N] == self.rows)

    @property
    def cost_usd(self) -> float | None:
        return float(self.total[COST]) if self.total[COST_N] else None

    @property
    def mean_quality(self) -> float | None:
        return float(self.total[Q] / self.total[Q_N]) if self.total[Q_N] else None

    @property
    def strong_share(self) -> float:
        served = self.total[SERVED]
        return float(self.total[STRONG] / served) if served else 0.0

    def figures(self) -> dict[str, float | None]:
        return {"cost_usd": self.cost_usd, "quality": self.mean_quality}


class _Values:
    """Each candidate model's cost and quality on every row, and the per-row values
    (``FIELDS``) of a choice of models, against the baseline model."""

    def __init__(
        self,
        data: EvalSet,
        space: ModelSpace,
        models: Sequence[int],
        base: Always,
        strong: int | None,
    ) -> None:
        self.data, self.space = data, space
        self.models = sorted(set(models))  # the models any policy can choose
        self.slot = np.full(len(space.ids) + 1, len(self.models))  # -1 (none): the NaN row
        self.slot[self.models] = np.arange(len(self.models))
        self.full: dict[int, tuple[np.ndarray, ...]] = {}
        self.base = space.index(base.model), base.default_output_tokens
        self.strong = -2 if strong is None else strong  # -2: never a choice

    def of(self, choice: np.ndarray | int, rows: np.ndarray, output_tokens: int) -> np.ndarray:
        """(rows, FIELDS) values of ``choice`` (model positions on ``rows``, or one model
        for all; -1: none)."""
        if isinstance(choice, int):
            slot = self.slot[choice]
            c_n, cost, q_n, quality = (t[slot][rows] for t in self._table(output_tokens))
        else:
            at = self.slot[choice]
            c_n, cost, q_n, quality = (t[at, rows] for t in self._table(output_tokens))
        base, base_tokens = self.base
        b_c_n, b_cost, b_q_n, b_quality = (
            t[self.slot[base]][rows] for t in self._table(base_tokens)
        )
        out = np.empty((FIELDS, len(rows)))  # filled by field, used transposed
        out[SERVED] = choice >= 0
        out[COST_N], out[COST], out[Q_N], out[Q] = c_n, cost, q_n, quality
        np.multiply(cost, b_c_n, out=out[BOTH_COST])  # 0 where either is unknown
        np.multiply(b_cost, c_n, out=out[BASE_COST])
        np.multiply(q_n, b_q_n, out=out[BOTH_Q_N])
        np.multiply(quality, b_q_n, out=out[BOTH_Q])
        np.multiply(b_quality, q_n, out=out[BASE_Q])
        out[STRONG] = choice == self.strong
        return out.T

    def _table(self, output_tokens: int) -> tuple[np.ndarray, ...]:
        """(models + 1, rows) cost known, cost (0 if not), score known, score (0 if not) on
        every row; the last row is none, for rows with no model (or a model no policy here
        chooses from the outcomes)."""
        if output_tokens not in self.full:
            n, m = len(self.data), len(self.models)
            cost, quality = np.full((m + 1, n), np.nan), np.full((m + 1, n), np.nan)
            for i, model in enumerate(self.models):
                every = np.full(n, model, dtype=np.int32)
                cost[i] = self.space.cost(self.data, every, output_tokens)
                quality[i] = self.space.quality(self.data, every)
            c, q = np.isfinite(cost), np.isfinite(quality)
            self.full[output_tokens] = c, np.where(c, cost, 0.0), q, np.where(q, quality, 0.0)
        return self.full[output_tokens]


Weights = Callable[[np.ndarray], np.ndarray]  # rows -> (splits, rows) weights
Features = Callable[[np.ndarray], np.ndarray]  # rows -> (rows, width) values


def _sums_by_cell(
    cell: np.ndarray, cells: int, splits: int, blocks: Sequence[tuple[Weights, Features, int]]
) -> list[np.ndarray]:
    """Per block, (splits, cells, width) sums of weight x value over the rows of each cell.

    Rows are taken cell by cell in chunks; blocks sharing a weight function share one
    matrix product per cell and chunk.
    """
    order = stable_order(cell)
    by_weight: dict[Weights, list[int]] = {}
    for i, (weights, _, _) in enumerate(blocks):
        by_weight.setdefault(weights, []).append(i)
    out = [np.zeros((splits, cells, width)) for _, _, width in blocks]
    for start in range(0, len(order), CHUNK):
        rows = order[start : start + CHUNK]
        here = cell[rows]
        bounds = np.flatnonzero(np.diff(here)) + 1
        starts = np.concatenate(([0], bounds))
        cache: dict[Features, np.ndarray] = {}  # values shared by blocks, once per chunk
        for weights, members in by_weight.items():
            w = weights(rows)
            for i in members:
                if blocks[i][1] not in cache:
                    cache[blocks[i][1]] = blocks[i][1](rows)
            values = np.hstack([cache[blocks[i][1]] for i in members])
            if len(rows) >= 64 * len(starts):
                # products small enough for OpenBLAS to run them on one thread: threads
                # spin, and on a busy machine they multiply the CPU time several times
                step = max(16, MAX_PRODUCT // (splits * values.shape[1]))
                part = np.zeros((splits, len(starts), values.shape[1]))
                for j, (a, b) in enumerate(zip(starts, [*bounds, len(rows)], strict=True)):
                    for c in range(a, b, step):
                        part[:, j] += w[:, c : min(c + step, b)] @ values[c : min(c + step, b)]
            else:  # many small cells: a reduction per split
                part = np.stack(
                    [np.add.reduceat(w[s][:, None] * values, starts) for s in range(splits)]
                )
            at = 0
            for i in members:
                width = blocks[i][2]
                out[i][:, here[starts]] += part[:, :, at : at + width]
                at += width
    return out


def spread(
    values: Sequence[float | None], splits: int | None = None
) -> dict[str, float | int | None]:
    """Mean, sd (n - 1; None for one value), min and max of the known values; ``missing``
    counts the splits without the figure: the Nones, and the splits of ``splits`` (default:
    one per value) that gave no value at all (a tag with no held-out row in a split)."""
    known = np.asarray([v for v in values if v is not None], dtype=float)
    missing = (len(values) if splits is None else splits) - len(known)
    if not len(known):
        return {"mean": None, "sd": None, "min": None, "max": None, "missing": missing}
    return {
        "mean": float(known.mean()),
        "sd": float(known.std(ddof=1)) if len(known) > 1 else None,
        "min": float(known.min()),
        "max": float(known.max()),
        "missing": missing,
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
    held = held_out_masks(data, train_fraction, range(seed, seed + splits))
    n_held = held.sum(axis=1)
    first: dict[str, EvalPolicy] = {}
    for p in policies:
        first.setdefault(p.name, p)
    todo = list(first.values())
    base = next(p for p in todo if p.name == baseline)
    assert isinstance(base, Always), "ratios compare with an always-X baseline"
    fixed = _fixed_choices(todo, data, space)
    per_split = {
        p.name: _split_choices(p, data, space, held)
        for p in todo
        if p.name not in fixed and not isinstance(p, Always)
    }
    outcome_models = [space.index(m) for m in data.models]
    routed = [fixed[p.name] for p in todo if isinstance(p, Routed)]
    chosen = [int(m) for c in routed for m in np.unique(c).tolist() if m >= 0]
    values = _Values(
        data, space, [*outcome_models, *chosen], base, space.index(pair[0]) if pair else None
    )

    names = tuple(dict.fromkeys(data.primary_tags))
    tag_of_set = np.asarray([names.index(t) for t in data.primary_tags])
    key = data.group_index.astype(np.int64) * len(names) + tag_of_set[data.tag_index]
    if len(data.group_names) * len(names) <= 4 * len(key):  # no sort: a lookup
        present = np.bincount(key, minlength=len(data.group_names) * len(names)) > 0
        cell_keys, cell = np.flatnonzero(present), (np.cumsum(present) - 1)[key]
    else:
        cell_keys, cell = np.unique(key, return_inverse=True)
        cell = cell.reshape(-1)
    cell_group, cell_tag = cell_keys // len(names), cell_keys % len(names)

    # what is summed, with which weights: held-out rows, training rows, a policy's picks,
    # for the splits summed now (all of them, or a batch when the cells are many)
    now: dict[str | None, np.ndarray] = {None: held}

    def on_held(rows: np.ndarray) -> np.ndarray:
        return now[None][:, rows].astype(float)

    def on_train(rows: np.ndarray) -> np.ndarray:
        return (~now[None][:, rows]).astype(float)

    scores = data.scores
    blocks: list[tuple[Weights, Features, int]] = [
        (on_held, lambda rows: np.ones((len(rows), 1)), 1),
        (
            on_train,
            lambda rows: np.hstack(
                [np.nan_to_num(scores[rows], nan=0.0), np.isfinite(scores[rows])]
            ),
            2 * len(data.models),
        ),
    ]
    each: dict[tuple[int, int], int] = {}  # (model, output tokens) -> block of always-model
    of_model: dict[tuple[int, int], Features] = {}

    def model_values(model: int, tokens: int) -> Features:
        if (model, tokens) not in of_model:
            of_model[(model, tokens)] = partial(_model_values, values, model, tokens)
        return of_model[(model, tokens)]

    def always(model: int, tokens: int) -> int:
        if (model, tokens) not in each:
            each[(model, tokens)] = len(blocks)
            blocks.append((on_held, model_values(model, tokens), FIELDS))
        return each[(model, tokens)]

    sweep_tokens = ByGroup("", {}, "").default_output_tokens
    for m in outcome_models:
        always(m, sweep_tokens)
    own: dict[str, int] = {}
    for p in todo:
        tokens = p.default_output_tokens
        if isinstance(p, Always):
            own[p.name] = always(space.index(p.model), tokens)
        elif p.name in fixed:
            own[p.name] = len(blocks)
            blocks.append(
                (
                    on_held,
                    partial(_fixed_values, values, fixed[p.name], tokens),
                    FIELDS,
                )
            )
    picked: dict[str, list[int]] = {}
    for name, (_, models) in per_split.items():
        tokens = next(p for p in todo if p.name == name).default_output_tokens
        picked[name] = []
        for m in models:
            picked[name].append(len(blocks))
            blocks.append(
                (
                    partial(_picks, now, name, m),
                    model_values(m, tokens),
                    FIELDS,
                )
            )
    oracle = _OracleSums(data, pair, held) if pair else None
    if oracle is not None and oracle.buckets is not None:
        blocks.append((on_held, oracle.features, 3 * oracle.buckets))
    by_model = sorted(set(each.values()))  # the blocks a group's model can come from
    blocks_of: dict[int, dict[str, int]] = {}  # output tokens -> model -> its block
    for (m, tokens), b in each.items():
        blocks_of.setdefault(tokens, {})[space.ids[m]] = b
    place = np.zeros(len(blocks), dtype=np.int64)
    place[by_model] = np.arange(len(by_model))
    width = sum(w for _, _, w in blocks)
    batch = max(1, min(splits, MAX_SUMS // (8 * len(cell_keys) * width)))
    k, groups = len(data.models), data.group_names

    per_policy: dict[str, dict[str, list[float | None]]] = {}
    per_tag: dict[str, dict[str, dict[str, list[float | None]]]] = {}
    frontier_runs: dict[str, list[float | None]] = {"area": [], "aiq": []}
    aiq_by_kind: dict[str, list[float | None]] = {}
    two: dict[str, dict[str, list[float | None]]] = {}
    for i in range(splits):
        if i % batch == 0:  # the sums of the next batch of splits
            now[None] = held[i : i + batch]
            for name, (choice, _) in per_split.items():
                now[name] = choice[i : i + batch]
            sums = _sums_by_cell(cell, len(cell_keys), len(now[None]), blocks)
            rows_per_cell = sums[0][:, :, 0]
            group_sums = np.zeros((len(now[None]), len(groups), 2 * k))
            np.add.at(group_sums.transpose(1, 0, 2), cell_group, sums[1].transpose(1, 0, 2))
        at = i % batch  # this split in the batch
        per_group = np.zeros((len(by_model), len(groups), FIELDS))  # each model's, per group
        for j, b in enumerate(by_model):
            np.add.at(per_group[j], cell_group, sums[b][at])
        rows = int(n_held[i])
        cal = from_sums(
            data, group_sums[at, :, :k], group_sums[at, :, k:], prior_rows, len(data) - rows
        )
        sweep = (
            threshold_sweep(cal, *pair)
            if pair
            else [
                value_router(cal, g, order, f"{tag_router}:gap={g:g}", kind="calibrated sweep")
                for g in DEFAULT_GAPS
            ]
        )
        totals: list[_Totals] = []
        seen: set[str] = set()
        for p in [value_router(cal, gap, order, tag_router), *todo, *sweep]:
            if p.name in seen:
                continue
            seen.add(p.name)
            if isinstance(p, ByGroup):  # each group: the sums of its model
                block_of = blocks_of[p.default_output_tokens]
                choices, default = p.choices, p.default
                block = np.fromiter(
                    (block_of[choices.get(g, default)] for g in groups), np.int64, len(groups)
                )
                if p.kind == "calibrated sweep":  # totals alone: one "cell"
                    got = per_group[place[block], np.arange(len(groups))].sum(0, keepdims=True)
                else:
                    block = block[cell_group]
                    got = np.empty((len(cell_keys), FIELDS))
                    for b in np.unique(block).tolist():
                        got[block == b] = sums[b][at][block == b]
            elif p.name in own:
                got = sums[own[p.name]][at]
            else:
                got = sum((sums[b][at] for b in picked[p.name]), np.zeros((len(cell_keys), FIELDS)))
            totals.append(_Totals(p.name, p.kind, got, rows))
        by_name = {t.name: t for t in totals}
        base_t = by_name[baseline]
        anchors = _hull([t for t in totals if t.kind == "always" or t.name in RANDOM_ANCHORS])
        tag_rows = np.bincount(cell_tag, weights=rows_per_cell[at], minlength=len(names))
        for t in totals:
            if t.kind == "calibrated sweep":
                continue
            figures = _policy_figures(t, base_t, anchors)
            for key_, value in figures.items():
                per_policy.setdefault(t.name, {}).setdefault(key_, []).append(value)
            tag_sums = np.zeros((len(names), FIELDS))
            np.add.at(tag_sums, cell_tag, t.sums)
            for j, name in enumerate(names):
                if not tag_rows[j]:
                    continue
                s = tag_sums[j]
                entry = per_tag.setdefault(t.name, {}).setdefault(
                    name, {"cost_usd": [], "quality": []}
                )
                entry["cost_usd"].append(float(s[COST]) if s[COST_N] else None)
                entry["quality"].append(float(s[Q] / s[Q_N]) if s[Q_N] else None)
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
        if pair and oracle is not None:
            by_bucket = sums[-1][at] if oracle.buckets is not None else None
            best = lambda i=i, by_bucket=by_bucket: oracle.curve(i, by_bucket)  # noqa: E731
            for key_, figs in _two_model(by_name, best, pair, tag_router).items():
                for fig in TWO_MODEL_FIGURES:
                    two.setdefault(key_, {}).setdefault(fig, []).append(figs.get(fig))
    out: dict[str, Any] = {
        "splits": splits,
        "seeds": [seed, seed + splits - 1],
        "train_fraction": train_fraction,
        "policies": {
            name: {k_: spread(v, splits) for k_, v in figs.items()}
            for name, figs in per_policy.items()
        },
        "per_tag": {
            name: {t: {k_: spread(v, splits) for k_, v in e.items()} for t, e in tags.items()}
            for name, tags in per_tag.items()
        },
        "frontier": {
            "area": spread(frontier_runs["area"], splits),
            "aiq": spread(frontier_runs["aiq"], splits),
            "aiq_by_kind": {k_: spread(v, splits) for k_, v in aiq_by_kind.items()},
        },
    }
    if pair:
        out["two_model"] = {
            key_: {k_: spread(v, splits) for k_, v in figs.items()} for key_, figs in two.items()
        }
    return out


def _model_values(values: _Values, model: int, tokens: int, rows: np.ndarray) -> np.ndarray:
    return values.of(model, rows, tokens)


def _fixed_values(values: _Values, choice: np.ndarray, tokens: int, rows: np.ndarray) -> np.ndarray:
    return values.of(choice[rows], rows, tokens)


def _picks(
    now: dict[str | None, np.ndarray], name: str, model: int, rows: np.ndarray
) -> np.ndarray:
    """Weights: 1 where the policy's choice on the row in a split summed now is ``model``."""
    return (now[name][:, rows] == model).astype(float)


def _fixed_choices(
    policies: Sequence[EvalPolicy], data: EvalSet, space: ModelSpace
) -> dict[str, np.ndarray]:
    """The choice on every row of the policies that choose the same on every split:
    catalog routing decides per row, and an oracle whose order ranks every model."""
    out: dict[str, np.ndarray] = {}
    for p in policies:
        if (
            isinstance(p, Routed)
            or getattr(p, "fixed", False)  # a trained router's choice (learned:PATH)
            or (isinstance(p, Oracle) and set(data.models) <= set(p.cheapest_first))
        ):
            out[p.name] = p.choose(data, space).model
    return out


def _split_choices(
    p: EvalPolicy, data: EvalSet, space: ModelSpace, held: np.ndarray
) -> tuple[np.ndarray, list[int]]:
    """(splits, rows) the policy's choice on each split's held-out rows, -1 elsewhere;
    and the models it chose."""
    out = np.full(held.shape, -1, dtype=np.int16 if len(space.ids) < 2**15 else np.int32)
    scored = np.isfinite(data.scores).any(axis=1)
    fast = _random_pick(p, data, space) if isinstance(p, RandomPick) else None
    models: set[int] = set()
    for s in range(len(held)):
        rows = np.flatnonzero(held[s])
        if fast is not None and scored[rows].any():  # the measured case of RandomPick
            out[s, rows] = fast(rows)
            models.update(space.index(m) for m in data.models)
        else:
            choice = p.choose(data.subset(rows), space).model
            out[s, rows] = choice
            models.update(int(m) for m in np.unique(choice).tolist() if m >= 0)
    return out, sorted(models)


def _random_pick(
    p: RandomPick, data: EvalSet, space: ModelSpace
) -> Callable[[np.ndarray], np.ndarray]:
    """:meth:`RandomPick.choose` on a subset with outcomes, by row position: the same
    draws, with each row's j-th scored model found once for all splits."""
    mask = np.isfinite(data.scores)
    count = mask.sum(axis=1)
    seen = np.cumsum(mask, axis=1)
    nth = np.stack([(seen > j).argmax(axis=1) for j in range(mask.shape[1])], axis=1)
    ids = np.asarray([space.index(m) for m in data.models], dtype=np.int32)

    def pick(rows: np.ndarray) -> np.ndarray:
        u = np.random.default_rng(p.seed).random(len(rows))
        c = count[rows]
        j = np.minimum((u * c).astype(np.int64), np.maximum(c - 1, 0))
        return np.where(c > 0, ids[nth[rows, j]], -1)

    return pick


class _OracleSums:
    """The oracle's curve per split (:func:`~routedllm.evaluation.metrics.oracle_curve` on
    the held-out rows both models scored) from sums per distinct advantage, when few."""

    def __init__(self, data: EvalSet, pair: tuple[str, str], held: np.ndarray) -> None:
        s, w = data.column(pair[0]), data.column(pair[1])
        self.strong, self.weak = data.scores[:, s], data.scores[:, w]
        self.both = np.isfinite(self.strong) & np.isfinite(self.weak)
        self.held = held
        adv = np.round(self.strong[self.both] - self.weak[self.both], 9)
        self.values, inverse = np.unique(adv, return_inverse=True)
        self.buckets: int | None = None
        if len(self.values) <= MAX_BUCKETS:
            self.buckets = len(self.values)
            self.bucket = np.full(len(self.both), -1)
            self.bucket[self.both] = inverse.reshape(-1)
            self.gain = np.maximum(self.strong, self.weak) - self.weak

    def features(self, rows: np.ndarray) -> np.ndarray:
        """(rows, 3 x buckets): per advantage, the row's count, weak score and gain."""
        assert self.buckets is not None
        out = np.zeros((len(rows), 3 * self.buckets))
        b = self.bucket[rows]
        ok = np.flatnonzero(b >= 0)
        b = b[ok]
        out[ok, b] = 1.0
        out[ok, self.buckets + b] = self.weak[rows[ok]]
        out[ok, 2 * self.buckets + b] = self.gain[rows[ok]]
        return out

    def curve(self, split: int, by_cell: np.ndarray | None) -> list[tuple[float, float]]:
        if by_cell is None or self.buckets is None:
            rows = self.held[split] & self.both
            return oracle_curve(self.strong[rows], self.weak[rows])
        count, weak, gain = by_cell.sum(axis=0).reshape(3, self.buckets)
        n = float(count.sum())
        if not n:
            return oracle_curve(np.empty(0), np.empty(0))
        base = float(weak.sum())
        points = [(0.0, base / n)]
        k = g = 0.0
        for j in range(self.buckets - 1, -1, -1):  # the highest advantage first
            if count[j]:
                k, g = k + float(count[j]), g + float(gain[j])
                points.append((k / n, (base + g) / n))
        return points


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
    s = t.total
    fig["cost_ratio"] = float(s[BOTH_COST] / s[BASE_COST]) if s[BASE_COST] > 0 else None
    base_q = float(s[BASE_Q] / s[BOTH_Q_N]) if s[BOTH_Q_N] else 0.0
    fig["quality_retained"] = float(s[BOTH_Q] / s[BOTH_Q_N]) / base_q if base_q > 0 else None
    fig["random_same_cost"] = (
        frontier_at(anchors, _point(t)[0]) if anchors is not None and t.complete else None
    )
    return fig


def _two_model(
    by_name: dict[str, _Totals],
    best: Callable[[], list[tuple[float, float]]],
    pair: tuple[str, str],
    tag_router: str,
) -> dict[str, dict[str, float | None]]:
    """RouteLLM's figures on one split, as :func:`routedllm.evaluation.suite` reports them;
    ``best`` gives the oracle's curve."""
    strong, weak = pair
    s_only, w_only = by_name[f"always:{strong}"], by_name[f"always:{weak}"]
    qs, qw = s_only.mean_quality, w_only.mean_quality
    if qs is None or qw is None:
        return {}

    def entry(t: _Totals) -> dict[str, float | None]:
        return {**t.figures(), "strong_share": t.strong_share}

    curve = [
        (t.strong_share, q)
        for t in by_name.values()
        if t.kind == "calibrated sweep" and (q := t.mean_quality) is not None
    ]
    router = entry(by_name[tag_router])
    share = router["strong_share"] or 0.0
    s_cost, w_cost = s_only.cost_usd, w_only.cost_usd
    costed = s_cost is not None and w_cost is not None and s_only.complete and w_only.complete
    return {
        "tag_router": {**router, **two_model_figures(curve, qw, qs)},
        "oracle": {**entry(by_name["oracle"]), **two_model_figures(best(), qw, qs)},
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
