"""nsqd's registration with nsqlookupd (NSQ's nsqd/lookup.go and lookup_peer.go).

`Lookup` holds one `LookupPeer` per `--lookupd-tcp-address` and is an NSQD
change listener: every topic or channel created or deleted (ephemeral ones
included) becomes a `REGISTER`/`UNREGISTER` for every peer.

Each `LookupPeer` runs one thread, `nsqd-lookup-<addr>`, that owns the
connection: it connects, sends the `  V1` magic and `IDENTIFY` with the
node's JSON, then `REGISTER`s every existing topic and channel (a topic with
no channels as `REGISTER topic`, each channel as `REGISTER topic channel`),
then sends queued changes as they come and `PING`s every 15 s.  A failure
closes the connection and the thread reconnects after a backoff (doubling
from 0.25 s up to 15 s); the registration snapshot sent on every connect
makes lookupd whole again, so changes made while disconnected are dropped.

lookupd answers each command with int32 size + data (`OK`, its IDENTIFY
JSON, or an `E_...` error after which it closes the connection): no frame
type, unlike nsqd's V2 frames.

Locks: `Lookup.lock` (the set of peers) and each peer's `lock` (its queue of
pending commands) are never held together, and no socket I/O happens under
either.
"""
from __future__ import annotations

import json
import logging
import select
import socket
import struct
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence

from . import NSQ_VERSION, wire
from .errors import ExitingError
from .flags import FlagError
from .options import split_address

log = logging.getLogger(__name__)


class LookupNode(Protocol):
    """What lookupd registration reads from its node (nsqd.NSQD is the one)."""

    opts: Any
    http_address: Any
    tcp_address: Any

    def topic_list(self, *args: Any, **kwargs: Any) -> Any: ...

PING_INTERVAL = 15.0
CONNECT_TIMEOUT = 2.0
IO_TIMEOUT = 5.0
BACKOFF_MIN = 0.25
BACKOFF_MAX = 15.0

_SIZE = struct.Struct(">i")


class LookupdError(Exception):
    """lookupd answered with an error (or something that is not an answer)."""


def register(topic: str, channel: str = "") -> bytes:
    """`REGISTER topic [channel]\\n`."""
    if channel:
        return wire.command(b"REGISTER", topic.encode(), channel.encode())
    return wire.command(b"REGISTER", topic.encode())


def unregister(topic: str, channel: str = "") -> bytes:
    """`UNREGISTER topic [channel]\\n`."""
    if channel:
        return wire.command(b"UNREGISTER", topic.encode(), channel.encode())
    return wire.command(b"UNREGISTER", topic.encode())


def _describe(cmd: bytes) -> str:
    return cmd.split(b"\n", 1)[0].decode("utf-8", "replace")


