"""nsqadmin's JSON API over a real cluster (one nsqlookupd, two nsqd) on loopback.

The key lists below are the JSON shapes the real nsqadmin 1.3.0 answers
(field order included), settled by running it over the same cluster.
"""
from __future__ import annotations

import base64
import signal
import time

import pytest
import requests

from tests.helpers import wait_for
from tests.server.nsqadmin_cluster import Cluster, NotificationSink, admin_url

pytestmark = pytest.mark.timeout(180)

TOPIC_KEYS = ["node", "hostname", "topic_name", "depth", "memory_depth", "backend_depth",
              "message_count", "nodes", "channels", "paused", "e2e_processing_latency"]
CHANNEL_KEYS = ["node", "hostname", "topic_name", "channel_name", "depth", "memory_depth",
                "backend_depth", "in_flight_count", "deferred_count", "requeue_count", "timeout_count",
                "message_count", "client_count", "nodes", "clients", "paused", "e2e_processing_latency"]
CLIENT_KEYS = ["node", "remote_address", "version", "client_id", "hostname", "user_agent", "connect_ts",
               "connected", "in_flight_count", "ready_count", "finish_count", "requeue_count",
               "message_count", "sample_rate", "deflate", "snappy", "authed", "auth_identity",
               "auth_identity_url", "tls", "tls_cipher_suite", "tls_version", "tls_negotiated_protocol",
               "tls_negotiated_protocol_is_mutual"]
PRODUCER_KEYS = ["remote_addresses", "remote_address", "hostname", "broadcast_address", "tcp_port",
                 "http_port", "version", "topics", "out_of_date"]
E2E_KEYS = ["count", "percentiles", "topic", "channel", "host"]


@pytest.fixture(scope="module")
def sink():
    s = NotificationSink()
    yield s
    s.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, sink):
    c = Cluster(tmp_path_factory)
    try:
        c.admin_proc = c.admin("--notification-http-endpoint=" + sink.url, "--trend-interval=500ms")
        yield c
    finally:
        c.stop()


def api(cluster, path, method="GET", **kw):
    r = requests.request(method, admin_url(cluster.admin_proc, path), timeout=15, **kw)
    return r.status_code, (r.json() if r.headers.get("Content-Type", "").startswith("application/json") else r.text)


def test_ping_and_unknown_paths(cluster):
    r = requests.get(admin_url(cluster.admin_proc, "/ping"), timeout=5)
    assert (r.status_code, r.text) == (200, "OK")
    assert api(cluster, "/no/such/path") == (404, {"message": "NOT_FOUND"})
    assert api(cluster, "/api/nodes", "POST")[0] == 405
    r = requests.get(admin_url(cluster.admin_proc, "/api/topics/"), allow_redirects=False, timeout=5)
    assert r.status_code == 301 and r.headers["Location"] == "/api/topics"


