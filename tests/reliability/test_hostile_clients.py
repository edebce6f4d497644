"""Consumers that never read and sockets that sit idle (issue 12 #12 and the reliability suite).

Hostile consumers IDENTIFY with a 1 s heartbeat, subscribe with RDY 2500
and a small receive buffer, and never read (they send a NOP now and then,
so the read deadline does not close them first): once the kernel's buffers are
full the node's write makes no progress for the heartbeat interval, and
the node closes them with a WARNING naming the client and the reason
(before issue 12 #12 this was a debug line, invisible at the default
level).  Their in-flight messages go back to their channels (none lost).
Idle sockets (no magic; magic and IDENTIFY then silence; half a command)
are closed by the node's read deadline and logged.  Meanwhile a canary
client and a healthy consumer on the same topic never notice, and the
node's threads and file descriptors come back to their baseline.

CI size: 4 never-reading consumers, 10 idle sockets of each kind;
``--reliability-long``: 20 and 100.
"""
from __future__ import annotations

import json
import re
import socket
import struct
import threading
from typing import List

import pytest

from nsqd_sync import wire
from tests.helpers import CommandConn, NodeProcess, http_request, wait_for
from tests.reliability.canary import Canary, fds, settled, threads

pytestmark = pytest.mark.timeout(150)

BODY = 64 * 1024
MESSAGES = 400  # 25 MB per channel: more than loopback's socket buffers hold


def _identify_frame(**fields) -> bytes:
    body = json.dumps(dict(fields, feature_negotiation=True)).encode()
    return b"IDENTIFY\n" + struct.pack(">i", len(body)) + body


def _never_reading_consumer(port: int, topic: str, channel: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(wire.MAGIC_V2 + _identify_frame(heartbeat_interval=1000)
              + b"SUB %s %s\nRDY 2500\n" % (topic.encode(), channel.encode()))
    return s


class NopSender(threading.Thread):
    """Keeps the hostile consumers' read deadline from firing: a NOP every 0.3 s, never a read."""

    def __init__(self, socks: List[socket.socket]) -> None:
        super().__init__(name="test-nop-sender", daemon=True)
        self.socks = list(socks)
        self.stop_event = threading.Event()

    def run(self) -> None:
        while self.socks and not self.stop_event.wait(0.3):
            for s in list(self.socks):
                try:
                    s.sendall(b"NOP\n")
                except OSError:  # closed by the node
                    self.socks.remove(s)


def _closed_by_peer(s: socket.socket) -> bool:
    """The node closed this socket (EOF or reset after whatever it had sent)."""
    s.settimeout(0)
    try:
        while True:
            if not s.recv(1 << 20):
                return True
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _channel_stats(node: NodeProcess, topic: str) -> dict:
    status, body, _ = http_request(node.http_port, "/stats?format=json&topic=" + topic)
    assert status == 200
    topics = json.loads(body)["topics"]
    return {c["channel_name"]: c for t in topics for c in t["channels"]}


def test_never_reading_consumers_and_idle_sockets(tmp_path, scale):
    hostile_count = scale(4, 20)
    idle_count = scale(10, 100)
    topic = "flood"
    with NodeProcess("nsqd", ["--max-heartbeat-interval=2s"], data_path=tmp_path) as node:
        # topics and channels keep threads of their own: create them before the baseline
        for path in ["/topic/create?topic=canary", "/topic/create?topic=flood", "/channel/create?topic=canary&channel=ch", "/channel/create?topic=flood&channel=healthy"] + [
                "/channel/create?topic=flood&channel=hostile%d" % i for i in range(hostile_count)]:
            assert http_request(node.http_port, path, method="POST")[0] == 200
        base_threads = settled(lambda: threads(node.pid))
        base_fds = settled(lambda: fds(node.pid))
        canary = Canary(node.tcp_port)
        canary.start()

        healthy = CommandConn(node.tcp_port, timeout=30)
        healthy.identify()
        healthy.sub(topic, "healthy")
        healthy.send("RDY 100")
        hostile = [_never_reading_consumer(node.tcp_port, topic, "hostile%d" % i) for i in range(hostile_count)]
        hostile_ports = {s.getsockname()[1] for s in hostile}
        nops = NopSender(hostile)
        nops.start()
        wait_for(lambda: len(_channel_stats(node, topic)) == hostile_count + 1, timeout=10,
                 message="every consumer subscribed")

        idle: List[socket.socket] = []
        for _ in range(idle_count):
            idle.append(socket.create_connection(("127.0.0.1", node.tcp_port), timeout=10))  # no magic
            s = socket.create_connection(("127.0.0.1", node.tcp_port), timeout=10)
            s.sendall(wire.MAGIC_V2 + _identify_frame(heartbeat_interval=1000))  # then silence
            idle.append(s)
            s = socket.create_connection(("127.0.0.1", node.tcp_port), timeout=10)
            s.sendall(wire.MAGIC_V2 + _identify_frame(heartbeat_interval=1000) + b"PUB flood\n\x00\x00")
            idle.append(s)  # half a PUB, never finished

        publisher = CommandConn(node.tcp_port, timeout=30)
        body = b"x" * BODY
        for _ in range(MESSAGES // 20):
            publisher.mpub(topic, [body] * 20)

        # the healthy consumer gets every message while the hostile ones block their writes
        for _ in range(MESSAGES):
            _, _, mid, got = healthy.message()
            assert got == body
            healthy.send("FIN " + mid.decode())

        def warned() -> set:
            return set(int(p) for p in re.findall(
                r"WARNING: client\(127\.0\.0\.1:(\d+)\): closing - write timed out after 1s: "
                r"output buffer full, the client is not reading", node.log_text()))
        # (polled in the log: reading the hostile sockets to see them closed would drain them)
        wait_for(lambda: warned() == hostile_ports, timeout=30,
                 message="a WARNING for each never-reading consumer (%s)" % sorted(hostile_ports))
        wait_for(lambda: all(_closed_by_peer(s) for s in hostile + idle), timeout=30,
                 message="the node closed every hostile and idle socket")
        log = node.log_text()
        assert log.count("failed to read protocol version") >= idle_count

        # nothing the hostile consumers held is lost: back in their channels
        def requeued() -> bool:
            chans = _channel_stats(node, topic)
            return all(chans["hostile%d" % i]["depth"] == MESSAGES and chans["hostile%d" % i]["in_flight_count"] == 0
                       and not chans["hostile%d" % i]["clients"] for i in range(hostile_count))
        wait_for(requeued, timeout=15, message="hostile consumers' messages back in their channels")

        nops.stop_event.set()
        nops.join(5)
        for s in hostile + idle:
            s.close()
        healthy.close()
        publisher.close()
        canary.stop()
        canary.check(min_rounds=20)
        wait_for(lambda: threads(node.pid) <= base_threads and fds(node.pid) <= base_fds, timeout=15,
                 message="threads %d -> %d and fds %d -> %d back to baseline"
                 % (base_threads, threads(node.pid), base_fds, fds(node.pid)))
        assert "Traceback" not in node.log_text()
        assert node.stop() == 0
