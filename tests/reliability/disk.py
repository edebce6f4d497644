"""A disk that a test can fill up and free again, under a running node.

As root where mounting is allowed (CI may or may not), the node's data dir
is a small tmpfs: `fill()` writes a filler file until ENOSPC, `free()`
deletes it.  Otherwise the node's RLIMIT_FSIZE stands in (set on the
running process with prlimit): `fill()` lowers it to one byte, so every
write past the first byte of a file fails with EFBIG (Python ignores
SIGXFSZ), `free()` restores it.  `kind` says which one is in use.
"""
from __future__ import annotations

import errno
import os
import resource
import subprocess
from typing import Optional

TMPFS_SIZE = "32m"


class FullableDisk:
    def __init__(self, base: str) -> None:
        self.path = os.path.join(base, "data")
        os.makedirs(self.path)
        self.kind = "rlimit"
        self._pid: Optional[int] = None
        self._saved: Optional[tuple] = None
        self._filler = os.path.join(self.path, "zz-filler")
        if os.geteuid() == 0 and not os.environ.get("NSQ_RELIABILITY_NO_TMPFS"):
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + TMPFS_SIZE, "tmpfs", self.path],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            if r.returncode == 0:
                self.kind = "tmpfs"

    def attach(self, pid: int) -> None:
        """The node whose writes fill() must make fail (needed for the rlimit kind)."""
        self._pid = pid

    def fill(self) -> None:
        if self.kind == "tmpfs":
            chunk = b"\0" * (1 << 16)
            fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        if len(chunk) == 1:
                            break
                        chunk = chunk[:len(chunk) // 2]
            finally:
                os.close(fd)
        else:
            assert self._pid is not None, "attach(pid) first"
            self._saved = resource.prlimit(self._pid, resource.RLIMIT_FSIZE)
            resource.prlimit(self._pid, resource.RLIMIT_FSIZE, (1, self._saved[1]))

    def free(self) -> None:
        if self.kind == "tmpfs":
            try:
                os.unlink(self._filler)
            except FileNotFoundError:
                pass
        elif self._saved is not None and self._pid is not None:
            try:
                resource.prlimit(self._pid, resource.RLIMIT_FSIZE, self._saved)
            except ProcessLookupError:
                pass
            self._saved = None

    def close(self) -> None:
        """Free and unmount (call after every node on it stopped)."""
        self.free()
        if self.kind == "tmpfs":
            subprocess.run(["umount", "-l", self.path], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10)