def test_topics_nodes_topic_channel_and_counter_shapes(cluster, consumers):
    cluster.make_topic("adm_shapes", ["c1", "c2"], messages=3)
    consumer = consumers("adm_shapes", "c1", lambda m: None, client_id="shape-client",
                         nsqd_tcp_addresses=[n.tcp_address for n in cluster.nodes], max_in_flight=10)
    consumer.start()
    wait_for(lambda: all((cluster.node_channel(n, "adm_shapes", "c1") or {}).get("client_count") == 1
                         for n in cluster.nodes), 15, message="consumer on both nodes")

    code, doc = api(cluster, "/api/topics")
    assert code == 200 and list(doc) == ["topics", "message"] and doc["message"] == ""
    assert "adm_shapes" in doc["topics"] and doc["topics"] == sorted(doc["topics"])

    code, doc = api(cluster, "/api/nodes")
    assert code == 200 and list(doc) == ["nodes", "message"]
    ports = sorted(n["http_port"] for n in doc["nodes"])
    assert ports == sorted(n.http_port for n in cluster.nodes)
    for node in doc["nodes"]:
        assert list(node) == PRODUCER_KEYS
        assert node["broadcast_address"] == "127.0.0.1" and node["version"] == "1.3.0"
        assert len(node["remote_addresses"]) == 1 and node["remote_addresses"][0].startswith(
            cluster.lookupd.http_address + "/")
        assert {"topic": "adm_shapes", "tombstoned": False} in node["topics"]

    code, doc = api(cluster, "/api/topics/adm_shapes")
    assert code == 200 and list(doc) == TOPIC_KEYS + ["message"]
    assert doc["node"] == "*" and doc["hostname"] == "" and doc["topic_name"] == "adm_shapes"
    assert doc["message_count"] == 6 and len(doc["nodes"]) == 2
    assert sorted(n["node"] for n in doc["nodes"]) == sorted(n.http_address for n in cluster.nodes)
    assert list(doc["e2e_processing_latency"]) == E2E_KEYS
    assert doc["e2e_processing_latency"]["host"] == "*" and doc["e2e_processing_latency"]["topic"] == "adm_shapes"
    channels = {c["channel_name"]: c for c in doc["channels"]}
    assert set(channels) == {"c1", "c2"}
    assert list(channels["c2"]) == CHANNEL_KEYS and channels["c2"]["node"] == "*"
    assert channels["c2"]["depth"] == 6 and channels["c2"]["message_count"] == 6
    assert channels["c1"]["client_count"] == 2

    wait_for(lambda: api(cluster, "/api/topics/adm_shapes/c1")[1]["depth"] == 0, 15,
             message="c1 drained by the consumer")
    code, doc = api(cluster, "/api/topics/adm_shapes/c1")
    assert code == 200 and list(doc) == CHANNEL_KEYS + ["message"]
    assert doc["node"] == "*" and doc["message_count"] == 6 and doc["client_count"] == 2
    assert len(doc["nodes"]) == 2 and all(list(n) == CHANNEL_KEYS for n in doc["nodes"])
    assert len(doc["clients"]) == 2
    for client in doc["clients"]:
        assert list(client) == CLIENT_KEYS
        assert client["client_id"] == "shape-client" and client["version"] == "V2"
        assert client["node"] in {n.http_address for n in cluster.nodes}
        assert client["connected"] % 1_000_000_000 == 0 and client["connected"] >= 0

    assert api(cluster, "/api/topics/adm_shapes/nochannel") == (200, {"message": ""})

    node = cluster.nodes[0].http_address
    code, doc = api(cluster, "/api/nodes/" + node)
    assert code == 200 and list(doc) == ["node", "topics", "total_messages", "total_clients", "message"]
    assert doc["node"] == node and doc["total_clients"] >= 1
    mine = [t for t in doc["topics"] if t["topic_name"] == "adm_shapes"]
    assert len(mine) == 1 and mine[0]["node"] == node and mine[0]["message_count"] == 3
    assert api(cluster, "/api/nodes/127.0.0.1:1") == (404, {"message": "NODE_NOT_FOUND"})

    code, doc = api(cluster, "/api/counter")
    assert code == 200 and list(doc) == ["stats", "message"]
    for n in cluster.nodes:
        entry = doc["stats"]["adm_shapes:c1:%s" % n.http_address]
        assert entry == {"node": n.http_address, "topic_name": "adm_shapes", "channel_name": "c1",
                         "message_count": 3}


def test_unknown_topic_is_an_upstream_error(cluster):
    code, doc = api(cluster, "/api/topics/adm_no_such_topic")
    assert code == 502
    assert doc["message"].startswith("UPSTREAM_ERROR: failed to query any nsqlookupd: got response 404")
    assert "TOPIC_NOT_FOUND" in doc["message"]
    code, doc = api(cluster, "/api/topics/adm_no_such_topic", "POST", json={"action": "pause"})
    assert code == 502 and doc["message"].startswith("UPSTREAM_ERROR: ")


