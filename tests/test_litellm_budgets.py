"""routedllm budgets on the LiteLLM proxy: held in the pre-call hook, settled in the logger,
released when a request fails; two proxy processes sharing one Redis share the caps."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import openai
import pytest
import yaml

from routedllm.adapters.litellm.budgets import ProxyBudgetConfig, ProxyBudgets
from routedllm.core.errors import BudgetExceeded, InvalidRequestError
from routedllm.records.ledger import read_ledger
from routedllm.reliability.budget import BudgetLimits, RedisBudget
from routedllm.testing import ModelSpec, Upstream
from tests.test_litellm_proxy import CODE, Proxy, _free_port, start_proxy

pytestmark = [pytest.mark.loopback, pytest.mark.allow_hosts(["127.0.0.1"])]

MESSAGES = [{"role": "user", "content": CODE}]
CALLER = SimpleNamespace(api_key="hash-1", team_id="team-a", user_id=None)


def test_scopes_come_from_litellms_caller_and_tags() -> None:
    budgets = ProxyBudgets(ProxyBudgetConfig(per=("global", "key", "team", "user", "tag")))
    data = {"metadata": {"tags": ["acme", "code"]}, "tags": "code,beta"}
    assert budgets.scopes(CALLER, data) == [
        "global",
        "key:" + hashlib.sha256(b"hash-1").hexdigest()[:32],
        "team:team-a",
        "tag:acme",
        "tag:code",
        "tag:beta",
    ]


async def test_hold_is_all_or_nothing_and_settles_or_releases() -> None:
    budgets = ProxyBudgets(ProxyBudgetConfig(max_run_usd=1.0, per=("global", "team")))
    await budgets.hold("a", ["global", "team:t"], 0.6, "m")
    await budgets.budget("team:u").areserve(0.0)
    await budgets.hold("b", ["team:u"], 0.5, "m")  # another team: its own cap
    with pytest.raises(BudgetExceeded, match="budget global: run spend cap"):
        await budgets.hold("c", ["team:u", "global"], 0.5, "m")
    assert budgets.budget("team:u").status().reserved_usd == pytest.approx(0.5)  # c let go
    await budgets.settle("a", 0.2)
    await budgets.release("b")
    await budgets.release("b")  # once only
    assert budgets.budget("global").status().spent_usd == pytest.approx(0.2)
    assert budgets.budget("team:u").status().reserved_usd == 0


def test_budget_file_errors_say_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "budget.yaml"
    bad.write_text("per: [galaxy]\n", "utf-8")
    with pytest.raises(InvalidRequestError, match="not a valid budget file"):
        ProxyBudgets.from_file(bad)
    with pytest.raises(InvalidRequestError, match="cannot read the budget file"):
        ProxyBudgets.from_file(tmp_path / "missing.yaml")
    assert ProxyBudgets.from_env({}) is None


# -- two proxies, one Redis ------------------------------------------------------------------
@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    import redis

    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
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
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


CAP_USD = 0.002
ANSWER = ModelSpec(reply="def f(): pass", prompt_tokens=1000, completion_tokens=1000)


@pytest.fixture(scope="module")
def proxies(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proxy, Proxy]]:
    tmp = tmp_path_factory.mktemp("litellm-budgets")
    budget = tmp / "budget.yaml"
    budget.write_text(
        yaml.safe_dump({"max_run_usd": CAP_USD, "per": ["global"], "redis_url": redis_url}),
        "utf-8",
    )
    env = {"ROUTEDLLM_BUDGET": str(budget)}
    with Upstream({"deepseek-v4-flash": ANSWER}) as upstream:
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        with (
            start_proxy(tmp / "a", {}, env=env, upstream=upstream) as a,
            start_proxy(tmp / "b", {}, env=env, upstream=upstream) as b,
        ):
            yield a, b


def test_two_proxies_share_one_budget_in_redis(
    proxies: tuple[Proxy, Proxy], redis_url: str
) -> None:
    a, b = proxies
    answered: list[tuple[Proxy, str]] = []
    refused: tuple[Proxy, str, Exception] | None = None
    for turn in range(20):  # alternate between the two processes until the cap refuses
        proxy = (a, b)[turn % 2]
        trace = str(uuid.uuid4())
        try:
            proxy.client().chat.completions.create(
                model="routed/code", messages=MESSAGES, extra_body={"litellm_trace_id": trace}
            )
        except openai.BadRequestError as exc:
            refused = (proxy, trace, exc)
            break
        proxy.records(trace, 1)  # logged, so settled, before the next request
        answered.append((proxy, trace))
    assert refused is not None, "the shared cap never refused a request"
    assert {p.url for p, _ in answered} == {a.url, b.url}  # both processes spent
    proxy, trace, exc = refused
    assert "run spend cap $0.002000 reached" in str(exc)
    [record] = proxy.records(trace, 1)
    assert record.outcome == "BudgetExceeded" and record.model == "routed/code"
    # the other process refuses too: the spend is shared
    other = b if proxy is a else a
    with pytest.raises(openai.BadRequestError, match="run spend cap"):
        other.client().chat.completions.create(model="routed/code", messages=MESSAGES)

    spent = [
        r.cost_usd for p in (a, b) for r in read_ledger(p.ledger) if r.ok and r.cost_usd is not None
    ]
    assert len(spent) == len(answered)
    shared = RedisBudget.from_url(redis_url, BudgetLimits(), name="litellm-proxy:global")
    status = shared.status()
    assert status.spent_usd == pytest.approx(sum(spent), abs=1e-8)  # settled to actual cost
    assert status.reserved_usd == 0 and status.settled_calls == len(answered)
    assert sum(spent) <= CAP_USD + max(spent)  # passed only by the last call's overrun
