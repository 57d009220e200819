"""The shared DiT blocks that the Z-Image model test does not reach: Flux.1's real cos/sin RoPE, bit-equal to
diffusers' FluxPosEmbed and apply_rotary_emb (for the next flow-matching family), in fp32 and bf16."""

from __future__ import annotations

import pytest
import torch

from nodegraph.models.dit_blocks import apply_rope_real, rope_cos_sin


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_real_rope_equals_diffusers_flux_rope(dtype):
    from diffusers.models.embeddings import apply_rotary_emb
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    g = torch.Generator().manual_seed(0)
    ids = torch.cat([torch.zeros(7, 3), torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(5.0), torch.arange(6.0),
                                                                   indexing="ij"), -1).reshape(-1, 3)])  # (37, 3)
    ids[:, 0] += torch.arange(37) % 3  # a non-trivial first axis too
    cos, sin = rope_cos_sin(ids, (8, 12, 12), 10000)
    theirs = FluxPosEmbed(10000, [8, 12, 12])(ids)
    assert torch.equal(cos, theirs[0]) and torch.equal(sin, theirs[1])
    x = torch.randn(2, 37, 3, 32, generator=g).to(dtype)  # (B, S, heads, d)
    expected = apply_rotary_emb(x, theirs, use_real=True, use_real_unbind_dim=-1, sequence_dim=1)
    got = apply_rope_real(x, cos, sin)
    assert got.dtype == dtype and torch.equal(got, expected)
    assert not torch.equal(got, x)
