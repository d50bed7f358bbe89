"""``routedllm report LEDGER.jsonl``: cost, savings, latency and errors per model and per tag.

Reads a JSONL ledger back as a stream and aggregates it on the fly: memory depends on the
models and tag sets in the ledger (and its number of distinct run ids), not on its number of
lines. Prints a table, JSON (``--json``) or a PNG (``--plot``: cost over time and latency
distributions per model; needs the ``plot`` extra, imported only then, and keeps what it
draws). A ledger line is one attempt: groups count ``attempts``, and ``calls`` (distinct
run ids) beside them. A bad line (not a record, a non-finite number, a negative cost) is
skipped with a warning naming it; names are printed with control characters escaped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import warnings
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import accumulate, compress
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import from_json
from typing_extensions import TypedDict

from routedllm.core import files
from routedllm.core.catalog import Catalog, ModelCard
from routedllm.core.errors import RoutedLLMError
from routedllm.records.ledger import (
    MAX_LINE_BYTES,
    LedgerError,
    LedgerWarning,
    iter_blocks,
    problem,
)
from routedllm.records.memory import (
    UNTAGGED,
    Aggregate,
    Buckets,
    Group,
    add_buckets,
    count_buckets,
    fold,
)
from routedllm.records.schema import OK, CallRecord, baseline_card, compared_with
from routedllm.text import table as _table

WARNED_LINES = 10
"""Bad lines warned about one by one; the rest are counted in one last warning."""
_FLUSH_ROWS = 4096  # rows buffered before they are folded into their groups' aggregates

_Count = Annotated[int, Field(ge=0)]
_Usd = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class LedgerLine(TypedDict):
    """The fields of a ledger line the report reads, checked as CallRecord checks them.

    All are required here, which keeps the common case fast; a line from an older version
    that lacks some of the optional ones gets their defaults (see ``_lenient``).
    """

    ts: dt.datetime
    model: Annotated[str, Field(min_length=1)]
    run_id: str | None
    tags: tuple[str, ...]
    outcome: Annotated[str, Field(min_length=1)]
    input_tokens: _Count | None
    cached_input_tokens: _Count | None
    output_tokens: _Count | None
    reasoning_tokens: _Count | None
    cost_usd: _Usd | None
    baseline_model: str | None
    baseline_cost_usd: _Usd | None
    savings_usd: Annotated[float, Field(allow_inf_nan=False)] | None
    prices_as_of: str | None
    latency_s: _Seconds | None
    ttft_s: _Seconds | None


FIELDS = tuple(LedgerLine.__annotations__)
DEFAULTS: dict[str, Any] = {f: None for f in FIELDS if f not in ("ts", "model")}
DEFAULTS |= {"tags": (), "outcome": OK}
_LINE: TypeAdapter[LedgerLine] = TypeAdapter(LedgerLine)
_LINES: TypeAdapter[list[LedgerLine]] = TypeAdapter(list[LedgerLine])
_BATCH = 64  # lines validated in one call
_row = itemgetter(*FIELDS)  # a LedgerLine (or a CallRecord, with attrgetter) as a tuple
_record_row = attrgetter(*FIELDS)
_group_of = itemgetter(FIELDS.index("model"), FIELDS.index("tags"))  # a row's Group
Row = tuple[Any, ...]
"""A ledger line's FIELDS, in order."""


class PlotPoint(NamedTuple):
    """What ``--plot`` draws of one attempt."""

    ts: dt.datetime
    model: str
    cost_usd: float | None
    baseline_model: str | None
    baseline_cost_usd: float | None
    latency_s: float | None
    ttft_s: float | None
    ok: bool


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
    base = None
    if args.baseline:
        catalog = Catalog.from_file(args.catalog) if args.catalog else Catalog.from_env()
        base = baseline_card(catalog, args.baseline)
    if args.plot:
        files.check_writable(args.plot, "a plot")  # before reading the ledger
    tally = read_report(args.ledger, baseline=base, keep_points=bool(args.plot))
    data = tally.result()
    data["ledger"] = str(args.ledger)
    if args.json:
        print(json.dumps(finite(data), indent=2, allow_nan=False))
    else:
        print(render(data))
    if args.plot:
        with files.writing(args.plot, "a plot"):
            plot(tally.points, args.plot)
    return 0


