"""The stand-in upstream, seen through the openai client and a raw socket: replies,
streams, every fault; and the wire builders and fault vocabulary it shares with the fakes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import openai
import pytest
import yaml

import routedllm.testing as testing
from routedllm.testing import (
    FAULTS,
    PRESETS,
    Fault,
    FaultKind,
    ModelSpec,
    Upstream,
    load_cassette,
    parse_fault,
    wire,
)
from tests.fake_gateway import FakeGateway

F = TypeVar("F", bound=Callable[..., Any])


def loopback(test: F) -> F:
    """Mark a test that starts the server: it may talk to 127.0.0.1."""
    return pytest.mark.loopback(pytest.mark.allow_hosts(["127.0.0.1"])(test))  # type: ignore[no-any-return]


KEY = "ga_TESTSECRET_0123456789abcdef"
HI = [{"role": "user", "content": "Say hello in five words."}]


def client(up: Upstream, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=up.base_url, api_key=KEY, max_retries=0, timeout=timeout)


def stream(c: openai.OpenAI, model: str, **kw):
    return c.chat.completions.create(
        model=model, messages=HI, stream=True, stream_options={"include_usage": True}, **kw
    )


@loopback
def test_plain_reply_is_openai_shaped_and_recorded() -> None:
    spec = ModelSpec(
        reply="Hi there, nice to meet you.",
        prompt_tokens=40,
        completion_tokens=7,
        cached_tokens=32,
        reasoning_tokens=3,
    )
    with Upstream({"gpt-4o": spec}) as up:
        assert up.port > 0 and up.base_url == f"http://127.0.0.1:{up.port}/v1"
        r = client(up).chat.completions.create(model="gpt-4o", messages=HI, temperature=0)
        assert r.id.startswith("chatcmpl-") and r.created > 1_600_000_000
        assert r.model == "gpt-4o" and r.object == "chat.completion"
        assert r.choices[0].message.content == "Hi there, nice to meet you."
        assert r.choices[0].finish_reason == "stop"
        usage = r.usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (40, 7, 47)
        assert usage.prompt_tokens_details.cached_tokens == 32
        assert usage.completion_tokens_details.reasoning_tokens == 3
        [seen] = up.requests
    assert seen.model == "gpt-4o" and seen.path == "/v1/chat/completions" and not seen.stream
    assert seen.body["messages"] == HI and seen.body["temperature"] == 0
    assert "authorization" not in seen.headers and KEY not in repr(seen)
    assert seen.headers["content-type"] == "application/json" and seen.fault is None


@loopback
def test_estimated_usage_answer_model_and_length_cap() -> None:
    with Upstream({"alias": ModelSpec(answer_model="gpt-4o-2024-08-06")}) as up:
        c = client(up)
        r = c.chat.completions.create(model="alias", messages=HI)
        assert r.model == "gpt-4o-2024-08-06"
        assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
        capped = c.chat.completions.create(model="alias", messages=HI, max_tokens=2)
        assert capped.choices[0].finish_reason == "length" and capped.usage.completion_tokens == 2


@loopback
def test_stream_with_usage_chunk() -> None:
    with Upstream({"m": ModelSpec(reply="one two three", cached_tokens=1)}) as up:
        chunks = list(stream(client(up), "m"))
        plain = list(client(up).chat.completions.create(model="m", messages=HI, stream=True))
        [seen, _] = up.requests
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens > 0
    assert last.usage.prompt_tokens_details.cached_tokens == 1
    assert all(ch.usage is None for ch in chunks[:-1])
    assert all(ch.choices for ch in plain) and all(ch.usage is None for ch in plain)
    assert seen.stream and seen.body["stream_options"] == {"include_usage": True}


# Each fault, on a plain call and on a stream: what the openai client makes of it.
FAULT_CASES = [
    ("429", False, openai.RateLimitError),
    ("429", True, openai.RateLimitError),
    ("500", False, openai.InternalServerError),
    ("502", True, openai.InternalServerError),
    ("503", False, openai.InternalServerError),
    ("slow", False, openai.APITimeoutError),
    ("slow", True, openai.APITimeoutError),
    ("reset", False, openai.APIConnectionError),
    ("reset", True, openai.APIConnectionError),
    ("cut", False, openai.APIConnectionError),
    ("cut", True, openai.APIConnectionError),
    ("malformed", False, json.JSONDecodeError),
    ("malformed", True, json.JSONDecodeError),
    ("error_event", True, openai.APIError),
    ("400", False, openai.BadRequestError),
    ("401", False, openai.AuthenticationError),
    ("404", True, openai.NotFoundError),
    ("context", False, openai.BadRequestError),
    ("timeout", True, openai.APITimeoutError),
    ("connect", False, openai.APIConnectionError),
    ("stream-error", True, openai.APIError),
    ("stream-break", True, openai.APIError),
]


@loopback
@pytest.mark.parametrize(("fault", "streamed", "error"), FAULT_CASES)
def test_each_fault_reaches_the_client(fault: str, streamed: bool, error: type) -> None:
    spec = ModelSpec(script=[fault], slow_s=10, retry_after_s=1.5)
    with Upstream({"m": spec}) as up:
        c = client(up, timeout=0.5)
        received = []
        with pytest.raises(error) as info:
            if streamed:
                for chunk in stream(c, "m"):
                    received.append(chunk)
            else:
                c.chat.completions.create(model="m", messages=HI)
        assert [r.fault for r in up.requests] == [fault]
        # the next request gets no fault: the script is spent and no shares are set
        assert client(up).chat.completions.create(model="m", messages=HI).choices
    if fault in ("500", "502", "503", "429"):
        assert info.value.status_code == int(fault)
        assert info.value.body["message"]  # an OpenAI-style error object
    if fault == "429":
        headers = info.value.response.headers
        assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "1500"
    if streamed and fault in ("cut", "malformed", "error_event", "stream-error", "stream-break"):
        assert received, "a stream that breaks midway first delivers some chunks"
    if fault == "error_event":
        assert "mid-stream" in str(info.value)


@loopback
def test_error_body_in_a_plain_200_and_no_choices() -> None:
    with Upstream({"m": ModelSpec(script=["error_event", "no_choices", "no_choices"])}) as up:
        c = client(up)
        broken = c.chat.completions.create(model="m", messages=HI)
        assert broken.choices is None and broken.model_extra["error"]["message"]
        empty = c.chat.completions.create(model="m", messages=HI)
        assert empty.choices == [] and empty.usage.total_tokens > 0
        chunks = list(stream(c, "m"))
    assert chunks and all(ch.choices == [] for ch in chunks) and chunks[-1].usage is not None


@loopback
def test_fault_shares_follow_the_seed() -> None:
    def run(seed: int) -> list[str | None]:
        spec = ModelSpec(faults={"500": 0.2, "503": 0.1, "no_choices": 0.1})
        with Upstream({"m": spec}, seed=seed) as up:
            c = client(up)
            for _ in range(200):
                try:
                    c.chat.completions.create(model="m", messages=HI)
                except openai.InternalServerError:
                    pass
            return [r.fault for r in up.requests]

    first, again, other = run(7), run(7), run(8)
    assert first == again and first != other
    shares = {kind: first.count(kind) / len(first) for kind in ("500", "503", "no_choices", None)}
    assert 0.1 < shares["500"] < 0.3 and 0.03 < shares["503"] < 0.2
    assert 0.03 < shares["no_choices"] < 0.2 and 0.45 < shares[None] < 0.75


@loopback
def test_256_concurrent_connections() -> None:
    async def main(up: Upstream) -> list[str]:
        c = openai.AsyncOpenAI(base_url=up.base_url, api_key=KEY, max_retries=0, timeout=30)
        replies = await asyncio.gather(
            *(
                c.chat.completions.create(model="m", messages=[{"role": "user", "content": str(i)}])
                for i in range(256)
            )
        )
        await c.close()
        return [r.id for r in replies]

    with Upstream({"m": ModelSpec(latency_s=2.0)}) as up:
        ids = asyncio.run(main(up))
        assert len(set(ids)) == 256 and len(up.requests) == 256
        assert up.max_concurrent == 256
    assert sorted(r.body["messages"][0]["content"] for r in up.requests) == sorted(
        str(i) for i in range(256)
    )


@loopback
def test_stop_ends_a_request_in_flight() -> None:
    outcome: list[BaseException] = []
    up = Upstream({"m": ModelSpec(script=["slow"], slow_s=60)}).start()

    def call() -> None:
        try:
            client(up, timeout=30).chat.completions.create(model="m", messages=HI)
        except openai.APIError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    while not up.requests:
        thread.join(0.01)
    up.stop()
    thread.join(10)
    assert not thread.is_alive() and isinstance(outcome[0], openai.APIConnectionError)
    assert not up.running


def write_cassette(path: Path) -> None:
    sse = (
        'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"glm-4.7",'
        '"choices":[{"index":0,"delta":{"content":"canned stream"},"finish_reason":null}]}\n\n'
        "data: [DONE]\n\n"
    )
    plain = {
        "id": "c2",
        "object": "chat.completion",
        "created": 1,
        "model": "glm-4.7",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "canned reply"},
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    }
    uri = "https://gateway.example/v1/chat/completions"
    path.write_text(
        yaml.safe_dump(
            {
                "interactions": [
                    {
                        "request": {
                            "method": "POST",
                            "uri": uri,
                            "body": json.dumps(
                                {"model": "glm-4.7", "messages": HI, "stream": True}
                            ),
                        },
                        "response": {
                            "status": {"code": 200, "message": "OK"},
                            "headers": {"Content-Type": ["text/event-stream"]},
                            "body": {"string": sse},
                        },
                    },
                    {
                        "request": {
                            "method": "POST",
                            "uri": uri,
                            "parsed_body": {"model": "glm-4.7", "messages": HI},
                        },
                        "response": {
                            "status": {"code": 200, "message": "OK"},
                            "headers": {"Content-Type": ["application/json"]},
                            "parsed_body": plain,
                        },
                    },
                    {
                        "request": {
                            "method": "GET",
                            "uri": "https://gateway.example/v1/models",
                            "body": None,
                        },
                        "response": {
                            "status": {"code": 200},
                            "headers": {},
                            "body": {"string": "{}"},
                        },
                    },
                ]
            }
        )
    )


@loopback
def test_canned_responses_from_a_cassette(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    write_cassette(path)
    canned = load_cassette(path)
    assert list(canned) == ["glm-4.7"] and [c.stream for c in canned["glm-4.7"]] == [True, False]
    with Upstream({m: ModelSpec(canned=c) for m, c in canned.items()}) as up:
        c = client(up)
        r = c.chat.completions.create(model="glm-4.7", messages=HI)
        assert r.choices[0].message.content == "canned reply" and r.usage.total_tokens == 11
        chunks = list(c.chat.completions.create(model="glm-4.7", messages=HI, stream=True))
        assert chunks[0].choices[0].delta.content == "canned stream"
        # other models still get generated replies
        assert (
            "stand-in"
            in c.chat.completions.create(model="other", messages=HI).choices[0].message.content
        )


@loopback
def test_unknown_model_wrong_key_and_bad_body() -> None:
    with Upstream({"m": ModelSpec()}, default=None, api_key=KEY) as up:
        c = client(up)
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            c.chat.completions.create(model="nope", messages=HI)
        wrong = openai.OpenAI(base_url=up.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.chat.completions.create(model="m", messages=HI)
        with pytest.raises(openai.BadRequestError):
            c.post("/chat/completions", body={"model": "m"}, cast_to=object)
        assert [m.id for m in c.models.list()] == ["m"]
    assert all(KEY not in repr(r) and "wrong" not in r.headers.values() for r in up.requests)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "example.com", "::"])
def test_binds_loopback_only(host: str) -> None:
    with pytest.raises(ValueError, match="not a loopback address; .* binds 127.0.0.1 only"):
        Upstream(host=host)


@pytest.mark.parametrize("host", ["::1", "localhost", "127.0.0.2"])
def test_binds_127_0_0_1_and_no_other_loopback_address(host: str) -> None:
    with pytest.raises(ValueError, match=r"is a loopback address; .* binds 127.0.0.1 only"):
        Upstream(host=host)


def test_fault_names_are_the_documented_ones() -> None:
    assert (
        set(FAULTS)
        == set(PRESETS)
        == {
            "429",
            "500",
            "502",
            "503",
            "slow",
            "reset",
            "cut",
            "malformed",
            "error_event",
            "no_choices",
            "400",
            "401",
            "404",
            "context",
            "timeout",
            "connect",
            "stream-error",
            "stream-break",
        }
    )
    covered = {fault for fault, _, _ in FAULT_CASES} | {"error_event", "no_choices"}
    assert covered == set(FAULTS)
    assert all(parse_fault(name).label == name for name in FAULTS)


# -- the fault vocabulary ---------------------------------------------------------------------
def test_every_fault_kind_has_a_constructor_and_a_one_line_doc() -> None:
    made = {
        testing.rate_limit(2),
        testing.server_error(504),
        testing.bad_request(),
        testing.context_length(),
        testing.unsupported("tools"),
        testing.unauthorized(),
        testing.not_found(),
        testing.hang(1),
        testing.reset(),
        testing.connect_error(),
        testing.trickle(100),
        testing.keepalive_forever(),
        testing.empty_deltas_forever(),
        testing.broken_stream(3),
        testing.no_finish(),
        testing.malformed(),
        testing.error_body(),
        testing.no_choices(),
        testing.wrong_content(),
    }
    assert {f.kind for f in made} == set(FaultKind)
    assert testing.timeout is testing.hang
    source = Path(testing.faults.__file__).read_text("utf-8")
    for kind in FaultKind:
        [line] = [ln for ln in source.splitlines() if f'= "{kind.value}"  # ' in ln]
        assert len(line.split("#", 1)[1].strip()) > 10


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: testing.server_error(404), "server_error needs a 5xx status, got 404"),
        (lambda: testing.trickle(0), "trickle needs bytes_per_s > 0, got 0"),
        (lambda: testing.unsupported("telepathy"), "unsupported needs a feature among tools"),
        (lambda: testing.keepalive_forever(0), "keepalive_forever needs interval_s > 0"),
        (lambda: testing.broken_stream(-1), "after_chunks cannot be negative, got -1"),
        (lambda: parse_fault("teapot"), "unknown fault 'teapot'; known faults: 429, 500"),
        (lambda: parse_fault("server_error"), "unknown fault 'server_error'"),
        (lambda: ModelSpec(script=["nope"]), "unknown fault 'nope'"),
    ],
)
def test_bad_faults_are_refused_with_a_reason(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make()


def test_faults_by_kind_name_and_in_specs() -> None:
    assert parse_fault("no_finish") == testing.no_finish()
    assert parse_fault("429") == testing.rate_limit().named("429")
    spec = ModelSpec(faults={"500": 0.5, testing.no_finish(): 0.25}, script=["429", None])
    assert all(isinstance(f, Fault) for f in spec.fault_shares)
    assert [None if f is None else f.label for f in spec.fault_script] == ["429", None]


# -- the wire format --------------------------------------------------------------------------
def test_completion_and_chunks_carry_the_fields_clients_read() -> None:
    usage = wire.usage(100, 20, cached_tokens=64, reasoning_tokens=5)
    assert usage["total_tokens"] == 120
    assert usage["prompt_tokens_details"]["cached_tokens"] == 64
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 5
    call = wire.ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    body = wire.completion(
        id="chatcmpl-1",
        model="m",
        created=1,
        choices=[wire.choice(wire.message(None, tool_calls=[call]), "tool_calls")],
        usage=usage,
    )
    assert {"id", "object", "created", "model", "system_fingerprint", "usage"} <= set(body)
    assert body["choices"][0]["logprobs"] is None and body["choices"][0]["index"] == 0
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    common: dict[str, Any] = {"id": "c", "model": "m", "created": 1, "finish_reason": "stop"}
    separate = wire.stream_chunks(**common, content="a b", usage=usage)
    assert [c["choices"][0]["delta"].get("content") for c in separate[1:3]] == ["a ", "b"]
    assert separate[-1]["choices"] == [] and separate[-1]["usage"] == usage
    assert all(c["usage"] is None for c in separate[:-1])
    on_finish = wire.stream_chunks(**common, content="a", usage=usage, usage_style="on-finish")
    assert on_finish[-1]["choices"][0]["finish_reason"] == "stop"
    assert on_finish[-1]["usage"] == usage and "usage" not in on_finish[0]
    no_usage = wire.stream_chunks(**common, content="a", usage=None)
    assert all("usage" not in c for c in no_usage)
    calls = wire.stream_chunks(**common, content=None, usage=None, tool_calls=[call])
    assert calls[1]["choices"][0]["delta"]["tool_calls"][0]["id"] == "call_1"
    args = "".join(
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in calls[1:-1]
    )
    assert args == '{"city": "Paris"}'
    assert wire.sse_stream(separate).endswith(b"data: [DONE]\n\n")


def test_error_responses() -> None:
    limited = wire.rate_limited("m", 2.5)
    assert limited.status == 429 and limited.headers["retry-after"] == "3"
    assert limited.headers["retry-after-ms"] == "2500"
    assert limited.body["error"]["code"] == "rate_limit_exceeded"
    assert wire.server_error(503).body["error"]["type"] == "server_error"
    assert wire.context_length_exceeded().body["error"]["code"] == "context_length_exceeded"
    for feature in wire.CAPABILITIES:
        refused = wire.unsupported(feature)
        assert refused.status == 400 and refused.body["error"]["code"] == "unsupported_parameter"
    assert "sk-123" in wire.invalid_api_key("sk-123").body["error"]["message"]
    assert "sk-" not in wire.invalid_api_key().body["error"]["message"]


# -- new faults at the wire level ------------------------------------------------------------
class Raw:
    """One HTTP/1.1 exchange over a plain socket: what arrived, when, and whether it closed."""

    def __init__(self, up: Upstream, body: dict[str, Any], *, read_s: float = 5.0) -> None:
        data = json.dumps(body).encode()
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            f"authorization: Bearer {KEY}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\n\r\n"
        ).encode() + data
        self.pieces: list[tuple[float, bytes]] = []
        self.closed = False
        with socket.create_connection(("127.0.0.1", up.port), timeout=read_s) as sock:
            start = time.perf_counter()
            sock.sendall(request)
            sock.settimeout(0.05)
            while time.perf_counter() - start < read_s:
                try:
                    got = sock.recv(65536)
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    self.closed = True
                    break
                if not got:
                    self.closed = True
                    break
                self.pieces.append((time.perf_counter() - start, got))
                if _complete(b"".join(p for _, p in self.pieces)):
                    break
        self.raw = b"".join(p for _, p in self.pieces)
        head, _, self.body = self.raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0] else 0
        self.headers = {
            k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
        }

    def events(self) -> list[bytes]:
        """The SSE events of a chunked body (chunk framing removed)."""
        text, out = self.body, []
        while text:
            size, _, rest = text.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out.append(rest[:n])
            text = rest[n + 2 :]
        return [e for e in b"".join(out).split(b"\n\n") if e]


def _complete(raw: bytes) -> bool:
    """True once a whole response (by content-length or the last chunk) has arrived;
    never for ``connection: close``, whose end is the server closing the socket."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or b"\r\nconnection: close" in head.lower():
        return False
    for line in head.decode("latin-1").lower().split("\r\n"):
        if line.startswith("content-length:"):
            return len(body) >= int(line.split(":", 1)[1])
    return body.endswith(b"\r\n0\r\n\r\n") or body == b"0\r\n\r\n"


