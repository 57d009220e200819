"""ComfyUI's ControlNetApplyAdvanced with an SD3.5 ControlNet as a node: one more apply on a prompt's chain.

The chain only records the apply; ComfyFlowDenoise runs it at each σ with ComfyUI's rules (nodegraph/comfy/
sd3_control.py): the hint VAE-encoded into SD3's latent space, σ thresholds from the percents, residuals × strength.
"""

from __future__ import annotations

from typing import Any, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import VAE, ControlNet, Image


@node("ComfySD3ControlNetApply", version=1)
class ComfySD3ControlNetApply(Node):
    """Append an SD3.5 ControlNet with its image, the `vae` that encodes it, `strength` and [`start_percent`,
    `end_percent`] of the sampling (σ thresholds at the model's `shift`) to `control`. Strength 0 leaves the chain
    as it was, as ComfyUI's node returns its conditioning untouched."""

    class Inputs(Ports):
        controlnet: ControlNet
        image: Image
        vae: VAE
        control: Any = Field(None, description="the prompt's SD3 ControlNet chain so far (empty: none yet)")
        strength: float = Field(1.0, ge=0.0, le=10.0)
        start_percent: float = Field(0.0, ge=0.0, le=1.0)
        end_percent: float = Field(1.0, ge=0.0, le=1.0)
        shift: float = Field(3.0, gt=0.0, le=100.0, description="the model's σ shift (SD3: 3)")

    class Outputs(Ports):
        control: Optional[Any] = None

    def run(self, i, ctx):
        from nodegraph.comfy.sd3_control import SD3Control

        if type(i.controlnet).__name__ != "SD3ControlNet":
            raise ValueError("`controlnet`: this is not an SD3.5 ControlNet (SAI's blur / canny / depth layout); an "
                             "SD3 model takes only those")
        if i.strength == 0:
            return {"control": i.control}
        if i.image.ndim != 4 or i.image.shape[1] != 3:
            raise ValueError(f"`image`: expected RGB images (B, 3, H, W), got shape {tuple(i.image.shape)}")
        return {"control": SD3Control(i.controlnet, i.image, i.vae, i.strength, i.start_percent, i.end_percent,
                                      i.shift, i.control)}
