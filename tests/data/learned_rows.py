"""Writes learned_rows.jsonl: synthetic outcome rows for the learned-router tests.

Not real outcomes: 240 prompts from four templates, with made-up scores for two fixture
catalog models. Calculus and proofs are where the dearer model (gpt-4o) is right and the
cheaper one (deepseek-v4-flash) often is not; trivia and rewording both get right. So the
words of a prompt say which model it needs, and no row carries a label saying so.
Run: python tests/data/learned_rows.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WEAK, STRONG = "deepseek-v4-flash", "gpt-4o"
COUNTRIES = ["France", "Peru", "Kenya", "Japan", "Chile", "Norway", "Egypt", "Canada"]
NOUNS = ["meeting", "invoice", "report", "delivery", "schedule", "budget"]
TEMPLATES = {
    # template, P(strong right), P(weak right)
    "calculus": ("Compute the integral of x^{a} sin(x) from 0 to {b} and simplify.", 0.9, 0.2),
    "proof": ("Prove that the sum of the first {a} odd numbers is a perfect square.", 0.85, 0.3),
    "trivia": ("What is the capital of {country}?", 0.97, 0.95),
    "rewrite": ("Rewrite this politely: send me the {noun} by {b} today.", 0.95, 0.95),
}


def rows(n: int = 240, seed: int = 14) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out = []
    kinds = list(TEMPLATES)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        template, p_strong, p_weak = TEMPLATES[kind]
        prompt = template.format(
            a=rng.randint(2, 9),
            b=rng.randint(3, 12),
            country=rng.choice(COUNTRIES),
            noun=rng.choice(NOUNS),
        )
        out.append(
            {
                "id": f"syn-{i}",
                "prompt": prompt,
                "outcomes": {
                    WEAK: {"score": float(rng.random() < p_weak), "cost_usd": 0.0001},
                    STRONG: {"score": float(rng.random() < p_strong), "cost_usd": 0.002},
                },
            }
        )
    return out


if __name__ == "__main__":
    path = Path(__file__).with_suffix(".jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()), encoding="utf-8")
