"""Model cards and the catalog that holds them: loading, user overrides, validation.

The packaged catalog carries published figures exactly; anything the source does not give
is ``None`` and stays so. Users merge their own YAML file over it by model ``id``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from routedllm.core import files
from routedllm.core.errors import CatalogError, UnknownModelError

Benchmark = Literal["mmlu", "humaneval", "ceval"]
BENCHMARKS: tuple[str, ...] = ("mmlu", "humaneval", "ceval")
CAPABILITIES: tuple[str, ...] = ("image_input", "tools", "structured_output", "json_schema")
CATALOG_ENV = "ROUTEDLLM_CATALOG"
DEFAULT_BASE_URL = "https://global-apis.com/v1"
# A provider's dated snapshot of a catalog model: "gpt-4o-2024-08-06", "...-20241022",
# "gpt-4-0613", or a "-latest" alias. Only these suffixes are stripped (see Catalog.resolve).
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")

MAX_FILE_BYTES = 64 * 2**20
"""The largest catalog file read (100,000 models take ~25 MB)."""
MAX_USD_PER_MTOK = 1_000_000.0
"""A price above this (USD per 1M tokens) is taken for a typo: no model costs near it."""
MAX_CONTEXT_WINDOW = 10**9


def _date_text(value: Any) -> Any:
    """An unquoted YAML date (``as_of: 2026-03-01``) as the text it was written as."""
    return value.isoformat() if isinstance(value, dt.date) else value


def _real_date(value: str | None) -> str | None:
    if value is None:
        return None
    if not _AS_OF.fullmatch(value):
        raise ValueError(f"{value!r} is not a date written YYYY, YYYY-MM or YYYY-MM-DD")
    try:
        _period_start(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a real date ({exc})") from None
    return value


_AS_OF = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
AsOf = Annotated[
    str | None,
    BeforeValidator(_date_text),
    AfterValidator(_real_date),
    Field(default=None, description="As-of date of the figures: YYYY, YYYY-MM or YYYY-MM-DD."),
]
Price = Annotated[float | None, Field(default=None, ge=0, le=MAX_USD_PER_MTOK)]


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

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(min_length=1, description="Model id sent to the gateway.")
    name: str = Field(min_length=1)
    origin: str | None = None
    input_usd_per_mtok: Price = None
    output_usd_per_mtok: Price = None
    cached_input_usd_per_mtok: Price = Field(
        default=None, description="Price of cached input tokens; None: priced as input."
    )
    context_window: int | None = Field(default=None, gt=0, le=MAX_CONTEXT_WINDOW)
    output_tokens_per_s: float | None = Field(default=None, gt=0)
    ttft_p99_s: tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]] | None = None
    capabilities: Capabilities = Capabilities()
    scores: dict[Benchmark, float | None] = Field(default_factory=dict)
    ratings: dict[str, int] = Field(default_factory=dict)
    as_of: AsOf = None
    source: str | None = None
    notes: str | None = None

    @field_validator(
        "input_usd_per_mtok",
        "output_usd_per_mtok",
        "cached_input_usd_per_mtok",
        "context_window",
        "output_tokens_per_s",
        "ttft_p99_s",
        "scores",
        "ratings",
        mode="before",
    )
    @classmethod
    def _no_bools(cls, value: Any) -> Any:
        """``true`` is not a price, window or score (YAML reads ``yes``/``on`` as it too)."""
        items = value.values() if isinstance(value, dict) else value
        if isinstance(value, bool) or (
            isinstance(items, list | tuple | type({}.values()))
            and any(isinstance(v, bool) for v in items)
        ):
            raise ValueError("a number is needed, not a boolean (true/false/yes/no/on/off)")
        return value

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        bad = next((c for c in value if c.isspace() or not c.isprintable()), None)
        if bad is not None:
            raise ValueError(
                f"model id {ascii(value)} holds {_char(bad)}; an id has no spaces or "
                "control characters"
            )
        return value

    @field_validator("name", "origin")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ValueError(
                f"{ascii(value)} is blank or holds control characters; give printable text"
            )
        return value

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
        pattern=r"^https?://[!-~]+$",
        description="An http(s) URL of an OpenAI-compatible API.",
    )
    api_key_env: str = Field(
        default="GLOBAL_API_KEY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The environment variable holding the gateway's bearer token.",
    )

    @field_validator("base_url")
    @classmethod
    def _has_host(cls, value: str) -> str:
        try:
            host = urlsplit(value).hostname
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if not host:
            raise ValueError("the URL names no host")
        return value

    @property
    def host(self) -> str:
        """The host the gateway's calls (and its bearer token) go to."""
        return urlsplit(self.base_url).hostname or ""


