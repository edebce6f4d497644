"""Network addresses as NSQ writes them: `host:port`, `[::1]:4150`, `:4150`.

One parser and one formatter for every command, server and client in the
project (Go's `net.SplitHostPort` / `net.JoinHostPort` rules).
"""
from __future__ import annotations

from typing import Tuple


def split_host_port(addr: str) -> Tuple[str, int]:
    """`host:port` -> (host, port), as Go's net.SplitHostPort plus a port check.

    The host may be empty (`:4150`, all interfaces) or a bracketed IPv6
    literal (`[::1]:4150`).  Raises ValueError with Go's wording otherwise.
    """
    host, sep, port_text = addr.rpartition(":")
    if not sep:
        raise ValueError("address %s: missing port in address" % addr)
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError("address %s: missing ']' in address" % addr)
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("address %s: too many colons in address" % addr)
    if not port_text.isdigit():
        raise ValueError("address %s: invalid port %r" % (addr, port_text))
    port = int(port_text, 10)
    if not 0 <= port <= 65535:
        raise ValueError("address %s: invalid port %r" % (addr, port_text))
    return host, port


def join_host_port(host: str, port: int) -> str:
    """(host, port) -> `host:port`, bracketing IPv6 literals (Go's net.JoinHostPort)."""
    if ":" in host and not host.startswith("["):
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def format_address(address: Tuple) -> str:
    """A socket address tuple (IPv4 or IPv6) as Go prints it: `1.2.3.4:5`, `[::1]:5`."""
    return join_host_port(str(address[0]), int(address[1]))


def connect_host(host: str) -> str:
    """The host to dial for a listen host: empty and wildcard hosts mean loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def http_url(address: str, path: str = "/") -> str:
    """`http://host:port/path` for a `host:port` address (an address with a scheme is kept)."""
    if "://" in address:
        return address.rstrip("/") + path
    return "http://" + address + path
