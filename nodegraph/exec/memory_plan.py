"""The memory side of planning: what a run's models weigh and when they are held, from the plan and the weight
files' headers, before anything loads (`nodegraph validate --memory`), and the refusal of a budget below the
least the run can use (`--max-memory`, `RunMode(max_memory=…)`). The sizes and the rules live in
nodegraph/memory; this module walks the plan's steps.
"""

from __future__ import annotations

from typing import Any

from nodegraph.exec.prefetch import _loads
from nodegraph.exec.steps import SubgraphStep
from nodegraph.memory.activations import VAE_NODES, image_shape, vae_config, vae_work
from nodegraph.memory.budget import STREAMABLE, BudgetError, compute_size
from nodegraph.memory.denoiser import DENOISER_NODES, HEAP_SLACK, denoiser_bytes, denoiser_config
from nodegraph.memory.estimate import BASELINE, ComponentSize, RunEstimate, component_bytes, peak
from nodegraph.memory.sizes import format_flag, format_size
from nodegraph.memory.text import text_work

__all__ = ["BudgetError", "check_budget", "estimate_run", "minimum_budget"]


def estimate_run(graph, values: dict[str, Any], float_bytes: int = 4, outputs: tuple[str, ...] | None = None,
                 tiled: bool = False, lean: bool = False, heap: bool = True) -> RunEstimate:
    """The estimate for running `graph` with graph inputs `values` (defaults fill the rest), in
    `float_bytes`-byte floats (4: fp32, 2: fp16/bf16), the VAE passes untiled (or `tiled`, or the decodes `lean`,
    models/vae_lean.py; encodes then count untiled). `heap=False`: the denoiser's live tensors alone, without
    the C heap's slack around them (HEAP_SLACK: what the process's RSS adds). Reads file headers and configs
    only; loads nothing."""
    plan = graph.plan(outputs)
    bound = {name: spec.default for name, spec in graph.inputs.items() if not spec.required}
    bound.update(values)
    known = {slot: bound[name] for name, slot in plan.input_slots.items() if name in bound}
    estimate = RunEstimate()
    last = sum(_span(step) for step in plan.steps) - 1
    vae, seen, denoiser, encoders = None, False, None, []
    for step, (model, component, options), held in _held_loads(plan.steps, known, 0, last, estimate.ticks, ""):
        if component == "vae" and not seen:  # the first VAE the run loads sizes its passes
            vae, seen = vae_config(model, **options), True
        if component in ("unet", "transformer") and denoiser is None:  # the first denoiser sizes the steps
            denoiser = (denoiser_config(model, component, **options) or {}, component)
        if component.startswith("text_encoder"):  # their activations at the encode steps (memory/text.py)
            encoders.append((held, denoiser_config(model, component, **options) or {}))
        sizes = component_bytes(model, component, float_bytes, **options)
        if sizes is None:
            estimate.unknown.append(f"{step.node_id}.{component} ({model})")
            continue
        estimate.components.append(ComponentSize(step.node_id, component, sizes[0], held, sizes[1]))
    if vae is not None:
        work = {kind: vae_work(vae, bound, float_bytes, tiled, lean and kind == "VAEDecode") for kind in VAE_NODES}
        estimate.work = {index: work[kind] for index, kind in enumerate(_tick_types(plan.steps)) if kind in VAE_NODES}
    if denoiser is not None and denoiser[0]:
        work = _denoiser_work(denoiser[0], denoiser[1], vae, bound, float_bytes)
        work = int(work * HEAP_SLACK) if heap and denoiser[1] == "unet" else work  # measured on UNets
        for index, runs in enumerate(_denoiser_ticks(plan.steps)):
            if runs:
                estimate.work[index] = max(estimate.work.get(index, 0), work)
    texts = text_work([(h, c) for h, c in encoders if c], list(_tick_types(plan.steps)), bound, float_bytes)
    for index, extra in texts.items():
        estimate.work[index] = max(estimate.work.get(index, 0), extra)
    estimate.peak, estimate.peak_step = peak(estimate.ticks, estimate.components, lambda c: c.bytes, estimate.work)
    return estimate


