"""What a node writes at exit (SIGTERM) when something goes wrong on the way out.

* Issue 12 #2: one diskqueue whose final metadata write fails (its
  ``meta.dat`` path is a directory, as an EIO/ENOSPC would) must not stop the
  other topics and channels from being flushed: the failure is logged, every
  other queue is written, and the node exits 0 as the real nsqd 1.3.0 does.
"""
from __future__ import annotations

import os
import shutil

import pytest

from tests.helpers import CommandConn, consume_all, wait_for, http_request

pytestmark = pytest.mark.timeout(60)


def stats_depth(node, topic: str, channel: str) -> int:
    import json

    status, body, _ = http_request(node.http_port, "/stats?format=json&topic=" + topic)
    assert status == 200
    for t in json.loads(body)["topics"]:
        for c in t["channels"]:
            if c["channel_name"] == channel:
                return c["depth"]
    return -1


def test_failed_final_sync_of_one_queue_does_not_lose_the_others(nsqd_on_data_dir):
    node = nsqd_on_data_dir()
    conn = CommandConn(node.tcp_port)
    bodies = {t: [b"%s-%03d" % (t.encode(), i) for i in range(50)] for t in ("aaa", "bbb")}
    for t in ("aaa", "bbb"):
        for path in ("/topic/create?topic=%s" % t, "/channel/create?topic=%s&channel=c" % t):
            assert http_request(node.http_port, path, method="POST")[0] == 200
        conn.mpub(t, bodies[t])
        wait_for(lambda: stats_depth(node, t, "c") == 50, message="50 messages in %s:c" % t)
    conn.close()
    # aaa's channel can no longer write its metadata (rename onto a directory fails)
    bad_meta = os.path.join(nsqd_on_data_dir.data_path, "aaa:c.diskqueue.meta.dat")
    os.mkdir(bad_meta)
    rc = node.stop()
    log = node.log_text()
    assert "Traceback" not in log, log[-3000:]
    assert "aaa:c" in log and "failed" in log
    assert rc == 0, log[-2000:]
    shutil.rmtree(bad_meta)
    node = nsqd_on_data_dir()
    assert sorted(consume_all(node.tcp_port, "bbb", "c", at_least=50)) == bodies["bbb"]
    assert sorted(consume_all(node.tcp_port, "aaa", "c", at_least=50)) == bodies["aaa"]
