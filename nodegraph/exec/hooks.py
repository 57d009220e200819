"""Cross-cutting concerns that subscribe to executor events: cancellation and progress bars.

A hook is any callable taking one event. No node prints and no node knows about tqdm.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import Any, Callable

from nodegraph.core.cancel import CancelToken, RunCancelledError  # re-exported: their home is core/
from nodegraph.exec.events import (NodeFinished, NodeStarted, RepeatFinished, RepeatIteration, RepeatStarted,
                                   RunCancelled, RunFailed, RunFinished)

Hook = Callable[[Any], None]


@contextlib.contextmanager
def cancel_on_ctrl_c(cancel: CancelToken):
    """While inside, a first Ctrl-C cancels `cancel` (the run stops at the next node or step, writing nothing) and
    a second one stops at once (KeyboardInterrupt); the previous handler comes back on leaving."""

    def on_sigint(signum, frame):
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()
        print("\ncancelling at the next step (Ctrl-C again to stop now)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


class ProgressHook:
    """A tqdm bar per running `repeat` node (nested repeats get nested bars that vanish when done)."""

    def __init__(self, file=None, disable: bool | None = None):
        self._file = file or sys.stderr
        self._disable = disable
        self._bars: dict[str, Any] = {}

    def __call__(self, event: Any) -> None:
        if isinstance(event, RepeatStarted):
            from tqdm import tqdm

            self._bars[event.node_id] = tqdm(total=event.total, desc=event.node_id, file=self._file,
                                             disable=self._disable, leave=not self._bars,
                                             position=len(self._bars), dynamic_ncols=True)
        elif isinstance(event, RepeatIteration):
            bar = self._bars.get(event.node_id)
            if bar is not None:
                bar.update(1)
        elif isinstance(event, RepeatFinished):
            bar = self._bars.pop(event.node_id, None)
            if bar is not None:
                bar.close()
        elif isinstance(event, (RunFinished, RunFailed, RunCancelled)):
            for bar in reversed(list(self._bars.values())):
                bar.close()
            self._bars.clear()


class LogHook:
    """Prints one line per node start/finish (the CLI's `--verbose`)."""

    def __init__(self, file=None):
        self._file = file or sys.stderr

    def __call__(self, event: Any) -> None:
        if isinstance(event, NodeStarted):
            print(f"started {event.node_id} ({event.node_type})", file=self._file, flush=True)
        elif isinstance(event, NodeFinished):
            print(f"finished {event.node_id} in {event.seconds:.3f}s", file=self._file, flush=True)
