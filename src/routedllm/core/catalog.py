"""Model cards and the catalog that holds them: loading, user overrides, validation.

The packaged catalog carries published figures exactly; anything the source does not give
is ``None`` and stays so. Users merge their own YAML file over it by model ``id``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from routedllm.core.errors import CatalogError, UnknownModelError

Benchmark = Literal["mmlu", "humaneval", "ceval"]
BENCHMARKS: tuple[str, ...] = ("mmlu", "humaneval", "ceval")
CAPABILITIES: tuple[str, ...] = ("image_input", "tools", "structured_output", "json_schema")
CATALOG_ENV = "ROUTEDLLM_CATALOG"
DEFAULT_BASE_URL = "https://global-apis.com/v1"
# A provider's dated snapshot of a catalog model: "gpt-4o-2024-08-06", "...-20241022",
# "gpt-4-0613", or a "-latest" alias. Only these suffixes are stripped (see Catalog.resolve).
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")

AsOf = Annotated[
    str | None,
    Field(
        default=None,
        pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$",
        description="As-of date of the figures: YYYY, YYYY-MM or YYYY-MM-DD.",
    ),
]


class Capabilities(BaseModel):
    """What a model can take or produce; ``None`` means the source does not say (unknown,
    not "no"). ``structured_output`` is JSON output (``response_format`` json_object);
    ``json_schema`` is strict JSON-schema output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_input: bool | None = None
    tools: bool | None = None
    structured_output: bool | None = None
    json_schema: bool | None = None
    source: str | None = Field(default=None, description="Where these facts come from.")


class ModelCard(BaseModel):
    """One model's published figures. Prices are USD per 1M tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="Model id sent to the gateway.")
    name: str = Field(min_length=1)
    origin: str | None = None
    input_usd_per_mtok: float | None = Field(default=None, ge=0)
    output_usd_per_mtok: float | None = Field(default=None, ge=0)
    cached_input_usd_per_mtok: float | None = Field(
        default=None, ge=0, description="Price of cached input tokens; None: priced as input."
    )
    context_window: int | None = Field(default=None, gt=0)
    output_tokens_per_s: float | None = Field(default=None, gt=0)
    ttft_p99_s: tuple[float, float] | None = None
    capabilities: Capabilities = Capabilities()
    scores: dict[Benchmark, float | None] = Field(default_factory=dict)
    ratings: dict[str, int] = Field(default_factory=dict)
    as_of: AsOf = None
    source: str | None = None
    notes: str | None = None

    @field_validator("scores")
    @classmethod
    def _scores_in_range(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        for bench, score in value.items():
            if score is not None and not 0 <= score <= 100:
                raise ValueError(f"score for {bench} must be within 0-100, got {score}")
        return value

    @field_validator("ratings")
    @classmethod
    def _stars(cls, value: dict[str, int]) -> dict[str, int]:
        for factor, stars in value.items():
            if not 1 <= stars <= 5:
                raise ValueError(f"rating {factor} must be 1-5 stars, got {stars}")
        return value

    def score(self, benchmark: str) -> float | None:
        """The model's score on ``benchmark``, or None when the source gives none."""
        return self.scores.get(benchmark)  # type: ignore[call-overload]

    @property
    def priced(self) -> bool:
        """True when both input and output prices are known."""
        return self.input_usd_per_mtok is not None and self.output_usd_per_mtok is not None


class Gateway(BaseModel):
    """Where the catalog's model ids are served."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        pattern=r"^https?://\S+$",
        description="An http(s) URL of an OpenAI-compatible API.",
    )
    api_key_env: str = Field(default="GLOBAL_API_KEY", min_length=1)


class CatalogInfo(BaseModel):
    """Catalog-wide provenance: its name, source and as-of date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "catalog"
    as_of: AsOf = None
    source: str | None = None
    gateway: Gateway = Gateway()


