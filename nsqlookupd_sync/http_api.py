"""nsqlookupd's HTTP API (port 4161), in NSQ's v1 shapes.

  GET  /ping                    OK (text/plain)
  GET  /info                    {"version"}
  GET  /debug                   every registration and its producers
  GET  /lookup?topic=           {"channels", "producers"} of a topic
  GET  /topics                  {"topics"}
  GET  /channels?topic=         {"channels"}
  GET  /nodes                   {"producers"} with each node's topics and tombstones
  POST /topic/create?topic=     and /topic/delete
  POST /channel/create?topic=&channel=   and /channel/delete
  POST /topic/tombstone?topic=&node=     node is broadcast_address:http_port

Errors are `{"message": "CODE"}`; a known path with the wrong method is 405
(with `Allow`), an unknown path 404 NOT_FOUND; a path that differs from a
route by a trailing slash, case or `.`/`//` segments is redirected to it, as
NSQ's router does.  Answers are the v1 JSON whatever the Accept header says.
"""
from __future__ import annotations

import http.server
import logging
import posixpath
import re
import socket
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple
from urllib.parse import unquote, unquote_plus

from nsqd_sync import NSQ_VERSION, gojson
from nsqd_sync.addresses import format_address
from nsqd_sync.durations import format_duration_ns
from nsqd_sync.http_base import GoFraming, chunk_size
from nsqd_sync.wire import is_valid_channel_name, is_valid_topic_name

from .registration_db import Registration, filter_by_active, filter_registrations, keys, subkeys
from .tcp import TrackedThreadingMixIn


logger = logging.getLogger(__name__)


class LookupdNode(Protocol):
    """What the HTTP API needs of its nsqlookupd (nsqlookupd.NSQLookupd is the one)."""

    db: Any
    opts: Any

JSON_TYPE = "application/json; charset=utf-8"
NSQ_CONTENT_TYPE = "nsq; version=1.0"


class APIError(Exception):
    """An API error: HTTP status and NSQ's message code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


class QueryError(ValueError):
    pass


_BAD_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})")


def parse_query(raw: str) -> Dict[str, List[str]]:
    """Go's url.ParseQuery: `&`-separated, `+` is a space; bad escapes or `;` are errors."""
    values: Dict[str, List[str]] = {}
    error: Optional[str] = None
    for part in raw.split("&"):
        if not part:
            continue
        if ";" in part:
            error = error or "invalid semicolon separator in query"
            continue
        key, _, value = part.partition("=")
        if _BAD_ESCAPE.search(key) or _BAD_ESCAPE.search(value):
            error = error or "invalid URL escape"
            continue
        values.setdefault(unquote_plus(key), []).append(unquote_plus(value))
    if error:
        raise QueryError(error)
    return values


class ReqParams:
    """A request's query parameters, answering NSQ's MISSING_ARG_* questions."""

    def __init__(self, query: str) -> None:
        try:
            self.values = parse_query(query)
        except QueryError:
            raise APIError(400, "INVALID_REQUEST") from None

    def get(self, key: str) -> Optional[str]:
        """The first value of key; None if the key is absent (present but empty is "")."""
        vals = self.values.get(key)
        return vals[0] if vals else None

    def require(self, key: str, missing: str) -> str:
        value = self.get(key)
        if value is None:
            raise APIError(400, missing)
        return value

    def topic_channel(self) -> Tuple[str, str]:
        topic = self.require("topic", "MISSING_ARG_TOPIC")
        if not is_valid_topic_name(topic):
            raise APIError(400, "INVALID_ARG_TOPIC")
        channel = self.require("channel", "MISSING_ARG_CHANNEL")
        if not is_valid_channel_name(channel):
            raise APIError(400, "INVALID_ARG_CHANNEL")
        return topic, channel


