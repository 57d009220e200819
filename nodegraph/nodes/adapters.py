"""Adapter nodes: LoRA and textual-inversion embeddings, returning patched copies of the model handles.

The handles they are given (usually straight from the component cache) are never changed: a patched handle
shares every untouched weight with the cached model, so other runs and graphs in the process are unaffected and
dropping it costs nothing. Chain LoadLoRA nodes to stack several LoRAs.
"""

from __future__ import annotations

from typing import Annotated, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import FilePath, Role, TextEncoder, Tokenizer, Transformer, UNet

STRENGTH = dict(ge=-10.0, le=10.0)  # beyond ±10 a LoRA only produces noise; refuse it at validation time


@node("LoadLoRA", version=1)
class LoadLoRA(Node):
    """Apply a LoRA `.safetensors` file (kohya/A1111 or diffusers/peft format) to a UNet or a diffusion
    transformer (SD3) and/or text encoder(s) (`text_encoder_2`: SDXL's and SD3's second one).

    `strength_model` scales the UNet's or transformer's part, `strength_clip` the text-encoder part (diffusers'
    `set_adapters` weight; A1111's `<lora:name:w>` sets both to w). An empty `lora` passes the handles through
    unchanged.
    `fuse` adds the LoRA into copies of the touched weights (no per-step cost); `fuse: false` runs it beside them,
    peft's exact arithmetic. A LoRA with layers that match nothing in the model is an error, never a silent no-op.
    """

    class Inputs(Ports):
        unet: Optional[UNet] = None
        transformer: Optional[Transformer] = None
        text_encoder: Optional[TextEncoder] = None
        text_encoder_2: Optional[TextEncoder] = None
        lora: Annotated[FilePath, Role("lora")] = Field("", description="path of a LoRA .safetensors file; "
                                                                         "empty = none")
        strength_model: Annotated[float, Role("lora_scale")] = Field(1.0, **STRENGTH, description="UNet strength")
        strength_clip: float = Field(1.0, **STRENGTH, description="text-encoder strength")
        fuse: bool = Field(True, description="fold the LoRA into copies of the weights (fast steps)")

    class Outputs(Ports):
        unet: Optional[UNet] = None
        transformer: Optional[Transformer] = None
        text_encoder: Optional[TextEncoder] = None
        text_encoder_2: Optional[TextEncoder] = None

    @classmethod
    def model_reads(cls, known):
        """The LoRA file, so the memory plan counts what the patched models keep while they are held: its factors
        (the fused copies too when no budget asks otherwise; under one they are fused at call time)."""
        strengths = (known.get("strength_model", 1.0), known.get("strength_clip", 1.0))
        return [(known["lora"], "lora", {})] if known.get("lora") and any(strengths) else []

    def run(self, i, ctx):
        from nodegraph.models.adapters.lora import apply_lora, match_layers, read_lora

        if not i.lora:
            return {"unet": i.unet, "transformer": i.transformer, "text_encoder": i.text_encoder,
                    "text_encoder_2": i.text_encoder_2}
        lora = read_lora(i.lora)
        if i.transformer is not None:  # kohya names the transformer's layers after the family's original code
            from nodegraph.models.adapters.transformer_lora import for_transformer

            lora = for_transformer(lora, i.transformer)
        targets = [("unet", i.unet, i.strength_model, "this UNet"),
                   ("transformer", i.transformer, i.strength_model, "this transformer"),
                   ("text_encoder", i.text_encoder, i.strength_clip, "this text encoder"),
                   ("text_encoder_2", i.text_encoder_2, i.strength_clip, "this second text encoder")]
        missing = [part for part, model, strength, _ in targets
                   if part in lora.parts and model is None and strength != 0]
        if missing:  # never drop part of a LoRA silently
            raise ValueError(f"{i.lora} has {' and '.join(missing)} layers, but no `{missing[0]}` is connected to "
                             f"this node; connect it, or set its strength to 0 to leave that part out")
        out = {}
        for part, model, strength, what in targets:
            if model is None:
                out[part] = model
                continue
            matched = match_layers(lora, part, model, what)
            out[part] = apply_lora(model, matched, strength, i.fuse, _fuse_on_call(ctx, matched) if i.fuse else False)
        return out


def _fuse_on_call(ctx, matched) -> bool:
    """Under `--max-memory`, fuse at each call (the same numbers, no copies) when the fused copies of the touched
    layers would not fit what the budget leaves; streamed layers always fuse at call time (docs/memory.md)."""
    if ctx.mode.max_memory is None:
        return False
    from nodegraph.memory.usage import headroom
    from nodegraph.models.adapters.streamed_lora import held_copy_bytes

    return held_copy_bytes(matched) > headroom(ctx.device, ctx.mode.max_memory)


@node("LoadEmbedding", version=1)
class LoadEmbedding(Node):
    """Add a textual-inversion embedding to a text encoder and tokenizer: write its `token` in the prompt to use it.

    `token` defaults to the token the file names (diffusers' files) or else the file's name without extension
    (A1111's convention). An n-vector embedding adds `token`, `token_1`, … like diffusers' `load_textual_inversion`.
    SDXL files (`clip_l` + `clip_g`) need SDXL's second encoder and tokenizer too (`text_encoder_2`,
    `tokenizer_2`). An empty `embedding` passes the handles through unchanged.
    """

    class Inputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        text_encoder_2: Optional[TextEncoder] = None
        tokenizer_2: Optional[Tokenizer] = None
        embedding: Annotated[FilePath, Role("embedding")] = Field("", description="path of an embedding "
                                                                                   ".safetensors (or .pt with allow_pickle)")
        token: str = Field("", description="the word that stands for it in prompts; empty = the file's own")
        allow_pickle: bool = Field(False, description="allow A1111 .pt files (loaded with weights_only=True)")

    class Outputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        text_encoder_2: Optional[TextEncoder] = None
        tokenizer_2: Optional[Tokenizer] = None

    def run(self, i, ctx):
        import os

        from nodegraph.models.adapters.textual_inversion import add_embedding, read_embedding

        out = {"text_encoder": i.text_encoder, "tokenizer": i.tokenizer, "text_encoder_2": i.text_encoder_2,
               "tokenizer_2": i.tokenizer_2}
        if not i.embedding:
            return out
        named, vectors = read_embedding(i.embedding, i.allow_pickle)
        token = i.token or named or os.path.splitext(os.path.basename(i.embedding))[0]
        if "" in vectors:
            out["text_encoder"], out["tokenizer"] = add_embedding(i.text_encoder, i.tokenizer, token, vectors[""],
                                                                  i.embedding)
            return out
        if i.text_encoder_2 is None or i.tokenizer_2 is None:
            raise ValueError(f"{i.embedding} is an SDXL embedding (clip_l + clip_g); connect SDXL's "
                             f"`text_encoder_2` and `tokenizer_2` too, or use an embedding made for this model")
        out["text_encoder"], out["tokenizer"] = add_embedding(i.text_encoder, i.tokenizer, token, vectors["clip_l"],
                                                              f"{i.embedding} (clip_l)")
        out["text_encoder_2"], out["tokenizer_2"] = add_embedding(i.text_encoder_2, i.tokenizer_2, token,
                                                                  vectors["clip_g"], f"{i.embedding} (clip_g)")
        return out
