"""RoutedChatModel: a LangChain chat model that routes every call through the gateway.

A drop-in for ``ChatOpenAI``, built the way LangChain's partner packages are: it overrides
the chat-model hooks (``_generate``, ``_agenerate``, ``_stream``, ``_astream``) and none of
the public Runnable methods. Each hook translates the call (messages, the run's tags and
metadata, the call's keyword arguments) into a routedllm ``Request``, decides, and drives
the attempt loop of :mod:`routedllm.reliability.attempts` over the OpenAI-compatible base
class, one request per attempt. The call's :class:`~routedllm.records.routed.RoutedCall`
rides in ``response_metadata["routedllm"]`` of the answer (or ``.call`` of the error).

Where the hooks do not hand routing what it needs (the run's tags inside ``_stream``, the
answering model in traces), :mod:`routedllm.adapters.langchain.seams` says how, in one
place.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, Self

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_messages
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import BaseTool
from langchain_core.utils.utils import LC_ID_PREFIX
from langchain_openai.chat_models.base import BaseChatOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator, model_validator

from routedllm.adapters.langchain.profile import routed_profile
from routedllm.adapters.langchain.seams import RunContext, detach, take_run, traced_as
from routedllm.adapters.langchain.tokens import count_message_tokens, estimate_text_tokens
from routedllm.core.catalog import Catalog
from routedllm.core.decision import Decision, Policy, Router, decide
from routedllm.core.errors import (
    BudgetExceeded,
    InvalidRequestError,
    NoEligibleModelError,
    RoutedLLMError,
    StreamInterruptedError,
)
from routedllm.core.requests import (
    POLICY_KEY,
    TAGS_KEY,
    Request,
    call_policy,
    input_token_bound,
    message_payloads,
    output_limit,
    request_from_call,
)
from routedllm.records.routed import (
    RoutedCall,
    attach,
    close_stream,
    stream_ended,
    stream_opened,
)
from routedllm.records.schema import (
    DEFAULT_BASELINE,
    Usage,
    read_openai_usage,
    read_usage_metadata,
)
from routedllm.reliability.attempts import Attempt, AttemptLoop, CapabilityMemory, Conversation
from routedllm.reliability.breaker import CircuitBreaker
from routedllm.reliability.budget import Budget
from routedllm.reliability.deadlines import Flight, enter, flight, install, leave, resumed
from routedllm.reliability.failures import (
    MalformedResponseError,
    UpstreamErrorBody,
    completion_problem,
)
from routedllm.reliability.secrets import Scrubber

AUTO = "auto"
"""The default ``model``: route every call. Any other model id pins the model."""
_CHOICE = "_routedllm_choice"  # marks a streamed chunk that carried a choice (removed on the way)
STICKY_KEY = "routedllm_sticky_model"
"""Call kwarg: keep the call on this model while routedllm's decision still lists it (it is
ranked first, the rest stay its fallbacks); ignored when the call is pinned."""
_ROUTING_KWARGS = (TAGS_KEY, POLICY_KEY, STICKY_KEY)
_USAGE_PROBLEM = "_routedllm_usage_problem"  # why a response's usage was dropped (removed)
_CREDENTIAL_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization"})


def default_breaker(retry_after_cap_s: float = 30.0, wait_s: float = 10.0) -> CircuitBreaker:
    """The circuit breaker a RoutedChatModel gets when none is given.

    A model is cooled down for 30 s (doubling up to 5 min while its probes fail) when at
    least half of at least 20 calls within 60 s failed: a failure share rather than a
    count, so a busy model with a few faults stays in use. A Retry-After longer than a call
    waits (``wait_s``, the model's ``max_wait_s``) cools the model at once for that long,
    up to ``retry_after_cap_s`` (0 ignores Retry-After); a shorter one throttles only the
    request that got it, and that call waits it out and tries the model again.
    """
    return CircuitBreaker(
        failures=None,
        failure_rate=0.5,
        min_calls=20,
        window_s=60.0,
        cooldown_s=30.0,
        max_cooldown_s=300.0,
        honour_retry_after=retry_after_cap_s > 0,
        max_retry_after_s=retry_after_cap_s or 1.0,
        min_retry_after_s=wait_s,
    )


class RoutedChatModel(BaseChatOpenAI):
    """A chat model that picks the best-value gateway model for each call.

    ``RoutedChatModel()`` reads the key from ``GLOBAL_API_KEY`` and routes every call with
    the packaged catalog (or ``$ROUTEDLLM_CATALOG``) and the default ``value`` policy::

        llm = RoutedChatModel()
        reply = llm.invoke("Summarise this ...", config={"tags": ["summarization"]})
        reply.response_metadata["model_name"]      # the model that answered
        RoutedCall.model_validate(reply.response_metadata["routedllm"])  # the record

    Task tags come from the run's tags (only vocabulary tags count, so chains' own tags do
    no harm) or from ``routedllm_tags`` (a call kwarg or config metadata; every name must be
    a known tag). The policy can be overridden per call with ``routedllm_policy``.

    ``breaker`` (default: :func:`default_breaker`; ``None``: none) keeps failing models
    out; ``budget`` (:class:`~routedllm.reliability.budget.LocalBudget` or
    :class:`~routedllm.reliability.budget.RedisBudget`) enforces spend limits;
    ``sticky=True`` keeps each conversation (run metadata ``thread_id``, which LangGraph
    sets, or ``conversation_id``) on its model.
    """

    model_name: str = Field(default=AUTO, alias="model")
    """``"auto"`` routes each call; another id pins every call to that model."""
    openai_api_key: SecretStr | None = Field(default=None, alias="api_key")
    """Gateway key; default: the catalog's key variable (``GLOBAL_API_KEY``)."""
    openai_api_base: str | None = Field(default=None, alias="base_url")
    """Any OpenAI-compatible base URL; default: the catalog's gateway URL."""
    stream_usage: bool | None = True
    max_retries: int | None = 0
    """SDK retries of the same model before falling back (0: fall back at once)."""
    use_responses_api: bool | None = False
    catalog: Catalog = Field(default_factory=Catalog.from_env, exclude=True)
    policy: Policy = Field(default_factory=Policy, exclude=True)
    retry_after_cap_s: float = Field(default=30.0, ge=0)
    """Longest a Retry-After cools a model down in the default breaker (0: ignore it)."""
    breaker: CircuitBreaker | None = Field(default=None, exclude=True)
    """Model health shared by this model's calls; not given: :func:`default_breaker`;
    ``None``: no breaker."""
    budget: Budget | None = Field(default=None, exclude=True)
    """Spend limits: each attempt holds its estimate before it is sent (None: no limits)."""
    sticky: bool = False
    """Keep a conversation's follow-up turns on the model that answered the last one."""
    sticky_conversations: int = Field(default=10_000, ge=1)
    """How many conversations sticky routing remembers (least recently used dropped)."""
    baseline_model: str | None = DEFAULT_BASELINE
    """The model each attempt's savings are measured against (None: no comparison)."""
    rate_limit_retries: int = Field(default=1, ge=0)
    """Tries of the same model again after a 429 (waiting its Retry-After) before falling
    back to the next, usually dearer, model."""
    max_wait_s: float = Field(default=10.0, ge=0)
    """Longest a call waits, in all, on Retry-After and on models cooling down; past it
    the call falls back (or fails) instead of waiting."""
    attempt_timeout_s: float | None = Field(default=None, gt=0)
    """Total time one attempt may take (connect, first byte, the whole body or stream)
    before the call falls back. None: ``timeout`` (when it is a number) bounds an attempt
    until its first chunk (a plain call: its whole response), and a stream that has
    started is bounded only by ``call_timeout_s`` (a long answer is not a fault)."""
    call_timeout_s: float | None = Field(default=None, gt=0)
    """Total time a call may take, fallbacks and waits included; None: no bound beyond
    each attempt's."""

    learned_router: Any = Field(default=None, exclude=True)
    """A learned router (:class:`routedllm.learning.LearnedRouter` or the path of its JSON,
    written by ``routedllm train``): its per-prompt predictions replace catalog scores."""

    _router: Router = PrivateAttr()
    _learned: CapabilityMemory = PrivateAttr(default_factory=CapabilityMemory)
    _sticky_models: OrderedDict[str, str] = PrivateAttr(default_factory=OrderedDict)
    _sticky_lock: Any = PrivateAttr(default_factory=threading.Lock)
    _tool_names: _ToolNames = PrivateAttr(default_factory=lambda: _ToolNames())

    @field_validator("catalog", mode="before")
    @classmethod
    def _catalog_from_data(cls, value: Any) -> Any:
        """A catalog given as data (e.g. by ``loads``) is built with ``Catalog.from_dict``."""
        if isinstance(value, Mapping):
            return Catalog.from_dict(value, origin="<catalog data given to RoutedChatModel>")
        return value

    @property
    def _llm_type(self) -> str:
        return "routedllm-chat"

    def _resolve_model_profile(self) -> ModelProfile | None:
        """What routing can serve, from the catalog (:mod:`.profile`), over
        langchain-openai's profile for a pinned model's name (if it has one)."""
        profile = routed_profile(self.catalog, self.policy, self.model_name, AUTO)
        if self.model_name == AUTO:
            return profile
        known = super()._resolve_model_profile()
        return {**(known or {}), **(profile or {})} or None

    @model_validator(mode="after")
    def validate_environment(self) -> Self:
        """Resolve gateway URL and key, and build the OpenAI client pair.

        Named like the parent's validator so that it replaces it: the parent reads
        ``OPENAI_*`` variables, which must not leak into gateway calls.
        """
        if self.n is not None and (self.n < 1 or (self.n > 1 and self.streaming)):
            raise ValueError("n must be at least 1, and 1 when streaming")
        output_limit(self.max_tokens)  # the per-call rule, at construction
        if self.learned_router is not None:
            from routedllm.learning.model import load_learned

            self.learned_router = load_learned(self.learned_router)
        self._router = Router(self.catalog, self.policy, self.learned_router)
        self._add_run_context()
        if "breaker" not in self.model_fields_set:
            self.breaker = default_breaker(self.retry_after_cap_s, self.max_wait_s)
        gateway = self.catalog.info.gateway
        if self.openai_api_base is None:
            self.openai_api_base = gateway.base_url
        if self.openai_api_key is None and os.environ.get(gateway.api_key_env):
            self.openai_api_key = SecretStr(os.environ[gateway.api_key_env])
        if self.openai_api_key is None:
            return self  # no clients; a call raises a clear error
        params: dict[str, Any] = {
            "api_key": self.openai_api_key.get_secret_value(),
            "base_url": self.openai_api_base,
            "timeout": self.request_timeout,
            "max_retries": self.max_retries,
            "default_headers": self.default_headers,
            "default_query": self.default_query,
        }
        params = {k: v for k, v in params.items() if v is not None}  # None timeout = no timeout
        # The deadline hooks (reliability/deadlines.py) go on the HTTP clients: a given one
        # gets them added, else the SDK's default client is built with them.
        if self.client is None:
            http = self.http_client or openai.DefaultHttpxClient()
            self.root_client = _GatewayClient(**params, http_client=install(http, is_async=False))
            self.client = self.root_client.chat.completions
        if self.async_client is None:
            ahttp = self.http_async_client or openai.DefaultAsyncHttpxClient()
            self.root_async_client = _AsyncGatewayClient(
                **params, http_client=install(ahttp, is_async=True)
            )
            self.async_client = self.root_async_client.chat.completions
        return self

    def _add_run_context(self) -> None:
        """Put the :class:`~routedllm.adapters.langchain.seams.RunContext` handler among
        the model's own callbacks (once), so ``_stream`` sees the run's tags."""
        callbacks = self.callbacks
        if callbacks is None:
            self.callbacks = [RunContext()]
        elif isinstance(callbacks, list):
            if not any(isinstance(h, RunContext) for h in callbacks):
                self.callbacks = [*callbacks, RunContext()]
        elif not any(isinstance(h, RunContext) for h in callbacks.handlers):
            callbacks.add_handler(RunContext(), inherit=False)

    # -- routing: one Request, one Decision, one attempt loop per call ----------------------
    def route(
        self,
        messages: Sequence[Any],
        *,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Decision:
        """The decision this model would make for a call now, without sending anything."""
        request, policy, _, _ = self._request(messages, tags, metadata or {}, kwargs)
        unavailable = self.breaker.unavailable() if self.breaker is not None else {}
        learned = self._memory().unavailable(request.require | policy.require)
        return self._decide(_skipping(request, {**unavailable, **learned}), policy)

    def _request(
        self,
        messages: Sequence[Any],
        tags: Sequence[str],
        metadata: Mapping[str, Any],
        kwargs: Mapping[str, Any],
    ) -> tuple[Request, Policy, Conversation | None, list[Any]]:
        """The call's request and policy, its conversation, and its messages' payloads
        (read once, for the text check and the input-token bound)."""
        pin = kwargs.get("model")
        if not isinstance(pin, str) or pin == AUTO:
            pin = None if self.model_name == AUTO else self.model_name
        conversation = None
        if self.sticky and pin is None:
            key = _conversation_id(metadata)
            if key is not None:
                conversation = Conversation(key, self._sticky_model(key))
        policy = call_policy(self.policy, kwargs.get(POLICY_KEY, metadata.get(POLICY_KEY)))
        payloads = message_payloads(messages)
        request = request_from_call(
            messages,
            tags=(*tags, *(self.tags or ())),
            metadata=metadata,
            call_kwargs=kwargs
            if self.max_tokens is None or "max_tokens" in kwargs
            else {"max_tokens": self.max_tokens, **kwargs},
            model=pin,
            sticky_model=_sticky_model(kwargs.get(STICKY_KEY), pin, conversation, self.catalog),
            payloads=payloads,
        )
        return request, policy, conversation, payloads

    def _decide(self, request: Request, policy: Policy) -> Decision:
        try:
            if policy is self.policy:
                router: Router = _private(self, "_router")
                if (
                    router.policy is not policy
                    or router.catalog is not self.catalog
                    or router.scorer is not self.learned_router
                ):  # after model_copy
                    router = self._router = Router(self.catalog, policy, self.learned_router)
                return router.decide(request)
            if self.learned_router is not None:
                return Router(self.catalog, policy, self.learned_router).decide(request)
            return decide(self.catalog, policy, request)
        except NoEligibleModelError as exc:
            if not request.require or exc.hint:
                raise
            raise NoEligibleModelError(
                exc.tags, exc.rejected, _opt_in_hint(request.require)
            ) from None

    def _begin(
        self,
        messages: list[BaseMessage],
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
        *,
        streamed: bool,
        is_async: bool,
    ) -> _Call:
        """Translate the call once; routing keywords leave ``kwargs``."""
        started = time.perf_counter()
        run_id = parent_id = stream_key = None
        tags: Sequence[str]
        metadata: Mapping[str, Any]
        if run_manager is not None:
            tags, metadata = run_manager.tags, run_manager.metadata
            run_id, parent_id = run_manager.run_id, run_manager.parent_run_id
            take_run()  # the run manager says it all: drop what the run context kept
            detach(run_manager)
        elif (run := take_run()) is not None:  # stream(), astream(): see seams.py
            tags, metadata = list(run.tags), run.metadata
            stream_key = None if run.run_id is None else str(run.run_id)
        else:  # a hook called directly, outside any run
            tags, metadata = list(self.tags or ()), dict(self.metadata or {})
        request, policy, conversation, payloads = self._request(messages, tags, metadata, kwargs)
        for key in _ROUTING_KWARGS:
            kwargs.pop(key, None)
        if (self.async_client if is_async else self.client) is None:
            env = self.catalog.info.gateway.api_key_env
            raise RoutedLLMError(
                f"no API key for {self.openai_api_base}: set {env} or pass api_key="
            )
        return _Call(
            request,
            policy,
            conversation,
            started,
            streamed,
            None if run_id is None else str(run_id),
            None if parent_id is None else str(parent_id),
            input_token_bound(messages, kwargs.get("tools"), payloads=payloads),
            stream_key=stream_key,
        )

    def _route_now(self, call: _Call) -> Decision | float:
        """The decision with the models that can be tried now, or how many seconds to wait
        when every model that could take the call is cooling down and will be back within
        the call's ``max_wait_s``: a burst of 429s is waited out, not turned into errors."""
        request = call.request
        learned = self._memory().unavailable(request.require | call.policy.require)
        if request.model is not None:
            return self._decide(request, call.policy)
        cooling = self.breaker.unavailable() if self.breaker is not None else {}
        try:
            return self._decide(_skipping(request, {**cooling, **learned}), call.policy)
        except NoEligibleModelError:
            if not cooling:
                raise
            try:  # would it route once the cooling models are back?
                later = self._decide(_skipping(request, learned), call.policy)
            except NoEligibleModelError:
                raise
            assert self.breaker is not None
            wait = max(0.05, min(self.breaker.available_in(m) for m in later.ranking))
            if call.waited_s + wait > self.max_wait_s:
                raise
            call.waited_s += wait
            return wait

    def _loop(self, call: _Call, decision: Decision) -> AttemptLoop:
        return AttemptLoop(
            decision,
            self.catalog,
            breaker=self.breaker,
            streamed=call.streamed,
            run_id=call.run_id,
            parent_run_id=call.parent_run_id,
            baseline_model=self.baseline_model,
            secrets=self._secrets(),
            conversation=call.conversation,
            ignored_tags=call.request.ignored_tags,
            memory=self._memory(),
            rate_limit_retries=self.rate_limit_retries,
            max_wait_s=self.max_wait_s,
            waited_s=call.waited_s,
            started=call.started,
            attempt_timeout_s=self._attempt_timeout(),
            whole_stream=self.attempt_timeout_s is not None,
            call_timeout_s=self.call_timeout_s,
            input_token_bound=call.input_bound,
            max_output_tokens=call.request.max_output_tokens,
        )

    def _memory(self) -> CapabilityMemory:
        """The capabilities models were seen to lack (``_learned``, read directly)."""
        memory: CapabilityMemory = _private(self, "_learned")
        return memory

    def _attempt_timeout(self) -> float | None:
        if self.attempt_timeout_s is not None:
            return self.attempt_timeout_s
        timeout = self.request_timeout
        return float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None

    def _routed(self, call: _Call) -> AttemptLoop:
        while isinstance(routed := self._route_now(call), float):
            time.sleep(routed)
        return self._loop(call, routed)

    async def _arouted(self, call: _Call) -> AttemptLoop:
        while isinstance(routed := self._route_now(call), float):
            await asyncio.sleep(routed)
        return self._loop(call, routed)

    def _should_stream(
        self,
        *,
        async_api: bool,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> bool:
        """An invoke that should stream (``streaming=True``, ``stream=True``, a streaming
        handler) is streamed by ``_generate`` / ``_agenerate`` instead of LangChain's
        invoke path, which calls ``_astream`` without the run: holding the run, a cancelled
        ``ainvoke`` closes it with ``on_llm_error``, so handlers record the attempt sent.
        ``(a)stream()`` asks without a run manager and gets LangChain's answer."""
        if run_manager is not None:
            return False
        return super()._should_stream(async_api=async_api, **kwargs)

    def _streams_invoke(
        self,
        async_api: bool,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        kwargs: Mapping[str, Any],
    ) -> bool:
        """LangChain's rule for an invoke, without testing routedllm's own RunContext
        handler against its streaming-handler protocol (a costly runtime ``isinstance``
        per call): it never streams."""
        if run_manager is not None and all(type(h) is RunContext for h in run_manager.handlers):
            run_manager = None
        return super()._should_stream(async_api=async_api, run_manager=run_manager, **kwargs)

    # -- the hooks ----------------------------------------------------------------------------
    # Each hook routes, then drives the attempt loop; what to do after a failed or cancelled
    # attempt is in _failed / _cancelled (and their async twins), the only I/O being the
    # budget's settle and the wait before a retry. Every exception leaving a hook is scrubbed
    # of the configured keys first (_scrubbed).
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self._streams_invoke(False, run_manager, kwargs):
            streamed = generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
            return _with_run_id(streamed, run_manager)
        try:
            loop = self._routed(
                self._begin(messages, run_manager, kwargs, streamed=False, is_async=False)
            )
            while (attempt := loop.next()) is not None:
                if not self._hold(loop, attempt):
                    continue
                try:
                    with self._flight(loop) as wire:
                        result = super()._generate(
                            messages, stop=stop, run_manager=run_manager, **_for(kwargs, attempt)
                        )
                    out = self._stamp(result, loop, attempt)
                except Exception as exc:
                    self._failed(loop, attempt, exc, wire)
                    continue
                except BaseException as exc:  # cancelled after the request went out
                    self._cancelled(loop, attempt, exc)
                    raise
                self._settle(loop, attempt)
                return out
            raise loop.exhausted() from loop.last_error
        except BaseException as exc:
            self._scrub(exc)
            raise

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self._streams_invoke(True, run_manager, kwargs):
            try:
                streamed = await agenerate_from_stream(
                    self._astream(messages, stop, run_manager, **kwargs)
                )
                return _with_run_id(streamed, run_manager)
            except Exception:
                raise
            except BaseException as exc:  # cancelled: ainvoke()'s gather drops the run
                if run_manager is not None:
                    await _shielded(run_manager.on_llm_error(exc))
                raise
        try:
            loop = await self._arouted(
                self._begin(messages, run_manager, kwargs, streamed=False, is_async=True)
            )
            while (attempt := loop.next()) is not None:
                if not await self._ahold(loop, attempt):
                    continue
                try:
                    with self._flight(loop) as wire:
                        result = await super()._agenerate(
                            messages, stop=stop, run_manager=run_manager, **_for(kwargs, attempt)
                        )
                    out = self._stamp(result, loop, attempt)
                except Exception as exc:
                    await self._afailed(loop, attempt, exc, wire)
                    continue
                except BaseException as exc:  # cancelled after the request went out
                    await self._acancelled(loop, attempt, exc)
                    if run_manager is not None:
                        # ainvoke()'s gather drops a cancelled run without on_llm_error:
                        # close it here, so handlers record the attempt that was sent
                        await _shielded(run_manager.on_llm_error(exc))
                    raise
                await self._asettle(loop, attempt)
                return out
            raise loop.exhausted() from loop.last_error
        except BaseException as exc:
            self._scrub(exc)
            raise

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        try:
            yield from self._streamed(messages, stop, run_manager, **kwargs)
        except BaseException as exc:
            self._scrub(exc)
            raise

    def _streamed(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._begin(messages, run_manager, kwargs, streamed=True, is_async=False)
        loop = self._routed(call)
        # Fall back only until a chunk the caller would see (a committing chunk) arrives.
        while (attempt := loop.next()) is not None:
            if not self._hold(loop, attempt):
                continue
            with self._flight(loop) as wire:
                inner = super()._stream(
                    messages, stop=stop, run_manager=None, **_for(kwargs, attempt)
                )
                head: list[ChatGenerationChunk] = []
                try:
                    for chunk in inner:
                        head.append(chunk)
                        if _commits(chunk):
                            break
                    else:
                        _check_ended(head, wire)
                except Exception as exc:
                    _close(inner)
                    self._failed(loop, attempt, exc, wire)
                    continue
                except BaseException as exc:
                    _close(inner)
                    self._cancelled(loop, attempt, exc)
                    raise
            break
        else:
            raise loop.exhausted() from loop.last_error
        loop.first_chunk(attempt)
        self._started(loop, attempt, wire)
        seen = _Seen()
        key = _open(call, loop, attempt, seen)
        try:
            for chunk in itertools.chain(head, _within(inner, wire)):
                seen.observe(chunk)
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            _ended(key)
            end = self._end(loop, attempt, seen, wire)
        except Exception as exc:
            _ended(key)
            _synced(loop, attempt, wire)
            raise loop.broke(attempt, exc, seen.usage_record()) from exc
        except BaseException as exc:  # the caller closed the stream early
            attach(exc, _stopped(key, loop, attempt, seen))
            raise
        finally:
            _close(inner)
            self._settle(loop, attempt)
        if isinstance(end, StreamInterruptedError):
            raise end
        if run_manager:
            run_manager.on_llm_new_token("", chunk=end)
        yield end

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # One generator over the SDK's (no inner layers): every chunk passes through here.
        try:
            call = self._begin(messages, run_manager, kwargs, streamed=True, is_async=True)
            loop = await self._arouted(call)
            while (attempt := loop.next()) is not None:
                if not await self._ahold(loop, attempt):
                    continue
                with self._flight(loop) as wire:
                    inner = super()._astream(
                        messages, stop=stop, run_manager=None, **_for(kwargs, attempt)
                    )
                    head: list[ChatGenerationChunk] = []
                    try:
                        async for chunk in inner:
                            head.append(chunk)
                            if _commits(chunk):
                                break
                        else:
                            _check_ended(head, wire)
                    except Exception as exc:
                        await _shielded(_aclose(inner))
                        await self._afailed(loop, attempt, exc, wire)
                        continue
                    except BaseException as exc:
                        await _shielded(_aclose(inner))
                        await self._acancelled(loop, attempt, exc)
                        raise
                break
            else:
                raise loop.exhausted() from loop.last_error
            loop.first_chunk(attempt)
            self._started(loop, attempt, wire)
            seen = _Seen()
            ended = False  # the SDK's stream ran out: nothing left to close
            key = _open(call, loop, attempt, seen)
            try:
                for chunk in head:
                    seen.observe(chunk)
                    if run_manager:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
                while True:
                    token = enter(wire)  # each read under the attempt's deadline
                    try:
                        chunk = await anext(inner)
                    except StopAsyncIteration:
                        ended = True
                        break
                    finally:
                        leave(token)
                    seen.observe(chunk)
                    if run_manager:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
                _ended(key)
                end = self._end(loop, attempt, seen, wire)
            except Exception as exc:
                _ended(key)
                _synced(loop, attempt, wire)
                raise loop.broke(attempt, exc, seen.usage_record()) from exc
            except BaseException as exc:  # the caller closed the stream early
                attach(exc, _stopped(key, loop, attempt, seen))
                raise
            finally:
                if not ended:
                    await _shielded(_aclose(inner))
                await self._asettled(loop, attempt)
            if isinstance(end, StreamInterruptedError):
                raise end
            if run_manager:
                await run_manager.on_llm_new_token("", chunk=end)
            yield end
        except BaseException as exc:
            self._scrub(exc)
            raise

    # -- after an attempt: the one place for failures and cancellations ------------------------
    def _failed(self, loop: AttemptLoop, attempt: Attempt, exc: Exception, wire: Flight) -> None:
        """A failed attempt: record it, close its budget hold, then raise (a caller error)
        or wait what the verdict says before the loop tries the next model."""
        if _unsendable(exc, wire):
            self._settle(loop, attempt)
            raise loop.unsendable(attempt, exc) from exc
        _synced(loop, attempt, wire)
        verdict = loop.failed(attempt, exc)
        self._settle(loop, attempt)
        if verdict.stop:
            raise loop.error_for(exc) from None
        time.sleep(verdict.delay_s)

    async def _afailed(
        self, loop: AttemptLoop, attempt: Attempt, exc: Exception, wire: Flight
    ) -> None:
        if _unsendable(exc, wire):
            await _shielded(self._asettle(loop, attempt))
            raise loop.unsendable(attempt, exc) from exc
        _synced(loop, attempt, wire)
        verdict = loop.failed(attempt, exc)
        await _shielded(self._asettle(loop, attempt))
        if verdict.stop:
            raise loop.error_for(exc) from None
        await asyncio.sleep(verdict.delay_s)

    async def _asettled(self, loop: AttemptLoop, attempt: Attempt) -> None:
        """:meth:`_asettle`, finished even while being cancelled; without a budget hold
        only the loop is told (no task to shield)."""
        if attempt.hold is None:
            loop.settlement(attempt)
        else:
            await _shielded(self._asettle(loop, attempt))

    def _cancelled(self, loop: AttemptLoop, attempt: Attempt, exc: BaseException) -> None:
        """The caller cancelled an attempt already sent: recorded, charged its estimate."""
        attach(exc, loop.cancelled(attempt))
        self._settle(loop, attempt)

    async def _acancelled(self, loop: AttemptLoop, attempt: Attempt, exc: BaseException) -> None:
        attach(exc, loop.cancelled(attempt))
        await _shielded(self._asettle(loop, attempt))

    def _flight(self, loop: AttemptLoop) -> AbstractContextManager[Flight]:
        """The attempt's deadlines for the HTTP hooks (``time.monotonic`` seconds): its
        own budget, counted from when its request is sent, and the call's."""
        left = loop.time_left()
        return flight(loop.attempt_timeout_s, None if left is None else time.monotonic() + left)

    def _started(self, loop: AttemptLoop, attempt: Attempt, wire: Flight) -> None:
        """A stream committed: unless ``attempt_timeout_s`` bounds it to its end, only the
        call's deadline applies from here on (see AttemptLoop.first_chunk)."""
        if not loop.whole_stream:
            wire.deadline = wire.call_deadline
        else:
            _synced(loop, attempt, wire)

    def _scrub(self, exc: BaseException) -> None:
        """Scrub every configured key (in every encoding) from ``exc`` and its chain."""
        scrubber = Scrubber(self._secrets())
        if scrubber:
            scrubber.exception(exc)

    def _secrets(self) -> tuple[str, ...]:
        """Every key this model is configured with: its own, the gateway's variable, and
        credentials in its default headers."""
        found = []
        if self.openai_api_key is not None:
            found.append(self.openai_api_key.get_secret_value())
        env = os.environ.get(self.catalog.info.gateway.api_key_env)
        if env:
            found.append(env)
        for name, value in (self.default_headers or {}).items():
            if name.lower() in _CREDENTIAL_HEADERS and isinstance(value, str):
                found.extend((value, value.split(" ", 1)[-1]))
        return tuple(dict.fromkeys(found))

    # -- budget I/O: the only part that differs between sync and async ------------------------
    def _hold(self, loop: AttemptLoop, attempt: Attempt) -> bool:
        """Hold the attempt's estimate in the budget and start it; False when refused."""
        try:
            hold = (
                None
                if self.budget is None
                else self.budget.reserve(attempt.hold_usd, model=attempt.model)
            )
        except BudgetExceeded as exc:
            loop.refused(attempt, exc)
            return False
        loop.begin(attempt, hold)
        return True

    async def _ahold(self, loop: AttemptLoop, attempt: Attempt) -> bool:
        try:
            hold = (
                None
                if self.budget is None
                else await self.budget.areserve(attempt.hold_usd, model=attempt.model)
            )
        except BudgetExceeded as exc:
            loop.refused(attempt, exc)
            return False
        loop.begin(attempt, hold)
        return True

    def _settle(self, loop: AttemptLoop, attempt: Attempt) -> None:
        """Close the attempt's hold: settle it (an amount the budget refuses, e.g. above
        its maximum, is charged as the estimate instead) or release it."""
        action, amount = loop.settlement(attempt)
        hold, attempt.hold = attempt.hold, None
        if hold is None:
            return
        if action == "release":
            hold.release()
            return
        try:
            hold.settle(amount)
        except InvalidRequestError:
            hold.settle(None)

    async def _asettle(self, loop: AttemptLoop, attempt: Attempt) -> None:
        action, amount = loop.settlement(attempt)
        hold, attempt.hold = attempt.hold, None
        if hold is None:
            return
        if action == "release":
            await hold.arelease()
            return
        try:
            await hold.asettle(amount)
        except InvalidRequestError:
            await hold.asettle(None)

    # -- answers: stamp the model that answered and the call's record -----------------------
    def _stamp(self, result: ChatResult, loop: AttemptLoop, attempt: Attempt) -> ChatResult:
        llm_output = result.llm_output if result.llm_output is not None else {}
        served = llm_output.get("model_name")
        first = result.generations[0].message if result.generations else None
        usage, problem = read_usage_metadata(getattr(first, "usage_metadata", None))
        problem = llm_output.pop(_USAGE_PROBLEM, None) or problem
        if problem is not None and isinstance(first, AIMessage):
            first.usage_metadata = None
        call = loop.answered(
            attempt, usage, served if isinstance(served, str) else None, usage_problem=problem
        )
        if call.sticky is not None:
            self._remember(call.sticky.conversation_id, attempt.model)
        record = call.to_metadata()
        for i, gen in enumerate(result.generations):
            gen.message.response_metadata["model_name"] = attempt.model
            if i == 0:
                gen.message.response_metadata["routedllm"] = record
            gen.generation_info = traced_as(gen.generation_info, attempt.model)
        if result.llm_output is not None:
            result.llm_output["model_name"] = attempt.model
        return result

    def _end(
        self, loop: AttemptLoop, attempt: Attempt, seen: _Seen, wire: Flight
    ) -> ChatGenerationChunk | StreamInterruptedError:
        """How a stream that closed cleanly ended: the tail chunk carrying ``model_name``
        and the record, or (no finish_reason and no [DONE]: cut short) the error to raise."""
        usage, problem = read_usage_metadata(seen.usage)
        problem = seen.usage_problem or problem
        if not seen.finished and wire.done is False:
            return loop.truncated(attempt, usage, seen.served)
        call = loop.answered(attempt, usage, seen.served, usage_problem=problem)
        if call.sticky is not None:
            self._remember(call.sticky.conversation_id, attempt.model)
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                response_metadata={"model_name": attempt.model, "routedllm": call.to_metadata()},
            ),
            generation_info=traced_as(None, attempt.model),
        )

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The run's parameters as traced: routing keywords are routedllm's, not the API's."""
        params = super()._get_invocation_params(stop=stop, **kwargs)
        for key in _ROUTING_KWARGS:
            params.pop(key, None)
        return params

    def _combine_llm_outputs(self, llm_outputs: list[dict | None]) -> dict:
        combined = super()._combine_llm_outputs(llm_outputs)
        names = {o.get("model_name") for o in llm_outputs if o}
        if len(names) == 1:
            combined["model_name"] = names.pop()
        return combined

    def _convert_cached_generations(self, cache_val: list[Any]) -> list[ChatGeneration]:
        """An LLM-cache hit made no call: it costs nothing, and its record says so."""
        generations = super()._convert_cached_generations(cache_val)
        for gen in generations:
            call = RoutedCall.from_metadata(gen.message.response_metadata.get("routedllm"))
            if call is not None:
                hit = call.model_copy(
                    update={"cache_hit": True, "attempts": (), "skipped": (), "cost_usd": 0.0}
                )
                gen.message.response_metadata["routedllm"] = hit.to_metadata()
        return generations

    # -- bodies: upstream faults in a 200, and reasoning text the OpenAI base drops ---------
    def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> ChatResult:
        """Read a completion; a 200 carrying an error object, no choices or a body that is
        not a completion raises an upstream fault (so the call falls back)."""
        error = _field(response, "error")
        if error:
            raise UpstreamErrorBody(
                error, f"{(self.openai_api_base or '').rstrip('/')}/chat/completions"
            )
        choices = _field(response, "choices")
        if not choices:
            raise MalformedResponseError("a 200 response without choices (no completion in it)")
        for choice in choices if isinstance(choices, list) else ():
            _check_role(_field(choice, "message"), "message")
        response, problem = _believable_usage(response)
        try:
            result = super()._create_chat_result(response, generation_info)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
            raise MalformedResponseError(
                f"a 200 response that is not a chat completion ({type(exc).__name__}: {exc})"
            ) from exc
        for gen, choice in zip(result.generations, choices, strict=False):
            message = (
                choice.get("message")
                if isinstance(choice, dict)
                else getattr(choice, "message", None)
            )
            reasoning = _reasoning(message)
            if reasoning:
                gen.message.additional_kwargs["reasoning_content"] = reasoning
        if problem is not None:
            result.llm_output = {**(result.llm_output or {}), _USAGE_PROBLEM: problem}
        return result

    def _convert_chunk_to_generation_chunk(
        self, chunk: dict, default_chunk_class: type, base_generation_info: dict | None
    ) -> ChatGenerationChunk | None:
        chunk, problem = _believable_usage(chunk)
        for choice in chunk.get("choices") or () if isinstance(chunk, dict) else ():
            _check_role(_field(choice, "delta"), "delta")
        try:
            if _tool_deltas(chunk):  # the private attribute's lookup is not free per chunk
                chunk = self._tool_names.drop_repeats(chunk)
            gen = super()._convert_chunk_to_generation_chunk(
                chunk, default_chunk_class, base_generation_info
            )
        except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
            raise MalformedResponseError(
                f"a stream chunk that is not a chat completion chunk ({type(exc).__name__})"
            ) from exc
        if gen is not None and problem is not None:
            gen.generation_info = {**(gen.generation_info or {}), _USAGE_PROBLEM: problem}
        choices = chunk.get("choices") or ()
        if gen is not None and choices:
            # marked so that a stream without any choice is told from an empty reply
            if gen.generation_info is None:
                gen.generation_info = {_CHOICE: True}
            else:
                gen.generation_info[_CHOICE] = True
            # langchain-openai reads the upstream's model only off a chunk with a
            # finish_reason; some providers (Kimi K2 via OpenRouter) never send one
            served = chunk.get("model")
            if isinstance(served, str) and "model_name" not in gen.generation_info:
                gen.generation_info["model_name"] = served
            reasoning = _reasoning(choices[0].get("delta"))
            if reasoning and isinstance(gen.message, AIMessageChunk):
                gen.message.additional_kwargs["reasoning_content"] = reasoning
        return gen

    # -- sticky conversations -------------------------------------------------------------------
    def _sticky_model(self, conversation: str) -> str | None:
        """The model that answered the conversation's last turn (None: first turn)."""
        with self._sticky_lock:
            model = self._sticky_models.get(conversation)
            if model is not None:
                self._sticky_models.move_to_end(conversation)
            return model

    def _remember(self, conversation: str, model: str) -> None:
        with self._sticky_lock:
            self._sticky_models[conversation] = model
            self._sticky_models.move_to_end(conversation)
            while len(self._sticky_models) > self.sticky_conversations:
                self._sticky_models.popitem(last=False)

    # -- token counts: one offline estimate for every model (see tokens.py) ------------------
    def get_num_tokens(self, text: str) -> int:
        """Tokens of ``text``: routedllm's estimate, the same for every model, unless a
        tokenizer is given (``custom_get_token_ids=``, or ``tiktoken_model_name=``)."""
        return self._count_text()(text)

    def get_num_tokens_from_messages(
        self,
        messages: Sequence[BaseMessage],
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool] | None = None,
        *,
        allow_fetching_images: bool = True,
    ) -> int:
        """Tokens of ``messages`` and the schemas of ``tools``, estimated offline for the
        model the call would go to, whichever it is (so ``trim_messages(token_counter=llm)``
        works with ``model="auto"``); images count 765 each and are never fetched."""
        return count_message_tokens(
            convert_to_messages(messages), tools, count_text=self._count_text()
        )

    def _count_text(self) -> Callable[[str], int]:
        if self.custom_get_token_ids is not None or self.tiktoken_model_name is not None:
            return lambda text: len(self.get_token_ids(text))
        return estimate_text_tokens

    # -- serialization: dumpd/loads keep the configuration, never the key --------------------
    @classmethod
    def is_lc_serializable(cls) -> bool:
        """``dumpd(llm)`` / ``dumps(llm)`` give a constructor that ``load``/``loads`` rebuild."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """Serialized as ``["routedllm", "RoutedChatModel"]``: the public import path."""
        return ["routedllm"]

    @property
    def lc_secrets(self) -> dict[str, str]:
        """The key is written as a reference to the catalog's key variable, never its value."""
        return {"openai_api_key": self.catalog.info.gateway.api_key_env}

    @property
    def lc_attributes(self) -> dict[str, Any]:
        """What the fields leave out: a catalog given to the model (as data; the default
        catalog is read again on load, with the figures installed then), the policy (its
        fields that differ from the defaults), and ``breaker=None`` when the model has no
        breaker. The breaker's state, the budget and the HTTP clients are not serialized."""
        attributes: dict[str, Any] = {}
        if "catalog" in self.model_fields_set:
            attributes["catalog"] = catalog_data(self.catalog)
        policy = self.policy.model_dump(mode="json", exclude_defaults=True)
        if policy:
            attributes["policy"] = policy
        if self.breaker is None:
            attributes["breaker"] = None
        return attributes


