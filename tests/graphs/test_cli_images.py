"""The SD graph from the command line: PNG metadata, re-running from a PNG, one UNet call per step, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
from tiny_pipelines import REPO

SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
NODEGRAPH = [sys.executable, "-m", "nodegraph.cli"]


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*NODEGRAPH, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_png_carries_parameters_and_rerunning_it_gives_the_same_image(tiny_sd, tmp_path):
    first = cli("run", SD_GRAPH, "--set", f"model={tiny_sd}", "--set", "prompt=a red barn", "--set", "seed=7",
                "--set", "steps=4", "--set", "scheduler=euler_a", "--set", "negative_prompt=fog", "--out", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    png = tmp_path / "a" / "image.png"
    with PIL.Image.open(png) as img:
        text, pixels = dict(img.text), np.asarray(img)
    params = text["parameters"].splitlines()
    assert params[0] == "a red barn" and params[1] == "Negative prompt: fog"
    assert "Steps: 4, Sampler: Euler a, CFG scale: 7.5, Seed: 7, Size: 16x16" in params[2]
    recipe = json.loads(text["nodegraph"])
    assert recipe["inputs"]["seed"] == 7 and "sd_denoise_step.yaml" in recipe["graph"]["files"]

    # Re-run from the PNG alone, from another folder: the graph (and its include) come from the metadata.
    again = cli("run", png, "--out", tmp_path / "b", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    with PIL.Image.open(tmp_path / "b" / "image.png") as img:
        assert np.array_equal(np.asarray(img), pixels)
    # --set still overrides what the PNG recorded.
    other = cli("run", png, "--set", "seed=8", "--out", tmp_path / "c")
    with PIL.Image.open(tmp_path / "c" / "image.png") as img:
        assert not np.array_equal(np.asarray(img), pixels)


def test_png_without_metadata_is_a_clear_error(tmp_path):
    PIL.Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    result = cli("run", tmp_path / "plain.png")
    assert result.returncode == 2 and "no nodegraph metadata" in result.stderr
    assert "Traceback" not in result.stderr


def test_unet_runs_once_per_denoising_step(tiny_sd, monkeypatch):
    from nodegraph import run_graph
    from nodegraph.models.unet_2d_condition import UNet2DConditionModel

    calls = []
    forward = UNet2DConditionModel.forward

    def counting(self, sample, *args, **kwargs):
        calls.append(sample.shape[0])
        return forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", counting)
    run_graph(SD_GRAPH, inputs=dict(model=str(tiny_sd), steps=6, scheduler="euler", batch_size=2), device="cpu")
    assert calls == [4] * 6  # one call per step, conditional and unconditional batched together
    calls.clear()
    run_graph(SD_GRAPH, inputs=dict(model=str(tiny_sd), steps=3, scheduler="euler", guidance_scale=1.0),
              device="cpu")
    assert calls == [1] * 3  # no guidance: no unconditional half


def test_second_run_in_the_same_process_does_not_reload_the_model(tiny_sd, monkeypatch):
    import nodegraph.models.loading as loading
    from nodegraph import run_graph

    settings = dict(model=str(tiny_sd), steps=2, scheduler="ddim", seed=123456)
    run_graph(SD_GRAPH, inputs=settings, device="cpu")
    loads = []
    real = loading.load_component
    monkeypatch.setattr(loading, "load_component", lambda *a, **k: loads.append(a) or real(*a, **k))
    run_graph(SD_GRAPH, inputs=settings, device="cpu")
    assert loads == []  # models, tokenizer and scheduler config all come from the component cache


def _truncated_copy(tiny_sd, tmp_path):
    broken = tmp_path / "broken-sd"
    shutil.copytree(tiny_sd, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    return broken


@pytest.mark.parametrize("case,sets,expected", [
    ("missing model folder", ["model={tmp}/no-such-model"], "model = "),
    ("corrupt weights", ["model={broken}"], "diffusion_pytorch_model.safetensors"),
    ("DDPM checkpoint in the SD graph", ["model={ddpm}"], "vae"),
    ("height not a multiple of 8", ["model={sd}", "height=20"], "inputs.height"),
    ("zero steps", ["model={sd}", "steps=0"], "inputs.steps"),
    ("unknown scheduler", ["model={sd}", "scheduler=eulerr"], "inputs.scheduler"),
    ("unknown input", ["model={sd}", "promt=a cat"], "promt"),
])
def test_bad_input_is_a_clear_message_without_traceback_or_output(tiny_sd, tiny_ddpm, tmp_path, case, sets, expected):
    broken = _truncated_copy(tiny_sd, tmp_path) if case == "corrupt weights" else None
    args = [a.format(tmp=tmp_path, sd=tiny_sd, ddpm=tiny_ddpm, broken=broken) for a in sets]
    result = cli("run", SD_GRAPH, *[x for a in args for x in ("--set", a)], "--out", tmp_path / "out")
    assert result.returncode in (1, 2), result.stderr
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_unreadable_init_image_is_a_clear_message(tiny_sd, tmp_path):
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    result = cli("run", REPO / "graphs" / "img2img.yaml", "--set", f"model={tiny_sd}", "--set", f"image={bad}",
                 "--out", tmp_path / "out")
    assert result.returncode == 1
    assert "cannot be read as an image" in result.stderr and "image = " in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
