"""The memory a run will need, estimated from its plan and the weight files' headers, before anything loads
(`nodegraph validate --memory`, and the budget check of `--max-memory`).

Sizes come from safetensors headers only (dtype and shape of every tensor: a few kilobytes read per file), in
the run's compute dtype (float8 tensors stay one byte: models/fp8.py keeps them so). Lifetimes come from the
plan: a model is held from its loader step until the step after which the executor frees the loader's output
(the run-scoped cache of `nodegraph run` drops it then). The estimate is the largest sum of models held at one
step, plus the process's own baseline (Python, torch); activations are not counted (the VAE decode's are
estimated apart, models/vae_tiling.py). A model a node rebuilds (a LoRA copy) or keeps alive past its slot is
not seen; a hub repo not yet downloaded counts 0 and is named in `unknown`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASELINE = 400 << 20  # RSS of a process that has imported torch and nodegraph (measured: 0.35–0.42 GB)
_FLOAT = {"F64", "F32", "F16", "BF16"}
_SIZES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
          "F8_E4M3": 1, "F8_E5M2": 1}
# where each component sits in an original-layout single file (SD / SDXL)
_SINGLE_FILE_PREFIXES = {"unet": ("model.diffusion_model.",), "vae": ("first_stage_model.",),
                         "text_encoder": ("cond_stage_model.", "conditioner.embedders.0."),
                         "text_encoder_2": ("conditioner.embedders.1.",)}
_MAX_HEADER = 100 << 20


@dataclass
class ComponentSize:
    node_id: str
    component: str
    bytes: int
    held: tuple[int, int]  # (first, last) top-level step index the model is held over


@dataclass
class RunEstimate:
    components: list[ComponentSize] = field(default_factory=list)
    peak: int = BASELINE
    peak_step: str | None = None
    unknown: list[str] = field(default_factory=list)  # loaders whose model could not be sized before the run

    def lines(self) -> list[str]:
        from nodegraph.memory.sizes import format_size

        out = ["memory estimate (weights from file headers, plus the process baseline; activations not counted):"]
        for c in self.components:
            out.append(f"  {c.node_id}.{c.component}: {format_size(c.bytes)}")
        out.append(f"  peak: {format_size(self.peak)}" + (f" (at `{self.peak_step}`)" if self.peak_step else ""))
        out.extend(f"  not sized before the run: {u}" for u in self.unknown)
        return out


def tensor_bytes(path: Path, compute_size: int, prefixes: tuple[str, ...] = ()) -> int:
    """Bytes the tensors of safetensors file `path` take once loaded: floating tensors in `compute_size`-byte
    elements, float8 and integer ones as stored; with `prefixes`, only keys that start with one of them."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > _MAX_HEADER:
            raise ValueError(f"{path}: safetensors header of {length} bytes is not plausible")
        header = json.loads(f.read(length))
    total = 0
    for key, info in header.items():
        if key == "__metadata__" or (prefixes and not key.startswith(prefixes)):
            continue
        numel = 1
        for n in info["shape"]:
            numel *= n
        kind = info["dtype"]
        total += numel * (compute_size if kind in _FLOAT else _SIZES.get(kind, 4))
    return total


def component_bytes(model: str, component: str, compute_size: int, **options: Any) -> int | None:
    """The loaded size of one component, or None where its files are not on this disk (or are pickles)."""
    from nodegraph.models.prefetch import component_files

    files = component_files(model, component, **options)
    if not files or any(f.suffix.lower() in (".ckpt", ".pt", ".pth", ".bin") for f in files):
        return None
    single = len(files) == 1 and Path(model).expanduser().is_file()
    prefixes = _SINGLE_FILE_PREFIXES.get(component, ()) if single else ()
    return sum(tensor_bytes(f, compute_size, prefixes) for f in files)


def estimate_run(graph, values: dict[str, Any], compute_size: int = 4, outputs: tuple[str, ...] | None = None
                 ) -> RunEstimate:
    """The estimate for running `graph` with graph inputs `values` (defaults fill the rest), in
    `compute_size`-byte floats (4: fp32, 2: fp16/bf16). Reads file headers only; loads nothing."""
    from nodegraph.exec.prefetch import _loads

    plan = graph.plan(outputs)
    bound = {name: spec.default for name, spec in graph.inputs.items() if not spec.required}
    bound.update(values)
    known = {slot: bound[name] for name, slot in plan.input_slots.items() if name in bound}
    estimate = RunEstimate()
    freed_at = {slot: i for i, step in enumerate(plan.steps) for slot in step.free}
    last = len(plan.steps) - 1
    for index, step in enumerate(plan.steps):
        for model, component, options in _loads([step], known):  # (SDXLCheckpoint passes its model on in `known`)
            size = component_bytes(model, component, compute_size, **options)
            if size is None:
                estimate.unknown.append(f"{step.node_id}.{component} ({model})")
                continue
            end = max((freed_at.get(slot, last) for _, slot in step.outputs), default=index)
            estimate.components.append(ComponentSize(step.node_id, component, size, (index, end)))
    for index, step in enumerate(plan.steps):
        held = sum(c.bytes for c in estimate.components if c.held[0] <= index <= c.held[1])
        if BASELINE + held > estimate.peak:
            estimate.peak, estimate.peak_step = BASELINE + held, step.node_id
    return estimate
