"""A ComfyUI class is declared in one place: on the translator method that turns it into nodegraph nodes.

    @comfy_class("CLIPVisionLoader", widgets=("clip_name",), literals={"clip_name": str}, outputs=("CLIP_VISION",),
                 short="clip_vision", models={"clip_name": "clip_vision"})
    def _CLIPVisionLoader(self, node_id, nid): ...

The decorator records what coverage.py's tables hold for the other classes: the widgets in a UI workflow's
order, the literal inputs' types, the output types, the links the class needs (`COVERED`), the id prefix of the
nodes it becomes (`SHORT_NAMES`), and, per class, the ComfyUI model folder of each input that names a file
(`model_folder`: CLIPVisionLoader's and CLIPLoader's `clip_name` live in different folders). The tables fill
when the translator modules are imported, which `nodegraph.comfy`'s own import does.
"""

from __future__ import annotations

from typing import Callable, Optional

from nodegraph.comfy.coverage import COVERED, MODEL_KINDS, SHORT_NAMES, Covered

CLASS_MODELS: dict[str, dict[str, str]] = {}  # class -> {input: ComfyUI model folder}


def comfy_class(name: str, *, widgets: tuple[str, ...] = (), literals: Optional[dict[str, type]] = None,
                outputs: tuple[str, ...] = (), links: tuple[str, ...] = (), short: str,
                models: Optional[dict[str, str]] = None) -> Callable:
    """Declare ComfyUI class `name` on its translator method `_<name>(self, node_id, nid)` (see the module)."""
    def declare(method: Callable) -> Callable:
        if method.__name__ != f"_{name}":
            raise TypeError(f"the translator of ComfyUI class {name} must be named _{name}, not {method.__name__}")
        if name in COVERED:
            raise ValueError(f"ComfyUI class {name} is declared twice")
        unknown = sorted(set(models or {}) - set(literals or {}))
        if unknown:
            raise ValueError(f"ComfyUI class {name}: model inputs {unknown} must be literal inputs too")
        COVERED[name] = Covered(tuple(widgets), dict(literals or {}), tuple(outputs), tuple(links))
        SHORT_NAMES[name] = short
        if models:
            CLASS_MODELS[name] = dict(models)
        return method

    return declare


def model_folder(class_type: str, name: str) -> Optional[str]:
    """The ComfyUI model folder input `name` of a `class_type` node names a file in (None: not a file input)."""
    return CLASS_MODELS.get(class_type, {}).get(name) or MODEL_KINDS.get(name)


def file_inputs(class_type: str) -> dict[str, str]:
    """{input: model folder} of every input of `class_type` that may name a file."""
    return {**MODEL_KINDS, **CLASS_MODELS.get(class_type, {})}
