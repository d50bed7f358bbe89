"""One scrubber for everything that leaves a routed call: errors, their chains, records.

An upstream may echo the caller's key (a 401 body quoting the bearer token, a proxy's
debug page), and SDK errors keep the request they were sent with (its ``Authorization``
header included). :class:`Scrubber` replaces every configured key, and the forms it
takes on the wire (JSON-escaped, URL-encoded, base64), in text, nested values and
exceptions: their ``args``, ``message``, ``body``, ``request`` and ``response``, along the
whole ``__cause__`` / ``__context__`` chain. Strings shorter than 8 characters are not
keys (tests use ``"k"``) and are left alone, so model ids and words stay intact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from routedllm.records.schema import MIN_SECRET, encodings

REDACTED = "[redacted]"
__all__ = ["MIN_SECRET", "REDACTED", "Scrubber", "encodings"]
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "api-key", "x-api-key", "cookie", "set-cookie"}
)


class Scrubber:
    """Replaces the given secrets (in every encoding of :func:`encodings`) by ``[redacted]``."""

    __slots__ = ("_forms",)

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if isinstance(secret, str) and len(secret) >= MIN_SECRET:
                forms |= encodings(secret)
        self._forms = tuple(sorted(forms, key=len, reverse=True))  # longest first

    def __repr__(self) -> str:
        return f"Scrubber({len(self._forms)} forms)"

    def __bool__(self) -> bool:
        return bool(self._forms)

    def text(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def holds_secret(self, text: str) -> bool:
        return any(form in text for form in self._forms)

    def value(self, value: Any, _depth: int = 0) -> Any:
        """``value`` with secrets scrubbed from its strings, bytes, mappings and sequences."""
        if not self._forms or _depth > 20:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes | bytearray):
            decoded = bytes(value).decode("utf-8", "replace")
            return self.text(decoded).encode() if self.holds_secret(decoded) else value
        if isinstance(value, Mapping):
            return {k: self.value(v, _depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            items = [self.value(v, _depth + 1) for v in value]
            return items if isinstance(value, list) else tuple(items)
        return value

    def exception(self, exc: BaseException) -> BaseException:
        """Scrub ``exc`` and every exception in its cause/context chain, in place."""
        seen: set[int] = set()
        stack: list[BaseException] = [exc]
        while stack:
            current = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            self._one(current)
            for linked in (current.__cause__, current.__context__):
                if linked is not None:
                    stack.append(linked)
            for inner in getattr(current, "exceptions", ()) or ():  # exception groups
                if isinstance(inner, BaseException):
                    stack.append(inner)
        return exc

    def _one(self, exc: BaseException) -> None:
        try:
            exc.args = tuple(self.value(a) for a in exc.args)
        except (AttributeError, TypeError):
            pass
        for name in ("message", "body", "detail", "text"):
            if name in getattr(exc, "__dict__", {}):
                _set(exc, name, self.value(exc.__dict__[name]))
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [self.text(n) if isinstance(n, str) else n for n in notes]
        request = getattr(exc, "_request", None) if "_request" in vars(exc) else None
        if request is not None:
            _set(exc, "_request", self.request(request))
        if "request" in vars(exc) and vars(exc)["request"] is not None:
            _set(exc, "request", self.request(vars(exc)["request"]))
        if "response" in vars(exc) and vars(exc)["response"] is not None:
            _set(exc, "response", self.response(vars(exc)["response"]))

    def request(self, request: Any) -> Any:
        """A copy of an httpx request without credentials or secrets (no body)."""
        try:
            cls = type(request)
            headers = [
                (k, self.text(v))
                for k, v in request.headers.items()
                if k.lower() not in _SECRET_HEADERS
            ]
            return cls(request.method, self.text(str(request.url)), headers=headers)
        except Exception:
            return None

    def response(self, response: Any) -> Any:
        """A copy of an httpx response with its body and headers scrubbed."""
        try:
            try:
                content = response.content
            except Exception:  # a stream never read: keep no body
                content = b""
            headers = [
                (k, self.text(v))
                for k, v in response.headers.items()
                if k.lower() not in _SECRET_HEADERS
            ]
            request = getattr(response, "_request", None)
            return type(response)(
                response.status_code,
                headers=headers,
                content=self.value(content),
                request=None if request is None else self.request(request),
            )
        except Exception:
            return None


def _set(exc: BaseException, name: str, value: Any) -> None:
    try:
        setattr(exc, name, value)
    except (AttributeError, TypeError):
        pass
