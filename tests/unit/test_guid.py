"""nsqd_sync.guid: NSQ-style message IDs (time << 22 | node << 12 | sequence)."""
from __future__ import annotations

import re
import threading
import time

import pytest

from nsqd_sync import guid

HEX_ID = re.compile(rb"^[0-9a-f]{16}$")


def test_ids_are_16_lowercase_hex_and_increasing():
    factory = guid.GUIDFactory(7)
    ids = factory.new_ids(1000) + [factory.new_id() for _ in range(100)]
    assert all(HEX_ID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    values = [guid.id_to_int(i) for i in ids]
    assert values == sorted(values)


@pytest.mark.parametrize("node_id", [0, 1, 512, 1023])
def test_node_id_and_time_are_in_the_id(node_id):
    factory = guid.GUIDFactory(node_id)
    before = time.time_ns() >> 20
    mid = factory.new_id()
    after = time.time_ns() >> 20
    ts, node, seq = guid.id_parts(mid)
    assert node == node_id
    assert before <= ts <= after
    assert 0 <= seq < guid.SEQUENCE_MAX


def test_layout_matches_nsq():
    factory = guid.GUIDFactory(3)
    v = guid.id_to_int(factory.new_id())
    assert (v >> 12) & 0x3FF == 3
    assert (v >> 22) + guid.EPOCH == guid.id_parts(b"%016x" % v)[0]
    assert v < 1 << 63  # fits the signed 64-bit value NSQ keeps


@pytest.mark.parametrize("node_id", [-1, 1024, 5000])
def test_node_id_out_of_range(node_id):
    with pytest.raises(ValueError):
        guid.GUIDFactory(node_id)


def test_more_than_one_sequence_worth_in_one_call():
    factory = guid.GUIDFactory(1)
    ids = factory.new_ids(3 * guid.SEQUENCE_MAX + 17)
    assert len(set(ids)) == len(ids)
    values = [guid.id_to_int(i) for i in ids]
    assert values == sorted(values)


def test_two_nodes_never_collide():
    a, b = guid.GUIDFactory(1), guid.GUIDFactory(2)
    assert not set(a.new_ids(2000)) & set(b.new_ids(2000))


def test_unique_across_threads():
    factory = guid.GUIDFactory(9)
    out = []
    lock = threading.Lock()

    def work():
        mine = []
        for _ in range(50):
            mine.extend(factory.new_ids(40))
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=work, name="guid-%d" % i) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(out) == 4 * 50 * 40
    assert len(set(out)) == len(out)


def test_waiting_for_the_next_millisecond_holds_no_lock(monkeypatch):
    """Issue 12 #4: a caller waiting for a fresh pseudo-millisecond must not block others.

    The clock is held still, so the first caller has used up its slot and
    waits; before the fix it waited holding the factory's lock (which was
    shared by every topic of the node), so every publisher stalled with it.
    """
    frozen = [time.time_ns()]
    fake_time = type("FrozenClock", (), {"time_ns": staticmethod(lambda: frozen[0]),
                                         "sleep": staticmethod(time.sleep)})
    monkeypatch.setattr(guid, "time", fake_time)
    factory = guid.GUIDFactory(5)
    result = []
    waiter = threading.Thread(target=lambda: result.extend(factory.new_ids(guid.SEQUENCE_MAX + 10)),
                              name="guid-waiter", daemon=True)
    waiter.start()
    deadline = time.monotonic() + 10
    while factory._sequence < guid.SEQUENCE_MAX and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        assert waiter.is_alive(), "the frozen clock should keep the first caller waiting"
        got = factory._lock.acquire(timeout=2.0)
        assert got, "the factory's lock is held while waiting for the next pseudo-millisecond"
        factory._lock.release()
    finally:
        frozen[0] += 1 << 21  # let the waiter through
        waiter.join(10)
    assert len(set(result)) == guid.SEQUENCE_MAX + 10


def test_topics_have_their_own_id_factory(tmp_path):
    """As NSQ (topic.idFactory): a huge MPUB drawing IDs on one topic never waits on another's."""
    from nsqd_sync.nsqd import NSQD
    from nsqd_sync.options import Options

    opts = Options()
    opts.data_path = str(tmp_path)
    node = NSQD(opts)
    a, b = node.get_topic("a"), node.get_topic("b")
    try:
        assert a.guid is not b.guid
        assert a.guid.node_id == b.guid.node_id == opts.node_id
    finally:
        a.close(flush=False)
        b.close(flush=False)


def test_zero_ids():
    assert guid.GUIDFactory(1).new_ids(0) == []
