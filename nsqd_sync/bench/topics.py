"""`topics`: PUB throughput with the load spread evenly over 1, 100, 1000 topics.

Each topic gets one channel, created by a SUB that then disconnects (a
non-ephemeral channel stays), so every message is also queued to a channel
as in real use.  Each worker publishes MPUB batches round-robin over all
topics, starting at its own offset; one MPUB body is built once and sent
with a per-topic command header (`sendmsg` of the two buffers, no copy).
With --nsqd-http-address the topics are deleted after each case, so the
cases do not pile messages up in the node.
"""
from __future__ import annotations

import socket
import time
from typing import List, Optional, Sequence, Tuple

from .. import wire
from ..http_client import HTTPClient, HTTPClientError
from .common import (BenchError, FrameConn, Reporter, Throughput, connect, create_channels,
                     identify, message_body)
from .workers import run_timed, summarize

_OK = wire.OK_FRAME


def topic_names(prefix: str, n: int) -> List[str]:
    """`prefix.N.i` names: distinct per case so cases never share a topic."""
    width = len(str(n - 1))
    return ["%s.%d.%0*d" % (prefix, n, width, i) for i in range(n)]


def prepare(spec: dict) -> Tuple[socket.socket, FrameConn, List[bytes], bytes]:
    sock = connect(spec["address"])
    conn = FrameConn(sock)
    identify(sock, conn)
    body = wire.mpub_body([message_body(spec["size"])] * spec["batch"])
    size = wire.pack_int32(len(body))
    topics = spec["topics"]
    start = spec["offset"] % len(topics)
    order = topics[start:] + topics[:start]
    heads = [b"MPUB %s\n" % t.encode() + size for t in order]
    return sock, conn, heads, body


def run(state: Tuple[socket.socket, FrameConn, List[bytes], bytes], spec: dict,
        start_ns: int) -> dict:
    sock, conn, heads, body = state
    end_ns = start_ns + int(spec["runfor"] * 1e9)
    per = spec["batch"]
    sendmsg = sock.sendmsg
    sendall = sock.sendall
    recv = sock.recv
    now = time.monotonic_ns
    count = 0
    total = len(heads[0]) + len(body)
    try:
        while True:
            for head in heads:
                sent = sendmsg([head, body])
                if sent < total:  # rare: finish the short write
                    sendall((head + body)[sent:])
                data = recv(65536)
                if data != _OK or conn.buf:
                    if not data:
                        raise BenchError("MPUB: nsqd closed the connection")
                    conn.buf += data
                    conn.expect_ok("MPUB")
                count += per
                if now() >= end_ns:
                    return {"count": count}
    finally:
        sock.close()


def delete_topics(http_address: str, names: Sequence[str]) -> None:
    """POST /topic/delete for each name (errors ignored: a cleanup, not a measurement)."""
    http = HTTPClient(2.0, 10.0)
    try:
        for name in names:
            try:
                http.post(http_address, "/topic/delete", topic=name)
            except HTTPClientError:
                pass
    finally:
        http.close()


def bench_topics(address: str, http_address: str, prefix: str, channel: str, size: int,
                 batch_size: int, runfor: float, workers: int, counts: Sequence[int],
                 reporter: Optional[Reporter] = None) -> List[Tuple[int, Throughput]]:
    out: List[Tuple[int, Throughput]] = []
    for n in counts:
        names = topic_names(prefix, n)
        for name in names:
            if not wire.is_valid_name(name):
                raise BenchError("topics: %r is not a valid topic name (shorten --topic)" % name)
        create_channels(address, [(name, channel) for name in names])
        jobs = []
        for i in range(workers):
            spec = {"address": address, "topics": names, "offset": i * n // workers,
                    "size": size, "batch": batch_size, "runfor": runfor}
            jobs.append((prepare, run, spec))
        try:
            start_ns, results = run_timed(jobs, "topics", runfor)
        finally:
            if http_address:
                delete_topics(http_address, names)
        result = summarize("topics", results, start_ns, size)
        out.append((n, result))
        if reporter:
            reporter.line("topics", "topics: %d - %s" % (n, result.line()))
            reporter.line("topics", result.client_line())
    return out
