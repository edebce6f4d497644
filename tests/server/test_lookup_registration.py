"""nsqd's registration with nsqlookupd (nsqd_sync/lookup.py).

Two kinds of test:
- our nsqd and nsqlookupd as real processes on loopback ports, checked
  through lookupd's HTTP API (/nodes, /lookup, /topics, /channels);
- an nsqd run in this process against a stand-in lookupd (a raw socket
  server) that records the exact bytes nsqd sends and answers as
  nsqlookupd does: int32 size + data, no frame type.
"""
from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import time
from typing import Callable, List, Optional
from urllib.parse import quote

import pytest

from nsqd_sync import lookup as lookup_mod
from nsqd_sync.nsqd import NSQD
from nsqd_sync.options import Options
from tests.helpers import NodeProcess, RawConn, http_request, wait_for

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------- helpers

def get_json(port: int, path: str):
    status, body, _ = http_request(port, path)
    return status, (json.loads(body) if body else None)


def node_entries(lookupd: NodeProcess) -> List[dict]:
    return get_json(lookupd.http_port, "/nodes")[1]["producers"]


def producer_ports(lookupd: NodeProcess, topic: str) -> List[int]:
    status, data = get_json(lookupd.http_port, "/lookup?topic=" + quote(topic))
    return sorted(p["tcp_port"] for p in data["producers"]) if status == 200 else []


def channels(lookupd: NodeProcess, topic: str) -> List[str]:
    status, data = get_json(lookupd.http_port, "/channels?topic=" + quote(topic))
    return sorted(data["channels"]) if status == 200 else []


def registered(lookupd: NodeProcess, category: str, key: str, subkey: str = "") -> List[int]:
    """TCP ports of the producers in one registration (lookupd's /debug).

    Unregistering a non-ephemeral channel leaves its name in /channels (as
    NSQ's lookupd does); only its producers go, which /debug shows.
    """
    data = get_json(lookupd.http_port, "/debug")[1]
    return sorted(p["tcp_port"] for p in data.get("%s:%s:%s" % (category, key, subkey), []))


def topics(lookupd: NodeProcess) -> List[str]:
    return sorted(get_json(lookupd.http_port, "/topics")[1]["topics"])


def registered_nsqd(start_node, lookupd: NodeProcess, *extra: str) -> NodeProcess:
    return start_node("nsqd", ["--lookupd-tcp-address=" + lookupd.tcp_address,
                               "--broadcast-address=127.0.0.1", *extra])


def pub(node: NodeProcess, topic: str, body: bytes = b"m") -> None:
    c = RawConn(node.tcp_port)
    try:
        c.send("PUB " + topic, body)
        assert c.frame() == (0, b"OK")
    finally:
        c.close()


def sub(node: NodeProcess, topic: str, channel: str) -> RawConn:
    c = RawConn(node.tcp_port)
    c.send("SUB %s %s" % (topic, channel))
    assert c.frame() == (0, b"OK")
    return c


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def has_http_endpoint(node: NodeProcess, path: str, method: str = "POST") -> bool:
    """True when nsqd's HTTP API has this route (the HTTP API is built separately)."""
    status, body, _ = http_request(node.http_port, path, method=method, body=b"" if method != "GET" else None)
    return not (status == 404 and b"NOT_FOUND" in body and b"TOPIC" not in body and b"CHANNEL" not in body)


# ---------------------------------------------------------------- real processes

def test_node_registers_its_ports_and_broadcast_address(start_node):
    lookupd = start_node("nsqlookupd")
    node = registered_nsqd(start_node, lookupd)
    entries = wait_for(lambda: node_entries(lookupd), timeout=10, message="node in /nodes")
    assert len(entries) == 1
    e = entries[0]
    assert e["broadcast_address"] == "127.0.0.1"
    assert e["tcp_port"] == node.tcp_port and e["http_port"] == node.http_port
    assert e["hostname"] == socket.gethostname()
    assert e["version"] == "1.3.0"
    assert e["remote_address"].startswith("127.0.0.1:")
    assert e["topics"] == []

    pub(node, "reg_topic")
    wait_for(lambda: producer_ports(lookupd, "reg_topic") == [node.tcp_port], timeout=5, message="topic registered")
    status, data = get_json(lookupd.http_port, "/lookup?topic=reg_topic")
    assert data["channels"] == []
    p = data["producers"][0]
    assert (p["broadcast_address"], p["http_port"], p["version"]) == ("127.0.0.1", node.http_port, "1.3.0")


