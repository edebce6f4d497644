"""The TCP listener: a ThreadingTCPServer with one handler thread per client.

The handler reads the 4-byte protocol magic and hands the connection to
`ProtocolV2`; anything else gets `E_BAD_PROTOCOL` and is closed, as in NSQ.
"""
from __future__ import annotations

import logging
import socket
import socketserver
import threading
from typing import Tuple

from . import wire
from .addresses import format_address
from .protocol_v2 import ProtocolNode, ProtocolV2

log = logging.getLogger(__name__)


class TCPHandler(socketserver.BaseRequestHandler):
    """One connection: read the magic, then run the protocol's loop."""

    server: "NSQDTCPServer"

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        sock: socket.socket = self.request
        addr = format_address(self.client_address)
        log.info("TCP: new client(%s)", addr)
        sock.settimeout(self.server.nsqd.opts.max_heartbeat_interval * 2)
        magic = b""
        try:
            while len(magic) < 4:
                chunk = sock.recv(4 - len(magic))
                if not chunk:
                    return
                magic += chunk
        except OSError as e:
            log.error("client(%s) failed to read protocol version - %s", addr, e)
            return
        if magic != wire.MAGIC_V2:
            log.error("client(%s) bad protocol magic '%s'", addr, magic.decode("latin-1"))
            try:
                sock.sendall(wire.error_frame(b"E_BAD_PROTOCOL"))
            except OSError:
                pass
            return
        ProtocolV2(self.server.nsqd, sock, self.client_address).io_loop()


class NSQDTCPServer(socketserver.ThreadingTCPServer):
    """Accepts V2 clients; each gets a named thread (`nsqd-client-<addr>`)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: Tuple[str, int], nsqd: ProtocolNode) -> None:
        self.nsqd = nsqd
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, TCPHandler)

    def process_request(self, request, client_address) -> None:
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                             name="nsqd-client-%s" % format_address(client_address), daemon=True)
        t.start()

    def handle_error(self, request, client_address) -> None:
        log.exception("TCP: unhandled error for client(%s)", format_address(client_address))
