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
from tests.sd3.sd3_loras import write_lora_files

GRAPH = "graphs/sd3.yaml"
SETTINGS = dict(prompt="a red fox in fresh snow", negative_prompt="blurry", steps=3, width=32, height=32,
                guidance_scale=4.0, max_sequence_length=12)


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory):
    """kohya, peft, ComfyUI-named and peft-without-bigG files of one random LoRA (tests/sd3/sd3_loras.py)."""
    return write_lora_files(tmp_path_factory.mktemp("sd3_lora"))


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
