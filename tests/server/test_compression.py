"""deflate and snappy negotiated in IDENTIFY, with raw clients (checked against nsqd 1.3.0).

deflate is raw DEFLATE (no zlib header) both ways, as Go's compress/flate;
snappy is the snappy framing format (stream identifier, CRC-checked
chunks), decoded here with python-snappy as pynsq does.  After the
IDENTIFY answer (plain), nsqd sends `OK` through the new layer.  Asking for
both is `E_IDENTIFY_FAILED cannot enable both deflate and snappy
compression`; `deflate_level` is the client's (default 6) capped by
--max-deflate-level, and only when deflate is negotiated.
"""
from __future__ import annotations

import struct
import zlib

import pytest

from nsqd_sync import wire
from nsqd_sync.transport import snappy_available

try:
    import snappy as python_snappy  # python-snappy, what pynsq uses
except ImportError:  # pragma: no cover - depends on the environment
    python_snappy = None

needs_snappy = pytest.mark.skipif(
    python_snappy is None or not snappy_available(),
    reason="snappy needs the optional extra: pip install 'nsq-sync[snappy]' (cramjam, python-snappy)")


class DeflateSock:
    """A raw-deflate socket for the test client (`initial`: compressed bytes already read)."""

    def __init__(self, sock, level: int = 6, initial: bytes = b"") -> None:
        self.sock = sock
        self.c = zlib.compressobj(level, zlib.DEFLATED, -15)
        self.d = zlib.decompressobj(-15)
        self.pending = self.d.decompress(initial) if initial else b""

    def recv(self, n: int) -> bytes:
        if self.pending:
            out, self.pending = self.pending, b""
            return out
        while True:
            raw = self.sock.recv(n)
            if not raw:
                return b""
            out = self._decompress(raw)
            if out:
                return out

    def _decompress(self, raw: bytes) -> bytes:
        return self.d.decompress(raw)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(self.c.compress(data) + self.c.flush(zlib.Z_SYNC_FLUSH))

    def settimeout(self, t) -> None:
        self.sock.settimeout(t)

    def close(self) -> None:
        self.sock.close()


class SnappySock(DeflateSock):
    """The snappy framing format via python-snappy's stream classes."""

    def __init__(self, sock, initial: bytes = b"") -> None:  # noqa: D107 - same as DeflateSock
        self.sock = sock
        self.c = python_snappy.StreamCompressor()
        self.d = python_snappy.StreamDecompressor()
        self.raw_seen = bytearray(initial)
        self.pending = self.d.decompress(initial) if initial else b""

    def _decompress(self, raw: bytes) -> bytes:
        self.raw_seen += raw
        return self.d.decompress(raw)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(self.c.add_chunk(data))


def take_leftover(conn) -> bytes:
    """Bytes read past the IDENTIFY answer are already compressed: hand them to the codec."""
    leftover, conn.buf = conn.buf, b""
    return leftover


@pytest.mark.parametrize("level,expected", [(0, 6), (1, 1), (3, 3), (9, 6)])
def test_deflate_round_trip(shared_nsqd, conns, topic, level, expected):
    pub = conns(shared_nsqd)
    features = pub.identify(deflate=True, deflate_level=level)
    assert features["deflate"] is True
    assert features["deflate_level"] == expected
    assert features["max_deflate_level"] == 6
    pub.sock = DeflateSock(pub.sock, expected, take_leftover(pub))
    pub.expect_ok()
    bodies = [b"deflated %d " % i + b"z" * 500 for i in range(5)]
    pub.pub(topic, bodies[0])
    pub.mpub(topic, bodies[1:])

    sub = conns(shared_nsqd)
    sub.identify(deflate=True, deflate_level=level)
    sub.sock = DeflateSock(sub.sock, expected, take_leftover(sub))
    sub.expect_ok()
    sub.sub(topic, "ch", rdy=10)
    got = sub.messages(5)
    assert [m.body for m in got] == bodies
    for m in got:
        sub.fin(m.id)
    pub.pub(topic, b"after fin")
    assert sub.message().body == b"after fin"


def test_deflate_large_message_and_pipelined_commands(shared_nsqd, conns, topic):
    """A 1 MiB body (inflates far past one read) and commands sent before the OK arrives."""
    conn = conns(shared_nsqd)
    big = bytes(range(256)) * 4096
    codec = zlib.compressobj(6, zlib.DEFLATED, -15)
    ident = b'{"feature_negotiation":true,"deflate":true}'
    identify = b"IDENTIFY\n" + struct.pack(">i", len(ident)) + ident
    body = b"PUB %s\n" % topic.encode() + len(big).to_bytes(4, "big") + big
    # IDENTIFY and the already-compressed PUB in one write: the server must pass the rest on
    conn.send_raw(identify + codec.compress(body) + codec.flush(zlib.Z_SYNC_FLUSH))
    ft, data = conn.next_frame()
    assert ft == wire.FRAME_TYPE_RESPONSE and b'"deflate":true' in data
    sock = DeflateSock(conn.sock, 6, take_leftover(conn))
    sock.c = codec
    conn.sock = sock
    conn.expect_ok()  # the upgrade
    conn.expect_ok()  # the PUB
    sub = conns(shared_nsqd)
    sub.identify(deflate=True)
    sub.sock = DeflateSock(sub.sock, 6, take_leftover(sub))
    sub.expect_ok()
    sub.sub(topic, "ch", rdy=1)
    assert sub.message().body == big


