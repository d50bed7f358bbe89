"""A loopback OpenAI-compatible stand-in upstream that injects faults, for tests.

``Upstream`` serves ``POST /v1/chat/completions`` (and ``/chat/completions``), plain and
SSE-streamed, plus ``GET /v1/models``, from a minimal asyncio HTTP/1.1 server on a
background thread. Each model (a ``ModelSpec``) answers with a generated reply or with
canned responses (e.g. from a vcrpy cassette), and fails as scripted or at configured
rates drawn from a seeded RNG, with any fault of ``routedllm.testing.faults``. Responses
are planned by ``routedllm.testing.responses`` and played here over the socket: pauses,
trickles, endless keep-alives, mid-body resets.

Every request is recorded (method, path, model, headers without credentials, body, the
fault served) for assertions. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from routedllm.testing import wire
from routedllm.testing.faults import Fault
from routedllm.testing.responses import (
    TIMING_FAULTS,
    Drop,
    Forever,
    Pause,
    Response,
    canned_response,
    error_response,
    respond,
    timed,
)
from routedllm.testing.spec import CannedResponse, ModelSpec

LOOPBACK = "127.0.0.1"
"""The one address the stand-in binds."""
# Headers never recorded: they carry credentials.
_SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization"})
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_MAX_BODY = 32 * 1024 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the upstream received (credential headers left out).

    ``fault`` is the label of the fault served (``Fault.label``), ``None`` for none.
    """

    method: str
    path: str
    model: str | None
    stream: bool
    headers: Mapping[str, str]
    body: Any
    fault: str | None
    received_at: float


@dataclass(slots=True)
class _ModelState:
    rng: random.Random
    scripted: int = 0
    canned: Counter[bool] = field(default_factory=Counter)


@dataclass(slots=True)
class _HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


_DEFAULT_SPEC = ModelSpec()


class _Dropped(Exception):
    """The response reset the connection: stop serving it."""


