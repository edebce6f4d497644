"""GET /stats: NSQ's JSON shape field by field, its filters, and the text page.

One node with e2e latency percentiles runs for the module; a producer and a
consumer connected over raw V2 sockets give the clients and producers
sections real values.
"""
from __future__ import annotations

import re
import time

import pytest
import requests

from nsqd_sync import stats as stats_mod
from nsqd_sync import wire
from tests.helpers import NodeProcess, RawConn, wait_for

pytestmark = pytest.mark.timeout(60)

TOP_KEYS = ["version", "health", "start_time", "topics", "memory", "producers"]
TOPIC_KEYS = ["topic_name", "channels", "depth", "backend_depth", "message_count", "message_bytes", "paused",
              "e2e_processing_latency"]
CHANNEL_KEYS = ["channel_name", "depth", "backend_depth", "in_flight_count", "deferred_count", "message_count",
                "requeue_count", "timeout_count", "client_count", "clients", "paused", "e2e_processing_latency"]
CLIENT_KEYS = ["client_id", "hostname", "version", "remote_address", "state", "ready_count", "in_flight_count",
               "message_count", "finish_count", "requeue_count", "connect_ts", "sample_rate", "deflate", "snappy",
               "user_agent", "tls", "tls_cipher_suite", "tls_version", "tls_negotiated_protocol",
               "tls_negotiated_protocol_is_mutual"]
MEMORY_KEYS = ["heap_objects", "heap_idle_bytes", "heap_in_use_bytes", "heap_released_bytes", "gc_pause_usec_100",
               "gc_pause_usec_99", "gc_pause_usec_95", "next_gc_bytes", "gc_total_runs"]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = NodeProcess("nsqd", args=["--e2e-processing-latency-percentile=0.99,0.5",
                                  "--e2e-processing-latency-window-time=30s"],
                    data_path=str(tmp_path_factory.mktemp("stats")))
    yield n
    n.stop()


def get(node, query: str) -> requests.Response:
    r = requests.get("http://%s/stats%s" % (node.http_address, query), timeout=10)
    assert r.status_code == 200
    return r


def get_json(node, query: str = "") -> dict:
    r = get(node, "?format=json" + query)
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    return r.json()


@pytest.fixture(scope="module")
def scene(node):
    """A producer on two topics; a consumer on st_a/ch with one message in flight, one finished late."""
    producer = RawConn(node.tcp_port, timeout=10.0)
    producer.identify(client_id="prod-1", hostname="prodhost", user_agent="test-producer/1.0")
    consumer = RawConn(node.tcp_port, timeout=10.0)
    consumer.identify(client_id="cons-1", hostname="conshost", user_agent="test-consumer/2.0", sample_rate=0)
    consumer.send("SUB st_a ch")
    assert consumer.frame_skip_heartbeats() == (wire.FRAME_TYPE_RESPONSE, b"OK")
    requests.post("http://%s/channel/create?topic=st_a&channel=other" % node.http_address, timeout=10)
    producer.send("MPUB st_a", wire.mpub_body([b"m1", b"m22", b"m333"]))
    assert producer.frame() == (wire.FRAME_TYPE_RESPONSE, b"OK")
    producer.send("PUB st_b", b"bee")
    assert producer.frame() == (wire.FRAME_TYPE_RESPONSE, b"OK")
    consumer.send("RDY 2")
    held = [consumer.message() for _ in range(2)]
    time.sleep(0.25)  # the e2e latency of the finished message is at least this
    consumer.send("FIN " + held[0][2].decode())
    consumer.message()  # RDY 2 with one FIN'd: the third message goes out

    def ch():
        return get_json(node, "&topic=st_a&channel=ch")["topics"][0]["channels"][0]

    wait_for(lambda: ch()["e2e_processing_latency"]["count"] == 1 and ch()["in_flight_count"] == 2,
             message="FIN recorded")
    yield {"producer": producer, "consumer": consumer}
    producer.close()
    consumer.close()


