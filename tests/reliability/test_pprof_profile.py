"""/debug/pprof/profile cannot be used to load the node (issue 12 #5).

Before the fix every request sampled every thread 100 times a second for
as long as it asked (20 abandoned ``?seconds=600`` requests: 0.01 -> 1.06
cores for ten minutes).  Now one profile runs at a time (the others get
429 at once), a duration above the maximum is refused (400), and a profile
stops as soon as its client goes away: the node's threads and CPU use come
back to their baseline.
"""
from __future__ import annotations

import os
import socket
import time
from typing import List

import pytest

from tests.helpers import NodeProcess, http_request, wait_for

pytestmark = pytest.mark.timeout(120)


def _threads(pid: int) -> int:
    return len(os.listdir("/proc/%d/task" % pid))


def _settled_threads(pid: int, timeout: float = 10.0) -> int:
    """The thread count once it stays the same over five reads 0.1 s apart."""
    readings: List[int] = []

    def settled() -> bool:
        readings.append(_threads(pid))
        return len(readings) >= 5 and len(set(readings[-5:])) == 1

    wait_for(settled, timeout=timeout, interval=0.1, message="thread count settling")
    return readings[-1]


def _cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid, "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_use(pid: int, window: float = 1.0) -> float:
    """Cores used by the process over `window` seconds."""
    before, t0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(window)  # a measurement window, not a wait for an event
    return (_cpu_seconds(pid) - before) / (time.monotonic() - t0)


def _send_profile_request(port: int, seconds: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /debug/pprof/profile?seconds=%d HTTP/1.1\r\nHost: x\r\n\r\n" % seconds)
    return s


def _status_if_answered(s: socket.socket, timeout: float) -> int:
    """The status of an answer that arrives within `timeout` (0: none yet)."""
    s.settimeout(timeout)
    try:
        head = s.recv(64)
    except socket.timeout:
        return 0
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else -1


def test_abandoned_profiles_give_back_threads_and_cpu(tmp_path):
    with NodeProcess("nsqd", data_path=tmp_path) as node:
        pid = node.pid
        assert http_request(node.http_port, "/ping")[0] == 200
        baseline_threads = _settled_threads(pid)
        baseline_cpu = _cpu_use(pid)

        socks: List[socket.socket] = [_send_profile_request(node.http_port, 250) for _ in range(10)]
        try:
            statuses = [_status_if_answered(s, 3.0 if i else 1.0) for i, s in enumerate(socks)]
            # the first one is profiling (no answer before its 250 s); every other one is refused at once
            assert statuses[0] == 0 and statuses[1:] == [429] * 9, statuses
            # the node still serves while a profile runs
            assert http_request(node.http_port, "/ping")[0] == 200
        finally:
            for s in socks:
                s.close()  # the clients go away

        wait_for(lambda: _threads(pid) <= baseline_threads, timeout=15,
                 message="threads back to %d (now %d)" % (baseline_threads, _threads(pid)))
        # 100 Hz stack sampling keeps a core busy; idle again means it stopped
        assert _cpu_use(pid) < max(0.1, baseline_cpu + 0.05)

        # the slot is free again: a short profile is answered in full
        status, body, _ = http_request(node.http_port, "/debug/pprof/profile?seconds=1", timeout=30)
        assert status == 200 and body.startswith(b"Python sampling CPU profile (all threads)\n")

        # past the maximum duration: refused, nothing starts
        status, body, _ = http_request(node.http_port, "/debug/pprof/profile?seconds=100000", timeout=10)
        assert status == 400 and b"profile duration exceeds" in body
        assert "Traceback" not in node.log_text(), node.log_text()
        assert node.stop() == 0