def test_broadcast_flags_are_what_lookupd_hands_out(start_node):
    lookupd = start_node("nsqlookupd")
    start_node("nsqd", ["-lookupd-tcp-address", lookupd.tcp_address, "--broadcast-address=nsqd-b.example",
                        "--broadcast-tcp-port=14150", "--broadcast-http-port=14151"])
    entries = wait_for(lambda: node_entries(lookupd), timeout=10, message="node in /nodes")
    assert [(e["broadcast_address"], e["tcp_port"], e["http_port"]) for e in entries] == \
        [("nsqd-b.example", 14150, 14151)]


def test_topic_and_channel_changes_propagate(start_node):
    lookupd = start_node("nsqlookupd")
    node = registered_nsqd(start_node, lookupd)
    wait_for(lambda: node_entries(lookupd), timeout=10, message="node registered")

    pub(node, "prop")
    wait_for(lambda: producer_ports(lookupd, "prop") == [node.tcp_port], timeout=5, message="topic")
    perm = sub(node, "prop", "perm")
    eph = sub(node, "prop", "live#ephemeral")
    wait_for(lambda: channels(lookupd, "prop") == ["live#ephemeral", "perm"], timeout=5, message="channels")
    # an ephemeral channel goes when its last consumer does, and lookupd forgets it
    eph.close()
    wait_for(lambda: channels(lookupd, "prop") == ["perm"], timeout=5, message="ephemeral channel gone")
    perm.close()

    # an ephemeral topic goes with its last channel
    c = sub(node, "gone#ephemeral", "ch#ephemeral")
    wait_for(lambda: "gone#ephemeral" in topics(lookupd), timeout=5, message="ephemeral topic")
    assert producer_ports(lookupd, "gone#ephemeral") == [node.tcp_port]
    c.close()
    wait_for(lambda: "gone#ephemeral" not in topics(lookupd), timeout=5, message="ephemeral topic gone")
    assert [e["topics"] for e in node_entries(lookupd)] == [["prop"]]

    # topics and channels created and deleted over nsqd's HTTP API (when it has one)
    if not has_http_endpoint(node, "/topic/create?topic=made"):
        return
    wait_for(lambda: producer_ports(lookupd, "made") == [node.tcp_port], timeout=5, message="HTTP-created topic")
    assert http_request(node.http_port, "/channel/create?topic=made&channel=mc", method="POST", body=b"")[0] == 200
    wait_for(lambda: channels(lookupd, "made") == ["mc"], timeout=5, message="HTTP-created channel")
    assert registered(lookupd, "channel", "made", "mc") == [node.tcp_port]
    assert http_request(node.http_port, "/channel/delete?topic=made&channel=mc", method="POST", body=b"")[0] == 200
    wait_for(lambda: registered(lookupd, "channel", "made", "mc") == [], timeout=5, message="HTTP-deleted channel")
    assert producer_ports(lookupd, "made") == [node.tcp_port]
    assert registered(lookupd, "channel", "prop", "perm") == [node.tcp_port]
    assert http_request(node.http_port, "/topic/delete?topic=prop", method="POST", body=b"")[0] == 200
    wait_for(lambda: producer_ports(lookupd, "prop") == [], timeout=5, message="HTTP-deleted topic")
    assert registered(lookupd, "channel", "prop", "perm") == []  # its channels went with it
    assert [e["topics"] for e in node_entries(lookupd)] == [["made"]]


def test_reregisters_everything_when_lookupd_restarts(start_node):
    lookupd = start_node("nsqlookupd")
    port = lookupd.tcp_port
    node = registered_nsqd(start_node, lookupd)
    pub(node, "alone")          # a topic with no channel
    c1 = sub(node, "busy", "c1")  # a topic with channels
    c2 = sub(node, "busy", "c2")
    wait_for(lambda: channels(lookupd, "busy") == ["c1", "c2"] and producer_ports(lookupd, "alone"),
             timeout=5, message="registered")

    lookupd.kill()
    again = start_node("nsqlookupd", tcp="127.0.0.1:%d" % port)
    wait_for(lambda: channels(again, "busy") == ["c1", "c2"], timeout=15, message="re-registered after restart")
    wait_for(lambda: producer_ports(again, "alone") == [node.tcp_port], timeout=5, message="topic re-registered")
    assert producer_ports(again, "busy") == [node.tcp_port]
    assert [sorted(e["topics"]) for e in node_entries(again)] == [["alone", "busy"]]
    assert "LOOKUP connecting to 127.0.0.1:%d" % port in node.log_text()
    c1.close()
    c2.close()


def test_connects_to_a_lookupd_that_starts_later(start_node):
    port = free_port()
    node = start_node("nsqd", ["--lookupd-tcp-address=127.0.0.1:%d" % port, "--broadcast-address=127.0.0.1"])
    pub(node, "early")
    wait_for(lambda: "connection failed" in node.log_text(), timeout=5, message="a failed attempt")
    lookupd = start_node("nsqlookupd", tcp="127.0.0.1:%d" % port)
    wait_for(lambda: producer_ports(lookupd, "early") == [node.tcp_port], timeout=20, message="registered late")


def test_put_config_changes_lookupds_live(start_node):
    node = start_node("nsqd", ["--broadcast-address=127.0.0.1"])
    status, body, _ = http_request(node.http_port, "/config/nsqlookupd_tcp_addresses", method="PUT",
                                   body=b"[]")
    assert status == 200, body
    first = start_node("nsqlookupd")
    second = start_node("nsqlookupd")
    pub(node, "cfg")

    def put(addresses) -> None:
        status, body, _ = http_request(node.http_port, "/config/nsqlookupd_tcp_addresses", method="PUT",
                                       body=json.dumps(addresses).encode())
        assert status == 200, body
        assert json.loads(body) == addresses

    put([first.tcp_address])
    wait_for(lambda: producer_ports(first, "cfg") == [node.tcp_port], timeout=10, message="first lookupd")
    put([first.tcp_address, second.tcp_address])
    wait_for(lambda: producer_ports(second, "cfg") == [node.tcp_port], timeout=10, message="second lookupd")
    put([second.tcp_address])
    wait_for(lambda: node_entries(first) == [], timeout=10, message="first lookupd dropped")
    assert producer_ports(second, "cfg") == [node.tcp_port]
    assert json.loads(http_request(node.http_port, "/config/nsqlookupd_tcp_addresses")[1]) == [second.tcp_address]


# ---------------------------------------------------------------- in-process nsqd, stand-in lookupd

IDENTIFY_ANSWER = json.dumps({"broadcast_address": "127.0.0.1", "hostname": "fake", "http_port": 1,
                              "tcp_port": 2, "version": "1.3.0"}).encode()


