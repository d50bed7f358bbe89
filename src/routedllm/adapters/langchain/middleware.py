"""RoutingMiddleware: route every model call of a LangChain v1 agent (``create_agent``).

LangChain v1 selects an agent's model per call in ``wrap_model_call`` with
``request.override(model=...)``; this middleware does that with one shared
:class:`~routedllm.adapters.langchain.chat_model.RoutedChatModel`, so every call runs
routedllm's decision and attempt loop (breaker, budget, fallbacks) and its answer carries a
:class:`~routedllm.records.routed.RoutedCall` in ``response_metadata["routedllm"]``.

The rule for one agent run (one ``invoke``): its task tags are fixed when it starts, from
the middleware's ``tags``, else the run's (``config={"tags": [...]}`` vocabulary names or
``metadata={"routedllm_tags": ...}``), else inferred from the run's human turn; tool
results never change them. The first model call is routed; later calls are sent with
``routedllm_sticky_model`` set to the model that answered it, so routedllm's decision ranks
that model first while it is eligible (same tags, the conversation as it now stands, the
breaker's view) and keeps the other models as its fallbacks. When it is not eligible, or
fails, the call falls back within the same routed call and the run goes on with the model
that answered. A new run (the next human turn) routes afresh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    OmitFromInput,
)
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import Command

from routedllm.adapters.langchain.chat_model import AUTO, STICKY_KEY, RoutedChatModel
from routedllm.core.catalog import Catalog
from routedllm.core.decision import Policy
from routedllm.core.errors import InvalidRequestError
from routedllm.core.requests import TAGS_KEY, select_tags
from routedllm.core.tags import infer_tags, message_features, validate_tags
from routedllm.records.routed import RoutedCall

ROUTE_KEY = "routedllm_route"
"""The agent-state key holding the run's route: ``{"tags", "source", "model"}``."""
_RECORD_KEY = "routedllm"


class RoutingState(AgentState[Any]):
    """Agent state with the run's route (kept in checkpoints, shown in the agent's output)."""

    routedllm_route: NotRequired[Annotated[dict[str, Any], OmitFromInput]]  # type: ignore[valid-type, unused-ignore]


@dataclass(frozen=True, slots=True)
class Route:
    """What a run routes on: its task tags, where they came from, and the run's model.

    ``source`` is ``middleware`` (the middleware's ``tags``), ``run`` (the run's config),
    ``inferred`` (read off the run's human turn) or ``none`` (no message to read).
    ``model`` is the model that answered the run's last model call (None before the first).
    """

    tags: tuple[str, ...]
    source: str
    model: str | None = None

    def as_state(self) -> dict[str, Any]:
        return {"tags": list(self.tags), "source": self.source, "model": self.model}

    @classmethod
    def from_state(cls, value: Any) -> Route | None:
        if not isinstance(value, Mapping) or "tags" not in value:
            return None
        model = value.get("model")
        return cls(
            tuple(value.get("tags") or ()),
            str(value.get("source") or "run"),
            model if isinstance(model, str) else None,
        )


