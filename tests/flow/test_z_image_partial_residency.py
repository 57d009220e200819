"""Partial residency of the Z-Image transformer (nodegraph/models/partial_residency.py): a share of its blocks reads
its Linear weights from the file at each call. Checked against diffusers' ZImageTransformer2DModel on the same
folder, and by the process's own page table (/proc/self/smaps) for which weights stay out of memory."""

from __future__ import annotations

import copy
import gc
import os
import shutil

import diffusers
import pytest
import torch
from tiny_z_image import perturb

from nodegraph.models.adapters.patch import with_weight
from nodegraph.models.loading import load_component
from nodegraph.models.partial_residency import FileLinear, file_blocks
from nodegraph.models.z_image_transformer import ZImageTransformer2DModel

# wider than tests/flow/tiny_z_image.py (dim 192: a 192×512 FFN weight is ~100 pages in fp32), so that the page
# count in the test of RSS is the weights', not page-sharing neighbours'
CONFIG = dict(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=192, n_layers=3, n_refiner_layers=1,
              n_heads=3, n_kv_heads=3, norm_eps=1e-5, qk_norm=True, cap_feat_dim=40, rope_theta=256.0,
              t_scale=1000.0, axes_dims=[16, 24, 24], axes_lens=[1024, 64, 64])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    reference = perturb(diffusers.ZImageTransformer2DModel(**CONFIG), seed=3)
    path = tmp_path_factory.mktemp("z-partial") / "transformer"
    reference.save_pretrained(path)  # fp32 safetensors
    return path


def _inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(16, 1, 8, 6, generator=g)], torch.tensor([0.3]), [torch.randn(7, 40, generator=g)]


