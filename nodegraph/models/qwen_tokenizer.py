"""Qwen2/Qwen3's byte-level BPE tokenizer and its chat template, on the `tokenizers` package and jinja2, without
importing transformers (its tokenizer classes cost about 2.5 s to import on this CPU).

Reads a tokenizer folder as transformers saves it: `tokenizer.json` (vocabulary, merges, pre-tokenizer, added
special tokens), `tokenizer_config.json` (pad token, padding side, and — transformers 4 — the chat template) and,
from transformers 5, `chat_template.jinja`. Produces the ids and attention mask that transformers'
`Qwen2Tokenizer` gives with `padding="max_length", truncation=True` (tests/flow/test_qwen3_encoder.py compares
them), and renders the chat template the way `apply_chat_template(..., tokenize=False)` does: a sandboxed jinja2
environment with `trim_blocks`, `lstrip_blocks`, loop controls, and transformers' `tojson`, `raise_exception`
and `strftime_now`.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")


class QwenTokenizer:
    """`tokenizer(texts, max_length)` → ids (B, max_length) int64 and mask (B, max_length) int64, right-padded
    (unless the folder says otherwise) with the pad token, truncated to `max_length`."""

    def __init__(self, backend, config: dict[str, Any], chat_template: str | None, where: str):
        self.backend, self.where, self.chat_template = backend, where, chat_template
        self.special = {name: _token_text(config.get(name)) for name in SPECIAL_NAMES}
        self.pad_token = self.special["pad_token"] or "<|endoftext|>"
        self.pad_token_id = backend.token_to_id(self.pad_token)
        if self.pad_token_id is None:
            raise ValueError(f"{where}: the pad token {self.pad_token!r} is not in the vocabulary")
        self.padding_side = config.get("padding_side", "right")

    @classmethod
    def from_folder(cls, folder: str | Path) -> "QwenTokenizer":
        from tokenizers import Tokenizer

        folder = Path(folder)
        config_file, template_file = folder / "tokenizer_config.json", folder / "chat_template.jinja"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        template = template_file.read_text(encoding="utf-8") if template_file.exists() else config.get("chat_template")
        if isinstance(template, list):  # transformers 4: [{"name": "default", "template": ...}, ...]
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), config, template, str(folder))

    def apply_chat_template(self, prompt: str, enable_thinking: bool = True) -> str:
        """One user message with the assistant turn opened (add_generation_prompt), as text."""
        if not self.chat_template:
            raise ValueError(f"{self.where} has no chat template (chat_template.jinja, or `chat_template` in "
                             f"tokenizer_config.json); a Qwen text encoder folder carries one.")
        messages = [{"role": "user", "content": prompt}]
        return _compile(self.chat_template).render(messages=messages, tools=None, documents=None,
                                                   add_generation_prompt=True, enable_thinking=enable_thinking,
                                                   **self.special)

    def __call__(self, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        backend = self.backend
        backend.enable_truncation(max_length)
        backend.enable_padding(length=max_length, pad_id=self.pad_token_id, pad_token=self.pad_token,
                               direction=self.padding_side)
        encoded = backend.encode_batch(texts, add_special_tokens=True)
        ids = torch.tensor([e.ids for e in encoded], dtype=torch.long)  # (B, max_length)
        mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long)
        return ids, mask


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


_COMPILED: dict[str, Any] = {}


def _compile(template: str):
    if template not in _COMPILED:
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = tojson
        env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f))
        _COMPILED[template] = env.from_string(template)
    return _COMPILED[template]
