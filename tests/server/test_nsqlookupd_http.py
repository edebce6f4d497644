"""nsqlookupd's HTTP API over real loopback sockets.

Shapes, status codes, headers (and their order) were checked byte for byte
against the real nsqlookupd 1.3.0.
"""
from __future__ import annotations

import http.client
import json
import socket
import struct
from typing import Dict, List, Optional, Tuple

import pytest

from tests.helpers import NodeProcess, wait_for

pytestmark = pytest.mark.timeout(60)

V1_ACCEPT = {"Accept": "application/vnd.nsq; version=1.0"}
JSON_HEADERS = [("Content-Type", "application/json; charset=utf-8"),
                ("X-Nsq-Content-Type", "nsq; version=1.0")]


class Peer:
    """An nsqd-like lookup-protocol connection used to register producers."""

    def __init__(self, port: int, **identity) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.sock.sendall(b"  V1")
        info = dict(broadcast_address="node", tcp_port=4150, http_port=4151, version="1.3.0",
                    hostname="host")
        info.update(identity)
        body = json.dumps(info).encode()
        self.sock.sendall(b"IDENTIFY\n" + struct.pack(">i", len(body)) + body)
        self.response()

    def response(self) -> bytes:
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">i", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    out, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return out
            d = self.sock.recv(65536)
            if not d:
                raise EOFError
            self.buf += d

    def command(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\n")
        return self.response()

    def close(self) -> None:
        self.sock.close()


def request(port: int, method: str, path: str, headers: Optional[Dict[str, str]] = None,
            body: Optional[bytes] = None) -> Tuple[int, List[Tuple[str, str]], bytes]:
    """One request on a fresh connection; no redirects followed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def without_date(headers: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    return [(k, v) for k, v in headers if k != "Date"]


def get(node: NodeProcess, path: str):
    status, _, body = request(node.http_port, "GET", path, V1_ACCEPT)
    return status, json.loads(body)


def post(node: NodeProcess, path: str):
    status, _, body = request(node.http_port, "POST", path)
    return status, json.loads(body) if body else None


@pytest.fixture(scope="module")
def lookupd():
    node = NodeProcess("nsqlookupd", args=["--tombstone-lifetime=1s"])
    yield node
    assert node.stop() == 0


@pytest.fixture
def peers(lookupd):
    opened = []

    def open_peer(**identity) -> Peer:
        p = Peer(lookupd.tcp_port, **identity)
        opened.append(p)
        return p

    yield open_peer
    for p in opened:
        p.close()


# ---------------------------------------------------------------- node endpoints

def test_ping_is_plain_ok(lookupd):
    status, headers, body = request(lookupd.http_port, "GET", "/ping")
    assert (status, body) == (200, b"OK")
    assert without_date(headers) == [("Content-Length", "2"),
                                     ("Content-Type", "text/plain; charset=utf-8")]
    assert headers[0][0] == "Date"


def test_info_byte_for_byte(lookupd):
    sock = socket.create_connection(("127.0.0.1", lookupd.http_port), timeout=5)
    sock.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\nAccept: application/vnd.nsq version=1.0\r\n\r\n")
    raw = b""
    while not raw.endswith(b"}"):
        d = sock.recv(4096)
        assert d
        raw += d
    sock.close()
    head, body = raw.split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert [ln for ln in lines[1:] if not ln.startswith(b"Date: ")] == [
        b"Content-Type: application/json; charset=utf-8",
        b"X-Nsq-Content-Type: nsq; version=1.0",
        b"Content-Length: 19",
    ]
    assert body == b'{"version":"1.3.0"}'


def test_keep_alive_serves_several_requests(lookupd):
    conn = http.client.HTTPConnection("127.0.0.1", lookupd.http_port, timeout=5)
    try:
        for path in ("/ping", "/info", "/topics", "/ping"):
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read()
        conn.request("POST", "/topic/create?topic=ka_t", body=b"ignored body")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"")
        conn.request("GET", "/ping")
        assert conn.getresponse().read() == b"OK"
    finally:
        conn.close()


def test_debug_lists_registrations(lookupd, peers):
    peer = peers(broadcast_address="dbg", tcp_port=10, http_port=11)
    assert peer.command("REGISTER dbg_t dbg_c") == b"OK"
    status, data = get(lookupd, "/debug")
    assert status == 200
    assert list(data) == sorted(data)
    (rec,) = data["channel:dbg_t:dbg_c"]
    assert list(rec) == ["broadcast_address", "hostname", "http_port", "id", "last_update",
                         "tcp_port", "tombstoned", "tombstoned_at", "version"]
    assert rec["id"] == "127.0.0.1:%d" % peer.sock.getsockname()[1]
    assert (rec["broadcast_address"], rec["tcp_port"], rec["http_port"]) == ("dbg", 10, 11)
    assert rec["tombstoned"] is False
    assert rec["tombstoned_at"] == -6795364578871345152  # Go's zero time
    assert any(r["broadcast_address"] == "dbg" for r in data["client::"])
    assert "topic:dbg_t:" in data


# ---------------------------------------------------------------- lookups

def test_lookup(lookupd, peers):
    a = peers(broadcast_address="lk-a", tcp_port=4000, http_port=4001, hostname="ha")
    b = peers(broadcast_address="lk-b", tcp_port=4010, http_port=4011, hostname="hb")
    assert a.command("REGISTER lk_t lk_c1") == b"OK"
    assert b.command("REGISTER lk_t lk_c2") == b"OK"
    status, headers, body = request(lookupd.http_port, "GET", "/lookup?topic=lk_t", V1_ACCEPT)
    assert status == 200
    assert without_date(headers)[:2] == JSON_HEADERS
    data = json.loads(body)
    assert list(data) == ["channels", "producers"]
    assert data["channels"] == ["lk_c1", "lk_c2"]
    assert data["producers"] == [
        {"remote_address": "127.0.0.1:%d" % a.sock.getsockname()[1], "hostname": "ha",
         "broadcast_address": "lk-a", "tcp_port": 4000, "http_port": 4001, "version": "1.3.0"},
        {"remote_address": "127.0.0.1:%d" % b.sock.getsockname()[1], "hostname": "hb",
         "broadcast_address": "lk-b", "tcp_port": 4010, "http_port": 4011, "version": "1.3.0"},
    ]
    # the same answer without the Accept header
    status, _, plain = request(lookupd.http_port, "GET", "/lookup?topic=lk_t")
    assert (status, plain) == (200, body)


@pytest.mark.parametrize("path,status,message", [
    ("/lookup", 400, "MISSING_ARG_TOPIC"),
    ("/lookup?topic=", 404, "TOPIC_NOT_FOUND"),
    ("/lookup?topic=no_such_topic", 404, "TOPIC_NOT_FOUND"),
    ("/lookup?topic=%zz", 400, "INVALID_REQUEST"),
    ("/lookup?topic=a;b", 400, "INVALID_REQUEST"),
    ("/channels", 400, "MISSING_ARG_TOPIC"),
])
def test_lookup_errors(lookupd, path, status, message):
    got_status, headers, body = request(lookupd.http_port, "GET", path, V1_ACCEPT)
    assert (got_status, json.loads(body)) == (status, {"message": message})
    assert without_date(headers) == JSON_HEADERS + [("Content-Length", str(len(body)))]


def test_topics_and_channels(lookupd, peers):
    peer = peers(broadcast_address="tc")
    assert peer.command("REGISTER tc_t1 tc_c") == b"OK"
    assert peer.command("REGISTER tc_t2") == b"OK"
    status, data = get(lookupd, "/topics")
    assert status == 200 and list(data) == ["topics"]
    assert {"tc_t1", "tc_t2"} <= set(data["topics"])
    assert get(lookupd, "/channels?topic=tc_t1") == (200, {"channels": ["tc_c"]})
    assert get(lookupd, "/channels?topic=tc_t2") == (200, {"channels": []})
    assert get(lookupd, "/channels?topic=unknown_t") == (200, {"channels": []})


def test_nodes(lookupd, peers):
    peer = peers(broadcast_address="nd", tcp_port=4100, http_port=4101, hostname="hn")
    assert peer.command("REGISTER nd_t1 nd_c") == b"OK"
    assert peer.command("REGISTER nd_t2") == b"OK"
    status, data = get(lookupd, "/nodes")
    assert status == 200 and list(data) == ["producers"]
    (node,) = [n for n in data["producers"] if n["broadcast_address"] == "nd"]
    assert node == {"remote_address": "127.0.0.1:%d" % peer.sock.getsockname()[1],
                    "hostname": "hn", "broadcast_address": "nd", "tcp_port": 4100,
                    "http_port": 4101, "version": "1.3.0", "tombstones": [False, False],
                    "topics": ["nd_t1", "nd_t2"]}
    assert list(node) == ["remote_address", "hostname", "broadcast_address", "tcp_port",
                          "http_port", "version", "tombstones", "topics"]


def test_identified_node_without_topics(lookupd, peers):
    peers(broadcast_address="bare")
    (node,) = [n for n in get(lookupd, "/nodes")[1]["producers"] if n["broadcast_address"] == "bare"]
    assert node["topics"] == [] and node["tombstones"] == []


# ---------------------------------------------------------------- tombstones

def test_tombstone_hides_node_from_lookup_for_its_lifetime(lookupd, peers):
    a = peers(broadcast_address="ts-a", http_port=4201)
    b = peers(broadcast_address="ts-b", http_port=4202)
    for p in (a, b):
        assert p.command("REGISTER ts_t") == b"OK"
        assert p.command("REGISTER ts_other") == b"OK"
    names = lambda topic: [p["broadcast_address"]  # noqa: E731
                           for p in get(lookupd, "/lookup?topic=" + topic)[1]["producers"]]
    assert post(lookupd, "/topic/tombstone?topic=ts_t&node=ts-a:4201") == (200, None)
    assert names("ts_t") == ["ts-b"]
    assert names("ts_other") == ["ts-a", "ts-b"]  # only that topic
    nodes = {n["broadcast_address"]: n for n in get(lookupd, "/nodes")[1]["producers"]}
    assert nodes["ts-a"]["topics"] == ["ts_t", "ts_other"]
    assert nodes["ts-a"]["tombstones"] == [True, False]
    assert nodes["ts-b"]["tombstones"] == [False, False]
    (rec,) = [r for r in get(lookupd, "/debug")[1]["topic:ts_t:"] if r["broadcast_address"] == "ts-a"]
    assert rec["tombstoned"] is True and rec["tombstoned_at"] > 0
    # --tombstone-lifetime=1s: the node comes back
    wait_for(lambda: names("ts_t") == ["ts-a", "ts-b"], timeout=5, message="tombstone expiry")
    nodes = {n["broadcast_address"]: n for n in get(lookupd, "/nodes")[1]["producers"]}
    assert nodes["ts-a"]["tombstones"] == [False, False]


def test_tombstone_of_unknown_node_or_topic_is_ok(lookupd):
    assert post(lookupd, "/topic/tombstone?topic=ts_none&node=x:1") == (200, None)


@pytest.mark.parametrize("path,message", [
    ("/topic/tombstone", "MISSING_ARG_TOPIC"),
    ("/topic/tombstone?node=x:1", "MISSING_ARG_TOPIC"),
    ("/topic/tombstone?topic=t", "MISSING_ARG_NODE"),
])
def test_tombstone_errors(lookupd, path, message):
    assert post(lookupd, path) == (400, {"message": message})


# ---------------------------------------------------------------- editing topics and channels

def test_topic_create_and_delete(lookupd, peers):
    status, headers, body = request(lookupd.http_port, "POST", "/topic/create?topic=ed_t")
    assert (status, body) == (200, b"")
    assert without_date(headers) == [("X-Nsq-Content-Type", "nsq; version=1.0"),
                                     ("Content-Length", "0")]
    assert "ed_t" in get(lookupd, "/topics")[1]["topics"]
    assert get(lookupd, "/lookup?topic=ed_t") == (200, {"channels": [], "producers": []})
    assert post(lookupd, "/channel/create?topic=ed_t&channel=ed_c") == (200, None)
    peer = peers(broadcast_address="ed")
    assert peer.command("REGISTER ed_t ed_c2") == b"OK"
    assert post(lookupd, "/topic/delete?topic=ed_t") == (200, None)
    assert "ed_t" not in get(lookupd, "/topics")[1]["topics"]
    assert get(lookupd, "/lookup?topic=ed_t")[0] == 404
    assert get(lookupd, "/channels?topic=ed_t") == (200, {"channels": []})
    assert post(lookupd, "/topic/delete?topic=never_existed") == (200, None)
    # the connected node registers again
    assert peer.command("REGISTER ed_t") == b"OK"
    assert [p["broadcast_address"] for p in get(lookupd, "/lookup?topic=ed_t")[1]["producers"]] == ["ed"]


def test_channel_create_and_delete(lookupd):
    assert post(lookupd, "/channel/create?topic=ch_t&channel=ch_c") == (200, None)
    assert "ch_t" in get(lookupd, "/topics")[1]["topics"]  # the topic comes along
    assert get(lookupd, "/channels?topic=ch_t") == (200, {"channels": ["ch_c"]})
    assert post(lookupd, "/channel/delete?topic=ch_t&channel=ch_c") == (200, None)
    assert get(lookupd, "/channels?topic=ch_t") == (200, {"channels": []})
    assert "ch_t" in get(lookupd, "/topics")[1]["topics"]
    assert post(lookupd, "/channel/delete?topic=ch_t&channel=ch_c") == \
        (404, {"message": "CHANNEL_NOT_FOUND"})


@pytest.mark.parametrize("path,message", [
    ("/topic/create", "MISSING_ARG_TOPIC"),
    ("/topic/create?topic=", "INVALID_ARG_TOPIC"),
    ("/topic/create?topic=a+b", "INVALID_ARG_TOPIC"),
    ("/topic/create?topic=" + "x" * 65, "INVALID_ARG_TOPIC"),
    ("/topic/delete", "MISSING_ARG_TOPIC"),
    ("/channel/create", "MISSING_ARG_TOPIC"),
    ("/channel/create?topic=a*b&channel=c", "INVALID_ARG_TOPIC"),
    ("/channel/create?topic=t", "MISSING_ARG_CHANNEL"),
    ("/channel/create?topic=t&channel=a+b", "INVALID_ARG_CHANNEL"),
    ("/channel/delete?topic=t", "MISSING_ARG_CHANNEL"),
    ("/channel/delete?channel=c", "MISSING_ARG_TOPIC"),
    ("/topic/create?topic=%2", "INVALID_REQUEST"),
])
def test_edit_errors(lookupd, path, message):
    assert post(lookupd, path) == (400, {"message": message})


def test_ephemeral_names_are_accepted(lookupd):
    assert post(lookupd, "/channel/create?topic=e_t%23ephemeral&channel=e_c%23ephemeral") == (200, None)
    assert get(lookupd, "/channels?topic=e_t%23ephemeral") == (200, {"channels": ["e_c#ephemeral"]})


# ---------------------------------------------------------------- routing

@pytest.mark.parametrize("method,path,allow", [
    ("POST", "/ping", "GET, OPTIONS"),
    ("POST", "/lookup?topic=x", "GET, OPTIONS"),
    ("PUT", "/nodes", "GET, OPTIONS"),
    ("GET", "/topic/create?topic=x", "OPTIONS, POST"),
    ("DELETE", "/channel/delete", "OPTIONS, POST"),
])
def test_wrong_method_is_405(lookupd, method, path, allow):
    status, headers, body = request(lookupd.http_port, method, path)
    assert (status, json.loads(body)) == (405, {"message": "METHOD_NOT_ALLOWED"})
    assert without_date(headers) == [("Allow", allow)] + JSON_HEADERS + [("Content-Length", "32")]


def test_head_and_options(lookupd):
    status, headers, body = request(lookupd.http_port, "HEAD", "/ping")
    assert (status, body) == (405, b"")
    assert ("Content-Length", "32") in headers
    status, headers, body = request(lookupd.http_port, "OPTIONS", "/topic/create")
    assert (status, body) == (200, b"")
    assert without_date(headers) == [("Allow", "OPTIONS, POST"), ("Content-Length", "0")]


@pytest.mark.parametrize("method,path", [
    ("GET", "/nope"), ("GET", "/"), ("GET", "/ping/x"), ("POST", "/ping/"), ("DELETE", "/nope"),
    ("GET", "/topic"), ("OPTIONS", "/nope"),
])
def test_unknown_path_is_404(lookupd, method, path):
    status, headers, body = request(lookupd.http_port, method, path)
    assert (status, body) == (404, b'{"message":"NOT_FOUND"}')
    assert without_date(headers) == JSON_HEADERS + [("Content-Length", "23")]


@pytest.mark.parametrize("method,path,status,location", [
    ("GET", "/ping/", 301, "/ping"),
    ("GET", "/PING", 301, "/ping"),
    ("GET", "//ping", 301, "/ping"),
    ("GET", "/./ping", 301, "/ping"),
    ("GET", "/pin%67", 301, "/ping"),
    ("GET", "/Lookup?topic=x", 301, "/lookup?topic=x"),
    ("GET", "/lookup/?topic=x", 301, "/lookup?topic=x"),
    ("POST", "/topic/create/?topic=x", 307, "/topic/create?topic=x"),
])
def test_near_misses_are_redirected(lookupd, method, path, status, location):
    got, headers, body = request(lookupd.http_port, method, path)
    assert got == status
    assert dict(headers)["Location"] == location
    if method == "GET":
        assert body == b'<a href="%s">Moved Permanently</a>.\n\n' % location.encode()
        assert dict(headers)["Content-Type"] == "text/html; charset=utf-8"
    else:
        assert body == b""


def test_requests_are_logged(lookupd):
    request(lookupd.http_port, "GET", "/ping?logged=1")
    wait_for(lambda: "INFO: 200 GET /ping?logged=1 (127.0.0.1:" in lookupd.log_text(),
             message="request log line")
