"""The memory side of planning: what a run's models weigh and when they are held, from the plan and the weight
files' headers, before anything loads (`nodegraph validate --memory`), and the refusal of a budget below the
least the run can use (`--max-memory`, `RunMode(max_memory=…)`). The sizes and the rules live in
nodegraph/memory; this module walks the plan's steps.
"""

from __future__ import annotations

from typing import Any

from nodegraph.exec.prefetch import _loads
from nodegraph.memory.budget import STREAMABLE, BudgetError, compute_size
from nodegraph.memory.estimate import BASELINE, ComponentSize, RunEstimate, component_bytes, peak
from nodegraph.memory.sizes import format_flag, format_size

__all__ = ["BudgetError", "check_budget", "estimate_run", "minimum_budget"]


def estimate_run(graph, values: dict[str, Any], float_bytes: int = 4, outputs: tuple[str, ...] | None = None
                 ) -> RunEstimate:
    """The estimate for running `graph` with graph inputs `values` (defaults fill the rest), in
    `float_bytes`-byte floats (4: fp32, 2: fp16/bf16). Reads file headers only; loads nothing."""
    plan = graph.plan(outputs)
    bound = {name: spec.default for name, spec in graph.inputs.items() if not spec.required}
    bound.update(values)
    known = {slot: bound[name] for name, slot in plan.input_slots.items() if name in bound}
    estimate = RunEstimate()
    freed_at = {slot: i for i, step in enumerate(plan.steps) for slot in step.free}
    last = len(plan.steps) - 1
    for index, step in enumerate(plan.steps):
        for model, component, options in _loads([step], known):  # (SDXLCheckpoint passes its model on in `known`)
            sizes = component_bytes(model, component, float_bytes, **options)
            if sizes is None:
                estimate.unknown.append(f"{step.node_id}.{component} ({model})")
                continue
            end = max((freed_at.get(slot, last) for _, slot in step.outputs), default=index)
            estimate.components.append(ComponentSize(step.node_id, component, sizes[0], (index, end), sizes[1]))
    estimate.peak, estimate.peak_step = peak(plan.steps, estimate.components, lambda c: c.bytes)
    return estimate


def minimum_budget(graph, values: dict[str, Any], dtype: Any = None, cpu: bool = True,
                   outputs: tuple[str, ...] | None = None) -> tuple[int, Any]:
    """(the smallest budget the planner can run `graph` in, the `RunEstimate`), from file headers only."""
    estimate = estimate_run(graph, values, compute_size(dtype), outputs)
    plan = graph.plan(outputs)

    def least(c) -> int:
        return c.largest_layer if cpu and c.component in STREAMABLE else c.bytes

    return peak(plan.steps, estimate.components, least)[0], estimate


def check_budget(graph, values: dict[str, Any], mode, device: Any, outputs: tuple[str, ...] | None = None) -> None:
    """Raise `BudgetError` before anything loads when `mode.max_memory` is below what the run can ever reach."""
    if mode.max_memory is None:
        return
    minimum, _ = minimum_budget(graph, values, mode.dtype, getattr(device, "type", "cpu") == "cpu", outputs)
    if mode.max_memory < minimum:
        raise BudgetError(
            f"`max_memory` {format_size(mode.max_memory)} is below the least this run can use: "
            f"{format_size(minimum)} (the process itself ~{format_size(BASELINE)}, plus the weights that must be "
            f"resident at once, streaming what can be streamed; activations come on top). "
            f"Give --max-memory {format_flag(minimum)} or more (more leaves room for the activations).")
