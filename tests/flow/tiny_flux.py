"""Tiny random Flux.1 pipeline folders (dev: guidance embedding + dynamic shift; schnell: neither) saved by
diffusers and transformers themselves: the oracle side of the Flux parity tests (tests/flow/test_flux_*.py).

Sizes differ from diffusers' test dummies and from the real model (64 = 16·2·2 input features, 24 heads of
128): 16 transformer input features (4 latent channels packed 2×2), 2 heads of 16 with RoPE axes
4 + 6 + 6, 2 double and 2 single blocks, T5 width 40 (3 blocks), CLIP-L width 24 (pooled 24), a VAE of 3 levels
(factor 4, so sizes are multiples of 4·2 = 8 pixels) with Flux's scaling and shift. Every weight is moved off its
initialisation. The T5 tokenizer is a small Unigram vocabulary built offline as transformers' T5Tokenizer; CLIP's
is nodegraph's builtin copy of the real one.
"""

from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
CLIP_TOKENIZER = REPO / "nodegraph" / "builtin" / "clip_tokenizer"
T5 = dict(d_model=40, d_kv=12, d_ff=56, num_layers=3, num_heads=3, relative_attention_num_buckets=12,
          relative_attention_max_distance=10, feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6)
CLIP = dict(hidden_size=24, intermediate_size=40, num_attention_heads=3, num_hidden_layers=3, vocab_size=49408,
            max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
            hidden_act="quick_gelu")
TRANSFORMER = dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=16,
                   num_attention_heads=2, joint_attention_dim=40, pooled_projection_dim=24, axes_dims_rope=(4, 6, 6))
VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
           up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 16, 16), layers_per_block=1,
           latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.3611, shift_factor=0.1159,
           use_quant_conv=False, use_post_quant_conv=False)
DEV_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                     base_image_seq_len=16, max_image_seq_len=400)
SCHNELL_SCHEDULER = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
WORDS = ("a red fox in fresh snow cat on the table photo of an astronaut riding horse moon blurry low quality "
         "lighthouse at dusk painting watercolor ugly dog bright sunny day").split()


def perturb(model: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return model.eval()


def build_t5_tokenizer():
    """A Unigram vocabulary (<pad> 0, </s> 1, <unk> 2, "▁", whole words, single letters) as T5Tokenizer."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + w, -3.0 - 0.1 * n) for n, w in enumerate(dict.fromkeys(WORDS))]
    vocab += [(c, -8.0) for c in "abcdefghijklmnopqrstuvwxyz,.!?'-0123456789"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_components(schnell: bool = False) -> dict:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

    tokenizer_2 = build_t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = perturb(CLIPTextModel(CLIPTextConfig(**CLIP)), 31, scale=0.1)
    text_encoder_2 = perturb(T5EncoderModel(T5Config(**T5, vocab_size=len(tokenizer_2))), 32, scale=0.1)
    transformer = perturb(FluxTransformer2DModel(**TRANSFORMER, guidance_embeds=not schnell), 33 + schnell)
    vae = perturb(AutoencoderKL(**VAE), 35)
    scheduler = FlowMatchEulerDiscreteScheduler(**(SCHNELL_SCHEDULER if schnell else DEV_SCHEDULER))
    return dict(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(
        CLIP_TOKENIZER), text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)


def save_tiny_flux(folder: Path, schnell: bool = False) -> Path:
    """Save the tiny pipeline with FluxPipeline.save_pretrained (model_index.json and one folder each)."""
    from diffusers import FluxPipeline

    FluxPipeline(**build_components(schnell)).save_pretrained(folder)
    return folder
