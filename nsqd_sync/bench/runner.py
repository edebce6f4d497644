"""`all`: every benchmark against nodes this command starts, as one table.

For each repeat and each node command (ours, then --against's), a fresh
node is started on free loopback ports with a temporary data path, the
throughput and latency groups run against it in order (writer, reader
draining what the writer queued, pubsub, single, latency, topics), the node
is stopped, and `memory` starts its own nodes.  Nodes are stopped on every
way out (error, Ctrl-C, SIGTERM).  Each row shows the median over repeats;
with --against, also the other node's figure and the ratio ours/theirs.
Per-run result lines go to stderr as they come; the table to stdout.
"""
from __future__ import annotations

import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .common import (BenchError, Reporter, Throughput, create_channels, fmt_int, machine_line,
                     go_duration)
from .node import BenchNode, node_command, split_args
from .options import GROUPS, parse_counts

READER_IDLE = 1.0  # reader rows end once the writer's backlog is drained


@dataclass
class Row:
    key: str
    label: str
    unit: str
    higher_better: bool
    group: str


def rows_for(v: Dict[str, Any], counts: Sequence[int]) -> List[Row]:
    rows = [
        Row("writer", "PUB: MPUB x%d, %d conns" % (v["batch_size"], v["workers"]), "msg/s", True,
            "writer"),
        Row("reader", "SUB: RDY %d, FIN each, %d conns" % (v["rdy"], v["workers"]), "msg/s", True,
            "reader"),
        Row("pubsub_pub", "PUB while SUB runs", "msg/s", True, "pubsub"),
        Row("pubsub_sub", "SUB while PUB runs", "msg/s", True, "pubsub"),
        Row("single", "PUB: one per round trip, %d conns" % v["workers"], "msg/s", True, "single"),
        Row("lat_p50", "latency p50 at %d msg/s" % v["rate"], "ms", False, "latency"),
        Row("lat_p99", "latency p99 at %d msg/s" % v["rate"], "ms", False, "latency"),
        Row("lat_p999", "latency p99.9 at %d msg/s" % v["rate"], "ms", False, "latency"),
        Row("lat_max", "latency max at %d msg/s" % v["rate"], "ms", False, "latency"),
        Row("mem_per_msg", "RSS per queued msg, %d queued" % v["memory_count"], "B", False,
            "memory"),
        Row("mem_peak", "peak RSS, %d queued" % v["memory_count"], "MiB", False, "memory"),
        Row("overflow", "RSS growth/msg overflowing to disk", "B", False, "overflow"),
    ]
    for n in counts:
        rows.append(Row("topics_%d" % n, "PUB: %d topic%s" % (n, "" if n == 1 else "s"), "msg/s",
                        True, "topics"))
    if len(counts) > 1 and 1 in counts:
        top = max(counts)
        rows.append(Row("topics_ratio", "PUB %d topics / 1 topic" % top, "x", True, "topics"))
    return rows


class Figures:
    """Values per row key over the repeats of one node, with client-bound flags."""

    def __init__(self) -> None:
        self.values: Dict[str, List[float]] = {}
        self.client_bound: Dict[str, bool] = {}

    def add(self, key: str, value: float, client_bound: bool = False) -> None:
        self.values.setdefault(key, []).append(value)
        self.client_bound[key] = self.client_bound.get(key, False) or client_bound

    def put(self, key: str, result: Throughput) -> None:
        self.add(key, result.ops, result.client_bound)

    def median(self, key: str) -> Optional[float]:
        vals = self.values.get(key)
        return statistics.median(vals) if vals else None


def _progress(rep: Reporter, node: Optional[BenchNode], label: str,
              cpu0: float, t0: float) -> None:
    if node is None:
        return
    wall = time.monotonic() - t0
    if wall > 0:
        rep.line("all", "%s: node %s used %.0f%% CPU (of %d CPUs)"
                 % (label, node.label, 100 * (node.cpu_seconds() - cpu0) / wall,
                    os.cpu_count() or 1))


