"""A file-backed FIFO queue of byte records, in nsqd's on-disk layout.

nsqd keeps one of these per topic (name ``topic``) and per channel (name
``topic:channel``) for the messages that overflow the memory queue.  The
layout is the one go-diskqueue v1.1.0 (used by nsqd 1.3.0) writes, so a data
directory moves freely between the real nsqd and ours:

* data files ``<data_path>/<name>.diskqueue.%06d.dat``; each record is an
  int32 big-endian length then that many bytes (for nsqd: the encoded
  message, timestamp | attempts | id | body; here the record is opaque);
* a file rolls *before* a record that would push it past
  ``max_bytes_per_file`` (so files stay under the limit unless one record is
  bigger than it); a reader moves on at the end of any file older than the
  write file whatever its size, and deletes the file it has fully read;
* metadata ``<data_path>/<name>.diskqueue.meta.dat``, the text
  ``"%d\\n%d,%d\\n%d,%d\\n" % (depth, readFileNum, readPos, writeFileNum,
  writePos)``, replaced atomically (``<meta>.<random>.tmp``, fsync, rename);
* a file with a record length outside [min_msg_size, max_msg_size], a
  truncated record or a read error is renamed ``<file>.bad``; reading goes on
  with the next file and the depth is recounted from the remaining files.

Durability: the write file is fsynced and the metadata persisted every
``sync_every`` records read or written, when a file rolls or is finished,
and at most ``sync_timeout`` seconds after the queue became dirty (one shared
thread, ``nsqd-diskqueue-sync``, serves every queue in the process; stop it
with :func:`stop_sync_thread`).  Where we differ from go-diskqueue, on the
side of not losing data: on open, records found past the metadata's
writePos (written after the last metadata sync, before a crash) are adopted
and counted instead of being overwritten, and a torn record at the end is
truncated away; a failed write is rolled back (file truncated to where it
was) instead of leaving a partial record.

Locking: one ``threading.Lock`` per DiskQueue guards all its state and file
descriptors; every public method takes it once.  The shared sync thread has
its own condition lock.  Order: a DiskQueue lock may be held while taking the
sync thread's lock (to schedule a sync), never the other way round.
"""
from __future__ import annotations

import errno
import heapq
import itertools
import logging
import os
import random
import re
import struct
import threading
import time
from typing import List, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

_LEN = struct.Struct(">i")
_READ_CHUNK = 256 * 1024    # bytes read ahead per pread when serving records
_SCAN_CHUNK = 1024 * 1024   # bytes per pread when only counting records
_SYNC_POLL = 0.5            # the sync thread's longest sleep (exit latency)
# errors that say nothing about the file: don't call it corrupt, try again later
_TRANSIENT_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EINTR, errno.EAGAIN))
_META_RE = re.compile(rb"\s*(-?\d+)\n(-?\d+),(-?\d+)\n(-?\d+),(-?\d+)\n?\s*\Z")

# a write plan: (file number, start offset, end offset, buffers to join)
_Segment = Tuple[int, int, int, List[bytes]]


class DiskQueueError(Exception):
    """A write, empty or sync failure the caller must surface (e.g. disk full)."""


class _Corrupt(Exception):
    """The current read file cannot be read any further."""


