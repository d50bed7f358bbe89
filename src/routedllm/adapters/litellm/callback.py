"""LiteLLMHandler: routes ``routed/*`` requests on the proxy, records LiteLLM calls.

One LiteLLM ``CustomLogger`` does both jobs. On the proxy its ``async_pre_call_hook`` applies
the routedllm decision (:func:`routedllm.adapters.litellm.routing.route_body`) and holds the
call's estimate in the configured budgets. On the proxy and in ``litellm.Router`` alike,
every upstream attempt becomes one CallRecord under the model it called, priced with the
catalog and delivered to the same sinks as the LangChain handler: successes from LiteLLM's
success events, failed attempts from its per-attempt deployment hook. A request refused
before any model was called (by routedllm, a budget, or because every model of its chain
is cooling down) is one record under its routed group, with the reason. Each attempt is
bounded by a total deadline (:mod:`routedllm.adapters.litellm.deadlines`), a stream cut
short is recorded as ``truncated``, and the error a proxy client gets back is scrubbed of
every key the call knows. This module imports litellm; ``routedllm.adapters.litellm``
loads it only when the handler is used.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from litellm.integrations.custom_logger import CustomLogger

from routedllm.adapters.litellm.budgets import ProxyBudgets
from routedllm.adapters.litellm.routing import META_KEY, PREFIX, route_body
from routedllm.core.catalog import Catalog
from routedllm.core.decision import PRESETS, Policy, Router
from routedllm.core.errors import InvalidRequestError, RoutedLLMError, UnknownModelError
from routedllm.core.pricing import estimate_cost
from routedllm.core.requests import select_tags
from routedllm.core.tags import TAG_NAMES
from routedllm.records.memory import MemorySink
from routedllm.records.schema import (
    DEFAULT_BASELINE,
    NO_TOKENS,
    CallRecord,
    Usage,
    build_record,
    error_text,
    gateway_key,
    resolve_model,
)
from routedllm.records.schema import text_or_none as _str
from routedllm.records.sinks import Sink, deliver, sinks_for
from routedllm.reliability.attempts import TRUNCATED
from routedllm.reliability.secrets import Scrubber

logger = logging.getLogger("routedllm")

LEDGER_ENV = "ROUTEDLLM_LEDGER"
POLICY_ENV = "ROUTEDLLM_POLICY"
_RECENT_ATTEMPTS = 10_000  # failed attempts remembered, so that none is recorded twice
_WARNED_TAGS = 1_000  # unknown tag names already logged (each is logged once)
_CHAT_CALLS = frozenset({"acompletion", "completion"})
_ENDPOINTS = {
    "aembedding": "/embeddings",
    "embedding": "/embeddings",
    "atext_completion": "/completions",
    "text_completion": "/completions",
    "aresponses": "the Responses API",
    "responses": "the Responses API",
    "anthropic_messages": "/v1/messages",
}
_NO_FINISH = "Stream ended before a finish_reason was received"  # LiteLLM's words
COOLDOWN = "cooldown"
"""The outcome of a request refused because every model of its chain was cooling down."""
GROUP_HEADER = "x-litellm-model-group"
IGNORED_TAGS_HEADER = "x-routedllm-ignored-tags"


class _RecentSet:
    """The last ``size`` items added; thread-safe."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[Any, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, item: Any) -> bool:
        """Remember ``item``; False when it was already there."""
        with self._lock:
            new = item not in self._items
            self._items[item] = None
            self._items.move_to_end(item)
            if len(self._items) > self._size:
                self._items.popitem(last=False)
            return new

    def __contains__(self, item: object) -> bool:
        with self._lock:
            return item in self._items


