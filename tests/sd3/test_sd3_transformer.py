"""nodegraph's SD3Transformer2DModel against diffusers 0.42.1's, on the same weights: two tiny configurations unlike
diffusers' test dummies — a Large-like one (RMS QK-norm, no dual attention) and a Medium-like one (MMDiT-X dual
attention in its first blocks) — every weight and the stored position table moved off their initialisation, a batch
of 2 with different timesteps, a non-square latent cropped from the position table off its centre. The real SD3.5
Medium and Large configurations are checked on the meta device against diffusers' own state dicts."""

from __future__ import annotations

import json

import pytest
import torch

from nodegraph.models.loading import CheckpointError, load_component

BASE = dict(sample_size=16, patch_size=2, in_channels=16, out_channels=16, joint_attention_dim=20,
            pooled_projection_dim=12, qk_norm="rms_norm")
TINY = {
    "large": dict(BASE, num_layers=3, attention_head_dim=8, num_attention_heads=3, caption_projection_dim=24,
                  pos_embed_max_size=12, dual_attention_layers=[]),
    "medium": dict(BASE, num_layers=4, attention_head_dim=16, num_attention_heads=2, caption_projection_dim=32,
                   pos_embed_max_size=16, dual_attention_layers=[0, 2]),
    "sd3": dict(BASE, num_layers=2, attention_head_dim=8, num_attention_heads=2, caption_projection_dim=16,
                pos_embed_max_size=10, qk_norm=None),
}
# the hub's config.json values (facts note: SD3.5 Large / Medium, diffusers 0.42.1)
REAL = {
    "SD3.5-Large": dict(num_layers=38, num_attention_heads=38, attention_head_dim=64, caption_projection_dim=2432,
                        pos_embed_max_size=192, qk_norm="rms_norm", dual_attention_layers=()),
    "SD3.5-Medium": dict(num_layers=24, num_attention_heads=24, attention_head_dim=64, caption_projection_dim=1536,
                         pos_embed_max_size=384, qk_norm="rms_norm", dual_attention_layers=tuple(range(13))),
}


def build_folder(root, config: dict, seed: int):
    """A pipeline-style folder holding diffusers' tiny SD3 transformer, weights and position table perturbed."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    model = SD3Transformer2DModel(**config)
    with torch.no_grad():
        for p in [*model.parameters(), *model.buffers()]:
            p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(root / "transformer")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline",
                                                       "transformer": ["diffusers", "SD3Transformer2DModel"]}))
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {name: build_folder(tmp_path_factory.mktemp(f"sd3_{name}"), config, 30 + i)
            for i, (name, config) in enumerate(TINY.items())}


def inputs(dtype=torch.float32, seed=0):
    """Batch 2, a 6×10 latent (3×5 patches), 9 text tokens, the timesteps of SD3's 4-step schedule."""
    g = torch.Generator().manual_seed(seed)
    return dict(hidden_states=torch.randn(2, 16, 6, 10, generator=g).to(dtype),
                encoder_hidden_states=torch.randn(2, 9, 20, generator=g).to(dtype),
                pooled_projections=torch.randn(2, 12, generator=g).to(dtype),
                timestep=torch.tensor([857.692, 602.151]))


def run_both(folder, dtype, skip_layers=None):
    from diffusers import SD3Transformer2DModel as Theirs

    theirs = Theirs.from_pretrained(folder / "transformer", torch_dtype=dtype).eval()
    ours = load_component(folder, "transformer", dtype=dtype)
    kwargs = inputs(dtype)
    with torch.no_grad():
        expected = theirs(**{k: v.clone() for k, v in kwargs.items()}, skip_layers=skip_layers, return_dict=False)[0]
        got = ours(**kwargs, skip_layers=skip_layers)
    return expected, got, ours


@pytest.mark.parametrize("variant", list(TINY))
def test_transformer_matches_diffusers_bit_for_bit_in_fp32(folders, variant):
    expected, got, ours = run_both(folders[variant], torch.float32)
    assert type(ours).__module__ == "nodegraph.models.sd3_transformer"
    assert got.shape == (2, 16, 6, 10) and got.dtype == torch.float32
    assert torch.equal(expected, got)


