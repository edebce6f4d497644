"""Message IDs, as NSQ makes them (nsqd/guid.go).

An ID is a 64-bit value `(ts - epoch) << 22 | node_id << 12 | sequence`,
where ts is the time in "pseudo-milliseconds" (ns >> 20), written on the
wire as 16 lowercase hex characters.  The low 12 bits (the sequence) are the
last three hex characters, so a whole batch shares one 13-character prefix
and IDs are built by concatenation, without formatting each number.
"""
from __future__ import annotations

import threading
import time
from typing import List

EPOCH = 1288834974288  # (2012-10-28 16:23:42 UTC).UnixNano() >> 20
NODE_ID_BITS = 10
SEQUENCE_BITS = 12
SEQUENCE_MAX = 1 << SEQUENCE_BITS

_SEQ_HEX = [b"%03x" % i for i in range(SEQUENCE_MAX)]


class GUIDFactory:
    """Hands out unique IDs for one topic of a node (as NSQ: one factory per topic); thread-safe."""

    def __init__(self, node_id: int) -> None:
        if not 0 <= node_id < (1 << NODE_ID_BITS):
            raise ValueError("node id must be in range [0,1024)")
        self.node_id = node_id
        self._lock = threading.Lock()
        self._last_ts = -1
        self._sequence = 0
        self._prefix = b""

    def new_ids(self, n: int) -> List[bytes]:
        """n fresh IDs (16 hex bytes each), in increasing order.

        When this pseudo-millisecond's 4,096 sequence numbers are used up, the
        caller waits for the next one with the lock released (as Go's
        GenerateID sleeps outside guidFactory's lock), so a huge MPUB never
        holds back another caller; each caller's IDs still increase.
        """
        out: List[bytes] = []
        while n > 0:
            with self._lock:
                ts = time.time_ns() >> 20
                if ts < self._last_ts:
                    ts = self._last_ts  # clock went backwards: keep counting in the last slot
                if ts != self._last_ts:
                    self._last_ts = ts
                    self._sequence = 0
                    self._prefix = b"%013x" % (((ts - EPOCH) << NODE_ID_BITS) | self.node_id)
                seq = self._sequence
                take = min(n, SEQUENCE_MAX - seq)
                if take > 0:
                    out.extend([self._prefix + s for s in _SEQ_HEX[seq:seq + take]])
                    self._sequence = seq + take
                    n -= take
                    continue
                last_ts = self._last_ts
            _sleep_until_after(last_ts)
        return out

    def new_id(self) -> bytes:
        """One fresh ID (the single-PUB path)."""
        with self._lock:
            ts = time.time_ns() >> 20
            if ts > self._last_ts:
                self._last_ts = ts
                self._sequence = 0
                self._prefix = b"%013x" % (((ts - EPOCH) << NODE_ID_BITS) | self.node_id)
            seq = self._sequence
            if seq < SEQUENCE_MAX:
                self._sequence = seq + 1
                return self._prefix + _SEQ_HEX[seq]
        return self.new_ids(1)[0]  # this pseudo-millisecond is used up: wait for the next


def _sleep_until_after(pseudo_ms: int) -> None:
    """Sleep (holding no lock) until the clock is past this pseudo-millisecond (2**20 ns)."""
    wait_ns = ((pseudo_ms + 1) << 20) - time.time_ns()
    time.sleep(max(wait_ns, 50_000) / 1e9)


def id_to_int(msg_id: bytes) -> int:
    return int(msg_id, 16)


def id_parts(msg_id: bytes) -> "tuple[int, int, int]":
    """(pseudo-ms timestamp, node id, sequence) of an ID."""
    v = int(msg_id, 16)
    return (v >> 22) + EPOCH, (v >> 12) & 0x3FF, v & 0xFFF
