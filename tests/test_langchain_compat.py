"""LangChain parity of RoutedChatModel where users hit it: token counting (and so
``trim_messages``), the Kimi K2 streamed tool-call quirk, and ``dumpd``/``loads``."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from langchain_core.load import dumpd, dumps, loads
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    trim_messages,
)
from langchain_core.tools import tool
from pydantic import BaseModel

from routedllm import Catalog, Policy
from routedllm.adapters.langchain.chat_model import STICKY_KEY, RoutedChatModel
from routedllm.adapters.langchain.tokens import (
    TOKENS_PER_IMAGE,
    TOKENS_PER_MESSAGE,
    estimate_text_tokens,
)
from routedllm.core.decision import STICKY
from routedllm.core.errors import InvalidRequestError
from routedllm.records.routed import RoutedCall
from tests.conftest import fixture_catalog
from tests.fake_gateway import SOCKET_PROBE_ALLOWED, FakeGateway

pytestmark = SOCKET_PROBE_ALLOWED
KEY = "sk-test-compat-0123456789"
POLICY = Policy(allow_unknown_capabilities=True)


@tool
def llm_version() -> str:
    """Return the installed version of llm."""
    return "0.fixed-version"


def model(transport: Any = None, **params: Any) -> RoutedChatModel:
    clients = (
        {}
        if "http_client" in params
        else FakeGateway().clients()
        if transport is None
        else {
            "http_client": httpx2.Client(transport=httpx2.MockTransport(transport)),
            "http_async_client": httpx2.AsyncClient(transport=httpx2.MockTransport(transport)),
        }
    )
    return RoutedChatModel(
        **{"catalog": fixture_catalog(), "policy": POLICY, "api_key": KEY, **clients, **params}
    )


def join(chunks: list[Any]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


# -- Kimi K2 through OpenRouter: the full tool name in every chunk --------------------------
# The deltas of a recorded OpenRouter stream of moonshotai/kimi-k2 (provider Novita), from
# simonw/llm's cassette tests/cassettes/test_tools_streaming/test_tools_streaming_variant_a
# (Apache-2.0): tool call id "0", the name "llm_version" in both tool-call chunks, arguments
# "" then "{}", no finish_reason, usage on a chunk that still has a choice.
KIMI_DELTAS: list[dict[str, Any]] = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    *[
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "0",
                                "type": "function",
                                "function": {"name": "llm_version", "arguments": arguments},
                            }
                        ],
                    },
                }
            ]
        }
        for arguments in ("", "{}")
    ],
    {
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
        "usage": {"prompt_tokens": 56, "completion_tokens": 12, "total_tokens": 68},
    },
]
FINAL_DELTAS: list[dict[str, Any]] = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "The version is "}}]},
    {"choices": [{"index": 0, "delta": {"content": "0.fixed-version."}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 105, "completion_tokens": 16, "total_tokens": 121}},
]


class KimiStreams:
    """Answers like Kimi K2 through OpenRouter: a tool call, then (after the tool result)
    a text answer. Each stream has its own completion id, as OpenRouter's have."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        answered = any(m.get("role") == "tool" for m in body["messages"])
        deltas = FINAL_DELTAS if answered else KIMI_DELTAS
        completion = f"gen-1753242299-{len(self.bodies):020d}"
        events = b"".join(
            b"data: "
            + json.dumps(
                {
                    "id": completion,
                    "provider": "Novita",
                    "model": "moonshotai/kimi-k2",
                    "object": "chat.completion.chunk",
                    "created": 1753242299,
                    **delta,
                }
            ).encode()
            + b"\n\n"
            for delta in deltas
        )
        return httpx2.Response(
            200,
            content=events + b"data: [DONE]\n\n",
            headers={"content-type": "text/event-stream"},
        )


def test_kimi_streamed_tool_call_merges_into_one_name() -> None:
    llm = model(KimiStreams()).bind_tools([llm_version])
    full = join(list(llm.stream("What is the current llm version?")))
    assert full.tool_calls == [{"name": "llm_version", "args": {}, "id": "0", "type": "tool_call"}]
    assert full.usage_metadata is not None and full.usage_metadata["input_tokens"] == 56
    assert full.response_metadata["routedllm"]["cost_usd"] is not None
    # no chunk has a finish_reason, yet the record names the model the upstream served
    assert full.response_metadata["routedllm"]["served_model"] == "moonshotai/kimi-k2"
    again = join(list(llm.stream("And now?")))  # a second stream: the name is shown again
    assert [c["name"] for c in again.tool_calls] == ["llm_version"]


