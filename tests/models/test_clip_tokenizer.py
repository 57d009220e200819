"""nodegraph's CLIP tokenizer gives the token ids of transformers' CLIPTokenizer (the oracle, run in the same test) on
every folder layout SD checkpoints ship: vocab.json + merges.txt (hub repos, with transformers 4's configs), and
tokenizer.json (what transformers 5 saves); SD1.x's tokenizer and SDXL's tokenizer_2 (pad "!"); textual-inversion
tokens added to a copy."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from transformers import CLIPTokenizer as Reference

from nodegraph.models.clip_tokenizer import CLIPTokenizer
from nodegraph.models.errors import CheckpointError
from nodegraph.models.loading import load_component

REPO = Path(__file__).resolve().parents[2]
BUILTIN = REPO / "nodegraph" / "builtin" / "clip_tokenizer"  # the real CLIP BPE vocabulary (49,408 tokens)
TINY = Path(__file__).resolve().parent / "data" / "tiny_tokenizer"  # 56 tokens: most text is unknown pieces

CORPUS = [
    "a photo of a cat", "", " ", "  Hello,   World!!  ", "wow!! what?! ...!", "UPPER lower MiXeD CamelCase",
    "naïve café résumé Ångström façade", "e\u0301 (a combining accent, NFC-composed first)",
    "emoji 🐱🔥 and a family 👩‍👩‍👧", "猫の写真 中文字符 한국어", "(masterpiece:1.2), [bad hands:0.8], {red|blue}, ((cat))",
    "numbers 12345 3.14 1e-9 0x1F", "it's we're they've I'm you'll he'd don't", "tab\tnew\nline\r\nend",
    "no\u00a0break\u3000ideographic\u2003em spaces",
    "<|startoftext|> inside <|endoftext|> text", "a <spot-emb> cat, <SPOT-EMB> dog <spot-emb>_1",
    "word " * 90, "supercalifragilisticexpialidocious" * 4,
]
TI_TOKENS = ["<spot-emb>", "<spot-emb>_1"]

# transformers 4's files in SD hub repos (stabilityai/stable-diffusion-xl-base-1.0 tokenizer_2): special tokens as
# AddedToken dicts with normalized: true, pad "!" also in special_tokens_map.json
_HUB_TOKEN = {"__type": "AddedToken", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
HUB_TOKENIZER_2_CONFIG = {
    "add_prefix_space": False, "clean_up_tokenization_spaces": True, "do_lower_case": True, "errors": "replace",
    "model_max_length": 77, "pad_token": "!", "tokenizer_class": "CLIPTokenizer",
    **{k: dict(_HUB_TOKEN, content=c) for k, c in
       [("bos_token", "<|startoftext|>"), ("eos_token", "<|endoftext|>"), ("unk_token", "<|endoftext|>")]}}
HUB_SPECIAL_TOKENS_MAP = {k: ({kk: vv for kk, vv in v.items() if kk != "__type"} if isinstance(v, dict) else v)
                          for k, v in HUB_TOKENIZER_2_CONFIG.items() if k.endswith("_token")}
# transformers 4.3x's config (e.g. SD1.5 repos re-saved): the specials listed in `added_tokens_decoder`
DECODER_CONFIG = {"model_max_length": 77, "tokenizer_class": "CLIPTokenizer", "bos_token": "<|startoftext|>",
                  "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                  "added_tokens_decoder": {
                      str(i): {"content": c, "lstrip": False, "normalized": True, "rstrip": False,
                               "single_word": False, "special": True}
                      for i, c in [(49406, "<|startoftext|>"), (49407, "<|endoftext|>")]}}


def _vocab_folder(root: Path, config: dict | None = None, special_map: dict | None = None) -> Path:
    root.mkdir()
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(BUILTIN / name, root)
    if config is not None:
        (root / "tokenizer_config.json").write_text(json.dumps(config))
    if special_map is not None:
        (root / "special_tokens_map.json").write_text(json.dumps(special_map))
    return root


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """name → (folder, keyword arguments both loaders get)."""
    root = tmp_path_factory.mktemp("tokenizers")
    json_sd1, json_sdxl2 = root / "json_sd1", root / "json_sdxl2"
    Reference.from_pretrained(BUILTIN).save_pretrained(json_sd1)
    Reference.from_pretrained(BUILTIN, pad_token="!").save_pretrained(json_sdxl2)
    return {
        "vocab_merges_sd1": (BUILTIN, {}),
        "vocab_merges_sdxl_tokenizer_2_override": (BUILTIN, {"pad_token": "!"}),  # the single-file loader's way
        "vocab_merges_sdxl_tokenizer_2_hub": (_vocab_folder(root / "hub2", HUB_TOKENIZER_2_CONFIG,
                                                            HUB_SPECIAL_TOKENS_MAP), {}),
        "vocab_merges_added_tokens_decoder": (_vocab_folder(root / "decoder", DECODER_CONFIG), {}),
        "tokenizer_json_sd1": (json_sd1, {}),
        "tokenizer_json_sdxl_tokenizer_2": (json_sdxl2, {}),
        "tiny_vocab": (TINY, {}),
    }


def _assert_same_tokenization(ours, reference, corpus=CORPUS):
    for text in corpus:
        for options in ({}, {"add_special_tokens": False}, {"padding": "max_length", "max_length": 77,
                                                             "truncation": True}):
            assert ours(text, **options).input_ids == reference(text, **options).input_ids, (text, options)
        assert ours.tokenize(text) == reference.tokenize(text), text
        ids = reference(text).input_ids
        assert ours.decode(ids) == reference.decode(ids), text
    batch = dict(padding="max_length", max_length=77, truncation=True)
    assert ours(CORPUS, **batch).input_ids == reference(CORPUS, **batch).input_ids
    assert ours(CORPUS[:4], padding=True).input_ids == reference(CORPUS[:4], padding=True).input_ids
    assert ours(CORPUS[:2], return_tensors="pt", **batch).input_ids.tolist() == \
        reference(CORPUS[:2], return_tensors="pt", **batch).input_ids.tolist()


def _assert_same_vocabulary(ours, reference):
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert (getattr(ours, name), getattr(ours, f"{name}_id")) == \
            (str(getattr(reference, name)), getattr(reference, f"{name}_id")), name
    assert ours.model_max_length == reference.model_max_length
    assert len(ours) == len(reference) and ours.get_vocab() == reference.get_vocab()
    assert ours.added_tokens_encoder == reference.added_tokens_encoder
    probes = [",</w>", "cat</w>", "ca", "<|endoftext|>", "!", "not-a-token"]
    assert ours.convert_tokens_to_ids(probes) == reference.convert_tokens_to_ids(probes)
    assert ours.convert_tokens_to_ids(",</w>") == reference.convert_tokens_to_ids(",</w>")


LAYOUTS = ["vocab_merges_sd1", "vocab_merges_sdxl_tokenizer_2_override", "vocab_merges_sdxl_tokenizer_2_hub",
           "vocab_merges_added_tokens_decoder", "tokenizer_json_sd1", "tokenizer_json_sdxl_tokenizer_2", "tiny_vocab"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_token_ids_equal_transformers_clip_tokenizer(layouts, layout):
    folder, options = layouts[layout]
    ours, reference = CLIPTokenizer.from_folder(folder, **options), Reference.from_pretrained(folder, **options)
    _assert_same_vocabulary(ours, reference)
    _assert_same_tokenization(ours, reference)


@pytest.mark.parametrize("layout", ["vocab_merges_sd1", "tokenizer_json_sdxl_tokenizer_2"])
def test_textual_inversion_tokens_added_to_a_copy_tokenize_as_in_transformers(layouts, layout):
    folder, options = layouts[layout]
    cached, reference = CLIPTokenizer.from_folder(folder, **options), Reference.from_pretrained(folder, **options)
    ours = copy.deepcopy(cached)
    assert ours.add_tokens(TI_TOKENS) == reference.add_tokens(TI_TOKENS) == 2
    _assert_same_vocabulary(ours, reference)
    _assert_same_tokenization(ours, reference)
    assert ours("<spot-emb> <spot-emb>_1").input_ids[1:3] == [49408, 49409]
    assert "<spot-emb>" not in cached.get_vocab() and len(cached) == 49408, "the original is left as it was"
    again = copy.deepcopy(ours)  # a second embedding on top of the first (copies share the BPE model)
    assert again.add_tokens(["<more>"]) == reference.add_tokens(["<more>"]) == 1
    _assert_same_vocabulary(again, reference)
    assert again("<more> <spot-emb>").input_ids == reference("<more> <spot-emb>").input_ids == [49406, 49410, 49408,
                                                                                                49407]
    assert len(ours) == 49410 and "<more>" not in ours.get_vocab()


def test_the_corpus_tells_the_layouts_apart():
    """Sensitivity of the parity tests: SDXL's "!" pad token changes ids and padding, long prompts are cut."""
    sd1, sdxl2 = CLIPTokenizer.from_folder(BUILTIN), CLIPTokenizer.from_folder(BUILTIN, pad_token="!")
    assert sd1("wow!!").input_ids != sdxl2("wow!!").input_ids  # "!" is a special (added) token in tokenizer_2
    padded = dict(padding="max_length", max_length=77, truncation=True)
    assert sd1("a cat", **padded).input_ids[-1] == 49407 and sdxl2("a cat", **padded).input_ids[-1] == 0
    long = sd1(CORPUS[-2]).input_ids
    assert len(long) > 77 and sd1(CORPUS[-2], **padded).input_ids == long[:76] + [49407]
    assert sd1("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]  # notes: diffusers-facts


def test_load_component_gives_nodegraphs_tokenizer_from_both_layouts(layouts):
    for layout in ("vocab_merges_sdxl_tokenizer_2_hub", "tokenizer_json_sdxl_tokenizer_2"):
        tokenizer = load_component(layouts[layout][0], "tokenizer")
        assert isinstance(tokenizer, CLIPTokenizer) and tokenizer.pad_token_id == 0


def test_tokenizer_files_that_do_not_belong_together_are_refused(tmp_path):
    config = json.loads(json.dumps(DECODER_CONFIG))
    config["added_tokens_decoder"]["49500"] = dict(config["added_tokens_decoder"]["49406"], content="<extra>")
    folder = _vocab_folder(tmp_path / "tok", config)
    with pytest.raises(CheckpointError, match=r"the tokenizer in .*tok could not be read: .*added token '<extra>' "
                                              r"is declared as id 49500 but the vocabulary gives it id 49408"):
        load_component(folder, "tokenizer")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"the tokenizer in .*broken could not be read"):
        load_component(broken, "tokenizer")
