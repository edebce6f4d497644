"""MemoryQueue's own interface, and Channel's delivery functions under NSQ's names."""
from __future__ import annotations

import pytest

from nsqd_sync.channel import Channel
from nsqd_sync.memqueue import MemoryQueue


def test_memory_queue_bounded_batches():
    q = MemoryQueue(3)
    assert q.put_many([b"a", b"b"]) == 2
    with q.lock:
        assert q.put_many_locked([b"c", b"d"]) == 1  # only what fits
        q.push_front_locked([b"x", b"y"])  # given back: ahead of the rest, in order
        assert len(q) == 5
        assert q.get_many_locked(3) == [b"x", b"y", b"a"]
    assert q.get_many(10) == [b"b", b"c"]
    assert not q and q.depth() == 0
    q.put_many([b"e"])
    assert q.drain() == [b"e"] and q.drain() == []
    assert MemoryQueue(0).put_many([b"z"]) == 0  # --mem-queue-size=0: everything to disk


def test_memory_queue_counts_no_unfinished_tasks():
    q = MemoryQueue(10)
    for _ in range(3):
        q.put_many([b"a", b"b"])
        q.get_many(10)
    assert getattr(q, "unfinished_tasks", 0) == 0  # batches never count tasks nobody marks done


@pytest.mark.parametrize("name,go", [
    ("start_in_flight_timeout", "StartInFlightTimeout"), ("finish_message", "FinishMessage"),
    ("requeue_message", "RequeueMessage"), ("touch_message", "TouchMessage"),
    ("process_in_flight_queue", "processInFlightQueue"), ("process_deferred_queue", "processDeferredQueue"),
])
def test_channel_delivery_functions_carry_nsqs_names(name, go):
    doc = getattr(Channel, name).__doc__
    assert doc is not None and "\n" not in doc.strip() and ("Go: Channel.%s" % go) in doc