def _load(folder, share, monkeypatch, dtype=torch.float32):
    monkeypatch.setattr(ZImageTransformer2DModel, "FILE_READ_SHARE", share)
    return load_component(folder, "transformer", dtype=dtype, partial=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_partly_resident_transformer_equals_diffusers_bit_for_bit(folder, monkeypatch, dtype):
    reference = diffusers.ZImageTransformer2DModel.from_pretrained(folder, torch_dtype=dtype)
    x, t, caps = _inputs()
    with torch.no_grad():
        expected = reference([x[0].to(dtype)], t, [caps[0].to(dtype)], return_dict=False)[0][0]
        for share in (1 / 3, 1.0):
            model = _load(folder, share, monkeypatch, dtype)
            got = model([x[0].to(dtype)], t, [caps[0].to(dtype)])[0]
            assert torch.equal(got, expected), (share, (got - expected).abs().max())
        other = model([x[0].to(dtype)], torch.tensor([0.6]), [caps[0].to(dtype)])[0]
    assert (other - expected).abs().max() > 1e-3  # the comparison is sensitive: another timestep moves it


def test_a_third_of_the_blocks_read_their_linear_weights_once_per_call(folder, monkeypatch):
    model = _load(folder, 1 / 3, monkeypatch)
    chosen = model.file_read_blocks()
    assert chosen == ["context_refiner.0", "layers.1"]  # 5 blocks → 2, spread over the list
    readers = {name for name, m in model.named_modules() if isinstance(m, FileLinear)}
    assert readers and all(any(name.startswith(f"{b}.") for b in chosen) for name in readers)
    # every Linear of a chosen block reads: attention q/k/v/out, the FFN's three; the main block's adaLN too
    assert len(readers) == 7 + 8
    with torch.no_grad():
        model(*_inputs())
    assert model.file_reads.reads == len(readers)
    assert model.file_reads.size == 192 * 768 * 4  # the buffer: the largest such weight (adaLN here, fp32)


def _mapped_rss(path) -> int:
    """Bytes of `path`'s mappings resident in this process (every mapping of the file, summed)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not line.startswith(("Rss", "Size")):
                inside = len(head) >= 6 and head[-1] == str(path)
            elif inside and head[0] == "Rss:":
                total += int(head[1]) * 1024
    return total


def test_weights_read_from_the_file_never_enter_the_process_memory(folder, monkeypatch):
    file = folder / "diffusion_pytorch_model.safetensors"
    size = file.stat().st_size
    resident = _load(folder, 0.0, monkeypatch)
    with torch.no_grad():
        resident(*_inputs())
    held = _mapped_rss(file)
    assert held > 0.9 * size  # the control: a resident model's map holds what the call touched, ~all the file
    del resident
    gc.collect()  # its map is gone once its views are
    partial = _load(folder, 0.6, monkeypatch)  # 3 of 5 blocks from the file
    with torch.no_grad():
        partial(*_inputs())
    readers = [m for m in partial.modules() if isinstance(m, FileLinear)]
    read = sum(m.weight.numel() * 4 for m in readers)
    assert read > 0.5 * size
    # those bytes were read, never mapped in: only the kernel's fault-around (up to 64 KiB mapped with a touched
    # page of the resident neighbours) may bring a few of their pages in
    assert _mapped_rss(file) < size - read + 2 * 65536 * len(readers) < 0.8 * held


def test_a_layer_given_its_own_weight_computes_with_it(folder, monkeypatch):
    model = _load(folder, 1.0, monkeypatch)
    layer = model.layers[0].feed_forward.w2
    assert isinstance(layer, FileLinear)
    x = torch.randn(3, layer.in_features, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        stored = layer(x)
        twice = with_weight(layer, layer.weight * 2)  # what a fused LoRA does: a clone with a new weight
        assert torch.equal(twice(x), torch.nn.functional.linear(x, layer.weight * 2))
        assert torch.equal(layer(x), stored) and torch.equal(stored, torch.nn.functional.linear(x, layer.weight))
        assert torch.equal(copy.copy(layer)(x), stored)


def test_block_choice_edges():
    names = [f"b{k}" for k in range(34)]  # Z-Image-Turbo: 2 + 2 refiners and 30 main blocks
    third = file_blocks(names, 1 / 3)
    assert len(third) == 11 and len(set(third)) == 11
    gaps = [int(b[1:]) - int(a[1:]) for a, b in zip(third, third[1:])]
    assert min(gaps) >= 3 and max(gaps) <= 4  # spread, not the last eleven
    assert file_blocks(names, 0.0) == [] and file_blocks(names, 1.0) == names and file_blocks(names, 7.0) == names
    assert file_blocks([], 0.5) == []


def test_partial_loads_are_cpu_only_and_leave_fp8_files_to_fp8(folder, monkeypatch):
    from nodegraph.models.partial_residency import install_partial

    with pytest.raises(ValueError, match="on the CPU"):
        install_partial(torch.nn.Linear(2, 2), {}, torch.float32, torch.device("meta"), [])
    model = _load(folder, 1.0, monkeypatch)
    fp8 = load_component(folder, "transformer", partial=True, weights="fp8_e4m3fn")
    assert any(isinstance(m, FileLinear) for m in model.modules())
    assert not any(isinstance(m, FileLinear) for m in fp8.modules())  # --weights fp8 stores, it does not read


def _transformer_of_run(tiny_z_image, **options):
    from nodegraph import run_graph
    from nodegraph.core.context import ComponentCache

    components = ComponentCache()
    image = run_graph("graphs/z_image.yaml", inputs={"model": str(tiny_z_image), "steps": 2, "width": 32,
                                                      "height": 32}, components=components, **options)["image"]
    (model,) = [m for m in components.values() if isinstance(m, ZImageTransformer2DModel)]
    return model, image


def test_the_default_run_reads_a_share_from_the_file_and_draws_the_held_models_image(tiny_z_image, monkeypatch):
    from tests.graphs.tiny_pipelines import png_pixels

    model, image = _transformer_of_run(tiny_z_image)
    assert model.file_reads.reads == 2 * 8  # a main block (a third of four, rounded): its 8 Linears at 2 steps
    monkeypatch.setenv("NODEGRAPH_FILE_READS", "0")
    held, held_image = _transformer_of_run(tiny_z_image)
    assert not hasattr(held, "file_reads") and not any(isinstance(m, FileLinear) for m in held.modules())
    assert torch.equal(png_pixels(image), png_pixels(held_image))


@pytest.fixture(scope="module")
def bf16_folder(tmp_path_factory):
    """Z-Image ships bf16 files; a CPU run computes in fp32: the layers read from the file are stored bf16."""
    torch.manual_seed(0)
    reference = perturb(diffusers.ZImageTransformer2DModel(**CONFIG), seed=4).to(torch.bfloat16)
    path = tmp_path_factory.mktemp("z-partial-bf16") / "transformer"
    reference.save_pretrained(path)
    return path


def _with_lora(model, fuse: bool):
    from nodegraph.models.adapters.lora import LoraLayer, adaptable_layers, apply_lora

    layers, g = adaptable_layers(model), torch.Generator().manual_seed(5)
    matched = {}
    for path in ("layers.1.feed_forward.w2", "layers.1.attention.to_q", "noise_refiner.0.adaLN_modulation.0"):
        layer = layers[path]
        lora = LoraLayer(torch.randn(4, layer.in_features, generator=g) * 0.2,
                         torch.randn(layer.out_features, 4, generator=g) * 0.2, alpha=2.0)
        matched[path] = (layer, lora)
    return apply_lora(model, matched, 0.8, fuse)


@pytest.mark.parametrize("fuse", [True, False])
def test_a_lora_on_a_bf16_file_read_in_fp32_gives_the_held_models_numbers(bf16_folder, monkeypatch, fuse):
    held = load_component(bf16_folder, "transformer", dtype=torch.float32)  # what NODEGRAPH_FILE_READS=0 loads
    partial = _load(bf16_folder, 1.0, monkeypatch)
    readers = [m for m in partial.modules() if isinstance(m, FileLinear)]
    assert readers and all(m.file_source[3] == torch.bfloat16 for m in readers)  # stored bf16, computed fp32
    x, t, caps = _inputs()
    with torch.no_grad():
        plain = held(x, t, caps)[0]
        expected = _with_lora(held, fuse)(x, t, caps)[0]
        got = _with_lora(partial, fuse)(x, t, caps)[0]
    assert (expected - plain).abs().max() > 1e-3  # the LoRA moves the output: the comparison is sensitive
    assert got.dtype == torch.float32 and torch.equal(got, expected), (got - expected).abs().max()
    if fuse:  # the fused layers hold their own fp32 weight: no longer read from the file
        fused = dict(_with_lora(partial, True).named_modules())["layers.1.feed_forward.w2"]
        assert fused.weight.dtype == torch.float32 and fused.weight is not fused.file_weight


@pytest.mark.parametrize("change", ["truncated", "rewritten"])
def test_a_file_changed_on_disk_after_load_is_refused_at_the_next_call(bf16_folder, tmp_path, monkeypatch, change):
    from nodegraph.models.errors import CheckpointError

    folder = tmp_path / "transformer"
    shutil.copytree(bf16_folder, folder)
    file = folder / "diffusion_pytorch_model.safetensors"
    model = _load(folder, 1.0, monkeypatch)  # bf16 file, fp32 run: only the file-read layers still use the file
    with torch.no_grad():
        model(*_inputs())
        if change == "truncated":
            os.truncate(file, file.stat().st_size // 2)
        else:  # a re-save under the same name: the same size, other bytes, a later modification time
            data = bytearray(file.read_bytes())
            data[-4096:] = bytes(4096)
            file.write_bytes(data)
            before = file.stat()
            os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # not within the clock's tick
        with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model\.safetensors changed on disk while "
                                                  r"loaded.*reload the model"):
            model(*_inputs())
        with pytest.raises(CheckpointError, match="changed on disk while loaded"):  # a fuse reads it checked too
            _with_lora(model, fuse=True)  # (touching the map past a truncated end would kill the process: SIGBUS)


def test_two_loras_fused_in_turn_on_file_read_layers_give_the_held_models_numbers(bf16_folder, monkeypatch):
    held = load_component(bf16_folder, "transformer", dtype=torch.float32)
    partial = _load(bf16_folder, 1.0, monkeypatch)
    with torch.no_grad():
        once = _with_lora(held, True)(*_inputs())[0]
        expected = _with_lora(_with_lora(held, True), True)(*_inputs())[0]
        got = _with_lora(_with_lora(partial, True), True)(*_inputs())[0]
    assert (expected - once).abs().max() > 1e-3  # the second LoRA counts: the first is not dropped nor read again
    assert torch.equal(got, expected), (got - expected).abs().max()
