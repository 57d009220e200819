"""`load_component` finds every component in every supported layout and source, with every key accounted for."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_checkpoints import reference_configs
from transformers import CLIPTokenizer

from nodegraph.models import checkpoint, sources
from nodegraph.models.autoencoder_kl import AutoencoderKL
from nodegraph.models.loading import CheckpointError, load_component
from nodegraph.models.unet_2d import UNet2DModel
from nodegraph.models.unet_2d_condition import UNet2DConditionModel

REPO_ROOT = Path(__file__).resolve().parents[2]


def same_weights(model: torch.nn.Module, reference: torch.nn.Module, dtype: torch.dtype = torch.float32) -> bool:
    ours, theirs = model.state_dict(), reference.state_dict()
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k].to(dtype)) for k in ours)


def test_pipeline_folder_loads_every_component(sd_pipeline, saved):
    unet = load_component(sd_pipeline, "unet")
    vae = load_component(sd_pipeline, "vae")
    text_encoder = load_component(sd_pipeline, "text_encoder")
    tokenizer = load_component(sd_pipeline, "tokenizer")
    assert isinstance(unet, UNet2DConditionModel) and same_weights(unet, saved("sd1")[0])
    assert isinstance(vae, AutoencoderKL) and same_weights(vae, saved("vae")[0])
    assert same_weights(text_encoder, saved("text_encoder")[0])
    assert tokenizer("a cat").input_ids == [54, 26, 53, 55] and tokenizer.model_max_length == 77
    assert not unet.training and not any(p.requires_grad for p in unet.parameters())


def test_scheduler_config_is_returned_as_written(sd_pipeline, ddpm_flat):
    configs = reference_configs()
    assert load_component(sd_pipeline, "scheduler") == configs["SD14_SCHEDULER"]  # no timestep_spacing added
    assert load_component(ddpm_flat, "scheduler") == configs["DDPM_CAT_256_SCHEDULER"]


def test_flat_folder_of_old_ddpm_repos_loads(ddpm_flat, saved):
    unet = load_component(ddpm_flat, "unet")
    assert isinstance(unet, UNet2DModel) and same_weights(unet, saved("ddpm_cat")[0])


def test_single_component_folder_loads(sd_pipeline, saved):
    assert same_weights(load_component(sd_pipeline / "vae", "vae"), saved("vae")[0])
    assert load_component(sd_pipeline / "tokenizer", "tokenizer")("cat").input_ids == [54, 53, 55]


def test_loads_straight_into_requested_dtype(sd_pipeline, saved):
    vae = load_component(sd_pipeline, "vae", dtype=torch.float16)
    text_encoder = load_component(sd_pipeline, "text_encoder", dtype="bf16")
    assert same_weights(vae, saved("vae")[0], torch.float16)
    assert {p.dtype for p in text_encoder.parameters()} == {torch.bfloat16}
    assert text_encoder.embeddings.position_ids.dtype == torch.int64  # integer buffers keep their dtype


def test_loading_never_initialises_real_tensors(sd_pipeline, monkeypatch):
    # Random initialisation of a full-size UNet costs seconds; the models are built on the meta device instead.
    touched = []

    def spy(init):
        def wrapped(*args, **kwargs):
            touched.append((args[0] if args else kwargs["tensor"]).device.type)
            return init(*args, **kwargs)
        return wrapped

    for name in ("kaiming_uniform_", "uniform_", "normal_", "trunc_normal_", "zeros_", "ones_"):
        monkeypatch.setattr(torch.nn.init, name, spy(getattr(torch.nn.init, name)))
    for component in ("unet", "vae", "text_encoder"):
        load_component(sd_pipeline, component)
    assert set(touched) <= {"meta"}


def test_fp16_variant_loads_and_is_cast_to_the_requested_dtype(saved, tmp_path):
    reference = saved("vae")[0]
    copy.deepcopy(reference).half().save_pretrained(tmp_path, variant="fp16")
    assert (tmp_path / "diffusion_pytorch_model.fp16.safetensors").exists()
    vae = load_component(tmp_path, "vae", variant="fp16", dtype=torch.float32)
    assert vae.dtype == torch.float32
    assert all(torch.equal(v, reference.state_dict()[k].half().float()) for k, v in vae.state_dict().items())


def test_sharded_checkpoints_load_with_and_without_variant(saved, tmp_path):
    reference = saved("sd2")[0]
    reference.save_pretrained(tmp_path / "plain", max_shard_size="20KB")
    reference.save_pretrained(tmp_path / "fp16", max_shard_size="20KB", variant="fp16")
    assert len(list((tmp_path / "plain").glob("*-of-*.safetensors"))) > 2
    assert same_weights(load_component(tmp_path / "plain", "unet"), reference)
    assert same_weights(load_component(tmp_path / "fp16", "unet", variant="fp16"), reference)


def test_legacy_attention_keys_are_renamed(saved, tmp_path):
    folder = saved("vae")[1]
    shutil.copy(folder / "config.json", tmp_path)
    legacy = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    state = load_file(folder / "diffusion_pytorch_model.safetensors")
    renamed = {}
    for key, value in state.items():
        for new, old in legacy.items():
            key = key.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
        renamed[key] = value
    assert any(".query." in k for k in renamed) and any(".proj_attn." in k for k in renamed)
    save_file(renamed, tmp_path / "diffusion_pytorch_model.safetensors")
    assert same_weights(load_component(tmp_path, "vae"), saved("vae")[0])


@pytest.mark.parametrize("with_position_ids", [False, True])
def test_text_encoder_keys_with_the_transformers_4_prefix_load(saved, tmp_path, with_position_ids):
    folder = saved("text_encoder")[1]
    shutil.copy(folder / "config.json", tmp_path)
    state = {f"text_model.{k}": v for k, v in load_file(folder / "model.safetensors").items()}
    if with_position_ids:
        state["text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    save_file(state, tmp_path / "model.safetensors")
    assert same_weights(load_component(tmp_path, "text_encoder"), saved("text_encoder")[0])


def test_tokenizer_json_of_transformers_5_loads(tmp_path, sd_pipeline):
    CLIPTokenizer.from_pretrained(sd_pipeline / "tokenizer").save_pretrained(tmp_path)
    assert "vocab.json" not in os.listdir(tmp_path) and "tokenizer.json" in os.listdir(tmp_path)
    assert load_component(tmp_path, "tokenizer")("a cat").input_ids == [54, 26, 53, 55]


def test_pickle_weights_load_when_allowed(saved, tmp_path):
    reference = saved("vae")[0]
    reference.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "diffusion_pytorch_model.bin").exists()
    assert same_weights(load_component(tmp_path, "vae", allow_pickle=True), reference)


def test_builtin_source_resolves_to_the_package_folder(sd_pipeline, monkeypatch, tmp_path):
    assert sources.BUILTIN_ROOT == REPO_ROOT / "nodegraph" / "builtin"
    shutil.copytree(sd_pipeline, tmp_path / "tiny")
    monkeypatch.setattr(sources, "BUILTIN_ROOT", tmp_path)
    source = sources.resolve_source("builtin:tiny")
    assert source.root == tmp_path / "tiny"
    assert isinstance(load_component("builtin:tiny", "vae"), AutoencoderKL)


HUB_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from nodegraph.models.loading import load_component, CheckpointError
    repo, sha = sys.argv[1], sys.argv[2]
    x, text = torch.ones(1, 4, 8, 8), torch.ones(1, 3, 16)
    out = {}
    with torch.no_grad():
        out["main"] = load_component(repo, "unet")(x, 10, text).sum().item()
        out["sha"] = load_component(repo, "unet", revision=sha)(x, 10, text).sum().item()
    out["scheduler"] = load_component(repo, "scheduler")
    out["tokens"] = load_component(repo, "tokenizer")("a cat").input_ids
    for name, call in {"missing_repo": lambda: load_component("org/absent", "unet"),
                       "missing_revision": lambda: load_component(repo, "unet", revision="v9")}.items():
        try:
            call()
        except CheckpointError as e:
            out[name] = str(e)
    print(json.dumps(out))
""")


