"""CLIP's byte-level BPE tokenizer on Hugging Face's `tokenizers` (Rust), without importing transformers (its
top-level import alone costs about 0.6 s, more on a cold page cache).

The pipeline is the one transformers 5's `CLIPTokenizer.__init__` builds, so the ids are the same
(tests/models/test_clip_tokenizer.py checks them against transformers on both folder layouts):
* normalizer: NFC, every run of whitespace → one space, lower case (CLIP is always lower-cased: `do_lower_case`
  is ignored, as transformers 5 ignores it);
* pre-tokenizer: CLIP's word pattern (openai/CLIP `simple_tokenizer.py`: the two special tokens, English
  contractions, letter runs, single digits, runs of other non-space characters), then byte-level (GPT-2's byte →
  unicode table, no prefix space);
* model: BPE, `</w>` appended to the last piece of each word, unknown pieces → `unk_token`, no dropout;
* post-processing: `<|startoftext|> … <|endoftext|>` (transformers' `RobertaProcessing` with bos/eos);
* decoding: byte-level, then `</w>` → space and the ends stripped. transformers 5 never applies
  `clean_up_tokenization_spaces` to a BPE tokenizer, so neither does this.
Special tokens (bos, eos, pad, unk) are added tokens, matched in the raw text before normalisation: SDXL's second
tokenizer, whose pad token is "!", therefore splits every "!" off as id 0, as transformers does.

A `tokenizer.json` (what transformers 5 saves) gives the vocabulary, merges and added tokens; transformers 5
rebuilds CLIPTokenizer's pipeline around them, and so does `from_folder`. `vocab.json` + `merges.txt` (every SD
hub repo) are read by `tokenizers`' own BPE reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

# in transformers' order of adding them (it decides the ids of specials missing from the vocabulary)
SPECIAL_DEFAULTS = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                    "pad_token": "<|endoftext|>"}
# every released CLIP text encoder has 77 positions; transformers' default when the config names no length is
# "unlimited", which makes padding to `model_max_length` allocate without bound
DEFAULT_MAX_LENGTH = 77
_WORDS = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_END_OF_WORD = "</w>"
_ADDED_TOKEN_FIELDS = ("single_word", "lstrip", "rstrip", "normalized", "special")


@dataclass
class Encoding:
    """What transformers' `BatchEncoding` gives nodegraph's callers: `input_ids` (a list, a list of lists for a
    batch, or a (batch, length) tensor with `return_tensors="pt"`)."""
    input_ids: Any


class CLIPTokenizer:
    """The part of transformers' CLIPTokenizer API nodegraph uses: call, `tokenize`, `decode`,
    `convert_tokens_to_ids`, `get_vocab`, `add_tokens`, `added_tokens_encoder`, the special tokens and their ids,
    `model_max_length` and `len()`. Read-only once built, except `add_tokens` (textual inversion adds to a copy)."""

    def __init__(self, backend: Tokenizer, specials: dict[str, str], model_max_length: int):
        self._backend = backend
        self._specials = specials
        self.model_max_length = model_max_length

    @classmethod
    def from_folder(cls, folder: str | Path, **overrides: Any) -> CLIPTokenizer:
        """Read a tokenizer folder: `tokenizer.json`, or `vocab.json` + `merges.txt`, with `tokenizer_config.json`
        and `special_tokens_map.json` when present. `overrides` (e.g. `pad_token="!"`) win over the files, as
        keyword arguments of transformers' `from_pretrained` do."""
        folder = Path(folder)
        config = _read_json(folder / "tokenizer_config.json")
        declared = config.get("added_tokens_decoder") or {}
        if not declared:  # transformers reads the legacy map only when the config lists no added tokens
            config.update({k: v for k, v in _read_json(folder / "special_tokens_map.json").items()
                           if k in SPECIAL_DEFAULTS})
        config.update(overrides)
        specials = {key: _content(config.get(key) or default) for key, default in SPECIAL_DEFAULTS.items()}
        if (folder / "tokenizer.json").is_file():
            backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
            _as_clip_bpe(backend.model, specials["unk_token"], folder / "tokenizer.json")
        else:
            backend = Tokenizer(BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                              continuing_subword_prefix="", end_of_word_suffix=_END_OF_WORD,
                                              fuse_unk=False, unk_token=specials["unk_token"], dropout=None))
        _build_pipeline(backend)
        for token_id, token in sorted(((int(i), t) for i, t in declared.items())):
            _add_declared(backend, token_id, token, folder / "tokenizer_config.json")
        for key in SPECIAL_DEFAULTS:  # the special tokens are added tokens, whole-matched before normalisation
            _add_special(backend, config.get(key) or SPECIAL_DEFAULTS[key])
        # transformers' post-processor takes the ids of the config's bos/eos (also when added just now)
        backend.post_processor = processors.RobertaProcessing(
            (specials["eos_token"], backend.token_to_id(specials["eos_token"])),
            (specials["bos_token"], backend.token_to_id(specials["bos_token"])), trim_offsets=False,
            add_prefix_space=False)
        backend.no_padding()
        backend.no_truncation()
        max_length = config.get("model_max_length")
        return cls(backend, specials, int(max_length) if max_length and max_length < 10**6 else DEFAULT_MAX_LENGTH)

    # --- encoding --------------------------------------------------------------------------------------------
    def __call__(self, text: str | list[str], *, padding: bool | str = False, max_length: int | None = None,
                 truncation: bool = False, add_special_tokens: bool = True,
                 return_tensors: str | None = None) -> Encoding:
        """transformers' semantics for these arguments: truncation keeps the first `max_length` ids, bos and eos
        included; padding="max_length" pads on the right to `max_length` (default `model_max_length`), True or
        "longest" to the batch's longest."""
        texts = [text] if isinstance(text, str) else list(text)
        length = max_length or self.model_max_length
        ids = [self._backend.encode(t, add_special_tokens=add_special_tokens).ids for t in texts]
        if truncation:
            ids = [self._truncate(row, length, add_special_tokens) for row in ids]
        if padding:
            width = length if padding == "max_length" else max(map(len, ids), default=0)
            ids = [row + [self.pad_token_id] * (width - len(row)) for row in ids]
        if return_tensors == "pt":
            import torch

            return Encoding(torch.tensor(ids, dtype=torch.long))
        if return_tensors is not None:
            raise ValueError(f"`return_tensors` is {return_tensors!r}; nodegraph's tokenizer gives 'pt' or lists")
        return Encoding(ids[0] if isinstance(text, str) else ids)

    def _truncate(self, row: list[int], length: int, with_specials: bool) -> list[int]:
        if len(row) <= length:
            return row
        if with_specials:  # the content is cut, bos and eos stay (tokenizers' truncation, right side)
            return row[:1] + row[1:-1][:max(length - 2, 0)] + row[-1:]
        return row[:length]

    def tokenize(self, text: str) -> list[str]:
        """The token strings of `text`, without bos/eos (e.g. "a cat" → ["a</w>", "cat</w>"])."""
        return self._backend.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: list[int]) -> str:
        return self._backend.decode(list(ids), skip_special_tokens=False).replace(_END_OF_WORD, " ").strip()

    # --- vocabulary ------------------------------------------------------------------------------------------
    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        """Ids of token strings (`unk_token_id` for an unknown one), as transformers gives them."""
        if isinstance(tokens, str):
            found = self._backend.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def get_vocab(self) -> dict[str, int]:
        return self._backend.get_vocab(with_added_tokens=True)

    def __len__(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        """Added tokens (special ones included) → id, in id order."""
        return {t.content: i for i, t in sorted(self._backend.get_added_tokens_decoder().items())}

    def add_tokens(self, tokens: list[str]) -> int:
        """Add ordinary (normalised, non-special) tokens, as transformers' `add_tokens`; returns how many are
        new. Textual inversion calls it on a copy (`copy.deepcopy`), never on a cached tokenizer."""
        return self._backend.add_tokens([AddedToken(t, normalized=True, special=False) for t in tokens])

    def __deepcopy__(self, memo: dict) -> CLIPTokenizer:
        return CLIPTokenizer(_on_same_model(self._backend), dict(self._specials), self.model_max_length)

    # --- special tokens --------------------------------------------------------------------------------------
    bos_token = property(lambda self: self._specials["bos_token"])
    eos_token = property(lambda self: self._specials["eos_token"])
    pad_token = property(lambda self: self._specials["pad_token"])
    unk_token = property(lambda self: self._specials["unk_token"])
    bos_token_id = property(lambda self: self._backend.token_to_id(self.bos_token))
    eos_token_id = property(lambda self: self._backend.token_to_id(self.eos_token))
    pad_token_id = property(lambda self: self._backend.token_to_id(self.pad_token))
    unk_token_id = property(lambda self: self._backend.token_to_id(self.unk_token))

    def __repr__(self) -> str:
        return f"CLIPTokenizer(vocab={len(self)}, model_max_length={self.model_max_length}, pad={self.pad_token!r})"


def _build_pipeline(backend: Tokenizer) -> None:
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(_WORDS), behavior="removed", invert=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False)])
    backend.decoder = decoders.ByteLevel()


