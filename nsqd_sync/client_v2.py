"""Per-connection state of a V2 client: IDENTIFY settings, RDY, in-flight table, pump.

Every connection has two threads: the handler thread (tcp.py ->
protocol_v2.py) that reads commands, and the message pump
(`nsqd-pump-<addr>`) that sends heartbeats and, once subscribed and RDY,
takes batches of messages from the channel, records them in flight and
writes them with one `sendall` per batch.

The in-flight table is a dict `id -> (encoded message, deadline)` in
delivery order; since a client has one msg_timeout, that is deadline order,
which is what lets the channel's timer thread look only at its head.

Locks: `lock` (with the `ready` condition the pump waits on) guards RDY,
state and the in-flight table; `write_lock` serialises socket writes.  The
pump never holds `lock` while writing or while taking the channel lock.
"""
from __future__ import annotations

import errno
import logging
import random
import socket
import ssl
import struct
import threading
import time
from typing import Any, Dict, List, Optional, Protocol, TYPE_CHECKING, Tuple

from . import wire
from .addresses import format_address
from .durations import format_duration
from .errors import fatal
from .transport import PlainTransport

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel

log = logging.getLogger(__name__)


class ClientNode(Protocol):
    """What a client needs of its node (nsqd.NSQD is the one)."""

    opts: Any

    def next_client_id(self, *args: Any, **kwargs: Any) -> Any: ...

# NSQ's client states and numbers (nsqd/client_v2.go), as /stats reports them
STATE_INIT = 0
STATE_DISCONNECTED = 1
STATE_CONNECTED = 2
STATE_SUBSCRIBED = 3
STATE_CLOSING = 4

MAX_BATCH = 200  # messages per channel take and per sendall
WRITE_TIMEOUT_NO_HEARTBEAT = 60.0  # seconds; NSQ's client timeout

_INF = float("inf")
_hdr = wire.message_frame_header
_TIMEVAL = struct.Struct("@ll")
_WOULD_BLOCK = (errno.EAGAIN, errno.EWOULDBLOCK)


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return _TIMEVAL.pack(whole, int((seconds - whole) * 1_000_000))

_bump = wire.bump_attempts


