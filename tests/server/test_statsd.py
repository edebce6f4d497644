"""statsd: NSQ's metric names pushed over UDP to a socket the test listens on."""
from __future__ import annotations

import re
import socket
import time
from typing import Callable, List

import pytest
import requests

from nsqd_sync import statsd, wire
from nsqd_sync.options import Options
from tests.helpers import NodeProcess, RawConn

pytestmark = pytest.mark.timeout(60)

PACKET = 200
_LINE = re.compile(rb"[^\s:|]+:-?\d+\|[cg]")


@pytest.fixture
def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def collect(sock: socket.socket, until: Callable[[List[bytes]], bool], timeout: float = 10.0) -> List[bytes]:
    """Datagrams received until `until(datagrams)` holds (bounded by timeout)."""
    got: List[bytes] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        if time.monotonic() > deadline:
            raise AssertionError("statsd datagrams never satisfied the condition: %r" % got[-5:])
        try:
            got.append(sock.recv(65536))
        except socket.timeout:
            continue
    return got


def lines_of(datagrams: List[bytes]) -> List[bytes]:
    out = []
    for d in datagrams:
        assert d.endswith(b"\n")
        out.extend(d[:-1].split(b"\n"))
    return out


def pushes(datagrams: List[bytes], prefix: bytes) -> List[List[bytes]]:
    """Split the line stream into pushes: each push ends with mem.gc_runs."""
    out, current = [], []
    for line in lines_of(datagrams):
        current.append(line)
        if line.startswith(prefix + b"mem.gc_runs:"):
            out.append(current)
            current = []
    return out


def test_pushes_nsq_metric_names(tmp_path, udp):
    port = udp.getsockname()[1]
    node = NodeProcess("nsqd", args=[
        "--statsd-address=127.0.0.1:%d" % port, "--statsd-interval=300ms",
        "--statsd-udp-packet-size=%d" % PACKET, "--broadcast-address=127.0.0.1", "--statsd-exclude-ephemeral",
        "--e2e-processing-latency-percentile=0.99,0.5"], data_path=str(tmp_path))
    try:
        base = "http://%s" % node.http_address
        prefix = b"nsq.127_0_0_1_%d." % node.http_port
        conn = RawConn(node.tcp_port, timeout=10.0)
        conn.identify()
        conn.send("SUB sd_t ch")
        assert conn.frame_skip_heartbeats() == (wire.FRAME_TYPE_RESPONSE, b"OK")
        requests.post(base + "/mpub?topic=sd_t", data=b"a\nbb\nccc", timeout=10)
        requests.post(base + "/topic/create?topic=sd_eph%23ephemeral", timeout=10)
        requests.post(base + "/channel/create?topic=sd_t&channel=eph%23ephemeral", timeout=10)
        # skip pushes from before the messages; the stream may then start mid-push: use the second
        datagrams = collect(udp, lambda d: any(
            b"topic.sd_t.message_count:3|c" in line for line in lines_of(d)))
        datagrams = collect(udp, lambda d: len(pushes(d, prefix)) >= 2)
        assert all(len(d) <= PACKET for d in datagrams)
        lines = lines_of(datagrams)
        assert all(line.startswith(prefix) and _LINE.fullmatch(line[len(prefix):]) for line in lines), lines
        push = [line[len(prefix):] for line in pushes(datagrams, prefix)[1]]
        assert push[:6] == [
            b"topic.sd_t.message_count:0|c",  # a delta: nothing new since the last push
            b"topic.sd_t.message_bytes:0|c",
            b"topic.sd_t.depth:0|g",
            b"topic.sd_t.backend_depth:0|g",
            b"topic.sd_t.e2e_processing_latency_99:0|g",
            b"topic.sd_t.e2e_processing_latency_50:0|g",
        ]
        assert push[6:17] == [
            b"topic.sd_t.channel.ch.message_count:0|c",
            b"topic.sd_t.channel.ch.depth:3|g",
            b"topic.sd_t.channel.ch.backend_depth:0|g",
            b"topic.sd_t.channel.ch.in_flight_count:0|g",
            b"topic.sd_t.channel.ch.deferred_count:0|g",
            b"topic.sd_t.channel.ch.requeue_count:0|c",
            b"topic.sd_t.channel.ch.timeout_count:0|c",
            b"topic.sd_t.channel.ch.clients:1|g",
            b"topic.sd_t.channel.ch.e2e_processing_latency_99:0|g",
            b"topic.sd_t.channel.ch.e2e_processing_latency_50:0|g",
            b"mem.heap_objects:" + push[16][len(b"mem.heap_objects:"):],
        ]
        assert [line.split(b":")[0] for line in push[16:]] == [
            b"mem.heap_objects", b"mem.heap_idle_bytes", b"mem.heap_in_use_bytes", b"mem.heap_released_bytes",
            b"mem.gc_pause_usec_100", b"mem.gc_pause_usec_99", b"mem.gc_pause_usec_95", b"mem.next_gc_bytes",
            b"mem.gc_runs"]
        assert not any(b"ephemeral" in line for line in lines)  # --statsd-exclude-ephemeral
        # counters are deltas between pushes
        requests.post(base + "/mpub?topic=sd_t", data=b"d\ne", timeout=10)
        datagrams = collect(udp, lambda d: prefix + b"topic.sd_t.channel.ch.message_count:2|c" in lines_of(d))
        assert prefix + b"topic.sd_t.message_count:2|c" in lines_of(datagrams)
        assert prefix + b"topic.sd_t.message_bytes:2|c" in lines_of(datagrams)
        conn.close()
    finally:
        assert node.stop() == 0
    assert "STATSD: pushing stats to 127.0.0.1:%d" % port in node.log_text()


