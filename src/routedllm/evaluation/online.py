"""Online evaluation: send workload rows through a chat model, grade the answers, cost them.

Each row is sent through a LangChain chat model (a :class:`~routedllm.RoutedChatModel` by
default) with a :class:`~routedllm.CostLatencyHandler` attached, so every attempt becomes
a CallRecord (and a ledger line when ``ledger_path`` is given). The answer is graded with
the grader the row names (:mod:`routedllm.evaluation.graders`); rows without a grader or a
reference are answered and costed but not graded. The report gives measured quality per
answering model and per tag beside cost, the same tokens' cost on a baseline model, and
latency. Rows run on a bounded thread pool; nothing here needs numpy.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from routedllm.adapters.langchain.handler import CostLatencyHandler
from routedllm.core.catalog import Catalog
from routedllm.core.decision import POLICY_KEY, PRESETS, Policy
from routedllm.core.errors import InvalidRequestError
from routedllm.core.tags import TAGS_KEY
from routedllm.evaluation.graders import Grade, LLMJudge, grader_for
from routedllm.evaluation.specs import spec_fields, spec_policy
from routedllm.records.runs import RunCollector, summed_cost
from routedllm.records.schema import DEFAULT_BASELINE, CallRecord
from routedllm.records.sinks import Sink
from routedllm.text import table as _table
from routedllm.text import usd as _usd
from routedllm.workload import WorkloadRow

NO_ANSWER = "(no answer)"
"""The model group of rows that got no answer (every attempt failed, or none eligible)."""


@dataclass(frozen=True)
class RowResult:
    """One row's call: what answered, its records, the answer and its grade."""

    id: str
    tags: tuple[str, ...]
    answer: str | None
    records: tuple[CallRecord, ...]
    latency_s: float
    grade: Grade | None = None
    error: str | None = None
    label: str = ""

    @property
    def ok_record(self) -> CallRecord | None:
        """The attempt that answered, if any."""
        return next((r for r in self.records if r.ok), None)

    @property
    def model(self) -> str | None:
        """The catalog id that answered (None when nothing did)."""
        ok = self.ok_record
        return None if ok is None else ok.model

    @property
    def requested_model(self) -> str | None:
        """The router's first choice (or the model asked for)."""
        first = self.records[0] if self.records else None
        return None if first is None else (first.requested_model or first.model)

    @property
    def attempts(self) -> int:
        return len(self.records)

    @property
    def fell_back(self) -> bool:
        """True when an attempt failed before one answered."""
        return self.ok_record is not None and self.attempts > 1

    @property
    def cost_usd(self) -> float | None:
        """Every attempt's cost summed; None when one is unknown; 0 when nothing was sent."""
        return summed_cost(self.records)

    @property
    def baseline_cost_usd(self) -> float | None:
        """The answering attempt's tokens priced on the baseline model (None: unknown)."""
        ok = self.ok_record
        return None if ok is None else ok.baseline_cost_usd

    @property
    def score(self) -> float | None:
        return None if self.grade is None else self.grade.score

    def to_json(self) -> dict[str, Any]:
        ok = self.ok_record
        return {
            "id": self.id,
            "tags": list(self.tags),
            "requested_model": self.requested_model,
            "model": self.model,
            "attempts": [{"model": r.model, "outcome": r.outcome} for r in self.records],
            "fell_back": self.fell_back,
            "input_tokens": None if ok is None else ok.input_tokens,
            "output_tokens": None if ok is None else ok.output_tokens,
            "cost_usd": self.cost_usd,
            "baseline_cost_usd": self.baseline_cost_usd,
            "latency_s": self.latency_s,
            "score": self.score,
            "grade": None if self.grade is None else self.grade.detail,
            "error": self.error,
            "answer": self.answer,
        }


