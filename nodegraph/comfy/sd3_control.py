"""ComfyUI's ControlNetApplyAdvanced with an SD3.5 ControlNet at sampling time (SAI's blur / canny / depth files):
its hint latents, the σ it acts on, its per-block residuals for the MMDiT.

Facts from ComfyUI (comfy/controlnet.py `ControlNet.get_control` with `latent_format` SD3 and a VAE, `ControlNetSD35`,
`control_merge`; comfy/model_sampling.py `ModelSamplingDiscreteFlow.percent_to_sigma`; comfy/cldm/dit_embedder.py):

* The hint: the IMAGE center-cropped and resized ("nearest-exact") to the latent × the VAE's downscale (8),
  prepared by control type (blur 0: as is; canny 1: a·255·0.5 + 0.5; depth 2: 1 − a), VAE-encoded as
  VAEEncode does (posterior mode of 2a − 1) and moved into the SD3 latent space, (z − 0.0609)·1.5305; made once per
  latent size.
* σ range: percent p → σ = shift·u / (1 + (shift − 1)·u) at u = 1 − p (p ≤ 0: 1; p ≥ 1: 0); the ControlNet acts
  when σ_end ≤ σ ≤ σ_start.
* Its input is the noisy x itself and timestep σ·1000 with the side's pooled prompt; residuals × strength, chained
  applies summed per block, each of its n residuals serving ceil(L / n) of the MMDiT's L blocks (`per_block`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodegraph.comfy.flow import SD3_LATENT, SD3_SHIFT
from nodegraph.comfy.resize import common_upscale


@dataclass(frozen=True)
class SD3Control:
    """One SD3.5 ControlNetApplyAdvanced of a chain (the earlier ones in `previous`)."""

    controlnet: Any
    image: Any  # (B, 3, H, W) in [0, 1]
    vae: Any
    strength: float
    start_percent: float
    end_percent: float
    shift: float = SD3_SHIFT
    previous: "SD3Control | None" = None
    hints: dict = field(default_factory=dict, compare=False, repr=False)

    def chain(self) -> list["SD3Control"]:
        return ([] if self.previous is None else self.previous.chain()) + [self]

    def hint_for(self, x):
        """The hint latents (B, 16, h, w) for latents like x (N, 16, h, w), encoded at the first step needing them."""
        key = (*x.shape[-2:], x.device, x.dtype)
        if key not in self.hints:
            self.hints[key] = hint_latents(self.vae, self.image, self.controlnet.config.control_type,
                                           *x.shape[-2:]).to(device=x.device, dtype=x.dtype)
        return self.hints[key]


def hint_latents(vae, image, control_type: int, latent_height: int, latent_width: int):
    """(B, 3, H, W) in [0, 1] → the control image's SD3-space latents (B, C, h, w), as ComfyUI prepares them."""
    import torch

    ratio = 2 ** (len(vae.config.block_out_channels) - 1)  # the VAE's downscale (8; ComfyUI's compression)
    height, width = ratio * latent_height, ratio * latent_width
    pixels = common_upscale(image.float(), width, height, "nearest-exact", "center")  # (B, 3, 8h, 8w)
    if control_type == 1:  # canny (sic: ComfyUI's preprocess maps [0, 1] to [0.5, 128])
        pixels = pixels * 255 * 0.5 + 0.5
    elif control_type == 2:  # depth
        pixels = 1.0 - pixels
    with torch.no_grad():
        z = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype) * 2 - 1).mode().float()
    scale, shift = SD3_LATENT
    return (z - shift) * scale


def percent_to_sigma(percent: float, shift: float) -> float:
    """ComfyUI's ModelSamplingDiscreteFlow.percent_to_sigma."""
    if percent <= 0.0:
        return 1.0
    if percent >= 1.0:
        return 0.0
    u = 1.0 - percent
    return shift * u / (1 + (shift - 1) * u)


def acts_at(entry: SD3Control, sigma: float) -> bool:
    import torch

    s = torch.tensor(sigma, dtype=torch.float32)
    return not (bool(s > percent_to_sigma(entry.start_percent, entry.shift))
                or bool(s < percent_to_sigma(entry.end_percent, entry.shift)))


def sd3_residuals(control: SD3Control | None, transformer, x, sigma: float, pooled, timestep):
    """Per-block residuals (one (B, h·w, D) or None per MMDiT block) of the chain on x (B, C, h, w) at σ, or None
    when no apply acts at σ. `pooled` (B, P) is the side's pooled prompt, `timestep` (B,) = σ·1000."""
    from nodegraph.models.sd3_controlnet import per_block

    if control is None:
        return None
    blocks = len(transformer.transformer_blocks)
    out = None
    for entry in control.chain():
        if not acts_at(entry, sigma):
            continue
        cn = entry.controlnet
        tokens = cn.embed(transformer.pos_embed.proj, x.to(transformer.dtype))  # (B, h·w, D)
        hint = entry.hint_for(x).to(transformer.dtype)
        hint = hint.expand(x.shape[0], -1, -1, -1) if hint.shape[0] == 1 else hint[:x.shape[0]]
        got = per_block(cn(tokens, hint, pooled, timestep, entry.strength), blocks)
        got = got + [None] * (blocks - len(got))
        out = got if out is None else [a if b is None else (b if a is None else a + b) for a, b in zip(out, got)]
    return out
