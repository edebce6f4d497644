"""`startup`: how soon a node started the way the pytest fixtures start it answers /ping.

Each run starts an nsqd with `nsqd_sync.testing.NSQDNode` (the runner behind
the `nsqd` fixture: a child process on loopback port 0 with a fresh data
directory), and times three moments from the spawn: the node has logged
both listening addresses (when the fixture hands the node to the test),
`GET /ping` answers `OK`, and -- after SIGTERM -- the process has exited.
Runs are sequential; the lines give the median and the slowest of each.
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from typing import List, Sequence

from .common import BenchError, Reporter


def _ping_ok(http_address: str, deadline: float) -> None:
    from ..addresses import http_url
    from ..http_client import HTTPClient, HTTPClientError

    http = HTTPClient(2.0, 2.0)
    try:
        while True:
            try:
                r = http.request("GET", http_url(http_address, "/ping"))
                if r.status_code == 200 and r.content == b"OK":
                    return
            except HTTPClientError:
                pass
            if time.monotonic() > deadline:
                raise BenchError("node at %s did not answer /ping" % http_address)
            time.sleep(0.002)
    finally:
        http.close()


def bench_startup(command: Sequence[str], args: Sequence[str], runs: int,
                  rep: Reporter, start_timeout: float = 30.0) -> List[List[float]]:
    """Start and stop a node `runs` times; returns [listening, ping, stop] seconds per run."""
    from ..testing import NodeStartError, NSQDNode

    results: List[List[float]] = []
    for _ in range(runs):
        data = tempfile.mkdtemp(prefix="nsq_bench-startup-")
        try:
            t0 = time.monotonic()
            try:
                node = NSQDNode(list(args), data_path=data, command=list(command),
                                start_timeout=start_timeout)
            except NodeStartError as e:
                raise BenchError(str(e)) from None
            try:
                listening = time.monotonic() - t0
                _ping_ok(node.http_address, time.monotonic() + start_timeout)
                ping = time.monotonic() - t0
            finally:
                t1 = time.monotonic()
                node.terminate(timeout=30.0)
            results.append([listening, ping, time.monotonic() - t1])
        finally:
            shutil.rmtree(data, ignore_errors=True)
    for i, what in enumerate(("listening (fixture ready)", "/ping answers OK", "exit after SIGTERM")):
        values = [r[i] for r in results]
        rep.line("startup", "%-26s median %6.3fs  max %6.3fs  (%d runs)"
                 % (what + ":", statistics.median(values), max(values), len(values)))
    return results
