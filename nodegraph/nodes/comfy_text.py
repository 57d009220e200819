"""ComfyUI's CLIPTextEncode as a node: its `(word:1.2)` weighting rule and 75-token chunks."""

from __future__ import annotations

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Embeddings, TextEncoder, Tokenizer


@node("ComfyTextEncode", version=1)
class ComfyTextEncode(Node):
    """Encode a prompt as ComfyUI does (see nodegraph/comfy/text.py and docs/comfyui.md).

    `(word)` weighs ×1.1 per level, `(word:1.2)` sets the weight, `[word]` is plain text; weighted tokens move
    relative to the empty prompt's encoding. Long prompts are encoded in 77-token chunks, concatenated.
    `stop_at_clip_layer` is CLIPSetLastLayer's: −1 the last layer, −2 the one before (diffusers' clip_skip 1).
    """

    class Inputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        text: str = ""
        stop_at_clip_layer: int = Field(-1, ge=-24, le=-1, description="CLIPSetLastLayer's value: -1 = last layer")

    class Outputs(Ports):
        embeddings: Embeddings

    def run(self, i, ctx):
        from nodegraph.comfy.text import encode

        hidden = encode(i.text_encoder, i.tokenizer, i.text, -i.stop_at_clip_layer - 1)
        return {"embeddings": hidden.to(dtype=ctx.dtype, device=ctx.device)}  # (1, 77·chunks, C)
