"""The attempt loop on its own: no HTTP, no LangChain, a fake clock; what each outcome does."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
import yaml
from langchain_core.exceptions import ContextOverflowError

from routedllm.core.catalog import Catalog
from routedllm.core.decision import Decision, Policy, Request, decide
from routedllm.core.errors import AllAttemptsFailedError, BudgetExceeded, StreamInterruptedError
from routedllm.records.routed import RoutedCall, call_of
from routedllm.records.schema import Usage
from routedllm.reliability.attempts import CANCELLED, AttemptLoop, Conversation
from routedllm.reliability.breaker import CircuitBreaker
from routedllm.reliability.failures import MalformedResponseError, UpstreamErrorBody

CATALOG = Catalog.from_dict(
    yaml.safe_load((Path(__file__).parent / "routing_catalog.yaml").read_text("utf-8"))
)
KEY = "sk-attempt-loop-secret-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def decision(text: str = "Hello", **request: object) -> Decision:
    return decide(
        CATALOG, Policy(), Request(messages=[{"role": "user", "content": text}], **request)
    )  # type: ignore[arg-type]


def loop_for(d: Decision, **kwargs: object) -> tuple[AttemptLoop, Clock]:
    clock = Clock()
    loop = AttemptLoop(d, CATALOG, clock=clock, started=clock.now, **kwargs)  # type: ignore[arg-type]
    return loop, clock


def server_error(status: int = 503, text: str = "upstream down") -> openai.APIStatusError:
    return UpstreamErrorBody({"message": text, "code": status})


def test_a_fault_falls_back_and_each_attempt_is_timed_on_its_own() -> None:
    d = decision()
    loop, clock = loop_for(d)
    first = loop.next()
    assert first is not None and first.model == d.model
    loop.begin(first)
    clock.now += 2.0
    verdict = loop.failed(first, server_error())
    assert not verdict.stop
    second = loop.next()
    assert second is not None and second.model == d.fallbacks[0]
    loop.begin(second)
    clock.now += 0.5
    call = loop.answered(second, Usage(100, 20), "served-name")
    failed, ok = call.attempts
    assert (failed.model, failed.outcome, failed.status) == (d.model, "APIError", 503)
    assert failed.latency_s == 2.0 and failed.cost_usd == 0.0  # no tokens for a failure
    assert (ok.model, ok.outcome, ok.latency_s) == (second.model, "ok", 0.5)  # its own time
    assert call.model == second.model and call.served_model == "served-name"
    assert call.latency_s == 2.5 and call.cost_usd == ok.cost_usd
    assert RoutedCall.model_validate(call.to_metadata()) == call


def test_a_caller_error_stops_and_carries_the_record() -> None:
    loop, _ = loop_for(decision())
    attempt = loop.next()
    assert attempt is not None
    loop.begin(attempt)
    error = UpstreamErrorBody({"message": "bad request", "code": 400})
    assert loop.failed(attempt, error).stop
    raised = loop.error_for(error)
    assert raised is error and isinstance(raised, openai.APIError)  # its own type
    record = call_of(raised)
    assert record is not None and record.attempts[0].status == 400


def test_every_model_failing_names_each_attempt_and_the_cause_stays() -> None:
    d = decision()
    loop, _ = loop_for(d)
    while (attempt := loop.next()) is not None:
        loop.begin(attempt)
        loop.failed(attempt, MalformedResponseError("no choices"))
    error = loop.exhausted()
    assert isinstance(error, AllAttemptsFailedError)
    assert [a.model for a in error.call.attempts] == list(d.ranking)
    assert all(
        f"{i}. {m}: MalformedResponseError" in str(error) for i, m in enumerate(d.ranking, 1)
    )


def test_a_context_error_skips_models_no_larger() -> None:
    d = decision()
    loop, _ = loop_for(d)
    first = loop.next()
    assert first is not None
    loop.begin(first)
    loop.failed(first, ContextOverflowError("too long"))
    window = CATALOG.get(d.model).context_window or 0
    nxt = loop.next()
    larger = [m for m in d.fallbacks if (CATALOG.get(m).context_window or 0) > window]
    assert (nxt.model if nxt else None) == (larger[0] if larger else None)
    skipped = [s.model for s in loop.call().skipped]
    assert all((CATALOG.get(m).context_window or 0) <= window for m in skipped)


def test_an_open_circuit_is_a_skip_not_an_attempt() -> None:
    breaker = CircuitBreaker(failures=1, cooldown_s=60)
    d = decision()
    breaker.record_failure(d.model, "InternalServerError 500")
    loop, _ = loop_for(d, breaker=breaker)
    attempt = loop.next()
    assert attempt is not None and attempt.model == d.fallbacks[0]
    [skip] = loop.call().skipped
    assert (skip.model, skip.reason) == (d.model, "CircuitOpen")


def test_a_budget_refusal_before_anything_was_sent_is_the_error() -> None:
    loop, _ = loop_for(decision())
    while (attempt := loop.next()) is not None:
        loop.refused(attempt, BudgetExceeded("over the cap", scope="call"))
    error = loop.exhausted()
    assert isinstance(error, BudgetExceeded) and error.call is not None
    assert error.call.attempts == () and {s.reason for s in error.call.skipped} == {
        "BudgetExceeded"
    }


def test_settlement_releases_failures_and_charges_answers_and_broken_streams() -> None:
    loop, _ = loop_for(decision())
    failed = loop.next()
    assert failed is not None
    loop.begin(failed)
    loop.failed(failed, server_error())
    assert loop.settlement(failed) == ("release", None)
    broken = loop.next()
    assert broken is not None
    loop.begin(broken)
    loop.first_chunk(broken)
    error = loop.broke(broken, server_error(502, "reset"), None)
    assert isinstance(error, StreamInterruptedError) and error.model == broken.model
    assert loop.settlement(broken) == ("settle", None)  # usage unknown: the estimate
    assert error.call.attempts[-1].cost_usd is None  # billed, amount unknown


def test_a_cancelled_attempt_is_recorded_and_charged() -> None:
    loop, _ = loop_for(decision())
    attempt = loop.next()
    assert attempt is not None
    loop.begin(attempt)
    call = loop.cancelled(attempt)
    assert call.attempts[-1].outcome == CANCELLED
    assert loop.settlement(attempt)[0] == "settle"


def test_secrets_are_scrubbed_from_attempt_errors() -> None:
    loop, _ = loop_for(decision(), secrets=(KEY,))
    attempt = loop.next()
    assert attempt is not None
    loop.begin(attempt)
    loop.failed(attempt, server_error(text=f"invalid key {KEY}"))
    assert KEY not in loop.call().model_dump_json()


def test_a_pinned_alias_is_priced_like_its_catalog_model() -> None:
    d = decision(model="openai/gpt-4o")
    loop, _ = loop_for(d)
    attempt = loop.next()
    assert attempt is not None and attempt.model == "openai/gpt-4o"
    loop.begin(attempt)
    call = loop.answered(attempt, Usage(1000, 100))
    assert call.pinned and call.attempts[0].model == "gpt-4o"
    assert call.cost_usd is not None and call.cost_usd > 0
    assert call.estimated_cost_usd is not None


def test_sticky_conversation_note_when_the_kept_model_failed() -> None:
    d = decision()
    loop, _ = loop_for(d, conversation=Conversation("t-1", d.model))
    first = loop.next()
    assert first is not None
    loop.begin(first)
    loop.failed(first, server_error())
    second = loop.next()
    assert second is not None
    loop.begin(second)
    call = loop.answered(second, Usage(1, 1))
    assert call.sticky is not None and call.sticky.kept is False
    assert (
        call.sticky.note
        == f"conversation model {d.model} was kept but failed; {second.model} answered"
    )


@pytest.mark.parametrize("usage", [None, Usage(10, 5)])
def test_an_answer_without_usage_has_unknown_cost(usage: Usage | None) -> None:
    loop, _ = loop_for(decision())
    attempt = loop.next()
    assert attempt is not None
    loop.begin(attempt)
    call = loop.answered(attempt, usage)
    assert (call.cost_usd is None) == (usage is None)
