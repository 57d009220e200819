"""nodegraph's T5 encoder (models/t5_text.py) against transformers' T5EncoderModel on the same weights: tiny
configurations unlike transformers' defaults (3 heads of 12 over a 40-wide stream, 12 buckets, max_distance 10,
3 blocks), v1.1 gated-gelu and original ReLU, every weight moved off its initialisation, a 37-token sequence
(well past max_distance, so the log-spaced and last buckets are used), batches with and without padding;
last_hidden_state bit-equal in fp32, bf16 and fp16 (`wo` kept in float32, as transformers loads it). The real
T5-XXL v1.1 configuration (Flux's text_encoder_2, SD3's text_encoder_3) is checked on the meta device against
transformers' own state dict."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nodegraph.models.sources import resolve_source
from nodegraph.models.t5_text import T5EncoderModel, build_t5, load_t5_encoder

TINY = dict(vocab_size=101, d_model=40, d_kv=12, d_ff=56, num_layers=3, num_heads=3, relative_attention_num_buckets=12,
            relative_attention_max_distance=10, layer_norm_epsilon=1e-6, dropout_rate=0.1)
LENGTH = 37


def save_tiny_t5(folder: Path, feed_forward_proj: str, seed: int) -> Path:
    """transformers' T5EncoderModel on TINY, every weight perturbed (seeded), saved with save_pretrained."""
    from transformers import T5Config, T5EncoderModel as TheirT5

    torch.manual_seed(seed)
    model = TheirT5(T5Config(**TINY, feed_forward_proj=feed_forward_proj))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["gated-gelu", "relu"])
def tiny_t5(request, tmp_path_factory) -> Path:
    return save_tiny_t5(tmp_path_factory.mktemp("t5") / request.param, request.param, seed=5)


def ours(folder: Path, dtype: torch.dtype) -> T5EncoderModel:
    raw = json.loads((folder / "config.json").read_text())
    return load_t5_encoder(resolve_source(folder), "", raw, dtype, torch.device("cpu"), None, False)


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Two sequences of LENGTH ids; the second padded after 15 tokens (pad id 0)."""
    ids = torch.randint(1, TINY["vocab_size"], (2, LENGTH), generator=torch.Generator().manual_seed(3))
    mask = torch.arange(LENGTH)[None] < torch.tensor([[LENGTH], [15]])
    return ids.masked_fill(~mask, 0), mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_last_hidden_state_equals_transformers_bit_for_bit(tiny_t5, dtype):
    from transformers import T5EncoderModel as TheirT5

    theirs = TheirT5.from_pretrained(tiny_t5, dtype=dtype).eval()
    mine = ours(tiny_t5, dtype)
    ids, mask = inputs()
    for attention_mask in (None, torch.ones_like(mask), mask):  # Flux/SD3 pass no mask; padding masked
        with torch.no_grad():
            expected = theirs(input_ids=ids, attention_mask=attention_mask).last_hidden_state
            got = mine(ids, attention_mask)
        assert got.dtype == expected.dtype == dtype
        assert got.shape == (2, LENGTH, TINY["d_model"])
        assert torch.equal(got, expected)
    wo = {mine.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype,
          theirs.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype}
    assert wo == {torch.float32 if dtype == torch.float16 else dtype}  # transformers' _keep_in_fp32_modules
    unmasked, masked = mine(ids), mine(ids, mask)
    assert not torch.allclose(unmasked[1, :15], masked[1, :15])  # the mask reaches the attention


def test_far_buckets_and_perturbed_weights_matter(tiny_t5):
    """Sensitivity of the fixture: the last (log-spaced) buckets change the output, so a wrong bucketing past
    max_distance would fail the parity test; and the test's weights are not at their initialisation."""
    mine = ours(tiny_t5, torch.float32)
    ids, _ = inputs()
    reference = mine(ids)
    first = mine.encoder.block[0].layer[0].SelfAttention
    first.max_distance = 4 * TINY["relative_attention_max_distance"]
    try:
        assert not torch.allclose(mine(ids), reference)
    finally:
        first.max_distance = TINY["relative_attention_max_distance"]
    assert not torch.allclose(mine.encoder.final_layer_norm.weight, torch.ones(TINY["d_model"]))


