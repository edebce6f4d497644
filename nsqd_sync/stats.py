"""The /stats model of a node, and its text and Prometheus views.

`node_stats()` walks the node once and returns NSQ's stats object exactly
as `GET /stats?format=json` answers it (same keys, same order, the same
`null`s): version, health, start_time, topics (sorted by name, each with
its channels sorted by name and, with include_clients, their clients),
memory (with include_mem) and producers.  Everything else is a view of
that dict: `format_text()` is `/stats` without `format=json`,
`format_prometheus()` is `/metrics`, and statsd.py sends its figures.

The `memory` object keeps NSQ's keys with the nearest Python figures:
heap_objects is the number of blocks pymalloc has allocated,
heap_in_use_bytes the resident set size, gc_pause_usec_* percentiles of the
last 256 cyclic-GC pauses and gc_total_runs the number of collections;
heap_idle_bytes, heap_released_bytes and next_gc_bytes have no Python
counterpart and are 0.
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Protocol, TYPE_CHECKING

from . import NSQ_VERSION, __version__, e2e
from .debug import rss_bytes
from .durations import format_duration_ns

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel
    from .client_v2 import ClientV2
    from .topic import Topic


# ---------------------------------------------------------------- the model

class StatsNode(Protocol):
    """What /stats reads from its node (nsqd.NSQD is the one)."""

    start_time: Any
    health_error: Any

    def client_list(self, *args: Any, **kwargs: Any) -> Any: ...
    def get_existing_topic(self, *args: Any, **kwargs: Any) -> Any: ...
    def is_healthy(self, *args: Any, **kwargs: Any) -> Any: ...
    def topic_list(self, *args: Any, **kwargs: Any) -> Any: ...


def health_text(nsqd: "StatsNode") -> str:
    """NSQ's health string: `OK` or `NOK - <error>`."""
    return "OK" if nsqd.is_healthy() else "NOK - %s" % nsqd.health_error


def node_stats(nsqd: "StatsNode", topic: str = "", channel: str = "", include_clients: bool = True,
               include_mem: bool = True) -> Dict[str, Any]:
    """NSQ's /stats object for the whole node or one topic (and one channel)."""
    topics: Optional[List[Dict[str, Any]]] = None  # null when the asked-for topic does not exist
    real_topics: Optional[List["Topic"]]
    if topic:
        found = nsqd.get_existing_topic(topic)
        real_topics = [found] if found is not None else None
    else:
        real_topics = sorted(nsqd.topic_list(), key=lambda t: t.name)
    if real_topics is not None:
        topics = []
        for t in real_topics:
            if channel:
                c = t.get_existing_channel(channel)
                if c is None:
                    continue
                channels = [c]
            else:
                channels = sorted(t.channel_list(), key=lambda c: c.name)
            topics.append(topic_stats(t, [channel_stats(c, include_clients, topic) for c in channels]))
    out: Dict[str, Any] = {
        "version": NSQ_VERSION,
        "health": health_text(nsqd),
        "start_time": int(nsqd.start_time),
        "topics": topics,
    }
    if include_mem:
        out["memory"] = memory_stats()
    producers = None
    if include_clients:
        for client in nsqd.client_list():
            if client.pub_counts:
                if producers is None:
                    producers = []
                producers.append(client_stats(client, topic))
    out["producers"] = producers
    return out


def topic_stats(topic: "Topic", channels: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "topic_name": topic.name,
        "channels": channels,
        "depth": topic.depth(),
        "backend_depth": topic.backend.depth(),
        "message_count": topic.message_count,
        "message_bytes": topic.message_bytes,
        "paused": topic.paused,
        "e2e_processing_latency": e2e.aggregate(c.e2e for c in topic.channel_list()) or dict(e2e.EMPTY),
    }


