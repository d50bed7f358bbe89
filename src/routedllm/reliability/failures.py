"""What an upstream failure means for a call: fall back, move to a larger window, or stop.

Upstream faults (rate limits, 5xx, redirects, timeouts, lost connections, a model the
gateway does not serve, a 200 whose body is not a usable completion) fall back to the
decision's next model; a context-length error falls back only to a model with a larger
window; a 400 that says the model does not support a capability the call uses (tools, a
response format, images) falls back to a model that may have it; other caller errors
(400, 401, 403, 422) are raised at once.
"""

from __future__ import annotations

import email.utils
import importlib
import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any, Literal

import openai
from langchain_core.exceptions import ContextOverflowError

Action = Literal["fallback", "context", "capability", "fatal"]

_RETRYABLE_STATUS = frozenset({404, 408, 409, 429})


class MalformedResponseError(Exception):
    """A 200 whose body is not a usable completion (no choices, not a chat completion).

    An upstream fault like a 5xx: the call falls back, so this never reaches the caller
    except as the ``__cause__`` of an :class:`~routedllm.core.errors.AllAttemptsFailedError`.
    """


class UpstreamErrorBody(openai.APIError):
    """A 200 whose body is an error object, read like an error event in a stream: its
    ``code`` says whether it is the upstream's fault (5xx or none: falls back) or the
    caller's (400, 401, 403, 422: raised, as an ``openai.APIError``)."""

    def __init__(self, error: object, url: str | None = None) -> None:
        body = error if isinstance(error, dict) else {"message": str(error)}
        message = body.get("message") or "a 200 response whose body is an error object"
        request = _http_module().Request("POST", url or "http://upstream/chat/completions")
        super().__init__(str(message), request, body=body)


def completion_problem(data: object) -> str | None:
    """Why a 200 chat-completion body is no usable completion, or None when it is one: not
    a JSON object, no choices, or a choice without a message. An error object in the body
    is not judged here (see :class:`UpstreamErrorBody`); check it first."""
    if not isinstance(data, Mapping):
        return f"a 200 response that is not a JSON object ({data!r:.40})"
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        return "a 200 response without choices (no completion in it)"
    if not all(isinstance(c, Mapping) and isinstance(c.get("message"), Mapping) for c in choices):
        return "a 200 response whose choices carry no message"
    return None


def _http_module() -> Any:
    """The HTTP package the openai SDK is built on (httpx, or httpx2 in openai 3), found
    through its public ``DefaultHttpxClient``."""
    for cls in openai.DefaultHttpxClient.__mro__:
        package = cls.__module__.split(".")[0]
        if cls.__name__ == "Client" and package in ("httpx", "httpx2"):
            return importlib.import_module(package)
    raise RuntimeError("the openai SDK's HTTP client is neither httpx nor httpx2")


_UNSUPPORTED = re.compile(
    r"not (be )?supported|only supported|unsupported|does not support|doesn'?t support|"
    r"not available|"
    r"unavailable|not enabled|is not allowed|cannot (be used|accept)|no support",
    re.IGNORECASE,
)
_CAPABILITY_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("tools", re.compile(r"\btool|function[ _-]?call|\bfunctions?\b", re.IGNORECASE)),
    (
        "json_schema",
        re.compile(r"json[ _-]?schema|structured[ _-]?output|strict", re.IGNORECASE),
    ),
    ("structured_output", re.compile(r"response[ _-]?format|json[ _-]?(mode|object)", re.I)),
    ("image_input", re.compile(r"image|vision|multi-?modal|image_url", re.IGNORECASE)),
)


def unsupported_capabilities(exc: BaseException) -> frozenset[str]:
    """The capabilities a 400 says the model does not support (empty for other errors):
    "tools are not supported for this model", "response_format json_schema is unavailable",
    "image input is not supported", as gateways and providers word it."""
    if status_of(exc) != 400 and not isinstance(exc, openai.BadRequestError):
        return frozenset()
    text = _error_message(exc)
    if not _UNSUPPORTED.search(text):
        return frozenset()
    found = {cap for cap, words in _CAPABILITY_WORDS if words.search(text)}
    if "json_schema" in found:  # "response_format json_schema is not supported": only that
        found.discard("structured_output")
    return frozenset(found)


def _error_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        message = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(message, str) and message:
            return message
    return str(exc)


def classify(exc: BaseException) -> Action:
    """What a failed attempt means for the call: try the next model, a larger one, one with
    the capability, or stop."""
    if (
        isinstance(exc, ContextOverflowError)
        or getattr(exc, "code", None) == "context_length_exceeded"
    ):
        return "context"
    if unsupported_capabilities(exc):
        return "capability"
    # Lost connections and timeouts (incl. APITimeoutError), and 200s whose body is broken:
    # malformed JSON, no choices, a stream cut at the transport.
    if isinstance(exc, UpstreamErrorBody):
        status = status_of(exc)
        return (
            "fatal"
            if status is not None and status not in _RETRYABLE_STATUS and status < 500
            else "fallback"
        )
    upstream_fault = (
        openai.APIConnectionError | TimeoutError | MalformedResponseError | json.JSONDecodeError
    )
    if isinstance(exc, upstream_fault) or _is_httpx(exc, "TransportError"):
        return "fallback"
    if isinstance(exc, RecursionError) and "while decoding" in str(exc):
        return "fallback"  # a body nested deeper than the JSON decoder goes: malformed
    if isinstance(exc, UnicodeDecodeError):
        return "fallback"  # bytes the upstream sent that are not its declared text
    if not isinstance(exc, openai.APIError):
        return "fatal"
    status = status_of(exc)
    if status is None:  # e.g. an error event inside a 200 stream: an upstream fault
        return "fallback"
    if 300 <= status < 400:  # a redirect the SDK does not follow: not the caller's error
        return "fallback"
    return "fallback" if status in _RETRYABLE_STATUS or status >= 500 else "fatal"


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an upstream error, or the numeric ``code`` of its error body."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    body = getattr(exc, "body", None)
    code = body.get("code") if isinstance(body, dict) else None
    if isinstance(code, str) and code.isdigit():
        return int(code)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the upstream asked to wait (``retry-after-ms``, ``retry-after`` or a date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return _bounded(seconds)
    value = headers.get("retry-after")
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        return _bounded(when.timestamp() - time.time())
    return None


MAX_RETRY_AFTER_S = 86_400.0
"""A Retry-After beyond a day is read as a day: an upstream's ``inf`` or ``1e400`` must
not reach a record (which holds only finite numbers) or a sleep."""


def _bounded(seconds: float) -> float | None:
    """A wait in [0, a day]; None for NaN (no usable value)."""
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


def never_sent(exc: BaseException) -> bool:
    """True when the request never left this process: the HTTP client's connection pool
    had no free connection within the timeout (a local limit, not the upstream's fault)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if _is_httpx(cause, "PoolTimeout"):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _is_httpx(exc: BaseException, name: str) -> bool:
    """``exc`` is an ``httpx.<name>`` of httpx or of httpx2 (which openai 3 uses instead)."""
    return any(
        cls.__name__ == name and cls.__module__.split(".")[0] in ("httpx", "httpx2")
        for cls in type(exc).__mro__
    )


def error_type(exc: BaseException) -> str:
    """A stable, low-cardinality name: the openai class (``RateLimitError``), else the class."""
    if never_sent(exc):
        return "PoolTimeout"
    for cls in type(exc).__mro__:
        if cls.__module__.startswith("openai"):
            return cls.__name__
    return type(exc).__name__
