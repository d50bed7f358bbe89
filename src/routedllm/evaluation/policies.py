"""Evaluation policies: what each one routes every row to, computed for all rows at once.

A policy's ``choose(data, space)`` returns a :class:`Choice`: one model position in the
:class:`~routedllm.evaluation.space.ModelSpace` per row, ``-1`` where no model was eligible.
Catalog routing runs :func:`routedllm.core.decision.decide` itself, once per distinct (tags,
input-size bucket, output-size bucket), since a decision depends on nothing else. Sizes are
rounded *up* to a geometric grid about 9% apart (1,234 tokens decide as 1,328), so a
context window or cost cap is never passed for a row it would reject; a row near such a
limit, or near a size where two models' costs cross, may be decided as its bucket's upper
edge. Costs stay exact per row.

Spec strings (``--policy``): ``value``, ``quality``, ``cheapest`` (presets; fields after a
colon, e.g. ``value:gap=4,max_cost=0.01``), ``sweep[:0,1,2,4]`` (the value preset over
quality gaps), ``always[:MODEL]`` (every model, or one), ``random[:seed=N]``, ``oracle``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from routedllm.core.decision import PRESETS, Policy, Request, Router
from routedllm.core.errors import InvalidRequestError, NoEligibleModelError
from routedllm.evaluation.dataset import EvalSet
from routedllm.evaluation.space import MEASURED, ModelSpace
from routedllm.evaluation.specs import number, spec_fields, spec_policy

DEFAULT_GAPS: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
_EXACT_UP_TO, _STEPS = 64, 8  # size buckets: exact up to 64 tokens, then 8 per doubling
_PLACEHOLDER = ({"role": "user", "content": "."},)  # sizes and tags are given explicitly


@dataclass(frozen=True)
class Choice:
    """Each row's model position (``-1``: none eligible) and why none was, per tag set."""

    model: np.ndarray
    why_none: dict[str, str] = field(default_factory=dict)


class EvalPolicy(Protocol):
    """What replay needs of a policy: a name, a kind, and a choice per row."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def default_output_tokens(self) -> int: ...

    def choose(self, data: EvalSet, space: ModelSpace) -> Choice: ...


# -- catalog routing ------------------------------------------------------------------------
def round_up_sizes(values: np.ndarray) -> np.ndarray:
    """Round token counts up to the next step of a geometric grid, 8 steps per doubling
    (about 9% apart); counts up to 64 stay exact (1,234 -> 1,328; 20 -> 20)."""
    v = np.maximum(np.asarray(values, dtype=np.int64), 1)
    big = v > _EXACT_UP_TO
    k = np.ceil(_STEPS * np.log2(np.where(big, v, _EXACT_UP_TO) / _EXACT_UP_TO) - 1e-9)
    grid = np.ceil(_EXACT_UP_TO * 2 ** (k / _STEPS)).astype(np.int64)
    grid = np.where(grid < v, np.ceil(_EXACT_UP_TO * 2 ** ((k + 1) / _STEPS)), grid)
    return np.where(big, grid, v).astype(np.int64)


def _decision_keys(data: EvalSet, default_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (tag set, input bucket, output bucket) keys and each row's key number.

    Pure in the dataset, so computed once per default output length and kept on it.
    """
    memo = data.memo.get(("decision_keys", default_out))
    if memo is not None:
        return memo
    ins = round_up_sizes(data.input_tokens)
    outs = round_up_sizes(np.where(data.output_tokens > 0, data.output_tokens, default_out))
    if ins.max() >= 2**31 or outs.max() >= 2**21:
        raise InvalidRequestError("a row is too large to replay (over 2**31 input tokens)")
    packed = (data.tag_index.astype(np.int64) * 2**21 + outs) * 2**31 + ins
    keys, inverse = np.unique(packed, return_inverse=True)
    data.memo[("decision_keys", default_out)] = keys, inverse.reshape(-1)
    return keys, inverse.reshape(-1)


def _unpack(key: int) -> tuple[int, int, int]:
    rest, ins = divmod(int(key), 2**31)
    tag, outs = divmod(rest, 2**21)
    return tag, ins, outs


