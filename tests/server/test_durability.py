"""nsqd durability over real sockets: clean restarts, metadata, files on disk.

Every test runs real nsqd subprocesses on ephemeral loopback ports and
restarts them on the same --data-path:

* queued messages (memory and disk overflow), in-flight ones (received, not
  FIN'd), deferred ones (DPUB, REQ with a delay) and messages waiting in a
  topic with no channel all come back after SIGTERM + restart, and deferred
  ones are available at once after the restart, as in NSQ;
* ``--mem-queue-size=0`` puts every message in the diskqueue files;
* ``nsqd.dat`` has NSQ 1.3.0's JSON shape, keeps paused state, and never
  lists ephemeral topics or channels (which leave no files either);
* deleting or emptying a topic or channel removes its diskqueue files;
* the files our node leaves are NSQ's layout (read back by a small reader of
  the layout written here, not by nsqd_sync), and a data directory laid out
  by that same spec is served by our node.

The real nsqd binary is never used here.
"""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import socket
import struct
import time
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from nsqd_sync import wire
from tests.helpers import CommandConn, NodeProcess, http_request, wait_for

pytestmark = pytest.mark.timeout(60)

LONG_DELAY_MS = 600_000  # 10 minutes: never due during a test


# ---------------------------------------------------------------- helpers


class Conn(CommandConn):
    """A raw V2 connection with the few commands these tests need (PUB, MPUB, DPUB, SUB and sync)."""

    def sync(self) -> None:
        """Wait until every command sent so far has run (commands run in order).

        FIN of an unknown ID answers a non-fatal E_FIN_FAILED; messages that
        arrive first are kept for message().
        """
        self.send("FIN 0000000000000000")
        while True:
            ft, data = self.frame_skip_heartbeats()
            if ft == wire.FRAME_TYPE_ERROR:
                assert data.startswith(b"E_FIN_FAILED"), data
                return
            assert ft == wire.FRAME_TYPE_MESSAGE, (ft, data)
            self.pending.append(wire.decode_message(data))

    pending: List[Tuple[int, int, bytes, bytes]]

    def __init__(self, port: int, **kw) -> None:
        super().__init__(port, **kw)
        self.pending = []

    def message(self) -> Tuple[int, int, bytes, bytes]:
        if self.pending:
            return self.pending.pop(0)
        return super().message()


def publish(conn: Conn, topic: str, bodies: Sequence[bytes], batch: int = 500) -> None:
    """The first few one PUB at a time, the rest by MPUB."""
    head = list(bodies[:50])
    for b in head:
        conn.pub(topic, b)
    rest = bodies[50:]
    for i in range(0, len(rest), batch):
        conn.mpub(topic, rest[i:i + batch])


def bodies_for(tag: str, n: int, size: int = 100) -> List[bytes]:
    return [(b"%s-%06d " % (tag.encode(), i)).ljust(size, b"x") for i in range(n)]


def consume(port: int, topic: str, channel: str, n: int, timeout: float = 20.0,
            quiet: float = 0.3) -> List[Tuple[int, bytes]]:
    """SUB, receive exactly n messages (FIN'ing them), check nothing more comes.

    Returns (attempts, body) per message in arrival order.
    """
    conn = Conn(port, timeout=timeout)
    try:
        conn.sub(topic, channel)
        conn.send("RDY %d" % min(max(n, 1), 2500))
        got: List[Tuple[int, bytes]] = []
        fins: List[bytes] = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            assert time.monotonic() < deadline, "got %d of %d messages" % (len(got), n)
            if fins and not conn.buf:
                conn.send_raw(b"".join(fins))
                fins = []
            try:
                _ts, attempts, mid, body = conn.message()
            except socket.timeout:
                raise AssertionError("got %d of %d messages, then nothing for %.0fs"
                                     % (len(got), n, timeout)) from None
            got.append((attempts, body))
            fins.append(b"FIN " + mid + b"\n")
        if fins:
            conn.send_raw(b"".join(fins))
        extra = drain_extra(conn, quiet)
        assert not extra, "%d more messages than the %d expected, e.g. %r" % (len(extra), n, extra[:3])
        return got
    finally:
        conn.close()


