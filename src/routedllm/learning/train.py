"""Training the learned router from outcome rows (needs numpy: the ``eval`` extra).

One L2-regularised logistic regression per outcome model, on the row's features
(:mod:`routedllm.learning.features`) against its score in [0, 1] (a fractional score is a
soft label), fitted by full-batch Adam on a sparse term matrix held as CSR arrays. Rows
without an outcome for a model do not train that model.

The weight penalty is chosen the same way, per training set: out-of-fold predictions for
each penalty of ``l2_grid`` are compared by how well they route (the APGR of the dearest
model over the cheapest), and the best one is fitted on all training rows
(:func:`choose_penalty`). Few rows want a strong penalty (72 MT-Bench prompts), many rows
a weak one (14,037 MMLU questions): no single value suits both.

An operating point is chosen without looking at the rows it will be measured on:
out-of-fold predictions over the training rows (``folds``-fold cross-validation) give, for
each gap, the quality the value rule would reach; the smallest gap whose quality clears
the target by a confidence margin is kept (:func:`operating_gap`). The margin accounts
for the noise of both the training estimate and an evaluation set as large as the
training set, so that the target holds on held-out rows in about ``confidence`` of splits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from routedllm.core.errors import InvalidRequestError
from routedllm.evaluation.dataset import EvalSet
from routedllm.evaluation.metrics import advantage_curve, apgr
from routedllm.learning.features import STRUCTURE, Term, ask_text, structure, term_name, terms
from routedllm.learning.model import LearnedRouter
from routedllm.workload import WorkloadRow


@dataclass(frozen=True)
class TrainSettings:
    """Model size and fit. The defaults were chosen on MMLU splits 0 and 1 (see
    docs/learned-router.md). ``l2`` None: the penalty is chosen from ``l2_grid`` by
    cross-validation on the training rows (:func:`choose_penalty`); a number fixes it."""

    min_df: int = 3  # a term must occur in this many training rows to enter the vocabulary
    max_terms: int = 20_000  # the most frequent terms kept
    l2: float | None = None  # weight penalty (on the mean loss); None: chosen from l2_grid
    l2_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    iterations: int = 300
    learning_rate: float = 0.05
    folds: int = 5

    def __post_init__(self) -> None:
        penalties = (*self.l2_grid, *(() if self.l2 is None else (self.l2,)))
        if not self.l2_grid or any(not (x >= 0 and x < float("inf")) for x in penalties):
            raise InvalidRequestError(
                f"l2 and l2_grid must be finite and >= 0 (and the grid not empty), got "
                f"l2={self.l2!r}, l2_grid={self.l2_grid!r}"
            )


DEFAULT_L2 = 1e-4
"""The penalty when it cannot be chosen (too few rows, or no row tells the models apart)."""


@dataclass(frozen=True)
class Features:
    """Every row's distinct terms and structure features, in :class:`EvalSet` row order."""

    term_sets: tuple[set[Term], ...]
    dense: np.ndarray  # (rows, len(STRUCTURE))


def featurize(rows: Sequence[WorkloadRow], data: EvalSet) -> Features:
    """Features of ``rows`` with the tags and sizes ``data`` (read from the same rows) has."""
    if len(rows) != len(data):
        raise InvalidRequestError("featurize needs the rows the EvalSet was read from")
    term_sets = []
    dense = np.empty((len(rows), len(STRUCTURE)))
    for i, row in enumerate(rows):
        messages = row.chat_messages()
        text = ask_text(messages)
        term_sets.append(terms(text))
        tags = data.tag_sets[data.tag_index[i]]
        dense[i] = structure(text, tags, int(data.input_tokens[i]), len(messages))
    return Features(tuple(term_sets), dense)


