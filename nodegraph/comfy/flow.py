"""ComfyUI's sampling of flow-matching models (Z-Image, Flux.1): its flow σ tables, the noise it starts from and
the x₀ estimate its samplers step on (torch imported lazily).

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
* Flux.1 dev (comfy/supported_models.py `Flux`, ModelType.FLUX): `ModelSamplingFlux`, σ(t) = e^μ / (e^μ + 1/t − 1)
  with μ = shift 1.15 (no resolution dependence), table at t = k/10000, timestep = σ; schnell (ModelType.FLOW):
  ModelSamplingDiscreteFlow with shift 1, multiplier 1. The transformer takes timestep σ, the conditioning's
  `guidance` (3.5 unless FluxGuidance sets it: comfy/model_base.py `Flux.extra_conds`) and predicts v; the latents
  are packed 2×2 and the ids are diffusers' (text 0; image (0, row, column)).
* SD3 / SD3.5 (comfy/supported_models.py `SD3`, ModelType.FLOW): ModelSamplingDiscreteFlow with shift 3 and the
  default multiplier 1000, so the MMDiT is called at timestep σ·1000 with the context and the pooled vector, and
  predicts v; its latent format (comfy/latent_formats.py `SD3`) is (z − 0.0609)·1.5305.
* CFG combines x₀ estimates, x₀_neg + cfg·(x₀_pos − x₀_neg), and skips the negative pass when cfg is 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FLUX_LATENT = (0.3611, 0.1159)  # (scale_factor, shift_factor) of ComfyUI's Flux latent format (Z-Image's too)
Z_IMAGE_SHIFT = 3.0  # a Z-Image file's own ModelSamplingDiscreteFlow (comfy/supported_models.py ZImage)
FLUX_SHIFT = 1.15  # Flux.1 dev's ModelSamplingFlux μ; schnell: discrete flow, shift 1
FLUX_GUIDANCE = 3.5  # a dev conditioning's guidance when no FluxGuidance sets it
SD3_LATENT = (1.5305, 0.0609)  # (scale_factor, shift_factor) of ComfyUI's SD3 latent format
SD3_SHIFT, SD3_MULTIPLIER = 3.0, 1000.0  # an SD3 / SD3.5 file's own ModelSamplingDiscreteFlow
# Deterministic samplers whose formula ComfyUI applies to flow models as it does to ε models; the ancestral and
# SDE ones switch to their rectified-flow variants on a flow model (not covered yet).
FLOW_SAMPLERS = ("euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ddim", "res_multistep")


@dataclass(frozen=True)
class FlowSampling:
    """ComfyUI's ModelSamplingDiscreteFlow (`kind` "discrete") or ModelSamplingFlux ("flux", `shift` = μ)."""
    shift: float = Z_IMAGE_SHIFT
    multiplier: float = 1.0
    kind: str = "discrete"

    def sigma(self, timestep):
        """σ at (a tensor of) timesteps, float32: `time_snr_shift(shift, t / multiplier)` or `flux_time_shift`."""
        import torch

        u = torch.as_tensor(timestep, dtype=torch.float32)
        if self.kind == "flux":
            return math.exp(self.shift) / (math.exp(self.shift) + (1 / u - 1))
        u = u / self.multiplier
        return u if self.shift == 1.0 else self.shift * u / (1 + (self.shift - 1) * u)

    def timestep(self, sigma):
        import torch

        return torch.as_tensor(sigma, dtype=torch.float32) * (1.0 if self.kind == "flux" else self.multiplier)

    def table(self):
        """σ at t = k / n, k = 1 … n (n = 10000 for "flux", 1000 scaled by the multiplier otherwise), lowest first."""
        import torch

        if self.kind == "flux":
            return self.sigma(torch.arange(1, 10001, 1) / 10000)
        return self.sigma((torch.arange(1, 1001, 1) / 1000) * self.multiplier)


def start_latents(latents, noise, sigma: float):
    """x at the first σ: σ·noise + (1 − σ)·latent (CONST.noise_scaling), the latent in the model's space."""
    return sigma * noise + (1.0 - sigma) * latents


