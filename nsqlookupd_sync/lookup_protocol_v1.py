"""The `  V1` lookup protocol that nsqd nodes speak to nsqlookupd over TCP.

Commands are lines (`NAME arg...\\n`, split on single spaces after trimming):

  PING                        -> OK (and refreshes the peer's last update)
  IDENTIFY + int32 size + JSON -> lookupd's own JSON (once per connection)
  REGISTER topic [channel]     -> OK
  UNREGISTER topic [channel]   -> OK

Responses, including errors (`E_CODE description`), are an int32 size and
the data, with no frame type (unlike nsqd's V2 frames).  Every lookup
protocol error is fatal: it is sent, then the connection is closed.  When the
connection closes, the peer is removed from every registration it was in.
"""
from __future__ import annotations

import logging
import struct
from typing import Any, BinaryIO, List, Optional, Protocol

from nsqd_sync import NSQ_VERSION, gojson
from nsqd_sync.durations import format_duration_ns
from nsqd_sync.wire import is_ephemeral, is_valid_channel_name, is_valid_topic_name

from .registration_db import PeerInfo, Producer, Registration


logger = logging.getLogger(__name__)


class LookupdNode(Protocol):
    """What the V1 protocol needs of its nsqlookupd (nsqlookupd.NSQLookupd is the one)."""

    db: Any
    opts: Any
    hostname: Any
    real_http_port: Any
    real_tcp_port: Any

_SIZE = struct.Struct(">i")
_READ_CHUNK = 65536

_PEER_FIELDS = {
    "remote_address": str,
    "hostname": str,
    "broadcast_address": str,
    "tcp_port": int,
    "http_port": int,
    "version": str,
}


class ProtocolError(Exception):
    """A client error carrying its wire code; lookupd's are all fatal."""

    def __init__(self, code: str, description: str, fatal: bool = True) -> None:
        super().__init__(code, description)
        self.code = code
        self.description = description
        self.fatal = fatal

    def __str__(self) -> str:
        return "%s %s" % (self.code, self.description)


def encode_response(data: bytes) -> bytes:
    """int32 size + data: how lookupd answers."""
    return _SIZE.pack(len(data)) + data


