"""A real LiteLLM proxy under faults: 429s, 500s, hung upstreams, a chain cooling down.

The ledger must be true: one record per request the upstream received, under the model
it was sent to, in order; one record per request refused before any model was called,
under the routed group, with the reason; a fallback's latency is its own attempt's.
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
from routedllm.records.schema import CallRecord
from routedllm.testing import ModelSpec
from routedllm.testing.faults import Fault, FaultKind
from tests.test_litellm_proxy import CATALOG, CHINESE, CODE, POLICY, Proxy, start_proxy

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

TIMEOUT_S = 1.0
HANG = Fault(FaultKind.HANG, seconds=3 * TIMEOUT_S)
RATE_LIMITED = ("qwen3-32b", "glm-5", "kimi-k2.5")  # the Chinese chain: always 429
SPECS = {
    # the code chain (deepseek-v4-flash, gpt-4o, claude-3.5-sonnet): scripted faults
    "deepseek-v4-flash": ModelSpec(script=[HANG, "500", "500"], reply="def f(): pass"),
    "gpt-4o": ModelSpec(script=[None, "500"], reply="Done.", chunk_delay_s=0.01),
    "claude-3.5-sonnet": ModelSpec(reply="Sure."),
    **{m: ModelSpec(faults={"429": 1.0}, retry_after_s=0.05) for m in RATE_LIMITED},
}


def _cooldown_on_429(config: dict[str, Any]) -> None:
    """An operator's choice: a 429 cools the model down at once, for a minute, instead of
    being retried (LiteLLM does not cool down a model it is about to retry)."""
    settings = config["router_settings"]
    settings["allowed_fails_policy"] = {"RateLimitErrorAllowedFails": 0}
    settings["cooldown_time"] = 60
    settings["retry_policy"]["RateLimitErrorRetries"] = 0


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    args = ["--timeout", str(TIMEOUT_S), "--stream-timeout", str(TIMEOUT_S), "--retries", "1"]
    with start_proxy(
        tmp_path_factory.mktemp("litellm-ops"), SPECS, config_args=args, patch=_cooldown_on_429
    ) as running:
        yield running


def _call(
    proxy: Proxy, content: str, *, model: str, stream: bool = False
) -> tuple[str, list[str], Exception | None]:
    """One request; returns its trace, the models the upstream received, and its error."""
    trace, before = str(uuid.uuid4()), len(proxy.chat_requests())
    client = proxy.client()
    error: Exception | None = None
    try:
        response = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": content}],
            stream=stream,
            extra_body={"litellm_trace_id": trace},
        )
        if stream:
            for _ in response:  # type: ignore[union-attr]
                pass
    except openai.APIStatusError as exc:
        error = exc
    reached = [r.model for r in proxy.chat_requests()[before:]]
    return trace, reached, error


def _ledger(proxy: Proxy, trace: str, count: int) -> list[CallRecord]:
    return proxy.records(trace, count)


def test_the_ledger_of_a_faulty_run_is_true(proxy: Proxy) -> None:
    code = decide_for_body(
        Router(CATALOG, POLICY),
        {"model": "routed/code", "messages": [{"role": "user", "content": CODE}]},
    )
    assert code.ranking[:2] == ("deepseek-v4-flash", "gpt-4o")
    chinese = decide_for_body(
        Router(CATALOG, POLICY),
        {"model": "routed/chinese", "messages": [{"role": "user", "content": CHINESE}]},
    )
    assert set(chinese.ranking) <= set(RATE_LIMITED)

    # 1. a hung first model times out (no retry of a timeout); the stream falls back
    trace, reached, error = _call(proxy, CODE, model="routed/code", stream=True)
    assert error is None and reached == ["deepseek-v4-flash", "gpt-4o"]
    hung, answer = _ledger(proxy, trace, 2)
    assert hung.model == "deepseek-v4-flash" and hung.outcome == "Timeout"
    assert hung.latency_s is not None and TIMEOUT_S * 0.9 <= hung.latency_s < 3 * TIMEOUT_S
    assert answer.ok and answer.model == "gpt-4o" and answer.attempt == 2
    # the answering attempt's own time, not the timeout before it
    assert answer.latency_s is not None and answer.latency_s < TIMEOUT_S
    assert answer.ttft_s is not None and 0 < answer.ttft_s <= answer.latency_s

    # 2. a 500 is retried once on the same model, then the next model; its 500 is retried
    trace, reached, error = _call(proxy, CODE, model="routed/code")
    assert error is None
    assert reached == ["deepseek-v4-flash", "deepseek-v4-flash", "gpt-4o", "gpt-4o"]
    records = _ledger(proxy, trace, 4)
    assert [(r.model, r.outcome, r.attempt) for r in records] == [
        ("deepseek-v4-flash", "InternalServerError", 1),
        ("deepseek-v4-flash", "InternalServerError", 2),
        ("gpt-4o", "InternalServerError", 3),
        ("gpt-4o", "ok", 4),
    ]
    assert records[-1].latency_s is not None and records[-1].latency_s < TIMEOUT_S

    # 3. every model of the chain answers 429 and cools down: each one called is recorded,
    # the models skipped because they were cooling down are not
    trace, reached, error = _call(proxy, CHINESE, model="routed/chinese")
    assert isinstance(error, openai.RateLimitError)
    assert reached and set(reached) <= set(RATE_LIMITED)
    records = _ledger(proxy, trace, len(reached))
    assert [r.model for r in records] == reached
    assert all(r.outcome == "RateLimitError" and r.route == "routed/chinese" for r in records)

    # 4. the whole chain is cooling down: no request goes out, one record says why
    for stream in (False, True):
        trace, reached, error = _call(proxy, CHINESE, model="routed/chinese", stream=stream)
        assert isinstance(error, openai.RateLimitError) and reached == []
        [refused] = _ledger(proxy, trace, 1)
        assert refused.model == "routed/chinese" and refused.outcome == "cooldown"
        assert refused.route == "routed/chinese" and refused.input_tokens == 0
        assert refused.cost_usd == 0.0  # nothing was sent: not an unpriced call in reports
        assert "cooldown" in (refused.error or "")

    # 5. the ledger holds nothing else: no phantom record under any model
    time.sleep(0.5)
    from routedllm.records.ledger import read_ledger

    everything = read_ledger(proxy.ledger)
    assert len(everything) == 2 + 4 + len(records) + 2
