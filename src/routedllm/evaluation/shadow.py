"""Shadow middleware: mirror a share of live calls to a baseline model and grade agreement.

:class:`ShadowHandler` is a LangChain callback handler. Attach it beside the
:class:`~routedllm.CostLatencyHandler` of live traffic; for a sampled share of the chat
model runs it sees end, it sends the same messages to a baseline chat model on a
background thread, grades how well the live answer agrees with the baseline's (exact
match by default, or any grader such as an LLM judge), and hands the shadow call's
records to its sinks (the same ledger as the live calls).

A shadow record is an ordinary CallRecord with ``policy="shadow"`` and ``parent_run_id``
set to the live call's run id: CallRecord keeps no extra fields, and these two already
say "sent by the shadow, for that call". Shadow records carry no baseline comparison
(they are the baseline). Spend is capped by ``budget_usd``: a call is mirrored only when
its estimated cost (the live call's tokens on the baseline's prices) fits in what is left.

With ``rows_path`` every graded mirror is also appended there as a training row (the
workload schema): the call's messages and tags, and as ``outcomes`` the live model's
agreement grade and the baseline's 1.0 (its answer is the reference), each with its cost.
``routedllm train --shadow FILE`` learns per-prompt scores from them. The ledger itself
keeps no prompt text; the rows file does, so it is opt-in.
"""

from __future__ import annotations

import json
import os
import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Self
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, LLMResult

from routedllm.adapters.langchain.handler import CostLatencyHandler
from routedllm.core.catalog import Catalog
from routedllm.core.errors import InvalidRequestError, RoutedLLMError
from routedllm.core.pricing import estimate_cost
from routedllm.core.requests import select_tags
from routedllm.core.tags import TAGS_KEY, message_features
from routedllm.evaluation.graders import ExactMatch, Grade, Grader
from routedllm.evaluation.online import ROW_KEY, message_text
from routedllm.records.routed import RoutedCall
from routedllm.records.runs import RunCollector, summed_cost
from routedllm.records.schema import CallRecord, Usage, resolve_model
from routedllm.records.sinks import Sink, deliver
from routedllm.workload import WorkloadRow

SHADOW_POLICY = "shadow"
"""The ``policy`` field of a shadow call's records."""
SHADOW_KEY = "routedllm_shadow"
"""Config-metadata key marking a shadow call, so it is never shadowed in turn."""
SKIP_REASONS = ("not_sampled", "same_model", "budget", "queue_full", "live_error", "closed")
_DEFAULT_OUTPUT_TOKENS = 512


@dataclass(frozen=True)
class ShadowResult:
    """One mirrored call: the live and baseline models, the agreement grade, what it cost."""

    run_id: str
    live_model: str | None
    shadow_model: str | None
    tags: tuple[str, ...]
    grade: Grade | None
    cost_usd: float | None
    error: str | None
    records: tuple[CallRecord, ...]


@dataclass(slots=True)
class _Pending:
    messages: list[BaseMessage]
    tags: tuple[str, ...]
    row_id: str | None = None
    live_cost: float | None = None


