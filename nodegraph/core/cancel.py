"""Cancelling one run: a token the executor checks between nodes and iterations, and the error it raises.

It lives in core/ because `RunContext` carries it to every node; `nodegraph.exec.hooks` re-exports both names.
"""

from __future__ import annotations

import threading


class RunCancelledError(Exception):
    """The run was cancelled; raised at the next node or iteration boundary after `CancelToken.cancel()`."""

    def __init__(self, node_id: str | None = None):
        super().__init__(f"run cancelled{f' before node `{node_id}`' if node_id else ''}")
        self.node_id = node_id


class CancelToken:
    """Cancels one run: the executor checks it between nodes and between repeat iterations.

    `cancel()` is safe to call from a signal handler or another thread.
    """

    __slots__ = ("_event",)

    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self, node_id: str | None = None) -> None:
        if self._event.is_set():
            raise RunCancelledError(node_id)
