"""`utils`: the nsq_* utilities against NSQ's Go ones, on one nsqd, alternating.

Starts one nsqd (ours, or --nsqd-path) and, for each case and each of
--repeat rounds, runs our tool and then (with --against DIR) the tool of the
same name in DIR, each on a fresh topic:

  tail     --count messages of --size bytes are queued on a channel, then
           `nsq_tail --channel=C -n COUNT > /dev/null` drains it; timed from
           start to exit.
  to_nsq   `to_nsq < FILE` publishes a file of --count lines of --size bytes
           (plus the newline); timed from start to exit, and the topic must
           hold every message.
  to_file  --count messages are queued, then `nsq_to_file --output-dir=TMP`
           drains the channel; timed from start until its files hold every
           message (their size says so).  The run goes on until every message
           is FIN'd (logged, not in the table: NSQ's tool FINs a last partial
           batch only at its next --sync-interval tick, 30s by default), then
           the tool is stopped with SIGTERM and the files must hold every
           message, each once.

A row shows the median rate (messages per second) per tool and the ratio
ours/theirs.  Rounds alternate (ours, theirs, ours, theirs, ...) so a busy
machine slows both alike; the figures are only as steady as the machine.
"""
from __future__ import annotations

import gzip
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from .. import wire
from .common import BenchError, FrameConn, connect, fmt_int, identify
from .common import machine_line as machine
from .node import BenchNode, node_command, split_args
from .options import UTILS_CASES as CASES
from .options import parse_cases

TOOL_OF = {"tail": "nsq_tail", "to_nsq": "to_nsq", "to_file": "nsq_to_file"}
RUN_TIMEOUT = 1800.0  # seconds one tool run may take before the bench gives up


def our_tool(name: str) -> List[str]:
    """argv prefix of our tool: this Python running the module (no PATH needed)."""
    return [sys.executable, "-m", "nsqd_sync.apps." + name]


def their_tool(directory: str, name: str) -> List[str]:
    return [os.path.join(directory, name)]


def body(size: int) -> bytes:
    """A message body without newlines (tools that write lines keep one message per line)."""
    return b"x" * size


def queue_messages(address: str, topic: str, channel: str, count: int, size: int,
                   batch: int = 500) -> None:
    """Create topic/channel, then MPUB `count` bodies of `size` bytes onto it."""
    sock = connect(address)
    conn = FrameConn(sock)
    try:
        identify(sock, conn)
        sock.sendall(wire.command(b"SUB", topic.encode(), channel.encode()))
        conn.expect_ok("SUB")
    finally:
        sock.close()  # the channel stays: it is not ephemeral
    sock = connect(address)
    conn = FrameConn(sock)
    try:
        identify(sock, conn)
        full = wire.command(b"MPUB", topic.encode(), body=wire.mpub_body([body(size)] * batch))
        left = count
        while left > 0:
            n = min(batch, left)
            sock.sendall(full if n == batch else
                         wire.command(b"MPUB", topic.encode(), body=wire.mpub_body([body(size)] * n)))
            conn.expect_ok("MPUB")
            left -= n
    finally:
        sock.close()


def http_json(node: BenchNode, path: str, method: str = "GET") -> Any:
    from ..addresses import http_url
    from ..http_client import HTTPClient

    http = HTTPClient(5.0, 30.0)
    try:
        return http.nsq_request(method, http_url(node.http_address, path))
    finally:
        http.close()


def channel_state(node: BenchNode, topic: str, channel: str) -> Tuple[int, int, int]:
    """(depth, in_flight, message_count) of topic/channel."""
    stats = http_json(node, "/stats?format=json&topic=%s&channel=%s" % (topic, channel))
    for t in stats.get("topics") or []:
        for c in t.get("channels") or []:
            if c["channel_name"] == channel:
                return c["depth"], c["in_flight_count"], c["message_count"]
    return -1, -1, -1


def topic_count(node: BenchNode, topic: str) -> int:
    stats = http_json(node, "/stats?format=json&topic=%s" % topic)
    topics = stats.get("topics") or []
    return topics[0]["message_count"] if topics else 0


def delete_topic(node: BenchNode, topic: str) -> None:
    try:
        http_json(node, "/topic/delete?topic=" + topic, "POST")
    except OSError:
        pass


def _run(argv: Sequence[str], stdin: Any, label: str) -> float:
    """Run argv to completion (stdout to /dev/null); seconds it took."""
    with open(os.devnull, "wb") as null, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(list(argv), stdin=stdin, stdout=null, stderr=err)
        try:
            code = proc.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BenchError("%s did not finish within %ds" % (label, RUN_TIMEOUT)) from None
        took = time.monotonic() - started
        if code != 0:
            err.seek(0)
            raise BenchError("%s exited with %d: %s" % (label, code, err.read()[-500:].decode("utf-8", "replace")))
    return took


def time_tail(node: BenchNode, tool: List[str], topic: str, count: int, size: int) -> float:
    queue_messages(node.tcp_address, topic, "bench", count, size)
    took = _run(tool + ["--topic=" + topic, "--channel=bench", "--nsqd-tcp-address=" + node.tcp_address,
                        "-n", str(count)], subprocess.DEVNULL, tool[-1])
    return took


def time_to_nsq(node: BenchNode, tool: List[str], topic: str, count: int, size: int, data_file: str) -> float:
    with open(data_file, "rb") as f:
        took = _run(tool + ["--topic=" + topic, "--nsqd-tcp-address=" + node.tcp_address], f, tool[-1])
    got = topic_count(node, topic)
    if got != count:
        raise BenchError("%s published %d of %d messages" % (tool[-1], got, count))
    return took