async def test_kimi_streamed_tool_call_merges_into_one_name_async() -> None:
    llm = model(KimiStreams()).bind_tools([llm_version])
    chunks = [c async for c in llm.astream("What is the current llm version?")]
    assert [c["name"] for c in join(chunks).tool_calls] == ["llm_version"]


def test_a_name_sent_in_pieces_still_adds_up() -> None:
    """The usual OpenAI shape (the name once, or split) is left as it is."""
    pieces = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
        *[
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {"index": 0, "function": {"name": name, "arguments": args}}
                                | ({"id": "call_1", "type": "function"} if name == "llm_" else {})
                            ]
                        },
                    }
                ]
            }
            for name, args in (("llm_", ""), ("version", "{"), ("", "}"))
        ],
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]

    def split(request: httpx2.Request) -> httpx2.Response:
        events = b"".join(
            b"data: " + json.dumps({"id": "chatcmpl-1", "model": "m", **p}).encode() + b"\n\n"
            for p in pieces
        )
        return httpx2.Response(200, content=events + b"data: [DONE]\n\n")

    full = join(list(model(split).bind_tools([llm_version]).stream("version?")))
    assert [(c["name"], c["id"]) for c in full.tool_calls] == [("llm_version", "call_1")]


def test_kimi_tool_call_in_an_agent_loop() -> None:
    """create_agent runs the tool the streamed call names, and answers with its result."""
    agents = pytest.importorskip("langchain.agents", reason="create_agent needs langchain")
    streams = KimiStreams()
    agent = agents.create_agent(model(streams, streaming=True), tools=[llm_version])
    out = agent.invoke({"messages": [HumanMessage("What is the current llm version?")]})
    call, result, answer = out["messages"][1:]
    assert [c["name"] for c in call.tool_calls] == ["llm_version"]
    assert isinstance(result, ToolMessage) and result.content == "0.fixed-version"
    assert result.status == "success" and answer.text == "The version is 0.fixed-version."
    sent = streams.bodies[1]["messages"][1]["tool_calls"][0]["function"]
    assert sent == {"name": "llm_version", "arguments": "{}"}


# -- token counting: one offline estimate, whichever model the call goes to ------------------
def test_text_estimate_counts_latin_cjk_and_other_scripts() -> None:
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("a" * 40) == 10
    assert estimate_text_tokens("你好世界") == 4  # one token per CJK character
    assert estimate_text_tokens("こんにちは") == 5 and estimate_text_tokens("안녕하세요") == 5
    assert 4 < estimate_text_tokens("Привет, мир, как дела") < 21  # between the two


def test_get_num_tokens_for_model_auto_works_offline() -> None:
    llm = model()
    assert llm.model_name == "auto"
    assert llm.get_num_tokens("a" * 400) == 100
    messages: list[BaseMessage] = [SystemMessage("b" * 40), HumanMessage("c" * 80)]
    assert llm.get_num_tokens_from_messages(messages) == 2 * TOKENS_PER_MESSAGE + 10 + 20
    image = HumanMessage(
        content=[
            {"type": "text", "text": "d" * 4},
            {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}},
        ]
    )
    assert llm.get_num_tokens_from_messages([image]) == TOKENS_PER_MESSAGE + 1 + TOKENS_PER_IMAGE


def test_tool_calls_and_tool_schemas_count() -> None:
    llm = model()
    call = AIMessage("", tool_calls=[{"name": "llm_version", "args": {"x": 1}, "id": "0"}])
    bare = AIMessage("")
    assert llm.get_num_tokens_from_messages([call]) > llm.get_num_tokens_from_messages([bare])
    plain = llm.get_num_tokens_from_messages([HumanMessage("hi")])
    with_tools = llm.get_num_tokens_from_messages([HumanMessage("hi")], tools=[llm_version])
    schema = json.dumps(
        {
            "type": "function",
            "function": {
                "name": "llm_version",
                "description": "Return the installed version of llm.",
                "parameters": {"properties": {}, "type": "object"},
            },
        },
        separators=(",", ":"),
    )
    assert with_tools - plain == estimate_text_tokens(schema)


