"""The bounded in-memory message queue of a topic or channel.

A `queue.Queue` (the design card's primitive, bounded by --mem-queue-size)
with batch operations done under the queue's own mutex: moving 200 messages
costs one lock round instead of 200 (~80 ns per message instead of ~4 us).
Items are encoded messages, one `bytes` each.

`put_many` never blocks: it takes what fits and returns how many it took; the
caller sends the rest to the backend (diskqueue).  A capacity of 0 keeps
nothing in memory (`--mem-queue-size=0` sends every message to disk).
"""
from __future__ import annotations

import queue
from typing import List, Sequence


class MemoryQueue(queue.Queue):
    """queue.Queue plus put_many/get_many under the queue's mutex."""

    def __init__(self, capacity: int) -> None:
        # queue.Queue treats maxsize <= 0 as unbounded; we keep our own bound.
        super().__init__(maxsize=max(capacity, 0))
        self.capacity = max(capacity, 0)

    def put_many(self, items: Sequence[bytes]) -> int:
        """Append as many items as fit; return how many were taken. Never blocks."""
        with self.mutex:
            return self._put_many_locked(items)

    def _put_many_locked(self, items: Sequence[bytes]) -> int:
        room = self.capacity - len(self.queue)
        if room <= 0:
            return 0
        if room >= len(items):
            self.queue.extend(items)
            taken = len(items)
        else:
            self.queue.extend(items[:room])
            taken = room
        self.unfinished_tasks += taken
        self.not_empty.notify(taken)
        return taken

    def get_many(self, max_n: int) -> List[bytes]:
        """Remove and return up to max_n items (oldest first). Never blocks."""
        with self.mutex:
            return self._get_many_locked(max_n)

    def _get_many_locked(self, max_n: int) -> List[bytes]:
        q = self.queue
        n = min(max_n, len(q))
        if n <= 0:
            return []
        popleft = q.popleft
        out = [popleft() for _ in range(n)]
        self.not_full.notify(n)
        return out

    def drain(self) -> List[bytes]:
        """Remove and return everything."""
        with self.mutex:
            out = list(self.queue)
            self.queue.clear()
            self.not_full.notify_all()
            return out

    def depth(self) -> int:
        return len(self.queue)
