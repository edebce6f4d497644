"""nsq_stat end to end: NSQ's columns and totals over the nodes, directly and via nsqlookupd."""
from __future__ import annotations

import re

from nsqd_sync.apps.nsq_stat import header
from tests.apps.conftest import publish, run_tool
from tests.helpers import NodeProcess, http_request, wait_for

HEADER = ("------rate------+----------------depth----------------+--------------metadata---------------\n"
          "ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients\n")
ROW = re.compile(r"^ *(-?\d+) +(-?\d+) \| +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) \| +(\d+) +(\d+) +(\d+) +(\d+)$")


def test_header_is_nsqs():
    assert header() == HEADER


def make_channel(node, topic: str, channel: str) -> None:
    status, body, _ = http_request(node.http_port, "/topic/create?topic=" + topic, "POST")
    assert status == 200, body
    status, body, _ = http_request(node.http_port, "/channel/create?topic=%s&channel=%s" % (topic, channel), "POST")
    assert status == 200, body


def rows(stdout: bytes):
    return [tuple(int(x) for x in m.groups()) for m in map(ROW.match, stdout.decode().splitlines()) if m]


def test_totals_over_two_nodes(nsqd_factory, topic):
    a = nsqd_factory("--broadcast-address=127.0.0.1")
    b = nsqd_factory("--broadcast-address=127.0.0.1")
    for node, n in ((a, 3), (b, 4)):
        make_channel(node, topic, "c")
        publish(node, topic, [b"x"] * n)
    r = run_tool("nsq_stat", "--topic=" + topic, "--channel=c", "--nsqd-http-address=" + a.http_address,
                 "--nsqd-http-address=" + b.http_address, "--interval=200ms", "--count=2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith(HEADER)
    # ingress egress | total mem disk inflt def | req t-o msgs clients
    assert rows(r.stdout) == [(0, 0, 7, 7, 0, 0, 0, 0, 0, 7, 0)] * 2


def test_rates_and_via_lookupd(nsqd_factory, topic, start_tool):
    lookupd = NodeProcess("nsqlookupd")
    try:
        node = nsqd_factory("--broadcast-address=127.0.0.1", "--lookupd-tcp-address=" + lookupd.tcp_address)
        make_channel(node, topic, "c")
        wait_for(lambda: b'"c"' in http_request(lookupd.http_port, "/channels?topic=" + topic)[1],
                 message="channel registered")
        p = start_tool("nsq_stat", "--topic=" + topic, "--channel=c",
                       "--lookupd-http-address=" + lookupd.http_address, "--interval=1s")
        wait_for(lambda: rows(p.stdout()), timeout=20, message="a first row (the baseline is taken)")
        publish(node, topic, [b"y"] * 50)
        got = wait_for(lambda: [x for x in rows(p.stdout()) if x[9] == 50], timeout=20, message="a row with msgs 50")
        assert p.stop() == 0
        all_rows = rows(p.stdout())
        assert sum(x[0] for x in all_rows) >= 50 - 1  # ingress per second adds up to what came in
        assert got[0][2] == 50 and got[0][3] == 50
    finally:
        lookupd.stop()


def test_missing_channel_is_logged_and_the_exit_status_is_1(nsqd, topic):
    publish(nsqd, topic, [b"x"])
    r = run_tool("nsq_stat", "--topic=" + topic, "--channel=nope", "--nsqd-http-address=" + nsqd.http_address,
                 "--interval=100ms", "--count=1")
    assert r.returncode == 1
    assert b"failed to find channel(nope) in stats metadata for topic(%s)" % topic.encode() in r.stderr
    assert b"Traceback" not in r.stderr


def test_bad_command_lines_are_one_line_exit_2():
    for args, text in [
        (["--topic=t", "--nsqd-http-address=127.0.0.1:4151"], "--topic and --channel are required"),
        (["--topic=t", "--channel=c"], "--nsqd-http-address or --lookupd-http-address required"),
        (["--topic=t", "--channel=c", "--nsqd-http-address=127.0.0.1:1", "--count=0"], "--count should be positive"),
        (["--topic=t", "--channel=c", "--nsqd-http-address=127.0.0.1:1", "--interval=0"],
         "--interval should be positive"),
        (["--topic=t", "--channel=c", "--nsqd-http-address=http://127.0.0.1:1"], "address should not contain scheme"),
    ]:
        r = run_tool("nsq_stat", *args)
        err = r.stderr.decode()
        assert r.returncode == 2 and err.count("\n") == 1 and text in err, (args, err)


def test_unreachable_lookupd_is_a_log_line_per_poll():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    r = run_tool("nsq_stat", "--topic=t", "--channel=c", "--lookupd-http-address=" + dead,
                 "--interval=100ms", "--count=2")
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err, err
    assert err.count("failed to query any nsqlookupd") == 3, err  # the baseline poll and two reports
    assert r.stdout.decode() == HEADER