def channel_stats(channel: "Channel", include_clients: bool, topic_filter: str = "") -> Dict[str, Any]:
    members = channel.client_list()
    clients = None
    if include_clients:
        clients = [client_stats(c, topic_filter) for c in members]
    return {
        "channel_name": channel.name,
        "depth": channel.depth(),
        "backend_depth": channel.backend.depth(),
        "in_flight_count": channel.in_flight_count(),
        "deferred_count": channel.deferred_count(),
        "message_count": channel.message_count,
        "requeue_count": channel.requeue_count,
        "timeout_count": channel.timeout_count,
        "client_count": len(members),
        "clients": clients,
        "paused": channel.paused,
        "e2e_processing_latency": channel.e2e.stats() or dict(e2e.EMPTY),
    }


def client_stats(client: "ClientV2", topic_filter: str = "") -> Dict[str, Any]:
    """One V2 client as NSQ reports it (ClientV2Stats)."""
    out: Dict[str, Any] = {
        "client_id": client.client_id,
        "hostname": client.hostname,
        "version": "V2",
        "remote_address": client.remote_address,
        "state": client.state,  # NSQ's numbers (client_v2.STATE_*)
        "ready_count": client.rdy,
        "in_flight_count": len(client.in_flight),
        "message_count": client.message_count,
        "finish_count": client.finish_count,
        "requeue_count": client.requeue_count,
        "connect_ts": int(client.connect_time),
        "sample_rate": client.sample_rate,
        "deflate": bool(client.deflate),
        "snappy": bool(client.snappy),
        "user_agent": client.user_agent,
    }
    auth_state = client.auth_state
    if client.has_authorizations():
        out["authed"] = True
    if auth_state is not None:
        if auth_state.identity:
            out["auth_identity"] = auth_state.identity
        if auth_state.identity_url:
            out["auth_identity_url"] = auth_state.identity_url
    # NSQ 1.3.0 reports a single pub count (the first matching topic)
    for name, count in list(client.pub_counts.items()):
        if topic_filter and name != topic_filter:
            continue
        out["pub_counts"] = [{"topic": name, "count": count}]
        break
    out["tls"] = bool(client.tls)
    out["tls_cipher_suite"] = client.tls_cipher_suite
    out["tls_version"] = client.tls_version
    out["tls_negotiated_protocol"] = client.tls_negotiated_protocol
    out["tls_negotiated_protocol_is_mutual"] = bool(client.tls_negotiated_protocol_is_mutual)
    return out


# ---------------------------------------------------------------- memory

_gc_pauses: Deque[float] = deque(maxlen=256)  # seconds, like Go's MemStats.PauseNs ring
_gc_started: List[float] = []
_gc_lock = threading.Lock()
_gc_tracking = False


def _on_gc(phase: str, info: Dict[str, Any]) -> None:
    if phase == "start":
        _gc_started.append(time.perf_counter())
    elif _gc_started:
        _gc_pauses.append(time.perf_counter() - _gc_started.pop())


def install_gc_tracking() -> None:
    """Start timing cyclic-GC pauses (for gc_pause_usec_*); idempotent."""
    global _gc_tracking
    with _gc_lock:
        if not _gc_tracking:
            gc.callbacks.append(_on_gc)
            _gc_tracking = True


def _percentile(perc: float, values: List[int]) -> int:
    """NSQ's percentile() over a sorted list."""
    if not values:
        return 0
    index = int(perc / 100.0 * len(values) + 0.5)
    return values[min(index, len(values) - 1)]


def thread_count() -> int:
    """OS threads of this process (Python threads if /proc is not there)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Threads:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return threading.active_count()


def memory_stats() -> Dict[str, int]:
    pauses = sorted(int(p * 1e6) for p in list(_gc_pauses))
    return {
        "heap_objects": sys.getallocatedblocks(),
        "heap_idle_bytes": 0,
        "heap_in_use_bytes": rss_bytes(),
        "heap_released_bytes": 0,
        "gc_pause_usec_100": _percentile(100.0, pauses),
        "gc_pause_usec_99": _percentile(99.0, pauses),
        "gc_pause_usec_95": _percentile(95.0, pauses),
        "next_gc_bytes": 0,
        "gc_total_runs": sum(s.get("collections", 0) for s in gc.get_stats()),
    }


# ---------------------------------------------------------------- text view



def rfc3339(ts: float) -> str:
    """Local time as Go's time.RFC3339: 2026-11-23T08:28:13Z or ...+01:00."""
    t = time.localtime(ts)
    offset = t.tm_gmtoff or 0
    if offset == 0:
        zone = "Z"
    else:
        sign = "+" if offset > 0 else "-"
        hh, mm = divmod(abs(offset) // 60, 60)
        zone = "%s%02d:%02d" % (sign, hh, mm)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + zone


def _e2e_text(result: Optional[dict]) -> str:
    if not result or not result.get("percentiles"):
        return ""
    return ", ".join(e2e.human(p["value"]) for p in result["percentiles"])


def client_line(c: Dict[str, Any], now: float) -> str:
    """A client as NSQ's ClientV2Stats.String()."""
    connected = format_duration_ns(int(max(now - c["connect_ts"], 0)) * 10 ** 9)
    port = c["remote_address"].rpartition(":")[2]
    ident = "%s:%s %s" % (c["hostname"], port, c["user_agent"])
    pubs = c.get("pub_counts")
    if pubs:
        total = sum(p["count"] for p in pubs)
        topics = ",".join("%s=%d" % (p["topic"], p["count"]) for p in pubs)
        return "[%s %-21s] msgs: %-8d topics: %s connected: %s" % (c["version"], ident, total, topics, connected)
    return ("[%s %-21s] state: %d inflt: %-4d rdy: %-4d fin: %-8d re-q: %-8d msgs: %-8d connected: %s"
            % (c["version"], ident, c["state"], c["in_flight_count"], c["ready_count"], c["finish_count"],
               c["requeue_count"], c["message_count"], connected))


_MEM_KEYS = ("heap_objects", "heap_idle_bytes", "heap_in_use_bytes", "heap_released_bytes",
             "gc_pause_usec_100", "gc_pause_usec_99", "gc_pause_usec_95", "next_gc_bytes", "gc_total_runs")


def format_text(stats: Dict[str, Any], start_time: float, now: Optional[float] = None) -> str:
    """The plain-text /stats page, laid out as NSQ's printStats."""
    now = time.time() if now is None else now
    lines = [
        "nsqd v%s (built w/python%d.%d.%d)" % ((__version__,) + tuple(sys.version_info[:3])),
        "start_time %s" % rfc3339(start_time),
        "uptime %s" % format_duration_ns(int((now - start_time) * 1e9)),
        "",
        "Health: %s" % stats["health"],
    ]
    out = "\n".join(lines) + "\n"
    mem = stats.get("memory")
    if mem is not None:
        out += "\nMemory:\n"
        for key in _MEM_KEYS:
            out += "   %-25s\t%d\n" % (key, mem[key])
    topics = stats.get("topics") or []
    out += "\nTopics: None\n" if not topics else "\nTopics:"
    for t in topics:
        out += "\n%s[%-15s] depth: %-5d be-depth: %-5d msgs: %-8d e2e%%: %s\n" % (
            "*P " if t["paused"] else "   ", t["topic_name"], t["depth"], t["backend_depth"],
            t["message_count"], _e2e_text(t["e2e_processing_latency"]))
        for c in t["channels"]:
            out += ("%s[%-25s] depth: %-5d be-depth: %-5d inflt: %-4d def: %-4d re-q: %-5d timeout: %-5d "
                    "msgs: %-8d e2e%%: %s\n") % (
                "   *P " if c["paused"] else "      ", c["channel_name"], c["depth"], c["backend_depth"],
                c["in_flight_count"], c["deferred_count"], c["requeue_count"], c["timeout_count"],
                c["message_count"], _e2e_text(c["e2e_processing_latency"]))
            for client in c["clients"] or []:
                out += "        %s\n" % client_line(client, now)
    producers = stats.get("producers") or []
    if not producers:
        out += "\nProducers: None\n"
    else:
        out += "\nProducers:\n"
        for p in producers:
            out += "   %s\n" % client_line(p, now)
    return out


# ---------------------------------------------------------------- Prometheus view

_TOPIC_METRICS = (
    ("depth", "gauge", "Messages queued in the topic (memory + backend)."),
    ("backend_depth", "gauge", "Messages queued in the topic's diskqueue."),
    ("message_count", "counter", "Messages published to the topic."),
    ("message_bytes", "counter", "Bytes of message bodies published to the topic."),
    ("paused", "gauge", "1 if the topic is paused."),
    ("channel_count", "gauge", "Channels of the topic."),
)
_CHANNEL_METRICS = (
    ("depth", "gauge", "Messages queued in the channel (memory + backend)."),
    ("backend_depth", "gauge", "Messages queued in the channel's diskqueue."),
    ("in_flight_count", "gauge", "Messages sent to clients and not yet finished."),
    ("deferred_count", "gauge", "Deferred messages waiting for their time."),
    ("message_count", "counter", "Messages the channel received."),
    ("requeue_count", "counter", "Messages requeued by clients."),
    ("timeout_count", "counter", "In-flight messages that timed out."),
    ("client_count", "gauge", "Clients subscribed to the channel."),
    ("paused", "gauge", "1 if the channel is paused."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return "%d" % value
    return repr(float(value))


def format_prometheus(stats: Dict[str, Any], start_time: float, client_count: int) -> str:
    """The /metrics page: Prometheus text exposition format 0.0.4."""
    out: List[str] = []

    def family(name: str, kind: str, help_text: str, samples: List[str]) -> None:
        out.append("# HELP %s %s" % (name, help_text))
        out.append("# TYPE %s %s" % (name, kind))
        out.extend(samples)

    family("nsq_info", "gauge", "nsqd version (always 1).",
           ['nsq_info{version="%s"} 1' % _label(stats["version"])])
    family("nsq_healthy", "gauge", "1 if nsqd is healthy (/ping answers OK).",
           ["nsq_healthy %d" % (stats["health"] == "OK")])
    family("nsq_start_time_seconds", "gauge", "Start time of nsqd since the Unix epoch.",
           ["nsq_start_time_seconds %d" % int(start_time)])
    family("nsq_clients", "gauge", "Connected TCP clients.", ["nsq_clients %d" % client_count])
    topics = stats.get("topics") or []
    for key, kind, help_text in _TOPIC_METRICS:
        samples = []
        for t in topics:
            value = len(t["channels"]) if key == "channel_count" else t[key]
            samples.append('nsq_topic_%s{topic="%s"} %s' % (key, _label(t["topic_name"]), _num(value)))
        family("nsq_topic_" + key, kind, help_text, samples)
    for key, kind, help_text in _CHANNEL_METRICS:
        samples = []
        for t in topics:
            for c in t["channels"]:
                samples.append('nsq_channel_%s{topic="%s",channel="%s"} %s' % (
                    key, _label(t["topic_name"]), _label(c["channel_name"]), _num(c[key])))
        family("nsq_channel_" + key, kind, help_text, samples)
    latency: List[str] = []
    for t in topics:
        for c in [None] + list(t["channels"]):
            result = (c or t)["e2e_processing_latency"]
            labels = 'topic="%s"' % _label(t["topic_name"])
            if c is not None:
                labels += ',channel="%s"' % _label(c["channel_name"])
            for p in result.get("percentiles") or []:
                latency.append('nsq_e2e_processing_latency_seconds{%s,quantile="%s"} %s' % (
                    labels, _num(p["quantile"]), repr(p["value"] / 1e9)))
    family("nsq_e2e_processing_latency_seconds", "gauge",
           "End-to-end processing latency quantiles (topic rows merge their channels).", latency)
    mem = stats.get("memory") or memory_stats()
    family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
           ["process_resident_memory_bytes %d" % mem["heap_in_use_bytes"]])
    family("process_threads", "gauge", "Threads of the process.",
           ["process_threads %d" % thread_count()])
    times = os.times()
    family("process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.",
           ["process_cpu_seconds_total %s" % repr(round(times.user + times.system, 6))])
    family("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch.",
           ["process_start_time_seconds %d" % int(start_time)])
    family("python_gc_collections_total", "counter", "Cyclic garbage collector runs.",
           ["python_gc_collections_total %d" % mem["gc_total_runs"]])
    family("python_allocated_blocks", "gauge", "Memory blocks allocated by the Python allocator.",
           ["python_allocated_blocks %d" % mem["heap_objects"]])
    return "\n".join(out) + "\n"
