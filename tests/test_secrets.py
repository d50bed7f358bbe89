"""The API key never shows: plant a recognisable key and scan every output for it."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import re
import socket
from pathlib import Path

import openai
import pytest

from routedllm import Catalog, RedisBudget
from routedllm.cli import main
from routedllm.core.errors import CatalogError
from routedllm.reliability.budget import BudgetBackendError, BudgetLimits, Reservation
from routedllm.testing import FAULTS, ModelSpec, Upstream

SECRET = "ga_TESTSECRET_0123456789abcdef"


def run_cli(*argv: str) -> tuple[object, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: object = main(list(argv))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue() + err.getvalue()


def commands() -> list[str]:
    """Every subcommand the CLI has (read off argparse's own error message)."""
    _, text = run_cli("no-such-command")
    return re.findall(r"'([a-z][\w-]*)'", text.split("choose from", 1)[1])


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("GLOBAL_API_KEY", SECRET)
    (tmp_path / "m.json").write_text(json.dumps([{"role": "user", "content": "def f(): pass"}]))
    return tmp_path


def test_cli_output_never_holds_the_key(planted: Path) -> None:
    runs = [
        ("--help",),
        ("models",),
        ("models", "--json"),
        ("route", "fix my python loop"),
        ("route", "--json", "--tags", "code", "x"),
        ("route", "--file", str(planted / "m.json")),
        ("demo",),
        ("demo", "--json"),
        ("route", "--tags", "nope", "x"),
        ("route", "--max-tokens", "abc", "x"),
        ("models", "--catalog", str(planted / "missing.yaml")),
        *((cmd, "--help") for cmd in commands()),
    ]
    assert len(commands()) >= 3
    for argv in runs:
        code, text = run_cli(*argv)
        assert text, argv
        assert SECRET not in text, f"the key leaked in the output of {argv}"


def test_a_key_in_the_wrong_catalog_field_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"catalog:\n  gateway:\n    api_key: {SECRET}\nmodels: []\n")
    with pytest.raises(CatalogError) as info:
        Catalog.from_file(path)
    assert "gateway.api_key: Extra inputs are not permitted" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    code, text = run_cli("models", "--catalog", str(path))
    assert code == 2 and "gateway.api_key" in text and SECRET not in text


def test_a_yaml_error_near_a_key_does_not_quote_it(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"catalog:\n  gateway:\n    api_key: {SECRET}: [\nmodels: []\n")
    with pytest.raises(CatalogError) as info:
        Catalog.from_file(path)
    assert "line 3" in str(info.value) and SECRET not in str(info.value)


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_upstream_records_and_client_errors_hold_no_key() -> None:
    with Upstream({f: ModelSpec(script=[f], slow_s=5) for f in FAULTS}) as up:
        c = openai.OpenAI(base_url=up.base_url, api_key=SECRET, max_retries=0, timeout=0.5)
        texts = []
        for fault in FAULTS:
            try:
                list(
                    c.chat.completions.create(
                        model=fault, messages=[{"role": "user", "content": "hi"}], stream=True
                    )
                )
            except Exception as exc:  # noqa: BLE001 - each fault's error is scanned
                texts += [str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)]
        assert len(texts) >= 4 * (len(FAULTS) - 1)  # all but no_choices raise
        assert len(up.requests) == len(FAULTS)
        texts += [repr(up), repr(up.requests), repr(up.counts())]
    for text in texts:
        assert SECRET not in text


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
@pytest.mark.skipif(importlib.util.find_spec("redis") is None, reason="redis-py not installed")
def test_redis_password_stays_out_of_reprs_errors_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as s:  # a free port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    budget = RedisBudget.from_url(
        f"redis://:{SECRET}@127.0.0.1:{port}/2",
        BudgetLimits(max_run_usd=1),
        socket_connect_timeout=1,
    )
    assert f"127.0.0.1:{port}/2" in repr(budget) and SECRET not in repr(budget)
    with pytest.raises(BudgetBackendError) as info:
        budget.reserve(0.1)
    message = str(info.value)
    assert f"127.0.0.1:{port}/2" in message and "calls are refused" in message
    assert SECRET not in message and SECRET not in repr(info.value)
    with caplog.at_level(logging.DEBUG):
        # After a call, a store that went down is logged (the call's answer stands).
        Reservation(id="r1", amount_usd=0.1, model=None, budget=budget).settle(0.1)
        Reservation(id="r2", amount_usd=0.1, model=None, budget=budget).release()
    assert "not recorded" in caplog.text and "not released" in caplog.text
    assert SECRET not in caplog.text


