"""The byte stream under a V2 connection, and its upgrades.

A connection starts on a `PlainTransport` (the TCP socket).  IDENTIFY may
negotiate TLS, then snappy or deflate: each upgrade replaces the client's
transport with one that wraps the previous one, so the protocol code only
ever calls `recv()` and `sendall()`.

Threads: the handler thread is the only caller of `recv()`; `sendall()` is
called under the client's write lock (handler responses and the message
pump).  An upgrade happens with the write lock held.

An upgrade may find bytes that the handler already read past the IDENTIFY
body (a client that did not wait for the answer): they belong to the new
layer and are handed to it as `initial`.

Locks in `TLSTransport`: the client's write lock, then the transport's own
`_ssl_lock` (around every call on the `SSLObject` and its memory BIOs).  The
reader never holds `_ssl_lock` while it waits for the write lock.
"""
from __future__ import annotations

import importlib.util
import socket
import ssl
import threading
import zlib
from typing import Any, List, Optional, Tuple

RAW_RECV_SIZE = 64 * 1024  # below glibc's mmap threshold, like protocol_v2.RECV_SIZE


class TransportError(ConnectionError):
    """The stream cannot be decoded (corrupt compressed data, bad framing)."""


class PlainTransport:
    """The TCP socket itself."""

    name = "plain"

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)


# ---------------------------------------------------------------- TLS


class TLSTransport:
    """TLS (server side) on an `ssl.SSLObject` over memory BIOs.

    An `ssl.SSLSocket` must not be read and written from two threads at once;
    here the handler thread feeds received bytes into the incoming BIO and
    takes decrypted data out, and writers encrypt into the outgoing BIO, each
    under `_ssl_lock`, then send the records themselves.  Records the reader
    makes (TLS 1.3 key updates, alerts) are sent under the client's write
    lock, so they never interleave with a writer's records.
    """

    name = "tls"

    def __init__(self, inner: Any, context: ssl.SSLContext, write_lock: threading.Lock,
                 initial: bytes = b"") -> None:
        self.inner = inner
        self._write_lock = write_lock
        self._ssl_lock = threading.Lock()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._context = context
        self._obj = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._eof = False
        if initial:
            self._incoming.write(initial)

    def handshake(self) -> None:
        """Run the server handshake (the caller holds the write lock).

        A failed handshake still sends what OpenSSL prepared (the alert that
        tells the client why) before raising.
        """
        while True:
            done = False
            with self._ssl_lock:
                try:
                    self._obj.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError:
                    out = self._outgoing.read()
                    if out:
                        try:
                            self.inner.sendall(out)
                        except OSError:
                            pass
                    raise
                out = self._outgoing.read()
            if out:
                self.inner.sendall(out)
            if done:
                return
            raw = self.inner.recv(RAW_RECV_SIZE)
            if not raw:
                raise ConnectionError("EOF")
            with self._ssl_lock:
                self._incoming.write(raw)

    def peer_certificate(self) -> Optional[dict]:
        """The client's certificate as `SSLSocket.getpeercert()` decodes it (None without one)."""
        with self._ssl_lock:
            return self._obj.getpeercert() or None

    def peer_common_name(self) -> str:
        """The subject CN of the client's certificate ('' without one)."""
        for rdn in (self.peer_certificate() or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return ""

    def connection_state(self) -> Tuple[str, str]:
        """(version, cipher suite) named as NSQ's /stats names them: `TLS1.3`, `Unknown 4865`."""
        with self._ssl_lock:
            version = self._obj.version() or ""
            cipher = self._obj.cipher()
        suite = ""
        if cipher:
            ids = {c["name"]: c["id"] & 0xFFFF for c in self._context.get_ciphers()}
            ids.update(_TLS13_SUITES)
            iana = ids.get(cipher[0])
            suite = _GO_SUITE_NAMES.get(iana, "Unknown %d" % iana) if iana is not None else cipher[0]
        return _GO_VERSION_NAMES.get(version, version), suite

    def recv(self, size: int) -> bytes:
        while True:
            if self._eof:
                return b""
            chunks: List[bytes] = []
            got = 0
            with self._ssl_lock:
                while got < size:
                    try:
                        data = self._obj.read(size - got)
                    except ssl.SSLWantReadError:
                        break
                    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                        self._eof = True  # close_notify, or the peer vanished
                        break
                    if not data:
                        self._eof = True
                        break
                    chunks.append(data)
                    got += len(data)
                produced = self._outgoing.pending
            if produced:
                self._send_produced()
            if chunks:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if self._eof:
                return b""
            raw = self.inner.recv(RAW_RECV_SIZE)
            with self._ssl_lock:
                if raw:
                    self._incoming.write(raw)
                else:
                    self._incoming.write_eof()

    def _send_produced(self) -> None:
        """Send records the reader made, in order with the writers' records."""
        with self._write_lock:
            with self._ssl_lock:
                out = self._outgoing.read()
            if out:
                self.inner.sendall(out)

    def sendall(self, data: bytes) -> None:
        """Encrypt and send (the caller holds the write lock)."""
        with self._ssl_lock:
            self._obj.write(data)
            out = self._outgoing.read()
        self.inner.sendall(out)


_GO_VERSION_NAMES = {"SSLv3": "SSL3.0", "TLSv1": "TLS1.0", "TLSv1.1": "TLS1.1", "TLSv1.2": "TLS1.2",
                     "TLSv1.3": "TLS1.3"}
_TLS13_SUITES = {"TLS_AES_128_GCM_SHA256": 0x1301, "TLS_AES_256_GCM_SHA384": 0x1302,
                 "TLS_CHACHA20_POLY1305_SHA256": 0x1303}
# the suites nsqd 1.3.0 names in /stats; any other is "Unknown <id>"
_GO_SUITE_NAMES = {
    0x0005: "TLS_RSA_WITH_RC4_128_SHA", 0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA", 0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0xC007: "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", 0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", 0xC011: "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    0xC012: "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", 0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", 0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
}


# ---------------------------------------------------------------- deflate


class DeflateTransport:
    """Raw DEFLATE both ways (no zlib header), as Go's compress/flate.

    Every write ends with a sync flush so the peer can decode each frame as
    soon as it arrives.
    """

    name = "deflate"

    def __init__(self, inner: Any, level: int, initial: bytes = b"") -> None:
        self.inner = inner
        self._c = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._d = zlib.decompressobj(-15)
        self._tail = initial  # compressed input not decoded yet

    def recv(self, size: int) -> bytes:
        d = self._d
        while True:
            if d.eof:
                return b""  # the peer ended its deflate stream
            if self._tail:
                raw, self._tail = self._tail, b""
            else:
                raw = self.inner.recv(size)
                if not raw:
                    return b""
            try:
                data = d.decompress(raw, size)  # bounded: a tiny input may inflate a lot
            except zlib.error as e:
                raise TransportError("flate: %s" % e) from None
            self._tail = d.unconsumed_tail
            if data:
                return data

    def sendall(self, data: bytes) -> None:
        c = self._c
        self.inner.sendall(c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))


