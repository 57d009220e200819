"""The UNet forward pass as a node."""

from __future__ import annotations

from typing import Literal, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.step_cache_event import StepCacheDecision
from nodegraph.core.types import Embeddings, Latent, Tensor, UNet


@node("UNetStep", version=1)
class UNetStep(Node):
    """One UNet forward: predict the noise (or v, or x0) in `latents` at timestep `t`.

    When `embeddings` hold twice the latents' batch (a CFG batch from CFGEmbeddings), the latents are doubled
    and both halves go through the UNet in one call. Without `embeddings` the UNet is unconditional (DDPM).

    `cache: deepcache` (DeepCache, Ma et al. 2023; models/deepcache.py): on a `refresh` step (see
    StepCacheSchedule) the whole UNet runs, with the same numbers as without a cache, and its deep up-path
    features are output; on the other steps only the shallow skip branch runs, on the `features` given.

    The UNet runs under `torch.inference_mode()`, so `noise_pred` and `features` are inference tensors: read
    them anywhere, but an in-place op on them outside inference mode raises ("Inplace update to inference
    tensor outside InferenceMode"). A node taking them writes `x = x * s`, not `x.mul_(s)` (or `.clone()`s first).
    """

    class Inputs(Ports):
        unet: UNet
        latents: Latent
        t: Tensor
        embeddings: Optional[Embeddings] = None
        timestep_cond: Optional[Tensor] = None  # an LCM-distilled UNet's guidance embedding (LCMGuidance)
        cache: Literal["none", "deepcache"] = Field("none", description="none | deepcache")
        refresh: bool = Field(True, description="deepcache: run the whole UNet this step (StepCacheSchedule)")
        features: Optional[Tensor] = Field(None, description="deepcache: the features of the last full step")

    class Outputs(Ports):
        noise_pred: Tensor
        features: Tensor  # deepcache: the features the next steps reuse; empty without a cache

    def run(self, i, ctx):
        import torch

        from nodegraph.models import warm_trace

        x = i.latents  # (B, C, h, w)
        if i.cache != "none":
            from nodegraph.models.deepcache import check_supported

            check_supported(i.unet)
        with torch.inference_mode():  # as no_grad, with no version counters or view tracking: the same kernels
            if i.embeddings is None:
                return {"noise_pred": warm_trace.call(i.unet, x, i.t), "features": torch.empty(0)}
            if i.embeddings.shape[0] == 2 * x.shape[0]:
                x = torch.cat([x, x])  # (2B, C, h, w): unconditional and conditional in one call
            elif i.embeddings.shape[0] != x.shape[0]:
                raise ValueError(f"`embeddings` batch {i.embeddings.shape[0]} does not fit `latents` batch "
                                 f"{x.shape[0]}; it must be equal (no guidance) or twice (guidance)")
            if i.cache == "none":  # many short calls run from a trace, same bits (models/warm_trace.py)
                out = warm_trace.call(i.unet, x, i.t, encoder_hidden_states=i.embeddings, timestep_cond=i.timestep_cond)
                return {"noise_pred": out, "features": torch.empty(0)}
            extra = {} if i.timestep_cond is None else {"timestep_cond": i.timestep_cond}
            return _deepcache_step(i, x, extra, ctx)


def _deepcache_step(i, x, extra, ctx):
    from nodegraph.models import deepcache

    reuse = not i.refresh and i.features is not None and i.features.numel() > 0
    if reuse:
        out, features = deepcache.shallow_forward(i.unet, x, i.t, i.embeddings, i.features, **extra), i.features
    else:
        out, features = deepcache.full_forward(i.unet, x, i.t, i.embeddings, **extra)
    if ctx.hooks:
        ctx.emit(StepCacheDecision(ctx.node_id, i.cache, reused=reuse))
    return {"noise_pred": out, "features": features}
