"""The LiteLLM proxy config generated from the catalog, the ``litellm-config`` command, and
the committed ``integrations/litellm/config.yaml``. None of this needs litellm installed."""

from __future__ import annotations

import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest
import yaml

import routedllm.adapters.litellm as rl
from routedllm import Catalog, Policy, Request, decide
from routedllm.adapters.litellm import (
    HANDLER,
    deployment,
    model_list,
    proxy_config,
    render_config,
    routed_fallbacks,
    routed_groups,
)
from routedllm.adapters.litellm.config import (
    _TYPICAL,
    DEFAULT_STREAM_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
)
from routedllm.adapters.litellm.routing import group_tags
from routedllm.cli import main

COMMITTED = Path(__file__).resolve().parents[1] / "integrations" / "litellm" / "config.yaml"
NO_AGE_LIMIT = ["--max-price-age-days", "100000"]


def _entries(config_list: list[dict], name: str) -> list[dict]:
    return [e for e in config_list if e["model_name"] == name]


def test_one_deployment_per_catalog_model(catalog: Catalog) -> None:
    entries = model_list(catalog, include_unpriced=True)
    gateway = catalog.info.gateway
    for card in catalog:
        [entry] = _entries(entries, card.id)
        params = entry["litellm_params"]
        assert params["model"] == f"openai/{card.id}"
        assert params["api_base"] == gateway.base_url
        assert (
            params["api_key"] == f"os.environ/{gateway.api_key_env}" == "os.environ/GLOBAL_API_KEY"
        )
        for key, price in (
            ("input_cost_per_token", card.input_usd_per_mtok),
            ("output_cost_per_token", card.output_usd_per_mtok),
        ):
            if price is None:  # unknown stays unknown: LiteLLM would count a 0 as free
                assert key not in params
            else:
                assert params[key] == pytest.approx(price / 1e6, rel=1e-12)
        info = entry.get("model_info", {})
        assert info.get("max_input_tokens") == card.context_window
        assert info.get("supports_vision") == card.capabilities.image_input
        assert info.get("supports_function_calling") == card.capabilities.tools
        assert params["timeout"] == DEFAULT_TIMEOUT_S
        assert params["stream_timeout"] == DEFAULT_STREAM_TIMEOUT_S


def test_unpriced_models_are_left_out_unless_asked_for(catalog: Catalog) -> None:
    unpriced = {
        c.id for c in catalog if c.input_usd_per_mtok is None or c.output_usd_per_mtok is None
    }
    assert unpriced, "the fixture catalog has models without a price"
    names = {e["model_name"] for e in model_list(catalog)}
    assert not names & unpriced and {c.id for c in catalog} - unpriced <= names
    listed = {e["model_name"] for e in model_list(catalog, include_unpriced=True)}
    assert unpriced <= listed
    for item in routed_fallbacks(catalog):  # no fallback names a model the config leaves out
        for chain in item.values():
            assert not set(chain) & unpriced


def test_unpriced_models_carry_no_zero_price(catalog: Catalog) -> None:
    unpriced = [card for card in catalog if card.input_usd_per_mtok is None]
    assert unpriced, "the packaged catalog has models without an input price"
    for card in unpriced:
        [entry] = _entries(model_list(catalog, include_unpriced=True), card.id)
        assert "input_cost_per_token" not in entry["litellm_params"]
    assert all(
        v != 0
        for e in model_list(catalog, include_unpriced=True)
        for k, v in e["litellm_params"].items()
        if k.endswith("cost_per_token")
    )


def test_per_token_prices_have_no_binary_noise(catalog: Catalog) -> None:
    card = catalog.merged(
        {
            "models": [
                {
                    "id": "m",
                    "name": "M",
                    "input_usd_per_mtok": 0.18,
                    "output_usd_per_mtok": 0.28,
                    "cached_input_usd_per_mtok": 0.07,
                }
            ]
        }
    ).get("m")
    params = deployment(card, base_url="http://x/v1", api_key_env="K")["litellm_params"]
    assert repr(params["input_cost_per_token"]) == "1.8e-07"
    assert repr(params["output_cost_per_token"]) == "2.8e-07"
    assert repr(params["cache_read_input_token_cost"]) == "7e-08"
    # no cached price in the catalog: cached tokens cost the input price, as in the ledger
    plain = catalog.merged(
        {"models": [{"id": "n", "name": "N", "input_usd_per_mtok": 0.18, "output_usd_per_mtok": 1}]}
    ).get("n")
    params = deployment(plain, base_url="http://x/v1", api_key_env="K")["litellm_params"]
    assert params["cache_read_input_token_cost"] == params["input_cost_per_token"]
    assert params["api_key"] == "os.environ/K"


