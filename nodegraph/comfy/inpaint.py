"""Inpainting as ComfyUI samples it (comfy/samplers.py `KSamplerX0Inpaint`, comfy/model_base.py `concat_cond`,
comfy/utils.py `reshape_mask`).

A latent from VAEEncodeForInpaint carries a pixel-resolution noise mask (1 = repaint). At sampling:
* the mask is resized to the latent bilinearly (fractional at its edges): m;
* before each model evaluation x ← x·m + (latent + noise·σ)·(1 − m) (the kept part re-noised to σ with the run's
  first noise), and the x₀ estimate ← x₀·m + latent·(1 − m);
* an inpainting UNet (9 input channels) reads, after the scaled x, round(m) (1 channel) and the latent itself
  (encoded from the image with the repainted part grey).
"""

from __future__ import annotations


def latent_mask(noise_mask, latents):
    """(1 or B, 1, H, W) pixel mask → (B, C, h, w) at the latents' size (bilinear), as `reshape_mask`."""
    import torch.nn.functional as F

    mask = F.interpolate(noise_mask.reshape(-1, 1, *noise_mask.shape[-2:]).to(latents), size=latents.shape[-2:],
                         mode="bilinear")
    mask = mask.repeat(1, latents.shape[1], 1, 1)
    return mask.repeat(latents.shape[0] // mask.shape[0], 1, 1, 1) if mask.shape[0] < latents.shape[0] else mask


def inpaint_denoise(denoise, x, sigma: float, inpaint: dict):
    """The x₀ estimate under ComfyUI's inpainting rule; `denoise(x, concat)` is the guided model (concat: the
    inpainting UNet's extra channels, or None for a plain UNet)."""
    mask, latent, noise = inpaint["mask"], inpaint["latent"], inpaint["noise"]
    x = x * mask + (latent + noise * sigma) * (1 - mask)
    concat = None
    if inpaint.get("concat"):
        import torch

        concat = torch.cat([mask[:, :1].round(), latent], dim=1)  # (B, 1 + 4, h, w)
    return denoise(x, concat) * mask + latent * (1 - mask)
