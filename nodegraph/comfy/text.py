"""ComfyUI's CLIPTextEncode for SD1.x-style CLIP: its prompt weighting, its 75-token chunks, its weighting rule.

Facts from comfy/sd1_clip.py (shared/notes/comfyui-facts.md):
* `(text)` multiplies the enclosing weight by 1.1; `(text:w)` SETS the weight to w; `\\(` `\\)` are literal
  brackets; `[text]` is plain text (not A1111's down-weight).
* The prompt is tokenized word by word (split on spaces); words go into chunks of 75 tokens, a word that does
  not fit moving whole to the next chunk unless it is 8 tokens or longer; each chunk is BOS + tokens + EOS,
  padded with EOS to 77.
* When any weight ≠ 1, the empty prompt is encoded too and each weighted token's hidden state is moved
  relative to the empty prompt's at the same position: z_empty + w·(z − z_empty) — not A1111's rule.
"""

from __future__ import annotations

CHUNK = 77  # tokens per encoded sequence: BOS + 75 + EOS
LONG_WORD = 8  # words of this many tokens or more may be split across chunks
WORD_BATCH = 64  # words tokenized at once when a prompt's length is counted


def parse_weights(text: str, weight: float = 1.0) -> list[tuple[str, float]]:
    """Split a prompt into (text, weight) pieces by ComfyUI's bracket rule (escapes already hidden)."""
    pieces: list[str] = []
    current, depth = "", 0
    for char in text:
        if char == "(":
            if depth == 0 and current:
                pieces.append(current)
                current = ""
            current += char
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                pieces.append(current + ")")
                current = ""
            else:
                current += char
        else:
            current += char
    if current:
        pieces.append(current)
    out: list[tuple[str, float]] = []
    for piece in pieces:
        if len(piece) >= 2 and piece[0] == "(" and piece[-1] == ")":
            inner, inner_weight = piece[1:-1], weight * 1.1
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    inner_weight, inner = float(inner[colon + 1:]), inner[:colon]
                except ValueError:
                    pass  # "(a:b)" with no number: the colon is text, the brackets still weigh ×1.1
            out += parse_weights(inner, inner_weight)
        else:
            out.append((piece, weight))
    return out


_ESCAPES = {"\\)": "\0\1", "\\(": "\0\2"}


def plain_text(prompt: str) -> str | None:
    """The prompt as ComfyUI's tokenizer reads it when it holds no weights (`\\(` escapes turned into brackets),
    or None when some part of it is weighted (`(word)`, `(word:1.2)`)."""
    for escaped, hidden in _ESCAPES.items():
        prompt = prompt.replace(escaped, hidden)
    pieces = parse_weights(prompt)
    if any(weight != 1.0 for _, weight in pieces):
        return None
    text = "".join(piece for piece, _ in pieces)
    for escaped, hidden in _ESCAPES.items():
        text = text.replace(hidden, escaped[1])
    return text


def weighted_chunks(prompt: str, tokenizer, pad: int | None = None,
                    embeddings=None) -> list[list[tuple[int, float]]]:
    """The prompt as chunks of 77 (token id, weight) pairs, as ComfyUI's SDTokenizer builds them; padded with
    `pad` (default EOS, as for CLIP-L; SDXL's bigG pads with 0). `embeddings` (comfy/embeddings.py
    PromptEmbeddings) turns `embedding:NAME` words into the embedding's token ids; None reads them as text."""
    for escaped, hidden in _ESCAPES.items():
        prompt = prompt.replace(escaped, hidden)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = eos if pad is None else pad
    words: list[list[tuple[int, float]]] = []
    for piece, weight in parse_weights(prompt, 1.0):
        for escaped, hidden in _ESCAPES.items():
            piece = piece.replace(hidden, escaped[1])
        for word in piece.replace("\n", " ").split(" "):
            if word and embeddings is not None and word.startswith("embedding:"):
                ids, word = embeddings.word(word)
                if ids:
                    words.append([(t, weight) for t in ids])
            if word:
                ids = tokenizer(word).input_ids[1:-1]  # without BOS/EOS
                words.append([(t, weight) for t in ids])
    chunks: list[list[tuple[int, float]]] = []
    chunk = [(bos, 1.0)]
    for group in words:
        long_word = len(group) >= LONG_WORD
        while group:
            if len(group) + len(chunk) > CHUNK - 1:
                room = CHUNK - len(chunk) - 1
                if long_word:
                    chunk += group[:room]
                    group = group[room:]
                chunks.append(chunk + [(eos, 1.0)] + [(pad, 1.0)] * (CHUNK - len(chunk) - 1))
                chunk = [(bos, 1.0)]
            else:
                chunk += group
                group = []
    chunks.append(chunk + [(eos, 1.0)] + [(pad, 1.0)] * (CHUNK - len(chunk) - 1))
    return chunks


