"""GLIGEN text boxes as ComfyUI applies them (nodes.py `GLIGENTextBoxApply`, comfy/gligen.py `Gligen.set_position`,
comfy/samplers.py `get_area_and_mult`); the model itself is nodegraph/models/gligen.py.

* GLIGENTextBoxApply encodes the box's text with the prompt's CLIP and keeps its pooled output, unprojected (the
  final-normed state at the first end token of the first 77-token chunk), and stores the box in latent cells,
  (pooled, height // 8, width // 8, y // 8, x // 8), on every entry of the conditioning; applying it again appends
  a box.
* At every model evaluation of an entry that carries boxes (all steps: no σ range), each box becomes
  (x / w, y / h, (x + width) / w, (y + height) / h) of the w × h latent cells the entry is evaluated on (its area's
  crop when ConditioningSetArea gave it one); the boxes are padded to 30 with mask 0 and turned into grounding
  tokens, which the fusers read in every transformer block. A box reaching past the latent's edge keeps its
  coordinates above 1, as in ComfyUI; a box starting outside it (or outside the area) is refused here,
  where ComfyUI would feed coordinates above 1.
* Only entries that carry boxes are grounded: a negative prompt without GLIGENTextBoxApply is evaluated by the
  plain UNet (diffusers' GLIGEN pipeline instead runs the fusers there with null tokens).
"""

from __future__ import annotations


def box_entry(pooled, width: int, height: int, x: int, y: int) -> tuple:
    """GLIGENTextBoxApply's stored box: (pooled (P,), height // 8, width // 8, y // 8, x // 8)."""
    return (pooled, height // 8, width // 8, y // 8, x // 8)


def latent_boxes(boxes: list[tuple], h: int, w: int, area: bool = False) -> list[tuple[float, float, float, float]]:
    """The stored boxes → (x1, y1, x2, y2) relative to an h × w latent (Gligen.set_position's arithmetic); `area`:
    the latent is the crop of the prompt's ConditioningSetArea area (named in the refusal)."""
    out = []
    for _, bh, bw, by, bx in boxes:
        if bx >= w or by >= h:
            where, fix = ((f"the area ({8 * w}×{8 * h} px) its prompt is set to (boxes are placed from the area's "
                           f"corner)", "inside the area or make the area larger") if area else
                          (f"the {8 * w}×{8 * h} px image", "inside the image or make the latent larger"))
            raise ValueError(f"a GLIGEN box at ({8 * bx}, {8 * by}) px lies outside {where}; move the box "
                             f"(GLIGENTextBoxApply's x, y) {fix}")
        out.append((bx / w, by / h, (bx + bw) / w, (by + bh) / h))
    return out


def grounded(unet, gligen: dict, x, area: bool = False):
    """The UNet grounded by an entry's boxes ({"model": GLIGEN, "boxes": [stored box, …]}) for x (B, C, h, w), the
    whole latent or (`area`) the crop of the entry's area."""
    from nodegraph.models.gligen import grounded_unet, pad_objects

    model = gligen["model"]
    h, w = x.shape[-2:]
    boxes, masks, phrases = pad_objects(latent_boxes(gligen["boxes"], h, w, area), [b[0] for b in gligen["boxes"]],
                                        model.phrase_dim)
    return grounded_unet(unet, model, model.tokens(boxes, masks, phrases))  # tokens (1, 30, D)


def pooled_text(text_encoder, tokenizer, text: str):
    """ComfyUI's `encode_from_tokens(…, return_pooled="unprojected")` of CLIP-L: (P,)."""
    import torch

    from nodegraph.comfy.text import weighted_chunks

    ids = torch.tensor([[t for t, _ in weighted_chunks(text, tokenizer)[0]]])  # (1, 77): the first chunk
    with torch.no_grad():
        out = text_encoder(ids.to(text_encoder.device))
    if getattr(out, "pooler_output", None) is None:
        raise ValueError("GLIGEN boxes need a CLIP-L text encoder with its pooled output (SD1.x checkpoints)")
    return out.pooler_output[0].float().cpu()  # (P,)
