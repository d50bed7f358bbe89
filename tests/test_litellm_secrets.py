"""LiteLLMHandler scrubs every key the call knows from its records and logs (issue #13)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from pathlib import Path

import pytest

from routedllm import MemorySink
from routedllm.records.schema import encodings

if importlib.util.find_spec("litellm") is None:
    pytest.skip(
        "litellm is not installed: pip install 'routedllm[litellm]'", allow_module_level=True
    )
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from routedllm.adapters.litellm import LiteLLMHandler  # noqa: E402
from tests.conftest import fixture_catalog  # noqa: E402

GLOBAL = "ga_GLOBALSECRET_" + "1" * 16
DEPLOYMENT = "sk-deployment-SECRET-" + "2" * 16
BEARER = "sk-client-BEARER-" + "3" * 16


def echoing(key: str) -> str:
    forms = sorted(encodings(key))
    return "401 invalid_api_key: Incorrect API key provided: " + " | ".join(forms)


def test_a_deployment_key_echoed_by_the_upstream_is_scrubbed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GLOBAL_API_KEY", GLOBAL)
    ledger = tmp_path / "ledger.jsonl"
    memory = MemorySink()
    h = LiteLLMHandler(fixture_catalog(), ledger_path=ledger, memory=memory)
    text = " ".join(echoing(k) for k in (DEPLOYMENT, GLOBAL, BEARER))
    kwargs = {
        "model": "gpt-4o",
        "api_key": DEPLOYMENT,
        "litellm_params": {"api_key": DEPLOYMENT, "metadata": {}},
        "proxy_server_request": {"headers": {"authorization": f"Bearer {BEARER}"}},
        "standard_logging_object": {
            "model": "gpt-4o",
            "model_id": "dep-1",
            "trace_id": "t-key",
            "error_str": text,
        },
        "exception": Exception(text),
    }
    with caplog.at_level(logging.DEBUG, logger="routedllm"):
        h.log_failure_event(kwargs, None, None, None)
        request = {
            "model": "gpt-4o",
            "litellm_call_id": "c-2",
            "model_list": [{"litellm_params": {"api_key": DEPLOYMENT}}],
            "metadata": {},
            "proxy_server_request": {"headers": {"Authorization": f"Bearer {BEARER}"}},
        }

        asyncio.run(h.async_post_call_failure_deployment_hook(request, Exception(text), None))
    assert len(memory.records) == 2
    written = [ledger.read_text("utf-8"), caplog.text]
    written += [r.model_dump_json() for r in memory.records]
    assert all("[redacted]" in r.error for r in memory.records)
    for key in (DEPLOYMENT, GLOBAL, BEARER):
        for form in encodings(key):
            for out in written:
                assert form not in out, (key, form)
