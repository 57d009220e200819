"""A separate VAE (file or folder) replaces the checkpoint's own; fp16 storage loads into float32; the EMA copy
is read only when asked for."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from ldm_layout import vae_to_ldm
from nodegraph.models.errors import CheckpointError
from nodegraph.models.loading import load_component
from test_single_file_sd1 import diffusers_image, nodegraph_image


@pytest.fixture(scope="module")
def other_vae(sd1_folder, tmp_path_factory):
    """(a diffusers VAE folder, the same VAE as a VAE-only file in the original key names), not the model's VAE."""
    from diffusers import AutoencoderKL

    from tests.models.tiny_checkpoints import perturbed

    root = tmp_path_factory.mktemp("vae")
    vae = perturbed(AutoencoderKL.from_pretrained(sd1_folder / "vae"), 31, 0.05)
    vae.save_pretrained(root / "fixed-vae")
    levels = len(vae.config.block_out_channels)
    save_file({k: v.contiguous() for k, v in vae_to_ldm(vae.state_dict(), levels, prefix="").items()},
              root / "fixed-vae.safetensors")
    return root / "fixed-vae", root / "fixed-vae.safetensors"


def test_vae_override_from_file_or_folder_matches_diffusers_with_that_vae(sd1_file, sd1_folder, other_vae,
                                                                          sd1_images):
    import diffusers

    folder, file = other_vae
    from_file = diffusers.AutoencoderKL.from_single_file(str(file), config=str(sd1_folder), subfolder="vae",
                                                         local_files_only=True)
    expected = diffusers.AutoencoderKL.from_pretrained(folder).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in from_file.state_dict().items()), "fixture"
    pipe = diffusers.StableDiffusionPipeline.from_single_file(
        str(sd1_file), config=str(sd1_folder), local_files_only=True, safety_checker=None, vae=from_file)
    theirs = diffusers_image(pipe)
    assert (theirs.int() - sd1_images[1].int()).abs().max().item() > 1, "the VAE swap must change the image"
    ours = nodegraph_image(model=str(sd1_file), config=str(sd1_folder), vae=str(file))
    assert (ours.int() - theirs.int()).abs().max().item() <= 1
    # a folder gives the same VAE as the file
    from nodegraph.models.single_file.vae_override import load_override

    from_folder = load_override(str(folder), str(sd1_file)).state_dict()
    from_file = load_override(str(file), str(sd1_file), config=str(sd1_folder)).state_dict()
    assert set(from_folder) == set(from_file) and all(torch.equal(v, from_file[k]) for k, v in from_folder.items())


def test_vae_files_load_with_original_prefixed_or_diffusers_names(sd1_file, sd1_folder, other_vae, tmp_path):
    from nodegraph.models.single_file.vae_override import load_override

    folder, file = other_vae
    expected = load_override(str(folder), str(sd1_file)).state_dict()
    state = load_file(file)
    save_file({"first_stage_model." + k: v for k, v in state.items()}, tmp_path / "prefixed.safetensors")
    save_file(load_file(folder / "diffusion_pytorch_model.safetensors"), tmp_path / "diffusers-names.safetensors")
    for variant in ("prefixed", "diffusers-names"):
        got = load_override(str(tmp_path / f"{variant}.safetensors"), str(sd1_file), config=str(sd1_folder))
        assert all(torch.equal(v, expected[k]) for k, v in got.state_dict().items()), variant
    with pytest.raises(CheckpointError, match="VAE weights only; pass it as `vae`"):
        load_component(tmp_path / "prefixed.safetensors", "unet")


def test_vae_file_takes_its_config_from_the_model_it_is_used_with(sd1_file, sd1_folder, other_vae):
    from nodegraph.models.single_file.vae_override import vae_config_for

    assert vae_config_for(str(sd1_folder), None)["block_out_channels"] == [16, 32]
    assert vae_config_for(str(sd1_file), str(sd1_folder))["block_out_channels"] == [16, 32]
    # a real-size SD file without `config`: the family's built-in VAE config (SD1: scaling 0.18215)
    assert vae_config_for(str(sd1_file), None)["scaling_factor"] == 0.18215


