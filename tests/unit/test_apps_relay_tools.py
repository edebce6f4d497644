"""nsq_to_file, nsq_to_http, nsq_to_nsq: their pure logic (their 1.3.0 flags: test_apps_flags.py)."""
from __future__ import annotations

import time

import pytest

from nsqd_sync.apps.file_logger import FileLoggerOptions, FilenameError, compute_filename_format, strftime
from nsqd_sync.apps.nsq_to_nsq import JSONFilter, go_json
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
