"""Every error path of the V2 protocol: the exact error frame NSQ 1.3.0 sends, and
whether the connection is closed after it (fatal) or keeps working (FIN/REQ/TOUCH).

Each expected frame was checked by sending the same bytes to the real nsqd 1.3.0.
"""
from __future__ import annotations

import json
import struct

import pytest

from nsqd_sync import wire
from tests.conftest import body_frame
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(60)

OK = (wire.FRAME_TYPE_RESPONSE, wire.OK)
CLOSE_WAIT = (wire.FRAME_TYPE_RESPONSE, wire.CLOSE_WAIT)
ZERO_ID = "0" * 16


def identify(payload: bytes) -> bytes:
    return b"IDENTIFY\n" + body_frame(payload)


def pub(topic: bytes, body: bytes) -> bytes:
    return b"PUB " + topic + b"\n" + body_frame(body)


def mpub(topic: bytes, body: bytes) -> bytes:
    return b"MPUB " + topic + b"\n" + body_frame(body)


def size_only(line: bytes, size: int) -> bytes:
    """A command line and a size field, without the body it announces."""
    return line + b"\n" + struct.pack(">i", size)


A64 = b"a" * 64
A65 = b"a" * 65

# (id, bytes sent after the magic, frames answered before the error, error frame text)
FATAL_CASES = [
    # ---- IDENTIFY
    ("identify-bad-json", identify(b"{nope"), [], "E_BAD_BODY IDENTIFY failed to decode JSON body"),
    ("identify-json-array", identify(b"[1,2]"), [], "E_BAD_BODY IDENTIFY failed to decode JSON body"),
    ("identify-json-string", identify(b'"x"'), [], "E_BAD_BODY IDENTIFY failed to decode JSON body"),
    ("identify-trailing-junk", identify(b"{} x"), [], "E_BAD_BODY IDENTIFY failed to decode JSON body"),
    ("identify-heartbeat-string", identify(b'{"heartbeat_interval": "x"}'), [],
     "E_BAD_BODY IDENTIFY failed to decode JSON body"),
    ("identify-heartbeat-fraction", identify(b'{"heartbeat_interval": 1500.5}'), [],
     "E_BAD_BODY IDENTIFY failed to decode JSON body"),
    ("identify-msg-timeout-string", identify(b'{"msg_timeout": "1000"}'), [],
     "E_BAD_BODY IDENTIFY failed to decode JSON body"),
    ("identify-client-id-number", identify(b'{"client_id": 5}'), [],
     "E_BAD_BODY IDENTIFY failed to decode JSON body"),
    ("identify-client-id-object", identify(b'{"client_id": {"a": 1}}'), [],
     "E_BAD_BODY IDENTIFY failed to decode JSON body"),
    ("identify-feature-negotiation-string", identify(b'{"feature_negotiation": "yes"}'), [],
     "E_BAD_BODY IDENTIFY failed to decode JSON body"),
    ("identify-size-zero", size_only(b"IDENTIFY", 0), [], "E_BAD_BODY IDENTIFY invalid body size 0"),
    ("identify-size-negative", size_only(b"IDENTIFY", -1), [], "E_BAD_BODY IDENTIFY invalid body size -1"),
    ("identify-too-big", size_only(b"IDENTIFY", 5242881), [],
     "E_BAD_BODY IDENTIFY body too big 5242881 > 5242880"),
    ("identify-huge", size_only(b"IDENTIFY", 2 ** 31 - 1), [],
     "E_BAD_BODY IDENTIFY body too big 2147483647 > 5242880"),
    ("identify-heartbeat-999", identify(b'{"heartbeat_interval": 999}'), [],
     "E_BAD_BODY IDENTIFY heartbeat interval (999) is invalid"),
    ("identify-heartbeat-over-max", identify(b'{"heartbeat_interval": 60001}'), [],
     "E_BAD_BODY IDENTIFY heartbeat interval (60001) is invalid"),
    ("identify-heartbeat-minus-2", identify(b'{"heartbeat_interval": -2}'), [],
     "E_BAD_BODY IDENTIFY heartbeat interval (-2) is invalid"),
    ("identify-output-buffer-size-63", identify(b'{"output_buffer_size": 63}'), [],
     "E_BAD_BODY IDENTIFY output buffer size (63) is invalid"),
    ("identify-output-buffer-size-over-max", identify(b'{"output_buffer_size": 65537}'), [],
     "E_BAD_BODY IDENTIFY output buffer size (65537) is invalid"),
    ("identify-output-buffer-size-minus-2", identify(b'{"output_buffer_size": -2}'), [],
     "E_BAD_BODY IDENTIFY output buffer size (-2) is invalid"),
    ("identify-output-buffer-timeout-1", identify(b'{"output_buffer_timeout": 1}'), [],
     "E_BAD_BODY IDENTIFY output buffer timeout (1) is invalid"),
    ("identify-output-buffer-timeout-24", identify(b'{"output_buffer_timeout": 24}'), [],
     "E_BAD_BODY IDENTIFY output buffer timeout (24) is invalid"),
    ("identify-output-buffer-timeout-over-max", identify(b'{"output_buffer_timeout": 30001}'), [],
     "E_BAD_BODY IDENTIFY output buffer timeout (30001) is invalid"),
    ("identify-output-buffer-timeout-minus-2", identify(b'{"output_buffer_timeout": -2}'), [],
     "E_BAD_BODY IDENTIFY output buffer timeout (-2) is invalid"),
    ("identify-sample-rate-minus-1", identify(b'{"sample_rate": -1}'), [],
     "E_BAD_BODY IDENTIFY sample rate (-1) is invalid"),
    ("identify-sample-rate-100", identify(b'{"sample_rate": 100}'), [],
     "E_BAD_BODY IDENTIFY sample rate (100) is invalid"),
    ("identify-msg-timeout-999", identify(b'{"msg_timeout": 999}'), [],
     "E_BAD_BODY IDENTIFY msg timeout (999) is invalid"),
    ("identify-msg-timeout-over-max", identify(b'{"msg_timeout": 900001}'), [],
     "E_BAD_BODY IDENTIFY msg timeout (900001) is invalid"),
    ("identify-msg-timeout-minus-1", identify(b'{"msg_timeout": -1}'), [],
     "E_BAD_BODY IDENTIFY msg timeout (-1) is invalid"),
    ("identify-after-sub", b"SUB t c\n" + identify(b"{}"), [OK],
     "E_INVALID cannot IDENTIFY in current state"),
    # ---- SUB
    ("sub-no-params", b"SUB\n", [], "E_INVALID SUB insufficient number of parameters"),
    ("sub-no-channel", b"SUB t\n", [], "E_INVALID SUB insufficient number of parameters"),
    ("sub-bad-topic", b"SUB a!b c\n", [], 'E_BAD_TOPIC SUB topic name "a!b" is not valid'),
    ("sub-bad-channel", b"SUB t a!b\n", [], 'E_BAD_CHANNEL SUB channel name "a!b" is not valid'),
    ("sub-topic-65", b"SUB " + A65 + b" c\n", [],
     'E_BAD_TOPIC SUB topic name "%s" is not valid' % A65.decode()),
    ("sub-channel-65", b"SUB t " + A65 + b"\n", [],
     'E_BAD_CHANNEL SUB channel name "%s" is not valid' % A65.decode()),
    ("sub-topic-only-suffix", b"SUB #ephemeral c\n", [],
     'E_BAD_TOPIC SUB topic name "#ephemeral" is not valid'),
    ("sub-ephemeral-65", b"SUB " + b"a" * 55 + b"#ephemeral c\n", [],
     'E_BAD_TOPIC SUB topic name "%s#ephemeral" is not valid' % ("a" * 55)),
    ("sub-channel-bad-suffix", b"SUB t c#eph\n", [], 'E_BAD_CHANNEL SUB channel name "c#eph" is not valid'),
    ("sub-topic-utf8", "SUB t\u00e9 c\n".encode(), [], 'E_BAD_TOPIC SUB topic name "t\u00e9" is not valid'),
    ("sub-twice", b"SUB t c\nSUB t c\n", [OK], "E_INVALID cannot SUB in current state"),
    ("sub-heartbeats-disabled", identify(b'{"heartbeat_interval": -1}') + b"SUB t c\n", [OK],
     "E_INVALID cannot SUB with heartbeats disabled"),
    ("sub-after-cls", b"SUB t c\nCLS\nSUB t c\n", [OK, CLOSE_WAIT], "E_INVALID cannot SUB in current state"),
    # ---- PUB
    ("pub-no-params", b"PUB\n", [], "E_INVALID PUB insufficient number of parameters"),
    ("pub-bad-topic", pub(b"a!b", b"x"), [], 'E_BAD_TOPIC PUB topic name "a!b" is not valid'),
    ("pub-topic-65", pub(A65, b"x"), [], 'E_BAD_TOPIC PUB topic name "%s" is not valid' % A65.decode()),
    ("pub-empty-body", pub(b"t", b""), [], "E_BAD_MESSAGE PUB invalid message body size 0"),
    ("pub-negative-size", size_only(b"PUB t", -5), [], "E_BAD_MESSAGE PUB invalid message body size -5"),
    ("pub-too-big", size_only(b"PUB t", 1048577), [], "E_BAD_MESSAGE PUB message too big 1048577 > 1048576"),
    ("pub-huge", size_only(b"PUB t", 2 ** 31 - 1), [],
     "E_BAD_MESSAGE PUB message too big 2147483647 > 1048576"),
    # ---- MPUB
    ("mpub-no-params", b"MPUB\n", [], "E_INVALID MPUB insufficient number of parameters"),
    # NSQ 1.3.0 really does repeat the code in this one
    ("mpub-bad-topic", mpub(b"a!b", b"x"), [], 'E_BAD_TOPIC E_BAD_TOPIC MPUB topic name "a!b" is not valid'),
    ("mpub-body-zero", size_only(b"MPUB t", 0), [], "E_BAD_BODY MPUB invalid body size 0"),
    ("mpub-body-negative", size_only(b"MPUB t", -1), [], "E_BAD_BODY MPUB invalid body size -1"),
    ("mpub-body-too-big", size_only(b"MPUB t", 5242881), [], "E_BAD_BODY MPUB body too big 5242881 > 5242880"),
    ("mpub-body-huge", size_only(b"MPUB t", 2 ** 31 - 1), [],
     "E_BAD_BODY MPUB body too big 2147483647 > 5242880"),
    ("mpub-count-zero", mpub(b"t", struct.pack(">i", 0)), [], "E_BAD_BODY MPUB invalid message count 0"),
    ("mpub-count-negative", mpub(b"t", struct.pack(">i", -3)), [], "E_BAD_BODY MPUB invalid message count -3"),
    ("mpub-message-size-zero", mpub(b"t", struct.pack(">ii", 1, 0)), [],
     "E_BAD_MESSAGE MPUB invalid message(0) body size 0"),
    ("mpub-message-size-negative", mpub(b"t", struct.pack(">ii", 1, -1)), [],
     "E_BAD_MESSAGE MPUB invalid message(0) body size -1"),
    ("mpub-second-message-size-zero", mpub(b"t", struct.pack(">ii", 2, 1) + b"a" + struct.pack(">i", 0)), [],
     "E_BAD_MESSAGE MPUB invalid message(1) body size 0"),
    ("mpub-message-too-big", mpub(b"t", struct.pack(">ii", 1, 1048577)), [],
     "E_BAD_MESSAGE MPUB message too big 1048577 > 1048576"),
    # ---- DPUB
    ("dpub-no-params", b"DPUB\n", [], "E_INVALID DPUB insufficient number of parameters"),
    ("dpub-no-timeout", b"DPUB t\n" + body_frame(b"x"), [], "E_INVALID DPUB insufficient number of parameters"),
    ("dpub-bad-topic", b"DPUB a!b 10\n" + body_frame(b"x"), [], 'E_BAD_TOPIC DPUB topic name "a!b" is not valid'),
    ("dpub-timeout-text", b"DPUB t abc\n" + body_frame(b"x"), [], "E_INVALID DPUB could not parse timeout abc"),
    ("dpub-timeout-negative", b"DPUB t -1\n" + body_frame(b"x"), [], "E_INVALID DPUB could not parse timeout -1"),
    ("dpub-timeout-over-max", b"DPUB t 3600001\n" + body_frame(b"x"), [],
     "E_INVALID DPUB timeout 3600001 out of range 0-3600000"),
    ("dpub-empty-body", b"DPUB t 10\n" + body_frame(b""), [], "E_BAD_MESSAGE DPUB invalid message body size 0"),
    ("dpub-too-big", size_only(b"DPUB t 10", 1048577), [], "E_BAD_MESSAGE DPUB message too big 1048577 > 1048576"),
    # ---- RDY
    ("rdy-before-sub", b"RDY 1\n", [], "E_INVALID cannot RDY in current state"),
    ("rdy-text", b"SUB t c\nRDY x\n", [OK], "E_INVALID RDY could not parse count x"),
    ("rdy-negative", b"SUB t c\nRDY -1\n", [OK], "E_INVALID RDY could not parse count -1"),
    ("rdy-over-max", b"SUB t c\nRDY 2501\n", [OK], "E_INVALID RDY count 2501 out of range 0-2500"),
    # nsqd 1.3.0 parses into a uint64 that wraps, then reads it as int64 (same text from the real binary)
    ("rdy-past-uint64", b"SUB t c\nRDY 99999999999999999999\n", [OK],
     "E_INVALID RDY count 7766279631452241919 out of range 0-2500"),
    ("rdy-int64-negative", b"SUB t c\nRDY 9223372036854775808\n", [OK],
     "E_INVALID RDY count -9223372036854775808 out of range 0-2500"),
    # ---- FIN / REQ / TOUCH: malformed commands are fatal
    ("fin-before-sub", ("FIN %s\n" % ZERO_ID).encode(), [], "E_INVALID cannot FIN in current state"),
    ("fin-no-id", b"SUB t c\nFIN\n", [OK], "E_INVALID FIN insufficient number of params"),
    ("fin-short-id", b"SUB t c\nFIN 123\n", [OK], "E_INVALID invalid message ID"),
    ("fin-long-id", b"SUB t c\nFIN " + b"0" * 17 + b"\n", [OK], "E_INVALID invalid message ID"),
    ("req-before-sub", ("REQ %s 0\n" % ZERO_ID).encode(), [], "E_INVALID cannot REQ in current state"),
    ("req-no-params", b"SUB t c\nREQ\n", [OK], "E_INVALID REQ insufficient number of params"),
    ("req-no-timeout", ("SUB t c\nREQ %s\n" % ZERO_ID).encode(), [OK], "E_INVALID REQ insufficient number of params"),
    ("req-short-id", b"SUB t c\nREQ 123 0\n", [OK], "E_INVALID invalid message ID"),
    ("req-timeout-text", ("SUB t c\nREQ %s x\n" % ZERO_ID).encode(), [OK], "E_INVALID REQ could not parse timeout x"),
    ("req-timeout-negative", ("SUB t c\nREQ %s -1\n" % ZERO_ID).encode(), [OK],
     "E_INVALID REQ could not parse timeout -1"),
    ("touch-before-sub", ("TOUCH %s\n" % ZERO_ID).encode(), [], "E_INVALID cannot TOUCH in current state"),
    ("touch-no-id", b"SUB t c\nTOUCH\n", [OK], "E_INVALID TOUCH insufficient number of params"),
    ("touch-short-id", b"SUB t c\nTOUCH 12\n", [OK], "E_INVALID invalid message ID"),
    # ---- CLS
    ("cls-before-sub", b"CLS\n", [], "E_INVALID cannot CLS in current state"),
    ("cls-twice", b"SUB t c\nCLS\nCLS\n", [OK, CLOSE_WAIT], "E_INVALID cannot CLS in current state"),
    # ---- AUTH (no --auth-http-address)
    ("auth-disabled", b"AUTH\n" + body_frame(b"secret"), [], "E_AUTH_DISABLED AUTH disabled"),
    ("auth-with-params", b"AUTH x\n" + body_frame(b"secret"), [], "E_INVALID AUTH invalid number of parameters"),
    ("auth-after-sub", b"SUB t c\nAUTH\n" + body_frame(b"secret"), [OK], "E_INVALID cannot AUTH in current state"),
    ("auth-size-zero", size_only(b"AUTH", 0), [], "E_BAD_BODY AUTH invalid body size 0"),
    ("auth-too-big", size_only(b"AUTH", 5242881), [], "E_BAD_BODY AUTH body too big 5242881 > 5242880"),
    # ---- unknown commands
    ("unknown-command", b"WHAT now\n", [], "E_INVALID invalid command WHAT"),
    ("lowercase-command", b"nop\n", [], "E_INVALID invalid command nop"),
    ("empty-line", b"\n", [], "E_INVALID invalid command "),
    ("leading-space", b" NOP\n", [], "E_INVALID invalid command "),
    ("after-good-commands", b"NOP\n" + pub(b"t", b"x") + b"BOGUS\n", [OK], "E_INVALID invalid command BOGUS"),
]


