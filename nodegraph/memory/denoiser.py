"""The denoiser's activations (a UNet or a flow transformer), estimated from its config.json and the latent size
before anything loads; exec/memory_plan.py adds them at the step that runs the denoiser.

UNet (Ronneberger et al. 2015, as in diffusers' `UNet2DConditionModel`): walk the forward as it allocates. The
down path keeps every block output for the skip connections (conv_in's, each layer's, each downsampler's); the up
path pops them. At each layer what is alive is the skips held, the hidden state, and the layer's own work:
- a resnet: its input, two intermediates (GroupNorm → SiLU → conv, the widest of in/out channels) and its output;
- a spatial transformer (GEGLU feed-forward, ×4): the input, the 8c projection, the 4c gate and the 4c product
  (the feed-forward is the larger half; attention's q/k/v/out are 4c, and torch's CPU SDPA kernel (blocked flash)
  never materialises the (N × N) score matrix: digits at 512² calls it at 16,384 tokens, 2 × 4 heads, where the
  scores would be 8.6 GB; the whole UNet step measured +160 MB);
- an upsampler: its input and the ×2 interpolation, then the conv's output.
The sum, in elements of the run's dtype, times `UNET_CALIBRATION` = 2.5 for what the walk does not see (oneDNN's
reordered weight and activation buffers, float32 temporaries of bf16 ops, the heap's fragments). Calibrated on
one forward each, fresh processes, the nodegraph command's heap reuse on, VmHWM reset (/proc/self/clear_refs)
just before the call, the first (cold) call and a second (warm) one, random weights, CFG batch 2:

| UNet (block_out_channels, layers) | latent, dtype | estimate | cold | warm | estimate vs cold |
|---|---|---|---|---|---|
| digits (32, 64), 1 | 128², fp32 | 180 MB | 168 MB | 126 MB | +7 % |
| digits, batch 1 | 128², fp32 | 90 MB | 92 MB | 57 MB | -2 % |
| SD-like (128, 256, 512), 2, attention at 1/1, 1/2 | 64², fp32 | 190 MB | 187 MB | 187 MB | +2 % |
| the same | 64², bf16 | 95 MB | 130 MB | 88 MB | -27 % |
| SDXL-like (64, 128, 256), 2, attention at 1/2, 1/4 (depth 2) | 128², fp32 | 245 MB | 390 MB | 161 MB | -37 % |
| the same | 128², bf16 | 122 MB | 148 MB | 127 MB | -18 % |
| SDXL-size, real channels (docs/memory.md, earlier session) | 128², bf16 | 0.60 GB | ~0.77 GB | — | -22 % |

So the calibration error is -37 % to +7 % against the first call (the one a run's peak sees), -23 % to +26 % against
later calls; a whole digits 512² run is estimated 440 MB against 481 MB measured (-9 %).

Flow transformers (Flux, SD3, Z-Image): the token stream (image patches + text tokens) × width, with the MLP's
hidden (×`mlp_ratio`, default 4) and its activation, q/k/v/out and the residual stream: 16 × width × tokens.
Not calibrated against a measurement (no flow model was measured here); the text token count is the family's
maximum (512) when the config does not say.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

UNET_CALIBRATION = 2.5  # measured / walk (table above)
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


def unet_walk(config: dict, latent: tuple[int, int]) -> int:
    """Largest number of activation values alive at once in one forward, per batch item (module docstring)."""
    ch = [int(c) for c in config.get("block_out_channels", [320, 640, 1280, 1280])]
    n = len(ch)
    layers = _per_block(config.get("layers_per_block", 2), n, 2)
    attn = ["CrossAttn" in str(t) for t in config.get("down_block_types", ["CrossAttnDownBlock2D"] * n)]
    depth = _per_block(config.get("transformer_layers_per_block", 1), n, 1)
    h, w = latent
    pixels = [max(h >> i, 1) * max(w >> i, 1) for i in range(n)]
    skips: list[int] = [ch[0] * pixels[0]]  # conv_in's output
    worst = 0

    def resnet(cin: int, cout: int, px: int) -> int:
        return (cin + 2 * max(cin, cout) + cout) * px

    def transformer(c: int, px: int) -> int:
        return (1 + 8 + 4 + 4) * c * px  # input, GEGLU projection, gate, product

    for i in range(n):  # down path
        cin = ch[max(i - 1, 0)]
        for _ in range(layers[i]):
            held = sum(skips)
            worst = max(worst, held + resnet(cin, ch[i], pixels[i]))
            if attn[i] and depth[i]:
                worst = max(worst, held + transformer(ch[i], pixels[i]))
            skips.append(ch[i] * pixels[i])
            cin = ch[i]
        if i < n - 1:
            skips.append(ch[i] * pixels[i + 1])  # the downsampler's output
    worst = max(worst, sum(skips) + resnet(ch[-1], ch[-1], pixels[-1]) + transformer(ch[-1], pixels[-1]))
    hidden = ch[-1]
    for i in reversed(range(n)):  # up path: block n-1-i mirrors down block i, with one more layer
        for _ in range(layers[i] + 1):
            skip = skips.pop() // pixels[i]
            held = sum(skips)
            worst = max(worst, held + resnet(hidden + skip, ch[i], pixels[i]))
            if attn[i] and depth[i]:
                worst = max(worst, held + transformer(ch[i], pixels[i]))
            hidden = ch[i]
        if i > 0:  # the upsampler to stage i-1: input, ×2 copy, conv output
            worst = max(worst, sum(skips) + hidden * (pixels[i] + 2 * pixels[i - 1]))
    return worst


def flow_walk(config: dict, image_tokens: int) -> int:
    """Activation values alive in one flow-transformer block, per batch item (module docstring)."""
    heads, head_dim = config.get("num_attention_heads"), config.get("attention_head_dim")
    width = heads * head_dim if isinstance(heads, int) and isinstance(head_dim, int) else \
        int(config.get("dim") or config.get("hidden_size") or 3072)
    mlp = float(config.get("mlp_ratio", 4.0))
    text = int(config.get("max_sequence_length") or FLOW_TEXT_TOKENS)
    return int((2 * mlp + 8) * width * (image_tokens + text))


def denoiser_bytes(config: dict, component: str, latent: tuple[int, int, int], itemsize: int) -> int:
    """Bytes one denoiser call adds over its weights: `latent` = (batch as called, incl. CFG's doubling, h, w)."""
    batch, h, w = latent
    if component == "unet":
        return int(batch * unet_walk(config, (h, w)) * itemsize * UNET_CALIBRATION)
    patch = int(config.get("patch_size") or 2)  # SD3's 2; Z-Image's `all_patch_size` [2]
    if patch == 1 and int(config.get("in_channels") or 0) >= 64:  # Flux: patch 1 over latents packed 2×2 (64 ch)
        patch = 2
    return batch * flow_walk(config, max(h // patch, 1) * max(w // patch, 1)) * itemsize
