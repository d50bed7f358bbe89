"""The routed model groups, and the routedllm decision applied to a LiteLLM request body.

A client asks LiteLLM for ``routed/auto`` (tags given or inferred from the messages) or
``routed/<tag>`` (that task tag, plus any it gives). :func:`route_body` turns such a body
into a call to the chosen catalog model with the decision's ranking as fallbacks. The
proxy's pre-call hook and the Python ``litellm.Router`` adapter both call it. No litellm
import here: the body is a plain dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from routedllm.core.catalog import Catalog
from routedllm.core.decision import Decision, Policy, Request, decide
from routedllm.core.errors import InvalidRequestError, NoEligibleModelError
from routedllm.core.tags import TAG_NAMES, VOCABULARY, message_features

PREFIX = "routed/"
AUTO = f"{PREFIX}auto"
META_KEY = "routedllm"  # the decision's summary, in the request's metadata
_HINT = (
    "The call needs {caps}, which the catalog leaves unknown for the remaining models. "
    "Mark the models you trust in a catalog override (ROUTEDLLM_CATALOG), or set "
    "allow_unknown_capabilities: true in the policy (ROUTEDLLM_POLICY)."
)


def routed_groups() -> tuple[str, ...]:
    """The model group names that apply the routing decision: ``routed/auto`` and one per tag."""
    return (AUTO, *(f"{PREFIX}{tag}" for tag in TAG_NAMES))


def group_tags(group: str, given: Iterable[str] = ()) -> tuple[str, ...] | None:
    """The task tags a routed group routes on: its own tag first, then the request's.

    ``routed/auto`` with no vocabulary tags returns None (infer them from the messages).
    """
    if not group.startswith(PREFIX) or group not in routed_groups():
        raise InvalidRequestError(
            f"unknown routed model group {group!r}; known: {', '.join(routed_groups())}"
        )
    own = () if group == AUTO else (group[len(PREFIX) :],)
    tags = tuple(dict.fromkeys((*own, *given)))
    return tags or None


def vocabulary_tags(value: Any) -> tuple[str, ...]:
    """The routedllm task tags among request tags (a list, or a comma-separated string).

    Other tags (a team's own, LiteLLM's ``User-Agent: ...``) are left to LiteLLM.
    """
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, Iterable):
        return ()
    return tuple(
        dict.fromkeys(t.strip() for t in value if isinstance(t, str) and t.strip() in VOCABULARY)
    )


def body_tags(data: Mapping[str, Any]) -> tuple[str, ...]:
    """Task tags of a request body: ``metadata.tags`` (where the proxy merges the
    ``x-litellm-tags`` header and body ``tags``), then body ``tags``."""
    metadata = data.get("metadata")
    meta_tags = metadata.get("tags") if isinstance(metadata, Mapping) else None
    return tuple(dict.fromkeys((*vocabulary_tags(meta_tags), *vocabulary_tags(data.get("tags")))))


def required_capabilities(data: Mapping[str, Any]) -> frozenset[str]:
    """Capabilities a request body needs: tools offered, structured output, images sent."""
    need = set()
    if data.get("tools") or data.get("functions"):
        need.add("tools")
    response_format = data.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") not in (None, "text"):
        need.add("structured_output")
    if message_features(data.get("messages") or (), scan=False).has_image:
        need.add("image_input")
    return frozenset(need)


def decide_for_body(catalog: Catalog, policy: Policy, data: Mapping[str, Any]) -> Decision:
    """The routing decision for a body that asks for a routed group (see :func:`routed_groups`)."""
    group = data.get("model")
    if not isinstance(group, str):
        raise InvalidRequestError(f"the request's model must be a string, got {group!r}")
    messages = data.get("messages")
    if not messages:
        raise InvalidRequestError(f"{group}: the request has no messages to route on")
    limit = data.get("max_completion_tokens") or data.get("max_tokens")
    require = required_capabilities(data)
    request = Request(
        messages=messages,
        tags=group_tags(group, body_tags(data)),
        max_output_tokens=limit if isinstance(limit, int) and limit > 0 else None,
        require=require,
    )
    try:
        return decide(catalog, policy, request)
    except NoEligibleModelError as exc:
        if not require:
            raise
        raise NoEligibleModelError(
            exc.tags, exc.rejected, _HINT.format(caps=", ".join(sorted(require)))
        ) from None


def route_body(catalog: Catalog, policy: Policy, data: MutableMapping[str, Any]) -> Decision | None:
    """Apply the decision to a request body in place; None when it asks for no routed group.

    Sets ``model`` to the chosen catalog model and ``fallbacks`` to the rest of the ranking
    (a per-request list, which replaces the router's own), and records the decision under
    ``metadata["routedllm"]``, which LiteLLM hands to its loggers.
    """
    group = data.get("model")
    if not isinstance(group, str) or not group.startswith(PREFIX):
        return None
    decision = decide_for_body(catalog, policy, data)
    data["model"] = decision.model
    data["fallbacks"] = list(decision.fallbacks)
    metadata = data.get("metadata")
    if not isinstance(metadata, MutableMapping):
        metadata = data["metadata"] = {}
    metadata[META_KEY] = {
        **decision.summary(),
        "group": group,
        "estimated_input_tokens": decision.estimated_input_tokens,
        "expected_output_tokens": decision.expected_output_tokens,
    }
    return decision
