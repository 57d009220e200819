"""`nodegraph inspect` and the model hashes in image metadata."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import PIL.Image

from tests.graphs.tiny_pipelines import REPO


def nodegraph_cli(*args, timeout=180):
    import os
    import tempfile

    env = dict(os.environ, NODEGRAPH_CACHE_DIR=tempfile.mkdtemp(prefix="nodegraph-hashes-"))  # not the user's cache
    return subprocess.run([sys.executable, "-m", "nodegraph.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_inspect_reports_family_components_and_hashes(sd1_file, sd1_folder):
    import diffusers

    run = nodegraph_cli("inspect", sd1_file, "--config", sd1_folder, "--json")
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    sha = hashlib.sha256(sd1_file.read_bytes()).hexdigest()
    assert (info["sha256"], info["short_hash"]) == (sha, sha[:10])
    assert info["family"] == "sd1" and info["prediction_type"] == "epsilon"
    assert info["scheduler"] == "PNDMScheduler"
    unet = diffusers.UNet2DConditionModel.from_pretrained(sd1_folder / "unet")
    assert info["components"]["unet"]["parameters"] == sum(p.numel() for p in unet.parameters())
    assert info["components"]["unet"]["dtype"] == "float32"
    assert info["components"]["unet"]["config"]["cross_attention_dim"] == 32
    assert set(info["components"]) == {"unet", "vae", "text_encoder"}
    # the fixture's extra keys, read by no model: CLIP's position ids and the LDM's alphas_cumprod table
    assert info["unused_keys"] == ["alphas_cumprod", "cond_stage_model.transformer.text_model.embeddings.position_ids"]
    from nodegraph.models.single_file.inspect import render

    text = render(info)
    assert f"short hash:      {sha[:10]}" in text and "Stable Diffusion 1.x (sd1)" in text


def test_inspect_of_a_lora_says_what_it_is_and_exits_non_zero(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 8)}, tmp_path / "lora.safetensors")
    run = nodegraph_cli("inspect", tmp_path / "lora.safetensors")
    assert run.returncode == 2
    assert "LoRA weights" in run.stderr and "Traceback" not in run.stderr


def test_png_from_a_single_file_records_the_short_and_full_hash(sd1_file, sd1_folder, tmp_path):
    out = tmp_path / "out"
    run = nodegraph_cli("run", REPO / "graphs" / "stable_diffusion.yaml", "--set", f"model={sd1_file}", "--set",
                        f"config={sd1_folder}", "--set", "steps=1", "--set", "height=16", "--set", "width=16",
                        "-q", "--out", out)
    assert run.returncode == 0, run.stderr
    sha = hashlib.sha256(sd1_file.read_bytes()).hexdigest()
    with PIL.Image.open(out / "image.png") as image:
        parameters, recipe = image.text["parameters"], json.loads(image.text["nodegraph"])
    assert f"Model hash: {sha[:10]}, Model: {sd1_file}" in parameters
    assert recipe["model_sha256"] == sha


def test_hashes_are_remembered_per_file_version(tmp_path, monkeypatch):
    from nodegraph.models.single_file import hashing

    monkeypatch.setenv("NODEGRAPH_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"first version")
    assert hashing.file_sha256(model) == hashlib.sha256(b"first version").hexdigest()
    assert list(json.loads((tmp_path / "cache" / "model-hashes.json").read_text()).values()) == \
        [hashlib.sha256(b"first version").hexdigest()]
    hashing._sha256.cache_clear()
    model.write_bytes(b"second version!")  # another size: hashed again, not taken from the cache
    assert hashing.file_sha256(model) == hashlib.sha256(b"second version!").hexdigest()
    # a cached entry is used as it is: the file is not read again
    hashing._sha256.cache_clear()
    stat = model.stat()
    key = f"{model.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    (tmp_path / "cache" / "model-hashes.json").write_text(json.dumps({key: "a" * 64}))
    assert hashing.file_sha256(model) == "a" * 64
