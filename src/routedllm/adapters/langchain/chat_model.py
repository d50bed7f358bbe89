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
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_openai.chat_models.base import BaseChatOpenAI
from pydantic import Field, PrivateAttr, SecretStr, model_validator

from routedllm.adapters.langchain.seams import RunContext, take_run, traced_as
from routedllm.core.catalog import Catalog
from routedllm.core.decision import Decision, Policy, Router, decide
from routedllm.core.errors import BudgetExceeded, NoEligibleModelError, RoutedLLMError
from routedllm.core.requests import POLICY_KEY, TAGS_KEY, Request, call_policy, request_from_call
from routedllm.records.routed import RoutedCall, attach
from routedllm.records.schema import DEFAULT_BASELINE, Usage
from routedllm.reliability.attempts import Attempt, AttemptLoop, CapabilityMemory, Conversation
from routedllm.reliability.breaker import CircuitBreaker
from routedllm.reliability.budget import Budget
from routedllm.reliability.failures import MalformedResponseError, UpstreamErrorBody

AUTO = "auto"
"""The default ``model``: route every call. Any other model id pins the model."""
_CHOICE = "_routedllm_choice"  # marks a streamed chunk that carried a choice (removed on the way)
_ROUTING_KWARGS = (TAGS_KEY, POLICY_KEY)


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
    ``sticky=True`` keeps each conversation (``configurable={"thread_id": ...}`` or
    ``metadata={"conversation_id": ...}``) on its model.
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

    learned_router: Any = Field(default=None, exclude=True)
    """A learned router (:class:`routedllm.learning.LearnedRouter` or the path of its JSON,
    written by ``routedllm train``): its per-prompt predictions replace catalog scores."""

    _router: Router = PrivateAttr()
    _learned: CapabilityMemory = PrivateAttr(default_factory=CapabilityMemory)
    _sticky_models: OrderedDict[str, str] = PrivateAttr(default_factory=OrderedDict)
    _sticky_lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "routedllm-chat"

    @model_validator(mode="after")
    def validate_environment(self) -> Self:
        """Resolve gateway URL and key, and build the OpenAI client pair.

        Named like the parent's validator so that it replaces it: the parent reads
        ``OPENAI_*`` variables, which must not leak into gateway calls.
        """
        if self.n is not None and (self.n < 1 or (self.n > 1 and self.streaming)):
            raise ValueError("n must be at least 1, and 1 when streaming")
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
        if self.client is None:
            self.root_client = openai.OpenAI(**params, http_client=self.http_client)
            self.client = self.root_client.chat.completions
        if self.async_client is None:
            self.root_async_client = openai.AsyncOpenAI(
                **params, http_client=self.http_async_client
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
        request, policy, _ = self._request(messages, tags, metadata or {}, kwargs)
        unavailable = self.breaker.unavailable() if self.breaker is not None else {}
        learned = self._learned.unavailable(request.require | policy.require)
        return self._decide(replace(request, unavailable={**unavailable, **learned}), policy)

    def _request(
        self,
        messages: Sequence[Any],
        tags: Sequence[str],
        metadata: Mapping[str, Any],
        kwargs: Mapping[str, Any],
    ) -> tuple[Request, Policy, Conversation | None]:
        pin = kwargs.get("model")
        if not isinstance(pin, str) or pin == AUTO:
            pin = None if self.model_name == AUTO else self.model_name
        conversation = None
        if self.sticky and pin is None:
            key = _conversation_id(metadata)
            if key is not None:
                conversation = Conversation(key, self._sticky_model(key))
        policy = call_policy(self.policy, kwargs.get(POLICY_KEY, metadata.get(POLICY_KEY)))
        request = request_from_call(
            messages,
            tags=(*tags, *(self.tags or ())),
            metadata=metadata,
            call_kwargs=kwargs,
            model=pin,
            sticky_model=None if conversation is None else conversation.previous_model,
        )
        return request, policy, conversation

    def _decide(self, request: Request, policy: Policy) -> Decision:
        try:
            if policy is self.policy:
                router = self._router
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
        run_id = parent_id = None
        tags: Sequence[str]
        metadata: Mapping[str, Any]
        if run_manager is not None:
            tags, metadata = run_manager.tags, run_manager.metadata
            run_id, parent_id = run_manager.run_id, run_manager.parent_run_id
            take_run()  # the run manager says it all: drop what the run context kept
        elif (run := take_run()) is not None:  # stream(), astream(): see seams.py
            tags, metadata = list(run.tags), run.metadata
        else:  # a hook called directly, outside any run
            tags, metadata = list(self.tags or ()), dict(self.metadata or {})
        request, policy, conversation = self._request(messages, tags, metadata, kwargs)
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
        )

    def _route_now(self, call: _Call) -> Decision | float:
        """The decision with the models that can be tried now, or how many seconds to wait
        when every model that could take the call is cooling down and will be back within
        the call's ``max_wait_s``: a burst of 429s is waited out, not turned into errors."""
        request = call.request
        learned = self._learned.unavailable(request.require | call.policy.require)
        if request.model is not None:
            return self._decide(request, call.policy)
        cooling = self.breaker.unavailable() if self.breaker is not None else {}
        try:
            return self._decide(replace(request, unavailable={**cooling, **learned}), call.policy)
        except NoEligibleModelError:
            if not cooling:
                raise
            try:  # would it route once the cooling models are back?
                later = self._decide(replace(request, unavailable=learned), call.policy)
            except NoEligibleModelError:
                raise
            assert self.breaker is not None
            wait = max(0.05, min(self.breaker.available_in(m) for m in later.ranking))
            if call.waited_s + wait > self.max_wait_s:
                raise
            call.waited_s += wait
            return wait

    def _loop(self, call: _Call, decision: Decision) -> AttemptLoop:
        secret = self.openai_api_key.get_secret_value() if self.openai_api_key else None
        return AttemptLoop(
            decision,
            self.catalog,
            breaker=self.breaker,
            streamed=call.streamed,
            run_id=call.run_id,
            parent_run_id=call.parent_run_id,
            baseline_model=self.baseline_model,
            secrets=(secret,) if secret else (),
            conversation=call.conversation,
            ignored_tags=call.request.ignored_tags,
            memory=self._learned,
            rate_limit_retries=self.rate_limit_retries,
            max_wait_s=self.max_wait_s,
            waited_s=call.waited_s,
            started=call.started,
        )

    def _routed(self, call: _Call) -> AttemptLoop:
        while isinstance(routed := self._route_now(call), float):
            time.sleep(routed)
        return self._loop(call, routed)

    async def _arouted(self, call: _Call) -> AttemptLoop:
        while isinstance(routed := self._route_now(call), float):
            await asyncio.sleep(routed)
        return self._loop(call, routed)

    # -- the hooks ----------------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:  # the OpenAI base would stream through our _stream: do it here
            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        loop = self._routed(
            self._begin(messages, run_manager, kwargs, streamed=False, is_async=False)
        )
        while (attempt := loop.next()) is not None:
            if not self._hold(loop, attempt):
                continue
            try:
                result = super()._generate(
                    messages,
                    stop=stop,
                    run_manager=run_manager,
                    **{**kwargs, "model": attempt.model},
                )
            except Exception as exc:
                verdict = loop.failed(attempt, exc)
                self._settle(loop, attempt)
                if verdict.stop:
                    raise loop.error_for(exc) from None
                time.sleep(verdict.delay_s)
                continue
            except BaseException as exc:  # cancelled after the request went out
                attach(exc, loop.cancelled(attempt))
                self._settle(loop, attempt)
                raise
            out = self._stamp(result, loop, attempt)
            self._settle(loop, attempt)
            return out
        raise loop.exhausted() from loop.last_error

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))
        loop = await self._arouted(
            self._begin(messages, run_manager, kwargs, streamed=False, is_async=True)
        )
        while (attempt := loop.next()) is not None:
            if not await self._ahold(loop, attempt):
                continue
            try:
                result = await super()._agenerate(
                    messages,
                    stop=stop,
                    run_manager=run_manager,
                    **{**kwargs, "model": attempt.model},
                )
            except Exception as exc:
                verdict = loop.failed(attempt, exc)
                await self._asettle(loop, attempt)
                if verdict.stop:
                    raise loop.error_for(exc) from None
                await asyncio.sleep(verdict.delay_s)
                continue
            except BaseException as exc:  # cancelled after the request went out
                attach(exc, loop.cancelled(attempt))
                await _shielded(self._asettle(loop, attempt))
                raise
            out = self._stamp(result, loop, attempt)
            await self._asettle(loop, attempt)
            return out
        raise loop.exhausted() from loop.last_error

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        loop = self._routed(
            self._begin(messages, run_manager, kwargs, streamed=True, is_async=False)
        )
        # Fall back only until a chunk the caller would see (a committing chunk) arrives.
        while (attempt := loop.next()) is not None:
            if not self._hold(loop, attempt):
                continue
            inner = super()._stream(
                messages, stop=stop, run_manager=None, **{**kwargs, "model": attempt.model}
            )
            head: list[ChatGenerationChunk] = []
            try:
                for chunk in inner:
                    head.append(chunk)
                    if _commits(chunk):
                        break
                else:
                    _check_choices(head)
            except Exception as exc:
                _close(inner)
                verdict = loop.failed(attempt, exc)
                self._settle(loop, attempt)
                if verdict.stop:
                    raise loop.error_for(exc) from None
                time.sleep(verdict.delay_s)
                continue
            except BaseException as exc:
                _close(inner)
                attach(exc, loop.cancelled(attempt))
                self._settle(loop, attempt)
                raise
            break
        else:
            raise loop.exhausted() from loop.last_error
        loop.first_chunk(attempt)
        seen = _Seen()
        try:
            for chunk in head:
                seen.observe(chunk)
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            for chunk in inner:
                seen.observe(chunk)
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            tail = self._tail(loop, attempt, seen)
        except Exception as exc:
            raise loop.broke(attempt, exc, seen.usage_record()) from exc
        except BaseException as exc:  # the caller closed the stream early
            attach(exc, loop.cancelled(attempt, seen.usage_record()))
            raise
        finally:
            _close(inner)
            self._settle(loop, attempt)
        if run_manager:
            run_manager.on_llm_new_token("", chunk=tail)
        yield tail

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        loop = await self._arouted(
            self._begin(messages, run_manager, kwargs, streamed=True, is_async=True)
        )
        while (attempt := loop.next()) is not None:
            if not await self._ahold(loop, attempt):
                continue
            inner = super()._astream(
                messages, stop=stop, run_manager=None, **{**kwargs, "model": attempt.model}
            )
            head: list[ChatGenerationChunk] = []
            try:
                async for chunk in inner:
                    head.append(chunk)
                    if _commits(chunk):
                        break
                else:
                    _check_choices(head)
            except Exception as exc:
                await _aclose(inner)
                verdict = loop.failed(attempt, exc)
                await self._asettle(loop, attempt)
                if verdict.stop:
                    raise loop.error_for(exc) from None
                await asyncio.sleep(verdict.delay_s)
                continue
            except BaseException as exc:
                attach(exc, loop.cancelled(attempt))
                await _shielded(_aclose(inner))
                await _shielded(self._asettle(loop, attempt))
                raise
            break
        else:
            raise loop.exhausted() from loop.last_error
        loop.first_chunk(attempt)
        seen = _Seen()
        try:
            for chunk in head:
                seen.observe(chunk)
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            async for chunk in inner:
                seen.observe(chunk)
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            tail = self._tail(loop, attempt, seen)
        except Exception as exc:
            raise loop.broke(attempt, exc, seen.usage_record()) from exc
        except BaseException as exc:
            attach(exc, loop.cancelled(attempt, seen.usage_record()))
            raise
        finally:
            await _shielded(_aclose(inner))
            await _shielded(self._asettle(loop, attempt))
        if run_manager:
            await run_manager.on_llm_new_token("", chunk=tail)
        yield tail

    # -- budget I/O: the only part that differs between sync and async ------------------------
    def _hold(self, loop: AttemptLoop, attempt: Attempt) -> bool:
        """Hold the attempt's estimate in the budget and start it; False when refused."""
        try:
            hold = (
                None
                if self.budget is None
                else self.budget.reserve(attempt.estimate_usd, model=attempt.model)
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
                else await self.budget.areserve(attempt.estimate_usd, model=attempt.model)
            )
        except BudgetExceeded as exc:
            loop.refused(attempt, exc)
            return False
        loop.begin(attempt, hold)
        return True

    def _settle(self, loop: AttemptLoop, attempt: Attempt) -> None:
        action, amount = loop.settlement(attempt)
        hold, attempt.hold = attempt.hold, None
        if hold is not None:
            hold.settle(amount) if action == "settle" else hold.release()

    async def _asettle(self, loop: AttemptLoop, attempt: Attempt) -> None:
        action, amount = loop.settlement(attempt)
        hold, attempt.hold = attempt.hold, None
        if hold is not None:
            await (hold.asettle(amount) if action == "settle" else hold.arelease())

    # -- answers: stamp the model that answered and the call's record -----------------------
    def _stamp(self, result: ChatResult, loop: AttemptLoop, attempt: Attempt) -> ChatResult:
        llm_output = result.llm_output if result.llm_output is not None else {}
        served = llm_output.get("model_name")
        first = result.generations[0].message if result.generations else None
        usage = Usage.from_usage_metadata(getattr(first, "usage_metadata", None))
        call = loop.answered(attempt, usage, served if isinstance(served, str) else None)
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

    def _tail(self, loop: AttemptLoop, attempt: Attempt, seen: _Seen) -> ChatGenerationChunk:
        """The one chunk carrying ``model_name`` and the record, yielded after the stream."""
        call = loop.answered(attempt, seen.usage_record(), seen.served)
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
        return result

    def _convert_chunk_to_generation_chunk(
        self, chunk: dict, default_chunk_class: type, base_generation_info: dict | None
    ) -> ChatGenerationChunk | None:
        gen = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        choices = chunk.get("choices") or ()
        if gen is not None and choices:
            # marked so that a stream without any choice is told from an empty reply
            if gen.generation_info is None:
                gen.generation_info = {_CHOICE: True}
            else:
                gen.generation_info[_CHOICE] = True
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
    waited_s: float = 0.0