def _check_body(data: object, cast_to: Any, response: Any) -> None:
    """What the SDK hands langchain-openai must be a completion or a chunk, or the call
    falls back: a stream event that is no JSON object (``data: null``) reached it as a
    value without ``model_dump``, and a 200 error body or a body without choices broke
    the SDK's own parsing (``with_structured_output(method="json_schema")``) with a raw
    AttributeError or TypeError, read as the caller's error."""
    if cast_to is ChatCompletionChunk:
        if not isinstance(data, Mapping):
            raise MalformedResponseError(
                f"a stream event that is not a JSON object (a {type(data).__name__})"
            )
        return
    if cast_to is not ChatCompletion:
        return
    if isinstance(data, Mapping) and data.get("error"):
        request = getattr(response, "request", None)
        raise UpstreamErrorBody(data["error"], str(getattr(request, "url", "")) or None)
    problem = completion_problem(data)
    if problem is not None:
        raise MalformedResponseError(problem)


class _GatewayClient(openai.OpenAI):
    """The SDK client, with every completion and chunk checked (see :func:`_check_body`)."""

    def _process_response_data(self, *, data: object, cast_to: Any, response: Any) -> Any:
        _check_body(data, cast_to, response)
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)


class _AsyncGatewayClient(openai.AsyncOpenAI):
    """The async twin of :class:`_GatewayClient`."""

    def _process_response_data(self, *, data: object, cast_to: Any, response: Any) -> Any:
        _check_body(data, cast_to, response)
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)


