"""NSQLookupd: the node object that owns the registration DB and both listeners.

Start-up binds both sockets first (so the listening lines come out fast and
with the real ports when port 0 was asked for), then serves each listener in
its own named thread.  `exit()` stops accepting, shuts every open connection
down, joins every thread and closes the sockets.
"""
from __future__ import annotations

import logging
import socket
import threading
from typing import List, Optional, Tuple

from nsqd_sync.flags import default_hostname

from .options import Options, split_address
from .registration_db import RegistrationDB
from .tcp import format_address

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.1  # how often serve_forever checks for shutdown


class ListenError(Exception):
    pass


def listen(address: str) -> socket.socket:
    """A listening TCP socket for `host:port` (empty host: every interface, v4 and v6)."""
    try:
        host, port = split_address(address)
    except ValueError as e:
        raise ListenError("listen (%s) failed - %s" % (address, e)) from None
    try:
        if host == "":
            candidates = [(socket.AF_INET6, ("::", port)), (socket.AF_INET, ("0.0.0.0", port))]
        else:
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
            infos.sort(key=lambda info: info[0] != socket.AF_INET)  # prefer IPv4, as Go does
            candidates = [(info[0], info[4]) for info in infos]
    except OSError as e:
        raise ListenError("listen (%s) failed - %s" % (address, e)) from None
    last: Optional[OSError] = None
    for family, sockaddr in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(sockaddr)
            sock.listen(socket.SOMAXCONN)
            return sock
        except OSError as e:
            sock.close()
            last = e
    raise ListenError("listen (%s) failed - %s" % (address, last))


class NSQLookupd:
    """One nsqlookupd node."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.db = RegistrationDB()
        self.hostname = default_hostname()
        self.real_tcp_port = 0
        self.real_http_port = 0
        self.tcp_server = None
        self.http_server = None
        self.tcp_address = ""
        self.http_address = ""
        self._serving: List[Tuple[object, threading.Thread]] = []
        self._exit_lock = threading.Lock()
        self._exited = False

    def main(self) -> None:
        """Bind both listeners and start serving (returns once both are serving)."""
        tcp_sock = listen(self.opts.tcp_address)
        try:
            http_sock = listen(self.opts.http_address)
        except ListenError:
            tcp_sock.close()
            raise
        self.real_tcp_port = tcp_sock.getsockname()[1]
        self.real_http_port = http_sock.getsockname()[1]
        self.tcp_address = format_address(tcp_sock.getsockname())
        self.http_address = format_address(http_sock.getsockname())

        from .http_api import LookupHTTPServer
        from .tcp import LookupTCPServer

        self.tcp_server = LookupTCPServer(tcp_sock, self)
        self.http_server = LookupHTTPServer(http_sock, self)
        logger.info("TCP: listening on %s", self.tcp_address)
        logger.info("HTTP: listening on %s", self.http_address)
        for name, server in (("nsqlookupd-tcp", self.tcp_server),
                             ("nsqlookupd-http", self.http_server)):
            t = threading.Thread(target=server.serve_forever, args=(POLL_INTERVAL,), name=name)
            t.start()
            self._serving.append((server, t))

    def exit(self, timeout: float = 5.0) -> None:
        """Stop both listeners, close every connection, join every thread."""
        with self._exit_lock:
            if self._exited:
                return
            self._exited = True
        labels = {id(self.tcp_server): ("TCP", self.tcp_address),
                  id(self.http_server): ("HTTP", self.http_address)}
        for server, thread in self._serving:
            logger.info("%s: closing %s", *labels[id(server)])
            server.shutdown()  # serve_forever returns within POLL_INTERVAL
            thread.join(timeout)
        for server in (self.tcp_server, self.http_server):
            if server is not None:
                server.server_close()
                server.close_connections(timeout)
