"""What nsq_to_http and nsq_to_nsq share: picking a destination and timing status lines.

* `Destinations` chooses where each message goes: `round-robin` (a counter
  over the list) or `hostpool` (go-hostpool's standard pool: round-robin
  over the hosts that answer; a host that fails is skipped for 30s, doubling
  per failure up to 15m, and all are tried again when every one is down).
  `epsilon-greedy` is accepted as NSQ does and treated as `hostpool`.
* `TimerMetrics` logs a status line every N requests, as bitly's
  timer_metrics does for NSQ's tools:
  `[aggregate]: finished 250 - 99th: 3.10ms - 95th: 2.02ms - avg: 1.12ms`.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["MODES", "Destinations", "TimerMetrics", "never_give_up"]

logger = logging.getLogger("nsqd_sync.apps")

MODES = ("hostpool", "round-robin", "epsilon-greedy")

#: go-hostpool's defaults
INITIAL_RETRY_DELAY = 30.0
MAX_RETRY_DELAY = 900.0


def never_give_up(values: Dict[str, Any]) -> Dict[str, Any]:
    """Consumer overrides for the relays: max_attempts 0 (never give a message up, so
    nothing undelivered is FIN'd) unless --consumer-opt=max_attempts,N says otherwise."""
    for item in values.get("consumer_opt", []):
        if item.partition(",")[0].replace("-", "_") == "max_attempts":
            return {}
    return {"max_attempts": 0}


class _Host:
    __slots__ = ("address", "dead", "retry_at", "retry_delay")

    def __init__(self, address: str) -> None:
        self.address = address
        self.dead = False
        self.retry_at = 0.0
        self.retry_delay = 0.0


class Destinations:
    """The destination for each message, per --mode."""

    def __init__(self, addresses: Sequence[str], mode: str = "hostpool") -> None:
        if not addresses:
            raise ValueError("no destination addresses")
        if mode not in MODES:
            raise ValueError("mode %r is not one of %s" % (mode, ", ".join(MODES)))
        self.addresses: List[str] = list(addresses)
        self.round_robin = mode == "round-robin"
        self._hosts = [_Host(a) for a in self.addresses]
        self._by_address: Dict[str, _Host] = {h.address: h for h in self._hosts}
        self._next = 0
        self._lock = threading.Lock()

    def get(self) -> str:
        """The address for the next message."""
        with self._lock:
            if self.round_robin:
                # Go: counter incremented first, so the first message goes to index 1
                self._next += 1
                return self.addresses[self._next % len(self.addresses)]
            now = time.monotonic()
            hosts = self._hosts
            if all(h.dead and h.retry_at > now for h in hosts):
                for h in hosts:  # everyone is down: try them all again
                    h.dead = False
                    h.retry_delay = 0.0
            n = len(hosts)
            for i in range(n):
                host = hosts[(self._next + i) % n]
                if not host.dead or host.retry_at <= now:
                    self._next = (self._next + i + 1) % n
                    return host.address
            host = hosts[self._next % n]  # not reached: the reset above left one alive
            self._next = (self._next + 1) % n
            return host.address

    def mark(self, address: str, ok: bool) -> None:
        """The result of a request to address (hostpool only)."""
        if self.round_robin:
            return
        with self._lock:
            host = self._by_address.get(address)
            if host is None:
                return
            if ok:
                host.dead = False
                host.retry_delay = 0.0
                return
            host.retry_delay = INITIAL_RETRY_DELAY if not host.dead else min(host.retry_delay * 2,
                                                                              MAX_RETRY_DELAY)
            host.dead = True
            host.retry_at = time.monotonic() + host.retry_delay


class TimerMetrics:
    """Request timings, logged every `status_every` requests (0 disables)."""

    def __init__(self, status_every: int, prefix: str) -> None:
        self.status_every = max(0, status_every)
        self.prefix = prefix
        self._timings: List[float] = []
        self._lock = threading.Lock()

    def status(self, start: float) -> None:
        """Record a request that began at `start` (time.monotonic())."""
        if self.status_every <= 0:
            return
        self.status_duration(time.monotonic() - start)

    def status_duration(self, seconds: float) -> Optional[str]:
        if self.status_every <= 0:
            return None
        with self._lock:
            self._timings.append(seconds)
            if len(self._timings) < self.status_every:
                return None
            timings, self._timings = sorted(self._timings), []
        n = len(timings)
        avg = sum(timings) * 1000.0 / n
        line = "%s finished %d - 99th: %.02fms - 95th: %.02fms - avg: %.02fms" % (
            self.prefix, n, _percentile(99.0, timings) * 1000.0, _percentile(95.0, timings) * 1000.0, avg)
        logger.info("%s", line)
        return line


def _percentile(perc: float, ordered: List[float]) -> float:
    """timer_metrics' percentile of a sorted list."""
    n = len(ordered)
    if n == 0:
        return 0.0
    index = int(math.ceil(perc / 100.0 * n + 0.5))
    return ordered[min(index, n - 1)]
