"""Impossible diskqueue metadata (issue 12, defect 3): never a hang, never a walk over numbers.

A metadata file whose read or write file number is far from the data files
that exist (``0\\n999999999,0\\n0,0\\n``) once made the queue walk every
number in between under its lock: start-up never served, or the first read
spun a core forever.  Such metadata is set aside as ``.bad`` and the queue
goes on with the data files it finds.
"""
from __future__ import annotations

import os
import struct
import threading

import pytest

from nsqd_sync.diskqueue import DiskQueue, stop_sync_thread

NAME = "topic:channel"
pytestmark = pytest.mark.timeout(60)


def rec(i: int) -> bytes:
    return (b"%010d" % i).ljust(36, b"x")


def write_file(path, num: int, records) -> None:
    with open(os.path.join(str(path), "%s.diskqueue.%06d.dat" % (NAME, num)), "wb") as f:
        for r in records:
            f.write(struct.pack(">i", len(r)) + r)


def write_meta(path, text: str) -> None:
    with open(os.path.join(str(path), NAME + ".diskqueue.meta.dat"), "w") as f:
        f.write(text)


def open_and_drain(path, deadline: float = 10.0):
    """Open the queue, read everything, write one record and read it back, within the deadline."""
    result = {}

    def run() -> None:
        q = DiskQueue(NAME, str(path), sync_timeout=60.0)
        got = []
        while True:
            batch = q.read_many(10)
            if not batch:
                break
            got.extend(batch)
        result["depth_after"] = q.depth()
        q.put(b"n" * 30)
        result["new"] = q.read_many(5)
        result["got"] = got
        q.close()

    t = threading.Thread(target=run, name="test-open-queue", daemon=True)
    t.start()
    t.join(deadline)
    assert not t.is_alive(), "the queue did not open and drain within %.0fs (walking file numbers?)" % deadline
    return result


@pytest.fixture(autouse=True, scope="module")
def _stop_syncer():
    yield
    stop_sync_thread()


@pytest.mark.parametrize("meta", [
    "3\n999999999,0\n0,0\n",          # read file far past the write file
    "3\n0,0\n999999999,0\n",          # write file far past the data that exists
    "3\n0,0\n999999999,40\n",         # ... with a write position in a file that does not exist
    "3\n5,0\n999999999,0\n",          # both past every file
    "3\n-1,0\n0,120\n",               # negative file number
])
def test_impossible_metadata_is_set_aside_and_the_data_files_are_read(tmp_path, meta):
    write_file(tmp_path, 0, [rec(i) for i in range(3)])
    write_meta(tmp_path, meta)
    result = open_and_drain(tmp_path)
    assert result["got"] == [rec(i) for i in range(3)]
    assert result["depth_after"] == 0
    assert result["new"] == [b"n" * 30]
    assert os.path.exists(os.path.join(str(tmp_path), NAME + ".diskqueue.meta.dat.bad"))


def test_huge_numbers_without_any_data_file(tmp_path):
    write_meta(tmp_path, "0\n999999999,0\n0,0\n")
    result = open_and_drain(tmp_path)
    assert result["got"] == [] and result["new"] == [b"n" * 30]


def test_missing_read_file_between_existing_files(tmp_path):
    """read 0 < write 2 but file 0 is gone: files 1 and 2 are still served."""
    write_file(tmp_path, 1, [rec(1)])
    write_file(tmp_path, 2, [rec(2)])
    write_meta(tmp_path, "3\n0,0\n2,40\n")
    result = open_and_drain(tmp_path)
    assert result["got"] == [rec(1), rec(2)]
