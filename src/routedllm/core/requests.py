"""What the router needs to know about one call, and the one translation of framework
requests into it.

Every adapter (the LangChain chat model and handler, the LiteLLM hook and router, the
shadow middleware) builds its :class:`Request` here, so tags, required capabilities and a
pinned model follow the same rules whatever framework the call came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from routedllm.core.catalog import CAPABILITIES
from routedllm.core.errors import InvalidRequestError


@dataclass(frozen=True, slots=True)
class Request:
    """What the router needs to know about one call.

    ``messages`` are OpenAI-style dicts or LangChain messages. ``tags`` given here win over
    inferred ones. ``require`` adds capabilities the call needs (adapters add ``tools``
    when tools are bound). ``input_tokens`` overrides the estimate from the messages.
    ``unavailable`` maps models to skip right now to the reason (a circuit breaker's
    cooldown, say). ``sticky_model`` is the model earlier turns of the conversation used:
    it is kept when it passes every constraint, and the decision says why it was not.
    """

    messages: Sequence[Any]
    tags: Sequence[str] | None = None
    max_output_tokens: int | None = None
    require: frozenset[str] = frozenset()
    input_tokens: int | None = None
    unavailable: Mapping[str, str] = field(default_factory=dict)
    sticky_model: str | None = None
    model: str | None = None
    """A pinned model: the decision is that model alone (no fallbacks), still explained."""

    def __post_init__(self) -> None:
        if isinstance(self.messages, (str, bytes)) or not isinstance(self.messages, Sequence):
            raise InvalidRequestError(
                "messages must be a list of messages, not "
                f"{type(self.messages).__name__}; "
                "wrap a prompt as [{'role': 'user', 'content': ...}]"
            )
        if self.tags is not None and (
            isinstance(self.tags, str) or not isinstance(self.tags, Iterable)
        ):
            raise InvalidRequestError(f"tags must be a list of tag names, got {self.tags!r}")
        if isinstance(self.require, str) or not isinstance(self.require, Iterable):
            raise InvalidRequestError(
                f"require must be a set of capability names, got {self.require!r}"
            )
        if not isinstance(self.unavailable, Mapping):
            raise InvalidRequestError(
                f"unavailable must map model ids to reasons, got {type(self.unavailable).__name__}"
            )
        for name in ("max_output_tokens", "input_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidRequestError(f"{name} must be an integer, got {value!r}")
        if self.max_output_tokens is not None and self.max_output_tokens <= 0:
            raise InvalidRequestError(
                f"max_output_tokens must be positive, got {self.max_output_tokens}"
            )
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise InvalidRequestError(f"model must be a non-empty model id, got {self.model!r}")
        if self.input_tokens is not None and self.input_tokens < 0:
            raise InvalidRequestError(f"input_tokens cannot be negative, got {self.input_tokens}")
        unknown = set(self.require) - set(CAPABILITIES)
        if unknown:
            raise InvalidRequestError(
                f"unknown capability {sorted(unknown)}; known: {', '.join(CAPABILITIES)}"
            )
