"""Session fixtures: tiny random checkpoints saved by diffusers and transformers themselves, built once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_checkpoints import DATA, build_reference, reference_configs


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """`saved(name) -> (reference model, folder it was saved to)`, each built once per session."""
    root, cache = tmp_path_factory.mktemp("saved"), {}

    def get(name: str):
        if name not in cache:
            model = build_reference(name)
            model.save_pretrained(root / name)
            cache[name] = (model, root / name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def sd_pipeline(saved, tmp_path_factory) -> Path:
    """A Stable-Diffusion-layout pipeline folder, as `save_pretrained` of a pipeline writes it."""
    root = tmp_path_factory.mktemp("pipeline") / "tiny-sd"
    for component in ("unet", "vae", "text_encoder"):
        shutil.copytree(saved("sd1" if component == "unet" else component)[1], root / component)
    shutil.copytree(DATA / "tiny_tokenizer", root / "tokenizer")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(reference_configs()["SD14_SCHEDULER"]))
    index = dict(reference_configs()["SD14_MODEL_INDEX"], safety_checker=[None, None], feature_extractor=[None, None])
    (root / "model_index.json").write_text(json.dumps(index))
    return root


@pytest.fixture(scope="session")
def ddpm_flat(saved, tmp_path_factory) -> Path:
    """An old google/ddpm-* repo: UNet config, weights and scheduler config side by side at the root."""
    root = tmp_path_factory.mktemp("flat") / "ddpm-tiny"
    shutil.copytree(saved("ddpm_cat")[1], root)
    configs = reference_configs()
    (root / "scheduler_config.json").write_text(json.dumps(configs["DDPM_CAT_256_SCHEDULER"]))
    (root / "model_index.json").write_text(json.dumps(configs["DDPM_CAT_256_MODEL_INDEX"]))
    return root