class RoutingMiddleware(AgentMiddleware[RoutingState, Any, Any]):
    """Routes each model call of a ``create_agent`` agent through routedllm.

    ::

        routing = RoutingMiddleware(policy=Policy(preset="quality"))
        agent = create_agent(routing.model, tools=[...], middleware=[routing])

    ``model`` is the :class:`RoutedChatModel` every call goes through (shared: its circuit
    breaker, budget and sticky memory see all calls); without one, a RoutedChatModel is
    built from ``catalog``, ``policy`` and ``model_params`` (``api_key``, ``base_url``,
    ``budget``, ...). ``tags`` fixes the task tags of every run; without them each run takes
    its own (see the module docstring). ``keep_model=False`` routes every call on its own,
    with the run's tags still fixed.

    Order among LangChain's middlewares (first is outermost): ``ModelRetryMiddleware``
    before this one (it retries the routed step), ``ModelFallbackMiddleware`` after it (its
    models answer when no routed model did), ``ModelCallLimitMiddleware`` anywhere.
    """

    state_schema = RoutingState

    def __init__(
        self,
        model: RoutedChatModel | None = None,
        *,
        catalog: Catalog | None = None,
        policy: Policy | None = None,
        tags: str | Iterable[str] | None = None,
        keep_model: bool = True,
        **model_params: Any,
    ) -> None:
        super().__init__()
        if model is None:
            params = dict(model_params)
            if catalog is not None:
                params["catalog"] = catalog
            if policy is not None:
                params["policy"] = policy
            model = RoutedChatModel(**params)
        elif not isinstance(model, RoutedChatModel):
            raise TypeError(
                f"model must be a RoutedChatModel, got {type(model).__name__}; to route "
                "through another chat model, use LangChain's own model middleware"
            )
        elif catalog is not None or policy is not None or model_params:
            named = {"catalog": catalog, "policy": policy, **model_params}
            given = sorted(k for k, v in named.items() if v is not None or k in model_params)
            raise TypeError(
                f"give either model= or the parameters to build one ({', '.join(given)}), "
                "not both: set them on the RoutedChatModel"
            )
        self.model: RoutedChatModel = model
        self.tags: tuple[str, ...] | None = None if tags is None else _tag_names(tags)
        self.keep_model = keep_model

    def __repr__(self) -> str:
        return f"RoutingMiddleware(tags={self.tags!r}, keep_model={self.keep_model})"

    # -- the run: its tags are fixed when it starts --------------------------------------------
    def before_agent(self, state: RoutingState, runtime: Runtime[Any]) -> dict[str, Any]:
        """Fix the run's task tags (a new run, a new task: the run's model is chosen anew)."""
        return {ROUTE_KEY: self.route_for(state.get("messages") or ()).as_state()}

    async def abefore_agent(self, state: RoutingState, runtime: Runtime[Any]) -> dict[str, Any]:
        return self.before_agent(state, runtime)

    def route_for(self, messages: Sequence[AnyMessage]) -> Route:
        """The route a run starting on ``messages`` gets (tags from the middleware, the run's
        config, else the last human turn)."""
        if self.tags is not None:
            return Route(self.tags, "middleware")
        config_tags, metadata = _run_config()
        selection = select_tags(
            given=metadata.get(TAGS_KEY), names=(*config_tags, *(self.model.tags or ()))
        )
        if selection.tags:
            return Route(selection.tags, "run")
        human = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        turn = [human] if human is not None else list(messages)
        if not turn:
            return Route((), "none")
        policy = self.model.policy
        try:
            features = message_features(turn)
        except InvalidRequestError:
            return Route((), "none")
        inferred = infer_tags(
            features, cjk_share=policy.cjk_share, long_context_tokens=policy.long_context_tokens
        )
        return Route(inferred, "inferred")

    # -- each model call -------------------------------------------------------------------------
    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | ExtendedModelResponse[Any]:
        route = self._route(request)
        return self._finish(route, handler(self._plan(request, route)))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | ExtendedModelResponse[Any]:
        route = self._route(request)
        return self._finish(route, await handler(self._plan(request, route)))

    def _route(self, request: ModelRequest[Any]) -> Route:
        state = request.state or {}
        return Route.from_state(state.get(ROUTE_KEY)) or self.route_for(state.get("messages", ()))

    def _plan(self, request: ModelRequest[Any], route: Route) -> ModelRequest[Any]:
        """The request sent: through the routed model with the run's tags and, once the run
        has a model, ``routedllm_sticky_model`` set to it (the decision ranks it first while
        it is eligible; the other models stay its fallbacks)."""
        settings = dict(request.model_settings)
        if route.tags:
            settings[TAGS_KEY] = list(route.tags)
        if (
            self.keep_model
            and route.model is not None
            and self.model.model_name == AUTO
            and "model" not in settings
        ):
            settings.setdefault(STICKY_KEY, route.model)
        return request.override(model=self.model, model_settings=settings)

    def _finish(
        self, route: Route, response: ModelResponse[Any]
    ) -> ModelResponse[Any] | ExtendedModelResponse[Any]:
        """The response, and the run's model in state when this call changed it."""
        call = answered(response.result)
        if call is None or call.model is None or call.model == route.model:
            return response
        moved = Route(route.tags, route.source, call.model)
        return ExtendedModelResponse(
            model_response=response, command=Command(update={ROUTE_KEY: moved.as_state()})
        )


def answered(messages: Iterable[Any]) -> RoutedCall | None:
    """The routed call record of the first AI message that carries one."""
    for message in messages:
        if isinstance(message, AIMessage):
            call = RoutedCall.from_metadata(message.response_metadata.get(_RECORD_KEY))
            if call is not None:
                return call
    return None


def _run_config() -> tuple[list[str], Mapping[str, Any]]:
    """The running graph's tags and metadata (empty outside a run)."""
    try:
        config = get_config()
    except RuntimeError:
        return [], {}
    tags = config.get("tags") or []
    metadata = config.get("metadata") or {}
    return list(tags), metadata if isinstance(metadata, Mapping) else {}


def _tag_names(tags: str | Iterable[str]) -> tuple[str, ...]:
    names = [t.strip() for t in tags.split(",")] if isinstance(tags, str) else list(tags)
    return validate_tags(n for n in names if n)


__all__ = ["ROUTE_KEY", "Route", "RoutingMiddleware", "RoutingState", "answered"]
