"""Load for the reliability tests: publishers and a consumer that count what the node promised.

A `LoadPublisher` sends PUB/MPUB (and DPUB, with a delay of an hour) on its
own connection until the node refuses (an error frame) or goes away, and
records every body it sent and every body answered ``OK``.  A
`HoldingConsumer` subscribes and, of the messages it gets, FINs some,
REQs some with an hour's delay (deferred on the node) and keeps up to
`hold` in flight, recording which it FIN'd.  After a restart,
`check_recovered` consumes a channel and compares.
"""
from __future__ import annotations

import collections
import socket
import threading
from typing import Iterable, List, Optional, Set

from nsqd_sync import wire
from tests.helpers import CommandConn, consume_all

HOUR_MS = 3600 * 1000


class LoadPublisher(threading.Thread):
    """Publishes until refused or disconnected; `acked` holds the bodies answered OK."""

    def __init__(self, port: int, topic: str, tag: str, mpub_every: int = 4, dpub_every: int = 0,
                 mpub_size: int = 10) -> None:
        super().__init__(name="test-publisher-%s" % tag, daemon=True)
        self.conn = CommandConn(port, timeout=30)
        self.topic = topic
        self.tag = tag.encode()
        self.mpub_every = mpub_every
        self.dpub_every = dpub_every
        self.mpub_size = mpub_size
        self.sent: Set[bytes] = set()
        self.acked: Set[bytes] = set()
        self.deferred: Set[bytes] = set()  # acked DPUBs
        self.refusal: Optional[bytes] = None
        self.error: Optional[BaseException] = None
        self.stop_event = threading.Event()
        self._lock = threading.Lock()

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _answer(self) -> bool:
        ft, data = self.conn.frame_skip_heartbeats()
        if ft == wire.FRAME_TYPE_ERROR:
            self.refusal = data
            return False
        assert (ft, data) == (wire.FRAME_TYPE_RESPONSE, wire.OK), (ft, data)
        return True

    def run(self) -> None:
        i = 0
        n = 0
        try:
            while not self.stop_event.is_set():
                n += 1
                if self.dpub_every and n % self.dpub_every == 0:
                    bodies = [b"%s-d%07d" % (self.tag, i)]
                    self.sent.update(bodies)
                    self.conn.send("DPUB %s %d" % (self.topic, HOUR_MS), bodies[0])
                elif self.mpub_every and n % self.mpub_every == 0:
                    bodies = [b"%s-%07d" % (self.tag, i + k) for k in range(self.mpub_size)]
                    self.sent.update(bodies)
                    self.conn.send("MPUB " + self.topic, wire.mpub_body(bodies))
                else:
                    bodies = [b"%s-%07d" % (self.tag, i)]
                    self.sent.update(bodies)
                    self.conn.send("PUB " + self.topic, bodies[0])
                i += len(bodies)
                if not self._answer():
                    return
                with self._lock:
                    self.acked.update(bodies)
                    if b"-d" in bodies[0]:
                        self.deferred.update(bodies)
        except (EOFError, OSError) as e:  # the node went away under us
            self.error = e
        finally:
            self.conn.close()


class HoldingConsumer(threading.Thread):
    """FINs one message in three, REQs one in three for an hour, holds the rest in flight (up to `hold`)."""

    def __init__(self, port: int, topic: str, channel: str, hold: int = 100) -> None:
        super().__init__(name="test-consumer-%s" % topic, daemon=True)
        self.conn = CommandConn(port, timeout=30)
        self.conn.sub(topic, channel)
        self.conn.send("RDY %d" % (hold + 200))
        self.hold = hold
        self.finished: Set[bytes] = set()
        self.held: Set[bytes] = set()
        self.requeued: Set[bytes] = set()
        self.received = 0
        self._lock = threading.Lock()

    def counts(self) -> "tuple[int, int, int]":
        with self._lock:
            return len(self.held), len(self.requeued), len(self.finished)

    def run(self) -> None:
        n = 0
        try:
            while True:
                ft, data = self.conn.frame_skip_heartbeats()
                if ft != wire.FRAME_TYPE_MESSAGE:
                    continue
                _ts, _attempts, mid, body = wire.decode_message(data)
                n += 1
                with self._lock:
                    self.received += 1
                    if n % 3 == 1 and len(self.held) < self.hold:
                        self.held.add(body)
                        continue
                    if n % 3 == 2:
                        self.requeued.add(body)
                        line = b"REQ %s %d\n" % (mid, HOUR_MS)
                    else:
                        self.finished.add(body)
                        line = b"FIN %s\n" % mid
                self.conn.send_raw(line)
        except (EOFError, OSError, socket.timeout):
            pass
        finally:
            self.conn.close()


def check_recovered(port: int, topic: str, channel: str, must: Set[bytes], may: Iterable[bytes] = (),
                    timeout: float = 30.0) -> List[bytes]:
    """Consume topic/channel; every body in `must` comes back, nothing outside must|may, no duplicates."""
    got = consume_all(port, topic, channel, at_least=len(must), timeout=timeout)
    counts = collections.Counter(got)
    lost = must - set(counts)
    assert not lost, "%d of %d messages the node answered OK were lost, e.g. %r" % (
        len(lost), len(must), sorted(lost)[:3])
    unknown = set(counts) - must - set(may)
    assert not unknown, "messages never sent came back: %r" % sorted(unknown)[:3]
    dups = [b for b, n in counts.items() if n > 1]
    assert not dups, "duplicated after restart: %r" % dups[:3]
    return got
