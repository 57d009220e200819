"""The denoiser's activations (a UNet or a flow transformer), estimated from its config.json and the latent size
before anything loads; exec/memory_plan.py adds them at the step that runs the denoiser.

UNet (Ronneberger et al. 2015; our models/unet_2d_condition.py, diffusers' `UNet2DConditionModel`): the forward is
walked as it allocates, op by op. The down path keeps every block output for the skip connections (conv_in's, each
layer's, each downsampler's); the up path pops one per layer and concatenates it to the hidden state. Beside the
skips held and the hidden state, each layer allocates (per pixel, in channels; `_resnet`, `_transformer`):
- a resnet: norm1 and its activation, then conv1's output, the time-embedding sum, norm2 and its activation,
  conv2's output, the shortcut and the sum (the widest of those moments);
- a spatial transformer block: the block's input and running state, then attention's norm, q, k, v and output
  (torch's CPU flash kernel never materialises the N × N scores: it works in 256 × 512 blocks per thread; in
  bf16 it adds a float32 output), or the GEGLU feed-forward's norm, 8c projection, 4c GELU and 4c product;
- every convolution: its output plus the copy oneDNN reorders into (profiled: fp32 adds max(in, out) channels,
  bf16 max(in, 2·out)); an upsampler: its input, the ×2 copy and the conv.
Checked against torch's profiler (CPU allocations, `profile_memory=True`: the peak of the live bytes during one
forward), random weights, CFG batch 2 (tests/memory/test_denoiser_activations.py runs the tiny ones):

| UNet (block_out_channels, layers per block) | fp32, 32² latent | fp32, 64² | bf16, 32² | bf16, 64² |
|---|---|---|---|---|
| digits (32, 64), 1 | 5.8 / 5.9 MB (-2 %) | 23.0 / 23.5 (-2 %) | 3.1 / 3.1 (0 %) | 11.5 / 11.8 (-2 %) |
| tiny SD (32, 64), 1 | 3.2 / 3.5 (-7 %) | 13.0 / 13.6 (-4 %) | 1.6 / 2.0 (-17 %) | 6.5 / 7.1 (-9 %) |
| SDXL-like (64,128,256), 2, depth 1,2,2| 7.4 / 7.9 (-7 %)| 29.5 / 30.5 (-3 %) | 3.7 / 5.3 (-31 %)| 14.8 / 16.3 (-9 %) |

Real size: the SDXL base UNet (bf16 random weights) at a 64² latent, CFG batch 2: profiled 136.0 MB; the walk
74.0 MB plus the largest convolution weight, which oneDNN reorders for each call (59 MB: `_reordered_weight`),
130.3 MB (-4 %). (The table was taken before that term, which adds 0.07-0.3 MB to these tiny UNets; below a 32²
latent the megabyte-sized figures are off by up to 36 %.) The process's resident memory grows by more than the
live tensors: glibc's heap keeps freed blocks of other sizes (the nodegraph command keeps freed memory for reuse,
exec/heap.py), and a first call touches fresh pages. The RSS a first forward added
(the earlier calibration's figures: VmHWM reset just before the call, fresh processes) over the profiled tensor
peak of the same forward (128² taken as 4× the 64² figure): digits 128² fp32 1.70× (batch 1: 1.87×), SD-like
(128, 256, 512) 64² fp32 1.91×, bf16 2.65×, SDXL-like 128² fp32 3.2×, bf16 2.3×; later calls 1.2-2.0×. The plan
multiplies the walk by the median, `HEAP_SLACK` = 2.1 (`estimate_run(heap=False)` leaves it out).

Flow transformers (Flux, SD3, Z-Image): the token stream (image patches + text tokens) × width at a block's
widest moment, the feed-forward: the residual stream, its modulated copy, the MLP's hidden (× `mlp_ratio`: 4, Z-Image's
SwiGLU 8/3) and its activation; the single-stream blocks (Flux, Z-Image) also hold attention's q/k/v/out and the
concatenation beside it: (2 · mlp + 8) × width × tokens; SD3's joint blocks (2 · mlp + 2). Text tokens: the graph's
`max_sequence_length` (Flux's checkpoint default: dev 512, schnell 256; SD3 plus CLIP's 77); Z-Image attends to the
prompt's own tokens only, bounded from the prompt's length (`flow_text_tokens`). Checked against torch's profiler:
the denoise step's allocation peak in a whole run (tests/memory/test_estimate_per_graph.py runs the tiny
ones), 1 step, fp32:

| transformer (width) | image | tokens (image + text) | estimate / profiled |
|---|---|---|---|
| tiny Z-Image (48) | 512² | 4096 + 96 | 10.2 / 11.8 MB (-13 %) |
| mid-size Z-Image (480) | 512² | 4096 + 96 | 102.3 / 103.2 MB (-1 %) |
| tiny Flux dev (32) | 256², 512² | 1024 / 4096 + 512 | 3.0 / 3.4 MB (-11 %), 9.0 / 9.3 MB (-3 %) |
| mid-size Flux dev (384) | 512² | 4096 + 512 | 108.0 / 102.1 MB (+6 %) |
| tiny SD3 (32, CFG batch 2) | 128² | 256 + 333 | 1.44 / 1.63 MB (-12 %) |

The UNet's heap slack is not applied to them (not measured on flow models).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CALL_BYTES = 256 << 10  # what a UNet call allocates whatever its size (profiled: ~0.25 MB at 16² latents)
HEAP_SLACK = 2.1  # RSS a first (cold) forward adds / its live tensors' peak: 1.7-3.2, median 2.1 (module docstring)
FLOW_TEXT_TOKENS = 512  # T5 / Qwen prompt length the flow graphs pad to at most
DENOISER_NODES = ("UNetStep", "SDXLUNetStep", "ControlNetUNetStep", "ComfyDenoise", "ComfySamplerStep",
                  "FluxTransformerStep", "SD3TransformerStep", "ZImageTransformerStep", "ComfyFlowDenoise",
                  "ComfyFlowSamplerStep")


def denoiser_config(model: str, component: str, **options: Any) -> dict | None:
    """The UNet's / transformer's config.json beside its weights; None where there is none (single files)."""
    from nodegraph.models.prefetch import component_files

    files = component_files(model, component, **options)
    if not files or Path(model).expanduser().is_file():
        return None
    config = files[0].parent / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _per_block(value: Any, n: int, default: int) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * n
    if isinstance(value, list) and len(value) == n and all(isinstance(v, int) for v in value):
        return list(value)
    return [default] * n


def _conv(cin: int, cout: int, bf16: bool) -> int:
    """Values (per pixel) a convolution allocates: its output and the copy oneDNN reorders into (profiled: fp32
    adds max(in, out) channels, bf16 max(in, 2 × out))."""
    return cout + (max(cin, 2 * cout) if bf16 else max(cin, cout))


def _resnet(cin: int, cout: int, bf16: bool) -> int:
    """Values (per pixel) a ResnetBlock2D allocates over its input, at its widest moment (models/resnet.py):
    norm1 and its activation; the activation and conv1; the time-embedding sum beside conv1's output; norm2 and
    its activation; the activation and conv2; conv2's output, the shortcut and their sum."""
    steps = [2 * cin, cin + _conv(cin, cout, bf16), 2 * cout, cout + _conv(cout, cout, bf16)]
    steps += [cout + _conv(cin, cout, bf16), 3 * cout] if cin != cout else [2 * cout]
    return max(steps)