@pytest.mark.parametrize("payload,before,error", [c[1:] for c in FATAL_CASES], ids=[c[0] for c in FATAL_CASES])
def test_fatal_error(shared_nsqd, conns, payload, before, error):
    conn = conns(shared_nsqd)
    conn.send_raw(payload)
    for frame in before:
        assert conn.next_frame() == frame
    conn.expect_error(error, fatal=True)


@pytest.mark.parametrize("magic", [b"  V1", b"  V3", b"V2  ", b"GET / HTTP/1.1\r\n\r\n"])
def test_bad_magic_is_bad_protocol_and_closed(shared_nsqd, conns, magic):
    conn = conns(shared_nsqd, magic=b"")
    conn.send_raw(magic)
    assert conn.next_frame() == (wire.FRAME_TYPE_ERROR, b"E_BAD_PROTOCOL")
    conn.assert_closed()


# ---------------------------------------------------------------- non-fatal errors

@pytest.mark.parametrize("command,error", [
    ("FIN " + ZERO_ID, "E_FIN_FAILED FIN %s failed ID not in flight" % ZERO_ID),
    ("REQ %s 0" % ZERO_ID, "E_REQ_FAILED REQ %s failed ID not in flight" % ZERO_ID),
    ("REQ %s 99999999999" % ZERO_ID, "E_REQ_FAILED REQ %s failed ID not in flight" % ZERO_ID),
    ("TOUCH " + ZERO_ID, "E_TOUCH_FAILED TOUCH %s failed ID not in flight" % ZERO_ID),
], ids=["fin", "req", "req-long-delay", "touch"])
def test_unknown_message_id_is_not_fatal(shared_nsqd, conns, topic, command, error):
    conn = conns(shared_nsqd)
    conn.sub(topic, "c")
    conn.send(command)
    conn.expect_error(error, fatal=False)


