"""The SDXL Revision templates (`sdxl_revision_text_prompts`, `sdxl_revision_zero_positive`, pinned package JSON)
run with a tiny CLIP-vision file under models/clip_vision/ and the tiny SDXL base, and their images equal
diffusers' SDXL pipeline given the pooled vector ComfyUI computes — written out here from ComfyUI's source, since
diffusers has no SDXL Revision:

* comfy/clip_model.py `clip_preprocess`: short side to the tower's size (bicubic, antialias, rounded sides), centre
  crop, 8-bit levels, CLIP mean/std; the tower's image_embeds (transformers' CLIPVisionModelWithProjection on the
  file's weights, which is ComfyUI's CLIPVisionModelProjection);
* comfy/model_base.py `unclip_adm` with CLIPEmbeddingNoiseAugmentation (ldm/modules/encoders/noise_aug_modules.py,
  diffusionmodules/upscaling.py): q_sample at level round(999·noise_augmentation) with noise from
  torch.manual_seed(seed − 10), ×strength, several entries summed and augmented once more at level 0 with the
  generator's next draw; SDXL keeps [:, :1280].

Sampled with euler/normal (diffusers' Euler with linspace spacing, first noise ×√(1 + σmax²)), 64 px, 2 steps.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from templates import models_folder, sets, template
from workflows import run_cli

SEED, CFG = 133632471276133, 8.0  # the templates' KSampler
SMALL = sets(n5_width=64, n5_height=64, n3_steps=2, n3_sampler_name="euler", n3_scheduler="normal")


def max_diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def write_images(folder, seed: int):
    """mountains.png (landscape) and sunset.png (portrait): smooth random pictures of other sizes than the tower's."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for name, (h, w) in (("mountains.png", (60, 90)), ("sunset.png", (100, 70))):
        small = torch.rand((1, 3, h // 10, w // 10), generator=g)
        pixels = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear")[0].permute(1, 2, 0)
        Image.fromarray((pixels.numpy() * 255).round().astype(np.uint8)).save(folder / name)
    return folder


@pytest.fixture(scope="module")
def revision(tmp_path_factory, sdxl_models):
    """(diffusers folder, models/, the vision tower, input/ folder, another input/ folder with other pictures)."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder, base = sdxl_models
    root = tmp_path_factory.mktemp("revision")
    torch.manual_seed(7)
    tower = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=128, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2, patch_size=14,
        image_size=56, projection_dim=24, hidden_act="gelu")).eval()  # 24: the tiny SDXL's pooled width
    with torch.no_grad():
        for p in tower.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    (root / "vision").mkdir()
    save_file({k: v.contiguous() for k, v in tower.state_dict().items()}, root / "vision" / "g.safetensors")
    models = models_folder(root, {
        "checkpoints/sd_xl_base_1.0.safetensors": base / "checkpoints" / "tiny-sdxl.safetensors",
        "clip_vision/clip_vision_g.safetensors": root / "vision" / "g.safetensors"})
    return folder, models, tower, write_images(root / "input", 1), write_images(root / "other", 2)


def comfy_image_embeds(tower, path):
    """ComfyUI's CLIPVisionEncode (crop "center") of a LoadImage'd file, written out from its source."""
    from PIL import Image

    image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)[None]
    size = tower.config.image_size
    x = image.movedim(-1, 1)  # (1, 3, H, W)
    scale = size / min(x.shape[2], x.shape[3])
    x = torch.nn.functional.interpolate(x, size=(round(scale * x.shape[2]), round(scale * x.shape[3])),
                                        mode="bicubic", antialias=True)
    h, w = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
    x = torch.clip(255.0 * x[:, :, h:h + size, w:w + size], 0, 255).round() / 255.0
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    with torch.no_grad():
        return tower(pixel_values=(x - mean) / std).image_embeds  # (1, 24)


def comfy_unclip_pooled(embeds, strengths, seed=SEED):
    """comfy/model_base.py `unclip_adm` (noise_augmentation 0 → level 0) for SDXL, as ComfyUI seeds it."""
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = np.array([min(1 - alpha_bar((i + 1) / 1000) / alpha_bar(i / 1000), 0.999) for i in range(1000)])
    bar = np.cumprod(1.0 - betas)
    a, b = torch.tensor(np.sqrt(bar), dtype=torch.float32)[0], torch.tensor(np.sqrt(1 - bar), dtype=torch.float32)[0]
    outs = []
    for e, w in zip(embeds, strengths):
        noise = torch.randn(e.shape, generator=torch.manual_seed(seed - 10))  # the global generator, as ComfyUI
        outs.append((a * e + b * noise) * w)
    if len(outs) == 1:
        return outs[0][:, :1280]
    merged = a * torch.stack(outs).sum(0) + b * torch.randn_like(outs[0])  # the global generator's next draw
    return merged[:, :1280]


@functools.cache
def _pipeline(folder):
    import diffusers

    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace")
    return pipe


def diffusers_image(folder, positive: str, negative: str, pooled=None, zero_positive=False):
    """diffusers' SDXL pipeline sampling as ComfyUI does, with `pooled` in place of the positive prompt's."""
    pipe = _pipeline(folder)
    pos, _, pos_pooled, _ = pipe.encode_prompt(positive, do_classifier_free_guidance=False)
    neg, _, neg_pooled, _ = pipe.encode_prompt(negative, do_classifier_free_guidance=False)
    if zero_positive:  # ConditioningZeroOut
        pos, pos_pooled = torch.zeros_like(pos), torch.zeros_like(pos_pooled)
    pipe.scheduler.set_timesteps(2)
    sigma = float(pipe.scheduler.sigmas[0])
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(SEED))
    out = pipe(prompt_embeds=pos, pooled_prompt_embeds=pos_pooled if pooled is None else pooled,
               negative_prompt_embeds=neg, negative_pooled_prompt_embeds=neg_pooled, num_inference_steps=2,
               guidance_scale=CFG, height=32, width=32, original_size=(64, 64), target_size=(64, 64),
               latents=noise * (1 + sigma ** 2) ** 0.5 / float(pipe.scheduler.init_noise_sigma), output_type="np")
    return (out.images[0] * 255).round().astype(np.uint8)


def run(tmp_path, name, revision, images, *extra):
    folder, models, *_ = revision
    return run_cli(tmp_path, template(name), models, folder, *SMALL, "--input", str(images), *extra)[0]


def test_revision_text_prompts_equals_comfyuis_unclip_arithmetic(tmp_path, revision):
    folder, _, tower, images, _ = revision
    ours = run(tmp_path, "sdxl_revision_text_prompts", revision, images)
    # node 19 (mountains, strength 0.75) is applied first, then node 37 (sunset, 0.75)
    embeds = [comfy_image_embeds(tower, images / n) for n in ("mountains.png", "sunset.png")]
    pooled = comfy_unclip_pooled(embeds, [0.75, 0.75])
    theirs = diffusers_image(folder, "anime", "text, watermark", pooled=pooled)
    assert ours.shape == theirs.shape == (32, 32, 3)
    assert max_diff(ours, theirs) <= 1
    # sensitivity: the text's own pooled vector (no image) is another picture; so is strength 1 for the images
    assert max_diff(ours, diffusers_image(folder, "anime", "text, watermark")) > 5
    assert max_diff(ours, diffusers_image(folder, "anime", "text, watermark",
                                          pooled=comfy_unclip_pooled(embeds, [1.0, 1.0]))) > 5


def test_revision_strength_zero_adds_no_entry_and_keeps_the_text_pooled():
    """unCLIPConditioning returns the conditioning unchanged at strength 0 (nodes.py `apply_adm`), so the sampler
    keeps the text's pooled vector; another strength is an entry."""
    from nodegraph.nodes.clip_vision import ComfyUnCLIPConditioning, ComfyUnCLIPPooled

    embeds, text_pooled = torch.randn((1, 24)), torch.randn((1, 24))
    zero = ComfyUnCLIPConditioning().run(ComfyUnCLIPConditioning.Inputs(image_embeds=embeds, strength=0.0), None)
    assert zero["unclip"] == []
    pooled = ComfyUnCLIPPooled().run(ComfyUnCLIPPooled.Inputs(unclip=zero["unclip"], seed=SEED, pooled=text_pooled),
                                     None)["pooled"]
    assert pooled is text_pooled
    one = ComfyUnCLIPConditioning().run(ComfyUnCLIPConditioning.Inputs(image_embeds=embeds, strength=0.5), None)
    assert [e["strength"] for e in one["unclip"]] == [0.5]


def test_revision_zero_positive_follows_the_images(tmp_path, revision):
    folder, _, tower, images, other = revision
    ours = run(tmp_path, "sdxl_revision_zero_positive", revision, images)
    pooled = {}
    for name, where in (("ours", images), ("other", other)):
        embeds = [comfy_image_embeds(tower, where / n) for n in ("mountains.png", "sunset.png")]
        pooled[name] = comfy_unclip_pooled(embeds, [0.75, 0.75])
    assert max_diff(ours, diffusers_image(folder, "", "", pooled=pooled["ours"], zero_positive=True)) <= 1
    # another pair of pictures is another image
    assert max_diff(ours, diffusers_image(folder, "", "", pooled=pooled["other"], zero_positive=True)) > 5


def test_unclip_conditioning_into_an_area_is_refused_not_dropped(revision):
    from nodegraph.comfy.errors import ComfyError
    from nodegraph.comfy.models import ModelPaths
    from nodegraph.comfy.reader import read_workflow
    from nodegraph.comfy.translate import translate

    _, models, _, images, _ = revision
    workflow = read_workflow(template("sdxl_revision_text_prompts"))
    workflow.api["90"] = {"class_type": "ConditioningSetArea", "inputs": {
        "conditioning": ["37", 0], "width": 64, "height": 64, "x": 0, "y": 0, "strength": 1.0}}
    workflow.api["3"]["inputs"]["positive"] = ["90", 0]
    with pytest.raises(ComfyError, match=r"node 90 \(ConditioningSetArea\) input `conditioning`: unCLIP \(image\) "
                                         r"conditioning on area-conditioned prompts is not covered yet"):
        translate(workflow, ModelPaths([models], inputs=[images]))
