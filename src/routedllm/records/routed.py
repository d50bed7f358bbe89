"""RoutedCall: the one typed record of a routed call.

Built once, in the attempt loop, from timings measured first-hand: the decision's summary,
one :class:`~routedllm.records.schema.CallRecord` per attempt sent upstream, and the models
passed over without a request. Its JSON form is ``response_metadata["routedllm"]`` and
``RoutedCall.model_validate(response_metadata["routedllm"])`` gives it back; routedllm's
errors carry it as ``.call``; handlers deliver its attempts to sinks as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from routedllm.core.errors import RoutedLLMError
from routedllm.records.schema import OK, CallRecord


class DecisionSummary(BaseModel):
    """What the routing decision chose and why, in a few fields (the full
    :class:`~routedllm.core.decision.Decision` explains every rejected model)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    model: str
    fallbacks: tuple[str, ...] = ()
    benchmark: str | None = None
    score: float | None = None
    estimated_cost_usd: float | None = None
    binding_constraint: str | None = None
    inferred_tags: bool = False
    required_capabilities: tuple[str, ...] = ()
    assumed_capabilities: tuple[str, ...] = ()
    note: str | None = None


class Skip(BaseModel):
    """A model passed over without a request: its circuit is open, the budget refused the
    attempt, or its context window is too small after a context-length error."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    model: str
    reason: str = Field(description="CircuitOpen, BudgetExceeded, ContextWindow or PoolTimeout.")
    detail: str | None = None


class Sticky(BaseModel):
    """What sticky routing did for a conversation's turn."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    conversation_id: str
    previous_model: str | None = None
    kept: bool | None = None
    note: str | None = None


class RoutedCall(BaseModel):
    """One routed call: the decision, every attempt, what it cost and how long it took.

    ``model`` is the catalog model that answered (None when none did); ``cost_usd`` adds up
    the attempts' costs (None when one that was sent has an unknown cost); ``latency_s``
    and ``ttft_s`` are the whole call's, from the start of routing, while each attempt
    carries its own.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    model: str | None
    requested_model: str
    served_model: str | None = None
    pinned: bool = False
    tags: tuple[str, ...] = ()
    ignored_tags: tuple[str, ...] = ()
    policy: str | None = None
    decision: DecisionSummary
    unavailable: dict[str, str] = Field(
        default_factory=dict, description="Models held out of the decision, with the reason."
    )
    attempts: tuple[CallRecord, ...] = ()
    skipped: tuple[Skip, ...] = ()
    sticky: Sticky | None = None
    streamed: bool = False
    cache_hit: bool = False
    cost_usd: float | None = None
    estimated_cost_usd: float | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    catalog_as_of: str | None = None

    @property
    def answer(self) -> CallRecord | None:
        """The attempt that answered, if one did."""
        return next((a for a in self.attempts if a.outcome == OK), None)

    @property
    def failures(self) -> tuple[CallRecord, ...]:
        """The attempts that were sent and failed, in order."""
        return tuple(a for a in self.attempts if a.outcome != OK)

    def to_metadata(self) -> dict[str, Any]:
        """The JSON-ready form carried in ``response_metadata["routedllm"]``."""
        return self.model_dump(mode="json")

    @classmethod
    def from_metadata(cls, value: Any) -> RoutedCall | None:
        """The record in a response's metadata (a RoutedCall or its JSON form), else None."""
        if isinstance(value, RoutedCall):
            return value
        if isinstance(value, Mapping) and "decision" in value and "requested_model" in value:
            return cls.model_validate(value)
        return None


def total_cost(attempts: tuple[CallRecord, ...]) -> float | None:
    """The call's cost: the sum over attempts; unknown when any attempt's cost is unknown."""
    total = 0.0
    for attempt in attempts:
        if attempt.cost_usd is None:
            return None
        total += attempt.cost_usd
    return total


def attach(exc: BaseException, call: RoutedCall) -> None:
    """Give an exception leaving a routed call its record: ``.call`` on routedllm's errors,
    ``.routedllm_call`` on others (a caller error keeps its openai type)."""
    try:
        if isinstance(exc, RoutedLLMError):
            exc.call = call
        else:
            exc.routedllm_call = call  # type: ignore[attr-defined]
    except AttributeError:  # exceptions with __slots__
        pass


def call_of(exc: BaseException) -> RoutedCall | None:
    """The record an exception that left a routed call carries, if any (see :func:`attach`)."""
    if isinstance(exc, RoutedLLMError):
        return exc.call
    found = getattr(exc, "routedllm_call", None)
    return found if isinstance(found, RoutedCall) else None
