"""End to end: a real LiteLLM proxy, started from the generated config, in front of a
loopback stand-in upstream. Requests go through the ``openai`` client with tags and
content of each kind; the upstream shows which model each reached, the ledger holds one
record per attempt. One proxy process serves the whole module.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from routedllm import Catalog, Policy
from routedllm.adapters.litellm import decide_for_body
from routedllm.cli import main as cli
from routedllm.core.decision import Router
from routedllm.core.pricing import call_cost, estimate_cost
from routedllm.records.ledger import read_ledger
from routedllm.records.schema import CallRecord
from routedllm.testing import ModelSpec, Upstream

if importlib.util.find_spec("litellm") is None:  # not imported here: the proxy is a subprocess
    pytest.skip(
        "litellm is not installed: pip install 'routedllm[litellm-proxy]'", allow_module_level=True
    )

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

STARTUP_S = 90.0
CATALOG = Catalog.default()
POLICY = Policy()
# Each model answers as its provider would: its own dated snapshot name and token counts
# (distinct per model, so a record's tokens show which response it priced).
SPECS = {
    "deepseek-v4-flash": ModelSpec(
        reply="```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```",
        answer_model="deepseek-v4-flash-2026-04-01",
        prompt_tokens=41,
        completion_tokens=23,
    ),
    "qwen3-32b": ModelSpec(
        reply="量子力学研究微观粒子的运动规律。",
        answer_model="qwen3-32b-0428",
        prompt_tokens=37,
        completion_tokens=19,
        chunk_delay_s=0.02,
    ),
    "gpt-4o": ModelSpec(
        reply="A red bicycle leaning against a brick wall.",
        answer_model="gpt-4o-2024-08-06",
        prompt_tokens=812,
        completion_tokens=11,
        cached_tokens=256,
    ),
    "claude-3.5-sonnet": ModelSpec(
        reply="Invoice INV-0042, total $1,250.00.",
        answer_model="claude-3.5-sonnet-20241022",
        prompt_tokens=58,
        completion_tokens=14,
    ),
    # always failing: every request that ranks them first falls back
    "kimi-k2.5": ModelSpec(faults={"500": 1.0}),
    "glm-5": ModelSpec(faults={"429": 1.0}, retry_after_s=0.1),
}
FAILING = {"kimi-k2.5": "InternalServerError", "glm-5": "RateLimitError"}
CODE = "Write a python function that adds two integers."
CHINESE = "请用中文简单解释一下量子力学的基本原理。"
IMAGE = [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="}},
]


@dataclass
class Proxy:
    url: str
    key: str
    upstream: Upstream
    ledger: Path
    log: Path

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, max_retries=0, timeout=30)

    def records(self, trace: str, count: int, timeout: float = 15.0) -> list[CallRecord]:
        """The ledger's records of one call, once ``count`` have arrived (LiteLLM logs after
        answering), checked again a moment later so an extra one would show."""
        deadline = time.monotonic() + timeout
        found: list[CallRecord] = []
        while time.monotonic() < deadline:
            found = self._of(trace)
            if len(found) >= count:
                time.sleep(0.3)
                return sorted(self._of(trace), key=lambda r: r.attempt)
            time.sleep(0.1)
        raise AssertionError(f"{len(found)} of {count} records for {trace} after {timeout} s")

    def _of(self, trace: str) -> list[CallRecord]:
        if not self.ledger.exists():
            return []
        return [r for r in read_ledger(self.ledger) if r.run_id == trace]

    def chat_requests(self) -> list[Any]:
        return [r for r in self.upstream.requests if r.path.endswith("/chat/completions")]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text("utf-8", "replace")[-chars:] if path.exists() else "(no log)"


@contextlib.contextmanager
def start_proxy(
    tmp: Path,
    specs: Mapping[str, ModelSpec],
    *,
    config_args: Sequence[str] = (),
    patch: Callable[[dict[str, Any]], None] | None = None,
    env: Mapping[str, str] | None = None,
    upstream: Upstream | None = None,
) -> Iterator[Proxy]:
    """A LiteLLM proxy process on loopback, from ``routedllm litellm-config`` (with
    ``config_args``, then ``patch`` applied to the config), in front of a stand-in upstream
    serving ``specs`` (or ``upstream``, shared, made without an api_key). ``env`` adds to
    the proxy's environment."""
    config, ledger, log = tmp / "config.yaml", tmp / "ledger.jsonl", tmp / "proxy.log"
    upstream_key = "ga_upstream_" + secrets.token_hex(8)
    with contextlib.ExitStack() as stack:
        if upstream is None:
            upstream = stack.enter_context(Upstream(specs, api_key=upstream_key))
        args = ["litellm-config", "-o", str(config), "--base-url", upstream.base_url]
        assert cli([*args, "--max-price-age-days", "100000", *config_args]) == 0
        if patch is not None:
            data = yaml.safe_load(config.read_text("utf-8"))
            patch(data)
            config.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
        port, key = _free_port(), "sk-" + secrets.token_hex(16)
        proxy_env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTEDLLM_")}
        proxy_env.update(
            GLOBAL_API_KEY=upstream_key,
            LITELLM_MASTER_KEY=key,
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_OFFLINE_MODE="true",
            LITELLM_TELEMETRY_DISABLED="true",
            LITELLM_DONT_SHOW_FEEDBACK_BOX="true",
            ROUTEDLLM_LEDGER=str(ledger),
        )
        proxy_env.update(env or {})
        command = [
            str(_console_script()),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                env=proxy_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                start_new_session=True,
            )
        try:
            _wait_alive(process, f"http://127.0.0.1:{port}", log)
            yield Proxy(f"http://127.0.0.1:{port}", key, upstream, ledger, log)
        finally:
            _stop(process)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with start_proxy(tmp_path_factory.mktemp("litellm-proxy"), SPECS) as running:
        yield running


