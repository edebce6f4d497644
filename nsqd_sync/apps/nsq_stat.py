"""nsq_stat: poll /stats of the nodes that have a topic and print one channel's totals.

The nodes come from --nsqd-http-address (those whose /stats has the topic)
or from nsqlookupd's /lookup; each node is then asked at its broadcast
address and HTTP port, as NSQ's tools do.  Every --interval the channel's
counters are added up over the nodes and printed in NSQ's columns, with the
header before the first report and every 25 polls; ingress and egress are
per-second rates over the interval.  The first poll only takes the
baseline, so `--count=N` prints N rows.

Where NSQ's tool exits on the first failed poll, this one logs the error,
prints no row for it and polls again (the next row takes a new baseline);
a failed poll still counts towards --count, and the exit status is then 1.
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from . import common
from ..addresses import join_host_port, split_host_port
from ..flags import Flag
from ..http_client import HTTPClientError

logger = logging.getLogger("nsqd_sync.apps.nsq_stat")

PROG = "nsq_stat"
HEADER_EVERY = 25

FLAGS: List[Flag] = [
    common.version_flag("print version"),
    common.topic_flag(),
    common.channel_flag(""),
    Flag("interval", "duration", 2.0, "duration of time between polling/printing output"),
    common.http_client_connect_timeout_flag(2.0),
    common.http_client_request_timeout_flag(5.0),
    Flag("count", "int", None, "number of reports", metavar="N", default_text="unlimited"),
    Flag("nsqd-http-address", "strlist", [], "nsqd HTTP address (may be given multiple times)", metavar="ADDR"),
    common.lookupd_http_address_flag(),
]

_COUNTERS = ("depth", "backend_depth", "in_flight_count", "deferred_count", "requeue_count",
             "timeout_count", "message_count", "client_count")


class PollError(Exception):
    """A poll that gave no channel totals (NSQ's tool's fatal errors)."""


@dataclass
class ChannelTotals:
    """One channel's counters added up over the nodes (NSQ's ChannelStats.Add)."""

    depth: int = 0
    backend_depth: int = 0
    in_flight_count: int = 0
    deferred_count: int = 0
    requeue_count: int = 0
    timeout_count: int = 0
    message_count: int = 0
    client_count: int = 0
    nodes: List[str] = field(default_factory=list)

    @property
    def memory_depth(self) -> int:
        return self.depth - self.backend_depth

    def add(self, node: str, stats: Dict[str, Any]) -> None:
        for key in _COUNTERS:
            setattr(self, key, getattr(self, key) + int(stats.get(key) or 0))
        self.nodes.append(node)


def header() -> str:
    return ("%s+%s+%s\n" % ("------rate------", "----------------depth----------------",
                            "--------------metadata---------------")
            + "%7s %7s | %7s %7s %7s %5s %5s | %7s %7s %12s %7s\n"
            % ("ingress", "egress", "total", "mem", "disk", "inflt", "def", "req", "t-o", "msgs", "clients"))


def row(now: ChannelTotals, before: ChannelTotals, interval: float) -> str:
    ingress = int((now.message_count - before.message_count) / interval)
    egress = int((now.message_count - before.message_count - (now.depth - before.depth)) / interval)
    return "%7d %7d | %7d %7d %7d %5d %5d | %7d %7d %12d %7d\n" % (
        ingress, egress, now.depth, now.memory_depth, now.backend_depth, now.in_flight_count,
        now.deferred_count, now.requeue_count, now.timeout_count, now.message_count, now.client_count)


class Poller:
    """Finds the topic's nodes and adds up the channel's /stats over them."""

    def __init__(self, http: Any, topic: str, channel: str, nsqd_http_addresses: Sequence[str],
                 lookupd_http_addresses: Sequence[str]) -> None:
        self.http = http
        self.topic = topic
        self.channel = channel
        self.nsqd = list(nsqd_http_addresses)
        self.lookupd = list(lookupd_http_addresses)

    def producers(self) -> List[str]:
        """HTTP addresses (broadcast address:http port) of the nodes with the topic."""
        found: List[str] = []
        errors: List[str] = []
        if self.lookupd:
            for addr in self.lookupd:
                try:
                    answer = self.http.get_json(addr, "/lookup", topic=self.topic)
                except HTTPClientError as e:
                    if e.status == 404:  # lookupd: no such topic
                        continue
                    errors.append(str(e))
                    continue
                for p in (answer or {}).get("producers") or []:
                    node = join_host_port(p["broadcast_address"], int(p["http_port"]))
                    if node not in found:
                        found.append(node)
            if len(errors) == len(self.lookupd):
                raise PollError("failed to get topic producers - failed to query any nsqlookupd: %s"
                                % "; ".join(errors))
        else:
            for addr in self.nsqd:
                try:
                    stats = self.http.get_json(addr, "/stats", format="json", topic=self.topic,
                                               include_clients="false")
                    if not any(t.get("topic_name") == self.topic for t in (stats or {}).get("topics") or []):
                        continue
                    info = self.http.get_json(addr, "/info") or {}
                except HTTPClientError as e:
                    errors.append(str(e))
                    continue
                host = info.get("broadcast_address")
                port = info.get("http_port")
                if not host or not port:
                    host, port = split_host_port(addr)
                node = join_host_port(host, int(port))
                if node not in found:
                    found.append(node)
            if errors and len(errors) == len(self.nsqd):
                raise PollError("failed to get topic producers - failed to query any nsqd: %s" % "; ".join(errors))
        for e in errors:
            logger.warning("failed to query a node: %s", e)
        return found

    def poll(self) -> ChannelTotals:
        producers = self.producers()
        totals: Optional[ChannelTotals] = None
        errors: List[str] = []
        for node in producers:
            try:
                stats = self.http.get_json(node, "/stats", format="json", topic=self.topic,
                                           channel=self.channel, include_clients="false")
            except HTTPClientError as e:
                errors.append(str(e))
                continue
            for t in (stats or {}).get("topics") or []:
                if t.get("topic_name") != self.topic:
                    continue
                for c in t.get("channels") or []:
                    if c.get("channel_name") == self.channel:
                        if totals is None:
                            totals = ChannelTotals()
                        totals.add(node, c)
        if producers and len(errors) == len(producers):
            raise PollError("failed to get nsqd stats - failed to query any nsqd: %s" % "; ".join(errors))
        if totals is None:
            raise PollError("failed to find channel(%s) in stats metadata for topic(%s)" % (self.channel, self.topic))
        return totals


class NSQStat(common.App):
    PROG = PROG
    FLAGS = FLAGS
    HELP = "nsq_stat: print a channel's totals over every nsqd of its topic, every --interval."
    STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def check(self) -> None:
        v = self.values
        if not v["topic"] or not v["channel"]:
            raise common.UsageError("--topic and --channel are required")
        if v["interval"] <= 0:
            raise common.UsageError("--interval should be positive")
        if v["count"] is not None and v["count"] <= 0:
            raise common.UsageError("--count should be positive")
        if not v["nsqd_http_address"] and not v["lookupd_http_address"]:
            raise common.UsageError("--nsqd-http-address or --lookupd-http-address required")
        if v["nsqd_http_address"] and v["lookupd_http_address"]:
            raise common.UsageError("use --nsqd-http-address or --lookupd-http-address not both")
        common.check_http_addresses(v["nsqd_http_address"], "--nsqd-http-address")
        common.check_http_addresses(v["lookupd_http_address"], "--lookupd-http-address")

    def start(self) -> None:
        v = self.values
        self.http = common.make_http_client(v)
        self.poller = Poller(self.http, v["topic"], v["channel"], v["nsqd_http_address"], v["lookupd_http_address"])
        self.stopping = threading.Event()
        self.spawn(self._loop, "poll")

    def _loop(self) -> None:
        interval = self.values["interval"]
        count = self.values["count"] or 0
        out = sys.stdout
        before: Optional[ChannelTotals] = None
        failed = False
        i = 0
        while count == 0 or i <= count:
            if i % HEADER_EVERY == 0:
                out.write(header())
                out.flush()
            try:
                now = self.poller.poll()
            except PollError as e:
                logger.error("%s", e)
                failed = True
                now = None
            if before is not None and now is not None:
                out.write(row(now, before, interval))
                out.flush()
            before = now
            i += 1
            if count and i > count:
                break
            if self.stopping.wait(interval):
                return
        self.finish(1 if failed else 0)

    def stop(self) -> None:
        self.stopping.set()
        self.http.close()


main = NSQStat.main

if __name__ == "__main__":  # pragma: no cover
    main()
