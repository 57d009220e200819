"""The memory a run will need, estimated from its plan and the weight files' headers, before anything loads
(`nodegraph validate --memory`, and the budget check of `--max-memory`); exec/memory_plan.py walks the plan.

Sizes come from safetensors headers only (dtype and shape of every tensor: a few kilobytes read per file), in
the run's compute dtype (float8 tensors stay one byte: models/fp8.py keeps them so). Lifetimes come from the
plan: a model is held from its loader step until the step after which the executor frees the loader's output
(the run-scoped cache of `nodegraph run` drops it then). The estimate is the largest sum of models held at one
step, plus the process's own baseline (Python, torch), plus what the step running then computes with (`work`:
the VAE decode's and encode's activations, memory/activations.py; the denoiser's, memory/denoiser.py; the text
encoders', memory/text.py). A model a node rebuilds (a LoRA copy) or keeps alive past its slot is not seen; a
hub repo not yet downloaded counts 0 and is named in `unknown`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASELINE = 256 << 20  # RSS of a process that has imported torch and nodegraph (measured: 0.23 GB, torch 2.13 CPU)
_FLOAT = {"F64", "F32", "F16", "BF16"}
_SIZES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
          "F8_E4M3": 1, "F8_E5M2": 1}
# where each component sits in an original-layout single file (SD / SDXL)
_SINGLE_FILE_PREFIXES = {"unet": ("model.diffusion_model.",), "vae": ("first_stage_model.",),
                         "text_encoder": ("cond_stage_model.", "conditioner.embedders.0."),
                         "text_encoder_2": ("conditioner.embedders.1.",)}


@dataclass
class ComponentSize:
    node_id: str
    component: str
    bytes: int
    held: tuple[int, int]  # (first, last) point of the run's timeline the model is held over (RunEstimate.ticks:
    # one a step, the steps of an included graph each their own)
    largest_layer: int = 0  # what streaming it (models/streaming.py) cannot go below


@dataclass
class RunEstimate:
    components: list[ComponentSize] = field(default_factory=list)
    peak: int = BASELINE
    peak_step: str | None = None
    unknown: list[str] = field(default_factory=list)  # loaders whose model could not be sized before the run
    ticks: list[str] = field(default_factory=list)  # the node id of each point of the run's timeline (`held`)
    work: dict[int, int] = field(default_factory=dict)  # point -> activations its step adds over the weights

    def lines(self) -> list[str]:
        from nodegraph.memory.sizes import format_size

        out = ["memory estimate (weights from file headers, the process baseline, the activations of the VAE, "
               "denoiser and text encoders):"]
        for c in self.components:
            out.append(f"  {c.node_id}.{c.component}: {format_size(c.bytes)}")
        for index, extra in sorted(self.work.items()):
            out.append(f"  {self.ticks[index]} activations: {format_size(extra)}")
        out.append(f"  peak: {format_size(self.peak)}" + (f" (at `{self.peak_step}`)" if self.peak_step else ""))
        out.extend(f"  not sized before the run: {u}" for u in self.unknown)
        return out


def layer_bytes(path: Path, compute_size: int, prefixes: tuple[str, ...] = ()) -> dict[str, int]:
    """{layer (key without its last part): bytes once loaded} for safetensors file `path`: floating tensors in
    `compute_size`-byte elements, float8 and integer ones as stored; with `prefixes`, only keys with one."""
    from nodegraph.models.weight_files import read_safetensors_header

    header = read_safetensors_header(path, str(path))  # checked: size, entry count, types (spec/limits.py)
    layers: dict[str, int] = {}
    for key, info in header.tensors.items():
        if prefixes and not key.startswith(prefixes):
            continue
        numel = 1
        for n in info.shape:
            numel *= n
        kind = info.dtype
        layer = key.rpartition(".")[0]
        layers[layer] = layers.get(layer, 0) + numel * (compute_size if kind in _FLOAT else _SIZES.get(kind, 4))
    return layers


def component_bytes(model: str, component: str, compute_size: int, **options: Any) -> tuple[int, int] | None:
    """(loaded size, largest layer) of one component, or None where its files are not on this disk (or are
    pickles)."""
    from nodegraph.models.prefetch import component_files

    files = component_files(model, component, **options)
    if not files or any(f.suffix.lower() in (".ckpt", ".pt", ".pth", ".bin") for f in files):
        return None
    single = len(files) == 1 and Path(model).expanduser().is_file()
    prefixes = _SINGLE_FILE_PREFIXES.get(component, ()) if single else ()
    # a file of that component alone (a Z-Image text encoder file, ComfyUI's diffusion_models/) has no prefix
    layers = [size for f in files for size in (layer_bytes(f, compute_size, prefixes)
                                               or layer_bytes(f, compute_size)).values()]
    return sum(layers), max(layers, default=0)


def peak(ticks: list[str], components: list[ComponentSize], cost, work: dict[int, int] | None = None
         ) -> tuple[int, str | None]:
    """BASELINE + the largest sum of `cost(component)` over the components held at one point of the timeline
    (`ticks`: each point's node id) plus that point's `work` (activations), and that point's node id."""
    best, where = BASELINE, None
    for index, node_id in enumerate(ticks):
        held = sum(cost(c) for c in components if c.held[0] <= index <= c.held[1]) + (work or {}).get(index, 0)
        if BASELINE + held > best:
            best, where = BASELINE + held, node_id
    return best, where
