"""The `nsq_cluster` command: the introductions' NSQ cluster on one machine, no Docker.

One nsqlookupd, `--nodes` nsqd registered with it and nsqadmin, each a child
process started with the same runner as the pytest fixtures
(`process.NodeProcess`).  Ports are NSQ's defaults shifted by
`--base-port - 4150` (`plan_ports`); every one is checked before anything
starts, and a busy port is a one-line error (exit 1).  Data goes under
`--data-path`, one folder per node.  The children's log lines are streamed
to stdout, each prefixed with its process (`nsqd2      | ...`), after the
list of addresses and PIDs.  SIGINT/SIGTERM (taken with `sigwait` in the
main thread) stops them all: SIGTERM, then SIGKILL after `--stop-timeout`;
so does SIGHUP (the terminal closed).
A child that exits on its own stops the rest too (exit 1).

The children run in their own process group, so a Ctrl-C in the terminal
reaches only nsq_cluster, which then stops them in order: nsqadmin and the
nsqd nodes first, nsqlookupd last.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import click

from .. import flags, signals
from ..addresses import join_host_port
from ..durations import format_duration
from ..flags import Flag, FlagError

PROG = "nsq_cluster"
NSQ_BASE = 4150  # nsqd's default TCP port; every other default is an offset from it
LOOKUPD_OFFSETS = (10, 11)  # 4160 TCP, 4161 HTTP
ADMIN_OFFSET = 21  # 4171
LABEL_WIDTH = 10
#: signals that stop the cluster: a closed terminal (SIGHUP) too, or the children would stay
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _port_base(value: int) -> Optional[str]:
    if value == 0 or 1 <= value <= 65535 - 200:
        return None
    return "must be 0 (free ports) or a port from 1 to %d" % (65535 - 200)


FLAGS = [
    Flag("nodes", "int", 3, "number of nsqd nodes",
         validate=lambda v: None if 1 <= v <= 50 else "must be from 1 to 50"),
    Flag("base-port", "int", NSQ_BASE,
         "port of nsqd 1's TCP listener; every other port keeps its offset from NSQ's defaults "
         "(nsqlookupd base+10/+11, nsqadmin base+21, nsqd N base+2(N-1)/+1); 0 picks free ports",
         validate=_port_base),
    Flag("address", "str", "127.0.0.1",
         "interface every process listens on (0.0.0.0: all interfaces)", metavar="HOST"),
    Flag("broadcast-address", "str", "",
         "address the nsqd nodes register with nsqlookupd (default: --address, or the OS "
         "hostname when --address is a wildcard)", metavar="HOST"),
    Flag("data-path", "str", "./nsq-cluster-data",
         "folder for the nodes' data, one sub-folder per nsqd (nsqd1, nsqd2, ...)", metavar="DIR"),
    Flag("nsqadmin", "bool", True, "start nsqadmin too"),
    Flag("nsqd-arg", "strlist", [],
         "an extra flag for every nsqd, e.g. --nsqd-arg=--mem-queue-size=0", metavar="FLAG"),
    Flag("start-timeout", "duration", 30.0,
         "how long each process may take to log its listening addresses"),
    Flag("stop-timeout", "duration", 10.0,
         "how long the processes may take to exit after SIGTERM before they get SIGKILL"),
    Flag("version", "bool", False, "print version string"),
]


# ---------------------------------------------------------------- ports


@dataclass
class PortPlan:
    """Every listen port of the cluster (0: a free port picked by the OS)."""

    lookupd: Tuple[int, int]
    nsqd: List[Tuple[int, int]]
    admin: int

    def labelled(self) -> List[Tuple[str, int]]:
        """(what, port) for every fixed port, in start order."""
        out = [("nsqlookupd TCP", self.lookupd[0]), ("nsqlookupd HTTP", self.lookupd[1])]
        for i, (tcp, http) in enumerate(self.nsqd, 1):
            out += [("nsqd%d TCP" % i, tcp), ("nsqd%d HTTP" % i, http)]
        out.append(("nsqadmin HTTP", self.admin))
        return [(what, port) for what, port in out if port]


def plan_ports(base: int, nodes: int) -> PortPlan:
    """NSQ's default ports moved to `base`: 4150/4151, 4152/4153, ... 4160/4161, 4171."""
    if base == 0:
        return PortPlan((0, 0), [(0, 0)] * nodes, 0)
    reserved = {base + LOOKUPD_OFFSETS[0], base + LOOKUPD_OFFSETS[1], base + ADMIN_OFFSET}
    pairs: List[Tuple[int, int]] = []
    port = base
    while len(pairs) < nodes:
        if port not in reserved and port + 1 not in reserved:
            pairs.append((port, port + 1))
        port += 2
    return PortPlan((base + LOOKUPD_OFFSETS[0], base + LOOKUPD_OFFSETS[1]), pairs,
                    base + ADMIN_OFFSET)


