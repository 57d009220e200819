"""Stability AI's single-file layout written from a diffusers SD3 folder, for the single-file tests: the
transformer under `model.diffusion_model.` in SAI's names (fused qkv, (shift, scale) halves where SAI keeps
them), the VAE under `first_stage_model.` in the LDM names, and optionally the text encoders under
`text_encoders.{clip_l,clip_g,t5xxl}.transformer.` (transformers' names; T5's tied embedding once, as
`shared.weight`). Written independently of nodegraph's reader; diffusers' own `from_single_file` checks it."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tests.models.single_file.ldm_layout import vae_to_ldm

_PLAIN = {"pos_embed.proj": "x_embedder.proj", "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
          "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
          "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
          "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2", "context_embedder": "context_embedder",
          "proj_out": "final_layer.linear"}
_BLOCK = {"attn.norm_q": "x_block.attn.ln_q", "attn.norm_k": "x_block.attn.ln_k", "attn.to_out.0": "x_block.attn.proj",
          "attn.norm_added_q": "context_block.attn.ln_q", "attn.norm_added_k": "context_block.attn.ln_k",
          "attn.to_add_out": "context_block.attn.proj", "attn2.norm_q": "x_block.attn2.ln_q",
          "attn2.norm_k": "x_block.attn2.ln_k", "attn2.to_out.0": "x_block.attn2.proj",
          "norm1.linear": "x_block.adaLN_modulation.1", "norm1_context.linear": "context_block.adaLN_modulation.1",
          "ff.net.0.proj": "x_block.mlp.fc1", "ff.net.2": "x_block.mlp.fc2",
          "ff_context.net.0.proj": "context_block.mlp.fc1", "ff_context.net.2": "context_block.mlp.fc2"}
_QKV = {"attn.to_": "x_block.attn.qkv", "attn.add_": "context_block.attn.qkv", "attn2.to_": "x_block.attn2.qkv"}


def _halves_swapped(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a])


def transformer_to_sai(state: dict[str, torch.Tensor], prefix: str = "model.diffusion_model.") -> dict:
    last = max(int(m[1]) for k in state if (m := re.match(r"transformer_blocks\.(\d+)\.", k)))
    out, fused = {}, {}
    for key, value in state.items():
        stem, _, suffix = key.rpartition(".")
        if key == "pos_embed.pos_embed":
            out["pos_embed"] = value
        elif stem in _PLAIN:
            out[f"{_PLAIN[stem]}.{suffix}"] = value
        elif stem == "norm_out.linear":
            out[f"final_layer.adaLN_modulation.1.{suffix}"] = _halves_swapped(value)
        else:
            m = re.fullmatch(r"transformer_blocks\.(\d+)\.(.+)", stem)
            block, part = f"joint_blocks.{m[1]}.", m[2]
            qkv = next(((head, part[len(head):].removesuffix("_proj")) for head in _QKV
                        if part.startswith(head) and part[len(head):].removesuffix("_proj") in "qkv"), None)
            if qkv is not None:
                fused.setdefault(f"{block}{_QKV[qkv[0]]}.{suffix}", {})[qkv[1]] = value
            elif part == "norm1_context.linear" and int(m[1]) == last:
                out[f"{block}{_BLOCK[part]}.{suffix}"] = _halves_swapped(value)
            else:
                out[f"{block}{_BLOCK[part]}.{suffix}"] = value
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return {prefix + k: v for k, v in out.items()}


def write_sd3_file(folder: Path, path: Path, text_encoders: bool = True) -> Path:
    """The all-in-one file of the diffusers SD3 pipeline in `folder`."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModelWithProjection, T5EncoderModel

    state = transformer_to_sai(SD3Transformer2DModel.from_pretrained(folder / "transformer").state_dict())
    vae = AutoencoderKL.from_pretrained(folder / "vae")
    state.update(vae_to_ldm(vae.state_dict(), len(vae.config.block_out_channels)))
    if text_encoders:
        for name, prefix, cls in (("text_encoder", "clip_l", CLIPTextModelWithProjection),
                                  ("text_encoder_2", "clip_g", CLIPTextModelWithProjection),
                                  ("text_encoder_3", "t5xxl", T5EncoderModel)):
            encoder = cls.from_pretrained(folder / name).state_dict()
            encoder.pop("encoder.embed_tokens.weight", None)
            state.update({f"text_encoders.{prefix}.transformer.{k}": v for k, v in encoder.items()})
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


def controlnet_to_sai(state: dict, control_type: float) -> dict:
    """diffusers' SD3ControlNetModel weights in SAI's SD3.5 ControlNet file layout (fused qkv, attn.proj, mlp.fc1/fc2,
    adaLN_modulation.1, control_type), as diffusers' converter reads them."""
    sai = {k: v for k, v in state.items() if not k.startswith("transformer_blocks.")}
    layers = len({k.split(".")[1] for k in state if k.startswith("transformer_blocks.")})
    for i in range(layers):
        b = f"transformer_blocks.{i}."
        for leaf in ("weight", "bias"):
            sai[f"{b}attn.qkv.{leaf}"] = torch.cat([state[f"{b}attn.to_{n}.{leaf}"] for n in "qkv"])
            sai[f"{b}attn.proj.{leaf}"] = state[f"{b}attn.to_out.0.{leaf}"]
            sai[f"{b}mlp.fc1.{leaf}"] = state[f"{b}ff.net.0.proj.{leaf}"]
            sai[f"{b}mlp.fc2.{leaf}"] = state[f"{b}ff.net.2.{leaf}"]
            sai[f"{b}adaLN_modulation.1.{leaf}"] = state[f"{b}norm1.linear.{leaf}"]
    sai["control_type"] = torch.tensor(control_type)
    return {k: v.contiguous() for k, v in sai.items()}