@dataclass(slots=True)
class _Call:
    """One call, translated once: what routing (and re-routing after a wait) needs."""

    request: Request
    policy: Policy
    conversation: Conversation | None
    started: float
    streamed: bool
    run_id: str | None
    parent_run_id: str | None
    input_bound: int | None = None
    waited_s: float = 0.0
    stream_key: str | None = None
    """The run id a stream() run is known by before the hook sees its run manager."""


class _Seen:
    """What a stream showed so far: usage added up, and the model name the upstream gave.

    ``model_name`` is taken off every chunk (it goes on the tail only, where it names the
    catalog model); the choice marker is removed.
    """

    __slots__ = ("usage", "served", "finished", "usage_problem")

    def __init__(self) -> None:
        self.usage: UsageMetadata | None = None
        self.served: str | None = None
        self.finished = False
        self.usage_problem: str | None = None

    def observe(self, chunk: ChatGenerationChunk) -> None:
        info = chunk.generation_info
        if info:
            info.pop(_CHOICE, None)
            if info.get("finish_reason"):
                self.finished = True
            problem = info.pop(_USAGE_PROBLEM, None)
            if problem is not None:
                self.usage_problem = problem
            if "model_name" in info:
                self.served = info.pop("model_name")
            if not info:
                chunk.generation_info = None
        meta = chunk.message.response_metadata
        if "model_name" in meta:
            self.served = meta.pop("model_name")
        usage = getattr(chunk.message, "usage_metadata", None)
        if usage:
            self.usage = add_usage(self.usage, usage)

    def usage_record(self) -> Usage | None:
        return read_usage_metadata(self.usage)[0]


