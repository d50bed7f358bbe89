"""routedllm for LiteLLM: proxy config generation, routing, and CallRecords from LiteLLM calls.

* :func:`proxy_config` / :func:`model_list` / :func:`write_config`: the proxy's
  ``config.yaml`` (and ``litellm.Router``'s model list) from the catalog;
* :class:`LiteLLMHandler`: the LiteLLM ``CustomLogger`` that routes ``routed/*`` requests
  on the proxy and records every attempt; ``handler`` is the one the generated config
  names (``routedllm.adapters.litellm.handler``), configured from the environment;
* :class:`RoutedRouter`: the same decision in front of ``litellm.Router`` in Python;
* :class:`ProxyBudgets`: spend caps the proxy's hook holds and its logger settles
  (``ROUTEDLLM_BUDGET``), in memory or shared through Redis.

Importing this package does not import litellm: the handler and ``from_catalog`` load it
when first used (``pip install 'routedllm[litellm]'``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from routedllm.adapters.litellm.budgets import ProxyBudgetConfig, ProxyBudgets
from routedllm.adapters.litellm.config import (
    HANDLER,
    add_litellm_config_command,
    deployment,
    model_list,
    proxy_config,
    render_config,
    routed_fallbacks,
    write_config,
)
from routedllm.adapters.litellm.router import RoutedRouter
from routedllm.adapters.litellm.routing import (
    AUTO,
    PREFIX,
    decide_for_body,
    route_body,
    routed_groups,
)

if TYPE_CHECKING:
    from routedllm.adapters.litellm.callback import LiteLLMHandler

_handler: Any = None
_handler_lock = threading.Lock()  # the proxy may ask from several threads at once: build one


def __getattr__(name: str) -> Any:
    """``LiteLLMHandler`` and ``handler`` import litellm, so they load on first use."""
    global _handler
    if name == "LiteLLMHandler":
        from routedllm.adapters.litellm.callback import LiteLLMHandler

        return LiteLLMHandler
    if name == "handler":
        with _handler_lock:
            if _handler is None:
                from routedllm.adapters.litellm.callback import LiteLLMHandler

                _handler = LiteLLMHandler.from_env()
            return _handler
    raise AttributeError(f"module 'routedllm.adapters.litellm' has no attribute {name!r}")


__all__ = [
    "AUTO",
    "HANDLER",
    "PREFIX",
    "LiteLLMHandler",
    "ProxyBudgetConfig",
    "ProxyBudgets",
    "RoutedRouter",
    "add_litellm_config_command",
    "decide_for_body",
    "deployment",
    "model_list",
    "proxy_config",
    "render_config",
    "route_body",
    "routed_fallbacks",
    "routed_groups",
    "write_config",
]
