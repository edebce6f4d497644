"""One server command (nsqd, nsqlookupd, nsqadmin) run as a child process.

`NodeProcess` starts the command with its listen flags (loopback port 0 by
default), reads the real addresses from the `TCP: listening on` /
`HTTP: listening on` / `HTTPS: listening on` lines the server logs to stderr
(as client test harnesses do), and keeps draining stderr in a named thread so
the server never blocks on a full pipe.  Every wait has a deadline; a
process still running when the interpreter exits is killed (`atexit`).

This is the one runner of the project: the pytest fixtures, the
`nsq_cluster` command and the project's own tests use it.
"""
from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys
import threading
import weakref
from typing import Callable, Dict, List, Optional, Sequence

from ..addresses import connect_host, join_host_port, split_host_port

_LISTEN = re.compile(r"(TCP|HTTP|HTTPS): listening on (\S+)")

#: `python -m MODULE` for each command, so a node starts without PATH
MODULES = {"nsqd": "nsqd_sync", "nsqlookupd": "nsqlookupd_sync", "nsqadmin": "nsqadmin_sync"}

#: how many log lines a node keeps in memory (for `log_text` and errors)
KEEP_LINES = 5000

_LIVE: "weakref.WeakSet[NodeProcess]" = weakref.WeakSet()


class NodeStartError(RuntimeError):
    """The server exited or did not log its addresses before the deadline."""


def command_for(name: str) -> List[str]:
    """argv prefix that runs a command of this package with this interpreter."""
    return [sys.executable, "-m", MODULES[name]]


