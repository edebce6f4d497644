"""Python equivalents of the Go pprof pages nsqd serves under /debug/pprof/.

- `/debug/pprof/goroutine`: a stack dump of every thread, with its name
  (threads are named after what they serve: `nsqd-pump-<addr>`,
  `nsqd-channel-...`, `nsqd-topic-<name>`, ...).
- `/debug/pprof/profile?seconds=N` (default 30): a whole-process CPU
  profile for N seconds.  cProfile cannot do this: its hook
  (`sys.setprofile`) only profiles the thread that installs it, and
  `threading.setprofile` only reaches threads started afterwards, so the
  pumps and handlers already running would be missed.  Instead a sampler
  reads every thread's stack (`sys._current_frames()`) 100 times a second.
  A thread counts as *active* in a sample when its innermost frame moved
  since the previous sample; a thread parked in a wait (Condition, socket
  read) keeps the same frame and instruction and is left out of the
  function table, which approximates on-CPU time.  The report gives each
  thread's CPU time (from /proc) and active samples, then the functions
  ranked by self and cumulative active samples, in the spirit of
  `pstats`.  Sampling costs the node a core, so one profile runs at a
  time (`run_profile`; a second request is answered 429 at once), at
  most `MAX_PROFILE_SECONDS`, and a profile whose client went away stops
  at its next check (every `GONE_CHECK` seconds).
- `/debug/pprof/heap`: a tracemalloc summary.  Tracing costs memory and
  time, so it starts on the first request (`?stop=1` stops it);
  `?limit=N` and `?group=lineno|filename|traceback` shape the table.
- `/debug/pprof/cmdline`: the command line, NUL-separated as in Go.
- `/debug/pprof/`: an index of these.

SIGQUIT and SIGUSR1 write the same thread dump to the log without stopping
the node (`signals.exit_or_dump`, run from the main thread's sigwait loop;
Go's SIGQUIT dumps and exits; an operator asking a Python node for its
stacks wants it to keep running).
"""
from __future__ import annotations

import collections
import html
import logging
import os
import sys
import threading
import time
import traceback
import tracemalloc
from typing import Callable, Dict, List, Optional, Tuple

from . import signals

log = logging.getLogger(__name__)

PROFILES = (
    ("cmdline", "The command line of this process, NUL-separated."),
    ("goroutine", "Stack traces of every thread, with its name."),
    ("heap", "tracemalloc summary of live allocations (tracing starts on the first request)."),
    ("profile", "Sampling CPU profile of every thread; ?seconds=N (default 30)."),
)

SAMPLE_HZ = 100
MAX_PROFILE_SECONDS = 300.0  # a longer ?seconds= is refused (400)
GONE_CHECK = 0.25  # how often a running profile looks for its client
_profile_lock = threading.Lock()  # one CPU profile at a time
_heap_lock = threading.Lock()


# ---------------------------------------------------------------- thread stacks

thread_dump = signals.thread_dump  # /debug/pprof/goroutine and the SIGQUIT/SIGUSR1 dump are one text


# ---------------------------------------------------------------- CPU profile

def _thread_cpu_times() -> Dict[int, float]:
    """CPU seconds (user + system) of each OS thread, by native id (Linux /proc)."""
    out: Dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/self/task/%s/stat" % tid, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            continue
    return out


def _func_label(code) -> str:
    return "%s (%s:%d)" % (code.co_name, code.co_filename, code.co_firstlineno)


def run_profile(seconds: float, stop: Optional[threading.Event] = None,
                gone: Optional[Callable[[], bool]] = None) -> Optional[str]:
    """`sample_profile` unless another profile is running (then None, at once)."""
    if not _profile_lock.acquire(blocking=False):
        return None
    try:
        return sample_profile(seconds, stop=stop, gone=gone)
    finally:
        _profile_lock.release()


def sample_profile(seconds: float, stop: Optional[threading.Event] = None, hz: int = SAMPLE_HZ,
                   gone: Optional[Callable[[], bool]] = None) -> str:
    """Sample every thread's stack for `seconds` and return the report.

    Stops early when `stop` is set or `gone()` (checked every GONE_CHECK s) is true.
    """
    me = threading.get_ident()
    interval = 1.0 / hz
    cpu_before = _thread_cpu_times()
    times_before = os.times()
    self_counts: collections.Counter = collections.Counter()
    cum_counts: collections.Counter = collections.Counter()
    active_by_thread: collections.Counter = collections.Counter()
    seen_by_thread: collections.Counter = collections.Counter()
    last_pos: Dict[int, Tuple[int, int]] = {}
    samples = 0
    started = time.monotonic()
    deadline = started + seconds
    next_check = started + GONE_CHECK
    while True:
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            seen_by_thread[ident] += 1
            pos = (id(frame), frame.f_lasti)
            moved = last_pos.get(ident) != pos
            last_pos[ident] = pos
            if not moved:
                continue
            active_by_thread[ident] += 1
            self_counts[_func_label(frame.f_code)] += 1
            stack = set()
            f = frame
            while f is not None:
                stack.add(_func_label(f.f_code))
                f = f.f_back
            cum_counts.update(stack)
        samples += 1
        now = time.monotonic()
        if now >= deadline:
            break
        if gone is not None and now >= next_check:
            next_check = now + GONE_CHECK
            if gone():
                log.info("PROFILE: stopped after %.1fs of %.1fs - the client went away", now - started, seconds)
                break
        wait = min(interval, deadline - now)
        if stop is not None:
            if stop.wait(wait):
                break
        else:
            time.sleep(wait)
    elapsed = time.monotonic() - started
    times_after = os.times()
    cpu_after = _thread_cpu_times()
    return _profile_report(elapsed, hz, samples, times_before, times_after, cpu_before, cpu_after,
                           self_counts, cum_counts, active_by_thread, seen_by_thread)