def test_known_capabilities_only(catalog: Catalog) -> None:
    card = catalog.merged(
        {
            "models": [
                {
                    "id": "m",
                    "name": "M",
                    "context_window": 32000,
                    "capabilities": {"tools": False, "structured_output": True},
                }
            ]
        }
    ).get("m")
    entry = deployment(card, base_url="http://x/v1", api_key_env="K")
    assert entry["model_info"] == {
        "max_input_tokens": 32000,
        "supports_function_calling": False,
        "supports_response_schema": True,
    }
    bare = deployment(
        catalog.merged({"models": [{"id": "b", "name": "B"}]}).get("b"),
        base_url="http://x/v1",
        api_key_env="K",
    )
    assert "model_info" not in bare


@pytest.mark.parametrize("preset", ["value", "quality", "cheapest"])
def test_routed_groups_hold_the_typical_decision(catalog: Catalog, preset: str) -> None:
    policy = Policy(preset=preset)
    entries = model_list(catalog, policy=policy)
    fallbacks = {k: v for item in routed_fallbacks(catalog, policy=policy) for k, v in item.items()}
    for group in routed_groups():
        decision = decide(catalog, policy, Request(messages=_TYPICAL, tags=group_tags(group)))
        [entry] = _entries(entries, group)
        [model] = _entries(entries, decision.model)
        assert entry["litellm_params"] == model["litellm_params"]
        assert fallbacks.get(group, []) == list(decision.fallbacks)
    priced = [c for c in catalog if c.input_usd_per_mtok is not None and c.output_usd_per_mtok]
    assert len(entries) == len(priced) + len(routed_groups())


def test_groups_without_an_eligible_model_are_left_out(catalog: Catalog) -> None:
    blind = catalog.merged(
        {"models": [{"id": c.id, "capabilities": {"image_input": False}} for c in catalog]}
    )
    names = [e["model_name"] for e in model_list(blind)]
    assert "routed/vision" not in names and "routed/code" in names
    assert all("routed/vision" not in item for item in routed_fallbacks(blind))


def test_proxy_config_settings(catalog: Catalog) -> None:
    config = proxy_config(catalog, base_url="http://127.0.0.1:9/v1")
    assert config["general_settings"] == {
        "master_key": "os.environ/LITELLM_MASTER_KEY",
        "trusted_proxy_ranges": [],  # clients connect directly: X-Forwarded-For not trusted
    }
    assert config["litellm_settings"] == {
        "callbacks": [HANDLER],
        "request_timeout": DEFAULT_TIMEOUT_S,
    }
    assert HANDLER == "routedllm.adapters.litellm.handler"
    settings = config["router_settings"]
    assert settings["num_retries"] == 1 and settings["timeout"] == DEFAULT_TIMEOUT_S
    assert settings["retry_policy"]["RateLimitErrorRetries"] == 1
    assert settings["retry_policy"]["InternalServerErrorRetries"] == 1
    assert settings["retry_policy"]["TimeoutErrorRetries"] == 0
    assert settings["retry_policy"]["BadRequestErrorRetries"] == 0
    assert {e["litellm_params"]["api_base"] for e in config["model_list"]} == {
        "http://127.0.0.1:9/v1"
    }
    assert yaml.safe_load(render_config(config, catalog)) == config


def test_committed_config_is_current() -> None:
    catalog = Catalog.default()
    expected = render_config(proxy_config(catalog), catalog)
    assert COMMITTED.read_text("utf-8") == expected, (
        "integrations/litellm/config.yaml is stale: regenerate it with "
        "`routedllm litellm-config -o integrations/litellm/config.yaml`"
    )


