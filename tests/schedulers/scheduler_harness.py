"""The seed's denoising loop and a fixed fake model, run alike on nodegraph and diffusers schedulers."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"
SHAPE = (1, 4, 8, 8)


def load_json(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def fake_model(x: torch.Tensor, t, out_channels: int | None = None) -> torch.Tensor:
    """A smooth deterministic stand-in for a UNet: depends on x and on t (int or float)."""
    t = float(t)
    out = torch.tanh(x) * (0.6 + 0.3 * math.cos(t / 150.0)) + 0.05 * math.sin(t / 70.0)
    if out_channels == 2 * x.shape[1]:  # mean plus a learned variance channel, kept in (0.1, 0.9)
        out = torch.cat([out, 0.5 + 0.4 * torch.tanh(x - 0.3)], dim=1)
    return out


def step_kwargs(sched, generator, eta) -> dict:
    """The keyword arguments a scheduler's step takes: all of them for nodegraph, and for diffusers only
    those its signature has (what StableDiffusionPipeline.prepare_extra_step_kwargs does)."""
    params = inspect.signature(sched.step).parameters
    kw = {}
    if "generator" in params:
        kw["generator"] = generator
    if "eta" in params:
        kw["eta"] = eta
    return kw


def denoise(sched, steps: int, seed: int = 0, *, eta: float = 0.0, shape=SHAPE, out_channels=None,
            dtype=torch.float32) -> list[torch.Tensor]:
    """Latents from the seeded CPU generator, then set_timesteps / scale_model_input / model / step.
    Returns every intermediate sample."""
    g = torch.Generator("cpu").manual_seed(seed)
    x = torch.randn(shape, generator=g).to(dtype)
    sched.set_timesteps(steps)
    x = x * sched.init_noise_sigma
    return _loop(sched, sched.timesteps, x, g, eta, out_channels)


def img2img(sched, steps: int, strength: float, seed: int = 0) -> list[torch.Tensor]:
    """StableDiffusionImg2ImgPipeline's schedule: start part-way, noise the init latents with add_noise."""
    g = torch.Generator("cpu").manual_seed(seed)
    init = torch.tanh(torch.randn(SHAPE, generator=g))
    sched.set_timesteps(steps)
    t_start = max(steps - min(int(steps * strength), steps), 0)
    timesteps = sched.timesteps[t_start * sched.order:]
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(t_start * sched.order)
    noise = torch.randn(SHAPE, generator=g)
    x = sched.add_noise(init, noise, timesteps[:1].repeat(SHAPE[0]))
    return [x] + _loop(sched, timesteps, x, g, 0.0, None)


def _loop(sched, timesteps, x, g, eta, out_channels) -> list[torch.Tensor]:
    kw = step_kwargs(sched, g, eta)
    out = []
    for t in timesteps:
        eps = fake_model(sched.scale_model_input(x, t), t, out_channels).to(x.dtype)
        x = sched.step(eps, t, x, **kw)
        x = getattr(x, "prev_sample", x)
        out.append(x)
    return out


def assert_same_schedule(ours, theirs) -> None:
    """Identical timesteps (values and dtype) and, where the scheduler has them, identical sigmas."""
    assert ours.timesteps.dtype == theirs.timesteps.dtype
    torch.testing.assert_close(ours.timesteps, theirs.timesteps, rtol=0, atol=0)
    if hasattr(theirs, "sigmas"):
        torch.testing.assert_close(ours.sigmas, theirs.sigmas, rtol=0, atol=0)
    torch.testing.assert_close(torch.as_tensor(ours.init_noise_sigma), torch.as_tensor(theirs.init_noise_sigma),
                               rtol=0, atol=0)


def assert_trajectories_close(ours: list[torch.Tensor], theirs: list[torch.Tensor], atol=1e-5) -> None:
    assert len(ours) == len(theirs)
    assert all(torch.isfinite(x).all() for x in ours), "a trajectory that reaches inf/NaN proves nothing"
    # Relative slack only matters where sigma is huge (squaredcos_cap_v2 starts near sigma = 1e4).
    torch.testing.assert_close(torch.stack(ours), torch.stack(theirs), atol=atol, rtol=1e-5)