def _transformer(c: int, bf16: bool) -> tuple[int, int]:
    """Values (per pixel) a Transformer2D allocates over its input (models/attention.py) while attention runs and
    while the feed-forward runs: the block's input and running state, then attention's norm, q, k, v and output
    (bf16: the kernel's float32 output too), or the feed-forward's norm, GEGLU projection (8c), GELU of the gate
    (4c) and product (4c)."""
    return 2 * c + 5 * c + (2 * c if bf16 else 0), 2 * c + c + 8 * c + 4 * c + 4 * c


def unet_walk(config: dict, latent: tuple[int, int], bf16: bool = False, kernel: int = 0) -> int:
    """Largest number of activation values alive at once in one forward, per batch item (module docstring):
    the skip states held (the down path's outputs, popped by the up path), the hidden state, and the running
    layer's own allocations; `kernel`: values the attention kernel's work blocks add while attention runs."""
    ch = [int(c) for c in config.get("block_out_channels", [320, 640, 1280, 1280])]
    n = len(ch)
    layers = _per_block(config.get("layers_per_block", 2), n, 2)
    kinds = [str(t) for t in config.get("down_block_types", ["CrossAttnDownBlock2D"] * n)]
    attn = ["CrossAttn" in t for t in kinds]
    spatial = ["Attn" in t and "CrossAttn" not in t for t in kinds]  # UNet2DModel's single-head self-attention
    depth = _per_block(config.get("transformer_layers_per_block", 1), n, 1)
    h, w = latent
    px = [max(h >> i, 1) * max(w >> i, 1) for i in range(n)]
    skips: list[int] = [ch[0] * px[0]]  # conv_in's output
    worst = (4 + _conv(4, ch[0], bf16)) * px[0]

    def layer(held: int, given: int, kept: bool, cin: int, c: int, i: int) -> int:
        """Peak of one resnet on `given` values (beside `held`), then its attention on the resnet's output;
        `kept`: the input stays alive through the attention (a skip state)."""
        peak = held + given + _resnet(cin, c, bf16) * px[i]
        if spatial[i]:  # the resnet's output, norm, q, k, v, attention's output, to_out's
            peak = max(peak, held + (given if kept else 0) + 7 * c * px[i] + kernel)
        if attn[i] and depth[i] > 0:
            attention, feed_forward = _transformer(c, bf16)
            peak = max(peak, held + (given if kept else 0) + c * px[i] + max(attention * px[i] + kernel,
                                                                            feed_forward * px[i]))
        return peak

    for i in range(n):  # down path: each layer's input is the last skip state
        cin = ch[max(i - 1, 0)]
        for _ in range(layers[i]):
            worst = max(worst, layer(sum(skips[:-1]), skips[-1], True, cin, ch[i], i))
            skips.append(ch[i] * px[i])
            cin = ch[i]
        if i < n - 1:  # the downsampler: its input held, output and reorder copy at the next size
            worst = max(worst, sum(skips) + _conv(ch[i], ch[i], bf16) * px[i + 1])
            skips.append(ch[i] * px[i + 1])
    c = ch[-1]
    mid = sum(skips) + c * px[-1]  # the mid block's running state beside the skips (its input is the last skip)
    attention, feed_forward = _transformer(c, bf16)
    worst = max(worst, sum(skips) + _resnet(c, c, bf16) * px[-1], mid + attention * px[-1] + kernel,
                mid + feed_forward * px[-1], mid + _resnet(c, c, bf16) * px[-1])
    hidden = c
    for i in reversed(range(n)):  # up path: one more layer than the down block, each takes a popped skip
        entry = 0  # the block's input, which the UNet's frame holds until the block returns
        for _ in range(layers[i] + 1):
            skip = skips.pop() // px[i]
            held = sum(skips) + entry
            worst = max(worst, held + 2 * (hidden + skip) * px[i])  # the state, the skip and their concatenation
            entry = entry or hidden * px[i]
            worst = max(worst, layer(sum(skips) + entry, (hidden + skip) * px[i], False, hidden + skip, ch[i], i))
            hidden = ch[i]
        if i > 0:  # the upsampler: its input, the ×2 copy, the conv at the size above
            worst = max(worst, sum(skips) + entry + hidden * (px[i] + px[i - 1])
                        + _conv(hidden, hidden, bf16) * px[i - 1])
    return worst


