"""nsqlookupd's TCP side (`  V1` protocol), its CLI and lifecycle, over real loopback sockets.

Expected bytes were checked against the real nsqlookupd 1.3.0: answers are an
int32 size + data (no frame type) and every protocol error closes the
connection.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Optional

import pytest

from tests.helpers import NodeProcess, SocketConn, http_request, wait_for

pytestmark = pytest.mark.timeout(60)

_LISTEN_LINE = re.compile(r"^\[nsqlookupd\] \d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} INFO: "
                          r"(TCP|HTTP): listening on 127\.0\.0\.1:(\d+)$")


class Peer(SocketConn):
    """A raw lookup-protocol connection, as an nsqd would open it."""

    def __init__(self, port: int, magic: bytes = b"  V1", timeout: float = 5.0) -> None:
        super().__init__(port, magic=magic, timeout=timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> bytes:
        (size,) = struct.unpack(">i", self._read(4))
        return self._read(size)

    def command(self, line: str) -> bytes:
        self.send(line.encode() + b"\n")
        return self.response()

    def identify_raw(self, body: bytes) -> bytes:
        self.send(b"IDENTIFY\n" + struct.pack(">i", len(body)) + body)
        return self.response()

    def identify(self, **fields) -> dict:
        info = dict(broadcast_address="node-a", tcp_port=4150, http_port=4151, version="1.3.0",
                    hostname="host-a")
        info.update(fields)
        return json.loads(self.identify_raw(json.dumps(info).encode()))

    def expect_error_and_close(self, expected: bytes) -> None:
        assert self.response() == expected
        self.expect_closed()

    def expect_closed(self, timeout: float = 5.0) -> None:
        self.sock.settimeout(timeout)
        try:
            assert self.sock.recv(1) == b""
        except ConnectionResetError:
            pass


@pytest.fixture(scope="module")
def lookupd():
    node = NodeProcess("nsqlookupd", args=["--broadcast-address=lookupd-test"])
    yield node
    assert node.stop() == 0


@pytest.fixture
def peers(lookupd):
    opened = []

    def open_peer(**kw) -> Peer:
        p = Peer(lookupd.tcp_port, **kw)
        opened.append(p)
        return p

    yield open_peer
    for p in opened:
        p.close()


def get_json(node: NodeProcess, path: str):
    status, body, _ = http_request(node.http_port, path)
    return status, json.loads(body) if body else None


def lookup_producers(node: NodeProcess, topic: str) -> Optional[list]:
    status, data = get_json(node, "/lookup?topic=" + topic)
    if status == 404:
        return None
    return data["producers"]


# ---------------------------------------------------------------- start-up and CLI

def test_listening_lines_name_the_real_ports(lookupd):
    found = {}
    for line in lookupd.log_text().splitlines():
        m = _LISTEN_LINE.match(line)
        if m:
            found[m.group(1)] = int(m.group(2))
    assert found == {"TCP": lookupd.tcp_port, "HTTP": lookupd.http_port}
    assert lookupd.tcp_port != 0 and lookupd.http_port != 0


def test_start_up_is_fast():
    started = time.monotonic()
    node = NodeProcess("nsqlookupd")
    try:
        elapsed = time.monotonic() - started
        # the budget is 300 ms on an idle machine; leave room for a busy test runner
        assert elapsed < 1.5, elapsed
        assert Peer(node.tcp_port).command("PING") == b"OK"
    finally:
        assert node.stop() == 0


def test_sigterm_and_sigint_exit_promptly_with_clients_connected():
    for sig in (signal.SIGTERM, signal.SIGINT):
        with NodeProcess("nsqlookupd") as node:  # killed on the way out if a check fails
            peer = Peer(node.tcp_port)
            peer.identify()
            assert peer.command("REGISTER t c") == b"OK"
            idle_http = socket.create_connection(("127.0.0.1", node.http_port), timeout=5)
            idle_http.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert idle_http.recv(4096).endswith(b"\r\n\r\nOK")  # a keep-alive connection left open
            started = time.monotonic()
            assert node.stop(sig, timeout=5) == 0
            assert time.monotonic() - started < 3
            peer.expect_closed()
            idle_http.settimeout(5)
            assert idle_http.recv(1) == b""
            assert "TCP: closing 127.0.0.1:%d" % node.tcp_port in node.log_text()
            peer.close()
            idle_http.close()


@pytest.mark.parametrize("form", [
    ["-broadcast-address=go-1"],
    ["-broadcast-address", "go-1"],
    ["--broadcast-address=go-1"],
    ["--broadcast-address", "go-1"],
])
def test_go_style_flag_forms(form):
    node = NodeProcess("nsqlookupd", args=form + ["-tombstone-lifetime", "10s", "-verbose"])
    try:
        peer = Peer(node.tcp_port)
        assert peer.identify()["broadcast_address"] == "go-1"
        peer.close()
        assert "deprecated" in node.log_text()  # --verbose warns and has no effect
    finally:
        assert node.stop() == 0


def test_config_file_and_command_line_precedence(tmp_path):
    cfg = tmp_path / "nsqlookupd.cfg"
    cfg.write_text('broadcast_address = "from-config"\ninactive_producer_timeout = "1s"\n'
                   'log_prefix = "[cfg] "\n')
    node = NodeProcess("nsqlookupd", args=["--config=%s" % cfg])
    try:
        assert Peer(node.tcp_port).identify()["broadcast_address"] == "from-config"
        assert "[cfg] " in node.log_text()
    finally:
        assert node.stop() == 0
    node = NodeProcess("nsqlookupd", args=["-config", str(cfg), "-broadcast-address=from-cli",
                                           "-log-prefix=[nsqlookupd] "])
    try:
        assert Peer(node.tcp_port).identify()["broadcast_address"] == "from-cli"
    finally:
        assert node.stop() == 0


def test_listen_failure_is_fatal(lookupd):
    proc = subprocess.run([sys.executable, "-m", "nsqlookupd_sync",
                           "--tcp-address=127.0.0.1:%d" % lookupd.tcp_port,
                           "--http-address=127.0.0.1:0"],
                          capture_output=True, timeout=20)
    assert proc.returncode == 1
    assert b"FATAL: failed to instantiate nsqlookupd - listen (127.0.0.1:%d) failed" \
        % lookupd.tcp_port in proc.stderr


# ---------------------------------------------------------------- protocol basics

def test_bad_magic_is_rejected(lookupd):
    peer = Peer(lookupd.tcp_port, magic=b"  V2")
    peer.expect_error_and_close(b"E_BAD_PROTOCOL")


def test_ping_without_identify(peers):
    peer = peers()
    assert peer.command("PING") == b"OK"
    assert peer.command("PING   ") == b"OK"  # surrounding space is trimmed
    assert peer.command("PING extra") == b"OK"


@pytest.mark.parametrize("line,expected", [
    ("FOO bar", b"E_INVALID invalid command FOO"),
    ("ping", b"E_INVALID invalid command ping"),
    ("", b"E_INVALID invalid command "),
])
def test_invalid_command_is_fatal(peers, line, expected):
    peer = peers()
    peer.send(line.encode() + b"\nPING\n")
    peer.expect_error_and_close(expected)


@pytest.mark.parametrize("command", ["REGISTER t", "UNREGISTER t"])
def test_register_requires_identify(peers, command):
    peer = peers()
    peer.send(command.encode() + b"\n")
    peer.expect_error_and_close(b"E_INVALID client must IDENTIFY")


def test_identify_answers_lookupd_info(lookupd, peers):
    peer = peers()
    peer.send(b"IDENTIFY\n")
    body = json.dumps(dict(broadcast_address="a", tcp_port=1, http_port=2, version="1.3.0")).encode()
    peer.send(struct.pack(">i", len(body)) + body)
    raw = peer.response()
    info = json.loads(raw)
    # a Go map: keys sorted, no spaces
    assert list(info) == ["broadcast_address", "hostname", "http_port", "tcp_port", "version"]
    assert b" " not in raw
    assert info["broadcast_address"] == "lookupd-test"
    assert info["tcp_port"] == lookupd.tcp_port
    assert info["http_port"] == lookupd.http_port
    assert info["version"] == "1.3.0"
    assert info["hostname"] == socket.gethostname()
    assert peer.command("PING") == b"OK"


def test_identify_twice_is_fatal(peers):
    peer = peers()
    peer.identify()
    peer.send(b"IDENTIFY\n")
    peer.expect_error_and_close(b"E_INVALID cannot IDENTIFY again")


@pytest.mark.parametrize("missing", ["broadcast_address", "tcp_port", "http_port", "version"])
def test_identify_requires_fields(peers, missing):
    info = dict(broadcast_address="a", tcp_port=1, http_port=2, version="1.3.0")
    del info[missing]
    peer = peers()
    peer.send(b"IDENTIFY\n" + struct.pack(">i", len(json.dumps(info))) + json.dumps(info).encode())
    peer.expect_error_and_close(b"E_BAD_BODY IDENTIFY missing fields")


@pytest.mark.parametrize("body", [
    b"{not json", b"", b"[]", b'"x"',
    b'{"broadcast_address":"a","tcp_port":"1","http_port":2,"version":"1"}',
    b'{"broadcast_address":"a","tcp_port":1.5,"http_port":2,"version":"1"}',
    b'{"broadcast_address":7,"tcp_port":1,"http_port":2,"version":"1"}',
])
def test_identify_bad_json_is_fatal(peers, body):
    peer = peers()
    peer.send(b"IDENTIFY\n" + struct.pack(">i", len(body)) + body)
    peer.expect_error_and_close(b"E_BAD_BODY IDENTIFY failed to decode JSON body")


def test_identify_json_is_read_like_go(lookupd, peers):
    # keys match case-insensitively, unknown keys are ignored, null leaves a field alone
    body = b'{"BROADCAST_ADDRESS":"go-json","Tcp_Port":11,"http_port":12,"version":"1.3.0",' \
           b'"hostname":null,"extra":{"x":[1]}}'
    peer = peers()
    peer.identify_raw(body)
    assert peer.command("REGISTER gojson") == b"OK"
    (p,) = lookup_producers(lookupd, "gojson")
    assert (p["broadcast_address"], p["tcp_port"], p["http_port"], p["hostname"]) == \
        ("go-json", 11, 12, "")


@pytest.mark.parametrize("tail,half_close,expected", [
    (b"\x00\x00", True, b"E_BAD_BODY IDENTIFY failed to read body size"),
    (b"\x00\x00\x00\x10{}", True, b"E_BAD_BODY IDENTIFY failed to read body"),
    # a negative size (the real nsqlookupd 1.3.0 crashes on this one)
    (b"\xff\xff\xff\xff", False, b"E_BAD_BODY IDENTIFY failed to read body"),
])
def test_identify_short_body_is_fatal(peers, tail, half_close, expected):
    peer = peers()
    peer.send(b"IDENTIFY\n" + tail)
    if half_close:
        peer.sock.shutdown(socket.SHUT_WR)
    peer.expect_error_and_close(expected)


@pytest.mark.parametrize("command", ["REGISTER", "UNREGISTER"])
@pytest.mark.parametrize("args,expected", [
    ("", b"E_INVALID %s insufficient number of params"),
    (" a*b", b"E_BAD_TOPIC %s topic name 'a*b' is not valid"),
    (" t c*d", b"E_BAD_CHANNEL %s channel name 'c*d' is not valid"),
    (" " + "x" * 65, b"E_BAD_TOPIC %s topic name '" + b"x" * 65 + b"' is not valid"),
    ("  c", b"E_BAD_TOPIC %s topic name '' is not valid"),
])
def test_register_argument_errors_are_fatal(peers, command, args, expected):
    peer = peers()
    peer.identify()
    peer.send((command + args + "\n").encode())
    peer.expect_error_and_close(expected % command.encode())


# ---------------------------------------------------------------- registrations

def test_register_and_unregister(lookupd, peers):
    peer = peers()
    peer.identify(broadcast_address="reg-node", tcp_port=5000, http_port=5001)
    assert peer.command("REGISTER reg_t reg_c") == b"OK"
    assert peer.command("REGISTER reg_t reg_c") == b"OK"  # again: no change
    assert peer.command("REGISTER reg_t") == b"OK"
    assert peer.command("REGISTER reg_t reg_d extra args") == b"OK"  # extras are ignored
    status, data = get_json(lookupd, "/lookup?topic=reg_t")
    assert status == 200
    assert data["channels"] == ["reg_c", "reg_d"]
    (p,) = data["producers"]
    assert p == {"remote_address": "127.0.0.1:%d" % peer.sock.getsockname()[1],
                 "hostname": "host-a", "broadcast_address": "reg-node", "tcp_port": 5000,
                 "http_port": 5001, "version": "1.3.0"}
    assert "reg_t" in get_json(lookupd, "/topics")[1]["topics"]

    # a channel unregistration leaves a (non-ephemeral) channel registered
    assert peer.command("UNREGISTER reg_t reg_c") == b"OK"
    assert get_json(lookupd, "/channels?topic=reg_t")[1]["channels"] == ["reg_c", "reg_d"]
    debug = get_json(lookupd, "/debug")[1]
    assert "channel:reg_t:reg_c" not in debug and "channel:reg_t:reg_d" in debug

    # a topic unregistration takes the producer off the topic and its channels
    assert peer.command("UNREGISTER reg_t") == b"OK"
    assert lookup_producers(lookupd, "reg_t") == []
    assert "topic:reg_t:" not in get_json(lookupd, "/debug")[1]
    assert "reg_t" in get_json(lookupd, "/topics")[1]["topics"]
    assert peer.command("UNREGISTER never_registered") == b"OK"


def test_ephemeral_channel_goes_with_its_last_producer(lookupd, peers):
    a, b = peers(), peers()
    a.identify(broadcast_address="eph-a")
    b.identify(broadcast_address="eph-b")
    for p in (a, b):
        assert p.command("REGISTER eph_t c#ephemeral") == b"OK"
    assert p.command("REGISTER eph_t durable") == b"OK"
    channels = lambda: get_json(lookupd, "/channels?topic=eph_t")[1]["channels"]  # noqa: E731
    assert channels() == ["c#ephemeral", "durable"]
    assert a.command("UNREGISTER eph_t c#ephemeral") == b"OK"
    assert channels() == ["c#ephemeral", "durable"]
    assert b.command("UNREGISTER eph_t c#ephemeral") == b"OK"
    assert channels() == ["durable"]
    assert b.command("UNREGISTER eph_t durable") == b"OK"
    assert channels() == ["durable"]


def test_ephemeral_topic_goes_with_its_last_producer(lookupd, peers):
    a, b = peers(), peers()
    a.identify(broadcast_address="epht-a")
    b.identify(broadcast_address="epht-b")
    assert a.command("REGISTER et#ephemeral ch") == b"OK"
    assert b.command("REGISTER et#ephemeral") == b"OK"
    topics = lambda: get_json(lookupd, "/topics")[1]["topics"]  # noqa: E731
    assert a.command("UNREGISTER et#ephemeral") == b"OK"
    assert "et#ephemeral" in topics()
    assert b.command("UNREGISTER et#ephemeral") == b"OK"
    assert "et#ephemeral" not in topics()
    assert get_json(lookupd, "/lookup?topic=et%23ephemeral")[0] == 404
    # the topic's (non-ephemeral) channel registration stays, as in NSQ
    assert get_json(lookupd, "/channels?topic=et%23ephemeral")[1]["channels"] == ["ch"]


def test_producer_removed_when_connection_closes(lookupd, peers):
    stay, leave = peers(), peers()
    stay.identify(broadcast_address="stays", http_port=6001)
    leave.identify(broadcast_address="leaves", http_port=6002)
    for p in (stay, leave):
        assert p.command("REGISTER gone_t gone_c") == b"OK"
    names = lambda: sorted(p["broadcast_address"] for p in lookup_producers(lookupd, "gone_t"))  # noqa: E731
    assert names() == ["leaves", "stays"]
    leave.close()
    wait_for(lambda: names() == ["stays"], message="closed producer to leave /lookup")
    nodes = get_json(lookupd, "/nodes")[1]["producers"]
    assert "leaves" not in [n["broadcast_address"] for n in nodes]
    assert not any(r["broadcast_address"] == "leaves"
                   for recs in get_json(lookupd, "/debug")[1].values() for r in recs)
    # registrations outlive their producers
    assert get_json(lookupd, "/channels?topic=gone_t")[1]["channels"] == ["gone_c"]


def test_fatal_error_also_unregisters(lookupd, peers):
    peer = peers()
    peer.identify(broadcast_address="fatal-node")
    assert peer.command("REGISTER fatal_t") == b"OK"
    assert len(lookup_producers(lookupd, "fatal_t")) == 1
    peer.send(b"BOGUS\n")
    peer.expect_error_and_close(b"E_INVALID invalid command BOGUS")
    wait_for(lambda: lookup_producers(lookupd, "fatal_t") == [], message="producer removal")


def test_ping_refreshes_last_update(lookupd, peers):
    peer = peers()
    peer.identify(broadcast_address="pinger")
    assert peer.command("REGISTER ping_t") == b"OK"

    def last_update() -> int:
        (rec,) = get_json(lookupd, "/debug")[1]["topic:ping_t:"]
        return rec["last_update"]

    before = last_update()
    assert abs(before - time.time_ns()) < 60e9
    wait_for(lambda: time.time_ns() > before + 5_000_000)
    assert peer.command("PING") == b"OK"
    assert last_update() > before


def test_inactive_producers_are_left_out():
    node = NodeProcess("nsqlookupd", args=["--inactive-producer-timeout=600ms"])
    try:
        peer = Peer(node.tcp_port)
        peer.identify(broadcast_address="sleepy")
        assert peer.command("REGISTER idle_t idle_c") == b"OK"
        assert [p["broadcast_address"] for p in lookup_producers(node, "idle_t")] == ["sleepy"]
        assert len(get_json(node, "/nodes")[1]["producers"]) == 1
        wait_for(lambda: lookup_producers(node, "idle_t") == [], timeout=5,
                 message="inactive producer to leave /lookup")
        assert get_json(node, "/nodes")[1]["producers"] == []
        # still registered: /debug lists it and the channel stays known
        assert "topic:idle_t:" in get_json(node, "/debug")[1]
        assert get_json(node, "/lookup?topic=idle_t")[1]["channels"] == ["idle_c"]
        assert peer.command("PING") == b"OK"
        assert [p["broadcast_address"] for p in lookup_producers(node, "idle_t")] == ["sleepy"]
        peer.close()
    finally:
        assert node.stop() == 0


def test_many_concurrent_peers(lookupd):
    peers = [Peer(lookupd.tcp_port) for _ in range(20)]
    try:
        for i, p in enumerate(peers):
            p.identify(broadcast_address="many-%d" % i, http_port=7000 + i)
        for p in peers:
            p.send(b"REGISTER many_t\nPING\n")
        for p in peers:
            assert p.response() == b"OK" and p.response() == b"OK"
        assert len(lookup_producers(lookupd, "many_t")) == 20
    finally:
        for p in peers:
            p.close()
    wait_for(lambda: lookup_producers(lookupd, "many_t") == [], message="all peers to leave")
