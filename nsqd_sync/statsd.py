"""Pushing the node's stats to statsd over UDP (`--statsd-address`).

Every `--statsd-interval` the `nsqd-statsd` thread takes one `node_stats()`
snapshot and sends NSQ's metric names with `--statsd-prefix` (`%s` is
replaced by `<broadcast-address>_<http-port>` with dots and colons turned
into underscores; a trailing `.` is added):

    topic.<t>.message_count|message_bytes            counters (delta since the last push)
    topic.<t>.depth|backend_depth                    gauges
    topic.<t>.e2e_processing_latency_<pp>            gauges, one per percentile
    topic.<t>.channel.<c>.message_count|requeue_count|timeout_count   counters
    topic.<t>.channel.<c>.depth|backend_depth|in_flight_count|deferred_count|clients  gauges
    topic.<t>.channel.<c>.e2e_processing_latency_<pp>
    mem.heap_objects, mem.heap_idle_bytes, ... mem.gc_runs   (with --statsd-mem-stats)

Lines (`name:value|c` or `|g`, newline-terminated) are packed into datagrams
of at most `--statsd-udp-packet-size` bytes (a longer line goes alone), and,
as NSQ does, the datagrams are spread over the interval minus one second.
`--statsd-exclude-ephemeral` skips `#ephemeral` topics and channels.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Protocol

from . import stats as stats_mod
from .options import Options, split_address

log = logging.getLogger(__name__)


class StatsdNode(stats_mod.StatsNode, Protocol):
    """What the statsd pusher reads from its node (nsqd.NSQD is the one): its /stats and address."""

    opts: Any
    http_address: Any

    def topic_list(self, *args: Any, **kwargs: Any) -> Any: ...


EPHEMERAL = "#ephemeral"
_MEM_GAUGES = ("heap_objects", "heap_idle_bytes", "heap_in_use_bytes", "heap_released_bytes",
               "gc_pause_usec_100", "gc_pause_usec_99", "gc_pause_usec_95", "next_gc_bytes")


def host_key(hostport: str) -> str:
    """statsd-safe form of host:port (NSQ's statsd.HostKey)."""
    return hostport.replace(".", "_").replace(":", "_")


def statsd_prefix(opts: Options, http_port: int) -> str:
    """--statsd-prefix with `%s` replaced by the host key and a trailing dot."""
    prefix = opts.statsd_prefix
    if not prefix:
        return ""
    port = opts.broadcast_http_port or http_port
    host = opts.broadcast_address
    hostport = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
    prefix = prefix.replace("%s", host_key(hostport))
    if not prefix.endswith("."):
        prefix += "."
    return prefix


def _percentile_name(q: float) -> str:
    return "%.0f" % (q * 100.0)


def metric_lines(prefix: str, current: Dict[str, Any], last: Optional[Dict[str, Any]],
                 exclude_ephemeral: bool, mem: Optional[Dict[str, int]] = None,
                 last_mem: Optional[Dict[str, int]] = None) -> List[bytes]:
    """The statsd lines for one push, counters as deltas against the last push."""
    lines: List[str] = []

    def incr(name: str, value: int) -> None:
        lines.append("%s%s:%d|c\n" % (prefix, name, value))

    def gauge(name: str, value: int) -> None:
        lines.append("%s%s:%d|g\n" % (prefix, name, value))

    last_topics = {t["topic_name"]: t for t in ((last or {}).get("topics") or [])}
    for topic in current.get("topics") or []:
        tname = topic["topic_name"]
        if exclude_ephemeral and tname.endswith(EPHEMERAL):
            continue
        last_topic = last_topics.get(tname, {})
        incr("topic.%s.message_count" % tname, topic["message_count"] - last_topic.get("message_count", 0))
        incr("topic.%s.message_bytes" % tname, topic["message_bytes"] - last_topic.get("message_bytes", 0))
        gauge("topic.%s.depth" % tname, topic["depth"])
        gauge("topic.%s.backend_depth" % tname, topic["backend_depth"])
        for p in topic["e2e_processing_latency"].get("percentiles") or []:
            gauge("topic.%s.e2e_processing_latency_%s" % (tname, _percentile_name(p["quantile"])), int(p["value"]))
        last_channels = {c["channel_name"]: c for c in last_topic.get("channels") or []}
        for channel in topic["channels"]:
            cname = channel["channel_name"]
            if exclude_ephemeral and cname.endswith(EPHEMERAL):
                continue
            last_channel = last_channels.get(cname, {})
            base = "topic.%s.channel.%s." % (tname, cname)
            incr(base + "message_count", channel["message_count"] - last_channel.get("message_count", 0))
            gauge(base + "depth", channel["depth"])
            gauge(base + "backend_depth", channel["backend_depth"])
            gauge(base + "in_flight_count", channel["in_flight_count"])
            gauge(base + "deferred_count", channel["deferred_count"])
            incr(base + "requeue_count", channel["requeue_count"] - last_channel.get("requeue_count", 0))
            incr(base + "timeout_count", channel["timeout_count"] - last_channel.get("timeout_count", 0))
            gauge(base + "clients", channel["client_count"])
            for p in channel["e2e_processing_latency"].get("percentiles") or []:
                gauge(base + "e2e_processing_latency_%s" % _percentile_name(p["quantile"]), int(p["value"]))
    if mem is not None:
        for key in _MEM_GAUGES:
            gauge("mem." + key, mem[key])
        incr("mem.gc_runs", mem["gc_total_runs"] - (last_mem or {}).get("gc_total_runs", 0))
    return [line.encode("utf-8") for line in lines]


def packets(lines: List[bytes], size: int) -> List[bytes]:
    """Pack whole lines into datagrams of at most size bytes (a longer line goes alone)."""
    out: List[bytes] = []
    buf: List[bytes] = []
    used = 0
    for line in lines:
        if len(line) > size - used and buf:
            out.append(b"".join(buf))
            buf, used = [], 0
        if len(line) > size:
            out.append(line)
            continue
        buf.append(line)
        used += len(line)
    if buf:
        out.append(b"".join(buf))
    return out


class StatsdPusher:
    """The `nsqd-statsd` thread: one push per --statsd-interval until stop()."""

    def __init__(self, nsqd: "StatsdNode") -> None:
        self.nsqd = nsqd
        self._stop = threading.Event()
        self._last: Optional[Dict[str, Any]] = None
        self._last_mem: Optional[Dict[str, int]] = None
        self._thread = threading.Thread(target=self._loop, name="nsqd-statsd", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        interval = self.nsqd.opts.statsd_interval
        next_push = time.monotonic() + interval
        while not self._stop.wait(max(next_push - time.monotonic(), 0.0)):
            try:
                self.push_once()
            except Exception:  # noqa: BLE001 - a failed push must not end the thread
                log.exception("STATSD: push failed")
            now = time.monotonic()
            next_push += interval
            while next_push <= now:  # a slow push skips ticks, like Go's ticker
                next_push += interval
        log.info("STATSD: closing")

    def push_once(self) -> None:
        """Collect one snapshot and send it (spread over the interval minus 1s)."""
        opts = self.nsqd.opts
        addr = opts.statsd_address
        try:
            host, port = split_address(addr, "statsd-address")
            family, _, _, _, sockaddr = socket.getaddrinfo(host or "127.0.0.1", port, 0, socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.connect(sockaddr)
        except (OSError, ValueError) as e:
            log.error("failed to create UDP socket to statsd(%s) - %s", addr, e)
            return
        try:
            log.info("STATSD: pushing stats to %s", addr)
            current = stats_mod.node_stats(self.nsqd, include_clients=False, include_mem=False)
            mem = stats_mod.memory_stats() if opts.statsd_mem_stats else None
            prefix = statsd_prefix(opts, self.nsqd.http_address[1])
            lines = metric_lines(prefix, current, self._last, opts.statsd_exclude_ephemeral, mem, self._last_mem)
            self._last = current
            if mem is not None:
                self._last_mem = mem
            datagrams = packets(lines, opts.statsd_udp_packet_size)
            spread = opts.statsd_interval - 1.0
            pause = spread / len(datagrams) if datagrams and spread > 0 else 0.0
            for data in datagrams:
                try:
                    sock.send(data)
                except OSError as e:  # e.g. ECONNREFUSED from an earlier datagram
                    log.debug("STATSD: send to %s failed - %s", addr, e)
                if pause and not self._stop.is_set():
                    self._stop.wait(pause)
        finally:
            sock.close()
