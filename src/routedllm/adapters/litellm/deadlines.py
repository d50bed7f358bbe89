"""Total deadlines for LiteLLM's upstream attempts: a trickling upstream is cut and falls back.

LiteLLM hands its ``timeout`` and ``stream_timeout`` to the HTTP client as per-read limits,
so a body trickled a byte a second, SSE keep-alive comments or empty deltas keep an
attempt alive for ever while every read succeeds. The same rule as the LangChain chat
model (``attempt_timeout_s`` unset) applies instead: a plain attempt must have its whole
response within ``timeout`` of being sent; a stream must have its first chunk with
content (text, a tool call or a finish reason) within ``stream_timeout``; after that a
started stream runs on (a long answer is not a fault; LiteLLM's per-read limit still
applies). The response head is bounded by a timer; the body is checked as each chunk
arrives, so a body that stops sending altogether ends by LiteLLM's own read timeout (the
bound: the deadline plus at most one read timeout). A passed deadline raises
``httpx.ReadTimeout``, which LiteLLM maps to its
``Timeout``, so the router moves to the next model and the attempt is recorded as one.

The bound is put in the request's ``client``: an ``openai.AsyncOpenAI`` whose transport
(LiteLLM's own, aiohttp by default) is wrapped by :class:`DeadlineTransport`, one client
per deployment. This module imports httpx and openai, which litellm requires.

The same transport turns a plain chat completion's 200 that holds no completion (``choices``
empty, missing or null, a choice without a message, a body that is not JSON) into a 502,
and a 200 whose body is an error object into the error's own status (502 when it has none):
LiteLLM cannot fail a call from its success hook, so this is where such an answer becomes a
fault the router retries and falls back on, as the LangChain chat model does. The body is
read once, under the attempt's deadline; one that shows a choice with a message and no
``"error"`` key is passed on unparsed.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from routedllm.reliability.failures import completion_problem

# a data event that carries an answer: text, reasoning, a tool call or a finish reason
_CONTENT = re.compile(
    rb'"(?:content|reasoning_content)"\s*:\s*"[^"]'
    rb'|"tool_calls"\s*:\s*\[\s*\{'
    rb'|"finish_reason"\s*:\s*"'
)
_STREAM = re.compile(rb'"stream"\s*:\s*true')
_TAIL = 64  # bytes kept between chunks, so a marker split across two reads is still seen
# a plain completion that is certainly usable: a choice with a message, and no "error" key
_A_CHOICE = re.compile(rb'"choices"\s*:\s*\[\s*\{')
_A_MESSAGE = re.compile(rb'"message"\s*:\s*\{')
_AN_ERROR = re.compile(rb'"error"\s*:')
_CHAT_PATH = "/chat/completions"


class DeadlineTransport(httpx.AsyncBaseTransport):
    """Wraps a transport: each request ends by its deadline (see the module docstring)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, timeout_s: float, stream_s: float):
        self._inner = inner
        self.timeout_s = timeout_s
        self.stream_s = stream_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        stream = bool(_STREAM.search(request.content)) if request.content else False
        budget = self.stream_s if stream else self.timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._inner.handle_async_request(request)
                if (
                    not stream
                    and response.status_code == 200
                    and request.url.path.endswith(_CHAT_PATH)
                ):
                    return await _checked(request, response)
        except TimeoutError:
            raise _passed(request, budget, stream) from None
        response.stream = _DeadlineBody(response.stream, request, deadline, budget, stream)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _DeadlineBody(httpx.AsyncByteStream):
    """A response body read under its request's deadline: the whole body of a plain
    response; a stream's until its first chunk with content."""

    def __init__(
        self, inner: Any, request: httpx.Request, deadline: float, budget: float, stream: bool
    ) -> None:
        self._inner = inner
        self._request = request
        self._deadline: float | None = deadline
        self._budget = budget
        self._stream = stream
        self._tail = b""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Checked as each chunk arrives (no timer task per read, which would cost every
        # request): a body that stops sending altogether is ended by LiteLLM's own read
        # timeout, so the bound is the deadline plus at most one read timeout.
        loop = asyncio.get_running_loop()
        async for chunk in self._inner:
            if self._deadline is not None and loop.time() > self._deadline:
                raise _passed(self._request, self._budget, self._stream)
            if self._stream and self._deadline is not None:
                window = self._tail + chunk
                if _CONTENT.search(window):
                    self._deadline = None  # the stream has started: no total bound
                self._tail = window[-_TAIL:]
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _checked(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    """A plain chat completion's 200, read whole (the caller bounds it by the deadline):
    passed on as it came, or a fault LiteLLM retries and falls back on (see the module
    docstring)."""
    try:
        body = await response.aread()  # decoded: gzip and the like are undone here, once
    finally:
        await response.aclose()
    status, error = _fault_in(body)
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    if error is None:
        return httpx.Response(
            200,
            headers=[*headers, ("content-length", str(len(body)))],
            stream=httpx.ByteStream(body),
            request=request,
            extensions=response.extensions,
        )
    return httpx.Response(status, json={"error": error}, request=request)


def _fault_in(body: bytes) -> tuple[int, dict[str, Any] | None]:
    """The status and error object a plain 200 chat completion's ``body`` stands for:
    ``(200, None)`` when it is a usable completion."""
    if _A_CHOICE.search(body) and _A_MESSAGE.search(body) and not _AN_ERROR.search(body):
        return 200, None  # the common case: no parse here (the SDK parses it once)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested past the decoder
        data = body[:40]
    if isinstance(data, Mapping) and data.get("error"):
        return _error_body(data["error"])
    problem = completion_problem(data)
    if problem is None:
        return 200, None
    message = (
        f"routedllm: the upstream answered {problem}; read as a 502, so another attempt is made"
    )
    return 502, {"message": message, "type": "upstream_error", "param": None, "code": 502}


def _error_body(error: object) -> tuple[int, dict[str, Any]]:
    """A 200 whose body is an error object: its numeric ``code`` as the status when it is
    an HTTP error status (a 401 stays the caller's error), else 502."""
    inner = dict(error) if isinstance(error, Mapping) else {"message": str(error)}
    code = inner.get("code")
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    status = code if isinstance(code, int) and 400 <= code <= 599 else 502
    text = inner.get("message") or "no message"
    inner["message"] = f"routedllm: the upstream answered 200 with an error object: {text}"
    return status, inner


def _passed(request: httpx.Request, budget: float, stream: bool) -> httpx.ReadTimeout:
    what = "its first chunk with content" if stream else "its whole response"
    return httpx.ReadTimeout(
        f"routedllm: the upstream did not send {what} within {budget:g} s "
        "(a trickling or stalled upstream); the next model is tried",
        request=request,
    )


# one client per deployment and event loop (a client's connections belong to its loop)
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], Any]] = (
    weakref.WeakKeyDictionary()
)
_clients_lock = threading.Lock()