def test_fp16_storage_loads_into_float32_like_diffusers(sd1_file, sd1_folder, tmp_path):
    import diffusers

    half = tmp_path / "half.safetensors"
    save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(sd1_file).items()}, half)
    theirs = diffusers.UNet2DConditionModel.from_single_file(str(half), config=str(sd1_folder), subfolder="unet",
                                                             local_files_only=True, torch_dtype=torch.float32)
    ours = load_component(half, "unet", config=str(sd1_folder))
    expected = theirs.state_dict()
    for key, value in ours.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, expected[key]), key
    bf16 = load_component(half, "unet", config=str(sd1_folder), dtype="bf16")
    assert next(bf16.parameters()).dtype == torch.bfloat16


def test_ema_weights_are_ignored_unless_asked_for(sd1_file, sd1_folder, tmp_path):
    state = load_file(sd1_file)
    unet_keys = [k for k in state if k.startswith("model.diffusion_model.")]
    # the EMA copy as LDM training saves it: `model_ema.` + the key's path with its dots removed
    ema = {"model_ema." + "".join(k.split(".")[1:]): state[k] + 1 for k in unet_keys}
    save_file({**state, **ema, "model_ema.decay": torch.tensor(0.9999)}, tmp_path / "ema.safetensors")
    plain = load_component(tmp_path / "ema.safetensors", "unet", config=str(sd1_folder))
    reference = load_component(sd1_file, "unet", config=str(sd1_folder))
    assert torch.equal(plain.conv_in.weight, reference.conv_in.weight)
    averaged = load_component(tmp_path / "ema.safetensors", "unet", config=str(sd1_folder), ema=True)
    for (key, a), b in zip(averaged.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b + 1), key
    with pytest.raises(Exception, match="holds no EMA weights"):
        load_component(sd1_file, "unet", config=str(sd1_folder), ema=True)


def test_config_may_be_a_hub_repo_read_offline_from_the_cache(sd1_file, sd1_folder, tmp_path, monkeypatch):
    import shutil

    from huggingface_hub import constants

    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny-sd1"
    shutil.copytree(sd1_folder, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    from_hub = load_component(sd1_file, "unet", config="org/tiny-sd1").state_dict()
    from_folder = load_component(sd1_file, "unet", config=str(sd1_folder)).state_dict()
    assert all(torch.equal(v, from_folder[k]) for k, v in from_hub.items())
    assert load_component(sd1_file, "scheduler", config="org/tiny-sd1") == \
        load_component(sd1_folder, "scheduler")
    assert load_component(sd1_file, "tokenizer", config="org/tiny-sd1")("a cat").input_ids[-1] == 49407


def test_builtin_tokenizers_pad_as_each_family_does(sd1_file, sd2_file):
    # SD1's CLIP-L tokenizer pads with its end token; SD2's OpenCLIP (and SDXL's second) tokenizer with "!"
    sd1 = load_component(sd1_file, "tokenizer")
    sd2 = load_component(sd2_file, "tokenizer")
    assert sd1.pad_token == "<|endoftext|>" and sd2.pad_token == "!"
    assert sd1("a cat").input_ids == sd2("a cat").input_ids == [49406, 320, 2368, 49407]


def test_loaded_weights_are_copy_on_write_views_of_the_file(sd1_file, sd1_folder, tmp_path):
    import shutil

    copy = shutil.copy(sd1_file, tmp_path / "copy.safetensors")
    before = (tmp_path / "copy.safetensors").read_bytes()
    unet = load_component(copy, "unet", config=str(sd1_folder))
    with torch.no_grad():
        unet.conv_in.weight.fill_(7.0)
    assert (tmp_path / "copy.safetensors").read_bytes() == before
