"""Hostile files: catalogs, workloads, ledgers and reports built to break the loaders.

Each row of ``CASES`` writes one hostile file (or names a special one: a FIFO, /dev/zero,
a directory) and names the error type and the words its message must contain: the file,
and the field or line where there is one. Nothing may hang, raise a bare Python error
(TypeError, RecursionError, MemoryError, UnicodeDecodeError) or be accepted silently. The
table in docs/testing.md ("Files: catalogs, workloads, ledgers, reports") lists these
cases by name; ``test_the_docs_table_names_real_cases`` keeps it true.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from routedllm import Catalog, JsonlLedger
from routedllm.cli import main
from routedllm.core import catalog as catalog_module
from routedllm.core import files
from routedllm.core.catalog import GatewayChangeWarning
from routedllm.core.errors import CatalogError, InvalidRequestError
from routedllm.records.ledger import LedgerError, LedgerWarning
from routedllm.records.report import read_report
from routedllm.records.schema import Usage, build_record
from routedllm.workload import read_rows
from tests.conftest import fixture_catalog

DOCS = Path(__file__).parent.parent / "docs" / "testing.md"
ESC = "\x1b[31mRED\x1b]0;owned\x07"
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@contextlib.contextmanager
def no_hang(seconds: int = 10) -> Iterator[None]:
    """Fail (instead of blocking the suite) when the body takes longer than ``seconds``."""

    def alarm(*_: Any) -> None:
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class CliError(Exception):
    """The CLI exited 2 with this text on stderr."""


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), no_hang():
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# -- builders: each returns a function of the test's tmp_path ------------------------------
Build = Callable[[Path], Any]


def catalog_text(text: str, name: str = "override.yaml") -> Build:
    def run(tmp: Path) -> Catalog:
        path = tmp / name
        path.write_text(text, "utf-8")
        with no_hang():
            return Catalog.from_file(path, base=fixture_catalog())

    return run


def catalog_bytes(data: bytes, name: str = "override.yaml") -> Build:
    def run(tmp: Path) -> Catalog:
        path = tmp / name
        path.write_bytes(data)
        return Catalog.from_file(path, base=fixture_catalog())

    return run


def catalog_at(special: str) -> Build:
    """The catalog loaded from a FIFO (``fifo``), a directory (``dir``) or a device path."""

    def run(tmp: Path) -> Catalog:
        with no_hang():
            return Catalog.from_file(_special(tmp, special), base=fixture_catalog())

    return run


def standalone(data: Any) -> Build:
    return lambda _: Catalog.from_dict(data, origin="mine.yaml")


def workload_text(text: str) -> Build:
    def run(tmp: Path) -> list[Any]:
        path = tmp / "w.jsonl"
        path.write_text(text, "utf-8")
        return list(read_rows(path))

    return run


def workload_bytes(data: bytes) -> Build:
    def run(tmp: Path) -> list[Any]:
        path = tmp / "w.jsonl"
        path.write_bytes(data)
        return list(read_rows(path))

    return run


def workload_at(special: str) -> Build:
    def run(tmp: Path) -> list[Any]:
        with no_hang():
            return list(read_rows(_special(tmp, special)))

    return run


def report_at(special: str) -> Build:
    def run(tmp: Path) -> Any:
        with no_hang():
            return read_report(_special(tmp, special))

    return run


def ledger_at(special: str) -> Build:
    def run(tmp: Path) -> Any:
        with no_hang():
            return JsonlLedger(_special(tmp, special))

    return run


def cli_catalog(text: str, *argv: str) -> Build:
    def run(tmp: Path) -> None:
        path = tmp / "c.yaml"
        path.write_text(text, "utf-8")
        code, _, err = run_cli(*argv, "--catalog", str(path))
        if code == 2:
            raise CliError(err)
        raise AssertionError(f"exit {code}")

    return run


def _special(tmp: Path, special: str) -> Path:
    if special == "fifo":
        path = tmp / "pipe"
        os.mkfifo(path)
        return path
    if special == "dir":
        return tmp
    if special == "missing-dir":
        return tmp / "no" / "such" / "dir" / "calls.jsonl"
    return Path(special)


def model(**fields: Any) -> str:
    """An override file adding one model ``a`` with ``fields`` (as YAML flow mappings)."""
    body = "".join(f"\n    {k}: {v}" for k, v in fields.items())
    return f"models:\n  - id: a\n    name: A{body}\n"


def nested(depth: int) -> str:
    return "models: " + "[" * depth + "]" * depth + "\n"


LAUGHS = "catalog: {notes: &a [x, x, x, x, x, x, x, x, x, x]}\n" + "".join(
    f"x{i}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(6)
)
ROW = '{"id": "r1", "prompt": "hello"}\n'

CASES: list[tuple[str, Build, type[Exception], tuple[str, ...]]] = [
    # catalog figures
    (
        "catalog price .inf",
        catalog_text(model(input_usd_per_mtok=".inf")),
        CatalogError,
        ("override.yaml: models[0]", "input_usd_per_mtok", "finite"),
    ),
    (
        "catalog price .nan",
        catalog_text(model(output_usd_per_mtok=".nan")),
        CatalogError,
        ("override.yaml: models[0]", "output_usd_per_mtok", "finite"),
    ),
    (
        "catalog price absurd (1e12 per 1M tokens)",
        catalog_text(model(input_usd_per_mtok="1.0e+12")),
        CatalogError,
        ("override.yaml: models[0]", "input_usd_per_mtok"),
    ),
    (
        "catalog speed .inf",
        catalog_text(model(output_tokens_per_s=".inf")),
        CatalogError,
        ("models[0]", "output_tokens_per_s"),
    ),
    (
        "catalog score .nan",
        catalog_text(model(scores="{mmlu: .nan}")),
        CatalogError,
        ("models[0]", "scores.mmlu"),
    ),
    (
        "catalog ttft negative",
        catalog_text(model(ttft_p99_s="[-1, 2]")),
        CatalogError,
        ("models[0]", "ttft_p99_s"),
    ),
    (
        "catalog JSON with NaN",
        catalog_text('{"models": [{"id": "a", "name": "A", "input_usd_per_mtok": NaN}]}', "o.json"),
        CatalogError,
        ("o.json", "NaN is not a JSON number"),
    ),
    (
        "catalog JSON with Infinity",
        catalog_text('{"models": [{"id": "a", "name": "A", "input_usd_per_mtok": Infinity}]}'),
        CatalogError,
        ("override.yaml", "Infinity is not a JSON number"),
    ),
    # wrong types
    (
        "catalog id as a list",
        catalog_text("models:\n  - id: [a, b]\n    name: A\n"),
        CatalogError,
        ("override.yaml: models[0]", "field id: must be a string, not a list"),
    ),
    (
        "catalog id as a mapping",
        catalog_text("models:\n  - id: {a: 1}\n    name: A\n"),
        CatalogError,
        ("models[0]", "field id: must be a string, not a mapping"),
    ),
    (
        "catalog id as a number",
        standalone({"models": [{"id": 123, "name": "A"}]}),
        CatalogError,
        ("mine.yaml: models[0]", "field id"),
    ),
    (
        "catalog renames as a list",
        catalog_text("models:\n  - id: a\n    renames: [gpt-4o]\n"),
        CatalogError,
        ("models[0] (a)", "field renames: must be a string"),
    ),
    (
        "catalog top-level keys of mixed types",
        catalog_text("models: []\n1: x\nfoo: y\n"),
        CatalogError,
        ("override.yaml", "unknown top-level key(s) ['1', 'foo']"),
    ),
    # duplicates
    (
        "catalog id twice in one override",
        catalog_text("models:\n  - id: a\n    name: A\n  - id: a\n    name: B\n"),
        CatalogError,
        ("override.yaml: models[1]", "'a' appears twice in this file", "models[0]"),
    ),
    (
        "catalog existing id updated twice in one override",
        catalog_text(
            "models:\n  - id: gpt-4o\n    input_usd_per_mtok: 1\n"
            "  - id: gpt-4o\n    input_usd_per_mtok: 2\n"
        ),
        CatalogError,
        ("models[1]", "'gpt-4o' appears twice in this file"),
    ),
    (
        "catalog id twice in a standalone catalog",
        standalone({"models": [{"id": "a", "name": "A"}, {"id": "a", "name": "B"}]}),
        CatalogError,
        ("mine.yaml: models[1]", "'a' appears twice"),
    ),
    (
        "catalog renamed id given again",
        catalog_text(
            "models:\n  - id: new\n    renames: gpt-4o\n  - id: gpt-4o\n    name: Again\n"
        ),
        CatalogError,
        ("models[1]", "'gpt-4o' appears twice in this file"),
    ),
    (
        "catalog YAML key twice in a model",
        catalog_text("models:\n  - id: a\n    name: A\n    name: B\n"),
        CatalogError,
        ("override.yaml: line 4", "key 'name' appears twice", "line 3"),
    ),
    (
        "catalog YAML key twice at the top",
        catalog_text("models: []\nmodels:\n  - id: a\n    name: A\n"),
        CatalogError,
        ("override.yaml: line 2", "key 'models' appears twice"),
    ),
    (
        "catalog YAML key twice on one line",
        catalog_text(model(scores="{mmlu: 80, mmlu: 99}")),
        CatalogError,
        ("override.yaml: line 4", "key 'mmlu' appears twice"),
    ),
    (
        "catalog JSON key twice",
        catalog_text('{"models": [{"id": "a", "name": "A", "name": "B"}]}', "o.json"),
        CatalogError,
        ("o.json", "key 'name' appears twice"),
    ),
    # ids and names
    (
        "catalog blank id",
        catalog_text("models:\n  - id: '   '\n    name: A\n"),
        CatalogError,
        ("models[0]", "field id", "no spaces or control characters"),
    ),
    (
        "catalog id with a space",
        catalog_text("models:\n  - id: 'gpt 4o'\n    name: A\n"),
        CatalogError,
        ("models[0]", "field id", "U+0020 SPACE"),
    ),
    (
        "catalog id with a terminal escape",
        standalone({"models": [{"id": "a" + ESC, "name": "A"}]}),
        CatalogError,
        ("mine.yaml: models[0]", "field id", "U+001B"),
    ),
    (
        "catalog homoglyph id (Cyrillic o)",
        catalog_text("models:\n  - id: gpt-4\u043e\n    name: Lookalike\n"),
        CatalogError,
        ("override.yaml", "U+043E CYRILLIC SMALL LETTER O", "allow_non_ascii_ids"),
    ),
    (
        "catalog homoglyph id with the opt-in",
        catalog_text(
            "catalog: {allow_non_ascii_ids: true}\n"
            "models:\n  - id: gpt-4\u043e\n    name: Lookalike\n"
        ),
        CatalogError,
        ("override.yaml", "looks like 'gpt-4o'"),
    ),
    (
        "catalog blank name",
        catalog_text("models:\n  - id: a\n    name: '  '\n"),
        CatalogError,
        ("models[0]", "field name", "blank or holds control characters"),
    ),
    (
        "catalog origin with a terminal escape",
        standalone({"models": [{"id": "a", "name": "A", "origin": ESC}]}),
        CatalogError,
        ("models[0]", "field origin", "control characters"),
    ),
    # dates
    (
        "catalog as_of month 13",
        catalog_text("catalog:\n  as_of: 2026-13-45\nmodels: []\n"),
        CatalogError,
        ("override.yaml: catalog", "field as_of", "not a real date"),
    ),
    (
        "catalog as_of 30 February on a model",
        catalog_text(model(as_of="'2026-02-30'")),
        CatalogError,
        ("models[0]", "field as_of", "not a real date"),
    ),
    (
        "catalog as_of not a date",
        catalog_text("catalog:\n  as_of: last week\nmodels: []\n"),
        CatalogError,
        ("field as_of", "not a date written YYYY"),
    ),
    # gateway
    (
        "catalog gateway key variable not a name",
        catalog_text("catalog:\n  gateway: {api_key_env: 'X; rm -rf /'}\nmodels: []\n"),
        CatalogError,
        ("override.yaml: catalog", "gateway.api_key_env"),
    ),
    (
        "catalog gateway URL without a host",
        catalog_text("catalog:\n  gateway: {base_url: 'https:///v1'}\nmodels: []\n"),
        CatalogError,
        ("gateway.base_url", "names no host"),
    ),
    (
        "catalog gateway URL with a control character",
        standalone(
            {
                "catalog": {"gateway": {"base_url": "https://a\x1b.com/v1"}},
                "models": [{"id": "a", "name": "A"}],
            }
        ),
        CatalogError,
        ("mine.yaml: catalog", "gateway.base_url"),
    ),
    # the file itself
    (
        "catalog is a FIFO",
        catalog_at("fifo"),
        CatalogError,
        ("pipe: cannot read catalog file", "FIFO", "not a regular file"),
    ),
    (
        "catalog is /dev/zero",
        catalog_at("/dev/zero"),
        CatalogError,
        ("/dev/zero: cannot read catalog file", "character device"),
    ),
    (
        "catalog is a directory",
        catalog_at("dir"),
        CatalogError,
        ("cannot read catalog file", "Is a directory"),
    ),
    (
        "catalog binary (NUL bytes)",
        catalog_bytes(b"models:\x00\x01\x02\xff"),
        CatalogError,
        ("override.yaml: catalog file is binary", "offset 7"),
    ),
    (
        "catalog not UTF-8",
        catalog_bytes(b"models:\n  - id: a\n    name: \xff\xfe\n"),
        CatalogError,
        ("override.yaml: catalog file is not UTF-8 text", "0xff"),
    ),
    (
        "catalog list nested 20,000 deep (YAML)",
        catalog_text(nested(20_000)),
        CatalogError,
        ("override.yaml: nested too deep",),
    ),
    (
        "catalog list nested 100 deep (YAML)",
        catalog_text(nested(100)),
        CatalogError,
        ("override.yaml: nested too deep",),
    ),
    (
        "catalog list nested 20,000 deep (JSON)",
        catalog_text('{"models": ' + "[" * 20_000 + "]" * 20_000 + "}", "o.json"),
        CatalogError,
        ("o.json: nested too deep",),
    ),
    (
        "catalog billion laughs (aliases)",
        catalog_text(LAUGHS),
        CatalogError,
        ("override.yaml: YAML aliases expand to more than",),
    ),
    (
        "catalog recursive alias",
        catalog_text("catalog: {notes: &a [*a]}\nmodels: []\n"),
        CatalogError,
        ("override.yaml: a YAML alias refers to itself",),
    ),
    (
        "catalog YAML !!float tag on text",
        catalog_text(model(input_usd_per_mtok="!!float nope")),
        CatalogError,
        ("override.yaml: not valid YAML",),
    ),
    (
        "cli --catalog is a FIFO",
        lambda tmp: _cli_raise("models", "--catalog", str(_special(tmp, "fifo"))),
        CliError,
        ("routedllm: error:", "pipe: cannot read catalog file", "FIFO"),
    ),
    (
        "cli catalog with an id as a list",
        cli_catalog("models:\n  - id: [a]\n    name: A\n", "models"),
        CliError,
        ("routedllm: error:", "models[0]: field id: must be a string"),
    ),
    (
        "cli catalog with an impossible as_of",
        cli_catalog("catalog:\n  as_of: 2026-13-45\nmodels: []\n", "models"),
        CliError,
        ("routedllm: error:", "field as_of", "not a real date"),
    ),
    (
        "cli route --file binary",
        lambda tmp: (
            (tmp / "m.bin").write_bytes(b"\xff\xfe\x00x")
            and _cli_raise("route", "--file", str(tmp / "m.bin"))
        ),
        CliError,
        ("routedllm: error:", "m.bin: not UTF-8 text"),
    ),
    # workloads
    (
        "row NaN score",
        workload_text('{"id": "r1", "prompt": "x", "outcomes": {"a": {"score": NaN}}}\n'),
        InvalidRequestError,
        ("w.jsonl:1:", "NaN is not a JSON number"),
    ),
    (
        "row cost 1e999 (infinite)",
        workload_text(
            '{"id": "r1", "prompt": "x", "outcomes": {"a": {"score": 1, "cost_usd": 1e999}}}\n'
        ),
        InvalidRequestError,
        ("w.jsonl:1:", "outcomes.a.cost_usd", "finite"),
    ),
    (
        "row expected_output_tokens 10**400",
        workload_text(
            '{"id": "r1", "prompt": "x", "expected_output_tokens": 1' + "0" * 400 + "}\n"
        ),
        InvalidRequestError,
        ("w.jsonl:1:", "expected_output_tokens"),
    ),
    (
        "row blank id",
        workload_text('{"id": "  ", "prompt": "x"}\n'),
        InvalidRequestError,
        ("w.jsonl:1:", "field id", "blank or holds control characters"),
    ),
    (
        "row id with a terminal escape",
        workload_text(json.dumps({"id": "r" + ESC, "prompt": "x"}) + "\n"),
        InvalidRequestError,
        ("w.jsonl:1:", "field id", "control characters"),
    ),
    (
        "row id as a list",
        workload_text('{"id": ["r1"], "prompt": "x"}\n'),
        InvalidRequestError,
        ("w.jsonl:1:", "field id"),
    ),
    (
        "row nested 20,000 deep",
        workload_text(
            '{"id": "r1", "prompt": "x", "extra": ' + "[" * 20_000 + "]" * 20_000 + "}\n"
        ),
        InvalidRequestError,
        ("w.jsonl:1:", "nested too deep"),
    ),
    (
        "row binary line",
        workload_bytes(ROW.encode() + b'{"id": "r2", "prompt": "\xff\xfe"}\n'),
        InvalidRequestError,
        ("w.jsonl:2:", "not UTF-8 text", "0xff"),
    ),
    (
        "workload is a FIFO",
        workload_at("fifo"),
        InvalidRequestError,
        ("pipe: cannot read workload", "FIFO"),
    ),
    (
        "workload is /dev/zero",
        workload_at("/dev/zero"),
        InvalidRequestError,
        ("/dev/zero: cannot read workload", "character device"),
    ),
    (
        "workload is a directory",
        workload_at("dir"),
        InvalidRequestError,
        ("cannot read workload", "Is a directory"),
    ),
    # ledgers
    (
        "report of a FIFO",
        report_at("fifo"),
        LedgerError,
        ("pipe: not a regular file",),
    ),
    (
        "report of /dev/zero",
        report_at("/dev/zero"),
        LedgerError,
        ("/dev/zero: not a regular file",),
    ),
    (
        "report of a directory",
        report_at("dir"),
        LedgerError,
        ("not a regular file",),
    ),
    (
        "ledger in a missing directory",
        ledger_at("missing-dir"),
        LedgerError,
        ("calls.jsonl: cannot write the ledger", "does not exist"),
    ),
    (
        "ledger path is a directory",
        ledger_at("dir"),
        LedgerError,
        ("cannot write the ledger", "Is a directory"),
    ),
    (
        "ledger path is a FIFO",
        ledger_at("fifo"),
        LedgerError,
        ("pipe: cannot write the ledger", "FIFO"),
    ),
    (
        "ledger path is /dev/zero",
        ledger_at("/dev/zero"),
        LedgerError,
        ("/dev/zero: cannot write the ledger", "character device"),
    ),
    # booleans where a number belongs (YAML reads true/yes/on as one)
    (
        "catalog price true",
        catalog_text(model(input_usd_per_mtok="true")),
        CatalogError,
        ("override.yaml: models[0]", "input_usd_per_mtok", "not a boolean"),
    ),
    (
        "catalog context window yes",
        catalog_text(model(context_window="yes")),
        CatalogError,
        ("models[0]", "context_window", "not a boolean"),
    ),
    (
        "catalog score true",
        catalog_text(model(scores="{mmlu: true}")),
        CatalogError,
        ("models[0]", "scores", "not a boolean"),
    ),
    (
        "catalog rating on",
        catalog_text(model(ratings="{speed: on}")),
        CatalogError,
        ("models[0]", "ratings", "not a boolean"),
    ),
]


def _cli_raise(*argv: str) -> None:
    code, _, err = run_cli(*argv)
    if code == 2:
        raise CliError(err)
    raise AssertionError(f"exit {code}")


@pytest.mark.parametrize(("case", "build", "error", "words"), CASES, ids=[c[0] for c in CASES])
def test_hostile_file_gets_a_clear_error(
    tmp_path: Path, case: str, build: Build, error: type[Exception], words: tuple[str, ...]
) -> None:
    with pytest.raises(error) as info:
        build(tmp_path)
    for word in words:
        assert word in str(info.value), f"{case}: {info.value}"


# -- catalogs: what is accepted, and how -----------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [[1], {"a": 1}, [[1]], True, "text", 1.5, -3, None, {"id": "x"}],
    ids=lambda v: type(v).__name__ + repr(v)[:10],
)
def test_a_wrong_type_in_any_field_is_a_catalog_error(value: Any) -> None:
    """Every field of a model and of the catalog section, given each wrong kind of value:
    loaded or refused with CatalogError, never a bare TypeError or AttributeError."""
    fields = [f for f in catalog_module.ModelCard.model_fields if f != "id"] + ["renames"]
    for field in fields:
        for entry in ({"id": "a", "name": "A", field: value}, {"id": "gpt-4o", field: value}):
            with contextlib.suppress(CatalogError):
                fixture_catalog().merged({"models": [entry]})
    for field in [*catalog_module.CatalogInfo.model_fields, "gateway.base_url", "gateway.x"]:
        top, _, sub = field.partition(".")
        info = {top: {sub: value}} if sub else {top: value}
        with contextlib.suppress(CatalogError):
            fixture_catalog().merged({"catalog": info, "models": []})
    for top in ("models", "catalog"):
        with contextlib.suppress(CatalogError):
            fixture_catalog().merged({top: value})


def test_an_unquoted_yaml_date_is_read_as_the_date_it_says(tmp_path: Path) -> None:
    path = tmp_path / "o.yaml"
    path.write_text("catalog:\n  as_of: 2026-03-01\nmodels: []\n", "utf-8")
    assert Catalog.from_file(path, base=fixture_catalog()).info.as_of == "2026-03-01"


def test_a_non_ascii_id_loads_with_the_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "o.yaml"
    path.write_text(
        "catalog: {allow_non_ascii_ids: true}\nmodels:\n  - id: 模型-1\n    name: M\n", "utf-8"
    )
    catalog = Catalog.from_file(path, base=fixture_catalog())
    assert "模型-1" in catalog and catalog.info.allow_non_ascii_ids


def test_the_yaml_loader_is_libyamls_c_parser_where_installed() -> None:
    if not getattr(yaml, "__with_libyaml__", False):
        pytest.skip("PyYAML without libyaml: the pure-Python loader is used")
    assert issubclass(files.StrictLoader, yaml.CSafeLoader)


def test_a_json_catalog_is_read_by_the_json_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big override written as JSON does not go through YAML (~50x slower)."""
    monkeypatch.setattr(files, "parse_yaml", lambda *a: pytest.fail("parsed as YAML"))
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"models": [{"id": "a", "name": "A"}]}), "utf-8")
    assert "a" in Catalog.from_file(path, base=fixture_catalog())


