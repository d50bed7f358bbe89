"""`routedllm report LEDGER.jsonl`: per model and tag, unknown costs shown as unknown, plot."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from routedllm import JsonlLedger
from routedllm.cli import main
from routedllm.records.schema import Usage, build_record

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def ledger(tmp_path: Path, catalog) -> Path:
    path = tmp_path / "calls.jsonl"
    sink = JsonlLedger(path)
    for i in range(20):
        sink.emit(
            build_record(
                catalog,
                "deepseek-v4-flash",
                usage=Usage(1000, 500),
                ts=T0 + dt.timedelta(minutes=i),
                latency_s=1 + i / 10,
                ttft_s=0.2,
                tags=["code"],
                run_id=f"d{i}",
            )
        )
    sink.emit(
        build_record(
            catalog,
            "deepseek-v4-flash",
            usage=Usage(0, 0),
            ts=T0,
            latency_s=0.1,
            outcome="RateLimitError",
            tags=["code"],
            run_id="g0",
        )
    )
    sink.emit(
        build_record(
            catalog,
            "gpt-4o",
            usage=Usage(1000, 500),
            ts=T0,
            latency_s=3.0,
            tags=["code"],
            attempt=2,
            run_id="g0",
        )
    )
    sink.emit(
        build_record(
            catalog,
            "llama-3-70b",
            usage=Usage(1000, 500),
            ts=T0,
            latency_s=2.0,
            tags=["chinese"],
            run_id="l0",
        )
    )
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_report_per_model_and_tag(capsys, ledger: Path) -> None:
    code, out, _ = run(capsys, "report", str(ledger), "--json")
    data = json.loads(out)
    assert code == 0 and data["records"] == 23 and data["runs"] == 22
    flash = data["by_model"]["deepseek-v4-flash"]
    assert flash["attempts"] == 21 and flash["calls"] == 21 and flash["errors"] == 1
    assert flash["error_rate"] == pytest.approx(1 / 21)
    per_call = (1000 * 0.18 + 500 * 0.25) / 1e6
    assert flash["cost_usd"] == pytest.approx(20 * per_call)
    assert flash["savings_usd"] == pytest.approx(20 * ((1000 * 2.5 + 500 * 10) / 1e6 - per_call))
    assert flash["latency_s"]["p50"] == pytest.approx(1.95, rel=0.06)
    assert flash["latency_s"]["p99"] == pytest.approx(2.8, rel=0.011)  # rank 0.99 * (20 - 1)
    assert flash["ttft_s"]["p95"] == pytest.approx(0.2, rel=0.01)
    assert data["by_model"]["llama-3-70b"]["cost_usd"] is None
    # g0's 429 and its fallback are two attempts of one call: calls are distinct run ids
    assert data["by_tag"]["code"]["attempts"] == 22 and data["by_tag"]["code"]["calls"] == 21
    assert data["by_tag"]["chinese"]["attempts"] == data["by_tag"]["chinese"]["calls"] == 1
    assert data["by_model"]["gpt-4o"]["attempts"] == data["by_model"]["gpt-4o"]["calls"] == 1
    assert (data["total"]["attempts"], data["total"]["calls"]) == (23, 22)
    assert data["total"]["unpriced_attempts"] == 1 and data["baseline_models"] == ["gpt-4o"]


def test_text_report_says_unknown_not_zero(capsys, ledger: Path) -> None:
    code, out, _ = run(capsys, "report", str(ledger))
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "23 attempts in 22 calls;" in out.splitlines()[0]
    assert rows["model"].split()[:3] == ["model", "attempts", "errors"]  # not "calls"
    assert rows["tag"].split()[:2] == ["tag", "attempts"] and "calls" not in rows["tag"]
    assert "unknown" in rows["llama-3-70b"] and "$0.000000" not in rows["llama-3-70b"]
    assert "unknown" in rows["chinese"]
    assert "+1 unknown" in rows["total"]
    assert "1 (5%)" in rows["deepseek-v4-flash"]  # errors
    assert rows["gpt-4o"].split()[1] == "1"


def test_baseline_can_be_repriced(capsys, ledger: Path) -> None:
    _, out, _ = run(capsys, "report", str(ledger), "--json", "--baseline", "gpt-4o-mini")
    data = json.loads(out)
    flash = data["by_model"]["deepseek-v4-flash"]
    assert data["baseline_models"] == ["gpt-4o-mini"]
    assert flash["baseline_cost_usd"] == pytest.approx(20 * (1000 * 0.15 + 500 * 0.6) / 1e6)
    assert flash["savings_usd"] == pytest.approx(20 * (450 - 305) / 1e6)
    assert flash["cost_usd"] == pytest.approx(20 * 305 / 1e6)  # the recorded cost is kept


def test_truncated_ledger_warns_and_reports(capsys, ledger: Path) -> None:
    with ledger.open("ab") as f:
        f.write(b'{"ts": "2026-03-01T12:')
    code, out, err = run(capsys, "report", str(ledger), "--json")
    assert code == 0 and json.loads(out)["records"] == 23
    assert "warning" in err and "truncated last line" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "/nonexistent/calls.jsonl"], "cannot read ledger"),
        (["report", "LEDGER", "--baseline", "gpt-9"], "unknown model 'gpt-9'"),
    ],
)
def test_errors(capsys, ledger: Path, argv: list[str], message: str) -> None:
    argv = [str(ledger) if a == "LEDGER" else a for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and message in err


def test_empty_ledger(capsys, tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    code, out, _ = run(capsys, "report", str(path))
    assert code == 0 and "no records" in out


def test_plot_writes_a_png(capsys, ledger: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    code, _, _ = run(capsys, "report", str(ledger), "--plot", str(png))
    assert code == 0
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_a_plot_path_that_cannot_be_written_is_refused_before_reading(
    capsys, ledger: Path, tmp_path: Path
) -> None:
    for bad in (tmp_path / "missing" / "x.png", tmp_path):
        code, _, err = run(capsys, "report", str(ledger), "--plot", str(bad))
        assert code == 2 and f"{bad}: cannot write a plot" in err and "Traceback" not in err


def test_a_byte_order_mark_keeps_the_first_record(capsys, ledger: Path, tmp_path: Path) -> None:
    """An editor's save puts a BOM before the first line: the record is still counted."""
    marked = tmp_path / "bom.jsonl"
    marked.write_bytes(b"\xef\xbb\xbf" + ledger.read_bytes())
    plain, marked_out = (
        json.loads(run(capsys, "report", str(p), "--json")[1]) for p in (ledger, marked)
    )
    assert marked_out["total"]["attempts"] == plain["total"]["attempts"]
    assert marked_out["skipped_lines"] == plain["skipped_lines"] == 0


