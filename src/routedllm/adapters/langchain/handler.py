"""CostLatencyHandler: a LangChain callback handler that turns chat model runs into CallRecords.

It works for any chat model: a RoutedChatModel run (one record per attempt, read from
``response_metadata["routedllm"]``) or a plain ``ChatOpenAI`` priced with the catalog, so a
team can measure what it spends today before switching. Records go to the sinks.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from routedllm.core.catalog import Catalog
from routedllm.core.errors import UnknownModelError
from routedllm.core.tags import TAGS_KEY, VOCABULARY
from routedllm.records.memory import MemorySink
from routedllm.records.schema import (
    DEFAULT_BASELINE,
    NO_TOKENS,
    OK,
    CallRecord,
    Usage,
    build_record,
    error_text,
    gateway_key,
    resolve_model,
)
from routedllm.records.schema import text_or_none as _str
from routedllm.records.sinks import Sink, deliver, sinks_for

SKIPPED = "skipped"  # a fallback passed over without a request (e.g. too small a window)


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
    Time to first chunk is measured from run start to the first streamed chunk, as
    OpenTelemetry and Langfuse define it; it is None for calls that did not stream.

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
        given = metadata.get(TAGS_KEY)
        task_tags = [*(tags or ()), *(given if isinstance(given, list | tuple) else ())]
        run = _Run(
            ts=dt.datetime.now(dt.UTC),
            started=time.perf_counter(),
            parent_run_id=None if parent_run_id is None else str(parent_run_id),
            requested_model=requested if isinstance(requested, str) else None,
            tags=tuple(dict.fromkeys(t for t in task_tags if t in VOCABULARY)),
        )
        with self._lock:
            self._runs[run_id] = run

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
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
        llm_output = response.llm_output or {}
        usage = Usage.from_usage_metadata(
            getattr(message, "usage_metadata", None)
        ) or Usage.from_openai(llm_output.get("token_usage"))
        meta = getattr(message, "response_metadata", None) or {}
        answering = _str(meta.get("model_name")) or _str(llm_output.get("model_name"))
        latency = now - run.started
        ttft = None if run.first_chunk is None else run.first_chunk - run.started
        routed = meta.get("routedllm")
        if not isinstance(routed, Mapping):
            return [
                self._record(
                    run,
                    run_id,
                    answering or run.requested_model,
                    usage=usage,
                    latency_s=latency,
                    ttft_s=ttft,
                    tags=run.tags,
                    requested_model=run.requested_model,
                    answering_model=answering,
                )
            ]
        if routed.get("cache_hit") is True:  # no request: the original's attempts are its own
            return [
                self._record(
                    run,
                    run_id,
                    _str(routed.get("model")) or answering,
                    usage=NO_TOKENS,
                    cache_hit=True,
                    latency_s=latency,
                    ttft_s=ttft,
                    answering_model=_str(routed.get("served_model")) or answering,
                    tags=tuple(routed.get("tags") or run.tags),
                    policy=_str(routed.get("policy")),
                    requested_model=_str(routed.get("requested_model")) or run.requested_model,
                )
            ]

        attempts = [
            a
            for a in routed.get("attempts") or ()
            if isinstance(a, Mapping) and a.get("outcome") != SKIPPED
        ]
        failed = [a for a in attempts if a.get("outcome") != OK]
        ok = next((a for a in attempts if a.get("outcome") == OK), {})
        model = _str(ok.get("model")) or _str(routed.get("model")) or answering
        requested = _str(routed.get("requested_model")) or (
            _str(attempts[0].get("model")) if attempts else None
        )
        context = {
            "tags": tuple(routed.get("tags") or run.tags),
            "policy": _str(routed.get("policy")),
            "requested_model": requested or run.requested_model,
        }
        # Timings are the answering attempt's own, as for the failed ones: the router times
        # the call and its first chunk from the call's start, so take off the time the
        # earlier attempts used (call latency - attempt latency).
        call_latency = _seconds(routed.get("latency_s"), latency)
        attempt_latency = _seconds(ok.get("latency_s"), call_latency)
        call_ttft = _seconds(routed.get("ttft_s"), ttft)
        if call_ttft is not None and call_latency is not None and attempt_latency is not None:
            call_ttft = max(0.0, call_ttft - (call_latency - attempt_latency))
        records = [self._failed(run, run_id, a, i, context) for i, a in enumerate(failed, 1)]
        records.append(
            self._record(
                run,
                run_id,
                model,
                usage=usage,
                attempt=len(failed) + 1,
                answering_model=_str(routed.get("served_model")) or answering,
                latency_s=attempt_latency,
                ttft_s=call_ttft,
                # the router estimates for the model that answered; the estimate stays with it
                estimated_cost_usd=_seconds(routed.get("estimated_cost_usd"), None),
                **context,
            )
        )
        return records

    def _failed(
        self,
        run: _Run,
        run_id: UUID,
        attempt: Mapping[str, Any],
        number: int,
        context: Mapping[str, Any],
        usage: Usage | None = NO_TOKENS,
    ) -> CallRecord:
        """A failed attempt: outcome is its ``error_type`` (else its ``outcome``), no tokens."""
        return self._record(
            run,
            run_id,
            _str(attempt.get("model")),
            usage=usage,
            attempt=number,
            outcome=_str(attempt.get("error_type")) or _str(attempt.get("outcome")) or "error",
            error=error_text(attempt.get("error"), gateway_key(self.catalog)),
            latency_s=_seconds(attempt.get("latency_s"), None),
            **context,
        )

    def _records_for_error(
        self, run: _Run, run_id: UUID, error: BaseException, now: float
    ) -> list[CallRecord]:
        # RoutedChatModel's errors list the attempts (AllAttemptsFailedError,
        # StreamInterruptedError), and any exception leaving its run carries the call's
        # record as ``.routedllm`` (a caller error, a budget refusal).
        routed = getattr(error, "routedllm", None)
        listed = getattr(error, "attempts", None) or (
            routed.get("attempts") if isinstance(routed, Mapping) else None
        )
        attempts = [
            a for a in listed or () if isinstance(a, Mapping) and a.get("outcome") != SKIPPED
        ]
        tags = getattr(error, "tags", None)
        context = {
            "tags": tuple(tags) if isinstance(tags, Sequence) and tags else run.tags,
            "requested_model": run.requested_model,
        }
        if attempts:
            records = [self._failed(run, run_id, a, i, context) for i, a in enumerate(attempts, 1)]
            if run.first_chunk is not None:  # the last attempt's stream had started
                records[-1] = self._failed(
                    run,
                    run_id,
                    attempts[-1],
                    len(attempts),
                    context,
                    Usage.from_usage_metadata(getattr(error, "usage", None)),
                )
            return records
        if isinstance(routed, Mapping):  # routed, but no request was sent: nothing to record
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
                **context,
            )
        ]


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
