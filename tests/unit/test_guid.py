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
