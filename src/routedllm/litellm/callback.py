"""LiteLLMHandler: routes ``routed/*`` requests on the proxy and turns LiteLLM calls into CallRecords.

One LiteLLM ``CustomLogger`` does both jobs. On the proxy its ``async_pre_call_hook`` applies
the routedllm decision (:func:`routedllm.litellm.routing.route_body`). On the proxy and in
``litellm.Router`` alike, each success and failure event becomes one CallRecord per
attempt, priced with the catalog, delivered to the same sinks as the LangChain handler.
This module imports litellm; ``routedllm.litellm`` loads it only when the handler is used.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from litellm.integrations.custom_logger import CustomLogger

from routedllm.catalog import Catalog
from routedllm.errors import InvalidRequestError, RoutedLLMError, UnknownModelError
from routedllm.ledger import JsonlLedger
from routedllm.litellm.routing import META_KEY, route_body, vocabulary_tags
from routedllm.policy import PRESETS, Policy
from routedllm.pricing import estimate_cost
from routedllm.records import (
    DEFAULT_BASELINE,
    NO_TOKENS,
    CallRecord,
    Sink,
    Usage,
    build_record,
    deliver,
    resolve_model,
)
from routedllm.stats import MemorySink

logger = logging.getLogger("routedllm")

LEDGER_ENV = "ROUTEDLLM_LEDGER"
POLICY_ENV = "ROUTEDLLM_POLICY"
_MAX_ERROR_CHARS = 500


class LiteLLMHandler(CustomLogger):
    """Applies the routing decision on the LiteLLM proxy and records every attempt.

    ``catalog`` prices the calls and routes them (default: the packaged catalog merged
    with ``$ROUTEDLLM_CATALOG``); ``policy`` decides ``routed/*`` requests. Each record goes
    to ``memory`` (a :class:`MemorySink`), to a JSONL ledger when ``ledger_path`` is
    given, and to each of ``sinks``; savings are measured against ``baseline_model``.

    Records follow the LangChain handler's: one per attempt (a failed attempt has no
    tokens and its error type as outcome), cost from the catalog (LiteLLM's 0.0 for an
    unpriced model is ignored), time to first token for streams only, the task tags,
    policy and the decision's first choice as ``requested_model``. Register it with
    ``litellm.callbacks = [handler]``, or on the proxy with ``routedllm.litellm.handler``.
    """

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        policy: Policy | None = None,
        ledger_path: str | os.PathLike[str] | None = None,
        sinks: Iterable[Sink] = (),
        baseline_model: str | None = DEFAULT_BASELINE,
        memory: MemorySink | None = None,
    ) -> None:
        super().__init__()
        self.catalog = Catalog.from_env() if catalog is None else catalog
        self.policy = Policy() if policy is None else policy
        if baseline_model is not None and resolve_model(self.catalog, baseline_model) is None:
            raise UnknownModelError(baseline_model, self.catalog.ids)
        self.baseline_model = baseline_model
        self.memory = MemorySink() if memory is None else memory
        self.ledger = None if ledger_path is None else JsonlLedger(ledger_path)
        self.sinks: tuple[Sink, ...] = (
            self.memory, *(() if self.ledger is None else (self.ledger,)), *sinks)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The proxy runs a pre-call hook only when the instance's own class defines it.
        super().__init_subclass__(**kwargs)
        if "async_pre_call_hook" not in vars(cls):
            cls.async_pre_call_hook = LiteLLMHandler.async_pre_call_hook  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return (f"LiteLLMHandler(policy={self.policy.preset!r}, sinks={list(self.sinks)!r}, "
                f"baseline={self.baseline_model!r})")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LiteLLMHandler:
        """A handler configured by the environment, as the proxy's config refers to it.

        ``ROUTEDLLM_CATALOG``: a catalog override file; ``ROUTEDLLM_LEDGER``: the JSONL
        ledger path (unset: records stay in memory); ``ROUTEDLLM_POLICY``: a preset name
        (value, quality, cheapest) or a YAML file of :class:`Policy` fields.
        """
        env = os.environ if env is None else env
        ledger = env.get(LEDGER_ENV) or None
        if ledger is None:
            logger.warning("routedllm: %s is not set: LiteLLM call records are kept in memory "
                           "only", LEDGER_ENV)
        return cls(Catalog.from_env(env), policy=policy_from(env.get(POLICY_ENV)),
                   ledger_path=ledger)

    # -- proxy hook -----------------------------------------------------------------------
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict,
                                  call_type: Any) -> dict | str:
        """Route a ``routed/*`` request: the model, its fallbacks and the decision's summary.

        A request that cannot be routed is rejected with routedllm's message (HTTP 400).
        """
        try:
            route_body(self.catalog, self.policy, data)
        except RoutedLLMError as exc:
            return f"routedllm: {exc}"
        return data

    # -- logging ----------------------------------------------------------------------------
    # LiteLLM passes these four by keyword: the parameter names must stay exactly these.
    def log_success_event(self, kwargs: dict[str, Any], response_obj: Any,
                          start_time: dt.datetime, end_time: dt.datetime) -> None:
        deliver(self.sinks, [self.record(kwargs, response_obj, start_time, end_time)])

    def log_failure_event(self, kwargs: dict[str, Any], response_obj: Any,
                          start_time: dt.datetime, end_time: dt.datetime) -> None:
        deliver(self.sinks, [self.record(kwargs, response_obj, start_time, end_time, ok=False)])

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any,
                                      start_time: dt.datetime, end_time: dt.datetime) -> None:
        self.log_success_event(kwargs, response_obj, start_time, end_time)

    async def async_log_failure_event(self, kwargs: dict[str, Any], response_obj: Any,
                                      start_time: dt.datetime, end_time: dt.datetime) -> None:
        self.log_failure_event(kwargs, response_obj, start_time, end_time)

    def record(self, kwargs: Mapping[str, Any], response_obj: Any, start_time: Any,
               end_time: Any, *, ok: bool = True) -> CallRecord:
        """The CallRecord of one LiteLLM event (LiteLLM's logger arguments, as given)."""
        slo = _mapping(kwargs.get("standard_logging_object"))
        meta = _mapping(_mapping(kwargs.get("litellm_params")).get("metadata"))
        routed = _mapping(meta.get(META_KEY))
        model = _str(slo.get("model")) or _str(kwargs.get("model")) or "unknown"
        started = _epoch(slo.get("startTime"), start_time)
        ended = _epoch(slo.get("endTime"), end_time)
        latency = None if started is None or ended is None else max(0.0, ended - started)
        first = _number(slo.get("completionStartTime"))
        # completionStartTime is the first chunk of a stream; on a plain call it is the end.
        ttft = (max(0.0, first - started) if ok and slo.get("stream") is True
                and first is not None and started is not None else None)
        tags = (tuple(vocabulary_tags(routed.get("tags")))
                or vocabulary_tags(slo.get("request_tags")) or vocabulary_tags(meta.get("tags")))
        requested = _str(routed.get("model")) or _str(meta.get("original_model_group")) \
            or _str(slo.get("model_group"))
        fields: dict[str, Any] = {}
        if ok:
            usage = _usage(response_obj, slo)
            card = resolve_model(self.catalog, model)
            tokens = (routed.get("estimated_input_tokens"), routed.get("expected_output_tokens"))
            if card is not None and all(isinstance(t, int) for t in tokens):
                fields["estimated_cost_usd"] = estimate_cost(card, *tokens)
            fields["answering_model"] = _str(getattr(response_obj, "model", None))
        else:
            usage = NO_TOKENS
            error = kwargs.get("exception")
            info = _mapping(slo.get("error_information"))
            fields["outcome"] = (_str(info.get("error_class"))
                                 or (type(error).__name__ if error is not None else "error"))
            fields["error"] = _clip(_str(slo.get("error_str")) or (str(error) if error else None))
        return build_record(
            self.catalog, model, usage=usage,
            ts=dt.datetime.fromtimestamp(started, dt.UTC) if started else dt.datetime.now(dt.UTC),
            latency_s=latency, ttft_s=ttft, baseline_model=self.baseline_model,
            attempt=_attempt(meta), run_id=_str(slo.get("trace_id")) or _str(kwargs.get("litellm_call_id")),
            tags=tags, policy=_str(routed.get("policy")), requested_model=requested, **fields)


def policy_from(value: str | None) -> Policy:
    """A policy from a preset name or a YAML file of Policy fields; None: the default."""
    if not value:
        return Policy()
    if value in PRESETS:
        return Policy(preset=value)  # type: ignore[arg-type]
    path = Path(value)
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        raise InvalidRequestError(
            f"{POLICY_ENV}={value!r} is neither a preset ({', '.join(PRESETS)}) nor a readable "
            f"policy file: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"{path}: a policy file is a mapping of Policy fields")
    return Policy.model_validate(data)


# -- helpers --------------------------------------------------------------------------------
def _attempt(meta: Mapping[str, Any]) -> int:
    """1 for the first model tried, 2 for the first fallback...: from LiteLLM's walk counters.

    Each earlier level of the fallback walk used up ``max_retries`` retries after its try.
    """
    depth = _count(meta.get("attempted_fallbacks"))
    retries = _count(meta.get("max_retries"))
    return 1 + depth * (1 + retries) + _count(meta.get("attempted_retries"))


def _usage(response: Any, slo: Mapping[str, Any]) -> Usage | None:
    """The response's OpenAI usage (with cached and reasoning details), else the payload's counts."""
    usage = getattr(response, "usage", None)
    if hasattr(usage, "model_dump"):
        usage = usage.model_dump()
    found = Usage.from_openai(usage if isinstance(usage, Mapping) else None)
    if found is not None:
        return found
    prompt, completion = slo.get("prompt_tokens"), slo.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int) and prompt + completion > 0:
        return Usage(prompt, completion)
    return None


def _epoch(value: Any, fallback: Any) -> float | None:
    number = _number(value)
    if number is not None:
        return number
    return fallback.timestamp() if isinstance(fallback, dt.datetime) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= _MAX_ERROR_CHARS:
        return text
    return text[: _MAX_ERROR_CHARS - 3] + "..."
