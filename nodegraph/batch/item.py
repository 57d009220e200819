"""Running one item: the graph with the item's inputs, its file outputs encoded in memory.

The same function runs in the batch process and inside Ray actors; it returns the files as bytes (PNG with
the usual metadata, written by the registered output writers) so that only inputs and file bytes ever cross
a process or network boundary, never models or tensors.
"""

from __future__ import annotations

import os
import pathlib
import socket
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Optional

DONE, FAILED = "done", "failed"


@dataclass
class ItemResult:
    """What one item made: per output, the files (name, bytes) or a small JSON-able summary of the value."""

    index: int
    status: str
    files: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    worker: str = ""


def worker_name(kind: str) -> str:
    """Where an item ran, for the manifest: `local:<pid>` or `ray:<host>:<pid>`."""
    return f"{kind}:{os.getpid()}" if kind == "local" else f"{kind}:{socket.gethostname()}:{os.getpid()}"


def item_runner(device: Any = None, dtype: Any = None, fast: bool = False, *, max_memory: Optional[int] = None,
                weights: Optional[str] = None):
    """The runner of one batch (or one Ray actor): the process's loaded models, and a node-output cache kept
    across items, so what every item computes alike runs once — the LoRA read and fused, a fixed prompt
    encoded, a ControlNet hint prepared — and only what an item changes (the seed's noise, ...) runs again."""
    from nodegraph.core.context import COMPONENTS
    from nodegraph.core.mode import RunMode
    from nodegraph.exec.lru_caches import OutputCache, machine_memory, storages
    from nodegraph.runner import Runner

    cache = OutputCache(min(machine_memory() // 4, 4 << 30), shared=lambda: storages(COMPONENTS.values()))
    return Runner(RunMode(device, dtype, fast, max_memory, weights), cache=cache)


def run_item(graph, index: int, inputs: dict[str, Any], runner, *, cancel=None, worker: str = "") -> ItemResult:
    """Run the graph once through `runner` (`item_runner`); a node or output failure becomes a failed result
    (cancellation propagates)."""
    from nodegraph.exec.hooks import RunCancelledError
    from nodegraph.spec.values import bind_input_values

    started = time.perf_counter()
    result = ItemResult(index, DONE, worker=worker)
    try:
        values = bind_input_values(graph.checked, dict(inputs))
        outputs = runner.run(graph, values, cancel=cancel)
        with tempfile.TemporaryDirectory(prefix="nodegraph-item-") as scratch:
            # the PNG records the item's own inputs (what re-runs it), as the manifest row does
            for written in runner.write(graph, inputs, outputs, pathlib.Path(scratch)):
                if written.files is None:
                    result.values[written.name] = written.summary
                else:
                    result.files[written.name] = [(p.name, p.read_bytes()) for p in written.files]
    except (RunCancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the batch goes on: the item is recorded as failed, with the reason
        result = ItemResult(index, FAILED, error=_describe(exc), worker=worker)
    result.seconds = round(time.perf_counter() - started, 4)
    return result


def _describe(exc: BaseException) -> str:
    from nodegraph.exec.steps import NodeExecutionError
    from nodegraph.exec.writers import OutputError
    from nodegraph.runner import describe_failure
    from nodegraph.spec.errors import ValidationFailed

    if isinstance(exc, (NodeExecutionError, OutputError, ValidationFailed)):
        return describe_failure(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def load_bundled_graph(bundle: dict, folder: Optional[str] = None):
    """A graph shipped as a bundle (its file and includes as text), written to a private folder and loaded."""
    from nodegraph.runner import open_target

    folder = folder or tempfile.mkdtemp(prefix="nodegraph-batch-graph-")
    return open_target(bundle, folder).graph


def graph_bundle(graph) -> dict:
    """The graph and every file it includes, as text (what a remote worker needs to load the same graph)."""
    from nodegraph.exec.png_metadata import graph_bundle as bundle

    return bundle(graph)