def test_file_with_both_tied_names_and_a_decoder_loads_the_same(tiny_t5, tmp_path):
    """A full T5 file (T5ForConditionalGeneration: decoder, lm_head) loads as its encoder."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config.from_pretrained(tiny_t5)
    full = T5ForConditionalGeneration(config)
    encoder_only = ours(tiny_t5, torch.float32)
    full.encoder.load_state_dict(encoder_only.encoder.state_dict())
    full.shared.weight.data.copy_(encoder_only.shared.weight)
    full.save_pretrained(tmp_path / "full")
    ids, mask = inputs()
    assert torch.equal(ours(tmp_path / "full", torch.float32)(ids, mask), encoder_only(ids, mask))


def test_real_t5_xxl_v1_1_configuration_has_transformers_keys_and_shapes():
    from transformers import T5Config, T5EncoderModel as TheirT5

    # google/t5-v1_1-xxl's config.json as Flux.1 and SD3.5 ship it (text_encoder_2 / text_encoder_3)
    raw = dict(architectures=["T5EncoderModel"], model_type="t5", vocab_size=32128, d_model=4096, d_kv=64,
               d_ff=10240, num_layers=24, num_decoder_layers=24, num_heads=64, relative_attention_num_buckets=32,
               relative_attention_max_distance=128, dropout_rate=0.1, layer_norm_epsilon=1e-6,
               feed_forward_proj="gated-gelu", is_gated_act=True, dense_act_fn="gelu_new", tie_word_embeddings=False)
    with torch.device("meta"):
        theirs = TheirT5(T5Config(**raw))
    mine = build_t5(raw, "config.json")
    assert {k: tuple(v.shape) for k, v in mine.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert mine.config.activation == "gelu_new" and mine.config.is_gated
    assert sum(p.numel() for p in mine.parameters()) == 4_762_310_656  # T5-XXL's encoder, embedding counted once


def test_loading_and_encoding_never_imports_transformers(tiny_t5):
    code = ("import sys, json, torch; from pathlib import Path; "
            "from nodegraph.models.sources import resolve_source; "
            "from nodegraph.models.t5_text import load_t5_encoder; "
            f"folder = Path({str(tiny_t5)!r}); raw = json.loads((folder / 'config.json').read_text()); "
            "model = load_t5_encoder(resolve_source(folder), '', raw, torch.float32, torch.device('cpu'), None, "
            "False); "
            "print(model(torch.tensor([[5, 9, 3, 1]])).shape); "
            "assert 'transformers' not in sys.modules, 'transformers was imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def pipeline_folder(tiny_t5: Path, root: Path, name: str, architectures: bool = True) -> Path:
    """A pipeline-style folder whose `name` component is the tiny T5 (model_index.json as Flux/SD3 write it)."""
    shutil.copytree(tiny_t5, root / name)
    if not architectures:  # an older config.json: model_type only
        config = json.loads((root / name / "config.json").read_text())
        (root / name / "config.json").write_text(json.dumps({**config, "architectures": None}))
    (root / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline",
                                                       name: ["transformers", "T5EncoderModel"]}))
    return root


@pytest.mark.parametrize("name, architectures", [("text_encoder_2", True), ("text_encoder_3", False)])
def test_load_component_recognises_flux_and_sd3_t5_folders(tiny_t5, tmp_path, name, architectures):
    from nodegraph.models.loading import load_component

    folder = pipeline_folder(tiny_t5, tmp_path / "pipe", name, architectures)
    model = load_component(folder, name, dtype="bf16")
    assert isinstance(model, T5EncoderModel) and model.dtype == torch.bfloat16
    ids, mask = inputs()
    assert torch.equal(model(ids, mask), ours(tiny_t5, torch.bfloat16)(ids, mask))


def test_t5_folder_in_a_clip_slot_is_refused_by_name(tiny_t5, tmp_path):
    from nodegraph.models.loading import CheckpointError, load_component

    shutil.copytree(tiny_t5, tmp_path / "text_encoder")
    with pytest.raises(CheckpointError, match=r"describes a T5EncoderModel, but component `text_encoder` must be"):
        load_component(tmp_path, "text_encoder")
