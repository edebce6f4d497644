"""What nsq_to_http and nsq_to_nsq share: picking a destination and timing status lines.

* `Destinations` chooses where each message goes: `round-robin` (a counter
  over the list) or `hostpool` (go-hostpool's standard pool: round-robin
  over the hosts that answer; a host that fails is skipped for 30s, doubling
  per failure up to 15m, and all are tried again when every one is down),
  or `epsilon-greedy` (go-hostpool's NewEpsilonGreedy with its linear value
  calculator, as NSQ 1.3.0 builds it): with probability epsilon (0.3 at
  first, times 0.9 after each such pick, never below 0.01) the hostpool
  choice, which explores; otherwise a random pick among the hosts that can
  be tried, weighted by 1 / their average response time.  That average is
  over 120 buckets of 2.5s (5 minutes), newer buckets weighing more; only
  successful requests are timed.  go-hostpool records whole milliseconds (a
  host answering in under 1ms gets no weight); here the time is a float.
* `TimerMetrics` logs a status line every N requests, as bitly's
  timer_metrics does for NSQ's tools:
  `[aggregate]: finished 250 - 99th: 3.10ms - 95th: 2.02ms - avg: 1.12ms`.
"""
from __future__ import annotations

import logging
import math
import random
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

__all__ = ["MODES", "Destinations", "TimerMetrics", "never_give_up"]

logger = logging.getLogger("nsqd_sync.apps")

MODES = ("hostpool", "round-robin", "epsilon-greedy")

#: go-hostpool's defaults
INITIAL_RETRY_DELAY = 30.0
MAX_RETRY_DELAY = 900.0
#: go-hostpool's epsilon-greedy constants
EPSILON_BUCKETS = 120
EPSILON_DECAY = 0.90
MIN_EPSILON = 0.01
INITIAL_EPSILON = 0.3
DECAY_DURATION = 300.0


def never_give_up(values: Dict[str, Any]) -> Dict[str, Any]:
    """Consumer overrides for the relays: max_attempts 0 (never give a message up, so
    nothing undelivered is FIN'd) unless --consumer-opt=max_attempts,N says otherwise."""
    for item in values.get("consumer_opt", []):
        if item.partition(",")[0].replace("-", "_") == "max_attempts":
            return {}
    return {"max_attempts": 0}


class _Host:
    __slots__ = ("address", "dead", "retry_at", "retry_delay", "counts", "totals", "index")

    def __init__(self, address: str) -> None:
        self.address = address
        self.dead = False
        self.retry_at = 0.0
        self.retry_delay = 0.0
        # epsilon-greedy: successful requests and their summed milliseconds per time bucket
        self.counts = [0] * EPSILON_BUCKETS
        self.totals = [0.0] * EPSILON_BUCKETS
        self.index = 0

    def can_try(self, now: float) -> bool:
        return not self.dead or self.retry_at <= now

    def weighted_average_ms(self) -> float:
        """go-hostpool's weighted average: oldest bucket weight 1/120 ... current 120/120;
        an empty bucket counts as the last non-empty one before it."""
        value = last = 0.0
        for i in range(1, EPSILON_BUCKETS + 1):
            pos = (self.index + i) % EPSILON_BUCKETS
            if self.counts[pos]:
                last = self.totals[pos] / self.counts[pos]
            value += last * i / EPSILON_BUCKETS
        return value


class Destinations:
    """The destination for each message, per --mode."""

    def __init__(self, addresses: Sequence[str], mode: str = "hostpool",
                 rng: Optional[random.Random] = None, clock: Callable[[], float] = time.monotonic) -> None:
        if not addresses:
            raise ValueError("no destination addresses")
        if mode not in MODES:
            raise ValueError("mode %r is not one of %s" % (mode, ", ".join(MODES)))
        self.addresses: List[str] = list(addresses)
        self.round_robin = mode == "round-robin"
        self.epsilon_greedy = mode == "epsilon-greedy"
        self.epsilon = INITIAL_EPSILON
        self._rng = rng or random.Random()
        self._clock = clock
        self._bucket_seconds = DECAY_DURATION / EPSILON_BUCKETS
        self._next_decay = clock() + self._bucket_seconds
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
            now = self._clock()
            if self.epsilon_greedy:
                self._decay(now)
                if self._rng.random() < self.epsilon:  # explore: the standard pick
                    self.epsilon = max(self.epsilon * EPSILON_DECAY, MIN_EPSILON)
                else:
                    host = self._greedy(now)
                    if host is not None:
                        return host.address
            return self._standard(now)

    def _greedy(self, now: float) -> Optional[_Host]:
        """A host picked at random, weighted by 1 / its average response time (None: no timings)."""
        values = []
        for h in self._hosts:
            if h.can_try(now):
                avg = h.weighted_average_ms()
                if avg > 0:
                    values.append((h, 1.0 / avg))
        if not values:
            return None
        total = sum(v for _, v in values)
        pick = self._rng.random()
        ceiling = 0.0
        chosen = values[-1][0]  # rounding: the shares may sum to a hair under 1
        for h, v in values:
            ceiling += v / total
            if pick <= ceiling:
                chosen = h
                break
        return chosen  # a dead one whose retry time came: a failure doubles its wait (mark)

    def _decay(self, now: float) -> None:
        """Every DECAY_DURATION / EPSILON_BUCKETS, each host starts a new (empty) time bucket."""
        if now - self._next_decay > DECAY_DURATION:  # idle longer than all buckets: skip ahead
            self._next_decay = now - DECAY_DURATION
        while now >= self._next_decay:
            self._next_decay += self._bucket_seconds
            for h in self._hosts:
                h.index = (h.index + 1) % EPSILON_BUCKETS
                h.counts[h.index] = 0
                h.totals[h.index] = 0.0

    def _standard(self, now: float) -> str:
        """go-hostpool's standard pick: round-robin over the hosts that can be tried."""
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

    def mark(self, address: str, ok: bool, seconds: Optional[float] = None) -> None:
        """The result of a request to address (not round-robin); seconds: how long a
        successful one took (epsilon-greedy's timing)."""
        if self.round_robin:
            return
        with self._lock:
            host = self._by_address.get(address)
            if host is None:
                return
            if ok:
                host.dead = False
                host.retry_delay = 0.0
                if self.epsilon_greedy and seconds is not None:
                    self._decay(self._clock())
                    host.counts[host.index] += 1
                    host.totals[host.index] += seconds * 1000.0
                return
            host.retry_delay = INITIAL_RETRY_DELAY if not host.dead else min(host.retry_delay * 2,
                                                                              MAX_RETRY_DELAY)
            host.dead = True
            host.retry_at = self._clock() + host.retry_delay


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