class Catalog:
    """An immutable, id-indexed set of model cards.

    Build it with :meth:`default`, :meth:`from_file` or :meth:`from_dict`; extend it with
    :meth:`merged` (an override file merges over it by ``id``).
    """

    __slots__ = ("info", "_cards", "_by_id")

    def __init__(self, models: Iterable[ModelCard], info: CatalogInfo | None = None) -> None:
        cards = tuple(models)
        by_id: dict[str, ModelCard] = {}
        for card in cards:
            if card.id in by_id:
                raise CatalogError(f"model id {card.id!r} appears twice in the catalog")
            by_id[card.id] = card
        if not cards:
            raise CatalogError("a catalog needs at least one model")
        self.info = info or CatalogInfo()
        self._cards = cards
        self._by_id = by_id

    # -- construction -------------------------------------------------------------------
    @classmethod
    def default(cls) -> Catalog:
        """The packaged catalog, with the published figures (no network)."""
        text = resources.files("routedllm.data").joinpath("catalog.yaml").read_text("utf-8")
        return cls.from_dict(yaml.safe_load(text), origin="<packaged catalog>")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, base: Catalog | None = None) -> Catalog:
        """Load a YAML (or JSON) catalog file and merge it over ``base`` (default: packaged).

        Pass ``base=None`` explicitly through :meth:`from_dict` to use a file on its own.
        """
        data = _read_yaml(Path(path))
        base = cls.default() if base is None else base
        return base.merged(data, origin=str(path))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Catalog:
        """The packaged catalog, merged with the file named by ``ROUTEDLLM_CATALOG`` if set."""
        env = os.environ if env is None else env
        path = env.get(CATALOG_ENV)
        return cls.from_file(path) if path else cls.default()

    @classmethod
    def from_dict(cls, data: Any, *, origin: str = "<dict>") -> Catalog:
        """Build a catalog from a mapping in the file schema (``catalog:`` and ``models:``)."""
        info, entries = _split(data, origin)
        cards = [_card(entry, origin, i) for i, entry in enumerate(entries)]
        try:
            info_model = CatalogInfo.model_validate(info)
        except ValidationError as exc:
            raise CatalogError(_describe(exc, origin, "catalog")) from None
        return cls(cards, info_model)

    def merged(self, data: Any, *, origin: str = "<override>") -> Catalog:
        """A new catalog: ``data`` (file schema) merged over this one by model ``id``.

        An entry whose ``id`` exists updates only the fields it gives (``scores``,
        ``capabilities`` and ``ratings`` merge key by key); ``renames: OLD_ID`` changes the
        id of an existing model; any other id adds a new model, which needs a ``name``.
        """
        info, entries = _split(data, origin)
        cards = {card.id: card.model_dump() for card in self._cards}
        order = [card.id for card in self._cards]
        index: dict[str, int] = {}  # model id -> its entry in this file, for error messages
        for i, entry in enumerate(entries):
            where = f"{origin}: models[{i}]"
            if not isinstance(entry, dict) or "id" not in entry:
                raise CatalogError(f"{where}: each model needs an 'id'")
            entry = dict(entry)
            old = entry.pop("renames", None)
            new_id = entry["id"]
            if old is not None:
                if old not in cards:
                    raise CatalogError(f"{where} ({new_id}): renames unknown model {old!r}")
                if new_id in cards and new_id != old:
                    raise CatalogError(f"{where}: cannot rename {old!r} to existing {new_id!r}")
                cards[new_id] = cards.pop(old)
                order[order.index(old)] = new_id
            if new_id in cards:
                cards[new_id] = _deep_merge(cards[new_id], entry)
            else:
                cards[new_id] = entry
                order.append(new_id)
            index[new_id] = i
        merged_cards = [_card(cards[mid], origin, index.get(mid)) for mid in order]
        info_data = _deep_merge(self.info.model_dump(), info) if info else self.info.model_dump()
        try:
            info_model = CatalogInfo.model_validate(info_data)
        except ValidationError as exc:
            raise CatalogError(_describe(exc, origin, "catalog")) from None
        return Catalog(merged_cards, info_model)

    # -- lookup ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[ModelCard]:
        return iter(self._cards)

    def __len__(self) -> int:
        return len(self._cards)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._by_id

    def __repr__(self) -> str:
        return f"Catalog({len(self._cards)} models, as_of={self.info.as_of!r})"

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def get(self, model_id: str) -> ModelCard:
        """The card for ``model_id``; raises :class:`UnknownModelError` listing known ids."""
        try:
            return self._by_id[model_id]
        except KeyError:
            raise UnknownModelError(model_id, self.ids) from None

    def find(self, model_id: str) -> ModelCard | None:
        """The card for ``model_id``, or None."""
        return self._by_id.get(model_id)

    def resolve(self, name: str | None) -> ModelCard | None:
        """The card a provider's model name refers to, or None.

        The rule, in order: the exact id; the name without a ``provider/`` prefix
        (``openai/gpt-4o``); either of those without one dated-snapshot suffix
        (``-2024-08-06``, ``-20241022``, ``-0613``) or ``-latest``. Nothing looser: a plain
        prefix match would price ``gpt-4o-mini`` as ``gpt-4o``. Anything else is unknown.
        """
        if not name:
            return None
        by_id = self._by_id
        card = by_id.get(name)
        if card is not None:
            return card
        candidates = [name]
        if "/" in name:
            candidates.append(name.rsplit("/", 1)[1])
        for candidate in tuple(candidates):
            stripped = _SNAPSHOT_SUFFIX.sub("", candidate)
            if stripped != candidate:
                candidates.append(stripped)
        for candidate in candidates[1:]:
            card = by_id.get(candidate)
            if card is not None:
                return card
        return None

    # -- freshness ------------------------------------------------------------------------
    def as_of_date(self) -> dt.date | None:
        """The earliest day the catalog's as-of period covers (``"2026"`` -> 2026-01-01)."""
        return _period_start(self.info.as_of)

    def check_freshness(self, max_age_days: int = 180, today: dt.date | None = None) -> bool:
        """Warn (``StalePricesWarning``) when the figures are older than ``max_age_days``.

        Returns True when fresh. Prices drift, so a stale catalog should be refreshed with
        an override file carrying current prices.
        """
        start = self.as_of_date()
        if start is None:
            return True
        age = ((today or dt.date.today()) - start).days
        if age > max_age_days:
            warnings.warn(
                f"catalog {self.info.name!r} prices are as of {self.info.as_of} "
                f"({age} days old, limit {max_age_days}); prices drift: refresh them with "
                f"an override file (see README)",
                StalePricesWarning,
                stacklevel=2,
            )
            return False
        return True


