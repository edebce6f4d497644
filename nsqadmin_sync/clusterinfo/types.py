"""The cluster's records as NSQ's nsqadmin builds them (Go: internal/clusterinfo/types.go).

`Producer`, `TopicStats`, `ChannelStats`, `ClientStats` and
`E2eProcessingLatencyAggregate` are read from nsqlookupd's and nsqd's JSON
and merged across nodes with the same `add` rules as NSQ's, including its
aliasing (the aggregate of a topic reuses the first node's channel records),
so `to_json()` gives the same documents the real nsqadmin answers.  Go's
nil slices are kept as None (JSON null) and empty ones as [].
"""
from __future__ import annotations

import re
import time
from typing import Any, Dict, List, Optional, Tuple

from nsqd_sync.addresses import join_host_port


def _int(d: Dict[str, Any], key: str) -> int:
    v = d.get(key, 0)
    if type(v) is int:  # the usual case, first
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return 0
    return int(v)


def _str(d: Dict[str, Any], key: str) -> str:
    v = d.get(key, "")
    return v if type(v) is str else ""


def _bool(d: Dict[str, Any], key: str) -> bool:
    return d.get(key) is True


def _list(d: Dict[str, Any], key: str) -> Optional[list]:
    v = d.get(key)
    return v if isinstance(v, list) else None


def _go_append(base: Optional[list], extra: Optional[list]) -> Optional[list]:
    """Go's append(base, extra...): nil stays nil when nothing is added."""
    if not extra:
        return base
    return (base or []) + list(extra)


def _num(x: float) -> Any:
    """A float64 as Go's JSON writes it (integral values without a fraction)."""
    if x == x and abs(x) < 1e21 and x == int(x):
        return int(x)
    return x


_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def parse_version(text: str) -> Tuple[int, int, int, int, str]:
    """A sortable semver key; unparsable versions are 0.0.0 (as NSQ does)."""
    m = _SEMVER.match(text or "")
    if not m:
        return (0, 0, 0, 1, "")
    pre = m.group(4) or ""
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), 0 if pre else 1, pre)


# ---------------------------------------------------------------- e2e latency

class E2eProcessingLatencyAggregate:
    """Percentiles merged across nodes (Go: quantile.E2eProcessingLatencyAggregate)."""

    __slots__ = ("count", "percentiles", "topic", "channel", "addr")

    def __init__(self, count: int = 0, percentiles: Optional[List[Dict[str, float]]] = None,
                 topic: str = "", channel: str = "", addr: str = "") -> None:
        self.count = count
        self.percentiles = percentiles
        self.topic = topic
        self.channel = channel
        self.addr = addr

    @classmethod
    def from_json(cls, d: Any) -> Optional["E2eProcessingLatencyAggregate"]:
        if not isinstance(d, dict):
            return None
        count = _int(d, "count")
        raw = d.get("percentiles")
        if raw is None and len(d) <= 2:  # nsqd's usual {"count":0,"percentiles":null}
            return cls(count)
        raw = raw if isinstance(raw, list) else None
        percentiles = None
        if raw is not None:
            percentiles = []
            for p in raw:
                p = dict(p) if isinstance(p, dict) else {}
                value = float(p.get("value", 0) or 0)
                p = {k: float(v) for k, v in p.items() if isinstance(v, (int, float))}
                p.update(min=value, max=value, average=value, count=float(count))
                percentiles.append(p)
        return cls(count, percentiles, _str(d, "topic"), _str(d, "channel"), _str(d, "host"))

    def add(self, other: Optional["E2eProcessingLatencyAggregate"]) -> None:
        """Merge `other` in, averaging percentiles (Go: Add, quirks included)."""
        self.addr = "*"
        if other is None:
            return
        self.count += other.count
        for value in other.percentiles or []:
            p = self.percentiles
            found = None
            for entry in p or []:
                if entry.get("quantile", 0.0) == value.get("quantile", 0.0):
                    found = entry
                    break
            if found is None:
                found = {"quantile": value.get("quantile", 0.0)}
                self.percentiles = (p or []) + [found]
            found["max"] = max(value.get("max", 0.0), found.get("max", 0.0))
            found["min"] = min(value.get("max", 0.0), found.get("max", 0.0))
            found["count"] = found.get("count", 0.0) + value.get("count", 0.0)
            if found["count"] == 0:
                found["average"] = 0.0
                continue
            delta = value.get("average", 0.0) - found.get("average", 0.0)
            found["average"] = found.get("average", 0.0) + delta * value.get("count", 0.0) / found["count"]

    def to_json(self) -> Dict[str, Any]:
        percentiles = None
        if self.percentiles is not None:
            percentiles = [{k: _num(p[k]) for k in sorted(p)} for p in self.percentiles]
        return {"count": self.count, "percentiles": percentiles, "topic": self.topic,
                "channel": self.channel, "host": self.addr}


