"""DiskQueue behaviour: order, rolling, restart, corruption, failures, syncing, threads."""
from __future__ import annotations

import errno
import os
import random
import shutil
import struct
import threading
import time

import pytest

from nsqd_sync.diskqueue import DiskQueue, DiskQueueError, stop_sync_thread
from tests.helpers import wait_for

NAME = "topic:channel"


def rec(i: int, size: int = 36) -> bytes:
    """A record numbered i, padded to size bytes (>= the 26-byte minimum)."""
    return (b"%010d" % i).ljust(size, b"x")


def data_files(path, name=NAME):
    prefix = name + ".diskqueue."
    return sorted(f for f in os.listdir(path) if f.startswith(prefix) and f.endswith(".dat")
                  and not f.endswith("meta.dat"))


def fname(path, num, name=NAME):
    return os.path.join(str(path), "%s.diskqueue.%06d.dat" % (name, num))


def meta(path, name=NAME):
    with open(os.path.join(str(path), name + ".diskqueue.meta.dat")) as f:
        return f.read()


def read_all(q, batch=7, limit=100000):
    out = []
    while len(out) < limit:
        got = q.read_many(batch)
        if not got:
            return out
        out.extend(got)
    raise AssertionError("reader did not stop")


@pytest.fixture
def make_queue(tmp_path):
    """Open DiskQueues on tmp_path (keyword overrides) and close them after the test."""
    opened = []

    def make(name=NAME, path=None, **kw):
        kw.setdefault("sync_timeout", 60.0)
        q = DiskQueue(name, str(path or tmp_path), **kw)
        opened.append(q)
        return q

    yield make
    for q in opened:
        q.close()


@pytest.fixture(autouse=True, scope="module")
def _stop_syncer():
    yield
    stop_sync_thread()


# ------------------------------------------------------------- basics

def test_put_read_order_and_depth(make_queue):
    q = make_queue()
    assert q.depth() == 0 and q.read_many(10) == []
    for i in range(10):
        q.put(rec(i))
        assert q.depth() == i + 1
    assert q.read_many(3) == [rec(0), rec(1), rec(2)]
    assert q.depth() == 7
    q.put_many([rec(10), rec(11)])
    assert q.depth() == 9
    assert read_all(q) == [rec(i) for i in range(3, 12)]
    assert q.depth() == 0
    assert q.read_many(0) == [] and q.healthy


def test_put_many_is_one_write(make_queue, monkeypatch):
    q = make_queue()
    calls = []
    real = os.pwrite

    def counting(fd, data, pos):
        calls.append(len(data))
        return real(fd, data, pos)

    monkeypatch.setattr(os, "pwrite", counting)
    items = [rec(i, 226) for i in range(200)]
    q.put_many(items)
    assert calls == [200 * 230]
    assert q.depth() == 200
    assert q.read_many(500) == items


def test_invalid_sizes_rejected_without_writing(make_queue, tmp_path):
    q = make_queue(max_msg_size=100)
    with pytest.raises(DiskQueueError):
        q.put(b"short")
    with pytest.raises(DiskQueueError):
        q.put_many([rec(0), b"y" * 101])
    assert q.depth() == 0 and q.healthy
    assert all(os.path.getsize(os.path.join(tmp_path, f)) == 0 for f in data_files(tmp_path))


# ------------------------------------------------------------- rolling

def test_rolls_before_a_record_that_would_overflow(make_queue, tmp_path):
    # 36-byte records take 40 bytes: two fit in 100, a third would overflow
    q = make_queue(max_bytes_per_file=100)
    q.put_many([rec(i) for i in range(3)])
    q.put(rec(3))
    q.put(rec(4))
    q.sync()
    assert data_files(tmp_path) == [os.path.basename(fname(tmp_path, n)) for n in range(3)]
    assert [os.path.getsize(fname(tmp_path, n)) for n in range(3)] == [80, 80, 40]
    assert meta(tmp_path) == "5\n0,0\n2,40\n"
    assert read_all(q, batch=1) == [rec(i) for i in range(5)]


def test_record_bigger_than_file_limit_gets_its_own_file(make_queue, tmp_path):
    q = make_queue(max_bytes_per_file=100)
    q.put_many([rec(0), rec(1, 200), rec(2)])
    assert [os.path.getsize(fname(tmp_path, n)) for n in range(3)] == [40, 204, 40]
    assert read_all(q) == [rec(0), rec(1, 200), rec(2)]


