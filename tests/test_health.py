"""The circuit breaker: opening, cooldown, half-open probe, and decisions that skip a model."""

from __future__ import annotations

import threading

import pytest

from routedllm import Catalog, CircuitBreaker, Policy, Request, decide
from routedllm.core.errors import InvalidRequestError
from tests.conftest import user


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_k_failures_within_the_window_open_the_circuit(clock: Clock) -> None:
    cb = CircuitBreaker(failures=3, window_s=10, cooldown_s=30, clock=clock)
    cb.record_failure("a", "InternalServerError 500")
    cb.record_failure("a", "InternalServerError 500")
    assert cb.state("a") == "closed" and cb.unavailable() == {} and cb.admit("a").refused is None
    clock.now += 5
    cb.record_failure("a", "APITimeoutError")
    assert cb.state("a") == "open"
    reason = cb.unavailable()["a"]
    assert "3 failures in 10s" in reason and "APITimeoutError" in reason and "30.0s" in reason
    assert cb.admit("a").refused == reason
    assert cb.state("b") == "closed" and "b" not in cb.unavailable()


def test_failures_spread_beyond_the_window_do_not_open(clock: Clock) -> None:
    cb = CircuitBreaker(failures=3, window_s=10, cooldown_s=30, clock=clock)
    for _ in range(6):
        cb.record_failure("a", "500")
        clock.now += 6  # never three within 10 s
    assert cb.state("a") == "closed"


def test_failure_rate_needs_min_calls(clock: Clock) -> None:
    cb = CircuitBreaker(failures=None, failure_rate=0.5, min_calls=6, window_s=60, clock=clock)
    for _ in range(2):
        cb.record_success("a")
        cb.record_failure("a", "503")
    assert cb.state("a") == "closed"  # 2 of 4 failed, but fewer than 6 calls
    cb.record_success("a")
    cb.record_failure("a", "503")
    assert cb.state("a") == "open" and "3 of 6 calls failed" in cb.unavailable()["a"]


def test_half_open_probe_closes_on_success(clock: Clock) -> None:
    cb = CircuitBreaker(failures=1, cooldown_s=30, clock=clock)
    cb.record_failure("a", "500")
    clock.now += 29.9
    assert cb.state("a") == "open"
    clock.now += 0.2
    assert cb.state("a") == "half_open" and cb.unavailable() == {}
    assert cb.admit("a").refused is None  # this caller is the probe
    assert "probe call is in flight" in cb.admit("a").refused
    assert "probe call is in flight" in cb.unavailable()["a"]
    cb.record_success("a")
    assert cb.state("a") == "closed" and cb.admit("a").refused is None and cb.unavailable() == {}


def test_failed_probe_reopens_with_a_longer_cooldown(clock: Clock) -> None:
    cb = CircuitBreaker(failures=1, cooldown_s=10, max_cooldown_s=25, clock=clock)
    cb.record_failure("a", "500")
    for expected in (20, 25, 25):  # doubled, then capped
        clock.now += 1000
        assert cb.admit("a").refused is None
        cb.record_failure("a", "502")
        assert cb.state("a") == "open" and "probe failed (502)" in cb.unavailable()["a"]
        opened = clock.now
        clock.now = opened + expected - 0.1
        assert cb.state("a") == "open"
        clock.now = opened + expected + 0.1
        assert cb.state("a") == "half_open"
    clock.now += 1000
    cb.admit("a")
    cb.record_success("a")
    cb.record_failure("a", "500")  # a fresh trip starts from the base cooldown again
    clock.now += 10.1
    assert cb.state("a") == "half_open"


def test_a_lost_probe_frees_its_slot_after_the_timeout(clock: Clock) -> None:
    cb = CircuitBreaker(failures=1, cooldown_s=10, probe_timeout_s=5, clock=clock)
    cb.record_failure("a", "500")
    clock.now += 10
    assert cb.admit("a").refused is None
    clock.now += 4.9
    assert cb.admit("a").refused is not None
    clock.now += 0.2
    assert cb.admit("a").refused is None


