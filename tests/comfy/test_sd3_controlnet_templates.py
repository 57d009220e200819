"""ComfyUI's SD3.5 ControlNet template sd3.5_large_blur (CheckpointLoaderSimple, ControlNetLoader of SAI's SD3.5
blur file, LoadImage, ControlNetApplyAdvanced with the checkpoint's VAE, ConditioningZeroOut negative, KSampler
euler/simple cfg 4) runs from the package's JSON on tiny random files and equals diffusers'
StableDiffusion3ControlNetPipeline given ComfyUI's semantics, where ComfyUI differs written out here:

- the ControlNet's input tokens are the main model's patch convolution plus ComfyUI's own sincos table
  (tests/sd3/test_sd3_controlnet.py `comfy_sincos_written_out`), not the transformer's stored table that the
  pipeline gives it (`controlnet.pos_embed` replaced);
- ComfyUI adds a residual after the MMDiT's last block too (a forward hook on diffusers' last block);
- the hint is the posterior's mode, not a sample (the pipeline's VAE encode returns the mode); blur's preprocess
  is the identity, and the image is already the latent × the VAE's downscale, so ComfyUI's resize is the identity;
- the negative is ConditioningZeroOut's zeros (context and pooled), given to the pipeline as embeddings;
- "simple" on SD3's 1000-entry flow table at 4 steps is u = 1, 0.75, 0.5, 0.25 before the shift.
"""

from __future__ import annotations

import copy
import functools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.comfy.test_sd3_templates import PLAIN, PROMPT, TEMPLATES, sd3_models  # noqa: F401 (fixture)
from tests.sd3.test_sd3_controlnet import comfy_sincos_written_out
from tests.sd3.sd3_files import controlnet_to_sai as to_sai
from tests.sd3.tiny_sd3 import perturb

BLUR = TEMPLATES / "sd3.5_large_blur.json"
CN_FILE, IMAGE_FILE = "sd3.5_large_controlnet_blur.safetensors", "sd3.5_large_blur_input_image.png"
CN_LAYERS, DIM, STEPS = 2, 32, 4  # the tiny transformer: 4 blocks of 2 heads × 16


@pytest.fixture(scope="module")
def blur(sd3_models, tmp_path_factory):  # noqa: F811
    """(diffusers' ControlNet, input folder with the control image, the image as floats (32, 32, 3) in [0, 1]):
    the ControlNet saved in SAI's layout as the template's blur file in models/controlnet/."""
    from diffusers import SD3ControlNetModel
    from safetensors.torch import save_file

    torch.manual_seed(0)
    theirs = perturb(SD3ControlNetModel(
        patch_size=2, in_channels=16, num_layers=CN_LAYERS, attention_head_dim=DIM, num_attention_heads=1,
        joint_attention_dim=None, caption_projection_dim=DIM, pooled_projection_dim=44, out_channels=16,
        pos_embed_max_size=None, pos_embed_type=None, use_pos_embed=False,
        force_zeros_for_pooled_projection=False), 52, scale=0.3).eval()
    (sd3_models[1] / "controlnet").mkdir(exist_ok=True)
    save_file(to_sai(theirs.state_dict(), 0.0), sd3_models[1] / "controlnet" / CN_FILE)
    folder = tmp_path_factory.mktemp("blur-input")
    pixels = np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / IMAGE_FILE)
    return theirs, folder, pixels.astype(np.float32) / 255


def run_blur(sd3_models, blur, out, *sets: str) -> np.ndarray:  # noqa: F811
    from nodegraph.cli import main

    args = [a for s in (f"config={sd3_models[0]}", "33.width=64", "33.height=64", f"3.steps={STEPS}", "3.seed=5",
                        f"6.text={PROMPT}", f"4.ckpt_name={PLAIN}", *sets) for a in ("--set", s)]
    assert main(["run", str(BLUR), "--models", str(sd3_models[1]), "--input", str(blur[1]), "--out", str(out),
                 "-q", *args]) == 0
    (png,) = sorted(out.rglob("*.png"))
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