def _on_same_model(backend: Tokenizer) -> Tokenizer:
    """A tokenizer with its own added tokens on the same BPE model and pipeline objects, which nothing changes
    after loading. Copying them would parse the whole vocabulary again (about 0.4 s; this takes milliseconds)."""
    clone = Tokenizer(backend.model)
    clone.normalizer, clone.pre_tokenizer = backend.normalizer, backend.pre_tokenizer
    clone.post_processor, clone.decoder = backend.post_processor, backend.decoder
    for token_id, token in sorted(backend.get_added_tokens_decoder().items()):  # in id order: the same ids again
        (clone.add_special_tokens if token.special else clone.add_tokens)([token])
        if clone.token_to_id(token.content) != token_id:
            raise RuntimeError(f"copying the tokenizer moved {token.content!r} from id {token_id}")
    return clone


def _as_clip_bpe(model: Any, unk_token: str, where: Path) -> None:
    """The file's BPE with CLIPTokenizer's settings, which transformers 5 imposes on a tokenizer.json too."""
    if not isinstance(model, BPE):
        raise ValueError(f"{where} is not a CLIP tokenizer: expected a BPE model, found {type(model).__name__}")
    model.unk_token, model.end_of_word_suffix, model.continuing_subword_prefix = unk_token, _END_OF_WORD, ""
    model.fuse_unk, model.dropout, model.byte_fallback, model.ignore_merges = False, None, False, False