def bounded_client(kwargs: Mapping[str, Any]) -> Any:
    """An ``openai.AsyncOpenAI`` for the deployment of a LiteLLM call's ``kwargs`` whose
    requests end by their deadlines; None when the call has no numeric ``timeout``, is not
    an OpenAI-compatible deployment, or already brings its own client."""
    timeout = _seconds(kwargs.get("timeout"))
    model = kwargs.get("model")
    if (
        timeout is None
        or kwargs.get("client") is not None
        or not isinstance(model, str)
        or not model.startswith("openai/")
    ):
        return None
    stream_s = _seconds(kwargs.get("stream_timeout")) or timeout
    base_url, api_key = kwargs.get("api_base"), kwargs.get("api_key")
    key = (base_url, api_key, timeout, stream_s)
    loop = asyncio.get_running_loop()
    with _clients_lock:
        clients = _clients.setdefault(loop, {})
        client = clients.get(key)
        if client is None:
            import openai

            transport = DeadlineTransport(_litellm_transport(), timeout, stream_s)
            client = openai.AsyncOpenAI(
                api_key=api_key if isinstance(api_key, str) else "none",
                base_url=base_url if isinstance(base_url, str) else None,
                # on httpx, as LiteLLM's own OpenAI clients (the SDK may declare httpx2)
                http_client=httpx.AsyncClient(transport=transport, timeout=timeout),  # type: ignore[arg-type]
                max_retries=0,  # LiteLLM's router retries, and records each attempt
            )
            clients[key] = client
        return client


def _litellm_transport() -> httpx.AsyncBaseTransport:
    """The transport LiteLLM would use for its own clients (aiohttp by default)."""
    try:
        from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

        transport = AsyncHTTPHandler.create_async_transport()
    except Exception:  # another litellm release: httpx's own transport still works
        transport = None
    if isinstance(transport, httpx.AsyncBaseTransport):
        return transport
    return httpx.AsyncHTTPTransport()


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)
