"""nsqd's HTTP API on `http.server` (one thread per request).

Routes are looked up in `ROUTES` (path -> (allowed methods, handler method
name)); a `:name` segment matches any one segment.  Each handler method
answers one endpoint and either sends its answer or raises `HTTPError`.
Answers follow NSQ 1.3.0's v1 API whatever the client's Accept header:
errors are JSON `{"message":"CODE"}` with NSQ's status, a text result
(`OK` from /pub) is text/plain, a JSON result is application/json, and an
empty result is an empty 200.  As NSQ's router does, a wrong method gets
405 with an `Allow` header, OPTIONS gets the `Allow` header, a path that
differs from a route only by a trailing slash, doubled slashes or case is
redirected (301 for GET, 307 otherwise), and anything else is 404
NOT_FOUND.  Requests are logged as NSQ logs them (`200 GET /stats (addr)
1.2ms`), except publishing and the debug pages.

The deprecated `/put` and `/mput` paths are accepted as `/pub` and `/mpub`
(NSQ 1.3.0 dropped them; older introductions still use them).
"""
from __future__ import annotations

import json
import logging
import posixpath
import re
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple
from urllib.parse import unquote, unquote_to_bytes

from . import NSQ_VERSION, debug, logs, stats, wire
from .errors import BackendError, ExitingError
from .options import FLAGS

if TYPE_CHECKING:  # pragma: no cover
    from .nsqd import NSQD

log = logging.getLogger(__name__)


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


ROUTES: Dict[str, Tuple[Tuple[str, ...], str]] = {
    "/ping": (("GET",), "do_ping"),
    "/info": (("GET",), "do_info"),
    "/pub": (("POST",), "do_pub"),
    "/mpub": (("POST",), "do_mpub"),
    "/put": (("POST",), "do_put"),
    "/mput": (("POST",), "do_mput"),
    "/stats": (("GET",), "do_stats"),
    "/topic/create": (("POST",), "do_topic_create"),
    "/topic/delete": (("POST",), "do_topic_delete"),
    "/topic/empty": (("POST",), "do_topic_empty"),
    "/topic/pause": (("POST",), "do_topic_pause"),
    "/topic/unpause": (("POST",), "do_topic_pause"),
    "/channel/create": (("POST",), "do_channel_create"),
    "/channel/delete": (("POST",), "do_channel_delete"),
    "/channel/empty": (("POST",), "do_channel_empty"),
    "/channel/pause": (("POST",), "do_channel_pause"),
    "/channel/unpause": (("POST",), "do_channel_pause"),
    "/config/:opt": (("GET", "PUT"), "do_config"),
    "/metrics": (("GET",), "do_metrics"),
    "/debug/pprof/": (("GET",), "do_pprof_index"),
    "/debug/pprof/cmdline": (("GET",), "do_pprof_cmdline"),
    "/debug/pprof/goroutine": (("GET",), "do_pprof_goroutine"),
    "/debug/pprof/profile": (("GET",), "do_pprof_profile"),
    "/debug/pprof/heap": (("GET",), "do_pprof_heap"),
}

# handlers NSQ does not log (publishing is the hot path; pprof pages are not decorated)
UNLOGGED = frozenset(("do_pub", "do_mpub", "do_put", "do_mput", "do_metrics", "do_pprof_index",
                      "do_pprof_cmdline", "do_pprof_goroutine", "do_pprof_profile", "do_pprof_heap"))

BOOL_PARAMS = {"true": True, "1": True, "false": False, "0": False}
_INT = re.compile(r"[+-]?[0-9]+\Z")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_int32 = struct.Struct(">i")
MAX_DISCARD = 256 * 1024  # unread body bytes we drain to keep a connection (as Go's server)

