"""One stand-in response as a plan: status, headers, body parts, pauses, drops and resets.

``respond`` turns a request, its model's ``ModelSpec`` and the fault drawn for it into a
``Response`` built from ``wire``; a transport then plays the plan: the loopback
``Upstream`` over a real socket, in-process fakes as an HTTP client response. Keeping the
decisions here means both serve the same bytes for the same fault.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from routedllm.testing import replies, wire
from routedllm.testing.faults import Fault, FaultKind
from routedllm.testing.spec import CannedResponse, ModelSpec

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True, slots=True)
class Pause:
    """Send nothing for ``seconds``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Forever:
    """Send ``data`` every ``interval_s`` until the client goes away."""

    data: bytes
    interval_s: float


@dataclass(frozen=True, slots=True)
class Drop:
    """Reset the connection (TCP RST) here, mid-body."""


Part = bytes | Pause | Forever | Drop


@dataclass(frozen=True, slots=True)
class Response:
    """What to send for one request.

    ``parts`` make the body; ``chunked`` sends it with chunked transfer encoding (streams
    and endless bodies), else with a ``content-length`` of ``content_length`` (default:
    the bytes in ``parts``). ``delay_s`` passes before the head; ``reset`` drops the
    connection before anything is sent and ``connect_error`` means the connection fails
    (a socket can only reset it). ``bytes_per_s`` trickles head and body. ``close`` ends
    the connection after the body even if the client asked to keep it.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    parts: tuple[Part, ...] = ()
    chunked: bool = False
    content_length: int | None = None
    delay_s: float = 0.0
    reset: bool = False
    connect_error: bool = False
    bytes_per_s: float | None = None
    close: bool = False

    @property
    def body(self) -> bytes:
        """The bytes of the body (pauses, drops and endless parts left out)."""
        return b"".join(p for p in self.parts if isinstance(p, bytes))

    @property
    def declared_length(self) -> int:
        """The ``content-length`` a non-chunked response declares."""
        return len(self.body) if self.content_length is None else self.content_length


def error_response(error: wire.ErrorResponse) -> Response:
    """An HTTP error as a plan."""
    return Response(error.status, {**JSON_HEADERS, **error.headers}, (wire.json_bytes(error.body),))


def respond(
    body: dict[str, Any],
    *,
    model: str,
    spec: ModelSpec,
    fault: Fault | None,
    id: str,
    created: int,
    default_text: str,
    api_key: str | None = None,
) -> Response:
    """The response to the chat request ``body`` for ``model``, with ``fault`` applied.

    ``default_text`` is said when the spec fixes no reply and the request asks for no tool
    call or JSON; ``api_key`` is the bearer key, quoted by an echoing 401.
    """
    stream = bool(body.get("stream"))
    if fault is not None:
        early = _early(fault, body, model=model, spec=spec, api_key=api_key, stream=stream)
        if early is not None:
            return early
    plan = _Reply(body, model=model, spec=spec, id=id, created=created, text=default_text)
    return timed(plan.stream(fault) if stream else plan.plain(fault), fault, spec)


TIMING_FAULTS = frozenset({FaultKind.HANG, FaultKind.TRICKLE})
"""Faults that change only when bytes go out, so they apply to canned responses too."""


def timed(response: Response, fault: Fault | None, spec: ModelSpec) -> Response:
    """``response`` delayed (hang) or trickled as ``fault`` says."""
    if fault is not None and fault.kind is FaultKind.HANG:
        seconds = spec.slow_s if fault.seconds is None else fault.seconds
        return dataclasses.replace(response, delay_s=response.delay_s + seconds)
    if fault is not None and fault.kind is FaultKind.TRICKLE:
        return dataclasses.replace(response, bytes_per_s=fault.bytes_per_s)
    return response


def _early(
    fault: Fault,
    body: dict[str, Any],
    *,
    model: str,
    spec: ModelSpec,
    api_key: str | None,
    stream: bool,
) -> Response | None:
    """The response of a fault that needs no reply: errors, resets, endless bodies."""
    kind = fault.kind
    if kind is FaultKind.RATE_LIMIT:
        after = spec.retry_after_s if fault.retry_after_s is None else fault.retry_after_s
        return error_response(wire.rate_limited(model, after))
    if kind is FaultKind.SERVER_ERROR:
        return error_response(wire.server_error(fault.status or 500))
    if kind is FaultKind.BAD_REQUEST:
        return error_response(wire.bad_request())
    if kind is FaultKind.CONTEXT_LENGTH:
        return error_response(wire.context_length_exceeded())
    if kind is FaultKind.UNSUPPORTED:
        return error_response(wire.unsupported(fault.feature or "tools"))
    if kind is FaultKind.UNAUTHORIZED:
        return error_response(wire.invalid_api_key(api_key if fault.echo_key else None))
    if kind is FaultKind.NOT_FOUND:
        return error_response(wire.model_not_found(model))
    if kind is FaultKind.RESET:
        return Response(0, reset=True)
    if kind is FaultKind.CONNECT:
        return Response(0, reset=True, connect_error=True)
    if kind is FaultKind.KEEPALIVE_FOREVER or (
        kind is FaultKind.EMPTY_DELTAS_FOREVER and not stream
    ):
        # Streams get SSE comments; plain requests get the whitespace OpenRouter pads with.
        beat = wire.KEEP_ALIVE if stream else b"\n"
        headers = SSE_HEADERS if stream else JSON_HEADERS
        return Response(200, headers, (Forever(beat, fault.interval_s),), chunked=True)
    return None


class _Reply:
    """A generated answer to one request, rendered plain or streamed, with a fault applied."""

    def __init__(
        self,
        body: dict[str, Any],
        *,
        model: str,
        spec: ModelSpec,
        id: str,
        created: int,
        text: str,
    ) -> None:
        self.body, self.spec, self.id, self.created = body, spec, id, created
        self.model = spec.answer_model or model
        self.reply = (
            replies.Reply(spec.reply, None, "stop")
            if spec.reply is not None
            else replies.compose(body, text)
        )
        self.content: Any = self.reply.content
        self.finish: str | None = self.reply.finish_reason
        reasoning_tokens = spec.reasoning_tokens
        if reasoning_tokens is None:
            reasoning_tokens = len(spec.reasoning or "") // 4
        tokens = spec.completion_tokens
        if tokens is None:
            tokens = replies.estimate_tokens(self.reply.output) + reasoning_tokens
        cap = replies.max_tokens(body)
        if cap is not None and cap < tokens and isinstance(self.content, str):
            self.content, self.finish, tokens = self.content[: cap * 4], "length", cap
        prompt = spec.prompt_tokens
        prompt = replies.prompt_tokens(body) if prompt is None else prompt
        self.usage = wire.usage(
            prompt,
            tokens,
            cached_tokens=spec.cached_tokens,
            reasoning_tokens=reasoning_tokens,
        )
        call_id = "0" if spec.kimi_tool_calls else f"call_{id[-24:]}"
        self.tool_calls = self.reply.tool_calls(call_id)
        if self.tool_calls and spec.kimi_tool_calls:
            self.finish = None

    def _with(self, fault: Fault | None, kind: FaultKind) -> bool:
        return fault is not None and fault.kind is kind

    def plain(self, fault: Fault | None) -> Response:
        content = self.content
        if self._with(fault, FaultKind.WRONG_CONTENT):
            assert fault is not None
            content = fault.value
        finish = None if self._with(fault, FaultKind.NO_FINISH) else self.finish
        message = wire.message(
            content, tool_calls=self.tool_calls, reasoning=self.spec.reasoning or None
        )
        choices = [] if self._with(fault, FaultKind.NO_CHOICES) else [wire.choice(message, finish)]
        data: Any = wire.completion(
            id=self.id, model=self.model, created=self.created, choices=choices, usage=self.usage
        )
        if fault is not None and fault.kind is FaultKind.ERROR_BODY:
            message_text = fault.message or "The upstream provider failed to answer."
            data = wire.error_body(message_text, "server_error", fault.status)
        raw = wire.json_bytes(data)
        if self.spec.leading_whitespace:
            raw = b"\n" + b" " * 2048 + b"\n" + raw
        if self._with(fault, FaultKind.MALFORMED):
            return Response(200, JSON_HEADERS, (raw[: len(raw) // 2],))
        if self._with(fault, FaultKind.BROKEN_STREAM):
            return Response(
                200, JSON_HEADERS, (raw[: len(raw) // 2], Drop()), content_length=len(raw)
            )
        return Response(200, JSON_HEADERS, (raw,))

    def stream(self, fault: Fault | None) -> Response:
        options = self.body.get("stream_options")
        include = isinstance(options, dict) and bool(options.get("include_usage"))
        style = self.spec.usage_style
        if self.spec.kimi_tool_calls and self.tool_calls and style != "none":
            style = "on-finish"
        content = self.content
        if self._with(fault, FaultKind.WRONG_CONTENT):
            assert fault is not None
            content = fault.value
        common: dict[str, Any] = {"id": self.id, "model": self.model, "created": self.created}
        if self._with(fault, FaultKind.NO_CHOICES):
            null: dict[str, Any] = {"usage": None} if include else {}
            chunks = [wire.chunk(**common, delta=None, **null)]
            if include and style != "none":
                chunks.append(wire.chunk(**common, delta=None, usage=self.usage))
        else:
            chunks = wire.stream_chunks(
                **common,
                content=content,
                finish_reason=self.finish,
                usage=self.usage if include else None,
                usage_style=style,
                tool_calls=self.tool_calls,
                reasoning=self.spec.reasoning,
            )
        events: list[bytes] = [wire.sse(c) for c in chunks]
        done = True
        close = False
        if fault is not None:
            kind = fault.kind
            if kind is FaultKind.NO_FINISH:
                events = [wire.sse(c) for c in chunks if _open(c)]
                done, close = False, True
            elif kind is FaultKind.EMPTY_DELTAS_FOREVER:
                empty = wire.chunk(**common, delta={"content": ""})
                return Response(
                    200,
                    SSE_HEADERS,
                    (events[0], Forever(wire.sse(empty), fault.interval_s)),
                    chunked=True,
                )
            elif kind is FaultKind.MALFORMED:
                events.insert(2, b'data: {"id": "' + self.id.encode() + b'", "choices": [{\n\n')
            elif kind is FaultKind.ERROR_BODY:
                message_text = fault.message or "The upstream provider failed mid-stream."
                error = wire.error_body(message_text, "server_error", fault.status)
                after = 2 if fault.after_chunks is None else fault.after_chunks
                events = [*events[:after], wire.sse({**wire.chunk(**common, delta=None), **error})]
        if done:
            events.append(wire.DONE)
        delay = self.spec.chunk_delay_s
        if fault is not None and fault.kind is FaultKind.BROKEN_STREAM:
            keep = max(1, len(events) // 2) if fault.after_chunks is None else fault.after_chunks
            parts = [*_paced(events[:keep], delay), Drop()]
        else:
            parts = _paced(events, delay)
        return Response(200, SSE_HEADERS, tuple(parts), chunked=True, close=close)


def _open(chunk: dict[str, Any]) -> bool:
    """False for a chunk that finishes the choice or carries only usage."""
    choices = chunk.get("choices") or []
    return bool(choices) and all(c.get("finish_reason") is None for c in choices)


def _paced(events: list[bytes], delay_s: float) -> list[Part]:
    out: list[Part] = []
    for event in events:
        out.append(event)
        if delay_s:
            out.append(Pause(delay_s))
    return out


# -- canned ---------------------------------------------------------------------------------
_HOP_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"}
)


def canned_response(canned: CannedResponse, *, chunk_delay_s: float = 0.0) -> Response:
    """A recorded response as a plan: SSE bodies event by event, others as they are."""
    body = _decoded(canned)
    headers = {k.lower(): v for k, v in canned.headers if k.lower() not in _HOP_HEADERS}
    if canned.stream:
        events = [e + b"\n\n" for e in re.split(rb"\r?\n\r?\n", body) if e.strip()]
        return Response(
            canned.status,
            {"cache-control": "no-cache", **headers},
            tuple(_paced(events, chunk_delay_s)),
            chunked=True,
        )
    return Response(canned.status, {**JSON_HEADERS, **headers}, (body,))


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
