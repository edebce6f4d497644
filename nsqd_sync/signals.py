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
"""
from __future__ import annotations

import signal
from typing import Callable, Iterable, Optional, Set

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


def send_self(signum: int = signal.SIGTERM) -> None:
    """Wake `wait_for_signal` from another thread (a node that decides to exit itself)."""
    import threading

    ident = threading.main_thread().ident
    if ident is not None:
        signal.pthread_kill(ident, signum)