@dataclass
class Routed:
    """A :class:`~routedllm.core.decision.Policy` routed by ``decide`` over the catalog."""

    name: str
    policy: Policy
    kind: str = "preset"

    @property
    def default_output_tokens(self) -> int:
        return self.policy.default_output_tokens

    def decisions(self, data: EvalSet, space: ModelSpace) -> tuple[list[Any], np.ndarray, dict]:
        """The decision (or None) per distinct key, each row's key, and why-none notes."""
        _check_inference(self.policy, data)
        keys, inverse = _decision_keys(data, self.policy.default_output_tokens)
        out: list[Any] = []
        why: dict[str, str] = {}
        router = Router(space.catalog, self.policy)
        for key in keys.tolist():
            tag, ins, outs = _unpack(key)
            tags = data.tag_sets[tag]
            request = Request(
                messages=_PLACEHOLDER, tags=tags, max_output_tokens=outs, input_tokens=ins
            )
            try:
                out.append(router.decide(request))
            except NoEligibleModelError as exc:
                out.append(None)
                why.setdefault(",".join(tags), _first_reasons(exc))
        return out, inverse, why

    def choose(self, data: EvalSet, space: ModelSpace) -> Choice:
        decisions, inverse, why = self.decisions(data, space)
        table = np.asarray(
            [-1 if d is None else space.index(d.model) for d in decisions], dtype=np.int32
        )
        return Choice(table[inverse], why)


def _check_inference(policy: Policy, data: EvalSet) -> None:
    if (policy.cjk_share, policy.long_context_tokens) != data.inference and data.inferred.any():
        raise InvalidRequestError(
            "this policy infers tags with other thresholds than the dataset was read with; "
            "load the dataset with inference=<the policy> to replay it"
        )


def _first_reasons(exc: NoEligibleModelError) -> str:
    """Every rejection, those naming a limit of the model itself first."""
    told = [(m, r) for m, r in exc.rejected if r != "not in allowed_models"]
    rest = len(exc.rejected) - len(told)
    return "; ".join(f"{m}: {r}" for m, r in told or exc.rejected) + (
        f"; {rest} more not in allowed_models" if told and rest else ""
    )


# -- baselines and references -----------------------------------------------------------------
@dataclass
class Always:
    """Every row to one model (``always:MODEL``).

    Measuring outcomes, the row's outcome says how the model did. Expecting quality from
    the catalog, ``decide`` limited to the model checks each row first: a row the model
    cannot take (an image for a text-only model, too long for its window) counts as
    no eligible model, not as a served call.
    """

    model: str
    default_output_tokens: int = Policy().default_output_tokens
    kind: str = "always"

    @property
    def name(self) -> str:
        return f"always:{self.model}"

    def choose(self, data: EvalSet, space: ModelSpace) -> Choice:
        if space.quality_mode(data) != MEASURED and self.model in space.catalog:
            only = Policy(
                preset="quality",
                allowed_models=frozenset({self.model}),
                allow_unscored=True,
                allow_unpriced=True,
            )
            return Routed(self.name, only).choose(data, space)
        return Choice(np.full(len(data), space.index(self.model), dtype=np.int32))


@dataclass
class RandomPick:
    """A uniformly random model per row (seeded): among the models with an outcome on the
    row when the dataset has outcomes, else among the models ``decide`` finds eligible."""

    seed: int = 0
    policy: Policy = field(default_factory=lambda: Policy(preset="quality"))
    kind = "random"

    @property
    def name(self) -> str:
        return "random" if self.seed == 0 else f"random:seed={self.seed}"

    @property
    def default_output_tokens(self) -> int:
        return self.policy.default_output_tokens

    def choose(self, data: EvalSet, space: ModelSpace) -> Choice:
        rng = np.random.default_rng(self.seed)
        u = rng.random(len(data))
        if space.quality_mode(data) == MEASURED:
            mask = np.isfinite(data.scores)
            cols = _nth_true(mask, u)
            ids = np.asarray([space.index(m) for m in data.models], dtype=np.int32)
            return Choice(np.where(cols >= 0, ids[np.maximum(cols, 0)], -1).astype(np.int32))
        decisions, inverse, why = Routed("random", self.policy).decisions(data, space)
        width = max((len(d.ranking) for d in decisions if d is not None), default=1)
        table = np.full((len(decisions), width), -1, dtype=np.int32)
        for k, d in enumerate(decisions):
            if d is not None:
                table[k, : len(d.ranking)] = [space.index(m) for m in d.ranking]
        pick = _nth_true(table[inverse] >= 0, u)
        rows = np.arange(len(data))
        return Choice(np.where(pick >= 0, table[inverse][rows, np.maximum(pick, 0)], -1), why)


