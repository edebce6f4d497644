"""`latency`: publish at a fixed rate, consume, and time each message from PUB to receipt.

The publisher (its own process, so the consumer never waits for the GIL)
sends one PUB per message, paced to --rate, with the wall-clock send time
(`time.time_ns()`) in the body after an 8-byte token that marks this run;
it reads the `OK`s without waiting for each.  The consumer (this process)
asks the node in IDENTIFY to write each message at once
(`output_buffer_size: -1`, as a latency-sensitive NSQ consumer may), reads
whatever has arrived, stamps the whole buffer with one clock read, FINs it
all in one write, and at the end prints p50, p99, p99.9 and max.
Messages with another run's token (left in the topic earlier) are FINed
and not counted.
"""
from __future__ import annotations

import gc
import math
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .. import wire
from .common import RECV_BUFFER, BenchError, FrameConn, Reporter, connect, identify
from .workers import WorkerPool

_STAMP = struct.Struct(">8sq")
MIN_SIZE = _STAMP.size


@dataclass
class Latency:
    """Publish-to-receive latencies of one run, in nanoseconds."""

    rate: int
    sent: int
    received: int
    publish_seconds: float
    p50: int
    p99: int
    p999: int
    max: int

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.publish_seconds if self.publish_seconds > 0 else 0.0

    def line(self) -> str:
        return ("rate: %d msg/s (achieved %.1f) - received: %d/%d - p50: %.3fms - p99: %.3fms"
                " - p99.9: %.3fms - max: %.3fms" % (
                    self.rate, self.achieved_rate, self.received, self.sent, self.p50 / 1e6,
                    self.p99 / 1e6, self.p999 / 1e6, self.max / 1e6))


def percentile(sorted_values: List[int], q: float) -> int:
    """The nearest-rank q-quantile (0 < q <= 1) of an ascending list."""
    if not sorted_values:
        return 0
    n = len(sorted_values)
    rank = math.ceil(round(q * n, 6))
    return sorted_values[min(n - 1, max(0, rank - 1))]


# ---------------------------------------------------------------- publisher (worker process)

def prepare_publisher(spec: dict) -> Tuple[socket.socket, FrameConn]:
    sock = connect(spec["address"])
    conn = FrameConn(sock)
    identify(sock, conn)
    return sock, conn


def run_publisher(state: Tuple[socket.socket, FrameConn], spec: dict, start_ns: int) -> dict:
    sock, conn = state
    try:
        return _publish(sock, conn, spec, start_ns)
    finally:
        sock.close()


def _publish(sock: socket.socket, conn: FrameConn, spec: dict, start_ns: int) -> dict:
    rate = spec["rate"]
    size = spec["size"]
    token = spec["token"]
    end_ns = start_ns + int(spec["runfor"] * 1e9)
    head = b"PUB %s\n" % spec["topic"].encode() + wire.pack_int32(size)
    pad = bytes(size - MIN_SIZE)
    pack = _STAMP.pack
    clock = time.time_ns
    now = time.monotonic_ns
    sendall = sock.sendall
    sock.settimeout(None)  # blocking: sendall waits, recv(MSG_DONTWAIT) never does
    sent = 0
    acked = 0
    pending = wire.FrameReader()
    period = 1e9 / rate
    while True:
        t = now()
        if t >= end_ns:
            break
        due = int((t - start_ns) / period) + 1
        if due > sent:
            n = min(due - sent, 1000)
            sendall(b"".join([head + pack(token, clock()) + pad for _ in range(n)]))
            sent += n
        acked += _drain_acks(sock, pending)
        wait = start_ns + (sent * period) - now()
        if wait > 0:
            time.sleep(wait / 1e9)
    publish_ns = now() - start_ns
    sock.settimeout(10.0)
    conn.buf = pending.buf
    while acked < sent:
        conn.expect_ok("PUB")
        acked += 1
    return {"count": sent, "publish_ns": publish_ns}


def _drain_acks(sock: socket.socket, pending: wire.FrameReader) -> int:
    """Count the complete OK frames that have arrived, without blocking."""
    frames: List[Tuple[int, bytes]] = []
    while True:
        try:
            chunk = sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            break
        if not chunk:
            raise BenchError("latency publisher: nsqd closed the connection")
        try:
            frames += pending.feed(chunk)
        except wire.FrameError as e:
            raise BenchError("latency publisher: nsqd sent %s" % e) from None
    acked = 0
    for ftype, data in frames:
        if ftype == wire.FRAME_TYPE_ERROR:
            raise BenchError("PUB failed: %s" % data.decode("utf-8", "replace"))
        if data == wire.OK:
            acked += 1
        elif data == wire.HEARTBEAT:
            sock.sendall(b"NOP\n")
    return acked


# ---------------------------------------------------------------- consumer (this process)

