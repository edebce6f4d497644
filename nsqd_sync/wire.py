"""The NSQ V2 wire format: magic, frames, commands and message encoding.

Shared by the server, the client library, the benchmarks and the tests, so
the byte layouts live in exactly one place.

Frame:    int32 size (of the next two fields) | int32 frame type | data
Message:  int64 timestamp ns | uint16 attempts | 16-byte hex ID | body
"""
from __future__ import annotations

import re
import struct
from typing import Iterable, List, Sequence, Tuple

MAGIC_V1 = b"  V1"
MAGIC_V2 = b"  V2"

FRAME_TYPE_RESPONSE = 0
FRAME_TYPE_ERROR = 1
FRAME_TYPE_MESSAGE = 2

OK = b"OK"
CLOSE_WAIT = b"CLOSE_WAIT"
HEARTBEAT = b"_heartbeat_"

MSG_ID_LENGTH = 16
MSG_HEADER_LENGTH = 8 + 2 + MSG_ID_LENGTH  # timestamp, attempts, id

_FRAME_HEADER = struct.Struct(">ii")
_INT32 = struct.Struct(">i")
_UINT16 = struct.Struct(">H")
_MSG_HEADER = struct.Struct(">qH")

pack_int32 = _INT32.pack
unpack_int32_from = _INT32.unpack_from
unpack_frame_header = _FRAME_HEADER.unpack_from

# attempts field values, pre-packed for the common small counts
ATTEMPTS = [_UINT16.pack(i) for i in range(256)]


def pack_attempts(n: int) -> bytes:
    """The 2-byte attempts field (saturating at 65535)."""
    if n < 256:
        return ATTEMPTS[n]
    return _UINT16.pack(min(n, 65535))


_message_frame_headers: dict = {}


def message_frame_header(data_len: int) -> bytes:
    """The 8-byte frame header for a message frame carrying data_len bytes."""
    hdr = _message_frame_headers.get(data_len)
    if hdr is None:
        hdr = _FRAME_HEADER.pack(data_len + 4, FRAME_TYPE_MESSAGE)
        if len(_message_frame_headers) < 65536:
            _message_frame_headers[data_len] = hdr
    return hdr


def frame(frame_type: int, data: bytes) -> bytes:
    """One complete frame."""
    return _FRAME_HEADER.pack(len(data) + 4, frame_type) + data


def response_frame(data: bytes) -> bytes:
    return frame(FRAME_TYPE_RESPONSE, data)


def error_frame(data: bytes) -> bytes:
    return frame(FRAME_TYPE_ERROR, data)


OK_FRAME = response_frame(OK)
HEARTBEAT_FRAME = response_frame(HEARTBEAT)
CLOSE_WAIT_FRAME = response_frame(CLOSE_WAIT)


# ---------------------------------------------------------------- messages

def encode_message(timestamp_ns: int, attempts: int, msg_id: bytes, body: bytes) -> bytes:
    """The encoded message: what a message frame carries and the diskqueue stores."""
    return _MSG_HEADER.pack(timestamp_ns, attempts) + msg_id + body


def decode_message(data: bytes) -> Tuple[int, int, bytes, bytes]:
    """(timestamp_ns, attempts, id, body) of an encoded message."""
    if len(data) < MSG_HEADER_LENGTH:
        raise ValueError("message of %d bytes is shorter than its header" % len(data))
    ts, attempts = _MSG_HEADER.unpack_from(data)
    return ts, attempts, data[10:26], data[26:]


def message_id(data: bytes) -> bytes:
    return data[10:26]


def message_attempts(data: bytes) -> int:
    return (data[8] << 8) | data[9]


def with_attempts(data: bytes, attempts: int) -> bytes:
    """A copy of an encoded message with its attempts field replaced."""
    return data[:8] + pack_attempts(attempts) + data[10:]


def bump_attempts(data: bytes) -> bytes:
    """A copy with attempts + 1 (saturating)."""
    return data[:8] + pack_attempts(((data[8] << 8) | data[9]) + 1) + data[10:]


def unbump_attempts(data: bytes) -> bytes:
    """A copy with attempts - 1 (not below 0)."""
    a = (data[8] << 8) | data[9]
    return data[:8] + pack_attempts(a - 1 if a > 0 else 0) + data[10:]


