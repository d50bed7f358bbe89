"""Cost per record of the sinks every handler has: MemorySink, JsonlLedger, and both together.

    PYTHONPATH=src python benchmarks/sink_speed.py [--records 20000] [--repeat 5]

Records are built beforehand (three models, two tag sets, realistic sizes); each figure is
the best of ``--repeat`` runs, in microseconds per record. The ledger writes to a file in a
temporary directory, which is removed afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
    emit_all: Callable[[Sequence[CallRecord]], None], records: Sequence[CallRecord], repeat: int
) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        emit_all(records)
        best = min(best, time.perf_counter() - started)
    return best / len(records) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
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

        figures = {
            "MemorySink.emit": per_record_us(memory_only, records, args.repeat),
            "JsonlLedger.emit": per_record_us(ledger_only, records, args.repeat),
            "both": per_record_us(both, records, args.repeat),
        }
        ledger.close()
    print(f"{args.records} records, best of {args.repeat} runs, microseconds per record:")
    for name, us in figures.items():
        print(f"  {name:<18} {us:6.2f}")


if __name__ == "__main__":
    main()
