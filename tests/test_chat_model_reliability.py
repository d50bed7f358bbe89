"""RoutedChatModel's reliability parts: circuit breaker, spend limits, sticky conversations,
and the records of attempts that end in an error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from langchain_core.messages import HumanMessage

from routedllm import (
    AllAttemptsFailedError,
    BudgetExceeded,
    CircuitBreaker,
    CostLatencyHandler,
    LocalBudget,
    Policy,
    Request,
    decide,
)
from routedllm.adapters.langchain.chat_model import RoutedChatModel, default_breaker
from routedllm.core.errors import StreamInterruptedError
from routedllm.core.pricing import estimate_cost
from routedllm.core.tags import message_features
from routedllm.records.ledger import read_ledger
from routedllm.records.routed import RoutedCall, call_of
from routedllm.reliability.budget import BudgetLimits
from routedllm.testing import ModelSpec, Upstream
from tests.fake_gateway import SOCKET_PROBE_ALLOWED, FakeGateway, test_catalog

CATALOG = test_catalog()
KEY = "sk-planted-9f8e7d6c5b4a39281706"
CODE = "Write a Python function that parses ISO dates."
pytestmark = SOCKET_PROBE_ALLOWED


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def routed(gateway: FakeGateway, **params: Any) -> RoutedChatModel:
    """A routed model over the fake gateway; a 429 falls back at once (no same-model retry)."""
    params = {"rate_limit_retries": 0, **params}
    return RoutedChatModel(**{"api_key": KEY, "catalog": CATALOG, **gateway.clients(), **params})


def decision(text: str, **policy: Any) -> Any:
    return decide(CATALOG, Policy(**policy), Request(messages=[HumanMessage(text)]))


def estimate(model: str, text: str, **policy: Any) -> float:
    d = decision(text, **policy)
    cost = estimate_cost(CATALOG.get(model), d.estimated_input_tokens, d.expected_output_tokens)
    assert cost is not None
    return cost


def outcomes(record: dict[str, Any]) -> list[tuple[str, str]]:
    """Each attempt sent: its model, and "ok" or "error"."""
    return [(a["model"], "ok" if a["outcome"] == "ok" else "error") for a in record["attempts"]]


def skips(record: dict[str, Any]) -> list[tuple[str, str]]:
    """Each model passed over without a request, and why."""
    return [(s["model"], s["reason"]) for s in record["skipped"]]


# -- circuit breaker ------------------------------------------------------------------------
def test_a_model_that_keeps_failing_is_cooled_down_and_the_record_says_why() -> None:
    clock = Clock()
    first, second = decision("Hello").ranking[:2]
    gateway = FakeGateway(faults={first: "500"})
    llm = routed(gateway, breaker=CircuitBreaker(failures=3, cooldown_s=30, clock=clock))
    for _ in range(3):
        record = llm.invoke("Hello").response_metadata["routedllm"]
        assert outcomes(record) == [(first, "error"), (second, "ok")]
    record = llm.invoke("Hello").response_metadata["routedllm"]
    assert outcomes(record) == [(second, "ok")] and list(record["unavailable"]) == [first]
    why = record["unavailable"][first]
    assert why.startswith("circuit open: 3 failures in 60s; last: InternalServerError 500")
    assert "cooling down for another 30.0s" in why
    assert gateway.models().count(first) == 3  # not sent while it cooled down
    # After the cooldown one probe goes out; the model recovered, so the circuit closes.
    clock.now += 30
    gateway.faults.clear()
    record = llm.invoke("Hello").response_metadata["routedllm"]
    assert outcomes(record) == [(first, "ok")] and record["unavailable"] == {}
    assert llm.breaker is not None and llm.breaker.state(first) == "closed"


def test_a_429_keeps_the_model_out_for_its_retry_after_and_no_longer() -> None:
    clock = Clock()
    first, second = decision("Hello").ranking[:2]
    gateway = FakeGateway(faults={first: "429"})  # Retry-After: 2
    llm = routed(gateway, breaker=CircuitBreaker(failures=5, clock=clock))
    failed = llm.invoke("Hello").response_metadata["routedllm"]["attempts"][0]
    assert (failed["status"], failed["retry_after_s"]) == (429, 2.0)
    again = llm.invoke("Hello").response_metadata["routedllm"]
    assert list(again["unavailable"]) == [first]
    assert "Retry-After 2s" in again["unavailable"][first]
    clock.now += 2
    gateway.faults.clear()
    assert outcomes(llm.invoke("Hello").response_metadata["routedllm"]) == [(first, "ok")]


def test_every_attempt_is_admitted_by_the_breaker() -> None:
    """A pinned call makes no decision, but an open circuit still stops its attempt."""
    breaker = CircuitBreaker(failures=1, cooldown_s=60)
    breaker.record_failure("glm-5", "InternalServerError 500")
    gateway = FakeGateway()
    with pytest.raises(AllAttemptsFailedError) as caught:
        routed(gateway, breaker=breaker).invoke("Hello", model="glm-5")
    call = caught.value.call
    assert call is not None and call.attempts == ()
    [skipped] = call.skipped
    assert (skipped.model, skipped.reason) == ("glm-5", "CircuitOpen")
    assert skipped.detail is not None and skipped.detail.startswith("circuit open: 1 failures")
    assert gateway.requests == []


def test_caller_errors_say_nothing_about_a_models_health() -> None:
    first = decision("Hello").model
    llm = routed(FakeGateway(faults={first: "400"}), breaker=CircuitBreaker(failures=1))
    for _ in range(3):
        with pytest.raises(openai.BadRequestError):
            llm.invoke("Hello")
    assert llm.breaker is not None and llm.breaker.state(first) == "closed"


def test_each_model_has_its_own_default_breaker_and_none_turns_it_off() -> None:
    first = decision("Hello").model
    a, b = routed(FakeGateway()), routed(FakeGateway())
    assert isinstance(a.breaker, CircuitBreaker) and a.breaker is not b.breaker
    assert a.breaker.failure_rate == default_breaker().failure_rate
    ignoring = routed(FakeGateway(), retry_after_cap_s=0).breaker
    assert ignoring is not None and ignoring.honour_retry_after is False
    gateway = FakeGateway(faults={first: "429"})
    off = routed(gateway, breaker=None)
    for _ in range(3):
        assert off.invoke("Hello").response_metadata["routedllm"]["unavailable"] == {}
    assert gateway.models().count(first) == 3


# -- spend limits ---------------------------------------------------------------------------
def test_the_per_call_maximum_skips_models_whose_estimate_is_above_it() -> None:
    quality = decision("Hello", preset="quality").ranking  # dearest first
    limit = (
        estimate(quality[0], "Hello", preset="quality")
        + estimate(quality[1], "Hello", preset="quality")
    ) / 2
    gateway = FakeGateway()
    budget = LocalBudget(BudgetLimits(max_call_usd=limit))
    llm = routed(gateway, budget=budget, policy=Policy(preset="quality"))
    record = llm.invoke("Hello").response_metadata["routedllm"]
    assert outcomes(record) == [(quality[1], "ok")]
    assert skips(record) == [(quality[0], "BudgetExceeded")]
    assert "above the per-call maximum" in record["skipped"][0]["detail"]
    assert gateway.models() == [quality[1]]  # nothing was sent to the dearer model
    status = budget.status()
    assert status.spent_usd == pytest.approx(record["cost_usd"], abs=1e-9)
    assert status.reserved_usd == 0 and status.settled_calls == 1


def test_nothing_affordable_raises_budget_exceeded_before_any_request(tmp_path: Path) -> None:
    gateway = FakeGateway()
    ledger = tmp_path / "calls.jsonl"
    llm = routed(gateway, budget=LocalBudget(BudgetLimits(max_call_usd=1e-7)))
    with pytest.raises(BudgetExceeded) as caught:
        llm.invoke("Hello", config={"callbacks": [CostLatencyHandler(CATALOG, ledger_path=ledger)]})
    assert caught.value.scope == "call" and gateway.requests == []
    call = caught.value.call
    assert call is not None and call.attempts == ()
    assert [s.model for s in call.skipped] == list(decision("Hello").ranking)
    assert {s.reason for s in call.skipped} == {"BudgetExceeded"}
    assert not ledger.exists() or read_ledger(ledger) == []  # no request, no record


def test_failed_attempts_release_and_a_broken_stream_is_charged_its_estimate() -> None:
    first, second = decision("Hello").ranking[:2]
    budget = LocalBudget(BudgetLimits(max_run_usd=10))
    reply = routed(FakeGateway(faults={first: "503"}), budget=budget).invoke("Hello")
    status = budget.status()
    assert status.spent_usd == pytest.approx(
        reply.response_metadata["routedllm"]["cost_usd"], abs=1e-9
    )
    assert (status.reserved_usd, status.in_flight, status.settled_calls) == (0, 0, 1)
    budget.reset()
    with pytest.raises(StreamInterruptedError) as caught:
        list(routed(FakeGateway(faults={first: "stream-break"}), budget=budget).stream("Hello"))
    status = budget.status()
    assert status.spent_usd == pytest.approx(estimate(first, "Hello"), abs=1e-9)
    call = caught.value.call
    assert call is not None
    assert call.attempts[-1].estimated_cost_usd == pytest.approx(estimate(first, "Hello"))
    assert (status.reserved_usd, status.in_flight, status.settled_calls) == (0, 0, 1)


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
@pytest.mark.parametrize("scope", ["run", "window"])
async def test_spend_caps_hold_under_concurrency_passed_only_by_calls_in_flight(
    scope: str,
) -> None:
    """64 calls at once, each costing more than its estimate: a cap is passed by at most
    what the calls in flight cost beyond their estimates, and refused calls send nothing."""
    prompt, pinned, concurrency, calls = "Summarise the meeting notes.", "gpt-4o", 64, 200
    card = CATALOG.get(pinned)
    tokens_in = message_features([HumanMessage(prompt)]).input_tokens
    out = Policy().default_output_tokens
    guess = estimate_cost(card, tokens_in, out)
    assert guess is not None
    cap = 40 * guess
    limits = (
        BudgetLimits(max_run_usd=cap)
        if scope == "run"
        else BudgetLimits(max_window_usd=cap, window_s=3600)
    )
    budget = LocalBudget(limits)
    spec = ModelSpec(prompt_tokens=tokens_in, completion_tokens=out * 5 // 4, latency_s=0.05)
    with Upstream({pinned: spec}) as up:
        llm = RoutedChatModel(
            base_url=up.base_url,
            api_key=KEY,
            catalog=CATALOG,
            model=pinned,
            budget=budget,
            timeout=10,
        )
        gate = asyncio.Semaphore(concurrency)

        async def call() -> float | str:
            async with gate:
                try:
                    reply = await llm.ainvoke(prompt)
                except BudgetExceeded as exc:
                    return exc.scope
                return reply.response_metadata["routedllm"]["cost_usd"]

        results = await asyncio.gather(*(call() for _ in range(calls)))
        sent = len(up.requests)
    costs = [r for r in results if isinstance(r, float)]
    refused = [r for r in results if isinstance(r, str)]
    status = budget.status()
    overshoot = concurrency * (max(costs) - guess)
    print(
        f"\n{scope} cap ${cap:.6f}: {len(costs)} answered, {len(refused)} refused, "
        f"spent ${status.spent_usd:.6f} (bound ${cap + overshoot:.6f})"
    )
    assert max(costs) > guess  # every call cost more than its estimate
    assert set(refused) == {scope} and sent == len(costs)
    assert status.spent_usd == pytest.approx(sum(costs), abs=1e-9 * calls)
    assert cap - max(costs) < status.spent_usd <= cap + overshoot
    assert (status.reserved_usd, status.in_flight) == (0, 0)


# -- sticky conversations -------------------------------------------------------------------
def test_a_conversation_keeps_its_model_unless_a_constraint_forces_a_change() -> None:
    gateway = FakeGateway()
    llm = routed(gateway, sticky=True)
    thread = {"metadata": {"thread_id": "t-1"}}
    quality = decision("Hello", preset="quality").model
    first = llm.invoke("Hello", config=thread, routedllm_policy={"preset": "quality"})
    sticky = first.response_metadata["routedllm"]["sticky"]
    assert first.response_metadata["model_name"] == quality
    assert sticky == {"conversation_id": "t-1", "previous_model": None, "kept": None, "note": None}
    # A follow-up about code would go to another model, but the conversation keeps its own.
    assert decision(CODE).model != quality and quality in decision(CODE).ranking
    follow = llm.invoke(CODE, config=thread).response_metadata
    assert follow["model_name"] == quality
    assert follow["routedllm"]["sticky"]["kept"] is True
    assert follow["routedllm"]["decision"]["binding_constraint"].startswith("sticky")
    # A constraint that excludes it wins, and the record says why it was not kept.
    denied = llm.invoke(
        CODE, config=thread, routedllm_policy={"denied_models": [quality]}
    ).response_metadata
    assert denied["model_name"] == decision(CODE).model
    note = denied["routedllm"]["sticky"]["note"]
    assert note.startswith(f"conversation model {quality} not kept:") and "denied" in note
    # From then on the conversation follows the model that answered.
    assert decision(CODE, preset="quality").model != decision(CODE).model
    turn = llm.invoke(CODE, config=thread, routedllm_policy={"preset": "quality"})
    assert turn.response_metadata["model_name"] == decision(CODE).model
    # Other conversations and calls without one are routed on their own.
    other = llm.invoke(CODE, config={"metadata": {"conversation_id": "t-2"}})
    assert other.response_metadata["model_name"] == decision(CODE).model
    assert llm.invoke(CODE).response_metadata["routedllm"]["sticky"] is None


def test_a_kept_model_that_fails_falls_back_and_the_conversation_moves_on() -> None:
    quality = decision("Hello", preset="quality").model
    gateway = FakeGateway()
    llm = routed(gateway, sticky=True)
    thread = {"metadata": {"thread_id": 7}}
    llm.invoke("Hello", config=thread, routedllm_policy={"preset": "quality"})
    gateway.faults[quality] = "503"

    async def follow_up() -> list[Any]:
        return [c async for c in llm.astream(CODE, config=thread)]

    chunks = asyncio.run(follow_up())
    [meta] = [c.response_metadata for c in chunks if "routedllm" in c.response_metadata]
    assert outcomes(meta["routedllm"])[0] == (quality, "error")
    sticky = meta["routedllm"]["sticky"]
    assert sticky["kept"] is False and sticky["previous_model"] == quality
    assert (
        sticky["note"] == f"conversation model {quality} was kept but failed; "
        f"{meta['model_name']} answered"
    )
    again = llm.invoke("Hello", config=thread).response_metadata["routedllm"]["sticky"]
    assert again["previous_model"] == meta["model_name"]


def test_sticky_memory_is_bounded_and_off_by_default() -> None:
    llm = routed(FakeGateway(), sticky=True, sticky_conversations=2)
    for thread in ("a", "b", "c"):
        llm.invoke("Hello", config={"metadata": {"thread_id": thread}})
    turn = llm.invoke("Hello", config={"metadata": {"thread_id": "a"}})  # "a" was dropped
    assert turn.response_metadata["routedllm"]["sticky"]["previous_model"] is None
    turn = llm.invoke("Hello", config={"metadata": {"thread_id": "c"}})
    assert turn.response_metadata["routedllm"]["sticky"]["previous_model"] is not None
    plain = routed(FakeGateway()).invoke("Hello", config={"metadata": {"thread_id": "a"}})
    assert plain.response_metadata["routedllm"]["sticky"] is None


# -- a 200 whose body is only an error object ---------------------------------------------
@pytest.mark.parametrize(
    ("code", "falls_back"), [(502, True), ("server_error", True), (400, False)]
)
def test_a_200_error_body_is_read_by_its_code_like_an_error_event(
    code: Any, falls_back: bool
) -> None:
    first, second = decision("Hello").ranking[:2]
    gateway = FakeGateway()

    def answer(request: httpx2.Request) -> httpx2.Response:
        if json.loads(request.content)["model"] == first:
            return httpx2.Response(200, json={"error": {"message": "it broke", "code": code}})
        return gateway(request)

    llm = RoutedChatModel(
        api_key=KEY,
        catalog=CATALOG,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )
    if falls_back:
        record = llm.invoke("Hello").response_metadata["routedllm"]
        assert outcomes(record) == [(first, "error"), (second, "ok")]
        assert record["attempts"][0]["error"] == "APIError: it broke"
    else:  # the body says the caller is at fault: raised at once, with the record
        with pytest.raises(openai.APIError, match="it broke") as caught:
            llm.invoke("Hello")
        call = call_of(caught.value)
        assert call is not None and [(a.model, a.status) for a in call.attempts] == [(first, 400)]
        assert gateway.requests == []


# -- the ledger: one record per attempt sent, whatever the call ended with ----------------
def test_a_caller_error_after_a_fallback_records_every_attempt(tmp_path: Path) -> None:
    first, second = decision("Hello").ranking[:2]
    ledger = tmp_path / "calls.jsonl"
    llm = routed(FakeGateway(faults={first: "500", second: "400"}))
    with pytest.raises(openai.BadRequestError) as caught:
        llm.invoke("Hello", config={"callbacks": [CostLatencyHandler(CATALOG, ledger_path=ledger)]})
    call = call_of(caught.value)
    assert call is not None
    assert [(a.model, a.status) for a in call.attempts] == [(first, 500), (second, 400)]
    records = read_ledger(ledger)
    assert [(r.attempt, r.model, r.outcome) for r in records] == [
        (1, first, "InternalServerError"),
        (2, second, "BadRequestError"),
    ]


def test_a_broken_stream_is_recorded_with_its_usage_unknown(tmp_path: Path) -> None:
    first = decision("Hello").model
    ledger = tmp_path / "calls.jsonl"
    handler = CostLatencyHandler(CATALOG, ledger_path=ledger)
    with pytest.raises(StreamInterruptedError):
        for _ in routed(FakeGateway(faults={first: "stream-break"})).stream(
            "Hello", config={"callbacks": [handler]}
        ):
            pass
    [record] = read_ledger(ledger)
    assert (record.model, record.outcome) == (first, "APIError")
    assert record.input_tokens is None and record.cost_usd is None  # billed, amount unknown


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
async def test_an_attempt_that_never_left_the_client_pool_is_skipped_not_recorded(
    tmp_path: Path,
) -> None:
    """With the client's one connection busy, the second call's attempts wait for the pool
    and time out locally: skipped (no request, no ledger record), not counted against the
    models' health."""
    first = decision("Hello").model
    ledger = tmp_path / "calls.jsonl"
    handler = CostLatencyHandler(CATALOG, ledger_path=ledger)
    with Upstream({first: ModelSpec(latency_s=1.0)}) as up:
        client = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=1))
        llm = RoutedChatModel(
            base_url=up.base_url,
            api_key=KEY,
            catalog=CATALOG,
            http_async_client=client,
            timeout=httpx2.Timeout(10, pool=0.2),
        )
        config = {"callbacks": [handler]}
        results = await asyncio.gather(
            llm.ainvoke("Hello", config=config),
            llm.ainvoke("Hello", config=config),
            return_exceptions=True,
        )
        sent = len(up.requests)
        await client.aclose()
    [error] = [r for r in results if isinstance(r, BaseException)]
    assert isinstance(error, AllAttemptsFailedError)
    assert error.call is not None and error.call.attempts == ()
    assert {s.reason for s in error.call.skipped} == {"PoolTimeout"}
    assert sent == 1 and len(read_ledger(ledger)) == 1
    assert llm.breaker is not None and llm.breaker.unavailable() == {}
    assert RoutedCall.model_validate_json(error.call.model_dump_json()) == error.call
