"""In-memory aggregates of CallRecords per model and per tag, with latency quantiles.

Quantiles come from DDSketch (1% relative accuracy, bounded memory, mergeable across
threads, processes or hosts), so a long-running service can keep these indefinitely.
"""

from __future__ import annotations

import copy
import math
import threading
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

from routedllm.records.schema import OK, CallRecord

RELATIVE_ACCURACY = 0.01
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
UNTAGGED = "(untagged)"


def _sketch() -> DDSketch:
    return DDSketch(relative_accuracy=RELATIVE_ACCURACY)


_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)  # the one DDSketch(RELATIVE_ACCURACY) uses
# LogarithmicMapping.key(v) is int(ceil(log(v, 2) * _multiplier) + _offset) (ddsketch 3.x);
# count_buckets inlines it with log2 (the same to the last bit but at a bucket's very edge,
# where either bucket is within the accuracy), ~4x faster for a batch than key() per value.
_MULTIPLIER: float = _MAPPING._multiplier
_OFFSET: float = _MAPPING._offset

_UNSETTLED = 1024  # latencies an Aggregate holds before adding them to its sketch

Buckets = Counter[int | None]
"""Values counted by sketch bucket key (None: the zero bucket), to add to a sketch at once."""


def count_buckets(values: Sequence[float], buckets: Buckets) -> None:
    """Count non-negative ``values`` into ``buckets`` by the key a sketch of this module
    gives them; :func:`add_buckets` then adds them with one weighted add per bucket, for
    the same quantiles as one add per value, much faster."""
    log2, ceil, multiplier, offset = math.log2, math.ceil, _MULTIPLIER, _OFFSET
    smallest = _MAPPING.min_possible
    if offset == 0:  # as DDSketch(RELATIVE_ACCURACY) builds it: ceil() is the key
        keys = [ceil(log2(v) * multiplier) for v in values if v > smallest]
    else:  # pragma: no cover - another mapping
        keys = [int(ceil(log2(v) * multiplier) + offset) for v in values if v > smallest]
    buckets.update(keys)
    if len(keys) < len(values):
        buckets[None] += len(values) - len(keys)  # too small to index: the zero bucket


def _settle(sketch: DDSketch, values: list[float]) -> None:
    """Add ``values`` to ``sketch`` (by bucket) and empty the list."""
    buckets: Buckets = Counter()
    count_buckets(values, buckets)
    add_buckets(sketch, buckets)
    values.clear()


def add_buckets(sketch: DDSketch, buckets: Buckets) -> None:
    """Add what :func:`count_buckets` counted to a sketch made by this module."""
    for key, count in buckets.items():
        sketch.add(0.0 if key is None else _MAPPING.value(key), count)


