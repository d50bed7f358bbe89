"""A real LiteLLM proxy: a stream that breaks after an earlier attempt of its call failed;
a client's request options (tools, tool_choice, n, stop, user, seed) through routing; an
in-memory budget on one team's tag that runs out.

LiteLLM logs one failure event per proxied call, so a stream that starts on a retry or a
fallback and then breaks (reset, cut short, or stalled past its deadline) would leave no
record: the ledger must still hold one record per request the upstream received.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from routedllm.adapters.litellm import decide_for_body
from routedllm.core.decision import Router
from routedllm.records.ledger import read_ledger
from routedllm.testing import ModelSpec
from routedllm.testing.faults import broken_stream, empty_deltas_forever, no_finish
from tests.test_litellm_proxy import CATALOG, CODE, POLICY, TOOLS, Proxy, start_proxy

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

TIMEOUT_S = 1.5
SPECS = {
    # routed/code ranks deepseek-v4-flash, then gpt-4o: each call below uses up its scripts
    "deepseek-v4-flash": ModelSpec(
        script=["429", "429", "500", broken_stream(3), "500", "500", "500", "500"],
        reply="def add(a, b):\n    return a + b\n",
        chunk_delay_s=0.01,
    ),
    "gpt-4o": ModelSpec(
        script=[broken_stream(3), no_finish(), empty_deltas_forever(0.2)],
        reply="Done, with a longer answer than three chunks.",
        chunk_delay_s=0.01,
    ),
}


CAP_USD = 0.002  # on requests tagged TEAM only: the other tests send no tags
TEAM = "team-capped"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    args = ["--timeout", str(TIMEOUT_S), "--stream-timeout", str(TIMEOUT_S), "--retries", "1"]
    tmp = tmp_path_factory.mktemp("litellm-streams")
    budget = tmp / "budget.yaml"
    budget.write_text(f"max_run_usd: {CAP_USD}\nper: [tag]\n", "utf-8")
    env = {"ROUTEDLLM_BUDGET": str(budget)}
    with start_proxy(tmp, SPECS, config_args=args, env=env) as p:
        yield p


def _stream(proxy: Proxy) -> tuple[str, list[str], Exception | None]:
    """One streamed routed/code call read to its end: its trace, the models the upstream
    received, and the error the client got (in the stream or before it)."""
    trace, before = str(uuid.uuid4()), len(proxy.chat_requests())
    error: Exception | None = None
    try:
        chunks = proxy.client().chat.completions.create(
            model="routed/code",
            messages=[{"role": "user", "content": CODE}],
            stream=True,
            extra_body={"litellm_trace_id": trace},
        )
        for _ in chunks:
            pass
    except openai.APIError as exc:
        error = exc
    return trace, [r.model for r in proxy.chat_requests()[before:]], error


def test_a_stream_breaking_after_an_earlier_failure_is_recorded(proxy: Proxy) -> None:
    decision = decide_for_body(
        Router(CATALOG, POLICY),
        {"model": "routed/code", "messages": [{"role": "user", "content": CODE}]},
    )
    assert decision.ranking[:2] == ("deepseek-v4-flash", "gpt-4o")
    cases = [
        # two 429s on the first model, then the fallback's stream resets mid-way
        (["deepseek-v4-flash"] * 2 + ["gpt-4o"], ["RateLimitError"] * 2 + ["APIConnectionError"]),
        # a 500, then the retry of the same model resets mid-way
        (["deepseek-v4-flash"] * 2, ["InternalServerError", "APIConnectionError"]),
        # the fallback's stream closes with no finish reason: cut short
        (["deepseek-v4-flash"] * 2 + ["gpt-4o"], ["InternalServerError"] * 2 + ["truncated"]),
        # the fallback's stream sends nothing but empty deltas: its deadline ends it
        (["deepseek-v4-flash"] * 2 + ["gpt-4o"], ["InternalServerError"] * 2 + ["Timeout"]),
    ]
    total = 0
    for reached_expected, outcomes in cases:
        trace, reached, error = _stream(proxy)
        assert error is not None and reached == reached_expected
        records = proxy.records(trace, len(reached))
        assert [r.model for r in records] == reached
        assert [r.outcome for r in records] == outcomes
        assert [r.attempt for r in records] == list(range(1, len(reached) + 1))
        assert all(r.route == "routed/code" and r.error for r in records)
        broken = records[-1]
        # it started to answer: the provider may bill it, so its tokens and cost are unknown
        assert broken.input_tokens is None and broken.cost_usd is None
        assert broken.requested_model == "deepseek-v4-flash" and broken.tags == decision.tags
        assert broken.latency_s is not None and 0 <= broken.latency_s < 3 * TIMEOUT_S
        total += len(reached)
    time.sleep(0.5)
    assert len(read_ledger(proxy.ledger)) == total  # one record per request sent, no more


@pytest.mark.parametrize("group", ["routed/auto", "routed/chinese"])
def test_a_clients_request_options_reach_the_model_that_answers(proxy: Proxy, group: str) -> None:
    """tool_choice, parallel_tool_calls, n, stop and seed pass through routing to
    every attempt; the tool call comes back, plain and streamed, with the usage asked for.
    (Neither group's chain includes the two scripted models.)"""
    options: dict[str, Any] = {
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": True,
        "n": 2,
        "stop": ["\n\n"],
        "user": "user-7",
        "seed": 11,
    }
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    for stream in (False, True):
        before, trace = len(proxy.chat_requests()), str(uuid.uuid4())
        extra = {"stream_options": {"include_usage": True}} if stream else {}
        response = proxy.client().chat.completions.create(
            model=group,
            messages=messages,  # type: ignore[arg-type]
            stream=stream,
            extra_body={"litellm_trace_id": trace},
            **options,
            **extra,
        )
        if stream:
            chunks = list(response)  # type: ignore[arg-type]
            calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices]
            assert any(call and call[0].function.name == "get_weather" for call in calls)
            usage = [c.usage for c in chunks if c.usage is not None]
            assert len(usage) == 1 and usage[0].completion_tokens > 0
        else:
            [call] = response.choices[0].message.tool_calls  # type: ignore[union-attr]
            assert call.function.name == "get_weather"
            assert response.model == group  # type: ignore[union-attr]
        reached = proxy.chat_requests()[before:]
        assert reached and all(r.stream == stream for r in reached)
        for request in reached:
            # LiteLLM passes `user` to OpenAI's own models only (docs/litellm.md)
            sent = {k: v for k, v in options.items() if k != "user"}
            assert {k: request.body.get(k) for k in sent} == sent
        records = proxy.records(trace, len(reached))
        assert [r.model for r in records] == [r.model for r in reached]
        assert records[-1].ok and records[-1].output_tokens == (
            usage[0].completion_tokens if stream else response.usage.completion_tokens  # type: ignore[union-attr]
        )


