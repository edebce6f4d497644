"""`admin`: how fast an nsqadmin serves its pages over a big cluster.

Builds a cluster on loopback ports — one nsqlookupd and `--nodes` nsqd
registered with it, each holding `--topics` topics of `--channels` channels
(created over the nodes' HTTP API, `--parallel` requests at a time) — then
starts our nsqadmin and, with `--against`, another nsqadmin executable (the
Go one) on the same lookupd, one at a time, and times GET requests to `/`,
one topic's page and `/api/topics/:topic` (and `/api/topics`).

Each nsqadmin is started fresh for each of `--rounds` rounds (ours, theirs,
ours, theirs, ...), answers one warm-up request per URL, then `--requests`
timed ones per URL; a row shows the median of all of them.  A request is
one new HTTP/1.1 connection, the whole body read.

NSQ's own pages are a JavaScript application: the HTML has no data, and the
browser makes an API call before the user sees anything.  So besides the
raw requests, two rows time a page *with its data*: the page alone when its
HTML names the topic, else the page plus the API call its script makes
(`/api/topics` for `/`, `/api/topics/:topic` for a topic's page).
"""
from __future__ import annotations

import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from .common import BenchError, Reporter, machine_line, parse_address
from .node import BenchNode, node_command, split_args

ADMIN_TIMEOUT = 120.0  # seconds one request to an nsqadmin may take before the run fails
REGISTER_TIMEOUT = 300.0  # seconds for lookupd to learn every topic of every node


def lookupd_command(path: str = "") -> List[str]:
    return split_args(path) if path.strip() else [sys.executable, "-m", "nsqlookupd_sync"]


def nsqadmin_command(path: str = "") -> List[str]:
    return split_args(path) if path.strip() else [sys.executable, "-m", "nsqadmin_sync"]


def topic_names(n: int) -> List[str]:
    width = len(str(max(n - 1, 0)))
    return ["admin_bench_%0*d" % (width, i) for i in range(n)]


def channel_names(n: int) -> List[str]:
    return ["ch%d" % i for i in range(n)]


# ---------------------------------------------------------------- HTTP

def http_call(addr: str, method: str, path: str, timeout: float = ADMIN_TIMEOUT,
              conn: Optional[http.client.HTTPConnection] = None) -> Tuple[int, bytes]:
    """One request; a new connection unless `conn` (kept alive) is given."""
    host, port = parse_address(addr)
    own = conn is None
    c = http.client.HTTPConnection(host, port, timeout=timeout) if own else conn
    assert c is not None
    try:
        c.request(method, path, headers={"Accept": "text/html,application/json"})
        r = c.getresponse()
        return r.status, r.read()
    except (OSError, http.client.HTTPException) as e:
        raise BenchError("%s http://%s%s failed: %s" % (method, addr, path, e)) from None
    finally:
        if own:
            c.close()


class _Creator:
    """Keep-alive connections per (thread, node) for the creation requests."""

    def __init__(self) -> None:
        self.local = threading.local()

    def post(self, addr: str, path: str) -> None:
        conns = getattr(self.local, "conns", None)
        if conns is None:
            conns = self.local.conns = {}
        conn = conns.get(addr)
        if conn is None:
            host, port = parse_address(addr)
            conn = conns[addr] = http.client.HTTPConnection(host, port, timeout=60)
        try:
            status, body = http_call(addr, "POST", path, conn=conn)
        except BenchError:
            conn.close()  # the node may close a kept-alive connection: retry once on a new one
            status, body = http_call(addr, "POST", path)
        if status != 200:
            raise BenchError("POST http://%s%s: %d %s" % (addr, path, status, body[:200]))


def create_topics(http_addrs: Sequence[str], topics: Sequence[str], channels: Sequence[str],
                  parallel: int) -> None:
    """/topic/create then /channel/create for every topic and channel on every node."""
    creator = _Creator()

    def one(job: Tuple[str, str]) -> None:
        addr, topic = job
        q = urllib.parse.quote
        creator.post(addr, "/topic/create?topic=" + q(topic))
        for channel in channels:
            creator.post(addr, "/channel/create?topic=%s&channel=%s" % (q(topic), q(channel)))

    jobs = [(addr, t) for t in topics for addr in http_addrs]
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="nsq_bench-create") as pool:
        for _ in pool.map(one, jobs):
            pass


