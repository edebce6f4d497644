"""Misbehaving clients against a real node: malformed and truncated frames,
clients that vanish mid-frame or never read, many clients at once, and
shutdown with clients connected.  Whatever one client does, the node keeps
serving everyone else and no message answered with OK is lost.
"""
from __future__ import annotations

import random
import signal
import socket
import struct
import threading
import time
from typing import Dict, List, Set

import pytest

from nsqd_sync import wire
from tests.conftest import ProtoConn, body_frame
from tests.helpers import NodeProcess, http_request, wait_for

pytestmark = pytest.mark.timeout(90)


def assert_closed_allowing_errors(conn: ProtoConn, timeout: float = 5.0) -> None:
    """The server closes the connection; error frames and heartbeats may come first."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "connection still open"
        conn.sock.settimeout(remaining)
        try:
            ft, data = conn.frame()
        except (EOFError, ConnectionResetError, BrokenPipeError):
            return
        except socket.timeout:
            raise AssertionError("connection still open after %.1fs" % timeout) from None
        assert ft == wire.FRAME_TYPE_ERROR or data == wire.HEARTBEAT, (ft, data[:100])


def assert_node_healthy(node: NodeProcess, conns, topic: str) -> None:
    """The node answers /ping and still carries a message from a new producer to a new consumer."""
    status, body, _ = http_request(node.http_port, "/ping")
    assert (status, body) == (200, b"OK")
    consumer = conns(node)
    consumer.sub(topic, "health", rdy=1)
    conns(node).pub(topic, b"healthy")
    assert consumer.message().body == b"healthy"


def thread_count(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads line")


def rst_close(conn: ProtoConn) -> None:
    """Close with a TCP reset instead of a FIN."""
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.sock.close()


# ---------------------------------------------------------------- truncated and vanishing clients

@pytest.mark.parametrize("rst", [False, True], ids=["close", "reset"])
def test_truncated_commands_then_disconnect_publish_nothing(nsqd, conns, rst):
    topic = "t"
    consumer = conns(nsqd)
    consumer.sub(topic, "c", rdy=10)
    t = topic.encode()
    partials = [
        b"SUB " + t,                                           # mid-line
        b"PUB " + t + b"\n",                                  # before the size
        b"PUB " + t + b"\n\x00\x00",                          # mid-size
        b"PUB " + t + b"\n" + struct.pack(">i", 100) + b"x" * 50,  # mid-body
        b"MPUB " + t + b"\n" + struct.pack(">i", 20) + wire.mpub_body([b"abc"])[:9],
        b"DPUB " + t + b" 0\n" + struct.pack(">i", 10) + b"12345",
        b"IDENTIFY\n" + struct.pack(">i", 100) + b'{"client_id":',
        b"AUTH\n" + struct.pack(">i", 10),
        b" V",                                                # mid-magic
    ]
    for data in partials:
        c = conns(nsqd, magic=b"" if data == b" V" else wire.MAGIC_V2)
        c.send_raw(data)
        time.sleep(0.01)  # let the node read the partial frame before the client goes
        if rst:
            rst_close(c)
        else:
            c.close()
    conns(nsqd).pub(topic, b"marker")
    assert consumer.message().body == b"marker"  # nothing from a truncated PUB/MPUB/DPUB got in
    consumer.assert_silent(0.2)
    assert_node_healthy(nsqd, conns, "health")
    assert "Traceback" not in nsqd.log_text()


def test_consumer_vanishing_with_messages_in_flight_loses_nothing(nsqd, conns):
    conns(nsqd).mpub("t", [b"%d" % i for i in range(20)])
    vanisher = conns(nsqd)
    vanisher.identify(msg_timeout=1000)
    vanisher.sub("t", "c", rdy=5)
    held = vanisher.messages(5)
    rst_close(vanisher)
    survivor = conns(nsqd)
    survivor.sub("t", "c", rdy=20)
    got = []
    for _ in range(20):
        m = survivor.message(timeout=8.0)
        survivor.fin(m.id)
        got.append(m)
    assert sorted(int(m.body) for m in got) == list(range(20))
    again = {m.id: m.attempts for m in got}
    assert all(again[m.id] == 2 for m in held)


def test_garbage_streams_close_only_their_connection(nsqd, conns):
    consumer = conns(nsqd)
    consumer.sub("t", "c", rdy=10)
    rng = random.Random(4150)
    bad = []
    for _ in range(5):
        c = conns(nsqd)
        c.send_raw(bytes(rng.getrandbits(8) for _ in range(4096)))
        bad.append(c)
    long_line = conns(nsqd)
    try:
        long_line.send_raw(b"A" * (1024 * 1024))  # a command line that never ends
    except (ConnectionResetError, BrokenPipeError):
        pass  # closed while we were still sending: fine
    bad.append(long_line)
    for c in bad:
        assert_closed_allowing_errors(c)
    conns(nsqd).pub("t", b"fine")
    assert consumer.message().body == b"fine"
    assert_node_healthy(nsqd, conns, "health")
    assert "Traceback" not in nsqd.log_text()


def test_idle_connections_without_magic_do_not_block_others(nsqd, conns):
    idle = [conns(nsqd, magic=b"") for _ in range(20)]
    half = [conns(nsqd, magic=b"  ") for _ in range(5)]
    assert_node_healthy(nsqd, conns, "t")
    for c in idle + half:
        c.close()


def test_connection_churn_leaks_no_threads(nsqd, conns):
    base = thread_count(nsqd.proc.pid)
    for i in range(100):
        c = conns(nsqd, magic=b"" if i % 3 == 0 else wire.MAGIC_V2)
        if i % 3 == 1:
            c.sub("churn", "c", rdy=1)
        elif i % 3 == 2:
            c.send_raw(b"PUB churn\n\x00")
        if i % 2:
            rst_close(c)
        else:
            c.close()
    wait_for(lambda: thread_count(nsqd.proc.pid) <= base + 5, timeout=10,
             message="threads back near %d (now %d)" % (base, thread_count(nsqd.proc.pid)))
    assert_node_healthy(nsqd, conns, "health")
    assert "Traceback" not in nsqd.log_text()


# ---------------------------------------------------------------- a client that never reads

def test_client_that_never_reads_does_not_stall_others(nsqd, conns):
    topic = "flood"
    body_size = 32 * 1024
    n = 120
    stuck = conns(nsqd, magic=b"")
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.send_raw(wire.MAGIC_V2)
    stuck.identify(msg_timeout=1000)
    stuck.sub(topic, "c", rdy=n)  # then never reads again
    worker = conns(nsqd)
    worker.sub(topic, "c", rdy=n)
    watcher = conns(nsqd)
    watcher.sub(topic, "other", rdy=n)
    producer = conns(nsqd)
    bodies = [b"%04d" % i + b"." * (body_size - 4) for i in range(n)]
    for i in range(0, n, 10):
        t0 = time.monotonic()
        producer.mpub(topic, bodies[i:i + 10])
        assert time.monotonic() - t0 < 3.0, "publishing stalled behind a stuck consumer"

    # the other channel gets everything at once
    other = [watcher.message(timeout=10.0) for _ in range(n)]
    for m in other:
        watcher.fin(m.id)
    assert sorted(m.body[:4] for m in other) == sorted(b[:4] for b in bodies)

    # the same channel: whatever the stuck client took times out and comes to the worker
    seen: Set[bytes] = set()
    deadline = time.monotonic() + 20
    while len(seen) < n:
        assert time.monotonic() < deadline, "only %d of %d messages reached the worker" % (len(seen), n)
        m = worker.message(timeout=10.0)
        worker.fin(m.id)
        seen.add(m.body[:4])
    assert seen == {b[:4] for b in bodies}
    conns(nsqd).pub(topic, b"x")  # publishing still works


# ---------------------------------------------------------------- many clients at once

def test_fifty_concurrent_producers_and_consumers(nsqd, conns):
    producers, consumers, per_producer = 50, 50, 20
    topic = "busy"
    subs: List[ProtoConn] = []
    for _ in range(consumers):
        c = conns(nsqd)
        c.sub(topic, "c", rdy=5)
        subs.append(c)
    received: Dict[int, List[bytes]] = {i: [] for i in range(consumers)}
    errors: List[BaseException] = []
    stop = threading.Event()

    def consume(i: int) -> None:
        c = subs[i]
        try:
            while not stop.is_set():
                try:
                    m = c.message(timeout=0.2)
                except OSError:
                    continue
                received[i].append(m.body)
                c.fin(m.id)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def produce(i: int) -> None:
        try:
            p = conns(nsqd)
            p.identify(client_id="producer-%d" % i)
            bodies = [b"p%02d-%02d" % (i, k) for k in range(per_producer)]
            p.mpub(topic, bodies[:10])
            for b in bodies[10:]:
                p.pub(topic, b)
            p.close()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    cthreads = [threading.Thread(target=consume, args=(i,), name="consume-%d" % i) for i in range(consumers)]
    pthreads = [threading.Thread(target=produce, args=(i,), name="produce-%d" % i) for i in range(producers)]
    for t in cthreads + pthreads:
        t.start()
    total = producers * per_producer
    try:
        for t in pthreads:
            t.join(30)
        wait_for(lambda: sum(len(v) for v in received.values()) >= total or errors, timeout=30,
                 message="all messages consumed")
        time.sleep(0.2)  # a duplicate would arrive here
    finally:
        stop.set()
        for t in cthreads:
            t.join(5)
    assert not errors, errors[:3]
    got = [b for v in received.values() for b in v]
    expected = sorted(b"p%02d-%02d" % (i, k) for i in range(producers) for k in range(per_producer))
    assert sorted(got) == expected
    assert sum(1 for v in received.values() if v) > 1  # the channel's messages were shared


def test_unexpected_input_in_one_client_does_not_affect_another(nsqd, conns):
    """Inputs that could raise inside a client's handler close that client only."""
    consumer = conns(nsqd)
    consumer.sub("t", "c", rdy=100)
    producer = conns(nsqd)
    nasty = [
        b"IDENTIFY\n" + body_frame(b"[" * 100000 + b"]" * 100000),
        b"IDENTIFY\n" + body_frame(b'{"heartbeat_interval": 1e400}'),
        b"IDENTIFY\n" + body_frame(b'{"msg_timeout": 99999999999999999999999}'),
        b"IDENTIFY\n" + body_frame(b'{"client_id": "\\ud800"}'),
        b"IDENTIFY\n" + body_frame(b"\xff\xfe{}"),
        b"SUB t \xff\xfe\n",
        b"RDY 99999999999999999999999999\n",
        b"DPUB t 99999999999999999999999\n" + body_frame(b"x"),
        b"REQ 0000000000000000 99999999999999999999999999\n",
    ]
    for i, data in enumerate(nasty):
        c = conns(nsqd)
        c.send_raw(data)
        producer.pub("t", b"between-%d" % i)
        assert consumer.message().body == b"between-%d" % i
    # every one of them got an answer or a close, and the node still serves new clients
    assert_node_healthy(nsqd, conns, "health")