def _subscribe(address: str, topic: str, channel: str, rdy: int, obuf_size: int,
               obuf_timeout: int) -> Tuple[socket.socket, FrameConn]:
    sock = connect(address)
    conn = FrameConn(sock)
    extra = {}
    if obuf_size:
        extra["output_buffer_size"] = obuf_size
    if obuf_timeout:
        extra["output_buffer_timeout"] = obuf_timeout
    identify(sock, conn, extra, negotiate=True)
    sock.sendall(wire.command(b"SUB", topic.encode(), channel.encode()))
    conn.expect_ok("SUB")
    sock.sendall(b"RDY %d\n" % rdy)
    return sock, conn


def _consume(sock: socket.socket, conn: FrameConn, token: bytes, pool: WorkerPool,
             end_ns: int, grace: float) -> Tuple[List[int], int, int]:
    """Receive until the publisher is done and every message is in (or the grace is over)."""
    buf = bytearray(RECV_BUFFER)
    mv = memoryview(buf)
    filled = len(conn.buf)
    buf[:filled] = conn.buf
    lat: List[int] = []
    add = lat.append
    unpack = wire.unpack_frame_header
    unstamp = _STAMP.unpack_from
    clock = time.time_ns
    now = time.monotonic_ns
    stop_ns = end_ns + int(grace * 1e9)
    sent = -1
    publish_ns = 0
    sock.settimeout(0.05)
    while True:
        if sent < 0 and now() >= end_ns and pool.poll():
            stats = pool.results[0]
            sent, publish_ns = stats["count"], stats["publish_ns"]
        if 0 <= sent <= len(lat) or now() >= stop_ns:
            break
        try:
            n = sock.recv_into(mv[filled:])
        except socket.timeout:
            continue
        arrived = clock()
        if n == 0:
            raise BenchError("latency consumer: nsqd closed the connection")
        filled += n
        pos = 0
        fins = []
        while filled - pos >= 8:
            size, ftype = unpack(buf, pos)
            if size < 4:  # wire.check_frame_size, inline on this hot loop
                raise BenchError("latency consumer: nsqd sent invalid frame size %d" % size)
            end = pos + 4 + size
            if end > filled:
                break
            if ftype == 2:
                fins.append(mv[pos + 18:pos + 34])
                if size - 30 >= MIN_SIZE:
                    tok, stamp = unstamp(buf, pos + 34)
                    if tok == token:
                        add(arrived - stamp)
            elif ftype == 0:
                if buf[pos + 8:end] == wire.HEARTBEAT:
                    sock.sendall(b"NOP\n")
            else:
                raise BenchError("latency consumer: %s"
                                 % bytes(buf[pos + 8:end]).decode("utf-8", "replace"))
            pos = end
        if fins:
            sock.sendall(b"FIN " + b"\nFIN ".join(fins) + b"\n")
        del fins
        rest = filled - pos
        if pos and rest:
            buf[:rest] = bytes(mv[pos:filled])
        filled = rest
        if filled == len(buf):
            mv.release()
            buf = buf + bytearray(len(buf))
            mv = memoryview(buf)
    return lat, max(sent, 0), publish_ns


def bench_latency(address: str, topic: str, channel: str, size: int, rate: int, runfor: float,
                  rdy: int = 2500, obuf_size: int = -1, obuf_timeout: int = 0,
                  reporter: Optional[Reporter] = None) -> Latency:
    if size < MIN_SIZE:
        raise BenchError("latency: --size must be at least %d (token and timestamp)" % MIN_SIZE)
    token = os.urandom(8)
    sock, conn = _subscribe(address, topic, channel, rdy, obuf_size, obuf_timeout)
    spec = {"address": address, "topic": topic, "size": size, "rate": rate, "runfor": runfor,
            "token": token}
    gc_was = gc.isenabled()
    try:
        with WorkerPool([(prepare_publisher, run_publisher, spec)], "latency") as pool:
            pool.start()
            gc.disable()
            start_ns = pool.go()
            lat, sent, publish_ns = _consume(sock, conn, token, pool, start_ns + int(runfor * 1e9),
                                             grace=10.0)
            if not pool.poll():
                pool.collect(30.0)
    finally:
        if gc_was:
            gc.enable()
        sock.close()
    lat.sort()
    result = Latency(rate=rate, sent=sent, received=len(lat), publish_seconds=publish_ns / 1e9,
                     p50=percentile(lat, 0.5), p99=percentile(lat, 0.99),
                     p999=percentile(lat, 0.999), max=lat[-1] if lat else 0)
    if reporter:
        reporter.line("latency", result.line())
        if result.received < result.sent:
            reporter.line("latency", "warning: %d messages did not arrive in time"
                          % (result.sent - result.received))
    return result
