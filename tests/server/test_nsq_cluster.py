"""`nsq_cluster`: started as a subprocess, read from its output, stopped by signals.

Every address it prints must answer, a message published to node 1 must be
found through nsqlookupd and in nsqadmin's /api/topics, SIGINT must leave
none of the PIDs it printed alive, and a second instance on the same ports
must fail with one line before starting anything.
"""
from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
from typing import Dict, List, Optional

import click

from nsqd_sync import flags
from nsqd_sync.testing.nsq_cluster import FLAGS, PROG, busy_port, command, plan_ports
from tests.helpers import http_request, pid_gone, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAN_PAGE = os.path.join(ROOT, "man", "nsq_cluster.1")
ARGV = [sys.executable, "-m", "nsqd_sync.testing.nsq_cluster"]
LINE = re.compile(r"^  (?P<label>\S+)\s+pid (?P<pid>\d+)\s+(?:tcp (?P<tcp>\S+)\s+)?http (?P<http>\S+)")


class ClusterRun:
    """nsq_cluster as a child process; its stdout drained into `lines` by a thread."""

    def __init__(self, *args: str, cwd: Optional[str] = None) -> None:
        self.proc = subprocess.Popen(ARGV + list(args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=cwd)
        self.lines: List[str] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._drain, daemon=True, name="test-nsq_cluster-out")
        self.reader.start()
        self.procs: Dict[str, Dict[str, str]] = {}
        self.admin_url = ""

    def _drain(self) -> None:
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def output(self) -> List[str]:
        with self.lock:
            return list(self.lines)

    def wait_started(self, timeout: float = 90.0) -> "ClusterRun":
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("nsq_cluster exited %s: %s" % (self.proc.returncode,
                                                                     self.proc.stderr.read()))
            return any(line.startswith("Ctrl-C") for line in self.output())

        wait_for(ready, timeout, message="nsq_cluster's address list")
        for line in self.output():
            m = LINE.match(line)
            if m:
                self.procs[m.group("label")] = m.groupdict()
            if line.startswith("nsqadmin: http://"):
                self.admin_url = line.split(": ", 1)[1]
        return self

    @property
    def pids(self) -> List[int]:
        return [int(p["pid"]) for p in self.procs.values()]

    def finish(self, sig: Optional[int] = signal.SIGINT, timeout: float = 60.0) -> int:
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
                for pid in self.pids:  # never leave the children behind a failed test
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.reader.join(10)
        return code


def free_base(nodes: int = 3) -> int:
    """A --base-port whose whole port plan is free on 127.0.0.1 (below the ephemeral range)."""
    for _ in range(200):
        base = random.randrange(20000, 30000, 2)
        if busy_port("127.0.0.1", plan_ports(base, nodes), True) is None:
            return base
    raise AssertionError("no free port range found")


def http_port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# ---------------------------------------------------------------- the command line


def test_port_plan_is_nsqs_defaults_shifted():
    plan = plan_ports(4150, 3)
    assert plan.lookupd == (4160, 4161)
    assert plan.nsqd == [(4150, 4151), (4152, 4153), (4154, 4155)]
    assert plan.admin == 4171
    eleven = plan_ports(4150, 11)
    assert (4160, 4161) not in eleven.nsqd and (4170, 4171) not in eleven.nsqd
    assert eleven.nsqd[5] == (4162, 4163) and eleven.nsqd[9] == (4172, 4173)
    moved = plan_ports(5150, 2)
    assert (moved.lookupd, moved.nsqd, moved.admin) == ((5160, 5161), [(5150, 5151), (5152, 5153)],
                                                        5171)
    assert plan_ports(0, 2).labelled() == []


