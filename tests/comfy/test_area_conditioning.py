"""Area conditioning (ConditioningSetArea + ConditioningCombine) against ComfyUI's arithmetic written out here from
comfy/samplers.py (`get_area_and_mult`: crop, strength, feathering 1/r … r/r over r = min(8, side // 4) cells
at inner edges; `calc_cond_batch`: Σ weight·x₀ / (Σ weight + 1e-37); then CFG), on a toy ε-model; then the
`area_composition` template (pinned package JSON) runs end to end with its sizes scaled down."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from templates import models_folder, run_template, sets, template


class ToyUNet(torch.nn.Module):
    """ε(x, t, context) = 0.5·x + mean(context) + t/1000 (per sample): enough to tell entries and areas apart."""
    config = SimpleNamespace()

    def forward(self, x, t, encoder_hidden_states):
        return 0.5 * x + encoder_hidden_states.mean(dim=(1, 2))[:, None, None, None] + float(t) / 1000


def comfy_x0(x, sigma, context, t):
    eps = 0.5 * (x / math.sqrt(sigma ** 2 + 1)) + context.mean() + t / 1000
    return x - sigma * eps


def comfy_side(x, sigma, entries, t, fuzz=8):
    """calc_cond_batch for one side, as ComfyUI writes it."""
    out, counts = torch.zeros_like(x), torch.ones_like(x) * 1e-37
    H, W = x.shape[-2:]
    for context, area, strength in entries:
        if area is None:
            out += comfy_x0(x, sigma, context, t) * strength
            counts += strength
            continue
        h, w, y, x0 = area
        h, w = min(H - y, h), min(W - x0, w)
        crop = x[..., y:y + h, x0:x0 + w]
        mult = torch.ones_like(crop) * strength
        for dim, (size, offset, full) in enumerate(((h, y, H), (w, x0, W))):
            rr = min(fuzz, mult.shape[2 + dim] // 4)
            if offset != 0:
                for k in range(rr):
                    mult.narrow(dim + 2, k, 1).mul_((1.0 / rr) * (k + 1))
            if size + offset < full:
                for k in range(rr):
                    mult.narrow(dim + 2, size - 1 - k, 1).mul_((1.0 / rr) * (k + 1))
        out[..., y:y + h, x0:x0 + w] += comfy_x0(crop, sigma, context, t) * mult
        counts[..., y:y + h, x0:x0 + w] += mult
    return out / counts


def test_area_conditioning_follows_comfyuis_crop_feather_and_weighted_mean():
    from nodegraph.comfy.guidance import guided_denoise
    from nodegraph.comfy.schedules import sigma_table, timestep_of
    from nodegraph.nodes.comfy_conditioning import (ComfyConditioning, ComfyConditioningCombine,
                                                    ComfyConditioningSetArea)

    g = torch.Generator().manual_seed(0)
    base, left, right, neg = (torch.randn((1, 3, 8), generator=g) for _ in range(4))
    x = torch.randn((1, 4, 20, 24), generator=g) * 3
    sigma = 2.5
    t = timestep_of(sigma_table(), sigma)

    def cond(e):
        return ComfyConditioning().run(ComfyConditioning.Inputs(embeddings=e), None)["conditioning"]

    def area(c, **kw):
        inputs = ComfyConditioningSetArea.Inputs(conditioning=c, **kw)
        return ComfyConditioningSetArea().run(inputs, None)["conditioning"]

    def combine(a, b):
        return ComfyConditioningCombine().run(ComfyConditioningCombine.Inputs(conditioning_1=a, conditioning_2=b),
                                              None)["conditioning"]

    # pixels → latent cells ÷ 8: left (w 96, h 160 at 0, 0) = 12×20 cells; right (w 104 at x 96, y 8) = 13 cells
    # wide from column 12, clipped to the latent's 24 − 12 = 12, and 20 − 1 = 19 rows from row 1
    positive = combine(combine(cond(base), area(cond(left), width=96, height=160, strength=1.5)),
                       area(cond(right), width=104, height=160, x=96, y=8, strength=0.7))
    ours = guided_denoise(ToyUNet(), x, sigma, None, neg, 6.0, positive_list=positive)
    pos = comfy_side(x, sigma, [(base, None, 1.0), (left, (20, 12, 0, 0), 1.5), (right, (20, 13, 1, 12), 0.7)], t)
    expected = comfy_x0(x, sigma, neg, t) + (pos - comfy_x0(x, sigma, neg, t)) * 6.0
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    # sensitive: without the feathering (plain strength over each area) the result moves
    flat = comfy_side(x, sigma, [(base, None, 1.0), (left, (20, 12, 0, 0), 1.5), (right, (20, 13, 1, 12), 0.7)], t,
                      fuzz=0)
    assert (pos - flat).abs().max() > 1e-2


def test_area_composition_template_runs_end_to_end(tmp_path, models_dir, sd1_folder):
    import shutil

    from nodegraph.comfy.reader import read_workflow

    name = "area_composition"
    models = models_folder(tmp_path, {"checkpoints/DreamShaper_8_pruned.safetensors":
                                      models_dir / "checkpoints" / "tiny-sd1.safetensors"})
    (models / "vae").mkdir()
    shutil.copy(sd1_folder / "vae" / "diffusion_pytorch_model.safetensors",
                models / "vae" / "vae-ft-mse-840000-ema-pruned.safetensors")
    small = {}  # every size ÷ 8 (areas stay inside the latent), 2 steps each
    for node_id, entry in read_workflow(template(name)).api.items():
        for key in ("width", "height", "x", "y"):
            if isinstance(entry["inputs"].get(key), int):
                small[f"n{node_id}_{key}"] = entry["inputs"][key] // 64 * 8
        if entry["class_type"] == "KSampler":
            small[f"n{node_id}_steps"] = 2
    images = run_template(tmp_path, name, models, sd1_folder, *sets(**small))
    assert len(images) == 2 and min(i.std() for i in images) > 1


def test_conditioning_zero_out_is_a_prompt_of_zeros(tmp_path, models_dir, sd1_folder, default_run):
    """ConditioningZeroOut (comfy_extras/nodes_cond.py: zeros_like of the embeddings and the pooled output) as the
    negative prompt equals diffusers' pipeline given negative_prompt_embeds of zeros, sampled as ComfyUI samples."""
    import diffusers
    import numpy as np

    from workflows import CFG, PROMPT, SEED, STEPS, api, run_cli

    doc = api()
    doc["10"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["7", 0]}}
    doc["3"]["inputs"]["negative"] = ["10", 0]
    ours = run_cli(tmp_path, doc, models_dir, sd1_folder)[0]
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(sd1_folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace")
    pipe.scheduler.set_timesteps(STEPS)
    sigma = float(pipe.scheduler.sigmas[0])
    ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        embeds = pipe.text_encoder(ids)[0]
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(SEED))
    out = pipe(prompt_embeds=embeds, negative_prompt_embeds=torch.zeros_like(embeds), num_inference_steps=STEPS,
               guidance_scale=CFG, height=16, width=16, output_type="np",
               latents=noise * (1 + sigma ** 2) ** 0.5 / float(pipe.scheduler.init_noise_sigma))
    theirs = (out.images[0] * 255).round().astype(np.uint8)
    assert int(np.abs(ours.astype(int) - theirs.astype(int)).max()) <= 1
    assert int(np.abs(ours.astype(int) - default_run[0].astype(int)).max()) > 8  # not the "blurry" negative
