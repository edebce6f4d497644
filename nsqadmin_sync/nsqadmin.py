"""NSQAdmin: the object that owns the listener, the HTTP client, the notifier and the trend sampler.

`main()` binds the HTTP socket first (so `HTTP: listening on` comes out at
once, with the real port when port 0 was asked for) and serves it in the
thread `nsqadmin-http`; `exit()` stops accepting, stops the sampler and the
notifier and joins every thread it started.  Options may be swapped at run
time (PUT /config/:opt); readers take `self.opts` once per request.
"""
from __future__ import annotations

import dataclasses
import logging
import secrets
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from nsqd_sync import logs
from nsqd_sync.addresses import format_address, split_host_port
from nsqd_sync.flags import default_hostname, version_line
from nsqd_sync.http_client import HTTPClient

from .clusterinfo import ClusterError, ClusterInfo
from .http_api import NSQAdminHTTPServer
from .notify import Notifier
from .options import Options
from .state import IndexSnapshot
from .trends import Trends

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.2  # how often serve_forever checks for shutdown


class ListenError(Exception):
    pass


def listen(address: str) -> socket.socket:
    """A listening TCP socket for `host:port` (empty host: every interface)."""
    try:
        host, port = split_host_port(address)
        infos = socket.getaddrinfo(host or None, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except (ValueError, OSError) as e:
        raise ListenError("listen (%s) failed - %s" % (address, e)) from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # prefer IPv4, as Go does
    last: Optional[OSError] = None
    for family, _, _, _, sockaddr in infos:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(socket.SOMAXCONN)
            return sock
        except OSError as e:
            sock.close()
            last = e
    raise ListenError("listen (%s) failed - %s" % (address, last))


class NSQAdmin:
    """One nsqadmin."""

    def __init__(self, opts: Options) -> None:
        self._opts = opts
        self._opts_lock = threading.Lock()  # serializes set_options
        self.hostname = default_hostname()
        self.csrf_secret = secrets.token_bytes(32)  # keys the pages' action token (actions.py)
        self.client = HTTPClient(opts.http_client_connect_timeout, opts.http_client_request_timeout,
                                 verify=opts.tls_verify, cert=opts.tls_cert)
        self.ci = ClusterInfo(self.client)
        self.notifier: Optional[Notifier] = None
        if opts.notification_http_endpoint:
            self.notifier = Notifier(opts.notification_http_endpoint, self.client)
        self.trends: Optional[Trends] = Trends(self._sample, opts.trend_interval)
        #: the latest pass's stats for `/`; None until a pass succeeds, after a failed pass
        #: and after an action through this nsqadmin (drop_snapshot)
        self.index_snapshot: Optional[IndexSnapshot] = None
        self._snapshot_generation = 0  # bumped by drop_snapshot: a pass begun before is not kept
        self.http_server: Any = None
        self.http_address = ""
        self._thread: Optional[threading.Thread] = None
        self._exited = False

    @property
    def opts(self) -> Options:
        return self._opts

    def set_options(self, **changes: Any) -> Options:
        """Swap in a copy of the options with `changes` (PUT /config/:opt)."""
        with self._opts_lock:
            self._opts = dataclasses.replace(self._opts, **changes)
            if "log_level" in changes:
                logs.set_level(self._opts.log_level_number)
            return self._opts

    @property
    def real_http_port(self) -> int:
        return self.http_server.server_address[1] if self.http_server is not None else 0

    def main(self) -> None:
        """Bind and start serving (returns once serving)."""
        log.info(version_line("nsqadmin"))
        sock = listen(self.opts.http_address)
        self.http_address = format_address(sock.getsockname())
        self.http_server = NSQAdminHTTPServer(sock, self)
        log.info("HTTP: listening on %s", self.http_address)
        self._thread = threading.Thread(target=self.http_server.serve_forever, args=(POLL_INTERVAL,),
                                        name="nsqadmin-http")
        self._thread.start()
        if self.notifier is not None:
            self.notifier.start()
        if self.trends is not None:
            self.trends.start()

    def exit(self, timeout: float = 5.0) -> None:
        if self._exited:
            return
        self._exited = True
        if self.http_server is not None:
            log.info("HTTP: closing %s", self.http_address)
            self.http_server.shutdown()
            if self._thread is not None:
                self._thread.join(timeout)
            self.http_server.server_close()
        if self.trends is not None:
            self.trends.stop(timeout)
        if self.notifier is not None:
            self.notifier.stop(timeout)
        self.ci.close()
        self.client.close()

    def drop_snapshot(self) -> None:
        """Forget the sampled stats (an action changed the cluster): `/` asks the nodes again."""
        self._snapshot_generation += 1
        self.index_snapshot = None

    def snapshot_max_age(self) -> float:
        """How old sampled stats may be for `/` to show them (two trend intervals)."""
        return 2 * self.opts.trend_interval

    def _sample(self) -> Dict[str, Tuple[int, int]]:
        """One trends pass: depth and message count per topic and topic:channel.

        The pass also keeps what it read as `index_snapshot`, so `/` need not
        read every node's whole /stats per request.
        """
        opts = self.opts
        taken = time.time()
        generation = self._snapshot_generation
        messages: List[str] = []
        try:
            names: Optional[List[str]] = []  # nsqd mode: the stats below name every topic
            if opts.lookupd_http_address:
                names, partial = self.ci.get_lookupd_topics(opts.lookupd_http_address)
                if partial is not None:
                    messages.append(str(partial))
            producers, partial = self.ci.get_producers(opts.lookupd_http_address, opts.nsqd_http_address)
            if partial is not None:
                messages.append(str(partial))
            node_stats: List[Tuple[Any, Dict[str, Any]]] = []
            if producers:
                node_stats, partial = self.ci.get_nsqd_stats_raw(producers)
                if partial is not None:
                    messages.append(str(partial))
        except ClusterError as e:
            log.debug("trends: %s", e)
            self.index_snapshot = None
            return {}
        if generation == self._snapshot_generation:
            self.index_snapshot = IndexSnapshot(taken, list(names or []), node_stats, messages)
        out: Dict[str, Tuple[int, int]] = {}
        for _, stats in node_stats:
            for t in stats.get("topics") or []:
                if not isinstance(t, dict):
                    continue
                name = str(t.get("topic_name", ""))
                depth, count = out.get(name, (0, 0))
                out[name] = (depth + _n(t.get("depth")), count + _n(t.get("message_count")))
                for c in t.get("channels") or []:
                    if isinstance(c, dict):
                        key = "%s:%s" % (name, c.get("channel_name", ""))
                        depth, count = out.get(key, (0, 0))
                        out[key] = (depth + _n(c.get("depth")), count + _n(c.get("message_count")))
        return out


def _n(value: Any) -> int:
    return value if type(value) is int else 0
