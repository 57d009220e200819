"""ComfyUI-semantics nodes for flow-matching models (Z-Image, Flux.1): EmptySD3LatentImage, the prompt as ComfyUI's
Qwen3 and T5 encoders give it, the shifted flow σ schedule, CONST's starting noise, the x₀ estimate and sampler
steps.

A ComfyUI KSampler on a flow model is written out as ComfyFlowSigmas → ComfyFlowNoise → a repeat of
ComfyFlowDenoise → ComfyFlowSamplerStep; the math lives in nodegraph/comfy/flow.py and comfy/samplers.py.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Embeddings, Latent, Tensor, TextEncoder, Tokenizer, Transformer
from nodegraph.nodes.comfy_sampling import SamplerName, SchedulerName

# T5-XXL's relative position bias is (1, 64 heads, L, L): float32 at L = 1024 that is 64·1024²·4 B = 256 MiB (at 2048,
# 1 GiB; at the Qwen encoder's 8192, 16 GiB), and SDPA's scores take as much again: a stranger's prompt stops here.
T5_MAX_TOKENS = 1024
QWEN_MAX_TOKENS = 8192  # the chat-templated prompt; ComfyUI does not cut it, so a longer one is refused, not cut
SHIFT_HELP = "the model's σ shift (ModelSamplingAuraFlow's `shift`; a Z-Image file's own is 3)"
MULTIPLIER_HELP = "timestep = σ · multiplier (1 for ModelSamplingAuraFlow and Z-Image)"


@node("ComfyEmptySD3Latent", version=1)
class ComfyEmptySD3Latent(Node):
    """ComfyUI's EmptySD3LatentImage: zeros of shape (batch, 16, height // 8, width // 8), in ComfyUI's raw latent
    space (ComfyFlowNoise's `latent_format` takes them into the model's)."""

    class Inputs(Ports):
        width: int = Field(1024, ge=16, le=16384)
        height: int = Field(1024, ge=16, le=16384)
        batch_size: int = Field(1, ge=1, le=64)  # as ComfyEmptyLatent (EmptyLatentImage, nodes/comfy_sampling.py)

    class Outputs(Ports):
        latents: Latent

    def run(self, i, ctx):
        import torch

        return {"latents": torch.zeros((i.batch_size, 16, i.height // 8, i.width // 8), dtype=torch.float32,
                                       device=ctx.device)}


@node("ComfyQwenTextEncode", version=1)
class ComfyQwenTextEncode(Node):
    """ComfyUI's CLIPTextEncode with a Qwen3 text encoder (its `lumina2` CLIP type, comfy/text_encoders/z_image.py):
    the prompt taken as it is (no weight syntax), in the chat template "<|im_start|>user\\n…<|im_end|>\\n
    <|im_start|>assistant\\n", no padding, the second-to-last layer's output without the final norm: (1, tokens, C).
    A templated prompt over QWEN_MAX_TOKENS (8192) tokens is refused before the encoder runs."""

    class Inputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        text: str = Field("", description="the prompt, used verbatim")

    class Outputs(Ports):
        embeddings: Embeddings

    def run(self, i, ctx):
        import torch

        from nodegraph.models.qwen3_text import encode_prompts

        _, mask = i.tokenizer([i.tokenizer.apply_chat_template(i.text)], QWEN_MAX_TOKENS + 1)  # (1, 8193)
        if int(mask.sum()) > QWEN_MAX_TOKENS:
            raise ValueError(f"`text`: the prompt ({len(i.text)} characters) is longer than {QWEN_MAX_TOKENS} Qwen3 "
                             f"tokens in its chat template, the most this import encodes; shorten the prompt")
        with torch.no_grad():  # trim_padding: the encoder sees the prompt's own tokens only, as ComfyUI's does
            (hidden,) = encode_prompts(i.text_encoder, i.tokenizer, [i.text], QWEN_MAX_TOKENS, device=ctx.device,
                                       trim_padding=True)
        return {"embeddings": hidden.to(device=ctx.device)[None]}


@node("ComfyT5Encode", version=1)
class ComfyT5Encode(Node):
    """ComfyUI's T5-XXL encoding for Flux (comfy/text_encoders/flux.py): the prompt's tokens and `</s>`, padded with
    pad tokens to at least 256 and never cut, no attention mask, T5's last hidden state: (1, max(256, n), C).
    ComfyUI has no upper bound; here a prompt over T5_MAX_TOKENS (1024) tokens is refused before the encoder runs.
    `weighted`: the text is read with ComfyUI's `(word:weight)` syntax, word by word (nodegraph/comfy/text.py)."""

    class Inputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        text: str = Field("", description=f"the prompt (at most {T5_MAX_TOKENS} T5 tokens)")
        weighted: bool = Field(False, description="ComfyUI's prompt weights: (word:1.2), (word) = 1.1")

    class Outputs(Ports):
        embeddings: Embeddings

    def run(self, i, ctx):
        import torch

        if i.weighted:
            from nodegraph.comfy.text import t5_weighted_encode, t5_weighted_tokens

            ids, weights, empty = t5_weighted_tokens(i.text, i.tokenizer, 256, T5_MAX_TOKENS)
            return {"embeddings": t5_weighted_encode(i.text_encoder, ids, weights, empty).to(device=ctx.device)}
        if i.tokenizer.dropped([i.text], T5_MAX_TOKENS)[0]:  # tokenizing is cheap; the encoder's bias is not
            raise ValueError(f"`text`: the prompt ({len(i.text)} characters) is longer than "
                             f"{T5_MAX_TOKENS} T5 tokens, the most this import encodes (T5's attention grows with the "
                             f"square of the length); shorten the prompt")
        ids, mask = i.tokenizer([i.text], T5_MAX_TOKENS)  # (1, T5_MAX_TOKENS), the padding last
        ids = ids[:, :max(256, int(mask.sum()))]  # ComfyUI's length: the prompt's tokens, at least 256
        with torch.no_grad():
            hidden = i.text_encoder(ids.to(i.text_encoder.device))  # (1, L, C)
        return {"embeddings": hidden.to(device=ctx.device)}


