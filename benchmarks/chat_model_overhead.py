"""What routing adds to a LangChain call: RoutedChatModel against a pinned BaseChatOpenAI.

Both talk to the same in-process stand-in gateway (an ``httpx2.MockTransport`` returning a
fixed completion), so the difference is the router's own work: routing the call, checking
capabilities, recording attempts and cost. Prints the median and p99 per call in
microseconds for invoke and stream. Run: ``python benchmarks/chat_model_overhead.py [N]``.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from collections.abc import Callable

import httpx2
from langchain_openai.chat_models.base import BaseChatOpenAI

from routedllm.adapters.langchain.chat_model import RoutedChatModel

PROMPT = "Summarise the trade-offs between event sourcing and CRUD with an audit table. " * 20
_USAGE = {
    "prompt_tokens": 420,
    "completion_tokens": 9,
    "total_tokens": 429,
    "prompt_tokens_details": {"cached_tokens": 0},
}


def _handler(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    base = {"id": "chatcmpl-1", "created": 1, "model": body["model"]}
    if not body.get("stream"):
        return httpx2.Response(
            200,
            json={
                **base,
                "object": "chat.completion",
                "usage": _USAGE,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "Event sourcing ..."},
                    }
                ],
            },
        )
    deltas = [{"role": "assistant", "content": ""}, {"content": "Event "}, {"content": "sourcing"}]
    events = [
        {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": d, "finish_reason": None}],
        }
        for d in deltas
    ]
    events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": _USAGE})
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return httpx2.Response(
        200, content=text.encode(), headers={"content-type": "text/event-stream"}
    )


def _clients() -> dict[str, object]:
    return {"http_client": httpx2.Client(transport=httpx2.MockTransport(_handler))}


def main(n: int = 2000, rounds: int = 10) -> None:
    routed = RoutedChatModel(api_key="bench", **_clients())
    model = routed.invoke(PROMPT).response_metadata["model_name"]
    plain = BaseChatOpenAI(
        model=model,
        api_key="bench",
        base_url=routed.openai_api_base,
        stream_usage=True,
        max_retries=0,
        **_clients(),
    )
    calls: dict[str, Callable[[], object]] = {
        "BaseChatOpenAI.invoke": lambda: plain.invoke(PROMPT),
        "RoutedChatModel.invoke": lambda: routed.invoke(PROMPT),
        "BaseChatOpenAI.stream": lambda: list(plain.stream(PROMPT)),
        "RoutedChatModel.stream": lambda: list(routed.stream(PROMPT)),
    }
    times: dict[str, list[float]] = {label: [] for label in calls}
    for call in calls.values():  # warm up
        for _ in range(100):
            call()
    for _ in range(rounds):  # interleaved, so that drift on the machine hits all alike
        for label, call in calls.items():
            gc.collect()
            for _ in range(n // rounds):
                start = time.perf_counter()
                call()
                times[label].append((time.perf_counter() - start) * 1e6)
    print(
        f"{n} calls each, prompt ~{len(PROMPT) // 4} tokens, routed to {model}; "
        "microseconds per call"
    )
    print(f"{'':28}{'median':>10}{'p99':>10}")
    for label, values in times.items():
        values.sort()
        print(f"{label:28}{statistics.median(values):10.0f}{values[int(len(values) * 0.99)]:10.0f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
