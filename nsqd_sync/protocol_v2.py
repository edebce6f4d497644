"""The V2 protocol: the read loop of one connection and one method per command.

The read loop takes whatever the socket has (up to 256 KB), runs every
complete command in it, and answers them all with one `sendall`.  A run of
`FIN <id>` lines is split in one pass and finished in one lock round.
Commands with a body (IDENTIFY, PUB, MPUB, DPUB, AUTH) are validated as NSQ
does — parameters, then the size, then the body — before the body has
arrived, so a bad size is refused without reading it.

Errors are `ProtocolError`s with NSQ's code and text; the loop turns them
into error frames in one place, and closes the connection after a fatal one.
"""
from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, TYPE_CHECKING, Tuple

from . import wire
from .client_v2 import STATE_CLOSING, STATE_INIT, STATE_SUBSCRIBED, ClientNode, ClientV2
from .diskqueue import release_in_slices
from .errors import BackendError, ExitingError, ProtocolError, fatal, go_quote, nonfatal
from .transport import DeflateTransport, SnappyTransport, TLSTransport

if TYPE_CHECKING:  # pragma: no cover
    from .topic import Topic

log = logging.getLogger(__name__)


class ProtocolNode(ClientNode, Protocol):
    """What the V2 protocol needs of its node (nsqd.NSQD is the one); its clients need a ClientNode."""

    opts: Any
    tls_context: Any

    def add_client(self, *args: Any, **kwargs: Any) -> Any: ...
    def remove_client(self, *args: Any, **kwargs: Any) -> Any: ...
    def authenticate(self, *args: Any, **kwargs: Any) -> Any: ...
    def check_auth(self, *args: Any, **kwargs: Any) -> Any: ...
    def get_topic(self, *args: Any, **kwargs: Any) -> Any: ...
    def identify_response(self, *args: Any, **kwargs: Any) -> Any: ...
    def message_heads(self, *args: Any, **kwargs: Any) -> Any: ...
    def publish_deferred(self, *args: Any, **kwargs: Any) -> Any: ...
    def publish_messages(self, *args: Any, **kwargs: Any) -> Any: ...
    def publish_one(self, *args: Any, **kwargs: Any) -> Any: ...

RECV_SIZE = 64 * 1024  # below glibc's mmap threshold (128 KB): no mmap/munmap per read
MAX_LINE = 16 * 1024  # NSQ reads command lines through a 16 KiB bufio.Reader: a longer line ends the connection
_FIN_LINE = 21  # b"FIN " + 16-byte id + b"\n"

_unpack_int32 = struct.Struct(">i").unpack_from
_BODY_COMMANDS = frozenset((b"IDENTIFY", b"PUB", b"MPUB", b"DPUB", b"AUTH"))


def _parse_int(raw: bytes) -> int:
    """NSQ's ByteToBase10: decimal digits only, into a uint64 (wrapping as Go's arithmetic does)."""
    if not raw or not raw.isdigit():
        raise ValueError(raw)
    return int(raw) % (1 << 64)


def _int64(n: int) -> int:
    """Go's int64(uint64): the same 64 bits read as signed."""
    return n - (1 << 64) if n >= 1 << 63 else n