class ShadowHandler(BaseCallbackHandler):
    """Mirror ``share`` of live chat model calls to ``baseline`` within ``budget_usd``.

    ``baseline`` is any LangChain chat model (e.g. ``RoutedChatModel(model="gpt-4o")``);
    ``baseline_model`` is its catalog id, used to estimate each mirror's cost before it is
    sent. ``agreement`` grades the live answer with the baseline's answer as the reference
    (default :class:`~routedllm.evaluation.graders.ExactMatch`; pass
    ``LLMJudge(judge_model)`` for a judge, whose own calls are not counted in the budget).
    Records of the mirrored calls go to ``sinks``; ``seed`` fixes the sampling.
    ``rows_path`` appends each graded mirror as a training row (see the module).

    Calls already answered by the baseline model are not mirrored (``same_model``). At
    most ``max_pending`` mirrors wait at once; more are skipped (``queue_full``), so a
    slow baseline never grows memory without bound. Call :meth:`drain` to wait for the
    mirrors in flight and :meth:`close` (or use ``with``) to stop.
    """

    run_inline = True

    def __init__(
        self,
        baseline: Any,
        *,
        baseline_model: str,
        budget_usd: float,
        share: float = 0.1,
        catalog: Catalog | None = None,
        agreement: Grader | None = None,
        sinks: Iterable[Sink] = (),
        seed: int | None = None,
        max_workers: int = 2,
        max_pending: int = 64,
        rows_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= share <= 1:
            raise InvalidRequestError(f"share must be within 0-1, got {share}")
        if budget_usd < 0:
            raise InvalidRequestError(f"budget_usd cannot be negative, got {budget_usd}")
        if max_workers < 1 or max_pending < 1:
            raise InvalidRequestError("max_workers and max_pending must be at least 1")
        self.catalog = Catalog.from_env() if catalog is None else catalog
        self.card = self.catalog.get(baseline_model)
        if not self.card.priced:
            raise InvalidRequestError(
                f"baseline model {baseline_model!r} has no price in the catalog, so its spend "
                "cannot be capped; add its prices in a catalog override file"
            )
        self.baseline = baseline
        self.share = share
        self.budget_usd = budget_usd
        self.agreement: Grader = ExactMatch() if agreement is None else agreement
        self.sinks: tuple[Sink, ...] = tuple(sinks)
        self.max_pending = max_pending
        self.rows_path = None if rows_path is None else os.fspath(rows_path)
        self._rows_lock = threading.Lock()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._runs: dict[UUID, _Pending] = {}
        self._collector = RunCollector()
        self._recorder = CostLatencyHandler(
            self.catalog, baseline_model=None, sinks=[self._collector]
        )
        self._pool = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="routedllm-shadow"
        )
        self._futures: set[Future[None]] = set()
        self._closed = False
        self._seen = 0
        self._skipped: Counter[str] = Counter()
        self._spent = 0.0
        self._reserved = 0.0
        self.results: list[ShadowResult] = []
        """Every finished mirror, in the order they finished."""

    def __repr__(self) -> str:
        return (
            f"ShadowHandler(baseline={self.card.id!r}, share={self.share}, "
            f"budget_usd={self.budget_usd})"
        )

    # -- LangChain callbacks ------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        metadata = metadata or {}
        if metadata.get(SHADOW_KEY) or not messages:
            return
        try:  # the chat model's rule for task tags; a bad one never breaks the live call
            task_tags = select_tags(given=metadata.get(TAGS_KEY), names=tags or ()).tags
        except RoutedLLMError:
            task_tags = select_tags(names=tags or ()).tags
        with self._lock:
            self._seen += 1
            if self._rng.random() >= self.share:
                self._skipped["not_sampled"] += 1
                return
            row_id = metadata.get(ROW_KEY)
            self._runs[run_id] = _Pending(
                list(messages[0]), task_tags, row_id if isinstance(row_id, str) else None
            )

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            pending = self._runs.pop(run_id, None)
        if pending is not None:
            self._mirror(pending, run_id, response)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            if self._runs.pop(run_id, None) is not None:
                self._skipped["live_error"] += 1

    # -- mirroring ------------------------------------------------------------------------
    def _mirror(self, pending: _Pending, run_id: UUID, response: LLMResult) -> None:
        generation = next(
            (g for gs in response.generations for g in gs if isinstance(g, ChatGeneration)), None
        )
        message = None if generation is None else generation.message
        meta = getattr(message, "response_metadata", None) or {}
        routed = RoutedCall.from_metadata(meta.get("routedllm"))
        name = routed.model if routed is not None else meta.get("model_name")
        card = resolve_model(self.catalog, name if isinstance(name, str) else None)
        live_model = card.id if card is not None else (name if isinstance(name, str) else None)
        tags = routed.tags if routed is not None and routed.tags else pending.tags
        usage = Usage.from_usage_metadata(getattr(message, "usage_metadata", None))
        input_tokens = (
            usage.input_tokens
            if usage is not None
            else message_features(pending.messages).input_tokens
        )
        output_tokens = usage.output_tokens if usage is not None else _DEFAULT_OUTPUT_TOKENS
        estimate = estimate_cost(self.card, input_tokens, output_tokens) or 0.0
        if card is not None and usage is not None:  # what the live answer cost, for the rows
            pending.live_cost = estimate_cost(card, usage.input_tokens, usage.output_tokens)
        with self._lock:
            reason = None
            if self._closed:
                reason = "closed"
            elif live_model == self.card.id:
                reason = "same_model"
            elif self._spent + self._reserved + estimate > self.budget_usd:
                reason = "budget"
            elif len(self._futures) >= self.max_pending:
                reason = "queue_full"
            if reason is not None:
                self._skipped[reason] += 1
                return
            self._reserved += estimate
            future = self._pool.submit(
                self._shadow,
                pending,
                str(run_id),
                live_model,
                tags,
                message_text(message) if message is not None else "",
                estimate,
            )
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _shadow(
        self,
        pending: _Pending,
        live_run: str,
        live_model: str | None,
        tags: tuple[str, ...],
        live_answer: str,
        estimate: float,
    ) -> None:
        shadow_run = uuid.uuid4()
        metadata: dict[str, Any] = {SHADOW_KEY: True}
        if tags:
            metadata[TAGS_KEY] = list(tags)
        config = {
            "callbacks": [self._recorder],
            "run_id": shadow_run,
            "metadata": metadata,
            "run_name": "routedllm-shadow",
        }
        answer: str | None = None
        error: str | None = None
        try:
            answer = message_text(self.baseline.invoke(pending.messages, config=config))
        except Exception as exc:  # noqa: BLE001 - a failing baseline must not touch live calls
            error = f"{type(exc).__name__}: {exc}"[:500]
        records = tuple(
            r.model_copy(update={"policy": SHADOW_POLICY, "parent_run_id": live_run})
            for r in self._collector.pop(str(shadow_run))
        )
        deliver(self.sinks, records)
        cost = summed_cost(records) if records else None
        grade = None if answer is None else self._agree(pending, live_run, live_answer, answer)
        ok = next((r for r in records if r.ok), None)
        result = ShadowResult(
            live_run,
            live_model,
            self.card.id if ok is None else ok.model,
            tags,
            grade,
            cost,
            error,
            records,
        )
        with self._lock:
            self._reserved -= estimate
            self._spent += estimate if cost is None else cost  # unknown: charge the estimate
            self.results.append(result)
        if self.rows_path is not None:
            self._write_row(self.rows_path, pending, result)

    def _write_row(self, path: str, pending: _Pending, result: ShadowResult) -> None:
        """Append ``result`` as a training row when it was graded (see the module)."""
        score = None if result.grade is None else result.grade.score
        if score is None or result.live_model is None or result.shadow_model is None:
            return
        row = {
            "id": pending.row_id or result.run_id,
            "messages": convert_to_openai_messages(pending.messages),
            **({"tags": list(result.tags)} if result.tags else {}),
            "outcomes": {
                result.live_model: {"score": float(score), "cost_usd": pending.live_cost},
                result.shadow_model: {"score": 1.0, "cost_usd": result.cost_usd},
            },
            "shadow": {"run_id": result.run_id, "agreement": type(self.agreement).__name__},
        }
        line = json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"
        with self._rows_lock, open(path, "a", encoding="utf-8") as f:
            f.write(line)

    def _agree(self, pending: _Pending, run_id: str, live: str, baseline: str) -> Grade:
        row = WorkloadRow(
            id=run_id, messages=convert_to_openai_messages(pending.messages), reference=baseline
        )
        try:
            return self.agreement.grade(row, live)
        except Exception as exc:  # noqa: BLE001 - a failing judge leaves the pair ungraded
            return Grade(None, f"agreement grader failed: {type(exc).__name__}: {exc}"[:300])

    # -- control and figures --------------------------------------------------------------
    def drain(self, timeout: float | None = None) -> bool:
        """Wait for the mirrors in flight; True when none is left."""
        with self._lock:
            futures = set(self._futures)
        _, left = wait(futures, timeout=timeout)
        return not left

    def close(self, timeout: float | None = None) -> None:
        """Stop mirroring new calls, wait for those in flight, and free the threads."""
        with self._lock:
            self._closed = True
        self.drain(timeout)
        self._pool.shutdown(wait=timeout is None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def spent_usd(self) -> float:
        """What the finished mirrors cost (an unknown cost counts as its estimate)."""
        with self._lock:
            return self._spent

    def summary(self) -> dict[str, Any]:
        """Calls seen, mirrored and skipped (by reason), agreement, spend against the budget."""
        with self._lock:
            results = list(self.results)
            figures = {
                "seen": self._seen,
                "skipped": dict(self._skipped),
                "in_flight": len(self._futures),
                "spent_usd": self._spent,
                "reserved_usd": self._reserved,
            }
        graded = [
            r.grade.score for r in results if r.grade is not None and r.grade.score is not None
        ]
        return {
            **figures,
            "shadowed": len(results),
            "errors": sum(r.error is not None for r in results),
            "graded": len(graded),
            "agreement": sum(graded) / len(graded) if graded else None,
            "agreed": sum(s >= 1.0 for s in graded),
            "budget_usd": self.budget_usd,
            "baseline_model": self.card.id,
            "share": self.share,
        }
