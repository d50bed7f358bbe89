"""What routedllm's hook and logger cost a LiteLLM proxy: throughput with and without them.

Two real LiteLLM proxy processes run side by side on loopback in front of one stand-in
upstream (``routedllm.testing.Upstream``): one from ``routedllm litellm-config`` (the
routedllm callback routes ``routed/code`` and writes a JSONL ledger line per attempt), one
from the same config with no callback, asked for the concrete model the routed proxy
picks. In each round both proxies are loaded at the same time for ``SECONDS``, each with
``CONCURRENCY`` requests in flight (which one's clients start first alternates), so both
see the same background load; the table gives requests per second per round and the
routed/plain ratio, then the median and worst ratio over the rounds.

Run: ``python benchmarks/proxy_pair.py [ROUNDS] [SECONDS] [CONCURRENCY]``
(needs ``routedllm[litellm-proxy]``; about two minutes with the defaults).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from routedllm import Catalog
from routedllm.adapters.litellm import proxy_config, render_config
from routedllm.testing import ModelSpec, Upstream

ROUTED_GROUP = "routed/code"
PLAIN_MODEL = "deepseek-v4-flash"  # what routed/code picks for the prompt below
PROMPT = "Write a python function that adds two integers."
WARMUP_S = 3.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _proxy(config: dict[str, Any], folder: Path, env: dict[str, str]) -> Iterator[str]:
    """A LiteLLM proxy process serving ``config``; yields its base URL."""
    path = folder / "config.yaml"
    path.write_text(render_config(config, Catalog.default()), "utf-8")
    port = _free_port()
    script = Path(sys.executable).parent / "litellm"
    log = (folder / "proxy.log").open("wb")
    process = subprocess.Popen(
        [str(script), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the proxy did not start; see {folder / 'proxy.log'}")
            try:
                with urllib.request.urlopen(f"{url}/health/liveliness", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


async def _load(
    client: httpx.AsyncClient, model: str, until: float, concurrency: int
) -> tuple[int, float]:
    """Chat completions, ``concurrency`` at a time, until ``until``; (answered, seconds)."""
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < until:
            response = await client.post("/v1/chat/completions", json=body)
            if response.status_code != 200:
                raise RuntimeError(f"{model}: HTTP {response.status_code}: {response.text}")
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - start


async def _round(
    sides: dict[str, tuple[str, str]], key: str, seconds: float, concurrency: int, first: str
) -> dict[str, tuple[int, float]]:
    """Both proxies under the same load at the same time; (answered, seconds) of each.

    Running the two side by side, rather than one after the other, exposes both to the
    same background load, which on a shared machine moves more than the difference.
    """
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = {
        side: httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60)
        for side, (url, _) in sides.items()
    }
    order = sorted(sides, key=lambda side: side != first)
    until = time.perf_counter() + seconds
    try:
        results = await asyncio.gather(
            *(_load(clients[side], sides[side][1], until, concurrency) for side in order)
        )
    finally:
        for client in clients.values():
            await client.aclose()
    return dict(zip(order, results, strict=True))


def main(rounds: int = 9, seconds: float = 8.0, concurrency: int = 10) -> None:
    catalog = Catalog.default()
    key = "sk-" + secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTEDLLM_")}
    env.update(
        GLOBAL_API_KEY="unused",
        LITELLM_MASTER_KEY=key,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_OFFLINE_MODE="true",
        LITELLM_TELEMETRY_DISABLED="true",
        LITELLM_DONT_SHOW_FEEDBACK_BOX="true",
    )
    with (
        Upstream({PLAIN_MODEL: ModelSpec(reply="def add(a, b): return a + b")}) as upstream,
        tempfile.TemporaryDirectory() as tmp,
    ):
        routed_config = proxy_config(catalog, base_url=upstream.base_url)
        settings = {k: v for k, v in routed_config["litellm_settings"].items() if k != "callbacks"}
        plain_config = {**routed_config, "litellm_settings": settings}
        (Path(tmp) / "routed").mkdir()
        (Path(tmp) / "plain").mkdir()
        ledger = Path(tmp) / "ledger.jsonl"
        with (
            _proxy(
                routed_config, Path(tmp) / "routed", {**env, "ROUTEDLLM_LEDGER": str(ledger)}
            ) as routed_url,
            _proxy(plain_config, Path(tmp) / "plain", env) as plain_url,
        ):
            sides = {"routed": (routed_url, ROUTED_GROUP), "plain": (plain_url, PLAIN_MODEL)}
            warm = asyncio.run(_round(sides, key, WARMUP_S, concurrency, "plain"))
            routed_requests = warm["routed"][0]
            print(
                f"LiteLLM proxy throughput, both proxies loaded at once, {concurrency} requests "
                f"in flight each, {rounds} rounds of {seconds:g} s (req/s)"
            )
            print(f"{'round':>5}  {'plain':>8}  {'routed':>8}  {'ratio':>6}")
            ratios = []
            for index in range(rounds):
                first = ("plain", "routed")[index % 2]
                answered = asyncio.run(_round(sides, key, seconds, concurrency, first))
                routed_requests += answered["routed"][0]
                rate = {side: done / took for side, (done, took) in answered.items()}
                ratio = rate["routed"] / rate["plain"]
                ratios.append(ratio)
                print(
                    f"{index + 1:>5}  {rate['plain']:>8.1f}  {rate['routed']:>8.1f}  {ratio:>6.3f}"
                )
        lines = sum(1 for _ in ledger.open("rb")) if ledger.exists() else 0
    print(
        f"routed/plain: median {statistics.median(ratios):.3f}, worst {min(ratios):.3f}, "
        f"mean {statistics.mean(ratios):.3f} +/- {statistics.stdev(ratios):.3f} (stdev); "
        f"{lines} ledger lines for {routed_requests} routed requests"
    )


if __name__ == "__main__":
    args = sys.argv[1:4]
    main(
        int(args[0]) if args else 9,
        float(args[1]) if len(args) > 1 else 8.0,
        int(args[2]) if len(args) > 2 else 10,
    )
