"""Cost per record of the sinks every handler has: MemorySink, JsonlLedger, and both together.

    PYTHONPATH=src python benchmarks/sink_speed.py [--records 20000] [--repeat 5] [--quick]

Records are built beforehand (three models, two tag sets, realistic sizes); each figure is
the best of ``--repeat`` interleaved runs, in microseconds per record. The ledger writes
to a file in a temporary directory, which is removed afterwards. ``x to_json`` is each
figure over that of serialising the record alone (``model_dump_json``) in the same repeat,
the median over repeats: a ratio the machine's speed cancels out of (``make bench-quick``
checks it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from routedllm import CallRecord, JsonlLedger, MemorySink
from routedllm.core.catalog import Catalog
from routedllm.records.schema import Usage, build_record

MODELS = ("gpt-4o", "gpt-4o-mini", "deepseek-v4-flash")
TAGS = (("code",), ("code", "chinese"))


def make_records(n: int) -> list[CallRecord]:
    catalog = Catalog.default()
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    return [
        build_record(
            catalog,
            MODELS[i % len(MODELS)],
            usage=Usage(1000 + i % 300, 400 + i % 200),
            ts=t0 + dt.timedelta(seconds=i),
            latency_s=0.5 + (i % 97) / 40,
            ttft_s=0.1 + (i % 13) / 50,
            tags=TAGS[i % len(TAGS)],
            run_id=f"run-{i:08d}",
        )
        for i in range(n)
    ]


def per_record_us(
    emit_all: Callable[[Sequence[CallRecord]], None], records: Sequence[CallRecord]
) -> float:
    started = time.perf_counter()
    emit_all(records)
    return (time.perf_counter() - started) / len(records) * 1e6


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10,000 records, 9 repeats")
    parser.add_argument("--json", action="store_true", help="print the ratios as JSON too")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.repeat = 10_000, 9
    records = make_records(args.records)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = JsonlLedger(Path(tmp) / "calls.jsonl")
        memory = MemorySink()

        def memory_only(rs: Sequence[CallRecord]) -> None:
            for r in rs:
                memory.emit(r)

        def ledger_only(rs: Sequence[CallRecord]) -> None:
            for r in rs:
                ledger.emit(r)

        def both(rs: Sequence[CallRecord]) -> None:
            for r in rs:
                memory.emit(r)
                ledger.emit(r)

        def serialise(rs: Sequence[CallRecord]) -> None:
            for r in rs:
                r.model_dump_json()

        calls = {
            "model_dump_json": serialise,
            "MemorySink.emit": memory_only,
            "JsonlLedger.emit": ledger_only,
            "both": both,
        }
        runs: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.repeat):  # interleaved: a disturbance hits one repeat of all
            for name, call in calls.items():
                runs[name].append(per_record_us(call, records))
        ledger.close()
    figures = {name: min(values) for name, values in runs.items()}
    # each ratio: the median over repeats of that repeat's figure over its reference
    reference = runs["model_dump_json"]
    ratios = {
        f"sink {name} / model_dump_json": statistics.median(
            us / ref for us, ref in zip(values, reference, strict=True)
        )
        for name, values in runs.items()
        if name != "model_dump_json"
    }
    print(
        f"{args.records} records, best of {args.repeat} runs, microseconds per record, and "
        "the median ratio to model_dump_json:"
    )
    for name, us in figures.items():
        ratio = ratios.get(f"sink {name} / model_dump_json", 1.0)
        print(f"  {name:<18} {us:6.2f}  x to_json {ratio:5.2f}")
    if args.json:
        print(json.dumps(ratios, indent=2))
    return ratios


if __name__ == "__main__":
    main()
