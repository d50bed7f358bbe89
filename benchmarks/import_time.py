"""What ``import routedllm`` adds to ``import langchain_openai``, in fresh interpreters.

Each round starts two new interpreters, in alternating order: one imports langchain_openai
alone, the other langchain_openai then routedllm; each times its own imports with
``time.perf_counter`` (interpreter start-up is left out). Bytecode is compiled first into
a temporary cache (``PYTHONPYCACHEPREFIX``), as an installed package has it, so the figure
is importing, not compiling. Prints the added milliseconds (median, mean ± half-range
over rounds), the ratio of the two interpreters' import times, and routedllm's import time
over langchain_openai's in the same interpreter (the steadier ratio: ``make bench-quick``
checks its median).

Run: ``python benchmarks/import_time.py [--rounds 10] [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence

_TIMED = """
import time
t0 = time.perf_counter()
import langchain_openai
t1 = time.perf_counter()
{extra}
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def timed(env: dict[str, str], with_routedllm: bool) -> tuple[float, float]:
    """(seconds importing langchain_openai, seconds importing routedllm after it)."""
    code = _TIMED.format(extra="import routedllm" if with_routedllm else "")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    first, second = out.stdout.split()
    return float(first), float(second)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="5 rounds")
    parser.add_argument("--json", action="store_true", help="print the ratio as JSON too")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 5
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        timed(env, True)  # compile once
        added: list[float] = []
        ratios: list[float] = []
        shares: list[float] = []
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            runs = {both: timed(env, both) for both in order}
            alone, (lco, ours) = runs[False][0], runs[True]
            added.append(ours * 1000)
            ratios.append((lco + ours) / alone)
            shares.append(ours / lco)
    print(
        f"import routedllm after langchain_openai, {args.rounds} rounds of fresh interpreters "
        "(mean ± half-range):"
    )
    for name, values in (
        ("added by routedllm, ms", added),
        ("(langchain_openai + routedllm) / langchain_openai alone", ratios),
        ("routedllm / langchain_openai, same interpreter", shares),
    ):
        print(
            f"  {name}: median {statistics.median(values):.3f}, mean "
            f"{statistics.fmean(values):.3f} ±{(max(values) - min(values)) / 2:.3f}"
        )
    result = {"import routedllm / langchain_openai": statistics.median(shares)}
    if args.json:
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
