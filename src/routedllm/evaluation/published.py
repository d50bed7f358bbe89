"""Published per-prompt outcome tables, converted into workload rows with outcomes.

RouteLLM (lm-sys/RouteLLM, Apache-2.0) publishes how gpt-4-1106-preview and
Mixtral-8x7B-Instruct-v0.1 did on every prompt of MMLU, GSM8K and MT-Bench, the data its
paper evaluates routers on. :func:`routellm_rows` reads a copy of its ``routellm/evals``
folder and yields one row per prompt, with the same decontamination RouteLLM applies
(``routellm/evals/benchmarks.py`` drops every prompt equal to an ``eval_prompt`` of the
benchmark's ``contaminated_prompts.jsonl``).

Row fields: ``prompt``; ``tags`` (routedllm tags: MMLU and GSM8K are ``general``; MT-Bench
``coding`` is ``code``, ``extraction`` is ``extraction``, the rest ``general``);
``category`` (the MMLU subject, the MT-Bench category, or ``gsm8k``), which calibration
groups by; ``outcomes`` keyed by the table's model ids, exactly as published. Scores:
MMLU and GSM8K correctness as 1/0; MT-Bench the GPT-4 judge's 1-10 score averaged over the
question's two turns and divided by 10 (ratios such as "95% of the strong model" keep
their meaning). ``cost_usd`` is null: the tables give none.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routedllm.core.errors import InvalidRequestError

BENCHMARKS: tuple[str, ...] = ("mmlu", "gsm8k", "mt-bench")
_MT_BENCH_TAGS = {"coding": "code", "extraction": "extraction"}
_TRUTH = {"True": 1.0, "False": 0.0, "true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}


def evals_dir(root: str | Path) -> Path:
    """The ``evals`` folder under ``root`` (a RouteLLM checkout, its copy, or the folder)."""
    root = Path(root)
    for candidate in (root, root / "evals", root / "routellm" / "evals"):
        if (
            (candidate / "mmlu").is_dir()
            or (candidate / "gsm8k").is_dir()
            or (candidate / "mt_bench").is_dir()
        ):
            return candidate
    raise InvalidRequestError(
        f"{root}: no RouteLLM evals folder found (looked for mmlu/, gsm8k/ or mt_bench/ in "
        f"{root}, {root}/evals and {root}/routellm/evals)"
    )


def routellm_rows(
    root: str | Path, benchmark: str, *, drop_contaminated: bool = True
) -> list[dict[str, Any]]:
    """Rows (plain dicts in the workload schema) of one RouteLLM benchmark table."""
    if benchmark not in BENCHMARKS:
        raise InvalidRequestError(
            f"unknown benchmark {benchmark!r}; RouteLLM tables: {', '.join(BENCHMARKS)}"
        )
    base = evals_dir(root)
    if benchmark == "mt-bench":
        return list(_mt_bench(base / "mt_bench", drop_contaminated))
    folder = base / benchmark
    contaminated = _contaminated(folder) if drop_contaminated else set()
    if benchmark == "gsm8k":
        return list(_csv_rows(folder / "gsm8k_responses.csv", "gsm8k", contaminated))
    files = sorted((folder / "responses").glob("mmlu_*.csv"))
    if not files:
        raise InvalidRequestError(f"{folder}/responses: no mmlu_<subject>.csv files")
    rows: list[dict[str, Any]] = []
    for path in files:
        rows.extend(_csv_rows(path, path.stem.removeprefix("mmlu_"), contaminated))
    return rows


def _contaminated(folder: Path) -> set[str]:
    path = folder / "contaminated_prompts.jsonl"
    if not path.exists():
        raise InvalidRequestError(
            f"{path} is missing; pass drop_contaminated=False (--keep-contaminated) to "
            "convert without RouteLLM's decontamination"
        )
    return {json.loads(line)["eval_prompt"] for line in _lines(path)}


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        yield from (line for line in handle if line.strip())


def _csv_rows(path: Path, category: str, contaminated: set[str]) -> Iterator[dict[str, Any]]:
    """MMLU and GSM8K: a ``prompt`` column and one True/False column per model."""
    csv.field_size_limit(sys.maxsize)
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise InvalidRequestError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if "prompt" not in fields:
            raise InvalidRequestError(f"{path}: no 'prompt' column (columns: {fields})")
        models = [f for f in fields if f != "prompt" and not f.endswith("_response")]
        prefix = "gsm8k" if category == "gsm8k" else f"mmlu-{category}"
        for i, rec in enumerate(reader):
            if rec["prompt"] in contaminated:
                continue
            outcomes = {}
            for model in models:
                value = (rec.get(model) or "").strip()
                if value not in _TRUTH:
                    raise InvalidRequestError(
                        f"{path}: row {i + 1}: {model} is {value!r}, expected True or False"
                    )
                outcomes[model] = {"score": _TRUTH[value], "cost_usd": None}
            yield {
                "id": f"{prefix}-{i}",
                "prompt": rec["prompt"],
                "tags": ["general"],
                "category": category,
                "outcomes": outcomes,
            }


def _mt_bench(folder: Path, drop_contaminated: bool) -> Iterator[dict[str, Any]]:
    """MT-Bench: one row per question, routed on its first turn as RouteLLM does."""
    questions = [json.loads(line) for line in _lines(folder / "question.jsonl")]
    contaminated = _contaminated(folder) if drop_contaminated else set()
    turn_scores: dict[tuple[int, str], list[float]] = {}
    for line in _lines(folder / "judgements.jsonl"):
        rec = json.loads(line)
        if rec["score"] < 0:  # FastChat marks a failed judgement with -1
            continue
        turn_scores.setdefault((rec["question_id"], rec["model"]), []).append(rec["score"])
    models = sorted({model for _, model in turn_scores})
    for q in questions:
        if contaminated & set(q["turns"]):
            continue
        outcomes = {}
        for model in models:
            scores = turn_scores.get((q["question_id"], model))
            if scores:
                outcomes[model] = {"score": sum(scores) / len(scores) / 10, "cost_usd": None}
        yield {
            "id": f"mt-bench-{q['question_id']}",
            "prompt": q["turns"][0],
            "turns": q["turns"],
            "tags": [_MT_BENCH_TAGS.get(q["category"], "general")],
            "category": q["category"],
            "outcomes": outcomes,
        }