class _AttemptCounter:
    """Attempts seen per call (by trace id), for the last ``size`` calls; thread-safe.

    LiteLLM's own counters do not say how many retries an earlier model of the fallback
    walk used (a timeout is not retried, a 429 is), so attempts are counted as recorded.
    A trace may hold many requests (a client's ``litellm_trace_id`` for a conversation):
    the count starts again at a request's first attempt, one whose LiteLLM call id is
    new to the trace while LiteLLM's walk counters say it is no retry or fallback.
    """

    def __init__(self, size: int) -> None:
        self._counts: OrderedDict[str, tuple[int, str | None]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def next(self, trace: str, call: str | None = None, first: bool = False) -> int:
        with self._lock:
            count, last = self._counts.get(trace, (0, None))
            restart = first and call is not None and last is not None and call != last
            count = 1 if restart else count + 1
            self._counts[trace] = (count, call if call is not None else last)
            self._counts.move_to_end(trace)
            if len(self._counts) > self._size:
                self._counts.popitem(last=False)
            return count


class _Pending:
    """Values by key for the last ``size`` keys, each taken at most once; thread-safe."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            if len(self._items) > self._size:
                self._items.popitem(last=False)

    def pop(self, key: str | None) -> Any:
        with self._lock:
            return None if key is None else self._items.pop(key, None)


class LiteLLMHandler(CustomLogger):
    """Applies the routing decision on the LiteLLM proxy and records every attempt.

    ``catalog`` prices the calls and routes them (default: the packaged catalog merged
    with ``$ROUTEDLLM_CATALOG``); ``policy`` decides ``routed/*`` requests. Each record goes
    to ``memory`` (a :class:`MemorySink`), to a JSONL ledger when ``ledger_path`` is
    given, and to each of ``sinks``; savings are measured against ``baseline_model``.

    Records follow the LangChain handler's: one per attempt (a failed attempt has no
    tokens and its error type as outcome), cost from the catalog (LiteLLM's 0.0 for an
    unpriced model is ignored), time to first token for streams only, the task tags,
    policy and the decision's first choice as ``requested_model``; error text without the
    gateway key (the catalog's ``api_key_env``). ``deadlines=False`` leaves attempts to
    LiteLLM's per-read timeouts alone. Register it with
    ``litellm.callbacks = [handler]``, or on the proxy with ``routedllm.adapters.litellm.handler``.
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
        budgets: ProxyBudgets | None = None,
        learned_router: Any = None,
        deadlines: bool = True,
    ) -> None:
        super().__init__()
        self.deadlines = deadlines
        self.budgets = budgets
        self.catalog = Catalog.from_env() if catalog is None else catalog
        self.policy = Policy() if policy is None else policy
        if learned_router is not None:  # a LearnedRouter or its JSON (routedllm train)
            from routedllm.learning.model import load_learned

            learned_router = load_learned(learned_router)
        self._router = Router(self.catalog, self.policy, learned_router)
        if baseline_model is not None and resolve_model(self.catalog, baseline_model) is None:
            raise UnknownModelError(baseline_model, self.catalog.ids)
        self.baseline_model = baseline_model
        self.memory, self.ledger, self.sinks = sinks_for(memory, ledger_path, sinks)
        self._recorded = _RecentSet(_RECENT_ATTEMPTS)  # (call id, run id, attempt) of failures
        self._warned = _RecentSet(_WARNED_TAGS)
        self._attempts = _AttemptCounter(_RECENT_ATTEMPTS)
        self._unlogged_streams = _Pending(_RECENT_ATTEMPTS)  # call id -> (model, started)
        self._rejected = _RecentSet(_RECENT_ATTEMPTS)  # call ids routedllm refused

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The proxy runs a proxy hook only when the instance's own class defines it.
        super().__init_subclass__(**kwargs)
        for name in _PROXY_HOOKS:
            if name not in vars(cls):
                setattr(cls, name, getattr(LiteLLMHandler, name))

    def __repr__(self) -> str:
        return (
            f"LiteLLMHandler(policy={self.policy.preset!r}, sinks={list(self.sinks)!r}, "
            f"baseline={self.baseline_model!r})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LiteLLMHandler:
        """A handler configured by the environment, as the proxy's config refers to it.

        ``ROUTEDLLM_CATALOG``: a catalog override file; ``ROUTEDLLM_LEDGER``: the JSONL
        ledger path (unset: records stay in memory); ``ROUTEDLLM_POLICY``: a preset name
        (value, quality, cheapest) or a YAML file of :class:`Policy` fields;
        ``ROUTEDLLM_BUDGET``: a YAML file of spend caps (:class:`ProxyBudgets`).
        ``ROUTEDLLM_LEARNED_ROUTER``: a learned router's JSON (``routedllm train``).
        """
        env = os.environ if env is None else env
        ledger = env.get(LEDGER_ENV) or None
        if ledger is None:
            logger.warning(
                "routedllm: %s is not set: LiteLLM call records are kept in memory only", LEDGER_ENV
            )
        return cls(
            Catalog.from_env(env),
            policy=policy_from(env.get(POLICY_ENV)),
            ledger_path=ledger,
            budgets=ProxyBudgets.from_env(env),
            learned_router=env.get("ROUTEDLLM_LEARNED_ROUTER") or None,
        )

    # -- proxy hooks ------------------------------------------------------------------------
    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any
    ) -> dict | str:
        """Route a ``routed/*`` request: the model, its fallbacks and the decision's summary;
        then hold its estimated cost in the budgets, if any.

        A request that cannot be routed, or that a budget refuses, is rejected with
        routedllm's message (HTTP 400) and recorded once under its routed group.
        """
        group = data.get("model")
        if not isinstance(group, str) or not group.startswith(PREFIX):
            return data
        try:
            kind = str(getattr(call_type, "value", call_type))
            if kind not in _CHAT_CALLS:
                where = _ENDPOINTS.get(kind, f"a {kind} call")
                raise InvalidRequestError(
                    f"{group} routes chat completions only (/chat/completions); send "
                    f"{where} requests to a concrete model name"
                )
            decision = route_body(self._router, data)
            assert decision is not None  # a routed group: route_body decided it
            routed = data["metadata"][META_KEY]
            if routed["ignored_tags"]:
                self._warn_ignored(routed["ignored_tags"])
            if self.budgets is not None:
                hold = routed["hold"] = _str(data.get("litellm_call_id")) or uuid.uuid4().hex
                await self.budgets.hold(
                    hold,
                    self.budgets.scopes(user_api_key_dict, data),
                    decision.estimated_cost_usd,
                    decision.model,
                )
        except RoutedLLMError as exc:
            self._refused(data, group, type(exc).__name__, str(exc))
            return f"routedllm: {exc}"
        return data

    async def async_pre_call_deployment_hook(
        self, kwargs: dict[str, Any], call_type: Any
    ) -> dict[str, Any] | None:
        """Bound the attempt about to be sent by a total deadline, not only per read: a
        plain answer within its ``timeout``, a stream's first content within its
        ``stream_timeout`` (:mod:`routedllm.adapters.litellm.deadlines`)."""
        if not self.deadlines or str(getattr(call_type, "value", call_type)) != "acompletion":
            return None
        from routedllm.adapters.litellm.deadlines import bounded_client

        client = bounded_client(kwargs)
        if client is None:
            return None
        kwargs["client"] = client
        return kwargs

    async def async_post_call_response_headers_hook(
        self,
        data: dict,
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, Any] | None = None,
    ) -> dict[str, str] | None:
        """The routed group as LiteLLM's model group, and the tag names that were ignored.

        A stream about to start after an earlier attempt of its call failed is remembered:
        LiteLLM logs one failure event per call, so if this stream breaks, only the
        failure hook hears of it (:meth:`async_post_call_failure_hook` records it).
        """
        self._note_unlogged_stream(data)
        routed = _mapping(_mapping(data.get("metadata")).get(META_KEY))
        group = _str(routed.get("group"))
        if group is None:
            return None
        headers = {GROUP_HEADER: group}
        ignored = routed.get("ignored_tags")
        if ignored:
            headers[IGNORED_TAGS_HEADER] = ",".join(map(str, ignored))
        return headers

    async def async_post_call_failure_hook(
        self,
        request_data: dict,
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> Any:
        """A request failed: scrub every key it knows from the error the client gets back;
        for a routed request, give its budget holds back and record it when its whole chain
        was cooling down (no model was called, so no attempt says so).

        The proxy builds the client's error body (plain or a stream's error event) from this
        same exception object after the hook, so scrubbing it in place is what the client
        sees, with its status code, type and headers unchanged.
        """
        try:
            self.scrub_exception(original_exception, request_data)
        except Exception:  # never in the way of the proxy's answer
            logger.exception("routedllm: could not scrub the error returned to the client")
        self._record_unlogged_stream(request_data, original_exception)
        routed = _mapping(_mapping(request_data.get("metadata")).get(META_KEY))
        if not routed or routed.get("rejected"):
            return None
        hold = _str(routed.get("hold"))
        if hold is not None and self.budgets is not None:
            await self.budgets.release(hold)
        if _is_cooldown(original_exception):
            self._refused(
                request_data,
                _str(routed.get("group")) or "unknown",
                COOLDOWN,
                str(original_exception),
            )
        return None

    def _note_unlogged_stream(self, data: Mapping[str, Any]) -> None:
        """Remember a stream whose failure LiteLLM would not log: its call's logging object
        has logged a failure already (an earlier attempt: a retry or a fallback)."""
        if data.get("stream") is not True:
            return
        details = _mapping(getattr(data.get("litellm_logging_obj"), "model_call_details", None))
        if not (details.get("has_logged_async_failure") or details.get("has_logged_sync_failure")):
            return
        deployment = data.get("deployment")
        model = _str(getattr(deployment, "model_name", None)) or _str(
            _mapping(deployment).get("model_name")
        )
        model = model or _str(details.get("model"))
        started = details.get("current_attempt_api_call_start_time")
        call = _str(data.get("litellm_call_id"))
        if model is not None and call is not None:
            when = started.timestamp() if isinstance(started, dt.datetime) else None
            self._unlogged_streams.put(call, (model, when))

    def _record_unlogged_stream(self, data: Mapping[str, Any], error: BaseException) -> None:
        """Record the failure of a stream noted by :meth:`_note_unlogged_stream`: one failed
        attempt under the model that streamed, tokens and cost unknown (it may be billed)."""
        noted = self._unlogged_streams.pop(_str(data.get("litellm_call_id")))
        if noted is None:
            return
        model, started = noted
        meta = _mapping(data.get("metadata"))
        text = str(error)
        now = dt.datetime.now(dt.UTC)
        record = build_record(
            self.catalog,
            model,
            usage=None,
            ts=dt.datetime.fromtimestamp(started, dt.UTC) if started else now,
            latency_s=None if started is None else max(0.0, now.timestamp() - started),
            baseline_model=self.baseline_model,
            run_id=_trace(data),
            outcome=TRUNCATED if _truncated(text) else type(error).__name__,
            error=self._error_text(text or error, data),
            **_routing(meta, meta.get("tags"), None),
        )
        deliver(self.sinks, [self._numbered(record, data)])

    def _refused(self, data: Mapping[str, Any], group: str, outcome: str, reason: str) -> None:
        """Record a request refused before any model answered: once, under its routed group.

        The call is remembered, so that LiteLLM's own failure event for it (which some
        endpoints, such as the Responses API, log under the group's deployment) is not
        recorded a second time.
        """
        metadata = _metadata_bucket(data)
        if isinstance(metadata, dict):  # LiteLLM logs the rejection too: say what rejected it
            routed = metadata.setdefault(META_KEY, {})
            if isinstance(routed, dict):
                routed.update(group=group, rejected=outcome)
        call = _str(data.get("litellm_call_id"))
        if call is not None:
            self._rejected.add(call)
        meta = _mapping(metadata)
        record = build_record(
            self.catalog,
            group,
            usage=NO_TOKENS,
            ts=dt.datetime.now(dt.UTC),
            latency_s=None,
            baseline_model=self.baseline_model,
            run_id=_trace(data),
            outcome=outcome,
            error=self._error_text(reason, data),
            **{**_routing(meta, meta.get("tags"), None), "route": group},
        )
        deliver(self.sinks, [_sent_nothing(record)])

    def _warn_ignored(self, names: Iterable[str]) -> None:
        """Log each tag name that is not a task tag once (a typo routes as if untagged)."""
        new = [n for n in names if self._warned.add(n)]
        if new:
            logger.warning(
                "routedllm: request tags %s are not routedllm task tags and do not affect "
                "routing (known: %s); each is reported once, and in the %s response header",
                ", ".join(map(repr, new)),
                ", ".join(TAG_NAMES),
                IGNORED_TAGS_HEADER,
            )

    # -- logging ----------------------------------------------------------------------------
    async def async_logging_hook(
        self, kwargs: dict[str, Any], result: Any, call_type: str
    ) -> tuple[dict[str, Any], Any]:
        """LiteLLM's own loggers (spend logs, Langfuse, ...) see the routed group as the
        ``model_group`` of a routed call's standard logging payload; ``model`` and
        ``model_id`` stay the deployment that answered. Only the payload is changed: the
        router's own bookkeeping (cooldowns, fallbacks) keeps the concrete group."""
        group = _str(_routed(kwargs).get("group"))
        slo = kwargs.get("standard_logging_object")
        if group is not None and isinstance(slo, dict) and slo.get("model_group") != group:
            kwargs["standard_logging_object"] = {**slo, "model_group": group}
        return kwargs, result

    # LiteLLM passes these four by keyword: the parameter names must stay exactly these.
    def log_success_event(
        self,
        kwargs: dict[str, Any],
        response_obj: Any,
        start_time: dt.datetime,
        end_time: dt.datetime,
    ) -> None:
        self._success(kwargs, response_obj, start_time, end_time)

    def log_failure_event(
        self,
        kwargs: dict[str, Any],
        response_obj: Any,
        start_time: dt.datetime,
        end_time: dt.datetime,
    ) -> None:
        self._failure(kwargs, response_obj, start_time, end_time)

    async def async_log_success_event(
        self,
        kwargs: dict[str, Any],
        response_obj: Any,
        start_time: dt.datetime,
        end_time: dt.datetime,
    ) -> None:
        record = self._success(kwargs, response_obj, start_time, end_time)
        if self.budgets is not None:
            hold = _str(_routed(kwargs).get("hold"))
            if hold is not None:
                await self.budgets.settle(hold, record.cost_usd)

    async def async_log_failure_event(
        self,
        kwargs: dict[str, Any],
        response_obj: Any,
        start_time: dt.datetime,
        end_time: dt.datetime,
    ) -> None:
        self._failure(kwargs, response_obj, start_time, end_time)

    def _success(
        self, kwargs: Mapping[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> CallRecord:
        """Record a success event (the sync and async methods' shared part); the record."""
        record = self._numbered(self.record(kwargs, response_obj, start_time, end_time), kwargs)
        deliver(self.sinks, [record])
        return record

    def _failure(
        self, kwargs: Mapping[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Record a failure event once: an attempt at a model (a sync call's, or a stream
        that broke after it started), or a request routedllm rejected before any model.

        Async attempts that failed before answering come from the deployment hook, which
        these events repeat (some releases call both the sync and the async method).
        Failures the proxy raises itself (authentication) are LiteLLM's to log.
        """
        slo = _mapping(kwargs.get("standard_logging_object"))
        error = kwargs.get("exception")
        proxy_error = type(error).__name__ == "ProxyException"
        call = _str(kwargs.get("litellm_call_id")) or _str(slo.get("litellm_call_id"))
        rejected = _routed(kwargs).get("rejected") or (call is not None and call in self._rejected)
        if rejected or _is_cooldown(error):
            return  # recorded once, under the routed group, when it was refused
        if not slo.get("model_id") or proxy_error:
            return
        record = self.record(kwargs, response_obj, start_time, end_time, ok=False)
        if self._recorded.add((call, record.run_id, record.attempt)):
            deliver(self.sinks, [self._numbered(record, kwargs)])

    async def async_post_call_failure_deployment_hook(
        self,
        request_data: Mapping[str, Any],
        exception: Exception,
        call_type: Any,
        fallback_depth: int | None = None,
    ) -> None:
        """Record one failed attempt at a model.

        LiteLLM calls this for every failed attempt, while its failure event fires once
        per call on the proxy (the first failure only). A model skipped because it is
        cooling down was not called: no record (a request whose whole chain is cooling
        down is recorded once by the failure hook).
        """
        if _is_cooldown(exception):
            return
        record = self.failed_attempt(request_data, exception)
        self._recorded.add(
            (_str(request_data.get("litellm_call_id")), record.run_id, record.attempt)
        )
        deliver(self.sinks, [self._numbered(record, request_data)])

    def _numbered(self, record: CallRecord, call: Mapping[str, Any]) -> CallRecord:
        """``record`` with its attempt number in its call: 1 for the first request sent.

        Each request of a trace counts from 1: a client may send one ``litellm_trace_id``
        for many requests (a conversation). ``record.attempt`` is LiteLLM's walk counters'
        figure (1: neither a retry nor a fallback), ``call`` the event's arguments.
        """
        if record.run_id is None:
            return record
        call_id = _str(call.get("litellm_call_id")) or _str(
            _mapping(call.get("standard_logging_object")).get("litellm_call_id")
        )
        attempt = self._attempts.next(record.run_id, call_id, first=record.attempt == 1)
        return record.model_copy(update={"attempt": attempt})

    def record(
        self,
        kwargs: Mapping[str, Any],
        response_obj: Any,
        start_time: Any,
        end_time: Any,
        *,
        ok: bool = True,
    ) -> CallRecord:
        """The CallRecord of one LiteLLM success or failure event (its logger arguments)."""
        slo = _mapping(kwargs.get("standard_logging_object"))
        meta = _mapping(_mapping(kwargs.get("litellm_params")).get("metadata"))
        routed = _mapping(meta.get(META_KEY))
        model = _str(slo.get("model")) or _str(kwargs.get("model")) or "unknown"
        # this attempt's start: a fallback's time excludes the attempts that failed before it
        attempt_start = kwargs.get("current_attempt_api_call_start_time") or kwargs.get(
            "api_call_start_time"
        )
        started = (
            attempt_start.timestamp()
            if isinstance(attempt_start, dt.datetime)
            else _epoch(slo.get("startTime"), start_time)
        )
        ended = _epoch(slo.get("endTime"), end_time)
        first = _number(slo.get("completionStartTime"))
        fields: dict[str, Any] = {
            "latency_s": None if started is None or ended is None else max(0.0, ended - started),
            # completionStartTime is a stream's first chunk; on a plain call it is the end
            "ttft_s": (
                max(0.0, first - started)
                if ok and slo.get("stream") is True and first is not None and started is not None
                else None
            ),
        }
        if ok:
            usage = _usage(response_obj, slo)
            card = resolve_model(self.catalog, model)
            tokens_in = routed.get("estimated_input_tokens")
            tokens_out = routed.get("expected_output_tokens")
            if card is not None and isinstance(tokens_in, int) and isinstance(tokens_out, int):
                fields["estimated_cost_usd"] = estimate_cost(card, tokens_in, tokens_out)
            fields["answering_model"] = _answering_model(response_obj)
        else:
            # a stream that broke after its first chunk may have been billed: usage unknown
            streamed = first is not None and ended is not None and first < ended
            usage = None if streamed else NO_TOKENS
            error = kwargs.get("exception")
            info = _mapping(slo.get("error_information"))
            text = _str(slo.get("error_str")) or (None if error is None else str(error))
            fields["outcome"] = (
                _str(routed.get("rejected"))
                or (TRUNCATED if _truncated(text) else None)
                or _error_class(_str(info.get("error_class")))
                or (type(error).__name__ if error is not None else "error")
            )
            fields["error"] = self._error_text(text or error, kwargs)
        ts = dt.datetime.fromtimestamp(started, dt.UTC) if started else dt.datetime.now(dt.UTC)
        return build_record(
            self.catalog,
            model,
            usage=usage,
            ts=ts,
            baseline_model=self.baseline_model,
            run_id=_trace(kwargs),
            **_routing(meta, slo.get("request_tags"), slo.get("model_group")),
            **fields,
        )

    def failed_attempt(
        self, request_data: Mapping[str, Any], exception: BaseException
    ) -> CallRecord:
        """The CallRecord of one failed attempt (the deployment hook's arguments)."""
        meta = _mapping(request_data.get("metadata") or request_data.get("litellm_metadata"))
        details = _mapping(
            getattr(request_data.get("litellm_logging_obj"), "model_call_details", None)
        )
        # set when this attempt's request went out (older releases: api_call_start_time)
        started = details.get("current_attempt_api_call_start_time") or details.get(
            "api_call_start_time"
        )
        now = dt.datetime.now()  # LiteLLM times attempts in naive local time
        started = started if isinstance(started, dt.datetime) and started.tzinfo is None else None
        return build_record(
            self.catalog,
            _str(request_data.get("model")) or "unknown",
            usage=NO_TOKENS,
            ts=(started or now).astimezone(dt.UTC),
            latency_s=None if started is None else max(0.0, (now - started).total_seconds()),
            baseline_model=self.baseline_model,
            run_id=_trace(request_data),
            outcome=type(exception).__name__,
            error=self._error_text(exception, request_data),
            **_routing(meta, meta.get("tags"), meta.get("model_group")),
        )

    def scrub_exception(self, exc: BaseException, call: Mapping[str, Any]) -> BaseException:
        """``exc`` (and its cause chain) with every key ``call`` and the proxy's deployments
        know replaced by ``[redacted]``, in every encoding; in place."""
        scrubber = Scrubber([*_call_secrets(call, gateway_key(self.catalog)), *_deployment_keys()])
        if not scrubber:
            return exc
        scrubber.exception(exc)
        for error in _chain(exc):  # LiteLLM's own fields the proxy may show the client
            for name in _LITELLM_ERROR_FIELDS:
                if name in getattr(error, "__dict__", {}):
                    try:
                        setattr(error, name, scrubber.value(error.__dict__[name]))
                    except (AttributeError, TypeError):
                        pass
        return exc

    def _error_text(self, error: object, call: Mapping[str, Any]) -> str | None:
        """A record's error text with every key the call knows scrubbed, in every encoding."""
        if error is None:
            return None
        text = str(error) or type(error).__name__
        return error_text(Scrubber(_call_secrets(call, gateway_key(self.catalog))).text(text), None)


def _call_secrets(call: Mapping[str, Any], gateway: str | None) -> list[str]:
    """Every key a LiteLLM call knows: the gateway's, the deployment's ``api_key`` (in the
    kwargs, ``litellm_params``, the logging object's details and any ``model_list``), and
    the bearer of an ``Authorization`` header."""
    found: list[str] = [gateway] if gateway else []
    details = _mapping(getattr(call.get("litellm_logging_obj"), "model_call_details", None))
    places = [call, _mapping(call.get("litellm_params")), details]
    places.append(_mapping(details.get("litellm_params")))
    for place in list(places):
        for entry in place.get("model_list") or ():
            places.append(_mapping(_mapping(entry).get("litellm_params")))
    for place in places:
        key = place.get("api_key")
        if isinstance(key, str):
            found.append(key)
        for name in ("headers", "extra_headers"):
            for header, value in _mapping(place.get(name)).items():
                if str(header).lower() in ("authorization", "api-key", "x-api-key"):
                    if isinstance(value, str):
                        found.extend((value, value.split(" ", 1)[-1]))
    proxy = _mapping(_mapping(call.get("proxy_server_request")).get("headers"))
    for header, value in proxy.items():
        if str(header).lower() == "authorization" and isinstance(value, str):
            found.extend((value, value.split(" ", 1)[-1]))
    return found


_LITELLM_ERROR_FIELDS = ("litellm_debug_info", "provider_specific_fields", "original_message")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions of its cause/context chain (each once)."""
    found: list[BaseException] = []
    stack = [exc]
    while stack:
        current = stack.pop()
        if any(current is seen for seen in found):
            continue
        found.append(current)
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return found


def _deployment_keys() -> list[str]:
    """The ``api_key`` of every deployment of the running proxy's router (resolved from
    ``os.environ/...``), so an upstream echoing another deployment's key is scrubbed too.
    Empty outside the proxy (the proxy module is never imported for this)."""
    server = sys.modules.get("litellm.proxy.proxy_server")
    router = getattr(server, "llm_router", None)
    keys = []
    for entry in getattr(router, "model_list", None) or ():
        key = _mapping(_mapping(entry).get("litellm_params")).get("api_key")
        if isinstance(key, str) and not key.startswith("os.environ/"):
            keys.append(key)
    return keys


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
            f"policy file: {exc.strerror}"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"{path}: a policy file is a mapping of Policy fields")
    return Policy.model_validate(data)


# -- helpers --------------------------------------------------------------------------------
_PROXY_HOOKS = (
    "async_pre_call_hook",
    "async_pre_call_deployment_hook",
    "async_post_call_response_headers_hook",
    "async_post_call_failure_hook",
)


def _is_cooldown(error: Any) -> bool:
    """True for LiteLLM's refusal to call a model that is cooling down (no request sent)."""
    return type(error).__name__ == "RouterRateLimitError" or (
        error is not None and "No deployments available" in str(error)[:300]
    )


def _error_class(name: str | None) -> str | None:
    """LiteLLM's error class for a failure event, in the names the deployment hook records:
    a stream that stalled after its first chunk says ``APITimeoutError`` (the OpenAI SDK's
    class), LiteLLM's own exception, as every other timed-out attempt, is ``Timeout``."""
    return "Timeout" if name == "APITimeoutError" else name


def _truncated(error: str | None) -> bool:
    """True for LiteLLM's error for a stream that closed without a finish reason: cut short,
    recorded as ``truncated`` (as the LangChain path records it), not as any other error."""
    return error is not None and _NO_FINISH in error


def _sent_nothing(record: CallRecord) -> CallRecord:
    """``record`` at a known $0: no request left the proxy, so nothing can be billed (a
    routed group has no price, and would otherwise read as an unpriced call in reports)."""
    base = record.baseline_cost_usd
    return record.model_copy(
        update={
            "input_cost_usd": 0.0,
            "output_cost_usd": 0.0,
            "cost_usd": 0.0,
            "savings_usd": None if base is None else base,
        }
    )


def _metadata_bucket(data: Mapping[str, Any]) -> Any:
    """The metadata dict LiteLLM keeps a proxy request's own fields in: ``litellm_metadata``
    on the newer endpoints (the Responses API, ``/v1/messages``), else ``metadata``."""
    bucket = data.get("litellm_metadata")
    if isinstance(bucket, dict):
        return bucket
    metadata = data.get("metadata")
    if metadata is None and isinstance(data, dict):
        metadata = data["metadata"] = {}
    return metadata


def _routed(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The decision's summary in a logger event's metadata (empty when not routed)."""
    return _mapping(_mapping(_mapping(kwargs.get("litellm_params")).get("metadata")).get(META_KEY))


def _routing(meta: Mapping[str, Any], request_tags: Any, group: Any) -> dict[str, Any]:
    """A record's routing fields from the call's metadata: the decision's when it was routed."""
    routed = _mapping(meta.get(META_KEY))
    return {
        "tags": _task_tags(routed.get("tags"))
        or _task_tags(request_tags)
        or _task_tags(meta.get("tags")),
        "policy": _str(routed.get("policy")),
        "route": _str(routed.get("group")),
        "requested_model": (
            _str(routed.get("model")) or _str(meta.get("original_model_group")) or _str(group)
        ),
        "attempt": _attempt(meta),
    }


def _task_tags(names: Any) -> tuple[str, ...]:
    """The routedllm task tags among LiteLLM request tags (the one rule: select_tags)."""
    if isinstance(names, str):
        names = names.split(",")
    if not isinstance(names, list | tuple):
        return ()
    return select_tags(names=names).tags


def _trace(kwargs: Mapping[str, Any]) -> str | None:
    """LiteLLM's trace id, shared by the attempts of one call (the record's ``run_id``)."""
    slo = _mapping(kwargs.get("standard_logging_object"))
    return (
        _str(slo.get("trace_id"))
        or _str(kwargs.get("litellm_trace_id"))
        or _str(kwargs.get("litellm_call_id"))
    )


def _attempt(meta: Mapping[str, Any]) -> int:
    """1 for the first model tried, 2 for the first fallback...: from LiteLLM's walk counters.

    Each earlier level of the fallback walk used up ``max_retries`` retries after its try.
    """
    depth = _count(meta.get("attempted_fallbacks"))
    retries = _count(meta.get("max_retries"))
    return 1 + depth * (1 + retries) + _count(meta.get("attempted_retries"))


def _answering_model(response: Any) -> str | None:
    """The model name the provider's response reported.

    The proxy rewrites ``response.model`` to the name the client asked for; LiteLLM keeps
    the provider's in the hidden params.
    """
    hidden = getattr(response, "_hidden_params", None)
    name = _str(hidden.get("provider_response_model")) if isinstance(hidden, Mapping) else None
    name = name or _str(getattr(response, "model", None))
    return None if name is None or name.startswith(PREFIX) else name


def _usage(response: Any, slo: Mapping[str, Any]) -> Usage | None:
    """The response's OpenAI usage (cached and reasoning details), else the payload's counts."""
    usage: Any = getattr(response, "usage", None)
    dump = getattr(usage, "model_dump", None)
    if dump is not None:
        usage = dump()
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


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
