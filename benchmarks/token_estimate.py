"""Token-count estimate against a real tokenizer: how far ``get_num_tokens_from_messages``
of a ``RoutedChatModel`` (routedllm's offline estimate) is from tiktoken's counts.

Counts every text-only row of ``tests/data/tags_labelled.jsonl`` twice with the same message
overheads, once with the estimate and once with a tiktoken encoding, and prints the ratio
estimate / tiktoken per expected primary tag: median, 10th and 90th percentile.

tiktoken downloads its encoding files on first use; offline, point ``--cache-dir`` at a
folder that holds them (LiteLLM ships cl100k_base in
``litellm/litellm_core_utils/tokenizers``, the default when LiteLLM is installed).

Run: ``python benchmarks/token_estimate.py [--encoding cl100k_base] [--cache-dir DIR]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
from pathlib import Path

from langchain_core.messages import convert_to_messages

from routedllm.adapters.langchain.tokens import count_message_tokens

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "tags_labelled.jsonl"


def _litellm_tokenizers() -> str | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
    return str(folder) if folder.is_dir() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoding", default="cl100k_base")
    parser.add_argument("--cache-dir", default=_litellm_tokenizers())
    parser.add_argument("data", nargs="?", default=str(DATA))
    args = parser.parse_args()
    if args.cache_dir:
        os.environ["TIKTOKEN_CACHE_DIR"] = args.cache_dir
    import tiktoken  # after TIKTOKEN_CACHE_DIR is set

    encoding = tiktoken.get_encoding(args.encoding)
    ratios: dict[str, list[float]] = {}
    for line in Path(args.data).read_text("utf-8").splitlines():
        row = json.loads(line)
        messages = convert_to_messages(row["messages"])
        if any(not isinstance(m.content, str) for m in messages):
            continue  # images: a fixed figure on both sides
        estimate = count_message_tokens(messages)
        exact = count_message_tokens(messages, count_text=lambda t: len(encoding.encode(t)))
        tag = (row.get("expected") or ["general"])[0]
        for key in (tag, "all"):
            ratios.setdefault(key, []).append(estimate / exact)
    print(f"estimate / {args.encoding} per prompt ({args.data})")
    print(f"{'rows':15s} {'n':>4s} {'median':>7s} {'p10':>6s} {'p90':>6s}")
    for key, values in sorted(ratios.items(), key=lambda kv: (kv[0] != "all", kv[0])):
        values.sort()
        print(
            f"{key:15s} {len(values):4d} {statistics.median(values):7.2f} "
            f"{values[len(values) // 10]:6.2f} {values[len(values) * 9 // 10]:6.2f}"
        )


if __name__ == "__main__":
    main()
