"""CallRecord: pricing through the catalog, unknown stays unknown, the ledger line's fields."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from routedllm import CallRecord, Catalog, MemorySink
from routedllm.records.schema import Usage, build_record, error_text, resolve_model, with_baseline
from routedllm.records.sinks import deliver, sinks_for

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


DEFAULT_USAGE = Usage(1000, 500)


def record(
    catalog: Catalog, model: str = "gpt-4o-mini", usage: Usage | None = DEFAULT_USAGE, **fields
) -> CallRecord:
    fields.setdefault("latency_s", 2.0)
    return build_record(catalog, model, usage=usage, ts=T0, **fields)


def test_prices_with_the_catalog_and_compares_with_the_baseline(catalog) -> None:
    r = record(catalog)  # gpt-4o-mini: $0.15 in / $0.60 out per 1M; gpt-4o: $2.50 / $10
    assert r.input_cost_usd == pytest.approx(0.00015)
    assert r.output_cost_usd == pytest.approx(0.0003)
    assert r.cost_usd == pytest.approx(0.00045)
    assert r.baseline_model == "gpt-4o"
    assert r.baseline_cost_usd == pytest.approx(0.0025 + 0.005)
    assert r.savings_usd == pytest.approx(0.0075 - 0.00045)
    assert r.prices_as_of == catalog.info.as_of and r.outcome == "ok" and r.ok


def test_cached_input_is_priced_as_the_catalog_says(catalog) -> None:
    cheap_cache = catalog.merged({"models": [{"id": "gpt-4o", "cached_input_usd_per_mtok": 1.25}]})
    r = record(cheap_cache, "gpt-4o", Usage(1000, 0, cached_input_tokens=400), baseline_model=None)
    assert r.cost_usd == pytest.approx((600 * 2.5 + 400 * 1.25) / 1e6)
    assert r.baseline_model is None and r.savings_usd is None


def test_ledger_line_has_the_documented_field_names(catalog) -> None:
    line = json.loads(record(catalog, run_id="r1", tags=["code"], policy="value").model_dump_json())
    for name in (
        "ts",
        "run_id",
        "model",
        "tags",
        "policy",
        "attempt",
        "outcome",
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "cost_usd",
        "estimated_cost_usd",
        "baseline_model",
        "baseline_cost_usd",
        "savings_usd",
        "latency_s",
        "ttft_s",
        "parent_run_id",
        "requested_model",
        "answering_model",
        "reasoning_tokens",
        "input_cost_usd",
        "output_cost_usd",
        "prices_as_of",
        "output_tokens_per_s",
        "error",
        "cache_hit",
    ):
        assert name in line, name
    assert line["ts"] == "2026-03-01T12:00:00Z" and line["tags"] == ["code"]
    assert CallRecord.model_validate_json(json.dumps(line)) == record(
        catalog, run_id="r1", tags=["code"], policy="value"
    )


def test_unknown_price_is_none_never_zero(catalog) -> None:
    unknown_model = record(catalog, "llama-3-70b")
    assert unknown_model.model == "llama-3-70b"
    assert unknown_model.cost_usd is None and unknown_model.savings_usd is None
    assert unknown_model.baseline_cost_usd is not None  # the tokens are known
    unpriced_input = record(catalog, "qwen3.5-397b")  # the catalog has no input price for it
    assert unpriced_input.input_cost_usd is None and unpriced_input.cost_usd is None
    assert unpriced_input.output_cost_usd == pytest.approx(500 * 2.34 / 1e6)
    no_usage = record(catalog, "gpt-4o", usage=None)
    assert no_usage.input_tokens is None and no_usage.cost_usd is None
    assert no_usage.baseline_cost_usd is None and no_usage.output_tokens_per_s is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("claude-3.5-sonnet-20241022", "claude-3.5-sonnet"),
        ("gpt-4o-latest", "gpt-4o"),
        ("gpt-4o-audio-preview", None),  # a different model, not a snapshot: unknown
        ("gpt-4o-mini-tts", None),
        ("llama-3-70b", None),
        ("", None),
    ],
)
def test_resolve_model_rule(catalog, name: str, expected: str | None) -> None:
    card = resolve_model(catalog, name)
    assert (card.id if card else None) == expected


def test_record_carries_catalog_id_and_the_reported_name(catalog) -> None:
    r = record(catalog, "gpt-4o-2024-08-06", answering_model="gpt-4o-2024-08-06")
    assert r.model == "gpt-4o" and r.answering_model == "gpt-4o-2024-08-06"
    assert r.cost_usd == pytest.approx(r.baseline_cost_usd)


def test_usage_from_langchain_and_openai_shapes() -> None:
    lc = {
        "input_tokens": 100,
        "output_tokens": 40,
        "total_tokens": 140,
        "input_token_details": {"cache_read": 30},
        "output_token_details": {"reasoning": 10},
    }
    oa = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "total_tokens": 140,
        "prompt_tokens_details": {"cached_tokens": 30},
        "completion_tokens_details": {"reasoning_tokens": 10},
    }
    assert Usage.from_usage_metadata(lc) == Usage.from_openai(oa) == Usage(100, 40, 30, 10)
    assert Usage.from_usage_metadata(None) is None and Usage.from_openai({}) is None


def test_output_speed_counts_generation_time_only(catalog) -> None:
    streamed = record(catalog, usage=Usage(10, 200), latency_s=3.0, ttft_s=1.0)
    assert streamed.output_tokens_per_s == pytest.approx(100.0)
    plain = record(catalog, usage=Usage(10, 200), latency_s=4.0)
    assert plain.output_tokens_per_s == pytest.approx(50.0)
    failed = record(catalog, usage=Usage(0, 0), outcome="RateLimitError", latency_s=0.1)
    assert failed.output_tokens_per_s is None and not failed.ok and failed.cost_usd == 0.0


def test_naive_timestamp_is_rejected(catalog) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_record(catalog, "gpt-4o", usage=None, ts=dt.datetime(2026, 1, 1), latency_s=1.0)


def test_with_baseline_reprices_savings_keeps_cost(catalog) -> None:
    r = with_baseline(record(catalog), catalog, "claude-3.5-sonnet")
    assert r.cost_usd == pytest.approx(0.00045)
    assert r.baseline_model == "claude-3.5-sonnet"
    assert r.baseline_cost_usd == pytest.approx(1000 * 3 / 1e6 + 500 * 15 / 1e6)
    assert r.savings_usd == pytest.approx(r.baseline_cost_usd - 0.00045)


def test_a_failing_sink_does_not_stop_the_others(catalog, caplog) -> None:
    class Broken:
        def emit(self, record: CallRecord) -> None:
            raise OSError("disk full")

    memory = MemorySink()
    with caplog.at_level(logging.ERROR, logger="routedllm"):
        deliver([Broken(), memory], [record(catalog), record(catalog)])
    assert len(memory.records) == 2 and "failed to take a record" in caplog.text


def test_a_cache_hit_costs_nothing_and_older_ledger_lines_still_load(catalog) -> None:
    hit = record(catalog, "llama-3-70b", usage=Usage(1000, 500), cache_hit=True)
    assert hit.cache_hit and hit.ok and hit.error is None
    assert (hit.input_tokens, hit.output_tokens) == (0, 0)
    assert hit.cost_usd == 0.0  # nothing was sent, even to a model the catalog cannot price
    assert hit.baseline_cost_usd == 0.0 and hit.savings_usd == 0.0
    line = json.loads(record(catalog).model_dump_json())
    assert line.pop("cache_hit") is False
    assert CallRecord.model_validate_json(json.dumps(line)).cache_hit is False


def test_error_text_is_one_line_scrubbed_then_clipped() -> None:
    key = "ga_TESTSECRET_0123456789abcdef"
    text = error_text(RuntimeError(f"bad key {key}\n  sent " + "x" * 600), key)
    assert text.startswith("bad key [redacted] sent xxx") and key not in text
    assert len(text) == 500 and text.endswith("...")
    assert error_text(RuntimeError(), key) == "RuntimeError"  # no message: its type
    assert error_text("short k", "k") == "short k"  # not a real key: left alone
    assert error_text(None, key) is None and error_text("", key) is None
    assert error_text("x" * 20, None, limit=10) == "xxxxxxx..."


def test_sinks_for_puts_memory_then_ledger_then_the_given_sinks(tmp_path) -> None:
    extra = MemorySink()
    memory, ledger, sinks = sinks_for(None, tmp_path / "calls.jsonl", [extra])
    assert isinstance(memory, MemorySink) and ledger is not None
    assert ledger.path == tmp_path / "calls.jsonl" and sinks == (memory, ledger, extra)
    mine = MemorySink()
    assert sinks_for(mine, None, ()) == (mine, None, (mine,))


def test_run_collector_gives_back_a_runs_attempts_in_order_and_sums_their_cost(catalog) -> None:
    from routedllm.records.runs import RunCollector, summed_cost

    def attempt(n: int, model: str) -> CallRecord:
        return build_record(
            catalog, model, usage=Usage(100, 10), ts=T0, latency_s=0.1, attempt=n, run_id="r"
        )

    collector = RunCollector()
    second, first = attempt(2, "gpt-4o"), attempt(1, "gpt-4o-mini")
    for record in (second, first, attempt(1, "gpt-4o").model_copy(update={"run_id": "other"})):
        collector.emit(record)
    records = collector.pop("r")
    assert records == (first, second) and collector.pop("r") == ()
    assert summed_cost(records) == pytest.approx((first.cost_usd or 0) + (second.cost_usd or 0))
    assert summed_cost([*records, attempt(3, "no-such-model")]) is None
    assert summed_cost([]) == 0.0
