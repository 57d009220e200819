"""nodegraph's CLIP text encoders against transformers' CLIPTextModel / CLIPTextModelWithProjection: the same state
dict keys, and bit-equal outputs (every hidden state, the pooled state, the projection) in fp32 and bf16."""

from __future__ import annotations

import pytest
import torch

from nodegraph.models.base import install_weights
from nodegraph.models.clip_text import TEXT_ENCODER_CLASSES, CLIPTextConfig

# vocab past 49407 so that the pre-2023 rule (eos_token_id 2: pool at the highest id) and the current one (pool at
# the first eos id) pick different positions when an added token (textual inversion) is in the prompt
CONFIG = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3, vocab_size=49410,
              max_position_embeddings=77, projection_dim=24, bos_token_id=49406, pad_token_id=49407)
EOS, ADDED = 49407, 49409


def _ids() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    ids = torch.full((2, 77), EOS)  # padded with the end token, as SD's tokenizers pad
    ids[:, 0] = 49406
    ids[:, 1:9] = torch.randint(0, 49000, (2, 8), generator=generator)
    ids[0, 9], ids[1, 4] = EOS, ADDED  # prompt 0 ends at 9; prompt 1 holds an added token and ends at 9 too
    ids[1, 9] = EOS
    return ids


def _pair(name: str, dtype: torch.dtype, **overrides):
    """(transformers model, nodegraph model) with the same random weights, each loaded as its library loads it."""
    import transformers

    torch.manual_seed(0)
    raw = dict(CONFIG, **overrides)
    reference = getattr(transformers, name)(transformers.CLIPTextConfig(**raw)).eval()
    with torch.no_grad():
        for p in reference.parameters():  # LayerNorms start at 1/0: perturb so a swapped norm would show
            p.add_(torch.randn_like(p) * 0.1)
    reference = reference.to(dtype)
    with torch.device("meta"):
        ours = TEXT_ENCODER_CLASSES[name](CLIPTextConfig.from_dict(raw))
    state = reference.state_dict()
    assert set(state) == set(ours.state_dict())  # same module tree and names (LoRA, textual inversion rely on it)
    install_weights(ours, {k: v.clone() for k, v in state.items()})
    embeddings = getattr(ours, "text_model", ours).embeddings
    embeddings.register_buffer("position_ids", torch.arange(77).expand((1, -1)), persistent=False)
    return reference, ours.eval()


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(a, b), f"max difference {(a.float() - b.float()).abs().max().item()}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("eos_token_id", [2, EOS])  # SD hub configs say 2; transformers' default is 49407
@pytest.mark.parametrize("hidden_act", ["quick_gelu", "gelu"])  # OpenAI CLIP / OpenCLIP
def test_text_model_is_bit_equal_to_transformers(dtype, eos_token_id, hidden_act):
    reference, ours = _pair("CLIPTextModel", dtype, eos_token_id=eos_token_id, hidden_act=hidden_act)
    ids = _ids()
    with torch.no_grad():
        want, got = reference(ids, output_hidden_states=True), ours(ids, output_hidden_states=True)
        plain = ours(ids)
    assert len(got.hidden_states) == len(want.hidden_states) == 4
    for g, w in zip(got.hidden_states, want.hidden_states):
        _same(g, w)
    _same(got.last_hidden_state, want.last_hidden_state)
    _same(got.pooler_output, want.pooler_output)
    _same(plain.last_hidden_state, want.last_hidden_state)
    assert plain.hidden_states is None and plain[0] is plain.last_hidden_state


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_projection_model_is_bit_equal_to_transformers(dtype):
    reference, ours = _pair("CLIPTextModelWithProjection", dtype, eos_token_id=EOS, hidden_act="gelu")
    ids = _ids()
    with torch.no_grad():
        want, got = reference(ids, output_hidden_states=True), ours(ids, output_hidden_states=True)
    for g, w in zip(got.hidden_states, want.hidden_states, strict=True):
        _same(g, w)
    _same(got.last_hidden_state, want.last_hidden_state)
    _same(got.text_embeds, want.text_embeds)
    assert got[0] is got.text_embeds and got.text_embeds.shape == (2, 24)


def test_the_two_pooling_rules_pick_different_tokens_for_an_added_token():
    """Makes the eos_token_id cases above meaningful: with an added token, the old rule pools elsewhere."""
    _, old = _pair("CLIPTextModel", torch.float32, eos_token_id=2)
    _, new = _pair("CLIPTextModel", torch.float32, eos_token_id=EOS)
    with torch.no_grad():
        a, b = old(_ids()).pooler_output, new(_ids()).pooler_output
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])


def test_an_attention_mask_is_refused_rather_than_ignored():
    _, ours = _pair("CLIPTextModel", torch.float32)
    with pytest.raises(ValueError, match="attention_mask"):
        ours(_ids(), attention_mask=torch.ones(2, 77))