def flow_text_tokens(config: dict, max_sequence_length: int | None = None, prompt: str | None = None) -> int:
    """Text tokens a flow transformer attends over: the graph's `max_sequence_length` (0 or None: the checkpoint's,
    Flux dev 512, schnell 256), SD3 adding CLIP's 77. Z-Image attends to the prompt's own tokens only (padding
    dropped, then padded to a multiple of 32): Qwen's tokenizer is byte-level BPE, so at most a token a UTF-8 byte, plus
    32 for the chat template."""
    if not isinstance(max_sequence_length, int) or isinstance(max_sequence_length, bool) or max_sequence_length < 1:
        guided = config.get("guidance_embeds")
        max_sequence_length = (512 if guided else 256) if guided is not None else FLOW_TEXT_TOKENS
    if "cap_feat_dim" in config and prompt is not None:
        return min(max_sequence_length, -(-(len(prompt.encode("utf-8")) + 32) // 32) * 32)
    return max_sequence_length + (77 if "caption_projection_dim" in config else 0)


def flow_walk(config: dict, image_tokens: int, text_tokens: int) -> int:
    """Activation values alive at a flow-transformer block's widest moment, per batch item (module docstring)."""
    heads, head_dim = config.get("num_attention_heads"), config.get("attention_head_dim")
    width = heads * head_dim if isinstance(heads, int) and isinstance(head_dim, int) else \
        int(config.get("dim") or config.get("hidden_size") or 3072)
    mlp = float(config.get("mlp_ratio", 8 / 3 if "cap_feat_dim" in config else 4.0))  # Z-Image: SwiGLU, 8/3
    joint_only = "caption_projection_dim" in config  # SD3: joint blocks only, no single-stream block
    return int((2 * mlp + (2 if joint_only else 8)) * width * (image_tokens + text_tokens))


def _attention_tokens(config: dict, latent: tuple[int, int]) -> int:
    """Positions the widest self-attention of a UNet attends over (its first block with attention)."""
    kinds = config.get("down_block_types", ["CrossAttnDownBlock2D"])
    level = next((i for i, t in enumerate(kinds) if "Attn" in str(t)), len(kinds) - 1)
    return max(latent[0] >> level, 1) * max(latent[1] >> level, 1)


def _sdpa_buffers(tokens: int, bf16: bool) -> int:
    """The CPU attention kernel's work blocks, per thread (torch's flash kernel: a q-block of 256 / 64 / 32 rows
    by a kv-block of up to 512 keys of float32 scores, and a bf16 copy of them in bf16), one thread a core."""
    import os
    import sys

    torch = sys.modules.get("torch")  # its thread count where a run has loaded it (the planner imports no torch)
    threads = torch.get_num_threads() if torch is not None else os.cpu_count() or 1
    rows = 256 if tokens >= 768 else 64 if tokens >= 192 else 32
    return rows * min(tokens, 512) * (6 if bf16 else 4) * threads


def _reordered_weight(config: dict) -> int:
    """Values of the largest convolution weight, which oneDNN copies into its own layout for each call: the first
    up-path resnet's conv1 at the deepest level, (skip + state channels) × channels × 3 × 3 (SDXL-size: 59 MB in
    bf16, measured as the gap between the walk and a profiled forward)."""
    ch = [int(c) for c in config.get("block_out_channels", [320, 640, 1280, 1280])]
    return max((ch[min(i + 1, len(ch) - 1)] + c) * c * 9 for i, c in enumerate(ch))


def denoiser_bytes(config: dict, component: str, latent: tuple[int, int, int], itemsize: int,
                   text_tokens: int | None = None, prompt: str | None = None) -> int:
    """Bytes one denoiser call adds over its weights: `latent` = (batch as called, incl. CFG's doubling, h, w);
    `text_tokens`: a flow graph's `max_sequence_length`, where it sets one; `prompt`: its prompt (Z-Image)."""
    batch, h, w = latent
    if component == "unet":
        kernel = _sdpa_buffers(_attention_tokens(config, (h, w)), itemsize == 2) // (batch * itemsize)
        return batch * unet_walk(config, (h, w), itemsize == 2, kernel) * itemsize + CALL_BYTES + \
            _reordered_weight(config) * itemsize

    patch = int(config.get("patch_size") or 2)  # SD3's 2; Z-Image's `all_patch_size` [2]
    flux = config.get("_class_name") == "FluxTransformer2DModel" or int(config.get("in_channels") or 0) >= 64
    if patch == 1 and flux:  # Flux: patch 1 over latents packed 2×2 (64 channels)
        patch = 2
    tokens = max(h // patch, 1) * max(w // patch, 1)
    return batch * flow_walk(config, tokens, flow_text_tokens(config, text_tokens, prompt)) * itemsize
