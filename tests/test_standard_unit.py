"""LangChain's standard unit suite (langchain-tests ``ChatModelUnitTests``) on RoutedChatModel.

Every test runs. One is skipped by the suite itself: ``test_serdes``, because
RoutedChatModel is not LangChain-serializable (its catalog and policy are live objects; a
serialized form would silently drop a custom catalog).
"""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

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
