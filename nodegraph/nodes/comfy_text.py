"""ComfyUI's CLIPTextEncode as a node: its `(word:1.2)` weighting rule and 75-token chunks."""

from __future__ import annotations

from typing import Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Embeddings, TextEncoder, Tokenizer


@node("ComfyTextEncode", version=1)
class ComfyTextEncode(Node):
    """Encode a prompt as ComfyUI does (see nodegraph/comfy/text.py and docs/comfyui.md).

    `(word)` weighs ×1.1 per level, `(word:1.2)` sets the weight, `[word]` is plain text; weighted tokens move
    relative to the empty prompt's encoding. Long prompts are encoded in 77-token chunks, concatenated.
    `stop_at_clip_layer` is CLIPSetLastLayer's: −1 the last layer, −2 the one before (diffusers' clip_skip 1).
    With `text_encoder_2` (SDXL) the two encoders' penultimate states are concatenated and `pooled` is bigG's.
    """

    class Inputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        text_encoder_2: Optional[TextEncoder] = Field(None, description="SDXL: OpenCLIP bigG (with projection)")
        tokenizer_2: Optional[Tokenizer] = None
        text: str = ""
        stop_at_clip_layer: int = Field(-1, ge=-24, le=-1, description="CLIPSetLastLayer's value: -1 = last layer")

    class Outputs(Ports):
        embeddings: Embeddings
        pooled: Optional[Embeddings] = None

    def run(self, i, ctx):
        import torch

        from nodegraph.comfy.text import encode

        if i.text_encoder_2 is None:
            hidden, _ = encode(i.text_encoder, i.tokenizer, i.text, -i.stop_at_clip_layer - 1)
            return {"embeddings": hidden.to(dtype=ctx.dtype, device=ctx.device), "pooled": None}  # (1, 77·n, C)
        if i.stop_at_clip_layer != -1:
            raise ValueError("`stop_at_clip_layer`: CLIPSetLastLayer on an SDXL CLIP is not covered yet")
        # SDXL (comfy/sdxl_clip.py): both encoders' penultimate hidden states, no final norm, side by side;
        # bigG pads with 0 and gives the pooled embedding.
        if i.tokenizer_2 is None:
            raise ValueError("`tokenizer_2` is needed with `text_encoder_2`")
        l_hidden, _ = encode(i.text_encoder, i.tokenizer, i.text, 0, "penultimate")
        g_hidden, pooled = encode(i.text_encoder_2, i.tokenizer_2, i.text, 0, "penultimate", pad=0)
        length = min(l_hidden.shape[1], g_hidden.shape[1])
        hidden = torch.cat([l_hidden[:, :length], g_hidden[:, :length]], dim=-1)  # (1, 77·n, C_l + C_g)
        return {"embeddings": hidden.to(dtype=ctx.dtype, device=ctx.device),
                "pooled": pooled.to(dtype=ctx.dtype, device=ctx.device)}  # (1, P)