def drain_extra(conn: Conn, seconds: float) -> List[bytes]:
    """Bodies of any messages arriving within `seconds` (FIN'd)."""
    extra = []
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return extra
        conn.sock.settimeout(remaining)
        try:
            ft, data = conn.frame()
        except socket.timeout:
            return extra
        if ft == wire.FRAME_TYPE_MESSAGE:
            _ts, _att, mid, body = wire.decode_message(data)
            extra.append(body)
            conn.send("FIN " + mid.decode())


def bodies_of(got: Sequence[Tuple[int, bytes]]) -> collections.Counter:
    return collections.Counter(body for _att, body in got)


def read_metadata(data_path: str) -> dict:
    with open(os.path.join(data_path, "nsqd.dat"), "rb") as f:
        return json.loads(f.read())


def metadata_names(meta: dict) -> Dict[str, Dict[str, bool]]:
    """{topic: {channel: paused}} plus the topic's own paused under key None."""
    out: Dict[str, Dict] = {}
    for t in meta["topics"]:
        chans: Dict = {c["name"]: c["paused"] for c in t["channels"] or ()}  # NSQ writes null when there are none
        chans[None] = t["paused"]
        out[t["name"]] = chans
    return out


def queue_files(data_path: str, queue_name: str) -> List[str]:
    """The diskqueue files (data, meta, .bad) of one topic or channel queue."""
    pat = re.compile(re.escape(queue_name) + r"\.diskqueue\.")
    return sorted(fn for fn in os.listdir(data_path) if pat.match(fn))


def data_files(data_path: str, queue_name: str) -> List[str]:
    pat = re.compile(re.escape(queue_name) + r"\.diskqueue\.\d{6}\.dat\Z")
    return sorted(fn for fn in os.listdir(data_path) if pat.match(fn))


def route_exists(node: NodeProcess, path: str) -> bool:
    """False if this nsqd answers 404 NOT_FOUND (an unknown route) for path."""
    status, body, _ = http_request(node.http_port, path, method="POST")
    return not (status == 404 and b'"NOT_FOUND"' in body)


def loaded_channels(node: NodeProcess, topic: str) -> Optional[Dict[str, bool]]:
    """{channel: paused} of a topic per /stats (None if the topic is not there yet)."""
    status, body, _ = http_request(node.http_port, "/stats?format=json&topic=" + topic)
    assert status == 200, (status, body)
    for t in json.loads(body).get("topics") or []:
        if t["topic_name"] == topic:
            return {c["channel_name"]: c["paused"] for c in t.get("channels") or []}
    return None


def wait_loaded(node: NodeProcess, topic: str, channels: Sequence[str]) -> None:
    """Wait until start-up has restored these channels of topic (from nsqd.dat)."""
    wait_for(lambda: set(channels) <= set(loaded_channels(node, topic) or ()), timeout=5,
             message="%s's channels %s restored" % (topic, list(channels)))


def http_post_ok(node: NodeProcess, path: str) -> None:
    status, body, _ = http_request(node.http_port, path, method="POST")
    assert status == 200, (path, status, body)


# -------- NSQ's on-disk layout, written from the spec (not from nsqd_sync)

def layout_read_queue(data_path: str, name: str) -> Tuple[int, List[bytes]]:
    """(depth in the metadata, unread records) of a diskqueue, as nsqd reads it."""
    with open(os.path.join(data_path, "%s.diskqueue.meta.dat" % name)) as f:
        text = f.read()
    m = re.fullmatch(r"(\d+)\n(\d+),(\d+)\n(\d+),(\d+)\n", text)
    assert m, "metadata of %s is not NSQ's: %r" % (name, text)
    depth, read_num, read_pos, write_num, write_pos = map(int, m.groups())
    records = []
    for num in range(read_num, write_num + 1):
        with open(os.path.join(data_path, "%s.diskqueue.%06d.dat" % (name, num)), "rb") as f:
            data = f.read()
        pos = read_pos if num == read_num else 0
        end = write_pos if num == write_num else len(data)
        while pos < end:
            (size,) = struct.unpack_from(">i", data, pos)
            records.append(data[pos + 4:pos + 4 + size])
            pos += 4 + size
        assert pos == end, "record boundary mismatch in %s file %d" % (name, num)
    return depth, records


def layout_decode(record: bytes) -> Tuple[int, int, bytes, bytes]:
    ts, attempts = struct.unpack_from(">qH", record)
    return ts, attempts, record[10:26], record[26:]