class ClientV1:
    """One connected nsqd: its socket and, after IDENTIFY, its PeerInfo."""

    def __init__(self, sock, rfile: BinaryIO, remote_address: str) -> None:
        self.sock = sock
        self.rfile = rfile
        self.remote_address = remote_address
        self.peer_info: Optional[PeerInfo] = None

    def __str__(self) -> str:
        return self.remote_address

    def send(self, data: bytes) -> None:
        self.sock.sendall(encode_response(data))

    def read_exactly(self, n: int) -> bytes:
        """n bytes, read as they arrive (never allocating n up front); short on EOF."""
        parts = []
        left = n
        while left > 0:
            chunk = self.rfile.read(min(left, _READ_CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)


class LookupProtocolV1:
    """Runs one connection's command loop; one method per command."""

    def __init__(self, nsqlookupd: "LookupdNode") -> None:
        self.nsqlookupd = nsqlookupd
        self.db = nsqlookupd.db

    def io_loop(self, client: ClientV1) -> Optional[str]:
        """Serve commands until EOF or a fatal error; returns why the loop ended."""
        reason: Optional[str] = None
        try:
            while True:
                line = client.rfile.readline()
                if not line.endswith(b"\n"):
                    reason = "EOF"
                    break
                params = line.strip().decode("utf-8", "surrogateescape").split(" ")
                try:
                    response = self.exec(client, params)
                except ProtocolError as err:
                    logger.error("[%s] - %s", client, err)
                    client.send(str(err).encode("utf-8", "surrogateescape"))
                    if err.fatal:
                        reason = str(err)
                        break
                    continue
                if response is not None:
                    client.send(response)
        except OSError as e:
            reason = str(e)
        finally:
            logger.info("PROTOCOL(V1): [%s] exiting ioloop", client)
            self._unregister_all(client)
        return reason

    def _unregister_all(self, client: ClientV1) -> None:
        if client.peer_info is None:
            return
        peer_id = client.peer_info.id
        for r in self.db.lookup_registrations(peer_id):
            removed, _ = self.db.remove_producer(r, peer_id)
            if removed:
                logger.info("DB: client(%s) UNREGISTER category:%s key:%s subkey:%s",
                            client, r.category, r.key, r.subkey)

    def exec(self, client: ClientV1, params: List[str]) -> Optional[bytes]:
        name = params[0]
        if name == "PING":
            return self.PING(client, params)
        if name == "IDENTIFY":
            return self.IDENTIFY(client, params[1:])
        if name == "REGISTER":
            return self.REGISTER(client, params[1:])
        if name == "UNREGISTER":
            return self.UNREGISTER(client, params[1:])
        raise ProtocolError("E_INVALID", "invalid command %s" % name)

    # ------------------------------------------------------------ commands

    def PING(self, client: ClientV1, params: List[str]) -> bytes:
        peer = client.peer_info
        if peer is not None:
            before = peer.last_update
            peer.touch()
            logger.info("CLIENT(%s): pinged (last ping %s)", peer.id,
                        format_duration_ns(peer.last_update - before))
        return b"OK"

    def IDENTIFY(self, client: ClientV1, params: List[str]) -> bytes:
        if client.peer_info is not None:
            raise ProtocolError("E_INVALID", "cannot IDENTIFY again")
        head = client.read_exactly(4)
        if len(head) != 4:
            raise ProtocolError("E_BAD_BODY", "IDENTIFY failed to read body size")
        (size,) = _SIZE.unpack(head)
        if size < 0:
            raise ProtocolError("E_BAD_BODY", "IDENTIFY failed to read body")
        body = client.read_exactly(size)
        if len(body) != size:
            raise ProtocolError("E_BAD_BODY", "IDENTIFY failed to read body")
        try:
            fields = gojson.decode_struct(body, _PEER_FIELDS)
        except ValueError:
            raise ProtocolError("E_BAD_BODY", "IDENTIFY failed to decode JSON body") from None
        fields["remote_address"] = client.remote_address
        peer = PeerInfo(id=client.remote_address, **fields)
        if not peer.broadcast_address or not peer.tcp_port or not peer.http_port or not peer.version:
            raise ProtocolError("E_BAD_BODY", "IDENTIFY missing fields")
        peer.touch()
        logger.info("CLIENT(%s): IDENTIFY Address:%s TCP:%d HTTP:%d Version:%s",
                    client, peer.broadcast_address, peer.tcp_port, peer.http_port, peer.version)
        client.peer_info = peer
        if self.db.add_producer(Registration("client", "", ""), Producer(peer)):
            logger.info("DB: client(%s) REGISTER category:client key: subkey:", client)
        lookupd = self.nsqlookupd
        return gojson.dumps({
            "tcp_port": lookupd.real_tcp_port,
            "http_port": lookupd.real_http_port,
            "version": NSQ_VERSION,
            "broadcast_address": lookupd.opts.broadcast_address,
            "hostname": lookupd.hostname,
        }, sort_keys=True)

    def REGISTER(self, client: ClientV1, params: List[str]) -> bytes:
        peer = self._require_identified(client)
        topic, channel = _topic_channel("REGISTER", params)
        if channel:
            if self.db.add_producer(Registration("channel", topic, channel), Producer(peer)):
                logger.info("DB: client(%s) REGISTER category:channel key:%s subkey:%s",
                            client, topic, channel)
        if self.db.add_producer(Registration("topic", topic, ""), Producer(peer)):
            logger.info("DB: client(%s) REGISTER category:topic key:%s subkey:", client, topic)
        return b"OK"

    def UNREGISTER(self, client: ClientV1, params: List[str]) -> bytes:
        peer = self._require_identified(client)
        topic, channel = _topic_channel("UNREGISTER", params)
        db = self.db
        if channel:
            key = Registration("channel", topic, channel)
            removed, left = db.remove_producer(key, peer.id)
            if removed:
                logger.info("DB: client(%s) UNREGISTER category:channel key:%s subkey:%s",
                            client, topic, channel)
            # an ephemeral channel goes away with its last producer
            if left == 0 and is_ephemeral(channel):
                db.remove_registration(key)
            return b"OK"
        # a topic unregistration takes the peer off the topic's channels too
        # (nsqd unregisters channels first, so finding any is unexpected)
        for r in db.find_registrations("channel", topic, "*"):
            removed, _ = db.remove_producer(r, peer.id)
            if removed:
                logger.warning("client(%s) unexpected UNREGISTER category:channel key:%s subkey:%s",
                               client, topic, r.subkey)
        key = Registration("topic", topic, "")
        removed, left = db.remove_producer(key, peer.id)
        if removed:
            logger.info("DB: client(%s) UNREGISTER category:topic key:%s subkey:", client, topic)
        # an ephemeral topic goes away with its last producer
        if left == 0 and is_ephemeral(topic):
            db.remove_registration(key)
        return b"OK"

    @staticmethod
    def _require_identified(client: ClientV1) -> PeerInfo:
        if client.peer_info is None:
            raise ProtocolError("E_INVALID", "client must IDENTIFY")
        return client.peer_info


def _topic_channel(command: str, params: List[str]):
    if not params:
        raise ProtocolError("E_INVALID", "%s insufficient number of params" % command)
    topic = params[0]
    channel = params[1] if len(params) >= 2 else ""
    if not is_valid_topic_name(topic):
        raise ProtocolError("E_BAD_TOPIC", "%s topic name '%s' is not valid" % (command, topic))
    if channel and not is_valid_channel_name(channel):
        raise ProtocolError("E_BAD_CHANNEL", "%s channel name '%s' is not valid" % (command, channel))
    return topic, channel
