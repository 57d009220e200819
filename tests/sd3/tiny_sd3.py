"""A tiny random Stable Diffusion 3.5 pipeline folder saved by diffusers and transformers themselves: the oracle side
of the SD3 parity tests (tests/sd3/test_sd3_*.py).

Sizes differ from diffusers' test dummies and from the real model: CLIP-L width 24 (projection 16) and bigG width
32 (projection 20, GELU, the "!" pad token), so the pooled input is 36 and the CLIP states fill 56 of T5's 64
features (the zero-padding matters); T5 width 64 (3 blocks); an SD3.5-Medium-like transformer (4 joint blocks,
MMDiT-X dual attention in blocks 0 and 1, RMS QK-norm, 2 heads of 16, a 16×16 position table); a VAE of 3 levels
(factor 4, 4 latent channels) with SD3's scaling and shift; the hub's static shift 3. Every weight is moved off
its initialisation. The T5 tokenizer is a small Unigram vocabulary built offline as transformers' T5Tokenizer;
CLIP's is nodegraph's builtin copy of the real one.
"""

from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
CLIP_TOKENIZER = REPO / "nodegraph" / "builtin" / "clip_tokenizer"
CLIP_L = dict(hidden_size=24, intermediate_size=40, num_attention_heads=3, num_hidden_layers=3, projection_dim=16,
              hidden_act="quick_gelu")
CLIP_G = dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_hidden_layers=3, projection_dim=20,
              hidden_act="gelu")
CLIP_COMMON = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                   pad_token_id=49407)
T5 = dict(d_model=64, d_kv=12, d_ff=72, num_layers=3, num_heads=3, relative_attention_num_buckets=12,
          relative_attention_max_distance=10, feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6)
TRANSFORMER = dict(sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=4, attention_head_dim=16,
                   num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=36,
                   pos_embed_max_size=16, dual_attention_layers=(0, 1), qk_norm="rms_norm")
VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
           up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 16, 16), layers_per_block=1,
           latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=1.5305, shift_factor=0.0609,
           use_quant_conv=False, use_post_quant_conv=False)
WORDS = ("a red fox in fresh snow cat on the table photo of an astronaut riding horse moon blurry low quality "
         "lighthouse at dusk painting watercolor ugly dog bright sunny day").split()


def perturb(model: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*model.parameters(), *model.buffers()]:
            if p.is_floating_point():
                p.add_(scale * torch.randn(p.shape, generator=generator))
    return model.eval()


def build_t5_tokenizer():
    """A Unigram vocabulary (<pad> 0, </s> 1, <unk> 2, "▁", whole words, single letters) as T5Tokenizer."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + w, -3.0 - 0.1 * n) for n, w in enumerate(dict.fromkeys(WORDS))]
    vocab += [(c, -8.0) for c in "abcdefghijklmnopqrstuvwxyz,.!?'-0123456789"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_components(t5: bool = True) -> dict:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, T5Config,
                              T5EncoderModel)

    tokenizer_3 = build_t5_tokenizer() if t5 else None
    torch.manual_seed(0)
    text_encoder = perturb(CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_L, **CLIP_COMMON)), 41, scale=0.1)
    text_encoder_2 = perturb(CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G, **CLIP_COMMON)), 42, scale=0.1)
    text_encoder_3 = perturb(T5EncoderModel(T5Config(**T5, vocab_size=len(tokenizer_3))), 43, scale=0.1) \
        if t5 else None
    return dict(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                transformer=perturb(SD3Transformer2DModel(**TRANSFORMER), 44, scale=0.1),
                vae=perturb(AutoencoderKL(**VAE), 45),
                text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(CLIP_TOKENIZER),
                text_encoder_2=text_encoder_2, tokenizer_2=CLIPTokenizer.from_pretrained(CLIP_TOKENIZER, pad_token="!"),
                text_encoder_3=text_encoder_3, tokenizer_3=tokenizer_3)


def save_tiny_sd3(folder: Path, t5: bool = True) -> Path:
    """Save the tiny pipeline with StableDiffusion3Pipeline.save_pretrained (model_index.json, one folder each)."""
    from diffusers import StableDiffusion3Pipeline

    StableDiffusion3Pipeline(**build_components(t5)).save_pretrained(folder)
    return folder
