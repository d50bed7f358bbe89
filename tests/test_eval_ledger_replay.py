"""Ledger replay: what the recorded calls would have cost under another policy."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from routedllm import Catalog, JsonlLedger, Policy, Request, decide
from routedllm.cli import main
from routedllm.core.pricing import call_cost
from routedllm.evaluation.ledger_replay import group_calls, render, replay_ledger
from routedllm.records.schema import Usage, build_record
from tests.conftest import fixture_catalog

CATALOG = fixture_catalog()
TS = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def first(tags: list[str], preset: str, tokens_in: int, tokens_out: int) -> str:
    return decide(
        CATALOG,
        Policy(preset=preset),
        Request(
            messages=[{"role": "user", "content": "."}],
            tags=tags,
            input_tokens=tokens_in,
            max_output_tokens=tokens_out,
        ),
    ).model


def call(
    run: str,
    tags: list[str],
    tokens: tuple[int, int, int] = (1200, 300, 0),
    preset: str = "value",
    model: str | None = None,
    **kw,
):
    tokens_in, tokens_out, cached = tokens
    model = model or first(tags, preset, tokens_in, tokens_out)
    return build_record(
        CATALOG,
        model,
        usage=Usage(tokens_in, tokens_out, cached),
        ts=TS,
        latency_s=1.0,
        run_id=run,
        tags=tags,
        policy=preset,
        **kw,
    )


def fallback(run: str, tags: list[str]) -> list:
    """A call whose first choice was rate limited: two attempts."""
    ranking = decide(
        CATALOG,
        Policy(),
        Request(
            messages=[{"role": "user", "content": "."}],
            tags=tags,
            input_tokens=900,
            max_output_tokens=200,
        ),
    ).ranking
    failed = build_record(
        CATALOG,
        ranking[0],
        usage=Usage(0, 0),
        ts=TS,
        latency_s=0.1,
        run_id=run,
        tags=tags,
        outcome="RateLimitError",
        policy="value",
    )
    return [failed, call(run, tags, (900, 200, 0), model=ranking[1], attempt=2)]


LEDGER = [
    call("a", ["code"]),
    call("b", ["general"], (3000, 800, 1000)),
    call("c", ["chinese"]),
    *fallback("d", ["general"]),
    call("v", ["vision"], (1500, 100, 0)),
]


def test_same_policy_reproduces_the_recorded_cost_without_fallbacks() -> None:
    replay = replay_ledger(LEDGER, CATALOG, Policy())
    plain = [c for c in replay.calls if c.run_id != "d"]
    assert all(c.model == c.recorded_model for c in plain)
    assert all(c.cost_usd == pytest.approx(c.recorded_cost_usd) for c in plain)
    d = next(c for c in replay.calls if c.run_id == "d")
    ranking = decide(
        CATALOG,
        Policy(),
        Request(
            messages=[{"role": "user", "content": "."}],
            tags=["general"],
            input_tokens=900,
            max_output_tokens=200,
        ),
    ).ranking
    assert d.recorded_model == ranking[1] and d.model == ranking[0]  # B's choice answers at once
    assert d.recorded_cost_usd == pytest.approx(sum(r.cost_usd for r in LEDGER if r.run_id == "d"))


def test_another_policy_is_priced_on_the_same_tokens() -> None:
    replay = replay_ledger(LEDGER, CATALOG, Policy(preset="quality"), "quality")
    for c in replay.calls:
        model = first(list(c.tags), "quality", c.input_tokens, c.output_tokens)
        assert c.model == model
        assert c.cost_usd == pytest.approx(
            call_cost(
                CATALOG.get(model), c.input_tokens, c.output_tokens, c.cached_input_tokens
            ).total_usd
        )
    totals = replay.totals()
    assert totals["calls"] == totals["compared"] == 5
    assert totals["cost_usd"] == pytest.approx(sum(c.cost_usd for c in replay.calls))
    assert totals["recorded_cost_usd"] == pytest.approx(sum(r.cost_usd for r in LEDGER))
    assert totals["cost_ratio"] == pytest.approx(totals["cost_usd"] / totals["recorded_cost_usd"])
    assert totals["changed_model"] == sum(c.model != c.recorded_model for c in replay.calls)
    assert sum(replay.switches().values()) == 5
    assert replay.by_tag()["general"]["calls"] == 2


def test_calls_that_cannot_be_replayed_are_set_apart() -> None:
    shadow = call("s", ["code"], model="gpt-4o").model_copy(
        update={"policy": "shadow", "parent_run_id": "a"}
    )
    failed = build_record(
        CATALOG,
        "gpt-4o",
        usage=Usage(0, 0),
        ts=TS,
        latency_s=0.1,
        run_id="f",
        outcome="APITimeoutError",
    )
    no_usage = build_record(CATALOG, "gpt-4o", usage=None, ts=TS, latency_s=1.0, run_id="u")
    replay = replay_ledger([*LEDGER, shadow, failed, no_usage], CATALOG, Policy())
    assert replay.skipped == {"shadow": 1, "no_answer": 1, "no_usage": 1}
    assert len(replay.calls) == 5
    calls, skipped = group_calls([*LEDGER, shadow])
    assert [len(c) for c in calls] == [1, 1, 1, 2, 1] and skipped["shadow"] == 1


def test_a_model_that_cannot_serve_a_call_is_reported() -> None:
    text_only = Policy(
        preset="quality",
        allowed_models=frozenset({"deepseek-v4-flash"}),
        allow_unscored=True,
        allow_unpriced=True,
    )
    replay = replay_ledger(LEDGER, CATALOG, text_only, "always:deepseek-v4-flash")
    vision = next(c for c in replay.calls if c.run_id == "v")
    assert vision.model is None and vision.cost_usd is None and "image_input" in vision.why_none
    assert "not in allowed_models" not in vision.why_none
    totals = replay.totals()
    assert totals["no_model"] == 1 and totals["compared"] == 4
    assert "image_input" in render([replay], "ledger")


def test_cli_replays_a_ledger(capsys, tmp_path: Path, packaged_is_fixture: Catalog) -> None:
    path = tmp_path / "calls.jsonl"
    sink = JsonlLedger(path)
    for record in LEDGER:
        sink.emit(record)
    code = main(
        [
            "eval",
            "--replay-ledger",
            str(path),
            "--policy",
            "quality",
            "--policy",
            "always:gpt-4o",
            "--json",
        ]
    )
    out, _ = capsys.readouterr()
    data = json.loads(out)
    quality, gpt = data["policies"]
    assert code == 0 and quality["policy"] == "quality" and gpt["policy"] == "always:gpt-4o"
    assert {s["to"] for s in gpt["switches"]} == {"gpt-4o"}
    assert gpt["totals"]["cost_usd"] == pytest.approx(
        sum(
            call_cost(
                CATALOG.get("gpt-4o"), r.input_tokens, r.output_tokens, r.cached_input_tokens
            ).total_usd
            for r in LEDGER
            if r.ok
        )
    )
    code = main(["eval", "--replay-ledger", str(path), "--policy", "value"])
    out, _ = capsys.readouterr()
    assert code == 0 and "replayed under value" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--policy", "value"], "cannot read ledger"),
        ([], "needs --policy"),
        (["--policy", "sweep"], "does not route single calls"),
        (["--online", "--policy", "value"], "not both"),
    ],
)
def test_cli_replay_errors(capsys, tmp_path: Path, argv, message) -> None:
    code = main(["eval", "--replay-ledger", str(tmp_path / "missing.jsonl"), *argv])
    _, err = capsys.readouterr()
    assert code == 2 and message in err
