"""routedllm: a cost-aware LLM router. Pick the model for each call, record what it cost.

The names here are the ones most programs need; everything else lives in its submodule
(``routedllm.core``, ``routedllm.records``, ``routedllm.reliability``,
``routedllm.adapters``, ``routedllm.evaluation``, ``routedllm.testing``).
``RoutedChatModel`` loads langchain-openai and the OpenAI SDK and ``CostLatencyHandler``
loads langchain-core, so they are imported on first use: ``import routedllm`` stays light,
and so do the commands that never touch LangChain (``routedllm eval``, ``report``).
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from routedllm.core.catalog import Catalog
from routedllm.core.decision import Decision, Policy, Router, decide
from routedllm.core.errors import (
    AllAttemptsFailedError,
    BudgetExceeded,
    NoEligibleModelError,
    RoutedLLMError,
    StreamInterruptedError,
)
from routedllm.core.requests import Request
from routedllm.records.ledger import JsonlLedger
from routedllm.records.memory import MemorySink
from routedllm.records.routed import RoutedCall
from routedllm.records.schema import CallRecord
from routedllm.records.telemetry import OTelSink
from routedllm.reliability.breaker import CircuitBreaker
from routedllm.reliability.budget import LocalBudget, RedisBudget

if TYPE_CHECKING:
    from routedllm.adapters.langchain.chat_model import RoutedChatModel
    from routedllm.adapters.langchain.handler import CostLatencyHandler
    from routedllm.adapters.langchain.middleware import RoutingMiddleware

try:
    __version__ = version("routedllm")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> object:
    """Import the LangChain adapters on first use: they load langchain-core (~0.2 s) and,
    for RoutedChatModel, openai and langchain-openai (~1 s)."""
    if name == "CostLatencyHandler":
        from routedllm.adapters.langchain.handler import CostLatencyHandler

        return CostLatencyHandler
    if name == "RoutedChatModel":
        from routedllm.adapters.langchain.chat_model import RoutedChatModel

        return RoutedChatModel
    if name == "RoutingMiddleware":  # LangChain v1 agents: needs the agents extra
        try:
            from routedllm.adapters.langchain.middleware import RoutingMiddleware
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] not in ("langchain", "langgraph"):
                raise
            raise ImportError(
                f"routedllm.RoutingMiddleware needs langchain>=1.5 ({exc}); "
                "install it with: pip install 'routedllm[agents]'"
            ) from exc
        return RoutingMiddleware
    raise AttributeError(f"module 'routedllm' has no attribute {name!r}")


__all__ = [
    "AllAttemptsFailedError",
    "BudgetExceeded",
    "CallRecord",
    "Catalog",
    "CircuitBreaker",
    "CostLatencyHandler",
    "Decision",
    "JsonlLedger",
    "LocalBudget",
    "MemorySink",
    "NoEligibleModelError",
    "OTelSink",
    "Policy",
    "RedisBudget",
    "Request",
    "RoutedCall",
    "RoutedChatModel",
    "RoutedLLMError",
    "RoutingMiddleware",
    "Router",
    "StreamInterruptedError",
    "__version__",
    "decide",
]
