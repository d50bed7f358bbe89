"""A loopback OpenAI-compatible stand-in upstream, with scripted faults, for tests.

Nothing here is imported by ``import routedllm``, and importing it starts nothing. Drive
the stand-in from your own tests::

    from routedllm.testing import ModelSpec, Upstream, rate_limit, broken_stream

    spec = ModelSpec(script=[rate_limit(retry_after_s=2), broken_stream(after_chunks=3)])
    with Upstream({"gpt-4o": spec}) as up:      # 127.0.0.1, an ephemeral port
        client = openai.OpenAI(base_url=up.base_url, api_key="any")
        ...                     # three calls: a 429, a stream cut after 3 chunks, a reply
    assert [r.fault for r in up.requests] == ["rate_limit", "broken_stream", None]

The server binds 127.0.0.1 only and starts and stops with the ``with`` block. Each model
gets a ``ModelSpec``: its faults, scripted in order (``script``) or drawn at seeded rates
(``faults``), its reply, usage and timing. ``Upstream.requests`` logs what was received
(credentials left out) with the fault served. Faults are ``Fault`` values from the
constructors here or short names from ``FAULTS``; ``wire`` builds the OpenAI JSON and SSE
both the server and in-process fakes send.
"""

from routedllm.testing import wire
from routedllm.testing.cassettes import load_cassette
from routedllm.testing.faults import (
    FAULTS,
    PRESETS,
    Fault,
    FaultKind,
    bad_request,
    broken_stream,
    connect_error,
    context_length,
    empty_deltas_forever,
    error_body,
    hang,
    keepalive_forever,
    malformed,
    no_choices,
    no_finish,
    not_found,
    parse_fault,
    rate_limit,
    reset,
    server_error,
    timeout,
    trickle,
    unauthorized,
    unsupported,
    wrong_content,
)
from routedllm.testing.responses import Response, respond
from routedllm.testing.spec import CannedResponse, ModelSpec
from routedllm.testing.upstream import RecordedRequest, Upstream

__all__ = [
    "FAULTS",
    "PRESETS",
    "CannedResponse",
    "Fault",
    "FaultKind",
    "ModelSpec",
    "RecordedRequest",
    "Response",
    "Upstream",
    "bad_request",
    "broken_stream",
    "connect_error",
    "context_length",
    "empty_deltas_forever",
    "error_body",
    "hang",
    "keepalive_forever",
    "load_cassette",
    "malformed",
    "no_choices",
    "no_finish",
    "not_found",
    "parse_fault",
    "rate_limit",
    "reset",
    "respond",
    "server_error",
    "timeout",
    "trickle",
    "unauthorized",
    "unsupported",
    "wire",
    "wrong_content",
]
