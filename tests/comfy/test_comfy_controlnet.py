"""ControlNetLoader + ControlNetApplyAdvanced against diffusers' StableDiffusionControlNetPipeline configured as
ComfyUI samples (Euler "normal" = linspace spacing, first noise ×√(1 + σmax²); comfyui-facts.md) and given the
hint as ComfyUI makes it: the control image center-cropped to the latent's aspect and resized nearest-exact to
8× the latent (done here in numpy, from comfy/utils.py `common_upscale`'s rule).

ComfyUI decides per step by σ (σ(t = (1 − percent)·999) thresholds) where diffusers decides by the step's share
of the schedule; the tests pick ranges where both select the same steps, and one where they differ to show
that ComfyUI's rule is the one followed.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import PIL.Image
import pytest
import torch

from workflows import CFG, DEFAULT_API, NEGATIVE, PROMPT, SEED, STEPS, run_cli

CN_A, CN_B = "tiny-cn-a/diffusion_pytorch_model.safetensors", "tiny-cn-b/diffusion_pytorch_model.safetensors"


def max_diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.fixture(scope="module")
def control_images(tmp_path_factory):
    """Two 80×48 block patterns (not the latent's square aspect, so ComfyUI's center crop matters)."""
    folder = tmp_path_factory.mktemp("control-images")
    rng = np.random.default_rng(3)
    for name in ("a.png", "b.png"):
        blocks = rng.integers(0, 256, size=(12, 20, 3), dtype=np.uint8)
        PIL.Image.fromarray(blocks.repeat(4, 0).repeat(4, 1)).save(folder / name)
    return folder


def comfy_hint(path, size: int = 64) -> PIL.Image.Image:
    """ComfyUI's hint for a square latent: center crop to square, then nearest-exact (source pixel
    floor((i + ½)·in/out)) to size × size."""
    pixels = np.asarray(PIL.Image.open(path).convert("RGB"))
    h, w = pixels.shape[:2]
    x = round((w - w * (h / w)) / 2)
    square = pixels[:, x:w - x]
    index = np.floor((np.arange(size) + 0.5) * square.shape[0] / size).astype(int)
    return PIL.Image.fromarray(square[index][:, index])


def workflow(*applies) -> dict:
    """The default workflow on the 8×-VAE checkpoint with ControlNetApplyAdvanced nodes chained in order:
    each apply is (ControlNet name, image file, strength, start_percent, end_percent)."""
    doc = copy.deepcopy(DEFAULT_API)
    doc["4"]["inputs"]["ckpt_name"] = "tiny-sd1-vae8.safetensors"
    positive, negative = ["6", 0], ["7", 0]
    for k, (name, image, strength, start, end) in enumerate(applies):
        loader, picture, apply = str(20 + 3 * k), str(21 + 3 * k), str(22 + 3 * k)
        doc[loader] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": name}}
        doc[picture] = {"class_type": "LoadImage", "inputs": {"image": image, "upload": "image"}}
        doc[apply] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": positive, "negative": negative, "control_net": [loader, 0], "image": [picture, 0],
            "strength": strength, "start_percent": start, "end_percent": end, "vae": ["4", 2]}}
        positive, negative = [apply, 0], [apply, 1]
    doc["3"]["inputs"]["positive"], doc["3"]["inputs"]["negative"] = positive, negative
    return doc


def ours(tmp_path, control_models, control_images, *applies):
    """`nodegraph run` on the workflow, its control images beside it (where LoadImage looks by default)."""
    import shutil

    folder, models = control_models
    tmp_path.mkdir(parents=True, exist_ok=True)
    for image in control_images.iterdir():
        shutil.copy(image, tmp_path / image.name)
    return run_cli(tmp_path, workflow(*applies), models, folder)[0]


@functools.cache
def _components(folder):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    components = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None).components
    components["scheduler"] = EulerDiscreteScheduler.from_config(components["scheduler"].config,
                                                                 timestep_spacing="linspace")
    return components


@functools.cache
def _controlnet(path):
    from diffusers import ControlNetModel

    return ControlNetModel.from_pretrained(path)


def theirs(control_models, control_images, names, images, scales, starts, ends):
    """diffusers' ControlNet pipeline (one ControlNet or MultiControlNet) configured as ComfyUI samples."""
    from diffusers import StableDiffusionControlNetPipeline

    folder, models = control_models
    nets = [_controlnet(models / "controlnet" / name.split("/")[0]) for name in names]
    pipe = StableDiffusionControlNetPipeline(**_components(folder), controlnet=nets[0] if len(nets) == 1 else nets)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler.set_timesteps(STEPS)
    sigma_max = float(pipe.scheduler.sigmas[0])
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(SEED))
    latents = noise * (1 + sigma_max ** 2) ** 0.5 / float(pipe.scheduler.init_noise_sigma)
    hints = [comfy_hint(control_images / image) for image in images]
    one = len(nets) == 1
    out = pipe(PROMPT, negative_prompt=NEGATIVE, image=hints[0] if one else hints, num_inference_steps=STEPS,
               guidance_scale=CFG, height=64, width=64, latents=latents,
               controlnet_conditioning_scale=scales[0] if one else scales,
               control_guidance_start=starts[0] if one else starts, control_guidance_end=ends[0] if one else ends,
               output_type="np")
    return (out.images[0] * 255).round().astype(np.uint8)


