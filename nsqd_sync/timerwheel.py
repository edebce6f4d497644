"""The per-channel timer thread: deferred messages and in-flight timeouts.

Each channel runs one `TimerWheel` thread (`nsqd-timer-<topic>:<channel>`).
It owns

* the deferred messages (DPUB, and REQ with a delay): a heap of
  (due time, sequence, message) that it moves into the channel when due, and
* the in-flight timeouts: each client's in-flight table is ordered by
  deadline (one msg_timeout per client, TOUCH re-inserts at the end), so the
  thread only looks at the head of each table.

It sleeps until the earliest of those deadlines, and is woken early only
when a sooner deadline appears (`arm()` / `defer()`), so an idle channel
costs nothing.  On each wake it calls its owner's `on_tick(now)` (the
channel's `process_deferred_queue` and `process_in_flight_queue`, NSQ's
queueScanLoop work for one channel), which takes the due messages with
`pop_due(now)` and returns the next in-flight deadline.  Its condition's
lock is its own; the callback runs without it, so the channel and client
locks it takes are never held together with it.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable, List, Tuple

log = logging.getLogger(__name__)

_INF = float("inf")


class TimerWheel:
    """Deferred-message heap and the thread that wakes its channel at each deadline.

    on_tick(now) does the channel's work when the thread wakes and returns the
    next in-flight deadline (inf if none).
    """

    def __init__(self, name: str, on_tick: Callable[[float], float]) -> None:
        self.name = name
        self._on_tick = on_tick
        self._cond = threading.Condition(threading.Lock())
        self._deferred: List[Tuple[float, int, bytes]] = []
        self._seq = itertools.count()
        self._next_wake = _INF   # when the sleeping thread wakes; inf while it scans
        self._armed = _INF       # the earliest deadline armed since the current scan began
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="nsqd-timer-%s" % name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # ------------------------------------------------------------ scheduling

    def defer(self, data: bytes, delay: float) -> None:
        due = time.monotonic() + delay
        with self._cond:
            heapq.heappush(self._deferred, (due, next(self._seq), data))
            if due < self._next_wake:
                self._cond.notify()

    def arm(self, deadline: float) -> None:
        """An in-flight deadline was set; wake the thread if it sleeps past it.

        While the thread scans, `_next_wake` is inf, so every arm takes the
        lock and is remembered in `_armed`: a deadline the scan missed is
        still in the thread's next sleep (Go's queueScanLoop rescans on a
        ticker; this thread sleeps until the earliest deadline it knows).
        """
        if deadline < self._next_wake:
            with self._cond:
                if deadline < self._armed:
                    self._armed = deadline
                if deadline < self._next_wake:
                    self._next_wake = deadline
                    self._cond.notify()

    def pop_due(self, now: float) -> List[bytes]:
        """Remove and return the deferred messages due at now, earliest first."""
        due: List[bytes] = []
        with self._cond:
            heap = self._deferred
            while heap and heap[0][0] <= now:
                due.append(heapq.heappop(heap)[2])
        return due

    def deferred_count(self) -> int:
        return len(self._deferred)

    def clear(self) -> None:
        with self._cond:
            self._deferred.clear()

    def drain(self) -> List[bytes]:
        """Remove and return every deferred message (shutdown flush)."""
        with self._cond:
            out = [item[2] for item in sorted(self._deferred)]
            self._deferred.clear()
            return out

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._next_wake = _INF
                self._armed = _INF
            try:
                next_in_flight = self._on_tick(time.monotonic())
            except Exception:  # noqa: BLE001 - the timer must survive one bad scan
                log.exception("TIMER(%s): scan failed", self.name)
                next_in_flight = time.monotonic() + 1.0
            with self._cond:
                if self._stopping:
                    return
                nxt = min(next_in_flight, self._armed,
                          self._deferred[0][0] if self._deferred else _INF)
                self._next_wake = nxt
                wait = nxt - time.monotonic()
                if wait > 0:
                    self._cond.wait(None if nxt == _INF else wait)
