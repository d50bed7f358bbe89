"""The OpenAI chat-completions wire format: response bodies, SSE chunks and error responses.

Plain functions that build JSON-ready dicts and bytes with the fields real gateways send
(``id``, ``object``, ``created``, ``model``, ``system_fingerprint``, ``choices[].index``,
``finish_reason``, ``logprobs``, ``usage`` with its token details). The loopback
``Upstream`` and the tests' in-process fakes both build their responses here, so every
stand-in speaks the same dialect.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

SYSTEM_FINGERPRINT = "fp_routedllm"
DONE = b"data: [DONE]\n\n"
"""The SSE line that ends an OpenAI stream."""
KEEP_ALIVE = b": keep-alive\n\n"
"""An SSE comment, as gateways send while a slow model has produced nothing yet."""

UsageStyle = Literal["separate", "on-finish", "none"]
"""Where a stream reports usage (when the request asks for it): a last chunk with no
choices (OpenAI), on the finish chunk (GLM, DeepSeek), or not at all."""


# -- bodies ---------------------------------------------------------------------------------
def usage(
    prompt_tokens: int,
    completion_tokens: int,
    *,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> dict[str, Any]:
    """A ``usage`` object with ``prompt_tokens_details`` and ``completion_tokens_details``."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {
            "cached_tokens": min(cached_tokens, prompt_tokens),
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the model makes: its id, function name and JSON arguments."""

    id: str
    name: str
    arguments: str

    def message_part(self) -> dict[str, Any]:
        """The call as it appears in a completion's ``message.tool_calls``."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def message(
    content: Any,
    *,
    tool_calls: Sequence[ToolCall] = (),
    reasoning: str | None = None,
) -> dict[str, Any]:
    """An assistant ``message``; ``reasoning`` goes in ``reasoning_content`` (DeepSeek, GLM)."""
    out: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "refusal": None,
        "annotations": [],
    }
    if reasoning:
        out["reasoning_content"] = reasoning
    if tool_calls:
        out["tool_calls"] = [call.message_part() for call in tool_calls]
    return out


def choice(msg: dict[str, Any], finish_reason: str | None, index: int = 0) -> dict[str, Any]:
    """One entry of a completion's ``choices``."""
    return {"index": index, "message": msg, "logprobs": None, "finish_reason": finish_reason}