class DiskQueue:
    """A FIFO of byte records kept in files; see the module docstring."""

    def __init__(self, name: str, data_path: str, max_bytes_per_file: int = 104857600,
                 min_msg_size: int = 26, max_msg_size: int = 1048576 + 26,
                 sync_every: int = 2500, sync_timeout: float = 2.0) -> None:
        self.name = name
        self.data_path = data_path
        self._max_bytes_per_file = max_bytes_per_file
        self._min_msg_size = min_msg_size
        self._max_msg_size = max_msg_size
        self._sync_every = max(1, sync_every)
        self._sync_timeout = sync_timeout
        self._lock = threading.Lock()
        self.healthy = True
        self._closed = False
        # state persisted in the metadata file
        self._depth = 0
        self._read_file_num = self._read_pos = 0
        self._write_file_num = self._write_pos = 0
        # open files and the read-ahead buffer
        self._write_fd: Optional[int] = None
        self._write_fd_num = -1
        self._read_fd: Optional[int] = None
        self._read_limit: Optional[int] = None   # size of a complete read file
        self._rbuf = b""
        self._rbuf_off = 0
        # sync bookkeeping
        self._ops = 0
        self._unsynced_writes = False
        self._dirty_since: Optional[float] = None
        self._meta_path = os.path.join(data_path, "%s.diskqueue.meta.dat" % name)
        self._own_file_re = re.compile(
            re.escape(name) + r"\.diskqueue\.(\d{6,}\.dat(\.bad)?|meta\.dat(\.\d+\.tmp|\.bad)?)\Z")
        self._open()

    def __repr__(self) -> str:
        return "<DiskQueue %s depth=%d read=%d,%d write=%d,%d>" % (
            self.name, self._depth, self._read_file_num, self._read_pos,
            self._write_file_num, self._write_pos)

    def _file_name(self, num: int) -> str:
        return os.path.join(self.data_path, "%s.diskqueue.%06d.dat" % (self.name, num))

    # ------------------------------------------------------------------ API

    def put(self, data: bytes) -> None:
        """Append one record; raises DiskQueueError on failure."""
        self.put_many((data,))

    def put_many(self, items: Sequence[bytes]) -> None:
        """Append records with one write per data file touched; all or error."""
        if not items:
            return
        with self._lock:
            if self._closed:
                raise DiskQueueError("exiting")
            segments = self._plan(items)
            done = 0
            try:
                for num, start, _end, parts in segments:
                    fd = self._get_write_fd(num)
                    done += 1
                    _write_parts(fd, parts, start)
            except OSError as exc:
                self._rollback(segments[:done])
                self.healthy = False
                log.error("DISKQUEUE(%s) failed to write %d records - %s", self.name, len(items), exc)
                raise DiskQueueError("DISKQUEUE(%s) failed to write - %s" % (self.name, exc)) from exc
            self._commit(segments, len(items))
        for segment in segments:
            release_in_slices(segment[3])

    def read_many(self, max_n: int) -> List[bytes]:
        """Up to max_n oldest records ([] if none); they count as consumed."""
        out: List[bytes] = []
        if max_n <= 0:
            return out
        with self._lock:
            if self._closed:
                return out
            while len(out) < max_n and self._read_some(out, max_n):
                pass
            if self._read_file_num < self._write_file_num and self._read_limit is not None \
                    and self._read_pos >= self._read_limit:
                self._finish_read_file()
            if out:
                self._count_ops(len(out))
        return out

    def depth(self) -> int:
        """The number of records not yet read."""
        return self._depth

    def empty(self) -> None:
        """Drop every record and data file; the queue stays usable."""
        with self._lock:
            if self._closed:
                raise DiskQueueError("exiting")
            log.info("DISKQUEUE(%s): emptying", self.name)
            errors = self._skip_to_next_rw_file()
            self._try_sync()
        if errors:
            raise DiskQueueError("DISKQUEUE(%s) failed to remove data files - %s" % (self.name, errors[0]))

    def delete(self) -> None:
        """Close the queue and remove all its files (data, metadata, .bad, .tmp)."""
        with self._lock:
            log.info("DISKQUEUE(%s): deleting", self.name)
            self._closed = True
            self._close_read_fd()
            self._close_write_fd()
            try:
                names = os.listdir(self.data_path)
            except OSError as exc:
                log.error("DISKQUEUE(%s) failed to list %s - %s", self.name, self.data_path, exc)
                return
            for fn in names:
                if self._own_file_re.match(fn):
                    _unlink(os.path.join(self.data_path, fn), self.name)

    def close(self) -> None:
        """Fsync and persist the metadata; the queue is unusable afterwards."""
        with self._lock:
            if self._closed:
                return
            log.info("DISKQUEUE(%s): closing", self.name)
            self._closed = True
            try:
                self._sync_locked()
            except OSError as exc:
                raise DiskQueueError("DISKQUEUE(%s) failed to sync on close - %s" % (self.name, exc)) from exc
            finally:
                self._close_read_fd()
                self._close_write_fd()

    def sync(self) -> None:
        """Fsync the write file and persist the metadata now."""
        with self._lock:
            if self._closed:
                return
            try:
                self._sync_locked()
            except OSError as exc:
                self._reschedule_sync()
                raise DiskQueueError("DISKQUEUE(%s) failed to sync - %s" % (self.name, exc)) from exc

    # -------------------------------------------------------------- writing

    def _plan(self, items: Sequence[bytes]) -> List[_Segment]:
        """Split items into per-file buffers, rolling like go-diskqueue v1.1.0."""
        lo, hi, limit = self._min_msg_size, self._max_msg_size, self._max_bytes_per_file
        pack = _LEN.pack
        num, pos = self._write_file_num, self._write_pos
        start = pos
        parts: List[bytes] = []
        segments: List[_Segment] = []
        for data in items:
            n = len(data)
            if n < lo or n > hi:
                raise DiskQueueError("invalid message write size (%d) minMsgSize=%d maxMsgSize=%d"
                                     % (n, lo, hi))
            if pos > 0 and pos + 4 + n > limit:
                if parts:
                    segments.append((num, start, pos, parts))
                num, pos, start, parts = num + 1, 0, 0, []
            parts.append(pack(n))
            parts.append(data)
            pos += 4 + n
        segments.append((num, start, pos, parts))
        return segments

    def _get_write_fd(self, num: int) -> int:
        if self._write_fd is not None and self._write_fd_num == num:
            return self._write_fd
        if self._write_fd is not None:  # rolling: the finished file goes to disk
            os.fsync(self._write_fd)
            self._close_write_fd()
        fd = os.open(self._file_name(num), os.O_WRONLY | os.O_CREAT, 0o600)
        log.info("DISKQUEUE(%s): writeOne() opened %s", self.name, self._file_name(num))
        self._write_fd, self._write_fd_num = fd, num
        return fd

    def _rollback(self, segments: List[_Segment]) -> None:
        """Undo a failed put_many: cut the first file back, remove new ones."""
        self._close_write_fd()
        for num, start, _end, _parts in segments:
            path = self._file_name(num)
            try:
                if num == self._write_file_num:
                    os.truncate(path, start)
                else:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("DISKQUEUE(%s) failed to roll back %s - %s", self.name, path, exc)

    def _commit(self, segments: List[_Segment], n: int) -> None:
        num, _start, end, _parts = segments[-1]
        rolled = num != self._write_file_num
        self._write_file_num, self._write_pos = num, end
        self._depth += n
        self._unsynced_writes = True
        self.healthy = True
        self._count_ops(n, force_sync=rolled)  # go-diskqueue syncs whenever a file rolls

    def _close_write_fd(self) -> None:
        if self._write_fd is not None:
            fd, self._write_fd, self._write_fd_num = self._write_fd, None, -1
            _close(fd)

    # -------------------------------------------------------------- reading

    def _read_some(self, out: List[bytes], max_n: int) -> bool:
        """Read records of the current read file into out; False when none left."""
        try:
            if self._read_file_num == self._write_file_num:
                limit = self._write_pos
                if self._read_pos >= limit:
                    self._check_tail()
                    return False
            else:
                limit = self._complete_file_limit()
                if self._read_pos >= limit:
                    self._finish_read_file()
                    return True
            self._parse_records(out, max_n, limit)
        except OSError as exc:
            if exc.errno in _TRANSIENT_ERRNOS:
                log.error("DISKQUEUE(%s) failed to read %s - %s", self.name,
                          self._file_name(self._read_file_num), exc)
                return False
            self._handle_corrupt(exc)
        except _Corrupt as exc:
            self._handle_corrupt(exc)
        return True

    def _complete_file_limit(self) -> int:
        fd = self._ensure_read_fd()
        if self._read_limit is None:
            self._read_limit = os.fstat(fd).st_size
        return self._read_limit

    def _ensure_read_fd(self) -> int:
        if self._read_fd is None:
            path = self._file_name(self._read_file_num)
            self._read_fd = os.open(path, os.O_RDONLY)
            self._read_limit = None
            self._rbuf, self._rbuf_off = b"", 0
            log.info("DISKQUEUE(%s): readOne() opened %s", self.name, path)
        return self._read_fd

    def _parse_records(self, out: List[bytes], max_n: int, limit: int) -> None:
        fd = self._ensure_read_fd()
        lo, hi, unpack = self._min_msg_size, self._max_msg_size, _LEN.unpack_from
        buf, base, pos = self._rbuf, self._rbuf_off, self._read_pos
        start_count = len(out)
        try:
            while len(out) < max_n and pos < limit:
                i = pos - base
                if i < 0 or i + 4 > len(buf):
                    buf, base, i = self._fill(fd, pos, limit, 4), pos, 0
                size = unpack(buf, i)[0]
                if size < lo or size > hi:
                    raise _Corrupt("invalid message read size (%d)" % size)
                if pos + 4 + size > limit:
                    raise _Corrupt("truncated record of %d bytes" % size)
                if i + 4 + size > len(buf):
                    buf, base, i = self._fill(fd, pos, limit, 4 + size), pos, 0
                out.append(buf[i + 4:i + 4 + size])
                pos += 4 + size
        finally:
            self._depth -= len(out) - start_count
            self._read_pos = pos
            if pos - base >= len(buf):
                buf, base = b"", pos  # drained: keep no memory for idle queues
            self._rbuf, self._rbuf_off = buf, base

    def _fill(self, fd: int, pos: int, limit: int, need: int) -> bytes:
        data = os.pread(fd, max(need, min(limit - pos, _READ_CHUNK)), pos)
        if len(data) < need:
            raise _Corrupt("short read at %d (wanted %d bytes, got %d)" % (pos, need, len(data)))
        return data

    def _finish_read_file(self) -> None:
        """Move past a fully read file: persist the new position, then delete it."""
        old = self._read_file_num
        self._close_read_fd()
        self._read_file_num, self._read_pos = old + 1, 0
        self._try_sync()
        _unlink(self._file_name(old), self.name)

    def _handle_corrupt(self, exc: Exception) -> None:
        """Rename the current read file to .bad, go to the next one, recount depth."""
        bad = self._file_name(self._read_file_num)
        log.error("DISKQUEUE(%s) reading at %d of %s - %s", self.name, self._read_pos, bad, exc)
        self._close_read_fd()
        if self._read_file_num == self._write_file_num:
            self._close_write_fd()
            self._write_file_num, self._write_pos = self._write_file_num + 1, 0
        log.warning("DISKQUEUE(%s) jump to next file and saving bad file as %s.bad", self.name, bad)
        try:
            os.rename(bad, bad + ".bad")
        except OSError as rename_exc:
            log.error("DISKQUEUE(%s) failed to rename bad diskqueue file %s - %s",
                      self.name, bad, rename_exc)
        self._read_file_num, self._read_pos = self._read_file_num + 1, 0
        self._recount_depth()
        self._try_sync()

    def _check_tail(self) -> None:
        """The reader caught up with the writer: the depth must be 0."""
        if self._depth != 0:
            log.error("DISKQUEUE(%s) depth %d at tail, resetting 0", self.name, self._depth)
            self._depth = 0
            self._mark_dirty()

    def _close_read_fd(self) -> None:
        if self._read_fd is not None:
            fd, self._read_fd = self._read_fd, None
            _close(fd)
        self._read_limit = None
        self._rbuf, self._rbuf_off = b"", 0

    def _skip_to_next_rw_file(self) -> List[OSError]:
        """Delete the data files and restart both positions at a new file."""
        self._close_read_fd()
        self._close_write_fd()
        errors = []
        first = min(self._read_file_num, self._write_file_num)
        last = max(self._read_file_num, self._write_file_num)
        for num in self._data_file_nums():  # the files that exist, not every number in between
            if not first <= num <= last:
                continue
            err = _unlink(self._file_name(num), self.name)
            if err is not None:
                errors.append(err)
        self._write_file_num = self._read_file_num = last + 1
        self._write_pos = self._read_pos = 0
        self._depth = 0
        return errors

    # -------------------------------------------------------------- syncing

    def _count_ops(self, n: int, force_sync: bool = False) -> None:
        self._ops += n
        if force_sync or self._ops >= self._sync_every:
            self._try_sync()
        else:
            self._mark_dirty()

    def _mark_dirty(self) -> None:
        if self._dirty_since is None:
            now = time.monotonic()
            self._dirty_since = now
            _SYNCER.schedule(self, now + self._sync_timeout)

    def _reschedule_sync(self) -> None:
        self._dirty_since = None
        self._mark_dirty()

    def _sync_locked(self) -> None:
        if self._write_fd is not None and self._unsynced_writes:
            os.fsync(self._write_fd)
        self._unsynced_writes = False
        self._persist_meta()
        self._ops = 0
        self._dirty_since = None

    def _try_sync(self) -> None:
        """Sync, logging (and retrying later) instead of raising."""
        try:
            self._sync_locked()
        except OSError as exc:
            log.error("DISKQUEUE(%s) failed to sync - %s", self.name, exc)
            self._reschedule_sync()

    def _sync_if_due(self, now: float) -> None:
        """Called by the sync thread."""
        with self._lock:
            if self._closed or self._dirty_since is None:
                return
            if self._dirty_since + self._sync_timeout > now + 0.001:
                return  # dirtied again since this was scheduled; a later entry exists
            self._try_sync()

    def _persist_meta(self) -> None:
        text = b"%d\n%d,%d\n%d,%d\n" % (self._depth, self._read_file_num, self._read_pos,
                                         self._write_file_num, self._write_pos)
        tmp = "%s.%d.tmp" % (self._meta_path, random.getrandbits(62))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _pwrite_all(fd, text, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self._meta_path)
        except OSError:
            _unlink(tmp, self.name, quiet=True)
            raise

    # ------------------------------------------------------------ restarting

    def _open(self) -> None:
        """Load the metadata (or find orphan data files) and repair what a crash left."""
        recount = False
        if not self._load_meta():
            self._adopt_orphan_files()
        elif not self._meta_is_possible():
            self._set_meta_aside()
            self._depth = self._read_file_num = self._read_pos = 0
            self._write_file_num = self._write_pos = 0
            self._adopt_orphan_files()
            recount = True
        if self._recover_write_tail() or self._depth < 0 or recount:
            self._recount_depth()
        if self._read_file_num == self._write_file_num and self._read_pos == self._write_pos:
            self._check_tail()

    def _load_meta(self) -> bool:
        try:
            with open(self._meta_path, "rb") as f:
                text = f.read(256)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("DISKQUEUE(%s) failed to retrieveMetaData - %s", self.name, exc)
            return False
        m = _META_RE.match(text)
        if m is None:
            log.error("DISKQUEUE(%s) failed to retrieveMetaData - bad metadata %r", self.name, text)
            return False
        (self._depth, self._read_file_num, self._read_pos,
         self._write_file_num, self._write_pos) = (int(g) for g in m.groups())
        return True

    def _data_file_nums(self) -> List[int]:
        """The numbers of this queue's data files on disk (not .bad), ascending."""
        pattern = re.compile(re.escape(self.name) + r"\.diskqueue\.(\d{6,})\.dat\Z")
        try:
            return sorted(int(m.group(1)) for m in map(pattern.match, os.listdir(self.data_path)) if m)
        except OSError:
            return []

    def _meta_is_possible(self) -> bool:
        """Could this queue have written the loaded metadata, given the data files that exist?

        Files are made one after the other and deleted only once read, so
        there are never more file numbers between the read and the write file
        than files on disk (one may be missing: the reader sets it aside), and
        files past the write file follow it on.  A file number far from the
        files on disk (``999999999``) would otherwise make recounting walk
        every number in between.
        """
        read, rpos, write, wpos = (self._read_file_num, self._read_pos,
                                   self._write_file_num, self._write_pos)
        if min(read, rpos, write, wpos) < 0:
            return False
        if read > write or (read == write and rpos > wpos):
            return False
        nums = self._data_file_nums()
        if write - read > len(nums):
            return False  # more files between read and write than exist
        return not nums or write >= nums[-1] or write + 1 in nums  # later files follow on

    def _set_meta_aside(self) -> None:
        log.error("DISKQUEUE(%s) impossible metadata (depth %d, read %d,%d, write %d,%d) for the data files on disk, "
                  "saving it as %s.bad and reading the data files from the oldest",
                  self.name, self._depth, self._read_file_num, self._read_pos,
                  self._write_file_num, self._write_pos, self._meta_path)
        try:
            os.replace(self._meta_path, self._meta_path + ".bad")
        except OSError as exc:
            log.error("DISKQUEUE(%s) failed to rename bad metadata %s - %s", self.name, self._meta_path, exc)

    def _adopt_orphan_files(self) -> None:
        """No usable metadata: start reading at the oldest data file, if any."""
        nums = self._data_file_nums()
        if nums:
            first = min(nums)
            log.warning("DISKQUEUE(%s) data files without metadata, reading from %s",
                        self.name, self._file_name(first))
            self._read_file_num = self._write_file_num = first

    def _recover_write_tail(self) -> bool:
        """Adopt records past writePos (and in later files); True if depth must be recounted."""
        recount = False
        while True:
            path = self._file_name(self._write_file_num)
            try:
                size = os.path.getsize(path)
            except OSError:
                size = 0
            if size < self._write_pos:
                log.error("DISKQUEUE(%s) %s is shorter (%d) than its write position %d",
                          self.name, path, size, self._write_pos)
                self._write_file_num, self._write_pos = self._write_file_num + 1, 0
                recount = True
                continue
            if size > self._write_pos:
                self._adopt_tail(path, size)
            if not os.path.exists(self._file_name(self._write_file_num + 1)):
                return recount
            self._write_file_num, self._write_pos = self._write_file_num + 1, 0

    def _adopt_tail(self, path: str, size: int) -> None:
        count, end, _ok = self._scan_records(self._write_file_num, self._write_pos)
        if count:
            log.warning("DISKQUEUE(%s) adopting %d records written after the last metadata sync in %s",
                        self.name, count, path)
        if end < size:
            log.warning("DISKQUEUE(%s) truncating %d bytes of partial data at the end of %s",
                        self.name, size - end, path)
            try:
                os.truncate(path, end)
            except OSError as exc:
                log.error("DISKQUEUE(%s) failed to truncate %s - %s", self.name, path, exc)
        self._depth += count
        self._write_pos = end

    def _recount_depth(self) -> None:
        """Count the readable records between the read and write positions."""
        total = 0
        for num in range(self._read_file_num, self._write_file_num + 1):
            start = self._read_pos if num == self._read_file_num else 0
            limit = self._write_pos if num == self._write_file_num else None
            total += self._scan_records(num, start, limit)[0]
        if total != self._depth:
            log.warning("DISKQUEUE(%s) depth corrected from %d to %d", self.name, self._depth, total)
        self._depth = total

    def _scan_records(self, num: int, start: int, limit: Optional[int] = None) -> Tuple[int, int, bool]:
        """(records, end of the last one, reached limit cleanly) from start in file num."""
        try:
            fd = os.open(self._file_name(num), os.O_RDONLY)
        except OSError:
            return 0, start, False
        lo, hi, unpack = self._min_msg_size, self._max_msg_size, _LEN.unpack_from
        try:
            end = os.fstat(fd).st_size if limit is None else limit
            count, pos, buf, base = 0, start, b"", start
            while pos < end:
                if pos - base + 4 > len(buf):
                    buf, base = os.pread(fd, min(_SCAN_CHUNK, end - pos), pos), pos
                    if len(buf) < 4:
                        break
                size = unpack(buf, pos - base)[0]
                if size < lo or size > hi or pos + 4 + size > end:
                    break
                pos += 4 + size
                count += 1
            return count, pos, pos == end
        except OSError as exc:
            log.error("DISKQUEUE(%s) failed to scan %s - %s", self.name, self._file_name(num), exc)
            return 0, start, False
        finally:
            os.close(fd)


