"""nsq_bench against our nsqd: a short run of every subcommand, figures parse and are positive.

Throughput targets are not asserted here (they are checked by running the
benchmark); these runs are about a second each, with tiny counts.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import List

import pytest

from nsqd_sync.bench import __main__ as bench
from nsqd_sync.bench.common import parse_result_line
from tests.helpers import NodeProcess, wait_for

pytestmark = pytest.mark.timeout(90)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LATENCY = re.compile(r"rate: (\d+) msg/s \(achieved ([0-9.]+)\) - received: (\d+)/(\d+) - "
                     r"p50: ([0-9.]+)ms - p99: ([0-9.]+)ms - p99\.9: ([0-9.]+)ms - "
                     r"max: ([0-9.]+)ms")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = NodeProcess("nsqd", data_path=str(tmp_path_factory.mktemp("bench-nsqd")))
    yield n
    n.stop()


def run_main(capsys, argv: List[str]) -> str:
    bench.main(argv)
    return capsys.readouterr().out


def result_lines(out: str, name: str) -> List[dict]:
    got = []
    for line in out.splitlines():
        if line.startswith("[bench_%s] " % name):
            figures = parse_result_line(line)
            if figures is not None:
                got.append(figures)
    return got


def assert_positive(figures: dict) -> None:
    assert figures["ops"] > 0 and figures["mbs"] > 0 and figures["usop"] > 0, figures


def test_writer_then_reader_via_the_module_entry_point(node):
    common = ["--nsqd-tcp-address=" + node.tcp_address, "-runfor=1s", "--topic=ep_bench"]
    for name in ("writer", "reader"):
        p = subprocess.run([sys.executable, "-m", "nsqd_sync.bench", name] + common,
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert re.match(r"^\[bench_%s\] \d{4}/\d\d/\d\d \d\d:\d\d:\d\d duration: " % name,
                        lines[0]), lines
        figures = result_lines(p.stdout, name)
        assert len(figures) == 1
        assert_positive(figures[0])
        assert lines[1].startswith("[bench_%s] " % name)
        assert "client: %d worker" % (os.cpu_count() or 1) in lines[1]


def test_reader_idle_timeout_ends_at_the_last_message(node, capsys):
    addr = "--nsqd-tcp-address=" + node.tcp_address
    run_main(capsys, ["writer", addr, "--topic=idle_bench", "--runfor=200ms", "--workers=1"])
    t0 = time.monotonic()
    out = run_main(capsys, ["reader", addr, "--topic=idle_bench", "--runfor=20s",
                            "--idle-timeout=300ms", "--workers=1"])
    assert time.monotonic() - t0 < 15
    (figures,) = result_lines(out, "reader")
    assert_positive(figures)


def test_pubsub_prints_both_rates(node, capsys):
    out = run_main(capsys, ["pubsub", "--nsqd-tcp-address=" + node.tcp_address, "--runfor=1s",
                            "--topic=ps_bench", "--workers=1"])
    (w,) = result_lines(out, "writer")
    (r,) = result_lines(out, "reader")
    assert_positive(w)
    assert_positive(r)


def test_single_pub_per_round_trip(node, capsys):
    out = run_main(capsys, ["single", "--nsqd-tcp-address=" + node.tcp_address, "--runfor=1s",
                            "--topic=single_bench", "--workers=1"])
    (figures,) = result_lines(out, "single")
    assert_positive(figures)


def test_latency_percentiles(node, capsys):
    out = run_main(capsys, ["latency", "--nsqd-tcp-address=" + node.tcp_address, "--runfor=1s",
                            "--rate=2000"])
    m = LATENCY.search(out)
    assert m, out
    rate, achieved, received, sent = int(m.group(1)), float(m.group(2)), int(m.group(3)), \
        int(m.group(4))
    p50, p99, p999, top = (float(m.group(i)) for i in range(5, 9))
    assert rate == 2000 and achieved > 1000
    assert received == sent > 1000
    assert 0 < p50 <= p99 <= p999 <= top


def test_topics_spread_over_small_counts(node, capsys):
    out = run_main(capsys, ["topics", "--nsqd-tcp-address=" + node.tcp_address,
                            "--nsqd-http-address=" + node.http_address, "--runfor=500ms",
                            "--topic-counts=1,3,10", "--workers=1"])
    lines = [line for line in out.splitlines() if " topics: " in line]
    assert [re.search(r"topics: (\d+) - ", line).group(1) for line in lines] == ["1", "3", "10"]
    for line in lines:
        assert_positive(parse_result_line(line))


def test_memory_per_queued_message(capsys):
    out = run_main(capsys, ["memory", "--count=20000"])
    m = re.search(r"queued: 20000 x 200B - mem-queue-size: 20000 - idle RSS: ([0-9.]+)MiB - "
                  r"RSS: ([0-9.]+)MiB - peak RSS: ([0-9.]+)MiB", out)
    assert m, out
    idle, rss, peak = (float(m.group(i)) for i in (1, 2, 3))
    assert 0 < idle < rss <= peak
    m = re.search(r"RSS per queued message: ([0-9.]+)B \(peak ([0-9.]+)B\)", out)
    assert m and float(m.group(1)) > 0, out


def test_memory_overflow_samples_rss(capsys):
    out = run_main(capsys, ["memory", "--count=20000", "--overflow", "--mem-queue-size=1000",
                            "--steps=4"])
    samples = re.findall(r"queued: (\d+) - RSS: ([0-9.]+)MiB", out)
    assert [int(q) for q, _ in samples] == [5000, 10000, 15000, 20000]
    assert all(float(r) > 0 for _, r in samples)
    assert re.search(r"RSS growth while overflowing to disk: [-+][0-9.]+MiB from 5000 to 20000 "
                     r"queued \([-0-9.]+B/msg\) - (flat|NOT flat)", out), out


def test_all_prints_one_table(capsys):
    out = run_main(capsys, ["all", "--runfor=500ms", "--memory-count=20000",
                            "--topic-counts=1,3", "--workers=1", "--rate=2000"])
    assert "ours:" in out and "theirs" not in out
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(.*?)\s{2,}(msg/s|ms|B|MiB|x)\s+([0-9.,]+)\s+(higher|lower)$", line)
        if m:
            rows[m.group(1).rstrip(" *")] = float(m.group(3).replace(",", ""))
    for label in ("PUB: MPUB x200, 1 conns", "SUB: RDY 2500, FIN each, 1 conns",
                  "PUB while SUB runs", "SUB while PUB runs", "PUB: one per round trip, 1 conns",
                  "latency p50 at 2000 msg/s", "latency p99 at 2000 msg/s",
                  "RSS per queued msg, 20000 queued", "peak RSS, 20000 queued",
                  "PUB: 1 topic", "PUB: 3 topics", "PUB 3 topics / 1 topic"):
        assert rows.get(label, 0) > 0, (label, out)
    # 20000 messages are too few to get past the default memory queue in 5 steps: no figure
    assert re.search(r"^RSS growth/msg overflowing to disk\s+B\s+-\s+lower$", out, re.M), out


def test_admin_times_our_nsqadmin_over_a_small_cluster(capsys):
    out = run_main(capsys, ["admin", "--nodes=2", "--topics=3", "--channels=2", "--rounds=1",
                            "--requests=2", "--parallel=4"])
    assert "cluster: 1 nsqlookupd, 2 nsqd x 3 topics x 2 channels" in out, out
    assert "ours:" in out and "theirs" not in out
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(GET \S+|topic \w+ with its data)\s+([0-9.]+)$", line)
        if m:
            rows[m.group(1)] = float(m.group(2))
    assert set(rows) == {"GET /", "GET /topics/:topic", "GET /api/topics/:topic",
                         "GET /api/topics", "topic list with its data",
                         "topic page with its data"}, out
    assert all(ms > 0 for ms in rows.values()), rows
    # our pages carry their data in the HTML: no API call is added to them
    assert "ours: index has its data in the HTML, topic has its data in the HTML" in out, out
    assert rows["topic page with its data"] == rows["GET /topics/:topic"]


def test_admin_stops_its_cluster_when_nsqadmin_does_not_start():
    failing = sys.executable + " -c 'raise SystemExit(3)'"
    p = subprocess.run([sys.executable, "-m", "nsqd_sync.bench", "admin", "--nodes=1",
                        "--topics=2", "--channels=1", "--nsqadmin-path=" + failing],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 1, p.stderr
    assert "nsq_bench admin: error: nsqadmin-ours did not start" in p.stderr, p.stderr
    m = re.search(r"cluster ready in \S+: lookupd (\S+), nodes (\S+)", p.stderr)
    assert m, p.stderr
    for addr in m.groups():  # every server it started is gone: nothing listens there any more
        host, port = addr.rsplit(":", 1)
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=2).close()


def _children(pid: int) -> List[int]:
    out = []
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, task)) as f:
            out.extend(int(x) for x in f.read().split())
    return out


def _cmdline(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _gone(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_all_stops_its_node_when_interrupted(sig):
    p = subprocess.Popen([sys.executable, "-m", "nsqd_sync.bench", "all", "--runfor=30s",
                          "--workers=1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=ROOT)
    try:
        def node_pid():
            for child in _children(p.pid):
                if "nsqd_sync" in _cmdline(child) and "--data-path=" in _cmdline(child):
                    return child
            return None

        pid = wait_for(node_pid, timeout=30, message="all to start its node")
        data_path = re.search(r"--data-path=(\S+)", _cmdline(pid)).group(1)

        def workers():  # the writer's worker processes (children of the forkserver)
            for child in _children(p.pid):
                if "multiprocessing.forkserver" in _cmdline(child):
                    return _children(child)
            return None

        busy = wait_for(workers, timeout=30, message="the writer's workers to start")
        p.send_signal(sig)
        p.wait(30)
        assert p.returncode == 130, p.stderr.read()
        assert b"interrupted" in p.stderr.read()
        wait_for(lambda: all(_gone(x) for x in [pid] + busy), timeout=10,
                 message="the node and the workers to exit")
        assert not os.path.exists(data_path)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        p.stdout.close()
        p.stderr.close()