def test_retry_after_opens_for_that_long(clock: Clock) -> None:
    cb = CircuitBreaker(failures=5, cooldown_s=30, max_retry_after_s=60, clock=clock)
    cb.record_failure("a", "RateLimitError 429", retry_after_s=7)
    assert cb.state("a") == "open" and "Retry-After 7s" in cb.unavailable()["a"]
    clock.now += 7
    assert cb.state("a") == "closed" and cb.admit("a").refused is None  # the wait is over: no probe
    cb.record_failure("b", "429", retry_after_s=3600)  # capped
    clock.now += 59
    assert cb.state("b") == "open"
    clock.now += 1
    assert cb.state("b") == "closed"
    ignoring = CircuitBreaker(failures=5, honour_retry_after=False, clock=clock)
    ignoring.record_failure("a", "429", retry_after_s=7)
    assert ignoring.state("a") == "closed"


def test_decisions_skip_cooling_models_and_say_why(catalog: Catalog, clock: Clock) -> None:
    policy = Policy()
    request = dict(messages=user("fix this python function"), tags=["code"])
    first = decide(catalog, policy, Request(**request))
    cb = CircuitBreaker(failures=2, cooldown_s=60, clock=clock)
    for _ in range(2):
        cb.record_failure(first.model, "InternalServerError 500")
    skipped = decide(catalog, policy, Request(**request, unavailable=cb.unavailable()))
    assert skipped.model != first.model and skipped.model == first.fallbacks[0]
    [why] = [r for r in skipped.rejected if r.model == first.model]
    assert why.code == "unavailable" and "circuit open" in why.reason and "500" in why.reason
    clock.now += 61
    assert decide(catalog, policy, Request(**request, unavailable=cb.unavailable())).model == (
        first.model
    )


def test_thread_safe_counting(clock: Clock) -> None:
    cb = CircuitBreaker(failures=1000, window_s=60, clock=clock)

    def hammer() -> None:
        for _ in range(100):
            cb.record_failure("a", "500")

    threads = [threading.Thread(target=hammer) for _ in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cb.state("a") == "closed"  # 900 failures: not yet
    cb.record_failure("a", "500")
    for _ in range(99):
        cb.record_failure("a", "500")
    assert cb.state("a") == "open" and "1000 failures" in cb.unavailable()["a"]


def test_reset(clock: Clock) -> None:
    cb = CircuitBreaker(failures=1, clock=clock)
    cb.record_failure("a", "500")
    cb.record_failure("b", "500")
    cb.reset("a")
    assert set(cb.unavailable()) == {"b"}
    cb.reset()
    assert cb.unavailable() == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failures": None}, "needs failures=K or failure_rate=R"),
        ({"failures": 0}, "failures must be a whole number >= 1"),
        ({"failure_rate": 1.5}, "failure_rate must be within (0, 1]"),
        ({"cooldown_s": 0}, "cooldown_s must be a positive number"),
        ({"window_s": -1}, "window_s must be a positive number"),
        ({"cooldown_s": 30, "max_cooldown_s": 10}, "max_cooldown_s (10) is below cooldown_s (30)"),
        ({"min_calls": 0}, "min_calls must be a whole number >= 1"),
    ],
)
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        CircuitBreaker(**kwargs)
    assert message in str(info.value)


def test_after_a_retry_after_a_failure_is_an_ordinary_one(clock: Clock) -> None:
    """A failed call after a Retry-After's wait does not reopen the circuit for a doubled
    cooldown, as a failed probe would; the failures before the wait still count."""
    cb = CircuitBreaker(failures=3, window_s=60, cooldown_s=30, clock=clock)
    cb.record_failure("a", "InternalServerError 500")
    cb.record_failure("a", "RateLimitError 429", retry_after_s=0.2)
    clock.now += 0.2
    assert cb.state("a") == "closed" and cb.admit("a").refused is None
    cb.record_failure("a", "InternalServerError 500")  # the third failure within 60 s
    assert cb.state("a") == "open" and "3 failures in 60s" in cb.unavailable()["a"]
    clock.now += 30
    assert cb.state("a") == "half_open"  # tripped by failures: a probe decides