def _add_declared(backend: Tokenizer, token_id: int, token: Any, where: Path) -> None:
    """An entry of tokenizer_config.json's `added_tokens_decoder`, which must land on the id it declares."""
    added = _added_token(token, special=bool(isinstance(token, dict) and token.get("special")))
    (backend.add_special_tokens if added.special else backend.add_tokens)([added])
    got = backend.token_to_id(added.content)
    if got != token_id:
        raise ValueError(f"{where}: added token {added.content!r} is declared as id {token_id} but the vocabulary "
                         f"gives it id {got}; the tokenizer files do not belong together")


def _add_special(backend: Tokenizer, token: Any) -> None:
    content = _content(token)
    if content not in {t.content for t in backend.get_added_tokens_decoder().values()}:
        backend.add_special_tokens([_added_token(token, special=True)])


def _added_token(token: Any, special: bool) -> AddedToken:
    if isinstance(token, dict):  # {"__type": "AddedToken", "content": …, "normalized": …} or the v5 form
        flags = {k: bool(token[k]) for k in _ADDED_TOKEN_FIELDS if k in token}
        flags["special"] = special or flags.get("special", False)
        flags.setdefault("normalized", not flags["special"])
        return AddedToken(str(token["content"]), **flags)
    return AddedToken(str(token), special=special, normalized=not special)


def _content(token: Any) -> str:
    return str(token["content"]) if isinstance(token, dict) else str(token)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value