def wait_registered(lookupd_http: str, nodes: int, topics: Sequence[str], channels: int,
                    timeout: float = REGISTER_TIMEOUT) -> None:
    """Poll lookupd until every node is a producer of every topic (and its channels)."""
    want = set(topics)
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_call(lookupd_http, "GET", "/nodes")
        producers = (json.loads(body).get("producers") or []) if status == 200 else []
        done = [p for p in producers if want <= set(p.get("topics") or [])]
        if len(done) >= nodes:
            break
        if time.monotonic() > deadline:
            raise BenchError("lookupd knows %d of %d nodes with all %d topics after %.0fs"
                             % (len(done), nodes, len(want), timeout))
        time.sleep(0.2)
    # channels register after their topic: check one topic's channel list too
    last = topics[-1]
    while True:
        status, body = http_call(lookupd_http, "GET", "/channels?topic=" + last)
        if status == 200 and len(json.loads(body).get("channels") or []) >= channels:
            return
        if time.monotonic() > deadline:
            raise BenchError("lookupd does not list the channels of %s" % last)
        time.sleep(0.2)


@dataclass
class Cluster:
    lookupd: BenchNode
    nodes: List[BenchNode]
    topics: List[str]
    channels: List[str]
    build_seconds: float = 0.0

    def stop(self) -> None:
        for node in self.nodes + [self.lookupd]:
            node.stop()


def build_cluster(nsqd: Sequence[str], nsqd_args: Sequence[str], lookupd: Sequence[str],
                  n_nodes: int, n_topics: int, n_channels: int, parallel: int,
                  rep: Reporter) -> Cluster:
    """Start lookupd and the nodes, create the topics and channels, wait for registration."""
    t0 = time.monotonic()
    lk = BenchNode(lookupd, label="nsqlookupd", data_path=False)
    nodes: List[BenchNode] = []
    try:
        args = ["--lookupd-tcp-address=" + lk.tcp_address, "--broadcast-address=127.0.0.1"]
        args += list(nsqd_args)
        with ThreadPoolExecutor(max_workers=n_nodes, thread_name_prefix="nsq_bench-start") as p:
            futures = [p.submit(BenchNode, nsqd, args, "nsqd%d" % (i + 1)) for i in range(n_nodes)]
            errors = []
            for f in futures:
                try:
                    nodes.append(f.result())
                except BenchError as e:
                    errors.append(e)
            if errors:
                raise errors[0]
        topics, channels = topic_names(n_topics), channel_names(n_channels)
        rep.line("admin", "creating %d topics x %d channels on %d nodes"
                 % (n_topics, n_channels, n_nodes))
        create_topics([n.http_address for n in nodes], topics, channels, parallel)
        wait_registered(lk.http_address, n_nodes, topics, n_channels)
    except BaseException:
        for node in nodes + [lk]:
            node.stop()
        raise
    cluster = Cluster(lk, nodes, topics, channels, time.monotonic() - t0)
    rep.line("admin", "cluster ready in %.1fs: lookupd %s, nodes %s" % (
        cluster.build_seconds, lk.http_address, " ".join(n.http_address for n in nodes)))
    return cluster


# ---------------------------------------------------------------- timing

@dataclass
class Timings:
    """Seconds per URL over every round of one nsqadmin; whether each page's HTML has data."""

    seconds: Dict[str, List[float]] = field(default_factory=dict)
    has_data: Dict[str, bool] = field(default_factory=dict)
    sizes: Dict[str, int] = field(default_factory=dict)

    def median(self, path: str) -> Optional[float]:
        vals = self.seconds.get(path)
        return statistics.median(vals) if vals else None


def time_get(addr: str, path: str) -> Tuple[float, bytes]:
    t0 = time.perf_counter()
    status, body = http_call(addr, "GET", path)
    elapsed = time.perf_counter() - t0
    if status != 200:
        raise BenchError("GET http://%s%s: status %d: %s" % (addr, path, status, body[:200]))
    return elapsed, body


def urls(topic: str) -> Dict[str, str]:
    """Row key -> path."""
    t = urllib.parse.quote(topic)
    return {"index": "/", "topic": "/topics/" + t, "api_topic": "/api/topics/" + t,
            "api_topics": "/api/topics"}


def time_admin(command: Sequence[str], lookupd_http: str, label: str, topic: str,
               requests: int, timings: Timings, rep: Reporter) -> None:
    """Start one nsqadmin, warm it up, time `requests` GETs per URL, stop it."""
    admin = BenchNode(command, ["--lookupd-http-address=" + lookupd_http], label=label,
                      listen=("HTTP",), data_path=False, start_timeout=60.0)
    try:
        addr = admin.http_address
        paths = urls(topic)
        for key, path in paths.items():  # warm-up, and does the HTML carry the data?
            _, body = time_get(addr, path)
            timings.has_data[key] = topic.encode() in body
            timings.sizes[key] = len(body)
        if not timings.has_data["api_topic"]:
            raise BenchError("%s: /api/topics/%s does not name the topic" % (label, topic))
        for _ in range(requests):
            for key, path in paths.items():
                elapsed, _ = time_get(addr, path)
                timings.seconds.setdefault(key, []).append(elapsed)
        admin.check_alive()
        rep.line("admin", "%s: / %.1fms, topic page %.1fms, /api/topics/%s %.1fms" % (
            label, 1e3 * timings.seconds["index"][-1], 1e3 * timings.seconds["topic"][-1], topic,
            1e3 * timings.seconds["api_topic"][-1]))
    finally:
        admin.stop()


