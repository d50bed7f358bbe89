"""The benchmarks in quick mode, checked against committed baselines (``make bench-quick``).

Every figure checked is a ratio measured side by side in one run (routed against plain
ChatOpenAI calls per second; a decision against serialising the same messages; a sink
against serialising the record; reading an eval file against ``json.loads`` of it;
routedllm's import against langchain_openai's), never an absolute time, so a slower or
busier machine moves both sides alike. A ratio more than 25% worse than its baseline in
``benchmarks/baselines.json`` fails the check; a benchmark with a failing ratio is run a
second time first and judged on its better run, since one run on a shared machine can be
disturbed.

    python benchmarks/quick.py            # run and check (exit 1 on a regression)
    python benchmarks/quick.py --update   # run and write the baselines

Takes about 2-3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).parent
BASELINES = HERE / "baselines.json"
TOLERANCE = 0.25
BENCHMARKS = ("decide_speed", "sink_speed", "eval_replay", "import_time", "chat_model_overhead")


def higher_is_better(name: str) -> bool:
    """Throughput ratios (routed / plain calls per second) are better higher; the rest
    (cost against a reference) lower."""
    return name.endswith("/plain")


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run(name: str) -> dict[str, float]:
    print(f"\n== {name} --quick", flush=True)
    started = time.perf_counter()
    main: Callable[[list[str]], dict[str, float]] = load(name).main
    ratios = main(["--quick"])
    print(f"({time.perf_counter() - started:.0f} s)", flush=True)
    return ratios


def regressions(ratios: dict[str, float], baselines: dict[str, float]) -> dict[str, str]:
    """Ratio name -> what is wrong, for each ratio over the tolerance (or unknown)."""
    found = {}
    for name, value in ratios.items():
        base = baselines.get(name)
        if base is None:
            found[name] = "no baseline (run with --update)"
        elif higher_is_better(name) and value < base * (1 - TOLERANCE):
            found[name] = f"{value:.3f} against {base:.3f} (lower by {1 - value / base:.0%})"
        elif not higher_is_better(name) and value > base * (1 + TOLERANCE):
            found[name] = f"{value:.3f} against {base:.3f} (higher by {value / base - 1:.0%})"
    return found


def better(name: str, a: float, b: float) -> float:
    return max(a, b) if higher_is_better(name) else min(a, b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="write the baselines")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="some benchmarks only")
    args = parser.parse_args()
    baselines: dict[str, float] = json.loads(BASELINES.read_text()) if BASELINES.exists() else {}
    results: dict[str, float] = {}
    for bench in args.only or BENCHMARKS:
        ratios = run(bench)
        if not args.update and regressions(ratios, baselines):
            print(f"(a ratio of {bench} is over the tolerance: running it again)")
            again = run(bench)
            ratios = {k: better(k, v, again.get(k, v)) for k, v in ratios.items()}
        results.update(ratios)
    if args.update:
        baselines.update({k: round(v, 4) for k, v in results.items()})
        BASELINES.write_text(json.dumps(dict(sorted(baselines.items())), indent=2) + "\n")
        print(f"\nwrote {len(results)} baselines to {BASELINES}")
        return 0
    print(f"\n{'ratio':<58}{'baseline':>10}{'now':>10}")
    for name, value in results.items():
        base = baselines.get(name)
        print(f"{name:<58}{'-' if base is None else f'{base:.3f}':>10}{value:>10.3f}")
    bad = regressions(results, baselines)
    for name, why in bad.items():
        print(f"REGRESSION {name}: {why}")
    if not bad:
        print(f"no ratio more than {TOLERANCE:.0%} worse than its baseline")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