class ClientV2:
    """State of one V2 connection."""

    def __init__(self, nsqd: "ClientNode", sock: socket.socket, address: Tuple[str, int]) -> None:
        opts = nsqd.opts
        self.nsqd = nsqd
        self.id = nsqd.next_client_id()
        self.sock = sock  # the TCP socket (timeouts, shutdown)
        self.transport = PlainTransport(sock)  # what bytes go through (TLS/compression upgrades)
        self.remote_address = format_address(address) if len(address) >= 2 else str(address)
        self.connect_time = time.time()
        self.lock = threading.Lock()
        self.ready = threading.Condition(self.lock)
        self.write_lock = threading.Lock()

        # IDENTIFY settings (NSQ's defaults)
        self.client_id = address[0] if address else ""
        self.hostname = self.client_id
        self.user_agent = ""
        self.heartbeat_interval = 30.0  # half of NSQ's 60s client timeout
        self.write_timeout = self.heartbeat_interval  # SO_SNDTIMEO (apply_read_timeout)
        self.shut_down = False  # close_connection() was called
        self.output_buffer_size = 16 * 1024
        self.output_buffer_timeout = opts.output_buffer_timeout
        self.msg_timeout = opts.msg_timeout
        self.sample_rate = 0
        self.feature_negotiation = False
        self.tls = False  # upgraded (IDENTIFY tls_v1 negotiated and handshaken)
        self.tls_common_name = ""  # subject CN of the client's certificate, for the auth server
        self.tls_version = ""  # /stats: "TLS1.3", the suite as NSQ names it
        self.tls_cipher_suite = ""
        self.tls_negotiated_protocol = ""
        self.tls_negotiated_protocol_is_mutual = False
        self.deflate = False  # upgraded to deflate / snappy
        self.snappy = False
        self.deflate_level = 0
        self.wants: Dict[str, bool] = {}  # features IDENTIFY asked for
        self.auth_secret: Optional[str] = None
        self.auth_state: Any = None  # auth.AuthState after AUTH (refreshed when its TTL runs out)
        self.identified = False

        self.state = STATE_INIT
        self.channel: Optional["Channel"] = None
        self.rdy = 0
        self.in_flight: Dict[bytes, Tuple[bytes, float]] = {}
        self.closed = False
        self._pump_waiting = False
        self.waiter = None  # the channel's hand-off slot for this client's pump

        self.message_count = 0
        self.finish_count = 0
        self.requeue_count = 0
        self.pub_counts: Dict[str, int] = {}

        self._pump = threading.Thread(target=self._pump_loop, name="nsqd-pump-%s" % self.remote_address,
                                      daemon=True)

    def __repr__(self) -> str:
        return "client(%s)" % self.remote_address

    # ------------------------------------------------------------ writing

    def send(self, data: bytes) -> bool:
        """Write bytes (one or many frames) with one sendall; False if the connection is gone."""
        try:
            with self.write_lock:
                self.transport.sendall(data)
            return True
        except OSError as e:
            if not self.closed and not self.shut_down:  # not a write cut short by our own close
                self._log_write_failure(e)
            self.close_connection()
            return False

    def _log_write_failure(self, e: OSError) -> None:
        """Say why the node drops this client: a consumer that stopped reading is a WARNING."""
        if isinstance(e, (BlockingIOError, socket.timeout, ssl.SSLWantWriteError)) or e.errno in _WOULD_BLOCK:
            # SO_SNDTIMEO ran out with the kernel's send buffer (the client's output buffer) still full
            log.warning("%r: closing - write timed out after %s: output buffer full, the client is not reading",
                        self, format_duration(self.write_timeout))
        else:
            log.warning("%r: closing - write failed - %s", self, e)

    def close_connection(self) -> None:
        """Shut the socket down so the handler thread's read returns."""
        self.shut_down = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def has_authorizations(self) -> bool:
        """AUTH succeeded with at least one authorization (NSQ's HasAuthorizations)."""
        state = self.auth_state
        return state is not None and bool(state.authorizations)

    # ------------------------------------------------------------ IDENTIFY

    def identify(self, data: Dict[str, Any]) -> None:
        """Apply IDENTIFY fields with NSQ's ranges; a bad value is E_BAD_BODY (fatal)."""
        opts = self.nsqd.opts

        def field(name: str, kind: type, default: Any) -> Any:
            v = data.get(name, default)
            if v is None:
                return default
            if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
                # Go decodes these into integers: 1000.0 is not accepted there
                raise fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body")
            if kind is str and not isinstance(v, str):
                raise fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body")
            if kind is bool and not isinstance(v, bool):
                raise fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body")
            return v

        client_id = field("client_id", str, "")
        hostname = field("hostname", str, "")
        user_agent = field("user_agent", str, "")
        heartbeat = field("heartbeat_interval", int, 0)
        obuf_size = field("output_buffer_size", int, 0)
        obuf_timeout = field("output_buffer_timeout", int, 0)
        sample_rate = field("sample_rate", int, 0)
        msg_timeout = field("msg_timeout", int, 0)
        self.feature_negotiation = field("feature_negotiation", bool, False)
        want_tls = field("tls_v1", bool, False)
        want_deflate = field("deflate", bool, False)
        want_snappy = field("snappy", bool, False)
        deflate_level = field("deflate_level", int, 0)

        if heartbeat == -1:
            hb = 0.0
        elif heartbeat == 0:
            hb = self.heartbeat_interval
        elif 1000 <= heartbeat <= opts.max_heartbeat_interval * 1000:
            hb = heartbeat / 1000.0
        else:
            raise fatal("E_BAD_BODY", "IDENTIFY heartbeat interval (%d) is invalid" % heartbeat)

        if obuf_size == -1:
            size = 1  # NSQ disables output buffering with a 1-byte buffer
        elif obuf_size == 0:
            size = self.output_buffer_size
        elif 64 <= obuf_size <= opts.max_output_buffer_size:
            size = obuf_size
        else:
            raise fatal("E_BAD_BODY", "IDENTIFY output buffer size (%d) is invalid" % obuf_size)

        if obuf_timeout == -1:
            timeout = 0.0
        elif obuf_timeout == 0:
            timeout = self.output_buffer_timeout
        elif opts.min_output_buffer_timeout * 1000 <= obuf_timeout <= opts.max_output_buffer_timeout * 1000:
            timeout = obuf_timeout / 1000.0
        else:
            raise fatal("E_BAD_BODY", "IDENTIFY output buffer timeout (%d) is invalid" % obuf_timeout)

        if not 0 <= sample_rate <= 99:
            raise fatal("E_BAD_BODY", "IDENTIFY sample rate (%d) is invalid" % sample_rate)

        if msg_timeout == 0:
            mt = self.msg_timeout
        elif 1000 <= msg_timeout <= opts.max_msg_timeout * 1000:
            mt = msg_timeout / 1000.0
        else:
            raise fatal("E_BAD_BODY", "IDENTIFY msg timeout (%d) is invalid" % msg_timeout)

        with self.lock:
            self.client_id = client_id
            self.hostname = hostname
            self.user_agent = user_agent
            self.heartbeat_interval = hb
            self.output_buffer_size = size
            self.output_buffer_timeout = timeout
            self.sample_rate = sample_rate
            self.msg_timeout = mt
            self.deflate_level = deflate_level if deflate_level > 0 else 0
            self.identified = True
            self.ready.notify()
        self.wants = {"tls_v1": want_tls, "deflate": want_deflate, "snappy": want_snappy}
        self.apply_read_timeout()

    def apply_read_timeout(self) -> None:
        """Two missed heartbeats close the connection (NSQ's read deadline).

        The socket stays in blocking mode with kernel timeouts (SO_RCVTIMEO,
        SO_SNDTIMEO) rather than Python's timeout mode, which would add a
        poll() — and another GIL hand-off — to every recv and send.  A timeout
        surfaces as BlockingIOError (EAGAIN).
        """
        hb = self.heartbeat_interval
        # a write that makes no progress for this long closes the client (never blocked for good,
        # even with heartbeats off: then NSQ's 60s client timeout)
        self.write_timeout = hb if hb > 0 else WRITE_TIMEOUT_NO_HEARTBEAT
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(hb * 2 if hb > 0 else 0.0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.write_timeout))

    # ------------------------------------------------------------ subscription and RDY

    def subscribe(self, channel: "Channel") -> None:
        with self.lock:
            self.channel = channel
            self.state = STATE_SUBSCRIBED
            self.ready.notify()

    def set_ready(self, count: int) -> None:
        with self.lock:
            if self.state == STATE_CLOSING:
                return
            lowered = count < self.rdy
            self.rdy = count
            self.ready.notify()
        if lowered and self.channel is not None:
            self.channel.wake_takers()

    def start_close(self) -> None:
        """CLS: stop sending messages; the client closes when its in-flight drain."""
        with self.lock:
            self.state = STATE_CLOSING
            self.rdy = 0
            self.ready.notify()
        if self.channel is not None:
            self.channel.wake_takers()

    # ------------------------------------------------------------ in flight

    # The table's operations; Channel.finish_message, requeue_message,
    # touch_message and start_in_flight_timeout (NSQ's names) drive them.

    def pop_in_flight(self, ids: List[bytes], keep: bool) -> Tuple[List[bytes], List[bytes]]:
        """FIN: remove ids from the table; return (their messages if keep, ids not in flight)."""
        missing: List[bytes] = []
        finished: List[bytes] = []
        with self.lock:
            pop = self.in_flight.pop
            for mid in ids:
                entry = pop(mid, None)
                if entry is None:
                    missing.append(mid)
                elif keep:
                    finished.append(entry[0])
            done = len(ids) - len(missing)
            if done:
                self.finish_count += done
                if self._pump_waiting:
                    self.ready.notify()
        return finished, missing

    def remove_in_flight(self, mid: bytes) -> Optional[bytes]:
        """REQ: remove mid from the table; its message with the next attempts count, or None."""
        with self.lock:
            entry = self.in_flight.pop(mid, None)
            if entry is None:
                return None
            self.requeue_count += 1
            if self._pump_waiting:
                self.ready.notify()
        return _bump(entry[0])

    def reset_in_flight_timeout(self, mid: bytes) -> bool:
        """TOUCH: give mid a full msg_timeout again (moved to the end: deadline order holds)."""
        with self.lock:
            entry = self.in_flight.pop(mid, None)
            if entry is None:
                return False
            self.in_flight[mid] = (entry[0], time.monotonic() + self.msg_timeout)
        return True

    def pop_expired(self, now: float) -> List[bytes]:
        """Remove and return in-flight messages whose deadline is <= now (timer thread)."""
        with self.lock:
            infl = self.in_flight
            expired_ids = []
            for mid, (_, deadline) in infl.items():
                if deadline > now:
                    break
                expired_ids.append(mid)
            if not expired_ids:
                return []
            out = [_bump(infl.pop(mid)[0]) for mid in expired_ids]
            if self._pump_waiting:
                self.ready.notify()
        return out

    def first_deadline(self) -> float:
        with self.lock:
            for _, deadline in self.in_flight.values():
                return deadline
        return _INF

    def drop_in_flight(self) -> List[bytes]:
        """Remove and return every in-flight message."""
        with self.lock:
            out = [entry[0] for entry in self.in_flight.values()]
            self.in_flight.clear()
            self.ready.notify()
        return out

    def detach(self) -> List[bytes]:
        """Mark closed, return the in-flight messages (ready to requeue) and shut the socket."""
        with self.lock:
            self.closed = True
            out = [_bump(entry[0]) for entry in self.in_flight.values()]
            self.in_flight.clear()
            self.ready.notify_all()
        self.close_connection()
        return out

    def add_in_flight(self, batch: List[bytes], deadline: float) -> Tuple[Optional[bytes], List[bytes]]:
        """Record a taken batch in the table; return (its frames or None, what exceeds RDY).

        Re-checks RDY under the client lock: the excess goes back to the
        channel, so a client never has more in flight than its RDY.
        """
        excess: List[bytes] = []
        with self.lock:
            if self.closed or self.state != STATE_SUBSCRIBED:
                return None, batch
            room = self.rdy - len(self.in_flight)
            if room < len(batch):
                excess = batch[max(room, 0):]
                batch = batch[:max(room, 0)]
            if not batch:
                return None, excess
            if self.sample_rate:
                rate = self.sample_rate
                batch = [m for m in batch if random.randrange(100) <= rate]
                if not batch:
                    return None, excess
            # queued messages already carry their next attempts count: send them as they are
            parts: List[bytes] = []
            append = parts.append
            infl = self.in_flight
            hdr = b""
            hdr_len = -1
            for data in batch:
                infl[data[10:26]] = (data, deadline)
                n = len(data)
                if n != hdr_len:
                    hdr = _hdr(n)
                    hdr_len = n
                append(hdr)
                append(data)
            self.message_count += len(batch)
        return b"".join(parts), excess

    # ------------------------------------------------------------ the pump

    def start_pump(self) -> None:
        self._pump.start()

    def join_pump(self, timeout: float) -> None:
        if self._pump.is_alive() and threading.current_thread() is not self._pump:
            self._pump.join(timeout)

    def _pump_loop(self) -> None:
        try:
            self._pump_messages()
        except Exception:  # noqa: BLE001 - one client's failure must not affect others
            log.exception("%r: message pump failed", self)
            self.close_connection()

    def _pump_messages(self) -> None:
        next_heartbeat = _INF
        hb_seen = None
        while True:
            send_heartbeat = False
            with self.lock:
                while True:
                    if self.closed:
                        return
                    hb = self.heartbeat_interval
                    if hb != hb_seen:  # IDENTIFY changed the interval: restart the ticker
                        hb_seen = hb
                        next_heartbeat = time.monotonic() + hb if hb > 0 else _INF
                    now = time.monotonic()
                    if now >= next_heartbeat:
                        send_heartbeat = True
                        next_heartbeat = now + hb
                        break
                    if (self.state == STATE_SUBSCRIBED and self.channel is not None
                            and len(self.in_flight) < self.rdy):
                        room = self.rdy - len(self.in_flight)
                        break
                    self._pump_waiting = True
                    self.ready.wait(None if next_heartbeat == _INF else next_heartbeat - now)
                    self._pump_waiting = False
            if send_heartbeat:
                if not self.send(wire.HEARTBEAT_FRAME):
                    return
                continue
            channel = self.channel
            wait = min(next_heartbeat - time.monotonic(), 30.0)
            batch = channel.take(self, min(room, MAX_BATCH), max(wait, 0.0))
            if batch is None:  # the channel is exiting: NSQ closes its clients
                self.close_connection()
                return
            if batch:
                data = channel.start_in_flight_timeout(self, batch)
                if data is not None and not self.send(data):
                    return

    # ------------------------------------------------------------ end of connection

    def on_disconnect(self) -> None:
        """The handler is done: stop the pump, requeue in-flight, leave the channel."""
        with self.lock:
            self.closed = True
            leftovers = [_bump(entry[0]) for entry in self.in_flight.values()]
            self.in_flight.clear()
            self.ready.notify_all()
        channel = self.channel
        if channel is not None:
            channel.wake_takers()
        self.join_pump(2.0)
        if channel is not None:
            if leftovers:
                channel.requeue_many(leftovers)
            channel.remove_client(self)
