"""Records grouped by run: a sink that keeps each run's attempts, and a run's summed cost.

A LangChain or LiteLLM call is one run (one run id) of one or more attempts (fallbacks);
these helpers work on the records of one run, for anything that answers calls and needs
their cost back (online evaluation, shadow calls, the demo).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable

from routedllm.records.schema import CallRecord


class RunCollector:
    """A sink that keeps records by run id, so a caller can take back its own runs' records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str | None, list[CallRecord]] = defaultdict(list)

    def emit(self, record: CallRecord) -> None:
        with self._lock:
            self._runs[record.run_id].append(record)

    def pop(self, run_id: str) -> tuple[CallRecord, ...]:
        """The records of ``run_id`` in attempt order, forgetting them."""
        with self._lock:
            records = self._runs.pop(run_id, [])
        return tuple(sorted(records, key=lambda r: r.attempt))


def summed_cost(records: Iterable[CallRecord]) -> float | None:
    """The records' costs added up; None (unknown) when any of them is unknown."""
    total = 0.0
    for record in records:
        if record.cost_usd is None:
            return None
        total += record.cost_usd
    return total