def layout_write_queue(data_path: str, name: str, records: Sequence[bytes]) -> None:
    """One data file with every record, metadata pointing at its start."""
    blob = b"".join(struct.pack(">i", len(r)) + r for r in records)
    with open(os.path.join(data_path, "%s.diskqueue.000000.dat" % name), "wb") as f:
        f.write(blob)
    with open(os.path.join(data_path, "%s.diskqueue.meta.dat" % name), "w") as f:
        f.write("%d\n0,0\n0,%d\n" % (len(records), len(blob)))


def sigterm(node: NodeProcess) -> None:
    """Clean shutdown; it must exit 0 and say goodbye."""
    rc = node.stop()
    assert rc == 0, "nsqd exited %r on SIGTERM:\n%s" % (rc, node.log_text()[-3000:])


# ---------------------------------------------------------------- tests


def test_sigterm_restart_keeps_every_queued_message(nsqd_on_data_dir):
    """5000 messages, mem-queue-size 100, two idle channels: all come back, each once."""
    data = nsqd_on_data_dir.data_path
    node = nsqd_on_data_dir("--mem-queue-size=100")
    for ch in ("c1", "c2"):
        c = Conn(node.tcp_port)
        c.sub("durable", ch)
        c.close()
    bodies = bodies_for("q", 5000)
    conn = Conn(node.tcp_port)
    publish(conn, "durable", bodies)
    conn.close()
    # overflow beyond 100 in memory is on disk while the node runs
    wait_for(lambda: data_files(data, "durable:c1") and data_files(data, "durable:c2"), timeout=5,
             message="the channels' diskqueue files")
    sigterm(node)

    assert metadata_names(read_metadata(data)) == {
        "durable": {None: False, "c1": False, "c2": False}}
    for ch in ("c1", "c2"):
        depth, records = layout_read_queue(data, "durable:" + ch)
        assert depth == len(records) == 5000

    node = nsqd_on_data_dir("--mem-queue-size=100")
    want = collections.Counter(bodies)
    for ch in ("c1", "c2"):
        got = consume(node.tcp_port, "durable", ch, 5000)
        assert bodies_of(got) == want
        assert {att for att, _ in got} == {1}
    sigterm(node)


def test_in_flight_and_deferred_come_back_at_once(nsqd_on_data_dir):
    """Received-not-FIN'd, REQ'd with a delay and DPUB'd messages all survive SIGTERM."""
    data = nsqd_on_data_dir.data_path
    node = nsqd_on_data_dir("--mem-queue-size=50")
    sub = Conn(node.tcp_port)
    sub.sub("later", "ch")
    pub = Conn(node.tcp_port)
    plain = bodies_for("plain", 300)
    pub.mpub("later", plain)
    dpubbed = bodies_for("dpub", 5)
    for b in dpubbed:
        pub.dpub("later", LONG_DELAY_MS, b)
    pub.close()

    sub.send("RDY 20")
    received = [sub.message() for _ in range(20)]
    sub.send("RDY 0")
    requeued = received[:5]
    for _ts, _att, mid, _body in requeued:
        sub.send("REQ %s %d" % (mid.decode(), LONG_DELAY_MS))
    sub.sync()
    assert not sub.pending, "a message arrived after RDY 0"
    assert {att for _ts, att, _mid, _b in received} == {1}
    # shut down with 15 in flight on an open connection, 5 REQ'd and 5 DPUB'd deferred
    sigterm(node)
    sub.close()
    assert layout_read_queue(data, "later:ch")[0] == 305  # all of them flushed to the channel's queue

    node = nsqd_on_data_dir("--mem-queue-size=50")
    t0 = time.monotonic()
    got = consume(node.tcp_port, "later", "ch", 305, timeout=10.0)
    assert time.monotonic() - t0 < 8.0, "deferred messages were not available at once"
    counts = bodies_of(got)
    assert set(counts) == set(plain) | set(dpubbed)
    delivered_before = {body for _ts, _att, _mid, body in received}
    # at least once for the in-flight and deferred ones; exactly once for the rest
    for body, n in counts.items():
        if body not in delivered_before and body not in dpubbed:
            assert n == 1, body
    attempts = {body: att for att, body in got}
    for body in delivered_before:
        assert attempts[body] == 2, "a message delivered once before shutdown comes back as attempt 2"
    for body in set(plain) - delivered_before:
        assert attempts[body] == 1
    for body in dpubbed:
        assert attempts[body] == 1
    sigterm(node)


