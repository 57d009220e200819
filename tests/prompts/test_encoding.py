"""Prompt encoding on a tiny CLIP. Every expected embedding is built here by hand from the definition — token
ids written out, the encoder run directly, A1111's weighting (scale each position, restore the chunk's mean)
and chunking (75 tokens, BOS/EOS, padding, BREAK, comma backtrack) applied by hand — never by the code under
test."""

from __future__ import annotations

import pytest
import torch

from nodegraph.prompts.encode import encode_a1111, encode_plain

BOS, EOS = 49406, 49407


def ids_of(tokenizer, *words):
    return tokenizer.convert_tokens_to_ids([f"{w}</w>" for w in words])


def chunk(tokens):
    assert len(tokens) <= 75
    return [BOS, *tokens, *[EOS] * (75 - len(tokens)), EOS]


def hidden(encoder, ids):
    with torch.no_grad():
        return encoder(torch.tensor([ids])).last_hidden_state  # (1, 77, C)


def weighted(z, weights):
    w = torch.tensor(weights)[None, :, None]
    scaled = z * w
    return scaled * (z.mean() / scaled.mean())


def test_unweighted_a1111_equals_plain_and_plain_equals_the_encoder(clip):
    encoder, tok = clip
    expected = hidden(encoder, chunk(ids_of(tok, "a", "red", "cat")))
    assert torch.equal(encode_plain(encoder, tok, "a red cat").hidden, expected)
    assert torch.equal(encode_a1111(encoder, tok, "a red cat").hidden, expected)


def test_weight_scales_its_tokens_then_the_chunk_mean_is_restored(clip):
    encoder, tok = clip
    z = hidden(encoder, chunk(ids_of(tok, "a", "red", "cat")))
    weights = [1.0] * 77
    weights[2] = 1.5  # BOS, a, red …
    expected = weighted(z, weights)
    got = encode_a1111(encoder, tok, "a (red:1.5) cat").hidden
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(got, z, atol=1e-3), "the weight must change the embedding"
    torch.testing.assert_close(got.mean(), z.mean(), rtol=1e-5, atol=1e-7)


def test_nested_and_square_weights_multiply(clip):
    encoder, tok = clip
    z = hidden(encoder, chunk(ids_of(tok, "a", "red", "cat", "on", "grass")))
    weights = [1.0] * 77
    weights[2], weights[3], weights[5] = 1.1 * 1.1, 1.1, 1 / 1.1
    got = encode_a1111(encoder, tok, "a ((red) cat) on [grass]").hidden
    torch.testing.assert_close(got, weighted(z, weights), rtol=0, atol=1e-6)


def test_long_prompt_is_encoded_in_75_token_chunks_and_concatenated(clip):
    encoder, tok = clip
    cat = ids_of(tok, "cat")[0]
    got = encode_a1111(encoder, tok, " ".join(["cat"] * 80)).hidden
    expected = torch.cat([hidden(encoder, chunk([cat] * 75)), hidden(encoder, chunk([cat] * 5))], dim=1)
    assert got.shape == (1, 154, 32)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_each_chunk_restores_its_own_mean(clip):
    encoder, tok = clip
    cat, dog = ids_of(tok, "cat", "dog")
    got = encode_a1111(encoder, tok, " ".join(["cat"] * 75) + " (dog:1.4) dog").hidden
    first = hidden(encoder, chunk([cat] * 75))
    second = hidden(encoder, chunk([dog, dog]))
    weights = [1.0] * 77
    weights[1] = 1.4
    torch.testing.assert_close(got, torch.cat([first, weighted(second, weights)], dim=1), rtol=0, atol=1e-6)


def test_break_starts_a_new_chunk(clip):
    encoder, tok = clip
    got = encode_a1111(encoder, tok, "a cat BREAK a dog").hidden
    expected = torch.cat([hidden(encoder, chunk(ids_of(tok, "a", "cat"))),
                          hidden(encoder, chunk(ids_of(tok, "a", "dog")))], dim=1)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_a_full_chunk_breaks_after_its_last_comma_when_it_is_near_the_end(clip):
    encoder, tok = clip
    cat, comma, dog = ids_of(tok, "cat")[0], tok.convert_tokens_to_ids(",</w>"), ids_of(tok, "dog")[0]
    # 70 cats, a comma, 10 dogs: the 76th token finds the comma 5 tokens back (≤ 20), so the chunk ends after it
    got = encode_a1111(encoder, tok, " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)).hidden
    expected = torch.cat([hidden(encoder, chunk([cat] * 70 + [comma])), hidden(encoder, chunk([dog] * 10))], dim=1)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_clip_skip_takes_an_earlier_layer_through_the_final_layer_norm(clip):
    encoder, tok = clip
    ids = chunk(ids_of(tok, "a", "cat"))
    with torch.no_grad():
        states = encoder(torch.tensor([ids]), output_hidden_states=True).hidden_states  # embeddings + 3 layers
        expected = encoder.final_layer_norm(states[2])  # skip the last layer
    got = encode_plain(encoder, tok, "a cat", clip_skip=1).hidden
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.allclose(got, encode_plain(encoder, tok, "a cat").hidden, atol=1e-3)
    torch.testing.assert_close(encode_a1111(encoder, tok, "a cat", clip_skip=1).hidden, expected, rtol=0, atol=0)


def test_clip_skip_beyond_the_encoder_depth_says_what_is_allowed(clip):
    encoder, tok = clip
    with pytest.raises(ValueError, match=r"`clip_skip` is 3, but this text encoder has 3 layers; use 0 \(off\) to 2"):
        encode_plain(encoder, tok, "a cat", clip_skip=3)


def test_plain_mode_cuts_at_77_tokens_and_names_the_dropped_words(clip):
    encoder, tok = clip
    prompt = " ".join(["cat"] * 75) + " wearing a red hat"
    encoded = encode_plain(encoder, tok, prompt)
    assert encoded.hidden.shape == (1, 77, 32)
    torch.testing.assert_close(encoded.hidden, hidden(encoder, chunk(ids_of(tok, "cat") * 75)), rtol=0, atol=0)
    assert len(encoded.warnings) == 1 and "'wearing a red hat'" in encoded.warnings[0]
    assert encode_plain(encoder, tok, " ".join(["cat"] * 75)).warnings == []
