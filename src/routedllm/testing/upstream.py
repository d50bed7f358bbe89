"""A loopback OpenAI-compatible stand-in upstream that injects faults, for tests.

``Upstream`` serves ``POST /v1/chat/completions`` (and ``/chat/completions``), plain and
SSE-streamed, plus ``GET /v1/models``, from a minimal asyncio HTTP/1.1 server on a
background thread. Each model answers with a generated reply or with canned responses
(e.g. from a vcrpy cassette), and fails at configured rates drawn from a seeded RNG:

* ``"429"``: rate limited, with ``retry-after`` (seconds) and ``retry-after-ms`` headers;
* ``"500"``, ``"502"``, ``"503"``: server errors with OpenAI-style error bodies;
* ``"slow"``: the response starts after ``slow_s`` (longer than the client's timeout);
* ``"reset"``: the connection is reset (TCP RST) after the request is read;
* ``"cut"``: the body stops midway and the connection drops (streams: after a few chunks);
* ``"malformed"``: a 200 whose JSON is broken (streams: a chunk that is not JSON);
* ``"error_event"``: a 200 stream that carries an ``{"error": ...}`` event (plain
  requests: a 200 whose body is only an error object, as some proxies send);
* ``"no_choices"``: a 200 with ``choices: []``.

Every request is recorded (method, path, model, headers without credentials, body, the
fault served) for assertions. It binds loopback addresses only.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import math
import random
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FAULTS: tuple[str, ...] = (
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
)
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
}
_ERROR_BODIES = {
    "429": (
        "Rate limit reached for requests. Please try again later.",
        "requests",
        "rate_limit_exceeded",
    ),
    "500": (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    "502": (
        "Bad gateway: the upstream provider returned an invalid response.",
        "server_error",
        "bad_gateway",
    ),
    "503": (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        "service_unavailable",
    ),
}


@dataclass(frozen=True, slots=True)
class CannedResponse:
    """A response served as recorded: status, headers and body (JSON or raw SSE)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def stream(self) -> bool:
        """True when the body is an SSE stream."""
        return any(
            k.lower() == "content-type" and "text/event-stream" in v for k, v in self.headers
        )


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How one model behaves: its faults, reply, usage and timing.

    ``faults`` maps fault kinds (see ``FAULTS``) to the share of requests that get them;
    the shares add up to at most 1. ``script`` lists the faults (``None``: none) of the
    model's first requests, in order, before the shares apply. ``canned`` responses are
    served in turn (preferring ones whose streaming matches the request) instead of a
    generated reply. ``answer_model`` is the model name the response reports (default:
    the requested one). Token counts default to an estimate from the request.
    """

    faults: Mapping[str, float] = field(default_factory=dict)
    script: Sequence[str | None] = ()
    reply: str | None = None
    canned: Sequence[CannedResponse] = ()
    answer_model: str | None = None
    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    slow_s: float = 30.0
    retry_after_s: float = 1.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for kind, share in self.faults.items():
            if kind not in FAULTS:
                raise ValueError(f"unknown fault {kind!r}; known faults: {', '.join(FAULTS)}")
            if not 0 <= share <= 1:
                raise ValueError(f"fault {kind!r}: share must be within 0-1, got {share}")
        total = sum(self.faults.values())
        if total > 1 + 1e-9:
            raise ValueError(f"fault shares add up to {total:g}, more than 1")
        for kind in self.script:
            if kind is not None and kind not in FAULTS:
                raise ValueError(
                    f"script: unknown fault {kind!r}; known faults: {', '.join(FAULTS)}"
                )
        for name in ("latency_s", "chunk_delay_s", "slow_s", "retry_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative, got {getattr(self, name)}")
        for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} cannot be negative, got {value}")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the upstream received (credential headers left out)."""

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


