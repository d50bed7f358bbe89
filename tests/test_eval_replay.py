"""Offline replay: the same choices as decide(), exact costs, every uncovered row counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routedllm import Catalog, Policy, Request, decide
from routedllm.core.errors import InvalidRequestError, UnknownModelError
from routedllm.evaluation.dataset import EvalSet, load_rows
from routedllm.evaluation.policies import (
    Always,
    Oracle,
    RandomPick,
    Routed,
    parse_policies,
    round_up_sizes,
)
from routedllm.evaluation.replay import evaluate, replay, summarize
from routedllm.evaluation.space import ModelSpace
from routedllm.workload import WorkloadRow, read_rows

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def sample() -> tuple[list[WorkloadRow], EvalSet]:
    rows = load_rows(None)
    return rows, EvalSet.from_rows(rows)


@pytest.fixture(scope="module")
def measured() -> EvalSet:
    return EvalSet.from_rows(read_rows(DATA / "eval_catalog_outcomes.jsonl"))


def vision_rows(data: EvalSet) -> int:
    return sum("vision" in data.tag_sets[i] for i in data.tag_index.tolist())


@pytest.mark.parametrize("preset", ["value", "quality", "cheapest"])
def test_replay_matches_decide_row_by_row(catalog: Catalog, sample, preset: str) -> None:
    rows, data = sample
    policy = Policy(preset=preset)
    space = ModelSpace.build(catalog, data)
    rep = replay(Routed(preset, policy), data, space)
    for i, row in enumerate(rows):
        d = decide(
            catalog,
            policy,
            Request(
                messages=row.chat_messages(),
                tags=row.tags,
                max_output_tokens=row.expected_output_tokens,
            ),
        )
        assert space.ids[rep.choice[i]] == d.model, row.id
        assert rep.cost[i] == pytest.approx(d.estimated_cost_usd), row.id
        assert rep.quality[i] == pytest.approx(d.score / 100), row.id


def test_sizes_round_up_on_a_geometric_grid() -> None:
    sizes = np.array([0, 5, 64, 65, 1234, 127_999, 128_000, 2_000_000])
    buckets = round_up_sizes(sizes)
    assert buckets[:3].tolist() == [1, 5, 64]
    assert (buckets >= np.maximum(sizes, 1)).all()
    assert (buckets[3:] <= sizes[3:] * 2 ** (1 / 8) + 1).all()
    assert len(np.unique(round_up_sizes(np.arange(65, 129)))) == 8  # 8 steps per doubling


def test_no_eligible_rows_are_counted_with_the_reason(catalog: Catalog, sample) -> None:
    _, data = sample
    space = ModelSpace.build(catalog, data)
    text_only = Policy(allowed_models=frozenset({"deepseek-v4-flash", "glm-5", "qwen3-32b"}))
    policy = Routed("text-only", text_only)
    result = summarize(policy, replay(policy, data, space), data, space)
    assert result.no_eligible == vision_rows(data) > 0
    assert result.per_tag["vision"]["no_eligible"] == vision_rows(data)
    assert "image_input" in result.why_none["vision"]
    assert result.cost_usd is not None and result.quality is not None  # the rest still count


def test_always_x_without_outcomes_skips_rows_the_model_cannot_take(catalog, sample) -> None:
    _, data = sample
    space = ModelSpace.build(catalog, data)
    flash = Always("deepseek-v4-flash")
    result = summarize(flash, replay(flash, data, space), data, space)
    assert result.no_eligible == vision_rows(data)
    assert "no image_input" in result.why_none["vision"]


def test_measured_quality_and_cost_come_from_the_outcomes(catalog, measured) -> None:
    space = ModelSpace.build(catalog, measured)
    gpt = Always("gpt-4o")
    result = summarize(gpt, replay(gpt, measured, space), measured, space)
    assert result.quality == pytest.approx((1 + 1 + 1 + 0.5 + 1 + 1) / 6)
    assert result.cost_usd == pytest.approx(0.018)
    assert result.per_tag["code"] == {
        "rows": 2,
        "no_eligible": 0,
        "cost_usd": pytest.approx(0.007),
        "quality": 1.0,
    }
    # glm-5 has no outcome on zh-2: unmeasured there, priced from the catalog
    glm = Always("glm-5")
    rep = replay(glm, measured, space)
    result = summarize(glm, rep, measured, space)
    assert (result.unmeasured, result.uncosted) == (1, 0)
    card = catalog.get("glm-5")
    tokens = measured.input_tokens[5] * card.input_usd_per_mtok + 512 * card.output_usd_per_mtok
    assert rep.cost[5] == pytest.approx(tokens / 1e6)


def test_per_call_cost_for_models_outside_the_catalog(catalog: Catalog) -> None:
    data = EvalSet.from_rows(
        [
            WorkloadRow.model_validate(
                {"id": str(i), "prompt": "q", "outcomes": {"house-model": {"score": 1.0}}}
            )
            for i in range(3)
        ]
    )
    bare = ModelSpace.build(catalog, data)
    policy = Always("house-model")
    assert summarize(policy, replay(policy, data, bare), data, bare).uncosted == 3
    priced = ModelSpace.build(catalog, data, {"house-model": 0.25})
    assert summarize(policy, replay(policy, data, priced), data, priced).cost_usd == 0.75
    with pytest.raises(UnknownModelError):
        ModelSpace.build(catalog, data, {"nobody": 1.0})


def test_oracle_takes_the_cheapest_of_the_best(catalog, measured) -> None:
    space = ModelSpace.build(catalog, measured)
    rep = replay(Oracle(), measured, space)
    assert [space.ids[i] for i in rep.choice] == [
        "deepseek-v4-flash",
        "glm-5",
        "deepseek-v4-flash",
        "glm-5",
        "glm-5",
        "deepseek-v4-flash",
    ]
    assert np.nanmean(rep.quality) == 1.0
    assert rep.cost.sum() == pytest.approx(0.0029)


def test_oracle_and_outcomes_needed(catalog, sample) -> None:
    _, data = sample
    with pytest.raises(InvalidRequestError, match="oracle needs outcome rows"):
        Oracle().choose(data, ModelSpace.build(catalog, data))


def test_random_is_seeded_and_picks_models_with_outcomes(catalog, measured) -> None:
    space = ModelSpace.build(catalog, measured)
    a = replay(RandomPick(seed=3), measured, space).choice
    assert a.tolist() == replay(RandomPick(seed=3), measured, space).choice.tolist()
    for seed in range(20):
        pick = replay(RandomPick(seed=seed), measured, space).choice
        assert space.ids[pick[5]] != "glm-5"  # no outcome there
        assert all(space.ids[p] in measured.models for p in pick)


def test_random_without_outcomes_stays_among_eligible_models(catalog, sample) -> None:
    _, data = sample
    space = ModelSpace.build(catalog, data)
    choice = replay(RandomPick(seed=1), data, space).choice
    vision = np.asarray(["vision" in data.tag_sets[i] for i in data.tag_index.tolist()])
    vision_models = {c.id for c in catalog if c.capabilities.image_input and c.priced}
    assert {space.ids[i] for i in choice[vision]} <= vision_models
    assert (choice >= 0).all()


def test_evaluate_picks_honest_baselines(catalog, measured) -> None:
    space = ModelSpace.build(catalog, measured)
    ev = evaluate(measured, space, [Oracle()])
    assert ev.best_single == ev.baseline == "always:gpt-4o"
    assert ev.floor == pytest.approx((5.5 / 6) - 0.02)
    assert ev.cheapest_meeting_floor == "always:gpt-4o"  # glm-5 is incomplete, flash too weak
    flash = ev.get("always:deepseek-v4-flash")
    assert flash.cost_ratio == pytest.approx(0.0009 / 0.018)
    assert flash.quality_retained == pytest.approx((3.5 / 6) / (5.5 / 6))
    oracle = ev.get("oracle")
    expected = 3.5 / 6 + (0.0029 - 0.0009) / (0.018 - 0.0009) * (2 / 6)
    assert oracle.random_same_cost == pytest.approx(expected)
    assert ev.get("always:glm-5").random_same_cost is None  # incomplete: not like for like
    low = evaluate(measured, space, [], floor=0.5)
    assert low.cheapest_meeting_floor == "always:deepseek-v4-flash"


def test_evaluate_against_a_chosen_baseline(catalog, measured) -> None:
    space = ModelSpace.build(catalog, measured)
    ev = evaluate(measured, space, [], baseline="deepseek-v4-flash")
    assert ev.baseline == "always:deepseek-v4-flash"
    assert ev.get("always:gpt-4o").cost_ratio == pytest.approx(0.018 / 0.0009)


def test_frontier_uses_complete_results_only(catalog, measured) -> None:
    space = ModelSpace.build(catalog, measured)
    ev = evaluate(measured, space, [Oracle()])
    points = [(p["cost_usd"], p["quality"]) for p in ev.frontier["points"]]
    assert points == [pytest.approx((0.0009, 3.5 / 6)), pytest.approx((0.0029, 1.0))]
    assert "always" in ev.frontier["area_by_kind"] and "oracle" in ev.frontier["area_by_kind"]


def test_policy_specs(catalog, sample) -> None:
    _, data = sample
    space = ModelSpace.build(catalog, data)
    names = [p.name for p in parse_policies("sweep:0,3", data, space)]
    assert names == ["value:gap=0", "value:gap=3"]
    (p,) = parse_policies("value:gap=4,max_cost=0.01", data, space)
    assert p.policy.quality_gap == 4 and p.policy.max_cost_usd == 0.01
    assert len(parse_policies("always", data, space)) == sum(c.priced for c in catalog)
    with pytest.raises(InvalidRequestError, match="unknown policy 'fastest'"):
        parse_policies("fastest", data, space)
    with pytest.raises(InvalidRequestError, match="expected field=value"):
        parse_policies("value:speed=9", data, space)


def test_policy_with_other_inference_thresholds_is_refused(catalog, sample) -> None:
    _, data = sample
    space = ModelSpace.build(catalog, data)
    with pytest.raises(InvalidRequestError, match="other thresholds"):
        Routed("x", Policy(cjk_share=0.9)).choose(data, space)