def test_json_shape_field_by_field(node, scene):
    data = get_json(node)
    assert list(data) == TOP_KEYS
    assert data["version"] == "1.3.0"
    assert data["health"] == "OK"
    assert abs(data["start_time"] - time.time()) < 300
    assert list(data["memory"]) == MEMORY_KEYS
    assert all(isinstance(v, int) and v >= 0 for v in data["memory"].values())

    names = [t["topic_name"] for t in data["topics"]]
    assert names == sorted(names) and {"st_a", "st_b"} <= set(names)
    a = next(t for t in data["topics"] if t["topic_name"] == "st_a")
    assert list(a) == TOPIC_KEYS
    assert (a["depth"], a["backend_depth"], a["message_count"], a["message_bytes"], a["paused"]) == (0, 0, 3, 9, False)
    assert [c["channel_name"] for c in a["channels"]] == ["ch", "other"]
    ch, other = a["channels"]
    assert list(ch) == CHANNEL_KEYS
    assert (ch["depth"], ch["backend_depth"], ch["in_flight_count"], ch["deferred_count"], ch["message_count"],
            ch["requeue_count"], ch["timeout_count"], ch["client_count"], ch["paused"]) == \
        (0, 0, 2, 0, 3, 0, 0, 1, False)
    assert (other["depth"], other["client_count"], other["clients"]) == (3, 0, [])

    [client] = ch["clients"]
    assert list(client) == CLIENT_KEYS
    assert (client["client_id"], client["hostname"], client["version"], client["user_agent"]) == \
        ("cons-1", "conshost", "V2", "test-consumer/2.0")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", client["remote_address"])
    assert client["state"] == 3  # NSQ's stateSubscribed
    assert (client["ready_count"], client["in_flight_count"], client["message_count"], client["finish_count"],
            client["requeue_count"]) == (2, 2, 3, 1, 0)
    assert abs(client["connect_ts"] - time.time()) < 60
    assert (client["sample_rate"], client["deflate"], client["snappy"], client["tls"]) == (0, False, False, False)
    assert (client["tls_cipher_suite"], client["tls_version"], client["tls_negotiated_protocol"],
            client["tls_negotiated_protocol_is_mutual"]) == ("", "", "", False)

    [producer] = data["producers"]
    assert list(producer) == CLIENT_KEYS[:15] + ["pub_counts"] + CLIENT_KEYS[15:]
    assert (producer["client_id"], producer["hostname"], producer["user_agent"], producer["state"]) == \
        ("prod-1", "prodhost", "test-producer/1.0", 0)
    # NSQ 1.3.0 lists one pub count per producer (the first topic it finds)
    assert len(producer["pub_counts"]) == 1
    assert producer["pub_counts"][0] in ({"topic": "st_a", "count": 3}, {"topic": "st_b", "count": 1})


def test_e2e_processing_latency(node, scene):
    a = get_json(node, "&topic=st_a")["topics"][0]
    ch, other = a["channels"]
    e2e = ch["e2e_processing_latency"]
    assert e2e["count"] == 1
    assert [p["quantile"] for p in e2e["percentiles"]] == [0.99, 0.5]
    for p in e2e["percentiles"]:
        assert 0.2e9 <= p["value"] <= 10e9, p  # held >= 250 ms before FIN
    # a channel without FINs reports zeros; the topic merges its channels
    assert other["e2e_processing_latency"] == {"count": 0, "percentiles": [{"quantile": 0.99, "value": 0},
                                                                           {"quantile": 0.5, "value": 0}]}
    assert a["e2e_processing_latency"]["count"] == 1
    assert a["e2e_processing_latency"]["percentiles"] == e2e["percentiles"]
    # a topic without channels has no stream at all (NSQ's null percentiles)
    b = get_json(node, "&topic=st_b")["topics"][0]
    assert b["e2e_processing_latency"] == {"count": 0, "percentiles": None}


def test_filters(node, scene):
    only_a = get_json(node, "&topic=st_a&include_mem=false")
    assert list(only_a) == ["version", "health", "start_time", "topics", "producers"]
    assert [t["topic_name"] for t in only_a["topics"]] == ["st_a"]
    assert only_a["producers"][0]["pub_counts"] == [{"topic": "st_a", "count": 3}]
    one_channel = get_json(node, "&topic=st_a&channel=other")["topics"][0]
    assert [c["channel_name"] for c in one_channel["channels"]] == ["other"]
    assert get_json(node, "&topic=st_a&channel=missing")["topics"] == []
    assert get_json(node, "&topic=missing")["topics"] is None
    assert get_json(node, "&topic=")["topics"] is not None  # empty means all
    no_clients = get_json(node, "&topic=st_a&include_clients=false&include_mem=0")
    assert no_clients["producers"] is None
    assert all(c["clients"] is None for c in no_clients["topics"][0]["channels"])
    assert no_clients["topics"][0]["channels"][0]["client_count"] == 1
    # unknown boolean values mean true, as in NSQ
    assert "memory" in get_json(node, "&include_mem=maybe")


