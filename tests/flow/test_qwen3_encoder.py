"""nodegraph's Qwen3 text encoder, tokenizer and prompt encoding against transformers' Qwen3Model and
Qwen2Tokenizer driven by diffusers' own `ZImagePipeline._encode_prompt`, on the tiny folder of tiny_z_image.py:
hidden states bit-equal in fp32 and bf16, prompts with unicode and past the maximum length, the chat template
of the fixture and Qwen3's published one (tests/flow/data/qwen3_chat_template.jinja), both tokenizer layouts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nodegraph.models.loading import load_component
from nodegraph.models.qwen3_text import Qwen3TextModel, encode_prompts

PROMPTS = ["a cat sitting on a wooden table", "東京の夜景、ネオンサイン 🐱 café naïve e\u0301", ""]
LONG = "a watercolor painting of a red fox in snow, " * 12  # far past the 24-token maximum used below
QWEN3_TEMPLATE = Path(__file__).parent / "data" / "qwen3_chat_template.jinja"


def diffusers_encode(folder: Path, prompts: list[str], max_length: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """diffusers' ZImagePipeline._encode_prompt on transformers' models, loaded as the pipeline loads them."""
    from diffusers import ZImagePipeline
    from transformers import AutoTokenizer, Qwen3Model

    pipe = SimpleNamespace(tokenizer=AutoTokenizer.from_pretrained(folder / "tokenizer"),
                           text_encoder=Qwen3Model.from_pretrained(folder / "text_encoder", dtype=dtype).eval(),
                           _execution_device=torch.device("cpu"))
    with torch.no_grad():
        return ZImagePipeline._encode_prompt(pipe, list(prompts), max_sequence_length=max_length)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("prompts, max_length", [(PROMPTS, 64), ([LONG, PROMPTS[1]], 24), ([LONG, LONG + "x"], 24)],
                         ids=["unicode-padded", "one-truncated", "all-truncated-no-mask"])
def test_prompt_embeddings_equal_diffusers_bit_for_bit(tiny_z_image, dtype, prompts, max_length):
    expected = diffusers_encode(tiny_z_image, prompts, max_length, dtype)
    encoder = load_component(tiny_z_image, "text_encoder", dtype=dtype)
    tokenizer = load_component(tiny_z_image, "tokenizer")
    got = encode_prompts(encoder, tokenizer, prompts, max_sequence_length=max_length)
    assert isinstance(encoder, Qwen3TextModel)
    assert [g.shape for g in got] == [e.shape for e in expected]
    assert [g.dtype for g in got] == [dtype] * len(prompts)
    for e, g in zip(expected, got):
        assert torch.equal(e, g)
    if max_length == 24:
        assert got[0].shape[0] == 24  # truncated, not dropped


def test_every_hidden_state_equals_transformers_with_and_without_padding(tiny_z_image):
    from transformers import Qwen3Model

    theirs = Qwen3Model.from_pretrained(tiny_z_image / "text_encoder").eval()
    ours = load_component(tiny_z_image, "text_encoder")
    ids = torch.randint(0, theirs.config.vocab_size, (2, 19), generator=torch.Generator().manual_seed(3))
    for mask in (torch.ones(2, 19, dtype=torch.bool), torch.arange(19)[None] < torch.tensor([[19], [11]])):
        with torch.no_grad():
            expected = theirs(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            got = ours(ids, mask)
        assert len(got) == len(expected) == 4
        assert all(torch.equal(e, g) for e, g in zip(expected, got))


def tokenizer_copy(folder: Path, tmp_path: Path, template: str, layout: str) -> Path:
    """The fixture's tokenizer folder with `template` as chat_template.jinja (transformers 5) or inside
    tokenizer_config.json (transformers 4)."""
    copy = tmp_path / "tokenizer"
    shutil.copytree(folder / "tokenizer", copy)
    if layout == "jinja":
        (copy / "chat_template.jinja").write_text(template)
    else:
        (copy / "chat_template.jinja").unlink()
        config = json.loads((copy / "tokenizer_config.json").read_text())
        (copy / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    return copy


@pytest.mark.parametrize("layout", ["jinja", "tokenizer_config"])
def test_tokenizer_and_qwen3_chat_template_equal_transformers(tiny_z_image, tmp_path, layout):
    from transformers import AutoTokenizer

    folder = tokenizer_copy(tiny_z_image, tmp_path, QWEN3_TEMPLATE.read_text(), layout)
    theirs, ours = AutoTokenizer.from_pretrained(folder), load_component(folder, "tokenizer")
    for prompt in [*PROMPTS, LONG]:
        text = theirs.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                          add_generation_prompt=True, enable_thinking=True)
        assert ours.apply_chat_template(prompt) == text == f"<|im_start|>user\n{prompt}<|im_end|>\n" \
                                                          f"<|im_start|>assistant\n"
        expected = theirs([text, "x"], padding="max_length", max_length=40, truncation=True, return_tensors="pt")
        ids, mask = ours([text, "x"], 40)
        assert torch.equal(ids, expected.input_ids) and torch.equal(mask, expected.attention_mask)
    assert ours.apply_chat_template("p", enable_thinking=False).endswith("<think>\n\n</think>\n\n")


def test_causal_lm_layout_with_model_prefix_and_head_loads_the_same_states(tiny_z_image, tmp_path):
    """The hub's Z-Image text encoder is a Qwen3ForCausalLM folder (`model.` keys, lm_head) declared Qwen3Model."""
    from transformers import Qwen3ForCausalLM

    folder = tmp_path / "pipe"
    shutil.copytree(tiny_z_image, folder, ignore=shutil.ignore_patterns("transformer", "vae"))
    lm = Qwen3ForCausalLM.from_pretrained(tiny_z_image / "text_encoder")
    shutil.rmtree(folder / "text_encoder")
    lm.save_pretrained(folder / "text_encoder")
    ids = torch.tensor([[5, 9, 300, 2, 7]])
    base, causal = load_component(tiny_z_image, "text_encoder"), load_component(folder, "text_encoder")
    assert all(torch.equal(a, b) for a, b in zip(base(ids), causal(ids)))


