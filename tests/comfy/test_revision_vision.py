"""LoadCLIPVision + CLIPVisionEncode against transformers' CLIPVisionModelWithProjection on the same weights, fed
ComfyUI's preprocessing written out here (comfy/clip_model.py `clip_preprocess`: crop "center" scales the short
side and keeps the centre, "none" squashes; bicubic with antialias; 8-bit levels; CLIP mean/std); a file in
OpenCLIP's layout gives the same embeddings; files that are not CLIP-vision towers are refused by name."""

from __future__ import annotations

import pytest
import torch

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)


@pytest.fixture(scope="module")
def tower(tmp_path_factory):
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(3)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=128, intermediate_size=80, num_hidden_layers=2, num_attention_heads=2, patch_size=7,
        image_size=28, projection_dim=16, hidden_act="gelu")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp("vision") / "clip_vision_g.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return model, path


def comfy_pixels(image, size, crop):
    x = image  # (1, 3, H, W) in [0, 1]
    target = (size, size)
    if crop:
        scale = size / min(x.shape[2], x.shape[3])
        target = (round(scale * x.shape[2]), round(scale * x.shape[3]))
    x = torch.nn.functional.interpolate(x, size=target, mode="bicubic", antialias=True)
    h, w = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
    x = torch.clip(255.0 * x[:, :, h:h + size, w:w + size], 0, 255).round() / 255.0
    return (x - MEAN) / STD


def encode(path, image, crop="center", **load):
    from nodegraph.nodes.clip_vision import CLIPVisionEncode, LoadCLIPVision

    class Ctx:
        device = torch.device("cpu")

    model = LoadCLIPVision().run(LoadCLIPVision.Inputs(model=str(path), **load), Ctx())["clip_vision"]
    return CLIPVisionEncode().run(CLIPVisionEncode.Inputs(clip_vision=model, image=image, crop=crop), Ctx())[
        "image_embeds"]


@pytest.mark.parametrize("crop", ["center", "none"])
def test_clip_vision_encode_equals_transformers_on_comfyuis_preprocessing(tower, crop):
    model, path = tower
    image = torch.rand((1, 3, 45, 61), generator=torch.Generator().manual_seed(1))
    ours = encode(path, image, crop)
    with torch.no_grad():
        theirs = model(pixel_values=comfy_pixels(image, 28, crop == "center")).image_embeds
    assert ours.shape == (1, 16)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    # sensitivity: the other crop mode and another image give other embeddings
    with torch.no_grad():
        other = model(pixel_values=comfy_pixels(image, 28, crop != "center")).image_embeds
    assert (ours - other).abs().max() > 1e-3
    assert (ours - encode(path, image.flip(-1), crop)).abs().max() > 1e-3


