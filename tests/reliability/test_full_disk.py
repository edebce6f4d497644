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


def _ping(node: NodeProcess) -> int:
    return http_request(node.http_port, "/ping")[0]


def test_publishers_on_a_full_disk_are_refused_and_nothing_answered_ok_is_lost(disk, scale):
    args = ["--mem-queue-size=0"]
    node = NodeProcess("nsqd", data_path=disk.path, args=args)
    disk.attach(node.proc.pid)
    acked = {"f": set(), "fn": set()}
    sent = {"f": set(), "fn": set()}
    target = scale(100, 2000)

    def run(tag: str, stop_when_refused: bool) -> None:
        pubs = [LoadPublisher(node.tcp_port, t, "%s-%s" % (t, tag)) for t in ("f", "fn")]
        for p in pubs:
            p.start()
        try:
            if stop_when_refused:
                wait_for(lambda: all(p.refusal or p.error for p in pubs), timeout=60,
                         message="every publisher refused on the full disk")
                for p in pubs:
                    assert p.refusal is not None and p.refusal.split(b" ")[0] in (
                        b"E_PUB_FAILED", b"E_MPUB_FAILED"), p.refusal
            else:
                wait_for(lambda: all(p.count() >= target for p in pubs), timeout=60,
                         message="%d OKs per publisher" % target)
        finally:
            for p in pubs:
                p.stop_event.set()
                p.join(15)
                assert not p.is_alive()
                acked[p.topic] |= p.acked
                sent[p.topic] |= p.sent

    try:
        _create(node, "f", "c")
        _create(node, "fn")
        run("before", stop_when_refused=False)
        disk.fill()
        run("full", stop_when_refused=True)
        assert _ping(node) == 500
        disk.free()
        run("after", stop_when_refused=False)
        wait_for(lambda: _ping(node) == 200, message="healthy again once the disk has room")
        assert node.stop() == 0
        assert "Traceback" not in node.log_text()
        node = NodeProcess("nsqd", data_path=disk.path, args=args)
        check_recovered(node.tcp_port, "f", "c", acked["f"], may=sent["f"])
        check_recovered(node.tcp_port, "fn", "c", acked["fn"], may=sent["fn"])
    finally:
        node.stop()
    print("full disk (%s): %d messages answered OK before, while and after, all back; every publisher "
          "refused while full" % (disk.kind, len(acked["f"]) + len(acked["fn"])))
