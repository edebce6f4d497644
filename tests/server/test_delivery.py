"""Delivery semantics over real sockets: RDY flow control, msg timeouts and
redelivery, REQ and DPUB delays, TOUCH, heartbeats, channels (copy / share),
messages waiting in a topic, ephemeral topics and channels, pausing.

Times are kept short with IDENTIFY msg_timeout=1000 and heartbeat_interval=1000
(the smallest values NSQ accepts); every wait has a deadline.
"""
from __future__ import annotations

import json
import re
import threading
import time
from typing import Dict, List, Optional, Set

import pytest

from nsqd_sync import wire
from tests.conftest import Msg, ProtoConn
from tests.helpers import NodeProcess, http_request, wait_for

pytestmark = pytest.mark.timeout(60)

HEX_ID = re.compile(rb"^[0-9a-f]{16}$")

# Upper bound for "delivered after the delay": NSQ's queue scanner picks up a new
# channel only every 5s (QueueScanRefreshInterval), so a timeout may fire that late.
LATE = 8.0


def stats_channels(node: NodeProcess, topic: str) -> Optional[Set[str]]:
    """Channel names of topic from /stats, or None while /stats is not served."""
    status, body, _ = http_request(node.http_port, "/stats?format=json&topic=" + topic)
    if status != 200:
        return None
    data = json.loads(body)
    data = data.get("data", data)  # old v0 shape
    for t in data.get("topics") or []:
        if t["topic_name"] == topic:
            return {c["channel_name"] for c in t.get("channels") or []}
    return set()


def stats_topics(node: NodeProcess) -> Optional[Set[str]]:
    status, body, _ = http_request(node.http_port, "/stats?format=json")
    if status != 200:
        return None
    data = json.loads(body)
    data = data.get("data", data)
    return {t["topic_name"] for t in data.get("topics") or []}


def consume_all(conn: ProtoConn, n: int, timeout: float = 10.0) -> List[Msg]:
    """Read n messages, FIN-ing each."""
    out = []
    for _ in range(n):
        msg = conn.message(timeout)
        conn.fin(msg.id)
        out.append(msg)
    return out


# ---------------------------------------------------------------- RDY

def test_rdy_limits_messages_in_flight_exactly(shared_nsqd, conns, topic):
    conns(shared_nsqd).mpub(topic, [b"%d" % i for i in range(10)])
    c = conns(shared_nsqd)
    c.sub(topic, "c", rdy=3)
    got = c.messages(3)
    c.assert_silent(0.3)
    c.fin(got[0].id)
    got.append(c.message())  # one slot freed: exactly one more
    c.assert_silent(0.2)
    c.rdy(0)
    for m in got[1:]:
        c.fin(m.id)
    c.assert_silent(0.3)  # RDY 0 stops delivery even with nothing in flight
    c.rdy(10)
    rest = c.messages(6)
    c.assert_silent(0.2)
    assert sorted(int(m.body) for m in got + rest) == list(range(10))


def test_lowering_rdy_below_in_flight_waits_for_fins(shared_nsqd, conns, topic):
    conns(shared_nsqd).mpub(topic, [b"%d" % i for i in range(8)])
    c = conns(shared_nsqd)
    c.sub(topic, "c", rdy=5)
    held = c.messages(5)
    c.rdy(2)
    for m in held[:3]:
        c.fin(m.id)
    c.assert_silent(0.3)  # 2 in flight == RDY 2
    c.fin(held[3].id)
    assert c.message().body == b"5"
    c.assert_silent(0.2)


def test_rdy_is_per_client(shared_nsqd, conns, topic):
    a = conns(shared_nsqd)
    a.sub(topic, "c", rdy=1)
    b = conns(shared_nsqd)
    b.sub(topic, "c", rdy=2)
    conns(shared_nsqd).mpub(topic, [b"%d" % i for i in range(5)])
    got = a.messages(1) + b.messages(2)
    a.assert_silent(0.2)
    b.assert_silent(0.1)
    assert len({m.body for m in got}) == 3


# ---------------------------------------------------------------- timeouts, REQ, DPUB, TOUCH

