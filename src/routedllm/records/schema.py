"""CallRecord: what one model attempt cost and how long it took, and how it is built.

One record per attempt, whatever sent the call (the LangChain handler, a LiteLLM logger).
Money comes from :func:`routedllm.core.pricing.call_cost`; a price the catalog lacks, or usage
the provider did not report, makes the cost ``None`` (unknown), never zero. Nothing here
imports LangChain, so every adapter can build records; the sinks that take records are in
:mod:`routedllm.records.sinks`.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import logging
import math
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from routedllm.core.catalog import Catalog, ModelCard
from routedllm.core.pricing import Cost, call_cost

OK = "ok"
DEFAULT_BASELINE = "gpt-4o"
MAX_USAGE_TOKENS = 10_000_000
"""Token counts above this (or above the model's context window) are not believed."""
USAGE_INVALID = "usage_invalid"
"""Flag of a record whose reported usage was not believed (recorded as unknown)."""
MODEL_MISMATCH = "model_mismatch"
"""Flag of a record whose response named another catalog model than the one asked."""
log = logging.getLogger("routedllm.usage")
ERROR_TEXT_LIMIT = 500  # characters of error text a record (or an attempt) keeps
# A provider's dated snapshot of a catalog model: "gpt-4o-2024-08-06", "...-20241022",
# "gpt-4-0613", or a "-latest" alias. Only these suffixes are stripped (see resolve_model).
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")


class CallRecord(BaseModel):
    """One model attempt: routing context, tokens, USD cost, savings against a baseline, timings.

    Its JSON form is one ledger line. Costs are USD; ``None`` means unknown (no catalog price
    or no usage reported), never zero; costs are never negative. No number is NaN or
    infinite. ``model`` is the catalog id the attempt was sent to;
    ``answering_model`` is the name the provider reported (e.g. a dated snapshot).
    """

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    ts: dt.datetime = Field(description="When the call started (UTC).")
    run_id: str | None = None
    parent_run_id: str | None = None
    model: str = Field(min_length=1)
    requested_model: str | None = Field(
        default=None, description="The model first asked for (the routing decision's choice)."
    )
    answering_model: str | None = Field(
        default=None, description="The model name the response reported; None on errors."
    )
    tags: tuple[str, ...] = ()
    policy: str | None = None
    route: str | None = Field(
        default=None, description="The routed entry the client asked for (LiteLLM: routed/code)."
    )
    attempt: int = Field(
        default=1, ge=1, description="1 for the first try, 2 for the first fallback..."
    )
    outcome: str = Field(default=OK, min_length=1, description="'ok' or the error type.")
    error: str | None = None
    status: int | None = Field(default=None, description="HTTP status of a failed attempt.")
    retry_after_s: float | None = Field(
        default=None, ge=0, description="How long the upstream asked to wait (a 429's Retry-After)."
    )
    cache_hit: bool = Field(
        default=False, description="Answered from an LLM cache: no request, no tokens, cost 0."
    )
    response_id: str | None = Field(
        default=None, description="The provider's id of the response (e.g. chatcmpl-...)."
    )
    finish_reason: str | None = Field(
        default=None, description="Why the reply ended: stop, length, tool_calls..."
    )
    input_tokens: int | None = Field(
        default=None, ge=0, description="Includes cached input tokens."
    )
    cached_input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0, description="Includes reasoning tokens.")
    reasoning_tokens: int | None = Field(default=None, ge=0)
    input_cost_usd: float | None = Field(default=None, ge=0)
    output_cost_usd: float | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)
    estimated_cost_usd: float | None = Field(default=None, ge=0)
    prices_as_of: str | None = None
    baseline_model: str | None = None
    baseline_cost_usd: float | None = Field(default=None, ge=0)
    savings_usd: float | None = Field(default=None, description="baseline_cost_usd - cost_usd.")
    latency_s: float | None = Field(default=None, ge=0)
    ttft_s: float | None = Field(
        default=None, ge=0, description="Time to first chunk; streams only."
    )
    output_tokens_per_s: float | None = Field(default=None, ge=0)
    flags: tuple[str, ...] = Field(
        default=(),
        description="What was not believed or did not match, each 'code: detail': "
        "usage_invalid (usage recorded as unknown), model_mismatch (another model answered).",
    )

    @property
    def ok(self) -> bool:
        """True when the attempt returned a response."""
        return self.outcome == OK


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one response. Input includes cached input; output includes reasoning."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_usage_metadata(cls, usage: Mapping[str, Any] | None) -> Usage | None:
        """From LangChain's ``AIMessage.usage_metadata`` (a plain dict); None when absent or
        not believable (see :func:`read_usage_metadata`, which also says why)."""
        return _logged(read_usage_metadata(usage))

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any] | None) -> Usage | None:
        """From an OpenAI-style ``usage`` object (``prompt_tokens``...); None when absent or
        not believable (see :func:`read_openai_usage`)."""
        return _logged(read_openai_usage(usage))