def _nth_true(mask: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per row, the column of the floor(u * count)-th True of ``mask``; -1 if none."""
    count = mask.sum(axis=1)
    nth = np.minimum((u * count).astype(np.int64), np.maximum(count - 1, 0))
    hit = np.cumsum(mask, axis=1) > nth[:, None]
    return np.where(count > 0, hit.argmax(axis=1), -1)


@dataclass
class Oracle:
    """Per row, the cheapest of the models with the best outcome: the upper bound.

    ``cheapest_first`` orders models by price when costs are unknown (a weak model before
    a strong one); otherwise the order is by each model's mean known cost per call.
    """

    cheapest_first: Sequence[str] = ()
    name: str = "oracle"
    kind: str = "oracle"
    default_output_tokens: int = Policy().default_output_tokens

    def choose(self, data: EvalSet, space: ModelSpace) -> Choice:
        if not data.has_outcomes:
            raise InvalidRequestError("the oracle needs outcome rows (per-model scores)")
        order = self._order(data, space)
        scores = data.scores[:, order]
        best = np.nanmax(np.where(np.isnan(scores), -np.inf, scores), axis=1)
        first = (scores == best[:, None]).argmax(axis=1)  # cheapest among the best
        ids = np.asarray([space.index(data.models[c]) for c in order], dtype=np.int32)
        model = np.where(np.isfinite(best), ids[first], -1).astype(np.int32)
        return Choice(model)

    def _order(self, data: EvalSet, space: ModelSpace) -> list[int]:
        rank = {m: i for i, m in enumerate(self.cheapest_first)}
        mean_cost = []
        for model in data.models:
            if model in rank:  # ranked: the rank alone orders it
                mean_cost.append(0.0)
                continue
            idx = np.full(len(data), space.index(model), dtype=np.int32)
            costs = space.cost(data, idx, self.default_output_tokens)
            known = costs[np.isfinite(costs)]
            mean_cost.append(float(known.mean()) if known.size else np.inf)
        return sorted(
            range(len(data.models)),
            key=lambda c: (rank.get(data.models[c], len(rank)), mean_cost[c], c),
        )


@dataclass
class ByGroup:
    """One model per calibration group (a learned router); unseen groups get ``default``."""

    name: str
    choices: Mapping[str, str]
    default: str
    kind: str = "calibrated"
    default_output_tokens: int = Policy().default_output_tokens

    def choose(self, data: EvalSet, space: ModelSpace) -> Choice:
        table = np.asarray(
            [space.index(self.choices.get(g, self.default)) for g in data.group_names],
            dtype=np.int32,
        )
        return Choice(table[data.group_index])


# -- spec strings ---------------------------------------------------------------------------
def parse_policies(
    spec: str, data: EvalSet, space: ModelSpace, allowed: frozenset[str] | None = None
) -> list[EvalPolicy]:
    """The policies a ``--policy`` spec names (one spec can name several, e.g. ``sweep``).

    ``allowed`` limits catalog routing to these models (outcome models, when measuring).
    """
    head, _, rest = spec.partition(":")
    head = head.strip()
    if head in PRESETS:
        return [Routed(spec, _policy(head, spec_fields(rest, spec), allowed, spec))]
    if head == "sweep":
        gaps = DEFAULT_GAPS if not rest else tuple(number(g, spec, "gap") for g in rest.split(","))
        return [
            Routed(f"value:gap={g:g}", _policy("value", {"quality_gap": g}, allowed, spec), "sweep")
            for g in gaps
        ]
    if head == "always":
        models = [rest] if rest else always_candidates(data, space)
        return [Always(space.ids[space.index(m)]) for m in models]
    if head == "random":
        fields = spec_fields(rest, spec, extra=("seed",))
        seed_text = fields.pop("seed", "0")
        seed = number(seed_text, spec, "seed")
        if seed < 0 or seed != int(seed):
            raise InvalidRequestError(
                f"policy {spec!r}: seed {seed_text!r} is not a whole number of 0 or more"
            )
        seed = int(seed)
        return [RandomPick(seed, _policy("quality", fields, allowed, spec))]
    if head == "oracle":
        return [Oracle()]
    raise InvalidRequestError(
        f"unknown policy {spec!r}; known: {', '.join(PRESETS)} (with :field=value,...), "
        "sweep[:gaps], always[:MODEL], random[:seed=N], oracle"
    )


def always_candidates(data: EvalSet, space: ModelSpace) -> list[str]:
    """Models worth an always-X line: those with outcomes, else the priced catalog models."""
    if space.quality_mode(data) == MEASURED:
        return list(data.models)
    return [card.id for card in space.catalog if card.priced]


def _policy(
    preset: str, fields: dict[str, Any], allowed: frozenset[str] | None, spec: str
) -> Policy:
    if allowed is not None:
        fields = {**fields, "allowed_models": allowed}
    return spec_policy(preset, fields, spec)
