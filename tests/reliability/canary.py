"""A well-behaved client that must never notice what hostile clients do, and the node's resources.

`Canary` publishes one message at a time on its own topic and consumes it
on another connection (PUB -> OK -> message -> FIN), for as long as the
test runs; any error frame, disconnect or wait longer than `max_wait`
is recorded in `errors`.  `threads(pid)` / `fds(pid)` count the node's
threads and open file descriptors (Linux /proc); `settled(fn)` polls one
until it holds still, to take a baseline.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable, List

from nsqd_sync import wire
from tests.helpers import CommandConn, wait_for


class Canary(threading.Thread):
    def __init__(self, port: int, topic: str = "canary", max_wait: float = 10.0) -> None:
        super().__init__(name="test-canary", daemon=True)
        self.port = port
        self.topic = topic
        self.max_wait = max_wait
        self.rounds = 0
        self.slowest = 0.0
        self.errors: List[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            pub = CommandConn(self.port, timeout=self.max_wait)
            sub = CommandConn(self.port, timeout=self.max_wait)
            sub.identify()
            sub.sub(self.topic, "ch")
            sub.send("RDY 1")
        except Exception as e:  # noqa: BLE001 - recorded: the test fails on it
            self.errors.append("connect: %r" % e)
            return
        try:
            while not self.stop_event.is_set():
                body = b"canary-%d" % self.rounds
                started = time.monotonic()
                pub.pub(self.topic, body)
                ft, data = sub.frame_skip_heartbeats()
                if ft != wire.FRAME_TYPE_MESSAGE:
                    self.errors.append("round %d: frame %d %r" % (self.rounds, ft, data))
                    return
                _, _, mid, got = wire.decode_message(data)
                if got != body:
                    self.errors.append("round %d: got %r" % (self.rounds, got))
                    return
                sub.send("FIN " + mid.decode())
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.rounds += 1
                self.stop_event.wait(0.01)
        except Exception as e:  # noqa: BLE001 - recorded: the test fails on it
            self.errors.append("round %d: %r" % (self.rounds, e))
        finally:
            pub.close()
            sub.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(self.max_wait + 5)
        assert not self.is_alive(), "canary stuck"

    def check(self, min_rounds: int = 1) -> None:
        """No error, and it kept going (at least `min_rounds` round trips)."""
        assert not self.errors, self.errors
        assert self.rounds >= min_rounds, "canary made %d rounds" % self.rounds


def threads(pid: int) -> int:
    return len(os.listdir("/proc/%d/task" % pid))


def fds(pid: int) -> int:
    return len(os.listdir("/proc/%d/fd" % pid))


def settled(read: Callable[[], int], timeout: float = 10.0) -> int:
    """read()'s value once it stays the same over five reads 0.1 s apart."""
    readings: List[int] = []

    def still() -> bool:
        readings.append(read())
        return len(readings) >= 5 and len(set(readings[-5:])) == 1

    wait_for(still, timeout=timeout, interval=0.1, message="a settled reading")
    return readings[-1]
