"""The one HTTP client of the project: `requests`, with NSQ's timeouts and errors.

nsqd (auth servers, nsqlookupd), the client library (lookupd discovery),
the benchmarks, nsqadmin and the utilities all talk HTTP through this
module, so connect/request timeouts, TLS settings, the `Accept` header NSQ
sends and the unwrapping of NSQ's answers live in one place (NSQ's Go code:
`internal/http_api/api_request.go`).
"""
from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Tuple, Union

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
