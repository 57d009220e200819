"""Area conditioning as ComfyUI samples it (comfy/samplers.py `get_area_and_mult`, `calc_cond_batch`).

A prompt side (positive or negative) may be a list of entries, each a prompt encoding with an optional area
(h, w, y, x in latent cells: ConditioningSetArea's pixels // 8) and a strength. At each model evaluation:
* each entry sees x cut to its area (its size clipped to the latent), and gives its x₀ estimate there;
* its weight is `strength` over the area, feathered where the area does not touch the latent's border: the
  r = min(8, side // 4) rows (columns) nearest such an edge are scaled by 1/r, 2/r, … r/r from the edge in;
* the side's x₀ is Σ weight·x₀ / (Σ weight + 1e-37) per latent cell (0 where no entry reaches);
* CFG then combines the two sides as for plain prompts (negative + cfg·(positive − negative); cfg 1 skips the
  negative side). An entry with no area covers the whole latent with weight `strength`.
SDXL's size ids are the whole latent's (8·H, 8·W), not the area's, as ComfyUI's `encode_model_conds` gives them.
"""

from __future__ import annotations

FUZZ = 8  # ComfyUI's feathering width, in latent cells


def entry(embeddings, pooled=None, size=None, area=None, strength: float = 1.0) -> dict:
    return {"embeddings": embeddings, "pooled": pooled, "size": size, "area": area, "strength": strength}


def area_and_weight(x, area, strength: float):
    """(the crop of x (B, C, h, w) the entry sees, its (y, x, h, w) placement, its weight of the crop's shape)."""
    import torch

    H, W = x.shape[-2:]
    if area is None:
        return x, (0, 0, H, W), torch.full_like(x, strength)
    h, w, y, x0 = area
    h, w = min(H - y, h), min(W - x0, w)
    if h <= 0 or w <= 0:
        raise ValueError(f"an area at ({8 * x0}, {8 * y}) px lies outside the {8 * W}×{8 * H} px latent; make the "
                         f"latent larger or move the area (ConditioningSetArea's x, y)")
    crop = x[..., y:y + h, x0:x0 + w]
    weight = torch.full_like(crop, strength)
    for dim, (offset, side, full) in enumerate(((y, h, H), (x0, w, W))):
        axis = dim + 2
        r = min(FUZZ, weight.shape[axis] // 4)
        for t in range(r):
            ramp = (t + 1) / r
            if offset != 0:
                weight.narrow(axis, t, 1).mul_(ramp)
            if offset + side < full:
                weight.narrow(axis, side - 1 - t, 1).mul_(ramp)
    return crop, (y, x0, h, w), weight


def side_denoise(x, entries: list[dict], single):
    """One prompt side's x₀ (B, C, H, W): the weighted mean of its entries' x₀ over their areas.
    `single(x_crop, entry)` evaluates the model for one entry on its crop."""
    import torch

    out = torch.zeros_like(x)
    counts = torch.full_like(x, 1e-37)
    for e in entries:
        crop, (y, x0, h, w), weight = area_and_weight(x, e.get("area"), float(e.get("strength", 1.0)))
        out[..., y:y + h, x0:x0 + w] += single(crop, e) * weight
        counts[..., y:y + h, x0:x0 + w] += weight
    return out / counts


def area_denoise(unet, x, sigma: float, positive: list[dict], negative: list[dict] | None, cfg: float,
                 prediction: str = "eps"):
    """The guided x₀ of area-conditioned prompt lists (see the module docstring)."""
    import math

    from nodegraph.comfy.guidance import guided_denoise

    full = {"height": 8 * x.shape[-2], "width": 8 * x.shape[-1]}

    def single(crop, e):
        size = dict(full, **(e.get("size") or {}))
        model = unet
        if e.get("gligen"):  # GLIGENTextBoxApply's boxes, relative to this crop: nodegraph/comfy/gligen.py
            from nodegraph.comfy.gligen import grounded

            model = grounded(unet, e["gligen"], crop, area=e.get("area") is not None)
        return guided_denoise(model, crop, sigma, e["embeddings"], None, 1.0, e.get("pooled"), None, prediction,
                              positive_size=size)

    positive_x0 = side_denoise(x, positive, single)
    if not negative or math.isclose(cfg, 1.0, rel_tol=1e-5):
        return positive_x0
    negative_x0 = side_denoise(x, negative, single)
    return negative_x0 + (positive_x0 - negative_x0) * cfg