class LookupHTTPServer(TrackedThreadingMixIn, http.server.HTTPServer):
    """Serves the API on --http-address (a ThreadingHTTPServer)."""

    allow_reuse_address = True
    thread_name_prefix = "nsqlookupd-http"

    def __init__(self, sock: socket.socket, nsqlookupd: "LookupdNode") -> None:
        http.server.HTTPServer.__init__(self, sock.getsockname(), APIHandler,
                                        bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.address_family = sock.family
        self.server_address = sock.getsockname()
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port
        self.nsqlookupd = nsqlookupd
        self.init_tracking()


class APIHandler(GoFraming):
    """One HTTP connection; `route_*` methods hold the endpoints, grouped by resource."""

    protocol_version = "HTTP/1.1"
    server: LookupHTTPServer

    # path -> {method: handler method name}
    ROUTES: Dict[str, Dict[str, str]] = {
        "/ping": {"GET": "route_ping"},
        "/info": {"GET": "route_info"},
        "/debug": {"GET": "route_debug"},
        "/lookup": {"GET": "route_lookup"},
        "/topics": {"GET": "route_topics"},
        "/channels": {"GET": "route_channels"},
        "/nodes": {"GET": "route_nodes"},
        "/topic/create": {"POST": "route_topic_create"},
        "/topic/delete": {"POST": "route_topic_delete"},
        "/topic/tombstone": {"POST": "route_topic_tombstone"},
        "/channel/create": {"POST": "route_channel_create"},
        "/channel/delete": {"POST": "route_channel_delete"},
    }

    # ------------------------------------------------------------ plumbing

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        logger.debug("HTTP: %s - %s", self.address_string(), format % args)

    def log_request(self, code="-", size="-") -> None:
        pass  # each request is logged once by _dispatch, in NSQ's form

    def _dispatch(self) -> None:
        start = time.monotonic_ns()
        # the target as sent (http.server folds a leading "//" in self.path; NSQ redirects it)
        words = self.requestline.split()
        target = words[1] if len(words) >= 2 else self.path
        path, _, query = target.partition("?")
        self._read_body()
        status = self._route(path, query)
        if status is not None:  # redirects and OPTIONS answers are not logged, as in NSQ
            logger.info("%d %s %s (%s) %s", status, self.command, self.path,
                        format_address(self.client_address),
                        format_duration_ns(time.monotonic_ns() - start))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def _route(self, path: str, query: str) -> Optional[int]:
        methods = self.ROUTES.get(path)
        if methods is not None and self.command in methods:
            handler: Callable[[ReqParams], Optional[object]] = getattr(self, methods[self.command])
            try:
                payload = handler(ReqParams(query))
            except APIError as e:
                return self._send_error(e.status, e.message)
            except Exception:  # the boundary: report, keep serving
                logger.exception("HTTP: %s %s failed", self.command, self.path)
                return self._send_error(500, "INTERNAL_ERROR")
            if isinstance(payload, str):
                return self._send(200, [], payload.encode(), plain=True)
            return self._send_json(200, payload)
        if self._redirect(path, query):
            return None
        allowed = self._allowed(path)
        if allowed:
            allow = ", ".join(allowed)
            if self.command == "OPTIONS":
                self._send(200, [("Allow", allow)], b"")
                return None
            return self._send_error(405, "METHOD_NOT_ALLOWED", [("Allow", allow)])
        return self._send_error(404, "NOT_FOUND")

    def _allowed(self, path: str) -> List[str]:
        if path == "*":
            methods = {m for ms in self.ROUTES.values() for m in ms}
        else:
            methods = set(self.ROUTES.get(path, {}))
        if not methods:
            return []
        methods.add("OPTIONS")
        return sorted(methods)

    def _redirect(self, path: str, query: str) -> bool:
        """Redirect a near miss (trailing slash, case, unclean path) to the route."""
        method = self.command
        if method == "CONNECT" or path == "/":
            return False
        candidates = [p for p, ms in self.ROUTES.items() if method in ms]
        if not candidates:
            return False
        target = None
        toggled = path[:-1] if path.endswith("/") and len(path) > 1 else path + "/"
        if toggled in candidates:
            target = toggled
        else:
            cleaned = _clean_path(unquote(path))
            folded = {p.lower(): p for p in candidates}
            target = folded.get(cleaned.lower())
            if target is None and cleaned.endswith("/") and len(cleaned) > 1:
                target = folded.get(cleaned[:-1].lower())
        if target is None:
            return False
        location = target + ("?" + query if query else "")
        if method == "GET":
            body = ('<a href="%s">Moved Permanently</a>.\n\n' % _html_escape(location)).encode()
            self._send(301, [("Content-Type", "text/html; charset=utf-8"), ("Location", location)],
                       body)
        else:
            self._send(307, [("Location", location)], b"")
        return True

    def _read_body(self) -> None:
        """Read (and ignore) the request body so the connection stays usable."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = chunk_size(self.rfile.readline(65537))
                if size is None:
                    self.close_connection = True
                    return
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                self._discard(size + 2)
        length = self.headers.get("Content-Length")
        if length:
            try:
                self._discard(int(length))
            except ValueError:
                self.close_connection = True

    def _discard(self, n: int) -> None:
        while n > 0:
            chunk = self.rfile.read(min(n, 65536))
            if not chunk:
                self.close_connection = True
                return
            n -= len(chunk)

    def _send(self, status: int, headers: List[Tuple[str, str]], body: bytes,
              plain: bool = False) -> int:
        """Write a response with Go's header order; HEAD gets the headers only."""
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Length", str(len(body)))
        if plain:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        # headers and body in one write
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD" and body:
            self._headers_buffer.append(body)
        self.flush_headers()
        return status

    def _send_json(self, status: int, payload: Optional[object]) -> int:
        if payload is None:
            return self._send(status, [("X-Nsq-Content-Type", NSQ_CONTENT_TYPE)], b"")
        return self._send(status, [("Content-Type", JSON_TYPE),
                                   ("X-Nsq-Content-Type", NSQ_CONTENT_TYPE)],
                          gojson.dumps(payload))

    def _send_error(self, status: int, message: str,
                    extra: Optional[List[Tuple[str, str]]] = None) -> int:
        headers = list(extra or []) + [("Content-Type", JSON_TYPE),
                                       ("X-Nsq-Content-Type", NSQ_CONTENT_TYPE)]
        return self._send(status, headers, gojson.dumps({"message": message}))

    # ------------------------------------------------------------ node

    def route_ping(self, params: ReqParams) -> str:
        return "OK"

    def route_info(self, params: ReqParams) -> dict:
        return {"version": NSQ_VERSION}

    def route_debug(self, params: ReqParams) -> dict:
        return dict(sorted(self.server.nsqlookupd.db.debug().items()))

    # ------------------------------------------------------------ lookups

    def route_lookup(self, params: ReqParams) -> dict:
        lookupd = self.server.nsqlookupd
        db, opts = lookupd.db, lookupd.opts
        topic = params.require("topic", "MISSING_ARG_TOPIC")
        if not db.find_registrations("topic", topic, ""):
            raise APIError(404, "TOPIC_NOT_FOUND")
        channels = subkeys(db.find_registrations("channel", topic, "*"))
        producers = filter_by_active(db.find_producers("topic", topic, ""),
                                     opts.inactive_producer_timeout, opts.tombstone_lifetime)
        return {"channels": channels, "producers": [p.peer_info.to_json() for p in producers]}

    def route_topics(self, params: ReqParams) -> dict:
        return {"topics": keys(self.server.nsqlookupd.db.find_registrations("topic", "*", ""))}

    def route_channels(self, params: ReqParams) -> dict:
        topic = params.require("topic", "MISSING_ARG_TOPIC")
        db = self.server.nsqlookupd.db
        return {"channels": subkeys(db.find_registrations("channel", topic, "*"))}

    def route_nodes(self, params: ReqParams) -> dict:
        lookupd = self.server.nsqlookupd
        db, opts = lookupd.db, lookupd.opts
        # tombstoned nodes are listed (with their tombstone flags)
        producers = filter_by_active(db.find_producers("client", "", ""),
                                     opts.inactive_producer_timeout, 0)
        topic_producers: Dict[str, list] = {}
        nodes = []
        for p in producers:
            peer = p.peer_info
            topics = keys(filter_registrations(db.lookup_registrations(peer.id), "topic", "*", ""))
            tombstones = []
            for t in topics:
                if t not in topic_producers:
                    topic_producers[t] = db.find_producers("topic", t, "")
                flag = False
                for tp in topic_producers[t]:
                    if tp.peer_info is peer:
                        flag = tp.is_tombstoned(opts.tombstone_lifetime)
                tombstones.append(flag)
            node = peer.to_json()
            node["tombstones"] = tombstones
            node["topics"] = topics
            nodes.append(node)
        return {"producers": nodes}

    # ------------------------------------------------------------ topics

    def route_topic_create(self, params: ReqParams) -> None:
        topic = params.require("topic", "MISSING_ARG_TOPIC")
        if not is_valid_topic_name(topic):
            raise APIError(400, "INVALID_ARG_TOPIC")
        logger.info("DB: adding topic(%s)", topic)
        self.server.nsqlookupd.db.add_registration(Registration("topic", topic, ""))

    def route_topic_delete(self, params: ReqParams) -> None:
        topic = params.require("topic", "MISSING_ARG_TOPIC")
        db = self.server.nsqlookupd.db
        for r in db.find_registrations("channel", topic, "*"):
            logger.info("DB: removing channel(%s) from topic(%s)", r.subkey, topic)
            db.remove_registration(r)
        for r in db.find_registrations("topic", topic, ""):
            logger.info("DB: removing topic(%s)", topic)
            db.remove_registration(r)

    def route_topic_tombstone(self, params: ReqParams) -> None:
        topic = params.require("topic", "MISSING_ARG_TOPIC")
        node = params.require("node", "MISSING_ARG_NODE")
        logger.info("DB: setting tombstone for producer@%s of topic(%s)", node, topic)
        self.server.nsqlookupd.db.tombstone(topic, node)

    # ------------------------------------------------------------ channels

    def route_channel_create(self, params: ReqParams) -> None:
        topic, channel = params.topic_channel()
        db = self.server.nsqlookupd.db
        logger.info("DB: adding channel(%s) in topic(%s)", channel, topic)
        db.add_registration(Registration("channel", topic, channel))
        logger.info("DB: adding topic(%s)", topic)
        db.add_registration(Registration("topic", topic, ""))

    def route_channel_delete(self, params: ReqParams) -> None:
        topic, channel = params.topic_channel()
        db = self.server.nsqlookupd.db
        registrations = db.find_registrations("channel", topic, channel)
        if not registrations:
            raise APIError(404, "CHANNEL_NOT_FOUND")
        logger.info("DB: removing channel(%s) from topic(%s)", channel, topic)
        for r in registrations:
            db.remove_registration(r)


def _clean_path(path: str) -> str:
    """httprouter's CleanPath: one leading slash, no `.`/`..`/`//`, trailing slash kept."""
    if not path:
        return "/"
    cleaned = posixpath.normpath("/" + path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def _html_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("'", "&#39;"))
