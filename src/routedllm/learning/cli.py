"""The ``routedllm train`` command: fit a learned router on outcome rows, write its JSON.

Rows come from a JSONL workload with ``outcomes``, RouteLLM's published tables
(``--benchmark``), a workload plus the graded answers of ``routedllm eval --online
--json`` (``--graded``): each graded answer becomes the outcome of the model that gave it,
or the rows a :class:`~routedllm.evaluation.shadow.ShadowHandler` wrote from live traffic
(``--shadow``: the live model's agreement with the baseline, and the baseline's 1.0), so
the router learns from scores measured on your own prompts. numpy loads only when the
command runs.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from routedllm import workload
from routedllm.core import files
from routedllm.core.errors import InvalidRequestError
from routedllm.workload import WorkloadRow

EPILOG = """\
examples:
  routedllm train ../routellm/evals --benchmark mmlu --strong gpt-4-1106-preview \\
      --weak mistralai/Mixtral-8x7B-Instruct-v0.1 --target 0.95 -o router.json
  routedllm eval --online --policy always:deepseek-v4-flash --policy always:gpt-4o \\
      --json > graded.json
  routedllm train --graded graded.json -o router.json      # the sample workload's prompts
  routedllm eval --online --policy value --shadow gpt-4o --shadow-rows shadow.jsonl
  routedllm train --shadow shadow.jsonl -o router.json     # agreement with gpt-4o
"""


def add_train_command(subparsers: Any, common_parent: argparse.ArgumentParser) -> None:
    """Register ``train`` on the ``routedllm`` subcommands."""
    p = subparsers.add_parser(
        "train",
        parents=[common_parent],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="learn per-prompt model scores from outcome rows (a learned router)",
    )
    p.add_argument(
        "dataset",
        nargs="?",
        metavar="ROWS",
        help="JSONL rows with outcomes, or a RouteLLM evals folder with --benchmark "
        "(default: the bundled sample workload, with --graded)",
    )
    p.add_argument("-o", "--output", required=True, metavar="ROUTER.json")
    p.add_argument("--benchmark", choices=("mmlu", "gsm8k", "mt-bench"))
    p.add_argument("--keep-contaminated", action="store_true")
    p.add_argument(
        "--graded",
        action="append",
        metavar="ONLINE.json",
        help="`routedllm eval --online --json` output: its graded answers become outcomes "
        "(repeatable)",
    )
    p.add_argument(
        "--shadow",
        action="append",
        metavar="SHADOW.jsonl",
        help="rows a ShadowHandler wrote (rows_path=, or `routedllm eval --online --shadow`): "
        "agreement grades as outcomes, mirrors of one row averaged (repeatable)",
    )
    p.add_argument("--strong", metavar="ID", help="the dearer model of two")
    p.add_argument("--weak", metavar="ID", help="the cheaper model of two")
    p.add_argument(
        "--cheapest-first",
        metavar="A,B,...",
        help="the outcome models from cheapest to dearest (default: by mean outcome cost, "
        "or --weak,--strong)",
    )
    p.add_argument(
        "--target",
        type=float,
        metavar="F",
        help="choose the gap that keeps this share of the dearest model's quality, out of "
        "fold (e.g. 0.95); without it the policy's gap applies",
    )
    p.add_argument("--confidence", type=float, default=0.9, metavar="P")
    p.add_argument(
        "--l2",
        type=float,
        metavar="X",
        help="fix the weight penalty (default: chosen out of fold from 1e-4, 1e-3, 1e-2, "
        "1e-1 and 1)",
    )
    p.add_argument("--json", action="store_true", help="print the artifact's metadata as JSON")
    p.set_defaults(run=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Read rows, train, write the artifact, print what it learned from."""
    try:
        import numpy as np

        from routedllm.evaluation import dataset, published
        from routedllm.learning.train import TrainSettings, train
    except ImportError as exc:
        raise InvalidRequestError(
            f"routedllm train needs the eval extra ({exc.name} is missing): "
            "pip install 'routedllm[eval]'"
        ) from None
    if args.target is not None and not 0 < args.target <= 1:
        raise InvalidRequestError(f"--target must be in (0, 1], got {args.target}")
    settings = TrainSettings(l2=args.l2)
    files.check_writable(args.output, "the learned router")  # before training, not after
    if args.benchmark:
        if not args.dataset:
            raise InvalidRequestError("--benchmark reads RouteLLM's tables: give their folder")
        rows = dataset.validated(
            published.routellm_rows(
                args.dataset, args.benchmark, drop_contaminated=not args.keep_contaminated
            ),
            f"{args.dataset} ({args.benchmark})",
        )
    elif args.dataset or not args.shadow:
        rows = dataset.load_rows(args.dataset)
    else:
        rows = []
    if args.shadow:
        rows = with_shadow(rows, args.shadow)
    if args.graded:
        rows = with_graded(rows, args.graded)
    if not rows:
        given = [*([args.dataset] if args.dataset else []), *(args.shadow or [])]
        raise InvalidRequestError(f"no rows to learn from in {', '.join(given) or 'the input'}")
    data = dataset.EvalSet.from_rows(rows)
    if not data.has_outcomes:
        raise InvalidRequestError(
            "no outcomes to learn from: give rows with 'outcomes', --benchmark, --graded "
            "or --shadow"
        )
    scored = [m for i, m in enumerate(data.models) if np.isfinite(data.scores[:, i]).any()]
    if len(scored) < 2:
        raise InvalidRequestError(
            "a learned router chooses between models: the rows score "
            f"{', '.join(scored) or 'no model'}; give outcomes of two models or more"
        )
    order = _order(args, data, np)
    router = train(
        rows,
        data,
        order,
        target=args.target,
        confidence=args.confidence,
        settings=settings,
        name=Path(args.output).stem,
    )
    with files.writing(args.output, "the learned router"):
        router.save(args.output)
    meta = {**router.meta, "output": args.output, "models": list(router.models)}
    meta["terms"] = {m: len(w) for m, w in zip(router.models, router.term_weights, strict=True)}
    if args.json:
        print(json.dumps(meta, indent=2, ensure_ascii=False))
    else:
        point = meta.get("operating_point")
        lines = [
            f"{args.output}: learned router over {', '.join(router.models)}",
            f"trained on {meta['rows']} rows (sha256 {meta['data_sha256'][:16]}...)",
            "cheapest first: " + ", ".join(order),
            "terms with a weight: " + ", ".join(f"{m} {n}" for m, n in meta["terms"].items()),
            _penalty_text(meta, fixed=args.l2 is not None),
        ]
        if point is not None:
            lines.append(_point_text(point))
        print("\n".join(lines))
    return 0