def test_a_compressed_ledger_says_to_decompress_it(capsys, ledger: Path, tmp_path: Path) -> None:
    import gzip

    packed = tmp_path / "calls.jsonl.gz"
    packed.write_bytes(gzip.compress(ledger.read_bytes()))
    code, _, err = run(capsys, "report", str(packed))
    assert code == 2 and "gzip-compressed file: decompress it first" in err


def _line(catalog, **fields) -> str:
    record = build_record(
        catalog, "gpt-4o-mini", usage=Usage(1000, 500), ts=T0, latency_s=1.0, run_id="ok"
    )
    data = json.loads(record.model_dump_json())
    data.update(fields)
    return json.dumps(data)  # allow_nan: writes NaN and Infinity as JSON has no words for


@pytest.mark.parametrize(
    "bad",
    [
        {"cost_usd": float("nan")},
        {"cost_usd": float("inf")},
        {"latency_s": float("-inf")},
        {"savings_usd": float("nan")},
        {"cost_usd": -0.5},
        {"baseline_cost_usd": -1.0},
        {"input_tokens": -3},
    ],
)
def test_a_line_with_a_non_finite_number_or_a_negative_cost_is_skipped(
    capsys, tmp_path: Path, catalog, bad: dict
) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text(_line(catalog) + "\n" + _line(catalog, **bad) + "\n" + _line(catalog) + "\n")
    code, out, err = run(capsys, "report", str(path), "--json")
    data = json.loads(out)  # valid JSON: json.loads would accept NaN, so check the text too
    assert code == 0 and data["records"] == 2 and data["skipped_lines"] == 1
    assert "NaN" not in out and "Infinity" not in out
    assert "calls.jsonl:2: skipped a line that is not a CallRecord" in err


def test_sums_that_overflow_print_as_null_in_json(capsys, tmp_path: Path, catalog) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text("".join(_line(catalog, cost_usd=1.5e308) + "\n" for _ in range(3)))
    code, out, _ = run(capsys, "report", str(path), "--json")
    assert code == 0 and json.loads(out)["total"]["cost_usd"] is None
    assert "Infinity" not in out


def test_many_bad_lines_warn_a_few_times_then_count(capsys, tmp_path: Path, catalog) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text(_line(catalog) + "\n" + "not json\n" * 50)
    code, out, err = run(capsys, "report", str(path), "--json")
    assert code == 0 and json.loads(out)["skipped_lines"] == 50
    assert err.count("skipped a line") == 10 and "skipped 40 more lines" in err


