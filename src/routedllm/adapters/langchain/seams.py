"""The two places where RoutedChatModel reaches past LangChain's chat-model hooks.

A partner chat model overrides ``_generate``/``_stream`` and their async twins, and so does
RoutedChatModel. Routing needs two things those hooks do not hand over; each is covered
by a test (tests/test_langchain_seams.py) so that a LangChain release that changes it
fails loudly instead of routing silently on less information.

1. **The run's tags and metadata in** ``_stream``/``_astream``. ``BaseChatModel.stream``
   and ``astream`` (and the implicit streaming of ``astream_events``) call ``_stream``
   without the run manager, so a call's ``config={"tags": [...], "metadata": {...}}`` would
   not reach routing. :class:`RunContext`, an inline callback handler on the model, keeps
   what ``on_chat_model_start`` receives in a context variable; the hook reads it once.
   ``_generate`` gets the run manager and does not need it.
2. **The model that answered, in traces.** The run starts before routing, as model
   ``auto``. The answer's ``generation_info["lc_gateway_metadata"] = {"model": ...}`` is
   LangChain's contract for a gateway that resolves the model: its tracers promote it to
   the run's ``ls_model_name`` when the run ends and keep it out of ``response_metadata``
   (:func:`traced_as`).

Once a hook holds the run manager, :func:`detach` drops RunContext from that run's
handlers: it needs none of the run's later events, and a run left with no handler skips
LangChain's dispatch of each one (its end, every streamed token).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.callbacks.manager import BaseRunManager

GATEWAY_METADATA = "lc_gateway_metadata"
"""LangChain's generation_info key for the model a gateway resolved for the run."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a chat-model run started with: its id, tags and metadata."""

    run_id: UUID | None
    parent_run_id: UUID | None
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


_CURRENT: ContextVar[RunInfo | None] = ContextVar("routedllm_run", default=None)


class RunContext(BaseCallbackHandler):
    """Keeps the starting chat-model run's tags and metadata for the hook that follows.

    Inline (``run_inline = True``), so it runs in the caller's context, thread or task, just
    before LangChain calls the hook; :func:`take_run` reads and clears it there.
    """

    run_inline = True
    raise_error = False
    # The run's other events (a stream's every token among them) need nothing from it:
    # LangChain skips an ignoring handler before its costlier dispatch.
    ignore_llm = True
    ignore_retry = True
    ignore_custom_event = True

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _CURRENT.set(RunInfo(run_id, parent_run_id, tuple(tags or ()), dict(metadata or {})))

    def __repr__(self) -> str:
        return "RunContext()"


def take_run() -> RunInfo | None:
    """The run that just started in this context, cleared so it is read once."""
    info = _CURRENT.get()
    if info is not None:
        _CURRENT.set(None)
    return info


def detach(run: BaseRunManager) -> None:
    """Drop RunContext from the handlers of a run the hook already holds (the run alone:
    the model's callbacks keep it for the next call)."""
    handlers = run.handlers
    if any(type(h) is RunContext for h in handlers):
        run.handlers = [h for h in handlers if type(h) is not RunContext]


def traced_as(info: dict[str, Any] | None, model: str) -> dict[str, Any]:
    """Generation info telling LangChain's tracers which model answered the run."""
    out = {} if info is None else info
    out[GATEWAY_METADATA] = {"model": model}
    return out