def _denoiser_work(config: dict, component: str, vae: dict | None, bound: dict, float_bytes: int) -> int:
    """Bytes one denoiser call adds: the latent from the graph's image size and the VAE's downsampling (2 per
    VAE block after the first, else 8), the batch doubled for classifier-free guidance (`guidance_scale` > 1) on a
    UNet or on a transformer without distilled guidance (Flux's `guidance_embeds`)."""
    batch, height, width = image_shape(bound, vae or {"sample_size": 8 * int(config.get("sample_size") or 128)})
    factor = 2 ** (len((vae or {}).get("block_out_channels", [0] * 4)) - 1)
    scale = bound.get("guidance_scale")
    cfg = isinstance(scale, (int, float)) and scale > 1 and not config.get("guidance_embeds")
    latent = (batch * (2 if cfg else 1), max(height // factor, 1), max(width // factor, 1))
    text = bound.get("max_sequence_length")  # a flow graph's T5 / Qwen prompt length (0: the checkpoint's)
    prompt = bound.get("prompt")  # Z-Image attends to the prompt's own tokens only
    return denoiser_bytes(config, component, latent, float_bytes, text if isinstance(text, int) else None,
                          prompt if isinstance(prompt, str) else None)


def _denoiser_ticks(steps: list):
    """For each point of the timeline (`_held_loads`' order): whether its step calls the denoiser (its node, or
    a node of the repeat body / included graph it runs)."""
    for step in steps:
        if isinstance(step, SubgraphStep):
            yield from _denoiser_ticks(step.plan.steps)
        else:
            yield _calls_denoiser(step)


def _calls_denoiser(step) -> bool:
    body = getattr(step, "body", None)
    if body is not None:
        return any(_calls_denoiser(inner) for inner in body.steps)
    if isinstance(step, SubgraphStep):
        return any(_calls_denoiser(inner) for inner in step.plan.steps)
    return getattr(getattr(getattr(step, "node_type", None), "cls", None), "__name__", "") in DENOISER_NODES


def _tick_types(steps: list):
    """The node type's name at each point of the timeline, in `_held_loads`' order."""
    for step in steps:
        if isinstance(step, SubgraphStep):
            yield from _tick_types(step.plan.steps)
        else:
            yield getattr(getattr(getattr(step, "node_type", None), "cls", None), "__name__", "")


def _span(step) -> int:
    """Points of the timeline a step takes: one, or those of an included graph's steps."""
    return sum(_span(inner) for inner in step.plan.steps) if isinstance(step, SubgraphStep) else 1


def _held_loads(steps: list, known: dict, base: int, outer_end: int, ticks: list[str], prefix: str):
    """(step, (model, component, options), (first, last point held)) of every load `steps` declare, on one
    timeline: a model is held from its loader's point to the end of the step after which the executor frees it,
    or, never freed in `steps`, to `outer_end` (an included graph's model that flows out, or the run's end).
    Included graphs are walked into, so a model they load and free inside is not held across the whole include.
    Appends each point's node id to `ticks`."""
    starts = [base + sum(_span(s) for s in steps[:i]) for i in range(len(steps))]
    ends = [start + _span(step) - 1 for start, step in zip(starts, steps)]
    freed = {slot: ends[i] for i, step in enumerate(steps) for slot in step.free}
    for i, step in enumerate(steps):
        if isinstance(step, SubgraphStep):
            inner = dict(step.literals)
            inner.update({slot: known[outer] for slot, outer in step.refs if outer in known})
            end = max((freed.get(outer, outer_end) for _, outer in step.outputs), default=ends[i])
            yield from _held_loads(step.plan.steps, inner, starts[i], end, ticks, f"{prefix}{step.node_id}/")
            continue
        ticks.append(prefix + step.node_id)
        loads = list(_loads([step], known))
        if loads:
            kept = _kept(steps, i)
            end = max((freed.get(slot, outer_end) for slot in kept), default=starts[i])
            yield from ((step, load, (starts[i], end)) for load in loads)


def _kept(steps: list, index: int) -> set[int]:
    """The slots that keep step `index`'s outputs alive: its own, and the outputs of later nodes that hold what
    they read (`keeps_models`, e.g. ApplyControlNet's Control value holds the ControlNet), transitively."""
    slots = {slot for _, slot in steps[index].outputs}
    for later in steps[index + 1:]:
        cls = getattr(getattr(later, "node_type", None), "cls", None)
        if getattr(cls, "keeps_models", False) and slots & set(later.reads):
            slots |= {slot for _, slot in later.outputs}
    return slots


def minimum_budget(graph, values: dict[str, Any], dtype: Any = None, cpu: bool = True,
                   outputs: tuple[str, ...] | None = None) -> tuple[int, Any]:
    """(the smallest budget the planner can run `graph` in, the `RunEstimate`), from file headers only."""
    estimate = estimate_run(graph, values, compute_size(dtype), outputs, tiled=True)  # the least a VAE pass needs

    def least(c) -> int:
        return c.largest_layer if cpu and c.component in STREAMABLE else c.bytes

    return peak(estimate.ticks, estimate.components, least, estimate.work)[0], estimate


def check_budget(graph, values: dict[str, Any], mode, device: Any, outputs: tuple[str, ...] | None = None) -> None:
    """Raise `BudgetError` before anything loads when `mode.max_memory` is below what the run can ever reach."""
    if mode.max_memory is None:
        return
    streams = getattr(device, "type", "cpu") in ("cpu", "cuda")  # from the file (CPU), pinned host memory (CUDA)
    minimum, _ = minimum_budget(graph, values, mode.dtype, streams, outputs)
    if mode.max_memory < minimum:
        raise BudgetError(
            f"`max_memory` {format_size(mode.max_memory)} is below the least this run can use: "
            f"{format_size(minimum)} (the process itself ~{format_size(BASELINE)}, plus the weights that must be "
            f"resident at once, streaming what can be streamed, plus the tiled VAE pass's and the denoiser's "
            f"activations at this image size). Give --max-memory {format_flag(minimum)} or more.")


def planned_peak(graph, values: dict[str, Any], mode, device: Any, outputs: tuple[str, ...] | None = None) -> int:
    """The estimated peak of the run as `mode.max_memory` makes it go (the `-v` report's estimate): a UNet, VAE or
    transformer that does not fit the budget beside what is held when it loads streams (its largest layer
    counted), and a VAE pass whose untiled activations do not fit beside the weights held then runs lean (a
    decode, models/vae_lean.py) or tiled.
    Without a budget: `estimate_run`'s peak."""
    estimate = estimate_run(graph, values, compute_size(mode.dtype), outputs)
    budget = mode.max_memory
    if budget is None:
        return estimate.peak
    streams = getattr(device, "type", "cpu") in ("cpu", "cuda")

    def held(index: int, cost) -> int:
        return sum(cost(c) for c in estimate.components if c.held[0] <= index <= c.held[1])

    streamed = set()
    for c in sorted(estimate.components, key=lambda c: c.held[0]):  # each loader's choice, in load order
        others = held(c.held[0], lambda o: 0 if o is c else o.largest_layer if id(o) in streamed else o.bytes)
        if streams and c.component in STREAMABLE and BASELINE + others + c.bytes > budget:
            streamed.add(id(c))

    def cost(c) -> int:
        return c.largest_layer if id(c) in streamed else c.bytes

    tiled = estimate_run(graph, values, compute_size(mode.dtype), outputs, tiled=True).work
    lean = estimate_run(graph, values, compute_size(mode.dtype), outputs, lean=True).work
    work = {i: next((v for v in (w, lean.get(i, w)) if BASELINE + held(i, cost) + v <= budget), tiled.get(i, w))
            for i, w in estimate.work.items()}
    return peak(estimate.ticks, estimate.components, cost, work)[0]