def test_msg_timeout_redelivers_with_attempts_incremented(shared_nsqd, conns, topic):
    c = conns(shared_nsqd)
    assert c.identify(msg_timeout=1000)["msg_timeout"] == 1000
    c.sub(topic, "c", rdy=1)
    conns(shared_nsqd).pub(topic, b"slow")
    first = c.message()
    t0 = time.monotonic()
    second = c.message(timeout=LATE)
    elapsed = time.monotonic() - t0
    assert (second.id, second.body, second.attempts) == (first.id, b"slow", 2)
    assert 0.8 <= elapsed <= LATE, elapsed
    c.fin(second.id)
    c.assert_alive()


def test_timed_out_message_goes_to_another_consumer(shared_nsqd, conns, topic):
    slow = conns(shared_nsqd)
    slow.identify(msg_timeout=1000)
    slow.sub(topic, "c", rdy=1)
    conns(shared_nsqd).pub(topic, b"hand over")
    held = slow.message()
    slow.rdy(0)
    fast = conns(shared_nsqd)
    fast.sub(topic, "c", rdy=1)
    again = fast.message(timeout=LATE)
    assert (again.id, again.attempts) == (held.id, 2)
    # the first client no longer owns it; the second finishes it
    slow.fin(held.id)
    slow.expect_error("E_FIN_FAILED FIN %s failed client does not own message" % held.id.decode(), fatal=False)
    fast.fin(again.id)
    fast.assert_alive()


def test_req_with_delay_is_not_delivered_before_the_delay(shared_nsqd, conns, topic):
    c = conns(shared_nsqd)
    c.sub(topic, "c", rdy=1)
    conns(shared_nsqd).pub(topic, b"later")
    first = c.message()
    t0 = time.monotonic()
    c.req(first.id, 1000)
    c.assert_silent(0.7)
    second = c.message(timeout=LATE)
    elapsed = time.monotonic() - t0
    assert (second.id, second.body, second.attempts) == (first.id, b"later", 2)
    assert 0.9 <= elapsed <= LATE, elapsed


def test_req_frees_the_rdy_slot_while_deferred(shared_nsqd, conns, topic):
    conns(shared_nsqd).mpub(topic, [b"a", b"b"])
    c = conns(shared_nsqd)
    c.sub(topic, "c", rdy=1)
    first = c.message()
    c.req(first.id, 5000)
    assert c.message(timeout=2.0).body == b"b"


def test_req_delay_is_capped_at_max_req_timeout(nsqd_factory, conns):
    node = nsqd_factory("--max-req-timeout=1s")
    c = conns(node)
    c.sub("t", "c", rdy=1)
    conns(node).pub("t", b"capped")
    first = c.message()
    t0 = time.monotonic()
    c.req(first.id, 3600000)  # an hour, more than the node allows: capped, not refused
    second = c.message(timeout=LATE)
    assert (second.id, second.attempts) == (first.id, 2)
    assert 0.8 <= time.monotonic() - t0 <= LATE


def test_dpub_delays_delivery(shared_nsqd, conns, topic):
    c = conns(shared_nsqd)
    c.sub(topic, "c", rdy=2)
    producer = conns(shared_nsqd)
    t0 = time.monotonic()
    producer.dpub(topic, 1000, b"deferred")
    producer.pub(topic, b"immediate")
    assert c.message().body == b"immediate"  # a deferred message does not hold up the others
    c.assert_silent(0.5)
    msg = c.message(timeout=LATE)
    elapsed = time.monotonic() - t0
    assert (msg.body, msg.attempts) == (b"deferred", 1)
    assert 0.9 <= elapsed <= LATE, elapsed


def test_dpub_before_any_channel_is_kept(shared_nsqd, conns, topic):
    t0 = time.monotonic()
    conns(shared_nsqd).dpub(topic, 500, b"deferred early")
    c = conns(shared_nsqd)
    c.sub(topic, "c", rdy=1)
    msg = c.message(timeout=LATE)
    assert msg.body == b"deferred early"
    assert time.monotonic() - t0 >= 0.45


