"""The ``routedllm eval`` command: offline evaluation of routing policies on a dataset.

Registered by :func:`add_eval_command`. This module imports nothing heavy: numpy and the
evaluation modules load when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from routedllm.core import files
from routedllm.core.catalog import Catalog
from routedllm.core.errors import InvalidRequestError
from routedllm.text import table as _table
from routedllm.text import usd as _usd

EPILOG = """\
policies (--policy, repeatable): value, quality, cheapest (add fields: value:gap=4,max_cost=0.01,
gap.code=0.5 for one tag's gap), sweep[:0,1,2,4] (value preset over quality gaps),
always[:MODEL], random[:seed=N], oracle, learned:ROUTER.json (a trained router, on
outcome rows).
Always-X for every model is always evaluated: it gives the baselines.
With outcome rows a tag router is calibrated on a training split and every figure is
measured on the held-out rows, as mean +- sd over --splits random splits (default 20).
--learned (with --strong/--weak) also trains a learned router from the prompts
(docs/learned-router.md) and reports it, the tag router, oracle and random on the same splits.

--online sends every row through RoutedChatModel once per --policy (presets with fields, or
always:MODEL; default value), grades each answer with the row's grader and reports measured
quality, cost and latency per model and tag; --shadow MODEL also grades each answer's
agreement with MODEL's and --shadow-rows FILE keeps them as training rows for
`routedllm train --shadow FILE`. --replay-ledger LEDGER.jsonl --policy P prices
a ledger's calls again under P, without calls.
"""


def add_eval_command(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    """Register ``eval`` on the ``routedllm`` subcommands."""
    p = subparsers.add_parser(
        "eval",
        parents=[common_parent],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="measure routing policies on cost and quality, offline (no calls)",
    )
    p.add_argument(
        "dataset",
        nargs="?",
        metavar="DATASET",
        help="JSONL rows, or a RouteLLM evals folder with --benchmark "
        "(default: the bundled sample workload)",
    )
    p.add_argument(
        "--benchmark",
        choices=("mmlu", "gsm8k", "mt-bench"),
        help="read RouteLLM's published outcome table for this benchmark from DATASET",
    )
    p.add_argument(
        "--keep-contaminated",
        action="store_true",
        help="keep the prompts RouteLLM drops as contaminated",
    )
    p.add_argument("--save-rows", metavar="FILE.jsonl", help="write the rows read as JSONL")
    p.add_argument("--policy", action="append", metavar="SPEC", help="policy to evaluate")
    p.add_argument(
        "--baseline",
        metavar="MODEL",
        help="compare cost and quality with always-MODEL (default: best single model)",
    )
    p.add_argument(
        "--floor",
        type=float,
        metavar="Q",
        help="quality floor in [0, 1] for the cheapest-model baseline "
        "(default: best single model minus the value preset's gap)",
    )
    p.add_argument("--strong", metavar="ID", help="strong model of a two-model outcome table")
    p.add_argument("--weak", metavar="ID", help="weak model of a two-model outcome table")
    p.add_argument(
        "--cost",
        action="append",
        metavar="MODEL=USD",
        type=_cost,
        help="USD per call for a model whose rows give no cost (repeatable); any "
        "consistent unit works for ratios",
    )
    p.add_argument(
        "--group-by",
        default="auto",
        metavar="KEY",
        help="calibration group: auto (a row's category, else its primary tag), "
        "tag, or a field every row has (default auto)",
    )
    p.add_argument("--train-fraction", type=float, default=0.5, metavar="F")
    p.add_argument("--seed", type=int, default=0, help="split and random-policy seed")
    p.add_argument(
        "--prior-rows",
        type=float,
        default=10.0,
        metavar="K",
        help="shrink each group's scores toward the model's mean by K rows",
    )
    p.add_argument(
        "--gap",
        type=float,
        metavar="POINTS",
        help="quality gap of the tag router's operating point (default: the value preset's)",
    )
    p.add_argument(
        "--write-override",
        metavar="FILE.yaml",
        help="write the calibrated scores as a catalog override file",
    )
    p.add_argument(
        "--learned",
        action="store_true",
        help="also train and measure a learned router (needs --strong/--weak): "
        "two_model.learned, mean and sd over --splits splits",
    )
    p.add_argument(
        "--splits",
        type=int,
        default=20,
        metavar="N",
        help="with outcomes: figures as mean +- sd over N random splits, seeds --seed.. (20)",
    )
    p.add_argument(
        "--target",
        type=float,
        default=0.95,
        metavar="F",
        help="--learned operating point: share of the strong model's quality (0.95)",
    )
    p.add_argument("--plot", metavar="FILE.png", help="draw cost against quality")
    p.add_argument("--json", action="store_true")
    online = p.add_argument_group(
        "online (real calls: each --policy runs every row through RoutedChatModel)"
    )
    online.add_argument(
        "--online", action="store_true", help="call the gateway, grade the answers, and cost them"
    )
    online.add_argument(
        "--base-url",
        metavar="URL",
        help="an OpenAI-compatible endpoint (default: the catalog's gateway; "
        "key from its key variable, GLOBAL_API_KEY)",
    )
    online.add_argument(
        "--judge", metavar="MODEL", help="catalog model the judge grader asks (same endpoint)"
    )
    online.add_argument(
        "--concurrency", type=int, default=4, metavar="N", help="rows in flight at once (default 4)"
    )
    online.add_argument("--limit", type=int, metavar="N", help="only the first N rows")
    online.add_argument(
        "--ledger", metavar="FILE.jsonl", help="append every attempt's record to this ledger"
    )
    online.add_argument(
        "--shadow",
        metavar="MODEL",
        help="also mirror every answered row to MODEL and grade the answer's agreement with "
        "it (exact match; a judge with --judge)",
    )
    online.add_argument(
        "--shadow-rows",
        metavar="FILE.jsonl",
        help="append each graded mirror here as a training row (routedllm train --shadow)",
    )
    online.add_argument(
        "--shadow-budget",
        type=float,
        default=1.0,
        metavar="USD",
        help="cap on what the mirrors may cost (default 1.0)",
    )
    online.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds per HTTP attempt (default 60)",
    )
    replay = p.add_argument_group("ledger replay (no calls)")
    replay.add_argument(
        "--replay-ledger",
        metavar="LEDGER.jsonl",
        help="what the ledger's calls would have cost under each --policy",
    )
    p.set_defaults(run=cmd_eval)


def _cost(text: str) -> tuple[str, float]:
    model, eq, value = text.rpartition("=")
    try:
        usd = float(value)
    except ValueError:
        usd = -1.0
    if not eq or not model or usd < 0:
        raise argparse.ArgumentTypeError(f"expected MODEL=USD with USD >= 0, got {text!r}")
    return model, usd


def cmd_eval(args: argparse.Namespace) -> int:
    """Run the evaluation and print a table or JSON."""
    if args.online and args.replay_ledger:
        raise InvalidRequestError("give --online or --replay-ledger, not both")
    if args.replay_ledger:
        return cmd_replay_ledger(args)
    if args.online:
        return cmd_online(args)
    try:
        from routedllm.evaluation import dataset, published, suite
    except ImportError as exc:  # numpy is an optional dependency
        raise InvalidRequestError(
            f"routedllm eval needs the eval extra ({exc.name} is missing): "
            "pip install 'routedllm[eval]'"
        ) from None
    catalog = Catalog.from_file(args.catalog) if args.catalog else Catalog.from_env()
    catalog.check_freshness(args.max_price_age_days)
    for out, what in ((args.save_rows, "rows"), (args.write_override, "a catalog override"),
                      (args.plot, "a plot")):  # fmt: skip
        if out:  # before a long evaluation, not after it
            files.check_writable(out, what)
    track = _progress(enabled=not args.json and sys.stderr.isatty())
    # the learned router trains on the rows, learned:PATH predicts from their prompts
    prompts = args.learned or any(spec.startswith("learned:") for spec in args.policy or ())
    if args.benchmark:
        if not args.dataset:
            raise InvalidRequestError("--benchmark reads RouteLLM's tables: give their folder")
        rows = dataset.validated(
            published.routellm_rows(
                args.dataset, args.benchmark, drop_contaminated=not args.keep_contaminated
            ),
            f"{args.dataset} ({args.benchmark})",
        )
    elif args.dataset and not args.save_rows and not prompts:
        # read as a stream: no row kept in memory
        rows = None
        data = dataset.EvalSet.from_jsonl(
            args.dataset, group_by=args.group_by, progress=lambda lines: track(lines, None, "rows")
        )
    elif args.dataset:
        from routedllm.workload import read_rows

        rows = list(track(read_rows(args.dataset), None, "reading"))
        if not rows:
            raise InvalidRequestError(f"{args.dataset}: no rows (the file is empty or blank)")
    else:
        rows = dataset.load_rows(None)
    if rows is not None:
        if args.save_rows:
            with files.writing(args.save_rows, "rows"):
                dataset.write_rows(rows, args.save_rows)
        data = dataset.EvalSet.from_rows(track(rows, len(rows), "rows"), group_by=args.group_by)
    settings = suite.Settings(
        policies=args.policy,
        baseline=args.baseline,
        floor=args.floor,
        strong=args.strong,
        weak=args.weak,
        per_call=dict(args.cost or ()),
        train_fraction=args.train_fraction,
        seed=args.seed,
        prior_rows=args.prior_rows,
        splits=args.splits,
        rows=rows,
        **({"gap": args.gap} if args.gap is not None else {}),
    )
    report = suite.run(data, catalog, settings, progress=track)
    if args.learned:
        assert rows is not None  # --learned reads the rows above, never as a stream
        _add_learned(report, rows, data, args)
    source = args.dataset or "the sample workload"
    if args.write_override:
        if report.calibration is None:
            raise InvalidRequestError("--write-override needs outcome rows to calibrate on")
        from routedllm.evaluation.calibrate import write_override

        with files.writing(args.write_override, "a catalog override"):
            write_override(report.calibration, catalog, args.write_override, str(source))
    if args.plot:
        from routedllm.evaluation.plot import plot

        name = Path(str(source)).name + (f" ({args.benchmark})" if args.benchmark else "")
        with files.writing(args.plot, "a plot"):
            plot(report, args.plot, title=f"{name}: cost against quality")
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False, default=_jsonable))
    else:
        print(render(report, str(source)))
    return 0


def _add_learned(report: Any, rows: list[Any], data: Any, args: argparse.Namespace) -> None:
    """Put the learned router's figures over many splits into ``two_model`` (see
    :mod:`routedllm.learning.evaluate`): ``learned`` beside ``tag_router``, and
    ``over_splits`` with the tag router, oracle and random on the same splits."""
    from routedllm.learning.evaluate import split_figures

    if report.two_model is None:
        raise InvalidRequestError("--learned compares two models: give --strong and --weak")
    figures = split_figures(
        rows,
        data,
        args.strong,
        args.weak,
        splits=args.splits,
        seed=args.seed,
        train_fraction=args.train_fraction,
        target=args.target,
        prior_rows=args.prior_rows,
    )
    report.two_model["learned"] = figures["learned"]
    report.two_model["over_splits"] = figures


def cmd_online(args: argparse.Namespace) -> int:
    """Run the rows through RoutedChatModel once per policy; grade and cost every answer."""
    from routedllm.adapters.langchain.chat_model import RoutedChatModel
    from routedllm.evaluation import online
    from routedllm.records.schema import DEFAULT_BASELINE
    from routedllm.workload import read_rows, sample_rows

    if args.concurrency < 1:
        raise InvalidRequestError(f"--concurrency must be at least 1, got {args.concurrency}")
    if args.limit is not None and args.limit < 1:
        raise InvalidRequestError(f"--limit must be at least 1, got {args.limit}")
    catalog = Catalog.from_file(args.catalog) if args.catalog else Catalog.from_env()
    catalog.check_freshness(args.max_price_age_days)
    rows = list(read_rows(args.dataset)) if args.dataset else sample_rows()
    rows = rows[: args.limit] if args.limit is not None else rows
    policies = [online.online_policy(spec, catalog) for spec in args.policy or ["value"]]
    connection = {"base_url": args.base_url, "timeout": args.timeout, "catalog": catalog}
    judge = RoutedChatModel(model=catalog.get(args.judge).id, **connection) if args.judge else None
    online.check_graders(rows, judge)
    models = [RoutedChatModel(**connection, **spec.model_kwargs()) for spec in policies]
    if models and models[0].openai_api_key is None:
        raise InvalidRequestError(
            f"no API key for {models[0].openai_api_base}: set {catalog.info.gateway.api_key_env}"
        )
    if args.shadow_rows and not args.shadow:
        raise InvalidRequestError("--shadow-rows needs --shadow MODEL (the baseline to agree with)")
    shadow = _shadow(args, catalog, connection, judge) if args.shadow else None
    callbacks = [] if shadow is None else [shadow]
    reports = []
    for spec, model in zip(policies, models, strict=True):
        bar = _bar(len(rows), spec.name, enabled=not args.json and sys.stderr.isatty())
        reports.append(
            online.run_online(
                rows,
                model,
                catalog=catalog,
                label=spec.name,
                judge=judge,
                concurrency=args.concurrency,
                ledger_path=args.ledger,
                baseline_model=args.baseline or DEFAULT_BASELINE,
                callbacks=callbacks,
                on_row=None if bar is None else _advance(bar),
            )
        )
        if bar is not None:
            bar.close()
    summary = None
    if shadow is not None:
        shadow.close()
        summary = shadow.summary()
    source = args.dataset or "the sample workload"
    if args.json:
        out: dict[str, Any] = {"source": str(source), "policies": [r.to_json() for r in reports]}
        if summary is not None:
            out["shadow"] = {**summary, "rows_path": args.shadow_rows}
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        text = online.render(reports, str(source))
        if summary is not None:
            text += "\n" + _shadow_line(summary, args.shadow_rows)
        print(text)
    return 0


def _shadow(
    args: argparse.Namespace, catalog: Catalog, connection: dict[str, Any], judge: Any
) -> Any:
    """The ShadowHandler of ``--shadow``: every answered row mirrored, within the budget."""
    from routedllm.adapters.langchain.chat_model import RoutedChatModel
    from routedllm.evaluation.graders import LLMJudge
    from routedllm.evaluation.shadow import ShadowHandler
    from routedllm.records.ledger import JsonlLedger

    model = catalog.get(args.shadow).id
    return ShadowHandler(
        RoutedChatModel(model=model, **connection),
        baseline_model=model,
        budget_usd=args.shadow_budget,
        share=1.0,
        catalog=catalog,
        agreement=None if judge is None else LLMJudge(judge),
        sinks=[JsonlLedger(args.ledger)] if args.ledger else [],
        rows_path=args.shadow_rows,
        seed=args.seed,
    )


def _shadow_line(summary: dict[str, Any], rows_path: str | None) -> str:
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(summary["skipped"].items())) or "none"
    agreement = "-" if summary["agreement"] is None else f"{summary['agreement']:.3f}"
    return (
        f"shadow {summary['baseline_model']}: {summary['shadowed']} mirrored, "
        f"{summary['graded']} graded, agreement {agreement}, {summary['errors']} errors, "
        f"skipped: {skipped}; spent {_usd(summary['spent_usd'])} of "
        f"{_usd(summary['budget_usd'])}"
        + (f"; training rows appended to {rows_path}" if rows_path else "")
    )


def cmd_replay_ledger(args: argparse.Namespace) -> int:
    """Price a ledger's calls again under each --policy (no calls)."""
    from routedllm.core.decision import Policy
    from routedllm.evaluation import ledger_replay
    from routedllm.evaluation.online import online_policy
    from routedllm.records.ledger import LedgerError, read_ledger

    if args.dataset:
        raise InvalidRequestError("--replay-ledger reads a ledger: give no DATASET")
    if not args.policy:
        raise InvalidRequestError("--replay-ledger needs --policy (e.g. --policy quality)")
    catalog = Catalog.from_file(args.catalog) if args.catalog else Catalog.from_env()
    catalog.check_freshness(args.max_price_age_days)
    policies = {}
    for spec in args.policy:
        parsed = online_policy(spec, catalog)
        if parsed.policy is not None:
            policies[spec] = parsed.policy
        elif parsed.pinned is not None:  # always:MODEL: that model wherever it can
            policies[spec] = Policy(
                preset="quality",
                allowed_models=frozenset({parsed.pinned}),
                allow_unscored=True,
                allow_unpriced=True,
            )
    try:
        records = read_ledger(args.replay_ledger)
    except OSError as exc:
        raise LedgerError(f"{args.replay_ledger}: cannot read ledger: {exc.strerror}") from None
    replays = [
        ledger_replay.replay_ledger(records, catalog, policy, spec)
        for spec, policy in policies.items()
    ]
    if args.json:
        print(
            json.dumps(
                {"ledger": args.replay_ledger, "policies": [r.to_json() for r in replays]}, indent=2
            )
        )
    else:
        print(ledger_replay.render(replays, args.replay_ledger))
    return 0


