"""nsq_bench without a node: flags, NSQ's result line, percentiles, the table, the man page."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from nsqd_sync import wire
from nsqd_sync.bench import __main__ as cli
from nsqd_sync.bench.common import (RESULT_LINE, Reporter, Throughput, format_result_line,
                                    go_duration, parse_address, parse_result_line, BenchError)
from nsqd_sync.bench.latency import percentile
from nsqd_sync.bench.memory import MemoryResult
from nsqd_sync.bench.options import CPUS, SUBCOMMANDS, parse_counts
from nsqd_sync.bench.runner import Figures, parse_skip, print_table, rows_for
from nsqd_sync.bench.topics import topic_names
from nsqd_sync.bench.writer import pub_command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------- flags

def test_defaults_match_nsq_bench_tools():
    v = cli.parse_args("writer", [])
    assert v == {"nsqd_tcp_address": "127.0.0.1:4150", "topic": "sub_bench", "size": 200,
                 "batch_size": 200, "runfor": 10.0, "workers": CPUS}
    v = cli.parse_args("reader", [])
    assert (v["channel"], v["rdy"], v["runfor"], v["idle_timeout"]) == ("ch", 2500, 10.0, 0.0)
    v = cli.parse_args("latency", [])
    assert (v["rate"], v["output_buffer_size"]) == (10000, -1)
    v = cli.parse_args("memory", [])
    assert (v["count"], v["overflow"], v["mem_queue_size"]) == (1000000, False, 0)
    v = cli.parse_args("topics", [])
    assert parse_counts(v["topic_counts"]) == [1, 100, 1000]
    v = cli.parse_args("all", [])
    assert (v["runfor"], v["repeat"], v["against"]) == (5.0, 1, "")
    v = cli.parse_args("admin", [])
    assert (v["nodes"], v["topics"], v["channels"], v["against"]) == (5, 500, 2, "")


@pytest.mark.parametrize("argv", [
    ["-nsqd-tcp-address=127.0.0.1:5150", "-runfor=1500ms", "-size", "100", "--batch-size=7"],
    ["--nsqd-tcp-address", "127.0.0.1:5150", "--runfor", "1.5s", "--size=100", "-batch-size", "7"],
])
def test_go_style_flag_forms(argv):
    v = cli.parse_args("writer", argv + ["--workers=3"])
    assert v["nsqd_tcp_address"] == "127.0.0.1:5150"
    assert v["runfor"] == pytest.approx(1.5)
    assert (v["size"], v["batch_size"], v["workers"]) == (100, 7, 3)


def test_bare_boolean_and_durations():
    assert cli.parse_args("memory", ["-overflow", "--count=5"])["overflow"] is True
    assert cli.parse_args("memory", ["--overflow=false"])["overflow"] is False
    assert cli.parse_args("reader", ["-idle-timeout=250ms"])["idle_timeout"] == pytest.approx(0.25)
    assert cli.parse_args("all", ["--runfor=1m"])["runfor"] == 60.0


@pytest.mark.parametrize("name,argv", [
    ("writer", ["--size=0"]),
    ("writer", ["--runfor=0s"]),
    ("writer", ["--runfor=soon"]),
    ("writer", ["--no-such-flag=1"]),
    ("reader", ["--rdy=0"]),
    ("writer", ["--topic=bad topic"]),
    ("reader", ["--channel=bad!"]),
    ("topics", ["--topic-counts=1,0"]),
    ("topics", ["--topic-counts=a"]),
    ("all", ["--repeat=0"]),
    ("admin", ["--nodes=0"]),
    ("admin", ["--requests=0"]),
    ("utils", ["--skip=bogus"]),
    ("utils", ["--count=0"]),
    ("admin", ["--channels=-1"]),
])
def test_bad_flags_exit_2(name, argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.parse_args(name, argv)
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("nsq_bench %s: " % name)


def test_every_subcommand_has_flags_and_a_body():
    assert set(SUBCOMMANDS) == {"writer", "reader", "pubsub", "single", "latency", "memory",
                                "topics", "all", "admin", "utils", "startup"}
    assert set(cli.BODIES) == set(SUBCOMMANDS)


def test_main_usage_and_unknown_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert "\n  %s " % name in out
    with pytest.raises(SystemExit) as e:
        cli.main(["bogus"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main([])
    assert e.value.code == 2


def test_subcommand_help_exits_0(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["reader", "-h"])
    assert e.value.code == 0
    assert "--rdy" in capsys.readouterr().out


def test_unreachable_node_is_one_error_line_exit_1():
    # a port nothing listens on: bind one, close it
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.run([sys.executable, "-m", "nsqd_sync.bench", "writer",
                        "--nsqd-tcp-address=127.0.0.1:%d" % port, "--runfor=1s", "--workers=1"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 1, p.stderr
    assert "cannot connect to nsqd at 127.0.0.1:%d" % port in p.stderr
    assert "Traceback" not in p.stderr


def test_parse_address_and_counts_and_skip():
    assert parse_address("127.0.0.1:4150") == ("127.0.0.1", 4150)
    assert parse_address("[::1]:4150") == ("::1", 4150)
    with pytest.raises(BenchError):
        parse_address("localhost")
    assert parse_counts("1, 3,10") == [1, 3, 10]
    assert parse_skip("memory,overflow") == ["memory", "overflow"]
    with pytest.raises(BenchError):
        parse_skip("nope")


# ---------------------------------------------------------------- NSQ's result line

@pytest.mark.parametrize("ns,text", [
    (0, "0s"), (1, "1ns"), (999, "999ns"), (1500, "1.5\u00b5s"), (1_000_000, "1ms"),
    (1_234_567, "1.234567ms"), (999_999_999, "999.999999ms"), (1_000_000_000, "1s"),
    (3_003_983_927, "3.003983927s"), (10_000_000_000, "10s"), (60_000_000_000, "1m0s"),
    (61_500_000_000, "1m1.5s"), (3_600_000_000_000, "1h0m0s"),
    (7_384_500_000_000, "2h3m4.5s"), (-1_500_000_000, "-1.5s"),
])
def test_go_duration(ns, text):
    assert go_duration(ns) == text


def test_result_line_matches_bench_writer_byte_for_byte():
    # bench_writer printed this for 3838 MPUBs of 200 (767600 messages)
    line = format_result_line(767600, 3_003_983_927, 200)
    assert line == "duration: 3.003983927s - 48.738mb/s - 255527.333ops/s - 3.913us/op"
    got = parse_result_line("[bench_writer] 2026/11/23 08:18:15 " + line)
    assert got == {"duration": "3.003983927s", "mbs": 48.738, "ops": 255527.333, "usop": 3.913}


def test_result_line_with_no_messages_uses_go_infinities():
    line = format_result_line(0, 1_000_000_000, 200)
    assert line == "duration: 1s - 0.000mb/s - 0.000ops/s - +Infus/op"
    assert RESULT_LINE.search(line)


def test_reporter_prefix_is_go_log_style():
    buf = io.StringIO()
    rep = Reporter(stream=buf)
    result = Throughput("writer", 1000, 1_000_000_000, 200, 2, [0.05, 0.97])
    rep.throughput(result)
    lines = buf.getvalue().splitlines()
    assert re.match(r"^\[bench_writer\] \d{4}/\d\d/\d\d \d\d:\d\d:\d\d duration: 1s - "
                    r"0\.191mb/s - 1000\.000ops/s - 1000\.000us/op$", lines[0]), lines[0]
    assert "busiest at 97% CPU" in lines[1] and "client is likely the limit" in lines[1]
    assert result.client_bound


# ---------------------------------------------------------------- pieces

def test_mpub_command_is_one_prebuilt_batch():
    cmd = pub_command("t", 5, 3)
    head, rest = cmd.split(b"\n", 1)
    assert head == b"MPUB t"
    assert wire.unpack_int32_from(rest)[0] == len(rest) - 4
    assert wire.split_mpub_body(rest[4:]) == [bytes(5)] * 3
    assert pub_command("t", 5, 0) == b"PUB t\n" + wire.pack_int32(5) + bytes(5)


def test_percentile_nearest_rank():
    values = list(range(1, 1001))
    assert percentile(values, 0.5) == 500
    assert percentile(values, 0.99) == 990
    assert percentile(values, 0.999) == 999
    assert percentile(values, 1.0) == 1000
    assert percentile([7], 0.99) == 7
    assert percentile([], 0.5) == 0


def test_topic_names_are_valid_and_distinct_per_case():
    names = topic_names("topics_bench", 1000)
    assert len(set(names)) == 1000 and all(wire.is_valid_name(n) for n in names)
    assert names[7] == "topics_bench.1000.007"
    assert not set(names) & set(topic_names("topics_bench", 100))


def test_memory_result_per_message_and_overflow_verdict():
    m = MemoryResult(count=1000000, size=200, mem_queue_size=1000000, idle_kb=10240,
                     rss_kb=10240 + 341797, peak_kb=10240 + 351563)
    assert m.per_msg == pytest.approx(350.0, abs=0.1)
    assert "RSS per queued message: 350.0B (peak 360.0B)" in m.lines()[-1]
    flat = MemoryResult(count=100000, size=200, mem_queue_size=None, idle_kb=10000,
                        rss_kb=16000, peak_kb=17000,
                        samples=[(10000, 13000), (20000, 15990), (60000, 15995), (100000, 16000)])
    assert flat.overflow_growth_per_msg == pytest.approx(10 * 1024 / 80000)
    assert flat.lines()[-1].endswith("- flat")
    small = MemoryResult(count=15000, size=200, mem_queue_size=None, idle_kb=1, rss_kb=2,
                         peak_kb=2, samples=[(5000, 1), (15000, 2)])
    assert small.overflow_growth_per_msg is None
    assert "too few messages" in small.lines()[-1]


def _values():
    v = cli.parse_args("all", ["--memory-count=1000", "--repeat=3", "--workers=2",
                               "--topic-counts=1,1000"])
    return v


def test_table_side_by_side_with_ratio_and_client_mark():
    v = _values()
    rows = rows_for(v, [1, 1000])
    ours, theirs = Figures(), Figures()
    for vals, f in (([900_000, 1_000_000, 1_100_000], ours), ([2_000_000] * 3, theirs)):
        for x in vals:
            f.add("writer", x)
    ours.add("lat_p99", 0.5)
    theirs.add("lat_p99", 1.0)
    ours.add("reader", 10.0, client_bound=True)
    ours.add("overflow", 0.3)
    theirs.add("overflow", -0.5)
    buf = io.StringIO()
    print_table(v, [("ours", ["a"]), ("theirs", ["b"])], {"ours": ours, "theirs": theirs}, rows,
                [], buf)
    text = buf.getvalue()
    writer_line = next(line for line in text.splitlines() if line.startswith("PUB: MPUB x200"))
    assert re.search(r"msg/s\s+1,000,000\s+2,000,000\s+0\.50\s+higher$", writer_line), writer_line
    p99 = next(line for line in text.splitlines() if line.startswith("latency p99 "))
    assert re.search(r"ms\s+0\.500\s+1\.000\s+0\.50\s+lower$", p99), p99
    assert any(line.startswith("SUB: RDY 2500, FIN each, 2 conns *") for line in text.splitlines())
    overflow = next(line for line in text.splitlines() if line.startswith("RSS growth/msg"))
    assert re.search(r"B\s+0\.3\s+-0\.5\s+-\s+lower$", overflow), overflow
    assert "median of 3 runs" in text and "the Python client's limit" in text
    assert ("flags: --runfor=5s --size=200 --batch-size=200 --rdy=2500 --workers=2 --rate=10000 "
            "--memory-count=1000 --topic-counts=1,1000 --repeat=3\n") in text
    assert "PUB 1000 topics / 1 topic" in text


# ---------------------------------------------------------------- man page

def test_man_page_documents_every_subcommand_and_flag():
    from nsqd_sync.flags import roff_options

    with open(os.path.join(ROOT, "man", "nsq_bench.1")) as f:
        text = f.read()
    assert text.startswith(".TH NSQ_BENCH 1")
    sections = {}
    for sec in re.split(r"\n\.SS ", text)[1:]:
        sections[sec.split("\n", 1)[0].strip()] = sec
    assert set(sections) == set(SUBCOMMANDS)
    for name, flags in SUBCOMMANDS.items():
        # the OPTIONS block of each subcommand is the one rendered from its flag list
        assert roff_options(flags).rstrip("\n") in sections[name], name


def test_admin_table_counts_the_api_call_of_a_page_without_data():
    from nsqd_sync.bench.admin import Cluster, Timings, print_table as admin_table, urls

    assert urls("a.b#ephemeral") == {"index": "/", "topic": "/topics/a.b%23ephemeral",
                                     "api_topic": "/api/topics/a.b%23ephemeral",
                                     "api_topics": "/api/topics"}
    ours, theirs = Timings(), Timings()
    for t, html_has_data, ms in ((ours, True, [0.010, 0.030, 0.020]),
                                 (theirs, False, [0.002, 0.002, 0.002])):
        for key in ("index", "topic", "api_topic", "api_topics"):
            t.seconds[key] = list(ms)
            t.has_data[key] = html_has_data
            t.sizes[key] = 100
    theirs.seconds["api_topic"] = [0.008]
    v = cli.parse_args("admin", ["--rounds=1", "--requests=3", "--nodes=2", "--topics=4"])
    v["_topic"] = "admin_bench_2"
    buf = io.StringIO()
    cluster = Cluster(lookupd=None, nodes=[None, None], topics=["t"] * 4, channels=["c"] * 2)
    admin_table(v, cluster, [("ours", ["a"]), ("theirs", ["b"])],
                {"ours": ours, "theirs": theirs}, buf)
    lines = buf.getvalue().splitlines()
    cells = [re.split(r"\s{2,}", line) for line in lines if line.startswith(("GET", "topic "))]
    row = {c[0]: c[1:] for c in cells}
    assert row["GET /"] == ["20.0", "2.0", "10.00"]
    assert row["GET /api/topics/:topic"] == ["20.0", "8.0", "2.50"]
    # ours has the data in its HTML; theirs needs the page and then its API call
    assert row["topic list with its data"] == ["20.0", "4.0", "5.00"]
    assert row["topic page with its data"] == ["20.0", "10.0", "2.00"]
    assert "2 nsqd x 4 topics x 2 channels" in lines[1]
    assert "theirs: index needs its API call" in buf.getvalue()


def test_utils_flags_cases_and_table():
    import io as _io

    from nsqd_sync.bench.utils import CaseResult, parse_cases, print_table

    v = cli.parse_args("utils", [])
    assert (v["count"], v["size"], v["repeat"], v["against"], v["mem_queue_size"]) == (1000000, 200, 3, "", 0)
    assert parse_cases("") == ["tail", "to_nsq", "to_file"]
    assert parse_cases("to_file, tail") == ["to_nsq"]
    with pytest.raises(ValueError):
        parse_cases("tial")
    out = _io.StringIO()
    print_table([CaseResult("tail", [2.0, 1.0, 4.0], [4.0, 4.0, 8.0])], 1000, 200, "/x", out)
    text = out.getvalue()
    assert "machine: " in text and "CPUs" in text
    row = [line for line in text.splitlines() if line.startswith("nsq_tail > /dev/null")][0]
    assert row.split()[-3:] == ["500", "250", "2.00x"]  # medians 2.0 s and 4.0 s for 1000 messages