class NodeProcess:
    """A server subprocess; `tcp`/`http` are the listen addresses (None: flag not given).

    `on_line(text)` is called from the drain thread with every log line
    (without its newline), e.g. to stream it with a prefix.  With
    `wait=False` the constructor returns once the process is spawned; call
    `wait_started()` before using the addresses.
    """

    def __init__(self, name: str, args: Sequence[str] = (), data_path: Optional[str] = None,
                 log_path: Optional[str] = None, start_timeout: float = 15.0,
                 tcp: Optional[str] = "127.0.0.1:0", http: Optional[str] = "127.0.0.1:0",
                 on_line: Optional[Callable[[str], None]] = None,
                 command: Optional[Sequence[str]] = None, new_session: bool = False,
                 wait: bool = True) -> None:
        self.name = name
        argv = list(command) if command is not None else command_for(name)
        listen = []
        if tcp is not None:
            argv.append("--tcp-address=" + tcp)
            listen.append("TCP")
        if http is not None:
            argv.append("--http-address=" + http)
            listen.append("HTTP")
        self.listen = tuple(listen)
        if data_path is not None:
            argv.append("--data-path=" + str(data_path))
        argv.extend(str(a) for a in args)
        self.argv = argv
        self.data_path = str(data_path) if data_path is not None else None
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.addresses: Dict[str, str] = {}
        self.lines: List[str] = []
        self._on_line = on_line
        self._owner_pid = os.getpid()
        self._lines_lock = threading.Lock()
        self._ready = threading.Event()
        self._open_streams = 2  # stdout and stderr, each drained by a thread
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=new_session)
        _LIVE.add(self)
        self._threads = [
            threading.Thread(target=self._drain, args=(stream,), daemon=True,
                             name="nsq-node-%s-%d-%s" % (name, self.proc.pid, label))
            for stream, label in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr"))
        ]
        for t in self._threads:
            t.start()
        if wait:
            self.wait_started()

    # ------------------------------------------------------------ start-up

    def wait_started(self, timeout: Optional[float] = None) -> "NodeProcess":
        """Wait until every expected address is logged; NodeStartError (and kill) if not."""
        timeout = self.start_timeout if timeout is None else timeout
        try:
            ready = self._ready.wait(timeout)
        except BaseException:  # Ctrl-C while starting: never leave the node behind
            self.kill()
            raise
        if not ready:
            self.kill()
            raise NodeStartError("%s did not log its addresses within %.1fs: %s"
                                 % (self.name, timeout, self.log_tail()))
        if not self.listening():
            try:
                code = self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
                code = self.proc.returncode
            raise NodeStartError("%s exited with code %s: %s" % (self.name, code, self.log_tail()))
        return self

    def listening(self) -> bool:
        """Every listener this server opens has logged its address."""
        return all(kind in self.addresses for kind in self.listen)

    def _drain(self, stream) -> None:
        log = open(self.log_path, "a") if self.log_path else None
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace")
                with self._lines_lock:
                    self.lines.append(line)
                    if len(self.lines) > KEEP_LINES:
                        del self.lines[:1000]
                if log:
                    log.write(line)
                    log.flush()
                if self._on_line is not None:
                    self._on_line(line.rstrip("\n"))
                m = _LISTEN.search(line)
                if m and m.group(1) not in self.addresses:
                    self.addresses[m.group(1)] = m.group(2)
                    if self.listening():
                        self._ready.set()
        finally:
            if log:
                log.close()
            with self._lines_lock:
                self._open_streams -= 1
                if self._open_streams == 0:
                    self._ready.set()  # the process closed its output (exited): wake wait_started()

    # ------------------------------------------------------------ addresses

    def _address(self, kind: str) -> str:
        """The logged address of `kind`, with a wildcard host turned into one to dial."""
        host, port = split_host_port(self.addresses[kind])
        return join_host_port(connect_host(host), port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def tcp_address(self) -> str:
        return self._address("TCP")

    @property
    def http_address(self) -> str:
        return self._address("HTTP")

    @property
    def https_address(self) -> str:
        return self._address("HTTPS")

    @property
    def tcp_port(self) -> int:
        return split_host_port(self.addresses["TCP"])[1]

    @property
    def http_port(self) -> int:
        return split_host_port(self.addresses["HTTP"])[1]

    # ------------------------------------------------------------ logs

    def log_text(self) -> str:
        with self._lines_lock:
            return "".join(self.lines)

    def log_tail(self, n: int = 20) -> str:
        with self._lines_lock:
            return "".join(self.lines[-n:]).strip() or "(no output)"

    # ------------------------------------------------------------ stopping

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` and wait; if the process outlives `timeout`, kill it and raise AssertionError."""
        if not self._signal_and_wait(sig, timeout):
            raise AssertionError("%s (pid %d) did not exit within %ss of signal %d"
                                 % (self.name, self.proc.pid, timeout, sig))
        return self.proc.returncode

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; never raises for a slow exit."""
        self._signal_and_wait(signal.SIGTERM, timeout)
        return self.proc.returncode

    def _signal_and_wait(self, sig: int, timeout: float) -> bool:
        """Signal, wait up to `timeout`, SIGKILL if still running; False if it had to be killed."""
        exited = True
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                exited = False
        self.kill()  # reaps a killed process, closes the pipes
        return exited

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        _LIVE.discard(self)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def __repr__(self) -> str:
        state = "running" if self.alive() else "exited %s" % self.proc.returncode
        return "<%s %s pid=%d %s %s>" % (type(self).__name__, self.name, self.proc.pid, state,
                                         self.addresses)


def stop_all(procs: Sequence[NodeProcess], timeout: float = 15.0,
             sig: int = signal.SIGTERM) -> List[NodeProcess]:
    """Signal every process at once, wait up to `timeout` s in all, SIGKILL the rest.

    Returns the processes that had to be killed (empty when all exited in time).
    """
    import time

    for p in procs:
        if p.proc.poll() is None:
            try:
                p.proc.send_signal(sig)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    killed = []
    for p in procs:
        try:
            p.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(p)
        p.kill()  # reaps, closes pipes; no-op for an exited process
    return killed


@atexit.register
def _kill_leftovers() -> None:
    """No node outlives the interpreter that started it (e.g. after Ctrl-C in a test run)."""
    for node in list(_LIVE):
        if node.proc.poll() is None and node._owner_pid == os.getpid():
            node.kill()
