"""TaylorSeer, MagCache and pyramid attention broadcast on nodegraph's Z-Image transformer equal diffusers 0.42.1's
hooks (`apply_taylorseer_cache`, `apply_mag_cache`, `apply_pyramid_attention_broadcast`) on the same tiny weights:
the same calls run in full (counted at an attention's `to_q`, which runs only when that attention computes), the
same outputs, along a 20-step flow-matching trajectory each model drives with its own outputs. Each test also
checks that the cache changed the output (a cache that reused nothing would pass the comparison trivially)."""

from __future__ import annotations

import ast

import pytest
import torch

from nodegraph.models.step_caches.handle import CachedTransformer, make_cache

import diffusers  # a test dependency: a broken install must fail, not skip
SIGMAS = torch.linspace(1.0, 0.0, 21)  # 20 steps; scheduler timestep t = 1000·σ
STEPS = len(SIGMAS) - 1


def count_calls(module) -> list:
    calls = []
    module.register_forward_hook(lambda *a: calls.append(1))
    return calls


def sample(call, x, caption, clock=None):
    """Flow-matching Euler from σ 1 to 0 (x <- x − (σ_next − σ)·out); `clock` is told each step's timestep."""
    outs = []
    with torch.no_grad():
        for k in range(STEPS):
            if clock is not None:
                clock["t"] = 1000.0 * SIGMAS[k].item()
            out = call([x.clone()], (1 - SIGMAS[k]).reshape(1), [caption.clone()])[0]
            outs.append(out)
            x = x - (SIGMAS[k + 1] - SIGMAS[k]) * out
    return torch.stack(outs)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(3)
    return torch.randn(16, 1, 8, 8, generator=g), torch.randn(9, 24, generator=g)


@pytest.fixture(scope="module")
def uncached(z_image_pair, inputs):
    return sample(z_image_pair[1], *inputs)


def run_theirs(build, apply, inputs, clock=None):
    from diffusers.hooks.hooks import CacheContext, _set_cache_context

    theirs = build()
    apply(theirs)
    # The hooks keep their state per "cache context"; ZImagePipeline opens none, so set one as
    # CacheMixin.cache_context does (as in test_first_block_cache.py).
    _set_cache_context(theirs, CacheContext("cond"))
    calls = count_calls(theirs.layers[1].attention.to_q)
    outs = sample(lambda *a: theirs(*a, return_dict=False)[0], *inputs, clock)
    return outs, len(calls)


def run_ours(ours, cache, method, inputs):
    calls = count_calls(ours.layers[1].attention.to_q)
    outs = sample(CachedTransformer(ours, cache, method), *inputs)
    return outs, len(calls)


def check(expected, got, their_calls, our_calls, cache, uncached):
    assert our_calls == their_calls == sum(cache.decisions), (our_calls, their_calls, cache.decisions)
    assert 2 <= sum(cache.decisions) < STEPS, f"the cache must both reuse and run: {cache.decisions}"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (got - uncached).abs().max() > 1e-3, "the reuse must change the output"


def test_taylorseer_matches_diffusers_hook(z_image_pair, inputs, uncached):
    from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache

    # diffusers' default patterns name Flux's and others' blocks (`transformer_blocks.*attn`); Z-Image's attention
    # modules are `layers.N.attention`, so name them (the same modules our cache forecasts).
    config = TaylorSeerCacheConfig(cache_interval=4, cache_identifiers=[r"layers\.\d+\.attention"])
    expected, theirs = run_theirs(z_image_pair[2], lambda m: apply_taylorseer_cache(m, config), inputs)
    cache = make_cache("taylorseer", interval=4)
    got, ours = run_ours(z_image_pair[1], cache, "taylorseer", inputs)
    check(expected, got, theirs, ours, cache, uncached)
    assert cache.decisions[:6] == [True, True, True, False, True, False]  # warm-up 3, then (s − 4) % 4 == 0


def test_pyramid_attention_broadcast_matches_diffusers_hook(z_image_pair, inputs, uncached):
    from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

    clock = {}
    config = PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=3,
                                             current_timestep_callback=lambda: clock["t"])
    expected, theirs = run_theirs(z_image_pair[2], lambda m: apply_pyramid_attention_broadcast(m, config), inputs,
                                  clock)
    cache = make_cache("pab", interval=3)
    got, ours = run_ours(z_image_pair[1], cache, "pab", inputs)
    check(expected, got, theirs, ours, cache, uncached)
    assert cache.decisions[:5] == [True] * 5 and cache.decisions[-2:] == [True] * 2  # t ≥ 800 and t ≤ 100 run


def their_mag_hook(ratios, threshold):
    from diffusers.hooks import MagCacheConfig, apply_mag_cache
    from diffusers.hooks._helpers import TransformerBlockRegistry
    from diffusers.models.transformers.transformer_z_image import ZImageTransformerBlock

    # As for the first-block cache (test_first_block_cache.py): diffusers 0.42.1 looks the block's input up as
    # `hidden_states`, ZImageTransformerBlock calls it `x` (its first parameter); point the name at it.
    TransformerBlockRegistry.get(ZImageTransformerBlock)._cached_parameter_indices = {"hidden_states": 0}
    if ratios is None:
        config = MagCacheConfig(calibrate=True, num_inference_steps=STEPS)
    else:
        config = MagCacheConfig(threshold=threshold, mag_ratios=ratios, num_inference_steps=STEPS)
    return lambda model: apply_mag_cache(model, config)


