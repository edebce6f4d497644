"""`memory`: how much RSS a node spends per queued message.

Starts its own node (it needs the pid), creates the channel, measures the
idle RSS, queues --count messages with no consumer, waits until the channel
holds them all (its depth in /stats, or a steady RSS if the node has no
HTTP stats), and reads VmRSS and the peak VmHWM from /proc/<pid>/status.
RSS per queued message is (RSS - idle RSS) / count.

With --mem-queue-size large enough (the default: the count) everything stays
in memory.  With --overflow the node keeps its default memory queue, the
rest goes to disk, and RSS is sampled as the queue grows: it should stay
flat once the memory queue is full.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from ..http_client import HTTPClient, HTTPClientError
from .common import BenchError, Reporter, create_channels
from .node import BenchNode, wait_stable_rss
from . import writer

FLAT_BYTES_PER_MSG = 10.0  # growth per message, once the memory queue is full, counted as flat
NSQ_MEM_QUEUE_SIZE = 10000  # nsqd's default --mem-queue-size


@dataclass
class MemoryResult:
    count: int
    size: int
    mem_queue_size: Optional[int]
    idle_kb: int
    rss_kb: int
    peak_kb: int
    samples: List[Tuple[int, int]] = field(default_factory=list)  # (queued, VmRSS kB)

    @property
    def per_msg(self) -> float:
        return (self.rss_kb - self.idle_kb) * 1024.0 / self.count

    @property
    def peak_per_msg(self) -> float:
        return (self.peak_kb - self.idle_kb) * 1024.0 / self.count

    def overflow_span(self) -> Optional[Tuple[Tuple[int, int], Tuple[int, int]]]:
        """The first sample past twice the memory queue (topic and channel full), and the last."""
        mqs = self.mem_queue_size or NSQ_MEM_QUEUE_SIZE
        past = [s for s in self.samples if s[0] >= 2 * mqs]
        if len(past) < 2:
            return None
        return past[0], past[-1]

    @property
    def overflow_growth_per_msg(self) -> Optional[float]:
        """RSS growth per message once the memory queues are full (overflow runs)."""
        span = self.overflow_span()
        if span is None:
            return None
        (q0, r0), (q1, r1) = span
        return (r1 - r0) * 1024.0 / (q1 - q0)

    def lines(self) -> List[str]:
        mqs = "node default" if self.mem_queue_size is None else str(self.mem_queue_size)
        out = ["queued: %d x %dB - mem-queue-size: %s - idle RSS: %.1fMiB - RSS: %.1fMiB"
               " - peak RSS: %.1fMiB" % (self.count, self.size, mqs, self.idle_kb / 1024,
                                         self.rss_kb / 1024, self.peak_kb / 1024)]
        if self.samples and len(self.samples) > 1:
            for queued, rss in self.samples:
                out.append("queued: %d - RSS: %.1fMiB" % (queued, rss / 1024))
            span = self.overflow_span()
            growth = self.overflow_growth_per_msg
            if span is None or growth is None:
                out.append("too few messages to see the overflow: queue more than twice the"
                           " memory queue size (%d) in at least two steps"
                           % (self.mem_queue_size or NSQ_MEM_QUEUE_SIZE))
            else:
                (q0, r0), (q1, r1) = span
                out.append("RSS growth while overflowing to disk: %+.1fMiB from %d to %d queued"
                           " (%.1fB/msg) - %s" % ((r1 - r0) / 1024, q0, q1, growth,
                                                  "flat" if growth < FLAT_BYTES_PER_MSG
                                                  else "NOT flat"))
        else:
            out.append("RSS per queued message: %.1fB (peak %.1fB)"
                       % (self.per_msg, self.peak_per_msg))
        return out


def channel_depth(http_address: str, topic: str, channel: str) -> Optional[int]:
    """The channel's depth from /stats, or None if the node has no usable stats."""
    if not http_address:
        return None
    http = HTTPClient(5.0, 5.0)
    try:
        stats = http.get_json(http_address, "/stats", format="json", topic=topic, channel=channel)
    except HTTPClientError:
        return None
    finally:
        http.close()
    if not isinstance(stats, dict):
        return None
    for t in stats.get("topics") or []:
        if t.get("topic_name") == topic:
            for c in t.get("channels") or []:
                if c.get("channel_name") == channel:
                    return int(c.get("depth", 0))
    return None


def wait_queued(node: BenchNode, topic: str, channel: str, expected: int,
                timeout: float = 120.0) -> int:
    """Wait until the channel holds `expected` messages; returns the steady RSS (kB)."""
    deadline = time.monotonic() + timeout
    while True:
        node.check_alive()
        depth = channel_depth(node.http_address, topic, channel)
        if depth is None:
            break  # no stats: fall back to a steady RSS
        if depth >= expected:
            break
        if time.monotonic() > deadline:
            raise BenchError("memory: channel depth stuck at %d of %d" % (depth, expected))
        time.sleep(0.05)
    return wait_stable_rss(node, timeout=max(1.0, deadline - time.monotonic()))


def _publish(address: str, topic: str, size: int, batch: int, count: int) -> None:
    spec = {"address": address, "topic": topic, "size": size, "batch": batch,
            "runfor": 1e9, "count": count}
    state = writer.prepare(spec)
    writer.run(state, spec, time.monotonic_ns())


def bench_memory(command: Sequence[str], node_args: Sequence[str], topic: str, channel: str,
                 count: int, size: int, batch_size: int, mem_queue_size: int = 0,
                 overflow: bool = False, steps: int = 10,
                 reporter: Optional[Reporter] = None) -> MemoryResult:
    args = list(node_args)
    mqs: Optional[int] = None
    if mem_queue_size or not overflow:
        mqs = mem_queue_size or count
        args.append("--mem-queue-size=%d" % mqs)
    node = BenchNode(command, args, label="memory")
    try:
        create_channels(node.tcp_address, [(topic, channel)])
        idle = wait_stable_rss(node, settle=0.2)
        samples: List[Tuple[int, int]] = []
        queued = 0
        n_steps = steps if overflow else 1
        for i in range(n_steps):
            n = count * (i + 1) // n_steps - queued
            if n <= 0:
                continue
            _publish(node.tcp_address, topic, size, batch_size, n)
            queued += n
            rss = wait_queued(node, topic, channel, queued)
            samples.append((queued, rss))
        result = MemoryResult(count=count, size=size, mem_queue_size=mqs, idle_kb=idle,
                              rss_kb=samples[-1][1], peak_kb=node.peak_rss_kb(),
                              samples=samples if overflow else [])
    finally:
        node.stop()
    if reporter:
        for line in result.lines():
            reporter.line("memory", line)
    return result