def test_topic_without_channel_keeps_its_messages(nsqd_on_data_dir):
    """Messages (and a DPUB) published before any channel exists survive a restart."""
    data = nsqd_on_data_dir.data_path
    node = nsqd_on_data_dir("--mem-queue-size=20")
    conn = Conn(node.tcp_port)
    bodies = bodies_for("early", 500)
    publish(conn, "nochan", bodies)
    conn.dpub("nochan", LONG_DELAY_MS, b"deferred-before-any-channel")
    conn.close()
    assert data_files(data, "nochan")
    rc = node.stop(signal.SIGINT)  # SIGINT is a clean shutdown too
    assert rc == 0, node.log_text()[-3000:]
    assert metadata_names(read_metadata(data)) == {"nochan": {None: False}}
    assert layout_read_queue(data, "nochan")[0] == 501

    node = nsqd_on_data_dir("--mem-queue-size=20")
    got = consume(node.tcp_port, "nochan", "late", 501, timeout=10.0)
    assert bodies_of(got) == collections.Counter(bodies + [b"deferred-before-any-channel"])
    sigterm(node)


def test_mem_queue_size_zero_sends_everything_through_disk(nsqd_on_data_dir):
    data = nsqd_on_data_dir.data_path
    node = nsqd_on_data_dir("--mem-queue-size=0")
    c = Conn(node.tcp_port)
    c.sub("alldisk", "ch")
    c.close()
    conn = Conn(node.tcp_port)
    conn.pub("alldisk", b"first")
    # answered OK: the record is already in the channel's data file
    files = data_files(data, "alldisk:ch")
    assert files == ["alldisk:ch.diskqueue.000000.dat"], os.listdir(data)
    assert os.path.getsize(os.path.join(data, files[0])) == 4 + 26 + len(b"first")
    bodies = bodies_for("z", 300)
    publish(conn, "alldisk", bodies)
    size = os.path.getsize(os.path.join(data, files[0]))
    assert size == 4 + 26 + 5 + sum(4 + 26 + len(b) for b in bodies)
    conn.pub("alldisk-nochan", b"to the topic's own queue")
    assert data_files(data, "alldisk-nochan") == ["alldisk-nochan.diskqueue.000000.dat"]
    conn.close()

    got = consume(node.tcp_port, "alldisk", "ch", 301)
    assert bodies_of(got) == collections.Counter([b"first"] + bodies)
    # more, left unconsumed across a restart
    conn = Conn(node.tcp_port)
    more = bodies_for("y", 100)
    conn.mpub("alldisk", more)
    conn.close()
    sigterm(node)
    node = nsqd_on_data_dir("--mem-queue-size=0")
    assert bodies_of(consume(node.tcp_port, "alldisk", "ch", 100)) == collections.Counter(more)
    got = consume(node.tcp_port, "alldisk-nochan", "ch", 1)
    assert got == [(1, b"to the topic's own queue")]
    sigterm(node)


def _make_shape_topics(node: NodeProcess) -> None:
    """Topic shape-a (no channel) and shape-b with channels one and two."""
    conn = Conn(node.tcp_port)
    conn.pub("shape-a", b"x")
    conn.sub("shape-b", "one")
    conn.close()
    c2 = Conn(node.tcp_port)
    c2.sub("shape-b", "two")
    c2.close()


def _has_shape_topics(data: str) -> bool:
    try:
        names = metadata_names(read_metadata(data))
    except (OSError, ValueError):
        return False
    return names == {"shape-a": {None: False}, "shape-b": {None: False, "one": False, "two": False}}


def test_mem_queue_size_zero_goes_through_disk_with_a_waiting_consumer(nsqd_on_data_dir):
    data = nsqd_on_data_dir.data_path
    node = nsqd_on_data_dir("--mem-queue-size=0")
    sub = Conn(node.tcp_port)
    sub.sub("handoff", "ch")
    sub.send("RDY 5")
    sub.sync()  # RDY has been applied: the consumer is waiting
    conn = Conn(node.tcp_port)
    conn.pub("handoff", b"one")
    conn.pub("handoff", b"two")
    conn.close()
    assert sorted(sub.message()[3] for _ in range(2)) == [b"one", b"two"]
    files = data_files(data, "handoff:ch")
    assert files, "no diskqueue file for handoff:ch: %s" % os.listdir(data)
    assert os.path.getsize(os.path.join(data, files[0])) == 2 * (4 + 26 + 3)
    sub.close()
    sigterm(node)


