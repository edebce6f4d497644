"""A seeded generator of hostile V2 protocol sessions (for test_protocol_fuzz).

A session is the bytes one connection sends: a magic (usually the right
one), then frames.  A fatal error ends a connection, so most frames are
commands the node accepts in that session's state (IDENTIFY and SUB once,
RDY/FIN/REQ/TOUCH after SUB, PUB/MPUB/DPUB with random bodies; FIN/REQ/TOUCH
of unknown IDs are non-fatal errors) and every session ends with one
hostile frame: commands with wrong sizes, counts, names and numbers, junk
lines and binary noise.  The bytes are split at random points.  Session `i` of seed `s` is generated from
`random.Random("%d/%d" % (s, i))` alone, so any session can be replayed on
its own (`session_bytes(seed, i)`) whatever ran before it or beside it.

Valid topic and channel names come from a small pool (`TOPICS`,
`CHANNELS`) so the node's threads (one per topic and channel) have a
baseline to come back to; ephemeral ones are in the pool to exercise
their deletion.
"""
from __future__ import annotations

import json
import random
import struct
from typing import Callable, List, Tuple

from nsqd_sync import wire

TOPICS = ["fz_a", "fz_b", "fz_e#ephemeral"]
CHANNELS = ["c1", "c2", "c_e#ephemeral"]
PERSISTENT = [(t, c) for t in TOPICS if "#" not in t for c in CHANNELS if "#" not in c]

# names NSQ refuses (so the fuzzer never creates a topic or channel outside the pool)
_JUNK_NAMES = [b"", b"x" * 65, b"bad/name", b"\xff\xfe", b"a!", b"#ephemeral", b"t#eph", b"\x00",
               b"\xe2\x98\x83", b"a:b", b"a" * 64 + b"#ephemeral"]
_NUMBERS = [b"0", b"1", b"-1", b"2500", b"2501", b"99999999999999999999", b"abc", b"", b"1.5", b"0x10",
            b"-0", b" 3", b"1e3", b"4294967296", b"3600000", b"3600001"]
_IDENTIFY_FIELDS = {
    "client_id": lambda r: r.choice(["fz", "", 5, None, "x" * 300]),
    "hostname": lambda r: r.choice(["h", "", [], "\u2603"]),
    "heartbeat_interval": lambda r: r.choice([-1, 0, 999, 1000, 5000, 60001, "x", 1.5]),
    "output_buffer_size": lambda r: r.choice([-1, 0, 63, 64, 16384, 65537, "big"]),
    "output_buffer_timeout": lambda r: r.choice([-1, 0, 1, 250, 1000, 999999]),
    "msg_timeout": lambda r: r.choice([0, 999, 1000, 60000, 900001, -5]),
    "sample_rate": lambda r: r.choice([0, 1, 50, 99, 100, 101, -1]),
    "user_agent": lambda r: r.choice(["fuzz/1", "", 7]),
    "feature_negotiation": lambda r: r.choice([True, False, "yes"]),
    "deflate": lambda r: r.choice([False, False, False, True]),
    "deflate_level": lambda r: r.choice([0, 1, 6, 9, 10, -1]),
    "snappy": lambda r: r.choice([False, False, False, True]),
    "tls_v1": lambda r: r.choice([False, False, True]),
    "long_id": lambda r: "fz",
    "unknown_field": lambda r: {"nested": [1, 2]},
}


def _name(r: random.Random, pool: List[str]) -> bytes:
    return r.choice(pool).encode() if r.random() < 0.8 else r.choice(_JUNK_NAMES)


def _body(r: random.Random) -> bytes:
    n = r.choice([0, 1, 5, 100, 1000, r.randrange(0, 5000)])
    return r.randbytes(n) if r.random() < 0.5 else b"m" * n


def _sized(r: random.Random, body: bytes) -> bytes:
    """A body with its 4-byte size, sometimes lying about it."""
    roll = r.random()
    if roll < 0.8:
        size = len(body)
    elif roll < 0.85:
        size = -r.randrange(1, 1 << 31)
    elif roll < 0.9:
        size = r.choice([1 << 30, 5 * 1024 * 1024, 1024 * 1024 + 1])
    elif roll < 0.95:
        size = len(body) + r.randrange(1, 10)
    else:
        size = max(len(body) - r.randrange(1, 10), 0)
    return struct.pack(">i", size) + body


def _mpub(r: random.Random) -> bytes:
    bodies = [_body(r) for _ in range(r.randrange(0, 6))]
    roll = r.random()
    if roll < 0.7:
        payload = wire.mpub_body(bodies)
    elif roll < 0.8:  # count says more than there are
        payload = struct.pack(">i", len(bodies) + 3) + b"".join(struct.pack(">i", len(b)) + b for b in bodies)
    elif roll < 0.9:  # a negative or zero message size inside
        payload = struct.pack(">i", 2) + struct.pack(">i", r.choice([-1, 0])) + b"zz"
    else:
        payload = struct.pack(">i", r.choice([-1, 0, 1 << 20])) + r.randbytes(r.randrange(0, 20))
    return _sized(r, payload)


def _identify(r: random.Random) -> bytes:
    fields = {k: f(r) for k, f in _IDENTIFY_FIELDS.items() if r.random() < 0.3}
    roll = r.random()
    if roll < 0.85:
        body = json.dumps(fields).encode()
    elif roll < 0.9:
        body = b"[" * 5000 + b"]" * 5000
    elif roll < 0.95:
        body = r.choice([b"null", b"[]", b'"s"', b"7", b"{", b""])
    else:
        body = r.randbytes(r.randrange(1, 50))
    return b"IDENTIFY\n" + _sized(r, body)


