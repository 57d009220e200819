"""A tiny random CLIP text encoder with the real CLIP tokenizer (the encoder under every prompt test)."""

from __future__ import annotations

import pytest

from tests.graphs.tiny_pipelines import CLIP_TOKENIZER
from tests.models.tiny_checkpoints import perturbed


@pytest.fixture(scope="session")
def clip():
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3, vocab_size=49408,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
    return perturbed(encoder, 5), CLIPTokenizer.from_pretrained(CLIP_TOKENIZER)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    from tests.models.adapters.lora_files import session_tiny_sd

    return session_tiny_sd(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_sdxl_base(tmp_path_factory):
    """The tiny SDXL base of tests/graphs (two encoders of widths 32 and 40, tokenizer_2 padding with "!")."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "graphs"))  # tiny_sdxl imports its neighbours
    from tiny_sdxl import save_tiny_sdxl

    root = tmp_path_factory.mktemp("sdxl")
    base, _ = save_tiny_sdxl(root / "base", root / "refiner")
    return base
