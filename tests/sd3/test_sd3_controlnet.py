"""nodegraph's SD3.5 ControlNet (models/sd3_controlnet.py) and the SD3 transformer's `control` residuals, against
diffusers 0.42.1's SD3ControlNetModel / SD3Transformer2DModel configured with ComfyUI's semantics (comfy/cldm/
dit_embedder.py, comfy/controlnet.py load_controlnet_sd35, comfy/ldm/modules/diffusionmodules/mmdit.py):

- diffusers' SD3.5 ControlNet takes its input tokens from outside (`use_pos_embed=False`): it is given ComfyUI's input
  (the main model's patch convolution plus ComfyUI's sincos table, written out below from its source);
- ComfyUI adds a residual after the MMDiT's last block too, where diffusers stops one block earlier: diffusers'
  transformer is given that last addition with a forward hook on its last block.
Tiny random models, every weight moved off its (partly zero) initialisation; batch 2, a non-square latent."""

from __future__ import annotations

import math

import pytest
import torch

from tests.sd3.tiny_sd3 import perturb

HEADS, HEAD_DIM, LAYERS, CHANNELS, POOLED = 2, 8, 2, 4, 12
DIM = HEADS * HEAD_DIM


def comfy_sincos_written_out(dim: int, h: int, w: int) -> torch.Tensor:
    """ComfyUI's get_2d_sincos_pos_embed_torch(dim, w, h) (val_center = val_magnitude = 7.5), one token at a time."""
    small = min(h, w)
    rows = torch.linspace(-(h / small) * 7.5 + 7.5, (h / small) * 7.5 + 7.5, h)
    cols = torch.linspace(-(w / small) * 7.5 + 7.5, (w / small) * 7.5 + 7.5, w)
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half // 2, dtype=torch.float32) / (half / 2.0))
    table = torch.zeros(h * w, dim)
    for r in range(h):
        for c in range(w):
            table[r * w + c] = torch.cat([(cols[c] * omega).sin(), (cols[c] * omega).cos(),
                                          (rows[r] * omega).sin(), (rows[r] * omega).cos()])
    return table