def _bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr, or None when disabled or tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, unit="row")


def _advance(bar: Any) -> Callable[[object], None]:
    """An ``on_row`` callback that moves ``bar`` on by one row."""

    def on_row(_row: object) -> None:
        bar.update(1)

    return on_row


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _progress(enabled: bool) -> Any:
    """A tqdm wrapper to stderr when enabled and tqdm is installed; else pass-through."""

    def passthrough(items: Iterable[Any], total: int | None, desc: str) -> Iterable[Any]:
        return items

    if not enabled:
        return passthrough
    try:
        from tqdm import tqdm
    except ImportError:
        return passthrough

    def bar(items: Iterable[Any], total: int | None, desc: str) -> Iterable[Any]:
        return tqdm(items, total=total, desc=desc, file=sys.stderr, leave=False, unit="")

    return bar


# -- text output ----------------------------------------------------------------------------
def render(report: Any, source: str) -> str:
    """The report as tables: policies, per tag, baselines, frontier, two-model figures."""
    ev = report.evaluation
    spread = report.over_splits
    out = [
        f"{source}: {report.dataset_rows} rows; quality {ev.mode}"
        + (
            " (catalog scores on each row's benchmark)"
            if ev.mode == "expected"
            else f" (outcome scores; {report.evaluated_rows} held-out rows)"
        )
        + (
            f"; {report.left_out_rows} rows left out (no score for both --strong and --weak)"
            if report.left_out_rows
            else ""
        )
        + f"; baseline {ev.baseline}",
        "",
    ]
    if spread is not None:
        out[-1:] = [
            f"mean +- sd over {spread['splits']} random splits (seeds {spread['seeds'][0]}-"
            f"{spread['seeds'][1]}); row counts and top model: the first split",
            "",
        ]
    figs = _Figures(spread)
    shown = [r for r in ev.results if r.kind != "calibrated sweep"]
    header = (
        "policy",
        "no model",
        "no score",
        "no cost",
        "cost USD",
        "cost vs base",
        "quality",
        "retained",
        "random@cost",
        "top model",
    )
    table = [
        (
            r.name,
            _n(r.no_eligible),
            _n(r.unmeasured),
            _n(r.uncosted),
            figs.policy(r, "cost_usd", _usd),
            figs.policy(r, "cost_ratio", _pct),
            figs.policy(r, "quality", _q),
            figs.policy(r, "quality_retained", _pct),
            figs.policy(r, "random_same_cost", _q),
            _top(r.model_share),
        )
        for r in shown
    ]
    out += [_table(header, table), ""]
    hidden = len(ev.results) - len(shown)
    if hidden:
        out += [f"({hidden} calibrated sweep points not shown; see --json)", ""]
    tags = list(dict.fromkeys(t for r in shown for t in r.per_tag))
    keep = {ev.baseline, ev.best_single, ev.cheapest_meeting_floor}
    for tag in tags:
        rows = [
            (
                r.name,
                _n(r.per_tag[tag]["no_eligible"]),
                figs.tag(r, tag, "cost_usd", _usd),
                figs.tag(r, tag, "quality", _q),
            )
            for r in shown
            if tag in r.per_tag and (r.kind not in ("always", "sweep") or r.name in keep)
        ]
        count = next(r.per_tag[tag]["rows"] for r in shown if tag in r.per_tag)
        out += [
            f"tag {tag} ({count} rows)",
            _table(("policy", "no model", "cost USD", "quality"), rows),
            "",
        ]
    out.append(_baselines(ev, figs))
    if report.two_model:
        out += ["", _two_model(report.two_model, figs)]
    for r in shown:
        for tags_, why in r.why_none.items():
            why = why if len(why) <= 240 else why[:240] + "... (see --json)"
            out.append(
                f"{r.name}: no eligible model for [{tags_}] ({r.no_eligible} rows in all): {why}"
            )
    out += [f"note: {n}" for n in report.notes]
    return "\n".join(out).rstrip()


