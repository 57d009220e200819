"""The UNet forward pass as a node."""

from __future__ import annotations

from typing import Optional

from nodegraph.core import Node, Ports, node
from nodegraph.core.types import Embeddings, Latent, Tensor, UNet


@node("UNetStep", version=1)
class UNetStep(Node):
    """One UNet forward: predict the noise (or v, or x0) in `latents` at timestep `t`.

    When `embeddings` hold twice the latents' batch (a CFG batch from CFGEmbeddings), the latents are doubled
    and both halves go through the UNet in one call. Without `embeddings` the UNet is unconditional (DDPM).
    """

    class Inputs(Ports):
        unet: UNet
        latents: Latent
        t: Tensor
        embeddings: Optional[Embeddings] = None
        timestep_cond: Optional[Tensor] = None  # an LCM-distilled UNet's guidance embedding (LCMGuidance)

    class Outputs(Ports):
        noise_pred: Tensor

    def run(self, i, ctx):
        import torch

        x = i.latents  # (B, C, h, w)
        with torch.no_grad():
            if i.embeddings is None:
                return {"noise_pred": i.unet(x, i.t)}
            if i.embeddings.shape[0] == 2 * x.shape[0]:
                x = torch.cat([x, x])  # (2B, C, h, w): unconditional and conditional in one call
            elif i.embeddings.shape[0] != x.shape[0]:
                raise ValueError(f"`embeddings` batch {i.embeddings.shape[0]} does not fit `latents` batch "
                                 f"{x.shape[0]}; it must be equal (no guidance) or twice (guidance)")
            extra = {} if i.timestep_cond is None else {"timestep_cond": i.timestep_cond}
            return {"noise_pred": i.unet(x, i.t, encoder_hidden_states=i.embeddings, **extra)}
