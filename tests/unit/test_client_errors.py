"""Client library pieces that need no server: errors, lookup parsing, codecs, RDY and backoff logic."""
from __future__ import annotations

import pytest

from nsqd_sync import wire
from nsqd_sync.client import errors
from nsqd_sync.client.connection import split_address
from nsqd_sync.client.conn_state import ConsumerConn
from nsqd_sync.client.consumer import Consumer
from nsqd_sync.client.handling import _WorkQueue
from nsqd_sync.client.lookup import lookup_url, parse_lookup
from nsqd_sync.client.message import Message

CODES = {
    "E_INVALID": errors.NSQInvalid,
    "E_BAD_BODY": errors.NSQBadBody,
    "E_BAD_TOPIC": errors.NSQBadTopic,
    "E_BAD_CHANNEL": errors.NSQBadChannel,
    "E_BAD_MESSAGE": errors.NSQBadMessage,
    "E_PUB_FAILED": errors.NSQPubFailed,
    "E_MPUB_FAILED": errors.NSQMPubFailed,
    "E_DPUB_FAILED": errors.NSQDPubFailed,
    "E_FIN_FAILED": errors.NSQFinFailed,
    "E_REQ_FAILED": errors.NSQReqFailed,
    "E_TOUCH_FAILED": errors.NSQTouchFailed,
    "E_IDENTIFY_FAILED": errors.NSQIdentifyFailed,
    "E_AUTH_FAILED": errors.NSQAuthFailed,
    "E_AUTH_FIRST": errors.NSQAuthFirst,
    "E_UNAUTHORIZED": errors.NSQUnauthorized,
    "E_AUTH_DISABLED": errors.NSQAuthDisabled,
    "E_BAD_PROTOCOL": errors.NSQBadProtocol,
}


@pytest.mark.parametrize("code, cls", sorted(CODES.items()))
def test_each_code_maps_to_its_class(code, cls):
    err = errors.error_from_frame(code.encode() + b" something went wrong")
    assert type(err) is cls
    assert isinstance(err, errors.NSQError)
    assert err.code == code
    assert err.message == "something went wrong"
    assert str(err) == code + " something went wrong"
    assert errors.ERROR_CLASSES[code] is cls


def test_error_text_as_nsqd_sends_it():
    err = errors.error_from_frame(b'E_BAD_TOPIC PUB topic name "a!b" is not valid')
    assert isinstance(err, errors.NSQBadTopic)
    assert err.message == 'PUB topic name "a!b" is not valid'
    assert repr(err) == "NSQBadTopic(code='E_BAD_TOPIC', message='PUB topic name \"a!b\" is not valid')"
    with pytest.raises(errors.NSQError):
        raise err


def test_unknown_and_codeless_errors():
    err = errors.error_from_frame(b"E_SOMETHING_NEW odd")
    assert type(err) is errors.NSQError and err.code == "E_SOMETHING_NEW" and err.message == "odd"
    err = errors.error_from_frame(b"E_BARE")
    assert err.code == "E_BARE" and err.message == "" and str(err) == "E_BARE"
    err = errors.error_from_frame(b"not an error code")
    assert err.code is None and str(err) == "not an error code"
    err = errors.error_from_frame(b"\xff\xfe")
    assert isinstance(err, errors.NSQError)


def test_fatal_codes():
    for code in ("E_FIN_FAILED", "E_REQ_FAILED", "E_TOUCH_FAILED"):
        assert not errors.is_fatal(errors.error_from_frame(code.encode() + b" x"))
    for code in ("E_INVALID", "E_BAD_TOPIC", "E_PUB_FAILED", "E_UNAUTHORIZED"):
        assert errors.is_fatal(errors.error_from_frame(code.encode() + b" x"))


def test_connection_error_is_an_nsq_error():
    err = errors.NSQConnectionError("connect failed")
    assert isinstance(err, errors.NSQError) and err.code is None and str(err) == "connect failed"


# ---------------------------------------------------------------- lookup

