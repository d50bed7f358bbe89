"""The learned router: its quality on RouteLLM's tables over many splits, and its speed.

Quality (``--routellm DIR``, a RouteLLM checkout or its ``evals`` folder): for MMLU, GSM8K
and MT-Bench, :func:`routedllm.learning.evaluate.split_figures` over ``--splits`` random
half splits gives the learned router (prompts and routedllm's inferred tags only), the tag
router grouped by the benchmark's labels (MMLU subject, MT-Bench category) and by
routedllm's own tags, the oracle and random: APGR, CPT(50%), CPT(80%), the strong share at
95% of strong quality, and the operating point for 95% chosen on each training half.

Speed (always): ``Router.decide`` p50/p99 in microseconds on the ~2,000-token prompts of
``decide_speed.py``, with and without a learned router of 20,000 terms per model over
three catalog models, interleaved in one run. ``--against FILE`` (another version's
``routedllm/learning/model.py``) times the same router built by that version's class
alongside, after checking both predict the same scores on every case, and also times the
prediction alone (``predict_parts`` on each case's terms and structure); ``--against DIR``
(a folder holding another version's ``routedllm`` package, e.g. ``git archive main src``
unpacked) imports that whole version beside this one (its tag inference, features and
model) and checks it makes the same decisions. ``--fresh``: a new prompt text each call,
so no per-text cache (``read_ask``'s, ``ask_features``') holds it.

Run: ``python benchmarks/learned_router.py [--routellm ../shared/external/routellm]
[--splits 20] [--json-out FILE] [--runs 5] [--n 5000] [--against FILE|DIR] [--fresh]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import itertools
import json
import os
import random
import statistics
import sys
import time
from typing import Any

from decide_speed import cases, sample  # same prompts and timing as decide_speed

from routedllm import Catalog, Policy, Request
from routedllm.core.decision import Router
from routedllm.learning import LearnedRouter
from routedllm.learning.features import STRUCTURE, ask_text, structure, terms

BENCHMARKS = ("mmlu", "gsm8k", "mt-bench")
STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def synthetic_router(models: list[str], terms: int = 20_000, seed: int = 0) -> LearnedRouter:
    """A router the size of a trained one (random weights): speed depends on size only."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(terms // 2)]
    vocab: list[Any] = words + [(rng.choice(words), rng.choice(words)) for _ in words]
    vocab += "our billing service must support refunds and the def return self".split()
    return LearnedRouter(
        models=tuple(models),
        term_weights=tuple({t: rng.gauss(0, 0.3) for t in vocab} for _ in models),
        structure_weights=tuple(tuple(rng.gauss(0, 0.1) for _ in STRUCTURE) for _ in models),
        mean=tuple(0.0 for _ in STRUCTURE),
        scale=tuple(1.0 for _ in STRUCTURE),
    )


def other_package(src: str) -> dict[str, Any]:
    """Another version's whole ``routedllm`` package (``src`` holds its folder), imported
    beside this one: its Catalog, Policy, Router and LearnedRouter."""
    if not os.path.isfile(os.path.join(src, "routedllm", "__init__.py")):
        raise SystemExit(f"--against {src}: no routedllm package in it")
    mine = {k: m for k, m in sys.modules.items() if k.partition(".")[0] == "routedllm"}
    for k in mine:
        del sys.modules[k]
    sys.path.insert(0, src)
    try:
        pkg = importlib.import_module("routedllm")
        decision = importlib.import_module("routedllm.core.decision")
        learning = importlib.import_module("routedllm.learning")
        return {
            "Catalog": pkg.Catalog,
            "Policy": pkg.Policy,
            "Request": pkg.Request,
            "Router": decision.Router,
            "LearnedRouter": learning.LearnedRouter,
            "file": pkg.__file__,
        }
    finally:
        sys.path.remove(src)
        for k in [k for k in sys.modules if k.partition(".")[0] == "routedllm"]:
            del sys.modules[k]
        sys.modules.update(mine)


def other_version(router: LearnedRouter, model_py: str) -> Any:
    """The same router built by another version's ``LearnedRouter`` (its model.py)."""
    spec = importlib.util.spec_from_file_location("_routedllm_model_against", model_py)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--against {model_py}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cls = module.LearnedRouter
    return cls(**{f.name: getattr(router, f.name) for f in dataclasses.fields(cls)})


