"""kill -9 in a loop, in sync mode: every message answered OK survives.

With ``--mem-queue-size=0 --sync-every=1`` each round starts the node on
the same data dir, runs PUB/MPUB publishers on a topic with a channel and
on one without, and kills the node with SIGKILL in the middle of the
traffic.  After the last round every message ever answered OK is there,
exactly once; nothing that was never sent.

What does not survive a kill -9, in any mode (README, Durability): messages
in flight to a consumer and deferred ones (DPUB to a channel, REQ with a
delay) live only in memory.  The second test pins that down, so the README
stays true.

CI size: 2 rounds of >= 200 OKs per publisher; ``--reliability-long``: 20 rounds of >= 3,000.
"""
from __future__ import annotations

import json

import pytest

from tests.helpers import CommandConn, NodeProcess, consume_all, http_request, wait_for
from tests.reliability.load import HOUR_MS, LoadPublisher, check_recovered

pytestmark = pytest.mark.timeout(600)

SYNC = ("--mem-queue-size=0", "--sync-every=1")


def _kill9(node: NodeProcess) -> None:
    node.kill()
    assert node.proc.returncode == -9, node.proc.returncode


def test_kill9_loop_loses_no_acknowledged_message(tmp_path, scale):
    rounds, target = scale(2, 20), scale(200, 3000)
    data = str(tmp_path)
    acked = {"k": set(), "kn": set()}
    sent = {"k": set(), "kn": set()}
    for r in range(rounds):
        node = NodeProcess("nsqd", data_path=data, args=list(SYNC))
        try:
            if r == 0:
                for path in ("/topic/create?topic=k", "/channel/create?topic=k&channel=c",
                             "/topic/create?topic=kn"):
                    assert http_request(node.http_port, path, method="POST")[0] == 200
            pubs = [LoadPublisher(node.tcp_port, t, "%s%d" % (t, r)) for t in ("k", "kn")]
            for p in pubs:
                p.start()
            wait_for(lambda: all(p.count() >= target for p in pubs), timeout=120,
                     message="%d OKs per publisher" % target)
        finally:
            _kill9(node)
        for p in pubs:
            p.join(15)
            assert not p.is_alive()
            assert p.error is not None or p.refusal is not None
            acked[p.topic] |= p.acked
            sent[p.topic] |= p.sent
    node = NodeProcess("nsqd", data_path=data, args=list(SYNC))
    try:
        got_k = check_recovered(node.tcp_port, "k", "c", acked["k"], may=sent["k"])
        got_kn = check_recovered(node.tcp_port, "kn", "c", acked["kn"], may=sent["kn"])
    finally:
        assert node.stop() == 0
    print("kill -9 loop: %d rounds, %d messages answered OK, %d recovered (%d sent but unanswered "
          "also came back), none lost" % (rounds, len(acked["k"]) + len(acked["kn"]), len(got_k) + len(got_kn),
                                          len(got_k) + len(got_kn) - len(acked["k"]) - len(acked["kn"])))


def _channel(node: NodeProcess) -> dict:
    status, body, _ = http_request(node.http_port, "/stats?format=json&topic=t&channel=c")
    assert status == 200
    return json.loads(body)["topics"][0]["channels"][0]


def test_kill9_loses_in_flight_and_deferred_keeps_queued(tmp_path):
    """What the README says survives a kill -9 in sync mode, counted."""
    data = str(tmp_path)
    node = NodeProcess("nsqd", data_path=data, args=list(SYNC))
    try:
        pub = CommandConn(node.tcp_port)
        held = [b"held-%03d" % i for i in range(100)]
        queued = [b"queued-%03d" % i for i in range(100)]
        pub.mpub("t", [b"first"])  # creates the topic
        sub = CommandConn(node.tcp_port, timeout=10)
        sub.sub("t", "c")
        sub.send("RDY 1")
        first = sub.message()
        sub.send("FIN %s" % first[2].decode())
        pub.mpub("t", held)
        sub.send("RDY 200")
        got = [sub.message() for _ in range(100)]
        assert sorted(m[3] for m in got) == held
        for m in got[:50]:  # half of them REQ'd for an hour: deferred on the node
            sub.send("REQ %s %d" % (m[2].decode(), HOUR_MS))
        sub.send("RDY 0")
        wait_for(lambda: _channel(node)["clients"][0]["ready_count"] == 0, message="RDY 0 taken")
        dpubs = [b"dpub-%03d" % i for i in range(50)]
        for b in dpubs:
            pub.dpub("t", HOUR_MS, b)
        pub.mpub("t", queued)
        to_disk = [b"dpub-no-channel-%02d" % i for i in range(20)]
        for b in to_disk:  # a topic without a channel: past --mem-queue-size=0, to disk
            pub.dpub("tn", HOUR_MS, b)
        wait_for(lambda: (lambda c: (c["depth"], c["in_flight_count"], c["deferred_count"]))(_channel(node))
                 == (100, 50, 100), message="100 queued, 50 in flight, 100 deferred")
    finally:
        _kill9(node)
    node = NodeProcess("nsqd", data_path=data, args=list(SYNC))
    try:
        got = set(consume_all(node.tcp_port, "t", "c", at_least=len(queued)))
        got_tn = set(consume_all(node.tcp_port, "tn", "c", at_least=len(to_disk)))
    finally:
        assert node.stop() == 0
    assert set(queued) <= got, "queued messages answered OK were lost"
    assert got_tn == set(to_disk), "DPUBs to a topic without a channel went to disk (delay lost, as NSQ)"
    # in memory only, as in nsqd 1.3.0: in flight (50) and deferred (50 REQ'd, 50 DPUB'd) are gone
    assert not got & (set(held) | set(dpubs)), sorted(got & (set(held) | set(dpubs)))[:5]
