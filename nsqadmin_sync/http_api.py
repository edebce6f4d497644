"""nsqadmin's HTTP server: NSQ's JSON API and the server-rendered pages.

Routing, the JSON/error envelope and request bodies come from
`nsqd_sync.http_base`.  The read endpoints answer what the real nsqadmin
1.3.0 answers (Go: nsqadmin/http.go); the actions and their checks
(cross-site, --admin-user) are in actions.py; the pages' data and
templates in pages.py.
"""
from __future__ import annotations

import ipaddress
import logging
import mimetypes
import os
import posixpath
import socket
from http.server import ThreadingHTTPServer
from typing import Any, Dict, List, Tuple
from urllib.parse import urlencode

from nsqd_sync.http_base import HTTPError, NSQHTTPHandler, parse_json
from nsqd_sync.http_client import HTTPClientError

from . import pages
from .actions import MAX_BODY, ActionRoutes, maybe_warn
from .clusterinfo import ClusterError, TopicStats, search_producers
from .state import AdminState

log = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def join_base(base: str, p: str) -> str:
    """Go's path.Join(base, p)."""
    joined = posixpath.normpath(base + "/" + p)
    return "/" + joined.lstrip("/")


def build_routes(base: str) -> Dict[str, Tuple[Tuple[str, ...], str]]:
    bp = lambda p: join_base(base, p)  # noqa: E731
    get = ("GET",)
    page = ("GET", "POST")
    return {
        bp("/"): (get, "page_index"),
        bp("/ping"): (get, "handle_ping"),
        bp("/topics"): (get, "page_index"),
        bp("/topics/:topic"): (page, "page_topic"),
        bp("/topics/:topic/:channel"): (page, "page_channel"),
        bp("/nodes"): (get, "page_nodes"),
        bp("/nodes/:node"): (page, "page_node"),
        bp("/counter"): (get, "page_counter"),
        bp("/lookup"): (page, "page_lookup"),
        bp("/static/:asset"): (get, "handle_static"),
        bp("/fonts/:asset"): (get, "handle_static"),
        bp("/render"): (get, "handle_graphite_proxy"),
        bp("/api/topics"): (("GET", "POST"), "api_topics"),
        bp("/api/topics/:topic"): (("GET", "POST", "DELETE"), "api_topic"),
        bp("/api/topics/:topic/:channel"): (("GET", "POST", "DELETE"), "api_channel"),
        bp("/api/nodes"): (get, "api_nodes"),
        bp("/api/nodes/:node"): (("GET", "DELETE"), "api_node"),
        bp("/api/counter"): (get, "api_counter"),
        bp("/api/graphite"): (get, "api_graphite"),
        bp("/config/:opt"): (("GET", "PUT"), "handle_config"),
    }