def speed(runs: int, n: int, against: str | None = None, fresh: bool = False) -> None:
    catalog, policy = Catalog.default(), Policy()
    models = [card.id for card in catalog][:3]
    plain = Router(catalog, policy)
    scorer = synthetic_router(models)
    kinds: dict[str, Any] = {"catalog": plain, "learned": Router(catalog, policy, scorer)}
    parts: dict[str, Any] = {"learned": scorer}
    builds: dict[str, Any] = {}  # the Request class of each kind: this version's by default
    if against and os.path.isdir(against):  # a whole other version: tags, features, model
        pkg = other_package(against)
        other = pkg["LearnedRouter"](
            **{f.name: getattr(scorer, f.name) for f in dataclasses.fields(scorer)}
        )
        other_catalog, other_policy = pkg["Catalog"].default(), pkg["Policy"]()
        kinds["against"] = pkg["Router"](other_catalog, other_policy, other)
        parts["against"] = other
        plain_other = pkg["Router"](other_catalog, other_policy)
        builds["against"] = pkg["Request"]
        for name, (messages, tags) in cases().items():
            for a, b in ((plain, plain_other), (kinds["learned"], kinds["against"])):
                mine = a.decide(Request(messages=messages, tags=tags))
                theirs = b.decide(pkg["Request"](messages=messages, tags=tags))
                if mine.model_dump() != theirs.model_dump():
                    raise SystemExit(f"--against {against}: another decision on {name!r}")
        print(f"against: {pkg['file']} (the same decisions on every case)")
    elif against:
        other = other_version(scorer, against)
        kinds["against"] = Router(catalog, policy, other)
        parts["against"] = other
    if against:
        for name, (messages, tags) in cases().items():
            given = tuple(tags or ("general",))
            if scorer.predict(messages, given) != other.predict(messages, given):
                raise SystemExit(f"--against {against}: other predictions on {name!r}")
        print(f"against: {against} (the same predictions on every case, to the last bit)")
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    alone: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for run in range(runs):
        order = list(kinds.items())
        if run % 2:  # the two learned versions take turns going first
            order = [order[0], *reversed(order[1:])]
        for name, (messages, tags) in cases().items():
            for kind, router in order:
                results.setdefault((name, kind), []).append(
                    sample(_call(router, builds.get(kind, Request), messages, tags, fresh), n)
                )
            if against:
                text = ask_text(messages)
                found, dense = terms(text), structure(text, tags or (), 2000, len(messages))
                for kind, model in sorted(parts.items(), reverse=bool(run % 2)):
                    alone.setdefault((name, kind), []).append(
                        sample(functools.partial(model.predict_parts, found, dense), n)
                    )
    print(
        f"Router.decide incl. the Request, catalog scores vs a learned router over "
        f"{', '.join(models)}; {runs} runs x {n:,} calls; mean ± half-range of each percentile"
    )
    print(f"{'case':<24}{'scores':>9}{'p50 us':>16}{'p99 us':>16}{'best p99':>10}")
    for (name, kind), values in results.items():
        p50 = [v[0] for v in values]
        p99 = [v[1] for v in values]
        print(
            f"{name:<24}{kind:>9}{_mr(p50):>16}{_mr(p99):>16}{min(p99):>10.1f}",
        )
    if against:
        print(
            "\nLearnedRouter.predict_parts alone (the case's terms and structure), p50 us; "
            "learned / against p50 ratios of each run, of it and of Router.decide"
        )
        print(
            f"{'case':<24}{'terms':>6}{'learned':>16}{'against':>16}{'ratio':>15}"
            f"{'decide ratio':>15}"
        )
        for name, (messages, _) in cases().items():
            mine = [v[0] for v in alone[(name, "learned")]]
            theirs = [v[0] for v in alone[(name, "against")]]
            ratio = [a / b for a, b in zip(mine, theirs, strict=True)]
            decide = [
                a[0] / b[0]
                for a, b in zip(results[(name, "learned")], results[(name, "against")], strict=True)
            ]
            count = len(terms(ask_text(messages)))
            print(
                f"{name:<24}{count:>6}{_mr(mine):>16}{_mr(theirs):>16}{_mr(ratio, 2):>15}"
                f"{_mr(decide, 3):>15}"
            )


