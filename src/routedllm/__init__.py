"""routedllm: a cost-aware LLM router. Pick the model for each call, record what it cost."""

from typing import TYPE_CHECKING

from routedllm.adapters.langchain.handler import CostLatencyHandler
from routedllm.core.catalog import Capabilities, Catalog, ModelCard, StalePricesWarning
from routedllm.core.decision import Decision, Policy, Rejection, Request, decide
from routedllm.core.errors import (
    AllAttemptsFailedError,
    BudgetExceeded,
    CatalogError,
    InvalidRequestError,
    NoEligibleModelError,
    RoutedLLMError,
    StreamInterruptedError,
    UnknownModelError,
    UnknownTagError,
)
from routedllm.core.pricing import Cost, call_cost, estimate_cost
from routedllm.core.tags import TAG_NAMES, VOCABULARY, infer_tags, message_features
from routedllm.records.ledger import (
    JsonlLedger,
    LedgerError,
    LedgerWarning,
    iter_ledger,
    read_ledger,
)
from routedllm.records.memory import MemorySink
from routedllm.records.schema import CallRecord, Usage, build_record, resolve_model
from routedllm.records.sinks import Sink
from routedllm.records.telemetry import OTelSink
from routedllm.reliability.breaker import Admission, CircuitBreaker
from routedllm.reliability.budget import (
    Budget,
    BudgetBackendError,
    BudgetLimits,
    BudgetStatus,
    LocalBudget,
    RedisBudget,
    Reservation,
)

if TYPE_CHECKING:
    from routedllm.adapters.langchain.chat_model import RoutedChatModel


def __getattr__(name: str) -> object:
    """Import RoutedChatModel on first use: it loads openai and langchain-openai (~1 s)."""
    if name == "RoutedChatModel":
        from routedllm.adapters.langchain.chat_model import RoutedChatModel

        return RoutedChatModel
    raise AttributeError(f"module 'routedllm' has no attribute {name!r}")


__all__ = [
    "Admission",
    "AllAttemptsFailedError",
    "Budget",
    "BudgetBackendError",
    "BudgetExceeded",
    "BudgetLimits",
    "BudgetStatus",
    "CircuitBreaker",
    "LocalBudget",
    "RedisBudget",
    "Reservation",
    "RoutedChatModel",
    "TAG_NAMES",
    "VOCABULARY",
    "CallRecord",
    "Capabilities",
    "Catalog",
    "CatalogError",
    "Cost",
    "CostLatencyHandler",
    "Decision",
    "InvalidRequestError",
    "JsonlLedger",
    "LedgerError",
    "LedgerWarning",
    "MemorySink",
    "ModelCard",
    "NoEligibleModelError",
    "OTelSink",
    "Policy",
    "Rejection",
    "Request",
    "RoutedLLMError",
    "Sink",
    "StalePricesWarning",
    "StreamInterruptedError",
    "UnknownModelError",
    "UnknownTagError",
    "Usage",
    "build_record",
    "call_cost",
    "decide",
    "estimate_cost",
    "infer_tags",
    "iter_ledger",
    "message_features",
    "read_ledger",
    "resolve_model",
]
