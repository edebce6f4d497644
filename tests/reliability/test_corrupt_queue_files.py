"""Corrupt diskqueue files at start-up: the node serves, keeps what is readable, sets the rest aside.

A node with small data files (``--max-bytes-per-file=2000``) leaves a
channel's queue in several files; the data dir is then damaged the way a
bad disk, a bad copy or a bad hand does, and a node starts on it.  Each
time it must start, answer a PUB to the damaged topic, deliver every record
of the files that were not touched (and nothing that was never sent, and
nothing twice), set damaged files aside as ``.bad`` and log no traceback.

Issue 12 #3 is in here: metadata with a file number of 999999999 once made
start-up or the first read walk every number in between.

Each damage is done to its own channel of one topic, so one node start
checks them all.  CI size: 6 targeted damages and seeded random damage to 2
channels in one start; ``--reliability-long``: 10 more starts with random
damage to all 8 channels.
"""
from __future__ import annotations

import os
import random
import shutil
import struct
from typing import Callable, Dict, List, Sequence, Set

import pytest

from tests.helpers import CommandConn, NodeProcess, consume_all, http_request

pytestmark = pytest.mark.timeout(600)

ARGS = ("--max-bytes-per-file=2000",)
CHANNELS = 8  # c0..c5: the targeted damages; c6, c7: seeded random damage


def _meta(d: str, name: str) -> str:
    return os.path.join(d, name + ".diskqueue.meta.dat")


def _file(d: str, name: str, num: int) -> str:
    return os.path.join(d, "%s.diskqueue.%06d.dat" % (name, num))


