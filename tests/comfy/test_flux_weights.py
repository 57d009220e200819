"""Weighted Flux prompts as ComfyUI encodes them: `flux_schnell_full_text_to_image` (its T5 text holds
`(like daisies, pink blooms)`, weight 1.1) runs as it ships, and its image equals diffusers' FluxPipeline given the
T5 states ComfyUI computes — written out here from its source, on transformers' T5 and tokenizer:

* comfy/sd1_clip.py `SDTokenizer.tokenize_with_weights` with text_encoders/flux.py's T5XXLTokenizer: weights parsed
  (`(x)` ×1.1, `(x:w)` sets w), each space-separated word tokenized alone without `</s>`, one `</s>`, pad tokens (0)
  to at least 256, never cut;
* `ClipTokenWeightEncoder.encode_token_weights`: with any weight ≠ 1 the empty prompt (`</s>` then pads, as long)
  is encoded too and each weighted position becomes (z − z_empty)·w + z_empty; CLIP-L's pooled embedding is the
  plain tokens'.

Weight 1.0 gives exactly the unweighted encoding; 1.5 moves the weighted words' states (and only theirs).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nodegraph.core import RunContext, RunMode
from nodegraph.nodes.comfy_flow import ComfyT5Encode

sys.path.insert(0, str(Path(__file__).parent))
from test_flux_templates import TEMPLATE, flux_models  # noqa: E402,F401  (the tiny Flux files, module scope)

SCHNELL = TEMPLATE.parent / "flux_schnell_full_text_to_image.json"


def comfy_t5_tokens(tokenizer, text: str):
    """(ids, weights) by ComfyUI's rule; `tokenizer` is transformers' (the pipeline's tokenizer_2)."""
    pieces, depth, current = [], 0, ""
    for char in text:  # comfy/sd1_clip.py parse_parentheses (no nesting or escapes in these prompts)
        if char == "(":
            if current:
                pieces.append((current, 1.0))
            current, depth = "", depth + 1
        elif char == ")":
            inner, weight = current, 1.1
            if m := re.fullmatch(r"(.*):([0-9.]+)", current, re.S):
                inner, weight = m.group(1), float(m.group(2))
            pieces.append((inner, weight))
            current, depth = "", depth - 1
        else:
            current += char
    if current:
        pieces.append((current, 1.0))
    ids, weights = [], []
    for piece, weight in pieces:
        for word in [w for w in piece.replace("\n", " ").split(" ") if w]:
            tokens = tokenizer(word)["input_ids"][:-1]  # without </s>
            ids += tokens
            weights += [weight] * len(tokens)
    length = max(256, len(ids) + 1)
    return ids + [1] + [0] * (length - len(ids) - 1), weights + [1.0] * (length - len(weights))


def comfy_t5_states(encoder, tokenizer, text: str) -> torch.Tensor:
    ids, weights = comfy_t5_tokens(tokenizer, text)
    with torch.no_grad():
        z = encoder(torch.tensor([ids])).last_hidden_state  # (1, L, C)
        z_empty = encoder(torch.tensor([[1] + [0] * (len(ids) - 1)])).last_hidden_state
    if all(w == 1.0 for w in weights):
        return z
    for j, w in enumerate(weights):
        if w != 1.0:
            z[0, j] = (z[0, j] - z_empty[0, j]) * w + z_empty[0, j]
    return z


@pytest.fixture(scope="module")
def t5(flux_models):
    """(transformers' T5 encoder, its tokenizer, nodegraph's T5 tokenizer) of the tiny schnell folder."""
    from transformers import T5EncoderModel, T5TokenizerFast

    from nodegraph.models.t5_tokenizer import T5Tokenizer

    folder = flux_models[0].parent / "tiny-flux-schnell"
    return (T5EncoderModel.from_pretrained(folder / "text_encoder_2").eval(),
            T5TokenizerFast.from_pretrained(folder / "tokenizer_2"), T5Tokenizer.from_folder(folder / "tokenizer_2"))


def ours(t5, text: str, weighted: bool = True) -> torch.Tensor:
    encoder, _, tokenizer = t5

    class Encoder:  # nodegraph's T5 nodes call the encoder with ids and get the last hidden state
        device = torch.device("cpu")

        def __call__(self, ids):
            return encoder(ids).last_hidden_state

    inputs = ComfyT5Encode.Inputs(text_encoder=Encoder(), tokenizer=tokenizer, text=text, weighted=weighted)
    with torch.no_grad():
        return ComfyT5Encode().run(inputs, RunContext(mode=RunMode(device="cpu")))["embeddings"]


def test_weighted_t5_prompt_equals_comfyuis_arithmetic(t5):
    encoder, tokenizer, _ = t5
    text = "a red fox, (fresh snow:1.5) in the (forest) at dusk"
    got = ours(t5, text)
    assert got.shape == (1, 256, encoder.config.d_model)
    torch.testing.assert_close(got, comfy_t5_states(encoder, tokenizer, text), atol=1e-5, rtol=1e-5)
    # weight 1.0 is exactly the unweighted prompt; 1.5 moves the weighted words only
    plain = ours(t5, "a red fox, fresh snow in the forest at dusk", weighted=False)
    assert torch.equal(ours(t5, "a red fox, (fresh snow:1.0) in the (forest:1.0) at dusk"), plain)
    moved = (got - plain).abs().amax(dim=-1)[0]  # (L,)
    weights = torch.tensor(comfy_t5_tokens(tokenizer, text)[1])
    assert moved[weights != 1].min() > 1e-3 and moved[weights == 1].max() == 0  # the weighted words, only they


def test_flux_schnell_full_text_to_image_runs_with_its_weighted_t5_prompt(flux_models, t5, tmp_path):
    from diffusers import FluxPipeline
    from PIL import Image

    from nodegraph.cli import main
    from nodegraph.comfy.models import ModelPaths
    from nodegraph.comfy.reader import read_workflow
    from nodegraph.comfy.translate import translate

    encoder, tokenizer, _ = t5
    texts = read_workflow(SCHNELL).api["41"]["inputs"]
    assert "(like daisies, pink blooms)" in texts["t5xxl"]  # the template's own weighted text, run as it ships
    sets = [f"config={flux_models[0].parent / 'tiny-flux-schnell'}", "27.width=64", "27.height=64", "31.seed=5"]
    out = tmp_path / "out"
    assert main(["run", str(SCHNELL), "--models", str(flux_models[1]), "--out", str(out), "-q",
                 *[a for s in sets for a in ("--set", s)]]) == 0
    got = np.asarray(Image.open(next(out.rglob("*.png"))).convert("RGB")).astype(int)

    pipe = FluxPipeline.from_pretrained(flux_models[0].parent / "tiny-flux-schnell")
    _, pooled, _ = pipe.encode_prompt(prompt=texts["clip_l"], prompt_2="x", max_sequence_length=256)

    def image(states):
        result = pipe(prompt_embeds=states, pooled_prompt_embeds=pooled, height=32, width=32, num_inference_steps=4,
                      guidance_scale=3.5, generator=torch.Generator("cpu").manual_seed(5), output_type="np")
        return np.round(result.images[0] * 255).astype(int)

    want = image(comfy_t5_states(encoder, tokenizer, texts["t5xxl"]))
    assert got.shape == want.shape == (32, 32, 3)
    assert np.abs(got - want).max() <= 1
    # ×1.1 on four words of a long prompt moves this tiny model's image by about 1/255, so the image alone cannot
    # tell the weights were applied: the graph's T5 node reads them (their arithmetic: the test above)
    doc = translate(read_workflow(SCHNELL), ModelPaths([flux_models[1]])).document
    assert doc["nodes"]["text41"]["type"] == "ComfyT5Encode" and doc["nodes"]["text41"]["weighted"] is True
