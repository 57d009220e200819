"""Tiny model configurations for the model tests, and the diffusers/transformers models built from them.

diffusers is the oracle: every parity test compares nodegraph's model, loaded from what diffusers saved, with the
diffusers model that saved it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"

# UNet2DConditionModel layouts: SD1-like (conv projection, one head count), three blocks with per-block head
# counts, 2 transformer layers and only_cross_attention, and SD2-like (linear projection, per-block heads).
SD_UNETS = {
    "sd1": dict(block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1, attention_head_dim=2,
                cross_attention_dim=16, norm_num_groups=8, sample_size=8),
    "sd1_three_blocks": dict(block_out_channels=(16, 32, 32),
                             down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                             up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                             layers_per_block=2, attention_head_dim=(1, 2, 4), transformer_layers_per_block=2,
                             only_cross_attention=(False, True, False), cross_attention_dim=16, norm_num_groups=8,
                             flip_sin_to_cos=False, freq_shift=1, sample_size=8),
    "sd2": dict(block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                attention_head_dim=(2, 4), use_linear_projection=True, upcast_attention=True, cross_attention_dim=24,
                norm_num_groups=8, sample_size=8),
}
# UNet2DModel: the ddpm-cat-256 layout scaled down (attention at the 5th level, downsample_padding 0,
# [sin, cos] order, freq_shift 1, one head as wide as the block), and a multi-head variant with attention at
# both levels, input centring and no mid-block attention.
DDPM_UNETS = {
    "ddpm_cat": dict(block_out_channels=(8, 8, 16, 16, 32, 32),
                     down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
                     up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
                     attention_head_dim=None, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1,
                     norm_eps=1e-6, norm_num_groups=4, layers_per_block=2, sample_size=32),
    "ddpm_heads": dict(block_out_channels=(16, 32), down_block_types=("AttnDownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "AttnUpBlock2D"), attention_head_dim=4, norm_num_groups=4,
                       layers_per_block=1, center_input_sample=True, add_attention=False, sample_size=8),
}
VAE = dict(block_out_channels=(8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 3,
           up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=4, layers_per_block=2, latent_channels=4,
           sample_size=16)
TEXT_ENCODER = dict(hidden_size=16, intermediate_size=37, num_attention_heads=2, num_hidden_layers=2, vocab_size=56,
                    max_position_embeddings=77, bos_token_id=54, eos_token_id=55, pad_token_id=55)


def perturbed(model: torch.nn.Module, seed: int, scale: float = 0.1) -> torch.nn.Module:
    """Add seeded noise to every parameter: diffusers' init leaves norms at 1/0 and some projections at 0,
    which would hide swapped weights. Returns the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return model.eval()



def build_reference(name: str) -> torch.nn.Module:
    """The diffusers (or transformers) model called `name` in this file, with random weights."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    if name in SD_UNETS:
        model = diffusers.UNet2DConditionModel(**SD_UNETS[name])
    elif name in DDPM_UNETS:
        model = diffusers.UNet2DModel(**DDPM_UNETS[name])
    elif name == "vae":
        model = diffusers.AutoencoderKL(**VAE)
    elif name == "text_encoder":
        model = CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER))
    else:
        raise KeyError(name)
    return perturbed(model, seed=len(name))


def reference_configs() -> dict:
    """The real SD1.4 / ddpm-cat-256 configs (copied from shared/notes/reference)."""
    return json.loads((DATA / "reference" / "real-configs.json").read_text())
