"""A loopback HTTP capture server for the tracing tests: it records every request and
answers each path with a canned JSON body (``{}`` unless told otherwise)."""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Captured:
    """One request as it arrived: method, path, headers (lower-case names) and raw body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class CaptureServer:
    """Records requests on 127.0.0.1; ``replies`` maps a path to the JSON it answers with."""

    def __init__(self, replies: dict[str, Any] | None = None) -> None:
        self.replies = dict(replies or {})
        self.requests: list[Captured] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> CaptureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def to(self, path: str) -> list[Captured]:
        """The requests sent to ``path`` (query string ignored), in order."""
        with self._lock:
            return [r for r in self.requests if r.path.split("?")[0] == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        capture = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                if headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                with capture._lock:
                    capture.requests.append(Captured(self.command, self.path, headers, body))
                reply = json.dumps(capture.replies.get(self.path.split("?")[0], {})).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PATCH = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