def test_nsqd_dat_has_nsq_shape(nsqd_on_data_dir):
    """{"topics":[{"name","paused","channels":[{"name","paused"}]}],"version":"1.3.0"}, written on create."""
    data = nsqd_on_data_dir.data_path
    node = nsqd_on_data_dir()
    _make_shape_topics(node)
    wait_for(lambda: _has_shape_topics(data), timeout=5,
             message="nsqd.dat listing the new topics and channels")

    def check(raw: bytes) -> None:
        assert b" " not in raw and b"\n" not in raw, raw  # compact, as Go's json.Marshal
        top = json.loads(raw)
        assert sorted(top) == ["topics", "version"] and top["version"] == "1.3.0"
        for t in top["topics"]:
            assert sorted(t) == ["channels", "name", "paused"], t
            assert isinstance(t["paused"], bool) and isinstance(t["name"], str)
            for ch in t["channels"] or []:
                assert sorted(ch) == ["name", "paused"] and isinstance(ch["paused"], bool), ch

    with open(os.path.join(data, "nsqd.dat"), "rb") as f:
        check(f.read())
    sigterm(node)
    with open(os.path.join(data, "nsqd.dat"), "rb") as f:
        check(f.read())
    assert _has_shape_topics(data)
    assert not [fn for fn in os.listdir(data) if fn.endswith(".tmp")]


def test_nsqd_dat_bytes_match_nsqd_1_3_0(nsqd_on_data_dir):
    """Byte for byte as nsqd 1.3.0 (checked against the real binary), but for topic/channel order.

    nsqd 1.3.0 marshals Go structs: {"topics":[{"name":"a","paused":false,
    "channels":null},{"name":"c","paused":false,"channels":[{"name":"one",
    "paused":false}]}],"version":"1.3.0"}.
    """
    data = nsqd_on_data_dir.data_path
    node = nsqd_on_data_dir()
    _make_shape_topics(node)
    wait_for(lambda: _has_shape_topics(data), timeout=5, message="nsqd.dat with the new topics")
    sigterm(node)
    with open(os.path.join(data, "nsqd.dat"), "rb") as f:
        raw = f.read()
    pairs = json.loads(raw, object_pairs_hook=lambda kv: kv)
    assert [k for k, _ in pairs] == ["topics", "version"]
    topics = {dict(t)["name"]: t for t in dict(pairs)["topics"]}
    for t in topics.values():
        assert [k for k, _ in t] == ["name", "paused", "channels"], t
    assert dict(topics["shape-a"])["channels"] is None
    for ch in dict(topics["shape-b"])["channels"]:
        assert [k for k, _ in ch] == ["name", "paused"], ch
    assert raw.startswith(b'{"topics":[{"name":"shape-') and raw.endswith(b'],"version":"1.3.0"}')


def test_ephemeral_topics_and_channels_leave_no_trace(nsqd_on_data_dir):
    """Ephemeral topics and channels: never in nsqd.dat, no files, overflow dropped."""
    data = nsqd_on_data_dir.data_path
    node = nsqd_on_data_dir("--mem-queue-size=10")
    sub_eph_topic = Conn(node.tcp_port)
    sub_eph_topic.sub("gone#ephemeral", "ch#ephemeral")
    sub_eph_chan = Conn(node.tcp_port)
    sub_eph_chan.sub("kept", "gone#ephemeral")
    sub_kept = Conn(node.tcp_port)
    sub_kept.sub("kept", "durable")
    sub_kept.close()
    conn = Conn(node.tcp_port)
    conn.mpub("gone#ephemeral", bodies_for("e", 100))  # more than memory holds
    conn.mpub("kept", bodies_for("k", 100))
    conn.mpub("eph-topic-only#ephemeral", bodies_for("n", 100))  # no channel at all
    conn.close()

    def no_ephemeral_anywhere() -> None:
        names = os.listdir(data)
        assert not [fn for fn in names if "ephemeral" in fn], names
        meta = metadata_names(read_metadata(data))
        assert meta == {"kept": {None: False, "durable": False}}, meta

    no_ephemeral_anywhere()
    assert data_files(data, "kept:durable")
    sigterm(node)  # with both ephemeral subscribers still connected
    sub_eph_topic.close()
    sub_eph_chan.close()
    no_ephemeral_anywhere()

    node = nsqd_on_data_dir("--mem-queue-size=10")
    got = consume(node.tcp_port, "kept", "durable", 100)
    assert bodies_of(got) == collections.Counter(bodies_for("k", 100))
    sigterm(node)
    no_ephemeral_anywhere()


