"""The routing decision: policy presets, constraints, and ``decide()``. No I/O here.

``decide(catalog, policy, request)`` is a pure function. It scores every catalog model on
the benchmark of the call's primary tag, removes the ones a constraint rules out (saying
why), and picks per the policy preset:

* ``value`` (default): the cheapest model whose score is within ``quality_gap`` points of
  the best eligible score (the quality floor);
* ``quality``: the highest score, the cheaper one on a tie;
* ``cheapest``: the cheapest model that has a score.

The rest of the eligible models, in the preset's order, are the fallbacks. A call pinned
to a model (``Request.model``) is that model alone, still explained and priced.

:class:`Router` makes the same decisions and keeps, as its own state, what a catalog and
policy fix across calls: hold one to decide many calls quickly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from dataclasses import replace as _replace
from typing import Any, Literal, Protocol

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


class Policy(BaseModel):
    """How to trade quality for cost, and the constraints every choice must meet.

    Quality knobs are in benchmark points: ``quality_gap=2`` accepts any model within two
    points of the best eligible one on the call's benchmark. ``tag_gaps`` sets the gap per
    tag; by default extraction and classification (format-following work, where general
    reasoning scores overstate what is needed) accept a 4-point gap.
    """

    # defer_build: the validator is built on first use, not at import (`import routedllm`
    # stays light; see docs/benchmarks.md); likewise Rejection and Decision.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

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
    """Assume every capability the catalog leaves unknown, image input included."""
    strict_capabilities: bool = False
    """Refuse models whose tool or JSON support is unknown (by default they may be chosen,
    after the models known to have it, and the decision says the support is assumed)."""
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

    model_config = ConfigDict(frozen=True, defer_build=True)

    model: str
    code: str
    reason: str


class Decision(BaseModel):
    """The routing decision for one call, with everything needed to explain it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

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
    assumed_capabilities: tuple[str, ...] = ()
    """Required capabilities the catalog leaves unknown for the chosen model (assumed)."""
    rejected: tuple[Rejection, ...]
    note: str | None = None
    pinned: bool = False
    """True when the caller chose the model (``Request.model``): no routing, no fallbacks."""

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
ASSUMABLE = frozenset({"tools", "structured_output", "json_schema"})
"""Capabilities a model may be assumed to have when the catalog does not say: a wrong guess
costs one 400, which moves the call to the next model and is remembered."""
PINNED = "pinned: the caller chose the model"
"""The binding constraint of a pinned call (``Request.model`` set)."""
STICKY = "sticky: a follow-up turn keeps its conversation's model"


def decide(catalog: Catalog, policy: Policy, request: Request) -> Decision:
    """Pick the model for one call. Pure: same inputs, same decision; no I/O, no state kept.

    Works out everything from scratch; to decide many calls on one catalog and policy, hold
    a :class:`Router`, which keeps that work between calls and decides the same.
    """
    return Router(catalog, policy).decide(request)


@dataclass(frozen=True, slots=True)
class _Candidate:
    id: str
    name: str
    score: float | None
    pin: float | None  # USD per token
    pout: float | None
    window: int | None
    assumed: tuple[str, ...] = ()  # required capabilities the catalog leaves unknown


@dataclass(frozen=True, slots=True)
class _Plan:
    """What (catalog, policy, benchmark, required capabilities) fixes, whatever the call."""

    candidates: tuple[_Candidate, ...]
    static_rejected: tuple[Rejection, ...]
    # priced models rejected for a fixed reason, for the binding constraint
    static_priced: tuple[tuple[_Candidate, str], ...]
    required: tuple[str, ...]  # the required capabilities, sorted, as a Decision shows them


class Scorer(Protocol):
    """Per-call scores that replace the catalog's (a learned router, :mod:`routedllm.learning`).

    ``score`` returns, for the call, a score in benchmark points per model it knows (other
    models keep their catalog score) and the quality gap to apply (None: the policy's).
    """

    def score(
        self, request: Request, tags: tuple[str, ...], input_tokens: int
    ) -> tuple[Mapping[str, float], float | None]: ...