def test_version_flag_and_bad_flags():
    out = subprocess.run(ARGV + ["--nodes=5", "-base-port", "0", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"nsq_cluster v1\.3\.0-sync \(built w/[a-z0-9.-]+\)\n", out.stdout)
    for bad in (["--nodes=0"], ["--base-port=70000"], ["--no-such-flag"], ["--nodes=x"]):
        out = subprocess.run(ARGV + bad, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (bad, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stderr.startswith("nsq_cluster: "), out.stderr


def test_man_page_options_are_the_flags():
    with open(MAN_PAGE, encoding="utf-8") as f:
        page = f.read()
    assert page.startswith(".TH NSQ_CLUSTER 1")
    assert flags.replace_roff_options(page, FLAGS) == page, (
        "man/nsq_cluster.1 is out of date: run `python -m nsqd_sync.flags "
        "nsqd_sync.testing.nsq_cluster:FLAGS man/nsq_cluster.1`")
    options = {o for p in command.params if isinstance(p, click.Option) for o in p.opts}
    documented = {"--" + n.replace("\\-", "-")
                  for n in re.findall(r"^\\fB\\-\\-([a-z0-9\\-]+)\\fR", page, re.M)}
    assert documented == options - {"--help"}
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "PORTS", "OPTIONS", "SIGNALS"):
        assert re.search(r"^\.SH %s\b" % section, page, re.M), section


# ---------------------------------------------------------------- a running cluster


def test_cluster_answers_routes_a_message_and_stops_on_sigint(tmp_path):
    base = free_base()
    run = ClusterRun("--base-port=%d" % base, "--data-path=" + str(tmp_path / "data"))
    try:
        run.wait_started()
        plan = plan_ports(base, 3)
        assert sorted(run.procs) == ["nsqadmin", "nsqd1", "nsqd2", "nsqd3", "nsqlookupd"]
        assert run.procs["nsqlookupd"]["tcp"] == "127.0.0.1:%d" % plan.lookupd[0]
        assert run.procs["nsqlookupd"]["http"] == "127.0.0.1:%d" % plan.lookupd[1]
        for i, (tcp, http) in enumerate(plan.nsqd, 1):
            assert run.procs["nsqd%d" % i]["tcp"] == "127.0.0.1:%d" % tcp
            assert run.procs["nsqd%d" % i]["http"] == "127.0.0.1:%d" % http
            assert (tmp_path / "data" / ("nsqd%d" % i)).is_dir()
        assert run.admin_url == "http://127.0.0.1:%d/" % plan.admin

        # every printed address answers
        for label, p in run.procs.items():
            status, body, _ = http_request(http_port(p["http"]), "/ping")
            assert (status, body) == (200, b"OK"), label
            if p["tcp"]:
                socket.create_connection(("127.0.0.1", http_port(p["tcp"])), timeout=5).close()

        # a message published to node 1 is found through lookupd and shown by nsqadmin
        status, body, _ = http_request(plan.nsqd[0][1], "/pub?topic=laptop", "POST", b"hello")
        assert (status, body) == (200, b"OK")

        def in_lookupd():
            status, body, _ = http_request(plan.lookupd[1], "/lookup?topic=laptop")
            return status == 200 and b'"tcp_port":%d' % plan.nsqd[0][0] in body.replace(b" ", b"")

        wait_for(in_lookupd, 30, message="topic in nsqlookupd")

        def in_admin():
            status, body, _ = http_request(plan.admin, "/api/topics")
            return status == 200 and b'"laptop"' in body

        wait_for(in_admin, 30, message="topic in nsqadmin's /api/topics")

        # logs are streamed with a prefix per process
        out = "\n".join(run.output())
        for label in ("nsqlookupd", "nsqd1", "nsqd2", "nsqd3", "nsqadmin"):
            assert re.search(r"^%s\s*\| \[%s\] .*HTTP: listening on" % (label, re.sub(r"\d", "", label)),
                             out, re.M), label

        # a second instance on the same ports refuses with one line and starts nothing
        second = subprocess.run(ARGV + ["--base-port=%d" % base, "--data-path=" + str(tmp_path / "b")],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stdout == ""
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert re.match(r"nsq_cluster: port \d+ \(nsq\S* (TCP|HTTP)\) is already in use on 127.0.0.1",
                        second.stderr), second.stderr
        assert not (tmp_path / "b").exists()

        pids = run.pids
        assert len(pids) == 5 and all(not pid_gone(pid) for pid in pids)
    finally:
        code = run.finish(signal.SIGINT)
    assert code == 0
    assert all(pid_gone(pid) for pid in pids)
    assert run.output()[-1] == "%s: stopped" % PROG


def test_busy_default_port_is_one_line_error(tmp_path):
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", 4150))
            holder.listen(1)
        except OSError:
            pass  # something already listens there: busy all the same
        out = subprocess.run(ARGV + ["--data-path=" + str(tmp_path / "d")], capture_output=True,
                             text=True, timeout=60)
    finally:
        holder.close()
    assert out.returncode == 1
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert re.match(r"nsq_cluster: port \d+ \(\S+ (TCP|HTTP)\) is already in use on 127.0.0.1: .*"
                    r"--base-port", out.stderr), out.stderr


def test_sigterm_kills_a_process_that_does_not_stop(tmp_path):
    run = ClusterRun("--base-port=0", "--nodes=2", "--nsqadmin=false", "--stop-timeout=1s",
                     "--data-path=" + str(tmp_path))
    try:
        run.wait_started()
        assert sorted(run.procs) == ["nsqd1", "nsqd2", "nsqlookupd"]
        stuck = int(run.procs["nsqd1"]["pid"])
        os.kill(stuck, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    finally:
        code = run.finish(signal.SIGTERM)
    assert code == 0
    assert all(pid_gone(pid) for pid in run.pids)
    err = run.proc.stderr.read()
    assert "nsqd1 (pid %d) did not exit within 1s of SIGTERM: killed" % stuck in err


def test_a_child_that_dies_stops_the_cluster(tmp_path):
    run = ClusterRun("--base-port=0", "--nodes=1", "--nsqadmin=false", "--data-path=" + str(tmp_path))
    try:
        run.wait_started()
        victim = int(run.procs["nsqd1"]["pid"])
        os.kill(victim, signal.SIGKILL)
    finally:
        code = run.finish(None)
    assert code == 1
    assert all(pid_gone(pid) for pid in run.pids)
    assert "nsqd1 (pid %d) exited with code -9; stopping the cluster" % victim in run.proc.stderr.read()


def test_sighup_from_a_closed_terminal_stops_everything(tmp_path):
    run = ClusterRun("--base-port=0", "--nodes=1", "--nsqadmin=false", "--data-path=" + str(tmp_path))
    try:
        run.wait_started()
        assert sorted(run.procs) == ["nsqd1", "nsqlookupd"]
    finally:
        code = run.finish(signal.SIGHUP)
    assert code == 0
    assert all(pid_gone(pid) for pid in run.pids)