@pytest.fixture(scope="module")
def controlnets():
    from diffusers import SD3ControlNetModel

    from nodegraph.models.sd3_controlnet import SD3ControlNet, SD3ControlNetConfig

    torch.manual_seed(0)
    theirs = perturb(SD3ControlNetModel(
        patch_size=2, in_channels=CHANNELS, num_layers=LAYERS, attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS, joint_attention_dim=None, caption_projection_dim=DIM,
        pooled_projection_dim=POOLED, out_channels=CHANNELS, pos_embed_max_size=None, pos_embed_type=None,
        use_pos_embed=False, force_zeros_for_pooled_projection=False), 50, scale=0.2)
    ours = SD3ControlNet(SD3ControlNetConfig(num_layers=LAYERS, num_attention_heads=HEADS,
                                             attention_head_dim=HEAD_DIM, in_channels=CHANNELS,
                                             pooled_projection_dim=POOLED)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    patch = torch.nn.Conv2d(CHANNELS, DIM, 2, stride=2)  # the main transformer's pos_embed.proj
    return theirs, ours, patch


def inputs(seed=0):
    """Batch 2, a 6×10 latent (3×5 patches), its hint latents, pooled prompts, SD3 timesteps (σ·1000)."""
    g = torch.Generator().manual_seed(seed)
    return dict(latents=torch.randn(2, CHANNELS, 6, 10, generator=g), hint=torch.randn(2, CHANNELS, 6, 10, generator=g),
                pooled=torch.randn(2, POOLED, generator=g), timestep=torch.tensor([857.692, 602.151]))


def ours_residuals(ours, patch, x, strength=0.7):
    with torch.no_grad():
        return ours(ours.embed(patch, x["latents"]), x["hint"], x["pooled"], x["timestep"], strength=strength)


def test_sincos_is_comfyuis_table():
    from nodegraph.models.sd3_controlnet import comfy_sincos

    for h, w in ((3, 5), (4, 4), (7, 2)):
        assert torch.allclose(comfy_sincos(DIM, h, w), comfy_sincos_written_out(DIM, h, w), atol=1e-6)
    square = comfy_sincos(8, 4, 4)  # positions 0 … 15: the first token's column sines are sin(0) = 0
    assert torch.equal(square[0, :2], torch.zeros(2)) and math.isclose(square[-1, 4].item(), math.sin(15.0),
                                                                        abs_tol=1e-6)


def test_controlnet_matches_diffusers_given_comfyuis_input(controlnets):
    theirs, ours, patch = controlnets
    x = inputs()
    with torch.no_grad():
        tokens = patch(x["latents"]).flatten(2).transpose(1, 2) + comfy_sincos_written_out(DIM, 3, 5)
        expected = theirs(hidden_states=tokens, controlnet_cond=x["hint"], pooled_projections=x["pooled"],
                          timestep=x["timestep"], conditioning_scale=0.7, return_dict=False)[0]
    got = ours_residuals(ours, patch, x)
    assert len(got) == LAYERS and got[0].shape == (2, 15, DIM)
    for e, g in zip(expected, got):
        assert torch.allclose(e, g, atol=1e-5)


def test_sai_file_layout_loads_to_the_same_model(controlnets):
    """SAI's keys (fused qkv, attn.proj, mlp.fc1/fc2, adaLN_modulation.1, control_type), as diffusers'
    scripts/convert_sd3_controlnet_to_diffusers.py reads them, written here from diffusers' weights."""
    from nodegraph.models.sd3_controlnet import SD3ControlNet, sai_to_ours
    from tests.sd3.sd3_files import controlnet_to_sai

    theirs, ours, patch = controlnets
    state = theirs.state_dict()
    sai = controlnet_to_sai(state, 1.0)
    converted, config = sai_to_ours(sai, head_dim=HEAD_DIM)
    assert (config.num_layers, config.num_attention_heads, config.in_channels, config.pooled_projection_dim,
            config.control_type) == (LAYERS, HEADS, CHANNELS, POOLED, 1)
    loaded = SD3ControlNet(config).eval()
    loaded.load_state_dict(converted, strict=True)
    x = inputs(1)
    for a, b in zip(ours_residuals(ours, patch, x), ours_residuals(loaded, patch, x)):
        assert torch.equal(a, b)


def test_residuals_follow_strength_hint_and_inputs(controlnets):
    _, ours, patch = controlnets
    x = inputs()
    base = ours_residuals(ours, patch, x)
    assert all(torch.equal(r, torch.zeros_like(r)) for r in ours_residuals(ours, patch, x, strength=0.0))
    for key in ("hint", "pooled", "latents"):
        changed = ours_residuals(ours, patch, dict(x, **{key: x[key].roll(1, 0)}))
        assert (changed[-1] - base[-1]).abs().max() > 1e-2, key


def test_per_block_repeats_as_comfyui():
    from nodegraph.models.sd3_controlnet import per_block

    assert per_block(["a", "b"], 4) == ["a", "a", "b", "b"]
    assert per_block(["a", "b", "c"], 4) == ["a", "a", "b", "b"]  # ceil(4/3) = 2: the third never reached
    assert len(per_block(list(range(19)), 38)) == 38


@pytest.fixture(scope="module")
def transformers():
    from diffusers import SD3Transformer2DModel as Theirs

    from nodegraph.models.sd3_transformer import SD3Transformer2DModel, SD3TransformerConfig

    config = dict(sample_size=16, patch_size=2, in_channels=CHANNELS, out_channels=CHANNELS, num_layers=4,
                  attention_head_dim=HEAD_DIM, num_attention_heads=HEADS, joint_attention_dim=20,
                  caption_projection_dim=DIM, pooled_projection_dim=POOLED, pos_embed_max_size=12,
                  qk_norm="rms_norm")
    torch.manual_seed(1)
    theirs = perturb(Theirs(**config), 51, scale=0.2)
    ours = SD3Transformer2DModel(SD3TransformerConfig(**config)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


def transformer_inputs():
    g = torch.Generator().manual_seed(3)
    return dict(hidden_states=torch.randn(2, CHANNELS, 6, 10, generator=g),
                encoder_hidden_states=torch.randn(2, 9, 20, generator=g),
                pooled_projections=torch.randn(2, POOLED, generator=g), timestep=torch.tensor([857.692, 602.151]))


def test_transformer_adds_residuals_after_every_block_as_comfyui(transformers):
    """Two residuals over 4 blocks: diffusers adds r0, r0, r1 after blocks 0-2; ComfyUI also r1 after block 3, given
    to diffusers by a hook on its last block. Without `control` the output is unchanged."""
    from nodegraph.models.sd3_controlnet import per_block

    theirs, ours = transformers
    x = transformer_inputs()
    g = torch.Generator().manual_seed(4)
    residuals = [torch.randn(2, 15, DIM, generator=g) for _ in range(2)]
    hook = theirs.transformer_blocks[-1].register_forward_hook(lambda m, a, out: (out[0], out[1] + residuals[1]))
    try:
        with torch.no_grad():
            expected = theirs(**x, block_controlnet_hidden_states=residuals, return_dict=False)[0]
    finally:
        hook.remove()
    with torch.no_grad():
        plain_theirs = theirs(**x, return_dict=False)[0]
        got = ours(**x, control=per_block(residuals, 4))
        plain = ours(**x)
        none = ours(**x, control=[None] * 4)
    assert torch.allclose(expected, got, atol=1e-5)
    assert torch.equal(plain, plain_theirs) and torch.equal(plain, none)
    assert (got - plain).abs().max() > 5 / 255
