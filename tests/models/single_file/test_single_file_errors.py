"""Files that are not a whole SD checkpoint, or are damaged, are refused with a message saying what they are
and what to do; the CLI exits non-zero without a traceback or an output file."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodegraph.models.errors import CheckpointError
from nodegraph.models.loading import load_component


def write(path, tensors):
    save_file({k: torch.zeros(shape) for k, shape in tensors.items()}, path)
    return path


@pytest.mark.parametrize("keys, message", [
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 8),
      "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": (8, 4)},
     r"LoRA weights \(lora_unet_\* keys\); pass it as `lora`"),
    ({"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": (4, 8)}, r"LoRA weights \(lora_A/lora_B keys\)"),
    ({"encoder.down.0.block.0.conv1.weight": (8, 3, 3, 3), "decoder.conv_out.weight": (3, 8, 3, 3),
      "quant_conv.weight": (8, 8, 1, 1)}, r"VAE weights only; pass it as `vae`"),
    ({"control_model.input_hint_block.0.weight": (16, 3, 3, 3), "control_model.zero_convs.0.0.weight": (4, 4, 1, 1)},
     r"ControlNet weights \(control_model\.\* keys\), not a whole model; pass a full SD/SDXL checkpoint as `model`"),
    ({"clip_l": (1, 768), "clip_g": (1, 1280)}, r"a textual-inversion embedding; pass it as `embedding`"),
    ({"conv_in.weight": (32, 4, 3, 3), "down_blocks.0.resnets.0.conv1.weight": (32, 32, 3, 3)},
     r"a diffusers UNet's weights alone"),
    ({"foo.bar.weight": (2,), "foo.bar.bias": (2,), "baz.weight": (1,)},
     r"layout is unknown .*Top key prefixes found: foo\.bar \(2\), baz\.weight \(1\)"),
])
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(tmp_path, keys, message):
    path = write(tmp_path / "file.safetensors", keys)
    with pytest.raises(CheckpointError, match=message):
        load_component(path, "unet")


def test_a_truncated_file_is_refused(sd1_file, tmp_path):
    data = sd1_file.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors is truncated: tensor `.*` ends at byte"):
        load_component(cut, "unet")
    cut.write_bytes(data[:20])
    with pytest.raises(CheckpointError, match="truncated or is not a safetensors file"):
        load_component(cut, "vae")


def test_missing_and_leftover_keys_are_named(sd1_file, sd1_folder, tmp_path):
    state = load_file(sd1_file)
    del state["model.diffusion_model.out.2.bias"]
    state["model.diffusion_model.input_blocks.1.0.extra.weight"] = torch.zeros(2)
    save_file(state, tmp_path / "edited.safetensors")
    with pytest.raises(CheckpointError, match=r"1 missing parameter \(conv_out\.bias\); 1 unused key "
                                              r"\(model\.diffusion_model\.input_blocks\.1\.0\.extra\.weight"):
        load_component(tmp_path / "edited.safetensors", "unet", config=str(sd1_folder))


def test_a_pickle_needs_the_allow_switch_and_is_read_weights_only(sd1_file, sd1_folder, tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": load_file(sd1_file), "global_step": 10}, path)
    with pytest.raises(CheckpointError, match="is a pickle checkpoint, and loading a pickle can run code"):
        load_component(path, "unet", config=str(sd1_folder))
    from_pickle = load_component(path, "unet", config=str(sd1_folder), allow_pickle=True)
    from_safetensors = load_component(sd1_file, "unet", config=str(sd1_folder))
    for (name, a), b in zip(from_pickle.state_dict().items(), from_safetensors.state_dict().values()):
        assert torch.equal(a, b), name
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": subprocess.Popen}, hostile)
    with pytest.raises(CheckpointError, match="could not be read as a weights-only torch checkpoint"):
        load_component(hostile, "unet", allow_pickle=True)


def test_cli_refuses_a_lora_as_model_with_exit_status_and_no_output(tmp_path):
    from tests.graphs.tiny_pipelines import REPO

    lora = write(tmp_path / "style.safetensors", {"lora_unet_x.lora_down.weight": (4, 8),
                                                   "lora_unet_x.lora_up.weight": (8, 4)})
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "nodegraph.cli", "run", str(REPO / "graphs" / "stable_diffusion.yaml"),
                          "--set", f"model={lora}", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "LoRA weights (lora_unet_* keys); pass it as `lora`" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert not out.exists() or not any(out.iterdir())