def test_custom_prefix_no_mem_stats_and_ephemeral_included(tmp_path, udp):
    port = udp.getsockname()[1]
    node = NodeProcess("nsqd", args=["--statsd-address=127.0.0.1:%d" % port, "--statsd-interval=300ms",
                                     "--statsd-prefix=custom", "--statsd-mem-stats=false"],
                       data_path=str(tmp_path))
    try:
        requests.post("http://%s/topic/create?topic=eph%%23ephemeral" % node.http_address, timeout=10)
        datagrams = collect(udp, lambda d: any(b"custom.topic.eph#ephemeral.depth:0|g" in line
                                               for line in lines_of(d)))
        assert all(len(d) <= 508 for d in datagrams)  # the default packet size
        assert not any(b".mem." in line or line.startswith(b"custom.mem") for line in lines_of(datagrams))
    finally:
        assert node.stop() == 0


def test_unreachable_statsd_does_not_hurt(tmp_path):
    """Datagrams to a port nobody listens on are dropped; the node carries on."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    node = NodeProcess("nsqd", args=["--statsd-address=127.0.0.1:%d" % port, "--statsd-interval=100ms"],
                       data_path=str(tmp_path))
    try:
        deadline = time.monotonic() + 10
        while node.log_text().count("STATSD: pushing stats") < 3:
            assert time.monotonic() < deadline, "statsd thread stopped pushing"
            time.sleep(0.05)
        assert requests.get("http://%s/ping" % node.http_address, timeout=10).text == "OK"
    finally:
        assert node.stop() == 0
    assert "STATSD: closing" in node.log_text()


# ---------------------------------------------------------------- the pieces

def test_host_key_and_prefix():
    assert statsd.host_key("vm:4151") == "vm_4151"
    assert statsd.host_key("10.0.0.1:4151") == "10_0_0_1_4151"
    opts = Options(broadcast_address="my.host")
    assert statsd.statsd_prefix(opts, 4151) == "nsq.my_host_4151."
    opts = Options(broadcast_address="h", broadcast_http_port=9999, statsd_prefix="a.%s.b.")
    assert statsd.statsd_prefix(opts, 4151) == "a.h_9999.b."
    assert statsd.statsd_prefix(Options(statsd_prefix=""), 4151) == ""


def test_packets_keep_lines_whole():
    lines = [b"x" * 40 + b"\n"] * 5 + [b"y" * 300 + b"\n", b"z\n"]
    out = statsd.packets(lines, 100)
    assert out == [b"x" * 40 + b"\n" + b"x" * 40 + b"\n"] * 2 + [b"x" * 40 + b"\n", b"y" * 300 + b"\n", b"z\n"]
    assert statsd.packets([], 100) == []


def test_metric_lines_deltas_and_percentiles():
    e2e = {"count": 2, "percentiles": [{"quantile": 0.999, "value": 1500.0}]}
    channel = {"channel_name": "c", "message_count": 5, "depth": 1, "backend_depth": 0, "in_flight_count": 2,
               "deferred_count": 0, "requeue_count": 3, "timeout_count": 1, "client_count": 1,
               "e2e_processing_latency": e2e}
    topic = {"topic_name": "t", "message_count": 7, "message_bytes": 70, "depth": 2, "backend_depth": 1,
             "e2e_processing_latency": e2e, "channels": [channel]}
    last = {"topics": [dict(topic, message_count=4, message_bytes=40,
                            channels=[dict(channel, message_count=5, requeue_count=1)])]}
    lines = statsd.metric_lines("p.", {"topics": [topic]}, last, False)
    assert lines[:5] == [b"p.topic.t.message_count:3|c\n", b"p.topic.t.message_bytes:30|c\n",
                         b"p.topic.t.depth:2|g\n", b"p.topic.t.backend_depth:1|g\n",
                         b"p.topic.t.e2e_processing_latency_100:1500|g\n"]
    assert b"p.topic.t.channel.c.message_count:0|c\n" in lines
    assert b"p.topic.t.channel.c.requeue_count:2|c\n" in lines
    assert b"p.topic.t.channel.c.timeout_count:0|c\n" in lines
    assert lines[-1] == b"p.topic.t.channel.c.e2e_processing_latency_100:1500|g\n"