class StalePricesWarning(UserWarning):
    """The catalog's figures are older than the configured age."""


# -- helpers --------------------------------------------------------------------------------
def _period_start(as_of: str | None) -> dt.date | None:
    if not as_of:
        return None
    parts = [int(p) for p in as_of.split("-")] + [1, 1]
    return dt.date(parts[0], parts[1], parts[2])


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read catalog file: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Name the place and the problem only: PyYAML's full message quotes the offending
        # line, which may hold a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise CatalogError(f"{path}: not valid YAML{where}: {problem}") from None


def _split(data: Any, origin: str) -> tuple[dict[str, Any], list[Any]]:
    if not isinstance(data, dict):
        raise CatalogError(f"{origin}: a catalog file is a mapping with a 'models' list")
    unknown = set(data) - {"catalog", "models"}
    if unknown:
        raise CatalogError(
            f"{origin}: unknown top-level key(s) {sorted(unknown)}; expected 'catalog' and 'models'"
        )
    info = data.get("catalog") or {}
    models = data.get("models") or []
    if not isinstance(info, dict):
        raise CatalogError(f"{origin}: 'catalog' must be a mapping")
    if not isinstance(models, list):
        raise CatalogError(f"{origin}: 'models' must be a list")
    return info, models


def _card(entry: Any, origin: str, index: int | None) -> ModelCard:
    where = origin if index is None else f"{origin}: models[{index}]"
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: each model must be a mapping")
    try:
        return ModelCard.model_validate(entry)
    except ValidationError as exc:
        raise CatalogError(_describe(exc, where, f"model {entry.get('id', '?')!r}")) from None


def _describe(exc: ValidationError, where: str, what: str) -> str:
    problems = "; ".join(
        f"field {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    return f"{where}: {what}: {problems}"


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
