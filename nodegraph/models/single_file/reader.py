"""Open a single-file checkpoint: every tensor's key, shape and dtype, without reading the weights.

safetensors files are read through their header only (the tensors are memory-mapped later, on load); `.ckpt`/
`.pt` pickles only with `allow_pickle`, then with `torch.load(weights_only=True, mmap=True)`, and unwrapped from
their `state_dict` nesting as diffusers does (`while "state_dict" in ckpt`). ComfyUI's scaled-fp8 safetensors
files come out as float8 weights that carry their scale (models/scaled_fp8.py), the scale tensors left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nodegraph.models.checkpoint import Entry, _read_safetensors_header, load_pickle_state
from nodegraph.models.errors import CheckpointError
from nodegraph.models.weight_files import PICKLES


@dataclass
class CheckpointFile:
    """The tensors of one file, keyed as stored; `global_step` from a pickle's training state (None otherwise)."""

    path: Path
    entries: dict[str, Entry]
    global_step: int | None = None
    shapes: dict[str, tuple[int, ...]] = field(init=False)

    def __post_init__(self):
        self.shapes = {k: e.shape for k, e in self.entries.items()}


def open_checkpoint(path: str | Path, allow_pickle: bool = False) -> CheckpointFile:
    path = Path(path).expanduser()
    shown = str(path)
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    if path.suffix.lower() in PICKLES:
        if not allow_pickle:
            raise CheckpointError(
                f"{shown} is a pickle checkpoint, and loading a pickle can run code. If you trust its source, "
                f"allow pickles (input `allow_pickle: true`; it is then read with torch.load(weights_only=True)); "
                f"better, use a .safetensors file.")
        return _open_pickle(path, shown)
    from nodegraph.models.scaled_fp8 import unscale  # ComfyUI's scaled-fp8 files read as float8 weights + scales

    return CheckpointFile(path, unscale(_read_safetensors_header(path, shown), shown))


def _open_pickle(path: Path, shown: str) -> CheckpointFile:
    import torch

    state = load_pickle_state(path, shown)
    step = state.get("global_step") if isinstance(state, dict) else None
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{shown} holds a {type(state).__name__}, not a state dict.")
    entries = {k: Entry(shown, tuple(t.shape), t.dtype, tensor=t) for k, t in state.items() if torch.is_tensor(t)}
    return CheckpointFile(path, entries, int(step) if isinstance(step, int) else None)
