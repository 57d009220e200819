"""A run's memory budget (`--max-memory`, `RunMode(max_memory=…)`): refused at plan time when no way of running
fits it, and the decisions it drives while the run goes (stream a model from its file, tile the VAE).

What the planner can do (CPU): load the models one after another and free each after its last use (the
run-scoped cache), stream a UNet or VAE whose weights do not fit what is left from its memory-mapped file block
by block (models/streaming.py: about one layer resident), and tile the VAE (memory/vae.py). The smallest budget
it can reach is the process baseline plus, at the step that holds most, the largest layer of each streamable
model and the whole of every other (text encoders load whole). Activations are not in that figure: a budget
just above it can still run out while a UNet computes; the message says so.
"""

from __future__ import annotations

from typing import Any

STREAMABLE = ("unet", "vae", "transformer")  # what load_component(stream=True) streams (folders)


class BudgetError(ValueError):
    """No way of running the graph fits the memory budget; the message gives the smallest that would."""


def compute_size(dtype: Any) -> int:
    """Bytes of one floating-point weight in the run's dtype (None: float32)."""
    return 2 if str(dtype).replace("torch.", "") in ("fp16", "bf16", "float16", "bfloat16", "half") else 4


def should_stream(ctx, model: str, component: str, **options: Any) -> bool:
    """For a loader: stream this component from its file, because the budget leaves less than it needs."""
    from pathlib import Path

    budget = ctx.mode.max_memory
    if budget is None or component not in STREAMABLE or ctx.device.type not in ("cpu", "cuda") or ctx.fast \
            or Path(model).expanduser().is_file():  # single files load whole (models/single_file)
        return False
    from nodegraph.memory.estimate import component_bytes
    from nodegraph.memory.usage import headroom

    sizes = component_bytes(model, component, compute_size(ctx.dtype), **options)
    return sizes is not None and sizes[0] > headroom(ctx.device, budget)
