"""ComfyUI's scaled-fp8 files (a `scaled_fp8` marker, float8 Linear weights, one float32 `scale_weight` per layer)
load and draw: Flux's transformer (diffusion_models/ layout), ComfyUI's t5xxl_fp8_e4m3fn_scaled text encoder,
Z-Image's transformer and an SD3.5 all-in-one file (markers per part) each give, in a float32 run, exactly the image
(or output) of the same weights dequantized as ComfyUI computes them (`q.float() * s`) and written as a plain
float32 file (tests/fp8/comfy_scaled.py). The weights stay float8 in memory with their scale beside them; a wrong
scale changes the image; ComfyUI's other quantized files (`comfy_quant`) stay refused."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_flux_single_file import to_bfl

from comfy_scaled import write_scaled
from nodegraph import run_graph
from nodegraph.models.errors import CheckpointError
from nodegraph.models.fp8 import Fp8Linear
from nodegraph.models.loading import load_component
from tests.graphs.tiny_pipelines import png_pixels

FLUX = dict(prompt="a red fox in fresh snow", steps=2, width=32, height=32, max_sequence_length=24)
WRONG = "double_blocks.0.img_attn.qkv"  # a layer whose scale the sensitivity file doubles


@pytest.fixture(scope="module")
def flux_files(tiny_flux_dev, tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy-scaled")
    bfl = to_bfl(load_file(tiny_flux_dev / "transformer" / "diffusion_pytorch_model.safetensors"))
    out = {name: root / f"{name}.safetensors" for name in ("scaled", "plain", "wrong", "t5_scaled", "t5_plain")}
    out["scales"] = write_scaled(bfl, out["scaled"], out["plain"])
    write_scaled(bfl, out["wrong"], scale_factor={WRONG: 2.0})
    t5 = load_file(tiny_flux_dev / "text_encoder_2" / "model.safetensors")
    write_scaled(t5, out["t5_scaled"], out["t5_plain"])
    return out


def flux_image(folder, **inputs) -> torch.Tensor:
    return png_pixels(run_graph("graphs/flux.yaml", inputs={"model": str(folder), **FLUX, **inputs})["image"]).int()


def test_scaled_flux_transformer_stays_float8_and_draws_the_dequantized_files_image(tiny_flux_dev, flux_files):
    model = load_component(flux_files["scaled"], "transformer", config=str(tiny_flux_dev))
    q = model.transformer_blocks[0].attn.to_q  # a third of the fused qkv: the fused layer's scale
    assert isinstance(q, Fp8Linear) and q.weight.dtype == torch.float8_e4m3fn
    assert q.weight_scale == pytest.approx(flux_files["scales"]["double_blocks.0.img_attn.qkv"], rel=1e-7)
    plain = flux_image(tiny_flux_dev, transformer=str(flux_files["plain"]))
    assert (flux_image(tiny_flux_dev, transformer=str(flux_files["scaled"])) - plain).abs().max() == 0
    # sensitivity: one layer's scale doubled moves the image (and without scales the weights are ~448x off)
    assert (flux_image(tiny_flux_dev, transformer=str(flux_files["wrong"])) - plain).abs().max() > 0


def test_comfyuis_scaled_t5_file_draws_the_dequantized_files_image(tiny_flux_dev, flux_files):
    t5 = load_component(flux_files["t5_scaled"], "text_encoder_2", config=str(tiny_flux_dev))
    v = t5.encoder.block[0].layer[0].SelfAttention.v
    assert isinstance(v, Fp8Linear) and v.weight_scale is not None
    assert t5.shared.weight.dtype == torch.float32  # the embedding is not scaled, and stays wide
    plain = flux_image(tiny_flux_dev, text_encoder_2=str(flux_files["t5_plain"]))
    assert (flux_image(tiny_flux_dev, text_encoder_2=str(flux_files["t5_scaled"])) - plain).abs().max() == 0


def test_scaled_z_image_transformer_outputs_what_the_dequantized_file_outputs(tiny_z_image, tmp_path):
    from test_z_image_single_file import diffusers_transformer, inputs, original_layout

    state = original_layout(diffusers_transformer(tiny_z_image).state_dict(), "model.diffusion_model.")
    scaled, plain, wrong = (tmp_path / f"{n}.safetensors" for n in ("scaled", "plain", "wrong"))
    # an e5m2 marker: its weights kept in e5m2 (older ComfyUI; current ComfyUI re-rounds them to e4m3fn)
    write_scaled(state, scaled, plain, prefixes=("model.diffusion_model.",), fp8=torch.float8_e5m2)
    write_scaled(state, wrong, prefixes=("model.diffusion_model.",), fp8=torch.float8_e5m2,
                 scale_factor={"model.diffusion_model.layers.0.attention.qkv": 0.5})
    models = {name: load_component(path, "transformer", config=str(tiny_z_image)) for name, path in
              (("scaled", scaled), ("plain", plain), ("wrong", wrong))}
    assert models["scaled"].layers[0].attention.to_k.weight.dtype == torch.float8_e5m2  # the marker's format
    x, t, cap = inputs(models["plain"].config.in_channels, models["plain"].config.cap_feat_dim)
    with torch.no_grad():
        out = {name: m(x, t, cap)[0][0] for name, m in models.items()}
    assert torch.equal(out["scaled"], out["plain"]) and not torch.allclose(out["wrong"], out["plain"], atol=1e-4)


def test_scaled_sd35_all_in_one_file_draws_the_dequantized_files_image(tiny_sd3, tmp_path):
    from tests.sd3.sd3_files import write_sd3_file

    configs = tmp_path / "sd3"
    shutil.copytree(tiny_sd3, configs, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    state = load_file(write_sd3_file(tiny_sd3, tmp_path / "sd3.5.safetensors"))
    parts = ("model.diffusion_model.", "text_encoders.t5xxl.transformer.", "text_encoders.clip_l.transformer.")
    scaled, plain = tmp_path / "sd3.5_fp8_scaled.safetensors", tmp_path / "sd3.5_dequantized.safetensors"
    write_scaled(state, scaled, plain, prefixes=parts)
    settings = dict(prompt="a red fox in fresh snow", steps=2, width=32, height=32, max_sequence_length=12,
                    config=str(configs))

    def image(model):
        return png_pixels(run_graph("graphs/sd3.yaml", inputs={"model": str(model), **settings})["image"]).int()

    assert (image(scaled) - image(plain)).abs().max() == 0
    t5 = load_component(scaled, "text_encoder_3", config=str(configs))
    assert t5.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == torch.float8_e4m3fn


def test_the_scale_multiplies_the_upcast_weight_as_comfyui_computes_it_in_bf16():
    """ComfyUI on CPU (comfy_kitchen's eager dequantize): `q.to(bf16) * scale.to(bf16)`, written out here; its CUDA
    backends compute `(q.float() * s).to(bf16)`, the other product below."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 32, dtype=torch.bfloat16)
    q = (torch.randn(32, 64) * 100).to(torch.float8_e4m3fn)
    scale = torch.tensor(0.0123456, dtype=torch.float32)
    layer.weight = torch.nn.Parameter(q, requires_grad=False)
    layer.__class__, layer.weight_scale = Fp8Linear, float(scale)
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    comfy = torch.nn.functional.linear(x, q.to(torch.bfloat16) * scale.to(torch.bfloat16), layer.bias)
    assert torch.equal(layer(x), comfy)
    assert not torch.equal(layer(x), torch.nn.functional.linear(x, (q.float() * scale).to(torch.bfloat16),
                                                                layer.bias))  # rounding the scale first matters


def test_comfy_quant_files_and_malformed_scales_are_refused_by_name(tiny_flux_dev, flux_files, tmp_path):
    from nodegraph.comfy.checkpoints import read_checkpoint
    from nodegraph.comfy.errors import ComfyError

    state = load_file(flux_files["scaled"])
    assert read_checkpoint(flux_files["scaled"]).family == "flux_dev"  # the ComfyUI import takes scaled files
    quant = tmp_path / "flux1-dev_mixed.safetensors"
    save_file({**state, "img_in.comfy_quant": torch.tensor(list(b'{"format": "float8_e4m3fn"}'), dtype=torch.uint8)},
              quant)
    with pytest.raises(CheckpointError, match=r"ComfyUI quantized export .*`img_in.comfy_quant`"):
        load_component(quant, "transformer", config=str(tiny_flux_dev))
    with pytest.raises(ComfyError, match="a ComfyUI quantized export"):
        read_checkpoint(quant)
    two = tmp_path / "two.safetensors"
    save_file({**state, "img_in.scale_weight": torch.ones(2)}, two)
    with pytest.raises(CheckpointError, match=r"`img_in.scale_weight` is a float32 tensor of shape \[2\]"):
        load_component(two, "transformer", config=str(tiny_flux_dev))
    wide = tmp_path / "wide.safetensors"
    save_file({**state, "img_in.weight": state["img_in.weight"].float()}, wide)
    with pytest.raises(CheckpointError, match=r"`img_in.weight` is float32 but its `scale_weight`"):
        load_component(wide, "transformer", config=str(tiny_flux_dev))


def test_a_scaled_sd_checkpoint_loads_its_unet_as_the_dequantized_file(sd1_file, tmp_path):
    """SD-family UNets are read wide (their loader remaps by plan): the scale is folded in at load, same numbers."""
    scaled, plain = tmp_path / "sd1_fp8_scaled.safetensors", tmp_path / "sd1_dequantized.safetensors"
    scales = write_scaled(load_file(sd1_file), scaled, plain, prefixes=("model.diffusion_model.",))
    assert len(scales) > 10
    config = str(sd1_file.parent / "tiny-sd1")
    got, want = (load_component(path, "unet", config=config).state_dict() for path in (scaled, plain))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_a_lora_fused_into_a_scaled_fp8_layer_adds_to_its_real_weight():
    """A LoRA is added to a scaled layer's dequantized weight w · s (as ComfyUI's `convert_weight`) and (w·s + ΔW) / s
    is stored back in float8 on the old scale, round to nearest (ComfyUI's `set_weight` re-quantises, with a new
    scale now, stochastically before: approximately the same): the fused weight times its scale is w·s + ΔW within
    float8 rounding."""
    from nodegraph.models.adapters.lora import LoraLayer, apply_lora

    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 32, bias=False)
    q, s = torch.randn(32, 64).to(torch.float8_e4m3fn), 0.01
    layer.weight = torch.nn.Parameter(q, requires_grad=False)
    layer.__class__, layer.weight_scale = Fp8Linear, s
    lora = LoraLayer(down=torch.randn(4, 64) * 0.05, up=torch.randn(32, 4) * 0.05)
    fused = apply_lora(torch.nn.Sequential(layer), {"0": (layer, lora)}, 1.0, fuse=True)[0]
    want = q.float() * s + lora.up @ lora.down
    got = fused.weight.float() * fused.weight_scale
    assert (got - want).abs().max() <= 0.0625 * want.abs().max()  # e4m3's step at the top of its range: 1/16
    assert (q.float() * s - want).abs().max() > 0.01  # the LoRA is not lost in the rounding
    assert (got - q.float() * s).abs().mean() > 0.5 * (want - q.float() * s).abs().mean()


