"""Exact tiled decode and encode for `AutoencoderKL`: the same image as the untiled pass, in less memory.

The usual tiled VAE (diffusers' `enable_tiling`, ComfyUI's tiled-decode fallback) runs the whole network on
overlapping tiles and blends the seams, so every GroupNorm sees one tile's statistics and the pixels change (up
to 29/255 in ComfyUI). Here the network is run one stage at a time instead, and within a stage band by band
(bands of full-width rows, about `tile`² pixels each):

* every 3×3 convolution reads its band with a one-row halo of true neighbours (the layer's own zero padding
  only touches rows outside the band's core, which are discarded; across the width it is the image's own
  border), and the ×2 resamplers map band borders through their exact arithmetic, so each output pixel is
  computed from exactly the inputs it has untiled;
* every GroupNorm is applied in two passes: its per-(sample, group) sums and sums of squares are gathered band
  by band (in float64), then each band is normalised with the whole image's mean and variance (the
  exact-statistics approach of the "Tiled VAE" of multidiffusion-upscaler, here without the approximation of
  estimating them from a downscaled image);
* the mid block (with its global self-attention) runs untiled at the latent resolution, where it is small.

What is held: at most about one full-size activation per stage. A stage's activations are kept as row chunks
(`Rows`): while a resnet writes its output band by band, the rows of its input that no later band reads are
freed, so its input and output together stay about one tensor's size. Inside a resnet the first conv's output
is never held: it is recomputed where read (once for the second GroupNorm's statistics, once for the second
conv), as an upsampler's output is (`Upsampled`). Measured figures are in docs/memory.md.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from nodegraph.models.autoencoder_kl import AutoencoderKL, DiagonalGaussian
from nodegraph.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from nodegraph.models.vae_lean import act_inplace

DEFAULT_TILE = 256  # a band holds about tile² output pixels at each stage (fewer at more than 128 channels)


def tiled_decode(vae: AutoencoderKL, z: torch.Tensor, tile: int = DEFAULT_TILE,
                 release: Callable[[], None] | None = None) -> torch.Tensor:
    """`vae.decode(z)` computed stage by stage in bands of about `tile`² output pixels; (B, C_out, H, W).
    `release` (e.g. memory.usage.release_free_heap) is called after every band: the C heap otherwise keeps the
    freed bands of earlier stages, of other sizes than the next stage's, and the RSS grows stage by stage (measured
    at 512², bf16: 0.60 GB still held after the decode, against 0.16 GB with a release after every band)."""
    dec = vae.decoder
    if vae.post_quant_conv is not None:
        z = vae.post_quant_conv(z)
    x = Rows.whole(dec.mid_block(dec.conv_in(z)))  # (B, C_top, h, w), untiled: global attention at the latent size
    for block in dec.up_blocks:
        for resnet in block.resnets:
            x = _resnet(resnet, x, tile, release)
        if block.upsamplers is not None:  # never held whole: the next resnet reads it band by band
            x = Upsampled(block.upsamplers[0], x)
    return _norm_act_conv(dec.conv_norm_out, dec.conv_act, dec.conv_out, x, tile, release).tensor()


def tiled_encode(vae: AutoencoderKL, x: torch.Tensor, tile: int = DEFAULT_TILE,
                 release: Callable[[], None] | None = None) -> DiagonalGaussian:
    """`vae.encode(x)` with the full-resolution stages in bands; the posterior of the latents (`release`: as
    tiled_decode's)."""
    enc = vae.encoder
    h = _band_map(Rows.whole(x), enc.conv_in.out_channels, "same", tile, enc.conv_in, release)
    for block in enc.down_blocks:
        for resnet in block.resnets:
            h = _resnet(resnet, h, tile, release)
        if block.downsamplers is not None:
            layer = block.downsamplers[0]
            if layer.padding != 0:
                raise ValueError("tiled encoding supports the VAE's Downsample2D(padding=0) only")
            h = _band_map(h, layer.conv.out_channels, "down", tile, layer, release)
    h = enc.mid_block(h.tensor())
    moments = _norm_act_conv(enc.conv_norm_out, enc.conv_act, enc.conv_out, Rows.whole(h), tile, release).tensor()
    if vae.quant_conv is not None:
        moments = vae.quant_conv(moments)
    return DiagonalGaussian(moments)


# ---- activations read by rows -----------------------------------------------------------------------------

class Rows:
    """A (B, C, H, W) activation held as chunks of full-width rows, written top to bottom (`append`), read by row
    ranges (`x[:, :, a:b]`), and freed from the top once no reader needs those rows (`drop_before`)."""

    def __init__(self, shape: tuple[int, int, int, int], dtype: torch.dtype, device: torch.device):
        self.shape, self.dtype, self.device = shape, dtype, device
        self.chunks: list[tuple[int, torch.Tensor]] = []  # (first row, (B, C, rows, W))
        self.end = 0  # rows written

    @classmethod
    def whole(cls, t: torch.Tensor) -> Rows:
        rows = cls(tuple(t.shape), t.dtype, t.device)
        rows.append(t)
        return rows

    def append(self, t: torch.Tensor) -> None:
        self.chunks.append((self.end, t))
        self.end += t.shape[2]

    def __getitem__(self, index: tuple) -> torch.Tensor:
        """`x[:, :, a:b]` (the whole width)."""
        a, b = _bounds(index[2], self.shape[2])
        parts = [t[:, :, max(a - s, 0):b - s] for s, t in self.chunks if s < b and s + t.shape[2] > a]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)

    def drop_before(self, row: int) -> None:
        """Free the chunks that end at or above `row` (no later read starts above it)."""
        self.chunks = [(s, t) for s, t in self.chunks if s + t.shape[2] > row]

    def tensor(self) -> torch.Tensor:
        return self[:, :, :]


