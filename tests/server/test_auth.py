"""AUTH against a stand-in auth server on loopback (checked against nsqd 1.3.0).

nsqd asks `GET /auth?common_name=&remote_ip=&secret=&tls=` and keeps the
answer for its TTL; PUB/MPUB/DPUB/SUB are then checked against the
authorizations (regexes match anywhere in the name, as Go's MatchString;
publishing needs a channel regex matching the empty name).  Error frames,
all fatal: `E_AUTH_FIRST AUTH required before PUB`, `E_UNAUTHORIZED AUTH
failed for PUB on "t" ""`, `E_UNAUTHORIZED AUTH no authorizations found`,
`E_AUTH_FAILED AUTH failed` (auth server down or answering nonsense; the
reason only goes to the log), `E_INVALID AUTH already set`.  The HTTP
/pub is not checked (NSQ expects operators to keep HTTP private).
"""
from __future__ import annotations

import json
import struct
import time

import pytest

from nsqd_sync import wire
from tests.authserver import AuthServer, allow, grant
from tests.helpers import NodeProcess, http_request

PUB_SUB = allow(grant("^ok-", [".*"], "publish"), grant("^ok-", ["^ch$"], "subscribe"))


@pytest.fixture(scope="module")
def auth_server():
    server = AuthServer(PUB_SUB)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def authd(auth_server):
    """The module's auth server, answering PUB_SUB unless the test changes it."""
    auth_server.respond = PUB_SUB
    return auth_server


@pytest.fixture(scope="module")
def node(auth_server, tmp_path_factory):
    n = NodeProcess("nsqd", args=["--auth-http-address=" + auth_server.address],
                    data_path=str(tmp_path_factory.mktemp("auth")))
    try:
        yield n
    finally:
        n.stop()


def authed(conns, node, secret: bytes = b"s3cret"):
    conn = conns(node)
    conn.send("AUTH", secret)
    ft, data = conn.next_frame()
    assert ft == wire.FRAME_TYPE_RESPONSE, data
    return conn, json.loads(data)


def test_identify_says_auth_required(node, conns, nsqd):
    assert conns(node).identify()["auth_required"] is True
    assert conns(nsqd).identify()["auth_required"] is False


@pytest.mark.parametrize("cmd,body", [("PUB allowed-t", b"x"), ("MPUB allowed-t", struct.pack(">ii", 1, 1) + b"x"),
                                      ("DPUB allowed-t 10", b"x"), ("SUB allowed-t ch", None)])
def test_commands_need_auth_first(node, authd, conns, cmd, body):
    conn = conns(node)
    conn.identify()
    conn.send(cmd, body)
    conn.expect_error("E_AUTH_FIRST AUTH required before %s" % cmd.split()[0])


def test_allowed_and_denied(node, authd, conns, topic):
    allowed = "ok-" + topic
    before = authd.count()
    conn, answer = authed(conns, node)
    assert answer == {"identity": "alice", "identity_url": "https://example.invalid/alice", "permission_count": 2}
    assert authd.count() == before + 1
    req = authd.last()
    assert req.method == "GET" and req.path.startswith("/auth?")
    assert req.query == {"common_name": [""], "remote_ip": ["127.0.0.1"], "secret": ["s3cret"], "tls": ["false"]}
    assert req.path == "/auth?common_name=&remote_ip=127.0.0.1&secret=s3cret&tls=false"  # NSQ sorts the keys
    assert req.headers.get("Accept") == "application/vnd.nsq; version=1.0"
    conn.pub(allowed, b"one")
    conn.mpub(allowed, [b"two", b"three"])
    conn.dpub(allowed, 10, b"four")
    assert authd.count() == before + 1, "cached: no new request within the TTL"

    sub, _ = authed(conns, node)
    sub.sub(allowed, "ch", rdy=10)
    assert sorted(m.body for m in sub.messages(4)) == [b"four", b"one", b"three", b"two"]
    status, body, _ = http_request(node.http_port, "/stats?format=json&topic=" + allowed)
    client = json.loads(body)["topics"][0]["channels"][0]["clients"][0]
    assert (client["authed"], client["auth_identity"], client["auth_identity_url"]) == (
        True, "alice", "https://example.invalid/alice")

    denied, _ = authed(conns, node)
    denied.send("PUB " + topic, b"x")
    denied.expect_error('E_UNAUTHORIZED AUTH failed for PUB on "%s" ""' % topic)
    denied, _ = authed(conns, node)
    denied.send("SUB %s other" % allowed)
    denied.expect_error('E_UNAUTHORIZED AUTH failed for SUB on "%s" "other"' % allowed)


def test_regexes_match_anywhere(node, authd, conns, topic):
    authd.respond = allow(grant("mid", [""], "publish"), grant(".*", ["ch"], "subscribe"))
    conn, _ = authed(conns, node)
    conn.pub("a-mid-" + topic, b"x")  # not anchored, as Go's MatchString in NSQ 1.3.0
    sub, _ = authed(conns, node)
    sub.sub(topic, "xchx")


