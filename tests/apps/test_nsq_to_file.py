"""nsq_to_file end to end against our nsqd (directly and via nsqlookupd)."""
from __future__ import annotations

import gzip
import os
import re
import signal
import socket

from tests.apps.conftest import channel_stats, publish, run_tool
from tests.helpers import wait_for

CHANNEL = "nsq_to_file"


def files_in(directory) -> list:
    return sorted(os.path.join(dp, f) for dp, _, fs in os.walk(str(directory)) for f in fs)


def read_lines(paths) -> list:
    lines = []
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith(".gz"):
            data = gzip.decompress(data)  # every member, as `gzip -d` reads them
        lines.extend(data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"))
    return lines


def wait_archived(node, topic, out, n: int, timeout: float = 60.0) -> None:
    """n lines are in the files and every message is FIN'd (checked in this order: a
    channel's stats can look empty for a moment while nsqd moves messages into it)."""
    wait_for(lambda: len(read_lines(files_in(out))) >= n, timeout=timeout, message="%d lines written" % n)
    wait_for(lambda: drained(node, topic), timeout=timeout, message="all FIN'd")


def drained(node, topic, channel=CHANNEL):
    """The channel has nothing queued and nothing in flight (every message FIN'd)."""
    c = channel_stats(node, topic, channel)
    return c if c and c["depth"] == 0 and c["in_flight_count"] == 0 and c["deferred_count"] == 0 else None


def test_writes_every_message_once_and_fins_it(nsqd, topic, tmp_path, start_tool):
    bodies = [b"line-%05d" % i for i in range(3000)]
    publish(nsqd, topic, bodies)
    out = tmp_path / "out"
    tool = start_tool("nsq_to_file", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--output-dir=" + str(out), "--sync-interval=200ms")
    wait_archived(nsqd, topic, out, 3000)
    assert tool.stop() == 0, tool.stderr()
    files = files_in(out)
    short_host = socket.gethostname().split(".")[0]
    assert len(files) == 1
    # the default --filename-format <TOPIC>.<HOST><REV>.<DATETIME>.log, <REV> dropped without rotation
    assert re.fullmatch(re.escape("%s.%s." % (topic, short_host)) + r"\d{4}-\d\d-\d\d_\d\d\.log",
                        os.path.basename(files[0])), files
    assert read_lines(files) == bodies  # one connection: NSQ's order, each exactly once
    assert channel_stats(nsqd, topic, CHANNEL)["requeue_count"] == 0
    assert "Traceback" not in tool.stderr()


def test_a_quiet_topic_is_synced_and_fin_d_without_waiting_for_the_interval(nsqd, topic, tmp_path, start_tool):
    out = tmp_path / "out"
    publish(nsqd, topic, [b"a", b"b", b"c"])
    # 3 in flight of 100 allowed, sync only every hour: once no more arrive they are written,
    # fsynced and FIN'd (NSQ's tool would hold them until the next tick)
    tool = start_tool("nsq_to_file", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--output-dir=" + str(out), "--sync-interval=1h", "--max-in-flight=100")
    wait_archived(nsqd, topic, out, 3, timeout=30)
    publish(nsqd, topic, [b"d"])
    wait_archived(nsqd, topic, out, 4, timeout=30)
    assert tool.proc.poll() is None
    assert tool.stop() == 0, tool.stderr()
    assert sorted(read_lines(files_in(out))) == [b"a", b"b", b"c", b"d"]


def test_kill_9_mid_stream_then_restart_loses_nothing(nsqd, topic, tmp_path, start_tool):
    bodies = [b"kill-%06d" % i for i in range(20000)]
    for i in range(0, len(bodies), 5000):
        publish(nsqd, topic, bodies[i:i + 5000])
    out = tmp_path / "out"
    args = ("--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address, "--output-dir=" + str(out),
            "--max-in-flight=50", "--sync-interval=200ms", "--filename-format=<TOPIC>.log")
    first = start_tool("nsq_to_file", *args)
    path = out / (topic + ".log")
    wait_for(lambda: path.exists() and path.stat().st_size > 30000, timeout=60, message="a part written")
    first.stop(signal.SIGKILL)
    stats = channel_stats(nsqd, topic, CHANNEL)
    assert stats["depth"] + stats["in_flight_count"] > 0, "killed too late to be mid-stream"
    # whatever was in flight when it died goes back to the queue
    wait_for(lambda: channel_stats(nsqd, topic, CHANNEL)["in_flight_count"] == 0, timeout=30,
             message="in-flight requeued")
    second = start_tool("nsq_to_file", *args)
    wait_for(lambda: wanted_in(out, bodies), timeout=120, message="every message in the files after the restart")
    wait_for(lambda: drained(nsqd, topic), timeout=60, message="all FIN'd after the restart")
    assert second.stop() == 0, second.stderr()
    lines = read_lines(files_in(out))
    wanted = set(bodies)
    missing = wanted - set(lines)
    assert not missing, "%d messages lost, e.g. %r" % (len(missing), sorted(missing)[:3])
    # at-least-once: some may be there twice; any other line is a write the kill cut short
    others = [line for line in lines if line not in wanted]
    assert len(others) <= 1 and all(any(b.startswith(o) for b in bodies) for o in others), others[:3]


def wanted_in(out, bodies) -> bool:
    return set(bodies) <= set(read_lines(files_in(out)))


def test_rotate_by_size(nsqd, topic, tmp_path, start_tool):
    bodies = [b"size-%04d" % i for i in range(500)]  # 10 bytes a line
    publish(nsqd, topic, bodies)
    out = tmp_path / "out"
    tool = start_tool("nsq_to_file", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--output-dir=" + str(out), "--rotate-size=1000", "--sync-interval=200ms",
                      "--filename-format=<TOPIC><REV>.log")
    wait_archived(nsqd, topic, out, 500)
    assert tool.stop() == 0, tool.stderr()
    files = files_in(out)
    names = [os.path.basename(f) for f in files]
    assert names == ["%s-%06d.log" % (topic, i) for i in range(len(files))], names
    assert len(files) >= 4, tool.stderr()
    for f in files:  # rotated once the size passed 1000 bytes: at most one line more
        assert os.path.getsize(f) <= 1010, (f, os.path.getsize(f))
    assert read_lines(files) == bodies


def test_rotate_by_interval_gzip_and_work_dir(nsqd, topic, tmp_path, start_tool):
    out, work = tmp_path / "out", tmp_path / "work"
    tool = start_tool("nsq_to_file", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--output-dir=" + str(out), "--work-dir=" + str(work), "--gzip", "--gzip-level=9",
                      "--rotate-interval=1s", "--sync-interval=100ms", "--skip-empty-files",
                      "--filename-format=<TOPIC><REV>.log")
    first = [b"first-%d" % i for i in range(20)]
    publish(nsqd, topic, first)
    wait_archived(nsqd, topic, work, 20)
    # the file in progress lives in the work dir; once rotated it moves to the output dir
    wait_for(lambda: files_in(out), timeout=30, message="the first file moved to the output dir")
    assert "opening %s" % (work / (topic + "-000000.log.gz")) in tool.stderr()
    assert files_in(work) == []  # --skip-empty-files: no new file until a message comes
    second = [b"second-%d" % i for i in range(20)]
    publish(nsqd, topic, second)
    wait_for(lambda: len(read_lines(files_in(work) + files_in(out))) >= 40, timeout=30,
             message="second batch written")
    wait_for(lambda: drained(nsqd, topic), timeout=30, message="second batch FIN'd")
    assert tool.stop() == 0, tool.stderr()
    assert files_in(work) == []
    files = files_in(out)
    assert [os.path.basename(f) for f in files] == [topic + "-000000.log.gz", topic + "-000001.log.gz"]
    assert read_lines(files[:1]) == first and read_lines(files[1:]) == second


def test_topic_pattern_discovers_a_topic_created_later(start_node, topic, tmp_path, start_tool):
    lookupd = start_node("nsqlookupd")
    node = start_node("nsqd", ["--lookupd-tcp-address=" + lookupd.tcp_address])
    out = tmp_path / "out"
    tool = start_tool("nsq_to_file", "--topic-pattern=^" + re.escape(topic) + "-yes",
                      "--lookupd-http-address=" + lookupd.http_address, "--topic-refresh=200ms",
                      "--output-dir=" + str(out), "--sync-interval=200ms", "--filename-format=<TOPIC>.log",
                      "--consumer-opt=lookupd_poll_interval,200ms")
    # both topics appear only now, after the tool started
    publish(node, topic + "-yes", [b"y1", b"y2"])
    publish(node, topic + "-no", [b"n1"])
    wait_archived(node, topic + "-yes", out, 2)
    assert tool.stop() == 0, tool.stderr()
    assert [os.path.basename(f) for f in files_in(out)] == [topic + "-yes.log"]
    assert read_lines(files_in(out)) == [b"y1", b"y2"]
    assert "skipping topic %s-no" % topic in tool.stderr()
    assert channel_stats(node, topic + "-no", CHANNEL) == {}


def test_unreachable_nsqd_is_retried_with_a_log_line(tmp_path, start_tool):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tool = start_tool("nsq_to_file", "--topic=t", "--nsqd-tcp-address=127.0.0.1:%d" % port,
                      "--output-dir=" + str(tmp_path / "out"))
    wait_for(lambda: "retrying" in tool.stderr(), timeout=30, message="a retry log line")
    assert tool.stop() == 0
    assert "Traceback" not in tool.stderr()


def test_bad_flags_are_one_line_and_exit_2(tmp_path):
    for args, text in [
        (["--topic=t"], "--nsqd-tcp-address or --lookupd-http-address required"),
        (["--nsqd-tcp-address=127.0.0.1:4150"], "--topic or --topic-pattern required"),
        (["--topic-pattern=x", "--nsqd-tcp-address=127.0.0.1:4150"],
         "--lookupd-http-address must be specified when no --topic specified"),
        (["--topic=t", "--nsqd-tcp-address=127.0.0.1:4150", "--gzip-level=10"], "should be 1-9"),
        (["--topic=t", "--nsqd-tcp-address=127.0.0.1:4150", "--gzip", "--filename-format=<TOPIC>.log"],
         "missing <REV> in --filename-format"),
        (["--topic=t", "--nsqd-tcp-address=127.0.0.1:4150", "--rotate-interval=soon"], "--rotate-interval"),
        (["--topic=t", "--nsqd-tcp-address=127.0.0.1:4150", "--nope"], "flag provided but not defined: -nope"),
    ]:
        r = run_tool("nsq_to_file", *args, "--output-dir=" + str(tmp_path), timeout=30)
        err = r.stderr.decode()
        assert r.returncode == 2 and err.count("\n") == 1 and text in err, (args, r.returncode, err)


def test_version():
    r = run_tool("nsq_to_file", "--version", timeout=30)
    assert r.returncode == 0
    assert re.fullmatch(rb"nsq_to_file v1\.3\.0-sync \(built w/python\d+\.\d+\.\d+\)\n", r.stdout), r.stdout


def test_sighup_closes_the_file_and_the_next_message_opens_another(nsqd, topic, tmp_path, start_tool):
    out, work = tmp_path / "out", tmp_path / "work"
    tool = start_tool("nsq_to_file", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--output-dir=" + str(out), "--work-dir=" + str(work), "--filename-format=<TOPIC><REV>.log")
    publish(nsqd, topic, [b"before"])
    wait_archived(nsqd, topic, work, 1, timeout=30)
    tool.proc.send_signal(signal.SIGHUP)
    # closed: moved from the work dir to the output dir, and the tool goes on
    wait_for(lambda: files_in(out), timeout=30, message="the file closed and moved")
    assert files_in(work) == [] and tool.proc.poll() is None
    publish(nsqd, topic, [b"after"])
    wait_archived(nsqd, topic, work, 1, timeout=30)
    assert tool.stop() == 0, tool.stderr()
    files = files_in(out)
    assert [os.path.basename(f) for f in files] == [topic + "-000000.log", topic + "-000001.log"]
    assert read_lines(files[:1]) == [b"before"] and read_lines(files[1:]) == [b"after"]


def test_sigint_mid_stream_closes_the_file_and_exits_0(nsqd, topic, tmp_path, start_tool):
    bodies = [b"int-%06d" % i for i in range(20000)]
    for i in range(0, len(bodies), 5000):
        publish(nsqd, topic, bodies[i:i + 5000])
    out, work = tmp_path / "out", tmp_path / "work"
    tool = start_tool("nsq_to_file", "--topic=" + topic, "--nsqd-tcp-address=" + nsqd.tcp_address,
                      "--output-dir=" + str(out), "--work-dir=" + str(work), "--max-in-flight=50",
                      "--sync-interval=200ms", "--filename-format=<TOPIC><REV>.log")
    wait_for(lambda: any(os.path.getsize(f) > 30000 for f in files_in(work)), timeout=60, message="a part written")
    assert tool.stop(signal.SIGINT) == 0, tool.stderr()
    assert "Traceback" not in tool.stderr()
    assert files_in(work) == []  # closed and moved to the output dir
    lines = read_lines(files_in(out))
    c = channel_stats(nsqd, topic, CHANNEL)
    assert c["in_flight_count"] == 0, c
    assert len(lines) < 20000, "stopped too late to be mid-stream"
    # every line written was FIN'd, everything else is still queued: none lost, none twice
    assert len(set(lines)) == len(lines) and set(lines) <= set(bodies)
    assert c["depth"] + c["deferred_count"] + len(lines) == 20000, (c, len(lines))