class _Seen:
    """What a stream showed so far: usage added up, and the model name the upstream gave.

    ``model_name`` is taken off every chunk (it goes on the tail only, where it names the
    catalog model); the choice marker is removed.
    """

    __slots__ = ("usage", "served")

    def __init__(self) -> None:
        self.usage: UsageMetadata | None = None
        self.served: str | None = None

    def observe(self, chunk: ChatGenerationChunk) -> None:
        info = chunk.generation_info
        if info:
            info.pop(_CHOICE, None)
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
        return Usage.from_usage_metadata(self.usage)


def _close(stream: Iterator[Any]) -> None:
    """Close a generator the base class returned (frees its HTTP response)."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


async def _aclose(stream: AsyncIterator[Any]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


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


def _check_choices(head: Sequence[ChatGenerationChunk]) -> None:
    """A stream that ended without showing anything must at least have carried a choice
    (an empty reply); one that carried none is an upstream fault, not an answer."""
    if not any(_CHOICE in (chunk.generation_info or {}) for chunk in head):
        raise MalformedResponseError("a 200 stream without choices (no completion in it)")


def _conversation_id(meta: Mapping[str, Any]) -> str | None:
    """The call's conversation: ``thread_id`` (LangGraph's, which LangChain copies from
    ``configurable`` into the run's metadata), else metadata ``conversation_id``."""
    for value in (meta.get("thread_id"), meta.get("conversation_id")):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def _field(response: Any, name: str) -> Any:
    return response.get(name) if isinstance(response, dict) else getattr(response, name, None)


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