def test_actions_reach_every_node(cluster, sink):
    cluster.make_topic("adm_act", ["c1", "c2"], messages=2)
    n1, n2 = cluster.nodes

    assert api(cluster, "/api/topics/adm_act", "POST", json={"action": "pause"}) == (200, {"message": ""})
    assert all(cluster.node_topic(n, "adm_act")["paused"] for n in (n1, n2))
    assert api(cluster, "/api/topics/adm_act", "POST", json={"action": "unpause"})[0] == 200
    assert not any(cluster.node_topic(n, "adm_act")["paused"] for n in (n1, n2))

    assert api(cluster, "/api/topics/adm_act/c1", "POST", json={"action": "pause"})[0] == 200
    for n in (n1, n2):
        assert cluster.node_channel(n, "adm_act", "c1")["paused"]
        assert not cluster.node_channel(n, "adm_act", "c2")["paused"]
    assert api(cluster, "/api/topics/adm_act/c1", "POST", json={"action": "unpause"})[0] == 200
    assert not any(cluster.node_channel(n, "adm_act", "c1")["paused"] for n in (n1, n2))

    assert all(cluster.node_channel(n, "adm_act", "c1")["depth"] == 2 for n in (n1, n2))
    assert api(cluster, "/api/topics/adm_act/c1", "POST", json={"action": "empty"})[0] == 200
    for n in (n1, n2):
        assert cluster.node_channel(n, "adm_act", "c1")["depth"] == 0
        assert cluster.node_channel(n, "adm_act", "c2")["depth"] == 2

    requests.post("http://%s/topic/pause" % n1.http_address, params={"topic": "adm_act"}, timeout=5)
    for n in (n1, n2):
        requests.post("http://%s/pub" % n.http_address, params={"topic": "adm_act"}, data=b"x", timeout=5)
    assert cluster.node_topic(n1, "adm_act")["depth"] == 1
    assert api(cluster, "/api/topics/adm_act", "POST", json={"action": "empty"})[0] == 200
    assert all(cluster.node_topic(n, "adm_act")["depth"] == 0 for n in (n1, n2))

    assert api(cluster, "/api/topics/adm_act/c2", "DELETE") == (200, {"message": ""})
    for n in (n1, n2):
        assert [c["channel_name"] for c in cluster.node_topic(n, "adm_act")["channels"]] == ["c1"]
    assert api(cluster, "/api/topics/adm_act", "DELETE") == (200, {"message": ""})
    assert cluster.node_topic(n1, "adm_act") is None and cluster.node_topic(n2, "adm_act") is None
    wait_for(lambda: "adm_act" not in (api(cluster, "/api/topics")[1]["topics"] or []), 10,
             message="topic gone from lookupd")

    for action in ("pause_topic", "unpause_topic", "pause_channel", "unpause_channel", "empty_channel",
                   "empty_topic", "delete_channel", "delete_topic"):
        sink.wait_for_action(action, "adm_act")


def test_action_on_missing_channel_warns_per_node(cluster):
    cluster.make_topic("adm_warn", ["c1"])
    code, doc = api(cluster, "/api/topics/adm_warn/nochan", "POST", json={"action": "pause"})
    assert code == 200
    assert doc["message"].startswith("WARNING: got response 404 Not Found ")
    assert doc["message"].count("CHANNEL_NOT_FOUND") == 2


def test_create_topic_and_channel(cluster, sink):
    cluster.make_topic("adm_create")
    code, doc = api(cluster, "/api/topics", "POST", json={"topic": "adm_create", "channel": "newch"})
    assert (code, doc) == (200, {"message": ""})
    for n in cluster.nodes:
        assert cluster.node_channel(n, "adm_create", "newch") is not None
    r = requests.get("http://%s/channels" % cluster.lookupd.http_address, params={"topic": "adm_create"}, timeout=5)
    assert "newch" in r.json()["channels"]

    code, doc = api(cluster, "/api/topics", "POST", json={"topic": "adm_lookupd_only"})
    assert code == 200
    assert "adm_lookupd_only" in api(cluster, "/api/topics")[1]["topics"]
    code, doc = api(cluster, "/api/topics?inactive=true")
    assert code == 200 and doc["topics"].get("adm_lookupd_only", "missing") is None

    create = sink.wait_for_action("create_channel", "adm_create")
    assert create["channel"] == "newch"


