"""HTTPClient.get_plain / get_plain_many (nsqadmin's GETs) against raw loopback servers."""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Iterator, List

import pytest

from nsqd_sync.http_client import HTTPClient, HTTPClientError


class RawServer:
    """Accepts on a loopback port; `answer(request_bytes)` gives the raw bytes to send (None: stay silent)."""

    def __init__(self, answer: Callable[[bytes], "bytes | None"]) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.connections = 0
        self.requests: List[bytes] = []
        self.thread = threading.Thread(target=self._run, name="raw-http-" + self.addr, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), name="raw-http-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buf = b""
        with conn:
            while not self.stop.is_set():
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    req, buf = buf.split(b"\r\n\r\n", 1)
                    self.requests.append(req)
                    out = self.answer(req)
                    if out is None:
                        continue
                    conn.sendall(out)
                    if b"Connection: close" in out:
                        return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def servers() -> Iterator[List[RawServer]]:
    started: List[RawServer] = []
    yield started
    for s in started:
        s.close()


def _length(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def _chunked(body: bytes) -> bytes:
    half = len(body) // 2
    return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\n\r\n"
            % (half, body[:half], len(body) - half, body[half:]))


def test_get_plain_reads_length_chunked_and_close_delimited_answers_and_keeps_alive(servers):
    body = b'{"topics": ["' + b"x" * 5000 + b'"]}'
    a = RawServer(lambda req: _length(body))
    b = RawServer(lambda req: _chunked(body))
    c = RawServer(lambda req: b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n" + body)
    servers.extend([a, b, c])
    client = HTTPClient(1.0, 2.0)
    try:
        for _ in range(3):
            assert client.get_plain("http://%s/stats?x=1" % a.addr, {"Accept": "y"}) == (200, "OK", body)
            assert client.get_plain("http://%s/stats" % b.addr) == (200, "OK", body)
            assert client.get_plain("http://%s/stats" % c.addr) == (404, "Not Found", body)
        assert a.connections == 1 and b.connections == 1  # keep-alive reused
        assert c.connections == 3  # the server closed each time
        assert a.requests[0].startswith(b"GET /stats?x=1 HTTP/1.1\r\nHost: " + a.addr.encode())
        assert b"\r\nAccept: y" in a.requests[0]
    finally:
        client.close()


def test_get_plain_many_in_order_with_failures_in_place_and_one_deadline(servers):
    good = RawServer(lambda req: _length(b'{"n": 1}'))
    chunked = RawServer(lambda req: _chunked(b'{"n": 2, "pad": "' + b"p" * 3000 + b'"}'))
    hung1 = RawServer(lambda req: None)
    hung2 = RawServer(lambda req: None)
    hung3 = RawServer(lambda req: None)
    servers.extend([good, chunked, hung1, hung2, hung3])
    refused = socket.create_server(("127.0.0.1", 0))
    refused_addr = "127.0.0.1:%d" % refused.getsockname()[1]
    refused.close()
    client = HTTPClient(0.2, 1.0)
    try:
        urls = ["http://%s/a" % x for x in (good.addr, hung1.addr, refused_addr, chunked.addr, hung2.addr,
                                            hung3.addr)]
        t0 = time.monotonic()
        out = client.get_plain_many(urls)
        elapsed = time.monotonic() - t0
        assert out[0] == (200, "OK", b'{"n": 1}')
        assert all(isinstance(out[i], HTTPClientError) for i in (1, 4, 5))
        assert isinstance(out[2], HTTPClientError)
        assert out[3][0] == 200 and out[3][2].startswith(b'{"n": 2')
        # the three hung nodes share one deadline (connect + request timeout: 1.2 s), not 3 x 1.0 s
        assert elapsed < 2.5
        again = client.get_plain_many(urls[:1] + urls[3:4])
        assert again == [out[0], out[3]]
        assert good.connections == 1 and chunked.connections == 1
    finally:
        client.close()
