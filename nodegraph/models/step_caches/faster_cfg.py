"""FasterCache with classifier-free guidance: Lv et al. 2024, "FasterCache: Training-Free Video Diffusion Model
Acceleration with High Quality" (arXiv 2410.19355), both parts on a model called once a step on the batch
[unconditional; conditional] whose output is a latent image (B, C, H, W): SD3's layout (graphs/sd3_denoise_step.yaml
batches its CFG call so).

CFG-Cache (the paper's section 3.3): the difference between the unconditional and the conditional outputs changes
slowly, its low frequencies early and its high ones late. On a full call both halves run and the difference of
their low and high frequency bands (2-D FFT over H, W; low = inside a circle of radius min(H, W) // 5 around the
centre of the shifted spectrum) is kept. On a reusing call (inside 641 > t > −1, every call but each
`uncond_interval`-th, never the first) only the conditional half runs and the unconditional output is rebuilt as
IFFT(low_cond + Δlow·w_low + high_cond + Δhigh·w_high), the kept differences first scaled by w_low = 1.1 for
99 < t < 901 and w_high = 1.1 for −1 < t < 301 (1 elsewhere; the scaling accumulates over reusing calls).

Dynamic feature reuse (the attention part, as faster_cache.py): on those reusing calls, inside t < 681 and except
on each `attention_interval`-th call of a module, every attention module of the main stack returns
o_t + w·(o_t − o_{t−1}) from its last two conditional outputs instead of running (w = 0.5).

This is diffusers 0.42.1's `apply_faster_cache` with its defaults for a model that is not guidance-distilled
(`FasterCacheConfig(is_guidance_distilled=False, tensor_format="BCHW")`, attention weight 0.5), the
pooled embedding counted among the batched inputs as SD3 needs.

Shapes: x (2B, C, H, W) on full calls, (B, C, H, W) on reusing ones; attention outputs (2B or B, S, D).
"""

from __future__ import annotations

import torch
from torch import nn

from nodegraph.models.step_caches._forwards import replaced


def split_bands(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The centred 2-D spectrum of x (…, H, W) as its low and its high band (complex, same shape)."""
    spectrum = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))
    height, width = x.shape[-2:]
    radius = min(height, width) // 5
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    low = ((cols - width // 2) ** 2 + (rows - height // 2) ** 2 <= radius ** 2).to(x.device)  # (H, W)
    return spectrum * low, spectrum * ~low


class FasterCacheCFG:
    """One run's state; `call(model, modules, *inputs)` makes one batched CFG call (every tensor input batched
    [unconditional; conditional]; the last input is the timestep (2B,), 0..1000)."""

    def __init__(self, uncond_interval: int = 5, attention_interval: int = 2, weight: float = 0.5):
        if uncond_interval < 1 or attention_interval < 1 or not 0.0 <= weight <= 1.0:
            raise ValueError(f"FasterCache: `uncond_interval` and `attention_interval` must be ≥ 1 (diffusers' "
                             f"defaults 5 and 2) and the weight from 0 to 1; got {uncond_interval}, "
                             f"{attention_interval}, {weight}.")
        self.uncond_interval, self.attention_interval, self.weight = uncond_interval, attention_interval, weight
        self.uncond_range, self.attention_range = (-1, 641), (-1, 681)
        self.low_range, self.high_range, self.alpha = (99, 901), (-1, 301), 1.1
        self.calls = 0
        self.low_delta: torch.Tensor | None = None  # unconditional − conditional, low band (complex)
        self.high_delta: torch.Tensor | None = None
        self.modules: dict[int, dict] = {}  # per attention module: its calls, first batch and last two outputs
        self.decisions: list[bool] = []  # per call: True = the unconditional half ran

    @staticmethod
    def _inside(bounds: tuple[float, float], t: float) -> bool:
        return bounds[0] < t < bounds[1]

    def call(self, model: nn.Module, modules: list[nn.Module], *inputs: torch.Tensor, **kwargs):
        t = float(inputs[-1].reshape(-1)[0])
        reuse = self.calls > 0 and self._inside(self.uncond_range, t) and self.calls % self.uncond_interval != 0
        self.decisions.append(not reuse)
        if reuse:
            inputs = tuple(x.chunk(2)[1] for x in inputs)  # the conditional halves
        with replaced((m, self._attention(k, m.forward, t)) for k, m in enumerate(modules)):
            out = model(*inputs, **kwargs)  # (2B or B, C, H, W)
        self.calls += 1
        if not reuse:
            uncond, cond = out.float().chunk(2)
            (low_u, high_u), (low_c, high_c) = split_bands(uncond), split_bands(cond)
            self.low_delta, self.high_delta = low_u - low_c, high_u - high_c
            return out
        self.low_delta = self.low_delta * (self.alpha if self._inside(self.low_range, t) else 1.0)
        self.high_delta = self.high_delta * (self.alpha if self._inside(self.high_range, t) else 1.0)
        low_c, high_c = split_bands(out.float())
        spectrum = (self.low_delta + low_c) + (self.high_delta + high_c)
        uncond = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1))).real
        return torch.cat([uncond.to(out.dtype), out])

    def _attention(self, k: int, forward, t: float):
        state = self.modules.setdefault(k, {"calls": 0, "batch": None, "cache": None})

        def run(*args, **kwargs):
            batch = next(a for a in (*args, *kwargs.values()) if torch.is_tensor(a)).shape[0]
            if state["batch"] is None:
                state["batch"] = batch
            computes = state["calls"] > 0 and state["calls"] % self.attention_interval == 0
            skip = self._inside(self.attention_range, t) and not computes and state["batch"] != batch
            out = self._extrapolated(state["cache"]) if skip else forward(*args, **kwargs)
            kept = self._conditional(out, state["batch"])
            state["cache"] = [kept, kept] if state["cache"] is None else [state["cache"][-1], kept]
            state["calls"] += 1
            return out
        return run

    def _extrapolated(self, cache):
        before, last = cache
        if torch.is_tensor(last):
            return last + (last - before) * self.weight
        return tuple(None if o is None else o + (o - b) * self.weight for b, o in zip(before, last))

    @staticmethod
    def _conditional(out, full_batch: int):
        """The conditional half of a full-batch output (each of a tuple's), as it is otherwise."""
        def half(o):
            return o.chunk(2)[1] if o is not None and o.shape[0] == full_batch else o
        return half(out) if torch.is_tensor(out) else tuple(half(o) for o in out)


def sd3_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention modules FasterCache acts on in SD3's stack: each block's `attn`, and `attn2` where the block
    has one (MMDiT-X)."""
    return [m for block in model.transformer_blocks for m in (block.attn, getattr(block, "attn2", None))
            if m is not None]


class CFGCachedTransformer:
    """An SD3 transformer handle whose CFG calls in one run go through one FasterCacheCFG; attributes are the
    model's. A call with `skip_layers` (skip-layer guidance's extra positive-only call) runs the plain model, outside
    the cache's count. `on_call(reused)` is told whether each cached call skipped the unconditional half."""

    def __init__(self, model: nn.Module, cache: FasterCacheCFG, on_call=None):
        self.model, self.cache, self.on_call = model, cache, on_call
        self.modules = sd3_attention_modules(model)

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def __call__(self, *args, skip_layers=None, **kwargs):
        if skip_layers:
            return self.model(*args, skip_layers=skip_layers, **kwargs)
        out = self.cache.call(self.model, self.modules, *args, **kwargs)
        if self.on_call is not None:
            self.on_call(not self.cache.decisions[-1])
        return out