def ask(stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": HI, **extra}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


@loopback
def test_trickle_sends_the_body_at_the_given_rate() -> None:
    reply = "word " * 80  # ~1 kB of JSON with the rest of the completion
    with Upstream({"m": ModelSpec(script=[testing.trickle(2000)], reply=reply)}) as up:
        raw = Raw(up, ask())
        fast = Raw(up, ask())
    assert raw.status == 200 and json.loads(raw.body)["choices"][0]["message"]["content"] == reply
    took = raw.pieces[-1][0] - raw.pieces[0][0]
    assert took >= 0.8 * (len(raw.raw) - 200) / 2000
    assert len(raw.pieces) >= 10 and max(len(p) for _, p in raw.pieces) <= 200
    assert fast.pieces[-1][0] < 0.3 and len(fast.pieces) <= 3  # the next one is not trickled


@loopback
def test_hang_delays_the_head() -> None:
    with Upstream({"m": ModelSpec(script=[testing.hang(0.4)])}) as up:
        raw = Raw(up, ask())
    assert raw.pieces[0][0] >= 0.4 and raw.status == 200


@loopback
def test_keepalive_forever_sends_only_comments_until_the_client_leaves() -> None:
    fault = testing.keepalive_forever(interval_s=0.05)
    with Upstream({"m": ModelSpec(script=[fault, fault])}) as up:
        raw = Raw(up, ask(stream=True), read_s=0.6)
        plain = Raw(up, ask(), read_s=0.3)
        ok = client(up).chat.completions.create(model="m", messages=HI)  # still serving
    assert raw.status == 200 and not raw.closed
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = raw.events()
    assert len(events) >= 5 and all(e == b": keep-alive" for e in events)
    assert plain.status == 200 and not plain.closed and plain.body.count(b"1\r\n\n\r\n") >= 3
    assert ok.choices[0].finish_reason == "stop"


@loopback
def test_empty_deltas_forever() -> None:
    fault = testing.empty_deltas_forever(interval_s=0.01)
    with Upstream({"m": ModelSpec(script=[fault])}) as up:
        chunks = []
        for chunk in stream(client(up), "m"):
            chunks.append(chunk)
            if len(chunks) == 30:
                break
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.content == "" for c in chunks)
    assert all(c.choices[0].finish_reason is None for c in chunks)


