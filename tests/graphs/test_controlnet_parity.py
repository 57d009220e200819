"""graphs/controlnet.yaml and graphs/multi_controlnet.yaml against StableDiffusionControlNetPipeline, and how
often each model runs per step."""

from __future__ import annotations

import functools

import PIL.Image
import pytest
import torch
from test_stable_diffusion_parity import assert_close_images
from tiny_controlnet import save_pattern
from tiny_pipelines import REPO, png_pixels, to_uint8

# PNDM makes 6 timesteps of 5 steps: [0.1, 0.9) covers steps 1…4, so both ends of the range are exercised
SETTINGS = dict(prompt="a cat", negative_prompt="blurry", seed=3, steps=5, guidance_scale=7.5)


@pytest.fixture(scope="module")
def control_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("control")
    return save_pattern(root / "a.png", 24, 16, 1), save_pattern(root / "b.png", 24, 16, 2)


@functools.cache
def diffusers_parts(sd, controlnets):
    """The pipeline's components and the ControlNets, loaded once for the module's several pipeline calls."""
    from diffusers import ControlNetModel, StableDiffusionPipeline

    components = StableDiffusionPipeline.from_pretrained(sd, safety_checker=None).components
    return components, [ControlNetModel.from_pretrained(c) for c in controlnets]


def diffusers_controlnet(sd, controlnets, images, scale, start, end, batch=1, guess_mode=False):
    from diffusers import StableDiffusionControlNetPipeline

    components, models = diffusers_parts(sd, tuple(controlnets))
    pipe = StableDiffusionControlNetPipeline(**components, controlnet=models[0] if len(models) == 1 else models)
    pipe.set_progress_bar_config(disable=True)
    pil = [PIL.Image.open(p) for p in images]
    out = pipe(SETTINGS["prompt"], negative_prompt=SETTINGS["negative_prompt"], image=pil[0] if len(pil) == 1 else pil,
               num_inference_steps=SETTINGS["steps"], guidance_scale=SETTINGS["guidance_scale"],
               controlnet_conditioning_scale=scale, control_guidance_start=start, control_guidance_end=end,
               num_images_per_prompt=batch, generator=torch.Generator("cpu").manual_seed(SETTINGS["seed"]),
               guess_mode=guess_mode, output_type="np")
    return to_uint8(out.images)


def run_graph_uint8(graph: str, **inputs) -> torch.Tensor:
    from nodegraph import run_graph

    return png_pixels(run_graph(REPO / "graphs" / graph, inputs=inputs, device="cpu")["image"])


def test_controlnet_graph_matches_diffusers_at_scale_0_8_from_0_1_to_0_9(tiny_sd, tiny_controlnets, control_images):
    ours = run_graph_uint8("controlnet.yaml", model=str(tiny_sd), controlnet=str(tiny_controlnets[0]),
                           image=str(control_images[0]), controlnet_scale=0.8, control_start=0.1, control_end=0.9,
                           batch_size=2, **SETTINGS)
    theirs = diffusers_controlnet(tiny_sd, tiny_controlnets[:1], control_images[:1], 0.8, 0.1, 0.9, batch=2)
    assert ours.shape == (2, 16, 24, 3)  # the control image's size, not square
    assert_close_images(ours, theirs)
    # the fixture is sensitive: the same run without the ControlNet's effect is far from it
    plain = diffusers_controlnet(tiny_sd, tiny_controlnets[:1], control_images[:1], 0.0, 0.1, 0.9, batch=2)
    assert (plain.int() - theirs.int()).abs().max() > 20


def test_guess_mode_matches_diffusers_guess_mode(tiny_sd, tiny_controlnets, control_images):
    ours = run_graph_uint8("controlnet.yaml", model=str(tiny_sd), controlnet=str(tiny_controlnets[0]),
                           image=str(control_images[0]), controlnet_scale=0.8, control_start=0.1, control_end=0.9,
                           guess_mode=True, batch_size=2, **SETTINGS)
    theirs = diffusers_controlnet(tiny_sd, tiny_controlnets[:1], control_images[:1], 0.8, 0.1, 0.9, batch=2,
                                  guess_mode=True)
    assert_close_images(ours, theirs)
    # guess mode changes the picture (residuals on one half only, weighted 0.1 … 1): the test is not vacuous
    normal = diffusers_controlnet(tiny_sd, tiny_controlnets[:1], control_images[:1], 0.8, 0.1, 0.9, batch=2)
    assert (normal.int() - theirs.int()).abs().max() > 20


def test_two_chained_controlnets_match_diffusers_multicontrolnet(tiny_sd, tiny_controlnets, control_images):
    ours = run_graph_uint8("multi_controlnet.yaml", model=str(tiny_sd), controlnet=str(tiny_controlnets[0]),
                           image=str(control_images[0]), controlnet_scale=0.7, control_start=0.0, control_end=0.6,
                           controlnet_2=str(tiny_controlnets[1]), image_2=str(control_images[1]),
                           controlnet_scale_2=1.2, control_start_2=0.3, control_end_2=1.0, **SETTINGS)
    theirs = diffusers_controlnet(tiny_sd, tiny_controlnets, control_images, [0.7, 1.2], [0.0, 0.3], [0.6, 1.0])
    assert_close_images(ours, theirs)
    first_only = diffusers_controlnet(tiny_sd, tiny_controlnets[:1], control_images[:1], 0.7, 0.0, 0.6)
    assert (first_only.int() - theirs.int()).abs().max() > 20  # the second ControlNet matters


def test_controlnet_runs_once_per_step_inside_its_range_and_never_outside(tiny_sd, tiny_controlnets, control_images,
                                                                          monkeypatch):
    from nodegraph.models.controlnet import ControlNetModel
    from nodegraph.models.unet_2d_condition import UNet2DConditionModel

    calls = []

    def counting(kind, forward):
        def wrapper(self, sample, timestep, *args, **kwargs):
            calls.append((kind, float(timestep)))
            return forward(self, sample, timestep, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(UNet2DConditionModel, "forward", counting("unet", UNet2DConditionModel.forward))
    monkeypatch.setattr(ControlNetModel, "forward", counting("controlnet", ControlNetModel.forward))
    run_graph_uint8("controlnet.yaml", model=str(tiny_sd), controlnet=str(tiny_controlnets[0]),
                    image=str(control_images[0]), scheduler="euler", controlnet_scale=0.8, control_start=0.1,
                    control_end=0.9, **{**SETTINGS, "steps": 10})
    unet_steps = [t for kind, t in calls if kind == "unet"]
    controlnet_steps = [t for kind, t in calls if kind == "controlnet"]
    assert len(unet_steps) == 10
    # 10 steps, [0.1, 0.9): steps 1…8 (i/10 ≥ 0.1 and (i+1)/10 ≤ 0.9), each once, before that step's UNet call
    assert controlnet_steps == unet_steps[1:9]
    order = [kind for kind, _ in calls]
    assert all(order[k + 1] == "unet" for k, kind in enumerate(order) if kind == "controlnet")
