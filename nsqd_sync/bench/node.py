"""Start and stop an nsqd for a benchmark: ours or any other executable.

The node is started by the package's one runner (`nsqd_sync.testing.process`,
also behind the pytest fixtures): it listens on 127.0.0.1 port 0 for TCP and
HTTP, the real ports are read from its `TCP: listening on` / `HTTP: listening
on` log lines the way client test harnesses do, and its output is drained so
it never blocks on a full pipe.  Its data goes to a temporary directory
removed on stop.  Memory and CPU figures come from /proc/<pid>.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
import time
from typing import List, Optional, Sequence

from ..testing.process import NodeProcess, NodeStartError
from .common import BenchError

def node_command(path: str = "") -> List[str]:
    """argv prefix for an nsqd: `path` split like a shell, or this package's nsqd."""
    if path.strip():
        return shlex.split(path)
    return [sys.executable, "-m", "nsqd_sync"]


def split_args(text: str) -> List[str]:
    return shlex.split(text) if text.strip() else []


def proc_status_kb(pid: int, field: str) -> int:
    """A `VmRSS` / `VmHWM` style field of /proc/<pid>/status, in kB."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError as e:
        raise BenchError("cannot read memory of pid %d: %s" % (pid, e)) from None
    raise BenchError("/proc/%d/status has no %s (is this Linux?)" % (pid, field))


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0.0 if it cannot be read)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, ValueError, IndexError):
        return 0.0


class BenchNode(NodeProcess):
    """A server subprocess on loopback ephemeral ports (an nsqd: with a temporary data path).

    Built on the package's one node runner (`nsqd_sync.testing.process`),
    with what the benchmarks add: failures as BenchError, the data path
    removed on stop, and RSS/CPU figures from /proc.  `listen` names the
    `X: listening on` lines to wait for, each one also an
    `--x-address=127.0.0.1:0` flag: ("TCP", "HTTP") for nsqd and nsqlookupd,
    ("HTTP",) for nsqadmin.  `data_path=False` for the servers without one.
    """

    def __init__(self, command: Sequence[str], args: Sequence[str] = (), label: str = "nsqd",
                 start_timeout: float = 30.0, listen: Sequence[str] = ("TCP", "HTTP"),
                 data_path: bool = True) -> None:
        self.label = label
        data = tempfile.mkdtemp(prefix="nsq_bench-%s-" % label) if data_path else None
        try:
            super().__init__(label, args=args, data_path=data, command=command,
                             start_timeout=start_timeout,
                             tcp="127.0.0.1:0" if "TCP" in listen else None,
                             http="127.0.0.1:0" if "HTTP" in listen else None)
        except NodeStartError as e:
            _remove(data)
            raise BenchError("%s did not start (%s): %s"
                             % (label, " ".join(list(command) + list(args)),
                                " | ".join(str(e).splitlines()[:3]))) from None
        except OSError as e:
            _remove(data)
            raise BenchError("cannot start %s: %s" % (" ".join(command), e)) from None

    def log_tail(self, n: int = 10) -> str:
        with self._lines_lock:
            return " | ".join(line.rstrip("\n") for line in self.lines[-n:])

    def rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmRSS")

    def peak_rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmHWM")

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError("%s exited with code %s: %s"
                             % (self.label, self.proc.returncode, self.log_tail()))

    def stop(self, timeout: float = 30.0) -> None:  # type: ignore[override]
        """SIGTERM, wait, SIGKILL if need be; then remove the data path."""
        try:
            self.terminate(timeout)
        finally:
            _remove(self.data_path)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _remove(path: Optional[str]) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def wait_stable_rss(node: BenchNode, settle: float = 0.3, timeout: float = 30.0,
                    tolerance: float = 0.01) -> int:
    """RSS once two readings `settle` seconds apart differ by under `tolerance` (kB)."""
    deadline = time.monotonic() + timeout
    last = node.rss_kb()
    while True:
        time.sleep(settle)
        node.check_alive()
        now = node.rss_kb()
        if abs(now - last) <= max(64, tolerance * last) or time.monotonic() > deadline:
            return now
        last = now


def stop_all(nodes: List[Optional[BenchNode]]) -> None:
    for node in nodes:
        if node is not None:
            node.stop()
