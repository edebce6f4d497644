"""nsqd_sync.addresses: Go's net.SplitHostPort / JoinHostPort rules, IPv6 included."""
from __future__ import annotations

import pytest

from nsqd_sync.addresses import connect_host, format_address, http_url, join_host_port, split_host_port
from nsqd_sync.client.connection import split_address as client_split
from nsqd_sync.options import split_address as nsqd_split
from nsqd_sync.flags import FlagError


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:4150", ("127.0.0.1", 4150)), (":4150", ("", 4150)), ("[::1]:4150", ("::1", 4150)),
    ("[::]:0", ("::", 0)), ("localhost:65535", ("localhost", 65535)),
    ("[fe80::1%eth0]:4151", ("fe80::1%eth0", 4151)),
])
def test_split_host_port(text, expected):
    assert split_host_port(text) == expected


@pytest.mark.parametrize("text,words", [
    ("nohost", "missing port"), ("::1:4150", "too many colons"), ("[::1:4150", "missing ']'"),
    ("host:x", "invalid port"), ("host:65536", "invalid port"), ("host:-1", "invalid port"), ("host:", "invalid port"),
])
def test_split_host_port_rejects_like_go(text, words):
    with pytest.raises(ValueError, match=words):
        split_host_port(text)


def test_join_and_format_bracket_ipv6():
    assert join_host_port("::1", 4150) == "[::1]:4150"
    assert join_host_port("10.0.0.1", 1) == "10.0.0.1:1"
    assert join_host_port("[::1]", 5) == "[::1]:5"  # already bracketed: kept
    assert format_address(("::1", 4150, 0, 0)) == "[::1]:4150"
    assert format_address(("127.0.0.1", 4150)) == "127.0.0.1:4150"
    for host, port in (("::1", 1), ("h", 2), ("", 3)):
        assert split_host_port(join_host_port(host, port)) == (host, port)


def test_connect_host_and_http_url():
    assert connect_host("") == "127.0.0.1" and connect_host("0.0.0.0") == "127.0.0.1"
    assert connect_host("::") == "::1" and connect_host("h") == "h"
    assert http_url("127.0.0.1:4151", "/ping") == "http://127.0.0.1:4151/ping"
    assert http_url("https://h:1/", "/stats") == "https://h:1/stats"


def test_callers_parse_with_the_same_rules():
    assert client_split("[::1]:4150") == ("::1", 4150)
    assert client_split(":4150") == ("127.0.0.1", 4150)  # dial loopback for "all interfaces"
    assert nsqd_split("[::1]:4151", "http-address") == ("::1", 4151)
    with pytest.raises(FlagError, match="--tcp-address.*too many colons"):
        nsqd_split("::1:4150", "tcp-address")
    with pytest.raises(ValueError):
        client_split("::1:4150")
