"""What a front-end asks to run, opened into a validated graph: a graph file, an `hf://` address, a PNG written
by nodegraph (its recipe: bundled graph, input values, fast mode), a bundle (a graph and its includes as
text), a ComfyUI workflow (.json or a ComfyUI PNG), or a `Graph` already built.

A PNG is read once here; `Target` keeps what it recorded (`recorded`, `recorded_fast`, the recipe itself).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Optional, Union


@dataclass
class Target:
    """An opened target. `kind`: "graph" (file or hf://), "png" (a nodegraph PNG), "bundle", "comfy" (ComfyUI
    workflow), "object" (a Graph given as is). `recorded`: the input values a PNG recorded; `comfy`: the
    ComfyUI translation and workflow (its SaveImage outputs are written as ComfyUI names them)."""

    graph: Any
    kind: str = "graph"
    recorded: Optional[dict[str, Any]] = None
    recorded_fast: bool = False
    recorded_weights: Optional[str] = None  # fp8 storage of the denoiser the PNG was made with (core/mode.py)
    recipe: Optional[dict[str, Any]] = None
    comfy: Any = None

    def bind(self, sets: list[str] = (), *, require_all: bool = True,
             values: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """Input values: `NAME=VALUE` strings (typed by the graph's declarations) over `values` over those the
        PNG recorded; all checked, ValidationFailed listing every problem."""
        from nodegraph.spec.values import bind_sets

        if self.kind == "comfy":  # `NODE_ID.INPUT=VALUE` items were applied to the workflow before translating
            from nodegraph.comfy.command import split_sets

            sets = split_sets(list(sets))[1]
        base = {**(self.recorded or {}), **(values or {})}
        return bind_sets(self.graph, list(sets), require_all=require_all, base=base)


def is_comfy_target(target: Any) -> bool:
    from nodegraph.comfy.reader import is_comfy_file

    return isinstance(target, (str, pathlib.Path)) and is_comfy_file(str(target))


def open_target(target: Union[str, pathlib.Path, dict, Any], scratch: Union[str, pathlib.Path], *,
                allow_includes_outside: bool = False, comfy_options: Any = None) -> Target:
    """Open `target` into a `Target`; `scratch` is a private folder that must outlive the run (bundles and
    translated workflows are written there). `comfy_options`: an object with the ComfyUI options (`models`,
    `extra_model_paths`, `input`, `set`), as `nodegraph run` parses them."""
    from nodegraph.spec.graph import Graph

    scratch = pathlib.Path(scratch)
    if isinstance(target, Graph):
        return Target(target, kind="object")
    if isinstance(target, dict):
        return Target(_load_bundle(target, scratch), kind="bundle")
    text = str(target)
    if is_comfy_target(text):
        from nodegraph.comfy.command import load_translated

        graph, translation, workflow, _ = load_translated(text, comfy_options, scratch)
        return Target(graph, kind="comfy", comfy=(translation, workflow))
    if text.lower().endswith(".png"):
        return open_png(text, scratch, allow_hub=allow_includes_outside)
    from nodegraph.shipped_graphs import shipped_graph
    from nodegraph.spec.loader import load_graph

    shipped = shipped_graph(text)  # `graphs/<name>.yaml` as the README writes it, from any folder once installed
    return Target(load_graph(shipped or text, allow_includes_outside=allow_includes_outside))


def open_png(path: str, scratch: pathlib.Path, allow_hub: bool = False) -> Target:
    """A PNG written by nodegraph: its graph (the Hub address pinned to the commit that ran, else the bundle),
    the input values and fast mode it recorded. A recipe reads Hub graphs only at the commits it recorded
    unless `allow_hub` (spec/locations.py)."""
    from nodegraph.exec.png_metadata import read_recipe
    from nodegraph.spec.loader import load_graph

    recipe = read_recipe(path)
    policy = "any" if allow_hub else "pinned"
    pins = recipe.get("hub_pins") if isinstance(recipe.get("hub_pins"), dict) else None
    if str(recipe.get("source", "")).startswith("hf://"):  # a Hub graph, pinned to the commit that ran
        graph = load_graph(recipe["source"], hub_pins=pins, hub_references=policy)
    else:
        graph = _load_bundle(recipe["graph"], scratch, hub_pins=pins, hub_references=policy)
    return Target(graph, kind="png", recorded=dict(recipe["inputs"]), recorded_fast=recipe.get("fast") is True,
                  recorded_weights=recipe.get("weights"), recipe=recipe)


def _load_bundle(bundle: dict, folder: pathlib.Path, hub_pins: Optional[dict] = None, hub_references: str = "any"):
    from nodegraph.spec.bundle import unbundle
    from nodegraph.spec.loader import load_graph

    return load_graph(unbundle(bundle, folder), include_root=folder, hub_pins=hub_pins,
                      hub_references=hub_references)