def test_cli_writes_the_config(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("ROUTEDLLM_CATALOG", raising=False)
    catalog = Catalog.default()  # what the CLI reads without --catalog or ROUTEDLLM_CATALOG
    out = tmp_path / "config.yaml"
    assert (
        main(
            ["litellm-config", "-o", str(out), "--base-url", "http://127.0.0.1:8/v1", *NO_AGE_LIMIT]
        )
        == 0
    )
    assert out.read_text("utf-8") == render_config(
        proxy_config(catalog, base_url="http://127.0.0.1:8/v1"), catalog
    )
    assert main(["litellm-config", *NO_AGE_LIMIT]) == 0
    assert capsys.readouterr().out == render_config(proxy_config(catalog), catalog)


def test_cli_policy_and_catalog_options(tmp_path: Path, catalog: Catalog, capsys) -> None:
    override = tmp_path / "override.yaml"
    override.write_text(
        yaml.safe_dump(
            {"models": [{"id": c.id, "capabilities": {"image_input": False}} for c in catalog]}
        ),
        "utf-8",
    )
    assert (
        main(["litellm-config", "--catalog", str(override), "--policy", "quality", *NO_AGE_LIMIT])
        == 0
    )
    captured = capsys.readouterr()
    config = yaml.safe_load(captured.out)
    assert "routed/vision" not in [e["model_name"] for e in config["model_list"]]
    assert "no eligible model for routed/vision" in captured.err
    quality = Policy(preset="quality")
    [entry] = _entries(config["model_list"], "routed/code")
    best = decide(catalog, quality, Request(messages=_TYPICAL, tags=["code"])).model
    assert entry["litellm_params"]["model"] == f"openai/{best}"


def test_config_names_the_catalogs_key_variable(tmp_path: Path, catalog: Catalog, capsys) -> None:
    override = tmp_path / "override.yaml"
    gateway = {"api_key_env": "TEAM_GATEWAY_KEY"}
    override.write_text(yaml.safe_dump({"catalog": {"gateway": gateway}}), "utf-8")
    assert main(["litellm-config", "--catalog", str(override), *NO_AGE_LIMIT]) == 0
    text = capsys.readouterr().out
    header = [line for line in text.splitlines() if line.startswith("# Needs ")]
    assert header == ["# Needs TEAM_GATEWAY_KEY and LITELLM_MASTER_KEY in the environment."]
    assert "GLOBAL_API_KEY" not in text
    keys = {e["litellm_params"]["api_key"] for e in yaml.safe_load(text)["model_list"]}
    assert keys == {"os.environ/TEAM_GATEWAY_KEY"}
    default_header = render_config(proxy_config(catalog), catalog).splitlines()[4]
    assert default_header == "# Needs GLOBAL_API_KEY and LITELLM_MASTER_KEY in the environment."


def test_the_named_handler_is_built_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    both_inside = threading.Barrier(2)

    class Handler:  # stands in for LiteLLMHandler: building one opens a ledger
        @classmethod
        def from_env(cls) -> Handler:
            try:  # a second builder arriving here means two handlers (two ledgers)
                both_inside.wait(timeout=0.5)
            except threading.BrokenBarrierError:
                pass
            built.append(handler := cls())
            return handler

    fake = types.ModuleType("routedllm.adapters.litellm.callback")
    fake.LiteLLMHandler = Handler  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "routedllm.adapters.litellm.callback", fake)
    monkeypatch.setattr(rl, "_handler", None)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(rl.handler)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1
    assert got == [built[0], built[0]] and rl.handler is built[0]


def test_cli_rejects_a_bad_base_url(capsys) -> None:
    assert main(["litellm-config", "--base-url", "127.0.0.1:8", *NO_AGE_LIMIT]) == 2
    assert "--base-url must be an http(s) URL" in capsys.readouterr().err


def test_routedllm_and_langchain_path_never_import_litellm() -> None:
    code = (
        "import sys, routedllm, routedllm.cli, routedllm.adapters.litellm\n"
        "import routedllm.adapters.langchain.chat_model\n"
        "from routedllm import CostLatencyHandler, RoutedChatModel\n"
        "from routedllm.adapters.litellm import proxy_config, RoutedRouter\n"
        "proxy_config()\n"
        "loaded = sorted(m for m in sys.modules if m == 'litellm' or m.startswith('litellm.'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_cli_timeouts_retries_and_unpriced_models(capsys) -> None:
    args = ["litellm-config", "--timeout", "30", "--stream-timeout", "7.5", "--retries", "2"]
    assert main([*args, *NO_AGE_LIMIT]) == 0
    captured = capsys.readouterr()
    config = yaml.safe_load(captured.out)
    unpriced = [c.id for c in Catalog.default() if c.input_usd_per_mtok is None]
    assert f"unpriced, left out (--include-unpriced to list them): {', '.join(unpriced)}" in (
        captured.err
    )
    for entry in config["model_list"]:
        assert entry["litellm_params"]["timeout"] == 30.0
        assert entry["litellm_params"]["stream_timeout"] == 7.5
        assert entry["model_name"] not in unpriced
    assert config["router_settings"]["num_retries"] == 2
    assert config["router_settings"]["retry_policy"]["RateLimitErrorRetries"] == 2
    assert main(["litellm-config", "--include-unpriced", *NO_AGE_LIMIT]) == 0
    listed = {e["model_name"] for e in yaml.safe_load(capsys.readouterr().out)["model_list"]}
    assert set(unpriced) <= listed


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("retries", -1, "retries must be 0 or more"),
        ("timeout_s", 0, "the timeout must be"),
        ("timeout_s", float("inf"), "the timeout must be a positive, finite"),
        ("stream_timeout_s", float("nan"), "the stream timeout must be"),
    ],
)
def test_bad_operations_settings_are_refused(
    catalog: Catalog, option: str, value: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        proxy_config(catalog, **{option: value})


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-5"])
def test_cli_refuses_a_timeout_that_never_ends(capsys, value: str) -> None:
    assert main(["litellm-config", "--timeout", value, *NO_AGE_LIMIT]) == 2
    assert "the timeout must be a positive, finite number of seconds" in capsys.readouterr().err
