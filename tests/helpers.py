"""Test helpers: start real servers on ephemeral loopback ports and talk to them.

`NodeProcess` runs a command (`nsqd`, `nsqlookupd`, ...) as a subprocess with
`--tcp-address=127.0.0.1:0 --http-address=127.0.0.1:0`, reads the
`TCP: listening on` / `HTTP: listening on` lines from stderr the way client
test harnesses do, and keeps draining stderr into a log file so the server
never blocks on a full pipe.  Every wait has a deadline.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

from nsqd_sync import wire

if TYPE_CHECKING:
    from nsqd_sync.client import Message

_LISTEN = re.compile(r"(TCP|HTTP|HTTPS): listening on (\S+)")


def split_hostport(addr: str) -> Tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def command_for(name: str) -> List[str]:
    """Run the package entry point with this interpreter (works without PATH)."""
    module = {"nsqd": "nsqd_sync", "nsqlookupd": "nsqlookupd_sync", "nsqadmin": "nsqadmin_sync"}[name]
    return [sys.executable, "-m", module]


class NodeProcess:
    """A server subprocess on ephemeral loopback ports."""

    def __init__(self, name: str, args: Sequence[str] = (), data_path: Optional[str] = None,
                 log_path: Optional[str] = None, start_timeout: float = 15.0,
                 tcp: Optional[str] = "127.0.0.1:0", http: str = "127.0.0.1:0") -> None:
        """`tcp=None` for a server with only an HTTP listener (nsqadmin)."""
        self.name = name
        self.listen = ("HTTP",) if tcp is None else ("TCP", "HTTP")
        tcp_flag = [] if tcp is None else ["--tcp-address=" + tcp]
        argv = command_for(name) + tcp_flag + ["--http-address=" + http]
        if data_path is not None:
            argv.append("--data-path=" + data_path)
        argv.extend(args)
        self.argv = argv
        self.log_path = log_path
        self.addresses: dict = {}
        self.lines: List[str] = []
        self._lines_lock = threading.Lock()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self._stdout = threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True)
        self._stdout.start()
        self._ready = threading.Event()
        self._stderr = threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True)
        self._stderr.start()
        if not self._ready.wait(start_timeout):
            self.kill()
            raise RuntimeError("%s did not start: %s" % (name, "".join(self.lines[-20:])))
        if self.proc.poll() is not None and not self.listening():
            raise RuntimeError("%s exited: %s" % (name, "".join(self.lines[-20:])))

    def _drain(self, stream) -> None:
        log = open(self.log_path, "a") if self.log_path else None
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace")
                with self._lines_lock:
                    self.lines.append(line)
                    if len(self.lines) > 5000:
                        del self.lines[:1000]
                if log:
                    log.write(line)
                    log.flush()
                m = _LISTEN.search(line)
                if m:
                    self.addresses[m.group(1)] = m.group(2)
                    if self.listening():
                        self._ready.set()
        finally:
            if log:
                log.close()
            self._ready.set()

    def listening(self) -> bool:
        """Every listener this server opens has logged its address."""
        return all(kind in self.addresses for kind in self.listen)

    @property
    def tcp_port(self) -> int:
        return split_hostport(self.addresses["TCP"])[1]

    @property
    def http_port(self) -> int:
        return split_hostport(self.addresses["HTTP"])[1]

    @property
    def tcp_address(self) -> str:
        return "127.0.0.1:%d" % self.tcp_port

    @property
    def http_address(self) -> str:
        return "127.0.0.1:%d" % self.http_port

    def log_text(self) -> str:
        with self._lines_lock:
            return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError("%s did not exit within %ss of signal %d" % (self.name, timeout, sig))
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


class BodyCollector:
    """A client message handler that records every body it is given (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: List[bytes] = []

    def __call__(self, msg: "Message") -> None:
        with self.lock:
            self.bodies.append(msg.body)

    def count(self) -> int:
        with self.lock:
            return len(self.bodies)

    def has(self, body: bytes) -> bool:
        with self.lock:
            return body in self.bodies

    def snapshot(self) -> Counter:
        with self.lock:
            return Counter(self.bodies)


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.02,
             message: str = "condition") -> object:
    """Poll predicate until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + message)
        time.sleep(interval)


def http_request(port: int, path: str, method: str = "GET", body: Optional[bytes] = None,
                 headers: Optional[dict] = None, timeout: float = 5.0) -> Tuple[int, bytes, dict]:
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


class SocketConn:
    """A loopback TCP connection that sends a protocol magic and reads exact byte counts."""

    def __init__(self, port: int, magic: bytes = b"", timeout: float = 5.0,
                 host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if magic:
            self.sock.sendall(magic)
        self.buf = b""

    def _fill(self, n: int) -> None:
        """Receive until at least n bytes are buffered (EOFError if the peer closes)."""
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("connection closed")
            self.buf += d

    def _read(self, n: int) -> bytes:
        self._fill(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self) -> None:
        self.sock.close()


class RawConn(SocketConn):
    """A raw V2 protocol connection for tests: send commands, read frames."""

    def __init__(self, port: int, magic: bytes = wire.MAGIC_V2, timeout: float = 5.0,
                 host: str = "127.0.0.1") -> None:
        super().__init__(port, magic=magic, timeout=timeout, host=host)

    def send(self, line: str, body: Optional[bytes] = None) -> None:
        data = line.encode() + b"\n"
        if body is not None:
            data += struct.pack(">i", len(body)) + body
        self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self) -> Tuple[int, bytes]:
        size, ftype = struct.unpack(">ii", self._read(8))
        return ftype, self._read(size - 4)

    def frame_skip_heartbeats(self) -> Tuple[int, bytes]:
        while True:
            ft, data = self.frame()
            if not (ft == wire.FRAME_TYPE_RESPONSE and data == wire.HEARTBEAT):
                return ft, data

    def message(self) -> Tuple[int, int, bytes, bytes]:
        ft, data = self.frame_skip_heartbeats()
        assert ft == wire.FRAME_TYPE_MESSAGE, (ft, data)
        return wire.decode_message(data)

    def identify(self, **fields) -> dict:
        self.send("IDENTIFY", json.dumps(dict(fields, feature_negotiation=True)).encode())
        ft, data = self.frame()
        assert ft == wire.FRAME_TYPE_RESPONSE, data
        return json.loads(data)

    def expect_closed(self, timeout: float = 5.0) -> None:
        self.sock.settimeout(timeout)
        while True:
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError:
                return
            if not d:
                return


class CommandConn(RawConn):
    """A RawConn with the publish/subscribe commands most tests need; each expects `OK`."""

    def expect_ok(self) -> None:
        ft, data = self.frame_skip_heartbeats()
        assert (ft, data) == (wire.FRAME_TYPE_RESPONSE, wire.OK), (ft, data)

    def pub(self, topic: str, body: bytes) -> None:
        self.send("PUB " + topic, body)
        self.expect_ok()

    def mpub(self, topic: str, bodies: Sequence[bytes]) -> None:
        self.send("MPUB " + topic, wire.mpub_body(list(bodies)))
        self.expect_ok()

    def dpub(self, topic: str, delay_ms: int, body: bytes) -> None:
        self.send("DPUB %s %d" % (topic, delay_ms), body)
        self.expect_ok()

    def sub(self, topic: str, channel: str) -> None:
        self.send("SUB %s %s" % (topic, channel))
        self.expect_ok()


def consume_all(port: int, topic: str, channel: str, at_least: int, quiet: float = 0.5,
                timeout: float = 20.0) -> List[bytes]:
    """Bodies received (and FIN'd) until at_least arrived and then nothing for `quiet` s."""
    conn = CommandConn(port, timeout=timeout)
    try:
        conn.sub(topic, channel)
        conn.send("RDY 2500")
        got: List[bytes] = []
        deadline = time.monotonic() + timeout
        fins: List[bytes] = []
        while True:
            if fins and not conn.buf:
                conn.send_raw(b"".join(fins))
                fins = []
            wait = quiet if len(got) >= at_least else deadline - time.monotonic()
            assert wait > 0, "got %d of at least %d messages" % (len(got), at_least)
            conn.sock.settimeout(wait)
            try:
                ft, data = conn.frame()
            except socket.timeout:
                if len(got) >= at_least:
                    return got
                raise AssertionError("got %d of at least %d messages" % (len(got), at_least)) from None
            if ft == wire.FRAME_TYPE_MESSAGE:
                _ts, _att, mid, body = wire.decode_message(data)
                got.append(body)
                fins.append(b"FIN " + mid + b"\n")
            else:
                assert (ft, data) == (wire.FRAME_TYPE_RESPONSE, wire.HEARTBEAT), (ft, data)
    finally:
        conn.close()