def run_suite(node: BenchNode, v: Dict[str, Any], skip: Sequence[str], counts: Sequence[int],
              fig: Figures, rep: Reporter) -> None:
    """The throughput and latency groups against one running node."""
    from .latency import bench_latency
    from .reader import bench_pubsub, bench_reader
    from .topics import bench_topics
    from .writer import bench_single, bench_writer

    addr = node.tcp_address
    size, batch, rdy, runfor, workers = (v["size"], v["batch_size"], v["rdy"], v["runfor"],
                                         v["workers"])

    def step(group: str, fn: Callable[[], None]) -> None:
        if group in skip:
            return
        node.check_alive()
        cpu0, t0 = node.cpu_seconds(), time.monotonic()
        fn()
        _progress(rep, node, group, cpu0, t0)

    create_channels(addr, [("sub_bench", "ch"), ("pubsub_bench", "ch"), ("single_bench", "ch")])

    # latency first, on a quiet node: later rows leave disk writes and GC work behind
    def latency() -> None:
        lat = bench_latency(addr, "lat_bench", "ch", max(size, 16), v["rate"], runfor,
                            reporter=rep)
        for key, value in (("lat_p50", lat.p50), ("lat_p99", lat.p99), ("lat_p999", lat.p999),
                           ("lat_max", lat.max)):
            fig.add(key, value / 1e6)

    step("latency", latency)
    step("writer", lambda: fig.put("writer", bench_writer(addr, "sub_bench", size, batch, runfor,
                                                          workers, rep)))
    step("reader", lambda: fig.put("reader", bench_reader(addr, "sub_bench", "ch", size, rdy,
                                                          runfor, workers, READER_IDLE, rep)))

    def pubsub() -> None:
        w, r = bench_pubsub(addr, "pubsub_bench", "ch", size, batch, rdy, runfor, workers, rep)
        fig.put("pubsub_pub", w)
        fig.put("pubsub_sub", r)

    step("pubsub", pubsub)
    step("single", lambda: fig.put("single", bench_single(addr, "single_bench", size, runfor,
                                                          workers, rep)))

    def topics() -> None:
        results = bench_topics(addr, node.http_address, "topics_bench", "ch", size, batch,
                               runfor, workers, counts, rep)
        by_n = {}
        for n, result in results:
            fig.put("topics_%d" % n, result)
            by_n[n] = result.ops
        if len(counts) > 1 and 1 in by_n and by_n[1] > 0:
            fig.add("topics_ratio", by_n[max(counts)] / by_n[1])

    step("topics", topics)


def run_memory(command: List[str], args: List[str], v: Dict[str, Any], skip: Sequence[str],
               fig: Figures, rep: Reporter) -> None:
    from .memory import bench_memory

    if "memory" not in skip:
        m = bench_memory(command, args, "mem_bench", "ch", v["memory_count"], v["size"],
                         v["batch_size"], reporter=rep)
        fig.add("mem_per_msg", m.per_msg)
        fig.add("mem_peak", m.peak_kb / 1024.0)
    if "overflow" not in skip:
        m = bench_memory(command, args, "mem_bench", "ch", v["memory_count"], v["size"],
                         v["batch_size"], overflow=True, steps=5, reporter=rep)
        if m.overflow_growth_per_msg is not None:
            fig.add("overflow", m.overflow_growth_per_msg)


def parse_skip(text: str) -> List[str]:
    skip = [s.strip() for s in text.split(",") if s.strip()]
    for s in skip:
        if s not in GROUPS:
            raise BenchError("--skip: unknown group %r (known: %s)" % (s, ", ".join(GROUPS)))
    return skip


