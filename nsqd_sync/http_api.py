"""nsqd's HTTP API on `http.server` (one thread per request).

Routes are looked up in `ROUTES` (path -> (allowed methods, handler method
name)); each handler method answers one endpoint.  Errors are NSQ's JSON
`{"message": "CODE"}` with its status code.
"""
from __future__ import annotations

import json
import logging
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from . import NSQ_VERSION

if TYPE_CHECKING:  # pragma: no cover
    from .nsqd import NSQD

log = logging.getLogger(__name__)


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


ROUTES: Dict[str, Tuple[Tuple[str, ...], str]] = {
    "/ping": (("GET", "HEAD"), "do_ping"),
    "/info": (("GET",), "do_info"),
}


class NSQDHTTPHandler(BaseHTTPRequestHandler):
    """Dispatches each request to one method per endpoint."""

    server: "NSQDHTTPServer"
    protocol_version = "HTTP/1.1"
    server_version = "nsqd-sync"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("HTTP: %s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query, keep_blank_values=True)
        route = ROUTES.get(url.path.rstrip("/") or url.path)
        try:
            if route is None:
                raise HTTPError(404, "NOT_FOUND")
            methods, handler_name = route
            if method not in methods:
                raise HTTPError(405, "METHOD_NOT_ALLOWED")
            getattr(self, handler_name)()
        except HTTPError as e:
            self._discard_body()
            self.send_json(e.status, {"message": e.message})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # noqa: BLE001 - one request's bug must not kill the server
            log.exception("HTTP: %s %s failed", method, self.path)
            self.send_json(500, {"message": "INTERNAL_ERROR"})

    def _discard_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length and not getattr(self, "_body_read", False):
            self.rfile.read(length)

    # ------------------------------------------------------------ responses

    def send_text(self, status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-NSQ-Content-Type", "nsq; version=1.0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, data: Any) -> None:
        body = json.dumps(data, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-NSQ-Content-Type", "nsq; version=1.0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # ------------------------------------------------------------ endpoints

    def do_ping(self) -> None:
        nsqd = self.server.nsqd
        if nsqd.is_healthy():
            self.send_text(200, "OK")
        else:
            self.send_text(500, "NOK - %s" % nsqd.health_error)

    def do_info(self) -> None:
        nsqd = self.server.nsqd
        opts = nsqd.opts
        self.send_json(200, {
            "version": NSQ_VERSION,
            "broadcast_address": opts.broadcast_address,
            "hostname": socket.gethostname(),
            "http_port": nsqd.http_address[1],
            "tcp_port": nsqd.tcp_address[1],
            "start_time": int(nsqd.start_time),
        })


class NSQDHTTPServer(ThreadingHTTPServer):
    """The HTTP listener of one nsqd."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: Tuple[str, int], nsqd: "NSQD") -> None:
        self.nsqd = nsqd
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, NSQDHTTPHandler)