def test_a_given_tokenizer_is_used() -> None:
    llm = model(custom_get_token_ids=lambda text: list(range(len(text.split()))))
    assert llm.get_num_tokens("one two three") == 3
    assert llm.get_num_tokens_from_messages([HumanMessage("one two")]) == TOKENS_PER_MESSAGE + 2


def test_trim_messages_with_the_model_as_token_counter() -> None:
    llm = model()
    history: list[BaseMessage] = [SystemMessage("You are terse.")]
    for i in range(10):
        history += [HumanMessage(f"question {i} " + "x" * 200), AIMessage("answer " + "y" * 200)]
    history.append(HumanMessage("last question"))
    trimmed = trim_messages(
        history,
        max_tokens=300,
        token_counter=llm,
        strategy="last",
        include_system=True,
        start_on="human",
    )
    assert trimmed[0] == history[0] and trimmed[-1] == history[-1]
    assert 3 <= len(trimmed) < len(history)
    assert llm.get_num_tokens_from_messages(trimmed) <= 300
    assert isinstance(trimmed[1], HumanMessage)


# -- dumpd / loads: the configuration round-trips, the key never appears --------------------
def revive(text: str, **params: Any) -> RoutedChatModel:
    out = loads(text, allowed_objects=[RoutedChatModel], valid_namespaces=["routedllm"], **params)
    assert isinstance(out, RoutedChatModel)
    return out


@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_dumps_loads_round_trip_without_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLOBAL_API_KEY", raising=False)
    policy = Policy(preset="quality", denied_models={"gpt-4o"}, max_cost_usd=0.01)
    llm = RoutedChatModel(
        api_key=KEY, policy=policy, breaker=None, sticky=True, temperature=0.2, max_wait_s=3.0
    )
    text = dumps(llm)
    assert KEY not in text and KEY not in json.dumps(dumpd(llm))
    assert dumpd(llm)["id"] == ["routedllm", "RoutedChatModel"]
    assert dumpd(llm)["kwargs"]["openai_api_key"] == {
        "lc": 1,
        "type": "secret",
        "id": ["GLOBAL_API_KEY"],
    }
    back = revive(text, secrets_map={"GLOBAL_API_KEY": KEY})
    assert back.openai_api_key is not None and back.openai_api_key.get_secret_value() == KEY
    assert back.policy == policy and back.breaker is None and back.sticky
    assert (back.temperature, back.max_wait_s, back.model_name) == (0.2, 3.0, "auto")
    assert back.catalog.ids == Catalog.from_env().ids  # not given: read again on load
    assert revive(text).openai_api_key is None  # no secret given, none in the environment
    monkeypatch.setenv("GLOBAL_API_KEY", "sk-from-env")
    from_env = revive(text)  # as a new model does, it reads the catalog's key variable
    assert from_env.openai_api_key is not None
    assert from_env.openai_api_key.get_secret_value() == "sk-from-env"


@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_a_given_catalog_travels_with_the_model() -> None:
    catalog = fixture_catalog()
    llm = RoutedChatModel(api_key=KEY, catalog=catalog, model="gpt-4o")
    back = revive(dumps(llm))
    assert list(back.catalog) == list(catalog) and back.catalog.info == catalog.info
    assert back.model_name == "gpt-4o" and back.breaker is not None
    question = [HumanMessage("Summarize: the meeting moved to Friday.")]
    assert back.route(question).model == llm.route(question).model


def test_the_default_serialized_form_names_no_runtime_objects() -> None:
    data = dumpd(RoutedChatModel(api_key=KEY))
    kwargs = data["kwargs"]
    assert data["type"] == "constructor"
    assert not {"catalog", "policy", "breaker", "budget", "client", "http_client"} & set(kwargs)


# -- routedllm_sticky_model: keep a call on a model while the decision lists it --------------
QUESTION = "Write a short note to the team about Friday's meeting."


