"""T2I-Adapter loading as a node: ComfyUI's ControlNetLoader loads T2I-Adapter files too (comfy/controlnet.py
`load_t2i_adapter`); the ComfyUI sampler then adds the adapter's features inside the UNet's down blocks
(nodegraph/comfy/control.py), where a ControlNet's residuals go to the skips."""

from __future__ import annotations

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import ControlNet, ModelSource


@node("LoadT2IAdapter", version=1)
class LoadT2IAdapter(Node):
    """Load a full SD1.x T2I-Adapter (Mou et al. 2023) from one file: TencentARC's layout (`conv_in`,
    `body.N.block1/2`, as ComfyUI reads it) or diffusers' (`adapter.body.N.resnets.M.*`)."""

    class Inputs(Ports):
        model: ModelSource = Field(min_length=1, description="the adapter file (.safetensors, or .pth with allow_pickle)")
        allow_pickle: bool = Field(False, description="allow .pth/.ckpt (pickle) files; read with weights_only=True")

    class Outputs(Ports):
        controlnet: ControlNet

    def run(self, i, ctx):
        from nodegraph.models.t2i_adapter import load_t2i_adapter
        from nodegraph.nodes.loaders import get_or_load_model

        key = ("t2i_adapter", i.model, str(ctx.dtype), str(ctx.device))
        return {"controlnet": get_or_load_model(ctx, key, lambda: load_t2i_adapter(
            i.model, dtype=ctx.dtype, device=ctx.device, allow_pickle=i.allow_pickle))}
