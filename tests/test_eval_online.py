"""Online evaluation: rows through a chat model, graded, costed and recorded in a ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from routedllm import Policy, Request, decide
from routedllm.adapters.langchain.chat_model import RoutedChatModel
from routedllm.cli import main
from routedllm.core.errors import InvalidRequestError, UnknownModelError
from routedllm.core.pricing import call_cost
from routedllm.evaluation.online import NO_ANSWER, online_policy, quantile, render, run_online
from routedllm.records.ledger import read_ledger
from routedllm.testing import ModelSpec, Upstream
from routedllm.workload import WorkloadRow
from tests.conftest import fixture_catalog
from tests.fakes import FakeChat

CATALOG = fixture_catalog()
KEY = "test-key-not-a-secret"


def chosen(tag: str, preset: str = "value") -> str:
    """The model the router picks first for a call with this tag."""
    return decide(
        CATALOG,
        Policy(preset=preset),
        Request(messages=[{"role": "user", "content": "x"}], tags=[tag]),
    ).model


CODE, ZH, GENERAL = chosen("code"), chosen("chinese"), chosen("general")

ROWS = [
    WorkloadRow(
        id="add",
        prompt="Write add(a, b).",
        tags=["code"],
        grader="python_tests",
        tests="assert add(2, 3) == 5\n",
    ),
    WorkloadRow(
        id="capital",
        prompt="Capital of France? One word.",
        tags=["general"],
        grader="exact",
        reference="Paris",
    ),
    WorkloadRow(
        id="zh", prompt="中国的首都是哪里？", tags=["chinese"], grader="regex", reference="北京"
    ),
    WorkloadRow(
        id="json",
        prompt='Give {"a": 1} as JSON.',
        tags=["code"],
        grader="json_schema",
        schema={"type": "object", "required": ["a"]},
    ),
    WorkloadRow(id="free", prompt="Say something nice.", tags=["general"]),
]
REPLIES = {
    CODE: "```python\ndef add(a, b):\n    return a + b\n```",
    GENERAL: " paris ",
    ZH: "中国的首都是上海。",  # wrong on purpose
}


def upstream(**extra: ModelSpec) -> Upstream:
    specs = {
        m: ModelSpec(reply=r, prompt_tokens=40, completion_tokens=12) for m, r in REPLIES.items()
    }
    return Upstream({**specs, **extra}, api_key=KEY)


def routed(up: Upstream, **kw) -> RoutedChatModel:
    return RoutedChatModel(api_key=KEY, base_url=up.base_url, catalog=CATALOG, **kw)


def test_preconditions_three_distinct_models() -> None:
    assert len({CODE, ZH, GENERAL}) == 3


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_rows_are_graded_costed_and_ledgered(tmp_path: Path) -> None:
    ledger = tmp_path / "eval.jsonl"
    with upstream() as up:
        report = run_online(ROWS, routed(up), catalog=CATALOG, ledger_path=str(ledger))
    scores = {r.id: r.score for r in report.rows}
    assert scores == {"add": 1.0, "capital": 1.0, "zh": 0.0, "json": 0.0, "free": None}
    assert [r.id for r in report.rows] == [r.id for r in ROWS]  # input order kept
    by_model = report.by_model()
    assert by_model[CODE].graded == 2 and by_model[CODE].quality == 0.5
    assert by_model[GENERAL].quality == 1.0 and by_model[GENERAL].ungraded == 1
    assert by_model[ZH].quality == 0.0
    assert report.by_tag()["code"].quality == 0.5
    total = report.total()
    assert total.graded == 4 and total.quality == pytest.approx(0.5)
    # cost: the served usage at the catalog's prices, and the same tokens on gpt-4o
    for r in report.rows:
        assert r.cost_usd == pytest.approx(call_cost(CATALOG.get(r.model), 40, 12).total_usd)
        assert r.baseline_cost_usd == pytest.approx(
            call_cost(CATALOG.get("gpt-4o"), 40, 12).total_usd
        )
    assert total.cost_usd == pytest.approx(sum(r.cost_usd for r in report.rows))
    assert 0 < total.cost_ratio < 1
    records = read_ledger(ledger)
    assert len(records) == len(ROWS) and {r.run_id for r in records} == {
        r.records[0].run_id for r in report.rows
    }
    data = report.to_json()
    assert data["by_model"][CODE]["quality"] == 0.5 and data["rows"][0]["score"] == 1.0
    assert data["total"]["latency_s"]["p50"] > 0


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_fallbacks_and_failures_are_counted_not_fatal(tmp_path: Path) -> None:
    ledger = tmp_path / "eval.jsonl"
    broken = ModelSpec(faults={"500": 1.0})
    with upstream(**{ZH: broken}) as up:
        llm = routed(
            up, policy=Policy(allowed_models=frozenset({CODE, ZH, GENERAL}), allow_unscored=True)
        )
        report = run_online(ROWS, llm, catalog=CATALOG, ledger_path=str(ledger))
        zh_requests = len(up.requests_for(ZH))
    zh = next(r for r in report.rows if r.id == "zh")
    assert zh.fell_back and zh.requested_model == ZH and zh.model != ZH
    assert zh.records[0].outcome == "InternalServerError"
    assert zh_requests == 1 and report.total().fallbacks == 1
    assert len(read_ledger(ledger)) == len(ROWS) + 1  # one line per attempt

    with upstream(**{m: broken for m in REPLIES}) as up:
        failed = run_online(
            ROWS[:2],
            routed(up, policy=Policy(allowed_models=frozenset(REPLIES), allow_unscored=True)),
            catalog=CATALOG,
        )
    assert all(r.model is None and r.error for r in failed.rows)
    assert failed.by_model()[NO_ANSWER].errors == 2 and failed.total().quality is None
    assert all(r.cost_usd == 0 for r in failed.rows)  # failed attempts returned no tokens


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_concurrency_is_bounded() -> None:
    rows = [WorkloadRow(id=f"r{i}", prompt="hi", tags=["code"]) for i in range(8)]
    with Upstream({CODE: ModelSpec(latency_s=0.2)}, api_key=KEY) as up:
        report = run_online(rows, routed(up), catalog=CATALOG, concurrency=3)
        peak = up.max_concurrent
    assert len(report.rows) == 8 and all(r.model == CODE for r in report.rows)
    assert 1 < peak <= 3


def test_any_chat_model_and_a_judge() -> None:
    rows = [
        WorkloadRow(
            id="q", prompt="What is 2 + 2?", grader="judge", reference="4", tags=["general"]
        ),
        WorkloadRow(id="r", prompt="Name a colour.", grader="regex", reference="(?i)blue"),
    ]
    judge = FakeListChatModel(responses=["Correct and concise. Rating: [[8]]"])
    seen = []
    report = run_online(
        rows,
        FakeChat(model="gpt-4o-mini", reply="4, and blue", output_tokens=5),
        catalog=CATALOG,
        judge=judge,
        on_row=seen.append,
    )
    assert {r.id: r.score for r in report.rows} == {"q": 0.8, "r": 1.0}
    assert sorted(r.id for r in seen) == ["q", "r"]
    assert report.label == "always:gpt-4o-mini" and report.judge["attempts"] == 1
    q = report.rows[0]
    assert q.model == "gpt-4o-mini" and q.tags == ("general",)
    assert q.cost_usd == pytest.approx(
        call_cost(CATALOG.get("gpt-4o-mini"), len("What is 2 + 2?"), 5).total_usd
    )
    assert "judge: 1 calls" in render([report], "rows")


def test_a_judge_that_fails_leaves_the_row_ungraded() -> None:
    class Broken(FakeListChatModel):
        def _call(self, *a, **k):
            raise RuntimeError("judge down")

    rows = [WorkloadRow(id="q", prompt="2 + 2?", grader="judge")]
    report = run_online(rows, FakeChat(), catalog=CATALOG, judge=Broken(responses=["x"]))
    assert report.rows[0].score is None and "judge down" in report.rows[0].grade.detail
    assert report.total().ungraded == 1


def test_bad_rows_fail_before_any_call() -> None:
    calls = FakeChat()
    with pytest.raises(InvalidRequestError, match="judge"):
        run_online([WorkloadRow(id="q", prompt="2 + 2?", grader="judge")], calls, catalog=CATALOG)
    with pytest.raises(InvalidRequestError, match="unknown grader"):
        run_online([WorkloadRow(id="q", prompt="x", grader="vibes")], calls, catalog=CATALOG)
    with pytest.raises(InvalidRequestError, match="concurrency"):
        run_online([], calls, catalog=CATALOG, concurrency=0)


def test_online_policy_specs() -> None:
    value = online_policy("value:gap=4,max_cost=0.01", CATALOG)
    assert value.policy.quality_gap == 4 and value.policy.max_cost_usd == 0.01
    assert value.model_kwargs() == {"policy": value.policy}
    pinned = online_policy("always:gpt-4o", CATALOG)
    assert pinned.pinned == "gpt-4o" and pinned.model_kwargs() == {"model": "gpt-4o"}
    for bad in ("sweep", "oracle", "random", "always"):
        with pytest.raises(InvalidRequestError):
            online_policy(bad, CATALOG)
    with pytest.raises(UnknownModelError):
        online_policy("always:gpt-5", CATALOG)


def test_quantile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.5) == 50 and quantile(values, 0.95) == 95
    assert quantile([3.0], 0.95) == 3.0 and quantile([], 0.5) is None


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_cli_online_compares_policies(capsys, tmp_path: Path, monkeypatch) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r.model_dump(exclude_none=True)) + "\n" for r in ROWS))
    ledger = tmp_path / "l.jsonl"
    monkeypatch.setenv("GLOBAL_API_KEY", KEY)
    with upstream(
        **{"gpt-4o": ModelSpec(reply="Paris", prompt_tokens=40, completion_tokens=12)}
    ) as up:
        code = main(
            [
                "eval",
                str(rows),
                "--online",
                "--base-url",
                up.base_url,
                "--json",
                "--policy",
                "value",
                "--policy",
                "always:gpt-4o",
                "--ledger",
                str(ledger),
                "--concurrency",
                "2",
            ]
        )
    out, _ = capsys.readouterr()
    data = json.loads(out)
    value, always = data["policies"]
    assert code == 0 and value["label"] == "value" and always["label"] == "always:gpt-4o"
    assert {r["model"] for r in always["rows"]} == {"gpt-4o"}
    assert value["total"]["cost_usd"] < always["total"]["cost_usd"]
    assert always["total"]["cost_ratio"] == pytest.approx(1.0)
    assert len(read_ledger(ledger)) == 2 * len(ROWS)


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_cli_online_with_a_judge_model(capsys, tmp_path: Path, monkeypatch) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"id": "j", "prompt": "Explain recursion.", "tags": ["code"], "grader": "judge"})
        + "\n"
    )
    monkeypatch.setenv("GLOBAL_API_KEY", KEY)
    with upstream(**{"gpt-4o": ModelSpec(reply="Clear. Rating: [[7]]")}) as up:
        code = main(["eval", str(rows), "--online", "--base-url", up.base_url, "--judge", "gpt-4o"])
        judged = [r for r in up.requests_for("gpt-4o")]
    out, _ = capsys.readouterr()
    assert code == 0 and len(judged) == 1
    assert "Explain recursion." in judged[0].body["messages"][0]["content"]
    assert "0.700" in out and "judge: 1 calls" in out


def test_cli_online_needs_a_key(capsys, monkeypatch) -> None:
    monkeypatch.delenv("GLOBAL_API_KEY", raising=False)
    code = main(["eval", "--online", "--limit", "1"])
    _, err = capsys.readouterr()
    assert code == 2 and "GLOBAL_API_KEY" in err
