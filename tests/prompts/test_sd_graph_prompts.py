"""The SD graph's `prompt_syntax` and `clip_skip` inputs, against diffusers' pipeline.

clip_skip: diffusers' own `clip_skip=` (SD 1.x pipelines in this venv reach for `text_encoder.text_model`, which
transformers ≥ 5.6 no longer has: the oracle is given that alias and is otherwise untouched).
a1111: diffusers has no such syntax, so its pipeline is fed `prompt_embeds` built here by hand from the
definition (chunks, weights, mean restore, the negative padded with empty-prompt chunks).
"""

from __future__ import annotations

import torch

from tests.graphs.tiny_pipelines import REPO, png_pixels, to_uint8

SD_GRAPH = REPO / "graphs" / "stable_diffusion.yaml"
SETTINGS = dict(seed=5, steps=4, guidance_scale=7.5, height=16, width=16)
BOS, EOS = 49406, 49407


def graph_image(folder, **inputs):
    from nodegraph import run_graph

    return png_pixels(run_graph(SD_GRAPH, inputs=dict(model=str(folder), **SETTINGS, **inputs), device="cpu")["image"])


def pipeline(folder):
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_image(pipe, **kwargs):
    out = pipe(num_inference_steps=SETTINGS["steps"], guidance_scale=SETTINGS["guidance_scale"], height=16, width=16,
               generator=torch.Generator("cpu").manual_seed(SETTINGS["seed"]), output_type="np", **kwargs)
    return to_uint8(out.images)


def max_diff(a, b) -> int:
    assert a.shape == b.shape
    return (a.int() - b.int()).abs().max().item()


def test_clip_skip_matches_diffusers_clip_skip(tiny_sd):
    pipe = pipeline(tiny_sd)
    object.__setattr__(pipe.text_encoder, "text_model", pipe.text_encoder)  # the alias diffusers expects
    theirs = diffusers_image(pipe, prompt="a red cat", clip_skip=1)
    ours = graph_image(tiny_sd, prompt="a red cat", clip_skip=1)
    assert max_diff(ours, theirs) <= 1
    assert max_diff(ours, graph_image(tiny_sd, prompt="a red cat")) > 10, "clip skip must change the image"


def test_a1111_long_weighted_prompt_matches_hand_built_embeddings(tiny_sd):
    pipe = pipeline(tiny_sd)
    tok, te = pipe.tokenizer, pipe.text_encoder
    a, red, cat, tree = tok.convert_tokens_to_ids(["a</w>", "red</w>", "cat</w>", "tree</w>"])
    comma = tok.convert_tokens_to_ids(",</w>")

    def encode(tokens, weights=None):
        ids = [BOS, *tokens, *[EOS] * (75 - len(tokens)), EOS]
        with torch.no_grad():
            z = te(torch.tensor([ids]))[0]  # (1, 77, 32)
        if weights is None:
            return z
        w = torch.tensor([1.0, *weights, *[1.0] * (76 - len(weights))])[None, :, None]
        return z * w * (z.mean() / (z * w).mean())

    # "a (red:1.3) cat, tree ×80": 84 tokens; no comma in the last 20 of the first 75, so a plain cut at 75
    first = encode([a, red, cat, comma] + [tree] * 71, [1.0, 1.3] + [1.0] * 73)
    prompt_embeds = torch.cat([first, encode([tree] * 9)], dim=1)  # (1, 154, 32)
    empty = encode([])
    negative = torch.cat([empty, empty], dim=1)  # "" is one chunk, padded with the empty prompt's chunk
    theirs = diffusers_image(pipe, prompt_embeds=prompt_embeds, negative_prompt_embeds=negative)
    ours = graph_image(tiny_sd, prompt="a (red:1.3) cat, " + "tree " * 80, prompt_syntax="a1111")
    assert max_diff(ours, theirs) <= 1
    plain = graph_image(tiny_sd, prompt="a (red:1.3) cat, " + "tree " * 80)
    assert max_diff(ours, plain) > 10, "weights and the second chunk must change the image"


def test_a1111_syntax_without_markup_gives_the_plain_image(tiny_sd):
    assert torch.equal(graph_image(tiny_sd, prompt="a red cat", prompt_syntax="a1111"),
                       graph_image(tiny_sd, prompt="a red cat"))
