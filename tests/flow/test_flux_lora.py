"""Flux LoRAs through graphs/flux.yaml's `lora` input against diffusers' FluxPipeline.load_lora_weights on the tiny
dev folder, in the same test: a diffusers/peft file (transformer + CLIP-L) and a kohya-ss file (BFL names, fused
qkv, modulations, the final layer, alphas, CLIP-L's lora_te1_), each within 1/255 and each moving the image. A
kohya LoRA on a single block's fused `linear1` is checked against diffusers running its peft equivalent (diffusers'
own kohya converter splits linear1 at FLUX.1's fixed widths, which a tiny model does not have). kohya LoRAs on the
embedders and the final layer, which diffusers drops, are checked one by one (alpha ≠ rank) against diffusers running
their peft form (α/r folded into B, the final modulation's halves swapped)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nodegraph import run_graph
from tests.graphs.tiny_pipelines import png_pixels, to_uint8

SETTINGS = dict(prompt="a red fox in fresh snow", steps=2, width=32, height=32, max_sequence_length=24)
D, RANK = 32, 4  # the tiny transformer's width (2 heads of 16); CLIP-L's is 24


def lora_pair(out_features: int, in_features: int, seed: int, scale: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(RANK, in_features, generator=g) * scale, torch.randn(out_features, RANK, generator=g) * scale


def peft_file(path):
    tensors = {}
    for n, (name, out_f, in_f) in enumerate([
            ("transformer.transformer_blocks.0.attn.to_q", D, D),
            ("transformer.transformer_blocks.1.ff.net.2", D, 4 * D),
            ("transformer.single_transformer_blocks.0.proj_mlp", 4 * D, D),
            ("transformer.transformer_blocks.0.norm1_context.linear", 6 * D, D),
            ("text_encoder.text_model.encoder.layers.1.self_attn.v_proj", 24, 24)]):
        down, up = lora_pair(out_f, in_f, n)
        tensors.update({f"{name}.lora_A.weight": down, f"{name}.lora_B.weight": up})
    save_file(tensors, path)
    return path


KOHYA = [("lora_unet_double_blocks_0_img_attn_qkv", 3 * D, D, 2.0),
         ("lora_unet_double_blocks_1_txt_attn_qkv", 3 * D, D, 8.0),
         ("lora_unet_double_blocks_0_img_mod_lin", 6 * D, D, 4.0),
         ("lora_unet_double_blocks_1_txt_mlp_0", 4 * D, D, 4.0),
         ("lora_unet_single_blocks_1_linear2", D, 5 * D, 1.0),
         ("lora_unet_single_blocks_0_modulation_lin", 3 * D, D, 4.0),
         ("lora_te1_text_model_encoder_layers_0_mlp_fc1", 40, 24, 2.0)]
# diffusers 0.42.1 drops these kohya layers (their converted names lack `transformer.`); nodegraph applies them.
# Each: kohya name, out, in, alpha (never the rank, so α/r is visible), the diffusers module it must act on.
KOHYA_OUTER = [
    ("lora_unet_final_layer_adaLN_modulation_1", 2 * D, D, 2.0, "norm_out.linear"),
    ("lora_unet_final_layer_linear", 16, D, 8.0, "proj_out"),
    ("lora_unet_img_in", D, 16, 2.0, "x_embedder"),
    ("lora_unet_txt_in", D, 40, 8.0, "context_embedder"),
    ("lora_unet_time_in_in_layer", D, 256, 8.0, "time_text_embed.timestep_embedder.linear_1"),
    ("lora_unet_vector_in_in_layer", D, 24, 2.0, "time_text_embed.text_embedder.linear_1"),
    ("lora_unet_guidance_in_out_layer", D, D, 1.0, "time_text_embed.guidance_embedder.linear_2")]


def kohya_file(path, layers=KOHYA):
    tensors = {}
    for n, (name, out_f, in_f, alpha, *_) in enumerate(layers):
        down, up = lora_pair(out_f, in_f, 10 + n)
        tensors.update({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up,
                        f"{name}.alpha": torch.tensor(alpha)})
    save_file(tensors, path)
    return path


def comfy_file(path):
    """The kohya file under ComfyUI's names: `diffusion_model.` + BFL's dotted paths, CLIP-L's under
    `text_encoders.clip_l.transformer.`."""
    from safetensors.torch import load_file

    def comfy(key: str) -> str:
        name, _, suffix = key.partition(".")
        for kohya, prefix in (("lora_unet_", "diffusion_model."), ("lora_te1_", "text_encoders.clip_l.transformer.")):
            if name.startswith(kohya):
                dotted = name[len(kohya):]
                for bfl, module in (("double_blocks_", "double_blocks"), ("single_blocks_", "single_blocks"),
                                    ("text_model_encoder_layers_", "text_model.encoder.layers")):
                    if dotted.startswith(bfl):
                        head, rest = dotted[len(bfl):].split("_", 1)
                        dotted = f"{module}.{head}.{rest}"
                for part in ("img_attn_", "txt_attn_", "img_mod_", "txt_mlp_", "self_attn_", "mlp_", "modulation_"):
                    dotted = dotted.replace(part, part[:-1] + ".")
                return f"{prefix}{dotted}.{suffix}"
        raise AssertionError(key)

    kohya = load_file(kohya_file(path.with_name("kohya-source.safetensors")))
    save_file({comfy(k): v for k, v in kohya.items()}, path)
    return path


@pytest.fixture(scope="module")
def pipe(tiny_flux_dev):
    from diffusers import FluxPipeline

    p = FluxPipeline.from_pretrained(tiny_flux_dev)
    p.set_progress_bar_config(disable=True)
    return p


def theirs(pipe, lora) -> torch.Tensor:
    pipe.load_lora_weights(str(lora))
    try:
        images = pipe(SETTINGS["prompt"], num_inference_steps=2, width=32, height=32, max_sequence_length=24,
                      generator=torch.Generator("cpu").manual_seed(0), output_type="np").images
    finally:
        pipe.unload_lora_weights()
    return to_uint8(images).int()


def ours(folder, **inputs) -> torch.Tensor:
    return png_pixels(run_graph("graphs/flux.yaml", inputs={"model": str(folder), **SETTINGS, **inputs})["image"]).int()


@pytest.fixture(scope="module")
def plain(tiny_flux_dev):
    return ours(tiny_flux_dev)


@pytest.mark.parametrize("make", [peft_file, kohya_file, comfy_file], ids=["peft", "kohya", "comfyui"])
def test_a_lora_file_matches_load_lora_weights_and_moves_the_image(tiny_flux_dev, pipe, plain, tmp_path, make):
    lora = make(tmp_path / "lora.safetensors")
    got = ours(tiny_flux_dev, lora=str(lora))
    assert (got - theirs(pipe, lora)).abs().max() <= 1
    assert (got - plain).abs().max() > 5
    assert (got - ours(tiny_flux_dev, lora=str(lora), lora_scale=0.5)).abs().max() > 2


def peft_equivalent(path, layer, seed: int):
    """The kohya layer as diffusers/peft names it, which diffusers does apply: α/r folded into B (peft's own
    scale is then 1), and the final modulation's B halves swapped (BFL (shift, scale) → diffusers (scale, shift))."""
    name, out_f, in_f, alpha, module = layer
    down, up = lora_pair(out_f, in_f, seed)
    up = up * (alpha / RANK)
    if module == "norm_out.linear":
        shift, scale = up.chunk(2)
        up = torch.cat([scale, shift])
    save_file({f"transformer.{module}.lora_A.weight": down, f"transformer.{module}.lora_B.weight": up.contiguous()},
              path)
    return path