class _Figures:
    """A figure as text: mean +- sd over the splits when the report has them, else as is."""

    def __init__(self, spread: dict[str, Any] | None) -> None:
        self.spread = spread

    def pm(self, stats: dict[str, Any], fmt: Callable[[Any], str]) -> str:
        if stats["mean"] is None:
            return "-"
        known = ""
        if stats["missing"] and self.spread:  # a figure some splits lack says so
            known = f" ({self.spread['splits'] - stats['missing']}/{self.spread['splits']} splits)"
        if stats["sd"] is None:
            return fmt(stats["mean"]) + known
        return f"{fmt(stats['mean'])} +- {fmt(stats['sd'])}{known}"

    def policy(self, r: Any, key: str, fmt: Callable[[Any], str]) -> str:
        stats = (self.spread or {}).get("policies", {}).get(r.name, {}).get(key)
        return fmt(getattr(r, key)) if stats is None else self.pm(stats, fmt)

    def tag(self, r: Any, tag: str, key: str, fmt: Callable[[Any], str]) -> str:
        stats = (self.spread or {}).get("per_tag", {}).get(r.name, {}).get(tag, {}).get(key)
        return fmt(r.per_tag[tag][key]) if stats is None else self.pm(stats, fmt)

    def two(self, key: str, fig: str, value: Any, fmt: Callable[[Any], str]) -> str:
        stats = (self.spread or {}).get("two_model", {}).get(key, {}).get(fig)
        return fmt(value) if stats is None else self.pm(stats, fmt)

    def frontier(self, key: str, value: Any, kind: str | None = None) -> str:
        f = (self.spread or {}).get("frontier", {})
        stats = f.get(key) if kind is None else f.get("aiq_by_kind", {}).get(kind)
        return f"{value:.4f}" if stats is None else self.pm(stats, lambda v: f"{v:.4f}")


