"""The guided x₀ estimate of an ε- or v-prediction UNet at one σ, as ComfyUI computes it (comfy/samplers.py).

x is in σ-space (x = x₀ + σ·ε); the UNet sees x / √(σ² + 1) and the nearest integer timestep of SD's table;
CFG combines x₀ estimates, x₀_neg + cfg·(x₀_pos − x₀_neg); the negative pass is skipped when cfg is 1.
A v-prediction UNet's x₀ is x / (σ² + 1) − v·σ / √(σ² + 1) (comfy/model_sampling.py `V_PREDICTION`, σ_data 1).
Each prompt may carry a ControlNet chain (nodegraph/comfy/control.py), whose residuals join the UNet call.
"""

from __future__ import annotations


def guided_denoise(unet, x, sigma: float, positive, negative=None, cfg: float = 1.0, positive_pooled=None,
                   negative_pooled=None, prediction: str = "eps", positive_control=None, negative_control=None,
                   positive_size=None, negative_size=None, positive_list=None, negative_list=None, inpaint=None,
                   concat=None):
    """x (B, 4, h, w) at σ → the guided x₀ estimate (B, 4, h, w).

    SDXL UNets also get each prompt's pooled embedding and size conditioning: the prompt's own (`*_size`, from
    CLIPTextEncodeSDXL / …Refiner) or what ComfyUI derives from the latent (comfy/samplers.py
    `encode_model_conds`): time ids (8h, 8w, 0, 0, 8h, 8w). `positive_list` / `negative_list`: a side given as
    area-conditioned entries (nodegraph/comfy/areas.py) instead of one prompt. `inpaint`: ComfyInpaint's mask,
    latents and noise (nodegraph/comfy/inpaint.py); `concat`: extra UNet input channels (an inpainting UNet's).
    """
    import math

    import torch

    from nodegraph.comfy.schedules import sigma_table, timestep_of

    if inpaint is not None:  # VAEEncodeForInpaint's mask: nodegraph/comfy/inpaint.py
        from nodegraph.comfy.inpaint import inpaint_denoise

        def masked(x_, concat_):
            return guided_denoise(unet, x_, sigma, positive, negative, cfg, positive_pooled, negative_pooled,
                                  prediction, positive_control, negative_control, positive_size, negative_size,
                                  positive_list, negative_list, None, concat_)

        return inpaint_denoise(masked, x, sigma, inpaint)
    if positive_list or negative_list:  # area conditioning (ConditioningSetArea / Combine): nodegraph/comfy/areas.py
        from nodegraph.comfy.areas import area_denoise, entry

        if positive_control is not None or negative_control is not None:
            raise ValueError("a ControlNet on area-conditioned prompts (ConditioningSetArea / ConditioningCombine) "
                             "is not covered yet; apply the ControlNet to prompts without areas")
        pos = positive_list or [entry(positive, positive_pooled, positive_size)]
        neg = negative_list or (None if negative is None else [entry(negative, negative_pooled, negative_size)])
        return area_denoise(unet, x, sigma, pos, neg, cfg, prediction)

    t = torch.tensor(float(timestep_of(sigma_table(), sigma)), device=x.device)
    x_in = x / math.sqrt(sigma ** 2 + 1)
    guided = negative is not None and not math.isclose(cfg, 1.0, rel_tol=1e-5)
    conds = [negative, positive] if guided else [positive]
    controls = [negative_control, positive_control] if guided else [positive_control]
    conds = _same_length([c.to(device=x.device, dtype=x.dtype) for c in conds])
    batch = torch.cat([c.expand(x.shape[0], -1, -1) if c.shape[0] == 1 else c for c in conds])  # (nB, T, C)
    extra = {}
    if getattr(unet.config, "addition_embed_type", None) == "text_time":
        pooled = [negative_pooled, positive_pooled] if guided else [positive_pooled]
        if any(p is None for p in pooled):
            raise ValueError("this is an SDXL UNet: its prompts need pooled embeddings (an SDXL CLIP's encoding)")
        n = x.shape[0]
        extra["text_embeds"] = torch.cat([p.to(device=x.device, dtype=x.dtype).expand(n, -1) for p in pooled])
        sizes = [negative_size, positive_size] if guided else [positive_size]
        extra["time_ids"] = _time_ids(unet, x, sizes, pooled[-1].shape[-1])
    with torch.no_grad():
        x_batch = torch.cat([x_in] * len(conds))  # (nB, 4, h, w)
        residuals = _control_residuals(unet, controls, x_batch, t, batch, sigma, extra)
        if concat is not None:  # an inpainting UNet's mask and masked-image latent after x: (nB, 9, h, w)
            x_batch = torch.cat([x_batch, torch.cat([concat.to(x_batch)] * len(conds))], dim=1)
        out = unet(x_batch, t, encoder_hidden_states=batch, **extra, **residuals)
    if prediction == "v":
        denoised = [x / (sigma ** 2 + 1) - v * sigma / math.sqrt(sigma ** 2 + 1) for v in out.chunk(len(conds))]
    else:
        denoised = [x - sigma * e for e in out.chunk(len(conds))]
    if not guided:
        return denoised[0]
    negative_x0, positive_x0 = denoised
    return negative_x0 + (positive_x0 - negative_x0) * cfg


