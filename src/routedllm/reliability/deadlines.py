"""Requests in flight: a total deadline (connect, first byte, the whole body or stream),
and whether a stream really ended (its ``[DONE]``).

An HTTP client's ``timeout`` bounds each read, not a request: a body trickled at one byte
a second, SSE keep-alive comments or empty deltas every second keep a request alive for
ever while every read succeeds. :func:`bounded` sets the deadline of the attempt about to
be sent (a context variable, so it follows the call in its thread or task); the client's
event hooks (:func:`install`) then cap the request's connect, write, pool and read
timeouts by the time left when it is sent, and raise a ``ReadTimeout`` at the first chunk
of the body (or stream) that arrives after the deadline. A slow upstream thus fails like
one that timed out, and the call falls back.

The bound: a request ends by its deadline plus at most one wait for the next chunk (so
at most twice the time left when it was sent, and usually a fraction of a second).

The same hooks watch an SSE body for its ``data: [DONE]`` line (:attr:`Flight.done`), which
the SDK swallows: a stream that closes cleanly without it, and without a finish reason,
was cut short.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any

from routedllm.reliability.failures import _http_module

_TIMEOUTS = ("connect", "read", "write", "pool")
_KEY = "routedllm_flight"  # request extension carrying the Flight to the response hook
_DONE = b"data: [DONE]"


class DeadlinePassed(Exception):
    """Marks a timeout raised because an attempt's total deadline passed (in ``__notes__``)."""


class Flight:
    """One request in flight: its deadline (``time.monotonic()`` seconds, or None) and what
    the hooks saw of its body. ``done`` is None until a body is read through the hooks
    (None: not known, e.g. a client without them), then whether ``[DONE]`` arrived."""

    __slots__ = ("deadline", "done", "_tail")

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.done: bool | None = None
        self._tail = b""

    def saw(self, chunk: bytes) -> None:
        if self.done:
            return
        window = self._tail + chunk
        self.done = _DONE in window
        self._tail = window[-len(_DONE) :]


_FLIGHT: ContextVar[Flight | None] = ContextVar("routedllm_flight", default=None)


@contextmanager
def flight(deadline: float | None) -> Iterator[Flight]:
    """Requests sent inside the block end by ``deadline`` (``time.monotonic()`` seconds;
    None: no deadline) and report to the Flight yielded. Only the moment a request is sent
    matters: its body keeps the Flight it was sent with, even when read outside the block."""
    current = Flight(deadline)
    token = _FLIGHT.set(current)
    try:
        yield current
    finally:
        _FLIGHT.reset(token)


def passed_message(deadline: float) -> str:
    late = time.monotonic() - deadline
    return f"the attempt's deadline passed {late:.1f}s ago while its response was still coming"


def _on_request(request: Any) -> None:
    current = _FLIGHT.get()
    if current is None:
        return
    request.extensions[_KEY] = current
    if current.deadline is None:
        return
    left = max(current.deadline - time.monotonic(), 0.001)
    timeouts = dict(request.extensions.get("timeout") or {})
    for name in _TIMEOUTS:
        value = timeouts.get(name)
        timeouts[name] = left if value is None else min(value, left)
    request.extensions["timeout"] = timeouts


def _on_response(response: Any) -> None:
    current = response.request.extensions.get(_KEY)
    if isinstance(current, Flight):
        current.done = False
        response.stream = _bounded_stream_class()(response.stream, current, response.request)


async def _aon_request(request: Any) -> None:
    _on_request(request)


async def _aon_response(response: Any) -> None:
    _on_response(response)


@cache
def _bounded_stream_class() -> type:
    http = _http_module()

    class BoundedStream(http.SyncByteStream, http.AsyncByteStream):  # type: ignore[misc,name-defined]
        """A response body that raises ``ReadTimeout`` at the first chunk past the deadline."""

        def __init__(self, inner: Any, current: Flight, request: Any) -> None:
            self._inner = inner
            self._flight = current
            self._request = request

        @property
        def elapsed(self) -> Any:
            return getattr(self._inner, "elapsed", None)

        def _check(self, chunk: bytes) -> None:
            deadline = self._flight.deadline
            if deadline is not None and time.monotonic() > deadline:
                error = http.ReadTimeout(passed_message(deadline), request=self._request)
                error.add_note(DeadlinePassed.__name__)
                raise error
            self._flight.saw(chunk)

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                self._check(chunk)
                yield chunk

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self._inner:
                self._check(chunk)
                yield chunk

        def close(self) -> None:
            self._inner.close()

        async def aclose(self) -> None:
            await self._inner.aclose()

    return BoundedStream


def install(client: Any, *, is_async: bool) -> Any:
    """Add the deadline hooks to an HTTP client (httpx or httpx2, sync or async), once."""
    hooks: dict[str, list[Callable[..., Any]]] = {
        name: list(client.event_hooks.get(name, [])) for name in ("request", "response")
    }
    on_request, on_response = (
        (_aon_request, _aon_response) if is_async else (_on_request, _on_response)
    )
    if on_request not in hooks["request"]:
        hooks["request"].append(on_request)
    if on_response not in hooks["response"]:
        hooks["response"].append(on_response)
    client.event_hooks = hooks
    return client


def deadline_passed(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception in its chain) is a deadline's ``ReadTimeout``."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if DeadlinePassed.__name__ in getattr(cause, "__notes__", ()):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False
