"""MemorySink: aggregates per model and tag, quantiles from a mergeable sketch, thread safety."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pytest

from routedllm import MemorySink
from routedllm.core.catalog import Catalog
from routedllm.records.schema import Usage, build_record

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def rec(
    catalog: Catalog,
    model: str,
    latency: float,
    *,
    tags=("code",),
    outcome: str = "ok",
    ttft: float | None = None,
):
    usage = Usage(1000, 500) if outcome == "ok" else Usage(0, 0)
    return build_record(
        catalog,
        model,
        usage=usage,
        ts=T0,
        latency_s=latency,
        ttft_s=ttft,
        tags=tags,
        outcome=outcome,
    )


def test_aggregates_per_model_and_tag(catalog) -> None:
    sink = MemorySink()
    sink.emit(rec(catalog, "gpt-4o-mini", 1.0, tags=("code", "chinese")))
    sink.emit(rec(catalog, "gpt-4o-mini", 3.0, outcome="RateLimitError"))
    sink.emit(rec(catalog, "llama-3-70b", 2.0, tags=()))
    s = sink.summary()
    mini = s["by_model"]["gpt-4o-mini"]
    assert mini["attempts"] == 2 and mini["errors"] == 1 and mini["error_rate"] == 0.5
    assert mini["cost_usd"] == pytest.approx(0.00045) and mini["unpriced_attempts"] == 0
    assert mini["savings_usd"] == pytest.approx(0.0075 - 0.00045)
    assert mini["latency_s"]["p50"] == pytest.approx(1.0, rel=0.01)  # the 429 is not counted
    llama = s["by_model"]["llama-3-70b"]
    assert (
        llama["cost_usd"] is None
        and llama["unpriced_attempts"] == 1
        and llama["savings_usd"] is None
    )
    assert s["by_tag"]["code"]["attempts"] == 2 and s["by_tag"]["chinese"]["attempts"] == 1
    assert s["by_tag"]["(untagged)"]["attempts"] == 1
    assert s["total"]["cost_usd"] == pytest.approx(0.00045) and s["total"]["unpriced_attempts"] == 1
    assert s["total"]["ttft_s"] == {"p50": None, "p95": None, "p99": None}


def test_quantiles_within_one_percent(catalog) -> None:
    sink = MemorySink(max_records=10)
    for i in range(1, 1001):
        sink.emit(rec(catalog, "gpt-4o", i / 100, ttft=i / 1000))
    q = sink.summary()["by_model"]["gpt-4o"]
    assert q["latency_s"]["p50"] == pytest.approx(5.0, rel=0.011)
    assert q["latency_s"]["p95"] == pytest.approx(9.5, rel=0.011)
    assert q["latency_s"]["p99"] == pytest.approx(9.9, rel=0.011)
    assert q["ttft_s"]["p99"] == pytest.approx(0.99, rel=0.011)
    assert len(sink.records) == 10 and sink.records[-1].latency_s == 10.0  # bounded


def test_merge_equals_one_sink_over_everything(catalog) -> None:
    records = [rec(catalog, m, i / 10) for i in range(1, 60) for m in ("gpt-4o", "qwen3-32b")]
    whole = MemorySink().extend(records)
    left, right = MemorySink().extend(records[::2]), MemorySink().extend(records[1::2])
    left.merge(right)
    merged, expected = left.summary(), whole.summary()
    assert merged["total"]["attempts"] == expected["total"]["attempts"] == len(records)
    for model in ("gpt-4o", "qwen3-32b"):
        assert merged["by_model"][model]["cost_usd"] == pytest.approx(
            expected["by_model"][model]["cost_usd"]
        )
        assert merged["by_model"][model]["latency_s"] == pytest.approx(
            expected["by_model"][model]["latency_s"]
        )


def test_thread_safe_counts(catalog) -> None:
    sink = MemorySink()
    r = rec(catalog, "gpt-4o", 1.0)
    threads = [
        threading.Thread(target=lambda: [sink.emit(r) for _ in range(500)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sink.summary()["by_model"]["gpt-4o"]["attempts"] == 4000


def test_views_per_model_tag_and_total_are_folded_snapshots(catalog) -> None:
    sink = MemorySink()
    for i in range(30):
        sink.emit(
            rec(catalog, ("gpt-4o", "gpt-4o-mini")[i % 2], 1.0, tags=(("code",), ())[i % 3 == 0])
        )
    by_model, by_tag, total = sink.by_model, sink.by_tag, sink.total
    assert {k: v.attempts for k, v in by_model.items()} == {"gpt-4o": 15, "gpt-4o-mini": 15}
    assert {k: v.attempts for k, v in by_tag.items()} == {"code": 20, "(untagged)": 10}
    assert total.attempts == 30 and total.latency.count == 30
    sink.emit(rec(catalog, "gpt-4o", 1.0))
    assert total.attempts == 30 and sink.total.attempts == 31  # a view does not move
    assert sink.summary()["by_model"]["gpt-4o"]["attempts"] == 16


def test_bucket_counts_give_the_quantiles_of_one_add_per_value() -> None:
    import random

    from ddsketch import DDSketch

    from routedllm.records.memory import RELATIVE_ACCURACY, add_buckets, count_buckets

    rng = random.Random(3)
    values = [rng.lognormvariate(0, 2) for _ in range(20_000)] + [0.0, 0.0, 1e-320]
    one_by_one, bucketed = DDSketch(RELATIVE_ACCURACY), DDSketch(RELATIVE_ACCURACY)
    for v in values:
        one_by_one.add(v)
    buckets: Counter = Counter()
    count_buckets(values[:7000], buckets)
    count_buckets(values[7000:], buckets)
    add_buckets(bucketed, buckets)
    assert bucketed.count == one_by_one.count
    for q in (0.0, 0.001, 0.25, 0.5, 0.9, 0.99, 1.0):
        assert bucketed.get_quantile_value(q) == one_by_one.get_quantile_value(q)
