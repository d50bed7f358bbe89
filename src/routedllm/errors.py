"""The errors routedllm raises. Each message names the problem and what to do about it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


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

    def __init__(self, tags: Sequence[str], rejected: Sequence[tuple[str, str]]) -> None:
        self.tags = tuple(tags)
        self.rejected = tuple(rejected)
        lines = "\n".join(f"  - {model}: {reason}" for model, reason in self.rejected)
        super().__init__(f"no eligible model for tags {list(self.tags)}:\n{lines}")
