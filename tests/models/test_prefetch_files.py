"""models/prefetch.py: which files a component's load reads, the memory bound, and the read-ahead itself."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from nodegraph.models import prefetch
from nodegraph.models.loading import load_component
from nodegraph.models.prefetch import component_files, read_ahead, within_budget


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
    single, pickle = tmp_path / "model.safetensors", tmp_path / "model.ckpt"
    single.write_bytes(b"x")
    pickle.write_bytes(b"x")
    assert component_files(str(single), "vae") == [single.resolve()]
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


def test_read_ahead_asks_for_every_byte_of_each_file_in_order_in_small_chunks(tmp_path, monkeypatch):
    sizes = {"first": 3 * prefetch.CHUNK + 5, "second": 7, "empty": 0}
    files = []
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
        files.append(tmp_path / name)
    calls = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, offset, length, advice: calls.append(
        (os.readlink(f"/proc/self/fd/{fd}"), offset, length, advice)))
    assert read_ahead(files + [tmp_path / "missing"]) == sum(sizes.values())
    chunk, first = prefetch.CHUNK, str(files[0])
    assert calls == [(first, 0, chunk, os.POSIX_FADV_WILLNEED), (first, chunk, chunk, os.POSIX_FADV_WILLNEED),
                     (first, 2 * chunk, chunk, os.POSIX_FADV_WILLNEED), (first, 3 * chunk, 5, os.POSIX_FADV_WILLNEED),
                     (str(files[1]), 0, 7, os.POSIX_FADV_WILLNEED)]


def test_read_ahead_stops_when_asked(tmp_path, monkeypatch):
    import threading

    (tmp_path / "w").write_bytes(b"x" * 10)
    stop = threading.Event()
    stop.set()
    monkeypatch.setattr(os, "posix_fadvise", lambda *a: pytest.fail("asked after stop"))
    assert read_ahead([tmp_path / "w"], stop) == 0


def cached(fd: int, offset: int) -> bool:
    try:
        os.preadv(fd, [bytearray(4096)], offset, os.RWF_NOWAIT)  # reads only from the page cache
        return True
    except BlockingIOError:
        return False


def test_read_ahead_brings_an_evicted_file_into_the_page_cache(tmp_path):
    path = tmp_path / "weights.bin"
    size = 12 << 20  # past an 8 MB readahead window: one whole-file request would leave the end on disk
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        if cached(fd, size - 4096):
            pytest.skip(f"this file system keeps {tmp_path} in memory (tmpfs?): nothing to read ahead")
        read_ahead([path])
        deadline = time.monotonic() + 10
        while not all(cached(fd, off) for off in (0, size // 2, size - 4096)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(cached(fd, off) for off in (0, size // 2, size - 4096))
    finally:
        os.close(fd)
