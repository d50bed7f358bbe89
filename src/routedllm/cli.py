"""The ``routedllm`` command: the catalog, routing decisions and the sample-workload demo.

Nothing here touches the network. Machine output (``--json``) is stable; errors go to
stderr with a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from routedllm.adapters.litellm.config import add_litellm_config_command
from routedllm.core.catalog import BENCHMARKS, DEFAULT_BASE_URL, Catalog
from routedllm.core.decision import PRESETS, Policy, Request, Router
from routedllm.core.errors import InvalidRequestError, RoutedLLMError
from routedllm.core.pricing import estimate_cost
from routedllm.core.tags import TAG_NAMES
from routedllm.evaluation.cli import add_eval_command
from routedllm.learning.cli import add_train_command
from routedllm.records.report import add_report_command, printable
from routedllm.text import num as _num
from routedllm.text import table as _table
from routedllm.text import usd as _usd
from routedllm.workload import read_rows, sample_rows


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = int(args.run(args) or 0)
        except (RoutedLLMError, ValidationError, ValueError) as exc:
            print(f"routedllm: error: {_shown(_message(exc))}", file=sys.stderr)
            status = 2
        except BrokenPipeError:  # output piped into e.g. `head`
            status = 0
    for warning in caught:
        print(f"routedllm: warning: {_shown(str(warning.message))}", file=sys.stderr)
    return status


# -- commands -------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    rows = [_model_json(card) for card in catalog]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("id", "origin", "in $/M", "out $/M", "context", "mmlu", "humaneval", "ceval", "image")
    table = [
        (
            printable(r["id"]),
            printable(r["origin"] or "-"),
            _num(r["input_usd_per_mtok"]),
            _num(r["output_usd_per_mtok"]),
            _num(r["context_window"]),
            *(_num(r["scores"][b]) for b in BENCHMARKS),
            _num(r["capabilities"]["image_input"]),
        )
        for r in rows
    ]
    print(_table(header, table))
    print(f"\nprices USD per 1M tokens, as of {catalog.info.as_of}; '-' = not published")
    gateway = catalog.info.gateway
    if (gateway.base_url, gateway.api_key_env) != (DEFAULT_BASE_URL, "GLOBAL_API_KEY"):
        print(f"gateway: {printable(gateway.base_url)}, key from ${gateway.api_key_env}")
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    messages = _messages(args)
    scorer = None
    if args.learned:
        from routedllm.learning import LearnedRouter

        scorer = LearnedRouter.load(args.learned)
    decision = Router(catalog, _policy(args), scorer).decide(
        Request(
            messages=messages,
            tags=[t for group in args.tags or () for t in group] or None,
            max_output_tokens=args.max_tokens,
            require=frozenset(args.require or ()),
        ),
    )
    if args.json:
        print(json.dumps(decision.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        print(decision.render())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Route a workload (the bundled sample by default) and compare with a baseline model.

    By default the calls are made, through RoutedChatModel, to a local stand-in of the
    gateway serving constructed answers (see routedllm.demo); ``--estimate`` only decides
    and estimates. Where loopback sockets are not allowed, it warns and estimates.
    """
    catalog = _catalog(args)
    policy = _policy(args)
    baseline = catalog.get(args.baseline)
    rows = list(read_rows(args.workload)) if args.workload else sample_rows()
    if not args.estimate:
        from routedllm import demo

        try:
            run = demo.run_demo(
                catalog, policy, rows, baseline_model=baseline.id, ledger_path=args.ledger
            )
        except demo.StandInUnavailable as exc:
            warnings.warn(
                f"{exc}; showing estimates only (routedllm demo --estimate)", stacklevel=1
            )
        else:
            print(
                json.dumps(demo.to_json(run), indent=2, ensure_ascii=False)
                if args.json
                else demo.render(run)
            )
            return 0
    results: list[dict[str, Any]] = []
    router = Router(catalog, policy)
    for row in rows:
        d = router.decide(
            Request(
                messages=row.chat_messages(),
                tags=row.tags,
                max_output_tokens=row.expected_output_tokens,
            ),
        )
        base = estimate_cost(baseline, d.estimated_input_tokens, d.expected_output_tokens)
        results.append({"id": row.id, "decision": d, "baseline_cost_usd": base})
    if args.json:
        print(json.dumps(_demo_json(results, args.baseline), indent=2, ensure_ascii=False))
        return 0
    header = ("row", "tags", "model", "score", "est. cost", args.baseline, "saved")
    table = []
    for r in results:
        d = r["decision"]
        table.append(
            (
                printable(r["id"]),
                ",".join(d.tags) + ("*" if d.inferred_tags else ""),
                d.model,
                f"{d.benchmark} {_num(d.score)}",
                _usd(d.estimated_cost_usd),
                _usd(r["baseline_cost_usd"]),
                _saved(d.estimated_cost_usd, r["baseline_cost_usd"]),
            )
        )
    print(_table(header, table))
    totals = _demo_json(results, args.baseline)["totals"]
    print(
        f"\n{totals['calls']} calls, policy {policy.preset}: "
        f"routed ${totals['routed_cost_usd']:.6f} "
        f"vs always-{args.baseline} ${totals['baseline_cost_usd']:.6f} "
        f"({totals['cost_ratio']:.1%} of the baseline cost)"
    )
    print(
        "* tags inferred from the messages; costs are estimates from the catalog prices "
        f"(as of {catalog.info.as_of}) and each row's expected output length"
    )
    return 0