def _e2e_json(e: Optional[E2eProcessingLatencyAggregate]) -> Optional[Dict[str, Any]]:
    return e.to_json() if e is not None else None


# ---------------------------------------------------------------- producers

class ProducerTopic:
    __slots__ = ("topic", "tombstoned")

    def __init__(self, topic: str, tombstoned: bool = False) -> None:
        self.topic = topic
        self.tombstoned = tombstoned

    def to_json(self) -> Dict[str, Any]:
        return {"topic": self.topic, "tombstoned": self.tombstoned}


class Producer:
    """One nsqd as lookupd (or its own /info) describes it (Go: clusterinfo.Producer)."""

    def __init__(self, remote_address: str = "", hostname: str = "", broadcast_address: str = "",
                 tcp_port: int = 0, http_port: int = 0, version: str = "",
                 topics: Optional[List[ProducerTopic]] = None) -> None:
        self.remote_addresses: Optional[List[str]] = None
        self.remote_address = remote_address
        self.hostname = hostname
        self.broadcast_address = broadcast_address
        self.tcp_port = tcp_port
        self.http_port = http_port
        self.version = version
        self.version_obj = parse_version(version)
        self.topics = topics
        self.out_of_date = False

    @classmethod
    def from_lookupd(cls, d: Dict[str, Any]) -> "Producer":
        names = _list(d, "topics") or []
        tombstones = _list(d, "tombstones") or []
        topics = None
        for i, name in enumerate(names):
            topics = topics or []
            topics.append(ProducerTopic(str(name), bool(tombstones[i]) if i < len(tombstones) else False))
        return cls(_str(d, "remote_address"), _str(d, "hostname"), _str(d, "broadcast_address"),
                   _int(d, "tcp_port"), _int(d, "http_port"), _str(d, "version"), topics)

    def address(self) -> str:
        return self.remote_address or "N/A"

    def http_address(self) -> str:
        return join_host_port(self.broadcast_address, self.http_port)

    def tcp_address(self) -> str:
        return join_host_port(self.broadcast_address, self.tcp_port)

    def is_inconsistent(self, num_lookupd: int) -> bool:
        return len(self.remote_addresses or []) != num_lookupd

    def to_json(self) -> Dict[str, Any]:
        return {
            "remote_addresses": self.remote_addresses,
            "remote_address": self.remote_address,
            "hostname": self.hostname,
            "broadcast_address": self.broadcast_address,
            "tcp_port": self.tcp_port,
            "http_port": self.http_port,
            "version": self.version,
            "topics": [t.to_json() for t in self.topics] if self.topics is not None else None,
            "out_of_date": self.out_of_date,
        }


def search_producers(producers: Optional[List[Producer]], needle: str) -> Optional[Producer]:
    """The producer whose HTTP address is `needle` (Go: Producers.Search)."""
    for p in producers or []:
        if p.http_address() == needle:
            return p
    return None


# ---------------------------------------------------------------- clients