@pytest.mark.parametrize("body,message", [
    (b"", "EOF"),
    (b"xx", "invalid character 'x' looking for beginning of value"),
    (b'{"topic": 1}', "json: cannot unmarshal number into Go struct field .topic of type string"),
    (b'{"topic": "bad/name"}', "INVALID_TOPIC"),
    (b'{"topic": ""}', "INVALID_TOPIC"),
    (b'{"topic": "ok", "channel": "b/c"}', "INVALID_CHANNEL"),
])
def test_create_rejects_bad_bodies(cluster, body, message):
    assert api(cluster, "/api/topics", "POST", data=body) == (400, {"message": message})


def test_action_rejects_bad_bodies(cluster):
    cluster.make_topic("adm_badbody")
    assert api(cluster, "/api/topics/adm_badbody", "POST", json={"topic": "x"}) == (
        400, {"message": "INVALID_ACTION"})
    assert api(cluster, "/api/topics/adm_badbody", "POST", json={"ACTION": "bogus"}) == (
        400, {"message": "INVALID_ACTION"})
    assert api(cluster, "/api/topics/adm_badbody", "POST", data=b"") == (400, {"message": "EOF"})
    assert api(cluster, "/api/nodes/" + cluster.nodes[0].http_address, "DELETE") == (
        400, {"message": "INVALID_BODY"})
    assert api(cluster, "/api/nodes/" + cluster.nodes[0].http_address, "DELETE",
               json={"topic": "bad/t"}) == (400, {"message": "INVALID_TOPIC"})


def test_tombstone_topic_on_one_node(cluster, sink):
    cluster.make_topic("adm_tomb", ["c1"])
    n1, n2 = cluster.nodes
    code, doc = api(cluster, "/api/nodes/" + n1.http_address, "DELETE", json={"topic": "adm_tomb"})
    assert (code, doc) == (200, {"message": ""})
    assert cluster.node_topic(n1, "adm_tomb") is None
    assert cluster.node_topic(n2, "adm_tomb") is not None
    nodes = requests.get("http://%s/nodes" % cluster.lookupd.http_address, timeout=5).json()["producers"]
    mine = [p for p in nodes if p["http_port"] == n1.http_port][0]
    if "adm_tomb" in mine["topics"]:
        assert mine["tombstones"][mine["topics"].index("adm_tomb")] is True
    doc = sink.wait_for_action("tombstone_topic_producer", "adm_tomb")
    assert doc["node"] == n1.http_address


def test_notification_shape(cluster, sink):
    cluster.make_topic("adm_notify", ["c1"])
    auth = "Basic " + base64.b64encode(b"bob:secret").decode()
    code, _ = api(cluster, "/api/topics/adm_notify/c1?x=1", "POST", json={"action": "pause"},
                  headers={"User-Agent": "notify-test/1.0", "Authorization": auth})
    assert code == 200
    doc = sink.wait_for_action("pause_channel", "adm_notify")
    assert list(doc) == ["action", "topic", "channel", "timestamp", "user", "remote_ip", "user_agent",
                         "url", "via"]
    assert doc["channel"] == "c1" and doc["user"] == "bob" and doc["user_agent"] == "notify-test/1.0"
    assert doc["url"] == "http://%s/api/topics/adm_notify/c1?x=1" % cluster.admin_proc.http_address
    assert doc["remote_ip"].startswith("127.0.0.1:") and abs(doc["timestamp"] - time.time()) < 120
    assert doc["via"]

    code, _ = api(cluster, "/api/topics/adm_notify", "POST", json={"action": "pause"})
    doc = sink.wait_for_action("pause_topic", "adm_notify")
    assert "channel" not in doc and "node" not in doc and "user" not in doc


