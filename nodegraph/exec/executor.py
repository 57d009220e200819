"""Running a graph: bind and check the input values, take the (cached) plan, run it, report events."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Optional, Sequence, Union

from nodegraph.core.context import RunContext, check_dtype_name
from nodegraph.core.mode import RunMode
from nodegraph.exec.events import RunCancelled, RunFailed, RunFinished, RunStarted
from nodegraph.exec.hooks import CancelToken, Hook, RunCancelledError
from nodegraph.exec import plan as plan_module
from nodegraph.exec.plan import Plan
from nodegraph.exec.steps import run_steps
from nodegraph.spec.graph import Graph, install_engine


@dataclass
class RunOptions:
    """How to run: `device` (None = CUDA when present, else CPU), `dtype` (None = fp32; fp16, bf16),
    `hooks` (callables receiving events), `cancel` (a CancelToken scoped to this run), `cache` (a node-output
    cache, see exec/cache.py; None runs every node), `components` (the loaded-model cache; None = the
    process-wide one; exec/run_scoped.py frees each model after its last use, for one-shot processes), `fast`
    (fast mode: faster kernels instead of bit-equal images: within 2/255 of the default ones in fp32, about as far
    as bf16 is from fp32 in bf16; nodegraph/fast); `mode` (a `RunMode` carrying device, dtype, fast and the
    memory budget at once, as front-ends pass it; give it or the three separate fields)."""

    device: Any = None
    dtype: Any = None
    hooks: Sequence[Hook] = field(default_factory=tuple)
    cancel: Optional[CancelToken] = None
    cache: Any = None
    components: Any = None
    fast: bool = False
    mode: Optional[RunMode] = None

    def run_mode(self) -> RunMode:
        if self.mode is None:
            return RunMode(self.device, self.dtype, self.fast)
        if self.device is not None or self.dtype is not None or self.fast:
            raise TypeError("RunOptions: give `mode` or `device`/`dtype`/`fast`, not both")
        return self.mode


def execute_plan(plan: Plan, values: dict[str, Any], ctx: RunContext, cache: Any = None) -> dict[str, Any]:
    """Run a plan with already-checked graph-input values; emit run-level events.

    With a `cache` (exec/cache.py), steps whose signature it holds are served from it instead of run."""
    slots: list = [None] * plan.n_slots
    for name, slot in plan.input_slots.items():
        slots[slot] = values[name]
    if ctx.hooks:
        ctx.emit(RunStarted(plan.graph, plan.outputs))
    started = perf_counter()
    try:
        if cache is None:
            run_steps(plan.steps, slots, ctx)
        else:
            from nodegraph.exec.cache import run_steps_cached

            run_steps_cached(plan, slots, values, ctx, cache)
    except RunCancelledError:
        if ctx.hooks:
            ctx.emit(RunCancelled(plan.graph, ctx.node_id))
        raise
    except KeyboardInterrupt:
        if ctx.hooks:
            ctx.emit(RunCancelled(plan.graph, ctx.node_id))
        raise
    except BaseException as exc:
        if ctx.hooks:
            ctx.emit(RunFailed(plan.graph, exc))
        raise
    result = {name: slots[slot] for name, slot in plan.output_slots.items()}
    if ctx.hooks:
        ctx.emit(RunFinished(plan.graph, perf_counter() - started, result))
    return result


def run_graph(graph: Union[str, os.PathLike, Any], inputs: Optional[dict[str, Any]] = None, *,
              outputs: Optional[Sequence[str]] = None, device: Any = None, dtype: Any = None,
              hooks: Sequence[Hook] = (), cancel: Optional[CancelToken] = None, cache: Any = None,
              components: Any = None, fast: bool = False, mode: Optional[RunMode] = None,
              options: Optional[RunOptions] = None) -> dict[str, Any]:
    """Run a graph (a `Graph` or a path to a YAML file) and return {output name: value}.

    `inputs` are checked like `--set` values (type, choices, range, and every node port they feed);
    problems raise ValidationFailed. A node that raises becomes NodeExecutionError; cancellation through
    `cancel` raises RunCancelledError at the next node or iteration boundary.
    """
    from nodegraph.spec.loader import load_graph
    from nodegraph.spec.values import bind_input_values

    if not isinstance(graph, Graph):
        graph = load_graph(graph)
    options = options or RunOptions(device, dtype, tuple(hooks), cancel, cache, components, fast, mode)
    values = bind_input_values(graph.checked, dict(inputs or {}))
    plan = graph.plan(tuple(outputs) if outputs is not None else None)
    run_mode = options.run_mode()
    check_dtype_name(run_mode.dtype)
    ctx = RunContext(mode=run_mode, components=options.components, hooks=tuple(options.hooks),
                     cancel=options.cancel)
    if run_mode.device is not None:
        ctx.check_device()
    if run_mode.max_memory is not None:  # an impossible budget is refused before anything loads
        from nodegraph.exec.memory_plan import check_budget

        check_budget(graph, values, run_mode, ctx.device, tuple(outputs) if outputs is not None else None)
    return execute_plan(plan, values, ctx, options.cache)


def _plan(checked, outputs) -> Plan:
    return plan_module.build_plan(checked, outputs)  # looked up per call (tests replace it)


def _run(graph, inputs: dict[str, Any], options: Optional[RunOptions] = None) -> dict[str, Any]:
    return run_graph(graph, inputs, options=options)


install_engine(_plan, _run)  # `Graph.plan` / `Graph.run` (spec/ cannot import the executor)
