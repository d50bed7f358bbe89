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

The HTTP client's sockets are wrapped too (each read and write waits at most the time
left), so a response head trickled a byte at a time is bounded as well.

The bound: a request ends by its deadline, plus at most one wait for a chunk (at most the
time left when it was sent) when the client's sockets could not be wrapped.

The same hooks watch an SSE body for its ``data: [DONE]`` line (:attr:`Flight.done`), which
the SDK swallows: a stream that closes cleanly without it, and without a finish reason,
was cut short. They also bound what a body can make the client hold in memory: a plain
body over :data:`MAX_BODY_BYTES`, or a stream line over :data:`MAX_LINE_BYTES`, is a
broken response (the call falls back) rather than gigabytes read before the deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from functools import cache
from typing import Any

from routedllm.reliability.failures import _http_module

_TIMEOUTS = ("connect", "read", "write", "pool")
_KEY = "routedllm_flight"  # request extension carrying the Flight to the response hook
_DONE = b"data: [DONE]"
MAX_BODY_BYTES = 64 * 2**20
"""The largest plain (not streamed) response body read: a completion is far smaller."""
MAX_LINE_BYTES = 16 * 2**20
"""The longest line of a streamed body (an SSE event is one line of JSON)."""


class DeadlinePassed(Exception):
    """Marks a timeout raised because an attempt's total deadline passed (in ``__notes__``)."""


class Flight:
    """One request in flight: its deadline and what the hooks saw of its body.

    The deadline (``time.monotonic()`` seconds, or None) is set when the request is sent:
    ``budget_s`` after that moment, or ``call_deadline`` if earlier. Time spent before
    sending (a busy event loop, the local connection pool) is not the upstream's.
    ``done`` is None until a body is read through the hooks (None: not known, e.g. a
    client without them), then whether ``[DONE]`` arrived."""

    __slots__ = (
        "budget_s",
        "call_deadline",
        "deadline",
        "done",
        "requested",
        "streamed",
        "_held",
        "_tail",
        "_written",
    )

    def __init__(self, budget_s: float | None = None, call_deadline: float | None = None) -> None:
        self.budget_s = budget_s
        self.call_deadline = call_deadline
        self.deadline = call_deadline
        self.done: bool | None = None
        self.requested = False  # the HTTP client was handed a request
        self.streamed = False  # the body is an event stream (bounded per line, not in all)
        self._held = 0  # bytes of the body (a stream: of its current line) read so far
        self._tail = b""
        self._written = False

    def sent(self) -> None:
        """The request is handed to the HTTP client: its deadline starts (connecting and
        waiting for a pooled connection count)."""
        self.requested = True
        self._start()

    def written(self) -> None:
        """The request's first bytes reached the socket: its deadline starts again from
        here, once, so that a busy event loop between the client and the socket does not
        eat the upstream's time (connecting was bounded by the time left on its own)."""
        if not self._written:
            self._written = True
            self._start()

    def _start(self) -> None:
        if self.budget_s is not None:
            own = time.monotonic() + self.budget_s
            self.deadline = own if self.call_deadline is None else min(own, self.call_deadline)

    def left(self) -> float | None:
        """Seconds before the deadline (None: no deadline)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def oversized(self, chunk: bytes) -> str | None:
        """Why the body, with ``chunk``, is more than a response can be (else None)."""
        if self.streamed:
            end = chunk.rfind(b"\n")
            self._held = len(chunk) - end - 1 if end >= 0 else self._held + len(chunk)
            limit, what = MAX_LINE_BYTES, "a stream line"
        else:
            self._held += len(chunk)
            limit, what = MAX_BODY_BYTES, "a response body"
        if self._held <= limit:
            return None
        return f"{what} longer than {limit // 2**20} MB: not a chat completion"

    def saw(self, chunk: bytes) -> None:
        if self.done:
            return
        window = self._tail + chunk
        self.done = _DONE in window
        self._tail = window[-len(_DONE) :]


_FLIGHT: ContextVar[Flight | None] = ContextVar("routedllm_flight", default=None)


@contextmanager
def resumed(current: Flight) -> Iterator[None]:
    """Reads of a stream's body inside the block (outside :func:`flight`) keep its
    deadline at the socket too."""
    token = _FLIGHT.set(current)
    try:
        yield
    finally:
        _FLIGHT.reset(token)


def enter(current: Flight) -> Token[Flight | None]:
    """:func:`resumed` without a context manager, for a loop over a stream's chunks:
    reads until :func:`leave` keep ``current``'s deadline at the socket."""
    return _FLIGHT.set(current)


def leave(token: Token[Flight | None]) -> None:
    """End what :func:`enter` began."""
    _FLIGHT.reset(token)


