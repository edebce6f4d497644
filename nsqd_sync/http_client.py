"""The one HTTP client of the project: `requests`, with NSQ's timeouts and errors.

nsqd (auth servers, nsqlookupd), the client library (lookupd discovery),
the benchmarks, nsqadmin and the utilities all talk HTTP through this
module, so connect/request timeouts, TLS settings, the `Accept` header NSQ
sends and the unwrapping of NSQ's answers live in one place (NSQ's Go code:
`internal/http_api/api_request.go`).
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union
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
        self._idle: Dict[Tuple[str, int], List[http.client.HTTPConnection]] = {}
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
        stdlib keep-alive connections (idle ones kept per host, at most
        pool_size each) cost a third of a `requests` call.  https:// URLs
        go through `request` (the session's TLS settings).  Same timeouts;
        any failure raises HTTPClientError.
        """
        if not url.startswith("http://"):
            resp = self.request("GET", url, headers=headers, allow_redirects=False)
            return resp.status_code, resp.reason or "", resp.content
        parts = urlsplit(url)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        key = (parts.hostname or "", parts.port or 80)
        for attempt in range(2):
            with self._idle_lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            reused = conn is not None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(key[0], key[1], timeout=self.connect_timeout)
                    conn.connect()
                    conn.sock.settimeout(self.request_timeout)
                conn.request("GET", target, headers=headers or {})
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as e:
                if conn is not None:
                    conn.close()
                if reused and attempt == 0 and not isinstance(e, socket.timeout):
                    continue  # the server closed an idle connection: once more on a new one
                raise HTTPClientError("GET %s failed - %s" % (url, e or type(e).__name__)) from None
            keep = not resp.will_close
            if keep:
                with self._idle_lock:
                    idle = self._idle.setdefault(key, [])
                    keep = not self._closed and len(idle) < self._pool_size
                    if keep:
                        idle.append(conn)
            if not keep:
                conn.close()
            return resp.status, resp.reason or "", body
        raise HTTPClientError("GET %s failed" % url)  # not reached: the loop returns or raises

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