@pytest.mark.parametrize("layer", KOHYA_OUTER, ids=[layer[0].removeprefix("lora_unet_") for layer in KOHYA_OUTER])
def test_kohya_final_layer_and_embedder_loras_are_applied_with_their_alpha_where_diffusers_drops_them(
        tiny_flux_dev, pipe, plain, tmp_path, layer):
    kohya = kohya_file(tmp_path / "kohya.safetensors", [layer])  # lora_pair seed 10, as peft_equivalent's
    assert (theirs(pipe, kohya) - plain).abs().max() <= 1  # diffusers: the kohya name is dropped, no movement
    got = ours(tiny_flux_dev, lora=str(kohya))
    assert (got - plain).abs().max() > 5
    assert (got - theirs(pipe, peft_equivalent(tmp_path / "peft.safetensors", layer, 10))).abs().max() <= 1


def test_kohya_linear1_and_final_modulation_equal_their_split_and_swapped_peft_form_in_diffusers(tiny_flux_dev, pipe,
                                                                                                 tmp_path):
    down, up = lora_pair(3 * D + 4 * D, D, 30)
    final_down, final_up = lora_pair(2 * D, D, 31)
    kohya = tmp_path / "kohya.safetensors"
    save_file({"lora_unet_single_blocks_1_linear1.lora_down.weight": down,
               "lora_unet_single_blocks_1_linear1.lora_up.weight": up,
               "lora_unet_single_blocks_1_linear1.alpha": torch.tensor(2.0),
               "lora_unet_final_layer_adaLN_modulation_1.lora_down.weight": final_down,
               "lora_unet_final_layer_adaLN_modulation_1.lora_up.weight": final_up}, kohya)
    split = {}
    for name, rows in zip(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), up.split([D, D, D, 4 * D])):
        key = f"transformer.single_transformer_blocks.1.{name}"
        split.update({f"{key}.lora_A.weight": down * 0.5, f"{key}.lora_B.weight": rows.contiguous()})  # α/r = 2/4
    shift, scale = final_up.chunk(2)  # BFL stores (shift, scale); diffusers' norm_out.linear is (scale, shift)
    split.update({"transformer.norm_out.linear.lora_A.weight": final_down,
                  "transformer.norm_out.linear.lora_B.weight": torch.cat([scale, shift])})
    peft = tmp_path / "peft.safetensors"
    save_file(split, peft)
    got = ours(tiny_flux_dev, lora=str(kohya))
    assert (got - theirs(pipe, peft)).abs().max() <= 1