def test_normal_channel_of_ephemeral_topic_is_not_in_metadata(nsqd_on_data_dir):
    """As nsqd 1.3.0: such a channel has a diskqueue (`t#ephemeral:ch`) but nsqd.dat never lists it."""
    data = nsqd_on_data_dir.data_path
    node = nsqd_on_data_dir("--mem-queue-size=10")
    sub = Conn(node.tcp_port)
    sub.sub("brief#ephemeral", "ch")
    conn = Conn(node.tcp_port)
    conn.mpub("brief#ephemeral", bodies_for("b", 50))
    conn.close()
    assert metadata_names(read_metadata(data)) == {}
    sigterm(node)
    sub.close()
    assert metadata_names(read_metadata(data)) == {}


def _paused_metadata(topic_paused: bool, chan_paused: bool, other_paused: bool) -> dict:
    return {"topics": [
        {"channels": [{"name": "held", "paused": chan_paused}, {"name": "free", "paused": other_paused}],
         "name": "pz", "paused": topic_paused}],
        "version": "1.3.0"}


def test_paused_state_is_loaded_and_kept(nsqd_on_data_dir):
    """A paused channel in nsqd.dat comes back paused (delivers nothing) and stays so in nsqd.dat."""
    data = nsqd_on_data_dir.data_path
    with open(os.path.join(data, "nsqd.dat"), "w") as f:
        json.dump(_paused_metadata(False, True, False), f)
    node = nsqd_on_data_dir()
    wait_loaded(node, "pz", ["held", "free"])
    conn = Conn(node.tcp_port)
    conn.mpub("pz", [b"a", b"b", b"c"])
    conn.close()
    got = consume(node.tcp_port, "pz", "free", 3)
    assert bodies_of(got) == collections.Counter([b"a", b"b", b"c"])
    held = Conn(node.tcp_port)
    held.sub("pz", "held")
    held.send("RDY 10")
    assert drain_extra(held, 0.5) == [], "a paused channel delivered messages"
    held.close()
    sigterm(node)
    assert metadata_names(read_metadata(data)) == {"pz": {None: False, "held": True, "free": False}}
    # still paused, and its 3 messages are still there for when it is unpaused
    assert layout_read_queue(data, "pz:held")[0] == 3


def test_paused_topic_is_loaded_and_kept(nsqd_on_data_dir):
    data = nsqd_on_data_dir.data_path
    with open(os.path.join(data, "nsqd.dat"), "w") as f:
        json.dump(_paused_metadata(True, False, False), f)
    node = nsqd_on_data_dir()
    wait_loaded(node, "pz", ["held", "free"])
    conn = Conn(node.tcp_port)
    conn.mpub("pz", [b"a", b"b"])
    conn.close()
    sub = Conn(node.tcp_port)
    sub.sub("pz", "free")
    sub.send("RDY 10")
    assert drain_extra(sub, 0.5) == [], "a paused topic delivered messages"
    sub.close()
    sigterm(node)
    assert metadata_names(read_metadata(data)) == {"pz": {None: True, "held": False, "free": False}}
    assert layout_read_queue(data, "pz")[0] == 2


