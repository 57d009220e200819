"""The PNG of a run with a LoRA, an embedding, A1111 syntax and clip skip says so the way A1111 writes it, and
`nodegraph run image.png` makes the same image again."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch
from safetensors.torch import save_file
from test_lora_errors import SD_GRAPH, cli


def test_png_parameters_name_lora_embedding_clip_skip_and_rerun_reproduces(tiny_sd, loras, tmp_path):
    embedding = tmp_path / "spot-emb.safetensors"
    save_file({"emb_params": 0.5 * torch.randn(2, 32, generator=torch.Generator().manual_seed(3))}, embedding)
    first = cli("run", SD_GRAPH, "--set", f"model={tiny_sd}", "--set", "prompt=a (spot-emb:1.2) on (grass",
                "--set", "prompt_syntax=a1111", "--set", f"lora={loras['kohya']}", "--set", "lora_scale=0.7",
                "--set", f"embedding={embedding}", "--set", "clip_skip=1", "--set", "steps=3", "--set", "seed=4",
                "--out", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    assert "warning: cond: prompt 'a (spot-emb:1.2) on (grass': column 21: `(` is never closed" in first.stderr
    with PIL.Image.open(tmp_path / "a" / "image.png") as img:
        params, pixels = img.text["parameters"].splitlines(), np.asarray(img)
    assert params[0] == "a (spot-emb:1.2) on (grass <lora:kohya_style:0.7>"
    assert "Clip skip: 2" in params[1]
    assert 'Lora hashes: "kohya_style: ' in params[1] and 'TI hashes: "spot-emb: ' in params[1]

    again = cli("run", tmp_path / "a" / "image.png", "--out", tmp_path / "b", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    with PIL.Image.open(tmp_path / "b" / "image.png") as img:
        assert np.array_equal(np.asarray(img), pixels)