def _call(router: Any, build: Any, messages: Any, tags: Any, fresh: bool = False) -> Any:
    """One call as an adapter makes it (decide_speed's ``routed``), with the Request class
    of the router's version; ``fresh``: each call's prompt a new text (a number that never
    repeats put first, built in the call as a request's text is), so no per-text cache
    holds it."""
    if not fresh:
        return lambda: router.decide(build(messages=messages, tags=tags))
    numbers = itertools.count()
    return lambda: router.decide(build(messages=_numbered(messages, next(numbers)), tags=tags))


def _numbered(messages: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The messages with ``k`` put before the first text of the last one."""
    *before, last = messages
    content = last["content"]
    if isinstance(content, str):
        return [*before, {**last, "content": f"{k} {content}"}]
    first = next(i for i, p in enumerate(content) if p.get("type") == "text")
    part = {**content[first], "text": f"{k} {content[first]['text']}"}
    return [*before, {**last, "content": [*content[:first], part, *content[first + 1 :]]}]


def _mr(values: list[float], digits: int = 1) -> str:
    spread = (max(values) - min(values)) / 2
    return f"{statistics.fmean(values):7.{digits}f} ±{spread:5.{digits}f}"


def quality(root: str, splits: int) -> dict[str, Any]:
    from routedllm.evaluation import dataset, published
    from routedllm.learning.evaluate import split_figures

    out: dict[str, Any] = {}
    for bench in BENCHMARKS:
        # Prompts only: the rows' tags (MT-Bench's come from its category labels) are
        # dropped, so routedllm infers them from the prompt as in production.
        published_rows = published.routellm_rows(root, bench)
        rows = dataset.validated(({**r, "tags": None} for r in published_rows), bench)
        data = dataset.EvalSet.from_rows(rows)
        start = time.perf_counter()
        fig = split_figures(rows, data, STRONG, WEAK, splits=splits)
        fig["seconds"] = round(time.perf_counter() - start, 1)
        out[bench] = fig
        print(f"{bench}: {fig['seconds']} s", file=sys.stderr)
    return out


def show(results: dict[str, Any]) -> None:
    def ms(s: dict[str, Any], pct: bool = False) -> str:
        if s["mean"] is None:
            return "-"
        return f"{s['mean']:.1%} ± {s['sd']:.1%}" if pct else f"{s['mean']:.3f} ± {s['sd']:.3f}"

    print(
        f"{'data':<10}{'router':<22}{'APGR':>16}{'CPT(50%)':>17}{'strong @95%':>17}"
        f"{'op. strong':>17}{'op. kept':>17}{'meets 95%':>11}"
    )
    for bench in BENCHMARKS:
        fig = results[bench]
        lines = [
            ("random", fig["random"]),
            ("tag router (labels)", fig["tag_router"]),
            ("tag router (tags)", fig["tag_router_tags"]),
            ("learned", fig["learned"]),
            ("oracle", fig["oracle"]),
        ]
        for name, e in lines:
            op = e.get("operating_point")
            print(
                f"{bench:<10}{name:<22}{ms(e['apgr']):>16}{ms(e['cpt50'], True):>17}"
                f"{ms(e['strong_share_at_95'], True):>17}"
                + (
                    f"{ms(op['strong_share'], True):>17}{ms(op['quality_retained'], True):>17}"
                    f"{op['splits_meeting']:>7}/{op['splits']}"
                    if op
                    else ""
                )
            )
        chosen = fig["learned"].get("l2_chosen")
        if chosen:
            picks = ", ".join(
                f"{k} x{v}" for k, v in sorted(chosen.items(), key=lambda kv: float(kv[0]))
            )
            print(f"{bench:<10}learned: penalty chosen per split (l2 x splits): {picks}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routellm", metavar="DIR", help="RouteLLM evals (quality figures)")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--json-out", metavar="FILE")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument(
        "--fresh", action="store_true", help="another prompt each call (no per-text cache hit)"
    )
    parser.add_argument(
        "--against", metavar="FILE", help="another version's learning/model.py, timed alongside"
    )
    args = parser.parse_args()
    if not args.no_speed:
        speed(args.runs, args.n, args.against, args.fresh)
    if args.routellm:
        results = quality(args.routellm, args.splits)
        print()
        show(results)
        if args.json_out:
            with open(args.json_out, "w", encoding="utf-8") as handle:
                json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
