"""The errors routedllm raises. Each message names the problem and what to do about it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class RoutedLLMError(Exception):
    """Base class of every routedllm error."""


class CatalogError(RoutedLLMError, ValueError):
    """A catalog file or entry is malformed; the message names file, model and field."""


class UnknownModelError(RoutedLLMError, KeyError):
    """A model id is not in the catalog."""

    def __init__(self, model_id: str, known: Iterable[str]) -> None:
        self.model_id = model_id
        self.known = tuple(known)
        super().__init__(model_id)

    def __str__(self) -> str:
        return f"unknown model {self.model_id!r}; the catalog has: {', '.join(self.known)}"


class UnknownTagError(RoutedLLMError, ValueError):
    """A task tag is not in the vocabulary."""

    def __init__(self, tag: str, known: Iterable[str]) -> None:
        self.tag = tag
        self.known = tuple(known)
        super().__init__(f"unknown tag {tag!r}; known tags: {', '.join(self.known)}")


class InvalidRequestError(RoutedLLMError, ValueError):
    """The request cannot be routed as given (e.g. an empty message list)."""


class NoEligibleModelError(RoutedLLMError):
    """Every candidate was eliminated; ``rejected`` says what eliminated each one."""

    def __init__(
        self, tags: Sequence[str], rejected: Sequence[tuple[str, str]], hint: str | None = None
    ) -> None:
        self.tags = tuple(tags)
        self.rejected = tuple(rejected)
        self.hint = hint
        lines = "\n".join(f"  - {model}: {reason}" for model, reason in self.rejected)
        tail = f"\n{hint}" if hint else ""
        super().__init__(f"no eligible model for tags {list(self.tags)}:\n{lines}{tail}")


class AllAttemptsFailedError(RoutedLLMError):
    """Every model a call could use failed; ``attempts`` has one record per attempt.

    Each record is a mapping with at least ``model``, ``outcome`` and ``error``. The last
    upstream exception is the ``__cause__``.
    """

    def __init__(self, attempts: Sequence[Mapping[str, Any]], tags: Sequence[str] = ()) -> None:
        self.attempts = [dict(a) for a in attempts]
        self.tags = tuple(tags)
        lines = "\n".join(
            f"  {i}. {a['model']}: {a.get('outcome')}: {a.get('error')}"
            for i, a in enumerate(self.attempts, 1)
        )
        super().__init__(
            f"all {len(self.attempts)} attempts failed for tags {list(self.tags)}:\n{lines}"
        )


class BudgetExceeded(RoutedLLMError):
    """A call would break a spend limit; ``scope`` says which (call, run, window, unknown_cost).

    Raised before the call is sent, so nothing was spent on it.
    """

    def __init__(
        self,
        message: str,
        *,
        scope: str,
        limit_usd: float | None = None,
        spent_usd: float | None = None,
        reserved_usd: float | None = None,
        requested_usd: float | None = None,
    ) -> None:
        self.scope = scope
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        self.requested_usd = requested_usd
        super().__init__(message)
