"""Which files hold a component's weights, decided from file names and JSON alone (no torch), so that the same
answer serves the loader and the prefetch that reads those files ahead of it (models/prefetch.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from nodegraph.models.errors import CheckpointError
from nodegraph.models.sources import Source

DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model", "diffusion_pytorch_model")  # stems of (.safetensors, .bin)
TRANSFORMERS_WEIGHTS = ("model", "pytorch_model")
# a single file with one of these suffixes is a pickle (torch.load); any other is read as safetensors
PICKLES = (".ckpt", ".pt", ".pth", ".bin")


# ComfyUI's scaled-fp8 files (models/scaled_fp8.py): a `<prefix>scaled_fp8` marker, `<layer>.scale_weight` (and
# `.scale_input`) beside float8 weights; its newer quantized files carry `<layer>.comfy_quant` / `.weight_scale`.
SCALE_WEIGHT, SCALE_INPUT = ".scale_weight", ".scale_input"
QUANT_SUFFIXES = (".comfy_quant", ".weight_scale", ".weight_scale_2")


def scaled_fp8_markers(keys) -> list[str]:
    return [k for k in keys if k == "scaled_fp8" or k.endswith(".scaled_fp8")]


def is_scaled_fp8(keys) -> bool:
    """Whether tensor names `keys` are those of a ComfyUI scaled-fp8 file (a marker or a per-layer scale)."""
    return bool(scaled_fp8_markers(keys)) or any(k.endswith(SCALE_WEIGHT) for k in keys)


def without_scales(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """A scaled-fp8 file's tensors as a plain file's: the marker and the per-layer scales left out."""
    markers = set(scaled_fp8_markers(shapes))
    return {k: v for k, v in shapes.items() if k not in markers and not k.endswith((SCALE_WEIGHT, SCALE_INPUT))}


@dataclass(frozen=True)
class WeightFiles:
    """One component's weights: a single file or the shards an index names (paths relative to the source)."""

    paths: tuple[str, ...]
    pickle: bool


def find_weights(src: Source, folder: str, stems: tuple[str, str], variant: str | None,
                 allow_pickle: bool) -> WeightFiles:
    """The weight files of the component in `folder`; `stems` are the names before .safetensors and .bin."""
    names = src.files(folder)
    join = (lambda n: f"{folder}/{n}") if folder else (lambda n: n)
    tag = f".{variant}" if variant else ""
    for stem, ext, pickle in ((stems[0], "safetensors", False), (stems[1], "bin", True)):
        single, index = f"{stem}{tag}.{ext}", f"{stem}.{ext}.index{tag}.json"
        if single not in names and index not in names:
            continue
        found = single if single in names else index
        if pickle and not allow_pickle:
            raise CheckpointError(
                f"{src.where(join(found))} is a pickle (.bin) checkpoint, and loading a pickle can run code. "
                f"If you trust the source, pass allow_pickle=True (it is then read with "
                f"torch.load(weights_only=True)); better, convert it to safetensors.")
        if found == single:
            return WeightFiles((join(single),), pickle)
        weight_map = src.read_json(join(index)).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{src.where(join(index))} has no `weight_map`; re-save the checkpoint.")
        return WeightFiles(tuple(join(shard) for shard in sorted(set(weight_map.values()))), pickle)
    weights = [n for n in names if n.endswith((".safetensors", ".bin")) or ".index" in n]
    stem_pattern = "|".join(map(re.escape, stems))
    pattern = re.compile(rf"^(?:{stem_pattern})(?:\.([^.-]+)(?:-\d+-of-\d+)?\.(?:safetensors|bin)"
                         rf"|\.(?:safetensors|bin)\.index\.([^.]+)\.json)$")
    variants = sorted({v for n in weights if (m := pattern.match(n)) for v in m.groups() if v})
    hint = f" Variants present: {', '.join(variants)} (pass `variant=` to pick one)." if variants else ""
    raise CheckpointError(
        f"no {f'`{variant}` variant ' if variant else ''}weights in {src.where(folder) if folder else src.name}: "
        f"expected {stems[0]}{tag}.safetensors (or a sharded index{', or a .bin' if allow_pickle else ''}); "
        f"the folder holds {', '.join(weights) or 'no weight files'}.{hint}")