class Upsampled:
    """An `Upsample2D`'s output (nearest ×2, 3×3 conv) computed band by band when read, from the input held at
    half the size: the resnet after it reads it three times (its two GroupNorms' statistics, its output pass),
    which costs the upsampler's conv three times over and spares holding the widest activation of the decoder
    (SDXL at 2048²: 256 channels at full size, 4 GB in fp32)."""

    def __init__(self, layer: Upsample2D, x: Rows):
        self.layer, self.x = layer, x
        B, _, H, W = x.shape
        self.shape = (B, layer.conv.out_channels, 2 * H, 2 * W)
        self.dtype, self.device = x.dtype, x.device

    def __getitem__(self, index: tuple) -> torch.Tensor:
        y0, y1 = _bounds(index[2], self.shape[2])
        a, b, oy = _source_span("up", y0, y1, self.x.shape[2])
        out = self.layer.conv(F.interpolate(self.x[:, :, a:b], scale_factor=2.0, mode="nearest"))
        return out[:, :, y0 - oy:y1 - oy]

    def drop_before(self, row: int) -> None:
        self.x.drop_before(max((row - 1) // 2, 0))


class Computed:
    """Rows computed on demand by `rows(a, b)` (a resnet's first conv output); never held."""

    def __init__(self, shape: tuple, dtype: torch.dtype, device: torch.device,
                 rows: Callable[[int, int], torch.Tensor]):
        self.shape, self.dtype, self.device, self.rows = shape, dtype, device, rows

    def __getitem__(self, index: tuple) -> torch.Tensor:
        return self.rows(*_bounds(index[2], self.shape[2]))


def _bounds(s: slice, size: int) -> tuple[int, int]:
    return min(s.start or 0, size), size if s.stop is None else min(s.stop, size)


def band_rows(width: int, tile: int, channels: int = 128) -> int:
    """Rows per band: about tile² pixels of a `width`-wide activation, fewer where it has more than 128 channels
    (a band's temporaries then stay near tile² · 128 values: 32 MB in fp32 at the default tile)."""
    return max(1, tile * tile * 128 // max(channels, 128) // max(width, 1))


# ---- GroupNorm in two passes ------------------------------------------------------------------------------

def group_stats(x, norm: torch.nn.GroupNorm, rows: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1/sqrt(var + eps)) per (sample, group), each (B, G) float32, gathered over bands of `rows` rows
    (each band read once, summed in float64 sixteen rows at a time so the float64 copies stay small)."""
    B, C, H, W = x.shape
    G = norm.num_groups
    total = torch.zeros(B, G, dtype=torch.float64, device=x.device)
    squares = torch.zeros_like(total)
    for r in range(0, H, rows):
        band = x[:, :, r:r + rows]
        for s in range(0, band.shape[2], 16):
            part = band[:, :, s:s + 16].to(torch.float64).reshape(B, G, -1)  # (B, G, C/G · 16 · W)
            total += part.sum(-1)
            squares += part.square_().sum(-1)  # in place: one float64 copy at a time
    count = C // G * H * W
    mean = total / count
    var = (squares / count - mean.square()).clamp_min(0)  # biased variance, as GroupNorm uses
    return mean.float(), torch.rsqrt(var + norm.eps).float()


def _normalise(t: torch.Tensor, norm: torch.nn.GroupNorm, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """GroupNorm of band `t` (B, C, h, w) with the whole image's statistics, in float32, back in t's dtype. One
    band-sized float32 tensor is made (the subtraction's, read from t in place even where t is a strided view of
    its rows or bf16), the rest is in place."""
    mean, rstd = stats
    B, C, h, w = t.shape
    G = norm.num_groups
    y = torch.empty((B, G, C // G, h, w), dtype=torch.float32, device=t.device)  # contiguous whatever t's layout
    torch.sub(t.unflatten(1, (G, C // G)), mean[:, :, None, None, None], out=y)
    y = y.mul_(rstd[:, :, None, None, None]).flatten(1, 2)  # (B, C, h, w), a view
    if norm.affine:
        y.mul_(norm.weight.float()[None, :, None, None]).add_(norm.bias.float()[None, :, None, None])
    return y.to(t.dtype)


# ---- bands ------------------------------------------------------------------------------------------------

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


def _band_map(x, channels: int, kind: str, tile: int, op, release: Callable[[], None] | None = None) -> Rows:
    """Apply `op` (rows of x → its output) over bands of output rows into new `Rows` (B, channels, H', W'),
    freeing the rows of x no later band reads."""
    B, _, H, W = x.shape
    Ho, Wo = _out_size(kind, H), _out_size(kind, W)
    out = Rows((B, channels, Ho, Wo), x.dtype, x.device)
    step = band_rows(Wo, tile, max(x.shape[1], channels))
    for lo in range(0, Ho, step):
        hi = min(lo + step, Ho)
        a, b, o = _source_span(kind, lo, hi, H)
        out.append(op(x[:, :, a:b])[:, :, lo - o:hi - o])
        if hi < Ho:  # no later band reads above the next one's first source row
            x.drop_before(_source_span(kind, hi, min(hi + step, Ho), H)[0])
        if release is not None:
            release()
    return out


def _norm_act_conv(norm, act, conv, x, tile: int, release: Callable[[], None] | None = None) -> Rows:
    stats = group_stats(x, norm, band_rows(x.shape[3], tile, x.shape[1]))
    return _band_map(x, conv.out_channels, "same", tile,
                     lambda t: conv(act_inplace(act, _normalise(t, norm, stats))), release)


def _resnet(block: ResnetBlock2D, x, tile: int, release: Callable[[], None] | None = None) -> Rows:
    """norm1 → act → conv1 → norm2 → act → conv2, plus the shortcut (no time embedding). The first conv's
    output is recomputed where read, so only x and the output are held (x's rows freed as the output grows)."""
    B, C, H, W = x.shape
    rows = band_rows(W, tile, max(C, block.conv1.out_channels))
    stats1 = group_stats(x, block.norm1, rows)

    def first(t: torch.Tensor) -> torch.Tensor:  # conv1 over rows of x: (B, C1, rows, W)
        return block.conv1(act_inplace(block.act, _normalise(t, block.norm1, stats1)))

    def first_rows(lo: int, hi: int) -> torch.Tensor:  # conv1's output rows [lo, hi)
        a, b, o = _source_span("same", lo, hi, H)
        return first(x[:, :, a:b])[:, :, lo - o:hi - o]

    stats2 = group_stats(Computed((B, block.conv1.out_channels, H, W), x.dtype, x.device, first_rows),
                         block.norm2, rows)
    out = Rows((B, block.conv2.out_channels, H, W), x.dtype, x.device)
    for lo in range(0, H, rows):
        hi = min(lo + rows, H)
        ha, hb, _ = _source_span("same", lo, hi, H)  # conv1 rows conv2 reads
        a, b, _ = _source_span("same", ha, hb, H)  # x rows conv1 reads
        xs = x[:, :, a:b]
        # the shortcut: projected now, or x's held rows read again below (a view where one chunk holds them);
        # an upsampler's rows are kept instead, not computed a fourth time
        if block.conv_shortcut is not None:
            shortcut = block.conv_shortcut(xs[:, :, lo - a:hi - a])
        else:
            shortcut = None if isinstance(x, Rows) else xs[:, :, lo - a:hi - a]
        h = first(xs)[:, :, ha - a:hb - a]
        del xs  # each band-sized temporary is freed once read: x's rows once conv1 ran,
        g = act_inplace(block.act, _normalise(h, block.norm2, stats2))
        del h  # conv1's output once normalised
        y = block.conv2(g)[:, :, lo - ha:hi - ha]  # (B, C_out, hi − lo, W), a view of conv2's rows ha..hb
        del g
        y = y + (x[:, :, lo:hi] if shortcut is None else shortcut)
        out.append(y if block.output_scale_factor == 1.0 else y / block.output_scale_factor)
        x.drop_before(max(hi - 2, 0))  # the next band reads x from its rows' halo of conv1's halo on
        if release is not None:
            release()
    return out


# ---- how much memory the activations take (the planner's estimate; weights not included) -----------------

def decode_activation_bytes(vae: AutoencoderKL, latent_shape: tuple[int, ...], tiled: bool,
                            tile: int = DEFAULT_TILE, lean: bool = False) -> int:
    """Estimated peak bytes of `vae`'s decode of latents of `latent_shape` (see decode_bytes)."""
    return decode_bytes(tuple(vae.config.block_out_channels), latent_shape, vae.dtype.itemsize, tiled, tile, lean)


def decode_bytes(block_out_channels: tuple[int, ...], latent_shape: tuple[int, ...], itemsize: int, tiled: bool,
                 tile: int = DEFAULT_TILE, lean: bool = False) -> int:
    """Estimated peak bytes of a decode's activations, from the VAE's config alone.

    Untiled, the widest stage holds about its input, the normalised and activated copies and the convolution's
    output (an upsampler: its input, the ×2 copy and the conv output), with float32 temporaries even in bf16/fp16
    (GroupNorm and the convolutions' buffers): times 1.2, measured on an SDXL-size VAE (fp32 2048²: 15.2 GB
    against 12.9 GB for the bare sum; bf16 512²: 0.79 GB against 0.92 GB estimated). Tiled (since c2665a1), a
    stage's widest moment is the end of a resnet: its output whole while the last of its input is freed (after an
    upsampler the input is held at half the size: the larger of the two, not their sum), times 1.2 for the
    allocator's slack around the freed row chunks, plus one band's temporaries, 24.5 bytes a band value (float32
    normalised copies, conv outputs, oneDNN's buffers; a band is about tile² · 128 values and a 4-row halo). bf16
    measured about as much as fp32, so it is counted at 4 bytes a value too. Fitted on the SDXL-size VAE, tile
    256, peak RSS above the resident weights (bench_memory.py, 2026-12-07 at 59a4b38; repeated runs vary by up to
    20 %: the C heap's arenas), GiB measured / estimated: fp32 256² 0.199-0.222 / 0.235, 512² 0.352 / 0.353,
    2048² 2.30 / 2.64; bf16 256² 0.205-0.215 / 0.235, 512² 0.305-0.364 / 0.353.
    `lean` (untiled, models/vae_lean.py): a resnet holds its input, the normalised copy, the convolution's copy of
    its input (oneDNN reorders it: measured, a conv adds its output plus about its input) and conv1's output,
    then the input, the activated copy, its conv copy and conv2's output; an upsampler the ×2 copy, its conv copy
    and output; in the compute dtype (GroupNorm adds only its output, measured in bf16), times 1.25 (SDXL-size
    1024² bf16: 2.14 GB measured, 2.19 GB estimated)."""
    B, _, h, w = latent_shape
    c = block_out_channels[::-1]
    peak, pixels, channels, upsampled = 0, h * w, c[0], False
    for i, out in enumerate(c):
        if tiled:  # the output whole and the last of the input's rows, then one band's temporaries
            held = max(channels // 4 if upsampled else channels, out) * pixels * max(itemsize, 4) * 6 // 5
            wide = max(channels, out)  # a band (band_rows): tile² pixels, fewer above 128 channels; + a 4-row halo
            values = min(tile * tile * 128 * wide // max(wide, 128), wide * pixels) + 4 * int(pixels ** 0.5) * wide
            stage = held + values * 49 // 2  # 24.5 bytes a band value
        elif lean:
            stage = max(3 * channels + out, channels + 3 * out) * pixels * itemsize * 5 // 4
        else:
            stage = (2 * channels + 2 * out) * pixels * max(itemsize, 4) * 6 // 5
        peak = max(peak, stage)
        if i < len(c) - 1:  # the upsampler at the end of the block
            if lean:
                peak = max(peak, 12 * out * pixels * itemsize * 5 // 4)
            elif not tiled:
                peak = max(peak, (out + 8 * out) * pixels * max(itemsize, 4) * 6 // 5)
            pixels *= 4
            upsampled = True
        channels = out
    return B * peak
