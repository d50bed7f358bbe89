"""The routing decision: policy presets, constraints, and ``decide()``. No I/O here.

``decide(catalog, policy, request)`` is a pure function. It scores every catalog model on
the benchmark of the call's primary tag, removes the ones a constraint rules out (saying
why), and picks per the policy preset:

* ``value`` (default): the cheapest model whose score is within ``quality_gap`` points of
  the best eligible score (the quality floor);
* ``quality``: the highest score, the cheaper one on a tie;
* ``cheapest``: the cheapest model that has a score.

The rest of the eligible models, in the preset's order, are the fallbacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from routedllm.core.catalog import Catalog, ModelCard
from routedllm.core.errors import NoEligibleModelError, UnknownModelError
from routedllm.core.requests import Request
from routedllm.core.tags import (
    TAG_NAMES,
    VOCABULARY,
    infer_tags,
    message_features,
    primary_tag,
    validate_tags,
)

Preset = Literal["value", "quality", "cheapest"]
PRESETS: tuple[str, ...] = ("value", "quality", "cheapest")
POLICY_KEY = "routedllm_policy"
"""Call kwarg or config-metadata key overriding the policy (a Policy or a dict of fields)."""
Capability = Literal["image_input", "tools", "structured_output"]
_M = TypeVar("_M", bound=BaseModel)


class Policy(BaseModel):
    """How to trade quality for cost, and the constraints every choice must meet.

    Quality knobs are in benchmark points: ``quality_gap=2`` accepts any model within two
    points of the best eligible one on the call's benchmark. ``tag_gaps`` sets the gap per
    tag; by default extraction and classification (format-following work, where general
    reasoning scores overstate what is needed) accept a 4-point gap.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Preset = "value"
    quality_gap: float = Field(default=2.0, ge=0, le=100)
    tag_gaps: dict[str, float] = Field(
        default_factory=lambda: {"extraction": 4.0, "classification": 4.0}
    )
    require: frozenset[Capability] = frozenset()
    allowed_models: frozenset[str] | None = None
    denied_models: frozenset[str] = frozenset()
    allowed_origins: frozenset[str] | None = None
    max_cost_usd: float | None = Field(default=None, ge=0, description="Per-call estimate cap.")
    allow_unpriced: bool = False
    allow_unscored: bool = False
    allow_unknown_capabilities: bool = False
    default_output_tokens: int = Field(default=512, gt=0)
    cjk_share: float = Field(default=0.3, gt=0, le=1)
    long_context_tokens: int = Field(default=32_000, gt=0)

    @field_validator("tag_gaps")
    @classmethod
    def _known_tags(cls, value: dict[str, float]) -> dict[str, float]:
        for tag, gap in value.items():
            if tag not in VOCABULARY:
                raise ValueError(
                    f"tag_gaps: unknown tag {tag!r}; known tags: {', '.join(TAG_NAMES)}"
                )
            if not 0 <= gap <= 100:
                raise ValueError(f"tag_gaps[{tag!r}] must be within 0-100 points, got {gap}")
        return value

    def gap_for(self, tag: str) -> float:
        """The quality gap, in benchmark points, that applies to ``tag``."""
        return self.tag_gaps.get(tag, self.quality_gap)


class Rejection(BaseModel):
    """A model the decision did not use, and why."""

    model_config = ConfigDict(frozen=True)

    model: str
    code: str
    reason: str


