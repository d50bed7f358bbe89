"""Offline evaluation speed: replay of 1,000,000 rows, the outcome pipeline, reading JSONL.

Figures, one run (``python benchmarks/eval_replay.py [ROWS] [--quick] [--json]
[--rounds N] [--against SRC] [--e2e-only] [--splits N]``), printed
in the order 3, 4, 1, 2:

1. catalog replay: ROWS synthetic rows (a mix of tag sets, log-normal prompt sizes) through
   the value, quality, cheapest, value:gap=8 and random policies, plus always-X for every
   priced model (the baselines ``evaluate`` always adds);
2. outcome pipeline: ROWS two-model outcome rows in 57 groups through ``suite.run``
   (seeded split, calibration, the tag router's threshold sweep, oracle, random);
3. ``routedllm eval FILE`` end to end on a JSONL file of ROWS rows (prompts of 20-400
   words, given tags, two outcomes each: 1.4 GB for a million), in a fresh interpreter:
   wall time, CPU time and peak resident memory, over ``--rounds`` rounds, interleaved
   with another checkout's ``--against SRC`` when given (``--e2e-only``: this figure alone;
   ``--splits N``: ``routedllm eval FILE --splits N``, else the default 20 splits);
4. reading that file into an ``EvalSet`` against a plain ``json.loads`` of every line,
   side by side (best of 3 each): the ratio is what ``make bench-quick`` checks.

``--quick`` skips 1-3 and reads 100,000 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from routedllm import Catalog
from routedllm.evaluation.dataset import EvalSet
from routedllm.evaluation.policies import parse_policies
from routedllm.evaluation.replay import evaluate, replay
from routedllm.evaluation.space import ModelSpace
from routedllm.evaluation.suite import Settings, run

TAG_SETS = (
    ("general",),
    ("code",),
    ("chinese",),
    ("extraction",),
    ("classification",),
    ("summarization",),
    ("vision",),
    ("code", "chinese"),
    ("general", "long-context"),
)
TAG_WEIGHTS = (0.3, 0.2, 0.1, 0.1, 0.08, 0.08, 0.04, 0.05, 0.05)


def synthetic(n: int, seed: int = 0, models: tuple[str, ...] = (), groups: int = 1) -> EvalSet:
    rng = np.random.default_rng(seed)
    tag_index = rng.choice(len(TAG_SETS), size=n, p=TAG_WEIGHTS).astype(np.int32)
    tokens = np.clip(rng.lognormal(np.log(800), 1.2, n), 5, 120_000).astype(np.int64)
    long = np.asarray([("long-context" in t) for t in TAG_SETS])[tag_index]
    tokens[long] = rng.integers(32_000, 120_000, long.sum())
    out = rng.choice([0, 60, 150, 300, 700], size=n).astype(np.int64)
    group_index = rng.integers(0, groups, n).astype(np.int32)
    k = len(models)
    scores = np.empty((n, k))
    if k:  # strong is better on most groups, by a group-dependent margin
        skill = rng.uniform(0.55, 0.95, (groups, k))
        margin = rng.uniform(-0.05, 0.2, groups)
        skill[:, 0] = np.maximum(skill[:, 0], skill[:, 1:].max(axis=1) + margin)
        scores = (rng.random((n, k)) < np.clip(skill[group_index], 0, 1)).astype(float)
    costs = np.tile(np.linspace(0.01, 0.0005, k), (n, 1)) if k else np.empty((n, 0))
    return EvalSet(
        ids=tuple(f"r{i}" for i in range(n)),
        tag_sets=TAG_SETS,
        tag_index=tag_index,
        inferred=np.zeros(n, dtype=bool),
        group_names=tuple(f"g{i}" for i in range(groups)),
        group_index=group_index,
        input_tokens=tokens,
        output_tokens=out,
        models=models,
        scores=scores,
        costs=costs,
        inference=(0.3, 32_000),
    )


def timed(fn):  # noqa: ANN001, ANN201 - a benchmark helper
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def write_rows(path: Path, n: int) -> None:
    """``n`` rows of 20-400 words, tagged, with two outcomes each."""
    rng = np.random.default_rng(2)
    sizes = rng.integers(20, 400, n)
    with path.open("w") as handle:
        for i in range(n):
            row = {
                "id": f"r{i}",
                "prompt": " ".join(["lorem"] * int(sizes[i])),
                "tags": ["general"],
                "outcomes": {"a": {"score": 1.0, "cost_usd": 0.001}, "b": {"score": 0.0}},
            }
            handle.write(json.dumps(row) + "\n")


def eval_end_to_end(
    path: Path, pythonpath: str | None = None, splits: int | None = None
) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of ``routedllm eval
    PATH [--splits N]`` in a fresh interpreter (that child's own figures, from
    ``os.wait4``), with the routedllm on ``pythonpath`` when given."""
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": pythonpath}
    extra = [] if splits is None else ["--splits", str(splits)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "routedllm.cli", "eval", str(path), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"routedllm eval failed with exit code {proc.returncode}")
    # ru_maxrss is in KiB on Linux
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def end_to_end_rounds(
    path: Path, rounds: int, against: str | None, splits: int | None = None
) -> None:
    """Figure 3 over ``rounds`` rounds, interleaved with the routedllm under ``against``
    (another checkout's src/) when given: each round's figures, then mean (min-max)."""
    sources = {"this": None} | ({"against": _pythonpath(against)} if against else {})
    figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sources}
    for i in range(rounds):
        for name, pythonpath in sources.items():
            wall, cpu, rss = eval_end_to_end(path, pythonpath, splits)
            figures[name].append((wall, cpu, rss))
            print(f"round {i + 1} {name}: {wall:.2f} s wall, {cpu:.2f} s CPU, {rss:,.0f} MB")
    for name, values in figures.items():
        cells = [
            f"{what} {statistics.fmean(v):.{d}f} ({min(v):.{d}f}-{max(v):.{d}f}) {unit}"
            for what, unit, d, v in zip(
                ("wall", "CPU", "peak"),
                ("s", "s", "MB"),
                (2, 2, 0),
                zip(*values, strict=True),
                strict=True,
            )
        ]
        print(f"routedllm eval, {name}, {rounds} rounds: " + ", ".join(cells))