def test_fully_read_files_are_deleted(make_queue, tmp_path):
    q = make_queue(max_bytes_per_file=100)
    q.put_many([rec(i) for i in range(7)])  # files 0,1,2 full, 3 has one record
    assert len(data_files(tmp_path)) == 4
    assert q.read_many(2) == [rec(0), rec(1)]
    assert not os.path.exists(fname(tmp_path, 0))  # finished file removed at once
    assert q.read_many(3) == [rec(2), rec(3), rec(4)]
    assert data_files(tmp_path) == [os.path.basename(fname(tmp_path, n)) for n in (2, 3)]
    assert read_all(q) == [rec(5), rec(6)]
    # the write file stays, the reader waits at its end
    assert data_files(tmp_path) == [os.path.basename(fname(tmp_path, 3))]
    q.put(rec(7))
    assert q.read_many(5) == [rec(7)]
    assert q.depth() == 0


def test_caught_up_reader_survives_a_roll(make_queue, tmp_path):
    # nsqd 1.3.0's go-diskqueue renames such a file to .bad (EOF after the
    # writer rolls under a caught-up reader); no data is lost, but we don't copy that
    q = make_queue(max_bytes_per_file=100)
    q.put_many([rec(0), rec(1)])
    assert q.read_many(5) == [rec(0), rec(1)]
    q.put(rec(2))  # rolls to file 1
    assert q.read_many(5) == [rec(2)]
    assert data_files(tmp_path) == [os.path.basename(fname(tmp_path, 1))]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".bad")]


def test_reader_follows_files_of_other_sizes(make_queue, tmp_path):
    q = make_queue(max_bytes_per_file=1000)
    q.put_many([rec(i) for i in range(30)])  # 25 per file
    q.close()
    q = make_queue(max_bytes_per_file=100)  # smaller limit now: old files are longer
    q.put_many([rec(i) for i in range(30, 33)])
    assert q.depth() == 33
    assert read_all(q, batch=4) == [rec(i) for i in range(33)]


# ------------------------------------------------------------- restart

def test_restart_mid_file_resumes_exactly(make_queue, tmp_path):
    q = make_queue(max_bytes_per_file=200)
    q.put_many([rec(i) for i in range(20)])
    assert q.read_many(7) == [rec(i) for i in range(7)]
    q.close()
    with pytest.raises(DiskQueueError):
        q.put(rec(99))
    assert q.read_many(1) == []
    q2 = make_queue(max_bytes_per_file=200)
    assert q2.depth() == 13
    assert q2.read_many(3) == [rec(7), rec(8), rec(9)]
    q2.put(rec(20))
    assert read_all(q2) == [rec(i) for i in range(10, 21)]


def test_crash_without_any_metadata_recovers_all_records(make_queue, tmp_path):
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    live.mkdir()
    q = make_queue(path=live, sync_every=100000)
    q.put_many([rec(i) for i in range(12)])
    assert not os.path.exists(live / (NAME + ".diskqueue.meta.dat"))  # nothing synced yet
    shutil.copytree(live, crashed)  # the disk as a crash would leave it
    q2 = make_queue(path=crashed)
    assert q2.depth() == 12
    assert read_all(q2) == [rec(i) for i in range(12)]


def test_crash_adopts_records_written_after_last_sync(make_queue, tmp_path):
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    live.mkdir()
    q = make_queue(path=live, sync_every=100000)
    q.put_many([rec(i) for i in range(5)])
    q.sync()
    q.put_many([rec(i) for i in range(5, 10)])
    assert q.read_many(2) == [rec(0), rec(1)]  # not synced: redelivered after the crash
    shutil.copytree(live, crashed)
    # and a torn record at the end, as a crash in the middle of a write leaves it
    with open(fname(crashed, 0), "ab") as f:
        f.write(struct.pack(">i", 36) + b"partial")
    q2 = make_queue(path=crashed)
    assert q2.depth() == 10
    assert os.path.getsize(fname(crashed, 0)) == 400  # torn tail cut off
    q2.put(rec(10))
    assert read_all(q2) == [rec(i) for i in range(11)]


def test_crash_after_roll_adopts_later_files(make_queue, tmp_path):
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    live.mkdir()
    q = make_queue(path=live, max_bytes_per_file=100, sync_every=100000)
    q.put_many([rec(i) for i in range(3)])
    q.sync()
    stale = (live / (NAME + ".diskqueue.meta.dat")).read_bytes()
    assert stale == b"3\n0,0\n1,40\n"
    q.put_many([rec(i) for i in range(3, 9)])  # fills files 1..4
    shutil.copytree(live, crashed)
    # metadata that predates the later files (a crash before a roll's sync landed)
    (crashed / (NAME + ".diskqueue.meta.dat")).write_bytes(stale)
    q2 = make_queue(path=crashed, max_bytes_per_file=100)
    assert q2.depth() == 9
    assert read_all(q2) == [rec(i) for i in range(9)]


