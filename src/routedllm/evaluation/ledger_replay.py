"""Replay a ledger under another policy: what would policy B have cost for the same calls?

A ledger's records are grouped into calls by ``run_id`` (a call's attempts share it). For
each call that got an answer, the recorded tags and token counts are decided again with
``decide(catalog, policy_b, ...)`` and B's choice is priced on the same tokens with
:func:`routedllm.core.pricing.call_cost`; the recorded cost is what every attempt of the call
cost. Assumptions, stated in every report: B's choice answers at once (no fallbacks), with
the token counts the recorded model reported (tokenizers differ between providers), and
capabilities beyond those the tags imply (tools, structured output) are not known.

Shadow calls (``policy="shadow"``), calls with no answer and calls whose usage was not
reported are counted apart, never replayed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from routedllm.core.catalog import Catalog
from routedllm.core.decision import Policy, Request, decide
from routedllm.core.errors import NoEligibleModelError
from routedllm.core.pricing import call_cost
from routedllm.records.runs import summed_cost
from routedllm.records.schema import CallRecord
from routedllm.text import table as _table
from routedllm.text import usd as _usd

SHADOW_POLICY = "shadow"  # as routedllm.evaluation.shadow marks its records
# decide() needs a message; sizes and tags are given, so its text plays no part (untagged
# calls infer "general" from it, as a call with no recorded tags is taken to be).
_PLACEHOLDER = ({"role": "user", "content": "."},)
ASSUMPTIONS = (
    "policy B's choice answers at once (no fallbacks), with the recorded token "
    "counts; capabilities other than those the tags imply are not known"
)


@dataclass(frozen=True)
class ReplayedCall:
    """One recorded call and what the other policy would have sent it to, at what cost."""

    run_id: str | None
    tags: tuple[str, ...]
    recorded_model: str
    recorded_policy: str | None
    recorded_cost_usd: float | None
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    model: str | None
    cost_usd: float | None
    why_none: str | None = None

    @property
    def compared(self) -> bool:
        """True when both costs are known."""
        return self.recorded_cost_usd is not None and self.cost_usd is not None


@dataclass
class LedgerReplay:
    """A ledger's calls replayed under one policy, with what was left out and why."""

    name: str
    calls: list[ReplayedCall]
    skipped: dict[str, int] = field(default_factory=dict)

    def totals(self, calls: Sequence[ReplayedCall] | None = None) -> dict[str, Any]:
        """Recorded and replayed cost over the calls where both are known."""
        calls = self.calls if calls is None else calls
        both = [c for c in calls if c.compared]
        recorded = sum(c.recorded_cost_usd or 0.0 for c in both)
        replayed = sum(c.cost_usd or 0.0 for c in both)
        return {
            "calls": len(calls),
            "compared": len(both),
            "no_model": sum(c.model is None for c in calls),
            "unpriced": sum(c.model is not None and not c.compared for c in calls),
            "recorded_cost_usd": recorded,
            "cost_usd": replayed,
            "cost_ratio": replayed / recorded if recorded else None,
            "changed_model": sum(
                c.model is not None and c.model != c.recorded_model for c in calls
            ),
        }

    def by_tag(self) -> dict[str, dict[str, Any]]:
        """Totals per primary task tag (a call's first tag)."""
        groups: dict[str, list[ReplayedCall]] = {}
        for call in self.calls:
            groups.setdefault(call.tags[0] if call.tags else "(untagged)", []).append(call)
        return {tag: self.totals(calls) for tag, calls in sorted(groups.items())}

    def switches(self) -> Counter[tuple[str, str]]:
        """Calls per (recorded model, replayed model) pair; ``-`` where none was eligible."""
        return Counter((c.recorded_model, c.model or "-") for c in self.calls)

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "totals": self.totals(),
            "skipped": dict(self.skipped),
            "by_tag": self.by_tag(),
            "switches": [
                {"from": a, "to": b, "calls": n} for (a, b), n in self.switches().most_common()
            ],
            "why_none": sorted({c.why_none for c in self.calls if c.why_none}),
            "assumptions": ASSUMPTIONS,
        }


