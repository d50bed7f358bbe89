"""What routedllm's hook and logger cost a LiteLLM proxy: throughput with and without them.

Two real LiteLLM proxy processes run side by side on loopback in front of one stand-in
upstream (``routedllm.testing.Upstream``): one from ``routedllm litellm-config`` (the
routedllm callback routes ``routed/code`` and writes a JSONL ledger line per attempt), one
from the same config with no callback, asked for the concrete model the routed proxy
picks. Each round sends the same burst (``REQUESTS`` chat completions, ``CONCURRENCY`` at
a time) to each proxy, in alternating order; the table gives requests per second per
round and the routed/plain ratio, then the median and worst ratio over the rounds.

Run: ``python benchmarks/proxy_pair.py [ROUNDS] [REQUESTS] [CONCURRENCY]``
(needs ``routedllm[litellm-proxy]``; about a minute with the defaults).
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
WARMUP = 30


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


async def _burst(url: str, key: str, model: str, requests: int, concurrency: int) -> float:
    """Send ``requests`` chat completions, ``concurrency`` at a time; requests per second."""
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as c:
        left = requests

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                response = await c.post("/v1/chat/completions", json=body)
                if response.status_code != 200:
                    raise RuntimeError(f"{model}: HTTP {response.status_code}: {response.text}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - start)


def main(rounds: int = 7, requests: int = 300, concurrency: int = 20) -> None:
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
            for url, model in sides.values():
                asyncio.run(_burst(url, key, model, WARMUP, concurrency))
            print(
                f"LiteLLM proxy throughput, {requests} requests x {concurrency} concurrent, "
                f"{rounds} interleaved rounds (req/s)"
            )
            print(f"{'round':>5}  {'plain':>8}  {'routed':>8}  {'ratio':>6}")
            ratios = []
            for index in range(rounds):
                order = ("plain", "routed") if index % 2 == 0 else ("routed", "plain")
                rate = {}
                for side in order:
                    url, model = sides[side]
                    rate[side] = asyncio.run(_burst(url, key, model, requests, concurrency))
                ratio = rate["routed"] / rate["plain"]
                ratios.append(ratio)
                print(
                    f"{index + 1:>5}  {rate['plain']:>8.1f}  {rate['routed']:>8.1f}  {ratio:>6.3f}"
                )
        lines = sum(1 for _ in ledger.open("rb")) if ledger.exists() else 0
    print(
        f"routed/plain: median {statistics.median(ratios):.3f}, worst {min(ratios):.3f}, "
        f"mean {statistics.mean(ratios):.3f} +/- {statistics.stdev(ratios):.3f} (stdev); "
        f"ledger lines {lines} for {WARMUP + rounds * requests} routed requests"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