def test_short_write_file_after_crash(make_queue, tmp_path):
    q = make_queue()
    q.put_many([rec(i) for i in range(5)])
    q.close()
    os.truncate(fname(tmp_path, 0), 100)  # metadata says 200: the last records are gone
    q2 = make_queue()
    assert q2.depth() == 2
    q2.put(rec(5))
    assert q2.depth() == 3
    assert read_all(q2) == [rec(0), rec(1), rec(5)]
    assert q2.depth() == 0
    assert os.path.exists(fname(tmp_path, 0) + ".bad")


# ------------------------------------------------------------- corruption

def three_files(make_queue, tmp_path):
    """Files 0 and 1 hold two records each, file 2 (the write file) one."""
    q = make_queue(max_bytes_per_file=100)
    q.put_many([rec(i) for i in range(5)])
    q.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "huge_length", "zero_length", "missing"])
def test_corrupt_middle_file_is_set_aside(make_queue, tmp_path, damage):
    three_files(make_queue, tmp_path)
    path = fname(tmp_path, 1)
    if damage == "garbage":
        with open(path, "wb") as f:
            f.write(b"\xfe\xed" * 40)
    elif damage == "truncated":
        os.truncate(path, 60)  # the second record is cut short
    elif damage == "huge_length":
        with open(path, "r+b") as f:
            f.write(struct.pack(">i", 10 ** 9))
    elif damage == "zero_length":
        with open(path, "r+b") as f:
            f.write(struct.pack(">i", 0))
    else:
        os.unlink(path)
    q = make_queue(max_bytes_per_file=100)
    assert q.depth() == 5  # the metadata's word until the reader finds out
    assert q.read_many(2) == [rec(0), rec(1)]
    got = q.read_many(10)
    expected = [rec(2), rec(4)] if damage == "truncated" else [rec(4)]
    assert got == expected
    assert q.depth() == 0
    assert os.path.exists(path + ".bad") == (damage != "missing")
    q.put(rec(5))
    assert q.read_many(10) == [rec(5)]


def test_corrupt_first_file_depth_recounted(make_queue, tmp_path):
    three_files(make_queue, tmp_path)
    with open(fname(tmp_path, 0), "r+b") as f:
        f.write(struct.pack(">i", -5))
    q = make_queue(max_bytes_per_file=100)
    assert q.read_many(1) == [rec(2)]
    assert q.depth() == 2  # recounted from the files that are left
    assert read_all(q) == [rec(3), rec(4)]
    assert q.depth() == 0


def test_corrupt_write_file_moves_writer_on(make_queue, tmp_path):
    q = make_queue()
    q.put_many([rec(i) for i in range(4)])
    q.close()
    with open(fname(tmp_path, 0), "r+b") as f:
        f.seek(80)
        f.write(struct.pack(">i", 7))
    q = make_queue()
    assert q.read_many(10) == [rec(0), rec(1)]
    assert q.depth() == 0
    assert os.path.exists(fname(tmp_path, 0) + ".bad")
    q.put(rec(9))
    assert q.depth() == 1
    assert os.path.exists(fname(tmp_path, 1))
    assert q.read_many(10) == [rec(9)]


def test_bad_metadata_reads_data_files_from_the_oldest(make_queue, tmp_path):
    q = make_queue(max_bytes_per_file=100)
    q.put_many([rec(i) for i in range(7)])
    assert q.read_many(2) == [rec(0), rec(1)]  # file 0 deleted
    q.close()
    with open(os.path.join(tmp_path, NAME + ".diskqueue.meta.dat"), "w") as f:
        f.write("not metadata")
    q = make_queue(max_bytes_per_file=100)
    assert q.depth() == 5
    assert read_all(q) == [rec(i) for i in range(2, 7)]


def test_read_position_past_write_position(make_queue, tmp_path):
    q = make_queue()
    q.put_many([rec(i) for i in range(3)])
    q.close()
    with open(os.path.join(tmp_path, NAME + ".diskqueue.meta.dat"), "w") as f:
        f.write("3\n5,0\n0,120\n")
    q = make_queue()  # impossible metadata: set aside, the data files are read from the oldest
    assert q.depth() == 3 and read_all(q) == [rec(0), rec(1), rec(2)]
    assert os.path.exists(os.path.join(tmp_path, NAME + ".diskqueue.meta.dat.bad"))
    q.put(rec(3))
    assert q.read_many(5) == [rec(3)]


