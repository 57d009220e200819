"""The `depth_t2i_adapter` template (pinned package JSON) runs: its ControlNetLoader file is a T2I-Adapter in
TencentARC's layout (what ComfyUI's `load_t2i_adapter` reads), applied by ControlNetApplyAdvanced (strength 1,
0 %–100 %) to both prompts. The image equals diffusers' StableDiffusionAdapterPipeline configured as ComfyUI
samples (the adapter run once on the hint resized to 8× the latent, features × strength added inside the down
blocks at every step, to both CFG halves); strength 0 and another hint image change it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from templates import models_folder, run_template, sets, template

STEPS = 3
SEED = 1008774331380475  # the template's KSampler seed
CHANNELS = [8, 16, 32, 32]  # the adapter's widths = the UNet's down-block widths (SD1.x: 320, 640, 1280, 1280)


def max_diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.fixture(scope="module")
def adapter_models(control_models, tmp_path_factory):
    """(diffusers folder, ComfyUI models/ folder, diffusers T2IAdapter): the tiny SD1 pipeline with an 8× VAE
    and a four-level UNet (an SD1.x adapter has four levels), as checkpoints/interiordesignsuperm_v2.safetensors,
    and a random full adapter as controlnet/controlnetT2IAdapter_t2iAdapterDepth.safetensors."""
    from diffusers import StableDiffusionPipeline, T2IAdapter, UNet2DConditionModel
    from safetensors.torch import save_file

    from tests.models.single_file.ldm_layout import write_sd_file
    from tests.models.t2i_files import tencentarc_layout
    from tests.models.tiny_checkpoints import perturbed

    root = tmp_path_factory.mktemp("comfy-t2i")
    pipe = StableDiffusionPipeline.from_pretrained(control_models[0], safety_checker=None)
    torch.manual_seed(0)
    pipe.unet = perturbed(UNet2DConditionModel(
        block_out_channels=CHANNELS, layers_per_block=2, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=32, attention_head_dim=2,
        norm_num_groups=8), 31)
    pipe.save_pretrained(root / "sd1-4level")
    models = root / "models"
    (models / "checkpoints").mkdir(parents=True)
    write_sd_file(root / "sd1-4level", models / "checkpoints" / "interiordesignsuperm_v2.safetensors")
    adapter = perturbed(T2IAdapter(in_channels=3, channels=CHANNELS, num_res_blocks=2, downscale_factor=8,
                                   adapter_type="full_adapter"), 32, scale=0.3)
    (models / "controlnet").mkdir()
    save_file(tencentarc_layout(adapter.state_dict()),
              str(models / "controlnet" / "controlnetT2IAdapter_t2iAdapterDepth.safetensors"))
    return root / "sd1-4level", models, adapter


def ours(tmp_path, adapter_models, pixels, name: str, **values) -> np.ndarray:
    folder, models, _ = adapter_models
    (tmp_path / name / "input").mkdir(parents=True)
    Image.fromarray(pixels).save(tmp_path / name / "input" / "depth-t2i-adapter_input.png")
    # the template's sampler is euler_ancestral; euler (ComfyUI's "normal" schedule = diffusers' Euler, linspace)
    # keeps the comparison free of ancestral noise
    (image,) = run_template(tmp_path / name, "depth_t2i_adapter", models, folder, "--input",
                            str(tmp_path / name / "input"),
                            *sets(n5_width=64, n5_height=64, n3_steps=STEPS, n3_sampler_name="euler", **values))
    return image


def theirs(adapter_models, pixels) -> np.ndarray:
    from diffusers import EulerDiscreteScheduler, StableDiffusionAdapterPipeline, StableDiffusionPipeline

    from nodegraph.comfy.reader import read_workflow

    folder, _, adapter = adapter_models
    parts = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None).components
    parts["scheduler"] = EulerDiscreteScheduler.from_config(parts["scheduler"].config, timestep_spacing="linspace")
    del parts["image_encoder"]
    pipe = StableDiffusionAdapterPipeline(**parts, adapter=adapter)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler.set_timesteps(STEPS)
    sigma_max = float(pipe.scheduler.sigmas[0])
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(SEED))
    api = read_workflow(template("depth_t2i_adapter")).api
    hint = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255  # 64² = 8× the latent: used as it is
    out = pipe(api["24"]["inputs"]["text"], negative_prompt=api["7"]["inputs"]["text"], image=hint,
               num_inference_steps=STEPS, guidance_scale=7.0, height=64, width=64,
               latents=noise * (1 + sigma_max ** 2) ** 0.5 / float(pipe.scheduler.init_noise_sigma),
               adapter_conditioning_scale=1.0, output_type="np")
    return (out.images[0] * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def hinted(adapter_models, tmp_path_factory):
    """(a random hint, the template's image with it and the .safetensors adapter), shared by the tests below."""
    hint = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return hint, ours(tmp_path_factory.mktemp("t2i-image"), adapter_models, hint, "a")


def test_depth_t2i_adapter_template_equals_diffusers_adapter_pipeline_and_is_sensitive(tmp_path, adapter_models,
                                                                                        hinted):
    hint, image = hinted
    other = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert max_diff(image, theirs(adapter_models, hint)) <= 1
    assert max_diff(image, ours(tmp_path, adapter_models, hint, "zero", n45_strength=0)) > 5
    assert max_diff(image, ours(tmp_path, adapter_models, other, "other")) > 5


def test_a_pth_t2i_adapter_runs_with_allow_pickle_and_is_refused_before_anything_loads_without(
        tmp_path, adapter_models, hinted, capsys, monkeypatch):
    """The same adapter saved with torch.save as `.pth` (TencentARC's own format) under node 31's name: without
    `--set allow_pickle=true` the run stops while translating (no loader ran) naming the node, the file and the
    fix; with it, the pickle is read with weights_only, recognised as a T2I-Adapter and gives the .safetensors
    file's image."""
    from nodegraph.cli import main
    from nodegraph.nodes import loaders
    from tests.models.t2i_files import tencentarc_layout

    folder, models, adapter = adapter_models
    torch.save(tencentarc_layout(adapter.state_dict()), models / "controlnet" / "t2i_depth.pth")
    loads = []
    monkeypatch.setattr(loaders, "get_or_load_model", lambda *a, **k: loads.append(a) or pytest.fail("loaded"))
    (tmp_path / "input").mkdir()
    Image.fromarray(hinted[0]).save(tmp_path / "input" / "depth-t2i-adapter_input.png")
    code = main(["run", str(template("depth_t2i_adapter")), "--models", str(models), "--input", str(tmp_path / "input"),
                 "--out", str(tmp_path / "refused"), "-q", "--set", f"config={folder}",
                 *sets(n31_control_net_name="t2i_depth.pth")])
    err = capsys.readouterr().err
    assert code == 2 and loads == [] and not (tmp_path / "refused").exists()
    assert "node 31" in err and "t2i_depth.pth is a pickle" in err and "--set allow_pickle=true" in err
    monkeypatch.undo()
    image = ours(tmp_path, adapter_models, hinted[0], "pth", n31_control_net_name="t2i_depth.pth", allow_pickle=True)
    assert max_diff(image, hinted[1]) == 0


def test_a_one_channel_adapter_reads_the_hints_channel_mean_once_for_every_step():
    """ComfyUI's T2IAdapter: `channels_in` 1 → torch.mean over the hint's channels; the features are computed once
    and reused at every σ (here: the adapter is called once for two steps), × strength."""
    from nodegraph.comfy.control import ComfyControl, residuals
    from nodegraph.models.t2i_adapter import T2IAdapter

    torch.manual_seed(0)
    adapter = T2IAdapter(in_channels=1, channels=4).eval()
    calls = []
    adapter.register_forward_hook(lambda *_: calls.append(1))
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    control = ComfyControl(adapter, image, 0.5, 0.0, 1.0)
    x = torch.zeros(2, 4, 2, 2)
    with torch.no_grad():
        first = residuals(control, x, None, None, 14.6, {}, groups=2)["adapter_residuals"]
        second = residuals(control, x, None, None, 1.0, {}, groups=2)["adapter_residuals"]
        expected = [0.5 * f.expand(2, -1, -1, -1) for f in adapter(image.mean(dim=1, keepdim=True))]
    assert len(calls) == 2  # once for both steps, once for `expected`
    for a, b, e in zip(first, second, expected):
        torch.testing.assert_close(a, e)
        torch.testing.assert_close(b, e)
