"""The attention caches (TaylorSeer, FasterCache, pyramid attention broadcast) on nodegraph's Flux transformer
equal diffusers 0.42.1's hooks with their default Flux settings on the same tiny weights (schnell-like: no
guidance embedding): the same calls in which the attention computed (counted at a double block's `to_q`), the
same outputs along a 20-step flow-matching trajectory, the output moved by the cache. The block-skipping caches
(first-block cache, MagCache with diffusers' FLUX_MAG_RATIOS) equal diffusers' hooks the same way: the same calls
skipped (counted at the last single block, which runs only in full calls), outputs within 1e-5."""

from __future__ import annotations

import json

import pytest
import torch

from nodegraph.models.loading import load_component
from nodegraph.models.step_caches.handle import CachedTransformer, make_cache

import diffusers  # a test dependency: a broken install must fail, not skip
TINY = dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=24, pooled_projection_dim=20, axes_dims_rope=(4, 6, 6))
SIGMAS = torch.linspace(1.0, 0.0, 21)
STEPS = len(SIGMAS) - 1


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(41)
    model = FluxTransformer2DModel(**TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    root = tmp_path_factory.mktemp("flux-caches")
    model.save_pretrained(root / "transformer")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline",
                                                       "transformer": ["diffusers", "FluxTransformer2DModel"]}))
    build = lambda: FluxTransformer2DModel.from_pretrained(root / "transformer").eval()  # noqa: E731
    return load_component(root, "transformer"), build


def sample(call, clock=None):
    """Flow-matching Euler on a 3×5 packed grid with 7 text tokens; Flux takes timestep = σ (t/1000)."""
    g = torch.Generator().manual_seed(5)
    rows, cols = torch.meshgrid(torch.arange(3.0), torch.arange(5.0), indexing="ij")
    fixed = dict(encoder_hidden_states=torch.randn(1, 7, 24, generator=g), pooled_projections=torch.randn(1, 20,
                 generator=g), img_ids=torch.stack([torch.zeros(15), rows.flatten(), cols.flatten()], -1),
                 txt_ids=torch.zeros(7, 3))
    x, outs = torch.randn(1, 15, 16, generator=g), []
    with torch.no_grad():
        for k in range(STEPS):
            if clock is not None:
                clock["t"] = 1000.0 * SIGMAS[k].item()
            out = call(hidden_states=x.clone(), timestep=SIGMAS[k].reshape(1), **fixed)
            outs.append(out)
            x = x + (SIGMAS[k + 1] - SIGMAS[k]) * out
    return torch.stack(outs)


def theirs_with(build, apply, clock=None):
    from diffusers.hooks.hooks import CacheContext, _set_cache_context

    model = build()
    apply(model)
    _set_cache_context(model, CacheContext("cond"))  # as FluxPipeline's `with transformer.cache_context("cond")`
    calls = []
    model.transformer_blocks[1].attn.to_q.register_forward_hook(lambda *a: calls.append(1))
    return sample(lambda **kw: model(**kw, return_dict=False)[0], clock), len(calls)


def ours_with(model, method):
    cache, calls = make_cache(method), []
    handle = model.transformer_blocks[1].attn.to_q.register_forward_hook(lambda *a: calls.append(1))
    try:
        return sample(CachedTransformer(model, cache, method)), len(calls), cache
    finally:
        handle.remove()


def taylorseer(clock):
    from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache

    return lambda m: apply_taylorseer_cache(m, TaylorSeerCacheConfig())


def pab(clock):
    from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

    return lambda m: apply_pyramid_attention_broadcast(m, PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2, current_timestep_callback=lambda: clock["t"]))


def faster(clock):
    from diffusers.hooks import FasterCacheConfig, apply_faster_cache

    return lambda m: apply_faster_cache(m, FasterCacheConfig(
        is_guidance_distilled=True, current_timestep_callback=lambda: clock["t"],
        attention_weight_callback=lambda _: 0.5))


