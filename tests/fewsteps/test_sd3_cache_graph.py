"""graphs/sd3.yaml with `cache: faster` (FasterCache with its CFG part, CFGStepCache) equals diffusers 0.42.1's
StableDiffusion3Pipeline with apply_faster_cache(is_guidance_distilled=False, tensor_format="BCHW") on its
transformer, on tests/sd3's tiny SD3.5-like pipeline: the same number of calls that skipped the unconditional half
(ours counted by the StepCacheDecision events `nodegraph run -v` reports, theirs as transformer calls on a batch of
one), pixels within 1/255, the image moved by the cache; with guidance off the cache is refused naming why."""

from __future__ import annotations

import pytest
import torch

import diffusers  # a test dependency: a broken install must fail, not skip

GRAPH = "graphs/sd3.yaml"
SETTINGS = dict(prompt="a red fox in fresh snow", negative_prompt="blurry low quality", steps=12, width=32, height=32,
                guidance_scale=5.0, max_sequence_length=16, seed=2)


@pytest.fixture(scope="module")
def tiny_sd3(tmp_path_factory):
    from tests.sd3.tiny_sd3 import save_tiny_sd3

    return save_tiny_sd3(tmp_path_factory.mktemp("sd3-cache") / "tiny-sd3")


def run_ours(folder, **inputs):
    from nodegraph import run_graph
    from nodegraph.exec.step_cache_report import StepCacheReport
    from tests.graphs.tiny_pipelines import png_pixels

    report = StepCacheReport()
    image = run_graph(GRAPH, inputs={"model": str(folder), **SETTINGS, **inputs}, hooks=[report])["image"]
    reused = sum(r for r, _ in report.counts.values())
    return png_pixels(image).int(), reused, report.counts


def run_theirs(folder):
    from diffusers import StableDiffusion3Pipeline
    from diffusers.hooks import FasterCacheConfig, apply_faster_cache

    from tests.graphs.tiny_pipelines import to_uint8

    pipe = StableDiffusion3Pipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    clock, single = {}, []

    def see(module, args, kwargs):
        clock["t"] = float(kwargs["timestep"].reshape(-1)[0])
    pipe.transformer.register_forward_pre_hook(see, with_kwargs=True)
    apply_faster_cache(pipe.transformer, FasterCacheConfig(
        is_guidance_distilled=False, tensor_format="BCHW", current_timestep_callback=lambda: clock["t"],
        attention_weight_callback=lambda _: 0.5,
        _unconditional_conditional_input_kwargs_identifiers=["hidden_states", "encoder_hidden_states",
                                                             "pooled_projections", "timestep"]))
    pipe.transformer.pos_embed.register_forward_pre_hook(
        lambda m, args: single.append(1) if args[0].shape[0] == 1 else None)
    images = pipe(SETTINGS["prompt"], negative_prompt=SETTINGS["negative_prompt"], height=SETTINGS["height"],
                  width=SETTINGS["width"], num_inference_steps=SETTINGS["steps"],
                  guidance_scale=SETTINGS["guidance_scale"], max_sequence_length=SETTINGS["max_sequence_length"],
                  generator=torch.Generator("cpu").manual_seed(SETTINGS["seed"]), output_type="np").images
    return to_uint8(images).int(), len(single)


def test_sd3_graph_faster_cache_with_cfg_matches_the_pipeline_with_the_hook(tiny_sd3):
    image, reused, counts = run_ours(tiny_sd3, cache="faster")
    expected, their_reused = run_theirs(tiny_sd3)
    plain = run_ours(tiny_sd3)[0]
    assert list(counts.values()) == [(reused, SETTINGS["steps"])], counts
    assert 0 < reused == their_reused < SETTINGS["steps"]
    assert (image - expected).abs().max() <= 1
    assert (image - plain).abs().max() > 2, "the cache moves the image (the check is sensitive)"


def test_sd3_graph_refuses_faster_cache_without_guidance_naming_why(tiny_sd3):
    from nodegraph import run_graph
    from nodegraph.exec.steps import NodeExecutionError

    with pytest.raises(NodeExecutionError, match=r"`cached`.*`cache: faster` is FasterCache with CFG here.*guidance "
                                                 r"is off \(guidance_scale 1.0 ≤ 1\). Use `cache: none`"):
        run_graph(GRAPH, inputs={"model": str(tiny_sd3), **SETTINGS, "guidance_scale": 1.0, "cache": "faster"})
