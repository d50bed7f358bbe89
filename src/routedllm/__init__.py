"""routedllm: a cost-aware LLM router. Pick the model for each call, record what it cost."""

from typing import TYPE_CHECKING

from routedllm.budget import (
    Budget,
    BudgetBackendError,
    BudgetLimits,
    BudgetStatus,
    LocalBudget,
    RedisBudget,
    Reservation,
)
from routedllm.callbacks import CostLatencyHandler
from routedllm.catalog import Capabilities, Catalog, ModelCard, StalePricesWarning
from routedllm.errors import (
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
from routedllm.health import Admission, CircuitBreaker
from routedllm.ledger import JsonlLedger, LedgerError, LedgerWarning, iter_ledger, read_ledger
from routedllm.policy import Decision, Policy, Rejection, Request, decide
from routedllm.pricing import Cost, call_cost, estimate_cost
from routedllm.records import CallRecord, Sink, Usage, build_record, resolve_model
from routedllm.stats import MemorySink
from routedllm.tags import TAG_NAMES, VOCABULARY, infer_tags, message_features
from routedllm.telemetry import OTelSink

if TYPE_CHECKING:
    from routedllm.chat_model import RoutedChatModel


def __getattr__(name: str) -> object:
    """Import RoutedChatModel on first use: it loads openai and langchain-openai (~1 s)."""
    if name == "RoutedChatModel":
        from routedllm.chat_model import RoutedChatModel

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
