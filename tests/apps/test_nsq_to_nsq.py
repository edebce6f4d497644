"""nsq_to_nsq end to end: relay between our nsqd nodes, with NSQ's JSON filters."""
from __future__ import annotations

import json
import signal
import socket

from tests.apps.conftest import channel_stats, publish, run_tool, topic_stats
from tests.helpers import NodeProcess, http_request, wait_for


def drained(node, topic, channel):
    c = channel_stats(node, topic, channel)
    return c if c and c["depth"] == 0 and c["in_flight_count"] == 0 and c["deferred_count"] == 0 else None


def relayed(node, topic, channel="check"):
    """Every body in node's topic, read back through a fresh channel with nsq_tail."""
    count = topic_stats(node, topic).get("message_count", 0)
    r = run_tool("nsq_tail", "--topic=" + topic, "--channel=" + channel, "--nsqd-tcp-address=" + node.tcp_address,
                 "-n", str(count), timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split(b"\n")[:-1]


def test_relays_every_message_and_fins_after_the_destination_acknowledged(nsqd_factory, topic, start_tool):
    src, dst = nsqd_factory(), nsqd_factory()
    bodies = [b"relay-%05d" % i for i in range(2000)]
    publish(src, topic, bodies)
    # a channel on the destination topic keeps what arrives, for reading back below
    tool = start_tool("nsq_to_nsq", "--topic=" + topic, "--nsqd-tcp-address=" + src.tcp_address,
                      "--destination-nsqd-tcp-address=" + dst.tcp_address, "--destination-topic=" + topic + "-copy")
    wait_for(lambda: topic_stats(dst, topic + "-copy").get("message_count", 0) >= 2000, timeout=60,
             message="2000 relayed")
    wait_for(lambda: drained(src, topic, "nsq_to_nsq"), timeout=30, message="all FIN'd at the source")
    assert tool.stop() == 0, tool.stderr()
    assert topic_stats(dst, topic + "-copy")["message_count"] == 2000
    assert sorted(relayed(dst, topic + "-copy")) == sorted(bodies)
    assert channel_stats(src, topic, "nsq_to_nsq")["requeue_count"] == 0


def test_json_filters(nsqd_factory, topic, start_tool):
    src, dst = nsqd_factory(), nsqd_factory()
    messages = [
        {"type": "click", "user": 7, "ratio": 0.5, "extra": "<b>&", "n": 1.0},
        {"type": "view", "user": 8},
        {"type": "click", "user": 9, "nested": {"b": 1, "a": [1, 2]}},
        {"type": 5, "user": 10},
        {"user": 11},  # no "type": REQ'd with backoff (NSQ's behaviour), then given up
    ]
    bodies = [json.dumps(m).encode() for m in messages] + [b"not json", b"[1, 2]"]
    publish(src, topic, bodies)
    tool = start_tool("nsq_to_nsq", "--topic=" + topic, "--nsqd-tcp-address=" + src.tcp_address,
                      "--destination-nsqd-tcp-address=" + dst.tcp_address, "--destination-topic=out",
                      "--require-json-field=type", "--require-json-value=click",
                      "--whitelist-json-field=type", "--whitelist-json-field=user",
                      "--whitelist-json-field=extra", "--whitelist-json-field=nested",
                      "--whitelist-json-field=n", "--whitelist-json-field=missing",
                      "--consumer-opt=max_attempts,2", "--consumer-opt=default_requeue_delay,10ms",
                      "--consumer-opt=backoff_multiplier,10ms")
    wait_for(lambda: drained(src, topic, "nsq_to_nsq"), timeout=60, message="all answered at the source")
    wait_for(lambda: topic_stats(dst, "out").get("message_count", 0) >= 2, timeout=30, message="2 relayed")
    assert tool.stop() == 0, tool.stderr()
    assert topic_stats(dst, "out")["message_count"] == 2
    got = sorted(relayed(dst, "out"))
    # only the fields asked for, as Go's encoding/json writes them: sorted keys, <>& escaped,
    # a whole float as an integer
    assert got == sorted([
        b'{"extra":"\\u003cb\\u003e\\u0026","n":1,"type":"click","user":7}',
        b'{"nested":{"a":[1,2],"b":1},"type":"click","user":9}',
    ])
    # the message without the field was requeued (backoff) until max_attempts gave it up
    assert channel_stats(src, topic, "nsq_to_nsq")["requeue_count"] >= 1
    err = tool.stderr()
    assert "Unable to decode json: not json" in err and "missing field to check required value" in err


def test_require_field_without_value_passes_bodies_unchanged(nsqd_factory, topic, start_tool):
    src, dst = nsqd_factory(), nsqd_factory()
    bodies = [b'{"id": 1,  "v": "x"}', b'{"v": "y"}', b'{"id": null}']
    publish(src, topic, bodies)
    tool = start_tool("nsq_to_nsq", "--topic=" + topic, "--nsqd-tcp-address=" + src.tcp_address,
                      "--destination-nsqd-tcp-address=" + dst.tcp_address, "--require-json-field=id")
    wait_for(lambda: drained(src, topic, "nsq_to_nsq"), timeout=60, message="all answered")
    wait_for(lambda: topic_stats(dst, topic).get("message_count", 0) >= 2, timeout=30, message="2 relayed")
    assert tool.stop() == 0, tool.stderr()
    # same topic name at the destination (no --destination-topic); bytes untouched
    assert sorted(relayed(dst, topic)) == sorted([b'{"id": 1,  "v": "x"}', b'{"id": null}'])


def test_round_robin_over_two_destinations(nsqd_factory, topic, start_tool):
    src, d1, d2 = nsqd_factory(), nsqd_factory(), nsqd_factory()
    bodies = [b"rr-%d" % i for i in range(40)]
    publish(src, topic, bodies)
    tool = start_tool("nsq_to_nsq", "--topic=" + topic, "--nsqd-tcp-address=" + src.tcp_address,
                      "--destination-nsqd-tcp-address=" + d1.tcp_address,
                      "--destination-nsqd-tcp-address=" + d2.tcp_address, "--mode=round-robin")
    count = lambda n: topic_stats(n, topic).get("message_count", 0)  # noqa: E731
    wait_for(lambda: count(d1) + count(d2) >= 40, timeout=60, message="40 relayed")
    wait_for(lambda: drained(src, topic, "nsq_to_nsq"), timeout=30, message="all FIN'd")
    assert tool.stop() == 0, tool.stderr()
    assert count(d1) == 20 and count(d2) == 20
    assert sorted(relayed(d1, topic) + relayed(d2, topic)) == sorted(bodies)


def test_epsilon_greedy_relays_everything_over_two_destinations(nsqd_factory, topic, start_tool):
    src, d1, d2 = nsqd_factory(), nsqd_factory(), nsqd_factory()
    bodies = [b"eg-%d" % i for i in range(300)]
    publish(src, topic, bodies)
    tool = start_tool("nsq_to_nsq", "--topic=" + topic, "--nsqd-tcp-address=" + src.tcp_address,
                      "--destination-nsqd-tcp-address=" + d1.tcp_address,
                      "--destination-nsqd-tcp-address=" + d2.tcp_address, "--mode=epsilon-greedy")
    count = lambda n: topic_stats(n, topic).get("message_count", 0)  # noqa: E731
    wait_for(lambda: count(d1) + count(d2) >= 300, timeout=60, message="300 relayed")
    wait_for(lambda: drained(src, topic, "nsq_to_nsq"), timeout=30, message="all FIN'd")
    assert tool.stop() == 0, tool.stderr()
    assert count(d1) + count(d2) == 300
    assert sorted(sum((relayed(d, topic) for d in (d1, d2) if count(d)), [])) == sorted(bodies)


def test_destination_down_requeues_until_it_comes_up(nsqd_factory, topic, start_tool, tmp_path):
    src = nsqd_factory()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bodies = [b"late-%d" % i for i in range(5)]
    publish(src, topic, bodies)
    tool = start_tool("nsq_to_nsq", "--topic=" + topic, "--nsqd-tcp-address=" + src.tcp_address,
                      "--destination-nsqd-tcp-address=127.0.0.1:%d" % port,
                      "--consumer-opt=default_requeue_delay,10ms", "--consumer-opt=max_requeue_delay,100ms",
                      "--consumer-opt=backoff_multiplier,10ms", "--consumer-opt=max_backoff_duration,100ms")
    # by default nothing is given up: go-nsq would FIN each after 5 attempts (at most 5 x 5
    # requeues for these 5); 35 requeues with all 5 still in the channel shows none was FIN'd
    wait_for(lambda: channel_stats(src, topic, "nsq_to_nsq").get("requeue_count", 0) >= 35, timeout=90,
             message="failed publishes requeued, past go-nsq's max_attempts")
    c = channel_stats(src, topic, "nsq_to_nsq")
    assert c["depth"] + c["in_flight_count"] + c["deferred_count"] == 5, c
    assert "failed" in tool.stderr()
    dst = NodeProcess("nsqd", tcp="127.0.0.1:%d" % port, data_path=str(tmp_path))
    try:
        wait_for(lambda: topic_stats(dst, topic).get("message_count", 0) >= 5, timeout=60, message="relayed")
        wait_for(lambda: drained(src, topic, "nsq_to_nsq"), timeout=30, message="all FIN'd")
        assert tool.stop() == 0, tool.stderr()
        assert set(relayed(dst, topic)) == set(bodies)
    finally:
        dst.stop()
    assert "Traceback" not in tool.stderr()


def test_bad_flags_are_one_line_and_exit_2():
    base = ["--topic=t", "--nsqd-tcp-address=127.0.0.1:4150"]
    for args, text in [
        (base, "--destination-nsqd-tcp-address required"),
        (["--nsqd-tcp-address=127.0.0.1:4150", "--destination-nsqd-tcp-address=127.0.0.1:4150"],
         "--topic and --channel are required"),
        (base + ["--destination-nsqd-tcp-address=127.0.0.1:4150", "--destination-topic=a b"],
         "--destination-topic is invalid"),
        (base + ["--destination-nsqd-tcp-address=127.0.0.1:4150", "--producer-opt=nope,1"], "invalid option nope"),
        (base + ["--destination-nsqd-tcp-address=127.0.0.1:4150", "--lookupd-http-address=127.0.0.1:4161"],
         "use --nsqd-tcp-address or --lookupd-http-address not both"),
    ]:
        r = run_tool("nsq_to_nsq", *args, timeout=30)
        err = r.stderr.decode()
        assert r.returncode == 2 and err.count("\n") == 1 and text in err, (args, r.returncode, err)


def test_via_lookupd(start_node, topic, start_tool):
    lookupd = start_node("nsqlookupd")
    src = start_node("nsqd", ["--lookupd-tcp-address=" + lookupd.tcp_address])
    dst = start_node("nsqd")
    bodies = [b"lk-%d" % i for i in range(50)]
    publish(src, topic, bodies)
    wait_for(lambda: topic in (lookupd_topics(lookupd) or []), timeout=30, message="topic registered")
    tool = start_tool("nsq_to_nsq", "--topic=" + topic, "--lookupd-http-address=" + lookupd.http_address,
                      "--destination-nsqd-tcp-address=" + dst.tcp_address)
    wait_for(lambda: topic_stats(dst, topic).get("message_count", 0) >= 50, timeout=60, message="relayed")
    wait_for(lambda: drained(src, topic, "nsq_to_nsq"), timeout=30, message="all FIN'd")
    assert tool.stop() == 0, tool.stderr()
    assert sorted(relayed(dst, topic)) == sorted(bodies)


def lookupd_topics(lookupd):
    status, body, _ = http_request(lookupd.http_port, "/topics")
    return json.loads(body).get("topics") if status == 200 else None


def test_sigint_exits_0_with_nothing_lost_or_relayed_twice(nsqd_factory, topic, start_tool):
    src, dst = nsqd_factory(), nsqd_factory()
    bodies = [b"int-%05d" % i for i in range(5000)]
    for i in range(0, len(bodies), 1000):
        publish(src, topic, bodies[i:i + 1000])
    tool = start_tool("nsq_to_nsq", "--topic=" + topic, "--nsqd-tcp-address=" + src.tcp_address,
                      "--destination-nsqd-tcp-address=" + dst.tcp_address, "--max-in-flight=50")
    wait_for(lambda: topic_stats(dst, topic).get("message_count", 0) >= 1, timeout=60, message="relaying")
    assert tool.stop(signal.SIGINT) == 0, tool.stderr()
    assert "Traceback" not in tool.stderr()
    c = channel_stats(src, topic, "nsq_to_nsq")
    assert c["in_flight_count"] == 0, c
    copied = relayed(dst, topic)
    # each message was relayed and FIN'd, or is still at the source for the next run
    assert len(set(copied)) == len(copied)
    assert c["depth"] + c["deferred_count"] + len(copied) == 5000, (c, len(copied))
