"""``routedllm report LEDGER.jsonl``: cost, savings, latency and errors per model and per tag.

Reads a JSONL ledger back, aggregates it with :class:`routedllm.records.memory.MemorySink`, and
prints a table, JSON (``--json``) or a PNG (``--plot``: cost over time and latency
distributions per model; needs the ``plot`` extra, imported only then). A ledger line is
one attempt: groups count ``attempts``, and ``calls`` (distinct run ids) beside them.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

from routedllm.core.catalog import Catalog
from routedllm.core.errors import RoutedLLMError
from routedllm.records.ledger import LedgerError, read_ledger
from routedllm.records.memory import UNTAGGED, MemorySink
from routedllm.records.schema import CallRecord, with_baseline
from routedllm.text import table as _table


def add_report_command(
    subparsers: argparse._SubParsersAction, common_parent: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    """Register the ``report`` subcommand on the ``routedllm`` parser."""
    p = subparsers.add_parser(
        "report",
        parents=[common_parent],
        help="cost, savings, latency and errors per model and per tag, from a ledger",
    )
    p.add_argument("ledger", metavar="LEDGER.jsonl", help="a ledger written by the handler")
    p.add_argument(
        "--baseline",
        metavar="ID",
        help="re-price the savings against this catalog model (default: as recorded)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw cost over time and latency per model (needs matplotlib)",
    )
    p.set_defaults(run=cmd_report)
    return p


def cmd_report(args: argparse.Namespace) -> int:
    """Print the report of ``args.ledger``; write the plot when asked."""
    try:
        records = read_ledger(args.ledger)
    except OSError as exc:
        raise LedgerError(f"{args.ledger}: cannot read ledger: {exc.strerror}") from None
    if args.baseline:
        catalog = Catalog.from_file(args.catalog) if args.catalog else Catalog.from_env()
        records = [with_baseline(r, catalog, args.baseline) for r in records]
    data = summarize(records)
    data["ledger"] = str(args.ledger)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(render(data))
    if args.plot:
        plot(records, args.plot)
    return 0


def summarize(records: Sequence[CallRecord]) -> dict[str, Any]:
    """The report as a JSON-ready mapping: totals, per model and per tag.

    Each group counts ``attempts`` (ledger lines) and ``calls`` (distinct run ids; a line
    without one is a call of its own); ``unpriced_attempts`` have an unknown cost.
    """
    summary = MemorySink(max_records=0).extend(records).summary()
    total_runs: set[str] = set()
    model_runs: dict[str, set[str]] = defaultdict(set)
    tag_runs: dict[str, set[str]] = defaultdict(set)
    for i, r in enumerate(records):
        run = r.run_id or f"#{i}"
        total_runs.add(run)
        model_runs[r.model].add(run)
        for tag in r.tags or (UNTAGGED,):  # grouped as MemorySink groups them
            tag_runs[tag].add(run)
    return {
        "records": len(records),
        "runs": len(total_runs),
        "baseline_models": sorted({r.baseline_model for r in records if r.baseline_model}),
        "prices_as_of": sorted({r.prices_as_of for r in records if r.prices_as_of}),
        "total": _counted(summary["total"], total_runs),
        "by_model": {k: _counted(g, model_runs[k]) for k, g in summary["by_model"].items()},
        "by_tag": {k: _counted(g, tag_runs[k]) for k, g in summary["by_tag"].items()},
    }


def _counted(group: dict[str, Any], runs: set[str]) -> dict[str, Any]:
    """A MemorySink group (its counts are of attempts) with the number of calls it holds."""
    out = dict(group)
    return {"attempts": out.pop("attempts"), "calls": len(runs), **out}


def render(data: dict[str, Any]) -> str:
    """The report as text tables."""

    if not data["records"]:
        return f"{data.get('ledger', 'ledger')}: no records"
    baseline = ", ".join(data["baseline_models"]) or "no baseline"
    header = (
        "attempts",
        "errors",
        "cost",
        f"vs {baseline}",
        "saved",
        "latency p50/p95/p99",
        "ttft p50/p95/p99",
    )
    as_of = ", ".join(data["prices_as_of"]) or "unknown"
    out = [
        f"{data.get('ledger', 'ledger')}: {data['records']} attempts in {data['runs']} calls; "
        + f"prices as of {as_of}"
    ]
    for title, groups in (
        ("model", data["by_model"]),
        ("tag", data["by_tag"]),
        ("", {"total": data["total"]}),
    ):
        rows = [(name, *_cells(g)) for name, g in groups.items()]
        out += ["", _table((title, *header), rows)]
    out.append(
        "\ncost: known costs summed, '+N unknown' counts attempts the catalog could not "
        "price; latency and ttft in seconds, successful attempts only"
    )
    return "\n".join(out)


def _cells(g: dict[str, Any]) -> tuple[str, ...]:
    if g["cost_usd"] is None:
        cost = "unknown"
    else:
        cost = f"${g['cost_usd']:.6f}" + (
            f" +{g['unpriced_attempts']} unknown" if g["unpriced_attempts"] else ""
        )
    saved = (
        "-"
        if g["savings_usd"] is None
        else f"${g['savings_usd']:.6f}"
        + ("" if g["savings_ratio"] is None else f" ({g['savings_ratio']:.0%})")
    )
    return (
        str(g["attempts"]),
        f"{g['errors']} ({g['error_rate']:.0%})",
        cost,
        "-" if g["baseline_cost_usd"] is None else f"${g['baseline_cost_usd']:.6f}",
        saved,
        _triple(g["latency_s"]),
        _triple(g["ttft_s"]),
    )


def _triple(q: dict[str, float | None]) -> str:
    if q["p50"] is None:
        return "-"
    return "/".join(f"{q[k]:.2f}" for k in ("p50", "p95", "p99"))


def plot(records: Sequence[CallRecord], path: str | Path) -> Path:
    """Write a PNG: cumulative cost per model over time, latency and ttft per model."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RoutedLLMError("--plot needs matplotlib: pip install 'routedllm[plot]'") from None
    if not records:
        raise RoutedLLMError("nothing to plot: the ledger has no records")
    ordered = sorted(records, key=lambda r: r.ts)
    cost_by_model: dict[str, list[CallRecord]] = defaultdict(list)
    latency: dict[str, list[float]] = defaultdict(list)
    ttft: dict[str, list[float]] = defaultdict(list)
    for r in ordered:
        if r.cost_usd is not None:
            cost_by_model[r.model].append(r)
        if r.ok and r.latency_s is not None:
            latency[r.model].append(r.latency_s)
        if r.ok and r.ttft_s is not None:
            ttft[r.model].append(r.ttft_s)

    fig = Figure(figsize=(11, 9), layout="constrained")
    FigureCanvasAgg(fig)
    ax_cost, ax_lat, ax_ttft = fig.subplots(3, 1)
    for model, rs in sorted(cost_by_model.items()):
        ax_cost.step(
            [r.ts for r in rs],
            list(accumulate(r.cost_usd or 0.0 for r in rs)),
            where="post",
            label=model,
        )
    compared = [r for r in ordered if r.baseline_cost_usd is not None and r.cost_usd is not None]
    if compared:
        ts = [r.ts for r in compared]
        ax_cost.step(
            ts,
            list(accumulate(r.cost_usd or 0.0 for r in compared)),
            where="post",
            color="black",
            label="all priced attempts",
        )
        ax_cost.step(
            ts,
            list(accumulate(r.baseline_cost_usd or 0.0 for r in compared)),
            where="post",
            color="black",
            linestyle="--",
            label=f"same tokens on {compared[-1].baseline_model}",
        )
    unknown = sum(r.cost_usd is None for r in ordered)
    ax_cost.set_title(
        "cumulative cost (USD)"
        + (f"; {unknown} attempts with unknown cost not shown" if unknown else "")
    )
    ax_cost.set_ylabel("USD")
    if cost_by_model or compared:
        ax_cost.legend(fontsize="small")
    for ax, values, what in ((ax_lat, latency, "latency"), (ax_ttft, ttft, "time to first chunk")):
        ax.set_title(f"{what} per model (s, successful attempts)")
        if values:
            names = sorted(values)
            ax.boxplot([values[n] for n in names], tick_labels=names, orientation="horizontal")
            ax.set_xlabel("seconds")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    out = Path(path)
    fig.savefig(out, dpi=100)
    return out
