"""Hostile HTTP requests against the shared HTTP base (issue 12 #11), byte for byte.

Each answer was compared with nsqd 1.3.0's on the same bytes:

* deeply nested JSON in ``PUT /config/nsqlookupd_tcp_addresses`` is 400
  ``INVALID_VALUE`` (ours: 500 and a ``RecursionError`` traceback);
* two ``Content-Length`` headers that differ, or one that is not a plain
  decimal number, are Go's own ``400 Bad Request`` (text/plain, Connection:
  close) before any handler runs; two equal ones are accepted (ours took
  the first and read the rest of the body as the next request);
* a chunk size that is not plain hex (``-5``, ``0x3``) ends the request
  with an error and closes the connection (ours: ``-5`` read to EOF with a
  traceback, ``0x3`` was accepted).  nsqd 1.3.0 answers 500
  ``INTERNAL_ERROR`` there (its body read fails); ours answers 400
  ``INVALID_REQUEST`` as for any other malformed chunk line;
* the ``Allow`` header of a 405 does not follow into the next answer on a
  keep-alive connection (ours repeated it on the next 404).

nsqlookupd uses the same base, so the framing cases run against it too.
"""
from __future__ import annotations

import socket
from typing import List, Tuple

import pytest

from tests.helpers import NodeProcess

GO_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  b"Connection: close\r\n\r\n400 Bad Request")


@pytest.fixture(scope="module")
def nsqd(tmp_path_factory):
    with NodeProcess("nsqd", data_path=str(tmp_path_factory.mktemp("hygiene"))) as node:
        yield node


@pytest.fixture(scope="module")
def lookupd():
    with NodeProcess("nsqlookupd") as node:
        yield node


Answer = Tuple[int, dict, bytes]


def _exchange(port: int, raw: bytes, answers: int = 1, timeout: float = 10.0) -> Tuple[List[Answer], bool]:
    """Send raw bytes; read `answers` HTTP answers; (answers, connection closed by the server after them)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(raw)
        f = s.makefile("rb")
        out: List[Answer] = []
        for _ in range(answers):
            status_line = f.readline()
            assert status_line.startswith(b"HTTP/1.1 "), (status_line, out)
            headers = {}
            while True:
                line = f.readline()
                if line in (b"\r\n", b""):
                    break
                k, _, v = line.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            if "content-length" in headers:
                body = f.read(int(headers["content-length"]))
            else:
                body = f.read()  # Go's raw 400: the body runs to the close
            out.append((int(status_line.split()[1]), headers, body))
        s.settimeout(2.0)
        try:
            closed = f.read(1) == b""
        except socket.timeout:
            closed = False
        return out, closed
    finally:
        s.close()


def _no_traceback(node: NodeProcess) -> None:
    assert "Traceback" not in node.log_text(), node.log_tail(40)


@pytest.mark.parametrize("depth", [1000, 100000])
def test_deeply_nested_json_config_is_400(nsqd, depth):
    body = b"[" * depth + b"]" * depth
    raw = (b"PUT /config/nsqlookupd_tcp_addresses HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
           % len(body)) + body
    (answer,), closed = _exchange(nsqd.http_port, raw)
    assert answer[0] == 400 and answer[2] == b'{"message":"INVALID_VALUE"}'
    assert not closed
    _no_traceback(nsqd)


@pytest.mark.parametrize("kind", ["nsqd", "lookupd"])
@pytest.mark.parametrize("headers", [
    b"Content-Length: 3\r\nContent-Length: 5\r\n",
    b"Content-Length: 3, 5\r\n",
    b"Content-Length: 3, 3\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: +3\r\n",
    b"Content-Length: 0x3\r\n",
])
def test_bad_content_length_is_gos_400_and_close(request, kind, headers):
    node = request.getfixturevalue(kind)
    path = b"/pub?topic=hyg" if kind == "nsqd" else b"/topic/create?topic=hyg"
    raw = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\nabcde" + b"GET /ping HTTP/1.1\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", node.http_port), timeout=10)
    try:
        s.sendall(raw)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    finally:
        s.close()
    assert got == GO_BAD_REQUEST
    _no_traceback(node)


@pytest.mark.parametrize("kind", ["nsqd", "lookupd"])
def test_equal_content_lengths_are_one(request, kind):
    node = request.getfixturevalue(kind)
    path = b"/pub?topic=hyg2" if kind == "nsqd" else b"/topic/create?topic=hyg2"
    raw = (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
           b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    (first, second), closed = _exchange(node.http_port, raw, answers=2)
    assert first[0] == 200 and second == (200, second[1], b"OK")
    assert not closed


@pytest.mark.parametrize("size", [b"-5", b"0x3", b"+3", b"3_0", b" 3", b"zz", b"11111111111111111"])
def test_bad_chunk_size_is_400_and_close(nsqd, size):
    raw = (b"POST /pub?topic=hyg3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           + size + b"\r\nabc\r\n0\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    (answer,), closed = _exchange(nsqd.http_port, raw)
    assert (answer[0], answer[2]) == (400, b'{"message":"INVALID_REQUEST"}')
    assert answer[1].get("connection") == "close" and closed
    _no_traceback(nsqd)


def test_chunk_extension_and_trailing_space_are_accepted(nsqd):
    raw = (b"POST /pub?topic=hyg4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3;name=value\r\nabc\r\n2 \r\nde\r\n0\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    (pub, ping), closed = _exchange(nsqd.http_port, raw, answers=2)
    assert pub[0] == 200 and ping[2] == b"OK" and not closed


@pytest.mark.parametrize("kind", ["nsqd", "lookupd"])
def test_allow_header_of_a_405_does_not_leak_into_the_next_answer(request, kind):
    node = request.getfixturevalue(kind)
    raw = (b"PUT /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
           b"GET /nothere HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    (a405, a404, ping), closed = _exchange(node.http_port, raw, answers=3)
    assert a405[0] == 405 and a405[1]["allow"] == "GET, OPTIONS"
    assert a404[0] == 404 and "allow" not in a404[1]
    assert ping[0] == 200 and "allow" not in ping[1]
    assert not closed