def test_non_fatal_errors_in_a_row_then_delivery_continues(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd)
    conn.sub(topic, "c", rdy=1)
    conn.send_raw(("FIN {0}\nREQ {0} 0\nTOUCH {0}\n".format(ZERO_ID)).encode())
    for text in ("E_FIN_FAILED FIN %s failed ID not in flight",
                 "E_REQ_FAILED REQ %s failed ID not in flight",
                 "E_TOUCH_FAILED TOUCH %s failed ID not in flight"):
        assert conn.next_frame() == (wire.FRAME_TYPE_ERROR, (text % ZERO_ID).encode())
    conns(shared_nsqd).pub(topic, b"after errors")
    msg = conn.message()
    assert msg.body == b"after errors"
    conn.fin(msg.id)
    conn.assert_alive()


def test_fin_twice_second_is_not_in_flight(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd)
    conn.sub(topic, "c", rdy=1)
    conns(shared_nsqd).pub(topic, b"once")
    msg = conn.message()
    conn.fin(msg.id)
    conn.fin(msg.id)
    conn.expect_error("E_FIN_FAILED FIN %s failed ID not in flight" % msg.id.decode(), fatal=False)


@pytest.mark.parametrize("verb", ["FIN", "REQ", "TOUCH"])
def test_message_of_another_client_is_not_owned(shared_nsqd, conns, topic, verb):
    owner = conns(shared_nsqd)
    owner.sub(topic, "c", rdy=1)
    other = conns(shared_nsqd)
    other.sub(topic, "c", rdy=0)
    conns(shared_nsqd).pub(topic, b"mine")
    msg = owner.message()
    mid = msg.id.decode()
    other.send("%s %s%s" % (verb, mid, " 0" if verb == "REQ" else ""))
    other.expect_error("E_%s_FAILED %s %s failed client does not own message" % (verb, verb, mid), fatal=False)
    # the owner still holds it and can finish it
    owner.fin(msg.id)
    owner.assert_alive()