_LOG_LEVEL_NUMBER = {"debug": 1, "info": 2, "warn": 3, "warning": 3, "error": 4, "fatal": 5}
_TLS_VERSIONS = {"ssl3.0": 0x0300, "tls1.0": 0x0301, "tls1.1": 0x0302, "tls1.2": 0x0303, "tls1.3": 0x0304}
_OPTION_ATTR = {"lookupd_tcp_address": "lookupd_tcp_addresses", "auth_http_address": "auth_http_addresses",
                "e2e_processing_latency_percentile": "e2e_processing_latency_percentiles"}
# flags NSQ's /config does not answer for
_NO_CONFIG = frozenset(("config", "version", "verbose", "worker-id", "auth-http-request-method"))


def _config_table() -> Dict[str, Tuple[str, str]]:
    """NSQ config name -> (Options attribute, flag kind)."""
    table = {}
    for f in FLAGS:
        if f.name in _NO_CONFIG or f.alias_of:
            continue
        name = "id" if f.name == "node-id" else (f.cfg or f.dest)
        table[name] = (_OPTION_ATTR.get(f.dest, f.dest), f.kind)
    return table


CONFIG_OPTIONS = _config_table()


def go_json(data: Any) -> bytes:
    """JSON as Go's encoding/json writes it (compact, <>& escaped, UTF-8)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")


def _go_number(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class NSQDHTTPHandler(BaseHTTPRequestHandler):
    """Dispatches each request to one method per endpoint."""

    server: "NSQDHTTPServer"
    protocol_version = "HTTP/1.1"
    server_version = "nsqd-sync"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("HTTP: %s %s", self.address_string(), format % args)

    def send_response(self, code: int, message: Optional[str] = None) -> None:
        """Status line and Date (no Server header, as Go's net/http)."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())
        self._status = code

    def handle_expect_100(self) -> bool:
        """Refuse a too-big publish before the client sends its body (no 100 Continue)."""
        limit = self._publish_limit()
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

    @staticmethod
    def match(path: str) -> Tuple[Optional[Tuple[Tuple[str, ...], str]], Dict[str, str]]:
        """The route for a path and its `:name` parameters."""
        route = ROUTES.get(path)
        if route is not None:
            return route, {}
        parts = path.split("/")
        for pattern, candidate in ROUTES.items():
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
        lowered = {p.lower(): p for p in ROUTES if ":" not in p}
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
        path = unquote(raw_path)
        route, self.params = self.match(path)
        handler_name = route[1] if route is not None else ""
        try:
            if route is None:
                target = self._redirect_target(path)
                if target is None:
                    raise HTTPError(404, "NOT_FOUND")
                self._redirect(method, target)
            elif method == "OPTIONS":
                self._send(200, b"", None, nsq_header=False, allow=route[0])
            elif method not in route[0]:
                self._allow = route[0]
                raise HTTPError(405, "METHOD_NOT_ALLOWED")
            else:
                getattr(self, handler_name)()
        except HTTPError as e:
            self.send_json(e.status, {"message": e.message}, allow=getattr(self, "_allow", None))
        except (ExitingError, BackendError):
            self.send_json(503, {"message": "EXITING"})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        except Exception:  # noqa: BLE001 - one request's bug must not kill the server
            log.exception("HTTP: %s %s failed", method, self.path)
            if not self._status:
                self.send_json(500, {"message": "INTERNAL_ERROR"})
            else:
                self.close_connection = True
        finally:
            self._finish_body()
        if handler_name not in UNLOGGED:
            log.info("%d %s %s (%s) %s", self._status, method, self.path,
                     "%s:%d" % self.client_address[:2], stats.go_duration(time.perf_counter_ns() - started))

    def _redirect(self, method: str, target: str) -> None:
        location = target + ("?" + self.raw_query if self.raw_query else "")
        if method == "GET":
            body = ('<a href="%s">Moved Permanently</a>.\n\n' % location.replace("&", "&amp;")).encode()
            self._send(301, body, "text/html; charset=utf-8", nsq_header=False, location=location)
        else:
            self._send(307, b"", None, nsq_header=False, location=location)

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
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._unread = -1
                raise HTTPError(400, "INVALID_REQUEST") from None
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

    def _publish_limit(self) -> Optional[int]:
        path = unquote(self.path.partition("?")[0])
        opts = self.server.nsqd.opts
        if path in ("/pub", "/put"):
            return opts.max_msg_size
        if path in ("/mpub", "/mput"):
            return opts.max_body_size
        return None

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

    def topic_from_query(self, params: Dict[str, List[str]]):
        """NSQ's getTopicFromQuery: validate `topic` and get (or create) it."""
        name = self.get_param(params, "topic")
        if name is None:
            raise HTTPError(400, "MISSING_ARG_TOPIC")
        if not wire.is_valid_topic_name(name):
            raise HTTPError(400, "INVALID_TOPIC")
        return self.server.nsqd.get_topic(name)

    def existing_topic_and_channel(self) -> Tuple[Any, str]:
        """NSQ's getExistingTopicFromQuery: validated topic (must exist) and channel name."""
        params = self.query()
        topic_name = self.get_param(params, "topic")
        if topic_name is None:
            raise HTTPError(400, "MISSING_ARG_TOPIC")
        if not wire.is_valid_topic_name(topic_name):
            raise HTTPError(400, "INVALID_ARG_TOPIC")
        channel_name = self.get_param(params, "channel")
        if channel_name is None:
            raise HTTPError(400, "MISSING_ARG_CHANNEL")
        if not wire.is_valid_channel_name(channel_name):
            raise HTTPError(400, "INVALID_ARG_CHANNEL")
        topic = self.server.nsqd.get_existing_topic(topic_name)
        if topic is None:
            raise HTTPError(404, "TOPIC_NOT_FOUND")
        return topic, channel_name

    # ------------------------------------------------------------ responses

    def _send(self, status: int, body: bytes, content_type: Optional[str], nsq_header: bool = True,
              allow: Optional[Tuple[str, ...]] = None, location: Optional[str] = None,
              extra: Optional[Dict[str, str]] = None) -> None:
        if self._status:
            return  # an answer was already sent
        self.send_response(status)
        if allow is not None:
            self.send_header("Allow", ", ".join(sorted(set(allow) | {"OPTIONS"})))
        if location is not None:
            self.send_header("Location", location)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        if nsq_header:
            self.send_header("X-Nsq-Content-Type", "nsq; version=1.0")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        pending = self._pending_body()
        if pending < 0 or pending > MAX_DISCARD:
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
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

    # ------------------------------------------------------------ endpoints: node

    def do_ping(self) -> None:
        nsqd = self.server.nsqd
        if nsqd.is_healthy():
            self.send_text(200, "OK", nsq_header=False)
        else:
            self.send_text(500, stats.health_text(nsqd), nsq_header=False)

    def do_info(self) -> None:
        nsqd = self.server.nsqd
        opts = nsqd.opts
        self.respond_v1({
            "version": NSQ_VERSION,
            "broadcast_address": opts.broadcast_address,
            "hostname": socket.gethostname(),
            "http_port": nsqd.http_address[1],
            "tcp_port": nsqd.tcp_address[1],
            "start_time": int(nsqd.start_time),
            "max_heartbeat_interval": int(round(opts.max_heartbeat_interval * 1e9)),
            "max_output_buffer_size": opts.max_output_buffer_size,
            "max_output_buffer_timeout": int(round(opts.max_output_buffer_timeout * 1e9)),
            "max_deflate_level": opts.max_deflate_level,
        })

    def do_stats(self) -> None:
        params = self.query()
        get = self.get_param
        json_format = get(params, "format") == "json"
        include_clients = BOOL_PARAMS.get(get(params, "include_clients") or "", True)
        include_mem = BOOL_PARAMS.get(get(params, "include_mem") or "", True)
        nsqd = self.server.nsqd
        data = stats.node_stats(nsqd, get(params, "topic") or "", get(params, "channel") or "",
                                include_clients, include_mem)
        if json_format:
            self.send_json(200, data)
        else:
            self.send_text(200, stats.format_text(data, nsqd.start_time))

    def do_metrics(self) -> None:
        nsqd = self.server.nsqd
        data = stats.node_stats(nsqd, include_clients=False, include_mem=True)
        text = stats.format_prometheus(data, nsqd.start_time, len(nsqd.client_list()))
        self.send_text(200, text, "text/plain; version=0.0.4; charset=utf-8", nsq_header=False)

    def do_config(self) -> None:
        nsqd = self.server.nsqd
        opt = self.params["opt"]
        if self.command == "PUT":
            limit = nsqd.opts.max_msg_size
            body = self.read_body(limit)
            if len(body) > limit or not body:
                raise HTTPError(413, "INVALID_VALUE")
            self._put_config(opt, body)
        if opt not in CONFIG_OPTIONS:
            raise HTTPError(400, "INVALID_OPTION")
        self.respond_v1(self.config_value(opt))

    def _put_config(self, opt: str, body: bytes) -> None:
        nsqd = self.server.nsqd
        if opt == "nsqlookupd_tcp_addresses":
            try:
                value = json.loads(body)
            except ValueError:
                raise HTTPError(400, "INVALID_VALUE") from None
            if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                raise HTTPError(400, "INVALID_VALUE")
            hook = getattr(nsqd, "on_lookupd_addresses_changed", None)
            if hook is not None:
                hook(list(value or []))
            nsqd.opts.lookupd_tcp_addresses = value
            log.info("CONFIG: nsqlookupd_tcp_addresses set to %s", value)
        elif opt == "log_level":
            text = body.decode("utf-8", "replace").lower()
            if text not in _LOG_LEVEL_NUMBER:
                raise HTTPError(400, "INVALID_VALUE")
            nsqd.opts.log_level = text
            logs.set_level(logs.parse_level(text))
        else:
            raise HTTPError(400, "INVALID_OPTION")

    def config_value(self, opt: str) -> Any:
        """An option as NSQ's /config answers it (durations in ns, enums as Go numbers)."""
        nsqd = self.server.nsqd
        opts = nsqd.opts
        attr, kind = CONFIG_OPTIONS[opt]
        value = getattr(opts, attr)
        if opt == "log_level":
            return _LOG_LEVEL_NUMBER.get(str(value).lower(), 2)
        if opt == "tls_required":
            return 1 if value == "tcp-https" else (2 if value else 0)
        if opt == "tls_min_version":
            return _TLS_VERSIONS.get(value, 0x0301)
        if opt == "broadcast_http_port":
            return value or nsqd.http_address[1]
        if opt == "broadcast_tcp_port":
            return value or nsqd.tcp_address[1]
        if opt == "statsd_prefix":
            from .statsd import statsd_prefix

            return statsd_prefix(opts, nsqd.http_address[1])
        if kind == "duration":
            return int(round(value * 1e9))
        if isinstance(value, list):
            return [_go_number(v) for v in value]
        if value is None and kind in ("strlist", "floatlist"):
            return None
        return value

    # ------------------------------------------------------------ endpoints: publishing

    def do_pub(self) -> None:
        nsqd = self.server.nsqd
        limit = nsqd.opts.max_msg_size
        if self._content_length() > limit:
            raise HTTPError(413, "MSG_TOO_BIG")
        body = self.read_body(limit)
        if len(body) > limit:
            raise HTTPError(413, "MSG_TOO_BIG")
        if not body:
            raise HTTPError(400, "MSG_EMPTY")
        params = self.query()
        topic = self.topic_from_query(params)
        delay = 0.0
        defer = self.get_param(params, "defer")
        if defer is not None:
            if not _INT.match(defer):
                raise HTTPError(400, "INVALID_DEFER")
            ms = int(defer)
            if ms < 0 or ms > nsqd.opts.max_req_timeout * 1000:
                raise HTTPError(400, "INVALID_DEFER")
            delay = ms / 1000.0
        if delay > 0:
            nsqd.publish_deferred(topic.name, body, delay)
        else:
            nsqd.publish(topic.name, [body])
        self.respond_v1("OK")

    def do_mpub(self) -> None:
        nsqd = self.server.nsqd
        opts = nsqd.opts
        if self._content_length() > opts.max_body_size:
            raise HTTPError(413, "BODY_TOO_BIG")
        params = self.query()
        topic = self.topic_from_query(params)
        binary = False
        values = params.get("binary")
        if values is not None:
            binary = BOOL_PARAMS.get(values[0], True)
            if values[0] not in BOOL_PARAMS:
                log.warning("deprecated value '%s' used for /mpub binary param", values[0])
        body = self.read_body(opts.max_body_size)
        bodies = self._split_binary(body) if binary else self._split_lines(body)
        if bodies:
            nsqd.publish(topic.name, bodies)
        self.respond_v1("OK")

    def _split_binary(self, body: bytes) -> List[bytes]:
        """The MPUB binary body; errors as NSQ's HTTP MPUB reports them (413 + code)."""
        opts = self.server.nsqd.opts
        if len(body) > opts.max_body_size:
            raise HTTPError(413, "BODY_TOO_BIG")
        if len(body) >= 4:
            (count,) = _int32.unpack_from(body, 0)
            if count <= 0 or count > (opts.max_body_size - 4) // 5:
                raise HTTPError(413, "BAD_BODY")
        try:
            bodies = wire.split_mpub_body(body)
        except ValueError as e:
            raise HTTPError(413, "BAD_BODY" if "message count" in str(e) else "BAD_MESSAGE") from None
        if any(len(b) > opts.max_msg_size for b in bodies):
            raise HTTPError(413, "BAD_MESSAGE")
        return bodies

    def _split_lines(self, body: bytes) -> List[bytes]:
        """Newline-separated messages; empty lines are skipped (as NSQ does)."""
        opts = self.server.nsqd.opts
        read_max = opts.max_body_size + 1
        lines = body.split(b"\n")
        max_msg = opts.max_msg_size
        if len(body) < read_max:
            bodies = [line for line in lines if line]
            if any(len(b) > max_msg for b in bodies):
                raise HTTPError(413, "MSG_TOO_BIG")
            return bodies
        total = 0
        bodies = []
        last = len(lines) - 1
        for i, line in enumerate(lines):
            total += len(line) + (1 if i < last else 0)
            if total >= read_max:
                raise HTTPError(413, "BODY_TOO_BIG")
            if not line:
                continue
            if len(line) > max_msg:
                raise HTTPError(413, "MSG_TOO_BIG")
            bodies.append(line)
        return bodies

    def _deprecated(self, old: str, new: str) -> None:
        warned = self.server.deprecation_warned
        if old not in warned:
            warned.add(old)
            log.warning("HTTP: %s is deprecated and will be removed, use %s", old, new)
        else:
            log.debug("HTTP: deprecated %s used", old)

    def do_put(self) -> None:
        self._deprecated("/put", "/pub")
        self.do_pub()

    def do_mput(self) -> None:
        self._deprecated("/mput", "/mpub")
        self.do_mpub()

    # ------------------------------------------------------------ endpoints: topics

    def do_topic_create(self) -> None:
        self.topic_from_query(self.query())
        self.respond_v1(None)

    def _topic_name_arg(self) -> str:
        name = self.get_param(self.query(), "topic")
        if name is None:
            raise HTTPError(400, "MISSING_ARG_TOPIC")
        return name

    def do_topic_delete(self) -> None:
        if not self.server.nsqd.delete_topic(self._topic_name_arg()):
            raise HTTPError(404, "TOPIC_NOT_FOUND")
        self.respond_v1(None)

    def do_topic_empty(self) -> None:
        name = self._topic_name_arg()
        if not wire.is_valid_topic_name(name):
            raise HTTPError(400, "INVALID_TOPIC")
        topic = self.server.nsqd.get_existing_topic(name)
        if topic is None:
            raise HTTPError(404, "TOPIC_NOT_FOUND")
        self._call_or_internal_error(topic.empty)
        self.respond_v1(None)

    def do_topic_pause(self) -> None:
        nsqd = self.server.nsqd
        topic = nsqd.get_existing_topic(self._topic_name_arg())
        if topic is None:
            raise HTTPError(404, "TOPIC_NOT_FOUND")
        unpause = "unpause" in self.path.partition("?")[0]
        self._call_or_internal_error(topic.unpause if unpause else topic.pause)
        log.info("TOPIC(%s): %s", topic.name, "unpaused" if unpause else "paused")
        self._persist_metadata()
        self.respond_v1(None)

    # ------------------------------------------------------------ endpoints: channels

    def do_channel_create(self) -> None:
        topic, channel_name = self.existing_topic_and_channel()
        topic.get_channel(channel_name)
        self.respond_v1(None)

    def do_channel_delete(self) -> None:
        topic, channel_name = self.existing_topic_and_channel()
        if not topic.delete_channel(channel_name):
            raise HTTPError(404, "CHANNEL_NOT_FOUND")
        self.respond_v1(None)

    def do_channel_empty(self) -> None:
        topic, channel_name = self.existing_topic_and_channel()
        channel = topic.get_existing_channel(channel_name)
        if channel is None:
            raise HTTPError(404, "CHANNEL_NOT_FOUND")
        self._call_or_internal_error(channel.empty)
        self.respond_v1(None)

    def do_channel_pause(self) -> None:
        topic, channel_name = self.existing_topic_and_channel()
        channel = topic.get_existing_channel(channel_name)
        if channel is None:
            raise HTTPError(404, "CHANNEL_NOT_FOUND")
        unpause = "unpause" in self.path.partition("?")[0]
        self._call_or_internal_error(channel.unpause if unpause else channel.pause)
        log.info("CHANNEL(%s:%s): %s", topic.name, channel.name, "unpaused" if unpause else "paused")
        self._persist_metadata()
        self.respond_v1(None)

    def _call_or_internal_error(self, fn) -> None:
        try:
            fn()
        except (OSError, BackendError) as e:
            log.error("failure in %s - %s", self.path.partition("?")[0], e)
            raise HTTPError(500, "INTERNAL_ERROR") from None

    def _persist_metadata(self) -> None:
        """Persist (un)pause at once, so a crash does not undo it (as NSQ does)."""
        nsqd = self.server.nsqd
        with nsqd.lock:
            nsqd.persist_metadata()

    # ------------------------------------------------------------ endpoints: debug

    def _send_debug(self, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
        self._send(200, text.encode("utf-8"), content_type, nsq_header=False,
                   extra={"X-Content-Type-Options": "nosniff"})

    def do_pprof_index(self) -> None:
        self._send_debug(debug.index_html(), "text/html; charset=utf-8")

    def do_pprof_cmdline(self) -> None:
        self._send_debug(debug.cmdline())

    def do_pprof_goroutine(self) -> None:
        self._send_debug(debug.thread_dump())

    def do_pprof_profile(self) -> None:
        seconds = debug.parse_seconds(self.query().get("seconds") or [])
        self._send_debug(debug.sample_profile(seconds, stop=self.server.nsqd.exit_event))

    def do_pprof_heap(self) -> None:
        params = self.query()
        try:
            limit = int((params.get("limit") or ["40"])[0])
        except ValueError:
            limit = 40
        group = (params.get("group") or ["lineno"])[0]
        stop = BOOL_PARAMS.get((params.get("stop") or ["0"])[0], False)
        self._send_debug(debug.heap_report(max(limit, 1), group, stop))


class NSQDHTTPServer(ThreadingHTTPServer):
    """The HTTP listener of one nsqd."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: Tuple[str, int], nsqd: "NSQD") -> None:
        self.nsqd = nsqd
        self.deprecation_warned: set = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        stats.install_gc_tracking()
        super().__init__(address, NSQDHTTPHandler)

