"""One V2 protocol connection to nsqd: the bytes on the socket, nothing else.

`Connection.connect()` opens the socket, sends the magic, IDENTIFYs with
feature negotiation and applies what was negotiated (TLS, deflate, snappy,
AUTH).  Afterwards the owner either reads synchronously
(`read_response()`, used by the Producer) or runs a reader thread that calls
`recv_frames()` in a loop (the Consumer).  Writes go through `send()`, which
holds the connection's write lock so several threads (workers sending FIN,
the reader answering heartbeats, the consumer changing RDY) can share it.
"""
from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from typing import Any, Dict, List, Optional, Tuple

from .. import __version__, wire
from ..addresses import split_host_port
from ..transport import DeflateTransport, PlainTransport, SnappyTransport, snappy_available
from .errors import NSQConnectionError, NSQError, NSQProtocolError, error_from_frame

logger = logging.getLogger(__name__)

USER_AGENT = "nsq-sync/%s" % __version__
RECV_SIZE = 64 * 1024  # below glibc's mmap threshold (128 KB): no mmap/munmap per read
NOP = b"NOP\n"

Frame = Tuple[int, bytes]


def split_address(address: str) -> Tuple[str, int]:
    """("host", port) to dial for `host:port` (IPv6 hosts bracketed; an empty host is loopback)."""
    host, port = split_host_port(address)
    return host or "127.0.0.1", port


# IDENTIFY fields that are durations: given in seconds in the Python API, sent in ms
DURATION_FIELDS = ("heartbeat_interval", "msg_timeout", "output_buffer_timeout")


def identify_fields(**options: Any) -> Dict[str, Any]:
    """IDENTIFY fields from Python-level options.

    Durations (heartbeat_interval, msg_timeout, output_buffer_timeout) are
    given in seconds and sent in milliseconds (a negative value stays -1,
    NSQ's "disabled"); booleans that are False and values that are None are
    left out so nsqd's defaults apply; anything else is sent as given.
    """
    out: Dict[str, Any] = {}
    for key, value in options.items():
        if value is None or value is False:
            continue
        if key in DURATION_FIELDS:
            value = -1 if value < 0 else int(round(value * 1000))
        out[key] = value
    return out


def default_identify() -> Dict[str, Any]:
    hostname = socket.gethostname()
    return {
        "client_id": hostname.split(".")[0],
        "hostname": hostname,
        "feature_negotiation": True,
        "user_agent": USER_AGENT,
    }