class Router:
    """Decides calls on one catalog and policy; the fast path when there are many calls.

    ``Router(catalog, policy).decide(request)`` is the decision :func:`decide` makes. What a
    (benchmark, required capabilities) pair fixes (the models that pass the static
    constraints, per-token prices, the rejections that never change) is worked out on first
    use and kept here, with the quality-floor rejections; both caches are bounded. The
    catalog and the policy are immutable and never written to, so nothing goes stale.
    Safe to share across threads: at worst two threads work out the same entry.
    """

    __slots__ = ("catalog", "policy", "scorer", "_plans", "_floor_rejections")

    max_plans: int = 64
    """Plans kept; (benchmark, capability set) pairs number 24 with the shipped vocabulary."""
    max_floor_rejections: int = 4096

    def __init__(
        self, catalog: Catalog, policy: Policy | None = None, scorer: Scorer | None = None
    ) -> None:
        policy = Policy() if policy is None else policy
        self.scorer = scorer  # learned per-call scores (see Scorer); None: catalog scores
        for mid in (*(policy.allowed_models or ()), *policy.denied_models):
            if mid not in catalog:
                raise UnknownModelError(mid, catalog.ids)
        self.catalog = catalog
        self.policy = policy
        self._plans: dict[tuple[str, frozenset[str]], _Plan] = {}
        # (benchmark, model, its score, best score, gap) -> the Rejection saying so
        self._floor_rejections: dict[tuple[str, str, float | None, float, float], Rejection] = {}

    def __repr__(self) -> str:
        return f"Router({self.catalog!r}, preset={self.policy.preset!r})"

    def decide(self, request: Request) -> Decision:
        """Pick the model for one call (a pinned ``request.model`` is that model alone)."""
        policy = self.policy
        given = validate_tags(request.tags) if request.tags else ()
        features = message_features(request.messages, scan=not given)
        inferred = (
            ()
            if given
            else infer_tags(
                features,
                cjk_share=policy.cjk_share,
                long_context_tokens=policy.long_context_tokens,
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
        in_tokens = features.input_tokens if request.input_tokens is None else request.input_tokens
        out_tokens = request.max_output_tokens or policy.default_output_tokens
        if request.model is not None:
            return self._pinned(
                request.model,
                (tags, given, inferred, primary, benchmark),
                required,
                in_tokens,
                out_tokens,
            )

        plan = self._plans.get((benchmark, required)) or self._plan(benchmark, required)
        long_context = "long-context" in tags
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
                code, reason = (
                    "context_window",
                    "context window unknown and the call is long-context",
                )
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
            rejected.append(Rejection(model=cand.id, code=code, reason=reason))
            if cost is not None:
                priced.append((cost, cand.id, code))

        if request.unavailable:  # before the floor: it is the best of what can answer now
            kept = []
            for c, cost in eligible:
                why = request.unavailable.get(c.id)
                if why is None:
                    kept.append((c, cost))
                else:
                    rejected.append(Rejection(model=c.id, code="unavailable", reason=why))
            eligible = kept
        gap = policy.tag_gaps.get(primary, policy.quality_gap)
        if self.scorer is not None:
            eligible, gap = _rescored(self.scorer, request, tags, in_tokens, eligible, gap)
        best: float | None = None
        floor: float | None = None
        for c, _ in eligible:
            if c.score is not None and (best is None or c.score > best):
                best = c.score
        if best is not None and policy.preset == "value":
            floor = round(best - gap, 6)
            kept = []
            for c, cost in eligible:
                if c.score is not None and c.score < floor:
                    rejected.append(
                        self._floor_rejections.get((benchmark, c.id, c.score, best, gap))
                        or self._floor_rejection(benchmark, c, floor, best, gap)
                    )
                    if cost is not None:
                        priced.append((cost, c.id, "quality_floor"))
                else:
                    kept.append((c, cost))
            eligible = kept
        if not eligible:
            raise NoEligibleModelError(tags, [(r.model, r.reason) for r in rejected])

        ranked = _rank(policy.preset, eligible)
        note = None
        if request.sticky_model is not None:
            ranked, note = _stick(ranked, request.sticky_model, rejected)
        chosen, chosen_cost = ranked[0]
        binding = _binding(policy.preset, chosen_cost, priced, plan, in_tokens, out_tokens)
        if (
            chosen_cost is not None
            and not chosen.assumed
            and any(c.assumed and cost is not None and cost < chosen_cost for c, cost in ranked)
        ):
            binding = _BINDING_TEXT["assumed"]
        if note is None and request.sticky_model is not None:
            binding = STICKY
        if chosen.assumed and note is None:
            note = (
                f"assumed: the catalog does not say whether {chosen.id} supports "
                f"{', '.join(chosen.assumed)}; no model known to support it was eligible "
                "(a gateway 400 saying it does not moves the call on)"
            )
        return Decision(
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
            policy=policy.preset if self.scorer is None else f"{policy.preset}+learned",
            estimated_input_tokens=in_tokens,
            expected_output_tokens=out_tokens,
            estimated_cost_usd=chosen_cost,
            binding_constraint=binding,
            catalog_as_of=self.catalog.info.as_of,
            required_capabilities=plan.required,
            assumed_capabilities=chosen.assumed,
            rejected=tuple(rejected),
            note=note,
        )

    def _pinned(
        self,
        name: str,
        labels: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str, str],
        required: frozenset[str],
        in_tokens: int,
        out_tokens: int,
    ) -> Decision:
        """The decision for a call pinned to ``name``: that model alone, priced on its card.

        The caller's choice stands over the policy's preferences and constraints, except a
        capability the catalog says the model lacks: that request is known to fail.
        """
        tags, given, inferred, primary, benchmark = labels
        card = self.catalog.resolve(name)
        score = cost = None
        note = None
        if card is None:
            note = f"{name} is not in the catalog, so its score and cost are unknown"
        else:
            lacking = [cap for cap in sorted(required) if getattr(card.capabilities, cap) is False]
            if lacking:
                raise NoEligibleModelError(
                    tags,
                    [(name, f"pinned, but has no {cap}") for cap in lacking],
                    hint=f"the call needs {', '.join(lacking)}: pin a model that has it, "
                    "or leave the model unset to route the call",
                )
            score = card.score(benchmark)
            pin, pout = card.input_usd_per_mtok, card.output_usd_per_mtok
            if pin is None or pout is None:
                note = f"{card.id} has no price in the catalog, so its cost is unknown"
            else:  # the same arithmetic as a routed call, so both price a model alike
                cost = in_tokens * (pin / 1e6) + out_tokens * (pout / 1e6)
        return Decision(
            model=name,
            name=name if card is None else card.name,
            fallbacks=(),
            tags=tags,
            given_tags=given,
            inferred_tags=inferred,
            primary_tag=primary,
            benchmark=benchmark,
            score=score,
            best_score=None,
            quality_floor=None,
            policy=self.policy.preset,
            estimated_input_tokens=in_tokens,
            expected_output_tokens=out_tokens,
            estimated_cost_usd=cost,
            binding_constraint=PINNED,
            catalog_as_of=self.catalog.info.as_of,
            required_capabilities=tuple(sorted(required)),
            rejected=(),
            note=note,
            pinned=True,
        )

    def _plan(self, benchmark: str, required: frozenset[str]) -> _Plan:
        """Static eligibility for (benchmark, capabilities) under this router's policy."""
        policy = self.policy
        candidates: list[_Candidate] = []
        static_rejected: list[Rejection] = []
        static_priced: list[tuple[_Candidate, str]] = []
        for card in self.catalog:
            reason = _static_reason(card, policy, benchmark, required)
            pin, pout = card.input_usd_per_mtok, card.output_usd_per_mtok
            cand = _Candidate(
                card.id,
                card.name,
                card.score(benchmark),
                None if pin is None else pin / 1e6,
                None if pout is None else pout / 1e6,
                card.context_window,
                tuple(c for c in sorted(required) if getattr(card.capabilities, c) is None),
            )
            if reason is None:
                candidates.append(cand)
            else:
                static_rejected.append(Rejection(model=card.id, code=reason[0], reason=reason[1]))
                if card.priced:
                    static_priced.append((cand, reason[0]))
        plan = _Plan(
            tuple(candidates),
            tuple(static_rejected),
            tuple(static_priced),
            tuple(sorted(required)),
        )
        if len(self._plans) >= self.max_plans:
            self._plans.clear()
        self._plans[(benchmark, required)] = plan
        return plan

    def _floor_rejection(
        self, benchmark: str, c: _Candidate, floor: float, best: float, gap: float
    ) -> Rejection:
        rejection = Rejection(
            model=c.id,
            code="quality_floor",
            reason=f"{benchmark} {c.score} below the floor {floor} (best {best} - gap {gap})",
        )
        if len(self._floor_rejections) >= self.max_floor_rejections:
            self._floor_rejections.clear()
        self._floor_rejections[(benchmark, c.id, c.score, best, gap)] = rejection
        return rejection


def _rescored(
    scorer: Scorer,
    request: Request,
    tags: tuple[str, ...],
    in_tokens: int,
    eligible: list[tuple[_Candidate, float | None]],
    gap: float,
) -> tuple[list[tuple[_Candidate, float | None]], float]:
    """The learned-router hook: the scorer's per-call scores (points) replace the catalog's
    for the models it knows, and its trained gap, when it has one, replaces the policy's."""
    scores, learned_gap = scorer.score(request, tags, in_tokens)
    out = [
        (c if c.id not in scores else _replace(c, score=scores[c.id]), cost) for c, cost in eligible
    ]
    return out, gap if learned_gap is None else learned_gap


def _stick(
    ranked: list[tuple[_Candidate, float | None]], sticky: str, rejected: list[Rejection]
) -> tuple[list[tuple[_Candidate, float | None]], str | None]:
    """Move the conversation's model to the front, or say why it cannot stay."""
    for i, item in enumerate(ranked):
        if item[0].id == sticky:
            return [item, *ranked[:i], *ranked[i + 1 :]], None
    why = next((r.reason for r in rejected if r.model == sticky), "not in the catalog")
    return ranked, f"conversation model {sticky} not kept: {why}"


def _rank(
    preset: str, eligible: list[tuple[_Candidate, float | None]]
) -> list[tuple[_Candidate, float | None]]:
    """Order eligible models: known capabilities before assumed ones, scored before
    unscored, priced before unpriced, then by the preset."""
    return sorted(eligible, key=_by_quality if preset == "quality" else _by_cost)


def _by_quality(item: tuple[_Candidate, float | None]) -> tuple[Any, ...]:
    c, cost = item
    return (
        bool(c.assumed),
        c.score is None,
        -(c.score or 0.0),
        cost is None,
        _INF if cost is None else cost,
        c.id,
    )


def _by_cost(item: tuple[_Candidate, float | None]) -> tuple[Any, ...]:
    c, cost = item
    return (
        bool(c.assumed),
        c.score is None,
        cost is None,
        _INF if cost is None else cost,
        -(c.score or 0.0),
        c.id,
    )


_INF = float("inf")
_BINDING_TEXT = {
    "quality_floor": "quality floor: cheaper models score too low",
    "capability": "required capability: cheaper models lack it or it is unknown",
    "assumed": "required capability: cheaper models' support is unknown (only assumed)",
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


def listed_reason(card: ModelCard, policy: Policy) -> tuple[str, str] | None:
    """Why the policy's model lists or origins keep ``card`` out (kind, text), or None."""
    if card.id in policy.denied_models:
        return "denied", "in denied_models"
    if policy.allowed_models is not None and card.id not in policy.allowed_models:
        return "not_allowed", "not in allowed_models"
    if policy.allowed_origins is not None and card.origin not in policy.allowed_origins:
        where = card.origin or "unknown"
        return "origin", f"origin {where} not in allowed origins {sorted(policy.allowed_origins)}"
    return None


def capability_reason(card: ModelCard, policy: Policy, capability: str) -> str | None:
    """Why ``card`` cannot serve ``capability`` under the policy, or None: known support,
    or unknown support the policy assumes (unknown is not "no")."""
    has = getattr(card.capabilities, capability)
    if has is False:
        return f"no {capability}"
    if has is None and not policy.allow_unknown_capabilities:
        if capability in ASSUMABLE and not policy.strict_capabilities:
            return None  # assumed, ranked after known support
        return (
            f"{capability} unknown in the catalog (set it in an override file, "
            "or allow_unknown_capabilities)"
        )
    return None


def _static_reason(
    card: ModelCard, policy: Policy, benchmark: str, required: Iterable[str]
) -> tuple[str, str] | None:
    listed = listed_reason(card, policy)
    if listed is not None:
        return listed
    for cap in sorted(required):
        why = capability_reason(card, policy, cap)
        if why is not None:
            return "capability", why
    if not card.priced and not policy.allow_unpriced:
        missing = "input" if card.input_usd_per_mtok is None else "output"
        return "unpriced", f"no {missing} price in the catalog (allow_unpriced to use it)"
    if card.score(benchmark) is None and not policy.allow_unscored:
        return "unscored", f"no {benchmark} score in the catalog (allow_unscored to use it)"
    return None
