"""The block-skipping caches (first_block, mag) on Flux's two stacks.

Flux's main stack is two lists: the double-stream blocks (`transformer_blocks`: (img, txt, c, rope) → (txt, img))
then the single-stream ones (`single_transformer_blocks`: h = [txt; img] → h). As diffusers 0.42.1's hooks do on
FluxTransformer2DModel, the first block of the stack is the first double block, the tail is the last block of the
last non-empty stack, and the decision and MagCache's residual read the image stream only:

- first_block (models/first_block_cache.py's state): the first block's image residual decides; a reused call adds
  the image and the text residuals the other blocks added on the last full call to the first block's outputs;
- mag (mag_cache.py's state): a reused call returns the stack's image input plus the last full call's image
  residual and leaves the text stream as it came (the final layer reads the image stream only).

Shapes: img (B, S_img, D), txt (B, S_txt, D), h (B, S_txt + S_img, D).
"""

from __future__ import annotations

from torch import nn


def is_flux(model: nn.Module) -> bool:
    """Both of Flux's stacks (SD3 has `transformer_blocks` only, and a last block without a text output)."""
    return all(isinstance(getattr(model, name, None), nn.ModuleList)
               for name in ("transformer_blocks", "single_transformer_blocks"))


def stack(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """Every main block in calling order with whether it is a double-stream block."""
    return [(b, True) for b in model.transformer_blocks] + [(b, False) for b in model.single_transformer_blocks]


def _passed(is_double: bool):
    """A skipped block: its input unchanged, in the block's own output form."""
    if is_double:
        return lambda img, txt, *args, **kwargs: (txt, img)
    return lambda h, *args, **kwargs: h


def _streams(out, is_double: bool, text_tokens: int):
    """(img, txt) of a block's output."""
    if is_double:
        return out[1], out[0]
    return out[:, text_tokens:], out[:, :text_tokens]


def first_block_pairs(cache, model: nn.Module) -> list[tuple[nn.Module, object]]:
    """(block, forward) for one call under `cache` (a FirstBlockCache; its head_output and tail_residual hold
    (img, txt) pairs here)."""
    (head, _), *rest = stack(model)
    head_forward = head.forward  # the class's, taken before the pairs replace it

    def lead(img, txt, *args, **kwargs):
        out_txt, out_img = head_forward(img, txt, *args, **kwargs)  # (B, S_txt, D), (B, S_img, D)
        residual = out_img - img
        cache.compute = cache._decide(residual)
        cache.decisions.append(cache.compute)
        if not cache.compute:
            res_img, res_txt = cache.tail_residual
            return res_txt + out_txt, res_img + out_img
        cache.head_output, cache.head_residual = (out_img, out_txt), residual
        return out_txt, out_img

    def follower(block: nn.Module, is_double: bool, is_tail: bool):
        skip, forward = _passed(is_double), block.forward

        def run(*args, **kwargs):
            if not cache.compute:
                return skip(*args, **kwargs)
            out = forward(*args, **kwargs)
            if is_tail:
                head_img, head_txt = cache.head_output
                img, txt = _streams(out, is_double, head_txt.shape[1])
                cache.tail_residual = (img - head_img, txt - head_txt)
            return out
        return run

    return [(head, lead)] + [(b, follower(b, d, k == len(rest) - 1)) for k, (b, d) in enumerate(rest)]


def mag_pairs(cache, model: nn.Module, full: bool) -> list[tuple[nn.Module, object]]:
    """(block, forward) for one call under `cache` (a MagCache): a full call keeps the stack's image input and
    records the tail's image residual; a reused call adds the last residual to the image input."""
    (head, _), *rest = stack(model)
    tail, tail_double = rest[-1]
    if not full:
        def reuse(img, txt, *args, **kwargs):
            return txt, img + cache.residual
        return [(head, reuse)] + [(b, _passed(d)) for b, d in rest]

    head_forward, tail_forward = head.forward, tail.forward  # the classes', taken before the pairs replace them

    def keep_input(img, txt, *args, **kwargs):
        cache.stack_input = img  # (B, S_img, D)
        return head_forward(img, txt, *args, **kwargs)

    def record(*args, **kwargs):
        out = tail_forward(*args, **kwargs)
        image_tokens = cache.stack_input.shape[1]
        cache._record(out[1] if tail_double else out[:, -image_tokens:])
        return out

    return [(head, keep_input), (tail, record)]
