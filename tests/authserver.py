"""A stand-in NSQ auth server for tests: `http.server` on a loopback ephemeral port.

Answers every request with `(status, body)` from `respond`, which a test may
swap at any time; records each request (method, path, query, headers) so
tests can count them and check what nsqd sent.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, NamedTuple, Tuple
from urllib.parse import parse_qs, urlsplit


class AuthRequest(NamedTuple):
    method: str
    path: str
    query: Dict[str, List[str]]
    headers: Dict[str, str]


def allow(*authorizations: Dict[str, Any], ttl: int = 60, identity: str = "alice",
          identity_url: str = "https://example.invalid/alice") -> Callable[[AuthRequest], Tuple[int, bytes]]:
    """A responder granting these authorizations."""
    body = json.dumps({"ttl": ttl, "identity": identity, "identity_url": identity_url,
                       "authorizations": list(authorizations)}).encode()
    return lambda req: (200, body)


def grant(topic: str, channels: List[str], *permissions: str) -> Dict[str, Any]:
    return {"topic": topic, "channels": channels, "permissions": list(permissions)}


class AuthServer:
    """Start with `AuthServer()`, stop with `.stop()` (or use as a context manager)."""

    def __init__(self, respond: Callable[[AuthRequest], Tuple[int, bytes]] = allow()) -> None:
        self.respond = respond
        self.requests: List[AuthRequest] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                parts = urlsplit(self.path)
                req = AuthRequest(self.command, self.path, parse_qs(parts.query, keep_blank_values=True),
                                  dict(self.headers))
                with outer._lock:
                    outer.requests.append(req)
                status, body = outer.respond(req)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = "127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="test-auth-server", daemon=True)
        self._thread.start()

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def last(self) -> AuthRequest:
        with self._lock:
            return self.requests[-1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def __enter__(self) -> "AuthServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
