"""PNG metadata for image outputs: an A1111-style `parameters` text and a `nodegraph` chunk to re-run from.

`parameters` is the line tools such as A1111 and civitai read (prompt, negative prompt, steps, sampler, CFG
scale, seed, size, model), filled from the graph inputs that feed ports declaring those roles (core/types.py
`Role`, found by spec/port_roles.py), whatever the inputs are called. `nodegraph` is JSON holding the graph
bundle (the graph file and its includes) and every input value the run used, so `nodegraph run image.png`
makes the same image again; for a graph read from the Hub it also holds `source`, the hf:// address pinned
to the commit that ran, which the re-run loads.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from nodegraph.exec.writers import IMAGE_WRITER, OutputInfo

RECIPE_KEY = "nodegraph"
PARAMETERS_KEY = "parameters"
SAMPLER_NAMES = {  # A1111's names, by short name and by diffusers class
    "ddpm": "DDPM", "ddim": "DDIM", "pndm": "PLMS", "unipc": "UniPC", "euler": "Euler", "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M", "lms": "LMS",
}


class RecipeError(ValueError):
    """An image without (readable) nodegraph metadata."""


def _sampler(inputs: dict[str, Any]) -> str:
    name = inputs.get("scheduler") or ""
    if not name and inputs.get("model"):
        from nodegraph.models.errors import CheckpointError
        from nodegraph.models.loading import read_config
        from nodegraph.schedulers import scheduler_class

        try:  # the checkpoint's own scheduler: its scheduler_config.json, no weights read
            source = inputs.get("config") or inputs["model"]
            name = scheduler_class(read_config(source, "scheduler")["_class_name"]).short_name
        except (OSError, ValueError, KeyError, TypeError, CheckpointError):  # unreadable: the field is left out
            return ""
    return SAMPLER_NAMES.get(name, name)


def _model_hash(inputs: dict[str, Any], which: int) -> str | None:
    """A single-file model's 10-hex short hash (which=0, A1111's `Model hash`) or full sha256 (which=1)."""
    from nodegraph.models.single_file.hashing import model_hashes

    hashes = model_hashes(inputs)
    return hashes[which] if hashes else None


def parameters_text(inputs: dict[str, Any], size: tuple[int, int] | None, fast: bool = False,
                    weights: str | None = None) -> str:
    """A1111's text from the run's values keyed by role (`by_role`)."""
    from nodegraph.prompts.parameters import fields as conditioning_fields, prompt_suffix

    lines = [str(inputs.get("prompt", "")) + prompt_suffix(inputs)]
    if inputs.get("negative_prompt"):
        lines.append(f"Negative prompt: {inputs['negative_prompt']}")
    fields = [("Steps", inputs.get("steps")), ("Sampler", _sampler(inputs)),
              ("CFG scale", inputs.get("guidance_scale")), ("Seed", inputs.get("seed")),
              ("Size", f"{size[0]}x{size[1]}" if size else None), ("Model hash", _model_hash(inputs, 0)),
              ("Model", inputs.get("model")),
              ("Strength", inputs.get("strength")), *conditioning_fields(inputs), *_refiner_fields(inputs),
              ("nodegraph fast mode", "on" if fast else None), ("nodegraph weights", weights)]
    lines.append(", ".join(f"{k}: {v}" for k, v in fields if v not in (None, "")))
    return "\n".join(lines)


def _refiner_fields(inputs: dict[str, Any]) -> list[tuple[str, Any]]:
    """A1111's names for an SDXL refiner and the fraction of the steps after which it takes over."""
    if not inputs.get("refiner"):
        return []
    return [("Refiner", inputs["refiner"]), ("Refiner switch at", inputs.get("high_noise_frac"))]


_RECIPE_FIELDS: list[Callable[[Any], dict[str, Any]]] = []


