"""Routing-decision speed: p50/p99 latency in microseconds of ``Router.decide``.

Each sample times building the :class:`Request` and deciding it, as an adapter does per
call. Cases: tags given (English prose), and tags inferred on ~2,000-token prompts of
English prose, code, Chinese, Japanese, and a message with an image; then the one-shot
``decide()`` function, which works out the routing plan afresh on every call. Each case
runs ``--runs`` times, interleaved; the table gives the mean over runs and half the
spread (max - min) of each percentile, and the lowest p99 of any run (the figure least
disturbed by other work on the machine).

Each run also times, side by side, ``json.dumps`` of the same messages (what the OpenAI
SDK does to every request body): the ``x dumps`` column is the p50 of a case over the p50
of that reference, a figure the machine's speed cancels out of (``make bench-quick``
checks it against ``benchmarks/baselines.json``).

Run: ``python benchmarks/decide_speed.py [--runs 5] [--n 20000] [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from routedllm import Catalog, Policy, Request, decide
from routedllm.core.decision import Router

PROSE = (
    "Our billing service must support refunds and retroactive price corrections. The team "
    "is weighing event sourcing against CRUD with an audit table; latency budgets are tight "
    "and the on-call rotation is small, so operational simplicity matters as much as "
    "expressiveness. Summarise the trade-offs and recommend one approach with reasons. "
)
CODE = '''def load_ledger(path: str) -> list[dict[str, object]]:
    """Read a JSONL ledger, skipping blank lines."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
    return rows


class Budget:
    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.spent = 0.0

'''
CHINESE = (
    "我们的计费服务需要支持退款和追溯性的价格更正。团队正在权衡事件溯源与带审计表的增删改查方案；"
    "延迟预算很紧，值班人员也很少，所以运维的简单性与表达能力同样重要。请总结其中的权衡并给出建议。"
)
JAPANESE = (
    "私たちの課金サービスは返金と遡及的な価格修正に対応する必要があります。チームはイベント"
    "ソーシングと監査テーブル付きのCRUDを比較しています。レイテンシの予算は厳しく、当番の人数も"
    "少ないため、運用の単純さは表現力と同じくらい重要です。トレードオフをまとめてください。"
)


def text_of(unit: str, tokens: int, chars_per_token: float) -> str:
    """``unit`` repeated to about ``tokens`` tokens at ``chars_per_token``."""
    chars = int(tokens * chars_per_token)
    return (unit * (chars // len(unit) + 1))[:chars]


def cases() -> dict[str, tuple[list[dict[str, Any]], list[str] | None]]:
    """Case name -> (messages, tags); the messages of each are ~2,000 tokens."""
    image = [
        {"type": "text", "text": text_of(PROSE, 1235, 4)},  # + 765 tokens for the image
        {"type": "image_url", "image_url": {"url": "https://example.com/chart.png"}},
    ]
    return {
        "tags given (prose)": ([{"role": "user", "content": text_of(PROSE, 2000, 4)}], ["general"]),
        "inferred: prose": ([{"role": "user", "content": text_of(PROSE, 2000, 4)}], None),
        "inferred: code": ([{"role": "user", "content": text_of(CODE, 2000, 4)}], None),
        "inferred: chinese": ([{"role": "user", "content": text_of(CHINESE, 2000, 1)}], None),
        # kana count one token each, kanji one: ~1 character per token
        "inferred: japanese": ([{"role": "user", "content": text_of(JAPANESE, 2000, 1.02)}], None),
        "inferred: image": ([{"role": "user", "content": image}], None),
    }


def sample(call: Callable[[], object], n: int) -> tuple[float, float]:
    """p50 and p99 of ``n`` timed calls, in microseconds (after a warm-up)."""
    for _ in range(min(n, 1000)):
        call()
    samples = [0] * n
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(n):
            t0 = clock()
            call()
            samples[i] = clock() - t0
    finally:
        gc.enable()
    samples.sort()
    return samples[n // 2] / 1000, samples[int(n * 0.99)] / 1000


def routed(
    router: Router, messages: list[dict[str, Any]], tags: list[str] | None
) -> Callable[[], object]:
    """One call as an adapter makes it: build the Request, then decide it."""
    return lambda: router.decide(Request(messages=messages, tags=tags))


def reference(messages: list[dict[str, Any]]) -> Callable[[], object]:
    """The side-by-side reference: serialising the messages as the SDK does."""
    return lambda: json.dumps(messages)


def summary(values: Sequence[float]) -> str:
    return f"{statistics.fmean(values):7.1f} ±{(max(values) - min(values)) / 2:5.1f}"


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per case (default 5)")
    parser.add_argument("--n", type=int, default=20_000, help="samples per run (default 20000)")
    parser.add_argument("--quick", action="store_true", help="3 runs of 3,000 samples")
    parser.add_argument("--json", action="store_true", help="print the ratios as JSON too")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.n = 3, 3_000

    catalog, policy = Catalog.default(), Policy()
    router = Router(catalog, policy)
    calls: dict[str, Callable[[], object]] = {}
    refs: dict[str, Callable[[], object]] = {}
    tokens: dict[str, int] = {}
    for name, (messages, tags) in cases().items():
        calls[name] = routed(router, messages, tags)
        refs[name] = reference(messages)
        tokens[name] = router.decide(Request(messages=messages, tags=tags)).estimated_input_tokens
    given, inferred = cases()["tags given (prose)"], cases()["inferred: prose"]
    calls["one-shot decide(): given"] = lambda: decide(
        catalog, policy, Request(messages=given[0], tags=given[1])
    )
    calls["one-shot decide(): prose"] = lambda: decide(
        catalog, policy, Request(messages=inferred[0])
    )
    tokens["one-shot decide(): given"] = tokens["tags given (prose)"]
    tokens["one-shot decide(): prose"] = tokens["inferred: prose"]
    refs["one-shot decide(): given"] = refs["tags given (prose)"]
    refs["one-shot decide(): prose"] = refs["inferred: prose"]

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    ratios: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.runs):
        for name, call in calls.items():
            results[name].append(sample(call, args.n))
            ratios[name].append(results[name][-1][0] / sample(refs[name], args.n)[0])

    print(
        f"Router.decide incl. building the Request; catalog: {len(catalog)} models; "
        f"policy: {policy.preset}; {args.runs} runs x {args.n:,} calls; mean ± half-range"
    )
    print(f"{'case':<28}{'tokens':>7}{'p50 us':>16}{'p99 us':>16}{'best p99':>10}{'x dumps':>15}")
    for name, runs in results.items():
        p50 = summary([r[0] for r in runs])
        p99 = summary([r[1] for r in runs])
        best = min(r[1] for r in runs)
        r = ratios[name]
        ratio = f"{statistics.fmean(r):.2f} ±{(max(r) - min(r)) / 2:.2f}"
        print(f"{name:<28}{tokens[name]:>7}{p50:>16}{p99:>16}{best:>10.1f}{ratio:>15}")
    means = {f"decide {name} / json.dumps": statistics.fmean(r) for name, r in ratios.items()}
    if args.json:
        print(json.dumps(means, indent=2))
    return means


if __name__ == "__main__":
    main()