def test_pause_over_http_survives_restart(nsqd_on_data_dir):
    data = nsqd_on_data_dir.data_path
    node = nsqd_on_data_dir()
    for path in ("/topic/pause?topic=x", "/channel/pause?topic=x&channel=y"):
        assert route_exists(node, path), path
    conn = Conn(node.tcp_port)
    conn.sub("tp", "c1")
    conn.close()
    conn = Conn(node.tcp_port)
    conn.sub("tp", "c2")
    conn.close()
    conn = Conn(node.tcp_port)
    conn.sub("cp", "c1")
    conn.close()
    http_post_ok(node, "/topic/pause?topic=tp")
    http_post_ok(node, "/channel/pause?topic=cp&channel=c1")
    want = {"tp": {None: True, "c1": False, "c2": False}, "cp": {None: False, "c1": True}}
    # NSQ persists metadata on pause: it is in nsqd.dat before any shutdown
    wait_for(lambda: metadata_names(read_metadata(data)) == want, timeout=3,
             message="nsqd.dat to record the pauses (got %r)" % (read_metadata(data),))
    sigterm(node)
    assert metadata_names(read_metadata(data)) == want

    node = nsqd_on_data_dir()
    wait_loaded(node, "tp", ["c1", "c2"])
    wait_loaded(node, "cp", ["c1"])
    conn = Conn(node.tcp_port)
    conn.pub("tp", b"t")
    conn.pub("cp", b"c")
    conn.close()
    for topic, channel in (("tp", "c1"), ("cp", "c1")):
        s = Conn(node.tcp_port)
        s.sub(topic, channel)
        s.send("RDY 5")
        assert drain_extra(s, 0.4) == [], "%s:%s should still be paused" % (topic, channel)
        s.close()
    http_post_ok(node, "/topic/unpause?topic=tp")
    http_post_ok(node, "/channel/unpause?topic=cp&channel=c1")
    want = {"tp": {None: False, "c1": False, "c2": False}, "cp": {None: False, "c1": False}}
    wait_for(lambda: metadata_names(read_metadata(data)) == want, timeout=3,
             message="nsqd.dat to record the unpauses")
    assert consume(node.tcp_port, "tp", "c1", 1) == [(1, b"t")]
    assert consume(node.tcp_port, "cp", "c1", 1) == [(1, b"c")]
    sigterm(node)
    assert metadata_names(read_metadata(data)) == want


def test_delete_and_empty_remove_diskqueue_files(nsqd_on_data_dir):
    data = nsqd_on_data_dir.data_path
    node = nsqd_on_data_dir("--mem-queue-size=0")
    for path in ("/topic/delete?topic=x", "/topic/empty?topic=x",
                 "/channel/delete?topic=x&channel=y", "/channel/empty?topic=x&channel=y"):
        assert route_exists(node, path), path
    for topic, channel in (("dt", "a"), ("dt", "b"), ("ct", "a"), ("ct", "b")):
        c = Conn(node.tcp_port)
        c.sub(topic, channel)
        c.close()
    conn = Conn(node.tcp_port)
    for t in ("dt", "ct", "et"):
        conn.mpub(t, bodies_for(t, 20))
    conn.close()
    for q in ("dt:a", "dt:b", "ct:a", "ct:b", "et"):
        assert data_files(data, q), q

    # delete a channel: its files go, its sibling's stay
    http_post_ok(node, "/channel/delete?topic=ct&channel=a")
    wait_for(lambda: not queue_files(data, "ct:a"), timeout=3, message="ct:a files removed")
    assert data_files(data, "ct:b")
    # empty a channel: no data left to read, the channel stays
    http_post_ok(node, "/channel/empty?topic=ct&channel=b")
    wait_for(lambda: not data_files(data, "ct:b"), timeout=3, message="ct:b data files removed")
    # empty a topic (no channel: its own queue holds the messages)
    http_post_ok(node, "/topic/empty?topic=et")
    wait_for(lambda: not data_files(data, "et"), timeout=3, message="et data files removed")
    # delete a topic: its queue and every channel's go
    http_post_ok(node, "/topic/delete?topic=dt")
    wait_for(lambda: not queue_files(data, "dt") and not queue_files(data, "dt:a")
             and not queue_files(data, "dt:b"), timeout=3, message="dt files removed")
    wait_for(lambda: metadata_names(read_metadata(data)) == {
        "ct": {None: False, "b": False}, "et": {None: False}}, timeout=3,
        message="nsqd.dat without the deleted topic and channel")

    # the emptied ones still work and are empty
    conn = Conn(node.tcp_port)
    conn.pub("ct", b"after-empty")
    conn.pub("et", b"after-empty-topic")
    conn.close()
    assert consume(node.tcp_port, "ct", "b", 1) == [(1, b"after-empty")]
    assert consume(node.tcp_port, "et", "new", 1) == [(1, b"after-empty-topic")]
    sigterm(node)
    leftovers = [fn for fn in os.listdir(data) if fn.startswith(("dt.", "dt:", "ct:a."))]
    assert not leftovers, leftovers
    assert metadata_names(read_metadata(data)) == {
        "ct": {None: False, "b": False}, "et": {None: False, "new": False}}


