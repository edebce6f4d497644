"""The e2e processing latency stream: accuracy, window, merging, NSQ's result shape."""
from __future__ import annotations

import random
import struct
import time

import pytest

from nsqd_sync import e2e
from nsqd_sync.nsqd import NullLatency

_HEAD = struct.Struct(">qH")


def message(published_ns: int) -> bytes:
    return _HEAD.pack(published_ns, 1) + b"0123456789abcdef" + b"body"


def exact_quantile(values, q):
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def test_bucket_value_is_within_one_percent():
    for v in (1, 7, 999, 12_345, 1_000_000, 987_654_321, 3_600 * 10 ** 9):
        est = e2e.bucket_value(e2e.bucket_of(v))
        assert abs(est - v) <= max(0.0101 * v, 1), (v, est)
    assert e2e.bucket_of(0) == e2e.bucket_of(-5) == e2e.bucket_of(1)


def test_quantiles_match_exact_values_within_one_percent(monkeypatch):
    rng = random.Random(7)
    latencies = [int(rng.lognormvariate(15, 1.5)) + 1 for _ in range(20_000)]  # ~3ms median, long tail
    now = 10 ** 18
    monkeypatch.setattr(e2e.time, "time_ns", lambda: now)
    stream = e2e.LatencyStream(600.0, [0.5, 0.9, 0.99, 1.0])
    for i in range(0, len(latencies), 200):  # FINs arrive in batches
        stream.record_many([message(now - v) for v in latencies[i:i + 200]])
    result = stream.stats()
    assert result["count"] == len(latencies)
    assert [p["quantile"] for p in result["percentiles"]] == [0.5, 0.9, 0.99, 1]
    for p in result["percentiles"]:
        want = exact_quantile(latencies, p["quantile"])
        assert isinstance(p["value"], int)
        assert abs(p["value"] - want) <= 0.011 * want, (p, want)


def test_empty_stream_reports_zeros():
    stream = e2e.LatencyStream(60.0, [0.99, 0.5])
    assert stream.stats() == {"count": 0, "percentiles": [{"quantile": 0.99, "value": 0},
                                                          {"quantile": 0.5, "value": 0}]}


def test_clock_skew_counts_as_the_smallest_latency():
    stream = e2e.LatencyStream(60.0, [1.0])
    stream.record_many([message(time.time_ns() + 10 ** 9)])  # published "in the future"
    assert stream.stats() == {"count": 1, "percentiles": [{"quantile": 1, "value": 1}]}


def test_sliding_window_drops_old_halves(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(e2e.time, "monotonic", lambda: clock[0])
    now_ns = time.time_ns()
    stream = e2e.LatencyStream(10.0, [0.5])  # halves of 5 s
    stream.record_many([message(now_ns - 5_000_000)] * 3)
    clock[0] += 6  # one move: the old half is still inside the window
    stream.record_many([message(now_ns - 9_000_000)] * 2)
    assert stream.stats()["count"] == 5
    clock[0] += 5  # second move: the first records fall out
    assert stream.stats()["count"] == 2
    clock[0] += 100  # long idle: everything is gone
    assert stream.stats()["count"] == 0
    stream.record_many([message(now_ns - 1_000)])
    assert stream.stats()["count"] == 1


def test_aggregate_merges_channels_and_ignores_null_streams(monkeypatch):
    now = 10 ** 18
    monkeypatch.setattr(e2e.time, "time_ns", lambda: now)
    a = e2e.LatencyStream(60.0, [0.5, 1.0])
    b = e2e.LatencyStream(60.0, [0.5, 1.0])
    a.record_many([message(now - 1_000_000)] * 3)
    b.record_many([message(now - 100_000_000)])
    merged = e2e.aggregate([a, NullLatency(), b])
    assert merged["count"] == 4
    values = {p["quantile"]: p["value"] for p in merged["percentiles"]}
    assert abs(values[0.5] - 1_000_000) <= 10_000
    assert abs(values[1] - 100_000_000) <= 1_000_000
    assert e2e.aggregate([]) is None
    assert e2e.aggregate([NullLatency()]) is None


def test_null_latency_is_disabled_and_latency_stream_enabled():
    assert NullLatency.enabled is False and NullLatency().stats() is None
    assert e2e.LatencyStream(1.0, [0.5]).enabled is True


@pytest.mark.parametrize("ns,text", [(0, "0.0ns"), (999, "999.0ns"), (1500, "1.5us"), (2_500_000, "2.5ms"),
                                     (3_200_000_000, "3.2s"), (1000, "1000.0ns")])
def test_human(ns, text):
    assert e2e.human(ns) == text


def test_record_many_is_cheap():
    """Recording a FIN batch costs well under 2 us per message (it runs on the FIN path)."""
    stream = e2e.LatencyStream(600.0, [0.99])
    batch = [message(time.time_ns() - 1_000_000)] * 200
    stream.record_many(batch)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(20):
            stream.record_many(batch)
        best = min(best, (time.perf_counter() - started) / (20 * 200))
    assert best < 2e-6, best
