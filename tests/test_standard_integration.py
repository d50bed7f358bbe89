"""LangChain's standard integration suite (``ChatModelIntegrationTests``), replayed from cassettes.

The class is marked ``vcr``: every test replays ``cassettes/standard/<Class>.<test>.yaml``
with record mode ``none``, so no request can reach the network, and a missing cassette
fails. The cassettes were built by ``scripts/build_cassettes.py`` against the fake gateway
in ``tests/fake_gateway.py`` (see ``cassettes/README.md``); with ``GLOBAL_API_KEY`` set,
``pytest tests/test_standard_integration.py --record-mode=all --force-enable-socket``
re-records them against the live gateway.

Routing uses the test catalog (tools and structured output marked for its models), so the
routed model in each recorded request stays fixed whatever the packaged catalog says.

Skipped, and why (the suite's capability flags are left ``False``):

* ``test_image_inputs``, ``test_image_tool_message``: they download a PNG from GitHub while
  running, which an offline replay cannot do without storing that file in a cassette; and
  the catalog establishes image input for one model only. Image input is covered by
  ``tests/test_chat_model_cassettes.py::test_vision_input_routes_to_an_image_model``.
* ``test_pdf_inputs``, ``test_pdf_tool_message``, ``test_audio_inputs``: they download files
  too, and the catalog establishes PDF or audio input for no gateway model.
* ``test_anthropic_inputs``: Anthropic-format content (``tool_use`` blocks, signed
  ``thinking`` blocks) is not part of the OpenAI wire format the gateway speaks.

Not exercised: the optional detail checks inside ``test_usage_metadata`` (audio, reasoning,
cache tokens) need provider-specific calls (``invoke_with_*``); cached and reasoning tokens
are covered by ``tests/test_chat_model_cassettes.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from routedllm.adapters.langchain.chat_model import RoutedChatModel
from tests.fake_gateway import (
    CASSETTE_DIR,
    SOCKET_PROBE_ALLOWED,
    api_key,
    gateway_params,
    test_catalog,
)

pytestmark = SOCKET_PROBE_ALLOWED


@pytest.fixture(scope="module")
def vcr_cassette_dir() -> str:
    return str(CASSETTE_DIR / "standard")


@pytest.mark.vcr
class TestRoutedChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[RoutedChatModel]:
        return RoutedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"api_key": api_key(), "catalog": test_catalog(), **gateway_params()}

    @property
    def model_override_value(self) -> str:
        return "gpt-4o-mini"  # in the catalog, never routed to (unscored): only a pin reaches it

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def enable_vcr_tests(self) -> bool:
        return True