_CLIENT_FIELDS = (
    ("remote_address", _str), ("version", _str), ("client_id", _str), ("hostname", _str),
    ("user_agent", _str), ("connect_ts", _int),
)
_CLIENT_TAIL = (
    ("in_flight_count", _int), ("ready_count", _int), ("finish_count", _int),
    ("requeue_count", _int), ("message_count", _int), ("sample_rate", _int), ("deflate", _bool),
    ("snappy", _bool), ("authed", _bool), ("auth_identity", _str), ("auth_identity_url", _str),
    ("tls", _bool), ("tls_cipher_suite", _str), ("tls_version", _str),
    ("tls_negotiated_protocol", _str), ("tls_negotiated_protocol_is_mutual", _bool),
)


class ClientStats:
    """One consumer connection of a channel on one node (Go: clusterinfo.ClientStats)."""

    def __init__(self, d: Dict[str, Any], now: Optional[float] = None) -> None:
        self.node = _str(d, "node")
        self.fields: Dict[str, Any] = {}
        for key, get in _CLIENT_FIELDS + _CLIENT_TAIL:
            self.fields[key] = get(d, key)
        now = time.time() if now is None else now
        self.connected_ns = (int(now) - self.fields["connect_ts"]) * 1_000_000_000

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"node": self.node}
        for key, _ in _CLIENT_FIELDS:
            out[key] = self.fields[key]
        out["connected"] = self.connected_ns
        for key, _ in _CLIENT_TAIL:
            out[key] = self.fields[key]
        return out


# ---------------------------------------------------------------- channels and topics

class ChannelStats:
    """A channel on one node, or merged over nodes (node "*") (Go: clusterinfo.ChannelStats)."""

    def __init__(self, node: str = "", topic_name: str = "", channel_name: str = "") -> None:
        self.node = node
        self.hostname = ""
        self.topic_name = topic_name
        self.channel_name = channel_name
        self.depth = 0
        self.memory_depth = 0
        self.backend_depth = 0
        self.in_flight_count = 0
        self.deferred_count = 0
        self.requeue_count = 0
        self.timeout_count = 0
        self.message_count = 0
        self.client_count = 0
        self.node_stats: Optional[List["ChannelStats"]] = None
        self.clients: Optional[List[ClientStats]] = None
        self.paused = False
        self.e2e: Optional[E2eProcessingLatencyAggregate] = None
        self.extra: Dict[str, int] = {}  # counters newer nodes add (e.g. dead_lettered_count)

    @classmethod
    def from_json(cls, d: Dict[str, Any], now: float) -> "ChannelStats":
        c = cls("", "", _str(d, "channel_name"))  # node, hostname, topic: set by the caller
        c.depth = _int(d, "depth")
        c.memory_depth = _int(d, "memory_depth")
        c.backend_depth = _int(d, "backend_depth")
        c.in_flight_count = _int(d, "in_flight_count")
        c.deferred_count = _int(d, "deferred_count")
        c.requeue_count = _int(d, "requeue_count")
        c.timeout_count = _int(d, "timeout_count")
        c.message_count = _int(d, "message_count")
        c.client_count = _int(d, "client_count")
        for key in EXTRA_CHANNEL_COUNTERS:
            if key in d:
                c.extra[key] = _int(d, key)
        raw_clients = d.get("clients")
        if isinstance(raw_clients, list):
            c.clients = [ClientStats(x, now) for x in raw_clients if isinstance(x, dict)]
        c.paused = d.get("paused") is True
        c.e2e = E2eProcessingLatencyAggregate.from_json(d.get("e2e_processing_latency"))
        return c

    def add(self, a: "ChannelStats") -> None:
        """Merge one node's channel in (Go: ChannelStats.Add)."""
        self.node = "*"
        self.depth += a.depth
        self.memory_depth += a.memory_depth
        self.backend_depth += a.backend_depth
        self.in_flight_count += a.in_flight_count
        self.deferred_count += a.deferred_count
        self.requeue_count += a.requeue_count
        self.timeout_count += a.timeout_count
        self.message_count += a.message_count
        self.client_count += a.client_count
        for key, value in a.extra.items():
            self.extra[key] = self.extra.get(key, 0) + value
        if a.paused:
            self.paused = True
        self.node_stats = (self.node_stats or []) + [a]
        self.node_stats.sort(key=lambda c: c.hostname)
        if self.e2e is None:
            self.e2e = E2eProcessingLatencyAggregate(addr=self.node, topic=self.topic_name,
                                                     channel=self.channel_name)
        self.e2e.add(a.e2e)
        self.clients = _go_append(self.clients, a.clients)
        if self.clients:
            self.clients.sort(key=lambda c: c.hostname)

    def to_json(self) -> Dict[str, Any]:
        out = {
            "node": self.node, "hostname": self.hostname, "topic_name": self.topic_name,
            "channel_name": self.channel_name, "depth": self.depth,
            "memory_depth": self.memory_depth, "backend_depth": self.backend_depth,
            "in_flight_count": self.in_flight_count, "deferred_count": self.deferred_count,
            "requeue_count": self.requeue_count, "timeout_count": self.timeout_count,
            "message_count": self.message_count, "client_count": self.client_count,
            "nodes": [n.to_json() for n in self.node_stats] if self.node_stats is not None else None,
            "clients": [c.to_json() for c in self.clients] if self.clients is not None else None,
            "paused": self.paused,
            "e2e_processing_latency": _e2e_json(self.e2e),
        }
        return out


