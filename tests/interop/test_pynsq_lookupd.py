"""Interop: pynsq's Reader discovers our nsqd nodes through our nsqlookupd.

`nsq.Reader(lookupd_http_addresses=[...])` (the real client from PyPI, on a
tornado IOLoop run in the test thread with a deadline) polls our lookupd's
`/lookup`, connects to every nsqd registered for the topic, and receives
every message published to any of them, including a node started while the
Reader runs.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import List

import pytest

nsq = pytest.importorskip("nsq")
pytest.importorskip("tornado.ioloop")

from nsqd_sync.client import Producer  # noqa: E402
from tests.helpers import NodeProcess, http_request, wait_for  # noqa: E402
from tests.interop.pynsq_loop import close_all, make_loop, run_loop  # noqa: E402

pytestmark = pytest.mark.timeout(90)

TOPIC = "pynsq_lookupd"


def publish(node: NodeProcess, bodies: List[bytes]) -> None:
    with Producer(node.tcp_address) as p:
        p.mpub(TOPIC, bodies)


def registered_nsqd(start_node, lookupd: NodeProcess) -> NodeProcess:
    return start_node("nsqd", ["--lookupd-tcp-address=" + lookupd.tcp_address, "--broadcast-address=127.0.0.1"])


def lookup_count(lookupd: NodeProcess) -> int:
    status, body, _ = http_request(lookupd.http_port, "/lookup?topic=" + TOPIC)
    return len(json.loads(body)["producers"]) if status == 200 else 0


def test_pynsq_reader_finds_every_node_through_lookupd(start_node):
    lookupd = start_node("nsqlookupd", ["--broadcast-address=127.0.0.1"])
    nodes = [registered_nsqd(start_node, lookupd) for _ in range(2)]
    expected: Counter = Counter()
    for i, node in enumerate(nodes):
        bodies = [b"n%d-%03d" % (i, j) for j in range(100)]
        publish(node, bodies)
        expected.update(bodies)
    wait_for(lambda: lookup_count(lookupd) == 2, timeout=10, message="both nodes registered")

    seen: List[bytes] = []
    lock = threading.Lock()
    first_batch = threading.Event()

    def handler(msg) -> bool:
        with lock:
            seen.append(msg.body)
            if len(seen) >= 200:
                first_batch.set()
        return True

    # a third node joins while the Reader runs: started and published to from another thread
    late_bodies = [b"late-%02d" % j for j in range(20)]
    expected.update(late_bodies)
    late: List[NodeProcess] = []
    errors: List[BaseException] = []
    abort = threading.Event()

    def add_late_node() -> None:
        try:
            deadline = time.monotonic() + 30
            while not first_batch.wait(0.05):
                if abort.is_set() or time.monotonic() > deadline:
                    return
            node = registered_nsqd(start_node, lookupd)
            late.append(node)
            publish(node, late_bodies)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    joiner = threading.Thread(target=add_late_node, name="test-late-nsqd", daemon=True)
    joiner.start()

    loop = make_loop()
    # pynsq takes whole seconds for the poll interval
    reader = nsq.Reader(topic=TOPIC, channel="pynsq", message_handler=handler,
                        lookupd_http_addresses=["http://" + lookupd.http_address],
                        lookupd_poll_interval=1, lookupd_poll_jitter=0.0, max_in_flight=20)
    try:
        run_loop(loop, lambda: len(seen) >= 220 or bool(errors), timeout=40)
        connected = sorted(c.id for c in reader.conns.values())
    finally:
        abort.set()
        joiner.join(30)
        close_all(loop, [reader])
    assert not errors, errors
    assert late, "the late node did not start"
    assert Counter(seen) == expected  # every message once, from all three nodes
    assert connected == sorted(n.tcp_address for n in nodes + late)