@loopback
def test_broken_stream_after_n_chunks() -> None:
    with Upstream({"m": ModelSpec(script=[testing.broken_stream(after_chunks=3)])}) as up:
        raw = Raw(up, ask(stream=True))
    assert raw.closed and len(raw.events()) == 3 and not raw.body.endswith(b"0\r\n\r\n")
    assert b"[DONE]" not in raw.body and b'"finish_reason":"stop"' not in raw.body
    with Upstream({"m": ModelSpec(script=[testing.broken_stream(after_chunks=3)])}) as up:
        received = []
        with pytest.raises(openai.APIConnectionError):
            for chunk in stream(client(up), "m"):
                received.append(chunk)
    assert len(received) == 3


@loopback
def test_no_finish_closes_cleanly_without_finish_reason_or_done() -> None:
    with Upstream({"m": ModelSpec(script=[testing.no_finish(), testing.no_finish()])}) as up:
        raw = Raw(up, ask(stream=True))
        chunks = list(stream(client(up), "m"))  # no error: the stream just ends
    assert raw.closed and raw.headers["connection"] == "close"
    assert raw.body.endswith(b"0\r\n\r\n") and b"[DONE]" not in raw.body
    events = [json.loads(e.removeprefix(b"data: ")) for e in raw.events()]
    assert len(events) >= 2 and all(e["choices"][0]["finish_reason"] is None for e in events)
    assert all(e.get("usage") is None for e in events)
    assert chunks and all(c.choices[0].finish_reason is None for c in chunks)


