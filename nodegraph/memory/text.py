"""The text encoders' activations (CLIP, T5, Qwen3) at their longest prompt, estimated from their config.json
before anything loads; exec/memory_plan.py adds them at the steps that encode a prompt.

Per layer, at the feed-forward (the widest moment of a pre-norm transformer layer): the residual stream, its
normalised copy, the projection(s) to the inner width, the activation and (gated: T5's and Qwen3's) the product:
L × (4 · d + 3 · ff) values. Attention adds:
- T5: its relative position bias, (heads, L, L), built once and held through every layer, given to SDPA as a float
  mask, so the scores are materialised: about 3.5 score-sized tensors (profiled: 3.3 at L 256, 3.6 at 512);
- Qwen3 (models/qwen3_text.py): every layer's output is kept (the graph reads the second-to-last), and attention
  holds q, k, v, their normalised and rotated copies and the key/value heads repeated per group (10 × heads ·
  head_dim, beside the stream and its norm); with padding the boolean causal and padding masks, (L, L) each;
- CLIP (causal, 77 tokens) and Qwen3: the CPU attention kernel's per-thread blocks (memory/denoiser.py).
L: CLIP's 77; T5's and Qwen3's the graph's `max_sequence_length` (else 512). Checked against torch's profiler
(the encode step's allocation peak in a whole run, fp32, tiny random encoders, tests/memory/test_estimate_per_graph.py):
"""

from __future__ import annotations

from typing import Any

TEXT_NODES = ("TextEncode", "SDXLTextEncode", "T5TextEncode", "CLIPPooledEncode", "ComfyTextEncode",
              "ComfySD3TextEncode", "ComfyQwenTextEncode", "ComfyT5Encode")  # node types that run a text encoder
T5_SCORES = 3.5  # score-sized (heads, L, L) tensors alive in a T5 layer (module docstring)


def _int(config: dict, *names: str, default: int = 0) -> int:
    for name in names:
        value = config.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def text_tokens(config: dict, max_sequence_length: Any = None) -> int:
    """The sequence a text encoder runs on: CLIP's position table (77), else the graph's length, else 512."""
    if "d_model" not in config and config.get("model_type", "") != "qwen3" and "max_position_embeddings" in config \
            and _int(config, "max_position_embeddings") <= 77:
        return _int(config, "max_position_embeddings")
    if isinstance(max_sequence_length, int) and not isinstance(max_sequence_length, bool) and max_sequence_length > 0:
        return max_sequence_length
    return 512


def text_bytes(config: dict, tokens: int, itemsize: int, batch: int = 1) -> int:
    """Bytes one encoder call over `batch` prompts of `tokens` tokens adds over its weights."""
    from nodegraph.memory.denoiser import _sdpa_buffers

    d = _int(config, "d_model", "hidden_size", default=768)
    ff = _int(config, "d_ff", "intermediate_size", default=4 * d)
    heads = _int(config, "num_heads", "num_attention_heads", default=12)
    layer = tokens * (4 * d + 3 * ff) * itemsize
    if "d_model" in config:  # T5: the position bias as a float mask
        return batch * (layer + int(T5_SCORES * heads * tokens * tokens * itemsize))
    if config.get("model_type") == "qwen3":  # every layer's output kept; attention's rotated, repeated heads
        inner = heads * _int(config, "head_dim", default=d // heads)
        states = _int(config, "num_hidden_layers", default=36) * tokens * d * itemsize
        attention = tokens * (2 * d + 10 * inner) * itemsize
        return batch * (states + max(layer, attention) + 2 * tokens * tokens) + _sdpa_buffers(tokens, itemsize == 2)
    return batch * (layer + tokens * tokens) + _sdpa_buffers(tokens, itemsize == 2)


def text_work(encoders: list[tuple[tuple[int, int], dict]], tick_types: list[str], values: dict[str, Any],
              itemsize: int) -> dict[int, int]:
    """{point of the timeline: bytes} for the steps that encode a prompt: the largest call among the text encoders
    held then (`encoders`: (held range, config.json) each; `tick_types`: each point's node type)."""
    work = {}
    for index, kind in enumerate(tick_types):
        if kind in TEXT_NODES:
            held = [config for (first, last), config in encoders if first <= index <= last
                    and ("T5" not in kind or "d_model" in config) and ("CLIP" not in kind or "d_model" not in config)]
            sizes = [text_bytes(c, text_tokens(c, values.get("max_sequence_length")), itemsize) for c in held]
            if sizes:
                work[index] = max(sizes)
    return work
