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


def run_item(graph, index: int, inputs: dict[str, Any], *, device: Any = None, dtype: Any = None,
             fast: bool = False, cancel=None, worker: str = "") -> ItemResult:
    """Run the graph once; a node or output failure becomes a failed result (cancellation propagates)."""
    from nodegraph.exec.executor import run_graph
    from nodegraph.exec.hooks import RunCancelledError
    from nodegraph.exec.writers import OutputInfo, summarize, writer_for

    started = time.perf_counter()
    result = ItemResult(index, DONE, worker=worker)
    try:
        outputs = run_graph(graph, inputs, device=device, dtype=dtype, cancel=cancel, fast=fast)
        with tempfile.TemporaryDirectory(prefix="nodegraph-item-") as scratch:
            for name, value in outputs.items():
                ptype = graph.output_types[name]
                writer = writer_for(ptype, value)
                if writer is None:
                    result.values[name] = summarize(value)
                    continue
                info = OutputInfo(name, ptype, graph, inputs, device, dtype, fast=fast)
                paths = writer.write(value, pathlib.Path(scratch), info)
                result.files[name] = [(p.name, p.read_bytes()) for p in paths]
    except (RunCancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the batch goes on: the item is recorded as failed, with the reason
        result = ItemResult(index, FAILED, error=_describe(exc), worker=worker)
    result.seconds = round(time.perf_counter() - started, 4)
    return result


def _describe(exc: BaseException) -> str:
    from nodegraph.exec.steps import NodeExecutionError
    from nodegraph.exec.writers import OutputError
    from nodegraph.spec.errors import ValidationFailed

    if isinstance(exc, (NodeExecutionError, OutputError, ValidationFailed)):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def load_bundled_graph(bundle: dict, folder: Optional[str] = None):
    """A graph shipped as a bundle (its file and includes as text), written to a private folder and loaded."""
    from nodegraph.spec.bundle import unbundle
    from nodegraph.spec.loader import load_graph

    folder = folder or tempfile.mkdtemp(prefix="nodegraph-batch-graph-")
    return load_graph(unbundle(bundle, folder))


def graph_bundle(graph) -> dict:
    """The graph and every file it includes, as text (what a remote worker needs to load the same graph)."""
    from nodegraph.spec.bundle import BUNDLE_FORMAT, bundle_graph

    if graph.file and os.path.isfile(graph.file):
        return bundle_graph(graph.file)
    return {"format": BUNDLE_FORMAT, "main": "graph.yaml", "files": {"graph.yaml": graph.to_yaml()}}