def busy_port(host: str, plan: PortPlan, with_admin: bool) -> Optional[Tuple[str, int]]:
    """The first planned port something already listens on, as (what, port)."""
    bind_host = "" if host in ("0.0.0.0", "") else host
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    for what, port in plan.labelled():
        if what.startswith("nsqadmin") and not with_admin:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                s.bind((bind_host, port))
            except OSError:
                return what, port
    return None


# ---------------------------------------------------------------- output


class Output:
    """Lines to stdout from many threads, one whole line at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        with self.lock:
            try:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                pass  # nobody reads our output any more; keep the cluster running

    def prefixed(self, label: str):
        pad = label.ljust(LABEL_WIDTH)
        return lambda line: self.write("%s | %s" % (pad, line))


def fail(message: str, code: int = 1) -> int:
    sys.stderr.write("%s: %s\n" % (PROG, message))
    sys.stderr.flush()
    return code


# ---------------------------------------------------------------- running


class LocalCluster:
    """Starts, lists, watches and stops the cluster's processes."""

    def __init__(self, values: Dict[str, Any], out: Output) -> None:
        self.v = values
        self.out = out
        self.host = values["address"]
        self.procs: List[Any] = []  # NodeProcess, in start order
        self.labels: Dict[int, str] = {}
        self.stopping = threading.Event()
        self.died: Optional[Any] = None

    def _start(self, label: str, name: str, args: Sequence[str], tcp: Optional[int],
               http: int, data_path: Optional[str] = None, wait: bool = True):
        from .process import NodeProcess

        proc = NodeProcess(
            name, args=args, data_path=data_path,
            tcp=None if tcp is None else join_host_port(self.host, tcp),
            http=join_host_port(self.host, http), on_line=self.out.prefixed(label),
            start_timeout=self.v["start_timeout"], new_session=True, wait=wait)
        self.procs.append(proc)
        self.labels[id(proc)] = label
        return proc

    def start(self, plan: PortPlan) -> None:
        lookupd = self._start("nsqlookupd", "nsqlookupd", [], *plan.lookupd)
        broadcast = self.v["broadcast_address"] or (
            flags.default_hostname() if self.host in ("", "0.0.0.0", "::") else self.host)
        nodes = []
        for i, (tcp, http) in enumerate(plan.nsqd, 1):
            data = os.path.join(self.v["data_path"], "nsqd%d" % i)
            os.makedirs(data, exist_ok=True)
            args = ["--lookupd-tcp-address=" + lookupd.tcp_address, "--node-id=%d" % i,
                    "--broadcast-address=" + broadcast, *self.v["nsqd_arg"]]
            nodes.append(self._start("nsqd%d" % i, "nsqd", args, tcp, http, data, wait=False))
        for node in nodes:
            node.wait_started()
        if self.v["nsqadmin"]:
            self._start("nsqadmin", "nsqadmin", ["--lookupd-http-address=" + lookupd.http_address],
                        None, plan.admin)

    def summary(self) -> List[str]:
        nodes = sum(1 for p in self.procs if p.name == "nsqd")
        lines = ["%s: running 1 nsqlookupd, %d nsqd%s (data in %s)"
                 % (PROG, nodes, " and nsqadmin" if self.v["nsqadmin"] else "",
                    self.v["data_path"])]
        for p in self.procs:
            parts = ["  %-*s pid %-7d" % (LABEL_WIDTH, self.labels[id(p)], p.pid)]
            if "TCP" in p.addresses:
                parts.append("tcp %-21s" % p.tcp_address)
            parts.append("http %-21s" % p.http_address)
            if p.data_path:
                parts.append("data %s" % p.data_path)
            lines.append(" ".join(parts).rstrip())
        admin = [p for p in self.procs if p.name == "nsqadmin"]
        if admin:
            lines.append("nsqadmin: http://%s/" % admin[0].http_address)
        lines.append("Ctrl-C (or SIGTERM) stops them all.")
        return lines

    def watch(self) -> None:
        """A child exiting on its own ends the cluster (wakes the main thread)."""
        while not self.stopping.wait(0.2):
            for p in self.procs:
                if p.proc.poll() is not None:
                    self.died = p
                    signals.send_self(signal.SIGTERM)
                    return

    def stop(self) -> None:
        from .process import stop_all

        self.stopping.set()
        timeout = self.v["stop_timeout"]
        first = [p for p in self.procs if p.name != "nsqlookupd"]
        last = [p for p in self.procs if p.name == "nsqlookupd"]
        for group in (first, last):
            for p in stop_all(group, timeout):
                fail("%s (pid %d) did not exit within %s of SIGTERM: killed"
                     % (self.labels[id(p)], p.pid, format_duration(timeout)))