def _baselines(ev: Any, figs: _Figures) -> str:
    lines = []
    if ev.best_single:
        r = ev.get(ev.best_single)
        lines.append(
            f"best single model: {ev.best_single} (quality {figs.policy(r, 'quality', _q)}, "
            f"{figs.policy(r, 'cost_usd', _usd)})"
        )
    if ev.floor is not None:
        lines.append(
            f"cheapest model meeting the floor {ev.floor:.3f}: "
            f"{ev.cheapest_meeting_floor or 'none'}"
        )
    lines.append(
        "random@cost: the best quality a coin-flip mix of single models (or of the "
        "cheapest and quality presets) reaches at the same cost"
    )
    area = ev.frontier.get("area")
    if area is not None:
        kinds = ", ".join(f"{k} {v:.4f}" for k, v in ev.frontier["area_by_kind"].items())
        lines.append(
            f"frontier area (RouterBench AIQ, up to ${ev.frontier['max_cost_usd']:.6f})"
            f": all {figs.frontier('area', area)}" + ("" if figs.spread else f"; by kind: {kinds}")
        )
    aiq = ev.frontier.get("aiq")
    if aiq is not None:
        low, high = aiq["cost_range_usd"]
        kinds = ", ".join(
            f"{k} {figs.frontier('aiq', v, kind=k)}" for k, v in aiq["by_kind"].items()
        )
        lines.append(
            "AIQ over one cost range for every kind (cheapest to dearest complete result"
            + ("" if figs.spread else f", ${low:.6f}-${high:.6f}")
            + f"; mean quality of each frontier, 0 below its cheapest point): all "
            f"{figs.frontier('aiq', aiq['all'])}; by kind: {kinds}"
        )
    return "\n".join(lines)