class UsageError(ValueError):
    """A token count that cannot be believed: not a whole number, negative, not finite, or
    above :data:`MAX_USAGE_TOKENS`."""


def _count(name: str, value: Any, default: int | None = None) -> int:
    if type(value) is int and 0 <= value <= MAX_USAGE_TOKENS:  # the usual case, at once
        return value
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{name} is not a number ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{name} is {value}")
    if isinstance(value, float) and not value.is_integer():
        raise UsageError(f"{name} {value} is not a whole number")
    if value < 0:
        raise UsageError(f"{name} {value:.0f} is negative")
    if value > MAX_USAGE_TOKENS:
        raise UsageError(f"{name} {value:.3g} is above {MAX_USAGE_TOKENS:,}")
    return int(value)


def read_usage_metadata(usage: Mapping[str, Any] | None) -> tuple[Usage | None, str | None]:
    """LangChain ``usage_metadata`` read and checked: (usage, None), (None, None) when
    absent, or (None, why) when a count cannot be believed."""
    if not usage or usage.get("input_tokens") is None or usage.get("output_tokens") is None:
        return None, None
    try:
        details_in = usage.get("input_token_details") or {}
        details_out = usage.get("output_token_details") or {}
        return Usage(
            _count("input_tokens", usage["input_tokens"]),
            _count("output_tokens", usage["output_tokens"]),
            _count("cached_input_tokens", details_in.get("cache_read"), 0),
            _count("reasoning_tokens", details_out.get("reasoning"), 0),
        ), None
    except (UsageError, AttributeError) as exc:
        return None, str(exc)


def read_openai_usage(usage: Mapping[str, Any] | None) -> tuple[Usage | None, str | None]:
    """An OpenAI-style ``usage`` object read and checked, like :func:`read_usage_metadata`."""
    if not usage or usage.get("prompt_tokens") is None:
        return None, None
    try:
        details_in = usage.get("prompt_tokens_details") or {}
        details_out = usage.get("completion_tokens_details") or {}
        return Usage(
            _count("prompt_tokens", usage["prompt_tokens"]),
            _count("completion_tokens", usage.get("completion_tokens"), 0),
            _count("cached_tokens", details_in.get("cached_tokens"), 0),
            _count("reasoning_tokens", details_out.get("reasoning_tokens"), 0),
        ), None
    except (UsageError, AttributeError) as exc:
        return None, str(exc)


def _logged(read: tuple[Usage | None, str | None]) -> Usage | None:
    usage, problem = read
    if problem is not None:
        log.warning(
            "usage reported by the upstream is not believed (%s): recorded as unknown", problem
        )
    return usage


def usage_beyond_window(usage: Usage | None, card: ModelCard | None) -> str | None:
    """Why ``usage`` cannot be the model's (more tokens than its context window), else None."""
    window = None if card is None else card.context_window
    if usage is None or window is None:
        return None
    for name, count in (
        ("input_tokens", usage.input_tokens),
        ("output_tokens", usage.output_tokens),
    ):
        if count > window:
            return f"{name} {count:,} is above {card.id}'s context window {window:,}"  # type: ignore[union-attr]
    return None


NO_TOKENS = Usage(0, 0)
MODEL_NAME_LIMIT = 200
"""Characters of an upstream's ``model`` field a record keeps."""


def served_name(value: object) -> str | None:
    """An upstream's ``model`` field as a record may hold it: None unless a non-empty
    string; control and other unprintable characters shown escaped (``\\x1b``), clipped to
    :data:`MODEL_NAME_LIMIT` characters. The upstream writes it: nothing in it is trusted."""
    if not isinstance(value, str) or not value:
        return None
    if not value.isprintable():
        value = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in value)
    return value if len(value) <= MODEL_NAME_LIMIT else value[: MODEL_NAME_LIMIT - 3] + "..."


