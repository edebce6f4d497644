"""The auth server client: what a client's AUTH secret allows, cached for its TTL.

As NSQ's internal/auth: `AUTH <secret>` makes nsqd ask one of the
--auth-http-address servers (tried in a random rotation until one answers)
`GET /auth?common_name=..&remote_ip=..&secret=..&tls=..` (a full URL is
used as given, with the query appended), expecting
`{"ttl": N, "identity": .., "identity_url": .., "authorizations": [{"topic":
regex, "channels": [regex, ..], "permissions": ["subscribe", "publish"]}]}`.
The answer is kept on the client until its TTL runs out, then fetched again
with the same secret.  Regexes match anywhere in the name (Go's
`MatchString`, not anchored); publishing needs a channel regex that matches
the empty channel name.

The HTTP client (`http_client.py`, `requests` inside) is imported on first use.
"""
from __future__ import annotations

import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, List, Pattern, Sequence, Tuple
from urllib.parse import urlencode, urlsplit, urlunsplit

from .addresses import join_host_port

if TYPE_CHECKING:  # pragma: no cover
    from .options import Options

log = logging.getLogger(__name__)

PERMISSIONS = ("subscribe", "publish")
ACCEPT = "application/vnd.nsq; version=1.0"


class AuthError(Exception):
    """The auth servers could not be asked, or answered something unusable."""


@dataclass
class Authorization:
    topic: Pattern[str]
    channels: List[Pattern[str]]
    permissions: List[str]

    def is_allowed(self, topic: str, channel: str) -> bool:
        needed = "subscribe" if channel else "publish"
        if needed not in self.permissions:
            return False
        if not self.topic.search(topic):
            return False
        return any(c.search(channel) for c in self.channels)


@dataclass
class AuthState:
    ttl: int
    identity: str = ""
    identity_url: str = ""
    authorizations: List[Authorization] = field(default_factory=list)
    expires: float = 0.0  # time.monotonic() deadline

    def is_allowed(self, topic: str, channel: str) -> bool:
        return any(a.is_allowed(topic, channel) for a in self.authorizations)

    def is_expired(self) -> bool:
        return time.monotonic() >= self.expires


def endpoint(address: str, remote_ip: str, tls: bool, common_name: str, secret: str) -> str:
    """The request URL for one auth server (NSQ sorts the query keys)."""
    query = urlencode(sorted({"common_name": common_name, "remote_ip": remote_ip,
                              "secret": secret, "tls": "true" if tls else "false"}.items()))
    if "://" in address:
        return "%s?%s" % (address, query)
    return "http://%s/auth?%s" % (address, query)


def query_any(opts: "Options", remote_ip: str, tls: bool, common_name: str, secret: str) -> AuthState:
    """Ask the auth servers in a random rotation; the first good answer wins."""
    addresses: Sequence[str] = opts.auth_http_addresses
    if not addresses:
        raise AuthError("no auth servers")
    start = random.randrange(len(addresses))
    errors: List[str] = []
    for i in range(len(addresses)):
        address = addresses[(start + i) % len(addresses)]
        try:
            return query(opts, address, remote_ip, tls, common_name, secret)
        except AuthError as e:
            errors.append("failed to auth against %s - %s" % (address, e))
    raise AuthError("; ".join(errors))


def query(opts: "Options", address: str, remote_ip: str, tls: bool, common_name: str,
          secret: str) -> AuthState:
    """One auth server's answer, validated."""
    url = endpoint(address, remote_ip, tls, common_name, secret)
    status, body = _request(opts, url)
    if status == 403 and not url.startswith("https"):
        # NSQ's HTTP client: a 403 from plain HTTP may be TLS_REQUIRED; retry on its https_port
        url = _https_endpoint(url, body)
        status, body = _request(opts, url)
    if status != 200:
        raise AuthError("got response %d %r" % (status, body[:200]))
    try:
        data = json.loads(body)
    except ValueError as e:
        raise AuthError("invalid JSON - %s" % e) from None
    return parse_state(data)


def parse_state(data: Any) -> AuthState:
    """Validate an auth server's answer as NSQ does (permissions, regexes, TTL > 0)."""
    if not isinstance(data, dict):
        raise AuthError("cannot decode %s as an auth state" % type(data).__name__)
    ttl = data.get("ttl", 0)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl != int(ttl):
        raise AuthError("invalid TTL %r" % (ttl,))
    ttl = int(ttl)
    identity = data.get("identity") or ""
    identity_url = data.get("identity_url") or ""
    if not isinstance(identity, str) or not isinstance(identity_url, str):
        raise AuthError("invalid identity")
    raw = data.get("authorizations") or []
    if not isinstance(raw, list):
        raise AuthError("invalid authorizations")
    authorizations = []
    for item in raw:
        if not isinstance(item, dict):
            raise AuthError("invalid authorization %r" % (item,))
        permissions = item.get("permissions") or []
        channels = item.get("channels") or []
        topic = item.get("topic") or ""
        if not isinstance(permissions, list) or not isinstance(channels, list) or not isinstance(topic, str):
            raise AuthError("invalid authorization %r" % (item,))
        for p in permissions:
            if p not in PERMISSIONS:
                raise AuthError("unknown permission %s" % p)
        authorizations.append(Authorization(_compile("topic", topic),
                                            [_compile("channel", c) for c in channels],
                                            list(permissions)))
    if ttl <= 0:
        raise AuthError("invalid TTL %d (must be >0)" % ttl)
    return AuthState(ttl=ttl, identity=identity, identity_url=identity_url,
                     authorizations=authorizations, expires=time.monotonic() + ttl)


def _compile(kind: str, pattern: Any) -> Pattern[str]:
    if not isinstance(pattern, str):
        raise AuthError("unable to compile %s %r" % (kind, pattern))
    try:
        return re.compile(pattern)
    except re.error as e:
        raise AuthError("unable to compile %s %s %s" % (kind, json.dumps(pattern), e)) from None


def _https_endpoint(url: str, body: bytes) -> str:
    try:
        port = int(json.loads(body).get("https_port") or 0)
    except (ValueError, AttributeError, TypeError):
        port = 0
    parts = urlsplit(url)
    return urlunsplit(("https", join_host_port(parts.hostname or "", port), parts.path, parts.query,
                       parts.fragment))


def _request(opts: "Options", url: str) -> Tuple[int, bytes]:
    from .http_client import HTTPClient, HTTPClientError  # lazily: only nodes with an auth server need it

    verify: Any = opts.tls_root_ca_file or True
    cert = (opts.tls_cert, opts.tls_key) if opts.tls_cert and opts.tls_key else None
    method = "POST" if opts.auth_http_request_method == "post" else "GET"
    http = HTTPClient(opts.http_client_connect_timeout, opts.http_client_request_timeout, verify=verify, cert=cert)
    try:
        r = http.request(method, url, headers={"Accept": ACCEPT})
    except HTTPClientError as e:
        raise AuthError(_redact(str(e))) from None
    finally:
        http.close()
    return r.status_code, r.content


def _redact(url: str) -> str:
    """The URL without the secret, for logs."""
    return re.sub(r"secret=[^&]*", "secret=...", url)


def response_body(state: AuthState) -> bytes:
    """AUTH's answer: identity, identity_url and how many authorizations came back (Go's JSON)."""
    text = json.dumps({"identity": state.identity, "identity_url": state.identity_url,
                       "permission_count": len(state.authorizations)}, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")
