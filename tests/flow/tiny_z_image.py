"""A tiny random Z-Image pipeline folder saved by diffusers and transformers themselves: the oracle side of the
Z-Image parity tests (tests/flow/) and the model tests of the Qwen3 encoder and the Z-Image transformer.

Every size differs from diffusers' own test dummies (and from the real model), every weight is moved off its
initialisation (the learned pad tokens included: diffusers inits them to zeros), and the tokenizer is a small
byte-level BPE trained offline with `tokenizers`, wrapped as transformers' Qwen2Tokenizer, with a chat template
that renders exactly as Qwen3's does for Z-Image's call (enable_thinking=True, add_generation_prompt=True).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Sizes, chosen unlike diffusers' test dummies: text hidden 40 → cap_feat_dim 40; transformer dim 48, 3 heads of
# 16 (RoPE axes 4 + 6 + 6), 2 main layers, 1 refiner layer each; VAE with 16 latent channels and 3 levels (factor
# 4), so with patch 2 the pipeline asks for multiples of 4·2·2 = 16 pixels, as the real one (factor 8) does of 16.
TEXT = dict(vocab_size=0, hidden_size=40, intermediate_size=72, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=12, max_position_embeddings=1024, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=False)
TRANSFORMER = dict(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=48, n_layers=2, n_refiner_layers=1,
                   n_heads=3, n_kv_heads=3, norm_eps=1e-5, qk_norm=True, cap_feat_dim=40, rope_theta=256.0,
                   t_scale=1000.0, axes_dims=[4, 6, 6], axes_lens=[1024, 64, 64])
VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
           up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 16, 16), layers_per_block=1,
           latent_channels=16, norm_num_groups=4, sample_size=32, scaling_factor=0.3611, shift_factor=0.1159,
           use_quant_conv=False, use_post_quant_conv=False)
SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Renders as Qwen3's template does for one user message: with a generation prompt and thinking enabled the
# assistant turn is left open; thinking disabled adds the empty think block.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}{%- endif -%}")
CORPUS = [
    "a photograph of an astronaut riding a horse on the moon", "a watercolor painting of a red fox in snow",
    "blurry, low quality, jpeg artifacts, watermark", "a cat sitting on a wooden table, studio lighting",
    "Une maison bleue au bord de la mer", "東京の夜景、ネオンサイン", "ein Hund läuft über die grüne Wiese",
    "user assistant system think", "0123456789 !?,.;:'\"()[]{}<>-_=+*/\\|@#$%^&~`",
]


def perturb(model: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """Seeded noise on every parameter (zero-initialised pad tokens and norms at 1 would hide mistakes)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return model.eval()


def build_tokenizer():
    """A byte-level BPE (Qwen2's pre-tokenizer) trained on a few sentences, as transformers' Qwen2Tokenizer."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=SPECIALS[:1], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS * 4, trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    tok = Qwen2Tokenizer(vocab=state["vocab"], merges=merges)
    tok.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    tok.chat_template = CHAT_TEMPLATE
    tok.model_max_length = 131072
    return tok


def build_components() -> dict:
    """The five pipeline components, seeded and perturbed."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    text_config = Qwen3Config(**{**TEXT, "vocab_size": len(tokenizer)}, pad_token_id=tokenizer.pad_token_id)
    text_encoder = perturb(Qwen3Model(text_config), 21, scale=0.1)
    transformer = perturb(ZImageTransformer2DModel(**TRANSFORMER), 22)
    with torch.no_grad():  # learned pad tokens of a trained checkpoint are far from zero
        transformer.x_pad_token.add_(torch.linspace(-1, 1, TRANSFORMER["dim"]))
        transformer.cap_pad_token.add_(torch.linspace(1, -1, TRANSFORMER["dim"]))
    vae = perturb(AutoencoderKL(**VAE), 23)
    return dict(transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae,
                scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER))


def save_tiny_z_image(folder: Path) -> Path:
    """Save the tiny pipeline with ZImagePipeline.save_pretrained (model_index.json and one folder each)."""
    from diffusers import ZImagePipeline

    ZImagePipeline(**build_components()).save_pretrained(folder)
    return folder
