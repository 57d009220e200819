"""The guided x₀ estimate of an ε-prediction UNet at one σ, as ComfyUI computes it (comfy/samplers.py).

x is in σ-space (x = x₀ + σ·ε); the UNet sees x / √(σ² + 1) and the nearest integer timestep of SD's table;
CFG combines x₀ estimates, x₀_neg + cfg·(x₀_pos − x₀_neg); the negative pass is skipped when cfg is 1.
"""

from __future__ import annotations


def guided_denoise(unet, x, sigma: float, positive, negative=None, cfg: float = 1.0, positive_pooled=None,
                   negative_pooled=None):
    """x (B, 4, h, w) at σ → the guided x₀ estimate (B, 4, h, w).

    SDXL UNets also get each prompt's pooled embedding and the size conditioning ComfyUI derives from the
    latent (comfy/samplers.py `encode_model_conds`): time ids (8h, 8w, 0, 0, 8h, 8w).
    """
    import math

    import torch

    from nodegraph.comfy.schedules import sigma_table, timestep_of

    t = torch.tensor(float(timestep_of(sigma_table(), sigma)), device=x.device)
    x_in = x / math.sqrt(sigma ** 2 + 1)
    guided = negative is not None and not math.isclose(cfg, 1.0, rel_tol=1e-5)
    conds = [negative, positive] if guided else [positive]
    conds = _same_length([c.to(device=x.device, dtype=x.dtype) for c in conds])
    batch = torch.cat([c.expand(x.shape[0], -1, -1) if c.shape[0] == 1 else c for c in conds])  # (nB, T, C)
    extra = {}
    if getattr(unet.config, "addition_embed_type", None) == "text_time":
        pooled = [negative_pooled, positive_pooled] if guided else [positive_pooled]
        if any(p is None for p in pooled):
            raise ValueError("this is an SDXL UNet: its prompts need pooled embeddings (an SDXL CLIP's encoding)")
        size = [8 * x.shape[-2], 8 * x.shape[-1]]
        n = x.shape[0]
        extra["text_embeds"] = torch.cat([p.to(device=x.device, dtype=x.dtype).expand(n, -1) for p in pooled])
        extra["time_ids"] = torch.tensor([size + [0, 0] + size], device=x.device, dtype=x.dtype).expand(
            n * len(pooled), -1)  # (nB, 6)
    with torch.no_grad():
        eps = unet(torch.cat([x_in] * len(conds)), t, encoder_hidden_states=batch, **extra)
    denoised = [x - sigma * e for e in eps.chunk(len(conds))]
    if not guided:
        return denoised[0]
    negative_x0, positive_x0 = denoised
    return negative_x0 + (positive_x0 - negative_x0) * cfg


def _same_length(conds):
    """Repeat each (B, T, C) along T to the least common multiple of the lengths (ComfyUI's CONDCrossAttn)."""
    import math

    length = math.lcm(*(c.shape[1] for c in conds))
    return [c.repeat(1, length // c.shape[1], 1) for c in conds]
