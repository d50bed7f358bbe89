"""Opt-in: LangSmith cost columns filled with routedllm's catalog prices for LangChain runs.

LangSmith shows a run's cost from ``input_cost``/``output_cost``/``total_cost`` in the run's
``extra.metadata.usage_metadata``, or else from its workspace price map. Putting float costs
on ``AIMessage.usage_metadata`` would get them there too, but langchain-core 1.8's
``add_usage`` rejects floats, which breaks ``UsageMetadataCallbackHandler`` and chunk
addition. This tracer adds the costs to the run it sends instead, leaving messages alone.
It imports LangSmith's client (about half a second), so it is not imported by ``routedllm``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.tracers.langchain import LangChainTracer
from langchain_core.tracers.schemas import Run

from routedllm.core.catalog import Catalog
from routedllm.core.pricing import call_cost
from routedllm.records.schema import Usage, resolve_model
from routedllm.records.telemetry import langsmith_cost_fields


class LangSmithCostTracer(LangChainTracer):
    """A ``LangChainTracer`` that adds each chat model run's USD cost before sending it.

    Use it in place of the tracer ``LANGSMITH_TRACING=true`` creates: pass it in
    ``config={"callbacks": [...]}`` and LangChain adds no second tracer. The model priced
    is the one the response names (``response_metadata["model_name"]``, resolved with
    :func:`routedllm.records.schema.resolve_model`), else ``ls_model_name``. A model the catalog
    cannot price gets no cost fields, so LangSmith falls back to its own price map.
    Other keyword arguments go to ``LangChainTracer`` (``project_name``, ``client``...).
    """

    def __init__(self, catalog: Catalog | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.catalog = Catalog.from_env() if catalog is None else catalog

    # LangChainTracer declares this a staticmethod; the override needs self.catalog.
    def _update_run_single(self, run: Run) -> None:  # type: ignore[override]
        metadata = run.extra.get("metadata")
        if run.run_type == "llm" and isinstance(metadata, dict):
            usage = metadata.get("usage_metadata")
            if isinstance(usage, Mapping):
                metadata["usage_metadata"] = {**usage, **self.cost_fields(run, usage)}
        super()._update_run_single(run)

    def cost_fields(self, run: Run, usage: Mapping[str, Any]) -> dict[str, float]:
        """The LangSmith cost fields for a finished chat model run; {} when unknown."""
        card = resolve_model(self.catalog, _model_name(run))
        tokens = Usage.from_usage_metadata(usage)
        if card is None or tokens is None:
            return {}
        return langsmith_cost_fields(
            call_cost(card, tokens.input_tokens, tokens.output_tokens, tokens.cached_input_tokens)
        )


def _model_name(run: Run) -> str | None:
    """The answering model from the serialized output, else the model the run asked for."""
    try:
        message = run.outputs["generations"][0][0]["message"]  # type: ignore[index]
        name = message["kwargs"]["response_metadata"]["model_name"]
        if isinstance(name, str) and name:
            return name
    except (KeyError, IndexError, TypeError):
        pass
    metadata = run.extra.get("metadata") or {}
    params = run.extra.get("invocation_params") or {}
    name = metadata.get("ls_model_name") or params.get("model") or params.get("model_name")
    return name if isinstance(name, str) else None
