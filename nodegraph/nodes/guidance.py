"""Classifier-free guidance (Ho & Salimans, 2022): push the prediction away from the unconditional one."""

from __future__ import annotations

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Tensor


@node("CFGCombine", version=1)
class CFGCombine(Node):
    """Combine a CFG batch [unconditional, conditional] into `u + g·(c − u)`.

    With `guidance_scale` ≤ 1 the batch holds only the conditional prediction (see CFGEmbeddings) and is
    passed through.
    """

    class Inputs(Ports):
        noise_pred: Tensor
        guidance_scale: float = Field(7.5, ge=0.0, le=100.0)

    class Outputs(Ports):
        noise_pred: Tensor

    def run(self, i, ctx):
        if i.guidance_scale <= 1.0:
            return {"noise_pred": i.noise_pred}
        uncond, cond = i.noise_pred.chunk(2)
        return {"noise_pred": uncond + i.guidance_scale * (cond - uncond)}
