"""ComfyUI's ControlNetApplyAdvanced at sampling time: which σ a ControlNet acts on, its hint, its residuals;
T2I-Adapters (which ComfyUI's ControlNetLoader also loads) likewise, their features added in the down blocks.

Facts from ComfyUI (nodes.py `ControlNetApplyAdvanced`, comfy/controlnet.py `ControlNet.get_control` and
`ControlBase.control_merge`, comfy/model_sampling.py `percent_to_sigma`, comfy/utils.py `common_upscale`):

* start/end percents become σ thresholds once per sampling: σ_start = σ(t = (1 − start)·999) (log-σ
  interpolation of SD's table; 0 → +∞), σ_end likewise (1 → 0). A ControlNet runs at σ when
  σ_end ≤ σ ≤ σ_start, so whether a step is controlled depends on its σ, not on its index as in diffusers.
* The hint is the IMAGE center-cropped to the latent's aspect and resized with "nearest-exact" to exactly
  8× the latent (ComfyUI's `compression_ratio`), whatever the image's size.
* The ControlNet reads what the UNet reads: x / √(σ² + 1), the nearest integer timestep, the prompt's tokens
  (and SDXL's pooled text and size ids); its residuals are multiplied by `strength`.
* Chained applies sum their residuals in the order they were applied; one apply to a positive and a negative
  that share the same previous chain is one ControlNet run over both halves of the CFG batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COMPRESSION = 8  # comfy/controlnet.py `ControlBase.compression_ratio` for SD ControlNets
_NEVER = 999999999.9  # percent_to_sigma(0): above every σ


@dataclass(frozen=True)
class ComfyControl:
    """One ControlNetApplyAdvanced of a chain (the earlier ones in `previous`)."""

    controlnet: Any
    image: Any  # (B, 3, H, W) in [0, 1], as the IMAGE input gave it
    strength: float
    start_percent: float
    end_percent: float
    previous: "ComfyControl | None" = None
    # the hint of each latent size, device and dtype: ComfyUI also prepares it once, not at every step
    hints: dict = field(default_factory=dict, compare=False, repr=False)

    def hint_for(self, x_in):
        """The hint for latents like x_in (N, C, h, w), made at the first step that needs it."""
        key = (*x_in.shape[-2:], x_in.device, x_in.dtype)
        if key not in self.hints:
            self.hints[key] = hint(self.image, *x_in.shape[-2:]).to(device=x_in.device, dtype=x_in.dtype)
        return self.hints[key]

    def chain(self) -> list["ComfyControl"]:
        """Every apply of the chain, first applied first."""
        return ([] if self.previous is None else self.previous.chain()) + [self]


def percent_to_sigma(percent: float) -> float:
    """ComfyUI's `ModelSamplingDiscrete.percent_to_sigma`: the σ at (1 − percent) of the 999 timesteps."""
    from nodegraph.comfy.schedules import sigma_at, sigma_table

    if percent <= 0.0:
        return _NEVER
    if percent >= 1.0:
        return 0.0
    return float(sigma_at(sigma_table(), (1.0 - percent) * 999.0))


def acts_at(control: ComfyControl, sigma: float) -> bool:
    """Whether this apply runs at σ (compared in float32, as ComfyUI compares its σ tensor)."""
    import torch

    s = torch.tensor(sigma, dtype=torch.float32)
    return not (bool(s > percent_to_sigma(control.start_percent)) or bool(s < percent_to_sigma(control.end_percent)))


def hint(image, latent_height: int, latent_width: int):
    """(B, 3, H, W) image → (B, 3, 8h, 8w): center-cropped to the latent's aspect, nearest-exact resized."""
    from nodegraph.comfy.resize import common_upscale

    return common_upscale(image, COMPRESSION * latent_width, COMPRESSION * latent_height, "nearest-exact", "center")


def residuals(control: ComfyControl, x_in, t, context, sigma: float, added: dict, groups: int = 1):
    """The UNet's residual arguments from the chain on x_in (N, C, h, w) at σ — `down_residuals` and
    `mid_residual` (ControlNets), `adapter_residuals` (T2I-Adapters) — or None when no apply acts at σ.

    `groups` is how many CFG halves x_in holds: a batch-1 image serves each sample of each half."""
    out = {}
    for entry in control.chain():
        if not acts_at(entry, sigma):
            continue
        image = _broadcast(entry.hint_for(x_in), x_in.shape[0], groups)
        if getattr(entry.controlnet, "is_t2i_adapter", False):
            features = [f * entry.strength for f in adapter_features(entry, image)]
            out["adapter_residuals"] = _sum(out.get("adapter_residuals"), features)
            continue
        d, m = entry.controlnet(x_in, t, context, image, entry.strength, **added)
        out["down_residuals"] = _sum(out.get("down_residuals"), d)
        out["mid_residual"] = m if "mid_residual" not in out else out["mid_residual"] + m
    return out or None


def _sum(earlier, later):
    return later if earlier is None else [a + b for a, b in zip(earlier, later)]


def adapter_features(entry: ComfyControl, image):
    """A T2I-Adapter's features of its hint (N, 3, 8h, 8w), computed once per hint (comfy/controlnet.py
    `T2IAdapter.get_control` keeps them for every step): a one-channel adapter reads the channels' mean."""
    key = ("t2i", *image.shape, image.device, image.dtype)
    if key not in entry.hints:
        if entry.controlnet.in_channels == 1:
            image = image.mean(dim=1, keepdim=True)  # (N, 1, 8h, 8w)
        entry.hints[key] = entry.controlnet(image)
    return entry.hints[key]


def _broadcast(image, batch: int, groups: int):
    """ComfyUI's `broadcast_image_to`: one image for all; else the first batch/groups images, cycled, per half."""
    import torch

    if image.shape[0] == 1:
        return image.expand(batch, -1, -1, -1)
    per_half = batch // groups
    picked = image[:per_half]
    if picked.shape[0] < per_half:
        picked = torch.cat([picked] * (per_half // picked.shape[0]) + [picked[:per_half % picked.shape[0]]])
    return picked if picked.shape[0] == batch else torch.cat([picked] * groups)


def check_family(control: ComfyControl, unet) -> None:
    """Refuse a ControlNet made for another model family than the sampled UNet, before its first step."""
    from nodegraph.models.controlnet import check_family as check

    for entry in control.chain():
        if getattr(entry.controlnet, "is_t2i_adapter", False):
            _check_adapter(entry.controlnet, unet)
        else:
            check(entry.controlnet, unet)


def _check_adapter(adapter, unet) -> None:
    """An SD1.x adapter's four feature widths must be the UNet's four down-block widths."""
    widths = list(getattr(unet.config, "block_out_channels", []))
    if widths != adapter.channels:
        raise ValueError(f"this T2I-Adapter's features have {adapter.channels} channels, but the UNet's down blocks "
                         f"have {widths}: use a T2I-Adapter made for this model family (SD1.x adapters for SD1.x)")
