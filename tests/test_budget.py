"""Spend limits: per-call maximum, run and window caps, reservations under concurrency.

The Redis tests start a real ``redis-server`` on 127.0.0.1 (the Debian package; `.ci/run`
installs it) and skip with the reason when it is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from routedllm import BudgetExceeded, Catalog, LocalBudget, Policy, RedisBudget, Request, decide
from routedllm.core.errors import InvalidRequestError
from routedllm.core.pricing import estimate_cost
from routedllm.reliability.budget import BudgetLimits
from tests.conftest import user


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def local(**limits) -> LocalBudget:
    return LocalBudget(BudgetLimits(**limits))


# -- the protocol, on the in-memory backend --------------------------------------------------
def test_per_call_maximum_checks_the_decision_estimate(catalog: Catalog) -> None:
    decision = decide(
        catalog,
        Policy(preset="quality"),
        Request(
            messages=user("Summarise this report " * 200), tags=["general"], max_output_tokens=2000
        ),
    )
    budget = local(max_call_usd=decision.estimated_cost_usd / 2)
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(decision.estimated_cost_usd, model=decision.model)
    err = info.value
    assert err.scope == "call" and err.requested_usd == decision.estimated_cost_usd
    assert f"for {decision.model}" in str(err) and "above the per-call maximum" in str(err)
    assert budget.status().reserved_usd == 0
    cheap = estimate_cost(
        catalog.get("deepseek-v4-flash"),
        decision.estimated_input_tokens,
        decision.expected_output_tokens,
    )
    budget.reserve(cheap, model="deepseek-v4-flash").settle(cheap)
    assert budget.status().spent_usd == pytest.approx(cheap, abs=1e-9)


def test_run_cap_counts_spend_and_calls_in_flight() -> None:
    budget = local(max_run_usd=1.0)
    first = budget.reserve(0.4)
    second = budget.reserve(0.4)
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(0.3)
    assert info.value.scope == "run" and info.value.reserved_usd == pytest.approx(0.8)
    assert "run spend cap $1.000000 reached" in str(info.value)
    assert "$0.800000 held by calls in flight" in str(info.value)
    first.release()  # the call failed: its money is free again
    third = budget.reserve(0.3)
    second.settle(0.45)  # cost more than estimated
    third.settle(0.1)
    status = budget.status()
    assert status.spent_usd == pytest.approx(0.55) and status.reserved_usd == 0
    assert status.in_flight == 0 and status.settled_calls == 2
    budget.reserve(0.45).settle(0.45)
    with pytest.raises(BudgetExceeded, match=r"\$1.000000 spent"):
        budget.reserve(1e-6)
    budget.reset()
    assert budget.status().spent_usd == 0 and budget.reserve(1.0)


def test_hold_releases_on_error_and_charges_the_estimate_when_unsettled() -> None:
    budget = local(max_run_usd=1.0)
    with pytest.raises(RuntimeError), budget.hold(0.5):
        assert budget.status().reserved_usd == 0.5
        raise RuntimeError("upstream failed")
    assert budget.status().spent_usd == 0 and budget.status().reserved_usd == 0
    with budget.hold(0.5) as r:
        r.settle(0.2)
    with budget.hold(0.3):
        pass  # no usage came back: the estimate is charged
    assert budget.status().spent_usd == pytest.approx(0.5)


def test_settle_once_release_is_idempotent() -> None:
    budget = local()
    r = budget.reserve(0.1)
    r.settle(0.1)
    r.release()  # a no-op in a `finally`
    with pytest.raises(InvalidRequestError, match="already settled"):
        r.settle(0.1)
    with pytest.raises(InvalidRequestError, match="another budget"):
        local().settle(budget.reserve(0.1), 0.1)


def test_unknown_cost_is_refused_unless_allowed() -> None:
    with pytest.raises(BudgetExceeded) as info:
        local(max_run_usd=1).reserve(None, model="gemini-1.5-pro")
    assert info.value.scope == "unknown_cost"
    assert "gemini-1.5-pro is unknown" in str(info.value) and "allow_unknown_cost" in str(
        info.value
    )
    budget = local(max_run_usd=1, allow_unknown_cost=True)
    r = budget.reserve(None)
    assert r.amount_usd == 0
    r.settle(0.25)  # the response's usage priced it after all
    assert budget.status().spent_usd == 0.25


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf"), "0.1"])
def test_bad_estimates(bad) -> None:
    with pytest.raises(InvalidRequestError, match="estimate_usd must be a finite, non-negative"):
        local().reserve(bad)
    r = local().reserve(0.1)
    if not isinstance(bad, str):
        with pytest.raises(InvalidRequestError, match="actual_usd must be a finite"):
            r.settle(bad)
        assert r.state == "held"


def test_window_cap_slides() -> None:
    clock = Clock()
    budget = LocalBudget(BudgetLimits(max_window_usd=1.0, window_s=60, window_slots=6), clock=clock)
    budget.reserve(0.6).settle(0.6)
    clock.now += 30
    budget.reserve(0.4).settle(0.4)
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(0.1)
    assert info.value.scope == "window" and "spend cap per minute" in str(info.value)
    clock.now += 30  # the first 0.6 is 60 s old: still counted (a slot of grace, never less)
    with pytest.raises(BudgetExceeded):
        budget.reserve(0.1)
    clock.now += 10.01  # past window + one slot: it has left
    budget.reserve(0.6)
    assert budget.status().window_spent_usd == pytest.approx(0.4)


def test_lost_reservations_expire() -> None:
    clock = Clock()
    budget = LocalBudget(BudgetLimits(max_run_usd=1.0, reservation_ttl_s=30), clock=clock)
    budget.reserve(0.9)  # its caller never settles
    with pytest.raises(BudgetExceeded):
        budget.reserve(0.2)
    clock.now += 30
    assert budget.reserve(0.2) and budget.status().in_flight == 1


def test_threads_overshoot_at_most_the_calls_in_flight() -> None:
    budget = local(max_run_usd=1.0)
    estimate, actual, threads = 0.01, 0.0125, 32
    accepted = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(20):
            try:
                r = budget.reserve(estimate)
            except BudgetExceeded:
                continue
            time.sleep(rng.random() / 1000)
            r.settle(actual)
            accepted.append(1)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    status = budget.status()
    print(f"threads: {len(accepted)} calls accepted, spent ${status.spent_usd:.4f} of $1.00")
    assert status.spent_usd == pytest.approx(len(accepted) * actual)
    assert 1.0 - actual < status.spent_usd <= 1.0 + threads * (actual - estimate) + 1e-9
    assert status.reserved_usd == 0 and status.in_flight == 0


async def test_asyncio_tasks_never_pass_an_exact_cap() -> None:
    budget = local(max_run_usd=1.0)
    outcomes: list[str] = []

    async def call(i: int) -> None:
        try:
            async with budget.ahold(0.01) as r:
                await asyncio.sleep((i % 7) / 1000)
                await r.asettle(0.01)
                outcomes.append("ok")
        except BudgetExceeded as exc:
            outcomes.append(exc.scope)

    await asyncio.gather(*(call(i) for i in range(256)))
    assert outcomes.count("ok") == 100 and outcomes.count("run") == 156
    assert budget.status().spent_usd == 1.0 and budget.status().reserved_usd == 0


# -- Redis ----------------------------------------------------------------------------------
HAS_REDIS_PY = importlib.util.find_spec("redis") is not None
needs_redis_py = pytest.mark.skipif(
    not HAS_REDIS_PY, reason="redis-py not installed (pip install 'routedllm[redis]')"
)
needs_server = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server not installed (apt-get install redis-server; .ci/run installs it)",
)


def on_redis(test):
    """Marks a test that needs the redis-server this module starts on 127.0.0.1."""
    for mark in (
        needs_redis_py,
        needs_server,
        pytest.mark.loopback,
        pytest.mark.allow_hosts(["127.0.0.1"]),
    ):
        test = mark(test)
    return test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    import redis

    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def shared(url: str, clock=None, **limits) -> RedisBudget:
    return RedisBudget.from_url(url, BudgetLimits(**limits), name=uuid.uuid4().hex, clock=clock)


@on_redis
def test_redis_run_cap_settle_release_and_sharing(redis_url: str) -> None:
    budget = shared(redis_url, max_run_usd=1.0, max_call_usd=0.5)
    twin = RedisBudget.from_url(redis_url, budget.limits, name=budget.name)  # another process
    first = budget.reserve(0.4, model="m")
    second = twin.reserve(0.4)
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(0.3)
    assert info.value.scope == "run" and info.value.reserved_usd == pytest.approx(0.8)
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(0.6)
    assert info.value.scope == "call"
    first.release()
    second.settle(0.45)
    status = twin.status()
    assert status.spent_usd == pytest.approx(0.45) and status.reserved_usd == 0
    assert status.in_flight == 0 and status.settled_calls == 1
    other = shared(redis_url, max_run_usd=1.0)
    assert other.status().spent_usd == 0  # another name, another cap
    budget.reset()
    assert twin.status().spent_usd == 0


@on_redis
def test_redis_window_and_expiry_with_an_injected_clock(redis_url: str) -> None:
    clock = Clock()
    budget = shared(
        redis_url,
        clock=clock,
        max_window_usd=1.0,
        window_s=60,
        window_slots=6,
        reservation_ttl_s=30,
    )
    budget.reserve(0.6).settle(0.6)
    clock.now += 30
    lost = budget.reserve(0.4)  # never settled
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(0.1)
    assert info.value.scope == "window"
    clock.now += 30  # the lost reservation expired; the 0.6 is still in the window
    budget.reserve(0.4).settle(0.4)
    assert budget.status().window_spent_usd == pytest.approx(1.0)
    clock.now += 10.01
    assert budget.status().window_spent_usd == pytest.approx(0.4)
    lost.settle(None)  # settling after expiry still records the spend (the estimate)
    assert budget.status().spent_usd == pytest.approx(1.4)


@on_redis
async def test_redis_asyncio_tasks_never_pass_an_exact_cap(redis_url: str) -> None:
    budget = shared(redis_url, max_run_usd=0.5)
    outcomes: list[str] = []

    async def call() -> None:
        try:
            async with budget.ahold(0.01) as r:
                await asyncio.sleep(0.001)
                await r.asettle(0.01)
            outcomes.append("ok")
        except BudgetExceeded as exc:
            outcomes.append(exc.scope)

    await asyncio.gather(*(call() for _ in range(128)))
    status = await budget.astatus()
    await budget._aclient.aclose()
    assert outcomes.count("ok") == 50 and status.spent_usd == 0.5 and status.in_flight == 0


WORKER = """
import json, random, sys, time
from routedllm import BudgetExceeded, RedisBudget
from routedllm.reliability.budget import BudgetLimits
url, name, calls, estimate, actual, cap, seed = sys.argv[1:8]
budget = RedisBudget.from_url(url, BudgetLimits(max_run_usd=float(cap)), name=name)
rng = random.Random(name + seed)
budget.status()  # connected
print("ready", flush=True)
sys.stdin.readline()  # every process starts reserving at once
ok = refused = 0
for _ in range(int(calls)):
    try:
        r = budget.reserve(float(estimate))
    except BudgetExceeded:
        refused += 1
        continue
    time.sleep(rng.random() / 500)
    r.settle(float(actual))
    ok += 1
