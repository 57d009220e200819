"""Cancel inside a model call: while a run is cancellable, a model's blocks check the run's cancel token before
they run, so a cancelled run stops at the next block, not after a whole denoising step.

The executor checks the token between nodes and between repeat iterations; one UNet call of a large image can
take minutes, so that alone lets `DELETE /runs/{id}` wait as long. This adds the check between blocks:

    with cancel_between_blocks(ctx.cancel, components):
        execute_plan(...)            # an event hook calls refresh() as nodes start (serve/events.py RunHook)

The models in the component cache get a forward pre-hook on themselves, their direct children and every
direct child of a ModuleList/Sequential inside them that has layers of its own (down/up/mid blocks, resnets,
attention and transformer blocks: each a few milliseconds of work on a GPU; 92 hooks for an SD 1.5 UNet).
Single layers in such lists (`to_out.0`, `ff.net.2`, a Dropout) are not blocks: with hooks on them too (156
for SD 1.5) a warm 25-step `builtin:digits` server run took 181-183 ms in the executor, without 163-167 ms,
with no hooks at all 158-161 ms (in-process, medians of 20, one CPU thread). The hook reads the
calling thread's token (none outside `cancel_between_blocks`: it returns at once) and raises the token's own
error (RunCancelledError) from the forward; everything above unwinds as for a cancel between steps. A hook
costs about 4 µs a call (measured on a CPU: 2.4 µs a module call without hooks, 6.1 µs with one), so the
hooks go on blocks, not on every layer (a process-wide hook would tax every module call of every model). A
model made outside the component cache is not instrumented: it stops at the next node or step, as before.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

_local = threading.local()
MARK = "_nodegraph_cancel_hooks"


def _check(module, args) -> None:
    token = getattr(_local, "token", None)
    if token is not None and token.cancelled:
        token.raise_if_cancelled(None)


def instrument(model) -> None:
    """Add the cancel check to `model`'s blocks (once; a model already instrumented is left as it is)."""
    import torch

    if getattr(model, MARK, False):
        return
    blocks = {id(model): model}
    blocks.update((id(child), child) for child in model.children())
    for module in model.modules():
        if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)):  # a single layer in a list (`to_out.0`,
            # `ff.net.2`, a Dropout) is not a block: the block around it is checked just before it
            blocks.update((id(child), child) for child in module.children() if next(child.children(), None) is not None)
    for block in blocks.values():
        block.register_forward_pre_hook(_check)
    object.__setattr__(model, MARK, True)  # a plain attribute, not a registered submodule or buffer


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


def refresh() -> None:
    """Instrument the models the current run's component cache holds now (called as nodes start: a loader
    node's model is checked from the next node on)."""
    components = getattr(_local, "components", None)
    if components is None or "torch" not in __import__("sys").modules:
        return
    for value in list(getattr(components, "_items", {}).values()):  # ComponentCache keeps its components there
        for model in _models(value):
            instrument(model)


@contextlib.contextmanager
def cancel_between_blocks(token, components=None):
    """While inside, the blocks of the models in `components` (a ComponentCache) raise `token`'s cancel error on
    this thread once it is cancelled. `token` is a CancelToken (`cancelled`, `raise_if_cancelled(node_id)`)."""
    previous = getattr(_local, "token", None), getattr(_local, "components", None)
    _local.token, _local.components = token, components
    try:
        refresh()
        yield
    finally:
        _local.token, _local.components = previous