def resolve_model(catalog: Catalog, name: str | None) -> ModelCard | None:
    """The catalog card a provider's model name refers to, or None.

    The rule, in order: the exact id; the name without a ``provider/`` prefix
    (``openai/gpt-4o``); either of those without one dated-snapshot suffix
    (``-2024-08-06``, ``-20241022``, ``-0613``) or ``-latest``. Nothing looser: a plain
    prefix match would price ``gpt-4o-mini`` as ``gpt-4o``. Anything else is unknown.
    """
    if not name:
        return None
    exact = catalog.find(name)
    if exact is not None:  # the usual case, without building the other candidates
        return exact
    candidates = [name]
    if "/" in name:
        candidates.append(name.rsplit("/", 1)[1])
    for candidate in list(candidates):
        stripped = _SNAPSHOT_SUFFIX.sub("", candidate)
        if stripped != candidate:
            candidates.append(stripped)
    for candidate in candidates:
        card = catalog.find(candidate)
        if card is not None:
            return card
    return None


def build_record(
    catalog: Catalog,
    model: str,
    *,
    usage: Usage | None,
    ts: dt.datetime,
    latency_s: float | None,
    ttft_s: float | None = None,
    baseline_model: str | None = DEFAULT_BASELINE,
    outcome: str = OK,
    error: str | None = None,
    status: int | None = None,
    retry_after_s: float | None = None,
    attempt: int = 1,
    run_id: str | None = None,
    parent_run_id: str | None = None,
    tags: Sequence[str] = (),
    policy: str | None = None,
    route: str | None = None,
    requested_model: str | None = None,
    answering_model: str | None = None,
    estimated_cost_usd: float | None = None,
    cache_hit: bool = False,
    usage_problem: str | None = None,
) -> CallRecord:
    """Price one attempt with the catalog and compare it with ``baseline_model``.

    ``model`` may be a provider's name for a catalog model (see :func:`resolve_model`); the
    record carries the catalog id when it resolves, else the name as given, with cost None.
    ``usage=None`` means the provider reported no usage: tokens and cost stay unknown.
    ``usage_problem`` says why reported usage was not believed (flagged ``usage_invalid``);
    usage above the model's context window is not believed either.
    ``cache_hit=True``: an LLM cache answered, no request was sent, so the record has no
    tokens and costs 0 (known, whatever the catalog says), and saves nothing.

    When ``answering_model`` resolves to another catalog model than ``model`` (the upstream
    says another model answered), the record is flagged ``model_mismatch`` and priced at
    the dearer of the two (unknown when either is unpriced): the claim cannot be checked,
    and a cap must not be passed because an upstream said a cheaper model answered.
    """
    if ts.tzinfo is None:
        raise ValueError("ts must be timezone-aware (use datetime.now(timezone.utc))")
    card = resolve_model(catalog, model)
    base = resolve_model(catalog, baseline_model) if baseline_model else None
    answering_model = served_name(answering_model)
    served = resolve_model(catalog, answering_model) if answering_model else None
    flags: list[str] = []
    if usage is not None and not cache_hit:
        usage_problem = usage_problem or usage_beyond_window(usage, card)
        if usage_problem is not None and usage is not None:
            usage = None
    if usage_problem is not None:
        flags.append(f"{USAGE_INVALID}: {usage_problem}")
        log.warning("usage of %s not believed (%s): recorded as unknown", model, usage_problem)
    cost_in = cost_out = cost = None
    if cache_hit:
        usage = NO_TOKENS
        cost_in = cost_out = cost = 0.0
    elif usage is not None and card is not None:
        c = _dearer(card, served, usage)
        cost_in, cost_out, cost = c.input_usd, c.output_usd, c.total_usd
    if card is not None and served is not None and served.id != card.id:
        flags.append(f"{MODEL_MISMATCH}: asked {card.id}, the response named {answering_model}")
    base_cost = _total(base, usage)
    savings = None if cost is None or base_cost is None else base_cost - cost
    as_of = None if card is None else (card.as_of or catalog.info.as_of)
    return CallRecord(
        ts=ts.astimezone(dt.UTC),
        run_id=run_id,
        parent_run_id=parent_run_id,
        model=card.id if card is not None else model,
        requested_model=requested_model,
        answering_model=answering_model,
        tags=tuple(tags),
        policy=policy,
        route=route,
        attempt=attempt,
        outcome=outcome,
        error=error,
        status=status,
        retry_after_s=retry_after_s,
        cache_hit=cache_hit,
        input_tokens=None if usage is None else usage.input_tokens,
        cached_input_tokens=None if usage is None else usage.cached_input_tokens,
        output_tokens=None if usage is None else usage.output_tokens,
        reasoning_tokens=None if usage is None else usage.reasoning_tokens,
        input_cost_usd=cost_in,
        output_cost_usd=cost_out,
        cost_usd=cost,
        estimated_cost_usd=estimated_cost_usd,
        prices_as_of=as_of,
        baseline_model=base.id if base is not None else baseline_model,
        baseline_cost_usd=base_cost,
        savings_usd=savings,
        latency_s=latency_s,
        ttft_s=ttft_s,
        output_tokens_per_s=_speed(usage, latency_s, ttft_s) if outcome == OK else None,
        flags=tuple(flags),
    )