def _console_script() -> Path:
    """LiteLLM's ``litellm`` command, installed beside this interpreter."""
    script = Path(sys.executable).parent / "litellm"
    if not script.exists():
        pytest.fail(f"litellm is importable but its command {script} is missing: reinstall it")
    return script


def _wait_alive(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"the LiteLLM proxy exited with {process.returncode} (its packages: "
                f"pip install 'routedllm[litellm-proxy]'):\n{_tail(log)}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health/liveliness", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"the LiteLLM proxy was not alive after {STARTUP_S:.0f} s:\n{_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def _ask(
    proxy: Proxy,
    content: Any,
    *,
    model: str = "routed/auto",
    stream: bool = False,
    tags: list[str] | None = None,
    header_tags: str | None = None,
    body_tags: list[str] | None = None,
    trace: str | None = None,
    **extra: Any,
) -> tuple[str, str, dict[str, Any]]:
    """Send one chat request; returns (trace id, reply text, the body as routedllm sees it).

    Tags go in ``metadata.tags``, the ``x-litellm-tags`` header or the body's ``tags``.
    """
    trace = trace or str(uuid.uuid4())
    body: dict[str, Any] = {"litellm_trace_id": trace, **extra}
    if tags is not None:
        body["metadata"] = {"tags": tags}
    if body_tags is not None:
        body["tags"] = body_tags
    messages = [{"role": "user", "content": content}]
    headers = {"x-litellm-tags": header_tags} if header_tags else None
    c = proxy.client()
    if stream:
        chunks = c.chat.completions.create(
            model=model, messages=messages, stream=True, extra_body=body, extra_headers=headers
        )
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    else:
        response = c.chat.completions.create(
            model=model, messages=messages, extra_body=body, extra_headers=headers
        )
        text = response.choices[0].message.content or ""
    given = [*(tags or ()), *(header_tags.split(",") if header_tags else ()), *(body_tags or ())]
    seen = {"model": model, "messages": messages, "metadata": {"tags": given}, **extra}
    return trace, text, seen


def _expected_chain(body: dict[str, Any]) -> tuple[Any, list[str]]:
    """The decision for ``body`` and the requests the proxy should send: each failing model
    twice (a 429 or 5xx is retried once), up to the first model that works."""
    decision = decide_for_body(Router(CATALOG, POLICY), body)
    chain = []
    for model in decision.ranking:
        chain.append(model)
        if model not in FAILING:
            break
        chain.append(model)
    return decision, chain


def _check_ok(record: CallRecord, decision: Any, model: str, *, streamed: bool) -> None:
    spec = SPECS[model]
    card = CATALOG.get(model)
    assert record.ok and record.model == model
    assert record.answering_model == spec.answer_model
    assert record.requested_model == decision.model and record.policy == POLICY.preset
    assert record.tags == decision.tags
    assert (record.input_tokens, record.output_tokens) == (
        spec.prompt_tokens,
        spec.completion_tokens,
    )
    assert record.cached_input_tokens == spec.cached_tokens
    cost = call_cost(card, spec.prompt_tokens, spec.completion_tokens, spec.cached_tokens)
    assert record.cost_usd == pytest.approx(cost.total_usd)
    assert record.estimated_cost_usd == pytest.approx(
        estimate_cost(card, decision.estimated_input_tokens, decision.expected_output_tokens)
    )
    assert record.baseline_model == "gpt-4o" and record.savings_usd is not None
    assert record.latency_s is not None and 0 < record.latency_s < 30
    if streamed:
        assert record.ttft_s is not None and 0 < record.ttft_s <= record.latency_s
    else:
        assert record.ttft_s is None


