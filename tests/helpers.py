"""Test helpers: start real servers on ephemeral loopback ports and talk to them.

`NodeProcess` (the package's one runner, `nsqd_sync.testing.process`, also
behind the pytest plugin's fixtures) runs a command (`nsqd`, `nsqlookupd`,
...) as a subprocess with `--tcp-address=127.0.0.1:0
--http-address=127.0.0.1:0`, reads the `TCP: listening on` / `HTTP: listening
on` lines from stderr the way client test harnesses do, and keeps draining
stderr so the server never blocks on a full pipe.  Every wait has a deadline.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

from nsqd_sync import wire
from nsqd_sync.addresses import split_host_port
from nsqd_sync.testing.nodes import wait_until
from nsqd_sync.testing.process import NodeProcess, NodeStartError, command_for  # noqa: F401

if TYPE_CHECKING:
    from nsqd_sync.client import Message


def split_hostport(addr: str) -> Tuple[str, int]:
    return split_host_port(addr)


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
    """Poll predicate until it returns a truthy value or the deadline passes (AssertionError)."""
    return wait_until(predicate, timeout, interval, message)


def pid_gone(pid: int) -> bool:
    """No process has this PID any more (exited and reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


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
