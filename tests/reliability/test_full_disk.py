"""A full disk under a running node (a small tmpfs as root, else RLIMIT_FSIZE; see disk.py).

* Issue 12 #8: messages the node already holds (in-flight ones timing out,
  deferred ones coming due) are kept in memory when the diskqueue cannot
  take them, and delivered: before the fix they were popped, the write
  failed, the error was logged and they were gone.
* Publishers are never answered OK for a message that was not stored
  (``--mem-queue-size=0``: every message goes through the disk), /ping says
  the node is unhealthy while it is full, and once the disk has room again
  every message answered OK is delivered.
"""
from __future__ import annotations

import socket

import pytest

from nsqd_sync import wire
from tests.helpers import CommandConn, NodeProcess, http_request, wait_for
from tests.reliability.disk import FullableDisk
from tests.reliability.load import LoadPublisher, check_recovered

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def disk(tmp_path):
    d = FullableDisk(str(tmp_path))
    try:
        yield d
    finally:
        d.close()


def _create(node: NodeProcess, topic: str, channel: str = "") -> None:
    paths = ["/topic/create?topic=" + topic]
    if channel:
        paths.append("/channel/create?topic=%s&channel=%s" % (topic, channel))
    for path in paths:
        assert http_request(node.http_port, path, method="POST")[0] == 200


def test_timed_out_and_deferred_messages_are_kept_while_the_disk_is_full(disk):
    node = NodeProcess("nsqd", data_path=disk.path, args=["--mem-queue-size=0"])
    disk.attach(node.proc.pid)
    try:
        _create(node, "t", "c")
        pub = CommandConn(node.tcp_port)
        bodies = [b"%03d-" % i + b"x" * 5000 for i in range(20)]  # more than a page each
        pub.mpub("t", bodies)
        disk.fill()
        sub = CommandConn(node.tcp_port, timeout=20)
        sub.identify(msg_timeout=1000)
        sub.sub("t", "c")
        sub.send("RDY 30")
        first = [sub.message() for _ in range(20)]
        assert sorted(m[3] for m in first) == bodies
        deferred = b"deferred-" + b"y" * 5000
        pub.dpub("t", 300, deferred)  # held by the timer, due while the disk is full
        again = {}
        # nothing FIN'd: after 1s every message times out and must be delivered again
        while len(again) < 21:
            try:
                _ts, attempts, _mid, body = sub.message()
            except socket.timeout:
                raise AssertionError("only %d of 21 messages came back while the disk was full: "
                                     "the others were dropped" % len(again)) from None
            again.setdefault(body, attempts)
        assert set(again) == set(bodies) | {deferred}
        assert all(again[b] >= 2 for b in bodies)
        status, _, _ = http_request(node.http_port, "/ping")
        assert status == 500  # the failed writes made the node unhealthy
        log = node.log_text()
        assert "Traceback" not in log, log[-3000:]
        sub.close()
        pub.close()
        disk.free()
    finally:
        node.stop()
