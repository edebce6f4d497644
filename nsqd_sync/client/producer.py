"""Producer: publish to one nsqd over a V2 connection, synchronously.

Each call sends one command and waits for its answer while holding the
producer's lock, so answers match commands in order and the producer can be
shared by threads.  The connection is made on first use; if it turns out to
be broken, the call reconnects once and sends again before raising
`NSQConnectionError` (so a message may, rarely, be published twice: NSQ's
usual at-least-once).  A small keepalive thread answers nsqd's heartbeats
while the producer is idle.
"""
from __future__ import annotations

import json
import logging
import select
import ssl
import threading
import time
from typing import Any, Iterable, Optional, Union

from .. import wire
from .connection import NOP, Connection, identify_fields
from .errors import NSQBadTopic, NSQConnectionError, NSQError, NSQProtocolError, error_from_frame, is_fatal

logger = logging.getLogger(__name__)

Body = Union[bytes, bytearray, memoryview, str]


def _as_bytes(body: Body) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body)


def _topic_bytes(command: str, topic: str) -> bytes:
    """The topic as a command parameter.

    Names are validated by nsqd; only what would break the command line
    itself (whitespace) is refused here, with the error nsqd would send.
    """
    raw = topic.encode("utf-8") if isinstance(topic, str) else bytes(topic)
    if not raw or any(c in raw for c in b" \t\r\n"):
        raise NSQBadTopic("%s topic name %s is not valid" % (command, json.dumps(raw.decode("utf-8", "replace"))))
    return raw


class Producer:
    """Publishes to one nsqd at `nsqd_tcp_address` (`host:port`).

    identify_options are IDENTIFY fields, with durations in seconds as for
    the Consumer: e.g. `client_id`, `user_agent`, `heartbeat_interval`,
    `deflate`, `deflate_level`, `snappy`, `tls_v1`, `output_buffer_timeout`.
    """

    def __init__(self, nsqd_tcp_address: str, *, connect_timeout: float = 1.0,
                 read_timeout: float = 60.0, tls_context: Optional[ssl.SSLContext] = None,
                 auth_secret: Optional[str] = None, **identify_options: Any) -> None:
        self.address = nsqd_tcp_address
        self.identify_options = identify_fields(**identify_options)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.tls_context = tls_context
        self.auth_secret = auth_secret
        self._conn: Optional[Connection] = None
        self._lock = threading.Lock()
        self._closed = False
        self._keepalive: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._last_io = time.monotonic()

    def __repr__(self) -> str:
        return "<Producer %s>" % self.address

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ publishing

    def pub(self, topic: str, body: Body) -> None:
        """Publish one message (PUB)."""
        self._request(wire.command(b"PUB", _topic_bytes("PUB", topic), body=_as_bytes(body)))

    def mpub(self, topic: str, bodies: Iterable[Body]) -> None:
        """Publish several messages at once (MPUB); all or none are queued."""
        body = wire.mpub_body([_as_bytes(b) for b in bodies])
        self._request(wire.command(b"MPUB", _topic_bytes("MPUB", topic), body=body))

    def dpub(self, topic: str, delay_ms: int, body: Body) -> None:
        """Publish one message delivered after delay_ms milliseconds (DPUB)."""
        self._request(wire.command(b"DPUB", _topic_bytes("DPUB", topic), b"%d" % int(delay_ms),
                                   body=_as_bytes(body)))

    def ping(self) -> None:
        """Make sure the connection is up (connecting if needed)."""
        with self._lock:
            self._ensure_connected()

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.closed

    @property
    def features(self) -> dict:
        """What nsqd answered to IDENTIFY on the current connection ({} before connecting)."""
        conn = self._conn
        return dict(conn.features) if conn is not None else {}

    def close(self) -> None:
        """Close the connection and stop the keepalive thread."""
        self._closed = True
        self._stop.set()
        with self._lock:
            self._drop_connection()
        t = self._keepalive
        if t is not None and t is not threading.current_thread():
            t.join(5.0)
        self._keepalive = None

    # ------------------------------------------------------------ internals

    def _request(self, data: bytes) -> bytes:
        with self._lock:
            if self._closed:
                raise NSQConnectionError("producer for %s is closed" % self.address)
            for attempt in (1, 2):
                conn = self._ensure_connected()
                try:
                    conn.send(data)
                    resp = conn.read_response()
                except NSQConnectionError as e:
                    self._drop_connection()
                    if attempt == 2:
                        raise
                    logger.info("connection to %s lost (%s); reconnecting", self.address, e)
                    continue
                except NSQError as e:
                    if is_fatal(e):
                        self._drop_connection()
                    raise
                self._last_io = time.monotonic()
                if resp != wire.OK:
                    raise NSQProtocolError("unexpected response %r from %s" % (resp[:100], self.address))
                return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _ensure_connected(self) -> Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        conn = Connection(self.address, self.identify_options, connect_timeout=self.connect_timeout,
                          read_timeout=self.read_timeout, tls_context=self.tls_context,
                          auth_secret=self.auth_secret)
        conn.connect()
        self._conn = conn
        self._last_io = time.monotonic()
        if self._keepalive is None:
            self._keepalive = threading.Thread(target=self._keepalive_loop,
                                               name="nsq-producer-%s-keepalive" % self.address,
                                               daemon=True)
            self._keepalive.start()
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _keepalive_interval(self) -> float:
        conn = self._conn
        hb = None
        if conn is not None:
            hb = conn.features.get("heartbeat_interval") or conn.identify_fields.get("heartbeat_interval")
        if not hb or hb <= 0:
            hb = 30000
        return max(0.05, min(5.0, hb / 4000.0))

    def _keepalive_loop(self) -> None:
        """Answer heartbeats that arrive while no request is reading the socket."""
        while not self._stop.wait(self._keepalive_interval()):
            if not self._lock.acquire(blocking=False):
                continue  # a request is running: it answers heartbeats itself
            try:
                conn = self._conn
                if conn is None or conn.closed:
                    continue
                try:
                    readable, _, _ = select.select([conn.sock], [], [], 0)
                except (OSError, ValueError):
                    self._drop_connection()
                    continue
                pending = getattr(conn.sock, "pending", None)  # TLS: decrypted bytes select can't see
                if not readable and not conn.has_buffered_frames() and not (pending and pending()):
                    continue
                try:
                    for ftype, data in conn.recv_frames():
                        if ftype == wire.FRAME_TYPE_RESPONSE and data == wire.HEARTBEAT:
                            conn.send(NOP)
                        elif ftype == wire.FRAME_TYPE_ERROR:
                            err = error_from_frame(data)
                            logger.warning("error from %s while idle: %s", self.address, err)
                            if is_fatal(err):
                                self._drop_connection()
                                break
                        else:
                            logger.warning("unexpected frame type %d from %s while idle", ftype, self.address)
                except NSQConnectionError as e:
                    logger.info("idle connection to %s closed: %s", self.address, e)
                    self._drop_connection()
            finally:
                self._lock.release()
