"""Start and stop an nsqd for a benchmark: ours or any other executable.

The node listens on 127.0.0.1 port 0 for TCP and HTTP and we read the real
ports from its `TCP: listening on` / `HTTP: listening on` log lines, the way
client test harnesses do; its data goes to a temporary directory removed on
stop.  Its stderr is drained by a named thread into a short ring of lines
(for error messages) so the node never blocks on a full pipe.  Memory and
CPU figures come from /proc/<pid>.
"""
from __future__ import annotations

import collections
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Deque, Dict, List, Optional, Sequence

from .common import BenchError

_LISTEN = re.compile(r"(TCP|HTTP): listening on (\S+)")


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


class BenchNode:
    """A server subprocess on loopback ephemeral ports (an nsqd: with a temporary data path).

    `listen` names the `X: listening on` lines to wait for, each one also an
    `--x-address=127.0.0.1:0` flag: ("TCP", "HTTP") for nsqd and nsqlookupd,
    ("HTTP",) for nsqadmin.  `data_path=False` for the servers without one.
    """

    def __init__(self, command: Sequence[str], args: Sequence[str] = (), label: str = "nsqd",
                 start_timeout: float = 30.0, listen: Sequence[str] = ("TCP", "HTTP"),
                 data_path: bool = True) -> None:
        self.label = label
        self.listen = tuple(listen)
        self.data_path = tempfile.mkdtemp(prefix="nsq_bench-%s-" % label) if data_path else ""
        addresses = ["--%s-address=127.0.0.1:0" % kind.lower() for kind in self.listen]
        paths = ["--data-path=" + self.data_path] if data_path else []
        self.argv = list(command) + addresses + paths + list(args)
        self.addresses: Dict[str, str] = {}
        self.lines: Deque[str] = collections.deque(maxlen=200)
        self._ready = threading.Event()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as e:
            self._remove_data()
            raise BenchError("cannot start %s: %s" % (" ".join(self.argv), e)) from None
        self._drain = threading.Thread(target=self._read_stderr, daemon=True,
                                       name="nsq_bench-node-%s-stderr" % label)
        self._drain.start()
        try:
            started = self._ready.wait(start_timeout) and self._listening()
        except BaseException:  # Ctrl-C while starting: never leave the node behind
            self.stop()
            raise
        if not started:
            self.stop()
            first = " | ".join(list(self.lines)[:3])
            raise BenchError("%s did not start (%s): %s" % (label, " ".join(self.argv), first))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            m = _LISTEN.search(line)
            if m:
                self.addresses[m.group(1)] = m.group(2)
                if self._listening():
                    self._ready.set()
        self._ready.set()  # exited: wake start()

    def _listening(self) -> bool:
        return all(kind in self.addresses for kind in self.listen)

    def _remove_data(self) -> None:
        if self.data_path:
            shutil.rmtree(self.data_path, ignore_errors=True)

    def log_tail(self, n: int = 10) -> str:
        return " | ".join(list(self.lines)[-n:])

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def tcp_address(self) -> str:
        return self.addresses["TCP"]

    @property
    def http_address(self) -> str:
        return self.addresses.get("HTTP", "")

    def rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmRSS")

    def peak_rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmHWM")

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError("%s exited with code %s: %s"
                             % (self.label, self.proc.returncode, self.log_tail()))

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait, SIGKILL if need be; then remove the data path."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self._drain.join(5)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
        finally:
            self._remove_data()

    def __enter__(self) -> "BenchNode":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
