"""Memory a client can make the node hold is bounded (issue 12 #9).

* DPUBs to a topic that cannot deliver yet (no channel, or paused) count
  against --mem-queue-size like any message of the topic; the rest go to
  its diskqueue.  As in nsqd 1.3.0 (checked side by side), a deferred
  message read back from disk has lost its delay: with --mem-queue-size=10
  and 30 DPUBs of an hour, the topic reports 20 on disk, and once a channel
  exists 20 are delivered at once and 10 stay deferred.
"""
from __future__ import annotations

import json

import pytest

from tests.helpers import CommandConn, http_request, wait_for

pytestmark = pytest.mark.timeout(60)


def _stats(node) -> dict:
    status, body, _ = http_request(node.http_port, "/stats?format=json")
    assert status == 200
    return {t["topic_name"]: t for t in json.loads(body)["topics"]}


def test_deferred_messages_waiting_for_a_channel_are_bounded_by_mem_queue_size(nsqd_factory):
    node = nsqd_factory("--mem-queue-size=10")
    pub = CommandConn(node.tcp_port)
    for i in range(30):
        pub.dpub("t", 3600 * 1000, b"d%02d" % i)
    topic = _stats(node)["t"]
    assert (topic["depth"], topic["backend_depth"]) == (30, 20), topic
    sub = CommandConn(node.tcp_port, timeout=10)
    sub.sub("t", "c")
    sub.send("RDY 100")
    got = {sub.message()[3] for _ in range(20)}
    assert len(got) == 20
    wait_for(lambda: _stats(node)["t"]["channels"][0]["deferred_count"] == 10,
             message="10 messages deferred on the channel")
    sub.close()
    pub.close()


def test_a_stalled_partial_mpub_is_dropped_at_the_read_timeout(nsqd_factory):
    """A client that stops in the middle of a 5 MB MPUB body holds its buffer only until it
    misses two heartbeats (as NSQ's read deadline), then the connection and the buffer go;
    others are served meanwhile."""
    import struct

    from tests.helpers import RawConn

    node = nsqd_factory()
    stalled = RawConn(node.tcp_port, timeout=30)
    stalled.identify(heartbeat_interval=1000)
    size = 5 * 1024 * 1024
    stalled.send_raw(b"MPUB t\n" + struct.pack(">i", size) + b"\x00" * (size // 2))
    other = CommandConn(node.tcp_port)
    other.pub("t", b"served meanwhile")
    stalled.expect_closed(timeout=15)
    wait_for(lambda: "missed heartbeats" in node.log_text(), message="the stalled client closed for its timeout")
    other.pub("t", b"still served")
    other.close()
