"""SIGTERM under load: nothing the node answered OK is lost (queued, in flight or deferred).

Each round starts a node (``--mem-queue-size=100``, so messages sit both in
memory and on disk), runs publishers (PUB, MPUB and DPUB with an hour's
delay) on a topic with a channel and on one without, and a consumer that
FINs some messages, REQs some for an hour (deferred) and holds the rest in
flight.  Under that load the node gets SIGTERM; it must exit 0.  After a
restart on the same data dir every message answered OK comes back (except
those the consumer FIN'd), nothing that was never sent, nothing twice.

CI size: 1 round of >= 3,000 messages; ``--reliability-long``: 10 rounds of ~30,000.
"""
from __future__ import annotations

import os

import pytest

from tests.helpers import NodeProcess, http_request, wait_for
from tests.reliability.load import HoldingConsumer, LoadPublisher, check_recovered

pytestmark = pytest.mark.timeout(600)

ARGS = ("--mem-queue-size=100",)


def _round(data_path: str, target: int) -> dict:
    node = NodeProcess("nsqd", data_path=data_path, args=list(ARGS))
    try:
        for path in ("/topic/create?topic=load", "/channel/create?topic=load&channel=c",
                     "/topic/create?topic=nochan"):
            assert http_request(node.http_port, path, method="POST")[0] == 200
        consumer = HoldingConsumer(node.tcp_port, "load", "c", hold=100)
        pubs = [LoadPublisher(node.tcp_port, "load", "a", dpub_every=5),
                LoadPublisher(node.tcp_port, "load", "b"),
                LoadPublisher(node.tcp_port, "nochan", "n", dpub_every=7)]
        consumer.start()
        for p in pubs:
            p.start()
        wait_for(lambda: sum(p.count() for p in pubs) >= target and consumer.counts()[0] >= 50
                 and consumer.counts()[1] >= 20, timeout=120,
                 message="%d messages published and some held and deferred by the consumer" % target)
        rc = node.stop()
        assert rc == 0, node.log_text()[-3000:]
        for t in pubs + [consumer]:
            t.join(15)
            assert not t.is_alive(), t.name
        log = node.log_text()
        assert "Traceback" not in log, log[-3000:]
    finally:
        node.kill()
    return {"pubs": pubs, "consumer": consumer}


def test_sigterm_under_load_loses_nothing(tmp_path, scale):
    rounds, target = scale(1, 10), scale(3000, 30000)
    totals = {"acked": 0, "in_flight": 0, "deferred": 0}
    for r in range(rounds):
        data = str(tmp_path / ("round%d" % r))
        os.makedirs(data)
        state = _round(data, target)
        pubs, consumer = state["pubs"], state["consumer"]
        node = NodeProcess("nsqd", data_path=data, args=list(ARGS))
        try:
            load_acked = set().union(*(p.acked for p in pubs if p.topic == "load"))
            load_sent = set().union(*(p.sent for p in pubs if p.topic == "load"))
            must = load_acked - consumer.finished
            assert consumer.held <= must and consumer.requeued <= must
            check_recovered(node.tcp_port, "load", "c", must, may=load_sent)
            nochan = [p for p in pubs if p.topic == "nochan"][0]
            check_recovered(node.tcp_port, "nochan", "c2", nochan.acked, may=nochan.sent)
            totals["acked"] += len(load_acked) + len(nochan.acked)
            totals["in_flight"] += len(consumer.held)
            totals["deferred"] += len(consumer.requeued) + sum(len(p.deferred) for p in pubs)
        finally:
            assert node.stop() == 0
    print("SIGTERM under load: %d rounds, %d messages answered OK (%d in flight, %d deferred at "
          "the signal), none lost" % (rounds, totals["acked"], totals["in_flight"], totals["deferred"]))
