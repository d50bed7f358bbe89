"""How one stand-in model behaves: ``ModelSpec`` (faults, reply, usage, timing, quirks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from routedllm.testing.faults import Fault, parse_fault
from routedllm.testing.wire import UsageStyle


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
    """How one model behaves: its faults, reply, usage, timing and provider quirks.

    ``faults`` maps faults (a ``Fault`` or a short name from ``FAULTS``) to the share of
    requests that get them; the shares add up to at most 1. ``script`` lists the faults
    (``None``: none) of the model's first requests, in order, before the shares apply.
    ``reply`` fixes the text (else the model calls a bound tool, fills a requested JSON
    schema, or says a default line; after a tool result it answers in text unless
    ``tool_choice`` forces a call, then it calls a tool not called yet, as an agent's
    structured-response tool expects). ``canned`` responses are served in turn (preferring
    ones whose streaming matches the request) instead of a generated reply.
    ``answer_model`` is the model name the response reports (default: the requested one).
    Token counts default to an estimate from the request; ``reasoning`` is reasoning text
    sent as ``reasoning_content``. ``usage_style`` says where a stream puts its usage;
    ``kimi_tool_calls`` gives tool calls id ``"0"`` and no finish reason (Kimi through
    OpenRouter); ``leading_whitespace`` pads a plain body before its JSON (OpenRouter).
    """

    faults: Mapping[str | Fault, float] = field(default_factory=dict)
    script: Sequence[str | Fault | None] = ()
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
    reasoning_tokens: int | None = None
    reasoning: str | None = None
    usage_style: UsageStyle = "separate"
    kimi_tool_calls: bool = False
    leading_whitespace: bool = False

    def __post_init__(self) -> None:
        shares = {parse_fault(kind): share for kind, share in self.faults.items()}
        for fault, share in shares.items():
            if not 0 <= share <= 1:
                raise ValueError(f"fault {fault.label!r}: share must be within 0-1, got {share}")
        total = sum(shares.values())
        if total > 1 + 1e-9:
            raise ValueError(f"fault shares add up to {total:g}, more than 1")
        object.__setattr__(self, "faults", shares)
        script = tuple(None if f is None else parse_fault(f) for f in self.script)
        object.__setattr__(self, "script", script)
        for name in ("latency_s", "chunk_delay_s", "slow_s", "retry_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative, got {getattr(self, name)}")
        for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} cannot be negative, got {value}")
        if self.usage_style not in ("separate", "on-finish", "none"):
            raise ValueError(
                f"usage_style must be 'separate', 'on-finish' or 'none', got {self.usage_style!r}"
            )

    @property
    def fault_shares(self) -> Mapping[Fault, float]:
        """``faults`` with every key a ``Fault``."""
        return self.faults  # type: ignore[return-value]  # normalised in __post_init__

    @property
    def fault_script(self) -> tuple[Fault | None, ...]:
        """``script`` with every entry a ``Fault`` or ``None``."""
        return self.script  # type: ignore[return-value]  # normalised in __post_init__