def test_an_openclip_layout_file_gives_the_same_embeddings(tower, tmp_path):
    from safetensors.torch import save_file

    model, path = tower
    state, out = model.state_dict(), {}
    names = {"embeddings.class_embedding": "class_embedding", "embeddings.patch_embedding.weight": "conv1.weight",
             "embeddings.position_embedding.weight": "positional_embedding", "pre_layrnorm.weight": "ln_pre.weight",
             "pre_layrnorm.bias": "ln_pre.bias", "post_layernorm.weight": "ln_post.weight",
             "post_layernorm.bias": "ln_post.bias"}
    for key, name in names.items():
        out[f"visual.{name}"] = state[f"vision_model.{key}"]
    out["visual.proj"] = state["visual_projection.weight"].t()
    for n in range(2):
        src, dst = f"vision_model.encoder.layers.{n}.", f"visual.transformer.resblocks.{n}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([state[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for a, b in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("self_attn.out_proj", "attn.out_proj"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[f"{dst}{b}.{kind}"] = state[f"{src}{a}.{kind}"]
    save_file({k: v.contiguous() for k, v in out.items()}, tmp_path / "openclip.safetensors")
    image = torch.rand((1, 3, 28, 28), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(encode(tmp_path / "openclip.safetensors", image), encode(path, image))


def test_files_that_are_not_clip_vision_towers_are_refused_by_name(tmp_path):
    from safetensors.torch import save_file

    save_file({"model.diffusion_model.x": torch.zeros(2)}, tmp_path / "unet.safetensors")
    with pytest.raises(ValueError, match=r"`model`: unet.safetensors is not a CLIP-vision model"):
        encode(tmp_path / "unet.safetensors", torch.zeros((1, 3, 8, 8)))
    torch.save({"x": torch.zeros(1)}, tmp_path / "vision.pth")
    with pytest.raises(ValueError, match=r"vision.pth is a pickle.*allow_pickle=true"):
        encode(tmp_path / "vision.pth", torch.zeros((1, 3, 8, 8)))


def _crafted_tower(path):
    """A 1.3 MB file declaring a 1024-wide, 60-layer tower (a real one would be ~3 GB in fp32): each layer one
    one-element tensor, only layer 0's MLP weight sized (4096 × 1) so the tower's sizes can be read."""
    from safetensors.torch import save_file

    p = "vision_model."
    state = {f"{p}embeddings.class_embedding": torch.zeros(1024, dtype=torch.float16),
             f"{p}embeddings.patch_embedding.weight": torch.zeros((1024, 3, 14, 14), dtype=torch.float16),
             f"{p}embeddings.position_embedding.weight": torch.zeros((257, 1), dtype=torch.float16),
             "visual_projection.weight": torch.zeros((8, 1), dtype=torch.float16),
             f"{p}encoder.layers.0.mlp.fc1.weight": torch.zeros((4096, 1), dtype=torch.float16)}
    state.update({f"{p}encoder.layers.{n}.layer_norm1.weight": torch.zeros(1) for n in range(1, 60)})
    save_file(state, path)


def test_a_crafted_file_declaring_a_huge_tower_is_refused_before_any_weight_is_allocated(tmp_path, monkeypatch):
    """The tower its sizes describe is only ever built on the meta device; the key/shape check refuses it."""
    import sys

    import transformers

    built_on = []
    real = transformers.CLIPVisionModelWithProjection  # this lazy access may swap sys.modules["transformers"]

    class Spy(real):
        def __init__(self, config):
            built_on.append(torch.empty(0).device.type)  # the default device the constructor allocates on
            assert built_on[-1] == "meta", "the tower was built in real memory before its file was checked"
            super().__init__(config)

    # patch the module object the loader's `from transformers import ...` will read, not a stale one
    monkeypatch.setattr(sys.modules["transformers"], "CLIPVisionModelWithProjection", Spy)
    _crafted_tower(tmp_path / "huge.safetensors")
    with pytest.raises(ValueError, match=r"`model`: huge.safetensors: its CLIP-vision weights do not fit the "
                                         r"60-layer, 1024-wide tower .*problems: `vision_model"):
        encode(tmp_path / "huge.safetensors", torch.zeros((1, 3, 8, 8)))
    assert built_on == ["meta"]  # described once, on meta, then refused


def test_a_tower_over_the_size_bounds_is_refused_naming_the_bound():
    from nodegraph.models.clip_vision import MAX_LAYERS, VisionFileError, vision_shape

    p = "vision_model."
    meta = {f"{p}embeddings.class_embedding": (1024,), f"{p}embeddings.patch_embedding.weight": (1024, 3, 14, 14),
            f"{p}embeddings.position_embedding.weight": (257, 1024), "visual_projection.weight": (8, 1024),
            **{f"{p}encoder.layers.{n}.mlp.fc1.weight": (4096, 1024) for n in range(MAX_LAYERS + 1)}}
    state = {k: torch.empty(shape, device="meta") for k, shape in meta.items()}
    with pytest.raises(VisionFileError, match=f"layer count of {MAX_LAYERS + 1} is outside 1..{MAX_LAYERS}"):
        vision_shape(state, "big.safetensors")
    del state[f"{p}encoder.layers.0.mlp.fc1.weight"]
    with pytest.raises(VisionFileError, match=r"`vision_model.encoder.layers.0.mlp.fc1.weight` is missing, not a "
                                              r"2-D tensor"):
        vision_shape(state, "big.safetensors")


def test_a_fifo_or_a_missing_file_as_the_clip_vision_file_is_refused_at_once_naming_the_node(tmp_path, capsys):
    """A FIFO is refused by the checked reader (never opened to block): `nodegraph run` ends within the timeout."""
    import os
    import subprocess
    import sys

    from nodegraph.cli import main

    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    graph = tmp_path / "load.yaml"
    graph.write_text("nodegraph: 1\ninputs:\n  vision: {type: str, default: x.safetensors}\nnodes:\n  vision:\n"
                     "    type: LoadCLIPVision\n    model: $inputs.vision\noutputs:\n  vision: $vision.clip_vision\n")
    done = subprocess.run([sys.executable, "-m", "nodegraph.cli", "run", str(graph), "--set", f"vision={fifo}",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "node `vision` (LoadCLIPVision@1) failed" in done.stderr, done.stderr
    assert "pipe.safetensors is a pipe, not a regular file" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    graph.write_text(graph.read_text().replace("\n    model:", "\n    allow_pickle: true\n    model:"))
    for missing in ("none.safetensors", "none.pth"):  # the pickle path is read through the checked opener too
        assert main(["run", str(graph), "--set", f"vision={tmp_path / missing}", "--out", str(tmp_path / "out"),
                     "-q"]) == 1
        err = capsys.readouterr().err
        assert f"`model`: no such file: {missing}" in err and "LoadCLIPVision@1" in err and "Traceback" not in err


def test_a_crafted_file_is_refused_from_its_header_before_its_tensors_are_read(tmp_path, monkeypatch):
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: pytest.fail("the tensors were read"))
    _crafted_tower(tmp_path / "huge.safetensors")
    with pytest.raises(ValueError, match=r"`model`: huge.safetensors: its CLIP-vision weights do not fit"):
        encode(tmp_path / "huge.safetensors", torch.zeros((1, 3, 8, 8)))