ONE = (CN_A, "a.png", 0.8, 0.25, 0.75)  # 4 steps at σ(999), σ(666), σ(333), 0: 25 %–75 % keeps steps 1 and 2
# by ComfyUI's σ rule and by diffusers' share of the steps alike


@pytest.fixture(scope="module")
def one_controlnet(tmp_path_factory, control_models, control_images):
    return ours(tmp_path_factory.mktemp("one-controlnet"), control_models, control_images, ONE)


def test_controlnet_apply_advanced_matches_diffusers_controlnet_pipeline(one_controlnet, control_models,
                                                                         control_images):
    expected = theirs(control_models, control_images, [CN_A], ["a.png"], [0.8], [0.25], [0.75])
    assert one_controlnet.shape == (64, 64, 3)
    assert max_diff(one_controlnet, expected) <= 1
    # sensitive: without the ControlNet's residuals (scale 0) the image is far from it
    plain = theirs(control_models, control_images, [CN_A], ["a.png"], [0.0], [0.25], [0.75])
    assert max_diff(plain, expected) > 8


def test_imported_yaml_with_a_controlnet_gives_the_workflow_image(tmp_path, one_controlnet, control_models,
                                                                   control_images):
    import json
    import shutil

    from nodegraph.cli import main

    folder, models = control_models
    for image in control_images.iterdir():
        shutil.copy(image, tmp_path / image.name)
    (tmp_path / "w.json").write_text(json.dumps(workflow(ONE)))
    graph = tmp_path / "imported" / "graph.yaml"
    assert main(["import-comfy", str(tmp_path / "w.json"), "-o", str(graph), "--models", str(models)]) == 0
    text = graph.read_text()
    assert "type: ComfyControlNetApply" in text and "positive_control: $control22.control" in text
    assert main(["run", str(graph), "--out", str(tmp_path / "out"), "-q", "--set", f"config={folder}"]) == 0
    (png,) = (tmp_path / "out").glob("*.png")
    assert np.array_equal(np.asarray(PIL.Image.open(png).convert("RGB")), one_controlnet)


def test_start_percent_is_a_sigma_threshold_not_a_share_of_the_steps(tmp_path, control_models, control_images):
    # ComfyUI: σ at step 1 (t 666) is below σ(t = 0.7·999 = 699.3), so 30 % starts at step 1;
    # diffusers' 0.3 starts at step 2 (1/4 < 0.3) — its 0.25 is the same steps as ComfyUI's 0.3
    image = ours(tmp_path, control_models, control_images, (CN_A, "a.png", 1.0, 0.3, 1.0))
    same_steps = theirs(control_models, control_images, [CN_A], ["a.png"], [1.0], [0.25], [1.0])
    by_share = theirs(control_models, control_images, [CN_A], ["a.png"], [1.0], [0.3], [1.0])
    assert max_diff(image, same_steps) <= 1
    assert max_diff(image, by_share) > 8


def test_chained_applies_add_up_as_diffusers_multicontrolnet(tmp_path, control_models, control_images):
    image = ours(tmp_path, control_models, control_images, (CN_A, "a.png", 0.7, 0.0, 1.0),
                 (CN_B, "b.png", 1.2, 0.25, 1.0))
    expected = theirs(control_models, control_images, [CN_A, CN_B], ["a.png", "b.png"], [0.7, 1.2], [0.0, 0.25],
                      [1.0, 1.0])
    assert max_diff(image, expected) <= 1
    first_only = theirs(control_models, control_images, [CN_A], ["a.png"], [0.7], [0.0], [1.0])
    assert max_diff(first_only, expected) > 8  # the second ControlNet matters


