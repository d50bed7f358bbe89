"""A stand-in for the gateway's ``/chat/completions``, used to build cassettes and in unit tests.

``FakeGateway`` is an ``httpx2.MockTransport`` handler: it answers from the request alone,
in the OpenAI wire format (ids, ``created``, ``usage`` with ``prompt_tokens_details``, SSE
with a final usage chunk, ``x-request-id``, ``retry-after`` on 429). It calls the bound
tool when tools are given, and fills structured output from the requested JSON schema.
Faults and provider quirks (usage on the finish chunk, tool call id ``"0"``, reasoning
text, an error event inside a 200 stream, whitespace before the JSON) are set per model.
Every response carries ``x-routedllm-constructed: fake-gateway``, so cassettes built from
it say how they were made.

Cassette tests get their clients from :func:`gateway_params`: the fake gateway when
``ROUTEDLLM_CASSETTE_BUILD=1`` (``scripts/build_cassettes.py`` sets it), else none, so
vcrpy replays the cassette (or, in a live record run, the real gateway answers).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from routedllm import Catalog

CASSETTE_DIR = Path(__file__).resolve().parents[1] / "cassettes"
BUILD_ENV = "ROUTEDLLM_CASSETTE_BUILD"
CONSTRUCTED_HEADER = "x-routedllm-constructed"
REPLAY_KEY = "replay-key-not-a-secret"
ROUTING_CATALOG = Path(__file__).with_name("routing_catalog.yaml")
# langchain-openai probes TCP keep-alive support with a socket when it builds its default
# HTTP client; the socket ban blocks the probe, which only drops the keep-alive options.
SOCKET_PROBE_ALLOWED = pytest.mark.filterwarnings(
    "ignore:A test tried to use socket.socket:UserWarning"
)


def test_catalog() -> Catalog:
    """The catalog the chat-model tests route with (``tests/routing_catalog.yaml``)."""
    return Catalog.from_dict(
        yaml.safe_load(ROUTING_CATALOG.read_text("utf-8")), origin=str(ROUTING_CATALOG)
    )


test_catalog.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def building() -> bool:
    """True while ``scripts/build_cassettes.py`` rebuilds the cassettes."""
    return os.environ.get(BUILD_ENV) == "1"


def gateway_params(gateway: FakeGateway | None = None) -> dict[str, Any]:
    """Client params for a cassette test: the fake gateway's while building, else none."""
    return (gateway or FakeGateway()).clients() if building() else {}


def api_key() -> str:
    """The key cassette tests use: the live key when recording, else a placeholder."""
    return os.environ.get("GLOBAL_API_KEY") or REPLAY_KEY


