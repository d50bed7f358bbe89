"""Bad input, table-driven: each malformed input and the clear error it gets.

Every row builds one malformed input (a catalog file, a policy, tags, messages, a
constructor argument, a CLI flag, a dataset row) and names the error type and the words
the message must contain, so a user can tell what to fix. The words are routedllm's own
(where, which field, what routedllm says); pydantic's wording is never matched: a
ValidationError raised as is is checked on its field path and error type instead.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from routedllm import Catalog, CircuitBreaker, LocalBudget, Policy, Request, decide
from routedllm.cli import main
from routedllm.core.errors import (
    CatalogError,
    InvalidRequestError,
    UnknownModelError,
    UnknownTagError,
)
from routedllm.reliability.budget import BudgetLimits
from routedllm.testing import ModelSpec, Upstream, load_cassette
from routedllm.workload import read_rows
from tests.conftest import fixture_catalog

HI = [{"role": "user", "content": "hi"}]


@dataclass(frozen=True)
class Invalid:
    """A pydantic ValidationError raised as is: the field path and the kind of problem.

    ``kind`` is pydantic's stable error type (``extra_forbidden``, ``greater_than_equal``),
    not its English wording, which routedllm does not own.
    """

    loc: tuple[str | int, ...]
    kind: str


Message = str | tuple[str, ...] | Invalid


class CliError(Exception):
    """The CLI exited 2 with this text on stderr and nothing on stdout."""


def cli(*argv: str) -> Callable[[Path], Any]:
    def run(_: Path) -> None:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:  # argparse's own errors exit 2 the same way
                code = exc.code
        if code == 2 and not out.getvalue() and "error:" in err.getvalue():
            raise CliError(err.getvalue())
        raise AssertionError(f"exit {code}, stdout {out.getvalue()[:200]!r}")

    return run


def cli_file(name: str, text: str, *argv: str) -> Callable[[Path], Any]:
    """The CLI with ``{file}`` in argv replaced by a file holding ``text``."""

    def run(tmp: Path) -> None:
        path = tmp / name
        path.write_text(text, "utf-8")
        cli(*(a.replace("{file}", str(path)) for a in argv))(tmp)

    return run


def catalog_dict(data: Any) -> Callable[[Path], Any]:
    return lambda _: Catalog.from_dict(data)


def override(data: Any) -> Callable[[Path], Any]:
    return lambda _: fixture_catalog().merged(data)


def catalog_file(text: str) -> Callable[[Path], Any]:
    def run(tmp: Path) -> Catalog:
        path = tmp / "catalog.yaml"
        path.write_text(text, "utf-8")
        return Catalog.from_file(path)

    return run


def rows(text: str) -> Callable[[Path], Any]:
    def run(tmp: Path) -> list:
        path = tmp / "w.jsonl"
        path.write_text(text, "utf-8")
        return list(read_rows(path))

    return run


def cassette(text: str) -> Callable[[Path], Any]:
    def run(tmp: Path) -> Any:
        path = tmp / "c.yaml"
        path.write_text(text, "utf-8")
        return load_cassette(path)

    return run


def route(**request: Any) -> Callable[[Path], Any]:
    return lambda _: decide(fixture_catalog(), Policy(), Request(**{"messages": HI, **request}))


def routed_with(**policy: Any) -> Callable[[Path], Any]:
    return lambda _: decide(fixture_catalog(), Policy(**policy), Request(messages=HI))


def model(**fields: Any) -> dict[str, Any]:
    return {"models": [{"id": "a", "name": "A", **fields}]}


ROW = '{"id": "r1", "prompt": "hello"}\n'

CASES: list[tuple[str, Callable[[Path], Any], type[BaseException], Message]] = [
    # catalog files
    (
        "catalog not a mapping",
        catalog_dict([1, 2]),
        CatalogError,
        "a catalog file is a mapping with a 'models' list",
    ),
    (
        "catalog top-level typo",
        override({"model": [{"id": "x"}]}),
        CatalogError,
        "unknown top-level key(s) ['model']",
    ),
    (
        "catalog field typo",
        catalog_dict(model(input_usd_per_mtk=1)),
        CatalogError,
        "model 'a': field input_usd_per_mtk",
    ),
    (
        "catalog negative price",
        catalog_dict(model(input_usd_per_mtok=-1)),
        CatalogError,
        "model 'a': field input_usd_per_mtok",
    ),
    (
        "catalog price with a unit",
        catalog_dict(model(output_usd_per_mtok="$10")),
        CatalogError,
        "model 'a': field output_usd_per_mtok",
    ),
    (
        "catalog score above 100",
        catalog_dict(model(scores={"mmlu": 120})),
        CatalogError,
        "score for mmlu must be within 0-100, got 120",
    ),
    (
        "catalog unknown benchmark",
        catalog_dict(model(scores={"gsm8k": 80})),
        CatalogError,
        "scores.gsm8k",
    ),
    (
        "catalog unknown capability",
        catalog_dict(model(capabilities={"vision": True})),
        CatalogError,
        "model 'a': field capabilities.vision",
    ),
    (
        "catalog rating of 9 stars",
        catalog_dict(model(ratings={"code": 9})),
        CatalogError,
        "rating code must be 1-5 stars, got 9",
    ),
    (
        "catalog duplicate id",
        catalog_dict({"models": [{"id": "a", "name": "A"}, {"id": "a", "name": "B"}]}),
        CatalogError,
        "model id 'a' appears twice",
    ),
    (
        "catalog with no models",
        catalog_dict({"models": []}),
        CatalogError,
        "a catalog needs at least one model",
    ),
    (
        "catalog bad as_of",
        catalog_dict({"catalog": {"as_of": "May 2026"}, **model()}),
        CatalogError,
        "field as_of",
    ),
    (
        "override adds a model without a name",
        override({"models": [{"id": "new-model"}]}),
        CatalogError,
        "model 'new-model': field name",
    ),
    (
        "override renames an unknown model",
        override({"models": [{"id": "x", "renames": "gpt-9"}]}),
        CatalogError,
        "renames unknown model 'gpt-9'",
    ),
    (
        "catalog file not YAML",
        catalog_file("models: [\n  - id: a\n"),
        CatalogError,
        "catalog.yaml: not valid YAML",
    ),
    (
        "catalog file missing",
        lambda tmp: Catalog.from_file(tmp / "nope.yaml"),
        CatalogError,
        "nope.yaml: cannot read catalog file: No such file or directory",
    ),
    # policies
    (
        "policy unknown preset",
        lambda _: Policy(preset="best"),
        ValidationError,
        Invalid(("preset",), "literal_error"),
    ),
    (
        "policy negative gap",
        lambda _: Policy(quality_gap=-3),
        ValidationError,
        Invalid(("quality_gap",), "greater_than_equal"),
    ),
    (
        "policy field typo",
        lambda _: Policy(quality_gaps=3),
        ValidationError,
        Invalid(("quality_gaps",), "extra_forbidden"),
    ),
    (
        "policy unknown capability",
        lambda _: Policy(require={"telepathy"}),
        ValidationError,
        Invalid(("require", 0), "literal_error"),
    ),
    (
        "policy negative cost cap",
        lambda _: Policy(max_cost_usd=-0.01),
        ValidationError,
        Invalid(("max_cost_usd",), "greater_than_equal"),
    ),
    (
        "policy allows an unknown model",
        routed_with(allowed_models={"gpt-9"}),
        UnknownModelError,
        "unknown model 'gpt-9'; the catalog has: gpt-4o",
    ),
    (
        "policy denies an unknown model",
        routed_with(denied_models={"gpt-9"}),
        UnknownModelError,
        "unknown model 'gpt-9'",
    ),
    # tags
    (
        "unknown tag",
        route(tags=["coding"]),
        UnknownTagError,
        "unknown tag 'coding'; known tags: vision, code",
    ),
    (
        "tag_gaps unknown tag",
        lambda _: Policy(tag_gaps={"coding": 3}),
        ValidationError,
        "tag_gaps: unknown tag 'coding'",
    ),
    (
        "tag_gaps out of range",
        lambda _: Policy(tag_gaps={"code": 300}),
        ValidationError,
        "tag_gaps['code'] must be within 0-100 points, got 300",
    ),
    # messages
    (
        "no messages",
        route(messages=[]),
        InvalidRequestError,
        "the message list is empty: give at least one message",
    ),
    (
        "message content a number",
        route(messages=[{"role": "user", "content": 7}]),
        InvalidRequestError,
        "message content must be a string or a list of parts, got int",
    ),
    # Request and constructor arguments
    (
        "max_output_tokens zero",
        route(max_output_tokens=0),
        InvalidRequestError,
        "max_output_tokens must be positive, got 0",
    ),
    (
        "input_tokens negative",
        route(input_tokens=-1),
        InvalidRequestError,
        "input_tokens cannot be negative, got -1",
    ),
    (
        "request unknown capability",
        route(require=frozenset({"telepathy"})),
        InvalidRequestError,
        "unknown capability ['telepathy']; known: image_input, tools, structured_output",
    ),
    (
        "budget negative cap",
        lambda _: BudgetLimits(max_run_usd=-1),
        ValidationError,
        Invalid(("max_run_usd",), "greater_than_equal"),
    ),
    (
        "budget field typo",
        lambda _: BudgetLimits(max_run=1),
        ValidationError,
        Invalid(("max_run",), "extra_forbidden"),
    ),
    (
        "budget zero window",
        lambda _: BudgetLimits(window_s=0),
        ValidationError,
        Invalid(("window_s",), "greater_than"),
    ),
    (
        "budget limits as a dict",
        lambda _: LocalBudget({"max_run_usd": 1}),
        InvalidRequestError,
        "limits must be a BudgetLimits, got dict",
    ),
    (
        "budget negative estimate",
        lambda _: LocalBudget(BudgetLimits()).reserve(-1),
        InvalidRequestError,
        "estimate_usd must be a finite, non-negative number of USD, got -1",
    ),
    (
        "breaker zero cooldown",
        lambda _: CircuitBreaker(cooldown_s=0),
        InvalidRequestError,
        "cooldown_s must be a positive number of seconds, got 0",
    ),
    (
        "breaker with no trip rule",
        lambda _: CircuitBreaker(failures=None),
        InvalidRequestError,
        "needs failures=K or failure_rate=R",
    ),
    (
        "upstream unknown fault",
        lambda _: ModelSpec(faults={"418": 0.1}),
        ValueError,
        "unknown fault '418'; known faults: 429, 500",
    ),
    (
        "upstream shares above 1",
        lambda _: ModelSpec(faults={"500": 0.7, "429": 0.5}),
        ValueError,
        "fault shares add up to 1.2, more than 1",
    ),
    (
        "upstream on a public address",
        lambda _: Upstream(host="0.0.0.0"),
        ValueError,
        "host '0.0.0.0' is not a loopback address",
    ),
    (
        "cassette that is not one",
        cassette("models: []\n"),
        ValueError,
        "c.yaml: not a vcrpy cassette (no 'interactions' list)",
    ),
    # CLI flags
    ("cli unknown tag", cli("route", "--tags", "nope", "hi"), CliError, "unknown tag 'nope'"),
    (
        "cli max tokens zero",
        cli("route", "--max-tokens", "0", "hi"),
        CliError,
        "max_output_tokens must be positive, got 0",
    ),
    (
        "cli max tokens not a number",
        cli("route", "--max-tokens", "abc", "hi"),
        CliError,
        "argument --max-tokens: invalid int value: 'abc'",
    ),
    (
        "cli unknown policy",
        cli("route", "--policy", "best", "hi"),
        CliError,
        "argument --policy: invalid choice: 'best'",
    ),
    (
        "cli negative cost cap",
        cli("route", "--max-cost", "-1", "hi"),
        CliError,
        "error: max_cost_usd:",
    ),
    (
        "cli unknown capability",
        cli("route", "--require", "telepathy", "hi"),
        CliError,
        "argument --require: invalid choice: 'telepathy'",
    ),
    (
        "cli unknown flag",
        cli("route", "--bogus", "hi"),
        CliError,
        "unrecognized arguments: --bogus",
    ),
    (
        "cli prompt and file",
        cli("route", "--file", "m.json", "hi"),
        CliError,
        "give a PROMPT or --file, not both",
    ),
    (
        "cli catalog is a directory",
        lambda tmp: cli("models", "--catalog", str(tmp))(tmp),
        CliError,
        "cannot read catalog file: Is a directory",
    ),
    (
        "cli broken message file",
        cli_file("m.json", '[{"role": "user"', "route", "--file", "{file}"),
        CliError,
        "not a valid JSON message list",
    ),
    (
        "cli missing workload",
        cli("demo", "--workload", "/nonexistent/w.jsonl"),
        CliError,
        "/nonexistent/w.jsonl: cannot read workload: No such file or directory",
    ),
    (
        "cli workload with a bad row",
        cli_file("w.jsonl", ROW + '{"id": "r2"}\n', "demo", "--workload", "{file}"),
        CliError,
        ("w.jsonl:2: field (row):", "a row needs 'messages' or 'prompt'"),
    ),
    # dataset rows
    (
        "row not JSON",
        rows(ROW + '{"id": "r2", "prompt": "x"\n'),
        InvalidRequestError,
        "w.jsonl:2: not valid JSON: Expecting ',' delimiter",
    ),
    (
        "row without input",
        rows('{"id": "r1"}\n'),
        InvalidRequestError,
        ("w.jsonl:1: field (row):", "a row needs 'messages' or 'prompt'"),
    ),
    (
        "row with empty messages",
        rows('{"id": "r1", "messages": []}\n'),
        InvalidRequestError,
        "'messages' is empty",
    ),
    (
        "row messages as a string",
        rows('{"id": "r1", "messages": "hi"}\n'),
        InvalidRequestError,
        "w.jsonl:1: field messages:",
    ),
    (
        "row zero output tokens",
        rows('{"id": "r1", "prompt": "x", "expected_output_tokens": 0}\n'),
        InvalidRequestError,
        "w.jsonl:1: field expected_output_tokens:",
    ),
    (
        "row outcome score above 1",
        rows('{"id": "r1", "prompt": "x", "outcomes": {"gpt-4o": {"score": 1.5}}}\n'),
        InvalidRequestError,
        "w.jsonl:1: field outcomes.gpt-4o.score:",
    ),
    ("row without id", rows('{"prompt": "x"}\n'), InvalidRequestError, "w.jsonl:1: field id:"),
    (
        "row not an object",
        rows("[1, 2]\n"),
        InvalidRequestError,
        "w.jsonl:1: a row is a JSON object, got an array",
    ),
    (
        "workload file missing",
        lambda tmp: list(read_rows(tmp / "nope.jsonl")),
        InvalidRequestError,
        "nope.jsonl: cannot read workload: No such file or directory",
    ),
    # requests and rows of the wrong shape
    (
        "policy tags given as one string",
        route(tags="code"),
        InvalidRequestError,
        "tags must be a list",
    ),
    (
        "policy require given as one string",
        route(require="tools"),
        InvalidRequestError,
        "require must be a set of capability names",
    ),
    (
        "policy messages given as one string",
        route(messages="hello"),
        InvalidRequestError,
        "messages must be a list of messages",
    ),
    (
        "policy a message that is a number",
        route(messages=[42]),
        InvalidRequestError,
        "message 0 must be a dict",
    ),
    (
        "policy max_output_tokens as text",
        route(max_output_tokens="5"),
        InvalidRequestError,
        "max_output_tokens must be an integer",
    ),
    (
        "policy unavailable as a list",
        route(unavailable=["gpt-4o"]),
        InvalidRequestError,
        "unavailable must map model ids to reasons",
    ),
    (
        "catalog gateway base_url not a URL",
        catalog_dict({"catalog": {"gateway": {"base_url": "nope"}}, **model()}),
        CatalogError,
        "gateway.base_url",
    ),
    (
        "row tag not in the vocabulary",
        rows('{"id": "r1", "prompt": "x", "tags": ["coding"]}\n'),
        InvalidRequestError,
        ("w.jsonl:1: field tags:", "unknown tag 'coding'", "(did you mean 'code'?)"),
    ),
    (
        "row field typo",
        rows('{"id": "r1", "prompt": "x", "tag": ["code"]}\n'),
        InvalidRequestError,
        "unknown field 'tag': did you mean 'tags'?",
    ),
    ("row ids repeated", rows(ROW + ROW), InvalidRequestError, "row id 'r1' repeats line 1"),
    (
        "row with prompt and messages",
        rows('{"id": "r1", "prompt": "x", "messages": [{"role": "user", "content": "y"}]}\n'),
        InvalidRequestError,
        "give 'prompt' or 'messages', not both",
    ),
    (
        "cli missing message file",
        cli("route", "--file", "/nonexistent/m.json"),
        CliError,
        "/nonexistent/m.json: cannot read",
    ),
    ("cli empty tag list", cli("route", "--tags", ",", "hi"), CliError, "empty tag"),
    (
        "cli negative price age",
        cli("route", "--max-price-age-days", "-5", "hi"),
        CliError,
        "must be 0 or more days",
    ),
]


@pytest.mark.parametrize(("case", "build", "error", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(tmp_path: Path, case: str, build, error, message) -> None:
    with pytest.raises(error) as info:
        build(tmp_path)
    if isinstance(message, Invalid):
        assert isinstance(info.value, ValidationError)
        found = [(e["loc"], e["type"]) for e in info.value.errors()]
        assert (message.loc, message.kind) in found, f"{case}: {found}"
        return
    for words in (message,) if isinstance(message, str) else message:
        assert words in str(info.value), f"{case}: {info.value}"


def test_the_table_covers_every_kind_of_input() -> None:
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)
    kinds = {c[0].split()[0] for c in CASES}
    assert {"catalog", "policy", "cli", "row", "budget", "upstream"} <= kinds