@loopback
def test_wrong_content_type_and_empty_choices() -> None:
    spec = ModelSpec(script=[testing.wrong_content(), testing.wrong_content(), "no_choices"])
    with Upstream({"m": spec}) as up:
        plain = Raw(up, ask())
        streamed = Raw(up, ask(stream=True))
        empty = Raw(up, ask())
    assert json.loads(plain.body)["choices"][0]["message"]["content"] == 12345
    deltas = [json.loads(e.removeprefix(b"data: ")) for e in streamed.events()[:-1]]
    assert any(d["choices"] and d["choices"][0]["delta"].get("content") == 12345 for d in deltas)
    assert json.loads(empty.body)["choices"] == []


@loopback
def test_error_body_in_a_200() -> None:
    fault = testing.error_body(after_chunks=1, message="provider went away", status=503)
    with Upstream({"m": ModelSpec(script=[fault, fault])}) as up:
        plain = Raw(up, ask())
        streamed = Raw(up, ask(stream=True))
    assert plain.status == 200 and json.loads(plain.body)["error"]["code"] == 503
    events = streamed.events()
    error = json.loads(events[1].removeprefix(b"data: "))
    assert error["error"]["message"] == "provider went away" and events[-1] == b"data: [DONE]"


@loopback
def test_malformed_json() -> None:
    with Upstream({"m": ModelSpec(script=[testing.malformed(), testing.malformed()])}) as up:
        plain = Raw(up, ask())
        streamed = Raw(up, ask(stream=True))
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain.body)
    assert plain.status == 200 and int(plain.headers["content-length"]) == len(plain.body)
    bad = []
    for event in streamed.events():
        try:
            json.loads(event.removeprefix(b"data: "))
        except json.JSONDecodeError:
            bad.append(event)
    assert bad[:1] and bad[-1] == b"data: [DONE]" and len(bad) == 2


