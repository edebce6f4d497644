"""nsq_to_file's per-topic writer: one consumer, one open file, FIN after fsync.

NSQ's Go: `apps/nsq_to_file/file_logger.go`.  A `FileLogger` consumes one
topic and appends each message body plus a newline to the current file.
Messages are answered only after their bytes are on disk: they wait in
`_pending` (the handler calls `enable_async()`), and `_sync()` writes the
buffered bytes, fsyncs and then FINs the whole batch in one write per
connection.  A crash (even kill -9) therefore loses nothing: whatever was
not FIN'd is redelivered by nsqd (at-least-once; a redelivered message may
already be in the file).

A sync happens when `max_in_flight` messages are pending; after a batch of
the consumer's work queue when every message nsqd has given us is pending
and the consumer is starved (nsqd will send no more until we answer); when
messages are pending and none arrived for IDLE_SYNC (the end of a burst:
NSQ's tool waits for the next tick instead); every `sync_interval`; before a
rotation and at stop.  With gzip each sync ends a gzip member, so a file is a
concatenation of complete members and every FIN'd message is in a member
whose trailer was written (`gzip -d` reads them all).

Threads: the consumer's worker calls `_handle` per message and
`_after_batch` per batch; `nsq_to_file-<topic>-timer` runs the sync ticker,
the idle sync and interval rotation.  One lock, `FileLogger._lock`,
guards the file state; FINs are sent while holding it (the consumer's own
locks are leaves, so this cannot deadlock).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Callable, List, Optional

from ..client import Consumer, Message

__all__ = ["FileLoggerOptions", "FileLogger", "FilenameError", "compute_filename_format", "strftime"]

logger = logging.getLogger(__name__)

#: pending messages are synced and FIN'd once no message arrived for this long (seconds)
IDLE_SYNC = 0.1


class FilenameError(ValueError):
    """--filename-format cannot work with the other flags."""


@dataclass
class FileLoggerOptions:
    """The nsq_to_file flags a FileLogger needs (durations in seconds)."""

    channel: str = "nsq_to_file"
    max_in_flight: int = 200
    output_dir: str = "/tmp"
    work_dir: str = ""  # "" means output_dir
    datetime_format: str = "%Y-%m-%d_%H"
    filename_format: str = "<TOPIC>.<HOST><REV>.<DATETIME>.log"
    host_identifier: str = ""
    gzip: bool = False
    gzip_level: int = 6
    skip_empty_files: bool = False
    rotate_size: int = 0
    rotate_interval: float = 0.0
    sync_interval: float = 30.0

    @property
    def effective_work_dir(self) -> str:
        return self.work_dir or self.output_dir


# ---------------------------------------------------------------- file names

# the strftime codes nsq_to_file knows (Go's table in apps/nsq_to_file/strftime.go);
# any other "%x" stays in the name as written
_STRFTIME_CODES = set("BbmAadHIMSYypZz%")


def strftime(fmt: str, t: Optional[float] = None) -> str:
    """`--datetime-format` rendered for time t (local time, like Go's time.Now())."""
    tm = time.localtime(time.time() if t is None else t)
    out = []
    i = 0
    n = len(fmt)
    while i < n:
        c = fmt[i]
        if c == "%" and i + 1 < n and fmt[i + 1] in _STRFTIME_CODES:
            code = fmt[i + 1]
            if code == "%":
                out.append("%")
            elif code == "z":
                off = tm.tm_gmtoff or 0
                sign = "-" if off < 0 else "+"
                off = abs(off) // 60
                out.append("%s%02d%02d" % (sign, off // 60, off % 60))
            else:
                out.append(time.strftime("%" + code, tm))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def compute_filename_format(opts: FileLoggerOptions, topic: str, hostname: Optional[str] = None,
                            pid: Optional[int] = None) -> str:
    """The file name template of a topic: <TOPIC>, <HOST>, <PID> filled in; <DATETIME>
    (and <REV> when needed) left for each file.  Raises FilenameError."""
    host = hostname if hostname is not None else socket.gethostname()
    short = host.split(".")[0]
    identifier = short
    if opts.host_identifier:
        identifier = opts.host_identifier.replace("<SHORT_HOST>", short).replace("<HOSTNAME>", host)
    fmt = opts.filename_format
    if opts.gzip or opts.rotate_size > 0 or opts.rotate_interval > 0 or \
            opts.effective_work_dir != opts.output_dir:
        if "<REV>" not in fmt:
            raise FilenameError("missing <REV> in --filename-format when gzip, rotation, or work dir enabled")
    else:
        fmt = fmt.replace("<REV>", "")
    fmt = fmt.replace("<TOPIC>", topic).replace("<HOST>", identifier)
    fmt = fmt.replace("<PID>", str(os.getpid() if pid is None else pid))
    if opts.gzip and not fmt.endswith(".gz"):
        fmt += ".gz"
    return fmt


def _trim_prefix(s: str, prefix: str) -> str:
    return s[len(prefix):] if s.startswith(prefix) else s


def _output_path(output_dir: str, work_dir: str, path: str) -> str:
    """Go's filepath.Join(OutputDir, strings.TrimPrefix(path, WorkDir))."""
    return os.path.normpath(os.path.join(output_dir, _trim_prefix(path, work_dir).lstrip("/")))


def _exclusive_rename(src: str, dst: str) -> None:
    """Move src to dst unless dst exists (FileExistsError): link, then unlink."""
    os.link(src, dst)
    os.unlink(src)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _Fatal(Exception):
    """A file error nsq_to_file cannot continue after (Go: log FATAL, exit 1)."""


# ---------------------------------------------------------------- the logger

class FileLogger:
    """Archive one topic into files.

    `make_consumer(topic, channel, handler, after_batch)` builds the (not yet
    started) Consumer, so the command decides addresses and --consumer-opt
    settings.
    `on_fatal(message)` is called after a write/sync/rename error was logged
    (the command exits 1, like Go's logger).
    """

    def __init__(self, opts: FileLoggerOptions, topic: str,
                 make_consumer: Callable[[str, str, Callable[[Message], Optional[bool]],
                                          Callable[[], None]], Consumer],
                 on_fatal: Optional[Callable[[str], None]] = None) -> None:
        self.opts = opts
        self.topic = topic
        self.name = "%s/%s" % (topic, opts.channel)
        self.filename_format = compute_filename_format(opts, topic)
        self.work_dir = opts.effective_work_dir
        self.on_fatal = on_fatal
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._fd: Optional[int] = None
        self._path = ""  # the open file
        self._filename = ""  # the name (with <REV> still in it) the open file was made from
        self._rev = 0
        self._open_time = 0.0
        self.filesize = 0  # bytes given to the file (before compression), Go's filesize
        self._compressor = None  # zlib gzip member in progress
        self._buf: List[bytes] = []
        self._pending: List[Message] = []
        self._name_second = -1
        self._name_cache = ""
        self._last_sync = time.monotonic()
        self._last_message = 0.0
        self._stopping = False
        self._closed = False
        self._failed = False
        self.written = 0  # messages written (for tests and status)
        self.consumer = make_consumer(topic, opts.channel, self._handle, self._after_batch)
        self._timer = threading.Thread(target=self._timer_loop, name="nsq_to_file-%s-timer" % topic,
                                       daemon=True)

    def __repr__(self) -> str:
        return "<FileLogger %s %s>" % (self.name, self._path or "(no file)")

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "FileLogger":
        self._timer.start()
        self.consumer.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT/SIGTERM: stop consuming, write and FIN what arrived, close the file."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        self.consumer.stop(timeout)  # waits for in-flight messages: the timer thread syncs them
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            if not self._failed:
                try:
                    self._sync_locked()
                    self._close_locked()
                except _Fatal:
                    pass
        self._timer.join(5.0)

    def hup(self) -> None:
        """SIGHUP: sync and close the current file; the next message opens a new one."""
        with self._lock:
            if self._failed or self._closed:
                return
            try:
                self._sync_locked()
                self._close_locked()
            except _Fatal:
                pass

    # ------------------------------------------------------------ the handler

    def _handle(self, msg: Message) -> None:
        msg.enable_async()
        with self._lock:
            if self._failed or self._closed:
                msg.requeue(0, backoff=False)
                return
            try:
                if self._needs_rotation():
                    self._update_file_locked()
                body = msg.body
                self._buf.append(body)
                self._buf.append(b"\n")
                self.filesize += len(body) + 1
                pending = self._pending
                pending.append(msg)
                self.written += 1
                self._last_message = time.monotonic()
                if len(pending) >= self.opts.max_in_flight or self._stopping:
                    self._sync_locked()
                elif len(pending) == 1:
                    self._wake.notify()  # the timer thread now watches for idleness
            except _Fatal:
                return

    def _after_batch(self) -> None:
        """The worker handled what the work queue held: sync if nsqd waits for our FINs."""
        with self._lock:
            if self._pending and not (self._failed or self._closed) and self._starved():
                self._guard(self._sync_locked)

    def _starved(self) -> bool:
        pending = len(self._pending)
        in_flight = 0
        for state in self.consumer.connection_states().values():
            in_flight += state["in_flight"]
        if in_flight > pending:
            return False  # more messages are already on their way to this handler
        return self.consumer.is_starved()

    # ------------------------------------------------------------ timer thread

    def _timer_loop(self) -> None:
        opts = self.opts
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                if self._stopping:
                    if self._pending and not self._failed:
                        self._guard(self._sync_locked)
                    self._wake.wait(0.05)
                    continue
                if now >= self._last_sync + opts.sync_interval:
                    self._tick_locked()
                    continue
                rotate_at = None
                if opts.rotate_interval > 0 and self._fd is not None and not self._failed:
                    rotate_at = self._open_time + opts.rotate_interval
                    if now > rotate_at:
                        self._tick_locked()
                        continue
                idle_at = None
                if self._pending and not self._failed:
                    idle_at = self._last_message + IDLE_SYNC
                    if now >= idle_at:
                        self._guard(self._sync_locked)
                        continue
                wake_at = min(t for t in (self._last_sync + opts.sync_interval, rotate_at, idle_at)
                              if t is not None)
                self._wake.wait(max(0.001, wake_at - now))

    def _tick_locked(self) -> None:
        """Go's ticker case: rotate (or close, with --skip-empty-files) when due, then sync."""
        if self._failed:
            self._last_sync = time.monotonic()
            return

        def tick() -> None:
            if self._needs_rotation():
                if self.opts.skip_empty_files:
                    self._sync_locked()
                    self._close_locked()
                else:
                    self._update_file_locked()
            self._sync_locked()

        self._guard(tick)
        self._last_sync = time.monotonic()

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except _Fatal:
            pass

    # ------------------------------------------------------------ files

    def current_filename(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._name_second:
            self._name_second = second
            self._name_cache = self.filename_format.replace(
                "<DATETIME>", strftime(self.opts.datetime_format, now))
        return self._name_cache

    def _needs_rotation(self) -> bool:
        if self._fd is None:
            return True
        opts = self.opts
        filename = self.current_filename()
        if filename != self._filename:
            logger.info("[%s] new filename %s, rotating...", self.name, filename)
            return True
        if opts.rotate_interval > 0:
            since = time.monotonic() - self._open_time
            if since > opts.rotate_interval:
                logger.info("[%s] %.3fs since last open, rotating...", self.name, since)
                return True
        if opts.rotate_size > 0 and self.filesize > opts.rotate_size:
            logger.info("[%s] %s currently %d bytes (> %d), rotating...", self.name, self._path,
                        self.filesize, opts.rotate_size)
            return True
        return False

    def _fatal(self, text: str) -> "_Fatal":
        self._failed = True
        logger.critical("[%s] %s", self.name, text)
        if self.on_fatal is not None:
            self.on_fatal(text)
        return _Fatal(text)

    def _sync_locked(self) -> None:
        """Write what is buffered, end the gzip member, fsync, then FIN the batch."""
        fd = self._fd
        if fd is None:
            if self._buf or self._pending:
                # nothing open (e.g. closed by a tick): open a file for what is waiting
                self._update_file_locked()
                fd = self._fd
            else:
                return
        try:
            if self._buf:
                data = b"".join(self._buf)
                self._buf.clear()
                if self.opts.gzip:
                    if self._compressor is None:
                        self._compressor = zlib.compressobj(self.opts.gzip_level, zlib.DEFLATED, 31)
                    data = self._compressor.compress(data)
                _write_all(fd, data)
            if self._compressor is not None:
                _write_all(fd, self._compressor.flush())
                self._compressor = None
            os.fsync(fd)
        except OSError as e:
            raise self._fatal("failed syncing messages: %s" % e) from None
        if self._pending:
            logger.debug("[%s] synced %d records to disk", self.name, len(self._pending))
            pending, self._pending = self._pending, []
            self.consumer.finish_many(pending)

    def _close_locked(self) -> None:
        """fsync and close the file, then move it from the work dir to the output dir."""
        fd = self._fd
        if fd is None:
            return
        self._sync_locked()
        try:
            os.close(fd)
        except OSError as e:
            raise self._fatal("failed to close output file: %s" % e) from None
        self._fd = None
        src = self._path
        if self.work_dir != self.opts.output_dir:
            self._move_to_output(src)

    def _move_to_output(self, src: str) -> None:
        opts = self.opts
        dst = _output_path(opts.output_dir, self.work_dir, src)
        logger.info("[%s] moving finished file %s to %s", self.name, src, dst)
        try:
            _exclusive_rename(src, dst)
            return
        except FileExistsError:
            pass
        except OSError as e:
            raise self._fatal("unable to move file from %s to %s: %s" % (src, dst, e)) from None
        template = os.path.join(os.path.dirname(dst), os.path.basename(self._filename))
        rev = self._rev + 1
        while True:
            logger.warning("[%s] destination file already exists: %s", self.name, dst)
            dst = template.replace("<REV>", "-%06d" % rev)
            try:
                _exclusive_rename(src, dst)
            except FileExistsError:
                rev += 1
                continue
            except OSError as e:
                raise self._fatal("unable to rename file from %s to %s: %s" % (src, dst, e)) from None
            logger.info("[%s] renamed finished file %s to %s to avoid overwrite", self.name, src, dst)
            return

    def _update_file_locked(self) -> None:
        """Close the current file and open the next one (Go's updateFile)."""
        self._close_locked()
        opts = self.opts
        filename = self.current_filename()
        if filename != self._filename:
            self._rev = 0
        else:
            self._rev += 1
        self._filename = filename
        self._open_time = time.monotonic()
        full = os.path.join(self.work_dir, filename)
        self._makedirs_for(full)
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        flags |= os.O_EXCL if (opts.gzip or opts.rotate_interval > 0) else os.O_APPEND
        while True:
            path = full.replace("<REV>", "-%06d" % self._rev)
            if self.work_dir != opts.output_dir:
                out_name = _output_path(opts.output_dir, self.work_dir, path)
                self._makedirs_for(out_name)
                if os.path.exists(out_name):
                    logger.warning("[%s] output file already exists: %s", self.name, out_name)
                    self._rev += 1
                    continue
            try:
                fd = os.open(path, flags, 0o666)
            except FileExistsError:
                logger.warning("[%s] working file already exists: %s", self.name, path)
                self._rev += 1
                continue
            except OSError as e:
                raise self._fatal("unable to open %s: %s" % (path, e)) from None
            logger.info("[%s] opening %s", self.name, path)
            size = os.fstat(fd).st_size
            if opts.rotate_size > 0 and size > opts.rotate_size:
                logger.info("[%s] %s currently %d bytes (> %d), rotating...", self.name, path, size,
                            opts.rotate_size)
                os.close(fd)
                self._rev += 1
                continue
            break
        self._fd = fd
        self._path = path
        self.filesize = size
        if size > 0 and not (opts.gzip or opts.rotate_interval > 0):
            self._end_partial_line(path, size)

    def _end_partial_line(self, path: str, size: int) -> None:
        """Appending to a file a killed run left with a partial last line: end that line
        first, so the messages written now (and the redelivered ones) stay whole lines."""
        try:
            with open(path, "rb") as f:
                f.seek(size - 1)
                last = f.read(1)
            if last != b"\n":
                logger.warning("[%s] %s ends with a partial line; starting a new line", self.name, path)
                _write_all(self._fd, b"\n")
                self.filesize += 1
        except OSError as e:
            raise self._fatal("unable to read %s: %s" % (path, e)) from None

    def _makedirs_for(self, path: str) -> None:
        directory = os.path.dirname(path)
        if directory:
            try:
                os.makedirs(directory, 0o770, exist_ok=True)
            except OSError as e:
                raise self._fatal("unable to create dir: %s" % e) from None