@dataclass
class Group:
    """Totals for a set of rows: quality over the graded ones, cost, baseline cost, latency.

    Costs sum the rows whose cost is known (``unpriced`` counts the others); the baseline
    cost sums the rows where both sides are known, so ``cost_ratio`` compares like with
    like. Latency is each row's whole call, fallbacks included, for answered rows.
    """

    rows: int = 0
    errors: int = 0
    fallbacks: int = 0
    graded: int = 0
    score_sum: float = 0.0
    ungraded: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    compared_cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, row: RowResult) -> None:
        self.rows += 1
        self.errors += row.model is None
        self.fallbacks += row.fell_back
        if row.score is not None:
            self.graded += 1
            self.score_sum += row.score
        elif row.model is not None:
            self.ungraded += 1
        cost, base = row.cost_usd, row.baseline_cost_usd
        if cost is None:
            self.unpriced += 1
        else:
            self.cost_usd += cost
            if base is not None:
                self.compared_cost_usd += cost
                self.baseline_cost_usd += base
        if row.model is not None:
            self.latencies.append(row.latency_s)

    @property
    def quality(self) -> float | None:
        """Mean score of the graded rows (None when none was graded)."""
        return self.score_sum / self.graded if self.graded else None

    @property
    def cost_ratio(self) -> float | None:
        if not self.baseline_cost_usd:
            return None
        return self.compared_cost_usd / self.baseline_cost_usd

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "errors": self.errors,
            "fallbacks": self.fallbacks,
            "graded": self.graded,
            "ungraded": self.ungraded,
            "quality": self.quality,
            "cost_usd": self.cost_usd,
            "unpriced_rows": self.unpriced,
            "baseline_cost_usd": self.baseline_cost_usd if self.baseline_cost_usd else None,
            "cost_ratio": self.cost_ratio,
            "latency_s": {
                "p50": quantile(self.latencies, 0.5),
                "p95": quantile(self.latencies, 0.95),
            },
        }


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (the smallest value with at least ``q`` of the values at or below)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class OnlineReport:
    """The rows of one online run (one model or policy), grouped per model, per tag, overall."""

    label: str
    baseline_model: str | None
    rows: list[RowResult]
    judge: dict[str, Any] | None = None
    ledger: str | None = None

    def by_model(self) -> dict[str, Group]:
        """Rows grouped by the model that answered (``(no answer)`` for the rest)."""
        return _grouped(self.rows, lambda r: [r.model or NO_ANSWER])

    def by_tag(self) -> dict[str, Group]:
        """Rows grouped by task tag (a row with several tags counts under each)."""
        return _grouped(self.rows, lambda r: list(r.tags) or ["(untagged)"])

    def total(self) -> Group:
        return _grouped(self.rows, lambda r: ["total"]).get("total", Group())

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "baseline_model": self.baseline_model,
            "ledger": self.ledger,
            "total": self.total().summary(),
            "by_model": {k: g.summary() for k, g in sorted(self.by_model().items())},
            "by_tag": {k: g.summary() for k, g in sorted(self.by_tag().items())},
            "judge": self.judge,
            "rows": [r.to_json() for r in self.rows],
        }


def _grouped(rows: Iterable[RowResult], keys: Callable[[RowResult], list[str]]) -> dict[str, Group]:
    groups: dict[str, Group] = {}
    for row in rows:
        for key in keys(row):
            groups.setdefault(key, Group()).add(row)
    return groups


# -- running rows ---------------------------------------------------------------------------
ROW_KEY = "routedllm_row_id"
"""Config-metadata key naming the workload row a call answers (a shadow row's id)."""


def row_config(
    row: WorkloadRow, run_id: uuid.UUID, callbacks: Sequence[Any], label: str = ""
) -> dict[str, Any]:
    """The LangChain config one row is sent with: its run id, task tags and output size.

    Tags go in as ``routedllm_tags`` metadata (validated by RoutedChatModel, read by the
    handler for any model); the row's expected output length goes in as the per-call
    policy's ``default_output_tokens``, so routing sees it without capping the answer.
    """
    metadata: dict[str, Any] = {ROW_KEY: row.id}
    if row.tags:
        metadata[TAGS_KEY] = list(row.tags)
    if row.expected_output_tokens:
        metadata[POLICY_KEY] = {"default_output_tokens": row.expected_output_tokens}
    return {
        "callbacks": list(callbacks),
        "run_id": run_id,
        "metadata": metadata,
        "run_name": f"{label or 'eval'}:{row.id}",
    }