# -- helpers --------------------------------------------------------------------------------
def _demo_json(results: list[dict[str, Any]], baseline: str) -> dict[str, Any]:
    """Totals over the rows priced both ways; the others are counted, never taken as $0."""
    priced = [
        r
        for r in results
        if r["decision"].estimated_cost_usd is not None and r["baseline_cost_usd"] is not None
    ]
    routed = round(sum(r["decision"].estimated_cost_usd for r in priced), 12)
    base = round(sum(r["baseline_cost_usd"] for r in priced), 12)
    return {
        "baseline_model": baseline,
        "rows": [
            {"id": r["id"], **r["decision"].summary(), "baseline_cost_usd": r["baseline_cost_usd"]}
            for r in results
        ],
        "totals": {
            "calls": len(results),
            "unpriced_calls": len(results) - len(priced),
            "routed_cost_usd": routed,
            "baseline_cost_usd": base,
            "cost_ratio": routed / base if base else None,
        },
    }


def _model_json(card: Any) -> dict[str, Any]:
    data = card.model_dump(mode="json")
    data["scores"] = {b: card.score(b) for b in BENCHMARKS}
    return data


def _catalog(args: argparse.Namespace) -> Catalog:
    catalog = Catalog.from_file(args.catalog) if args.catalog else Catalog.from_env()
    catalog.check_freshness(args.max_price_age_days)
    return catalog


def _policy(args: argparse.Namespace) -> Policy:
    fields: dict[str, Any] = {"preset": args.policy}
    if args.gap is not None:
        fields["quality_gap"] = args.gap
    if args.max_cost is not None:
        fields["max_cost_usd"] = args.max_cost
    if args.allow_model:
        fields["allowed_models"] = frozenset(args.allow_model)
    if args.deny_model:
        fields["denied_models"] = frozenset(args.deny_model)
    if args.origin:
        fields["allowed_origins"] = frozenset(args.origin)
    fields["allow_unpriced"] = args.allow_unpriced
    fields["allow_unscored"] = args.allow_unscored
    return Policy(**fields)


