"""Backends: where a topic's or channel's messages go when memory is full.

Non-ephemeral topics and channels use a `DiskQueue` (diskqueue.py), named
`<topic>` or `<topic>:<channel>` as in NSQ.  Ephemeral ones use the
`DummyBackend`, which, as in NSQ, drops what does not fit in memory.

A backend offers: put_many(items) and close() (both raise BackendError),
read_many(n), depth(), empty(), delete(), and `healthy`.
"""
from __future__ import annotations

import logging
from typing import Callable, List, Optional, Sequence

from . import wire
from .errors import BackendError

log = logging.getLogger(__name__)


class DummyBackend:
    """Stores nothing: ephemeral topics and channels drop overflow."""

    healthy = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.dropped = 0

    def put_many(self, items: Sequence[bytes]) -> None:
        self.dropped += len(items)

    def read_many(self, max_n: int) -> List[bytes]:
        return []

    def depth(self) -> int:
        return 0

    def empty(self) -> None:
        pass

    def delete(self) -> None:
        pass

    def close(self) -> None:
        pass


def disk_backend(name: str, opts, on_health: Callable[[Optional[str]], None]) -> object:
    """A DiskQueue for a non-ephemeral topic or channel, configured from Options.

    In memory a message's attempts field is the count of its next delivery;
    on disk it is NSQ's count of deliveries so far, so a data directory is
    interchangeable with the real nsqd's.  The conversion happens here.

    Every write reports to on_health, as NSQ's SetHealth: a failure makes the
    node unhealthy (/ping answers 500) until a later write succeeds.
    """
    from .diskqueue import DiskQueue, DiskQueueError, release_in_slices

    unbump = wire.unbump_attempts
    bump = wire.bump_attempts

    class _Disk(DiskQueue):
        def put_many(self, items: Sequence[bytes]) -> None:  # type: ignore[override]
            records = [unbump(m) for m in items]
            try:
                super().put_many(records)
            except DiskQueueError as e:
                on_health("failed to write message to backend - %s" % e)
                log.error("DISKQUEUE(%s): failed to write messages to backend - %s", name, e)
                raise BackendError(str(e)) from e
            finally:
                release_in_slices(records)
            on_health(None)

        def read_many(self, max_n: int) -> List[bytes]:  # type: ignore[override]
            return [bump(m) for m in super().read_many(max_n)]

        def close(self) -> None:
            try:
                super().close()
            except DiskQueueError as e:
                raise BackendError(str(e)) from e

    return _Disk(name, opts.data_dir, max_bytes_per_file=opts.max_bytes_per_file,
                 min_msg_size=26, max_msg_size=opts.max_msg_size + 26,
                 sync_every=opts.sync_every, sync_timeout=opts.sync_timeout)
