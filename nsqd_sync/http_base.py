"""HTTP plumbing shared by the HTTP APIs: NSQ's Go router and v1 answers on `http.server`.

`NSQHTTPHandler` looks a request up in its `routes` table (path ->
(allowed methods, handler method name); a `:name` segment matches any one
segment) and calls the handler method, which answers or raises
`HTTPError`.  What the Go side does, it does: a wrong method is 405 with
an `Allow` header, OPTIONS answers the `Allow` header, a path that differs
from a route only by a trailing slash, doubled slashes or case is
redirected (301 for GET, 307 otherwise), anything else is 404
`{"message":"NOT_FOUND"}`; errors are JSON `{"message":"CODE"}`; there is
no Server header; each answer (headers and body) is one write; requests
are logged as `200 GET /stats (127.0.0.1:5555) 1.2ms`.  Request bodies may
be sized (Content-Length) or chunked; a body a handler did not read is
drained if small, else the connection is closed.

Framing is checked as Go's net/http checks it (request smuggling hygiene):
Content-Length headers that differ or are not plain decimal numbers get
Go's own `400 Bad Request` and the connection is closed before any handler
runs; a chunk size that is not plain hex (at most 16 digits) ends the
request with 400 INVALID_REQUEST and closes the connection.
"""
from __future__ import annotations

import json
import logging
import posixpath
import re
import select
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Dict, FrozenSet, List, Optional, Tuple
from urllib.parse import unquote, unquote_to_bytes

from . import gojson
from .durations import format_duration_ns

log = logging.getLogger(__name__)

Route = Tuple[Tuple[str, ...], str]  # (allowed methods, handler method name)

BOOL_PARAMS = {"true": True, "1": True, "false": False, "0": False}  # NSQ's boolParams
MAX_DISCARD = 256 * 1024  # unread body bytes drained to keep a connection (as Go's server)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DECIMAL = re.compile(rb"[0-9]+\Z")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}\Z")
# what Go's net/http writes itself for a request it cannot frame
GO_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  b"Connection: close\r\n\r\n400 Bad Request")


class HTTPError(Exception):
    """An NSQ error answer: status code and the `message` code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_json(body: bytes) -> Any:
    """A JSON request body; 400 INVALID_VALUE if it is not JSON or nests too deep to parse."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise HTTPError(400, "INVALID_VALUE") from None


go_json = gojson.dumps  # JSON as Go's encoding/json writes it (compact, <>& escaped, UTF-8)


def chunk_size(line: bytes) -> Optional[int]:
    """The size on a chunk line as Go reads it (extension and trailing blanks dropped), None if malformed.

    Only hex digits, at most 16: int(x, 16) would also take a sign, 0x, _ and spaces.
    """
    text = line.split(b";", 1)[0].rstrip(b" \t\r\n")
    return int(text, 16) if _CHUNK_SIZE.match(text) else None


class GoFraming(BaseHTTPRequestHandler):
    """Content-Length checked as Go's net/http checks it, for every HTTP server of the project.

    A connection the client resets is ended quietly (socketserver would print a traceback).

    Differing Content-Length headers (request smuggling) or one that is not
    a plain decimal number: Go's own bare 400 and the connection closed,
    before any handler runs.  Equal duplicates are one; with chunked
    transfer encoding only the duplicates matter.
    """

    def handle(self) -> None:
        """Serve the connection; a client that resets or times out just ends it (no traceback)."""
        try:
            super().handle()
        except (ConnectionError, TimeoutError, socket.timeout) as e:
            self.close_connection = True
            log.debug("HTTP: %s connection ended - %s", self.address_string(), e)

    def parse_request(self) -> bool:
        """http.server's parse, then Go's Content-Length rules (Go's bare 400 and close if broken)."""
        if not super().parse_request():
            return False
        problem = self._framing_problem()
        if problem:
            log.debug("HTTP: %s bad request framing - %s", self.address_string(), problem)
            self.close_connection = True
            try:
                self.wfile.write(GO_BAD_REQUEST)
                self.wfile.flush()
            except OSError:
                pass
            return False
        return True

    def _framing_problem(self) -> str:
        """Why Go's net/http would refuse this request's Content-Length ("" if it would not)."""
        values = [v.strip().encode("latin-1", "replace") for v in self.headers.get_all("Content-Length") or ()]
        if len(set(values)) > 1:
            return "multiple Content-Length headers %r" % values
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if values and not chunked and not _DECIMAL.match(values[0]):
            return "bad Content-Length %r" % values[0]
        return ""


