"""RoutedChatModel: a LangChain chat model that routes every call through the gateway.

A drop-in for ``ChatOpenAI``. Each call is routed at the public entry points (invoke,
stream, batch, their async twins and ``stream_events``), before the run starts, and the
chosen model travels down as the ``model`` keyword: traces show the real model, there is
one chat-model run per call, and tokens are counted once. Fallbacks happen inside that
run, and every attempt is recorded in ``response_metadata["routedllm"]``.

Reliability, per call: a circuit breaker keeps models that keep failing (or asked to wait
with Retry-After) out of the decision and admits each attempt; an optional budget holds
each attempt's estimate until it is settled to the actual cost or released; an optional
sticky map keeps a conversation on the model that answered its earlier turns. A caller
gets a response or a typed routedllm error; only caller errors (400, 401, 403, 422) keep
their openai type, and every exception leaving a run carries its record as ``.routedllm``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import openai
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import RunnableConfig, ensure_config
from langchain_openai._compat import httpx  # the httpx (or httpx2) the openai SDK uses
from langchain_openai.chat_models._client_utils import (
    _get_default_async_httpx_client,
    _get_default_httpx_client,
    _resolve_socket_options,
)
from langchain_openai.chat_models.base import BaseChatOpenAI
from pydantic import Field, PrivateAttr, SecretStr, model_validator

from routedllm.core.catalog import Catalog
from routedllm.core.decision import POLICY_KEY, Decision, Policy, Request, decide
from routedllm.core.errors import (
    AllAttemptsFailedError,
    BudgetExceeded,
    InvalidRequestError,
    NoEligibleModelError,
    RoutedLLMError,
    StreamInterruptedError,
)
from routedllm.core.pricing import call_cost, estimate_cost
from routedllm.core.tags import TAGS_KEY, VOCABULARY, infer_tags, message_features, validate_tags
from routedllm.reliability.attempts import Attempt, MalformedResponseError, classify, failed_attempt
from routedllm.reliability.breaker import Admission, CircuitBreaker
from routedllm.reliability.budget import Budget, Reservation

AUTO = "auto"
"""The default ``model``: route every call. Any other model id pins the model."""
_ROUTE_KW = "_routedllm_route"  # private kwarg carrying the route from entry point to hooks
_CHOICE = "_routedllm_choice"  # marks a streamed chunk that carried a choice (removed on the way)


@dataclass(frozen=True, slots=True)
class _Route:
    """The routing outcome for one call, decided before its run starts."""

    ranking: tuple[str, ...]
    tags: tuple[str, ...]
    policy: str
    pinned: bool
    decision: Decision | None
    input_tokens: int
    output_tokens: int
    started: float
    unavailable: Mapping[str, str] = field(default_factory=dict)
    """Models the circuit breaker held out of the decision, with the reason."""
    conversation: str | None = None
    """The conversation key when sticky routing applies to the call."""
    previous_model: str | None = None
    """The model that answered the conversation's last turn."""

    @property
    def deferred(self) -> tuple[str, ...]:
        return tuple(self.unavailable)


