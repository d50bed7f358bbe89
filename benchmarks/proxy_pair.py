"""What routedllm's hook and logger cost a LiteLLM proxy: throughput with and without them.

Three real LiteLLM proxy processes run side by side on loopback in front of one stand-in
upstream (``routedllm.testing.Upstream``), from the same ``routedllm litellm-config``:

* ``routed``: the routedllm callback routes ``routed/code`` and writes a JSONL ledger line
  per attempt;
* ``plain``: no callback, asked for the concrete model the routed proxy picks;
* ``logger``: a no-op LiteLLM ``CustomLogger``, which shows what LiteLLM's own logging
  machinery costs any logger, apart from routedllm's work.

In each round all three are loaded at the same time for ``SECONDS``, each with
``CONCURRENCY`` requests in flight (whose clients start first rotates), so all see the
same background load. Per round: requests per second, and CPU milliseconds per request
of each proxy's process group (from /proc), which background load moves far less than
wall-clock throughput. Then the median, worst, mean and spread of the per-round ratios,
and the ratios pooled over all rounds (total requests over total time, total CPU over
total requests), which one unlucky round moves little.

Run: ``python benchmarks/proxy_pair.py [ROUNDS] [SECONDS] [CONCURRENCY]``
(Linux; needs ``routedllm[litellm-proxy]``; about three minutes with the defaults).
"""

from __future__ import annotations

import asyncio
import contextlib
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


@contextlib.contextmanager
def _proxy(config: dict[str, Any], folder: Path, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """A LiteLLM proxy process serving ``config``; yields its base URL and process group."""
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
        yield url, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


NULL_LOGGER = """\
from litellm.integrations.custom_logger import CustomLogger


class NullLogger(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        pass

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        pass


handler = NullLogger()
"""


def _cpu_s(group: int) -> float:
    """CPU seconds (user + system) used so far by the processes of a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


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
        contextlib.ExitStack() as stack,
    ):
        routed = proxy_config(catalog, base_url=upstream.base_url)
        settings = {k: v for k, v in routed["litellm_settings"].items() if k != "callbacks"}
        configs = {
            "plain": {**routed, "litellm_settings": settings},
            "logger": {**routed, "litellm_settings": {**settings, "callbacks": ["null.handler"]}},
            "routed": routed,
        }
        ledger = Path(tmp) / "ledger.jsonl"
        procs: dict[str, tuple[str, int]] = {}
        for side, config in configs.items():
            folder = Path(tmp) / side
            folder.mkdir()
            (folder / "null.py").write_text(NULL_LOGGER, "utf-8")
            side_env = {**env, "ROUTEDLLM_LEDGER": str(ledger)} if side == "routed" else env
            procs[side] = stack.enter_context(_proxy(config, folder, side_env))
        sides = {
            side: (url, ROUTED_GROUP if side == "routed" else PLAIN_MODEL)
            for side, (url, _) in procs.items()
        }
        warm = asyncio.run(_round(sides, key, WARMUP_S, concurrency, "plain"))
        routed_requests = warm["routed"][0]
        print(
            f"LiteLLM proxy: three proxies loaded at once, {concurrency} requests in flight "
            f"each, {rounds} rounds of {seconds:g} s. plain: no callback; logger: a no-op "
            "LiteLLM CustomLogger; routed: routedllm's hook and logger (routed/code, ledger)"
        )
        print(
            f"{'round':>5}  {'plain':>6}  {'logger':>6}  {'routed':>6}  req/s  "
            f"{'plain':>5}  {'logger':>6}  {'routed':>6}  CPU ms/req  "
            "throughput r/p  CPU p/r  CPU l/r"
        )
        ratios: list[float] = []
        totals = {side: [0, 0.0, 0.0] for side in procs}  # answered, seconds, CPU seconds
        cpu_ratios: list[float] = []
        cpu_vs_logger: list[float] = []
        for index in range(rounds):
            first = list(sides)[index % len(sides)]
            before = {side: _cpu_s(pid) for side, (_, pid) in procs.items()}
            answered = asyncio.run(_round(sides, key, seconds, concurrency, first))
            cpu = {
                side: (_cpu_s(pid) - before[side]) * 1000 / max(answered[side][0], 1)
                for side, (_, pid) in procs.items()
            }
            routed_requests += answered["routed"][0]
            for side, (done, took) in answered.items():
                totals[side][0] += done
                totals[side][1] += took
                totals[side][2] += cpu[side] * done / 1000
            rate = {side: done / took for side, (done, took) in answered.items()}
            ratios.append(rate["routed"] / rate["plain"])
            cpu_ratios.append(cpu["plain"] / cpu["routed"])
            cpu_vs_logger.append(cpu["logger"] / cpu["routed"])
            print(
                f"{index + 1:>5}  {rate['plain']:>6.1f}  {rate['logger']:>6.1f}  "
                f"{rate['routed']:>6.1f}         {cpu['plain']:>5.1f}  {cpu['logger']:>6.1f}  "
                f"{cpu['routed']:>6.1f}              {ratios[-1]:>6.3f}   "
                f"{cpu_ratios[-1]:>6.3f}   {cpu_vs_logger[-1]:>6.3f}"
            )
        lines = sum(1 for _ in ledger.open("rb")) if ledger.exists() else 0

    def spread(name: str, values: list[float]) -> str:
        return (
            f"{name}: median {statistics.median(values):.3f}, worst {min(values):.3f}, "
            f"mean {statistics.mean(values):.3f} +/- {statistics.stdev(values):.3f} (stdev)"
        )

    print(spread("throughput routed/plain", ratios))
    print(spread("CPU per request plain/routed", cpu_ratios))
    print(spread("CPU per request logger/routed", cpu_vs_logger))
    # pooled over all rounds: one figure per side, which a single noisy round moves little
    rate = {side: done / took for side, (done, took, _) in totals.items()}
    cpu_ms = {side: 1000 * used / max(done, 1) for side, (done, _, used) in totals.items()}
    print(
        f"pooled over {rounds} rounds: throughput routed/plain "
        f"{rate['routed'] / rate['plain']:.3f}, CPU per request plain/routed "
        f"{cpu_ms['plain'] / cpu_ms['routed']:.3f}, logger/routed "
        f"{cpu_ms['logger'] / cpu_ms['routed']:.3f}"
    )
    print(f"{lines} ledger lines for {routed_requests} routed requests")


if __name__ == "__main__":
    args = sys.argv[1:4]
    main(
        int(args[0]) if args else 9,
        float(args[1]) if len(args) > 1 else 8.0,
        int(args[2]) if len(args) > 2 else 10,
    )