def _dearer(card: ModelCard, served: ModelCard | None, usage: Usage) -> Cost:
    """The attempt's cost on ``card``, or on ``served`` when that is dearer (see build_record)."""
    asked = call_cost(card, usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)
    if served is None or served.id == card.id:
        return asked
    claimed = call_cost(served, usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)
    if asked.total_usd is None or claimed.total_usd is None:
        return Cost(None, None)  # one of them is unpriced: which is dearer is unknown
    return claimed if claimed.total_usd > asked.total_usd else asked


def with_baseline(record: CallRecord, catalog: Catalog, baseline_model: str) -> CallRecord:
    """``record`` compared with another baseline: its tokens re-priced on ``baseline_model``.

    The record's own cost is kept as recorded. Raises UnknownModelError for an unknown id.
    """
    base = baseline_card(catalog, baseline_model)
    base_cost, savings = compared_with(
        base,
        record.input_tokens,
        record.output_tokens,
        record.cached_input_tokens,
        record.cost_usd,
    )
    return record.model_copy(
        update={"baseline_model": base.id, "baseline_cost_usd": base_cost, "savings_usd": savings}
    )


def baseline_card(catalog: Catalog, baseline_model: str) -> ModelCard:
    """The catalog card of a baseline named by the user; UnknownModelError when none."""
    return resolve_model(catalog, baseline_model) or catalog.get(baseline_model)


def compared_with(
    base: ModelCard,
    input_tokens: int | None,
    output_tokens: int | None,
    cached_input_tokens: int | None,
    cost_usd: float | None,
) -> tuple[float | None, float | None]:
    """(baseline cost, savings) of an attempt's tokens priced on ``base``; each None when
    unknown (no usage recorded, or no cost to compare)."""
    usage = (
        None
        if input_tokens is None or output_tokens is None
        else Usage(input_tokens, output_tokens, cached_input_tokens or 0)
    )
    base_cost = _total(base, usage)
    savings = None if cost_usd is None or base_cost is None else base_cost - cost_usd
    return base_cost, savings


def _total(card: ModelCard | None, usage: Usage | None) -> float | None:
    if card is None or usage is None:
        return None
    return call_cost(
        card, usage.input_tokens, usage.output_tokens, usage.cached_input_tokens
    ).total_usd


def _speed(usage: Usage | None, latency_s: float | None, ttft_s: float | None) -> float | None:
    """Output tokens per second of generation: after the first chunk when streamed."""
    if usage is None or latency_s is None or usage.output_tokens == 0:
        return None
    span = latency_s - ttft_s if ttft_s is not None and latency_s > ttft_s else latency_s
    return usage.output_tokens / span if span > 0 else None


def gateway_key(catalog: Catalog) -> str | None:
    """The gateway's API key from the environment (the catalog's ``api_key_env``), if set."""
    return os.environ.get(catalog.info.gateway.api_key_env) or None


MIN_SECRET = 8
"""Strings shorter than this are not keys (tests use ``"k"``): never scrubbed."""


def encodings(secret: str) -> set[str]:
    """``secret`` and the forms it takes in JSON, URLs, form bodies and base64 (standard
    and URL-safe, with or without padding); forms shorter than :data:`MIN_SECRET` dropped."""
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
    }
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        forms.update({text, text.rstrip("=")})
    forms.update(_base64_inner(raw))
    forms.update({raw.hex(), raw.hex().upper()})
    return {form for form in forms if len(form) >= MIN_SECRET}


