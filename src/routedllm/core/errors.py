"""The errors routedllm raises. Each message names the problem and what to do about it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the record type only; core never imports records at run time
    from routedllm.records.routed import RoutedCall


class RoutedLLMError(Exception):
    """Base class of every routedllm error.

    ``call`` is the :class:`~routedllm.records.routed.RoutedCall` of the call that failed
    (its decision and every attempt), or None when the error came before routing.
    """

    call: RoutedCall | None = None


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
    """Every model a call could use failed or was passed over.

    ``call.attempts`` has one record per attempt sent, ``call.skipped`` the models passed
    over without a request. The last upstream exception is the ``__cause__``.
    """

    def __init__(self, call: RoutedCall) -> None:
        self.call = call
        sent, passed = len(call.attempts), len(call.skipped)
        what = f"{sent} attempt{'s' if sent != 1 else ''} failed"
        if passed:
            what += f" and {passed} model{'s' if passed != 1 else ''} passed over"
        super().__init__(f"every model failed for tags {list(call.tags)} ({what}):\n{_lines(call)}")

    @property
    def tags(self) -> tuple[str, ...]:
        return self.call.tags if self.call is not None else ()


class StreamInterruptedError(RoutedLLMError):
    """A stream broke after its first chunk reached the caller, so it could not fall back.

    ``model`` is the model whose stream broke; ``call.attempts[-1]`` is the broken attempt,
    with the usage seen before the break (None when the upstream sent none). The upstream
    exception is the ``__cause__``.
    """

    def __init__(self, model: str, call: RoutedCall) -> None:
        self.model = model
        self.call = call
        super().__init__(
            f"the stream from {model} broke after it started, so it cannot fall back "
            f"(tags {list(call.tags)}):\n{_lines(call)}"
        )

    @property
    def tags(self) -> tuple[str, ...]:
        return self.call.tags if self.call is not None else ()


def _lines(call: RoutedCall) -> str:
    """One numbered line per attempt (model, outcome, error), then one per skipped model."""
    lines = [f"  {i}. {a.model}: {a.error or a.outcome}" for i, a in enumerate(call.attempts, 1)]
    lines += [f"  - {s.model}: skipped ({s.reason}): {s.detail}" for s in call.skipped]
    return "\n".join(lines)


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
