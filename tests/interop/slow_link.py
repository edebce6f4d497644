"""A loopback TCP relay that delays what a client sends: a late SUB, on demand.

`SlowLink(target_port, delay)` listens on an ephemeral loopback port; each
connection made to it is relayed to 127.0.0.1:target_port, every chunk the
client sends reaching the server `delay` seconds late (order kept), replies
passed straight back.  It makes "the node reads this client's SUB after
another client's PUB" happen every run instead of once in a while.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import List


class SlowLink:
    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._socks: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._spawn(self._accept_loop, "slow-link-accept")

    def _spawn(self, target, name: str, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            server.settimeout(None)
            self._socks += [client, server]
            self._spawn(self._pipe, "slow-link-up", client, server, self.delay)
            self._spawn(self._pipe, "slow-link-down", server, client, 0.0)

    def _pipe(self, src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if delay:
                    self._stop.wait(delay)  # the injected lateness (returns early on close)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(5)
