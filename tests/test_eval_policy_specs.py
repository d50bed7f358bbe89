"""`--policy` specs: per-tag gaps (`gap.TAG=X`) route as `Policy.tag_gaps`, bad specs say why."""

from __future__ import annotations

import json

import pytest

from routedllm import Catalog
from routedllm.cli import main
from routedllm.core.errors import InvalidRequestError
from routedllm.evaluation.online import online_policy
from routedllm.evaluation.specs import spec_fields


def _policies(capsys, *specs: str) -> dict[str, dict]:
    argv = ["eval", "--json"]
    for spec in specs:
        argv += ["--policy", spec]
    assert main(argv) == 0
    return {p["name"]: p for p in json.loads(capsys.readouterr().out)["policies"]}


def test_a_tag_gap_moves_only_that_tags_rows(capsys) -> None:
    strict, loose = "value:gap=0", "value:gap=0,gap.code=100"
    out = _policies(capsys, strict, loose)
    a, b = out[strict]["per_tag"], out[loose]["per_tag"]
    # a 100-point gap on code takes code rows to a cheaper model, nothing else moves
    assert b["code"]["cost_usd"] < a["code"]["cost_usd"]
    for tag in a.keys() - {"code"}:
        assert a[tag] == b[tag], tag


def test_tag_gaps_keep_the_preset_defaults_and_parse_online_alike() -> None:
    fields = spec_fields("gap=2,gap.code=0.5", "value:gap=2,gap.code=0.5")
    assert fields["tag_gaps"] == {"extraction": 4.0, "classification": 4.0, "code": 0.5}
    policy = online_policy("value:gap=2,gap.code=0.5,gap.extraction=1", Catalog.default()).policy
    assert policy is not None and policy.quality_gap == 2
    assert policy.gap_for("code") == 0.5 and policy.gap_for("extraction") == 1
    assert policy.gap_for("classification") == 4 and policy.gap_for("general") == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("value:gap.cod=1", "'gap.cod' names no routedllm tag ('cod'); known tags: vision, code"),
        ("value:gap.code=abc", "gap.code 'abc' is not a number"),
        ("value:gap.code=-1", "gap.code must be within 0-100 points, got -1"),
        ("value:gap=abc", "quality_gap: Input should be a valid number"),
        ("value:speed=1", "expected field=value with a field among gap, max_cost, gap.TAG"),
        ("value:gap", "got 'gap'"),
        ("random:seed=x", "seed 'x' is not a number"),
    ],
)
def test_a_bad_spec_names_the_spec_and_the_problem(capsys, spec: str, message: str) -> None:
    assert main(["eval", "--policy", spec]) != 0
    err = capsys.readouterr().err
    assert f"policy {spec!r}" in err and message in err
    if not spec.startswith("random"):
        with pytest.raises(InvalidRequestError, match="policy"):
            online_policy(spec, Catalog.default())
