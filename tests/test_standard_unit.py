"""LangChain's standard unit suite (langchain-tests ``ChatModelUnitTests``) on RoutedChatModel.

Every test runs. ``test_serdes`` is expected to fail at its last step: the dump matches
the snapshot, but the suite loads it with ``allowed_objects="all"``, which admits only the
classes in LangChain's own serialization mappings (partner packages), never a third-party
model. The same round trip with ``allowed_objects=[RoutedChatModel]`` is tested in
tests/test_langchain_compat.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests
from syrupy.assertion import SnapshotAssertion

from routedllm.adapters.langchain.chat_model import RoutedChatModel
from tests.fake_gateway import SOCKET_PROBE_ALLOWED

pytestmark = SOCKET_PROBE_ALLOWED


class TestRoutedChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[RoutedChatModel]:
        return RoutedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return ({"GLOBAL_API_KEY": "env-key"}, {}, {"openai_api_key": "env-key"})

    @property
    def model_override_value(self) -> str:
        return "gpt-4o-mini"

    @pytest.mark.xfail(
        reason="load(allowed_objects='all') admits LangChain's mapped classes only",
        raises=ValueError,
        strict=True,
    )
    def test_serdes(self, model: Any, snapshot: SnapshotAssertion) -> None:
        super().test_serdes(model, snapshot)
