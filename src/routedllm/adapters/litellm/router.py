"""RoutedRouter: ``litellm.Router`` in Python with the routedllm decision for ``routed/*`` names.

The same decision code as the proxy's pre-call hook (:func:`route_body`): the call goes to
the chosen catalog model with the rest of the ranking as its fallbacks, and the decision
rides in the call's metadata, where :class:`~routedllm.adapters.litellm.LiteLLMHandler` reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from routedllm.adapters.litellm.config import model_list
from routedllm.adapters.litellm.routing import PREFIX, route_body
from routedllm.core.catalog import Catalog
from routedllm.core.decision import Policy, Router
from routedllm.core.errors import InvalidRequestError


class RoutedRouter:
    """Wraps a ``litellm.Router`` whose model list holds the catalog's models by id.

    ``acompletion``/``completion`` take ``tags`` (task tags, added to ``metadata.tags``);
    a ``routed/*`` model is decided per call, any other model name passes through. The
    other endpoints (embeddings, text completions, the Responses API) pass through to the
    wrapped router for concrete models and refuse ``routed/*`` names, which route chat
    messages only; anything else (``model_list``, ...) is the wrapped router's.
    """

    def __init__(
        self, router: Any, *, catalog: Catalog | None = None, policy: Policy | None = None
    ) -> None:
        self.router = router
        self.catalog = Catalog.from_env() if catalog is None else catalog
        self.policy = Policy() if policy is None else policy
        self._router = Router(self.catalog, self.policy)

    def __repr__(self) -> str:
        return f"RoutedRouter(policy={self.policy.preset!r}, router={self.router!r})"

    @classmethod
    def from_catalog(
        cls,
        catalog: Catalog | None = None,
        *,
        base_url: str | None = None,
        policy: Policy | None = None,
        include_unpriced: bool = False,
        **router_kwargs: Any,
    ) -> RoutedRouter:
        """A new ``litellm.Router`` over :func:`model_list` (retries off unless given;
        models without a price only with ``include_unpriced``)."""
        from litellm import Router

        catalog = Catalog.from_env() if catalog is None else catalog
        router_kwargs.setdefault("num_retries", 0)
        models = model_list(
            catalog, base_url=base_url, policy=policy, include_unpriced=include_unpriced
        )
        router = Router(model_list=models, **router_kwargs)
        return cls(router, catalog=catalog, policy=policy)

    def prepare(
        self,
        model: str,
        messages: Sequence[Any],
        *,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The keyword arguments the router gets: routed model, fallbacks, metadata."""
        meta = dict(metadata or {})
        if tags:
            meta["tags"] = [*(meta.get("tags") or ()), *tags]
        data = {**kwargs, "model": model, "messages": list(messages), "metadata": meta}
        route_body(self._router, data)
        return data

    async def acompletion(
        self, model: str, messages: Sequence[Any], *, tags: Sequence[str] = (), **kwargs: Any
    ) -> Any:
        """``Router.acompletion`` after the routing decision."""
        return await self.router.acompletion(**self.prepare(model, messages, tags=tags, **kwargs))

    def completion(
        self, model: str, messages: Sequence[Any], *, tags: Sequence[str] = (), **kwargs: Any
    ) -> Any:
        """``Router.completion`` after the routing decision."""
        return self.router.completion(**self.prepare(model, messages, tags=tags, **kwargs))

    def __getattr__(self, name: str) -> Any:
        """The wrapped router's other attributes (``model_list``, ``get_model_names``, ...)."""
        if name == "router":  # not set yet: never recurse
            raise AttributeError(name)
        return getattr(self.router, name)

    # -- other endpoints: concrete models only ------------------------------------------------
    def embedding(self, model: str, *args: Any, **kwargs: Any) -> Any:
        model = _concrete(model, "embedding")
        return self.router.embedding(model, *args, **kwargs)

    async def aembedding(self, model: str, *args: Any, **kwargs: Any) -> Any:
        model = _concrete(model, "embedding")
        return await self.router.aembedding(model, *args, **kwargs)

    def text_completion(self, model: str, *args: Any, **kwargs: Any) -> Any:
        model = _concrete(model, "text completion")
        return self.router.text_completion(model, *args, **kwargs)

    async def atext_completion(self, model: str, *args: Any, **kwargs: Any) -> Any:
        model = _concrete(model, "text completion")
        return await self.router.atext_completion(model, *args, **kwargs)

    async def aresponses(self, model: str, *args: Any, **kwargs: Any) -> Any:
        model = _concrete(model, "Responses API")
        return await self.router.aresponses(model, *args, **kwargs)

    def responses(self, model: str, *args: Any, **kwargs: Any) -> Any:
        model = _concrete(model, "Responses API")
        return self.router.responses(model, *args, **kwargs)


def _concrete(model: str, endpoint: str) -> str:
    """``model``, unless it is a routed group: those route chat messages only."""
    if isinstance(model, str) and model.startswith(PREFIX):
        raise InvalidRequestError(
            f"{model} routes chat completions only; send {endpoint} calls to a concrete model name"
        )
    return model
