"""Z-Image single files, made from the tiny folder in the layouts people hold: the transformer as ComfyUI / the
publisher ship it (fused qkv, `x_embedder`, `final_layer`, `norm_final`, with or without `model.diffusion_model.`;
checked to be the layout diffusers' own converter reads), bf16 and float8_e4m3fn, and the Qwen3 text encoder as
ComfyUI's text_encoders/ file (HF keys, `model.` prefix or none). Each loads to the folder's weights and outputs."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodegraph.models.loading import CheckpointError, load_component
from nodegraph.models.qwen3_text import encode_prompts

ORIGINAL_NAMES = (("all_final_layer.2-1.", "final_layer."), ("all_x_embedder.2-1.", "x_embedder."),
                  (".attention.to_out.0.", ".attention.out."), (".attention.norm_q.", ".attention.q_norm."),
                  (".attention.norm_k.", ".attention.k_norm."))


def original_layout(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A diffusers Z-Image state dict in the publisher's / ComfyUI's key layout."""
    out = {}
    for key, t in state.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q." in key:
            base = key.replace(".to_q.weight", ".")
            out[prefix + base + "qkv.weight"] = torch.cat([state[base + f"to_{n}.weight"] for n in "qkv"])
            continue
        for new, old in ORIGINAL_NAMES:
            key = key.replace(new, old)
        out[prefix + key] = t.contiguous()
    out[prefix + "norm_final.weight"] = torch.ones(state["x_pad_token"].shape[1])  # in the originals; unused
    return out


def diffusers_transformer(folder):
    from diffusers import ZImageTransformer2DModel

    return ZImageTransformer2DModel.from_pretrained(folder / "transformer").eval()


def inputs(channels: int, cap_dim: int):
    g = torch.Generator().manual_seed(4)
    return [torch.randn(channels, 1, 8, 12, generator=g)], torch.tensor([0.6]), [torch.randn(9, cap_dim, generator=g)]


@pytest.fixture(scope="module")
def original_files(tiny_z_image, tmp_path_factory):
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

    state = diffusers_transformer(tiny_z_image).state_dict()
    root, files = tmp_path_factory.mktemp("z-image-files"), {}
    for prefix in ("", "model.diffusion_model."):
        files[prefix] = root / f"z_image{'_prefixed' if prefix else ''}.safetensors"
        save_file(original_layout(state, prefix), files[prefix])
    # the layout is the one diffusers' own converter reads back to the folder's weights
    converted = convert_z_image_transformer_checkpoint_to_diffusers(load_file(files["model.diffusion_model."]))
    assert converted.keys() == state.keys() and all(torch.equal(converted[k], state[k]) for k in state)
    return files


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."], ids=["bare", "prefixed"])
def test_transformer_file_loads_the_folder_weights_and_outputs(tiny_z_image, original_files, prefix):
    folder_model = load_component(tiny_z_image, "transformer")
    file_model = load_component(original_files[prefix], "transformer", config=str(tiny_z_image))
    theirs = folder_model.state_dict()
    assert file_model.state_dict().keys() == theirs.keys()
    assert all(torch.equal(v, theirs[k]) for k, v in file_model.state_dict().items())
    x, t, caps = inputs(16, 40)
    with torch.no_grad():
        assert torch.equal(file_model(x, t, caps)[0], folder_model(x, t, caps)[0])


def test_transformer_config_is_inferred_from_a_turbo_shaped_file(tmp_path):
    """Without `config`, the widths and depths come from the shapes and the RoPE axes are Turbo's (head 128)."""
    from diffusers import ZImageTransformer2DModel

    torch.manual_seed(5)
    theirs = ZImageTransformer2DModel(dim=256, n_layers=1, n_refiner_layers=1, n_heads=2, n_kv_heads=2,
                                      cap_feat_dim=40, in_channels=16).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    file = tmp_path / "turbo_shaped.safetensors"
    save_file(original_layout(theirs.state_dict(), ""), file)
    ours = load_component(file, "transformer")
    assert (ours.config.dim, ours.config.n_heads, ours.config.n_layers, ours.config.axes_dims) == (256, 2, 1,
                                                                                                   (32, 48, 48))
    x, t, caps = inputs(16, 40)
    with torch.no_grad():
        assert torch.equal(ours(x, t, caps)[0], theirs([v.clone() for v in x], t, caps, return_dict=False)[0][0])


