"""A seeded protocol fuzzer against one node, with a canary client that must never notice.

Sessions from `fuzz.session` (hostile V2 bytes, split at random points)
run four at a time; each ends with a half-close and must see the node
close its side within 10 s (no handler stuck on a half-read frame).  At
the end: the canary never failed, the node's log has no traceback, its
threads and file descriptors are back to their baseline, and it still
serves and exits 0 on SIGTERM.

CI size: 500 sessions x 20 frames = 10,000 frames; ``--reliability-long``:
5,000 x 20 = 100,000.  The seed is fixed (NSQ_FUZZ_SEED overrides it); a
failure names the seed and the sessions, and `fuzz.session(seed, i, 20)`
gives back their exact bytes.
"""
from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

import pytest

from tests.helpers import NodeProcess, http_request, wait_for
from tests.reliability import fuzz
from tests.reliability.canary import Canary, fds, settled, threads

pytestmark = pytest.mark.timeout(300)

FRAMES_PER_SESSION = 20
DEFAULT_SEED = 1212


def _run_session(port: int, seed: int, index: int) -> Optional[str]:
    """Send session `index`; None if the node closed its side after our half-close, else why not."""
    data, cuts = fuzz.session(seed, index, FRAMES_PER_SESSION)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        try:
            start = 0
            for cut in cuts + [len(data)]:
                s.sendall(data[start:cut])
                start = cut
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the node closed first (a fatal error): fine
        try:
            while s.recv(1 << 16):
                pass
        except socket.timeout:
            return "session %d: the node did not close within 10s of our half-close" % index
        except OSError:
            pass  # reset by the node: closed
        return None
    finally:
        s.close()


def test_protocol_fuzz(tmp_path, scale):
    seed = int(os.environ.get("NSQ_FUZZ_SEED", DEFAULT_SEED))
    sessions = scale(500, 5000)
    # queues stay in memory (a diskqueue's files and sync thread would be resources the baseline lacks)
    with NodeProcess("nsqd", ["--max-heartbeat-interval=5s", "--mem-queue-size=1000000"], data_path=tmp_path) as node:
        # topics and channels have threads of their own: the fuzzer's valid names exist before the baseline
        for topic in ["canary"] + [t for t in fuzz.TOPICS if "#" not in t]:
            assert http_request(node.http_port, "/topic/create?topic=" + topic, method="POST")[0] == 200
        for topic, channel in fuzz.PERSISTENT + [("canary", "ch")]:
            path = "/channel/create?topic=%s&channel=%s" % (topic, channel)
            assert http_request(node.http_port, path, method="POST")[0] == 200
        canary = Canary(node.tcp_port)
        canary.start()
        wait_for(lambda: canary.rounds > 0 or canary.errors, timeout=10, message="canary running")
        base_threads = settled(lambda: threads(node.pid))
        base_fds = settled(lambda: fds(node.pid))

        with ThreadPoolExecutor(4, thread_name_prefix="test-fuzz") as pool:
            problems: List[str] = [p for p in pool.map(lambda i: _run_session(node.tcp_port, seed, i),
                                                        range(sessions)) if p]
        assert not problems, "seed %d: %s" % (seed, problems[:10])

        # an ephemeral topic lives until its last channel goes; the fuzzer may have left one without channels
        http_request(node.http_port, "/topic/delete?topic=fz_e%23ephemeral", method="POST")
        wait_for(lambda: threads(node.pid) <= base_threads and fds(node.pid) <= base_fds, timeout=30,
                 message="threads %d and fds %d back to baseline (now %d, %d)"
                 % (base_threads, base_fds, threads(node.pid), fds(node.pid)))
        canary.stop()
        canary.check(min_rounds=10)
        log = node.log_text()
        assert "Traceback" not in log and "unexpected error" not in log, "seed %d:\n%s" % (seed, log[-5000:])
        assert http_request(node.http_port, "/ping")[0] == 200
        assert node.stop() == 0
