"""Shared fixtures. Sockets are disabled for every test (see pyproject addopts)."""

from __future__ import annotations

import pytest

from routedllm import Catalog, Policy


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.default()


@pytest.fixture
def policy() -> Policy:
    return Policy()


def user(text: str) -> list[dict[str, str]]:
    """A one-message conversation."""
    return [{"role": "user", "content": text}]
