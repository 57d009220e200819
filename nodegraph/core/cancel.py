"""Cancelling one run: a token the executor checks between nodes and iterations, and the error it raises.

It lives in core/ because `RunContext` carries it to every node; `nodegraph.exec.hooks` re-exports both names.
"""

from __future__ import annotations

import threading
from typing import Callable


class RunCancelledError(Exception):
    """The run was cancelled; raised at the next node or iteration boundary after `CancelToken.cancel()`."""

    def __init__(self, node_id: str | None = None):
        super().__init__(f"run cancelled{f' before node `{node_id}`' if node_id else ''}")
        self.node_id = node_id


class CancelToken:
    """Cancels one run: the executor checks it between nodes and between repeat iterations.

    `cancel()` is safe to call from a signal handler or another thread. `on_cancel(callback)` runs `callback()`
    once, in the thread that cancels (at once if the token is already cancelled); keep callbacks short, and
    add none to a token that a signal handler cancels.
    """

    __slots__ = ("_event", "_lock", "_callbacks")

    def __init__(self):
        self._event = threading.Event()
        self._lock = threading.RLock()  # re-entrant: a signal handler may cancel while this thread holds it
        self._callbacks: list = []

    def cancel(self) -> None:
        with self._lock:
            already = self._event.is_set()
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        if not already:
            for callback in callbacks:
                callback()

    def on_cancel(self, callback) -> Callable[[], None]:
        """Call `callback()` when the token is cancelled; returns a function that takes the callback back."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._discard(callback)
        callback()
        return lambda: None

    def _discard(self, callback) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self, node_id: str | None = None) -> None:
        if self._event.is_set():
            raise RunCancelledError(node_id)