class CatalogInfo(BaseModel):
    """Catalog-wide provenance: its name, source and as-of date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "catalog"
    as_of: AsOf = None
    source: str | None = None
    gateway: Gateway = Gateway()
    allow_non_ascii_ids: bool = Field(
        default=False,
        description="Accept model ids with non-ASCII characters (refused by default: a "
        "lookalike such as a Cyrillic 'о' in 'gpt-4о' would route to a model no one meant).",
    )


class Catalog:
    """An immutable, id-indexed set of model cards.

    Build it with :meth:`default`, :meth:`from_file` or :meth:`from_dict`; extend it with
    :meth:`merged` (an override file merges over it by ``id``).
    """

    __slots__ = ("info", "_cards", "_by_id")

    def __init__(
        self,
        models: Iterable[ModelCard],
        info: CatalogInfo | None = None,
        *,
        origin: str = "catalog",
    ) -> None:
        cards = tuple(models)
        by_id: dict[str, ModelCard] = {}
        for card in cards:
            if card.id in by_id:
                raise CatalogError(f"{origin}: model id {card.id!r} appears twice in the catalog")
            by_id[card.id] = card
        if not cards:
            raise CatalogError(f"{origin}: a catalog needs at least one model")
        self.info = info or CatalogInfo()
        _check_ids(by_id, self.info.allow_non_ascii_ids, origin)
        self._cards = cards
        self._by_id = by_id

    # -- construction -------------------------------------------------------------------
    @classmethod
    def default(cls) -> Catalog:
        """The packaged catalog, with the published figures (no network)."""
        text = resources.files("routedllm.data").joinpath("catalog.yaml").read_text("utf-8")
        origin = "<packaged catalog>"
        return cls.from_dict(_parse(text, origin), origin=origin)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, base: Catalog | None = None) -> Catalog:
        """Load a YAML (or JSON) catalog file and merge it over ``base`` (default: packaged).

        The file must be a regular UTF-8 file of at most :data:`MAX_FILE_BYTES`; a file
        whose text starts with ``{`` is read as JSON (much faster for big files). Pass
        ``base=None`` explicitly through :meth:`from_dict` to use a file on its own.
        """
        data = _read_file(path)
        base = cls.default() if base is None else base
        return base.merged(data, origin=files.shown(path))

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
        first: dict[str, int] = {}
        for i, card in enumerate(cards):
            j = first.setdefault(card.id, i)
            if j != i:
                raise CatalogError(_twice(origin, card.id, j, i))
        try:
            info_model = CatalogInfo.model_validate(info)
        except ValidationError as exc:
            raise CatalogError(_describe(exc, origin, "catalog")) from None
        return cls(cards, info_model, origin=origin)

    def merged(self, data: Any, *, origin: str = "<override>") -> Catalog:
        """A new catalog: ``data`` (file schema) merged over this one by model ``id``.

        An entry whose ``id`` exists updates only the fields it gives (``scores``,
        ``capabilities`` and ``ratings`` merge key by key); ``renames: OLD_ID`` changes the
        id of an existing model; any other id adds a new model, which needs a ``name``.
        An id given twice in ``data`` is an error. Changing the gateway's host or its key
        variable warns (:class:`GatewayChangeWarning`): the key goes where the file says.
        """
        info, entries = _split(data, origin)
        cards = {card.id: card.model_dump() for card in self._cards}
        order = [card.id for card in self._cards]
        index: dict[str, int] = {}  # model id -> its entry in this file, for error messages
        seen: dict[str | None, int] = {}  # ids this file gives or renames -> entry
        for i, entry in enumerate(entries):
            where = f"{origin}: models[{i}]"
            if not isinstance(entry, dict) or "id" not in entry:
                raise CatalogError(f"{where}: each model needs an 'id'")
            entry = dict(entry)
            old = entry.pop("renames", None)
            new_id = entry["id"]
            if not isinstance(new_id, str):
                raise CatalogError(f"{where}: field id: must be a string, not {_kind(new_id)}")
            if old is not None and not isinstance(old, str):
                raise CatalogError(
                    f"{where} ({new_id}): field renames: must be a string (one model id), "
                    f"not {_kind(old)}"
                )
            for named in (new_id,) if old in (None, new_id) else (new_id, old):
                if named is not None and named in seen:
                    raise CatalogError(_twice(origin, named, seen[named], i))
                seen.setdefault(named, i)
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
        _warn_gateway_change(self.info.gateway, info_model.gateway, origin)
        return Catalog(merged_cards, info_model, origin=origin)

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


class GatewayChangeWarning(UserWarning):
    """An override file changed where calls go (the gateway's host) or which environment
    variable's value is sent as the bearer token."""


# -- helpers --------------------------------------------------------------------------------
def _period_start(as_of: str | None) -> dt.date | None:
    if not as_of:
        return None
    parts = [int(p) for p in as_of.split("-")] + [1, 1]
    return dt.date(parts[0], parts[1], parts[2])


def _read_file(path: str | os.PathLike[str]) -> Any:
    """A catalog file's data: a regular UTF-8 file, bounded in size, parsed strictly."""
    try:
        data = files.read_bytes(path, "catalog file", MAX_FILE_BYTES)
        origin = files.shown(path)
        return _parse(files.decode(data, origin, "catalog file"), origin)
    except files.FileProblem as exc:
        raise CatalogError(str(exc)) from None


def _parse(text: str, origin: str) -> Any:
    """JSON when the text is a JSON object (the json module is ~50x faster than YAML on a
    big file), otherwise YAML on the C parser where installed."""
    try:
        if text.lstrip().startswith("{"):
            return files.parse_json(text, origin)
        return files.parse_yaml(text, origin)
    except files.FileProblem as exc:
        raise CatalogError(str(exc)) from None


def _kind(value: Any) -> str:
    return {list: "a list", dict: "a mapping", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


def _twice(origin: str, model_id: str | None, first: int | None, again: int) -> str:
    return (
        f"{origin}: models[{again}]: model id {model_id!r} appears twice in this file "
        f"(models[{first}] and models[{again}]); give each model once"
    )


def _char(c: str) -> str:
    return f"U+{ord(c):04X} {unicodedata.name(c, 'a control character')}"


def _skeleton(model_id: str) -> str:
    """What an id looks like: compatibility forms folded, letters of other scripts mapped
    to the Latin letter of the same name (Cyrillic 'о' -> 'o'), case ignored."""
    out = []
    for c in unicodedata.normalize("NFKC", model_id):
        if not c.isascii():
            words = unicodedata.name(c, "").split(" ")
            try:
                c = unicodedata.lookup(" ".join(["LATIN", *words[1:]]))
            except KeyError:
                pass
        out.append(c)
    return "".join(out).casefold()


def _check_ids(by_id: Mapping[str, ModelCard], allow_non_ascii: bool, origin: str) -> None:
    """Refuse ids with non-ASCII characters (unless ``allow_non_ascii``) and ids that look
    like another id of the catalog (always)."""
    looks: dict[str, str] = {}
    for model_id in by_id:
        if model_id.isascii():
            continue
        if not allow_non_ascii:
            bad = next(c for c in model_id if not c.isascii())
            raise CatalogError(
                f"{origin}: model id {ascii(model_id)} holds {_char(bad)}, not ASCII; a "
                "lookalike of an ASCII letter would route to a model no one meant. If the "
                "gateway really serves this id, set 'catalog: allow_non_ascii_ids: true' "
                "in the file"
            )
        looks[_skeleton(model_id)] = model_id
    if not looks:
        return
    for model_id in by_id:
        other = looks.get(_skeleton(model_id))
        if other is not None and other != model_id:
            raise CatalogError(
                f"{origin}: model id {ascii(other)} looks like {ascii(model_id)} (a "
                "lookalike character); rename one of them"
            )


def _warn_gateway_change(before: Gateway, after: Gateway, origin: str) -> None:
    if after.host != before.host:
        warnings.warn(
            f"{origin}: catalog.gateway.base_url sends every call, with the key in "
            f"${after.api_key_env}, to {after.host!r} instead of {before.host!r}; use this "
            "file only if you trust it",
            GatewayChangeWarning,
            stacklevel=4,
        )
    if after.api_key_env != before.api_key_env:
        warnings.warn(
            f"{origin}: catalog.gateway.api_key_env sends the value of ${after.api_key_env} "
            f"(was ${before.api_key_env}) as the bearer token to {after.host!r}; use this "
            "file only if you trust it",
            GatewayChangeWarning,
            stacklevel=4,
        )


def _split(data: Any, origin: str) -> tuple[dict[str, Any], list[Any]]:
    if not isinstance(data, dict):
        raise CatalogError(f"{origin}: a catalog file is a mapping with a 'models' list")
    unknown = set(data) - {"catalog", "models"}
    if unknown:
        raise CatalogError(
            f"{origin}: unknown top-level key(s) {sorted(map(str, unknown))}; "
            "expected 'catalog' and 'models'"
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
        model_id = entry.get("id", "?")
        what = f"model {model_id!r}" if isinstance(model_id, str) else "model"
        raise CatalogError(_describe(exc, where, what)) from None


def _describe(exc: ValidationError, where: str, what: str) -> str:
    problems = "; ".join(
        f"field {'.'.join(_shown(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    return f"{where}: {what}: {problems}"


def _shown(part: object) -> str:
    """A part of a field's path (a key from the file) fit for a terminal: escaped when it
    holds control characters."""
    text = str(part)
    return text if text.isprintable() else ascii(text)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