def test_corrupt_deflate_stream_closes(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    conn.identify(deflate=True)
    conn.sock = DeflateSock(conn.sock, 6, take_leftover(conn))
    conn.expect_ok()
    conn.sock.sock.sendall(b"\xff" * 64)  # not a deflate block
    conn.assert_closed()


@needs_snappy
def test_snappy_round_trip(shared_nsqd, conns, topic):
    pub = conns(shared_nsqd)
    features = pub.identify(snappy=True)
    assert features["snappy"] is True and features["deflate"] is False
    psock = SnappySock(pub.sock, take_leftover(pub))
    pub.sock = psock
    pub.expect_ok()
    assert bytes(psock.raw_seen[:10]) == b"\xff\x06\x00\x00sNaPpY", "the stream identifier comes first"
    bodies = [b"snappy %d " % i + b"s" * 300 for i in range(5)] + [bytes(range(256)) * 600]
    pub.pub(topic, bodies[0])
    pub.mpub(topic, bodies[1:])

    sub = conns(shared_nsqd)
    sub.identify(snappy=True)
    sub.sock = SnappySock(sub.sock, take_leftover(sub))
    sub.expect_ok()
    sub.sub(topic, "ch", rdy=10)
    got = sub.messages(len(bodies))
    assert [m.body for m in got] == bodies
    for m in got:
        sub.fin(m.id)
    pub.pub(topic, b"after fin")
    assert sub.message().body == b"after fin"


@needs_snappy
def test_snappy_bad_checksum_closes(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd)
    conn.identify(snappy=True)
    conn.sock = SnappySock(conn.sock, take_leftover(conn))
    conn.expect_ok()
    frame = bytearray(python_snappy.StreamCompressor().add_chunk(b"PUB %s\n" % topic.encode()
                                                                  + b"\x00\x00\x00\x01x"))
    frame[14] ^= 0xFF  # the first chunk's CRC
    conn.sock.sock.sendall(bytes(frame))
    conn.assert_closed()


def test_both_compressions_refused(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    conn.send("IDENTIFY", b'{"feature_negotiation":true,"deflate":true,"snappy":true}')
    if snappy_available():
        conn.expect_error("E_IDENTIFY_FAILED cannot enable both deflate and snappy compression")
    else:  # without the extra only deflate is on offer
        ft, data = conn.next_frame()
        assert ft == wire.FRAME_TYPE_RESPONSE and b'"snappy":false' in data


def test_compression_disabled(nsqd_factory, conns, topic):
    node = nsqd_factory("--deflate=false", "--snappy=false", "--max-deflate-level=4")
    conn = conns(node)
    features = conn.identify(deflate=True, snappy=True, deflate_level=9)
    assert (features["deflate"], features["snappy"]) == (False, False)
    assert (features["deflate_level"], features["max_deflate_level"]) == (4, 4)
    conn.pub(topic, b"still plain")


def test_deflate_level_needs_deflate(shared_nsqd, conns):
    features = conns(shared_nsqd).identify(deflate_level=3)
    assert (features["deflate"], features["deflate_level"]) == (False, 6)


def test_tls_then_compression(nsqd_factory, conns, topic, tmp_path):
    certs_mod = pytest.importorskip("tests.certs", reason="needs the cryptography package (test extra)")
    certs = certs_mod.make_certs(str(tmp_path))
    node = nsqd_factory("--tls-cert=" + certs["server"], "--tls-key=" + certs["server_key"],
                        "--https-address=127.0.0.1:0")
    ctx = certs_mod.client_context(certs)
    kinds = ["deflate"] + (["snappy"] if python_snappy is not None and snappy_available() else [])
    for kind in kinds:
        conn = conns(node)
        features = conn.identify(tls_v1=True, **{kind: True})
        assert features["tls_v1"] is True and features[kind] is True
        conn.sock = ctx.wrap_socket(conn.sock, server_hostname="127.0.0.1")
        conn.expect_ok()  # TLS OK: encrypted, not compressed
        leftover = take_leftover(conn)
        conn.sock = DeflateSock(conn.sock, 6, leftover) if kind == "deflate" else SnappySock(conn.sock, leftover)
        conn.expect_ok()  # compression OK: inside both layers
        conn.pub(topic, b"%s over tls" % kind.encode())
    sub = conns(node)
    sub.identify(tls_v1=True, deflate=True)
    sub.sock = ctx.wrap_socket(sub.sock, server_hostname="127.0.0.1")
    sub.expect_ok()
    sub.sock = DeflateSock(sub.sock, 6, take_leftover(sub))
    sub.expect_ok()
    sub.sub(topic, "ch", rdy=5)
    assert sorted(m.body for m in sub.messages(len(kinds))) == sorted(b"%s over tls" % k.encode() for k in kinds)
