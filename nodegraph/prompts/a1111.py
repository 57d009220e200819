"""AUTOMATIC1111's prompt syntax → weighted fragments → 75-token chunks.

The semantics are A1111's published ones (`modules/prompt_parser.py:parse_prompt_attention` and
`modules/sd_hijack_clip.py`), written here from their description:

* `(text)` multiplies the weight of `text` by 1.1, `[text]` by 1/1.1; brackets nest and multiply.
* `(text:1.3)` multiplies by 1.3 instead of 1.1 (so `((a:1.3))` is 1.3 · 1.1).
* `\\(`, `\\)`, `\\[`, `\\]`, `\\\\` are literal characters; a closing bracket with nothing open is literal text.
* A bracket left open applies to the rest of the prompt (users rely on this), with a warning naming its column.
* `BREAK` (upper case, a word of its own) ends the current 75-token chunk.
* Each fragment is tokenized on its own, without BOS/EOS. Tokens fill 75-token chunks; when a chunk fills up
  and a comma was seen in its last 20 tokens, the tail after that comma moves to the next chunk (A1111's
  default `comma_padding_backtrack`). Each chunk becomes [BOS] + its tokens + [EOS] + padding to 77 positions,
  weight 1.0 at BOS, EOS and padding (A1111 pads with EOS, then sets every position after the first EOS to the
  tokenizer's pad id: the same layout, which is also what the tokenizer gives an unweighted short prompt).

`<lora:name:w>` / `<hypernet:…>` tags are A1111 extra-network calls, not text: they are removed with a
warning (nodegraph applies LoRAs through the graph's `lora` input or the LoRA node).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

CHUNK_TOKENS = 75  # CLIP's 77 positions minus BOS and EOS
ROUND_STEP = 1.1
SQUARE_STEP = 1 / 1.1
COMMA_BACKTRACK = 20
MAX_ABS_WEIGHT = 10.0  # beyond this CLIP states are pushed far outside anything the UNet was trained on

_TOKEN = re.compile(r"""
    \\[()\[\]\\]            # escaped bracket or backslash
  | \\                      # a lone backslash
  | \(                      # open round
  | \[                      # open square
  | :\s*(?P<weight>[+-]?[.\d]+)\s*\)   # `:1.3)` closes a round bracket with an explicit weight
  | \)                      # close round
  | \]                      # close square
  | [^\\()\[\]:]+           # plain text
  | :                       # a colon that is not a weight
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")
_EXTRA_NETWORK = re.compile(r"<(lora|lyco|hypernet):[^>]*>")


class PromptError(ValueError):
    """A prompt nodegraph refuses to encode (a weight that is not a number or is out of range)."""


@dataclass
class Fragment:
    text: str
    weight: float
    is_break: bool = False


@dataclass
class ParsedPrompt:
    fragments: list[Fragment]
    warnings: list[str] = field(default_factory=list)


def parse(prompt: str) -> ParsedPrompt:
    """Split `prompt` into fragments of equal weight (adjacent equal weights merged), BREAKs as markers."""
    warnings: list[str] = []
    prompt = _drop_extra_networks(prompt, warnings)
    out: list[Fragment] = []
    open_round: list[tuple[int, int]] = []  # (index into out where the bracket's text starts, column)
    open_square: list[tuple[int, int]] = []

    def scale_from(start: int, factor: float) -> None:
        for frag in out[start:]:
            frag.weight *= factor

    for m in _TOKEN.finditer(prompt):
        text, column = m.group(0), m.start() + 1
        if text.startswith("\\"):
            out.append(Fragment(text[1:], 1.0))  # A1111 drops a lone backslash
        elif text == "(":
            open_round.append((len(out), column))
        elif text == "[":
            open_square.append((len(out), column))
        elif m.group("weight") is not None and open_round:
            scale_from(open_round.pop()[0], _weight_value(m.group("weight"), column))
        elif text == ")" and open_round:
            scale_from(open_round.pop()[0], ROUND_STEP)
        elif text == "]" and open_square:
            scale_from(open_square.pop()[0], SQUARE_STEP)
        else:
            if text in (")", "]") or (m.group("weight") is not None):
                warnings.append(f"column {column}: `{text.strip()}` closes no bracket; it is kept as text "
                                f"(write `\\{text[-1]}` for a literal bracket)")
            for k, part in enumerate(_BREAK.split(text)):
                if k:
                    out.append(Fragment("BREAK", -1.0, is_break=True))
                out.append(Fragment(part, 1.0))
    for start, column in open_round:
        warnings.append(f"column {column}: `(` is never closed, so everything after it is weighted ×{ROUND_STEP}; "
                        f"close it with `)` (or write `\\(` for a literal bracket)")
        scale_from(start, ROUND_STEP)
    for start, column in open_square:
        warnings.append(f"column {column}: `[` is never closed, so everything after it is weighted ×1/{ROUND_STEP}; "
                        f"close it with `]` (or write `\\[` for a literal bracket)")
        scale_from(start, SQUARE_STEP)
    fragments = _merge_equal_weights(out) or [Fragment("", 1.0)]
    _check_weights(fragments)
    return ParsedPrompt(fragments, warnings)


