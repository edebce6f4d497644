"""to_nsq: publish stdin, split on --delimiter, to --topic on every --nsqd-tcp-address.

stdin is read in large chunks; the complete messages of each chunk are sent
as one MPUB per node (one PUB when there is only one), so a file goes out at
the speed of the wire while a line typed on a terminal is published at once.
With `--rate N` message i is not sent before start + i/N seconds (messages
whose time has come are sent together).  Empty messages are skipped, as in
NSQ; the last message needs no trailing delimiter.

The exit status is 0 only when stdin ended and every node acknowledged every
message; the first failure (a refused connection, an error frame) ends the
tool with its reason on stderr and status 1.  When a batch is refused for
its size or one bad message (E_BAD_BODY / E_BAD_MESSAGE), its messages are
published one by one, so everything before the bad one is published, as
NSQ's one-PUB-per-message tool would.  SIGINT/SIGTERM stop after the batch
being published, exit 0.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, List

from . import common
from ..client import NSQBadBody, NSQBadMessage, NSQError
from ..flags import Flag

logger = logging.getLogger("nsqd_sync.apps.to_nsq")

PROG = "to_nsq"
READ_SIZE = 1 << 20  # bytes asked of stdin per read: one read, one MPUB

FLAGS: List[Flag] = [
    common.topic_flag("NSQ topic to publish to"),
    Flag("delimiter", "str", "\n", "character to split input from stdin", default_text='"\\n"'),
    common.nsqd_tcp_address_flag("destination nsqd TCP address (may be given multiple times)"),
    common.producer_opt_flag(),
    Flag("rate", "int", 0, "Throttle messages to n/second. 0 to disable"),
]


class ToNSQ(common.App):
    PROG = PROG
    FLAGS = FLAGS
    HELP = "to_nsq: publish lines (or --delimiter separated records) from stdin to an NSQ topic."

    def check(self) -> None:
        v = self.values
        if not v["topic"]:
            raise common.UsageError("--topic required")
        self.delim = v["delimiter"].encode("utf-8")
        if len(self.delim) != 1:
            raise common.UsageError("--delimiter must be a single byte")
        if not v["nsqd_tcp_address"]:
            raise common.UsageError("--nsqd-tcp-address required")
        common.check_http_addresses(v["nsqd_tcp_address"], "--nsqd-tcp-address")
        if v["rate"] < 0:
            raise common.UsageError("--rate must not be negative")

    def start(self) -> None:
        v = self.values
        self.topic = v["topic"]
        self.publish_lock = threading.Lock()
        self.stopping = False
        self.published = 0
        # one per address, as NSQ's map of producers (a repeated address counts once)
        self.producers = [common.make_producer(v, PROG, a) for a in dict.fromkeys(v["nsqd_tcp_address"])]
        self.spawn(self._read_loop, "stdin")

    # ------------------------------------------------------------ reading

    def _read_loop(self) -> None:
        rate = self.values["rate"]
        if rate > 0:
            logger.info("Throttling messages rate to max:%d/second", rate)
        delim = self.delim
        fd = sys.stdin.fileno()
        rest = b""
        started = time.monotonic()
        while True:
            data = os.read(fd, READ_SIZE)
            if not data:
                break
            parts = (rest + data).split(delim)
            rest = parts.pop()
            bodies = [p for p in parts if p]
            if bodies and not self._send(bodies, rate, started):
                return
        if rest and not self._send([rest], rate, started):
            return
        self.finish(0)

    def _send(self, bodies: List[bytes], rate: int, started: float) -> bool:
        """Publish bodies (paced by rate); False when the tool is ending."""
        if rate <= 0:
            return self._publish(bodies)
        i = 0
        while i < len(bodies):
            due = started + self.published / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
                now = time.monotonic()
            ready = min(len(bodies) - i, int((now - started) * rate) - self.published + 1)
            if not self._publish(bodies[i:i + max(1, ready)]):
                return False
            i += max(1, ready)
        return True

    # ------------------------------------------------------------ publishing

    def _publish(self, bodies: List[bytes]) -> bool:
        with self.publish_lock:
            if self.stopping:
                return False
            for producer in self.producers:
                try:
                    self._publish_to(producer, bodies)
                except (NSQError, OSError) as e:
                    self.finish(1, "failed to publish to %s - %s" % (producer.address, e))
                    return False
            self.published += len(bodies)
            return True

    def _publish_to(self, producer: Any, bodies: List[bytes]) -> None:
        if len(bodies) == 1:
            producer.pub(self.topic, bodies[0])
            return
        try:
            producer.mpub(self.topic, bodies)
        except (NSQBadBody, NSQBadMessage) as e:
            # too big as a batch, or one message too big: one at a time, so all before the bad one go out
            logger.debug("MPUB of %d to %s refused (%s); publishing one by one", len(bodies), producer.address, e)
            for body in bodies:
                producer.pub(self.topic, body)

    def stop(self) -> None:
        if not self.publish_lock.acquire(timeout=self.STOP_TIMEOUT):
            logger.warning("a publish was still running at exit")
        else:
            self.stopping = True
            self.publish_lock.release()
        for producer in self.producers:
            producer.close()
        if self.exit_code == 0:
            logger.debug("published %d messages", self.published)


main = ToNSQ.main

if __name__ == "__main__":  # pragma: no cover
    main()
