"""What routing adds to a LangChain call: RoutedChatModel against a plain ChatOpenAI.

Both models call the same loopback stand-in upstream (``routedllm.testing.upstream``),
which runs in a separate process and answers every request after a fixed delay (20 ms by
default), so the client process's CPU is what limits throughput at high concurrency. For
each concurrency (1, 64, 256) and mode (``ainvoke``, ``astream``) a round times, back to
back and in an order that alternates between rounds:

* ``plain``: ``ChatOpenAI`` pinned to the model the router picks, no callbacks;
* ``routed``: ``RoutedChatModel`` (routing, capability checks, its own record per call);
* ``routed+ledger``: the same with a ``CostLatencyHandler`` writing a JSONL ledger.

Each figure is calls per second over a batch of calls; the table gives, per configuration,
the ratio routed / plain (mean over rounds and half the spread, max - min, of the
per-round ratios), and at concurrency 1 the added median latency per call. ``--profile``
then runs the routed model under cProfile at concurrency 64 and prints routedllm's
frames with the most CPU.

Run: ``python benchmarks/chat_model_overhead.py [--rounds 5] [--calls 1500] [--delay 0.02]``.
``--quick`` (fewer calls and rounds) is what ``make bench-quick`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_openai import ChatOpenAI

from routedllm import Catalog, CostLatencyHandler
from routedllm.adapters.langchain.chat_model import RoutedChatModel

PROMPT = "Summarise the trade-offs between event sourcing and CRUD with an audit table. " * 20
CONCURRENCY = (1, 64, 256)
MODES = ("invoke", "stream")
VARIANTS = ("plain", "routed", "routed+ledger")

# The upstream runs in its own interpreter: sharing the GIL with the clients would charge
# its work to whichever model is being measured.
_SERVER = """
import sys
from routedllm.testing.spec import ModelSpec
from routedllm.testing.upstream import Upstream
spec = ModelSpec(latency_s=float(sys.argv[1]), reply="Event sourcing keeps every change.")
up = Upstream(default=spec)
up.start()
print(up.base_url, flush=True)
sys.stdin.read()
up.stop()
"""


@contextmanager
def upstream(delay_s: float) -> Iterator[str]:
    """The stand-in upstream in a child process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(delay_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


Call = Callable[[], Awaitable[object]]


async def make_calls(base_url: str, ledger: Path) -> tuple[str, dict[tuple[str, str], Call]]:
    """(the routed model's pick, (variant, mode) -> one async call)."""
    catalog = Catalog.default()
    common: dict[str, Any] = {"api_key": "bench", "base_url": base_url, "max_retries": 0}
    routed = RoutedChatModel(catalog=catalog, **common)
    handler = CostLatencyHandler(catalog, ledger_path=ledger)
    recorded = routed.with_config(callbacks=[handler])
    model = (await routed.ainvoke(PROMPT)).response_metadata["model_name"]
    plain = ChatOpenAI(model=model, stream_usage=True, **common)
    runnables = {"plain": plain, "routed": routed, "routed+ledger": recorded}

    def call(runnable: Any, mode: str) -> Call:
        if mode == "invoke":
            return lambda: runnable.ainvoke(PROMPT)

        async def stream() -> None:
            async for _ in runnable.astream(PROMPT):
                pass

        return stream

    return model, {(v, m): call(r, m) for v, r in runnables.items() for m in MODES}


async def batch(call: Call, calls: int, concurrency: int) -> tuple[float, list[float], float]:
    """Calls per second over ``calls`` calls ``concurrency`` at a time, each latency, and
    the client process's CPU time per call (seconds)."""
    latencies: list[float] = []
    queue = iter(range(calls))

    async def worker() -> None:
        for _ in queue:
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu = (time.process_time() - cpu) / calls
    return calls / (time.perf_counter() - started), latencies, cpu


def spread(values: Sequence[float]) -> str:
    return f"{statistics.fmean(values):.3f} ±{(max(values) - min(values)) / 2:.3f}"


async def measure(
    calls: dict[tuple[str, str], Call], rounds: int, per_batch: dict[int, int]
) -> dict[tuple[int, str], dict[str, list[float]]]:
    """Per (concurrency, mode): per variant, one figure per round (calls/s), plus the
    median latency (ms) of each round at concurrency 1 under ``<variant> ms``."""
    results: dict[tuple[int, str], dict[str, list[float]]] = {}
    for call in calls.values():  # warm up: connections, caches, lazy imports
        await batch(call, 20, 4)
    for r in range(rounds):
        for c in CONCURRENCY:
            for mode in MODES:
                figures = results.setdefault((c, mode), {})
                order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    rate, latencies, cpu = await batch(calls[variant, mode], per_batch[c], c)
                    figures.setdefault(variant, []).append(rate)
                    figures.setdefault(f"{variant} cpu", []).append(cpu * 1e6)
                    if c == 1:
                        ms = statistics.median(latencies) * 1000
                        figures.setdefault(f"{variant} ms", []).append(ms)
    return results


def report(results: dict[tuple[int, str], dict[str, list[float]]]) -> dict[str, float]:
    """Print the tables; returns the median ratios by name (for the quick check)."""
    ratios: dict[str, float] = {}
    print(
        f"{'concurrency':>11} {'mode':<7}{'plain calls/s':>15}{'routed/plain':>16}"
        f"{'+ledger/plain':>16}{'added median ms':>18}"
    )
    for (c, mode), fig in results.items():
        plain = fig["plain"]
        routed = [a / b for a, b in zip(fig["routed"], plain, strict=True)]
        ledger = [a / b for a, b in zip(fig["routed+ledger"], plain, strict=True)]
        # the quick check takes the median round: one disturbed round does not move it
        ratios[f"c{c} {mode} routed/plain"] = statistics.median(routed)
        ratios[f"c{c} {mode} routed+ledger/plain"] = statistics.median(ledger)
        added = ""
        if c == 1:
            deltas = [a - b for a, b in zip(fig["routed+ledger ms"], fig["plain ms"], strict=True)]
            added = f"{statistics.fmean(deltas):.3f} ±{(max(deltas) - min(deltas)) / 2:.3f}"
        print(
            f"{c:>11} {mode:<7}{statistics.fmean(plain):>15,.0f}{spread(routed):>16}"
            f"{spread(ledger):>16}{added:>18}"
        )
    print(
        "\nclient CPU per call (us), and the ratio plain / routed of it (what the calls per"
        " second would be if CPU alone bounded them):"
    )
    print(
        f"{'concurrency':>11} {'mode':<7}{'plain us':>10}{'routed +us':>14}{'+ledger +us':>14}"
        f"{'CPU plain/routed':>18}{'plain/+ledger':>16}"
    )
    for (c, mode), fig in results.items():
        plain = fig["plain cpu"]
        added = {v: [a - b for a, b in zip(fig[f"{v} cpu"], plain, strict=True)] for v in VARIANTS}
        cpu = {v: [b / a for a, b in zip(fig[f"{v} cpu"], plain, strict=True)] for v in VARIANTS}
        print(
            f"{c:>11} {mode:<7}{statistics.fmean(plain):>10.0f}"
            f"{spread1(added['routed']):>14}{spread1(added['routed+ledger']):>14}"
            f"{spread(cpu['routed']):>18}{spread(cpu['routed+ledger']):>16}"
        )
    return ratios


def spread1(values: Sequence[float]) -> str:
    return f"{statistics.fmean(values):.0f} ±{(max(values) - min(values)) / 2:.0f}"


async def profile(call: Call, calls: int, top: int) -> None:
    """Run ``calls`` routed calls at concurrency 64 under cProfile; print routedllm's
    frames by own time and by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    await batch(call, calls, 64)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (path, line, name), (_, calls_n, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "routedllm" in path:
            rows.append((own, cumulative, calls_n, f"{Path(path).name}:{line} {name}"))
    print(f"\nprofile: {calls} routed stream calls at concurrency 64, {total:.2f} s of CPU in all")
    for key, title in ((0, "own time"), (1, "cumulative time")):
        print(f"routedllm frames by {title} (us per call: own, cumulative; calls per call):")
        for own, cumulative, n, where in sorted(rows, key=lambda r: r[key], reverse=True)[:top]:
            print(
                f"  {own / calls * 1e6:8.1f} {cumulative / calls * 1e6:8.1f} "
                f"{n / calls:6.1f}  {where}"
            )


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1500, help="calls per batch at 64 and 256")
    parser.add_argument("--delay", type=float, default=0.02, help="upstream delay, seconds")
    parser.add_argument("--quick", action="store_true", help="3 rounds of fewer calls")
    parser.add_argument("--profile", action="store_true", help="then profile the routed model")
    parser.add_argument("--json", action="store_true", help="print the ratios as JSON too")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls = 3, 400
    per_batch = {1: max(args.calls // 10, 40), 64: args.calls, 256: args.calls}
    with tempfile.TemporaryDirectory() as tmp, upstream(args.delay) as base_url:
        ratios = asyncio.run(run(args, base_url, Path(tmp) / "ledger.jsonl", per_batch))
    if args.json:
        print(json.dumps(ratios, indent=2))
    return ratios


async def run(
    args: argparse.Namespace, base_url: str, ledger: Path, per_batch: dict[int, int]
) -> dict[str, float]:
    """Everything on one event loop (the models' shared async HTTP clients belong to it)."""
    model, calls = await make_calls(base_url, ledger)
    print(
        f"upstream delay {args.delay * 1000:.0f} ms; routed to {model}; prompt "
        f"~{len(PROMPT) // 4} tokens; {args.rounds} rounds; calls per batch "
        f"{per_batch[1]} at concurrency 1, {args.calls} at 64 and 256; ratios of "
        "calls/s, mean ± half-range over rounds"
    )
    results = await measure(calls, args.rounds, per_batch)
    ratios = report(results)
    if args.profile:
        await profile(calls["routed", "stream"], args.calls, 15)
    return ratios


if __name__ == "__main__":
    main()
