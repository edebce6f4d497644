"""The one HTTP client of the project: `requests`, with NSQ's timeouts and errors.

nsqd (auth servers, nsqlookupd), the client library (lookupd discovery),
the benchmarks, nsqadmin and the utilities all talk HTTP through this
module, so connect/request timeouts, TLS settings, the `Accept` header NSQ
sends and the unwrapping of NSQ's answers live in one place (NSQ's Go code:
`internal/http_api/api_request.go`).
"""
from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

import requests

from .addresses import http_url

#: what NSQ's HTTP clients send, so nodes answer in the v1 shape
NSQ_ACCEPT = "application/vnd.nsq; version=1.0"


class HTTPClientError(Exception):
    """A request failed: connection refused, timeout, non-2xx answer or bad JSON."""

    def __init__(self, message: str, status: Optional[int] = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class HTTPClient:
    """A `requests.Session` with connect and request timeouts (NSQ's --http-client-* flags).

    Thread-safe for the way the project uses it: each call is one request on
    the session's connection pool.
    """

    def __init__(self, connect_timeout: float = 2.0, request_timeout: float = 5.0, *,
                 verify: Union[bool, str] = True,
                 cert: Optional[Union[str, Tuple[str, str]]] = None,
                 pool_size: int = 32) -> None:
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.session = requests.Session()
        # as NSQ's Go client: no proxy from the environment, no ~/.netrc, no CA
        # bundle from REQUESTS_CA_BUNDLE (and requests skips those per-request lookups)
        self.session.trust_env = False
        self.session.verify = verify
        if cert:
            self.session.cert = cert
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # get_plain's idle keep-alive connections per (host, port)
        self._pool_size = pool_size
        self._idle: Dict[Tuple[str, int], List["_PlainConnection"]] = {}
        self._closed = False
        self._idle_lock = threading.Lock()  # guards _idle and _closed

    @property
    def timeout(self) -> Tuple[float, float]:
        return (self.connect_timeout, self.request_timeout)

    def request(self, method: str, url: str, *, params: Optional[Mapping[str, Any]] = None,
                data: Union[bytes, str, None] = None, headers: Optional[Dict[str, str]] = None,
                allow_redirects: bool = True) -> requests.Response:
        """One request; any transport failure becomes an HTTPClientError (no status)."""
        try:
            return self.session.request(method, url, params=params, data=data, headers=headers,
                                        timeout=self.timeout, allow_redirects=allow_redirects)
        except requests.RequestException as e:
            raise HTTPClientError("%s %s failed - %s" % (method, url, e)) from None

    def get_plain(self, url: str, headers: Optional[Dict[str, str]] = None) -> Tuple[int, str, bytes]:
        """GET a plain http:// URL: (status, reason, body), no redirects followed.

        The hot path of nsqadmin (a page asks several nodes per request):
        keep-alive HTTP/1.1 connections of our own (idle ones kept per host,
        at most pool_size each; a small reader of the answer, see
        _PlainConnection) cost under a third of a `requests` call.  https:// URLs
        go through `request` (the session's TLS settings).  Same timeouts;
        any failure raises HTTPClientError.
        """
        if not url.startswith("http://"):
            resp = self.request("GET", url, headers=headers, allow_redirects=False)
            return resp.status_code, resp.reason or "", resp.content
        key, request = _plain_request(url, headers)
        for attempt in range(2):
            with self._idle_lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            reused = conn is not None
            try:
                if conn is None:
                    conn = _PlainConnection(key, self.connect_timeout, self.request_timeout)
                status, reason, body, keep = conn.get(request)
            except (OSError, ValueError) as e:
                if conn is not None:
                    conn.close()
                if reused and attempt == 0 and not isinstance(e, socket.timeout):
                    continue  # the server closed an idle connection: once more on a new one
                raise HTTPClientError("GET %s failed - %s" % (url, e or type(e).__name__)) from None
            self._release(key, conn, keep)
            return status, reason, body
        raise HTTPClientError("GET %s failed" % url)  # not reached: the loop returns or raises

    def get_plain_many(self, urls: Sequence[str], headers: Optional[Dict[str, str]] = None
                       ) -> List[Union[Tuple[int, str, bytes], HTTPClientError]]:
        """get_plain over several URLs at once from the calling thread, in URL order.

        Sends every request first (on idle keep-alive connections or new
        ones), then reads the answers: the nodes work in parallel and no
        thread hand-off is paid.  All reads share one deadline (connect +
        request timeout from the start), so N hung nodes cost one timeout,
        not N.  A failure is returned in its URL's place, not raised; URLs
        that are not plain http:// go through get_plain one by one.
        """
        deadline = time.monotonic() + self.connect_timeout + self.request_timeout
        out: List[Union[Tuple[int, str, bytes], HTTPClientError, None]] = [None] * len(urls)
        sent: List[Tuple[int, str, Tuple[str, int], bytes, "_PlainConnection", bool]] = []
        for i, url in enumerate(urls):
            if not url.startswith("http://"):
                continue
            key, request = _plain_request(url, headers)
            for attempt in range(2):
                with self._idle_lock:
                    idle = self._idle.get(key)
                    conn = idle.pop() if idle else None
                reused = conn is not None
                try:
                    if conn is None:
                        connect = max(0.001, min(self.connect_timeout, deadline - time.monotonic()))
                        conn = _PlainConnection(key, connect, self.request_timeout)
                    conn.send(request)
                except OSError as e:
                    if conn is not None:
                        conn.close()
                    if reused and attempt == 0:
                        continue
                    out[i] = HTTPClientError("GET %s failed - %s" % (url, e or type(e).__name__))
                    break
                sent.append((i, url, key, request, conn, reused))
                break
        for i, url, key, request, conn, reused in sent:
            try:
                conn.sock.settimeout(max(0.001, min(self.request_timeout, deadline - time.monotonic())))
                status, reason, body, keep = conn.read()
            except (OSError, ValueError) as e:
                conn.close()
                if reused and not isinstance(e, socket.timeout) and time.monotonic() < deadline:
                    try:  # the server had closed the idle connection: once more on a new one
                        out[i] = self.get_plain(url, headers)
                    except HTTPClientError as again:
                        out[i] = again
                else:
                    out[i] = HTTPClientError("GET %s failed - %s" % (url, e or type(e).__name__))
                continue
            conn.sock.settimeout(self.request_timeout)
            self._release(key, conn, keep)
            out[i] = (status, reason, body)
        for i, url in enumerate(urls):
            if out[i] is None:
                try:
                    out[i] = self.get_plain(url, headers)
                except HTTPClientError as e:
                    out[i] = e
        return out  # type: ignore[return-value]

    def _release(self, key: Tuple[str, int], conn: "_PlainConnection", keep: bool) -> None:
        """Back to the idle list (when it may be kept and there is room), else closed."""
        if keep:
            with self._idle_lock:
                idle = self._idle.setdefault(key, [])
                keep = not self._closed and len(idle) < self._pool_size
                if keep:
                    idle.append(conn)
        if not keep:
            conn.close()

    def nsq_request(self, method: str, address_or_url: str, path: str = "", *,
                    params: Optional[Mapping[str, Any]] = None,
                    data: Union[bytes, str, None] = None) -> Any:
        """A request to an NSQ HTTP API; the decoded JSON answer (None for an empty body).

        Non-2xx answers raise HTTPClientError carrying the status and NSQ's
        `message` when the body has one; answers wrapped in the pre-1.0
        `{"status_code":..,"data":..}` envelope are unwrapped.
        """
        url = http_url(address_or_url, path) if path else address_or_url
        resp = self.request(method, url, params=params, data=data,
                            headers={"Accept": NSQ_ACCEPT})
        body = resp.content
        if not 200 <= resp.status_code < 300:
            raise HTTPClientError("%s %s - got response %d %s" % (method, url, resp.status_code,
                                                                  _error_text(body)),
                                  status=resp.status_code, body=body)
        if not body.strip():
            return None
        try:
            decoded = json.loads(body)
        except ValueError as e:
            raise HTTPClientError("%s %s - invalid JSON: %s" % (method, url, e),
                                  status=resp.status_code, body=body) from None
        return unwrap(decoded)

    def get_json(self, address_or_url: str, path: str = "", **params: Any) -> Any:
        """GET an NSQ endpoint and return its JSON (see nsq_request)."""
        return self.nsq_request("GET", address_or_url, path, params=params or None)

    def post(self, address_or_url: str, path: str = "", data: Union[bytes, str, None] = None,
             **params: Any) -> Any:
        """POST to an NSQ endpoint (body `data`) and return its JSON, if any."""
        return self.nsq_request("POST", address_or_url, path, params=params or None, data=data)

    def close(self) -> None:
        self.session.close()
        with self._idle_lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


def unwrap(decoded: Any) -> Any:
    """The data of a pre-1.0 `{"status_code": 200, "status_txt": .., "data": ..}` answer."""
    if isinstance(decoded, dict) and set(decoded) >= {"status_code", "data"} and len(decoded) <= 3:
        return decoded["data"]
    return decoded


def _error_text(body: bytes) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
        return decoded["message"]
    return body[:200].decode("utf-8", "replace").strip()


def _plain_request(url: str, headers: Optional[Dict[str, str]]) -> Tuple[Tuple[str, int], bytes]:
    """((host, port), the request's bytes) of a GET of a plain http:// URL."""
    parts = urlsplit(url)
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    head = "GET %s HTTP/1.1\r\nHost: %s\r\n" % (target, parts.netloc)
    for name, value in (headers or {}).items():
        head += "%s: %s\r\n" % (name, value)
    return (parts.hostname or "", parts.port or 80), (head + "\r\n").encode("latin-1")


class _PlainConnection:
    """One keep-alive HTTP/1.1 connection for get_plain: a GET and its whole answer.

    Reads the status line and headers itself (http.client's email-based
    header parser is most of a small GET's cost); bodies by Content-Length,
    chunked, or up to the close.  Malformed answers raise ValueError.
    """

    MAX_HEAD = 64 * 1024

    def __init__(self, key: Tuple[str, int], connect_timeout: float, request_timeout: float) -> None:
        self.sock = socket.create_connection(key, timeout=connect_timeout)
        self.sock.settimeout(request_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            if len(self.buf) > self.MAX_HEAD:
                raise ValueError("header line too long")
            if not self._fill():
                raise ConnectionResetError("connection closed mid-answer")

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionResetError("connection closed mid-body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def get(self, request: bytes) -> Tuple[int, str, bytes, bool]:
        """(status, reason, body, keep-alive) of one GET."""
        self.send(request)
        return self.read()

    def send(self, request: bytes) -> None:
        self.buf = b""
        self.sock.sendall(request)

    def read(self) -> Tuple[int, str, bytes, bool]:
        """The answer to the request sent: (status, reason, body, keep-alive)."""
        while True:
            status_line = self._line()
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise ValueError("bad status line %r" % status_line[:100])
            status = int(parts[1])
            reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
            length: Optional[int] = None
            chunked = False
            close = parts[0] == b"HTTP/1.0"
            size = 0
            while True:
                line = self._line()
                if not line:
                    break
                size += len(line)
                if size > self.MAX_HEAD:
                    raise ValueError("headers too long")
                name, sep, value = line.partition(b":")
                if not sep:
                    raise ValueError("bad header line %r" % line[:100])
                name = name.strip().lower()
                value = value.strip()
                if name == b"content-length":
                    if not value.isdigit():
                        raise ValueError("bad Content-Length %r" % value[:40])
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = value.lower() == b"chunked"
                elif name == b"connection":
                    tokens = [t.strip() for t in value.lower().split(b",")]
                    if b"close" in tokens:
                        close = True
                    elif b"keep-alive" in tokens and parts[0] == b"HTTP/1.0":
                        close = False
            if 100 <= status < 200 and status != 101:
                continue  # an interim answer (100 Continue): the real one follows
            break
        if status in (204, 304):
            body = b""
        elif chunked:
            pieces = []
            while True:
                size_line = self._line().split(b";", 1)[0].strip()
                try:
                    n = int(size_line, 16)
                except ValueError:
                    raise ValueError("bad chunk size %r" % size_line[:40]) from None
                if n == 0:
                    while self._line():
                        pass  # trailers
                    break
                pieces.append(self._take(n))
                if self._take(2) != b"\r\n":
                    raise ValueError("bad chunk end")
            body = b"".join(pieces)
        elif length is not None:
            body = self._take(length)
        else:
            while self._fill():
                pass
            body, self.buf, close = self.buf, b"", True
        return status, reason, body, not close and not self.buf