def test_fin_after_cls_is_allowed(shared_nsqd, conns, topic):
    conn = conns(shared_nsqd)
    conn.sub(topic, "c", rdy=1)
    conns(shared_nsqd).pub(topic, b"in flight at CLS")
    msg = conn.message()
    conn.send("CLS")
    conn.expect(wire.FRAME_TYPE_RESPONSE, wire.CLOSE_WAIT)
    conn.fin(msg.id)
    conn.assert_alive()  # no E_FIN_FAILED before the PUB's OK
    conn.send("FIN " + ZERO_ID)
    conn.expect_error("E_FIN_FAILED FIN %s failed ID not in flight" % ZERO_ID, fatal=False)


# ---------------------------------------------------------------- a fatal error is local

def test_fatal_error_closes_only_that_connection(shared_nsqd, conns, topic):
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c", rdy=10)
    producer = conns(shared_nsqd)
    victims = [conns(shared_nsqd) for _ in range(3)]
    victims[0].send_raw(b"BOGUS\n")
    victims[1].send_raw(size_only(b"PUB " + topic.encode(), 2 ** 31 - 1))
    victims[2].send_raw(b"SUB " + topic.encode() + b" c\nRDY 99999\n")
    victims[0].expect_error("E_INVALID invalid command BOGUS")
    victims[1].expect_error("E_BAD_MESSAGE PUB message too big 2147483647 > 1048576")
    victims[2].expect_ok()
    victims[2].expect_error("E_INVALID RDY count 99999 out of range 0-2500")
    producer.pub(topic, b"still served")
    assert consumer.message().body == b"still served"