class Upstream:
    """The stand-in server. Use it as a context manager; ``base_url`` is what clients need.

    ``models`` maps model ids to their ``ModelSpec``; other models get ``default`` (pass
    ``default=None`` to answer them with 404 ``model_not_found``). ``seed`` fixes the fault
    draws (one RNG per model). ``api_key``, when set, is required as a bearer token.
    """

    def __init__(
        self,
        models: Mapping[str, ModelSpec] | None = None,
        *,
        default: ModelSpec | None = _DEFAULT_SPEC,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
    ) -> None:
        if host != LOOPBACK:
            kind = "a loopback address" if _is_loopback(host) else "not a loopback address"
            raise ValueError(
                f"host {host!r} is {kind}; the stand-in upstream binds {LOOPBACK} only"
            )
        self.models = dict(models or {})
        self.default = default
        self.seed = seed
        self.host = host
        self.port = port
        self._api_key = api_key
        self._records: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._states: dict[str, _ModelState] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._active = 0
        self.max_concurrent = 0
        """The most chat requests served at once so far."""

    def __repr__(self) -> str:
        where = self.base_url if self.running else "not running"
        return f"Upstream({where}, models={sorted(self.models)})"

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> Upstream:
        """Bind and serve on a background thread; returns once the port is known."""
        if self.running:
            raise RuntimeError("the upstream is already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="routedllm-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the stand-in upstream did not start within 10 s")
        if self._error is not None:
            self._thread.join(1)
            raise RuntimeError(f"the stand-in upstream failed to start: {self._error}")
        return self

    def stop(self) -> None:
        """Close the server and every open connection, and join the thread."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop already closed
                pass
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what it received -----------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order."""
        with self._lock:
            return list(self._records)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        """The requests that asked for ``model``."""
        return [r for r in self.requests if r.model == model]

    def counts(self) -> Counter[tuple[str | None, str]]:
        """Requests per (model, fault), with ``"ok"`` for requests served without a fault."""
        return Counter((r.model, r.fault or "ok") for r in self.requests)

    def clear(self) -> None:
        """Forget the recorded requests (fault draws continue where they were)."""
        with self._lock:
            self._records.clear()

    # -- server ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        inner: set[asyncio.Task[None]] = set()
        outer: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # The connection is served in an inner task, so stop() can cancel it without
            # cancelling the task asyncio's stream protocol watches (3.11 logs that as an error).
            me = asyncio.current_task()
            assert me is not None
            outer.add(me)
            task = asyncio.ensure_future(self._connection(reader, writer))
            inner.add(task)
            try:
                await asyncio.wait([task])
            finally:
                inner.discard(task)
                outer.discard(me)

        server = await asyncio.start_server(
            on_connect, self.host, self.port, backlog=1024, limit=1024 * 1024, reuse_address=True
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(inner):
                task.cancel()
            await asyncio.gather(*inner, return_exceptions=True)
            await asyncio.gather(*outer, return_exceptions=True)
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                keep_alive = await self._respond(request, writer)
                if not keep_alive:
                    break
        except _Dropped:
            return
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            OSError,
        ):
            pass
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        try:
            writer.close()
        except (ConnectionError, OSError):  # pragma: no cover - already gone
            pass

    async def _respond(self, req: _HttpRequest, writer: asyncio.StreamWriter) -> bool:
        keep_alive = req.headers.get("connection", "").lower() != "close"
        plan = self._plan(req)
        if isinstance(plan, Response):
            return await _play(writer, plan, keep_alive)
        spec, model, body, fault = plan
        self._active += 1
        self.max_concurrent = max(self.max_concurrent, self._active)
        try:
            if spec.latency_s:
                await asyncio.sleep(spec.latency_s)
            canned = None
            if fault is None or fault.kind in TIMING_FAULTS:
                canned = self._next_canned(model, spec, bool(body.get("stream")))
            if canned is not None:
                canned_plan = canned_response(canned, chunk_delay_s=spec.chunk_delay_s)
                response = timed(canned_plan, fault, spec)
            else:
                bearer = req.headers.get("authorization", "")
                response = respond(
                    body,
                    model=model,
                    spec=spec,
                    fault=fault,
                    id=f"chatcmpl-{uuid.uuid4().hex[:24]}",
                    created=int(time.time()),
                    default_text=f"Hello from {spec.answer_model or model}. "
                    "This is a stand-in reply.",
                    api_key=bearer.removeprefix("Bearer ")
                    if bearer.startswith("Bearer ")
                    else None,
                )
            return await _play(writer, response, keep_alive)
        finally:
            self._active -= 1

    def _plan(
        self, req: _HttpRequest
    ) -> Response | tuple[ModelSpec, str, dict[str, Any], Fault | None]:
        """The answer to a request the stand-in refuses, or what a chat request asks for."""
        if req.path in _MODELS_PATHS and req.method == "GET":
            self._record(req, None, False, None, None)
            data = {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "routedllm"}
                    for m in sorted(self.models)
                ],
            }
            return Response(200, {"content-type": "application/json"}, (wire.json_bytes(data),))
        if req.path not in _CHAT_PATHS:
            self._record(req, None, False, None, None)
            return _refuse(404, f"Unknown path {req.path}", "unknown_url")
        if req.method != "POST":
            self._record(req, None, False, None, None)
            return _refuse(405, f"{req.method} is not allowed on {req.path}", "method_not_allowed")
        try:
            body = json.loads(req.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._record(req, None, False, None, None)
            return _refuse(400, "We could not parse the JSON body of your request.")
        model = body.get("model") if isinstance(body, dict) else None
        stream = bool(body.get("stream")) if isinstance(body, dict) else False
        if (
            self._api_key is not None
            and req.headers.get("authorization") != f"Bearer {self._api_key}"
        ):
            self._record(req, model, stream, body, None)
            return error_response(wire.invalid_api_key())
        if not isinstance(model, str) or not isinstance(body.get("messages"), list):
            self._record(req, model, stream, body, None)
            return _refuse(400, "'model' (a string) and 'messages' (a list) are required.")
        spec = self.models.get(model, self.default)
        if spec is None:
            self._record(req, model, stream, body, None)
            return error_response(wire.model_not_found(model))
        fault = self._draw(model, spec)
        self._record(req, model, stream, body, fault)
        return spec, model, body, fault

    def _record(
        self, req: _HttpRequest, model: str | None, stream: bool, body: Any, fault: Fault | None
    ) -> None:
        headers = {k: v for k, v in req.headers.items() if k not in _SECRET_HEADERS}
        label = None if fault is None else fault.label
        record = RecordedRequest(
            req.method, req.path, model, stream, headers, body, label, time.time()
        )
        with self._lock:
            self._records.append(record)

    def _state(self, model: str) -> _ModelState:
        state = self._states.get(model)
        if state is None:
            state = self._states[model] = _ModelState(random.Random(f"{self.seed}:{model}"))
        return state

    def _draw(self, model: str, spec: ModelSpec) -> Fault | None:
        state = self._state(model)
        script = spec.fault_script
        if state.scripted < len(script):
            state.scripted += 1
            return script[state.scripted - 1]
        roll = state.rng.random()
        edge = 0.0
        for fault, share in spec.fault_shares.items():
            edge += share
            if roll < edge:
                return fault
        return None

    def _next_canned(self, model: str, spec: ModelSpec, stream: bool) -> CannedResponse | None:
        if not spec.canned:
            return None
        state = self._state(model)
        matching = [c for c in spec.canned if c.stream == stream] or list(spec.canned)
        chosen = matching[state.canned[stream] % len(matching)]
        state.canned[stream] += 1
        return chosen


def _refuse(status: int, message: str, code: str | None = None) -> Response:
    return error_response(
        wire.ErrorResponse(status, wire.error_body(message, "invalid_request_error", code))
    )


# -- playing a response over the socket -----------------------------------------------------
async def _play(writer: asyncio.StreamWriter, response: Response, keep_alive: bool) -> bool:
    """Send ``response``; whether the connection stays open for another request."""
    if response.delay_s:
        await asyncio.sleep(response.delay_s)
    if response.reset:
        _reset(writer)
        raise _Dropped
    keep = (
        keep_alive and not response.close and not any(isinstance(p, Drop) for p in response.parts)
    )
    out = _Out(writer, response.bytes_per_s)
    headers = dict(response.headers)
    if response.chunked:
        headers["transfer-encoding"] = "chunked"
    else:
        headers["content-length"] = str(response.declared_length)
    await out.send(_head(response.status, headers, keep))
    for part in response.parts:
        if isinstance(part, bytes):
            await out.send(b"%x\r\n%s\r\n" % (len(part), part) if response.chunked else part)
        elif isinstance(part, Pause):
            await asyncio.sleep(part.seconds)
        elif isinstance(part, Forever):
            framed = b"%x\r\n%s\r\n" % (len(part.data), part.data)
            while not writer.transport.is_closing():
                await out.send(framed)
                await asyncio.sleep(part.interval_s)
            raise _Dropped
        else:
            _reset(writer)
            raise _Dropped
    if response.chunked:
        await out.send(b"0\r\n\r\n")
    return keep


class _Out:
    """Writes to the socket, at ``bytes_per_s`` when set (in ~20 slices a second)."""

    def __init__(self, writer: asyncio.StreamWriter, bytes_per_s: float | None) -> None:
        self.writer = writer
        self.rate = bytes_per_s
        self.step = max(1, int(bytes_per_s / 20)) if bytes_per_s else 0

    async def send(self, data: bytes) -> None:
        if not self.rate:
            self.writer.write(data)
            await self.writer.drain()
            return
        for i in range(0, len(data), self.step):
            piece = data[i : i + self.step]
            self.writer.write(piece)
            await self.writer.drain()
            await asyncio.sleep(len(piece) / self.rate)


def _head(status: int, headers: Mapping[str, str], keep_alive: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        "server: routedllm-standin",
        f"x-request-id: req_{uuid.uuid4().hex[:24]}",
        f"connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- HTTP/1.1 -------------------------------------------------------------------------------
async def _read_request(reader: asyncio.StreamReader) -> _HttpRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
            if len(body) > _MAX_BODY:
                raise ValueError("request body too large")
    else:
        length = int(headers.get("content-length", "0") or 0)
        if length > _MAX_BODY:
            raise ValueError("request body too large")
        body = bytearray(await reader.readexactly(length)) if length else bytearray()
    return _HttpRequest(method.upper(), target.split("?", 1)[0], headers, bytes(body))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed peer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:  # pragma: no cover - already closed
            pass
    writer.transport.abort()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
