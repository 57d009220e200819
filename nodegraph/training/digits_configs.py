"""Architecture of the built-in digits model, written as the diffusers configs it is saved with.

Sizes follow shared/notes/embedded-model-facts.md: a 0.95 M-parameter VAE (32×32 → 8×8×4), a 0.80 M-parameter
UNet with cross-attention at 8×8 and in the mid block, and a 2-layer, 64-wide CLIP text encoder whose size is
almost all its 49,408-token embedding table (the real CLIP vocabulary, so prompts tokenise as for SD).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

from nodegraph.models.autoencoder_kl import AutoencoderKL
from nodegraph.models.unet_2d_condition import UNet2DConditionModel

DIFFUSERS_VERSION = "0.42.1"  # the format version the configs follow

VAE_CONFIG = {
    "_class_name": "AutoencoderKL",
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 16,
    "sample_size": 32,
}

UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 64,
    "attention_head_dim": 4,  # the number of heads, in UNet2DConditionModel's legacy naming
    "norm_num_groups": 16,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
}

TEXT_ENCODER_CONFIG = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 64,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}

# SD's noise schedule: training draws t uniformly from its 1,000 steps.
TRAIN_SCHEDULER_CONFIG = {
    "_class_name": "DDPMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
}

# What the folder ships for sampling: DPM++ 2M over the same betas (20 steps were measured to be enough).
SAMPLING_SCHEDULER_CONFIG = {
    "_class_name": "DPMSolverMultistepScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "solver_order": 2,
    "algorithm_type": "dpmsolver++",
    "timestep_spacing": "leading",
    "steps_offset": 1,
    # Stated for the classes a user may swap in (as SD checkpoints state them): x0 clipping to [-1, 1] would
    # wreck latents, and PNDM should skip its Runge-Kutta warm-up.
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
}

MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": DIFFUSERS_VERSION,
    "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "safety_checker": [None, None],
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
}


def build_vae(config: dict) -> AutoencoderKL:
    return AutoencoderKL.from_config(config)


def build_unet(config: dict) -> UNet2DConditionModel:
    return UNet2DConditionModel.from_config(config)


def build_text_encoder(config: dict) -> CLIPTextModel:
    fields = {k: v for k, v in config.items() if k not in ("architectures", "model_type")}
    return CLIPTextModel(CLIPTextConfig(**fields))


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _fp16_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()}


def save_pipeline(out: Path, *, unet, vae, text_encoder, tokenizer_dir: Path, scaling_factor: float) -> None:
    """Write a diffusers-layout pipeline folder in fp16; built beside `out` and swapped in whole at the end."""
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent if out.parent.exists() else None))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is a shared, read-only model folder
    try:
        _write_json(tmp / "model_index.json", MODEL_INDEX)
        _write_json(tmp / "scheduler" / "scheduler_config.json",
                    {**SAMPLING_SCHEDULER_CONFIG, "_diffusers_version": DIFFUSERS_VERSION})
        _write_json(tmp / "unet" / "config.json", {**UNET_CONFIG, "_diffusers_version": DIFFUSERS_VERSION})
        save_file(_fp16_state(unet), str(tmp / "unet" / "diffusion_pytorch_model.safetensors"))
        _write_json(tmp / "vae" / "config.json",
                    {**VAE_CONFIG, "scaling_factor": round(scaling_factor, 5), "_diffusers_version": DIFFUSERS_VERSION})
        save_file(_fp16_state(vae), str(tmp / "vae" / "diffusion_pytorch_model.safetensors"))
        _write_json(tmp / "text_encoder" / "config.json", TEXT_ENCODER_CONFIG)
        # transformers 4's key layout (`text_model.` prefix), as on the hub SD repos.
        te_state = {k if k.startswith("text_model.") else f"text_model.{k}": v
                    for k, v in _fp16_state(text_encoder).items() if not k.endswith("position_ids")}
        save_file(te_state, str(tmp / "text_encoder" / "model.safetensors"), metadata={"format": "pt"})
        shutil.copytree(tokenizer_dir, tmp / "tokenizer")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