@pytest.mark.parametrize("method, their_hook", [("taylorseer", taylorseer), ("pab", pab), ("faster", faster)])
def test_attention_caches_on_flux_match_diffusers_hooks(flux, method, their_hook):
    ours, build = flux
    clock = {}
    expected, their_calls = theirs_with(build, their_hook(clock), clock)
    got, our_calls, cache = ours_with(ours, method)
    assert our_calls == their_calls == sum(cache.decisions), (our_calls, their_calls, cache.decisions)
    assert 2 <= sum(cache.decisions) < STEPS
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (got - sample(ours)).abs().max() > 1e-3, "the reuse must change the output"


def first_block(threshold):
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache

    return lambda m: apply_first_block_cache(m, FirstBlockCacheConfig(threshold=threshold))


def mag(ratios):
    from diffusers.hooks import MagCacheConfig, apply_mag_cache

    return lambda m: apply_mag_cache(m, MagCacheConfig(num_inference_steps=STEPS, mag_ratios=ratios))


def tail_calls(model, run):
    """`run()`'s result and how many times the last single block computed."""
    calls = []
    handle = model.single_transformer_blocks[-1].proj_out.register_forward_hook(lambda *a: calls.append(1))
    try:
        return run(), len(calls)
    finally:
        handle.remove()


@pytest.mark.parametrize("method", ["first_block", "mag"])
def test_block_caches_on_flux_match_diffusers_hooks(flux, method):
    from diffusers.hooks.hooks import CacheContext, _set_cache_context
    from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

    ours, build = flux
    theirs = build()
    # first_block: the first block's residual of these random weights changes 30–50 % a step, so 0.4 skips some
    # calls and runs others; mag: diffusers' default 0.06
    threshold = 0.4 if method == "first_block" else 0.06
    (first_block(threshold) if method == "first_block" else mag(FLUX_MAG_RATIOS))(theirs)
    _set_cache_context(theirs, CacheContext("cond"))  # as FluxPipeline's `with transformer.cache_context("cond")`
    expected, their_full = tail_calls(theirs, lambda: sample(lambda **kw: theirs(**kw, return_dict=False)[0]))
    cache = make_cache(method, threshold=threshold, steps=STEPS, mag_ratios=FLUX_MAG_RATIOS.tolist())
    got, our_full = tail_calls(ours, lambda: sample(CachedTransformer(ours, cache, method)))
    assert our_full == their_full == sum(cache.decisions), (our_full, their_full, cache.decisions)
    assert 2 <= sum(cache.decisions) < STEPS
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (got - sample(ours)).abs().max() > 1e-3, "the reuse must change the output"


def test_block_caches_refuse_a_model_without_a_block_stack_naming_what_they_support():
    with pytest.raises(ValueError, match=r"step cache `first_block` supports transformers with a main stack "
                                         r"`layers` .*\(Z-Image\); Flux .*; this model is a Linear"):
        CachedTransformer(torch.nn.Linear(2, 2), make_cache("first_block"), "first_block")


@pytest.mark.parametrize("method", ["first_block", "mag"])
@pytest.mark.parametrize("doubles, singles", [(1, 0), (0, 2)])
def test_block_caches_refuse_a_flux_without_a_double_block_and_a_second_block_naming_what_they_need(method, doubles,
                                                                                                   singles):
    from nodegraph.models.flux_transformer import FluxTransformer2DModel, FluxTransformerConfig

    config = {**TINY, "num_layers": doubles, "num_single_layers": singles}
    model = FluxTransformer2DModel(FluxTransformerConfig(**config))
    with pytest.raises(ValueError, match=rf"step cache `{method}` on Flux needs at least one double-stream block "
                                         rf".* at least two main blocks in all .*; this FluxTransformer2DModel has "
                                         rf"{doubles} double and {singles} single blocks. Use `cache: none`"):
        CachedTransformer(model, make_cache(method, mag_ratios=[1.0]), method)
    CachedTransformer(model, make_cache("taylorseer"), "taylorseer")  # the attention caches need no stack