@pytest.mark.timeout(60)
def test_random_garbage_never_crashes_or_hangs(tmp_path):
    rnd = random.Random(1234)
    for trial in range(40):
        d = tmp_path / ("t%d" % trial)
        d.mkdir()
        nfiles = rnd.randint(1, 4)
        for n in range(nfiles):
            size = rnd.randint(0, 400)
            body = bytes(rnd.getrandbits(8) for _ in range(size))
            if rnd.random() < 0.5:  # some plausible records in front
                body = b"".join(struct.pack(">i", 30) + rec(k, 30) for k in range(rnd.randint(0, 5))) + body
            with open(fname(d, n), "wb") as f:
                f.write(body)
        if rnd.random() < 0.7:
            with open(os.path.join(d, NAME + ".diskqueue.meta.dat"), "w") as f:
                f.write("%d\n%d,%d\n%d,%d\n" % (rnd.randint(-3, 50), rnd.randint(0, 3), rnd.randint(0, 300),
                                                rnd.randint(0, 4), rnd.randint(0, 500)))
        q = DiskQueue(NAME, str(d), max_bytes_per_file=200, max_msg_size=1000)
        for _ in range(200):
            if not q.read_many(rnd.randint(1, 5)):
                break
        else:
            raise AssertionError("reader never ran dry")
        assert q.depth() == 0
        q.put(rec(1))
        assert q.read_many(5) == [rec(1)]
        q.delete()


# ------------------------------------------------------------- empty, delete

def test_empty_removes_data_and_stays_usable(make_queue, tmp_path):
    q = make_queue(max_bytes_per_file=100)
    q.put_many([rec(i) for i in range(7)])
    q.read_many(1)
    q.empty()
    assert q.depth() == 0 and data_files(tmp_path) == []
    assert meta(tmp_path) == "0\n4,0\n4,0\n"  # numbering goes on, like go-diskqueue
    q.put(rec(100))
    assert q.read_many(5) == [rec(100)]


def test_delete_removes_only_its_own_files(make_queue, tmp_path):
    neighbours = [make_queue(name="topic"), make_queue(name="topic:channel.diskqueue"),
                  make_queue(name="topic:channel2")]
    for n in neighbours:
        n.put(rec(0))
        n.sync()
    q = make_queue(max_bytes_per_file=100)
    q.put_many([rec(i) for i in range(5)])
    q.sync()
    with open(fname(tmp_path, 0), "r+b") as f:
        f.write(b"\0\0\0\0")
    q.read_many(1)  # makes a .bad file
    with open(os.path.join(tmp_path, NAME + ".diskqueue.meta.dat.123.tmp"), "w") as f:
        f.write("stale")
    assert len(os.listdir(tmp_path)) == 6 + 5  # ours: .bad, 2 data files, meta, tmp
    q.delete()
    expected = {"%s.diskqueue.%s" % (n.name, f) for n in neighbours for f in ("000000.dat", "meta.dat")}
    assert set(os.listdir(tmp_path)) == expected
    with pytest.raises(DiskQueueError):
        q.put(rec(1))


# ------------------------------------------------------------- failures

def test_unwritable_data_path_then_recovery(make_queue, tmp_path):
    path = tmp_path / "notadir"
    path.write_text("a file where the data directory should be")
    q = make_queue(path=path)
    with pytest.raises(DiskQueueError):
        q.put(rec(0))
    assert not q.healthy and q.depth() == 0
    path.unlink()
    path.mkdir()
    q.put(rec(1))
    assert q.healthy and q.depth() == 1
    assert q.read_many(5) == [rec(1)]


def test_disk_full_leaves_nothing_counted(make_queue, tmp_path, monkeypatch):
    q = make_queue()
    q.put_many([rec(i) for i in range(3)])
    real = os.pwrite
    state = {"calls": 0}

    def half_then_full(fd, data, pos):  # writes part of the buffer, then ENOSPC
        state["calls"] += 1
        if state["calls"] == 1:
            return real(fd, bytes(data)[:50], pos)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", half_then_full)
    with pytest.raises(DiskQueueError, match="No space left"):
        q.put_many([rec(i) for i in range(3, 8)])
    assert not q.healthy and q.depth() == 3
    assert os.path.getsize(fname(tmp_path, 0)) == 120  # partial write rolled back
    monkeypatch.setattr(os, "pwrite", real)
    q.put(rec(8))
    assert q.healthy and q.depth() == 4
    assert read_all(q) == [rec(0), rec(1), rec(2), rec(8)]