def _check_call(
    proxy: Proxy, trace: str, body: dict[str, Any], *, streamed: bool = False, before: int
) -> list[CallRecord]:
    """The upstream saw the decision's chain; the ledger has one record per attempt."""
    decision, chain = _expected_chain(body)
    reached = proxy.chat_requests()[before:]
    assert [r.model for r in reached] == chain
    assert all(r.stream == streamed for r in reached)
    records = proxy.records(trace, len(chain))
    assert [r.attempt for r in records] == list(range(1, len(chain) + 1))
    assert [r.model for r in records] == chain
    assert all(r.route == body["model"] for r in records)  # the routed group asked for
    for failed in records[:-1]:
        assert failed.outcome == FAILING[failed.model] and failed.error
        assert failed.input_tokens == 0 and failed.cost_usd == 0.0 and failed.ttft_s is None
        assert failed.requested_model == decision.model and failed.tags == decision.tags
    _check_ok(records[-1], decision, chain[-1], streamed=streamed)
    return records


def test_code_prompt_inferred_and_priced(proxy: Proxy) -> None:
    before = len(proxy.chat_requests())
    trace, text, body = _ask(proxy, CODE)
    assert text == SPECS["deepseek-v4-flash"].reply
    [record] = _check_call(proxy, trace, body, before=before)
    assert record.tags == ("code",)


def test_chinese_header_tag_streamed(proxy: Proxy) -> None:
    before = len(proxy.chat_requests())
    trace, text, body = _ask(proxy, CHINESE, stream=True, header_tags="chinese,team-search")
    assert text == SPECS["qwen3-32b"].reply
    [record] = _check_call(proxy, trace, body, streamed=True, before=before)
    assert record.tags == ("chinese",)  # the team's own tag is not a routing tag


def test_image_routes_to_a_vision_model(proxy: Proxy) -> None:
    before = len(proxy.chat_requests())
    trace, _, body = _ask(proxy, IMAGE)
    records = _check_call(proxy, trace, body, before=before)  # kimi-k2.5 first: it fails here
    assert all(
        "vision" in r.tags and CATALOG.get(r.model).capabilities.image_input for r in records
    )
    assert records[-1].ok


def test_metadata_and_body_tags_and_routed_tag_groups(proxy: Proxy) -> None:
    before = len(proxy.chat_requests())
    trace, _, body = _ask(proxy, "Turn this list into a table.", tags=["code"])
    [record] = _check_call(proxy, trace, body, before=before)
    assert record.tags == ("code",)
    before = len(proxy.chat_requests())
    trace, _, body = _ask(proxy, "Turn this list into a table.", body_tags=["chinese", "acme"])
    [record] = _check_call(proxy, trace, body, before=before)
    assert record.tags == ("chinese",)
    before = len(proxy.chat_requests())
    trace, _, body = _ask(proxy, "Tell me about tea.", model="routed/chinese", stream=True)
    [record] = _check_call(proxy, trace, body, streamed=True, before=before)
    assert record.tags == ("chinese",)


def test_server_error_falls_back_and_records_both_attempts(proxy: Proxy) -> None:
    before = len(proxy.chat_requests())
    trace, _, body = _ask(
        proxy, "Summarize the plot of Hamlet in three sentences.", model="routed/summarization"
    )
    records = _check_call(proxy, trace, body, before=before)
    assert [r.outcome for r in records] == ["InternalServerError", "InternalServerError", "ok"]


def test_rate_limit_then_server_error_then_answer_streamed(proxy: Proxy) -> None:
    # a long answer rules out the 128K-window models: the ranking starts at two failing ones
    before = len(proxy.chat_requests())
    trace, text, body = _ask(
        proxy,
        "Extract the invoice number and total from this email.",
        model="routed/extraction",
        stream=True,
        max_tokens=130_000,
    )
    records = _check_call(proxy, trace, body, streamed=True, before=before)
    assert [r.outcome for r in records] == [
        "RateLimitError",
        "RateLimitError",
        "InternalServerError",
        "InternalServerError",
        "ok",
    ]
    assert text == SPECS[records[-1].model].reply