def register_recipe_fields(fields: Callable[[Any], dict[str, Any]]) -> None:
    """Add `fields(graph) -> {key: value}` to every recipe; a `graph` key replaces the bundle. The layer that
    reads graphs from addresses (nodegraph/hub/graphs.py) records with it where the graph came from."""
    if fields not in _RECIPE_FIELDS:
        _RECIPE_FIELDS.append(fields)


_BUNDLES: dict[int, tuple[Any, dict]] = {}  # id(graph) -> (weak reference to it, its bundle)


def graph_bundle(graph) -> dict:
    """The graph file and every file it includes, as text (a graph built in Python: its self-contained YAML).

    Made once per loaded graph: bundling reads and checks every file again (~80-250 ms on builtin:digits' SD
    graph, most of a warm server run's own cost, and paid by every batch item), and a loaded graph is final."""
    import weakref

    from nodegraph.spec.bundle import BUNDLE_FORMAT, bundle_graph

    found = _BUNDLES.get(id(graph))
    if found is not None and found[0]() is graph:
        return found[1]
    graph_file = getattr(graph, "file", None)
    if graph_file and os.path.isfile(graph_file):
        bundle = bundle_graph(graph_file)
    else:
        bundle = {"format": BUNDLE_FORMAT, "main": "graph.yaml", "files": {"graph.yaml": graph.to_yaml()}}
    try:
        _BUNDLES[id(graph)] = (weakref.ref(graph, lambda _, key=id(graph): _BUNDLES.pop(key, None)), bundle)
    except TypeError:  # not weakly referenceable: made again next time
        pass
    return bundle


def recipe(info: OutputInfo) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for fields in _RECIPE_FIELDS:
        extra.update(fields(info.graph))
    bundle = extra.pop("graph", None)  # a graph read from an address: its bundle as that layer made it
    record = {"graph": graph_bundle(info.graph) if bundle is None else bundle, "inputs": info.inputs,
              "output": info.output, "dtype": info.dtype, **({"fast": True} if info.fast else {}),
              **({"weights": info.weights} if info.weights else {})}
    sha256 = _model_hash(by_role(info), 1)
    if sha256:
        record["model_sha256"] = sha256
    return {**record, **extra}


def by_role(info: OutputInfo) -> dict[str, Any]:
    """The run's input values keyed by their roles ("prompt", "seed", "model", ...: core/types.py ROLES), read from
    the ports the graph's inputs feed; nothing without a graph."""
    from nodegraph.spec.port_roles import input_roles

    checked = getattr(info.graph, "checked", None)
    if checked is None:
        return {}
    return {role: info.inputs[name] for role, name in input_roles(checked).items() if name in info.inputs}


def metadata_hook(info: OutputInfo, index: int) -> dict[str, str]:
    text = {PARAMETERS_KEY: parameters_text(by_role(info), info.size, info.fast, info.weights)}
    if info.graph is None:  # a writer called without a graph (library use): there is no recipe to record
        return text
    return {**text, RECIPE_KEY: json.dumps(recipe(info), default=repr)}


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """The `nodegraph` chunk of a PNG written by `nodegraph run`, checked (spec/bundle.py: a regular file within
    the pixel limit, bounded JSON, the recipe's shape, pins and bundle); RecipeError says why it cannot be used."""
    from nodegraph.spec.bundle import read_png_recipe
    from nodegraph.spec.limits import InputRefused

    try:
        data = read_png_recipe(path, RECIPE_KEY)
    except InputRefused as exc:
        raise RecipeError(exc.message if str(path) in exc.message else f"{path}: {exc.message}") from None
    if data is None:
        raise RecipeError(f"{path} has no nodegraph metadata; only PNGs written by `nodegraph run` can be re-run")
    return data


def recorded_fast(target: str) -> bool:
    """Whether `target` is a PNG that `nodegraph run --fast` made (its re-run is then fast too)."""
    return target.lower().endswith(".png") and read_recipe(target).get("fast") is True


def install() -> None:
    if metadata_hook not in IMAGE_WRITER.metadata_hooks:
        IMAGE_WRITER.metadata_hooks.append(metadata_hook)
