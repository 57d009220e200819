"""ComfyUI's unCLIP conditioning on SDXL ("Revision"): image embeddings in place of the prompt's pooled vector.

unCLIPConditioning appends {image_embeds, strength, noise_augmentation} to a prompt (nothing when strength is 0).
When a KSampler samples that prompt, ComfyUI's SDXL model (comfy/model_base.py `sdxl_pooled` → `unclip_adm`) builds
the pooled vector of the added conditioning from those entries instead of the text's:

* each image embedding e of each entry goes through CLIPEmbeddingNoiseAugmentation at noise level
  n = round(999 · noise_augmentation): z = √ᾱ[n]·e + √(1 − ᾱ[n])·ε, ε = randn((1, D)) drawn from torch's global
  generator seeded with (KSampler seed − 10) afresh for every embedding; ᾱ is the cumulative product of the
  "squaredcos_cap_v2" betas over 1000 steps (float64, then float32), so even level 0 adds √β₀·ε ≈ 0.006·ε;
  the data mean/std it scales by are zeros/ones for SDXL (never loaded). The entry's vector is z · strength.
* one embedding in all: that vector. Several: their sum goes through the augmentation once more at level
  round(999 · 0) = 0, its ε the next draw of the same generator (unseeded `randn_like` after the last reseed).
* SDXL keeps the first 1280 values (`[:, :1280]`): with bigG's 1280-wide embeddings exactly the vector above
  (ComfyUI appends the level's time embedding after it); narrower towers (tiny test files) keep their D values.
"""

from __future__ import annotations

import math

MAX_NOISE_LEVEL = 1000
SDXL_POOLED = 1280


def _alpha_bars():
    """ᾱ for the 1000-step squaredcos_cap_v2 schedule (Nichol & Dhariwal 2021, cosine with s = 0.008, β ≤ 0.999)."""
    import numpy as np
    import torch

    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    n = MAX_NOISE_LEVEL
    betas = np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)])
    bars = np.cumprod(1.0 - betas)
    return (torch.tensor(np.sqrt(bars), dtype=torch.float32), torch.tensor(np.sqrt(1.0 - bars), dtype=torch.float32))


def noise_level(noise_augmentation: float) -> int:
    return round((MAX_NOISE_LEVEL - 1) * noise_augmentation)


def unclip_pooled(entries: list[dict], seed: int):
    """The pooled vector (1, ≤1280) ComfyUI's SDXL uses for a prompt carrying unCLIP `entries` (see the module).

    entries: [{"image_embeds": (B, D), "strength": float, "noise_augmentation": float}, …] in append order.
    """
    import torch

    sqrt_bar, sqrt_one_minus = _alpha_bars()
    generator = torch.Generator("cpu")
    vectors = []
    for entry in entries:
        for embed in entry["image_embeds"].float().cpu():  # (D,) per image
            level = noise_level(entry["noise_augmentation"])
            generator.manual_seed(seed - 10)
            eps = torch.randn((1, embed.shape[-1]), generator=generator)  # (1, D)
            vectors.append((sqrt_bar[level] * embed[None] + sqrt_one_minus[level] * eps) * entry["strength"])
    if not vectors:
        raise ValueError("unCLIP conditioning without any image embedding")
    pooled = vectors[0]
    if len(vectors) > 1:
        eps = torch.randn((1, pooled.shape[-1]), generator=generator)  # continues after the last reseed
        pooled = sqrt_bar[0] * torch.stack(vectors).sum(0) + sqrt_one_minus[0] * eps
    return pooled[:, :SDXL_POOLED]