# ---------------------------------------------------------------- snappy

SNAPPY_STREAM_ID = b"\xff\x06\x00\x00sNaPpY"


def snappy_available() -> bool:
    """True when the snappy extra (cramjam) is installed."""
    global _snappy_found
    if _snappy_found is None:
        _snappy_found = importlib.util.find_spec("cramjam") is not None
    return _snappy_found


_snappy_found: Optional[bool] = None


class SnappyTransport:
    """The snappy framing format both ways, as github.com/golang/snappy's Writer/Reader.

    Output: the stream identifier once, then compressed (or, when snappy
    saves too little, uncompressed) chunks of at most 64 KiB of data, each
    with its masked CRC-32C.  Input: whole chunks are cut from the buffer
    and decoded (checksums verified); the first must be the stream
    identifier.
    """

    name = "snappy"

    def __init__(self, inner: Any, initial: bytes = b"") -> None:
        import cramjam  # the optional `snappy` extra; callers check snappy_available()

        self.inner = inner
        self._snappy = cramjam.snappy
        self._error = cramjam.DecompressionError
        self._c = cramjam.snappy.Compressor()
        self._buf = bytearray(initial)
        self._started = False

    def recv(self, size: int) -> bytes:
        while True:
            data = self._decode()
            if data:
                return data
            raw = self.inner.recv(size)
            if not raw:
                return b""
            self._buf += raw

    def _decode(self) -> bytes:
        buf = self._buf
        n = len(buf)
        pos = 0
        while n - pos >= 4:
            end = pos + 4 + (buf[pos + 1] | (buf[pos + 2] << 8) | (buf[pos + 3] << 16))
            if end > n:
                break
            pos = end
        if not pos:
            return b""
        chunks = bytes(buf[:pos])
        del buf[:pos]
        if not chunks.startswith(SNAPPY_STREAM_ID):
            if not self._started:
                raise TransportError("snappy: corrupt input (missing stream identifier)")
            chunks = SNAPPY_STREAM_ID + chunks
        self._started = True
        try:
            return bytes(self._snappy.decompress(chunks))
        except self._error as e:
            raise TransportError(str(e)) from None

    def sendall(self, data: bytes) -> None:
        c = self._c
        c.compress(data)
        self.inner.sendall(bytes(c.flush()))