def test_touch_extends_the_timeout(shared_nsqd, conns, topic):
    c = conns(shared_nsqd)
    c.identify(msg_timeout=1000)
    c.sub(topic, "c", rdy=1)
    conns(shared_nsqd).pub(topic, b"touched")
    msg = c.message()
    t0 = time.monotonic()
    for k in range(1, 5):  # TOUCH every 0.4s: without it the message times out at ~1s
        c.assert_silent(t0 + 0.4 * k - time.monotonic())
        c.touch(msg.id)
    c.assert_silent(t0 + 2.0 - time.monotonic())
    c.fin(msg.id)
    c.assert_alive()  # the FIN found the message still in flight (no E_FIN_FAILED first)


# ---------------------------------------------------------------- heartbeats

def test_heartbeats_at_the_negotiated_interval(shared_nsqd, conns, topic):
    c = conns(shared_nsqd)
    c.identify(heartbeat_interval=1000)
    t0 = time.monotonic()
    c.sub(topic, "c")
    times = []
    for _ in range(3):
        c.sock.settimeout(3.0)
        assert c.frame() == (wire.FRAME_TYPE_RESPONSE, wire.HEARTBEAT)
        times.append(time.monotonic())
        c.send("NOP")  # answering keeps the connection open
    gaps = [b - a for a, b in zip([t0] + times, times)]
    assert all(0.6 <= g <= 1.8 for g in gaps), gaps
    c.assert_alive()


def test_client_missing_two_heartbeats_is_closed(shared_nsqd, conns, topic):
    c = conns(shared_nsqd)
    c.identify(heartbeat_interval=1000, msg_timeout=1000)
    c.sub(topic, "c", rdy=1)
    conns(shared_nsqd).pub(topic, b"held by a dead client")
    held = c.message()
    c.rdy(0)  # the last command it sends
    t0 = time.monotonic()
    c.sock.settimeout(3.0)
    assert c.frame() == (wire.FRAME_TYPE_RESPONSE, wire.HEARTBEAT)
    c.assert_closed(timeout=5.0)
    assert 1.5 <= time.monotonic() - t0 <= 5.0
    # its in-flight message is not lost: another consumer gets it (NSQ waits for the
    # message's timeout; nsq-sync requeues a closed client's messages at once)
    other = conns(shared_nsqd)
    other.sub(topic, "c", rdy=1)
    again = other.message(timeout=LATE)
    assert (again.id, again.attempts) == (held.id, 2)


# ---------------------------------------------------------------- topics and channels

def test_messages_published_before_any_channel_wait_in_the_topic(shared_nsqd, conns, topic):
    producer = conns(shared_nsqd)
    producer.mpub(topic, [b"early-1", b"early-2"])
    producer.pub(topic, b"early-3")
    first = conns(shared_nsqd)
    first.sub(topic, "first", rdy=10)
    assert [m.body for m in consume_all(first, 3)] == [b"early-1", b"early-2", b"early-3"]
    # a channel created later sees only what is published after it exists
    late = conns(shared_nsqd)
    late.sub(topic, "late", rdy=10)
    producer.pub(topic, b"after")
    assert late.message().body == b"after"
    assert first.message().body == b"after"


def test_channel_subscribed_after_a_publish_misses_it_as_in_nsq(shared_nsqd, conns, topic):
    """The interleaving behind the pynsq scenario's old intermittent failure: the topic
    already has channel `ch` when msg-0000 is published, and channel `channel` is made
    by a SUB the node reads after that PUB, so only `ch` gets msg-0000 (nsqd 1.3.0
    gives the same answer; /stats counts 2 messages for the topic, 1 for `channel`)."""
    ch = conns(shared_nsqd)
    ch.sub(topic, "ch", rdy=10)
    producer = conns(shared_nsqd)
    producer.pub(topic, b"msg-0000")
    late = conns(shared_nsqd)
    late.sub(topic, "channel", rdy=10)
    producer.pub(topic, b"msg-0001")
    assert [m.body for m in consume_all(ch, 2)] == [b"msg-0000", b"msg-0001"]
    assert [m.body for m in consume_all(late, 1)] == [b"msg-0001"]
    late.assert_silent(0.2)
    status, body, _ = http_request(shared_nsqd.http_port, "/stats?format=json&topic=" + topic)
    assert status == 200
    (t,) = [t for t in json.loads(body)["topics"] if t["topic_name"] == topic]
    counts = {c["channel_name"]: c["message_count"] for c in t["channels"]}
    assert (t["message_count"], counts) == (2, {"ch": 2, "channel": 1})


