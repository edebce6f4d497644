"""nsqd when the disk fails: the publisher is told, the node says it is unhealthy, then recovers.

Tests run as root, so a read-only directory does not stop writes.  A full
disk is simulated with RLIMIT_FSIZE set on the running node (prlimit): a
write past the limit fails with EFBIG (Python ignores SIGXFSZ).  With
``--mem-queue-size=0`` every publish writes to the diskqueue, so:

* PUB / MPUB get the fatal ``E_PUB_FAILED`` / ``E_MPUB_FAILED`` (connection
  closed), HTTP /pub gets 503 ``EXITING``, and /ping answers 500 ``NOK - ...``;
* after the limit is raised the next publish is ``OK`` and /ping is ``OK``;
* every message answered OK is delivered, and none that failed.

Also here: a second nsqd refuses a data dir in use, and a corrupt diskqueue
file is set aside (``.bad``) while the node keeps serving.
"""
from __future__ import annotations

import collections
import json
import os
import resource
import struct
import subprocess
import time
from typing import List

import pytest

from nsqd_sync import wire
from tests.helpers import CommandConn, NodeProcess, command_for, consume_all, http_request

pytestmark = pytest.mark.timeout(60)

FSIZE_LIMIT = 16 * 1024


def set_fsize_limit(pid: int, limit: int) -> None:
    _soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, hard))


def ping(node: NodeProcess):
    status, body, _ = http_request(node.http_port, "/ping")
    return status, body


def pub_until_failure(port: int, topic: str, tag: bytes, acked: List[bytes], limit: int = 500) -> bytes:
    """PUB one message at a time until an error frame; returns it (the connection must close)."""
    conn = CommandConn(port)
    try:
        for i in range(limit):
            body = tag + b"-%04d-" % i + b"p" * 500
            conn.send("PUB " + topic, body)
            ft, data = conn.frame_skip_heartbeats()
            if ft == wire.FRAME_TYPE_ERROR:
                conn.expect_closed()
                return data
            assert (ft, data) == (wire.FRAME_TYPE_RESPONSE, wire.OK), (ft, data)
            acked.append(body)
        raise AssertionError("%d PUBs answered OK under a %d-byte file limit" % (limit, FSIZE_LIMIT))
    finally:
        conn.close()


def test_disk_full_fails_the_publisher_and_the_node_recovers(nsqd_on_data_dir):
    node = nsqd_on_data_dir("--mem-queue-size=0")
    c = CommandConn(node.tcp_port)
    c.sub("full", "ch")
    c.close()
    assert ping(node) == (200, b"OK")
    acked: List[bytes] = []
    conn = CommandConn(node.tcp_port)
    for i in range(5):
        body = b"before-%d" % i
        conn.send("PUB full", body)
        conn.expect_ok()
        acked.append(body)
    conn.close()

    set_fsize_limit(node.proc.pid, FSIZE_LIMIT)
    error = pub_until_failure(node.tcp_port, "full", b"pub", acked)
    assert error.startswith(b"E_PUB_FAILED PUB failed "), error
    status, body = ping(node)
    assert status == 500 and body.startswith(b"NOK - "), (status, body)
    assert len(body) > len(b"NOK - ")

    # MPUB and HTTP /pub fail the same way while the disk is full
    conn = CommandConn(node.tcp_port)
    failed = [b"mpub-failed-%d" % i for i in range(20)]
    conn.send("MPUB full", wire.mpub_body(failed))
    ft, data = conn.frame_skip_heartbeats()
    assert ft == wire.FRAME_TYPE_ERROR and data.startswith(b"E_MPUB_FAILED MPUB failed "), (ft, data)
    conn.expect_closed()
    conn.close()
    status, body, _ = http_request(node.http_port, "/pub?topic=full", method="POST", body=b"h" * 2000)
    if status != 404:  # the HTTP /pub route exists
        assert (status, json.loads(body)) == (503, {"message": "EXITING"}), (status, body)
    assert ping(node)[0] == 500

    # room again: the next write succeeds and the node is healthy
    set_fsize_limit(node.proc.pid, resource.RLIM_INFINITY)
    conn = CommandConn(node.tcp_port)
    for i in range(5):
        body = b"after-%d" % i
        conn.send("PUB full", body)
        conn.expect_ok()
        acked.append(body)
    after = [b"after-mpub-%d" % i for i in range(20)]
    conn.send("MPUB full", wire.mpub_body(after))
    conn.expect_ok()
    acked.extend(after)
    conn.close()
    assert ping(node) == (200, b"OK")

    got = consume_all(node.tcp_port, "full", "ch", at_least=len(acked))
    assert collections.Counter(got) == collections.Counter(acked), \
        "lost: %r, unexpected: %r" % (sorted(set(acked) - set(got))[:3], sorted(set(got) - set(acked))[:3])
    # and the failed writes left no torn record behind across a restart
    c = CommandConn(node.tcp_port)
    c.send("PUB full", b"kept-over-restart")
    c.expect_ok()
    c.close()
    assert node.stop() == 0
    node = nsqd_on_data_dir("--mem-queue-size=0")
    assert consume_all(node.tcp_port, "full", "ch", at_least=1) == [b"kept-over-restart"]
    assert ping(node) == (200, b"OK")


