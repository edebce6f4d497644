"""The Consumer's flow control: RDY per connection and backoff (a mixin of Consumer).

As NSQ's client guide describes: `max_in_flight` is split over the
connections (RDY max(1, max_in_flight // n) each, recomputed when
connections come and go); with fewer slots than connections, RDY 1 goes to
`max_in_flight` of them and moves periodically from idle ones to others.  A
failed message puts the consumer in backoff: RDY 0 everywhere for
backoff_multiplier * 2**n seconds, then RDY 1 on one connection to test;
each success shortens the backoff, each failure lengthens it, and at zero
every connection gets its full RDY again.

Every method here runs with `Consumer._lock` held (the `_locked` suffix),
except `_backoff_signal`, which takes it.  RDY is written while holding the
lock so that RDY changes reach nsqd in the order they were decided.
"""
from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Optional

from .errors import NSQConnectionError

if TYPE_CHECKING:  # pragma: no cover
    from .conn_state import ConsumerConn

logger = logging.getLogger(__name__)


class FlowControlMixin:
    """RDY distribution and backoff; expects the Consumer's attributes."""

    def _send_rdy_locked(self, cc: ConsumerConn, count: int) -> None:
        count = min(count, cc.max_rdy)
        if cc.rdy == count or cc.closed:
            return
        try:
            cc.conn.send(b"RDY %d\n" % count)
        except NSQConnectionError:
            return  # the reader notices and cleans up
        cc.rdy = count
        cc.rdy_changed_at = time.monotonic()

    def _rebalance_locked(self) -> None:
        """Give every connection its share of max_in_flight (not during backoff)."""
        if self._stopping or self._backoff_counter > 0 or self._backoff_resume_at is not None:
            return
        conns = [c for c in self._conns.values() if not c.closed]
        if not conns:
            return
        mif = self.max_in_flight
        n = len(conns)
        if mif == 0:
            for c in conns:
                self._send_rdy_locked(c, 0)
        elif mif >= n:
            per = mif // n
            for c in conns:
                self._send_rdy_locked(c, per)
        else:
            active = [c for c in conns if c.rdy > 0]
            for c in active[mif:]:
                self._send_rdy_locked(c, 0)
            for c in active[:mif]:
                self._send_rdy_locked(c, 1)
            idle = [c for c in conns if c.rdy == 0]
            random.shuffle(idle)
            for c in idle[:mif - min(len(active), mif)]:
                self._send_rdy_locked(c, 1)

    def _redistribute_locked(self) -> None:
        """With fewer RDY slots than connections, move RDY 1 from idle connections to others."""
        if self._stopping or self._backoff_counter > 0 or self._backoff_resume_at is not None:
            return
        conns = [c for c in self._conns.values() if not c.closed]
        if not conns or self.max_in_flight >= len(conns):
            return
        now = time.monotonic()
        freed = []
        for c in conns:
            if c.rdy > 0 and c.in_flight == 0 and \
                    now - max(c.last_msg_at, c.rdy_changed_at) > self.low_rdy_idle_timeout:
                self._send_rdy_locked(c, 0)
                freed.append(c)
        slots = self.max_in_flight - sum(c.rdy for c in conns)
        if slots <= 0:
            return
        candidates = [c for c in conns if c.rdy == 0 and c not in freed] or \
            [c for c in conns if c.rdy == 0]
        random.shuffle(candidates)
        for c in candidates[:slots]:
            logger.debug("[%s] moving RDY 1 to %s", self.name, c.address)
            self._send_rdy_locked(c, 1)

    # ---------------------------------------------------------------- backoff

    def _backoff_duration(self, counter: int) -> float:
        return self.backoff_multiplier * (2 ** counter)

    def _backoff_signal(self, success: Optional[bool]) -> None:
        """Account one answered message: True success, False failure, None neutral."""
        if success is not False and self._backoff_counter == 0:
            return  # the common case: no backoff and nothing to start one
        with self._lock:
            if self._stopping or self._backoff_resume_at is not None:
                return  # results of messages sent before the block started don't count
            changed = False
            if success is True:
                if self._backoff_counter > 0:
                    self._backoff_counter -= 1
                    changed = True
            elif success is False:
                if self.max_backoff_duration > 0 and \
                        self._backoff_duration(self._backoff_counter + 1) <= self.max_backoff_duration:
                    self._backoff_counter += 1
                    changed = True
            if self._backoff_counter == 0:
                if changed:
                    logger.info("[%s] backoff complete, resuming normal RDY on %d connections",
                                self.name, len(self._conns))
                    self._rebalance_locked()
                return
            duration = min(self._backoff_duration(self._backoff_counter), self.max_backoff_duration)
            logger.info("[%s] backing off for %.3fs (counter %d)", self.name, duration, self._backoff_counter)
            self._count("backoffs", 1)
            self._backoff_resume_at = time.monotonic() + duration
            for c in self._conns.values():
                self._send_rdy_locked(c, 0)
        self._wake.set()

    def _resume_locked(self) -> None:
        """End of a backoff block: RDY 1 on one connection to test the waters."""
        self._backoff_resume_at = None
        if self._backoff_counter == 0:
            self._rebalance_locked()
            return
        conns = [c for c in self._conns.values() if not c.closed]
        if not conns:
            self._backoff_resume_at = time.monotonic() + 1.0
            return
        choice = random.choice(conns)
        logger.info("[%s] testing backoff state with RDY 1 on %s", self.name, choice.address)
        self._send_rdy_locked(choice, 1)
