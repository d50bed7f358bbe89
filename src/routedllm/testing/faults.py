"""The fault vocabulary: every way the stand-in upstream can misbehave, as typed values.

A ``Fault`` is a kind plus its parameters; build one with the constructors below (e.g.
``rate_limit(retry_after_s=2)``, ``broken_stream(after_chunks=3)``) or by a short name
from ``PRESETS`` (``"429"``, ``"slow"``, ``"cut"``, ...). The loopback ``Upstream`` serves
every kind; in-process fakes serve the ones that need no real socket.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from routedllm.testing.wire import CAPABILITIES


class FaultKind(StrEnum):
    """What goes wrong. Each value is documented in one line."""

    RATE_LIMIT = "rate_limit"  # 429 with Retry-After (seconds) and retry-after-ms headers
    SERVER_ERROR = "server_error"  # a 5xx (``status``) with an OpenAI-style error body
    BAD_REQUEST = "bad_request"  # 400 invalid_value (temperature): the caller's mistake
    CONTEXT_LENGTH = "context_length"  # 400 context_length_exceeded
    UNSUPPORTED = "unsupported"  # 400 refusing a capability: tools, response_format, image
    UNAUTHORIZED = "unauthorized"  # 401 invalid_api_key; ``echo_key`` quotes the bearer key
    NOT_FOUND = "not_found"  # 404 model_not_found
    HANG = "hang"  # nothing for ``seconds`` (a client timeout), then the normal reply
    RESET = "reset"  # the connection is reset (TCP RST) right after the request is read
    CONNECT = "connect"  # the connection fails before any response (in-process: ConnectError)
    TRICKLE = "trickle"  # the whole response is sent at ``bytes_per_s``
    KEEPALIVE_FOREVER = "keepalive_forever"  # 200, then SSE comments every ``interval_s``
    EMPTY_DELTAS_FOREVER = "empty_deltas_forever"  # 200 stream of empty deltas, never ending
    BROKEN_STREAM = "broken_stream"  # the body stops after ``after_chunks`` and the TCP resets
    NO_FINISH = "no_finish"  # the stream closes cleanly with no finish_reason and no [DONE]
    MALFORMED = "malformed"  # a 200 whose JSON is broken (streams: one chunk is not JSON)
    ERROR_BODY = "error_body"  # a 200 carrying an error object (streams: after N chunks)
    NO_CHOICES = "no_choices"  # a 200 with ``choices: []``
    WRONG_CONTENT = "wrong_content"  # a 200 whose content is not a string (``value``)


_FOREVER = frozenset({FaultKind.KEEPALIVE_FOREVER, FaultKind.EMPTY_DELTAS_FOREVER})


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault and its parameters; ``label`` is the name requests are recorded under.

    ``None`` for ``retry_after_s`` or ``seconds`` means: the model spec's
    ``retry_after_s`` or ``slow_s``. ``after_chunks=None`` means half the stream.
    """

    kind: FaultKind
    status: int | None = None
    retry_after_s: float | None = None
    seconds: float | None = None
    bytes_per_s: float | None = None
    interval_s: float = 0.5
    after_chunks: int | None = None
    feature: str | None = None
    value: Any = field(default=None, hash=False)
    message: str | None = None
    echo_key: bool = False
    name: str | None = None

    def __post_init__(self) -> None:
        kind = FaultKind(self.kind)
        object.__setattr__(self, "kind", kind)
        if kind is FaultKind.SERVER_ERROR and not (
            self.status is not None and 500 <= self.status <= 599
        ):
            raise ValueError(f"server_error needs a 5xx status, got {self.status}")
        if kind is FaultKind.TRICKLE and not (self.bytes_per_s and self.bytes_per_s > 0):
            raise ValueError(f"trickle needs bytes_per_s > 0, got {self.bytes_per_s}")
        if kind is FaultKind.UNSUPPORTED and self.feature not in CAPABILITIES:
            raise ValueError(
                f"unsupported needs a feature among {', '.join(CAPABILITIES)}, got {self.feature!r}"
            )
        if kind in _FOREVER and self.interval_s <= 0:
            raise ValueError(f"{kind} needs interval_s > 0, got {self.interval_s}")
        for name in ("retry_after_s", "seconds"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} cannot be negative, got {value}")
        if self.after_chunks is not None and self.after_chunks < 0:
            raise ValueError(f"after_chunks cannot be negative, got {self.after_chunks}")

    @property
    def label(self) -> str:
        """The preset name it was made from, else its kind."""
        return self.name or self.kind.value

    @property
    def endless(self) -> bool:
        """True for faults that never end the response on their own."""
        return self.kind in _FOREVER

    def named(self, name: str) -> Fault:
        """The same fault recorded under ``name``."""
        return dataclasses.replace(self, name=name)


# -- constructors ---------------------------------------------------------------------------
def rate_limit(retry_after_s: float | None = None) -> Fault:
    """429 with Retry-After; ``None``: the model spec's ``retry_after_s``."""
    return Fault(FaultKind.RATE_LIMIT, retry_after_s=retry_after_s)


