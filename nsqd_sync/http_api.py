"""nsqd's HTTP API on `http.server` (one thread per request).

Routes are looked up in `ROUTES` (path -> (allowed methods, handler method
name)); a `:name` segment matches any one segment.  Each handler method
answers one endpoint and either sends its answer or raises `HTTPError`.
Answers follow NSQ 1.3.0's v1 API whatever the client's Accept header:
errors are JSON `{"message":"CODE"}` with NSQ's status, a text result
(`OK` from /pub) is text/plain, a JSON result is application/json, and an
empty result is an empty 200; a publish that fails (node exiting, backend
write error) is 503 EXITING.  Routing, bodies and the Go router's 404/405/
redirect behaviour are in http_base.py.  Requests are logged as NSQ logs
them (`200 GET /stats (addr) 1.2ms`), except publishing and the debug pages.

The deprecated `/put` and `/mput` paths are accepted as `/pub` and `/mpub`
(NSQ 1.3.0 dropped them; older introductions still use them).
"""
from __future__ import annotations

import logging
import re
import socket
import struct
from http.server import ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Protocol, Tuple

from . import NSQ_VERSION, debug, logs, stats, wire
from .errors import BackendError, ExitingError
from .http_base import BOOL_PARAMS, HTTPError, NSQHTTPHandler, Route, parse_json
from .options import FLAGS

log = logging.getLogger(__name__)


class HTTPNode(stats.StatsNode, Protocol):
    """What the HTTP API needs of its node (nsqd.NSQD is the one), /stats included."""

    opts: Any
    http_address: Any
    tcp_address: Any
    exit_event: Any
    lock: Any

    def client_list(self, *args: Any, **kwargs: Any) -> Any: ...
    def delete_topic(self, *args: Any, **kwargs: Any) -> Any: ...
    def get_topic(self, *args: Any, **kwargs: Any) -> Any: ...
    def on_lookupd_addresses_changed(self, *args: Any, **kwargs: Any) -> Any: ...
    def persist_metadata(self, *args: Any, **kwargs: Any) -> Any: ...
    def publish(self, *args: Any, **kwargs: Any) -> Any: ...
    def publish_deferred(self, *args: Any, **kwargs: Any) -> Any: ...
    def topic_list(self, *args: Any, **kwargs: Any) -> Any: ...



ROUTES: Dict[str, Route] = {
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

_INT = re.compile(r"[+-]?[0-9]+\Z")
_int32 = struct.Struct(">i")

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


def _go_number(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class NSQDHTTPHandler(NSQHTTPHandler):
    """One method per endpoint of nsqd's HTTP API."""

    server: "NSQDHTTPServer"
    routes = ROUTES
    unlogged = UNLOGGED
    server_version = "nsqd-sync"

    def body_limit(self, path: str) -> Optional[int]:
        opts = self.server.nsqd.opts
        if path in ("/pub", "/put"):
            return opts.max_msg_size
        if path in ("/mpub", "/mput"):
            return opts.max_body_size
        return None

    def error_for(self, exc: Exception) -> Optional[HTTPError]:
        """NSQ answers any failed publish (exiting topic, backend write error) with 503 EXITING."""
        if isinstance(exc, (ExitingError, BackendError)):
            return HTTPError(503, "EXITING")
        return None

    # ------------------------------------------------------------ topic and channel arguments

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
            value = parse_json(body)
            if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                raise HTTPError(400, "INVALID_VALUE")
            nsqd.on_lookupd_addresses_changed(list(value or []))
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
        if seconds > debug.MAX_PROFILE_SECONDS:
            self._send(400, ("profile duration exceeds the maximum of %gs\n" % debug.MAX_PROFILE_SECONDS).encode(),
                       "text/plain; charset=utf-8", nsq_header=False, extra={"X-Content-Type-Options": "nosniff"})
            return
        report = debug.run_profile(seconds, stop=self.server.nsqd.exit_event, gone=self.client_gone)
        if report is None:
            self._send(429, b"Could not enable CPU profiling: cpu profiling already in use\n",
                       "text/plain; charset=utf-8", nsq_header=False, extra={"X-Content-Type-Options": "nosniff"})
            return
        self._send_debug(report)

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

    def __init__(self, address: Tuple[str, int], nsqd: "HTTPNode") -> None:
        self.nsqd = nsqd
        self.deprecation_warned: set = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        stats.install_gc_tracking()
        super().__init__(address, NSQDHTTPHandler)