def test_a_file_with_no_record_is_an_error(capsys, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\nworld\n")
    code, out, err = run(capsys, "report", str(path))
    assert code == 2 and out == "" and "not a routedllm ledger" in err


def test_names_with_terminal_escapes_are_printed_escaped(capsys, tmp_path: Path, catalog) -> None:
    path = tmp_path / "calls.jsonl"
    evil = "gpt\x1b[2J\x1b]0;owned\x07-4o\u202e"
    path.write_text(_line(catalog, model=evil, tags=["co\x1bde"], prices_as_of="\x1b[31m") + "\n")
    code, out, _ = run(capsys, "report", str(path))
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "gpt\\x1b[2J\\x1b]0;owned\\x07-4o\\u202e" in out and "co\\x1bde" in out
    code, out, _ = run(capsys, "report", str(path), "--json")
    assert "\x1b" not in out and json.loads(out)["by_model"][evil]["attempts"] == 1


def test_a_fifo_is_refused_without_waiting(capsys, tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    fifo = tmp_path / "calls.jsonl"
    os.mkfifo(fifo)  # nothing writes to it: reading would block forever
    code, out, err = run(capsys, "report", str(fifo))
    assert code == 2 and out == "" and "not a regular file" in err


def test_a_directory_is_refused(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "report", str(tmp_path))
    assert code == 2 and "not a regular file" in err


def test_a_huge_line_is_skipped_without_reading_it_whole(
    capsys, tmp_path: Path, catalog, monkeypatch
) -> None:
    from routedllm.records import ledger as ledger_module

    monkeypatch.setattr(ledger_module, "MAX_LINE_BYTES", 4096)
    monkeypatch.setattr(ledger_module, "_READ_BLOCK", 1000)
    path = tmp_path / "calls.jsonl"
    huge = '{"model": "' + "x" * 20_000 + '"}'
    path.write_text(_line(catalog) + "\n" + huge + "\n" + _line(catalog) + "\n")
    code, out, err = run(capsys, "report", str(path), "--json")
    assert code == 0 and json.loads(out)["records"] == 2
    assert "calls.jsonl:2: skipped" in err and "longer than" in err


def test_older_lines_without_optional_fields_still_count(capsys, tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text('{"ts": "2026-03-01T12:00:00Z", "model": "gpt-4o", "latency_s": 1.0}\n\n')
    code, out, _ = run(capsys, "report", str(path), "--json")
    data = json.loads(out)
    assert code == 0 and data["records"] == 1 and data["runs"] == 1
    assert data["by_tag"]["(untagged)"]["attempts"] == 1 and data["total"]["errors"] == 0


def test_the_streamed_report_equals_the_report_of_the_records(capsys, ledger: Path) -> None:
    from routedllm.records.ledger import read_ledger
    from routedllm.records.report import summarize

    _, out, _ = run(capsys, "report", str(ledger), "--json")
    streamed = json.loads(out)
    expected = json.loads(json.dumps(summarize(read_ledger(ledger))))
    streamed.pop("ledger")
    assert streamed == expected


def test_a_call_counts_once_per_view_however_many_groups_its_attempts_are_in(
    capsys, tmp_path: Path, catalog
) -> None:
    path = tmp_path / "calls.jsonl"
    sink = JsonlLedger(path)
    attempts = [  # (model, tags, run id): r is retried on gpt-4o, then falls back
        ("gpt-4o", ["code"], "r"),
        ("gpt-4o", ["code"], "r"),
        ("deepseek-v4-flash", ["code"], "r"),
        ("deepseek-v4-flash", ["code", "math"], "s"),
        ("gpt-4o", ["code"], "t"),
        ("deepseek-v4-flash", ["code"], None),  # no run id: a call of its own
    ]
    for i, (model, tags, run_id) in enumerate(attempts):
        sink.emit(
            build_record(
                catalog,
                model,
                usage=Usage(10, 5),
                ts=T0,
                latency_s=1.0,
                tags=tags,
                attempt=i + 1,
                run_id=run_id,
            )
        )
    sink.close()
    code, out, _ = run(capsys, "report", str(path), "--json")
    data = json.loads(out)
    assert code == 0 and (data["records"], data["runs"]) == (6, 4)
    calls = {name: view["calls"] for name, view in data["by_model"].items()}
    assert calls == {"gpt-4o": 2, "deepseek-v4-flash": 3}
    assert {name: view["calls"] for name, view in data["by_tag"].items()} == {"code": 4, "math": 1}
    assert data["total"]["calls"] == 4