def group_calls(records: Iterable[CallRecord]) -> tuple[list[list[CallRecord]], Counter[str]]:
    """Records grouped into calls (by run id, in first-seen order); shadow records set apart."""
    calls: dict[str, list[CallRecord]] = {}
    skipped: Counter[str] = Counter()
    for i, record in enumerate(records):
        if record.policy == SHADOW_POLICY:
            skipped["shadow"] += 1
            continue
        calls.setdefault(record.run_id or f"#{i}", []).append(record)
    return list(calls.values()), skipped


def replay_ledger(
    records: Iterable[CallRecord], catalog: Catalog, policy: Policy, name: str | None = None
) -> LedgerReplay:
    """Decide every answered call of ``records`` again under ``policy`` and price it."""
    grouped, skipped = group_calls(records)
    memo: dict[tuple[Any, ...], tuple[str | None, str | None]] = {}
    out: list[ReplayedCall] = []
    for attempts in grouped:
        ok = next((r for r in attempts if r.ok), None)
        if ok is None:
            skipped["no_answer"] += 1
            continue
        if ok.input_tokens is None or ok.output_tokens is None:
            skipped["no_usage"] += 1
            continue
        key = (ok.tags, ok.input_tokens, ok.output_tokens)
        if key not in memo:
            memo[key] = _choose(catalog, policy, *key)
        model, why = memo[key]
        cost = None
        if model is not None:
            cost = call_cost(
                catalog.get(model), ok.input_tokens, ok.output_tokens, ok.cached_input_tokens or 0
            ).total_usd
        recorded = summed_cost(attempts)
        out.append(
            ReplayedCall(
                ok.run_id,
                ok.tags,
                ok.model,
                ok.policy,
                recorded,
                ok.input_tokens,
                ok.cached_input_tokens or 0,
                ok.output_tokens,
                model,
                cost,
                why,
            )
        )
    return LedgerReplay(name or policy.preset, out, dict(skipped))


def _choose(
    catalog: Catalog, policy: Policy, tags: tuple[str, ...], input_tokens: int, output_tokens: int
) -> tuple[str | None, str | None]:
    """Policy B's model for a call of these tags and sizes, or (None, why none was eligible)."""
    request = Request(
        messages=_PLACEHOLDER,
        tags=tags or None,
        input_tokens=input_tokens,
        max_output_tokens=output_tokens or None,
    )
    try:
        return decide(catalog, policy, request).model, None
    except NoEligibleModelError as exc:  # the models' own limits first, not the allow-list
        own = [f"{m}: {r}" for m, r in exc.rejected if r != "not in allowed_models"]
        return None, f"[{','.join(exc.tags)}] " + "; ".join(
            own or [f"{m}: {r}" for m, r in exc.rejected]
        )


def render(replays: Sequence[LedgerReplay], source: str) -> str:
    """Tables: each policy's cost against the recorded cost, per tag, and the model switches."""

    def cells(name: str, g: dict[str, Any]) -> tuple[str, ...]:
        known = g["compared"] > 0  # costs cover the calls priced both ways
        return (
            name,
            str(g["calls"]),
            _usd(g["recorded_cost_usd"]) if known else "-",
            _usd(g["cost_usd"]) if known else "-",
            "-" if g["cost_ratio"] is None else f"{g['cost_ratio']:.1%}",
            str(g["changed_model"]),
            str(g["no_model"] or "-"),
            str(g["unpriced"] or "-"),
        )

    out = []
    for replay in replays:
        t = replay.totals()
        skipped = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(replay.skipped.items()))
        out += [
            f"{source}: {t['calls']} calls replayed under {replay.name}"
            + (f" (left out: {skipped})" if skipped else ""),
            "",
        ]
        rows = [cells(name, g) for name, g in [("all", t), *replay.by_tag().items()]]
        out.append(
            _table(
                (
                    "tag",
                    "calls",
                    "recorded",
                    replay.name,
                    "ratio",
                    "changed model",
                    "no model",
                    "unpriced",
                ),
                rows,
            )
        )
        switches = [(a, b, str(n)) for (a, b), n in replay.switches().most_common() if a != b]
        if switches:
            out += ["", _table(("recorded model", f"{replay.name} model", "calls"), switches)]
        out += [
            f"no eligible model: {why[:240]}"
            for why in sorted({c.why_none for c in replay.calls if c.why_none})
        ]
        out.append("")
    out.append(f"costs compare the calls where both are known; assumed: {ASSUMPTIONS}")
    return "\n".join(out)
