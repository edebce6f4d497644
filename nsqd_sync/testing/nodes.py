"""Running nodes with the helpers a test needs: publish, read /stats, wait for a depth.

`NSQDNode` and `LookupdNode` are `NodeProcess`es (child processes on
loopback port 0) that also talk to their node over its HTTP API;
`Cluster` is one nsqlookupd plus N nsqd registered with it.  The pytest
fixtures (`pytest_plugin.py`) and the `nsq_cluster` command build on these;
none of this imports pytest.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from .. import wire
from .process import NodeProcess, NodeStartError

#: default deadline of every wait_for_* helper, in seconds
WAIT_TIMEOUT = 10.0


def flag_args(**flags: Any) -> List[str]:
    """Keyword flags as Go-style arguments: `mem_queue_size=0` -> `--mem-queue-size=0`.

    True/False become `=true`/`=false`, a list or tuple repeats the flag,
    None leaves it out.
    """
    out: List[str] = []
    for key, value in flags.items():
        name = "--" + key.replace("_", "-")
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool):
                v = "true" if v else "false"
            out.append("%s=%s" % (name, v))
    return out


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT_TIMEOUT,
               interval: float = 0.02, message: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, message))
        time.sleep(interval)


def unique_name(base: str = "t", length: int = 40) -> str:
    """A valid, unique topic/channel name starting with `base` (cleaned to NSQ's characters)."""
    clean = "".join(c if c.isalnum() or c in "._-" else "_" for c in base)[: length - 9] or "t"
    return "%s-%s" % (clean, uuid.uuid4().hex[:8])


_http = None


def _client():
    """One HTTP client (the project's `requests` wrapper), made on first use."""
    global _http
    if _http is None:
        from ..http_client import HTTPClient

        _http = HTTPClient(connect_timeout=5.0, request_timeout=30.0)
        _http.session.trust_env = False  # local nodes: never through an HTTP_PROXY of the environment
    return _http


class _HTTPNode:
    """HTTP helpers shared by the node kinds (needs `http_address`)."""

    http_address: str

    def http_get(self, path: str, **params: Any) -> Any:
        """GET an endpoint and return its JSON (HTTPClientError on a non-2xx answer)."""
        return _client().get_json(self.http_address, path, **params)

    def http_post(self, path: str, data: bytes = b"", **params: Any) -> bytes:
        """POST to an endpoint; returns the body, raises HTTPClientError on a non-2xx answer."""
        from ..addresses import http_url
        from ..http_client import HTTPClientError

        resp = _client().request("POST", http_url(self.http_address, path), params=params or None,
                                 data=data)
        if not 200 <= resp.status_code < 300:
            raise HTTPClientError("POST %s - got response %d %s" % (path, resp.status_code,
                                                                    resp.text.strip()),
                                  status=resp.status_code, body=resp.content)
        return resp.content

    def ping(self) -> bool:
        """True when /ping answers 200 `OK`."""
        from ..addresses import http_url
        from ..http_client import HTTPClientError

        try:
            resp = _client().request("GET", http_url(self.http_address, "/ping"))
        except HTTPClientError:
            return False
        return resp.status_code == 200 and resp.content == b"OK"


class NSQDNode(NodeProcess, _HTTPNode):
    """An nsqd child process with `pub`, `mpub`, `stats`, `depth` and `wait_for_depth`."""

    def __init__(self, args: Sequence[str] = (), data_path: Optional[str] = None, **kw: Any) -> None:
        super().__init__("nsqd", args=args, data_path=data_path, **kw)

    def pub(self, topic: str, body: bytes) -> None:
        """Publish one message (HTTP /pub)."""
        self.http_post("/pub", _bytes(body), topic=topic)

    def mpub(self, topic: str, bodies: Iterable[bytes]) -> None:
        """Publish several messages at once (HTTP /mpub, binary: bodies may hold newlines)."""
        self.http_post("/mpub", wire.mpub_body([_bytes(b) for b in bodies]), topic=topic,
                       binary="true")

    def create_topic(self, topic: str) -> None:
        self.http_post("/topic/create", topic=topic)

    def create_channel(self, topic: str, channel: str) -> None:
        self.http_post("/channel/create", topic=topic, channel=channel)

    def delete_topic(self, topic: str) -> None:
        self.http_post("/topic/delete", topic=topic)

    def stats(self, topic: Optional[str] = None, channel: Optional[str] = None) -> Dict[str, Any]:
        """/stats?format=json (optionally for one topic / channel)."""
        params = {"format": "json"}
        if topic is not None:
            params["topic"] = topic
        if channel is not None:
            params["channel"] = channel
        return self.http_get("/stats", **params)

    def topic_names(self) -> List[str]:
        return [t["topic_name"] for t in self.stats().get("topics") or []]

    def depth(self, topic: str, channel: Optional[str] = None) -> int:
        """Messages queued (memory + disk) in a topic, or in one of its channels; 0 if absent."""
        for t in self.stats(topic=topic).get("topics") or []:
            if t["topic_name"] != topic:
                continue
            if channel is None:
                return int(t["depth"])
            for c in t.get("channels") or []:
                if c["channel_name"] == channel:
                    return int(c["depth"])
        return 0

    def wait_for_depth(self, topic: str, depth: int, channel: Optional[str] = None,
                       timeout: float = WAIT_TIMEOUT) -> None:
        """Poll until `depth(topic, channel) == depth`; AssertionError after `timeout` s."""
        seen: List[int] = []

        def reached() -> bool:
            seen.append(self.depth(topic, channel))
            return seen[-1] == depth

        where = topic if channel is None else "%s/%s" % (topic, channel)
        try:
            wait_until(reached, timeout, interval=0.05, message="depth %d of %s" % (depth, where))
        except AssertionError:
            raise AssertionError("depth of %s on %s is %s, not %d after %.1fs"
                                 % (where, self.tcp_address, seen[-1] if seen else "?", depth,
                                    timeout)) from None


class LookupdNode(NodeProcess, _HTTPNode):
    """An nsqlookupd child process with `lookup`, `producers` and `wait_for_producers`."""

    def __init__(self, args: Sequence[str] = (), **kw: Any) -> None:
        super().__init__("nsqlookupd", args=args, **kw)

    def producers(self) -> List[Dict[str, Any]]:
        """/nodes: every nsqd registered with this lookupd."""
        return self.http_get("/nodes").get("producers") or []

    def lookup(self, topic: str) -> List[str]:
        """TCP addresses (`broadcast_address:tcp_port`) of the nodes that have `topic`."""
        from ..http_client import HTTPClientError

        try:
            answer = self.http_get("/lookup", topic=topic)
        except HTTPClientError as e:
            if e.status == 404:
                return []
            raise
        return sorted("%s:%d" % (p["broadcast_address"], p["tcp_port"])
                      for p in answer.get("producers") or [])

    def wait_for_producers(self, count: int, topic: Optional[str] = None,
                           timeout: float = WAIT_TIMEOUT) -> None:
        """Until `count` nodes are registered (with `topic`, if given)."""
        if topic is None:
            wait_until(lambda: len(self.producers()) >= count, timeout,
                       message="%d nodes registered with nsqlookupd" % count)
        else:
            wait_until(lambda: len(self.lookup(topic)) >= count, timeout,
                       message="%d nodes with topic %s in nsqlookupd" % (count, topic))


class Cluster:
    """One nsqlookupd and N nsqd registered with it (all on loopback port 0)."""

    def __init__(self, lookupd: LookupdNode, nodes: List[NSQDNode]) -> None:
        self.lookupd = lookupd
        self.nodes = nodes

    @property
    def lookupd_tcp_address(self) -> str:
        return self.lookupd.tcp_address

    @property
    def lookupd_http_address(self) -> str:
        return self.lookupd.http_address

    @property
    def nsqd_tcp_addresses(self) -> List[str]:
        return [n.tcp_address for n in self.nodes]

    @property
    def nsqd_http_addresses(self) -> List[str]:
        return [n.http_address for n in self.nodes]

    def lookup(self, topic: str) -> List[str]:
        return self.lookupd.lookup(topic)

    def wait_for_producers(self, topic: str, count: Optional[int] = None,
                           timeout: float = WAIT_TIMEOUT) -> None:
        """Until lookupd lists `count` (default: every) node for `topic`."""
        self.lookupd.wait_for_producers(len(self.nodes) if count is None else count, topic,
                                        timeout)

    def processes(self) -> List[NodeProcess]:
        return [self.lookupd, *self.nodes]


def start_cluster(nodes: int = 2, data_path: Callable[[int], str] = None,
                  nsqd_args: Sequence[str] = (), lookupd_args: Sequence[str] = (),
                  start_timeout: float = 30.0) -> Cluster:
    """Start nsqlookupd, then `nodes` nsqd in parallel, and wait until all are registered.

    `data_path(i)` gives node i's (1-based) data directory.  On any failure
    every process already started is killed before the error is raised.
    """
    lookupd = LookupdNode(lookupd_args, start_timeout=start_timeout)
    started: List[NSQDNode] = []
    try:
        for i in range(1, nodes + 1):
            args = ["--lookupd-tcp-address=" + lookupd.tcp_address, "--node-id=%d" % i,
                    "--broadcast-address=127.0.0.1", *nsqd_args]
            started.append(NSQDNode(args, data_path=data_path(i) if data_path else None,
                                    start_timeout=start_timeout, wait=False))
        for node in started:
            node.wait_started()
        cluster = Cluster(lookupd, started)
        lookupd.wait_for_producers(nodes, timeout=start_timeout)
        return cluster
    except BaseException:
        for proc in [*started, lookupd]:
            proc.kill()
        raise


class TopicScope:
    """A per-test view of a shared node or cluster: topic names carry the test's prefix.

    Every attribute of the node (or cluster) is available on the view;
    `topic("orders")` is `<prefix>orders`.  `cleanup()` deletes the topics
    with this prefix from every nsqd, so the next test starts clean.
    """

    def __init__(self, target: Any, prefix: str) -> None:
        self._target = target
        self.prefix = prefix

    def topic(self, name: str = "topic") -> str:
        full = self.prefix + name
        if not wire.is_valid_name(full):
            raise ValueError("%r is not a valid topic name (the prefix takes %d of the 64 "
                             "characters)" % (full, len(self.prefix)))
        return full

    def _nsqds(self) -> List[NSQDNode]:
        return list(self._target.nodes) if isinstance(self._target, Cluster) else [self._target]

    def topic_names(self) -> List[str]:
        """This test's topics on the node (on every node of a cluster)."""
        names = set()
        for node in self._nsqds():
            names.update(t for t in node.topic_names() if t.startswith(self.prefix))
        return sorted(names)

    def cleanup(self) -> None:
        from ..http_client import HTTPClientError

        for node in self._nsqds():
            if not node.alive():
                continue
            for name in node.topic_names():
                if name.startswith(self.prefix):
                    try:
                        node.delete_topic(name)
                    except HTTPClientError as e:
                        if e.status != 404:
                            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def __repr__(self) -> str:
        return "<TopicScope %r of %r>" % (self.prefix, self._target)


def _bytes(body: Any) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


__all__ = ["NSQDNode", "LookupdNode", "Cluster", "start_cluster", "flag_args", "wait_until",
           "unique_name", "TopicScope", "NodeStartError", "WAIT_TIMEOUT"]
