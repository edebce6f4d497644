"""Every V2 command doing its job over a real socket: IDENTIFY (with feature
negotiation), SUB, PUB, MPUB, DPUB, RDY, FIN, REQ, TOUCH, CLS, NOP and AUTH.

The answers expected here were checked against the real nsqd 1.3.0.
"""
from __future__ import annotations

import json
import re
import socket
import time

import pytest

from nsqd_sync import wire
from tests.conftest import body_frame

pytestmark = pytest.mark.timeout(60)

HEX_ID = re.compile(rb"^[0-9a-f]{16}$")

DEFAULT_IDENTIFY_ANSWER = {
    "max_rdy_count": 2500,
    "version": "1.3.0",
    "max_msg_timeout": 900000,
    "msg_timeout": 60000,
    "tls_v1": False,
    "deflate": False,
    "deflate_level": 6,
    "max_deflate_level": 6,
    "snappy": False,
    "sample_rate": 0,
    "auth_required": False,
    "output_buffer_size": 16384,
    "output_buffer_timeout": 250,
}


# ---------------------------------------------------------------- NOP, pipelining, framing

def test_nop_has_no_answer(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd)
    conn.send("NOP")
    conn.send("NOP extra params")
    conn.pub(topic, b"x")  # the first frame back is PUB's OK


def test_pipelined_commands_are_answered_in_order(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd)
    data = (b"IDENTIFY\n" + body_frame(json.dumps({"feature_negotiation": True}).encode())
            + b"NOP\n"
            + b"PUB " + topic.encode() + b"\n" + body_frame(b"one")
            + b"MPUB " + topic.encode() + b"\n" + body_frame(wire.mpub_body([b"two", b"three"]))
            + b"DPUB " + topic.encode() + b" 0\n" + body_frame(b"four")
            + b"SUB " + topic.encode() + b" c\n"
            + b"RDY 10\n")
    conn.send_raw(data)
    ft, answer = conn.next_frame()
    assert ft == wire.FRAME_TYPE_RESPONSE and json.loads(answer)["version"] == "1.3.0"
    for _ in range(4):  # PUB, MPUB, DPUB, SUB
        conn.expect_ok()
    bodies = sorted(m.body for m in conn.messages(4))
    assert bodies == sorted([b"one", b"two", b"three", b"four"])


def test_commands_split_into_single_bytes(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd, magic=b"")
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = b"split\nbody"
    data = wire.MAGIC_V2 + b"PUB " + topic.encode() + b"\n" + body_frame(body) + b"SUB " + topic.encode() + b" c\nRDY 1\n"
    for i in range(len(data)):
        conn.send_raw(data[i:i + 1])
        if i % 7 == 0:
            time.sleep(0.001)
    conn.expect_ok()
    conn.expect_ok()
    assert conn.message().body == body


def test_crlf_line_endings_are_accepted(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd)
    conn.send_raw(b"NOP\r\nPUB " + topic.encode() + b"\r\n" + body_frame(b"crlf"))
    conn.expect_ok()
    conn.send_raw(b"SUB " + topic.encode() + b" c\r\nRDY 1\r\n")
    conn.expect_ok()
    assert conn.message().body == b"crlf"


def test_extra_params_are_ignored(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd)
    conn.send_raw(b"PUB " + topic.encode() + b" extra\n" + body_frame(b"x"))
    conn.expect_ok()
    conn.send("SUB %s c extra" % topic)
    conn.expect_ok()
    conn.send("CLS extra")
    conn.expect(wire.FRAME_TYPE_RESPONSE, wire.CLOSE_WAIT)


# ---------------------------------------------------------------- IDENTIFY

def test_identify_without_feature_negotiation_answers_ok(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd)
    conn.send("IDENTIFY", json.dumps({"client_id": "c1", "hostname": "h", "user_agent": "test/1.0"}).encode())
    conn.expect_ok()
    conn.send("IDENTIFY", json.dumps({"feature_negotiation": False}).encode())
    conn.expect_ok()
    conn.sub(topic, "c")


