"""float8 weight storage (models/fp8.py): fp8 files load as float8, layers upcast one at a time, and a tiny SD UNet
stays within the measured tolerance of diffusers' fp32 model.

Measured on the tiny `sd1` UNet (random weights, seeded inputs below): the relative error ‖ours − fp32‖ / ‖fp32‖
of the UNet output is 0.101 with fp8_e4m3fn weights and 0.206 with fp8_e5m2 (max-abs relative: 0.101, 0.224);
that is the rounding of the weights themselves (the per-layer upcast adds no bit, as the second test shows).
The bounds below are those figures with 50 % headroom.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodegraph.models import fp8
from nodegraph.models.loading import load_component

from tiny_checkpoints import SD_UNETS

WEIGHTS = "diffusion_pytorch_model.safetensors"
TOLERANCE = {"fp8_e4m3fn": 0.15, "fp8_e5m2": 0.30}


def _layer_weights(model: torch.nn.Module) -> set[str]:
    """Keys of diffusers' Linear / Conv weights (the layers fp8 storage covers), from the reference model."""
    kinds = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv1d)
    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, kinds)}


@pytest.fixture(scope="module")
def fp8_folders(saved, tmp_path_factory):
    """{store: folder whose file holds the sd1 UNet's Linear/Conv weights as that float8 type (torch's cast)}."""
    reference, folder = saved("sd1")
    layers, folders = _layer_weights(reference), {}
    for store in fp8.STORE_NAMES:
        dtype = getattr(torch, f"float8_{store[4:]}")
        out = tmp_path_factory.mktemp(store)
        shutil.copy(folder / "config.json", out / "config.json")
        state = load_file(folder / WEIGHTS)
        save_file({k: v.to(dtype) if k in layers else v for k, v in state.items()}, out / WEIGHTS)
        folders[store] = out
    return folders


def _inputs():
    generator = torch.Generator().manual_seed(3)
    return (torch.randn(2, 4, 8, 8, generator=generator), 500,
            torch.randn(2, 7, SD_UNETS["sd1"]["cross_attention_dim"], generator=generator))


def _relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).norm() / theirs.norm()).item()


@pytest.mark.parametrize("store", fp8.STORE_NAMES)
def test_fp8_file_loads_as_float8_and_stays_within_tolerance_of_fp32(saved, fp8_folders, store):
    reference, _ = saved("sd1")
    unet = load_component(fp8_folders[store], "unet")
    dtype = getattr(torch, f"float8_{store[4:]}")
    assert unet.conv_in.weight.dtype == dtype and isinstance(unet.conv_in, fp8.Fp8Conv2d)
    assert unet.conv_norm_out.weight.dtype == torch.float32 and unet.conv_in.bias.dtype == torch.float32
    assert unet.dtype == torch.float32  # the compute dtype, not the storage one
    x, t, text = _inputs()
    with torch.no_grad():
        ours, theirs = unet(x, t, text), reference(x, t, text).sample
    error = _relative_error(ours, theirs)
    assert 0 < error <= TOLERANCE[store], error


def test_per_layer_upcast_computes_what_the_fully_upcast_fp8_weights_compute(saved, fp8_folders, tmp_path):
    """Upcasting at call time changes no bit against upcasting the whole file before the run."""
    folder = fp8_folders["fp8_e4m3fn"]
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    save_file({k: v.float() for k, v in load_file(folder / WEIGHTS).items()}, tmp_path / WEIGHTS)
    stored, wide = load_component(folder, "unet"), load_component(tmp_path, "unet")
    assert not fp8.is_fp8_model(wide)
    x, t, text = _inputs()
    with torch.no_grad():
        assert torch.equal(stored(x, t, text), wide(x, t, text))


def test_weights_option_stores_a_fp32_file_as_the_fp8_file_would_load(saved, fp8_folders):
    _, folder = saved("sd1")
    converted = load_component(folder, "unet", weights="fp8_e4m3fn")
    from_file = load_component(fp8_folders["fp8_e4m3fn"], "unet")
    small, other = fp8.fp8_bytes(converted)
    assert small > 0 and small == fp8.fp8_bytes(from_file)[0]
    x, t, text = _inputs()
    with torch.no_grad():
        assert torch.equal(converted(x, t, text), from_file(x, t, text))


def test_cast_to_fp8_of_a_loaded_model_matches_the_loader_option(saved):
    _, folder = saved("sd1")
    cast = fp8.cast_to_fp8(load_component(folder, "unet"), "fp8_e5m2")
    loaded = load_component(folder, "unet", weights="fp8_e5m2")
    x, t, text = _inputs()
    with torch.no_grad():
        assert torch.equal(cast(x, t, text), loaded(x, t, text))


def test_upcast_never_holds_more_than_one_layer_in_the_compute_dtype(saved, fp8_folders, monkeypatch):
    unet = load_component(fp8_folders["fp8_e4m3fn"], "unet")
    live: dict[int, torch.Tensor] = {}
    calls, peak = [0], [0]
    real = fp8.upcast

    def spy(weight, dtype):
        out = real(weight, dtype)
        calls[0] += 1
        # a weak reference per upcast copy: count those still alive when the next one is made
        import weakref
        live[calls[0]] = weakref.ref(out)
        peak[0] = max(peak[0], sum(r() is not None for r in live.values()))
        return out

    monkeypatch.setattr(fp8, "upcast", spy)
    x, t, text = _inputs()
    with torch.no_grad():
        unet(x, t, text)
    layers = sum(isinstance(m, fp8._Fp8Layer) for m in unet.modules())
    assert layers > 20 and calls[0] >= layers
    assert peak[0] == 1


def test_a_torch_without_float8_is_refused_with_the_fix(monkeypatch):
    monkeypatch.delattr(torch, "float8_e5m2")
    with pytest.raises(fp8.Fp8Unsupported, match="torch >= 2.1"):
        fp8.check_fp8("cpu", "fp8_e5m2")
    with pytest.raises(fp8.Fp8Unsupported, match="fp8_e4m3fn, fp8_e5m2"):
        fp8.check_fp8("cpu", "fp4")


def test_an_unknown_storage_name_is_refused_before_loading(saved, monkeypatch):
    _, folder = saved("sd1")
    from nodegraph.models import loading

    monkeypatch.setattr(loading, "find_weights", lambda *a, **k: pytest.fail("weight files were looked up"))
    with pytest.raises(fp8.Fp8Unsupported, match="weights"):
        load_component(folder, "unet", weights="int4")
