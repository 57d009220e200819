"""Copy-on-write copies of a transformers text encoder report each layer's hidden state once, whether the original
ran before the copies were made or not (transformers ≥ 5 records hidden states with hooks installed on first use,
and a copy installing them again on the layers it shares made `hidden_states[-2]` the last layer)."""

from __future__ import annotations

import pytest
import torch

from nodegraph.models.adapters.patch import replace_modules


@pytest.mark.parametrize("with_projection", [False, True])  # SD's / SDXL's first encoder, SDXL's second
@pytest.mark.parametrize("original_ran_first", [False, True])
def test_copies_record_each_layer_once(with_projection, original_ran_first):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    config = CLIPTextConfig(hidden_size=16, intermediate_size=20, num_attention_heads=2, num_hidden_layers=3,
                            vocab_size=100, max_position_embeddings=8, projection_dim=8, bos_token_id=0,
                            eos_token_id=2, pad_token_id=1)
    encoder = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)
    ids = torch.tensor([[0, 5, 7, 2]])
    with torch.no_grad():
        expected = encoder(ids, output_hidden_states=True).hidden_states if original_ran_first else None
        table = encoder.get_input_embeddings()
        path = next(p for p, m in encoder.named_modules() if m is table)
        copies = [replace_modules(encoder, {path: torch.nn.Embedding.from_pretrained(table.weight.clone())})
                  for _ in range(3)]  # LoadEmbedding / LoadLoRA make one per run
        for copy in copies:
            states = copy(ids, output_hidden_states=True).hidden_states
            assert len(states) == 4  # the embeddings and three layers
            expected = expected or states
            for got, want in zip(states, expected):
                torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert len(encoder(ids, output_hidden_states=True).hidden_states) == 4
