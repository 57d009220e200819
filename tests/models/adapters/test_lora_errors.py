"""LoRA files that do not fit: refused with how many layers failed and a few of their names, never a silent
no-op; from the command line a clear message, no traceback, no output file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from nodegraph.models.adapters.lora import match_layers, read_lora
from nodegraph.models.errors import CheckpointError
from nodegraph.models.loading import load_component
from tests.graphs.tiny_pipelines import REPO

SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"


@pytest.fixture(scope="module")
def unet(tiny_sd):
    return load_component(str(tiny_sd), "unet", dtype=torch.float32, device="cpu")


def test_an_sdxl_lora_on_sd1_names_how_many_layers_match_nothing(tmp_path, unet):
    # kohya's SDXL names follow sgm's UNet (input_blocks_4_1_…), which SD 1.x models do not have
    names = [f"lora_unet_input_blocks_{b}_1_transformer_blocks_0_attn{a}_to_{p}" for b in (4, 5) for a in (1, 2)
             for p in "qkv"]
    tensors = {}
    for n in names:
        tensors.update({f"{n}.lora_down.weight": torch.zeros(4, 640), f"{n}.lora_up.weight": torch.zeros(640, 4),
                        f"{n}.alpha": torch.tensor(4.0)})
    path = tmp_path / "sdxl_style.safetensors"
    save_file(tensors, path)
    with pytest.raises(CheckpointError) as info:
        match_layers(read_lora(str(path)), "unet", unet, "this UNet")
    message = str(info.value)
    assert "12 of 12 unet LoRA layers match no layer of this UNet" in message
    assert "'input_blocks_4_1_transformer_blocks_0_attn1_to_q'" in message and "and 9 more" in message
    assert "another model family" in message


def test_a_lora_of_another_width_names_the_misfit_shapes(tmp_path, unet):
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    path = tmp_path / "sd2_width.safetensors"
    save_file({f"{name}.lora_down.weight": torch.zeros(4, 1024), f"{name}.lora_up.weight": torch.zeros(32, 4)}, path)
    with pytest.raises(CheckpointError, match=r"1 of 1 unet LoRA layers do not fit this UNet's shapes.*"
                                              r"A \(4, 1024\), B \(32, 4\) vs the layer's \(32, 32\)"):
        match_layers(read_lora(str(path)), "unet", unet, "this UNet")


def test_a_model_checkpoint_or_a_pickle_is_not_taken_for_a_lora(tiny_sd, tmp_path):
    with pytest.raises(CheckpointError, match=r"holds no LoRA layers .* looks like a model checkpoint"):
        read_lora(str(tiny_sd / "unet" / "diffusion_pytorch_model.safetensors"))
    (tmp_path / "x.pt").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match=r"\.safetensors only"):
        read_lora(str(tmp_path / "x.pt"))
    save_file({"lora_unet_conv_in.hada_w1_a": torch.zeros(2, 2)}, tmp_path / "loha.safetensors")
    with pytest.raises(CheckpointError, match=r"1 keys are not plain LoRA layers.*LoHa/LoKr"):
        read_lora(str(tmp_path / "loha.safetensors"))


def cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "nodegraph.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


@pytest.mark.parametrize("sets, code, says", [
    (["lora={ckpt}"], 1, "looks like a model checkpoint"),
    (["lora={lora}", "lora_scale=50"], 2, "inputs.lora_scale"),
    (["prompt_syntax=a1111", "prompt=a (cat:1000)"], 1, "column 7: weight 1000 is outside the sane range"),
])
def test_bad_lora_input_on_the_command_line_is_a_message_without_traceback_or_output(tiny_sd, loras, tmp_path,
                                                                                      sets, code, says):
    ckpt = tiny_sd / "unet" / "diffusion_pytorch_model.safetensors"
    sets = [s.format(ckpt=ckpt, lora=loras["kohya"]) for s in sets]
    result = cli("run", SD_GRAPH, "--set", f"model={tiny_sd}", *[x for s in sets for x in ("--set", s)],
                 "--set", "steps=2", "--out", tmp_path / "out")
    assert result.returncode == code, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
