"""A test cluster for nsqadmin: one nsqlookupd, two nsqd registered with it, nsqadmin(s) over them.

Also a small HTTP server that records the notifications nsqadmin POSTs.
Every process and thread here is stopped by the fixture that made it.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Sequence

import requests

from tests.helpers import NodeProcess, wait_for


class NotificationSink:
    """Records the JSON bodies POSTed to it (a stand-in for a notification endpoint)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: List[Dict[str, Any]] = []
        self.headers: List[Dict[str, str]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    sink.received.append(json.loads(body))
                    sink.headers.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/notify" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.1,),
                                       name="test-notification-sink", daemon=True)
        self.thread.start()

    def actions(self) -> List[Dict[str, Any]]:
        with self.lock:
            return list(self.received)

    def wait_for_action(self, action: str, topic: str, timeout: float = 10.0) -> Dict[str, Any]:
        def find() -> Optional[Dict[str, Any]]:
            for doc in self.actions():
                if doc["action"] == action and doc["topic"] == topic:
                    return doc
            return None

        return wait_for(find, timeout, message="%s notification for %s" % (action, topic))  # type: ignore

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class Cluster:
    """nsqlookupd + two nsqd (broadcasting 127.0.0.1) on ephemeral loopback ports."""

    def __init__(self, tmp_path_factory: Any) -> None:
        self.processes: List[NodeProcess] = []
        self.lookupd = self._start("nsqlookupd")
        self.nodes = [self._start("nsqd", ["--lookupd-tcp-address=" + self.lookupd.tcp_address,
                                           "--broadcast-address=127.0.0.1"],
                                  data_path=str(tmp_path_factory.mktemp("adm-nsqd")))
                      for _ in range(2)]

    def _start(self, name: str, args: Sequence[str] = (), **kw: Any) -> NodeProcess:
        node = NodeProcess(name, args, **kw)
        self.processes.append(node)
        return node

    def admin(self, *args: str, lookupd: bool = True) -> NodeProcess:
        """Start an nsqadmin over the cluster (stopped with the cluster)."""
        source = (["--lookupd-http-address=" + self.lookupd.http_address] if lookupd else
                  ["--nsqd-http-address=" + n.http_address for n in self.nodes])
        return self._start("nsqadmin", list(source) + list(args), tcp=None)

    def node_topic(self, node: NodeProcess, topic: str) -> Optional[Dict[str, Any]]:
        """The topic in the node's own /stats (None if it does not have it)."""
        stats = requests.get("http://%s/stats?format=json&topic=%s" % (node.http_address, topic),
                             timeout=5).json()
        for t in stats.get("topics") or []:
            if t["topic_name"] == topic:
                return t
        return None

    def node_channel(self, node: NodeProcess, topic: str, channel: str) -> Optional[Dict[str, Any]]:
        t = self.node_topic(node, topic)
        for c in (t or {}).get("channels") or []:
            if c["channel_name"] == channel:
                return c
        return None

    def make_topic(self, topic: str, channels: Sequence[str] = (), messages: int = 0) -> None:
        """Create the topic (and channels) on both nodes, publish `messages` to each, wait for lookupd."""
        for node in self.nodes:
            base = "http://%s" % node.http_address
            assert requests.post(base + "/topic/create", params={"topic": topic}, timeout=5).status_code == 200
            for ch in channels:
                r = requests.post(base + "/channel/create", params={"topic": topic, "channel": ch}, timeout=5)
                assert r.status_code == 200
            for i in range(messages):
                assert requests.post(base + "/pub", params={"topic": topic}, data=b"m%d" % i,
                                     timeout=5).status_code == 200

        def registered() -> bool:
            doc = requests.get("http://%s/lookup" % self.lookupd.http_address, params={"topic": topic},
                               timeout=5)
            if doc.status_code != 200:
                return False
            body = doc.json()
            return len(body.get("producers") or []) == 2 and set(channels) <= set(body.get("channels") or [])

        wait_for(registered, 15, message="lookupd to know %s on both nodes" % topic)

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.kill()


def admin_url(admin: NodeProcess, path: str) -> str:
    return "http://%s%s" % (admin.http_address, path)