def test_disk_full_on_a_topic_without_channels(nsqd_on_data_dir):
    """The topic's own diskqueue fails the same way and recovers."""
    node = nsqd_on_data_dir("--mem-queue-size=0")
    set_fsize_limit(node.proc.pid, FSIZE_LIMIT)
    acked: List[bytes] = []
    error = pub_until_failure(node.tcp_port, "full-topic", b"t", acked)
    assert error.startswith(b"E_PUB_FAILED PUB failed "), error
    assert acked, "some messages fit under the limit"
    assert ping(node)[0] == 500
    set_fsize_limit(node.proc.pid, resource.RLIM_INFINITY)
    conn = CommandConn(node.tcp_port)
    conn.send("PUB full-topic", b"recovered")
    conn.expect_ok()
    conn.close()
    acked.append(b"recovered")
    assert ping(node) == (200, b"OK")
    got = consume_all(node.tcp_port, "full-topic", "ch", at_least=len(acked))
    assert collections.Counter(got) == collections.Counter(acked)


def test_second_nsqd_on_the_same_data_dir_exits(nsqd_on_data_dir):
    data = nsqd_on_data_dir.data_path
    first = nsqd_on_data_dir()
    c = CommandConn(first.tcp_port)
    c.sub("owned", "ch")
    c.close()
    before = open(os.path.join(data, "nsqd.dat"), "rb").read()
    argv = command_for("nsqd") + ["--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0",
                                  "--data-path=" + data]
    second = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    err = second.stderr.decode("utf-8", "replace")
    assert second.returncode != 0, err
    lines = [ln for ln in err.splitlines() if "FATAL" in ln]
    assert lines, err
    assert "in use" in lines[-1] and data in lines[-1], lines[-1]
    # the first node is untouched
    assert ping(first) == (200, b"OK")
    assert open(os.path.join(data, "nsqd.dat"), "rb").read() == before
    c = CommandConn(first.tcp_port)
    c.send("PUB owned", b"still mine")
    c.expect_ok()
    c.close()
    assert consume_all(first.tcp_port, "owned", "ch", at_least=1) == [b"still mine"]


def _record(i: int, body: bytes) -> bytes:
    return struct.pack(">qH", time.time_ns(), 0) + b"%016x" % (0x5a000 + i) + body


def test_corrupt_diskqueue_file_is_set_aside(nsqd_on_data_dir):
    """A data file with an impossible record length is renamed .bad; the next file is served."""
    data = nsqd_on_data_dir.data_path
    with open(os.path.join(data, "nsqd.dat"), "w") as f:
        json.dump({"topics": [{"name": "rot", "paused": False,
                               "channels": [{"name": "ch", "paused": False}]}], "version": "1.3.0"}, f)
    name = "rot:ch"
    bad = struct.pack(">i", 0x7FFFFFF0) + b"garbage" * 20
    good = [_record(i, b"good-%d" % i) for i in range(10)]
    good_blob = b"".join(struct.pack(">i", len(r)) + r for r in good)
    with open(os.path.join(data, "%s.diskqueue.000000.dat" % name), "wb") as f:
        f.write(bad)
    with open(os.path.join(data, "%s.diskqueue.000001.dat" % name), "wb") as f:
        f.write(good_blob)
    with open(os.path.join(data, "%s.diskqueue.meta.dat" % name), "w") as f:
        f.write("13\n0,0\n1,%d\n" % len(good_blob))

    node = nsqd_on_data_dir()
    got = consume_all(node.tcp_port, "rot", "ch", at_least=10)
    assert sorted(got) == sorted(b"good-%d" % i for i in range(10))
    assert os.path.exists(os.path.join(data, "%s.diskqueue.000000.dat.bad" % name)), os.listdir(data)
    c = CommandConn(node.tcp_port)
    c.send("PUB rot", b"fresh")
    c.expect_ok()
    c.close()
    assert consume_all(node.tcp_port, "rot", "ch", at_least=1) == [b"fresh"]
    assert ping(node) == (200, b"OK")
