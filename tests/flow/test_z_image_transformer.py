"""nodegraph's ZImageTransformer2DModel against diffusers 0.42.1's, on the same weights: a tiny configuration
unlike diffusers' test dummies (uneven axes, one refiner layer, 24-wide captions), every weight moved off its
initialisation (the pad tokens, zeros at init, included), a batch whose captions pad to different lengths (the
key-mask path) and a non-square latent whose image tokens need padding. The real Z-Image-Turbo configuration is
checked on the meta device against diffusers' own state dict."""

from __future__ import annotations

import json

import pytest
import torch

from nodegraph.models.loading import CheckpointError, load_component

TINY = dict(all_patch_size=[2], all_f_patch_size=[1], in_channels=16, dim=64, n_layers=2, n_refiner_layers=1,
            n_heads=4, n_kv_heads=4, norm_eps=1e-5, qk_norm=True, cap_feat_dim=24, rope_theta=256.0,
            t_scale=1000.0, axes_dims=[4, 6, 6], axes_lens=[160, 24, 24])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A pipeline-style folder holding diffusers' tiny transformer, weights perturbed (seeded)."""
    from diffusers import ZImageTransformer2DModel

    torch.manual_seed(26)
    model = ZImageTransformer2DModel(**TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    root = tmp_path_factory.mktemp("zimage")
    model.save_pretrained(root / "transformer")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "ZImagePipeline",
                                                       "transformer": ["diffusers", "ZImageTransformer2DModel"]}))
    return root


def diffusers_model(folder, dtype=torch.float32):
    from diffusers import ZImageTransformer2DModel

    return ZImageTransformer2DModel.from_pretrained(folder / "transformer", torch_dtype=dtype).eval()


def inputs(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(16, 1, 12, 10, generator=g, dtype=dtype) for _ in range(2)]  # 6×5 = 30 image tokens → 32
    caps = [torch.randn(n, 24, generator=g).to(dtype) for n in (7, 40)]  # pad to 32 and 64: masked batch
    return x, torch.tensor([0.25, 0.25]), caps


def run_both(folder, dtype):
    theirs, ours = diffusers_model(folder, dtype), load_component(folder, "transformer", dtype=dtype)
    x, t, caps = inputs(dtype)
    with torch.no_grad():
        expected = theirs([v.clone() for v in x], t, [c.clone() for c in caps], return_dict=False)[0]
        got = ours(x, t, caps)
    return expected, got, ours


def test_transformer_matches_diffusers_bit_for_bit_in_fp32(folder):
    expected, got, ours = run_both(folder, torch.float32)
    assert type(ours).__module__ == "nodegraph.models.z_image_transformer"
    assert [g.shape for g in got] == [(16, 1, 12, 10)] * 2
    for e, g in zip(expected, got):
        assert torch.equal(e, g)


def test_transformer_matches_diffusers_in_bf16(folder):
    expected, got, _ = run_both(folder, torch.bfloat16)
    for e, g in zip(expected, got):
        assert g.dtype == torch.bfloat16
        assert torch.equal(e, g)  # measured: bit-equal (same operations, same order)


def test_fixture_is_sensitive_to_pad_tokens_timestep_and_caption(folder):
    """The parity above would catch a model that ignored the learned pad tokens, the timestep or the caption."""
    ours = load_component(folder, "transformer")
    x, t, caps = inputs()
    with torch.no_grad():
        base = ours(x, t, caps)[1]
        moved = {"timestep": ours(x, t + 0.1, caps)[1], "caption": ours(x, t, [caps[0], caps[1].roll(1, 0)])[1]}
        for name in ("x_pad_token", "cap_pad_token"):
            saved = getattr(ours, name).clone()
            getattr(ours, name).zero_()
            moved[name] = ours(x, t, caps)[1]
            getattr(ours, name).copy_(saved)
    for name, out in moved.items():
        assert (out - base).abs().max() > 1e-2, name


def test_real_z_image_turbo_configuration_has_diffusers_keys_and_shapes():
    from diffusers import ZImageTransformer2DModel as Theirs

    from nodegraph.models.z_image_transformer import ZImageTransformer2DModel, ZImageTransformerConfig

    with torch.device("meta"):
        theirs = Theirs()  # class defaults = Z-Image-Turbo's configuration
        ours = ZImageTransformer2DModel(ZImageTransformerConfig())
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert len(expected) > 500
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


@pytest.mark.parametrize("change, message", [
    ({"siglip_feat_dim": 32}, "`siglip_feat_dim` is 32, but nodegraph supports None only"),
    ({"axes_dims": [4, 4, 4]}, "`axes_dims` is (4, 4, 4)"),
    ({"dim": "64"}, "`dim` is '64'"),
])
def test_unsupported_or_broken_config_is_refused_naming_the_key(tmp_path, change, message):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "ZImageTransformer2DModel", **TINY, **change}))
    with pytest.raises(CheckpointError, match="config.json") as e:
        load_component(tmp_path, "transformer")
    assert message in str(e.value)


def test_inputs_beyond_the_rope_tables_are_refused_clearly(folder):
    ours = load_component(folder, "transformer")
    x, t, caps = inputs()
    with pytest.raises(ValueError, match=r"need more RoPE positions than this model has \(axes_lens \[160, 24, 24\]"):
        ours([torch.randn(16, 1, 50, 10)] * 2, t, caps)  # 25 rows of patches > 24
    with pytest.raises(ValueError, match="160 caption tokens"):
        ours(x, t, [torch.randn(160, 24)] * 2)
    with pytest.raises(ValueError, match="2 latents but 1 captions"):
        ours(x, t, caps[:1])