class _Drop(Exception):
    """The fault closed the connection: stop serving it."""


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
        default: ModelSpec | None = ModelSpec(),
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(
                f"host {host!r} is not a loopback address; the stand-in upstream "
                "binds 127.0.0.0/8, ::1 or localhost only"
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
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

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
        except _Drop:
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
        if req.path in _MODELS_PATHS and req.method == "GET":
            self._record(req, None, False, None, None)
            data = {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "routedllm"}
                    for m in sorted(self.models)
                ],
            }
            await _send(writer, 200, _json_bytes(data), keep_alive=keep_alive)
            return keep_alive
        if req.path not in _CHAT_PATHS:
            self._record(req, None, False, None, None)
            await _send_error(
                writer,
                404,
                f"Unknown path {req.path}",
                "invalid_request_error",
                "unknown_url",
                keep_alive,
            )
            return keep_alive
        if req.method != "POST":
            self._record(req, None, False, None, None)
            await _send_error(
                writer,
                405,
                f"{req.method} is not allowed on {req.path}",
                "invalid_request_error",
                None,
                keep_alive,
            )
            return keep_alive
        try:
            body = json.loads(req.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._record(req, None, False, req.body.decode("utf-8", "replace"), None)
            await _send_error(
                writer,
                400,
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
                None,
                keep_alive,
            )
            return keep_alive
        model = body.get("model") if isinstance(body, dict) else None
        stream = bool(body.get("stream")) if isinstance(body, dict) else False
        if (
            self._api_key is not None
            and req.headers.get("authorization") != f"Bearer {self._api_key}"
        ):
            self._record(req, model, stream, body, None)
            await _send_error(
                writer,
                401,
                "Incorrect API key provided.",
                "invalid_request_error",
                "invalid_api_key",
                keep_alive,
            )
            return keep_alive
        if not isinstance(model, str) or not isinstance(body.get("messages"), list):
            self._record(req, model, stream, body, None)
            await _send_error(
                writer,
                400,
                "'model' (a string) and 'messages' (a list) are required.",
                "invalid_request_error",
                None,
                keep_alive,
            )
            return keep_alive
        spec = self.models.get(model, self.default)
        if spec is None:
            self._record(req, model, stream, body, None)
            await _send_error(
                writer,
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
                keep_alive,
            )
            return keep_alive
        fault = self._draw(model, spec)
        self._record(req, model, stream, body, fault)
        self._active += 1
        self.max_concurrent = max(self.max_concurrent, self._active)
        try:
            if spec.latency_s:
                await asyncio.sleep(spec.latency_s)
            return await _Reply(self, writer, spec, model, body, stream, keep_alive).send(fault)
        finally:
            self._active -= 1

    def _record(
        self, req: _HttpRequest, model: str | None, stream: bool, body: Any, fault: str | None
    ) -> None:
        headers = {k: v for k, v in req.headers.items() if k not in _SECRET_HEADERS}
        record = RecordedRequest(
            req.method, req.path, model, stream, headers, body, fault, time.time()
        )
        with self._lock:
            self._records.append(record)

    def _state(self, model: str) -> _ModelState:
        state = self._states.get(model)
        if state is None:
            state = self._states[model] = _ModelState(random.Random(f"{self.seed}:{model}"))
        return state

    def _draw(self, model: str, spec: ModelSpec) -> str | None:
        state = self._state(model)
        if state.scripted < len(spec.script):
            state.scripted += 1
            return spec.script[state.scripted - 1]
        roll = state.rng.random()
        edge = 0.0
        for kind in FAULTS:
            edge += spec.faults.get(kind, 0.0)
            if roll < edge:
                return kind
        return None

    def _next_canned(self, model: str, spec: ModelSpec, stream: bool) -> CannedResponse | None:
        if not spec.canned:
            return None
        state = self._state(model)
        matching = [c for c in spec.canned if c.stream == stream] or list(spec.canned)
        chosen = matching[state.canned[stream] % len(matching)]
        state.canned[stream] += 1
        return chosen


class _Reply:
    """One chat-completions response, generated or canned, with its fault applied."""

    def __init__(
        self,
        upstream: Upstream,
        writer: asyncio.StreamWriter,
        spec: ModelSpec,
        model: str,
        body: dict[str, Any],
        stream: bool,
        keep_alive: bool,
    ) -> None:
        self.upstream = upstream
        self.writer = writer
        self.spec = spec
        self.model = model
        self.body = body
        self.stream = stream
        self.keep_alive = keep_alive
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.answer = spec.answer_model or model

    async def send(self, fault: str | None) -> bool:
        spec, writer = self.spec, self.writer
        if fault in _ERROR_BODIES:
            headers = {}
            if fault == "429":
                headers = {
                    "retry-after": str(math.ceil(spec.retry_after_s)),
                    "retry-after-ms": str(round(spec.retry_after_s * 1000)),
                }
            message, kind, code = _ERROR_BODIES[fault]
            await _send_error(writer, int(fault), message, kind, code, self.keep_alive, headers)
            return self.keep_alive
        if fault == "slow":
            await asyncio.sleep(spec.slow_s)
        elif fault == "reset":
            _reset(writer)
            raise _Drop
        canned = (
            None
            if fault not in (None, "slow")
            else self.upstream._next_canned(self.model, spec, self.stream)
        )
        if canned is not None:
            await self._canned(canned)
        elif self.stream:
            await self._stream(fault)
        else:
            await self._plain(fault)
        return self.keep_alive

    # -- bodies ---------------------------------------------------------------------------
    def _text(self) -> tuple[str, str, int]:
        """The reply text, its finish reason and completion tokens (capped by max_tokens)."""
        text = (
            self.spec.reply
            if self.spec.reply is not None
            else (f"Hello from {self.answer}. This is a stand-in reply.")
        )
        tokens = self.spec.completion_tokens
        tokens = max(1, math.ceil(len(text) / 4)) if tokens is None else tokens
        cap = self.body.get("max_completion_tokens") or self.body.get("max_tokens")
        if isinstance(cap, int) and 0 < cap < tokens:
            return text[: cap * 4], "length", cap
        return text, "stop", tokens

    def _usage(self, completion_tokens: int) -> dict[str, Any]:
        spec = self.spec
        prompt = (
            spec.prompt_tokens
            if spec.prompt_tokens is not None
            else _prompt_tokens(self.body.get("messages", []))
        )
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "prompt_tokens_details": {
                "cached_tokens": min(spec.cached_tokens, prompt),
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": spec.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _completion(self, choices: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.answer,
            "choices": choices,
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_standin",
        }

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.answer,
            "service_tier": "default",
            "system_fingerprint": "fp_standin",
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = usage
        return chunk

    @property
    def _include_usage(self) -> bool:
        options = self.body.get("stream_options")
        return isinstance(options, dict) and bool(options.get("include_usage"))

    async def _plain(self, fault: str | None) -> None:
        text, finish, tokens = self._text()
        message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        choices = (
            []
            if fault == "no_choices"
            else [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]
        )
        data = _json_bytes(self._completion(choices, self._usage(tokens)))
        if fault == "error_event":
            data = _json_bytes(
                _error_object(
                    "The upstream provider failed while generating the response.",
                    "server_error",
                    502,
                )
            )
        elif fault == "malformed":
            data = data[: len(data) // 2]
        elif fault == "cut":
            await _send(self.writer, 200, data, keep_alive=False, send_body=False)
            self.writer.write(data[: len(data) // 2])
            await self.writer.drain()
            _reset(self.writer)
            raise _Drop
        await _send(self.writer, 200, data, keep_alive=self.keep_alive)

    async def _stream(self, fault: str | None) -> None:
        text, finish, tokens = self._text()
        events: list[bytes] = []
        if fault == "no_choices":
            events.append(_sse(self._chunk([])))
        else:
            events.append(
                _sse(
                    self._chunk(
                        [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": "", "refusal": None},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ]
                    )
                )
            )
            events.extend(
                _sse(
                    self._chunk(
                        [
                            {
                                "index": 0,
                                "delta": {"content": piece},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ]
                    )
                )
                for piece in re.findall(r"\S+\s*|\s+", text)
            )
            events.append(
                _sse(
                    self._chunk(
                        [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]
                    )
                )
            )
        if self._include_usage:
            events.append(_sse(self._chunk([], self._usage(tokens))))
        if fault == "error_event":
            error = _error_object("The upstream provider failed mid-stream.", "server_error", 502)
            events = [*events[:2], _sse({**self._chunk([]), **error})]
        elif fault == "malformed":
            events.insert(2, b'data: {"id": "' + self.id.encode() + b'", "choices": [{\n\n')
        events.append(b"data: [DONE]\n\n")
        await self._send_stream(events, cut=fault == "cut")

    async def _send_stream(
        self, events: list[bytes], *, cut: bool, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        writer = self.writer
        own = dict(headers) or {"content-type": "text/event-stream; charset=utf-8"}
        _write_head(
            writer,
            200,
            {**own, "cache-control": "no-cache", "transfer-encoding": "chunked"},
            self.keep_alive and not cut,
        )
        keep = max(1, len(events) // 2) if cut else len(events)
        for event in events[:keep]:
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            if self.spec.chunk_delay_s:
                await asyncio.sleep(self.spec.chunk_delay_s)
        if cut:
            _reset(writer)
            raise _Drop
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _canned(self, canned: CannedResponse) -> None:
        body = _decoded(canned)
        headers = [
            (k.lower(), v)
            for k, v in canned.headers
            if k.lower()
            not in {
                "content-length",
                "transfer-encoding",
                "content-encoding",
                "connection",
                "keep-alive",
            }
        ]
        if canned.stream:
            events = [e + b"\n\n" for e in re.split(rb"\r?\n\r?\n", body) if e.strip()]
            await self._send_stream(events, cut=False, headers=headers)
        else:
            await _send(
                self.writer, canned.status, body, keep_alive=self.keep_alive, headers=dict(headers)
            )


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


def _write_head(
    writer: asyncio.StreamWriter, status: int, headers: Mapping[str, str], keep_alive: bool
) -> None:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        "server: routedllm-standin",
        f"x-request-id: req_{uuid.uuid4().hex[:24]}",
        f"connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    *,
    keep_alive: bool,
    headers: Mapping[str, str] | None = None,
    send_body: bool = True,
) -> None:
    all_headers = {
        "content-type": "application/json",
        **(headers or {}),
        "content-length": str(len(body)),
    }
    _write_head(writer, status, all_headers, keep_alive)
    if send_body:
        writer.write(body)
    await writer.drain()


async def _send_error(
    writer: asyncio.StreamWriter,
    status: int,
    message: str,
    kind: str,
    code: str | None,
    keep_alive: bool,
    headers: Mapping[str, str] | None = None,
) -> None:
    await _send(
        writer,
        status,
        _json_bytes(_error_object(message, kind, code)),
        keep_alive=keep_alive,
        headers=headers,
    )


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed peer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:  # pragma: no cover - already closed
            pass
    writer.transport.abort()


def _error_object(message: str, kind: str, code: str | int | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _sse(data: Any) -> bytes:
    return b"data: " + _json_bytes(data) + b"\n\n"


def _prompt_tokens(messages: Any) -> int:
    """~4 characters per token plus 4 per message, the usual rough count."""
    chars = 0
    count = 0
    for message in messages if isinstance(messages, list) else ():
        count += 1
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(str(p.get("text", ""))) for p in content if isinstance(p, dict))
    return max(1, math.ceil(chars / 4) + 4 * count)


def _decoded(canned: CannedResponse) -> bytes:
    encoding = next((v.lower() for k, v in canned.headers if k.lower() == "content-encoding"), "")
    if "gzip" in encoding or "deflate" in encoding:
        try:
            return (
                gzip.decompress(canned.body) if "gzip" in encoding else zlib.decompress(canned.body)
            )
        except (OSError, zlib.error):
            return canned.body  # stored already decoded
    return canned.body


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- cassettes ------------------------------------------------------------------------------
def load_cassette(path: str | Path) -> dict[str, tuple[CannedResponse, ...]]:
    """Canned responses per requested model, from a vcrpy YAML cassette.

    Reads plain vcrpy cassettes (``body: '...'`` or ``body: {string: ...}``) and the
    ``parsed_body`` variant (JSON kept as YAML). Interactions that are not chat
    completions are skipped; a file that holds none raises ``ValueError``.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read cassette: {exc}") from None
    interactions = data.get("interactions") if isinstance(data, dict) else None
    if not isinstance(interactions, list):
        raise ValueError(f"{path}: not a vcrpy cassette (no 'interactions' list)")
    out: dict[str, list[CannedResponse]] = {}
    for i, item in enumerate(interactions):
        request, response = item.get("request", {}), item.get("response", {})
        if not str(request.get("uri", "")).rstrip("/").endswith("/chat/completions"):
            continue
        body = request.get("parsed_body")
        if body is None:
            raw = _body_bytes(request.get("body"))
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                raise ValueError(f"{path}: interactions[{i}]: request body is not JSON") from None
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str):
            raise ValueError(f"{path}: interactions[{i}]: request names no model")
        if "parsed_body" in response:
            payload = _json_bytes(response["parsed_body"])
        else:
            payload = _body_bytes(response.get("body"))
        headers = tuple(
            (str(k), str(v))
            for k, values in (response.get("headers") or {}).items()
            for v in (values if isinstance(values, list) else [values])
        )
        status = response.get("status", {})
        code = status.get("code", 200) if isinstance(status, dict) else int(status)
        out.setdefault(model, []).append(CannedResponse(int(code), payload, headers))
    if not out:
        raise ValueError(f"{path}: no chat-completions interactions in the cassette")
    return {model: tuple(items) for model, items in out.items()}


def _body_bytes(body: Any) -> bytes:
    if isinstance(body, dict):
        body = body.get("string")
    if body is None:
        return b""
    return body if isinstance(body, bytes) else str(body).encode("utf-8")
