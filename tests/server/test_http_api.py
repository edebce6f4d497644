"""nsqd's HTTP API: every endpoint and every error status, as NSQ 1.3.0 answers them.

A real node runs as a subprocess on loopback ports; requests go through
`requests` (and raw sockets where the bytes matter).  The few statuses a
healthy node cannot be pushed into (503 EXITING, 500 INTERNAL_ERROR, an
unhealthy /ping) are checked against the same HTTP server wired to a stub
node.
"""
from __future__ import annotations

import http.client as httpclient
import json
import socket
import struct
import threading
import time
from types import SimpleNamespace

import pytest
import requests

from nsqd_sync import wire
from nsqd_sync.errors import BackendError, ExitingError
from nsqd_sync.http_api import NSQDHTTPServer
from nsqd_sync.options import Options
from tests.helpers import NodeProcess, RawConn, wait_for

pytestmark = pytest.mark.timeout(60)

MAX_MSG = 1000
MAX_BODY = 5000
V1_ACCEPT = ("application/vnd.nsq; version=1.0", "application/vnd.nsq version=1.0", None)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    data = tmp_path_factory.mktemp("http-api")
    n = NodeProcess("nsqd", args=["--max-msg-size=%d" % MAX_MSG, "--max-body-size=%d" % MAX_BODY,
                                  "--broadcast-address=127.0.0.1"], data_path=str(data))
    n.data_path = str(data)
    yield n
    n.stop()


