"""Checking a submission off the event loop, bounded in number and in time.

Resolving a document may wait on the outside world: a `hf://` include looked up while offline takes tens of
seconds, a graph on a network disk may stall. The HTTP handlers never wait on that themselves: the check runs
on a small pool of its own threads (not the threads the other routes use, so `/health` and the event streams
answer meanwhile), `workers` at a time, the others waiting their turn. A request gives up after `seconds`
(503, nothing queued: a check still waiting is dropped, one already running ends in the background and is
forgotten); with `max_pending` checks running or waiting, one more is a 503 at once (the server is busy).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

DEFAULT_WORKERS = 4
DEFAULT_SECONDS = 10.0
DEFAULT_PENDING = 64


class Lookups:
    def __init__(self, workers: int = DEFAULT_WORKERS, seconds: float = DEFAULT_SECONDS,
                 max_pending: int = DEFAULT_PENDING):
        self.workers, self.seconds, self.max_pending = workers, seconds, max_pending
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="nodegraph-lookup")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Checks running or waiting (what /health shows)."""
        return self._pending

    async def run(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`work(*args, **kwargs)` on the pool; Rejected (503) when too many wait or the time bound passes."""
        from nodegraph.serve.documents import reject

        with self._lock:
            if self._pending >= self.max_pending:
                raise reject("server_busy", "document", f"the server is checking {self._pending} other "
                             "submissions (their lookups are slow)", "try again in a little while; nothing was "
                             "queued", status=503)
            self._pending += 1
        try:
            future = self._pool.submit(work, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)  # when it ends, or is dropped while still waiting
        try:
            # shield: on a timeout the future is dropped below, not cancelled by wait_for (a running thread
            # cannot be stopped; a waiting one is cancelled and never runs)
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.seconds)
        except asyncio.TimeoutError:
            future.cancel()
            raise reject("lookup_timeout", "document", f"checking the submission took over {self.seconds:g} s "
                         "(a Hub lookup while offline, or a slow disk?); nothing was queued",
                         "try again later, or submit the document with its files bundled; the operator can "
                         "raise `--lookup-seconds`", status=503) from None

    def _done(self, future) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
