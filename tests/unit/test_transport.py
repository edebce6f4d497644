"""Transports (deflate, snappy, TLS over memory BIOs) and the auth state, without a server.

The peer side of each codec is an independent implementation: zlib for
deflate, python-snappy/cramjam's framed format for snappy, an
`ssl.SSLSocket` for TLS (over a socketpair).
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
import zlib
from typing import List

import pytest

from nsqd_sync import auth
from nsqd_sync.transport import (SNAPPY_STREAM_ID, DeflateTransport, PlainTransport, SnappyTransport,
                                 TLSTransport, TransportError, snappy_available)


class Pipe:
    """A fake inner transport: recv() hands out queued chunks, sendall() collects."""

    def __init__(self, chunks: List[bytes] = ()) -> None:
        self.chunks = list(chunks)
        self.sent = bytearray()

    def recv(self, size: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def sendall(self, data: bytes) -> None:
        self.sent += data


def drain(t, size: int = 65536) -> bytes:
    out = bytearray()
    while True:
        d = t.recv(size)
        if not d:
            return bytes(out)
        assert len(d) <= max(size, 1 << 20)
        out += d


# ---------------------------------------------------------------- deflate


def test_deflate_both_ways_byte_by_byte():
    peer_c = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = b"PUB t\n" + os.urandom(3000) + b"z" * 50000
    wire_bytes = peer_c.compress(data) + peer_c.flush(zlib.Z_SYNC_FLUSH)
    t = DeflateTransport(Pipe([wire_bytes[i:i + 1] for i in range(len(wire_bytes))]), 6)
    assert drain(t) == data
    t.sendall(b"frame one")
    t.sendall(b"frame two")
    peer_d = zlib.decompressobj(-15)
    assert peer_d.decompress(bytes(t.inner.sent)) == b"frame oneframe two"  # each write is flushed
    assert not bytes(t.inner.sent).startswith(b"\x78"), "raw deflate: no zlib header"


def test_deflate_inflation_is_bounded_per_read():
    peer_c = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = peer_c.compress(b"\0" * (20 << 20)) + peer_c.flush(zlib.Z_SYNC_FLUSH)
    t = DeflateTransport(Pipe([bomb[:10], bomb[10:]]), 6, initial=b"")
    total = 0
    while total < (20 << 20):
        d = t.recv(65536)
        assert 0 < len(d) <= 65536
        total += len(d)


def test_deflate_initial_bytes_and_corruption():
    peer_c = zlib.compressobj(6, zlib.DEFLATED, -15)
    early = peer_c.compress(b"NOP\n") + peer_c.flush(zlib.Z_SYNC_FLUSH)
    t = DeflateTransport(Pipe(), 6, initial=early)
    assert t.recv(1024) == b"NOP\n"
    bad = DeflateTransport(Pipe([b"\xff" * 32]), 6)
    with pytest.raises(TransportError):
        bad.recv(1024)
    with pytest.raises(OSError):  # the read loop treats it as a failed read
        DeflateTransport(Pipe([b"\xff" * 32]), 6).recv(1024)


# ---------------------------------------------------------------- snappy

needs_snappy = pytest.mark.skipif(not snappy_available(), reason="needs the snappy extra (cramjam)")


@needs_snappy
def test_snappy_framing_both_ways():
    import cramjam

    t = SnappyTransport(Pipe())
    big = os.urandom(70000)  # incompressible, more than one 64 KiB chunk
    t.sendall(b"OK" * 100)
    t.sendall(big)
    sent = bytes(t.inner.sent)
    assert sent.startswith(SNAPPY_STREAM_ID) and sent.count(SNAPPY_STREAM_ID) == 1
    assert bytes(cramjam.snappy.decompress(sent)) == b"OK" * 100 + big

    c = cramjam.snappy.Compressor()
    c.compress(b"MPUB t\n" + big)
    framed = bytes(c.flush())
    t = SnappyTransport(Pipe([framed[i:i + 7] for i in range(0, len(framed), 7)]))
    assert drain(t) == b"MPUB t\n" + big


@needs_snappy
def test_snappy_rejects_bad_streams():
    import cramjam

    c = cramjam.snappy.Compressor()
    c.compress(b"SUB t c\n")
    framed = bytearray(c.flush())
    with pytest.raises(TransportError):  # no stream identifier first
        SnappyTransport(Pipe([bytes(framed[10:])])).recv(1024)
    framed[14] ^= 1  # the first data chunk's checksum
    with pytest.raises(TransportError):
        SnappyTransport(Pipe([bytes(framed)])).recv(1024)


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    certs_mod = pytest.importorskip("tests.certs", reason="needs the cryptography package (test extra)")
    return certs_mod, certs_mod.make_certs(str(tmp_path_factory.mktemp("certs")))


def test_tls_transport_concurrent_reader_and_writers(certs):
    """Two writers (under one lock) and a reader on one TLS session, against an SSLSocket peer."""
    certs_mod, paths = certs
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(paths["server"], paths["server_key"])
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    peer_result = {}

    def peer():
        s = certs_mod.client_context(paths).wrap_socket(b, server_hostname="127.0.0.1")
        s.sendall(b"x" * 100000)
        got = bytearray()
        while len(got) < 2 * 50 * 1000:
            d = s.recv(65536)
            if not d:
                break
            got += d
        peer_result["got"] = bytes(got)
        s.close()

    pt = threading.Thread(target=peer, name="test-tls-peer")
    pt.start()
    write_lock = threading.Lock()
    t = TLSTransport(PlainTransport(a), server_ctx, write_lock)
    with write_lock:
        t.handshake()
    assert t.connection_state()[0] in ("TLS1.2", "TLS1.3")
    assert t.peer_common_name() == ""

    def writer(tag: bytes):
        for _ in range(50):
            with write_lock:
                t.sendall(tag * 1000)

    writers = [threading.Thread(target=writer, args=(tag,), name="test-tls-writer") for tag in (b"A", b"B")]
    for w in writers:
        w.start()
    received = bytearray()
    while len(received) < 100000:
        d = t.recv(65536)
        assert d
        received += d
    for w in writers:
        w.join(10)
    pt.join(10)
    a.close()
    assert received == b"x" * 100000
    got = peer_result["got"]
    assert sorted(got) == sorted(b"A" * 50000 + b"B" * 50000)
    # each 1000-byte write arrives whole: records never interleave
    assert all(got[i:i + 1000] in (b"A" * 1000, b"B" * 1000) for i in range(0, len(got), 1000))


# ---------------------------------------------------------------- auth state


def test_auth_endpoint_and_answer_validation():
    assert auth.endpoint("127.0.0.1:4181", "10.0.0.1", True, "cn", "a b&c") == \
        "http://127.0.0.1:4181/auth?common_name=cn&remote_ip=10.0.0.1&secret=a+b%26c&tls=true"
    assert auth.endpoint("https://h/x?y=1", "", False, "", "s").startswith("https://h/x?y=1?common_name=")
    state = auth.parse_state({"ttl": 2, "identity": "i", "authorizations": [
        {"topic": "mid", "channels": [".*"], "permissions": ["publish"]},
        {"topic": "^t$", "channels": ["^c"], "permissions": ["subscribe"]}]})
    assert state.is_allowed("a-mid-b", "")  # matched anywhere
    assert not state.is_allowed("other", "")
    assert state.is_allowed("t", "ch") and not state.is_allowed("t", "xch") and not state.is_allowed("tt", "ch")
    assert not state.is_expired()
    state.expires = time.monotonic() - 1
    assert state.is_expired()
    for bad in ({"ttl": 0}, {"ttl": "10"}, {"ttl": 1.5}, [],
                {"ttl": 1, "authorizations": [{"topic": "(", "channels": [], "permissions": []}]},
                {"ttl": 1, "authorizations": [{"topic": "t", "channels": ["["], "permissions": []}]},
                {"ttl": 1, "authorizations": [{"topic": "t", "channels": [], "permissions": ["admin"]}]}):
        with pytest.raises(auth.AuthError):
            auth.parse_state(bad)
    assert json.loads(auth.response_body(state)) == {"identity": "i", "identity_url": "", "permission_count": 2}
