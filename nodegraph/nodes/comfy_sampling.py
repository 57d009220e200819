"""ComfyUI-semantics sampling nodes: its empty latent, σ schedules, noise rules, x₀ prediction and sampler steps.

A ComfyUI KSampler is written out as ComfySigmas → ComfyNoise → repeat over the steps of
graphs/comfy/ksampler_step.yaml (ComfyDenoise → ComfySamplerStep); the math lives in nodegraph/comfy/.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from nodegraph.comfy.samplers import SAMPLERS
from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Embeddings, Generator, Latent, Tensor, UNet

SchedulerName = Literal["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform"]
SamplerName = Literal[SAMPLERS]  # nodegraph/comfy/samplers.py: the one list of ComfyUI sampler names


@node("ComfyEmptyLatent", version=1)
class ComfyEmptyLatent(Node):
    """ComfyUI's EmptyLatentImage: zeros of shape (batch, 4, height // 8, width // 8) in model space."""

    class Inputs(Ports):
        width: int = Field(512, ge=16, le=16384)
        height: int = Field(512, ge=16, le=16384)
        batch_size: int = Field(1, ge=1, le=64)

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        import torch

        return {"latents": torch.zeros((i.batch_size, 4, i.height // 8, i.width // 8), dtype=ctx.dtype,
                                       device=ctx.device)}


@node("ComfySigmas", version=1)
class ComfySigmas(Node):
    """The σ schedule a ComfyUI KSampler / KSamplerAdvanced runs over (SD's discrete ε table), and its step indices.

    `denoise` < 1 keeps the last steps + 1 σ of a longer schedule; `start_step` / `end_step` cut it as
    KSamplerAdvanced does, the last kept σ set to 0 unless `return_with_leftover_noise` is enable. `sampler`
    is the KSampler's: for dpm_2, dpm_2_ancestral, uni_pc and uni_pc_bh2 ComfyUI schedules one more step and
    drops the penultimate σ (leave it unset for SamplerCustom, whose BasicScheduler does not).
    """

    class Inputs(Ports):
        scheduler: SchedulerName = "normal"
        steps: int = Field(20, ge=1, le=10000)
        denoise: float = Field(1.0, ge=0.0, le=1.0)
        start_step: int = Field(0, ge=0, le=10000)
        end_step: int = Field(10000, ge=0, le=10000)
        return_with_leftover_noise: Literal["disable", "enable"] = "disable"
        sampler: Optional[SamplerName] = None

    class Outputs(Ports):
        sigmas: Tensor
        steps: list[int]

    def run(self, i, ctx):
        from nodegraph.comfy.samplers import DISCARD_PENULTIMATE_SIGMA
        from nodegraph.comfy.schedules import ksampler_sigmas

        sigmas = ksampler_sigmas(i.scheduler, i.steps, i.denoise, i.start_step, i.end_step,
                                 force_full_denoise=i.return_with_leftover_noise == "disable",
                                 discard_penultimate=i.sampler in DISCARD_PENULTIMATE_SIGMA)
        return {"sigmas": sigmas, "steps": list(range(max(len(sigmas) - 1, 0)))}


@node("ComfyNoise", version=1)
class ComfyNoise(Node):
    """Noise the latents for the first σ as ComfyUI does, and make the sampler's own noise generator.

    The noise is one CPU draw of the latents' shape from `seed`; it is scaled by √(1 + σ₀²) when σ₀ is the
    model's σmax (a full denoise) and by σ₀ otherwise, then added to the latents (comfy/model_sampling.py
    `EPS.noise_scaling`). `add_noise: disable` leaves the latents as they are (KSamplerAdvanced). The output
    `noise` generator is a fresh one seeded with `seed`: ancestral samplers draw from it, as ComfyUI's
    `default_noise_sampler` does.
    """

    class Inputs(Ports):
        latents: Latent
        sigmas: Tensor
        seed: int = Field(0, ge=0, le=2**64 - 1)
        add_noise: Literal["enable", "disable"] = "enable"

    class Outputs(Ports):
        latents: Latent
        noise: Generator
        history: Any

    def run(self, i, ctx):
        import math

        import torch

        from nodegraph.comfy.schedules import sigma_table

        generator = torch.Generator("cpu").manual_seed(i.seed)
        x = i.latents
        if len(i.sigmas) > 1 and i.add_noise == "enable":
            noise = torch.randn(x.shape, generator=torch.Generator("cpu").manual_seed(i.seed), dtype=torch.float32,
                                device="cpu").to(device=x.device, dtype=x.dtype)
            sigma, sigma_max = float(i.sigmas[0]), float(sigma_table()[-1])
            full = math.isclose(sigma, sigma_max, rel_tol=1e-5) or sigma > sigma_max
            x = x + noise * (math.sqrt(1.0 + sigma ** 2) if full else sigma)
        return {"latents": x, "noise": generator, "history": None}


@node("ComfyDenoise", version=1)
class ComfyDenoise(Node):
    """The guided x₀ estimate at σ = sigmas[index]: ε-prediction UNet on x / √(σ² + 1) at the nearest integer t.

    CFG combines the x₀ estimates, x₀_neg + cfg·(x₀_pos − x₀_neg) (comfy/samplers.py `cfg_function`); the
    negative pass is skipped when cfg is 1. Prompts of different lengths are repeated to a common length.
    """

    class Inputs(Ports):
        unet: UNet
        latents: Latent
        sigmas: Tensor
        index: int = Field(ge=0)
        positive: Optional[Embeddings] = None
        negative: Optional[Embeddings] = None
        cfg: float = Field(8.0, ge=0.0, le=100.0)
        positive_pooled: Optional[Embeddings] = Field(None, description="SDXL: the prompt's pooled embedding")
        negative_pooled: Optional[Embeddings] = None
        prediction: Literal["eps", "v"] = Field("eps", description="what the UNet predicts: ε or v (SD 2.x 768-v)")
        positive_control: Any = Field(None, description="the prompt's ControlNet chain (ComfyControlNetApply)")
        negative_control: Any = None
        positive_size: Any = Field(None, description="SDXL: the prompt's own size/score ids (CLIPTextEncodeSDXL)")
        negative_size: Any = None
        positive_list: Any = Field(None, description="area-conditioned prompts (ComfyConditioning… nodes) "
                                   "instead of `positive`")
        negative_list: Any = None
        inpaint: Any = Field(None, description="ComfyInpaint's mask, latents and noise (VAEEncodeForInpaint)")

    class Outputs(Ports):
        denoised: Latent

    def run(self, i, ctx):
        from nodegraph.comfy.guidance import guided_denoise

        sigma = float(i.sigmas[i.index])
        if i.positive is None and not i.positive_list:
            raise ValueError("`positive`: connect a prompt's embeddings (or `positive_list`)")
        return {"denoised": guided_denoise(i.unet, i.latents, sigma, i.positive, i.negative, i.cfg,
                                           i.positive_pooled, i.negative_pooled, i.prediction,
                                           i.positive_control, i.negative_control, i.positive_size,
                                           i.negative_size, i.positive_list, i.negative_list, i.inpaint)}


@node("ComfySamplerStep", version=1)
class ComfySamplerStep(Node):
    """One k-diffusion sampler step from sigmas[index] to sigmas[index + 1] given the x₀ estimate.

    euler and ddim (ComfyUI's alias): Karras et al. 2022 Alg. 2; euler_ancestral: the same with noise from
    `noise`; heun: Alg. 2's second-order correction; dpm_2 / dpm_2_ancestral: k-diffusion's DPM-Solver-2
    variants (midpoint in log σ); dpmpp_2m: Lu et al. 2022 DPM-Solver++(2M); dpmpp_2s_ancestral: their
    DPM-Solver++(2S), ancestral; lms: linear multistep, order 4; uni_pc / uni_pc_bh2: Zhao et al. 2023 UniPC
    (B(h) = h / e^h − 1), whose corrector uses this step's `denoised`. `history` carries what multistep samplers
    remember (None at the first step). Second-order samplers make their second model evaluation here, with
    `unet`, `positive`, `negative` and `cfg` (as ComfyDenoise).
    """

    class Inputs(Ports):
        sampler: SamplerName = "euler"
        latents: Latent
        denoised: Latent
        sigmas: Tensor
        index: int = Field(ge=0)
        noise: Optional[Generator] = None
        history: Any = None
        unet: Optional[UNet] = None
        positive: Optional[Embeddings] = None
        negative: Optional[Embeddings] = None
        cfg: float = Field(8.0, ge=0.0, le=100.0)
        positive_pooled: Optional[Embeddings] = None
        negative_pooled: Optional[Embeddings] = None
        prediction: Literal["eps", "v"] = "eps"
        positive_control: Any = None
        negative_control: Any = None
        positive_size: Any = None
        negative_size: Any = None
        positive_list: Any = None
        negative_list: Any = None
        inpaint: Any = None

    class Outputs(Ports):
        latents: Latent
        history: Any

    def run(self, i, ctx):
        from nodegraph.comfy.samplers import ANCESTRAL, SECOND_ORDER, step

        if i.sampler in ANCESTRAL and i.noise is None:
            raise ValueError(f"`noise`: {i.sampler} needs the sampler's generator (ComfyNoise's `noise`)")
        model = None
        if i.sampler in SECOND_ORDER:
            from nodegraph.comfy.guidance import guided_denoise

            if i.unet is None or (i.positive is None and not i.positive_list):
                raise ValueError(f"`unet`, `positive`: {i.sampler} evaluates the model twice per step; give the "
                                 f"step the same model and prompts as ComfyDenoise")

            def model(x, sigma):
                return guided_denoise(i.unet, x, sigma, i.positive, i.negative, i.cfg, i.positive_pooled,
                                      i.negative_pooled, i.prediction, i.positive_control, i.negative_control,
                                      i.positive_size, i.negative_size, i.positive_list, i.negative_list,
                                      i.inpaint)

        x, history = step(i.sampler, i.latents, i.denoised, i.sigmas, i.index, i.noise, i.history, model)
        return {"latents": x, "history": history}


@node("ComfyTurboSigmas", version=1)
class ComfyTurboSigmas(Node):
    """ComfyUI's SDTurboScheduler: σ at the timesteps 999, 899, … 99 (the table's own values), from step
    10 − int(10 · denoise), `steps` of them, then 0 (comfy_extras/nodes_custom_sampler.py)."""

    class Inputs(Ports):
        steps: int = Field(1, ge=1, le=10)
        denoise: float = Field(1.0, ge=0.0, le=1.0)

    class Outputs(Ports):
        sigmas: Tensor
        steps: list[int]

    def run(self, i, ctx):
        import torch

        from nodegraph.comfy.schedules import sigma_table

        start = 10 - int(10 * i.denoise)
        timesteps = [100 * k - 1 for k in range(10, 0, -1)][start:start + i.steps]
        sigmas = torch.cat([sigma_table()[timesteps], torch.zeros(1)])
        return {"sigmas": sigmas, "steps": list(range(len(sigmas) - 1))}
