"""SD3 LoRAs through graphs/sd3.yaml's `lora` / `lora_scale` against diffusers' `load_lora_weights` on the tiny
SD3.5-like folder, run in the same test: a kohya-ss file (SAI module names, fused qkv LoRAs, kohya alphas, the
(shift, scale) modulations of the final layer and the last context block, CLIP-L and bigG layers) and its
diffusers/peft equivalent (the qkv LoRAs split by B's rows, alpha/r baked into B) give the same image as the
pipeline with the peft file loaded, and so does the file with ComfyUI's names (`diffusion_model.` + SAI's
dotted paths, `text_encoders.clip_l.transformer.`); each LoRA moves the image."""

from __future__ import annotations

import pytest
import torch

from nodegraph import run_graph
from tests.graphs.tiny_pipelines import png_pixels, to_uint8

GRAPH = "graphs/sd3.yaml"
SETTINGS = dict(prompt="a red fox in fresh snow", negative_prompt="blurry", steps=3, width=32, height=32,
                guidance_scale=4.0, max_sequence_length=12)
R, ALPHA = 4, 2.0  # kohya scale alpha / r = 0.5
SAI_LAYERS = {  # kohya name → (diffusers path(s) it covers, in, out) for the tiny transformer (D 32, 4 blocks)
    "joint_blocks_0_x_block_attn_qkv": (("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                         "transformer_blocks.0.attn.to_v"), 32, 96),
    "joint_blocks_1_context_block_attn_qkv": (("transformer_blocks.1.attn.add_q_proj",
                                               "transformer_blocks.1.attn.add_k_proj",
                                               "transformer_blocks.1.attn.add_v_proj"), 32, 96),
    "joint_blocks_0_x_block_attn2_qkv": (("transformer_blocks.0.attn2.to_q", "transformer_blocks.0.attn2.to_k",
                                          "transformer_blocks.0.attn2.to_v"), 32, 96),
    "joint_blocks_2_x_block_mlp_fc1": (("transformer_blocks.2.ff.net.0.proj",), 32, 128),
    "joint_blocks_1_context_block_attn_proj": (("transformer_blocks.1.attn.to_add_out",), 32, 32),
    "joint_blocks_3_context_block_adaLN_modulation_1": (("transformer_blocks.3.norm1_context.linear",), 32, 64),
    "final_layer_adaLN_modulation_1": (("norm_out.linear",), 32, 64),
    "context_embedder": (("context_embedder",), 64, 32),
}
DOTTED = {  # ComfyUI writes the same layers under `diffusion_model.` + SAI's dotted module path
    "joint_blocks_0_x_block_attn_qkv": "joint_blocks.0.x_block.attn.qkv",
    "joint_blocks_1_context_block_attn_qkv": "joint_blocks.1.context_block.attn.qkv",
    "joint_blocks_0_x_block_attn2_qkv": "joint_blocks.0.x_block.attn2.qkv",
    "joint_blocks_2_x_block_mlp_fc1": "joint_blocks.2.x_block.mlp.fc1",
    "joint_blocks_1_context_block_attn_proj": "joint_blocks.1.context_block.attn.proj",
    "joint_blocks_3_context_block_adaLN_modulation_1": "joint_blocks.3.context_block.adaLN_modulation.1",
    "final_layer_adaLN_modulation_1": "final_layer.adaLN_modulation.1", "context_embedder": "context_embedder",
    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj":
        "text_encoders.clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj",
}
SWAPPED = ("joint_blocks_3_context_block_adaLN_modulation_1", "final_layer_adaLN_modulation_1")
TEXT_LAYERS = {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj": ("text_encoder", 24, 24),
               "lora_te2_text_model_encoder_layers_1_self_attn_v_proj": ("text_encoder_2", 32, 32)}
# (diffusers reads text-encoder LoRAs on the attention projections only: its PEFT → diffusers key table)


def _peft_path(kohya: str) -> str:
    name = kohya.split("_", 2)[2]  # after lora_te1_ / lora_te2_
    return name.replace("text_model_encoder_layers_", "text_model.encoder.layers.").replace("_self_attn_",
                                                                                              ".self_attn.")


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(7)
    kohya, peft = {}, {}
    for name, (paths, n_in, n_out) in {**SAI_LAYERS, **{k: ((v[0],), v[1], v[2]) for k, v in TEXT_LAYERS.items()}
                                       }.items():
        down, up = 0.3 * torch.randn(R, n_in, generator=g), 0.3 * torch.randn(n_out, R, generator=g)
        prefix = "" if name.startswith("lora_te") else "lora_unet_"
        kohya.update({f"{prefix}{name}.lora_down.weight": down, f"{prefix}{name}.lora_up.weight": up,
                      f"{prefix}{name}.alpha": torch.tensor(ALPHA)})
        baked = up * (ALPHA / R)
        if name in SWAPPED:  # SAI's (shift, scale) rows → diffusers' (scale, shift)
            first, second = baked.chunk(2)
            baked = torch.cat([second, first])
        if name in TEXT_LAYERS:
            targets = (f"{TEXT_LAYERS[name][0]}.{_peft_path(name)}",)
        else:
            targets = tuple(f"transformer.{p}" for p in paths)
        for i, target in enumerate(targets):
            rows = baked.shape[0] // len(targets)
            peft[f"{target}.lora_A.weight"] = down.clone()
            peft[f"{target}.lora_B.weight"] = baked[i * rows:(i + 1) * rows].clone()
    comfy = {}  # ComfyUI's names; bigG's layer left out (this test covers the transformer and CLIP-L)
    for key, value in kohya.items():
        name, _, suffix = key.removeprefix("lora_unet_").partition(".")
        if name in DOTTED:
            comfy[("" if name.startswith("lora_te") else "diffusion_model.") + f"{DOTTED[name]}.{suffix}"] = value
    root = tmp_path_factory.mktemp("sd3_lora")
    save_file(kohya, root / "kohya_sd3.safetensors")
    save_file(peft, root / "peft_sd3.safetensors")
    without_g = {k: v for k, v in peft.items() if not k.startswith("text_encoder_2.")}
    save_file(comfy, root / "comfy_sd3.safetensors")
    save_file(without_g, root / "peft_sd3_no_g.safetensors")
    return {"kohya": root / "kohya_sd3.safetensors", "peft": root / "peft_sd3.safetensors",
            "comfy": root / "comfy_sd3.safetensors", "peft without bigG": root / "peft_sd3_no_g.safetensors"}


@pytest.fixture(scope="module")
def diffusers_images(tiny_sd3, lora_files):
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(tiny_sd3)
    pipe.set_progress_bar_config(disable=True)

    def run(**kwargs):
        images = pipe(SETTINGS["prompt"], negative_prompt=SETTINGS["negative_prompt"], height=32, width=32,
                      num_inference_steps=3, guidance_scale=4.0, max_sequence_length=12,
                      generator=torch.Generator("cpu").manual_seed(0), output_type="np", **kwargs).images
        return to_uint8(images).int()

    plain = run()
    pipe.load_lora_weights(str(lora_files["peft without bigG"]), adapter_name="no_g")
    no_g = run()
    pipe.delete_adapters("no_g")
    pipe.load_lora_weights(str(lora_files["peft"]))
    return {"plain": plain, "lora": run(), "lora 0.6": run(joint_attention_kwargs={"scale": 0.6}),
            "lora without bigG": no_g}


def ours(folder, **inputs) -> torch.Tensor:
    return png_pixels(run_graph(GRAPH, inputs={"model": str(folder), **SETTINGS, **inputs}, device="cpu")["image"]
                      ).int()


@pytest.mark.parametrize("style", ["kohya", "peft"])
def test_a_lora_gives_diffusers_image(tiny_sd3, lora_files, diffusers_images, style):
    got = ours(tiny_sd3, lora=str(lora_files[style]))
    assert (got - diffusers_images["lora"]).abs().max() <= 1
    assert (diffusers_images["lora"] - diffusers_images["plain"]).abs().max() > 5  # the LoRA moves the image


def test_lora_scale_matches_diffusers_joint_attention_scale(tiny_sd3, lora_files, diffusers_images):
    got = ours(tiny_sd3, lora=str(lora_files["kohya"]), lora_scale=0.6)
    assert (got - diffusers_images["lora 0.6"]).abs().max() <= 1
    assert (diffusers_images["lora 0.6"] - diffusers_images["lora"]).abs().max() > 5


def test_a_lora_with_comfyuis_names_gives_diffusers_image(tiny_sd3, lora_files, diffusers_images):
    got = ours(tiny_sd3, lora=str(lora_files["comfy"]))
    assert (got - diffusers_images["lora without bigG"]).abs().max() <= 1
    assert (diffusers_images["lora without bigG"] - diffusers_images["lora"]).abs().max() > 0  # bigG's layer counts
