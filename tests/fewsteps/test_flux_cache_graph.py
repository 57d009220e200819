"""graphs/flux.yaml with `cache: taylorseer | pab | faster` equals diffusers 0.42.1's FluxPipeline with the hook on its
transformer, on tests/flow's tiny Flux.1-dev pipeline (attention made to count, see ATTENTION_GAIN): the same number
of transformer calls run in full (ours counted by the StepCacheDecision events `nodegraph run -v` reports, theirs at
a double block's attention), pixels within 1/255, the image moved by the cache. With true CFG the negative prompt's
calls keep a TaylorSeer cache of their own, as FluxPipeline's `cache_context("uncond")` does; pab and faster are
refused there (diffusers 0.42.1's PAB and FasterCache hooks keep one state across contexts). `cache: first_block |
mag` equal FluxPipeline with apply_first_block_cache / apply_mag_cache (FLUX_MAG_RATIOS) the same way, with and
without true CFG (a state per kind of call, as diffusers' contexts); theirs counted at the same attention, which a
skipped call does not run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import diffusers  # a test dependency: a broken install must fail, not skip
GRAPH = str(Path(__file__).resolve().parents[2] / "graphs" / "flux.yaml")
SETTINGS = dict(prompt="a red fox in fresh snow", seed=3, steps=8, width=32, height=32, max_sequence_length=24)


# Attention outputs scaled up: on tests/flow's tiny folder as built, attention adds so little to each block that
# reusing it moves the image by at most 1/255, under the parity tolerance (no evidence); 16× makes it count.
ATTENTION_GAIN = 16.0


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    """tests/flow's tiny Flux.1-dev pipeline (tiny_flux.build_components) with ATTENTION_GAIN on the attention
    output projections of both stacks, saved by diffusers."""
    from diffusers import FluxPipeline

    from tests.flow.tiny_flux import build_components

    parts = build_components()
    with torch.no_grad():
        for name, p in parts["transformer"].named_parameters():
            if ".attn.to_out." in name or ".attn.to_add_out." in name or (
                    name.startswith("single_transformer_blocks.") and ".proj_out." in name):
                p.mul_(ATTENTION_GAIN)
    folder = tmp_path_factory.mktemp("flux-cache") / "tiny-flux-dev"
    FluxPipeline(**parts).save_pretrained(folder)
    return folder


def run_ours(folder, **inputs):
    from nodegraph import run_graph
    from nodegraph.exec.step_cache_report import StepCacheReport

    report = StepCacheReport()
    image = run_graph(GRAPH, inputs={"model": str(folder), **SETTINGS, **inputs}, hooks=[report])["image"]
    counts = report.counts
    assert all(total == SETTINGS["steps"] for _, total in counts.values()), counts
    return image, sum(total - reused for reused, total in counts.values()), len(counts)


def run_theirs(folder, apply, **inputs):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    apply(pipe)
    full = []
    pipe.transformer.transformer_blocks[1].attn.to_q.register_forward_hook(lambda *a: full.append(1))
    images = pipe(SETTINGS["prompt"], height=SETTINGS["height"], width=SETTINGS["width"],
                  num_inference_steps=SETTINGS["steps"], guidance_scale=3.5,
                  max_sequence_length=SETTINGS["max_sequence_length"],
                  generator=torch.Generator("cpu").manual_seed(SETTINGS["seed"]), output_type="np", **inputs).images
    return images, len(full)


@pytest.fixture(scope="module")
def plain(dev):
    from nodegraph import run_graph
    from tests.graphs.tiny_pipelines import png_pixels

    return png_pixels(run_graph(GRAPH, inputs={"model": str(dev), **SETTINGS})["image"]).int()


def assert_same(ours, theirs, plain, calls_per_step=1):
    from tests.graphs.tiny_pipelines import png_pixels, to_uint8

    (image, our_full, caches), (images, their_full) = ours, theirs
    assert caches == calls_per_step, "one cache state per kind of call (cond, uncond)"
    assert 0 < our_full < calls_per_step * SETTINGS["steps"], "some calls reused and some run"
    assert our_full == their_full, "the same number of calls run in full"
    assert (png_pixels(image).int() - to_uint8(images).int()).abs().max() <= 1
    assert (png_pixels(image).int() - plain).abs().max() > 2, "the reuse moves the image (the check is sensitive)"


def taylorseer(pipe):
    from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache

    apply_taylorseer_cache(pipe.transformer, TaylorSeerCacheConfig(cache_interval=3))


def pab(pipe):
    from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

    apply_pyramid_attention_broadcast(pipe.transformer, PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2, current_timestep_callback=lambda: pipe.current_timestep))


def faster(pipe):
    from diffusers.hooks import FasterCacheConfig, apply_faster_cache

    apply_faster_cache(pipe.transformer, FasterCacheConfig(
        is_guidance_distilled=True, current_timestep_callback=lambda: pipe.current_timestep,
        attention_weight_callback=lambda _: 0.5))


def test_flux_graph_taylorseer_matches_flux_pipeline_with_the_hook(dev, plain):
    assert_same(run_ours(dev, cache="taylorseer", cache_interval=3), run_theirs(dev, taylorseer), plain)


def test_flux_graph_pab_matches_flux_pipeline_with_the_hook(dev, plain):
    assert_same(run_ours(dev, cache="pab"), run_theirs(dev, pab), plain)


def test_flux_graph_faster_cache_matches_flux_pipeline_with_the_hook(dev, plain):
    assert_same(run_ours(dev, cache="faster"), run_theirs(dev, faster), plain)


CFG = dict(negative_prompt="blurry, low quality", true_cfg_scale=2.5)


def test_flux_graph_taylorseer_with_true_cfg_keeps_a_cache_per_call_as_diffusers_contexts(dev):
    from nodegraph import run_graph
    from tests.graphs.tiny_pipelines import png_pixels

    uncached = png_pixels(run_graph(GRAPH, inputs={"model": str(dev), **SETTINGS, **CFG})["image"]).int()
    assert_same(run_ours(dev, cache="taylorseer", cache_interval=3, **CFG), run_theirs(dev, taylorseer, **CFG),
                uncached, calls_per_step=2)


@pytest.mark.parametrize("method", ["pab", "faster"])
def test_flux_graph_refuses_pab_and_faster_with_true_cfg_naming_why_and_what_to_use(dev, method):
    from nodegraph import run_graph
    from nodegraph.exec.steps import NodeExecutionError

    with pytest.raises(NodeExecutionError, match=rf"`cached_negative`.*`cache: {method}` with true CFG .* keeps one "
                                           r"state for the positive and the negative calls.*Use `cache: taylorseer`"):
        run_graph(GRAPH, inputs={"model": str(dev), **SETTINGS, **CFG, "cache": method})


def first_block(pipe):
    from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache

    apply_first_block_cache(pipe.transformer, FirstBlockCacheConfig(threshold=BLOCK_THRESHOLD))


def mag(pipe):
    from diffusers.hooks import MagCacheConfig, apply_mag_cache
    from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

    apply_mag_cache(pipe.transformer, MagCacheConfig(num_inference_steps=SETTINGS["steps"], mag_ratios=FLUX_MAG_RATIOS))


# first_block: the first block's residual on this tiny random model changes by tens of percent a step, so
# diffusers' 0.05 would skip nothing; mag: no `cache_threshold` given (None), so the graph's default must be
# MagCacheConfig's own (0.06), with its FLUX_MAG_RATIOS (`cache_mag_ratios`'s default `flux`)
BLOCK_THRESHOLD = 0.4
BLOCK_CACHES = [("first_block", first_block, BLOCK_THRESHOLD), ("mag", mag, None)]


def given(threshold: float | None) -> dict:
    """The graph inputs setting `cache_threshold` (none: the graph's default)."""
    return {} if threshold is None else {"cache_threshold": threshold}


@pytest.mark.parametrize("method, hook, threshold", BLOCK_CACHES)
def test_flux_graph_block_caches_match_flux_pipeline_with_the_hook(dev, plain, method, hook, threshold):
    assert_same(run_ours(dev, cache=method, **given(threshold)), run_theirs(dev, hook), plain)


@pytest.mark.parametrize("method, hook, threshold", BLOCK_CACHES)
def test_flux_graph_block_caches_with_true_cfg_keep_a_state_per_call_as_diffusers_contexts(dev, method, hook,
                                                                                          threshold):
    from nodegraph import run_graph
    from tests.graphs.tiny_pipelines import png_pixels

    uncached = png_pixels(run_graph(GRAPH, inputs={"model": str(dev), **SETTINGS, **CFG})["image"]).int()
    assert_same(run_ours(dev, cache=method, **given(threshold), **CFG), run_theirs(dev, hook, **CFG),
                uncached, calls_per_step=2)
