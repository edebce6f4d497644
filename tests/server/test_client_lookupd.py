"""Consumer discovery through nsqlookupd's HTTP /lookup.

The first tests use a small stand-in lookupd (an http.server on a loopback
port answering /lookup with whatever the test says) in front of our nsqd
nodes, so discovery is tested on its own.  The cluster test runs our nsqlookupd with
our nsqd nodes registered with it (tests/server/test_cluster.py has more).
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List
from urllib.parse import parse_qs, urlsplit

import pytest

from nsqd_sync.client import Producer
from tests.helpers import BodyCollector, NodeProcess, http_request, wait_for

pytestmark = pytest.mark.timeout(60)


class FakeLookupd:
    """Answers GET /lookup?topic=T with the nsqd TCP ports in `ports[T]` (404 if none)."""

    def __init__(self) -> None:
        self.ports: dict = {}
        self.requests: List[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                topic = parse_qs(url.query).get("topic", [""])[0]
                owner.requests.append({"path": url.path, "topic": topic, "accept": self.headers.get("Accept")})
                ports = owner.ports.get(topic)
                if url.path != "/lookup" or ports is None:
                    body, status = b'{"message":"TOPIC_NOT_FOUND"}', 404
                else:
                    producers = [{"remote_address": "127.0.0.1:1", "hostname": "h", "broadcast_address": "127.0.0.1",
                                  "tcp_port": p, "http_port": 1, "version": "1.3.0"} for p in ports]
                    body, status = json.dumps({"channels": [], "producers": producers}).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-fake-lookupd", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def fake_lookupd():
    lookupd = FakeLookupd()
    yield lookupd
    lookupd.close()


@pytest.fixture
def start_node(tmp_path):
    """This module's own start_node: start(kind, name, args) puts an nsqd on data dir `name`."""
    nodes = []

    def start(kind: str, name: str, args=(), **kw) -> NodeProcess:
        data = None
        if kind == "nsqd":
            d = tmp_path / name
            d.mkdir(exist_ok=True)
            data = str(d)
        node = NodeProcess(kind, args=args, data_path=data, **kw)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.kill()


def publish(node: NodeProcess, topic: str, bodies) -> None:
    with Producer(node.tcp_address) as p:
        p.mpub(topic, list(bodies))


# ---------------------------------------------------------------- discovery via a stand-in lookupd

def test_discovers_nodes_at_each_poll(fake_lookupd, start_node, consumers):
    a = start_node("nsqd", "a")
    b = start_node("nsqd", "b")
    publish(a, "disc", [b"a1", b"a2"])
    publish(b, "disc", [b"b1", b"b2"])
    h = BodyCollector()
    c = consumers("disc", "ch", h, lookupd_http_addresses=["http://" + fake_lookupd.address],
                  lookupd_poll_interval=0.2, lookupd_poll_jitter=0.0, max_in_flight=10)
    c.start()
    # lookupd knows no such topic yet (404): nothing to connect to, keep polling
    wait_for(lambda: len(fake_lookupd.requests) >= 2, timeout=5, message="two polls")
    assert c.connected_addresses() == []
    assert fake_lookupd.requests[0]["topic"] == "disc"
    assert fake_lookupd.requests[0]["accept"] == "application/vnd.nsq; version=1.0"
    fake_lookupd.ports["disc"] = [a.tcp_port]
    wait_for(lambda: sorted(h.bodies) == [b"a1", b"a2"], timeout=5, message="node a's messages")
    assert c.connected_addresses() == [a.tcp_address]
    fake_lookupd.ports["disc"] = [a.tcp_port, b.tcp_port]
    wait_for(lambda: h.count() == 4, timeout=5, message="node b picked up at the next poll")
    assert sorted(h.bodies) == [b"a1", b"a2", b"b1", b"b2"]
    assert sorted(c.connected_addresses()) == sorted([a.tcp_address, b.tcp_address])
    assert {s["rdy"] for s in c.connection_states().values()} == {5}