def _time_ids(unet, x, sizes: list, pooled_width: int):
    """SDXL's size ids, one row per prompt (negative first), repeated for each sample: base (height, width,
    crop_h, crop_w, target_height, target_width), a refiner — whose added embedding reads 5 ids — (height, width,
    crop_h, crop_w, aesthetic score) (comfy/model_base.py `SDXL.encode_adm`, `SDXLRefiner.encode_adm`). A
    prompt's own values (a dict from CLIPTextEncodeSDXL / …Refiner) win; otherwise the size is the latent's
    (8h, 8w), crops 0, the target the size, and the score 6 for the positive prompt, 2.5 for the negative."""
    import torch

    c = unet.config
    refiner = (c.projection_class_embeddings_input_dim - pooled_width) // c.addition_time_embed_dim == 5
    rows = []
    for k, size in enumerate(sizes):
        size = size or {}
        height, width = size.get("height", 8 * x.shape[-2]), size.get("width", 8 * x.shape[-1])
        crops = [size.get("crop_h", 0), size.get("crop_w", 0)]
        if refiner:
            negative = len(sizes) == 2 and k == 0
            rows.append([height, width, *crops, size.get("aesthetic_score", 2.5 if negative else 6.0)])
        else:
            rows.append([height, width, *crops, size.get("target_height", height), size.get("target_width", width)])
    return torch.cat([torch.tensor([r], device=x.device, dtype=x.dtype).expand(x.shape[0], -1) for r in rows])


def _control_residuals(unet, controls, x_batch, t, context, sigma: float, extra: dict) -> dict:
    """The UNet's `down_residuals` / `mid_residual` (ControlNets) and `adapter_residuals` (T2I-Adapters) from the
    prompts' ControlNet chains ({} when none acts).

    Prompts sharing one chain (one ControlNetApplyAdvanced on both) run it once over their halves, as
    ComfyUI batches them; a prompt without a chain gets zero residuals in its half."""
    import torch

    from nodegraph.comfy.control import check_family, residuals

    if all(c is None for c in controls):
        return {}
    for control in {id(c): c for c in controls if c is not None}.values():
        check_family(control, unet)
    if all(c is controls[0] for c in controls):
        return residuals(controls[0], x_batch, t, context, sigma, extra, groups=len(controls)) or {}
    halves = []
    for k, (control, x, ctx) in enumerate(zip(controls, x_batch.chunk(len(controls)), context.chunk(len(controls)))):
        part = {name: v.chunk(len(controls))[k] for name, v in extra.items()}
        halves.append((None if control is None else residuals(control, x, t, ctx, sigma, part)) or {})
    names = {name: present[name] for present in halves for name in present}  # one example of each argument
    out = {}
    for name, example in names.items():
        parts = [h.get(name) for h in halves]
        if name == "mid_residual":
            out[name] = torch.cat([torch.zeros_like(example) if p is None else p for p in parts])
        else:
            zeros = [torch.zeros_like(r) for r in example]
            out[name] = [torch.cat(layer) for layer in zip(*(zeros if p is None else p for p in parts))]
    return out


def _same_length(conds):
    """Repeat each (B, T, C) along T to the least common multiple of the lengths (ComfyUI's CONDCrossAttn)."""
    import math

    length = math.lcm(*(c.shape[1] for c in conds))
    return [c.repeat(1, length // c.shape[1], 1) for c in conds]