def read_report(
    path: str | os.PathLike[str], *, baseline: ModelCard | None = None, keep_points: bool = False
) -> Tally:
    """Aggregate a ledger file, read as a stream; bad lines are skipped with a warning.

    Raises LedgerError when the file cannot be read, is not a regular file, or has bad
    lines and no good one (it is not a ledger).
    """
    tally = Tally(baseline=baseline, keep_points=keep_points)
    shown = printable(os.fsdecode(path))
    skipped = 0

    def one_by_one(first: int, lines: list[bytes | None]) -> None:
        nonlocal skipped
        for lineno, line in enumerate(lines, start=first):
            if line is None:
                why = f"longer than {MAX_LINE_BYTES} bytes"
            elif line.isspace():
                continue
            else:
                row = _parse(line[:-1])  # without its newline: the same error positions
                if not isinstance(row, str):
                    tally.add(row)
                    continue
                why = row
            skipped += 1
            if skipped <= WARNED_LINES:
                warnings.warn(
                    f"{shown}:{lineno}: skipped a line that is not a CallRecord ({printable(why)})",
                    LedgerWarning,
                    stacklevel=3,
                )

    try:
        with _gc_paused():
            for first, block in iter_blocks(path, newlines=True):
                if first == 1 and block and block[0] is not None:
                    block[0] = _first_line(block[0], shown)
                for start in range(0, len(block), _BATCH):
                    lines = block[start : start + _BATCH]
                    rows = _parse_batch(lines)
                    if rows is None:
                        one_by_one(first + start, lines)
                    else:
                        tally.add_lines(rows)
    except OSError as exc:
        raise LedgerError(f"{shown}: cannot read ledger: {exc.strerror}") from None
    if skipped > WARNED_LINES:
        warnings.warn(
            f"{shown}: skipped {skipped - WARNED_LINES} more lines that are not CallRecords",
            LedgerWarning,
            stacklevel=2,
        )
    tally.skipped = skipped
    if skipped and not tally.count:
        raise LedgerError(
            f"{shown}: no line is a CallRecord ({skipped} skipped): not a routedllm ledger"
        )
    return tally