def test_vanished_node_is_not_reconnected(fake_lookupd, start_node, consumers):
    a = start_node("nsqd", "a")
    b = start_node("nsqd", "b")
    fake_lookupd.ports["gone"] = [a.tcp_port, b.tcp_port]
    h = BodyCollector()
    c = consumers("gone", "ch", h, lookupd_http_addresses=[fake_lookupd.address], lookupd_poll_interval=0.2,
                  lookupd_poll_jitter=0.0, reconnect_interval=0.1, max_in_flight=4)
    c.start()
    wait_for(lambda: len(c.connected_addresses()) == 2, timeout=5, message="both connected")
    fake_lookupd.ports["gone"] = [b.tcp_port]
    a.stop()
    wait_for(lambda: c.connected_addresses() == [b.tcp_address], timeout=5, message="a dropped")
    # RDY goes to the remaining connection
    wait_for(lambda: c.connection_states().get(b.tcp_address, {}).get("rdy") == 4, timeout=5,
             message="full RDY on b")
    polls = len(fake_lookupd.requests)
    wait_for(lambda: len(fake_lookupd.requests) >= polls + 3, timeout=5, message="more polls")
    assert c.connected_addresses() == [b.tcp_address]
    assert a.tcp_address not in c._reconnects
    publish(b, "gone", [b"still here"])
    wait_for(lambda: h.bodies == [b"still here"], timeout=5, message="b still consumed")


def test_unreachable_lookupd_is_retried(start_node, consumers):
    node = start_node("nsqd", "a")
    lookupd = FakeLookupd()
    port = lookupd.server.server_address[1]
    lookupd.close()  # nothing listens there now
    h = BodyCollector()
    c = consumers("t", "ch", h, lookupd_http_addresses=["127.0.0.1:%d" % port],
                  nsqd_tcp_addresses=[node.tcp_address], lookupd_poll_interval=0.1, lookupd_request_timeout=0.5)
    c.start()
    publish(node, "t", [b"direct"])
    wait_for(lambda: h.bodies == [b"direct"], timeout=5, message="direct node still consumed")


# ---------------------------------------------------------------- the real cluster

def lookup(lookupd: NodeProcess, topic: str) -> List[int]:
    status, body, _ = http_request(lookupd.http_port, "/lookup?topic=" + topic)
    if status != 200:
        return []
    return sorted(p["tcp_port"] for p in json.loads(body)["producers"])


def start_registered_nsqd(start_node, lookupd: NodeProcess, name: str) -> NodeProcess:
    return start_node("nsqd", name, args=["--lookupd-tcp-address=" + lookupd.tcp_address,
                                          "--broadcast-address=127.0.0.1"])


def test_cluster_consumer_finds_every_node_through_lookupd(start_node, consumers):
    lookupd = start_node("nsqlookupd", "lookupd")
    nodes = [start_registered_nsqd(start_node, lookupd, "n%d" % i) for i in range(2)]
    expected = []
    for i, node in enumerate(nodes):
        bodies = [b"n%d-%d" % (i, j) for j in range(10)]
        publish(node, "cluster", bodies)
        expected.extend(bodies)
    wait_for(lambda: lookup(lookupd, "cluster") == sorted(n.tcp_port for n in nodes), timeout=10,
             message="both nodes registered")
    h = BodyCollector()
    c = consumers("cluster", "ch", h, lookupd_http_addresses=[lookupd.http_address], lookupd_poll_interval=0.3,
                  lookupd_poll_jitter=0.0, max_in_flight=10, reconnect_interval=0.1)
    c.start()
    wait_for(lambda: h.count() >= 20, timeout=10, message="messages from both nodes")
    assert sorted(h.bodies) == sorted(expected)

    # a node started later is picked up at the next poll
    late = start_registered_nsqd(start_node, lookupd, "late")
    publish(late, "cluster", [b"late"])
    wait_for(lambda: b"late" in h.bodies, timeout=10, message="late node's message")
    assert late.tcp_address in c.connected_addresses()

    # a node that stops leaves lookupd and the consumer
    nodes[0].stop()
    wait_for(lambda: nodes[0].tcp_port not in lookup(lookupd, "cluster"), timeout=10, message="node left lookupd")
    wait_for(lambda: nodes[0].tcp_address not in c.connected_addresses(), timeout=10, message="consumer let go")
    publish(nodes[1], "cluster", [b"after"])
    wait_for(lambda: b"after" in h.bodies, timeout=10, message="remaining nodes still consumed")
    assert len(h.bodies) == len(set(h.bodies))
