"""T5's SentencePiece (Unigram) tokenizer, read from the `tokenizer.json` that every T5 tokenizer folder carries
(hub folders next to `spiece.model`; folders saved by transformers 5 alone), on the `tokenizers` package, without
importing transformers (its tokenizer classes take seconds to import on this CPU).

Gives the ids and attention mask of transformers' `T5Tokenizer(Fast)` called as FluxPipeline and
StableDiffusion3Pipeline call it (diffusers 0.42.1, `_get_t5_prompt_embeds`): `padding="max_length"`,
`truncation=True`, `max_length=max_sequence_length`; the end-of-sequence token `</s>` is appended by the file's
post-processor (inside the `max_length`: a cut prompt still ends with `</s>`), padding with `<pad>` (id 0) on the
right (tests/flow/test_flux_text_nodes.py compares with transformers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

T5_TOKENIZERS = ("T5Tokenizer", "T5TokenizerFast")


class T5Tokenizer:
    """`tokenizer(texts, max_length)` → ids (B, max_length) int64 and mask (B, max_length) int64;
    `tokenizer.dropped(texts, max_length)` → per text the words cut by truncation ("" when nothing was)."""

    def __init__(self, backend, config: dict[str, Any], where: str):
        self.backend, self.where = backend, where
        pad = config.get("pad_token") or "<pad>"
        self.pad_token = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_token_id = backend.token_to_id(self.pad_token)
        if self.pad_token_id is None:
            raise ValueError(f"{where}: the pad token {self.pad_token!r} is not in the vocabulary")
        self.padding_side = config.get("padding_side", "right")
        self.model_max_length = config.get("model_max_length")

    @classmethod
    def from_folder(cls, folder: str | Path) -> "T5Tokenizer":
        from tokenizers import Tokenizer

        folder = Path(folder)
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        text = (folder / "tokenizer.json").read_text(encoding="utf-8")
        backend = Tokenizer.from_str(text)
        if config.get("tokenizer_class") in T5_TOKENIZERS:
            _as_transformers_rebuilds_it(backend, json.loads(text))
        return cls(backend, config, str(folder))

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def _encode(self, texts: list[str], max_length: int):
        backend = self.backend
        backend.enable_truncation(max_length)
        backend.enable_padding(length=max_length, pad_id=self.pad_token_id, pad_token=self.pad_token,
                               direction=self.padding_side)
        return backend.encode_batch(list(texts), add_special_tokens=True)

    def __call__(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self._encode(texts, max_length)
        ids = torch.tensor([e.ids for e in encoded], dtype=torch.long)  # (B, max_length)
        mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long)
        return ids, mask

    def unpadded(self, texts: list[str]) -> list[list[int]]:
        """Each text's ids ending with `</s>`, neither padded nor cut (memory in proportion to the texts)."""
        self.backend.no_truncation()
        self.backend.no_padding()
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=True)]

    def dropped(self, texts: list[str], max_length: int) -> list[str]:
        """The text truncation removed from each prompt, decoded as diffusers' warning shows it."""
        out = []
        for e in self._encode(texts, max_length):
            ids = [i for o in e.overflowing[:1] for i in o.ids if i != self.pad_token_id]
            out.append(self.backend.decode(ids, skip_special_tokens=True) if ids else "")
        return out


def _as_transformers_rebuilds_it(backend, raw: dict[str, Any]) -> None:
    """transformers 5's T5Tokenizer does not run a tokenizer.json's pipeline as written: it keeps the Unigram
    vocabulary and the precompiled SentencePiece normalizer (dropping any other normalizer), and splits on
    whitespace before the Metaspace step (so runs of spaces, tabs and newlines give no "▁" tokens of their own);
    the end-of-sequence token is appended after the text. Do the same, so hub folders written by older versions
    give the ids diffusers' pipelines get here."""
    import base64

    from tokenizers import normalizers, pre_tokenizers, processors

    found = raw.get("normalizer") or {}
    found = found.get("normalizers", [found]) if found.get("type") == "Sequence" else [found]
    charsmap = next((n["precompiled_charsmap"] for n in found if n.get("type") == "Precompiled"), None)
    backend.normalizer = normalizers.Precompiled(base64.b64decode(charsmap)) if charsmap else None
    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])
    eos = backend.token_to_id("</s>")
    if eos is not None:
        backend.post_processor = processors.TemplateProcessing(single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"],
                                                               special_tokens=[("</s>", eos)])


def is_t5_tokenizer(src, folder: str, declared: str) -> bool:
    """Whether the tokenizer folder is T5's: declared so by model_index.json, or by its tokenizer_config.json."""
    if declared in T5_TOKENIZERS:
        return True
    names = src.files(folder)
    config = f"{folder}/tokenizer_config.json" if folder else "tokenizer_config.json"
    if "tokenizer_config.json" in names and src.read_json(config).get("tokenizer_class") in T5_TOKENIZERS:
        return True
    return "spiece.model" in names


def load_t5_tokenizer(src, folder: str) -> T5Tokenizer:
    """The T5Tokenizer of a tokenizer folder (tokenizer.json required)."""
    from nodegraph.models.errors import CheckpointError

    names = src.files(folder)
    where = src.where(folder) if folder else src.name
    if "tokenizer.json" not in names:
        raise CheckpointError(f"no tokenizer.json in {where}: nodegraph reads T5's tokenizer from tokenizer.json "
                              f"(hub T5 folders ship it next to spiece.model; transformers' "
                              f"`T5TokenizerFast.from_pretrained(folder).save_pretrained(folder)` writes it); the "
                              f"folder holds {', '.join(names) or 'nothing'}.")
    local = [src.fetch(f"{folder}/{n}" if folder else n) for n in names
             if n in ("tokenizer.json", "tokenizer_config.json")]
    try:
        return T5Tokenizer.from_folder(local[0].parent)
    except Exception as e:
        raise CheckpointError(f"the tokenizer in {where} could not be read: {e}") from None
