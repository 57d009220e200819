"""nodegraph's GLIGEN (models/gligen.py) against diffusers' gated UNet (GLIGENTextBoundingboxProjection +
GatedSelfAttentionDense in each BasicTransformerBlock) with the same tensors, read from a ComfyUI-layout file."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def models(gligen_sd):
    from nodegraph.models.gligen import read_gligen
    from nodegraph.models.loading import load_component

    folder, theirs, path = gligen_sd
    return load_component(folder, "unet"), theirs, read_gligen(path)


def _inputs(phrase_dim: int, n: int = 2):
    g = torch.Generator().manual_seed(3)
    boxes = torch.zeros(1, 30, 4)
    boxes[0, :n] = torch.tensor([[0.25, 0.375, 0.5, 0.75], [0.5, 0.0, 1.0, 0.25]][:n])
    masks = torch.zeros(1, 30)
    masks[0, :n] = 1
    phrases = torch.zeros(1, 30, phrase_dim)
    phrases[0, :n] = torch.randn(n, phrase_dim, generator=g)
    x = torch.randn(1, 4, 16, 16, generator=g)
    context = torch.randn(1, 77, 32, generator=g)
    return boxes, masks, phrases, x, context


def test_grounded_unet_equals_diffusers_gated_unet(models):
    from nodegraph.models.gligen import grounded_unet

    ours, theirs, gligen = models
    boxes, masks, phrases, x, context = _inputs(gligen.phrase_dim)
    with torch.no_grad():
        expected = theirs(x, 500, context, cross_attention_kwargs={
            "gligen": {"boxes": boxes, "masks": masks, "positive_embeddings": phrases}}).sample
        got = grounded_unet(ours, gligen, gligen.tokens(boxes, masks, phrases))(x, 500, encoder_hidden_states=context)
        plain = ours(x, 500, encoder_hidden_states=context)
        moved = boxes.clone()
        moved[0, 0] += 0.2
        elsewhere = grounded_unet(ours, gligen, gligen.tokens(moved, masks, phrases))(
            x, 500, encoder_hidden_states=context)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (got - plain).abs().max() > 1e-2  # the fusers act …
    assert (got - elsewhere).abs().max() > 1e-3  # … and read the boxes
    # the loaded UNet is left as it was: called alone it still has no fusers
    with torch.no_grad():
        torch.testing.assert_close(ours(x, 500, encoder_hidden_states=context), plain, atol=0, rtol=0)


def test_negative_half_with_null_tokens_equals_diffusers_cfg_batch(models):
    """diffusers' pipeline grounds the negative half of a CFG batch with mask 0 (null features only): a
    [negative; positive] batch with two rows of tokens, the first all-null, gives the same."""
    from nodegraph.models.gligen import grounded_unet

    ours, theirs, gligen = models
    boxes, masks, phrases, x, context = _inputs(gligen.phrase_dim)
    x2, ctx2 = torch.cat([x, x]), torch.cat([context.flip(1), context])
    b2, p2, m2 = torch.cat([boxes, boxes]), torch.cat([phrases, phrases]), torch.cat([torch.zeros_like(masks), masks])
    with torch.no_grad():
        expected = theirs(x2, 300, ctx2, cross_attention_kwargs={
            "gligen": {"boxes": b2, "masks": m2, "positive_embeddings": p2}}).sample
        objs = gligen.tokens(b2, m2, p2)  # (2, 30, D)
        got = grounded_unet(ours, gligen, objs)(x2, 300, encoder_hidden_states=ctx2)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_gligen_file_of_another_model_is_refused_with_both_shapes(models, tmp_path):
    from safetensors.torch import save_file

    from nodegraph.models.gligen import GLIGENError, grounded_unet, read_gligen
    from tiny_gligen import comfy_layout

    ours, theirs, gligen = models
    sd = {k: v for k, v in comfy_layout(theirs).items() if not k.startswith("middle_block.")}
    save_file(sd, str(tmp_path / "three.safetensors"))
    short = read_gligen(tmp_path / "three.safetensors")
    with pytest.raises(GLIGENError, match=r"does not match this checkpoint's UNet: it has 3 fusers .* the UNet 4 "
                                          r"transformer blocks"):
        grounded_unet(ours, short, torch.zeros(1, 30, short.token_dim))
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(GLIGENError, match="is not a GLIGEN text-box file"):
        read_gligen(tmp_path / "other.safetensors")
    damaged = {k: v for k, v in comfy_layout(theirs).items() if not k.endswith("middle_block.1.transformer_blocks.0."
                                                                                 "fuser.alpha_dense")}
    save_file(damaged, str(tmp_path / "damaged.safetensors"))
    with pytest.raises(GLIGENError, match=r"damaged.safetensors: 1 tensors of a GLIGEN text-box model are missing "
                                          r"\(fusers.1.alpha_dense"):
        read_gligen(tmp_path / "damaged.safetensors")


def test_bf16_run_keeps_the_position_net_in_float32(models, gligen_sd):
    """The boxes' Fourier angles (up to 56 rad) need float32; the fusers take the UNet's dtype."""
    from nodegraph.models.gligen import grounded_unet, read_gligen
    from nodegraph.models.loading import load_component

    folder, _, path = gligen_sd
    ours, _, gligen = models
    half = read_gligen(path).to_run(torch.device("cpu"), torch.bfloat16)
    assert half.position_net.linears[0].weight.dtype == torch.float32
    assert half.fusers[0].linear.weight.dtype == torch.bfloat16
    boxes, masks, phrases, x, context = _inputs(gligen.phrase_dim)
    torch.testing.assert_close(half.tokens(boxes, masks, phrases), gligen.tokens(boxes, masks, phrases),
                               atol=0, rtol=0)
    unet = load_component(folder, "unet", dtype=torch.bfloat16)
    with torch.no_grad():
        out = grounded_unet(unet, half, half.tokens(boxes, masks, phrases))(
            x.bfloat16(), 500, encoder_hidden_states=context.bfloat16())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_more_than_30_boxes_are_refused():
    from nodegraph.models.gligen import GLIGENError, pad_objects

    boxes = [(0.0, 0.0, 0.5, 0.5)] * 31
    with pytest.raises(GLIGENError, match="31 GLIGEN boxes on one prompt; GLIGEN reads at most 30"):
        pad_objects(boxes, [torch.zeros(8)] * 31, 8)


def test_a_31st_comfyui_box_on_one_prompt_is_refused_before_encoding():
    from nodegraph.nodes.gligen import ComfyGLIGENTextBox

    gligen = object()
    full = [{"embeddings": None, "gligen": {"model": gligen, "boxes": [None] * 30}}]
    inputs = ComfyGLIGENTextBox.Inputs.model_construct(conditioning=full, gligen=gligen, text_encoder=None,
                                                       tokenizer=None, text="sun", width=64, height=64, x=0, y=0)
    with pytest.raises(ValueError, match="the prompt already has 30 GLIGEN boxes, the most GLIGEN reads"):
        ComfyGLIGENTextBox().run(inputs, None)


def test_a_fifo_or_a_missing_file_as_the_gligen_file_is_refused_at_once_naming_the_node(tmp_path, capsys):
    """A FIFO is refused by the checked reader (never opened to block): `nodegraph run` ends within the timeout."""
    import os
    import subprocess
    import sys

    from nodegraph.cli import main

    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    graph = tmp_path / "load.yaml"
    graph.write_text("nodegraph: 1\ninputs:\n  gligen: {type: str, default: x.safetensors}\nnodes:\n  gligen:\n"
                     "    type: LoadGLIGEN\n    model: $inputs.gligen\noutputs:\n  gligen: $gligen.gligen\n")
    done = subprocess.run([sys.executable, "-m", "nodegraph.cli", "run", str(graph), "--set", f"gligen={fifo}",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "node `gligen` (LoadGLIGEN@1) failed" in done.stderr, done.stderr
    assert "pipe.safetensors is a pipe, not a regular file" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    missing = tmp_path / "none.safetensors"
    assert main(["run", str(graph), "--set", f"gligen={missing}", "--out", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"`model`: no such file '{missing}'" in err and "Traceback" not in err


def test_more_than_30_phrases_for_gligenunet_are_refused_before_any_is_encoded():
    from nodegraph.nodes.gligen import GLIGENUNet

    inputs = GLIGENUNet.Inputs.model_construct(unet=None, gligen=None, text_encoder=None, tokenizer=None,
                                               phrases=["sun"] * 31, boxes=[[0.0, 0.0, 0.5, 0.5]] * 31,
                                               guidance_scale=7.5)
    with pytest.raises(ValueError, match="`phrases`: 31 phrases; GLIGEN reads at most 30 boxes"):
        GLIGENUNet().run(inputs, None)  # no text encoder: encoding a phrase would fail otherwise
