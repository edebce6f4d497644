"""On-disk compatibility: files as nsqd 1.3.0 writes them <-> our DiskQueue.

The test carries its own minimal writer and reader of the layout (from the
spec, not from nsqd_sync): data files ``NAME.diskqueue.%06d.dat`` holding
int32 big-endian length + record, rolling before a record that would push a
file past max_bytes_per_file (go-diskqueue v1.1.0, as checked against the
real nsqd 1.3.0), and metadata ``depth\\nreadNum,readPos\\nwriteNum,writePos\\n``.
"""
from __future__ import annotations

import os
import re
import stat
import struct
from typing import List, Sequence, Tuple

import pytest

from nsqd_sync.diskqueue import DiskQueue, stop_sync_thread


def ref_file(path, name: str, num: int) -> str:
    return os.path.join(str(path), "%s.diskqueue.%06d.dat" % (name, num))


def ref_meta_path(path, name: str) -> str:
    return os.path.join(str(path), "%s.diskqueue.meta.dat" % name)


def ref_write(path, name: str, records: Sequence[bytes], max_bytes_per_file: int,
              consumed: int = 0) -> None:
    """Write records the way nsqd does, then mark the first `consumed` as read."""
    num, pos = 0, 0
    positions: List[Tuple[int, int]] = []  # where each record starts
    files = {}
    for r in records:
        if pos > 0 and pos + 4 + len(r) > max_bytes_per_file:
            num, pos = num + 1, 0
        positions.append((num, pos))
        files.setdefault(num, bytearray()).extend(struct.pack(">i", len(r)) + r)
        pos += 4 + len(r)
    for n, data in files.items():
        with open(ref_file(path, name, n), "wb") as f:
            f.write(data)
    if consumed < len(records):
        read_num, read_pos = positions[consumed]
    else:
        read_num, read_pos = num, pos
    for n in range(read_num):  # nsqd deletes the files it has read
        os.unlink(ref_file(path, name, n))
    with open(ref_meta_path(path, name), "w") as f:
        f.write("%d\n%d,%d\n%d,%d\n" % (len(records) - consumed, read_num, read_pos, num, pos))


def ref_read(path, name: str) -> Tuple[int, List[bytes]]:
    """(depth from the metadata, the unread records) as nsqd would see them."""
    with open(ref_meta_path(path, name)) as f:
        text = f.read()
    m = re.fullmatch(r"(\d+)\n(\d+),(\d+)\n(\d+),(\d+)\n", text)
    assert m, "bad metadata %r" % text
    depth, read_num, read_pos, write_num, write_pos = map(int, m.groups())
    out = []
    for num in range(read_num, write_num + 1):
        with open(ref_file(path, name, num), "rb") as f:
            data = f.read()
        pos = read_pos if num == read_num else 0
        end = write_pos if num == write_num else len(data)
        while pos < end:
            (size,) = struct.unpack_from(">i", data, pos)
            out.append(data[pos + 4:pos + 4 + size])
            pos += 4 + size
        assert pos == end
    return depth, out


def nsq_message(i: int, body_len: int = 200) -> bytes:
    """An encoded nsqd message: int64 ns timestamp, uint16 attempts, 16-byte hex id, body."""
    body = (b"message %d " % i).ljust(body_len, b".")
    return struct.pack(">qH", 1700000000000000000 + i, i % 3) + b"%016x" % (0x18a5579000000 + i) + body


@pytest.fixture(autouse=True, scope="module")
def _stop_syncer():
    yield
    stop_sync_thread()


@pytest.mark.parametrize("name", ["topic", "topic:channel", "a.b-c_d:e#ephemeral"])
def test_we_read_what_nsqd_wrote(tmp_path, name):
    records = [nsq_message(i, body_len=10 + (i * 37) % 300) for i in range(60)]
    ref_write(tmp_path, name, records, max_bytes_per_file=2000, consumed=13)
    q = DiskQueue(name, str(tmp_path), max_bytes_per_file=2000)
    assert q.depth() == 47
    got = []
    while True:
        batch = q.read_many(9)
        if not batch:
            break
        got.extend(batch)
    assert got == records[13:]
    assert q.depth() == 0
    q.close()


def test_nsqd_reads_what_we_wrote_byte_for_byte(tmp_path):
    records = [nsq_message(i, body_len=(i * 53) % 500) for i in range(80)]
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    q = DiskQueue("t:c", str(ours), max_bytes_per_file=4096)
    q.put_many(records[:30])
    for r in records[30:50]:
        q.put(r)
    q.put_many(records[50:])
    assert q.read_many(5) == records[:5]
    q.close()
    ref_write(theirs, "t:c", records, max_bytes_per_file=4096, consumed=5)
    assert sorted(os.listdir(ours)) == sorted(os.listdir(theirs))
    for fn in os.listdir(theirs):
        assert (ours / fn).read_bytes() == (theirs / fn).read_bytes(), fn
    assert ref_read(ours, "t:c") == (75, records[5:])


def test_file_names_meta_text_and_modes(tmp_path):
    q = DiskQueue("orders:archive", str(tmp_path), max_bytes_per_file=1000)
    q.put_many([nsq_message(i) for i in range(12)])  # 230 bytes each: 4 per file
    q.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["orders:archive.diskqueue.000000.dat", "orders:archive.diskqueue.000001.dat",
                     "orders:archive.diskqueue.000002.dat", "orders:archive.diskqueue.meta.dat"]
    with open(ref_meta_path(tmp_path, "orders:archive"), "rb") as f:
        assert f.read() == b"12\n0,0\n2,920\n"
    for fn in names:
        assert stat.S_IMODE(os.stat(tmp_path / fn).st_mode) == 0o600


def test_metadata_replaced_through_a_tmp_file(tmp_path, monkeypatch):
    renames = []
    real = os.rename
    monkeypatch.setattr(os, "rename", lambda a, b: (renames.append((a, b)), real(a, b))[1])
    q = DiskQueue("t", str(tmp_path))
    q.put(nsq_message(1))
    q.sync()
    meta = ref_meta_path(tmp_path, "t")
    assert len(renames) == 1
    src, dst = renames[0]
    assert dst == meta and re.fullmatch(re.escape(meta) + r"\.\d+\.tmp", src)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    q.close()


def test_continue_files_written_with_another_max_bytes(tmp_path):
    records = [nsq_message(i) for i in range(20)]
    ref_write(tmp_path, "t", records[:10], max_bytes_per_file=1000, consumed=2)  # 4 per file
    q = DiskQueue("t", str(tmp_path), max_bytes_per_file=500)  # 2 per file from now on
    assert q.depth() == 8
    q.put_many(records[10:])
    assert q.read_many(3) == records[2:5]
    q.close()
    depth, unread = ref_read(tmp_path, "t")
    assert depth == 15 and unread == records[5:]
    q = DiskQueue("t", str(tmp_path), max_bytes_per_file=500)
    assert q.read_many(100) == records[5:]
    q.close()


def test_empty_queue_metadata_like_nsqd(tmp_path):
    ref_write(tmp_path, "t", [nsq_message(i) for i in range(3)], max_bytes_per_file=10000, consumed=3)
    q = DiskQueue("t", str(tmp_path))
    assert q.depth() == 0 and q.read_many(5) == []
    q.put(nsq_message(3))
    q.close()
    assert ref_read(tmp_path, "t") == (1, [nsq_message(3)])