class Decision(BaseModel):
    """The routing decision for one call, with everything needed to explain it."""

    model_config = ConfigDict(frozen=True)

    model: str
    name: str
    fallbacks: tuple[str, ...]
    tags: tuple[str, ...]
    given_tags: tuple[str, ...]
    inferred_tags: tuple[str, ...]
    primary_tag: str
    benchmark: str
    score: float | None
    best_score: float | None
    quality_floor: float | None
    policy: str
    estimated_input_tokens: int
    expected_output_tokens: int
    estimated_cost_usd: float | None
    binding_constraint: str
    catalog_as_of: str | None
    required_capabilities: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    note: str | None = None

    @property
    def ranking(self) -> tuple[str, ...]:
        """The chosen model, then the fallbacks: the order an adapter tries them."""
        return (self.model, *self.fallbacks)

    def summary(self) -> dict[str, Any]:
        """A compact JSON-ready mapping (what adapters attach to responses)."""
        return {
            "model": self.model,
            "fallbacks": list(self.fallbacks),
            "tags": list(self.tags),
            "policy": self.policy,
            "benchmark": self.benchmark,
            "score": self.score,
            "estimated_cost_usd": self.estimated_cost_usd,
            "binding_constraint": self.binding_constraint,
        }

    def render(self) -> str:
        """A readable table of the decision and every rejected candidate."""
        cost = "unknown" if self.estimated_cost_usd is None else f"${self.estimated_cost_usd:.6f}"
        rows = [
            ("model", f"{self.model} ({self.name})"),
            ("policy", self.policy),
            ("tags", ", ".join(self.tags) + (" (inferred)" if self.inferred_tags else "")),
            (
                "benchmark",
                f"{self.benchmark} = {self.score}"
                + (
                    f" (best {self.best_score}, floor {self.quality_floor})"
                    if self.quality_floor is not None
                    else ""
                ),
            ),
            (
                "estimated cost",
                f"{cost} for ~{self.estimated_input_tokens} in / "
                f"{self.expected_output_tokens} out tokens",
            ),
            ("binding constraint", self.binding_constraint),
            ("fallbacks", ", ".join(self.fallbacks) or "none"),
            ("prices as of", self.catalog_as_of or "unknown"),
        ]
        if self.note:
            rows.append(("note", self.note))
        width = max(len(k) for k, _ in rows)
        out = [f"{k.ljust(width)}  {v}" for k, v in rows]
        if self.rejected:
            mw = max(len(r.model) for r in self.rejected)
            out.append("rejected:")
            out.extend(f"  {r.model.ljust(mw)}  {r.reason}" for r in self.rejected)
        return "\n".join(out)


# -- the decision ---------------------------------------------------------------------------
@dataclass(slots=True)
class _Candidate:
    id: str
    name: str
    score: float | None
    pin: float | None  # USD per token
    pout: float | None
    window: int | None


@dataclass(slots=True)
class _Plan:
    """What a (catalog, policy, benchmark, capabilities) fixes, computed once."""

    candidates: list[_Candidate] = field(default_factory=list)
    static_rejected: list[Rejection] = field(default_factory=list)
    # priced models rejected for a fixed reason, for the binding constraint
    static_priced: list[tuple[_Candidate, str]] = field(default_factory=list)
    # quality-floor rejections, reused across calls: (model, best, gap) -> Rejection
    floor_rejections: dict[tuple[str, float, float], Rejection] = field(default_factory=dict)


