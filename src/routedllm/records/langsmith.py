"""LangSmith runs with routedllm's cost, the routed tags and the decision, for LangChain runs.

LangSmith shows a run's cost from ``input_cost``/``output_cost``/``total_cost`` in the run's
``extra.metadata.usage_metadata``, or else from its workspace price map. Putting float costs
on ``AIMessage.usage_metadata`` would get them there too, but langchain-core 1.8's
``add_usage`` rejects floats, which breaks ``UsageMetadataCallbackHandler`` and chunk
addition. :class:`LangSmithCostTracer` adds the costs to the run it sends instead, leaving
messages alone; :func:`trace_costs` makes it the tracer LangChain uses, the one switch.
It imports LangSmith's client (about half a second), so it is not imported by ``routedllm``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.tracers.context import tracing_v2_callback_var
from langchain_core.tracers.langchain import LangChainTracer
from langchain_core.tracers.schemas import Run

from routedllm.core.catalog import Catalog
from routedllm.core.pricing import Cost, call_cost
from routedllm.records.routed import RoutedCall
from routedllm.records.schema import Usage, resolve_model
from routedllm.records.telemetry import langsmith_cost_fields

TAG_PREFIX = "routedllm:"
"""Run tags routedllm adds: ``routedllm:code`` per routed task tag, ``routedllm:fallback``."""
METADATA_KEY = "routedllm"
"""The run metadata key holding the decision summary (model, requested model, policy...)."""


class LangSmithCostTracer(LangChainTracer):
    """A ``LangChainTracer`` that adds routedllm's facts to each chat model run it sends.

    On a finished chat model run: ``input_cost``/``output_cost``/``total_cost`` in the
    run's ``usage_metadata``; for a RoutedChatModel run also the answering model as
    ``ls_model_name``, one ``routedllm:<tag>`` run tag per task tag (``routedllm:fallback``
    when a fallback answered) and the decision summary under ``metadata["routedllm"]``.
    A routed run's cost is the router's own figure (every attempt's); a plain model's is
    priced with ``catalog`` from the model the response names
    (``response_metadata["model_name"]``, else ``ls_model_name``). A model the catalog
    cannot price gets no cost fields, so LangSmith falls back to its own price map.

    Use :func:`trace_costs` to make it the tracer ``LANGSMITH_TRACING=true`` would create,
    or pass it in ``config={"callbacks": [...]}`` (LangChain then adds no second tracer).
    Other keyword arguments go to ``LangChainTracer`` (``project_name``, ``client``...).
    """

    def __init__(self, catalog: Catalog | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._catalog = catalog

    @property
    def catalog(self) -> Catalog:
        """The catalog that prices plain runs (default: ``Catalog.from_env()``, loaded once)."""
        if self._catalog is None:
            self._catalog = Catalog.from_env()
        return self._catalog

    def copy_with_metadata_defaults(
        self, *, metadata: Mapping[str, str] | None = None, tags: list[str] | None = None
    ) -> LangChainTracer:
        # LangChain copies the tracer for inherited metadata; the copy keeps the catalog.
        copy = super().copy_with_metadata_defaults(metadata=metadata, tags=tags)
        if isinstance(copy, LangSmithCostTracer):
            copy._catalog = self._catalog
        return copy

    # LangChainTracer declares this a staticmethod; the override needs self.catalog.
    def _update_run_single(self, run: Run) -> None:  # type: ignore[override]
        metadata = run.extra.get("metadata")
        if run.run_type == "llm" and isinstance(metadata, dict):
            routed = _routed_call(run)
            if routed is not None:
                _add_routing(run, metadata, routed)
            usage = metadata.get("usage_metadata")
            if isinstance(usage, Mapping):
                fields = (
                    routed_cost_fields(routed)
                    if routed is not None
                    else self.cost_fields(run, usage)
                )
                metadata["usage_metadata"] = {**usage, **fields}
        super()._update_run_single(run)

    def cost_fields(self, run: Run, usage: Mapping[str, Any]) -> dict[str, float]:
        """The LangSmith cost fields for a finished plain chat model run; {} when unknown."""
        card = resolve_model(self.catalog, _model_name(run))
        tokens = Usage.from_usage_metadata(usage)
        if card is None or tokens is None:
            return {}
        return langsmith_cost_fields(
            call_cost(card, tokens.input_tokens, tokens.output_tokens, tokens.cached_input_tokens)
        )


def trace_costs(catalog: Catalog | None = None, **kwargs: Any) -> LangSmithCostTracer:
    """Trace every LangChain run in this context to LangSmith with routedllm's cost.

    The one switch: call it once at start-up (it turns LangSmith tracing on, like
    ``LANGSMITH_TRACING=true``). It sets the tracer LangChain's callback setup uses when
    tracing is on (``tracing_v2_callback_var``, as ``tracing_v2_enabled()`` does), so no
    callbacks need passing. Context-local: it applies to this thread or task and to what
    it starts with a copy of its context (asyncio tasks, LangChain's executors); a thread
    started bare gets LangChain's plain tracer. Keyword arguments go to
    :class:`LangSmithCostTracer` (``project_name``, ``client``...). Returns the tracer
    (``tracer.wait_for_futures()`` before exit; ``tracing_v2_callback_var.set(None)`` undoes).
    """
    tracer = LangSmithCostTracer(catalog, **kwargs)
    tracing_v2_callback_var.set(tracer)
    return tracer


def routed_cost_fields(call: RoutedCall) -> dict[str, float]:
    """LangSmith's cost fields for a routed call: the router's figure, every attempt's."""
    known = [a for a in call.attempts if a.input_cost_usd is not None]
    if call.cost_usd is None or len(known) != len(call.attempts):
        return {}
    cost = Cost(
        sum(a.input_cost_usd or 0.0 for a in known), sum(a.output_cost_usd or 0.0 for a in known)
    )
    return {**langsmith_cost_fields(cost), "total_cost": call.cost_usd}


def _add_routing(run: Run, metadata: dict[str, Any], call: RoutedCall) -> None:
    """The answering model, the routed tags and the decision summary, on the run."""
    if call.model:
        metadata["ls_model_name"] = call.model
    answer = call.answer
    tags = [f"{TAG_PREFIX}{t}" for t in call.tags]
    if answer is not None and answer.attempt > 1:
        tags.append(f"{TAG_PREFIX}fallback")
    run.tags = sorted({*(run.tags or ()), *tags})
    metadata[METADATA_KEY] = {
        "model": call.model,
        "requested_model": call.requested_model,
        "served_model": call.served_model,
        "tags": list(call.tags),
        "policy": call.policy,
        "attempts": [f"{a.model}:{a.outcome}" for a in call.attempts],
        "cost_usd": call.cost_usd,
        "estimated_cost_usd": call.estimated_cost_usd,
        "decision": call.decision.model_dump(mode="json"),
    }


def _routed_call(run: Run) -> RoutedCall | None:
    """The RoutedCall a RoutedChatModel run carries in its serialized output, else None."""
    try:
        message = run.outputs["generations"][0][0]["message"]  # type: ignore[index]
        return RoutedCall.from_metadata(message["kwargs"]["response_metadata"].get("routedllm"))
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


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
