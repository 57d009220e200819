"""Which weight files a run will load, known from its plan and bound inputs, read ahead by a process of its own.

`nodegraph run` calls `start_prefetch` once the inputs are bound. It finds the files without torch, imports
torch (which the first loader needs anyway) only when some file is not yet in the page cache, and then starts
the read-ahead: the disk reads the weight files, in the order the plan loads them, while the run builds its
models, encodes the prompt and loads the components before the UNet is first called (see
nodegraph/models/prefetch.py for the mechanism and its bounds).
Each node says what it will load (`Node.model_reads`, answered by the loader nodes from their `ModelSource`
inputs); only models known before the run (literals or graph inputs, also inside included graphs) are read
ahead; a model computed by another node is left to its loader. `--no-prefetch` (or the
environment variable NODEGRAPH_PREFETCH=0) turns it off.
"""

from __future__ import annotations

import atexit
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodegraph.exec.steps import NodeStep, SubgraphStep

_UNKNOWN = object()  # a value another node computes during the run


def files_for_run(plan, values: dict[str, Any]) -> list[Path]:
    """The weight files the loader nodes of `plan` will read with graph inputs `values`, in the order the plan
    runs them, each once."""
    from nodegraph.models.prefetch import component_files

    known = {slot: values[name] for name, slot in plan.input_slots.items() if name in values}
    files: dict[Path, None] = {}
    for model, component, options in _loads(plan.steps, known):
        files.update(dict.fromkeys(component_files(model, component, **options)))
    return list(files)


def _loads(steps: list, known: dict[int, Any]):
    """(model, component, options) of every load the nodes declare (`Node.model_reads`), in plan order; a node
    passing a location on (an output typed `ModelSource` fed by its input of that name) carries the value on."""
    for step in steps:
        if isinstance(step, SubgraphStep):
            inner = dict(step.literals)
            inner.update({i: known[o] for i, o in step.refs if o in known})
            yield from _loads(step.plan.steps, inner)
            continue
        if not isinstance(step, NodeStep):
            continue
        node_type = step.node_type
        args = dict(step.literals)
        args.update({name: known.get(slot, _UNKNOWN) for name, slot in step.refs})
        for port, slot in step.outputs:
            if port in node_type.output_locations and port in node_type.inputs:
                known[slot] = args.get(port, _UNKNOWN)
        yield from node_type.cls.model_reads({k: v for k, v in args.items() if v is not _UNKNOWN})


@dataclass
class Prefetch:
    """A started read-ahead: the files it reads (after the memory bound) and its process (None: nothing to read)."""

    files: list[Path]
    process: subprocess.Popen | None

    def stop(self) -> None:
        """End the reading early (it ends by itself once the files are read)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def prefetch_enabled() -> bool:
    return os.environ.get("NODEGRAPH_PREFETCH", "1").strip().lower() not in ("0", "false", "no", "off")


def start_prefetch(graph, values: dict[str, Any]) -> Prefetch | None:
    """Start reading the weight files that running `graph` (all its outputs) with `values` will load, in a process
    of its own that this process stops when it exits; None when NODEGRAPH_PREFETCH=0. Never raises for a bad
    model path: the run reports that itself."""
    from nodegraph.models.prefetch import available_memory, looks_cached, spawn_read_ahead, within_budget

    if not prefetch_enabled():
        return None
    to_read = [f for f in files_for_run(graph.plan(), values) if not looks_cached(f)]
    files = within_budget(to_read, available_memory())
    if files:
        # torch first: its own import reads about 290 MB cold, in small reads that would wait behind the
        # read-ahead (cold SD1.5 load phase: `import torch` 1.9–2.6 s alone, 3.4–4.8 s beside it, and the whole
        # load no faster). Only when there is something to read: a warm run or a graph without models pays nothing.
        import torch  # noqa: F401
    prefetch = Prefetch(files, spawn_read_ahead(files))
    if prefetch.process is not None:
        atexit.register(prefetch.stop)  # reading on after the run would only take the disk from what comes next
    return prefetch