def test_nodegraph_run_refuses_a_comfy_quant_transformer_by_name_without_a_traceback(tiny_flux_dev, flux_files,
                                                                                     tmp_path):
    from test_z_image_bad_input import assert_refused, run_cli

    quant = tmp_path / "flux1-dev_nvfp4.safetensors"
    save_file({**load_file(flux_files["scaled"]), "img_in.comfy_quant": torch.zeros(3, dtype=torch.uint8)}, quant)
    result = run_cli("flux.yaml", tmp_path, model=tiny_flux_dev, transformer=quant, width=32, height=32, steps=1)
    assert_refused(result, tmp_path, "node `checkpoint`", "ComfyUI quantized export", "img_in.comfy_quant",
                   "use the bf16 file")


def test_an_unfused_lora_beside_a_scaled_fp8_layer_adds_its_own_product():
    """`fuse: false`: the scaled layer's output plus B(A(x))·scale, A and B kept wide (not rounded to float8)."""
    from nodegraph.models.adapters.lora import LoraLayer, apply_lora

    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 32, dtype=torch.bfloat16)
    q, s = torch.randn(32, 64).to(torch.float8_e4m3fn), 0.01
    layer.weight = torch.nn.Parameter(q, requires_grad=False)
    layer.__class__, layer.weight_scale = Fp8Linear, s
    lora = LoraLayer(down=torch.randn(4, 64) * 0.05, up=torch.randn(32, 4) * 0.05, alpha=2.0)
    wrapped = apply_lora(torch.nn.Sequential(layer), {"0": (layer, lora)}, 1.5, fuse=False)[0]
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    base = torch.nn.functional.linear(x, q.to(torch.bfloat16) * torch.tensor(s).to(torch.bfloat16), layer.bias)
    delta = torch.nn.functional.linear(torch.nn.functional.linear(x, lora.down.to(torch.bfloat16)),
                                       lora.up.to(torch.bfloat16)) * (1.5 * 0.5)
    assert torch.equal(wrapped(x), base + delta) and (delta.abs().max() > 0.01)