@loopback
@pytest.mark.parametrize(
    ("fault", "status", "code", "words"),
    [
        (testing.rate_limit(2.5), 429, "rate_limit_exceeded", "try again in 3s"),
        (testing.server_error(504), 504, "gateway_timeout", "did not answer"),
        (testing.context_length(), 400, "context_length_exceeded", "maximum context length"),
        (testing.unsupported("tools"), 400, "unsupported_parameter", "tools is not supported"),
        (testing.unsupported("response_format"), 400, "unsupported_parameter", "json_schema"),
        (testing.unsupported("image_input"), 400, "unsupported_parameter", "image_url"),
        (testing.unauthorized(), 401, "invalid_api_key", KEY),
        (testing.not_found(), 404, "model_not_found", "`m` does not exist"),
    ],
)
def test_http_errors(fault: Fault, status: int, code: str, words: str) -> None:
    with Upstream({"m": ModelSpec(script=[fault])}) as up:
        raw = Raw(up, ask())
        [seen] = up.requests
    error = json.loads(raw.body)["error"]
    assert raw.status == status and error["code"] == code and words in error["message"]
    assert seen.fault == fault.label and KEY not in repr(seen)
    if status == 429:
        assert raw.headers["retry-after"] == "3" and raw.headers["retry-after-ms"] == "2500"