def _first_line(line: bytes, shown: str) -> bytes:
    """A ledger's first line without a UTF-8 byte-order mark (an editor's save adds one);
    a compressed ledger is refused with what to do, not read as lines of garbage."""
    if line.startswith(b"\x1f\x8b"):
        raise LedgerError(f"{shown}: a gzip-compressed file: decompress it first (gunzip)")
    return line[3:] if line.startswith(b"\xef\xbb\xbf") else line


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused (as it was after): a ledger's lines make millions
    of short-lived containers, none in a reference cycle, and the collections they trigger
    would walk the rows held for folding again and again (a few % of a report's time)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _parse(line: bytes) -> LedgerLine | str:
    """One line as a LedgerLine, or what is wrong with it. A line that lacks optional fields
    (written by an older version) gets their defaults."""
    try:
        return _LINE.validate_json(line)
    except ValidationError as exc:
        if not all(e["type"] == "missing" and e["loc"][0] in DEFAULTS for e in exc.errors()):
            return problem(exc)
    try:
        return _LINE.validate_python({**DEFAULTS, **from_json(line)})
    except ValidationError as exc:
        return problem(exc)


def _parse_batch(lines: list[bytes | None]) -> list[LedgerLine] | None:
    """Many lines (each with its newline) validated in one call, as one JSON array: much
    less overhead per line. None when any of them needs a look on its own (bad, blank,
    overlong, old)."""
    if None in lines:
        return None
    array: list[bytes | None] = [b","] * (2 * len(lines) + 1)  # "[", line, ",", ..., "]"
    array[1::2], array[0], array[-1] = lines, b"[", b"]"  # joined: a single copy
    try:
        rows = _LINES.validate_json(b"".join(array))  # type: ignore[arg-type]
    except ValidationError:
        return None
    # a line holding two objects ("{...},{...}") would pass as two: checked by the count
    return rows if len(rows) == len(lines) else None


def summarize(records: Iterable[CallRecord]) -> dict[str, Any]:
    """The report of ``records`` as a JSON-ready mapping: totals, per model and per tag.

    Each group counts ``attempts`` (ledger lines) and ``calls`` (distinct run ids; a line
    without one is a call of its own); ``unpriced_attempts`` have an unknown cost.
    """
    tally = Tally(records=True)
    batch: list[Any] = []
    for record in records:
        batch.append(record)
        if len(batch) == _FLUSH_ROWS:  # folded _FLUSH_ROWS at a time, as a ledger is
            tally.add_lines(batch)
            batch = []
    tally.add_lines(batch)
    return tally.result()


class _Group:
    """One (model, tags) group of a report: its aggregate and the run ids of its lines."""

    __slots__ = ("aggregate", "latency", "rows", "runs", "ttft", "unnamed")

    def __init__(self) -> None:
        self.aggregate = Aggregate()  # its sketches get latency and ttft in result()
        self.latency: Buckets = Counter()
        self.ttft: Buckets = Counter()
        self.rows: list[Row] = []  # not yet folded into the aggregate
        self.runs = array("q")  # hash of each run id (64 bits: collisions ~1e-8 at 1e6 ids)
        self.unnamed = 0  # lines without a run id, each a call of its own


class _Appenders(dict[Group, Callable[[Any], None]]):
    """Each group's ``rows.append`` by (model, tags); a new key makes its group."""

    def __init__(self, groups: dict[Group, _Group]) -> None:
        super().__init__()
        self.groups = groups

    def __missing__(self, key: Group) -> Callable[[Any], None]:
        group = self.groups[key] = _Group()
        append = self[key] = group.rows.append
        return append


class Tally:
    """A report being built: lines are added in batches and folded into per-(model, tags)
    aggregates every ``_FLUSH_ROWS`` lines, a column at a time, so memory does not grow
    with the number of lines (run ids aside: 8 bytes each, to count distinct calls).

    It takes LedgerLines (dicts), or CallRecords with ``records=True``.
    """

    def __init__(
        self,
        *,
        baseline: ModelCard | None = None,
        keep_points: bool = False,
        records: bool = False,
    ) -> None:
        self.baseline = baseline
        self.keep_points = keep_points
        self.points: list[PlotPoint] = []
        self.records = 0
        self.skipped = 0
        self.baseline_models: set[str] = set()
        self.prices_as_of: set[str] = set()
        self._groups: dict[Group, _Group] = {}
        self._appenders = _Appenders(self._groups)
        self._row: Callable[[Any], tuple[Any, ...]] = _record_row if records else _row
        self._pending = 0

    @property
    def count(self) -> int:
        """Lines counted in so far."""
        return self.records + self._pending

    def add_lines(self, lines: list[Any]) -> None:
        """Count ledger lines in (re-priced on the baseline when the tally has one)."""
        if self.baseline is not None:
            for line in lines:
                self.add(line)
            return
        # rows made while the lines are fresh in the CPU's cache; grouped by builtins (map)
        # and a bare loop, which runs once per ledger line
        rows = list(map(self._row, lines))
        appends = map(self._appenders.__getitem__, map(_group_of, rows))
        for append, row in zip(appends, rows, strict=True):
            append(row)
        self._pending += len(lines)
        if self._pending >= _FLUSH_ROWS:
            self._flush()

    def add(self, line: LedgerLine) -> None:
        """Count one ledger line in (re-priced on the baseline when the tally has one)."""
        if self.baseline is not None:
            line["baseline_model"] = self.baseline.id
            line["baseline_cost_usd"], line["savings_usd"] = compared_with(
                self.baseline,
                line["input_tokens"],
                line["output_tokens"],
                line["cached_input_tokens"],
                line["cost_usd"],
            )
        self._appenders[line["model"], line["tags"]](_row(line))
        self._pending += 1
        if self._pending >= _FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        for group in self._groups.values():
            if group.rows:
                self._fold(group)
                group.rows.clear()
        self._pending = 0

    def _fold(self, group: _Group) -> None:
        """Add a group's pending rows to its aggregate, a column at a time (summed, counted
        and filtered by builtins where they can: this is most of the work per line)."""
        (ts, model, run_id, _, outcome, tokens_in, cached, tokens_out, reasoning, cost) = (
            columns := list(zip(*group.rows, strict=True))
        )[:10]
        base_model, base_cost, savings, as_of, latency, ttft = columns[10:]
        agg, n = group.aggregate, len(group.rows)
        self.records += n
        ok_count = outcome.count(OK)
        agg.attempts += n
        agg.errors += n - ok_count
        agg.input_tokens += sum(filter(None, tokens_in))
        agg.cached_input_tokens += sum(filter(None, cached))
        agg.output_tokens += sum(filter(None, tokens_out))
        agg.reasoning_tokens += sum(filter(None, reasoning))
        agg.priced_attempts += n - cost.count(None)
        agg.cost_usd += sum(filter(None, cost))
        compared = base_cost, savings  # the attempts where both are known
        if None in base_cost or None in savings:
            pairs = [
                (b, s)
                for b, s in zip(base_cost, savings, strict=True)
                if b is not None and s is not None
            ]
            compared = tuple(map(itemgetter(0), pairs)), tuple(map(itemgetter(1), pairs))
        agg.compared_attempts += len(compared[0])
        agg.baseline_cost_usd += sum(compared[0])
        agg.savings_usd += sum(compared[1])
        oks = [o == OK for o in outcome] if ok_count < n or self.keep_points else None
        for buckets, values in ((group.latency, latency), (group.ttft, ttft)):
            known = values if oks is None else list(compress(values, oks))  # successful only
            if None in known:
                known = [v for v in known if v is not None]
            count_buckets(known, buckets)
        before = len(group.runs)
        group.runs.extend(map(hash, filter(None, run_id)))
        group.unnamed += n - (len(group.runs) - before)
        self.baseline_models.update(base_model)
        self.prices_as_of.update(as_of)
        if oks is not None and self.keep_points:
            self.points.extend(
                map(PlotPoint, ts, model, cost, base_model, base_cost, latency, ttft, oks)
            )

    def result(self) -> dict[str, Any]:
        """The report as a JSON-ready mapping (see :func:`summarize`)."""
        self._flush()
        groups = self._groups
        for group in groups.values():
            for sketch, buckets in (
                (group.aggregate.latency, group.latency),
                (group.aggregate.ttft, group.ttft),
            ):
                add_buckets(sketch, buckets)
                buckets.clear()
        total, by_model, by_tag = fold((key, g.aggregate) for key, g in groups.items())
        model_keys: dict[str, list[Group]] = defaultdict(list)
        tag_keys: dict[str, list[Group]] = defaultdict(list)
        for key in groups:
            model_keys[key[0]].append(key)
            for tag in key[1] or (UNTAGGED,):  # grouped as MemorySink groups them
                tag_keys[tag].append(key)

        bits = {key: 1 << i for i, key in enumerate(groups)}
        runs = _runs_by_groups([(bits[key], group.runs) for key, group in groups.items()])

        def counted(aggregate: Aggregate, keys: Iterable[Group]) -> dict[str, Any]:
            keys = list(keys)
            mask = sum(bits[key] for key in keys)
            calls = sum(n for seen_in, n in runs.items() if seen_in & mask)
            calls += sum(groups[key].unnamed for key in keys)
            out = aggregate.summary()
            return {"attempts": out.pop("attempts"), "calls": calls, **out}

        total_view = counted(total, groups)
        return {
            "records": self.records,
            "runs": total_view["calls"],
            "skipped_lines": self.skipped,
            "baseline_models": sorted(self.baseline_models - {None}),
            "prices_as_of": sorted(self.prices_as_of - {None}),
            "total": total_view,
            "by_model": {k: counted(by_model[k], model_keys[k]) for k in sorted(by_model)},
            "by_tag": {k: counted(by_tag[k], tag_keys[k]) for k in sorted(by_tag)},
        }


def _runs_by_groups(groups: Iterable[tuple[int, array[int]]]) -> Counter[int]:
    """How many distinct run ids were seen in each combination of groups: a run's groups as
    a bit mask (its group's bit for each group it has a line in) -> number of runs.

    A view (a model, a tag, the total) holds the runs whose mask meets its groups' bits;
    two passes over the run ids serve every view, instead of a set of run ids per view.
    Most runs are in one group only: only those in several (a fallback to another model)
    get a mask of their own, the others are counted by set sizes.
    """
    groups = list(groups)
    shared = _shared(runs for _, runs in groups)
    masks: Counter[int] = Counter()
    combined: defaultdict[int, int] = defaultdict(int)
    for bit, runs in groups:
        mine = set(runs)
        elsewhere = mine & shared
        masks[bit] += len(mine) - len(elsewhere)
        for run in elsewhere:
            combined[run] |= bit
    masks.update(combined.values())
    return +masks  # without zero counts


def _shared(groups: Iterable[array[int]]) -> set[int]:
    """The run ids in more than one of ``groups`` (a group's set is made, used, dropped)."""
    seen: set[int] = set()
    shared: set[int] = set()
    for runs in groups:
        mine = set(runs)
        shared |= seen & mine
        seen |= mine
    return shared


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (a sum that overflowed) replaced by None,
    so that it is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def printable(text: str) -> str:
    """``text`` with control characters and other unprintable ones (terminal escapes,
    bidirectional overrides) escaped as ``\\x1b``, ``\\u202e``..., never printed raw."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def render(data: dict[str, Any]) -> str:
    """The report as text tables."""

    ledger = printable(str(data.get("ledger", "ledger")))
    if not data["records"]:
        return f"{ledger}: no records"
    baseline = printable(", ".join(data["baseline_models"])) or "no baseline"
    header = (
        "attempts",
        "errors",
        "cost",
        f"vs {baseline}",
        "saved",
        "latency p50/p95/p99",
        "ttft p50/p95/p99",
    )
    as_of = printable(", ".join(data["prices_as_of"])) or "unknown"
    skipped = data.get("skipped_lines") or 0
    out = [
        f"{ledger}: {data['records']} attempts in {data['runs']} calls; prices as of {as_of}"
        + (f"; {skipped} bad lines skipped (see the warnings)" if skipped else "")
    ]
    for title, groups in (
        ("model", data["by_model"]),
        ("tag", data["by_tag"]),
        ("", {"total": data["total"]}),
    ):
        rows = [(printable(name), *_cells(g)) for name, g in groups.items()]
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


def plot(points: Iterable[PlotPoint], path: str | Path) -> Path:
    """Write a PNG: cumulative cost per model over time, latency and ttft per model."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise RoutedLLMError("--plot needs matplotlib: pip install 'routedllm[plot]'") from None
    ordered = sorted(points, key=lambda r: r.ts)
    if not ordered:
        raise RoutedLLMError("nothing to plot: the ledger has no records")
    cost_by_model: dict[str, list[PlotPoint]] = defaultdict(list)
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
            label=printable(model),
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
            label=f"same tokens on {printable(compared[-1].baseline_model or 'baseline')}",
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
            ax.boxplot(
                [values[n] for n in names],
                tick_labels=[printable(n) for n in names],
                orientation="horizontal",
            )
            ax.set_xlabel("seconds")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    out = Path(path)
    fig.savefig(out, dpi=100)
    return out