class FakeLookupd:
    """Speaks lookupd's side of `  V1`; records each connection's commands.

    `answer(line, body)` returns the response bytes, or None to close the
    connection without answering.
    """

    def __init__(self, answer: Optional[Callable[[str, Optional[bytes]], Optional[bytes]]] = None,
                 port: int = 0) -> None:
        self.answer = answer or self.ok
        self.lock = threading.Lock()
        self.connections: List[dict] = []
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                conn = {"opened": time.monotonic(), "magic": self.rfile.read(4), "commands": [],
                        "closed": threading.Event()}
                with owner.lock:
                    owner.connections.append(conn)
                try:
                    while True:
                        line = self.rfile.readline()
                        if not line.endswith(b"\n"):
                            break
                        text = line.decode().rstrip("\n")
                        body = None
                        if text == "IDENTIFY":
                            (n,) = struct.unpack(">i", self.rfile.read(4))
                            body = self.rfile.read(n)
                        with owner.lock:
                            conn["commands"].append((text, body) if body is not None else text)
                        resp = owner.answer(text, body)
                        if resp is None:
                            break
                        self.wfile.write(struct.pack(">i", len(resp)) + resp)
                except OSError:
                    pass
                finally:
                    conn["closed"].set()

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="test-fake-lookupd", daemon=True)
        self.thread.start()

    @staticmethod
    def ok(line: str, body: Optional[bytes]) -> bytes:
        return IDENTIFY_ANSWER if line == "IDENTIFY" else b"OK"

    def commands(self, i: int = -1) -> list:
        with self.lock:
            if not self.connections:
                return []
            return list(self.connections[i]["commands"])

    def count(self) -> int:
        with self.lock:
            return len(self.connections)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def fakes():
    made: List[FakeLookupd] = []

    def make(*args, **kw) -> FakeLookupd:
        f = FakeLookupd(*args, **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


@pytest.fixture
def inproc_nsqd(tmp_path):
    """An NSQD in this process on loopback ephemeral ports (no lookupd yet)."""
    opts = Options(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0", data_path=str(tmp_path),
                   broadcast_address="127.0.0.1")
    node = NSQD(opts)
    node.start()
    yield node
    node.exit()


def lookup_threads() -> List[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("nsqd-lookup-"))


def test_wire_sequence_identify_register_ping(inproc_nsqd, fakes, monkeypatch):
    nsqd = inproc_nsqd
    monkeypatch.setattr(lookup_mod, "PING_INTERVAL", 0.3)
    nsqd.get_topic("bare")
    busy = nsqd.get_topic("busy")
    busy.get_channel("c1")
    busy.get_channel("c2")
    fake = fakes()
    nsqd.on_lookupd_addresses_changed([fake.address])
    assert lookup_threads() == ["nsqd-lookup-" + fake.address]
    wait_for(lambda: len(fake.commands()) >= 4, timeout=5, message="identify and registrations")
    assert fake.connections[0]["magic"] == b"  V1"
    cmds = fake.commands()
    line, body = cmds[0]
    assert line == "IDENTIFY"
    # the same bytes the real nsqd sends: Go's sorted-key compact JSON
    assert body == json.dumps({"broadcast_address": "127.0.0.1", "hostname": socket.gethostname(),
                               "http_port": nsqd.http_address[1], "tcp_port": nsqd.tcp_address[1],
                               "version": "1.3.0"}, separators=(",", ":")).encode()
    assert sorted(cmds[1:4]) == ["REGISTER bare", "REGISTER busy c1", "REGISTER busy c2"]
    assert nsqd.lookup.lookupd_http_addresses() == ["127.0.0.1:1"]

    busy.get_channel("c3#ephemeral")
    wait_for(lambda: "REGISTER busy c3#ephemeral" in fake.commands(), timeout=5, message="new channel")
    busy.delete_channel("c1")
    wait_for(lambda: "UNREGISTER busy c1" in fake.commands(), timeout=5, message="deleted channel")
    nsqd.get_topic("fresh")
    wait_for(lambda: "REGISTER fresh" in fake.commands(), timeout=5, message="new topic")
    n = len(fake.commands())
    nsqd.delete_topic("busy")
    # as NSQ: the topic first, then each of its channels
    wait_for(lambda: len(fake.commands()) >= n + 3, timeout=5, message="deleted topic")
    after = [c for c in fake.commands()[n:] if c != "PING"]
    assert after[0] == "UNREGISTER busy"
    assert sorted(after[1:3]) == ["UNREGISTER busy c2", "UNREGISTER busy c3#ephemeral"]
    # PING every PING_INTERVAL on an idle connection
    wait_for(lambda: fake.commands().count("PING") >= 2, timeout=5, message="two PINGs")
    assert fake.count() == 1


def test_error_answers_reconnect_with_backoff(inproc_nsqd, fakes):
    nsqd = inproc_nsqd
    state = {"good": False}

    def answer(line: str, body: Optional[bytes]) -> Optional[bytes]:
        if not state["good"]:
            return b"E_INVALID client must IDENTIFY"  # then the connection stays open: nsqd must close it
        return FakeLookupd.ok(line, body)

    fake = fakes(answer)
    nsqd.get_topic("t").get_channel("c")
    nsqd.on_lookupd_addresses_changed([fake.address])
    wait_for(lambda: fake.count() >= 3, timeout=10, message="three attempts")
    with fake.lock:
        opened = [c["opened"] for c in fake.connections[:3]]
        assert all(c["closed"].wait(5) for c in fake.connections[:2])
    assert opened[1] - opened[0] >= 0.2 and opened[2] - opened[1] >= 0.4, opened  # doubling backoff
    assert not nsqd.lookup.peers()[0].connected
    state["good"] = True
    wait_for(lambda: "REGISTER t c" in fake.commands(), timeout=10, message="registered once lookupd answers")
    assert nsqd.lookup.peers()[0].connected


def test_reconnects_at_once_when_lookupd_drops_the_connection(inproc_nsqd, fakes):
    nsqd = inproc_nsqd
    fake = fakes()
    nsqd.get_topic("t")
    nsqd.on_lookupd_addresses_changed([fake.address])
    wait_for(lambda: "REGISTER t" in fake.commands(), timeout=5, message="registered")
    with fake.lock:
        first = fake.connections[0]
    # the stand-in closes the connection at the next command: nsqd notices EOF while idle
    fake.answer = lambda line, body: None
    nsqd.get_topic("u")
    wait_for(lambda: first["closed"].is_set(), timeout=5, message="first connection closed")
    fake.answer = FakeLookupd.ok
    wait_for(lambda: fake.count() >= 2 and {"REGISTER t", "REGISTER u"} <= set(fake.commands()),
             timeout=10, message="re-registered on a new connection")


def test_set_addresses_live_and_exit_stops_peers(inproc_nsqd, fakes, caplog):
    nsqd = inproc_nsqd
    a, b = fakes(), fakes()
    nsqd.get_topic("t")
    nsqd.on_lookupd_addresses_changed([a.address])
    wait_for(lambda: "REGISTER t" in a.commands(), timeout=5, message="a registered")
    nsqd.on_lookupd_addresses_changed([a.address, b.address, b.address])
    wait_for(lambda: "REGISTER t" in b.commands(), timeout=5, message="b registered")
    assert lookup_threads() == sorted(["nsqd-lookup-" + a.address, "nsqd-lookup-" + b.address])
    assert a.count() == 1  # a kept its connection
    nsqd.on_lookupd_addresses_changed([b.address, "no-port-here"])
    wait_for(lambda: a.connections[0]["closed"].is_set(), timeout=5, message="a dropped")
    peer = [p for p in nsqd.lookup.peers() if p.address == "no-port-here"][0]
    wait_for(lambda: "LOOKUPD(no-port-here): connection failed" in caplog.text, timeout=5, message="bad address")
    assert peer.thread.is_alive() and not peer.connected  # a bad address is retried, not fatal
    nsqd.on_lookupd_addresses_changed([b.address])
    assert not peer.thread.is_alive()
    assert lookup_threads() == ["nsqd-lookup-" + b.address]
    assert nsqd.opts.lookupd_tcp_addresses == [b.address]
    nsqd.get_topic("v")
    wait_for(lambda: "REGISTER v" in b.commands(), timeout=5, message="b still told")
    assert "REGISTER v" not in a.commands()
    nsqd.exit()
    assert b.connections[0]["closed"].wait(5)
    assert lookup_threads() == []
    nsqd.on_lookupd_addresses_changed([a.address])  # after exit: ignored
    assert lookup_threads() == []


def test_new_topic_gets_the_channels_lookupd_knows(start_node):
    """As NSQ: a topic created on a node is given the (non-ephemeral) channels lookupd has for it."""
    lookupd = start_node("nsqlookupd", ["--broadcast-address=127.0.0.1"])
    a = registered_nsqd(start_node, lookupd)
    b = registered_nsqd(start_node, lookupd)
    c1 = sub(a, "pre", "archive")
    c2 = sub(a, "pre", "live#ephemeral")
    wait_for(lambda: channels(lookupd, "pre") == ["archive", "live#ephemeral"], timeout=5, message="channels")
    wait_for(lambda: len(node_entries(lookupd)) == 2, timeout=10, message="both nodes")
    pub(b, "pre", b"kept for archive")
    # Without pre-creation the message would wait in b's topic and go to the first channel made
    # there ("other"); with it, b's "archive" already holds it.
    other = sub(b, "pre", "other")
    c = sub(b, "pre", "archive")
    c.send("RDY 1")
    assert c.message()[3] == b"kept for archive"
    stats = get_json(b.http_port, "/stats?format=json")
    if stats[0] == 200:
        names = [ch["channel_name"] for t in stats[1]["topics"] for ch in t["channels"]]
        assert sorted(names) == ["archive", "other"]
    for conn in (c, other, c1, c2):
        conn.close()
