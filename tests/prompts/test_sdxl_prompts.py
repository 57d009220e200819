"""graphs/sdxl.yaml's `clip_skip` and `prompt_syntax` inputs (SDXLTextEncode), on the tiny SDXL base.

clip_skip: diffusers' own `StableDiffusionXLPipeline(clip_skip=)` is the oracle.
a1111: diffusers has no such syntax, so the expected embeddings are built here by hand from the definition — token
ids written out, each chunk laid out [BOS, tokens, EOS, padding] with the encoder's own pad id (CLIP-L: EOS;
bigG: "!" = 0), each encoder's `hidden_states[-2]`, A1111's weighting (scale the positions, restore the chunk's
mean) per encoder and chunk, the pooled embedding of the second encoder's first chunk — and fed to diffusers'
pipeline as `prompt_embeds`.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.graphs.tiny_pipelines import REPO, png_pixels, to_uint8

SDXL_GRAPH = REPO / "graphs" / "sdxl.yaml"
SETTINGS = dict(seed=7, steps=3, guidance_scale=5.0, height=32, width=32)
BOS, EOS, PAD_2 = 49406, 49407, 0  # tokenizer_2 pads with "!", id 0, as SDXL 1.0's does
A, RED, CAT, COMMA, TREE, DOG, AN, OIL, PAINTING = 320, 736, 2368, 267, 2677, 1929, 550, 2870, 3086
LONG_PROMPT = "a (red:1.3) cat, " + "tree " * 80  # 84 tokens: no comma in the last 20 of 75, so a plain cut at 75


@pytest.fixture(scope="module")
def pipe(tiny_sdxl_base):
    import diffusers

    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_base, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.tokenizer.pad_token_id == EOS and pipe.tokenizer_2.pad_token_id == PAD_2
    return pipe


def graph_image(folder, **inputs):
    from nodegraph import run_graph

    return png_pixels(run_graph(SDXL_GRAPH, inputs=dict(model=str(folder), **SETTINGS, **inputs), device="cpu")["image"])


def diffusers_image(pipe, **kwargs):
    out = pipe(num_inference_steps=SETTINGS["steps"], guidance_scale=SETTINGS["guidance_scale"], height=32, width=32,
               generator=torch.Generator("cpu").manual_seed(SETTINGS["seed"]), output_type="np", **kwargs)
    return to_uint8(out.images)


def max_diff(a, b) -> int:
    assert a.shape == b.shape
    return (a.int() - b.int()).abs().max().item()


def chunk(tokens, pad):
    assert len(tokens) <= 75
    return [BOS, *tokens, EOS, *[pad] * (75 - len(tokens))]


def penultimate(encoder, ids, weights=None):
    """(1, 77, C) `hidden_states[-2]` of one chunk, weighted A1111's way, and the encoder's first output."""
    with torch.no_grad():
        out = encoder(torch.tensor([ids]), output_hidden_states=True)
    z = out.hidden_states[-2]
    if weights is not None:
        w = torch.tensor([1.0, *weights, *[1.0] * (76 - len(weights))])[None, :, None]
        z = z * w * (z.mean() / (z * w).mean())
    return z, out[0]


def by_hand(pipe, first_chunks, second_chunks):
    """[(tokens, weights or None)] per encoder → (embeddings (1, 77·n, 72), pooled (1, 24))."""
    first = torch.cat([penultimate(pipe.text_encoder, chunk(t, EOS), w)[0] for t, w in first_chunks], dim=1)
    second = [penultimate(pipe.text_encoder_2, chunk(t, PAD_2), w) for t, w in second_chunks]
    pooled = penultimate(pipe.text_encoder_2, chunk(second_chunks[0][0], PAD_2))[1]  # first chunk, unweighted
    return torch.cat([first, torch.cat([z for z, _ in second], dim=1)], dim=-1), pooled


def test_clip_skip_matches_diffusers_sdxl_clip_skip(tiny_sdxl_base, pipe):
    prompts = dict(prompt="a red cat", prompt_2="an oil painting", negative_prompt="a dog")
    theirs = diffusers_image(pipe, **prompts, clip_skip=1)
    ours = graph_image(tiny_sdxl_base, **prompts, clip_skip=1)
    assert max_diff(ours, theirs) <= 1
    assert max_diff(ours, graph_image(tiny_sdxl_base, **prompts)) > 10, "clip skip must change the image"


def test_a1111_long_weighted_prompt_matches_hand_built_embeddings(tiny_sdxl_base, pipe):
    weights = [1.0, 1.3] + [1.0] * 73  # a, (red:1.3), cat, ",", tree ×71
    long_chunks = [([A, RED, CAT, COMMA] + [TREE] * 71, weights), ([TREE] * 9, None)]
    prompt_embeds, pooled = by_hand(pipe, long_chunks, long_chunks)
    negative, negative_pooled = by_hand(pipe, [([DOG], None), ([], None)], [([DOG], None), ([], None)])
    assert prompt_embeds.shape == negative.shape == (1, 154, 72)
    theirs = diffusers_image(pipe, prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled,
                             negative_prompt_embeds=negative, negative_pooled_prompt_embeds=negative_pooled)
    ours = graph_image(tiny_sdxl_base, prompt=LONG_PROMPT, negative_prompt="dog", prompt_syntax="a1111")
    assert max_diff(ours, theirs) <= 1
    plain = graph_image(tiny_sdxl_base, prompt=LONG_PROMPT, negative_prompt="dog")
    assert max_diff(ours, plain) > 10, "weights and the second chunk must change the image"


def test_a1111_syntax_without_markup_gives_exactly_the_plain_image(tiny_sdxl_base):
    prompts = dict(prompt="a red cat", prompt_2="an oil painting", negative_prompt="a dog", clip_skip=1)
    assert torch.equal(graph_image(tiny_sdxl_base, prompt_syntax="a1111", **prompts),
                       graph_image(tiny_sdxl_base, **prompts))


def encode(pipe, **inputs):
    from nodegraph.core.context import RunContext
    from nodegraph.nodes.sdxl import SDXLTextEncode

    node = SDXLTextEncode()
    ctx = RunContext("cpu")
    ctx.node_id = "cond"
    return node.run(SDXLTextEncode.Inputs.model_construct(
        text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, text_encoder_2=pipe.text_encoder_2,
        tokenizer_2=pipe.tokenizer_2, **{"prompt_2": "", "zeros_if_empty": False, "batch_size": 1,
                                         "syntax": "a1111", "clip_skip": 0, **inputs}), ctx)


def test_a1111_encoder_with_fewer_chunks_is_padded_with_its_empty_chunk_and_pooled_is_its_first(pipe):
    out = encode(pipe, prompt=LONG_PROMPT, prompt_2="an (oil:0.8) painting")
    expected, pooled = by_hand(pipe, [([A, RED, CAT, COMMA] + [TREE] * 71, [1.0, 1.3] + [1.0] * 73), ([TREE] * 9, None)],
                               [([AN, OIL, PAINTING], [1.0, 0.8, 1.0]), ([], None)])
    torch.testing.assert_close(out["embeddings"], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(out["pooled"], pooled, rtol=0, atol=0)


def test_an_unclosed_bracket_is_warned_once_with_its_column_not_once_per_encoder(pipe):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encode(pipe, prompt="a (red cat")
    messages = [str(w.message) for w in caught if "never closed" in str(w.message)]
    assert messages == ["cond: prompt 'a (red cat': column 3: `(` is never closed, so everything after it is "
                        "weighted ×1.1; close it with `)` (or write `\\(` for a literal bracket)"]


def test_plain_prompt_past_77_tokens_is_cut_with_one_warning_naming_the_dropped_words(pipe):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = encode(pipe, prompt="tree " * 75 + "wearing a red hat", syntax="plain")
    assert out["embeddings"].shape == (1, 77, 72)
    messages = [str(w.message) for w in caught if "dropped" in str(w.message)]
    assert len(messages) == 1 and "these words were dropped: 'wearing a red hat'" in messages[0]


def test_clip_skip_past_the_encoders_depth_says_what_is_allowed(pipe):
    # SDXL already reads the penultimate layer, so 3-layer encoders allow one more skip at most
    with pytest.raises(ValueError, match=r"`clip_skip` is 2, but this text encoder has 3 layers; use 0 \(off\) to 1"):
        encode(pipe, prompt="a cat", clip_skip=2)


def test_multi_vector_sdxl_embedding_matches_diffusers_load_textual_inversion(tiny_sdxl_base, tmp_path):
    import diffusers
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(9)  # 3 vectors for CLIP-L, 2 for bigG: each tokenizer spells out its own
    vectors = {"clip_l": 0.5 * torch.randn(3, 32, generator=g), "clip_g": 0.5 * torch.randn(2, 40, generator=g)}
    path = tmp_path / "wave-emb.safetensors"
    save_file(vectors, path)
    prompt = "a wave-emb on the sea"
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_base, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_textual_inversion(vectors["clip_l"], token="wave-emb", text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(vectors["clip_g"], token="wave-emb", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    theirs = diffusers_image(pipe, prompt=prompt, negative_prompt="a dog")
    ours = graph_image(tiny_sdxl_base, prompt=prompt, negative_prompt="a dog", embedding=str(path))
    assert max_diff(ours, theirs) <= 1
    one_vector = {k: v[:1].clone() for k, v in vectors.items()}
    save_file(one_vector, tmp_path / "wave1-emb.safetensors")
    first_only = graph_image(tiny_sdxl_base, prompt="a wave1-emb on the sea", negative_prompt="a dog",
                             embedding=str(tmp_path / "wave1-emb.safetensors"))
    assert max_diff(ours, first_only) > 10, "the extra vectors must count"
    a1111 = graph_image(tiny_sdxl_base, prompt=prompt, negative_prompt="a dog", embedding=str(path),
                        prompt_syntax="a1111")
    assert torch.equal(a1111, ours), "without markup, a1111 syntax spells the embedding out the same way"


def test_cli_png_records_clip_skip_the_a1111_way_and_the_inputs_a_rerun_needs(tiny_sdxl_base, tmp_path):
    import os
    import subprocess
    import sys

    import PIL.Image

    from nodegraph.exec.png_metadata import read_recipe

    sets = [f"model={tiny_sdxl_base}", "prompt=a (red cat", "prompt_syntax=a1111", "clip_skip=1", "steps=2",
            "height=32", "width=32"]
    run = subprocess.run([sys.executable, "-m", "nodegraph.cli", "run", str(SDXL_GRAPH),
                          *[arg for s in sets for arg in ("--set", s)], "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("column 3: `(` is never closed") == 1, run.stderr
    with PIL.Image.open(tmp_path / "image.png") as img:
        params = img.text["parameters"].splitlines()
    assert params[0] == "a (red cat" and "Clip skip: 2" in params[-1]
    recorded = read_recipe(tmp_path / "image.png")["inputs"]
    assert recorded["clip_skip"] == 1 and recorded["prompt_syntax"] == "a1111"
