"""What a RoutedChatModel can do, as LangChain's model profile, read from the catalog.

LangChain reads ``model.profile`` to choose behaviour: ``create_agent`` uses the model's
native structured output when ``structured_output`` is set (else a tool call), and the
summarization middleware sizes fractional limits from ``max_input_tokens``. A routed
model is many models, so its profile is what routing can serve: a capability when at
least one model the policy may choose has it (routing then keeps to those models), and
the largest known context window among them. A capability the catalog leaves unknown
counts as the decision counts it (:func:`~routedllm.core.decision.capability_reason`).

Native structured output is claimed only for a pinned model whose catalog entry says it
supports JSON-schema output: for ``auto``, an agent's tool-call structured output keeps
every tool-calling model available to routing, where JSON-schema output would narrow it.
"""

from __future__ import annotations

from collections.abc import Iterable

from langchain_core.language_models.model_profile import ModelProfile

from routedllm.core.catalog import Catalog, ModelCard
from routedllm.core.decision import Policy, capability_reason, listed_reason


def routed_profile(catalog: Catalog, policy: Policy, model: str, auto: str) -> ModelProfile | None:
    """The LangChain profile of ``model`` (``auto``: of every model the policy allows);
    None when a pinned model is not in the catalog."""
    if model == auto:
        cards = [c for c in catalog if _allowed(c, policy)]
    else:
        card = catalog.find(model)
        cards = [card] if card is not None else []
    if not cards:
        return None
    profile: ModelProfile = {
        "text_inputs": True,
        "text_outputs": True,
        "tool_calling": _any(cards, "tools", policy),
        "image_inputs": _any(cards, "image_input", policy),
    }
    windows = [c.context_window for c in cards if c.context_window is not None]
    if windows:
        profile["max_input_tokens"] = max(windows)
    if model != auto and cards[0].capabilities.json_schema is True:
        profile["structured_output"] = True
    return profile


def _allowed(card: ModelCard, policy: Policy) -> bool:
    """A model routing may choose for some call: the policy's model lists and origins, a
    price and at least one score unless the policy allows without (per-call checks come
    later)."""
    if listed_reason(card, policy) is not None:
        return False
    if not card.priced and not policy.allow_unpriced:
        return False
    return policy.allow_unscored or any(v is not None for v in card.scores.values())


def _any(cards: Iterable[ModelCard], capability: str, policy: Policy) -> bool:
    """True when routing may serve ``capability`` with one of ``cards``."""
    return any(capability_reason(card, policy, capability) is None for card in cards)
