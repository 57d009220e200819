"""The T5 tokenizer (nodegraph/models/t5_tokenizer.py), T5TextEncode and CLIPPooledEncode against diffusers'
FluxPipeline.encode_prompt on the tiny Flux folder (tokenizer built offline by transformers' T5Tokenizer): the same
ids as transformers' tokenizer (padding, truncation with `</s>` kept), T5 embeddings and CLIP pooled output equal
to diffusers' (fp32), prompt_2 falling back to prompt, and max_sequence_length moving the embeddings."""

from __future__ import annotations

import pytest
import torch

from nodegraph.core import RunContext, RunMode
from nodegraph.models.loading import load_component
from nodegraph.nodes.flow_text_t5 import CLIPPooledEncode, T5TextEncode

PROMPTS = ["a red fox in fresh snow", "", "a cat on the table, photo of an astronaut riding a horse on the moon " * 3,
           "Zebra écru?"]


@pytest.fixture(scope="module")
def pipe(tiny_flux_dev):
    from diffusers import FluxPipeline

    return FluxPipeline.from_pretrained(tiny_flux_dev)


@pytest.fixture(scope="module")
def loaded(tiny_flux_dev):
    return {name: load_component(tiny_flux_dev, name) for name in ("text_encoder", "tokenizer", "text_encoder_2",
                                                                   "tokenizer_2")}


def ctx() -> RunContext:
    return RunContext(mode=RunMode(device="cpu"))


def t5(loaded, **inputs):
    node = T5TextEncode()
    i = T5TextEncode.Inputs(text_encoder=loaded["text_encoder_2"], tokenizer=loaded["tokenizer_2"], **inputs)
    return node.run(i, ctx())["embeddings"]


def clip(loaded, **inputs):
    i = CLIPPooledEncode.Inputs(text_encoder=loaded["text_encoder"], tokenizer=loaded["tokenizer"], **inputs)
    return CLIPPooledEncode().run(i, ctx())


@pytest.mark.parametrize("length", [7, 20, 512])
def test_t5_tokenizer_gives_transformers_ids_and_mask(pipe, loaded, length):
    expected = pipe.tokenizer_2(PROMPTS, padding="max_length", max_length=length, truncation=True,
                                return_tensors="pt")
    ids, mask = loaded["tokenizer_2"](PROMPTS, length)
    assert torch.equal(ids, expected.input_ids) and torch.equal(mask, expected.attention_mask)
    assert (ids[:, -1] == 1).any() or length == 512  # a cut prompt keeps its </s>


