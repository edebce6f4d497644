"""The byte stream under a V2 connection, and its upgrades.

A connection starts on a `PlainTransport` (the TCP socket).  IDENTIFY may
negotiate TLS, then snappy or deflate: each upgrade replaces the client's
transport with one that wraps the previous one, so the protocol code only
ever calls `recv()` and `sendall()`.

Threads: the handler thread is the only caller of `recv()`; `sendall()` is
called under the client's write lock (handler responses and the message
pump).  An upgrade happens with the write lock held.
"""
from __future__ import annotations

import socket


class PlainTransport:
    """The TCP socket itself."""

    name = "plain"

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)