def _bytes_in(directory: str) -> int:
    total = 0
    for name in os.listdir(directory):
        try:
            total += os.stat(os.path.join(directory, name)).st_size
        except OSError:
            pass  # renamed or removed while we looked
    return total


def time_to_file(node: BenchNode, tool: List[str], topic: str, count: int, size: int) -> Tuple[float, float]:
    """(seconds until every message is written to the files, seconds until every one is FIN'd)."""
    queue_messages(node.tcp_address, topic, "bench", count, size)
    out = tempfile.mkdtemp(prefix="nsq_bench-to_file-")
    expected = count * (size + 1)
    try:
        with open(os.devnull, "wb") as null, tempfile.TemporaryFile() as err:
            started = time.monotonic()
            proc = subprocess.Popen(tool + ["--topic=" + topic, "--channel=bench", "--output-dir=" + out,
                                            "--nsqd-tcp-address=" + node.tcp_address],
                                    stdin=subprocess.DEVNULL, stdout=null, stderr=err)
            try:
                deadline = started + RUN_TIMEOUT
                written = 0.0
                while True:
                    if not written and _bytes_in(out) >= expected:
                        written = time.monotonic() - started
                    if written:
                        depth, in_flight, _ = channel_state(node, topic, "bench")
                        if depth == 0 and in_flight == 0:
                            break
                    if proc.poll() is not None:
                        err.seek(0)
                        raise BenchError("%s exited with %s: %s" % (tool[-1], proc.returncode,
                                                                     err.read()[-500:].decode("utf-8", "replace")))
                    if time.monotonic() > deadline:
                        raise BenchError("%s did not drain the channel within %ds" % (tool[-1], RUN_TIMEOUT))
                    time.sleep(0.02)
                finished = time.monotonic() - started
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        lines = 0
        for name in os.listdir(out):
            path = os.path.join(out, name)
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as f:
                lines += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        if lines != count:
            raise BenchError("%s wrote %d of %d messages" % (tool[-1], lines, count))
        return written, finished
    finally:
        shutil.rmtree(out, ignore_errors=True)


@dataclass
class CaseResult:
    case: str
    ours: List[float] = field(default_factory=list)  # seconds per run
    theirs: List[float] = field(default_factory=list)


def machine_line() -> str:
    """The node-table machine line (system, CPUs, CPU model, Python) and the date."""
    return "%s; %s" % (machine(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))


def print_table(results: List[CaseResult], count: int, size: int, against: str,
                stream: Optional[TextIO] = None) -> None:
    out = stream if stream is not None else sys.stdout
    out.write("nsq_bench utils: %s messages of %d bytes, median of %d run(s) each\n"
              % (fmt_int(count), size, max((len(r.ours) for r in results), default=0)))
    out.write("machine: %s\n" % machine_line())
    head = "%-22s %14s" % ("case", "ours msg/s")
    if against:
        head += " %14s %7s" % ("theirs msg/s", "ratio")
    out.write(head + "\n")
    labels = {"tail": "nsq_tail > /dev/null", "to_nsq": "to_nsq < file", "to_file": "nsq_to_file"}
    for r in results:
        ours = count / statistics.median(r.ours)
        line = "%-22s %14s" % (labels[r.case], fmt_int(ours))
        if against and r.theirs:
            theirs = count / statistics.median(r.theirs)
            line += " %14s %6.2fx" % (fmt_int(theirs), ours / theirs)
        out.write(line + "\n")
    out.flush()


def bench_utils(v: Dict[str, Any], reporter: Any) -> List[CaseResult]:
    cases = parse_cases(v["skip"])
    against = v["against"]
    if against:
        for case in cases:
            path = os.path.join(against, TOOL_OF[case])
            if not os.access(path, os.X_OK):
                raise BenchError("--against %s: no executable %s" % (against, TOOL_OF[case]))
    import importlib.util

    for case in cases:
        if importlib.util.find_spec("nsqd_sync.apps." + TOOL_OF[case]) is None:
            raise BenchError("this nsq-sync has no %s (leave it out with --skip=%s)" % (TOOL_OF[case], case))
    count, size = v["count"], v["size"]
    mem = v["mem_queue_size"] or count
    args = ["--mem-queue-size=%d" % mem] + split_args(v["nsqd_args"])
    data_file = ""
    results: List[CaseResult] = []
    node = BenchNode(node_command(v["nsqd_path"]), args)
    try:
        if "to_nsq" in cases:
            fd, data_file = tempfile.mkstemp(prefix="nsq_bench-to_nsq-")
            line = body(size) + b"\n"
            with os.fdopen(fd, "wb") as f:
                for _ in range(0, count, 1000):
                    f.write(line * 1000)
                f.truncate(count * len(line))
        for case in cases:
            result = CaseResult(case)
            results.append(result)
            sides = [("ours", our_tool(TOOL_OF[case]))]
            if against:
                sides.append(("theirs", their_tool(against, TOOL_OF[case])))
            for round_no in range(v["repeat"]):
                for who, tool in sides:
                    topic = "utils_bench_%s_%d_%s" % (case, round_no, who)
                    note = ""
                    if case == "tail":
                        took = time_tail(node, tool, topic, count, size)
                    elif case == "to_nsq":
                        took = time_to_nsq(node, tool, topic, count, size, data_file)
                    else:
                        took, finished = time_to_file(node, tool, topic, count, size)
                        note = ", all FIN'd after %.2fs" % finished
                    delete_topic(node, topic)
                    (result.ours if who == "ours" else result.theirs).append(took)
                    reporter.line("utils", "%s %s round %d: %s msg/s (%.2fs%s)"
                                  % (TOOL_OF[case], who, round_no + 1, fmt_int(count / took), took, note))
                    node.check_alive()
    finally:
        node.stop()
        if data_file:
            os.unlink(data_file)
    print_table(results, count, size, against)
    return results
