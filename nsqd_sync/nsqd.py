"""NSQD: the node. Owns the topics, the listeners, the metadata file and shutdown.

Start-up binds the TCP and HTTP sockets first (so harnesses that connect
~300 ms after spawning us find them), logs `TCP: listening on ...` and
`HTTP: listening on ...`, loads `nsqd.dat` and then serves until SIGTERM or
SIGINT.  Exit stops the listeners, closes every client, writes every message
still in memory (queued, in flight, deferred) to the diskqueues, and
rewrites the metadata.

Lock order: `NSQD.lock` (topics map, metadata) -> topic -> channel -> backend.
"""
from __future__ import annotations

import errno
import gc
import fcntl
import itertools
import json
import logging
import os
import struct
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import NSQ_VERSION, __version__, metadata, signals, wire
from .auth import AuthError, AuthState, query_any as query_auth, response_body as auth_response_body
from .addresses import format_address
from .backend import DummyBackend
from .client_v2 import ClientV2
from .errors import ExitingError, fatal, go_quote
from .options import Options, split_address
from .topic import Topic
from .transport import snappy_available

log = logging.getLogger(__name__)

_MSG_HEAD = struct.Struct(">qH")
METADATA_FILE = "nsqd.dat"


class NullLatency:
    """End-to-end latency tracking when no percentiles are configured."""

    enabled = False

    def record_many(self, msgs: Sequence[bytes]) -> None:
        pass

    def stats(self) -> Optional[dict]:
        return None


