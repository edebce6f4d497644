"""The client library's per-connection consumer state (below flow.py, handling.py and consumer.py)."""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from .connection import Connection


class ConsumerConn:
    """A consumer's state for one nsqd connection: RDY, in-flight count, its reader thread.

    on_idle() is called when its in-flight count drops to zero (the consumer
    waits for that while it stops).
    """

    def __init__(self, conn: Connection, on_idle: Callable[[], None]) -> None:
        self.on_idle = on_idle
        self.conn = conn
        self.address = conn.address
        self.rdy = 0
        self.rdy_changed_at = time.monotonic()
        self.last_msg_at = time.monotonic()
        self.in_flight = 0
        self.lock = threading.Lock()
        self.close_wait = threading.Event()
        self.closing = False
        self.reader: Optional[threading.Thread] = None
        self.max_rdy = conn.max_rdy_count

    def __repr__(self) -> str:
        return "<ConsumerConn %s rdy=%d in_flight=%d>" % (self.address, self.rdy, self.in_flight)

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def received(self, n: int) -> None:
        with self.lock:
            self.in_flight += n
        self.last_msg_at = time.monotonic()

    def answered(self, n: int) -> None:
        with self.lock:
            self.in_flight -= n
            idle = self.in_flight <= 0
        if idle:
            self.on_idle()