def test_a_catalog_file_over_the_size_bound_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.yaml"
    path.write_text("models: []\n" + "#" * 2000 + "\n", "utf-8")
    with pytest.raises(CatalogError, match=r"big.yaml: catalog file is larger than"):
        Catalog.from_file(path, base=fixture_catalog())


@pytest.mark.parametrize(
    ("gateway", "words"),
    [
        ({"base_url": "https://collector.example.net/v1"}, ("'collector.example.net'",)),
        ({"api_key_env": "AWS_SECRET_ACCESS_KEY"}, ("$AWS_SECRET_ACCESS_KEY", "bearer token")),
    ],
    ids=["host", "key variable"],
)
def test_an_override_moving_the_gateway_or_its_key_warns(
    tmp_path: Path, gateway: dict[str, str], words: tuple[str, ...]
) -> None:
    path = tmp_path / "o.yaml"
    path.write_text(yaml.safe_dump({"catalog": {"gateway": gateway}, "models": []}), "utf-8")
    with pytest.warns(GatewayChangeWarning) as caught:
        Catalog.from_file(path, base=fixture_catalog())
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(f"{path}: catalog.gateway.") and all(w in message for w in words)


def test_an_override_keeping_the_gateway_does_not_warn(tmp_path: Path) -> None:
    path = tmp_path / "o.yaml"
    path.write_text(
        "catalog:\n  gateway: {base_url: 'https://global-apis.com/v2'}\nmodels: []\n", "utf-8"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", GatewayChangeWarning)
        Catalog.from_file(path, base=fixture_catalog())


def test_the_cli_shows_the_gateway_warning(tmp_path: Path, packaged_is_fixture: Catalog) -> None:
    path = tmp_path / "o.yaml"
    path.write_text("catalog:\n  gateway: {base_url: 'http://10.0.0.9:8080/v1'}\n", "utf-8")
    code, out, err = run_cli("models", "--catalog", str(path))
    assert code == 0
    assert "routedllm: warning:" in err and "'10.0.0.9'" in err
    assert "gateway: http://10.0.0.9:8080/v1, key from $GLOBAL_API_KEY" in out


def test_catalog_errors_from_the_cli_print_no_terminal_escapes(
    tmp_path: Path, packaged_is_fixture: Catalog
) -> None:
    path = tmp_path / "o.yaml"
    path.write_text(json.dumps({"models": [{"id": "a" + ESC, "name": "A"}]}), "utf-8")
    code, out, err = run_cli("models", "--catalog", str(path))
    assert code == 2 and "\x1b" not in err + out and "\x07" not in err
    code, _, err = run_cli("report", str(path), "--baseline", "x" + ESC)
    assert code == 2 and "\x1b" not in err and "\\x1b" in err


# -- ledgers and reports ----------------------------------------------------------------------
GOOD = {
    "ts": "2026-03-01T00:00:00Z",
    "model": "gpt-4o",
    "run_id": "r",
    "tags": [],
    "outcome": "ok",
    "input_tokens": 10,
    "output_tokens": 5,
    "cost_usd": 0.01,
    "latency_s": 1.0,
}


def write_lines(path: Path, *lines: dict[str, Any]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    return path


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("latency_s", float("inf"), "latency_s: Input should be a finite number"),
        ("ttft_s", float("nan"), "ttft_s: Input should be a finite number"),
        ("cost_usd", float("nan"), "cost_usd: Input should be a finite number"),
        ("cost_usd", float("inf"), "cost_usd: Input should be a finite number"),
        ("cost_usd", -1.0, "cost_usd: Input should be greater than or equal to 0"),
        ("baseline_cost_usd", float("-inf"), "baseline_cost_usd"),
        ("savings_usd", float("nan"), "savings_usd: Input should be a finite number"),
        ("input_tokens", -5, "input_tokens"),
    ],
    ids=lambda v: str(v),
)
def test_report_skips_a_line_with_a_bad_number_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: Any, words: str
) -> None:
    ledger = write_lines(tmp_path / "l.jsonl", GOOD, {**GOOD, field: value}, GOOD)
    assert main(["report", str(ledger), "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in --json"))
    assert data["records"] == 2 and data["skipped_lines"] == 1
    assert data["total"]["cost_usd"] == pytest.approx(0.02)
    assert f"l.jsonl:2: skipped a line that is not a CallRecord ({words}" in err
    assert main(["report", str(ledger)]) == 0
    assert "1 bad lines skipped" in capsys.readouterr().out


