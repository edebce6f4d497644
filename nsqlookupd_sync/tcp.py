"""nsqlookupd's TCP server: one named thread per connected nsqd.

`TrackedThreadingMixIn` (also used by the HTTP server) names each
connection's thread and remembers its socket, so that `close_connections()`
can shut every open connection down and join its thread on exit; handler
threads are daemons only as a last resort if a join times out.
"""
from __future__ import annotations

import logging
import socket
import socketserver
import sys
import threading
import time
from typing import Dict

from nsqd_sync.addresses import format_address

from .lookup_protocol_v1 import ClientV1, LookupdNode, LookupProtocolV1


logger = logging.getLogger(__name__)


class TrackedThreadingMixIn(socketserver.ThreadingMixIn):
    """ThreadingMixIn whose per-connection threads are named, tracked and joinable."""

    daemon_threads = True
    thread_name_prefix = "conn"

    def init_tracking(self) -> None:
        self._conn_lock = threading.Lock()
        self._conns: Dict[threading.Thread, socket.socket] = {}

    def process_request(self, request, client_address) -> None:
        name = "%s-%s" % (self.thread_name_prefix, format_address(client_address))
        t = threading.Thread(target=self._run_request, args=(request, client_address), name=name,
                             daemon=True)
        with self._conn_lock:
            self._conns[t] = request
        t.start()

    def _run_request(self, request, client_address) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._conns.pop(threading.current_thread(), None)

    def handle_error(self, request, client_address) -> None:
        """A handler raised: log it (socketserver would print to stderr) and carry on."""
        if isinstance(sys.exc_info()[1], OSError):
            logger.debug("connection %s: %s", format_address(client_address), sys.exc_info()[1])
        else:
            logger.exception("unexpected error serving %s", format_address(client_address))

    def close_connections(self, timeout: float = 5.0) -> None:
        """Shut down every open connection and join its thread (bounded by timeout)."""
        with self._conn_lock:
            conns = list(self._conns.items())
        for _, sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t, _ in conns:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                logger.warning("%s did not exit in time", t.name)

    def connection_count(self) -> int:
        with self._conn_lock:
            return len(self._conns)


class LookupTCPServer(TrackedThreadingMixIn, socketserver.TCPServer):
    """Accepts nsqd connections on --tcp-address (a ThreadingTCPServer)."""

    allow_reuse_address = True
    thread_name_prefix = "nsqlookupd-client"

    def __init__(self, sock: socket.socket, nsqlookupd: "LookupdNode") -> None:
        socketserver.TCPServer.__init__(self, sock.getsockname(), TCPHandler,
                                        bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.address_family = sock.family
        self.server_address = sock.getsockname()
        self.nsqlookupd = nsqlookupd
        self.init_tracking()


class TCPHandler(socketserver.BaseRequestHandler):
    """One nsqd connection: reads the protocol magic, then runs the V1 loop."""

    server: LookupTCPServer

    def handle(self) -> None:
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        remote = format_address(self.client_address)
        logger.info("TCP: new client(%s)", remote)
        rfile = sock.makefile("rb")
        try:
            magic = rfile.read(4)
            if len(magic) != 4:
                logger.error("failed to read protocol version - EOF")
                return
            text = magic.decode("latin-1")
            logger.info("CLIENT(%s): desired protocol magic '%s'", remote, text)
            if magic != b"  V1":
                try:
                    sock.sendall(b"\x00\x00\x00\x0eE_BAD_PROTOCOL")
                except OSError:
                    pass
                logger.error("client(%s) bad protocol magic '%s'", remote, text)
                return
            client = ClientV1(sock, rfile, remote)
            reason = LookupProtocolV1(self.server.nsqlookupd).io_loop(client)
            if reason:
                logger.error("client(%s) - %s", remote, reason)
        except OSError as e:
            logger.error("client(%s) - %s", remote, e)
        finally:
            rfile.close()