def test_failure_on_second_file_rolls_back_the_whole_batch(make_queue, tmp_path, monkeypatch):
    q = make_queue(max_bytes_per_file=100)
    q.put(rec(0))
    real_open = os.open
    bad = fname(tmp_path, 1)

    def failing_open(path, *args, **kw):
        if path == bad:
            raise OSError(errno.EACCES, "Permission denied", path)
        return real_open(path, *args, **kw)

    monkeypatch.setattr(os, "open", failing_open)
    with pytest.raises(DiskQueueError):
        q.put_many([rec(1), rec(2), rec(3)])  # rec(1) fits file 0, the rest need file 1
    monkeypatch.setattr(os, "open", real_open)
    assert q.depth() == 1 and not q.healthy
    assert os.path.getsize(fname(tmp_path, 0)) == 40 and not os.path.exists(bad)
    q.put_many([rec(4), rec(5)])
    assert q.healthy
    assert read_all(q) == [rec(0), rec(4), rec(5)]


# ------------------------------------------------------------- syncing

def test_sync_thread_persists_metadata_within_timeout(make_queue, tmp_path):
    q = make_queue(sync_timeout=0.2, sync_every=100000)
    q.put(rec(0))
    meta_path = os.path.join(tmp_path, NAME + ".diskqueue.meta.dat")
    assert not os.path.exists(meta_path)
    start = time.monotonic()
    wait_for(lambda: os.path.exists(meta_path), timeout=3.0, message="metadata sync")
    assert time.monotonic() - start < 2.0
    assert meta(tmp_path) == "1\n0,0\n0,40\n"
    names = [t.name for t in threading.enumerate()]
    assert names.count("nsqd-diskqueue-sync") == 1
    q.read_many(1)
    wait_for(lambda: meta(tmp_path) == "0\n0,40\n0,40\n", timeout=3.0, message="read sync")


def test_one_sync_thread_for_many_queues(make_queue, tmp_path):
    queues = [make_queue(name="t%d" % i, sync_timeout=0.1) for i in range(50)]
    for q in queues:
        q.put(rec(0))
    wait_for(lambda: all(os.path.exists(os.path.join(tmp_path, "t%d.diskqueue.meta.dat" % i))
                         for i in range(50)), timeout=5.0, message="all queues synced")
    assert [t.name for t in threading.enumerate()].count("nsqd-diskqueue-sync") == 1


def test_stop_sync_thread_flushes_pending(make_queue, tmp_path):
    q = make_queue(sync_timeout=60.0)
    q.put(rec(0))
    stop_sync_thread()
    assert "nsqd-diskqueue-sync" not in [t.name for t in threading.enumerate()]
    assert meta(tmp_path) == "1\n0,0\n0,40\n"
    q.put(rec(1))  # the thread comes back on demand
    assert "nsqd-diskqueue-sync" in [t.name for t in threading.enumerate()]


def test_sync_every_counts_records(make_queue, tmp_path):
    q = make_queue(sync_every=10)
    q.put_many([rec(i) for i in range(9)])
    assert not os.path.exists(os.path.join(tmp_path, NAME + ".diskqueue.meta.dat"))
    q.put(rec(9))
    assert meta(tmp_path) == "10\n0,0\n0,400\n"


# ------------------------------------------------------------- threads

@pytest.mark.timeout(60)
def test_one_writer_one_reader_lose_and_double_nothing(make_queue):
    q = make_queue(max_bytes_per_file=64 * 1024, sync_every=2500)
    total = 50000
    got = []
    errors = []

    def writer():
        rnd = random.Random(1)
        i = 0
        try:
            while i < total:
                n = min(rnd.choice((1, 1, 7, 50, 200)), total - i)
                if n == 1:
                    q.put(rec(i, 30))
                else:
                    q.put_many([rec(k, 30) for k in range(i, i + n)])
                i += n
        except Exception as exc:  # reported to the main thread
            errors.append(exc)

    def reader():
        rnd = random.Random(2)
        deadline = time.monotonic() + 50
        while len(got) < total and time.monotonic() < deadline:
            batch = q.read_many(rnd.choice((1, 10, 300)))
            if batch:
                got.extend(batch)
            else:
                time.sleep(0.0005)

    threads = [threading.Thread(target=writer, name="test-writer"),
               threading.Thread(target=reader, name="test-reader")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(55)
    assert not errors
    assert len(got) == total
    assert got == [rec(i, 30) for i in range(total)]
    assert q.depth() == 0 and q.read_many(5) == []