def with_data(t: Timings, page: str, api: str) -> Optional[float]:
    """A page's time until its data is there: the HTML alone, or HTML + its API call."""
    html, call = t.median(page), t.median(api)
    if html is None or call is None:
        return None
    return html if t.has_data.get(page) else html + call


def rows(t: Timings) -> List[Tuple[str, Optional[float]]]:
    return [
        ("GET /", t.median("index")),
        ("GET /topics/:topic", t.median("topic")),
        ("GET /api/topics/:topic", t.median("api_topic")),
        ("GET /api/topics", t.median("api_topics")),
        ("topic list with its data", with_data(t, "index", "api_topics")),
        ("topic page with its data", with_data(t, "topic", "api_topic")),
    ]


def print_table(v: Dict[str, Any], cluster: Cluster, targets: List[Tuple[str, List[str]]],
                timings: Dict[str, Timings], out: TextIO) -> None:
    w = out.write
    w("nsq_bench admin: %s, %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), machine_line()))
    w("cluster: 1 nsqlookupd, %d nsqd x %d topics x %d channels (built in %.1fs); topic page: %s\n"
      % (len(cluster.nodes), len(cluster.topics), len(cluster.channels), cluster.build_seconds,
         v["_topic"]))
    w("median of %d requests per URL (%d rounds x %d), a new connection each\n"
      % (v["rounds"] * v["requests"], v["rounds"], v["requests"]))
    for name, command in targets:
        w("%-7s %s\n" % (name + ":", " ".join(command)))
    side = len(targets) > 1
    header = ["request", "ours ms"] + (["theirs ms", "ours/theirs"] if side else [])
    table = [header]
    ours_rows = rows(timings["ours"])
    theirs_rows = rows(timings["theirs"]) if side else []
    for i, (label, ours) in enumerate(ours_rows):
        cells = [label, "%.1f" % (1e3 * ours) if ours is not None else "-"]
        if side:
            theirs = theirs_rows[i][1]
            cells.append("%.1f" % (1e3 * theirs) if theirs is not None else "-")
            cells.append("%.2f" % (ours / theirs) if ours and theirs else "-")
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for cells in table:
        w("  ".join([cells[0].ljust(widths[0])] + [c.rjust(widths[j + 1])
                                                    for j, c in enumerate(cells[1:])]) + "\n")
    for name, _ in targets:
        t = timings[name]
        notes = ["%s %s" % (key, "has its data in the HTML" if t.has_data.get(key)
                            else "needs its API call") for key in ("index", "topic")]
        w("%s: %s; bytes: %s\n" % (name, ", ".join(notes), ", ".join(
            "%s %d" % (k, n) for k, n in t.sizes.items())))
    out.flush()


def bench_admin(v: Dict[str, Any], rep: Reporter, out: Optional[TextIO] = None
                ) -> Dict[str, Timings]:
    """Build the cluster, time ours (and --against) round by round, print the table."""
    out = out if out is not None else sys.stdout
    progress = Reporter(stream=sys.stderr)
    targets: List[Tuple[str, List[str]]] = [("ours", nsqadmin_command(v["nsqadmin_path"]))]
    if v["against"].strip():
        targets.append(("theirs", split_args(v["against"])))
    cluster = build_cluster(node_command(v["nsqd_path"]), split_args(v["nsqd_args"]),
                            lookupd_command(v["nsqlookupd_path"]), v["nodes"], v["topics"],
                            v["channels"], v["parallel"], progress)
    timings = {name: Timings() for name, _ in targets}
    try:
        topic = cluster.topics[len(cluster.topics) // 2]
        v = dict(v, _topic=topic)
        for r in range(v["rounds"]):
            for name, command in targets:
                progress.line("admin", "round %d/%d: %s" % (r + 1, v["rounds"], " ".join(command)))
                for node in cluster.nodes + [cluster.lookupd]:
                    node.check_alive()
                time_admin(command, cluster.lookupd.http_address, "nsqadmin-" + name, topic,
                           v["requests"], timings[name], progress)
    finally:
        cluster.stop()
    print_table(v, cluster, targets, timings, out)
    return timings
