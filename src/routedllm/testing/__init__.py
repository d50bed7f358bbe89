"""Test helpers shipped with routedllm: a loopback OpenAI-compatible stand-in upstream.

Nothing here is imported by ``import routedllm``; import it in tests::

    from routedllm.testing import ModelSpec, Upstream
"""

from routedllm.testing.upstream import (
    FAULTS,
    CannedResponse,
    ModelSpec,
    RecordedRequest,
    Upstream,
    load_cassette,
)

__all__ = ["FAULTS", "CannedResponse", "ModelSpec", "RecordedRequest", "Upstream", "load_cassette"]