def test_a_retry_after_longer_than_a_trip_extends_it(clock: Clock) -> None:
    cb = CircuitBreaker(failures=1, cooldown_s=10, max_retry_after_s=120, clock=clock)
    cb.record_failure("a", "RateLimitError 429", retry_after_s=60)
    assert cb.state("a") == "open" and "Retry-After 60s" in cb.unavailable()["a"]
    clock.now += 60
    assert cb.state("a") == "half_open"  # it had tripped too: a probe decides


def test_abandon_frees_the_probe_slot(clock: Clock) -> None:
    cb = CircuitBreaker(failures=1, cooldown_s=5, clock=clock)
    cb.record_failure("a", "InternalServerError 500")
    clock.now += 5
    probe = cb.admit("a")
    assert probe.probe and probe.refused is None and cb.admit("a").refused is not None
    cb.abandon(probe)  # it was not sent after all
    assert cb.admit("a").refused is None and cb.state("a") == "half_open"


def test_abandoning_an_ordinary_call_leaves_anothers_probe_out(clock: Clock) -> None:
    """A call let out before the circuit tripped, then cancelled, must not free the probe
    slot of the call that is probing now: a second probe would go out."""
    cb = CircuitBreaker(failures=1, cooldown_s=5, clock=clock)
    early = cb.admit("a")
    assert early.refused is None and not early.probe
    cb.record_failure("a", "InternalServerError 500")
    clock.now += 5
    probe = cb.admit("a")
    assert probe.probe
    cb.abandon(early)  # the early call is cancelled before it was sent
    assert "probe call is in flight" in cb.admit("a").refused
    assert "probe call is in flight" in cb.unavailable()["a"]
    refused = cb.admit("a")
    cb.abandon(refused)  # a refused admission holds nothing
    assert "probe call is in flight" in cb.admit("a").refused
    cb.abandon(probe)
    cb.abandon(probe)  # twice changes nothing more
    assert cb.admit("a").probe and cb.admit("a").refused is not None


def test_abandon_forgets_its_own_call_not_the_newest(clock: Clock) -> None:
    """An abandoned call stops counting; a newer call still in flight keeps counting
    towards the failure rate after the abandoned one would have left the window."""
    cb = CircuitBreaker(failures=None, failure_rate=0.75, min_calls=1, window_s=60, clock=clock)
    old = cb.admit("a")
    clock.now += 50
    cb.admit("a")  # still in flight at the end
    cb.abandon(old)
    clock.now += 15
    cb.admit("a")
    clock.now += 5  # the old call's time is now out of the window
    cb.record_failure("a", "InternalServerError 500")
    assert cb.state("a") == "closed"  # 1 failed of 2 admitted in the window
    cb.record_failure("a", "InternalServerError 500")
    assert cb.state("a") == "open" and "2 of 2 calls failed" in cb.unavailable()["a"]


def test_calls_in_flight_count_towards_the_failure_rate(clock: Clock) -> None:
    """In a burst, fast failures come back before slow successes: they are measured
    against every call admitted, not only the ones that ended."""
    cb = CircuitBreaker(failures=None, failure_rate=0.5, min_calls=10, clock=clock)
    for _ in range(40):
        assert cb.admit("a").refused is None
    for _ in range(15):
        cb.record_failure("a", "InternalServerError 500")
    assert cb.state("a") == "closed"  # 15 failed of 40 sent, 25 still in flight
    for _ in range(5):
        cb.record_failure("a", "InternalServerError 500")
    assert cb.state("a") == "open" and "20 of 40 calls failed" in cb.unavailable()["a"]
