"""RoutedCall: the one typed record of a routed call.

Built once, in the attempt loop, from timings measured first-hand: the decision's summary,
one :class:`~routedllm.records.schema.CallRecord` per attempt sent upstream, and the models
passed over without a request. Its JSON form is ``response_metadata["routedllm"]`` and
``RoutedCall.model_validate(response_metadata["routedllm"])`` gives it back; routedllm's
errors carry it as ``.call``; handlers deliver its attempts to sinks as they are.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
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


# -- streams the caller may stop reading ------------------------------------------------------
# A caller that stops reading a stream (``break`` out of ``stream()``, ``aclose()``) ends
# the LangChain run with ``on_llm_error(GeneratorExit)``, an exception that is not the one
# the chat model's own generator saw (or, async, before that generator is closed), so it
# carries no record. The chat model registers each stream that reached the caller under
# its run id; whichever comes first, the generator's close or a handler, records the
# attempt stopped, and every later reader gets the same record. Closed streams are kept
# for handlers (the most recent :data:`KEEP_CLOSED`); one that ends on its own is dropped.
KEEP_CLOSED = 1024
_open_streams: OrderedDict[str, _OpenStream] = OrderedDict()
_open_lock = threading.Lock()


class _OpenStream:
    """A stream that reached the caller: how to record it stopped, and that record."""

    __slots__ = ("close", "closed")

    def __init__(self, close: Callable[[], RoutedCall]) -> None:
        self.close = close
        self.closed: RoutedCall | None = None


def stream_opened(run_id: str, close: Callable[[], RoutedCall]) -> None:
    """A routed stream reached the caller: ``close()`` records it stopped by the caller."""
    with _open_lock:
        _open_streams[run_id] = _OpenStream(close)


def stream_ended(run_id: str) -> None:
    """The stream ended or broke on its own: nothing to record as stopped."""
    with _open_lock:
        _open_streams.pop(run_id, None)


def close_stream(run_id: str) -> RoutedCall | None:
    """The record of the run's routed stream, closed as stopped by the caller (recorded
    once, the same record for every reader); None when the run has no routed stream."""
    with _open_lock:
        stream = _open_streams.get(run_id)
        if stream is None:
            return None
        if stream.closed is None:
            stream.closed = closed = stream.close()
            stream.close = lambda: closed  # the attempt loop is no longer held
            _open_streams.move_to_end(run_id)
            _trim()
        return stream.closed


def _trim() -> None:
    """Forget the oldest closed streams beyond :data:`KEEP_CLOSED` (open ones stay)."""
    closed = [key for key, stream in _open_streams.items() if stream.closed is not None]
    for key in closed[: max(0, len(closed) - KEEP_CLOSED)]:
        del _open_streams[key]
