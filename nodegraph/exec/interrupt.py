"""Cancel inside a model call: once a cancellable run is cancelled, its models' blocks check the run's cancel
token before they run, so the run stops at the next block, not after a whole denoising step.

The executor checks the token between nodes and between repeat iterations; one UNet call of a large image can
take minutes, so that alone lets `DELETE /runs/{id}` wait as long. This adds the check between blocks:

    with cancel_between_blocks(ctx.cancel, components):
        execute_plan(...)

The checks are forward pre-hooks on a model, its direct children and every direct child of a
ModuleList/Sequential inside it that has layers of its own (down/up/mid blocks, resnets, attention and
transformer blocks; 92 for an SD 1.5 UNet; single layers in lists such as `to_out.0`, `ff.net.2` or a Dropout
are not blocks). They are added only when the token is cancelled, by the cancelling thread, to the models the
run's component cache holds then (a model loaded later stops at the next node), and taken off when the run
leaves `cancel_between_blocks`. A run that is not cancelled therefore keeps torch's fast module call path (a
module with any hook takes the slower one, on every call of every hooked block). A block already running when
the cancel comes stops at its next checked child (tests/exec/test_interrupt_blocks.py).
Adding hooks to a module that another thread is running relies on CPython's GIL: torch's call path copies a
module's hook dicts in one step (`(*_global_forward_pre_hooks.items(), *self._forward_pre_hooks.items())`), which
the GIL makes atomic against our insert; a free-threaded build (3.13t) would race here.
The hook reads the calling thread's token, so another thread's run of the same model goes on, and raises the
token's own error (RunCancelledError) from the forward; everything above unwinds as for a cancel between steps.
A model made outside the component cache is not instrumented: it stops at the next node or step, as before.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

_local = threading.local()


def _check(module, args) -> None:
    token = getattr(_local, "token", None)
    if token is not None and token.cancelled:
        token.raise_if_cancelled(None)


def instrument(model) -> list:
    """Add the cancel check to `model`'s blocks; returns the hooks' handles (`handle.remove()` takes one off)."""
    import torch

    blocks = {id(model): model}
    blocks.update((id(child), child) for child in model.children())
    for module in model.modules():
        if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)):  # a single layer in a list (`to_out.0`,
            # `ff.net.2`, a Dropout) is not a block: the block around it is checked just before it
            blocks.update((id(child), child) for child in module.children() if next(child.children(), None) is not None)
    return [block.register_forward_pre_hook(_check) for block in blocks.values()]


def _models(value: Any, depth: int = 0):
    """The torch modules in a component: itself, or inside a tuple/list/dict or an object's attributes."""
    import torch

    if isinstance(value, torch.nn.Module):
        yield value
    elif depth < 2 and isinstance(value, (tuple, list)):
        for item in value:
            yield from _models(item, depth + 1)
    elif depth < 2 and isinstance(value, dict):
        for item in value.values():
            yield from _models(item, depth + 1)
    elif depth < 2 and hasattr(value, "__dict__") and not isinstance(value, type):
        for item in vars(value).values():
            if isinstance(item, torch.nn.Module):
                yield item


class _Checks:
    """The checks one `cancel_between_blocks` added: hooks go on when its token is cancelled, off when it ends.
    Two runs cancelled at once on one model share its hooks (counted), so the first to end keeps the other's.

    `add` runs in the cancelling thread, which may be the main thread's Ctrl-C handler landing while this same
    thread is inside `add`/`close`: the lock is re-entrant (no deadlock) and such an `add` is queued and run by
    the interrupted call once its own change of the tables is whole (`_exclusive`)."""

    _lock = threading.RLock()
    _busy = False  # True while one call changes the tables (under _lock)
    _deferred: list = []  # work that a signal handler on the changing thread queued
    _hooked: dict[int, list] = {}  # id(model) -> [runs using its hooks, handles]

    def __init__(self, components):
        self.components, self.models, self.closed = components, [], False

    @classmethod
    def _exclusive(cls, work) -> None:
        with cls._lock:
            if cls._busy:  # only this thread can be inside: a handler interrupted the change
                cls._deferred.append(work)
                return
            while work is not None:
                cls._busy = True
                try:
                    work()
                finally:
                    cls._busy = False
                # a handler landing from here on sees _busy False and does its own work whole
                work = cls._deferred.pop(0) if cls._deferred else None

    def add(self) -> None:
        """Instrument the models the component cache holds now (from the cancelling thread)."""
        self._exclusive(self._add)

    def _add(self) -> None:
        if self.closed or self.components is None:
            return
        held = {id(model) for model in self.models}
        for value in list(getattr(self.components, "_items", {}).values()):  # ComponentCache's components
            for model in _models(value):
                if id(model) in held:
                    continue
                held.add(id(model))
                self.models.append(model)  # kept alive until close(): its id stays its own
                entry = self._hooked.setdefault(id(model), [0, None])
                if entry[0] == 0:
                    entry[1] = instrument(model)
                entry[0] += 1

    def close(self) -> None:
        self._exclusive(self._close)

    def _close(self) -> None:
        self.closed = True
        for model in self.models:
            entry = self._hooked[id(model)]
            entry[0] -= 1
            if entry[0] == 0:
                for handle in entry[1]:
                    handle.remove()
                del self._hooked[id(model)]
        self.models.clear()


def hooked_models() -> int:
    """How many models carry cancel checks now (0 while no cancelled run is inside `cancel_between_blocks`)."""
    with _Checks._lock:
        return len(_Checks._hooked)


def refresh() -> None:
    """Called as nodes start: once the current run is cancelled, also check the models loaded since."""
    checks = getattr(_local, "checks", None)
    if checks is not None and _local.token.cancelled:
        checks.add()


@contextlib.contextmanager
def cancel_between_blocks(token, components=None):
    """While inside, once `token` is cancelled, the blocks of the models in `components` (a ComponentCache) raise
    its cancel error on this thread. `token` is a CancelToken (`cancelled`, `raise_if_cancelled(node_id)`,
    `on_cancel(callback)`); nothing is added to the models unless it is cancelled."""
    previous = getattr(_local, "token", None), getattr(_local, "checks", None)
    checks = _Checks(components)
    _local.token, _local.checks = token, checks
    forget = token.on_cancel(checks.add)
    try:
        yield
    finally:
        forget()
        checks.close()
        _local.token, _local.checks = previous