def test_publish_needs_a_channel_regex_matching_empty(node, authd, conns, topic):
    authd.respond = allow(grant(".*", ["ch"], "publish", "subscribe"))
    conn, _ = authed(conns, node)
    conn.send("PUB " + topic, b"x")
    conn.expect_error('E_UNAUTHORIZED AUTH failed for PUB on "%s" ""' % topic)


def test_auth_twice_and_no_authorizations(node, authd, conns):
    conn, _ = authed(conns, node)
    conn.send("AUTH", b"again")
    conn.expect_error("E_INVALID AUTH already set")
    authd.respond = allow()
    conn = conns(node)
    conn.send("AUTH", b"nobody")
    conn.expect_error("E_UNAUTHORIZED AUTH no authorizations found")


@pytest.mark.parametrize("status,body", [
    (500, b'{"message":"oops"}'),
    (200, b"not json"),
    (200, b'"a string"'),
    (200, json.dumps({"ttl": 0, "authorizations": [grant(".*", [".*"], "publish")]}).encode()),
    (200, json.dumps({"ttl": 10, "authorizations": [grant(".*", [".*"], "publish", "admin")]}).encode()),
    (200, json.dumps({"ttl": 10, "authorizations": [grant("(", [".*"], "publish")]}).encode()),
    (403, b'{"message":"NOPE"}'),
])
def test_bad_answers_fail_auth(node, authd, conns, status, body):
    authd.respond = lambda req: (status, body)
    conn = conns(node)
    conn.send("AUTH", b"s3cret")
    conn.expect_error("E_AUTH_FAILED AUTH failed")
    assert b"s3cret" not in node.log_text().encode(), "the secret must not be logged"


def test_ttl_expiry_fetches_again(node, authd, conns, topic):
    authd.respond = allow(grant(".*", [".*"], "publish"), ttl=1)
    conn, _ = authed(conns, node)
    start = authd.count()
    conn.pub(topic, b"within ttl")
    assert authd.count() == start
    time.sleep(1.1)  # let the 1 s TTL run out
    conn.pub(topic, b"refetched")
    assert authd.count() == start + 1
    assert authd.last().query["secret"] == ["s3cret"]
    authd.respond = lambda req: (500, b"{}")
    time.sleep(1.1)
    conn.send("PUB " + topic, b"x")
    conn.expect_error("E_AUTH_FAILED AUTH failed")


def test_auth_server_down(nsqd_factory, conns, topic):
    gone = AuthServer()
    address = gone.address
    gone.stop()
    node = nsqd_factory("--auth-http-address=" + address)
    conn = conns(node)
    conn.send("AUTH", b"s3cret")
    conn.expect_error("E_AUTH_FAILED AUTH failed")
    assert "AUTH failed" in node.log_text()


def test_second_auth_server_answers(nsqd_factory, authd, conns, topic):
    gone = AuthServer()
    address = gone.address
    gone.stop()
    node = nsqd_factory("--auth-http-address=" + address, "--auth-http-address=" + authd.address)
    for _ in range(4):  # whichever one the rotation starts with
        conn, answer = authed(conns, node)
        assert answer["permission_count"] == 2


def test_full_url_and_post(nsqd_factory, authd, conns):
    node = nsqd_factory("--auth-http-address=http://%s/custom/path" % authd.address,
                        "--auth-http-request-method=post")
    authed(conns, node, b"tok en&x=1")
    req = authd.last()
    assert req.method == "POST"
    assert req.path == "/custom/path?common_name=&remote_ip=127.0.0.1&secret=tok+en%26x%3D1&tls=false"


def test_http_publish_is_not_checked(node, authd, topic):
    status, body, _ = http_request(node.http_port, "/pub?topic=" + topic, "POST", b"via http")
    assert (status, body) == (200, b"OK")


def test_tls_client_certificate_common_name(nsqd_factory, authd, conns, topic, tmp_path):
    certs_mod = pytest.importorskip("tests.certs", reason="needs the cryptography package (test extra)")
    certs = certs_mod.make_certs(str(tmp_path))
    node = nsqd_factory("--auth-http-address=" + authd.address, "--tls-cert=" + certs["server"],
                        "--tls-key=" + certs["server_key"], "--tls-root-ca-file=" + certs["ca"],
                        "--tls-client-auth-policy=require-verify", "--https-address=127.0.0.1:0")
    conn = conns(node)
    conn.identify(tls_v1=True)
    conn.sock = certs_mod.client_context(certs, cert="client").wrap_socket(conn.sock, server_hostname="127.0.0.1")
    conn.expect_ok()
    conn.send("AUTH", b"s3cret")
    ft, data = conn.next_frame()
    assert ft == wire.FRAME_TYPE_RESPONSE, data
    assert authd.last().query["tls"] == ["true"]
    assert authd.last().query["common_name"] == [certs_mod.CLIENT_CN]
    conn.pub("ok-" + topic, b"over tls with a certificate")
