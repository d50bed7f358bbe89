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


def request_for_body(data: Mapping[str, Any]) -> Request:
    """The :class:`~routedllm.core.requests.Request` of a body that asks for a routed group.

    The one translation every adapter uses (:meth:`Request.from_openai_body`): the group's
    own tag first, then the body's task tags, tools, response format, output limit and
    images. Names among the body's tags that are not task tags are kept as ``ignored_tags``.
    """
    group = data.get("model")
    if not isinstance(group, str):
        raise InvalidRequestError(f"the request's model must be a string, got {group!r:.80}")
    return Request.from_openai_body(data, tags=group_tags(group) or ())


def decide_for_body(
    router: Router, data: Mapping[str, Any], request: Request | None = None
) -> Decision:
    """The routing decision for a body that asks for a routed group (see :func:`routed_groups`).

    ``request`` is the body's :func:`request_for_body`, when the caller already has it.
    """
    request = request_for_body(data) if request is None else request
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

    Sets ``model`` to the chosen catalog model and ``fallbacks`` to :func:`fallback_order`
    (a per-request list, which replaces the router's own), and records the decision under
    ``metadata["routedllm"]``, which LiteLLM hands to its loggers, with the tag names that
    were not task tags (``ignored_tags``).
    """
    group = data.get("model")
    if not isinstance(group, str) or not group.startswith(PREFIX):
        return None
    request = request_for_body(data)
    decision = decide_for_body(router, data, request)
    data["model"] = decision.model
    data["fallbacks"] = fallback_order(decision, data.get("fallbacks"))
    metadata = data.get("metadata")
    if not isinstance(metadata, MutableMapping):
        metadata = data["metadata"] = {}
    metadata[META_KEY] = {
        **decision.summary(),
        "group": group,
        "estimated_input_tokens": decision.estimated_input_tokens,
        "expected_output_tokens": decision.expected_output_tokens,
        "ignored_tags": list(request.ignored_tags),
    }
    return decision


def fallback_order(decision: Decision, client: Any = None) -> list[Any]:
    """The models tried after the decision's choice: the client's own ``fallbacks`` first,
    in their order, then the rest of the decision's ranking.

    A client that names fallbacks chose them on purpose, so they come before routedllm's;
    the ranking still follows, so a request is never left with fewer models to try.
    Entries naming the chosen model, a routed group or a model already listed are dropped
    (a group would route again); LiteLLM's dict entries are kept as given.
    """
    if client is None or client == []:
        return list(decision.fallbacks)
    if isinstance(client, str) or not isinstance(client, Iterable):
        raise InvalidRequestError(
            f"fallbacks must be a list of model names, got {type(client).__name__}"
        )
    order: list[Any] = []
    seen = {decision.model}
    for entry in (*client, *decision.fallbacks):
        if isinstance(entry, str):
            if entry in seen or entry.startswith(PREFIX):
                continue
            seen.add(entry)
        order.append(entry)
    return order
