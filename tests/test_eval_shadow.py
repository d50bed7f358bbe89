"""Shadow middleware: mirrored calls, agreement, the budget cap, and the shared ledger."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from routedllm import CostLatencyHandler, JsonlLedger, MemorySink, Policy
from routedllm.adapters.langchain.chat_model import RoutedChatModel
from routedllm.core.errors import InvalidRequestError
from routedllm.core.pricing import estimate_cost
from routedllm.evaluation.graders import LLMJudge
from routedllm.evaluation.ledger_replay import replay_ledger
from routedllm.evaluation.shadow import SHADOW_POLICY, ShadowHandler
from routedllm.records.ledger import read_ledger
from routedllm.testing import ModelSpec, Upstream
from tests.conftest import fixture_catalog
from tests.fakes import FakeChat

CATALOG = fixture_catalog()
PROMPT = "Fix this loop: for i in range(10) print(i)"


def live(reply: str = "same answer", model: str = "deepseek-v4-flash", **kw) -> FakeChat:
    return FakeChat(model=model, reply=reply, output_tokens=50, **kw)


def baseline(reply: str = "same answer", **kw) -> FakeChat:
    return FakeChat(model="gpt-4o", reply=reply, output_tokens=60, **kw)


def shadow(base=None, **kw) -> ShadowHandler:
    kw.setdefault("budget_usd", 1.0)
    kw.setdefault("share", 1.0)
    return ShadowHandler(base or baseline(), baseline_model="gpt-4o", catalog=CATALOG, **kw)


def test_mirrors_grade_agreement_and_share_the_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "calls.jsonl"
    handler = CostLatencyHandler(CATALOG, ledger_path=ledger)
    with shadow(sinks=[JsonlLedger(ledger)]) as sh:
        live().invoke(PROMPT, config={"callbacks": [handler, sh], "tags": ["code"]})
        live("another answer").invoke(PROMPT, config={"callbacks": [handler, sh]})
        assert sh.drain(10)
        summary = sh.summary()
    assert summary["seen"] == summary["shadowed"] == 2
    assert summary["graded"] == 2 and summary["agreed"] == 1 and summary["agreement"] == 0.5
    records = read_ledger(ledger)
    lives = [r for r in records if r.policy != SHADOW_POLICY]
    shadows = [r for r in records if r.policy == SHADOW_POLICY]
    assert len(lives) == len(shadows) == 2
    assert {r.parent_run_id for r in shadows} == {r.run_id for r in lives}
    assert all(r.model == "gpt-4o" and r.baseline_cost_usd is None for r in shadows)
    first = next(r for r in sh.results if r.grade.score == 1.0)
    assert first.tags == ("code",) and first.live_model == "deepseek-v4-flash"
    expected = sum(r.cost_usd for r in shadows)
    assert sh.spent_usd == pytest.approx(expected) and expected > 0


def test_share_samples_calls_reproducibly() -> None:
    n, share, seed = 40, 0.3, 7
    rng = random.Random(seed)
    expected = sum(rng.random() < share for _ in range(n))
    with shadow(share=share, seed=seed) as sh:
        model = live()
        for _ in range(n):
            model.invoke(PROMPT, config={"callbacks": [sh]})
        sh.drain(10)
    summary = sh.summary()
    assert summary["shadowed"] == expected and summary["skipped"]["not_sampled"] == n - expected
    with shadow(share=0.0) as none:
        live().invoke(PROMPT, config={"callbacks": [none]})
    assert none.summary()["shadowed"] == 0


def test_budget_caps_the_spend() -> None:
    tokens_in = len(PROMPT)  # FakeChat counts characters of the last message as tokens
    one = estimate_cost(CATALOG.get("gpt-4o"), tokens_in, 50)
    with shadow(budget_usd=one * 2.5, max_workers=1) as sh:
        model = live()
        for _ in range(6):
            model.invoke(PROMPT, config={"callbacks": [sh]})
            sh.drain(10)
    summary = sh.summary()
    assert summary["shadowed"] == 2 and summary["skipped"]["budget"] == 4
    assert summary["spent_usd"] <= one * 2.5 and summary["reserved_usd"] == pytest.approx(0)


def test_skips_calls_the_baseline_answered_and_failed_live_calls() -> None:
    with shadow() as sh:
        live(model="gpt-4o").invoke(PROMPT, config={"callbacks": [sh]})
        with pytest.raises(Exception, match="429"):
            live(fail_after=0).invoke(PROMPT, config={"callbacks": [sh]})
    assert sh.summary()["skipped"] == {"same_model": 1, "live_error": 1}
    assert sh.results == []


def test_a_failing_baseline_never_touches_live_traffic() -> None:
    sink = MemorySink()
    with shadow(baseline(fail_after=0), sinks=[sink]) as sh:
        reply = live("fine").invoke(PROMPT, config={"callbacks": [sh]})
        sh.drain(10)
    assert reply.content == "fine"
    [result] = sh.results
    assert result.error and result.grade is None
    [record] = sink.records
    assert not record.ok and record.policy == SHADOW_POLICY


def test_a_judge_grades_agreement() -> None:
    judge = FakeListChatModel(responses=["Close to the reference. Rating: [[7]]"])
    with shadow(agreement=LLMJudge(judge)) as sh:
        live("a").invoke(PROMPT, config={"callbacks": [sh]})
        sh.drain(10)
    assert sh.results[0].grade.score == 0.7


def test_shadow_calls_are_not_mirrored_again() -> None:
    with shadow() as sh:
        base = baseline().with_config(callbacks=[sh])  # the handler also sees the baseline
        sh.baseline = base
        live().invoke(PROMPT, config={"callbacks": [sh]})
        sh.drain(10)
    assert sh.summary()["seen"] == 1 and sh.summary()["shadowed"] == 1


async def test_async_live_calls_are_mirrored() -> None:
    with shadow() as sh:
        await live().ainvoke(PROMPT, config={"callbacks": [sh]})
        sh.drain(10)
    assert sh.summary()["shadowed"] == 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="share"):
        shadow(share=1.5)
    with pytest.raises(InvalidRequestError, match="negative"):
        shadow(budget_usd=-1)
    unpriced = CATALOG.merged({"models": [{"id": "mystery", "name": "Mystery"}]})
    with pytest.raises(InvalidRequestError, match="no price"):
        ShadowHandler(baseline(), baseline_model="mystery", budget_usd=1, catalog=unpriced)


@pytest.mark.loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_routed_traffic_shadowed_on_the_stand_in(tmp_path: Path) -> None:
    ledger = tmp_path / "calls.jsonl"
    key = "test-key-not-a-secret"
    with Upstream(
        default=ModelSpec(reply="use a colon", prompt_tokens=30, completion_tokens=8), api_key=key
    ) as up:
        llm = RoutedChatModel(api_key=key, base_url=up.base_url, catalog=CATALOG)
        gpt = RoutedChatModel(api_key=key, base_url=up.base_url, catalog=CATALOG, model="gpt-4o")
        handler = CostLatencyHandler(CATALOG, ledger_path=ledger)
        with ShadowHandler(
            gpt,
            baseline_model="gpt-4o",
            budget_usd=1,
            share=1.0,
            catalog=CATALOG,
            sinks=[JsonlLedger(ledger)],
        ) as sh:
            llm.invoke(PROMPT, config={"callbacks": [handler, sh], "tags": ["code"]})
            sh.drain(10)
        asked = [r.model for r in up.requests]
    live_model = next(m for m in asked if m != "gpt-4o")
    assert sorted(asked) == sorted([live_model, "gpt-4o"])
    assert sh.results[0].grade.score == 1.0  # the stand-in gave both the same reply
    records = read_ledger(ledger)
    assert [r.policy for r in records].count(SHADOW_POLICY) == 1
    replay = replay_ledger(records, CATALOG, Policy())
    assert replay.skipped == {"shadow": 1} and len(replay.calls) == 1
