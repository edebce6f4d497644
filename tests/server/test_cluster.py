"""The cluster from NSQ's introductions, on loopback ports.

One nsqlookupd, three nsqd registered with it (`--lookupd-tcp-address`), and
`nsqd_sync.client.Consumer`s that know only lookupd's HTTP address: they
find every node that has the topic, get every message published to any of
them (none lost, none doubled), follow nodes that start later or stop, and
skip a node tombstoned for the topic.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import List
from urllib.parse import quote

import pytest

from nsqd_sync.client import Consumer, Producer
from tests.helpers import BodyCollector, NodeProcess, http_request, wait_for

pytestmark = pytest.mark.timeout(90)

TOPIC = "clicks"
POLL = 0.3


def get_json(port: int, path: str):
    status, body, _ = http_request(port, path)
    return status, json.loads(body)


def lookup_ports(lookupd: NodeProcess, topic: str = TOPIC) -> List[int]:
    status, data = get_json(lookupd.http_port, "/lookup?topic=" + quote(topic))
    return sorted(p["tcp_port"] for p in data["producers"]) if status == 200 else []


def start_cluster(start_node, n: int = 3):
    lookupd = start_node("nsqlookupd", ["--broadcast-address=127.0.0.1"])
    nodes = [start_nsqd(start_node, lookupd) for _ in range(n)]
    wait_for(lambda: len(get_json(lookupd.http_port, "/nodes")[1]["producers"]) == n, timeout=15,
             message="%d nodes in /nodes" % n)
    return lookupd, nodes


def start_nsqd(start_node, lookupd: NodeProcess) -> NodeProcess:
    return start_node("nsqd", ["--lookupd-tcp-address=" + lookupd.tcp_address, "--broadcast-address=127.0.0.1"])


def publish(node: NodeProcess, bodies: List[bytes]) -> None:
    with Producer(node.tcp_address) as p:
        p.mpub(TOPIC, bodies)


def lookupd_consumer(consumers, lookupd: NodeProcess, channel: str, handler) -> Consumer:
    return consumers(TOPIC, channel, handler, lookupd_http_addresses=[lookupd.http_address],
                     lookupd_poll_interval=POLL, lookupd_poll_jitter=0.0, max_in_flight=30,
                     reconnect_interval=0.1).start()


def test_three_nodes_one_lookupd_consumer_gets_everything(start_node, consumers):
    lookupd, nodes = start_cluster(start_node)
    nodes_json = get_json(lookupd.http_port, "/nodes")[1]["producers"]
    assert sorted((p["broadcast_address"], p["tcp_port"], p["http_port"]) for p in nodes_json) == \
        sorted(("127.0.0.1", n.tcp_port, n.http_port) for n in nodes)

    expected: Counter = Counter()
    for i, node in enumerate(nodes):
        bodies = [b"node%d-%03d" % (i, j) for j in range(100)]
        publish(node, bodies)
        expected.update(bodies)
    wait_for(lambda: lookup_ports(lookupd) == sorted(n.tcp_port for n in nodes), timeout=10,
             message="the topic on all three nodes")

    h = BodyCollector()
    c = lookupd_consumer(consumers, lookupd, "archive", h)
    wait_for(lambda: h.count() >= 300, timeout=20, message="300 messages from three nodes")
    # and more while it runs
    for i, node in enumerate(nodes):
        bodies = [b"live%d-%03d" % (i, j) for j in range(50)]
        publish(node, bodies)
        expected.update(bodies)
    wait_for(lambda: h.count() >= 450, timeout=20, message="450 messages")
    assert h.snapshot() == expected  # none lost, none doubled
    assert sorted(c.connected_addresses()) == sorted(n.tcp_address for n in nodes)
    assert get_json(lookupd.http_port, "/channels?topic=" + TOPIC)[1]["channels"] == ["archive"]

    # an nsqd started later is picked up at the consumer's next poll
    late = start_nsqd(start_node, lookupd)
    publish(late, [b"late-1", b"late-2"])
    wait_for(lambda: h.has(b"late-1") and h.has(b"late-2"), timeout=15, message="the late node's messages")
    assert late.tcp_address in c.connected_addresses()
    assert h.snapshot()[b"late-1"] == 1

    # an nsqd that stops leaves /lookup and the consumer; the others keep delivering
    gone = nodes[0]
    gone.stop()
    wait_for(lambda: gone.tcp_port not in lookup_ports(lookupd), timeout=10, message="stopped node left /lookup")
    assert len(lookup_ports(lookupd)) == 3
    assert len(get_json(lookupd.http_port, "/nodes")[1]["producers"]) == 3
    wait_for(lambda: gone.tcp_address not in c.connected_addresses(), timeout=10, message="consumer let go")
    publish(nodes[1], [b"after-stop"])
    wait_for(lambda: h.has(b"after-stop"), timeout=10, message="remaining nodes still consumed")
    assert max(h.snapshot().values()) == 1


def test_tombstoned_node_is_skipped(start_node, consumers):
    lookupd, nodes = start_cluster(start_node)
    for i, node in enumerate(nodes):
        publish(node, [b"seed%d" % i])
    wait_for(lambda: len(lookup_ports(lookupd)) == 3, timeout=10, message="topic on three nodes")

    stone = nodes[2]
    status, body, _ = http_request(lookupd.http_port, "/topic/tombstone?topic=%s&node=127.0.0.1:%d"
                                   % (TOPIC, stone.http_port), method="POST", body=b"")
    assert status == 200, body
    assert lookup_ports(lookupd) == sorted(n.tcp_port for n in nodes[:2])
    entry = [p for p in get_json(lookupd.http_port, "/nodes")[1]["producers"] if p["tcp_port"] == stone.tcp_port][0]
    assert dict(zip(entry["topics"], entry["tombstones"]))[TOPIC] is True

    h = BodyCollector()
    c = lookupd_consumer(consumers, lookupd, "fresh", h)
    wait_for(lambda: h.has(b"seed0") and h.has(b"seed1"), timeout=15, message="the two live nodes")
    # the consumer connected to everything lookupd listed at once: the tombstoned node was not
    assert sorted(c.connected_addresses()) == sorted(n.tcp_address for n in nodes[:2])
    polls_before = lookupd.log_text().count("GET /lookup?topic=" + TOPIC)
    wait_for(lambda: lookupd.log_text().count("GET /lookup?topic=" + TOPIC) >= polls_before + 2, timeout=10,
             message="two more polls")
    assert stone.tcp_address not in c.connected_addresses()
    assert not h.has(b"seed2")
    assert h.snapshot() == Counter([b"seed0", b"seed1"])
