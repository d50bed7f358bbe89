"""A routedllm callback for the LiteLLM proxy with your own policy and sinks.

The generated config names ``routedllm.adapters.litellm.handler``, configured by environment
variables. To configure it in Python instead, keep this file next to ``config.yaml`` and
name it in the config (LiteLLM loads ``<config dir>/custom_handler.py`` by path)::

    litellm_settings:
      callbacks: ["custom_handler.handler"]

LiteLLM does not put the config's folder on ``sys.path``: import from installed packages
only (``routedllm``, ``opentelemetry``, ...), not from other files here.
"""

import os

from routedllm import Catalog, Policy
from routedllm.adapters.litellm import LiteLLMHandler

handler = LiteLLMHandler(
    Catalog.from_env(),  # the packaged catalog, merged with $ROUTEDLLM_CATALOG if set
    policy=Policy(preset="value", quality_gap=3.0),
    ledger_path=os.environ.get("ROUTEDLLM_LEDGER", "routedllm-ledger.jsonl"),
    # sinks=[OTelSink()],  # with `pip install 'routedllm[otel]'`
)