class _ToolNames:
    """The tool-call names each stream has shown, so that a name repeated in every chunk
    merges into one name.

    OpenAI sends a streamed tool call's name once, in its first delta, and LangChain
    concatenates the name pieces of one tool call. Kimi K2 through OpenRouter sends the
    full name (and the id ``"0"``) in every delta, which merged into ``llm_versionllm_version``.
    A delta whose name equals all the name shown so far for the same tool call (completion
    id, choice, tool index) has it removed before LangChain reads the chunk; a different
    piece still adds up. Bounded: the oldest streams are forgotten first.
    """

    __slots__ = ("_lock", "_names", "_size")

    def __init__(self, size: int = 1024) -> None:
        self._names: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def drop_repeats(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """The chunk, with tool-call names that repeat the name shown so far removed."""
        completion = chunk.get("id")
        choices = chunk.get("choices")
        if not completion or not isinstance(choices, list):
            return chunk
        for position, choice in enumerate(choices):
            delta = choice.get("delta") if isinstance(choice, dict) else None
            calls = delta.get("tool_calls") if isinstance(delta, dict) else None
            if not isinstance(calls, list):
                continue
            for number, call in enumerate(calls):
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict):
                    continue
                name = function.get("name")
                if not isinstance(name, str) or not name:
                    continue
                key = (
                    str(completion),
                    _index(choice.get("index"), position),
                    _index(call.get("index"), number),
                )
                if self._seen(key, name):
                    function["name"] = None
        return chunk

    def _seen(self, key: tuple[str, int, int], name: str) -> bool:
        """True when ``name`` repeats the name shown so far; else it is added to it."""
        with self._lock:
            shown = self._names.get(key)
            if shown == name:
                self._names.move_to_end(key)
                return True
            self._names[key] = name if shown is None else shown + name
            self._names.move_to_end(key)
            while len(self._names) > self._size:
                self._names.popitem(last=False)
            return False