class ComfyInput(torch.nn.Module):
    """ComfyUI's ControlNet input: the transformer's patch convolution plus ComfyUI's sincos table."""

    def __init__(self, proj):
        super().__init__()
        self.proj = proj

    def forward(self, x):  # (B, C, H, W) → (B, h·w, D)
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        return tokens + comfy_sincos_written_out(tokens.shape[-1], (x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2)


@functools.lru_cache(maxsize=1)
def folder_parts(folder: str) -> dict:
    """The tiny folder's pipeline components, read once (a pipeline copies the parts it patches)."""
    from diffusers import StableDiffusion3Pipeline

    return StableDiffusion3Pipeline.from_pretrained(folder).components


def pipeline_blur(folder, controlnet, image: np.ndarray, prompt: str = PROMPT, cfg: float = 4.0,
                  scale: float = 1.0, sigmas: tuple = (1.0, 0.75, 0.5, 0.25)) -> np.ndarray:
    """The pipeline's 32×32 image with `image` (H, W, 3) in [0, 1] as the (already preprocessed) control image;
    `sigmas` before the shift (default: "simple" at 4 steps)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3ControlNetPipeline

    parts = folder_parts(str(folder))
    pipe = StableDiffusion3ControlNetPipeline(**{**parts, "transformer": copy.deepcopy(parts["transformer"]),
                                                 "vae": copy.deepcopy(parts["vae"])},
                                              controlnet=copy.deepcopy(controlnet))
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, shift=3.0)
    pipe.controlnet.pos_embed = ComfyInput(pipe.transformer.pos_embed.proj)
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x: SimpleNamespace(latent_dist=SimpleNamespace(
        sample=lambda generator=None: encode(x).latent_dist.mode()))
    seen = {}
    forward = pipe.transformer.forward

    def keep(*args, block_controlnet_hidden_states=None, **kwargs):
        seen["residuals"] = block_controlnet_hidden_states
        return forward(*args, block_controlnet_hidden_states=block_controlnet_hidden_states, **kwargs)

    def last(module, args, output):  # ComfyUI's residual after the last block
        blocks, residuals = len(pipe.transformer.transformer_blocks), seen["residuals"]
        return output[0], output[1] + residuals[(blocks - 1) // math.ceil(blocks / len(residuals))]

    pipe.transformer.forward = keep
    pipe.transformer.transformer_blocks[-1].register_forward_hook(last)
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(prompt, prompt, prompt, do_classifier_free_guidance=False,
                                                  max_sequence_length=77)
    control = torch.from_numpy(image).permute(2, 0, 1)[None] * 2 - 1  # (1, 3, 32, 32) in [-1, 1]
    out = pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, negative_prompt_embeds=torch.zeros_like(embeds),
               negative_pooled_prompt_embeds=torch.zeros_like(pooled), control_image=control,
               controlnet_conditioning_scale=scale, height=32, width=32, sigmas=list(sigmas),
               guidance_scale=cfg, generator=torch.Generator("cpu").manual_seed(5), output_type="np")
    return np.round(out.images[0] * 255).astype(int)


def test_sd35_blur_template_equals_the_controlnet_pipeline_with_comfyuis_rules(sd3_models, blur, tmp_path):  # noqa
    got = run_blur(sd3_models, blur, tmp_path / "one")
    want = pipeline_blur(sd3_models[0], blur[0], blur[2])
    assert got.shape == want.shape == (32, 32, 3)
    assert np.abs(got - want).max() <= 1
    assert np.abs(run_blur(sd3_models, blur, tmp_path / "zero", "58.strength=0") - got).max() > 5  # it steers


def test_a_controlnet_file_not_in_sais_sd35_layout_is_refused_on_sd3(sd3_models, blur, tmp_path):  # noqa: F811
    """An SD ControlNet file (only its header is read) under the template's blur name: refused when translating."""
    from safetensors.torch import save_file

    from nodegraph.comfy.errors import ComfyError
    from nodegraph.comfy.models import ModelPaths
    from nodegraph.comfy.reader import read_workflow
    from nodegraph.comfy.translate import translate

    folder = tmp_path / "models" / "controlnet"
    folder.mkdir(parents=True)
    save_file({"control_model.input_hint_block.0.weight": torch.zeros(16, 3, 3, 3)}, folder / CN_FILE)
    with pytest.raises(ComfyError, match=r"node 3 \(KSampler\): ControlNets of flow-matching models are covered for "
                                         r"SD3.5 with SAI's SD3.5 ControlNet files"):
        translate(read_workflow(BLUR), ModelPaths([tmp_path / "models", sd3_models[1]], inputs=[blur[1]]))


def test_sd35_canny_template_equals_the_pipeline_given_comfyuis_canny_preprocess(sd3_models, blur, tmp_path):  # noqa
    """sd3.5_large_canny_controlnet_example (ImageScale to 32² → Canny → apply at 0.66, cfg 4.5), a control_type 1
    file: the pipeline is given the template's own Canny preview as control image after ComfyUI's canny preprocess
    a·255·0.5 + 0.5 (written out here; diffusers has no such step)."""
    from safetensors.torch import save_file

    from nodegraph.cli import main

    canny = TEMPLATES / "sd3.5_large_canny_controlnet_example.json"
    save_file(to_sai(blur[0].state_dict(), 1.0), sd3_models[1] / "controlnet" /
              "sd3.5_large_controlnet_canny.safetensors")
    from nodegraph.comfy.reader import read_workflow

    name = read_workflow(canny).api["45"]["inputs"]["image"]  # LoadImage's file
    Image.fromarray((blur[2] * 255).round().astype(np.uint8)).save(blur[1] / name)
    args = [a for s in (f"config={sd3_models[0]}", "33.width=64", "33.height=64", f"3.steps={STEPS}", "3.seed=5",
                        "48.width=32", "48.height=32", f"6.text={PROMPT}", f"4.ckpt_name={PLAIN}")
            for a in ("--set", s)]
    assert main(["run", str(canny), "--models", str(sd3_models[1]), "--input", str(blur[1]), "--out",
                 str(tmp_path), "-q", *args]) == 0
    images = {p.name: np.asarray(Image.open(p).convert("RGB")).astype(int) for p in tmp_path.rglob("*.png")}
    (got,) = [v for k, v in images.items() if k.startswith("sd3.5_canny_controlnet")]
    (edges,) = [v for k, v in images.items() if not k.startswith("sd3.5_canny_controlnet")]
    want = pipeline_blur(sd3_models[0], blur[0], (edges / 255 * 255 * 0.5 + 0.5).astype(np.float32), cfg=4.5,
                         scale=0.66)
    assert np.abs(got - want).max() <= 1
    assert np.abs(pipeline_blur(sd3_models[0], blur[0], (edges / 255).astype(np.float32), cfg=4.5, scale=0.66)
                  - want).max() > 5  # the preprocess matters


def comfy_normal(steps: int, shift: float = 3.0) -> list[float]:
    """ComfyUI's "normal" on SD3's discrete flow (comfy/samplers.py `normal_scheduler`), before the shift the
    pipeline's scheduler applies: timesteps linspace(t(σ_max), t(σ_min), steps) / 1000 with t(σ) = 1000·σ, so the
    last u is σ_min = σ(t = 1) of the 1000-entry table; σ there is not 0, so a 0 is appended (the pipeline does)."""
    u_min = shift * 0.001 / (1 + (shift - 1) * 0.001)
    return np.linspace(1.0, u_min, steps).tolist()


def test_sd35_depth_template_equals_the_pipeline_given_comfyuis_depth_preprocess(sd3_models, blur, tmp_path):  # noqa
    """sd3.5_large_depth as comfyui-workflow-templates 0.1.95 ships it (LoadImage example.png straight into
    ControlNetApplyAdvanced at 0.7, KSampler euler/normal cfg 8), a control_type 2 file: the pipeline is given
    ComfyUI's depth preprocess 1 − a (written out here; diffusers has no such step) as control image. The same
    pipeline given the image itself differs, so the depth hint moves the image and its preprocess is checked."""
    from safetensors.torch import save_file

    from nodegraph.cli import main
    from tests.comfy.templates import template

    depth = template("sd3.5_large_depth")
    save_file(to_sai(blur[0].state_dict(), 2.0), sd3_models[1] / "controlnet" /
              "sd3.5_large_controlnet_depth.safetensors")
    folder = tmp_path / "input"
    folder.mkdir()
    Image.fromarray((blur[2] * 255).round().astype(np.uint8)).save(folder / "example.png")
    args = [a for s in (f"config={sd3_models[0]}", "33.width=64", "33.height=64", f"56.steps={STEPS}", "56.seed=5",
                        f"57.text={PROMPT}", f"4.ckpt_name={PLAIN}") for a in ("--set", s)]
    assert main(["run", str(depth), "--models", str(sd3_models[1]), "--input", str(folder), "--out",
                 str(tmp_path / "out"), "-q", *args]) == 0
    (png,) = sorted((tmp_path / "out").rglob("*.png"))
    got = np.asarray(Image.open(png).convert("RGB")).astype(int)
    want = pipeline_blur(sd3_models[0], blur[0], 1 - blur[2], cfg=8.0, scale=0.7, sigmas=comfy_normal(STEPS))
    assert got.shape == want.shape == (32, 32, 3)
    assert np.abs(got - want).max() <= 1
    assert np.abs(pipeline_blur(sd3_models[0], blur[0], blur[2], cfg=8.0, scale=0.7, sigmas=comfy_normal(STEPS))
                  - want).max() > 5  # the hint steers, and 1 − a is not a
