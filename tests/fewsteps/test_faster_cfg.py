"""FasterCache with CFG (CFG-Cache + the attention reuse of a model that is not guidance-distilled) on nodegraph's
SD3 transformer equals diffusers 0.42.1's `apply_faster_cache(is_guidance_distilled=False, tensor_format="BCHW")`
on the same tiny weights (MMDiT-X dual attention in two blocks), along a 20-step flow-matching trajectory with the
CFG call batched [unconditional; conditional] as graphs/sd3_denoise_step.yaml makes it: the same calls in which
the unconditional half was skipped (counted as calls of batch 1 at the patch embedding), the same outputs within
1e-5, the output moved by the cache."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from nodegraph.models.loading import load_component
from nodegraph.models.step_caches.faster_cfg import FasterCacheCFG, sd3_attention_modules
from tests.sd3.test_sd3_transformer import TINY, build_folder

import diffusers  # a test dependency: a broken install must fail, not skip

SIGMAS = torch.linspace(1.0, 0.0, 21)
GUIDANCE = 5.0


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    from diffusers import SD3Transformer2DModel

    folder = build_folder(tmp_path_factory.mktemp("sd3-faster-cfg"), TINY["medium"], 47)
    return load_component(folder, "transformer"), SD3Transformer2DModel.from_pretrained(folder / "transformer").eval()


def sample(call):
    """Euler over SIGMAS with CFG; `call(x2, context2, pooled2, t2)` gets the batch [unconditional; conditional]."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 16, 6, 10, generator=g)
    context = torch.randn(2, 9, 20, generator=g)  # [negative; positive]
    pooled = torch.randn(2, 12, generator=g)
    outs = []
    with torch.no_grad():
        for k in range(len(SIGMAS) - 1):
            t = (1000.0 * SIGMAS[k]).expand(2)
            uncond, cond = call(torch.cat([x, x]), context, pooled, t).chunk(2)
            v = uncond + GUIDANCE * (cond - uncond)
            outs.append(v)
            x = x + (SIGMAS[k + 1] - SIGMAS[k]) * v
    return torch.stack(outs)


@contextmanager
def single_calls(model):
    """A list that counts the model's calls on a batch of one (the unconditional half skipped); the counting hook
    is removed on leaving, so the module-scoped model is left as it was."""
    calls = []
    handle = model.pos_embed.register_forward_pre_hook(
        lambda m, args: calls.append(1) if args[0].shape[0] == 1 else None)
    try:
        yield calls
    finally:
        handle.remove()


def test_faster_cache_with_cfg_matches_diffusers_hook(sd3):
    from diffusers.hooks import FasterCacheConfig, apply_faster_cache

    ours, theirs = sd3
    plain = sample(lambda *a: ours(*a))
    clock = {}

    def their_call(x, context, pooled, t):
        clock["t"] = float(t[0])
        return theirs(hidden_states=x, encoder_hidden_states=context, pooled_projections=pooled, timestep=t,
                      return_dict=False)[0]

    apply_faster_cache(theirs, FasterCacheConfig(
        is_guidance_distilled=False, tensor_format="BCHW", current_timestep_callback=lambda: clock["t"],
        attention_weight_callback=lambda _: 0.5,
        _unconditional_conditional_input_kwargs_identifiers=["hidden_states", "encoder_hidden_states",
                                                             "pooled_projections", "timestep"]))
    with single_calls(theirs) as their_single:
        expected = sample(their_call)
    cache = FasterCacheCFG()
    modules = sd3_attention_modules(ours)
    assert len(modules) == len(TINY["medium"]["dual_attention_layers"]) + TINY["medium"]["num_layers"]
    with single_calls(ours) as our_single:
        got = sample(lambda *a: cache.call(ours, modules, *a))
    assert len(our_single) == len(their_single) == cache.decisions.count(False) == 10, cache.decisions  # t < 641, not k % 5
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (got - plain).abs().max() > 1e-2, "the cache must change the output"


def test_faster_cache_with_cfg_refuses_bad_settings():
    with pytest.raises(ValueError, match=r"`uncond_interval` and `attention_interval` must be ≥ 1"):
        FasterCacheCFG(uncond_interval=0)


@pytest.mark.parametrize("method", ["first_block", "mag"])
def test_block_caches_refuse_sd3_naming_what_they_support(sd3, method):
    from nodegraph.models.step_caches.handle import CachedTransformer, make_cache

    with pytest.raises(ValueError, match=rf"step cache `{method}` supports .*\(Z-Image\); Flux .*; this model is a "
                                         r"SD3Transformer2DModel. Use `cache: none`"):
        CachedTransformer(sd3[0], make_cache(method, mag_ratios=[1.0]), method)
