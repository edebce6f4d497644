"""Trends without graphite: the last hour of depth and message rate, sampled in memory.

A thread, `nsqadmin-trends`, asks every node for `/stats` each
--trend-interval (through ClusterInfo, so in parallel and with timeouts)
and keeps, per topic and per topic:channel (summed over nodes), the depth
and message count of every pass of the last hour.  Storage is compact: one
ring of pass times shared by all series, and per series two fixed `array`s
of 64-bit integers (8 bytes a value: 11.5 KB per series at the default 5s);
at most MAX_SERIES series are kept and a series not seen for an hour is
dropped, so memory is bounded (about 58 MB at the cap) however the cluster
changes.  `sparkline()` draws a series as a small inline SVG.
"""
from __future__ import annotations

import html
import logging
import threading
import time
from array import array
from typing import Callable, Dict, List, Optional, Tuple

from .render import Markup

log = logging.getLogger(__name__)

WINDOW = 3600.0  # seconds of history kept
MAX_SERIES = 5000
MISSING = -1  # a pass in which a series was not seen

Sample = Tuple[float, int, int]  # (unix time, depth, message_count)
#: one sampling pass: {"topic" or "topic:channel": (depth, message_count)}
Collect = Callable[[], Dict[str, Tuple[int, int]]]


class _Series:
    """One topic's or channel's ring of (depth, message_count), indexed by pass number."""

    __slots__ = ("depth", "count", "first", "last")

    def __init__(self, size: int, first: int) -> None:
        self.depth = array("q", [MISSING]) * size
        self.count = array("q", [0]) * size
        self.first = first  # pass number of the first sample
        self.last = first  # pass number of the latest sample


class Trends:
    """Bounded in-memory history of depth and rate per topic and channel."""

    def __init__(self, collect: Collect, interval: float) -> None:
        self.collect = collect
        self.interval = interval
        self.maxlen = max(2, int(WINDOW / interval) + 1)
        self._times = array("d", [0.0]) * self.maxlen  # pass number % maxlen -> unix time
        self._passes = 0  # passes recorded so far
        self._series: Dict[str, _Series] = {}
        self._lock = threading.Lock()  # guards _times, _passes, _series
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nsqadmin-trends", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.record(self.collect(), time.time())
            except Exception:  # noqa: BLE001 - a bad pass must not end the sampler
                log.exception("trends: sampling failed")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    @property
    def passes(self) -> int:
        """Passes recorded so far (changes whenever the rates do)."""
        return self._passes

    def record(self, values: Dict[str, Tuple[int, int]], now: float) -> None:
        """Add one pass of samples taken at `now`."""
        with self._lock:
            p = self._passes
            self._passes += 1
            slot = p % self.maxlen
            self._times[slot] = now
            for key, series in self._series.items():
                if key not in values:
                    series.depth[slot] = MISSING
            for key, (depth, count) in values.items():
                series = self._series.get(key)
                if series is None:
                    if len(self._series) >= MAX_SERIES:
                        continue
                    series = self._series[key] = _Series(self.maxlen, p)
                series.depth[slot] = max(0, depth)
                series.count[slot] = max(0, count)
                series.last = p
            stale = [k for k, s in self._series.items() if p - s.last >= self.maxlen]
            for key in stale:
                del self._series[key]

    def samples(self, key: str) -> List[Sample]:
        """(time, depth, message_count) of the series' passes in the window, oldest first."""
        with self._lock:
            series = self._series.get(key)
            if series is None:
                return []
            newest = self._passes - 1
            out = []
            for q in range(max(series.first, newest - self.maxlen + 1), newest + 1):
                slot = q % self.maxlen
                if series.depth[slot] != MISSING:
                    out.append((self._times[slot], series.depth[slot], series.count[slot]))
            return out

    def rates(self, key: str) -> List[Tuple[float, float]]:
        """(time, messages per second) between consecutive samples."""
        s = self.samples(key)
        out = []
        for (t0, _, c0), (t1, _, c1) in zip(s, s[1:]):
            if t1 > t0:
                out.append((t1, max(0, c1 - c0) / (t1 - t0)))
        return out

    def current_rate(self, key: str) -> Optional[float]:
        """Messages per second between the series' last two passes (None before two)."""
        with self._lock:
            series = self._series.get(key)
            newest = self._passes - 1
            if series is None or series.last != newest or newest - 1 < series.first:
                return None
            a, b = (newest - 1) % self.maxlen, newest % self.maxlen
            if series.depth[a] == MISSING:
                return None
            t0, t1 = self._times[a], self._times[b]
            c0, c1 = series.count[a], series.count[b]
        return max(0, c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

    def depths(self, key: str) -> List[Tuple[float, float]]:
        return [(t, float(d)) for t, d, _ in self.samples(key)]


def sparkline(points: List[Tuple[float, float]], label: str, series: str,
              width: int = 160, height: int = 32) -> Markup:
    """A small inline SVG line of `points` (time, value); empty text if < 2 points."""
    if len(points) < 2:
        return Markup('<span class="sparkline-empty" data-series="%s">collecting…</span>' % html.escape(series))
    t0, t1 = points[0][0], points[-1][0]
    vmax = max(v for _, v in points) or 1.0
    span = (t1 - t0) or 1.0
    coords = " ".join("%.1f,%.1f" % ((t - t0) / span * (width - 2) + 1,
                                     height - 1 - v / vmax * (height - 2))
                      for t, v in points)
    last = points[-1][1]
    title = html.escape("%s: last %s, max %s over %d min" % (label, _fmt(last), _fmt(vmax), round(span / 60)))
    series = html.escape(series)
    return Markup(
        '<svg class="sparkline" data-series="%s" width="%d" height="%d" viewBox="0 0 %d %d" '
        'role="img" aria-label="%s"><title>%s</title>'
        '<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="%s"/></svg>'
        % (series, width, height, width, height, title, title, coords))


def _fmt(v: float) -> str:
    return "%d" % v if v == int(v) else "%.2f" % v
