"""nsqd after kill -9: no acknowledged message lost, and a clean start on what it left.

* ``--mem-queue-size=0 --sync-every=1``: every message answered ``OK`` (PUB
  and MPUB, to a topic with a channel and to one without) is delivered after
  the restart; nothing that was never sent shows up.
* With the default sync settings a killed process loses nothing it wrote
  either (the kernel still has the pages; our diskqueue adopts records found
  past its last persisted write position).
* A restart works on a data dir with a half-written ``nsqd.dat.<n>.tmp``
  (and a diskqueue ``meta.dat.<n>.tmp``), as a node killed mid-write leaves.
"""
from __future__ import annotations

import collections
import json
import os
import threading
from typing import List, Optional, Sequence, Set

import pytest

from tests.helpers import CommandConn, NodeProcess, consume_all, wait_for

pytestmark = pytest.mark.timeout(60)


class Publisher(threading.Thread):
    """Publishes until its connection breaks; records what was sent and what was answered OK."""

    def __init__(self, port: int, topic: str, tag: str, mpub_every: int = 5) -> None:
        super().__init__(name="test-publisher-%s" % topic, daemon=True)
        self.conn = CommandConn(port, timeout=10)
        self.topic = topic
        self.tag = tag
        self.mpub_every = mpub_every
        self.sent: Set[bytes] = set()
        self.acked: Set[bytes] = set()
        self.error: Optional[BaseException] = None
        self.stop_event = threading.Event()

    def run(self) -> None:
        i = 0
        try:
            while not self.stop_event.is_set():
                if i % self.mpub_every == 0:
                    bodies = [b"%s-%07d" % (self.tag.encode(), i + k) for k in range(10)]
                    i += 10
                    self.sent.update(bodies)
                    self.conn.mpub(self.topic, bodies)
                    self.acked.update(bodies)
                else:
                    body = b"%s-%07d" % (self.tag.encode(), i)
                    i += 1
                    self.sent.add(body)
                    self.conn.pub(self.topic, body)
                    self.acked.add(body)
        except (EOFError, OSError) as e:  # the node was killed under us
            self.error = e
        finally:
            self.conn.close()


def kill9(node: NodeProcess) -> None:
    node.kill()
    assert node.proc.returncode == -9, node.proc.returncode


def publish_then_kill(node: NodeProcess, topics: Sequence[str], at_least: int) -> List[Publisher]:
    """Run one publisher per topic, kill -9 the node once each has at_least OKs."""
    pubs = [Publisher(node.tcp_port, t, t) for t in topics]
    for p in pubs:
        p.start()
    try:
        wait_for(lambda: all(len(p.acked) >= at_least for p in pubs), timeout=20,
                 message="%d acknowledged messages per publisher" % at_least)
    finally:
        kill9(node)
        for p in pubs:
            p.join(10)
            assert not p.is_alive()
    for p in pubs:
        assert p.error is not None, "publisher stopped without the connection breaking"
    return pubs


def check_after_crash(node: NodeProcess, pub: Publisher, channel: str) -> None:
    got = consume_all(node.tcp_port, pub.topic, channel, at_least=len(pub.acked))
    counts = collections.Counter(got)
    lost = pub.acked - set(counts)
    assert not lost, "%d messages answered OK were lost, e.g. %r" % (len(lost), sorted(lost)[:3])
    unknown = set(counts) - pub.sent
    assert not unknown, "messages never sent came back: %r" % sorted(unknown)[:3]
    dups = [b for b, n in counts.items() if n > 1]
    assert not dups, "duplicated after restart: %r" % dups[:3]


def test_kill9_with_sync_every_1_loses_no_acknowledged_message(nsqd_on_data_dir):
    data = nsqd_on_data_dir.data_path
    args = ("--mem-queue-size=0", "--sync-every=1")
    node = nsqd_on_data_dir(*args)
    c = CommandConn(node.tcp_port)
    c.sub("crash-chan", "ch")
    c.close()
    pubs = publish_then_kill(node, ["crash-chan", "crash-nochan"], at_least=300)
    assert os.path.exists(os.path.join(data, "nsqd.dat"))

    node = nsqd_on_data_dir(*args)
    check_after_crash(node, pubs[0], "ch")
    check_after_crash(node, pubs[1], "late")
    node.stop()


def test_kill9_with_default_sync_keeps_what_was_written(nsqd_on_data_dir):
    """Not NSQ's promise (it may lose up to sync-every), but ours: the pages survive a process kill."""
    node = nsqd_on_data_dir("--mem-queue-size=0")
    c = CommandConn(node.tcp_port)
    c.sub("lazy", "ch")
    c.close()
    [pub] = publish_then_kill(node, ["lazy"], at_least=500)
    node = nsqd_on_data_dir("--mem-queue-size=0")
    check_after_crash(node, pub, "ch")
    node.stop()


def test_kill9_with_memory_messages_restarts_cleanly(nsqd_on_data_dir):
    """Messages only in memory die with the process; the rest of the node comes back intact."""
    node = nsqd_on_data_dir("--mem-queue-size=100")
    c = CommandConn(node.tcp_port)
    c.sub("mixed", "ch")
    c.close()
    [pub] = publish_then_kill(node, ["mixed"], at_least=1000)
    node = nsqd_on_data_dir("--mem-queue-size=100")
    got = consume_all(node.tcp_port, "mixed", "ch", at_least=0)
    assert set(got) <= pub.sent
    assert len(got) == len(set(got))
    assert len(got) >= len(pub.acked) - 100 - 1, "more lost than memory held"
    c = CommandConn(node.tcp_port)
    c.pub("mixed", b"after")
    c.close()
    assert consume_all(node.tcp_port, "mixed", "ch", at_least=1) == [b"after"]
    node.stop()


def test_restart_after_kill_with_half_written_tmp_files(nsqd_on_data_dir):
    data = nsqd_on_data_dir.data_path
    args = ("--mem-queue-size=0", "--sync-every=1")
    node = nsqd_on_data_dir(*args)
    c = CommandConn(node.tcp_port)
    c.sub("survivor", "ch")
    c.close()
    c = CommandConn(node.tcp_port)
    bodies = [b"s-%03d" % i for i in range(50)]
    c.mpub("survivor", bodies)
    c.close()
    wait_for(lambda: b"survivor" in open(os.path.join(data, "nsqd.dat"), "rb").read(), timeout=5,
             message="nsqd.dat with the topic")
    kill9(node)

    # what a node killed in the middle of persisting leaves behind
    with open(os.path.join(data, "nsqd.dat.2596996162.tmp"), "wb") as f:
        f.write(b'{"topics":[{"name":"survivor","paused":false,"chan')
    with open(os.path.join(data, "nsqd.dat.17.tmp"), "wb"):
        pass
    with open(os.path.join(data, "survivor:ch.diskqueue.meta.dat.4242.tmp"), "wb") as f:
        f.write(b"5\n0,")

    node = nsqd_on_data_dir(*args)
    got = consume_all(node.tcp_port, "survivor", "ch", at_least=50)
    assert collections.Counter(got) == collections.Counter(bodies)
    meta = json.loads(open(os.path.join(data, "nsqd.dat"), "rb").read())
    assert [(t["name"], [ch["name"] for ch in t["channels"] or []]) for t in meta["topics"]] == \
        [("survivor", ["ch"])]
    rc = node.stop()
    assert rc == 0
    leftovers = [fn for fn in os.listdir(data) if fn.startswith("nsqd.dat.") and fn.endswith(".tmp")]
    assert not leftovers, leftovers