def secret_pattern(secrets: Iterable[str | None]) -> re.Pattern[str] | None:
    """One regex for the forms :func:`encodings` lists once text re-escapes them: any
    character percent-encoded (either hex case, or twice), JSON ``\\uXXXX`` / ``\\/``,
    an HTML character reference, and a line break (real or JSON-escaped) between any two
    characters. None when no secret is long enough. The last few are kept compiled (one
    costs ~40 ms)."""
    return _secret_pattern(tuple(s for s in secrets if isinstance(s, str)))


@functools.lru_cache(maxsize=8)
def _secret_pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= MIN_SECRET:
            raw = secret.encode("utf-8", "surrogatepass")
            plain = {secret, raw.hex()} | {f.decode("ascii") for f in _base64s(raw)}
            forms |= {form.rstrip("=") for form in plain} | _base64_inner(raw)
    forms = {form for form in forms if len(form) >= MIN_SECRET}
    if not forms:
        return None
    alternatives = (
        _BREAK.join(_char_pattern(c) for c in form) for form in sorted(forms, key=len, reverse=True)
    )
    padding = "(?:" + _BREAK + _char_pattern("=") + "){0,2}"  # forms are kept unpadded
    return re.compile("(?:" + "|".join(alternatives) + ")" + padding)


_BREAK = r"(?:\r?\n|(?:\\r)?\\n)?"  # a wrapped line, raw or JSON-escaped
_ESCAPES = frozenset("%\\&\n\r")  # text without these can only hold the plain forms


def _base64s(raw: bytes) -> tuple[bytes, ...]:
    return base64.b64encode(raw), base64.urlsafe_b64encode(raw)


def _hex_ci(value: int, digits: int) -> str:
    """``value`` in hex, matching either case."""
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{value:0{digits}x}")


def _char_pattern(char: str) -> str:
    """The ways one character of a secret appears in escaped text."""
    alts = [re.escape(char)]
    pct = "".join("%(?:25)?" + _hex_ci(b, 2) for b in char.encode("utf-8", "surrogatepass"))
    alts.append(pct)
    code = ord(char)
    alts.append(r"\\u" + _hex_ci(code, 4) if code <= 0xFFFF else re.escape(char))
    alts.append(f"&#0*{code};|&#[xX]0*{_hex_ci(code, 1)};")
    if char == "/":
        alts.append(r"\\/")
    if char == " ":
        alts.append(r"\+")
    return "(?:" + "|".join(alts) + ")"


def needs_pattern(text: str) -> bool:
    """True when ``text`` holds an escape or a line break, so that a secret may hide in it
    in a form only :func:`secret_pattern` finds."""
    return not _ESCAPES.isdisjoint(text)


def _base64_inner(raw: bytes) -> set[str]:
    """The base64 characters that depend on ``raw`` alone wherever it starts in a longer
    encoded blob (``Basic user:key``, a base64'd JSON body): one run per offset mod 3,
    standard and URL-safe, without the edge characters its neighbours also shape."""
    runs: set[str] = set()
    for shift in range(3):
        start = -(-8 * shift // 6)  # first character holding only bits of raw
        end = 8 * (shift + len(raw)) // 6  # past the last such character
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            runs.add(encode(bytes(shift) + raw).decode("ascii")[start:end])
    return runs


def scrub(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret``, in any of its :func:`encodings`,
    replaced by ``[redacted]``.

    Strings shorter than 8 characters are left alone: they are not real keys (tests use
    ``"k"``), and replacing them would mangle ordinary words and model ids.
    """
    if not secret or len(secret) < MIN_SECRET:
        return text
    for form in sorted(encodings(secret), key=len, reverse=True):
        text = text.replace(form, "[redacted]")
    if needs_pattern(text):
        pattern = secret_pattern([secret])
        text = text if pattern is None else pattern.sub("[redacted]", text)
    return text


def error_text(error: object, secret: str | None, *, limit: int = ERROR_TEXT_LIMIT) -> str | None:
    """What a record says of an error: its text on one line (an exception without a message:
    its type), ``secret`` scrubbed (see :func:`scrub`), then clipped to ``limit`` characters.
    None for None or empty text."""
    if error is None:
        return None
    text = " ".join(scrub(str(error), secret).split())  # scrubbed before lines are joined
    if not text and not isinstance(error, str):
        text = type(error).__name__
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 3] + "..."


def text_or_none(value: Any) -> str | None:
    """``value`` when it is a non-empty string, else None (for fields read from loose dicts)."""
    return value if isinstance(value, str) and value else None
