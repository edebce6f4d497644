"""Where a channel's messages are, memory or disk, as /stats shows it (issue 12 #15).

Checked side by side with nsqd 1.3.0 (--mem-queue-size=10, 5,000 messages
published, then a consumer holding 20 in flight): once NSQ's topic pump has
copied everything to the channel, both report 4,980 queued, all on disk; a
SIGTERM with the 20 in flight and a restart give 5,000, all on disk.  (While
NSQ's pump is still copying, later messages refill the memory a consumer
frees: see README, Differences from NSQ.)
"""
from __future__ import annotations

import json

import pytest

from tests.helpers import CommandConn, http_request, wait_for

pytestmark = pytest.mark.timeout(60)


def _split(node) -> tuple:
    status, body, _ = http_request(node.http_port, "/stats?format=json&topic=t&channel=c")
    assert status == 200
    c = json.loads(body)["topics"][0]["channels"][0]
    return c["depth"] - c["backend_depth"], c["backend_depth"], c["in_flight_count"]


def test_memory_disk_split_with_messages_in_flight_and_after_restart(nsqd_on_data_dir):
    node = nsqd_on_data_dir("--mem-queue-size=10")
    for path in ("/topic/create?topic=t", "/channel/create?topic=t&channel=c"):
        assert http_request(node.http_port, path, method="POST")[0] == 200
    pub = CommandConn(node.tcp_port)
    for i in range(0, 5000, 100):
        pub.mpub("t", [b"m%04d" % (i + k) for k in range(100)])
    assert _split(node) == (10, 4990, 0)
    sub = CommandConn(node.tcp_port, timeout=10)
    sub.sub("t", "c")
    sub.send("RDY 20")
    got = [sub.message()[3] for _ in range(20)]
    assert got == [b"m%04d" % i for i in range(20)]  # memory first, then disk, in order
    wait_for(lambda: _split(node) == (0, 4980, 20), message="0 in memory, 4980 on disk, 20 in flight")
    assert node.stop() == 0
    node = nsqd_on_data_dir("--mem-queue-size=10")
    assert _split(node) == (0, 5000, 0)