#: per-channel counters some nodes add to /stats; shown on the pages when present
EXTRA_CHANNEL_COUNTERS = ("dead_lettered_count",)


class TopicStats:
    """A topic on one node, or merged over nodes (node "*") (Go: clusterinfo.TopicStats)."""

    def __init__(self, node: str = "", topic_name: str = "") -> None:
        self.node = node
        self.hostname = ""
        self.topic_name = topic_name
        self.depth = 0
        self.memory_depth = 0
        self.backend_depth = 0
        self.message_count = 0
        self.node_stats: Optional[List["TopicStats"]] = None
        self.channels: Optional[List[ChannelStats]] = None
        self.paused = False
        self.e2e: Optional[E2eProcessingLatencyAggregate] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any], now: float) -> "TopicStats":
        t = cls("", _str(d, "topic_name"))  # node and hostname: set by the caller
        t.depth = _int(d, "depth")
        t.memory_depth = _int(d, "memory_depth")
        t.backend_depth = _int(d, "backend_depth")
        t.message_count = _int(d, "message_count")
        raw = _list(d, "channels")
        if raw is not None:
            t.channels = [ChannelStats.from_json(c, now) for c in raw if isinstance(c, dict)]
        t.paused = _bool(d, "paused")
        t.e2e = E2eProcessingLatencyAggregate.from_json(d.get("e2e_processing_latency"))
        return t

    def add(self, a: "TopicStats") -> None:
        """Merge one node's topic in (Go: TopicStats.Add; channel records are shared, as there)."""
        self.node = "*"
        self.depth += a.depth
        self.memory_depth += a.memory_depth
        self.backend_depth += a.backend_depth
        self.message_count += a.message_count
        if a.paused:
            self.paused = True
        for ac in a.channels or []:
            found = False
            for c in self.channels or []:
                if ac.channel_name == c.channel_name:
                    found = True
                    c.add(ac)
            if not found:
                self.channels = (self.channels or []) + [ac]
        self.node_stats = (self.node_stats or []) + [a]
        self.node_stats.sort(key=lambda t: t.hostname)
        if self.e2e is None:
            self.e2e = E2eProcessingLatencyAggregate(addr=self.node, topic=self.topic_name)
        self.e2e.add(a.e2e)

    def to_json(self) -> Dict[str, Any]:
        return {
            "node": self.node, "hostname": self.hostname, "topic_name": self.topic_name,
            "depth": self.depth, "memory_depth": self.memory_depth,
            "backend_depth": self.backend_depth, "message_count": self.message_count,
            "nodes": [n.to_json() for n in self.node_stats] if self.node_stats is not None else None,
            "channels": [c.to_json() for c in self.channels] if self.channels is not None else None,
            "paused": self.paused,
            "e2e_processing_latency": _e2e_json(self.e2e),
        }
