"""A LiteLLM proxy ``config.yaml`` generated from the catalog, and the ``litellm-config`` command.

One deployment per catalog model (``openai/<id>`` at the gateway, the key read from the
environment, per-token prices when the catalog has them, known capabilities and context
window), plus the routed groups (``routed/auto``, ``routed/code``, ...). The proxy's
pre-call hook (:class:`routedllm.adapters.litellm.LiteLLMHandler`) replaces a routed group by the
decision for each request; the group's own deployment and ``router_settings.fallbacks``
hold the decision for a typical request of that tag, so the groups are listed by
``/v1/models`` and still route sensibly should the hook be left out. No litellm import.
"""

from __future__ import annotations

import argparse
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
_CAPABILITY_KEYS = {
    "image_input": "supports_vision",
    "tools": "supports_function_calling",
    "structured_output": "supports_response_schema",
}


def deployment(
    card: ModelCard, *, base_url: str, api_key_env: str, name: str | None = None
) -> dict[str, Any]:
    """The LiteLLM deployment of one catalog model; prices and capabilities only when known."""
    params: dict[str, Any] = {
        "model": f"openai/{card.id}",
        "api_base": base_url,
        "api_key": f"os.environ/{api_key_env}",
    }
    for key, price in (
        ("input_cost_per_token", card.input_usd_per_mtok),
        ("output_cost_per_token", card.output_usd_per_mtok),
        ("cache_read_input_token_cost", card.cached_input_usd_per_mtok),
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


def model_list(
    catalog: Catalog | None = None, *, base_url: str | None = None, policy: Policy | None = None
) -> list[dict[str, Any]]:
    """LiteLLM's ``model_list``: every catalog model, then the routed groups.

    ``base_url`` defaults to the catalog's gateway. A routed group is a copy of the
    deployment its tag's typical request is routed to (see :func:`routed_fallbacks`).
    Pass it to ``litellm.Router(model_list=...)``; the key is read from the environment.
    """
    catalog = Catalog.from_env() if catalog is None else catalog
    gateway = catalog.info.gateway
    where = {"base_url": base_url or gateway.base_url, "api_key_env": gateway.api_key_env}
    entries = [deployment(card, **where) for card in catalog]
    for group, ranking in _static_routes(catalog, policy or Policy()).items():
        entries.append(deployment(catalog.get(ranking[0]), name=group, **where))
    return entries


def routed_fallbacks(
    catalog: Catalog | None = None, *, policy: Policy | None = None
) -> list[dict[str, list[str]]]:
    """``router_settings.fallbacks``: each routed group's typical ranking after its choice."""
    catalog = Catalog.from_env() if catalog is None else catalog
    return [
        {group: list(ranking[1:])}
        for group, ranking in _static_routes(catalog, policy or Policy()).items()
        if len(ranking) > 1
    ]


def proxy_config(
    catalog: Catalog | None = None,
    *,
    base_url: str | None = None,
    policy: Policy | None = None,
    handler: str = HANDLER,
) -> dict[str, Any]:
    """The whole proxy config: model list, fallbacks, the routedllm callback, the master key.

    Retries are off (``num_retries: 0``): a failed model moves on to the next one in the
    decision's ranking, and every attempt is one ledger record.
    """
    catalog = Catalog.from_env() if catalog is None else catalog
    return {
        "model_list": model_list(catalog, base_url=base_url, policy=policy),
        "router_settings": {
            "num_retries": 0,
            "fallbacks": routed_fallbacks(catalog, policy=policy),
        },
        "litellm_settings": {"callbacks": [handler]},
        "general_settings": {"master_key": MASTER_KEY},
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
) -> Path:
    """Write the proxy config to ``path``; returns the path."""
    catalog = Catalog.from_env() if catalog is None else catalog
    text = render_config(proxy_config(catalog, base_url=base_url, policy=policy), catalog)
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
    text = render_config(proxy_config(catalog, base_url=args.base_url, policy=policy), catalog)
    missing = [g for g in routed_groups() if g not in _static_routes(catalog, policy)]
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


def _static_routes(catalog: Catalog, policy: Policy) -> dict[str, tuple[str, ...]]:
    """Each routed group's ranking for a typical request; groups with no eligible model left out."""
    routes = {}
    router = Router(catalog, policy)
    for group in routed_groups():
        tags = group_tags(group) if group != AUTO else None
        try:
            routes[group] = router.decide(Request(messages=_TYPICAL, tags=tags)).ranking
        except NoEligibleModelError:
            continue
    return routes


def _per_token(usd_per_mtok: float) -> float:
    """USD per token from USD per 1M tokens, without binary noise (0.18 -> 1.8e-07)."""
    return float(Decimal(repr(usd_per_mtok)) / Decimal(1_000_000))