@node("ComfyFlowSigmas", version=1)
class ComfyFlowSigmas(Node):
    """The σ schedule a ComfyUI KSampler runs over on a flow model (`sampling` discrete: ModelSamplingDiscreteFlow
    with `shift` and `multiplier`; flux: ModelSamplingFlux with μ = `shift`), and its step indices; `denoise` < 1
    keeps the last steps + 1 σ of a longer schedule."""

    class Inputs(Ports):
        scheduler: SchedulerName = "simple"
        steps: int = Field(8, ge=1, le=10000)
        denoise: float = Field(1.0, ge=0.0, le=1.0)
        shift: float = Field(3.0, gt=0.0, le=100.0, description=SHIFT_HELP)
        multiplier: float = Field(1.0, gt=0.0, le=10000.0, description=MULTIPLIER_HELP)
        sampling: Literal["discrete", "flux"] = Field("discrete", description="the model's σ function")

    class Outputs(Ports):
        sigmas: Tensor
        steps: list[int]

    def run(self, i, ctx):
        from nodegraph.comfy.flow import FlowSampling
        from nodegraph.comfy.schedules import ksampler_sigmas

        sigmas = ksampler_sigmas(i.scheduler, i.steps, i.denoise, flow=FlowSampling(i.shift, i.multiplier, i.sampling))
        return {"sigmas": sigmas, "steps": list(range(max(len(sigmas) - 1, 0)))}


@node("ComfyFlowNoise", version=1)
class ComfyFlowNoise(Node):
    """A flow model's starting point as ComfyUI makes it: one CPU draw of the latents' shape from `seed`, then
    σ₀·noise + (1 − σ₀)·latent (comfy/model_sampling.py `CONST.noise_scaling`). `latent_scale` / `latent_shift`
    first take ComfyUI's raw latent into the model's space, (z − shift)·scale (the Flux format: 0.3611, 0.1159);
    leave them at 1 / 0 for latents already there (VAEEncode's)."""

    class Inputs(Ports):
        latents: Latent
        sigmas: Tensor
        seed: int = Field(0, ge=0, le=2**64 - 1)
        add_noise: bool = Field(True, description="false: no noise (DisableNoise), the latent alone is scaled")
        latent_scale: float = Field(1.0, gt=0.0, le=100.0, description="scale of a raw latent's format")
        latent_shift: float = Field(0.0, ge=-100.0, le=100.0, description="shift of a raw latent's format")

    class Outputs(Ports):
        latents: Latent
        history: Any

    def run(self, i, ctx):
        import torch

        from nodegraph.comfy.flow import start_latents

        x = (i.latents.float() - i.latent_shift) * i.latent_scale
        if len(i.sigmas) > 1:
            noise = torch.randn(x.shape, generator=torch.Generator("cpu").manual_seed(i.seed), dtype=torch.float32) \
                if i.add_noise else torch.zeros_like(x)
            x = start_latents(x, noise.to(x.device), float(i.sigmas[0]))
        return {"latents": x, "history": None}