def rows_hash(rows: Sequence[WorkloadRow]) -> str:
    """SHA-256 of the rows as canonical JSON lines: names the data a router learned from."""
    digest = hashlib.sha256()
    for row in rows:
        data = row.model_dump(exclude_none=True)
        digest.update(json.dumps(data, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


# -- the fit --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Fit:
    vocabulary: tuple[Term, ...]
    term_w: np.ndarray  # (terms, models)
    dense_w: np.ndarray  # (structure, models)
    mean: np.ndarray
    scale: np.ndarray


def _vocabulary(term_sets: Sequence[set[Term]], settings: TrainSettings) -> tuple[Term, ...]:
    counts: dict[Term, int] = {}
    for ts in term_sets:
        for t in ts:
            counts[t] = counts.get(t, 0) + 1
    kept = [t for t, c in counts.items() if c >= settings.min_df]
    kept.sort(key=lambda t: (-counts[t], term_name(t)))  # most frequent first; ties by name
    return tuple(sorted(kept[: settings.max_terms], key=term_name))


def _csr(
    term_sets: Sequence[set[Term]], vocabulary: Sequence[Term]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row of each entry, column, value): value 1/sqrt(distinct terms of the row)."""
    index = {t: i for i, t in enumerate(vocabulary)}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for r, ts in enumerate(term_sets):
        found = [index[t] for t in ts if t in index]
        rows.extend([r] * len(found))
        cols.extend(found)
        vals.extend([len(ts) ** -0.5] * len(found))
    return np.asarray(rows, np.int64), np.asarray(cols, np.int64), np.asarray(vals)


@dataclass(frozen=True)
class _Design:
    """The training rows as the fit reads them: the same for every penalty tried."""

    vocabulary: tuple[Term, ...]
    r: np.ndarray  # CSR-like entries: row, column, value
    c: np.ndarray
    v: np.ndarray
    z: np.ndarray  # standardised structure features
    mean: np.ndarray
    scale: np.ndarray
    y: np.ndarray  # scores in [0, 1], 0 where unknown
    known: np.ndarray


def _design(
    feats: Features, scores: np.ndarray, rows: np.ndarray, settings: TrainSettings
) -> _Design:
    term_sets = [feats.term_sets[i] for i in rows.tolist()]
    vocabulary = _vocabulary(term_sets, settings)
    r, c, v = _csr(term_sets, vocabulary)
    dense = feats.dense[rows]
    mean = dense.mean(axis=0)
    scale = dense.std(axis=0)
    mean[0], scale[0] = 0.0, 1.0  # the bias
    scale = np.where(scale > 1e-9, scale, 1.0)
    y = scores[rows]
    known = np.isfinite(y)
    y = np.where(known, np.clip(y, 0.0, 1.0), 0.0)
    return _Design(vocabulary, r, c, v, (dense - mean) / scale, mean, scale, y, known)


def _fit(
    feats: Features,
    scores: np.ndarray,
    rows: np.ndarray,
    settings: TrainSettings,
    l2: float | None = None,
) -> _Fit:
    """Logistic weights per model (columns of ``scores``) on the training ``rows``, with
    penalty ``l2`` (default: the settings' fixed one, else :data:`DEFAULT_L2`)."""
    if l2 is None:
        l2 = DEFAULT_L2 if settings.l2 is None else settings.l2
    return _solve(_design(feats, scores, rows, settings), settings, l2)


def _solve(d: _Design, settings: TrainSettings, l2: float) -> _Fit:
    """Full-batch Adam on the mean cross-entropy plus ``l2`` times the squared weights."""
    vocabulary, r, c, v, z, y, known = d.vocabulary, d.r, d.c, d.v, d.z, d.y, d.known
    n_known = np.maximum(known.sum(axis=0), 1)
    n, k = y.shape
    f = len(vocabulary)
    params = [np.zeros((f, k)), np.zeros((z.shape[1], k))]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    for step in range(1, settings.iterations + 1):
        tw, dw = params
        logit = z @ dw
        for j in range(k):
            logit[:, j] += np.bincount(r, weights=v * tw[c, j], minlength=n)
        p = 1.0 / (1.0 + np.exp(-logit))
        g = np.where(known, p - y, 0.0) / n_known  # mean cross-entropy gradient per model
        g_tw = np.empty((f, k))
        for j in range(k):
            g_tw[:, j] = np.bincount(c, weights=v * g[r, j], minlength=f)
        g_dw = z.T @ g
        grads = [g_tw + l2 * tw, g_dw + l2 * np.vstack([0 * dw[:1], dw[1:]])]
        lr = settings.learning_rate
        for p_, g_, a, b in zip(params, grads, m1, m2, strict=True):
            a *= b1
            a += (1 - b1) * g_
            b *= b2
            b += (1 - b2) * g_**2
            p_ -= lr * (a / (1 - b1**step)) / (np.sqrt(b / (1 - b2**step)) + eps)
    return _Fit(vocabulary, params[0], params[1], d.mean, d.scale)


def _predict(fit: _Fit, feats: Features, rows: np.ndarray) -> np.ndarray:
    """Predicted scores (rows, models) of a fit, as :meth:`LearnedRouter.predict` gives."""
    term_sets = [feats.term_sets[i] for i in rows.tolist()]
    r, c, v = _csr(term_sets, fit.vocabulary)
    logit = ((feats.dense[rows] - fit.mean) / fit.scale) @ fit.dense_w
    for j in range(logit.shape[1]):
        logit[:, j] += np.bincount(r, weights=v * fit.term_w[c, j], minlength=len(rows))
    return 1.0 / (1.0 + np.exp(-logit))


def predictions(
    feats: Features,
    data: EvalSet,
    train: np.ndarray,
    test: np.ndarray,
    settings: TrainSettings,
    l2: float | None = None,
) -> np.ndarray:
    """Predicted scores on ``test`` rows of a model fitted on ``train`` rows."""
    return _predict(_fit(feats, data.scores, train, settings, l2), feats, test)


def out_of_fold(
    feats: Features,
    data: EvalSet,
    rows: np.ndarray,
    settings: TrainSettings,
    seed: int = 0,
    penalties: Sequence[float] | None = None,
) -> dict[float, np.ndarray]:
    """Predictions for ``rows``, each from a model that did not train on it, per penalty
    (default: the settings' fixed one, else :data:`DEFAULT_L2`). The folds are the same
    for every penalty, and each fold's features are read once."""
    if penalties is None:
        penalties = (DEFAULT_L2 if settings.l2 is None else settings.l2,)
    order = np.random.default_rng(seed).permutation(len(rows))
    out = {l2: np.empty((len(rows), len(data.models))) for l2 in penalties}
    for part in np.array_split(order, settings.folds):
        rest = np.setdiff1d(order, part)
        design = _design(feats, data.scores, rows[rest], settings)
        for l2 in penalties:
            out[l2][part] = _predict(_solve(design, settings, l2), feats, rows[part])
    return out


@dataclass(frozen=True)
class Penalty:
    """The penalty chosen for a training set, what each one tried routed (out-of-fold APGR
    of the dearest model over the cheapest; None: not measurable), and its out-of-fold
    predictions, which the operating point reuses."""

    l2: float
    tried: dict[float, float | None]
    oof: np.ndarray


def choose_penalty(
    feats: Features,
    data: EvalSet,
    rows: np.ndarray,
    cheapest: int,
    dearest: int,
    settings: TrainSettings,
    seed: int = 0,
) -> Penalty:
    """The penalty of ``settings.l2_grid`` whose out-of-fold predictions on ``rows`` have
    the lowest cross-entropy against the outcomes (the settings' fixed ``l2`` when it has
    one; ties: the weaker penalty). Cross-entropy, not APGR: a penalty that shrinks every
    prediction to the base rates can rank prompts as well, but its score differences no
    longer mean points, and the policy's gap is in points. The APGR of the dearest model
    over the cheapest is reported for each penalty tried."""
    grid = settings.l2_grid if settings.l2 is None else (settings.l2,)
    oofs = out_of_fold(feats, data, rows, settings, seed, grid)
    scores = data.scores[rows]
    loss = {l2: _cross_entropy(oof, scores) for l2, oof in oofs.items()}
    tried = {l2: _routing_apgr(oof, scores, cheapest, dearest) for l2, oof in oofs.items()}
    known = [l2 for l2, v in loss.items() if v is not None]
    if not known:
        l2 = DEFAULT_L2 if DEFAULT_L2 in oofs else grid[0]
        return Penalty(l2, tried, oofs[l2])
    chosen = min(known, key=lambda l2: (loss[l2], l2))
    return Penalty(chosen, tried, oofs[chosen])


def _cross_entropy(predicted: np.ndarray, scores: np.ndarray) -> float | None:
    """Mean cross-entropy of predictions against the known scores in [0, 1]."""
    known = np.isfinite(scores)
    if not known.any():
        return None
    y = np.clip(scores[known], 0.0, 1.0)
    p = np.clip(predicted[known], 1e-12, 1 - 1e-12)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def _routing_apgr(
    predicted: np.ndarray, scores: np.ndarray, cheapest: int, dearest: int
) -> float | None:
    """APGR of sending the rows the predictions favour most to ``dearest`` (rows with both
    outcomes); None when the two models score the same on them."""
    both = np.isfinite(scores[:, [cheapest, dearest]]).all(axis=1)
    if both.sum() < 2:
        return None
    strong, weak = scores[both, dearest], scores[both, cheapest]
    qs, qw = float(strong.mean()), float(weak.mean())
    if qs == qw:
        return None
    advantage = predicted[both, dearest] - predicted[both, cheapest]
    return apgr(advantage_curve(advantage, strong, weak), qw, qs)


# -- the choice and the operating point -----------------------------------------------------
def value_choice(predicted: np.ndarray, cheapest_first: Sequence[int], gap: float) -> np.ndarray:
    """Per row, the cheapest model whose prediction is within ``gap`` (a score fraction) of
    the row's best prediction: the rule :meth:`Router.decide` applies to learned scores."""
    best = np.nanmax(predicted[:, list(cheapest_first)], axis=1)
    choice = np.full(len(predicted), cheapest_first[-1])
    done = np.zeros(len(predicted), dtype=bool)
    for col in cheapest_first:
        ok = ~done & (predicted[:, col] >= best - gap - 1e-12)
        choice[ok] = col
        done |= ok
    return choice


def operating_gap(
    predicted: np.ndarray,
    scores: np.ndarray,
    cheapest_first: Sequence[int],
    target: float,
    reference: int,
    confidence: float = 0.9,
) -> dict[str, Any]:
    """The largest gap (the cheapest operating point) at which the value rule keeps
    ``target`` of the ``reference`` model's quality on these (out-of-fold) rows, with a
    confidence margin; see the module docstring.

    Returns the gap in points, the share of rows not sent to the cheapest model, the
    quality retained on these rows, and gap None when no gap reaches the target.
    """
    both = np.isfinite(scores[:, list(cheapest_first)]).all(axis=1)
    predicted, scores = predicted[both], scores[both]
    n = len(scores)
    if n < 2:
        raise InvalidRequestError("an operating point needs two or more rows with every outcome")
    z = NormalDist().inv_cdf(confidence)
    ref = scores[:, reference]
    cols = list(cheapest_first)
    spread = np.abs(predicted[:, cols, None] - predicted[:, None, cols]).ravel()
    gaps = np.unique(np.concatenate([[0.0], np.quantile(spread, np.linspace(0, 1, 1001))]))
    rows = np.arange(n)
    for gap in gaps[::-1]:
        choice = value_choice(predicted, cols, float(gap))
        got = scores[rows, choice]
        diff = got - target * ref
        margin = z * diff.std(ddof=1) * np.sqrt(2.0 / n)
        if diff.mean() - margin >= 0:
            return {
                "target": target,
                "gap_points": round(float(gap) * 100, 4),
                "strong_share": float((choice != cols[0]).mean()),
                "quality_retained": float(got.mean() / ref.mean()) if ref.mean() else None,
                "confidence": confidence,
                "rows": n,
            }
    return {"target": target, "gap_points": None, "confidence": confidence, "rows": n}


def train(
    rows: Sequence[WorkloadRow],
    data: EvalSet,
    cheapest_first: Sequence[str],
    *,
    train_rows: np.ndarray | None = None,
    target: float | None = None,
    reference: str | None = None,
    confidence: float = 0.9,
    settings: TrainSettings | None = None,
    feats: Features | None = None,
    name: str = "learned",
) -> LearnedRouter:
    """A :class:`LearnedRouter` fitted on ``train_rows`` (default: all rows).

    With ``target`` (e.g. 0.95), the gap that keeps that share of the ``reference`` model's
    quality (default: the dearest) is chosen out of fold and stored as the operating point.
    """
    settings = settings or TrainSettings()
    if not data.has_outcomes:
        raise InvalidRequestError("training needs outcome rows (per-model scores)")
    feats = feats or featurize(rows, data)
    idx = np.arange(len(data)) if train_rows is None else np.asarray(train_rows)
    order = [data.column(m) for m in cheapest_first]
    meta: dict[str, Any] = {
        "name": name,
        "rows": int(len(idx)),
        "data_sha256": rows_hash([rows[i] for i in idx.tolist()]),
        "cheapest_first": list(cheapest_first),
        "settings": {**settings.__dict__, "l2_grid": list(settings.l2_grid)},
    }
    gap_points = None
    penalty = choose_penalty(feats, data, idx, order[0], order[-1], settings)
    meta["settings"] = {**meta["settings"], "l2": penalty.l2}
    meta["l2_out_of_fold_apgr"] = {str(k): v for k, v in penalty.tried.items()}
    if target is not None:
        ref = data.column(reference or cheapest_first[-1])
        point = operating_gap(penalty.oof, data.scores[idx], order, target, ref, confidence)
        meta["operating_point"] = point
        gap_points = point["gap_points"]
    fit = _fit(feats, data.scores, idx, settings, penalty.l2)
    vocab = fit.vocabulary
    router = LearnedRouter(
        models=data.models,
        term_weights=tuple(
            {t: float(w) for t, w in zip(vocab, fit.term_w[:, j].tolist(), strict=True) if w}
            for j in range(len(data.models))
        ),
        structure_weights=tuple(tuple(fit.dense_w[:, j].tolist()) for j in range(len(data.models))),
        mean=tuple(fit.mean.tolist()),
        scale=tuple(fit.scale.tolist()),
        gap_points=gap_points,
        meta=meta,
    )
    return LearnedRouter.from_json(router.to_json())  # as its artifact reads: same rounding