def _records(path: str) -> List[bytes]:
    """Bodies of the records in one data file (nsqd's encoding: 26-byte header, then body)."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + 4 <= len(data):
        (n,) = struct.unpack_from(">i", data, pos)
        out.append(data[pos + 4 + 26:pos + 4 + n])
        pos += 4 + n
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Dict:
    """A data dir with 200 messages queued on each of q:c0..q:c7, in several files, left by a SIGTERM."""
    d = str(tmp_path_factory.mktemp("corrupt-template"))
    node = NodeProcess("nsqd", data_path=d, args=list(ARGS) + ["--mem-queue-size=0"])
    try:
        assert http_request(node.http_port, "/topic/create?topic=q", method="POST")[0] == 200
        for c in range(CHANNELS):
            path = "/channel/create?topic=q&channel=c%d" % c
            assert http_request(node.http_port, path, method="POST")[0] == 200
        conn = CommandConn(node.tcp_port)
        bodies = [b"msg-%04d-" % i + b"z" * 80 for i in range(200)]
        for i in range(0, 200, 20):
            conn.mpub("q", bodies[i:i + 20])
        conn.close()
    finally:
        assert node.stop() == 0
    files = sorted(f for f in os.listdir(d) if f.startswith("q:c0.diskqueue.0"))
    assert len(files) >= 5, files
    per_file = {int(f.split(".")[2]): set(_records(os.path.join(d, f))) for f in files}
    return {"dir": d, "bodies": set(bodies), "per_file": per_file}


def _start_and_check(d: str, sent: Set[bytes], must: Dict[str, Set[bytes]], inexact: Sequence[str] = ()) -> None:
    """Start on d, PUB to q, consume every channel: must[channel] all back, nothing twice.

    Nothing outside sent comes back, except on the `inexact` channels (random damage may alter bodies).
    """
    node = NodeProcess("nsqd", data_path=d, args=list(ARGS))
    try:
        conn = CommandConn(node.tcp_port, timeout=15)
        conn.pub("q", b"after-the-damage")
        conn.close()
        got = {c: consume_all(node.tcp_port, "q", c, at_least=len(m) + 1, timeout=30)
               for c, m in must.items()}
    finally:
        rc = node.stop()
    log = node.log_text()
    assert rc == 0 and "Traceback" not in log, log[-3000:]
    for channel, bodies in got.items():
        counts: Dict[bytes, int] = {}
        for b in bodies:
            counts[b] = counts.get(b, 0) + 1
        assert b"after-the-damage" in counts, channel
        lost = must[channel] - set(counts)
        assert not lost, "%s: %d readable records lost, e.g. %r" % (channel, len(lost), sorted(lost)[:2])
        unknown = set(counts) - sent - {b"after-the-damage"}
        assert channel in inexact or not unknown, (channel, sorted(unknown)[:3])
        dups = [b for b, n in counts.items() if n > 1]
        assert not dups, (channel, dups[:3])


def _garbage_in_file(num: int) -> Callable[[str, str], None]:
    def damage(d: str, name: str) -> None:
        with open(_file(d, name, num), "r+b") as f:
            f.write(b"\xde\xad\xbe\xef" * 8)
    return damage


def _truncate_file(num: int) -> Callable[[str, str], None]:
    def damage(d: str, name: str) -> None:
        path = _file(d, name, num)
        os.truncate(path, os.path.getsize(path) // 2 + 3)
    return damage


def _write_meta(text: str) -> Callable[[str, str], None]:
    def damage(d: str, name: str) -> None:
        with open(_meta(d, name), "w") as f:
            f.write(text)
    return damage


# (name, damage, the file number whose records may be lost, or None)
DAMAGES = [
    ("meta-huge-read-file", _write_meta("200\n999999999,0\n0,0\n"), None),
    ("meta-huge-write-file", _write_meta("200\n0,0\n999999999,0\n"), None),
    ("meta-garbage", _write_meta("\x00\x01not metadata"), None),
    ("meta-missing", lambda d, name: os.unlink(_meta(d, name)), None),
    ("garbage-in-file-1", _garbage_in_file(1), 1),
    ("truncated-file-2", _truncate_file(2), 2),
]


def _random_damage(rnd: random.Random, d: str, channels: List[str]) -> None:
    names = sorted(f for f in os.listdir(d) if f.split(".", 1)[0].split(":")[-1] in channels
                   and f.startswith("q:"))
    for victim in rnd.sample(names, min(len(names), rnd.randint(2 * len(channels), 5 * len(channels)))):
        path = os.path.join(d, victim)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            for _ in range(rnd.randint(1, 4)):
                f.seek(rnd.randrange(max(size, 1)))
                f.write(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 12))))
        if rnd.random() < 0.3:
            os.truncate(path, rnd.randrange(max(size, 1)))


def test_damaged_queue_files(tmp_path, template, scale):
    d = str(tmp_path / "data")
    shutil.copytree(template["dir"], d)
    must = {}
    for c, (_name, damage, lost_file) in enumerate(DAMAGES):
        damage(d, "q:c%d" % c)
        must["c%d" % c] = set().union(*(b for n, b in template["per_file"].items() if n != lost_file))
    rnd = random.Random(12)
    random_channels = ["c%d" % c for c in range(len(DAMAGES), CHANNELS)]
    _random_damage(rnd, d, random_channels)
    must.update((c, set()) for c in random_channels)
    _start_and_check(d, template["bodies"], must, inexact=random_channels)
    names = os.listdir(d)
    for c, (name, _damage, _lost) in enumerate(DAMAGES):
        if name.startswith("meta-huge"):
            assert "q:c%d.diskqueue.meta.dat.bad" % c in names, (name, sorted(names))
        if name.startswith(("garbage", "truncated")):
            assert any(f.startswith("q:c%d." % c) and f.endswith(".dat.bad") for f in names), (name, sorted(names))
    for trial in range(scale(0, 10)):  # --reliability-long: more starts on random damage to every channel
        d = str(tmp_path / ("t%d" % trial))
        shutil.copytree(template["dir"], d)
        channels = ["c%d" % c for c in range(CHANNELS)]
        _random_damage(rnd, d, channels)
        _start_and_check(d, template["bodies"], {c: set() for c in channels}, inexact=channels)
