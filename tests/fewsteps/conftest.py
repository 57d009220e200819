"""Tiny checkpoints of the few-step tests: the tiny SD pipeline of tests/graphs (shared per session), an
LCM-distilled variant of it (guidance embedding in the UNet), LCM-style LoRA files, and the tiny SDXL pair."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "graphs"))  # tiny_sdxl imports its neighbours

from tests.models.adapters.lora_files import lora_targets, session_tiny_sd, write_kohya  # noqa: E402


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return session_tiny_sd(tmp_path_factory)


@pytest.fixture(scope="session")
def lcm_lora(tiny_sd, tmp_path_factory) -> Path:
    """A UNet-only LoRA in kohya's layout, like latent-consistency/lcm-lora-sdv1-5 (no text-encoder layers)."""
    targets = lora_targets(tiny_sd)
    targets["text_encoder"] = {}
    return write_kohya(tmp_path_factory.mktemp("lcm-lora") / "lcm_lora.safetensors", targets, seed=31)


@pytest.fixture(scope="session")
def tiny_lcm(tiny_sd, tmp_path_factory) -> Path:
    """The tiny SD pipeline with an LCM-distilled UNet (`time_cond_proj_dim`: the guidance scale is an input)
    and an LCMScheduler config, saved by diffusers like SimianLuo/LCM_Dreamshaper_v7."""
    import torch
    from diffusers import LCMScheduler, UNet2DConditionModel

    from tests.models.tiny_checkpoints import perturbed

    folder = tmp_path_factory.mktemp("lcm") / "tiny-lcm"
    shutil.copytree(tiny_sd, folder)
    config = json.loads((tiny_sd / "unet" / "config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    torch.manual_seed(5)
    unet = UNet2DConditionModel(**dict(config, time_cond_proj_dim=16))
    shutil.rmtree(folder / "unet")
    perturbed(unet, 6, scale=0.05).save_pretrained(folder / "unet")
    scheduler = LCMScheduler.from_config(json.loads((tiny_sd / "scheduler" / "scheduler_config.json").read_text()))
    scheduler.save_pretrained(folder / "scheduler")
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "LCMScheduler"]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


# stabilityai/sdxl-turbo's scheduler_config.json (the keys that matter): Euler ancestral, trailing spacing.
TURBO_SCHEDULER = {"_class_name": "EulerAncestralDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                   "beta_start": 0.00085, "num_train_timesteps": 1000, "prediction_type": "epsilon", "steps_offset": 1,
                   "timestep_spacing": "trailing", "trained_betas": None}


@pytest.fixture(scope="session")
def tiny_sdxl_turbo(tmp_path_factory) -> Path:
    """The tiny SDXL base of tests/graphs with SDXL-Turbo's scheduler config."""
    from tests.graphs.tiny_sdxl import save_tiny_sdxl

    root = tmp_path_factory.mktemp("sdxl-turbo")
    base = save_tiny_sdxl(root / "base", root / "refiner")[0]
    (base / "scheduler" / "scheduler_config.json").write_text(json.dumps(TURBO_SCHEDULER))
    index = json.loads((base / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "EulerAncestralDiscreteScheduler"]
    (base / "model_index.json").write_text(json.dumps(index))
    return base


# The tiny Z-Image transformer of the step-cache tests (dim 64, 4 main layers), with weights moved off their
# initialisation and a timestep MLP that reads only the slow frequencies: a trained one does, and random weights
# on the fast ones make each step's modulation unrelated to the last, so no cache could reuse anything.
TINY_Z_IMAGE = dict(all_patch_size=[2], all_f_patch_size=[1], in_channels=16, dim=64, n_layers=4, n_refiner_layers=1,
                    n_heads=4, n_kv_heads=4, norm_eps=1e-5, qk_norm=True, cap_feat_dim=24, rope_theta=256.0,
                    t_scale=1000.0, axes_dims=[4, 6, 6], axes_lens=[160, 24, 24])


@pytest.fixture(scope="session")
def z_image_pair(tmp_path_factory):
    """(folder, our model, build) — `build()` loads a fresh diffusers ZImageTransformer2DModel (hooks change the
    model they are applied to, so each test takes its own copy); ours is loaded once by load_component."""
    import torch
    from diffusers import ZImageTransformer2DModel

    from nodegraph.models.loading import load_component

    torch.manual_seed(31)
    model = ZImageTransformer2DModel(**TINY_Z_IMAGE)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.t_embedder.mlp[0].weight[:, :64] = 0  # cosines of index < 64
        model.t_embedder.mlp[0].weight[:, 128:192] = 0  # sines
    root = tmp_path_factory.mktemp("zimage-caches")
    model.save_pretrained(root / "transformer")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "ZImagePipeline",
                                                       "transformer": ["diffusers", "ZImageTransformer2DModel"]}))
    build = lambda: ZImageTransformer2DModel.from_pretrained(root / "transformer").eval()  # noqa: E731
    return root, load_component(root, "transformer"), build


@pytest.fixture(scope="session")
def smooth_z_image(tmp_path_factory):
    """tests/flow's tiny Z-Image pipeline with the slow-frequency timestep MLP of `z_image_pair` (so calls can
    be skipped), saved by diffusers."""
    import torch
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flow"))
    from tiny_z_image import build_components

    from diffusers import ZImagePipeline

    parts = build_components()
    with torch.no_grad():
        parts["transformer"].t_embedder.mlp[0].weight[:, :64] = 0
        parts["transformer"].t_embedder.mlp[0].weight[:, 128:192] = 0
    folder = tmp_path_factory.mktemp("zimage-smooth") / "tiny-z-image"
    ZImagePipeline(**parts).save_pretrained(folder)
    return folder
