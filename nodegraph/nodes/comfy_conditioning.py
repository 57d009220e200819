"""ComfyUI's conditioning nodes: area composition (ConditioningSetArea, ConditioningCombine) and
ConditioningZeroOut, usable in hand-written graphs (docs/comfyui.md, "Area conditioning in YAML").

A conditioning list is a list of entries (nodegraph/comfy/areas.py `entry`): a prompt's embeddings, its SDXL
pooled embedding and size ids, an area and a strength. ComfyDenoise samples a list given as `positive_list` /
`negative_list` by ComfyUI's area rule (each entry's x₀ on its area, feathered, weighted by strength, averaged).
"""

from __future__ import annotations

from typing import Any, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Embeddings


@node("ComfyConditioning", version=1)
class ComfyConditioning(Node):
    """A prompt's encoding as a one-entry conditioning list (whole latent, strength 1)."""

    class Inputs(Ports):
        embeddings: Embeddings
        pooled: Optional[Embeddings] = Field(None, description="SDXL: the prompt's pooled embedding")
        size: Any = Field(None, description="SDXL: the prompt's own size ids (ComfyTextEncode's `size`)")

    class Outputs(Ports):
        conditioning: Any

    def run(self, i, ctx):
        from nodegraph.comfy.areas import entry

        return {"conditioning": [entry(i.embeddings, i.pooled, i.size)]}


@node("ComfyConditioningSetArea", version=1)
class ComfyConditioningSetArea(Node):
    """ComfyUI's ConditioningSetArea: every entry of the list acts on the rectangle (x, y, width, height), in
    pixels (rounded down to latent cells: ÷ 8), with `strength` as its weight where areas overlap."""

    class Inputs(Ports):
        conditioning: Any
        width: int = Field(64, ge=8, le=16384)
        height: int = Field(64, ge=8, le=16384)
        x: int = Field(0, ge=0, le=16384)
        y: int = Field(0, ge=0, le=16384)
        strength: float = Field(1.0, ge=0.0, le=10.0)

    class Outputs(Ports):
        conditioning: Any

    def run(self, i, ctx):
        area = (i.height // 8, i.width // 8, i.y // 8, i.x // 8)
        return {"conditioning": [dict(e, area=area, strength=i.strength) for e in _entries(i.conditioning)]}


@node("ComfyConditioningCombine", version=1)
class ComfyConditioningCombine(Node):
    """ComfyUI's ConditioningCombine: the entries of both lists, sampled together."""

    class Inputs(Ports):
        conditioning_1: Any
        conditioning_2: Any

    class Outputs(Ports):
        conditioning: Any

    def run(self, i, ctx):
        return {"conditioning": _entries(i.conditioning_1) + _entries(i.conditioning_2)}


@node("ComfyConditioningZeroOut", version=1)
class ComfyConditioningZeroOut(Node):
    """ComfyUI's ConditioningZeroOut: the prompt's embeddings (and pooled embedding) replaced by zeros."""

    class Inputs(Ports):
        embeddings: Embeddings
        pooled: Optional[Embeddings] = None

    class Outputs(Ports):
        embeddings: Embeddings
        pooled: Optional[Embeddings] = None

    def run(self, i, ctx):
        import torch

        return {"embeddings": torch.zeros_like(i.embeddings),
                "pooled": None if i.pooled is None else torch.zeros_like(i.pooled)}


def _entries(value) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(e, dict) and "embeddings" in e for e in value):
        raise ValueError("`conditioning`: expected a conditioning list (from ComfyConditioning, "
                         "ComfyConditioningSetArea or ComfyConditioningCombine)")
    return list(value)
