"""The package's node runner (nsqd_sync.testing.process) on processes that misbehave.

Each "server" is a few lines of Python run with `command=`, so the runner's
edge cases are exercised without depending on the real servers' timing.
"""
from __future__ import annotations

import sys

import pytest

from nsqd_sync.testing import NodeProcess, NodeStartError
from tests.helpers import pid_gone

LISTEN = ("sys.stderr.write('TCP: listening on 127.0.0.1:4001\\n"
          "HTTP: listening on 0.0.0.0:4002\\n'); sys.stderr.flush()")


def python(code: str):
    return [sys.executable, "-c", "import os, sys, time\n" + code, "--"]


def test_a_server_that_closes_stdout_early_still_starts():
    node = NodeProcess("fake", command=python("os.close(1)\ntime.sleep(0.2)\n" + LISTEN +
                                              "\ntime.sleep(60)"), start_timeout=30)
    try:
        assert node.alive()
        assert node.tcp_address == "127.0.0.1:4001"
        assert node.http_address == "127.0.0.1:4002"  # a wildcard host is dialled on loopback
    finally:
        node.kill()
    assert pid_gone(node.pid)


def test_a_server_that_exits_is_an_error_with_its_output():
    with pytest.raises(NodeStartError) as e:
        NodeProcess("fake", command=python("sys.stderr.write('bad flag --x\\n')\nsys.exit(2)"),
                    start_timeout=30)
    assert "fake exited with code 2" in str(e.value)
    assert "bad flag --x" in str(e.value)


def test_a_server_that_never_logs_its_addresses_is_killed_at_the_deadline():
    pid_file = []

    class Recording(NodeProcess):
        def wait_started(self, timeout=None):
            pid_file.append(self.pid)
            return super().wait_started(timeout)

    with pytest.raises(NodeStartError) as e:
        Recording("fake", command=python("sys.stderr.write('starting\\n')\ntime.sleep(60)"),
                  start_timeout=1.0)
    assert "did not log its addresses within 1.0s" in str(e.value)
    assert "starting" in str(e.value)
    assert pid_gone(pid_file[0])


def test_stop_reports_a_server_that_ignores_sigterm():
    node = NodeProcess("fake", command=python("import signal\n"
                                              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                              + LISTEN + "\ntime.sleep(60)"), start_timeout=30)
    with pytest.raises(AssertionError, match="did not exit within 0.5s"):
        node.stop(timeout=0.5)
    assert pid_gone(node.pid)  # killed all the same