def test_identify_ignores_unknown_fields(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    conn.send("IDENTIFY", b'{"bogus": 1, "long_id": "x", "short_id": "y", "nested": {"a": [1, 2]}}')
    conn.expect_ok()


def test_identify_json_null_is_accepted(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    conn.send("IDENTIFY", b"null")
    conn.expect_ok()


def test_identify_feature_negotiation_defaults(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    answer = conn.identify(client_id="c", hostname="h", user_agent="test/1.0")
    assert answer == DEFAULT_IDENTIFY_ANSWER


def test_identify_negotiated_values_are_echoed(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    answer = conn.identify(heartbeat_interval=1000, msg_timeout=1000, sample_rate=99,
                           output_buffer_size=64, output_buffer_timeout=25)
    assert answer == dict(DEFAULT_IDENTIFY_ANSWER, msg_timeout=1000, sample_rate=99,
                          output_buffer_size=64, output_buffer_timeout=25)


def test_identify_upper_limits_are_accepted(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    answer = conn.identify(heartbeat_interval=60000, msg_timeout=900000,
                           output_buffer_size=65536, output_buffer_timeout=30000)
    assert answer == dict(DEFAULT_IDENTIFY_ANSWER, msg_timeout=900000,
                          output_buffer_size=65536, output_buffer_timeout=30000)


def test_identify_minus_one_disables_output_buffer_timeout_and_heartbeats(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd)
    answer = conn.identify(heartbeat_interval=-1, output_buffer_timeout=-1)
    assert answer == dict(DEFAULT_IDENTIFY_ANSWER, output_buffer_timeout=0)
    conn.send("SUB %s c" % topic)
    conn.expect_error("E_INVALID cannot SUB with heartbeats disabled")



def test_identify_output_buffer_size_minus_one_is_reported_as_one(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    assert conn.identify(output_buffer_size=-1)["output_buffer_size"] == 1


def test_identify_deflate_level_without_deflate(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    assert conn.identify(deflate_level=3)["deflate_level"] == 6


def test_identify_tls_without_certificate_stays_plaintext(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd)
    answer = conn.identify(tls_v1=True)
    assert answer["tls_v1"] is False
    conn.pub(topic, b"still plaintext")


def test_identify_twice_is_allowed_and_the_last_wins(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    assert conn.identify(msg_timeout=5000)["msg_timeout"] == 5000
    assert conn.identify(msg_timeout=7000)["msg_timeout"] == 7000


def test_identify_answer_reflects_node_options(nsqd_factory, conns):
    node = nsqd_factory("--max-rdy-count=100", "--max-msg-timeout=30s", "--msg-timeout=5s",
                        "--max-deflate-level=4", "--output-buffer-timeout=100ms",
                        "--max-heartbeat-interval=2s", "--max-output-buffer-size=1000",
                        "--max-output-buffer-timeout=1s")
    conn = conns(node)
    answer = conn.identify()
    assert answer == dict(DEFAULT_IDENTIFY_ANSWER, max_rdy_count=100, max_msg_timeout=30000,
                          msg_timeout=5000, deflate_level=4, max_deflate_level=4,
                          output_buffer_timeout=100)
    for field, value, error in [
        ("heartbeat_interval", 2001, "E_BAD_BODY IDENTIFY heartbeat interval (2001) is invalid"),
        ("output_buffer_size", 1001, "E_BAD_BODY IDENTIFY output buffer size (1001) is invalid"),
        ("output_buffer_timeout", 1001, "E_BAD_BODY IDENTIFY output buffer timeout (1001) is invalid"),
        ("msg_timeout", 30001, "E_BAD_BODY IDENTIFY msg timeout (30001) is invalid"),
    ]:
        bad = conns(node)
        bad.send("IDENTIFY", json.dumps({field: value}).encode())
        bad.expect_error(error)
    ok = conns(node)
    assert ok.identify(heartbeat_interval=2000, output_buffer_size=1000, output_buffer_timeout=1000,
                       msg_timeout=30000)["msg_timeout"] == 30000
    sub = conns(node)
    sub.sub("t", "c")
    sub.send("RDY 101")
    sub.expect_error("E_INVALID RDY count 101 out of range 0-100")


# ---------------------------------------------------------------- PUB / MPUB / DPUB

def test_pub_then_sub_delivers_the_message(shared_nsqd, conns, topic):
    producer = conns(shared_nsqd)
    before = time.time_ns()
    producer.pub(topic, b"hello")
    after = time.time_ns()
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c", rdy=1)
    msg = consumer.message()
    assert msg.body == b"hello"
    assert msg.attempts == 1
    assert HEX_ID.match(msg.id), msg.id
    assert before - 1_000_000 <= msg.timestamp <= after + 1_000_000
    consumer.fin(msg.id)
    consumer.assert_alive()


def test_pub_is_allowed_after_sub(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd)
    conn.sub(topic, "c")
    conn.pub(topic + "-other", b"x")


def test_binary_bodies_arrive_intact(shared_nsqd, conns, topic):
    bodies = [bytes(range(256)) * 4, b"\n", b"FIN 0000000000000000\n", b"\x00" * 3, b"  V2"]
    producer = conns(shared_nsqd)
    producer.pub(topic, bodies[0])
    producer.mpub(topic, bodies[1:])
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c", rdy=10)
    assert [m.body for m in consumer.messages(len(bodies))] == bodies


def test_mpub_delivers_every_message_in_order(shared_nsqd, conns, topic):
    bodies = [b"m%04d" % i + b"x" * (i % 50) for i in range(300)]
    conns(shared_nsqd).mpub(topic, bodies)
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c", rdy=300)
    msgs = consumer.messages(300)
    assert [m.body for m in msgs] == bodies
    assert len({m.id for m in msgs}) == 300
    assert all(m.attempts == 1 for m in msgs)


def test_pub_of_exactly_max_msg_size_is_accepted(shared_nsqd, conns, topic):
    body = bytes(range(256)) * 4096  # 1048576 bytes, the default --max-msg-size
    conns(shared_nsqd).pub(topic, body)
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c", rdy=1)
    assert consumer.message().body == body


def test_size_limits_follow_node_options(nsqd_factory, conns):
    node = nsqd_factory("--max-msg-size=100", "--max-body-size=1000")
    conn = conns(node)
    conn.pub("t", b"x" * 100)
    # 4 (count) + 9 * (4 + 100) = 940; + 4 + 56 = 1000 exactly
    conn.mpub("t", [b"y" * 100] * 9 + [b"z" * 56])
    for line, body, error in [
        ("PUB t", b"x" * 101, "E_BAD_MESSAGE PUB message too big 101 > 100"),
        ("DPUB t 0", b"x" * 101, "E_BAD_MESSAGE DPUB message too big 101 > 100"),
        ("MPUB t", wire.mpub_body([b"y" * 100] * 9 + [b"z" * 57]), "E_BAD_BODY MPUB body too big 1001 > 1000"),
        ("MPUB t", wire.mpub_body([b"y" * 101]), "E_BAD_MESSAGE MPUB message too big 101 > 100"),
        ("IDENTIFY", b"{" + b" " * 999 + b"}", "E_BAD_BODY IDENTIFY body too big 1001 > 1000"),
    ]:
        bad = conns(node)
        bad.send(line, body)
        bad.expect_error(error)
    consumer = conns(node)
    consumer.sub("t", "c", rdy=20)
    assert [len(m.body) for m in consumer.messages(11)] == [100] * 10 + [56]


def test_dpub_zero_delivers_at_once(shared_nsqd, conns, topic):
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c", rdy=1)
    conns(shared_nsqd).dpub(topic, 0, b"now")
    msg = consumer.message(timeout=2.0)
    assert (msg.body, msg.attempts) == (b"now", 1)


def test_pub_to_ephemeral_topic_is_ok(shared_nsqd, conns, topic):
    conns(shared_nsqd).pub(topic + "#ephemeral", b"x")


# ---------------------------------------------------------------- SUB / RDY / FIN / REQ / TOUCH / CLS

@pytest.mark.parametrize("topic_name,channel", [
    ("a" * 64, "b" * 64),
    ("a" * 54 + "#ephemeral", "b" * 54 + "#ephemeral"),
    ("dots.and-dashes_ok", "ch.1-2_3"),
])
def test_sub_accepts_valid_names(shared_nsqd, conns, topic_name, channel):
    conn = conns(shared_nsqd)
    conn.sub(topic_name, channel)


def test_sub_without_rdy_gets_nothing(shared_nsqd, conns, topic):
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c")
    conns(shared_nsqd).pub(topic, b"waiting")
    consumer.assert_silent(0.3)
    consumer.rdy(1)
    assert consumer.message().body == b"waiting"


def test_rdy_without_count_means_one(shared_nsqd, conns, topic):
    conns(shared_nsqd).mpub(topic, [b"1", b"2"])
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c")
    consumer.send("RDY")
    msg = consumer.message()
    consumer.assert_silent(0.3)
    consumer.fin(msg.id)
    assert consumer.message().body == b"2"


def test_fin_has_no_answer_and_frees_rdy(shared_nsqd, conns, topic):
    conns(shared_nsqd).mpub(topic, [b"a", b"b"])
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c", rdy=1)
    first = consumer.message()
    consumer.fin(first.id)
    second = consumer.message()  # delivered because FIN freed the slot; no frame for the FIN itself
    assert (first.body, second.body) == (b"a", b"b")


def test_req_zero_redelivers_at_once_with_attempts_incremented(shared_nsqd, conns, topic):
    conns(shared_nsqd).pub(topic, b"again")
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c", rdy=1)
    first = consumer.message()
    consumer.req(first.id, 0)
    second = consumer.message(timeout=2.0)
    assert (second.id, second.body, second.attempts) == (first.id, b"again", 2)
    consumer.req(second.id, 0)
    assert consumer.message(timeout=2.0).attempts == 3


def test_touch_has_no_answer(shared_nsqd, conns, topic):
    conns(shared_nsqd).pub(topic, b"touch me")
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c", rdy=1)
    msg = consumer.message()
    consumer.touch(msg.id)
    consumer.assert_alive()
    consumer.fin(msg.id)
    consumer.assert_alive()


def test_cls_answers_close_wait_and_stops_delivery(shared_nsqd, conns, topic):
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c", rdy=0)
    consumer.send("CLS")
    consumer.expect(wire.FRAME_TYPE_RESPONSE, wire.CLOSE_WAIT)
    consumer.rdy(5)  # ignored after CLS
    conns(shared_nsqd).pub(topic, b"not for a closing client")
    consumer.assert_silent(0.3)
    consumer.assert_alive()
    # the message is still there for another consumer
    other = conns(shared_nsqd)
    other.sub(topic, "c", rdy=1)
    assert other.message().body == b"not for a closing client"


def test_auth_without_auth_server_is_disabled(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    conn.send("AUTH", b"secret")
    conn.expect_error("E_AUTH_DISABLED AUTH disabled")
