"""What a process that runs graphs sets up once, and the Ctrl-C handling of interactive runs."""

from __future__ import annotations

import contextlib


def prepare_process(*, heap_reuse: bool = True, memory_budget: bool = False) -> None:
    """PNG metadata on image outputs (the recipe to re-run them); with `heap_reuse` the C allocator keeps freed
    tensor memory for reuse, and under a `memory_budget` in one arena for all threads (exec/heap.py; before
    anything is loaded)."""
    from nodegraph.exec import png_metadata

    png_metadata.install()
    if heap_reuse:
        from nodegraph.exec.heap import reuse_freed_heap

        reuse_freed_heap()
    if memory_budget:
        from nodegraph.exec.heap import one_heap_arena

        one_heap_arena()


@contextlib.contextmanager
def interactive(cancel=None):
    """A CancelToken that a first Ctrl-C cancels (the run stops at the next node or step, writing nothing) and a
    second one stops at once (KeyboardInterrupt)."""
    from nodegraph.core.cancel import CancelToken
    from nodegraph.exec.hooks import cancel_on_ctrl_c

    with cancel_on_ctrl_c(cancel or CancelToken()) as token:
        yield token
