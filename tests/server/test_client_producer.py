"""The client library's Producer against our nsqd, over real loopback sockets."""
from __future__ import annotations

import threading
import time

import pytest

from nsqd_sync import wire
from nsqd_sync.client import (NSQBadBody, NSQBadMessage, NSQBadTopic, NSQConnectionError, NSQError,
                              NSQInvalid, Producer)
from tests.helpers import NodeProcess, RawConn, wait_for

pytestmark = pytest.mark.timeout(60)


def subscribe(node: NodeProcess, topic: str, channel: str = "ch", rdy: int = 100) -> RawConn:
    # NSQ's deferred-queue scan only picks up a new channel at its next refresh (5 s)
    conn = RawConn(node.tcp_port, timeout=10.0)
    conn.identify()
    conn.send("SUB %s %s" % (topic, channel))
    assert conn.frame_skip_heartbeats() == (wire.FRAME_TYPE_RESPONSE, b"OK")
    conn.send("RDY %d" % rdy)
    return conn


def receive(conn: RawConn, n: int):
    out = []
    for _ in range(n):
        ts, attempts, msg_id, body = conn.message()
        conn.send("FIN " + msg_id.decode())
        out.append((body, attempts, time.monotonic()))
    return out


def test_pub_mpub_dpub_round_trip(start_nsqd):
    node = start_nsqd()
    conn = subscribe(node, "round")  # creates topic and channel first
    with Producer(node.tcp_address) as p:
        p.pub("round", b"one")
        p.pub("round", "two")  # str bodies are sent as UTF-8
        p.mpub("round", [b"three", b"four", bytearray(b"five")])
        sent_at = time.monotonic()
        p.dpub("round", 300, b"deferred")
        got = receive(conn, 6)
    bodies = [b for b, _, _ in got]
    assert bodies[:5] == [b"one", b"two", b"three", b"four", b"five"]
    assert bodies[5] == b"deferred"
    assert got[5][2] - sent_at >= 0.25
    assert all(a == 1 for _, a, _ in got)
    conn.close()


def test_identify_features(start_nsqd):
    node = start_nsqd()
    with Producer(node.tcp_address, client_id="prod-1", user_agent="test-agent/1.0") as p:
        assert p.features == {}
        p.ping()
        features = p.features
    assert features["max_rdy_count"] == 2500
    assert features["msg_timeout"] == 60000
    assert features["version"].startswith("1.3.0")


@pytest.mark.parametrize("call, cls, code, prefix", [
    (lambda p: p.pub("bad!topic", b"x"), NSQBadTopic, "E_BAD_TOPIC", 'PUB topic name "bad!topic" is not valid'),
    # NSQ 1.3.0 repeats the code inside MPUB's description: "E_BAD_TOPIC E_BAD_TOPIC MPUB ..."
    (lambda p: p.mpub("bad!topic", [b"x"]), NSQBadTopic, "E_BAD_TOPIC",
     'E_BAD_TOPIC MPUB topic name "bad!topic" is not valid'),
    (lambda p: p.dpub("bad!topic", 10, b"x"), NSQBadTopic, "E_BAD_TOPIC", 'DPUB topic name "bad!topic"'),
    (lambda p: p.pub("x" * 65, b"x"), NSQBadTopic, "E_BAD_TOPIC", "PUB topic name"),
    (lambda p: p.pub("a b", b"x"), NSQBadTopic, "E_BAD_TOPIC", 'PUB topic name "a b" is not valid'),
    (lambda p: p.pub("t", b""), NSQBadMessage, "E_BAD_MESSAGE", "PUB invalid message body size 0"),
    (lambda p: p.mpub("t", []), NSQBadBody, "E_BAD_BODY", "MPUB invalid message count 0"),
    (lambda p: p.dpub("t", -1, b"x"), NSQInvalid, "E_INVALID", "DPUB could not parse timeout -1"),
    (lambda p: p.dpub("t", 3600001, b"x"), NSQInvalid, "E_INVALID", "DPUB timeout 3600001 out of range"),
])
def test_error_frames_raise_their_class(start_nsqd, call, cls, code, prefix):
    node = start_nsqd()
    with Producer(node.tcp_address) as p:
        with pytest.raises(cls) as info:
            call(p)
        err = info.value
        assert isinstance(err, NSQError)
        assert err.code == code
        assert err.message.startswith(prefix), err.message
        assert str(err) == code + " " + err.message
        # the producer is usable again after a fatal error closed the connection
        p.pub("t", b"ok")


def test_message_too_big(start_nsqd):
    node = start_nsqd(args=["--max-msg-size=100"])
    with Producer(node.tcp_address) as p:
        with pytest.raises(NSQBadMessage) as info:
            p.pub("big", b"x" * 101)
        assert info.value.message == "PUB message too big 101 > 100"
        p.pub("big", b"x" * 100)


def test_connect_refused_raises_connection_error(start_nsqd):
    node = start_nsqd()
    port = node.tcp_port
    node.stop()
    p = Producer("127.0.0.1:%d" % port)
    with pytest.raises(NSQConnectionError):
        p.pub("t", b"x")
    p.close()


