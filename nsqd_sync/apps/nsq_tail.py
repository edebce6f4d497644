"""nsq_tail: print the messages of one or more topics to stdout, one body per line.

One Consumer per --topic on the same channel (by default an ephemeral
`tailNNNNNN#ephemeral` one, so nothing is left behind).  Each topic's worker
collects the lines of a batch of messages, writes them to stdout with one
write when the batch is done, and only then FINs the batch (one send per
connection); if stdout has gone away the batch is requeued instead and the
tool exits 1.  A message is FIN'd only after its line was written.  With
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


class _Stdout:
    """The file descriptor all topics write to, one write at a time."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.broken = False

    def write(self, data: bytes) -> bool:
        """Write all of data; False once stdout is gone (EPIPE etc.)."""
        with self.lock:
            if self.broken:
                return False
            view = memoryview(data)
            try:
                while view:
                    n = os.write(self.fd, view)
                    view = view[n:]
            except OSError:
                self.broken = True
                return False
            return True


class _TopicOutput:
    """One topic's lines of the current batch and their messages (answered after the write)."""

    def __init__(self, stdout: _Stdout, prefix: bytes) -> None:
        self.stdout = stdout
        self.prefix = prefix
        self.consumer: Any = None
        self.lock = threading.Lock()
        self.parts: List[bytes] = []
        self.msgs: List[Any] = []

    def add(self, msg: Any) -> None:
        msg.enable_async()
        line = self.prefix + msg.body + b"\n" if self.prefix else msg.body + b"\n"
        with self.lock:
            self.parts.append(line)
            self.msgs.append(msg)

    def flush(self) -> bool:
        """Write the batch's lines, then FIN its messages (REQ them if stdout is gone)."""
        with self.lock:
            if not self.msgs:
                return not self.stdout.broken
            data = b"".join(self.parts)
            msgs = self.msgs
            self.parts = []
            self.msgs = []
        if self.stdout.write(data):
            self.consumer.finish_many(msgs)
            return True
        self.consumer.requeue_many(msgs, 0, backoff=False)
        return False


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
        self.stdout = _Stdout(sys.stdout.fileno())
        self.outputs: List[_TopicOutput] = []
        self.consumers = []
        for topic in v["topic"]:
            logger.info("Adding consumer for topic: %s", topic)
            out = _TopicOutput(self.stdout, (topic + " | ").encode("utf-8") if v["print_topic"] else b"")
            try:
                out.consumer = common.make_consumer(v, PROG, topic, v["channel"], self._handler(out),
                                                    after_batch=self._after_batch(out))
            except ValueError as e:
                self.finish(1, str(e))
                return
            self.outputs.append(out)
            self.consumers.append(out.consumer)
        for consumer in self.consumers:
            consumer.start()

    def _handler(self, out: _TopicOutput) -> Any:
        add = out.add
        total = self.total
        if not total:
            return add

        def handle(msg: Any) -> None:
            with self.count_lock:
                if self.shown >= total:
                    msg.requeue(0, backoff=False)  # beyond -n: not printed, given back
                    return
                self.shown += 1
                last = self.shown == total
            add(msg)
            if last:
                self.finish(0)

        return handle

    def _after_batch(self, out: _TopicOutput) -> Any:
        def after_batch() -> None:
            if not out.flush():
                self.finish(1, "failed to write to stdout")

        return after_batch

    def stop(self) -> None:
        for consumer in self.consumers:
            consumer.stop(timeout=self.STOP_TIMEOUT)


main = NSQTail.main

if __name__ == "__main__":  # pragma: no cover
    main()
