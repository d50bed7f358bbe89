"""Spend limits: a per-call maximum and caps per run and per time window, with reservations.

Before a call, ``reserve()`` the decision's estimate: it raises :class:`BudgetExceeded`
when the estimate is above the per-call maximum, or when money spent plus money held by
calls in flight plus this estimate would pass a cap. After the call, ``settle()`` the
reservation to the actual cost (or ``release()`` it when the call failed). Checking and
holding happen in one atomic step, so under any concurrency a cap is passed only by what
the calls already in flight cost beyond their estimates.

Amounts are kept as whole nano-dollars (1e-9 USD), rounded up, so sums never drift.
The window is sliding, counted in ``window_slots`` slots: spend stays in the window for
at least ``window_s`` and at most ``window_s + window_s / window_slots`` seconds (never
less, so a window cap is never under-counted).

``LocalBudget`` keeps the figures in memory (threads and asyncio tasks of one process);
``RedisBudget`` keeps them in Redis, so several processes share the caps (extra
``routedllm[redis]``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from routedllm.core.errors import BudgetExceeded, InvalidRequestError, RoutedLLMError

if TYPE_CHECKING:  # pragma: no cover
    import redis
    import redis.asyncio

__all__ = [
    "Budget",
    "BudgetBackendError",
    "BudgetExceeded",
    "BudgetLimits",
    "BudgetStatus",
    "LocalBudget",
    "RedisBudget",
    "Reservation",
]

log = logging.getLogger("routedllm.budget")
_NANO = 1_000_000_000  # units per USD
MAX_AMOUNT_USD = 1_000_000.0
"""The largest estimate or settlement one call may hold or be charged: 1e15 nano-dollars,
so no sum a budget keeps can reach Redis's 64-bit integers within any real run."""
_MAX_SPENT_UNITS = 9.0e18  # below 2^63: a settle that would pass it changes nothing
MAX_CAP_USD = 1.0e9
"""The largest cap a budget takes ($1e9, 1e18 nano-dollars, within Redis's integers);
no limit is ``None``, not infinity."""


class BudgetLimits(BaseModel):
    """The limits a budget enforces; ``None`` means no limit of that kind.

    ``max_call_usd`` caps one call's estimate; ``max_run_usd`` caps spend for the life of
    the budget (until ``reset()``); ``max_window_usd`` caps spend in any ``window_s``
    seconds. A reservation not settled within ``reservation_ttl_s`` (its caller died) is
    dropped. A call whose cost cannot be estimated (an unpriced model) is refused unless
    ``allow_unknown_cost``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_call_usd: float | None = Field(default=None, ge=0, le=MAX_CAP_USD)
    max_run_usd: float | None = Field(default=None, ge=0, le=MAX_CAP_USD)
    max_window_usd: float | None = Field(default=None, ge=0, le=MAX_CAP_USD)
    window_s: float = Field(default=3600.0, gt=0)
    window_slots: int = Field(default=60, ge=1, le=10_000)
    reservation_ttl_s: float = Field(default=600.0, gt=0)
    allow_unknown_cost: bool = False

    @field_validator(
        "max_call_usd",
        "max_run_usd",
        "max_window_usd",
        "window_s",
        "reservation_ttl_s",
        mode="before",
    )
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        """``True`` is not $1 (nor one second): a flag passed where a number belongs."""
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean (None: no limit)")
        return value

    @property
    def slot_s(self) -> float:
        return self.window_s / self.window_slots


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where a budget stands: USD spent (in the run and in the current window), held by
    calls in flight, and how many calls were settled."""

    spent_usd: float
    window_spent_usd: float
    reserved_usd: float
    in_flight: int
    settled_calls: int


class BudgetBackendError(RoutedLLMError):
    """The budget's store cannot be reached; calls are refused while it cannot be checked."""


@dataclass(eq=False)
class Reservation:
    """Money held for one call in flight. Settle it to the actual cost, or release it."""

    id: str
    amount_usd: float
    model: str | None
    budget: Budget = field(repr=False)
    state: Literal["held", "settled", "released"] = "held"
    _units: int = field(default=0, repr=False)

    def settle(self, actual_usd: float | None) -> None:
        """Record the call's actual cost (``None``: unknown, charge the estimate)."""
        self.budget.settle(self, actual_usd)

    def release(self) -> None:
        """Give the money back (the call failed). A no-op once settled or released."""
        self.budget.release(self)

    async def asettle(self, actual_usd: float | None) -> None:
        await self.budget.asettle(self, actual_usd)

    async def arelease(self) -> None:
        await self.budget.arelease(self)


