"""graphs/gligen.yaml (LoadGLIGEN + GLIGENUNet in a hand-written graph) against diffusers'
StableDiffusionGLIGENPipeline with the same tiny SD1 pipeline and GLIGEN tensors, grounding on every step
(gligen_scheduled_sampling_beta 1), with and without guidance; bad boxes are refused before the UNet runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

GRAPH = Path(__file__).parent / "gligen.yaml"  # the graph docs/gligen.md shows
PHRASES = ["a red ball", "a tall green tree"]
BOXES = [[0.125, 0.25, 0.5, 0.75], [0.5, 0.0, 1.0, 0.5]]


def _ours(folder, path, **values):
    from nodegraph import run_graph
    from tests.graphs.tiny_pipelines import png_pixels

    inputs = dict(model=str(folder), gligen=str(path), prompt="a photo of a park", phrases=PHRASES, boxes=BOXES,
                  seed=4, steps=3, height=32, width=32)
    return png_pixels(run_graph(GRAPH, inputs={**inputs, **values})["image"])[0]


@pytest.fixture(scope="module")
def pipelines(gligen_sd):
    """diffusers' plain StableDiffusionPipeline and its GLIGEN pipeline on the same modules, built once."""
    from diffusers import StableDiffusionGLIGENPipeline, StableDiffusionPipeline

    folder, gated, _ = gligen_sd
    base = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe = StableDiffusionGLIGENPipeline(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
                                         unet=gated, scheduler=base.scheduler, safety_checker=None,
                                         feature_extractor=None, requires_safety_checker=False)
    for p in (base, pipe):
        p.set_progress_bar_config(disable=True)
    return base, pipe


def _theirs(pipe, guidance_scale, **kwargs):
    from tests.graphs.tiny_pipelines import to_uint8

    out = pipe("a photo of a park", height=32, width=32, num_inference_steps=3, guidance_scale=guidance_scale,
               generator=torch.Generator("cpu").manual_seed(4), output_type="np", **kwargs)
    return to_uint8(out.images)[0]


@pytest.mark.parametrize("guidance_scale", [7.5, 1.0])
def test_gligen_graph_equals_diffusers_gligen_pipeline(gligen_sd, pipelines, guidance_scale):
    folder, _, path = gligen_sd
    base, pipe = pipelines
    theirs = _theirs(pipe, guidance_scale, gligen_scheduled_sampling_beta=1.0, gligen_phrases=PHRASES,
                     gligen_boxes=BOXES)
    ours = _ours(folder, path, guidance_scale=guidance_scale)
    assert int((ours.int() - theirs.int()).abs().max()) <= 1
    plain = _theirs(base, guidance_scale)  # sensitive: the same run without GLIGEN draws another image
    assert int((ours.int() - plain.int()).abs().max()) > 5


def test_gligen_graph_refuses_a_box_outside_the_image_and_uneven_lists(gligen_sd):
    from nodegraph import NodeExecutionError

    folder, _, path = gligen_sd
    with pytest.raises(NodeExecutionError, match=r"box 1 \[0.5, 0.0, 1.5, 0.5\] is not \[x1, y1, x2, y2\] inside "
                                                 r"the image"):
        _ours(folder, path, boxes=[BOXES[0], [0.5, 0.0, 1.5, 0.5]])
    with pytest.raises(NodeExecutionError, match="1 boxes for 2 phrases; give one box a phrase"):
        _ours(folder, path, boxes=BOXES[:1])