def default_breaker(retry_after_cap_s: float = 30.0) -> CircuitBreaker:
    """The circuit breaker a RoutedChatModel gets when none is given.

    A model is cooled down for 30 s (doubling up to 5 min while its probes fail) when at
    least half of at least 20 calls within 60 s failed, or at once for as long as a
    Retry-After asks (up to ``retry_after_cap_s``; 0 ignores Retry-After). A failure share
    rather than a count, so a busy model with a few faults stays in use.
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
    )


class RoutedChatModel(BaseChatOpenAI):
    """A chat model that picks the best-value gateway model for each call.

    ``RoutedChatModel()`` reads the key from ``GLOBAL_API_KEY`` and routes every call with
    the packaged catalog (or ``$ROUTEDLLM_CATALOG``) and the default ``value`` policy::

        llm = RoutedChatModel()
        reply = llm.invoke("Summarise this ...", config={"tags": ["summarization"]})
        reply.response_metadata["model_name"]      # the model that answered
        reply.response_metadata["routedllm"]       # decision, attempts, cost, latency

    Task tags come from the call's config tags (only vocabulary tags are used, so chains'
    own tags do no harm) or from ``metadata={"routedllm_tags": [...]}``; the policy can be
    overridden per call with ``routedllm_policy=`` (kwarg or config metadata).

    ``breaker`` (default: one of its own, :func:`default_breaker`; ``None``: none) keeps
    failing models out; ``budget`` (a :class:`~routedllm.reliability.budget.LocalBudget` or
    :class:`~routedllm.reliability.budget.RedisBudget`) enforces spend limits; ``sticky=True`` keeps
    each conversation (``configurable={"thread_id": ...}`` or
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

    _sticky_models: OrderedDict[str, str] = PrivateAttr(default_factory=OrderedDict)
    _sticky_lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "routedllm-chat"

    @model_validator(mode="after")
    def validate_environment(self) -> Self:
        """Resolve gateway URL and key, and build one client pair shared by every model.

        Named like the parent's validator so that it replaces it: the parent reads
        ``OPENAI_*`` variables, which must not leak into gateway calls.
        """
        if self.n is not None and (self.n < 1 or (self.n > 1 and self.streaming)):
            raise ValueError("n must be at least 1, and 1 when streaming")
        if "breaker" not in self.model_fields_set:
            self.breaker = default_breaker(self.retry_after_cap_s)
        gateway = self.catalog.info.gateway
        if self.openai_api_base is None:
            self.openai_api_base = gateway.base_url
        if self.openai_api_key is None and os.environ.get(gateway.api_key_env):
            self.openai_api_key = SecretStr(os.environ[gateway.api_key_env])
        if self.openai_api_key is None:
            return self  # no clients; a call raises a clear error
        params = {
            "api_key": self.openai_api_key.get_secret_value(),
            "base_url": self.openai_api_base,
            "timeout": self.request_timeout,
            "max_retries": self.max_retries,
            "default_headers": self.default_headers,
            "default_query": self.default_query,
        }
        params = {k: v for k, v in params.items() if v is not None}  # None timeout = no timeout
        # langchain-openai's shared default HTTP clients: building one loads SSL certificates
        # (~25 ms), and models with the same URL and timeout share a connection pool.
        if self.client is None:
            http = self.http_client or _get_default_httpx_client(*self._http_key())
            self.root_client = openai.OpenAI(**params, http_client=http)
            self.client = self.root_client.chat.completions
        if self.async_client is None:
            http = self.http_async_client or _get_default_async_httpx_client(*self._http_key())
            self.root_async_client = openai.AsyncOpenAI(**params, http_client=http)
            self.async_client = self.root_async_client.chat.completions
        return self

    def _http_key(self) -> tuple[Any, ...]:
        sockets = _resolve_socket_options(self.http_socket_options)
        return self.openai_api_base, self.request_timeout, sockets

    # -- routing at the public entry points ---------------------------------------------
    def generate(
        self,
        messages: list[list[BaseMessage]],
        stop: list[str] | None = None,
        callbacks: Any = None,
        **kwargs: Any,
    ) -> LLMResult:
        if len(messages) > 1 and _ROUTE_KW not in kwargs:  # route each prompt on its own
            kwargs.pop("run_id", None)
            return self._concat([self.generate([m], stop, callbacks, **kwargs) for m in messages])
        return super().generate(
            messages, stop, callbacks, **self._route_prompt(messages, callbacks, kwargs)
        )

    async def agenerate(
        self,
        messages: list[list[BaseMessage]],
        stop: list[str] | None = None,
        callbacks: Any = None,
        **kwargs: Any,
    ) -> LLMResult:
        if len(messages) > 1 and _ROUTE_KW not in kwargs:
            kwargs.pop("run_id", None)
            return self._concat(
                [await self.agenerate([m], stop, callbacks, **kwargs) for m in messages]
            )
        kwargs = self._route_prompt(messages, callbacks, kwargs)
        return await super().agenerate(messages, stop, callbacks, **kwargs)

    def invoke(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        kwargs = self._route_input(input, config, kwargs)  # here the config's thread_id is seen
        return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        kwargs = self._route_input(input, config, kwargs)
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        kwargs = self._route_input(input, config, kwargs)
        yield from super().stream(input, config, stop=stop, **kwargs)

    async def astream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        kwargs = self._route_input(input, config, kwargs)
        async for chunk in super().astream(input, config, stop=stop, **kwargs):
            yield chunk

    def _chat_model_stream_v3(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        kwargs = self._route_input(input, config, kwargs)
        return super()._chat_model_stream_v3(input, config, stop=stop, **kwargs)

    async def _achat_model_stream_v3(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        kwargs = self._route_input(input, config, kwargs)
        return await super()._achat_model_stream_v3(input, config, stop=stop, **kwargs)

    def _route_prompt(
        self, messages: list[list[BaseMessage]], callbacks: Any, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """Route a ``generate`` call: its tags and metadata arrive as keyword arguments."""
        return self._route(
            messages[0] if messages else [],
            kwargs.get("tags"),
            kwargs.get("metadata"),
            callbacks,
            kwargs,
        )

    def _concat(self, results: list[LLMResult]) -> LLMResult:
        runs = [run for r in results for run in (r.run or [])]
        return LLMResult(
            generations=[g for r in results for g in r.generations],
            llm_output=self._combine_llm_outputs([r.llm_output for r in results]),
            run=runs or None,
        )

    def _route_input(
        self, input: Any, config: RunnableConfig | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        if _ROUTE_KW in kwargs:
            return kwargs
        cfg = ensure_config(config)
        messages = self._convert_input(input).to_messages()
        return self._route(
            messages,
            cfg.get("tags"),
            cfg.get("metadata"),
            cfg.get("callbacks"),
            kwargs,
            cfg.get("configurable"),
        )

    def _route(
        self,
        messages: Sequence[Any],
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        callbacks: Any,
        kwargs: dict[str, Any],
        configurable: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Decide the call's model and ranking; returns the kwargs to hand down."""
        if _ROUTE_KW in kwargs:  # already routed (e.g. stream() falling back to invoke())
            return kwargs
        started = time.perf_counter()
        kwargs = dict(kwargs)
        manager = callbacks if isinstance(callbacks, BaseCallbackManager) else None
        meta = {**(manager.inheritable_metadata if manager else {}), **(metadata or {})}
        given = kwargs.pop(TAGS_KEY, None) or meta.get(TAGS_KEY)
        policy = self._call_policy(kwargs.pop(POLICY_KEY, None) or meta.get(POLICY_KEY))
        if given:
            tag_list = validate_tags([given] if isinstance(given, str) else given)
        else:  # config tags: chains add their own, so only vocabulary tags count
            seen = itertools.chain(
                tags or (), self.tags or (), manager.inheritable_tags if manager else ()
            )
            tag_list = tuple(dict.fromkeys(t for t in seen if t in VOCABULARY))
        max_out = kwargs.get("max_tokens") or kwargs.get("max_completion_tokens") or self.max_tokens
        pin = kwargs.get("model")
        if not isinstance(pin, str) or pin == AUTO:
            pin = None if self.model_name == AUTO else self.model_name
        if pin is not None:
            route = _pinned(pin, messages, tag_list, policy, max_out, started)
        else:
            conversation = _conversation(configurable, meta) if self.sticky else None
            route = self._decided(
                messages, tag_list, policy, max_out, kwargs, started, conversation
            )
        return {**kwargs, "model": route.ranking[0], _ROUTE_KW: route}

    def _decided(
        self,
        messages: Sequence[Any],
        tags: tuple[str, ...],
        policy: Policy,
        max_out: int | None,
        kwargs: Mapping[str, Any],
        started: float,
        conversation: str | None = None,
    ) -> _Route:
        """The route from ``decide()``: ranking, tags and estimates for the call.

        Models whose circuit is open are passed as unavailable (the decision says why),
        and a sticky conversation's last model as the model to keep.
        """
        require = _required_capabilities(messages, kwargs)
        previous = None if conversation is None else self._sticky_model(conversation)
        request = Request(
            messages=messages,
            tags=tags or None,
            max_output_tokens=max_out,
            require=require,
            unavailable=self.breaker.unavailable() if self.breaker is not None else {},
            sticky_model=previous,
        )
        try:
            decision = decide(self.catalog, policy, request)
        except NoEligibleModelError as exc:
            if not require:
                raise
            raise NoEligibleModelError(exc.tags, exc.rejected, _opt_in_hint(require)) from None
        return _Route(
            ranking=decision.ranking,
            tags=decision.tags,
            policy=decision.policy,
            pinned=False,
            decision=decision,
            input_tokens=decision.estimated_input_tokens,
            output_tokens=decision.expected_output_tokens,
            started=started,
            unavailable={r.model: r.reason for r in decision.rejected if r.code == "unavailable"},
            conversation=conversation,
            previous_model=previous,
        )

    def _call_policy(self, override: Any) -> Policy:
        if override is None:
            return self.policy
        if isinstance(override, Policy):
            return override
        if isinstance(override, Mapping):
            return Policy.model_validate({**self.policy.model_dump(), **override})
        raise InvalidRequestError(
            f"{POLICY_KEY} must be a Policy or a mapping of Policy fields, "
            f"got {type(override).__name__}"
        )

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

    # -- the hooks: attempts and fallbacks inside one run -------------------------------
    def _begin(
        self,
        messages: list[BaseMessage],
        run_manager: Any,
        kwargs: dict[str, Any],
        *,
        streamed: bool,
        is_async: bool,
    ) -> _Call:
        route = kwargs.pop(_ROUTE_KW, None)
        if route is None:  # a hook called directly, not through an entry point
            routed = self._route(
                messages,
                getattr(run_manager, "tags", None),
                getattr(run_manager, "metadata", None),
                None,
                kwargs,
            )
            kwargs.clear()
            kwargs.update(routed)
            route = kwargs.pop(_ROUTE_KW)
        if (self.async_client if is_async else self.client) is None:
            env = self.catalog.info.gateway.api_key_env
            raise RoutedLLMError(
                f"no API key for {self.openai_api_base}: set {env} or pass api_key="
            )
        return _Call(self, route, streamed)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._begin(messages, run_manager, kwargs, streamed=False, is_async=False)
        for model in call.candidates():
            ticket = call.open(model)
            if ticket is None:
                continue
            try:
                return call.finish(
                    super()._generate(
                        messages, stop=stop, run_manager=run_manager, **{**kwargs, "model": model}
                    ),
                    ticket,
                )
            except Exception as exc:
                if call.failed(ticket, exc):
                    continue
                raise
            finally:
                call.close(ticket)
        raise call.exhausted() from call.last_error

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._begin(messages, run_manager, kwargs, streamed=False, is_async=True)
        for model in call.candidates():
            ticket = await call.aopen(model)
            if ticket is None:
                continue
            try:
                return call.finish(
                    await super()._agenerate(
                        messages, stop=stop, run_manager=run_manager, **{**kwargs, "model": model}
                    ),
                    ticket,
                )
            except Exception as exc:
                if call.failed(ticket, exc):
                    continue
                raise
            finally:
                await call.aclose(ticket)
        raise call.exhausted() from call.last_error

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._begin(messages, run_manager, kwargs, streamed=True, is_async=False)
        # Fall back only until a chunk the caller would see (a committing chunk) arrives.
        for model in call.candidates():
            ticket = call.open(model)
            if ticket is None:
                continue
            inner = super()._stream(
                messages, stop=stop, run_manager=None, **{**kwargs, "model": model}
            )
            head: list[ChatGenerationChunk] = []
            started = False
            try:
                for chunk in inner:
                    head.append(chunk)
                    if _commits(chunk):
                        break
                else:
                    _check_choices(head)
                started = True
            except Exception as exc:
                if call.failed(ticket, exc):
                    continue
                raise
            finally:
                if not started:
                    inner.close()
                    call.close(ticket)
            break
        else:
            raise call.exhausted() from call.last_error
        call.committed(ticket)
        try:
            for chunk in itertools.chain(head, inner):
                call.observe(chunk)
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            tail = call.tail(ticket)
        except Exception as exc:
            raise call.broke(ticket, exc) from exc
        finally:
            inner.close()
            call.close(ticket)
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
        call = self._begin(messages, run_manager, kwargs, streamed=True, is_async=True)
        for model in call.candidates():
            ticket = await call.aopen(model)
            if ticket is None:
                continue
            inner = super()._astream(
                messages, stop=stop, run_manager=None, **{**kwargs, "model": model}
            )
            head: list[ChatGenerationChunk] = []
            started = False
            try:
                async for chunk in inner:
                    head.append(chunk)
                    if _commits(chunk):
                        break
                else:
                    _check_choices(head)
                started = True
            except Exception as exc:
                if call.failed(ticket, exc):
                    continue
                raise
            finally:
                if not started:
                    await inner.aclose()
                    await call.aclose(ticket)
            break
        else:
            raise call.exhausted() from call.last_error
        call.committed(ticket)
        try:
            for chunk in head:
                call.observe(chunk)
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            async for chunk in inner:
                call.observe(chunk)
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
            tail = call.tail(ticket)
        except Exception as exc:
            raise call.broke(ticket, exc) from exc
        finally:
            await inner.aclose()
            await call.aclose(ticket)
        if run_manager:
            await run_manager.on_llm_new_token("", chunk=tail)
        yield tail

    # -- keep the private route out of tracing, caching and the API ---------------------
    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        kwargs.pop(_ROUTE_KW, None)
        return super()._get_invocation_params(stop=stop, **kwargs)

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        kwargs.pop(_ROUTE_KW, None)
        return super()._get_llm_string(stop=stop, **kwargs)

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
            record = gen.message.response_metadata.get("routedllm")
            if isinstance(record, dict):
                gen.message.response_metadata["routedllm"] = {
                    **record,
                    "cache_hit": True,
                    "cost_usd": 0.0,
                    "cost_input_usd": 0.0,
                    "cost_output_usd": 0.0,
                }
        return generations

    # -- bodies: upstream faults in a 200, and reasoning text the OpenAI base drops -------
    def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> ChatResult:
        """Read a completion; a 200 carrying an error object, no choices or a body that is
        not a completion raises an upstream fault (so the call falls back)."""
        error = _field(response, "error")
        if error:
            raise _body_error(error, self.openai_api_base)
        choices = _field(response, "choices")
        if not choices:
            raise MalformedResponseError("a 200 response without choices (no completion in it)")
        try:
            result = super()._create_chat_result(response, generation_info)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
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
            gen.generation_info = {**(gen.generation_info or {}), _CHOICE: True}
            reasoning = _reasoning(choices[0].get("delta"))
            if reasoning and isinstance(gen.message, AIMessageChunk):
                gen.message.additional_kwargs["reasoning_content"] = reasoning
        return gen


@dataclass(slots=True, eq=False)
class _Ticket:
    """One attempt's claims: the breaker admitted it and the budget holds its estimate."""

    model: str
    reservation: Reservation | None
    admission: Admission | None = None
    """What the breaker let out (None: no breaker); abandoned if never reported."""
    started: float = field(default_factory=time.perf_counter)
    reported: bool = False
    """The breaker was told the outcome (else its probe slot is freed on close)."""
    charge: bool = False
    """Settle the reservation on close (else release it): set once text reached the caller."""
    cost_usd: float | None = None
    """What to settle; None charges the estimate (the actual cost is unknown)."""


class _Call:
    """One routed run: the candidates left, the attempts made, usage and timings."""

    def __init__(self, owner: RoutedChatModel, route: _Route, streamed: bool) -> None:
        self.owner = owner
        self.route = route
        self.streamed = streamed
        self.attempts: list[Attempt] = []
        self.last_error: BaseException | None = None
        self.refusal: BudgetExceeded | None = None
        self.window_floor: int | None = None  # after a context error: windows must exceed it
        self.context_exceeded = False
        self.usage: UsageMetadata | None = None
        self.served: str | None = None
        self.ttft: float | None = None

    def candidates(self) -> Iterator[str]:
        """The ranking in order, skipping models too small after a context-length error."""
        for model in self.route.ranking:
            if self.context_exceeded:
                window = self._window(model)
                if window is None or (
                    self.window_floor is not None and window <= self.window_floor
                ):
                    self._skip(
                        model,
                        "ContextWindow",
                        f"context window {window or 'unknown'} not larger than "
                        f"{self.window_floor or 'the failing model'}'s",
                    )
                    continue
            yield model

    # -- before an attempt: the breaker admits it, the budget holds its estimate ----------
    def open(self, model: str) -> _Ticket | None:
        """Claim an attempt of ``model``; None (recorded as skipped) when the breaker or
        the budget refuses it."""
        admitted, admission = self._admit(model)
        if not admitted:
            return None
        budget = self.owner.budget
        try:
            held = None if budget is None else budget.reserve(self._estimate(model), model=model)
        except BudgetExceeded as exc:
            return self._refused(admission, model, exc)
        except BaseException:
            self._abandon(admission)
            raise
        return _Ticket(model, held, admission)

    async def aopen(self, model: str) -> _Ticket | None:
        admitted, admission = self._admit(model)
        if not admitted:
            return None
        budget = self.owner.budget
        try:
            held = (
                None
                if budget is None
                else await budget.areserve(self._estimate(model), model=model)
            )
        except BudgetExceeded as exc:
            return self._refused(admission, model, exc)
        except BaseException:
            self._abandon(admission)
            raise
        return _Ticket(model, held, admission)

    def _admit(self, model: str) -> tuple[bool, Admission | None]:
        """Whether the breaker lets an attempt of ``model`` out (a refusal is recorded as
        skipped), and the admission to abandon should it not be sent (None: no breaker)."""
        breaker = self.owner.breaker
        admission = None if breaker is None else breaker.admit(model)
        if admission is not None and admission.refused is not None:
            self._skip(model, "CircuitOpen", admission.refused)
            return False, None
        return True, admission

    def _refused(self, admission: Admission | None, model: str, exc: BudgetExceeded) -> None:
        self._abandon(admission)
        self.refusal = exc
        self._skip(model, "BudgetExceeded", str(exc))

    def _skip(self, model: str, kind: str, why: str) -> None:
        self.attempts.append(Attempt(model=model, outcome="skipped", error_type=kind, error=why))

    def _estimate(self, model: str) -> float | None:
        card = self.owner.catalog.find(model)
        if card is None:
            return None
        return estimate_cost(card, self.route.input_tokens, self.route.output_tokens)

    # -- after an attempt ------------------------------------------------------------------
    def close(self, ticket: _Ticket) -> None:
        """Settle or release the attempt's reservation; free a probe slot left unreported."""
        if not ticket.reported:
            self._abandon(ticket.admission)
        held = ticket.reservation
        if held is not None:
            if ticket.charge:
                held.settle(ticket.cost_usd)
            else:
                held.release()

    async def aclose(self, ticket: _Ticket) -> None:
        if not ticket.reported:
            self._abandon(ticket.admission)
        held = ticket.reservation
        if held is not None:
            if ticket.charge:
                await held.asettle(ticket.cost_usd)
            else:
                await held.arelease()

    def _abandon(self, admission: Admission | None) -> None:
        if self.owner.breaker is not None and admission is not None:
            self.owner.breaker.abandon(admission)

    def _report(self, ticket: _Ticket, failure: Attempt | None = None) -> None:
        """Tell the breaker how the attempt went (a failure only for upstream faults)."""
        ticket.reported = True
        breaker = self.owner.breaker
        if breaker is None:
            return
        if failure is None:
            breaker.record_success(ticket.model)
        else:
            why = failure.error_type or "error"
            if failure.status is not None:
                why = f"{why} {failure.status}"
            breaker.record_failure(ticket.model, why, retry_after_s=failure.retry_after_s)

    def failed(self, ticket: _Ticket, exc: BaseException) -> bool:
        """Record a failed attempt; True when the call may go on to the next model."""
        attempt = self._failed_attempt(ticket, exc)
        self.attempts.append(attempt)
        self.last_error = exc
        action = classify(exc)
        if attempt.outcome != "skipped":  # skipped: never sent, says nothing of the model
            self._report(ticket, attempt if action == "fallback" else None)
        if action == "context":
            self.context_exceeded = True
            window = self._window(ticket.model)
            if window is not None:
                self.window_floor = max(window, self.window_floor or 0)
        if action == "fatal":
            self.annotate(exc, None)
            return False
        return True

    def _failed_attempt(self, ticket: _Ticket, exc: BaseException) -> Attempt:
        secret = self.owner.openai_api_key
        return failed_attempt(
            ticket.model,
            exc,
            time.perf_counter() - ticket.started,
            secret.get_secret_value() if secret else None,
        )

    def exhausted(self) -> RoutedLLMError:
        """The error when no model answered: the budget's refusal when nothing was sent,
        else :class:`AllAttemptsFailedError` naming every attempt."""
        if self.refusal is not None and not any(a.outcome == "error" for a in self.attempts):
            self.annotate(self.refusal, None)
            return self.refusal
        error = AllAttemptsFailedError([a.as_dict() for a in self.attempts], self.route.tags)
        error.routedllm = self.record(None)  # type: ignore[attr-defined]
        return error

    def annotate(self, exc: BaseException, model: str | None) -> None:
        """Attach the call's record to an exception that leaves the router."""
        try:
            exc.routedllm = self.record(model)  # type: ignore[attr-defined]
        except AttributeError:  # exceptions with __slots__
            pass

    def _answered(self, ticket: _Ticket, model: str, record: Mapping[str, Any]) -> None:
        """An answer came: the model is healthy, the budget is charged its actual cost, and
        a sticky conversation remembers the model."""
        self._report(ticket)
        ticket.charge, ticket.cost_usd = True, record["cost_usd"]
        if self.route.conversation is not None:
            self.owner._remember(self.route.conversation, model)

    def finish(self, result: ChatResult, ticket: _Ticket) -> ChatResult:
        """Stamp a non-streamed result with the model that answered and the call's record."""
        model = ticket.model
        self.attempts.append(
            Attempt(
                model=model, outcome="ok", latency_s=round(time.perf_counter() - ticket.started, 6)
            )
        )
        llm_output = result.llm_output if result.llm_output is not None else {}
        self.served = llm_output.get("model_name")
        if result.generations:
            self.usage = getattr(result.generations[0].message, "usage_metadata", None)
        record = self.record(model)
        for i, gen in enumerate(result.generations):
            gen.message.response_metadata["model_name"] = model
            if i == 0:
                gen.message.response_metadata["routedllm"] = record
        if result.llm_output is not None:
            result.llm_output["model_name"] = model
        self._answered(ticket, model, record)
        return result

    def committed(self, ticket: _Ticket) -> None:
        """Text is about to reach the caller: no fallback from here, and the attempt is
        charged (its estimate, until the stream ends with usage)."""
        self.ttft = round(time.perf_counter() - self.route.started, 6)
        ticket.charge = True

    def observe(self, chunk: ChatGenerationChunk) -> None:
        """Take ``model_name`` off a streamed chunk (it goes on the tail) and add up usage."""
        info = chunk.generation_info
        if info:
            info.pop(_CHOICE, None)
            if "model_name" in info:
                self.served = info.pop("model_name")
            if not info:
                chunk.generation_info = None
        if "model_name" in chunk.message.response_metadata:
            self.served = chunk.message.response_metadata.pop("model_name")
        usage = getattr(chunk.message, "usage_metadata", None)
        if usage:
            self.usage = add_usage(self.usage, usage)

    def broke(self, ticket: _Ticket, exc: BaseException) -> StreamInterruptedError:
        """A stream failed after its first chunk reached the caller: no fallback; the typed
        error names every attempt and keeps the usage seen so far."""
        attempt = self._failed_attempt(ticket, exc)
        attempt.outcome = "error"  # it was sent: text came back
        self.attempts.append(attempt)
        self.last_error = exc
        self._report(ticket, attempt if classify(exc) == "fallback" else None)
        error = StreamInterruptedError(
            ticket.model, [a.as_dict() for a in self.attempts], self.route.tags, self.usage
        )
        error.routedllm = self.record(ticket.model)  # type: ignore[attr-defined]
        return error

    def tail(self, ticket: _Ticket) -> ChatGenerationChunk:
        """The one chunk carrying ``model_name`` and the record, yielded after the stream."""
        model = ticket.model
        self.attempts.append(
            Attempt(
                model=model, outcome="ok", latency_s=round(time.perf_counter() - ticket.started, 6)
            )
        )
        record = self.record(model)
        self._answered(ticket, model, record)
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="", response_metadata={"model_name": model, "routedllm": record}
            )
        )

    def record(self, model: str | None) -> dict[str, Any]:
        """The JSON-ready ``response_metadata["routedllm"]`` mapping."""
        route = self.route
        catalog = self.owner.catalog
        card = catalog.find(model) if model else None
        usage = self.usage
        cost_in = cost_out = cost = None
        summary = None
        if usage:
            cached = (usage.get("input_token_details") or {}).get("cache_read") or 0
            reasoning = (usage.get("output_token_details") or {}).get("reasoning")
            summary = {
                "input_tokens": usage["input_tokens"],
                "output_tokens": usage["output_tokens"],
                "total_tokens": usage["total_tokens"],
                "cached_input_tokens": cached,
                "reasoning_tokens": reasoning,
            }
            if card is not None:
                priced = call_cost(card, usage["input_tokens"], usage["output_tokens"], cached)
                cost_in, cost_out, cost = priced.input_usd, priced.output_usd, priced.total_usd
        decision = route.decision
        return {
            "model": model,
            "requested_model": route.ranking[0],
            "served_model": self.served,
            "pinned": route.pinned,
            "tags": list(route.tags),
            "policy": route.policy,
            "fallbacks": list(route.ranking[1:]),
            "deferred": list(route.deferred),
            "unavailable": dict(route.unavailable),
            "sticky": self._sticky(model),
            "attempts": [a.as_dict() for a in self.attempts],
            "usage": summary,
            "estimated_cost_usd": _usd(
                estimate_cost(card, route.input_tokens, route.output_tokens) if card else None
            ),
            "cost_usd": _usd(cost),
            "cost_input_usd": _usd(cost_in),
            "cost_output_usd": _usd(cost_out),
            "catalog_as_of": catalog.info.as_of,
            "streamed": self.streamed,
            "latency_s": round(time.perf_counter() - route.started, 6),
            "ttft_s": self.ttft,
            "decision": None
            if decision is None
            else {
                "model": decision.model,
                "benchmark": decision.benchmark,
                "score": decision.score,
                "binding_constraint": decision.binding_constraint,
            },
        }

    def _sticky(self, model: str | None) -> dict[str, Any] | None:
        """What sticky routing did for this turn (None: not a sticky conversation)."""
        route = self.route
        if route.conversation is None:
            return None
        previous = route.previous_model
        note = route.decision.note if route.decision is not None else None
        if note is None and previous is not None and model is not None and model != previous:
            note = f"conversation model {previous} was kept but failed; {model} answered"
        return {
            "conversation_id": route.conversation,
            "previous_model": previous,
            "kept": None if previous is None or model is None else model == previous,
            "note": note,
        }

    def _window(self, model: str) -> int | None:
        card = self.owner.catalog.find(model)
        return None if card is None else card.context_window


def _pinned(
    model: str,
    messages: Sequence[Any],
    tags: tuple[str, ...],
    policy: Policy,
    max_out: int | None,
    started: float,
) -> _Route:
    """The route of a pinned call: that model only; tags still given or inferred."""
    features = message_features(messages)
    if not tags:
        tags = infer_tags(
            features, cjk_share=policy.cjk_share, long_context_tokens=policy.long_context_tokens
        )
    return _Route(
        ranking=(model,),
        tags=tags,
        policy=policy.preset,
        pinned=True,
        decision=None,
        input_tokens=features.input_tokens,
        output_tokens=max_out or policy.default_output_tokens,
        started=started,
    )


def _usd(value: float | None) -> float | None:
    """Dollars to 1e-12 (float noise such as 1.2499999999999999e-05 dropped)."""
    return None if value is None else round(value, 12)


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


def _conversation(configurable: Mapping[str, Any] | None, meta: Mapping[str, Any]) -> str | None:
    """The call's conversation: ``configurable["thread_id"]`` (LangGraph's), else metadata
    ``conversation_id`` or ``thread_id``."""
    for value in (
        (configurable or {}).get("thread_id"),
        meta.get("conversation_id"),
        meta.get("thread_id"),
    ):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def _field(response: Any, name: str) -> Any:
    return response.get(name) if isinstance(response, dict) else getattr(response, name, None)


def _body_error(error: Any, base_url: str | None) -> openai.APIError:
    """A 200 whose body is an error object, raised as the openai SDK raises an error event
    in a stream: an ``APIError`` whose body's ``code`` says whether it is the upstream's
    fault (5xx, falls back) or the caller's."""
    body = error if isinstance(error, dict) else {"message": str(error)}
    message = body.get("message") or "a 200 response whose body is an error object"
    url = f"{(base_url or 'http://upstream').rstrip('/')}/chat/completions"
    return openai.APIError(str(message), httpx.Request("POST", url), body=body)


def _required_capabilities(messages: Sequence[Any], kwargs: Mapping[str, Any]) -> frozenset[str]:
    """Capabilities the call needs: tools bound, structured output asked for, images sent."""
    need = set()
    if kwargs.get("tools"):
        need.add("tools")
    if any(
        k in kwargs
        for k in ("ls_structured_output_format", "structured_output_format", "response_format")
    ):
        need.add("structured_output")
    if message_features(messages, scan=False).has_image:
        need.add("image_input")
    return frozenset(need)


def _opt_in_hint(required: frozenset[str]) -> str:
    caps = ", ".join(sorted(required))
    marks = ", ".join(f"{c!r}: True" for c in sorted(required))
    return (
        f"The call needs {caps}, and routedllm does not assume a capability the catalog "
        f"leaves unknown. Opt in by marking the models you trust in a catalog override, e.g. "
        f"RoutedChatModel(catalog=Catalog.from_env().merged({{'models': [{{'id': 'MODEL_ID', "
        f"'capabilities': {{{marks}}}}}]}})) or a YAML file named by ROUTEDLLM_CATALOG; or "
        f"accept unknown capabilities with "
        f"RoutedChatModel(policy=Policy(allow_unknown_capabilities=True))."
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