def test_sticky_model_kwarg_keeps_the_call_on_that_model() -> None:
    gateway = FakeGateway()
    llm = model(None, **gateway.clients())
    routed = llm.route([HumanMessage(QUESTION)])
    other = routed.fallbacks[-1]
    reply = llm.invoke(QUESTION, routedllm_sticky_model=other)
    call = RoutedCall.model_validate(reply.response_metadata["routedllm"])
    assert call.model == other and call.decision.binding_constraint == STICKY
    assert not call.pinned and routed.model in call.decision.fallbacks
    assert gateway.models() == [other]
    assert STICKY_KEY not in gateway.requests[0]  # routedllm's own keyword is not sent on
    assert llm.route([HumanMessage(QUESTION)], routedllm_sticky_model=other).model == other


def test_a_sticky_model_that_fails_falls_back_in_the_same_call() -> None:
    gateway = FakeGateway()
    llm = model(None, **gateway.clients())
    other = llm.route([HumanMessage(QUESTION)]).fallbacks[-1]
    gateway.faults[other] = "500"
    reply = llm.invoke(QUESTION, routedllm_sticky_model=other)
    call = RoutedCall.model_validate(reply.response_metadata["routedllm"])
    assert call.model != other and call.decision.model == other
    assert [a.model for a in call.attempts] == [other, call.model]


def test_a_sticky_model_that_is_not_eligible_is_not_kept() -> None:
    gateway = FakeGateway()
    llm = model(None, **gateway.clients())
    routed = llm.route([HumanMessage(QUESTION)])
    denied = llm.route(
        [HumanMessage(QUESTION)],
        routedllm_sticky_model=routed.model,
        routedllm_policy={"denied_models": [routed.model]},
    )
    assert denied.model != routed.model
    assert denied.note is not None and f"{routed.model} not kept" in denied.note
    with pytest.raises(InvalidRequestError, match="no-such-model"):  # named, so refused
        llm.route([HumanMessage(QUESTION)], routedllm_sticky_model="no-such-model")


def test_a_pinned_call_ignores_the_sticky_model_and_bad_values_are_refused() -> None:
    gateway = FakeGateway()
    llm = model(None, **gateway.clients())
    other = llm.route([HumanMessage(QUESTION)]).fallbacks[-1]
    llm.invoke(QUESTION, model="gpt-4o", routedllm_sticky_model=other)
    assert gateway.models() == ["gpt-4o"]
    with pytest.raises(InvalidRequestError, match=STICKY_KEY):
        llm.invoke(QUESTION, routedllm_sticky_model=["gpt-4o"])
    with pytest.raises(InvalidRequestError, match="'kimi-k2-5'"):  # a typo, not an id
        llm.invoke(QUESTION, routedllm_sticky_model="kimi-k2-5")
    assert len(gateway.requests) == 1  # refused before anything was sent


# -- what works with no opt-in: the packaged catalog, the default policy ---------------------
class Joke(BaseModel):
    """A joke."""

    setup: str
    punchline: str


@pytest.mark.parametrize("method", ["function_calling", "json_schema", "json_mode"])
def test_structured_output_works_with_the_packaged_catalog(method: str) -> None:
    llm = RoutedChatModel(api_key=KEY, catalog=Catalog.default(), **FakeGateway().clients())
    prompt = "Tell me a joke about cats. Answer in JSON with keys 'setup' and 'punchline'."
    out = llm.with_structured_output(Joke, method=method, include_raw=True).invoke(prompt)
    assert isinstance(out["parsed"], Joke) and out["parsing_error"] is None
    record = RoutedCall.model_validate(out["raw"].response_metadata["routedllm"])
    needed = "tools" if method == "function_calling" else "structured_output"
    assert needed in record.decision.required_capabilities