def test_counters_follow_requeue_timeout_defer_and_pause(node):
    conn = RawConn(node.tcp_port, timeout=10.0)
    conn.identify(msg_timeout=1000)
    conn.send("SUB st_c ch")
    assert conn.frame_skip_heartbeats() == (wire.FRAME_TYPE_RESPONSE, b"OK")
    conn.send("RDY 5")
    base = "http://%s" % node.http_address
    requests.post(base + "/mpub?topic=st_c", data=b"r\nt", timeout=10)
    first, second = conn.message(), conn.message()
    conn.send("REQ %s 0" % first[2].decode())
    requeued = conn.message()
    assert requeued[2] == first[2] and requeued[1] == 2
    conn.send("FIN " + requeued[2].decode())
    timed_out = conn.message()  # the other one comes back after msg_timeout (1s)
    assert timed_out[2] == second[2]
    conn.send("FIN " + timed_out[2].decode())
    requests.post(base + "/pub?topic=st_c&defer=60000", data=b"later", timeout=10)
    requests.post(base + "/channel/pause?topic=st_c&channel=ch", timeout=10)

    def channel():
        return get_json(node, "&topic=st_c")["topics"][0]["channels"][0]

    wait_for(lambda: channel()["in_flight_count"] == 0 and channel()["deferred_count"] == 1, message="settled")
    c = channel()
    assert (c["message_count"], c["requeue_count"], c["timeout_count"], c["deferred_count"], c["paused"]) == \
        (3, 1, 1, 1, True)
    assert c["clients"][0]["requeue_count"] == 1 and c["clients"][0]["finish_count"] == 2
    conn.close()


def test_text_format(node, scene):
    r = get(node, "?topic=st_a")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    lines = r.text.split("\n")
    assert re.fullmatch(r"nsqd v1\.3\.0\S* \(built w/[a-z0-9.-]+\)", lines[0])
    assert re.fullmatch(r"start_time \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", lines[1])
    assert re.fullmatch(r"uptime [0-9hms.µ]+", lines[2])
    assert lines[3:5] == ["", "Health: OK"]
    assert lines[5:7] == ["", "Memory:"]
    assert [line.split()[0] for line in lines[7:16]] == MEMORY_KEYS
    assert lines[16:18] == ["", "Topics:"]
    assert re.fullmatch(r"   \[st_a           \] depth: 0     be-depth: 0     msgs: 3        e2e%: "
                        r"[0-9.]+(ns|us|ms|s), [0-9.]+(ns|us|ms|s)", lines[18])
    assert re.fullmatch(r"      \[ch                       \] depth: 0     be-depth: 0     inflt: 2    def: 0    "
                        r"re-q: 0     timeout: 0     msgs: 3        e2e%: \S+, \S+", lines[19])
    assert re.fullmatch(r"        \[V2 conshost:\d+ test-consumer/2\.0 *\] state: 3 inflt: 2    rdy: 2    "
                        r"fin: 1        re-q: 0        msgs: 3        connected: \d+s", lines[20])
    assert lines[21].startswith("      [other                    ] depth: 3 ")
    assert lines[22:24] == ["", "Producers:"]
    assert re.fullmatch(r"   \[V2 prodhost:\d+ test-producer/1\.0 *\] msgs: 3        topics: st_a=3 "
                        r"connected: \d+s", lines[24])
    assert lines[25:] == [""]
    empty = get(node, "?topic=missing&include_mem=0&include_clients=0").text
    assert empty.endswith("\nHealth: OK\n\nTopics: None\n\nProducers: None\n")


def test_paused_markers_in_text(node):
    base = "http://%s" % node.http_address
    assert requests.post(base + "/topic/create?topic=st_p", timeout=10).ok
    assert requests.post(base + "/channel/create?topic=st_p&channel=pc", timeout=10).ok
    requests.post(base + "/topic/pause?topic=st_p", timeout=10)
    requests.post(base + "/channel/pause?topic=st_p&channel=pc", timeout=10)
    text = get(node, "?topic=st_p&include_mem=0").text
    assert "\n*P [st_p           ] depth: 0" in text
    assert "\n   *P [pc                       ] depth: 0" in text


def test_client_line_layout():
    consumer = {"version": "V2", "remote_address": "127.0.0.1:56286", "hostname": "h2", "user_agent": "ua/2",
                "state": 3, "in_flight_count": 0, "ready_count": 5, "finish_count": 0, "requeue_count": 0,
                "message_count": 0, "connect_ts": 100}
    assert stats_mod.client_line(consumer, 100.5) == (
        "[V2 h2:56286 ua/2        ] state: 3 inflt: 0    rdy: 5    fin: 0        re-q: 0        msgs: 0        "
        "connected: 0s")
    producer = dict(consumer, hostname="h1", remote_address="127.0.0.1:56278", user_agent="ua/1",
                    pub_counts=[{"topic": "t1", "count": 1}])
    assert stats_mod.client_line(producer, 165) == \
        "[V2 h1:56278 ua/1        ] msgs: 1        topics: t1=1 connected: 1m5s"
