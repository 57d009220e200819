"""Inpainting and outpainting as ComfyUI runs them: ImagePadForOutpaint against its loop written out from
nodes.py, and the `inpaint_example` / `inpaint_model_outpainting` templates (pinned package JSON) end to end on a
tiny SD 2.x inpainting single file (9-channel UNet)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from templates import models_folder, run_template, sets, template


def comfy_pad(image, left, top, right, bottom, feathering):
    """ImagePadForOutpaint.expand_image on (B, H, W, C), as ComfyUI writes it (loops included)."""
    d1, d2, d3, d4 = image.shape
    new = torch.ones((d1, d2 + top + bottom, d3 + left + right, d4)) * 0.5
    new[:, top:top + d2, left:left + d3, :] = image
    mask = torch.ones((d2 + top + bottom, d3 + left + right))
    t = torch.zeros((d2, d3))
    if feathering > 0 and feathering * 2 < d2 and feathering * 2 < d3:
        for i in range(d2):
            for j in range(d3):
                d = min(i if top != 0 else d2, d2 - i if bottom != 0 else d2, j if left != 0 else d3,
                        d3 - j if right != 0 else d3)
                if d < feathering:
                    t[i, j] = ((feathering - d) / feathering) ** 2
    mask[top:top + d2, left:left + d3] = t
    return new, mask


@pytest.mark.parametrize("sides", [(40, 40, 40, 128, 10), (8, 0, 16, 0, 3), (4, 4, 4, 4, 0)])
def test_image_pad_for_outpaint_follows_comfyuis_loop(sides):
    from nodegraph.nodes.comfy_inpaint import ComfyImagePadForOutpaint as Pad

    image = torch.rand((1, 24, 30, 3), generator=torch.Generator().manual_seed(0))
    left, top, right, bottom, feathering = sides
    out = Pad().run(Pad.Inputs(image=image.permute(0, 3, 1, 2), left=left, top=top, right=right, bottom=bottom,
                               feathering=feathering), None)
    new, mask = comfy_pad(image, *sides)
    torch.testing.assert_close(out["image"], new.permute(0, 3, 1, 2))
    torch.testing.assert_close(out["mask"][0, 0], mask)


@pytest.fixture(scope="module")
def sd2_inpaint(tmp_path_factory, sd2_models):
    """A tiny SD 2.x inpainting pipeline (the SD2 fixture's parts, a 9-channel UNet) as
    checkpoints/512-inpainting-ema.safetensors."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from tests.models.single_file.ldm_layout import write_sd_file
    from tests.models.tiny_checkpoints import perturbed

    folders, _ = sd2_models
    pipe = StableDiffusionPipeline.from_pretrained(folders["eps"], safety_checker=None)
    config = dict(pipe.unet.config, in_channels=9)
    torch.manual_seed(0)
    pipe.unet = perturbed(UNet2DConditionModel.from_config(config), 35, 0.05)
    root = tmp_path_factory.mktemp("sd2-inpaint")
    pipe.save_pretrained(root / "sd2-inpaint")
    (root / "models" / "checkpoints").mkdir(parents=True)
    write_sd_file(root / "sd2-inpaint", root / "models" / "checkpoints" / "512-inpainting-ema.safetensors",
                  open_clip=True)
    return root / "sd2-inpaint", root / "models"


def rgba(h, w, hole):
    pixels = np.random.default_rng(1).integers(0, 256, (h, w, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    top, left, size = hole
    pixels[top:top + size, left:left + size, 3] = 0  # transparent: ComfyUI's LoadImage mask is 1 there
    return pixels


@pytest.mark.parametrize("name, sides", [("inpaint_example", None), ("inpaint_model_outpainting", (8, 8, 8, 16, 2))])
def test_inpaint_templates_run_and_keep_the_unmasked_part(tmp_path, sd2_inpaint, name, sides):
    from PIL import Image

    from nodegraph.comfy.reader import read_workflow

    folder, models = sd2_inpaint
    (tmp_path / "input").mkdir()
    api = read_workflow(template(name)).api
    (load,) = [e for e in api.values() if e["class_type"] == "LoadImage"]
    Image.fromarray(rgba(32, 32, (8, 8, 8))).save(tmp_path / "input" / load["inputs"]["image"])
    values = {f"n{k}_megapixels": 1024 / 1024 ** 2 for k, e in api.items()
              if e["class_type"] == "ImageScaleToTotalPixels"}  # 32×32 stays 32×32
    values.update({f"n{k}_steps": 2 for k, e in api.items() if e["class_type"] == "KSampler"})
    if sides:
        pad = [k for k, e in api.items() if e["class_type"] == "ImagePadForOutpaint"][0]
        values.update({f"n{pad}_{s}": v for s, v in zip(("left", "top", "right", "bottom", "feathering"), sides)})
    images = run_template(tmp_path, name, models, folder, "--input", str(tmp_path / "input"), *sets(**values))
    height, width = (32 + sides[1] + sides[3], 32 + sides[0] + sides[2]) if sides else (32, 32)
    assert images and all(i.shape[:2] == (height // 8 * 8, width // 8 * 8) for i in images)
    assert all(i.std() > 1 for i in images)


def test_masked_sampling_follows_comfyuis_inpaint_rule():
    """KSamplerX0Inpaint and concat_cond written out: the model sees x·m + (latent + noise·σ)·(1 − m) and, for an
    inpainting UNet, [round(m), latent] after it; its x₀ becomes x₀·m + latent·(1 − m)."""
    from nodegraph.comfy.inpaint import inpaint_denoise, latent_mask

    g = torch.Generator().manual_seed(0)
    latent, noise, x = (torch.randn((1, 4, 6, 6), generator=g) for _ in range(3))
    pixel_mask = torch.zeros((1, 1, 48, 48))
    pixel_mask[..., 10:30, 20:44] = 1
    m = torch.nn.functional.interpolate(pixel_mask, size=(6, 6), mode="bilinear").repeat(1, 4, 1, 1)
    seen = {}

    def model(x_in, concat):
        seen.update(x=x_in, concat=concat)
        return x_in * 0.3 - 1

    out = inpaint_denoise(model, x, 2.0, {"mask": latent_mask(pixel_mask, latent), "latent": latent, "noise": noise,
                                          "concat": True})
    expected_x = x * m + (latent + noise * 2.0) * (1 - m)
    torch.testing.assert_close(seen["x"], expected_x)
    torch.testing.assert_close(seen["concat"], torch.cat([m[:, :1].round(), latent], 1))
    torch.testing.assert_close(out, (expected_x * 0.3 - 1) * m + latent * (1 - m))
    assert 0 < float(m.min()) or 0 < float(((m > 0) & (m < 1)).sum())  # fractional edges: bilinear, not rounded