print(json.dumps({"ok": ok, "refused": refused}))
"""


def run_processes(
    url: str, name: str, *, processes: int, calls: int, estimate: float, actual: float, cap: float
) -> list[dict[str, int]]:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                url,
                name,
                str(calls),
                str(estimate),
                str(actual),
                str(cap),
                str(i),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


@on_redis
def test_four_processes_share_one_cap(redis_url: str) -> None:
    # Estimates right: the cap is met exactly, never passed.
    exact = shared(redis_url, max_run_usd=1.0)
    results = run_processes(
        redis_url, exact.name, processes=4, calls=60, estimate=0.01, actual=0.01, cap=1.0
    )
    status = exact.status()
    print(
        f"4 processes x 60 reservations, exact estimates: {[r['ok'] for r in results]} "
        f"accepted, spent ${status.spent_usd:.4f} of $1.00"
    )
    assert sum(r["ok"] for r in results) == 100 and sum(r["refused"] for r in results) == 140
    assert status.spent_usd == 1.0 and status.reserved_usd == 0 and status.settled_calls == 100
    assert all(r["ok"] > 0 for r in results)  # the processes really raced for the cap

    # Calls costing 25% more than estimated: the overshoot is bounded by the calls in
    # flight (one per process) times their excess.
    over = shared(redis_url, max_run_usd=1.0)
    results = run_processes(
        redis_url, over.name, processes=4, calls=60, estimate=0.01, actual=0.0125, cap=1.0
    )
    status = over.status()
    accepted = sum(r["ok"] for r in results)
    print(
        f"4 processes x 60 reservations, 25% over estimate: {accepted} accepted, "
        f"spent ${status.spent_usd:.4f} of $1.00 (bound $1.0100)"
    )
    assert status.spent_usd == pytest.approx(accepted * 0.0125)
    assert 1.0 - 0.0125 < status.spent_usd <= 1.0 + 4 * 0.0025 + 1e-9
    assert status.in_flight == 0


def test_redis_budget_needs_a_client() -> None:
    with pytest.raises(InvalidRequestError, match="needs a redis client"):
        RedisBudget(BudgetLimits())
