"""End-to-end processing latency: how long messages take from PUB to FIN.

With `--e2e-processing-latency-percentile` set, every channel keeps a
`LatencyStream`; the client's FIN path hands it the finished messages
(`record_many`), whose first 8 bytes are the big-endian publish timestamp
in nanoseconds.  `/stats` and statsd report each channel's quantiles and,
per topic, the quantiles of all its channels merged.

Like NSQ, the stream covers a sliding window of
`--e2e-processing-latency-window-time`: two halves, the older one dropped
each time half the window has passed.  NSQ keeps a targeted-quantile
summary per half; here each half is a log-bucketed histogram (the idea of
DDSketch): a latency `v` lands in bucket `floor(ln(v) / ln(GAMMA))`, so the
memory used is bounded by the range of latencies (a few hundred buckets
from microseconds to hours) whatever the message rate, recording a batch is
one C-level `Counter.update`, merging is adding counters, and every
reported quantile is within 1% of a latency actually observed.
"""
from __future__ import annotations

import math
import struct
import threading
import time
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_INV_LOG_GAMMA = 1.0 / math.log(GAMMA)
_MIDPOINT = 2 * GAMMA / (1 + GAMMA)  # bucket k stands for GAMMA**k * _MIDPOINT

_ts_from = struct.Struct(">q").unpack_from


def bucket_of(latency_ns: int) -> int:
    """The histogram bucket of one latency (values below 1ns count as 1ns)."""
    return int(math.log(max(latency_ns, 1)) * _INV_LOG_GAMMA)


def bucket_value(key: int) -> int:
    """The latency (ns) a bucket stands for."""
    return int(round(GAMMA ** key * _MIDPOINT))


def _number(q: float) -> object:
    """0.99 stays a float, 1.0 becomes 1 (as Go's JSON prints float64)."""
    return int(q) if float(q).is_integer() else q


def quantiles(counts: Counter, total: int, percentiles: Sequence[float]) -> List[Dict[str, object]]:
    """NSQ's percentile list [{"quantile": q, "value": ns}, ...] from bucket counts."""
    out: List[Dict[str, object]] = []
    keys = sorted(counts)
    for q in percentiles:
        value = 0
        if total:
            rank = q * (total - 1)
            seen = 0
            for key in keys:
                seen += counts[key]
                if seen > rank:
                    value = bucket_value(key)
                    break
        out.append({"quantile": _number(q), "value": value})
    return out


class LatencyStream:
    """A sliding-window latency histogram for one channel."""

    enabled = True  # the FIN path only collects finished messages for a stream that records

    def __init__(self, window: float, percentiles: Sequence[float]) -> None:
        self.percentiles = list(percentiles)
        self.move_window = window / 2.0
        self._lock = threading.Lock()
        self._halves = [Counter(), Counter()]
        self._current = 0
        self._last_move = time.monotonic()

    def _rotate(self, now: float) -> None:
        """Drop halves older than the window (lock held)."""
        elapsed = now - self._last_move
        if elapsed <= self.move_window:
            return
        if elapsed > 2 * self.move_window:  # both halves are older than the window
            self._halves = [Counter(), Counter()]
            self._last_move = now
            return
        self._current ^= 1
        self._halves[self._current] = Counter()
        self._last_move += self.move_window

    def record_many(self, msgs: Sequence[bytes]) -> None:
        """Record FIN'd messages (encoded: int64 ns timestamp first)."""
        now = time.time_ns()
        log = math.log
        inv = _INV_LOG_GAMMA
        keys = [int(log(max(now - _ts_from(m)[0], 1)) * inv) for m in msgs]
        with self._lock:
            self._rotate(time.monotonic())
            self._halves[self._current].update(keys)

    def snapshot(self) -> Counter:
        """Bucket counts over the whole window."""
        with self._lock:
            self._rotate(time.monotonic())
            merged = Counter(self._halves[0])
            merged.update(self._halves[1])
        return merged

    def stats(self) -> Optional[dict]:
        """NSQ's e2e_processing_latency object: {"count": n, "percentiles": [...]}."""
        counts = self.snapshot()
        total = sum(counts.values())
        return {"count": total, "percentiles": quantiles(counts, total, self.percentiles)}


def aggregate(streams: Iterable[object]) -> Optional[dict]:
    """The topic's figure: every channel's window merged (None when no channel tracks latency)."""
    merged: Optional[Counter] = None
    percentiles: Sequence[float] = ()
    for stream in streams:
        if not isinstance(stream, LatencyStream):
            continue
        if merged is None:
            merged = Counter()
            percentiles = stream.percentiles
        merged.update(stream.snapshot())
    if merged is None:
        return None
    total = sum(merged.values())
    return {"count": total, "percentiles": quantiles(merged, total, percentiles)}


EMPTY = {"count": 0, "percentiles": None}


def human(ns: float) -> str:
    """NSQ's nanoseconds-to-human form used by the text /stats: 1.5ms, 12.0us, 3.2s."""
    if ns > 1e9:
        return "%0.1fs" % (ns / 1e9)
    if ns > 1e6:
        return "%0.1fms" % (ns / 1e6)
    if ns > 1e3:
        return "%0.1fus" % (ns / 1e3)
    return "%0.1fns" % ns
