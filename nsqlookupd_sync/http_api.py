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

Routing, errors (`{"message": "CODE"}`, 405 with `Allow`, 404 NOT_FOUND,
near misses redirected) and answers come from `nsqd_sync.http_base`, with
the Go nsqlookupd's header order, router rules and body handling
(`go_header_order`, `exact_router`, `drain_request_body`).  Answers are the
v1 JSON whatever the Accept header says.
"""
from __future__ import annotations

import http.server
import logging
import socket
from typing import Any, Dict, List, Optional, Protocol, Tuple

from nsqd_sync import NSQ_VERSION
from nsqd_sync.http_base import HTTPError, NSQHTTPHandler, Route
from nsqd_sync.wire import is_valid_channel_name, is_valid_topic_name

from .registration_db import Registration, filter_by_active, filter_registrations, keys, subkeys
from .tcp import TrackedThreadingMixIn


logger = logging.getLogger(__name__)


class LookupdNode(Protocol):
    """What the HTTP API needs of its nsqlookupd (nsqlookupd.NSQLookupd is the one)."""

    db: Any
    opts: Any


class ReqParams:
    """A request's query parameters, answering NSQ's MISSING_ARG_* questions."""

    def __init__(self, values: Dict[str, List[str]]) -> None:
        self.values = values

    def get(self, key: str) -> Optional[str]:
        """The first value of key; None if the key is absent (present but empty is "")."""
        vals = self.values.get(key)
        return vals[0] if vals else None

    def require(self, key: str, missing: str) -> str:
        value = self.get(key)
        if value is None:
            raise HTTPError(400, missing)
        return value

    def topic_channel(self) -> Tuple[str, str]:
        topic = self.require("topic", "MISSING_ARG_TOPIC")
        if not is_valid_topic_name(topic):
            raise HTTPError(400, "INVALID_ARG_TOPIC")
        channel = self.require("channel", "MISSING_ARG_CHANNEL")
        if not is_valid_channel_name(channel):
            raise HTTPError(400, "INVALID_ARG_CHANNEL")
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


ROUTES: Dict[str, Route] = {
    "/ping": (("GET",), "route_ping"),
    "/info": (("GET",), "route_info"),
    "/debug": (("GET",), "route_debug"),
    "/lookup": (("GET",), "route_lookup"),
    "/topics": (("GET",), "route_topics"),
    "/channels": (("GET",), "route_channels"),
    "/nodes": (("GET",), "route_nodes"),
    "/topic/create": (("POST",), "route_topic_create"),
    "/topic/delete": (("POST",), "route_topic_delete"),
    "/topic/tombstone": (("POST",), "route_topic_tombstone"),
    "/channel/create": (("POST",), "route_channel_create"),
    "/channel/delete": (("POST",), "route_channel_delete"),
}


class APIHandler(NSQHTTPHandler):
    """One HTTP connection; `route_*` methods hold the endpoints, grouped by resource."""

    routes = ROUTES
    go_header_order = True
    exact_router = True
    drain_request_body = True
    server: LookupHTTPServer

    def req_params(self) -> ReqParams:
        return ReqParams(self.query())

    # ------------------------------------------------------------ node

    def route_ping(self) -> None:
        self.send_text(200, "OK", nsq_header=False)

    def route_info(self) -> None:
        self.respond_v1({"version": NSQ_VERSION})

    def route_debug(self) -> None:
        self.respond_v1(dict(sorted(self.server.nsqlookupd.db.debug().items())))

    # ------------------------------------------------------------ lookups

    def route_lookup(self) -> None:
        params = self.req_params()
        lookupd = self.server.nsqlookupd
        db, opts = lookupd.db, lookupd.opts
        topic = params.require("topic", "MISSING_ARG_TOPIC")
        if not db.find_registrations("topic", topic, ""):
            raise HTTPError(404, "TOPIC_NOT_FOUND")
        channels = subkeys(db.find_registrations("channel", topic, "*"))
        producers = filter_by_active(db.find_producers("topic", topic, ""),
                                     opts.inactive_producer_timeout, opts.tombstone_lifetime)
        self.respond_v1({"channels": channels, "producers": [p.peer_info.to_json() for p in producers]})

    def route_topics(self) -> None:
        self.respond_v1({"topics": keys(self.server.nsqlookupd.db.find_registrations("topic", "*", ""))})

    def route_channels(self) -> None:
        params = self.req_params()
        topic = params.require("topic", "MISSING_ARG_TOPIC")
        db = self.server.nsqlookupd.db
        self.respond_v1({"channels": subkeys(db.find_registrations("channel", topic, "*"))})

    def route_nodes(self) -> None:
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
        self.respond_v1({"producers": nodes})

    # ------------------------------------------------------------ topics

    def route_topic_create(self) -> None:
        params = self.req_params()
        topic = params.require("topic", "MISSING_ARG_TOPIC")
        if not is_valid_topic_name(topic):
            raise HTTPError(400, "INVALID_ARG_TOPIC")
        logger.info("DB: adding topic(%s)", topic)
        self.server.nsqlookupd.db.add_registration(Registration("topic", topic, ""))
        self.respond_v1(None)

    def route_topic_delete(self) -> None:
        params = self.req_params()
        topic = params.require("topic", "MISSING_ARG_TOPIC")
        db = self.server.nsqlookupd.db
        for r in db.find_registrations("channel", topic, "*"):
            logger.info("DB: removing channel(%s) from topic(%s)", r.subkey, topic)
            db.remove_registration(r)
        for r in db.find_registrations("topic", topic, ""):
            logger.info("DB: removing topic(%s)", topic)
            db.remove_registration(r)
        self.respond_v1(None)

    def route_topic_tombstone(self) -> None:
        params = self.req_params()
        topic = params.require("topic", "MISSING_ARG_TOPIC")
        node = params.require("node", "MISSING_ARG_NODE")
        logger.info("DB: setting tombstone for producer@%s of topic(%s)", node, topic)
        self.server.nsqlookupd.db.tombstone(topic, node)
        self.respond_v1(None)

    # ------------------------------------------------------------ channels

    def route_channel_create(self) -> None:
        params = self.req_params()
        topic, channel = params.topic_channel()
        db = self.server.nsqlookupd.db
        logger.info("DB: adding channel(%s) in topic(%s)", channel, topic)
        db.add_registration(Registration("channel", topic, channel))
        logger.info("DB: adding topic(%s)", topic)
        db.add_registration(Registration("topic", topic, ""))
        self.respond_v1(None)

    def route_channel_delete(self) -> None:
        params = self.req_params()
        topic, channel = params.topic_channel()
        db = self.server.nsqlookupd.db
        registrations = db.find_registrations("channel", topic, channel)
        if not registrations:
            raise HTTPError(404, "CHANNEL_NOT_FOUND")
        logger.info("DB: removing channel(%s) from topic(%s)", channel, topic)
        for r in registrations:
            db.remove_registration(r)
        self.respond_v1(None)