def test_reconnect_after_server_restart(start_nsqd, tmp_path):
    node = start_nsqd("restart")
    addr = node.tcp_address
    p = Producer(addr)
    p.pub("persist", b"before")
    assert node.stop() == 0
    with pytest.raises(NSQConnectionError):
        p.pub("persist", b"while down")
    node2 = start_nsqd("restart", tcp=addr)
    assert node2.tcp_address == addr
    p.pub("persist", b"after")  # reconnects by itself
    p.close()
    conn = subscribe(node2, "persist")
    bodies = sorted(b for b, _, _ in receive(conn, 2))
    assert bodies == [b"after", b"before"]
    conn.close()


def test_reconnects_once_when_connection_was_lost(start_nsqd):
    node = start_nsqd()
    conn = subscribe(node, "t")
    with Producer(node.tcp_address) as p:
        p.pub("t", b"1")
        p._conn.sock.close()  # the socket dies under the producer
        p.pub("t", b"2")
    assert [b for b, _, _ in receive(conn, 2)] == [b"1", b"2"]
    conn.close()


def test_thread_safe_publishing(start_nsqd):
    node = start_nsqd()
    errors = []
    conn = subscribe(node, "shared", rdy=1000)
    with Producer(node.tcp_address) as p:
        def publish(i: int) -> None:
            try:
                for j in range(100):
                    if j % 10 == 0:
                        p.mpub("shared", [b"%d-%d-m%d" % (i, j, k) for k in range(5)])
                    else:
                        p.pub("shared", b"%d-%d" % (i, j))
            except Exception as e:  # collected for the assertion below
                errors.append(e)

        threads = [threading.Thread(target=publish, args=(i,), name="test-pub-%d" % i) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not errors
    expected = 4 * (90 + 10 * 5)
    got = [b for b, _, _ in receive(conn, expected)]
    assert len(set(got)) == expected
    # each thread's messages arrive in the order it published them
    for i in range(4):
        mine = [b for b in got if b.startswith(b"%d-" % i)]
        assert mine[:3] == [b"%d-0-m0" % i, b"%d-0-m1" % i, b"%d-0-m2" % i]
    conn.close()


def test_idle_producer_answers_heartbeats(start_nsqd):
    node = start_nsqd()
    with Producer(node.tcp_address, heartbeat_interval=1.0) as p:
        p.pub("hb", b"1")
        conn = p._conn
        # nsqd closes a client that misses two heartbeats (2 s here)
        deadline = time.monotonic() + 2.6
        while time.monotonic() < deadline:
            time.sleep(0.1)
            assert p._conn is conn and not conn.closed
        p.pub("hb", b"2")
        assert p._conn is conn


def test_deflate_round_trip(start_nsqd):
    node = start_nsqd()
    conn = subscribe(node, "zipped")
    with Producer(node.tcp_address, deflate=True, deflate_level=6) as p:
        p.ping()
        negotiated = p.features.get("deflate")
        for i in range(20):
            p.pub("zipped", b"compressible " * 50 + b"%d" % i)
        p.mpub("zipped", [b"a" * 1000, b"b" * 1000])
    got = [b for b, _, _ in receive(conn, 22)]
    assert got[0] == b"compressible " * 50 + b"0"
    assert got[-1] == b"b" * 1000
    assert negotiated in (True, False)
    conn.close()


def test_closed_producer_refuses(start_nsqd):
    node = start_nsqd()
    p = Producer(node.tcp_address)
    p.pub("t", b"x")
    p.close()
    with pytest.raises(NSQConnectionError):
        p.pub("t", b"y")
    assert not [t for t in threading.enumerate() if t.name.startswith("nsq-producer-%s" % node.tcp_address)]


def make_cert(tmp_path):
    """A self-signed certificate for 127.0.0.1 (cert path, key path)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_round_trip(start_nsqd, tmp_path):
    pytest.importorskip("cryptography")
    import ssl

    from nsqd_sync.client import Consumer

    cert, key = make_cert(tmp_path)
    node = start_nsqd(args=["--tls-cert=" + cert, "--tls-key=" + key])
    ctx = ssl.create_default_context(cafile=cert)
    with Producer(node.tcp_address, tls_v1=True, tls_context=ctx, deflate=True) as p:
        p.ping()
        assert p.features.get("tls_v1") is True, p.features
        assert isinstance(p._conn.sock, ssl.SSLSocket)
        p.pub("tls", b"secret")
        p.mpub("tls", [b"x" * 5000] * 5)
    got = []
    c = Consumer("tls", "ch", lambda m: got.append(m.body), nsqd_tcp_addresses=[node.tcp_address],
                 tls_v1=True, tls_context=ctx, max_in_flight=10)
    c.start()
    try:
        wait_for(lambda: len(got) == 6, timeout=10, message="6 messages over TLS")
    finally:
        c.stop()
    assert got[0] == b"secret" and c.stats["errors"] == 0