def test_lookup_url_forms():
    assert lookup_url("127.0.0.1:4161", "t") == "http://127.0.0.1:4161/lookup?topic=t"
    assert lookup_url("http://h:4161/", "t") == "http://h:4161/lookup?topic=t"
    assert lookup_url("https://h:4161/base", "a.b") == "https://h:4161/base/lookup?topic=a.b"
    assert lookup_url("http://h:4161/lookup", "t#ephemeral") == "http://h:4161/lookup?topic=t%23ephemeral"


def test_parse_lookup_shapes():
    producer = {"remote_address": "127.0.0.1:5555", "hostname": "box", "broadcast_address": "10.0.0.1",
                "tcp_port": 4150, "http_port": 4151, "version": "1.3.0"}
    assert parse_lookup({"channels": [], "producers": [producer]}) == ["10.0.0.1:4150"]
    # the pre-1.0 envelope
    assert parse_lookup({"status_code": 200, "status_txt": "OK",
                         "data": {"channels": [], "producers": [producer]}}) == ["10.0.0.1:4150"]
    assert parse_lookup({"producers": [dict(producer, broadcast_address="::1")]}) == ["[::1]:4150"]
    assert parse_lookup({"producers": None}) == []
    assert parse_lookup({"producers": [{"broadcast_address": "x"}]}) == []  # no tcp_port: skipped


def test_split_address():
    assert split_address("127.0.0.1:4150") == ("127.0.0.1", 4150)
    assert split_address("[::1]:4150") == ("::1", 4150)
    with pytest.raises(ValueError):
        split_address("nohost")


# ---------------------------------------------------------------- messages and queue

def test_message_from_frame():
    data = wire.encode_message(123456789, 3, b"0123456789abcdef", b"body")
    msg = Message.from_frame(data)
    assert (msg.id, msg.body, msg.timestamp, msg.attempts) == (b"0123456789abcdef", b"body", 123456789, 3)
    assert not msg.has_responded() and not msg.is_async()
    msg.enable_async()
    assert msg.is_async()
    msg.finish()  # without a consumer: just marked
    assert msg.has_responded()


def test_work_queue_batches_and_close():
    q = _WorkQueue()
    msgs = [Message(b"%016d" % i, b"", 0, 1) for i in range(5)]
    q.put_many(msgs)
    assert q.get_batch(3) == msgs[:3]
    assert q.get_batch(1) == msgs[3:4]
    q.close()
    assert q.get_batch(10) == msgs[4:]
    assert q.get_batch(10) is None


# ---------------------------------------------------------------- RDY and backoff without sockets

class FakeConn:
    def __init__(self, address: str) -> None:
        self.address = address
        self.max_rdy_count = 2500
        self.closed = False
        self.sent = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True


def consumer_with(n_conns: int, **kw) -> Consumer:
    c = Consumer("t", "c", lambda m: None, **kw)
    for i in range(n_conns):
        cc = ConsumerConn(FakeConn("h:%d" % i), c._conn_idle)
        c._conns[cc.address] = cc
    return c


def rdys(c: Consumer):
    return sorted(cc.rdy for cc in c._conns.values())


def test_max_in_flight_split_over_connections():
    c = consumer_with(3, max_in_flight=100)
    with c._lock:
        c._flow.rebalance_locked()
    assert rdys(c) == [33, 33, 33]
    assert all(cc.conn.sent == [b"RDY 33\n"] for cc in c._conns.values())
    with c._lock:  # a connection goes away: the others get more
        del c._conns["h:0"]
        c._flow.rebalance_locked()
    assert rdys(c) == [50, 50]


def test_fewer_slots_than_connections():
    c = consumer_with(5, max_in_flight=2, low_rdy_idle_timeout=0.0)
    with c._lock:
        c._flow.rebalance_locked()
    assert rdys(c) == [0, 0, 0, 1, 1]
    before = {a for a, cc in c._conns.items() if cc.rdy}
    with c._lock:
        c._flow.redistribute_locked()  # both are idle: RDY moves to other connections
    after = {a for a, cc in c._conns.items() if cc.rdy}
    assert len(after) == 2 and not before & after
    assert sum(rdys(c)) == 2