def _penalty_text(meta: dict[str, Any], *, fixed: bool) -> str:
    l2 = meta["settings"]["l2"]
    if fixed:
        return f"weight penalty: l2 {l2:g} (fixed by --l2)"
    tried = ", ".join(
        f"{k}: {'-' if v is None else f'{v:.3f}'}" for k, v in meta["l2_out_of_fold_apgr"].items()
    )
    return f"weight penalty: l2 {l2:g}, chosen out of fold (APGR per l2 tried: {tried})"


def _point_text(point: dict[str, Any]) -> str:
    if point["gap_points"] is None:
        return (
            f"operating point: no gap keeps {point['target']:.0%} of the dearest model's "
            "quality out of fold; the policy's gap applies"
        )
    return (
        f"operating point: gap {point['gap_points']:.2f} points keeps "
        f"{point['quality_retained']:.1%} of the dearest model's quality out of fold "
        f"(target {point['target']:.0%} at {point['confidence']:.0%} confidence), "
        f"sending {point['strong_share']:.1%} of rows past the cheapest model"
    )


def _order(args: argparse.Namespace, data: Any, np: Any) -> list[str]:
    """The outcome models from cheapest to dearest (see the --cheapest-first help)."""
    if args.cheapest_first:
        order = [m.strip() for m in args.cheapest_first.split(",") if m.strip()]
    elif args.strong or args.weak:
        if not (args.strong and args.weak):
            raise InvalidRequestError("give both --strong and --weak, or neither")
        order = [args.weak, args.strong]
    else:
        mean = {}
        for m in data.models:
            known = data.costs[:, data.column(m)]
            known = known[np.isfinite(known)]
            if not known.size:
                raise InvalidRequestError(
                    f"no cost known for {m}: give --cheapest-first A,B,... or --strong/--weak"
                )
            mean[m] = float(known.mean())
        order = sorted(data.models, key=lambda m: (mean[m], m))
    for m in order:
        data.column(m)  # raises naming the models with outcomes
    return order