def test_files_left_by_our_node_are_nsq_layout(nsqd_on_data_dir):
    """After SIGTERM the queues parse with a reader of NSQ's layout; attempts are NSQ's count so far."""
    data = nsqd_on_data_dir.data_path
    node = nsqd_on_data_dir("--mem-queue-size=10", "--max-bytes-per-file=4096")
    sub = Conn(node.tcp_port)
    sub.sub("layout", "ch")
    conn = Conn(node.tcp_port)
    bodies = bodies_for("L", 200, size=60)
    conn.mpub("layout", bodies)
    conn.close()
    sub.send("RDY 3")
    in_flight = [sub.message() for _ in range(3)]
    sub.sync()
    sigterm(node)
    sub.close()

    assert len(data_files(data, "layout:ch")) > 1, "max-bytes-per-file should have rolled files"
    depth, records = layout_read_queue(data, "layout:ch")
    assert depth == len(records) == 200
    decoded = [layout_decode(r) for r in records]
    assert collections.Counter(body for _ts, _a, _id, body in decoded) == collections.Counter(bodies)
    flown = {m[3] for m in in_flight}
    for ts, attempts, mid, body in decoded:
        assert re.fullmatch(rb"[0-9a-f]{16}", mid), mid
        assert abs(ts / 1e9 - time.time()) < 120
        assert attempts == (1 if body in flown else 0), (body, attempts)
    for _ts, _att, mid, body in in_flight:  # the same message IDs survive
        assert (mid, body) in {(d[2], d[3]) for d in decoded}


def test_nsq_layout_data_dir_is_served(nsqd_on_data_dir, tmp_path):
    """A data dir laid out as nsqd 1.3.0 writes it (nsqd.dat + diskqueues) is loaded and delivered."""
    data = str(tmp_path / "nsq-made")
    os.makedirs(data)
    with open(os.path.join(data, "nsqd.dat"), "w") as f:
        json.dump({"topics": [{"channels": [{"name": "ch", "paused": False}], "name": "made",
                               "paused": False}], "version": "1.3.0"}, f)
    ts = time.time_ns() - 5_000_000_000
    chan_records = [struct.pack(">qH", ts, i % 2) + b"%016x" % (0xabc000 + i) + b"chan-%d" % i
                    for i in range(50)]
    topic_records = [struct.pack(">qH", ts, 0) + b"%016x" % (0xdef000 + i) + b"topic-%d" % i
                     for i in range(20)]
    layout_write_queue(data, "made:ch", chan_records)
    layout_write_queue(data, "made", topic_records)

    node = nsqd_on_data_dir(data_path=data)
    got = consume(node.tcp_port, "made", "ch", 70)
    want = {b"chan-%d" % i: (i % 2) + 1 for i in range(50)}  # on disk: count so far
    want.update({b"topic-%d" % i: 1 for i in range(20)})
    assert {body: att for att, body in got} == want
    assert len(got) == 70
    sigterm(node)


def test_publish_right_after_start_reaches_every_restored_channel(nsqd_on_data_dir):
    """A PUB that races start-up must not miss channels that nsqd.dat restores.

    NSQ loads nsqd.dat before it accepts connections; a node that serves
    first hands an early message only to the channels restored so far.
    """
    data = nsqd_on_data_dir.data_path
    names = ["c%03d" % i for i in range(100)]
    with open(os.path.join(data, "nsqd.dat"), "w") as f:
        json.dump({"topics": [{"channels": [{"name": n, "paused": False} for n in names],
                               "name": "early", "paused": False}], "version": "1.3.0"}, f)
    node = nsqd_on_data_dir()
    conn = Conn(node.tcp_port)
    conn.pub("early", b"first")
    conn.close()
    wait_loaded(node, "early", names)
    status, body, _ = http_request(node.http_port, "/stats?format=json&topic=early")
    [topic] = json.loads(body)["topics"]
    missing = sorted(c["channel_name"] for c in topic["channels"] if c["depth"] != 1)
    assert not missing, "%d restored channels never got the message: %s" % (len(missing), missing[:5])
    for name in (names[0], names[-1]):
        assert consume(node.tcp_port, "early", name, 1, timeout=3) == [(1, b"first")], name