def run(values: Dict[str, Any]) -> int:
    """Run the cluster until a signal; returns the exit code."""
    from .process import NodeStartError

    plan = plan_ports(values["base_port"], values["nodes"])
    busy = busy_port(values["address"], plan, values["nsqadmin"])
    if busy is not None:
        what, port = busy
        return fail("port %d (%s) is already in use on %s: stop what listens there, or move "
                    "every port with --base-port (e.g. --base-port=%d), or use --base-port=0 "
                    "for free ports" % (port, what, values["address"] or "0.0.0.0", port + 1000))
    try:
        os.makedirs(values["data_path"], exist_ok=True)
    except OSError as e:
        return fail("cannot create --data-path %s: %s" % (values["data_path"], e.strerror or e))

    waited = tuple(signals.HANDLED_SIGNALS) + (signal.SIGHUP,)
    signals.block_signals(waited)  # before the first thread: every thread inherits the mask
    out = Output()
    cluster = LocalCluster(values, out)
    try:
        try:
            cluster.start(plan)
        except NodeStartError as e:
            return fail(" ".join(str(e).split()))
        for line in cluster.summary():
            out.write(line)
        watcher = threading.Thread(target=cluster.watch, name="nsq_cluster-watch", daemon=True)
        watcher.start()
        signals.wait_for_signal(lambda signum: signum in STOP_SIGNALS, waited)
        cluster.stopping.set()
        watcher.join(5)
        if cluster.died is not None:
            p = cluster.died
            fail("%s (pid %d) exited with code %s; stopping the cluster"
                 % (cluster.labels[id(p)], p.pid, p.proc.returncode))
            return 1
        return 0
    finally:
        cluster.stop()
        out.write("%s: stopped" % PROG)


@click.command(name=PROG, help="nsq_cluster: nsqlookupd, N nsqd and nsqadmin on this machine.",
               context_settings={"help_option_names": ["--help"], "max_content_width": 100})
@flags.click_options(FLAGS)
def command(**raw: Any) -> None:
    values = flags.resolve(FLAGS, raw, {}, flags.warn_stderr(PROG))
    if values["version"]:
        click.echo(flags.version_line(PROG))
        return
    if not values["data_path"]:
        raise FlagError("--data-path must not be empty")
    sys.exit(run(values))


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console-script entry point (Go-style flags accepted)."""
    flags.run_command(command, PROG, FLAGS, argv)


if __name__ == "__main__":  # pragma: no cover
    main()