def _pythonpath(src: str) -> str:
    """PYTHONPATH with ``src`` in place of this checkout's sources."""
    return os.pathsep.join([str(Path(src).resolve()), *sys.path[2:]])


def json_pass(path: Path) -> None:
    """The reference: parse every line with the standard library, keep nothing."""
    with path.open("rb") as handle:
        for line in handle:
            json.loads(line)


def best_of(fn, repeat: int = 3) -> float:  # noqa: ANN001 - a benchmark helper
    return min(timed(fn)[1] for _ in range(repeat))


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="reading 100,000 rows only")
    parser.add_argument("--json", action="store_true", help="print the ratio as JSON too")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of figure 3")
    parser.add_argument(
        "--against",
        metavar="SRC",
        help="figure 3 also for the routedllm under SRC (another checkout's src/), "
        "interleaved round by round",
    )
    parser.add_argument("--e2e-only", action="store_true", help="figure 3 alone")
    parser.add_argument("--splits", type=int, help="figure 3 with routedllm eval --splits N")
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        write_rows(path, n)
        size_mb = path.stat().st_size / 1e6
        if not args.quick:  # first: a child's peak RSS counts the pages it forked with
            print(f"routedllm eval on {n:,} rows ({size_mb:,.0f} MB):")
            end_to_end_rounds(path, args.rounds, args.against, args.splits)
            if args.e2e_only:
                return {}
        ours = best_of(lambda: EvalSet.from_jsonl(path))
        plain = best_of(lambda: json_pass(path))
    if not args.quick:
        replay_figures(n)
    print(
        f"reading {n:,} rows: EvalSet.from_jsonl {n / ours:,.0f} rows/s, json.loads alone "
        f"{n / plain:,.0f} rows/s; ratio {ours / plain:.2f}"
    )
    result = {"eval read EvalSet.from_jsonl / json.loads": ours / plain}
    if args.json:
        print(json.dumps(result, indent=2))
    return result


def replay_figures(n: int) -> None:
    """Figures 1 and 2."""
    catalog = Catalog.default()

    data, build_s = timed(lambda: synthetic(n))
    space = ModelSpace.build(catalog, data)
    policies = [
        p
        for spec in ("value", "quality", "cheapest", "value:gap=8", "random")
        for p in parse_policies(spec, data, space)
    ]
    fresh = synthetic(n)  # no memoised decision keys from an earlier pass
    _, five_s = timed(lambda: [replay(p, fresh, space) for p in policies])
    print(
        f"catalog replay: {n:,} rows through {len(policies)} policies "
        f"({', '.join(p.name for p in policies)}): {five_s:.2f} s"
    )
    ev, replay_s = timed(lambda: evaluate(data, space, policies))
    value = ev.get("value")
    print(
        f"full offline evaluation: the same plus {len(ev.results) - len(policies)} always-X "
        f"baselines, totals, per-tag figures and the frontier: {replay_s:.2f} s; value: "
        f"${value.cost_usd:,.2f}, quality {value.quality:.4f}, {value.no_eligible:,} rows "
        "with no eligible model"
    )

    models = ("strong", "weak")
    outcome, _ = timed(lambda: synthetic(n, seed=1, models=models, groups=57))
    settings = Settings(strong="strong", weak="weak")
    report, pipeline_s = timed(lambda: run(outcome, catalog, settings))
    two = report.two_model
    print(
        f"outcome pipeline: {n:,} two-model rows, 57 groups, {len(report.evaluation.results)} "
        f"policies (split, calibrate, sweep): {pipeline_s:.2f} s; tag router APGR "
        f"{two['tag_router']['apgr']:.3f}"
    )

    print(f"(synthetic rows built in {build_s:.2f} s, not counted)")


if __name__ == "__main__":
    main()