@pytest.mark.parametrize("variant", ["large", "medium"])
def test_transformer_matches_diffusers_in_bf16(folders, variant):
    expected, got, _ = run_both(folders[variant], torch.bfloat16)
    assert got.dtype == torch.bfloat16
    assert torch.equal(expected, got)


@pytest.mark.parametrize("skip", [[1], [0, 3]], ids=["middle", "dual-and-last"])
def test_skipped_layers_match_diffusers(folders, skip):
    expected, got, _ = run_both(folders["medium"], torch.float32, skip_layers=skip)
    assert torch.equal(expected, got)


def _swap_halves(t: torch.Tensor, dim: int) -> None:
    t.copy_(torch.cat(t.chunk(2, dim=dim)[::-1], dim=dim))


def test_fixture_is_sensitive_to_every_input(folders):
    """The parity above would catch a model that ignored the timestep, the pooled or text states, skipped layers,
    MMDiT-X's attn2, the stored position table's rows, or swapped the final layer's (scale, shift)."""
    ours = load_component(folders["medium"], "transformer")
    kwargs = inputs()
    changes = {"timestep": kwargs["timestep"] + 20, "pooled_projections": kwargs["pooled_projections"].roll(1, 0),
               "encoder_hidden_states": kwargs["encoder_hidden_states"].roll(1, 0)}
    weights = {"pos_embed rows": (ours.pos_embed.pos_embed, 1),
               "attn2": (ours.transformer_blocks[0].attn2.to_out[0].weight, 0),
               "norm_out halves": (ours.norm_out.linear.weight, 0)}
    with torch.no_grad():
        base = ours(**kwargs)
        moved = {name: ours(**{**kwargs, name: value}) for name, value in changes.items()}
        moved["skip_layers"] = ours(**kwargs, skip_layers=[1])
        for name, (tensor, dim) in weights.items():
            saved = tensor.clone()
            _swap_halves(tensor, dim)
            moved[name] = ours(**kwargs)
            tensor.copy_(saved)
    for name, out in moved.items():
        assert (out - base).abs().max() > 1e-2, name


@pytest.mark.parametrize("name", list(REAL))
def test_real_sd35_configuration_has_diffusers_keys_and_shapes(name):
    from diffusers import SD3Transformer2DModel as Theirs

    from nodegraph.models.sd3_transformer import SD3Transformer2DModel, SD3TransformerConfig

    with torch.device("meta"):
        theirs = Theirs(**REAL[name])
        ours = SD3Transformer2DModel(SD3TransformerConfig(**REAL[name]))
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert len(expected) > 700
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in theirs.parameters())
    # parameters only: the stored position table (Medium: 384² × 1536) is a buffer
    assert (8.0e9 < n < 8.1e9) if name == "SD3.5-Large" else (2.2e9 < n < 2.3e9)


def test_latent_larger_than_the_position_table_is_refused(folders):
    ours = load_component(folders["sd3"], "transformer")
    kwargs = inputs()
    kwargs["hidden_states"] = torch.randn(2, 16, 22, 10)  # 11 patches high, table 10
    with pytest.raises(ValueError, match="pos_embed_max_size"):
        ours(**kwargs)


@pytest.mark.parametrize("change, message", [
    ({"caption_projection_dim": 20}, "`caption_projection_dim` is 20"),
    ({"qk_norm": "layer_norm"}, "`qk_norm` is 'layer_norm'"),
    ({"num_layers": "2"}, "`num_layers` is '2'"),
])
def test_broken_config_is_refused_naming_the_key(tmp_path, change, message):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "SD3Transformer2DModel", **TINY["large"],
                                                      **change}))
    with pytest.raises(CheckpointError, match="config.json") as e:
        load_component(tmp_path, "transformer")
    assert message in str(e.value)