def test_a_controlnet_for_another_model_family_is_one_message_before_any_step(tmp_path, capsys, control_models,
                                                                              control_images, sd2_models):
    import json
    import shutil

    from nodegraph.cli import main

    folders, models = sd2_models
    shutil.copytree(control_models[1] / "controlnet", models / "controlnet", dirs_exist_ok=True)
    shutil.copy(control_images / "a.png", tmp_path / "a.png")
    doc = workflow((CN_A, "a.png", 1.0, 0.0, 1.0))
    doc["4"]["inputs"]["ckpt_name"] = "tiny-sd2-v.safetensors"  # an SD 1.x ControlNet on an SD 2.x model
    (tmp_path / "w.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    code = main(["run", str(tmp_path / "w.json"), "--models", str(models), "--out", str(out), "-q",
                 "--set", f"config={folders['v']}"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and not list(out.glob("*.png"))
    assert "`controlnet` was made for another model family" in err, err


def test_older_controlnet_apply_on_the_positive_acts_on_the_negative_too(tmp_path, control_models, control_images):
    # ComfyUI's deprecated ControlNetApply marks the prompt `control_apply_to_uncond`: a negative prompt without a
    # ControlNet of its own runs with the positive's, over every step — diffusers' pipeline at scale 0.8
    doc = workflow((CN_A, "a.png", 0.8, 0.0, 1.0))
    apply = doc.pop("22")
    doc["22"] = {"class_type": "ControlNetApply", "inputs": {
        "conditioning": ["6", 0], "control_net": apply["inputs"]["control_net"], "image": apply["inputs"]["image"],
        "strength": 0.8}}
    doc["3"]["inputs"]["negative"] = ["7", 0]
    folder, models = control_models
    import shutil

    shutil.copy(control_images / "a.png", tmp_path / "a.png")
    image = run_cli(tmp_path, doc, models, folder)[0]
    expected = theirs(control_models, control_images, [CN_A], ["a.png"], [0.8], [0.0], [1.0])
    assert max_diff(image, expected) <= 1


def test_sdxl_controlnet_matches_diffusers_sdxl_controlnet_pipeline(tmp_path, sdxl_control_models, control_images):
    # SDXL: the ControlNet also reads the pooled text and the size ids ComfyUI takes from the latent (8h, 8w)
    import shutil

    from diffusers import (ControlNetModel, EulerDiscreteScheduler, StableDiffusionXLControlNetPipeline,
                           StableDiffusionXLPipeline)

    folder, models = sdxl_control_models
    shutil.copy(control_images / "a.png", tmp_path / "a.png")
    doc = workflow(("tiny-sdxl-cn/diffusion_pytorch_model.safetensors", "a.png", 0.8, 0.0, 1.0))
    doc["4"]["inputs"]["ckpt_name"] = "tiny-sdxl-vae8.safetensors"
    image = run_cli(tmp_path, doc, models, folder)[0]

    components = StableDiffusionXLPipeline.from_pretrained(folder).components
    components["scheduler"] = EulerDiscreteScheduler.from_config(components["scheduler"].config,
                                                                 timestep_spacing="linspace")
    pipe = StableDiffusionXLControlNetPipeline(
        **components, controlnet=ControlNetModel.from_pretrained(models / "controlnet" / "tiny-sdxl-cn"))
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler.set_timesteps(STEPS)
    sigma_max = float(pipe.scheduler.sigmas[0])
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(SEED))

    def theirs(scale):
        out = pipe(PROMPT, negative_prompt=NEGATIVE, image=comfy_hint(control_images / "a.png"), height=64,
                   width=64, num_inference_steps=STEPS, guidance_scale=CFG, controlnet_conditioning_scale=scale,
                   latents=noise * (1 + sigma_max ** 2) ** 0.5 / float(pipe.scheduler.init_noise_sigma),
                   output_type="np")
        return (out.images[0] * 255).round().astype(np.uint8)

    expected = theirs(0.8)
    assert max_diff(image, expected) <= 1
    assert max_diff(expected, theirs(0.0)) > 8