def _private(model: BaseModel, name: str) -> Any:
    """``model``'s private attribute ``name`` read from pydantic's store: pydantic's own
    lookup tests the attribute's default for ``__get__`` first, an AttributeError raised
    and caught on every read (~2 us, several times a call)."""
    return model.__pydantic_private__[name]  # type: ignore[index]


def _sticky_model(
    asked: Any, pin: str | None, conversation: Conversation | None, catalog: Catalog
) -> str | None:
    """The model a call is kept on: ``routedllm_sticky_model``, else the model of the
    conversation's last turn (``sticky=True``); none for a pinned call."""
    if asked is not None and asked != AUTO:
        if not isinstance(asked, str) or asked not in catalog:
            raise InvalidRequestError(
                f"{STICKY_KEY} must be a model id of the catalog, got {asked!r:.80} "
                f"(known: {', '.join(catalog.ids)})"
            )
        return None if pin is not None else asked
    return None if conversation is None else conversation.previous_model


def catalog_data(catalog: Catalog) -> dict[str, Any]:
    """A catalog as the data ``Catalog.from_dict`` reads (what a serialized model carries)."""
    return {
        "catalog": catalog.info.model_dump(mode="json", exclude_defaults=True),
        "models": [card.model_dump(mode="json", exclude_defaults=True) for card in catalog],
    }