class NSQD:
    """One nsqd node."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.lock = threading.RLock()
        self.topics: Dict[str, Topic] = {}
        self.start_time = time.time()
        self.exit_event = threading.Event()
        self._exited = False
        self._loading = False
        self._client_ids = itertools.count(1)
        self._clients: Dict[int, ClientV2] = {}
        self._clients_lock = threading.Lock()
        self._clients_gone = threading.Condition(self._clients_lock)  # a client was removed
        self._dir_lock_fd: Optional[int] = None
        self.health_error: Optional[str] = None
        self.tcp_server = None
        self.http_server = None
        self.tcp_address: Tuple[str, int] = ("", 0)
        self.http_address: Tuple[str, int] = ("", 0)
        self._threads: List[threading.Thread] = []
        self.change_listeners: List[Callable[..., None]] = []
        self.lookup = None  # lookup.Lookup once lookupd addresses are known
        self.tls_context = None  # ssl.SSLContext with --tls-cert/--tls-key (tls.py)
        self.https_server = None
        self.https_address: Tuple[str, int] = ("", 0)
        self.statsd = None  # statsd.StatsdPusher with --statsd-address

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Bind the listeners, load metadata, start serving (returns at once)."""
        from .http_api import NSQDHTTPServer
        from .tcp import NSQDTCPServer

        opts = self.opts
        tls = None
        if opts.tls_cert or opts.tls_key or opts.tls_client_auth_policy:
            from . import tls

            tls.apply_policy(opts)
            self.tls_context = tls.build_server_context(opts)
        if self.tls_context is None and opts.tls_required:
            raise RuntimeError("cannot require TLS client connections without TLS key and cert")
        data_dir = opts.data_dir
        os.makedirs(data_dir, exist_ok=True)
        self._lock_data_dir(data_dir)
        self.tcp_server = NSQDTCPServer(split_address(opts.tcp_address, "tcp-address"), self)
        self.http_server = NSQDHTTPServer(split_address(opts.http_address, "http-address"), self)
        self.tcp_address = self.tcp_server.server_address[:2]
        self.http_address = self.http_server.server_address[:2]
        if tls is not None and self.tls_context is not None and opts.https_address:
            self.https_server = tls.make_https_server(split_address(opts.https_address, "https-address"),
                                                      self, self.tls_context)
            self.https_address = self.https_server.server_address[:2]
        if tls is not None and opts.tls_required is True:  # not "tcp-https": plain HTTP answers 403
            tls.require_tls_on(self.http_server, self)
        log.info("nsqd v%s (built w/%s)", __version__, _runtime())
        log.info("ID: %d", opts.node_id)
        log.info("TCP: listening on %s", format_address(self.tcp_address))
        log.info("HTTP: listening on %s", format_address(self.http_address))
        if self.https_server is not None:
            log.info("HTTPS: listening on %s", format_address(self.https_address))
        # topics and channels come back before the first client is accepted (connections
        # wait in the listen backlog), so an early PUB reaches every restored channel
        self.load_metadata()
        self.persist_metadata()
        self._serve(self.tcp_server, "nsqd-tcp-accept")
        self._serve(self.http_server, "nsqd-http-accept")
        if self.https_server is not None:
            self._serve(self.https_server, "nsqd-https-accept")
        if opts.lookupd_tcp_addresses:
            self.on_lookupd_addresses_changed(opts.lookupd_tcp_addresses)
        if opts.statsd_address:
            from .statsd import StatsdPusher

            self.statsd = StatsdPusher(self)
            self.statsd.start()

    def _serve(self, server, name: str) -> None:
        t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def main(self) -> None:
        """Run until SIGTERM/SIGINT, then exit cleanly.

        The signals are blocked before the first thread starts (every thread
        inherits the mask) and received here with sigwait: no Python signal
        handler runs, so none can deadlock on a lock the main thread holds.
        SIGQUIT/SIGUSR1 log a thread dump and the node carries on.
        """
        signals.block_signals()
        self.start()
        _tune_runtime()
        try:
            signals.wait_for_signal(signals.exit_or_dump(log))
        finally:
            self.exit()

    def exit(self) -> None:
        """Stop listeners and clients, flush memory to disk, write metadata."""
        with self.lock:
            if self._exited:
                return
            self._exited = True
        self.exit_event.set()
        if self.statsd is not None:
            self.statsd.stop()
        for server in (self.tcp_server, self.http_server, self.https_server):
            if server is not None:
                server.shutdown()
                server.server_close()
        self._close_clients()
        for listener in list(self.change_listeners):
            stop = getattr(listener, "stop", None)
            if stop is not None:
                stop()
        with self.lock:
            self.persist_metadata()
            topics = list(self.topics.values())
        for topic in topics:
            try:
                topic.close(flush=True)
            except Exception:  # noqa: BLE001 - one topic's failure must not cost the others their data
                log.exception("TOPIC(%s): failed to close", topic.name)
        from .diskqueue import stop_sync_thread

        stop_sync_thread()
        for t in self._threads:
            t.join(2.0)
        self._unlock_data_dir()
        log.info("NSQ: bye")

    def _close_clients(self, timeout: float = 5.0) -> None:
        """Close every client connection and wait for its handler to finish, before the flush.

        As NSQ's Exit (tcpServer.Close before the topics close): a command
        being handled finishes first (its message is stored, or the publisher
        gets E_PUB_FAILED), and a consumer's in-flight messages go back to
        their channel, so the flush that follows writes them.
        """
        for client in self.client_list():
            client.close_connection()
        with self._clients_lock:
            if not self._clients_gone.wait_for(lambda: not self._clients, timeout):
                log.warning("NSQ: %d clients still closing after %.0fs", len(self._clients), timeout)

    def _lock_data_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise RuntimeError("failed to lock data-path: %s is in use by another nsqd (%s)"
                               % (path, os.strerror(e.errno or errno.EWOULDBLOCK))) from None
        self._dir_lock_fd = fd

    def _unlock_data_dir(self) -> None:
        if self._dir_lock_fd is not None:
            os.close(self._dir_lock_fd)
            self._dir_lock_fd = None

    # ------------------------------------------------------------ lookupd (lookup.py)

    def on_lookupd_addresses_changed(self, addresses: Sequence[str]) -> None:
        """Register with exactly these lookupds from now on (start-up, PUT /config/nsqlookupd_tcp_addresses)."""
        from .lookup import Lookup

        with self.lock:
            if self._exited:
                return
            self.opts.lookupd_tcp_addresses = list(addresses)
            if self.lookup is None:
                self.lookup = Lookup(self)
                self.change_listeners.append(self.lookup)
            lookup = self.lookup
        lookup.set_addresses(addresses)

    # ------------------------------------------------------------ clients

    def next_client_id(self) -> int:
        return next(self._client_ids)

    def add_client(self, client: ClientV2) -> None:
        with self._clients_lock:
            self._clients[client.id] = client
        if self._exited:
            client.close_connection()

    def remove_client(self, client: ClientV2) -> None:
        with self._clients_lock:
            self._clients.pop(client.id, None)
            self._clients_gone.notify_all()

    def client_list(self) -> List[ClientV2]:
        with self._clients_lock:
            return list(self._clients.values())

    def identify_response(self, client: ClientV2) -> Dict[str, Any]:
        """IDENTIFY's answer to a feature-negotiating client: what it gets (TLS, compression).

        A client asking for both deflate and snappy (and offered both) is refused.
        """
        opts = self.opts
        wants = getattr(client, "wants", {})
        tls_v1 = self.tls_context is not None and bool(wants.get("tls_v1"))
        deflate = opts.deflate and bool(wants.get("deflate"))
        snappy = opts.snappy and bool(wants.get("snappy")) and snappy_available()
        if deflate and snappy:
            raise fatal("E_IDENTIFY_FAILED", "cannot enable both deflate and snappy compression")
        level = client.deflate_level if deflate and client.deflate_level > 0 else 6
        return {
            "max_rdy_count": opts.max_rdy_count,
            "version": NSQ_VERSION,
            "max_msg_timeout": int(opts.max_msg_timeout * 1000),
            "msg_timeout": int(client.msg_timeout * 1000),
            "tls_v1": tls_v1,
            "deflate": deflate,
            "deflate_level": min(level, opts.max_deflate_level),
            "max_deflate_level": opts.max_deflate_level,
            "snappy": snappy,
            "sample_rate": client.sample_rate,
            "auth_required": self.auth_enabled(),
            "output_buffer_size": client.output_buffer_size,
            "output_buffer_timeout": int(client.output_buffer_timeout * 1000),
        }

    # ------------------------------------------------------------ auth (auth.py)

    def auth_enabled(self) -> bool:
        return bool(self.opts.auth_http_addresses)

    def check_auth(self, client: ClientV2, cmd: str, topic: str, channel: str) -> None:
        """Raise NSQ's auth error if client may not run cmd (a no-op without an auth server).

        Expired authorizations are fetched again with the client's secret.
        """
        if not self.opts.auth_http_addresses:
            return
        state = client.auth_state
        if state is None or not state.authorizations:
            raise fatal("E_AUTH_FIRST", "AUTH required before %s" % cmd)
        if state.is_expired():
            try:
                state = self._query_auth(client, client.auth_secret or "")
            except AuthError as e:
                log.warning("PROTOCOL(V2): [%s] AUTH failed %s", client.remote_address, e)
                raise fatal("E_AUTH_FAILED", "AUTH failed") from None
            client.auth_state = state
        if not state.is_allowed(topic, channel):
            raise fatal("E_UNAUTHORIZED", "AUTH failed for %s on %s %s" % (cmd, go_quote(topic), go_quote(channel)))

    def authenticate(self, client: ClientV2, secret: str) -> bytes:
        """AUTH: ask the auth server what secret allows; the answer body for the client."""
        if client.auth_state is not None and client.auth_state.authorizations:
            raise fatal("E_INVALID", "AUTH already set")
        if not self.auth_enabled():
            raise fatal("E_AUTH_DISABLED", "AUTH disabled")
        client.auth_secret = secret
        try:
            state = self._query_auth(client, secret)
        except AuthError as e:
            # the auth server's trouble is not the client's business: log it, answer AUTH failed
            log.warning("PROTOCOL(V2): [%s] AUTH failed %s", client.remote_address, e)
            raise fatal("E_AUTH_FAILED", "AUTH failed") from None
        client.auth_state = state
        if not state.authorizations:
            raise fatal("E_UNAUTHORIZED", "AUTH no authorizations found")
        return auth_response_body(state)

    def _query_auth(self, client: ClientV2, secret: str) -> AuthState:
        remote_ip = client.remote_address.rpartition(":")[0].strip("[]")
        return query_auth(self.opts, remote_ip, client.tls, client.tls_common_name, secret)

    # ------------------------------------------------------------ topics

    def get_topic(self, name: str) -> Topic:
        """The topic, created on first use."""
        topic = self.topics.get(name)
        if topic is not None and not topic.exiting:
            return topic
        with self.lock:
            topic = self.topics.get(name)
            if topic is not None and not topic.exiting:
                return topic
            if self._exited:
                raise ExitingError("exiting")
            topic = Topic(self, name)
            self.topics[name] = topic
        log.info("TOPIC(%s): created", name)
        self.notify_change(topic, None)
        if self.lookup is not None and not self._loading:
            self.lookup.precreate_channels(topic)  # channels lookupd knows, before the first message
        return topic

    def get_existing_topic(self, name: str) -> Optional[Topic]:
        return self.topics.get(name)

    def delete_topic(self, name: str) -> bool:
        with self.lock:
            topic = self.topics.pop(name, None)
        if topic is None:
            return False
        log.info("TOPIC(%s): deleting", name)
        topic.close(flush=False)
        self.notify_change(topic, None, deleted=True)
        return True

    def topic_list(self) -> List[Topic]:
        with self.lock:
            return list(self.topics.values())

    def make_backend(self, name: str, ephemeral: bool):
        if ephemeral:
            return DummyBackend(name)
        from .backend import disk_backend

        return disk_backend(name, self.opts, self.set_health)

    def notify_change(self, topic: Topic, channel: Any, deleted: bool = False) -> None:
        """A topic or channel was created or deleted: persist metadata, tell listeners (lookupd)."""
        if not self._loading and not self._exited:
            with self.lock:
                self.persist_metadata()
        for listener in list(self.change_listeners):
            try:
                listener(topic, channel, deleted)
            except Exception:  # noqa: BLE001 - a listener must not break publishing
                log.exception("NSQ: change listener failed")

    # ------------------------------------------------------------ publishing

    def make_messages(self, topic: Topic, bodies: Sequence[bytes]) -> List[bytes]:
        """Encode bodies as messages with fresh IDs (the topic's) and one timestamp for the batch.

        In memory a message's attempts field holds the count it will be
        delivered with next (so a fresh one says 1): delivery then sends the
        stored bytes as they are.  Backends store NSQ's count so far
        (backend.py converts).
        """
        ids = topic.guid.new_ids(len(bodies))
        head = _MSG_HEAD.pack(time.time_ns(), 1)
        return [head + mid + body for mid, body in zip(ids, bodies)]

    def message_heads(self, topic: Topic, n: int) -> List[bytes]:
        """n message headers (timestamp, attempts, fresh ID of topic): append a body to make a message."""
        head = _MSG_HEAD.pack(time.time_ns(), 1)
        return [head + mid for mid in topic.guid.new_ids(n)]

    def publish_one(self, topic_name: str, body: bytes, client: Optional[ClientV2] = None) -> None:
        """PUB: one message."""
        topic = self.topics.get(topic_name)
        if topic is None or topic.exiting:
            topic = self.get_topic(topic_name)
        msg = _MSG_HEAD.pack(time.time_ns(), 1) + topic.guid.new_id() + body
        topic.put_many((msg,), len(body))
        if client is not None:
            counts = client.pub_counts
            counts[topic_name] = counts.get(topic_name, 0) + 1

    def publish(self, topic_name: str, bodies: Sequence[bytes], client: Optional[ClientV2] = None) -> None:
        topic = self.get_topic(topic_name)
        self.publish_messages(topic_name, self.make_messages(topic, bodies), sum(map(len, bodies)), client)

    def publish_messages(self, topic_name: str, msgs: List[bytes], body_bytes: int,
                         client: Optional[ClientV2] = None) -> None:
        """Publish already-encoded messages (body_bytes: the size of their bodies)."""
        topic = self.get_topic(topic_name)
        topic.put_many(msgs, body_bytes)
        if client is not None:
            client.pub_counts[topic_name] = client.pub_counts.get(topic_name, 0) + len(msgs)

    def publish_deferred(self, topic_name: str, body: bytes, delay: float,
                         client: Optional[ClientV2] = None) -> None:
        topic = self.get_topic(topic_name)
        msg = self.make_messages(topic, [body])[0]
        topic.put_deferred(msg, delay, len(body))
        if client is not None:
            client.pub_counts[topic_name] = client.pub_counts.get(topic_name, 0) + 1

    def new_latency_stream(self):
        """A channel's e2e latency stream (a no-op without --e2e-processing-latency-percentile)."""
        percentiles = self.opts.e2e_processing_latency_percentiles
        if not percentiles:
            return NullLatency()
        from .e2e import LatencyStream

        return LatencyStream(self.opts.e2e_processing_latency_window_time, percentiles)

    # ------------------------------------------------------------ health

    def is_healthy(self) -> bool:
        return self.health_error is None

    def set_health(self, error: Optional[str]) -> None:
        """Record the result of the last backend write (None: it worked)."""
        if error == self.health_error:
            return
        if error:
            log.error("NSQ: unhealthy - %s", error)
        else:
            log.info("NSQ: healthy again")
        self.health_error = error

    # ------------------------------------------------------------ metadata (nsqd.dat)

    def metadata(self) -> Dict[str, Any]:
        topics = []
        for topic in self.topic_list():
            if topic.ephemeral:
                continue
            channels = [{"name": c.name, "paused": c.paused}
                        for c in topic.channel_list() if not c.ephemeral]
            # NSQ 1.3.0's key order, and null for a topic without channels
            topics.append({"name": topic.name, "paused": topic.paused, "channels": channels or None})
        return {"topics": topics, "version": NSQ_VERSION}

    def persist_metadata(self) -> None:
        """Rewrite nsqd.dat atomically (temp file + fsync + rename)."""
        path = os.path.join(self.opts.data_dir, METADATA_FILE)
        data = json.dumps(self.metadata(), separators=(",", ":")).encode()
        tmp = "%s.%d.tmp" % (path, int.from_bytes(os.urandom(4), "big"))
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            log.error("NSQ: failed to persist metadata - %s", e)
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def load_metadata(self) -> None:
        """Recreate non-ephemeral topics and channels (and their paused state) from nsqd.dat."""
        data_dir = self.opts.data_dir
        for name in os.listdir(data_dir):
            if name.startswith(METADATA_FILE + ".") and name.endswith(".tmp"):
                try:  # left behind by a node killed mid-write
                    os.unlink(os.path.join(data_dir, name))
                except OSError:
                    pass
        path = os.path.join(data_dir, METADATA_FILE)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        topics = metadata.decode(raw, path)  # MetadataError: the node must not start
        self._loading = True
        try:
            for t in topics:
                if not wire.is_valid_topic_name(t.name) or wire.is_ephemeral(t.name):
                    log.warning("skipping creation of invalid topic %s", t.name)
                    continue
                topic = self.get_topic(t.name)
                if t.paused:
                    topic.pause()
                for c in t.channels:
                    if not wire.is_valid_channel_name(c.name) or wire.is_ephemeral(c.name):
                        log.warning("skipping creation of invalid channel %s", c.name)
                        continue
                    channel = topic.get_channel(c.name)
                    if c.paused:
                        channel.pause()
        finally:
            self._loading = False


def _tune_runtime() -> None:
    """Keep the interpreter's pauses out of message latency.

    Everything alive after start-up (modules, classes, the node) is moved out
    of the cyclic GC's sight with gc.freeze(), so a full collection only
    walks what was made since; queued messages are bytes, which the GC never
    tracks.  A shorter GIL switch interval bounds how long a woken thread
    (a message pump with a batch to send) waits for a busy one.
    """
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(0.001)


def _runtime() -> str:
    v = sys.version_info
    return "python%d.%d.%d" % (v.major, v.minor, v.micro)
