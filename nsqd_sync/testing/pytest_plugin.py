"""pytest fixtures that give every test a real NSQ: `pip install nsq-sync` is all it takes.

Registered through the `pytest11` entry point (setup.cfg), so pytest loads it
in any project where the package is installed.  This is the only module of
the package that imports pytest, and only pytest imports it.

Fixtures (nodes are child processes on loopback port 0, data in a temporary
directory; all stopped with SIGTERM at teardown, even when the test fails):

* `nsqd` -- one node for this test; `@pytest.mark.nsqd(mem_queue_size=0)`
  passes flags to it.
* `nsqd_factory(*args, data_path=None, **flags)` -- more nodes, each with
  its own flags (`tls_cert=...`, `auth_http_address=...`, or raw
  `"--flag=value"` arguments).
* `nsqlookupd` -- one nsqlookupd for this test.
* `nsq_cluster` -- one nsqlookupd and N nsqd registered with it (N = 2, or
  `@pytest.mark.nsq_cluster(nodes=3, **flags)`); `nsq_cluster_factory(nodes,
  *args, **flags)` for more.
* `nsqd_session` / `nsq_cluster_session` -- one node / cluster for the whole
  session, seen through a per-test `TopicScope`: `nsqd_session.topic("orders")`
  is a name no other test uses, and the test's topics are deleted after it.
* `nsq_topic` -- a topic name unique to this test.

When a test fails, the last log lines of its nodes are added to the report.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional

import pytest

from .nodes import Cluster, LookupdNode, NSQDNode, TopicScope, flag_args, start_cluster, unique_name
from .process import NodeProcess, stop_all

#: seconds a node may take to log its addresses (generous: CI machines are busy)
START_TIMEOUT = 30.0
#: seconds a node may take to exit after SIGTERM before the teardown fails
STOP_TIMEOUT = 15.0
#: log lines of each node shown in a failed test's report
REPORT_LINES = 40

_NODES_KEY = pytest.StashKey[List[NodeProcess]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "nsqd(*args, **flags): command-line flags for the `nsqd` fixture's node, "
                   "e.g. nsqd(mem_queue_size=0)")
    config.addinivalue_line(
        "markers", "nsq_cluster(nodes=2, *args, **flags): size of the `nsq_cluster` fixture "
                   "and flags for each of its nsqd")


def _track(request: pytest.FixtureRequest, procs: List[NodeProcess]) -> None:
    """Remember a test's nodes, for the logs in its failure report."""
    item = request.node
    if isinstance(item, pytest.Item):
        item.stash.setdefault(_NODES_KEY, []).extend(procs)


