"""Shared pieces of the bench tools: result lines, addresses, raw V2 connections.

The result line is NSQ's, byte for byte::

    duration: 3.003983927s - 48.738mb/s - 255527.333ops/s - 3.913us/op

(mb/s is MiB of message bodies per second; us/op is whole microseconds of
the run divided by the message count, as bench_writer computes it.)  Lines
are printed with a Go-log style prefix, ``[bench_writer] 2026/11/23 08:18:15``.
"""
from __future__ import annotations

import json
import os
import platform
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, TextIO, Tuple

from .. import __version__, wire
from ..durations import format_duration_ns

RECV_BUFFER = 1 << 20  # bytes per recv for readers (>= 64 KB)
SOCKET_BUFFER = 4 << 20  # SO_RCVBUF / SO_SNDBUF asked of the kernel
CLIENT_BOUND_CPU = 0.85  # a worker busier than this is probably the limit

RESULT_LINE = re.compile(
    r"duration: (?P<duration>\S+) - (?P<mbs>[0-9.]+|\+Inf|NaN)mb/s - "
    r"(?P<ops>[0-9.]+|\+Inf|NaN)ops/s - (?P<usop>[0-9.]+|\+Inf|NaN)us/op")


class BenchError(Exception):
    """A benchmark could not run (node unreachable, error frame, bad flags)."""


# ---------------------------------------------------------------- Go formatting

go_duration = format_duration_ns  # Go's time.Duration.String() of nanoseconds


def _go_float(value: float) -> str:
    """Go's %.03f, including its spelling of infinities."""
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "+Inf"
    return "%.3f" % value


def format_result_line(count: int, duration_ns: int, size: int) -> str:
    """NSQ's `duration: … - N.NNNmb/s - N.NNNops/s - N.NNNus/op` for one run."""
    seconds = duration_ns / 1e9
    if seconds > 0:
        mbs = count * size / seconds / 1024 / 1024
        ops = count / seconds
    else:
        mbs = ops = float("inf")
    us = duration_ns // 1000
    usop = us / count if count else (float("inf") if us else float("nan"))
    return "duration: %s - %smb/s - %sops/s - %sus/op" % (
        go_duration(duration_ns), _go_float(mbs), _go_float(ops), _go_float(usop))


def parse_result_line(text: str) -> Optional[Dict[str, float]]:
    """The figures of the first result line in text (None if there is none)."""
    m = RESULT_LINE.search(text)
    if m is None:
        return None
    return {"duration": m.group("duration"), "mbs": float(m.group("mbs")),
            "ops": float(m.group("ops")), "usop": float(m.group("usop"))}


# ---------------------------------------------------------------- results

@dataclass
class Throughput:
    """One timed run: messages moved by `workers` connections in duration_ns."""

    name: str
    count: int
    duration_ns: int
    size: int
    workers: int
    worker_cpu: List[float] = field(default_factory=list)  # CPU seconds / wall seconds, per worker

    @property
    def ops(self) -> float:
        return self.count / (self.duration_ns / 1e9) if self.duration_ns > 0 else 0.0

    @property
    def client_busy(self) -> float:
        """The busiest client worker's CPU share of its wall time (0..1)."""
        return max(self.worker_cpu) if self.worker_cpu else 0.0

    @property
    def client_bound(self) -> bool:
        return self.client_busy >= CLIENT_BOUND_CPU

    def line(self) -> str:
        return format_result_line(self.count, self.duration_ns, self.size)

    def client_line(self) -> str:
        text = "client: %d worker process%s, busiest at %.0f%% CPU" % (
            self.workers, "" if self.workers == 1 else "es", 100 * self.client_busy)
        if self.client_bound:
            text += " - the client is likely the limit here, not the node"
        return text


