"""ComfyT5Encode (ComfyUI's never-cut T5 prompt) refuses a prompt over T5_MAX_TOKENS before the encoder runs: the
T5 position bias grows with the square of the length, and a graph's prompt comes from strangers. The tiny Flux T5
tokenizer (tests/flow/tiny_flux.py) counts the tokens; the encoder is a recorder of the ids it is given."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from nodegraph.core import RunContext, RunMode
from nodegraph.nodes.comfy_flow import T5_MAX_TOKENS, ComfyT5Encode


class RecordingEncoder:
    """Stands in for T5: keeps the ids it is called with, returns (1, L, 4) zeros."""

    device = torch.device("cpu")

    def __init__(self):
        self.calls: list[torch.Tensor] = []

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.calls.append(ids)
        return torch.zeros(ids.shape[0], ids.shape[1], 4)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from nodegraph.models.t5_tokenizer import T5Tokenizer

    sys.path.insert(0, str(Path(__file__).parents[1] / "flow"))
    import tiny_flux

    folder = tmp_path_factory.mktemp("t5-tokenizer")
    tiny_flux.build_t5_tokenizer().save_pretrained(folder)
    return T5Tokenizer.from_folder(folder)


def encode_with(encoder: RecordingEncoder, tokenizer, text: str) -> dict:
    inputs = ComfyT5Encode.Inputs(text_encoder=encoder, tokenizer=tokenizer, text=text)
    return ComfyT5Encode().run(inputs, RunContext(mode=RunMode(device="cpu")))


def encode(tokenizer, text: str) -> tuple[RecordingEncoder, dict]:
    encoder = RecordingEncoder()
    return encoder, encode_with(encoder, tokenizer, text)


def test_t5_prompt_of_exactly_the_cap_is_encoded_whole_and_a_short_one_padded_to_256(tokenizer):
    words = "fox " * (T5_MAX_TOKENS - 1)  # one token a word, and </s>
    encoder, out = encode(tokenizer, words)
    (ids,) = encoder.calls
    assert ids.shape == (1, T5_MAX_TOKENS) and out["embeddings"].shape == (1, T5_MAX_TOKENS, 4)
    assert int(ids[0, -1]) == 1 and int(ids[0, -2]) != 0  # ends with </s>, nothing padded or cut
    encoder, _ = encode(tokenizer, "a red fox")
    assert encoder.calls[0].shape == (1, 256) and int(encoder.calls[0][0, 3]) == 1 and int(encoder.calls[0][0, 4]) == 0


def test_t5_prompt_over_the_cap_is_refused_naming_the_input_before_the_encoder_runs(tokenizer):
    for text in ("fox " * T5_MAX_TOKENS, "a red fox in fresh snow " * 12_000):  # one token over; ~290 kB
        encoder = RecordingEncoder()
        with pytest.raises(ValueError, match=rf"`text`: the prompt \({len(text)} characters\) is longer than "
                                             rf"{T5_MAX_TOKENS} T5 tokens.*shorten the prompt"):
            encode_with(encoder, tokenizer, text)
        assert encoder.calls == []


def test_the_cap_keeps_t5_xxl_position_bias_under_1_gib():
    heads, fp32 = 64, 4  # T5-XXL (Flux's text_encoder_2): num_heads 64
    assert heads * T5_MAX_TOKENS**2 * fp32 < 2**30


class CountingTokenizer:
    """The T5 tokenizer, keeping how many ids each call could allocate: padded calls (texts × length) and the words
    read unpadded."""

    def __init__(self, tokenizer):
        self.tokenizer, self.pad_token_id = tokenizer, tokenizer.pad_token_id
        self.padded: list[int] = []
        self.words_read = 0

    def __call__(self, texts, max_length):
        self.padded.append(len(texts) * max_length)
        return self.tokenizer(texts, max_length)

    def unpadded(self, texts):
        self.words_read += len(texts)
        return self.tokenizer.unpadded(texts)


def test_a_huge_weighted_t5_prompt_is_refused_after_reading_about_the_caps_worth_of_words(tokenizer):
    """ComfyUI's weighted T5 prompt is tokenized word by word: a 100,000-word prompt is refused once the count passes
    the cap, no word padded (each used to be padded to the cap first: GBs before the refusal)."""
    from nodegraph.comfy.text import WORD_BATCH, t5_weighted_tokens

    counting = CountingTokenizer(tokenizer)
    with pytest.raises(ValueError, match=rf"`text`: the prompt is {T5_MAX_TOKENS + 1} T5 tokens or more, over "
                                         rf"{T5_MAX_TOKENS}.*shorten the prompt"):
        t5_weighted_tokens("(fox:1.2) " * 100_000, counting, 256, T5_MAX_TOKENS)
    assert max(counting.padded) == 1  # only "" (its </s>)
    assert counting.words_read <= T5_MAX_TOKENS + WORD_BATCH
    ids, weights, _ = t5_weighted_tokens("(fox:1.2) " * (T5_MAX_TOKENS - 1), counting, 256, T5_MAX_TOKENS)
    assert ids.shape == weights.shape == (1, T5_MAX_TOKENS) and float(weights[0, 0]) == pytest.approx(1.2)