def test_real_qwen3_4b_configuration_has_transformers_keys_and_shapes():
    from transformers import Qwen3Config, Qwen3Model

    from nodegraph.models.qwen3_text import build_qwen3

    # Qwen3-4B's config.json (hub), the text encoder of Z-Image-Turbo
    raw = dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", vocab_size=151936, hidden_size=2560,
               intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
               head_dim=128, rms_norm_eps=1e-6, rope_theta=1000000, max_position_embeddings=40960,
               tie_word_embeddings=True, hidden_act="silu", attention_bias=False, use_sliding_window=False)
    with torch.device("meta"):
        theirs = Qwen3Model(Qwen3Config(**raw))
    ours = build_qwen3(raw, "config.json")
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == 4_022_468_096  # Qwen3-4B without its (tied) LM head


def test_loading_and_encoding_never_imports_transformers(tiny_z_image):
    code = ("import sys; from nodegraph.models.loading import load_component; "
            "from nodegraph.models.qwen3_text import encode_prompts; "
            f"te = load_component({str(tiny_z_image)!r}, 'text_encoder'); "
            f"tok = load_component({str(tiny_z_image)!r}, 'tokenizer'); "
            "print(encode_prompts(te, tok, ['a cat'])[0].shape); "
            "assert 'transformers' not in sys.modules, 'transformers was imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_trimmed_padding_keeps_shapes_and_values_to_the_last_bits(tiny_z_image):
    encoder, tokenizer = load_component(tiny_z_image, "text_encoder"), load_component(tiny_z_image, "tokenizer")
    exact = encode_prompts(encoder, tokenizer, PROMPTS, max_sequence_length=512)
    trimmed = encode_prompts(encoder, tokenizer, PROMPTS, max_sequence_length=512, trim_padding=True)
    for e, t in zip(exact, trimmed):
        assert e.shape == t.shape
        torch.testing.assert_close(t, e, rtol=1e-6, atol=1e-6)
