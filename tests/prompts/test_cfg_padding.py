"""CFGEmbeddings evens out prompts of different chunk counts with the empty prompt's chunk, A1111's way."""

from __future__ import annotations

import pytest
import torch

from nodegraph.core.context import RunContext
from nodegraph.nodes.text import CFGEmbeddings


def run(cond, uncond, pad=None):
    node = CFGEmbeddings()
    return node.run(CFGEmbeddings.Inputs.model_construct(cond=cond, uncond=uncond, pad=pad, guidance_scale=7.5),
                    RunContext("cpu"))["embeddings"]


def test_the_shorter_side_gets_copies_of_the_empty_chunk_whichever_it_is():
    long, short = torch.randn(2, 231, 8), torch.randn(2, 77, 8)
    empty = torch.randn(1, 77, 8).repeat(2, 1, 1)  # TextEncode repeats one encoding per image
    out = run(long, short, empty)  # negative 1 chunk, prompt 3 chunks
    assert out.shape == (4, 231, 8)
    assert torch.equal(out[:2, :77], short) and torch.equal(out[:2, 77:154], empty) and torch.equal(
        out[:2, 154:], empty)
    assert torch.equal(out[2:], long)
    out = run(short, long, empty)  # the other way round
    assert torch.equal(out[:2], long) and torch.equal(out[2:, :77], short) and torch.equal(out[2:, 77:], empty.repeat(1, 2, 1))


def test_different_lengths_without_pad_say_what_to_connect():
    with pytest.raises(ValueError, match=r"prompt \(154 tokens\) and the negative prompt \(77 tokens\).*give "
                                         r"CFGEmbeddings `pad`"):
        run(torch.randn(1, 154, 8), torch.randn(1, 77, 8))