class NSQAdminHTTPServer(ThreadingHTTPServer):
    """The HTTP listener of one nsqadmin (a pre-bound socket, one thread per connection)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, sock: socket.socket, admin: AdminState) -> None:
        self.admin = admin
        handler = type("NSQAdminHandler", (NSQAdminHandler,), {"routes": build_routes(admin.opts.base_path)})
        self.address_family = sock.family
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()

    def process_request(self, request: Any, client_address: Any) -> None:
        import threading

        name = "nsqadmin-http-%s:%s" % tuple(client_address[:2])
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             name=name, daemon=True)
        t.start()


class NSQAdminHandler(ActionRoutes, NSQHTTPHandler):
    """One HTTP connection to nsqadmin."""

    server: NSQAdminHTTPServer
    unlogged = frozenset({"handle_static"})

    @property
    def admin(self) -> AdminState:
        return self.server.admin

    # ------------------------------------------------------------ request helpers

    def upstream(self, what: str, result: Tuple[Any, ...], messages: List[str]) -> Any:
        """Unpack (value..., partial) and record a partial error's text."""
        *values, partial = result
        if partial is not None:
            log.warning("%s", partial)
            messages.append(str(partial))
        return values[0] if len(values) == 1 else tuple(values)

    def call_upstream(self, what: str, fn: Any, *args: Any) -> Tuple[Any, ...]:
        try:
            return fn(*args)
        except ClusterError as e:
            log.error("failed to %s - %s", what, e)
            raise HTTPError(502, "UPSTREAM_ERROR: %s" % e) from None

    # ------------------------------------------------------------ plain endpoints

    def handle_ping(self) -> None:
        self._send(200, b"OK", None, nsq_header=False)

    def handle_static(self) -> None:
        asset = self.params.get("asset", "")
        path = os.path.join(STATIC_DIR, asset)
        if asset.startswith(".") or "/" in asset or not os.path.isfile(path):
            raise HTTPError(404, "NOT_FOUND")
        with open(path, "rb") as f:
            body = f.read()
        ctype = mimetypes.guess_type(asset)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(200, body, ctype, nsq_header=False, extra={"Cache-Control": "max-age=300"})

    def handle_graphite_proxy(self) -> None:
        opts = self.admin.opts
        if not opts.proxy_graphite:
            raise HTTPError(404, "NOT_FOUND")
        url = opts.graphite_url.rstrip("/") + "/render" + ("?" + self.raw_query if self.raw_query else "")
        try:
            resp = self.admin.client.request("GET", url)
        except HTTPClientError as e:
            log.error("graphite proxy failed - %s", e)
            raise HTTPError(502, "BAD_GATEWAY") from None
        self._send(resp.status_code, resp.content, resp.headers.get("Content-Type"), nsq_header=False)

    # ------------------------------------------------------------ JSON API: reads

    @property
    def lookupds(self) -> List[str]:
        return self.admin.opts.lookupd_http_address

    @property
    def nsqds(self) -> List[str]:
        return self.admin.opts.nsqd_http_address

    def api_topics(self) -> None:
        if self.command == "POST":
            return self.action_create()
        ci = self.admin.ci
        messages: List[str] = []
        params = self.query()
        topics = self.upstream("", self.call_upstream("get topics", ci.get_topics, self.lookupds, self.nsqds),
                               messages)
        if self.get_param(params, "inactive") == "true":
            inactive: Dict[str, Any] = {}
            if self.lookupds:
                inactive = ci.get_lookupd_inactive_topics(topics or [], self.lookupds)
            self.send_json(200, {"topics": dict(sorted(inactive.items())), "message": maybe_warn(messages)})
            return
        self.send_json(200, {"topics": topics, "message": maybe_warn(messages)})

    def topic_stats(self, topic: str, messages: List[str]) -> TopicStats:
        """The topic merged over every node that has it (NSQ's topicHandler)."""
        ci = self.admin.ci
        producers = self.upstream("", self.call_upstream(
            "get topic producers", ci.get_topic_producers, topic, self.lookupds, self.nsqds), messages)
        topic_list, _ = self.upstream("", self.call_upstream(
            "get topic metadata", ci.get_nsqd_stats, producers, topic, "", False), messages)
        merged = TopicStats("", topic)
        for t in topic_list:
            merged.add(t)
        return merged

    def api_topic(self) -> None:
        if self.command == "POST":
            return self.action_topic_channel(self.params["topic"], "")
        if self.command == "DELETE":
            return self.action_delete_topic(self.params["topic"])
        messages: List[str] = []
        merged = self.topic_stats(self.params["topic"], messages)
        doc = merged.to_json()
        doc["message"] = maybe_warn(messages)
        self.send_json(200, doc)

    def api_channel(self) -> None:
        topic, channel = self.params["topic"], self.params["channel"]
        if self.command == "POST":
            return self.action_topic_channel(topic, channel)
        if self.command == "DELETE":
            return self.action_delete_channel(topic, channel)
        ci = self.admin.ci
        messages: List[str] = []
        producers = self.upstream("", self.call_upstream(
            "get topic producers", ci.get_topic_producers, topic, self.lookupds, self.nsqds), messages)
        _, channel_map = self.upstream("", self.call_upstream(
            "get channel metadata", ci.get_nsqd_stats, producers, topic, channel, True), messages)
        stats = channel_map.get(channel)
        doc = stats.to_json() if stats is not None else {}
        doc["message"] = maybe_warn(messages)
        self.send_json(200, doc)

    def api_nodes(self) -> None:
        messages: List[str] = []
        producers = self.upstream("", self.call_upstream(
            "get nodes", self.admin.ci.get_producers, self.lookupds, self.nsqds), messages)
        self.send_json(200, {"nodes": [p.to_json() for p in producers] if producers else None,
                             "message": maybe_warn(messages)})

    def api_node(self) -> None:
        node = self.params["node"]
        if self.command == "DELETE":
            return self.action_tombstone(node)
        ci = self.admin.ci
        messages: List[str] = []
        producers = self.upstream("", self.call_upstream(
            "get producers", ci.get_producers, self.lookupds, self.nsqds), messages)
        producer = search_producers(producers, node)
        if producer is None:
            raise HTTPError(404, "NODE_NOT_FOUND")
        try:
            topic_list, _, partial = ci.get_nsqd_stats([producer], "", "", True)
        except ClusterError as e:
            log.error("failed to get nsqd stats - %s", e)
            raise HTTPError(502, "UPSTREAM_ERROR: %s" % e) from None
        total_clients = sum(len(c.clients or []) for t in topic_list for c in t.channels or [])
        total_messages = sum(t.message_count for t in topic_list)
        self.send_json(200, {"node": node, "topics": [t.to_json() for t in topic_list] if topic_list else None,
                             "total_messages": total_messages, "total_clients": total_clients,
                             "message": maybe_warn(messages)})

    def api_counter(self) -> None:
        self.send_json(200, self.counter_stats())

    def counter_stats(self) -> Dict[str, Any]:
        ci = self.admin.ci
        messages: List[str] = []
        producers = self.upstream("", self.call_upstream(
            "get counter producer list", ci.get_producers, self.lookupds, self.nsqds), messages)
        _, channel_map = self.upstream("", self.call_upstream(
            "get nsqd stats", ci.get_nsqd_stats, producers, "", "", False), messages)
        stats: Dict[str, Dict[str, Any]] = {}
        for cs in channel_map.values():
            for node_stats in cs.node_stats or []:
                key = "%s:%s:%s" % (cs.topic_name, cs.channel_name, node_stats.node)
                entry = stats.setdefault(key, {"node": node_stats.node, "topic_name": cs.topic_name,
                                               "channel_name": cs.channel_name, "message_count": 0})
                entry["message_count"] += node_stats.message_count
        return {"stats": dict(sorted(stats.items())), "message": maybe_warn(messages)}

    def api_graphite(self) -> None:
        opts = self.admin.opts
        params = self.query()
        if self.get_param(params, "metric") != "rate":
            raise HTTPError(400, "INVALID_ARG_METRIC")
        target = self.get_param(params, "target")
        if target is None:
            raise HTTPError(400, "INVALID_ARG_TARGET")
        interval = int(opts.statsd_interval)
        query = urlencode(sorted({"from": "-%dsec" % (interval * 2), "until": "-%dsec" % interval,
                                  "format": "json", "target": target}.items()))
        url = opts.graphite_url + "/render?" + query
        log.info("GRAPHITE: %s", url)
        try:
            resp = self.admin.client.request("GET", url)
            if resp.status_code != 200:
                raise ValueError("got response %d" % resp.status_code)
            rate = float(resp.json()[0]["datapoints"][0][0])
        except (HTTPClientError, ValueError, TypeError, KeyError, IndexError) as e:
            log.error("graphite request failed - %s", e)
            raise HTTPError(500, "INTERNAL_ERROR") from None
        text = "N/A" if rate < 0 else "%.2f" % (rate / max(interval, 1))
        self.send_json(200, {"rate": text})

    def handle_config(self) -> None:
        opt = self.params["opt"]
        admin = self.admin
        network = admin.opts.config_cidr()
        if network is not None:
            try:
                ip = ipaddress.ip_address(str(self.client_address[0]).split("%")[0])
            except ValueError:
                raise HTTPError(400, "INVALID_REMOTE_ADDR") from None
            if ip.version == 6 and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if ip not in network:
                raise HTTPError(403, "FORBIDDEN")
        if self.command == "PUT":
            if self.is_cross_site():
                raise HTTPError(403, "CROSS_SITE_REQUEST_FORBIDDEN")
            body = self.read_body(MAX_BODY)
            if len(body) > MAX_BODY or not body:
                raise HTTPError(413, "INVALID_VALUE")
            if opt == "nsqlookupd_http_addresses":
                value = parse_json(body)
                if value is None:
                    value = []
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise HTTPError(400, "INVALID_VALUE")
                admin.set_options(lookupd_http_address=value)
            elif opt == "log_level":
                try:
                    from nsqd_sync.logs import parse_level

                    parse_level(body.decode("utf-8", "replace"))
                except ValueError:
                    raise HTTPError(400, "INVALID_VALUE") from None
                admin.set_options(log_level=body.decode("utf-8").strip().lower())
            else:
                raise HTTPError(400, "INVALID_OPTION")
        known, value = admin.opts.config_value(opt)
        if not known:
            raise HTTPError(400, "INVALID_OPTION")
        if isinstance(value, str):
            self._send(200, value.encode("utf-8"), None)
        else:
            self.send_json(200, value)

    # ------------------------------------------------------------ pages

    def page_index(self) -> None:
        self.render_page(pages.index_page)

    def page_topic(self) -> None:
        if self.command == "POST":
            return self.form_action()
        self.render_page(pages.topic_page, self.params["topic"])

    def page_channel(self) -> None:
        if self.command == "POST":
            return self.form_action()
        self.render_page(pages.channel_page, self.params["topic"], self.params["channel"])

    def page_nodes(self) -> None:
        self.render_page(pages.nodes_page)

    def page_node(self) -> None:
        if self.command == "POST":
            return self.form_action()
        self.render_page(pages.node_page, self.params["node"])

    def page_counter(self) -> None:
        self.render_page(pages.counter_page)

    def page_lookup(self) -> None:
        if self.command == "POST":
            return self.form_action()
        self.render_page(pages.lookup_page)

    def render_page(self, build: Any, *args: Any) -> None:
        params = self.query()
        flash = self.get_param(params, "message") or ""
        status, name, context = build(self, *args)
        self.send_html(status, name, context, flash=flash)

    def send_html(self, status: int, name: str, context: Dict[str, Any], flash: str = "") -> None:
        body = pages.render(self, name, context, flash)
        self._send(status, body.encode("utf-8"), "text/html; charset=utf-8", nsq_header=False,
                   extra={"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                          "Referrer-Policy": "same-origin",
                          "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                                     "style-src 'self'; script-src 'self'; "
                                                     "frame-ancestors 'none'; form-action 'self'"})
