"""SDXL base and refiner single files (SGM layout) against diffusers' `from_single_file(file, config=folder)`."""

from __future__ import annotations

import pytest
import torch

from nodegraph.models.loading import load_component
from tests.graphs.tiny_pipelines import REPO, png_pixels, to_uint8

SETTINGS = dict(prompt="a photo of a cat", negative_prompt="blurry", seed=3, steps=3, guidance_scale=5.0, height=16,
                width=16)


def diffusers_image(pipe) -> torch.Tensor:
    pipe.set_progress_bar_config(disable=True)
    s = SETTINGS
    out = pipe(s["prompt"], negative_prompt=s["negative_prompt"], num_inference_steps=s["steps"],
               guidance_scale=s["guidance_scale"], height=s["height"], width=s["width"],
               generator=torch.Generator("cpu").manual_seed(s["seed"]), output_type="np")
    return to_uint8(out.images)


@pytest.fixture(scope="module")
def base_images(sdxl_files):
    import diffusers

    folder, file = sdxl_files["base"]
    from_folder = diffusers.StableDiffusionXLPipeline.from_pretrained(folder, add_watermarker=False)
    single = diffusers.StableDiffusionXLPipeline.from_single_file(str(file), config=str(folder),
                                                                  local_files_only=True, add_watermarker=False)
    return diffusers_image(from_folder), diffusers_image(single)


def test_fixture_sdxl_single_file_gives_diffusers_the_folder_image(base_images):
    assert torch.equal(base_images[0], base_images[1])


def test_sdxl_base_single_file_image_matches_diffusers(sdxl_files, base_images):
    from nodegraph import run_graph

    folder, file = sdxl_files["base"]
    image = run_graph(REPO / "graphs" / "sdxl.yaml", inputs={**SETTINGS, "model": str(file), "config": str(folder)},
                      device="cpu")["image"]
    ours = png_pixels(image)
    assert (ours.int() - base_images[1].int()).abs().max().item() <= 1


def test_sdxl_refiner_single_file_loads_what_diffusers_loads(sdxl_files):
    import diffusers

    folder, file = sdxl_files["refiner"]
    theirs = diffusers.StableDiffusionXLImg2ImgPipeline.from_single_file(
        str(file), config=str(folder), local_files_only=True, add_watermarker=False)
    reference = diffusers.StableDiffusionXLImg2ImgPipeline.from_pretrained(folder, add_watermarker=False)
    for name in ("unet", "vae", "text_encoder_2"):
        ours = load_component(file, name, config=str(folder)).state_dict()
        expected, fixture = getattr(theirs, name).state_dict(), getattr(reference, name).state_dict()
        assert set(ours) == set(expected), name
        for key, value in ours.items():
            assert torch.equal(fixture[key], expected[key]), f"fixture: {name}.{key}"
            assert torch.equal(value, expected[key]), f"{name}.{key}"
    with pytest.raises(Exception, match="has no `text_encoder`"):
        load_component(file, "text_encoder", config=str(folder))


def test_sdxl_file_without_config_uses_the_sdxl_configs(sdxl_files):
    from nodegraph.models.loading import read_config
    from nodegraph.models.single_file.vae_override import vae_config_for

    base, refiner = sdxl_files["base"][1], sdxl_files["refiner"][1]
    # a VAE file swapped into an SDXL model takes SDXL's scaling factor, not SD1's
    assert vae_config_for(str(base), None)["scaling_factor"] == 0.13025
    assert read_config(base, "model_index")["force_zeros_for_empty_prompt"] is True
    assert read_config(refiner, "model_index")["requires_aesthetics_score"] is True
    assert read_config(base, "unet")["projection_class_embeddings_input_dim"] == 2816  # pooled 1280 + 6 × 256
    assert read_config(refiner, "unet")["projection_class_embeddings_input_dim"] == 2560  # pooled 1280 + 5 × 256
    assert load_component(refiner, "scheduler")["_class_name"] == "EulerDiscreteScheduler"
    assert load_component(refiner, "tokenizer_2").pad_token == "!"