class NSQHTTPHandler(GoFraming):
    """Routing, request bodies, query strings and answers shaped as NSQ's Go server does.

    Subclasses set `routes` (path -> (methods, handler method name)),
    `unlogged` (handler names not logged per request) and may override
    `body_limit()` and `error_for()`.
    """

    routes: Dict[str, Route] = {}
    unlogged: FrozenSet[str] = frozenset()
    # The two Go servers we answer for, as their tests pin them byte for byte:
    # go_header_order: the handler's headers sorted by name, then Date,
    #   Content-Length and a text answer's Content-Type, as net/http writes
    #   them (nsqlookupd); False: Date first (nsqd, nsqadmin).
    # exact_router: routes match the path as sent (an escaped one is
    #   redirected), a near miss is redirected only to a route that takes its
    #   method, `OPTIONS *` lists every method (nsqlookupd's httprouter rules).
    # drain_request_body: every request body is read (and dropped if the
    #   handler does not use it) before routing, whatever its size, so the
    #   connection always stays open (nsqlookupd, whose handlers read none).
    go_header_order = False
    exact_router = False
    drain_request_body = False
    protocol_version = "HTTP/1.1"
    server_version = "nsq-sync"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("HTTP: %s %s", self.address_string(), format % args)

    def send_response(self, code: int, message: Optional[str] = None) -> None:
        """Status line and Date (no Server header, as Go's net/http)."""
        self._status_line(code, message)
        self.send_header("Date", self.date_time_string())

    def _status_line(self, code: int, message: Optional[str] = None) -> None:
        self.log_request(code)
        self.send_response_only(code, message)
        self._status = code

    def handle_expect_100(self) -> bool:
        """Refuse a too-big body before the client sends it (no 100 Continue)."""
        limit = self.body_limit(unquote(self.path.partition("?")[0]))
        if limit is not None and self._content_length(strict=False) > limit:
            self._no_continue = True  # the client waits for us: its body will not come
            return True
        return super().handle_expect_100()

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

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # ------------------------------------------------------------ routing

    @classmethod
    def match(cls, path: str) -> Tuple[Optional[Route], Dict[str, str]]:
        """The route for a path and its `:name` parameters."""
        route = cls.routes.get(path)
        if route is not None:
            return route, {}
        parts = path.split("/")
        for pattern, candidate in cls.routes.items():
            if ":" not in pattern:
                continue
            pparts = pattern.split("/")
            if len(pparts) != len(parts):
                continue
            params = {}
            for p, seg in zip(pparts, parts):
                if p.startswith(":"):
                    if not seg:
                        break
                    params[p[1:]] = seg
                elif p != seg:
                    break
            else:
                return candidate, params
        return None, {}

    def _near_miss(self, method: str, path: str, route: Optional[Route]) -> Optional[str]:
        """Where to redirect a request that misses a route only by its spelling (None: no redirect)."""
        if not self.exact_router:
            return self._redirect_target(path) if route is None else None
        if route is not None and (method in route[0] or method == "OPTIONS"):
            return None
        return self._exact_redirect_target(method, path)

    def _exact_redirect_target(self, method: str, path: str) -> Optional[str]:
        """exact_router: a route taking `method` that `path` (as sent) misses by a slash, case or escapes."""
        if method == "CONNECT" or path == "/":
            return None
        candidates = [p for p, (methods, _) in self.routes.items() if method in methods]
        toggled = path[:-1] if path.endswith("/") and len(path) > 1 else path + "/"
        if toggled in candidates:
            return toggled
        cleaned = posixpath.normpath("/" + unquote(path))
        cleaned = "/" + cleaned.lstrip("/")
        if path.endswith("/") and cleaned != "/":
            cleaned += "/"
        folded = {p.lower(): p for p in candidates}
        target = folded.get(cleaned.lower())
        if target is None and cleaned.endswith("/") and len(cleaned) > 1:
            target = folded.get(cleaned[:-1].lower())
        return target

    def _redirect_target(self, path: str) -> Optional[str]:
        """A route path this one only differs from by a trailing slash, slashes or case."""
        candidates = [path[:-1] if path.endswith("/") else path + "/"]
        clean = posixpath.normpath("/" + path.lstrip("/"))
        if path.endswith("/") and clean != "/":
            clean += "/"
        candidates += [clean, clean[:-1] if clean.endswith("/") else clean + "/"]
        for c in candidates:
            if c != path and self.match(c)[0] is not None:
                return c
        lowered = {p.lower(): p for p in self.routes if ":" not in p}
        for c in candidates[1:]:
            if c.lower() in lowered:
                return lowered[c.lower()]
        return None

    def _dispatch(self, method: str) -> None:
        started = time.perf_counter_ns()
        self._status = 0
        self._unread = 0  # request body bytes not read yet (-1: unknown, chunked)
        self._body_started = False
        target = self.requestline.split(" ")[1] if self.requestline.count(" ") >= 2 else self.path
        raw_path, _, self.raw_query = target.partition("?")  # (http.server folds a leading //)
        self.raw_query = self.raw_query.partition("#")[0]
        path = raw_path if self.exact_router else unquote(raw_path)
        if self.drain_request_body:
            self._drain_body()
        route, self.params = self.match(path)
        handler_name = route[1] if route is not None else ""
        allow: Optional[Tuple[str, ...]] = None  # a 405's Allow, for this answer only
        quiet = False  # exact_router: redirects and OPTIONS answers are not logged, as in Go
        try:
            redirect = self._near_miss(method, path, route)
            if redirect is not None:
                quiet = self.exact_router
                self._redirect(method, redirect)
            elif route is None:
                if not (self.exact_router and method == "OPTIONS" and path == "*"):
                    raise HTTPError(404, "NOT_FOUND")
                quiet = True
                every = tuple(m for methods, _ in self.routes.values() for m in methods)
                self._send(200, b"", None, nsq_header=False, allow=every)
            elif method == "OPTIONS":
                quiet = self.exact_router
                self._send(200, b"", None, nsq_header=False, allow=route[0])
            elif method not in route[0]:
                allow = route[0]
                raise HTTPError(405, "METHOD_NOT_ALLOWED")
            else:
                getattr(self, handler_name)()
        except HTTPError as e:
            self.send_json(e.status, {"message": e.message}, allow=allow)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        except Exception as e:  # noqa: BLE001 - one request's bug must not kill the server
            mapped = self.error_for(e)
            if mapped is not None:
                self.send_json(mapped.status, {"message": mapped.message})
            else:
                log.exception("HTTP: %s %s failed", method, self.path)
                if not self._status:
                    self.send_json(500, {"message": "INTERNAL_ERROR"})
                else:
                    self.close_connection = True
        finally:
            self._finish_body()
        if handler_name not in self.unlogged and not quiet:
            log.info("%d %s %s (%s) %s", self._status, method, self.path,
                     "%s:%d" % self.client_address[:2], format_duration_ns(time.perf_counter_ns() - started))

    def body_limit(self, path: str) -> Optional[int]:
        """The largest body this path accepts (None: no early refusal)."""
        return None

    def error_for(self, exc: Exception) -> Optional[HTTPError]:
        """The NSQ answer for an exception a handler let through (None: 500 INTERNAL_ERROR)."""
        return None

    def _redirect(self, method: str, target: str) -> None:
        location = target + ("?" + self.raw_query if self.raw_query else "")
        if method == "GET":
            escaped = location.replace("&", "&amp;")
            if self.exact_router:  # Go's htmlEscape
                escaped = (escaped.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
                           .replace("'", "&#39;"))
            body = ('<a href="%s">Moved Permanently</a>.\n\n' % escaped).encode()
            self._send(301, body, "text/html; charset=utf-8", nsq_header=False, location=location)
        else:
            self._send(307, b"", None, nsq_header=False, location=location)

    def client_gone(self) -> bool:
        """The client closed its end (for long answers: stop working for nobody).

        Peeks at the TCP socket itself (under TLS too), so bytes a client
        pipelined are left where they are; only an EOF or an error counts.
        """
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return socket.socket.recv(self.connection, 1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # ------------------------------------------------------------ request body

    def _content_length(self, strict: bool = True) -> int:
        value = self.headers.get("Content-Length")
        if value is None:
            return 0
        try:
            n = int(value)
            if n < 0:
                raise ValueError(value)
            return n
        except ValueError:
            if strict:
                self.close_connection = True
                raise HTTPError(400, "INVALID_REQUEST") from None
            return 0

    def _chunked(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def read_body(self, limit: int) -> bytes:
        """The request body, at most limit + 1 bytes (so callers can tell it was too big)."""
        self._body_started = True
        want = limit + 1
        if self._chunked():
            return self._read_chunked(want)
        length = self._content_length()
        data = self.rfile.read(min(length, want)) if length else b""
        self._unread = length - len(data)
        return data

    def _read_chunked(self, want: int) -> bytes:
        parts: List[bytes] = []
        got = 0
        while True:
            size = chunk_size(self.rfile.readline(65537))
            if size is None:
                self._unread = -1
                raise HTTPError(400, "INVALID_REQUEST")
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._unread = 0
                return b"".join(parts)
            if got + size > want:
                parts.append(self.rfile.read(want - got))
                self._unread = -1
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            got += size
            self.rfile.readline(65537)

    def _drain_body(self) -> None:
        """Read and drop the whole request body, sized or chunked, 64 KB at a time."""
        self._body_started = True
        if self._chunked():
            while True:
                size = chunk_size(self.rfile.readline(65537))
                if size is None:
                    self._unread = -1
                    return
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                if not self._discard(size + 2):
                    return
        self._discard(self._content_length(strict=False))

    def _discard(self, n: int) -> bool:
        while n > 0:
            chunk = self.rfile.read(min(n, 65536))
            if not chunk:
                self._unread = -1
                return False
            n -= len(chunk)
        return True

    def _pending_body(self) -> int:
        """Request body bytes not read yet (-1: unknown, chunked)."""
        if not self._body_started:
            if self._chunked() or getattr(self, "_no_continue", False):
                return -1
            return self._content_length(strict=False)
        return self._unread

    def _finish_body(self) -> None:
        """Drain a small unread body so the connection can be reused, else close it."""
        pending = self._pending_body()
        if pending == 0:
            return
        if 0 < pending <= MAX_DISCARD:
            try:
                self.rfile.read(pending)
                self._body_started = True
                self._unread = 0
                return
            except OSError:
                pass
        self.close_connection = True

    # ------------------------------------------------------------ query parameters

    def query(self) -> Dict[str, List[str]]:
        """The query string as Go's url.ParseQuery reads it; a malformed one is INVALID_REQUEST."""
        out: Dict[str, List[str]] = {}
        raw = self.raw_query
        if not raw:
            return out
        if ";" in raw or _BAD_ESCAPE.search(raw):
            raise HTTPError(400, "INVALID_REQUEST")
        for part in raw.split("&"):
            if not part:
                continue
            key, _, value = part.partition("=")
            try:
                k = unquote_to_bytes(key.replace("+", " ")).decode("utf-8", "replace")
                v = unquote_to_bytes(value.replace("+", " ")).decode("utf-8", "replace")
            except ValueError:
                raise HTTPError(400, "INVALID_REQUEST") from None
            out.setdefault(k, []).append(v)
        return out

    def get_param(self, params: Dict[str, List[str]], name: str) -> Optional[str]:
        values = params.get(name)
        return values[0] if values else None

    # ------------------------------------------------------------ responses

    def _send(self, status: int, body: bytes, content_type: Optional[str], nsq_header: bool = True,
              allow: Optional[Tuple[str, ...]] = None, location: Optional[str] = None,
              extra: Optional[Dict[str, str]] = None) -> None:
        if self._status:
            return  # an answer was already sent
        if self.go_header_order:
            self._status_line(status)  # Date comes after the handler's headers
        else:
            self.send_response(status)
        headers: List[Tuple[str, str]] = []
        if allow is not None:
            headers.append(("Allow", ", ".join(sorted(set(allow) | {"OPTIONS"}))))
        if location is not None:
            headers.append(("Location", location))
        sniffed = self.go_header_order and content_type is not None and content_type.startswith("text/plain")
        if content_type is not None and not sniffed:
            headers.append(("Content-Type", content_type))
        if nsq_header:
            headers.append(("X-Nsq-Content-Type", "nsq; version=1.0"))
        headers.extend((extra or {}).items())
        pending = self._pending_body()
        close = pending < 0 or pending > MAX_DISCARD
        if self.go_header_order:  # net/http: the handler's headers sorted, then its own
            headers.sort(key=lambda h: h[0])
            headers.append(("Date", self.date_time_string()))
            headers.append(("Content-Length", str(len(body))))
            if sniffed:
                headers.append(("Content-Type", str(content_type)))
            if close:
                headers.append(("Connection", "close"))
        else:
            if close:
                headers.append(("Connection", "close"))
            headers.append(("Content-Length", str(len(body))))
        for key, value in headers:
            self.send_header(key, value)
        # end of headers and the body in one write (one syscall per answer)
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD" and body:
            self._headers_buffer.append(body)
        self.flush_headers()

    def send_text(self, status: int, text: str, content_type: str = "text/plain; charset=utf-8",
                  nsq_header: bool = True) -> None:
        body = text.encode("utf-8")
        self._send(status, body, content_type if body else None, nsq_header)

    def send_json(self, status: int, data: Any, allow: Optional[Tuple[str, ...]] = None) -> None:
        self._send(status, go_json(data), "application/json; charset=utf-8", allow=allow)

    def respond_v1(self, data: Any) -> None:
        """A 200 as NSQ's RespondV1: text as text, None as an empty body, the rest as JSON."""
        if data is None:
            self._send(200, b"", None)
        elif isinstance(data, str):
            self.send_text(200, data)
        else:
            self.send_json(200, data)
