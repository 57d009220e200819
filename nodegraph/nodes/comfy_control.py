"""ComfyUI's ControlNetApplyAdvanced as a node: one more ControlNet on a prompt's control chain.

The chain only records the apply; ComfyDenoise runs it at each σ with ComfyUI's rules (nodegraph/comfy/
control.py): σ thresholds from the percents, the hint resized to 8× the latent, residuals × strength, summed.
"""

from __future__ import annotations

from typing import Any, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import ControlNet, Image


@node("ComfyControlNetApply", version=1)
class ComfyControlNetApply(Node):
    """Append a ControlNet with its image, `strength` and [`start_percent`, `end_percent`] of the sampling to
    `control` (the prompt's chain so far; empty starts one). Strength 0 leaves the chain as it was, as
    ComfyUI's node returns its conditioning untouched."""

    class Inputs(Ports):
        controlnet: ControlNet
        image: Image
        control: Any = Field(None, description="the prompt's ControlNet chain so far (empty: none yet)")
        strength: float = Field(1.0, ge=0.0, le=10.0)
        start_percent: float = Field(0.0, ge=0.0, le=1.0)
        end_percent: float = Field(1.0, ge=0.0, le=1.0)

    class Outputs(Ports):
        control: Optional[Any] = None

    def run(self, i, ctx):
        from nodegraph.comfy.control import ComfyControl

        if i.strength == 0:
            return {"control": i.control}
        if i.image.ndim != 4 or i.image.shape[1] != 3:
            raise ValueError(f"`image`: expected RGB images (B, 3, H, W), got shape {tuple(i.image.shape)}")
        return {"control": ComfyControl(i.controlnet, i.image, i.strength, i.start_percent, i.end_percent,
                                        i.control)}
