"""Time to load a big catalog override, written as YAML and as JSON, side by side.

    PYTHONPATH=src python benchmarks/catalog_load.py [--models 100000] [--rounds 3]

Run it with ``PYTHONPATH`` naming another checkout's ``src`` to time that version.

Writes an override adding ``--models`` models (ten fields each, as a user's generated price
list would) in both formats, then loads each with ``Catalog.from_file`` over the packaged
catalog, interleaved, ``--rounds`` times, and prints the mean and spread (min-max) per
format, and which YAML parser was used (libyaml's C parser when PyYAML has it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from routedllm.core.catalog import Catalog


def models(n: int) -> dict[str, object]:
    return {
        "models": [
            {
                "id": f"bench-model-{i}",
                "name": f"Bench model {i}",
                "origin": "US",
                "input_usd_per_mtok": 0.5 + i % 7,
                "output_usd_per_mtok": 1.5 + i % 11,
                "context_window": 128_000,
                "capabilities": {"tools": True, "image_input": False},
                "scores": {"mmlu": 70.0 + i % 20},
                "as_of": "2026-11",
            }
            for i in range(n)
        ]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = models(args.models)
    base = Catalog.default()
    times: dict[str, list[float]] = {"yaml": [], "json": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"yaml": Path(tmp) / "big.yaml", "json": Path(tmp) / "big.json"}
        paths["yaml"].write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
        paths["json"].write_text(json.dumps(data), "utf-8")
        for _ in range(args.rounds):
            for fmt, path in paths.items():
                started = time.perf_counter()
                catalog = Catalog.from_file(path, base=base)
                times[fmt].append(time.perf_counter() - started)
                assert len(catalog) == len(base) + args.models
        sizes = {fmt: path.stat().st_size / 1e6 for fmt, path in paths.items()}
    try:
        from routedllm.core.files import StrictLoader

        parser_name = StrictLoader.__mro__[1].__name__
    except ImportError:  # a version before the strict loader: yaml.safe_load
        parser_name = "SafeLoader (pure Python)"
    print(f"{args.models} models over the packaged catalog; YAML parser: {parser_name}")
    print(f"{'format':8}{'MB':>6}{'mean s':>9}  min-max")
    for fmt, values in times.items():
        print(
            f"{fmt:8}{sizes[fmt]:6.1f}{statistics.fmean(values):9.2f}  "
            f"{min(values):.2f}-{max(values):.2f}"
        )


if __name__ == "__main__":
    main()