def _stop(procs: List[NodeProcess]) -> None:
    """Stop every process; a node that needed SIGKILL fails the teardown (it is a bug)."""
    killed = stop_all(procs, STOP_TIMEOUT)
    if killed:
        raise AssertionError("did not exit within %ss of SIGTERM (killed): %s"
                             % (STOP_TIMEOUT, ", ".join(repr(p) for p in killed)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for proc in item.stash.get(_NODES_KEY, []):
            lines = proc.log_text().splitlines()[-REPORT_LINES:]
            report.sections.append(("%s pid %d log" % (proc.name, proc.pid), "\n".join(lines)))


# ---------------------------------------------------------------- nsqd


@pytest.fixture
def nsqd_factory(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., NSQDNode]]:
    """start(*args, data_path=None, **flags) -> a running NSQDNode; all stopped at teardown."""
    nodes: List[NodeProcess] = []

    def start(*args: Any, data_path: Optional[str] = None, **flags: Any) -> NSQDNode:
        if data_path is None:
            data_path = str(tmp_path_factory.mktemp("nsqd"))
        node = NSQDNode([str(a) for a in args] + flag_args(**flags), data_path=data_path,
                        start_timeout=START_TIMEOUT)
        nodes.append(node)
        _track(request, [node])
        return node

    try:
        yield start
    finally:
        _stop(nodes)


@pytest.fixture
def nsqd(request: pytest.FixtureRequest, nsqd_factory: Callable[..., NSQDNode]) -> NSQDNode:
    """One nsqd for this test (flags from `@pytest.mark.nsqd(...)`)."""
    marker = request.node.get_closest_marker("nsqd")
    if marker is None:
        return nsqd_factory()
    return nsqd_factory(*marker.args, **marker.kwargs)


@pytest.fixture
def nsqlookupd(request: pytest.FixtureRequest) -> Iterator[LookupdNode]:
    """One nsqlookupd for this test."""
    node = LookupdNode(start_timeout=START_TIMEOUT)
    _track(request, [node])
    try:
        yield node
    finally:
        _stop([node])


# ---------------------------------------------------------------- clusters


@pytest.fixture
def nsq_cluster_factory(request: pytest.FixtureRequest,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Cluster]]:
    """start(nodes=2, *args, **flags) -> a running Cluster; all stopped at teardown."""
    clusters: List[Cluster] = []

    def start(nodes: int = 2, *args: Any, **flags: Any) -> Cluster:
        base = tmp_path_factory.mktemp("nsq_cluster")
        cluster = start_cluster(nodes, data_path=lambda i: str(base / ("nsqd%d" % i)),
                                nsqd_args=[str(a) for a in args] + flag_args(**flags),
                                start_timeout=START_TIMEOUT)
        clusters.append(cluster)
        _track(request, cluster.processes())
        return cluster

    try:
        yield start
    finally:
        _stop([p for c in clusters for p in reversed(c.processes())])


@pytest.fixture
def nsq_cluster(request: pytest.FixtureRequest,
                nsq_cluster_factory: Callable[..., Cluster]) -> Cluster:
    """nsqlookupd + N nsqd registered with it (`@pytest.mark.nsq_cluster(nodes=N, **flags)`)."""
    marker = request.node.get_closest_marker("nsq_cluster")
    if marker is None:
        return nsq_cluster_factory()
    return nsq_cluster_factory(*marker.args, **marker.kwargs)


# ---------------------------------------------------------------- one node for the session


def _prefix(request: pytest.FixtureRequest) -> str:
    return unique_name(request.node.name.replace("test_", "", 1)[:16], 26) + "."


@pytest.fixture(scope="session")
def nsqd_session_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NSQDNode]:
    """One nsqd shared by every test of the session (use `nsqd_session` in tests)."""
    node = NSQDNode(data_path=str(tmp_path_factory.mktemp("nsqd-session")),
                    start_timeout=START_TIMEOUT)
    try:
        yield node
    finally:
        _stop([node])


@pytest.fixture
def nsqd_session(request: pytest.FixtureRequest, nsqd_session_node: NSQDNode) -> Iterator[TopicScope]:
    """The session's nsqd, with this test's topic prefix: `nsqd_session.topic("orders")`."""
    scope = TopicScope(nsqd_session_node, _prefix(request))
    try:
        yield scope
    finally:
        scope.cleanup()


@pytest.fixture(scope="session")
def nsq_cluster_session_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One two-node cluster shared by every test of the session (use `nsq_cluster_session`)."""
    base = tmp_path_factory.mktemp("nsq_cluster-session")
    cluster = start_cluster(2, data_path=lambda i: str(base / ("nsqd%d" % i)),
                            start_timeout=START_TIMEOUT)
    try:
        yield cluster
    finally:
        _stop(list(reversed(cluster.processes())))


@pytest.fixture
def nsq_cluster_session(request: pytest.FixtureRequest,
                        nsq_cluster_session_cluster: Cluster) -> Iterator[TopicScope]:
    """The session's cluster, with this test's topic prefix."""
    scope = TopicScope(nsq_cluster_session_cluster, _prefix(request))
    try:
        yield scope
    finally:
        scope.cleanup()


@pytest.fixture
def nsq_topic(request: pytest.FixtureRequest) -> str:
    """A valid topic name unique to this test (readable in node logs)."""
    return unique_name(request.node.name.replace("test_", "", 1)[:30])