def _messages(args: argparse.Namespace) -> list[Any]:
    if args.file and args.prompt:
        raise InvalidRequestError("give a PROMPT or --file, not both")
    if args.file:
        try:
            text = Path(args.file).read_text("utf-8") if args.file != "-" else sys.stdin.read()
        except OSError as exc:
            raise InvalidRequestError(f"{args.file}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(
                f"{args.file}: not UTF-8 text (a bad byte at offset {exc.start})"
            ) from None
        stripped = text.lstrip()
        if stripped.startswith("["):
            try:
                messages = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidRequestError(
                    f"{args.file}: not a valid JSON message list: {exc.msg}"
                ) from None
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise InvalidRequestError(f"{args.file}: a message list is a JSON array of objects")
            return messages
        return [{"role": "user", "content": text}]
    if not args.prompt:
        raise InvalidRequestError("give a PROMPT or --file (a prompt, or a JSON message list)")
    return [{"role": "user", "content": args.prompt}]


def _split_tags(value: str) -> list[str]:
    tags = [t.strip() for t in value.split(",")]
    if not all(tags):
        raise argparse.ArgumentTypeError(f"empty tag in {value!r}; known: {', '.join(TAG_NAMES)}")
    return tags


def _age(value: str) -> int:
    days = int(value)
    if days < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more days, got {days}")
    return days


def _shown(text: str) -> str:
    """Text for the terminal: lines kept, control characters (terminal escapes) escaped."""
    return "\n".join(map(printable, text.split("\n")))


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return str(exc)


def _saved(cost: float | None, base: float | None) -> str:
    if cost is None or not base:
        return "-"
    return f"{1 - cost / base:.0%}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routedllm", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--catalog",
        metavar="FILE",
        help="override file merged over the packaged catalog (default: $ROUTEDLLM_CATALOG if set)",
    )
    common.add_argument(
        "--max-price-age-days",
        type=_age,
        default=180,
        metavar="DAYS",
        help="warn when the catalog's prices are older than this (default 180)",
    )
    pol = argparse.ArgumentParser(add_help=False)
    pol.add_argument("--policy", choices=PRESETS, default="value")
    pol.add_argument("--gap", type=float, help="quality gap in benchmark points (value preset)")
    pol.add_argument("--max-cost", type=float, metavar="USD", help="per-call estimated cost cap")
    pol.add_argument("--allow-model", action="append", metavar="ID", help="only these models")
    pol.add_argument("--deny-model", action="append", metavar="ID", help="never these models")
    pol.add_argument(
        "--origin",
        action="append",
        metavar="ORIGIN",
        help="allowed model origins, e.g. US (repeatable)",
    )
    pol.add_argument(
        "--allow-unpriced", action="store_true", help="route to models with no input price"
    )
    pol.add_argument(
        "--allow-unscored",
        action="store_true",
        help="route to models with no score on the call's benchmark",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("models", parents=[common], help="the catalog as a table")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("route", parents=[common, pol], help="show the decision for a prompt")
    p.add_argument("prompt", nargs="?", metavar="PROMPT")
    p.add_argument("--file", metavar="FILE", help="a prompt, or a JSON message list ('-': stdin)")
    p.add_argument(
        "--tags",
        action="append",
        metavar="TAG",
        type=_split_tags,
        help=f"task tags, repeatable or comma-separated; known: {', '.join(TAG_NAMES)}",
    )
    p.add_argument(
        "--require",
        action="append",
        metavar="CAP",
        choices=("image_input", "tools", "structured_output"),
        help="a capability the call needs (repeatable)",
    )
    p.add_argument("--max-tokens", type=int, metavar="N", help="expected output tokens")
    p.add_argument(
        "--learned", metavar="ROUTER.json", help="score models with a learned router (train)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_route)

    p = sub.add_parser(
        "demo",
        parents=[common, pol],
        help="route the bundled sample workload and compare with a baseline",
    )
    p.add_argument("--workload", metavar="FILE.jsonl", help="your own workload instead")
    p.add_argument("--baseline", default="gpt-4o", metavar="ID")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="only decide and estimate: no calls, not even to the local stand-in",
    )
    p.add_argument(
        "--ledger",
        metavar="FILE.jsonl",
        help="append the calls' records here (default: a new temporary file)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_demo)

    add_report_command(sub, common)
    add_eval_command(sub, common)
    add_train_command(sub, common)
    add_litellm_config_command(sub, common)
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
