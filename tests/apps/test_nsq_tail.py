"""nsq_tail end to end against our nsqd (directly and via nsqlookupd)."""
from __future__ import annotations

import re
import signal

import pytest

from tests.apps.conftest import channel_stats, publish, run_tool, topic_stats
from tests.helpers import NodeProcess, http_request, wait_for


def test_prints_bodies_in_order_and_stops_after_n(nsqd, topic):
    bodies = [b"line-%03d" % i for i in range(50)]
    publish(nsqd, topic, bodies)
    r = run_tool("nsq_tail", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address, "-n", "50")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(b"\n") == bodies + [b""]
    # the ephemeral channel was used and is gone again; every message was FIN'd
    assert re.search(r"\[%s/tail\d{6}#ephemeral\] connected" % re.escape(topic), r.stderr.decode())
    wait_for(lambda: topic_stats(nsqd, topic).get("channels") == [], message="ephemeral channel removed")


def test_n_on_a_named_channel_requeues_what_it_did_not_print(nsqd, topic):
    bodies = [b"m%d" % i for i in range(30)]
    publish(nsqd, topic, bodies)
    r = run_tool("nsq_tail", "-topic", topic, "-nsqd-tcp-address", nsqd.tcp_address, "-channel", "keep",
                 "-n", "10", "--max-in-flight=100")
    assert r.returncode == 0, r.stderr
    printed = r.stdout.split()
    assert len(printed) == 10 and set(printed) <= set(bodies)
    stats = wait_for(lambda: (lambda c: c if c.get("in_flight_count") == 0 else None)(
        channel_stats(nsqd, topic, "keep")), message="nothing in flight")
    assert stats["depth"] == 20
    r = run_tool("nsq_tail", "-topic", topic, "-nsqd-tcp-address", nsqd.tcp_address, "-channel", "keep", "-n", "20")
    assert r.returncode == 0, r.stderr
    assert sorted(printed + r.stdout.split()) == sorted(bodies)


def test_several_topics_with_print_topic(nsqd, topic):
    t1, t2 = topic + "-a", topic + "-b"
    publish(nsqd, t1, [b"x1", b"x2"])
    publish(nsqd, t2, [b"y1"])
    r = run_tool("nsq_tail", "--topic=" + t1, "--topic=" + t2, "--print-topic",
                 "--nsqd-tcp-address=" + nsqd.tcp_address, "-n", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert sorted(lines) == sorted(["%s | x1" % t1, "%s | x2" % t1, "%s | y1" % t2])


def test_via_lookupd(nsqd_factory, tmp_path, topic):
    lookupd = NodeProcess("nsqlookupd")
    try:
        node = nsqd_factory("--lookupd-tcp-address=" + lookupd.tcp_address)
        publish(node, topic, [b"via-lookupd"])
        wait_for(lambda: topic.encode() in http_request(lookupd.http_port, "/topics")[1],
                 message="topic registered with lookupd")
        r = run_tool("nsq_tail", "--topic=" + topic, "--lookupd-http-address=" + lookupd.http_address, "-n", "1")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"via-lookupd\n"
    finally:
        lookupd.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_requeues_nothing_lost(nsqd, topic, start_tool, sig):
    publish(nsqd, topic, [b"first"])
    p = start_tool("nsq_tail", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address, "--channel=c")
    wait_for(lambda: p.stdout() == b"first\n", timeout=20, message="first body printed")
    assert p.stop(sig) == 0
    assert "Traceback" not in p.stderr()
    c = channel_stats(nsqd, topic, "c")
    assert c["in_flight_count"] == 0 and c["depth"] == 0 and c["message_count"] == 1


def test_bad_command_lines_are_one_line_exit_2(nsqd):
    for args, text in [
        (["--topic=t"], "--nsqd-tcp-address or --lookupd-http-address required"),
        (["--nsqd-tcp-address=" + nsqd.tcp_address], "--topic required"),
        (["--topic=t", "--nsqd-tcp-address=" + nsqd.tcp_address, "--lookupd-http-address=127.0.0.1:4161"],
         "use --nsqd-tcp-address or --lookupd-http-address not both"),
        (["--topic=t", "--nsqd-tcp-address=" + nsqd.tcp_address, "--consumer-opt=bogus,1"], "invalid option bogus"),
        (["--topic=t", "--nsqd-tcp-address=" + nsqd.tcp_address, "--max-in-flight=x"], "--max-in-flight"),
        (["--bogus"], "flag provided but not defined: -bogus"),
    ]:
        r = run_tool("nsq_tail", *args)
        err = r.stderr.decode()
        assert r.returncode == 2 and err.count("\n") == 1 and text in err, (args, r.returncode, err)


def test_version():
    r = run_tool("nsq_tail", "--version")
    assert r.returncode == 0
    assert re.fullmatch(rb"nsq_tail v1\.3\.0-sync \(built w/python3\.\d+\.\d+\)\n", r.stdout)


def test_stdout_gone_requeues_the_batch_and_exits_1(nsqd, topic):
    import subprocess

    from tests.apps.conftest import tool_argv

    proc = subprocess.Popen(tool_argv("nsq_tail", ["--topic=" + topic, "--channel=c",
                                                   "--nsqd-tcp-address=" + nsqd.tcp_address]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdout.close()  # nobody reads: the first write fails with EPIPE
        wait_for(lambda: channel_stats(nsqd, topic, "c").get("client_count") == 1, timeout=20,
                 message="nsq_tail subscribed")
        publish(nsqd, topic, [b"a", b"b", b"c"])
        assert proc.wait(30) == 1
        err = proc.stderr.read().decode()
        assert "failed to write to stdout" in err and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stderr.close()
    # nothing was FIN'd: all three are back in the channel for the next reader
    c = wait_for(lambda: (lambda c: c if c.get("in_flight_count") == 0 else None)(channel_stats(nsqd, topic, "c")),
                 message="nothing in flight")
    assert c["depth"] == 3


def test_unreachable_nsqd_is_retried_with_a_log_line(start_tool):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    p = start_tool("nsq_tail", "--topic=t", "--nsqd-tcp-address=" + dead)
    wait_for(lambda: p.stderr().count("connecting to %s failed" % dead) >= 2, timeout=20,
             message="two connection attempts logged")
    assert p.stop() == 0
    assert "Traceback" not in p.stderr()