def test_report_json_stays_valid_when_sums_overflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = write_lines(tmp_path / "l.jsonl", *[{**GOOD, "cost_usd": 1.5e308}] * 3)
    assert main(["report", str(ledger), "--json"]) == 0
    data = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    assert data["total"]["cost_usd"] is None  # overflowed: unknown, never Infinity


def test_report_counts_bad_lines_beyond_the_ones_it_names(tmp_path: Path) -> None:
    bad = {**GOOD, "latency_s": float("inf")}
    ledger = write_lines(tmp_path / "l.jsonl", GOOD, *[bad] * 25)
    with pytest.warns(LedgerWarning) as caught:
        tally = read_report(ledger)
    assert tally.skipped == 25 and len(caught) == 11
    assert "skipped 15 more lines" in str(caught[-1].message)


def test_report_prints_no_terminal_escapes_from_model_names_or_tags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = write_lines(
        tmp_path / ("l" + "\x1b[2J" + ".jsonl"),
        {**GOOD, "model": "evil" + ESC, "tags": ["t" + ESC], "prices_as_of": "2026" + ESC},
        {**GOOD, "model": "\u202egpt-4o"},  # a right-to-left override
    )
    for argv in ([], ["--json"]):
        assert main(["report", str(ledger), *argv]) == 0
        out, err = capsys.readouterr()
        assert not any(c in out + err for c in "\x1b\x07\u202e"), argv
    assert main(["report", str(ledger)]) == 0
    assert "evil\\x1b[31mRED" in capsys.readouterr().out


