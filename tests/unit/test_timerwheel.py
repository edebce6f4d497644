"""The timer thread never loses a deadline armed while it scans (issue 12 #6).

The scan (`on_tick`) runs without the wheel's lock, so a client can record a
message in flight and `arm()` its deadline after the scan looked at that
client's table but before the thread goes to sleep.  The thread must still
wake by that deadline; before the fix it slept on the scan's answer (no
deadline: forever) and the message stayed in flight until its client left.
"""
from __future__ import annotations

import threading
import time

import pytest

from nsqd_sync.timerwheel import TimerWheel

pytestmark = pytest.mark.timeout(30)


def test_deadline_armed_during_a_scan_wakes_the_thread():
    ticks = []
    in_scan = threading.Event()
    armed = threading.Event()
    lock = threading.Lock()

    def on_tick(now: float) -> float:
        with lock:
            ticks.append(now)
            first = len(ticks) == 1
        if first:  # the scan found nothing in flight; a deadline is armed before it returns
            in_scan.set()
            assert armed.wait(10)
        return float("inf")

    wheel = TimerWheel("test:armed-during-scan", on_tick)
    wheel.start()
    try:
        assert in_scan.wait(10)
        wheel.arm(time.monotonic() + 0.2)
        armed.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lock:
                if len(ticks) >= 2:
                    break
            time.sleep(0.02)
        with lock:
            assert len(ticks) >= 2, "the deadline armed during the scan was lost: no tick after it"
    finally:
        armed.set()
        wheel.stop()


def test_deadline_armed_while_sleeping_wakes_the_thread_early():
    ticks = []
    lock = threading.Lock()

    def on_tick(now: float) -> float:
        with lock:
            ticks.append(now)
        return float("inf")

    wheel = TimerWheel("test:armed-while-sleeping", on_tick)
    wheel.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lock:
                if ticks:
                    break
            time.sleep(0.01)
        wheel.arm(time.monotonic() + 0.1)
        while time.monotonic() < deadline:
            with lock:
                if len(ticks) >= 2:
                    break
            time.sleep(0.01)
        with lock:
            assert len(ticks) >= 2
    finally:
        wheel.stop()


def test_deferred_message_is_due_in_order():
    got = []
    wheel = TimerWheel("test:deferred", lambda now: (got.extend(wheel.pop_due(now)), float("inf"))[1])
    wheel.start()
    try:
        wheel.defer(b"b", 0.2)
        wheel.defer(b"a", 0.1)
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [b"a", b"b"]
    finally:
        wheel.stop()