@loopback
def test_connect_error_resets_before_any_byte() -> None:
    with Upstream({"m": ModelSpec(script=[testing.connect_error()])}) as up:
        raw = Raw(up, ask())
    assert raw.closed and raw.raw == b""


@loopback
def test_tool_calls_and_structured_output() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": "a",
            "schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
        },
    }
    with Upstream() as up:
        c = client(up)
        called = c.chat.completions.create(model="m", messages=HI, tools=tools)  # type: ignore[arg-type]
        pieces = list(stream(c, "m", tools=tools))
        shaped = c.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "Pick 7"}],
            response_format=fmt,  # type: ignore[arg-type]
        )
    [call] = called.choices[0].message.tool_calls or []
    assert called.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "example city"}
    streamed_args = "".join(
        d.function.arguments or ""
        for p in pieces
        if p.choices
        for d in p.choices[0].delta.tool_calls or []
        if d.function
    )
    assert streamed_args == call.function.arguments
    assert json.loads(shaped.choices[0].message.content or "") == {"n": 7}


def _same(data: Any) -> Any:
    """A body with what differs by design (ids, timestamps) blanked."""
    if isinstance(data, dict):
        return {k: "*" if k in ("id", "created") else _same(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_same(v) for v in data]
    return data


@loopback
@pytest.mark.parametrize("fault", [None, "no_choices", "error_event", "stream-error", "400"])
@pytest.mark.parametrize("streamed", [False, True])
def test_the_in_process_fake_and_the_server_send_the_same_body(
    fault: str | None, streamed: bool
) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    body = ask(stream=streamed, tools=tools)
    gateway = FakeGateway(faults={"m": fault} if fault else {})
    with httpx2.Client(transport=httpx2.MockTransport(gateway)) as http:
        fake = http.post("http://gateway.test/v1/chat/completions", json=body)
    with Upstream({"m": ModelSpec(script=[fault], retry_after_s=2)}) as up:
        raw = Raw(up, body)
    assert fake.status_code == raw.status
    if streamed and raw.status == 200:
        served = [e.removeprefix(b"data: ") for e in raw.events()]
        faked = [e.removeprefix(b"data: ") for e in fake.content.split(b"\n\n") if e]
        assert [_same(json.loads(e)) for e in served[:-1]] == [
            _same(json.loads(e)) for e in faked[:-1]
        ]
        assert served[-1] == faked[-1] == b"[DONE]"
    else:
        assert _same(json.loads(raw.body)) == _same(fake.json())


def test_the_in_process_fake_cuts_raises_and_refuses_like_a_transport() -> None:
    def post(fault: Fault | str, **extra: Any) -> httpx2.Response:
        gateway = FakeGateway(faults={"m": fault})
        with httpx2.Client(transport=httpx2.MockTransport(gateway)) as http:
            return http.post("http://gateway.test/v1/chat/completions", json=ask(**extra))

    with pytest.raises(httpx2.RemoteProtocolError, match="complete message body"):
        post(testing.broken_stream(after_chunks=2), stream=True)
    with pytest.raises(httpx2.ReadTimeout):
        post("timeout")
    with pytest.raises(httpx2.ConnectError):
        post("connect")
    with pytest.raises(ValueError, match="needs real time on a real socket"):
        post(testing.keepalive_forever())
    echoed = post(testing.unauthorized())
    assert echoed.status_code == 401 and "Incorrect API key provided" in echoed.text
