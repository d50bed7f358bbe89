"""The learned router: per-model score predictions from a prompt, and its JSON artifact.

A :class:`LearnedRouter` holds one logistic model per outcome model: a weight per
vocabulary term and per structure feature (:mod:`routedllm.learning.features`). Its
prediction for a call is each model's expected score in [0, 1] (the share of prompts like
this one the model got right, or its judge score / 10). Applying it is pure Python: a
tokenisation, a set, one dict lookup per term in an index shared by all models and a list
read per term and model, so the base install loads and applies it with no numpy, no
network and no embedding service.

:meth:`LearnedRouter.score` is the hook :class:`routedllm.core.decision.Router` calls: it
returns the predictions in benchmark points (x100), which replace the catalog's scores of
the models the router knows, and the quality gap chosen at training for a target (or None:
the policy's gap applies). The value rule then picks, as always, the cheapest eligible
model within the gap of the best predicted score.

The artifact (``routedllm train ... -o router.json``) is versioned JSON: the format name and
version, the models, the vocabulary with its weights, the structure weights with their
standardisation, the training data's SHA-256 and row count, the settings, and the chosen
operating point with what it reached out of fold.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from routedllm.core import files
from routedllm.core.errors import InvalidRequestError
from routedllm.core.requests import Request
from routedllm.core.tags import message_features
from routedllm.learning.features import (
    STRUCTURE,
    Term,
    ask_features,
    ask_text,
    call_structure,
    parse_term,
    term_name,
)

FORMAT = "routedllm-learned-router"
VERSION = 1


@dataclass(frozen=True, eq=False)
class LearnedRouter:
    """Trained weights, applied per call; see the module docstring.

    ``term_weights[k]`` maps a term to model ``k``'s weight; ``structure_weights[k]`` has
    one weight per :data:`~routedllm.learning.features.STRUCTURE` entry, applied to the
    standardised features (``(x - mean) / scale``; the bias is not standardised).
    """

    models: tuple[str, ...]
    term_weights: tuple[dict[Term, float], ...]
    structure_weights: tuple[tuple[float, ...], ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    gap_points: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or "learned")

    def predict(
        self, messages: Sequence[Any], tags: Sequence[str], input_tokens: int | None = None
    ) -> dict[str, float]:
        """Each model's predicted score in [0, 1] for a call with these messages and tags."""
        text = ask_text(messages)
        if input_tokens is None:
            input_tokens = message_features(messages, scan=False).input_tokens
        found, of_text = ask_features(text)
        return self.predict_parts(found, call_structure(of_text, tags, input_tokens, len(messages)))

    def predict_parts(self, term_set: Set[Term], dense: Sequence[float]) -> dict[str, float]:
        """Predictions from already computed features (the distinct terms, the structure).

        Per model: the logistic of (the sum of its known terms' weights) / sqrt(distinct
        terms) + its structure weights . the standardised structure features.
        """
        norm = 1.0 / math.sqrt(len(term_set)) if term_set else 0.0
        index, per_model = self._table
        found = list(filter(None, map(index.get, term_set)))
        out = {}
        for model, weights, (folded, offset) in zip(
            self.models, per_model, self._folded, strict=True
        ):
            logit = sum(map(weights.__getitem__, found)) * norm
            logit += sum(map(operator.mul, folded, dense)) - offset
            out[model] = _sigmoid(logit)
        return out

    @cached_property
    def _table(self) -> tuple[dict[Term, int], tuple[list[float], ...]]:
        """Every term some model weighs, numbered from 1, and by number each model's weight
        (0: none): one lookup per term then serves every model, and adding 0 changes no sum."""
        index: dict[Term, int] = {}
        for weights in self.term_weights:
            for t in weights:
                index.setdefault(t, len(index) + 1)
        per_model = tuple([0.0, *(w.get(t, 0.0) for t in index)] for w in self.term_weights)
        return index, per_model

    @cached_property
    def _folded(self) -> tuple[tuple[tuple[float, ...], float], ...]:
        """Structure weights with the standardisation folded in: w . (x - m) / s equals
        (w / s) . x - (w / s) . m, so a prediction skips standardising."""
        out = []
        for weights in self.structure_weights:
            folded = tuple(w / s for w, s in zip(weights, self.scale, strict=True))
            out.append((folded, sum(f * m for f, m in zip(folded, self.mean, strict=True))))
        return tuple(out)

    def score(
        self, request: Request, tags: tuple[str, ...], input_tokens: int
    ) -> tuple[dict[str, float], float | None]:
        """The :class:`~routedllm.core.decision.Router` hook: predicted scores in points,
        and the gap of the trained operating point (None: the policy's gap)."""
        predicted = self.predict(request.messages, tags, input_tokens)
        return {m: round(100 * p, 4) for m, p in predicted.items()}, self.gap_points

    # -- the artifact ---------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "models": list(self.models),
            "gap_points": self.gap_points,
            "meta": self.meta,
            "structure": {
                "names": list(STRUCTURE),
                "mean": [round(v, 6) for v in self.mean],
                # six decimals, or six digits for a tiny spread (it divides: never 0)
                "scale": [round(v, 6) if v >= 1e-3 else float(f"{v:.6g}") for v in self.scale],
                "weights": {
                    m: [round(v, 6) for v in w]
                    for m, w in zip(self.models, self.structure_weights, strict=True)
                },
            },
            "terms": {
                m: dict(sorted((term_name(t), round(v, 5)) for t, v in w.items()))
                for m, w in zip(self.models, self.term_weights, strict=True)
            },
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, data: Mapping[str, Any], origin: str = "learned router") -> LearnedRouter:
        """Read an artifact; a wrong format, version or shape raises naming ``origin``, as
        does a weight that is not a finite number (a router that loads always predicts)."""
        if not isinstance(data, Mapping):
            raise InvalidRequestError(
                f"{origin}: not a learned router (a JSON {type(data).__name__}, not the "
                "object routedllm train writes)"
            )
        if data.get("format") != FORMAT:
            raise InvalidRequestError(
                f"{origin}: not a learned router (format {data.get('format')!r}, expected "
                f"{FORMAT!r}); write one with: routedllm train ROWS -o router.json"
            )
        if data.get("version") != VERSION:
            raise InvalidRequestError(
                f"{origin}: learned router version {data.get('version')!r}; this routedllm "
                f"reads version {VERSION}: train it again with this version"
            )
        try:
            models = tuple(data["models"])
            st = data["structure"]
            if tuple(st["names"]) != STRUCTURE:
                raise InvalidRequestError(
                    f"{origin}: its structure features ({', '.join(st['names'])}) are not this "
                    "routedllm's: train it again with this version"
                )
            gap = data.get("gap_points")
            router = cls(
                models=models,
                term_weights=tuple(
                    {parse_term(str(t)): _finite(v) for t, v in data["terms"][m].items()}
                    for m in models
                ),
                structure_weights=tuple(
                    _vector(st["weights"][m], f"weights of {m}") for m in models
                ),
                mean=_vector(st["mean"], "mean"),
                scale=_vector(st["scale"], "scale"),
                gap_points=None if gap is None else _finite(gap),
                meta=dict(data.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidRequestError(f"{origin}: malformed learned router ({exc!r})") from None
        if (
            not models
            or len(set(models)) != len(models)
            or not all(isinstance(m, str) and m for m in models)
        ):
            raise InvalidRequestError(
                f"{origin}: malformed learned router (models {list(models)!r}: give distinct ids)"
            )
        if not all(v > 0 for v in router.scale):
            raise InvalidRequestError(
                f"{origin}: malformed learned router (a structure scale that is not positive)"
            )
        return router

    @classmethod
    def load(cls, path: str | Path) -> LearnedRouter:
        """Read an artifact written by :meth:`save` (``routedllm train``)."""
        origin = files.shown(path)
        try:
            text = files.decode(files.read_bytes(path, "learned router", _MAX_BYTES), origin, "it")
            data = files.parse_json(text, origin)  # NaN and Infinity refused
        except files.FileProblem as exc:
            raise InvalidRequestError(str(exc)) from None
        return cls.from_json(data, origin)


def load_learned(value: LearnedRouter | str | Path | None) -> LearnedRouter | None:
    """A learned router from itself, the path of its JSON, or None (none)."""
    if value is None or isinstance(value, LearnedRouter):
        return value
    return LearnedRouter.load(value)


_MAX_BYTES = 256 * 2**20
"""The largest artifact read: 20,000 terms per model is ~0.5 MB a model."""


def _finite(value: Any) -> float:
    """A weight as a float; a bool, a string or a value that is not finite raises."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return float(value)


def _vector(values: Any, name: str) -> tuple[float, ...]:
    """One value per structure feature (:data:`STRUCTURE`), each finite."""
    out = tuple(_finite(v) for v in values)
    if len(out) != len(STRUCTURE):
        raise ValueError(f"{name} has {len(out)} values, expected {len(STRUCTURE)}")
    return out


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
