"""The registration database: which producers (nsqd nodes) have which topics and channels.

A registration is a (category, key, subkey) triple, as in NSQ:

  ("client", "", "")          every identified nsqd connection
  ("topic", topic, "")        nodes that have the topic
  ("channel", topic, channel) nodes that have the channel

and maps to the producers registered under it, keyed by the peer's id (its
remote address).  Each registration holds its own `Producer` record for a
peer, so a tombstone is per (topic, node).  Registrations are kept when their
last producer leaves; only the HTTP API (and UNREGISTER of an ephemeral
topic/channel) removes them.

One lock guards the whole map.  Lists come back in insertion order.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

# Go's zero time.Time, as UnixNano() prints it: what /debug shows for
# "tombstoned_at" of a producer that was never tombstoned.
ZERO_TIME_UNIX_NANO = -6795364578871345152


class Registration(NamedTuple):
    category: str
    key: str
    subkey: str

    def is_match(self, category: str, key: str, subkey: str) -> bool:
        """True if this registration matches; key and subkey may be the wildcard `*`."""
        if category != self.category:
            return False
        if key != "*" and key != self.key:
            return False
        if subkey != "*" and subkey != self.subkey:
            return False
        return True


@dataclass
class PeerInfo:
    """What an nsqd told us in IDENTIFY, plus where it connected from."""

    id: str
    remote_address: str = ""
    hostname: str = ""
    broadcast_address: str = ""
    tcp_port: int = 0
    http_port: int = 0
    version: str = ""
    last_update: int = 0  # wall clock ns of the last IDENTIFY/PING

    def touch(self, now_ns: Optional[int] = None) -> None:
        self.last_update = time.time_ns() if now_ns is None else now_ns

    def to_json(self) -> dict:
        """The producer shape of /lookup (NSQ's field order)."""
        return {
            "remote_address": self.remote_address,
            "hostname": self.hostname,
            "broadcast_address": self.broadcast_address,
            "tcp_port": self.tcp_port,
            "http_port": self.http_port,
            "version": self.version,
        }


@dataclass
class Producer:
    """A peer as registered under one registration (carries the tombstone)."""

    peer_info: PeerInfo
    tombstoned: bool = False
    tombstoned_at: int = 0  # wall clock ns, for /debug
    _tombstoned_mono: float = field(default=0.0, repr=False)

    def tombstone(self) -> None:
        self.tombstoned = True
        self.tombstoned_at = time.time_ns()
        self._tombstoned_mono = time.monotonic()

    def is_tombstoned(self, lifetime: float) -> bool:
        return self.tombstoned and time.monotonic() - self._tombstoned_mono < lifetime

    def __str__(self) -> str:
        p = self.peer_info
        return "%s [%d, %d]" % (p.broadcast_address, p.tcp_port, p.http_port)


def keys(registrations: Iterable[Registration]) -> List[str]:
    return [r.key for r in registrations]


def subkeys(registrations: Iterable[Registration]) -> List[str]:
    return [r.subkey for r in registrations]


def filter_registrations(registrations: Iterable[Registration], category: str, key: str,
                         subkey: str) -> List[Registration]:
    return [r for r in registrations if r.is_match(category, key, subkey)]


def filter_by_active(producers: Iterable[Producer], inactivity_timeout: float,
                     tombstone_lifetime: float) -> List[Producer]:
    """Producers that pinged within inactivity_timeout and are not tombstoned."""
    now = time.time_ns()
    limit = int(inactivity_timeout * 1e9)
    return [p for p in producers
            if now - p.peer_info.last_update <= limit and not p.is_tombstoned(tombstone_lifetime)]


class RegistrationDB:
    """Registration -> {peer id: Producer}, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.registration_map: Dict[Registration, Dict[str, Producer]] = {}

    def add_registration(self, k: Registration) -> None:
        with self.lock:
            self.registration_map.setdefault(k, {})

    def add_producer(self, k: Registration, p: Producer) -> bool:
        """Register p under k; False if that peer was already there."""
        with self.lock:
            producers = self.registration_map.setdefault(k, {})
            if p.peer_info.id in producers:
                return False
            producers[p.peer_info.id] = p
            return True

    def remove_producer(self, k: Registration, peer_id: str) -> Tuple[bool, int]:
        """Remove a peer from k: (whether it was there, producers left). Keeps k."""
        with self.lock:
            producers = self.registration_map.get(k)
            if producers is None:
                return False, 0
            removed = producers.pop(peer_id, None) is not None
            return removed, len(producers)

    def remove_registration(self, k: Registration) -> None:
        with self.lock:
            self.registration_map.pop(k, None)

    def find_registrations(self, category: str, key: str, subkey: str) -> List[Registration]:
        with self.lock:
            if key != "*" and subkey != "*":
                k = Registration(category, key, subkey)
                return [k] if k in self.registration_map else []
            return [k for k in self.registration_map if k.is_match(category, key, subkey)]

    def find_producers(self, category: str, key: str, subkey: str) -> List[Producer]:
        """Producers under every matching registration, each peer once."""
        with self.lock:
            if key != "*" and subkey != "*":
                return list(self.registration_map.get(Registration(category, key, subkey), {}).values())
            seen = set()
            out = []
            for k, producers in self.registration_map.items():
                if not k.is_match(category, key, subkey):
                    continue
                for peer_id, p in producers.items():
                    if peer_id not in seen:
                        seen.add(peer_id)
                        out.append(p)
            return out

    def lookup_registrations(self, peer_id: str) -> List[Registration]:
        """Every registration the peer is in."""
        with self.lock:
            return [k for k, producers in self.registration_map.items() if peer_id in producers]

    def tombstone(self, topic: str, node: str) -> int:
        """Tombstone the topic's producers whose `broadcast_address:http_port` is node."""
        count = 0
        with self.lock:
            for p in self.registration_map.get(Registration("topic", topic, ""), {}).values():
                if "%s:%d" % (p.peer_info.broadcast_address, p.peer_info.http_port) == node:
                    p.tombstone()
                    count += 1
        return count

    def debug(self) -> Dict[str, List[dict]]:
        """The /debug view: "category:key:subkey" -> producer records."""
        data: Dict[str, List[dict]] = {}
        with self.lock:
            for r, producers in self.registration_map.items():
                name = "%s:%s:%s" % r
                for p in producers.values():
                    pi = p.peer_info
                    data.setdefault(name, []).append({  # a Go map: keys sorted
                        "broadcast_address": pi.broadcast_address,
                        "hostname": pi.hostname,
                        "http_port": pi.http_port,
                        "id": pi.id,
                        "last_update": pi.last_update,
                        "tcp_port": pi.tcp_port,
                        "tombstoned": p.tombstoned,
                        "tombstoned_at": p.tombstoned_at if p.tombstoned else ZERO_TIME_UNIX_NANO,
                        "version": pi.version,
                    })
        return data