class Reporter:
    """Prints result lines with a Go log prefix: `[bench_writer] 2026/11/23 08:18:15 `."""

    def __init__(self, stream: Optional[TextIO] = None, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet

    def line(self, name: str, text: str) -> None:
        if self.quiet:
            return
        stream = self.stream if self.stream is not None else sys.stdout
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        stream.write("[bench_%s] %s %s\n" % (name, stamp, text))
        stream.flush()

    def throughput(self, result: Throughput) -> None:
        self.line(result.name, result.line())
        self.line(result.name, result.client_line())


# ---------------------------------------------------------------- connections

def parse_address(addr: str) -> Tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:4150`) into (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise BenchError("invalid address %r: want <addr>:<port>" % addr)
    return host.strip("[]") or "127.0.0.1", int(port)


def connect(addr: str, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to nsqd with the V2 magic sent, large buffers, no Nagle."""
    host, port = parse_address(addr)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise BenchError("cannot connect to nsqd at %s: %s" % (addr, e.strerror or e)) from None
    sock.settimeout(30.0)  # per operation, once connected: a stalled node is an error
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        except OSError:
            pass
    sock.sendall(wire.MAGIC_V2)
    return sock


def identify_body(extra: Optional[dict] = None, negotiate: bool = False) -> bytes:
    data = {"client_id": "nsq_bench", "hostname": socket.gethostname(),
            "user_agent": "nsq_bench/%s" % __version__}
    if negotiate:
        data["feature_negotiation"] = True
    if extra:
        data.update(extra)
    return json.dumps(data).encode()


class FrameConn:
    """A blocking frame reader over a socket (wire.FrameReader), for a tool's few non-bulk reads.

    The bulk loops (reader.py, latency.py) parse their receive buffer in place
    with wire.unpack_frame_header and wire.check_frame_size; they start from
    `buf`, the bytes this reader holds beyond the frames it returned.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = wire.FrameReader()
        self._frames: List[Tuple[int, bytes]] = []

    @property
    def buf(self) -> bytearray:
        """Received bytes not yet returned as frames (whole frames included)."""
        return bytearray(b"".join(wire.frame(t, d) for t, d in self._frames)) + self._reader.buf

    @buf.setter
    def buf(self, data: bytearray) -> None:
        self._frames = []
        self._reader = wire.FrameReader()
        self._frames = self._feed(bytes(data))

    def _feed(self, data: bytes) -> List[Tuple[int, bytes]]:
        try:
            return self._reader.feed(data)
        except wire.FrameError as e:
            raise BenchError("nsqd sent %s" % e) from None

    def read_frame(self) -> Tuple[int, bytes]:
        while not self._frames:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BenchError("nsqd closed the connection")
            self._frames = self._feed(chunk)
        return self._frames.pop(0)

    def read_response(self, what: str) -> bytes:
        """The next response frame, answering heartbeats; error frames raise."""
        while True:
            ftype, data = self.read_frame()
            if ftype == wire.FRAME_TYPE_RESPONSE:
                if data == wire.HEARTBEAT:
                    self.sock.sendall(b"NOP\n")
                    continue
                return data
            if ftype == wire.FRAME_TYPE_ERROR:
                raise BenchError("%s failed: %s" % (what, data.decode("utf-8", "replace")))
            raise BenchError("%s: unexpected message frame" % what)

    def expect_ok(self, what: str) -> None:
        data = self.read_response(what)
        if data != wire.OK:
            raise BenchError("%s: unexpected response %r" % (what, data))


def identify(sock: socket.socket, conn: FrameConn, extra: Optional[dict] = None,
             negotiate: bool = False) -> dict:
    """Send IDENTIFY and read its answer (a JSON object when negotiating)."""
    sock.sendall(wire.command(b"IDENTIFY", body=identify_body(extra, negotiate)))
    data = conn.read_response("IDENTIFY")
    if negotiate and data != wire.OK:
        try:
            return json.loads(data)
        except ValueError:
            raise BenchError("IDENTIFY: bad JSON response %r" % data[:200]) from None
    return {}


def create_channels(addr: str, pairs: List[Tuple[str, str]], parallel: int = 100) -> None:
    """Create topic/channel pairs by SUBscribing and disconnecting (channels persist)."""
    for i in range(0, len(pairs), parallel):
        chunk = pairs[i:i + parallel]
        socks = []
        try:
            for topic, channel in chunk:
                sock = connect(addr)
                sock.sendall(wire.command(b"SUB", topic.encode(), channel.encode()))
                socks.append(sock)
            for sock, (topic, channel) in zip(socks, chunk):
                FrameConn(sock).expect_ok("SUB %s %s" % (topic, channel))
        finally:
            for sock in socks:
                sock.close()


def message_body(size: int) -> bytes:
    """A message body like bench_writer's: `size` zero bytes."""
    if size < 1:
        raise BenchError("--size must be at least 1")
    return bytes(size)


def fmt_int(value: float) -> str:
    return "{:,}".format(int(round(value)))


def machine_line() -> str:
    """System, CPUs, CPU model and Python: the machine line of every bench table."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cpu = " (%s)" % model if model else ""
    return "%s %s, %d CPUs%s, Python %s" % (platform.system(), platform.machine(),
                                            os.cpu_count() or 1, cpu, platform.python_version())
