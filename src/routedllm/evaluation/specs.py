"""The fields of a ``--policy`` spec (``value:gap=2,gap.code=0.5,max_cost=0.01``) as a Policy.

Shared by offline replay, online evaluation and ledger replay, so one spec means the same
routing everywhere. Light: no numpy. ``gap`` is the quality gap in benchmark points;
``gap.TAG`` sets the gap for calls whose primary tag is TAG (``Policy.tag_gaps``), on top
of the preset's per-tag defaults. Every problem raises naming the spec and the field.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from routedllm.core.decision import Policy
from routedllm.core.errors import InvalidRequestError
from routedllm.core.tags import TAG_NAMES

ALIASES = {"gap": "quality_gap", "max_cost": "max_cost_usd"}
FIELDS = (
    "quality_gap",
    "max_cost_usd",
    "allow_unpriced",
    "allow_unscored",
    "allow_unknown_capabilities",
    "default_output_tokens",
)
TAG_GAP = "gap."


def spec_fields(text: str, spec: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """``field=value,...`` after a spec's colon as Policy fields (``gap.TAG`` into
    ``tag_gaps``); ``extra`` names further keys allowed through as strings (``seed``)."""
    out: dict[str, Any] = {}
    tag_gaps: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if key.startswith(TAG_GAP) and eq:
            tag = key[len(TAG_GAP) :]
            if tag not in TAG_NAMES:
                raise InvalidRequestError(
                    f"policy {spec!r}: {key!r} names no routedllm tag ({tag!r}); "
                    f"known tags: {', '.join(TAG_NAMES)}"
                )
            gap = number(value, spec, key)
            if not 0 <= gap <= 100:
                raise InvalidRequestError(
                    f"policy {spec!r}: {key} must be within 0-100 points, got {value}"
                )
            tag_gaps[tag] = gap
            continue
        key = ALIASES.get(key, key)
        if not eq or not value or key not in (*FIELDS, *extra):
            raise InvalidRequestError(
                f"policy {spec!r}: expected field=value with a field among "
                f"{', '.join((*ALIASES, 'gap.TAG', *FIELDS[2:], *extra))}, got {part!r}"
            )
        out[key] = value
    if tag_gaps:
        out["tag_gaps"] = {**Policy().tag_gaps, **tag_gaps}
    return out


def spec_policy(preset: str, fields: dict[str, Any], spec: str) -> Policy:
    """A Policy of ``preset`` with ``fields``; a bad value raises naming the spec and field."""
    try:
        return Policy.model_validate({"preset": preset, **fields})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise InvalidRequestError(
            f"policy {spec!r}: {where}: {first['msg']} (got {first.get('input')!r})"
        ) from None


def number(text: str, spec: str, key: str = "value") -> float:
    """``text`` as a finite float, or an error naming the spec and the field."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidRequestError(f"policy {spec!r}: {key} {text!r} is not a number")
    return value