# -- RoutedChatModel: reprs, errors, ledger and DEBUG logs over real HTTP ------------------
@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_routed_chat_model_never_shows_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from routedllm import CostLatencyHandler, LocalBudget, Policy, Request, decide
    from routedllm.adapters.langchain.chat_model import RoutedChatModel
    from routedllm.core.errors import AllAttemptsFailedError, StreamInterruptedError

    catalog = Catalog.default()
    first, second, third = decide(
        catalog, Policy(), Request(messages=[{"role": "user", "content": "summarise this"}])
    ).ranking
    specs = {
        first: ModelSpec(script=["500", "cut", "503"]),
        second: ModelSpec(script=[None, "502"]),
        third: ModelSpec(script=["429"]),
    }
    ledger = tmp_path / "calls.jsonl"
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)  # openai, httpx2 and httpcore log requests at DEBUG
    with Upstream(specs, api_key=SECRET) as up:  # a request without the key gets a 401
        llm = RoutedChatModel(
            base_url=up.base_url,
            api_key=SECRET,
            catalog=catalog,
            budget=LocalBudget(BudgetLimits(max_run_usd=10)),
            timeout=5,
            rate_limit_retries=0,
        )
        config = {"callbacks": [CostLatencyHandler(catalog, ledger_path=ledger)]}
        texts += [
            repr(llm),
            str(llm),
            json.dumps(llm.model_dump(mode="json"), default=str),
            repr(llm.breaker),
            repr(llm.budget),
        ]
        reply = llm.invoke("summarise this", config=config)  # 500, then an answer
        texts.append(json.dumps(reply.response_metadata, default=str))
        with pytest.raises(StreamInterruptedError) as broken:  # first answers, then breaks
            for _ in llm.stream("summarise this", config=config):
                pass
        with pytest.raises(AllAttemptsFailedError) as every:  # 503, 502, 429
            llm.invoke("summarise this", config=config)
        statuses = [(r.model, r.fault) for r in up.requests]
    assert statuses == [
        (first, "500"),
        (second, None),
        (first, "cut"),
        (first, "503"),
        (second, "502"),
        (third, "429"),
    ]  # every request carried the key
    for error in (broken.value, every.value):
        assert error.call is not None
        texts += [str(error), repr(error), repr(error.__cause__), error.call.model_dump_json()]
    lines = ledger.read_text("utf-8").splitlines()
    assert len(lines) == len(statuses)
    texts += [*lines, caplog.text]
    assert "HTTP Request: POST" in caplog.text  # the DEBUG logs were captured
    for text in texts:
        assert SECRET not in text
        assert "Bearer" not in text


def test_a_short_key_does_not_mangle_error_text() -> None:
    """Keys shorter than 8 characters are not scrubbed: "k" would wreck every model id."""
    from routedllm.records.schema import error_text, scrub

    error = RuntimeError("The model `kimi-k2.5` does not exist")
    assert error_text(error, "k") == "The model `kimi-k2.5` does not exist"
    assert scrub(f"bad key {SECRET} sent", SECRET) == "bad key [redacted] sent"
    assert scrub("deepseek-v4-flash", "k") == "deepseek-v4-flash"


def test_no_file_in_cassettes_holds_the_key_or_a_bearer_token() -> None:
    root = Path(__file__).resolve().parents[1] / "cassettes"
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) >= 50
    bearer = re.compile(r"Bearer\s+(?!PLACEHOLDER\b)\S{8,}")
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        assert SECRET not in text and not bearer.search(text), path


# -- the handlers' ledgers, whatever model or proxy raised the error -----------------------
def test_a_plain_chat_models_errors_reach_the_ledger_without_the_key(planted: Path) -> None:
    from routedllm import CostLatencyHandler
    from routedllm.records.ledger import read_ledger
    from tests.fakes import FakeChat

    class Leaky(FakeChat):  # a provider error that quotes the key it was sent
        def _generate(self, *args, **kwargs):
            raise RuntimeError(f"401 Unauthorized: incorrect API key {SECRET}\n" + "x" * 600)

    ledger = planted / "calls.jsonl"
    with pytest.raises(RuntimeError):
        Leaky().invoke("hi", config={"callbacks": [CostLatencyHandler(ledger_path=ledger)]})
    [record] = read_ledger(ledger)
    assert record.outcome == "RuntimeError" and SECRET not in ledger.read_text("utf-8")
    assert record.error.startswith("401 Unauthorized: incorrect API key [redacted] xxx")
    assert len(record.error) == 500 and record.error.endswith("...")  # clipped after scrubbing


def test_litellm_failures_reach_the_ledger_without_the_key(
    planted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("litellm") is None:
        pytest.skip("litellm is not installed")
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch a price map
    import asyncio

    from routedllm.adapters.litellm import LiteLLMHandler
    from routedllm.records.ledger import read_ledger

    ledger = planted / "calls.jsonl"
    handler = LiteLLMHandler(ledger_path=ledger)
    leak = RuntimeError(f"AuthenticationError: incorrect API key provided: {SECRET}")

    def event(trace: str, **slo: str) -> dict:
        return {
            "standard_logging_object": {
                "model": "openai/gpt-4o",
                "model_id": "d1",
                "trace_id": trace,
                **slo,
            },
            "exception": leak,
        }

    handler.log_failure_event(event("t-1", error_str=str(leak)), None, None, None)
    handler.log_failure_event(event("t-2"), None, None, None)  # no error_str: the exception's
    asyncio.run(
        handler.async_post_call_failure_deployment_hook(
            {"model": "gpt-4o", "metadata": {}, "litellm_call_id": "c-3"}, leak, None
        )
    )
    records = read_ledger(ledger)
    assert len(records) == 3 and {r.outcome for r in records} == {"RuntimeError"}
    assert SECRET not in ledger.read_text("utf-8")
    assert all(r.error.endswith("incorrect API key provided: [redacted]") for r in records)