# ---------------------------------------------------------------- deviations from NSQ to fix

@pytest.mark.parametrize("body", [
    b"[" * 20000 + b"]" * 20000,
    b'{"a":' * 20000 + b"1" + b"}" * 20000,
], ids=["deep-array", "deep-object"])
def test_identify_deeply_nested_json_is_bad_body(shared_nsqd, conns, body):
    conn = conns(shared_nsqd)
    conn.send("IDENTIFY", body)
    conn.expect_error("E_BAD_BODY IDENTIFY failed to decode JSON body", fatal=True)



@pytest.mark.parametrize("field", ["heartbeat_interval", "sample_rate", "msg_timeout", "output_buffer_size"])
def test_identify_integer_fields_reject_json_floats(shared_nsqd, conns, field):
    # Go decodes these into integers: 1000.0 is not an integer literal there
    conn = conns(shared_nsqd)
    conn.send("IDENTIFY", json.dumps({field: 1000.0 if field != "sample_rate" else 1.0}).encode())
    conn.expect_error("E_BAD_BODY IDENTIFY failed to decode JSON body", fatal=True)



def test_invalid_command_echoes_raw_bytes(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    conn.send_raw(b"\x00\x01\x02\xff\n")
    conn.expect_error(b"E_INVALID invalid command \x00\x01\x02\xff", fatal=True)



def test_topic_name_with_invalid_utf8_is_quoted_like_go(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    conn.send_raw(pub(b"t\xff", b"x"))
    conn.expect_error('E_BAD_TOPIC PUB topic name "t\\xff" is not valid', fatal=True)


# ---------------------------------------------------------------- accepted deviation: short MPUB bodies
# NSQ 1.3.0 keeps reading the stream past an MPUB body whose messages claim more
# bytes than the body holds (and so hangs waiting); nsq-sync reads exactly the
# announced body and refuses it.

@pytest.mark.parametrize("body,error", [
    (struct.pack(">ii", 2, 1) + b"a", "E_BAD_MESSAGE MPUB failed to read message(1) body size"),
    (struct.pack(">ii", 1, 10) + b"short", "E_BAD_MESSAGE MPUB failed to read message body"),
    (struct.pack(">ii", 1, 1), "E_BAD_MESSAGE MPUB failed to read message body"),
    (b"ab", "E_BAD_BODY MPUB failed to read message count"),
], ids=["missing-size", "short-message", "no-message-bytes", "short-count"])
def test_mpub_short_body_is_refused(shared_nsqd, conns, topic, body, error):
    consumer = conns(shared_nsqd)
    consumer.sub(topic, "c", rdy=10)
    conn = conns(shared_nsqd)
    conn.send("MPUB " + topic, body)
    conn.expect_error(error, fatal=True)
    conns(shared_nsqd).pub(topic, b"marker")
    assert consumer.message().body == b"marker"  # nothing of the refused MPUB was published


def test_sub_beyond_max_channel_consumers_is_sub_failed(nsqd_factory, conns):
    """nsqd 1.3.0: E_SUB_FAILED with the limit in the text (there is no E_TOO_MANY_... code)."""
    node = nsqd_factory("--max-channel-consumers=1")
    first = conns(node)
    first.sub("limited", "c")
    second = conns(node)
    second.send("SUB limited c")
    second.expect_error("E_SUB_FAILED SUB failed consumers for limited:c exceeds limit of 1")
    conns(node).sub("limited", "other")  # the limit is per channel
    first.sock.close()

    def room() -> bool:  # once the first consumer is gone there is room again
        c = conns(node)
        c.send("SUB limited c")
        return c.next_frame() == OK

    wait_for(room, timeout=10, message="a free consumer slot")


@pytest.mark.parametrize("length", [16384, 70000])
def test_command_line_past_16k_is_closed_without_a_frame(shared_nsqd, conns, length):
    """nsqd 1.3.0 reads lines through a 16 KiB bufio.Reader: a full buffer ends the connection, no frame."""
    conn = conns(shared_nsqd)
    conn.send_raw(b"X" * length)
    conn.assert_closed()


def test_command_line_of_16383_bytes_is_still_read(shared_nsqd, conns):
    conn = conns(shared_nsqd)
    conn.send_raw(b"X" * 16383 + b"\n")
    conn.expect_error("E_INVALID invalid command " + "X" * 16383, fatal=True)
