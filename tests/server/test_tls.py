"""TLS on nsqd: the IDENTIFY upgrade, --tls-required, client certificates, HTTPS.

Checked against nsqd 1.3.0: IDENTIFY with `tls_v1` is answered in plain
text (`tls_v1: true`), then the TLS handshake, then `OK` inside the TLS
session; with --tls-required every command but IDENTIFY before the upgrade
is `E_INVALID cannot X in current state (TLS required)` (fatal), and with
`--tls-required=true` (or a client-auth policy) the plain HTTP listener
answers 403 `{"message": "TLS_REQUIRED", "https_port": N}` while
`tcp-https` leaves plain HTTP open.  Certificates are made by the test
(tests/certs.py); every connection is on loopback.
"""
from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request

import pytest

from nsqd_sync import wire
from tests.helpers import split_hostport, wait_for

certs_mod = pytest.importorskip("tests.certs", reason="needs the cryptography package (test extra)")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return certs_mod.make_certs(str(tmp_path_factory.mktemp("certs")))


def tls_args(certs, *extra):
    return ["--tls-cert=" + certs["server"], "--tls-key=" + certs["server_key"],
            "--https-address=127.0.0.1:0"] + list(extra)


def https_port(node) -> int:
    wait_for(lambda: "HTTPS" in node.addresses, message="HTTPS: listening on")
    return split_hostport(node.addresses["HTTPS"])[1]


def upgrade(conn, ctx: ssl.SSLContext, **identify) -> dict:
    """IDENTIFY with tls_v1, check the plain-text answer, handshake, expect OK inside TLS."""
    features = conn.identify(tls_v1=True, **identify)
    assert features["tls_v1"] is True
    assert conn.buf == b"", "nothing may follow the IDENTIFY answer before the handshake"
    conn.sock = ctx.wrap_socket(conn.sock, server_hostname="127.0.0.1")
    conn.expect_ok()
    return features


def https_get(port: int, path: str, ctx: ssl.SSLContext):
    with urllib.request.urlopen("https://127.0.0.1:%d%s" % (port, path), context=ctx, timeout=5) as r:
        return r.status, r.read()


def http_get(port: int, path: str, data=None):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), data=data, timeout=5) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


@pytest.fixture(scope="module")
def tls_node(certs, tmp_path_factory):
    from tests.helpers import NodeProcess

    node = NodeProcess("nsqd", args=tls_args(certs), data_path=str(tmp_path_factory.mktemp("tls")))
    try:
        yield node
    finally:
        node.stop()


def test_upgrade_then_pub_sub_inside_tls(tls_node, certs, conns, topic):
    ctx = certs_mod.client_context(certs)  # verifies the server certificate and its 127.0.0.1 name
    pub = conns(tls_node)
    upgrade(pub, ctx)
    assert pub.sock.version() is not None
    pub.pub(topic, b"secret one")
    pub.mpub(topic, [b"secret two", b"secret three"])

    sub = conns(tls_node)
    upgrade(sub, ctx, heartbeat_interval=1000)
    sub.sub(topic, "ch", rdy=10)
    got = sub.messages(3)
    assert [m.body for m in got] == [b"secret one", b"secret two", b"secret three"]
    for m in got:
        sub.fin(m.id)
    status, body = http_get(tls_node.http_port, "/stats?format=json&topic=" + topic)[:2]
    clients = json.loads(body)["topics"][0]["channels"][0]["clients"]
    assert [(c["tls"], c["tls_version"]) for c in clients] == [(True, sub.sock.version().replace("v", ""))]
    assert clients[0]["tls_cipher_suite"]
    # heartbeats come through the TLS session too, and are answered inside it
    sub.sock.settimeout(5)
    assert sub.frame() == (wire.FRAME_TYPE_RESPONSE, wire.HEARTBEAT)
    sub.send("NOP")
    pub.pub(topic, b"after heartbeat")
    assert sub.message().body == b"after heartbeat"


def test_many_messages_both_ways_over_tls(tls_node, certs, conns, topic):
    """The pump writes while the handler reads FINs: one TLS session, two threads."""
    ctx = certs_mod.client_context(certs)
    pub = conns(tls_node)
    upgrade(pub, ctx)
    sub = conns(tls_node)
    upgrade(sub, ctx)
    sub.sub(topic, "ch", rdy=50)
    total = 3000
    errors = []

    def publish():
        try:
            for i in range(0, total, 100):
                pub.mpub(topic, [b"m-%05d-" % n + b"x" * 150 for n in range(i, i + 100)])
        except Exception as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    t = threading.Thread(target=publish, name="test-tls-publisher")
    t.start()
    seen = set()
    while len(seen) < total:
        m = sub.message(10)
        seen.add(m.body[:7])
        sub.fin(m.id)
    t.join(30)
    assert not errors
    assert len(seen) == total


def test_tls_v1_ignored_without_tls_config(nsqd, conns, topic):
    conn = conns(nsqd)
    features = conn.identify(tls_v1=True)
    assert features["tls_v1"] is False
    conn.pub(topic, b"plain")  # still plain text


def test_failed_handshake_closes_the_connection(tls_node, certs, conns, topic):
    conn = conns(tls_node)
    conn.identify(tls_v1=True)
    conn.send_raw(b"this is not a TLS client hello\n" * 4)
    conn.assert_closed()
    # the node carries on
    ok = conns(tls_node)
    upgrade(ok, certs_mod.client_context(certs))
    ok.pub(topic, b"still fine")


