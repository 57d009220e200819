"""nodegraph's FluxTransformer2DModel against diffusers 0.42.1's, on the same weights: a tiny configuration unlike
diffusers' test dummies (16 packed channels, 2 double + 3 single blocks, 3 heads of 16 over uneven RoPE axes
(2, 6, 8), 24-wide T5 states, 20-wide pooled states), every weight moved off its initialisation, with and
without the guidance embedding (dev / schnell), a batch of 2 with different timesteps and a non-square token
grid. The real FLUX.1-dev and -schnell configurations are checked on the meta device against diffusers' own
state dicts."""

from __future__ import annotations

import json

import pytest
import torch

from nodegraph.models.loading import CheckpointError, load_component

TINY = dict(patch_size=1, in_channels=16, out_channels=None, num_layers=2, num_single_layers=3,
            attention_head_dim=16, num_attention_heads=3, joint_attention_dim=24, pooled_projection_dim=20,
            axes_dims_rope=[2, 6, 8])


def build_folder(root, guidance_embeds: bool, seed: int):
    """A pipeline-style folder holding diffusers' tiny Flux transformer, weights perturbed (seeded)."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    model = FluxTransformer2DModel(**TINY, guidance_embeds=guidance_embeds)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(root / "transformer")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline",
                                                       "transformer": ["diffusers", "FluxTransformer2DModel"]}))
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {"dev": build_folder(tmp_path_factory.mktemp("flux_dev"), True, 27),
            "schnell": build_folder(tmp_path_factory.mktemp("flux_schnell"), False, 28)}


def inputs(dtype=torch.float32, seed=0, guidance=True):
    """Batch 2, a 3×5 packed grid (15 image tokens), 7 text tokens; ids as FluxPipeline makes them."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(3.0), torch.arange(5.0), indexing="ij")
    img_ids = torch.stack([torch.zeros(15), rows.flatten(), cols.flatten()], dim=-1)  # (15, 3)
    return dict(hidden_states=torch.randn(2, 15, 16, generator=g).to(dtype),
                encoder_hidden_states=torch.randn(2, 7, 24, generator=g).to(dtype),
                pooled_projections=torch.randn(2, 20, generator=g).to(dtype),
                timestep=torch.tensor([0.82723, 0.34726]), img_ids=img_ids, txt_ids=torch.zeros(7, 3),
                guidance=torch.tensor([3.5, 3.5]) if guidance else None)


def run_both(folder, dtype, guidance):
    from diffusers import FluxTransformer2DModel as Theirs

    theirs = Theirs.from_pretrained(folder / "transformer", torch_dtype=dtype).eval()
    ours = load_component(folder, "transformer", dtype=dtype)
    kwargs = inputs(dtype, guidance=guidance)
    with torch.no_grad():
        expected = theirs(**{k: (v.clone() if v is not None else None) for k, v in kwargs.items()},
                          return_dict=False)[0]
        got = ours(**kwargs)
    return expected, got, ours


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_transformer_matches_diffusers_bit_for_bit_in_fp32(folders, variant):
    expected, got, ours = run_both(folders[variant], torch.float32, guidance=variant == "dev")
    assert type(ours).__module__ == "nodegraph.models.flux_transformer"
    assert got.shape == (2, 15, 16) and got.dtype == torch.float32
    assert torch.equal(expected, got)  # measured: bit-equal (same operations, same order)


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_transformer_matches_diffusers_in_bf16(folders, variant):
    expected, got, _ = run_both(folders[variant], torch.bfloat16, guidance=variant == "dev")
    assert got.dtype == torch.bfloat16
    assert torch.equal(expected, got)  # measured: bit-equal, the timestep cast to bf16 before ×1000 included


def test_fixture_is_sensitive_to_every_input(folders):
    """The parity above would catch a model that ignored the guidance, the timestep, the pooled or T5 states,
    the positions, or swapped the final layer's (scale, shift)."""
    ours = load_component(folders["dev"], "transformer")
    kwargs = inputs()
    changes = {"guidance": torch.tensor([4.5, 4.5]), "timestep": kwargs["timestep"] + 0.05,
               "pooled_projections": kwargs["pooled_projections"].roll(1, 0),
               "encoder_hidden_states": kwargs["encoder_hidden_states"].roll(1, 0),  # (text order alone does not
               # matter: all text positions are (0, 0, 0))
               "img_ids": kwargs["img_ids"].flip(0)}
    with torch.no_grad():
        base = ours(**kwargs)
        moved = {name: ours(**{**kwargs, name: value}) for name, value in changes.items()}
        weight = ours.norm_out.linear.weight
        saved = weight.clone()
        weight.copy_(torch.cat(saved.chunk(2)[::-1]))
        moved["norm_out halves swapped"] = ours(**kwargs)
        weight.copy_(saved)
    for name, out in moved.items():
        assert (out - base).abs().max() > 1e-2, name


def test_dev_model_needs_guidance(folders):
    ours = load_component(folders["dev"], "transformer")
    with pytest.raises(ValueError, match="pass `guidance`"):
        ours(**inputs(guidance=False))


@pytest.mark.parametrize("guidance_embeds", [True, False], ids=["FLUX.1-dev", "FLUX.1-schnell"])
def test_real_flux_configuration_has_diffusers_keys_and_shapes(guidance_embeds):
    from diffusers import FluxTransformer2DModel as Theirs

    from nodegraph.models.flux_transformer import FluxTransformer2DModel, FluxTransformerConfig

    with torch.device("meta"):
        theirs = Theirs(guidance_embeds=guidance_embeds)  # class defaults = FLUX.1's sizes
        ours = FluxTransformer2DModel(FluxTransformerConfig(guidance_embeds=guidance_embeds))
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert len(expected) > 1000
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in theirs.parameters())
    assert 11.8e9 < n < 12.0e9  # FLUX.1 is a 12B transformer


@pytest.mark.parametrize("change, message", [
    ({"axes_dims_rope": [4, 6, 8]}, "`axes_dims_rope` is (4, 6, 8)"),
    ({"num_layers": "2"}, "`num_layers` is '2'"),
])
def test_broken_config_is_refused_naming_the_key(tmp_path, change, message):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "FluxTransformer2DModel", **TINY, **change}))
    with pytest.raises(CheckpointError, match="config.json") as e:
        load_component(tmp_path, "transformer")
    assert message in str(e.value)