def test_plain_model_passes_through(proxy: Proxy) -> None:
    before = len(proxy.chat_requests())
    trace, text, _ = _ask(
        proxy, "Hello there.", model="claude-3.5-sonnet", body_tags=["extraction", "acme"]
    )
    assert [r.model for r in proxy.chat_requests()[before:]] == ["claude-3.5-sonnet"]
    [record] = proxy.records(trace, 1)
    spec = SPECS["claude-3.5-sonnet"]
    assert record.ok and record.model == "claude-3.5-sonnet" and record.tags == ("extraction",)
    assert record.requested_model == "claude-3.5-sonnet" and record.policy is None
    assert (record.input_tokens, record.output_tokens) == (
        spec.prompt_tokens,
        spec.completion_tokens,
    )
    assert record.cost_usd == pytest.approx(
        call_cost(
            CATALOG.get("claude-3.5-sonnet"), spec.prompt_tokens, spec.completion_tokens
        ).total_usd
    )


def test_unroutable_request_is_rejected_with_the_reason(proxy: Proxy) -> None:
    before, trace = len(proxy.chat_requests()), str(uuid.uuid4())
    with pytest.raises(openai.BadRequestError, match="unknown routed model group 'routed/poetry'"):
        _ask(proxy, "Write a sonnet.", model="routed/poetry", trace=trace)
    assert proxy.chat_requests()[before:] == []
    [record] = proxy.records(trace, 1)  # no model was called: one record says why
    assert record.model == "routed/poetry" and record.outcome == "InvalidRequestError"
    assert record.cost_usd == 0.0 and "unknown routed model group" in record.error


def test_master_key_is_required(proxy: Proxy) -> None:
    before = len(proxy.chat_requests())
    c = openai.OpenAI(
        base_url=f"{proxy.url}/v1", api_key="sk-" + secrets.token_hex(16), max_retries=0
    )
    with pytest.raises(openai.APIStatusError):
        c.chat.completions.create(model="routed/auto", messages=[{"role": "user", "content": CODE}])
    assert proxy.chat_requests()[before:] == []


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.mark.parametrize(
    "extra",
    [{"tools": TOOLS}, {"response_format": {"type": "json_object"}}],
    ids=["tools", "response_format"],
)
def test_tools_and_structured_output_route(proxy: Proxy, extra: dict[str, Any]) -> None:
    before = len(proxy.chat_requests())
    trace, _, body = _ask(proxy, "What is the weather in Paris? Answer in JSON.", **extra)
    records = _check_call(proxy, trace, body, before=before)
    key = next(iter(extra))
    assert all(r.body.get(key) == extra[key] for r in proxy.chat_requests()[before:])
    assert records[-1].ok


def test_tagged_over_long_prompt_is_refused_naming_the_window(proxy: Proxy) -> None:
    before, trace = len(proxy.chat_requests()), str(uuid.uuid4())
    prompt = "def f(x):\n    return x\n" * 110_000  # ~675k tokens: past every listed window
    with pytest.raises(openai.BadRequestError, match=r"context window is 200000"):
        _ask(proxy, prompt, body_tags=["code"], trace=trace)
    for stream in (False, True):  # untagged (tags inferred), plain and streamed: the same
        with pytest.raises(openai.BadRequestError, match=r"context window is 200000"):
            _ask(proxy, prompt, stream=stream)
    with pytest.raises(openai.BadRequestError, match="no eligible model"):
        _ask(proxy, "Write a sort.", body_tags=["code"], max_tokens=1_000_000)
    assert proxy.chat_requests()[before:] == []
    [record] = proxy.records(trace, 1)  # recorded once, under the group asked for
    assert record.model == "routed/auto" and record.route == "routed/auto"
    assert record.outcome == "NoEligibleModelError" and "no eligible model" in record.error
    assert record.input_tokens == 0 and record.cost_usd == 0.0


def test_routed_group_and_unknown_tags_in_the_headers(proxy: Proxy) -> None:
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="routed/auto",
        messages=[{"role": "user", "content": CODE}],
        extra_body={"tags": ["cod", "team-search"]},
    )
    assert raw.headers["x-litellm-model-group"] == "routed/auto"
    assert raw.headers["x-routedllm-ignored-tags"] == "cod,team-search"
    warned = [
        line
        for line in proxy.log.read_text("utf-8", "replace").splitlines()
        if "are not routedllm task tags" in line
    ]
    assert any("'cod'" in line for line in warned)  # each name once, whichever call had it


