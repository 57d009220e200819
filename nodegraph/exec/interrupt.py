"""Cancel inside a model call: while a run is cancellable, every torch module checks its cancel token before
its forward runs, so a cancelled run stops at the next layer, not after a whole denoising step.

The executor checks the token between nodes and between repeat iterations; one UNet call of a large image can
take minutes, so that alone lets `DELETE /runs/{id}` wait as long. This adds the check between layers:

    with cancel_between_blocks(ctx.cancel):
        execute_plan(...)

A process-wide forward pre-hook (torch's `register_module_forward_pre_hook`) is registered while at least one
thread is inside, and removed when the last one leaves (so runs outside it pay nothing). It reads the token
of the calling thread only: a model shared by two threads is interrupted for the cancelled run alone. The
hook raises the token's own error (RunCancelledError) from the forward; everything above unwinds as for a
cancel between steps. The check is a thread-local read and an Event test: below a microsecond a module.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

_local = threading.local()
_lock = threading.Lock()
_users = 0
_handle: Any = None


def _check(module, args) -> None:
    token = getattr(_local, "token", None)
    if token is not None and token.cancelled:
        token.raise_if_cancelled(None)


def _register() -> None:
    global _users, _handle
    with _lock:
        if _users == 0:
            from torch.nn.modules.module import register_module_forward_pre_hook

            _handle = register_module_forward_pre_hook(_check)
        _users += 1


def _unregister() -> None:
    global _users, _handle
    with _lock:
        _users -= 1
        if _users == 0 and _handle is not None:
            _handle.remove()
            _handle = None


@contextlib.contextmanager
def cancel_between_blocks(token):
    """While inside, module forwards on this thread raise `token`'s cancel error once it is cancelled.
    `token` is a CancelToken (anything with `cancelled` and `raise_if_cancelled(node_id)`)."""
    _register()
    previous = getattr(_local, "token", None)
    _local.token = token
    try:
        yield
    finally:
        _local.token = previous
        _unregister()
