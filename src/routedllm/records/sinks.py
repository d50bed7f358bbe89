"""Sinks: what takes finished CallRecords, how records reach them, and a handler's default set.

This module sits above the schema and the concrete sinks (memory, JSONL ledger): it imports
them, they never import it, so the records package has no import cycle.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from routedllm.records.ledger import JsonlLedger
from routedllm.records.memory import MemorySink
from routedllm.records.schema import CallRecord

logger = logging.getLogger("routedllm")


@runtime_checkable
class Sink(Protocol):
    """Anything that takes finished CallRecords (memory stats, a ledger, OpenTelemetry)."""

    def emit(self, record: CallRecord) -> None:
        """Take one record; called from any thread."""


def deliver(sinks: Iterable[Sink], records: Iterable[CallRecord]) -> None:
    """Hand each record to every sink; a failing sink is logged and does not stop the others."""
    records = list(records)
    for sink in sinks:
        for record in records:
            try:
                sink.emit(record)
            except Exception:  # a broken sink must never break the user's LLM call
                logger.exception("routedllm: sink %r failed to take a record", sink)


def sinks_for(
    memory: MemorySink | None, ledger_path: str | os.PathLike[str] | None, sinks: Iterable[Sink]
) -> tuple[MemorySink, JsonlLedger | None, tuple[Sink, ...]]:
    """A handler's sinks: ``memory`` (a new MemorySink when None), a JSONL ledger at
    ``ledger_path`` when given, then ``sinks``; returned as (memory, ledger, all of them)."""
    memory = MemorySink() if memory is None else memory
    ledger = None if ledger_path is None else JsonlLedger(ledger_path)
    return memory, ledger, (memory, *(() if ledger is None else (ledger,)), *sinks)
