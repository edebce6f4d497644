"""to_nsq end to end against our nsqd."""
from __future__ import annotations

import time

from tests.apps.conftest import run_tool, topic_stats
from tests.helpers import consume_all


def test_publishes_every_line_in_order_to_every_node(nsqd_factory, topic):
    a, b = nsqd_factory(), nsqd_factory()
    lines = [b"%05d-" % i + b"x" * 194 for i in range(3000)]
    data = b"\n".join(lines) + b"\n\n" + b"last-without-delimiter"
    r = run_tool("to_nsq", "--topic=" + topic, "--nsqd-tcp-address=" + a.tcp_address,
                 "--nsqd-tcp-address", b.tcp_address, stdin=data)
    assert r.returncode == 0, r.stderr
    expected = lines + [b"last-without-delimiter"]  # the empty record is skipped
    for node in (a, b):
        assert topic_stats(node, topic)["message_count"] == len(expected)
        assert consume_all(node.tcp_port, topic, "check", len(expected)) == expected


def test_delimiter(nsqd, topic):
    r = run_tool("to_nsq", "-topic", topic, "-nsqd-tcp-address", nsqd.tcp_address, "-delimiter", ",",
                 stdin=b"a,b\nc,,d")
    assert r.returncode == 0, r.stderr
    assert consume_all(nsqd.tcp_port, topic, "check", 3) == [b"a", b"b\nc", b"d"]


def test_rate_throttles(nsqd, topic):
    started = time.monotonic()
    r = run_tool("to_nsq", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address, "--rate=20",
                 stdin=b"".join(b"m%d\n" % i for i in range(41)))
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert topic_stats(nsqd, topic)["message_count"] == 41
    assert took >= 2.0, took  # message 40 is not sent before 40/20 s after the start


def test_refused_connection_is_an_error_exit(nsqd, topic):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    r = run_tool("to_nsq", "--topic=" + topic, "--nsqd-tcp-address=" + dead, stdin=b"a\n")
    err = r.stderr.decode()
    assert r.returncode == 1 and "failed to publish to %s" % dead in err and "Traceback" not in err, err


def test_node_refusing_a_message_is_an_error_exit_after_the_good_ones(nsqd_factory, topic):
    node = nsqd_factory("--max-msg-size=100")
    r = run_tool("to_nsq", "--topic=" + topic, "--nsqd-tcp-address=" + node.tcp_address,
                 stdin=b"ok1\nok2\n" + b"x" * 200 + b"\nnever\n")
    err = r.stderr.decode()
    assert r.returncode == 1 and "E_BAD_MESSAGE" in err, err
    assert consume_all(node.tcp_port, topic, "check", 2) == [b"ok1", b"ok2"]


def test_invalid_topic_is_an_error_exit(nsqd):
    r = run_tool("to_nsq", "--topic=bad!", "--nsqd-tcp-address=" + nsqd.tcp_address, stdin=b"a\n")
    assert r.returncode == 1 and b"E_BAD_TOPIC" in r.stderr, r.stderr


def test_bad_command_lines_are_one_line_exit_2(nsqd):
    addr = "--nsqd-tcp-address=" + nsqd.tcp_address
    for args, text in [
        ([addr], "--topic required"),
        (["--topic=t"], "--nsqd-tcp-address required"),
        (["--topic=t", addr, "--delimiter=ab"], "--delimiter must be a single byte"),
        (["--topic=t", addr, "--producer-opt=nope"], "invalid option nope"),
        (["--topic=t", addr, "--version"], "flag provided but not defined: -version"),
    ]:
        r = run_tool("to_nsq", *args)
        err = r.stderr.decode()
        assert r.returncode == 2 and err.count("\n") == 1 and text in err, (args, err)


def test_sigterm_while_stdin_is_open_exits_0_after_publishing_what_it_read(nsqd, topic):
    import subprocess

    from tests.apps.conftest import tool_argv
    from tests.helpers import wait_for

    proc = subprocess.Popen(tool_argv("to_nsq", ["--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address]),
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"one\ntwo\n")
        proc.stdin.flush()
        wait_for(lambda: topic_stats(nsqd, topic).get("message_count") == 2, timeout=20, message="2 published")
        proc.terminate()
        assert proc.wait(20) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdin.close()
        proc.stderr.close()
