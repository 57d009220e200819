"""Which files hold a component's weights, decided from file names and JSON alone (no torch), so that the same
answer serves the loader and the prefetch that reads those files ahead of it (models/prefetch.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodegraph.models.errors import CheckpointError
from nodegraph.models.sources import Source

DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model", "diffusion_pytorch_model")  # stems of (.safetensors, .bin)
TRANSFORMERS_WEIGHTS = ("model", "pytorch_model")
# a single file with one of these suffixes is a pickle (torch.load); any other is read as safetensors
PICKLES = (".ckpt", ".pt", ".pth", ".bin")


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