def test_an_in_memory_budget_refuses_once_spent_with_a_record(proxy: Proxy) -> None:
    client = proxy.client()
    messages = [{"role": "user", "content": "Say hello to the team."}]
    answered: list[tuple[str, float]] = []  # (trace, LiteLLM's cost header)
    refusal: openai.BadRequestError | None = None
    for _ in range(40):
        trace, before = str(uuid.uuid4()), len(proxy.chat_requests())
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="routed/auto",
                messages=messages,  # type: ignore[arg-type]
                extra_body={"litellm_trace_id": trace, "tags": [TEAM]},
            )
        except openai.BadRequestError as exc:
            refusal = exc
            assert proxy.chat_requests()[before:] == []  # refused before any model
            break
        answered.append((trace, float(raw.headers["x-litellm-response-cost"])))
    assert refusal is not None and answered, "the cap was never reached"
    message = str(refusal)
    assert f"budget tag:{TEAM}: run spend cap ${CAP_USD:.6f} reached" in message
    [record] = proxy.records(trace, 1)
    assert record.outcome == "BudgetExceeded" and record.model == "routed/auto"
    assert record.cost_usd == 0.0 and f"tag:{TEAM}" in (record.error or "")
    spent = 0.0
    for done, header in answered:
        [ok] = proxy.records(done, 1)
        assert ok.ok and ok.cost_usd == pytest.approx(header)  # LiteLLM's figure is the ledger's
        spent += ok.cost_usd
    assert f"${spent:.6f} spent" in message  # settled to the ledger's costs, nothing held
    assert "$0.000000 held" in message
    # the cap is the tag's alone: the same request without the tag is answered
    untagged = client.chat.completions.create(model="routed/auto", messages=messages)  # type: ignore[arg-type]
    assert untagged.choices[0].message.content
