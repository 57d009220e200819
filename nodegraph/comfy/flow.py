"""ComfyUI's sampling of flow-matching models (Z-Image today): its discrete flow σ table, the noise it starts
from and the x₀ estimate its samplers step on (torch imported lazily).

Facts from ComfyUI (comfy/model_sampling.py `ModelSamplingDiscreteFlow` and `CONST`,
comfy_extras/nodes_model_advanced.py `ModelSamplingAuraFlow`, comfy/latent_formats.py `Flux`,
comfy/ldm/lumina/model.py `NextDiT`):

* σ(t) = shift·u / (1 + (shift − 1)·u) with u = t / multiplier; the table holds σ at t = (k / 1000)·multiplier for
  k = 1 … 1000, in float32; timestep(σ) = σ·multiplier. ModelSamplingAuraFlow sets `shift` with multiplier 1.0;
  a Z-Image file's own sampling is shift 3.0, multiplier 1.0.
* CONST: the model's input is x itself; x₀ = x − σ·out; the starting point is σ·noise + (1 − σ)·latent, where the
  latent was first moved into the model's space ((z − 0.1159)·0.3611 for the Flux/Z-Image latent format, which
  makes EmptySD3LatentImage's zeros a constant −0.04185…).
* Z-Image's NextDiT is called with timestep σ·multiplier, computes t = 1 − timestep, and returns its output
  negated: the velocity v = noise − x₀. nodegraph's Z-Image transformer (diffusers' ZImageTransformer2DModel)
  takes t and returns the un-negated output, so out = −model(x, 1 − σ·multiplier).
* CFG combines x₀ estimates, x₀_neg + cfg·(x₀_pos − x₀_neg), and skips the negative pass when cfg is 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FLUX_LATENT = (0.3611, 0.1159)  # (scale_factor, shift_factor) of ComfyUI's Flux latent format (Z-Image's too)
Z_IMAGE_SHIFT = 3.0  # a Z-Image file's own ModelSamplingDiscreteFlow (comfy/supported_models.py ZImage)
# Deterministic samplers whose formula ComfyUI applies to flow models as it does to ε models; the ancestral and
# SDE ones switch to their rectified-flow variants on a flow model (not covered yet).
FLOW_SAMPLERS = ("euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ddim", "res_multistep")


@dataclass(frozen=True)
class FlowSampling:
    """ComfyUI's ModelSamplingDiscreteFlow: the shifted σ of a flow-matching model."""
    shift: float = Z_IMAGE_SHIFT
    multiplier: float = 1.0

    def sigma(self, timestep):
        """σ at (a tensor of) timesteps, float32 (`time_snr_shift(shift, t / multiplier)`)."""
        import torch

        u = torch.as_tensor(timestep, dtype=torch.float32) / self.multiplier
        return u if self.shift == 1.0 else self.shift * u / (1 + (self.shift - 1) * u)

    def timestep(self, sigma):
        import torch

        return torch.as_tensor(sigma, dtype=torch.float32) * self.multiplier

    def table(self, timesteps: int = 1000):
        """σ at t = (1 … timesteps) / timesteps · multiplier, shape (timesteps,), lowest first."""
        import torch

        return self.sigma((torch.arange(1, timesteps + 1, 1) / timesteps) * self.multiplier)


def start_latents(latents, noise, sigma: float):
    """x at the first σ: σ·noise + (1 − σ)·latent (CONST.noise_scaling), the latent in the model's space."""
    return sigma * noise + (1.0 - sigma) * latents


def flow_denoise(transformer, x, sigma: float, positive, negative=None, cfg: float = 1.0, multiplier: float = 1.0):
    """The guided x₀ estimate of a Z-Image transformer at σ: x (B, C, h, w) float32 → x₀ (B, C, h, w) float32.

    `positive` / `negative`: (B', L, D) caption features (a batch of one is used for every image); the two sides
    go through the transformer in one call, each image with its own caption list entry (different lengths are
    fine: the transformer takes lists)."""
    import torch

    b = x.shape[0]
    guided = negative is not None and not math.isclose(cfg, 1.0)
    sides = [positive, negative] if guided else [positive]
    captions = [side[j % side.shape[0]].to(transformer.dtype) for side in sides for j in range(b)]
    xs = x.to(transformer.dtype).repeat(len(sides), 1, 1, 1)  # (S·B, C, h, w)
    t = (1.0 - torch.full((len(sides) * b,), sigma, dtype=torch.float32) * multiplier).to(x.device)
    with torch.no_grad():
        out = transformer(list(xs.unsqueeze(2).unbind(0)), t, captions)  # [(C, 1, h, w)]
    velocity = -torch.stack([o.float() for o in out]).squeeze(2)  # NextDiT's output: v = noise − x₀
    denoised = x.float().repeat(len(sides), 1, 1, 1) - velocity * sigma  # CONST.calculate_denoised
    if not guided:
        return denoised
    x0_pos, x0_neg = denoised[:b], denoised[b:]
    return x0_neg + (x0_pos - x0_neg) * cfg
