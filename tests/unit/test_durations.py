"""nsqd_sync.durations: Go's time.ParseDuration and time.Duration.String()."""
from __future__ import annotations

import pytest

from nsqd_sync import durations
from nsqd_sync.durations import format_duration, format_duration_ns, parse_duration


@pytest.mark.parametrize("text,seconds", [
    ("0", 0.0), ("60s", 60.0), ("1m", 60.0), ("15m", 900.0), ("1h", 3600.0), ("1h30m", 5400.0),
    ("2h45m30s", 9930.0), ("250ms", 0.25), ("1.5h", 5400.0), ("-1.5h", -5400.0), ("+5s", 5.0),
    (".5s", 0.5), ("1us", 1e-6), ("1\u00b5s", 1e-6), ("300ns", 3e-7), ("1m0s", 60.0), (" 10s ", 10.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "1x", "1h-5m", "ms", ".s", "--1s", "1 s", "abc"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds,text", [
    (0, "0s"), (60, "1m0s"), (90, "1m30s"), (3600, "1h0m0s"), (5400, "1h30m0s"), (900, "15m0s"),
    (0.25, "250ms"), (1.5, "1.5s"), (0.001, "1ms"), (1e-7, "100ns"), (2, "2s"), (-60, "-1m0s"),
    (0.0025, "2.5ms"), (1.5e-6, "1.5\u00b5s"),
])
def test_format_duration_like_go(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.025, 0.25, 2, 60, 600, 900, 3600, 5400, 45])
def test_format_then_parse_round_trips(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)



@pytest.mark.parametrize("ns,text", [
    (75_000_000_000, "1m15s"), (0, "0s"), (999, "999ns"), (1000, "1µs"), (1_500_000, "1.5ms"),
    (3_600_000_000_000, "1h0m0s"), (3_723_004_000_000, "1h2m3.004s"), (-75_000_000_000, "-1m15s"),
    (59_999_999_999, "59.999999999s"),
])
def test_format_duration_ns_is_gos_string(ns, text):
    assert format_duration_ns(ns) == text


def test_seventy_five_seconds_is_one_minute_fifteen():
    # nsqlookupd used to print 75s where Go prints 1m15s
    assert format_duration(75) == "1m15s"
    assert parse_duration("1m15s") == 75.0


def test_flags_has_no_second_copy():
    from nsqd_sync import flags

    assert not hasattr(flags, "format_duration_ns")
    assert flags.parse_duration is durations.parse_duration


@pytest.mark.parametrize("ns,text", [
    (0, "0s"), (999, "999ns"), (1500, "1.5\u00b5s"), (250_000_000, "250ms"), (1_000_000_000, "1s"),
    (3_837_276_905, "3.837276905s"), (295_813_855_913, "4m55.813855913s"), (60 * 10 ** 9, "1m0s"),
    (3_723 * 10 ** 9, "1h2m3s"), (3_600 * 10 ** 9, "1h0m0s"),
])
def test_format_duration_ns_stats_values(ns, text):
    assert format_duration_ns(ns) == text