def test_https_ping_and_pub(tls_node, certs):
    port = https_port(tls_node)
    ctx = certs_mod.client_context(certs)
    assert https_get(port, "/ping", ctx) == (200, b"OK")
    req = urllib.request.Request("https://127.0.0.1:%d/pub?topic=https_topic" % port, data=b"hi", method="POST")
    with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
        assert (r.status, r.read()) == (200, b"OK")
    # plain HTTP stays open without --tls-required
    assert http_get(tls_node.http_port, "/ping")[:2] == (200, b"OK")
    assert "HTTPS: listening on 127.0.0.1:%d" % port in tls_node.log_text()


@pytest.mark.parametrize("required", ["true", "tcp-https"])
def test_tls_required(nsqd_factory, certs, conns, topic, required):
    node = nsqd_factory(*tls_args(certs, "--tls-required=" + required))
    for cmd, body in (("PUB " + topic, b"x"), ("NOP", None), ("SUB %s ch" % topic, None),
                      ("AUTH", b"secret"), ("FOO", None), ("FIN 0123456789abcdef", None)):
        conn = conns(node)
        conn.send(cmd, body)
        conn.expect_error("E_INVALID cannot %s in current state (TLS required)" % cmd.split()[0])
    # IDENTIFY without tls_v1 is answered, but the client still may not publish
    conn = conns(node)
    assert conn.identify()["tls_v1"] is False
    conn.send("PUB " + topic, b"x")
    conn.expect_error("E_INVALID cannot PUB in current state (TLS required)")
    # after the upgrade everything works
    conn = conns(node)
    upgrade(conn, certs_mod.client_context(certs))
    conn.pub(topic, b"over tls")

    status, body, headers = http_get(node.http_port, "/ping")
    if required == "true":
        assert status == 403
        assert json.loads(body) == {"message": "TLS_REQUIRED", "https_port": https_port(node)}
        assert body == b'{"message": "TLS_REQUIRED", "https_port": %d}' % https_port(node)
        assert headers["X-NSQ-Content-Type"] == "nsq; version=1.0"
        assert http_get(node.http_port, "/pub?topic=" + topic, b"x")[0] == 403
    else:
        assert (status, body) == (200, b"OK")
    assert https_get(https_port(node), "/ping", certs_mod.client_context(certs)) == (200, b"OK")


def test_client_auth_policy_implies_tls_required(nsqd_factory, certs, conns, topic):
    node = nsqd_factory(*tls_args(certs, "--tls-client-auth-policy=require"))
    conn = conns(node)
    conn.send("PUB " + topic, b"x")
    conn.expect_error("E_INVALID cannot PUB in current state (TLS required)")
    assert http_get(node.http_port, "/ping")[0] == 403


def _handshake(node, ctx):
    """Open, IDENTIFY with tls_v1, handshake: the connection, or the handshake's exception."""
    from tests.conftest import ProtoConn

    conn = ProtoConn(node.tcp_port)
    conn.identify(tls_v1=True)
    try:
        conn.sock = ctx.wrap_socket(conn.sock, server_hostname="127.0.0.1")
        conn.expect_ok()
    except (ssl.SSLError, OSError, EOFError, AssertionError) as e:
        conn.close()
        return e
    return conn


def test_require_verify(nsqd_factory, certs, topic):
    node = nsqd_factory(*tls_args(certs, "--tls-client-auth-policy=require-verify",
                                  "--tls-root-ca-file=" + certs["ca"]))
    good = _handshake(node, certs_mod.client_context(certs, cert="client"))
    assert not isinstance(good, Exception), good
    good.pub(topic, b"verified")
    good.close()
    for cert in (None, "rogue"):  # no certificate; one no trusted CA signed
        failed = _handshake(node, certs_mod.client_context(certs, cert=cert))
        assert isinstance(failed, Exception), "handshake with %s should fail" % cert
    # HTTPS applies the same policy
    port = https_port(node)
    assert https_get(port, "/ping", certs_mod.client_context(certs, cert="client")) == (200, b"OK")
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        https_get(port, "/ping", certs_mod.client_context(certs))


def test_require_accepts_any_certificate(nsqd_factory, certs, topic):
    node = nsqd_factory(*tls_args(certs, "--tls-client-auth-policy=require"))
    rogue = _handshake(node, certs_mod.client_context(certs, cert="rogue"))
    assert not isinstance(rogue, Exception), rogue
    rogue.pub(topic, b"any certificate will do")
    rogue.close()
    assert isinstance(_handshake(node, certs_mod.client_context(certs)), Exception), \
        "a client without a certificate must be refused"


def test_tls_min_version(nsqd_factory, certs, topic):
    node = nsqd_factory(*tls_args(certs, "--tls-min-version=tls1.3"))
    old = _handshake(node, certs_mod.client_context(certs, maximum=ssl.TLSVersion.TLSv1_2))
    assert isinstance(old, Exception), "a TLS 1.2 client must be refused"
    new = _handshake(node, certs_mod.client_context(certs))
    assert not isinstance(new, Exception), new
    assert new.sock.version() == "TLSv1.3"
    new.close()


def test_bad_certificate_path_fails_start(tmp_path, certs):
    import subprocess

    from tests.helpers import command_for

    proc = subprocess.run(command_for("nsqd") + [
        "--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0", "--data-path=" + str(tmp_path),
        "--tls-cert=" + str(tmp_path / "missing.pem"), "--tls-key=" + certs["server_key"]],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert proc.returncode != 0
    assert b"failed to build TLS config" in proc.stderr

