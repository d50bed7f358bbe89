"""The public surface: a small, typed, versioned API; the rest lives in submodules."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import routedllm


def test_the_top_level_is_small_and_every_name_resolves() -> None:
    names = [n for n in routedllm.__all__ if n != "__version__"]
    assert len(names) <= 24
    for name in routedllm.__all__:
        assert getattr(routedllm, name) is not None, name


def test_version_and_typing_marker() -> None:
    assert routedllm.__version__ == importlib.metadata.version("routedllm")
    assert (Path(routedllm.__file__).parent / "py.typed").is_file()


def test_the_routed_call_round_trips_through_the_top_level() -> None:
    from routedllm import RoutedCall

    assert RoutedCall.model_json_schema()["title"] == "RoutedCall"
