"""Publishing while the node exits: every message is stored or refused (issue 12 #7).

In-process, with the real NSQD, topics, channels and diskqueues: publisher
threads call the node's publish path while `NSQD.exit()` flushes every
topic and channel to disk.  A publish that returned (the publisher would
get OK) must have its message on disk afterwards; one that raised would get
E_PUB_FAILED.  The GIL's switch interval is made tiny so the threads
interleave inside the publish path; before the fix a message taken between
a channel's unlocked `exiting` check and its memory queue (already drained
by the flush), or swallowed as "channel gone" by the topic, was answered OK
and lost.
"""
from __future__ import annotations

import sys
import threading
from typing import List, Set

import pytest

from nsqd_sync.diskqueue import DiskQueue, stop_sync_thread
from nsqd_sync.errors import BackendError, ExitingError
from nsqd_sync.nsqd import NSQD
from nsqd_sync.options import Options

pytestmark = pytest.mark.timeout(120)


def _stored(data_dir: str, name: str) -> Set[bytes]:
    q = DiskQueue(name, data_dir, sync_timeout=60.0)
    out: Set[bytes] = set()
    while True:
        batch = q.read_many(1000)
        if not batch:
            break
        out.update(m[26:] for m in batch)
    q.close()
    return out


def _one_round(data_dir: str, deferred: bool) -> List[bytes]:
    opts = Options()
    opts.data_path = data_dir
    node = NSQD(opts)
    topic = node.get_topic("t")
    topic.get_channel("c")
    acked: List[List[bytes]] = [[] for _ in range(4)]
    go = threading.Event()

    def publish(k: int) -> None:
        go.wait()
        for i in range(100000):
            body = b"p%d-%06d" % (k, i)
            try:
                if deferred and i % 2:
                    node.publish_deferred("t", body, 3600.0)
                else:
                    node.publish_one("t", body)
            except (ExitingError, BackendError):
                return
            acked[k].append(body)

    threads = [threading.Thread(target=publish, args=(k,), name="test-pub-%d" % k) for k in range(4)]
    for t in threads:
        t.start()
    go.set()
    while sum(map(len, acked)) < 2000:
        threading.Event().wait(0.001)
    node.exit()
    for t in threads:
        t.join(30)
    stop_sync_thread()
    stored = _stored(data_dir, "t:c") | _stored(data_dir, "t")
    return [b for per in acked for b in per if b not in stored]


@pytest.mark.parametrize("deferred", [False, True], ids=["pub", "pub+dpub"])
def test_publish_during_exit_is_stored_or_refused(tmp_path, deferred):
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        lost: List[bytes] = []
        for r in range(15):
            d = tmp_path / ("r%d" % r)
            d.mkdir()
            lost.extend(_one_round(str(d), deferred))
            if lost:
                break
    finally:
        sys.setswitchinterval(old)
    assert not lost, "%d messages accepted during exit were not stored, e.g. %r" % (len(lost), lost[:3])
