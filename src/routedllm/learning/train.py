"""Training the learned router from outcome rows (needs numpy: the ``eval`` extra).

One L2-regularised logistic regression per outcome model, on the row's features
(:mod:`routedllm.learning.features`) against its score in [0, 1] (a fractional score is a
soft label), fitted by full-batch Adam on a sparse term matrix held as CSR arrays. Rows
without an outcome for a model do not train that model.

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
from routedllm.learning.features import STRUCTURE, Term, ask_text, structure, term_name, terms
from routedllm.learning.model import LearnedRouter
from routedllm.workload import WorkloadRow


@dataclass(frozen=True)
class TrainSettings:
    """Model size and fit. The defaults were chosen on MMLU splits 0 and 1 (see
    docs/learned-router.md): other values within 10x moved APGR by less than 0.03."""

    min_df: int = 3  # a term must occur in this many training rows to enter the vocabulary
    max_terms: int = 20_000  # the most frequent terms kept
    l2: float = 1e-4  # weight penalty per training row
    iterations: int = 300
    learning_rate: float = 0.05
    folds: int = 5


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


def _fit(feats: Features, scores: np.ndarray, rows: np.ndarray, settings: TrainSettings) -> _Fit:
    """Logistic weights per model (columns of ``scores``) on the training ``rows``."""
    term_sets = [feats.term_sets[i] for i in rows.tolist()]
    vocabulary = _vocabulary(term_sets, settings)
    r, c, v = _csr(term_sets, vocabulary)
    dense = feats.dense[rows]
    mean = dense.mean(axis=0)
    scale = dense.std(axis=0)
    mean[0], scale[0] = 0.0, 1.0  # the bias
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (dense - mean) / scale
    y = scores[rows]
    known = np.isfinite(y)
    y = np.where(known, np.clip(y, 0.0, 1.0), 0.0)
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
        grads = [g_tw + settings.l2 * tw, g_dw + settings.l2 * np.vstack([0 * dw[:1], dw[1:]])]
        lr = settings.learning_rate
        for p_, g_, a, b in zip(params, grads, m1, m2, strict=True):
            a *= b1
            a += (1 - b1) * g_
            b *= b2
            b += (1 - b2) * g_**2
            p_ -= lr * (a / (1 - b1**step)) / (np.sqrt(b / (1 - b2**step)) + eps)
    return _Fit(vocabulary, params[0], params[1], mean, scale)


def _predict(fit: _Fit, feats: Features, rows: np.ndarray) -> np.ndarray:
    """Predicted scores (rows, models) of a fit, as :meth:`LearnedRouter.predict` gives."""
    term_sets = [feats.term_sets[i] for i in rows.tolist()]
    r, c, v = _csr(term_sets, fit.vocabulary)
    logit = ((feats.dense[rows] - fit.mean) / fit.scale) @ fit.dense_w
    for j in range(logit.shape[1]):
        logit[:, j] += np.bincount(r, weights=v * fit.term_w[c, j], minlength=len(rows))
    return 1.0 / (1.0 + np.exp(-logit))


def predictions(
    feats: Features, data: EvalSet, train: np.ndarray, test: np.ndarray, settings: TrainSettings
) -> np.ndarray:
    """Predicted scores on ``test`` rows of a model fitted on ``train`` rows."""
    return _predict(_fit(feats, data.scores, train, settings), feats, test)


def out_of_fold(
    feats: Features, data: EvalSet, rows: np.ndarray, settings: TrainSettings, seed: int = 0
) -> np.ndarray:
    """Predictions for ``rows``, each from a model that did not train on it."""
    order = np.random.default_rng(seed).permutation(len(rows))
    out = np.empty((len(rows), len(data.models)))
    for part in np.array_split(order, settings.folds):
        rest = np.setdiff1d(order, part)
        out[part] = predictions(feats, data, rows[rest], rows[part], settings)
    return out


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
        "settings": settings.__dict__,
    }
    gap_points = None
    if target is not None:
        ref = data.column(reference or cheapest_first[-1])
        oof = out_of_fold(feats, data, idx, settings)
        point = operating_gap(oof, data.scores[idx], order, target, ref, confidence)
        meta["operating_point"] = point
        gap_points = point["gap_points"]
    fit = _fit(feats, data.scores, idx, settings)
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
