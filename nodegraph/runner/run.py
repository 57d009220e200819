"""`Runner`: one run mode, one component cache and (optionally) one node-output cache; runs bound graphs
and writes their outputs. Every front-end (cli.py, the ComfyUI command, the server's worker, batch items)
runs graphs through it, so the run sequence and the output writing exist once.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from nodegraph.core.mode import RunMode


@dataclass
class Written:
    """One output of a run: the files written (None when no writer takes the value) or a JSON-able summary."""

    name: str
    files: Optional[list[pathlib.Path]] = None
    summary: Any = None


class Runner:
    """Runs graphs in `mode` with `components` (the loaded-model cache; None = the process-wide one) and `cache`
    (a node-output cache such as exec/lru_caches.py's OutputCache; None runs every node)."""

    def __init__(self, mode: Optional[RunMode] = None, *, components: Any = None, cache: Any = None):
        self.mode = mode or RunMode()
        self.components, self.cache = components, cache

    def context(self, hooks: Sequence = (), cancel: Any = None):
        """The RunContext of one run; a bad device or dtype fails here, before anything runs."""
        from nodegraph.core.context import RunContext, check_dtype_name

        check_dtype_name(self.mode.dtype)
        ctx = RunContext(mode=self.mode, components=self.components, hooks=tuple(hooks), cancel=cancel)
        if self.mode.device is not None:
            ctx.check_device()
        if self.mode.fast:  # refused at start, with a clear message, where it would do nothing (nodegraph/fast)
            from nodegraph.fast.support import check_supported

            check_supported(ctx.device)
        if self.mode.weights:  # fp8 storage refused at start where torch or the device lacks float8
            from nodegraph.core.context import DeviceError
            from nodegraph.models.fp8 import Fp8Unsupported, check_fp8

            try:
                check_fp8(ctx.device, self.mode.weights)
            except Fp8Unsupported as exc:
                raise DeviceError(f"`--weights {self.mode.weights}`: {exc}") from None
        return ctx

    def run(self, graph, values: dict[str, Any], *, hooks: Sequence = (), cancel: Any = None,
            outputs: Optional[Sequence[str]] = None, prefetch: bool = False) -> dict[str, Any]:
        """Run `graph` with bound `values` (`Target.bind`); {output: value}. `prefetch` reads the weight files
        ahead of the loaders (one-shot processes). A failed node's error carries `fed_by`, the graph inputs
        wired into it; a cancelled run raises RunCancelledError even if it finished its last node."""
        from nodegraph.core.cancel import RunCancelledError
        from nodegraph.exec.executor import execute_plan
        from nodegraph.exec.steps import NodeExecutionError

        ctx = self.context(hooks, cancel)
        wanted = tuple(outputs) if outputs is not None else None
        plan = graph.plan(wanted)
        if self.mode.max_memory is not None:  # an impossible budget is refused before anything loads
            from nodegraph.exec.memory_plan import check_budget

            check_budget(graph, values, self.mode, ctx.device, wanted)
        if prefetch:  # the disk reads the weights ahead of the loaders (nodegraph/exec/prefetch.py)
            from nodegraph.exec.prefetch import start_prefetch

            start_prefetch(graph, values)
        try:
            result = execute_plan(plan, values, ctx, cache=self.cache)
        except NodeExecutionError as exc:
            exc.fed_by = inputs_feeding(graph, exc.node_id, values)
            raise
        if ctx.cancel.cancelled:
            raise RunCancelledError()
        return result

    def write(self, target, values: dict[str, Any], outputs: dict[str, Any], out_dir: pathlib.Path) -> list[Written]:
        """Write `outputs` into `out_dir` (created when a file is written) with their metadata: through the
        registered output writers (PNG with its recipe), or as ComfyUI's SaveImage names them for a workflow."""
        from nodegraph.runner.target import Target

        if isinstance(target, Target) and target.comfy is not None:
            return _write_comfy(target.comfy, outputs, out_dir)
        graph = target.graph if isinstance(target, Target) else target
        return write_outputs(graph, values, outputs, out_dir, self.mode)


def write_outputs(graph, values: dict[str, Any], outputs: dict[str, Any], out_dir: pathlib.Path,
                  mode: RunMode) -> list[Written]:
    from nodegraph.exec.writers import OutputInfo, summarize, writer_for

    written = []
    for name, value in outputs.items():
        ptype = graph.output_types[name]
        writer = writer_for(ptype, value)
        if writer is None:
            written.append(Written(name, summary=summarize(value)))
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        info = OutputInfo(name, ptype, graph, values, mode.device, mode.dtype, fast=mode.fast, weights=mode.weights)
        written.append(Written(name, files=list(writer.write(value, out_dir, info))))
    return written


def _write_comfy(comfy, outputs: dict[str, Any], out_dir: pathlib.Path) -> list[Written]:
    """Each SaveImage as ComfyUI writes it: `<prefix>_<counter>_.png` with its `prompt` / `workflow` chunks."""
    import json

    from nodegraph.comfy.command import save_images

    translation, workflow = comfy
    chunks = {"prompt": json.dumps(workflow.api)}
    if workflow.ui is not None:
        chunks["workflow"] = json.dumps(workflow.ui)
    return [Written(saved.output, files=save_images(outputs[saved.output], out_dir, saved.prefix, chunks))
            for saved in translation.saves]


def inputs_feeding(graph, node_id: str, values: dict[str, Any]) -> str:
    """`name = value` of the graph inputs wired into a (top-level) node: what the user may need to change."""
    from nodegraph.spec.document import Ref

    spec = graph.spec.nodes.get(node_id.split("/")[0])
    if spec is None:
        return ""
    wired = spec.inputs if hasattr(spec, "inputs") else {}
    names = [v.name for v in wired.values() if isinstance(v, Ref) and v.scope == "inputs"]
    return ", ".join(f"{n} = {values.get(n)!r}" for n in names)


def describe_failure(exc: BaseException) -> str:
    """A failed run's error as one text for a user: the node's error and the graph inputs that fed it."""
    fed_by = getattr(exc, "fed_by", "")
    return str(exc) + (f"\n  the node's graph inputs: {fed_by}" if fed_by else "")
