"""Cancelling one run: a token the executor checks between nodes and iterations, and the error it raises.

It lives in core/ because `RunContext` carries it to every node; `nodegraph.exec.hooks` re-exports both names.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class RunCancelledError(Exception):
    """The run was cancelled; raised at the next node or iteration boundary after `CancelToken.cancel()`."""

    def __init__(self, node_id: str | None = None):
        super().__init__(f"run cancelled{f' before node `{node_id}`' if node_id else ''}")
        self.node_id = node_id


class CancelToken:
    """Cancels one run: the executor checks it between nodes and between repeat iterations.

    `cancel()` may be called from any thread and from a signal handler (Ctrl-C): the token takes no lock of its
    own. Its state is a flag and a list changed only by single list operations (append, pop, remove), each
    atomic under CPython's GIL (and under a free-threaded build's per-list lock), so a handler that interrupts
    `on_cancel`/`cancel` on the same thread can neither deadlock nor lose a callback; the flag is set before the
    waiters' Event, so a handler never re-enters that Event's lock.

    `on_cancel(callback)` runs `callback()` exactly once, in the thread that cancels (or at once, in the
    registering thread, if the token is already cancelled). A callback that raises is logged and the others
    still run: `cancel()` itself never raises. A callback may run inside the main thread's signal handler, so
    it must not block on a lock the interrupted code may hold (exec/interrupt.py's takes a re-entrant lock and
    defers its work when it interrupted its own critical section).
    """

    __slots__ = ("_cancelled", "_event", "_callbacks")

    def __init__(self):
        self._cancelled = False
        self._event = threading.Event()  # for waiters only (tests); the flag is `_cancelled`
        self._callbacks: list = []

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True  # first: a handler landing below sees it and does not set the Event again
            self._event.set()
        self._run_callbacks()

    def on_cancel(self, callback) -> Callable[[], None]:
        """Call `callback()` when the token is cancelled; returns a function that takes the callback back."""
        self._callbacks.append(callback)
        if self._cancelled:  # cancelled before or while appending: whoever pops the callback first runs it
            self._run_callbacks()
        return lambda: self._discard(callback)

    def _run_callbacks(self) -> None:
        while True:
            try:
                callback = self._callbacks.pop(0)  # atomic: two threads draining at once never share a callback
            except IndexError:
                return
            try:
                callback()
            except Exception:  # one failing callback must not break the canceller (DELETE /runs) or skip others
                log.exception("a cancel callback (%r) failed; the run is still cancelled", callback)

    def _discard(self, callback) -> None:
        try:
            self._callbacks.remove(callback)
        except ValueError:  # already run (or being run) by a canceller
            pass

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def raise_if_cancelled(self, node_id: str | None = None) -> None:
        if self._cancelled:
            raise RunCancelledError(node_id)