def locate_component(src: Source, name: str) -> tuple[str, str]:
    """The folder holding component `name` ("" for the root) and the class model_index.json declares ("" if none)."""
    index = src.read_json("model_index.json") if "model_index.json" in src.files("") else None
    in_folder = src.has_folder(name)
    if index is None:
        return (name if in_folder else ""), ""
    entry = index.get(name)
    if entry is None and name not in index:
        if in_folder:
            return name, ""
        listed = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list)]
        raise CheckpointError(f"{src.where('model_index.json')} lists no component `{name}`; it lists "
                              f"{', '.join(listed) or 'none'}.")
    if not (isinstance(entry, list) and len(entry) == 2):
        raise CheckpointError(f"{src.where('model_index.json')}: `{name}` should be [library, class], not {entry!r}.")
    if entry[1] is None:
        raise CheckpointError(f"{src.where('model_index.json')} sets `{name}` to None: this pipeline has no {name}.")
    return (name if in_folder else ""), entry[1]


class _TensorInfo(BaseModel):
    """One tensor in a safetensors header: its dtype name, shape and byte range after the header."""

    model_config = ConfigDict(extra="forbid")
    dtype: StrictStr
    shape: list[StrictInt]
    data_offsets: tuple[StrictInt, StrictInt]


@dataclass(frozen=True)
class SafetensorsHeader:
    size: int  # bytes of the JSON header (the tensors' offsets count from 8 + size)
    tensors: dict[str, _TensorInfo]
    metadata: dict[str, Any]


def read_safetensors_header(path, shown: str, limits=None) -> SafetensorsHeader:
    """The checked header of safetensors file `path`: the length and entry count within spec/limits.py, the
    JSON a mapping of {name: {dtype, shape, data_offsets}} (and `__metadata__`), numbers bounded.

    CheckpointError says what is wrong, before more than the header's bytes are read."""
    from nodegraph.spec.limits import InputRefused, active_limits
    from nodegraph.spec.reading import JsonProblem, load_json, open_regular

    limits = limits or active_limits()
    try:
        with open_regular(path, shown) as f:
            head, size = f.read(8), os.fstat(f.fileno()).st_size
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 0 or n > size - 8:
                raise CheckpointError(f"{shown} is truncated or is not a safetensors file; re-download or re-save "
                                      f"it.")
            if n > limits.max_safetensors_header_bytes:
                raise CheckpointError(f"{shown}: its safetensors header declares {n:,} bytes, over the limit of "
                                      f"{limits.max_safetensors_header_bytes:,} (a real checkpoint's is under "
                                      f"1 MB); raise it with NODEGRAPH_MAX_SAFETENSORS_HEADER_BYTES if genuine.")
            raw = f.read(n) if n >= 0 else b""
    except InputRefused as exc:
        raise CheckpointError(str(exc)) from None
    if n < 0 or len(raw) < n:
        raise CheckpointError(f"{shown} is truncated or is not a safetensors file; re-download or re-save it.")
    try:
        header = load_json(raw, limits)
    except JsonProblem as exc:
        raise CheckpointError(f"{shown} has a corrupt safetensors header ({exc.message}); re-download or "
                              f"re-save it.") from None
    return _checked_header(header, n, shown, limits)


def _checked_header(header: Any, n: int, shown: str, limits) -> SafetensorsHeader:
    if not isinstance(header, dict):
        raise CheckpointError(f"{shown} has a corrupt safetensors header (a JSON {type(header).__name__}, not an "
                              f"object); re-download or re-save it.")
    count = len(header) - ("__metadata__" in header)
    if count > limits.max_safetensors_entries:
        raise CheckpointError(f"{shown}: its safetensors header lists {count:,} tensors, over the limit of "
                              f"{limits.max_safetensors_entries:,}; raise it with "
                              f"NODEGRAPH_MAX_SAFETENSORS_ENTRIES if genuine.")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{shown} has a corrupt safetensors header (`__metadata__` is not an object).")
    tensors: dict[str, _TensorInfo] = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            entry = _TensorInfo.model_validate(info)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"]) or "the entry"
            raise CheckpointError(f"{shown} has a corrupt safetensors header entry for `{key[:80]}` ({where}: "
                                  f"{error['msg']}); re-download or re-save it.") from None
        if any(d < 0 for d in entry.shape) or len(entry.shape) > 16:
            raise CheckpointError(f"{shown} has a corrupt safetensors header entry for `{key[:80]}` (its shape).")
        tensors[key] = entry
    return SafetensorsHeader(n, tensors, metadata)