def test_a_hub_style_tokenizer_json_gives_the_ids_transformers_gives(tiny_flux_dev, tmp_path):
    """Hub T5 folders were written by older transformers: Metaspace alone (no whitespace split) and possibly other
    normalizers in tokenizer.json. transformers 5 rebuilds T5's pipeline; so must nodegraph."""
    import json
    import shutil

    from transformers import T5Tokenizer as TheirT5Tokenizer

    from nodegraph.models.t5_tokenizer import T5Tokenizer

    folder = tmp_path / "tokenizer_2"
    shutil.copytree(tiny_flux_dev / "tokenizer_2", folder)
    raw = json.loads((folder / "tokenizer.json").read_text())
    raw["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    raw["normalizer"] = {"type": "Lowercase"}
    (folder / "tokenizer.json").write_text(json.dumps(raw))
    prompts = ["a  red fox", "  a cat\non the table ", "Red FOX in snow", "a\tdog"]
    expected = TheirT5Tokenizer.from_pretrained(folder)(prompts, padding="max_length", max_length=12, truncation=True,
                                                       return_tensors="pt")
    ids, mask = T5Tokenizer.from_folder(folder)(prompts, 12)
    assert torch.equal(ids, expected.input_ids) and torch.equal(mask, expected.attention_mask)
    from tokenizers import Tokenizer

    as_written = T5Tokenizer(Tokenizer.from_file(str(folder / "tokenizer.json")), {}, "as written")(prompts, 12)[0]
    assert not torch.equal(as_written, ids)  # the file's own pipeline gives other ids


def test_t5_and_pooled_clip_equal_flux_encode_prompt_with_prompt_2_and_batch(pipe, loaded):
    with torch.no_grad():
        embeds, pooled, text_ids = pipe.encode_prompt("a red fox", prompt_2="a lighthouse at dusk",
                                                      num_images_per_prompt=2, max_sequence_length=24)
    ours = t5(loaded, prompt="a lighthouse at dusk", fallback="a red fox", batch_size=2, max_sequence_length=24)
    assert ours.shape == (2, 24, 40) and torch.equal(ours, embeds)
    ours_pooled = clip(loaded, prompt="a red fox", batch_size=2)["pooled"]
    assert ours_pooled.shape == (2, 24) and torch.equal(ours_pooled, pooled)
    with torch.no_grad():
        same, _, _ = pipe.encode_prompt("a red fox", prompt_2=None, max_sequence_length=24)
    assert torch.equal(t5(loaded, prompt="", fallback="a red fox", max_sequence_length=24), same)
    assert not torch.equal(same, embeds[:1])


def test_max_sequence_length_changes_the_padded_embeddings_and_long_prompts_warn(pipe, loaded):
    short = t5(loaded, prompt="a red fox", max_sequence_length=16)
    long = t5(loaded, prompt="a red fox", max_sequence_length=48)
    assert short.shape[1] == 16 and long.shape[1] == 48
    assert (short - long[:, :16]).abs().max() > 1e-4  # pads are attended to: T5 has no mask here
    with pytest.warns(UserWarning, match="dropped"):
        t5(loaded, prompt=PROMPTS[2], max_sequence_length=8)
    with pytest.warns(UserWarning, match="dropped"):
        clip(loaded, prompt="a red fox " * 40)


def test_the_wrong_encoder_is_refused_by_name(loaded):
    with pytest.raises(ValueError, match="T5TextEncode needs a T5 encoder"):
        T5TextEncode().run(T5TextEncode.Inputs(text_encoder=loaded["text_encoder"], tokenizer=loaded["tokenizer"],
                                               prompt="x"), ctx())
    with pytest.raises(ValueError, match="T5 encoder goes to T5TextEncode"):
        CLIPPooledEncode().run(CLIPPooledEncode.Inputs(text_encoder=loaded["text_encoder_2"],
                                                       tokenizer=loaded["tokenizer_2"], prompt="x"), ctx())


def test_sequence_output_is_the_penultimate_hidden_state_with_clip_skip(pipe, loaded):
    ids = pipe.tokenizer(["a cat"], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        states = pipe.text_encoder(ids.input_ids, output_hidden_states=True).hidden_states
    assert torch.equal(clip(loaded, prompt="a cat")["embeddings"], states[-2])
    assert torch.equal(clip(loaded, prompt="a cat", clip_skip=1)["embeddings"], states[-3])



def test_clip_skip_reaches_the_embeddings_output_as_transformers_hidden_states_and_no_further(tiny_flux_dev, loaded,
                                                                                             tmp_path):
    """hidden_states holds the token embeddings and each layer's output, so `clip_skip` runs 0..layers − 1 and its
    last value reads the embeddings: on the tiny folder's 3-layer CLIP and on a 1-layer one (whose only value is 0),
    against transformers' CLIPTextModel; one more is refused naming the range."""
    from tiny_flux import CLIP, perturb
    from transformers import CLIPTextConfig
    from transformers import CLIPTextModel as TheirCLIP

    perturb(TheirCLIP(CLIPTextConfig(**{**CLIP, "num_hidden_layers": 1})), 7, scale=0.1).save_pretrained(
        tmp_path / "text_encoder")
    ids = torch.tensor(loaded["tokenizer"](["a cat"], padding="max_length", max_length=77, truncation=True).input_ids)
    for folder, layers in ((tiny_flux_dev, 3), (tmp_path, 1)):
        with torch.no_grad():
            states = TheirCLIP.from_pretrained(folder / "text_encoder").eval()(ids, output_hidden_states=True)
        states = states.hidden_states  # (embeddings, layer 1, ..., layer n), each (1, 77, 24)
        assert len(states) == layers + 1 and not torch.equal(states[0], states[1])
        encoder = {"text_encoder": load_component(folder, "text_encoder"), "tokenizer": loaded["tokenizer"]}
        for skip in range(layers):  # 0 (off) .. layers − 1, the embeddings' output
            got = clip(encoder, prompt="a cat", clip_skip=skip)["embeddings"]
            assert (got - states[-(skip + 2)]).abs().max() < 1e-5, (layers, skip)
        with pytest.raises(ValueError, match=rf"`clip_skip` is {layers}, but this text encoder has {layers} layers; "
                                             rf"use 0 \(off\) to {layers - 1}"):
            clip(encoder, prompt="a cat", clip_skip=layers)
