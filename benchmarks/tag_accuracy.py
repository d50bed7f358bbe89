"""Tag-inference accuracy: precision and recall per tag on a labelled set of prompts.

Infers tags for each row of ``tests/data/tags_labelled.jsonl`` the way ``Router.decide``
does (``message_features`` then ``infer_tags`` with the default policy's thresholds) and
prints, for all rows, then the rows tuned on and the held-out rows separately: precision,
recall and F1 per tag, macro F1, the share of rows whose tag set is exactly right, and a
confusion table of the primary tag (the one whose benchmark scores the candidates).

Run: ``python benchmarks/tag_accuracy.py [--misses tune|heldout|all] [FILE]``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routedllm import Policy
from routedllm.core.tags import TAG_NAMES, infer_tags, message_features, primary_tag

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "tags_labelled.jsonl"


@dataclass(frozen=True)
class Row:
    messages: list[dict[str, Any]]
    expected: frozenset[str]
    predicted: frozenset[str]
    split: str
    note: str


@dataclass(frozen=True)
class Scores:
    """Figures for one set of rows."""

    rows: int
    per_tag: dict[str, tuple[float, float, float, int]]  # tag -> (precision, recall, F1, support)
    macro_f1: float
    exact: float
    confusion: Counter[tuple[str, str]]  # (expected primary, predicted primary) -> rows


def load(path: Path = DATA, policy: Policy | None = None) -> list[Row]:
    """The labelled rows with the tags inferred for each."""
    policy = Policy() if policy is None else policy
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        inferred = infer_tags(
            message_features(raw["messages"]),
            cjk_share=policy.cjk_share,
            long_context_tokens=policy.long_context_tokens,
        )
        rows.append(
            Row(
                raw["messages"],
                frozenset(raw["expected"]),
                frozenset(inferred),
                raw["split"],
                raw.get("note", ""),
            )
        )
    return rows


def score(rows: Sequence[Row]) -> Scores:
    """Per-tag precision/recall/F1 (tags some row expects), macro F1, exact-set share."""
    per_tag: dict[str, tuple[float, float, float, int]] = {}
    for tag in TAG_NAMES:
        support = sum(tag in r.expected for r in rows)
        if not support:
            continue
        tp = sum(tag in r.expected and tag in r.predicted for r in rows)
        fp = sum(tag not in r.expected and tag in r.predicted for r in rows)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / support
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_tag[tag] = (precision, recall, f1, support)
    macro = sum(f for _, _, f, _ in per_tag.values()) / len(per_tag) if per_tag else 0.0
    exact = sum(r.expected == r.predicted for r in rows) / len(rows) if rows else 0.0
    confusion = Counter(
        (primary_tag(sorted(r.expected)), primary_tag(sorted(r.predicted))) for r in rows
    )
    return Scores(len(rows), per_tag, macro, exact, confusion)


def report(title: str, scores: Scores) -> str:
    lines = [f"{title}: {scores.rows} rows", f"{'tag':<16}{'P':>7}{'R':>7}{'F1':>7}{'n':>6}"]
    for tag, (p, r, f, n) in scores.per_tag.items():
        lines.append(f"{tag:<16}{p:>7.2f}{r:>7.2f}{f:>7.2f}{n:>6}")
    lines.append(f"macro F1 {scores.macro_f1:.3f}; exact tag set {scores.exact:.1%}")
    tags = [t for t in TAG_NAMES if any(t in pair for pair in scores.confusion)]
    short = {t: t[:6] for t in tags}
    lines.append("primary tag: expected (rows) x inferred (columns)")
    lines.append(" " * 16 + "".join(f"{short[t]:>8}" for t in tags))
    for exp in tags:
        cells = "".join(f"{scores.confusion.get((exp, got), 0) or '.':>8}" for got in tags)
        lines.append(f"{exp:<16}{cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DATA)
    parser.add_argument(
        "--misses", choices=("tune", "heldout", "all"), help="also list the rows inferred wrong"
    )
    args = parser.parse_args()
    rows = load(args.file)
    print(report("all rows", score(rows)), end="\n\n")
    for split in ("tune", "heldout"):
        print(report(f"{split} rows", score([r for r in rows if r.split == split])), end="\n\n")
    if args.misses:
        for r in rows:
            if r.expected != r.predicted and args.misses in ("all", r.split):
                last = next((m for m in reversed(r.messages) if m.get("role") == "user"), {})
                text = str(last.get("content"))[:90].replace("\n", " | ")
                print(f"expected {sorted(r.expected)} got {sorted(r.predicted)}: {text}")


if __name__ == "__main__":
    main()
