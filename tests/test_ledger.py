"""The JSONL ledger: whole lines under concurrent writers, torn tails skipped or cut off."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
from pathlib import Path

import pytest

from routedllm import CallRecord, JsonlLedger
from routedllm.core.catalog import Catalog
from routedllm.records.ledger import LedgerError, LedgerWarning, read_ledger
from routedllm.records.schema import Usage, build_record
from tests.conftest import fixture_catalog

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def make(catalog: Catalog, run_id: str, model: str = "gpt-4o-mini") -> CallRecord:
    # a long error text makes each line several KB, so torn interleaving would show
    return build_record(
        catalog,
        model,
        usage=Usage(1000, 200),
        ts=T0,
        latency_s=1.0,
        run_id=run_id,
        error="x" * 3000,
    )


def write_many(path: str, prefix: str, n: int) -> None:
    """Worker for the process test (module level so 'spawn' can import it)."""
    catalog = fixture_catalog()
    ledger = JsonlLedger(path)
    for i in range(n):
        ledger.emit(make(catalog, f"{prefix}-{i}"))


def test_round_trip(tmp_path: Path, catalog) -> None:
    path = tmp_path / "calls.jsonl"
    records = [make(catalog, f"r{i}") for i in range(3)]
    ledger = JsonlLedger(path)
    for r in records:
        ledger.emit(r)
    assert read_ledger(path) == records
    assert path.read_bytes().count(b"\n") == 3


def test_concurrent_threads_write_whole_lines(tmp_path: Path, catalog) -> None:
    path = tmp_path / "calls.jsonl"
    ledgers = [JsonlLedger(path), JsonlLedger(path)]  # shared and separate objects alike
    threads = [
        threading.Thread(
            target=lambda t=t: [ledgers[t % 2].emit(make(catalog, f"t{t}-{i}")) for i in range(50)]
        )
        for t in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = read_ledger(path)
    assert len(records) == 400
    assert {r.run_id for r in records} == {f"t{t}-{i}" for t in range(8) for i in range(50)}


def test_concurrent_processes_write_whole_lines(tmp_path: Path) -> None:
    path = str(tmp_path / "calls.jsonl")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=write_many, args=(path, f"p{p}", 150)) for p in range(3)]
    for p in procs:
        p.start()
    write_many(path, "parent", 150)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    lines = Path(path).read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 601
    records = read_ledger(path)
    assert len({r.run_id for r in records}) == 600


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path: Path, catalog) -> None:
    path = tmp_path / "calls.jsonl"
    ledger = JsonlLedger(path)
    ledger.emit(make(catalog, "a"))
    ledger.emit(make(catalog, "b"))
    with path.open("ab") as f:
        f.write(make(catalog, "c").model_dump_json().encode()[:200])  # a writer died here
    with pytest.warns(LedgerWarning, match="truncated last line 3"):
        records = read_ledger(path)
    assert [r.run_id for r in records] == ["a", "b"]


def test_next_writer_cuts_a_torn_tail_so_no_broken_line_precedes_a_good_one(
    tmp_path: Path, catalog
) -> None:
    path = tmp_path / "calls.jsonl"
    ledger = JsonlLedger(path)
    ledger.emit(make(catalog, "a"))
    with path.open("ab") as f:
        f.write(b'{"ts": "2026-03-01T12:00:00Z", "run_id": "torn", "mod')
    with pytest.warns(LedgerWarning, match="cut off a truncated last line"):
        ledger.emit(make(catalog, "b"))
    assert [r.run_id for r in read_ledger(path)] == ["a", "b"]  # and no warning needed


def test_a_torn_first_line_is_cut_to_an_empty_file(tmp_path: Path, catalog) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_bytes(b'{"ts": "2026')
    with pytest.warns(LedgerWarning):
        JsonlLedger(path).emit(make(catalog, "a"))
    assert [r.run_id for r in read_ledger(path)] == ["a"]


def test_a_bad_line_in_the_middle_is_an_error_naming_the_line(tmp_path: Path, catalog) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text(make(catalog, "a").model_dump_json() + '\n{"model": ""}\n\n')
    with pytest.raises(LedgerError, match=r"calls.jsonl:2: not a CallRecord"):
        read_ledger(path)


def test_blank_lines_and_unknown_fields_are_tolerated(tmp_path: Path, catalog) -> None:
    path = tmp_path / "calls.jsonl"
    line = make(catalog, "a").model_dump_json()[:-1] + ', "from_a_newer_version": 1}'
    path.write_text("\n" + line + "\n\n")
    assert [r.run_id for r in read_ledger(path)] == ["a"]


def test_a_rotated_or_deleted_ledger_is_reopened(tmp_path: Path, catalog) -> None:
    path = tmp_path / "calls.jsonl"
    ledger = JsonlLedger(path)
    ledger.emit(make(catalog, "a"))
    path.rename(tmp_path / "calls.jsonl.1")  # log rotation: the path names a new file next
    ledger.emit(make(catalog, "b"))
    assert [r.run_id for r in read_ledger(path)] == ["b"]
    assert [r.run_id for r in read_ledger(tmp_path / "calls.jsonl.1")] == ["a"]
    path.unlink()
    ledger.emit(make(catalog, "c"))
    assert [r.run_id for r in read_ledger(path)] == ["c"]


def test_another_writer_between_writes_is_seen(tmp_path: Path, catalog) -> None:
    path = tmp_path / "calls.jsonl"
    mine, theirs = JsonlLedger(path), JsonlLedger(path)
    mine.emit(make(catalog, "a"))
    theirs.emit(make(catalog, "b"))
    with path.open("ab") as f:
        f.write(b'{"ts": "2026-03-01T12:00:00Z", "run_id": "torn"')
    with pytest.warns(LedgerWarning, match="cut off a truncated last line"):
        mine.emit(make(catalog, "c"))
    assert [r.run_id for r in read_ledger(path)] == ["a", "b", "c"]


def test_close_then_emit_reopens(tmp_path: Path, catalog) -> None:
    path = tmp_path / "calls.jsonl"
    with JsonlLedger(path) as ledger:
        ledger.emit(make(catalog, "a"))
    ledger.emit(make(catalog, "b"))
    ledger.close()
    ledger.close()
    assert [r.run_id for r in read_ledger(path)] == ["a", "b"]


def _emit_in_child(ledger: JsonlLedger, n: int) -> None:
    catalog = fixture_catalog()
    for i in range(n):
        ledger.emit(make(catalog, f"child-{i}"))


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork (POSIX)"
)
def test_a_forked_child_opens_its_own_file(tmp_path: Path, catalog) -> None:
    """The child inherits an open ledger; sharing the parent's descriptor would share its
    flock, and their lines could interleave."""
    path = tmp_path / "calls.jsonl"
    ledger = JsonlLedger(path)
    ledger.emit(make(catalog, "parent-first"))  # the file is open before the fork
    child = multiprocessing.get_context("fork").Process(target=_emit_in_child, args=(ledger, 150))
    child.start()
    for i in range(150):
        ledger.emit(make(catalog, f"parent-{i}"))
    child.join(timeout=60)
    assert child.exitcode == 0
    records = read_ledger(path)
    assert len(records) == 301 and len({r.run_id for r in records}) == 301


def test_reading_refuses_a_fifo_and_a_huge_line(tmp_path: Path, catalog, monkeypatch) -> None:
    import os

    from routedllm.records import ledger as ledger_module

    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(LedgerError, match="not a regular file"):
            read_ledger(tmp_path / "fifo")
    monkeypatch.setattr(ledger_module, "MAX_LINE_BYTES", 5000)
    monkeypatch.setattr(ledger_module, "_READ_BLOCK", 777)
    path = tmp_path / "calls.jsonl"
    good = make(catalog, "a").model_dump_json()  # ~3.5 KB: spans several blocks
    path.write_text(good + "\n" + "x" * 12_000 + "\n" + good + "\n")
    with pytest.raises(LedgerError, match=r"calls.jsonl:2: not a CallRecord \(longer than"):
        read_ledger(path)
    path.write_text(good + "\n\n" + good + "\n" + "y" * 9000)  # a torn, overlong tail
    with pytest.warns(LedgerWarning, match="truncated last line 4"):
        assert [r.run_id for r in read_ledger(path)] == ["a", "a"]


def test_records_refuse_non_finite_numbers_and_negative_costs(catalog) -> None:
    line = make(catalog, "a").model_dump_json()
    for bad in ('"cost_usd":NaN', '"cost_usd":-1.0', '"latency_s":Infinity'):
        field = bad.split(":")[0]
        start = line.index(field)
        end = line.index(",", start)
        with pytest.raises(ValueError):
            CallRecord.model_validate_json(line[:start] + bad + line[end:])