@contextmanager
def flight(budget_s: float | None, call_deadline: float | None = None) -> Iterator[Flight]:
    """Requests sent inside the block end ``budget_s`` after they are sent, and by
    ``call_deadline`` (``time.monotonic()`` seconds; None: none), and report to the Flight
    yielded. Its body keeps the Flight it was sent with, even when read outside the block
    (wrap such reads in :func:`resumed` for the socket-level bound)."""
    current = Flight(budget_s, call_deadline)
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
    current.sent()
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
    if not isinstance(current, Flight):
        return
    current.done = False
    current.streamed = "event-stream" in response.headers.get("content-type", "")
    content = getattr(response, "_content", None)  # a body already in memory (a mock)
    if isinstance(content, bytes):
        current.saw(content)
    else:
        response.stream = _bounded_stream_class()(response.stream, current, response.request)


async def _aon_request(request: Any) -> None:
    _on_request(request)


async def _aon_response(response: Any) -> None:
    _on_response(response)


@cache
def _bounded_stream_class() -> type:
    http = _http_module()

    class BoundedStream(http.SyncByteStream, http.AsyncByteStream):  # type: ignore[name-defined]
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
            too_long = self._flight.oversized(chunk)
            if too_long is not None:
                raise http.RemoteProtocolError(too_long, request=self._request)
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


def _capped(timeout: float | None) -> float | None:
    """A socket operation's timeout, cut to the time the request in flight has left."""
    current = _FLIGHT.get()
    if current is None or current.deadline is None:
        return timeout
    left = max(current.deadline - time.monotonic(), 0.001)
    return left if timeout is None else min(timeout, left)


def _written() -> None:
    current = _FLIGHT.get()
    if current is not None:
        current.written()


class _DeadlineNetworkStream:
    """A socket stream whose every read and write ends by the deadline in flight: so
    a response head trickled a byte at a time cannot outlive it either (the event hooks
    only see the body)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _capped(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _written()
        self._inner.write(buffer, _capped(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: Any = None
    ) -> Any:
        return _DeadlineNetworkStream(
            self._inner.start_tls(ssl_context, server_hostname, _capped(timeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncDeadlineNetworkStream:
    """The asyncio twin of :class:`_DeadlineNetworkStream`, tied to the event loop that
    opened it.

    A pooled connection outlives the event loop that opened it (``asyncio.run`` twice,
    a test framework's loop per test), and using or closing it from another loop raised
    ``RuntimeError: Event loop is closed``. From another loop it reads as closed by the
    server (``is_readable``), so the pool drops it and opens a new one; its socket is
    closed without the old loop.
    """

    def __init__(self, inner: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._inner = inner
        self._loop = _running_loop() if loop is None else loop

    def _foreign(self) -> bool:
        """True when running on another event loop than the one that opened the stream."""
        return self._loop is not None and _running_loop() is not self._loop

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, _capped(timeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _written()
        await self._inner.write(buffer, _capped(timeout))

    async def aclose(self) -> None:
        if self._loop is not None and self._foreign():
            _abandon(self._inner, self._loop)
            return
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: Any = None
    ) -> Any:
        inner = await self._inner.start_tls(ssl_context, server_hostname, _capped(timeout))
        return _AsyncDeadlineNetworkStream(inner, self._loop)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._foreign():
            return True  # the pool closes an idle connection the server closed
        return self._inner.get_extra_info(info)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop; None outside one (or under another async library)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _abandon(stream: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Close a stream of another event loop: on that loop while it runs (another thread),
    else (closed, or no longer running) by closing its socket."""
    if loop.is_running() and not loop.is_closed():
        try:
            asyncio.run_coroutine_threadsafe(stream.aclose(), loop)
            return
        except RuntimeError:  # closed meanwhile
            pass
    sock = stream.get_extra_info("socket")
    close = getattr(getattr(sock, "_sock", sock), "close", None)  # asyncio's TransportSocket
    if close is not None:
        try:
            close()
        except OSError:  # pragma: no cover - already closed
            pass


class _AsyncDeadlineBackend:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
        return _AsyncDeadlineNetworkStream(await self._inner.connect_tcp(*args, **kwargs))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        return _AsyncDeadlineNetworkStream(await self._inner.connect_unix_socket(*args, **kwargs))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _DeadlineBackend:
    """The connection pool's network backend, handing out :class:`_DeadlineNetworkStream`."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
        return _DeadlineNetworkStream(self._inner.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        return _DeadlineNetworkStream(self._inner.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _bound_sockets(client: Any, *, is_async: bool) -> bool:
    """Wrap a sync client's connection pool backend (httpx's default transport); False
    when the client has no such pool (a mock transport, a custom one): its body is still
    bounded by the hooks, its head by each read's timeout only."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is None:
        return False
    wrapper = _AsyncDeadlineBackend if is_async else _DeadlineBackend
    if not isinstance(backend, wrapper):
        pool._network_backend = wrapper(backend)  # type: ignore[union-attr]
    return True


def install(client: Any, *, is_async: bool) -> Any:
    """Add the deadline hooks to an HTTP client (httpx or httpx2, sync or async), once,
    and bound its sockets when it uses httpx's default transport."""
    _bound_sockets(client, is_async=is_async)
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
