"""Spend caps on the LiteLLM proxy: routedllm's Budget, per scope, held before each call.

The proxy's pre-call hook reserves a routed call's estimated cost in every budget that
applies to it (the whole proxy, the caller's virtual key, team, user, or request tag, as
configured); the logger settles the reservations to the answering attempt's cost, and a
request that fails outright releases them. With ``redis_url`` the figures live in Redis,
so every proxy process pointed at it shares the caps; without it they live in the process.
No litellm import.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError

from routedllm.core.errors import BudgetExceeded, InvalidRequestError
from routedllm.reliability.budget import Budget, BudgetLimits, LocalBudget, Reservation

BUDGET_ENV = "ROUTEDLLM_BUDGET"
Scope = Literal["global", "key", "team", "user", "tag"]
_HOLDS = 100_000  # reservations remembered between the hook and the logger


class ProxyBudgetConfig(BudgetLimits):
    """The ``ROUTEDLLM_BUDGET`` file: :class:`BudgetLimits` fields, plus where they apply.

    ``per`` lists the scopes that each get their own caps: ``global`` (the whole proxy),
    ``key`` (each virtual key, under a hash of LiteLLM's key token), ``team``, ``user`` and ``tag``
    (each request tag). A request is held in every scope it has (a call with no team is
    not held under ``team``). ``redis_url`` shares the figures between proxy processes;
    ``name`` keeps this proxy's figures apart from other users of the same Redis.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    per: tuple[Scope, ...] = ("global",)
    redis_url: str | None = None
    name: str = Field(default="litellm-proxy", min_length=1)

    @property
    def limits(self) -> BudgetLimits:
        return BudgetLimits.model_validate(self.model_dump(exclude={"per", "redis_url", "name"}))


class ProxyBudgets:
    """The budgets of one proxy process: one :class:`Budget` per scope value, made on use."""

    def __init__(self, config: ProxyBudgetConfig, *, max_budgets: int = 10_000) -> None:
        self.config = config
        self.limits = config.limits
        self._budgets: OrderedDict[str, Budget] = OrderedDict()
        self._holds: OrderedDict[str, list[Reservation]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_budgets = max_budgets
        self._clients: tuple[Any, Any] | None = None

    def __repr__(self) -> str:
        where = "redis" if self.config.redis_url else "memory"
        return f"ProxyBudgets(per={list(self.config.per)!r}, store={where}, {self.limits!r})"

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ProxyBudgets:
        """The budgets a YAML file of :class:`ProxyBudgetConfig` fields describes."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text("utf-8"))
        except OSError as exc:
            raise InvalidRequestError(
                f"{BUDGET_ENV}={str(path)!r}: cannot read the budget file: {exc.strerror}"
            ) from None
        if not isinstance(data, Mapping):
            raise InvalidRequestError(f"{path}: a budget file is a mapping of budget fields")
        try:
            return cls(ProxyBudgetConfig.model_validate(data))
        except ValidationError as exc:
            raise InvalidRequestError(f"{path}: not a valid budget file:\n{exc}") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxyBudgets | None:
        """The budgets of ``$ROUTEDLLM_BUDGET`` (a YAML file); None when it is unset."""
        env = os.environ if env is None else env
        value = env.get(BUDGET_ENV)
        return cls.from_file(value) if value else None

    # -- scopes -----------------------------------------------------------------------------
    def scopes(self, caller: Any, data: Mapping[str, Any]) -> list[str]:
        """The budget scopes of one request: ``"global"``, ``"key:<hash>"``, ``"tag:<name>"``..."""
        found: list[str] = []
        for scope in self.config.per:
            if scope == "global":
                found.append("global")
            elif scope == "tag":
                found.extend(f"tag:{t}" for t in _request_tags(data))
            else:
                attribute = {"key": "api_key", "team": "team_id", "user": "user_id"}[scope]
                value = getattr(caller, attribute, None)
                if isinstance(value, str) and value:
                    if scope == "key":  # never a key itself in a Redis key name, even hashed
                        value = hashlib.sha256(value.encode()).hexdigest()[:32]
                    found.append(f"{scope}:{value}")
        return list(dict.fromkeys(found))

    def budget(self, scope: str) -> Budget:
        """The budget of one scope value, made on first use (at most ``max_budgets`` kept)."""
        with self._lock:
            budget = self._budgets.get(scope)
            if budget is None:
                budget = self._budgets[scope] = self._new(scope)
                if len(self._budgets) > self._max_budgets:
                    self._budgets.popitem(last=False)  # a Redis budget's figures stay in Redis
            else:
                self._budgets.move_to_end(scope)
            return budget

    def _new(self, scope: str) -> Budget:
        if self.config.redis_url is None:
            return LocalBudget(self.limits)
        from routedllm.reliability.budget import RedisBudget

        if self._clients is None:  # one pair of connection pools for every scope
            self._clients = _redis_clients(self.config.redis_url)
        client, aclient = self._clients
        return RedisBudget(
            self.limits, client=client, aclient=aclient, name=f"{self.config.name}:{scope}"
        )

    # -- the protocol -----------------------------------------------------------------------
    async def hold(
        self, hold_id: str, scopes: Sequence[str], estimate_usd: float | None, model: str
    ) -> None:
        """Reserve ``estimate_usd`` in every scope, or in none: raises :class:`BudgetExceeded`
        naming the scope that refused."""
        held: list[Reservation] = []
        for scope in scopes:
            try:
                held.append(await self.budget(scope).areserve(estimate_usd, model=model))
            except BudgetExceeded as exc:
                for reservation in held:
                    await reservation.arelease()
                raise BudgetExceeded(
                    f"budget {scope}: {exc}",
                    scope=exc.scope,
                    limit_usd=exc.limit_usd,
                    spent_usd=exc.spent_usd,
                    reserved_usd=exc.reserved_usd,
                    requested_usd=exc.requested_usd,
                ) from None
        with self._lock:
            self._holds[hold_id] = held
            while len(self._holds) > _HOLDS:  # a request the logger never heard of again
                self._holds.popitem(last=False)

    def _take(self, hold_id: str) -> list[Reservation]:
        with self._lock:
            return self._holds.pop(hold_id, [])

    async def settle(self, hold_id: str, actual_usd: float | None) -> None:
        """Charge a request's reservations its actual cost (None: the estimate)."""
        for reservation in self._take(hold_id):
            await reservation.asettle(actual_usd)

    async def release(self, hold_id: str) -> None:
        """Give a failed request's reservations back."""
        for reservation in self._take(hold_id):
            await reservation.arelease()


def _redis_clients(url: str) -> tuple[Any, Any]:
    """A sync and an asyncio Redis client for ``url``, each on a blocking pool."""
    try:
        import redis as redis_sync
        import redis.asyncio as redis_async
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("redis_url needs redis-py: pip install 'routedllm[redis]'") from None
    pool = {"max_connections": 64, "timeout": 10.0}
    return (
        redis_sync.Redis.from_pool(redis_sync.BlockingConnectionPool.from_url(url, **pool)),
        redis_async.Redis.from_pool(redis_async.BlockingConnectionPool.from_url(url, **pool)),
    )


def _request_tags(data: Mapping[str, Any]) -> Iterable[str]:
    """LiteLLM's request tags: ``metadata.tags`` (where the proxy merges the header) and
    the body's ``tags``."""
    metadata = data.get("metadata")
    names: list[Any] = []
    meta_tags = metadata.get("tags") if isinstance(metadata, Mapping) else None
    for value in (meta_tags, data.get("tags")):
        if isinstance(value, str):
            names.extend(value.split(","))
        elif isinstance(value, list | tuple):
            names.extend(value)
    return dict.fromkeys(n.strip() for n in names if isinstance(n, str) and n.strip())
