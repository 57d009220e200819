"""Exact tiled decode and encode for `AutoencoderKL`: the same image as the untiled pass, in less memory.

The usual tiled VAE (diffusers' `enable_tiling`, ComfyUI's tiled-decode fallback) runs the whole network on
overlapping tiles and blends the seams, so every GroupNorm sees one tile's statistics and the pixels change (up
to 29/255 in ComfyUI). Here the network is run one stage at a time instead, and within a stage tile by tile:

* every 3×3 convolution reads its tile with a one-pixel halo of true neighbours (the layer's own zero padding
  only touches pixels outside the tile's core, which are discarded), and the ×2 resamplers map tile borders
  through their exact arithmetic, so each output pixel is computed from exactly the inputs it has untiled;
* every GroupNorm is applied in two passes: its per-(sample, group) sums and sums of squares are gathered tile
  by tile (in float64) from the stored stage input, then each tile is normalised with the whole image's mean
  and variance (the exact-statistics approach of the "Tiled VAE" of multidiffusion-upscaler, here without the
  approximation of estimating them from a downscaled image);
* the mid block (with its global self-attention) runs untiled at the latent resolution, where it is small.

What is held: a resnet's input, its first conv's output and (when the widths differ) its sum at full size, plus
one tile's temporaries — where the untiled pass holds the norm, activation, upsampled and convolved copies of
the whole image at once. An upsampler's output is never held: it is recomputed where read (`Upsampled`).
Measured figures are in docs/memory.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nodegraph.models.autoencoder_kl import AutoencoderKL, DiagonalGaussian
from nodegraph.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

DEFAULT_TILE = 256  # output pixels per tile side at each stage


def tiled_decode(vae: AutoencoderKL, z: torch.Tensor, tile: int = DEFAULT_TILE) -> torch.Tensor:
    """`vae.decode(z)` computed stage by stage in tiles of `tile`² output pixels; (B, C_out, H, W)."""
    dec = vae.decoder
    if vae.post_quant_conv is not None:
        z = vae.post_quant_conv(z)
    x = dec.mid_block(dec.conv_in(z))  # (B, C_top, h, w), untiled: global attention at the latent size
    for block in dec.up_blocks:
        for resnet in block.resnets:
            x = _resnet(resnet, x, tile)
        if block.upsamplers is not None:  # never held whole: the next resnet reads it region by region
            x = Upsampled(block.upsamplers[0], x)
    return _norm_act_conv(dec.conv_norm_out, dec.conv_act, dec.conv_out, x, tile)


def tiled_encode(vae: AutoencoderKL, x: torch.Tensor, tile: int = DEFAULT_TILE) -> DiagonalGaussian:
    """`vae.encode(x)` with the full-resolution stages in tiles; the posterior of the latents."""
    enc = vae.encoder
    x = _map_tiles(x, enc.conv_in.out_channels, "same", tile, enc.conv_in)
    for block in enc.down_blocks:
        for resnet in block.resnets:
            x = _resnet(resnet, x, tile)
        if block.downsamplers is not None:
            x = _resample(block.downsamplers[0], x, tile)
    x = enc.mid_block(x)
    moments = _norm_act_conv(enc.conv_norm_out, enc.conv_act, enc.conv_out, x, tile)
    if vae.quant_conv is not None:
        moments = vae.quant_conv(moments)
    return DiagonalGaussian(moments)


class Upsampled:
    """An `Upsample2D`'s output (nearest ×2, 3×3 conv) computed region by region when read, from the input held at
    half the size: the resnet after it reads it three times (statistics, first conv, shortcut), which costs the
    upsampler's conv three times over and spares holding the widest activation of the decoder (SDXL at 2048²:
    256 channels at full size, 4 GB in fp32)."""

    def __init__(self, layer: Upsample2D, x: torch.Tensor):
        self.layer, self.x = layer, x
        B, _, H, W = x.shape
        self.shape = (B, layer.conv.out_channels, 2 * H, 2 * W)
        self.dtype, self.device = x.dtype, x.device

    def __getitem__(self, index: tuple) -> torch.Tensor:
        """`up[:, :, rows]` or `up[:, :, rows, cols]` (plain slices)."""
        rows, cols = index[2], index[3] if len(index) > 3 else slice(None)
        (y0, y1), (x0, x1) = _bounds(rows, self.shape[2]), _bounds(cols, self.shape[3])
        a, b, oy = _source_span("up", y0, y1, self.x.shape[2])
        c, d, ox = _source_span("up", x0, x1, self.x.shape[3])
        out = self.layer.conv(F.interpolate(self.x[:, :, a:b, c:d], scale_factor=2.0, mode="nearest"))
        return out[:, :, y0 - oy:y1 - oy, x0 - ox:x1 - ox]


def _bounds(s: slice, size: int) -> tuple[int, int]:
    return min(s.start or 0, size), size if s.stop is None else min(s.stop, size)


# ---- GroupNorm in two passes ------------------------------------------------------------------------------

def group_stats(x: torch.Tensor | Upsampled, norm: torch.nn.GroupNorm, rows: int = 16
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1/sqrt(var + eps)) per (sample, group), each (B, G) float32, gathered over bands of `rows` rows."""
    B, C, H, W = x.shape
    G = norm.num_groups
    total = torch.zeros(B, G, dtype=torch.float64, device=x.device)
    squares = torch.zeros_like(total)
    for r in range(0, H, rows):
        band = x[:, :, r:r + rows].to(torch.float64).reshape(B, G, -1)  # (B, G, C/G · rows · W)
        total += band.sum(-1)
        squares += band.square().sum(-1)
    count = C // G * H * W
    mean = total / count
    var = (squares / count - mean.square()).clamp_min(0)  # biased variance, as GroupNorm uses
    return mean.float(), torch.rsqrt(var + norm.eps).float()


