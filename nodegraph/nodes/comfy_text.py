"""ComfyUI's CLIPTextEncode as a node: its `(word:1.2)` weighting rule and 75-token chunks."""

from __future__ import annotations

from typing import Any, Literal, Optional

from nodegraph.core import Field, Node, Ports, node
from nodegraph.core.types import Embeddings, TextEncoder, Tokenizer


@node("ComfyTextEncode", version=1)
class ComfyTextEncode(Node):
    """Encode a prompt as ComfyUI does (see nodegraph/comfy/text.py and docs/comfyui.md).

    `(word)` weighs ×1.1 per level, `(word:1.2)` sets the weight, `[word]` is plain text; weighted tokens move
    relative to the empty prompt's encoding. Long prompts are encoded in 77-token chunks, concatenated.
    `family` is ComfyUI's CLIP of the checkpoint (comfy/supported_models.py), which sets the layer read and the
    padding: sd1 CLIP-L's last layer, normed, EOS-padded; sd2 OpenCLIP-H's penultimate, normed, 0-padded; sdxl
    CLIP-L's and bigG's penultimate, un-normed, side by side, with bigG's pooled embedding; sdxl_refiner bigG's
    alone (`text_encoder` is bigG). `stop_at_clip_layer` is CLIPSetLastLayer's: −1 the last layer of the file's
    encoder, −2 the one before; unset, the family's default. An empty `family` (graphs imported before it
    existed) reads sd1, or sdxl with `text_encoder_2`, where −1 meant the default.

    CLIPTextEncodeSDXL's inputs: `text_l` is CLIP-L's own text (unset: `text`, which bigG reads), the shorter
    encoding padded with empty-prompt chunks; `width` … `target_height` (and a refiner's `aesthetic_score`)
    become the prompt's own size ids, output as `size` (unset: the latent's, at sampling).

    `embedding:NAME` words read textual-inversion files from `embedding_folders` by ComfyUI's rules
    (nodegraph/comfy/embeddings.py: with or without the extension; a missing file drops the word with a
    warning); pickled files (.pt) only with `allow_pickle`. No folders: the words are plain text.
    """

    class Inputs(Ports):
        text_encoder: TextEncoder
        tokenizer: Tokenizer
        text_encoder_2: Optional[TextEncoder] = Field(None, description="SDXL: OpenCLIP bigG (with projection)")
        tokenizer_2: Optional[Tokenizer] = None
        text: str = ""
        family: Literal["", "sd1", "sd2", "sdxl", "sdxl_refiner"] = ""
        stop_at_clip_layer: Optional[int] = Field(None, ge=-48, le=-1,
                                                  description="CLIPSetLastLayer's value: -1 = last layer")
        clip_layers: Optional[int] = Field(None, ge=1, le=64, description="the file's text encoder layer count "
                                           "when nodegraph loads fewer (SD 2.x: 24 in the file, 23 loaded)")
        text_l: Optional[str] = Field(None, description="SDXL: CLIP-L's own text (CLIPTextEncodeSDXL's text_l)")
        width: Optional[int] = Field(None, ge=0, le=16384, description="SDXL: size ids of this prompt")
        height: Optional[int] = Field(None, ge=0, le=16384)
        crop_w: Optional[int] = Field(None, ge=0, le=16384)
        crop_h: Optional[int] = Field(None, ge=0, le=16384)
        target_width: Optional[int] = Field(None, ge=0, le=16384)
        target_height: Optional[int] = Field(None, ge=0, le=16384)
        aesthetic_score: Optional[float] = Field(None, ge=0.0, le=1000.0, description="SDXL refiner: the score")
        embedding_folders: list[str] = Field(default_factory=list,
                                             description="ComfyUI's embeddings/ folders, for `embedding:NAME`")
        allow_pickle: bool = Field(False, description="read .pt/.bin embeddings (torch.load weights_only=True)")

    class Outputs(Ports):
        embeddings: Embeddings
        pooled: Optional[Embeddings] = None
        size: Optional[Any] = None

    def run(self, i, ctx):
        import torch

        from nodegraph.comfy.text import encode, layer_choice

        family = i.family or ("sd1" if i.text_encoder_2 is None else "sdxl")
        layer = i.stop_at_clip_layer
        if not i.family and family == "sdxl" and layer == -1:
            layer = None  # the meaning of −1 before `family`: SDXL's default
        if layer is None:
            layer = -1 if family == "sd1" else -2

        def encoded(encoder, tokenizer, norm, pad, file_layers=None, text=None, key=""):
            skip, kind = layer_choice(layer, encoder.config.num_hidden_layers, file_layers, norm)
            text = i.text if text is None else text
            found = None
            if i.embedding_folders and "embedding:" in text:
                from nodegraph.comfy.embeddings import PromptEmbeddings

                found = PromptEmbeddings(encoder, tokenizer, i.embedding_folders, key, i.allow_pickle, ctx.node_id)
            return encode(encoder, tokenizer, text, skip, kind, pad, found)

        names = ("width", "height", "crop_w", "crop_h", "target_width", "target_height", "aesthetic_score")
        size = {name: getattr(i, name) for name in names if getattr(i, name) is not None} or None

        if family in ("sd1", "sd2"):
            hidden, _ = encoded(i.text_encoder, i.tokenizer, True, 0 if family == "sd2" else None, i.clip_layers)
            return {"embeddings": hidden.to(dtype=ctx.dtype, device=ctx.device), "pooled": None,
                    "size": size}  # (1, 77·n, C)
        if family == "sdxl_refiner":
            hidden, pooled = encoded(i.text_encoder, i.tokenizer, False, 0, key="clip_g")
        else:
            # SDXL (comfy/sdxl_clip.py): both encoders' hidden states, no final norm, side by side; bigG pads
            # with 0 and gives the pooled embedding.
            if i.text_encoder_2 is None or i.tokenizer_2 is None:
                raise ValueError("`text_encoder_2`, `tokenizer_2`: an SDXL CLIP has two encoders; give both")
            l_hidden, _ = encoded(i.text_encoder, i.tokenizer, False, None, text=i.text_l, key="clip_l")
            g_hidden, pooled = encoded(i.text_encoder_2, i.tokenizer_2, False, 0, key="clip_g")
            if i.text_l is not None:  # CLIPTextEncodeSDXL: the shorter side gets empty-prompt chunks
                l_hidden, g_hidden = (_pad_chunks(l_hidden, lambda: encoded(i.text_encoder, i.tokenizer, False,
                                                                            None, text="")[0], g_hidden.shape[1]),
                                      _pad_chunks(g_hidden, lambda: encoded(i.text_encoder_2, i.tokenizer_2, False,
                                                                            0, text="")[0], l_hidden.shape[1]))
            length = min(l_hidden.shape[1], g_hidden.shape[1])
            hidden = torch.cat([l_hidden[:, :length], g_hidden[:, :length]], dim=-1)  # (1, 77·n, C_l + C_g)
        if pooled is None:
            raise ValueError("`text_encoder`: an SDXL CLIP's bigG must have its text projection (pooled output)")
        return {"embeddings": hidden.to(dtype=ctx.dtype, device=ctx.device),
                "pooled": pooled.to(dtype=ctx.dtype, device=ctx.device), "size": size}  # (1, P)


def _pad_chunks(hidden, empty, length: int):
    """(1, T, C) → (1, ≥ length, C): empty-prompt chunks (77 tokens each) appended while shorter than `length`."""
    import torch

    if hidden.shape[1] >= length:
        return hidden
    chunk = empty()  # (1, 77, C)
    return torch.cat([hidden] + [chunk] * ((length - hidden.shape[1]) // chunk.shape[1]), dim=1)
