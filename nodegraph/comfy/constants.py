"""ComfyUI nodes whose outputs are a function of their literal inputs alone, folded into the inputs they feed
before translation (as the front end folds a PrimitiveNode): ResolutionSelector (comfy_extras/nodes_resolution.py)
gives width and height from an aspect ratio and a megapixel target."""

from __future__ import annotations

import math
from typing import Any

from nodegraph.comfy.errors import ComfyError

ASPECT_RATIOS = {"1:1 (Square)": (1, 1), "3:2 (Photo)": (3, 2), "4:3 (Standard)": (4, 3),
                 "16:9 (Widescreen)": (16, 9), "21:9 (Ultrawide)": (21, 9), "2:3 (Portrait Photo)": (2, 3),
                 "3:4 (Portrait Standard)": (3, 4), "9:16 (Portrait Widescreen)": (9, 16)}


def resolution(aspect_ratio: str, megapixels: float, multiple: int = 8, minimum: int = 256) -> tuple[int, int]:
    """ResolutionSelector's (width, height): the ratio scaled to megapixels·1024² pixels, each side rounded to
    `multiple`; when a side falls under `minimum`, the smallest ratio multiple k·(w, h) whose sides are multiples of
    `multiple` and at least `minimum`."""
    w, h = ASPECT_RATIOS[aspect_ratio]
    scale = math.sqrt(megapixels * 1024 * 1024 / (w * h))
    width, height = round(w * scale / multiple) * multiple, round(h * scale / multiple) * multiple
    if width < minimum or height < minimum:
        step_w, step_h = multiple // math.gcd(w, multiple), multiple // math.gcd(h, multiple)
        k_step = step_w * step_h // math.gcd(step_w, step_h)
        k = math.ceil(math.ceil(max(minimum / w, minimum / h)) / k_step) * k_step
        width, height = w * k, h * k
    return width, height


def fold_constants(api: dict[str, dict[str, Any]], origin: str) -> dict[str, dict[str, Any]]:
    """`api` without its ResolutionSelector nodes, each link to one of their outputs replaced by the value."""
    values: dict[str, tuple[int, int]] = {}
    for node_id, entry in api.items():
        if entry["class_type"] != "ResolutionSelector":
            continue
        inputs = entry["inputs"]
        args = {"aspect_ratio": str, "megapixels": (int, float), "multiple": int, "minimum": int}
        for name, kind in args.items():
            value = inputs.get(name)
            if (value is None and name in ("aspect_ratio", "megapixels")) or (
                    value is not None and (not isinstance(value, kind) or isinstance(value, bool))):
                raise ComfyError(f"{origin}: node {node_id} (ResolutionSelector) input `{name}`: expected a literal "
                                 f"{'name' if kind is str else 'number'}, got {value!r}")
        if inputs["aspect_ratio"] not in ASPECT_RATIOS:
            raise ComfyError(f"{origin}: node {node_id} (ResolutionSelector) input `aspect_ratio`: "
                             f"{inputs['aspect_ratio']!r} is not one of {', '.join(ASPECT_RATIOS)}")
        values[node_id] = resolution(**{k: v for k, v in inputs.items() if k in args})
    if not values:
        return api
    out = {}
    for node_id, entry in api.items():
        if node_id in values:
            continue
        inputs = {name: (values[str(v[0])][v[1]] if isinstance(v, list) and str(v[0]) in values and v[1] in (0, 1)
                         else v) for name, v in entry["inputs"].items()}
        out[node_id] = dict(entry, inputs=inputs)
    return out