def _drop_extra_networks(prompt: str, warnings: list[str]) -> str:
    found = ", ".join(m.group(0) for m in _EXTRA_NETWORK.finditer(prompt))
    if found:
        warnings.append(f"{found}: A1111 extra-network tags are not text and were removed; apply a LoRA with the "
                        f"graph's `lora` input or a LoadLoRA node")
    return _EXTRA_NETWORK.sub(lambda m: " " * len(m.group(0)), prompt)  # blanks keep columns; CLIP ignores them


def _weight_value(text: str, column: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PromptError(f"column {column}: `:{text})` is not a weight; write a number such as `(red:1.2)`") from None
    if not math.isfinite(value) or abs(value) > MAX_ABS_WEIGHT:
        raise PromptError(f"column {column}: weight {text} is outside the sane range "
                          f"[-{MAX_ABS_WEIGHT:g}, {MAX_ABS_WEIGHT:g}]; typical weights are 0.5 to 1.5")
    return value


def _merge_equal_weights(fragments: list[Fragment]) -> list[Fragment]:
    merged: list[Fragment] = []
    for frag in fragments:
        if merged and not frag.is_break and not merged[-1].is_break and merged[-1].weight == frag.weight:
            merged[-1].text += frag.text
        else:
            merged.append(frag)
    return merged


def _check_weights(fragments: list[Fragment]) -> None:
    for frag in fragments:
        if not frag.is_break and abs(frag.weight) > MAX_ABS_WEIGHT:
            raise PromptError(f"`{frag.text.strip()}` ends up weighted {frag.weight:.3g} (nested brackets multiply), "
                              f"outside the sane range [-{MAX_ABS_WEIGHT:g}, {MAX_ABS_WEIGHT:g}]; remove some brackets")


@dataclass
class Chunk:
    """77 token ids [BOS, ≤ 75 tokens, EOS, padding] and one weight per position."""

    ids: list[int]
    weights: list[float]


def chunk_tokens(parsed: ParsedPrompt, tokenize, *, bos: int, eos: int, pad: int, comma: int | None) -> list[Chunk]:
    """Lay the fragments' tokens out in 75-token chunks. `tokenize(text) -> ids` without special tokens."""
    chunks: list[Chunk] = []
    ids: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close_chunk() -> None:
        nonlocal ids, weights, last_comma
        fill = CHUNK_TOKENS - len(ids)
        chunks.append(Chunk([bos, *ids, eos, *[pad] * fill], [1.0, *weights, 1.0, *[1.0] * fill]))
        ids, weights, last_comma = [], [], -1

    for frag in parsed.fragments:
        if frag.is_break:
            close_chunk()
            continue
        for token in tokenize(frag.text):
            if token == comma:
                last_comma = len(ids)
            elif len(ids) == CHUNK_TOKENS and last_comma != -1 and len(ids) - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1  # the comma stays; what follows it moves on with the new token
                moved_ids, moved_weights = ids[cut:], weights[cut:]
                ids, weights = ids[:cut], weights[:cut]
                close_chunk()
                ids, weights = moved_ids, moved_weights
            if len(ids) == CHUNK_TOKENS:
                close_chunk()
            ids.append(token)
            weights.append(frag.weight)
    if ids or not chunks:
        close_chunk()
    return chunks
