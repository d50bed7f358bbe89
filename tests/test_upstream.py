"""The stand-in upstream, seen through the openai client: replies, streams, every fault."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import openai
import pytest
import yaml

from routedllm.testing import FAULTS, ModelSpec, Upstream, load_cassette

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

KEY = "ga_TESTSECRET_0123456789abcdef"
HI = [{"role": "user", "content": "Say hello in five words."}]


def client(up: Upstream, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=up.base_url, api_key=KEY, max_retries=0, timeout=timeout)


def stream(c: openai.OpenAI, model: str, **kw):
    return c.chat.completions.create(
        model=model, messages=HI, stream=True, stream_options={"include_usage": True}, **kw
    )


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


def test_estimated_usage_answer_model_and_length_cap() -> None:
    with Upstream({"alias": ModelSpec(answer_model="gpt-4o-2024-08-06")}) as up:
        c = client(up)
        r = c.chat.completions.create(model="alias", messages=HI)
        assert r.model == "gpt-4o-2024-08-06"
        assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
        capped = c.chat.completions.create(model="alias", messages=HI, max_tokens=2)
        assert capped.choices[0].finish_reason == "length" and capped.usage.completion_tokens == 2


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
]


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
    if streamed and fault in ("cut", "malformed", "error_event"):
        assert received, "a stream that breaks midway first delivers some chunks"
    if fault == "error_event":
        assert "mid-stream" in str(info.value)


def test_error_body_in_a_plain_200_and_no_choices() -> None:
    with Upstream({"m": ModelSpec(script=["error_event", "no_choices", "no_choices"])}) as up:
        c = client(up)
        broken = c.chat.completions.create(model="m", messages=HI)
        assert broken.choices is None and broken.model_extra["error"]["message"]
        empty = c.chat.completions.create(model="m", messages=HI)
        assert empty.choices == [] and empty.usage.total_tokens > 0
        chunks = list(stream(c, "m"))
    assert chunks and all(ch.choices == [] for ch in chunks) and chunks[-1].usage is not None


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
    with pytest.raises(ValueError, match="not a loopback address"):
        Upstream(host=host)


def test_fault_names_are_the_documented_ones() -> None:
    assert set(FAULTS) == {
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
    }
    covered = {fault for fault, _, _ in FAULT_CASES} | {"error_event", "no_choices"}
    assert covered == set(FAULTS)