def layer_choice(stop_at_clip_layer: int, loaded_layers: int, file_layers: int | None, layer_norm: bool):
    """ComfyUI's CLIP layer `stop_at_clip_layer` (−1 the file's last layer, −2 the one before, …) as
    (clip_skip, layer) for `encode` on an encoder that loaded the first `loaded_layers` of the file's
    `file_layers` (SD 2.x files hold 24; nodegraph, like diffusers, loads 23). `layer_norm`: whether ComfyUI
    applies the final layer norm to the chosen layer (SD 1.x/2.x yes, SDXL's encoders no)."""
    file_layers = loaded_layers if file_layers is None else file_layers
    wanted = file_layers + stop_at_clip_layer + 1  # hidden_states index: 0 embeddings, k after k layers
    if not 1 <= wanted <= loaded_layers:
        usable = f"{loaded_layers - file_layers - 1} to {-file_layers}"
        raise ValueError(f"`stop_at_clip_layer` {stop_at_clip_layer} picks layer {wanted} of this text encoder's "
                         f"{file_layers}, but nodegraph loads {loaded_layers} of them; use {usable}")
    return loaded_layers - wanted, "last" if layer_norm else "raw"


def encode(encoder, tokenizer, prompt: str, clip_skip: int = 0, layer: str = "last", pad: int | None = None,
           embeddings=None):
    """((1, 77·chunks, C) hidden states, (1, P) pooled or None) of `prompt` by ComfyUI's rules.

    `layer` "last" (SD1.x: after the final layer norm; clip_skip as diffusers'), "penultimate" (SDXL: the raw
    hidden state before the last layer) or "raw" (the state `clip_skip` layers before the last, no final norm);
    the pooled embedding is the first chunk's, unweighted. `embeddings`: see `weighted_chunks`; its text encoder
    (with the embeddings' rows) encodes the prompt.
    """
    import torch

    chunks = weighted_chunks(prompt, tokenizer, pad, embeddings)
    if embeddings is not None:
        encoder = embeddings.encoder
    weighted = any(w != 1.0 for chunk in chunks for _, w in chunk)
    states, pooled = [], None
    empty = None
    if weighted:
        filler = tokenizer.eos_token_id if pad is None else pad
        empty_ids = [tokenizer.bos_token_id, tokenizer.eos_token_id] + [filler] * (CHUNK - 2)
        empty = _forward(encoder, torch.tensor([empty_ids]), clip_skip, layer)[0][0]  # (77, C)
    for chunk in chunks:
        z, chunk_pooled = _forward(encoder, torch.tensor([[t for t, _ in chunk]]), clip_skip, layer)  # (1, 77, C)
        pooled = chunk_pooled if pooled is None else pooled
        if weighted:
            w = torch.tensor([w for _, w in chunk], dtype=z.dtype, device=z.device)[None, :, None]  # (1, 77, 1)
            z = torch.where(w != 1.0, empty + w * (z - empty), z)
        states.append(z)
    return torch.cat(states, dim=1), pooled


def _forward(encoder, ids, clip_skip: int, layer: str):
    """clip_forward, plus "raw": the hidden state `clip_skip` layers before the last without the final norm."""
    import torch

    from nodegraph.prompts.encode import clip_forward

    if layer != "raw":
        return clip_forward(encoder, ids, clip_skip, layer)
    if clip_skip >= 1:
        return clip_forward(encoder, ids, clip_skip - 1, "penultimate")
    with torch.no_grad():
        out = encoder(ids.to(encoder.device), output_hidden_states=True)
    return out.hidden_states[-1], (out[0] if out[0].ndim == 2 else None)  # the last layer's output, un-normed