# ---------------------------------------------------------------- nothing answered OK is lost

def test_no_message_answered_ok_is_lost(nsqd, conns):
    topic = "ledger"
    consumers = []
    for _ in range(3):
        c = conns(nsqd)
        c.identify(msg_timeout=5000)
        c.sub(topic, "c", rdy=50)
        consumers.append(c)
    published: List[bytes] = []
    lock = threading.Lock()
    errors: List[BaseException] = []

    def produce(k: int) -> None:
        try:
            p = conns(nsqd)
            mine = [b"w%d-%04d" % (k, i) for i in range(500)]
            for i in range(0, 300, 50):
                p.mpub(topic, mine[i:i + 50])
                with lock:
                    published.extend(mine[i:i + 50])
            for b in mine[300:450]:
                p.pub(topic, b)
                with lock:
                    published.append(b)
            for b in mine[450:]:
                p.dpub(topic, 0, b)
                with lock:
                    published.append(b)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    finished: List[bytes] = []
    stop = threading.Event()

    def consume(c: ProtoConn, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                try:
                    m = c.message(timeout=0.2)
                except OSError:
                    continue
                if m.attempts == 1 and rng.random() < 0.1:
                    c.req(m.id, 0)  # give some back once
                    continue
                c.fin(m.id)
                with lock:
                    finished.append(m.body)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    cthreads = [threading.Thread(target=consume, args=(c, i), name="consume-%d" % i)
                for i, c in enumerate(consumers)]
    pthreads = [threading.Thread(target=produce, args=(k,), name="produce-%d" % k) for k in range(4)]
    for t in cthreads + pthreads:
        t.start()
    try:
        for t in pthreads:
            t.join(30)
        wait_for(lambda: len(finished) >= 2000 or errors, timeout=30, message="every message finished")
        time.sleep(0.2)
    finally:
        stop.set()
        for t in cthreads:
            t.join(5)
    assert not errors, errors[:3]
    assert len(published) == 2000
    assert sorted(finished) == sorted(published)


# ---------------------------------------------------------------- shutdown with clients connected

def test_sigterm_with_clients_in_every_state_exits_promptly(nsqd_factory, conns):
    node = nsqd_factory()
    conns(node).mpub("t", [b"x" * 1000] * 200)
    in_flight = conns(node)
    in_flight.sub("t", "c", rdy=10)
    in_flight.messages(10)
    stuck = conns(node, magic=b"")
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.send_raw(wire.MAGIC_V2)
    stuck.sub("t", "c", rdy=2500)  # never reads
    conns(node, magic=b"")  # connected, no magic
    conns(node).send_raw(b"PUB t\n" + struct.pack(">i", 100) + b"partial")
    conns(node).send("IDENTIFY", b'{"heartbeat_interval": 1000}')
    time.sleep(0.1)
    t0 = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    node.proc.wait(10)
    assert time.monotonic() - t0 < 5.0
    assert node.proc.returncode == 0
    # the process is gone, so are its connections: reading hits the end within the deadline
    deadline = time.monotonic() + 2.0
    with pytest.raises((EOFError, ConnectionResetError)):
        while time.monotonic() < deadline:
            in_flight.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            in_flight.frame()