class Budget(ABC):
    """The interface both backends share; see the module docstring for the protocol."""

    def __init__(self, limits: BudgetLimits) -> None:
        if not isinstance(limits, BudgetLimits):
            raise InvalidRequestError(f"limits must be a BudgetLimits, got {type(limits).__name__}")
        self.limits = limits
        self._closing = threading.Lock()

    # -- the protocol ---------------------------------------------------------------------
    def reserve(self, estimate_usd: float | None, *, model: str | None = None) -> Reservation:
        """Hold ``estimate_usd`` for a call about to be sent; raises :class:`BudgetExceeded`."""
        reservation = self._new(estimate_usd, model)
        self._check(self._reserve(reservation), reservation)
        return reservation

    async def areserve(
        self, estimate_usd: float | None, *, model: str | None = None
    ) -> Reservation:
        reservation = self._new(estimate_usd, model)
        self._check(await self._areserve(reservation), reservation)
        return reservation

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        """Turn a held reservation into spend: the actual cost, or the estimate if unknown."""
        if self._close(reservation, "settled", actual_usd):
            self._settle(reservation, _units(actual_usd) if actual_usd is not None else None)

    async def asettle(self, reservation: Reservation, actual_usd: float | None) -> None:
        if self._close(reservation, "settled", actual_usd):
            await self._asettle(reservation, _units(actual_usd) if actual_usd is not None else None)

    def release(self, reservation: Reservation) -> None:
        """Drop a held reservation without spend; a no-op once settled or released."""
        if self._close(reservation, "released", None):
            self._release(reservation)

    async def arelease(self, reservation: Reservation) -> None:
        if self._close(reservation, "released", None):
            await self._arelease(reservation)

    @contextmanager
    def hold(
        self, estimate_usd: float | None, *, model: str | None = None
    ) -> Iterator[Reservation]:
        """Reserve for the block: released if it raises, charged the estimate if it ends
        without ``settle()``."""
        reservation = self.reserve(estimate_usd, model=model)
        try:
            yield reservation
        except BaseException:
            self.release(reservation)
            raise
        if reservation.state == "held":
            self.settle(reservation, None)

    @asynccontextmanager
    async def ahold(
        self, estimate_usd: float | None, *, model: str | None = None
    ) -> AsyncIterator[Reservation]:
        reservation = await self.areserve(estimate_usd, model=model)
        try:
            yield reservation
        except BaseException:
            await self.arelease(reservation)
            raise
        if reservation.state == "held":
            await self.asettle(reservation, None)

    @abstractmethod
    def status(self) -> BudgetStatus:
        """The current figures."""

    async def astatus(self) -> BudgetStatus:
        return self.status()

    @abstractmethod
    def reset(self) -> None:
        """Start a new run: forget spend, window and reservations."""

    # -- backends implement these; each returns None when held, else the refusal ----------
    @abstractmethod
    def _reserve(self, r: Reservation) -> _Refusal | None: ...

    @abstractmethod
    def _settle(self, r: Reservation, actual_units: int | None) -> None: ...

    @abstractmethod
    def _release(self, r: Reservation) -> None: ...

    async def _areserve(self, r: Reservation) -> _Refusal | None:
        return self._reserve(r)

    async def _asettle(self, r: Reservation, actual_units: int | None) -> None:
        self._settle(r, actual_units)

    async def _arelease(self, r: Reservation) -> None:
        self._release(r)

    # -- shared steps ---------------------------------------------------------------------
    def _new(self, estimate_usd: float | None, model: str | None) -> Reservation:
        limits = self.limits
        who = f" for {model}" if model else ""
        if estimate_usd is None:
            if not limits.allow_unknown_cost:
                raise BudgetExceeded(
                    f"estimated cost{who} is unknown (no price in the catalog), so spend "
                    "limits cannot be enforced on it: price the model in a catalog override "
                    "file, or set allow_unknown_cost=True",
                    scope="unknown_cost",
                )
            estimate_usd = 0.0
        if (
            not isinstance(estimate_usd, int | float)
            or isinstance(estimate_usd, bool)
            or (not math.isfinite(estimate_usd))
            or estimate_usd < 0
        ):
            raise InvalidRequestError(
                f"estimate_usd must be a finite, non-negative number of USD, got {estimate_usd!r}"
            )
        if estimate_usd > MAX_AMOUNT_USD:
            raise InvalidRequestError(
                f"estimate_usd {estimate_usd:.6g} is above the most one call may hold "
                f"(${MAX_AMOUNT_USD:,.0f}): check the catalog's prices"
            )
        if limits.max_call_usd is not None and estimate_usd > limits.max_call_usd:
            raise BudgetExceeded(
                f"estimated cost{who} ${estimate_usd:.6f} is above the per-call maximum "
                f"${limits.max_call_usd:.6f}",
                scope="call",
                limit_usd=limits.max_call_usd,
                requested_usd=estimate_usd,
            )
        return Reservation(uuid.uuid4().hex, estimate_usd, model, self, _units=_units(estimate_usd))

    def _check(self, refusal: _Refusal | None, r: Reservation) -> None:
        if refusal is None:
            return
        r.state = "released"
        who = f" for {r.model}" if r.model else ""
        limit = (
            self.limits.max_run_usd if refusal.scope == "run" else self.limits.max_window_usd
        ) or 0.0
        what = (
            "run spend cap"
            if refusal.scope == "run"
            else f"spend cap per {_span(self.limits.window_s)}"
        )
        raise BudgetExceeded(
            f"{what} ${limit:.6f} reached: ${refusal.spent / _NANO:.6f} spent + "
            f"${refusal.reserved / _NANO:.6f} held by calls in flight + "
            f"${r.amount_usd:.6f}{who} would pass it",
            scope=refusal.scope,
            limit_usd=limit,
            spent_usd=refusal.spent / _NANO,
            reserved_usd=refusal.reserved / _NANO,
            requested_usd=r.amount_usd,
        )

    def _close(self, r: Reservation, to: str, actual_usd: float | None) -> bool:
        """Move ``r`` out of "held"; True when this call did it (so the backend must act)."""
        if r.budget is not self:
            raise InvalidRequestError("this reservation belongs to another budget")
        if (
            to == "settled"
            and actual_usd is not None
            and (
                not isinstance(actual_usd, int | float)
                or isinstance(actual_usd, bool)
                or not math.isfinite(actual_usd)
                or actual_usd < 0
                or actual_usd > MAX_AMOUNT_USD
            )
        ):
            raise InvalidRequestError(
                f"actual_usd must be a finite, non-negative number of USD, at most "
                f"${MAX_AMOUNT_USD:,.0f} for one call, got {actual_usd!r}; the reservation "
                "is still held (settle it again with a valid amount, or release it)"
            )
        with self._closing:
            if r.state == "held":
                r.state = to  # type: ignore[assignment]
                return True
        if to == "released":
            return False
        raise InvalidRequestError(f"reservation {r.id} was already {r.state}; settle it once")


