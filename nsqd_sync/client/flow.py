"""The Consumer's flow control: RDY per connection and backoff (`FlowControl`, one per Consumer).

As NSQ's client guide describes: `max_in_flight` is split over the
connections (RDY max(1, max_in_flight // n) each, recomputed when
connections come and go); with fewer slots than connections, RDY 1 goes to
`max_in_flight` of them and moves periodically from idle ones to others.  A
failed message puts the consumer in backoff: RDY 0 everywhere for
backoff_multiplier * 2**n seconds, then RDY 1 on one connection to test;
each success shortens the backoff, each failure lengthens it, and at zero
every connection gets its full RDY again.

`FlowControl` owns max_in_flight and the backoff state; it shares the
Consumer's lock and connection table, which it is given.  Every `*_locked`
method runs with that lock held; `backoff_signal` takes it.  RDY is written
while holding the lock so that RDY changes reach nsqd in the order they were
decided.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Callable, Dict, Optional

from .errors import NSQConnectionError

if TYPE_CHECKING:  # pragma: no cover
    from .conn_state import ConsumerConn

logger = logging.getLogger(__name__)


class FlowControl:
    """RDY distribution and backoff over a Consumer's connections.

    count(key, n) adds to the Consumer's stats; wake is set when the
    manager thread should look at `backoff_resume_at` again.
    """

    def __init__(self, name: str, lock: threading.Lock, conns: "Dict[str, ConsumerConn]", *,
                 max_in_flight: int, backoff_multiplier: float, max_backoff_duration: float,
                 low_rdy_idle_timeout: float, count: Callable[[str, int], None],
                 wake: threading.Event) -> None:
        self.name = name
        self.lock = lock
        self.conns = conns
        self.max_in_flight = max_in_flight
        self.backoff_multiplier = backoff_multiplier
        self.max_backoff_duration = max_backoff_duration
        self.low_rdy_idle_timeout = low_rdy_idle_timeout
        self._count = count
        self._wake = wake
        self.backoff_counter = 0
        self.backoff_resume_at: Optional[float] = None
        self.stopping = False  # set by Consumer.stop(): RDY decisions end

    def in_backoff(self) -> bool:
        return self.backoff_counter > 0 or self.backoff_resume_at is not None

    def send_rdy_locked(self, cc: ConsumerConn, count: int) -> None:
        count = min(count, cc.max_rdy)
        if cc.rdy == count or cc.closed:
            return
        try:
            cc.conn.send(b"RDY %d\n" % count)
        except NSQConnectionError:
            return  # the reader notices and cleans up
        cc.rdy = count
        cc.rdy_changed_at = time.monotonic()

    def rebalance_locked(self) -> None:
        """Give every connection its share of max_in_flight (not during backoff)."""
        if self.stopping or self.backoff_counter > 0 or self.backoff_resume_at is not None:
            return
        conns = [c for c in self.conns.values() if not c.closed]
        if not conns:
            return
        mif = self.max_in_flight
        n = len(conns)
        if mif == 0:
            for c in conns:
                self.send_rdy_locked(c, 0)
        elif mif >= n:
            per = mif // n
            for c in conns:
                self.send_rdy_locked(c, per)
        else:
            active = [c for c in conns if c.rdy > 0]
            for c in active[mif:]:
                self.send_rdy_locked(c, 0)
            for c in active[:mif]:
                self.send_rdy_locked(c, 1)
            idle = [c for c in conns if c.rdy == 0]
            random.shuffle(idle)
            for c in idle[:mif - min(len(active), mif)]:
                self.send_rdy_locked(c, 1)

    def redistribute_locked(self) -> None:
        """With fewer RDY slots than connections, move RDY 1 from idle connections to others."""
        if self.stopping or self.backoff_counter > 0 or self.backoff_resume_at is not None:
            return
        conns = [c for c in self.conns.values() if not c.closed]
        if not conns or self.max_in_flight >= len(conns):
            return
        now = time.monotonic()
        freed = []
        for c in conns:
            if c.rdy > 0 and c.in_flight == 0 and \
                    now - max(c.last_msg_at, c.rdy_changed_at) > self.low_rdy_idle_timeout:
                self.send_rdy_locked(c, 0)
                freed.append(c)
        slots = self.max_in_flight - sum(c.rdy for c in conns)
        if slots <= 0:
            return
        candidates = [c for c in conns if c.rdy == 0 and c not in freed] or \
            [c for c in conns if c.rdy == 0]
        random.shuffle(candidates)
        for c in candidates[:slots]:
            logger.debug("[%s] moving RDY 1 to %s", self.name, c.address)
            self.send_rdy_locked(c, 1)

    # ---------------------------------------------------------------- backoff

    def backoff_duration(self, counter: int) -> float:
        return self.backoff_multiplier * (2 ** counter)

    def backoff_signal(self, success: Optional[bool]) -> None:
        """Account one answered message: True success, False failure, None neutral."""
        if success is not False and self.backoff_counter == 0:
            return  # the common case: no backoff and nothing to start one
        with self.lock:
            if self.stopping or self.backoff_resume_at is not None:
                return  # results of messages sent before the block started don't count
            changed = False
            if success is True:
                if self.backoff_counter > 0:
                    self.backoff_counter -= 1
                    changed = True
            elif success is False:
                if self.max_backoff_duration > 0 and \
                        self.backoff_duration(self.backoff_counter + 1) <= self.max_backoff_duration:
                    self.backoff_counter += 1
                    changed = True
            if self.backoff_counter == 0:
                if changed:
                    logger.info("[%s] backoff complete, resuming normal RDY on %d connections",
                                self.name, len(self.conns))
                    self.rebalance_locked()
                return
            duration = min(self.backoff_duration(self.backoff_counter), self.max_backoff_duration)
            logger.info("[%s] backing off for %.3fs (counter %d)", self.name, duration, self.backoff_counter)
            self._count("backoffs", 1)
            self.backoff_resume_at = time.monotonic() + duration
            for c in self.conns.values():
                self.send_rdy_locked(c, 0)
        self._wake.set()

    def resume_locked(self) -> None:
        """End of a backoff block: RDY 1 on one connection to test the waters."""
        self.backoff_resume_at = None
        if self.backoff_counter == 0:
            self.rebalance_locked()
            return
        conns = [c for c in self.conns.values() if not c.closed]
        if not conns:
            self.backoff_resume_at = time.monotonic() + 1.0
            return
        choice = random.choice(conns)
        logger.info("[%s] testing backoff state with RDY 1 on %s", self.name, choice.address)
        self.send_rdy_locked(choice, 1)

    def conn_closed_locked(self) -> None:
        """A connection went away: if it was backoff's test connection, test again on another."""
        if self.backoff_resume_at is None and self.backoff_counter > 0 and not any(
                c.rdy for c in self.conns.values()):
            self.backoff_resume_at = time.monotonic()
        self.rebalance_locked()
