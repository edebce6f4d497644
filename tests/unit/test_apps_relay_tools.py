"""nsq_to_file, nsq_to_http, nsq_to_nsq: their pure logic (their 1.3.0 flags: test_apps_flags.py)."""
from __future__ import annotations

import collections
import random
import time

import pytest

from nsqd_sync.apps.file_logger import FileLoggerOptions, FilenameError, compute_filename_format, strftime
from nsqd_sync.apps.nsq_to_nsq import JSONFilter, go_json
from nsqd_sync.apps import relay
from nsqd_sync.apps.relay import Destinations, TimerMetrics

# ---------------------------------------------------------------- nsq_to_file names

def test_filename_format_fills_topic_host_pid_and_drops_rev_when_unused():
    opts = FileLoggerOptions(filename_format="<TOPIC>.<HOST><REV>.<PID>.<DATETIME>.log")
    assert compute_filename_format(opts, "t", hostname="box.example.com", pid=42) == "t.box.42.<DATETIME>.log"
    opts.host_identifier = "<HOSTNAME>-x"
    assert compute_filename_format(opts, "t", hostname="box.example.com", pid=1) == "t.box.example.com-x.1.<DATETIME>.log"


def test_filename_format_keeps_rev_and_adds_gz_when_needed():
    opts = FileLoggerOptions(gzip=True)
    assert compute_filename_format(opts, "t", hostname="h") == "t.h<REV>.<DATETIME>.log.gz"
    for kw in ({"gzip": True}, {"rotate_size": 10}, {"rotate_interval": 1.0}, {"work_dir": "/w"}):
        with pytest.raises(FilenameError):
            compute_filename_format(FileLoggerOptions(filename_format="<TOPIC>.log", **kw), "t", hostname="h")


def test_strftime_knows_go_tables_codes_only():
    t = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))
    assert strftime("%Y-%m-%d_%H:%M:%S %y %b %B %a %A %I%p %%", t) == "2026-03-04_05:06:07 26 Mar March Wed Wednesday 05AM %"
    assert strftime("%j %Q plain", t) == "%j %Q plain"


# ---------------------------------------------------------------- destinations and status lines

def test_round_robin_starts_at_the_second_address_like_nsq():
    d = Destinations(["a", "b", "c"], "round-robin")
    assert [d.get() for _ in range(6)] == ["b", "c", "a", "b", "c", "a"]


def test_hostpool_skips_a_failed_host_and_retries_all_when_all_failed():
    d = Destinations(["a", "b"], "hostpool")
    assert [d.get() for _ in range(4)] == ["a", "b", "a", "b"]
    d.mark("a", False)
    assert [d.get() for _ in range(3)] == ["b", "b", "b"]
    d.mark("b", False)
    assert sorted({d.get() for _ in range(4)}) == ["a", "b"]  # everyone down: all are tried again


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_epsilon_greedy(latency_ms, picks, seed=7, step=0.01):
    """Pick `picks` times, each request taking latency_ms[host]; returns (counts, destinations)."""
    clock = FakeClock()
    d = Destinations(list(latency_ms), "epsilon-greedy", rng=random.Random(seed), clock=clock)
    counts = collections.Counter()
    for _ in range(picks):
        host = d.get()
        counts[host] += 1
        d.mark(host, True, latency_ms[host] / 1000.0)
        clock.now += step
    return counts, d


def test_epsilon_greedy_sends_most_to_the_fastest_host():
    counts, d = run_epsilon_greedy({"fast": 10.0, "slow": 100.0}, 5000)
    # exploitation weighs hosts by 1/latency: fast gets 10/11 of it (90.9%); exploration
    # (epsilon 0.3 decaying by 0.9 per explore to 0.01) splits evenly
    share = counts["slow"] / 5000
    assert 0.07 < share < 0.12, counts
    assert d.epsilon == pytest.approx(relay.MIN_EPSILON)
    # equal hosts share evenly
    even, _ = run_epsilon_greedy({"a": 20.0, "b": 20.0, "c": 20.0}, 6000)
    assert all(1800 < even[h] < 2200 for h in "abc"), even


def test_epsilon_greedy_explores_with_a_decaying_probability():
    clock = FakeClock()
    rng = random.Random(3)
    d = Destinations(["a", "b"], "epsilon-greedy", rng=rng, clock=clock)
    assert d.epsilon == 0.3
    seen = []
    for _ in range(200):
        before = d.epsilon
        host = d.get()
        d.mark(host, True, 0.005)
        if d.epsilon != before:
            assert d.epsilon == pytest.approx(max(before * 0.9, 0.01))
            seen.append(before)
    assert len(seen) >= 10  # about 0.3 x the first picks explored, then fewer


def test_epsilon_greedy_skips_a_dead_host_and_adapts_when_speeds_change():
    clock = FakeClock()
    d = Destinations(["a", "b"], "epsilon-greedy", rng=random.Random(11), clock=clock)
    for _ in range(50):  # both timed, equally fast
        host = d.get()
        d.mark(host, True, 0.010)
        clock.now += 0.01
    d.mark("a", False)
    picks = collections.Counter(d.get() for _ in range(500))
    assert picks["a"] == 0, picks  # dead for 30s: neither explored nor exploited
    # after 5 minutes of "a" being 20x faster, the old timings have decayed away
    clock.now += 31.0
    late = collections.Counter()
    for i in range(3000):
        host = d.get()
        d.mark(host, True, 0.005 if host == "a" else 0.100)
        clock.now += 0.1
        if i >= 2000:
            late[host] += 1
    assert late["a"] > 0.9 * 1000, late


def test_timer_metrics_line_every_n():
    m = TimerMetrics(4, "[aggregate]:")
    assert [m.status_duration(x / 1000.0) for x in (1, 2, 3)] == [None, None, None]
    assert m.status_duration(0.010) == "[aggregate]: finished 4 - 99th: 10.00ms - 95th: 10.00ms - avg: 4.00ms"
    assert TimerMetrics(0, "x").status_duration(1.0) is None


# ---------------------------------------------------------------- nsq_to_nsq JSON

def test_go_json_matches_encoding_json():
    assert go_json({"b": 1, "a": [True, None, 1.5, 2.0], "c": "<&>"}) == \
        '{"a":[true,null,1.5,2],"b":1,"c":"\\u003c\\u0026\\u003e"}'
    assert go_json(1e21) == "1e+21" and go_json(1e-7) == "1e-07" and go_json(0.000001) == "0.000001"
    assert go_json("é") == '"é"'


def test_json_filter_value_matching():
    f = JSONFilter("k", "5", [])
    assert f.apply(b'{"k": 5}') == (b'{"k": 5}', False)
    assert f.apply(b'{"k": 5.0}')[0] is not None
    assert f.apply(b'{"k": "5"}')[0] is not None  # a string compares as text
    assert f.apply(b'{"k": true}') == (None, False)
    assert f.apply(b'{"j": 5}') == (None, True)  # missing field with a value to check: backoff
    assert JSONFilter("k", "", []).apply(b'{"j": 5}') == (None, False)
    assert JSONFilter("k", "abc", []).apply(b'{"k": 1}') == (None, False)
    assert JSONFilter("", "", ["a"]).apply(b'{"a": 3.0, "b": 1}') == (b'{"a":3}', False)
    assert JSONFilter("k", "", []).apply(b"[1]") == (None, False)
    assert JSONFilter("", "", []).apply(b"anything") == (b"anything", False)
