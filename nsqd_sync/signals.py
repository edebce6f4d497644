"""Process signals the way Go's `signal.Notify` delivers them: to one waiting thread.

A Python signal handler runs between bytecodes of the main thread; if it
takes a lock the main thread already holds (an `Event.set()` while the main
thread is inside `Event.wait()`), the process deadlocks.  So every command
blocks its signals with `pthread_sigmask` *before* starting any thread (new
threads inherit the mask) and then receives them with `signal.sigwait()` in
the main thread, where any ordinary code may run.

    block_signals()              # first thing in the command, before threads
    node.start()
    wait_for_signal(on_signal)   # returns when on_signal(...) returns True
    node.exit()

Servers use `exit_or_dump(logger)` as `on_signal`: SIGINT/SIGTERM stop,
SIGQUIT/SIGUSR1 write every thread's stack to the log and carry on.
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
import traceback
from typing import Callable, Iterable, Optional, Set, Tuple

#: the signals NSQ's commands act on: exit on INT/TERM, thread dump on QUIT/USR1
EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1)


def block_signals(signals: Iterable[int] = HANDLED_SIGNALS) -> Set[int]:
    """Block `signals` in the calling thread (and every thread it starts later).

    Returns the previous mask, for `unblock_signals`.  Call it from the main
    thread before any other thread exists.
    """
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, list(signals)))


def unblock_signals(previous: Optional[Set[int]] = None,
                    signals: Iterable[int] = HANDLED_SIGNALS) -> None:
    """Undo `block_signals` (tests that run a command in-process use this)."""
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, list(previous))
    else:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, list(signals))


def wait_for_signal(on_signal: Callable[[int], bool],
                    signals: Iterable[int] = HANDLED_SIGNALS) -> int:
    """Wait in the calling (main) thread; call `on_signal(signum)` for each signal.

    Returns the signal number for which `on_signal` returned True (stop).
    The signals must already be blocked (`block_signals`).
    """
    wanted = set(signals)
    while True:
        signum = signal.sigwait(wanted)
        if on_signal(signum):
            return signum


def exit_on(signum: int) -> bool:
    """The usual `on_signal`: stop on SIGINT/SIGTERM, ignore the rest."""
    return signum in EXIT_SIGNALS


def thread_dump() -> str:
    """Every thread's stack, innermost call last, headed by its name and ids."""
    frames = sys._current_frames()
    threads = {t.ident: t for t in threading.enumerate()}
    parts = ["thread profile: total %d\n" % len(frames)]
    for ident, frame in sorted(frames.items(), key=lambda kv: _thread_sort_key(threads.get(kv[0]))):
        t = threads.get(ident)
        name = t.name if t is not None else "<unknown>"
        native = getattr(t, "native_id", None) if t is not None else None
        daemon = " daemon" if t is not None and t.daemon else ""
        parts.append('\nThread "%s" (ident %d, native %s%s):\n' % (name, ident, native, daemon))
        parts.append("".join(traceback.format_stack(frame)))
    return "".join(parts)


def _thread_sort_key(t: Optional[threading.Thread]) -> Tuple[int, str]:
    if t is None:
        return (2, "")
    return (0 if t is threading.main_thread() else 1, t.name)


def exit_or_dump(logger: logging.Logger) -> Callable[[int], bool]:
    """A server's `on_signal`: stop on SIGINT/SIGTERM; on SIGQUIT/SIGUSR1 log a thread dump.

    It runs in the main thread after `sigwait` returned, so it may log and take locks.
    """
    def on_signal(signum: int) -> bool:
        if signum in EXIT_SIGNALS:
            return True
        logger.warning("THREADS: dump on signal %s\n%s", signal.Signals(signum).name, thread_dump())
        return False

    return on_signal


def send_self(signum: int = signal.SIGTERM) -> None:
    """Wake `wait_for_signal` from another thread (a node that decides to exit itself)."""
    ident = threading.main_thread().ident
    if ident is not None:
        signal.pthread_kill(ident, signum)