def answer_row(
    model: Any,
    row: WorkloadRow,
    handler: CostLatencyHandler,
    collector: RunCollector,
    *,
    callbacks: Sequence[Any] = (),
    label: str = "",
) -> RowResult:
    """Send one row through ``model`` and return its records and answer (not graded).

    ``handler`` must deliver to ``collector`` (see :func:`recording_handler`). An upstream
    failure (every attempt failed, no eligible model) is kept as the row's ``error``.
    """
    run_id = uuid.uuid4()
    config = row_config(row, run_id, [handler, *callbacks], label)
    started = time.perf_counter()
    answer: str | None = None
    error: str | None = None
    try:
        reply = model.invoke(row.chat_messages(), config=config)
        answer = message_text(reply)
    except Exception as exc:  # noqa: BLE001 - an upstream fault or a routing error: kept
        error = f"{type(exc).__name__}: {exc}"
    latency = time.perf_counter() - started
    records = collector.pop(str(run_id))
    # the tags the call was routed on (given or inferred), else the row's own
    tags = records[-1].tags if records else tuple(row.tags or ())
    return RowResult(row.id, tuple(tags), answer, records, latency, error=error, label=label)


def recording_handler(
    catalog: Catalog,
    collector: RunCollector,
    *,
    ledger_path: str | None = None,
    baseline_model: str | None = DEFAULT_BASELINE,
    sinks: Iterable[Sink] = (),
) -> CostLatencyHandler:
    """A CostLatencyHandler that hands every record to ``collector`` (and the ledger, sinks)."""
    return CostLatencyHandler(
        catalog, ledger_path=ledger_path, baseline_model=baseline_model, sinks=[collector, *sinks]
    )


def message_text(message: Any) -> str:
    """The text of a chat model's reply (string content, or its text blocks joined)."""
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b if isinstance(b, str) else str(b.get("text", ""))
            for b in content
            if isinstance(b, str | dict)
        )
    return str(content)


def check_graders(rows: Sequence[WorkloadRow], judge: Any) -> None:
    """Fail before any call when a row's grader is unknown, or needs a judge and has none."""
    for row in rows:
        if row.grader is not None or row.reference is not None:
            grader_for(row, judge)


def grade_row(
    row: WorkloadRow, result: RowResult, judge: Any = None, timeout_s: float = 10.0
) -> RowResult:
    """``result`` with the grade of its answer (unchanged when the row names no grader).

    A judge call that fails gives an ungraded row (``score=None``), not a failed run.
    """
    if result.answer is None or (row.grader is None and row.reference is None):
        return result
    grader = grader_for(row, judge, timeout_s)
    try:
        grade = grader.grade(row, result.answer)
    except Exception as exc:
        if not isinstance(grader, LLMJudge):
            raise
        grade = Grade(None, f"judge failed: {type(exc).__name__}: {exc}"[:300])
    return replace(result, grade=grade)


def run_online(
    rows: Iterable[WorkloadRow],
    model: Any = None,
    *,
    catalog: Catalog | None = None,
    label: str | None = None,
    judge: Any = None,
    concurrency: int = 4,
    ledger_path: str | None = None,
    baseline_model: str | None = DEFAULT_BASELINE,
    sinks: Iterable[Sink] = (),
    callbacks: Sequence[Any] = (),
    grader_timeout_s: float = 10.0,
    on_row: Callable[[RowResult], None] | None = None,
) -> OnlineReport:
    """Answer, grade and cost every row through ``model``, ``concurrency`` rows at a time.

    ``model`` is any LangChain chat model; default: ``RoutedChatModel(catalog=catalog)``
    (gateway and key from the catalog and ``GLOBAL_API_KEY``). ``judge`` is the chat model
    the ``judge`` grader asks; its calls are costed apart (``report.judge``), not in the
    ledger. Rows keep their input order in the report; ``on_row`` sees each as it finishes.
    """
    rows = list(rows)
    if concurrency < 1:
        raise InvalidRequestError(f"concurrency must be at least 1, got {concurrency}")
    catalog = Catalog.from_env() if catalog is None else catalog
    check_graders(rows, judge)
    if model is None:
        from routedllm.adapters.langchain.chat_model import RoutedChatModel

        model = RoutedChatModel(catalog=catalog)
    label = label or _label(model)
    collector = RunCollector()
    handler = recording_handler(
        catalog, collector, ledger_path=ledger_path, baseline_model=baseline_model, sinks=sinks
    )
    judge_costs = None
    if judge is not None:
        judge_costs = CostLatencyHandler(catalog, baseline_model=None)
        judge = judge.with_config(callbacks=[judge_costs])

    def one(row: WorkloadRow) -> RowResult:
        result = answer_row(model, row, handler, collector, callbacks=callbacks, label=label)
        result = grade_row(row, result, judge, grader_timeout_s)
        if on_row is not None:
            on_row(result)
        return result

    with ThreadPoolExecutor(
        max_workers=min(concurrency, max(1, len(rows))), thread_name_prefix="routedllm-eval"
    ) as pool:
        results = list(pool.map(one, rows))
    judge_summary = None if judge_costs is None else judge_costs.memory.summary()["total"]
    return OnlineReport(
        label,
        baseline_model,
        results,
        judge_summary,
        None if ledger_path is None else str(ledger_path),
    )