def server_error(status: int = 500) -> Fault:
    """A 5xx with an error body."""
    return Fault(FaultKind.SERVER_ERROR, status=status)


def bad_request() -> Fault:
    """400 invalid_value: a caller error no other model would fix."""
    return Fault(FaultKind.BAD_REQUEST)


def context_length() -> Fault:
    """400 context_length_exceeded."""
    return Fault(FaultKind.CONTEXT_LENGTH)


def unsupported(feature: str) -> Fault:
    """400 refusing ``"tools"``, ``"response_format"`` or ``"image_input"``."""
    return Fault(FaultKind.UNSUPPORTED, feature=feature)


def unauthorized(echo_key: bool = True) -> Fault:
    """401 invalid_api_key whose body quotes the bearer key back (unless ``echo_key=False``)."""
    return Fault(FaultKind.UNAUTHORIZED, echo_key=echo_key)


def not_found() -> Fault:
    """404 model_not_found."""
    return Fault(FaultKind.NOT_FOUND)


def hang(seconds: float | None = None) -> Fault:
    """No response for ``seconds`` (``None``: the spec's ``slow_s``), then the reply."""
    return Fault(FaultKind.HANG, seconds=seconds)


timeout = hang


def reset() -> Fault:
    """TCP RST right after the request is read."""
    return Fault(FaultKind.RESET)


def connect_error() -> Fault:
    """The connection fails before any response."""
    return Fault(FaultKind.CONNECT)


def trickle(bytes_per_s: float) -> Fault:
    """The response, head included, sent at ``bytes_per_s``."""
    return Fault(FaultKind.TRICKLE, bytes_per_s=bytes_per_s)


def keepalive_forever(interval_s: float = 0.5) -> Fault:
    """200, then an SSE keep-alive comment every ``interval_s`` (plain: a newline), forever."""
    return Fault(FaultKind.KEEPALIVE_FOREVER, interval_s=interval_s)


def empty_deltas_forever(interval_s: float = 0.1) -> Fault:
    """200 stream: the role chunk, then a chunk with an empty delta every ``interval_s``."""
    return Fault(FaultKind.EMPTY_DELTAS_FOREVER, interval_s=interval_s)


def broken_stream(after_chunks: int | None = None) -> Fault:
    """The body stops after ``after_chunks`` SSE events (plain: half the body), then RST."""
    return Fault(FaultKind.BROKEN_STREAM, after_chunks=after_chunks)


def no_finish() -> Fault:
    """The stream ends cleanly without a finish_reason, usage or [DONE]."""
    return Fault(FaultKind.NO_FINISH)


def malformed() -> Fault:
    """A 200 whose JSON is cut short (streams: one chunk is not JSON)."""
    return Fault(FaultKind.MALFORMED)


def error_body(after_chunks: int = 2, message: str | None = None, status: int = 502) -> Fault:
    """A 200 holding an error object; streams carry it as an event after ``after_chunks``."""
    return Fault(FaultKind.ERROR_BODY, after_chunks=after_chunks, message=message, status=status)


def no_choices() -> Fault:
    """A 200 with ``choices: []``."""
    return Fault(FaultKind.NO_CHOICES)


def wrong_content(value: Any = 12345) -> Fault:
    """A 200 whose ``content`` is ``value`` instead of a string."""
    return Fault(FaultKind.WRONG_CONTENT, value=value)


# -- short names ----------------------------------------------------------------------------
_RESET_MESSAGE = "Upstream connection reset"
PRESETS: dict[str, Fault] = {
    name: fault.named(name)
    for name, fault in {
        "429": rate_limit(),
        "500": server_error(500),
        "502": server_error(502),
        "503": server_error(503),
        "slow": hang(),
        "reset": reset(),
        "cut": broken_stream(),
        "malformed": malformed(),
        "error_event": error_body(2, "The upstream provider failed mid-stream."),
        "no_choices": no_choices(),
        "400": bad_request(),
        "401": unauthorized(echo_key=False),
        "404": not_found(),
        "context": context_length(),
        "timeout": hang(),
        "connect": connect_error(),
        "stream-error": error_body(1, _RESET_MESSAGE),
        "stream-break": error_body(2, _RESET_MESSAGE),
    }.items()
}
"""Faults by short name, with default parameters."""

FAULTS: tuple[str, ...] = tuple(PRESETS)
"""The short names ``ModelSpec`` and the fakes accept in place of a ``Fault``."""


def parse_fault(fault: str | Fault) -> Fault:
    """A ``Fault`` from itself, a short name in ``PRESETS`` or a ``FaultKind`` value."""
    if isinstance(fault, Fault):
        return fault
    if fault in PRESETS:
        return PRESETS[fault]
    if fault in FaultKind.__members__.values() and fault not in _NEEDS_PARAMS:
        return Fault(FaultKind(fault))
    raise ValueError(
        f"unknown fault {fault!r}; known faults: {', '.join(FAULTS)} "
        "(or pass a Fault from routedllm.testing)"
    )


_NEEDS_PARAMS = frozenset({FaultKind.SERVER_ERROR, FaultKind.TRICKLE, FaultKind.UNSUPPORTED})