def _two_model(two: dict[str, Any], figs: _Figures | None = None) -> str:
    header = (
        "",
        "quality",
        "cost USD",
        "strong share",
        "APGR",
        "CPT(50%)",
        "CPT(80%)",
        "strong @95%",
    )
    rows = []
    for key in ("tag_router", "oracle", "random", "strong_only", "weak_only"):
        e = two[key]
        f = figs or _Figures(None)
        rows.append(
            (
                key,
                f.two(key, "quality", e["quality"], _q),
                f.two(key, "cost_usd", e["cost_usd"], _usd),
                f.two(key, "strong_share", e["strong_share"], _pct),
                f.two(key, "apgr", e.get("apgr"), _f),
                f.two(key, "cpt50", e.get("cpt50"), _pct),
                f.two(key, "cpt80", e.get("cpt80"), _pct),
                f.two(key, "strong_share_at_95", e.get("strong_share_at_95"), _pct),
            )
        )
    text = (
        f"two models on {two['rows']} held-out rows: strong {two['strong']}, "
        f"weak {two['weak']}\n" + _table(header, rows)
    )
    if "over_splits" in two:
        text += "\n\n" + _over_splits(two["over_splits"])
    return text


def _over_splits(fig: dict[str, Any]) -> str:
    """The learned router beside the references, mean +- sd over the splits."""

    def ms(stats: dict[str, Any], pct: bool) -> str:
        if stats["mean"] is None:
            return "-"
        if pct:
            return f"{stats['mean']:.1%} +- {stats['sd']:.1%}"
        return f"{stats['mean']:.3f} +- {stats['sd']:.3f}"

    header = ("", "APGR", "CPT(50%)", "CPT(80%)", "strong @95%", "operating point")
    rows = []
    for key in ("random", "tag_router", "tag_router_tags", "learned", "oracle"):
        e = fig[key]
        op = e.get("operating_point")
        rows.append(
            (
                key,
                ms(e["apgr"], False),
                ms(e["cpt50"], True),
                ms(e["cpt80"], True),
                ms(e["strong_share_at_95"], True),
                "-"
                if op is None
                else f"{ms(op['strong_share'], True)} strong, "
                f"{ms(op['quality_retained'], True)} kept, "
                f"{op['splits_meeting']}/{op['splits']} meet {op['target']:.0%}",
            )
        )
    return (
        f"over {fig['splits']} random splits (seeds {fig['seeds'][0]}-{fig['seeds'][1]}, "
        f"{fig['rows']} rows; operating points chosen on each training part)\n"
        + _table(header, rows)
    )


def _top(share: dict[str, float]) -> str:
    if not share:
        return "-"
    model, s = max(share.items(), key=lambda kv: kv[1])
    return f"{model} {s:.0%}"


def _n(value: int) -> str:
    return str(value) if value else "-"


def _q(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _f(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