class _Model(Ports):
    transformer: Transformer
    positive: Embeddings
    negative: Optional[Embeddings] = None
    cfg: float = Field(1.0, ge=0.0, le=100.0, description="CFG on x₀; 1 skips the negative pass")
    multiplier: float = Field(1.0, gt=0.0, le=10000.0, description=MULTIPLIER_HELP)
    positive_pooled: Optional[Embeddings] = Field(None, description="Flux: the prompt's pooled CLIP-L embedding")
    negative_pooled: Optional[Embeddings] = None
    positive_guidance: float = Field(3.5, ge=0.0, le=100.0, description="Flux dev: the prompt's guidance")
    negative_guidance: float = Field(3.5, ge=0.0, le=100.0)
    positive_control: Optional[Any] = Field(None, description="SD3.5: the prompt's ControlNet chain")
    negative_control: Optional[Any] = None

    def denoiser(self):
        """`(x, σ) → x₀` with these ports."""
        from nodegraph.comfy.flow import flow_denoise

        return lambda x, sigma: flow_denoise(self.transformer, x, sigma, self.positive, self.negative, self.cfg,
                                             self.multiplier, (self.positive_pooled, self.negative_pooled),
                                             (self.positive_guidance, self.negative_guidance),
                                             (self.positive_control, self.negative_control))


@node("ComfyFlowDenoise", version=1)
class ComfyFlowDenoise(Node):
    """The guided x₀ estimate of a Z-Image or Flux transformer at σ = sigmas[index], as ComfyUI's KSampler computes
    it: x₀ = x − σ·v with v the model's velocity (Z-Image: its negated output at timestep 1 − σ·multiplier; Flux: at
    timestep σ with the guidance embedding), CFG on x₀."""

    class Inputs(_Model):
        latents: Latent
        sigmas: Tensor
        index: int = Field(ge=0)

    class Outputs(Ports):
        denoised: Latent

    def run(self, i, ctx):
        return {"denoised": i.denoiser()(i.latents, float(i.sigmas[i.index]))}


@node("ComfyFlowSamplerStep", version=1)
class ComfyFlowSamplerStep(Node):
    """One ComfyUI sampler step on a flow model from sigmas[index] to sigmas[index + 1] given the x₀ estimate:
    the deterministic k-diffusion samplers (nodegraph/comfy/samplers.py; res_multistep is RES's second-order
    multistep integrator), second-order ones evaluating the transformer again here. The ancestral and SDE samplers,
    which ComfyUI swaps for rectified-flow variants on these models, are refused."""

    class Inputs(_Model):
        sampler: SamplerName = "euler"
        latents: Latent
        denoised: Latent
        sigmas: Tensor
        index: int = Field(ge=0)
        history: Any = None

    class Outputs(Ports):
        latents: Latent
        history: Any

    def run(self, i, ctx):
        from nodegraph.comfy.flow import FLOW_SAMPLERS
        from nodegraph.comfy.samplers import step

        if i.sampler not in FLOW_SAMPLERS:
            raise ValueError(f"`sampler` {i.sampler!r} on a flow model is not covered yet (ComfyUI runs a "
                             f"rectified-flow variant of it); use one of {', '.join(FLOW_SAMPLERS)}")
        x, history = step(i.sampler, i.latents, i.denoised, i.sigmas, i.index, None, i.history, i.denoiser())
        return {"latents": x, "history": history}

