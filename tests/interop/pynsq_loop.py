"""Run pynsq's tornado IOLoop in the test thread, always with a deadline.

Test modules import this after `pytest.importorskip("nsq")` and
`pytest.importorskip("tornado.ioloop")`, so a missing test extra skips them.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable, Sequence

import nsq
import tornado.ioloop as tornado_ioloop


def make_loop():
    """A fresh asyncio loop made current, so pynsq's IOLoop.current() finds it."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    return tornado_ioloop.IOLoop.current()


def run_loop(loop, done: Callable[[], object], timeout: float) -> None:
    """Run the IOLoop until done() or the deadline."""
    deadline = time.monotonic() + timeout

    def check():
        if done() or time.monotonic() > deadline:
            loop.stop()

    poll = tornado_ioloop.PeriodicCallback(check, 20)
    poll.start()
    loop.start()
    poll.stop()


def close_all(loop, clients: Sequence) -> None:
    """Close pynsq Readers and Writers, let the closes go out, then close the loop."""
    for c in clients:
        if isinstance(c, nsq.Reader):
            c.close()
        else:
            for conn in list(c.conns.values()):
                conn.close()
    # let the closes go out
    loop.call_later(0.2, loop.stop)
    loop.start()
    loop.close(all_fds=True)
    asyncio.set_event_loop(None)
