"""What the router needs to know about one call, and the one translation of framework
requests into it.

Every adapter (the LangChain chat model and handler, the LiteLLM hook and router, the
shadow middleware) builds its :class:`Request` here, so tags, required capabilities and a
pinned model follow the same rules whatever framework the call came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from routedllm.core.catalog import CAPABILITIES
from routedllm.core.errors import InvalidRequestError
from routedllm.core.tags import TAG_NAMES, TAGS_KEY, VOCABULARY, has_image, validate_tags

if TYPE_CHECKING:
    from routedllm.core.decision import Policy

POLICY_KEY = "routedllm_policy"
"""Call kwarg or metadata key overriding the policy (a Policy or a mapping of its fields)."""
MAX_OUTPUT_TOKENS = 10_000_000
"""More output tokens than any model produces: a larger ``max_tokens`` is a caller error."""
_STRUCTURED_KEYS = ("ls_structured_output_format", "structured_output_format")


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
    ignored_tags: tuple[str, ...] = ()
    """Framework tags that are not routedllm task tags (a chain's own, a typo): not used,
    kept so that adapters can say so."""

    @classmethod
    def from_openai_body(
        cls, body: Mapping[str, Any], *, tags: Iterable[str] = (), pin: bool = False
    ) -> Request:
        """The request of an OpenAI-style chat completion body (what LiteLLM hands a hook).

        Task tags: ``tags`` first (e.g. the routed group's own), then the body's
        ``routedllm_tags`` (strict), ``metadata.tags`` and ``tags`` (LiteLLM's, where the
        proxy merges the ``x-litellm-tags`` header; only vocabulary tags count). ``pin``
        pins the body's ``model``.
        """
        if not isinstance(body, Mapping):
            raise InvalidRequestError(f"a request body must be a JSON object, got {body!r:.80}")
        messages = body.get("messages")
        if not messages:
            other = next((k for k in ("input", "prompt") if k in body), None)
            endpoint = {"input": "the Responses API", "prompt": "/completions"}.get(other or "")
            if endpoint:
                raise InvalidRequestError(
                    f"routing needs chat messages; a request to {endpoint} has none "
                    "(send it to /chat/completions, or to a concrete model)"
                )
            raise InvalidRequestError("the request has no messages to route on")
        metadata = body.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        meta_tags = metadata.get("tags")
        selection = select_tags(
            given=body.get(TAGS_KEY) or metadata.get(TAGS_KEY),
            names=(*tags, *_as_names(meta_tags), *_as_names(body.get("tags"))),
            leading=tags,
        )
        model = body.get("model") if pin else None
        return build_request(
            messages,
            tags=selection,
            tools=body.get("tools") or body.get("functions"),
            response_format=body.get("response_format"),
            max_tokens=_first_set(body, ("max_completion_tokens", "max_tokens")),
            model=model if isinstance(model, str) else None,
        )

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


@dataclass(frozen=True, slots=True)
class TagSelection:
    """A call's task tags and the names that were passed over (not in the vocabulary)."""

    tags: tuple[str, ...]
    ignored: tuple[str, ...] = ()


def select_tags(
    *, given: Any = None, names: Iterable[Any] = (), leading: Iterable[str] = ()
) -> TagSelection:
    """The one rule for task tags, whatever the framework.

    ``given`` is routedllm's own key (``routedllm_tags``): a tag name, a comma-separated
    string or a list of names, every one of which must be a vocabulary tag
    (:class:`~routedllm.core.errors.UnknownTagError` otherwise). ``names`` are the
    framework's tags (LangChain config tags, LiteLLM request tags): chains and teams add
    their own, so only vocabulary tags count and the rest are reported as ignored.
    ``leading`` tags (a routed group's) are kept first. Given tags win over names.
    """
    lead = validate_tags(leading)
    if given is not None and given != () and given != []:
        return TagSelection(tuple(dict.fromkeys((*lead, *validate_tags(_given_names(given))))))
    tags: list[str] = list(lead)
    ignored: dict[str, None] = {}
    for name in names:
        if not isinstance(name, str):
            continue
        name = name.strip()
        if name in VOCABULARY:
            if name not in tags:
                tags.append(name)
        elif name:
            ignored[_shown_name(name)] = None
    shown = list(ignored)
    if len(shown) > IGNORED_KEPT:
        shown[IGNORED_KEPT:] = [f"(+{len(shown) - IGNORED_KEPT} more)"]
    return TagSelection(tuple(tags), tuple(shown))


IGNORED_KEPT = 32
"""How many ignored tag names a record lists (the rest are counted): a framework's tags
are the caller's text and end up in records and traces."""


def _shown_name(name: str, limit: int = 64) -> str:
    """An ignored tag name fit for a record: control characters escaped, clipped."""
    if not name.isprintable():
        name = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in name)
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _given_names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        names = list(value)
        for name in names:
            if not isinstance(name, str):
                raise InvalidRequestError(
                    f"{TAGS_KEY} must be tag names (strings), got {name!r:.80} in it; "
                    f"known tags: {', '.join(TAG_NAMES)}"
                )
        return [n.strip() for n in names]
    raise InvalidRequestError(
        f"{TAGS_KEY} must be a tag name or a list of tag names, got {type(value).__name__}"
    )


def _as_names(value: Any) -> tuple[Any, ...]:
    """Framework tags as a tuple: a list, or LiteLLM's comma-separated header string."""
    if isinstance(value, str):
        return tuple(value.split(","))
    if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        return tuple(value)
    return ()


def required_capabilities(
    messages: Sequence[Any],
    *,
    tools: Any = None,
    response_format: Any = None,
    structured: bool = False,
) -> frozenset[str]:
    """Capabilities a call needs: ``tools`` offered, structured output asked for (a
    ``response_format`` other than text, or ``structured`` for frameworks that mark it
    another way), strict JSON-schema output (``"strict": true``), images in the messages."""
    need = set()
    if tools:
        need.add("tools")
    if structured or _structured(response_format):
        need.add("structured_output")
    if _strict_schema(response_format):
        need.add("json_schema")
    if has_image(messages):
        need.add("image_input")
    return frozenset(need)


def _structured(response_format: Any) -> bool:
    if response_format is None:
        return False
    if isinstance(response_format, Mapping):
        return response_format.get("type") not in (None, "text")
    return True  # a schema class or model handed to the SDK's parse helpers


def _strict_schema(response_format: Any) -> bool:
    """A ``json_schema`` response format that asks for strict schema adherence."""
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        return False
    schema = response_format.get("json_schema")
    return isinstance(schema, Mapping) and schema.get("strict") is True


def build_request(
    messages: Sequence[Any],
    *,
    tags: TagSelection | None = None,
    tools: Any = None,
    response_format: Any = None,
    structured: bool = False,
    max_tokens: Any = None,
    model: str | None = None,
    unavailable: Mapping[str, str] | None = None,
    sticky_model: str | None = None,
    payloads: Sequence[Any] | None = None,
) -> Request:
    """A :class:`Request` from the parts every framework has; values checked here.
    ``payloads``: the messages' :func:`message_payloads`, when the caller has them."""
    selection = tags or TagSelection(())
    check_text(messages, payloads)
    return Request(
        messages=messages,
        tags=selection.tags or None,
        max_output_tokens=output_limit(max_tokens),
        require=required_capabilities(
            messages, tools=tools, response_format=response_format, structured=structured
        ),
        unavailable=unavailable or {},
        sticky_model=sticky_model,
        model=model,
        ignored_tags=selection.ignored,
    )


def request_from_call(
    messages: Sequence[Any],
    *,
    tags: Iterable[Any] = (),
    metadata: Mapping[str, Any] | None = None,
    call_kwargs: Mapping[str, Any] | None = None,
    model: str | None = None,
    unavailable: Mapping[str, str] | None = None,
    sticky_model: str | None = None,
    payloads: Sequence[Any] | None = None,
) -> Request:
    """The request of a LangChain-style call: messages, run tags and metadata, and the
    keyword arguments the model was called with (tools, response_format, max_tokens,
    ``routedllm_tags``). Messages may be LangChain messages or OpenAI dicts; ``payloads``
    are their :func:`message_payloads`, when the caller has them."""
    kwargs = call_kwargs or {}
    meta = metadata or {}
    given = kwargs.get(TAGS_KEY)
    selection = select_tags(given=meta.get(TAGS_KEY) if given is None else given, names=tags)
    return build_request(
        messages,
        tags=selection,
        tools=kwargs.get("tools") or kwargs.get("functions"),
        response_format=kwargs.get("response_format"),
        structured=any(k in kwargs for k in _STRUCTURED_KEYS),
        max_tokens=_first_set(kwargs, ("max_completion_tokens", "max_tokens")),
        model=model,
        unavailable=unavailable,
        sticky_model=sticky_model,
        payloads=payloads,
    )


def output_limit(value: Any) -> int | None:
    """A call's ``max_tokens``: None when unset, else a positive integer within reason."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"max_tokens must be a positive integer, got {value!r:.80}")
    if value <= 0:
        raise InvalidRequestError(f"max_tokens must be a positive integer, got {value}")
    if value > MAX_OUTPUT_TOKENS:
        digits = len(str(value)) if value.bit_length() < 10_000 else "thousands of"
        raise InvalidRequestError(
            f"max_tokens (a number of {digits} digits) is more than any model can produce "
            f"(at most {MAX_OUTPUT_TOKENS:,})"
        )
    return value


_PER_MESSAGE = 8
"""Tokens a message may add beyond its text (role and separators; OpenAI counts 3-4)."""
IMAGE_TOKEN_BOUND = 1_600
"""Tokens counted per image in :func:`input_token_bound`. Not a bound for every model:
providers count images by their own rules, so calls with images are outside the budget's
upper-bound guarantee (see docs/reliability.md)."""


def input_token_bound(
    messages: Sequence[Any], tools: Any = None, *, payloads: Sequence[Any] | None = None
) -> int:
    """An upper bound on the call's input tokens, for any script: the UTF-8 bytes of what
    is sent (every byte-level BPE token covers at least one byte), plus a few tokens per
    message and :data:`IMAGE_TOKEN_BOUND` per image (text only is a true bound). The
    decision's estimate (~4 characters per token) is typical and can undercount emoji or
    CJK several times. ``payloads``: the messages' :func:`message_payloads`, when known."""
    total = 0
    for payload in map(_message_payload, messages) if payloads is None else payloads:
        total += _PER_MESSAGE + _bytes_and_images(payload)
    if tools:
        total += _bytes_and_images(tools)
    return total


def message_payloads(messages: Sequence[Any]) -> list[Any]:
    """What each message sends (its content, tool calls, extra kwargs, name): read once
    per call for both :func:`check_text` and :func:`input_token_bound`."""
    return [_message_payload(message) for message in messages]


def _message_payload(message: Any) -> Any:
    if isinstance(message, str | Mapping):
        return message
    payload = {"content": getattr(message, "content", None)}
    for name in ("tool_calls", "additional_kwargs", "name"):
        value = getattr(message, name, None)
        if value:
            payload[name] = value
    return payload


def _bytes_and_images(node: Any, depth: int = 0) -> int:
    """UTF-8 bytes of the text in ``node`` (strings, keys, numbers), images counted at
    :data:`IMAGE_TOKEN_BOUND` each (their bytes are not text the model reads)."""
    if depth > 50:
        return 0
    if isinstance(node, str):  # ASCII: one byte a character
        return (len(node) if node.isascii() else len(node.encode("utf-8", "surrogatepass"))) + 1
    if isinstance(node, Mapping):
        if node.get("type") in ("image_url", "image", "input_image"):
            return IMAGE_TOKEN_BOUND
        return sum(
            _bytes_and_images(k, depth + 1) + _bytes_and_images(v, depth + 1)
            for k, v in node.items()
        )
    if isinstance(node, list | tuple):
        return sum(_bytes_and_images(item, depth + 1) for item in node)
    if node is None or isinstance(node, bool | int | float):
        return len(str(node)) if node is not None else 0
    dump = getattr(node, "model_dump", None)
    return _bytes_and_images(dump() if callable(dump) else str(node), depth + 1)


def check_text(messages: Sequence[Any], payloads: Sequence[Any] | None = None) -> None:
    """Raise :class:`InvalidRequestError` for text that cannot be sent as UTF-8 (a lone
    surrogate such as ``"\\ud800"``, left by a bad decode or a split emoji), naming the
    message and position, instead of a ``UnicodeEncodeError`` from deep in the HTTP client.
    ``payloads``: the messages' :func:`message_payloads`, when known."""
    for number, payload in enumerate(
        map(_message_payload, messages) if payloads is None else payloads, 1
    ):
        for text in _texts(payload):
            if text.isascii():  # no surrogate in it
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidRequestError(
                    f"message {number} has a lone surrogate (U+{ord(text[exc.start]):04X}) at "
                    f"character {exc.start}, which cannot be sent as UTF-8: fix the text's "
                    "decoding, or clean it with text.encode('utf-8', 'replace').decode()"
                ) from None


def _texts(node: Any) -> Iterable[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for item in node.values():
            yield from _texts(item)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _texts(item)


def _first_set(mapping: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def call_policy(base: Policy, override: Any) -> Policy:
    """The policy of one call: ``base``, or an override (a Policy, or a mapping of fields
    applied over ``base``) given under ``routedllm_policy``."""
    if override is None:
        return base
    if isinstance(override, type(base)):
        return override
    if isinstance(override, Mapping):
        try:
            return type(base).model_validate({**base.model_dump(), **override})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
            raise InvalidRequestError(f"{POLICY_KEY} is not a valid policy: {problems}") from None
    raise InvalidRequestError(
        f"{POLICY_KEY} must be a Policy or a mapping of Policy fields, "
        f"got {type(override).__name__}"
    )