def test_report_reads_a_ledger_an_upstream_named_models_in(
    tmp_path: Path, catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model name from an upstream's ``model`` field, written by the ledger itself."""
    path = tmp_path / "calls.jsonl"
    with JsonlLedger(path) as sink:
        sink.emit(build_record(catalog, "x" + ESC, usage=Usage(10, 5), latency_s=0.5, ts=T0))
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "x\\x1b[31mRED" in out


def test_a_ledger_swapped_for_a_fifo_after_construction_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    sink = JsonlLedger(path)
    os.mkfifo(path)
    with no_hang(), pytest.raises(LedgerError, match="FIFO"):
        sink.emit(
            build_record(fixture_catalog(), "gpt-4o", usage=Usage(1, 1), ts=T0, latency_s=0.5)
        )


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root may write any file")
def test_a_read_only_ledger_is_refused_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text("")
    path.chmod(0o444)
    with pytest.raises(LedgerError, match="cannot write the ledger: Permission denied"):
        JsonlLedger(path)


def test_a_new_ledger_is_not_created_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    JsonlLedger(path).close()
    assert not path.exists()


# -- the docs table -----------------------------------------------------------------------------
def _docs_rows() -> list[str]:
    text = DOCS.read_text("utf-8")
    section = text.split("### Files: catalogs, workloads, ledgers, reports", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)


def test_the_docs_table_names_real_cases() -> None:
    """Each row of the docs table names a case of CASES or a test function of this file,
    and every case of CASES has its row."""
    rows = _docs_rows()
    known = {c[0] for c in CASES} | {n for n in globals() if n.startswith("test_")}
    assert len(rows) >= 30 and len(set(rows)) == len(rows)
    assert [r for r in rows if r not in known] == []
    assert [c[0] for c in CASES if c[0] not in rows] == []


def test_a_catalog_error_shows_a_key_with_terminal_escapes_escaped(tmp_path: Path) -> None:
    """A key from the file that names no field (``scores: {"mm<ESC>[2J": 50}``) is quoted
    in the error's field path; it was printed raw (a terminal escape in a CLI error)."""
    text = model(scores='{"mm\\e[2J": 50}')
    with pytest.raises(CatalogError) as info:
        catalog_text(text)(tmp_path)
    assert "\x1b" not in str(info.value) and "scores.'mm\\x1b[2J'" in str(info.value)


def test_models_prints_no_terminal_escapes_even_from_an_unchecked_card(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A card built without validation (``model_construct``) still prints escaped."""
    card = catalog_module.ModelCard.model_construct(
        **{**fixture_catalog().get("gpt-4o").model_dump(), "id": "x" + ESC, "origin": ESC}
    )
    monkeypatch.delenv("ROUTEDLLM_CATALOG", raising=False)
    monkeypatch.setattr(Catalog, "default", classmethod(lambda cls: Catalog([card])))
    for argv in ([], ["--json"]):
        assert main(["models", *argv]) == 0
        out = capsys.readouterr().out
        assert (
            "\x1b" not in out and "\x07" not in out and "\\x1b" in out.replace("\\u001b", "\\x1b")
        )
