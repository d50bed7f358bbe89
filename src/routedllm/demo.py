"""The demo: routed calls for the sample workload, against a local stand-in of the gateway.

``routedllm demo`` starts :class:`routedllm.testing.Upstream` on a loopback port and
sends every workload row through :class:`~routedllm.RoutedChatModel`, with a
:class:`~routedllm.CostLatencyHandler` writing a JSONL ledger. The stand-in answers every
catalog model with a constructed answer written for that sample prompt
(``data/demo_responses.jsonl``: the answer and its token counts, counted with the
``o200k_base`` tokenizer; 765 tokens per image, GPT-4o's figure for a 1024x768 image), in
the OpenAI wire format. One upstream server error (a 503) is injected on the first choice
of one row,
so the run shows a fallback. Costs are those reported tokens at the catalog's prices; no
API key or network is needed, and no answer comes from a real model.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from routedllm.core.catalog import Catalog
from routedllm.core.decision import Policy, Request, decide
from routedllm.core.errors import NoEligibleModelError, RoutedLLMError
from routedllm.evaluation.online import RowResult, answer_row, recording_handler
from routedllm.records.ledger import read_ledger
from routedllm.records.runs import RunCollector
from routedllm.records.schema import DEFAULT_BASELINE
from routedllm.text import table as _table
from routedllm.text import usd as _usd
from routedllm.workload import WorkloadRow

DEMO_API_KEY = "demo-not-a-secret"
"""The key the demo sends to its stand-in gateway (the stand-in requires exactly this)."""
FAULT = "503"


class StandInUnavailable(RoutedLLMError):
    """The local stand-in gateway could not start (e.g. loopback sockets are not allowed)."""


@dataclass(frozen=True)
class CannedAnswer:
    """A constructed answer to one sample prompt, with the usage the stand-in reports."""

    answer: str
    prompt_tokens: int
    completion_tokens: int


def demo_answers() -> dict[str, CannedAnswer]:
    """The constructed answers shipped for the sample workload, by row id."""
    text = resources.files("routedllm.data").joinpath("demo_responses.jsonl").read_text("utf-8")
    out = {}
    for line in filter(str.strip, text.splitlines()):
        item = json.loads(line)
        usage = item["usage"]
        out[item["id"]] = CannedAnswer(
            item["answer"], int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        )
    return out


@dataclass
class DemoRun:
    """What the demo did: one result per row, the ledger it wrote, and how it was served."""

    rows: list[tuple[WorkloadRow, RowResult]]
    policy: str
    baseline_model: str
    base_url: str
    ledger: Path
    ledger_lines: int
    fault: tuple[str, str] | None
    generated: list[str]
    prices_as_of: str | None

    @property
    def results(self) -> list[RowResult]:
        return [result for _, result in self.rows]

    def totals(self) -> dict[str, Any]:
        """Cost of every attempt against the same tokens on the baseline, per the records."""
        results = self.results
        costs = [r.cost_usd for r in results]
        bases = [r.baseline_cost_usd for r in results]
        routed = sum(c for c in costs if c is not None)
        base = sum(b for c, b in zip(costs, bases, strict=True) if c is not None and b is not None)
        return {
            "calls": len(results),
            "attempts": sum(r.attempts for r in results),
            "fallbacks": sum(r.fell_back for r in results),
            "failed": sum(r.model is None for r in results),
            "unpriced": sum(c is None for c in costs),
            "routed_cost_usd": round(routed, 12),
            "baseline_cost_usd": round(base, 12),
            "cost_ratio": routed / base if base else None,
        }


def run_demo(
    catalog: Catalog,
    policy: Policy,
    rows: Sequence[WorkloadRow],
    *,
    baseline_model: str = DEFAULT_BASELINE,
    ledger_path: str | Path | None = None,
    answers: Mapping[str, CannedAnswer] | None = None,
    fault_row: str | None = None,
) -> DemoRun:
    """Route every row through RoutedChatModel against the stand-in; record every attempt.

    The 503 goes to the first choice of ``fault_row`` (default: the last row, so the
    rate-limited model's cool-down touches no later row). Rows without a constructed
    answer get the stand-in's generated reply and estimated usage (listed in ``generated``).
    Raises :class:`StandInUnavailable` when the stand-in cannot open a loopback port.
    """
    from routedllm.adapters.langchain.chat_model import RoutedChatModel
    from routedllm.testing import ModelSpec, Upstream

    rows = list(rows)
    answers = demo_answers() if answers is None else answers
    catalog.get(baseline_model)
    fault_row = rows[-1].id if fault_row is None and rows else fault_row
    upstream = Upstream({}, default=None, api_key=DEMO_API_KEY)
    try:
        upstream.start()
    except RuntimeError as exc:
        raise StandInUnavailable(f"cannot start the local stand-in gateway: {exc}") from None
    fault: tuple[str, str] | None = None
    results: list[tuple[WorkloadRow, RowResult]] = []
    try:
        ledger = (
            Path(ledger_path)
            if ledger_path
            else Path(tempfile.mkdtemp(prefix="routedllm-demo-")) / "calls.jsonl"
        )
        lines_before = len(read_ledger(ledger)) if ledger.exists() else 0
        llm = RoutedChatModel(
            api_key=SecretStr(DEMO_API_KEY),
            base_url=upstream.base_url,
            catalog=catalog,
            policy=policy,
            max_retries=0,
            timeout=10,
        )
        collector = RunCollector()
        handler = recording_handler(
            catalog, collector, ledger_path=str(ledger), baseline_model=baseline_model
        )
        for row in rows:
            canned = answers.get(row.id)
            spec = (
                ModelSpec()
                if canned is None
                else ModelSpec(
                    reply=canned.answer,
                    prompt_tokens=canned.prompt_tokens,
                    completion_tokens=canned.completion_tokens,
                )
            )
            specs = {card.id: spec for card in catalog}
            if row.id == fault_row:
                first = _first_choice(catalog, policy, row)
                if first is not None:
                    specs[first] = dataclasses.replace(spec, faults={FAULT: 1.0})
                    fault = (row.id, first)
            upstream.models = specs  # the stand-in reads its specs per request
            results.append((row, answer_row(llm, row, handler, collector, label=policy.preset)))
    finally:
        upstream.stop()
    return DemoRun(
        rows=results,
        policy=policy.preset,
        baseline_model=catalog.get(baseline_model).id,
        base_url=upstream.base_url,
        ledger=ledger,
        ledger_lines=len(read_ledger(ledger)) - lines_before if ledger.exists() else 0,
        fault=fault,
        generated=[row.id for row in rows if row.id not in answers],
        prices_as_of=catalog.info.as_of,
    )


def _first_choice(catalog: Catalog, policy: Policy, row: WorkloadRow) -> str | None:
    """The model the router will try first for ``row`` (what RoutedChatModel decides too)."""
    if row.expected_output_tokens:
        policy = policy.model_copy(update={"default_output_tokens": row.expected_output_tokens})
    try:
        return decide(catalog, policy, Request(messages=row.chat_messages(), tags=row.tags)).model
    except NoEligibleModelError:
        return None


# -- output ---------------------------------------------------------------------------------
def to_json(run: DemoRun) -> dict[str, Any]:
    """The run as stable JSON: rows (``model`` is the model that answered), totals, report."""
    from routedllm.records.report import summarize

    return {
        "mode": "routed",
        "policy": run.policy,
        "baseline_model": run.baseline_model,
        "base_url": run.base_url,
        "ledger": str(run.ledger),
        "ledger_lines": run.ledger_lines,
        "fault": None
        if run.fault is None
        else {"row": run.fault[0], "model": run.fault[1], "status": int(FAULT)},
        "constructed_answers": True,
        "generated_replies": run.generated,
        "rows": [
            {**result.to_json(), "inferred_tags": row.tags is None} for row, result in run.rows
        ],
        "totals": run.totals(),
        "report": summarize([r for result in run.results for r in result.records]),
    }


def render(run: DemoRun) -> str:
    """The run as text: a row per call, totals, the ledger's report, and what was constructed."""
    from routedllm.records.report import render as render_report
    from routedllm.records.report import summarize

    header = (
        "row",
        "tags",
        "chosen",
        "answered by",
        "tokens in/out",
        "cost",
        run.baseline_model,
        "latency",
    )
    table = []
    for row, r in run.rows:
        ok = r.ok_record
        answered = r.model or "failed"
        failed = [a for a in r.records if not a.ok]
        if failed and ok is not None:
            answered += f" ({', '.join(f'{a.model}: {a.outcome}' for a in failed)})"
        table.append(
            (
                row.id,
                ",".join(r.tags) + ("*" if row.tags is None else ""),
                r.requested_model or "-",
                answered,
                "-" if ok is None else f"{ok.input_tokens}/{ok.output_tokens}",
                _usd(r.cost_usd),
                _usd(r.baseline_cost_usd),
                f"{r.latency_s * 1000:.0f} ms",
            )
        )
    t = run.totals()
    ratio = "" if t["cost_ratio"] is None else f" ({t['cost_ratio']:.1%} of the baseline cost)"
    failures = f", {t['failed']} failed" if t["failed"] else ""
    out = [
        (
            f"{t['calls']} sample prompts routed by RoutedChatModel (policy {run.policy}) to a "
            f"local stand-in of the gateway at {run.base_url}"
        ),
        "",
        _table(header, table),
        "",
        (
            f"{t['calls']} calls, {t['attempts']} attempts ({t['fallbacks']} fell back{failures}): "
            f"routed {_usd(t['routed_cost_usd'])} vs always-{run.baseline_model} "
            f"{_usd(t['baseline_cost_usd'])} for the same tokens{ratio}"
        ),
        (
            f"ledger: {run.ledger} ({run.ledger_lines} lines, one per attempt); "
            f"`routedllm report {run.ledger}` prints the report below"
        ),
        "",
    ]
    records = [rec for result in run.results for rec in result.records]
    out += [render_report({**summarize(records), "ledger": str(run.ledger)}), ""]
    notes = ["* tags inferred from the messages."]
    notes.append(
        "Constructed, not real: every answer and its token counts were written for these "
        "prompts (tokens counted with the o200k_base tokenizer) and served in the OpenAI "
        "format by routedllm.testing.Upstream on a loopback port; no model was called."
    )
    if run.generated:
        notes.append(
            f"{len(run.generated)} rows had no constructed answer: the stand-in "
            "generated a placeholder reply and estimated its usage."
        )
    if run.fault is not None:
        notes.append(
            f"A server error ({FAULT}) was injected on {run.fault[1]}, the first choice "
            f"for {run.fault[0]}, to show a fallback."
        )
    notes.append(
        f"Costs: those tokens at the catalog's prices (as of {run.prices_as_of}); "
        "latency: loopback time, not a provider's. Estimates only: "
        "routedllm demo --estimate."
    )
    return "\n".join(out + notes)