_WRITE_PARTS = 16384   # length prefixes and records joined per pwrite (8,192 records)


def _write_parts(fd: int, parts: List[bytes], pos: int) -> None:
    """Write the joined parts at pos: one pwrite, or one per 8,192 records of a huge batch.

    Joining a million records is one C call that holds the GIL for tens of
    ms; in pieces, other threads (other topics' publishers) run in between.
    """
    if len(parts) <= _WRITE_PARTS:
        _pwrite_all(fd, b"".join(parts), pos)
        return
    for i in range(0, len(parts), _WRITE_PARTS):
        chunk = b"".join(parts[i:i + _WRITE_PARTS])
        _pwrite_all(fd, chunk, pos)
        pos += len(chunk)


def release_in_slices(items: list, step: int = 16384) -> None:
    """Empty a huge list a slice at a time.

    Dropping a list of a million bytes objects frees them all in one C call
    that holds the GIL (~100 ms); slice by slice, other threads run between.
    """
    while len(items) > step:
        del items[-step:]
    items.clear()


def _pwrite_all(fd: int, data: bytes, pos: int) -> None:
    """Write all of data at pos (one syscall unless the kernel writes short)."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], pos + done)
        if n <= 0:
            raise OSError("short write at %d" % (pos + done))
        done += n


def _unlink(path: str, name: str, quiet: bool = False) -> Optional[OSError]:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if not quiet:
            log.error("DISKQUEUE(%s) failed to remove %s - %s", name, path, exc)
        return exc
    return None


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError as exc:
        log.error("DISKQUEUE close of fd %d failed - %s", fd, exc)


class _SyncThread:
    """One thread that fsyncs dirty queues ``sync_timeout`` after they got dirty.

    Queues push (deadline, queue) when they go from clean to dirty; the
    thread sleeps until the earliest deadline (at most _SYNC_POLL), syncs the
    due queues without holding its own lock, and exits when stopped or when
    the main thread has finished (flushing what is still pending).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: List[Tuple[float, int, DiskQueue]] = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    def schedule(self, queue: DiskQueue, deadline: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._seq), queue))
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, args=(self._stop,),
                                                name="nsqd-diskqueue-sync")
                self._thread.start()
            elif self._heap[0][2] is queue:
                self._cond.notify()

    def stop(self, timeout: float) -> None:
        with self._cond:
            thread, self._thread = self._thread, None
            self._stop.set()
            self._cond.notify()
        if thread is not None:
            thread.join(timeout)

    def _take_due(self, now: float) -> List[DiskQueue]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def _run(self, stop: threading.Event) -> None:
        main = threading.main_thread()
        while not stop.is_set() and main.is_alive():
            with self._cond:
                due = self._take_due(time.monotonic())
                if not due:
                    wait = _SYNC_POLL
                    if self._heap:
                        wait = min(wait, max(0.0, self._heap[0][0] - time.monotonic()))
                    self._cond.wait(wait)
                    due = self._take_due(time.monotonic())
            self._sync_all(due, time.monotonic())
        with self._cond:  # flush whatever is still pending before going away
            due = self._take_due(float("inf"))
        self._sync_all(due, float("inf"))

    @staticmethod
    def _sync_all(queues: List[DiskQueue], now: float) -> None:
        for queue in queues:
            try:
                queue._sync_if_due(now)
            except Exception:  # keep serving the other queues
                log.exception("DISKQUEUE(%s) background sync failed", queue.name)


_SYNCER = _SyncThread()


def stop_sync_thread(timeout: float = 5.0) -> None:
    """Stop the shared sync thread after it flushes pending queues (it restarts on demand)."""
    _SYNCER.stop(timeout)
