"""Benchmark: how long a PUB to one topic waits while huge MPUBs go to another (issue 12 #4).

    python -m tests.reliability.bench_mpub_stall [--nsqd CMD] [--mpubs 1] [--count 1048575]

Starts a node (ours by default; ``--nsqd /path/to/nsqd`` for another) on
loopback ports, then one probe client PUBs to topic ``other`` in a loop
while ``--mpubs`` clients each send one MPUB of ``--count`` one-byte
messages to topic ``big`` (1,048,575 is the most that fits in the default
5 MB --max-body-size).  Prints the probe's PUB latency (median, p99, max)
during the MPUBs, and the node's peak RSS.  It prints numbers; it asserts
nothing.
"""
from __future__ import annotations

import argparse
import shlex
import struct
import sys
import tempfile
import threading
import time
from typing import List

from tests.helpers import CommandConn, NodeProcess


def _peak_rss_mb(pid: int) -> float:
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def run(nsqd_cmd: str, mpubs: int, count: int) -> None:
    body = struct.pack(">i", count) + (struct.pack(">i", 1) + b"x") * count
    with tempfile.TemporaryDirectory() as data:
        if nsqd_cmd:
            node = _start_other(nsqd_cmd, data)
        else:
            node = NodeProcess("nsqd", data_path=data)
        try:
            probe = CommandConn(node.tcp_port, timeout=60)
            probe.pub("other", b"warm-up")
            senders = [CommandConn(node.tcp_port, timeout=120) for _ in range(mpubs)]
            latencies: List[float] = []
            done = threading.Event()

            def send(conn: CommandConn) -> None:
                conn.send_raw(b"MPUB big\n" + struct.pack(">i", len(body)) + body)
                conn.expect_ok()

            threads = [threading.Thread(target=send, args=(c,), name="bench-mpub-%d" % i)
                       for i, c in enumerate(senders)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            watcher = threading.Thread(target=lambda: ([t.join() for t in threads], done.set()),
                                       name="bench-mpub-wait")
            watcher.start()
            while not done.is_set():
                start = time.perf_counter()
                probe.pub("other", b"p")
                latencies.append(time.perf_counter() - start)
            elapsed = time.monotonic() - t0
            latencies.sort()
            n = len(latencies)
            print("%s: %d MPUB(s) of %d messages in %.2fs; other-topic PUB during them: n=%d "
                  "median %.1f ms, p99 %.1f ms, max %.1f ms; peak RSS %.0f MB"
                  % (nsqd_cmd or "nsq-sync nsqd", mpubs, count, elapsed, n,
                     1000 * latencies[n // 2], 1000 * latencies[min(n - 1, int(n * 0.99))],
                     1000 * latencies[-1], _peak_rss_mb(node.proc.pid)))
        finally:
            node.kill()


def _start_other(cmd: str, data: str) -> NodeProcess:
    return NodeProcess("nsqd", data_path=data, command=shlex.split(cmd))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsqd", default="", help="another nsqd command (default: ours)")
    parser.add_argument("--mpubs", type=int, default=1)
    parser.add_argument("--count", type=int, default=1048575)
    args = parser.parse_args(argv)
    run(args.nsqd, args.mpubs, args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