def flow_denoise(transformer, x, sigma: float, positive, negative=None, cfg: float = 1.0, multiplier: float = 1.0,
                 pooled=(None, None), guidance=(FLUX_GUIDANCE, FLUX_GUIDANCE), control=(None, None)):
    """The guided x₀ estimate of a flow transformer at σ: x (B, C, h, w) float32 → x₀ (B, C, h, w) float32.

    `positive` / `negative`: (B', L, D) caption features (a batch of one is used for every image); `pooled` and
    `guidance`: Flux's (SD3's) pooled CLIP embeddings and Flux's guidance values, `control`: SD3.5 ControlNet
    chains (nodegraph/comfy/sd3_control.py), each (positive's, negative's)."""
    import torch

    guided = negative is not None and not math.isclose(cfg, 1.0)
    kind = type(transformer).__name__
    sides = [(positive, pooled[0], guidance[0], control[0])] + \
        ([(negative, pooled[1], guidance[1], control[1])] if guided else [])
    with torch.no_grad():
        if kind == "FluxTransformer2DModel":
            velocity = torch.cat([_flux_velocity(transformer, x, sigma, *side[:3]) for side in sides])
        elif kind == "SD3Transformer2DModel":
            velocity = torch.cat([_sd3_velocity(transformer, x, sigma, side[0], side[1], multiplier, side[3])
                                  for side in sides])
        else:
            velocity = _z_image_velocity(transformer, x, sigma, [side[0] for side in sides], multiplier)
    denoised = x.float().repeat(len(sides), 1, 1, 1) - velocity * sigma  # CONST.calculate_denoised
    if not guided:
        return denoised
    b = x.shape[0]
    x0_pos, x0_neg = denoised[:b], denoised[b:]
    return x0_neg + (x0_pos - x0_neg) * cfg


def _z_image_velocity(transformer, x, sigma: float, sides: list, multiplier: float):
    """NextDiT's output for every side in one call (the transformer takes lists): (S·B, C, h, w) float32."""
    import torch

    b = x.shape[0]
    captions = [side[j % side.shape[0]].to(transformer.dtype) for side in sides for j in range(b)]
    xs = x.to(transformer.dtype).repeat(len(sides), 1, 1, 1)  # (S·B, C, h, w)
    t = (1.0 - torch.full((len(sides) * b,), sigma, dtype=torch.float32) * multiplier).to(x.device)
    out = transformer(list(xs.unsqueeze(2).unbind(0)), t, captions)  # [(C, 1, h, w)]
    return -torch.stack([o.float() for o in out]).squeeze(2)  # NextDiT's negated output: v = noise − x₀


def _flux_velocity(transformer, x, sigma: float, context, pooled, guidance: float):
    """Flux's v for one side: x packed 2×2 (B, h/2·w/2, 4C), ids (0, row, column), timestep σ → (B, C, h, w)."""
    import torch

    b, c, h, w = x.shape
    packed = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)
    img_ids = torch.zeros(h // 2, w // 2, 3, device=x.device)
    img_ids[..., 1] += torch.arange(h // 2, device=x.device)[:, None]
    img_ids[..., 2] += torch.arange(w // 2, device=x.device)[None, :]
    repeat = (lambda t: t[torch.arange(b) % t.shape[0]].to(transformer.dtype))  # a batch of one serves every image
    txt_ids = torch.zeros(context.shape[1], 3, device=x.device)
    embed = None
    if transformer.config.guidance_embeds:
        embed = torch.full((b,), guidance, dtype=torch.float32, device=x.device)
    out = transformer(packed.to(transformer.dtype), repeat(context), repeat(pooled),
                      torch.full((b,), sigma, dtype=torch.float32, device=x.device), img_ids.reshape(-1, 3),
                      txt_ids, embed)  # (B, S_img, 4C)
    out = out.float().view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5)  # (B, C, h/2, 2, w/2, 2)
    return out.reshape(b, c, h, w)


def _sd3_velocity(transformer, x, sigma: float, context, pooled, multiplier: float, control=None):
    """The MMDiT's v for one side at timestep σ·multiplier (comfy/model_base.py `SD3`: context and pooled `y`):
    x (B, C, h, w) → (B, C, h, w) float32; a context / pooled batch of one serves every image. A context without
    T5 (the CLIP features alone, 2048 wide) is zero-padded to the transformer's width, as SD3ClipModel pads it.
    `control`: the side's SD3.5 ControlNet chain, its residuals added after the blocks."""
    import torch

    if pooled is None:
        raise ValueError("an SD3 prompt needs its pooled CLIP embedding; encode it with the checkpoint's CLIP")
    b = x.shape[0]
    pick = (lambda t: t[torch.arange(b) % t.shape[0]].to(transformer.dtype))
    timestep = torch.full((b,), sigma, dtype=torch.float32, device=x.device) * multiplier  # (B,)
    width = transformer.config.joint_attention_dim
    if context.shape[-1] > width:
        raise ValueError(f"the prompt's features are {context.shape[-1]} wide, but this SD3 transformer takes {width} "
                         f"(joint_attention_dim): its text encoders do not belong to it")
    context = torch.nn.functional.pad(context, (0, width - context.shape[-1]))  # (B', L, width)
    from nodegraph.comfy.sd3_control import sd3_residuals

    residuals = sd3_residuals(control, transformer, x, sigma, pick(pooled), timestep)
    out = transformer(x.to(transformer.dtype), pick(context), pick(pooled), timestep, control=residuals)
    return out.float()