def _profile_report(elapsed, hz, samples, times_before, times_after, cpu_before, cpu_after,
                    self_counts, cum_counts, active_by_thread, seen_by_thread, top: int = 60) -> str:
    threads = {t.ident: t for t in threading.enumerate()}
    user = times_after.user - times_before.user
    system = times_after.system - times_before.system
    lines = [
        "Python sampling CPU profile (all threads)",
        "duration %.2fs, %d samples at %d Hz, process CPU %.2fs (user %.2fs, system %.2fs)"
        % (elapsed, samples, hz, user + system, user, system),
        "",
        "threads (cpu from /proc; active = samples whose innermost frame moved):",
        "%9s %8s %8s  %s" % ("cpu_s", "active", "samples", "thread"),
    ]
    rows = []
    for ident, seen in seen_by_thread.items():
        t = threads.get(ident)
        native = getattr(t, "native_id", None) if t is not None else None
        cpu = None
        if native is not None and native in cpu_after:
            cpu = cpu_after[native] - cpu_before.get(native, 0.0)
        rows.append((cpu if cpu is not None else -1.0, active_by_thread[ident], seen,
                     t.name if t is not None else "<exited %d>" % ident))
    for cpu, active, seen, name in sorted(rows, key=lambda r: (-r[0], -r[1], r[3])):
        lines.append("%9s %8d %8d  %s" % ("%.2f" % cpu if cpu >= 0 else "-", active, seen, name))
    total = sum(self_counts.values()) or 1
    lines += ["", "functions by self samples (%d active samples):" % sum(self_counts.values()),
              "%8s %7s %8s %7s  %s" % ("self", "self%", "cum", "cum%", "function (file:line)")]
    for label, n in self_counts.most_common(top):
        cum = cum_counts[label]
        lines.append("%8d %6.2f%% %8d %6.2f%%  %s" % (n, 100.0 * n / total, cum, 100.0 * cum / total, label))
    lines += ["", "functions by cumulative samples:",
              "%8s %7s %8s %7s  %s" % ("self", "self%", "cum", "cum%", "function (file:line)")]
    for label, cum in cum_counts.most_common(top):
        n = self_counts[label]
        lines.append("%8d %6.2f%% %8d %6.2f%%  %s" % (n, 100.0 * n / total, cum, 100.0 * cum / total, label))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- heap

def heap_report(limit: int = 40, group: str = "lineno", stop: bool = False) -> str:
    """tracemalloc summary; the first call starts tracing."""
    with _heap_lock:
        if stop:
            if tracemalloc.is_tracing():
                tracemalloc.stop()
                return "tracemalloc stopped\n"
            return "tracemalloc was not tracing\n"
        started_now = False
        if not tracemalloc.is_tracing():
            tracemalloc.start(10)
            started_now = True
        snapshot = tracemalloc.take_snapshot()
    current, peak = tracemalloc.get_traced_memory()
    snapshot = snapshot.filter_traces((
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<unknown>"),
    ))
    stats = snapshot.statistics(group if group in ("lineno", "filename", "traceback") else "lineno")
    lines = ["Python heap profile (tracemalloc)"]
    if started_now:
        lines.append("tracing started by this request: only allocations made from now on are traced; "
                     "ask again later (?stop=1 stops tracing)")
    lines.append("traced memory: current %d bytes, peak %d bytes, tracemalloc overhead %d bytes"
                 % (current, peak, tracemalloc.get_tracemalloc_memory()))
    lines.append("process: rss %d bytes, allocated blocks %d" % (rss_bytes(), sys.getallocatedblocks()))
    lines.append("")
    total = sum(s.size for s in stats)
    lines.append("%d allocation sites, %d bytes in %d blocks; top %d by size:"
                 % (len(stats), total, sum(s.count for s in stats), min(limit, len(stats))))
    for s in stats[:limit]:
        where = "traceback:" if group == "traceback" else str(s.traceback[0])
        lines.append("%10d B %8d blocks  avg %d B  %s" % (s.size, s.count, s.size // max(s.count, 1), where))
        if group == "traceback":
            lines.extend("        " + line for line in s.traceback.format())
    return "\n".join(lines) + "\n"


def rss_bytes() -> int:
    """Resident set size of this process."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024




# ---------------------------------------------------------------- index

def index_html() -> str:
    rows = "".join("<tr><td><a href='%s'>%s</a></td><td>%s</td></tr>\n" % (name, name, html.escape(text))
                   for name, text in PROFILES)
    return ("<html>\n<head>\n<title>/debug/pprof/</title>\n</head>\n<body>\n/debug/pprof/<br>\n<br>\n"
            "Python equivalents of Go's pprof profiles:\n<table>\n<thead><td>Profile</td><td>What</td></thead>\n"
            "%s</table>\n<p>SIGQUIT or SIGUSR1 write the thread dump to the log.</p>\n</body>\n</html>\n" % rows)


def cmdline() -> str:
    return "\x00".join([sys.executable] + sys.argv)


def parse_seconds(values: List[str], default: float = 30.0) -> float:
    """The ?seconds= of /debug/pprof/profile (bad or missing -> default)."""
    try:
        v = float(values[0]) if values else default
    except ValueError:
        return default
    return v if v > 0 else default
