"""routedllm: a cost-aware LLM router. Pick the model for each call, record what it cost."""

from routedllm.catalog import Capabilities, Catalog, ModelCard, StalePricesWarning
from routedllm.errors import (
    CatalogError,
    InvalidRequestError,
    NoEligibleModelError,
    RoutedLLMError,
    UnknownModelError,
    UnknownTagError,
)
from routedllm.policy import Decision, Policy, Rejection, Request, decide
from routedllm.pricing import Cost, call_cost, estimate_cost
from routedllm.tags import TAG_NAMES, VOCABULARY, infer_tags, message_features

__all__ = [
    "TAG_NAMES",
    "VOCABULARY",
    "Capabilities",
    "Catalog",
    "CatalogError",
    "Cost",
    "Decision",
    "InvalidRequestError",
    "ModelCard",
    "NoEligibleModelError",
    "Policy",
    "Rejection",
    "Request",
    "RoutedLLMError",
    "StalePricesWarning",
    "UnknownModelError",
    "UnknownTagError",
    "call_cost",
    "decide",
    "estimate_cost",
    "infer_tags",
    "message_features",
]
