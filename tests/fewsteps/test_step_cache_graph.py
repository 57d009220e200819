"""graphs/z_image.yaml with `cache: taylorseer | pab | faster | mag` equals ZImagePipeline with diffusers 0.42.1's
hook on the same tiny checkpoint: the same number of transformer calls run in full (ours counted by the StepCacheDecision
events `nodegraph run -v` reports, theirs at the last block's attention), pixels within 1/255. MagCache's ratios
come from the graph's own calibration run (`cache_mag_ratios: calibrate`, printed as a warning)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import diffusers  # a test dependency: a broken install must fail, not skip
GRAPH = str(Path(__file__).resolve().parents[2] / "graphs" / "z_image.yaml")
SETTINGS = dict(prompt="a red fox", seed=2, steps=10, width=32, height=32)


def run_ours(folder, **cache):
    from nodegraph import run_graph
    from nodegraph.exec.step_cache_report import StepCacheReport

    report = StepCacheReport()
    image = run_graph(GRAPH, inputs={"model": str(folder), **SETTINGS, **cache}, hooks=[report])["image"]
    (reused, total), = report.counts.values()
    assert total == SETTINGS["steps"]
    return image, total - reused


def run_theirs(folder, apply):
    from diffusers import ZImagePipeline
    from diffusers.hooks._helpers import TransformerBlockRegistry
    from diffusers.hooks.hooks import CacheContext, _set_cache_context
    from diffusers.models.transformers.transformer_z_image import ZImageTransformerBlock

    pipe = ZImagePipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    # As in test_first_block_cache.py: diffusers names the block input `hidden_states`, Z-Image's block `x`; and
    # ZImagePipeline opens no cache context.
    TransformerBlockRegistry.get(ZImageTransformerBlock)._cached_parameter_indices = {"hidden_states": 0}
    apply(pipe)
    _set_cache_context(pipe.transformer, CacheContext("cond"))
    full = []
    pipe.transformer.layers[-1].attention.to_q.register_forward_hook(lambda *a: full.append(1))
    images = pipe(SETTINGS["prompt"], height=32, width=32, num_inference_steps=SETTINGS["steps"], guidance_scale=0.0,
                  generator=torch.Generator("cpu").manual_seed(SETTINGS["seed"]), output_type="np").images
    return images, len(full)


@pytest.fixture(scope="module")
def plain(smooth_z_image):
    from nodegraph import run_graph
    from tests.graphs.tiny_pipelines import png_pixels

    return png_pixels(run_graph(GRAPH, inputs={"model": str(smooth_z_image), **SETTINGS})["image"]).int()


def assert_same(ours, theirs, plain):
    from tests.graphs.tiny_pipelines import png_pixels, to_uint8

    (image, our_full), (images, their_full) = ours, theirs
    assert 0 < our_full < SETTINGS["steps"], "some calls reused and some run"
    assert our_full == their_full, "the same number of calls run in full"
    assert (png_pixels(image).int() - to_uint8(images).int()).abs().max() <= 1
    assert (png_pixels(image).int() - plain).abs().max() > 2, "the reuse moves the image (the check is sensitive)"


def taylorseer(pipe):
    from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache

    apply_taylorseer_cache(pipe.transformer, TaylorSeerCacheConfig(
        cache_interval=3, cache_identifiers=[r"layers\.\d+\.attention"]))


def scheduler_clock(pipe):
    """The scheduler's timestep of the call about to run (ZImagePipeline has no `current_timestep`)."""
    calls = []
    pipe.transformer.register_forward_pre_hook(lambda *a: calls.append(1))
    return lambda: pipe.scheduler.timesteps[len(calls) - 1].item()


def pab(pipe):
    from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

    apply_pyramid_attention_broadcast(pipe.transformer, PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2, current_timestep_callback=scheduler_clock(pipe)))


def faster(pipe):
    from diffusers.hooks import FasterCacheConfig, apply_faster_cache

    names = (r"^layers\.\d+\.attention$",)  # see test_step_caches.py's FasterCache test
    apply_faster_cache(pipe.transformer, FasterCacheConfig(
        spatial_attention_block_identifiers=names, is_guidance_distilled=True,
        current_timestep_callback=scheduler_clock(pipe), attention_weight_callback=lambda _: 0.5))


def test_z_image_graph_taylorseer_matches_diffusers_pipeline_with_the_hook(smooth_z_image, plain):
    assert_same(run_ours(smooth_z_image, cache="taylorseer", cache_interval=3), run_theirs(smooth_z_image, taylorseer),
                plain)


def test_z_image_graph_pab_matches_diffusers_pipeline_with_the_hook(smooth_z_image, plain):
    assert_same(run_ours(smooth_z_image, cache="pab"), run_theirs(smooth_z_image, pab), plain)


def test_z_image_graph_faster_cache_matches_diffusers_pipeline_with_the_hook(smooth_z_image, plain, monkeypatch):
    from diffusers.hooks import faster_cache

    monkeypatch.setattr(faster_cache, "_TRANSFORMER_BLOCK_IDENTIFIERS", (r"^layers\.\d+\.attention$",))
    assert_same(run_ours(smooth_z_image, cache="faster"), run_theirs(smooth_z_image, faster), plain)


def test_z_image_graph_mag_cache_calibrates_then_matches_diffusers_pipeline_with_the_hook(smooth_z_image, plain):
    from diffusers.hooks import MagCacheConfig, apply_mag_cache

    with pytest.warns(UserWarning, match=r"cached: MagCache calibration of 10 steps: pass `mag_ratios=") as caught:
        run_ours(smooth_z_image, cache="mag")
    text = str(caught[0].message)
    ratios = text[text.index("mag_ratios=") + 11:text.index("`", text.index("mag_ratios="))]
    values = [float(r) for r in ratios.split(",")]
    assert len(values) == 10 and values[0] == 1.0

    def mag(pipe):
        apply_mag_cache(pipe.transformer, MagCacheConfig(threshold=0.3, mag_ratios=values, num_inference_steps=10))
    assert_same(run_ours(smooth_z_image, cache="mag", cache_threshold=0.3, cache_mag_ratios=ratios),
                run_theirs(smooth_z_image, mag), plain)
