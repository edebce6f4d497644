"""Consumers: `reader` (NSQ's bench_reader) and the consumer half of `pubsub`.

Each worker SUBscribes, sends one `RDY --rdy` at the start and, like
bench_reader, never again (a FIN frees the slot).  It reads up to 1 MiB per
recv, walks every complete frame in that buffer in one pass and answers all
of its messages with one `sendall` of `FIN <id>\\n` lines.
"""
from __future__ import annotations

import socket
import time
from typing import Any, List, Optional, Tuple

from .. import wire
from .common import (RECV_BUFFER, BenchError, FrameConn, Reporter, Throughput, connect, identify)
from .workers import run_timed, summarize
from . import writer



def prepare(spec: dict) -> Tuple[socket.socket, FrameConn]:
    sock = connect(spec["address"])
    conn = FrameConn(sock)
    identify(sock, conn)
    sock.sendall(wire.command(b"SUB", spec["topic"].encode(), spec["channel"].encode()))
    conn.expect_ok("SUB")
    return sock, conn


def run(state: Tuple[socket.socket, FrameConn], spec: dict, start_ns: int) -> dict:
    """Receive and FIN until --runfor is over (or the stream has been idle for --idle-timeout)."""
    sock, conn = state
    try:
        return _consume(sock, conn, spec, start_ns)
    finally:
        sock.close()


def _consume(sock: socket.socket, conn: FrameConn, spec: dict, start_ns: int) -> dict:
    end_ns = start_ns + int(spec["runfor"] * 1e9)
    idle_ns = int(spec.get("idle", 0.0) * 1e9)
    sock.sendall(b"RDY %d\n" % spec["rdy"])
    buf = bytearray(RECV_BUFFER)
    mv = memoryview(buf)
    filled = len(conn.buf)
    buf[:filled] = conn.buf
    unpack = wire.unpack_frame_header
    recv_into = sock.recv_into
    sendall = sock.sendall
    settimeout = sock.settimeout
    now = time.monotonic_ns
    count = 0
    last_ns = start_ns
    idle_end = False
    while True:
        t = now()
        wait_ns = end_ns - t
        if wait_ns <= 0:
            break
        if idle_ns:
            idle_left = last_ns + idle_ns - t
            if idle_left <= 0:
                idle_end = True
                break
            wait_ns = min(wait_ns, idle_left)
        settimeout(wait_ns / 1e9)
        try:
            n = recv_into(mv[filled:])
        except socket.timeout:
            continue
        if n == 0:
            raise BenchError("reader: nsqd closed the connection")
        filled += n
        pos = 0
        fins: List[Any] = []
        while filled - pos >= 8:
            size, ftype = unpack(buf, pos)
            if size < 4:  # wire.check_frame_size, inline on this hot loop
                raise BenchError("reader: nsqd sent invalid frame size %d" % size)
            end = pos + 4 + size
            if end > filled:
                break
            if ftype == 2:
                fins.append(mv[pos + 18:pos + 34])
            elif ftype == 0:
                if buf[pos + 8:end] == wire.HEARTBEAT:
                    sendall(b"NOP\n")
            else:
                raise BenchError("reader: %s" % bytes(buf[pos + 8:end]).decode("utf-8", "replace"))
            pos = end
        if fins:
            sendall(b"FIN " + b"\nFIN ".join(fins) + b"\n")
            count += len(fins)
            last_ns = now()
        del fins
        rest = filled - pos
        if pos and rest:
            buf[:rest] = bytes(mv[pos:filled])
        filled = rest
        if filled == len(buf):  # one frame bigger than the buffer: grow it
            mv.release()
            buf = buf + bytearray(len(buf))
            mv = memoryview(buf)
    return {"count": count, "end_ns": last_ns if idle_end else now()}


def jobs(address: str, topic: str, channel: str, rdy: int, runfor: float, workers: int,
         idle: float = 0.0) -> List[tuple]:
    spec = {"address": address, "topic": topic, "channel": channel, "rdy": rdy,
            "runfor": runfor, "idle": idle}
    return [(prepare, run, dict(spec)) for _ in range(workers)]


def bench_reader(address: str, topic: str, channel: str, size: int, rdy: int, runfor: float,
                 workers: int, idle: float = 0.0,
                 reporter: Optional[Reporter] = None) -> Throughput:
    start_ns, results = run_timed(jobs(address, topic, channel, rdy, runfor, workers, idle),
                                  "reader", runfor)
    result = summarize("reader", results, start_ns, size)
    if reporter:
        reporter.throughput(result)
    return result


def bench_pubsub(address: str, topic: str, channel: str, size: int, batch_size: int, rdy: int,
                 runfor: float, workers: int,
                 reporter: Optional[Reporter] = None) -> Tuple[Throughput, Throughput]:
    """Writers and readers at the same time; (writer result, reader result)."""
    pubs = writer.jobs(address, topic, size, batch_size, runfor, workers)
    subs = jobs(address, topic, channel, rdy, runfor, workers)
    start_ns, results = run_timed(pubs + subs, "pubsub", runfor)
    w = summarize("writer", results[:workers], start_ns, size)
    r = summarize("reader", results[workers:], start_ns, size)
    if reporter:
        reporter.throughput(w)
        reporter.throughput(r)
    return w, r