def test_non_chat_endpoints_on_a_routed_group_get_a_clear_400(proxy: Proxy) -> None:
    before = len(proxy.upstream.requests)
    client = proxy.client()
    with pytest.raises(openai.BadRequestError, match="routes chat completions only"):
        client.embeddings.create(model="routed/auto", input="hello")
    with pytest.raises(openai.BadRequestError, match="routes chat completions only"):
        client.completions.create(model="routed/auto", prompt="hello")
    # the Responses API and /v1/messages keep their fields in litellm_metadata: still one
    # record under the routed group, none under the group's static deployment
    trace = str(uuid.uuid4())
    with pytest.raises(openai.BadRequestError, match="send the Responses API requests to a"):
        client.responses.create(
            model="routed/auto", input="hello", extra_body={"litellm_trace_id": trace}
        )
    messages = {"model": "routed/auto", "max_tokens": 8, "litellm_trace_id": trace}
    messages["messages"] = [{"role": "user", "content": "hello"}]
    auth = {"Authorization": f"Bearer {proxy.key}"}
    raw = httpx.post(f"{proxy.url}/v1/messages", json=messages, headers=auth, timeout=30)
    assert raw.status_code == 400 and "send /v1/messages requests to a" in raw.text
    assert proxy.upstream.requests[before:] == []
    records = proxy.records(trace, 2)
    assert [(r.model, r.route, r.outcome) for r in records] == [
        ("routed/auto", "routed/auto", "InvalidRequestError")
    ] * 2


def test_a_clients_own_fallbacks_come_first(proxy: Proxy) -> None:
    # kimi-k2.5 ranks first for an image and always fails; the client's fallback is next
    before = len(proxy.chat_requests())
    trace, _, body = _ask(proxy, IMAGE, fallbacks=["claude-3.5-sonnet"])
    decision = decide_for_body(Router(CATALOG, POLICY), body)
    assert decision.model == "kimi-k2.5" and decision.fallbacks[0] != "claude-3.5-sonnet"
    reached = [r.model for r in proxy.chat_requests()[before:]]
    assert reached == ["kimi-k2.5", "kimi-k2.5", "claude-3.5-sonnet"]
    records = proxy.records(trace, 3)
    assert [r.model for r in records] == reached and records[-1].ok


def test_litellms_cost_header_agrees_with_the_ledger(proxy: Proxy) -> None:
    # gpt-4o answers with 256 cached tokens and the catalog has no cached price for it
    trace = str(uuid.uuid4())
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Describe a bicycle."}],
        extra_body={"litellm_trace_id": trace},
    )
    [record] = proxy.records(trace, 1)
    assert record.cached_input_tokens == SPECS["gpt-4o"].cached_tokens > 0
    assert float(raw.headers["x-litellm-response-cost"]) == pytest.approx(record.cost_usd)


def test_the_generated_config_loads_without_warnings(proxy: Proxy) -> None:
    log = proxy.log.read_text("utf-8", "replace")
    startup = log.split("Application startup complete", 1)[0].splitlines()
    # LiteLLM always says how many objects gc.freeze pinned; nothing else may warn
    warned = [line for line in startup if "WARNING" in line and "gc.freeze pinned" not in line]
    assert warned == []
    assert "routed/auto" in log  # it did load the config


SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "weather",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
            "required": ["city", "temp_c"],
            "additionalProperties": False,
        },
    },
}


def test_a_strict_json_schema_routes_and_is_passed_on(proxy: Proxy) -> None:
    for stream in (False, True):
        before = len(proxy.chat_requests())
        trace, text, body = _ask(
            proxy, "The weather in Paris, as JSON.", stream=stream, response_format=SCHEMA
        )
        records = _check_call(proxy, trace, body, streamed=stream, before=before)
        assert all(r.body["response_format"] == SCHEMA for r in proxy.chat_requests()[before:])
        assert CATALOG.get(records[-1].model).capabilities.json_schema is True


def test_requests_sharing_a_trace_id_each_number_their_attempts_from_one(proxy: Proxy) -> None:
    # a client may send one litellm_trace_id for a conversation's requests
    trace = str(uuid.uuid4())
    _, image_chain = _expected_chain(_ask(proxy, IMAGE, trace=trace)[2])
    _, code_chain = _expected_chain(_ask(proxy, CODE, trace=trace)[2])
    assert len(image_chain) > 1  # the image's first choice fails: retried, then a fallback
    records = sorted(proxy.records(trace, len(image_chain) + len(code_chain)), key=lambda r: r.ts)
    assert [(r.model, r.attempt) for r in records] == [
        *((m, i) for i, m in enumerate(image_chain, 1)),
        *((m, i) for i, m in enumerate(code_chain, 1)),
    ]
