"""ImageScale, ImageScaleToTotalPixels, LatentUpscaleBy and SDTurboScheduler with ComfyUI's arithmetic (written out
here from nodes.py, comfy_extras/nodes_post_processing.py, nodes_custom_sampler.py and comfy/utils.py
`common_upscale`), and the `image2image` and `sdxlturbo_example` templates (pinned package JSON) run end to end:
image2image equals the same workflow fed the image pre-scaled here, sdxlturbo equals diffusers' SDXL pipeline
with Euler ancestral over the trailing 1-step schedule (t = 999) and ComfyUI's first noise and size ids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from templates import models_folder, run_template, sets, small_sizes, template
from workflows import run_cli


def max_diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def image(h=24, w=40, seed=0):
    return torch.rand((1, 3, h, w), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic"])
def test_image_scale_to_total_pixels_keeps_the_aspect_at_the_pixel_count(method):
    from nodegraph.nodes.comfy_image import ComfyImageScaleToTotalPixels as Node

    x = image()
    out = Node().run(Node.Inputs(image=x, upscale_method=method, megapixels=0.0025), None)["image"]
    scale = math.sqrt(0.0025 * 1024 * 1024 / (40 * 24))  # ComfyUI: √(total / (W·H)), each side rounded
    torch.testing.assert_close(out, F.interpolate(x, size=(round(24 * scale), round(40 * scale)), mode=method))
    stepped = Node().run(Node.Inputs(image=x, megapixels=0.0025, resolution_steps=8), None)["image"]
    assert stepped.shape[-2:] == (round(24 * scale / 8) * 8, round(40 * scale / 8) * 8)


def test_image_scale_sizes_crop_and_lanczos():
    from PIL import Image

    from nodegraph.nodes.comfy_image import ComfyImageScale as Node

    x = image()
    out = Node().run(Node.Inputs(image=x, upscale_method="bilinear", width=16, height=16, crop="center"), None)
    # center crop to 1:1 first: (40 − 40·(1/(40/24)))/2 = 8 columns off each side
    torch.testing.assert_close(out["image"], F.interpolate(x[..., 8:32], size=(16, 16), mode="bilinear"))
    keep = Node().run(Node.Inputs(image=x, upscale_method="bicubic", width=0, height=12), None)["image"]
    assert keep.shape[-2:] == (12, 20)  # width = max(1, round(40 · 12 / 24))
    lanczos = Node().run(Node.Inputs(image=x, upscale_method="lanczos", width=20, height=30), None)["image"]
    pil = Image.fromarray((255.0 * x[0].permute(1, 2, 0).numpy()).clip(0, 255).astype(np.uint8))
    expected = np.asarray(pil.resize((20, 30), resample=Image.Resampling.LANCZOS)).astype(np.float32) / 255.0
    torch.testing.assert_close(lanczos[0].permute(1, 2, 0), torch.from_numpy(expected))


def test_latent_upscale_by_and_sd_turbo_sigmas():
    from nodegraph.comfy.schedules import sigma_table
    from nodegraph.nodes.comfy_image import ComfyLatentUpscaleBy
    from nodegraph.nodes.comfy_sampling import ComfyTurboSigmas

    latents = torch.randn((1, 4, 8, 12), generator=torch.Generator().manual_seed(1))
    out = ComfyLatentUpscaleBy().run(ComfyLatentUpscaleBy.Inputs(latents=latents, scale_by=1.5), None)["latents"]
    torch.testing.assert_close(out, F.interpolate(latents, size=(12, 18), mode="nearest-exact"))
    turbo = ComfyTurboSigmas().run(ComfyTurboSigmas.Inputs(steps=2, denoise=0.8), None)
    # start 10 − int(10·0.8) = 2 of the timesteps 999, 899, …: 799 and 699, then 0
    torch.testing.assert_close(turbo["sigmas"], torch.stack([sigma_table()[799], sigma_table()[699], torch.tensor(0.)]))
    assert turbo["steps"] == [0, 1]


def test_image2image_template_scales_then_samples(tmp_path, models_dir, sd1_folder):
    from PIL import Image

    from nodegraph.comfy.reader import read_workflow

    models = models_folder(tmp_path, {"checkpoints/v1-5-pruned-emaonly-fp16.safetensors":
                                      models_dir / "checkpoints" / "tiny-sd1.safetensors"})
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    (tmp_path / "input").mkdir()
    Image.fromarray(pixels).save(tmp_path / "input" / "example.png")
    small = ["--input", str(tmp_path / "input"), *sets(n18_megapixels=768 / 1024 ** 2, n3_steps=2)]
    ours = run_cli(tmp_path / "template", template("image2image"), models, sd1_folder, *small)[0]
    assert ours.shape == (24, 32, 3)  # 64×48 at √(768 / 3072) = ½, nearest-exact
    # the same workflow fed the image scaled here (nearest-exact picks pixels: exact in 8 bits)
    scaled = F.interpolate(torch.from_numpy(pixels).permute(2, 0, 1)[None].float(), size=(24, 32), mode="nearest-exact")
    Image.fromarray(scaled[0].permute(1, 2, 0).byte().numpy()).save(tmp_path / "input" / "scaled.png")
    api = read_workflow(template("image2image")).api
    del api["18"]
    api["10"]["inputs"]["image"] = "scaled.png"
    api["12"]["inputs"]["pixels"] = ["10", 0]
    theirs = run_cli(tmp_path / "prescaled", api, models, sd1_folder, *small[:2], *sets(n3_steps=2))[0]
    assert max_diff(ours, theirs) == 0
    assert max_diff(ours, np.asarray(Image.fromarray(pixels).resize((32, 24)))) > 8  # sampled, not copied


def test_sdxlturbo_template_equals_diffusers_euler_ancestral_at_t_999(tmp_path, sdxl_models):
    import diffusers

    folder, base_models = sdxl_models
    models = models_folder(tmp_path, {"checkpoints/sd_xl_turbo_1.0_fp16.safetensors":
                                      base_models / "checkpoints" / "tiny-sdxl.safetensors"})
    ours = run_cli(tmp_path, template("sdxlturbo_example"), models, folder, *sets(n5_width=64, n5_height=64))[0]

    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config,
                                                                           timestep_spacing="trailing")
    pipe.scheduler.set_timesteps(1)
    assert int(pipe.scheduler.timesteps[0]) == 999
    sigma = float(pipe.scheduler.sigmas[0])
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(0))  # noise_seed 0
    prompt = ("beautiful landscape scenery glass bottle with a galaxy inside cute fennec fox snow HDR sunset")
    out = pipe(prompt, num_inference_steps=1, guidance_scale=1.0, height=32, width=32,
               latents=noise * (1 + sigma ** 2) ** 0.5 / float(pipe.scheduler.init_noise_sigma),
               original_size=(64, 64), target_size=(64, 64), output_type="np")
    theirs = (out.images[0] * 255).round().astype(np.uint8)
    assert max_diff(ours, theirs) <= 1
    assert max_diff(ours, (out.images[0] * 0).astype(np.uint8)) > 8


def test_controlnet_example_template_runs_with_comfyuis_canny(tmp_path, control_models):
    """Canny is kornia's canny in ComfyUI (comfy_extras/nodes_canny.py): the template's preview of the edges equals
    kornia's edge map of the input image; the ControlNet is a diffusers one stored under the template's file name."""
    import shutil

    from PIL import Image
    from kornia.filters import canny

    folder, models_src = control_models
    models = models_folder(tmp_path, {"checkpoints/DreamShaper_8_pruned.safetensors":
                                      models_src / "checkpoints" / "tiny-sd1-vae8.safetensors"})
    (models / "controlnet").mkdir()
    for name in ("diffusion_pytorch_model.safetensors", "config.json"):
        target = "control_v11p_sd15_scribble_fp16.safetensors" if name.endswith(".safetensors") else name
        shutil.copy(models_src / "controlnet" / "tiny-cn-a" / name, models / "controlnet" / target)
    (models / "vae").mkdir()
    shutil.copy(folder / "vae" / "diffusion_pytorch_model.safetensors",
                models / "vae" / "vae-ft-mse-840000-ema-pruned.safetensors")
    pixels = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    (tmp_path / "input" / "pasted").mkdir(parents=True)
    Image.fromarray(pixels).save(tmp_path / "input" / "pasted" / "image (2).png")
    images = run_template(tmp_path, "controlnet_example", models, folder, "--input", str(tmp_path / "input"),
                          *small_sizes("controlnet_example"))
    edges = canny(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255, 0.3500000000000001, 0.8)[1]
    expected = (edges[0, 0].numpy() * 255).round().astype(np.uint8)
    preview = [i for i in images if set(np.unique(i)) <= {0, 255}]  # the edges' PreviewImage (the other: the image)
    assert len(images) == 2 and len(preview) == 1 and expected.max() == 255
    assert max_diff(preview[0][..., 0], expected) == 0