@dataclass(frozen=True, slots=True)
class _Refusal:
    scope: str
    spent: int
    reserved: int


class LocalBudget(Budget):
    """A budget in this process's memory; safe across threads and asyncio tasks.

    ``clock`` (seconds, default ``time.monotonic``) drives the window and reservation
    expiry; tests inject their own.
    """

    def __init__(
        self, limits: BudgetLimits, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(limits)
        self._clock = clock
        self._lock = threading.Lock()
        self._spent = 0
        self._held: dict[str, tuple[int, float]] = {}  # id -> (units, expires at)
        self._reserved = 0
        self._slots: dict[int, int] = {}
        self._settled = 0

    def __repr__(self) -> str:
        return f"LocalBudget({self.limits!r})"

    def _reserve(self, r: Reservation) -> _Refusal | None:
        limits = self.limits
        with self._lock:
            now = self._clock()
            self._expire(now)
            if limits.max_run_usd is not None and (
                self._spent + self._reserved + r._units > _units(limits.max_run_usd)
            ):
                return _Refusal("run", self._spent, self._reserved)
            if limits.max_window_usd is not None:
                window = self._window(now)
                if window + self._reserved + r._units > _units(limits.max_window_usd):
                    return _Refusal("window", window, self._reserved)
            self._held[r.id] = (r._units, now + limits.reservation_ttl_s)
            self._reserved += r._units
        return None

    def _settle(self, r: Reservation, actual_units: int | None) -> None:
        with self._lock:
            held = self._held.pop(r.id, None)
            if held is not None:
                self._reserved -= held[0]
            charge = r._units if actual_units is None else actual_units
            self._spent += charge
            slot = math.floor(self._clock() / self.limits.slot_s)
            self._slots[slot] = self._slots.get(slot, 0) + charge
            self._settled += 1

    def _release(self, r: Reservation) -> None:
        with self._lock:
            held = self._held.pop(r.id, None)
            if held is not None:
                self._reserved -= held[0]

    def status(self) -> BudgetStatus:
        with self._lock:
            now = self._clock()
            self._expire(now)
            return BudgetStatus(
                self._spent / _NANO,
                self._window(now) / _NANO,
                self._reserved / _NANO,
                len(self._held),
                self._settled,
            )

    def reset(self) -> None:
        with self._lock:
            self._spent = self._reserved = self._settled = 0
            self._held.clear()
            self._slots.clear()

    def _expire(self, now: float) -> None:
        for rid in [rid for rid, (_, until) in self._held.items() if until <= now]:
            self._reserved -= self._held.pop(rid)[0]

    def _window(self, now: float) -> int:
        current = math.floor(now / self.limits.slot_s)
        oldest = current - self.limits.window_slots
        for slot in [s for s in self._slots if s < oldest]:
            del self._slots[slot]
        return sum(self._slots.values())


# -- Redis ----------------------------------------------------------------------------------
# KEYS: spent, reserved, held (zset id -> expiry), amounts (hash id -> units), window (hash
# slot -> units), settled. Amounts move as the strings they arrived as (INCRBY needs
# integers, and Lua would print large numbers in exponent form); sums compare as doubles,
# exact below 2^53 nano-dollars (about $9M).
_LUA_PRELUDE = """
local function now_s()
  if ARGV[1] ~= '' then return tonumber(ARGV[1]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function expire(now)
  local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
  for _, id in ipairs(ids) do
    local amount = redis.call('HGET', KEYS[4], id)
    if amount then redis.call('DECRBY', KEYS[2], amount) end
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
  end
end
local function window(now, slot_s, slots)
  local current = math.floor(now / slot_s)
  local flat = redis.call('HGETALL', KEYS[5])
  local total = 0
  for i = 1, #flat, 2 do
    if tonumber(flat[i]) < current - slots then
      redis.call('HDEL', KEYS[5], flat[i])
    else
      total = total + tonumber(flat[i + 1])
    end
  end
  return total, string.format('%d', current)
end
local function num(key) return tonumber(redis.call('GET', key) or '0') end
local function fmt(x) return string.format('%.0f', x) end
"""
# ARGV: now, id, units, ttl_s, run cap units ('' none), window cap units ('' none), slot_s, slots
_LUA_RESERVE = (
    _LUA_PRELUDE
    + """
local now = now_s()
expire(now)
local spent, reserved, units = num(KEYS[1]), num(KEYS[2]), tonumber(ARGV[3])
if ARGV[5] ~= '' and spent + reserved + units > tonumber(ARGV[5]) then
  return {'run', fmt(spent), fmt(reserved)}
end
if ARGV[6] ~= '' then
  local in_window = window(now, tonumber(ARGV[7]), tonumber(ARGV[8]))
  if in_window + reserved + units > tonumber(ARGV[6]) then
    return {'window', fmt(in_window), fmt(reserved)}
  end
end
redis.call('INCRBY', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[2])
return {'', fmt(spent), fmt(reserved)}
"""
)
# ARGV: now, id, actual units ('' = the reserved amount), slot_s, slots, fallback units
_LUA_SETTLE = (
    _LUA_PRELUDE
    + """
local now = now_s()
local held = redis.call('HGET', KEYS[4], ARGV[2])
local due = ARGV[3]
if due == '' then due = held or ARGV[6] end
if num(KEYS[1]) + tonumber(due) > 9.0e18 then return -1 end
if held then
  redis.call('DECRBY', KEYS[2], held)
  redis.call('HDEL', KEYS[4], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
local charge = ARGV[3]
if charge == '' then charge = held or ARGV[6] end
redis.call('INCRBY', KEYS[1], charge)
local _, current = window(now, tonumber(ARGV[4]), tonumber(ARGV[5]))
redis.call('HINCRBY', KEYS[5], current, charge)
redis.call('INCR', KEYS[6])
if held then return 1 end
return 0
"""
)
_LUA_RELEASE = """
local held = redis.call('HGET', KEYS[4], ARGV[2])
if held then
  redis.call('DECRBY', KEYS[2], held)
  redis.call('HDEL', KEYS[4], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  return 1
end
return 0
"""
# ARGV: now, slot_s, slots
_LUA_STATUS = (
    _LUA_PRELUDE
    + """
local now = now_s()
expire(now)
local in_window = window(now, tonumber(ARGV[2]), tonumber(ARGV[3]))
return {fmt(num(KEYS[1])), fmt(in_window), fmt(num(KEYS[2])),
        redis.call('ZCARD', KEYS[3]), fmt(num(KEYS[6]))}
"""
)
_SCRIPTS = {
    "reserve": _LUA_RESERVE,
    "settle": _LUA_SETTLE,
    "release": _LUA_RELEASE,
    "status": _LUA_STATUS,
}


class RedisBudget(Budget):
    """A budget kept in Redis, so every process using the same ``name`` shares the caps.

    Each step is one Lua script, atomic on the server. Pass a ``redis.Redis`` client for
    the sync methods and/or a ``redis.asyncio.Redis`` for the ``a*`` methods (an asyncio
    client serves one event loop), or build both with :meth:`from_url`. The clock is the
    Redis server's unless ``clock`` (epoch seconds) is given. The run's figures persist in
    Redis until ``reset()``. When Redis cannot be reached, ``reserve`` raises
    :class:`BudgetBackendError` (calls are refused, not let through unchecked); ``settle``
    and ``release`` log the failure and the reservation expires after its TTL.
    """

    def __init__(
        self,
        limits: BudgetLimits,
        *,
        client: redis.Redis | None = None,
        aclient: redis.asyncio.Redis | None = None,
        name: str = "default",
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(limits)
        if client is None and aclient is None:
            raise InvalidRequestError(
                "RedisBudget needs a redis client (client=redis.Redis(...) "
                "or aclient=redis.asyncio.Redis(...)), or use from_url()"
            )
        if not name or not isinstance(name, str):
            raise InvalidRequestError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self._client = client
        self._aclient = aclient
        self._clock = clock
        base = f"routedllm:budget:{{{name}}}"  # one hash slot: the scripts touch every key
        self._keys = [
            f"{base}:{part}"
            for part in ("spent", "reserved", "held", "amounts", "window", "settled")
        ]
        self._sync = {k: client.register_script(v) for k, v in _SCRIPTS.items()} if client else {}
        self._async = (
            {k: aclient.register_script(v) for k, v in _SCRIPTS.items()} if aclient else {}
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        limits: BudgetLimits,
        *,
        name: str = "default",
        clock: Callable[[], float] | None = None,
        max_connections: int = 64,
        pool_timeout_s: float = 10.0,
        **options: Any,
    ) -> RedisBudget:
        """Sync and asyncio clients for ``url`` (``redis://[:password@]host:port/db``).

        Each client has a blocking pool of ``max_connections``: past that many concurrent
        budget steps, callers wait up to ``pool_timeout_s`` for a connection. ``options``
        go to redis-py's connection (e.g. ``socket_timeout``). Nothing connects until the
        first call.
        """
        try:
            import redis as redis_sync
            import redis.asyncio as redis_async
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError(
                "RedisBudget needs redis-py: pip install 'routedllm[redis]'"
            ) from None
        pool = dict(max_connections=max_connections, timeout=pool_timeout_s, **options)
        return cls(
            limits,
            client=redis_sync.Redis.from_pool(
                redis_sync.BlockingConnectionPool.from_url(url, **pool)
            ),
            aclient=redis_async.Redis.from_pool(
                redis_async.BlockingConnectionPool.from_url(url, **pool)
            ),
            name=name,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"RedisBudget(name={self.name!r}, redis={self._where()}, {self.limits!r})"

    def _where(self) -> str:
        """host:port/db of the store, never its password."""
        client = self._client if self._client is not None else self._aclient
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        if "path" in kwargs:
            return f"unix:{kwargs['path']}"
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"

    # -- script arguments -----------------------------------------------------------------
    def _now(self) -> str:
        return "" if self._clock is None else repr(float(self._clock()))

    def _args(
        self, step: str, r: Reservation | None = None, actual: int | None = None
    ) -> list[Any]:
        limits = self.limits
        slots = [repr(limits.slot_s), str(limits.window_slots)]
        if step == "reserve":
            assert r is not None
            caps = [
                "" if cap is None else str(_units(cap))
                for cap in (limits.max_run_usd, limits.max_window_usd)
            ]
            return [self._now(), r.id, str(r._units), repr(limits.reservation_ttl_s), *caps, *slots]
        if step == "settle":
            assert r is not None
            return [self._now(), r.id, "" if actual is None else str(actual), *slots, str(r._units)]
        if step == "release":
            assert r is not None
            return [self._now(), r.id]
        return [self._now(), *slots]

    def _run(self, step: str, args: list[Any]) -> Any:
        if self._client is None:
            raise InvalidRequestError(
                "this RedisBudget has only an asyncio client: use the a* "
                "methods (areserve, asettle, arelease, astatus)"
            )
        import redis as redis_sync

        try:
            return self._sync[step](keys=self._keys, args=args)
        except redis_sync.RedisError as exc:
            raise self._backend_error(exc) from None

    async def _arun(self, step: str, args: list[Any]) -> Any:
        if self._aclient is None:
            return await asyncio.to_thread(self._run, step, args)
        import redis as redis_sync

        try:
            return await self._async[step](keys=self._keys, args=args)
        except redis_sync.RedisError as exc:
            raise self._backend_error(exc) from None

    def _backend_error(self, exc: Exception) -> BudgetBackendError:
        return BudgetBackendError(
            f"budget store {self._where()} failed ({type(exc).__name__}: {exc}); calls are "
            "refused while the budget cannot be checked"
        )

    # -- backend steps --------------------------------------------------------------------
    def _reserve(self, r: Reservation) -> _Refusal | None:
        return _refusal(self._run("reserve", self._args("reserve", r)))

    async def _areserve(self, r: Reservation) -> _Refusal | None:
        return _refusal(await self._arun("reserve", self._args("reserve", r)))

    def _settle(self, r: Reservation, actual_units: int | None) -> None:
        try:
            self._settled(r, self._run("settle", self._args("settle", r, actual_units)))
        except BudgetBackendError as exc:
            log.warning("spend of %s not recorded: %s", r.id, _cause(exc))

    async def _asettle(self, r: Reservation, actual_units: int | None) -> None:
        try:
            self._settled(r, await self._arun("settle", self._args("settle", r, actual_units)))
        except BudgetBackendError as exc:
            log.warning("spend of %s not recorded: %s", r.id, _cause(exc))

    def _settled(self, r: Reservation, reply: Any) -> None:
        if reply == -1:
            log.error(
                "spend of %s not recorded: the run's total at %s would pass what Redis can "
                "count; reset() the budget (nothing was changed, the hold expires after its TTL)",
                r.id,
                self._where(),
            )

    def _release(self, r: Reservation) -> None:
        try:
            self._run("release", self._args("release", r))
        except BudgetBackendError as exc:
            log.warning(
                "reservation %s not released (it expires after its TTL): %s", r.id, _cause(exc)
            )

    async def _arelease(self, r: Reservation) -> None:
        try:
            await self._arun("release", self._args("release", r))
        except BudgetBackendError as exc:
            log.warning(
                "reservation %s not released (it expires after its TTL): %s", r.id, _cause(exc)
            )

    def status(self) -> BudgetStatus:
        return _status(self._run("status", self._args("status")))

    async def astatus(self) -> BudgetStatus:
        return _status(await self._arun("status", self._args("status")))

    def reset(self) -> None:
        if self._client is None:
            raise InvalidRequestError("this RedisBudget has only an asyncio client: use areset()")
        import redis as redis_sync

        try:
            self._client.delete(*self._keys)
        except redis_sync.RedisError as exc:
            raise self._backend_error(exc) from None

    async def areset(self) -> None:
        if self._aclient is None:
            return await asyncio.to_thread(self.reset)
        await self._aclient.delete(*self._keys)


def _cause(exc: BudgetBackendError) -> str:
    """What failed, without the "calls are refused" of a reserve: a settle or release that
    failed refuses nothing (the next reserve() decides for itself)."""
    return str(exc).split("; calls are refused", 1)[0]


def _refusal(reply: list[Any]) -> _Refusal | None:
    scope, spent, reserved = (_text(x) for x in reply)
    return _Refusal(scope, int(spent), int(reserved)) if scope else None


def _status(reply: list[Any]) -> BudgetStatus:
    spent, window, reserved, in_flight, settled = (_text(x) for x in reply)
    return BudgetStatus(
        int(spent) / _NANO, int(window) / _NANO, int(reserved) / _NANO, int(in_flight), int(settled)
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _units(usd: float) -> int:
    """USD to whole nano-dollars, rounded up (float noise below 1e-3 units ignored)."""
    return math.ceil(round(usd * _NANO, 3))


def _span(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} s"
