"""Asking the kernel to read files into the page cache, in order, a few megabytes ahead at a time.

Run as a script by nodegraph/models/prefetch.py (`python -I -S read_ahead.py FILE…`): a process of its own,
with only the standard library, so that it neither waits for nor holds up the run's GIL. (As a thread, its tens
of thousands of short system calls each waited for the GIL while the run imported torch, and the reading
crawled.)

`posix_fadvise(POSIX_FADV_WILLNEED)` starts the reads and returns: nothing is copied into any process, and the
run's loaders find the pages cached or in flight. Linux reads at most the device's readahead window per request
(read_ahead_kb: 128 KB by default; on the benchmark machine one request for a whole 3.3 GB file read 8 MB),
hence requests of `CHUNK`. Measured on a 3.3 GB file, 128 KB and 8 MB requests read it equally fast (about 1.5
GB/s, the disk's). At most `IN_FLIGHT` bytes are asked for and not yet read (see `_wait_until_read`).
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from typing import Iterable

CHUNK = 128 << 10  # Linux's default readahead window: a larger request may read only its first window
IN_FLIGHT = 4 << 20  # bytes asked for and not yet read, at most: the queue other reads wait behind


def read_ahead(files: Iterable[str | os.PathLike], chunk: int = CHUNK, in_flight: int = IN_FLIGHT) -> int:
    """Ask the kernel to read `files` into the page cache, in order, with at most `in_flight` bytes asked for and
    not yet read; returns the bytes requested. Waits for the disk: run it in a process of its own."""
    if not hasattr(os, "posix_fadvise"):  # not Linux/BSD: nothing to ask
        return 0
    requested = 0
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            size, asked = os.fstat(fd).st_size, deque()
            for offset in range(0, size, chunk):
                _wait_until_read(fd, asked, in_flight // chunk)
                os.posix_fadvise(fd, offset, min(chunk, size - offset), os.POSIX_FADV_WILLNEED)
                asked.append(min(offset + chunk, size) - 1)
                requested += min(chunk, size - offset)
            _wait_until_read(fd, asked, 0)
        except OSError:
            continue  # advice only: a file that cannot take it is read by its loader as before
        finally:
            os.close(fd)
    return requested


def _wait_until_read(fd: int, asked: deque, keep: int, patience: float = 1.0) -> None:
    """Wait until at most `keep` of the chunks in `asked` (their last byte offsets, oldest first) are still being
    read. Why: every other read of the disk waits behind the queue; Python importing torch from a cold cache
    waited 1.2–2.8 s for the disk behind 16 MB in flight, 0.3–1.6 s behind 1 MB, and 0.01–0.2 s alone.
    A chunk still unread after `patience` seconds is given up on (the loader reads it if need be)."""
    deadline = None
    while len(asked) > keep:
        if in_page_cache(fd, asked[0]):
            asked.popleft()
            deadline = None
            continue
        now = time.monotonic()
        deadline = deadline or now + patience
        if now > deadline:
            asked.popleft()
            continue
        time.sleep(0.001)


def in_page_cache(fd: int, offset: int) -> bool:
    """Whether the byte at `offset` is in the page cache, read (RWF_NOWAIT: never waits for the disk)."""
    if not hasattr(os, "RWF_NOWAIT"):
        return True  # cannot tell: do not throttle
    try:
        return os.preadv(fd, [bytearray(1)], offset, os.RWF_NOWAIT) == 1
    except BlockingIOError:
        return False
    except OSError:
        return True


if __name__ == "__main__":
    read_ahead(sys.argv[1:])