def test_config_endpoint(cluster):
    assert api(cluster, "/config/nsqlookupd_http_addresses") == (200, [cluster.lookupd.http_address])
    assert api(cluster, "/config/nsqd_http_addresses") == (200, [])
    assert api(cluster, "/config/admin_users") == (200, [])
    assert api(cluster, "/config/statsd_interval") == (200, 60_000_000_000)
    assert api(cluster, "/config/log_level") == (200, 2)
    r = requests.get(admin_url(cluster.admin_proc, "/config/acl_http_header"), timeout=5)
    assert (r.status_code, r.text) == (200, "X-Forwarded-User")
    assert api(cluster, "/config/bogus") == (400, {"message": "INVALID_OPTION"})
    assert api(cluster, "/config/log_level", "PUT", data=b"warn") == (200, 3)
    assert api(cluster, "/config/log_level", "PUT", data=b"loud") == (400, {"message": "INVALID_VALUE"})
    assert api(cluster, "/config/log_level", "PUT", data=b"") == (413, {"message": "INVALID_VALUE"})
    assert api(cluster, "/config/http_address", "PUT", data=b"x") == (400, {"message": "INVALID_OPTION"})
    assert api(cluster, "/config/log_level", "PUT", data=b"info") == (200, 2)
    addrs = '["%s"]' % cluster.lookupd.http_address
    assert api(cluster, "/config/nsqlookupd_http_addresses", "PUT", data=addrs.encode()) == (
        200, [cluster.lookupd.http_address])


def test_graphite_arguments(cluster):
    assert api(cluster, "/api/graphite") == (400, {"message": "INVALID_ARG_METRIC"})
    assert api(cluster, "/api/graphite?metric=rate") == (400, {"message": "INVALID_ARG_TARGET"})


def test_nsqd_mode_partial_results_when_a_node_is_down(cluster):
    """--nsqd-http-address with one dead address: the live node's data and NSQ's warning."""
    cluster.make_topic("adm_partial", ["c1"], messages=1)
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()  # nothing listens there now
    live = cluster.nodes[0].http_address
    admin = cluster._start("nsqadmin", ["--nsqd-http-address=" + live, "--nsqd-http-address=" + dead],
                           tcp=None)
    try:
        r = requests.get(admin_url(admin, "/api/topics"), timeout=15)
        doc = r.json()
        assert r.status_code == 200 and "adm_partial" in doc["topics"]
        assert doc["message"].startswith("WARNING: ") and dead in doc["message"]
        r = requests.get(admin_url(admin, "/api/topics/adm_partial"), timeout=15)
        doc = r.json()
        assert r.status_code == 200 and doc["message_count"] == 1 and len(doc["nodes"]) == 1
        assert doc["message"].startswith("WARNING: ")
        r = requests.get(admin_url(admin, "/api/nodes"), timeout=15)
        assert r.status_code == 200 and len(r.json()["nodes"]) == 1
        assert r.json()["nodes"][0]["remote_addresses"] is None
        page = requests.get(admin_url(admin, "/"), timeout=15)
        assert page.status_code == 200 and "adm_partial" in page.text and 'id="warnings"' in page.text
    finally:
        admin.kill()

    only_dead = cluster._start("nsqadmin", ["--nsqd-http-address=" + dead], tcp=None)
    try:
        r = requests.get(admin_url(only_dead, "/api/topics"), timeout=15)
        assert r.status_code == 502
        assert r.json()["message"].startswith("UPSTREAM_ERROR: failed to query any nsqd: ")
        page = requests.get(admin_url(only_dead, "/"), timeout=15)
        assert page.status_code == 502 and 'id="error"' in page.text
    finally:
        only_dead.kill()


def test_hung_node_does_not_hang_pages(cluster):
    """A stopped (SIGSTOP) nsqd accepts connections but never answers: timeouts give partial results."""
    cluster.make_topic("adm_hung", ["c1"], messages=1)
    admin = cluster._start("nsqadmin", ["--lookupd-http-address=" + cluster.lookupd.http_address,
                                        "--http-client-connect-timeout=1s",
                                        "--http-client-request-timeout=1s"], tcp=None)
    hung = cluster.nodes[1]
    hung.proc.send_signal(signal.SIGSTOP)
    try:
        r = requests.get(admin_url(admin, "/api/topics/adm_hung"), timeout=30)
        doc = r.json()
        assert r.status_code == 200 and doc["message"].startswith("WARNING: ")
        assert [n["node"] for n in doc["nodes"]] == [cluster.nodes[0].http_address]
        page = requests.get(admin_url(admin, "/topics/adm_hung"), timeout=30)
        assert page.status_code == 200 and 'id="warnings"' in page.text
        assert 'data-node="%s"' % cluster.nodes[0].http_address in page.text
    finally:
        hung.proc.send_signal(signal.SIGCONT)
        admin.kill()