def test_every_channel_gets_a_copy(shared_nsqd, conns, topic):
    consumers = {}
    for name in ("a", "b", "c#ephemeral"):
        consumers[name] = conns(shared_nsqd)
        consumers[name].sub(topic, name, rdy=100)
    bodies = [b"copy-%d" % i for i in range(50)]
    conns(shared_nsqd).mpub(topic, bodies)
    seen_ids = None
    for name, c in consumers.items():
        msgs = consume_all(c, 50)
        assert [m.body for m in msgs] == bodies, name
        ids = [m.id for m in msgs]
        assert seen_ids is None or ids == seen_ids  # the same message, the same ID, in every channel
        seen_ids = ids
        c.assert_silent(0.1)


def test_consumers_of_one_channel_share_its_messages(shared_nsqd, conns, topic):
    a = conns(shared_nsqd)
    a.sub(topic, "shared", rdy=1)
    b = conns(shared_nsqd)
    b.sub(topic, "shared", rdy=1)
    conns(shared_nsqd).mpub(topic, [b"one", b"two"])
    ma, mb = a.message(), b.message()
    assert {ma.body, mb.body} == {b"one", b"two"}
    a.assert_silent(0.2)
    b.assert_silent(0.1)


def test_introduction_scenario(shared_nsqd, conns, topic):
    """One producer; channel `channel` with one consumer sees everything; channel
    `ch` with two consumers splits the messages; nothing is lost or doubled."""
    n = 300
    single = conns(shared_nsqd)
    single.sub(topic, "channel", rdy=50)
    pair = [conns(shared_nsqd), conns(shared_nsqd)]
    for c in pair:
        c.sub(topic, "ch", rdy=10)
    results: Dict[str, List[bytes]] = {"channel": [], "ch0": [], "ch1": []}
    errors: List[BaseException] = []

    def drain(conn: ProtoConn, key: str, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    msg = conn.message(timeout=0.2)
                except OSError:  # socket.timeout: check whether we are done
                    continue
                results[key].append(msg.body)
                conn.fin(msg.id)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    stop = threading.Event()
    threads = [threading.Thread(target=drain, args=(c, k, stop), name="drain-" + k)
               for c, k in ((single, "channel"), (pair[0], "ch0"), (pair[1], "ch1"))]
    for t in threads:
        t.start()
    try:
        producer = conns(shared_nsqd)
        bodies = [b"intro-%03d" % i for i in range(n)]
        for i in range(0, n, 30):
            producer.mpub(topic, bodies[i:i + 20])
            for b in bodies[i + 20:i + 30]:
                producer.pub(topic, b)
        wait_for(lambda: len(results["channel"]) >= n and len(results["ch0"]) + len(results["ch1"]) >= n,
                 timeout=20, message="all messages consumed")
        time.sleep(0.2)  # nothing more may arrive: a duplicate would show up here
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert not errors, errors
    assert results["channel"] == bodies
    split = results["ch0"] + results["ch1"]
    assert sorted(split) == bodies
    assert results["ch0"] and results["ch1"], "both consumers of `ch` should get a share"


# ---------------------------------------------------------------- ephemeral topics and channels

def _log_has(node: NodeProcess, text: str) -> bool:
    return text in node.log_text()


def test_ephemeral_channel_disappears_with_its_last_client(nsqd, conns):
    topic, chan = "t", "e#ephemeral"
    keeper = conns(nsqd)
    keeper.sub(topic, "keep")  # a durable channel keeps the topic delivering
    first = conns(nsqd)
    first.sub(topic, chan, rdy=0)
    second = conns(nsqd)
    second.sub(topic, chan, rdy=0)
    producer = conns(nsqd)
    producer.pub(topic, b"old")
    second.close()  # one client left: the channel stays, with its message
    first.rdy(1)
    assert first.message().body == b"old"
    first.close()  # the last client left: the channel goes (its message with it)
    wait_for(lambda: _log_has(nsqd, "TOPIC(t): deleting channel e#ephemeral"), timeout=5,
             message="ephemeral channel deletion")
    channels = stats_channels(nsqd, topic)
    assert channels is None or channels == {"keep"}
    again = conns(nsqd)
    again.sub(topic, chan, rdy=10)
    producer.pub(topic, b"new")
    assert again.message().body == b"new"  # "old" did not survive in a recreated channel


def test_ephemeral_topic_disappears_with_its_last_channel(nsqd, conns):
    topic = "gone#ephemeral"
    c = conns(nsqd)
    c.sub(topic, "c#ephemeral", rdy=0)
    producer = conns(nsqd)
    producer.pub(topic, b"old")
    c.close()
    wait_for(lambda: _log_has(nsqd, "TOPIC(gone#ephemeral): deleting"), timeout=5,
             message="ephemeral topic deletion")
    topics = stats_topics(nsqd)
    assert topics is None or topic not in topics
    again = conns(nsqd)
    again.sub(topic, "c#ephemeral", rdy=10)
    producer.pub(topic, b"new")
    assert again.message().body == b"new"


def test_durable_channel_of_ephemeral_topic_is_kept(nsqd, conns):
    topic = "eph#ephemeral"
    c = conns(nsqd)
    c.sub(topic, "durable", rdy=0)
    conns(nsqd).pub(topic, b"kept")
    c.close()
    wait_for(lambda: _log_has(nsqd, "exiting ioloop"), timeout=5, message="client gone")
    again = conns(nsqd)
    again.sub(topic, "durable", rdy=1)
    assert again.message().body == b"kept"


def test_ephemeral_names_are_never_written_to_nsqd_dat(nsqd_factory, conns, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    node = nsqd_factory(data_path=str(data))
    for topic, channel in [("t", "c"), ("t", "e#ephemeral"), ("t2#ephemeral", "c"),
                           ("t3#ephemeral", "c#ephemeral")]:
        conns(node).sub(topic, channel)
    conns(node).pub("t4", b"x")
    assert node.stop() == 0
    meta = json.loads((data / "nsqd.dat").read_text())
    assert meta["version"] == "1.3.0"
    topics = {t["name"]: sorted(c["name"] for c in t["channels"] or []) for t in meta["topics"]}
    assert topics == {"t": ["c"], "t4": []}
    assert all(t["paused"] is False for t in meta["topics"])


# ---------------------------------------------------------------- message IDs

def test_message_ids_are_unique_lowercase_hex(shared_nsqd, conns, topic):
    producer = conns(shared_nsqd)
    for _ in range(4):
        producer.mpub(topic, [b"x"] * 500)
    for _ in range(20):
        producer.pub(topic, b"y")
    c = conns(shared_nsqd)
    c.sub(topic, "c", rdy=2500)
    msgs = c.messages(2020)
    ids = [m.id for m in msgs]
    assert all(HEX_ID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


# ---------------------------------------------------------------- pausing (through the HTTP API)

def http_post(node: NodeProcess, path: str) -> None:
    status, body, _ = http_request(node.http_port, path, method="POST", body=b"")
    assert status == 200, (path, status, body)


def test_paused_channel_holds_messages_until_unpaused(shared_nsqd, conns, topic):
    c = conns(shared_nsqd)
    c.sub(topic, "c", rdy=10)
    other = conns(shared_nsqd)
    other.sub(topic, "other", rdy=10)
    http_post(shared_nsqd, "/channel/pause?topic=%s&channel=c" % topic)
    conns(shared_nsqd).mpub(topic, [b"p1", b"p2"])
    assert [m.body for m in other.messages(2)] == [b"p1", b"p2"]  # other channels are not paused
    c.assert_silent(0.3)
    http_post(shared_nsqd, "/channel/unpause?topic=%s&channel=c" % topic)
    assert [m.body for m in c.messages(2)] == [b"p1", b"p2"]


def test_paused_topic_holds_messages_for_every_channel(shared_nsqd, conns, topic):
    consumers = []
    for name in ("a", "b"):
        consumers.append(conns(shared_nsqd))
        consumers[-1].sub(topic, name, rdy=10)
    http_post(shared_nsqd, "/topic/pause?topic=" + topic)
    conns(shared_nsqd).pub(topic, b"held")
    consumers[0].assert_silent(0.3)
    consumers[1].assert_silent(0.05)
    http_post(shared_nsqd, "/topic/unpause?topic=" + topic)
    for c in consumers:
        assert c.message().body == b"held"
