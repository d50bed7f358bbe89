"""The attempt loop of one routed call, sans I/O.

An :class:`AttemptLoop` walks a decision's ranking: it says which model to try next (the
circuit breaker admits it, a context-length error rules out models no larger), what a
failure means (fall back, or raise), and records each attempt as a
:class:`~routedllm.records.schema.CallRecord` timed first-hand. It never sends anything
and never waits: an adapter drives it, sync or async, doing only the I/O (the HTTP call,
the budget's reserve and settle). So the LangChain chat model's four hooks and the
LiteLLM adapters share one set of rules, the way httpx drives sync and async auth flows
from one generator.

A driver's shape::

    loop = AttemptLoop(decision, catalog=..., breaker=...)
    while (attempt := loop.next()) is not None:
        hold = budget.reserve(attempt.estimate_usd, model=attempt.model)  # or areserve
        loop.begin(attempt, hold)            # (or loop.refused(attempt, exc) and continue)
        try:
            result = send(attempt.model)
        except Exception as exc:
            verdict = loop.failed(attempt, exc)
            settle(attempt)                  # loop.settlement(attempt): what to do
            if verdict.stop: raise loop.error_for(exc) from exc
            continue
        call = loop.answered(attempt, usage, served_model)
        settle(attempt)
        return result
    raise loop.exhausted()
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from routedllm.core.catalog import Catalog
from routedllm.core.decision import Decision
from routedllm.core.errors import (
    AllAttemptsFailedError,
    BudgetExceeded,
    InvalidRequestError,
    RoutedLLMError,
    StreamInterruptedError,
)
from routedllm.core.pricing import estimate_cost
from routedllm.records.routed import DecisionSummary, RoutedCall, Skip, Sticky, attach, total_cost
from routedllm.records.schema import (
    DEFAULT_BASELINE,
    NO_TOKENS,
    OK,
    CallRecord,
    Usage,
    build_record,
    error_text,
    served_name,
)
from routedllm.reliability.breaker import Admission, CircuitBreaker
from routedllm.reliability.budget import Reservation
from routedllm.reliability.failures import (
    classify,
    error_type,
    never_sent,
    retry_after_s,
    status_of,
    unsupported_capabilities,
)
from routedllm.reliability.secrets import Scrubber

CANCELLED = "cancelled"
"""The outcome of an attempt sent upstream and then cancelled by the caller."""
TRUNCATED = "truncated"
"""The outcome of a stream that ended cleanly but early: no finish_reason and no [DONE]."""
DEADLINE = "DeadlineExceeded"
"""The outcome of an attempt still running when its (or the call's) deadline passed."""
_ERROR_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a failed attempt means for the call: try the next model, try the same one
    again after ``delay_s`` (a rate limit), or stop and raise."""

    action: Literal["fallback", "retry", "raise"]
    reason: str
    delay_s: float = 0.0

    @property
    def stop(self) -> bool:
        return self.action == "raise"


class CapabilityMemory:
    """What the gateway said models do not support, remembered for the process: a 400
    "tools are not supported" for a model keeps later calls that need tools off it.

    Thread-safe; shared by the calls of one chat model (or one proxy handler).
    """

    def __init__(self) -> None:
        self._lacking: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def learn(self, model: str, capabilities: frozenset[str], why: str) -> None:
        with self._lock:
            known = self._lacking.setdefault(model, {})
            for cap in capabilities:
                known[cap] = why

    def lacking(self, model: str, required: frozenset[str] | tuple[str, ...]) -> str | None:
        """Why ``model`` cannot take a call needing ``required``; None when nothing says so."""
        known = self._lacking.get(model)
        if not known:
            return None
        for cap in sorted(required):
            if cap in known:
                return f"no {cap}: the gateway said so ({known[cap]})"
        return None

    def unavailable(self, required: frozenset[str]) -> dict[str, str]:
        """Models to keep out of a decision needing ``required`` (for ``Request.unavailable``)."""
        if not required or not self._lacking:
            return {}
        with self._lock:
            models = list(self._lacking)
        out = {}
        for model in models:
            why = self.lacking(model, required)
            if why is not None:
                out[model] = why
        return out


@dataclass(slots=True, eq=False)
class Attempt:
    """One try of one model: its claims (breaker admission, budget hold) and its timings."""

    model: str
    number: int
    estimate_usd: float | None
    admission: Admission | None = None
    hold: Reservation | None = None
    started: float = 0.0
    started_at: dt.datetime | None = None
    first_chunk: float | None = None
    reported: bool = False
    """The breaker was told the outcome (else its probe slot is freed when settled)."""
    charge: bool = False
    """Settle the hold (else release it): the request reached the upstream and was used."""
    cost_usd: float | None = None
    """What to settle; None charges the estimate (the actual cost is unknown)."""
    hold_usd: float | None = None
    """What the budget holds for the attempt: ``estimate_usd``, or an upper bound when the
    call's output is bounded (``max_tokens``) and its input bound is known."""
    deadline: float | None = None
    """When the attempt must have ended (the loop's clock): its own and the call's bound."""


@dataclass(slots=True)
class Conversation:
    """Sticky routing for one call: the conversation and the model of its last turn."""

    conversation_id: str
    previous_model: str | None


@dataclass(slots=True)
class AttemptLoop:
    """The attempts of one routed call; see the module docstring for the driving loop."""

    decision: Decision
    catalog: Catalog
    breaker: CircuitBreaker | None = None
    streamed: bool = False
    run_id: str | None = None
    parent_run_id: str | None = None
    baseline_model: str | None = DEFAULT_BASELINE
    secrets: Sequence[str] = ()
    conversation: Conversation | None = None
    ignored_tags: tuple[str, ...] = ()
    memory: CapabilityMemory | None = None
    """Where capability 400s are remembered (None: for this call only)."""
    rate_limit_retries: int = 1
    """Tries of the same model again after a 429, before falling back to the next one."""
    max_wait_s: float = 10.0
    """Longest the call waits, in all, on Retry-After before it falls back instead."""
    attempt_timeout_s: float | None = None
    """Total time one attempt may take: connect, first byte and the whole body or stream."""
    whole_stream: bool = True
    """``attempt_timeout_s`` bounds a stream to its end; False: only until its first chunk
    (the fallback window), after which only the call's deadline applies."""
    call_timeout_s: float | None = None
    """Total time the call may take from ``started``, waits and fallbacks included."""
    input_token_bound: int | None = None
    """An upper bound on the call's input tokens; with ``max_output_tokens`` it makes each
    attempt's budget hold an upper bound on its cost."""
    max_output_tokens: int | None = None
    started: float = field(default_factory=time.perf_counter)
    clock: Callable[[], float] = time.perf_counter

    records: list[CallRecord] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    refusal: BudgetExceeded | None = None
    last_error: BaseException | None = None
    served_model: str | None = None
    ttft_s: float | None = None
    waited_s: float = 0.0
    _next: int = 0
    _window_floor: int | None = None
    _context_exceeded: bool = False
    _again: str | None = None  # a rate-limited model to try once more
    _retried: dict[str, int] = field(default_factory=dict)
    _lacking: dict[str, str] = field(default_factory=dict)  # learned during this call
    _scrubber: Scrubber | None = None

    @property
    def scrubber(self) -> Scrubber:
        """Scrubs the call's secrets (``secrets``, in every encoding) from text and errors."""
        if self._scrubber is None:
            self._scrubber = Scrubber(self.secrets)
        return self._scrubber

    @property
    def call_deadline(self) -> float | None:
        """When the whole call must have ended (the loop's clock), or None."""
        return None if self.call_timeout_s is None else self.started + self.call_timeout_s

    def time_left(self, attempt: Attempt | None = None) -> float | None:
        """Seconds left before the attempt's deadline (or the call's); None: no deadline."""
        deadline = self.call_deadline if attempt is None else attempt.deadline
        return None if deadline is None else deadline - self.clock()

    def _out_of_time(self) -> bool:
        left = self.time_left()
        return left is not None and left <= 0

    # -- which model next -----------------------------------------------------------------
    def next(self) -> Attempt | None:
        """The next model to try, admitted by the breaker; None when the ranking is done
        or the call's deadline has passed (the models left are recorded as skipped)."""
        if self._out_of_time():
            self._skip_rest()
            return None
        if self._again is not None:  # the same model after its Retry-After
            model, self._again = self._again, None
            admission = None if self.breaker is None else self.breaker.admit(model)
            if admission is None or admission.refused is None:
                return self._attempt(model, admission)
        ranking = self.decision.ranking
        required = self.decision.required_capabilities
        while self._next < len(ranking):
            model = ranking[self._next]
            self._next += 1
            if self._context_exceeded and not self._larger(model):
                continue
            why = self._lacking.get(model) or (
                self.memory.lacking(model, required) if self.memory and required else None
            )
            if why is not None:
                self.skipped.append(Skip(model=model, reason="Unsupported", detail=why))
                continue
            admission = None if self.breaker is None else self.breaker.admit(model)
            if admission is not None and admission.refused is not None:
                self.skipped.append(
                    Skip(model=model, reason="CircuitOpen", detail=admission.refused)
                )
                continue
            return self._attempt(model, admission)
        return None

    def _attempt(self, model: str, admission: Admission | None) -> Attempt:
        estimate = self._estimate(model)
        return Attempt(
            model, len(self.records) + 1, estimate, admission, hold_usd=self._bound(model, estimate)
        )

    def _bound(self, model: str, estimate: float | None) -> float | None:
        """The attempt's cost at most, when input and output are both bounded; else the
        estimate."""
        card = self.catalog.resolve(model)
        if card is None or self.input_token_bound is None or self.max_output_tokens is None:
            return estimate
        bound = estimate_cost(card, self.input_token_bound, self.max_output_tokens)
        return estimate if bound is None else max(bound, estimate or 0.0)

    def _skip_rest(self) -> None:
        why = f"the call's deadline ({self.call_timeout_s:g}s) passed"
        if self._again is not None:
            self.skipped.append(Skip(model=self._again, reason="Deadline", detail=why))
            self._again = None
        for model in self.decision.ranking[self._next :]:
            self.skipped.append(Skip(model=model, reason="Deadline", detail=why))
        self._next = len(self.decision.ranking)

    def _rate_limit_delay(self, model: str, exc: BaseException) -> float | None:
        """How long to wait before trying a rate-limited model again; None: fall back now
        (no retries left, or a wait longer than the call may still wait)."""
        tries = self._retried.get(model, 0)
        if tries >= self.rate_limit_retries:
            return None
        asked = retry_after_s(exc)
        delay = min(0.5 * 2**tries, 4.0) if asked is None else asked
        if self.waited_s + delay > self.max_wait_s:
            return None
        left = self.time_left()
        if left is not None and delay >= left:
            return None
        self._retried[model] = tries + 1
        return delay

    def _larger(self, model: str) -> bool:
        """After a context-length error only a model with a larger known window may go."""
        card = self.catalog.resolve(model)
        window = None if card is None else card.context_window
        if window is not None and (self._window_floor is None or window > self._window_floor):
            return True
        floor = self._window_floor or "the failing model's"
        self.skipped.append(
            Skip(
                model=model,
                reason="ContextWindow",
                detail=f"context window {window or 'unknown'} not larger than {floor}",
            )
        )
        return False

    def _estimate(self, model: str) -> float | None:
        card = self.catalog.resolve(model)
        if card is None:
            return None
        d = self.decision
        return estimate_cost(card, d.estimated_input_tokens, d.expected_output_tokens)

    # -- before the request ---------------------------------------------------------------
    def refused(self, attempt: Attempt, exc: BudgetExceeded) -> None:
        """The budget would not hold the attempt's estimate: passed over, nothing sent."""
        self._abandon(attempt)
        self.refusal = exc
        self.skipped.append(Skip(model=attempt.model, reason="BudgetExceeded", detail=str(exc)))

    def begin(self, attempt: Attempt, hold: Reservation | None = None) -> None:
        """The request is about to go out: its clock starts now."""
        attempt.hold = hold
        attempt.started = self.clock()
        attempt.started_at = dt.datetime.now(dt.UTC)
        ends = [d for d in (self.call_deadline,) if d is not None]
        if self.attempt_timeout_s is not None:
            ends.append(attempt.started + self.attempt_timeout_s)
        attempt.deadline = min(ends) if ends else None

    def first_chunk(self, attempt: Attempt) -> None:
        """The first chunk the caller will see arrived: no fallback from here on, and the
        attempt is charged (its estimate, until usage says otherwise)."""
        now = self.clock()
        attempt.first_chunk = now
        attempt.charge = True
        if not self.whole_stream:
            attempt.deadline = self.call_deadline
        self.ttft_s = round(now - self.started, 6)

    # -- after the request ----------------------------------------------------------------
    def failed(self, attempt: Attempt, exc: BaseException) -> Verdict:
        """Record a failed attempt and say whether the call goes on."""
        self.last_error = exc
        kind = error_type(exc)
        if never_sent(exc):  # the local connection pool was full: nothing left the process
            self._abandon(attempt)
            text = self._error_text(exc, kind)
            self.skipped.append(Skip(model=attempt.model, reason="PoolTimeout", detail=text))
            return Verdict("fallback", "never sent")
        action = classify(exc)
        if action == "fallback" and self._past(attempt):
            kind = DEADLINE
        self._record_failure(attempt, exc, kind, NO_TOKENS)
        self._report(attempt, exc if action == "fallback" else None)
        if action == "capability":
            lacking = unsupported_capabilities(exc)
            self._lacking[attempt.model] = f"no {', '.join(sorted(lacking))}"
            if self.memory is not None:
                self.memory.learn(attempt.model, lacking, (self.records[-1].error or kind)[:200])
            return Verdict("fallback", f"the model does not support {', '.join(sorted(lacking))}")
        if status_of(exc) == 429:
            delay = self._rate_limit_delay(attempt.model, exc)
            if delay is not None:
                self._again = attempt.model
                self.waited_s += delay
                return Verdict("retry", "rate limited: the same model once more", delay)
        if action == "context":
            card = self.catalog.resolve(attempt.model)
            self._context_exceeded = True
            if card is not None and card.context_window is not None:
                self._window_floor = max(card.context_window, self._window_floor or 0)
            return Verdict("fallback", "context length exceeded")
        if action == "fatal":
            return Verdict("raise", "a caller error: another model would fail the same way")
        return Verdict("fallback", "an upstream fault")

    def unsendable(self, attempt: Attempt, exc: BaseException) -> InvalidRequestError:
        """The request could not be built (a value JSON cannot carry: bytes, NaN, a
        circular or too deeply nested schema): nothing was sent, so nothing is recorded
        or charged, and every model would fail the same way. The error to raise."""
        self._abandon(attempt)
        return InvalidRequestError(
            f"the request cannot be sent as JSON ({type(exc).__name__}: "
            f"{error_text(self.scrubber.text(str(exc)), None, limit=200)}): a message, tool "
            "schema or call argument holds bytes, NaN or infinity, a circular reference, "
            "or nesting too deep; nothing was sent"
        )

    def answered(
        self,
        attempt: Attempt,
        usage: Usage | None,
        served_model: str | None = None,
        usage_problem: str | None = None,
    ) -> RoutedCall:
        """Record the attempt that answered; returns the call's record. ``usage_problem``
        says why the usage the upstream reported was not believed (it is then unknown)."""
        self.served_model = served_name(served_model)
        record = self._record(
            attempt,
            usage=usage,
            outcome=OK,
            answering_model=served_model,
            ttft_s=self._attempt_ttft(attempt),
            usage_problem=usage_problem,
        )
        self._report(attempt, None)
        attempt.charge, attempt.cost_usd = True, record.cost_usd
        return self.call(answered=record)

    def broke(
        self, attempt: Attempt, exc: BaseException, usage: Usage | None
    ) -> StreamInterruptedError:
        """A stream failed after the caller saw its first chunk: no fallback. The attempt
        is charged what its usage says, else its estimate."""
        self.last_error = exc
        kind = error_type(exc)
        if classify(exc) == "fallback" and self._past(attempt):
            kind = DEADLINE
        self._record_failure(attempt, exc, kind, usage)
        self._report(attempt, exc if classify(exc) == "fallback" else None)
        attempt.charge = True
        attempt.cost_usd = self.records[-1].cost_usd
        error = StreamInterruptedError(attempt.model, self.call())
        return error

    def truncated(
        self, attempt: Attempt, usage: Usage | None, served_model: str | None = None
    ) -> StreamInterruptedError:
        """A stream that showed text ended cleanly but early (no finish_reason, no [DONE]):
        not an answer. Recorded as ``truncated``, charged its usage (else its estimate),
        and raised as :class:`StreamInterruptedError` (the caller has seen part of it)."""
        self.served_model = served_name(served_model)
        record = self._record(
            attempt,
            usage=usage,
            outcome=TRUNCATED,
            error="the stream ended without a finish_reason or [DONE]: the answer is cut short",
            answering_model=served_model,
            ttft_s=self._attempt_ttft(attempt),
        )
        self._report(attempt, MalformedStream(record.error or TRUNCATED))
        attempt.charge, attempt.cost_usd = True, record.cost_usd
        return StreamInterruptedError(attempt.model, self.call())

    def cancelled(self, attempt: Attempt, usage: Usage | None = None) -> RoutedCall:
        """The caller cancelled the attempt after it was sent: recorded, charged its
        usage (else its estimate), and the breaker's slot freed without a verdict."""
        record = self._record(
            attempt,
            usage=usage,
            outcome=CANCELLED,
            error="cancelled by the caller",
            ttft_s=self._attempt_ttft(attempt),  # a stream stopped after it started
        )
        self._abandon(attempt)
        attempt.charge, attempt.cost_usd = True, record.cost_usd
        return self.call()

    def settlement(self, attempt: Attempt) -> tuple[Literal["settle", "release"], float | None]:
        """What the driver does with the attempt's budget hold: settle it to an amount
        (None: its estimate) or release it. Frees a breaker slot left unreported."""
        self._abandon(attempt)
        if attempt.charge:
            return "settle", attempt.cost_usd
        return "release", None

    # -- the call's outcome ---------------------------------------------------------------
    def exhausted(self) -> RoutedLLMError:
        """The error when no model answered: the budget's refusal when nothing was sent,
        else :class:`AllAttemptsFailedError` naming every attempt."""
        call = self.call()
        if self.refusal is not None and not self.records:
            self.refusal.call = call
            return self.refusal
        return AllAttemptsFailedError(call)

    def error_for(self, exc: BaseException) -> BaseException:
        """A caller error leaves as it came (its openai type), carrying the call's record."""
        attach(exc, self.call())
        return exc

    def call(self, answered: CallRecord | None = None) -> RoutedCall:
        """The call's record as it stands."""
        d = self.decision
        attempts = tuple(self.records)
        model = answered.model if answered is not None else None
        return RoutedCall(
            model=model,
            requested_model=d.model,
            served_model=self.served_model if answered is not None else None,
            pinned=d.pinned,
            tags=d.tags,
            ignored_tags=self.ignored_tags,
            policy=d.policy,
            decision=DecisionSummary(
                model=d.model,
                fallbacks=d.fallbacks,
                benchmark=d.benchmark,
                score=d.score,
                estimated_cost_usd=_usd(d.estimated_cost_usd),
                binding_constraint=d.binding_constraint,
                inferred_tags=bool(d.inferred_tags),
                required_capabilities=d.required_capabilities,
                assumed_capabilities=d.assumed_capabilities,
                note=d.note,
            ),
            unavailable={r.model: r.reason for r in d.rejected if r.code == "unavailable"},
            attempts=attempts,
            skipped=tuple(self.skipped),
            sticky=self._sticky(model),
            streamed=self.streamed,
            cost_usd=total_cost(attempts) if attempts else None,
            estimated_cost_usd=_usd(self._estimate(model) if model else d.estimated_cost_usd),
            latency_s=round(self.clock() - self.started, 6),
            ttft_s=self.ttft_s,
            catalog_as_of=self.catalog.info.as_of,
        )

    # -- helpers ----------------------------------------------------------------------------
    def _record(
        self,
        attempt: Attempt,
        *,
        usage: Usage | None,
        outcome: str,
        error: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        answering_model: str | None = None,
        ttft_s: float | None = None,
        usage_problem: str | None = None,
    ) -> CallRecord:
        now = self.clock()
        record = build_record(
            self.catalog,
            attempt.model,
            usage=usage,
            ts=attempt.started_at or dt.datetime.now(dt.UTC),
            latency_s=round(now - attempt.started, 6) if attempt.started else None,
            ttft_s=ttft_s,
            baseline_model=self.baseline_model,
            outcome=outcome,
            error=error,
            status=status,
            retry_after_s=retry_after,
            attempt=len(self.records) + 1,
            run_id=self.run_id,
            parent_run_id=self.parent_run_id,
            tags=self.decision.tags,
            policy=self.decision.policy,
            requested_model=self.decision.model,
            answering_model=answering_model,
            estimated_cost_usd=_usd(attempt.estimate_usd),
            usage_problem=usage_problem,
        )
        self.records.append(record)
        return record

    def _record_failure(
        self, attempt: Attempt, exc: BaseException, kind: str, usage: Usage | None
    ) -> None:
        self._record(
            attempt,
            usage=usage,
            outcome=kind,
            error=self._error_text(exc, kind),
            status=status_of(exc),
            retry_after=retry_after_s(exc),
            ttft_s=self._attempt_ttft(attempt),
        )

    def _error_text(self, exc: BaseException, kind: str) -> str:
        said = str(exc)
        cause = exc.__cause__
        for _ in range(4):  # the SDK's connection error says only "Connection error."
            if kind != "APIConnectionError" or cause is None:
                break
            if str(cause) not in said:
                said = f"{said} ({type(cause).__name__}: {cause})"
                break
            cause = cause.__cause__
        text = error_text(self.scrubber.text(said), None, limit=_ERROR_LIMIT - len(kind) - 2)
        return f"{kind}: {text or type(exc).__name__}"

    def _past(self, attempt: Attempt) -> bool:
        """The attempt's deadline has passed, and it is a deadline of its own (an explicit
        ``attempt_timeout_s``, or the call's): its failure is then ``DeadlineExceeded``.
        A deadline that is only the HTTP ``timeout`` keeps the timeout's own error type."""
        deadline, now = attempt.deadline, self.clock()
        if deadline is None or now < deadline - 1e-3:
            return False
        call = self.call_deadline
        return self.whole_stream or (call is not None and now >= call - 1e-3)

    def _attempt_ttft(self, attempt: Attempt) -> float | None:
        if attempt.first_chunk is None or not attempt.started:
            return None
        return round(attempt.first_chunk - attempt.started, 6)

    def _report(self, attempt: Attempt, failure: BaseException | None) -> None:
        """Tell the breaker how the attempt went (a failure only for upstream faults)."""
        attempt.reported = True
        if self.breaker is None:
            return
        if failure is None:
            self.breaker.record_success(attempt.model)
            return
        why = error_type(failure)
        status = status_of(failure)
        if status is not None:
            why = f"{why} {status}"
        self.breaker.record_failure(attempt.model, why, retry_after_s=retry_after_s(failure))

    def _abandon(self, attempt: Attempt) -> None:
        if not attempt.reported and self.breaker is not None and attempt.admission is not None:
            self.breaker.abandon(attempt.admission)
        attempt.reported = True

    def _sticky(self, model: str | None) -> Sticky | None:
        conv = self.conversation
        if conv is None:
            return None
        previous = conv.previous_model
        note = self.decision.note
        if note is None and previous is not None and model is not None and model != previous:
            note = f"conversation model {previous} was kept but failed; {model} answered"
        return Sticky(
            conversation_id=conv.conversation_id,
            previous_model=previous,
            kept=None if previous is None or model is None else model == previous,
            note=note,
        )


class MalformedStream(Exception):
    """What the breaker is told of a truncated stream: an upstream fault."""


def _usd(value: float | None) -> float | None:
    """Dollars to 1e-12 (float noise such as 1.2499999999999999e-05 dropped)."""
    return None if value is None else round(value, 12)
