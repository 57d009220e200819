"""models/read_ahead.py (and its process, started by models/prefetch.py): every byte of each file is asked for,
in order, and ends up in the page cache."""

from __future__ import annotations

import os
import time

import pytest

from nodegraph.models import read_ahead as module
from nodegraph.models.prefetch import looks_cached, spawn_read_ahead
from nodegraph.models.read_ahead import CHUNK, read_ahead


def test_read_ahead_asks_for_every_byte_of_each_file_in_order_in_small_chunks(tmp_path, monkeypatch):
    sizes = {"first": 3 * CHUNK + 5, "second": 7, "empty": 0}
    files = []
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
        files.append(tmp_path / name)
    calls = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, offset, length, advice: calls.append(
        (os.readlink(f"/proc/self/fd/{fd}"), offset, length, advice)))
    assert read_ahead(files + [tmp_path / "missing"]) == sum(sizes.values())
    chunk, first = CHUNK, str(files[0])
    assert calls == [(first, 0, chunk, os.POSIX_FADV_WILLNEED), (first, chunk, chunk, os.POSIX_FADV_WILLNEED),
                     (first, 2 * chunk, chunk, os.POSIX_FADV_WILLNEED), (first, 3 * chunk, 5, os.POSIX_FADV_WILLNEED),
                     (str(files[1]), 0, 7, os.POSIX_FADV_WILLNEED)]


def cached(fd: int, offset: int) -> bool:
    try:
        os.preadv(fd, [bytearray(4096)], offset, os.RWF_NOWAIT)  # reads only from the page cache
        return True
    except BlockingIOError:
        return False


def test_at_most_in_flight_bytes_are_asked_for_and_not_yet_read(tmp_path, monkeypatch):
    (tmp_path / "w").write_bytes(b"x" * (10 * CHUNK))
    asked, read, probes = [], set(), {}

    def in_page_cache(fd, offset):  # a chunk is read on its second look
        probes[offset] = probes.get(offset, 0) + 1
        if probes[offset] > 1:
            read.add(offset)
        return offset in read

    monkeypatch.setattr(module, "in_page_cache", in_page_cache)
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, offset, *a: asked.append(len(asked) - len(read)))
    monkeypatch.setattr(time, "sleep", lambda s: None)
    read_ahead([tmp_path / "w"], in_flight=3 * CHUNK)
    assert len(asked) == 10 and max(asked) == 3  # unread when the next is asked for: never more than 3
    assert len(read) == 10  # and it waited for the last ones before returning


def evicted_file(tmp_path, size: int):
    path = tmp_path / "weights.bin"
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    if cached(fd, size - 4096):
        os.close(fd)
        pytest.skip(f"this file system keeps {tmp_path} in memory (tmpfs?): there is nothing to read ahead")
    return path, fd


@pytest.mark.parametrize("where", ["here", "in its own process"])
def test_read_ahead_brings_an_evicted_file_into_the_page_cache(where, tmp_path):
    size = 12 << 20  # past an 8 MB readahead window: one whole-file request would leave the end on disk
    path, fd = evicted_file(tmp_path, size)
    try:
        if where == "here":
            read_ahead([path])
        else:
            assert spawn_read_ahead([path]).wait(timeout=30) == 0
        deadline = time.monotonic() + 10  # the last requests may still be in flight
        while not all(cached(fd, off) for off in (0, size // 2, size - 4096)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(cached(fd, off) for off in (0, size // 2, size - 4096))
    finally:
        os.close(fd)


def test_nothing_is_started_for_no_files():
    assert spawn_read_ahead([]) is None


def test_a_file_looks_cached_only_once_it_is_read(tmp_path):
    path, fd = evicted_file(tmp_path, 3 << 20)
    try:
        assert not looks_cached(path, every=1 << 20)
        path.read_bytes()
        assert looks_cached(path, every=1 << 20)
    finally:
        os.close(fd)