class Connection:
    """A V2 connection to one nsqd.

    identify:      IDENTIFY fields sent on top of the defaults (client_id,
                   hostname, user_agent, feature_negotiation), as on the wire
                   (durations in milliseconds; see identify_fields()).
    tls_context:   used when `tls_v1` is negotiated (default: the system's
                   verifying context).
    auth_secret:   sent with AUTH when nsqd says auth_required.
    """

    def __init__(self, address: str, identify: Optional[Dict[str, Any]] = None, *,
                 connect_timeout: float = 1.0, read_timeout: float = 60.0,
                 tls_context: Optional[ssl.SSLContext] = None,
                 auth_secret: Optional[str] = None) -> None:
        self.address = address
        self.host, self.port = split_address(address)
        self.identify_fields = default_identify()
        if identify:
            self.identify_fields.update({k: v for k, v in identify.items() if v is not None})
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.tls_context = tls_context
        self.auth_secret = auth_secret
        self.features: Dict[str, Any] = {}
        self.auth: Optional[Dict[str, Any]] = None
        self.sock: Optional[socket.socket] = None
        self._reader = wire.FrameReader()
        self._pending: List[Frame] = []
        self.transport: Any = None  # the server's transport classes: plain, then deflate/snappy
        self._wlock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return "<Connection %s%s>" % (self.address, " closed" if self._closed else "")

    # ------------------------------------------------------------ handshake

    def connect(self) -> Dict[str, Any]:
        """Open the socket and run the handshake; returns the negotiated features."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as e:
            self._closed = True
            raise NSQConnectionError("connect to %s failed: %s" % (self.address, e)) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.transport = PlainTransport(sock)
        try:
            sock.sendall(wire.MAGIC_V2)
            self._identify()
            if self.features.get("auth_required"):
                self._auth()
        except (OSError, ssl.SSLError) as e:
            self.close()
            raise NSQConnectionError("handshake with %s failed: %s" % (self.address, e)) from e
        except NSQError:
            self.close()
            raise
        self.sock.settimeout(self.read_timeout)
        return self.features

    def _identify(self) -> None:
        body = json.dumps(self.identify_fields).encode()
        self.sock.sendall(wire.command(b"IDENTIFY", body=body))
        # read exactly one frame: what follows may already be TLS or compressed
        data = self._read_response_exact()
        if data == wire.OK:
            self.features = {}
            return
        try:
            self.features = json.loads(data)
        except ValueError as e:
            raise NSQProtocolError("IDENTIFY response is not JSON: %r" % data[:200]) from e
        if self.features.get("tls_v1"):
            ctx = self.tls_context or ssl.create_default_context()
            self.sock = ctx.wrap_socket(self.sock, server_hostname=self.host)
            self.transport = PlainTransport(self.sock)
            if self._read_response_exact() != wire.OK:
                raise NSQProtocolError("expected OK after the TLS upgrade")
        if self.features.get("snappy"):
            if not snappy_available():
                raise NSQConnectionError("snappy requested but cramjam is not installed")
            self.transport = SnappyTransport(self.transport)
            self._expect_ok("snappy")
        elif self.features.get("deflate"):
            self.transport = DeflateTransport(self.transport, int(self.features.get("deflate_level") or 6))
            self._expect_ok("deflate")

    def _recv_exact(self, n: int) -> bytes:
        parts = []
        while n > 0:
            chunk = self.sock.recv(n)
            if not chunk:
                raise NSQConnectionError("connection closed by %s during the handshake" % self.address)
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _read_response_exact(self) -> bytes:
        """One response frame read without over-reading the socket (handshake only)."""
        while True:
            try:
                length, ftype = wire.read_frame_header(self._recv_exact(8))
            except wire.FrameError as e:
                raise NSQProtocolError("%s from %s" % (e, self.address)) from None
            data = self._recv_exact(length)
            if ftype == wire.FRAME_TYPE_ERROR:
                raise error_from_frame(data)
            if ftype != wire.FRAME_TYPE_RESPONSE:
                raise NSQProtocolError("unexpected frame type %d during the handshake" % ftype)
            if data != wire.HEARTBEAT:
                return data

    def _expect_ok(self, what: str) -> None:
        data = self.read_response()
        if data != wire.OK:
            raise NSQProtocolError("expected OK after %s upgrade, got %r" % (what, data[:100]))

    def _auth(self) -> None:
        if not self.auth_secret:
            raise NSQConnectionError("nsqd %s requires AUTH but no auth_secret was given" % self.address)
        self.send(wire.command(b"AUTH", body=self.auth_secret.encode()))
        data = self.read_response()
        try:
            self.auth = json.loads(data)
        except ValueError as e:
            raise NSQProtocolError("AUTH response is not JSON: %r" % data[:200]) from e

    # ------------------------------------------------------------ properties

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def max_rdy_count(self) -> int:
        return int(self.features.get("max_rdy_count") or 2500)

    @property
    def msg_timeout_ms(self) -> int:
        return int(self.features.get("msg_timeout") or 60000)

    # ------------------------------------------------------------ I/O

    def send(self, data: bytes) -> None:
        """Write bytes (whole commands) to nsqd; NSQConnectionError if the socket broke."""
        with self._wlock:
            if self._closed:
                raise NSQConnectionError("connection to %s is closed" % self.address)
            try:
                self.transport.sendall(data)
            except (OSError, ssl.SSLError) as e:
                raise NSQConnectionError("write to %s failed: %s" % (self.address, e)) from e

    def recv_frames(self) -> List[Frame]:
        """Block for the next bytes from nsqd and return the complete frames in them.

        May return an empty list (a partial frame).  Raises NSQConnectionError
        on EOF, a socket error or the read timeout.
        """
        if self._pending:
            out, self._pending = self._pending, []
            return out
        try:
            data = self.transport.recv(RECV_SIZE)
        except socket.timeout as e:
            raise NSQConnectionError("read from %s timed out" % self.address) from e
        except (OSError, ssl.SSLError, AttributeError) as e:
            raise NSQConnectionError("read from %s failed: %s" % (self.address, e)) from e
        if not data:
            raise NSQConnectionError("connection closed by %s" % self.address)
        try:
            return self._reader.feed(data)
        except wire.FrameError as e:
            raise NSQProtocolError("%s from %s" % (e, self.address)) from None

    def read_frame(self) -> Frame:
        """The next frame, read synchronously (only when no reader thread runs)."""
        while not self._pending:
            self._pending = self.recv_frames()
        return self._pending.pop(0)

    def read_response(self) -> bytes:
        """The next response frame's data, answering heartbeats on the way.

        An error frame is raised as its NSQError subclass.
        """
        while True:
            ftype, data = self.read_frame()
            if ftype == wire.FRAME_TYPE_RESPONSE:
                if data == wire.HEARTBEAT:
                    self.send(NOP)
                    continue
                return data
            if ftype == wire.FRAME_TYPE_ERROR:
                raise error_from_frame(data)
            if ftype == wire.FRAME_TYPE_MESSAGE:
                raise NSQProtocolError("unexpected message frame from %s" % self.address)
            raise NSQProtocolError("unknown frame type %d from %s" % (ftype, self.address))

    def has_buffered_frames(self) -> bool:
        return bool(self._pending)

    def close(self) -> None:
        """Close the socket (wakes a reader blocked in recv)."""
        self._closed = True
        sock = self.sock
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass

