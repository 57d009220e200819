"""Checking a submission off the event loop, bounded in number and in time.

Resolving a document may wait on the outside world: a `hf://` include looked up while offline takes tens of
seconds, a graph on a network disk may stall. The HTTP handlers never wait on that themselves: the check runs
on a small pool of its own threads (not the threads the other routes use, so `/health` and the event streams
answer meanwhile), at most `workers` at a time (one more is a 503 at once: the server is busy), and a handler
gives up after `seconds` (a 503: nothing was queued; the lookup ends in the background and is forgotten).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

DEFAULT_WORKERS = 4
DEFAULT_SECONDS = 20.0


class Lookups:
    def __init__(self, workers: int = DEFAULT_WORKERS, seconds: float = DEFAULT_SECONDS):
        self.workers, self.seconds = workers, seconds
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="nodegraph-lookup")
        self._slots = threading.BoundedSemaphore(workers)

    @property
    def pending(self) -> int:
        return self.workers - self._slots._value  # for /health; read without the lock (a snapshot)

    async def run(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`work(*args, **kwargs)` on the pool; Rejected (503) when the pool is full or the bound is passed."""
        from nodegraph.serve.documents import reject

        if not self._slots.acquire(blocking=False):
            raise reject("server_busy", "document", f"the server is checking {self.workers} other submissions "
                         "(their lookups are slow)", "try again in a little while; nothing was queued", status=503)

        def bounded():
            try:
                return work(*args, **kwargs)
            finally:
                self._slots.release()

        try:
            future = self._pool.submit(bounded)
        except BaseException:
            self._slots.release()
            raise
        try:
            # shield: a timeout abandons the lookup (a thread cannot be stopped); it still frees its slot
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.seconds)
        except asyncio.TimeoutError:
            raise reject("lookup_timeout", "document", f"checking the submission took over {self.seconds:g} s "
                         "(a Hub lookup while offline, or a slow disk?); nothing was queued",
                         "try again later, or submit the document with its files bundled; the operator can "
                         "raise `--lookup-seconds`", status=503) from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
