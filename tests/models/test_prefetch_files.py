"""models/prefetch.py: which files a component's load reads, and the memory bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodegraph.models import prefetch
from nodegraph.models.loading import load_component
from nodegraph.models.prefetch import component_files, within_budget


@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder"])
def test_the_files_found_are_the_files_the_loader_reads(component, weight_files_read):
    found = component_files("builtin:digits", component)
    load_component("builtin:digits", component)
    assert found == weight_files_read and len(found) == 1


def write_folder(root: Path, weights: dict[str, bytes | Path], index: dict | None = None) -> Path:
    (root / "unet").mkdir(parents=True)
    (root / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    for name, content in weights.items():
        if isinstance(content, Path):
            (root / "unet" / name).symlink_to(content)
        else:
            (root / "unet" / name).write_bytes(content)
    if index is not None:
        (root / "unet" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    return root


def test_sharded_weights_give_every_shard_the_index_names(tmp_path):
    shards = {f"diffusion_pytorch_model-0000{i}-of-00002.safetensors": b"x" for i in (1, 2)}
    root = write_folder(tmp_path / "m", shards, index={"weight_map": {"a": "diffusion_pytorch_model-00002-of-00002"
                                                                         ".safetensors",
                                                                         "b": "diffusion_pytorch_model-00001-of-00002"
                                                                         ".safetensors"}})
    assert component_files(str(root), "unet") == [(root / "unet" / name).resolve() for name in sorted(shards)]


def test_a_link_out_of_the_model_folder_is_not_read_ahead(tmp_path):
    outside = tmp_path / "elsewhere" / "secret.safetensors"
    outside.parent.mkdir()
    outside.write_bytes(b"not yours")
    root = write_folder(tmp_path / "m", {"diffusion_pytorch_model.safetensors": outside})
    assert component_files(str(root), "unet") == []


def test_a_link_inside_the_model_folder_is_read_ahead_at_its_target(tmp_path):  # the hub cache's layout
    root = tmp_path / "m"
    blob = root / "blobs" / "0123abcd"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"weights")
    write_folder(root, {"diffusion_pytorch_model.safetensors": blob})
    assert component_files(str(root), "unet") == [blob.resolve()]


def test_hub_ids_and_missing_paths_give_nothing_and_never_list_the_hub(monkeypatch, tmp_path):
    def no_hub(*args, **kwargs):
        raise AssertionError("the prefetch must not list a hub repo")

    monkeypatch.setattr("nodegraph.models.sources.HubSource", no_hub)
    assert component_files("CompVis/stable-diffusion-v1-4", "unet") == []
    assert component_files(str(tmp_path / "nothing-here"), "unet") == []
    assert component_files(str(tmp_path), "unet") == []  # a folder without weights: the loader reports it


def test_a_single_file_checkpoint_is_read_whole_and_a_pickle_only_when_allowed(tmp_path):
    single, sft, pickle = tmp_path / "model.safetensors", tmp_path / "flux.sft", tmp_path / "model.ckpt"
    for path in (single, sft, pickle):
        path.write_bytes(b"x")
    assert component_files(str(single), "vae") == [single.resolve()]
    assert component_files(str(sft), "unet") == [sft.resolve()]  # the reader opens any non-pickle as safetensors
    assert component_files(str(pickle), "unet") == []
    assert component_files(str(pickle), "unet", allow_pickle=True) == [pickle.resolve()]


def test_the_budget_keeps_the_leading_files_within_half_the_available_memory(tmp_path):
    files = []
    for name, size in (("a", 300), ("b", 300), ("c", 10)):
        (tmp_path / name).write_bytes(b"x" * size)
        files.append(tmp_path / name)
    assert within_budget(files, available=2000) == files
    assert within_budget(files, available=1200) == files[:2]
    assert within_budget(files, available=1000) == files[:1]  # c would fit, but b comes first
    assert within_budget(files, available=500) == []
    assert within_budget(files, available=None) == []  # unknown: do not guess


def test_available_memory_is_read_from_the_kernel():
    if not Path("/proc/meminfo").exists():
        assert prefetch.available_memory() is None
        return
    available = prefetch.available_memory()
    total = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal:")).split()[1]) * 1024
    assert 0 < available <= total
