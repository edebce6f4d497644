"""nsq_tail: print the messages of one or more topics to stdout, one body per line.

One Consumer per --topic on the same channel (by default an ephemeral
`tailNNNNNN#ephemeral` one, so nothing is left behind).  Bodies go into a
buffer that each consumer worker flushes to stdout once per batch, before
the batch's FINs are written: what was FIN'd has been written out.  With
`-n N` the tool stops after N messages in all (counted over every topic);
messages delivered beyond N are requeued, not printed.
"""
from __future__ import annotations

import logging
import os
import random
import sys
import threading
from typing import Any, List

from . import common
from .. import flags
from ..flags import Flag

logger = logging.getLogger("nsqd_sync.apps.nsq_tail")

PROG = "nsq_tail"

FLAGS: List[Flag] = [
    common.version_flag(),
    common.channel_flag("", default_text="tailNNNNNN#ephemeral (random digits)"),
    common.max_in_flight_flag(200),
    Flag("n", "int", 0, "total messages to show (will wait if starved)", validate=flags.non_negative),
    Flag("print-topic", "bool", False, "print topic name where message was received"),
    common.nsqd_tcp_address_flag(),
    common.lookupd_http_address_flag(),
    common.topic_list_flag(),
    common.consumer_opt_flag(),
]


class _Output:
    """stdout for bodies: appended under a lock, written with one write per batch."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.parts: List[bytes] = []
        self.broken = False

    def add(self, data: bytes) -> None:
        with self.lock:
            self.parts.append(data)

    def flush(self) -> bool:
        """Write what is buffered; False once stdout is gone (EPIPE etc.)."""
        with self.lock:
            if not self.parts or self.broken:
                return not self.broken
            data = b"".join(self.parts)
            self.parts.clear()
            view = memoryview(data)
            try:
                while view:
                    n = os.write(self.fd, view)
                    view = view[n:]
            except OSError:
                self.broken = True
                return False
            return True


class NSQTail(common.App):
    PROG = PROG
    FLAGS = FLAGS
    HELP = "nsq_tail: print the messages of NSQ topics to stdout, one per line."

    def check(self) -> None:
        v = self.values
        if v["channel"] == "":
            v["channel"] = "tail%06d#ephemeral" % random.randrange(999999)
        common.require_sources(v)
        if not v["topic"]:
            raise common.UsageError("--topic required")
        if 0 < v["n"] < v["max_in_flight"]:
            v["max_in_flight"] = v["n"]  # don't ask for more than we want

    def start(self) -> None:
        v = self.values
        self.total = v["n"]
        self.shown = 0
        self.count_lock = threading.Lock()
        self.out = _Output(sys.stdout.fileno())
        self.consumers = []
        for topic in v["topic"]:
            logger.info("Adding consumer for topic: %s", topic)
            prefix = (topic + " | ").encode("utf-8") if v["print_topic"] else b""
            try:
                consumer = common.make_consumer(v, PROG, topic, v["channel"], self._handler(prefix),
                                                after_batch=self._after_batch)
            except ValueError as e:
                self.finish(1, str(e))
                return
            self.consumers.append(consumer)
        for consumer in self.consumers:
            consumer.start()

    def _handler(self, prefix: bytes) -> Any:
        add = self.out.add
        total = self.total

        def handle(msg: Any) -> None:
            if total:
                with self.count_lock:
                    if self.shown >= total:
                        msg.requeue(0, backoff=False)
                        return
                    self.shown += 1
                    last = self.shown == total
                add(prefix + msg.body + b"\n")
                if last:
                    self.out.flush()
                    self.finish(0)
                return
            add(prefix + msg.body + b"\n" if prefix else msg.body + b"\n")

        return handle

    def _after_batch(self) -> None:
        if not self.out.flush():
            self.finish(1, "failed to write to stdout")

    def stop(self) -> None:
        for consumer in self.consumers:
            consumer.stop(timeout=self.STOP_TIMEOUT)
        self.out.flush()


main = NSQTail.main

if __name__ == "__main__":  # pragma: no cover
    main()