class LookupPeer:
    """One nsqlookupd: a thread that keeps this node registered with it."""

    def __init__(self, address: str, identity: Callable[[], Dict[str, Any]],
                 registrations: Callable[[], List[bytes]], max_response_size: int = 5242880) -> None:
        self.address = address
        self._identity = identity
        self._registrations = registrations
        self._max_response_size = max_response_size
        self.info: Dict[str, Any] = {}  # lookupd's IDENTIFY answer, kept across reconnects
        self.lock = threading.Lock()
        self._pending: List[bytes] = []
        self._synced = False  # registrations snapshot sent on the current connection
        self._sock: Optional[socket.socket] = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()  # send() and stop() wake the thread's select
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.thread = threading.Thread(target=self._run, name="nsqd-lookup-%s" % address, daemon=True)

    def __repr__(self) -> str:
        return "LookupPeer(%s)" % self.address

    # ------------------------------------------------------------ control

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the thread to close the connection and end (see join)."""
        self._stop.set()
        self._wake()
        with self.lock:
            sock = self._sock
        if sock is not None:
            try:  # unblock a read waiting for lookupd
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join(self, timeout: Optional[float] = None) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)

    @property
    def connected(self) -> bool:
        """True once the current connection has IDENTIFYed and sent its registrations."""
        with self.lock:
            return self._synced

    @property
    def http_address(self) -> Optional[str]:
        """lookupd's HTTP address as it announced itself (None before the first IDENTIFY)."""
        host = self.info.get("broadcast_address")
        port = self.info.get("http_port")
        if not host or not port:
            return None
        return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)

    def send(self, commands: Sequence[bytes]) -> None:
        """Queue commands for this lookupd (dropped while disconnected: reconnecting re-registers all)."""
        with self.lock:
            if not self._synced or self._stop.is_set():
                return
            self._pending.extend(commands)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # buffer full (a wake-up is pending anyway) or already closed

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        backoff = BACKOFF_MIN
        try:
            while not self._stop.is_set():
                try:
                    self._connect()
                except (OSError, LookupdError, ValueError) as e:
                    self._close()
                    if self._stop.is_set():
                        break
                    log.error("LOOKUPD(%s): connection failed - %s (retrying in %s)",
                              self.address, e, _seconds(backoff))
                    if self._stop.wait(backoff):
                        break
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_MIN
                try:
                    self._session()
                except (OSError, LookupdError) as e:
                    if not self._stop.is_set():
                        log.error("LOOKUPD(%s): %s", self.address, e)
                self._close()
                if self._stop.wait(backoff):
                    break
        except Exception:  # noqa: BLE001 - a bug here must not go unnoticed, nor kill nsqd
            log.exception("LOOKUPD(%s): peer thread failed", self.address)
        finally:
            self._close()
            self._wake_r.close()
            self._wake_w.close()
            log.info("LOOKUP(%s): closing", self.address)

    def _connect(self) -> None:
        """Dial, magic, IDENTIFY, then REGISTER the node's whole topology."""
        log.info("LOOKUP connecting to %s", self.address)
        try:
            host, port = split_address(self.address, "lookupd-tcp-address")
        except FlagError as e:  # e.g. set by PUT /config, which takes any string
            raise LookupdError(str(e)) from None
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        sock.settimeout(IO_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self._sock = sock
        if self._stop.is_set():
            raise LookupdError("stopping")
        sock.sendall(wire.MAGIC_V1)
        body = json.dumps(self._identity(), sort_keys=True, separators=(",", ":")).encode()
        resp = self._command(wire.command(b"IDENTIFY", body=body))
        try:
            info = json.loads(resp)
        except ValueError:
            raise LookupdError("parsing response - %r" % resp[:200]) from None
        if not isinstance(info, dict):
            raise LookupdError("parsing response - %r" % resp[:200])
        self.info = info
        log.info("LOOKUPD(%s): peer info {TCPPort:%s HTTPPort:%s Version:%s BroadcastAddress:%s}",
                 self.address, info.get("tcp_port", 0), info.get("http_port", 0),
                 info.get("version", ""), info.get("broadcast_address", ""))
        if not info.get("broadcast_address"):
            log.error("LOOKUPD(%s): no broadcast address", self.address)
        # From here on changes are queued; the snapshot (taken after) covers earlier ones.
        with self.lock:
            self._synced = True
            self._pending.clear()
        for cmd in self._registrations():
            log.info("LOOKUPD(%s): %s", self.address, _describe(cmd))
            self._command(cmd)

    def _session(self) -> None:
        """Send queued changes as they come and PING every PING_INTERVAL until a failure or stop."""
        sock = self._sock
        assert sock is not None
        next_ping = time.monotonic() + PING_INTERVAL
        while not self._stop.is_set():
            with self.lock:
                pending, self._pending = self._pending, []
            for cmd in pending:
                log.info("LOOKUPD(%s): %s", self.address, _describe(cmd))
                self._command(cmd)
            now = time.monotonic()
            if now >= next_ping:
                log.debug("LOOKUPD(%s): sending heartbeat", self.address)
                self._command(b"PING\n")
                next_ping = time.monotonic() + PING_INTERVAL
                continue
            readable, _, _ = select.select([sock, self._wake_r], [], [], next_ping - now)
            if self._wake_r in readable:
                try:
                    while self._wake_r.recv(512):
                        pass
                except OSError:
                    pass  # drained (BlockingIOError)
            if sock in readable:
                # lookupd never speaks unasked: this is EOF (it went away) or garbage
                data = sock.recv(512)
                if not data:
                    raise LookupdError("connection closed by lookupd")
                raise LookupdError("unexpected data from lookupd: %r" % data[:64])

    def _command(self, cmd: bytes) -> bytes:
        """One round trip: write cmd, read int32 size + answer; an `E_...` answer raises."""
        sock = self._sock
        if sock is None:
            raise LookupdError("not connected")
        sock.sendall(cmd)
        (size,) = _SIZE.unpack(self._read_exactly(sock, 4))
        if size < 0 or size > self._max_response_size:
            raise LookupdError("response body size (%d) is greater than limit (%d)"
                               % (size, self._max_response_size))
        resp = self._read_exactly(sock, size)
        if resp.startswith(b"E_"):
            raise LookupdError("%s - %s" % (_describe(cmd), resp.decode("utf-8", "replace")))
        return resp

    @staticmethod
    def _read_exactly(sock: socket.socket, n: int) -> bytes:
        parts = []
        while n > 0:
            chunk = sock.recv(min(n, 65536))
            if not chunk:
                raise LookupdError("connection closed by lookupd")
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _close(self) -> None:
        with self.lock:
            sock, self._sock = self._sock, None
            self._synced = False
            self._pending.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def _seconds(s: float) -> str:
    return ("%.2f" % s).rstrip("0").rstrip(".") + "s"


class Lookup:
    """The node's lookupd peers; an NSQD change listener (`listener(topic, channel, deleted)`)."""

    def __init__(self, nsqd: "LookupNode") -> None:
        self.nsqd = nsqd
        self.lock = threading.Lock()
        self._peers: Dict[str, LookupPeer] = {}
        self._stopped = False
        self.hostname = socket.gethostname()

    def __repr__(self) -> str:
        return "Lookup(%s)" % ",".join(self.addresses())

    # ------------------------------------------------------------ peers

    def set_addresses(self, addresses: Sequence[str]) -> None:
        """Make the peers exactly `addresses`: start new ones, stop the ones left out."""
        wanted: List[str] = []
        for addr in addresses:
            addr = str(addr).strip()
            if addr and addr not in wanted:
                wanted.append(addr)
        with self.lock:
            if self._stopped:
                return
            gone = [p for a, p in self._peers.items() if a not in wanted]
            new: List[LookupPeer] = []
            peers: Dict[str, LookupPeer] = {}
            for addr in wanted:
                peer = self._peers.get(addr)
                if peer is None:
                    peer = LookupPeer(addr, self.identity, self.registrations,
                                      max_response_size=self.nsqd.opts.max_body_size)
                    new.append(peer)
                peers[addr] = peer
            self._peers = peers
        for peer in gone:
            log.info("LOOKUP(%s): removing peer", peer.address)
            peer.stop()
        for peer in new:
            log.info("LOOKUP(%s): adding peer", peer.address)
            peer.start()
        for peer in gone:
            peer.join(CONNECT_TIMEOUT + 1.0)

    def addresses(self) -> List[str]:
        with self.lock:
            return list(self._peers)

    def peers(self) -> List[LookupPeer]:
        with self.lock:
            return list(self._peers.values())

    def lookupd_http_addresses(self) -> List[str]:
        """HTTP addresses of the lookupds that have answered an IDENTIFY (as NSQ's lookupdHTTPAddrs)."""
        return [a for a in (p.http_address for p in self.peers()) if a]

    def precreate_channels(self, topic: Any) -> None:
        """Give a new topic the channels lookupd knows for it, so no message misses one (as NSQ).

        Blocking: asks each lookupd that has answered an IDENTIFY for
        `/channels?topic=`; ephemeral channels are left for their consumers.
        """
        addrs = self.lookupd_http_addresses()
        if not addrs:
            if self.addresses():
                log.error("no available nsqlookupd to query for channels to pre-create for topic %s", topic.name)
            return
        names: List[str] = []
        errors = []
        for addr in addrs:
            try:
                found = self._topic_channels(addr, topic.name)
            except (OSError, ValueError, LookupdError) as e:
                errors.append("%s: %s" % (addr, e))
                continue
            names.extend(n for n in found if n not in names)
        if errors:
            log.warning("failed to query nsqlookupd for channels to pre-create for topic %s - %s",
                        topic.name, "; ".join(errors))
        for name in sorted(names):
            if wire.is_ephemeral(name) or not wire.is_valid_channel_name(name):
                continue
            try:
                topic.get_channel(name)
            except ExitingError:
                return

    def _topic_channels(self, addr: str, topic: str) -> List[str]:
        try:
            split_address(addr, "lookupd-http-address")
        except FlagError as e:
            raise LookupdError(str(e)) from None
        from .http_client import HTTPClient, HTTPClientError

        opts = self.nsqd.opts
        http = HTTPClient(opts.http_client_connect_timeout, opts.http_client_request_timeout)
        try:
            data = http.get_json(addr, "/channels", topic=topic)  # the pre-1.0 shape is unwrapped
        except HTTPClientError as e:
            raise LookupdError(str(e)) from None
        finally:
            http.close()
        channels = data.get("channels") if isinstance(data, dict) else None
        return [c for c in channels or [] if isinstance(c, str)]

    def stop(self) -> None:
        """Close every connection and join the peer threads (NSQD.exit calls this)."""
        with self.lock:
            self._stopped = True
            peers = list(self._peers.values())
            self._peers = {}
        for peer in peers:
            peer.stop()
        for peer in peers:
            peer.join(CONNECT_TIMEOUT + 1.0)
        if peers:
            log.info("LOOKUP: closing")

    # ------------------------------------------------------------ what lookupd is told

    def identity(self) -> Dict[str, Any]:
        """The IDENTIFY body: where consumers should find this node."""
        nsqd = self.nsqd
        opts = nsqd.opts
        return {
            "broadcast_address": opts.broadcast_address,
            "hostname": self.hostname,
            "http_port": opts.broadcast_http_port or nsqd.http_address[1],
            "tcp_port": opts.broadcast_tcp_port or nsqd.tcp_address[1],
            "version": NSQ_VERSION,
        }

    def registrations(self) -> List[bytes]:
        """REGISTER commands for the node's current topics and channels."""
        cmds = []
        for topic in self.nsqd.topic_list():
            channels = topic.channel_list()
            if not channels:
                cmds.append(register(topic.name))
            for channel in channels:
                cmds.append(register(topic.name, channel.name))
        return cmds

    def __call__(self, topic: Any, channel: Any, deleted: bool) -> None:
        """NSQD change listener: queue REGISTER/UNREGISTER for every peer."""
        if channel is not None:
            cmds = [(unregister if deleted else register)(topic.name, channel.name)]
        elif deleted:
            # as NSQ: the topic goes first, then each of its channels is deleted
            cmds = [unregister(topic.name)] + [unregister(topic.name, c.name) for c in topic.channel_list()]
        else:
            cmds = [register(topic.name)]
        for peer in self.peers():
            peer.send(cmds)
