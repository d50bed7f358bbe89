"""A LiteLLM proxy ``config.yaml`` generated from the catalog, and the ``litellm-config`` command.

One deployment per catalog model (``openai/<id>`` at the gateway, the key read from the
environment, per-token prices when the catalog has them, known capabilities and context
window), plus the routed groups (``routed/auto``, ``routed/code``, ...). The proxy's
pre-call hook (:class:`routedllm.adapters.litellm.LiteLLMHandler`) replaces a routed group by the
decision for each request; the group's own deployment and ``router_settings.fallbacks``
hold the decision for a typical request of that tag, so the groups are listed by
``/v1/models`` and still route sensibly should the hook be left out.

Operations: every deployment has a request timeout and a stream timeout (a hung upstream
moves the call on instead of holding it for LiteLLM's default 6,000 s); a 429 or 5xx is
retried once on the same model (LiteLLM's backoff) before the next model is tried;
timeouts and other errors move on at once. Models with no input or output price are left
out unless asked for, so LiteLLM never charges $0 for them. No litellm import.
"""

from __future__ import annotations

import argparse
import math
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from routedllm.adapters.litellm.routing import AUTO, group_tags, routed_groups
from routedllm.core.catalog import Catalog, ModelCard
from routedllm.core.decision import PRESETS, Policy, Request, Router
from routedllm.core.errors import NoEligibleModelError

HANDLER = "routedllm.adapters.litellm.handler"
MASTER_KEY = "os.environ/LITELLM_MASTER_KEY"
# What a typical request of a tag looks like, to fix the routed groups' static choice.
_TYPICAL = [{"role": "user", "content": "A typical request."}]
DEFAULT_TIMEOUT_S = 120.0
"""Seconds a non-streamed request may take before the next model is tried."""
DEFAULT_STREAM_TIMEOUT_S = 60.0
"""Seconds a stream may wait for its first byte, or between two chunks."""
DEFAULT_RETRIES = 1
"""Retries of the same model on a 429 or 5xx before the next model (LiteLLM's backoff)."""
_CAPABILITY_KEYS = {
    "image_input": "supports_vision",
    "tools": "supports_function_calling",
    "structured_output": "supports_response_schema",
}


def deployment(
    card: ModelCard,
    *,
    base_url: str,
    api_key_env: str,
    name: str | None = None,
    timeout_s: float | None = None,
    stream_timeout_s: float | None = None,
) -> dict[str, Any]:
    """The LiteLLM deployment of one catalog model; prices and capabilities only when known."""
    params: dict[str, Any] = {
        "model": f"openai/{card.id}",
        "api_base": base_url,
        "api_key": f"os.environ/{api_key_env}",
    }
    if timeout_s is not None:
        params["timeout"] = timeout_s
    if stream_timeout_s is not None:
        params["stream_timeout"] = stream_timeout_s
    # cached input tokens: the catalog's cached price, else the input price, as the ledger
    # charges them (LiteLLM would otherwise apply its own discount and disagree)
    cached = card.cached_input_usd_per_mtok
    for key, price in (
        ("input_cost_per_token", card.input_usd_per_mtok),
        ("output_cost_per_token", card.output_usd_per_mtok),
        ("cache_read_input_token_cost", card.input_usd_per_mtok if cached is None else cached),
    ):
        if price is not None:
            params[key] = _per_token(price)
    info: dict[str, Any] = {}
    if card.context_window is not None:
        info["max_input_tokens"] = card.context_window
    for capability, key in _CAPABILITY_KEYS.items():
        known = getattr(card.capabilities, capability)
        if known is not None:
            info[key] = known
    entry: dict[str, Any] = {"model_name": name or card.id, "litellm_params": params}
    if info:
        entry["model_info"] = info
    return entry


def priced(card: ModelCard) -> bool:
    """True when the catalog has both the model's input and output price."""
    return card.input_usd_per_mtok is not None and card.output_usd_per_mtok is not None


def model_list(
    catalog: Catalog | None = None,
    *,
    base_url: str | None = None,
    policy: Policy | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    stream_timeout_s: float | None = DEFAULT_STREAM_TIMEOUT_S,
    include_unpriced: bool = False,
) -> list[dict[str, Any]]:
    """LiteLLM's ``model_list``: every priced catalog model, then the routed groups.

    ``base_url`` defaults to the catalog's gateway. A routed group is a copy of the
    deployment its tag's typical request is routed to (see :func:`routed_fallbacks`).
    Models missing a price are left out unless ``include_unpriced`` (LiteLLM would
    charge $0 for the missing side). Pass it to ``litellm.Router(model_list=...)``; the
    key is read from the environment.
    """
    catalog = Catalog.from_env() if catalog is None else catalog
    gateway = catalog.info.gateway
    where: dict[str, Any] = {
        "base_url": base_url or gateway.base_url,
        "api_key_env": gateway.api_key_env,
        "timeout_s": timeout_s,
        "stream_timeout_s": stream_timeout_s,
    }
    entries = [deployment(card, **where) for card in catalog if include_unpriced or priced(card)]
    for group, ranking in _static_routes(catalog, policy or Policy(), include_unpriced).items():
        entries.append(deployment(catalog.get(ranking[0]), name=group, **where))
    return entries


def routed_fallbacks(
    catalog: Catalog | None = None, *, policy: Policy | None = None, include_unpriced: bool = False
) -> list[dict[str, list[str]]]:
    """``router_settings.fallbacks``: each routed group's typical ranking after its choice."""
    catalog = Catalog.from_env() if catalog is None else catalog
    return [
        {group: list(ranking[1:])}
        for group, ranking in _static_routes(catalog, policy or Policy(), include_unpriced).items()
        if len(ranking) > 1
    ]


def retry_policy(retries: int) -> dict[str, int]:
    """LiteLLM's ``retry_policy``: ``retries`` on a 429 or 5xx, none on anything else.

    A timeout is not retried (the same model would likely hang again: the next model is
    tried), nor is a 400 or 401 (the same request would fail the same way).
    """
    return {
        "RateLimitErrorRetries": retries,
        "InternalServerErrorRetries": retries,
        "TimeoutErrorRetries": 0,
        "BadRequestErrorRetries": 0,
        "AuthenticationErrorRetries": 0,
        "ContentPolicyViolationErrorRetries": 0,
    }


def proxy_config(
    catalog: Catalog | None = None,
    *,
    base_url: str | None = None,
    policy: Policy | None = None,
    handler: str = HANDLER,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    stream_timeout_s: float = DEFAULT_STREAM_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
    include_unpriced: bool = False,
) -> dict[str, Any]:
    """The whole proxy config: model list, timeouts, retries, fallbacks, the routedllm
    callback, the master key.

    Each deployment times out after ``timeout_s`` (``stream_timeout_s`` for a stream's
    first byte and each gap after it); a 429 or 5xx is retried ``retries`` times on the
    same model before the decision's next model (see :func:`retry_policy`). Every attempt,
    retries included, is one ledger record.
    """
    catalog = Catalog.from_env() if catalog is None else catalog
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, got {retries}")
    for label, value in (("timeout", timeout_s), ("stream timeout", stream_timeout_s)):
        if not (value > 0 and math.isfinite(value)):  # inf: a hung upstream would hold for ever
            raise ValueError(
                f"the {label} must be a positive, finite number of seconds, got {value}"
            )
    return {
        "model_list": model_list(
            catalog,
            base_url=base_url,
            policy=policy,
            timeout_s=timeout_s,
            stream_timeout_s=stream_timeout_s,
            include_unpriced=include_unpriced,
        ),
        "router_settings": {
            "num_retries": retries,
            "retry_policy": retry_policy(retries),
            "timeout": timeout_s,
            "stream_timeout": stream_timeout_s,
            "fallbacks": routed_fallbacks(
                catalog, policy=policy, include_unpriced=include_unpriced
            ),
        },
        "litellm_settings": {"callbacks": [handler], "request_timeout": timeout_s},
        # no proxy in front: X-Forwarded-For is not trusted, and LiteLLM does not warn
        # that the setting is missing (set the ranges of a reverse proxy that fronts it)
        "general_settings": {"master_key": MASTER_KEY, "trusted_proxy_ranges": []},
    }


def render_config(config: dict[str, Any], catalog: Catalog | None = None) -> str:
    """The config as YAML, under a header that says where it came from."""
    catalog = Catalog.from_env() if catalog is None else catalog
    key_env = catalog.info.gateway.api_key_env  # the deployments' api_key names it too
    master_env = MASTER_KEY.removeprefix("os.environ/")
    header = (
        "# LiteLLM proxy config generated by `routedllm litellm-config` from the routedllm\n"
        f"# catalog ({catalog.info.name}, prices as of {catalog.info.as_of or 'unknown'}).\n"
        "# Regenerate it after changing the catalog. Clients ask for routed/auto or\n"
        "# routed/<tag>; the routedllm callback picks the model for each request.\n"
        f"# Needs {key_env} and {master_env} in the environment.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)


def write_config(
    path: str | Path,
    catalog: Catalog | None = None,
    *,
    base_url: str | None = None,
    policy: Policy | None = None,
    **options: Any,
) -> Path:
    """Write the proxy config to ``path``; returns the path. ``options`` go to
    :func:`proxy_config` (timeouts, retries, ``include_unpriced``)."""
    catalog = Catalog.from_env() if catalog is None else catalog
    config = proxy_config(catalog, base_url=base_url, policy=policy, **options)
    text = render_config(config, catalog)
    path = Path(path)
    path.write_text(text, "utf-8")
    return path


def add_litellm_config_command(
    subparsers: argparse._SubParsersAction, common_parent: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    """Register the ``litellm-config`` subcommand on the ``routedllm`` parser."""
    p = subparsers.add_parser(
        "litellm-config",
        parents=[common_parent],
        help="write a LiteLLM proxy config.yaml: the catalog's models and routed groups",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    p.add_argument(
        "--base-url",
        metavar="URL",
        help="OpenAI-compatible endpoint of every deployment (default: the gateway)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"request timeout per attempt before the next model (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--stream-timeout",
        type=float,
        default=DEFAULT_STREAM_TIMEOUT_S,
        metavar="SECONDS",
        help="a stream's wait for its first byte and between chunks "
        f"(default {DEFAULT_STREAM_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        metavar="N",
        help="retries of the same model on a 429 or 5xx before the next model "
        f"(default {DEFAULT_RETRIES})",
    )
    p.add_argument(
        "--include-unpriced",
        action="store_true",
        help="also list models the catalog has no price for (LiteLLM charges $0 for them)",
    )
    p.add_argument(
        "--policy",
        choices=PRESETS,
        default="value",
        help="policy of the routed groups' static choice (the callback's own policy "
        "comes from ROUTEDLLM_POLICY)",
    )
    p.set_defaults(run=cmd_litellm_config)
    return p


def cmd_litellm_config(args: argparse.Namespace) -> int:
    """Print or write the proxy config."""
    catalog = Catalog.from_file(args.catalog) if args.catalog else Catalog.from_env()
    catalog.check_freshness(args.max_price_age_days)
    if args.base_url is not None and not args.base_url.startswith(("http://", "https://")):
        raise ValueError(f"--base-url must be an http(s) URL, got {args.base_url!r}")
    policy = Policy(preset=args.policy)
    config = proxy_config(
        catalog,
        base_url=args.base_url,
        policy=policy,
        timeout_s=args.timeout,
        stream_timeout_s=args.stream_timeout,
        retries=args.retries,
        include_unpriced=args.include_unpriced,
    )
    text = render_config(config, catalog)
    left_out = [] if args.include_unpriced else [c.id for c in catalog if not priced(c)]
    if left_out:
        print(
            f"routedllm: unpriced, left out (--include-unpriced to list them): "
            f"{', '.join(left_out)}",
            file=sys.stderr,
        )
    routes = _static_routes(catalog, policy, args.include_unpriced)
    missing = [g for g in routed_groups() if g not in routes]
    if missing:
        print(
            f"routedllm: warning: no eligible model for {', '.join(missing)}: left out",
            file=sys.stderr,
        )
    if args.output:
        Path(args.output).write_text(text, "utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _static_routes(
    catalog: Catalog, policy: Policy, include_unpriced: bool = False
) -> dict[str, tuple[str, ...]]:
    """Each routed group's ranking for a typical request, over the models the config lists;
    groups with no eligible model left out."""
    routes = {}
    router = Router(catalog, policy)
    for group in routed_groups():
        tags = group_tags(group) if group != AUTO else None
        try:
            ranking = router.decide(Request(messages=_TYPICAL, tags=tags)).ranking
        except NoEligibleModelError:
            continue
        listed = tuple(m for m in ranking if include_unpriced or priced(catalog.get(m)))
        if listed:
            routes[group] = listed
    return routes


def _per_token(usd_per_mtok: float) -> float:
    """USD per token from USD per 1M tokens, without binary noise (0.18 -> 1.8e-07)."""
    return float(Decimal(repr(usd_per_mtok)) / Decimal(1_000_000))
