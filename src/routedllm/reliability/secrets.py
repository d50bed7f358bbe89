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

import re
from collections.abc import Iterable, Mapping, Set
from typing import Any

from routedllm.records.schema import MIN_SECRET, encodings, needs_pattern, secret_pattern

REDACTED = "[redacted]"
__all__ = ["MIN_SECRET", "REDACTED", "ScrubbedError", "Scrubber", "encodings"]
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "api-key", "x-api-key", "cookie", "set-cookie"}
)


class Scrubber:
    """Replaces the given secrets (in every encoding of :func:`encodings`) by ``[redacted]``."""

    __slots__ = ("_forms", "_secrets", "_pattern")

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        kept: list[str] = []
        for secret in secrets:
            if isinstance(secret, str) and len(secret) >= MIN_SECRET:
                forms |= encodings(secret)
                kept.append(secret)
        self._forms = tuple(sorted(forms, key=len, reverse=True))  # longest first
        self._secrets = tuple(kept)
        self._pattern: re.Pattern[str] | None = None  # compiled when text has escapes

    def __repr__(self) -> str:
        return f"Scrubber({len(self._forms)} forms)"

    def __bool__(self) -> bool:
        return bool(self._forms)

    def text(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        if self._forms and needs_pattern(text):
            text = self._escaped().sub(REDACTED, text)
        return text

    def holds_secret(self, text: str) -> bool:
        if any(form in text for form in self._forms):
            return True
        return bool(self._forms) and needs_pattern(text) and bool(self._escaped().search(text))

    def _escaped(self) -> re.Pattern[str]:
        """The secrets as escaped text may hold them (see ``secret_pattern``)."""
        if self._pattern is None:
            self._pattern = secret_pattern(self._secrets) or re.compile(r"(?!)")
        return self._pattern

    def value(self, value: Any, _depth: int = 0) -> Any:
        """``value`` with secrets scrubbed from its strings, bytes, mappings (keys too),
        sequences, sets and HTTP requests/responses; past 100 levels a container that
        still holds a secret is replaced by ``[redacted]`` whole."""
        if not self._forms:
            return value
        if _depth > _MAX_DEPTH:
            return REDACTED if self.holds_secret(_shown(value)) else value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes | bytearray):
            decoded = bytes(value).decode("utf-8", "replace")
            return self.text(decoded).encode() if self.holds_secret(decoded) else value
        if isinstance(value, Mapping):
            return {self.value(k, _depth + 1): self.value(v, _depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            items = [self.value(v, _depth + 1) for v in value]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, Set):
            return frozenset(self.value(v, _depth + 1) for v in value)
        if _is_http(value, "Request"):
            return self.request(value)
        if _is_http(value, "Response"):
            return self.response(value)
        return value

    def exception(self, exc: BaseException) -> BaseException:
        """Scrub ``exc`` and every exception in its cause/context chain, in place.

        A linked exception whose text still shows a secret (its ``__str__`` is computed
        from state no attribute exposes, like a pydantic ``ValidationError`` quoting an
        input) is replaced in the chain by a :class:`ScrubbedError` holding its scrubbed
        text."""
        seen: set[int] = set()
        stack: list[BaseException] = [exc]
        while stack:
            current = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            self._one(current)
            for name in ("__cause__", "__context__"):
                linked = getattr(current, name)
                if linked is None:
                    continue
                self._one(linked)
                if self.holds_secret(_shown(linked)):
                    linked = ScrubbedError.of(linked, self)
                    setattr(current, name, linked)
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
        for name, value in list(getattr(exc, "__dict__", {}).items()):
            if name not in ("request", "_request", "response", "__notes__"):
                _set(exc, name, self.value(value))
        for name in _BUILTIN_ATTRIBUTES:  # kept outside __dict__ by built-in exceptions
            value = getattr(exc, name, None)
            if isinstance(value, str | bytes | bytearray | list | tuple):
                scrubbed = self.value(value)
                if scrubbed != value:
                    _set(exc, name, scrubbed)
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


class ScrubbedError(Exception):
    """Stands in a scrubbed chain for an exception whose text showed a secret that could
    not be removed in place; names its type and keeps its scrubbed text."""

    @classmethod
    def of(cls, exc: BaseException, scrubber: Scrubber) -> ScrubbedError:
        stand_in = cls(f"{type(exc).__name__}: {scrubber.text(_shown(exc))}")
        stand_in.__cause__ = exc.__cause__
        stand_in.__context__ = exc.__context__
        stand_in.__suppress_context__ = exc.__suppress_context__
        return stand_in


_MAX_DEPTH = 100
# Attributes of built-in exceptions that are not in their __dict__ and may quote input:
# OSError's file names, JSONDecodeError's document, UnicodeError's object,
# CalledProcessError's command and output.
_BUILTIN_ATTRIBUTES = (
    "filename",
    "filename2",
    "strerror",
    "doc",
    "msg",
    "object",
    "reason",
    "cmd",
    "output",
    "stdout",
    "stderr",
)


def _shown(value: Any) -> str:
    """What printing ``value`` may show: its text and its repr."""
    try:
        return f"{value}\n{value!r}"
    except Exception:  # a broken __str__/__repr__ shows nothing of the secret
        return ""


def _is_http(value: Any, name: str) -> bool:
    """``value`` is an httpx/httpx2 ``Request`` or ``Response``."""
    cls = type(value)
    return cls.__name__ == name and cls.__module__.split(".")[0] in ("httpx", "httpx2")


def _set(exc: BaseException, name: str, value: Any) -> None:
    try:
        setattr(exc, name, value)
    except (AttributeError, TypeError):
        pass