@pytest.fixture
def http(node):
    session = requests.Session()
    base = "http://%s" % node.http_address

    def call(method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        kw.setdefault("allow_redirects", False)
        return session.request(method, base + path, **kw)

    yield call
    session.close()


def stats(http, topic: str = "") -> dict:
    r = http("GET", "/stats?format=json&include_mem=false" + ("&topic=" + topic if topic else ""))
    assert r.status_code == 200
    return r.json()


def topic_stats(http, topic: str) -> dict:
    topics = stats(http, topic)["topics"] or []
    return topics[0] if topics else {}


def channel_stats(http, topic: str, channel: str) -> dict:
    for c in topic_stats(http, topic).get("channels", []):
        if c["channel_name"] == channel:
            return c
    return {}


def error_of(r: requests.Response) -> tuple:
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["X-NSQ-Content-Type"] == "nsq; version=1.0"
    return r.status_code, r.json()["message"]


def subscribe(node, topic: str, channel: str, rdy: int = 10) -> RawConn:
    conn = RawConn(node.tcp_port, timeout=10.0)
    conn.identify()
    conn.send("SUB %s %s" % (topic, channel))
    assert conn.frame_skip_heartbeats() == (wire.FRAME_TYPE_RESPONSE, b"OK")
    if rdy:
        conn.send("RDY %d" % rdy)
    return conn


def nothing_arrives(conn: RawConn, seconds: float = 0.4) -> bool:
    """True if no message frame comes within seconds (heartbeats aside)."""
    conn.sock.settimeout(seconds)
    try:
        while True:
            ft, data = conn.frame()
            if ft == wire.FRAME_TYPE_MESSAGE:
                return False
    except socket.timeout:
        return True
    finally:
        conn.sock.settimeout(10.0)


def raw_status(node, method: str, path: str, body: bytes = b"") -> tuple:
    """A request sent byte for byte (requests would re-quote a bad escape)."""
    conn = httpclient.HTTPConnection("127.0.0.1", node.http_port, timeout=10)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def metadata(node) -> dict:
    with open(node.data_path + "/nsqd.dat") as f:
        return json.load(f)


# ---------------------------------------------------------------- node endpoints

def test_ping_is_exactly_ok(http):
    r = http("GET", "/ping")
    assert (r.status_code, r.content) == (200, b"OK")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "X-NSQ-Content-Type" not in r.headers


def test_info(http, node):
    r = http("GET", "/info")
    assert r.status_code == 200
    info = r.json()
    assert list(info) == ["version", "broadcast_address", "hostname", "http_port", "tcp_port", "start_time",
                          "max_heartbeat_interval", "max_output_buffer_size", "max_output_buffer_timeout",
                          "max_deflate_level"]
    assert info["version"] == "1.3.0"
    assert info["broadcast_address"] == "127.0.0.1"
    assert (info["http_port"], info["tcp_port"]) == (node.http_port, node.tcp_port)
    assert abs(info["start_time"] - time.time()) < 300
    assert info["max_heartbeat_interval"] == 60 * 10 ** 9
    assert info["max_output_buffer_size"] == 65536
    assert info["max_output_buffer_timeout"] == 30 * 10 ** 9
    assert info["max_deflate_level"] == 6


@pytest.mark.parametrize("accept", V1_ACCEPT)
def test_v1_answers_whatever_the_accept_header(http, accept):
    headers = {"Accept": accept} if accept else {}
    r = http("POST", "/pub?topic=accept_t", data=b"x", headers=headers)
    assert (r.status_code, r.content) == (200, b"OK")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    r = http("POST", "/topic/create?topic=accept_t", headers=headers)
    assert (r.status_code, r.content) == (200, b"")
    assert "Content-Type" not in r.headers
    r = http("GET", "/stats?format=json&topic=accept_t&include_mem=false", headers=headers)
    assert r.json()["topics"][0]["topic_name"] == "accept_t"
    assert error_of(http("POST", "/pub", data=b"x", headers=headers)) == (400, "MISSING_ARG_TOPIC")


def test_unknown_path_wrong_method_options_and_redirects(http):
    assert error_of(http("GET", "/nope")) == (404, "NOT_FOUND")
    assert error_of(http("GET", "/config")) == (404, "NOT_FOUND")
    assert error_of(http("GET", "/config/")) == (404, "NOT_FOUND")
    r = http("GET", "/pub?topic=x")
    assert error_of(r) == (405, "METHOD_NOT_ALLOWED")
    assert r.headers["Allow"] == "OPTIONS, POST"
    r = http("DELETE", "/stats")
    assert error_of(r) == (405, "METHOD_NOT_ALLOWED") and r.headers["Allow"] == "GET, OPTIONS"
    r = http("POST", "/config/log_level")
    assert error_of(r) == (405, "METHOD_NOT_ALLOWED") and r.headers["Allow"] == "GET, OPTIONS, PUT"
    r = http("HEAD", "/ping")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, OPTIONS"
    r = http("OPTIONS", "/pub")
    assert (r.status_code, r.content, r.headers["Allow"]) == (200, b"", "OPTIONS, POST")
    r = http("GET", "/ping/")
    assert (r.status_code, r.headers["Location"]) == (301, "/ping")
    assert r.content == b'<a href="/ping">Moved Permanently</a>.\n\n'
    r = http("GET", "/PING")
    assert (r.status_code, r.headers["Location"]) == (301, "/ping")
    r = http("GET", "/debug/pprof")
    assert (r.status_code, r.headers["Location"]) == (301, "/debug/pprof/")
    r = http("POST", "/pub/?topic=redir_t", data=b"x")
    assert (r.status_code, r.headers["Location"], r.content) == (307, "/pub?topic=redir_t", b"")
    assert http("POST", "/pub/?topic=redir_t", data=b"x", allow_redirects=True).content == b"OK"


def test_request_log_lines(http, node):
    http("GET", "/stats?format=json&topic=logged_t")
    wait_for(lambda: "INFO: 200 GET /stats?format=json&topic=logged_t (127.0.0.1:" in node.log_text(),
             message="the request log line")
    http("GET", "/nope/logged")
    wait_for(lambda: "INFO: 404 GET /nope/logged (127.0.0.1:" in node.log_text(), message="404 log line")
    http("POST", "/pub?topic=not_logged_t", data=b"x")
    assert "/pub?topic=not_logged_t" not in node.log_text()


# ---------------------------------------------------------------- /pub

def test_pub_publishes(http, node):
    conn = subscribe(node, "pub_t", "c")
    r = http("POST", "/pub?topic=pub_t", data=b"hello world")
    assert (r.status_code, r.content) == (200, b"OK")
    assert r.headers["X-NSQ-Content-Type"] == "nsq; version=1.0"
    assert conn.message()[3] == b"hello world"
    conn.close()
    t = topic_stats(http, "pub_t")
    assert (t["message_count"], t["message_bytes"]) == (1, 11)


def test_pub_errors(http, node):
    assert error_of(http("POST", "/pub", data=b"x")) == (400, "MISSING_ARG_TOPIC")
    assert error_of(http("POST", "/pub?topic=a%20b", data=b"x")) == (400, "INVALID_TOPIC")
    assert error_of(http("POST", "/pub?topic=" + "x" * 65, data=b"x")) == (400, "INVALID_TOPIC")
    assert error_of(http("POST", "/pub?topic=pub_err_t")) == (400, "MSG_EMPTY")
    assert error_of(http("POST", "/pub?topic=pub_err_t;x=1", data=b"x")) == (400, "INVALID_REQUEST")
    assert raw_status(node, "POST", "/pub?topic=pub%zz", b"x") == (400, b'{"message":"INVALID_REQUEST"}')
    for bad in ("abc", "-1", "1.5", "%d" % (3600 * 1000 + 1)):
        assert error_of(http("POST", "/pub?topic=pub_err_t&defer=" + bad, data=b"x")) == (400, "INVALID_DEFER")
    r = http("POST", "/pub?topic=pub_err_t", data=b"x" * (MAX_MSG + 1))
    assert error_of(r) == (413, "MSG_TOO_BIG")
    assert (r.status_code, http("POST", "/pub?topic=pub_err_t", data=b"x" * MAX_MSG).status_code) == (413, 200)
    # a chunked body (no Content-Length) is measured as it is read
    r = http("POST", "/pub?topic=pub_err_t", data=iter([b"x" * 600, b"y" * 600]))
    assert error_of(r) == (413, "MSG_TOO_BIG")
    r = http("POST", "/pub?topic=pub_err_t", data=iter([b"chunk", b"ed"]))
    assert r.content == b"OK"
    assert topic_stats(http, "pub_err_t")["message_count"] == 2


def test_pub_too_big_is_refused_before_the_body(node):
    """With Expect: 100-continue, a too-big /pub is refused without asking for the body."""
    s = socket.create_connection(("127.0.0.1", node.http_port), timeout=10)
    s.sendall(b"POST /pub?topic=expect_t HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
              b"Expect: 100-continue\r\n\r\n" % (MAX_MSG + 1))
    head = s.recv(4096)
    s.close()
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in head
    assert b'{"message":"MSG_TOO_BIG"}' in head


def test_pub_defer(http, node):
    conn = subscribe(node, "defer_t", "c")
    sent = time.monotonic()
    assert http("POST", "/pub?topic=defer_t&defer=400", data=b"later").content == b"OK"
    wait_for(lambda: channel_stats(http, "defer_t", "c").get("deferred_count") == 1, message="deferred")
    assert conn.message()[3] == b"later"
    assert time.monotonic() - sent >= 0.35
    assert http("POST", "/pub?topic=defer_t&defer=0", data=b"now").content == b"OK"
    assert conn.message()[3] == b"now"
    conn.close()


# ---------------------------------------------------------------- /mpub

def test_mpub_text(http, node):
    conn = subscribe(node, "mpub_t", "c")
    r = http("POST", "/mpub?topic=mpub_t", data=b"one\ntwo\n\nthree\n")
    assert (r.status_code, r.content) == (200, b"OK")
    assert [conn.message()[3] for _ in range(3)] == [b"one", b"two", b"three"]
    assert http("POST", "/mpub?topic=mpub_t&binary=false", data=b"\x00\x00\x00\x01x").content == b"OK"
    assert conn.message()[3] == b"\x00\x00\x00\x01x"
    conn.close()
    # an empty body publishes nothing but creates the topic, as NSQ does
    assert http("POST", "/mpub?topic=mpub_empty_t").content == b"OK"
    assert topic_stats(http, "mpub_empty_t")["message_count"] == 0


def test_mpub_binary(http, node):
    conn = subscribe(node, "mpub_bin_t", "c")
    for flag in ("true", "1", "yes", ""):
        body = wire.mpub_body([b"a\nb", b"c" * 10])
        r = http("POST", "/mpub?topic=mpub_bin_t&binary" + ("=" + flag if flag else ""), data=body)
        assert (r.status_code, r.content) == (200, b"OK")
        assert [conn.message()[3] for _ in range(2)] == [b"a\nb", b"c" * 10]
    conn.close()
    bad = {
        b"": "BAD_BODY",
        b"\x00\x00": "BAD_BODY",
        struct.pack(">i", 0): "BAD_BODY",
        struct.pack(">i", -1): "BAD_BODY",
        struct.pack(">i", MAX_BODY): "BAD_BODY",
        struct.pack(">ii", 2, 3) + b"abc": "BAD_MESSAGE",
        struct.pack(">ii", 1, 0): "BAD_MESSAGE",
        struct.pack(">ii", 1, 5) + b"ab": "BAD_MESSAGE",
        struct.pack(">ii", 1, MAX_MSG + 1) + b"x" * (MAX_MSG + 1): "BAD_MESSAGE",
    }
    for body, code in bad.items():
        assert error_of(http("POST", "/mpub?topic=mpub_bin_t&binary=true", data=body)) == (413, code), body
    assert topic_stats(http, "mpub_bin_t")["message_count"] == 8


def test_mpub_errors(http):
    assert error_of(http("POST", "/mpub", data=b"x")) == (400, "MISSING_ARG_TOPIC")
    assert error_of(http("POST", "/mpub?topic=a*", data=b"x")) == (400, "INVALID_TOPIC")
    assert error_of(http("POST", "/mpub?topic=mpub_err_t", data=b"x" * (MAX_BODY + 1))) == (413, "BODY_TOO_BIG")
    lines = (b"y" * 100 + b"\n") * 60
    assert error_of(http("POST", "/mpub?topic=mpub_err_t", data=iter([lines[:3000], lines[3000:]]))) \
        == (413, "BODY_TOO_BIG")
    assert error_of(http("POST", "/mpub?topic=mpub_err_t", data=b"ok\n" + b"x" * (MAX_MSG + 1))) \
        == (413, "MSG_TOO_BIG")
    assert topic_stats(http, "mpub_err_t")["message_count"] == 0


def test_put_and_mput_aliases(http, node):
    """The introductions' `curl -d 'hello' 'http://127.0.0.1:4151/put?topic=test'`."""
    conn = subscribe(node, "put_t", "c")
    r = requests.post("http://%s/put?topic=put_t" % node.http_address, data="hello world 1", timeout=10)
    assert (r.status_code, r.text) == (200, "OK")
    assert conn.message()[3] == b"hello world 1"
    r = requests.post("http://%s/mput?topic=put_t" % node.http_address, data="m1\nm2", timeout=10)
    assert (r.status_code, r.text) == (200, "OK")
    assert [conn.message()[3] for _ in range(2)] == [b"m1", b"m2"]
    conn.close()
    assert error_of(http("POST", "/put", data=b"x")) == (400, "MISSING_ARG_TOPIC")
    wait_for(lambda: "/put is deprecated" in node.log_text() and "/mput is deprecated" in node.log_text(),
             message="deprecation warnings")
    http("POST", "/put?topic=put_t", data=b"again")
    assert node.log_text().count("/put is deprecated") == 1  # warned once, not per request


# ---------------------------------------------------------------- topics

def test_topic_create_and_errors(http, node):
    r = http("POST", "/topic/create?topic=create_t")
    assert (r.status_code, r.content) == (200, b"")
    assert topic_stats(http, "create_t")["topic_name"] == "create_t"
    wait_for(lambda: any(t["name"] == "create_t" for t in metadata(node)["topics"]), message="metadata")
    assert error_of(http("POST", "/topic/create")) == (400, "MISSING_ARG_TOPIC")
    assert error_of(http("POST", "/topic/create?topic=")) == (400, "INVALID_TOPIC")
    assert error_of(http("POST", "/topic/create?topic=a*")) == (400, "INVALID_TOPIC")
    assert error_of(http("GET", "/topic/create?topic=create_t")) == (405, "METHOD_NOT_ALLOWED")
    for action in ("delete", "pause", "unpause", "empty"):
        assert error_of(http("POST", "/topic/%s" % action)) == (400, "MISSING_ARG_TOPIC")
        assert error_of(http("POST", "/topic/%s?topic=nope_t" % action)) == (404, "TOPIC_NOT_FOUND")
    assert error_of(http("POST", "/topic/empty?topic=a*")) == (400, "INVALID_TOPIC")
    assert error_of(http("POST", "/topic/delete?topic=a*")) == (404, "TOPIC_NOT_FOUND")


def test_topic_pause_unpause_end_to_end(http, node):
    conn = subscribe(node, "tpause_t", "c")
    assert http("POST", "/topic/pause?topic=tpause_t").content == b""
    assert topic_stats(http, "tpause_t")["paused"] is True
    wait_for(lambda: any(t["name"] == "tpause_t" and t["paused"] for t in metadata(node)["topics"]),
             message="paused in nsqd.dat")
    http("POST", "/pub?topic=tpause_t", data=b"held")
    assert nothing_arrives(conn)
    assert topic_stats(http, "tpause_t")["depth"] == 1
    assert http("POST", "/topic/unpause?topic=tpause_t").status_code == 200
    assert conn.message()[3] == b"held"
    assert topic_stats(http, "tpause_t")["paused"] is False
    conn.close()


def test_topic_empty_end_to_end(http, node):
    http("POST", "/topic/create?topic=tempty_t")
    http("POST", "/mpub?topic=tempty_t", data=b"a\nb\nc")
    assert topic_stats(http, "tempty_t")["depth"] == 3
    assert http("POST", "/topic/empty?topic=tempty_t").status_code == 200
    assert topic_stats(http, "tempty_t")["depth"] == 0
    conn = subscribe(node, "tempty_t", "c")
    assert nothing_arrives(conn)
    conn.close()


def test_topic_delete_end_to_end(http, node):
    conn = subscribe(node, "tdelete_t", "c", rdy=0)
    http("POST", "/pub?topic=tdelete_t", data=b"gone")
    assert http("POST", "/topic/delete?topic=tdelete_t").content == b""
    conn.expect_closed()  # NSQ closes the clients of a deleted topic's channels
    assert stats(http, "tdelete_t")["topics"] is None
    wait_for(lambda: all(t["name"] != "tdelete_t" for t in metadata(node)["topics"]), message="metadata")
    assert error_of(http("POST", "/topic/delete?topic=tdelete_t")) == (404, "TOPIC_NOT_FOUND")


# ---------------------------------------------------------------- channels

def test_channel_create_and_errors(http):
    http("POST", "/topic/create?topic=chan_t")
    assert http("POST", "/channel/create?topic=chan_t&channel=made").content == b""
    assert channel_stats(http, "chan_t", "made")["channel_name"] == "made"
    for action in ("create", "delete", "empty", "pause", "unpause"):
        path = "/channel/" + action
        assert error_of(http("POST", path + "?channel=c")) == (400, "MISSING_ARG_TOPIC")
        assert error_of(http("POST", path + "?topic=a*&channel=c")) == (400, "INVALID_ARG_TOPIC")
        assert error_of(http("POST", path + "?topic=chan_t")) == (400, "MISSING_ARG_CHANNEL")
        assert error_of(http("POST", path + "?topic=chan_t&channel=a*")) == (400, "INVALID_ARG_CHANNEL")
        assert error_of(http("POST", path + "?topic=nope_t&channel=c")) == (404, "TOPIC_NOT_FOUND")
        if action != "create":
            assert error_of(http("POST", path + "?topic=chan_t&channel=zz")) == (404, "CHANNEL_NOT_FOUND")
        assert error_of(http("GET", path + "?topic=chan_t&channel=c")) == (405, "METHOD_NOT_ALLOWED")


def test_channel_pause_unpause_end_to_end(http, node):
    conn = subscribe(node, "cpause_t", "c")
    other = subscribe(node, "cpause_t", "other")
    assert http("POST", "/channel/pause?topic=cpause_t&channel=c").content == b""
    assert channel_stats(http, "cpause_t", "c")["paused"] is True
    http("POST", "/pub?topic=cpause_t", data=b"m")
    assert other.message()[3] == b"m"  # only the paused channel holds it
    assert nothing_arrives(conn)
    assert channel_stats(http, "cpause_t", "c")["depth"] == 1
    wait_for(lambda: any(c["name"] == "c" and c["paused"] for t in metadata(node)["topics"]
                         if t["name"] == "cpause_t" for c in t["channels"]), message="paused channel persisted")
    assert http("POST", "/channel/unpause?topic=cpause_t&channel=c").status_code == 200
    assert conn.message()[3] == b"m"
    conn.close()
    other.close()


def test_channel_empty_end_to_end(http, node):
    conn = subscribe(node, "cempty_t", "c", rdy=1)
    http("POST", "/mpub?topic=cempty_t", data=b"1\n2\n3")
    first = conn.message()
    wait_for(lambda: channel_stats(http, "cempty_t", "c").get("depth") == 2, message="2 queued")
    assert channel_stats(http, "cempty_t", "c")["in_flight_count"] == 1
    assert http("POST", "/channel/empty?topic=cempty_t&channel=c").content == b""
    c = channel_stats(http, "cempty_t", "c")
    assert (c["depth"], c["in_flight_count"]) == (0, 0)
    conn.send("FIN " + first[2].decode())  # no longer in flight: E_FIN_FAILED
    ft, data = conn.frame_skip_heartbeats()
    assert ft == wire.FRAME_TYPE_ERROR and data.startswith(b"E_FIN_FAILED")
    conn.send("RDY 10")
    assert nothing_arrives(conn)
    http("POST", "/pub?topic=cempty_t", data=b"after")
    assert conn.message()[3] == b"after"
    conn.close()


def test_channel_delete_end_to_end(http, node):
    conn = subscribe(node, "cdelete_t", "c")
    keep = subscribe(node, "cdelete_t", "keep")
    assert http("POST", "/channel/delete?topic=cdelete_t&channel=c").content == b""
    conn.expect_closed()
    assert channel_stats(http, "cdelete_t", "c") == {}
    http("POST", "/pub?topic=cdelete_t", data=b"still")
    assert keep.message()[3] == b"still"
    keep.close()
    assert error_of(http("POST", "/channel/delete?topic=cdelete_t&channel=c")) == (404, "CHANNEL_NOT_FOUND")


# ---------------------------------------------------------------- /config

def test_config_get(http, node):
    assert http("GET", "/config/nsqlookupd_tcp_addresses").json() == []
    assert http("GET", "/config/max_msg_size").json() == MAX_MSG
    assert http("GET", "/config/msg_timeout").json() == 60 * 10 ** 9
    assert http("GET", "/config/id").status_code == 200
    assert http("GET", "/config/deflate").json() is True
    assert http("GET", "/config/tls_min_version").json() == 0x0301
    assert http("GET", "/config/broadcast_http_port").json() == node.http_port
    r = http("GET", "/config/tcp_address")
    # the option as given (NSQ answers the flag's value, not the bound port)
    assert (r.content, r.headers["Content-Type"]) == (b"127.0.0.1:0", "text/plain; charset=utf-8")
    assert http("GET", "/config/statsd_prefix").text == "nsq.127_0_0_1_%d." % node.http_port
    r = http("GET", "/config/tls_cert")
    assert (r.status_code, r.content) == (200, b"") and "Content-Type" not in r.headers
    for name in ("bogus", "verbose", "node_id", "config", "version", "queue_scan_interval"):
        assert error_of(http("GET", "/config/" + name)) == (400, "INVALID_OPTION"), name


def test_config_put(http, node):
    r = http("PUT", "/config/log_level", data=b"debug")
    assert (r.status_code, r.json()) == (200, 1)
    http("GET", "/ping")
    wait_for(lambda: "DEBUG:" in node.log_text(), message="debug logging switched on")
    assert http("PUT", "/config/log_level", data=b"INFO").json() == 2
    assert http("GET", "/config/log_level").json() == 2
    assert error_of(http("PUT", "/config/log_level", data=b'"info"')) == (400, "INVALID_VALUE")
    assert error_of(http("PUT", "/config/log_level", data=b"bogus")) == (400, "INVALID_VALUE")
    assert error_of(http("PUT", "/config/log_level")) == (413, "INVALID_VALUE")
    assert error_of(http("PUT", "/config/log_level", data=b"x" * (MAX_MSG + 1))) == (413, "INVALID_VALUE")
    assert error_of(http("PUT", "/config/tcp_address", data=b'"x"')) == (400, "INVALID_OPTION")
    assert error_of(http("PUT", "/config/nsqlookupd_tcp_addresses", data=b'"x"')) == (400, "INVALID_VALUE")
    assert error_of(http("PUT", "/config/nsqlookupd_tcp_addresses", data=b"[1]")) == (400, "INVALID_VALUE")
    # a lookupd address nobody listens on: the node keeps trying in the background
    r = http("PUT", "/config/nsqlookupd_tcp_addresses", data=b'["127.0.0.1:9"]')
    assert (r.status_code, r.json()) == (200, ["127.0.0.1:9"])
    assert http("GET", "/config/nsqlookupd_tcp_addresses").json() == ["127.0.0.1:9"]
    assert http("PUT", "/config/nsqlookupd_tcp_addresses", data=b"[]").json() == []


def test_keep_alive_after_errors(node):
    """Error answers leave the connection usable (the unread body is drained)."""
    s = requests.Session()
    base = "http://%s" % node.http_address
    for _ in range(3):
        assert s.post(base + "/mpub", data=b"x" * 100, timeout=10).status_code == 400
        assert s.post(base + "/pub?topic=ka_t", data=b"x", timeout=10).status_code == 200
    s.close()


# ---------------------------------------------------------------- statuses a healthy node cannot reach

class StubNode:
    """Just enough of NSQD for the HTTP server: topics whose publishing fails as asked."""

    def __init__(self, failure: Exception) -> None:
        self.opts = Options()
        self.failure = failure
        self.health_error = "failed to write to backend"
        self.start_time = time.time()
        self.http_address = ("127.0.0.1", 0)
        self.tcp_address = ("127.0.0.1", 0)
        self.exit_event = threading.Event()

    def is_healthy(self) -> bool:
        return False

    def get_topic(self, name: str):
        return SimpleNamespace(name=name)

    def publish(self, topic_name, bodies, client=None):
        raise self.failure

    def get_existing_topic(self, name):
        raise self.failure

    def topic_list(self):
        return []

    def client_list(self):
        return []


@pytest.fixture
def stub_server():
    servers = []

    def start(failure: Exception) -> str:
        server = NSQDHTTPServer(("127.0.0.1", 0), StubNode(failure))
        t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                             name="test-http-stub", daemon=True)
        t.start()
        servers.append((server, t))
        return "http://127.0.0.1:%d" % server.server_address[1]

    yield start
    for server, t in servers:
        server.shutdown()
        server.server_close()
        t.join(5)


@pytest.mark.parametrize("failure", [ExitingError("exiting"), BackendError("disk full")])
def test_publish_failure_is_503_exiting(stub_server, failure):
    base = stub_server(failure)
    for path in ("/pub?topic=t", "/mpub?topic=t"):
        r = requests.post(base + path, data=b"x", timeout=10)
        assert error_of(r) == (503, "EXITING")


def test_unexpected_error_is_500_internal_error(stub_server):
    base = stub_server(RuntimeError("bug"))
    assert error_of(requests.post(base + "/pub?topic=t", data=b"x", timeout=10)) == (500, "INTERNAL_ERROR")
    assert error_of(requests.post(base + "/topic/pause?topic=t", timeout=10)) == (500, "INTERNAL_ERROR")


def test_unhealthy_ping_is_500_with_the_reason(stub_server):
    base = stub_server(RuntimeError("unused"))
    r = requests.get(base + "/ping", timeout=10)
    assert (r.status_code, r.text) == (500, "NOK - failed to write to backend")
    assert requests.get(base + "/stats?format=json", timeout=10).json()["health"] \
        == "NOK - failed to write to backend"