def decide(catalog: Catalog, policy: Policy, request: Request) -> Decision:
    """Pick the model for one call. Pure: same inputs, same decision; no I/O."""
    given = validate_tags(request.tags) if request.tags else ()
    features = message_features(request.messages, scan=not given)
    inferred = (
        ()
        if given
        else infer_tags(
            features, cjk_share=policy.cjk_share, long_context_tokens=policy.long_context_tokens
        )
    )
    tags = given or inferred
    primary = tags[0] if len(tags) == 1 else primary_tag(tags)
    benchmark = VOCABULARY[primary].benchmark
    required = policy.require | request.require if request.require else policy.require
    for tag in tags:
        needs = VOCABULARY[tag].requires
        if needs:
            required = required | needs
    long_context = "long-context" in tags
    plan = _plan(catalog, policy, benchmark, required)

    in_tokens = features.input_tokens if request.input_tokens is None else request.input_tokens
    out_tokens = request.max_output_tokens or policy.default_output_tokens
    need = in_tokens + out_tokens
    max_cost = policy.max_cost_usd
    rejected = list(plan.static_rejected)
    priced: list[tuple[float, str, str]] = []  # (cost, model, code): rejected per call
    eligible: list[tuple[_Candidate, float | None]] = []
    for cand in plan.candidates:
        pin, pout = cand.pin, cand.pout
        cost = None if pin is None or pout is None else in_tokens * pin + out_tokens * pout
        window = cand.window
        if window is not None and need > window:
            code, reason = "context_window", f"needs ~{need} tokens, context window is {window}"
        elif window is None and long_context:
            code, reason = "context_window", "context window unknown and the call is long-context"
        elif max_cost is not None and (cost is None or cost > max_cost):
            code, reason = (
                "max_cost",
                (
                    "estimated cost unknown"
                    if cost is None
                    else f"estimated ${cost:.6f} above the per-call maximum ${max_cost:.6f}"
                ),
            )
        else:
            eligible.append((cand, cost))
            continue
        rejected.append(_trusted(Rejection, {"model": cand.id, "code": code, "reason": reason}))
        if cost is not None:
            priced.append((cost, cand.id, code))

    best: float | None = None
    floor: float | None = None
    for c, _ in eligible:
        if c.score is not None and (best is None or c.score > best):
            best = c.score
    if best is not None and policy.preset == "value":
        gap = policy.tag_gaps.get(primary, policy.quality_gap)
        floor = round(best - gap, 6)
        kept = []
        floor_rejections = plan.floor_rejections
        for c, cost in eligible:
            if c.score is not None and c.score < floor:
                rejected.append(
                    floor_rejections.get((c.id, best, gap))
                    or _floor_rejection(plan, c, floor, best, gap, benchmark)
                )
                if cost is not None:
                    priced.append((cost, c.id, "quality_floor"))
            else:
                kept.append((c, cost))
        eligible = kept
    if request.unavailable:
        kept = []
        for c, cost in eligible:
            why = request.unavailable.get(c.id)
            if why is None:
                kept.append((c, cost))
            else:
                rejected.append(
                    _trusted(Rejection, {"model": c.id, "code": "unavailable", "reason": why})
                )
        eligible = kept
    if not eligible:
        raise NoEligibleModelError(tags, [(r.model, r.reason) for r in rejected])

    ranked = _rank(policy.preset, eligible)
    note = None
    if request.sticky_model is not None:
        ranked, note = _stick(ranked, request.sticky_model, rejected)
    chosen, chosen_cost = ranked[0]
    binding = _binding(policy.preset, chosen_cost, priced, plan, in_tokens, out_tokens)
    if note is None and request.sticky_model is not None:
        binding = "sticky: a follow-up turn keeps its conversation's model"
    return _trusted(
        Decision,
        dict(
            model=chosen.id,
            name=chosen.name,
            fallbacks=tuple(c.id for c, _ in ranked[1:]),
            tags=tags,
            given_tags=given,
            inferred_tags=inferred,
            primary_tag=primary,
            benchmark=benchmark,
            score=chosen.score,
            best_score=best,
            quality_floor=floor,
            policy=policy.preset,
            estimated_input_tokens=in_tokens,
            expected_output_tokens=out_tokens,
            estimated_cost_usd=chosen_cost,
            binding_constraint=binding,
            catalog_as_of=catalog.info.as_of,
            required_capabilities=tuple(sorted(required)),
            rejected=tuple(rejected),
            note=note,
        ),
    )


def _stick(
    ranked: list[tuple[_Candidate, float | None]], sticky: str, rejected: list[Rejection]
) -> tuple[list[tuple[_Candidate, float | None]], str | None]:
    """Move the conversation's model to the front, or say why it cannot stay."""
    for i, item in enumerate(ranked):
        if item[0].id == sticky:
            return [item, *ranked[:i], *ranked[i + 1 :]], None
    why = next((r.reason for r in rejected if r.model == sticky), "not in the catalog")
    return ranked, f"conversation model {sticky} not kept: {why}"


def _floor_rejection(
    plan: _Plan, c: _Candidate, floor: float, best: float, gap: float, benchmark: str
) -> Rejection:
    key = (c.id, best, gap)
    rejection = plan.floor_rejections.get(key)
    if rejection is None:
        rejection = plan.floor_rejections[key] = _trusted(
            Rejection,
            {
                "model": c.id,
                "code": "quality_floor",
                "reason": f"{benchmark} {c.score} below the floor {floor} "
                f"(best {best} - gap {gap})",
            },
        )
    return rejection


def _trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """Build a pydantic model from values this module computed, skipping validation.

    ``decide`` runs on every call; ``model_construct`` costs more than the decision itself.
    """
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def _rank(
    preset: str, eligible: list[tuple[_Candidate, float | None]]
) -> list[tuple[_Candidate, float | None]]:
    """Order eligible models: scored before unscored, priced before unpriced."""
    return sorted(eligible, key=_by_quality if preset == "quality" else _by_cost)


def _by_quality(item: tuple[_Candidate, float | None]) -> tuple[Any, ...]:
    c, cost = item
    return (c.score is None, -(c.score or 0.0), cost is None, _INF if cost is None else cost, c.id)


def _by_cost(item: tuple[_Candidate, float | None]) -> tuple[Any, ...]:
    c, cost = item
    return (c.score is None, cost is None, _INF if cost is None else cost, -(c.score or 0.0), c.id)


