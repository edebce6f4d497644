"""Publishers: `writer` (MPUB batches, NSQ's bench_writer) and `single` (one PUB per round trip).

Each worker builds its command once (the whole MPUB, body included) and
resends the same bytes, waiting for each `OK` as bench_writer does.
"""
from __future__ import annotations

import time
from typing import Any, List, Optional, Tuple

from .. import wire
from .common import BenchError, FrameConn, Reporter, Throughput, connect, identify, message_body
from .workers import run_timed, summarize

_OK = wire.OK_FRAME


def pub_command(topic: str, size: int, batch: int) -> bytes:
    """MPUB of `batch` bodies of `size` zero bytes, or PUB when batch is 0."""
    body = message_body(size)
    if batch == 0:
        return wire.command(b"PUB", topic.encode(), body=body)
    return wire.command(b"MPUB", topic.encode(), body=wire.mpub_body([body] * batch))


def prepare(spec: dict) -> Tuple[Any, FrameConn, bytes, int]:
    sock = connect(spec["address"])
    conn = FrameConn(sock)
    identify(sock, conn)
    batch = spec["batch"]
    cmd = pub_command(spec["topic"], spec["size"], batch)
    return sock, conn, cmd, max(batch, 1)


def run(state: Tuple[Any, FrameConn, bytes, int], spec: dict, start_ns: int) -> dict:
    """Publish until --runfor is over (or spec["count"] messages are in)."""
    sock, conn, cmd, per = state
    end_ns = start_ns + int(spec["runfor"] * 1e9)
    limit: Optional[int] = spec.get("count")
    what = "MPUB" if spec["batch"] else "PUB"
    sendall = sock.sendall
    recv = sock.recv
    now = time.monotonic_ns
    count = 0
    try:
        while True:
            if limit is not None and limit - count < per:
                if limit - count <= 0:
                    break
                per = limit - count
                cmd = pub_command(spec["topic"], spec["size"], per if spec["batch"] else 0)
            sendall(cmd)
            data = recv(65536)
            if data != _OK or conn.buf:
                if not data:
                    raise BenchError("%s: nsqd closed the connection" % what)
                conn.buf += data
                conn.expect_ok(what)
            count += per
            if now() >= end_ns:
                break
    finally:
        sock.close()
    return {"count": count}


def jobs(address: str, topic: str, size: int, batch: int, runfor: float, workers: int,
         count: Optional[int] = None) -> List[tuple]:
    """Worker jobs for `workers` publishers (batch 0: PUB; count splits across workers)."""
    out = []
    for i in range(workers):
        spec = {"address": address, "topic": topic, "size": size, "batch": batch,
                "runfor": runfor}
        if count is not None:
            spec["count"] = count // workers + (1 if i < count % workers else 0)
        out.append((prepare, run, spec))
    return out


def bench_writer(address: str, topic: str, size: int, batch_size: int, runfor: float,
                 workers: int, reporter: Optional[Reporter] = None) -> Throughput:
    start_ns, results = run_timed(jobs(address, topic, size, batch_size, runfor, workers),
                                  "writer", runfor)
    result = summarize("writer", results, start_ns, size)
    if reporter:
        reporter.throughput(result)
    return result


def bench_single(address: str, topic: str, size: int, runfor: float, workers: int,
                 reporter: Optional[Reporter] = None) -> Throughput:
    start_ns, results = run_timed(jobs(address, topic, size, 0, runfor, workers), "single", runfor)
    result = summarize("single", results, start_ns, size)
    if reporter:
        reporter.throughput(result)
    return result