def test_float8_transformer_file_stays_float8_and_upcasts_per_layer_exactly(tiny_z_image, original_files, tmp_path):
    """The float8 file computes exactly what the folder model computes with its Linear weights rounded to e4m3
    (so the per-layer upcast adds no error of its own); against the unrounded folder model the output moves by
    about 0.12 of its range on this tiny random model (e4m3 keeps 3 mantissa bits)."""
    from nodegraph.models.fp8 import is_fp8_model

    state = load_file(original_files["model.diffusion_model."])
    fp8 = {k: (v.to(torch.float8_e4m3fn) if v.dim() == 2 and k.endswith("weight") and "pad_token" not in k else v)
           for k, v in state.items()}
    file = tmp_path / "z_image_fp8_e4m3fn.safetensors"
    save_file(fp8, file)
    model = load_component(file, "transformer", config=str(tiny_z_image))
    assert is_fp8_model(model)
    assert model.layers[0].attention.to_q.weight.dtype == torch.float8_e4m3fn
    assert model.x_pad_token.dtype == torch.float32 and model.dtype == torch.float32
    reference, rounded = load_component(tiny_z_image, "transformer"), load_component(tiny_z_image, "transformer")
    with torch.no_grad():
        for module in rounded.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(module.weight.to(torch.float8_e4m3fn).float())
        x, t, caps = inputs(16, 40)
        got = model(x, t, caps)[0]
        assert torch.equal(got, rounded(x, t, caps)[0])
        expected = reference(x, t, caps)[0]
    assert 0 < ((got - expected).abs().max() / expected.abs().max()).item() < 0.3


@pytest.mark.parametrize("prefix", ["model.", ""], ids=["hf-causal-lm", "bare"])
def test_qwen3_text_encoder_file_encodes_like_the_folder(tiny_z_image, tmp_path, prefix):
    state = load_file(tiny_z_image / "text_encoder" / "model.safetensors")
    file = tmp_path / "qwen_3_tiny.safetensors"
    save_file({prefix + k: v for k, v in state.items()}, file)
    tokenizer = load_component(tiny_z_image, "tokenizer")
    folder_encoder, file_encoder = load_component(tiny_z_image, "text_encoder"), load_component(file, "text_encoder")
    prompts = ["a red fox in snow", "東京の夜景"]
    for a, b in zip(encode_prompts(folder_encoder, tokenizer, prompts), encode_prompts(file_encoder, tokenizer,
                                                                                        prompts)):
        assert torch.equal(a, b)


def test_files_of_another_family_or_component_are_refused_with_what_to_pass(tiny_z_image, original_files, tmp_path):
    with pytest.raises(CheckpointError, match="holds a Z-Image transformer alone, not a `unet`; pass it as "
                                              "`transformer`"):
        load_component(original_files[""], "unet")
    with pytest.raises(CheckpointError, match="not Z-Image-Turbo's layout.*pass the folder"):
        load_component(original_files[""], "transformer")  # 16-wide heads: RoPE axes cannot be inferred
    vae_only = tmp_path / "vae.safetensors"
    save_file({"encoder.conv_in.weight": torch.zeros(4, 3, 3, 3), "decoder.conv_out.weight": torch.zeros(3, 4, 3, 3)},
              vae_only)
    with pytest.raises(CheckpointError, match="is not a Z-Image transformer.*VAE weights only"):
        load_component(vae_only, "transformer")
    from nodegraph.models.single_file.detect import detect

    with pytest.raises(CheckpointError, match="Z-Image transformer alone.*graphs/z_image.yaml"):
        detect({k: tuple(v.shape) for k, v in load_file(original_files[""]).items()}, "z.safetensors")


def test_inspect_names_family_component_dtype_and_parameter_count(tiny_z_image, original_files, tmp_path):
    from nodegraph.models.single_file.inspect import describe, render

    info = describe(str(original_files["model.diffusion_model."]), config=str(tiny_z_image))
    component = info["components"]["transformer"]
    assert info["family"] == "z_image_transformer" and component["dtype"] == "float32"
    assert component["parameters"] == sum(p.numel() for p in diffusers_transformer(tiny_z_image).parameters())
    assert info["unused_keys"] == ["model.diffusion_model.norm_final.weight"]
    assert "Z-Image transformer" in render(info)
    state = load_file(tiny_z_image / "text_encoder" / "model.safetensors")
    file = tmp_path / "qwen.safetensors"
    save_file({"model." + k: v.to(torch.bfloat16) for k, v in state.items()}, file)
    info = describe(str(file))
    assert info["family"] == "qwen3_text_encoder"
    assert info["components"]["text_encoder"]["dtype"] == "bfloat16"
    assert info["components"]["text_encoder"]["parameters"] == sum(v.numel() for v in state.values())


@pytest.mark.parametrize("extra, message", [({"layers.0.attention.out.comfy_quant": torch.zeros(3, dtype=torch.uint8)},
                                             "ComfyUI quantized export"),
                                            ({"siglip_pad_token": torch.zeros(1, 48)}, "Z-Image Omni")])
def test_unsupported_variants_are_named(original_files, tmp_path, extra, message):
    file = tmp_path / "variant.safetensors"
    save_file({**load_file(original_files[""]), **extra}, file)
    with pytest.raises(CheckpointError, match=message):
        load_component(file, "transformer")


def test_a_wide_transformer_file_can_be_stored_as_float8_on_request(tiny_z_image, original_files):
    from nodegraph.models.fp8 import is_fp8_model

    model = load_component(original_files[""], "transformer", config=str(tiny_z_image), weights="fp8_e4m3fn")
    assert is_fp8_model(model) and model.layers[1].feed_forward.w2.weight.dtype == torch.float8_e4m3fn
    x, t, caps = inputs(16, 40)
    with torch.no_grad():
        assert torch.isfinite(model(x, t, caps)[0]).all()