def _normalise(t: torch.Tensor, norm: torch.nn.GroupNorm, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """GroupNorm of tile `t` (B, C, h, w) with the whole image's statistics, in float32, back in t's dtype."""
    mean, rstd = stats
    B, C, h, w = t.shape
    G = norm.num_groups
    y = (t.float().reshape(B, G, -1) - mean[:, :, None]) * rstd[:, :, None]
    y = y.reshape(B, C, h, w)
    if norm.affine:
        y = y * norm.weight.float()[None, :, None, None] + norm.bias.float()[None, :, None, None]
    return y.to(t.dtype)


# ---- tiles ------------------------------------------------------------------------------------------------

def _source_span(kind: str, lo: int, hi: int, size: int) -> tuple[int, int, int]:
    """Input rows [a, b) that output rows [lo, hi) need, and the output row where the op's result on them starts.

    same: a 3×3 conv (padding 1); up: nearest ×2 then a 3×3 conv; down: right/bottom zero pad then a stride-2
    3×3 conv (the VAE encoder's `Downsample2D(padding=0)`). The layer's own padding at a cut lands only on rows
    outside [lo, hi)."""
    if kind == "same":
        a, b = max(lo - 1, 0), min(hi + 1, size)
        return a, b, a
    if kind == "up":
        a, b = max((lo - 1) // 2, 0), min((hi + 2) // 2, size)
        return a, b, 2 * a
    a, b = 2 * lo, min(2 * hi + 1, size)  # down
    return a, b, lo


def _out_size(kind: str, size: int) -> int:
    return {"same": size, "up": 2 * size, "down": size // 2}[kind]  # down: (size + 1 − 3) // 2 + 1


def _map_tiles(x: torch.Tensor | Upsampled, channels: int, kind: str, tile: int, op, out: torch.Tensor | None = None,
               shortcut=None) -> torch.Tensor:
    """Apply `op` (a tile of x → its output) over output tiles of `tile`² pixels into `out` (B, channels, H', W');
    `shortcut(rows, cols)`, if given, is added to each tile's core (computed before the core is overwritten)."""
    B, _, H, W = x.shape
    Ho, Wo = _out_size(kind, H), _out_size(kind, W)
    if out is None:
        out = torch.empty(B, channels, Ho, Wo, dtype=x.dtype, device=x.device)
    for lo_y in range(0, Ho, tile):
        hi_y = min(lo_y + tile, Ho)
        ay, by, oy = _source_span(kind, lo_y, hi_y, H)
        for lo_x in range(0, Wo, tile):
            hi_x = min(lo_x + tile, Wo)
            ax, bx, ox = _source_span(kind, lo_x, hi_x, W)
            y = op(x[:, :, ay:by, ax:bx])[:, :, lo_y - oy:hi_y - oy, lo_x - ox:hi_x - ox]
            if shortcut is not None:
                y = y + shortcut(slice(lo_y, hi_y), slice(lo_x, hi_x))
            out[:, :, lo_y:hi_y, lo_x:hi_x] = y
    return out


def _norm_act_conv(norm, act, conv, x: torch.Tensor | Upsampled, tile: int) -> torch.Tensor:
    stats = group_stats(x, norm)
    return _map_tiles(x, conv.out_channels, "same", tile, lambda t: conv(act(_normalise(t, norm, stats))))


def _resnet(block: ResnetBlock2D, x: torch.Tensor | Upsampled, tile: int) -> torch.Tensor:
    """norm1 → act → conv1 → norm2 → act → conv2, plus the shortcut, in two tiled passes (no time embedding)."""
    stats1 = group_stats(x, block.norm1)
    h = _map_tiles(x, block.conv1.out_channels, "same", tile,
                   lambda t: block.conv1(block.act(_normalise(t, block.norm1, stats1))))
    stats2 = group_stats(h, block.norm2)
    skip = block.conv_shortcut

    def shortcut(rows: slice, cols: slice) -> torch.Tensor:
        core = x[:, :, rows, cols]
        return skip(core) if skip is not None else core

    # the second pass reads x only at each tile's own core, so the sum may overwrite x when the widths agree
    out = x if skip is None and block.output_scale_factor == 1.0 and isinstance(x, torch.Tensor) else None
    out = _map_tiles(h, block.conv2.out_channels, "same", tile,
                     lambda t: block.conv2(block.act(_normalise(t, block.norm2, stats2))), out=out, shortcut=shortcut)
    return out if block.output_scale_factor == 1.0 else out / block.output_scale_factor


def _resample(layer: Upsample2D | Downsample2D, x: torch.Tensor, tile: int) -> torch.Tensor:
    if isinstance(layer, Upsample2D):
        return _map_tiles(x, layer.conv.out_channels, "up", tile,
                          lambda t: layer.conv(F.interpolate(t, scale_factor=2.0, mode="nearest")))
    if layer.padding != 0:
        raise ValueError("tiled encoding supports the VAE's Downsample2D(padding=0) only")
    return _map_tiles(x, layer.conv.out_channels, "down", tile, layer)


# ---- how much memory the activations take (the planner's estimate; weights not included) -----------------

def decode_activation_bytes(vae: AutoencoderKL, latent_shape: tuple[int, ...], tiled: bool,
                            tile: int = DEFAULT_TILE) -> int:
    """Estimated peak bytes of a decode's activations: untiled, the widest stage holds about its input, the
    normalised and activated copies and the convolution's output (an upsampler: its input, the ×2 copy and the
    conv output); tiled, the stage's input and output plus one tile's temporaries."""
    B, _, h, w = latent_shape
    size = vae.dtype.itemsize
    c = vae.config.block_out_channels[::-1]
    peak, pixels, channels = 0, h * w, c[0]
    for i, out in enumerate(c):
        if tiled:
            stage = (channels + out) * pixels + 4 * max(channels, out) * (tile + 2) ** 2
        else:
            stage = (2 * channels + 2 * out) * pixels
        peak = max(peak, stage)
        if i < len(c) - 1:  # the upsampler at the end of the block
            up = (out + 4 * out) * pixels + 4 * out * (tile + 2) ** 2 if tiled else (out + 8 * out) * pixels
            peak = max(peak, up)
            pixels *= 4
        channels = out
    return B * peak * size