def completion(
    *,
    id: str,
    model: str,
    created: int,
    choices: Sequence[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """A ``chat.completion`` body."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": list(choices),
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


_NO_USAGE: Any = object()


def chunk(
    *,
    id: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    usage: Any = _NO_USAGE,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``delta=None`` makes a chunk with no choices.

    ``usage`` is left out unless given (OpenAI sends ``"usage": null`` on every chunk when
    the request asked for usage, and the numbers on the last one).
    """
    data: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not _NO_USAGE:
        data["usage"] = usage
    return data


def stream_chunks(
    *,
    id: str,
    model: str,
    created: int,
    content: Any,
    finish_reason: str | None,
    usage: dict[str, Any] | None,
    usage_style: UsageStyle = "separate",
    tool_calls: Sequence[ToolCall] = (),
    reasoning: str | None = None,
) -> list[dict[str, Any]]:
    """The chunks of a streamed reply, in order: role, reasoning, text or tool calls, finish.

    ``usage=None`` means the request did not ask for usage (no ``usage`` keys at all);
    otherwise it goes where ``usage_style`` says. Text is split into words, tool-call
    arguments into 12-character pieces, as providers stream them.
    """
    with_usage = usage is not None and usage_style != "none"
    null: dict[str, Any] = {"usage": None} if with_usage and usage_style == "separate" else {}

    def one(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> Any:
        return chunk(
            id=id, model=model, created=created, delta=delta, finish_reason=finish, **extra
        )

    out = [one({"role": "assistant", "content": "", "refusal": None}, **null)]
    out.extend(one({"reasoning_content": piece}, **null) for piece in pieces(reasoning or ""))
    for i, call in enumerate(tool_calls):
        head = {"index": i, "id": call.id, "type": "function"}
        out.append(
            one(
                {"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]}, **null
            )
        )
        out.extend(
            one({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}, **null)
            for piece in pieces(call.arguments, 12)
        )
    if not tool_calls:
        if isinstance(content, str):
            out.extend(one({"content": piece}, **null) for piece in pieces(content))
        elif content is not None:  # a wrong-typed value, sent as it is
            out.append(one({"content": content}, **null))
    if with_usage and usage_style == "on-finish":
        out.append(one({}, finish_reason, usage=usage))
    else:
        out.append(one({}, finish_reason, **null))
        if with_usage:
            out.append(one(None, usage=usage))
    return out


def pieces(text: str, size: int = 0) -> list[str]:
    """Stream-sized pieces of ``text``: words with their spaces, or ``size``-long slices."""
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)] or [""]
    return re.findall(r"\S+\s*|\s+", text)


# -- errors ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An HTTP error as a gateway sends it: status, extra headers and an error body."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def error_body(
    message: str, type: str, code: str | int | None = None, param: str | None = None
) -> dict[str, Any]:
    """An OpenAI error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def rate_limited(model: str, retry_after_s: float) -> ErrorResponse:
    """429 with ``retry-after`` (whole seconds), ``retry-after-ms`` and rate-limit headers."""
    seconds = math.ceil(retry_after_s)
    return ErrorResponse(
        429,
        error_body(
            f"Rate limit reached for {model} on requests per min (RPM): Limit 60, Used 60, "
            f"Requested 1. Please try again in {seconds}s.",
            "requests",
            "rate_limit_exceeded",
        ),
        {
            "retry-after": str(seconds),
            "retry-after-ms": str(round(retry_after_s * 1000)),
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
        },
    )


_SERVER_ERRORS = {
    500: ("The server had an error while processing your request. Sorry about that!", None),
    502: ("Bad gateway: the upstream provider returned an invalid response.", "bad_gateway"),
    503: ("The engine is currently overloaded, please try again later.", "service_unavailable"),
    504: ("Gateway timeout: the upstream provider did not answer in time.", "gateway_timeout"),
}


def server_error(status: int = 500) -> ErrorResponse:
    """A 5xx with an OpenAI-style ``server_error`` body."""
    message, code = _SERVER_ERRORS.get(status, (f"Upstream error (HTTP {status}).", None))
    return ErrorResponse(status, error_body(message, "server_error", code))


def bad_request(
    message: str = "Invalid value for 'temperature': must be between 0 and 2.",
    *,
    code: str | None = "invalid_value",
    param: str | None = "temperature",
) -> ErrorResponse:
    """A 400 ``invalid_request_error``: the caller sent something the model refuses."""
    return ErrorResponse(400, error_body(message, "invalid_request_error", code, param))


def context_length_exceeded(limit: int = 128_000, used: int = 131_072) -> ErrorResponse:
    """The 400 a model sends when the prompt does not fit its context window."""
    return bad_request(
        f"This model's maximum context length is {limit} tokens. However, your messages "
        f"resulted in {used} tokens. Please reduce the length of the messages.",
        code="context_length_exceeded",
        param="messages",
    )


CAPABILITIES = ("tools", "response_format", "image_input")
"""The features a capability 400 can refuse."""

_UNSUPPORTED = {
    "tools": (
        "tools is not supported in this model. For a list of supported models, refer to "
        "https://platform.openai.com/docs/guides/function-calling#models-supporting-function-calling.",
        "tools",
    ),
    "response_format": (
        "Invalid parameter: 'response_format' of type 'json_schema' is not supported with "
        "this model.",
        "response_format",
    ),
    "image_input": (
        "Invalid content type. image_url is only supported by certain models.",
        "messages",
    ),
}


def unsupported(feature: str) -> ErrorResponse:
    """The 400 a model sends for a feature it lacks (one of ``CAPABILITIES``)."""
    if feature not in _UNSUPPORTED:
        raise ValueError(f"unknown capability {feature!r}; known: {', '.join(CAPABILITIES)}")
    message, param = _UNSUPPORTED[feature]
    return bad_request(message, code="unsupported_parameter", param=param)


def invalid_api_key(key: str | None = None) -> ErrorResponse:
    """401 ``invalid_api_key``; with ``key``, the body quotes it back, as some proxies do."""
    shown = f": {key}" if key is not None else ""
    return ErrorResponse(
        401,
        error_body(
            f"Incorrect API key provided{shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
    )


def model_not_found(model: str) -> ErrorResponse:
    """404 ``model_not_found``."""
    return ErrorResponse(
        404,
        error_body(
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
    )


# -- bytes ----------------------------------------------------------------------------------
def json_bytes(data: Any) -> bytes:
    """Compact UTF-8 JSON, as gateways send it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sse(data: Any) -> bytes:
    """One SSE ``data:`` event."""
    return b"data: " + json_bytes(data) + b"\n\n"


def sse_stream(chunks: Sequence[Any], *, done: bool = True) -> bytes:
    """A whole SSE body: every chunk as an event, then ``[DONE]``."""
    return b"".join(sse(c) for c in chunks) + (DONE if done else b"")
