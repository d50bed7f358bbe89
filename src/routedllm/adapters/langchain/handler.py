"""CostLatencyHandler: a LangChain callback handler that turns chat model runs into CallRecords.

It works for any chat model: a RoutedChatModel run (one record per attempt, read from
``response_metadata["routedllm"]``) or a plain ``ChatOpenAI`` priced with the catalog, so a
team can measure what it spends today before switching. Records go to the sinks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from routedllm.core.catalog import Catalog
from routedllm.core.errors import RoutedLLMError, UnknownModelError
from routedllm.core.requests import select_tags
from routedllm.core.tags import TAGS_KEY
from routedllm.records.memory import MemorySink
from routedllm.records.routed import RoutedCall, call_of, close_stream
from routedllm.records.schema import (
    DEFAULT_BASELINE,
    NO_TOKENS,
    CallRecord,
    Usage,
    build_record,
    error_text,
    gateway_key,
    resolve_model,
    with_baseline,
)
from routedllm.records.schema import text_or_none as _str
from routedllm.records.sinks import Sink, deliver, sinks_for


@dataclass(slots=True)
class _Run:
    """What the handler remembers of a chat model run between its start and its end."""

    ts: dt.datetime
    started: float
    parent_run_id: str | None
    requested_model: str | None
    tags: tuple[str, ...]
    first_chunk: float | None = None


class CostLatencyHandler(BaseCallbackHandler):
    """Records cost, tokens, latency and time to first chunk of every chat model run.

    ``catalog`` prices the calls (default: the packaged catalog merged with
    ``$ROUTEDLLM_CATALOG``; pass the catalog your RoutedChatModel uses). Every record goes
    to ``memory`` (a :class:`MemorySink`, aggregates per model and tag), to a JSONL ledger
    when ``ledger_path`` is given, and to each of ``sinks``. ``baseline_model`` (a catalog
    id, or None for no comparison) is what the savings are measured against.

    Task tags of a plain chat model run are the run's LangChain tags that are in the
    routedllm vocabulary (``config={"tags": ["code"]}``, or ``metadata={"routedllm_tags":
    [...]}``), as RoutedChatModel reads them; a RoutedChatModel run reports its own.
    Time to first chunk is measured from run start to the first streamed chunk that shows
    the reply (content, a tool call or reasoning text; not the empty role chunk or a
    usage-only one), the event RoutedChatModel times too; None for calls that did not
    stream. The answering record carries the response's id and finish reason.

    Each record's latency and time to first chunk are its attempt's own (a fallback's do
    not include the time the failed models took); failed attempts have no time to first
    chunk. An LLM-cache hit of a RoutedChatModel is one ``ok`` record marked ``cache_hit``,
    with no tokens and cost 0; the original call's attempts are not recorded again. Error
    text keeps at most 500 characters, without the gateway key (the catalog's ``api_key_env``).

    Thread- and asyncio-safe: run state is keyed by run id under a lock. It runs inline
    (``run_inline = True``), so async runs timestamp chunks when they arrive instead of
    when an executor thread gets to them; the work per event is a few dict operations.
    """

    run_inline = True

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        ledger_path: str | os.PathLike[str] | None = None,
        sinks: Iterable[Sink] = (),
        baseline_model: str | None = DEFAULT_BASELINE,
        memory: MemorySink | None = None,
    ) -> None:
        super().__init__()
        self.catalog = Catalog.from_env() if catalog is None else catalog
        if baseline_model is not None and resolve_model(self.catalog, baseline_model) is None:
            raise UnknownModelError(baseline_model, self.catalog.ids)
        self.baseline_model = baseline_model
        self.memory, self.ledger, self.sinks = sinks_for(memory, ledger_path, sinks)
        self._lock = threading.Lock()
        self._runs: dict[UUID, _Run] = {}

    def __repr__(self) -> str:
        return f"CostLatencyHandler(sinks={list(self.sinks)!r}, baseline={self.baseline_model!r})"

    # -- LangChain callbacks ------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        params = kwargs.get("invocation_params") or {}
        metadata = metadata or {}
        requested = metadata.get("ls_model_name") or params.get("model") or params.get("model_name")
        try:  # the chat model's own rule; a handler never fails the call over a bad tag
            task_tags = select_tags(given=metadata.get(TAGS_KEY), names=tags or ()).tags
        except RoutedLLMError:
            task_tags = select_tags(names=tags or ()).tags
        run = _Run(
            ts=dt.datetime.now(dt.UTC),
            started=time.perf_counter(),
            parent_run_id=None if parent_run_id is None else str(parent_run_id),
            requested_model=requested if isinstance(requested, str) else None,
            tags=task_tags,
        )
        with self._lock:
            self._runs[run_id] = run

    def on_llm_new_token(
        self, token: Any, *, chunk: Any = None, run_id: UUID, **kwargs: Any
    ) -> None:
        """Time to first token: the first chunk with content or a tool call, for routed and
        plain models alike (an empty role chunk or a usage-only chunk does not count)."""
        if not token and not _shows_reply(chunk):
            return
        now = time.perf_counter()
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None and run.first_chunk is None:
                run.first_chunk = now

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        now = time.perf_counter()
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is not None:  # None: the handler was attached after the run started
            deliver(self.sinks, self._records_for_result(run, run_id, response, now))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        now = time.perf_counter()
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is not None:
            deliver(self.sinks, self._records_for_error(run, run_id, error, now))

    # -- records --------------------------------------------------------------------------
    def _record(self, run: _Run, run_id: UUID, model: str | None, **fields: Any) -> CallRecord:
        return build_record(
            self.catalog,
            model or run.requested_model or "unknown",
            ts=run.ts,
            baseline_model=self.baseline_model,
            run_id=str(run_id),
            parent_run_id=run.parent_run_id,
            **fields,
        )

    def _records_for_result(
        self, run: _Run, run_id: UUID, response: LLMResult, now: float
    ) -> list[CallRecord]:
        message = _first_message(response)
        meta = getattr(message, "response_metadata", None) or {}
        routed = RoutedCall.from_metadata(meta.get("routedllm"))
        reply = _reply_facts(meta)
        if routed is not None:
            return [
                r.model_copy(update=reply) if r.ok and not r.cache_hit else r
                for r in self._routed_records(run, run_id, routed)
            ]
        llm_output = response.llm_output or {}
        usage = Usage.from_usage_metadata(
            getattr(message, "usage_metadata", None)
        ) or Usage.from_openai(llm_output.get("token_usage"))
        answering = _str(meta.get("model_name")) or _str(llm_output.get("model_name"))
        ttft = None if run.first_chunk is None else run.first_chunk - run.started
        return [
            self._record(  # the model asked, when the catalog knows it: see build_record
                run,
                run_id,
                run.requested_model
                if resolve_model(self.catalog, run.requested_model)
                else answering or run.requested_model,
                usage=usage,
                latency_s=now - run.started,
                ttft_s=ttft,
                tags=run.tags,
                requested_model=run.requested_model,
                answering_model=answering,
            ).model_copy(update=reply)
        ]

    def _routed_records(self, run: _Run, run_id: UUID, call: RoutedCall) -> list[CallRecord]:
        """A RoutedChatModel run: its attempts as the router recorded them. A cache hit
        sent nothing: one ``ok`` record marked ``cache_hit``, free."""
        if call.cache_hit:
            return [
                self._record(
                    run,
                    run_id,
                    call.model or call.requested_model,
                    usage=NO_TOKENS,
                    cache_hit=True,
                    latency_s=call.latency_s,
                    answering_model=call.served_model,
                    tags=call.tags,
                    policy=call.policy,
                    requested_model=call.requested_model,
                )
            ]
        return [self._attributed(a, run, run_id) for a in call.attempts]

    def _attributed(self, record: CallRecord, run: _Run, run_id: UUID) -> CallRecord:
        """An attempt record under this run's ids, compared with this handler's baseline."""
        update: dict[str, Any] = {}
        if record.run_id is None:
            update["run_id"] = str(run_id)
        if record.parent_run_id is None and run.parent_run_id is not None:
            update["parent_run_id"] = run.parent_run_id
        if update:
            record = record.model_copy(update=update)
        if self.baseline_model is not None and record.baseline_model != self.baseline_model:
            record = with_baseline(record, self.catalog, self.baseline_model)
        return record

    def _records_for_error(
        self, run: _Run, run_id: UUID, error: BaseException, now: float
    ) -> list[CallRecord]:
        # A RoutedChatModel's errors carry the call's record (``.call`` on routedllm's own
        # errors, ``.routedllm_call`` on a caller error that keeps its openai type).
        routed = call_of(error)
        if routed is None and isinstance(error, GeneratorExit | asyncio.CancelledError):
            routed = close_stream(str(run_id))  # the caller stopped reading a routed stream
        if routed is not None:
            return [self._attributed(a, run, run_id) for a in routed.attempts]
        if isinstance(error, RoutedLLMError):  # refused by the router: no request, no record
            return []
        # Tokens may have been billed once a stream started: then usage is unknown, not zero.
        usage = NO_TOKENS if run.first_chunk is None else None
        return [
            self._record(
                run,
                run_id,
                run.requested_model,
                usage=usage,
                latency_s=now - run.started,
                outcome=type(error).__name__,
                error=error_text(error, gateway_key(self.catalog)),
                tags=run.tags,
                requested_model=run.requested_model,
            )
        ]


def _reply_facts(meta: dict[str, Any]) -> dict[str, str]:
    """The response id and finish reason a response's metadata names (OpenAI's keys)."""
    facts = {"response_id": _str(meta.get("id")), "finish_reason": _str(meta.get("finish_reason"))}
    return {k: v for k, v in facts.items() if v is not None}


def _shows_reply(chunk: Any) -> bool:
    message = getattr(chunk, "message", None)
    return bool(
        getattr(message, "content", None)
        or getattr(message, "tool_call_chunks", None)
        or getattr(message, "additional_kwargs", None)
    )


def _first_message(response: LLMResult) -> BaseMessage | None:
    """The first generation's message (what LangChain's own usage handler reads)."""
    for generations in response.generations:
        for generation in generations:
            if isinstance(generation, ChatGeneration):
                return generation.message
    return None


def _seconds(value: Any, default: float | None) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return default
