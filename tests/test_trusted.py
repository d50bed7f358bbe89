"""Records and decisions built without validation are the validated ones, field for field.

A routed call builds its decision, its answered attempt's CallRecord and its RoutedCall
from values routedllm computed itself, skipping pydantic's validation (core/trusted.py).
Each is checked here against the same values validated: equal, the same fields set, the
same Python types, the same JSON, and read back from JSON to the same object.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from routedllm.core.catalog import Catalog
from routedllm.core.decision import Decision, Policy, Request, Router, decide
from routedllm.core.trusted import trusted
from routedllm.records.routed import RoutedCall
from routedllm.records.schema import CallRecord, Usage, build_record
from routedllm.reliability.attempts import AttemptLoop, Conversation
from routedllm.reliability.breaker import CircuitBreaker

CATALOG = Catalog.from_dict(
    yaml.safe_load((Path(__file__).parent / "routing_catalog.yaml").read_text("utf-8"))
)
TS = dt.datetime(2026, 12, 6, 3, 0, tzinfo=dt.UTC)
HI = [{"role": "user", "content": "Hi"}]


def types_of(value: Any) -> Any:
    """The Python types of a model's fields, all the way down."""
    if isinstance(value, BaseModel):
        return (type(value), {k: types_of(v) for k, v in value.__dict__.items()})
    if isinstance(value, tuple | list):
        return (type(value), [types_of(v) for v in value])
    if isinstance(value, dict):
        return (type(value), {k: types_of(v) for k, v in value.items()})
    return type(value)


def assert_as_validated(built: BaseModel) -> None:
    """``built`` is what validating its own fields gives, and what its JSON reads back to."""
    cls = type(built)
    given = {name: getattr(built, name) for name in built.model_fields_set}
    validated = cls(**given)
    assert built == validated
    assert built.model_fields_set == validated.model_fields_set
    assert types_of(built) == types_of(validated)
    assert built.model_dump(mode="json") == validated.model_dump(mode="json")
    assert built.model_dump_json() == validated.model_dump_json()
    assert list(built.__dict__) == list(cls.model_fields)  # declaration order
    assert cls.model_validate_json(built.model_dump_json()) == built


USAGES = {
    "plain": Usage(1200, 300),
    "cached and reasoning": Usage(1200, 300, cached_input_tokens=1000, reasoning_tokens=120),
    "none reported": None,
    "zero output": Usage(10, 0),
}


@pytest.mark.parametrize("usage", USAGES.values(), ids=USAGES.keys())
@pytest.mark.parametrize(
    ("model", "answering", "baseline"),
    [
        ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o", "gpt-4o"),  # a mismatch: flagged, priced at the dearer
        ("not-in-the-catalog", None, "gpt-4o"),
        ("gpt-4o-mini", "a\x1bweird name", None),
    ],
)
def test_an_unvalidated_record_is_the_validated_record(
    usage: Usage | None, model: str, answering: str | None, baseline: str | None
) -> None:
    args: dict[str, Any] = {
        "usage": usage,
        "ts": TS,
        "latency_s": 1.25,
        "ttft_s": 0.25,
        "baseline_model": baseline,
        "answering_model": answering,
        "attempt": 2,
        "run_id": "run-1",
        "tags": ("code",),
        "policy": "value",
        "requested_model": "gpt-4o-mini",
        "estimated_cost_usd": 0.00042,
    }
    fast = build_record(CATALOG, model, validate=False, **args)
    slow = build_record(CATALOG, model, **args)
    assert fast == slow and fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump_json() == slow.model_dump_json()
    assert_as_validated(fast)


def test_unbelieved_usage_is_flagged_the_same_without_validation() -> None:
    args: dict[str, Any] = {"usage": Usage(10, 5), "ts": TS, "latency_s": 0.5}
    fast = build_record(CATALOG, "gpt-4o", usage_problem="x", validate=False, **args)
    assert fast == build_record(CATALOG, "gpt-4o", usage_problem="x", **args)
    assert fast.input_tokens is None and fast.flags == ("usage_invalid: x",)


def loop_call(**loop: Any) -> RoutedCall:
    d = decide(CATALOG, Policy(), Request(messages=[{"role": "user", "content": "Hi"}]))
    attempts = AttemptLoop(d, CATALOG, started=0.0, **loop)
    attempt = attempts.next()
    assert attempt is not None
    attempts.begin(attempt)
    return attempts.answered(attempt, Usage(50, 10), "gpt-4o-mini-2024-07-18")


@pytest.mark.parametrize(
    "loop",
    [
        {},
        {"streamed": True, "run_id": "r", "parent_run_id": "p", "ignored_tags": ("my-chain",)},
        {"conversation": Conversation("c-1", "gpt-4o"), "baseline_model": None},
        {"breaker": CircuitBreaker()},
    ],
)
def test_a_routed_call_record_is_the_validated_record(loop: dict[str, Any]) -> None:
    call = loop_call(**loop)
    assert_as_validated(call)
    assert_as_validated(call.decision)
    assert_as_validated(call.attempts[0])
    assert RoutedCall.from_metadata(call.to_metadata()) == call
    assert json.loads(json.dumps(call.to_metadata())) == call.to_metadata()


@pytest.mark.parametrize(
    "request_",
    [
        Request(messages=[{"role": "user", "content": "Write a Python function to sort"}]),
        Request(messages=HI, tags=["extraction"]),
        Request(messages=HI, model="gpt-4o"),
        Request(messages=HI, model="not-in-the-catalog"),
        Request(messages=HI, unavailable={"gpt-4o-mini": "cooling"}),
        Request(messages=HI, sticky_model="gpt-4o"),
        Request(messages=HI, require=frozenset({"tools"})),
    ],
    ids=["inferred", "given", "pinned", "pinned unknown", "unavailable", "sticky", "tools"],
)
@pytest.mark.parametrize("preset", ["value", "quality", "cheapest"])
def test_a_decision_is_the_validated_decision(request_: Request, preset: str) -> None:
    decision = Router(CATALOG, Policy(preset=preset)).decide(request_)  # type: ignore[arg-type]
    assert_as_validated(decision)
    assert Decision.model_validate(decision.model_dump()) == decision


def test_trusted_refuses_a_missing_required_field_and_makes_fresh_defaults() -> None:
    with pytest.raises(TypeError, match="model is required"):
        trusted(CallRecord, ts=TS)
    first = trusted(RoutedCall, model=None, requested_model="m", decision=loop_call().decision)
    second = trusted(RoutedCall, model=None, requested_model="m", decision=first.decision)
    assert first.unavailable == {} and first.unavailable is not second.unavailable
    assert first.model_fields_set == {"model", "requested_model", "decision"}
    with pytest.raises(Exception, match="frozen"):
        first.model = "x"  # type: ignore[misc]