class ProtocolV2:
    """Runs one V2 connection from the magic to the close."""

    def __init__(self, nsqd: "ProtocolNode", sock: socket.socket, address: Tuple[str, int]) -> None:
        self.nsqd = nsqd
        self.opts = nsqd.opts
        self.sock = sock
        self.client = ClientV2(nsqd, sock, address)
        self._closing = False
        self._upgraded = False
        self._out: List[bytes] = []
        self._commands: Dict[bytes, Callable] = {
            b"NOP": self.NOP, b"RDY": self.RDY, b"REQ": self.REQ, b"TOUCH": self.TOUCH,
            b"SUB": self.SUB, b"CLS": self.CLS,
        }
        self._body_commands: Dict[bytes, Tuple[Callable, Callable]] = {
            b"IDENTIFY": (self._check_identify, self.IDENTIFY),
            b"PUB": (self._check_pub, self.PUB),
            b"MPUB": (self._check_mpub, self.MPUB),
            b"DPUB": (self._check_dpub, self.DPUB),
            b"AUTH": (self._check_auth, self.AUTH),
        }

    # ------------------------------------------------------------ the loop

    def io_loop(self, initial: bytes = b"") -> None:
        client = self.client
        self.nsqd.add_client(client)
        client.apply_read_timeout()
        client.start_pump()
        pending = bytearray(initial)  # an incomplete command left over from the last read
        reason = ""
        try:
            while not self._closing:
                try:
                    data = client.transport.recv(RECV_SIZE)
                except (socket.timeout, BlockingIOError):  # SO_RCVTIMEO: two heartbeats missed
                    reason = "failed to read command - timeout (missed heartbeats)"
                    break
                except OSError as e:
                    reason = "failed to read command - %s" % e
                    break
                if not data:
                    break
                if pending:
                    pending += data
                    work = pending
                else:
                    work = data  # the common case: parse the received bytes without copying
                consumed = self._process(work)
                if self._closing:
                    break
                if work is pending:
                    del pending[:consumed]
                elif consumed < len(work):
                    pending = bytearray(work[consumed:])
                if len(pending) >= MAX_LINE and pending.find(b"\n") < 0:
                    # nsqd 1.3.0: ReadSlice fails with a full buffer; no error frame, just the close
                    reason = "failed to read command - bufio: buffer full"
                    break
        except Exception:  # noqa: BLE001 - one client's bug must not take the node down
            log.exception("PROTOCOL(V2): [%s] unexpected error", client.remote_address)
        finally:
            if reason:
                log.error("PROTOCOL(V2): [%s] %s", client.remote_address, reason)
            log.info("PROTOCOL(V2): [%s] exiting ioloop", client.remote_address)
            self._closing = True
            client.close_connection()
            client.on_disconnect()
            self.nsqd.remove_client(client)

    def _process(self, buf: "bytes | bytearray") -> int:
        """Run every complete command in buf; return how many bytes were consumed."""
        pos = 0
        n = len(buf)
        fins: List[bytes] = []
        out = self._out
        while pos < n:
            nl = -1
            try:
                if buf.startswith(b"FIN ", pos):
                    after = self._collect_fins(buf, pos, fins)
                    if after != pos:
                        pos = after
                        continue
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    break
                line = bytes(buf[pos:nl])
                if line.endswith(b"\r"):
                    line = line[:-1]
                params = line.split(b" ")
                name = params[0]
                if name == b"FIN":
                    fins.append(self._fin_id(params))
                    pos = nl + 1
                    continue
                if fins:
                    self._finish(fins)
                    fins = []
                body_cmd = self._body_commands.get(name)
                if body_cmd is None:
                    handler = self._commands.get(name)
                    if handler is None:
                        self._check_tls(name)
                        raise fatal("E_INVALID", "invalid command %s" % name.decode("utf-8", "surrogateescape"))
                    self._check_tls(name)
                    response = handler(params)
                    pos = nl + 1
                else:
                    check, handler = body_cmd
                    if name != b"IDENTIFY":
                        self._check_tls(name)
                    limit = check(params)
                    if nl + 5 > n:
                        break
                    (size,) = _unpack_int32(buf, nl + 1)
                    limit(size)
                    end = nl + 5 + size
                    if end > n:
                        break
                    response = handler(params, buf, nl + 5, end)
                    pos = end
                    if self._upgraded:  # IDENTIFY upgraded the transport: the rest of buf went to it
                        self._upgraded = False
                        pos = n
                        break
                if response is not None:
                    out.append(response)
            except ProtocolError as e:
                fins = []
                out.append(wire.error_frame(e.frame_data()))
                self._log_error(e)
                if e.fatal:
                    self._closing = True
                    pos = n
                    break
                pos = nl + 1 if nl >= 0 else n  # non-fatal errors come from line commands
        if fins and not self._closing:
            try:
                self._finish(fins)
            except ProtocolError as e:
                out.append(wire.error_frame(e.frame_data()))
                self._log_error(e)
                self._closing = True
        self._flush()
        return pos

    def _collect_fins(self, buf: bytearray, pos: int, fins: List[bytes]) -> int:
        """Split a run of `FIN <16-byte id>\\n` lines in one pass."""
        end = buf.rfind(b"\n") + 1
        count = (end - pos) // _FIN_LINE
        if count <= 0:
            return pos
        chunk = bytes(buf[pos:pos + count * _FIN_LINE])
        if (chunk[3::_FIN_LINE].count(32) == count and chunk[20::_FIN_LINE].count(10) == count
                and chunk[0::_FIN_LINE].count(70) == count and chunk[1::_FIN_LINE].count(73) == count
                and chunk[2::_FIN_LINE].count(78) == count):
            fins.extend([chunk[i:i + 16] for i in range(4, len(chunk), _FIN_LINE)])
            return pos + len(chunk)
        # mixed content: take the FIN lines one at a time up to the first other line
        while buf.startswith(b"FIN ", pos) and buf[pos + 20:pos + 21] == b"\n":
            fins.append(bytes(buf[pos + 4:pos + 20]))
            pos += _FIN_LINE
        return pos

    def _flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            if not self.client.send(data):
                self._closing = True

    def _log_error(self, err: ProtocolError) -> None:
        if err.fatal:
            log.error("[%s] - %s", self.client.remote_address, err)
        else:
            log.debug("[%s] - %s", self.client.remote_address, err)

    def _send_error(self, err: ProtocolError) -> None:
        self._log_error(err)
        self.client.send(wire.error_frame(err.frame_data()))

    def _check_tls(self, name: bytes) -> None:
        if self.opts.tls_required and not self.client.tls:
            raise fatal("E_INVALID", "cannot %s in current state (TLS required)" % name.decode())

    # ------------------------------------------------------------ FIN / REQ / TOUCH / RDY

    def _fin_id(self, params: List[bytes]) -> bytes:
        self._require_subscribed("FIN")
        if len(params) < 2:
            raise fatal("E_INVALID", "FIN insufficient number of params")
        return self._message_id(params[1])

    @staticmethod
    def _message_id(raw: bytes) -> bytes:
        if len(raw) != wire.MSG_ID_LENGTH:
            raise fatal("E_INVALID", "invalid message ID")
        return raw

    def _require_subscribed(self, cmd: str) -> None:
        if self.client.state not in (STATE_SUBSCRIBED, STATE_CLOSING):
            self._check_tls(cmd.encode())  # FIN skips the loop's check (never subscribed without TLS)
            raise fatal("E_INVALID", "cannot %s in current state" % cmd)

    def _finish(self, ids: List[bytes]) -> None:
        self._require_subscribed("FIN")
        channel = self.client.channel
        missing = channel.finish_message(self.client, ids) if channel is not None else ids
        for mid in missing:
            err = nonfatal("E_FIN_FAILED", "FIN %s failed %s"
                           % (mid.decode("ascii", "replace"), self._why_not_in_flight(mid)))
            self._log_error(err)
            self._out.append(wire.error_frame(err.frame_data()))

    def _why_not_in_flight(self, mid: bytes) -> str:
        channel = self.client.channel
        if channel is not None and channel.find_owner(mid) is not None:
            return "client does not own message"
        return "ID not in flight"

    def RDY(self, params: List[bytes]) -> Optional[bytes]:
        client = self.client
        if client.state == STATE_CLOSING:
            return None  # ignore RDY after CLS
        if client.state != STATE_SUBSCRIBED:
            raise fatal("E_INVALID", "cannot RDY in current state")
        count = 1
        if len(params) > 1:
            try:
                count = _int64(_parse_int(params[1]))
            except ValueError:
                raise fatal("E_INVALID", "RDY could not parse count %s"
                            % params[1].decode("utf-8", "replace")) from None
        max_rdy = self.opts.max_rdy_count
        if count < 0 or count > max_rdy:
            raise fatal("E_INVALID", "RDY count %d out of range 0-%d" % (count, max_rdy))
        client.set_ready(count)
        return None

    def REQ(self, params: List[bytes]) -> Optional[bytes]:
        self._require_subscribed("REQ")
        if len(params) < 3:
            raise fatal("E_INVALID", "REQ insufficient number of params")
        mid = self._message_id(params[1])
        try:
            timeout_ms = _parse_int(params[2])
        except ValueError:
            raise fatal("E_INVALID", "REQ could not parse timeout %s"
                        % params[2].decode("utf-8", "replace")) from None
        max_ms = int(self.opts.max_req_timeout * 1000)
        if timeout_ms > max_ms:
            # NSQ 1.x clamps an over-long requeue delay to --max-req-timeout
            timeout_ms = max_ms
        channel = self.client.channel
        if channel is None or not channel.requeue_message(self.client, mid, timeout_ms / 1000.0):
            raise nonfatal("E_REQ_FAILED", "REQ %s failed %s"
                           % (mid.decode("ascii", "replace"), self._why_not_in_flight(mid)))
        return None

    def TOUCH(self, params: List[bytes]) -> Optional[bytes]:
        self._require_subscribed("TOUCH")
        if len(params) < 2:
            raise fatal("E_INVALID", "TOUCH insufficient number of params")
        mid = self._message_id(params[1])
        channel = self.client.channel
        if channel is None or not channel.touch_message(self.client, mid):
            raise nonfatal("E_TOUCH_FAILED", "TOUCH %s failed %s"
                           % (mid.decode("ascii", "replace"), self._why_not_in_flight(mid)))
        return None

    def NOP(self, params: List[bytes]) -> Optional[bytes]:
        return None

    def CLS(self, params: List[bytes]) -> Optional[bytes]:
        if self.client.state != STATE_SUBSCRIBED:
            raise fatal("E_INVALID", "cannot CLS in current state")
        self.client.start_close()
        return wire.CLOSE_WAIT_FRAME

    # ------------------------------------------------------------ SUB

    def SUB(self, params: List[bytes]) -> Optional[bytes]:
        client = self.client
        if client.state != STATE_INIT:
            raise fatal("E_INVALID", "cannot SUB in current state")
        if client.heartbeat_interval <= 0:
            raise fatal("E_INVALID", "cannot SUB with heartbeats disabled")
        if len(params) < 3:
            raise fatal("E_INVALID", "SUB insufficient number of parameters")
        topic_name = params[1].decode("utf-8", "surrogateescape")
        if not wire.is_valid_topic_name(topic_name):
            raise fatal("E_BAD_TOPIC", "SUB topic name %s is not valid" % _quote(topic_name))
        channel_name = params[2].decode("utf-8", "surrogateescape")
        if not wire.is_valid_channel_name(channel_name):
            raise fatal("E_BAD_CHANNEL", "SUB channel name %s is not valid" % _quote(channel_name))
        self.nsqd.check_auth(client, "SUB", topic_name, channel_name)
        # a concurrent delete of an ephemeral topic/channel may race us: retry like NSQ
        for _ in range(100):
            topic = self.nsqd.get_topic(topic_name)
            try:
                channel = topic.get_channel(channel_name)
                channel.add_client(client)
            except ExitingError:
                time.sleep(0.001)
                continue
            except OverflowError:
                raise fatal("E_SUB_FAILED", "SUB failed consumers for %s:%s exceeds limit of %d"
                            % (topic_name, channel_name, self.opts.max_channel_consumers)) from None
            break
        else:
            raise fatal("E_SUB_FAILED", "SUB failed to deleted topic/channel")  # nsqd 1.3.0's words
        client.subscribe(channel)
        # answer OK before any message can follow it on the wire
        self._out.append(wire.OK_FRAME)
        self._flush()
        return None

    # ------------------------------------------------------------ body commands
    # Each has a check(params) run before the body arrives, returning a
    # check(size) for the size field; the command itself gets (params, buf, start, end).

    def _check_identify(self, params: List[bytes]) -> Callable[[int], None]:
        if self.client.state != STATE_INIT:
            raise fatal("E_INVALID", "cannot IDENTIFY in current state")

        def check_size(size: int) -> None:
            if size > self.opts.max_body_size:
                raise fatal("E_BAD_BODY", "IDENTIFY body too big %d > %d" % (size, self.opts.max_body_size))
            if size <= 0:
                raise fatal("E_BAD_BODY", "IDENTIFY invalid body size %d" % size)
        return check_size

    def IDENTIFY(self, params: List[bytes], buf: bytearray, start: int, end: int) -> Optional[bytes]:
        client = self.client
        try:
            data = json.loads(bytes(buf[start:end]))
        except (ValueError, RecursionError):
            raise fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body") from None
        if data is None:  # Go decodes `null` into the struct as a no-op
            data = {}
        if not isinstance(data, dict):
            raise fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body")
        client.identify(data)
        log.debug("PROTOCOL(V2): [%s] IDENTIFY %s", client.remote_address, data)
        if not client.feature_negotiation:
            return wire.OK_FRAME
        features = self.nsqd.identify_response(client)
        response = wire.response_frame(json.dumps(features, separators=(",", ":")).encode())
        if not (features["tls_v1"] or features["snappy"] or features["deflate"]):
            return response
        self._out.append(response)
        self._upgrade(features, bytes(buf[end:]))
        return None

    def _upgrade(self, features: Dict[str, Any], leftover: bytes) -> None:
        """Send IDENTIFY's answer, then upgrade: TLS, then snappy or deflate, each answered OK inside.

        The write lock is held throughout, so no heartbeat slips in between.
        Bytes read past the IDENTIFY body belong to the new layers; `_process`
        stops at this command (`_upgraded`).
        """
        client = self.client
        self._upgraded = True
        data = b"".join(self._out)
        self._out.clear()
        step = "IDENTIFY"
        try:
            with client.write_lock:
                client.transport.sendall(data)
                if features["tls_v1"]:
                    step = "TLS"
                    log.info("PROTOCOL(V2): [%s] upgrading connection to TLS", client.remote_address)
                    tls = TLSTransport(client.transport, self.nsqd.tls_context, client.write_lock, leftover)
                    leftover = b""
                    tls.handshake()
                    client.transport = tls
                    client.tls = True
                    client.tls_common_name = tls.peer_common_name()
                    client.tls_version, client.tls_cipher_suite = tls.connection_state()
                    client.tls_negotiated_protocol_is_mutual = True  # as Go reports it (no ALPN)
                    tls.sendall(wire.OK_FRAME)
                if features["snappy"]:
                    step = "snappy"
                    log.info("PROTOCOL(V2): [%s] upgrading connection to snappy", client.remote_address)
                    client.transport = SnappyTransport(client.transport, leftover)
                    leftover = b""
                    client.snappy = True
                    client.transport.sendall(wire.OK_FRAME)
                if features["deflate"]:
                    step = "deflate"
                    level = features["deflate_level"]
                    log.info("PROTOCOL(V2): [%s] upgrading connection to deflate (level %d)",
                             client.remote_address, level)
                    client.transport = DeflateTransport(client.transport, level, leftover)
                    client.deflate = True
                    client.deflate_level = level
                    client.transport.sendall(wire.OK_FRAME)
        except (OSError, ValueError) as e:
            # nothing more can be said on this connection (a failed handshake has sent its alert)
            self._log_error(fatal("E_IDENTIFY_FAILED", "IDENTIFY failed %s" % _upgrade_error(step, e)))
            self._closing = True

    def _check_auth(self, params: List[bytes]) -> Callable[[int], None]:
        if self.client.state != STATE_INIT:
            raise fatal("E_INVALID", "cannot AUTH in current state")
        if len(params) != 1:
            raise fatal("E_INVALID", "AUTH invalid number of parameters")

        def check_size(size: int) -> None:
            if size > self.opts.max_body_size:
                raise fatal("E_BAD_BODY", "AUTH body too big %d > %d" % (size, self.opts.max_body_size))
            if size <= 0:
                raise fatal("E_BAD_BODY", "AUTH invalid body size %d" % size)
        return check_size

    def AUTH(self, params: List[bytes], buf: bytearray, start: int, end: int) -> Optional[bytes]:
        secret = bytes(buf[start:end]).decode("utf-8", "replace")
        response = self.nsqd.authenticate(self.client, secret)
        return wire.response_frame(response)

    def _topic_param(self, cmd: str, params: List[bytes], min_params: int) -> str:
        if len(params) < min_params:
            raise fatal("E_INVALID", "%s insufficient number of parameters" % cmd)
        name = params[1].decode("utf-8", "surrogateescape")
        if not wire.is_valid_topic_name(name):
            prefix = "E_BAD_TOPIC " if cmd == "MPUB" else ""  # NSQ 1.3.0 repeats the code for MPUB
            raise fatal("E_BAD_TOPIC", "%s%s topic name %s is not valid" % (prefix, cmd, _quote(name)))
        return name

    def _message_size_check(self, cmd: str) -> Callable[[int], None]:
        max_size = self.opts.max_msg_size

        def check_size(size: int) -> None:
            if size <= 0:
                raise fatal("E_BAD_MESSAGE", "%s invalid message body size %d" % (cmd, size))
            if size > max_size:
                raise fatal("E_BAD_MESSAGE", "%s message too big %d > %d" % (cmd, size, max_size))
        return check_size

    def _check_pub(self, params: List[bytes]) -> Callable[[int], None]:
        self._topic_param("PUB", params, 2)
        return self._message_size_check("PUB")

    def PUB(self, params: List[bytes], buf: bytearray, start: int, end: int) -> Optional[bytes]:
        topic_name = params[1].decode()
        self.nsqd.check_auth(self.client, "PUB", topic_name, "")
        body = bytes(buf[start:end])
        try:
            self.nsqd.publish_one(topic_name, body, self.client)
        except (BackendError, ExitingError) as e:
            raise fatal("E_PUB_FAILED", "PUB failed %s" % e) from None
        return wire.OK_FRAME

    def _check_mpub(self, params: List[bytes]) -> Callable[[int], None]:
        self._topic_param("MPUB", params, 2)

        def check_size(size: int) -> None:
            if size <= 0:
                raise fatal("E_BAD_BODY", "MPUB invalid body size %d" % size)
            if size > self.opts.max_body_size:
                raise fatal("E_BAD_BODY", "MPUB body too big %d > %d" % (size, self.opts.max_body_size))
        return check_size

    def MPUB(self, params: List[bytes], buf: bytearray, start: int, end: int) -> Optional[bytes]:
        topic_name = params[1].decode()
        self.nsqd.check_auth(self.client, "MPUB", topic_name, "")
        try:  # as NSQ: the topic first, its ID factory numbers the messages as they are read
            topic = self.nsqd.get_topic(topic_name)
        except ExitingError as e:
            raise fatal("E_MPUB_FAILED", "MPUB failed %s" % e) from None
        msgs, body_bytes = self._parse_mpub(topic, buf, start, end)
        try:
            self.nsqd.publish_messages(topic_name, msgs, body_bytes, self.client)
        except (BackendError, ExitingError) as e:
            raise fatal("E_MPUB_FAILED", "MPUB failed %s" % e) from None
        finally:
            release_in_slices(msgs)  # a huge batch is freed in pieces, not in one GIL-holding call
        return wire.OK_FRAME

    def _parse_mpub(self, topic: "Topic", buf: bytearray, start: int, end: int) -> Tuple[List[bytes], int]:
        """Validate an MPUB body and build its encoded messages in the same pass.

        Returns (messages, total body bytes).  The count comes first, so the
        batch's IDs are drawn up front and each message is built straight from
        the receive buffer: one copy per message.
        """
        if end - start < 4:
            raise fatal("E_BAD_BODY", "MPUB failed to read message count")
        (count,) = _unpack_int32(buf, start)
        if count <= 0:
            raise fatal("E_BAD_BODY", "MPUB invalid message count %d" % count)
        max_size = self.opts.max_msg_size
        # each message takes at least 5 bytes (size + 1 byte of body): never draw more IDs
        # than the body can hold, whatever count claims (a bigger count fails below)
        heads = self.nsqd.message_heads(topic, min(count, (end - start - 4) // 5))
        msgs: List[bytes] = []
        append = msgs.append
        pos = start + 4
        mv = memoryview(buf)
        try:
            for i in range(count):
                if pos + 4 > end:
                    raise fatal("E_BAD_MESSAGE", "MPUB failed to read message(%d) body size" % i)
                (size,) = _unpack_int32(buf, pos)
                if size <= 0:
                    raise fatal("E_BAD_MESSAGE", "MPUB invalid message(%d) body size %d" % (i, size))
                if size > max_size:
                    raise fatal("E_BAD_MESSAGE", "MPUB message too big %d > %d" % (size, max_size))
                pos += 4
                stop = pos + size
                if stop > end:
                    raise fatal("E_BAD_MESSAGE", "MPUB failed to read message body")
                append(heads[i] + mv[pos:stop])
                pos = stop
        finally:
            mv.release()
            release_in_slices(heads)
        return msgs, end - start - 4 - 4 * count

    def _check_dpub(self, params: List[bytes]) -> Callable[[int], None]:
        self._topic_param("DPUB", params, 3)
        try:
            timeout_ms = _parse_int(params[2])
        except ValueError:
            raise fatal("E_INVALID", "DPUB could not parse timeout %s"
                        % params[2].decode("utf-8", "replace")) from None
        max_ms = int(self.opts.max_req_timeout * 1000)
        if timeout_ms > max_ms:
            raise fatal("E_INVALID", "DPUB timeout %d out of range 0-%d" % (timeout_ms, max_ms))
        return self._message_size_check("DPUB")

    def DPUB(self, params: List[bytes], buf: bytearray, start: int, end: int) -> Optional[bytes]:
        topic_name = params[1].decode()
        delay = int(params[2]) / 1000.0
        self.nsqd.check_auth(self.client, "DPUB", topic_name, "")
        body = bytes(buf[start:end])
        try:
            self.nsqd.publish_deferred(topic_name, body, delay, self.client)
        except (BackendError, ExitingError) as e:
            raise fatal("E_DPUB_FAILED", "DPUB failed %s" % e) from None
        return wire.OK_FRAME


_quote = go_quote


def _upgrade_error(step: str, err: BaseException) -> str:
    if isinstance(err, ssl.SSLError):
        return "tls: %s" % (err.reason or err)
    return str(err) or type(err).__name__