@dataclass
class Aggregate:
    """Totals for one group of attempts (a model, a tag, or everything).

    Costs sum the records whose cost is known; ``unpriced_attempts`` counts the others, so a
    total never silently treats an unknown cost as zero. Savings and the baseline cost sum
    the records where both sides are known. Latency and time-to-first-token quantiles
    cover successful attempts only (a fast 429 is not a fast model).
    """

    attempts: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    priced_attempts: int = 0
    baseline_cost_usd: float = 0.0
    savings_usd: float = 0.0
    compared_attempts: int = 0
    _latency: DDSketch = field(default_factory=_sketch, repr=False)
    _ttft: DDSketch = field(default_factory=_sketch, repr=False)
    # values not yet in the sketches: added a bucket at a time when read or when full
    _new_latency: list[float] = field(default_factory=list, repr=False)
    _new_ttft: list[float] = field(default_factory=list, repr=False)

    @property
    def latency(self) -> DDSketch:
        """Latency of the successful attempts (seconds)."""
        if self._new_latency:
            _settle(self._latency, self._new_latency)
        return self._latency

    @property
    def ttft(self) -> DDSketch:
        """Time to first chunk of the successful streamed attempts (seconds)."""
        if self._new_ttft:
            _settle(self._ttft, self._new_ttft)
        return self._ttft

    def add(self, record: CallRecord) -> None:
        """Count one record in."""
        self.attempts += 1
        ok = record.outcome == OK
        self.errors += not ok
        self.input_tokens += record.input_tokens or 0
        self.cached_input_tokens += record.cached_input_tokens or 0
        self.output_tokens += record.output_tokens or 0
        self.reasoning_tokens += record.reasoning_tokens or 0
        if record.cost_usd is not None:
            self.cost_usd += record.cost_usd
            self.priced_attempts += 1
        if record.savings_usd is not None and record.baseline_cost_usd is not None:
            self.baseline_cost_usd += record.baseline_cost_usd
            self.savings_usd += record.savings_usd
            self.compared_attempts += 1
        if ok:
            if record.latency_s is not None:
                self._new_latency.append(record.latency_s)
                if len(self._new_latency) >= _UNSETTLED:
                    _settle(self._latency, self._new_latency)
            if record.ttft_s is not None:
                self._new_ttft.append(record.ttft_s)
                if len(self._new_ttft) >= _UNSETTLED:
                    _settle(self._ttft, self._new_ttft)

    def merge(self, other: Aggregate) -> None:
        """Add ``other``'s counts and sketches into this one."""
        for name in (
            "attempts",
            "errors",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost_usd",
            "priced_attempts",
            "baseline_cost_usd",
            "savings_usd",
            "compared_attempts",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency.merge(other.latency)
        self.ttft.merge(other.ttft)

    @property
    def unpriced_attempts(self) -> int:
        """Attempts whose cost is unknown (no catalog price, or no usage reported)."""
        return self.attempts - self.priced_attempts

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.attempts if self.attempts else None

    @property
    def known_cost_usd(self) -> float | None:
        """Sum of the known costs; None when no attempt in the group has a known cost."""
        return self.cost_usd if self.priced_attempts else None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready mapping (what ``routedllm report --json`` prints per group)."""
        compared = self.compared_attempts > 0
        return {
            "attempts": self.attempts,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": self.known_cost_usd,
            "unpriced_attempts": self.unpriced_attempts,
            "baseline_cost_usd": self.baseline_cost_usd if compared else None,
            "savings_usd": self.savings_usd if compared else None,
            "savings_ratio": (
                self.savings_usd / self.baseline_cost_usd
                if compared and self.baseline_cost_usd
                else None
            ),
            "latency_s": quantiles(self.latency),
            "ttft_s": quantiles(self.ttft),
        }


def quantiles(sketch: DDSketch) -> dict[str, float | None]:
    """p50/p95/p99 of a sketch; None each when it is empty."""
    return {name: sketch.get_quantile_value(q) for name, q in QUANTILES}


Group = tuple[str, tuple[str, ...]]
"""What MemorySink aggregates by as records arrive: (model, tags)."""


class MemorySink:
    """Aggregates records per model, per tag and overall; thread-safe, bounded memory.

    ``max_records`` most recent records are kept too (``records``) for inspection; the
    aggregates cover every record ever emitted. A record with several tags counts under
    each of them; a record with none counts under ``"(untagged)"``.

    ``emit`` adds each record to one aggregate, that of its (model, tags) group; the views
    per model, per tag and overall are folded from those groups when read. The number of
    groups is bounded by the models and tag sets in use, not by the number of records.
    """

    def __init__(self, *, max_records: int = 1000) -> None:
        self._lock = threading.Lock()
        self._recent: deque[CallRecord] = deque(maxlen=max_records)
        self._groups: dict[Group, Aggregate] = {}

    def emit(self, record: CallRecord) -> None:
        key = (record.model, record.tags)
        with self._lock:
            self._recent.append(record)
            aggregate = self._groups.get(key)
            if aggregate is None:  # sketches are built once per group, not per record
                aggregate = self._groups[key] = Aggregate()
            aggregate.add(record)

    def extend(self, records: Iterable[CallRecord]) -> MemorySink:
        """Emit every record; returns self, so ``MemorySink().extend(read_ledger(p))`` works."""
        for record in records:
            self.emit(record)
        return self

    def merge(self, other: MemorySink) -> None:
        """Fold another sink's aggregates into this one (e.g. one per worker)."""
        with other._lock:
            groups = copy.deepcopy(other._groups)
            recent = list(other._recent)
        with self._lock:
            for key, aggregate in groups.items():
                mine = self._groups.get(key)
                if mine is None:
                    self._groups[key] = aggregate
                else:
                    mine.merge(aggregate)
            self._recent.extend(recent)

    @property
    def records(self) -> list[CallRecord]:
        """The most recent records, oldest first."""
        with self._lock:
            return list(self._recent)

    @property
    def total(self) -> Aggregate:
        """Every record so far (a snapshot: later records do not change it)."""
        return self._views()[0]

    @property
    def by_model(self) -> dict[str, Aggregate]:
        """Per model (a snapshot)."""
        return self._views()[1]

    @property
    def by_tag(self) -> dict[str, Aggregate]:
        """Per tag, ``"(untagged)"`` for records without one (a snapshot)."""
        return self._views()[2]

    def _views(self) -> tuple[Aggregate, dict[str, Aggregate], dict[str, Aggregate]]:
        with self._lock:
            return fold(self._groups.items())

    def summary(self) -> dict[str, Any]:
        """Totals, per model and per tag, as JSON-ready mappings."""
        total, by_model, by_tag = self._views()
        return {
            "total": total.summary(),
            "by_model": {k: v.summary() for k, v in sorted(by_model.items())},
            "by_tag": {k: v.summary() for k, v in sorted(by_tag.items())},
        }


def fold(
    groups: Iterable[tuple[Group, Aggregate]],
) -> tuple[Aggregate, dict[str, Aggregate], dict[str, Aggregate]]:
    """(total, per model, per tag) from aggregates per (model, tags) group; the groups are
    left unchanged. A group with several tags counts under each, one without under
    ``"(untagged)"``."""
    total = Aggregate()
    by_model: dict[str, Aggregate] = {}
    by_tag: dict[str, Aggregate] = {}
    for (model, tags), aggregate in groups:
        total.merge(aggregate)
        for views, key in ((by_model, model), *((by_tag, tag) for tag in tags or (UNTAGGED,))):
            view = views.get(key)
            if view is None:
                view = views[key] = Aggregate()
            view.merge(aggregate)
    return total, by_model, by_tag
