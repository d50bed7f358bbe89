"""Loading, overriding and validating catalogs."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import pytest

from routedllm import Catalog
from routedllm.core.catalog import StalePricesWarning
from routedllm.core.errors import CatalogError, UnknownModelError
from tests.conftest import fixture_catalog


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "override.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_override_updates_only_given_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  - id: deepseek-v4-flash
    output_usd_per_mtok: 0.44
    scores: {mmlu: 86.1}
""",
    )
    card = Catalog.from_file(path).get("deepseek-v4-flash")
    assert card.output_usd_per_mtok == 0.44 and card.input_usd_per_mtok == 0.18
    assert card.scores == {"mmlu": 86.1, "humaneval": 92.0, "ceval": 88.0}


def test_override_adds_models_and_renames_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
catalog: {as_of: "2026-11-01"}
models:
  - id: deepseek-chat
    renames: deepseek-v4-flash
  - id: my-finetune
    name: My Finetune
    input_usd_per_mtok: 0.1
    output_usd_per_mtok: 0.2
    capabilities: {tools: true}
""",
    )
    catalog = Catalog.from_file(path)
    assert "deepseek-v4-flash" not in catalog
    assert catalog.get("deepseek-chat").name == "DeepSeek V4 Flash"
    assert catalog.get("my-finetune").capabilities.tools is True
    assert catalog.info.as_of == "2026-11-01" and len(catalog) == 12


def test_env_variable_names_the_override(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - id: glm-5\n    context_window: 100000\n")
    assert Catalog.from_env({"ROUTEDLLM_CATALOG": str(path)}).get("glm-5").context_window == 100000
    assert Catalog.from_env({}).get("glm-5").context_window == 200_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "models:\n  - id: glm-5\n    input_usd_per_mtok: -1\n",
            "models[0]: model 'glm-5': field input_usd_per_mtok",
        ),
        ("models:\n  - id: new-model\n", "model 'new-model': field name"),
        ("models:\n  - id: glm-5\n    scores: {mmlu: 130}\n", "field scores"),
        ("models:\n  - id: glm-5\n    scores: {arena: 80}\n", "field scores.arena"),
        ("models:\n  - id: glm-5\n    price: 3\n", "field price: Extra inputs"),
        ("models:\n  - name: no id\n", "each model needs an 'id'"),
        ("models:\n  - id: x\n    renames: nope\n", "renames unknown model 'nope'"),
        ("models: {a: 1}\n", "'models' must be a list"),
        ("model: []\n", "unknown top-level key(s) ['model']"),
        ("models: [\n", "not valid YAML"),
        ("catalog: {as_of: yesterday}\n", "field as_of"),
    ],
)
def test_malformed_override_names_file_model_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as err:
        Catalog.from_file(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_missing_file_and_duplicate_ids() -> None:
    with pytest.raises(CatalogError, match="cannot read catalog file"):
        Catalog.from_file("/nonexistent/catalog.yaml")
    with pytest.raises(CatalogError, match="appears twice"):
        Catalog.from_dict({"models": [{"id": "a", "name": "A"}, {"id": "a", "name": "B"}]})


def test_unknown_model_lists_known_ids(catalog: Catalog) -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'gpt-5'.*deepseek-v4-flash"):
        catalog.get("gpt-5")


def test_stale_prices_warn(catalog: Catalog) -> None:
    with pytest.warns(StalePricesWarning, match="as of 2026"):
        assert catalog.check_freshness(180, today=dt.date(2026, 11, 27)) is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert catalog.check_freshness(400, today=dt.date(2026, 11, 27)) is True


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-latest", "gpt-4o"),
        ("gpt-4o-0613", "gpt-4o"),
        ("claude-3.5-sonnet-20241022", "claude-3.5-sonnet"),
        ("gpt-4o-mini", "gpt-4o-mini"),  # its own card: never gpt-4o by prefix
        ("openai/gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-mini-tts", None),  # a different model, not a snapshot
        ("gpt-4o-audio-preview", None),
        ("gpt-4o-2024-08-06-latest", None),  # one suffix only
        ("gpt-4o-2024", "gpt-4o"),  # a 4-digit snapshot (-0613 style)
        ("GPT-4o", None),  # ids are case-sensitive
        ("llama-3-70b", None),
        ("", None),
        (None, None),
    ],
)
def test_resolve_rule(name: str | None, expected: str | None) -> None:
    card = fixture_catalog().resolve(name)
    assert (card.id if card else None) == expected


def test_resolve_prefers_the_exact_id() -> None:
    catalog = fixture_catalog().merged(
        {"models": [{"id": "gpt-4o-2024-08-06", "name": "Pinned snapshot"}]}
    )
    assert catalog.resolve("gpt-4o-2024-08-06").name == "Pinned snapshot"
    assert catalog.resolve("openai/gpt-4o-2024-08-06").name == "Pinned snapshot"
