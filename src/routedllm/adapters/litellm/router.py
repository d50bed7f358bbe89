"""RoutedRouter: ``litellm.Router`` in Python with the routedllm decision for ``routed/*`` names.

The same decision code as the proxy's pre-call hook (:func:`route_body`): the call goes to
the chosen catalog model with the rest of the ranking as its fallbacks, and the decision
rides in the call's metadata, where :class:`~routedllm.adapters.litellm.LiteLLMHandler` reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from routedllm.adapters.litellm.config import model_list
from routedllm.adapters.litellm.routing import route_body
from routedllm.core.catalog import Catalog
from routedllm.core.decision import Policy, Router


class RoutedRouter:
    """Wraps a ``litellm.Router`` whose model list holds the catalog's models by id.

    ``acompletion``/``completion`` take ``tags`` (task tags, added to ``metadata.tags``);
    a ``routed/*`` model is decided per call, any other model name passes through.
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
        **router_kwargs: Any,
    ) -> RoutedRouter:
        """A new ``litellm.Router`` over :func:`model_list` (retries off unless given)."""
        from litellm import Router

        catalog = Catalog.from_env() if catalog is None else catalog
        router_kwargs.setdefault("num_retries", 0)
        router = Router(
            model_list=model_list(catalog, base_url=base_url, policy=policy), **router_kwargs
        )
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
