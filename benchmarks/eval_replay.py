"""Offline replay speed: 1,000,000 rows through 5 policies, and the outcome-table pipeline.

Three figures, one run (``python benchmarks/eval_replay.py [ROWS]``):

1. catalog replay: ROWS synthetic rows (a mix of tag sets, log-normal prompt sizes) through
   the value, quality, cheapest, value:gap=8 and random policies, plus always-X for every
   priced model (the baselines ``evaluate`` always adds);
2. outcome pipeline: ROWS two-model outcome rows in 57 groups through ``suite.run``
   (seeded split, calibration, the tag router's threshold sweep, oracle, random);
3. reading rows: JSONL rows per second into an ``EvalSet`` (validation, tags, sizes),
   measured on 100,000 rows, since reading, not replay, bounds a million-row file.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from routedllm import Catalog
from routedllm.evaluation.dataset import EvalSet
from routedllm.evaluation.policies import parse_policies
from routedllm.evaluation.replay import evaluate, replay
from routedllm.evaluation.space import ModelSpace
from routedllm.evaluation.suite import Settings, run
from routedllm.workload import read_rows

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


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
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

    sample = 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        rng = np.random.default_rng(2)
        with path.open("w") as handle:
            for i in range(sample):
                words = " ".join(["lorem"] * int(rng.integers(20, 400)))
                handle.write(
                    json.dumps(
                        {
                            "id": f"r{i}",
                            "prompt": words,
                            "tags": ["general"],
                            "outcomes": {
                                "a": {"score": 1.0, "cost_usd": 0.001},
                                "b": {"score": 0.0},
                            },
                        }
                    )
                    + "\n"
                )
        _, read_s = timed(lambda: EvalSet.from_rows(read_rows(path)))
    print(
        f"reading rows: {sample / read_s:,.0f} rows/s from JSONL "
        f"(~{n / (sample / read_s):.0f} s for {n:,} rows)"
    )
    print(f"(synthetic rows built in {build_s:.2f} s, not counted)")


if __name__ == "__main__":
    main()
