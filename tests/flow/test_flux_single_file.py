"""Flux.1 transformer files in Black Forest Labs' layout (flux1-dev/-schnell.safetensors, ComfyUI's
diffusion_models/ files, `model.diffusion_model.` in all-in-one checkpoints) load into nodegraph's model.

`to_bfl` below writes a diffusers-named state dict in BFL's layout; that it IS BFL's layout is checked against
diffusers' own converter (`convert_flux_transformer_checkpoint_to_diffusers`, which hard-codes FLUX.1's width, so
on the real-size FLUX.1-dev and -schnell trees built on the meta device). The tiny perturbed models of
test_flux_transformer.py then go through a file in that layout and must come back with identical weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nodegraph.models.loading import CheckpointError, load_component
from test_flux_transformer import build_folder, inputs

_WHOLE = {"time_text_embed.timestep_embedder.linear_": "time_in.", "time_text_embed.guidance_embedder.linear_":
          "guidance_in.", "time_text_embed.text_embedder.linear_": "vector_in."}
_DOUBLE = {"norm1.linear": "img_mod.lin", "norm1_context.linear": "txt_mod.lin", "attn.to_out.0": "img_attn.proj",
           "attn.to_add_out": "txt_attn.proj", "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2",
           "ff_context.net.0.proj": "txt_mlp.0", "ff_context.net.2": "txt_mlp.2",
           "attn.norm_q": "img_attn.norm.query_norm", "attn.norm_k": "img_attn.norm.key_norm",
           "attn.norm_added_q": "txt_attn.norm.query_norm", "attn.norm_added_k": "txt_attn.norm.key_norm"}
_SINGLE = {"norm.linear": "modulation.lin", "proj_out": "linear2", "attn.norm_q": "norm.query_norm",
           "attn.norm_k": "norm.key_norm"}


def to_bfl(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """diffusers names → BFL's: fused projections concatenated, (scale, shift) stored as (shift, scale)."""
    out = {"txt_in." + k[17:]: v for k, v in state.items() if k.startswith("context_embedder.")}
    out |= {"img_in." + k[11:]: v for k, v in state.items() if k.startswith("x_embedder.")}
    out |= {"final_layer.linear." + k[9:]: v for k, v in state.items() if k.startswith("proj_out.")}
    for k, v in state.items():
        for ours, theirs in _WHOLE.items():
            if k.startswith(ours):
                n, suffix = k[len(ours):].split(".")
                out[f"{theirs}{'in_layer' if n == '1' else 'out_layer'}.{suffix}"] = v
    for suffix in ("weight", "bias"):
        scale, shift = state[f"norm_out.linear.{suffix}"].chunk(2)
        out[f"final_layer.adaLN_modulation.1.{suffix}"] = torch.cat([shift, scale])
    for i in range(1 + max(int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks."))):
        b = f"transformer_blocks.{i}."
        for ours, theirs in _DOUBLE.items():
            for suffix in ("weight", "bias"):
                if f"{b}{ours}.{suffix}" in state:
                    out[f"double_blocks.{i}.{theirs}.{'scale' if 'norm.' in theirs else suffix}"] = \
                        state[f"{b}{ours}.{suffix}"]
        for suffix in ("weight", "bias"):
            out[f"double_blocks.{i}.img_attn.qkv.{suffix}"] = torch.cat(
                [state[f"{b}attn.to_{x}.{suffix}"] for x in "qkv"])
            out[f"double_blocks.{i}.txt_attn.qkv.{suffix}"] = torch.cat(
                [state[f"{b}attn.add_{x}_proj.{suffix}"] for x in "qkv"])
    for i in range(1 + max(int(k.split(".")[1]) for k in state if k.startswith("single_transformer_blocks."))):
        b = f"single_transformer_blocks.{i}."
        for ours, theirs in _SINGLE.items():
            for suffix in ("weight", "bias"):
                if f"{b}{ours}.{suffix}" in state:
                    out[f"single_blocks.{i}.{theirs}.{'scale' if 'norm.' in theirs else suffix}"] = \
                        state[f"{b}{ours}.{suffix}"]
        for suffix in ("weight", "bias"):
            out[f"single_blocks.{i}.linear1.{suffix}"] = torch.cat(
                [state[f"{b}{name}.{suffix}"] for name in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")])
    return {prefix + k: v for k, v in out.items()}


@pytest.mark.parametrize("guidance_embeds", [True, False], ids=["FLUX.1-dev", "FLUX.1-schnell"])
def test_real_size_bfl_layout_matches_diffusers_converter_and_ours(guidance_embeds):
    """On FLUX.1's real-size trees (meta device): diffusers' converter turns `to_bfl`'s output back into diffusers'
    keys and shapes (so it is BFL's layout), and so do nodegraph's renames, every key consumed."""
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from nodegraph.models.checkpoint import Entry
    from nodegraph.models.single_file.flux import detect_flux_file, flux_entries, inferred_config

    with torch.device("meta"):
        state = FluxTransformer2DModel(guidance_embeds=guidance_embeds).state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    bfl = to_bfl(state, "model.diffusion_model.")
    assert ("model.diffusion_model.guidance_in.in_layer.weight" in bfl) == guidance_embeds
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))
    assert {k: tuple(v.shape) for k, v in theirs.items()} == expected
    shapes = {k: tuple(v.shape) for k, v in bfl.items()}
    prefix = detect_flux_file(shapes)
    assert prefix == "model.diffusion_model."
    ours = flux_entries({k: Entry("f", tuple(v.shape), v.dtype, tensor=v) for k, v in bfl.items()}, prefix)
    assert {k: e.shape for k, e in ours.items()} == expected
    config = inferred_config(expected, "f")
    assert config["guidance_embeds"] == guidance_embeds
    assert (config["num_layers"], config["num_single_layers"], config["num_attention_heads"]) == (19, 38, 24)


@pytest.fixture(scope="module")
def dev_folder(tmp_path_factory):
    return build_folder(tmp_path_factory.mktemp("flux_dev_sf"), True, 27)


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."], ids=["comfyui", "all-in-one"])
def test_bfl_file_loads_identical_weights(dev_folder, tmp_path, prefix):
    folder_model = load_component(dev_folder, "transformer")
    reference = folder_model.state_dict()
    path = tmp_path / "flux1-dev.safetensors"
    others = {"text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": torch.ones(8),
              "text_encoders.t5xxl.transformer.shared.weight": torch.ones(4, 8),
              "vae.decoder.conv_in.weight": torch.ones(8, 16, 3, 3)} if prefix else {}  # all-in-one: read none
    save_file({**{k: v.contiguous() for k, v in to_bfl(reference, prefix).items()}, **others}, str(path))
    loaded = load_component(path, "transformer", config=str(dev_folder))
    got = loaded.state_dict()
    assert got.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(got[key], value), key
    with torch.no_grad():
        assert torch.equal(loaded(**inputs()), folder_model(**inputs()))
    bf16 = load_component(path, "transformer", config=str(dev_folder), dtype=torch.bfloat16)
    assert all(v.dtype == torch.bfloat16 for v in bf16.state_dict().values())


def test_bfl_file_without_config_needs_flux1_heads_and_other_components_are_refused(dev_folder, tmp_path):
    path = tmp_path / "flux1-dev.safetensors"
    save_file({k: v.contiguous() for k, v in to_bfl(load_component(dev_folder, "transformer").state_dict()).items()},
              str(path))
    with pytest.raises(CheckpointError, match="16-wide heads is not FLUX.1's layout .* pass the folder or repo"):
        load_component(path, "transformer")
    with pytest.raises(CheckpointError, match="holds a Flux transformer alone, not a `vae`; pass it as `transformer`"):
        load_component(path, "vae")


def test_float8_bfl_file_stays_float8_with_the_same_values(dev_folder, tmp_path):
    """flux1-dev-fp8-style files: Linear weights stored float8_e4m3fn load as float8 (per-layer upcast), the
    swapped final modulation included (read from the file's bytes)."""
    reference = load_component(dev_folder, "transformer").state_dict()
    stored = {k: (v.to(torch.float8_e4m3fn) if v.dim() == 2 else v).contiguous() for k, v in to_bfl(reference).items()}
    path = tmp_path / "flux1-dev-fp8.safetensors"
    save_file(stored, str(path))
    got = load_component(path, "transformer", config=str(dev_folder)).state_dict()
    for key in ("norm_out.linear.weight", "single_transformer_blocks.2.proj_mlp.weight",
                "transformer_blocks.1.attn.add_v_proj.weight"):
        assert got[key].dtype == torch.float8_e4m3fn, key
        assert torch.equal(got[key].float(), reference[key].to(torch.float8_e4m3fn).float()), key