def _tool_deltas(chunk: Any) -> bool:
    """True when a streamed chunk's choices carry tool-call deltas (what
    :meth:`_ToolNames.drop_repeats` reads)."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if not isinstance(choices, list):
        return False
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and delta.get("tool_calls"):
            return True
    return False


def _index(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _close(stream: Iterator[Any]) -> None:
    """Close a generator the base class returned (frees its HTTP response)."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


async def _aclose(stream: AsyncIterator[Any]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


def _with_run_id(
    result: ChatResult, run: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None
) -> ChatResult:
    """A streamed invoke's message gets the id LangChain's own streamed invoke gives it
    (``lc_run--<run id>``) when the upstream's chunks carried none."""
    if run is not None:
        for generation in result.generations:
            if generation.message.id is None:
                generation.message.id = f"{LC_ID_PREFIX}-{run.run_id}"
    return result


async def _shielded(awaitable: Any) -> None:
    """Finish clean-up (a budget settle, closing a stream) even while being cancelled."""
    try:
        await asyncio.shield(awaitable)
    except asyncio.CancelledError:
        pass


def _commits(chunk: ChatGenerationChunk) -> bool:
    """True for a chunk that shows the reply: text, a tool call or reasoning text.

    Usage alone does not commit: a stream of nothing but usage has no reply in it.
    """
    message = chunk.message
    return bool(
        message.content or getattr(message, "tool_call_chunks", None) or message.additional_kwargs
    )


def _check_ended(head: Sequence[ChatGenerationChunk], wire: Flight) -> None:
    """A stream that ended without showing anything must at least have carried a choice
    (an empty reply) and have ended (a finish_reason or [DONE]); else it is an upstream
    fault, not an answer, and the call falls back."""
    if not any(_CHOICE in (chunk.generation_info or {}) for chunk in head):
        raise MalformedResponseError("a 200 stream without choices (no completion in it)")
    finished = any((chunk.generation_info or {}).get("finish_reason") for chunk in head)
    if not finished and wire.done is False:
        raise MalformedResponseError("a 200 stream that ended without a finish_reason or [DONE]")


def _open(call: _Call, loop: AttemptLoop, attempt: Attempt, seen: _Seen) -> str | None:
    """Register a stream that reached the caller of ``stream()``/``astream()``, so that a
    handler told the caller stopped reading can record the attempt (see records.routed);
    its key, None when the run is not known (the hook called outside a run)."""
    key = call.stream_key
    if key is not None:
        stream_opened(key, lambda: loop.cancelled(attempt, seen.usage_record()))
    return key


def _ended(key: str | None) -> None:
    """The stream ended or broke on its own (not stopped by the caller)."""
    if key is not None:
        stream_ended(key)


def _stopped(key: str | None, loop: AttemptLoop, attempt: Attempt, seen: _Seen) -> RoutedCall:
    """The call's record once the caller stopped reading: recorded once, whether a
    handler (see records.routed) or the generator's close comes first."""
    call = None if key is None else close_stream(key)
    return loop.cancelled(attempt, seen.usage_record()) if call is None else call


def _within(inner: Iterator[ChatGenerationChunk], wire: Flight) -> Iterator[ChatGenerationChunk]:
    """A stream's chunks, each read under its attempt's deadline (see deadlines.resumed)."""
    while True:
        with resumed(wire):
            try:
                chunk = next(inner)
            except StopIteration:
                return
        yield chunk


def _synced(loop: AttemptLoop, attempt: Attempt, wire: Flight) -> None:
    """The attempt's deadline in the loop's clock, as the HTTP hooks set it at sending."""
    left = wire.left()
    if left is not None and attempt.deadline is not None:
        attempt.deadline = loop.clock() + left


def _for(kwargs: Mapping[str, Any], attempt: Attempt) -> dict[str, Any]:
    """The call's keyword arguments for one attempt: its model."""
    return {**kwargs, "model": attempt.model}


def _believable_usage(body: Any) -> tuple[Any, str | None]:
    """``body`` (a completion or a chunk) without its ``usage`` when a count cannot be
    believed (negative, not finite, not whole, absurd), and why; else as it came."""
    usage = _field(body, "usage")
    if usage is None:
        return body, None
    if not isinstance(usage, Mapping):
        usage = _usage_counts(usage)
    problem = (
        read_openai_usage(usage)[1] if isinstance(usage, Mapping) else "usage is not an object"
    )
    if problem is None:
        return body, None
    if not isinstance(body, dict):
        body = body.model_dump() if hasattr(body, "model_dump") else dict(body)
    return {k: v for k, v in body.items() if k != "usage"}, problem


_DETAILS = (
    ("prompt_tokens_details", "cached_tokens"),
    ("completion_tokens_details", "reasoning_tokens"),
)


def _usage_counts(usage: Any) -> dict[str, Any] | None:
    """What :func:`read_openai_usage` reads of an SDK usage object, taken off its
    attributes (its ``model_dump`` per response cost more than the check); None when it
    is not a model."""
    if not callable(getattr(usage, "model_dump", None)):
        return None
    counts: dict[str, Any] = {
        "prompt_tokens": getattr(usage, "prompt_tokens", None),
        "completion_tokens": getattr(usage, "completion_tokens", None),
    }
    for name, key in _DETAILS:
        details = getattr(usage, name, None)
        dumped = callable(getattr(details, "model_dump", None))
        counts[name] = {key: getattr(details, key, None)} if dumped else details
    return counts


def _conversation_id(meta: Mapping[str, Any]) -> str | None:
    """The call's conversation: ``thread_id`` (LangGraph's, which LangChain copies from
    ``configurable`` into the run's metadata), else metadata ``conversation_id``."""
    for value in (meta.get("thread_id"), meta.get("conversation_id")):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def _field(response: Any, name: str) -> Any:
    return response.get(name) if isinstance(response, dict) else getattr(response, name, None)


def _unsendable(exc: Exception, wire: Flight) -> bool:
    """The attempt failed building its request, before the HTTP client was handed it: a
    value JSON cannot encode (the caller's; every model would fail the same way)."""
    return not wire.requested and isinstance(exc, TypeError | ValueError | RecursionError)


def _check_role(message: Any, where: str) -> None:
    """An answer's role is ``assistant`` (a stream's later deltas may omit it): a reply
    in another role would reach the caller as a Human/System message, its usage dropped."""
    role = _field(message, "role")
    if role is not None and role != "assistant":
        raise MalformedResponseError(
            f"a 200 whose {where} role is {str(role)[:40]!r}, not 'assistant' (no answer in it)"
        )


def _opt_in_hint(required: frozenset[str]) -> str:
    caps = ", ".join(sorted(required))
    marks = ", ".join(f"{c!r}: True" for c in sorted(required))
    return (
        f"The call needs {caps}, and no eligible model is known to have it. Mark the models "
        f"you trust in a catalog override, e.g. RoutedChatModel(catalog=Catalog.from_env()"
        f".merged({{'models': [{{'id': 'MODEL_ID', 'capabilities': {{{marks}}}}}]}})) or a "
        f"YAML file named by ROUTEDLLM_CATALOG; a strict policy (strict_capabilities=True) "
        f"refuses unknown tool and JSON support, and image input is assumed only with "
        f"Policy(allow_unknown_capabilities=True)."
    )


def _reasoning(message: Any) -> str | None:
    """Reasoning text of a message or delta (``reasoning_content``, or ``reasoning``)."""
    if message is None:
        return None
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key) if isinstance(message, dict) else getattr(message, key, None)
        if isinstance(value, str) and value:
            return value
    return None


__all__ = ["AUTO", "RoutedChatModel", "default_breaker"]


def _skipping(request: Request, unavailable: Mapping[str, str]) -> Request:
    """``request`` with ``unavailable`` as the models to skip; the same object when that
    changes nothing (the usual case), so a call does not rebuild and revalidate it."""
    if unavailable == request.unavailable:
        return request
    return replace(request, unavailable=unavailable)
