"""Routing-decision speed: decisions per second and p50/p99 latency in microseconds.

Two cases on one ~2,000-token prompt, measured side by side in one run: tags given by the
caller, and tags inferred from the messages. Run: ``python benchmarks/decide_speed.py``.
"""

from __future__ import annotations

import gc
import statistics
import time

from routedllm import Catalog, Policy, Request, decide

PARAGRAPH = (
    "Our billing service must support refunds and retroactive price corrections. The team "
    "is weighing event sourcing against CRUD with an audit table; latency budgets are tight "
    "and the on-call rotation is small, so operational simplicity matters as much as "
    "expressiveness. Summarise the trade-offs and recommend one approach with reasons. "
)


def prompt_of(tokens: int) -> list[dict[str, str]]:
    text = PARAGRAPH * (tokens * 4 // len(PARAGRAPH) + 1)
    return [{"role": "user", "content": text[: tokens * 4]}]


def measure(
    catalog: Catalog, policy: Policy, request: Request, n: int
) -> tuple[float, float, float]:
    for _ in range(1000):
        decide(catalog, policy, request)
    samples = []
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter_ns()
            decide(catalog, policy, request)
            samples.append(time.perf_counter_ns() - t0)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    samples.sort()
    p50 = samples[n // 2] / 1000
    p99 = samples[int(n * 0.99)] / 1000
    return n / elapsed, p50, p99


def main() -> None:
    catalog, policy = Catalog.default(), Policy()
    messages = prompt_of(2000)
    cases = {
        "tags given (general)": Request(messages=messages, tags=["general"]),
        "tags inferred": Request(messages=messages),
    }
    tokens = decide(catalog, policy, cases["tags inferred"]).estimated_input_tokens
    print(f"prompt: ~{tokens} tokens; catalog: {len(catalog)} models; policy: {policy.preset}")
    print(f"{'case':<24}{'decisions/s':>14}{'p50 us':>10}{'p99 us':>10}")
    for name, request in cases.items():
        runs = [measure(catalog, policy, request, 20_000) for _ in range(3)]
        rate = statistics.median(r[0] for r in runs)
        p50 = statistics.median(r[1] for r in runs)
        p99 = statistics.median(r[2] for r in runs)
        print(f"{name:<24}{rate:>14,.0f}{p50:>10.1f}{p99:>10.1f}")


if __name__ == "__main__":
    main()
