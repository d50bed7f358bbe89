"""Model health: a circuit breaker per model, whose cooldowns feed ``Request.unavailable``.

A model is *closed* (used normally) until it fails ``failures`` times within ``window_s``
seconds, or its failure share in that window reaches ``failure_rate`` (after at least
``min_calls`` calls). It is then *open*: skipped for ``cooldown_s``. After the cooldown it
is *half-open*: one probe call may go out; its success closes the circuit, its failure
opens it again for twice the previous cooldown, up to ``max_cooldown_s``. A 429 carrying
a Retry-After opens it right away for that long (capped at ``max_retry_after_s``); the
upstream said when to come back, so after that wait it is closed again, with no probe,
and the failures seen before still count towards tripping it.

Only failures that are the upstream's fault belong here (429, 5xx, timeouts, connection
errors); a caller's 400 says nothing about the model's health. The breaker is in memory
and per process; all methods are thread-safe and cheap enough for asyncio code.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from routedllm.core.errors import InvalidRequestError

__all__ = ["Admission", "CircuitBreaker", "CircuitState"]

CircuitState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True, eq=False)
class Admission:
    """The breaker's answer to one attempt: let out (``refused`` is None) or not, and why.

    A let-out attempt that is not sent after all goes back through
    :meth:`CircuitBreaker.abandon`, which frees only what this admission took. Compared by
    identity: two admissions are never the same claim.
    """

    model: str
    at: float
    """When it was asked for (the breaker's clock)."""
    refused: str | None = None
    """Why the attempt may not go out; None when it may."""
    probe: bool = False
    """It holds the half-open probe slot."""


@dataclass(slots=True)
class _Health:
    cooldown: float
    events: deque[tuple[float, bool]] = field(default_factory=deque)  # (time, failed)
    admitted: deque[Admission] = field(default_factory=deque)  # calls let out, oldest first
    open_until: float | None = None
    reason: str = ""
    probe: Admission | None = None  # the half-open probe in flight, if any
    tripped: bool = False  # opened by failures (half-open after), not only by a Retry-After


class CircuitBreaker:
    """Per-model circuit breaker; see the module docstring for the states.

    Before each attempt call :meth:`admit` (it may claim the half-open probe slot); after
    it, :meth:`record_success` or :meth:`record_failure` (:meth:`abandon` with the
    :class:`Admission` when the call was not sent after all). :meth:`unavailable` is the
    mapping to pass as ``Request(unavailable=...)``. ``clock`` (seconds) is injectable for
    tests.
    """

    def __init__(
        self,
        *,
        failures: int | None = 5,
        window_s: float = 60.0,
        cooldown_s: float = 30.0,
        failure_rate: float | None = None,
        min_calls: int = 10,
        max_cooldown_s: float | None = None,
        honour_retry_after: bool = True,
        max_retry_after_s: float = 300.0,
        min_retry_after_s: float = 0.0,
        probe_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures is None and failure_rate is None:
            raise InvalidRequestError(
                "CircuitBreaker needs failures=K or failure_rate=R (or both) to know when to open"
            )
        if failures is not None and (not isinstance(failures, int) or failures < 1):
            raise InvalidRequestError(f"failures must be a whole number >= 1, got {failures!r}")
        if failure_rate is not None and not 0 < failure_rate <= 1:
            raise InvalidRequestError(f"failure_rate must be within (0, 1], got {failure_rate!r}")
        if not isinstance(min_calls, int) or min_calls < 1:
            raise InvalidRequestError(f"min_calls must be a whole number >= 1, got {min_calls!r}")
        for name, value in (
            ("window_s", window_s),
            ("cooldown_s", cooldown_s),
            ("max_retry_after_s", max_retry_after_s),
            ("probe_timeout_s", probe_timeout_s),
        ):
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise InvalidRequestError(
                    f"{name} must be a positive number of seconds, got {value!r}"
                )
        max_cooldown_s = cooldown_s if max_cooldown_s is None else max_cooldown_s
        if max_cooldown_s < cooldown_s:
            raise InvalidRequestError(
                f"max_cooldown_s ({max_cooldown_s}) is below cooldown_s ({cooldown_s})"
            )
        self.failures = failures
        self.window_s = float(window_s)
        self.cooldown_s = float(cooldown_s)
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.max_cooldown_s = float(max_cooldown_s)
        self.honour_retry_after = honour_retry_after
        self.max_retry_after_s = float(max_retry_after_s)
        if not isinstance(min_retry_after_s, int | float) or not min_retry_after_s >= 0:
            raise InvalidRequestError(
                f"min_retry_after_s must be a number of seconds >= 0, got {min_retry_after_s!r}"
            )
        self.min_retry_after_s = float(min_retry_after_s)
        self.probe_timeout_s = float(probe_timeout_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._models: dict[str, _Health] = {}

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(failures={self.failures}, failure_rate={self.failure_rate}, "
            f"window_s={self.window_s:g}, cooldown_s={self.cooldown_s:g}, "
            f"open={sorted(self.unavailable())})"
        )

    # -- reading --------------------------------------------------------------------------
    def state(self, model: str) -> CircuitState:
        """``closed``, ``open`` (cooling down) or ``half_open`` (a probe may go out)."""
        with self._lock:
            return self._state(self._models.get(model), self._clock())

    def unavailable(self) -> dict[str, str]:
        """Models to skip right now, each with the reason (for ``Request.unavailable``).

        Open models, and half-open ones whose probe call is already in flight.
        """
        now = self._clock()
        out: dict[str, str] = {}
        with self._lock:
            for model, health in self._models.items():
                state = self._state(health, now)
                if state == "open":
                    assert health.open_until is not None
                    out[model] = (
                        f"circuit open: {health.reason}; cooling down for another "
                        f"{health.open_until - now:.1f}s"
                    )
                elif state == "half_open" and self._probing(health, now):
                    out[model] = (
                        f"circuit half-open after {health.reason}: a probe call is in flight"
                    )
        return out

    def available_in(self, model: str) -> float:
        """Seconds until ``model`` may be tried again: 0 when its circuit is closed (or
        half-open with its probe slot free), the rest of its cooldown when open, and a
        second (look again) while another call's probe is out."""
        now = self._clock()
        with self._lock:
            health = self._models.get(model)
            state = self._state(health, now)
            if state == "closed" or health is None:
                return 0.0
            if state == "open" and health.open_until is not None:
                return max(0.0, health.open_until - now)
            return 0.0 if not self._probing(health, now) else 1.0  # the probe is out: soon

    # -- the attempt protocol -------------------------------------------------------------
    def admit(self, model: str) -> Admission:
        """Whether a call to ``model`` may go out now (``refused`` None), else why not.

        When the circuit is half-open, the first caller gets the probe slot (held until it
        records the outcome, abandons it, or for ``probe_timeout_s``); the others are told
        to skip. Admitted calls also count towards ``failure_rate`` while they are in
        flight, so the fast failures of a burst do not trip it before the slower successes
        come back.
        """
        now = self._clock()
        with self._lock:
            health = self._health(model)
            state = self._state(health, now)
            if state == "closed":
                admission = Admission(model, now)
                health.admitted.append(admission)
                self._prune(health, now)
                return admission
            assert health.open_until is not None
            if state == "open":
                return Admission(
                    model,
                    now,
                    refused=(
                        f"circuit open: {health.reason}; cooling down for another "
                        f"{health.open_until - now:.1f}s"
                    ),
                )
            if self._probing(health, now):
                return Admission(
                    model,
                    now,
                    refused=(f"circuit half-open after {health.reason}: a probe call is in flight"),
                )
            admission = health.probe = Admission(model, now, probe=True)
            health.admitted.append(admission)
            return admission

    def record_success(self, model: str) -> None:
        """The call to ``model`` succeeded; a half-open circuit closes."""
        now = self._clock()
        with self._lock:
            health = self._health(model)
            if self._state(health, now) == "half_open":
                health.events.clear()
                health.admitted.clear()
                health.open_until = health.probe = None
                health.cooldown = self.cooldown_s
                health.reason = ""
            health.events.append((now, False))
            self._prune(health, now)

    def record_failure(
        self, model: str, reason: str, *, retry_after_s: float | None = None
    ) -> None:
        """The call to ``model`` failed for ``reason`` (shown in decisions while it cools down).

        ``retry_after_s``: the upstream's Retry-After, which opens the circuit at once for
        that long (capped) when ``honour_retry_after``.
        """
        now = self._clock()
        with self._lock:
            health = self._health(model)
            state = self._state(health, now)
            if state == "half_open":
                health.cooldown = min(health.cooldown * 2, self.max_cooldown_s)
                wait = max(health.cooldown, self._retry_after(retry_after_s))
                self._open(health, now, wait, f"probe failed ({reason})")
                return
            health.events.append((now, True))
            self._prune(health, now)
            if state == "closed":
                tripped = self._tripped(health)
                if tripped:
                    self._open(health, now, health.cooldown, f"{tripped}; last: {reason}")
            wait = self._retry_after(retry_after_s)
            if wait:
                still_open = self._state(health, now) == "open"
                assert not still_open or health.open_until is not None
                if not still_open or health.open_until < now + wait:  # type: ignore[operator]
                    self._open(
                        health,
                        now,
                        wait,
                        f"rate limited, Retry-After {wait:g}s ({reason})",
                        tripped=still_open and health.tripped,
                    )

    def abandon(self, admission: Admission) -> None:
        """The admitted call was not sent after all (e.g. a budget refused it): forget it,
        and free the half-open probe slot if it holds it; no outcome is recorded.

        Only what this admission took is released (another caller's probe stays out);
        a refused admission, or one already forgotten, changes nothing.
        """
        if admission.refused is not None:
            return
        with self._lock:
            health = self._models.get(admission.model)
            if health is None:
                return
            if health.probe is admission:
                health.probe = None
            try:
                health.admitted.remove(admission)  # by identity
            except ValueError:  # already out of the window, or forgotten when it tripped
                pass

    def reset(self, model: str | None = None) -> None:
        """Close the circuit of ``model`` (or of every model) and forget its history."""
        with self._lock:
            if model is None:
                self._models.clear()
            else:
                self._models.pop(model, None)

    # -- internals ------------------------------------------------------------------------
    def _health(self, model: str) -> _Health:
        health = self._models.get(model)
        if health is None:
            health = self._models[model] = _Health(self.cooldown_s)
        return health

    def _retry_after(self, retry_after_s: float | None) -> float:
        """The wait a Retry-After imposes (0 when none, not honoured, or shorter than
        ``min_retry_after_s``: a short wait throttles one request, and the call that got it
        waits it out itself), capped at ``max_retry_after_s``."""
        if not self.honour_retry_after or retry_after_s is None or not retry_after_s > 0:
            return 0.0
        if retry_after_s < self.min_retry_after_s:
            return 0.0
        return min(float(retry_after_s), self.max_retry_after_s)

    def _probing(self, health: _Health, now: float) -> bool:
        """A half-open probe is in flight (and has not yet timed out)."""
        return health.probe is not None and health.probe.at + self.probe_timeout_s > now

    @staticmethod
    def _state(health: _Health | None, now: float) -> CircuitState:
        if health is None or health.open_until is None:
            return "closed"
        if now < health.open_until:
            return "open"
        return "half_open" if health.tripped else "closed"  # a Retry-After's wait is over

    def _prune(self, health: _Health, now: float) -> None:
        events, admitted = health.events, health.admitted
        while events and events[0][0] <= now - self.window_s:
            events.popleft()
        while admitted and admitted[0].at <= now - self.window_s:
            admitted.popleft()

    def _tripped(self, health: _Health) -> str | None:
        failed = sum(1 for _, bad in health.events if bad)
        total = max(len(health.events), len(health.admitted))  # calls in flight count too
        if self.failures is not None and failed >= self.failures:
            return f"{failed} failures in {self.window_s:g}s"
        if (
            self.failure_rate is not None
            and total >= self.min_calls
            and (failed / total >= self.failure_rate)
        ):
            return f"{failed} of {total} calls failed in {self.window_s:g}s"
        return None

    @staticmethod
    def _open(
        health: _Health, now: float, seconds: float, reason: str, *, tripped: bool = True
    ) -> None:
        """Open for ``seconds``: tripped by failures (forgotten; half-open after), or only
        waiting out a Retry-After (failures kept; closed after)."""
        health.open_until = now + seconds
        health.probe = None
        health.reason = reason
        health.tripped = tripped
        if tripped:
            health.events.clear()
            health.admitted.clear()