def _message_id(r: random.Random) -> bytes:
    return r.choice([r.randbytes(8).hex().encode(), b"0" * 16, b"short", b"x" * 17, b""])


_FRAMES: List[Tuple[float, Callable[[random.Random], bytes]]] = [
    (3, lambda r: b"NOP\n"),
    (3, _identify),
    (6, lambda r: b"SUB %s %s\n" % (_name(r, TOPICS), _name(r, CHANNELS))),
    (5, lambda r: b"RDY %s\n" % r.choice(_NUMBERS)),
    (4, lambda r: b"FIN %s\n" % _message_id(r)),
    (3, lambda r: b"REQ %s %s\n" % (_message_id(r), r.choice(_NUMBERS))),
    (2, lambda r: b"TOUCH %s\n" % _message_id(r)),
    (1, lambda r: b"CLS\n"),
    (10, lambda r: b"PUB %s\n" % _name(r, TOPICS) + _sized(r, _body(r))),
    (5, lambda r: b"MPUB %s\n" % _name(r, TOPICS) + _mpub(r)),
    (4, lambda r: b"DPUB %s %s\n" % (_name(r, TOPICS), r.choice(_NUMBERS)) + _sized(r, _body(r))),
    (1, lambda r: b"AUTH\n" + _sized(r, _body(r))),
    # broken on purpose
    (2, lambda r: r.choice([b"PUB\n", b"SUB onlytopic\n", b"RDY\n", b"FIN\n", b"REQ id\n", b"DPUB t\n",
                            b"pub fz_a\n", b"NOP extra args\n", b"SUB fz_a c1 c2 c3\n", b"\n", b"\r\n", b"NOP\r\n"])),
    (2, lambda r: r.choice([b"BOGUS\n", b"GET / HTTP/1.1\r\n\r\n", b"IDENTIFY\n\xff\xff\xff\xff",
                            b"PUB fz_a\n\x00\x00\x00\x03", b"MPUB fz_a\n\x00\x00\x00\x08\x00\x00\x00"])),
    (2, lambda r: r.randbytes(r.randrange(1, 200))),
    (1, lambda r: b"PUB " + b"t" * r.choice([100, 70000]) + b"\n"),
    (1, lambda r: b"X" * r.choice([1000, 70000])),  # a line that never ends (past MAX_LINE)
]
_WEIGHTS = [w for w, _ in _FRAMES]
_MAKERS = [m for _, m in _FRAMES]


def _valid_frame(r: random.Random, state: dict) -> bytes:
    """A command the node accepts in this state (state: identified, subscribed)."""
    choices = ["NOP", "PUB", "PUB", "MPUB", "DPUB"]
    if not state["subscribed"]:
        choices += ["SUB", "SUB"] + ([] if state["identified"] else ["IDENTIFY"])
    else:
        choices += ["RDY", "RDY", "FIN", "REQ", "TOUCH"]
    kind = r.choice(choices)
    topic = r.choice(TOPICS).encode()
    if kind == "NOP":
        return b"NOP\n"
    if kind == "PUB":
        return b"PUB %s\n" % topic + _exact(_small_body(r))
    if kind == "MPUB":
        return b"MPUB %s\n" % topic + _exact(wire.mpub_body([_small_body(r) for _ in range(r.randrange(1, 6))]))
    if kind == "DPUB":
        return b"DPUB %s %d\n" % (topic, r.randrange(0, 5000)) + _exact(_small_body(r))
    if kind == "SUB":
        state["subscribed"] = True
        return b"SUB %s %s\n" % (topic, r.choice(CHANNELS).encode())
    if kind == "IDENTIFY":
        state["identified"] = True
        fields = {"client_id": "fz", "heartbeat_interval": r.choice([1000, 5000, 30000]),
                  "output_buffer_size": r.choice([64, 16384]), "output_buffer_timeout": r.choice([-1, 250]),
                  "msg_timeout": r.choice([1000, 60000]), "sample_rate": r.choice([0, 50]),
                  "feature_negotiation": r.random() < 0.5}
        return b"IDENTIFY\n" + _exact(json.dumps(fields).encode())
    if kind == "RDY":
        return b"RDY %d\n" % r.randrange(0, 101)
    mid = r.randbytes(8).hex().encode()
    if kind == "FIN":
        return b"FIN %s\n" % mid
    if kind == "REQ":
        return b"REQ %s %d\n" % (mid, r.randrange(0, 5000))
    return b"TOUCH %s\n" % mid


def _small_body(r: random.Random) -> bytes:
    """A body for an accepted publish: small, so a long run's queues stay in memory (no diskqueue files)."""
    n = r.choice([1, 5, 100, r.randrange(1, 500)])
    return r.randbytes(n) if r.random() < 0.5 else b"m" * n


def _exact(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def session(seed: int, index: int, frames: int) -> Tuple[bytes, List[int]]:
    """(bytes to send, split points) of session `index`; `frames` frames after the magic."""
    r = random.Random("%d/%d" % (seed, index))
    roll = r.random()
    if roll < 0.9:
        data = bytearray(wire.MAGIC_V2)
    elif roll < 0.95:
        data = bytearray(r.choice([b"  V1", b"V2  ", b"\x00\x00\x00\x00", b"  V"]))
    else:
        data = bytearray(r.randbytes(r.randrange(0, 8)))
    state = {"identified": False, "subscribed": False}
    for _ in range(frames - 1):
        data += _valid_frame(r, state)
    data += r.choices(_MAKERS, _WEIGHTS)[0](r)  # the hostile frame (some are valid too)
    cuts = sorted(r.sample(range(1, len(data)), min(r.randrange(0, 4), len(data) - 1))) if len(data) > 1 else []
    return bytes(data), cuts