def test_mag_cache_calibration_and_skips_match_diffusers_hook(z_image_pair, inputs, uncached, capsys):
    calibration = make_cache("mag", steps=STEPS, mag_ratios=None)
    plain, ours = run_ours(z_image_pair[1], calibration, "mag", inputs)
    assert ours == STEPS and torch.equal(plain, uncached), "calibration never skips"
    _, theirs = run_theirs(z_image_pair[2], their_mag_hook(None, 0), inputs)
    printed = capsys.readouterr().out  # diffusers prints the calibrated ratios
    their_ratios = ast.literal_eval(printed.strip().splitlines()[-1])
    torch.testing.assert_close(torch.tensor(calibration.measured), torch.tensor(their_ratios), atol=1e-5, rtol=0)

    # Resampled from 10 points to the run's 20 steps, as diffusers does with a curve of another length.
    ratios = calibration.measured[::2]
    expected, theirs = run_theirs(z_image_pair[2], their_mag_hook(ratios, 0.3), inputs)
    cache = make_cache("mag", threshold=0.3, steps=STEPS, mag_ratios=ratios)
    got, ours = run_ours(z_image_pair[1], cache, "mag", inputs)
    check(expected, got, theirs, ours, cache, uncached)
    assert all(cache.decisions[:4]), "the first 20 % of the steps always run"


def test_caches_refuse_bad_settings_and_unsupported_models_saying_what_is_allowed():
    with pytest.raises(ValueError, match=r"MagCache: `threshold` must be from 0 to 1 \(diffusers' default 0.06\)"):
        make_cache("mag", threshold=2.0, mag_ratios=[1.0])
    with pytest.raises(ValueError, match=r"TaylorSeer: `interval` must be ≥ 1"):
        make_cache("taylorseer", interval=-1)
    with pytest.raises(ValueError, match=r"step cache `pab` supports transformers with a main stack `layers` of "
                                         r"blocks, each with an `attention` module \(Z-Image\); Flux "
                                         r"\(`transformer_blocks`\); this model is a Linear. Use `cache: none`"):
        CachedTransformer(torch.nn.Linear(2, 2), make_cache("pab"), "pab")


def test_faster_cache_matches_diffusers_hook_on_a_guidance_distilled_model(z_image_pair, inputs, uncached,
                                                                          monkeypatch):
    from diffusers.hooks import FasterCacheConfig, apply_faster_cache
    from diffusers.hooks import faster_cache as theirs_module

    # apply_faster_cache looks attention modules up by a module constant of Flux-style names (`^blocks.*attn`, …),
    # not by the config's identifiers, so it finds none in Z-Image (`layers.N.attention`); widen both.
    names = (r"^layers\.\d+\.attention$",)
    monkeypatch.setattr(theirs_module, "_TRANSFORMER_BLOCK_IDENTIFIERS", names)
    clock = {}
    config = FasterCacheConfig(spatial_attention_block_identifiers=names, is_guidance_distilled=True,
                               current_timestep_callback=lambda: clock["t"], attention_weight_callback=lambda _: 0.5)
    expected, theirs = run_theirs(z_image_pair[2], lambda m: apply_faster_cache(m, config), inputs, clock)
    cache = make_cache("faster")
    got, ours = run_ours(z_image_pair[1], cache, "faster", inputs)
    check(expected, got, theirs, ours, cache, uncached)
    assert cache.decisions[:7] == [True] * 7  # t = 1000 … 700 lie outside (−1, 681)


def test_the_step_graph_schedule_is_the_one_the_caches_follow_on_their_own():
    from nodegraph.models.step_caches.schedule import full_call

    ts = [1000.0 * s for s in SIGMAS[:-1].tolist()]  # 1000, 950, …, 50
    for method, interval in (("taylorseer", 0), ("taylorseer", 3), ("pab", 0), ("pab", 3), ("faster", 0)):
        cache = make_cache(method, interval=interval or None)
        if method == "taylorseer":
            own = [cache.runs_in_full(k) for k in range(STEPS)]
        else:  # their own decision needs the calls counted and something cached
            own = []
            for t in ts:
                own.append(cache.runs_in_full(t))
                cache.calls, cache.outputs = cache.calls + 1, {0: torch.zeros(1)}
        assert [full_call(method, k, interval, t) for k, t in enumerate(ts)] == own, method


def test_step_cache_refresh_needs_the_cached_transformer_of_the_same_method():
    from nodegraph.nodes.step_cache import StepCacheRefresh

    node = StepCacheRefresh()
    inputs = StepCacheRefresh.Inputs(transformer=torch.nn.Linear(2, 2), method="pab", refresh=False)
    with pytest.raises(ValueError, match=r"`method` 'pab' needs the transformer made by StepCacheTransformer"):
        node.run(inputs, None)


@pytest.mark.parametrize("graph", ["flux.yaml", "z_image.yaml"])
def test_the_graphs_default_threshold_is_each_methods_diffusers_default(graph):
    """`--set cache=mag` alone runs MagCache at MagCacheConfig's threshold, `cache=first_block` alone at
    FirstBlockCacheConfig's: the graph's default reaches make_cache as the method's own, not one shared value."""
    from pathlib import Path

    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig

    from nodegraph.spec.loader import load_graph

    default = load_graph(Path(__file__).parents[2] / "graphs" / graph).inputs["cache_threshold"].default
    theirs_mag = MagCacheConfig(num_inference_steps=STEPS, mag_ratios=[1.0] * STEPS).threshold
    assert make_cache("mag", threshold=default, mag_ratios=[1.0]).threshold == theirs_mag == 0.06
    assert make_cache("first_block", threshold=default).cache.threshold == FirstBlockCacheConfig().threshold == 0.05
    assert make_cache("mag", threshold=0.2, mag_ratios=[1.0]).threshold == 0.2  # a value given is kept
