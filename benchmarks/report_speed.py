"""Time and peak memory of ``routedllm report`` on a generated ledger (1M lines by default).

    PYTHONPATH=src python benchmarks/report_speed.py [--lines 1000000] [--rounds 5] [--json]

Writes a ledger of realistic lines (five models, four tag sets, one call in twenty falling
back to a second attempt, 3% errors, some unpriced) in a temporary directory, runs the
report on it as a subprocess ``--rounds`` times, and prints each round's wall time, CPU time
and peak RSS (from ``os.wait4``: that child's own figures), then their mean and spread
(min-max). On a busy machine the CPU time is the steadier figure. Targets (issue #15): 1M
lines in at most 5 s and 200 MB. The directory is removed afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from routedllm.core.catalog import Catalog
from routedllm.records.schema import Usage, build_record

MODELS = ("gpt-4o", "gpt-4o-mini", "deepseek-v4-flash", "qwen3-32b", "not-in-the-catalog")
TAG_SETS = (("code",), ("chinese",), ("code", "math"), ())


def write_ledger(path: Path, lines: int, seed: int = 7) -> None:
    """``lines`` ledger lines: records built once per (model, tags, outcome), then varied in
    run id, time and latency as text, which is much faster than building each record."""
    catalog = Catalog.default()
    rng = random.Random(seed)
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    templates = {}
    for model in MODELS:
        for tags in TAG_SETS:
            for outcome in ("ok", "RateLimitError"):
                record = build_record(
                    catalog,
                    model,
                    usage=Usage(1200, 350) if outcome == "ok" else Usage(0, 0),
                    ts=t0,
                    latency_s=1.25,
                    ttft_s=0.25 if outcome == "ok" else None,
                    tags=tags,
                    outcome=outcome,
                    run_id="RUN",
                    policy="balanced",
                    requested_model=model,
                )
                templates[model, tags, outcome] = json.loads(record.model_dump_json())
    written = 0
    with path.open("w", encoding="utf-8") as f:
        while written < lines:
            batch = []
            while len(batch) < 10_000 and written < lines:
                tags = TAG_SETS[rng.randrange(len(TAG_SETS))]
                attempts = 2 if rng.random() < 0.05 else 1
                run_id = f"{rng.getrandbits(128):032x}"
                for attempt in range(1, min(attempts, lines - written) + 1):
                    outcome = (
                        "RateLimitError" if attempt < attempts or rng.random() < 0.03 else "ok"
                    )
                    line = dict(templates[rng.choice(MODELS), tags, outcome])
                    line["run_id"] = run_id
                    line["attempt"] = attempt
                    line["ts"] = (t0 + dt.timedelta(seconds=written)).isoformat()
                    line["latency_s"] = round(rng.lognormvariate(0.3, 0.6), 4)
                    if line["ttft_s"] is not None:
                        line["ttft_s"] = round(line["latency_s"] * rng.uniform(0.05, 0.4), 4)
                    batch.append(json.dumps(line, separators=(",", ":")))
                    written += 1
            f.write("\n".join(batch) + "\n")


def _report(command: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """One report as a subprocess: (wall s, CPU s, peak RSS MB, first line of its output),
    the CPU and RSS of that child alone (``os.wait4``)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        pid = subprocess.Popen(command, env=env, stdout=out, stderr=err).pid
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"report failed ({status}): {err.read()[-2000:]}")
        first = out.readline().strip()[:200]
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, first  # KB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="time `report --json` instead")
    parser.add_argument(
        "--against",
        metavar="SRC",
        help="also run the routedllm under SRC (another checkout's src/), interleaved "
        "round by round, and print the ratio of the two",
    )
    parser.add_argument("--ledger", metavar="FILE", help="report on this ledger (kept)")
    args = parser.parse_args()
    sources = {"this": os.pathsep.join(sys.path[1:])}
    if args.against:
        sources["against"] = os.pathsep.join([str(Path(args.against).resolve()), *sys.path[2:]])
    rounds: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sources}
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Path(args.ledger) if args.ledger else Path(tmp) / "calls.jsonl"
        if not ledger.exists():
            started = time.perf_counter()
            write_ledger(ledger, args.lines)
            print(f"wrote {args.lines} lines in {time.perf_counter() - started:.1f} s")
        with ledger.open("rb") as f:  # a block at a time: the parent stays small, and its
            # peak RSS is not counted in a forked child's
            lines = sum(block.count(b"\n") for block in iter(partial(f.read, 2**20), b""))
        print(f"{ledger}: {lines} lines, {ledger.stat().st_size / 1e6:.0f} MB")
        command = [sys.executable, "-m", "routedllm.cli", "report", str(ledger)]
        command += ["--json"] if args.json else []
        for i in range(args.rounds):
            for name, path in sources.items():
                wall, cpu, rss, first = _report(command, {**os.environ, "PYTHONPATH": path})
                if i == 0:
                    print(f"{name}: {first}")
                print(f"round {i + 1} {name}: {wall:.2f} s wall, {cpu:.2f} s CPU, {rss:.0f} MB")
                rounds[name].append((wall, cpu, rss))
    print(
        f"\nroutedllm report{' --json' if args.json else ''}, {lines} lines, "
        f"{args.rounds} rounds: mean (min-max)"
    )
    for name, figures in rounds.items():
        for what, unit, values in zip(
            ("wall", "CPU", "peak RSS"), ("s", "s", "MB"), zip(*figures, strict=True), strict=True
        ):
            digits = 0 if unit == "MB" else 2
            print(
                f"  {name:8} {what:9} {statistics.fmean(values):.{digits}f} {unit} "
                f"({min(values):.{digits}f}-{max(values):.{digits}f})"
            )
    if args.against:
        ratios = [t[1] / a[1] for t, a in zip(rounds["this"], rounds["against"], strict=True)]
        print(
            f"  CPU this/against per round: mean {statistics.fmean(ratios):.3f} "
            f"({min(ratios):.3f}-{max(ratios):.3f})"
        )


if __name__ == "__main__":
    main()
