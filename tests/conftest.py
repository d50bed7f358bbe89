"""Shared fixtures. Sockets are disabled for every test (see pyproject addopts)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from routedllm import Catalog, Policy

FIXTURE_CATALOG = Path(__file__).parent / "data" / "fixture_catalog.yaml"


def fixture_catalog() -> Catalog:
    """A fresh copy of the logic tests' catalog: test figures, not the shipped ones.

    The shipped figures and choices are pinned in ``tests/test_shipped_catalog.py`` alone.
    """
    data = yaml.safe_load(FIXTURE_CATALOG.read_text("utf-8"))
    return Catalog.from_dict(data, origin=str(FIXTURE_CATALOG))


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return fixture_catalog()


@pytest.fixture
def packaged_is_fixture(monkeypatch: pytest.MonkeyPatch) -> Catalog:
    """Make ``Catalog.default()`` (the packaged catalog) load the fixture catalog.

    For logic tests of code that reads the packaged catalog itself (the CLI without
    ``--catalog``); ``ROUTEDLLM_CATALOG`` is cleared so that nothing is merged over it.
    """
    monkeypatch.delenv("ROUTEDLLM_CATALOG", raising=False)
    monkeypatch.setattr(Catalog, "default", classmethod(lambda cls: fixture_catalog()))
    return fixture_catalog()


@pytest.fixture
def policy() -> Policy:
    return Policy()


def user(text: str) -> list[dict[str, str]]:
    """A one-message conversation."""
    return [{"role": "user", "content": text}]


# -- cassettes (vcrpy through pytest-recording) ----------------------------------------------
_KEEP_REQUEST_HEADERS = frozenset({"accept", "authorization", "content-type"})
_DROP_RESPONSE_HEADERS = frozenset(
    {"set-cookie", "openai-organization", "openai-project", "cf-ray"}
)


def _scrub_request(request: Any) -> Any:
    for name in list(request.headers):
        if name.lower() not in _KEEP_REQUEST_HEADERS:
            del request.headers[name]
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers") or {}
    for name in list(headers):
        if name.lower() in _DROP_RESPONSE_HEADERS:
            del headers[name]
    return response


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _json_body(r1: Any, r2: Any) -> None:
    """Bodies match when equal, random UUIDs (e.g. generated tool-call ids) aside."""

    def norm(body: Any) -> str:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        return _UUID.sub("<uuid>", text)

    assert norm(r1.body) == norm(r2.body), "bodies differ"


def pytest_recording_configure(config: Any, vcr: Any) -> None:
    vcr.register_matcher("json_body", _json_body)


@pytest.fixture(scope="session")
def vcr_config() -> dict[str, Any]:
    """Cassette settings: credentials replaced by ``PLACEHOLDER``, requests matched on body.

    No ``record_mode`` here: it comes from ``--record-mode`` alone, default ``none``
    (replay; a request missing from the cassette fails and never reaches the network).
    Test modules set ``vcr_cassette_dir`` to their folder under ``cassettes/``.
    """
    from langchain_tests.conftest import base_vcr_config

    config = base_vcr_config()
    config.pop("record_mode")
    config.pop("cassette_library_dir")
    config["match_on"] = ["method", "uri", "json_body"]
    config["before_record_request"] = _scrub_request
    config["before_record_response"] = _scrub_response
    return config