def test_hub_repo_resolves_from_a_hand_made_cache_offline(sd_pipeline, tmp_path):
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny-sd"
    shutil.copytree(sd_pipeline, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO_ROOT))
    run = subprocess.run([sys.executable, "-c", HUB_SCRIPT, "org/tiny-sd", sha], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    unet = load_component(sd_pipeline, "unet")
    with torch.no_grad():
        expected = unet(torch.ones(1, 4, 8, 8), 10, torch.ones(1, 3, 16)).sum().item()
    assert out["main"] == pytest.approx(expected, abs=1e-4) and out["sha"] == out["main"]
    assert out["scheduler"] == reference_configs()["SD14_SCHEDULER"]
    assert out["tokens"] == [54, 26, 53, 55]
    assert "org/absent" in out["missing_repo"] and "HF_HUB_OFFLINE" in out["missing_repo"]
    assert "revision `v9`" in out["missing_revision"]


def test_writing_to_a_loaded_weight_leaves_the_file_unchanged(saved, tmp_path):
    # fp32 CPU weights are copy-on-write views of the file's memory map
    shutil.copytree(saved("vae")[1], tmp_path / "vae")
    before = (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()
    vae = load_component(tmp_path / "vae", "vae")
    with torch.no_grad():
        vae.encoder.conv_in.weight.fill_(7.0)
    assert (vae.encoder.conv_in.weight == 7.0).all()
    assert (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == before
    assert same_weights(load_component(tmp_path / "vae", "vae"), saved("vae")[0])


def test_tensors_at_unaligned_offsets_are_read_correctly(tmp_path):
    # safetensors writers align every tensor; a hand-made file may not, and then the tensor is copied, not mapped
    header = {"a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [3, 11]}}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    data = bytes([1, 2, 3]) + torch.tensor([1.5, -2.0]).numpy().tobytes()
    (tmp_path / "w.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + data)
    src = sources.resolve_source(tmp_path)
    entries = checkpoint.read_entries(src, checkpoint.WeightFiles(("w.safetensors",), pickle=False))
    state = checkpoint.read_tensors(entries, torch.float32, torch.device("cpu"))
    assert state["a"].tolist() == [1, 2, 3] and state["b"].tolist() == [1.5, -2.0]


def test_hub_repo_online_downloads_only_the_files_of_the_component(sd_pipeline, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    files = sorted(p.relative_to(sd_pipeline).as_posix() for p in sd_pipeline.rglob("*") if p.is_file())
    fetched = []

    def download(repo_id, filename, revision=None, **kwargs):
        assert (repo_id, revision) == ("org/tiny-sd", "v1")
        fetched.append(filename)
        return str(sd_pipeline / filename)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, repo_id, revision=None: files)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    vae = load_component("org/tiny-sd", "vae", revision="v1")
    assert isinstance(vae, AutoencoderKL)
    assert sorted(fetched) == ["model_index.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors"]


def test_hub_unreachable_and_not_cached_says_so(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub import constants

    def unreachable(self, repo_id, revision=None):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", unreachable)
    with pytest.raises(CheckpointError, match=r"`org/tiny-sd` is not a local folder, and the hub could not "
                                                      r"be reached \(network is unreachable\), and the Hugging Face "
                                                      r"cache .* holds no snapshot"):
        load_component("org/tiny-sd", "unet")


def test_text_encoder_pickle_of_transformers_4_loads_only_when_allowed(saved, tmp_path):
    folder = saved("text_encoder")[1]
    shutil.copy(folder / "config.json", tmp_path)
    torch.save({f"text_model.{k}": v for k, v in load_file(folder / "model.safetensors").items()},
               tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin is a pickle"):
        load_component(tmp_path, "text_encoder")
    assert same_weights(load_component(tmp_path, "text_encoder", allow_pickle=True), saved("text_encoder")[0])


def test_channels_last_loading_gives_the_same_unet_output(sd_pipeline):
    """The opt-in channels-last layout changes memory order only: fp32 outputs agree with the default load."""
    import torch

    from nodegraph.models.loading import load_component

    plain = load_component(sd_pipeline, "unet")
    fast = load_component(sd_pipeline, "unet", channels_last=True)
    assert fast.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    context = torch.randn(1, 5, plain.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(fast(x, 10, context), plain(x, 10, context), atol=1e-5, rtol=1e-5)


def test_converted_tensors_beside_mapped_ones_load_exactly(tmp_path):
    """Conversions read straight from the map and then release its pages: tensors kept as views of the same map
    (an int buffer, and fp16 weights when fp16 is asked for) sharing pages with them keep their values."""
    generator = torch.Generator().manual_seed(0)
    tensors = {"a_big": torch.randn(3000, generator=generator), "b_ids": torch.arange(7),  # spans pages / shares them
               "c_half": torch.randn(5000, generator=generator).half(),
               "d_big": torch.randn(1025, 3, generator=generator)}
    save_file(tensors, str(tmp_path / "w.safetensors"))
    src = sources.resolve_source(tmp_path)
    entries = checkpoint.read_entries(src, checkpoint.WeightFiles(("w.safetensors",), pickle=False))
    for dtype in (torch.bfloat16, torch.float16):
        state = checkpoint.read_tensors(entries, dtype, torch.device("cpu"))
        for key, want in tensors.items():
            want = want.to(dtype) if want.is_floating_point() else want
            assert state[key].dtype == want.dtype and torch.equal(state[key], want), key