# ---------------------------------------------------------------- commands

def command(name: bytes, *params: bytes, body: "bytes | None" = None) -> bytes:
    """Encode one command: `NAME p1 p2\\n` and, if given, int32 size + body."""
    line = b" ".join((name,) + params) + b"\n" if params else name + b"\n"
    if body is None:
        return line
    return line + _INT32.pack(len(body)) + body


def mpub_body(bodies: Sequence[bytes]) -> bytes:
    """The MPUB body: int32 count, then int32 size + bytes per message."""
    parts = [_INT32.pack(len(bodies))]
    pack = _INT32.pack
    for b in bodies:
        parts.append(pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def split_mpub_body(body: bytes) -> List[bytes]:
    """Split an MPUB body in one pass; raises ValueError (with the NSQ reason) if malformed.

    This only checks the framing; size limits are the caller's.
    """
    n_total = len(body)
    if n_total < 4:
        raise ValueError("MPUB failed to read message count")
    (count,) = _INT32.unpack_from(body, 0)
    if count <= 0:
        raise ValueError("MPUB invalid message count %d" % count)
    out = []
    append = out.append
    unpack = _INT32.unpack_from
    pos = 4
    for i in range(count):
        if pos + 4 > n_total:
            raise ValueError("MPUB failed to read message(%d) body size" % i)
        (size,) = unpack(body, pos)
        pos += 4
        if size <= 0:
            raise ValueError("MPUB invalid message(%d) body size %d" % (i, size))
        end = pos + size
        if end > n_total:
            raise ValueError("MPUB failed to read message body")
        append(body[pos:end])
        pos = end
    return out


class FrameError(ValueError):
    """A frame header that no NSQ peer sends (size below 4: the type field alone is 4 bytes)."""


def check_frame_size(size: int) -> int:
    """A frame header's size field, checked: raises FrameError below 4 (or above 2 GiB - 1)."""
    if size < 4:
        raise FrameError("invalid frame size %d" % size)
    return size


def read_frame_header(header: bytes) -> Tuple[int, int]:
    """(data length, frame type) of an 8-byte frame header, the size checked."""
    size, ftype = _FRAME_HEADER.unpack_from(header)
    return check_frame_size(size) - 4, ftype


class FrameReader:
    """Incremental frame parser for a byte stream: the one frame decoder.

    Used by the client library's connection, the benchmarks' FrameConn and
    the tests.  A size below 4 raises FrameError (a size of -4 would
    otherwise never advance).
    """

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> List[Tuple[int, bytes]]:
        """Add received bytes; return the complete (frame type, data) frames, oldest first."""
        buf = self.buf
        buf += data
        frames = []
        pos = 0
        n = len(buf)
        while n - pos >= 8:
            size, ftype = _FRAME_HEADER.unpack_from(buf, pos)
            if size < 4:
                del buf[:pos]
                raise FrameError("invalid frame size %d" % size)
            end = pos + 4 + size
            if end > n:
                break
            frames.append((ftype, bytes(buf[pos + 8:end])))
            pos = end
        if pos:
            del buf[:pos]
        return frames

    def pending(self) -> int:
        """How many bytes of an incomplete frame are buffered."""
        return len(self.buf)


def iter_frames(data: bytes) -> Iterable[Tuple[int, bytes]]:
    """Frames in a complete buffer (tests and tools)."""
    reader = FrameReader()
    return reader.feed(data)


# ---------------------------------------------------------------- names

_NAME = re.compile(r"[.a-zA-Z0-9_-]+(?:#ephemeral)?\Z")
EPHEMERAL_SUFFIX = "#ephemeral"


def is_valid_name(name: str) -> bool:
    """Topic/channel names: 1..64 chars of [.a-zA-Z0-9_-], optional #ephemeral suffix."""
    return 0 < len(name) <= 64 and _NAME.match(name) is not None


is_valid_topic_name = is_valid_name
is_valid_channel_name = is_valid_name


def is_ephemeral(name: str) -> bool:
    return name.endswith(EPHEMERAL_SUFFIX)