def with_graded(rows: Sequence[WorkloadRow], paths: Sequence[str]) -> list[WorkloadRow]:
    """``rows`` with each graded answer of the online reports as an outcome of its model.

    A model graded on a row more than once gets the mean score (and mean cost); rows no
    report graded keep the outcomes they had.
    """
    graded: dict[str, dict[str, list[tuple[float, float | None]]]] = {}
    for path in paths:
        try:
            report = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidRequestError(f"{path}: cannot read: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"{path}: not JSON ({exc})") from None
        policies = report.get("policies") if isinstance(report, dict) else None
        if not isinstance(policies, list):
            raise InvalidRequestError(
                f"{path}: not `routedllm eval --online --json` output (no 'policies' list)"
            )
        for policy in policies:
            for row in policy.get("rows", ()):
                if row.get("score") is None or row.get("model") is None:
                    continue
                graded.setdefault(row["id"], {}).setdefault(row["model"], []).append(
                    (float(row["score"]), row.get("cost_usd"))
                )
    known = {r.id for r in rows}
    unknown = sorted(set(graded) - known)
    if unknown:
        raise InvalidRequestError(
            f"graded rows not in the workload: {', '.join(unknown[:5])}"
            + (" ..." if len(unknown) > 5 else "")
            + "; give the workload the answers were graded on as ROWS"
        )
    out = []
    for row in rows:
        extra = graded.get(row.id)
        if not extra:
            out.append(row)
            continue
        outcomes = {m: o.model_dump() for m, o in (row.outcomes or {}).items()}
        for model, results in extra.items():
            costs = [c for _, c in results if c is not None]
            outcomes[model] = {
                "score": sum(s for s, _ in results) / len(results),
                "cost_usd": sum(costs) / len(costs) if len(costs) == len(results) else None,
            }
        out.append(
            WorkloadRow.model_validate({**row.model_dump(exclude_none=True), "outcomes": outcomes})
        )
    return out


def with_shadow(rows: Sequence[WorkloadRow], paths: Sequence[str]) -> list[WorkloadRow]:
    """``rows`` followed by the rows of the shadow files, rows of one id merged.

    A model with several outcomes for one id (a row mirrored more than once, or graded in
    ``rows`` too) gets the mean score, and the mean cost when every cost is known.
    """
    merged: dict[str, dict[str, Any]] = {}
    scores: dict[str, dict[str, list[tuple[float, float | None]]]] = {}
    for row in [*rows, *(r for path in paths for r in shadow_rows(path))]:
        if row.id not in merged:
            merged[row.id] = row.model_dump(exclude_none=True, exclude={"outcomes"})
        for model, outcome in (row.outcomes or {}).items():
            if outcome.score is not None:
                scores.setdefault(row.id, {}).setdefault(model, []).append(
                    (outcome.score, outcome.cost_usd)
                )
    out = []
    for row_id, fields in merged.items():
        outcomes = {}
        for model, results in scores.get(row_id, {}).items():
            costs = [c for _, c in results if c is not None]
            outcomes[model] = {
                "score": sum(s for s, _ in results) / len(results),
                "cost_usd": sum(costs) / len(costs) if len(costs) == len(results) else None,
            }
        out.append(WorkloadRow.model_validate({**fields, "outcomes": outcomes or None}))
    return out


def shadow_rows(path: str) -> Iterator[WorkloadRow]:
    """The rows of a shadow file (workload rows; one id may repeat, once per mirror)."""
    try:
        handle = files.open_regular(path, "shadow rows")
    except files.FileProblem as exc:
        raise InvalidRequestError(str(exc)) from None
    origin = files.shown(path)
    with io.BufferedReader(handle, 2**20) as buffered:
        for number, line in enumerate(workload._lines(buffered, origin), 1):
            if line.strip():
                where = f"{origin}:{number}"
                yield workload.row_of(workload.parse_line(line, where), where)