def run_all(v: Dict[str, Any], rep: Reporter, out: Optional[Any] = None) -> Dict[str, Figures]:
    """Run the table for ours (and --against) and print it; returns the figures by target."""
    out = out if out is not None else sys.stdout
    skip = parse_skip(v["skip"])
    counts = parse_counts(v["topic_counts"])
    node_args = split_args(v["nsqd_args"])
    targets: List[Tuple[str, List[str]]] = [("ours", node_command(v["nsqd_path"]))]
    if v["against"].strip():
        targets.append(("theirs", split_args(v["against"])))
    progress = Reporter(stream=sys.stderr)
    figures = {name: Figures() for name, _ in targets}
    for r in range(v["repeat"]):
        for name, command in targets:
            progress.line("all", "run %d/%d against %s: %s" % (r + 1, v["repeat"], name,
                                                               " ".join(command)))
            node = BenchNode(command, node_args, label=name)
            try:
                run_suite(node, v, skip, counts, figures[name], progress)
            finally:
                node.stop()
            run_memory(command, node_args, v, skip, figures[name], progress)
    print_table(v, targets, figures, rows_for(v, counts), skip, out)
    return figures


# ---------------------------------------------------------------- the table

def _fmt(value: Optional[float], unit: str) -> str:
    if value is None:
        return "-"
    if unit == "msg/s":
        return fmt_int(value)
    if unit == "ms":
        return "%.3f" % value
    if unit == "x":
        return "%.2f" % value
    return "%.1f" % value


def flags_line(v: Dict[str, Any]) -> str:
    """The flags that shape the figures, as a command line that reproduces them."""
    parts = ["--runfor=%s" % go_duration(int(round(v["runfor"] * 1e9)))]
    for key in ("size", "batch_size", "rdy", "workers", "rate", "memory_count", "topic_counts",
                "repeat"):
        parts.append("--%s=%s" % (key.replace("_", "-"), v[key]))
    for key in ("nsqd_args", "skip"):
        if v.get(key):
            parts.append("--%s=%s" % (key.replace("_", "-"), shlex.quote(v[key])))
    return " ".join(parts)


def print_table(v: Dict[str, Any], targets: List[Tuple[str, List[str]]],
                figures: Dict[str, Figures], rows: List[Row], skip: Sequence[str],
                out: Any) -> None:
    w = out.write
    w("nsq_bench all: %s, %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), machine_line()))
    w("runfor %gs per row, %d-byte messages, %d workers, %s\n" % (
        v["runfor"], v["size"], v["workers"],
        "median of %d runs" % v["repeat"] if v["repeat"] > 1 else "one run"))
    w("flags: %s\n" % flags_line(v))
    for name, command in targets:
        w("%-7s %s\n" % (name + ":", " ".join(command)))
    side = len(targets) > 1
    header = ["row", "unit", "ours"] + (["theirs", "ours/theirs"] if side else []) + ["better"]
    table = [header]
    marked = False
    for row in rows:
        if row.group in skip:
            continue
        ours = figures["ours"].median(row.key)
        bound = figures["ours"].client_bound.get(row.key, False)
        cells = [row.label, row.unit, _fmt(ours, row.unit)]
        if side:
            theirs = figures["theirs"].median(row.key)
            bound = bound or figures["theirs"].client_bound.get(row.key, False)
            ratio = "-"  # a ratio of a figure near or below zero means nothing
            if ours is not None and theirs is not None and ours > 0 and theirs > 0:
                ratio = "%.2f" % (ours / theirs)
            cells += [_fmt(theirs, row.unit), ratio]
        cells.append("higher" if row.higher_better else "lower")
        if bound:
            cells[0] += " *"
            marked = True
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, cells in enumerate(table):
        parts = []
        for j, cell in enumerate(cells):
            parts.append(cell.ljust(widths[j]) if j < 2 or j == len(cells) - 1
                         else cell.rjust(widths[j]))
        w("  ".join(parts).rstrip() + "\n")
    if marked:
        w("* a client worker process was near 100%% CPU (>= %d%%) in this row: the figure may be "
          "the Python client's limit rather than the node's.\n" % 85)
    out.flush()
