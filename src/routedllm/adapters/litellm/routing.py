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

from routedllm.core.decision import Decision, Router
from routedllm.core.errors import InvalidRequestError, NoEligibleModelError
from routedllm.core.requests import Request
from routedllm.core.tags import TAG_NAMES

PREFIX = "routed/"
AUTO = f"{PREFIX}auto"
META_KEY = "routedllm"  # the decision's summary, in the request's metadata
_HINT = (
    "The call needs {caps}, and no eligible model is known to have it. Mark the models you "
    "trust in a catalog override (ROUTEDLLM_CATALOG); a strict policy (strict_capabilities: "
    "true in ROUTEDLLM_POLICY) refuses unknown tool and JSON support, and image input is "
    "assumed only with allow_unknown_capabilities: true."
)


def routed_groups() -> tuple[str, ...]:
    """The model group names that apply the routing decision: ``routed/auto`` and one per tag."""
    return (AUTO, *(f"{PREFIX}{tag}" for tag in TAG_NAMES))


def group_tags(group: str, given: Iterable[str] = ()) -> tuple[str, ...] | None:
    """The task tags a routed group routes on: its own tag first, then ``given``.

    ``routed/auto`` with no tags returns None (infer them from the messages).
    """
    if not group.startswith(PREFIX) or group not in routed_groups():
        raise InvalidRequestError(
            f"unknown routed model group {group!r}; known: {', '.join(routed_groups())}"
        )
    own = () if group == AUTO else (group[len(PREFIX) :],)
    tags = tuple(dict.fromkeys((*own, *given)))
    return tags or None


def decide_for_body(router: Router, data: Mapping[str, Any]) -> Decision:
    """The routing decision for a body that asks for a routed group (see :func:`routed_groups`).

    The body becomes a :class:`~routedllm.core.requests.Request` by the one translation
    every adapter uses (:meth:`Request.from_openai_body`): the group's own tag first, then
    the body's task tags, tools, response format, output limit and images.
    """
    group = data.get("model")
    if not isinstance(group, str):
        raise InvalidRequestError(f"the request's model must be a string, got {group!r:.80}")
    own = group_tags(group)
    request = Request.from_openai_body(data, tags=own or ())
    try:
        return router.decide(request)
    except NoEligibleModelError as exc:
        if not request.require or exc.hint:
            raise
        raise NoEligibleModelError(
            exc.tags, exc.rejected, _HINT.format(caps=", ".join(sorted(request.require)))
        ) from None


def route_body(router: Router, data: MutableMapping[str, Any]) -> Decision | None:
    """Apply the decision to a request body in place; None when it asks for no routed group.

    Sets ``model`` to the chosen catalog model and ``fallbacks`` to the rest of the ranking
    (a per-request list, which replaces the router's own), and records the decision under
    ``metadata["routedllm"]``, which LiteLLM hands to its loggers.
    """
    group = data.get("model")
    if not isinstance(group, str) or not group.startswith(PREFIX):
        return None
    decision = decide_for_body(router, data)
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