def test_create_agent_works_with_the_packaged_catalog() -> None:
    agents = pytest.importorskip("langchain.agents", reason="create_agent needs langchain")
    gateway = FakeGateway()
    llm = RoutedChatModel(api_key=KEY, catalog=Catalog.default(), **gateway.clients())
    out = agents.create_agent(llm, tools=[llm_version]).invoke(
        {"messages": [HumanMessage("What is the current llm version?")]}
    )
    kinds = [type(m).__name__ for m in out["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert out["messages"][2].content == "0.fixed-version" and len(gateway.requests) == 2


# -- max_tokens given at construction counts like a per-call one ---------------------------
def test_constructor_max_tokens_bounds_the_estimate_like_a_call_kwarg() -> None:
    bounded = model(None, max_tokens=10)
    assert bounded.route([HumanMessage(QUESTION)]).expected_output_tokens == 10
    # a per-call value still wins over the constructor's
    assert bounded.route([HumanMessage(QUESTION)], max_tokens=50).expected_output_tokens == 50
    assert model(None).route([HumanMessage(QUESTION)]).expected_output_tokens > 10


def test_constructor_max_tokens_is_checked_like_a_call_kwarg() -> None:
    with pytest.raises(ValueError, match="max_tokens must be a positive integer, got -5"):
        model(None, max_tokens=-5)


# -- the model profile: what routing can serve, from the catalog ---------------------------
class Weather(BaseModel):
    """The weather in a city."""

    city: str
    summary: str


def _reachable(catalog: Catalog) -> list[Any]:
    return [c for c in catalog if c.priced and any(v is not None for v in c.scores.values())]


def test_the_auto_profile_is_what_routing_can_serve() -> None:
    catalog = Catalog.default()
    profile = RoutedChatModel(api_key=KEY, catalog=catalog).profile
    assert profile is not None
    reachable = _reachable(catalog)
    # the largest window of a model routing may choose, not of an unscored or unpriced one
    assert profile["max_input_tokens"] == max(c.context_window for c in reachable)
    assert profile["max_input_tokens"] < max(c.context_window or 0 for c in catalog)
    assert profile["tool_calling"] is True and profile["image_inputs"] is True
    assert "structured_output" not in profile  # agents use tool-call structured output


def test_the_profile_follows_the_policy_and_a_pinned_model() -> None:
    catalog = Catalog.default()
    text_only = [c.id for c in _reachable(catalog) if c.capabilities.image_input is False]
    narrow = Policy(allowed_models=frozenset(text_only))
    profile = RoutedChatModel(api_key=KEY, catalog=catalog, policy=narrow).profile
    assert profile is not None and profile["image_inputs"] is False
    assert profile["max_input_tokens"] == max(catalog.get(m).context_window for m in text_only)
    schema = next(c for c in catalog if c.capabilities.json_schema is True)
    pinned = RoutedChatModel(api_key=KEY, catalog=catalog, model=schema.id).profile
    assert pinned is not None and pinned["structured_output"] is True
    assert pinned["max_input_tokens"] == schema.context_window
    given = RoutedChatModel(api_key=KEY, catalog=catalog, profile={"max_input_tokens": 9})
    assert given.profile == {"max_input_tokens": 9}


def test_an_agent_with_a_response_format_returns_it_routed_or_pinned() -> None:
    """create_agent's structured response: a tool call when routed, the model's JSON-schema
    output when pinned to a model the catalog says has it."""
    agents = pytest.importorskip("langchain.agents", reason="create_agent needs langchain")
    catalog = Catalog.default()
    schema = next(c for c in catalog if c.capabilities.json_schema is True)
    for pinned in (None, schema.id):
        gateway = FakeGateway()
        params = {} if pinned is None else {"model": pinned}
        llm = RoutedChatModel(api_key=KEY, catalog=catalog, **gateway.clients(), **params)
        agent = agents.create_agent(llm, tools=[llm_version], response_format=Weather)
        out = agent.invoke({"messages": [HumanMessage("What is the weather in Paris?")]})
        assert isinstance(out["structured_response"], Weather)
        last = gateway.requests[-1]
        if pinned is None:
            assert "Weather" in [t["function"]["name"] for t in last["tools"]]
        else:
            assert last["model"] == pinned
            assert last["response_format"]["type"] == "json_schema"


def test_summarization_by_fraction_of_the_window_accepts_the_model() -> None:
    middleware = pytest.importorskip("langchain.agents.middleware")
    llm = RoutedChatModel(api_key=KEY, catalog=Catalog.default())
    middleware.SummarizationMiddleware(model=llm, trigger=("fraction", 0.8))


def test_a_pinned_model_keeps_langchain_openais_profile_under_the_catalog_facts() -> None:
    catalog = Catalog.default().merged({"models": [{"id": "gpt-4o", "context_window": 64000}]})
    profile = RoutedChatModel(api_key=KEY, catalog=catalog, model="gpt-4o").profile
    assert profile is not None
    assert profile["max_input_tokens"] == 64000  # the catalog's figure wins
    assert profile.get("tool_choice") is True  # langchain-openai's fact kept
    assert RoutedChatModel(api_key=KEY, catalog=catalog, model="not-listed-x").profile is None