_INF = float("inf")
_BINDING_TEXT = {
    "quality_floor": "quality floor: cheaper models score too low",
    "capability": "required capability: cheaper models lack it or it is unknown",
    "context_window": "context window: cheaper models are too small or unknown",
    "max_cost": "per-call cost maximum",
    "origin": "allowed origins: cheaper models come from elsewhere",
    "not_allowed": "allowed models list",
    "denied": "denied models list",
    "unscored": "no benchmark score: cheaper models are unscored (allow_unscored to use them)",
}


def _binding(
    preset: str,
    chosen_cost: float | None,
    priced: list[tuple[float, str, str]],
    plan: _Plan,
    in_tokens: int,
    out_tokens: int,
) -> str:
    """The constraint that kept the call off the cheapest model cheaper than the choice.

    Looks at the models rejected for this call (``priced``) and the priced models the plan
    rejects for a fixed reason, whose cost is worked out here only.
    """
    best = None
    if chosen_cost is not None:
        for item in priced:
            if item[0] < chosen_cost and (best is None or item < best):
                best = item
        for c, code in plan.static_priced:
            cost = in_tokens * c.pin + out_tokens * c.pout  # type: ignore[operator]
            if cost < chosen_cost and (best is None or (cost, c.id, code) < best):
                best = (cost, c.id, code)
    if best is not None:
        return _BINDING_TEXT.get(best[2], best[2])
    return _NOT_BOUND.get(preset, "none: the cheapest eligible model")


_NOT_BOUND = {"quality": "highest score", "cheapest": "cheapest scored model"}


_MAX_PLANS = 1024


def _plan(catalog: Catalog, policy: Policy, benchmark: str, required: frozenset[str]) -> _Plan:
    """Static eligibility for (policy constraints, benchmark, capabilities), memoised on the
    catalog: it depends only on the policy fields in the key, so copies of a policy share it."""
    key = (
        benchmark,
        required,
        policy.denied_models,
        policy.allowed_models,
        policy.allowed_origins,
        policy.allow_unpriced,
        policy.allow_unscored,
        policy.allow_unknown_capabilities,
    )
    plans = catalog.memo
    cached = plans.get(key)
    if cached is not None:
        return cached
    for mid in policy.allowed_models or ():
        if mid not in catalog:
            raise UnknownModelError(mid, catalog.ids)
    for mid in policy.denied_models:
        if mid not in catalog:
            raise UnknownModelError(mid, catalog.ids)
    plan = _Plan()
    for card in catalog:
        reason = _static_reason(card, policy, benchmark, required)
        pin, pout = card.input_usd_per_mtok, card.output_usd_per_mtok
        cand = _Candidate(
            card.id,
            card.name,
            card.score(benchmark),
            None if pin is None else pin / 1e6,
            None if pout is None else pout / 1e6,
            card.context_window,
        )
        if reason is None:
            plan.candidates.append(cand)
        else:
            plan.static_rejected.append(Rejection(model=card.id, code=reason[0], reason=reason[1]))
            if card.priced:
                plan.static_priced.append((cand, reason[0]))
    if len(plans) >= _MAX_PLANS:  # many distinct per-call constraint sets: start over
        plans.clear()
    plans[key] = plan
    return plan


def _static_reason(
    card: ModelCard, policy: Policy, benchmark: str, required: Iterable[str]
) -> tuple[str, str] | None:
    if card.id in policy.denied_models:
        return "denied", "in denied_models"
    if policy.allowed_models is not None and card.id not in policy.allowed_models:
        return "not_allowed", "not in allowed_models"
    if policy.allowed_origins is not None and card.origin not in policy.allowed_origins:
        where = card.origin or "unknown"
        return "origin", f"origin {where} not in allowed origins {sorted(policy.allowed_origins)}"
    for cap in sorted(required):
        has = getattr(card.capabilities, cap)
        if has is False:
            return "capability", f"no {cap}"
        if has is None and not policy.allow_unknown_capabilities:
            return (
                "capability",
                f"{cap} unknown in the catalog (set it in an override file, "
                "or allow_unknown_capabilities)",
            )
    if not card.priced and not policy.allow_unpriced:
        missing = "input" if card.input_usd_per_mtok is None else "output"
        return "unpriced", f"no {missing} price in the catalog (allow_unpriced to use it)"
    if card.score(benchmark) is None and not policy.allow_unscored:
        return "unscored", f"no {benchmark} score in the catalog (allow_unscored to use it)"
    return None