def test_max_in_flight_zero_pauses():
    c = consumer_with(2, max_in_flight=4)
    c.set_max_in_flight(0)
    assert rdys(c) == [0, 0]
    c.set_max_in_flight(4)
    assert rdys(c) == [2, 2]


def test_rdy_capped_by_max_rdy_count():
    c = consumer_with(1, max_in_flight=5000)
    with c._lock:
        c._flow.rebalance_locked()
    assert rdys(c) == [2500]


def test_backoff_state_machine():
    c = consumer_with(2, max_in_flight=10, backoff_multiplier=1.0, max_backoff_duration=10.0)
    with c._lock:
        c._flow.rebalance_locked()
    assert rdys(c) == [5, 5]
    c._backoff_signal(False)  # failure: RDY 0 everywhere for 2 s
    assert c.backoff_counter == 1 and c.in_backoff() and rdys(c) == [0, 0]
    c._backoff_signal(True)  # results during the block don't count
    assert c.backoff_counter == 1
    with c._lock:
        c._flow.resume_locked()  # block over: test with RDY 1 on one connection
    assert rdys(c) == [0, 1]
    c._backoff_signal(False)  # test failed: longer block
    assert c.backoff_counter == 2 and rdys(c) == [0, 0]
    assert c._flow.backoff_resume_at is not None
    with c._lock:
        c._flow.resume_locked()
    c._backoff_signal(True)
    assert c.backoff_counter == 1 and rdys(c) == [0, 0]  # shorter block again
    with c._lock:
        c._flow.resume_locked()
    c._backoff_signal(True)
    assert c.backoff_counter == 0 and not c.in_backoff() and rdys(c) == [5, 5]


def test_backoff_counter_bounded_by_max_duration():
    c = consumer_with(1, max_in_flight=1, backoff_multiplier=1.0, max_backoff_duration=8.0)
    for _ in range(10):
        c._flow.backoff_resume_at = None
        c._backoff_signal(False)
    assert c.backoff_counter == 3  # 2**3 = 8 s is the longest allowed
    c2 = consumer_with(1, max_in_flight=1, max_backoff_duration=0)
    c2._backoff_signal(False)
    assert c2.backoff_counter == 0 and not c2.in_backoff()


def test_requeue_delay_from_attempts():
    c = Consumer("t", "c", lambda m: None, requeue_delay=90, max_requeue_delay=900)
    assert c._pool._requeue_delay_ms(Message(b"0" * 16, b"", 0, 1)) == 90000
    assert c._pool._requeue_delay_ms(Message(b"0" * 16, b"", 0, 3)) == 270000
    assert c._pool._requeue_delay_ms(Message(b"0" * 16, b"", 0, 50)) == 900000


@pytest.mark.parametrize("kwargs", [
    dict(topic="bad topic"), dict(channel="x" * 65), dict(max_in_flight=-1), dict(concurrency=0),
])
def test_consumer_argument_validation(kwargs):
    args = dict(topic="t", channel="c", handler=lambda m: None)
    args.update(kwargs)
    with pytest.raises(ValueError):
        Consumer(**args)


def test_identify_fields_from_consumer_options():
    c = Consumer("t", "c", lambda m: None, msg_timeout=1.5, heartbeat_interval=5, deflate=True,
                 output_buffer_timeout=0.1, sample_rate=10, user_agent="ua/1")
    assert c.identify == {"msg_timeout": 1500, "heartbeat_interval": 5000, "deflate": True,
                          "output_buffer_timeout": 100, "sample_rate": 10, "user_agent": "ua/1"}
    assert Consumer("t", "c", lambda m: None, output_buffer_timeout=-1).identify == {"output_buffer_timeout": -1}


def test_producer_identify_options_use_seconds():
    from nsqd_sync.client import Producer

    p = Producer("127.0.0.1:1", heartbeat_interval=2.5, msg_timeout=None, deflate=False, client_id="x",
                 output_buffer_timeout=0.25, snappy=True)
    assert p.identify_options == {"heartbeat_interval": 2500, "client_id": "x", "output_buffer_timeout": 250,
                                  "snappy": True}
    assert p.features == {} and not p.connected
    p.close()