def _label(model: Any) -> str:
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    policy = getattr(model, "policy", None)
    if name == "auto" and isinstance(policy, Policy):
        return policy.preset
    return f"always:{name}" if isinstance(name, str) else type(model).__name__


# -- policy specs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OnlinePolicy:
    """What one ``--policy`` spec means online: a routing policy, or one pinned model."""

    name: str
    policy: Policy | None = None
    pinned: str | None = None

    def model_kwargs(self) -> dict[str, Any]:
        """RoutedChatModel arguments for this policy."""
        return {"model": self.pinned} if self.pinned else {"policy": self.policy}


def online_policy(spec: str, catalog: Catalog) -> OnlinePolicy:
    """Parse ``value``, ``quality:gap=4,max_cost=0.01`` or ``always:MODEL``.

    The offline-only specs (``sweep``, ``random``, ``oracle``) are rejected: they name
    several policies, or need every row at once.
    """
    head, _, rest = spec.partition(":")
    head = head.strip()
    if head == "always":
        if not rest:
            raise InvalidRequestError("online, 'always' needs a model: always:MODEL")
        return OnlinePolicy(spec, pinned=catalog.get(rest.strip()).id)
    if head not in PRESETS:
        raise InvalidRequestError(
            f"policy {spec!r} does not route single calls; use {', '.join(PRESETS)} "
            "(with :field=value,...) or always:MODEL"
        )
    return OnlinePolicy(spec, policy=spec_policy(head, spec_fields(rest, spec), spec))


# -- text output ----------------------------------------------------------------------------
def render(reports: Sequence[OnlineReport], source: str) -> str:
    """Tables: the policies side by side, then per model and per tag for each."""

    if not reports:
        return f"{source}: nothing was run"
    baseline = reports[0].baseline_model or "baseline"
    head = (
        "rows",
        "errors",
        "fallbacks",
        "graded",
        "quality",
        "cost",
        f"vs {baseline}",
        "cost ratio",
        "latency p50/p95",
    )

    def cells(g: Group) -> tuple[str, ...]:
        cost = _usd(g.cost_usd) + (f" +{g.unpriced} unknown" if g.unpriced else "")
        lat = g.summary()["latency_s"]
        return (
            str(g.rows),
            str(g.errors or "-"),
            str(g.fallbacks or "-"),
            str(g.graded or "-"),
            "-" if g.quality is None else f"{g.quality:.3f}",
            cost,
            _usd(g.baseline_cost_usd) if g.baseline_cost_usd else "-",
            "-" if g.cost_ratio is None else f"{g.cost_ratio:.1%}",
            "-" if lat["p50"] is None else f"{lat['p50']:.2f}/{lat['p95']:.2f}",
        )

    rows = reports[0].rows
    graded = sum(1 for r in rows if r.grade is not None)
    out = [
        (
            f"{source}: {len(rows)} rows, {graded} graded; quality measured (mean grade); "
            "cost from reported usage and catalog prices"
        ),
        "",
        _table(("policy", *head), [(r.label, *cells(r.total())) for r in reports]),
    ]
    for report in reports:
        for title, groups in (("model", report.by_model()), ("tag", report.by_tag())):
            out += [
                "",
                f"{report.label}, per {title}",
                _table((title, *head), [(k, *cells(g)) for k, g in sorted(groups.items())]),
            ]
        if report.judge is not None:
            judge_cost = report.judge.get("cost_usd")
            out.append(
                f"judge: {report.judge['attempts']} calls, "
                f"{_usd(judge_cost)} (not in the figures above)"
            )
        failed = [r for r in report.rows if r.error]
        out += [f"{report.label}: {r.id}: {(r.error or '')[:200]}" for r in failed[:10]]
    out += [
        "",
        (
            "quality: mean grade in [0, 1] of the graded rows; cost ratio: routed cost "
            "over the same tokens on the baseline; latency in seconds per call, "
            "fallbacks included"
        ),
    ]
    return "\n".join(out)