def comfy_words(prompt: str) -> list[tuple[str, float]]:
    """The prompt's words and their weights as ComfyUI's SDTokenizer reads them (`tokenize_with_weights`): weights
    parsed, escapes turned into brackets, each piece split on spaces and newlines, empty words dropped."""
    for escaped, hidden in _ESCAPES.items():
        prompt = prompt.replace(escaped, hidden)
    out = []
    for piece, weight in parse_weights(prompt):
        for escaped, hidden in _ESCAPES.items():
            piece = piece.replace(hidden, escaped[1])
        out += [(word, weight) for word in piece.replace("\n", " ").split(" ") if word]
    return out


def pooled_text(prompt: str) -> str:
    """The text a CLIP encoder's pooled embedding reads: weights change only hidden states (ComfyUI's pooled is the
    first section's, from the plain tokens), so the weighted words joined by spaces."""
    plain = plain_text(prompt)
    return plain if plain is not None else " ".join(word for word, _ in comfy_words(prompt))


def clip_token_count(prompt: str, tokenizer, limit: int) -> int:
    """The CLIP tokens of the prompt's words as `weighted_chunks` reads them (no BOS/EOS, no padding), counted a
    batch of words at a time and no further once past `limit` (a huge prompt is never tokenized whole)."""
    words = [word for word, _ in comfy_words(prompt)]
    count = 0
    for start in range(0, len(words), WORD_BATCH):
        count += sum(len(row) - 2 for row in tokenizer(words[start:start + WORD_BATCH]).input_ids)
        if count > limit:
            break
    return count


def t5_weighted_tokens(prompt: str, tokenizer, min_length: int = 256, max_tokens: int = 1024):
    """(ids (1, L), weights (1, L), empty ids (1, L)) of a T5 prompt as ComfyUI's T5XXLTokenizer builds them for
    Flux: each word tokenized alone without `</s>`, then one `</s>`, padded with pad tokens to `min_length`, never
    cut (over `max_tokens` tokens is refused); `</s>` and the padding weigh 1. The empty prompt ComfyUI weighs
    against (sd1_clip.py `gen_empty_tokens`) is `</s>` then pad tokens, as long."""
    import torch

    words = comfy_words(prompt)
    (eos,), pad = tokenizer([""], 1)[0][0].tolist(), tokenizer.pad_token_id  # "" is just </s>
    ids: list[int] = []
    weights: list[float] = []
    for start in range(0, len(words), WORD_BATCH):  # unpadded, a batch at a time: a huge prompt stops early
        group = words[start:start + WORD_BATCH]
        for (_, weight), row in zip(group, tokenizer.unpadded([word for word, _ in group])):  # row: word + </s>
            ids += row[:-1]
            weights += [weight] * (len(row) - 1)
        if len(ids) + 1 > max_tokens:
            raise ValueError(f"`text`: the prompt is {len(ids) + 1} T5 tokens or more, over {max_tokens}, the most "
                             f"this import encodes (T5's attention grows with the square of the length); shorten "
                             f"the prompt")
    length = max(min_length, len(ids) + 1)
    ids += [eos] + [pad] * (length - len(ids) - 1)
    weights += [1.0] * (length - len(weights))
    return torch.tensor([ids]), torch.tensor([weights]), torch.tensor([[eos] + [pad] * (length - 1)])


def t5_weighted_encode(encoder, ids, weights, empty):
    """(1, L, C) T5 hidden states with ComfyUI's weighting (comfy/sd1_clip.py `encode_token_weights`): when any
    weight ≠ 1, the `empty` prompt is encoded too and each weighted position becomes z_empty + w·(z − z_empty)."""
    import torch

    with torch.no_grad():
        z = encoder(ids.to(encoder.device))  # (1, L, C)
        if bool((weights == 1.0).all()):
            return z
        z_empty = encoder(empty.to(encoder.device))  # (1, L, C)
    w = weights.to(device=z.device, dtype=z.dtype)[..., None]  # (1, L, 1)
    return torch.where(w != 1.0, z_empty + w * (z - z_empty), z)
