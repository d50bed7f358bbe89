"""Canned responses from vcrpy cassettes, for ``ModelSpec(canned=...)``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from routedllm.testing.spec import CannedResponse
from routedllm.testing.wire import json_bytes


def load_cassette(path: str | Path) -> dict[str, tuple[CannedResponse, ...]]:
    """Canned responses per requested model, from a vcrpy YAML cassette.

    Reads plain vcrpy cassettes (``body: '...'`` or ``body: {string: ...}``) and the
    ``parsed_body`` variant (JSON kept as YAML). Interactions that are not chat
    completions are skipped; a file that holds none raises ``ValueError``.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read cassette: {exc}") from None
    interactions = data.get("interactions") if isinstance(data, dict) else None
    if not isinstance(interactions, list):
        raise ValueError(f"{path}: not a vcrpy cassette (no 'interactions' list)")
    out: dict[str, list[CannedResponse]] = {}
    for i, item in enumerate(interactions):
        request, response = item.get("request", {}), item.get("response", {})
        if not str(request.get("uri", "")).rstrip("/").endswith("/chat/completions"):
            continue
        body = request.get("parsed_body")
        if body is None:
            raw = _body_bytes(request.get("body"))
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                raise ValueError(f"{path}: interactions[{i}]: request body is not JSON") from None
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str):
            raise ValueError(f"{path}: interactions[{i}]: request names no model")
        if "parsed_body" in response:
            payload = json_bytes(response["parsed_body"])
        else:
            payload = _body_bytes(response.get("body"))
        headers = tuple(
            (str(k), str(v))
            for k, values in (response.get("headers") or {}).items()
            for v in (values if isinstance(values, list) else [values])
        )
        status = response.get("status", {})
        code = status.get("code", 200) if isinstance(status, dict) else int(status)
        out.setdefault(model, []).append(CannedResponse(int(code), payload, headers))
    if not out:
        raise ValueError(f"{path}: no chat-completions interactions in the cassette")
    return {model: tuple(items) for model, items in out.items()}


def _body_bytes(body: Any) -> bytes:
    if isinstance(body, dict):
        body = body.get("string")
    if body is None:
        return b""
    return body if isinstance(body, bytes) else str(body).encode("utf-8")
