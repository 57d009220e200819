"""Text nodes: prompts → CLIP embeddings, and the batch the classifier-free guidance step expects."""

from __future__ import annotations

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Embeddings, TextEncoder, Tokenizer


@node("TextEncode", version=1)
class TextEncode(Node):
    """Encode a prompt with CLIP: tokens padded to the tokenizer's max length, the last hidden state.

    `batch_size` repeats the embedding once per image, as diffusers' `num_images_per_prompt` does.
    """

    class Inputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        prompt: str = Field("", description="the text; empty gives the unconditional embedding")
        batch_size: int = Field(1, ge=1, le=64, description="images per prompt")

    class Outputs(Ports):
        embeddings: Embeddings

    def run(self, i, ctx):
        import torch

        tok = i.tokenizer
        ids = tok([i.prompt], padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids  # (1, 77)
        encoder = i.text_encoder
        with torch.no_grad():
            hidden = encoder(ids.to(encoder.device))[0]  # (1, 77, C) after the final layer norm
        hidden = hidden.to(dtype=ctx.dtype, device=ctx.device)
        return {"embeddings": hidden.repeat_interleave(i.batch_size, dim=0)}  # (B, 77, C)


@node("CFGEmbeddings", version=1)
class CFGEmbeddings(Node):
    """Stack unconditional and conditional embeddings into one batch for classifier-free guidance.

    With `guidance_scale` ≤ 1 guidance is off (as in diffusers) and only the conditional half is kept, so the
    UNet runs on half the batch.
    """

    class Inputs(Ports):
        cond: Embeddings
        uncond: Embeddings
        guidance_scale: float = Field(7.5, ge=0.0, le=100.0)

    class Outputs(Ports):
        embeddings: Embeddings

    def run(self, i, ctx):
        import torch

        if i.guidance_scale <= 1.0:
            return {"embeddings": i.cond}
        return {"embeddings": torch.cat([i.uncond, i.cond])}  # (2B, 77, C): unconditional first
