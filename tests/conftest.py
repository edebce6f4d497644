"""Shared fixtures: real nodes on ephemeral loopback ports and raw V2 connections.

* `nsqd`, `nsqd_factory(*args, data_path=None, **flags)`, `nsqlookupd` and
  `nsq_cluster` come from the package's pytest plugin
  (`nsqd_sync/testing/pytest_plugin.py`, loaded through its `pytest11` entry
  point once the package is installed): nodes stopped with SIGTERM at
  teardown, and the test fails if a node does not exit.
* `nsqd_on_data_dir(*args)` starts nsqd nodes that all share one data dir
  (`.data_path`), for restart tests.
* `start_node(kind, args)` starts nsqd/nsqlookupd nodes for cluster tests,
  `start_nsqd(name, args)` nsqd nodes on a data dir per name, `consumers(...)`
  client Consumers; nodes are killed and consumers stopped at teardown.
* `shared_nsqd` is one default node for a whole test module; tests that use
  it must use their own topic names (the `topic` fixture makes one).
* `conns(node_or_port, ...)` opens a `ProtoConn` (a `tests.helpers.CommandConn`
  with a few protocol helpers); all are closed at teardown.

Every wait is bounded: frames are read with socket timeouts and the
"nothing arrives" checks (`assert_silent`) take an explicit duration.
"""
from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
import time
import uuid
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import pytest

from nsqd_sync import wire
from nsqd_sync.client import Consumer
from tests.helpers import CommandConn, NodeProcess

ALIVE_TOPIC = "nsq_sync_alive_check"


def pytest_addoption(parser) -> None:
    parser.addoption("--reliability-long", action="store_true", default=False,
                     help="run tests/reliability at full length (more rounds, frames, clients)")


def pytest_configure(config: pytest.Config) -> None:
    """Load the package's plugin if its entry point did not (a checkout run without install)."""
    from nsqd_sync.testing import pytest_plugin

    if not config.pluginmanager.is_registered(pytest_plugin):
        config.pluginmanager.register(pytest_plugin, "nsq_sync")


class Msg(NamedTuple):
    timestamp: int
    attempts: int
    id: bytes
    body: bytes


class ProtoConn(CommandConn):
    """A raw V2 connection with helpers that assert NSQ's answers."""

    # ------------------------------------------------------------ reading

    def frame(self) -> Tuple[int, bytes]:
        """One whole frame; a timeout part-way leaves the buffer intact."""
        self._fill(8)
        size, ftype = struct.unpack_from(">ii", self.buf)
        self._fill(4 + size)
        data = self.buf[8:4 + size]
        self.buf = self.buf[4 + size:]
        return ftype, data

    def next_frame(self, timeout: Optional[float] = None) -> Tuple[int, bytes]:
        """The next frame that is not a heartbeat (heartbeats are not answered)."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        return self.frame_skip_heartbeats()

    def expect(self, frame_type: int, data: bytes) -> None:
        got = self.next_frame()
        assert got == (frame_type, data), "expected %r, got %r" % ((frame_type, data), got)

    def expect_ok(self) -> None:
        self.expect(wire.FRAME_TYPE_RESPONSE, wire.OK)

    def expect_error(self, text: str, fatal: bool = True) -> None:
        """The next frame is exactly this error; a fatal one is followed by the close."""
        got = self.next_frame()
        want = (wire.FRAME_TYPE_ERROR, text.encode("utf-8") if isinstance(text, str) else text)
        assert got == want, "expected %r, got %r" % (want, got)
        if fatal:
            self.assert_closed()
        else:
            self.assert_alive()

    def assert_closed(self, timeout: float = 5.0) -> None:
        """The server closes the connection, sending nothing but heartbeats first."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "connection still open after %.1fs" % timeout
            self.sock.settimeout(remaining)
            try:
                ft, data = self.frame()
            except (EOFError, ConnectionResetError, BrokenPipeError):
                return
            except socket.timeout:
                raise AssertionError("connection still open after %.1fs" % timeout) from None
            assert (ft, data) == (wire.FRAME_TYPE_RESPONSE, wire.HEARTBEAT), \
                "unexpected frame before close: %r" % ((ft, data),)

    def assert_alive(self) -> None:
        """The connection still runs commands: a PUB on it is answered OK."""
        self.pub(ALIVE_TOPIC, b"alive")

    def assert_silent(self, seconds: float) -> None:
        """No frame other than a heartbeat arrives for `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.sock.settimeout(remaining)
            try:
                ft, data = self.frame()
            except socket.timeout:
                return
            assert (ft, data) == (wire.FRAME_TYPE_RESPONSE, wire.HEARTBEAT), \
                "expected nothing for %.1fs, got %r" % (seconds, (ft, data))

    def message(self, timeout: float = 5.0) -> Msg:  # type: ignore[override]
        ft, data = self.next_frame(timeout)
        assert ft == wire.FRAME_TYPE_MESSAGE, "expected a message, got %r" % ((ft, data),)
        return Msg(*wire.decode_message(data))

    def messages(self, n: int, timeout: float = 5.0) -> List[Msg]:
        return [self.message(timeout) for _ in range(n)]

    # ------------------------------------------------------------ commands

    def identify(self, **fields) -> dict:  # type: ignore[override]
        """IDENTIFY with feature negotiation; returns the server's JSON answer."""
        self.send("IDENTIFY", json.dumps(dict(fields, feature_negotiation=True)).encode())
        ft, data = self.next_frame()
        assert ft == wire.FRAME_TYPE_RESPONSE, (ft, data)
        return json.loads(data)

    # pub, mpub and dpub come from CommandConn (they call expect_ok above)

    def sub(self, topic: str, channel: str, rdy: Optional[int] = None) -> None:
        self.send("SUB %s %s" % (topic, channel))
        self.expect_ok()
        if rdy is not None:
            self.rdy(rdy)

    def rdy(self, count: int) -> None:
        self.send("RDY %d" % count)

    def fin(self, msg_id: bytes) -> None:
        self.send("FIN " + msg_id.decode())

    def req(self, msg_id: bytes, delay_ms: int = 0) -> None:
        self.send("REQ %s %d" % (msg_id.decode(), delay_ms))

    def touch(self, msg_id: bytes) -> None:
        self.send("TOUCH " + msg_id.decode())