# -- faults ---------------------------------------------------------------------------------
def _error(
    status: int,
    message: str,
    kind: str,
    code: Any,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    return (
        status,
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        headers or {},
    )


def _fault(name: str, model: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    if name == "429":
        return _error(
            429,
            f"Rate limit reached for {model} on requests per min (RPM): Limit 60, "
            "Used 60, Requested 1. Please try again in 2s.",
            "requests",
            "rate_limit_exceeded",
            {"retry-after": "2", "x-ratelimit-remaining-requests": "0"},
        )
    if name in ("500", "502", "503"):  # OpenRouter-style body: an integer code
        return _error(int(name), "Upstream provider returned an error", "server_error", int(name))
    if name == "400":
        return _error(
            400,
            "Invalid value for 'temperature': must be between 0 and 2.",
            "invalid_request_error",
            "invalid_value",
            param="temperature",
        )
    if name == "401":
        return _error(
            401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
        )
    if name == "404":
        return _error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )
    if name == "context":
        return _error(
            400,
            "This model's maximum context length is 128000 tokens. However, your "
            "messages resulted in 131072 tokens. Please reduce the length of the "
            "messages.",
            "invalid_request_error",
            "context_length_exceeded",
            param="messages",
        )
    raise ValueError(f"unknown fault {name!r}")


# -- the gateway ----------------------------------------------------------------------------
@dataclass
class FakeGateway:
    """Answers chat completions; ``faults`` maps a model id to a fault name.

    Fault names: ``"429"``, ``"500"``, ``"502"``, ``"503"``, ``"400"``, ``"401"``,
    ``"404"``, ``"context"`` (HTTP errors); ``"stream-error"`` (a 200 stream with an error
    event right after the role chunk); ``"stream-break"`` (an error event after the first
    text chunk); ``"timeout"`` and ``"connect"`` (transport errors, which cannot go into a
    cassette).
    """

    faults: dict[str, str] = field(default_factory=dict)
    usage: str = "separate"  # "separate" (OpenAI), "on-finish" (GLM, DeepSeek) or "none"
    cached_tokens: int = 0
    reasoning: str | None = None
    kimi_tool_calls: bool = False  # tool call id "0", no finish_reason (Kimi via OpenRouter)
    leading_whitespace: bool = False  # keep-alive padding before the JSON (OpenRouter)
    served_suffix: str = ""  # the served model id is the requested one plus this
    requests: list[dict[str, Any]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def scripted(self) -> bool:
        """True when the answers differ from a plain gateway's (a live run cannot redo them)."""
        return bool(
            self.faults
            or self.usage != "separate"
            or self.cached_tokens
            or self.reasoning
            or self.kimi_tool_calls
            or self.leading_whitespace
        )

    def clients(self) -> dict[str, Any]:
        return {
            "http_client": httpx2.Client(transport=httpx2.MockTransport(self)),
            "http_async_client": httpx2.AsyncClient(transport=httpx2.MockTransport(self)),
        }

    def models(self) -> list[str]:
        """The model of each request, in order."""
        return [r["model"] for r in self.requests]

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        self.urls.append(str(request.url))
        model = body["model"]
        fault = self.faults.get(model)
        digest = hashlib.sha256(request.content + str(len(self.requests)).encode()).hexdigest()
        headers = {
            "x-request-id": f"req_{digest[:24]}",
            CONSTRUCTED_HEADER: "fake-gateway",
            "date": email.utils.formatdate(self.created, usegmt=True),
        }
        if fault == "timeout":
            raise httpx2.ReadTimeout("timed out", request=request)
        if fault == "connect":
            raise httpx2.ConnectError("connection refused", request=request)
        if fault and not fault.startswith("stream-"):
            status, error, extra = _fault(fault, model)
            return httpx2.Response(status, json=error, headers={**headers, **extra})
        reply = _Reply(body, self)
        if body.get("stream"):
            return httpx2.Response(
                200,
                content=reply.sse(f"chatcmpl-{digest[:29]}", fault).encode(),
                headers={**headers, "content-type": "text/event-stream; charset=utf-8"},
            )
        text = json.dumps(reply.completion(f"chatcmpl-{digest[:29]}"), ensure_ascii=False)
        if self.leading_whitespace:
            text = "\n" + " " * 2048 + "\n" + text
        return httpx2.Response(
            200, content=text.encode(), headers={**headers, "content-type": "application/json"}
        )


class _Reply:
    """What the fake model says to one request: text, a tool call, or JSON."""

    def __init__(self, body: dict[str, Any], gateway: FakeGateway) -> None:
        self.body = body
        self.gw = gateway
        self.model = body["model"] + gateway.served_suffix
        messages = body.get("messages") or []
        self.last = messages[-1] if messages else {"role": "user", "content": ""}
        self.prompt = _text(self.last.get("content"))
        self.prompt_tokens = (
            sum(len(_text(m.get("content"))) // 4 + 4 for m in messages)
            + len(json.dumps(body.get("tools") or "")) // 4
        )
        self.tool_call = self._tool_call()
        self.content = None if self.tool_call else _cut(self._content(), body.get("stop"))

    def _tool_call(self) -> dict[str, Any] | None:
        tools = self.body.get("tools")
        choice = self.body.get("tool_choice")
        if not tools or choice == "none" or self.last.get("role") == "tool":
            return None
        if isinstance(choice, dict):
            name = choice["function"]["name"]
            fn = next(t["function"] for t in tools if t["function"]["name"] == name)
        else:
            named = [t["function"] for t in tools if t["function"]["name"] in self.prompt]
            fn = (named or [tools[0]["function"]])[0]
        args = _Example(self.prompt).value(fn.get("parameters") or {"type": "object"})
        return {"name": fn["name"], "arguments": json.dumps(args, ensure_ascii=False)}

    def _content(self) -> str:
        fmt = self.body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            schema = fmt["json_schema"].get("schema") or {"type": "object"}
            return json.dumps(_Example(self.prompt).value(schema), ensure_ascii=False)
        if fmt.get("type") == "json_object":
            keys = re.findall(r"'(\w+)'", self.prompt) or ["answer"]
            return json.dumps({k: _Example(self.prompt).string(k) for k in keys})
        if self.last.get("role") == "tool":
            return f"The tool returned {_text(self.last.get('content'))}."
        lower = self.prompt.lower()
        if any(part.get("type") == "image_url" for part in _parts(self.last.get("content"))):
            return "The image shows a single red pixel on a white background."
        if "haiku" in lower:
            return (
                "Soft rain on the roof,\nthe kettle begins to sing,\n"
                "the cat stretches slow.\n\nMorning light spills in,\n"
                "dust drifts through a golden beam,\nthe house breathes again."
            )
        if "story" in lower:
            return (
                "A small grey cat named Pip found a sunbeam on the library floor. She followed "
                "it from shelf to shelf all afternoon, and when the sun went down she curled "
                "up where the last of the light had been."
            )
        if "how are you" in lower:
            return "I'm doing well, thank you for asking! How can I help you today?"
        if re.search(r"\b(hello|hi|hey)\b", lower):
            return "Hello! How can I help you today?"
        return "Here is a short answer to your request."

    def _usage(self, completion_tokens: int) -> dict[str, Any]:
        reasoning = len(self.gw.reasoning or "") // 4
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens + reasoning,
            "total_tokens": self.prompt_tokens + completion_tokens + reasoning,
            "prompt_tokens_details": {
                "cached_tokens": min(self.gw.cached_tokens, self.prompt_tokens),
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _completion_tokens(self) -> int:
        out = self.content if self.content is not None else self.tool_call["arguments"]  # type: ignore[index]
        return max(1, len(out) // 4)

    def completion(self, cid: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.content,
            "refusal": None,
            "annotations": [],
        }
        if self.gw.reasoning:
            message["reasoning_content"] = self.gw.reasoning
        if self.tool_call:
            message["tool_calls"] = [
                {"id": self._call_id(cid), "type": "function", "function": self.tool_call}
            ]
        return {
            "id": cid,
            "object": "chat.completion",
            "created": self.gw.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if self.tool_call else "stop",
                }
            ],
            "usage": self._usage(self._completion_tokens()),
            "system_fingerprint": "fp_routedllm",
        }

    def _call_id(self, cid: str) -> str:
        return "0" if self.gw.kimi_tool_calls else f"call_{cid[-24:]}"

    def sse(self, cid: str, fault: str | None) -> str:
        include_usage = (self.body.get("stream_options") or {}).get("include_usage")
        style = self.gw.usage if include_usage else "none"

        def chunk(
            delta: dict[str, Any] | None, finish: str | None = None, usage: Any = None
        ) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": self.gw.created,
                "model": self.model,
                "system_fingerprint": "fp_routedllm",
            }
            data["choices"] = (
                []
                if delta is None
                else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            )
            if style == "separate" or usage is not None:
                data["usage"] = usage
            return data

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        if fault == "stream-error":  # nothing shown yet: only the role chunk came first
            events.append({"error": {"code": 502, "message": "Upstream connection reset"}})
            return _sse(events)
        for piece in _pieces(self.gw.reasoning or ""):
            events.append(chunk({"reasoning_content": piece}))
        finish = "stop"
        if self.tool_call:
            call_id, name, args = (
                self._call_id(cid),
                self.tool_call["name"],
                self.tool_call["arguments"],
            )
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": call_id,
                                "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            for piece in _pieces(args, 12):
                events.append(
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                )
            finish = None if self.gw.kimi_tool_calls else "tool_calls"
        else:
            for i, piece in enumerate(_pieces(self.content or "")):
                events.append(chunk({"content": piece}))
                if i == 0 and fault == "stream-break":
                    events.append({"error": {"code": 502, "message": "Upstream connection reset"}})
                    return _sse(events)
        usage = self._usage(self._completion_tokens())
        if style == "on-finish" or (self.gw.kimi_tool_calls and style != "none"):
            events.append(chunk({}, finish, usage))
        else:
            events.append(chunk({}, finish))
            if style == "separate":
                events.append(chunk(None, usage=usage))
        return _sse(events)


class _Example:
    """Example values for a JSON schema, taken from the prompt where it has them."""

    _WORDS = {
        "setup": "Why did the cat sit on the computer?",
        "punchline": "To keep an eye on the mouse.",
        "location": "San Francisco, CA",
        "answer_style": "pirate",
    }

    def __init__(self, prompt: str) -> None:
        self.prompt = prompt
        self.ints = [int(n) for n in re.findall(r"-?\d+", prompt)]
        self.quoted = re.findall(r"'([^']+)'", prompt)

    def value(
        self, schema: dict[str, Any], name: str = "", defs: dict[str, Any] | None = None
    ) -> Any:
        defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
        if "$ref" in schema:
            return self.value(defs[schema["$ref"].rsplit("/", 1)[-1]], name, defs)
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                options = [s for s in schema[key] if s.get("type") != "null"]
                return self.value(options[0], name, defs) if options else None
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type", "object")
        if kind == "object":
            props = schema.get("properties", {})
            return {k: self.value(v, k, defs) for k, v in props.items()}
        if kind == "array":
            return [self.value(schema.get("items", {"type": "string"}), name, defs)]
        if kind == "integer":
            return self.ints.pop(0) if self.ints else 1
        if kind == "number":
            return float(self.ints.pop(0)) if self.ints else 1.5
        if kind == "boolean":
            return True
        return self.string(name)

    def string(self, name: str) -> str:
        if name in self._WORDS:
            return self._WORDS[name]
        if self.quoted:
            return self.quoted.pop(0)
        return f"example {name}".strip()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in _parts(content) if p.get("type") == "text")


def _parts(content: Any) -> list[dict[str, Any]]:
    return [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []


def _cut(text: str, stop: Any) -> str:
    for s in [stop] if isinstance(stop, str) else (stop or []):
        if s and s in text:
            text = text[: text.index(s)]
    return text


def _pieces(text: str, size: int = 0) -> list[str]:
    """Stream-sized pieces: words with their spaces, or fixed-size slices."""
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)] or [""]
    return re.findall(r"\S+\s*|\s+", text)


def _sse(events: list[dict[str, Any]]) -> str:
    lines = [f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events]
    return "".join(lines) + "data: [DONE]\n\n"
