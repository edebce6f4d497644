"""Trends without graphite: the last hour of depth and message rate, sampled in memory.

A thread, `nsqadmin-trends`, asks every node for `/stats` each
--trend-interval (through ClusterInfo, so in parallel and with timeouts)
and keeps, per topic and per topic:channel (summed over nodes), a ring of
(time, depth, message_count) samples covering one hour.  The number of
series is capped and series not seen for an hour are dropped, so memory is
bounded however the cluster changes.  `sparkline()` draws a series as a
small inline SVG.
"""
from __future__ import annotations

import collections
import html
import logging
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Tuple

from .render import Markup

log = logging.getLogger(__name__)

WINDOW = 3600.0  # seconds of history kept
MAX_SERIES = 20000

Sample = Tuple[float, int, int]  # (unix time, depth, message_count)
#: one sampling pass: {"topic" or "topic:channel": (depth, message_count)}
Collect = Callable[[], Dict[str, Tuple[int, int]]]


class Trends:
    """Bounded in-memory history of depth and rate per topic and channel."""

    def __init__(self, collect: Collect, interval: float) -> None:
        self.collect = collect
        self.interval = interval
        self.maxlen = max(2, int(WINDOW / interval) + 1)
        self._series: Dict[str, Deque[Sample]] = {}
        self._lock = threading.Lock()  # guards _series
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

    def record(self, values: Dict[str, Tuple[int, int]], now: float) -> None:
        """Add one pass of samples taken at `now`."""
        with self._lock:
            for key, (depth, count) in values.items():
                series = self._series.get(key)
                if series is None:
                    if len(self._series) >= MAX_SERIES:
                        continue
                    series = self._series[key] = collections.deque(maxlen=self.maxlen)
                series.append((now, depth, count))
            stale = [k for k, s in self._series.items() if s and now - s[-1][0] > WINDOW]
            for key in stale:
                del self._series[key]

    def samples(self, key: str) -> List[Sample]:
        with self._lock:
            return list(self._series.get(key, ()))

    def rates(self, key: str) -> List[Tuple[float, float]]:
        """(time, messages per second) between consecutive samples."""
        s = self.samples(key)
        out = []
        for (t0, _, c0), (t1, _, c1) in zip(s, s[1:]):
            if t1 > t0:
                out.append((t1, max(0, c1 - c0) / (t1 - t0)))
        return out

    def current_rate(self, key: str) -> Optional[float]:
        """Messages per second between the last two samples (None before two)."""
        with self._lock:
            series = self._series.get(key)
            if series is None or len(series) < 2:
                return None
            (t0, _, c0), (t1, _, c1) = series[-2], series[-1]
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