def body_frame(data: bytes) -> bytes:
    """int32 size + data, as after IDENTIFY/PUB/MPUB/DPUB/AUTH."""
    return struct.pack(">i", len(data)) + data


def _stop_all(nodes: Sequence[NodeProcess]) -> None:
    problems = []
    for node in nodes:
        try:
            node.stop()
        except AssertionError as e:
            problems.append(str(e))
    assert not problems, problems


@pytest.fixture
def nsqd_on_data_dir(tmp_path) -> Iterator[Callable[..., NodeProcess]]:
    """start(*args, data_path=default dir) -> a running nsqd; all stopped at teardown.

    Unlike the plugin's `nsqd_factory`, every node gets the same default data dir
    (`nsqd_on_data_dir.data_path`), so starting again restarts on what the
    previous node left.
    """
    nodes: List[NodeProcess] = []
    default_dir = str(tmp_path / "data")
    os.makedirs(default_dir, exist_ok=True)

    def _start(*args: str, data_path: Optional[str] = None) -> NodeProcess:
        node = NodeProcess("nsqd", data_path=data_path or default_dir, args=list(args))
        nodes.append(node)
        return node

    _start.data_path = default_dir  # type: ignore[attr-defined]
    try:
        yield _start
    finally:
        _stop_all(nodes)


@pytest.fixture(scope="module")
def shared_nsqd(tmp_path_factory) -> Iterator[NodeProcess]:
    """One nsqd with default options shared by a test module (use unique topics)."""
    node = NodeProcess("nsqd", data_path=str(tmp_path_factory.mktemp("shared-nsqd")))
    try:
        yield node
    finally:
        _stop_all([node])


@pytest.fixture
def start_node(tmp_path) -> Iterator[Callable[..., NodeProcess]]:
    """start(kind, args=(), **NodeProcess kwargs) -> an nsqd or nsqlookupd; all killed at teardown.

    Each nsqd gets its own data dir (nsqd1, nsqd2, ...); safe to call from
    another thread.
    """
    nodes: List[NodeProcess] = []
    lock = threading.Lock()
    counter = [0]

    def start(kind: str, args=(), **kw) -> NodeProcess:
        data = None
        if kind == "nsqd":
            with lock:
                counter[0] += 1
                n = counter[0]
            d = tmp_path / ("nsqd%d" % n)
            d.mkdir()
            data = str(d)
        node = NodeProcess(kind, args=list(args), data_path=data, **kw)
        with lock:
            nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.kill()


@pytest.fixture
def start_nsqd(tmp_path) -> Iterator[Callable[..., NodeProcess]]:
    """start(name="nsqd", args=(), **NodeProcess kwargs) -> an nsqd on data dir `name`; all killed at teardown."""
    nodes = []

    def start(name: str = "nsqd", args=(), **kw) -> NodeProcess:
        data = tmp_path / name
        data.mkdir(exist_ok=True)
        node = NodeProcess("nsqd", args=args, data_path=str(data), **kw)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.kill()


@pytest.fixture
def consumers() -> Iterator[Callable[..., Consumer]]:
    """make(*Consumer args) -> a nsqd_sync.client.Consumer; all stopped at teardown."""
    made = []

    def make(*args, **kw) -> Consumer:
        c = Consumer(*args, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop(timeout=2.0)


@pytest.fixture
def conns() -> Iterator[Callable[..., ProtoConn]]:
    """open(node_or_port, **RawConn kwargs) -> ProtoConn; all closed at teardown."""
    made: List[ProtoConn] = []

    def open_(target, **kw) -> ProtoConn:
        port = target.tcp_port if isinstance(target, NodeProcess) else int(target)
        conn = ProtoConn(port, **kw)
        made.append(conn)
        return conn

    try:
        yield open_
    finally:
        for conn in made:
            try:
                conn.close()
            except OSError:
                pass


_NAME_JUNK = re.compile(r"[^.a-zA-Z0-9_-]+")


@pytest.fixture
def topic(request) -> str:
    """A valid topic name unique to this test (readable in server logs)."""
    base = _NAME_JUNK.sub("_", request.node.name.replace("test_", "", 1))[:40]
    return "%s-%s" % (base, uuid.uuid4().hex[:8])
